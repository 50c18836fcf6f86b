<?php

/**
 * Plugin Name:       bm-relay
 * Description:       Real-time messaging where WordPress keeps every message: stored in the site's database, then pushed as a sealed envelope through the bm-relay router.
 * Version:           0.1.0
 * Requires at least: 6.1
 * Requires PHP:      8.1
 * Author:            bm-relay
 * License:           MIT
 * Text Domain:       bm-relay
 * Domain Path:       /languages
 * Update URI:        false
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/** Plugin version (also sent in the admin page). */
define('BM_RELAY_VERSION', '0.1.0');
/** Main file, for activation hooks and asset URLs. */
define('BM_RELAY_FILE', __FILE__);
/** Directory of the plugin, with a trailing slash. */
define('BM_RELAY_DIR', plugin_dir_path(__FILE__));

// The native extension when loaded; otherwise the pure-PHP drop-in that
// defines the same functions. Callers never check which one is active.
require_once BM_RELAY_DIR . 'includes/fallback.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-schema.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-settings.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-ids.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-store.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-limits.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-push.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-params.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-shapes.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-service.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-rest.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-privacy.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-retention.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-admin.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-doctor.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-shortcode.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-moderation.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-search.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-attachments.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-mentions.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-notify.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-receipts.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-page.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-health.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-mail.php';
require_once BM_RELAY_DIR . 'includes/class-bm-relay-calls.php';

register_activation_hook(__FILE__, ['BM_Relay_Schema', 'activate']);
register_deactivation_hook(__FILE__, ['BM_Relay_Schema', 'deactivate']);

add_action('plugins_loaded', ['BM_Relay_Schema', 'maybe_upgrade']);
add_action('plugins_loaded', ['BM_Relay_Settings', 'apply'], 5);
// Multisite: each blog has its own keys and site id; a new blog gets the
// tables, a deleted one loses them.
add_action('switch_blog', ['BM_Relay_Settings', 'apply']);
add_action('wp_initialize_site', ['BM_Relay_Schema', 'initialize_site'], 200);
add_filter('wpmu_drop_tables', ['BM_Relay_Schema', 'drop_site_tables'], 10, 2);
add_action('init', static function (): void {
    load_plugin_textdomain('bm-relay', false, dirname(plugin_basename(BM_RELAY_FILE)) . '/languages');
});
add_action('rest_api_init', ['BM_Relay_REST', 'register_routes']);
add_action('rest_api_init', ['BM_Relay_Receipts', 'register_routes']);
add_action(BM_Relay_Retention::HOOK, ['BM_Relay_Retention', 'run']);
add_action(BM_Relay_Push::RETRY_HOOK, ['BM_Relay_Push', 'retry_disconnects']);
BM_Relay_Privacy::register();
BM_Relay_Admin::register();
BM_Relay_Doctor::register();
BM_Relay_Moderation::register();
BM_Relay_Shortcode::register();
BM_Relay_Search::register();
BM_Relay_Attachments::register();
BM_Relay_Notify::register();
BM_Relay_Page::register();
BM_Relay_Health::register();
BM_Relay_Mail::register();
BM_Relay_Calls::register();
