<?php

/**
 * REST API `bm/v1` for the browser chat page: the routes.
 *
 * Every route checks, in its permission callback, a logged-in user, a valid
 * `wp_rest` nonce (X-WP-Nonce header or _wpnonce parameter) and the chat
 * capability; every handler then checks thread membership (or moderation)
 * and who may act on the object, reads its arguments (BM_Relay_Params),
 * and hands clean values to BM_Relay_Service, which applies the limits,
 * stores, then pushes (a failed push never fails the request); the JSON
 * shapes are BM_Relay_Shapes. The checks run in the order they always did,
 * so a request with several faults gets the same error as before the split.
 * Routes and shapes are documented in docs/PLUGIN.md.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Route registration, permission checks and the handlers over the service.
 */
final class BM_Relay_REST
{
    /** REST namespace. */
    public const NS = 'bm/v1';

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
        register_rest_route(self::NS, "/messages/$id/pin", [
            ['methods' => 'POST, DELETE', 'callback' => [self::class, 'pin'], 'permission_callback' => $check],
        ]);
        register_rest_route(self::NS, "/threads/$id/pins", [
            ['methods' => 'GET', 'callback' => [self::class, 'pins'], 'permission_callback' => $check],
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
     * The thread of a route and the current user's membership, or an error:
     * 400 malformed id, 404 no such thread, 403 not a member — unless
     * $moderation and the user moderates (then the membership is null).
     *
     * Public: feature classes with routes of their own (attachments) check
     * the same way.
     *
     * @return array{0:object,1:object|null}|WP_Error
     */
    public static function member_thread($raw_id, bool $moderation = false)
    {
        $id = BM_Relay_Params::id($raw_id, 'id');
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
        $id = BM_Relay_Params::id($raw_id, 'id');
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
     * The JSON shape of a thread for one member, with its current key
     * (BM_Relay_Shapes::thread(); kept here for code that called it).
     *
     * @param object $thread a thread row; with unread_count/last_read_id when joined
     * @return array<string,mixed>
     */
    public static function format_thread(object $thread, int $user): array
    {
        return BM_Relay_Shapes::thread($thread, $user);
    }

    /**
     * Several threads at once (BM_Relay_Shapes::threads(); kept here for
     * code that called it).
     *
     * @param list<object> $threads
     * @return list<array<string,mixed>>
     */
    public static function format_threads(array $threads, int $user): array
    {
        return BM_Relay_Shapes::threads($threads, $user);
    }

    /** GET /threads — the current user's threads, newest activity first. */
    public static function list_threads(WP_REST_Request $request)
    {
        $paging = BM_Relay_Params::paging($request);
        if ($paging instanceof WP_Error) {
            return $paging;
        }
        [$page, $per] = $paging;
        $found = BM_Relay_Service::threads_page(get_current_user_id(), $page, $per);
        return new WP_REST_Response(['threads' => $found['threads'], 'page' => $page, 'per_page' => $per, 'has_more' => $found['has_more']]);
    }

    /** GET /threads/{id} — one thread (member or moderator). */
    public static function get_thread(WP_REST_Request $request)
    {
        $found = self::member_thread($request['id'], true);
        if ($found instanceof WP_Error) {
            return $found;
        }
        return new WP_REST_Response(['thread' => BM_Relay_Shapes::thread($found[0], get_current_user_id())]);
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
        $members = BM_Relay_Params::participants($request->get_param('participants'), $me);
        if ($members instanceof WP_Error) {
            return $members;
        }
        $limit = BM_Relay_Service::may_create_thread($me, $members);
        if ($limit instanceof WP_Error) {
            return $limit;
        }
        $subject = BM_Relay_Params::subject($request->get_param('subject'));
        if ($subject instanceof WP_Error) {
            return $subject;
        }
        $text = null;
        if ($request->get_param('text') !== null) {
            $text = BM_Relay_Params::text($request->get_param('text'));
            if ($text instanceof WP_Error) {
                return $text;
            }
            $limit = BM_Relay_Service::may_send($me);
            if ($limit instanceof WP_Error) {
                return $limit;
            }
        }
        $thread = BM_Relay_Service::create_thread($me, $members, $subject, $text);
        return new WP_REST_Response(['thread' => BM_Relay_Shapes::thread($thread, $me)], 201);
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
        $user = BM_Relay_Params::id($request->get_param('user_id'), 'user_id');
        if ($user instanceof WP_Error) {
            return $user;
        }
        if (!get_userdata($user)) {
            return BM_Relay_Params::bad('user_id', __('is not a user of this site', 'bm-relay'));
        }
        $done = BM_Relay_Service::add_participant($thread, $user, get_current_user_id());
        if ($done instanceof WP_Error) {
            return $done;
        }
        return new WP_REST_Response(['thread' => BM_Relay_Shapes::thread($done['thread'], get_current_user_id()), 'added' => $done['added']]);
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
        $user = BM_Relay_Params::id($request['user_id'], 'user_id');
        if ($user instanceof WP_Error) {
            return $user;
        }
        $me = get_current_user_id();
        if ($user !== $me && (int) $thread->created_by !== $me && !self::can_moderate()) {
            return new WP_Error('bm_relay_forbidden', __('Only the thread creator can remove members.', 'bm-relay'), ['status' => 403]);
        }
        $epoch = BM_Relay_Service::remove_participant($thread, $user);
        if ($epoch instanceof WP_Error) {
            return $epoch;
        }
        return new WP_REST_Response(['thread' => (int) $thread->id, 'removed' => $user, 'epoch' => $epoch]);
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
        $after = BM_Relay_Params::id($request->get_param('after') ?? '0', 'after', true);
        if ($after instanceof WP_Error) {
            return $after;
        }
        $before = null;
        if ($request->get_param('before') !== null) {
            $before = BM_Relay_Params::id($request->get_param('before'), 'before');
            if ($before instanceof WP_Error) {
                return $before;
            }
        }
        $limit = BM_Relay_Params::id($request->get_param('limit') ?? '50', 'limit');
        if ($limit instanceof WP_Error) {
            return $limit;
        }
        if ($limit > 200) {
            return BM_Relay_Params::bad('limit', __('must be at most 200', 'bm-relay'));
        }
        $page = BM_Relay_Service::messages_page($thread, $after, $before, $limit);
        return new WP_REST_Response([
            'thread' => (int) $thread->id,
            'messages' => $page['messages'],
            'has_more' => $page['has_more'],
            'last_read_id' => $me ? (int) $me->last_read_id : 0,
            'epoch' => (int) $thread->epoch,
        ]);
    }

    /**
     * POST /threads/{id}/messages — {text, client_id?, attachments?}. Stores the message,
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
        // Attachments (class-bm-relay-attachments.php): with files, the text may be empty.
        $files = BM_Relay_Attachments::param($request->get_param('attachments'), $thread, get_current_user_id());
        if ($files instanceof WP_Error) {
            return $files;
        }
        $raw = $request->get_param('text');
        $text = $files && ($raw === null || (is_string($raw) && trim($raw) === '')) ? '' : BM_Relay_Params::text($raw);
        if ($text instanceof WP_Error) {
            return $text;
        }
        $client_id = BM_Relay_Params::client_id($request->get_param('client_id'));
        if ($client_id instanceof WP_Error) {
            return $client_id;
        }
        $me = get_current_user_id();
        $limit = BM_Relay_Service::may_send($me);
        if ($limit instanceof WP_Error) {
            return $limit;
        }
        $sent = BM_Relay_Service::send_message($thread, $me, $text, $client_id, $files);
        return new WP_REST_Response([
            'message' => $sent['message'],
            'client_id' => $client_id,
            'pushed' => $sent['pushed'],
            'delivered_to' => $sent['delivered_to'],
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
            return self::deleted();
        }
        $text = BM_Relay_Params::text($request->get_param('text'));
        if ($text instanceof WP_Error) {
            return $text;
        }
        return new WP_REST_Response(BM_Relay_Service::edit_message($msg, $thread, $text));
    }

    /** The 409 of an action on a deleted message. */
    private static function deleted(): WP_Error
    {
        return new WP_Error('bm_relay_deleted', __('This message was deleted.', 'bm-relay'), ['status' => 409]);
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
        $pushed = BM_Relay_Service::delete_message($msg, $thread);
        return new WP_REST_Response(['deleted' => (int) $msg->id, 'pushed' => $pushed]);
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
            return self::deleted();
        }
        $emoji = BM_Relay_Params::emoji($request->get_param('emoji'));
        if ($emoji instanceof WP_Error) {
            return $emoji;
        }
        $remove = BM_Relay_Params::flag($request->get_param('remove'));
        $done = BM_Relay_Service::react($msg, $thread, get_current_user_id(), $emoji, $remove);
        if ($done instanceof WP_Error) {
            return $done;
        }
        return new WP_REST_Response($done);
    }

    /**
     * POST|DELETE /messages/{id}/pin — a member (or a moderator) pins or
     * unpins a message; pushes `message.pin` / `message.unpin` with the
     * thread's pin list. Pinning a deleted message is a 409; more than
     * the thread's pin limit a 403 `bm_relay_too_many_pins`; repeating
     * either is no change (`changed: false`, nothing pushed).
     */
    public static function pin(WP_REST_Request $request)
    {
        $found = self::member_message($request['id'], true);
        if ($found instanceof WP_Error) {
            return $found;
        }
        [$msg, $thread] = $found;
        $on = $request->get_method() !== 'DELETE';
        if ($on && $msg->deleted_at !== null) {
            return self::deleted();
        }
        $done = BM_Relay_Service::pin($msg, $thread, get_current_user_id(), $on);
        if ($done instanceof WP_Error) {
            return $done;
        }
        return new WP_REST_Response($done);
    }

    /** GET /threads/{id}/pins — the pinned messages, in pin order (member or moderator). */
    public static function pins(WP_REST_Request $request)
    {
        $found = self::member_thread($request['id'], true);
        if ($found instanceof WP_Error) {
            return $found;
        }
        return new WP_REST_Response(['thread' => (int) $found[0]->id, 'pinned' => BM_Relay_Service::pinned_messages($found[0])]);
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
        $upto = null;
        if ($request->get_param('message_id') !== null) {
            $upto = BM_Relay_Params::id($request->get_param('message_id'), 'message_id');
            if ($upto instanceof WP_Error) {
                return $upto;
            }
            $msg = BM_Relay_Store::message($upto);
            if (!$msg || (int) $msg->thread_id !== (int) $thread->id) {
                return BM_Relay_Params::bad('message_id', __('is not a message of this thread', 'bm-relay'));
            }
        }
        return new WP_REST_Response(BM_Relay_Service::mark_read($thread, get_current_user_id(), $upto));
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
        $online = BM_Relay_Service::online_members($thread);
        if ($online instanceof WP_Error) {
            return $online;
        }
        return new WP_REST_Response(['thread' => (int) $thread->id, 'online' => $online]);
    }

    /**
     * GET /presence?threads=1,2,3 — who is online in several threads at
     * once (at most 50, the user's own threads only): one question to the
     * relay for all their members, so a page refreshes its presence dots
     * with one request instead of one per thread.
     */
    public static function presence_many(WP_REST_Request $request)
    {
        $ids = BM_Relay_Params::thread_ids($request->get_param('threads'));
        if ($ids instanceof WP_Error) {
            return $ids;
        }
        $online = BM_Relay_Service::online_in(get_current_user_id(), $ids);
        if ($online instanceof WP_Error) {
            return $online;
        }
        return new WP_REST_Response(['online' => (object) $online]);
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
        $search = BM_Relay_Params::search($request->get_param('search'));
        if ($search instanceof WP_Error) {
            return $search;
        }
        return new WP_REST_Response(['users' => BM_Relay_Service::find_people(get_current_user_id(), $search)]);
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
        $paging = BM_Relay_Params::paging($request);
        if ($paging instanceof WP_Error) {
            return $paging;
        }
        [$page, $per] = $paging;
        $search = $request->get_param('search');
        $search = is_string($search) ? trim($search) : '';
        $found = BM_Relay_Service::all_threads_page($page, $per, $search);
        return new WP_REST_Response(['threads' => $found['threads'], 'page' => $page, 'per_page' => $per, 'has_more' => $found['has_more']]);
    }

    /**
     * POST /token — everything a browser needs to (re)connect: relay URL,
     * connection token, user key, and per thread its key and thread token.
     */
    public static function token(WP_REST_Request $request)
    {
        $bundle = BM_Relay_Service::token(get_current_user_id());
        if ($bundle instanceof WP_Error) {
            return $bundle;
        }
        return new WP_REST_Response($bundle);
    }
}
