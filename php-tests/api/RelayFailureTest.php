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
        $this->assertLessThan(0.2, microtime(true) - $t0, 'async never waits for the relay');
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
            $this->assertLessThan(1.5, microtime(true) - $t0);
        }
    }

    /**
     * The native sender works in the background: events are in flight while
     * PHP goes on, and bm_flush() reports whether they settled in time.
     * @group ext-only
     */
    public function test_async_push_to_a_silent_relay_never_blocks_and_fails_after_timeout_ms(): void
    {
        bm_configure($this->settings(['mode' => 'async', 'url' => $this->silent_url(), 'timeout_ms' => 300, 'flush_timeout_ms' => 50]));
        $before = bm_stats();
        $t0 = microtime(true);
        for ($i = 0; $i < 5; $i++) {
            $this->assertTrue(bm_push(['type' => 'x', 'data' => $i, 'to' => [1]]));
        }
        $this->assertLessThan(0.2, microtime(true) - $t0, 'five async pushes, no waiting');
        $this->assertFalse(bm_flush(50), 'still in flight');
        $this->assertGreaterThan(0, bm_stats()['queued']);
        $this->assertTrue(bm_flush(5000));
        $after = bm_stats();
        $this->assertSame($before['failed'] + 5, $after['failed']);
        $this->assertStringContainsString('timeout_ms=300', $after['last_error']['message']);
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
        $this->assertGreaterThanOrEqual(0.25, $elapsed);
        $this->assertLessThan(1.5, $elapsed, 'bounded by timeout_ms');
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
}
