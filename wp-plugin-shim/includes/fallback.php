<?php
/**
 * Pure-PHP fallback of the bm_relay extension.
 *
 * Hosts that cannot load `bm_relay.so` still get the same API: this file
 * defines bm_configure() … bm_stats() and BmRelayException with the same
 * signatures, return shapes, INI keys and messages, built on hash_hkdf,
 * openssl (AES-256-GCM), hash_hmac and curl. Envelopes, tokens and signed
 * requests are byte-compatible with the extension (protocol v1), so a site
 * can switch between the two without any caller noticing.
 *
 * It does nothing when the extension is loaded: every definition below is
 * guarded, so including it is always harmless.
 *
 * @package bm-relay
 */

if (extension_loaded('bm_relay') || function_exists('bm_push')) {
    return;
}
// Everything below is declared conditionally (inside `if` blocks), so PHP
// does not hoist it: with the extension loaded nothing is redeclared.

if (!class_exists('BmRelayException', false)) {
    /**
     * Raised for invalid input (naming the field) and, in sync mode, for
     * relay errors (HTTP status as the code). Same class as the extension's,
     * so callers catch one type whichever implementation is active.
     */
    class BmRelayException extends RuntimeException
    {
    }
}

/**
 * Internal state and helpers of the fallback. Not part of the API: callers
 * use the bm_* functions, which the extension defines identically.
 *
 * @internal
 */
final class BM_Relay_Fallback
{
    /** Largest user or thread id (2^53 - 1, a safe JSON integer). */
    public const MAX_ID = 9007199254740991;
    /** Largest key epoch (2^32 - 1). */
    public const MAX_EPOCH = 4294967295;
    /** Largest decoded ciphertext (`c`) of an envelope, tag included. */
    public const MAX_CIPHERTEXT = 65536;
    /** Events per push request and body bytes per request (protocol limits). */
    public const MAX_BATCH_EVENTS = 1000;
    public const MAX_BATCH_BYTES = 1048576;
    /** Recipients in one event's `to`, and ids in presence/disconnect. */
    public const MAX_RECIPIENTS = 10000;
    /** Longest token lifetime accepted (30 days). */
    public const MAX_TTL = 2592000;
    /** HKDF salt of protocol v1. */
    public const SALT = 'bm-relay/v1';

    /** @var array<string,mixed> per-request overrides from bm_configure() */
    public static $overrides = [];
    /** @var list<array{0:string,1:array}> queued [event json, wire event] pairs (async mode) */
    public static $queue = [];
    /** @var bool whether the shutdown flush is registered */
    public static $shutdown_registered = false;
    /** @var resource|\CurlHandle|null keep-alive handle of this process */
    private static $curl = null;
    /** @var int pid that owns $curl (re-created after fork) */
    private static $curl_pid = 0;
    /** @var array<string,int|float|null|string> counters for bm_stats() */
    public static $stats = [
        'sent' => 0, 'failed' => 0, 'dropped' => 0, 'batches' => 0,
        'last_error' => null, 'last_error_time' => null,
    ];
    /** @var list<float> recent push latencies in microseconds */
    public static $latencies = [];
    /** @var int time of the last error_log line (at most one a minute) */
    private static $last_logged = 0;
    /** @var array<string,string> derived keys cache, keyed by secret hash + label */
    private static $key_cache = [];

    /** INI defaults, identical to the extension's. */
    private const DEFAULTS = [
        'url' => '',
        'site' => '',
        'secret' => '',
        'secret_file' => '',
        'mode' => 'async',
        'timeout_ms' => 2000,
        'connect_timeout_ms' => 500,
        'queue_size' => 10000,
        'flush_timeout_ms' => 500,
    ];

