<?php
/**
 * Threads, membership and tokens over REST bm/v1: good and bad input,
 * rows in MariaDB, events opened by real subscribers.
 */

final class RestThreadsTest extends BM_WP_TestCase
{
    public function test_every_route_refuses_logged_out_missing_and_foreign_nonces(): void
    {
        $t = $this->thread('alice', ['bob']);
        $routes = [
            ['GET', '/threads'], ['POST', '/threads'], ['GET', "/threads/{$t['id']}"],
            ['POST', "/threads/{$t['id']}/participants"], ['DELETE', "/threads/{$t['id']}/participants/{$this->uid('bob')}"],
            ['GET', "/threads/{$t['id']}/messages"], ['POST', "/threads/{$t['id']}/messages"],
            ['POST', "/threads/{$t['id']}/read"], ['PATCH', '/messages/1'], ['DELETE', '/messages/1'],
            ['POST', '/messages/1/reactions'], ['POST', '/token'], ['GET', "/threads/{$t['id']}/presence"], ['GET', '/users'],
        ];
        wp_set_current_user($this->uid('bob'));
        $bobs_nonce = wp_create_nonce('wp_rest');
        foreach ($routes as [$method, $route]) {
            $this->err($this->rest($method, $route, null, ['text' => 'x']), 401, 'bm_relay_not_logged_in');
            $this->err($this->rest($method, $route, 'alice', ['text' => 'x'], [], false), 403, 'bm_relay_bad_nonce');
            $this->err($this->rest($method, $route, 'alice', ['text' => 'x'], [], 'abc123'), 403, 'bm_relay_bad_nonce');
            $this->err($this->rest($method, $route, 'alice', ['text' => 'x'], [], $bobs_nonce), 403, 'bm_relay_bad_nonce');
        }
        // Nothing was written by any refused call.
        $this->assertSame('0', $this->rows("SELECT COUNT(*) n FROM wp_bmr_messages WHERE thread_id = {$t['id']}")[0]['n']);
        $this->assertCount(2, $this->rows("SELECT * FROM wp_bmr_participants WHERE thread_id = {$t['id']}"));
    }

    public function test_capability_filter_locks_users_out(): void
    {
        $deny = static fn() => 'manage_options';
        add_filter('bm_relay_chat_capability', $deny);
        try {
            $this->err($this->rest('GET', '/threads', 'alice'), 403, 'bm_relay_forbidden');
            $this->ok($this->rest('GET', '/threads', 'admin'));
        } finally {
            remove_filter('bm_relay_chat_capability', $deny);
        }
    }

    public function test_create_thread_stores_members_and_sends_thread_added_sealed_for_the_new_member(): void
    {
        $bob = $this->sub('bob');
        $carol = $this->sub('carol');
        $alice = $this->sub('alice');
        $t = $this->thread('alice', ['bob', 'carol', 'bob'], 'Lunch');
        $this->assertSame('Lunch', $t['subject']);
        $this->assertSame([$this->uid('alice'), $this->uid('bob'), $this->uid('carol')], array_column($t['participants'], 'id'));
        $this->assertSame('Bob', $t['participants'][1]['name']);
        $this->assertSame(0, $t['epoch']);
        $this->assertSame(bm_thread_key($t['id'], 0), $t['keys']['key']);
        $this->assertSame(BM_Relay_Ids::thread_kid($t['id'], 0), $t['keys']['kid'], 'the key id the relay sees (the thread pseudonym)');

        $rows = $this->rows("SELECT user_id, unread_count, key_epoch FROM wp_bmr_participants WHERE thread_id = {$t['id']} ORDER BY user_id");
        $this->assertSame([(string) $this->uid('alice'), (string) $this->uid('bob'), (string) $this->uid('carol')], array_column($rows, 'user_id'));
        $this->assertSame('Lunch', $this->rows("SELECT subject FROM wp_bmr_threads WHERE id = {$t['id']}")[0]['subject']);

        $ev = $bob->expect('thread.added');
        $this->assertSame(BM_Relay_Ids::user_kid($this->uid('bob')), $ev['k'], 'sealed with bob\'s user key');
        $this->assertSame($t['id'], $ev['payload']['data']['thread']['id']);
        $this->assertSame(bm_thread_key($t['id'], 0), $ev['payload']['data']['keys']['key']);
        $this->assertSame(BM_Relay_Ids::thread($t['id']), $this->claims($ev['payload']['data']['keys']['token'])['thread']);
        $this->assertSame((string) BM_Relay_Ids::user($this->uid('bob')), $this->claims($ev['payload']['data']['keys']['token'])['sub']);
        $this->assertSame(BM_Relay_Ids::user_kid($this->uid('carol')), $carol->expect('thread.added')['k']);
        $this->assertSame(BM_Relay_Ids::user_kid($this->uid('alice')), $alice->expect('thread.added')['k'], 'the creator\'s other tabs learn of it');
        $this->assertCount(1, $bob->settle(0.2), 'bob gets only his own thread.added');
    }

