<?php
/**
 * Turns stored changes into sealed events for the relay.
 *
 * Always called after the database write: a push that fails (relay down,
 * not configured) is recorded in bm_stats() and the PHP error log by the
 * extension/fallback, and the REST request still succeeds; browsers fetch
 * what they missed on catch-up.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * The events the plugin sends, one method per event type.
 */
final class BM_Relay_Push
{
    /** @var string|null last push error of this request (for tests and the admin page) */
    public static $last_error = null;

    /**
     * Sends events; returns the relay's results in sync mode, null when the
     * push failed or the mode is async (then nothing is known about delivery).
     *
     * @param list<array<string,mixed>> $events
     * @return list<array{online:list<int>,sockets:int}>|null
     */
    public static function send(array $events): ?array
    {
        if (!$events) {
            return [];
        }
        try {
            $res = bm_push_many($events);
        } catch (BmRelayException $e) {
            self::$last_error = $e->getMessage();
            /**
             * Fires when the relay could not take an event; the data is stored
             * already, so this is for monitoring only.
             */
            do_action('bm_relay_push_failed', $e->getMessage(), $events);
            return null;
        }
        return is_array($res) ? $res : null;
    }

    /**
     * A thread event to every member (and live subscribers), sealed with the
     * thread's current key.
     *
     * @param array<string,mixed> $data
     * @return array{online:list<int>,sockets:int}|null
     */
    public static function thread_event(object $thread, string $type, array $data, ?string $id = null): ?array
    {
        $event = [
            'type' => $type,
            'data' => $data,
            'to' => BM_Relay_Store::members((int) $thread->id),
            'thread' => (int) $thread->id,
            'epoch' => (int) $thread->epoch,
            'live' => true,
        ];
        if ($id !== null) {
            $event['id'] = $id;
        }
        $res = self::send([$event]);
        return $res[0] ?? null;
    }

    /**
     * An event for one user only, sealed with that user's key (thread.added
     * carries a thread key this way: only that user's browsers can open it).
     *
     * @param array<string,mixed> $data
     */
    public static function user_event(int $user, string $type, array $data): ?array
    {
        $res = self::send([['type' => $type, 'data' => $data, 'to' => [$user]]]);
        return $res[0] ?? null;
    }

    /**
     * The key material a member's browser needs for a thread.
     *
     * @return array{thread:int,epoch:int,kid:string,key:string,token:string}|null
     */
    public static function thread_keys(int $user, object $thread): ?array
    {
        try {
            return [
                'thread' => (int) $thread->id,
                'epoch' => (int) $thread->epoch,
                'kid' => 't/' . (int) $thread->id . '/' . (int) $thread->epoch,
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
     * revoke their relay subscription, tell them, and give every remaining
     * member the new key, each sealed with their own user key.
     */
    public static function member_removed(int $thread_id, int $user): void
    {
        $thread = BM_Relay_Store::thread($thread_id);
        if (!$thread) {
            return;
        }
        try {
            bm_disconnect([$user], $thread_id);
        } catch (BmRelayException $e) {
            self::$last_error = $e->getMessage();
        }
        self::user_event($user, 'thread.removed', ['thread' => $thread_id]);
        foreach (BM_Relay_Store::members($thread_id) as $member) {
            $keys = self::thread_keys($member, $thread);
            if ($keys !== null) {
                self::user_event($member, 'thread.key', ['keys' => $keys, 'removed' => $user]);
            }
        }
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
