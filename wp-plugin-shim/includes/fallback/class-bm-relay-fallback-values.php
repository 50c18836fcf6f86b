<?php

/**
 * Pure-PHP fallback of the bm_relay extension: values.
 *
 * PHP values as the extension reads them: ids, epochs, lifetimes, id lists, with the same messages.
 * Reads side by side with `ext/src/values.rs`.
 *
 * @package bm-relay
 * @internal
 */

/**
 * PHP values as the extension reads them (fallback).
 *
 * @internal
 */
final class BM_Relay_Fallback_Values
{
    /** Largest user or thread id (2^53 - 1, a safe JSON integer). */
    public const MAX_ID = 9007199254740991;

    /** Largest key epoch (2^32 - 1). */
    public const MAX_EPOCH = 4294967295;

    /** Recipients in one event's `to`, and ids in presence/disconnect. */
    public const MAX_RECIPIENTS = 10000;

    /** Longest token lifetime accepted (10 years of 366 days). */
    public const MAX_TTL = 316224000;

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
            if (
                preg_match('/^(0|[1-9][0-9]{0,18})$/D', $z)
                && (strlen($z) < 19 || strcmp($z, '9223372036854775807') <= 0)
            ) {
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
}
