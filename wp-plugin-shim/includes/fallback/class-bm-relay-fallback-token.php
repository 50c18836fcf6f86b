<?php

/**
 * Pure-PHP fallback of the bm_relay extension: token.
 *
 * Client tokens (protocol §6): HS256 JWTs with the relay key, claims in the order site, sub, thread, v, iat, exp.
 * Reads side by side with `proto/src/token.rs`.
 *
 * @package bm-relay
 * @internal
 */

/**
 * Client tokens (fallback).
 *
 * @internal
 */
final class BM_Relay_Fallback_Token
{
    /**
     * A JWT (HS256, relay key), claims in the order site, sub, thread, v,
     * iat, exp. In protocol 2 `sub` and `thread` are the pseudonyms of the
     * WordPress ids given, and `"v":2` marks it; a v1 token has no `v`.
     */
    public static function token(int $user, ?int $thread, int $ttl): string
    {
        $site = BM_Relay_Fallback_Config::site();
        $key = BM_Relay_Fallback_Keys::relay_key();
        $v2 = BM_Relay_Fallback_Config::v2();
        $iat = time();
        $claims = ['site' => $site, 'sub' => (string) ($v2 ? BM_Relay_Fallback_Keys::pseudonym('user', $user) : $user)];
        if ($thread !== null) {
            $claims['thread'] = $v2 ? BM_Relay_Fallback_Keys::pseudonym('thread', $thread) : $thread;
        }
        if ($v2) {
            $claims['v'] = 2;
        }
        $claims['iat'] = $iat;
        $claims['exp'] = $iat + $ttl;
        $head = BM_Relay_Fallback_Keys::b64u('{"alg":"HS256","typ":"JWT"}');
        $body = BM_Relay_Fallback_Keys::b64u(json_encode($claims, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE));
        return $head . '.' . $body . '.' . BM_Relay_Fallback_Keys::b64u(hash_hmac('sha256', $head . '.' . $body, $key, true));
    }
}
