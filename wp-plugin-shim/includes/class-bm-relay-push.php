<?php

/**
 * Turns stored changes into sealed events for the relay.
 *
 * Always called after the database write: a push that fails (relay down,
 * not configured) is recorded in bm_stats() and the PHP error log by the
 * extension/fallback, and the REST request still succeeds; browsers fetch
 * what they missed on catch-up.
 *
 * A slow or absent relay must not slow WordPress down:
 * - every change is one push request, whatever the thread's size (a thread
 *   event carries the whole `to` list; user-sealed events for several
 *   members travel together in one bm_push_many());
 * - in sync mode a request waits for the relay at most `budget_ms()` in
 *   all (each call's timeout is what is left of it);
 * - after a first failure in a request nothing more is sent in it (no
 *   further waiting); browsers catch up from WordPress;
 * - a relay disconnect (revocation after a removal) that fails is kept in
 *   the `bmr_pending_disconnects` option and retried by WP-Cron until the
 *   relay confirms it.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * The events the plugin sends, one method per event type.
 */
final class BM_Relay_Push
{
    /** Cron hook that retries failed disconnects. */
    public const RETRY_HOOK = 'bmr_retry_disconnect';
    /** Option holding disconnects the relay has not confirmed yet. */
    public const PENDING_OPTION = 'bmr_pending_disconnects';
    /**
     * Option holding the second of each thread revocation of the last two
     * seconds ("user/thread" => unix second). The relay refuses a token
     * whose `iat` is not after the revocation (PROTOCOL.md §6), so a member
     * re-added within the same second must get a token of the next one.
     */
    public const REVOKED_OPTION = 'bmr_recent_revocations';
    /** @var array<string,int>|null the option, read once per request */
    private static $revoked = null;

    /** @var string|null last push error of this request (for tests and the admin page) */
    public static $last_error = null;
    /** @var bool the relay failed once in this request: nothing more is sent in it */
    public static $down = false;
    /** @var float milliseconds this request has waited for the relay */
    public static $waited_ms = 0.0;

    /** Forgets this request's relay state (a new request starts clean). */
    public static function reset_request(): void
    {
        self::$down = false;
        self::$waited_ms = 0.0;
        self::$last_error = null;
        self::$revoked = null;
    }

    /**
     * How long one request may wait for the relay in all, in sync mode
     * (milliseconds, filter `bm_relay_push_budget_ms`; default 700).
     */
    public static function budget_ms(): int
    {
        return max(1, (int) apply_filters('bm_relay_push_budget_ms', 700));
    }

    /**
     * Runs one relay call within this request's budget: skipped (null)
     * once the relay failed in this request or the budget is spent; in
     * sync mode its timeout is what is left of the budget.
     *
     * @param callable():mixed $call
     * @return mixed|null the call's result, null when skipped or failed
     */
    private static function guarded(string $what, callable $call, array $events = [])
    {
        if (self::$down) {
            self::$last_error = 'skipped: the relay failed earlier in this request';
            do_action('bm_relay_push_failed', self::$last_error, $events);
            return null;
        }
        $left = self::budget_ms() - (int) self::$waited_ms;
        if ($left < 20) {
            self::$down = true;
            self::$last_error = 'skipped: this request waited for the relay long enough';
            do_action('bm_relay_push_failed', self::$last_error, $events);
            return null;
        }
        $limited = false;
        try {
            bm_configure(['timeout_ms' => $left, 'connect_timeout_ms' => min($left, 500)]);
            $limited = true;
        } catch (BmRelayException $e) {
            // Unconfigured relay: the call below fails fast and says why.
        }
        $t0 = hrtime(true);
        try {
            return $call();
        } catch (BmRelayException $e) {
            self::$down = true;
            self::$last_error = $e->getMessage();
            /**
             * Fires when the relay could not take an event; the data is stored
             * already, so this is for monitoring only.
             */
            do_action('bm_relay_push_failed', $e->getMessage(), $events);
            return null;
        } finally {
            self::$waited_ms += (hrtime(true) - $t0) / 1e6;
            if ($limited) {
                try {
                    bm_configure(['timeout_ms' => null, 'connect_timeout_ms' => null]);
                } catch (BmRelayException $e) {
                    self::$last_error = $e->getMessage();
                }
            }
        }
    }

