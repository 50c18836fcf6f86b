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
 * Split by concern as the extension and `proto/` are, so the two read side
 * by side (all state is private to its class; the bm_* functions are the
 * only way in):
 *
 *   fallback/class-bm-relay-fallback-values.php     ext/src/values.rs
 *   fallback/class-bm-relay-fallback-config.php     ext/src/config.rs, ini.rs
 *   fallback/class-bm-relay-fallback-keys.php       proto/src/keys.rs
 *   fallback/class-bm-relay-fallback-envelope.php   ext/src/event.rs, proto/src/envelope.rs
 *   fallback/class-bm-relay-fallback-token.php      proto/src/token.rs
 *   fallback/class-bm-relay-fallback-signing.php    proto/src/signing.rs
 *   fallback/class-bm-relay-fallback-unreachable.php ext/src/failover.rs (one URL did not answer)
 *   fallback/class-bm-relay-fallback-transport.php  ext/src/relay.rs, queue.rs, sender.rs, calls.rs, failover.rs
 *   fallback/api.php                                ext/src/api.rs (the bm_* functions)
 *
 * @package bm-relay
 */

if (extension_loaded('bm_relay') || function_exists('bm_push')) {
    return;
}
// Everything below is declared conditionally (inside `if` blocks) or in
// files required only past this guard, so PHP does not hoist it: with the
// extension loaded nothing is redeclared.

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

foreach (['values', 'config', 'keys', 'envelope', 'token', 'signing', 'unreachable', 'transport'] as $bm_relay_part) {
    require_once __DIR__ . '/fallback/class-bm-relay-fallback-' . $bm_relay_part . '.php';
}
unset($bm_relay_part);
require_once __DIR__ . '/fallback/api.php';
