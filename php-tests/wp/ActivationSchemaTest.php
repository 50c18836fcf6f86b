<?php
/**
 * Activation (tables, secret, cron) and the versioned schema upgrade.
 */

final class ActivationSchemaTest extends BM_WP_TestCase
{
    public function test_activation_created_the_tables_secret_and_cron(): void
    {
        $tables = array_map(static fn($r) => (string) current($r), $this->rows("SHOW TABLES LIKE 'wp\\_bmr\\_%'"));
        sort($tables);
        $this->assertSame(['wp_bmr_calls', 'wp_bmr_message_meta', 'wp_bmr_messages', 'wp_bmr_participants', 'wp_bmr_threads'], $tables);
        $cols = array_column($this->rows('SHOW COLUMNS FROM wp_bmr_participants'), 'Field');
        foreach (['thread_id', 'user_id', 'unread_count', 'last_read_id', 'last_delivered_id', 'key_epoch'] as $c) {
            $this->assertContains($c, $cols);
        }
        $this->assertSame((string) BM_Relay_Schema::VERSION, $this->rows("SELECT option_value FROM wp_options WHERE option_name = 'bmr_db_version'")[0]['option_value']);
        $secret = $this->rows("SELECT option_value, autoload FROM wp_options WHERE option_name = 'bmr_secret'")[0];
        $this->assertMatchesRegularExpression('/^[A-Za-z0-9_-]{43}$/', $secret['option_value']);
        $this->assertContains($secret['autoload'], ['no', 'off'], 'the secret is not autoloaded on every page (WordPress 6.6 writes off)');
        $this->assertSame('option', BM_Relay_Settings::secret_source());
        $this->assertNotFalse(wp_next_scheduled(BM_Relay_Retention::HOOK));
    }

    public function test_deactivate_and_reactivate_keep_data_and_secret(): void
    {
        $secret = get_option('bmr_secret');
        deactivate_plugins('bm-relay/bm-relay.php');
        $this->assertFalse(wp_next_scheduled(BM_Relay_Retention::HOOK), 'deactivation unschedules retention');
        $this->assertCount(1, $this->rows("SHOW TABLES LIKE 'wp_bmr_messages'"), 'deactivation keeps the data');
        $this->assertNull(activate_plugin('bm-relay/bm-relay.php'));
        wp_cache_delete('bmr_secret', 'options');
        $this->assertSame($secret, get_option('bmr_secret'), 'reactivation keeps the secret');
        $this->assertNotFalse(wp_next_scheduled(BM_Relay_Retention::HOOK));
    }

    public function test_upgrade_from_version_1_adds_and_backfills_last_message_id(): void
    {
        global $wpdb;
        $thread = $this->thread('alice', ['bob'], 'upgrade');
        $this->ok($this->rest('POST', "/threads/{$thread['id']}/messages", 'alice', ['text' => 'one']), 201);
        $m2 = $this->ok($this->rest('POST', "/threads/{$thread['id']}/messages", 'bob', ['text' => 'two']), 201)['message']['id'];

        // Put the database back to schema 1: `bm_` names, no last_message_id column.
        $this->to_legacy_names();
        $wpdb->query('ALTER TABLE wp_bm_threads DROP COLUMN last_message_id');
        update_option(BM_Relay_Schema::LEGACY_OPTION, 1);
        delete_option(BM_Relay_Schema::OPTION);
        $this->assertNotContains('last_message_id', array_column($this->rows('SHOW COLUMNS FROM wp_bm_threads'), 'Field'));

        // What every request does on plugins_loaded.
        BM_Relay_Schema::maybe_upgrade();

        $this->assertContains('last_message_id', array_column($this->rows('SHOW COLUMNS FROM wp_bmr_threads'), 'Field'));
        $this->assertSame((string) $m2, $this->rows("SELECT last_message_id FROM wp_bmr_threads WHERE id = {$thread['id']}")[0]['last_message_id'], 'backfilled from the messages');
        $this->assertSame((string) BM_Relay_Schema::VERSION, $this->rows("SELECT option_value FROM wp_options WHERE option_name = 'bmr_db_version'")[0]['option_value']);
        // And the upgraded thread works: the next message moves it on.
        $m3 = $this->ok($this->rest('POST', "/threads/{$thread['id']}/messages", 'alice', ['text' => 'three']), 201)['message']['id'];
        $this->assertSame((string) $m3, $this->rows("SELECT last_message_id FROM wp_bmr_threads WHERE id = {$thread['id']}")[0]['last_message_id']);
    }

