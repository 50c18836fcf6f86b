<?php

/**
 * Pure-PHP fallback of the bm_relay extension: transport.
 *
 * The relay over HTTP: one keep-alive curl handle per process, batches, the async queue sent at request end, counters and the rate-limited error log.
 * Reads side by side with `ext/src/relay.rs, queue.rs, sender.rs, calls.rs, failover.rs`.
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

    /** Seconds a relay URL that did not answer goes after the others. */
    public const COOLDOWN_S = 5;

    /**
     * What this process saw of each relay URL (as the extension's
     * failover state, but kept per request: PHP forgets static state at
     * request end).
     *
     * @var array<string,array{answered:int,unreachable:int,last_answer:?int,down_until:int}>
     */
    private static $health = [];

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
     * With several relay URLs (bm_relay.url = "http://a,http://b"), the
     * extension's policy (ext/src/failover.rs, docs/PHP-API.md): start with
     * the URL that last answered, go on in list order; a URL that did not
     * answer goes last for COOLDOWN_S; an HTTP answer, error status or not,
     * ends the call; $timeout_ms bounds the whole call, each attempt but the
     * last getting an equal share of what remains.
     *
     * @return array<mixed>
     */
    public static function post(string $what, string $path, string $body, ?int $timeout_ms = null): array
    {
        $cfg = BM_Relay_Fallback_Config::current();
        $urls = BM_Relay_Fallback_Config::urls();
        $site = BM_Relay_Fallback_Config::site();
        $key = BM_Relay_Fallback_Keys::relay_key();
        $timeout = max(1, $timeout_ms ?? $cfg['timeout_ms']);
        $connect = max(1, min($cfg['connect_timeout_ms'], $timeout));
        $deadline = hrtime(true) + $timeout * 1000000;
        $order = self::order($urls);
        $last = null;
        $tried = 0;
        foreach ($order as $n => $i) {
            $now = hrtime(true);
            if ($tried > 0 && $now >= $deadline) {
                break;
            }
            $tried++;
            $share_ms = max(1, intdiv(max(0, $deadline - $now), 1000000 * (count($order) - $n)));
            $url = $urls[$i];
            try {
                $reply = self::post_one($url, $what, $path, $body, $site, $key, $timeout, $connect, $share_ms, $cfg['protocol']);
            } catch (BM_Relay_Fallback_Unreachable $e) {
                self::mark($url, false);
                $last = [$url, $e->getMessage()];
                continue;
            } catch (BmRelayException $e) {
                self::mark($url, true);
                throw $e;
            }
            self::mark($url, true);
            return $reply;
        }
        [$url, $why] = $last;
        if (count($urls) === 1) {
            throw new BmRelayException("relay unreachable for $what at $url: $why", 0);
        }
        throw new BmRelayException(sprintf('relay unreachable for %s: %d of %d URLs tried, none answered; last %s: %s', $what, $tried, count($urls), $url, $why), 0);
    }

    /**
     * One attempt on one URL within $share_ms. Messages quote the
     * configured bounds ($timeout, $connect), as the extension's do.
     *
     * @return array<mixed>
     */
    private static function post_one(string $url, string $what, string $path, string $body, string $site, string $key, int $timeout, int $connect, int $share_ms, int $protocol): array
    {
        $ts = time();
        $headers = [
            'Content-Type: application/json',
            'Expect:',
            'X-BM-Site: ' . $site,
            'X-BM-Timestamp: ' . $ts,
            'X-BM-Signature: ' . BM_Relay_Fallback_Signing::signature($key, $ts, $site, 'POST', $path, $body),
        ];
        if ($protocol === 2) {
            // Protocol v2 (§3.2, §5): the body's ids are pseudonyms.
            $headers[] = 'X-BM-Protocol: 2';
        }
        $ch = self::curl();
        curl_setopt_array($ch, [
            CURLOPT_URL => $url . $path,
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_HEADER => false,
            CURLOPT_NOSIGNAL => true,
            CURLOPT_CONNECTTIMEOUT_MS => min($connect, $share_ms),
            CURLOPT_TIMEOUT_MS => $share_ms,
            CURLOPT_TCP_NODELAY => true,
            CURLOPT_FOLLOWLOCATION => false,
            // The relay is addressed directly, like the extension: an
            // http_proxy in the environment (set for package downloads)
            // must not carry the signed requests elsewhere.
            CURLOPT_PROXY => '',
            CURLOPT_HTTPHEADER => $headers,
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
            throw new BM_Relay_Fallback_Unreachable($why);
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
     * The order in which to try $urls now: from the one that answered
     * last, in list order with wrap-around; those cooling down after the
     * others.
     *
     * @param list<string> $urls
     * @return list<int>
     */
    private static function order(array $urls): array
    {
        $n = count($urls);
        if ($n <= 1) {
            return $n ? [0] : [];
        }
        $start = 0;
        $newest = null;
        foreach ($urls as $i => $u) {
            $t = self::$health[$u]['last_answer'] ?? null;
            if ($t !== null && ($newest === null || $t > $newest)) {
                $newest = $t;
                $start = $i;
            }
        }
        $now = hrtime(true);
        $ready = [];
        $down = [];
        for ($k = 0; $k < $n; $k++) {
            $i = ($start + $k) % $n;
            if ((self::$health[$urls[$i]]['down_until'] ?? 0) > $now) {
                $down[] = $i;
            } else {
                $ready[] = $i;
            }
        }
        return array_merge($ready, $down);
    }

    /** Records whether $url answered (any HTTP status) or not. */
    private static function mark(string $url, bool $answered): void
    {
        $h = self::$health[$url] ?? ['answered' => 0, 'unreachable' => 0, 'last_answer' => null, 'down_until' => 0];
        $now = hrtime(true);
        if ($answered) {
            $h['answered']++;
            $h['last_answer'] = $now;
            $h['down_until'] = 0;
        } else {
            $h['unreachable']++;
            $h['down_until'] = $now + self::COOLDOWN_S * 1000000000;
        }
        self::$health[$url] = $h;
    }

    /**
     * What this process saw of each of $urls, for bm_stats()['relays'].
     *
     * @param list<string> $urls
     * @return list<array{url:string,answered:int,unreachable:int,down_for_ms:int}>
     */
    public static function relay_states(array $urls): array
    {
        $now = hrtime(true);
        $out = [];
        foreach ($urls as $u) {
            $h = self::$health[$u] ?? ['answered' => 0, 'unreachable' => 0, 'down_until' => 0];
            $out[] = [
                'url' => $u,
                'answered' => $h['answered'],
                'unreachable' => $h['unreachable'],
                'down_for_ms' => (int) max(0, intdiv($h['down_until'] - $now, 1000000)),
            ];
        }
        return $out;
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
        $v2 = $cfg['protocol'] === 2;
        $wire = [];
        $events = [];
        foreach ($items as [$event, $prefix]) {
            $ev = BM_Relay_Fallback_Envelope::parse_event($event, $prefix, $v2);
            $wire[] = BM_Relay_Fallback_Envelope::wire($ev, BM_Relay_Fallback_Envelope::seal($ev));
            $events[] = $ev;
        }
        if (!$wire) {
            return $cfg['mode'] === 'sync' ? [] : true;
        }
        BM_Relay_Fallback_Config::urls();
        if ($cfg['mode'] === 'sync') {
            $res = self::send($wire);
            if ($v2) {
                // `online` in WordPress ids, through each event's own `to`.
                foreach ($res as $i => $r) {
                    $res[$i]['online'] = BM_Relay_Fallback_Keys::back($events[$i]['wp_to'], $events[$i]['to'], $r['online']);
                }
            }
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
