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
 * use the bm_* functions, which the extension defines identically. Rules
 * and messages follow the extension (`ext/src/values.rs`, `event.rs`,
 * `config.rs`) so a caller sees the same exception for the same mistake.
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
    /** Events per push request / per bm_push_many call, body bytes per request. */
    public const MAX_EVENTS = 1000;
    public const MAX_BATCH_BYTES = 1048576;
    /** Recipients in one event's `to`, and ids in presence/disconnect. */
    public const MAX_RECIPIENTS = 10000;
    /** Longest token lifetime accepted (10 years of 366 days). */
    public const MAX_TTL = 316224000;
    /** Longest event type, in bytes. */
    public const MAX_TYPE_LEN = 128;
    /** Timeouts are 0/1 … 600000 ms, queue 1 … 1000000 events. */
    public const MAX_TIMEOUT_MS = 600000;
    public const MAX_QUEUE = 1000000;
    /** HKDF salt of protocol v1. */
    public const SALT = 'bm-relay/v1';
    /** Keys of an event array, in the extension's order (for messages). */
    public const EVENT_KEYS = ['type', 'data', 'to', 'thread', 'epoch', 'live', 'id'];

    /** INI keys and defaults, identical to the extension's. */
    public const KEYS = [
        'url' => '',
        'site' => '',
        'secret_file' => '',
        'secret' => '',
        'mode' => 'async',
        'timeout_ms' => '2000',
        'connect_timeout_ms' => '500',
        'queue_size' => '10000',
        'flush_timeout_ms' => '500',
    ];

    /** @var list<array{0:string,1:string}> bm_configure() overrides of this request, in order */
    public static $overrides = [];
    /** @var list<string> queued wire events (async mode) */
    public static $queue = [];
    /** @var bool whether the shutdown flush is registered */
    public static $shutdown_registered = false;
    /** @var resource|\CurlHandle|null keep-alive handle of this process */
    private static $curl = null;
    /** @var int pid that owns $curl (re-created after fork) */
    private static $curl_pid = 0;
    /** @var int TCP connections this process opened to the relay (keep-alive check) */
    public static $connects = 0;
    /** @var array{sent:int,failed:int,dropped:int,batches:int,last_error:?string,last_error_time:?int} */
    public static $stats = [
        'sent' => 0, 'failed' => 0, 'dropped' => 0, 'batches' => 0,
        'last_error' => null, 'last_error_time' => null,
    ];
    /** @var list<float> recent bm_push call costs, microseconds */
    public static $push_latency = [];
    /** @var list<float> recent relay round trips per batch, microseconds */
    public static $relay_latency = [];
    /** @var int failures not yet reported in the error log */
    private static $unlogged = 0;
    /** @var int time of the last error_log line (at most one a minute) */
    private static $last_logged = 0;
    /** @var array<string,string> derived keys, keyed by secret hash + label */
    private static $key_cache = [];

    // ----- values (ext/src/values.rs) -----

    /** PHP type name as the extension reports it. */
    public static function type_name($z): string
    {
        if ($z === null) {
            return 'null';
        }
        if (is_bool($z)) {
            return 'bool';
        }
        if (is_int($z)) {
            return 'int';
        }
        if (is_float($z)) {
            return 'float';
        }
        if (is_string($z)) {
            return 'string';
        }
        if (is_array($z)) {
            return 'array';
        }
        return is_object($z) ? 'object' : 'resource';
    }

    /** A PHP int, or a string of canonical decimal digits ($wpdb returns those). */
    public static function int_of($z, string $field, string $expected): int
    {
        if (is_int($z)) {
            return $z;
        }
        if (is_string($z)) {
            // Canonical decimal digits that fit an i64, like the extension.
            if (preg_match('/^(0|[1-9][0-9]{0,18})$/D', $z)
                && (strlen($z) < 19 || strcmp($z, '9223372036854775807') <= 0)) {
                return (int) $z;
            }
            throw new BmRelayException("$field must be $expected, got a non-numeric string");
        }
        throw new BmRelayException("$field must be $expected, got " . self::type_name($z));
    }

    /** A user or thread id 1 … 2^53-1. */
    public static function id($z, string $field): int
    {
        $expected = 'an integer 1..' . self::MAX_ID;
        $v = self::int_of($z, $field, $expected);
        if ($v < 1 || $v > self::MAX_ID) {
            throw new BmRelayException("$field must be $expected, got $v");
        }
        return $v;
    }

    /** An epoch 0 … 2^32-1. */
    public static function epoch($z, string $field): int
    {
        $expected = 'an integer 0..' . self::MAX_EPOCH;
        $v = self::int_of($z, $field, $expected);
        if ($v < 0 || $v > self::MAX_EPOCH) {
            throw new BmRelayException("$field must be $expected, got $v");
        }
        return $v;
    }

    /** A token lifetime; null means 3600. */
    public static function ttl($z, string $field): int
    {
        if ($z === null) {
            return 3600;
        }
        $expected = 'an integer number of seconds 1..' . self::MAX_TTL;
        $v = self::int_of($z, $field, $expected);
        if ($v < 1 || $v > self::MAX_TTL) {
            throw new BmRelayException("$field must be $expected, got $v");
        }
        return $v;
    }

    /**
     * A list of user ids (`to`, presence, disconnect).
     *
     * @return list<int>
     */
    public static function ids($z, string $field, int $max = self::MAX_RECIPIENTS): array
    {
        if (!is_array($z)) {
            throw new BmRelayException("$field must be an array of user ids, got " . self::type_name($z));
        }
        if (count($z) > $max) {
            throw new BmRelayException("$field has " . count($z) . " user ids, over the limit of $max");
        }
        $out = [];
        $i = 0;
        foreach ($z as $v) {
            $out[] = self::id($v, "{$field}[$i]");
            $i++;
        }
        return $out;
    }

    // ----- settings (ext/src/config.rs) -----

    /**
     * The raw settings of this request: INI (get_cfg_var, as the extension
     * is absent) or defaults, then the bm_configure() overrides in order.
     *
     * @param list<array{0:string,1:string}> $extra
     * @return array<string,string>
     */
    public static function raw(array $extra = []): array
    {
        $raw = [];
        foreach (self::KEYS as $key => $default) {
            $v = get_cfg_var('bm_relay.' . $key);
            $raw[$key] = is_string($v) ? $v : $default;
        }
        foreach (array_merge(self::$overrides, $extra) as [$key, $value]) {
            if ($key === 'secret') {
                $raw['secret_file'] = '';
            } elseif ($key === 'secret_file') {
                $raw['secret'] = '';
            }
            $raw[$key] = $value;
        }
        return $raw;
    }

    /** Checks the relay URL; returns it without a trailing slash. */
    private static function check_url(string $text): string
    {
        $text = trim($text);
        if ($text === '') {
            return '';
        }
        $bad = static function (string $why): BmRelayException {
            return new BmRelayException("bm_relay.url $why (expected http://host:port or https://host)");
        };
        $u = parse_url($text);
        if ($u === false || !isset($u['scheme'])) {
            throw $bad('is not a URL');
        }
        if ($u['scheme'] !== 'http' && $u['scheme'] !== 'https') {
            throw $bad('must start with http:// or https://');
        }
        if (($u['host'] ?? '') === '') {
            throw $bad('has no host');
        }
        if (isset($u['user']) || isset($u['pass'])) {
            throw $bad('must not contain credentials');
        }
        if (isset($u['query']) || isset($u['fragment'])) {
            throw $bad('must not have a query or fragment');
        }
        return rtrim($text, '/');
    }

    /** A site id check with the protocol's reasons; null when valid. */
    private static function site_problem(string $s): ?string
    {
        if ($s === '' || strlen($s) > 64) {
            return 'must be 1 to 64 characters';
        }
        if (!preg_match('/^[a-z0-9]/', $s)) {
            return 'must start with a-z or 0-9';
        }
        if (!preg_match('/^[a-z0-9._-]+$/D', $s)) {
            return 'may only hold a-z 0-9 . _ -';
        }
        return null;
    }

    /** Milliseconds setting min … 600000. */
    private static function ms(array $raw, string $key, int $min): int
    {
        $t = trim($raw[$key]);
        if (!preg_match('/^\d{1,7}$/D', $t) || (int) $t < $min || (int) $t > self::MAX_TIMEOUT_MS) {
            throw new BmRelayException("bm_relay.$key must be an integer number of milliseconds $min..=" . self::MAX_TIMEOUT_MS);
        }
        return (int) $t;
    }

    /**
     * Validated settings.
     *
     * @param array<string,string> $raw
     * @return array{url:string,site:string,mode:string,timeout_ms:int,connect_timeout_ms:int,queue_size:int,flush_timeout_ms:int}
     */
    public static function settings(array $raw): array
    {
        $url = self::check_url($raw['url']);
        $site = trim($raw['site']);
        if ($site !== '' && ($why = self::site_problem($site)) !== null) {
            throw new BmRelayException("bm_relay.site: site id is malformed: $why");
        }
        $mode = trim($raw['mode']);
        if ($mode === '') {
            $mode = 'async';
        }
        if ($mode !== 'async' && $mode !== 'sync') {
            throw new BmRelayException("bm_relay.mode must be 'async' or 'sync'");
        }
        $q = trim($raw['queue_size']);
        if (!preg_match('/^\d{1,7}$/D', $q) || (int) $q < 1 || (int) $q > self::MAX_QUEUE) {
            throw new BmRelayException('bm_relay.queue_size must be an integer 1..=' . self::MAX_QUEUE);
        }
        return [
            'url' => $url,
            'site' => $site,
            'mode' => $mode,
            'timeout_ms' => self::ms($raw, 'timeout_ms', 1),
            'connect_timeout_ms' => self::ms($raw, 'connect_timeout_ms', 1),
            'queue_size' => (int) $q,
            'flush_timeout_ms' => self::ms($raw, 'flush_timeout_ms', 0),
        ];
    }

    /** The 32-byte site secret: secret_file (preferred) or secret. */
    public static function load_secret(array $raw): string
    {
        $form = '32 bytes written as base64url without padding, 43 characters';
        $file = trim($raw['secret_file']);
        if ($file !== '') {
            if (!is_file($file)) {
                throw new BmRelayException("bm_relay.secret_file: cannot read '$file': no such file");
            }
            $text = @file_get_contents($file);
            if ($text === false) {
                throw new BmRelayException("bm_relay.secret_file: cannot read '$file': permission denied");
            }
            $key = self::b64u_decode(trim($text));
            if ($key === null || strlen($key) !== 32) {
                throw new BmRelayException("bm_relay.secret_file: '$file' does not hold a site secret ($form)");
            }
            return $key;
        }
        if (trim($raw['secret']) !== '') {
            $key = self::b64u_decode(trim($raw['secret']));
            if ($key === null || strlen($key) !== 32) {
                throw new BmRelayException("bm_relay.secret is not a site secret ($form)");
            }
            return $key;
        }
        throw new BmRelayException('no site secret configured: set bm_relay.secret_file (preferred) or bm_relay.secret');
    }

    /**
     * Validates bm_configure() options and stores them for this request.
     * A null value restores the INI value.
     */
    public static function configure($opts): void
    {
        if (!is_array($opts)) {
            throw new BmRelayException('opts must be an array, got ' . self::type_name($opts));
        }
        $new = [];
        $restore = [];
        foreach ($opts as $key => $value) {
            if (is_int($key)) {
                throw new BmRelayException("opts must have string keys, got the int key $key");
            }
            if (!array_key_exists($key, self::KEYS)) {
                throw new BmRelayException("unknown setting '$key' (known: " . implode(', ', array_keys(self::KEYS)) . ')');
            }
            if ($value === null) {
                $restore[] = $key;
            } elseif (in_array($key, ['url', 'site', 'secret', 'secret_file', 'mode'], true)) {
                if (!is_string($value)) {
                    throw new BmRelayException("'$key' must be a string, got " . self::type_name($value));
                }
                $new[] = [$key, $value];
            } else {
                $new[] = [$key, (string) self::int_of($value, "'$key'", 'an integer')];
            }
        }
        foreach ($restore as $key) {
            $v = get_cfg_var('bm_relay.' . $key);
            $new[] = [$key, is_string($v) ? $v : self::KEYS[$key]];
        }
        $raw = self::raw($new);
        self::settings($raw);
        foreach ($new as [$key]) {
            if ($key === 'secret' || $key === 'secret_file') {
                self::load_secret($raw);
                break;
            }
        }
        foreach ($new as $pair) {
            self::$overrides[] = $pair;
        }
    }

    /** Validated settings of this request. */
    public static function current(): array
    {
        return self::settings(self::raw());
    }

    /** The configured site id; throws when unset. */
    public static function site(): string
    {
        $site = self::current()['site'];
        if ($site === '') {
            throw new BmRelayException('bm_relay.site is not set');
        }
        return $site;
    }

    /** The relay base URL; throws when unset. */
    public static function url(): string
    {
        $url = self::current()['url'];
        if ($url === '') {
            throw new BmRelayException('bm_relay.url is not set');
        }
        return $url;
    }

    /** The site secret of this request. */
    public static function secret(): string
    {
        return self::load_secret(self::raw());
    }

    // ----- keys (protocol §3) -----

    /** HKDF-SHA256 with the protocol salt, 32 bytes. */
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
            $parts = explode('/', $label);
            $key = $parts[0] === 't'
                ? self::hkdf($content, "thread/{$parts[1]}/{$parts[2]}")
                : self::hkdf($content, "user/{$parts[1]}");
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

    // ----- events (ext/src/event.rs) -----

    /** `'key'` or `events[3]['key']`, as messages name a field. */
    private static function field(string $prefix, string $key): string
    {
        return $prefix === '' ? "'$key'" : "{$prefix}['$key']";
    }

    /**
     * Validates an event array (same order of checks as the extension).
     *
     * @return array{id:string,kid:string,to:list<int>,thread:?int,plaintext:string}
     */
    public static function parse_event($event, string $prefix): array
    {
        $what = $prefix === '' ? 'event' : $prefix;
        if (!is_array($event)) {
            throw new BmRelayException("$what must be an array, got " . self::type_name($event));
        }
        $type = null;
        $data = null;
        $to = [];
        $thread = null;
        $epoch = 0;
        $live = false;
        $id = null;
        foreach ($event as $key => $value) {
            if (is_int($key)) {
                throw new BmRelayException("$what must have string keys, got the int key $key");
            }
            $f = self::field($prefix, $key);
            switch ($key) {
                case 'type':
                    if (!is_string($value)) {
                        throw new BmRelayException("$f must be a string, got " . self::type_name($value));
                    }
                    if (!mb_check_encoding($value, 'UTF-8')) {
                        throw new BmRelayException("$f must be valid UTF-8");
                    }
                    if ($value === '' || strlen($value) > self::MAX_TYPE_LEN) {
                        throw new BmRelayException("$f must be 1.." . self::MAX_TYPE_LEN . ' bytes long, got ' . strlen($value));
                    }
                    $type = $value;
                    break;
                case 'data':
                    $data = $value;
                    break;
                case 'to':
                    $to = self::ids($value, $f);
                    break;
                case 'thread':
                    if ($value !== null) {
                        $thread = self::id($value, $f);
                    }
                    break;
                case 'epoch':
                    $epoch = self::epoch($value, $f);
                    break;
                case 'live':
                    if (!is_bool($value)) {
                        throw new BmRelayException("$f must be a bool, got " . self::type_name($value));
                    }
                    $live = $value;
                    break;
                case 'id':
                    if ($value !== null) {
                        if (!is_string($value)) {
                            throw new BmRelayException("$f must be a string or null, got " . self::type_name($value));
                        }
                        if ($value === '' || strlen($value) > 64) {
                            throw new BmRelayException("$f: event id is malformed: must be 1 to 64 characters");
                        }
                        if (!preg_match('/^[A-Za-z0-9_-]+$/D', $value)) {
                            throw new BmRelayException("$f: event id is malformed: may only hold A-Z a-z 0-9 _ -");
                        }
                        $id = $value;
                    }
                    break;
                default:
                    throw new BmRelayException("$what has an unknown key '$key' (known: " . implode(', ', self::EVENT_KEYS) . ')');
            }
        }
        if ($type === null) {
            throw new BmRelayException(self::field($prefix, 'type') . ' is required');
        }
        if ($thread !== null) {
            if (!$to && !$live) {
                throw new BmRelayException(self::field($prefix, 'to') . ' is empty and ' . self::field($prefix, 'live') . ' is false: the event would reach nobody');
            }
            $kid = "t/$thread/$epoch";
        } else {
            if ($live) {
                throw new BmRelayException(self::field($prefix, 'live') . ' needs ' . self::field($prefix, 'thread'));
            }
            if ($epoch !== 0) {
                throw new BmRelayException(self::field($prefix, 'epoch') . ' needs ' . self::field($prefix, 'thread'));
            }
            if (count($to) !== 1) {
                throw new BmRelayException(self::field($prefix, 'to') . ' must hold exactly one user id when ' . self::field($prefix, 'thread')
                    . " is not set (the event is sealed with that user's key), got " . count($to));
            }
            $kid = 'u/' . $to[0];
        }
        $plaintext = json_encode(['type' => $type, 'data' => $data], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        if ($plaintext === false) {
            throw new BmRelayException(self::field($prefix, 'data') . ' is not JSON-encodable: ' . json_last_error_msg());
        }
        $sealed = strlen($plaintext) + 16;
        if ($sealed > self::MAX_CIPHERTEXT) {
            throw new BmRelayException(self::field($prefix, 'data') . " is too large: the sealed event is $sealed bytes, over the limit of " . self::MAX_CIPHERTEXT);
        }
        return [
            'id' => $id ?? self::b64u(random_bytes(16)),
            'kid' => $kid,
            'to' => $to,
            'thread' => $live ? $thread : null,
            'plaintext' => $plaintext,
        ];
    }

    /** Seals a parsed event: AES-256-GCM, fresh nonce, AAD `bm1|site|id|k`. */
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
     * @return array{type:string,data:mixed,id:string,k:string}
     */
    public static function open($text): array
    {
        if (!is_string($text)) {
            throw new BmRelayException('envelope must be a string, got ' . self::type_name($text));
        }
        $site = self::site();
        self::secret();
        $env = json_decode($text, true, 4);
        if (!is_array($env) || ($env !== [] && array_is_list($env))) {
            throw new BmRelayException('envelope: envelope is malformed: not a JSON object');
        }
        foreach (array_keys($env) as $k) {
            if (!in_array($k, ['v', 'id', 'k', 'n', 'c'], true)) {
                throw new BmRelayException("envelope: envelope is malformed: unknown field `$k`, expected one of `v`, `id`, `k`, `n`, `c`");
            }
        }
        foreach (['v', 'id', 'k', 'n', 'c'] as $k) {
            if (!array_key_exists($k, $env)) {
                throw new BmRelayException("envelope: envelope is malformed: missing field `$k`");
            }
        }
        if (!is_int($env['v'])) {
            throw new BmRelayException('envelope: envelope is malformed: v must be an integer');
        }
        if ($env['v'] !== 1) {
            throw new BmRelayException("envelope: envelope version {$env['v']} is not supported (expected 1)");
        }
        if (!is_string($env['id']) || !preg_match('/^[A-Za-z0-9_-]{1,64}$/D', $env['id'])) {
            throw new BmRelayException('envelope: envelope is malformed: event id must match ^[A-Za-z0-9_-]{1,64}$');
        }
        if (!is_string($env['k']) || !self::valid_kid($env['k'])) {
            throw new BmRelayException('envelope: envelope is malformed: key id is malformed: expected t/{thread}/{epoch} or u/{user}');
        }
        $nonce = is_string($env['n']) ? self::b64u_decode($env['n']) : null;
        if ($nonce === null || strlen($nonce) !== 12) {
            throw new BmRelayException('envelope: envelope nonce `n` must be 12 bytes of base64url');
        }
        if (!is_string($env['c'])) {
            throw new BmRelayException('envelope: envelope ciphertext `c` must be base64url of at least 16 bytes');
        }
        $len = intdiv(strlen($env['c']) * 3, 4);
        if ($len > self::MAX_CIPHERTEXT) {
            throw new BmRelayException("envelope: envelope ciphertext is $len bytes, over the limit of " . self::MAX_CIPHERTEXT);
        }
        $c = self::b64u_decode($env['c']);
        if ($c === null || strlen($c) < 16) {
            throw new BmRelayException('envelope: envelope ciphertext `c` must be base64url of at least 16 bytes');
        }
        $aad = 'bm1|' . $site . '|' . $env['id'] . '|' . $env['k'];
        $plain = openssl_decrypt(substr($c, 0, -16), 'aes-256-gcm', self::envelope_key($env['k']), OPENSSL_RAW_DATA, $nonce, substr($c, -16), $aad);
        if ($plain === false) {
            throw new BmRelayException('envelope: envelope does not open (tampered, wrong site or wrong key)');
        }
        if (!mb_check_encoding($plain, 'UTF-8')) {
            throw new BmRelayException('envelope: payload is not UTF-8');
        }
        $payload = json_decode($plain, true);
        if ($payload === null && json_last_error() !== JSON_ERROR_NONE) {
            throw new BmRelayException('envelope payload is not valid JSON: ' . json_last_error_msg());
        }
        if (!is_array($payload) || !isset($payload['type']) || !is_string($payload['type']) || !array_key_exists('data', $payload)) {
            throw new BmRelayException('envelope payload is not a {"type","data"} object');
        }
        $payload['id'] = $env['id'];
        $payload['k'] = $env['k'];
        return $payload;
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

    /** A JWT (HS256, relay key), claims in the order site, sub, thread, iat, exp. */
    public static function token(int $user, ?int $thread, int $ttl): string
    {
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

    // ----- the relay (ext/src/relay.rs) -----

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
     * One signed POST to the relay; the decoded reply, or a relay error
     * (HTTP status as the code; 0 when unreachable).
     *
     * @return array<mixed>
     */
    public static function post(string $what, string $path, string $body, ?int $timeout_ms = null): array
    {
        $cfg = self::current();
        $url = self::url();
        $site = self::site();
        $key = self::relay_key();
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
            CURLOPT_HTTPHEADER => [
                'Content-Type: application/json',
                'Expect:',
                'X-BM-Site: ' . $site,
                'X-BM-Timestamp: ' . $ts,
                'X-BM-Signature: ' . self::signature($key, $ts, $site, 'POST', $path, $body),
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

    /** One push event of the wire format: {"to":[…],"thread":t,"e":<envelope>}. */
    public static function wire(array $ev, string $envelope): string
    {
        $out = '{"to":' . json_encode($ev['to']);
        if ($ev['thread'] !== null) {
            $out .= ',"thread":' . $ev['thread'];
        }
        return $out . ',"e":' . $envelope . '}';
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
        $cfg = self::current();
        $wire = [];
        foreach ($items as [$event, $prefix]) {
            $ev = self::parse_event($event, $prefix);
            $wire[] = self::wire($ev, self::seal($ev));
        }
        if (!$wire) {
            return $cfg['mode'] === 'sync' ? [] : true;
        }
        self::url();
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
                self::flush(self::current()['flush_timeout_ms']);
            } catch (Throwable $e) {
                self::fail(count(self::$queue), $e->getMessage());
                self::$queue = [];
            }
        }
        self::maybe_log(true);
    }

    /**
     * Runs an API function body; prefixes error messages with `name(): `.
     *
     * @return mixed
     */
    public static function api(string $name, callable $body)
    {
        try {
            return $body();
        } catch (BmRelayException $e) {
            throw new BmRelayException($name . '(): ' . $e->getMessage(), $e->getCode());
        } finally {
            self::maybe_log();
        }
    }
}

if (!function_exists('bm_push')) {
    /**
     * Per-request override of the bm_relay.* settings (keys without the
     * prefix); null restores the INI value. Validates everything.
     */
    function bm_configure($opts): void
    {
        BM_Relay_Fallback::api('bm_configure', static function () use ($opts): void {
            BM_Relay_Fallback::configure($opts);
        });
    }

    /**
     * Seals one event and sends (sync: the relay's result) or queues it
     * (async: true, or false when the queue is full).
     *
     * @return array|bool
     */
    function bm_push($event)
    {
        $t0 = hrtime(true);
        try {
            return BM_Relay_Fallback::api('bm_push', static fn() => BM_Relay_Fallback::push([[$event, '']], false));
        } finally {
            BM_Relay_Fallback::sample(BM_Relay_Fallback::$push_latency, (hrtime(true) - $t0) / 1000);
        }
    }

    /**
     * Seals several events, sent in order in one request.
     *
     * @return array|bool
     */
    function bm_push_many($events)
    {
        $t0 = hrtime(true);
        try {
            return BM_Relay_Fallback::api('bm_push_many', static function () use ($events) {
                if (!is_array($events)) {
                    throw new BmRelayException('events must be an array, got ' . BM_Relay_Fallback::type_name($events));
                }
                if (count($events) > BM_Relay_Fallback::MAX_EVENTS) {
                    throw new BmRelayException('events has ' . count($events) . ' events, over the limit of ' . BM_Relay_Fallback::MAX_EVENTS . ' per call');
                }
                $items = [];
                $i = 0;
                foreach ($events as $e) {
                    $items[] = [$e, "events[$i]"];
                    $i++;
                }
                return BM_Relay_Fallback::push($items, true);
            });
        } finally {
            BM_Relay_Fallback::sample(BM_Relay_Fallback::$push_latency, (hrtime(true) - $t0) / 1000);
        }
    }

    /** Sends what the async queue holds, waiting at most $timeout_ms (default timeout_ms). */
    function bm_flush($timeout_ms = null): bool
    {
        return BM_Relay_Fallback::api('bm_flush', static function () use ($timeout_ms): bool {
            $cfg = BM_Relay_Fallback::current();
            $wait = $cfg['timeout_ms'];
            if ($timeout_ms !== null) {
                $expected = 'an integer number of milliseconds 0..600000';
                $wait = BM_Relay_Fallback::int_of($timeout_ms, 'timeout_ms', $expected);
                if ($wait < 0 || $wait > 600000) {
                    throw new BmRelayException("timeout_ms must be $expected, got $wait");
                }
            }
            return BM_Relay_Fallback::flush($wait);
        });
    }

    /** The envelope JSON of an event, nothing sent. */
    function bm_seal($event): string
    {
        return BM_Relay_Fallback::api('bm_seal', static fn() => BM_Relay_Fallback::seal(BM_Relay_Fallback::parse_event($event, '')));
    }

    /**
     * Opens an envelope with the configured secret.
     *
     * @return array{type:string,data:mixed,id:string,k:string}
     */
    function bm_open($envelope): array
    {
        return BM_Relay_Fallback::api('bm_open', static fn() => BM_Relay_Fallback::open($envelope));
    }

    /** Connection token for a user's browser. */
    function bm_client_token($user_id, $ttl = null): string
    {
        return BM_Relay_Fallback::api('bm_client_token', static function () use ($user_id, $ttl): string {
            $user = BM_Relay_Fallback::id($user_id, 'user_id');
            return BM_Relay_Fallback::token($user, null, BM_Relay_Fallback::ttl($ttl, 'ttl'));
        });
    }

    /** Thread token: proof that the user may subscribe to the thread. */
    function bm_thread_token($user_id, $thread_id, $ttl = null): string
    {
        return BM_Relay_Fallback::api('bm_thread_token', static function () use ($user_id, $thread_id, $ttl): string {
            $user = BM_Relay_Fallback::id($user_id, 'user_id');
            $thread = BM_Relay_Fallback::id($thread_id, 'thread_id');
            return BM_Relay_Fallback::token($user, $thread, BM_Relay_Fallback::ttl($ttl, 'ttl'));
        });
    }

    /** b64u thread key of an epoch, for the browsers of the thread's members. */
    function bm_thread_key($thread_id, $epoch = null): string
    {
        return BM_Relay_Fallback::api('bm_thread_key', static function () use ($thread_id, $epoch): string {
            $t = BM_Relay_Fallback::id($thread_id, 'thread_id');
            $e = $epoch === null ? 0 : BM_Relay_Fallback::epoch($epoch, 'epoch');
            return BM_Relay_Fallback::b64u(BM_Relay_Fallback::envelope_key("t/$t/$e"));
        });
    }

    /** b64u user key, for that user's browsers. */
    function bm_user_key($user_id): string
    {
        return BM_Relay_Fallback::api('bm_user_key', static function () use ($user_id): string {
            $u = BM_Relay_Fallback::id($user_id, 'user_id');
            return BM_Relay_Fallback::b64u(BM_Relay_Fallback::envelope_key("u/$u"));
        });
    }

    /** b64u relay key, for configuring the relay (`--site SITE=KEY`). */
    function bm_relay_key(): string
    {
        return BM_Relay_Fallback::api('bm_relay_key', static fn() => BM_Relay_Fallback::b64u(BM_Relay_Fallback::relay_key()));
    }

    /**
     * Which of these users have at least one socket on the relay.
     *
     * @return list<int>
     */
    function bm_presence($user_ids): array
    {
        return BM_Relay_Fallback::api('bm_presence', static function () use ($user_ids): array {
            $ids = BM_Relay_Fallback::ids($user_ids, 'user_ids');
            BM_Relay_Fallback::url();
            BM_Relay_Fallback::secret();
            try {
                $reply = BM_Relay_Fallback::post('presence', '/v1/presence', '{"users":' . json_encode($ids) . '}');
            } catch (BmRelayException $e) {
                BM_Relay_Fallback::fail(1, $e->getMessage());
                throw $e;
            }
            return array_values(array_map('intval', (array) ($reply['online'] ?? [])));
        });
    }

    /**
     * Closes the users' sockets, or with a thread drops only that
     * subscription; returns the number of sockets affected.
     */
    function bm_disconnect($user_ids, $thread_id = null): int
    {
        return BM_Relay_Fallback::api('bm_disconnect', static function () use ($user_ids, $thread_id): int {
            $ids = BM_Relay_Fallback::ids($user_ids, 'user_ids');
            $body = '{"users":' . json_encode($ids);
            if ($thread_id !== null) {
                $body .= ',"thread":' . BM_Relay_Fallback::id($thread_id, 'thread_id');
            }
            BM_Relay_Fallback::url();
            BM_Relay_Fallback::secret();
            try {
                $reply = BM_Relay_Fallback::post('disconnect', '/v1/disconnect', $body . '}');
            } catch (BmRelayException $e) {
                BM_Relay_Fallback::fail(1, $e->getMessage());
                throw $e;
            }
            return (int) ($reply['closed'] ?? 0);
        });
    }

    /**
     * Counters of this process: queued, sent, failed, dropped, batches, last
     * error, bm_push cost and relay round-trip percentiles, URL, site, mode, pid.
     *
     * @return array<string,mixed>
     */
    function bm_stats(): array
    {
        return BM_Relay_Fallback::api('bm_stats', static function (): array {
            $s = BM_Relay_Fallback::$stats;
            $raw = BM_Relay_Fallback::raw();
            return [
                'queued' => count(BM_Relay_Fallback::$queue),
                'sent' => $s['sent'],
                'failed' => $s['failed'],
                'dropped' => $s['dropped'],
                'batches' => $s['batches'],
                'last_error' => $s['last_error'] === null ? null : ['message' => $s['last_error'], 'time' => $s['last_error_time']],
                'latency_p50_us' => BM_Relay_Fallback::percentile(BM_Relay_Fallback::$push_latency, 0.50),
                'latency_p99_us' => BM_Relay_Fallback::percentile(BM_Relay_Fallback::$push_latency, 0.99),
                'relay_p50_us' => BM_Relay_Fallback::percentile(BM_Relay_Fallback::$relay_latency, 0.50),
                'relay_p99_us' => BM_Relay_Fallback::percentile(BM_Relay_Fallback::$relay_latency, 0.99),
                'url' => trim($raw['url']),
                'site' => trim($raw['site']),
                'mode' => trim($raw['mode']),
                'pid' => getmypid(),
            ];
        });
    }
}
