<?php
/**
 * Second step of a multisite harness install (wp-config.php now says
 * MULTISITE): creates two more blogs, sets each blog's relay options,
 * activates bm-relay network-wide and prints JSON: the network secret and,
 * per blog, its id, site id and relay key (the implementation's).
 *
 * argv: docroot host relay_url ws_url admin_url
 */

[$_, $docroot, $host, $relay_url, $ws_url, $admin_url] = $argv;
$_SERVER['HTTP_HOST'] = $host;
$_SERVER['SERVER_NAME'] = '127.0.0.1';
$_SERVER['REQUEST_URI'] = '/';

/** No sendmail here. */
function wp_new_blog_notification($blog_title, $blog_url, $user_id, $password)
{
}

require $docroot . '/wp-load.php';

/**
 * wp_insert_site() strips the `:port` from a domain; the harness serves on
 * one, so put it back (blog row, home and siteurl).
 */
function bm_harness_fix_port(int $id, string $host): void
{
    global $wpdb;
    $wpdb->update($wpdb->blogs, ['domain' => $host], ['blog_id' => $id]);
    clean_blog_cache($id);
    $path = get_site($id)->path;
    update_blog_option($id, 'home', 'http://' . $host . untrailingslashit($path));
    update_blog_option($id, 'siteurl', 'http://' . $host . untrailingslashit($path));
}
require_once ABSPATH . 'wp-admin/includes/plugin.php';
require_once ABSPATH . 'wp-admin/includes/ms.php';

add_filter('enable_live_network_counts', '__return_false');
foreach (['two', 'three'] as $slug) {
    $id = wp_insert_site(['domain' => $host, 'path' => "/$slug/", 'title' => "Blog $slug", 'user_id' => 1]);
    if (is_wp_error($id)) {
        fwrite(STDERR, $id->get_error_message() . "\n");
        exit(1);
    }
    bm_harness_fix_port($id, $host);
}
$blogs = array_map('intval', get_sites(['fields' => 'ids', 'number' => 0]));
foreach (array_slice($blogs, 1) as $blog) {
    foreach (['alice', 'bob', 'carol', 'dave'] as $login) {
        add_user_to_blog($blog, get_user_by('login', $login)->ID, 'subscriber');
    }
}
foreach ($blogs as $blog) {
    switch_to_blog($blog);
    update_option('bmr_url', $relay_url);
    update_option('bmr_public_url', $ws_url);
    update_option('bmr_admin_url', $admin_url);
    update_option('bmr_mode', 'sync');
    restore_current_blog();
}
$r = activate_plugin('bm-relay/bm-relay.php', '', true);
if (is_wp_error($r)) {
    fwrite(STDERR, 'network activation failed: ' . $r->get_error_message() . "\n");
    exit(1);
}
// The generated network secret (an input): the harness derives each blog's
// relay key from it itself.
$out = ['network_secret' => (string) get_site_option('bmr_network_secret'), 'blogs' => []];
foreach ($blogs as $blog) {
    switch_to_blog($blog);
    BM_Relay_Settings::apply();
    $out['blogs'][$blog] = ['site' => (string) bm_stats()['site'], 'relay_key' => bm_relay_key()];
    restore_current_blog();
}
echo json_encode($out);
