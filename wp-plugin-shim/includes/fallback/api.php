<?php

/**
 * Pure-PHP fallback of the bm_relay extension: the bm_* functions, with
 * the extension's signatures, return shapes and messages (`ext/src/lib.rs`),
 * built on the concern classes beside this file.
 *
 * @package bm-relay
 * @internal
 */

/**
 * The wrapper every bm_* function runs in.
 *
 * @internal
 */
final class BM_Relay_Fallback
{
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
            BM_Relay_Fallback_Transport::maybe_log();
        }
    }

    /** TCP connections this process opened to the relay (tests check keep-alive). */
    public static function connects(): int
    {
        return BM_Relay_Fallback_Transport::connects();
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
            BM_Relay_Fallback_Config::configure($opts);
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
            return BM_Relay_Fallback::api('bm_push', static fn() => BM_Relay_Fallback_Transport::push([[$event, '']], false));
        } finally {
            BM_Relay_Fallback_Transport::record_push_cost($t0);
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
                    throw new BmRelayException('events must be an array, got ' . BM_Relay_Fallback_Values::type_name($events));
                }
                if (count($events) > BM_Relay_Fallback_Transport::MAX_EVENTS) {
                    throw new BmRelayException('events has ' . count($events) . ' events, over the limit of ' . BM_Relay_Fallback_Transport::MAX_EVENTS . ' per call');
                }
                $items = [];
                $i = 0;
                foreach ($events as $e) {
                    $items[] = [$e, "events[$i]"];
                    $i++;
                }
                return BM_Relay_Fallback_Transport::push($items, true);
            });
        } finally {
            BM_Relay_Fallback_Transport::record_push_cost($t0);
        }
    }

    /** Sends what the async queue holds, waiting at most $timeout_ms (default timeout_ms). */
    function bm_flush($timeout_ms = null): bool
    {
        return BM_Relay_Fallback::api('bm_flush', static function () use ($timeout_ms): bool {
            $cfg = BM_Relay_Fallback_Config::current();
            $wait = $cfg['timeout_ms'];
            if ($timeout_ms !== null) {
                $expected = 'an integer number of milliseconds 0..600000';
                $wait = BM_Relay_Fallback_Values::int_of($timeout_ms, 'timeout_ms', $expected);
                if ($wait < 0 || $wait > 600000) {
                    throw new BmRelayException("timeout_ms must be $expected, got $wait");
                }
            }
            return BM_Relay_Fallback_Transport::flush($wait);
        });
    }

    /** The envelope JSON of an event, nothing sent. */
    function bm_seal($event): string
    {
        return BM_Relay_Fallback::api('bm_seal', static fn() => BM_Relay_Fallback_Envelope::seal(BM_Relay_Fallback_Envelope::parse_event($event, '')));
    }

    /**
     * Opens an envelope with the configured secret.
     *
     * @return array{type:string,data:mixed,id:string,k:string}
     */
    function bm_open($envelope): array
    {
        return BM_Relay_Fallback::api('bm_open', static fn() => BM_Relay_Fallback_Envelope::open($envelope));
    }

    /** Connection token for a user's browser. */
    function bm_client_token($user_id, $ttl = null): string
    {
        return BM_Relay_Fallback::api('bm_client_token', static function () use ($user_id, $ttl): string {
            $user = BM_Relay_Fallback_Values::id($user_id, 'user_id');
            return BM_Relay_Fallback_Token::token($user, null, BM_Relay_Fallback_Values::ttl($ttl, 'ttl'));
        });
    }

    /** Thread token: proof that the user may subscribe to the thread. */
    function bm_thread_token($user_id, $thread_id, $ttl = null): string
    {
        return BM_Relay_Fallback::api('bm_thread_token', static function () use ($user_id, $thread_id, $ttl): string {
            $user = BM_Relay_Fallback_Values::id($user_id, 'user_id');
            $thread = BM_Relay_Fallback_Values::id($thread_id, 'thread_id');
            return BM_Relay_Fallback_Token::token($user, $thread, BM_Relay_Fallback_Values::ttl($ttl, 'ttl'));
        });
    }

    /** b64u thread key of an epoch, for the browsers of the thread's members. */
    function bm_thread_key($thread_id, $epoch = null): string
    {
        return BM_Relay_Fallback::api('bm_thread_key', static function () use ($thread_id, $epoch): string {
            $t = BM_Relay_Fallback_Values::id($thread_id, 'thread_id');
            $e = $epoch === null ? 0 : BM_Relay_Fallback_Values::epoch($epoch, 'epoch');
            if (BM_Relay_Fallback_Config::v2()) {
                $t = BM_Relay_Fallback_Keys::pseudonym('thread', $t);
            }
            return BM_Relay_Fallback_Keys::b64u(BM_Relay_Fallback_Keys::envelope_key("t/$t/$e"));
        });
    }

    /** b64u user key, for that user's browsers. */
    function bm_user_key($user_id): string
    {
        return BM_Relay_Fallback::api('bm_user_key', static function () use ($user_id): string {
            $u = BM_Relay_Fallback_Values::id($user_id, 'user_id');
            if (BM_Relay_Fallback_Config::v2()) {
                $u = BM_Relay_Fallback_Keys::pseudonym('user', $u);
            }
            return BM_Relay_Fallback_Keys::b64u(BM_Relay_Fallback_Keys::envelope_key("u/$u"));
        });
    }

    /** The protocol v2 pseudonym (§3.2) of a user or thread id. */
    function bm_pseudonym($kind, $id): int
    {
        return BM_Relay_Fallback::api('bm_pseudonym', static function () use ($kind, $id): int {
            if ($kind !== 'user' && $kind !== 'thread') {
                throw new BmRelayException('kind must be "user" or "thread"');
            }
            return BM_Relay_Fallback_Keys::pseudonym($kind, BM_Relay_Fallback_Values::id($id, 'id'));
        });
    }

    /** b64u relay key, for configuring the relay (`--site SITE=KEY`). */
    function bm_relay_key(): string
    {
        return BM_Relay_Fallback::api('bm_relay_key', static fn() => BM_Relay_Fallback_Keys::b64u(BM_Relay_Fallback_Keys::relay_key()));
    }

    /**
     * Which of these users have at least one socket on the relay.
     *
     * @return list<int>
     */
    function bm_presence($user_ids): array
    {
        return BM_Relay_Fallback::api('bm_presence', static function () use ($user_ids): array {
            $ids = BM_Relay_Fallback_Values::ids($user_ids, 'user_ids');
            BM_Relay_Fallback_Config::urls();
            BM_Relay_Fallback_Config::secret();
            $v2 = BM_Relay_Fallback_Config::v2();
            $wire = BM_Relay_Fallback_Keys::wire_ids('user', $ids, $v2);
            try {
                $reply = BM_Relay_Fallback_Transport::post('presence', '/v1/presence', '{"users":' . json_encode($wire) . '}');
            } catch (BmRelayException $e) {
                BM_Relay_Fallback_Transport::fail(1, $e->getMessage());
                throw $e;
            }
            $online = array_values(array_map('intval', (array) ($reply['online'] ?? [])));
            // Protocol 2: the WordPress ids asked about, not the pseudonyms.
            return $v2 ? BM_Relay_Fallback_Keys::back($ids, $wire, $online) : $online;
        });
    }

    /**
     * Closes the users' sockets, or with a thread drops only that
     * subscription; returns the number of sockets affected.
     */
    function bm_disconnect($user_ids, $thread_id = null): int
    {
        return BM_Relay_Fallback::api('bm_disconnect', static function () use ($user_ids, $thread_id): int {
            $v2 = BM_Relay_Fallback_Config::v2();
            $ids = BM_Relay_Fallback_Keys::wire_ids('user', BM_Relay_Fallback_Values::ids($user_ids, 'user_ids'), $v2);
            $body = '{"users":' . json_encode($ids);
            if ($thread_id !== null) {
                $thread = BM_Relay_Fallback_Values::id($thread_id, 'thread_id');
                $body .= ',"thread":' . ($v2 ? BM_Relay_Fallback_Keys::pseudonym('thread', $thread) : $thread);
            }
            BM_Relay_Fallback_Config::urls();
            BM_Relay_Fallback_Config::secret();
            try {
                $reply = BM_Relay_Fallback_Transport::post('disconnect', '/v1/disconnect', $body . '}');
            } catch (BmRelayException $e) {
                BM_Relay_Fallback_Transport::fail(1, $e->getMessage());
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
            $raw = BM_Relay_Fallback_Config::raw();
            return BM_Relay_Fallback_Transport::counters() + [
                'url' => trim($raw['url']),
                'relays' => BM_Relay_Fallback_Transport::relay_states(BM_Relay_Fallback_Config::parse_urls($raw['url'])),
                'site' => trim($raw['site']),
                'mode' => trim($raw['mode']),
                'pid' => getmypid(),
            ];
        });
    }
}
