<?php

/**
 * Pure-PHP fallback of the bm_relay extension: envelope.
 *
 * Events and envelopes (protocol §4): event arrays checked like the extension, AES-256-GCM sealing and opening, the push wire format.
 * Reads side by side with `ext/src/event.rs, proto/src/envelope.rs`.
 *
 * @package bm-relay
 * @internal
 */

/**
 * Events and envelopes (fallback).
 *
 * @internal
 */
final class BM_Relay_Fallback_Envelope
{
    /** Largest decoded ciphertext (`c`) of an envelope, tag included. */
    public const MAX_CIPHERTEXT = 65536;

    /** Longest event type, in bytes. */
    public const MAX_TYPE_LEN = 128;

    /** Keys of an event array, in the extension's order (for messages). */
    public const EVENT_KEYS = ['type', 'data', 'to', 'thread', 'epoch', 'live', 'id'];

    /** `'key'` or `events[3]['key']`, as messages name a field. */
    private static function field(string $prefix, string $key): string
    {
        return $prefix === '' ? "'$key'" : "{$prefix}['$key']";
    }

    /**
     * Validates an event array (same order of checks as the extension).
     *
     * @return array{id:string,kid:string,to:list<int>,wp_to:list<int>,thread:?int,plaintext:string}
     */
    public static function parse_event($event, string $prefix, bool $v2 = false): array
    {
        $what = $prefix === '' ? 'event' : $prefix;
        if (!is_array($event)) {
            throw new BmRelayException("$what must be an array, got " . BM_Relay_Fallback_Values::type_name($event));
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
                        throw new BmRelayException("$f must be a string, got " . BM_Relay_Fallback_Values::type_name($value));
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
                    $to = BM_Relay_Fallback_Values::ids($value, $f);
                    break;
                case 'thread':
                    if ($value !== null) {
                        $thread = BM_Relay_Fallback_Values::id($value, $f);
                    }
                    break;
                case 'epoch':
                    $epoch = BM_Relay_Fallback_Values::epoch($value, $f);
                    break;
                case 'live':
                    if (!is_bool($value)) {
                        throw new BmRelayException("$f must be a bool, got " . BM_Relay_Fallback_Values::type_name($value));
                    }
                    $live = $value;
                    break;
                case 'id':
                    if ($value !== null) {
                        if (!is_string($value)) {
                            throw new BmRelayException("$f must be a string or null, got " . BM_Relay_Fallback_Values::type_name($value));
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
        // Protocol 2: ids, key id and key become the pseudonyms' (checked
        // first, so messages are the same); the WordPress ids are kept to
        // map a sync push's `online` back.
        $wp_to = $to;
        if ($v2) {
            $to = BM_Relay_Fallback_Keys::wire_ids('user', $to, true);
            if ($thread !== null) {
                $thread = BM_Relay_Fallback_Keys::pseudonym('thread', $thread);
            }
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
            'id' => $id ?? BM_Relay_Fallback_Keys::b64u(random_bytes(16)),
            'kid' => $kid,
            'to' => $to,
            'wp_to' => $wp_to,
            'thread' => $live ? $thread : null,
            'plaintext' => $plaintext,
        ];
    }

    /** Seals a parsed event: AES-256-GCM, fresh nonce, AAD `bm1|site|id|k`. */
    public static function seal(array $ev): string
    {
        $site = BM_Relay_Fallback_Config::site();
        $key = BM_Relay_Fallback_Keys::envelope_key($ev['kid']);
        $nonce = random_bytes(12);
        $tag = '';
        $aad = 'bm1|' . $site . '|' . $ev['id'] . '|' . $ev['kid'];
        $c = openssl_encrypt($ev['plaintext'], 'aes-256-gcm', $key, OPENSSL_RAW_DATA, $nonce, $tag, $aad, 16);
        if ($c === false) {
            throw new BmRelayException('sealing failed (openssl)');
        }
        // Field order v, id, k, n, c as every implementation writes it.
        return '{"v":1,"id":"' . $ev['id'] . '","k":"' . $ev['kid'] . '","n":"' . BM_Relay_Fallback_Keys::b64u($nonce)
            . '","c":"' . BM_Relay_Fallback_Keys::b64u($c . $tag) . '"}';
    }

    /**
     * Opens an envelope with the configured secret.
     *
     * @return array{type:string,data:mixed,id:string,k:string}
     */
    public static function open($text): array
    {
        if (!is_string($text)) {
            throw new BmRelayException('envelope must be a string, got ' . BM_Relay_Fallback_Values::type_name($text));
        }
        $site = BM_Relay_Fallback_Config::site();
        BM_Relay_Fallback_Config::secret();
        $env = json_decode($text, true, 4);
        if (is_array($env) && ($dup = self::duplicate_key($text)) !== null) {
            // json_decode keeps the last of two equal keys; the extension
            // (serde) refuses such an envelope, so this does too.
            throw new BmRelayException("envelope: envelope is malformed: duplicate field `$dup`");
        }
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
        $nonce = is_string($env['n']) ? BM_Relay_Fallback_Keys::b64u_decode($env['n']) : null;
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
        $c = BM_Relay_Fallback_Keys::b64u_decode($env['c']);
        if ($c === null || strlen($c) < 16) {
            throw new BmRelayException('envelope: envelope ciphertext `c` must be base64url of at least 16 bytes');
        }
        $aad = 'bm1|' . $site . '|' . $env['id'] . '|' . $env['k'];
        $plain = openssl_decrypt(substr($c, 0, -16), 'aes-256-gcm', BM_Relay_Fallback_Keys::envelope_key($env['k']), OPENSSL_RAW_DATA, $nonce, substr($c, -16), $aad);
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

    /**
     * The first key that appears twice in a JSON object's top level, or
     * null. Scans the text token by token (strings with their escapes,
     * nesting depth), so a key is compared as it decodes.
     */
    public static function duplicate_key(string $text): ?string
    {
        $depth = 0;
        $seen = [];
        $len = strlen($text);
        for ($i = 0; $i < $len; $i++) {
            $c = $text[$i];
            if ($c === '{' || $c === '[') {
                $depth++;
            } elseif ($c === '}' || $c === ']') {
                $depth--;
            } elseif ($c === '"') {
                if (!preg_match('/\G"(?:[^"\\\\]|\\\\.)*"/s', $text, $m, 0, $i)) {
                    return null;
                }
                $i += strlen($m[0]) - 1;
                if ($depth === 1 && preg_match('/\G\s*:/', $text, $x, 0, $i + 1)) {
                    $key = json_decode($m[0]);
                    if (is_string($key)) {
                        if (isset($seen[$key])) {
                            return $key;
                        }
                        $seen[$key] = true;
                    }
                }
            }
        }
        return null;
    }

    /** True for a canonical key id `t/{t}/{e}` or `u/{u}` with ids in range. */
    private static function valid_kid(string $k): bool
    {
        $n = '(0|[1-9][0-9]{0,15})';
        if (preg_match("#^t/$n/$n$#D", $k, $m)) {
            return (int) $m[1] >= 1 && (int) $m[1] <= BM_Relay_Fallback_Values::MAX_ID && (int) $m[2] <= BM_Relay_Fallback_Values::MAX_EPOCH;
        }
        if (preg_match("#^u/$n$#D", $k, $m)) {
            return (int) $m[1] >= 1 && (int) $m[1] <= BM_Relay_Fallback_Values::MAX_ID;
        }
        return false;
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
}
