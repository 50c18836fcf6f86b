<?php

/**
 * Delivery statuses (issue #16): a member's browser tells WordPress which
 * messages reached it, and the thread's pages learn it live.
 *
 * "Sent" is a stored message; "delivered" is `participants.last_delivered_id`
 * (the newest message of the thread that one of the member's browsers has
 * received); "read" is `last_read_id`, and reading moves the delivered mark
 * too (BM_Relay_Store::mark_read), so read implies delivered. No table
 * change: the column exists since the first schema and holds one number a
 * member and thread, which is all a status needs (a message is delivered to
 * a member when its id is at most their mark, ids growing in a thread).
 *
 * The browser is the source of truth: it acknowledges over `POST
 * /delivered`, batched (one request a second at most, carrying the highest
 * message id received per thread, and one after each catch-up). The sync
 * push's `online` list is not stored as delivery any more: the relay counts
 * a user online while it holds any socket of theirs, a socket whose peer is
 * gone (a laptop lid closed, Wi-Fi lost) among them until its ping times
 * out, and a monotonic mark set wrongly can never be taken back; it also
 * exists in sync mode only (the extension pushes async by default), so the
 * same message would read "delivered" early with one and late with the
 * other, and it was written without an event, so nobody else's page heard
 * of it. The acknowledgement costs about a second more and means one thing.
 *
 * Events: a `delivered` thread event (sealed with the thread key, numbered
 * like every thread event, PROTOCOL.md §4.1) only when a member's mark
 * moves forward. Bound: one event per member, thread and acknowledgement,
 * and a page acknowledges at most once a second, so a group of N members
 * busy at any rate costs at most N `delivered` events a second per open
 * page, not one per message per member; a member reading the thread sends
 * none at all (the read mark moved the delivered mark first, and `read`
 * says both).
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * The `POST /delivered` route, the delivered marks in the thread shape, and
 * the `delivered` event.
 */
final class BM_Relay_Receipts
{
    /**
     * Threads one acknowledgement may carry (a page with more threads
     * sends several): bounds the work of one request (one update and at
     * most one event per thread).
     */
    public const MAX_THREADS = 100;

    /** Registers `POST /delivered` (on rest_api_init). */
    public static function register_routes(): void
    {
        register_rest_route(BM_Relay_REST::NS, '/delivered', [
            ['methods' => 'POST', 'callback' => [self::class, 'acknowledge'], 'permission_callback' => [BM_Relay_REST::class, 'check']],
        ]);
    }

    /**
     * POST /delivered — `{"threads": {"<thread id>": <message id>, …}}`:
     * the current user's browser received these messages (each the newest
     * it has of its thread). A member acknowledges for themself only (the
     * user is the session's). All or nothing: a thread the user is not a
     * member of is a 403 (404 when there is no such thread), a message id
     * beyond the thread's last message a 400, and nothing is stored then.
     * Marks never move back; each one that moves forward pushes
     * `delivered` to the thread's members.
     *
     * @return WP_REST_Response|WP_Error
     */
    public static function acknowledge(WP_REST_Request $request)
    {
        $acks = self::params($request->get_param('threads'));
        if ($acks instanceof WP_Error) {
            return $acks;
        }
        $me = get_current_user_id();
        $threads = self::member_threads(array_keys($acks), $me);
        foreach ($acks as $tid => $upto) {
            if (!isset($threads[$tid])) {
                return BM_Relay_Store::thread($tid)
                    /* translators: %d: a thread id */
                    ? new WP_Error('bm_relay_not_member', sprintf(__('You are not a member of thread %d.', 'bm-relay'), $tid), ['status' => 403])
                    /* translators: %d: a thread id */
                    : new WP_Error('bm_relay_no_thread', sprintf(__('No such thread: %d.', 'bm-relay'), $tid), ['status' => 404]);
            }
            if ($upto > (int) $threads[$tid]->last_message_id) {
                /* translators: %d: a thread id */
                return BM_Relay_Params::bad('threads', sprintf(__('%d: the message id is beyond the thread’s last message', 'bm-relay'), $tid));
            }
        }
        return new WP_REST_Response(self::record($threads, $acks, $me));
    }