    /**
     * Validates bm_configure() options and stores them for this request.
     *
     * @param array<mixed> $opts
     */
    public static function configure(array $opts): void
    {
        $clean = [];
        foreach ($opts as $key => $value) {
            if (!is_string($key) || !array_key_exists($key, self::DEFAULTS)) {
                throw new BmRelayException(sprintf('bm_configure: unknown option `%s`', (string) $key));
            }
            $clean[$key] = self::validate_option($key, $value);
        }
        // Setting one secret source replaces the other, so an override wins
        // over whatever the INI says.
        if (array_key_exists('secret', $clean) && !array_key_exists('secret_file', $clean)) {
            $clean['secret_file'] = '';
        }
        if (array_key_exists('secret_file', $clean) && !array_key_exists('secret', $clean)) {
            $clean['secret'] = '';
        }
        self::$overrides = array_merge(self::$overrides, $clean);
    }

    /**
     * Checks one option's type and range; returns its normalised value.
     *
     * @param mixed $value
     * @return mixed
     */
    private static function validate_option(string $key, $value)
    {
        switch ($key) {
            case 'url':
                if (!is_string($value)) {
                    throw new BmRelayException('bm_relay.url must be a string');
                }
                $value = rtrim(trim($value), '/');
                if ($value !== '' && !preg_match('#^https?://[^/\s]+(/[^\s]*)?$#', $value)) {
                    throw new BmRelayException('bm_relay.url must be an http:// or https:// URL');
                }
                return $value;
            case 'site':
                if (!is_string($value)) {
                    throw new BmRelayException('bm_relay.site must be a string');
                }
                if ($value !== '' && !self::valid_site($value)) {
                    throw new BmRelayException('bm_relay.site must match ^[a-z0-9][a-z0-9._-]{0,63}$');
                }
                return $value;
            case 'secret':
                if (!is_string($value)) {
                    throw new BmRelayException('bm_relay.secret must be a string');
                }
                $value = trim($value);
                $raw = $value === '' ? '' : self::b64u_decode($value);
                if ($value !== '' && ($raw === null || strlen($raw) !== 32)) {
                    throw new BmRelayException('bm_relay.secret must be 32 bytes written as base64url without padding (43 characters)');
                }
                return $value;
            case 'secret_file':
                if (!is_string($value)) {
                    throw new BmRelayException('bm_relay.secret_file must be a string');
                }
                return $value;
            case 'mode':
                if ($value !== 'async' && $value !== 'sync') {
                    throw new BmRelayException('bm_relay.mode must be "async" or "sync"');
                }
                return $value;
            default: // the four integer settings
                $min = 1;
                $max = $key === 'queue_size' ? 10000000 : 600000;
                if (is_string($value) && preg_match('/^\d+$/', $value)) {
                    $value = (int) $value;
                }
                if (!is_int($value) || $value < $min || $value > $max) {
                    throw new BmRelayException(sprintf('bm_relay.%s must be an integer from %d to %d', $key, $min, $max));
                }
                return $value;
        }
    }

    /**
     * The effective value of a setting: bm_configure() override, else the
     * INI value from php.ini/conf.d (get_cfg_var, as the extension is absent),
     * else the default.
     *
     * @return mixed
     */
    public static function setting(string $key)
    {
        if (array_key_exists($key, self::$overrides)) {
            return self::$overrides[$key];
        }
        $ini = get_cfg_var('bm_relay.' . $key);
        if ($ini !== false && $ini !== '') {
            // A bad INI value is reported when it is used, naming the key.
            return self::validate_option($key, $ini);
        }
        return self::DEFAULTS[$key];
    }

    /** True for a valid site id (protocol §2). */
    public static function valid_site(string $site): bool
    {
        return (bool) preg_match('/^[a-z0-9][a-z0-9._-]{0,63}$/D', $site);
    }

    /** The configured site id; throws when unset. */
    public static function site(): string
    {
        $site = (string) self::setting('site');
        if ($site === '') {
            throw new BmRelayException('bm_relay.site is not set (php.ini or bm_configure)');
        }
        return $site;
    }

    /** The configured relay base URL; throws when unset. */
    public static function url(): string
    {
        $url = (string) self::setting('url');
        if ($url === '') {
            throw new BmRelayException('bm_relay.url is not set (php.ini or bm_configure)');
        }
        return $url;
    }

