<?php
/**
 * bm-relay on a real WordPress network: each blog its own site id and keys
 * (derived from one network secret with the blog id), tables per blog
 * (network activation, new blogs, deleted blogs), relay keys shown only to
 * the network admin, uninstall across the network.
 */

final class MultisiteTest extends BM_WP_TestCase
{
    protected function tearDown(): void
    {
        while (ms_is_switched()) {
            restore_current_blog();
        }
        parent::tearDown();
    }

    private static function b64u(string $raw): string
    {
        return rtrim(strtr(base64_encode($raw), '+/', '-_'), '=');
    }

    private static function b64d(string $text): string
    {
        return (string) base64_decode(strtr($text, '-_', '+/'));
    }

    /** The network secret, read straight from the database. */
    private function network_secret(): string
    {
        return $this->rows("SELECT meta_value FROM wp_sitemeta WHERE meta_key = 'bmr_network_secret'")[0]['meta_value'];
    }

    public function test_the_plugin_derives_blog_secrets_like_the_vectors(): void
    {
        $v = json_decode((string) file_get_contents(dirname(__DIR__, 3) . '/testdata/multisite-v1.json'), true);
        $n = 0;
        foreach ($v['networks'] as $net) {
            foreach ($net['blogs'] as $b) {
                $blog = BM_Relay_Settings::blog_secret(self::b64d($net['network_secret']), $b['blog']);
                $this->assertSame($b['blog_secret'], $blog);
                // And through the bm_relay implementation in use (extension or fallback).
                // (Protocol 1: the vectors' key ids are `t/1/0`, `u/1`.)
                bm_configure(['secret' => $blog, 'site' => 'vectors.example', 'protocol' => 1]);
                $this->assertSame($b['relay_key'], bm_relay_key());
                $this->assertSame($b['thread_key']['key'], bm_thread_key(1, 0));
                $this->assertSame($b['user_key']['key'], bm_user_key(1));
                $n++;
            }
        }
        $this->assertSame(12, $n);
        BM_Relay_Settings::apply();
    }

    public function test_each_blog_is_its_own_site_with_its_own_keys_and_tables(): void
    {
        $h = $this->h();
        $this->assertSame([1, 2, 3], array_keys($h->blogs));
        $network = self::b64d($this->network_secret());
        $this->assertSame(32, strlen($network));
        $seen = ['site' => [], 'relay' => [], 'thread1' => []];
        foreach ($h->blogs as $blog => $b) {
            switch_to_blog($blog);
            $expect_secret = hash_hkdf('sha256', $network, 32, "blog/$blog", 'bm-relay/v1');
            $this->assertSame(self::b64u(hash_hkdf('sha256', $expect_secret, 32, 'relay', 'bm-relay/v1')), bm_relay_key(), "blog $blog relay key");
            $this->assertSame($b['relay_key'], bm_relay_key());
            $this->assertSame($blog === 1 ? '127.0.0.1' : "127.0.0.1-$blog", bm_stats()['site']);
            $prefix = $blog === 1 ? 'wp_' : "wp_{$blog}_";
            $tables = array_map(static fn($r) => (string) current($r), $this->rows("SHOW TABLES LIKE '" . str_replace('_', '\\_', $prefix) . "bmr\\_%'"));
            sort($tables);
            $this->assertSame(["{$prefix}bmr_calls", "{$prefix}bmr_message_meta", "{$prefix}bmr_messages", "{$prefix}bmr_participants", "{$prefix}bmr_threads"], $tables, "blog $blog tables");
            // Thread ids restart per blog; their keys must not.
            $t = $this->thread('alice', ['bob'], "blog $blog");
            $seen['site'][] = bm_stats()['site'];
            $seen['relay'][] = bm_relay_key();
            $seen['thread1'][] = bm_thread_key(1, 0);
            $this->assertSame(bm_thread_key($t['id'], 0), $t['keys']['key']);
            $this->assertNotSame(self::b64u($network), bm_relay_key());
            restore_current_blog();
        }
        foreach ($seen as $what => $list) {
            $this->assertCount(3, array_unique($list), "$what differs per blog");
        }
        $this->assertSame([], $this->rows("SELECT option_name FROM wp_options WHERE option_name = 'bmr_secret'"), 'no per-blog secret stored: derived');
    }

