<?php
/**
 * Personal-data exporter and eraser, retention by WP-Cron, and the relay
 * being down (the message is stored, the request succeeds, catch-up has it).
 */

final class PrivacyRetentionTest extends BM_WP_TestCase
{
    public function test_exporter_and_eraser_are_registered_and_work(): void
    {
        $exporters = apply_filters('wp_privacy_personal_data_exporters', []);
        $erasers = apply_filters('wp_privacy_personal_data_erasers', []);
        $this->assertArrayHasKey('bm-relay', $exporters);
        $this->assertArrayHasKey('bm-relay', $erasers);

        $t = $this->thread('dave', ['carol'], 'Privacy');
        $mine = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'dave', ['text' => 'my data']), 201)['message'];
        $theirs = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'carol', ['text' => 'not dave\'s']), 201)['message'];
        $this->ok($this->rest('POST', "/messages/{$theirs['id']}/reactions", 'dave', ['emoji' => '👀']));

        $texts = [];
        foreach ($this->export_all('dave@example.test') as $item) {
            foreach ($item['data'] as $field) {
                $texts[] = (string) $field['value'];
            }
        }
        $this->assertContains('my data', $texts);
        $this->assertNotContains('not dave\'s', $texts, 'others\' messages are not dave\'s data');
        $this->assertContains('👀', $texts);
        $this->assertSame(['data' => [], 'done' => true], call_user_func($exporters['bm-relay']['callback'], 'nobody@example.test', 1));

        $carol = $this->sub('carol', [$t['id']]);
        $erase = call_user_func($erasers['bm-relay']['callback'], 'dave@example.test', 1);
        $this->assertTrue($erase['items_removed']);
        $this->assertTrue($erase['items_retained'], 'the conversation dave started stays for carol');
        $this->assertStringContainsString('Kept 1 chat conversation this user started', implode(' ', $erase['messages']));
        $this->assertTrue($erase['done']);
        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_messages WHERE sender_id = {$this->uid('dave')}"));
        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_message_meta WHERE user_id = {$this->uid('dave')}"));
        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_participants WHERE user_id = {$this->uid('dave')}"));
        $this->assertCount(1, $this->rows("SELECT * FROM wp_bmr_messages WHERE id = {$theirs['id']}"), 'other people\'s messages stay');
        // (dave may share other threads with carol: pick this thread's events.)
        $of = fn(string $type, callable $is) => array_values(array_filter($carol->events($type), $is));
        $carol->wait(fn() => $of('message.delete', fn($e) => $e['payload']['data']['thread'] === $t['id']) !== [], 5, 'message.delete');
        $this->assertSame($mine['id'], $of('message.delete', fn($e) => $e['payload']['data']['thread'] === $t['id'])[0]['payload']['data']['id'], 'open pages drop the erased message');
        $this->assertSame('1', $this->rows("SELECT epoch FROM wp_bmr_threads WHERE id = {$t['id']}")[0]['epoch'], 'the erased user\'s key is retired');
        $carol->wait(fn() => $of('thread.key', fn($e) => $e['payload']['data']['keys']['thread'] === $t['id']) !== [], 5, 'thread.key');
        $this->assertSame(bm_thread_key($t['id'], 1), $of('thread.key', fn($e) => $e['payload']['data']['keys']['thread'] === $t['id'])[0]['payload']['data']['keys']['key']);
    }

    public function test_a_deleted_account_leaves_its_threads_and_they_are_rekeyed(): void
    {
        require_once ABSPATH . 'wp-admin/includes/user.php';
        $eve = wp_insert_user(['user_login' => 'eve' . wp_rand(), 'user_pass' => 'x-' . wp_rand(), 'user_email' => 'eve' . wp_rand() . '@example.test', 'role' => 'subscriber']);
        $this->assertIsInt($eve);
        $t = $this->thread('alice', ['bob'], 'Eve joins');
        $this->ok($this->rest('POST', "/threads/{$t['id']}/participants", 'alice', ['user_id' => $eve]));
        $bob = $this->sub('bob');
        $this->assertTrue(wp_delete_user($eve));
        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_participants WHERE user_id = $eve"));
        $this->assertSame('1', $this->rows("SELECT epoch FROM wp_bmr_threads WHERE id = {$t['id']}")[0]['epoch']);
        $ev = $bob->expect('thread.key');
        $this->assertSame($eve, $ev['payload']['data']['removed']);
        $this->assertSame(bm_thread_key($t['id'], 1), $ev['payload']['data']['keys']['key']);
    }

    public function test_retention_deletes_old_messages_and_pushes_message_delete(): void
    {
        global $wpdb;
        $t = $this->thread('bob', ['alice'], 'Retention');
        $old = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'bob', ['text' => 'old']), 201)['message'];
        $this->ok($this->rest('POST', "/messages/{$old['id']}/reactions", 'alice', ['emoji' => '👍']));
        $new = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'bob', ['text' => 'new']), 201)['message'];
        $wpdb->query($wpdb->prepare("UPDATE wp_bmr_messages SET created_at = %s WHERE id = %d", gmdate('Y-m-d H:i:s', time() - 40 * DAY_IN_SECONDS), $old['id']));

        update_option('bmr_retention_days', 0);
        $this->assertSame(0, BM_Relay_Retention::run(), '0 days keeps everything');
        $this->assertCount(1, $this->rows("SELECT * FROM wp_bmr_messages WHERE id = {$old['id']}"));

        update_option('bmr_retention_days', 30);
        $alice = $this->sub('alice', [$t['id']]);
        // Run it the way WP-Cron does: through the scheduled hook.
        $this->assertNotFalse(wp_next_scheduled(BM_Relay_Retention::HOOK));
        do_action(BM_Relay_Retention::HOOK);
        update_option('bmr_retention_days', 0);

        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_messages WHERE id = {$old['id']}"));
        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_message_meta WHERE message_id = {$old['id']}"));
        $this->assertCount(1, $this->rows("SELECT * FROM wp_bmr_messages WHERE id = {$new['id']}"), 'recent messages stay');
        $ev = $alice->expect('message.delete');
        $this->assertEquals(['id' => $old['id'], 'thread' => $t['id'], 'seq' => $ev['payload']['data']['seq'] ?? null], $ev['payload']['data']);
        $this->assertIsInt($ev['payload']['data']['seq'], 'numbered in its thread (PROTOCOL.md §4.1)');
        $this->assertCount(1, $alice->settle(0.2));
    }

    public function test_relay_down_message_stored_request_fine_catch_up_has_it(): void
    {
        $h = $this->h();
        $t = $this->thread('alice', ['bob'], 'Outage');
        $h->stop_relay();
        try {
            $t0 = microtime(true);
            $r = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'while the relay is down']), 201);
            $this->assertLessThan(3.0, microtime(true) - $t0, 'bounded by the push timeouts');
            $this->assertFalse($r['pushed']);
            $this->assertSame([], $r['delivered_to']);
            $this->assertNotNull(BM_Relay_Push::$last_error);
            $this->assertStringNotContainsString($h->secret, (string) BM_Relay_Push::$last_error);
            $this->assertSame('while the relay is down', $this->rows("SELECT content FROM wp_bmr_messages WHERE id = {$r['message']['id']}")[0]['content']);
            $this->assertSame('1', $this->rows("SELECT unread_count FROM wp_bmr_participants WHERE thread_id = {$t['id']} AND user_id = {$this->uid('bob')}")[0]['unread_count']);
            $stats = bm_stats();
            $this->assertGreaterThan(0, $stats['failed']);
            // Every other write also succeeds.
            $this->ok($this->rest('PATCH', "/messages/{$r['message']['id']}", 'alice', ['text' => 'edited offline']));
            $this->ok($this->rest('POST', "/threads/{$t['id']}/read", 'bob'));
            $this->ok($this->rest('POST', '/threads', 'bob', ['participants' => [$this->uid('carol')]]), 201);
            $this->ok($this->rest('DELETE', "/threads/{$t['id']}/participants/{$this->uid('bob')}", 'alice'));
            $this->assertSame('1', $this->rows("SELECT epoch FROM wp_bmr_threads WHERE id = {$t['id']}")[0]['epoch']);
        } finally {
            $h->start_relay();
        }
        // Back up: a reconnecting browser catches up from WordPress.
        $catch = $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'alice', [], ['after' => 0]));
        $this->assertSame('edited offline', $catch['messages'][0]['text']);
        $alice = $this->sub('alice');
        $this->assertTrue($this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'back']), 201)['pushed']);
        $this->assertSame('back', $alice->expect('message.new')['payload']['data']['text']);
    }

    public function test_async_mode_queues_and_flushes(): void
    {
        $t = $this->thread('carol', ['dave'], 'Async');
        $dave = $this->sub('dave');
        update_option('bmr_mode', 'async');
        BM_Relay_Settings::apply();
        try {
            $r = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'carol', ['text' => 'queued']), 201);
            $this->assertFalse($r['pushed'], 'async: nothing known about delivery yet');
            $this->assertTrue(bm_flush(2000));
            $this->assertSame('queued', $dave->expect('message.new')['payload']['data']['text']);
        } finally {
            update_option('bmr_mode', 'sync');
            BM_Relay_Settings::apply();
        }
    }

    public function test_fallback_pushes_over_one_keep_alive_connection(): void
    {
        if ((new ReflectionFunction('bm_push'))->isInternal()) {
            $this->markTestSkipped('the extension has its own keep-alive client (tested in php-tests/api)');
        }
        $t = $this->thread('bob', ['carol'], 'Keep-alive');
        $before = BM_Relay_Fallback::connects();
        for ($i = 0; $i < 5; $i++) {
            $this->assertTrue($this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'bob', ['text' => "k$i"]), 201)['pushed']);
        }
        $this->assertLessThanOrEqual(1, BM_Relay_Fallback::connects() - $before, 'five pushes, at most one new TCP connection');
    }

    public function test_without_relay_settings_messages_are_stored_and_token_says_unconfigured(): void
    {
        $t = $this->thread('carol', ['dave'], 'Unconfigured');
        $url = get_option('bmr_url');
        $secret = get_option('bmr_secret');
        update_option('bmr_url', '');
        bm_configure(['url' => null]);
        BM_Relay_Settings::apply();
        try {
            $r = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'carol', ['text' => 'no relay url']), 201);
            $this->assertFalse($r['pushed']);
            $this->assertStringContainsString('bm_relay.url is not set', (string) BM_Relay_Push::$last_error);
            $this->assertCount(1, $this->rows("SELECT * FROM wp_bmr_messages WHERE id = {$r['message']['id']}"));

            // No secret anywhere (a fresh request over HTTP; this process keeps
            // its configured secret): keys are withheld, /token explains,
            // messages are still stored.
            delete_option('bmr_secret');
            $this->assertSame('none', BM_Relay_Settings::secret_source());
            $http = $this->h()->login('carol');
            $nonce = $http->nonce();
            [$code, $body] = $http->rest('POST', '/token', null, $nonce);
            $this->assertSame(503, $code, json_encode($body));
            $this->assertSame('bm_relay_unconfigured', $body['code']);
            [$code, $body] = $http->rest('GET', "/threads/{$t['id']}", null, $nonce);
            $this->assertSame(200, $code);
            $this->assertNull($body['thread']['keys']);
            [$code, $body] = $http->rest('POST', "/threads/{$t['id']}/messages", ['text' => 'still stored'], $nonce);
            $this->assertSame(201, $code, json_encode($body));
            $this->assertFalse($body['pushed']);
            $this->assertSame('still stored', $this->rows("SELECT content FROM wp_bmr_messages WHERE id = {$body['message']['id']}")[0]['content']);
        } finally {
            update_option('bmr_url', $url);
            add_option('bmr_secret', $secret, '', false);
            BM_Relay_Settings::apply();
        }
        $this->assertSame($this->h()->relay_key, bm_relay_key());
        $this->assertTrue($this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'carol', ['text' => 'configured again']), 201)['pushed']);
    }

    /**
     * Every item of a user's export, page by page as WordPress asks; each
     * page holds at most 100 items.
     *
     * @return list<array>
     */
    private function export_all(string $email): array
    {
        $exporters = apply_filters('wp_privacy_personal_data_exporters', []);
        $items = [];
        for ($page = 1; $page < 100; $page++) {
            $r = call_user_func($exporters['bm-relay']['callback'], $email, $page);
            $this->assertLessThanOrEqual(100, count($r['data']), "export page $page");
            array_push($items, ...$r['data']);
            if ($r['done']) {
                return $items;
            }
        }
        $this->fail('the export never said done');
    }

    public function test_exporter_pages_reactions_too(): void
    {
        $login = 'frank' . bin2hex(random_bytes(2));
        $frank = wp_insert_user(['user_login' => $login, 'user_pass' => wp_generate_password(), 'user_email' => "$login@example.test", 'display_name' => 'Frank', 'role' => 'subscriber']);
        $this->h()->users[$login] = $frank;
        $t = $this->thread($login, ['bob'], 'Many reactions');
        for ($i = 0; $i < 3; $i++) {
            $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", $login, ['text' => "frank $i"]), 201);
        }
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'bob', ['text' => 'react to me']), 201)['message'];
        global $wpdb;
        for ($i = 0; $i < 150; $i++) {
            $wpdb->query($wpdb->prepare("INSERT INTO wp_bmr_message_meta (message_id, user_id, meta_key, meta_value, created_at) VALUES (%d, %d, 'reaction', %s, %s)", $m['id'], $frank, "r$i", gmdate('Y-m-d H:i:s')));
        }
        $items = $this->export_all("$login@example.test");
        $groups = array_count_values(array_column($items, 'group_id'));
        $this->assertSame(['bm-relay-messages' => 3, 'bm-relay-reactions' => 150], $groups);
        $this->assertCount(153, array_unique(array_column($items, 'item_id')), 'no item twice');
        require_once ABSPATH . 'wp-admin/includes/user.php';
        wp_delete_user($frank);
    }

    public function test_retention_deletes_everything_due_recounts_unread_and_reschedules(): void
    {
        global $wpdb;
        $t = $this->thread('bob', ['alice'], 'Years of chat');
        $recent = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'bob', ['text' => 'recent']), 201)['message'];
        // 10,600 messages from 40 days ago (more than 10,000), stored as
        // the REST route would: the thread's last message, alice's unread.
        $old = gmdate('Y-m-d H:i:s', time() - 40 * DAY_IN_SECONDS);
        $wpdb->query($wpdb->prepare(
            "INSERT INTO wp_bmr_messages (thread_id, sender_id, content, created_at) SELECT %d, %d, CONCAT('old ', seq), %s FROM seq_1_to_10600",
            $t['id'],
            $this->uid('bob'),
            $old
        ));
        $last = (int) $wpdb->get_var($wpdb->prepare('SELECT MAX(id) FROM wp_bmr_messages WHERE thread_id = %d', $t['id']));
        $wpdb->query($wpdb->prepare('UPDATE wp_bmr_threads SET last_message_id = %d WHERE id = %d', $last, $t['id']));
        $wpdb->query($wpdb->prepare('UPDATE wp_bmr_participants SET unread_count = 10601 WHERE thread_id = %d AND user_id = %d', $t['id'], $this->uid('alice')));
        wp_clear_scheduled_hook(BM_Relay_Retention::HOOK);

        update_option('bmr_retention_days', 30);
        try {
            $this->assertSame(10600, BM_Relay_Retention::run(), 'everything due, in one run');
        } finally {
            update_option('bmr_retention_days', 0);
        }
        $this->assertSame([['id' => (string) $recent['id']]], $this->rows("SELECT id FROM wp_bmr_messages WHERE thread_id = {$t['id']}"));
        $this->assertSame((string) $recent['id'], $this->rows("SELECT last_message_id FROM wp_bmr_threads WHERE id = {$t['id']}")[0]['last_message_id'], 'the last message is one that exists');
        $this->assertSame('1', $this->rows("SELECT unread_count FROM wp_bmr_participants WHERE thread_id = {$t['id']} AND user_id = {$this->uid('alice')}")[0]['unread_count'], 'unread counts only what is left');
        $this->assertNotFalse(wp_next_scheduled(BM_Relay_Retention::HOOK), 'the daily run reschedules itself');
        $list = $this->ok($this->rest('GET', '/threads', 'alice'))['threads'];
        $mine = array_values(array_filter($list, fn($x) => $x['id'] === $t['id']))[0];
        $this->assertSame(1, $mine['unread']);
        $this->assertSame('recent', $mine['last_message']['text']);
    }
}
