<?php

/**
 * Database schema: created with dbDelta on activation, upgraded by schema
 * version. The upgrade runs once, under a database lock, when the stored
 * version is older than the code's (a cheap autoloaded option compare on
 * other requests).
 *
 * Every table, option, transient, cron hook and user meta key of the plugin
 * starts with `bmr_` (prefix of our own). Versions 1 and 2 used `bm_`,
 * whose `bm_threads` and `bm_message_meta` are Better Messages' table
 * names; version 3 moves our data to `bmr_` without touching any table we
 * did not create.
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
     * 1 — threads, participants, messages, message meta (`bm_` tables).
     * 2 — threads.last_message_id (backfilled), index on messages.created_at
     *     for retention.
     * 3 — every table, option and cron hook renamed from `bm_`/`bm_relay_`
     *     to `bmr_` (no clash with Better Messages).
     * 4 — threads.seq: the number of the thread's last pushed event
     *     (browsers see a gap in it and catch up at once).
     * 5 — no table change: the `bmr_protocol` option is recorded, 1 for a
     *     site that ran before (it keeps the wire protocol it spoke), 2 for
     *     a new one.
     * 6 — index `key_value` (meta_key, meta_value) on message meta: a
     *     thread's pins (meta_value = thread id) are one index range.
     * 7 — FULLTEXT index `content_ft` on messages.content (search, #16).
     *     Added by dbDelta in the upgrade: on an existing table InnoDB
     *     rebuilds it once (7 s per 1M messages measured on 2 cores, 24 s loaded,
     *     docs/PLUGIN.md "Search"); reads go on, but sends wait for the
     *     build (a first FULLTEXT index is added with a shared lock).
     * 8 — table `bmr_calls`: the call log (BM_Relay_Calls). A table, not
     *     meta rows: a call belongs to a thread and two users, not to a
     *     message, and changes state (ringing → active → ended) in place.
     */
    public const VERSION = 8;

    /** Option holding the installed schema version. */
    public const OPTION = 'bmr_db_version';

    /** The option that held the version before 3. */
    public const LEGACY_OPTION = 'bm_relay_db_version';

    /** Table suffixes, without the site prefix. */
    public const NAMES = [
        'threads' => 'bmr_threads',
        'participants' => 'bmr_participants',
        'messages' => 'bmr_messages',
        'meta' => 'bmr_message_meta',
        'calls' => 'bmr_calls',
    ];

    /** Names of the same tables in schema 1 and 2. */
    private const LEGACY_NAMES = [
        'threads' => 'bm_threads',
        'participants' => 'bm_participants',
        'messages' => 'bm_messages',
        'meta' => 'bm_message_meta',
    ];

    /** Columns of each table as version 2 created them (what is "ours"). */
    private const LEGACY_COLUMNS = [
        'threads' => ['id', 'subject', 'created_by', 'created_at', 'updated_at', 'epoch', 'last_message_id'],
        'participants' => ['thread_id', 'user_id', 'unread_count', 'last_read_id', 'last_delivered_id', 'key_epoch', 'joined_at'],
        'messages' => ['id', 'thread_id', 'sender_id', 'content', 'created_at', 'edited_at', 'deleted_at'],
        'meta' => ['id', 'message_id', 'user_id', 'meta_key', 'meta_value', 'created_at'],
    ];

    /** Options renamed in version 3: old name => new name. */
    public const LEGACY_OPTIONS = [
        'bm_relay_secret' => 'bmr_secret',
        'bm_relay_url' => 'bmr_url',
        'bm_relay_public_url' => 'bmr_public_url',
        'bm_relay_admin_url' => 'bmr_admin_url',
        'bm_relay_site' => 'bmr_site',
        'bm_relay_mode' => 'bmr_mode',
        'bm_relay_retention_days' => 'bmr_retention_days',
        'bm_relay_max_length' => 'bmr_max_length',
    ];

    /** Cron hook of versions 1 and 2. */
    private const LEGACY_CRON = 'bm_relay_retention';

    /**
     * Table names on this site's prefix (the current blog's on multisite).
     *
     * @return array{threads:string,participants:string,messages:string,meta:string,calls:string}
     */
    public static function tables(): array
    {
        global $wpdb;
        $out = [];
        foreach (self::NAMES as $k => $name) {
            $out[$k] = $wpdb->prefix . $name;
        }
        return $out;
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
  seq bigint(20) unsigned NOT NULL DEFAULT 0,
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
  KEY created_at (created_at),
  FULLTEXT KEY content_ft (content)
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
  KEY user_id (user_id),
  KEY key_value (meta_key,meta_value)
) $charset;",
            "CREATE TABLE {$t['calls']} (
  id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  thread_id bigint(20) unsigned NOT NULL,
  caller_id bigint(20) unsigned NOT NULL,
  callee_id bigint(20) unsigned NOT NULL,
  video tinyint(1) unsigned NOT NULL DEFAULT 0,
  state varchar(10) NOT NULL DEFAULT 'ringing',
  created_at datetime NOT NULL,
  answered_at datetime DEFAULT NULL,
  ended_at datetime DEFAULT NULL,
  ended_by bigint(20) unsigned NOT NULL DEFAULT 0,
  PRIMARY KEY  (id),
  KEY thread_id (thread_id,id),
  KEY callee_state (callee_id,state),
  KEY caller_id (caller_id),
  KEY created_at (created_at)
) $charset;",
        ];
    }

    /**
     * Activation hook: this site, or every site of the network when
     * activated network-wide (each blog gets its tables, site id and cron).
     *
     * @param bool $network_wide
     */
    public static function activate($network_wide = false): void
    {
        if (is_multisite() && $network_wide) {
            foreach (get_sites(['fields' => 'ids', 'number' => 0]) as $blog_id) {
                switch_to_blog((int) $blog_id);
                self::activate_site();
                restore_current_blog();
            }
            return;
        }
        self::activate_site();
    }

    /** Activation on the current blog: tables, secret, cron. */
    public static function activate_site(): void
    {
        self::install(true);
        BM_Relay_Settings::ensure_secret();
        BM_Relay_Settings::apply();
        BM_Relay_Retention::schedule();
    }

    /**
     * Deactivation: stop the cron jobs (data stays), on every blog when
     * deactivated network-wide.
     *
     * @param bool $network_wide
     */
    public static function deactivate($network_wide = false): void
    {
        if (is_multisite() && $network_wide) {
            foreach (get_sites(['fields' => 'ids', 'number' => 0]) as $blog_id) {
                switch_to_blog((int) $blog_id);
                BM_Relay_Retention::unschedule();
                restore_current_blog();
            }
            return;
        }
        BM_Relay_Retention::unschedule();
    }

    /** True when the plugin is active for the whole network. */
    public static function network_active(): bool
    {
        if (!is_multisite()) {
            return false;
        }
        $active = (array) get_site_option('active_sitewide_plugins', []);
        return isset($active[plugin_basename(BM_RELAY_FILE)]);
    }

    /**
     * `wp_initialize_site` (after WordPress made the blog's own tables): a
     * new blog of a network where the plugin is network-active gets ours.
     */
    public static function initialize_site(WP_Site $site): void
    {
        if (!self::network_active()) {
            return;
        }
        switch_to_blog((int) $site->blog_id);
        self::activate_site();
        restore_current_blog();
    }

    /**
     * `wpmu_drop_tables`: deleting a blog drops its `bmr_` tables with it.
     *
     * @param list<string> $tables
     * @return list<string>
     */
    public static function drop_site_tables($tables, $blog_id = 0): array
    {
        global $wpdb;
        $prefix = $wpdb->get_blog_prefix((int) $blog_id);
        foreach (self::NAMES as $name) {
            $tables[] = $prefix . $name;
        }
        return (array) $tables;
    }

    /**
     * Creates or upgrades the tables to the current version, once: under a
     * MySQL named lock, re-reading the stored version inside it, so two
     * requests arriving together do not both run it. Returns false when
     * another process holds the lock (it is doing the work).
     */
    public static function install(bool $force = false): bool
    {
        global $wpdb;
        $lock = 'bmr_schema_' . $wpdb->prefix;
        if ((string) $wpdb->get_var($wpdb->prepare('SELECT GET_LOCK(%s, %d)', $lock, 0)) !== '1') {
            return false;
        }
        try {
            require_once ABSPATH . 'wp-admin/includes/upgrade.php';
            wp_cache_delete(self::OPTION, 'options');
            wp_cache_delete(self::LEGACY_OPTION, 'options');
            wp_cache_delete('alloptions', 'options');
            $from = (int) get_option(self::OPTION, 0);
            if ($from === 0) {
                $from = (int) get_option(self::LEGACY_OPTION, 0);
            }
            if ($from >= self::VERSION && !$force) {
                return true;
            }
            BM_Relay_Moderation::grant();
            if ($from > 0 && $from < 3) {
                self::migrate_legacy();
            }
            dbDelta(self::sql());
            if ($from > 0 && $from < 2) {
                self::upgrade_to_2();
            }
            if (get_option(BM_Relay_Ids::OPTION) === false) {
                // An install that ran before schema 5 spoke protocol 1 to a
                // relay that may not know 2 yet: it keeps 1 until the admin
                // switches (docs/PROTOCOL.md §3.2, migration). New sites
                // start on 2.
                add_option(BM_Relay_Ids::OPTION, $from > 0 ? '1' : '2');
            }
            update_option(self::OPTION, self::VERSION, true);
            delete_option(self::LEGACY_OPTION);
            return true;
        } finally {
            $wpdb->query($wpdb->prepare('SELECT RELEASE_LOCK(%s)', $lock));
        }
    }

    /** Runs install() when the stored version is older than the code's. */
    public static function maybe_upgrade(): void
    {
        if ((int) get_option(self::OPTION, 0) < self::VERSION) {
            self::install();
        }
    }

    /** Column names of a table, or null when it does not exist. */
    private static function columns(string $table): ?array
    {
        global $wpdb;
        if ($wpdb->get_var($wpdb->prepare('SHOW TABLES LIKE %s', $wpdb->esc_like($table))) !== $table) {
            return null;
        }
        return array_map('strval', $wpdb->get_col("SHOW COLUMNS FROM `$table`", 0));
    }

    /**
     * Version 3: moves the data of schema 1/2 (`bm_` tables, `bm_relay_`
     * options and cron hook) to the `bmr_` names. A legacy table whose
     * columns are exactly ours is renamed (atomic, every row kept). One
     * with other columns too is shared with another plugin (Better
     * Messages' `bm_threads` / `bm_message_meta` on a site that ran both):
     * our rows are copied into the new table and the shared table is left
     * as it is — it is not ours to alter or drop.
     */
    private static function migrate_legacy(): void
    {
        global $wpdb;
        $new = self::tables();
        $copy = [];
        foreach (self::LEGACY_NAMES as $k => $old_name) {
            $old = $wpdb->prefix . $old_name;
            $cols = self::columns($old);
            if ($cols === null || self::columns($new[$k]) !== null) {
                continue;
            }
            $mine = self::LEGACY_COLUMNS[$k];
            if (!array_diff($cols, $mine)) {
                // Only columns of ours (version 1 or 2): ours, renamed whole.
                // Names come from $wpdb->prefix and constants, not from input.
                $wpdb->query("RENAME TABLE `$old` TO `{$new[$k]}`");
            } elseif (!array_diff($k === 'threads' ? ['id', 'epoch', 'created_by'] : ['id', 'message_id', 'user_id', 'meta_key', 'meta_value'], $cols)) {
                // Our columns beside someone else's: shared, copy ours out.
                $copy[$k] = [$old, array_values(array_intersect($mine, $cols))];
            }
        }
        if ($copy) {
            dbDelta(self::sql());
            foreach ($copy as $k => [$old, $cols]) {
                $list = '`' . implode('`, `', $cols) . '`';
                if ($k === 'threads') {
                    // Only threads our own participants or messages refer to.
                    $wpdb->query("INSERT IGNORE INTO `{$new['threads']}` ($list) SELECT $list FROM `$old` WHERE id IN (SELECT thread_id FROM `{$new['participants']}` UNION SELECT thread_id FROM `{$new['messages']}`)");
                } else {
                    $wpdb->query($wpdb->prepare(
                        "INSERT IGNORE INTO `{$new['meta']}` ($list) SELECT $list FROM `$old` WHERE meta_key = %s AND message_id IN (SELECT id FROM `{$new['messages']}`)",
                        'reaction'
                    ));
                }
            }
        }
        foreach (self::LEGACY_OPTIONS as $old => $name) {
            $value = get_option($old, null);
            if ($value === null) {
                continue;
            }
            if (get_option($name, null) === null) {
                add_option($name, $value, '', $name === 'bmr_secret' ? false : true);
            }
            delete_option($old);
        }
        if (wp_next_scheduled(self::LEGACY_CRON)) {
            wp_clear_scheduled_hook(self::LEGACY_CRON);
            BM_Relay_Retention::schedule();
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

    /**
     * Uninstall on this site (the current blog): drops our four tables —
     * only `bmr_` ones, never a `bm_` table another plugin may own — and
     * removes our options, transients, user meta and cron hooks.
     */
    public static function uninstall_site(): void
    {
        global $wpdb;
        if (class_exists('BM_Relay_Attachments')) {
            // Before the tables: it reads which posts are the plugin's.
            BM_Relay_Attachments::uninstall_site();
        }
        foreach (self::tables() as $table) {
            $wpdb->query("DROP TABLE IF EXISTS `$table`");
        }
        $wpdb->query($wpdb->prepare(
            "DELETE FROM {$wpdb->options} WHERE option_name LIKE %s OR option_name LIKE %s OR option_name LIKE %s OR option_name = %s",
            $wpdb->esc_like('bmr_') . '%',
            $wpdb->esc_like('_transient_bmr_') . '%',
            $wpdb->esc_like('_transient_timeout_bmr_') . '%',
            self::LEGACY_OPTION
        ));
        foreach (array_keys(self::LEGACY_OPTIONS) as $old) {
            delete_option($old);
        }
        if (class_exists('BM_Relay_Moderation')) {
            BM_Relay_Moderation::revoke();
        } else {
            foreach (wp_roles()->role_objects as $role) {
                $role->remove_cap('bmr_moderate');
            }
        }
        wp_cache_flush();
        foreach (['bmr_retention', 'bmr_retry_disconnect', self::LEGACY_CRON] as $hook) {
            wp_clear_scheduled_hook($hook);
        }
        // Pending offline mails (BM_Relay_Mail::HOOK): events with args,
        // which wp_clear_scheduled_hook() without those args leaves.
        wp_unschedule_hook('bmr_mail_notify');
    }
}
