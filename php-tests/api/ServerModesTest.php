<?php
/**
 * Async pushes made inside PHP requests under the SAPIs WordPress runs on —
 * CLI, `php -S`, PHP-FPM (driven with cgi-fcgi, workers recycled), and a
 * pcntl_fork child — reach a real subscriber: flushed at request end,
 * nothing lost, nothing sent twice, no hang.
 */

require_once __DIR__ . '/RelayTestCase.php';

final class ServerModesTest extends RelayTestCase
{
    private const PUSH = __DIR__ . '/fixtures/push.php';

    /** @return list<int> the seq numbers of received events, in arrival order */
    private static function seqs(array $events): array
    {
        return array_map(fn($e) => $e['payload']['data']['seq'], $events);
    }

    /** bm_relay_events_pushed_total of the test relay (its admin /metrics). */
    private function relay_pushed(): int
    {
        $text = (string) file_get_contents('http://127.0.0.1:' . static::$relay->admin_port . '/metrics');
        $this->assertSame(1, preg_match('/^bm_relay_events_pushed_total (\d+)$/m', $text, $m), 'metric exported');
        return (int) $m[1];
    }

    public function test_cli_script_end_flushes_what_it_queued(): void
    {
        $l = $this->listener(11, [], 5);
        $cmd = array_merge(BM_Test::php_cmd($this->child_ini(['mode' => 'async'])), [self::PUSH, '--seq=1', '--to=11', '--n=5']);
        [$code, $out, $err] = BM_Test::run($cmd, 20);
        $this->assertSame(0, $code, $err);
        $r = json_decode($out, true);
        $this->assertTrue($r['ok']);
        $events = $l->wait_events(5);
        $this->assertCount(5, $events, 'all five arrived after the script ended');
        $this->assertSame([0, 1, 2, 3, 4], array_map(fn($e) => $e['payload']['data']['i'], $events));
        $l->stop();
    }

    public function test_php_builtin_server_flushes_at_request_end(): void
    {
        $l = $this->listener(12, [], 6);
        $port = BM_Test::free_port();
        $ini = BM_Test::base_ini() + $this->child_ini(['mode' => 'async']);
        $cmd = [PHP_BINARY];
        foreach ($ini as $k => $v) {
            array_push($cmd, '-d', "$k=$v");
        }
        array_push($cmd, '-S', "127.0.0.1:$port", '-t', __DIR__ . '/fixtures');
        $server = new BM_Test_Proc($cmd, ['PHP_CLI_SERVER_WORKERS' => '2', 'PATH' => getenv('PATH') ?: '/usr/bin:/bin']);
        try {
            $this->assertTrue(BM_Test::wait_until(fn() => BM_Test::http_get("http://127.0.0.1:$port/push.php?stats=1", 0.5) !== null, 10.0), 'php -S is up');
            for ($seq = 1; $seq <= 3; $seq++) {
                [$status, $body] = BM_Test::http_get("http://127.0.0.1:$port/push.php?seq=$seq&to=12&n=2", 10.0);
                $this->assertSame(200, $status, $body);
                $this->assertTrue(json_decode($body, true)['ok'], $body);
            }
            $events = $l->wait_events(6);
            $this->assertCount(6, $events);
            $this->assertSame([1, 1, 2, 2, 3, 3], self::seqs($events));
        } finally {
            $server->stop();
            $l->stop();
        }
    }

    public function test_fpm_request_end_flush_reaches_the_subscriber_before_the_next_request(): void
    {
        $l = $this->listener(13, [], 4);
        $fpm = new BM_Test_Fpm($this->child_ini(['mode' => 'async']), ['pm.max_children' => '1']);
        try {
            $pushed = $this->relay_pushed();
            [$code, $body] = $fpm->request(self::PUSH, ['seq' => 1, 'to' => 13, 'n' => 4]);
            $this->assertSame(0, $code, $body . $fpm->log());
            $r = json_decode($body, true);
            $this->assertTrue($r['ok'], $body);
            if (!extension_loaded('bm_relay')) {
                // The fallback has no thread: it queues during the request
                // and sends nothing before its end (docs/PLUGIN.md).
                $this->assertSame([4, 0], [$r['queued'], $r['sent']], 'queued, not sent, during the request');
            }
            // One worker (pm.max_children = 1) serves the next request only
            // once the previous request's end is over, flush included: by
            // the time it answers, the relay has all four. (`queued` in the
            // next request proves nothing for the fallback, whose state FPM
            // discards with each request.)
            [, $body] = $fpm->request(self::PUSH, ['stats' => 1]);
            $stats = json_decode($body, true);
            $this->assertSame($r['pid'], $stats['pid'], 'same worker');
            $this->assertSame($pushed + 4, $this->relay_pushed(), 'the relay had the events before the next request was served');
            $this->assertSame(0, $stats['queued'], 'flushed');
            $this->assertCount(4, $l->wait_events(4));
        } finally {
            $fpm->stop();
            $l->stop();
        }
    }

