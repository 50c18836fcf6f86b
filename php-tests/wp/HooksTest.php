<?php
/**
 * The hooks docs/PLUGIN.md documents that no other test used: each action
 * fires with its documented arguments and each filter is applied with its
 * documented default and changes what it says it changes. Also REST 503
 * `bm_relay_unavailable` (presence with the relay down) and 409 on reacting
 * to a deleted message.
 */

final class HooksTest extends BM_WP_TestCase
{
    /** @var list<array{0:string,1:callable}> filters/actions added by a test */
    private array $added = [];

    protected function tearDown(): void
    {
        foreach ($this->added as [$hook, $fn]) {
            remove_filter($hook, $fn, 10);
        }
        $this->added = [];
        parent::tearDown();
    }

    /** Adds a filter (or action) removed after the test. */
    private function hook(string $hook, callable $fn, int $args = 1): void
    {
        add_filter($hook, $fn, 10, $args);
        $this->added[] = [$hook, $fn];
    }

    public function test_token_ttl_filter_sets_the_lifetime_of_browser_tokens(): void
    {
        $t = $this->thread('alice', ['bob'], 'ttl');
        $seen = [];
        $this->hook('bm_relay_token_ttl', function ($ttl) use (&$seen) {
            $seen[] = $ttl;
            return 600;
        });
        $tok = $this->ok($this->rest('POST', '/token', 'bob'));
        $this->assertContains(3600, $seen, 'applied with the documented default');
        $claims = static fn(string $jwt): array => json_decode((string) base64_decode(strtr(explode('.', $jwt)[1], '-_', '+/')), true);
        $c = $claims($tok['token']);
        $this->assertSame(600, $c['exp'] - $c['iat'], 'connection token');
        $mine = array_values(array_filter($tok['threads'], fn($x) => $x['thread'] === $t['id']));
        $c = $claims($mine[0]['token']);
        $this->assertSame(600, $c['exp'] - $c['iat'], 'thread token');
    }

