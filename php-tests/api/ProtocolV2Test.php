<?php
/**
 * Protocol v2 (PROTOCOL.md §3.2) over real sockets, against a relay run
 * with `--accept-v1 false`: with `protocol => 2` the PHP API (extension or
 * fallback) turns every WordPress id into its pseudonym itself, so a push
 * with WordPress ids reaches a `bm-relay listen` subscribed with the v2
 * tokens for them, while neither WordPress's recorded requests and the
 * relay's answers nor the frames carry a WordPress id; sync `online` and
 * bm_presence() still answer in WordPress ids; a v1 push is refused with
 * the relay's code.
 */

require_once __DIR__ . '/RelayTestCase.php';

final class ProtocolV2Test extends RelayTestCase
{
    /** WordPress ids that cannot appear by chance in JSON or base64url. */
    private const USER = 7340001;
    private const OTHER = 7340002;
    private const THREAD = 4560789;

    public static function setUpBeforeClass(): void
    {
        self::$secret = BM_Test::new_secret();
        static::$relay = (new BM_Test_Relay([self::SITE => self::$secret], ['--accept-v1', 'false']))->start();
    }

    public static function tearDownAfterClass(): void
    {
        // Overrides last for the whole PHPUnit process (one PHP request):
        // the suites after this one speak protocol 1 again.
        bm_configure(['protocol' => null]);
        parent::tearDownAfterClass();
    }

    protected function settings(array $extra = []): array
    {
        return parent::settings($extra + ['protocol' => 2]);
    }

    /** A v2 subscriber of USER watching THREAD: subscribed to the thread's pseudonym. */
    private function v2_listener(int $count = 0): BM_Test_Listener
    {
        $tt = [bm_pseudonym('thread', self::THREAD) => bm_thread_token(self::USER, self::THREAD)];
        return new BM_Test_Listener(static::$relay, bm_client_token(self::USER), self::SITE, self::$secret, $tt, $count);
    }

    /** Fails when a WordPress id appears in $text. */
    private function assert_no_wordpress_id(string $text, string $what): void
    {
        foreach ([self::USER, self::OTHER, self::THREAD] as $id) {
            $this->assertStringNotContainsString((string) $id, $text, "$what holds the WordPress id $id");
        }
    }

    public function test_a_v2_push_reaches_the_pseudonym_and_no_wordpress_id_crosses(): void
    {
        $port = BM_Test::free_port();
        $record = tempnam(sys_get_temp_dir(), 'bm-v2-wire');
        $proxy = new BM_Test_Proc([PHP_BINARY, __DIR__ . '/fixtures/drop-proxy.php', (string) $port, (string) static::$relay->port, $record]);
        try {
            $this->assertTrue(BM_Test::wait_until(fn() => str_contains($proxy->stdout(), 'ready'), 10.0), 'proxy up: ' . $proxy->stderr());
            bm_configure(['url' => "http://127.0.0.1:$port"]);
            $l = $this->v2_listener();
            $pu = bm_pseudonym('user', self::USER);
            $pt = bm_pseudonym('thread', self::THREAD);
            // Sync: the relay's `online` names the pseudonym; the caller gets the WordPress id.
            $data = ['thread' => self::THREAD, 'sender' => self::OTHER, 'text' => 'pseudonymous'];
            $r = bm_push(['type' => 'message.new', 'data' => $data, 'to' => [self::USER, self::OTHER], 'thread' => self::THREAD, 'live' => true]);
            $this->assertSame(['online' => [self::USER], 'sockets' => 1], $r);
            $this->assertSame([[self::USER], []], [bm_presence([self::OTHER, self::USER]), bm_presence([self::OTHER])]);
            // Async, through the background sender (or request end, fallback).
            bm_configure(['mode' => 'async']);
            $this->assertTrue(bm_push(['type' => 'typing', 'to' => [self::USER]]));
            $this->assertTrue(bm_flush(5000));
            $ev = $l->wait_events(2);
            $this->assertCount(2, $ev, 'both delivered');
            $this->assertSame(["t/$pt/0", "u/$pu"], array_column($ev, 'k'));
            $this->assertEquals($data, $ev[0]['payload']['data'], 'the sealed plaintext is as the caller wrote it');
            // Revoking USER's subscription to THREAD reaches the pseudonymous one.
            bm_configure(['mode' => 'sync']);
            $this->assertSame(1, bm_disconnect([self::USER], self::THREAD));
            $this->assertTrue(BM_Test::wait_until(fn() => count(array_filter($l->frames(), fn($f) => ($f['op'] ?? '') === 'unsub')) === 1, 5.0), 'unsub');

            $wire = (string) file_get_contents($record);
            $this->assertGreaterThanOrEqual(4, substr_count(strtolower($wire), "x-bm-protocol: 2\r\n"), 'every request is marked v2');
            $this->assertStringContainsString((string) $pu, $wire, 'the relay was given the pseudonym');
            $this->assert_no_wordpress_id($wire, 'the requests to the relay and its answers');
            $frames = array_map(function (array $f): array {
                unset($f['payload']); // the opened plaintext: WordPress ids are fine inside the seal
                return $f;
            }, $l->frames());
            $this->assert_no_wordpress_id(json_encode($frames), 'the frames the relay sent');
            $l->stop();
        } finally {
            $proxy->stop();
            @unlink($record);
        }
    }

    public function test_a_v1_push_is_refused_by_a_relay_that_accepts_only_v2(): void
    {
        bm_configure(['protocol' => 1]);
        try {
            bm_push(['type' => 'x', 'to' => [self::USER]]);
            $this->fail('a v1 push was accepted');
        } catch (BmRelayException $e) {
            $this->assertSame(400, $e->getCode());
            $this->assertStringStartsWith('bm_push(): relay refused push: HTTP 400 protocol_v1_refused: ', $e->getMessage());
        }
        $this->expectExceptionMessage('protocol_v1_refused');
        bm_presence([self::USER]);
    }

    public function test_the_protocol_setting_is_validated(): void
    {
        foreach ([3, 0, '2x', 'v2'] as $bad) {
            try {
                bm_configure(['protocol' => $bad]);
                $this->fail('protocol ' . var_export($bad, true) . ' was accepted');
            } catch (BmRelayException $e) {
                $this->assertStringStartsWith('bm_configure(): ', $e->getMessage());
                $this->assertStringContainsString('protocol', $e->getMessage());
            }
        }
        // A v2 key of a WordPress id is the key of its pseudonym's key id.
        bm_configure(['protocol' => '1']);
        $of_pseudonym = bm_user_key(bm_pseudonym('user', self::USER));
        $v1 = bm_user_key(self::USER);
        bm_configure(['protocol' => 2]);
        $this->assertSame($of_pseudonym, bm_user_key(self::USER));
        $this->assertNotSame($v1, bm_user_key(self::USER));
    }
}
