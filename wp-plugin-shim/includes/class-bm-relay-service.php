<?php

/**
 * What each chat request does, below the routes (BM_Relay_REST) and above
 * the store (BM_Relay_Store): the site's limits (BM_Relay_Limits), the
 * write, then the matching push (BM_Relay_Push). Its callers have already
 * checked the nonce, the capability, membership and every parameter; it
 * takes clean values and returns data (or a WP_Error from a limit or the
 * relay), never a REST response, so another entry point (WP-CLI, a cron
 * job, a feature's own route) can do the same thing. Writes store first
 * and push after; a failed push never fails the write (`pushed` says).
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * The chat's operations.
 */
final class BM_Relay_Service
{
    /**
     * One page of a user's threads, newest activity first.
     *
     * @return array{threads:list<array<string,mixed>>,has_more:bool}
     */
    public static function threads_page(int $user, int $page, int $per): array
    {
        // One row more than asked tells whether another page follows.
        $rows = BM_Relay_Store::threads_for($user, $per + 1, ($page - 1) * $per);
        $more = count($rows) > $per;
        $rows = array_slice($rows, 0, $per);
        return ['threads' => BM_Relay_Shapes::threads($rows, $user), 'has_more' => $more];
    }

    /**
     * May `$me` start a thread with `$members` now: the member limit, each
     * one's contact rule, the thread rate. Asked before the rest of the
     * request is read, as the route always did.
     *
     * @param list<int> $members the others
     * @return true|WP_Error
     */
    public static function may_create_thread(int $me, array $members)
    {
        $limit = BM_Relay_Limits::check_members(count($members) + 1);
        if ($limit instanceof WP_Error) {
            return $limit;
        }
        foreach ($members as $id) {
            $limit = BM_Relay_Limits::check_contact($me, $id, 'participants');
            if ($limit instanceof WP_Error) {
                return $limit;
            }
        }
        return BM_Relay_Limits::check_thread_rate($me);
    }

    /**
     * May `$me` send a message now (the message rate).
     *
     * @return true|WP_Error
     */
    public static function may_send(int $me)
    {
        return BM_Relay_Limits::check_message_rate($me);
    }

    /**
     * Creates a thread (and its first message when `$text` is given; the
     * caller checked may_send() for it). Every member, the creator
     * included (their other tabs learn of it too), gets `thread.added`
     * sealed with their own user key, carrying the thread key, in one push
     * request whatever the thread's size.
     *
     * @param list<int> $members the others
     * @return object the new thread row
     */
    public static function create_thread(int $me, array $members, string $subject, ?string $text): object
    {
        $id = BM_Relay_Store::create_thread($me, sanitize_text_field($subject), $members);
        if ($text !== null) {
            BM_Relay_Mentions::store($id, BM_Relay_Store::insert_message($id, $me, $text), $me, $text);
        }
        $thread = BM_Relay_Store::thread($id);
        $events = [];
        $participants = BM_Relay_Store::members($id);
        foreach (array_merge([$me], $members) as $user) {
            $event = self::announce_event($user, $thread, $participants);
            if ($event !== null) {
                $events[] = $event;
            }
        }
        BM_Relay_Push::send($events);
        return $thread;
    }

    /**
     * The `thread.added` event (thread, key and thread token) for one
     * member, sealed with their user key; null when no key can be made.
     *
     * @param list<int> $participants
     * @return array<string,mixed>|null
     */
    private static function announce_event(int $user, object $thread, array $participants): ?array
    {
        $keys = BM_Relay_Push::thread_keys($user, $thread);
        if ($keys === null) {
            return null;
        }
        return BM_Relay_Push::user_event_array($user, 'thread.added', [
            'thread' => BM_Relay_Shapes::added_thread($thread, $participants),
            'keys' => $keys,
        ]);
    }