    public function test_create_thread_with_first_message_and_bad_input(): void
    {
        $t = $this->ok($this->rest('POST', '/threads', 'alice', ['participants' => [$this->uid('dave')], 'text' => 'hi dave']), 201)['thread'];
        $this->assertSame('hi dave', $t['last_message']['text']);
        $this->assertSame('1', $this->rows("SELECT unread_count FROM wp_bmr_participants WHERE thread_id = {$t['id']} AND user_id = {$this->uid('dave')}")[0]['unread_count']);

        $before = $this->rows('SELECT COUNT(*) n FROM wp_bmr_threads')[0]['n'];
        $bad = [
            [[], 'participants'],
            [['participants' => []], 'participants'],
            [['participants' => 'bob'], 'participants'],
            [['participants' => [$this->uid('alice')]], 'participants'],
            [['participants' => [0]], 'participants[0]'],
            [['participants' => [-3]], 'participants[0]'],
            [['participants' => ['1 OR 1=1']], 'participants[0]'],
            [['participants' => [1.5]], 'participants[0]'],
            [['participants' => [99999999999999999]], 'participants[0]'],
            [['participants' => [987654]], 'participants[0]'],
            [['participants' => range(1, 1001)], 'participants'],
            [['participants' => [$this->uid('bob')], 'subject' => str_repeat('s', 201)], 'subject'],
            [['participants' => [$this->uid('bob')], 'subject' => ['x']], 'subject'],
            [['participants' => [$this->uid('bob')], 'text' => ''], 'text'],
        ];
        foreach ($bad as [$body, $param]) {
            $r = $this->rest('POST', '/threads', 'alice', $body);
            $this->err($r, 400, 'bm_relay_invalid_param');
            $this->assertSame($param, $r[1]['data']['param'], json_encode($body));
            $this->assertStringContainsString($param, $r[1]['message']);
        }
        $this->err($this->rest('POST', '/threads', 'alice', ['participants' => [$this->uid('bob')], 'text' => str_repeat('é', 5001)]), 413, 'bm_relay_too_long');
        $this->assertSame($before, $this->rows('SELECT COUNT(*) n FROM wp_bmr_threads')[0]['n'], 'no thread stored by bad input');
    }