    /** The 32-byte site secret, from the secret file (preferred) or the setting. */
    public static function secret(): string
    {
        $file = (string) self::setting('secret_file');
        if ($file !== '') {
            $text = @file_get_contents($file);
            if ($text === false) {
                throw new BmRelayException('bm_relay.secret_file cannot be read');
            }
            $raw = self::b64u_decode(trim($text));
            if ($raw === null || strlen($raw) !== 32) {
                throw new BmRelayException('bm_relay.secret_file must hold 32 bytes written as base64url without padding (43 characters)');
            }
            return $raw;
        }
        $text = (string) self::setting('secret');
        if ($text === '') {
            throw new BmRelayException('bm_relay.secret is not set (set bm_relay.secret_file or bm_relay.secret, or call bm_configure)');
        }
        $raw = self::b64u_decode($text);
        if ($raw === null || strlen($raw) !== 32) {
            throw new BmRelayException('bm_relay.secret must be 32 bytes written as base64url without padding (43 characters)');
        }
        return $raw;
    }

    /** HKDF-SHA256 with the protocol salt, 32 bytes (protocol §3). */
    public static function hkdf(string $ikm, string $info): string
    {
        return hash_hkdf('sha256', $ikm, 32, $info, self::SALT);
    }

    /** relay_key of the configured secret. */
    public static function relay_key(): string
    {
        return self::derived('relay');
    }

    /** Key for a key id `t/{t}/{e}` or `u/{u}`. */
    public static function envelope_key(string $kid): string
    {
        return self::derived($kid);
    }

    /** Derives (and caches per secret) the relay key or an envelope key. */
    private static function derived(string $label): string
    {
        $secret = self::secret();
        $tag = hash('sha256', $secret, true) . '|' . $label;
        if (isset(self::$key_cache[$tag])) {
            return self::$key_cache[$tag];
        }
        if ($label === 'relay') {
            $key = self::hkdf($secret, 'relay');
        } else {
            $content = self::hkdf($secret, 'content');
            if ($label[0] === 't') {
                [, $t, $e] = explode('/', $label);
                $key = self::hkdf($content, "thread/$t/$e");
            } else {
                [, $u] = explode('/', $label);
                $key = self::hkdf($content, "user/$u");
            }
        }
        if (count(self::$key_cache) > 1024) {
            self::$key_cache = [];
        }
        return self::$key_cache[$tag] = $key;
    }

    /** base64url without padding. */
    public static function b64u(string $raw): string
    {
        return rtrim(strtr(base64_encode($raw), '+/', '-_'), '=');
    }

    /** Strict base64url decode (no padding, canonical); null when invalid. */
    public static function b64u_decode(string $text): ?string
    {
        if (!preg_match('/^[A-Za-z0-9_-]*$/D', $text) || strlen($text) % 4 === 1) {
            return null;
        }
        $raw = base64_decode(strtr($text, '-_', '+/'), true);
        if ($raw === false || self::b64u($raw) !== $text) {
            return null;
        }
        return $raw;
    }

    /**
     * Checks that $value is an id 1 … 2^53-1, naming $field when not.
     *
     * @param mixed $value
     */
    public static function id($value, string $field): int
    {
        if (!is_int($value) || $value < 1 || $value > self::MAX_ID) {
            throw new BmRelayException(sprintf('%s must be an integer from 1 to 9007199254740991', $field));
        }
        return $value;
    }

    /**
     * Checks a list of ids (`to`, presence, disconnect).
     *
     * @param mixed $value
     * @return list<int>
     */
    public static function ids($value, string $field): array
    {
        if (!is_array($value)) {
            throw new BmRelayException(sprintf('%s must be an array of user ids', $field));
        }
        if (count($value) > self::MAX_RECIPIENTS) {
            throw new BmRelayException(sprintf('%s has more than %d ids', $field, self::MAX_RECIPIENTS));
        }
        $out = [];
        $i = 0;
        foreach ($value as $v) {
            $out[] = self::id($v, sprintf('%s[%d]', $field, $i));
            $i++;
        }
        return $out;
    }

