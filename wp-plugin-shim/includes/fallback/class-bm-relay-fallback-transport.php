<?php

/**
 * Pure-PHP fallback of the bm_relay extension: transport.
 *
 * The relay over HTTP: one keep-alive curl handle per process, batches, the async queue sent at request end, counters and the rate-limited error log.
 * Reads side by side with `ext/src/relay.rs, worker.rs`.
 *
 * @package bm-relay
 * @internal
 */

/**
 * The relay over HTTP (fallback).
 *
 * @internal
 */
final class BM_Relay_Fallback_Transport
{
    /** Events per push request / per bm_push_many call, body bytes per request. */
    public const MAX_EVENTS = 1000;

    public const MAX_BATCH_BYTES = 1048576;

    /** @var list<string> queued wire events (async mode) */
    private static $queue = [];

    /** @var bool whether the shutdown flush is registered */
    private static $shutdown_registered = false;

    /** @var resource|\CurlHandle|null keep-alive handle of this process */
    private static $curl = null;

    /** @var int pid that owns $curl (re-created after fork) */
    private static $curl_pid = 0;

    /** @var int TCP connections this process opened to the relay (keep-alive check) */
    private static $connects = 0;

    /** @var array{sent:int,failed:int,dropped:int,batches:int,last_error:?string,last_error_time:?int} */
    private static $stats = [
        'sent' => 0, 'failed' => 0, 'dropped' => 0, 'batches' => 0,
        'last_error' => null, 'last_error_time' => null,
    ];

    /** @var list<float> recent bm_push call costs, microseconds */
    private static $push_latency = [];

    /** @var list<float> recent relay round trips per batch, microseconds */
    private static $relay_latency = [];

    /** @var int failures not yet reported in the error log */
    private static $unlogged = 0;

    /** @var int time of the last error_log line (at most one a minute) */
    private static $last_logged = 0;

    /** The keep-alive curl handle of this process (new after a fork). */
    private static function curl()
    {
        $pid = getmypid();
        if (self::$curl === null || self::$curl_pid !== $pid) {
            // After a fork the inherited handle shares its socket with the
            // parent: leave it alone and open our own.
            self::$curl = curl_init();
            self::$curl_pid = $pid;
        }
        return self::$curl;
    }

    /**
     * One signed POST to the relay; the decoded reply, or a relay error
     * (HTTP status as the code; 0 when unreachable).
     *
     * @return array<mixed>
     */
    public static function post(string $what, string $path, string $body, ?int $timeout_ms = null): array
    {
        $cfg = BM_Relay_Fallback_Config::current();
        $url = BM_Relay_Fallback_Config::url();
        $site = BM_Relay_Fallback_Config::site();
        $key = BM_Relay_Fallback_Keys::relay_key();
        $ts = time();
        $ch = self::curl();
        $timeout = max(1, $timeout_ms ?? $cfg['timeout_ms']);
        $connect = max(1, min($cfg['connect_timeout_ms'], $timeout));
        curl_setopt_array($ch, [
            CURLOPT_URL => $url . $path,
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_HEADER => false,
            CURLOPT_NOSIGNAL => true,
            CURLOPT_CONNECTTIMEOUT_MS => $connect,
            CURLOPT_TIMEOUT_MS => $timeout,
            CURLOPT_TCP_NODELAY => true,
            CURLOPT_FOLLOWLOCATION => false,
            // The relay is addressed directly, like the extension: an
            // http_proxy in the environment (set for package downloads)
            // must not carry the signed requests elsewhere.
            CURLOPT_PROXY => '',
            CURLOPT_HTTPHEADER => [
                'Content-Type: application/json',
                'Expect:',
                'X-BM-Site: ' . $site,
                'X-BM-Timestamp: ' . $ts,
                'X-BM-Signature: ' . BM_Relay_Fallback_Signing::signature($key, $ts, $site, 'POST', $path, $body),
            ],
        ]);
        $t0 = hrtime(true);
        $reply = curl_exec($ch);
        if ($reply === false) {
            $errno = curl_errno($ch);
            $why = $errno === CURLE_OPERATION_TIMEDOUT && curl_getinfo($ch, CURLINFO_CONNECT_TIME) > 0
                ? "no answer within timeout_ms=$timeout"
                : ($errno === CURLE_OPERATION_TIMEDOUT
                    ? "cannot connect (connect_timeout_ms=$connect): timed out"
                    : "cannot connect (connect_timeout_ms=$connect): " . ($errno === CURLE_COULDNT_CONNECT ? 'Connection refused (os error 111)' : curl_error($ch)));
            throw new BmRelayException("relay unreachable for $what at $url: $why", 0);
        }
        self::sample(self::$relay_latency, (hrtime(true) - $t0) / 1000);
        self::$connects += (int) curl_getinfo($ch, CURLINFO_NUM_CONNECTS);
        $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        $data = json_decode((string) $reply, true);
        if ($status !== 200) {
            $detail = is_array($data) && isset($data['error']['code'], $data['error']['message'])
                ? $data['error']['code'] . ': ' . $data['error']['message']
                : substr((string) $reply, 0, 200);
            throw new BmRelayException("relay refused $what: HTTP $status $detail", $status);
        }
        if (!is_array($data)) {
            throw new BmRelayException("relay answered $what with an unreadable body: not JSON", 200);
        }
        return $data;
    }

