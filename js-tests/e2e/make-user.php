<?php
/**
 * Adds a user with a chosen (distinctive) id to a harness site, and can
 * make the next thread id distinctive too; run as a child process by
 * site.php. argv: docroot url login password user_id [next_thread_id]
 *
 * Distinctive ids (8 digits, say) make the privacy test's scan meaningful:
 * a user id 2 would be found in any process's memory.
 */

[$_, $docroot, $url, $login, $password, $id] = $argv;
$next_thread = $argv[6] ?? null;
$_SERVER['HTTP_HOST'] = parse_url($url, PHP_URL_HOST) . ':' . parse_url($url, PHP_URL_PORT);
$_SERVER['SERVER_NAME'] = '127.0.0.1';
$_SERVER['REQUEST_URI'] = '/';
require $docroot . '/wp-load.php';
global $wpdb;

$wpdb->query($wpdb->prepare("ALTER TABLE {$wpdb->users} AUTO_INCREMENT = %d", (int) $id));
$user = wp_insert_user([
    'user_login' => $login,
    'user_pass' => $password,
    'user_email' => "$login@example.test",
    'display_name' => ucfirst($login),
    'role' => 'subscriber',
]);
if (is_wp_error($user)) {
    fwrite(STDERR, $user->get_error_message() . "\n");
    exit(1);
}
if ($next_thread !== null) {
    $wpdb->query($wpdb->prepare("ALTER TABLE {$wpdb->prefix}bmr_threads AUTO_INCREMENT = %d", (int) $next_thread));
}
// What the relay will call them (and the thread): the privacy test's
// control, which must find these where the ids are not.
echo json_encode([
    'id' => (int) $user,
    'wire' => BM_Relay_Ids::user((int) $user),
    'thread_wire' => $next_thread === null ? null : BM_Relay_Ids::thread((int) $next_thread),
    'protocol' => BM_Relay_Ids::protocol(),
]), "\n";
