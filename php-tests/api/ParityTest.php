<?php
/**
 * The pure-PHP fallback behaves like the extension where the two used to
 * differ (issue #12, item 12): each test runs against whichever
 * implementation is loaded (`make test-ext`, `make test-fallback`).
 */

require_once __DIR__ . '/RelayTestCase.php';

final class ParityTest extends RelayTestCase
{
    /** Runs the push fixture in a child with extra INI and environment; returns [code, stdout, stderr]. */
    private function child(array $ini, array $env, int $to): array
    {
        $cmd = array_merge(BM_Test::php_cmd($this->child_ini($ini)), [__DIR__ . '/fixtures/push.php', '--to=' . $to, '--seq=7']);
        $p = new BM_Test_Proc($cmd, array_merge(getenv(), $env));
        $p->close_stdin();
        $code = $p->wait(20.0);
        return [$code, $p->stdout(), $p->stderr()];
    }

    public function test_an_envelope_with_a_duplicate_field_is_refused(): void
    {
        $sealed = bm_seal(['type' => 'x', 'data' => 1, 'to' => [5]]);
        $this->assertSame('x', bm_open($sealed)['type']);
        $other = json_decode(bm_seal(['type' => 'y', 'data' => 2, 'to' => [5]]), true);
        // The same envelope with a second `id` (json_decode would keep the last).
        $dup = substr($sealed, 0, -1) . ',"id":"' . $other['id'] . '"}';
        $this->expectException(BmRelayException::class);
        $this->expectExceptionMessageMatches('/duplicate field/');
        bm_open($dup);
    }

    public function test_http_proxy_in_the_environment_is_not_used(): void
    {
        $dead = 'http://127.0.0.1:' . self::closed_port();
        $l = $this->listener(41);
        [$code, $out, $err] = $this->child(['mode' => 'sync'], ['http_proxy' => $dead, 'HTTP_PROXY' => $dead, 'all_proxy' => $dead, 'ALL_PROXY' => $dead], 41);
        $this->assertSame(0, $code, $out . $err);
        $this->assertTrue(json_decode($out, true)['ok'] ?? false, $out . $err);
        $this->assertCount(1, $l->wait_events(1, 5.0), 'pushed straight to the relay');
        $l->stop();
    }

    /**
     * With the extension, 0 means request end does not wait while its
     * thread goes on sending (in a server; a CLI process that exits drops
     * what is left, as documented). The fallback has no thread: 0 used to
     * give the request-end send 1 ms, dropping the queue; now it sends
     * within timeout_ms.
     */
    public function test_fallback_flush_timeout_ms_0_does_not_drop_the_queue(): void
    {
        if ((new ReflectionFunction('bm_push'))->isInternal()) {
            $this->markTestSkipped('the extension sends from its own thread (php-tests/api ServerModesTest)');
        }
        $l = $this->listener(42);
        $cmd = array_merge(BM_Test::php_cmd($this->child_ini(['mode' => 'async', 'flush_timeout_ms' => '0'])), [__DIR__ . '/fixtures/push.php', '--to=42', '--seq=7', '--n=300']);
        [$code, $out, $err] = BM_Test::run($cmd, 20.0);
        $this->assertSame(0, $code, $out . $err);
        $this->assertCount(300, $l->wait_events(300, 5.0), 'every queued event reached the relay');
        $l->stop();
    }

    public function test_the_secret_file_is_read_once_per_request(): void
    {
        $file = tempnam(sys_get_temp_dir(), 'bm-secret-');
        file_put_contents($file, self::$secret . "\n");
        bm_configure(['secret_file' => $file]);
        $relay = bm_relay_key();
        $thread = bm_thread_key(3, 1);
        // Gone (or rotated) mid-request: this request keeps what it read.
        unlink($file);
        $this->assertSame($relay, bm_relay_key());
        $this->assertSame($thread, bm_thread_key(3, 1));
        $this->assertSame('x', bm_open(bm_seal(['type' => 'x', 'to' => [1]]))['type']);
    }
}