    /**
     * Adds `$user` to a thread (limits checked for a newcomer): they get
     * `thread.added`, the members `participant.added`, in one push.
     *
     * @return array{thread:object,added:bool}|WP_Error
     */
    public static function add_participant(object $thread, int $user, int $me)
    {
        if (!BM_Relay_Store::membership((int) $thread->id, $user)) {
            $limit = BM_Relay_Limits::check_members(count(BM_Relay_Store::members((int) $thread->id)) + 1);
            if ($limit instanceof WP_Error) {
                return $limit;
            }
            $limit = BM_Relay_Limits::check_contact($me, $user, 'user_id');
            if ($limit instanceof WP_Error) {
                return $limit;
            }
        }
        $added = BM_Relay_Store::add_member((int) $thread->id, $user, (int) $thread->epoch);
        if ($added) {
            $thread = BM_Relay_Store::thread((int) $thread->id);
            $events = [BM_Relay_Push::thread_event_array($thread, 'participant.added', ['thread' => (int) $thread->id, 'user' => $user])];
            $announce = self::announce_event($user, $thread, BM_Relay_Store::members((int) $thread->id));
            if ($announce !== null) {
                array_unshift($events, $announce);
            }
            BM_Relay_Push::send($events);
        }
        return ['thread' => $thread, 'added' => $added];
    }

    /**
     * Removes `$user` from a thread: the epoch is bumped, the remaining
     * members get the new key (`thread.key`, user-sealed), the removed user
     * gets `thread.removed` and loses the relay subscription.
     *
     * @return int|WP_Error the new epoch; 404 when they were not a member
     */
    public static function remove_participant(object $thread, int $user)
    {
        $epoch = BM_Relay_Store::remove_member((int) $thread->id, $user);
        if ($epoch === null) {
            return new WP_Error('bm_relay_not_member', __('That user is not a member of this thread.', 'bm-relay'), ['status' => 404]);
        }
        BM_Relay_Push::member_removed((int) $thread->id, $user);
        return $epoch;
    }

    /**
     * Messages of a thread: everything after `$after` (ascending), or the
     * `$limit` before `$before` (history).
     *
     * @return array{messages:list<array<string,mixed>>,has_more:bool}
     */
    public static function messages_page(object $thread, int $after, ?int $before, int $limit): array
    {
        $rows = BM_Relay_Store::messages((int) $thread->id, $after, $before, $limit + 1);
        $more = count($rows) > $limit;
        if ($more) {
            $rows = $before !== null ? array_slice($rows, 1) : array_slice($rows, 0, $limit);
        }
        return ['messages' => BM_Relay_Shapes::messages($rows), 'has_more' => $more];
    }

    /**
     * Stores a message (the caller checked may_send()), then pushes
     * `message.new`. `delivered_to`: the members the relay held a socket
     * for (sync mode), a hint only: it is not stored as delivery, the
     * members' browsers acknowledge that (BM_Relay_Receipts says why).
     *
     * `$attachments`: uploads checked by BM_Relay_Attachments::param(),
     * linked before the shape is made, so the event carries their references.
     *
     * @param list<int> $attachments
     * @return array{message:array<string,mixed>,pushed:bool,delivered_to:list<int>}
     */
    public static function send_message(object $thread, int $me, string $text, ?string $client_id, array $attachments = []): array
    {
        $id = BM_Relay_Store::insert_message((int) $thread->id, $me, $text);
        if ($attachments) {
            BM_Relay_Attachments::attach($id, $me, $attachments);
        }
        BM_Relay_Mentions::store((int) $thread->id, $id, $me, $text);
        $message = BM_Relay_Shapes::message(BM_Relay_Store::message($id), []);
        $data = $message;
        if ($client_id !== null) {
            $data['client_id'] = $client_id;
        }
        // The event id is random (not the message id): nobody can predict it.
        $res = BM_Relay_Push::thread_event($thread, 'message.new', $data);
        $delivered = [];
        if ($res !== null) {
            $delivered = array_values(array_diff(array_map('intval', $res['online']), [$me]));
        }
        /**
         * Fires after a message was stored and pushed: (thread row, sender,
         * message id, the push's answer in sync mode or null when nothing
         * is known). Offline e-mail (BM_Relay_Mail) schedules from it.
         */
        do_action('bm_relay_message_sent', $thread, $me, $id, $res);
        return ['message' => $message, 'pushed' => $res !== null, 'delivered_to' => $delivered];
    }