    /**
     * Moves `$me`'s delivered marks forward (never back) and pushes one
     * `delivered` event per thread whose mark moved, all in one push
     * request. `$threads`: the thread rows, checked by the caller (the
     * member's own, each id at most the thread's last message: that only
     * grows, so the check cannot go stale before the write).
     *
     * @param array<int,object> $threads thread id → thread row
     * @param array<int,int> $acks thread id → message id
     * @return array{marks:list<array{thread:int,last_delivered_id:int,changed:bool}>,pushed:bool}
     */
    public static function record(array $threads, array $acks, int $me): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $marks = [];
        $events = [];
        foreach ($acks as $tid => $upto) {
            // One statement decides and writes: two tabs acknowledging at
            // once cannot move the mark back, and only the one that moved
            // it pushes.
            $changed = 1 === (int) $wpdb->query($wpdb->prepare(
                "UPDATE {$t['participants']} SET last_delivered_id = %d WHERE thread_id = %d AND user_id = %d AND last_delivered_id < %d",
                $upto,
                $tid,
                $me,
                $upto
            ));
            $now = $changed ? $upto : (int) $wpdb->get_var($wpdb->prepare(
                "SELECT last_delivered_id FROM {$t['participants']} WHERE thread_id = %d AND user_id = %d",
                $tid,
                $me
            ));
            $marks[] = ['thread' => $tid, 'last_delivered_id' => $now, 'changed' => $changed];
            if ($changed) {
                $events[] = BM_Relay_Push::thread_event_array($threads[$tid], 'delivered', ['user' => $me, 'message_id' => $upto]);
            }
        }
        // One push request for the whole acknowledgement, whatever its
        // number of threads; `pushed` false: nothing moved, or the relay
        // did not take it (pages then see the marks at their next read).
        $pushed = $events && BM_Relay_Push::send($events) !== null;
        return ['marks' => $marks, 'pushed' => $pushed];
    }

    /**
     * The `threads` parameter: a non-empty object of at most MAX_THREADS
     * thread id → message id, both positive integers.
     *
     * @param mixed $raw
     * @return array<int,int>|WP_Error
     */
    private static function params($raw)
    {
        if (!is_array($raw) || !$raw) {
            return BM_Relay_Params::bad('threads', __('must be an object of thread id → newest message id received', 'bm-relay'));
        }
        if (count($raw) > self::MAX_THREADS) {
            /* translators: %d: how many threads one request may carry */
            return BM_Relay_Params::bad('threads', sprintf(__('carries more than %d threads', 'bm-relay'), self::MAX_THREADS));
        }
        $acks = [];
        foreach ($raw as $tid => $upto) {
            $tid = BM_Relay_Params::id($tid, 'threads');
            if ($tid instanceof WP_Error) {
                return $tid;
            }
            $upto = BM_Relay_Params::id($upto, 'threads');
            if ($upto instanceof WP_Error) {
                return $upto;
            }
            $acks[$tid] = $upto;
        }
        return $acks;
    }

    /**
     * The rows of those threads the user is a member of (one query).
     *
     * @param list<int> $ids
     * @return array<int,object> thread id → thread row
     */
    private static function member_threads(array $ids, int $user): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $in = implode(',', array_fill(0, count($ids), '%d'));
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT th.* FROM {$t['threads']} th JOIN {$t['participants']} p ON p.thread_id = th.id AND p.user_id = %d WHERE th.id IN ($in)",
            $user,
            ...$ids
        ));
        $out = [];
        foreach ($rows as $r) {
            $out[(int) $r->id] = $r;
        }
        return $out;
    }
}
