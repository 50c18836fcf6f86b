<?php
/**
 * Adds the published page /chat/ holding `[bm_chat]` to a harness site and
 * gives the site a theme to show it with; run as a child process by
 * site.php. argv: docroot url
 *
 * Theme: Twenty Twenty-One when Debian's wordpress-theme-twentytwentyone is
 * installed, else a minimal classic theme written into the temp site (the
 * `wordpress` package alone has no theme, and a site without one renders
 * an empty page).
 */

[$_, $docroot, $url] = $argv;
$_SERVER['HTTP_HOST'] = parse_url($url, PHP_URL_HOST) . ':' . parse_url($url, PHP_URL_PORT);
$_SERVER['SERVER_NAME'] = '127.0.0.1';
$_SERVER['REQUEST_URI'] = '/';
require $docroot . '/wp-load.php';

if (wp_get_theme('twentytwentyone')->exists()) {
    switch_theme('twentytwentyone');
} else {
    $dir = WP_CONTENT_DIR . '/themes/bm-plain';
    if (!is_dir($dir) && !mkdir($dir, 0755, true)) {
        fwrite(STDERR, "cannot create $dir\n");
        exit(1);
    }
    file_put_contents($dir . '/style.css', "/*\nTheme Name: bm plain\nDescription: Minimal theme for the bm-relay demo and end-to-end test.\n*/\nbody{font-family:system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:0 .5rem}\n");
    file_put_contents($dir . '/index.php', <<<'THEME'
<!doctype html>
<html <?php language_attributes(); ?>>
<head><meta charset="<?php bloginfo('charset'); ?>"><meta name="viewport" content="width=device-width, initial-scale=1"><?php wp_head(); ?></head>
<body <?php body_class(); ?>>
<main>
<?php while (have_posts()) { the_post(); ?><h1><?php the_title(); ?></h1><?php the_content(); } ?>
</main>
<?php wp_footer(); ?>
</body>
</html>
THEME);
    switch_theme('bm-plain');
}

$id = wp_insert_post([
    'post_type' => 'page',
    'post_title' => 'Chat',
    'post_name' => 'chat',
    'post_content' => '[bm_chat]',
    'post_status' => 'publish',
    'post_author' => 1,
], true);
if (is_wp_error($id)) {
    fwrite(STDERR, $id->get_error_message() . "\n");
    exit(1);
}
flush_rewrite_rules(false);
echo get_permalink($id), "\n";
