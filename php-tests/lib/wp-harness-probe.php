<?php
/**
 * Loads a harness site in a fresh PHP process and prints what the plugin
 * resolved: where the secret comes from and the relay key it derives. Used
 * to test the BM_RELAY_SECRET constant and the bm_relay.secret_file INI key,
 * which cannot be changed inside an already-loaded process.
 *
 * argv: docroot host [secret-for-constant]
 */

[$_, $docroot, $host] = $argv;
if (isset($argv[3]) && $argv[3] !== '') {
    define('BM_RELAY_SECRET', $argv[3]);
}
$_SERVER['HTTP_HOST'] = $host;
$_SERVER['SERVER_NAME'] = '127.0.0.1';
$_SERVER['REQUEST_URI'] = '/';
require $docroot . '/wp-load.php';
echo json_encode([
    'source' => BM_Relay_Settings::secret_source(),
    'relay_key' => bm_relay_key(),
    'native' => BM_Relay_Settings::native(),
]);