    public function test_push_failed_fires_with_the_message_and_the_events_and_budget_ms_bounds_the_wait(): void
    {
        $t = $this->thread('alice', ['bob'], 'failures');
        $h = $this->h();
        $fired = [];
        $this->hook('bm_relay_push_failed', function ($message, $events) use (&$fired) {
            $fired[] = [$message, $events];
        }, 2);
        $budgets = [];
        $this->hook('bm_relay_push_budget_ms', function ($ms) use (&$budgets) {
            $budgets[] = $ms;
            return $ms;
        });
        $h->stop_relay();
        try {
            $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'nobody hears']), 201);
            // The presence of a thread cannot be asked: 503 with its code.
            $this->err($this->rest('GET', "/threads/{$t['id']}/presence", 'alice'), 503, 'bm_relay_unavailable');
            $this->err($this->rest('GET', '/presence', 'alice', [], ['threads' => (string) $t['id']]), 503, 'bm_relay_unavailable');
        } finally {
            $h->start_relay();
        }
        $this->assertContains(700, $budgets, 'budget filter applied with the documented default');
        $this->assertNotEmpty($fired, 'bm_relay_push_failed fired');
        [$message, $events] = $fired[0];
        $this->assertIsString($message);
        $this->assertStringContainsString('relay unreachable', $message);
        $this->assertStringNotContainsString($h->secret, $message);
        $this->assertIsArray($events);
        $this->assertNotEmpty($events, 'the events the relay did not take');
        $this->assertSame('message.new', $events[0]['type'] ?? null, json_encode($events));

        // A budget of 1 ms: the request does not even try (skipped, and says so).
        remove_all_filters('bm_relay_push_budget_ms');
        $this->hook('bm_relay_push_budget_ms', fn() => 1);
        $fired = [];
        $r = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'no budget']), 201);
        $this->assertFalse($r['pushed'], 'nothing was pushed with no budget');
        $this->assertNotEmpty($fired);
        $this->assertStringContainsString('waited for the relay long enough', $fired[0][0]);
    }

    public function test_reacting_to_a_deleted_message_is_409(): void
    {
        $t = $this->thread('alice', ['bob'], 'deleted reactions');
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'gone soon']), 201)['message'];
        $this->ok($this->rest('DELETE', "/messages/{$m['id']}", 'alice'));
        $this->err($this->rest('POST', "/messages/{$m['id']}/reactions", 'bob', ['emoji' => '👍']), 409, 'bm_relay_deleted');
        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_message_meta WHERE message_id = {$m['id']}"), 'nothing stored');
    }

    public function test_moderate_capability_filter_names_who_moderates(): void
    {
        $t = $this->thread('alice', ['bob'], 'moderated by editors');
        $seen = [];
        $this->hook('bm_relay_moderate_capability', function ($cap) use (&$seen) {
            $seen[] = $cap;
            return 'read';
        });
        // Dave is no member; with the capability of every user he may read as a moderator.
        $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'dave'));
        $this->assertContains('bmr_moderate', $seen, 'applied with the documented default');
        remove_all_filters('bm_relay_moderate_capability');
        $this->added = [];
        $this->err($this->rest('GET', "/threads/{$t['id']}/messages", 'dave'), 403, 'bm_relay_not_member');
    }

    public function test_user_search_args_filter_shapes_the_query(): void
    {
        $seen = [];
        $this->hook('bm_relay_user_search_args', function ($args, $search) use (&$seen) {
            $seen[] = $search;
            $args['exclude'][] = $this->uid('carol');
            return $args;
        }, 2);
        $r = $this->ok($this->rest('GET', '/users', 'alice', [], ['search' => 'car']));
        $this->assertSame(['car'], $seen, 'called once, with the search text');
        $this->assertSame([], $r['users'], 'Carol left out by the filter');
    }

    public function test_chat_shortcode_action_and_chat_html_filter(): void
    {
        wp_set_current_user($this->uid('carol'));
        $fired = [];
        $this->hook('bm_relay_chat_shortcode', function ($config, $atts) use (&$fired) {
            $fired[] = [$config, $atts];
        }, 2);
        $this->hook('bm_relay_chat_html', fn($html, $config, $atts) => "<section data-user=\"{$config['user']}\">$html</section>", 3);
        $html = do_shortcode('[bm_chat foo="bar"]');
        $this->assertCount(1, $fired);
        $this->assertSame($this->uid('carol'), $fired[0][0]['user']);
        $this->assertSame('bar', $fired[0][1]['foo'] ?? null, 'the shortcode attributes');
        $this->assertStringStartsWith('<section data-user="' . $this->uid('carol') . '"><div id="bm-chat"', $html);
    }

    public function test_retention_run_seconds_filter_bounds_a_run_and_schedules_the_rest(): void
    {
        global $wpdb;
        $t = $this->thread('alice', ['bob'], 'retention budget');
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'seed']), 201);
        // 1024 old rows (more than two batches of 500), made in SQL.
        $old = gmdate('Y-m-d H:i:s', time() - 90 * DAY_IN_SECONDS);
        $wpdb->query($wpdb->prepare("UPDATE wp_bmr_messages SET created_at = %s WHERE thread_id = %d", $old, $t['id']));
        for ($i = 0; $i < 10; $i++) {
            $wpdb->query($wpdb->prepare("INSERT INTO wp_bmr_messages (thread_id, sender_id, content, created_at) SELECT thread_id, sender_id, content, created_at FROM wp_bmr_messages WHERE thread_id = %d", $t['id']));
        }
        $count = fn(): int => (int) $this->rows("SELECT COUNT(*) n FROM wp_bmr_messages WHERE thread_id = {$t['id']}")[0]['n'];
        $this->assertSame(1024, $count());
        $seen = [];
        $this->hook('bm_relay_retention_run_seconds', function ($s) use (&$seen) {
            $seen[] = $s;
            return 0;
        });
        wp_clear_scheduled_hook(BM_Relay_Retention::HOOK);
        update_option('bmr_retention_days', 30);
        try {
            $this->assertSame(500, BM_Relay_Retention::run(), 'one batch, then the 0 s budget is spent');
            $this->assertSame([20], $seen, 'applied with the documented default');
            $this->assertSame(524, $count());
            $this->assertNotFalse(wp_next_scheduled(BM_Relay_Retention::HOOK), 'a follow-up run is scheduled');
            remove_all_filters('bm_relay_retention_run_seconds');
            $this->added = [];
            $this->assertSame(524, BM_Relay_Retention::run(), 'the default budget takes the rest');
            $this->assertSame(0, $count());
        } finally {
            update_option('bmr_retention_days', 0);
            wp_clear_scheduled_hook(BM_Relay_Retention::HOOK);
            BM_Relay_Retention::schedule();
        }
    }
}