    /**
     * Validates an event array and returns what sealing and sending need.
     *
     * @param mixed $event
     * @return array{id:string,kid:string,to:list<int>,thread:?int,plaintext:string}
     */
    public static function parse_event($event, string $field = 'event'): array
    {
        if (!is_array($event)) {
            throw new BmRelayException(sprintf('%s must be an array', $field));
        }
        $known = ['type' => 1, 'data' => 1, 'to' => 1, 'thread' => 1, 'epoch' => 1, 'live' => 1, 'id' => 1];
        foreach ($event as $k => $_) {
            if (!isset($known[$k])) {
                throw new BmRelayException(sprintf('%s: unknown field `%s`', $field, (string) $k));
            }
        }
        $type = $event['type'] ?? null;
        if (!is_string($type) || $type === '') {
            throw new BmRelayException(sprintf('%s.type must be a non-empty string', $field));
        }
        $to = self::ids($event['to'] ?? [], $field . '.to');
        $thread = $event['thread'] ?? null;
        if ($thread !== null) {
            $thread = self::id($thread, $field . '.thread');
        }
        $epoch = $event['epoch'] ?? 0;
        if (!is_int($epoch) || $epoch < 0 || $epoch > self::MAX_EPOCH) {
            throw new BmRelayException(sprintf('%s.epoch must be an integer from 0 to 4294967295', $field));
        }
        $live = $event['live'] ?? false;
        if (!is_bool($live)) {
            throw new BmRelayException(sprintf('%s.live must be a boolean', $field));
        }
        $id = $event['id'] ?? null;
        if ($id === null) {
            $id = self::b64u(random_bytes(16));
        } elseif (!is_string($id) || !preg_match('/^[A-Za-z0-9_-]{1,64}$/D', $id)) {
            throw new BmRelayException(sprintf('%s.id must match ^[A-Za-z0-9_-]{1,64}$', $field));
        }
        if ($thread !== null) {
            $kid = "t/$thread/$epoch";
        } else {
            if ($live) {
                throw new BmRelayException(sprintf('%s.live needs %s.thread', $field, $field));
            }
            if (count(array_unique($to)) !== 1) {
                throw new BmRelayException(sprintf('%s.to must name exactly one user when %s.thread is not set (the user key seals it)', $field, $field));
            }
            $kid = 'u/' . $to[0];
        }
        try {
            $plaintext = json_encode(
                ['type' => $type, 'data' => $event['data'] ?? null],
                JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
            );
        } catch (JsonException $e) {
            throw new BmRelayException(sprintf('%s.data is not JSON-encodable: %s', $field, $e->getMessage()));
        }
        if (strlen($plaintext) + 16 > self::MAX_CIPHERTEXT) {
            throw new BmRelayException(sprintf('%s is too large: %d bytes sealed, over the limit of %d', $field, strlen($plaintext) + 16, self::MAX_CIPHERTEXT));
        }
        return [
            'id' => $id,
            'kid' => $kid,
            'to' => $to,
            'thread' => $live ? $thread : null,
            'plaintext' => $plaintext,
        ];
    }

    /**
     * Seals a parsed event: AES-256-GCM, fresh nonce, AAD `bm1|site|id|k`.
     *
     * @param array{id:string,kid:string,plaintext:string} $ev
     */
    public static function seal(array $ev): string
    {
        $site = self::site();
        $key = self::envelope_key($ev['kid']);
        $nonce = random_bytes(12);
        $tag = '';
        $aad = 'bm1|' . $site . '|' . $ev['id'] . '|' . $ev['kid'];
        $c = openssl_encrypt($ev['plaintext'], 'aes-256-gcm', $key, OPENSSL_RAW_DATA, $nonce, $tag, $aad, 16);
        if ($c === false) {
            throw new BmRelayException('sealing failed (openssl)');
        }
        // Field order v, id, k, n, c as every implementation writes it.
        return '{"v":1,"id":"' . $ev['id'] . '","k":"' . $ev['kid'] . '","n":"' . self::b64u($nonce)
            . '","c":"' . self::b64u($c . $tag) . '"}';
    }