    public function test_secret_from_constant_or_ini_file_wins_over_the_option(): void
    {
        $h = $this->h();
        $other = rtrim(strtr(base64_encode(random_bytes(32)), '+/', '-_'), '=');
        $expect = rtrim(strtr(base64_encode(hash_hkdf('sha256', base64_decode(strtr($other, '-_', '+/')), 32, 'relay', 'bm-relay/v1')), '+/', '-_'), '=');
        $host = '127.0.0.1:' . $h->http_port;
        $probe = dirname(__DIR__) . '/lib/wp-harness-probe.php';

        $run = function (array $php_flags, string $constant) use ($h, $probe, $host): array {
            $cmd = array_merge($h->php(), $php_flags, [$probe, $h->docroot, $host, $constant]);
            $proc = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
            $out = stream_get_contents($pipes[1]);
            $err = stream_get_contents($pipes[2]);
            $this->assertSame(0, proc_close($proc), $out . $err);
            return json_decode((string) $out, true);
        };
        $default = $run([], '');
        $this->assertSame(['source' => 'option', 'relay_key' => $h->relay_key], array_slice($default, 0, 2));

        $constant = $run([], $other);
        $this->assertSame(['source' => 'constant', 'relay_key' => $expect], array_slice($constant, 0, 2));

        $file = $h->run . '/secret.b64';
        file_put_contents($file, $other . "\n");
        $ini = $run(['-d', 'bm_relay.secret_file=' . $file], '');
        $this->assertSame(['source' => 'ini', 'relay_key' => $expect], array_slice($ini, 0, 2), 'the file (with its newline) is read by the implementation itself');
        $this->assertSame((bool) getenv('BM_EXT_SO'), $ini['native']);
    }