    /**
     * Replaces a message's text, then pushes `message.edit`.
     *
     * @return array{message:array<string,mixed>,pushed:bool}
     */
    public static function edit_message(object $msg, object $thread, string $text): array
    {
        BM_Relay_Store::edit_message((int) $msg->id, $text);
        BM_Relay_Mentions::store((int) $thread->id, (int) $msg->id, (int) $msg->sender_id, $text);
        $message = BM_Relay_Shapes::message(BM_Relay_Store::message((int) $msg->id));
        $res = BM_Relay_Push::thread_event($thread, 'message.edit', $message);
        return ['message' => $message, 'pushed' => $res !== null];
    }

    /**
     * Deletes a message (once), then pushes `message.delete` (again on a
     * repeat, so a page that missed it learns it).
     *
     * @return bool pushed
     */
    public static function delete_message(object $msg, object $thread): bool
    {
        if ($msg->deleted_at === null) {
            BM_Relay_Store::delete_message((int) $msg->id);
        }
        $res = BM_Relay_Push::thread_event($thread, 'message.delete', ['id' => (int) $msg->id, 'thread' => (int) $thread->id]);
        return $res !== null;
    }

    /**
     * Adds or removes `$me`'s reaction (the per-message limit checked for an
     * addition); on a change pushes `reaction` with the full list.
     *
     * @return array{id:int,reactions:list<array<string,mixed>>,changed:bool,pushed:bool}|WP_Error
     */
    public static function react(object $msg, object $thread, int $me, string $emoji, bool $remove)
    {
        if (!$remove) {
            $now = array_keys(BM_Relay_Store::reactions([(int) $msg->id])[(int) $msg->id] ?? []);
            $limit = BM_Relay_Limits::check_reaction(array_map('strval', $now), $emoji);
            if ($limit instanceof WP_Error) {
                return $limit;
            }
        }
        $changed = BM_Relay_Store::set_reaction((int) $msg->id, $me, $emoji, !$remove);
        $list = BM_Relay_Store::reaction_list(BM_Relay_Store::reactions([(int) $msg->id])[(int) $msg->id] ?? []);
        $pushed = false;
        if ($changed) {
            $pushed = null !== BM_Relay_Push::thread_event($thread, 'reaction', [
                'id' => (int) $msg->id,
                'thread' => (int) $thread->id,
                'user' => $me,
                'emoji' => $emoji,
                'op' => $remove ? 'remove' : 'add',
                'reactions' => $list,
            ]);
        }
        return ['id' => (int) $msg->id, 'reactions' => $list, 'changed' => $changed, 'pushed' => $pushed];
    }

    /**
     * Pins (`$on`) or unpins a message of a thread for `$me` (a member or a
     * moderator; the caller checked which, and that a message to pin is not
     * deleted). On a change pushes `message.pin` (with the message, so the
     * other pages can show its text in their pinned bar at once) or
     * `message.unpin`, both with the thread's whole pin list, so a page
     * applies the latest state whatever it missed. Any member may unpin
     * any pin: pins belong to the conversation, not to who made them.
     *
     * @return array{id:int,thread:int,pinned:list<int>,changed:bool,pushed:bool}|WP_Error
     */
    public static function pin(object $msg, object $thread, int $me, bool $on)
    {
        $id = (int) $msg->id;
        $tid = (int) $thread->id;
        if ($on) {
            $done = BM_Relay_Store::pin($tid, $id, $me, BM_Relay_Limits::pins_per_thread());
            if ($done === 'full') {
                return BM_Relay_Limits::pins_full();
            }
            $changed = $done === 'pinned';
        } else {
            $changed = BM_Relay_Store::unpin($id);
        }
        $pinned = BM_Relay_Store::pins_of([$tid])[$tid] ?? [];
        $pushed = false;
        if ($changed) {
            $data = ['id' => $id, 'thread' => $tid, 'user' => $me, 'pinned' => $pinned];
            if ($on) {
                $data['message'] = BM_Relay_Shapes::message($msg);
            }
            $pushed = null !== BM_Relay_Push::thread_event($thread, $on ? 'message.pin' : 'message.unpin', $data);
        }
        return ['id' => $id, 'thread' => $tid, 'pinned' => $pinned, 'changed' => $changed, 'pushed' => $pushed];
    }

