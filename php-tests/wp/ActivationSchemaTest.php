<?php
/**
 * Activation (tables, secret, cron) and the versioned schema upgrade.
 */

final class ActivationSchemaTest extends BM_WP_TestCase
{
    public function test_activation_created_the_tables_secret_and_cron(): void
    {
        $tables = array_column($this->rows("SHOW TABLES LIKE 'wp_bm_%'"), 'Tables_in_wordpress (wp_bm_%)');
        sort($tables);
        $this->assertSame(['wp_bm_message_meta', 'wp_bm_messages', 'wp_bm_participants', 'wp_bm_threads'], $tables);
        $cols = array_column($this->rows('SHOW COLUMNS FROM wp_bm_participants'), 'Field');
        foreach (['thread_id', 'user_id', 'unread_count', 'last_read_id', 'last_delivered_id', 'key_epoch'] as $c) {
            $this->assertContains($c, $cols);
        }
        $this->assertSame((string) BM_Relay_Schema::VERSION, $this->rows("SELECT option_value FROM wp_options WHERE option_name = 'bm_relay_db_version'")[0]['option_value']);
        $secret = $this->rows("SELECT option_value, autoload FROM wp_options WHERE option_name = 'bm_relay_secret'")[0];
        $this->assertMatchesRegularExpression('/^[A-Za-z0-9_-]{43}$/', $secret['option_value']);
        $this->assertSame('no', $secret['autoload'], 'the secret is not autoloaded on every page');
        $this->assertSame('option', BM_Relay_Settings::secret_source());
        $this->assertNotFalse(wp_next_scheduled(BM_Relay_Retention::HOOK));
    }

    public function test_deactivate_and_reactivate_keep_data_and_secret(): void
    {
        $secret = get_option('bm_relay_secret');
        deactivate_plugins('bm-relay/bm-relay.php');
        $this->assertFalse(wp_next_scheduled(BM_Relay_Retention::HOOK), 'deactivation unschedules retention');
        $this->assertCount(1, $this->rows("SHOW TABLES LIKE 'wp_bm_messages'"), 'deactivation keeps the data');
        $this->assertNull(activate_plugin('bm-relay/bm-relay.php'));
        wp_cache_delete('bm_relay_secret', 'options');
        $this->assertSame($secret, get_option('bm_relay_secret'), 'reactivation keeps the secret');
        $this->assertNotFalse(wp_next_scheduled(BM_Relay_Retention::HOOK));
    }

    public function test_upgrade_from_version_1_adds_and_backfills_last_message_id(): void
    {
        global $wpdb;
        $thread = $this->thread('alice', ['bob'], 'upgrade');
        $this->ok($this->rest('POST', "/threads/{$thread['id']}/messages", 'alice', ['text' => 'one']), 201);
        $m2 = $this->ok($this->rest('POST', "/threads/{$thread['id']}/messages", 'bob', ['text' => 'two']), 201)['message']['id'];

        // Put the database back to schema 1: no last_message_id column.
        $wpdb->query('ALTER TABLE wp_bm_threads DROP COLUMN last_message_id');
        update_option(BM_Relay_Schema::OPTION, 1);
        $this->assertNotContains('last_message_id', array_column($this->rows('SHOW COLUMNS FROM wp_bm_threads'), 'Field'));

        // What every request does on plugins_loaded.
        BM_Relay_Schema::maybe_upgrade();

        $this->assertContains('last_message_id', array_column($this->rows('SHOW COLUMNS FROM wp_bm_threads'), 'Field'));
        $this->assertSame((string) $m2, $this->rows("SELECT last_message_id FROM wp_bm_threads WHERE id = {$thread['id']}")[0]['last_message_id'], 'backfilled from the messages');
        $this->assertSame('2', $this->rows("SELECT option_value FROM wp_options WHERE option_name = 'bm_relay_db_version'")[0]['option_value']);
        // And the upgraded thread works: the next message moves it on.
        $m3 = $this->ok($this->rest('POST', "/threads/{$thread['id']}/messages", 'alice', ['text' => 'three']), 201)['message']['id'];
        $this->assertSame((string) $m3, $this->rows("SELECT last_message_id FROM wp_bm_threads WHERE id = {$thread['id']}")[0]['last_message_id']);
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
        foreach (array_merge(array_keys(BM_Relay_Settings::DEFAULTS), ['bm_relay_secret']) as $name) {
            $options[$name] = get_option($name);
        }
        $t = $this->thread('alice', ['bob'], 'Before uninstall');
        deactivate_plugins('bm-relay/bm-relay.php');
        uninstall_plugin('bm-relay/bm-relay.php');

        $this->assertSame([], $this->rows("SHOW TABLES LIKE 'wp_bm_%'"));
        $this->assertSame([], $this->rows("SELECT option_name FROM wp_options WHERE option_name LIKE 'bm\\_relay\\_%'"));
        $this->assertFalse(wp_next_scheduled(BM_Relay_Retention::HOOK));

        // Put the site back as the other tests expect it (same secret, so the
        // running relay's key still matches).
        foreach ($options as $name => $value) {
            if ($value !== false) {
                update_option($name, $value, $name !== 'bm_relay_secret');
            }
        }
        delete_option(BM_Relay_Schema::OPTION);
        $this->assertNull(activate_plugin('bm-relay/bm-relay.php'));
        BM_Relay_Settings::apply();
        $this->assertCount(4, $this->rows("SHOW TABLES LIKE 'wp_bm_%'"));
        $this->assertSame($this->h()->relay_key, bm_relay_key());
        $this->err($this->rest('GET', "/threads/{$t['id']}", 'alice'), 404, 'bm_relay_no_thread');
        $this->thread('alice', ['bob'], 'After reinstall');
    }
}