    /**
     * Opens an envelope with the configured secret.
     *
     * @return array{type:string,data:mixed}
     */
    public static function open(string $json): array
    {
        if (strlen($json) > self::MAX_CIPHERTEXT * 2) {
            throw new BmRelayException('envelope is too large');
        }
        $env = json_decode($json, true, 4);
        if (!is_array($env) || array_keys($env) === [] || array_is_list($env)) {
            throw new BmRelayException('envelope is malformed: not a JSON object');
        }
        $keys = array_keys($env);
        sort($keys);
        if ($keys !== ['c', 'id', 'k', 'n', 'v']) {
            throw new BmRelayException('envelope is malformed: it must have exactly the fields v, id, k, n, c');
        }
        if ($env['v'] !== 1) {
            throw new BmRelayException('envelope version is not supported (expected 1)');
        }
        if (!is_string($env['id']) || !preg_match('/^[A-Za-z0-9_-]{1,64}$/D', $env['id'])) {
            throw new BmRelayException('envelope is malformed: id must match ^[A-Za-z0-9_-]{1,64}$');
        }
        if (!is_string($env['k']) || !self::valid_kid($env['k'])) {
            throw new BmRelayException('envelope is malformed: k must be t/{thread}/{epoch} or u/{user}');
        }
        $nonce = is_string($env['n']) ? self::b64u_decode($env['n']) : null;
        if ($nonce === null || strlen($nonce) !== 12) {
            throw new BmRelayException('envelope nonce `n` must be 12 bytes of base64url');
        }
        if (!is_string($env['c'])) {
            throw new BmRelayException('envelope ciphertext `c` must be base64url of at least 16 bytes');
        }
        if (intdiv(strlen($env['c']) * 3, 4) > self::MAX_CIPHERTEXT) {
            throw new BmRelayException(sprintf('envelope ciphertext is over the limit of %d bytes', self::MAX_CIPHERTEXT));
        }
        $c = self::b64u_decode($env['c']);
        if ($c === null || strlen($c) < 16) {
            throw new BmRelayException('envelope ciphertext `c` must be base64url of at least 16 bytes');
        }
        $aad = 'bm1|' . self::site() . '|' . $env['id'] . '|' . $env['k'];
        $plain = openssl_decrypt(substr($c, 0, -16), 'aes-256-gcm', self::envelope_key($env['k']), OPENSSL_RAW_DATA, $nonce, substr($c, -16), $aad);
        if ($plain === false) {
            throw new BmRelayException('envelope does not open (tampered, wrong site or wrong key)');
        }
        $payload = json_decode($plain, true, 512);
        if (!is_array($payload) || !array_key_exists('type', $payload) || !is_string($payload['type'])) {
            throw new BmRelayException('envelope payload is not a {"type","data"} JSON object');
        }
        return ['type' => $payload['type'], 'data' => $payload['data'] ?? null];
    }

    /** True for a canonical key id `t/{t}/{e}` or `u/{u}` with ids in range. */
    private static function valid_kid(string $k): bool
    {
        $n = '(0|[1-9][0-9]{0,15})';
        if (preg_match("#^t/$n/$n$#D", $k, $m)) {
            return (int) $m[1] >= 1 && (int) $m[1] <= self::MAX_ID && (int) $m[2] <= self::MAX_EPOCH;
        }
        if (preg_match("#^u/$n$#D", $k, $m)) {
            return (int) $m[1] >= 1 && (int) $m[1] <= self::MAX_ID;
        }
        return false;
    }

    /**
     * A JWT (HS256, relay key) with claims in the order site, sub, thread, iat, exp.
     *
     * @param mixed $user
     * @param mixed $thread
     * @param mixed $ttl
     */
    public static function token($user, $thread, $ttl): string
    {
        $user = self::id($user, 'user_id');
        if ($thread !== null) {
            $thread = self::id($thread, 'thread_id');
        }
        if (!is_int($ttl) || $ttl < 1 || $ttl > self::MAX_TTL) {
            throw new BmRelayException(sprintf('ttl must be an integer from 1 to %d seconds', self::MAX_TTL));
        }
        $site = self::site();
        $key = self::relay_key();
        $iat = time();
        $claims = ['site' => $site, 'sub' => (string) $user];
        if ($thread !== null) {
            $claims['thread'] = $thread;
        }
        $claims['iat'] = $iat;
        $claims['exp'] = $iat + $ttl;
        $head = self::b64u('{"alg":"HS256","typ":"JWT"}');
        $body = self::b64u(json_encode($claims, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE));
        return $head . '.' . $body . '.' . self::b64u(hash_hmac('sha256', $head . '.' . $body, $key, true));
    }

