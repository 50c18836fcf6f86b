<?php
/**
 * Pushes delivered through a real relay to real WebSocket subscribers
 * (`bm-relay listen`, which opens the envelopes with the site secret).
 */

require_once __DIR__ . '/RelayTestCase.php';

final class DeliveryTest extends RelayTestCase
{
    public function test_sync_push_is_delivered_opened_and_reports_the_relay_result(): void
    {
        $l = $this->listener(2);
        $data = ['text' => 'Hello, élan / 😀', 'n' => 7, 'f' => 0.5, 'empty' => []];
        $r = bm_push(['type' => 'message.new', 'data' => $data, 'to' => [2], 'id' => 'sync-1']);
        $this->assertSame(['online' => [2], 'sockets' => 1], $r);
        $ev = $l->wait_events(1)[0] ?? null;
        $this->assertNotNull($ev, 'delivered');
        $this->assertSame('sync-1', $ev['id']);
        $this->assertSame('u/2', $ev['k']);
        $this->assertSame('message.new', $ev['payload']['type']);
        $this->assertEquals($data, $ev['payload']['data'], 'same values (the listener prints keys sorted)');
        $this->assertNull($ev['from'], 'a server push has no from');
        $l->stop();
    }

    public function test_sync_push_to_an_offline_user_says_so(): void
    {
        $this->assertSame(['online' => [], 'sockets' => 0], bm_push(['type' => 'x', 'to' => [99]]));
    }

    public function test_thread_events_reach_members_and_live_subscribers_in_order(): void
    {
        $member = $this->listener(3);
        $watcher = $this->listener(4, [12]);
        $results = bm_push_many([
            ['type' => 'one', 'data' => 1, 'to' => [3], 'thread' => 12],
            ['type' => 'two', 'data' => 2, 'to' => [3], 'thread' => 12, 'live' => true],
            ['type' => 'three', 'data' => 3, 'thread' => 12, 'epoch' => 2, 'live' => true],
        ]);
        $this->assertSame([
            ['online' => [3], 'sockets' => 1],
            ['online' => [3], 'sockets' => 2],
            ['online' => [], 'sockets' => 1],
        ], $results);
        $this->assertSame(['one', 'two'], array_map(fn($e) => $e['payload']['type'], $member->wait_events(2)));
        $w = $watcher->wait_events(2);
        $this->assertSame(['two', 'three'], array_map(fn($e) => $e['payload']['type'], $w));
        $this->assertSame(['t/12/0', 't/12/2'], array_column($w, 'k'));
        $member->stop();
        $watcher->stop();
    }

    public function test_async_pushes_are_batched_flushed_and_keep_their_order(): void
    {
        $l = $this->listener(5, [], 40);
        bm_configure(['mode' => 'async']);
        $before = bm_stats();
        // While the relay is paused the first request waits for its answer,
        // so the events queued behind it must travel together.
        static::$relay->pause();
        try {
            for ($i = 0; $i < 40; $i++) {
                $this->assertTrue(bm_push(['type' => 'seq', 'data' => $i, 'to' => [5]]));
            }
            usleep(50000);
        } finally {
            static::$relay->resume();
        }
        $this->assertTrue(bm_flush(5000));
        $after = bm_stats();
        $this->assertSame(0, $after['queued']);
        $this->assertSame(40, $after['sent'] - $before['sent']);
        $this->assertSame(0, $after['failed'] - $before['failed']);
        $this->assertLessThanOrEqual(3, $after['batches'] - $before['batches'], 'queued events travel in batches');
        $this->assertSame(range(0, 39), array_map(fn($e) => $e['payload']['data'], $l->wait_events(40)));
        $this->assertGreaterThan(0, $after['latency_p50_us']);
        $this->assertGreaterThanOrEqual($after['latency_p50_us'], $after['latency_p99_us']);
        $l->stop();
    }

    public function test_async_push_many_returns_true_and_delivers_all(): void
    {
        $l = $this->listener(6);
        bm_configure(['mode' => 'async']);
        $this->assertTrue(bm_push_many([['type' => 'a', 'to' => [6]], ['type' => 'b', 'to' => [6]]]));
        $this->assertTrue(bm_push_many([]));
        $this->assertTrue(bm_flush());
        $this->assertSame(['a', 'b'], array_map(fn($e) => $e['payload']['type'], $l->wait_events(2)));
        bm_configure(['mode' => 'sync']);
        $this->assertSame([], bm_push_many([]));
        $l->stop();
    }

    public function test_presence_and_disconnect(): void
    {
        $l = $this->listener(7);
        $t = $this->listener(8, [30]);
        $this->assertSame([7, 8], bm_presence([7, 8, 9]));
        $this->assertSame([], bm_presence([]));
        // Revoking one thread subscription keeps the socket.
        $this->assertSame(1, bm_disconnect([8], 30));
        $this->assertSame(['online' => [], 'sockets' => 0], bm_push(['type' => 'x', 'thread' => 30, 'live' => true]));
        $this->assertSame([7, 8], bm_presence([7, 8]));
        // Without a thread, the user's sockets are closed with 4003.
        $this->assertSame(1, bm_disconnect([7]));
        $close = $l->wait_close();
        $this->assertSame(4003, $close['code'] ?? null);
        $this->assertSame([8], bm_presence([7, 8]));
        $l->stop();
        $t->stop();
    }

    public function test_sync_relay_errors_carry_the_http_status_and_relay_code(): void
    {
        $cases = [
            [['site' => 'unknown.example'], 401, 'unknown_site'],
            [['secret' => BM_Test::new_secret()], 401, 'bad_signature'],
        ];
        foreach ($cases as [$override, $status, $code]) {
            bm_configure($this->settings($override));
            $failed = bm_stats()['failed'];
            try {
                bm_push(['type' => 'x', 'to' => [1]]);
                $this->fail("no exception for $code");
            } catch (BmRelayException $e) {
                $this->assertSame($status, $e->getCode());
                $this->assertStringContainsString("bm_push(): relay refused push: HTTP $status $code", $e->getMessage());
                $this->assertStringNotContainsString(self::$secret, $e->getMessage());
            }
            $this->assertSame($failed + 1, bm_stats()['failed']);
            try {
                bm_presence([1]);
                $this->fail('no exception');
            } catch (BmRelayException $e) {
                $this->assertSame($status, $e->getCode());
                $this->assertStringContainsString("bm_presence(): relay refused presence: HTTP $status $code", $e->getMessage());
            }
        }
    }

    public function test_async_relay_refusals_are_counted_not_thrown(): void
    {
        bm_configure($this->settings(['mode' => 'async', 'site' => 'unknown.example']));
        $before = bm_stats();
        $this->assertTrue(bm_push(['type' => 'x', 'to' => [1]]));
        $this->assertTrue(bm_flush(3000));
        $after = bm_stats();
        $this->assertSame($before['failed'] + 1, $after['failed']);
        $this->assertStringContainsString('HTTP 401 unknown_site', $after['last_error']['message']);
        $this->assertEqualsWithDelta(time(), $after['last_error']['time'], 5);
        $this->assertSame(static::$relay->url, $after['url']);
        $this->assertSame('unknown.example', $after['site']);
    }

    public function test_the_relay_key_the_relay_was_given_is_bm_relay_key(): void
    {
        // The relay was configured with a key derived by its own binary.
        $this->assertSame(BM_Test_Relay::relay_key(self::$secret), bm_relay_key());
    }
}