    public function test_a_blogs_events_reach_its_own_users_and_its_keys_sign_for_no_other_blog(): void
    {
        $h = $this->h();
        switch_to_blog(2);
        $t = $this->thread('alice', ['bob'], 'blog two');
        $blog2_secret = BM_Relay_Settings::blog_secret(self::b64d($this->network_secret()), 2);
        $bob = new BM_WP_Subscriber($h, $this->uid('bob'), [$t['id']], 20, $h->blogs[2]['site'], $blog2_secret);
        try {
            $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'hello blog two']), 201);
            $ev = $bob->expect('message.new');
            $this->assertSame('hello blog two', $ev['payload']['data']['text']);
        } finally {
            $bob->close();
        }
        // Blog 2's admin, holding blog 2's keys, tries to act as blog 3: the
        // relay checks blog 3's pushes with blog 3's relay key and refuses.
        bm_configure(['site' => $h->blogs[3]['site'], 'mode' => 'sync']);
        try {
            bm_push(['type' => 'x', 'to' => [$this->uid('bob')]]);
            $this->fail('a push signed with blog 2\'s relay key was accepted for blog 3');
        } catch (BmRelayException $e) {
            $this->assertSame(401, $e->getCode(), $e->getMessage());
        } finally {
            BM_Relay_Settings::apply();
            restore_current_blog();
        }
    }

    public function test_new_blog_gets_tables_and_a_deleted_blog_loses_them(): void
    {
        require_once ABSPATH . 'wp-admin/includes/ms.php';
        $id = wp_insert_site(['domain' => '127.0.0.1:' . $this->h()->http_port, 'path' => '/four/', 'title' => 'Blog four', 'user_id' => 1]);
        $this->assertIsInt($id);
        $this->assertCount(count(BM_Relay_Schema::NAMES), $this->rows("SHOW TABLES LIKE 'wp\\_{$id}\\_bmr\\_%'"), 'tables made on wp_initialize_site');
        $site = $this->rows("SELECT option_value FROM wp_{$id}_options WHERE option_name = 'bmr_site'")[0]['option_value'];
        $this->assertStringEndsWith("-$id", $site, 'a site id of its own');
        $this->assertNotContains($site, array_column($this->h()->blogs, 'site'));
        $this->assertSame((string) BM_Relay_Schema::VERSION, $this->rows("SELECT option_value FROM wp_{$id}_options WHERE option_name = 'bmr_db_version'")[0]['option_value']);
        switch_to_blog($id);
        $this->assertNotSame($this->h()->blogs[1]['relay_key'], bm_relay_key());
        restore_current_blog();
        $this->assertNotFalse(wp_delete_site($id));
        $this->assertSame([], $this->rows("SHOW TABLES LIKE 'wp\\_{$id}\\_bmr\\_%'"), 'dropped with the blog');
    }

    public function test_relay_keys_are_shown_to_the_network_admin_only(): void
    {
        require_once ABSPATH . 'wp-admin/includes/template.php';
        $h = $this->h();
        $dave = $this->uid('dave');
        add_user_to_blog(2, $dave, 'administrator');
        switch_to_blog(2);
        try {
            wp_set_current_user($dave);
            $this->assertTrue(current_user_can('manage_options'), 'dave administers blog 2');
            $this->assertFalse(current_user_can('manage_network_options'));
            ob_start();
            BM_Relay_Admin::render();
            $html = (string) ob_get_clean();
            $this->assertStringContainsString('id="bm-relay-status"', $html, 'the blog admin sees the page');
            foreach ($h->blogs as $b) {
                $this->assertStringNotContainsString($b['relay_key'], $html, 'but no relay key');
            }
            $this->assertStringNotContainsString($this->network_secret(), $html);
            ob_start();
            BM_Relay_Admin::render_network();
            $this->assertSame('', ob_get_clean());
            $this->assertSame([], BM_Relay_Admin::network_sites());

            wp_set_current_user($this->uid('admin'));
            $this->assertTrue(is_super_admin());
            ob_start();
            BM_Relay_Admin::render();
            // The blog's settings page shows no relay key, even to the
            // network admin (its verdict says whether the relay accepts
            // it); the network page below lists them for the relay.
            $this->assertStringNotContainsString($h->blogs[2]['relay_key'], (string) ob_get_clean());
            ob_start();
            BM_Relay_Admin::render_network();
            $net = (string) ob_get_clean();
            foreach ($h->blogs as $b) {
                $this->assertStringContainsString(esc_html($b['site'] . '=' . $b['relay_key']), $net);
            }
            $this->assertStringNotContainsString($this->network_secret(), $net);
        } finally {
            restore_current_blog();
            remove_user_from_blog($dave, 2);
        }
    }

    public function test_network_uninstall_removes_every_blogs_tables_and_options_and_reinstall_works(): void
    {
        $secret = $this->network_secret();
        $keep = [];
        foreach (array_keys($this->h()->blogs) as $blog) {
            foreach (['bmr_url', 'bmr_public_url', 'bmr_admin_url', 'bmr_mode'] as $o) {
                $keep[$blog][$o] = get_blog_option($blog, $o);
            }
        }
        deactivate_plugins('bm-relay/bm-relay.php', false, true);
        uninstall_plugin('bm-relay/bm-relay.php');
        $this->assertSame([], $this->rows("SHOW TABLES LIKE '%bmr\\_%'"));
        foreach (['wp_options', 'wp_2_options', 'wp_3_options'] as $t) {
            $this->assertSame([], $this->rows("SELECT option_name FROM $t WHERE option_name LIKE 'bmr\\_%'"), $t);
        }
        $this->assertSame([], $this->rows("SELECT meta_key FROM wp_sitemeta WHERE meta_key LIKE 'bmr\\_%'"));

        // Back as the other tests expect it: same network secret, same options.
        add_site_option('bmr_network_secret', $secret);
        foreach ($keep as $blog => $opts) {
            foreach ($opts as $o => $v) {
                update_blog_option($blog, $o, $v);
            }
        }
        $this->assertNull(activate_plugin('bm-relay/bm-relay.php', '', true));
        $this->assertCount(3 * count(BM_Relay_Schema::NAMES), $this->rows("SHOW TABLES LIKE '%bmr\\_%'"));
        foreach ($this->h()->blogs as $blog => $b) {
            switch_to_blog($blog);
            $this->assertSame($b['relay_key'], bm_relay_key());
            restore_current_blog();
        }
    }
}