    /** `v1=<hex>` signature of a server API request (protocol §5). */
    public static function signature(string $key, int $ts, string $site, string $method, string $path, string $body): string
    {
        return 'v1=' . hash_hmac('sha256', $ts . "\n" . $site . "\n" . $method . ' ' . $path . "\n" . $body, $key);
    }

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
     * Sends one signed POST to the relay and returns the decoded reply.
     *
     * @param int|null $timeout_ms overall bound (defaults to timeout_ms)
     * @return array<mixed>
     */
    public static function post(string $path, string $body, ?int $timeout_ms = null): array
    {
        $url = self::url();
        $site = self::site();
        $key = self::relay_key();
        $ts = time();
        $ch = self::curl();
        $timeout = $timeout_ms ?? (int) self::setting('timeout_ms');
        $connect = min((int) self::setting('connect_timeout_ms'), $timeout);
        curl_setopt_array($ch, [
            CURLOPT_URL => $url . $path,
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_HEADER => false,
            CURLOPT_NOSIGNAL => true,
            CURLOPT_CONNECTTIMEOUT_MS => max(1, $connect),
            CURLOPT_TIMEOUT_MS => max(1, $timeout),
            CURLOPT_TCP_NODELAY => true,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_HTTPHEADER => [
                'Content-Type: application/json',
                'Expect:',
                'X-BM-Site: ' . $site,
                'X-BM-Timestamp: ' . $ts,
                'X-BM-Signature: ' . self::signature($key, $ts, $site, 'POST', $path, $body),
            ],
        ]);
        $reply = curl_exec($ch);
        if ($reply === false) {
            $msg = sprintf('relay unreachable at %s: %s', $url, curl_error($ch));
            throw new BmRelayException($msg, 0);
        }
        $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        $data = json_decode((string) $reply, true);
        if ($status !== 200) {
            $code = is_array($data) && isset($data['error']['code']) && is_string($data['error']['code']) ? $data['error']['code'] : 'unknown';
            $detail = is_array($data) && isset($data['error']['message']) && is_string($data['error']['message']) ? $data['error']['message'] : '';
            throw new BmRelayException(sprintf('relay answered HTTP %d (%s)%s', $status, $code, $detail !== '' ? ': ' . $detail : ''), $status);
        }
        if (!is_array($data)) {
            throw new BmRelayException(sprintf('relay answered HTTP 200 with a body that is not JSON'), $status);
        }
        return $data;
    }

