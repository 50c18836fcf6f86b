<?php

/**
 * Pure-PHP fallback of the bm_relay extension: signing.
 *
 * Server API request signatures (protocol §5).
 * Reads side by side with `proto/src/signing.rs`.
 *
 * @package bm-relay
 * @internal
 */

/**
 * Server API request signatures (fallback).
 *
 * @internal
 */
final class BM_Relay_Fallback_Signing
{
    /** `v1=<hex>` signature of a server API request (protocol §5). */
    public static function signature(string $key, int $ts, string $site, string $method, string $path, string $body): string
    {
        return 'v1=' . hash_hmac('sha256', $ts . "\n" . $site . "\n" . $method . ' ' . $path . "\n" . $body, $key);
    }
}
