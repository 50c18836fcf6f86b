<?php
/**
 * Installs WordPress into a harness site and activates bm-relay; run as a
 * child process by BM_WP_Harness (WP_INSTALLING must not leak into the
 * test process). Prints JSON: user ids, the generated secret, relay key.
 *
 * argv: docroot url password site relay_url ws_url admin_url
 */

[$_, $docroot, $url, $password, $site, $relay_url, $ws_url, $admin_url] = $argv;
$multisite = ($argv[8] ?? '') === 'multisite';
$host = parse_url($url, PHP_URL_HOST) . ':' . parse_url($url, PHP_URL_PORT);
$_SERVER['HTTP_HOST'] = $host;
$_SERVER['SERVER_NAME'] = '127.0.0.1';
$_SERVER['REQUEST_URI'] = '/';
define('WP_INSTALLING', true);

/** No sendmail here: the install notification is not sent. */
function wp_new_blog_notification($blog_title, $blog_url, $user_id, $password)
{
}

require $docroot . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/plugin.php';

ob_start();
$result = wp_install('bm-relay test', 'admin', 'admin@example.test', false, '', $password);
ob_end_clean();
$users = ['admin' => (int) $result['user_id']];
foreach (['alice', 'bob', 'carol', 'dave'] as $name) {
    $id = wp_insert_user([
        'user_login' => $name,
        'user_pass' => $password,
        'user_email' => "$name@example.test",
        'display_name' => ucfirst($name),
        'role' => 'subscriber',
    ]);
    if (is_wp_error($id)) {
        fwrite(STDERR, $id->get_error_message() . "\n");
        exit(1);
    }
    $users[$name] = (int) $id;
}
if ($multisite) {
    // Single site to network (what Tools → Network Setup does): the global
    // tables and the network row; wp-config.php gets MULTISITE next, and
    // wp-harness-install-ms.php activates the plugin network-wide.
    require_once ABSPATH . 'wp-admin/includes/network.php';
    // As wp-admin/network.php does: name the network tables, then make them.
    foreach ($wpdb->tables('ms_global') as $table => $prefixed) {
        $wpdb->$table = $prefixed;
    }
    install_network();
    $r = populate_network(1, $host, 'admin@example.test', 'bm-relay network', '/', false);
    if (is_wp_error($r)) {
        fwrite(STDERR, 'populate_network: ' . $r->get_error_message() . "\n");
        exit(1);
    }
    update_option('permalink_structure', '/%postname%/');
    echo json_encode(['users' => $users]);
    exit(0);
}
update_option('bmr_site', $site);
update_option('bmr_url', $relay_url);
update_option('bmr_public_url', $ws_url);
update_option('bmr_admin_url', $admin_url);
update_option('bmr_mode', 'sync');
update_option('permalink_structure', '/%postname%/');
$r = activate_plugin('bm-relay/bm-relay.php');
if (is_wp_error($r)) {
    fwrite(STDERR, 'activation failed: ' . $r->get_error_message() . "\n");
    exit(1);
}
BM_Relay_Settings::apply();
echo json_encode([
    'users' => $users,
    // What the relay calls each user (their pseudonym in protocol 2).
    'wires' => array_map([BM_Relay_Ids::class, 'user'], $users),
    'secret' => get_option('bmr_secret'),
    'relay_key' => bm_relay_key(),
]);