    /**
     * Sends wire events in request-sized batches; the relay's results in order.
     *
     * @param list<string> $wire
     * @return list<array{online:list<int>,sockets:int}>
     */
    public static function send(array $wire, ?int $timeout_ms = null): array
    {
        $results = [];
        $batches = self::batches($wire);
        foreach ($batches as $n => $batch) {
            $body = '{"events":[' . implode(',', $batch) . ']}';
            self::$stats['batches']++;
            try {
                $reply = self::post('push', '/v1/push', $body, $timeout_ms);
            } catch (BmRelayException $e) {
                $lost = 0;
                for ($i = $n; $i < count($batches); $i++) {
                    $lost += count($batches[$i]);
                }
                self::fail($lost, $e->getMessage());
                throw $e;
            }
            $res = $reply['results'] ?? null;
            if (!is_array($res) || count($res) !== count($batch)) {
                $e = new BmRelayException('relay answered ' . (is_array($res) ? count($res) : 0) . ' results for ' . count($batch) . ' events', 200);
                self::fail(count($batch), $e->getMessage());
                throw $e;
            }
            self::$stats['sent'] += count($batch);
            foreach ($res as $r) {
                $results[] = [
                    'online' => array_values(array_map('intval', (array) ($r['online'] ?? []))),
                    'sockets' => (int) ($r['sockets'] ?? 0),
                ];
            }
        }
        return $results;
    }

    /**
     * Splits encoded wire events into batches within the protocol limits.
     *
     * @param list<string> $wire
     * @return list<list<string>>
     */
    private static function batches(array $wire): array
    {
        $out = [];
        $cur = [];
        $bytes = 12;
        foreach ($wire as $w) {
            if ($cur && (count($cur) >= self::MAX_EVENTS || $bytes + strlen($w) + 1 > self::MAX_BATCH_BYTES)) {
                $out[] = $cur;
                $cur = [];
                $bytes = 12;
            }
            $cur[] = $w;
            $bytes += strlen($w) + 1;
        }
        if ($cur) {
            $out[] = $cur;
        }
        return $out;
    }

    /** Records a failure for bm_stats(). */
    public static function fail(int $events, string $message): void
    {
        self::$stats['failed'] += $events;
        self::$stats['last_error'] = $message;
        self::$stats['last_error_time'] = time();
        self::$unlogged += max(1, $events);
    }

    /** Logs undelivered events at most once a minute (or now, when forced). */
    public static function maybe_log(bool $force = false): void
    {
        if (self::$unlogged === 0 || (!$force && time() - self::$last_logged < 60)) {
            return;
        }
        self::$last_logged = time();
        error_log(sprintf('bm_relay: %d event(s) or call(s) not delivered to the relay; last error: %s', self::$unlogged, (string) self::$stats['last_error']));
        self::$unlogged = 0;
    }

    /** Keeps the last 1000 samples of a latency series. */
    public static function sample(array &$series, float $us): void
    {
        $series[] = $us;
        if (count($series) > 1000) {
            array_shift($series);
        }
    }

    /** A percentile of a latency series, in microseconds. */
    public static function percentile(array $series, float $p): int
    {
        if (!$series) {
            return 0;
        }
        sort($series);
        $i = (int) min(count($series) - 1, max(0, ceil($p * count($series)) - 1));
        return (int) round($series[$i]);
    }

