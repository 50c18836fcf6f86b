<?php

/**
 * Pure-PHP fallback of the bm_relay extension: keys.
 *
 * The key hierarchy (protocol §3): HKDF-SHA256 with salt bm-relay/v1, relay key, envelope keys, strict base64url.
 * Reads side by side with `proto/src/keys.rs`.
 *
 * @package bm-relay
 * @internal
 */

/**
 * The key hierarchy (fallback).
 *
 * @internal
 */
final class BM_Relay_Fallback_Keys
{
    /** HKDF salt of protocol v1. */
    public const SALT = 'bm-relay/v1';

    /** @var array<string,string> derived keys, keyed by secret hash + label */
    private static $key_cache = [];

    /** Most pseudonyms kept (users and threads together), as the extension. */
    public const MAX_PSEUDONYMS = 65536;

    /** @var array<string,int> "{kind}/{id}" => pseudonym, for $pseudonym_key only */
    private static $pseudonyms = [];

    /** @var string the pseudonym key $pseudonyms were made with */
    private static $pseudonym_key = '';

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

    /**
     * The protocol v2 pseudonym of a user or thread id (§3.2):
     * 1 + (first 8 bytes of HMAC-SHA256(pseudonym_key, "{kind}/{id}"),
     * big-endian) mod (2^53 - 1). PHP ints are signed 64-bit, so the
     * 64-bit value is reduced from its two 32-bit halves.
     */
    public static function pseudonym(string $kind, int $id): int
    {
        $pkey = self::derived('pseudonym');
        if ($pkey !== self::$pseudonym_key) {
            // Another secret (bm_configure): never a pseudonym of the old one.
            self::$pseudonyms = [];
            self::$pseudonym_key = $pkey;
        }
        $label = "$kind/$id";
        if (isset(self::$pseudonyms[$label])) {
            return self::$pseudonyms[$label];
        }
        if (count(self::$pseudonyms) >= self::MAX_PSEUDONYMS) {
            self::$pseudonyms = [];
        }
        return self::$pseudonyms[$label] = self::compute_pseudonym($pkey, $label);
    }

    /**
     * The ids as the relay sees them: unchanged in protocol 1, their
     * pseudonyms in protocol 2.
     *
     * @param list<int> $ids
     * @return list<int>
     */
    public static function wire_ids(string $kind, array $ids, bool $v2): array
    {
        if (!$v2) {
            return $ids;
        }
        $out = [];
        foreach ($ids as $id) {
            $out[] = self::pseudonym($kind, $id);
        }
        return $out;
    }

    /**
     * The WordPress ids of $asked whose pseudonym ($wire, index-aligned) is
     * in the relay's $answer, in the order asked, each once: exact, and a
     * collision returns both ids (as the extension's pseudonyms::back).
     *
     * @param list<int> $asked
     * @param list<int> $wire
     * @param list<int> $answer
     * @return list<int>
     */
    public static function back(array $asked, array $wire, array $answer): array
    {
        $in = array_flip($answer);
        $out = [];
        foreach ($asked as $i => $wp) {
            if (isset($in[$wire[$i]]) && !in_array($wp, $out, true)) {
                $out[] = $wp;
            }
        }
        return $out;
    }

    /** One pseudonym, from the pseudonym key and "{kind}/{id}". */
    private static function compute_pseudonym(string $pkey, string $label): int
    {
        $mac = hash_hmac('sha256', $label, $pkey, true);
        ['hi' => $hi, 'lo' => $lo] = unpack('Nhi/Nlo', substr($mac, 0, 8));
        $m = 9007199254740991; // 2^53 - 1
        // (hi * 2^32 + lo) mod m, without overflow: 2^32 mod m = 2^32,
        // hi < 2^32, so hi * 2^32 < 2^64; split as (hi mod 2^21) * 2^32 +
        // (hi >> 21) * 2^53, and 2^53 mod m = 1.
        $r = (($hi & 0x1FFFFF) * 4294967296 + $lo) % $m;
        $r = ($r + ($hi >> 21)) % $m;
        return 1 + $r;
    }

    /** Derives (and caches per secret) the relay key or an envelope key. */
    private static function derived(string $label): string
    {
        $secret = BM_Relay_Fallback_Config::secret();
        $tag = hash('sha256', $secret, true) . '|' . $label;
        if (isset(self::$key_cache[$tag])) {
            return self::$key_cache[$tag];
        }
        if ($label === 'relay' || $label === 'pseudonym') {
            $key = self::hkdf($secret, $label);
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
}
