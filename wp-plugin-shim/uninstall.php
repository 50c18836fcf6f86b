<?php

/**
 * Runs when the plugin is deleted from Plugins → Installed Plugins (not on
 * deactivation): drops our four `bmr_` tables and removes our options (the
 * generated secret included), transients, user meta and cron jobs — on
 * every site of a network. Tables named `bm_…` are never dropped: they may
 * belong to Better Messages. WordPress's convention for uninstall is
 * "leave nothing behind"; deactivating keeps everything.
 *
 * @package bm-relay
 */

defined('WP_UNINSTALL_PLUGIN') || exit;

require_once __DIR__ . '/includes/class-bm-relay-schema.php';
require_once __DIR__ . '/includes/class-bm-relay-attachments.php';

global $wpdb;
if (is_multisite()) {
    foreach (get_sites(['fields' => 'ids', 'number' => 0]) as $blog_id) {
        switch_to_blog((int) $blog_id);
        BM_Relay_Schema::uninstall_site();
        restore_current_blog();
    }
    $wpdb->query($wpdb->prepare(
        "DELETE FROM {$wpdb->sitemeta} WHERE meta_key LIKE %s",
        $wpdb->esc_like('bmr_') . '%'
    ));
} else {
    BM_Relay_Schema::uninstall_site();
}
$wpdb->query($wpdb->prepare("DELETE FROM {$wpdb->usermeta} WHERE meta_key LIKE %s", $wpdb->esc_like('bmr_') . '%'));
