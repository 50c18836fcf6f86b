<?php
/**
 * A slow or absent relay does not slow WordPress down: one push request
 * per change whatever the thread's size, a bounded wait per request, no
 * further waiting after a first failure, and a removal's revocation
 * retried by WP-Cron until the relay confirms it.
 */

final class SlowRelayTest extends BM_WP_TestCase
{
    /** @var resource|null a TCP listener that accepts connections and never answers */
    private $hung = null;

    /** @var list<int> the 49 extra members of the big thread */
    private static array $crowd = [];

    protected function tearDown(): void
    {
        update_option('bmr_url', $this->h()->relay_url);
        if ($this->hung) {
            fclose($this->hung);
            $this->hung = null;
        }
        parent::tearDown();
    }

    /** Points WordPress at a relay that takes connections and never answers. */
    private function hang_relay(): void
    {
        // The kernel completes the TCP handshake for a listening socket's
        // backlog; nobody ever reads or answers.
        $this->hung = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
        $this->assertNotFalse($this->hung, $errstr);
        update_option('bmr_url', 'http://' . stream_socket_get_name($this->hung, false));
        BM_Relay_Settings::apply();
    }

    /** 49 users besides alice: a thread of 50. */
    private function crowd(): array
    {
        if (!self::$crowd) {
            for ($i = 0; $i < 49; $i++) {
                $login = 'crowd' . $i . '_' . bin2hex(random_bytes(2));
                $id = wp_insert_user(['user_login' => $login, 'user_pass' => wp_generate_password(), 'user_email' => "$login@example.test", 'role' => 'subscriber']);
                $this->assertIsInt($id);
                self::$crowd[] = $id;
            }
        }
        return self::$crowd;
    }