    public function test_uninstall_removes_tables_options_and_cron_then_reinstall_works(): void
    {
        $options = [];
        foreach (array_merge(array_keys(BM_Relay_Settings::DEFAULTS), ['bmr_secret']) as $name) {
            $options[$name] = get_option($name);
        }
        $t = $this->thread('alice', ['bob'], 'Before uninstall');
        // A pending offline mail (BM_Relay_Mail): a cron event with args and a user meta row.
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'mail pending']), 201);
        $this->assertNotFalse(wp_next_scheduled(BM_Relay_Mail::HOOK, [$t['id'], $this->uid('bob')]));
        deactivate_plugins('bm-relay/bm-relay.php');
        $this->uninstall();

        $this->assertSame([], $this->rows("SHOW TABLES LIKE 'wp\\_bmr\\_%'"));
        $this->assertSame([], $this->rows("SELECT option_name FROM wp_options WHERE option_name LIKE 'bmr\\_%' OR option_name LIKE 'bm\\_relay\\_%'"));
        $this->assertFalse(wp_next_scheduled(BM_Relay_Retention::HOOK));
        $this->assertFalse(wp_next_scheduled(BM_Relay_Mail::HOOK, [$t['id'], $this->uid('bob')]), 'pending mails unscheduled');
        $this->assertSame([], $this->rows("SELECT meta_key FROM wp_usermeta WHERE meta_key LIKE 'bmr\\_mail\\_%'"));

        // Put the site back as the other tests expect it (same secret, so the
        // running relay's key still matches).
        foreach ($options as $name => $value) {
            if ($value !== false) {
                update_option($name, $value, $name !== 'bmr_secret');
            }
        }
        delete_option(BM_Relay_Schema::OPTION);
        $this->assertNull(activate_plugin('bm-relay/bm-relay.php'));
        BM_Relay_Settings::apply();
        $this->assertCount(count(BM_Relay_Schema::NAMES), $this->rows("SHOW TABLES LIKE 'wp\\_bmr\\_%'"));
        $this->assertSame($this->h()->relay_key, bm_relay_key());
        $this->err($this->rest('GET', "/threads/{$t['id']}", 'alice'), 404, 'bm_relay_no_thread');
        $this->thread('alice', ['bob'], 'After reinstall');
    }

    /**
     * Tables shaped like Better Messages' (its names and columns), each
     * with rows, including values our old `bm_` schema would have
     * truncated (a 250-character subject, a long meta value).
     *
     * @return list<string> their names
     */
    private function create_better_messages_tables(bool $colliding = true): array
    {
        $m = $this->h()->mysqli();
        $ddl = [
            'wp_bm_message_messages' => "(id bigint(20) NOT NULL AUTO_INCREMENT, thread_id bigint(20) NOT NULL, sender_id bigint(20) NOT NULL, message longtext NOT NULL, date_sent datetime NOT NULL, created_at bigint(20) NOT NULL DEFAULT 0, updated_at bigint(20) NOT NULL DEFAULT 0, temp_id varchar(50) DEFAULT NULL, PRIMARY KEY (id), KEY thread_id (thread_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            'wp_bm_message_recipients' => "(id bigint(20) NOT NULL AUTO_INCREMENT, user_id bigint(20) NOT NULL, thread_id bigint(20) NOT NULL, unread_count int(10) NOT NULL DEFAULT 0, last_read bigint(20) DEFAULT NULL, is_muted tinyint(1) NOT NULL DEFAULT 0, is_deleted tinyint(1) NOT NULL DEFAULT 0, PRIMARY KEY (id), KEY user_thread (user_id, thread_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            'wp_bm_threadsmeta' => "(meta_id bigint(20) NOT NULL AUTO_INCREMENT, bm_thread_id bigint(20) NOT NULL, meta_key varchar(255) DEFAULT NULL, meta_value longtext, PRIMARY KEY (meta_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            'wp_bm_mentions' => "(id bigint(20) NOT NULL AUTO_INCREMENT, thread_id bigint(20) NOT NULL, message_id bigint(20) NOT NULL, user_id bigint(20) NOT NULL, type varchar(20) NOT NULL, PRIMARY KEY (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            'wp_bm_moderation' => "(id bigint(20) NOT NULL AUTO_INCREMENT, user_id bigint(20) NOT NULL, thread_id bigint(20) NOT NULL, type varchar(20) NOT NULL, expiration datetime DEFAULT NULL, PRIMARY KEY (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            'wp_bm_user_index' => "(ID bigint(20) NOT NULL, user_type varchar(20) NOT NULL DEFAULT 'user', display_name varchar(255) NOT NULL DEFAULT '', nice_name varchar(255) NOT NULL DEFAULT '', last_activity datetime DEFAULT NULL, PRIMARY KEY (ID, user_type)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            'wp_bm_user_roles_index' => "(user_id bigint(20) NOT NULL, user_role varchar(50) NOT NULL, PRIMARY KEY (user_id, user_role)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            'wp_bm_guests' => "(id bigint(20) NOT NULL AUTO_INCREMENT, secret varchar(30) NOT NULL, name varchar(255) NOT NULL, email varchar(100) DEFAULT NULL, ip varchar(40) NOT NULL, created_at datetime NOT NULL, PRIMARY KEY (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        ];
        if ($colliding) {
            $ddl['wp_bm_threads'] = "(id bigint(20) NOT NULL AUTO_INCREMENT, subject varchar(255) NOT NULL DEFAULT '', type varchar(15) NOT NULL DEFAULT 'thread', PRIMARY KEY (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
            $ddl['wp_bm_message_meta'] = "(meta_id bigint(20) NOT NULL AUTO_INCREMENT, bm_message_id bigint(20) NOT NULL, meta_key varchar(255) DEFAULT NULL, meta_value longtext, PRIMARY KEY (meta_id), KEY bm_message_id (bm_message_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        }
        foreach ($ddl as $name => $def) {
            // (With the old `bm_` schema a table of ours may hold the name:
            // the site had Better Messages first.)
            $m->query("DROP TABLE IF EXISTS $name");
            $m->query("CREATE TABLE $name $def");
        }
        $long = str_repeat('é', 250);
        $big = str_repeat('x', 5000);
        $rows = [
            "INSERT INTO wp_bm_message_messages (thread_id, sender_id, message, date_sent, temp_id) VALUES (1, 1, 'hello from Better Messages', '2024-01-02 03:04:05', 'tmp1'), (1, 2, '$big', '2024-01-02 03:04:06', NULL)",
            "INSERT INTO wp_bm_message_recipients (user_id, thread_id, unread_count, last_read) VALUES (1, 1, 0, 2), (2, 1, 3, NULL)",
            "INSERT INTO wp_bm_threadsmeta (bm_thread_id, meta_key, meta_value) VALUES (1, 'title', '$big')",
            "INSERT INTO wp_bm_mentions (thread_id, message_id, user_id, type) VALUES (1, 1, 2, 'mention')",
            "INSERT INTO wp_bm_moderation (user_id, thread_id, type) VALUES (2, 1, 'ban')",
            "INSERT INTO wp_bm_user_index (ID, display_name, nice_name) VALUES (1, 'Admin', 'admin'), (2, 'Bob', 'bob')",
            "INSERT INTO wp_bm_user_roles_index (user_id, user_role) VALUES (1, 'administrator'), (2, 'subscriber')",
            "INSERT INTO wp_bm_guests (secret, name, ip, created_at) VALUES ('s3cr3t', 'Guest', '10.0.0.1', '2024-01-01 00:00:00')",
        ];
        if ($colliding) {
            $rows[] = "INSERT INTO wp_bm_threads (subject, type) VALUES ('$long', 'thread'), ('chat room', 'chat-room')";
            $rows[] = "INSERT INTO wp_bm_message_meta (bm_message_id, meta_key, meta_value) VALUES (1, 'bpbm_reactions', '$big'), (2, 'file', 'a.png')";
        }
        foreach ($rows as $sql) {
            $m->query($sql);
        }
        $m->close();
        return array_keys($ddl);
    }

    /**
     * A byte-for-byte fingerprint of tables: their definition and a hash of
     * every row (a full dump, ordered by all columns).
     *
     * @param list<string> $tables
     * @return array<string,string>
     */
    private function fingerprint(array $tables): array
    {
        $m = $this->h()->mysqli();
        $out = [];
        foreach ($tables as $t) {
            $res = $m->query("SHOW TABLES LIKE '$t'");
            if (!$res->num_rows) {
                $out[$t] = 'missing';
                continue;
            }
            $create = $m->query("SHOW CREATE TABLE `$t`")->fetch_row()[1];
            // The definition without its name (a rename keeps the bytes) and the
            // next auto-increment value (not data).
            $create = preg_replace(['/^CREATE TABLE `[^`]+`/', '/ AUTO_INCREMENT=\d+/'], ['CREATE TABLE', ''], $create);
            $rows = $m->query("SELECT * FROM `$t` ORDER BY 1, 2")->fetch_all(MYSQLI_NUM);
            $out[$t] = hash('sha256', $create . "\n" . json_encode($rows, JSON_UNESCAPED_UNICODE)) . ' ' . count($rows) . ' rows';
        }
        $m->close();
        return $out;
    }

    /**
     * What deleting the plugin runs (its uninstall.php); uninstall_plugin()
     * defines WP_UNINSTALL_PLUGIN, so it can run only once per process.
     */
    private function uninstall(): void
    {
        if (!defined('WP_UNINSTALL_PLUGIN')) {
            define('WP_UNINSTALL_PLUGIN', 'bm-relay/bm-relay.php');
        }
        include WP_PLUGIN_DIR . '/bm-relay/uninstall.php';
    }

    /** Drops test tables. */
    private function drop(array $tables): void
    {
        $m = $this->h()->mysqli();
        foreach ($tables as $t) {
            $m->query("DROP TABLE IF EXISTS `$t`");
        }
        $m->close();
    }

    /** Renames our tables and options back to their schema 1/2 names (`bm_`, `bm_relay_`). */
    private function to_legacy_names(): void
    {
        global $wpdb;
        foreach (BM_Relay_Schema::tables() as $k => $table) {
            if ($k === 'calls') {
                // Schema 8's table: a schema 2 site has none.
                $wpdb->query("DROP TABLE `$table`");
                continue;
            }
            $old = str_replace('wp_bmr_', 'wp_bm_', $table);
            $wpdb->query("RENAME TABLE `$table` TO `$old`");
        }
        // Schema 2's columns exactly (threads.seq came with schema 4).
        $wpdb->query('ALTER TABLE `wp_bm_threads` DROP COLUMN seq');
        foreach (BM_Relay_Schema::LEGACY_OPTIONS as $old => $new) {
            $v = get_option($new, null);
            if ($v !== null) {
                add_option($old, $v, '', $new === 'bmr_secret' ? false : true);
                delete_option($new);
            }
        }
        wp_clear_scheduled_hook(BM_Relay_Retention::HOOK);
        wp_schedule_event(time() + 3600, 'daily', 'bm_relay_retention');
    }

    /** Puts the plugin back as the other tests expect it (same secret, so the relay's key matches). */
    private function reinstall(array $options): void
    {
        foreach ($options as $name => $value) {
            if ($value !== false) {
                update_option($name, $value, $name !== 'bmr_secret');
            }
        }
        delete_option(BM_Relay_Schema::OPTION);
        if (!is_plugin_active('bm-relay/bm-relay.php')) {
            $this->assertNull(activate_plugin('bm-relay/bm-relay.php'));
        } else {
            BM_Relay_Schema::activate();
        }
        BM_Relay_Settings::apply();
        $this->assertSame($this->h()->relay_key, bm_relay_key());
    }

    /** Current values of our options. */
    private function options(): array
    {
        $options = [];
        foreach (array_merge(array_keys(BM_Relay_Settings::DEFAULTS), ['bmr_secret']) as $name) {
            $options[$name] = get_option($name);
        }
        return $options;
    }

    public function test_better_messages_tables_survive_activate_upgrade_and_uninstall_byte_for_byte(): void
    {
        $options = $this->options();
        $bm = $this->create_better_messages_tables();
        $before = $this->fingerprint($bm);
        try {
            $this->assertCount(10, $bm);
            $this->assertStringEndsWith('2 rows', $before['wp_bm_threads']);

            // Activate (again), with a thread of ours in use.
            deactivate_plugins('bm-relay/bm-relay.php');
            $this->assertNull(activate_plugin('bm-relay/bm-relay.php'));
            $t = $this->thread('alice', ['bob'], 'beside Better Messages');
            $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'ours']), 201)['message'];
            $this->ok($this->rest('POST', "/messages/{$m['id']}/reactions", 'bob', ['emoji' => '👍']));
            $this->assertSame($before, $this->fingerprint($bm), 'activation left Better Messages\' tables alone');

            // An upgrade from schema 2 on this site (its `bm_threads` is not ours).
            delete_option(BM_Relay_Schema::OPTION);
            update_option(BM_Relay_Schema::LEGACY_OPTION, 2);
            BM_Relay_Schema::maybe_upgrade();
            $this->assertSame((string) BM_Relay_Schema::VERSION, (string) get_option(BM_Relay_Schema::OPTION));
            $this->assertSame($before, $this->fingerprint($bm), 'the upgrade left Better Messages\' tables alone');
            $this->assertSame('ours', $this->rows("SELECT content FROM wp_bmr_messages WHERE id = {$m['id']}")[0]['content']);

            // Uninstall: ours gone, theirs intact.
            deactivate_plugins('bm-relay/bm-relay.php');
            $this->uninstall();
            $this->assertSame([], $this->rows("SHOW TABLES LIKE 'wp\\_bmr\\_%'"));
            $this->assertSame($before, $this->fingerprint($bm), 'uninstall left Better Messages\' tables alone');
        } finally {
            $this->drop($bm);
            $this->reinstall($options);
        }
    }

    public function test_upgrade_from_schema_2_moves_every_row_to_the_bmr_tables_once_under_a_lock(): void
    {
        $t = $this->thread('alice', ['bob', 'carol'], 'old schema');
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'kept across the upgrade']), 201)['message'];
        $this->ok($this->rest('POST', "/messages/{$m['id']}/reactions", 'carol', ['emoji' => '🎉']));
        $ours = array_values(array_diff_key(BM_Relay_Schema::tables(), ['calls' => 0]));
        // Schema 2 numbered no events: after the upgrade every thread
        // starts from 0 (schema 4's threads.seq, added with its default).
        $this->h()->mysqli()->query('UPDATE wp_bmr_threads SET seq = 0');
        $data = $this->fingerprint($ours);
        $secret = get_option('bmr_secret');
        $bm = $this->create_better_messages_tables(false);
        $theirs = $this->fingerprint($bm);

        $this->to_legacy_names();
        update_option(BM_Relay_Schema::LEGACY_OPTION, 2);
        delete_option(BM_Relay_Schema::OPTION);
        try {
            $legacy = array_map(static fn($n) => str_replace('wp_bmr_', 'wp_bm_', $n), $ours);
            $legacy_data = $this->fingerprint($legacy);

            // Another process upgrading (holding the lock): this one waits for nothing and changes nothing.
            $other = $this->h()->mysqli();
            $this->assertSame('1', $other->query("SELECT GET_LOCK('bmr_schema_wp_', 0)")->fetch_row()[0]);
            $t0 = microtime(true);
            BM_Relay_Schema::maybe_upgrade();
            $this->assertLessThan(1.0, microtime(true) - $t0);
            $this->assertSame($legacy_data, $this->fingerprint($legacy), 'nothing moved while locked');
            $other->query("SELECT RELEASE_LOCK('bmr_schema_wp_')");
            $other->close();

            BM_Relay_Schema::maybe_upgrade();
            $this->assertSame($data, $this->fingerprint($ours), 'every row of every table, byte for byte');
            $this->assertSame(array_fill_keys($legacy, 'missing'), $this->fingerprint($legacy));
            $this->assertSame($theirs, $this->fingerprint($bm), 'Better Messages\' tables untouched');
            $this->assertSame((string) BM_Relay_Schema::VERSION, $this->rows("SELECT option_value FROM wp_options WHERE option_name = 'bmr_db_version'")[0]['option_value']);
            $this->assertSame([], $this->rows("SELECT option_name FROM wp_options WHERE option_name LIKE 'bm\\_relay\\_%'"), 'old options moved');
            $this->assertSame($secret, $this->rows("SELECT option_value FROM wp_options WHERE option_name = 'bmr_secret'")[0]['option_value']);
            $this->assertContains($this->rows("SELECT autoload FROM wp_options WHERE option_name = 'bmr_secret'")[0]['autoload'], ['no', 'off']);
            $this->assertFalse(wp_next_scheduled('bm_relay_retention'));
            $this->assertNotFalse(wp_next_scheduled(BM_Relay_Retention::HOOK));
            BM_Relay_Settings::apply();
            $this->assertSame($this->h()->relay_key, bm_relay_key());
            $page = $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'bob'));
            $this->assertSame('kept across the upgrade', $page['messages'][0]['text']);
            $this->assertSame('🎉', $page['messages'][0]['reactions'][0]['emoji']);
        } finally {
            $this->drop($bm);
        }
    }
}
