<?php
/**
 * The relay down, silent or restarted: bm_push stays within its bound
 * (async: returns at once; sync: at most timeout_ms), every failure is
 * counted in bm_stats() and written to the error log at most once a minute,
 * a full queue says false, and pushes resume when the relay is back.
 */

require_once __DIR__ . '/RelayTestCase.php';

final class RelayFailureTest extends RelayTestCase
{
    /** @var resource|null a listening socket that never accepts or answers */
    private $blackhole = null;

    protected function tearDown(): void
    {
        if (is_resource($this->blackhole)) {
            fclose($this->blackhole);
        }
        $this->blackhole = null;
    }

    /** A relay URL that accepts connections (kernel backlog) and never answers. */
    private function silent_url(): string
    {
        $this->blackhole = stream_socket_server('tcp://127.0.0.1:0');
        $name = (string) stream_socket_get_name($this->blackhole, false);
        return 'http://' . $name;
    }

    public function test_async_push_to_a_relay_that_is_down_returns_at_once_and_counts_the_failure(): void
    {
        bm_configure($this->settings(['mode' => 'async', 'url' => 'http://127.0.0.1:' . self::closed_port()]));
        $before = bm_stats();
        $t0 = microtime(true);
        $this->assertTrue(bm_push(['type' => 'x', 'to' => [1]]));
        // A bound that only catches a hang (speed is the benchmarks' job):
        // that async does not wait for a relay is shown below, against a
        // silent one, by what is still in flight.
        $this->assertLessThan(5.0, microtime(true) - $t0, 'async push returned');
        $this->assertTrue(bm_flush(3000), 'the failure settles the queue');
        $after = bm_stats();
        $this->assertSame($before['failed'] + 1, $after['failed']);
        $this->assertSame($before['sent'], $after['sent']);
        $this->assertSame(0, $after['queued']);
        $this->assertStringContainsString('relay unreachable for push', $after['last_error']['message']);
        // The same relay in sync mode: a refused connection is an exception, at once.
        bm_configure(['mode' => 'sync']);
        $t0 = microtime(true);
        $this->expectException(BmRelayException::class);
        $this->expectExceptionMessageMatches('#^bm_push\(\): relay unreachable for push at http://127\.0\.0\.1:\d+#');
        try {
            bm_push(['type' => 'x', 'to' => [1]]);
        } finally {
            $this->assertLessThan(5.0, microtime(true) - $t0, 'a refused connection is not waited on (hang bound)');
        }
    }

    /**
     * The native sender works in the background: events are in flight while
     * PHP goes on, and bm_flush() reports whether they settled in time.
     * @group ext-only
     */
    public function test_async_push_to_a_silent_relay_never_blocks_and_fails_after_timeout_ms(): void
    {
        // timeout_ms 3000: a push that waited for the silent relay would
        // take 3 s, five of them 15 s. The bound below (3 s for all five)
        // is five times wider than needed yet cannot pass if they wait.
        bm_configure($this->settings(['mode' => 'async', 'url' => $this->silent_url(), 'timeout_ms' => 3000, 'flush_timeout_ms' => 50]));
        $before = bm_stats();
        $t0 = microtime(true);
        for ($i = 0; $i < 5; $i++) {
            $this->assertTrue(bm_push(['type' => 'x', 'data' => $i, 'to' => [1]]));
        }
        $this->assertLessThan(3.0, microtime(true) - $t0, 'five async pushes, no waiting for the relay');
        $this->assertFalse(bm_flush(50), 'still in flight');
        $this->assertSame(5, bm_stats()['queued'] - $before['queued'], 'all five still in flight: none was waited for');
        $this->assertTrue(bm_flush(20000));
        $after = bm_stats();
        $this->assertSame($before['failed'] + 5, $after['failed']);
        $this->assertStringContainsString('timeout_ms=3000', $after['last_error']['message']);
    }