    /**
     * The REST calls of a thread's life, each timed (seconds).
     *
     * @return array<string,float>
     */
    private function timed_calls(string $label): array
    {
        $times = [];
        $time = function (string $what, callable $call) use (&$times) {
            $t0 = microtime(true);
            $r = $call();
            $times[$what] = microtime(true) - $t0;
            return $r;
        };
        $crowd = $this->crowd();
        $t = $time('create', fn() => $this->ok($this->rest('POST', '/threads', 'alice', ['participants' => $crowd, 'subject' => $label, 'text' => 'hello all']), 201)['thread']);
        $m = $time('send', fn() => $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'second']), 201)['message']);
        $time('react', fn() => $this->ok($this->rest('POST', "/messages/{$m['id']}/reactions", 'alice', ['emoji' => '👍'])));
        $time('edit', fn() => $this->ok($this->rest('PATCH', "/messages/{$m['id']}", 'alice', ['text' => 'edited'])));
        $time('read', fn() => $this->ok($this->rest('POST', "/threads/{$t['id']}/read", 'alice')));
        $time('remove', fn() => $this->ok($this->rest('DELETE', "/threads/{$t['id']}/participants/{$crowd[0]}", 'alice')));
        $time('add', fn() => $this->ok($this->rest('POST', "/threads/{$t['id']}/participants", 'alice', ['user_id' => $this->uid('bob')])));
        $time('delete', fn() => $this->ok($this->rest('DELETE', "/messages/{$m['id']}", 'alice')));
        return $times;
    }

    public function test_with_the_relay_hung_every_call_on_a_50_member_thread_takes_at_most_1s_more(): void
    {
        $normal = $this->timed_calls('relay up');
        $this->hang_relay();
        $hung = $this->timed_calls('relay hung');
        foreach ($normal as $what => $secs) {
            $this->assertLessThan($secs + 1.0, $hung[$what], sprintf('%s took %.2f s with the relay hung, %.2f s normally', $what, $hung[$what], $secs));
        }
    }

    /**
     * The push URL field takes a comma-separated list (checked entry by
     * entry, a bad list keeps the old value), and with a hung relay first
     * the messages still reach the live one, within the bounded wait.
     */
    public function test_a_push_url_list_with_a_hung_relay_first_fails_over_to_the_live_one(): void
    {
        if (!function_exists('add_settings_error')) {
            require_once ABSPATH . 'wp-admin/includes/template.php';
        }
        BM_Relay_Admin::register_settings(); // as admin_init does: the field's sanitizer
        // The live relay under a name this process has not used: the
        // extension remembers per URL which one answered last, and the
        // usual name did in the tests before.
        $live = str_replace('127.0.0.1', 'localhost', $this->h()->relay_url);
        $this->hung = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
        $this->assertNotFalse($this->hung, $errstr);
        $hung = 'http://' . stream_socket_get_name($this->hung, false);
        $this->assertSame("$hung,$live", sanitize_option('bmr_url', " $hung/ , $live "), 'trimmed, no trailing slash');
        update_option('bmr_url', "$hung,$live");
        $this->assertSame("$hung,$live", get_option('bmr_url'));
        foreach (["$hung,,$live" => 'URL 2 of 3', "$hung,http://user:pw@h:1" => 'must not contain credentials', "$live,$live/" => 'is listed twice'] as $bad => $why) {
            $this->assertSame("$hung,$live", sanitize_option('bmr_url', $bad), "$bad is refused, the old value kept");
            $errors = get_settings_errors('bmr_url');
            $this->assertStringContainsString($why, (string) end($errors)['message']);
            $this->assertStringNotContainsString('pw@', (string) end($errors)['message']);
        }
        BM_Relay_Settings::apply();
        bm_configure(['timeout_ms' => 1000]);
        $t = $this->thread('alice', ['bob'], 'failover');
        $bob = $this->sub('bob', [$t['id']]);
        $t0 = microtime(true);
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'past the hung relay']), 201);
        $this->assertLessThan(1.0 + 2.0, microtime(true) - $t0, 'one bounded wait, not one per URL');
        $bob->wait(fn() => $bob->count('ev') >= 1, 5, 'the message on the live relay');
        $relays = array_column(bm_stats()['relays'], null, 'url');
        $this->assertSame(1, $relays[$hung]['unreachable'], 'tried once, then passed over');
        $this->assertGreaterThanOrEqual(2, $relays[$live]['answered']);
    }

    public function test_creating_a_50_member_thread_is_one_push_request(): void
    {
        $before = bm_stats()['batches'];
        $this->ok($this->rest('POST', '/threads', 'alice', ['participants' => $this->crowd(), 'subject' => 'one push']), 201);
        $this->assertSame(1, bm_stats()['batches'] - $before, 'one push request for 50 thread.added events');
    }

    public function test_a_removal_is_revoked_on_the_relay_by_cron_once_it_answers_again(): void
    {
        // (Relay-down tests before this one may have left revocations to retry.)
        delete_option(BM_Relay_Push::PENDING_OPTION);
        wp_clear_scheduled_hook(BM_Relay_Push::RETRY_HOOK);
        $t = $this->thread('alice', ['bob', 'carol'], 'revocation');
        $bob = $this->sub('bob', [$t['id']]);
        $this->hang_relay();
        $t0 = microtime(true);
        $this->ok($this->rest('DELETE', "/threads/{$t['id']}/participants/{$this->uid('bob')}", 'alice'));
        $this->assertLessThan(1.5, microtime(true) - $t0);
        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_participants WHERE thread_id = {$t['id']} AND user_id = {$this->uid('bob')}"), 'removed in WordPress at once');
        wp_cache_delete(BM_Relay_Push::PENDING_OPTION, 'options');
        $pending = get_option(BM_Relay_Push::PENDING_OPTION);
        $this->assertSame([$this->uid('bob') . '/' . $t['id']], array_keys((array) $pending), 'the revocation is kept');
        $this->assertNotFalse(wp_next_scheduled(BM_Relay_Push::RETRY_HOOK), 'and a retry scheduled');
        $this->assertSame(0, $bob->count('unsub'), 'the relay has not revoked it yet');

        // Cron runs while the relay still hangs: kept, scheduled again.
        BM_Relay_Push::reset_request();
        bm_configure(['timeout_ms' => 300]);
        do_action(BM_Relay_Push::RETRY_HOOK);
        $this->assertCount(1, (array) get_option(BM_Relay_Push::PENDING_OPTION));
        $this->assertNotFalse(wp_next_scheduled(BM_Relay_Push::RETRY_HOOK));

        // The relay answers again: the next cron run revokes it for good.
        update_option('bmr_url', $this->h()->relay_url);
        BM_Relay_Settings::apply();
        do_action(BM_Relay_Push::RETRY_HOOK);
        $bob->wait(fn() => count(array_filter($bob->frames, fn($f) => ($f['op'] ?? '') === 'unsub' && ($f['thread'] ?? 0) === BM_Relay_Ids::thread($t['id']))) === 1, 5, 'unsub frame');
        $this->assertFalse(get_option(BM_Relay_Push::PENDING_OPTION), 'nothing left to retry');
        $this->assertFalse(wp_next_scheduled(BM_Relay_Push::RETRY_HOOK));
    }

    public function test_over_http_in_the_default_mode_a_hung_relay_costs_a_request_under_a_second(): void
    {
        // The default (auto) mode: async with the extension (request end
        // waits at most flush_timeout_ms), sync within the budget with the
        // fallback. Timed over real HTTP, request end included.
        $h = $this->h();
        $t = $this->thread('alice', ['bob'], 'over http');
        $bob = $h->login('bob');
        $nonce = $bob->nonce();
        update_option('bmr_mode', '');
        try {
            $time = function (string $text) use ($bob, $t, $nonce): float {
                $t0 = microtime(true);
                [$code, $body] = $bob->rest('POST', "/threads/{$t['id']}/messages", ['text' => $text], $nonce);
                $this->assertSame(201, $code, json_encode($body));
                return microtime(true) - $t0;
            };
            $time('warm up');
            $normal = $time('relay up');
            $this->hang_relay();
            $hung = $time('relay hung');
            $this->assertLessThan($normal + 1.0, $hung, sprintf('%.2f s with the relay hung, %.2f s normally', $hung, $normal));
            $this->assertSame('relay hung', $this->rows("SELECT content FROM wp_bmr_messages WHERE thread_id = {$t['id']} ORDER BY id DESC LIMIT 1")[0]['content'], 'stored all the same');
        } finally {
            update_option('bmr_mode', 'sync');
        }
    }
}