    /**
     * Sends events in one request; returns the relay's results in sync
     * mode, null when the push failed or was skipped or the mode is async
     * (then nothing is known about delivery).
     *
     * @param list<array<string,mixed>> $events
     * @return list<array{online:list<int>,sockets:int}>|null
     */
    public static function send(array $events): ?array
    {
        if (!$events) {
            return [];
        }
        $res = self::guarded('push', static fn() => bm_push_many($events), $events);
        return is_array($res) ? $res : null;
    }

    /**
     * A thread event to every member (and live subscribers), sealed with the
     * thread's current key, numbered in the thread (`data.seq`).
     *
     * @param array<string,mixed> $data
     * @return array<string,mixed>
     */
    public static function thread_event_array(object $thread, string $type, array $data, ?string $id = null, ?int $seq = null, ?array $to = null): array
    {
        // Sealed with the event: the thread it belongs to and its number in
        // that thread, so a browser that sees a number skipped catches up
        // at once (docs/PROTOCOL.md §4.1). $seq: one the caller took already
        // (BM_Relay_Store::next_seq() with a count).
        $data['thread'] = (int) $thread->id;
        $data['seq'] = $seq ?? BM_Relay_Store::next_seq((int) $thread->id);
        $event = [
            'type' => $type,
            'data' => $data,
            // $to: the members, when the caller read them already (one
            // query for a batch of events, not one per event).
            'to' => $to ?? BM_Relay_Store::members((int) $thread->id),
            'thread' => (int) $thread->id,
            'epoch' => (int) $thread->epoch,
            'live' => true,
        ];
        if ($id !== null) {
            $event['id'] = $id;
        }
        return $event;
    }

    /**
     * Pushes one thread event (one request, the whole member list in `to`).
     *
     * @param array<string,mixed> $data
     * @return array{online:list<int>,sockets:int}|null
     */
    public static function thread_event(object $thread, string $type, array $data, ?string $id = null): ?array
    {
        $res = self::send([self::thread_event_array($thread, $type, $data, $id)]);
        return $res[0] ?? null;
    }

    /**
     * An event for one user only, sealed with that user's key (thread.added
     * carries a thread key this way: only that user's browsers can open it).
     *
     * @param array<string,mixed> $data
     * @return array<string,mixed>
     */
    public static function user_event_array(int $user, string $type, array $data): array
    {
        return ['type' => $type, 'data' => $data, 'to' => [$user]];
    }

    /**
     * Pushes one user-sealed event.
     *
     * @param array<string,mixed> $data
     */
    public static function user_event(int $user, string $type, array $data): ?array
    {
        $res = self::send([self::user_event_array($user, $type, $data)]);
        return $res[0] ?? null;
    }

    /**
     * The key material a member's browser needs for a thread.
     *
     * `wire` is what the relay knows the thread by (its pseudonym in
     * protocol 2): the page subscribes to it and finds the key under `kid`.
     *
     * @return array{thread:int,wire:int,epoch:int,kid:string,key:string,token:string}|null
     */
    public static function thread_keys(int $user, object $thread): ?array
    {
        self::after_revocation($user, (int) $thread->id);
        try {
            return [
                'thread' => (int) $thread->id,
                'wire' => BM_Relay_Ids::thread((int) $thread->id),
                'epoch' => (int) $thread->epoch,
                'kid' => BM_Relay_Ids::thread_kid((int) $thread->id, (int) $thread->epoch),
                'key' => bm_thread_key((int) $thread->id, (int) $thread->epoch),
                'token' => bm_thread_token($user, (int) $thread->id, self::token_ttl()),
            ];
        } catch (BmRelayException $e) {
            self::$last_error = $e->getMessage();
            return null;
        }
    }

    /**
     * After a member left or was removed (the epoch is already bumped):
     * revoke their relay subscription (retried by cron until the relay
     * confirms), then in one push tell them and give every remaining
     * member the new key, each sealed with their own user key.
     */
    public static function member_removed(int $thread_id, int $user): void
    {
        $thread = BM_Relay_Store::thread($thread_id);
        if (!$thread) {
            return;
        }
        self::disconnect($user, $thread_id);
        $events = [self::user_event_array($user, 'thread.removed', ['thread' => $thread_id])];
        foreach (BM_Relay_Store::members($thread_id) as $member) {
            $keys = self::thread_keys($member, $thread);
            if ($keys !== null) {
                $events[] = self::user_event_array($member, 'thread.key', ['keys' => $keys, 'removed' => $user]);
            }
        }
        self::send($events);
    }

