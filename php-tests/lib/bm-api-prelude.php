<?php
/**
 * auto_prepend_file of every PHP child the API suites start: the pure-PHP
 * fallback stands in when the bm_relay extension is not loaded, exactly as
 * the suite's bootstrap does for the test process itself.
 */
if (!extension_loaded('bm_relay')) {
    $bm_fallback = dirname(__DIR__, 2) . '/wp-plugin-shim/includes/fallback.php';
    if (file_exists($bm_fallback)) {
        require_once $bm_fallback;
    }
}