    public function test_list_and_get_threads_only_for_members_with_current_keys(): void
    {
        $t1 = $this->thread('carol', ['dave'], 'first');
        $t2 = $this->thread('dave', ['bob'], 'second');
        $this->ok($this->rest('POST', "/threads/{$t1['id']}/messages", 'carol', ['text' => 'latest']), 201);
        $list = $this->ok($this->rest('GET', '/threads', 'dave'))['threads'];
        $ids = array_column($list, 'id');
        $this->assertSame($t1['id'], $ids[0], 'most recent activity first');
        $this->assertContains($t2['id'], $ids);
        $first = $list[0];
        $this->assertSame(1, $first['unread']);
        $this->assertSame('latest', $first['last_message']['text']);
        $this->assertSame(bm_thread_key($t1['id'], $first['epoch']), $first['keys']['key']);

        $this->assertNotContains($t1['id'], array_column($this->ok($this->rest('GET', '/threads', 'bob'))['threads'], 'id'));

        // The list costs a fixed number of queries, not a few per thread.
        for ($i = 0; $i < 12; $i++) {
            $x = $this->thread('dave', ['alice'], "bulk $i");
            $this->ok($this->rest('POST', "/threads/{$x['id']}/messages", 'alice', ['text' => "bulk $i"]), 201);
        }
        global $wpdb;
        wp_set_current_user($this->uid('dave'));
        $req = new WP_REST_Request('GET', '/bm/v1/threads');
        $req->set_header('X-WP-Nonce', wp_create_nonce('wp_rest'));
        $req->set_query_params(['per_page' => '2']);
        $q0 = $wpdb->num_queries;
        $two_threads = rest_do_request($req)->get_data();
        $this->assertCount(2, $two_threads['threads']);
        $this->assertTrue($two_threads['has_more'], 'a page says whether another follows');
        $two = $wpdb->num_queries - $q0;
        $req->set_query_params(['per_page' => '14']);
        $q0 = $wpdb->num_queries;
        $this->assertCount(14, rest_do_request($req)->get_data()['threads']);
        $this->assertSame($two, $wpdb->num_queries - $q0, 'queries for 14 threads = queries for 2');
        $this->err($this->rest('GET', "/threads/{$t1['id']}", 'bob'), 403, 'bm_relay_not_member');
        $this->ok($this->rest('GET', "/threads/{$t1['id']}", 'dave'));
        $this->err($this->rest('GET', '/threads/99999999', 'dave'), 404, 'bm_relay_no_thread');
        $this->err($this->rest('GET', '/threads/0', 'dave'), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', '/threads/99999999999999999999', 'dave'), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', '/threads/abc', 'dave'), 404, 'rest_no_route');
        $this->err($this->rest('GET', '/threads', 'dave', [], ['per_page' => '500']), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', '/threads', 'dave', [], ['page' => 'x']), 400, 'bm_relay_invalid_param');
    }

    public function test_token_gives_connection_token_user_key_and_thread_tokens(): void
    {
        $t = $this->thread('bob', ['carol']);
        $tok = $this->ok($this->rest('POST', '/token', 'carol'));
        $this->assertSame($this->h()->ws_url, $tok['url']);
        $this->assertSame($this->h()->site, $tok['site']);
        $this->assertSame($this->uid('carol'), $tok['user']);
        $c = $this->claims($tok['token']);
        $this->assertSame(['site', 'sub', 'v', 'iat', 'exp'], array_keys($c), 'a protocol 2 token');
        $this->assertSame((string) BM_Relay_Ids::user($this->uid('carol')), $c['sub']);
        $this->assertSame(bm_user_key($this->uid('carol')), $tok['user_key']['key']);
        $mine = array_values(array_filter($tok['threads'], fn($x) => $x['thread'] === $t['id']));
        $this->assertCount(1, $mine);
        $this->assertSame(BM_Relay_Ids::thread($t['id']), $this->claims($mine[0]['token'])['thread']);
        // The tokens really work on the relay: connect and subscribe with them.
        $s = new BM_WP_Subscriber($this->h(), $this->uid('carol'), [$t['id']]);
        $this->assertSame(1, $s->count('ready'));
        $s->close();
    }