    /**
     * Revokes a user's subscription to a thread on the relay; when the
     * relay does not confirm, the revocation is kept and retried by WP-Cron.
     * Returns true when the relay confirmed it now.
     */
    public static function disconnect(int $user, int $thread_id): bool
    {
        $done = self::guarded('disconnect', static fn() => bm_disconnect([$user], $thread_id) >= 0);
        if ($done === true) {
            self::note_revocation($user, $thread_id);
            return true;
        }
        self::queue_disconnect($user, $thread_id);
        return false;
    }

    /**
     * Records that the relay revoked $user's tokens for $thread_id up to
     * now (the request was signed at or before this second).
     */
    private static function note_revocation(int $user, int $thread_id): void
    {
        $now = time();
        $recent = array_filter((array) get_option(self::REVOKED_OPTION, []), static fn($t) => (int) $t >= $now - 2);
        $recent[$user . '/' . $thread_id] = $now;
        // Autoloaded: it holds at most two seconds of removals, and token
        // minting reads it on every /token call.
        update_option(self::REVOKED_OPTION, $recent, true);
        self::$revoked = $recent;
    }

    /**
     * Before minting a thread token: if the relay revoked this scope in the
     * current second, wait for the next one (at most a second, and only for
     * a member re-added right after a removal), so the token's `iat` is
     * after the revocation and the relay accepts it.
     */
    private static function after_revocation(int $user, int $thread_id): void
    {
        if (self::$revoked === null) {
            self::$revoked = (array) get_option(self::REVOKED_OPTION, []);
        }
        $at = (int) (self::$revoked[$user . '/' . $thread_id] ?? 0);
        if ($at >= time()) {
            time_sleep_until($at + 1 + 0.001);
        }
    }

    /** Keeps a disconnect for the cron retry and schedules it. */
    private static function queue_disconnect(int $user, int $thread_id): void
    {
        $pending = (array) get_option(self::PENDING_OPTION, []);
        $pending[$user . '/' . $thread_id] = ['user' => $user, 'thread' => $thread_id, 'since' => time()];
        update_option(self::PENDING_OPTION, $pending, false);
        self::schedule_retry(60);
    }

    /** Schedules the retry job unless it is scheduled already. */
    private static function schedule_retry(int $in): void
    {
        if (!wp_next_scheduled(self::RETRY_HOOK)) {
            wp_schedule_single_event(time() + $in, self::RETRY_HOOK);
        }
    }

    /**
     * Cron callback: sends every pending disconnect; keeps (and schedules
     * again) what the relay did not confirm. Returns how many are left.
     */
    public static function retry_disconnects(): int
    {
        $pending = (array) get_option(self::PENDING_OPTION, []);
        foreach ($pending as $k => $p) {
            // Re-added meanwhile: revoking now would end the subscription
            // the new membership's token opened.
            if (BM_Relay_Store::membership((int) $p['thread'], (int) $p['user'])) {
                unset($pending[$k]);
                continue;
            }
            try {
                bm_disconnect([(int) $p['user']], (int) $p['thread']);
                self::note_revocation((int) $p['user'], (int) $p['thread']);
                unset($pending[$k]);
            } catch (BmRelayException $e) {
                self::$last_error = $e->getMessage();
                break; // the relay is not answering: try again later
            }
        }
        if ($pending) {
            update_option(self::PENDING_OPTION, $pending, false);
            self::schedule_retry(5 * MINUTE_IN_SECONDS);
        } else {
            delete_option(self::PENDING_OPTION);
            wp_clear_scheduled_hook(self::RETRY_HOOK);
        }
        return count($pending);
    }

    /**
     * Removes a user from all their threads (account deleted or erased):
     * every thread's epoch is bumped and its members re-keyed.
     */
    public static function remove_everywhere(int $user): int
    {
        $n = 0;
        foreach (BM_Relay_Store::thread_ids_of($user) as $thread_id) {
            if (BM_Relay_Store::remove_member($thread_id, $user) !== null) {
                self::member_removed($thread_id, $user);
                $n++;
            }
        }
        return $n;
    }

    /** Lifetime of tokens handed to browsers, filterable. */
    public static function token_ttl(): int
    {
        return (int) apply_filters('bm_relay_token_ttl', 3600);
    }
}
