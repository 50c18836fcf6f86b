<?php
/**
 * Bootstrap of the API vector checks: the extension when loaded (php -d
 * extension=…), otherwise the plugin's pure-PHP fallback. Needs no
 * WordPress and no relay.
 */
require_once dirname(__DIR__, 3) . '/wp-plugin-shim/includes/fallback.php';
require_once dirname(__DIR__, 2) . '/lib/expect-impl.php';
bm_expect_implementation('php-tests/wp/fallback');
fwrite(STDERR, 'bm_relay API vectors: ' . ((new ReflectionFunction('bm_push'))->isInternal() ? 'extension' : 'pure-PHP fallback') . "\n");