    /**
     * The native runtime lives per worker process: its counters span
     * requests, and a worker's first push builds it after FPM's fork.
     * @group ext-only
     */
    public function test_fpm_worker_keeps_its_native_sender_and_counters_across_requests(): void
    {
        $fpm = new BM_Test_Fpm($this->child_ini(['mode' => 'async']), ['pm.max_children' => '1']);
        try {
            $pids = [];
            for ($seq = 1; $seq <= 3; $seq++) {
                [, $body] = $fpm->request(self::PUSH, ['seq' => $seq, 'to' => 15, 'n' => 2]);
                $pids[] = json_decode($body, true)['pid'] ?? null;
            }
            [, $body] = $fpm->request(self::PUSH, ['stats' => 1]);
            $stats = json_decode($body, true);
            $this->assertSame([$stats['pid'], $stats['pid'], $stats['pid']], $pids, 'one worker served all');
            $this->assertSame(6, $stats['sent'], 'counters of the process, not of one request');
            $this->assertSame(0, $stats['failed']);
            $this->assertGreaterThanOrEqual(1, $stats['batches']);
            $this->assertLessThanOrEqual(6, $stats['batches'], 'at most one request per event');
        } finally {
            $fpm->stop();
        }
    }

    public function test_fpm_with_recycled_workers_loses_nothing_over_50_requests(): void
    {
        $n = 50;
        $l = $this->listener(14, [], $n);
        $fpm = new BM_Test_Fpm($this->child_ini(['mode' => 'async']), ['pm' => 'static', 'pm.max_children' => '2', 'pm.max_requests' => '2']);
        $pids = [];
        $t0 = microtime(true);
        try {
            for ($seq = 1; $seq <= $n; $seq++) {
                [$code, $body] = $fpm->request(self::PUSH, ['seq' => $seq, 'to' => 14], 30.0);
                $this->assertSame(0, $code, "request $seq: $body\n" . implode("\n", array_filter(explode("\n", $fpm->log()), fn($l) => !str_contains($l, 'NOTICE'))));
                $r = json_decode($body, true);
                $this->assertIsArray($r, "request $seq: $body");
                $this->assertTrue($r['ok']);
                $pids[$r['pid']] = true;
            }
            $this->assertLessThan(120.0, microtime(true) - $t0, 'no request hung');
            $events = $l->wait_events($n, 15.0);
            $seqs = self::seqs($events);
            sort($seqs);
            $this->assertSame(range(1, $n), $seqs, 'every event exactly once');
            $this->assertGreaterThanOrEqual(intdiv($n, 2), count($pids), 'workers were recycled (max_requests=2)');
            $this->assertStringNotContainsString('request_terminate_timeout', $fpm->log());
        } finally {
            $fpm->stop();
            $l->stop();
        }
    }

    public function test_a_pcntl_fork_child_pushes_and_nothing_is_sent_twice(): void
    {
        if (!function_exists('pcntl_fork')) {
            $this->markTestSkipped('pcntl is not available');
        }
        $l = $this->listener(2, [], 3);
        $cmd = array_merge(BM_Test::php_cmd($this->child_ini(['mode' => 'async'])), [__DIR__ . '/fixtures/fork.php']);
        [$code, $out, $err] = BM_Test::run($cmd, 30);
        $this->assertSame(0, $code, $out . $err);
        $r = json_decode($out, true);
        $this->assertSame(0, $r['child_status'], 'the child pushed and flushed');
        $this->assertTrue($r['parent_flushed']);
        $events = $l->wait_events(3);
        usleep(300000);
        $whos = array_map(fn($e) => $e['payload']['data']['who'], $l->events());
        sort($whos);
        $this->assertSame(['child', 'parent-after', 'parent-before'], $whos);
        $l->stop();
    }

    public function test_a_forked_child_never_reuses_the_parents_nonces_or_ids(): void
    {
        if (!function_exists('pcntl_fork')) {
            $this->markTestSkipped('pcntl is not available');
        }
        $cmd = array_merge(BM_Test::php_cmd($this->child_ini(['mode' => 'async'])), [__DIR__ . '/fixtures/fork-nonces.php']);
        [$code, $out, $err] = BM_Test::run($cmd, 30);
        $this->assertSame(0, $code, $out . $err);
        $r = json_decode($out, true);
        $this->assertSame(0, $r['child_status']);
        $this->assertCount(100, $r['parent']);
        $this->assertCount(100, $r['child']);
        $all = array_merge($r['parent'], $r['child']);
        $this->assertSame($all, array_values(array_unique($all)), 'a nonce or event id repeated across fork');
    }
}