    /**
     * The pinned messages of a thread, in the order they were pinned, with
     * their reactions (the pinned bar shows pins older than the history a
     * page has loaded).
     *
     * @return list<array<string,mixed>>
     */
    public static function pinned_messages(object $thread): array
    {
        $ids = BM_Relay_Store::pins_of([(int) $thread->id])[(int) $thread->id] ?? [];
        $rows = BM_Relay_Store::messages_by_id($ids);
        $ordered = [];
        foreach ($ids as $id) {
            if (isset($rows[$id])) {
                $ordered[] = $rows[$id];
            }
        }
        return BM_Relay_Shapes::messages($ordered);
    }

    /**
     * Moves `$me`'s read mark up to `$upto` (null: the thread's newest
     * message now, not as the thread row read at the start of the request
     * had it: a message stored meanwhile would stay unread), then pushes
     * `read` so the sender's page can show it was seen.
     *
     * @return array{thread:int,last_read_id:int,unread:int,pushed:bool}
     */
    public static function mark_read(object $thread, int $me, ?int $upto): array
    {
        if ($upto === null) {
            $upto = BM_Relay_Store::last_message_id((int) $thread->id);
        }
        $state = BM_Relay_Store::mark_read((int) $thread->id, $me, $upto);
        $res = BM_Relay_Push::thread_event($thread, 'read', [
            'thread' => (int) $thread->id,
            'user' => $me,
            'message_id' => $state['last_read_id'],
        ]);
        return [
            'thread' => (int) $thread->id,
            'last_read_id' => $state['last_read_id'],
            'unread' => $state['unread'],
            'pushed' => $res !== null,
        ];
    }

    /** The 503 of a relay that cannot be asked. */
    private static function unavailable(): WP_Error
    {
        return new WP_Error('bm_relay_unavailable', __('The relay cannot be reached right now.', 'bm-relay'), ['status' => 503]);
    }

    /**
     * The members of a thread with a socket on the relay now (`bm_presence`).
     *
     * @return list<int>|WP_Error
     */
    public static function online_members(object $thread)
    {
        try {
            $online = bm_presence(BM_Relay_Store::members((int) $thread->id));
        } catch (BmRelayException $e) {
            return self::unavailable();
        }
        return array_values(array_map('intval', $online));
    }

    /**
     * Who is online in several threads, `$me`'s own only (others are left
     * out): one question to the relay for all their members.
     *
     * @param list<int> $ids
     * @return array<string,list<int>>|WP_Error thread id → online members
     */
    public static function online_in(int $me, array $ids)
    {
        $mine = array_values(array_intersect(array_unique($ids), BM_Relay_Store::thread_ids_of($me)));
        $members = BM_Relay_Store::members_of($mine);
        $everyone = $members ? array_values(array_unique(array_merge(...array_values($members)))) : [];
        $online = [];
        if ($everyone) {
            try {
                $online = array_map('intval', bm_presence($everyone));
            } catch (BmRelayException $e) {
                return self::unavailable();
            }
        }
        $out = [];
        foreach ($mine as $t) {
            $out[(string) $t] = array_values(array_intersect($members[$t] ?? [], $online));
        }
        return $out;
    }

