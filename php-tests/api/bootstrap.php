<?php
/**
 * Bootstrap of the bm_relay PHP API suite. The same suite runs against the
 * native extension (`php -d extension=…/libbm_relay.so`) and, without it,
 * against the pure-PHP fallback, which is loaded here when the extension
 * is absent. Tests about the extension itself are in the group `ext-only`.
 */
if (!extension_loaded('bm_relay')) {
    $fallback = dirname(__DIR__, 2) . '/wp-plugin-shim/includes/fallback.php';
    if (file_exists($fallback)) {
        require_once $fallback;
    }
}
if (!function_exists('bm_push')) {
    fwrite(STDERR, "php-tests/api: neither the bm_relay extension nor the fallback is loaded\n");
    exit(1);
}
require_once dirname(__DIR__) . '/lib/expect-impl.php';
bm_expect_implementation('php-tests/api');
require_once dirname(__DIR__) . '/lib/bm-api-harness.php';
fwrite(STDERR, 'php-tests/api: testing ' . (extension_loaded('bm_relay') ? 'the bm_relay extension ' . phpversion('bm_relay') : 'the pure-PHP fallback') . "\n");
