<?php
/**
 * Runs when the plugin is deleted from Plugins → Installed Plugins (not on
 * deactivation): drops the four tables and removes the options (the
 * generated secret included) and the cron job. WordPress's convention for
 * uninstall is "leave nothing behind"; deactivating keeps everything.
 *
 * @package bm-relay
 */

defined('WP_UNINSTALL_PLUGIN') || exit;

global $wpdb;
foreach (['bm_message_meta', 'bm_messages', 'bm_participants', 'bm_threads'] as $table) {
    // Table names come from the site prefix, not from input.
    $wpdb->query("DROP TABLE IF EXISTS {$wpdb->prefix}{$table}");
}
foreach ([
    'bm_relay_db_version', 'bm_relay_secret', 'bm_relay_url', 'bm_relay_public_url', 'bm_relay_admin_url',
    'bm_relay_site', 'bm_relay_mode', 'bm_relay_retention_days', 'bm_relay_max_length',
] as $option) {
    delete_option($option);
}
wp_clear_scheduled_hook('bm_relay_retention');