    /**
     * The relay refuses thread tokens issued in or before the second of a
     * revocation (PROTOCOL.md §6): a member removed and re-added at once
     * must still be handed a token the relay accepts.
     */
    public function test_a_member_re_added_in_the_same_second_gets_a_token_the_relay_accepts(): void
    {
        $t = $this->thread('alice', ['bob']);
        $bob = $this->uid('bob');
        $this->ok($this->rest('DELETE', "/threads/{$t['id']}/participants/{$bob}", 'alice'));
        $this->ok($this->rest('POST', "/threads/{$t['id']}/participants", 'alice', ['user_id' => $bob]));
        $keys = $this->ok($this->rest('GET', "/threads/{$t['id']}", 'bob'))['thread']['keys'];
        // The relay accepts it: the subscription with that token is
        // acknowledged. (Before the plugin waited out the revocation's
        // second, this failed whenever removal and re-add fell in one
        // second, i.e. nearly always here.)
        $s = new BM_WP_Subscriber($this->h(), $bob, [$t['id']], 20, null, null, [$t['id'] => $keys['token']]);
        $s->close();
        $claims = json_decode(base64_decode(strtr(explode('.', $keys['token'])[1], '-_', '+/')), true);
        $this->assertGreaterThan($this->revoked_at($bob, $t['id']), $claims['iat'], 'iat after the revocation second');
    }

    /** The second the plugin recorded for the relay's revocation of $user in $thread. */
    private function revoked_at(int $user, int $thread): int
    {
        $recent = (array) get_option('bmr_recent_revocations', []);
        $this->assertArrayHasKey("{$user}/{$thread}", $recent, 'the revocation was recorded');
        return (int) $recent["{$user}/{$thread}"];
    }

