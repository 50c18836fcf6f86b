<?php
/**
 * Database schema: created with dbDelta on activation, upgraded by schema
 * version on every load (cheap option compare), so a plugin update that
 * changes the tables needs no manual step.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Owns the four tables and their versioned upgrades.
 */
final class BM_Relay_Schema
{
    /**
     * Current schema version. History:
     * 1 — threads, participants, messages, message meta.
     * 2 — threads.last_message_id (backfilled), index on messages.created_at
     *     for retention.
     */
    public const VERSION = 2;

    /** Option holding the installed schema version. */
    public const OPTION = 'bm_relay_db_version';

    /**
     * Table names on this site's prefix.
     *
     * @return array{threads:string,participants:string,messages:string,meta:string}
     */
    public static function tables(): array
    {
        global $wpdb;
        return [
            'threads' => $wpdb->prefix . 'bm_threads',
            'participants' => $wpdb->prefix . 'bm_participants',
            'messages' => $wpdb->prefix . 'bm_messages',
            'meta' => $wpdb->prefix . 'bm_message_meta',
        ];
    }

    /**
     * The CREATE TABLE statements of the current version, in dbDelta's
     * format (two spaces after PRIMARY KEY, one field per line).
     *
     * @return list<string>
     */
    public static function sql(): array
    {
        global $wpdb;
        $t = self::tables();
        $charset = $wpdb->get_charset_collate();
        return [
            "CREATE TABLE {$t['threads']} (
  id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  subject varchar(200) NOT NULL DEFAULT '',
  created_by bigint(20) unsigned NOT NULL DEFAULT 0,
  created_at datetime NOT NULL,
  updated_at datetime NOT NULL,
  epoch int(10) unsigned NOT NULL DEFAULT 0,
  last_message_id bigint(20) unsigned NOT NULL DEFAULT 0,
  PRIMARY KEY  (id),
  KEY updated_at (updated_at)
) $charset;",
            "CREATE TABLE {$t['participants']} (
  thread_id bigint(20) unsigned NOT NULL,
  user_id bigint(20) unsigned NOT NULL,
  unread_count int(10) unsigned NOT NULL DEFAULT 0,
  last_read_id bigint(20) unsigned NOT NULL DEFAULT 0,
  last_delivered_id bigint(20) unsigned NOT NULL DEFAULT 0,
  key_epoch int(10) unsigned NOT NULL DEFAULT 0,
  joined_at datetime NOT NULL,
  PRIMARY KEY  (thread_id,user_id),
  KEY user_id (user_id)
) $charset;",
            "CREATE TABLE {$t['messages']} (
  id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  thread_id bigint(20) unsigned NOT NULL,
  sender_id bigint(20) unsigned NOT NULL,
  content longtext NOT NULL,
  created_at datetime NOT NULL,
  edited_at datetime DEFAULT NULL,
  deleted_at datetime DEFAULT NULL,
  PRIMARY KEY  (id),
  KEY thread_id (thread_id,id),
  KEY sender_id (sender_id),
  KEY created_at (created_at)
) $charset;",
            "CREATE TABLE {$t['meta']} (
  id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  message_id bigint(20) unsigned NOT NULL,
  user_id bigint(20) unsigned NOT NULL,
  meta_key varchar(32) NOT NULL,
  meta_value varchar(191) NOT NULL DEFAULT '',
  created_at datetime NOT NULL,
  PRIMARY KEY  (id),
  UNIQUE KEY one_value (message_id,meta_key,user_id,meta_value),
  KEY user_id (user_id)
) $charset;",
        ];
    }

    /** Activation: tables, secret, cron. */
    public static function activate(): void
    {
        self::install();
        BM_Relay_Settings::ensure_secret();
        BM_Relay_Retention::schedule();
    }

    /** Deactivation: stop the cron job (data stays). */
    public static function deactivate(): void
    {
        BM_Relay_Retention::unschedule();
    }

    /** Creates or upgrades the tables to the current version. */
    public static function install(): void
    {
        require_once ABSPATH . 'wp-admin/includes/upgrade.php';
        $from = (int) get_option(self::OPTION, 0);
        dbDelta(self::sql());
        if ($from > 0 && $from < 2) {
            self::upgrade_to_2();
        }
        update_option(self::OPTION, self::VERSION, true);
    }

    /** Runs install() when the stored version is older than the code's. */
    public static function maybe_upgrade(): void
    {
        if ((int) get_option(self::OPTION, 0) < self::VERSION) {
            self::install();
        }
    }

    /** Version 2 data step: fill threads.last_message_id from the messages. */
    private static function upgrade_to_2(): void
    {
        global $wpdb;
        $t = self::tables();
        // Table names come from $wpdb->prefix, not from input.
        $wpdb->query(
            "UPDATE {$t['threads']} th SET th.last_message_id = COALESCE((SELECT MAX(m.id) FROM {$t['messages']} m WHERE m.thread_id = th.id), 0)"
        );
    }
}
