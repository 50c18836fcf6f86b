<?php
/**
 * Bootstrap of the WordPress suite: starts a private MariaDB, installs
 * Debian's WordPress into a temp site with bm-relay activated, starts a
 * real relay and `php -S`, then loads WordPress into this process so tests
 * drive REST with rest_do_request() (real nonces, real users) and check
 * rows and pushed events. Everything is stopped when the run ends.
 *
 * BM_WP_NO_RELAY=1 runs without a relay (only for working on the suite
 * before the relay exists; relay tests then fail, they are not skipped).
 */

require_once dirname(__DIR__) . '/lib/wp-harness.php';
require_once dirname(__DIR__) . '/lib/expect-impl.php';
bm_expect_implementation('php-tests/wp', true);

$bm_h = new BM_WP_Harness(['http' => true, 'relay' => !getenv('BM_WP_NO_RELAY')]);
try {
    $bm_h->start();
} catch (Throwable $e) {
    fwrite(STDERR, 'bm-relay WP harness: ' . $e->getMessage() . "\n");
    $bm_h->stop();
    exit(1);
}
$GLOBALS['bm_h'] = $bm_h;

/**
 * Loads WordPress inside a function: PHPUnit copies the bootstrap's local
 * variables into $GLOBALS after including it, which would overwrite globals
 * that WordPress files initialise at file scope (e.g. $shortcode_tags).
 */
function bm_wp_load(BM_WP_Harness $h): void
{
    $_SERVER['HTTP_HOST'] = '127.0.0.1:' . $h->http_port;
    $_SERVER['SERVER_NAME'] = '127.0.0.1';
    $_SERVER['REQUEST_URI'] = '/';
    $_SERVER['REQUEST_METHOD'] = 'GET';
    require $h->docroot . '/wp-load.php';
    require_once ABSPATH . 'wp-admin/includes/plugin.php';
}
bm_wp_load($bm_h);
require_once __DIR__ . '/TestCase.php';

fwrite(STDERR, sprintf(
    "bm-relay WP suite: %s, WordPress %s at %s, relay %s\n",
    BM_Relay_Settings::native() ? 'extension ' . BM_Relay_Settings::native_version() : 'pure-PHP fallback',
    get_bloginfo('version'),
    $bm_h->url,
    $bm_h->running('relay') ? $bm_h->relay_url : 'not running'
));