    /**
     * Sends wire events in batches within the protocol limits; returns the
     * relay's results in order.
     *
     * @param list<array> $wire
     * @return list<array{online:list<int>,sockets:int}>
     */
    public static function send(array $wire, ?int $timeout_ms = null): array
    {
        $results = [];
        foreach (self::batches($wire) as $batch) {
            $body = '{"events":[' . implode(',', $batch) . ']}';
            $t0 = hrtime(true);
            try {
                $reply = self::post('/v1/push', $body, $timeout_ms);
            } catch (BmRelayException $e) {
                self::fail(count($batch), $e->getMessage());
                throw $e;
            }
            self::$stats['batches']++;
            self::$stats['sent'] += count($batch);
            self::latency((hrtime(true) - $t0) / 1000 / max(1, count($batch)));
            $res = $reply['results'] ?? null;
            if (!is_array($res) || count($res) !== count($batch)) {
                throw new BmRelayException('relay answered with a results list that does not match the events sent');
            }
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
     * Splits encoded wire events into request-sized batches.
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
            if ($cur && (count($cur) >= self::MAX_BATCH_EVENTS || $bytes + strlen($w) + 1 > self::MAX_BATCH_BYTES)) {
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

    /** One push event of the wire format: {"to":[…],"thread":t,"e":<envelope>}. */
    public static function wire(array $ev, string $envelope): string
    {
        $out = '{"to":' . json_encode($ev['to']);
        if ($ev['thread'] !== null) {
            $out .= ',"thread":' . $ev['thread'];
        }
        return $out . ',"e":' . $envelope . '}';
    }

    /** Records a failure for bm_stats() and logs at most once a minute. */
    public static function fail(int $events, string $message): void
    {
        self::$stats['failed'] += $events;
        self::$stats['last_error'] = $message;
        self::$stats['last_error_time'] = time();
        if (time() - self::$last_logged >= 60) {
            self::$last_logged = time();
            error_log('bm_relay: ' . $message);
        }
    }

    /** Keeps the last 1000 per-event latencies for the percentiles. */
    private static function latency(float $us): void
    {
        self::$latencies[] = $us;
        if (count(self::$latencies) > 1000) {
            array_shift(self::$latencies);
        }
    }

    /** A percentile of the recorded latencies, in microseconds. */
    public static function percentile(float $p): int
    {
        if (!self::$latencies) {
            return 0;
        }
        $sorted = self::$latencies;
        sort($sorted);
        $i = (int) min(count($sorted) - 1, max(0, ceil($p * count($sorted)) - 1));
        return (int) round($sorted[$i]);
    }

    /**
     * Seals and either sends (sync) or queues (async) events.
     *
     * @param list<mixed> $events
     * @return array|bool
     */
    public static function push(array $events, bool $many)
    {
        $wire = [];
        foreach ($events as $i => $event) {
            $ev = self::parse_event($event, $many ? "events[$i]" : 'event');
            $wire[] = self::wire($ev, self::seal($ev));
        }
        if (self::setting('mode') === 'sync') {
            if (!$wire) {
                return [];
            }
            $res = self::send($wire);
            return $many ? $res : $res[0];
        }
        if (count(self::$queue) + count($wire) > (int) self::setting('queue_size')) {
            self::$stats['dropped'] += count($wire);
            self::$stats['last_error'] = 'queue full: event dropped (bm_relay.queue_size)';
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

    /** Sends the queue within $timeout_ms; true when it is empty afterwards. */
    public static function flush(?int $timeout_ms): bool
    {
        if (!self::$queue) {
            return true;
        }
        $timeout = $timeout_ms ?? (int) self::setting('flush_timeout_ms');
        $queue = self::$queue;
        self::$queue = [];
        try {
            self::send($queue, max(1, $timeout));
            return true;
        } catch (BmRelayException $e) {
            // send() counted the failed batch; events after it are lost too.
            return false;
        }
    }

    /** Request end: let the user go first (FPM), then flush the queue. */
    public static function shutdown(): void
    {
        self::$shutdown_registered = false;
        if (!self::$queue) {
            return;
        }
        if (function_exists('fastcgi_finish_request')) {
            fastcgi_finish_request();
        }
        try {
            self::flush(null);
        } catch (Throwable $e) {
            self::fail(count(self::$queue), $e->getMessage());
            self::$queue = [];
        }
    }
}

if (!function_exists('bm_push')) {
    /**
     * Per-request override of the bm_relay.* settings (keys without the prefix).
     *
     * @param array<string,mixed> $opts
     */
    function bm_configure(array $opts): void
    {
        BM_Relay_Fallback::configure($opts);
    }

    /**
     * Seals one event and sends (sync) or queues (async) it.
     *
     * @param array<string,mixed> $event
     * @return array|bool
     */
    function bm_push(array $event)
    {
        return BM_Relay_Fallback::push([$event], false);
    }

    /**
     * Seals several events; sent in one request, in order.
     *
     * @param list<array<string,mixed>> $events
     * @return array|bool
     */
    function bm_push_many(array $events)
    {
        return BM_Relay_Fallback::push(array_values($events), true);
    }

    /** Sends what the async queue holds, waiting at most $timeout_ms. */
    function bm_flush(?int $timeout_ms = null): bool
    {
        if ($timeout_ms !== null && $timeout_ms < 0) {
            throw new BmRelayException('timeout_ms must not be negative');
        }
        return BM_Relay_Fallback::flush($timeout_ms);
    }

    /**
     * The envelope JSON of an event, nothing sent.
     *
     * @param array<string,mixed> $event
     */
    function bm_seal(array $event): string
    {
        return BM_Relay_Fallback::seal(BM_Relay_Fallback::parse_event($event));
    }

    /**
     * Opens an envelope with the configured secret.
     *
     * @return array{type:string,data:mixed}
     */
    function bm_open(string $envelope): array
    {
        return BM_Relay_Fallback::open($envelope);
    }

    /** Connection token for a user's browser. */
    function bm_client_token(int $user_id, int $ttl = 3600): string
    {
        return BM_Relay_Fallback::token($user_id, null, $ttl);
    }

    /** Thread token: proof that the user may subscribe to the thread. */
    function bm_thread_token(int $user_id, int $thread_id, int $ttl = 3600): string
    {
        return BM_Relay_Fallback::token($user_id, $thread_id, $ttl);
    }

    /** b64u thread key of an epoch, for the browsers of the thread's members. */
    function bm_thread_key(int $thread_id, int $epoch = 0): string
    {
        BM_Relay_Fallback::id($thread_id, 'thread_id');
        if ($epoch < 0 || $epoch > BM_Relay_Fallback::MAX_EPOCH) {
            throw new BmRelayException('epoch must be an integer from 0 to 4294967295');
        }
        return BM_Relay_Fallback::b64u(BM_Relay_Fallback::envelope_key("t/$thread_id/$epoch"));
    }

    /** b64u user key, for that user's browsers. */
    function bm_user_key(int $user_id): string
    {
        BM_Relay_Fallback::id($user_id, 'user_id');
        return BM_Relay_Fallback::b64u(BM_Relay_Fallback::envelope_key("u/$user_id"));
    }

    /** b64u relay key, for configuring the relay (`--site SITE=KEY`). */
    function bm_relay_key(): string
    {
        return BM_Relay_Fallback::b64u(BM_Relay_Fallback::relay_key());
    }

    /**
     * Which of these users have at least one socket on the relay.
     *
     * @param list<int> $user_ids
     * @return list<int>
     */
    function bm_presence(array $user_ids): array
    {
        $ids = BM_Relay_Fallback::ids(array_values($user_ids), 'user_ids');
        $reply = BM_Relay_Fallback::post('/v1/presence', json_encode(['users' => $ids]));
        return array_values(array_map('intval', (array) ($reply['online'] ?? [])));
    }

    /**
     * Closes the users' sockets, or with a thread drops only that subscription.
     *
     * @param list<int> $user_ids
     * @return int sockets affected
     */
    function bm_disconnect(array $user_ids, ?int $thread_id = null): int
    {
        $ids = BM_Relay_Fallback::ids(array_values($user_ids), 'user_ids');
        $body = ['users' => $ids];
        if ($thread_id !== null) {
            $body['thread'] = BM_Relay_Fallback::id($thread_id, 'thread_id');
        }
        $reply = BM_Relay_Fallback::post('/v1/disconnect', json_encode($body));
        return (int) ($reply['closed'] ?? 0);
    }

    /**
     * Counters of this process: queued, sent, failed, dropped, batches, last
     * error, push latency percentiles, relay URL and site.
     *
     * @return array<string,mixed>
     */
    function bm_stats(): array
    {
        $s = BM_Relay_Fallback::$stats;
        $safe = static function (string $key): string {
            try {
                return (string) BM_Relay_Fallback::setting($key);
            } catch (BmRelayException $e) {
                return '';
            }
        };
        return [
            'queued' => count(BM_Relay_Fallback::$queue),
            'sent' => $s['sent'],
            'failed' => $s['failed'],
            'dropped' => $s['dropped'],
            'batches' => $s['batches'],
            'last_error' => $s['last_error'] === null ? null : ['message' => $s['last_error'], 'time' => $s['last_error_time']],
            'latency_p50_us' => BM_Relay_Fallback::percentile(0.50),
            'latency_p99_us' => BM_Relay_Fallback::percentile(0.99),
            'url' => $safe('url'),
            'site' => $safe('site'),
            'mode' => $safe('mode'),
            'implementation' => 'php',
        ];
    }
}