    /**
     * Seals and either sends (sync) or queues (async) events.
     *
     * @param list<array{0:mixed,1:string}> $items event and its field prefix
     * @return array|bool
     */
    public static function push(array $items, bool $many)
    {
        $cfg = BM_Relay_Fallback_Config::current();
        $wire = [];
        foreach ($items as [$event, $prefix]) {
            $ev = BM_Relay_Fallback_Envelope::parse_event($event, $prefix);
            $wire[] = BM_Relay_Fallback_Envelope::wire($ev, BM_Relay_Fallback_Envelope::seal($ev));
        }
        if (!$wire) {
            return $cfg['mode'] === 'sync' ? [] : true;
        }
        BM_Relay_Fallback_Config::url();
        if ($cfg['mode'] === 'sync') {
            $res = self::send($wire);
            return $many ? $res : $res[0];
        }
        if (count(self::$queue) + count($wire) > $cfg['queue_size']) {
            self::$stats['dropped'] += count($wire);
            self::$stats['last_error'] = sprintf('queue full (%d events): %d event(s) dropped', $cfg['queue_size'], count($wire));
            self::$stats['last_error_time'] = time();
            return false;
        }
        foreach ($wire as $w) {
            self::$queue[] = $w;
        }
        if (!self::$shutdown_registered) {
            self::$shutdown_registered = true;
            register_shutdown_function([self::class, 'shutdown']);
        }
        return true;
    }

    /**
     * Sends the queue within $timeout_ms. Like the extension, true means the
     * queue is settled (sent, or failed and counted in the stats); false
     * means time ran out before the relay answered.
     */
    public static function flush(int $timeout_ms): bool
    {
        if (!self::$queue) {
            return true;
        }
        $queue = self::$queue;
        self::$queue = [];
        try {
            self::send($queue, max(1, $timeout_ms));
            return true;
        } catch (BmRelayException $e) {
            // send() counted what was lost.
            return strpos($e->getMessage(), 'no answer within') === false && strpos($e->getMessage(), 'timed out') === false;
        }
    }

    /** Request end: let the user go first (FPM), then flush the queue. */
    public static function shutdown(): void
    {
        self::$shutdown_registered = false;
        if (self::$queue) {
            if (function_exists('fastcgi_finish_request')) {
                fastcgi_finish_request();
            }
            try {
                $wait = BM_Relay_Fallback_Config::current()['flush_timeout_ms'];
                if ($wait === 0) {
                    // The extension's request end does not wait with 0, yet
                    // its background thread still sends the queue. With no
                    // thread here, 0 must not mean "drop": send within
                    // timeout_ms (after the response under FPM).
                    $wait = BM_Relay_Fallback_Config::current()['timeout_ms'];
                }
                self::flush($wait);
            } catch (Throwable $e) {
                self::fail(count(self::$queue), $e->getMessage());
                self::$queue = [];
            }
        }
        self::maybe_log(true);
    }

    /** TCP connections this process opened to the relay (keep-alive check). */
    public static function connects(): int
    {
        return self::$connects;
    }

    /** Records the cost of one bm_push/bm_push_many call, from hrtime(true) at its start. */
    public static function record_push_cost(int $t0): void
    {
        self::sample(self::$push_latency, (hrtime(true) - $t0) / 1000);
    }

    /**
     * The counters of bm_stats(): queue, sent, failed, dropped, batches,
     * last error and latency percentiles.
     *
     * @return array<string,mixed>
     */
    public static function counters(): array
    {
        $s = self::$stats;
        return [
            'queued' => count(self::$queue),
            'sent' => $s['sent'],
            'failed' => $s['failed'],
            'dropped' => $s['dropped'],
            'batches' => $s['batches'],
            'last_error' => $s['last_error'] === null ? null : ['message' => $s['last_error'], 'time' => $s['last_error_time']],
            'latency_p50_us' => self::percentile(self::$push_latency, 0.50),
            'latency_p99_us' => self::percentile(self::$push_latency, 0.99),
            'relay_p50_us' => self::percentile(self::$relay_latency, 0.50),
            'relay_p99_us' => self::percentile(self::$relay_latency, 0.99),
        ];
    }
}
