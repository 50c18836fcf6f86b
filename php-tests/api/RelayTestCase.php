<?php
/**
 * Base of the suites that need a real relay: one relay per test class with
 * one site, helpers to configure the API against it and to open real
 * WebSocket subscribers.
 */

use PHPUnit\Framework\TestCase;

abstract class RelayTestCase extends TestCase
{
    protected const SITE = 'api-test.example';
    protected static string $secret;
    protected static ?BM_Test_Relay $relay = null;

    public static function setUpBeforeClass(): void
    {
        self::$secret = BM_Test::new_secret();
        static::$relay = (new BM_Test_Relay([self::SITE => self::$secret]))->start();
    }

    public static function tearDownAfterClass(): void
    {
        static::$relay?->stop();
        static::$relay = null;
    }

    protected function setUp(): void
    {
        bm_configure($this->settings());
    }

    /** The settings every test starts from (override per test with bm_configure). */
    protected function settings(array $extra = []): array
    {
        return $extra + ['url' => static::$relay->url, 'site' => self::SITE, 'secret' => self::$secret,
            'mode' => 'sync', 'timeout_ms' => 2000, 'connect_timeout_ms' => 500, 'queue_size' => 10000, 'flush_timeout_ms' => 500, 'protocol' => 1];
    }

    /** A subscriber for $user, optionally watching threads. */
    protected function listener(int $user, array $threads = [], int $count = 0): BM_Test_Listener
    {
        $tt = [];
        foreach ($threads as $t) {
            $tt[$t] = bm_thread_token($user, $t);
        }
        return new BM_Test_Listener(static::$relay, bm_client_token($user), self::SITE, self::$secret, $tt, $count);
    }

    /** INI for a child process using this relay. */
    protected function child_ini(array $extra = []): array
    {
        return BM_Test::bm_ini(static::$relay, self::SITE, self::$secret, $extra);
    }

    /** A loopback port where nothing listens. */
    protected static function closed_port(): int
    {
        return BM_Test::free_port();
    }
}
