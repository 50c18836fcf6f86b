<?php
/**
 * Which implementation of the bm_relay API a suite must be testing, checked
 * by every PHPUnit bootstrap: BM_EXPECT_IMPL=extension (the native
 * bm_relay.so) or BM_EXPECT_IMPL=fallback (the plugin's pure-PHP code),
 * set by the make targets. Why: a suite meant for the fallback would
 * silently test the extension instead if it were installed system-wide
 * (`make test-package` installs it, briefly, and so may an admin), and the
 * reverse if `-d extension=` were lost. A run with the wrong one, or with
 * the variable unset, stops before any test.
 */

/**
 * Exits 1 unless bm_push() comes from the implementation BM_EXPECT_IMPL
 * names. With $before_load (a bootstrap that loads the fallback later,
 * through WordPress), only whether the extension is loaded is checked.
 */
function bm_expect_implementation(string $suite, bool $before_load = false): void
{
    $want = getenv('BM_EXPECT_IMPL');
    if ($want !== 'extension' && $want !== 'fallback') {
        fwrite(STDERR, "$suite: set BM_EXPECT_IMPL=extension or BM_EXPECT_IMPL=fallback (the make targets do)\n");
        exit(1);
    }
    $have = $before_load ? (extension_loaded('bm_relay') ? 'extension' : 'fallback')
        : (!function_exists('bm_push') ? 'none'
        : ((new ReflectionFunction('bm_push'))->isInternal() ? 'extension' : 'fallback'));
    if ($have === 'fallback' && extension_loaded('bm_relay')) {
        $have = 'extension';    // both loaded: the extension's functions win, the fallback is not tested
    }
    if ($have !== $want) {
        $ini = php_ini_scanned_files() ?: '(none)';
        fwrite(STDERR, "$suite: expected the $want implementation of bm_push(), but this PHP has the $have one"
            . ($have === 'extension' ? " (loaded from php.ini or conf.d? scanned: " . trim($ini) . ")" : '') . "\n");
        exit(1);
    }
}