    /**
     * People `$me` may start a thread with, by display name (never by login
     * or e-mail): at most 20 profiles, filterable with
     * `bm_relay_user_search_args`; people whose display name is still their
     * login are left out (a search must not enumerate logins), and so are
     * people `$me` may not message (BM_Relay_Limits).
     *
     * @return list<array{id:int,name:string,avatar:string}>
     */
    public static function find_people(int $me, string $search): array
    {
        $args = apply_filters('bm_relay_user_search_args', [
            'search' => '*' . $search . '*',
            'search_columns' => ['display_name'],
            'number' => 40,
            'orderby' => 'display_name',
            'fields' => ['ID', 'user_login', 'display_name'],
            'exclude' => [$me],
        ], $search);
        $out = [];
        foreach ((new WP_User_Query($args))->get_results() as $u) {
            $id = (int) (is_object($u) ? $u->ID : $u);
            if (is_object($u) && isset($u->user_login) && (string) $u->display_name === (string) $u->user_login) {
                continue;
            }
            if (!BM_Relay_Limits::can_message($me, $id)) {
                continue;
            }
            $out[] = BM_Relay_Shapes::person($id);
            if (count($out) >= 20) {
                break;
            }
        }
        return $out;
    }

    /**
     * One page of every thread of the site (moderators), newest first.
     *
     * @return array{threads:list<array<string,mixed>>,has_more:bool}
     */
    public static function all_threads_page(int $page, int $per, string $search): array
    {
        $rows = BM_Relay_Store::all_threads($per + 1, ($page - 1) * $per, $search);
        $more = count($rows) > $per;
        $rows = array_slice($rows, 0, $per);
        return ['threads' => BM_Relay_Shapes::moderation_threads($rows), 'has_more' => $more];
    }

    /**
     * The relay WebSocket URLs a browser may use, the preferred first: the
     * site's relay URL, or with several relay nodes (a cluster,
     * PROTOCOL.md §7) what the `bm_relay_client_urls` filter makes of it
     * (array of URLs, user id), so a page whose node dies reconnects to
     * another. Only ws:// and wss:// URLs are kept, each once, 16 at most.
     *
     * @return list<string>
     */
    private static function client_urls(string $url, int $user): array
    {
        $urls = apply_filters('bm_relay_client_urls', $url === '' ? [] : [$url], $user);
        $out = [];
        foreach (is_array($urls) ? $urls : [] as $u) {
            if (is_string($u) && preg_match('#^wss?://[^\s"<>]+$#iD', $u) && !in_array($u, $out, true) && count($out) < 16) {
                $out[] = $u;
            }
        }
        return $out;
    }

    /**
     * Everything a browser needs to (re)connect: relay URL(s), connection
     * token, user key, and for its 500 most active threads each key and
     * thread token; 503 when the relay is not configured.
     *
     * @return array<string,mixed>|WP_Error
     */
    public static function token(int $me)
    {
        $ttl = BM_Relay_Push::token_ttl();
        try {
            $token = bm_client_token($me, $ttl);
            $user_key = bm_user_key($me);
        } catch (BmRelayException $e) {
            return new WP_Error('bm_relay_unconfigured', __('The relay is not configured on this site.', 'bm-relay'), ['status' => 503]);
        }
        $threads = [];
        foreach (BM_Relay_Store::threads_for($me, 500, 0) as $row) {
            $keys = BM_Relay_Push::thread_keys($me, $row);
            if ($keys !== null) {
                $threads[] = $keys;
            }
        }
        $urls = self::client_urls((string) BM_Relay_Settings::get('bmr_public_url'), $me);
        return [
            'url' => $urls[0] ?? '',
            'urls' => $urls,
            'site' => (string) (bm_stats()['site'] ?? ''),
            'user' => $me,
            'token' => $token,
            'exp' => time() + $ttl,
            // What the relay knows this user by (protocol 2: a pseudonym).
            'wire' => BM_Relay_Ids::user($me),
            'user_key' => ['kid' => BM_Relay_Ids::user_kid($me), 'key' => $user_key],
            'threads' => $threads,
        ];
    }
}
