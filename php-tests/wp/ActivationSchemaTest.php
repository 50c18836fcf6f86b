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
}
