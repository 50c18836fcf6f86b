<?php
/**
 * Bootstrap of the multisite suite: the WordPress suite's harness installs
 * a real network (MULTISITE, subdirectories, three blogs) with bm-relay
 * activated network-wide, starts a relay that knows every blog as a site of
 * its own, then loads WordPress (blog 1) into this process.
 */

require_once dirname(__DIR__, 2) . '/lib/wp-harness.php';
require_once dirname(__DIR__, 2) . '/lib/expect-impl.php';
bm_expect_implementation('php-tests/wp/multisite', true);

$bm_h = new BM_WP_Harness(['http' => false, 'relay' => true, 'multisite' => true]);
try {
    $bm_h->start();
} catch (Throwable $e) {
    fwrite(STDERR, 'bm-relay WP multisite harness: ' . $e->getMessage() . "\n");
    $bm_h->stop();
    exit(1);
}
$GLOBALS['bm_h'] = $bm_h;

/** Loads WordPress inside a function (see ../bootstrap.php). */
function bm_wp_load(BM_WP_Harness $h): void
{
    $_SERVER['HTTP_HOST'] = '127.0.0.1:' . $h->http_port;
    $_SERVER['SERVER_NAME'] = '127.0.0.1';
    $_SERVER['REQUEST_URI'] = '/';
    $_SERVER['REQUEST_METHOD'] = 'GET';
    $_SERVER['REMOTE_ADDR'] = '127.0.0.1';
    require $h->docroot . '/wp-load.php';
    require_once ABSPATH . 'wp-admin/includes/plugin.php';
}
bm_wp_load($bm_h);
require_once dirname(__DIR__) . '/TestCase.php';

fwrite(STDERR, sprintf(
    "bm-relay WP multisite suite: %s, WordPress %s, %d blogs\n",
    BM_Relay_Settings::native() ? 'extension ' . BM_Relay_Settings::native_version() : 'pure-PHP fallback',
    get_bloginfo('version'),
    count($bm_h->blogs)
));
