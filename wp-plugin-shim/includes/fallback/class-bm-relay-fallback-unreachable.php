<?php

/**
 * Pure-PHP fallback of the bm_relay extension: one relay URL that did not
 * answer, while others may still be tried.
 * Reads side by side with `ext/src/failover.rs`.
 *
 * @package bm-relay
 * @internal
 */

/**
 * One relay URL did not answer (internal to the transport: becomes a
 * BmRelayException once no URL answered).
 *
 * @internal
 */
final class BM_Relay_Fallback_Unreachable extends RuntimeException
{
}