    public function test_add_and_remove_participants_bumps_epoch_rekeys_and_revokes(): void
    {
        $t = $this->thread('alice', ['bob']);
        $this->err($this->rest('POST', "/threads/{$t['id']}/participants", 'bob', ['user_id' => $this->uid('carol')]), 403, 'bm_relay_forbidden');
        $this->err($this->rest('POST', "/threads/{$t['id']}/participants", 'alice', ['user_id' => 'x']), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('POST', "/threads/{$t['id']}/participants", 'alice', ['user_id' => 424242]), 400, 'bm_relay_invalid_param');
        $carol = $this->sub('carol');
        $added = $this->ok($this->rest('POST', "/threads/{$t['id']}/participants", 'alice', ['user_id' => $this->uid('carol')]));
        $this->assertTrue($added['added']);
        $this->assertSame(bm_thread_key($t['id'], 0), $carol->expect('thread.added')['payload']['data']['keys']['key']);

        $bob = $this->sub('bob', [$t['id']]);
        $alice = $this->sub('alice');
        $this->err($this->rest('DELETE', "/threads/{$t['id']}/participants/{$this->uid('bob')}", 'carol'), 403, 'bm_relay_forbidden');
        $r = $this->ok($this->rest('DELETE', "/threads/{$t['id']}/participants/{$this->uid('bob')}", 'alice'));
        $this->assertSame(1, $r['epoch']);
        $this->assertSame('1', $this->rows("SELECT epoch FROM wp_bmr_threads WHERE id = {$t['id']}")[0]['epoch']);
        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_participants WHERE thread_id = {$t['id']} AND user_id = {$this->uid('bob')}"));
        $this->assertSame(['1', '1'], array_column($this->rows("SELECT key_epoch FROM wp_bmr_participants WHERE thread_id = {$t['id']}"), 'key_epoch'));

        // bob's subscription is revoked by the relay, and he is told.
        $bob->wait(fn() => count(array_filter($bob->frames, fn($f) => ($f['op'] ?? '') === 'unsub' && ($f['thread'] ?? 0) === BM_Relay_Ids::thread($t['id']))) === 1, 5, 'unsub frame');
        $this->assertSame($t['id'], $bob->expect('thread.removed')['payload']['data']['thread']);
        // The others get the new key, each sealed with their own user key.
        $rekey = $alice->expect('thread.key');
        $this->assertSame(BM_Relay_Ids::user_kid($this->uid('alice')), $rekey['k']);
        $this->assertSame(1, $rekey['payload']['data']['keys']['epoch']);
        $this->assertSame(bm_thread_key($t['id'], 1), $rekey['payload']['data']['keys']['key']);
        $this->assertNotSame(bm_thread_key($t['id'], 0), $rekey['payload']['data']['keys']['key']);
        $this->assertSame(bm_thread_key($t['id'], 1), $carol->expect('thread.key')['payload']['data']['keys']['key']);

        // New messages use epoch 1; bob cannot read or post any more.
        $alice2 = $this->sub('alice', [$t['id']]);
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'after bob left']), 201);
        $this->assertSame(BM_Relay_Ids::thread_kid($t['id'], 1), $alice2->expect('message.new')['k']);
        $this->err($this->rest('GET', "/threads/{$t['id']}/messages", 'bob'), 403, 'bm_relay_not_member');
        $this->err($this->rest('POST', "/threads/{$t['id']}/messages", 'bob', ['text' => 'hello?']), 403, 'bm_relay_not_member');
        $this->err($this->rest('DELETE', "/threads/{$t['id']}/participants/{$this->uid('bob')}", 'alice'), 404, 'bm_relay_not_member');

        // A member may leave on their own.
        $this->ok($this->rest('DELETE', "/threads/{$t['id']}/participants/{$this->uid('carol')}", 'carol'));
        $this->assertSame('2', $this->rows("SELECT epoch FROM wp_bmr_threads WHERE id = {$t['id']}")[0]['epoch']);
    }

    /** Claims of a JWT (payload only; the relay checks signatures for real). */
    private function claims(string $jwt): array
    {
        $parts = explode('.', $jwt);
        $this->assertCount(3, $parts);
        $this->assertSame('{"alg":"HS256","typ":"JWT"}', base64_decode(strtr($parts[0], '-_', '+/')));
        return json_decode(base64_decode(strtr($parts[1], '-_', '+/')), true);
    }

    public function test_presence_of_thread_members_comes_from_the_relay(): void
    {
        $t = $this->thread('alice', ['bob', 'carol']);
        // Subscribers of earlier tests are closing; the relay notices within moments.
        $online = fn() => $this->ok($this->rest('GET', "/threads/{$t['id']}/presence", 'alice'))['online'];
        $deadline = microtime(true) + 3;
        while ($online() !== [] && microtime(true) < $deadline) {
            usleep(50000);
        }
        $this->assertSame([], $online(), 'nobody connected');
        $bob = $this->sub('bob');
        $this->assertSame([$this->uid('bob')], $online());
        $bob->close();
        // All threads at once: one request, one question to the relay.
        $other = $this->thread('alice', ['dave'], 'other');
        $carols = $this->thread('carol', ['dave'], 'not alice\'s');
        $bob2 = $this->sub('bob');
        $many = $this->ok($this->rest('GET', '/presence', 'alice', [], ['threads' => "{$t['id']},{$other['id']},{$carols['id']}"]))['online'];
        $this->assertSame([(string) $t['id'] => [$this->uid('bob')], (string) $other['id'] => []], $many, 'only her own threads');
        $bob2->close();
        $this->err($this->rest('GET', '/presence', 'alice', [], ['threads' => 'x']), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', '/presence', 'alice', [], ['threads' => implode(',', range(1, 51))]), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', "/threads/{$t['id']}/presence", 'dave'), 403, 'bm_relay_not_member');
        $this->err($this->rest('GET', '/threads/x1/presence', 'alice'), 404, 'rest_no_route');
    }

    public function test_user_search_gives_names_and_avatars_only(): void
    {
        $r = $this->ok($this->rest('GET', '/users', 'alice', [], ['search' => 'car']));
        $this->assertSame([['id', 'name', 'avatar']], array_map('array_keys', $r['users']));
        $this->assertSame($this->uid('carol'), $r['users'][0]['id']);
        $this->assertSame('Carol', $r['users'][0]['name']);
        $this->assertSame([], $this->ok($this->rest('GET', '/users', 'alice', [], ['search' => 'Alice']))['users'], 'not yourself');
        $this->assertStringNotContainsString('@example.test', json_encode($this->ok($this->rest('GET', '/users', 'bob', [], ['search' => 'ca']))));
        foreach ([[], ['search' => 'a'], ['search' => str_repeat('a', 61)], ['search' => ['x']]] as $q) {
            $this->err($this->rest('GET', '/users', 'alice', [], $q), 400, 'bm_relay_invalid_param');
        }
    }
}