    public function test_sync_push_to_a_silent_relay_gives_up_after_timeout_ms(): void
    {
        bm_configure($this->settings(['mode' => 'sync', 'url' => $this->silent_url(), 'timeout_ms' => 300]));
        $before = bm_stats()['failed'];
        $t0 = microtime(true);
        try {
            bm_push(['type' => 'x', 'to' => [1]]);
            $this->fail('no exception');
        } catch (BmRelayException $e) {
            $this->assertStringContainsString('bm_push(): relay unreachable for push', $e->getMessage());
            $this->assertStringContainsString('timeout_ms=300', $e->getMessage());
            $this->assertSame(0, $e->getCode(), 'no HTTP status came back');
        }
        $elapsed = microtime(true) - $t0;
        $this->assertGreaterThanOrEqual(0.25, $elapsed, 'it waited for timeout_ms');
        $this->assertLessThan(5.0, $elapsed, 'bounded by timeout_ms (hang bound, not a speed check)');
        $this->assertSame($before + 1, bm_stats()['failed']);
    }

    /** @group ext-only */
    public function test_a_full_queue_returns_false_and_counts_the_drop(): void
    {
        bm_configure($this->settings(['mode' => 'async', 'url' => $this->silent_url(), 'timeout_ms' => 300, 'queue_size' => 3]));
        $before = bm_stats();
        $this->assertTrue(bm_push(['type' => 'x', 'to' => [1]]));
        $this->assertTrue(bm_push_many([['type' => 'x', 'to' => [1]], ['type' => 'x', 'to' => [1]]]));
        $this->assertFalse(bm_push(['type' => 'x', 'to' => [1]]), 'queue full');
        $this->assertFalse(bm_push_many([['type' => 'x', 'to' => [1]], ['type' => 'x', 'to' => [1]]]), 'all or nothing');
        $mid = bm_stats();
        $this->assertSame($before['dropped'] + 3, $mid['dropped']);
        $this->assertSame(3, $mid['queued']);
        $this->assertTrue(bm_flush(5000));
        $this->assertSame($before['failed'] + 3, bm_stats()['failed']);
    }

    public function test_failures_are_logged_once_not_per_event(): void
    {
        $log = tempnam(sys_get_temp_dir(), 'bm-log');
        $ini = $this->child_ini(['mode' => 'async', 'url' => 'http://127.0.0.1:' . self::closed_port()]) + ['error_log' => $log];
        $cmd = array_merge(BM_Test::php_cmd($ini), [__DIR__ . '/fixtures/fail-log.php', '20']);
        [$code, $out, $err] = BM_Test::run($cmd, 60);
        $text = (string) file_get_contents($log);
        unlink($log);
        $this->assertSame(0, $code, $out . $err);
        $stats = json_decode($out, true);
        $this->assertSame(20, $stats['failed']);
        $lines = array_values(array_filter(explode("\n", $text), fn($l) => str_contains($l, 'bm_relay')));
        $this->assertGreaterThanOrEqual(1, count($lines), 'the failure is in the error log');
        $this->assertLessThanOrEqual(2, count($lines), "one report (plus at most one at shutdown), not 20:\n$text");
        $this->assertStringContainsString('relay unreachable', $lines[0]);
        $this->assertStringNotContainsString(self::$secret, $text);
    }

    public function test_pushes_resume_after_the_relay_restarts(): void
    {
        $l = $this->listener(21);
        $this->assertSame(['online' => [21], 'sockets' => 1], bm_push(['type' => 'before', 'to' => [21]]));
        $this->assertCount(1, $l->wait_events(1));
        static::$relay->stop();
        $l->stop();
        try {
            bm_push(['type' => 'down', 'to' => [21]]);
            $this->fail('no exception while the relay is down');
        } catch (BmRelayException $e) {
            $this->assertStringContainsString('relay unreachable', $e->getMessage());
        }
        bm_configure(['mode' => 'async']);
        $this->assertTrue(bm_push(['type' => 'down-async', 'to' => [21]]));
        $this->assertTrue(bm_flush(3000));
        static::$relay->start();
        $l2 = $this->listener(21);
        bm_configure(['mode' => 'sync']);
        $this->assertSame(['online' => [21], 'sockets' => 1], bm_push(['type' => 'after-sync', 'to' => [21]]));
        bm_configure(['mode' => 'async']);
        $this->assertTrue(bm_push(['type' => 'after-async', 'to' => [21]]));
        $this->assertTrue(bm_flush(3000));
        $this->assertSame(['after-sync', 'after-async'], array_map(fn($e) => $e['payload']['type'], $l2->wait_events(2)));
        $l2->stop();
    }

