<?php

/**
 * REST API `bm/v1` for the browser chat page.
 *
 * Every route checks, in its permission callback, a logged-in user, a valid
 * `wp_rest` nonce (X-WP-Nonce header or _wpnonce parameter) and the chat
 * capability; every handler then checks thread membership. Writes store
 * first, then push the matching event; a failed push never fails the request.
 * Routes and shapes are documented in docs/PLUGIN.md.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Route registration and handlers.
 */
final class BM_Relay_REST
{
    /** REST namespace. */
    public const NS = 'bm/v1';
    /** Largest id (2^53 - 1), as in the protocol. */
    private const MAX_ID = 9007199254740991;
    /** Ids accepted in one `participants` list (bounds the work; the member limit is BM_Relay_Limits). */
    private const MAX_PARTICIPANTS_PARAM = 1000;

    /** Registers every route on rest_api_init. */
    public static function register_routes(): void
    {
        $check = [self::class, 'check'];
        $id = '(?P<id>\d+)';
        register_rest_route(self::NS, '/threads', [
            ['methods' => 'GET', 'callback' => [self::class, 'list_threads'], 'permission_callback' => $check],
            ['methods' => 'POST', 'callback' => [self::class, 'create_thread'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, "/threads/$id", [
            ['methods' => 'GET', 'callback' => [self::class, 'get_thread'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, "/threads/$id/participants", [
            ['methods' => 'POST', 'callback' => [self::class, 'add_participant'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, "/threads/$id/participants/(?P<user_id>\d+)", [
            ['methods' => 'DELETE', 'callback' => [self::class, 'remove_participant'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, "/threads/$id/messages", [
            ['methods' => 'GET', 'callback' => [self::class, 'list_messages'], 'permission_callback' => $check],
            ['methods' => 'POST', 'callback' => [self::class, 'send_message'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, "/threads/$id/read", [
            ['methods' => 'POST', 'callback' => [self::class, 'mark_read'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, "/messages/$id", [
            ['methods' => 'PUT, PATCH', 'callback' => [self::class, 'edit_message'], 'permission_callback' => $check],
            ['methods' => 'DELETE', 'callback' => [self::class, 'delete_message'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, "/messages/$id/reactions", [
            ['methods' => 'POST', 'callback' => [self::class, 'react'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, "/threads/$id/presence", [
            ['methods' => 'GET', 'callback' => [self::class, 'presence'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, '/users', [
            ['methods' => 'GET', 'callback' => [self::class, 'search_users'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, '/presence', [
            ['methods' => 'GET', 'callback' => [self::class, 'presence_many'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, '/moderation/threads', [
            ['methods' => 'GET', 'callback' => [self::class, 'moderation_threads'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, '/token', [
            ['methods' => 'POST', 'callback' => [self::class, 'token'], 'permission_callback' => $check],
        ]);
    }

    /**
     * Permission callback of every route: logged in, nonce, capability.
     *
     * The nonce is checked here as well as by WordPress's cookie handler so
     * the rule holds whatever authenticated the request — except an
     * Application Password (HTTP Basic), which carries no cookie to forge.
     *
     * @return true|WP_Error
     */
    public static function check(WP_REST_Request $request)
    {
        if (!is_user_logged_in()) {
            return new WP_Error('bm_relay_not_logged_in', __('You must be logged in to chat.', 'bm-relay'), ['status' => 401]);
        }
        $nonce = $request->get_header('x_wp_nonce');
        if (!$nonce) {
            $nonce = $request->get_param('_wpnonce');
        }
        // An Application Password (HTTP Basic, mobile and headless clients)
        // is not a cookie: no CSRF to guard against, so no nonce. Every
        // other way in (the login cookie) needs one.
        $app_password = function_exists('rest_get_authenticated_app_password') && rest_get_authenticated_app_password() !== null;
        if (!$app_password && (!is_string($nonce) || $nonce === '' || !wp_verify_nonce($nonce, 'wp_rest'))) {
            return new WP_Error('bm_relay_bad_nonce', __('Missing or expired security token (nonce); reload the page.', 'bm-relay'), ['status' => 403]);
        }
        /** Capability a user needs to chat at all. */
        $cap = (string) apply_filters('bm_relay_chat_capability', 'read');
        if (!current_user_can($cap)) {
            return new WP_Error('bm_relay_forbidden', __('You are not allowed to chat on this site.', 'bm-relay'), ['status' => 403]);
        }
        return true;
    }

    /** Capability of moderators (granted to administrators on activation). */
    public const MODERATE_CAP = 'bmr_moderate';

    /**
     * True when the user may moderate: list every thread, read it, delete
     * messages and remove members without being a member (filter
     * `bm_relay_moderate_capability`, default `bmr_moderate`).
     */
    public static function can_moderate(): bool
    {
        return current_user_can((string) apply_filters('bm_relay_moderate_capability', self::MODERATE_CAP));
    }

    /**
     * A positive id (1 … 2^53-1) from a parameter, or a WP_Error naming it.
     *
     * @param mixed $value
     * @return int|WP_Error
     */
    private static function id_param($value, string $name, bool $allow_zero = false)
    {
        if (is_int($value)) {
            $value = (string) $value;
        }
        if (!is_string($value) || !preg_match('/^\d{1,16}$/D', $value)) {
            return self::bad($name, __('must be a positive integer', 'bm-relay'));
        }
        $n = (int) $value;
        if ($n > self::MAX_ID || (!$allow_zero && $n < 1)) {
            return self::bad($name, __('is out of range', 'bm-relay'));
        }
        return $n;
    }

    /** A 400 error naming a parameter. */
    private static function bad(string $name, string $what): WP_Error
    {
        /* translators: 1: parameter name, 2: what is wrong with it */
        return new WP_Error('bm_relay_invalid_param', sprintf(__('Invalid parameter %1$s: %2$s.', 'bm-relay'), $name, $what), ['status' => 400, 'param' => $name]);
    }

    /**
     * Message text from a parameter: a non-empty UTF-8 string within the
     * length limit (413 over it). Control characters other than newline and
     * tab are removed; HTML is kept as text (the client renders text).
     *
     * @param mixed $value
     * @return string|WP_Error
     */
    private static function text_param($value)
    {
        if (!is_string($value)) {
            return self::bad('text', __('must be a string', 'bm-relay'));
        }
        if (wp_check_invalid_utf8($value) !== $value) {
            return self::bad('text', __('must be valid UTF-8', 'bm-relay'));
        }
        $text = trim((string) preg_replace('/[\x00-\x08\x0B-\x1F\x7F]/u', '', $value));
        if ($text === '') {
            return self::bad('text', __('must not be empty', 'bm-relay'));
        }
        $max = max(1, (int) BM_Relay_Settings::get('bmr_max_length'));
        if (mb_strlen($text, 'UTF-8') > $max || strlen($text) > 60000) {
            /* translators: %d: maximum number of characters */
            return new WP_Error('bm_relay_too_long', sprintf(__('Message is too long (at most %d characters).', 'bm-relay'), $max), ['status' => 413, 'param' => 'text']);
        }
        return $text;
    }

    /**
     * The thread of a route and the current user's membership, or an error:
     * 400 malformed id, 404 no such thread, 403 not a member — unless
     * $moderation and the user moderates (then the membership is null).
     *
     * @return array{0:object,1:object|null}|WP_Error
     */
    private static function member_thread($raw_id, bool $moderation = false)
    {
        $id = self::id_param($raw_id, 'id');
        if ($id instanceof WP_Error) {
            return $id;
        }
        $thread = BM_Relay_Store::thread($id);
        if (!$thread) {
            return new WP_Error('bm_relay_no_thread', __('No such thread.', 'bm-relay'), ['status' => 404]);
        }
        $me = BM_Relay_Store::membership($id, get_current_user_id());
        if (!$me && $moderation && self::can_moderate()) {
            return [$thread, null];
        }
        if (!$me) {
            return new WP_Error('bm_relay_not_member', __('You are not a member of this thread.', 'bm-relay'), ['status' => 403]);
        }
        return [$thread, $me];
    }

    /**
     * The message of a route and its thread, for a member, or an error.
     *
     * @return array{0:object,1:object}|WP_Error
     */
    private static function member_message($raw_id, bool $moderation = false)
    {
        $id = self::id_param($raw_id, 'id');
        if ($id instanceof WP_Error) {
            return $id;
        }
        $msg = BM_Relay_Store::message($id);
        if (!$msg) {
            return new WP_Error('bm_relay_no_message', __('No such message.', 'bm-relay'), ['status' => 404]);
        }
        $found = self::member_thread((string) $msg->thread_id, $moderation);
        if ($found instanceof WP_Error) {
            return $found;
        }
        return [$msg, $found[0]];
    }

    /**
     * Public profile of a user for the chat page.
     *
     * @return array{id:int,name:string,avatar:string}
     */
    private static function person(int $id): array
    {
        $u = get_userdata($id);
        return [
            'id' => $id,
            'name' => $u ? (string) $u->display_name : __('Deleted user', 'bm-relay'),
            'avatar' => (string) get_avatar_url($id, ['size' => 64]),
        ];
    }

    /**
     * A thread member's profile, with what the relay calls them (`wire`:
     * their pseudonym in protocol 2), so the other members' pages can map
     * the relay's typing hints and presence answers back (PROTOCOL.md §3.2).
     *
     * @return array{id:int,wire:int,name:string,avatar:string}
     */
    private static function member(int $id): array
    {
        return ['wire' => BM_Relay_Ids::user($id)] + self::person($id);
    }

    /**
     * The JSON shape of a thread for one member, with its current key.
     *
     * @param object $thread a thread row; with unread_count/last_read_id when joined
     * @return array<string,mixed>
     */
    public static function format_thread(object $thread, int $user): array
    {
        return self::format_threads([$thread], $user)[0];
    }

    /**
     * Several threads at once, with a fixed number of queries whatever
     * their count (members, last messages, their reactions, user profiles).
     *
     * @param list<object> $threads
     * @return list<array<string,mixed>>
     */
    public static function format_threads(array $threads, int $user): array
    {
        if (!$threads) {
            return [];
        }
        $ids = array_map(static fn($t) => (int) $t->id, $threads);
        $members = BM_Relay_Store::members_of($ids);
        $last_ids = array_values(array_filter(array_map(static fn($t) => (int) $t->last_message_id, $threads)));
        $last_rows = BM_Relay_Store::messages_by_id($last_ids);
        $reactions = BM_Relay_Store::reactions($last_ids);
        $people = array_values(array_unique(array_merge([], ...array_values($members))));
        if ($people) {
            cache_users($people);
        }
        $out = [];
        foreach ($threads as $thread) {
            $tid = (int) $thread->id;
            $me = isset($thread->unread_count) ? $thread : BM_Relay_Store::membership($tid, $user);
            $row = $last_rows[(int) $thread->last_message_id] ?? null;
            $out[] = [
                'id' => $tid,
                'subject' => (string) $thread->subject,
                'created_by' => (int) $thread->created_by,
                'created' => BM_Relay_Store::ts($thread->created_at),
                'updated' => BM_Relay_Store::ts($thread->updated_at),
                'participants' => array_map([self::class, 'member'], $members[$tid] ?? []),
                'unread' => $me ? (int) $me->unread_count : 0,
                'last_read_id' => $me ? (int) $me->last_read_id : 0,
                'last_message' => $row ? BM_Relay_Store::format_message($row, $reactions[(int) $row->id] ?? []) : null,
                'epoch' => (int) $thread->epoch,
                // The number of the thread's last event: a page in sync with
                // this shape expects `seq + 1` next (PROTOCOL.md §4.1).
                'seq' => (int) ($thread->seq ?? 0),
                // Keys and thread tokens for members only (a moderator reads
                // over REST; the relay's live stream is for members).
                'keys' => $me ? BM_Relay_Push::thread_keys($user, $thread) : null,
            ];
        }
        return $out;
    }

    /** GET /threads — the current user's threads, newest activity first. */
    public static function list_threads(WP_REST_Request $request)
    {
        $page = $request->get_param('page') ?? '1';
        $page = self::id_param($page, 'page');
        if ($page instanceof WP_Error) {
            return $page;
        }
        $per = $request->get_param('per_page') ?? '50';
        $per = self::id_param($per, 'per_page');
        if ($per instanceof WP_Error) {
            return $per;
        }
        if ($per > 100) {
            return self::bad('per_page', __('must be at most 100', 'bm-relay'));
        }
        $user = get_current_user_id();
        // One row more than asked tells whether another page follows.
        $rows = BM_Relay_Store::threads_for($user, $per + 1, ($page - 1) * $per);
        $more = count($rows) > $per;
        $rows = array_slice($rows, 0, $per);
        return new WP_REST_Response(['threads' => self::format_threads($rows, $user), 'page' => $page, 'per_page' => $per, 'has_more' => $more]);
    }

    /** GET /threads/{id} — one thread (member or moderator). */
    public static function get_thread(WP_REST_Request $request)
    {
        $found = self::member_thread($request['id'], true);
        if ($found instanceof WP_Error) {
            return $found;
        }
        return new WP_REST_Response(['thread' => self::format_thread($found[0], get_current_user_id())]);
    }

    /**
     * POST /threads — {participants:int[], subject?:string, text?:string}.
     * The creator is a member; every member (the creator's other tabs too)
     * gets `thread.added` sealed with their own user key, carrying the
     * thread key.
     */
    public static function create_thread(WP_REST_Request $request)
    {
        $me = get_current_user_id();
        $raw = $request->get_param('participants');
        if (!is_array($raw) || !$raw) {
            return self::bad('participants', __('must be a non-empty list of user ids', 'bm-relay'));
        }
        if (count($raw) > self::MAX_PARTICIPANTS_PARAM) {
            /* translators: %d: maximum number of participants */
            return self::bad('participants', sprintf(__('must hold at most %d users', 'bm-relay'), self::MAX_PARTICIPANTS_PARAM));
        }
        $members = [];
        foreach (array_values($raw) as $i => $v) {
            $id = self::id_param($v, "participants[$i]");
            if ($id instanceof WP_Error) {
                return $id;
            }
            if (!get_userdata($id)) {
                return self::bad("participants[$i]", __('is not a user of this site', 'bm-relay'));
            }
            if ($id !== $me) {
                $members[] = $id;
            }
        }
        $members = array_values(array_unique($members));
        if (!$members) {
            return self::bad('participants', __('must name someone other than yourself', 'bm-relay'));
        }
        $limit = BM_Relay_Limits::check_members(count($members) + 1);
        if ($limit instanceof WP_Error) {
            return $limit;
        }
        foreach ($members as $i => $id) {
            $limit = BM_Relay_Limits::check_contact($me, $id, 'participants');
            if ($limit instanceof WP_Error) {
                return $limit;
            }
        }
        $limit = BM_Relay_Limits::check_thread_rate($me);
        if ($limit instanceof WP_Error) {
            return $limit;
        }
        $subject = $request->get_param('subject') ?? '';
        if (!is_string($subject) || wp_check_invalid_utf8($subject) !== $subject || mb_strlen($subject, 'UTF-8') > 200) {
            return self::bad('subject', __('must be a string of at most 200 characters', 'bm-relay'));
        }
        $text = null;
        if ($request->get_param('text') !== null) {
            $text = self::text_param($request->get_param('text'));
            if ($text instanceof WP_Error) {
                return $text;
            }
            $limit = BM_Relay_Limits::check_message_rate($me);
            if ($limit instanceof WP_Error) {
                return $limit;
            }
        }
        $id = BM_Relay_Store::create_thread($me, sanitize_text_field($subject), $members);
        if ($text !== null) {
            BM_Relay_Store::insert_message($id, $me, $text);
        }
        $thread = BM_Relay_Store::thread($id);
        // Everyone, the creator included: their other tabs learn of it too.
        // One push request for all of them, whatever the thread's size.
        $events = [];
        $participants = BM_Relay_Store::members($id);
        foreach (array_merge([$me], $members) as $user) {
            $event = self::announce_event($user, $thread, $participants);
            if ($event !== null) {
                $events[] = $event;
            }
        }
        BM_Relay_Push::send($events);
        return new WP_REST_Response(['thread' => self::format_thread($thread, $me)], 201);
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
            'thread' => [
                'id' => (int) $thread->id,
                'subject' => (string) $thread->subject,
                'created_by' => (int) $thread->created_by,
                'participants' => $participants,
            ],
            'keys' => $keys,
        ]);
    }

    /** POST /threads/{id}/participants — {user_id}; creator or moderator. */
    public static function add_participant(WP_REST_Request $request)
    {
        $found = self::member_thread($request['id']);
        if ($found instanceof WP_Error) {
            return $found;
        }
        [$thread] = $found;
        if ((int) $thread->created_by !== get_current_user_id() && !self::can_moderate()) {
            return new WP_Error('bm_relay_forbidden', __('Only the thread creator can add members.', 'bm-relay'), ['status' => 403]);
        }
        $user = self::id_param($request->get_param('user_id'), 'user_id');
        if ($user instanceof WP_Error) {
            return $user;
        }
        if (!get_userdata($user)) {
            return self::bad('user_id', __('is not a user of this site', 'bm-relay'));
        }
        if (!BM_Relay_Store::membership((int) $thread->id, $user)) {
            $limit = BM_Relay_Limits::check_members(count(BM_Relay_Store::members((int) $thread->id)) + 1);
            if ($limit instanceof WP_Error) {
                return $limit;
            }
            $limit = BM_Relay_Limits::check_contact(get_current_user_id(), $user, 'user_id');
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
        return new WP_REST_Response(['thread' => self::format_thread($thread, get_current_user_id()), 'added' => $added]);
    }

    /**
     * DELETE /threads/{id}/participants/{user_id} — the creator or a
     * moderator removes someone, or a member leaves. The epoch is bumped,
     * the remaining members get the new key (`thread.key`, user-sealed), the
     * removed user gets `thread.removed` and loses the relay subscription.
     */
    public static function remove_participant(WP_REST_Request $request)
    {
        $found = self::member_thread($request['id'], true);
        if ($found instanceof WP_Error) {
            return $found;
        }
        [$thread] = $found;
        $user = self::id_param($request['user_id'], 'user_id');
        if ($user instanceof WP_Error) {
            return $user;
        }
        $me = get_current_user_id();
        if ($user !== $me && (int) $thread->created_by !== $me && !self::can_moderate()) {
            return new WP_Error('bm_relay_forbidden', __('Only the thread creator can remove members.', 'bm-relay'), ['status' => 403]);
        }
        $epoch = BM_Relay_Store::remove_member((int) $thread->id, $user);
        if ($epoch === null) {
            return new WP_Error('bm_relay_not_member', __('That user is not a member of this thread.', 'bm-relay'), ['status' => 404]);
        }
        BM_Relay_Push::member_removed((int) $thread->id, $user);
        $body = ['thread' => (int) $thread->id, 'removed' => $user, 'epoch' => $epoch];
        return new WP_REST_Response($body);
    }

    /**
     * GET /threads/{id}/messages?after=ID&before=ID&limit=N — catch-up
     * (everything after `after`, ascending) or history (`before`).
     */
    public static function list_messages(WP_REST_Request $request)
    {
        $found = self::member_thread($request['id'], true);
        if ($found instanceof WP_Error) {
            return $found;
        }
        [$thread, $me] = $found;
        $after = self::id_param($request->get_param('after') ?? '0', 'after', true);
        if ($after instanceof WP_Error) {
            return $after;
        }
        $before = null;
        if ($request->get_param('before') !== null) {
            $before = self::id_param($request->get_param('before'), 'before');
            if ($before instanceof WP_Error) {
                return $before;
            }
        }
        $limit = self::id_param($request->get_param('limit') ?? '50', 'limit');
        if ($limit instanceof WP_Error) {
            return $limit;
        }
        if ($limit > 200) {
            return self::bad('limit', __('must be at most 200', 'bm-relay'));
        }
        $rows = BM_Relay_Store::messages((int) $thread->id, $after, $before, $limit + 1);
        $more = count($rows) > $limit;
        if ($more) {
            $rows = $before !== null ? array_slice($rows, 1) : array_slice($rows, 0, $limit);
        }
        $reactions = BM_Relay_Store::reactions(array_map(static fn($r) => (int) $r->id, $rows));
        $messages = [];
        foreach ($rows as $row) {
            $messages[] = BM_Relay_Store::format_message($row, $reactions[(int) $row->id] ?? []);
        }
        return new WP_REST_Response([
            'thread' => (int) $thread->id,
            'messages' => $messages,
            'has_more' => $more,
            'last_read_id' => $me ? (int) $me->last_read_id : 0,
            'epoch' => (int) $thread->epoch,
        ]);
    }

    /**
     * POST /threads/{id}/messages — {text, client_id?}. Stores the message,
     * then pushes `message.new`; members the relay saw online are marked
     * delivered.
     */
    public static function send_message(WP_REST_Request $request)
    {
        $found = self::member_thread($request['id']);
        if ($found instanceof WP_Error) {
            return $found;
        }
        [$thread] = $found;
        $text = self::text_param($request->get_param('text'));
        if ($text instanceof WP_Error) {
            return $text;
        }
        $client_id = $request->get_param('client_id');
        if ($client_id !== null && (!is_string($client_id) || !preg_match('/^[A-Za-z0-9_-]{1,64}$/D', $client_id))) {
            return self::bad('client_id', __('must match [A-Za-z0-9_-]{1,64}', 'bm-relay'));
        }
        $me = get_current_user_id();
        $limit = BM_Relay_Limits::check_message_rate($me);
        if ($limit instanceof WP_Error) {
            return $limit;
        }
        $id = BM_Relay_Store::insert_message((int) $thread->id, $me, $text);
        $message = BM_Relay_Store::format_message(BM_Relay_Store::message($id));
        $data = $message;
        if ($client_id !== null) {
            $data['client_id'] = $client_id;
        }
        // The event id is random (not the message id): nobody can predict it.
        $res = BM_Relay_Push::thread_event($thread, 'message.new', $data);
        $delivered = [];
        if ($res !== null) {
            $delivered = array_values(array_diff(array_map('intval', $res['online']), [$me]));
            BM_Relay_Store::mark_delivered((int) $thread->id, $delivered, $id);
        }
        return new WP_REST_Response([
            'message' => $message,
            'client_id' => $client_id,
            'pushed' => $res !== null,
            'delivered_to' => $delivered,
        ], 201);
    }

    /** PUT|PATCH /messages/{id} — {text}; the sender only; pushes `message.edit`. */
    public static function edit_message(WP_REST_Request $request)
    {
        $found = self::member_message($request['id']);
        if ($found instanceof WP_Error) {
            return $found;
        }
        [$msg, $thread] = $found;
        if ((int) $msg->sender_id !== get_current_user_id()) {
            return new WP_Error('bm_relay_forbidden', __('You can only edit your own messages.', 'bm-relay'), ['status' => 403]);
        }
        if ($msg->deleted_at !== null) {
            return new WP_Error('bm_relay_deleted', __('This message was deleted.', 'bm-relay'), ['status' => 409]);
        }
        $text = self::text_param($request->get_param('text'));
        if ($text instanceof WP_Error) {
            return $text;
        }
        BM_Relay_Store::edit_message((int) $msg->id, $text);
        $row = BM_Relay_Store::message((int) $msg->id);
        $message = BM_Relay_Store::format_message($row, BM_Relay_Store::reactions([(int) $row->id])[(int) $row->id] ?? []);
        $res = BM_Relay_Push::thread_event($thread, 'message.edit', $message);
        return new WP_REST_Response(['message' => $message, 'pushed' => $res !== null]);
    }

    /** DELETE /messages/{id} — sender or moderator; pushes `message.delete`. */
    public static function delete_message(WP_REST_Request $request)
    {
        $found = self::member_message($request['id'], true);
        if ($found instanceof WP_Error) {
            return $found;
        }
        [$msg, $thread] = $found;
        if ((int) $msg->sender_id !== get_current_user_id() && !self::can_moderate()) {
            return new WP_Error('bm_relay_forbidden', __('You can only delete your own messages.', 'bm-relay'), ['status' => 403]);
        }
        if ($msg->deleted_at === null) {
            BM_Relay_Store::delete_message((int) $msg->id);
        }
        $res = BM_Relay_Push::thread_event($thread, 'message.delete', ['id' => (int) $msg->id, 'thread' => (int) $thread->id]);
        return new WP_REST_Response(['deleted' => (int) $msg->id, 'pushed' => $res !== null]);
    }

    /**
     * POST /messages/{id}/reactions — {emoji, remove?:bool}; pushes
     * `reaction` with the message's full reaction list.
     */
    public static function react(WP_REST_Request $request)
    {
        $found = self::member_message($request['id']);
        if ($found instanceof WP_Error) {
            return $found;
        }
        [$msg, $thread] = $found;
        if ($msg->deleted_at !== null) {
            return new WP_Error('bm_relay_deleted', __('This message was deleted.', 'bm-relay'), ['status' => 409]);
        }
        $emoji = $request->get_param('emoji');
        if (
            !is_string($emoji) || $emoji === '' || mb_strlen($emoji, 'UTF-8') > 16 || strlen($emoji) > 64
            || wp_check_invalid_utf8($emoji) !== $emoji || preg_match('/[\s\x00-\x1F\x7F<>&"\']/u', $emoji)
        ) {
            return self::bad('emoji', __('must be one emoji or short code (at most 16 characters, no spaces)', 'bm-relay'));
        }
        $remove = $request->get_param('remove');
        $remove = $remove === true || $remove === 'true' || $remove === '1' || $remove === 1;
        $me = get_current_user_id();
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
        return new WP_REST_Response(['id' => (int) $msg->id, 'reactions' => $list, 'changed' => $changed, 'pushed' => $pushed]);
    }

    /**
     * POST /threads/{id}/read — {message_id?} (default: the latest); pushes
     * `read` so the sender's page can show it was seen.
     */
    public static function mark_read(WP_REST_Request $request)
    {
        $found = self::member_thread($request['id']);
        if ($found instanceof WP_Error) {
            return $found;
        }
        [$thread] = $found;
        // The newest message now, not the thread row read at the start of
        // this request (a message stored meanwhile would stay unread).
        $upto = BM_Relay_Store::last_message_id((int) $thread->id);
        if ($request->get_param('message_id') !== null) {
            $upto = self::id_param($request->get_param('message_id'), 'message_id');
            if ($upto instanceof WP_Error) {
                return $upto;
            }
            $msg = BM_Relay_Store::message($upto);
            if (!$msg || (int) $msg->thread_id !== (int) $thread->id) {
                return self::bad('message_id', __('is not a message of this thread', 'bm-relay'));
            }
        }
        $me = get_current_user_id();
        $state = BM_Relay_Store::mark_read((int) $thread->id, $me, $upto);
        $res = BM_Relay_Push::thread_event($thread, 'read', [
            'thread' => (int) $thread->id,
            'user' => $me,
            'message_id' => $state['last_read_id'],
        ]);
        return new WP_REST_Response([
            'thread' => (int) $thread->id,
            'last_read_id' => $state['last_read_id'],
            'unread' => $state['unread'],
            'pushed' => $res !== null,
        ]);
    }

    /**
     * GET /threads/{id}/presence — which members have a socket on the relay
     * now (`bm_presence`); 503 when the relay cannot be asked.
     */
    public static function presence(WP_REST_Request $request)
    {
        $found = self::member_thread($request['id']);
        if ($found instanceof WP_Error) {
            return $found;
        }
        [$thread] = $found;
        try {
            $online = bm_presence(BM_Relay_Store::members((int) $thread->id));
        } catch (BmRelayException $e) {
            return new WP_Error('bm_relay_unavailable', __('The relay cannot be reached right now.', 'bm-relay'), ['status' => 503]);
        }
        return new WP_REST_Response(['thread' => (int) $thread->id, 'online' => array_values(array_map('intval', $online))]);
    }

    /**
     * GET /presence?threads=1,2,3 — who is online in several threads at
     * once (at most 50, the user's own threads only): one question to the
     * relay for all their members, so a page refreshes its presence dots
     * with one request instead of one per thread.
     */
    public static function presence_many(WP_REST_Request $request)
    {
        $raw = $request->get_param('threads');
        if (is_string($raw)) {
            $raw = $raw === '' ? [] : explode(',', $raw);
        }
        if (!is_array($raw) || count($raw) > 50) {
            return self::bad('threads', __('must be a list of at most 50 thread ids', 'bm-relay'));
        }
        $ids = [];
        foreach (array_values($raw) as $i => $v) {
            $id = self::id_param(is_string($v) ? trim($v) : $v, "threads[$i]");
            if ($id instanceof WP_Error) {
                return $id;
            }
            $ids[] = $id;
        }
        $me = get_current_user_id();
        $mine = array_values(array_intersect(array_unique($ids), BM_Relay_Store::thread_ids_of($me)));
        $members = BM_Relay_Store::members_of($mine);
        $everyone = $members ? array_values(array_unique(array_merge(...array_values($members)))) : [];
        $online = [];
        if ($everyone) {
            try {
                $online = array_map('intval', bm_presence($everyone));
            } catch (BmRelayException $e) {
                return new WP_Error('bm_relay_unavailable', __('The relay cannot be reached right now.', 'bm-relay'), ['status' => 503]);
            }
        }
        $out = [];
        foreach ($mine as $t) {
            $out[(string) $t] = array_values(array_intersect($members[$t] ?? [], $online));
        }
        return new WP_REST_Response(['online' => (object) $out]);
    }

    /**
     * GET /users?search=text — people to start a thread with: id, display
     * name and avatar only (never e-mail or login), at most 20, filterable
     * with `bm_relay_user_search_args`. Matches the public display name
     * only (not the login nor its nicename), leaves out people whose
     * display name is still their login (a search must not enumerate
     * logins) and people the user may not message (BM_Relay_Limits).
     */
    public static function search_users(WP_REST_Request $request)
    {
        $search = $request->get_param('search');
        if (!is_string($search) || wp_check_invalid_utf8($search) !== $search) {
            return self::bad('search', __('must be a string', 'bm-relay'));
        }
        $search = trim($search);
        if (mb_strlen($search, 'UTF-8') < 2 || mb_strlen($search, 'UTF-8') > 60) {
            return self::bad('search', __('must be 2 to 60 characters', 'bm-relay'));
        }
        $args = apply_filters('bm_relay_user_search_args', [
            'search' => '*' . $search . '*',
            'search_columns' => ['display_name'],
            'number' => 40,
            'orderby' => 'display_name',
            'fields' => ['ID', 'user_login', 'display_name'],
            'exclude' => [get_current_user_id()],
        ], $search);
        $me = get_current_user_id();
        $out = [];
        foreach ((new WP_User_Query($args))->get_results() as $u) {
            $id = (int) (is_object($u) ? $u->ID : $u);
            if (is_object($u) && isset($u->user_login) && (string) $u->display_name === (string) $u->user_login) {
                continue;
            }
            if (!BM_Relay_Limits::can_message($me, $id)) {
                continue;
            }
            $out[] = self::person($id);
            if (count($out) >= 20) {
                break;
            }
        }
        return new WP_REST_Response(['users' => $out]);
    }

    /**
     * GET /moderation/threads?page=&per_page=&search= — every thread of the
     * site, newest activity first, for moderators (403 otherwise): id,
     * subject, creator, members, message count, last activity.
     */
    public static function moderation_threads(WP_REST_Request $request)
    {
        if (!self::can_moderate()) {
            return new WP_Error('bm_relay_forbidden', __('You are not allowed to moderate the chat.', 'bm-relay'), ['status' => 403]);
        }
        $page = self::id_param($request->get_param('page') ?? '1', 'page');
        if ($page instanceof WP_Error) {
            return $page;
        }
        $per = self::id_param($request->get_param('per_page') ?? '50', 'per_page');
        if ($per instanceof WP_Error) {
            return $per;
        }
        if ($per > 100) {
            return self::bad('per_page', __('must be at most 100', 'bm-relay'));
        }
        $search = $request->get_param('search');
        $search = is_string($search) ? trim($search) : '';
        $rows = BM_Relay_Store::all_threads($per + 1, ($page - 1) * $per, $search);
        $more = count($rows) > $per;
        $rows = array_slice($rows, 0, $per);
        $members = BM_Relay_Store::members_of(array_map(static fn($t) => (int) $t->id, $rows));
        $out = [];
        foreach ($rows as $t) {
            $out[] = [
                'id' => (int) $t->id,
                'subject' => (string) $t->subject,
                'created_by' => (int) $t->created_by,
                'created' => BM_Relay_Store::ts($t->created_at),
                'updated' => BM_Relay_Store::ts($t->updated_at),
                'participants' => array_map([self::class, 'person'], $members[(int) $t->id] ?? []),
                'messages' => (int) $t->message_count,
            ];
        }
        return new WP_REST_Response(['threads' => $out, 'page' => $page, 'per_page' => $per, 'has_more' => $more]);
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
     * POST /token — everything a browser needs to (re)connect: relay URL,
     * connection token, user key, and per thread its key and thread token.
     */
    public static function token(WP_REST_Request $request)
    {
        $me = get_current_user_id();
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
        return new WP_REST_Response([
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
        ]);
    }
}