    /**
     * docs/PHP-API.md: a request that fails before any HTTP answer (a
     * keep-alive connection the relay closed, e.g. on restart) is retried
     * once. A proxy in front of the real relay closes each kept-alive
     * connection when its second request arrives, unanswered: the second
     * sync push must still succeed (on a new connection), counted once.
     * @group ext-only
     */
    public function test_a_push_on_a_keep_alive_connection_the_relay_dropped_is_retried_once(): void
    {
        $port = BM_Test::free_port();
        $proxy = new BM_Test_Proc([PHP_BINARY, __DIR__ . '/fixtures/drop-proxy.php', (string) $port, (string) static::$relay->port]);
        try {
            $this->assertTrue(BM_Test::wait_until(fn() => str_contains($proxy->stdout(), 'ready'), 10.0), 'proxy up: ' . $proxy->stderr());
            bm_configure(['url' => "http://127.0.0.1:$port", 'mode' => 'sync']);
            $l = $this->listener(22);
            $this->assertSame(['online' => [22], 'sockets' => 1], bm_push(['type' => 'first', 'to' => [22]]), 'first push, connection kept');
            $before = bm_stats();
            $this->assertSame(['online' => [22], 'sockets' => 1], bm_push(['type' => 'second', 'to' => [22]]));
            $this->assertSame(1, substr_count($proxy->stdout(), 'dropped'), 'the second push met the dropped connection');
            $this->assertSame($before['failed'], bm_stats()['failed'], 'not a failure');
            // The background sender (async) keeps a connection of its own: the same again.
            bm_configure(['mode' => 'async']);
            $this->assertTrue(bm_push(['type' => 'third', 'to' => [22]]));
            $this->assertTrue(bm_flush(5000));
            $this->assertTrue(bm_push(['type' => 'fourth', 'to' => [22]]));
            $this->assertTrue(bm_flush(5000));
            $this->assertSame(2, substr_count($proxy->stdout(), 'dropped'), 'the fourth met a dropped connection too');
            $after = bm_stats();
            $this->assertSame([$before['failed'], $before['sent'] + 3], [$after['failed'], $after['sent']], 'second, third, fourth sent, none failed');
            $this->assertSame(['first', 'second', 'third', 'fourth'], array_map(fn($e) => $e['payload']['type'], $l->wait_events(4)));
            $l->stop();
        } finally {
            $proxy->stop();
        }
    }

    /**
     * docs/PHP-API.md: request end waits up to flush_timeout_ms for the
     * queue, process end waits again, and what is still queued then is
     * counted as dropped and logged. A CLI script queues 1500 events for a
     * relay that never answers (one batch of at most 1000 in flight, the
     * rest queued) with timeout_ms 20 s and flush_timeout_ms 300 ms: it
     * ends after the two flush waits, not after timeout_ms, and says how
     * many it dropped.
     * @group ext-only
     */
    public function test_request_end_waits_flush_timeout_ms_and_counts_what_is_left_as_dropped(): void
    {
        $ini = $this->child_ini(['mode' => 'async', 'url' => $this->silent_url(), 'timeout_ms' => 20000, 'flush_timeout_ms' => 300]);
        $code = 'for ($i = 0; $i < 1500; $i++) { bm_push(["type" => "x", "data" => $i, "to" => [1]]); } echo json_encode(bm_stats());';
        $t0 = microtime(true);
        [$rc, $out, $err] = BM_Test::run(array_merge(BM_Test::php_cmd($ini), ['-r', $code]), 30);
        $took = microtime(true) - $t0;
        $this->assertSame(0, $rc, $err);
        $this->assertSame(1500, json_decode($out, true)['queued'] ?? null, $out);
        $this->assertGreaterThanOrEqual(0.55, $took, 'it waited flush_timeout_ms at request end and again at process end');
        $this->assertLessThan(10.0, $took, 'bounded by flush_timeout_ms, not timeout_ms (20 s)');
        $this->assertSame(1, preg_match('/bm_relay: (\d+) queued event\(s\) dropped at shutdown/', $err, $m), $err);
        $this->assertGreaterThanOrEqual(500, (int) $m[1], 'at least what was not in the one batch in flight');
        $this->assertLessThanOrEqual(1500, (int) $m[1]);
    }
}
