<?php

/**
 * Voice and video calls between the two members of a 1:1 thread
 * (docs/CALLS.md).
 *
 * WordPress keeps the call log (who called whom, when, how long, missed or
 * declined) in `bmr_calls` and pushes the invite and every change of state
 * as numbered thread events (`call.invite`, `call.update`), sealed with the
 * thread key like messages: a callee who reloads finds the ringing call in
 * GET /calls/active, and a call nobody answered is recorded as missed. The
 * media never touch WordPress nor the relay (WebRTC, peer to peer or
 * through the site's TURN server); the SDP and ICE candidates travel as
 * the pages' own `pub` hints, sealed with the thread key, and are stored
 * nowhere. TURN credentials are minted per user and expire (coturn's
 * `use-auth-secret`): the page never holds a static password.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Call routes, the call log, TURN credentials, their settings, and the
 * call log's export, erasure and retention.
 */
final class BM_Relay_Calls
{
    /** The states a call ends in (a call in any other is ringing or active). */
    public const ENDED = ['ended', 'declined', 'missed'];

    /** Longest tab id a page may send (it names one of the user's tabs, no more). */
    private const TAB_MAX = 32;

    /** Items per page of the export. */
    private const PAGE = 100;

    /** Hooks the routes, the settings, the privacy tools and retention in. */
    public static function register(): void
    {
        add_action('rest_api_init', [self::class, 'register_routes']);
        add_action('admin_init', [self::class, 'register_settings']);
        add_action(BM_Relay_Retention::HOOK, [self::class, 'retention']);
        add_filter('wp_privacy_personal_data_exporters', static function (array $exporters): array {
            $exporters['bm-relay-calls'] = [
                'exporter_friendly_name' => __('Chat calls (bm-relay)', 'bm-relay'),
                'callback' => [self::class, 'export'],
            ];
            return $exporters;
        });
        add_filter('wp_privacy_personal_data_erasers', static function (array $erasers): array {
            $erasers['bm-relay-calls'] = [
                'eraser_friendly_name' => __('Chat calls (bm-relay)', 'bm-relay'),
                'callback' => [self::class, 'erase'],
            ];
            return $erasers;
        });
    }

    /** Registers the call routes (same permission callback as every bm/v1 route). */
    public static function register_routes(): void
    {
        $check = [BM_Relay_REST::class, 'check'];
        $id = '(?P<id>\d+)';
        register_rest_route(BM_Relay_REST::NS, "/threads/$id/calls", [
            ['methods' => 'GET', 'callback' => [self::class, 'list_calls'], 'permission_callback' => $check],
            ['methods' => 'POST', 'callback' => [self::class, 'invite'], 'permission_callback' => $check],
        ]);
        register_rest_route(BM_Relay_REST::NS, '/calls/active', [
            ['methods' => 'GET', 'callback' => [self::class, 'active'], 'permission_callback' => $check],
        ]);
        register_rest_route(BM_Relay_REST::NS, '/calls/ice', [
            ['methods' => 'GET', 'callback' => [self::class, 'ice'], 'permission_callback' => $check],
        ]);
        register_rest_route(BM_Relay_REST::NS, "/calls/$id/(?P<action>accept|decline|hangup)", [
            ['methods' => 'POST', 'callback' => [self::class, 'act'], 'permission_callback' => $check],
        ]);
    }

    /** Table of the call log on this site's prefix (schema 8). */
    public static function table(): string
    {
        return BM_Relay_Schema::tables()['calls'];
    }

    /**
     * How long a call rings before it counts as missed (seconds, filter
     * `bm_relay_call_ring_seconds`, default 45): the caller's page hangs
     * up after it, and WordPress records a call still ringing past it as
     * missed whoever asks next (a caller who closed the tab included).
     */
    public static function ring_seconds(): int
    {
        return max(0, (int) apply_filters('bm_relay_call_ring_seconds', 45));
    }

    // ---- routes ------------------------------------------------------------

    /**
     * POST /threads/{id}/calls — {video?: bool, tab?: string}: the caller
     * invites the other member of a 1:1 thread. Stores a ringing call,
     * pushes `call.invite`, and says whether the callee is online: from
     * the push's `online` answer (sync mode), else from bm_presence() (the
     * extension's async mode answers nothing). An offline callee's call
     * is recorded as missed at once (201 with `online: false`); null when
     * the relay could not be asked.
     */
    public static function invite(WP_REST_Request $request)
    {
        $found = self::thread_of($request['id']);
        if ($found instanceof WP_Error) {
            return $found;
        }
        $me = get_current_user_id();
        $members = BM_Relay_Store::members((int) $found->id);
        $others = array_values(array_diff($members, [$me]));
        if (count($members) !== 2 || count($others) !== 1) {
            return new WP_Error('bm_relay_call_not_direct', __('Calls are possible in a conversation of two people only.', 'bm-relay'), ['status' => 400]);
        }
        $tab = self::tab($request->get_param('tab'));
        if ($tab instanceof WP_Error) {
            return $tab;
        }
        $callee = $others[0];
        self::expire();
        $busy = self::open_call((int) $found->id);
        if ($busy && $busy->state === 'ringing') {
            return new WP_Error('bm_relay_call_busy', __('A call is already ringing in this conversation.', 'bm-relay'), ['status' => 409, 'call' => self::shape($busy)]);
        }
        if ($busy) {
            // A call still "active" when a new one starts was left open by
            // a page that went away without hanging up: it is over.
            self::finish($busy, 'ended', $me);
        }
        global $wpdb;
        $wpdb->insert(self::table(), [
            'thread_id' => (int) $found->id,
            'caller_id' => $me,
            'callee_id' => $callee,
            'video' => rest_sanitize_boolean($request->get_param('video')) ? 1 : 0,
            'state' => 'ringing',
            'created_at' => BM_Relay_Store::now(),
        ]);
        $call = self::call((int) $wpdb->insert_id);
        if (!$call) {
            return new WP_Error('bm_relay_db', __('The call could not be stored.', 'bm-relay'), ['status' => 500]);
        }
        $res = BM_Relay_Push::thread_event($found, 'call.invite', ['call' => self::shape($call), 'tab' => $tab]);
        $online = self::callee_online($res, $callee);
        if ($online === false) {
            $call = self::finish($call, 'missed', $me);
        }
        return new WP_REST_Response(['call' => self::shape($call), 'online' => $online, 'pushed' => $res !== null || BM_Relay_Push::$last_error === null], 201);
    }

    /**
     * POST /calls/{id}/accept|decline|hangup — {tab?}: the callee answers
     * (on one of their tabs: the pushed `call.update` names it, so their
     * other tabs stop ringing) or declines a ringing call; either party
     * hangs up (a ringing call hung up by the caller is missed, by the
     * callee declined; an active one ends, its duration recorded). Acting
     * on a call that is over is 409 `bm_relay_call_over` for accept and
     * decline and no change for hang-up (both sides may hang up at once).
     */
    public static function act(WP_REST_Request $request)
    {
        $id = BM_Relay_Params::id($request['id'], 'id');
        if ($id instanceof WP_Error) {
            return $id;
        }
        self::expire();
        $call = self::call($id);
        if (!$call) {
            return new WP_Error('bm_relay_no_call', __('No such call.', 'bm-relay'), ['status' => 404]);
        }
        $me = get_current_user_id();
        $party = in_array($me, [(int) $call->caller_id, (int) $call->callee_id], true);
        if (!$party || !BM_Relay_Store::membership((int) $call->thread_id, $me)) {
            return new WP_Error('bm_relay_not_member', __('You are not a member of this thread.', 'bm-relay'), ['status' => 403]);
        }
        $tab = self::tab($request->get_param('tab'));
        if ($tab instanceof WP_Error) {
            return $tab;
        }
        $action = (string) $request['action'];
        $callee = $me === (int) $call->callee_id;
        if ($action !== 'hangup' && !$callee) {
            return new WP_Error('bm_relay_not_callee', __('Only the person called can answer or decline.', 'bm-relay'), ['status' => 403]);
        }
        if (in_array($call->state, self::ENDED, true)) {
            if ($action === 'hangup') {
                return new WP_REST_Response(['call' => self::shape($call), 'changed' => false]);
            }
            return new WP_Error('bm_relay_call_over', __('This call is over.', 'bm-relay'), ['status' => 409, 'call' => self::shape($call)]);
        }
        if ($action !== 'hangup' && $call->state !== 'ringing') {
            // Answered (on another tab): it is hung up now, not declined.
            return new WP_Error('bm_relay_call_over', __('This call was answered already.', 'bm-relay'), ['status' => 409, 'call' => self::shape($call)]);
        }
        if ($action === 'accept') {
            $call = self::move($call, 'active', $me, $tab);
        } elseif ($action === 'decline' || $call->state === 'ringing') {
            $call = self::finish($call, $callee ? 'declined' : 'missed', $me, $tab);
        } else {
            $call = self::finish($call, 'ended', $me, $tab);
        }
        if (!$call) {
            // Another request changed the call between our read and write.
            return new WP_Error('bm_relay_call_over', __('This call is over.', 'bm-relay'), ['status' => 409]);
        }
        return new WP_REST_Response(['call' => self::shape($call), 'changed' => true]);
    }

    /** GET /threads/{id}/calls?limit= — the thread's call log, newest first (at most 100). */
    public static function list_calls(WP_REST_Request $request)
    {
        $found = self::thread_of($request['id']);
        if ($found instanceof WP_Error) {
            return $found;
        }
        self::expire();
        $limit = max(1, min(100, (int) ($request->get_param('limit') ?? 20)));
        global $wpdb;
        $rows = $wpdb->get_results($wpdb->prepare(
            'SELECT * FROM ' . self::table() . ' WHERE thread_id = %d ORDER BY id DESC LIMIT %d',
            (int) $found->id,
            $limit
        ));
        return new WP_REST_Response(['thread' => (int) $found->id, 'calls' => array_map([self::class, 'shape'], $rows)]);
    }

    /**
     * GET /calls/active — the current user's ringing or active calls: a
     * page opened (or reloaded) while a call rings shows its banner.
     */
    public static function active(WP_REST_Request $request)
    {
        self::expire();
        global $wpdb;
        $me = get_current_user_id();
        $rows = $wpdb->get_results($wpdb->prepare(
            'SELECT * FROM ' . self::table() . " WHERE state IN ('ringing','active') AND (callee_id = %d OR caller_id = %d) ORDER BY id DESC LIMIT 10",
            $me,
            $me
        ));
        return new WP_REST_Response(['calls' => array_map([self::class, 'shape'], $rows), 'ring_seconds' => self::ring_seconds()]);
    }

    /**
     * GET /calls/ice — the RTCPeerConnection's ICE servers: the STUN URLs
     * of the settings and, with a TURN secret set, the TURN URLs with
     * credentials minted for this user (turn_credentials()), plus the
     * transport policy (`relay` when the site sends media through TURN
     * only, so the two parties never learn each other's addresses).
     */
    public static function ice(WP_REST_Request $request)
    {
        $servers = [];
        $stun = self::urls((string) get_option('bmr_stun_urls', ''), ['stun', 'stuns']);
        if ($stun) {
            $servers[] = ['urls' => $stun];
        }
        $turn = self::urls((string) get_option('bmr_turn_urls', ''), ['turn', 'turns']);
        $cred = self::turn_credentials(get_current_user_id());
        $expires = null;
        if ($turn && $cred) {
            $servers[] = ['urls' => $turn, 'username' => $cred['username'], 'credential' => $cred['credential']];
            $expires = $cred['expires'];
        }
        $relay_only = $turn && $cred && (bool) get_option('bmr_turn_only', false);
        return new WP_REST_Response([
            'ice_servers' => $servers,
            'ice_transport_policy' => $relay_only ? 'relay' : 'all',
            'expires' => $expires,
        ]);
    }

    /**
     * The chat page's call strings (merged into the shortcode's; English
     * defaults in assets/chat/strings.js).
     *
     * @return array<string,string>
     */
    public static function strings(): array
    {
        return [
            'callVoice' => __('Voice call', 'bm-relay'),
            'callVideo' => __('Video call', 'bm-relay'),
            /* translators: %s: a person's name */
            'callIncoming' => __('%s is calling you', 'bm-relay'),
            /* translators: %s: a person's name */
            'callIncomingVideo' => __('%s is calling you (video)', 'bm-relay'),
            'callAccept' => __('Answer', 'bm-relay'),
            'callDecline' => __('Decline', 'bm-relay'),
            'callPanel' => __('Call', 'bm-relay'),
            'callDuration' => __('Call duration', 'bm-relay'),
            /* translators: %s: a person's name */
            'callCalling' => __('Calling %s…', 'bm-relay'),
            'callConnecting' => __('Connecting…', 'bm-relay'),
            /* translators: %s: a person's name */
            'callWith' => __('In a call with %s', 'bm-relay'),
            'callMute' => __('Mute', 'bm-relay'),
            'callCamera' => __('Camera off', 'bm-relay'),
            'callHangup' => __('Hang up', 'bm-relay'),
            'callDenied' => __('The call needs your microphone: allow it in your browser (the icon in the address bar), then try again.', 'bm-relay'),
            'callDeniedVideo' => __('A video call needs your microphone and camera: allow them in your browser (the icon in the address bar), then try again.', 'bm-relay'),
            /* translators: %s: the browser's error message */
            'callNoDevice' => __('No microphone or camera could be used: %s', 'bm-relay'),
            /* translators: %s: a person's name */
            'callOffline' => __('%s is not online right now; they will see a missed call.', 'bm-relay'),
            /* translators: %s: a person's name */
            'callNoAnswer' => __('%s did not answer.', 'bm-relay'),
            /* translators: %s: a person's name */
            'callDeclined' => __('%s declined the call.', 'bm-relay'),
            /* translators: %s: the call's duration, e.g. 1:05 */
            'callEnded' => __('Call ended (%s).', 'bm-relay'),
            'callCancelled' => __('Call cancelled.', 'bm-relay'),
            'callElsewhere' => __('The call was answered on another tab.', 'bm-relay'),
            'callOver' => __('This call is over.', 'bm-relay'),
            'callFailed' => __('The call could not connect.', 'bm-relay'),
            'callLog' => __('Calls', 'bm-relay'),
            'callLogYou' => __('You called', 'bm-relay'),
            /* translators: %s: a person's name */
            'callLogThem' => __('%s called', 'bm-relay'),
            'callLogVoice' => __('voice', 'bm-relay'),
            'callLogVideo' => __('video', 'bm-relay'),
            /* translators: 1: who called ("You called", "Alice called"), 2: voice or video, 3: date and time, 4: duration, "missed" or "declined" */
            'callLogItem' => __('%1$s (%2$s), %3$s: %4$s', 'bm-relay'),
            'callLogMissed' => __('missed', 'bm-relay'),
            'callLogDeclined' => __('declined', 'bm-relay'),
            'callLogNow' => __('now', 'bm-relay'),
        ];
    }

    // ---- TURN --------------------------------------------------------------

    /** The TURN shared secret: the constant BM_RELAY_TURN_SECRET, else the option; '' when none. */
    public static function turn_secret(): string
    {
        if (defined('BM_RELAY_TURN_SECRET')) {
            return (string) constant('BM_RELAY_TURN_SECRET');
        }
        return (string) get_option('bmr_turn_secret', '');
    }

    /** Lifetime of minted TURN credentials (seconds; option `bmr_turn_ttl`, 60 … 86400, default 3600). */
    public static function turn_ttl(): int
    {
        return max(60, min(86400, (int) get_option('bmr_turn_ttl', 3600)));
    }

    /**
     * TURN credentials for a user in coturn's `use-auth-secret` scheme
     * (the "TURN REST API" draft): username `expiry:user`, password
     * base64(HMAC-SHA1(secret, username)). coturn recomputes the password
     * from its `static-auth-secret` and refuses an expiry in the past, so
     * a credential copied from a page stops working after turn_ttl(); the
     * secret itself never leaves WordPress. `user` is the relay's name for
     * the user (a pseudonym in protocol 2), so the TURN server's log does
     * not name WordPress users either. Null without a secret.
     *
     * @return array{username:string,credential:string,expires:int}|null
     */
    public static function turn_credentials(int $user, ?int $now = null): ?array
    {
        $secret = self::turn_secret();
        if ($secret === '') {
            return null;
        }
        $expires = ($now ?? time()) + self::turn_ttl();
        $username = $expires . ':' . BM_Relay_Ids::user($user);
        // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_encode -- the scheme's encoding
        $credential = base64_encode(hash_hmac('sha1', $username, $secret, true));
        return ['username' => $username, 'credential' => $credential, 'expires' => $expires];
    }

    /**
     * URLs of one kind from a setting (comma, space or newline separated),
     * keeping those with an allowed scheme only.
     *
     * @param list<string> $schemes
     * @return list<string>
     */
    public static function urls(string $text, array $schemes): array
    {
        $out = [];
        foreach (preg_split('/[\s,]+/', trim($text)) ?: [] as $u) {
            $scheme = strtolower((string) strstr($u, ':', true));
            if ($u !== '' && in_array($scheme, $schemes, true) && preg_match('/^[a-z]+:[A-Za-z0-9.\-\[\]:?=&_]+$/', $u)) {
                $out[] = $u;
            }
        }
        return array_values(array_unique($out));
    }

    /** Settings → bm-relay: the STUN/TURN fields (their own section on the same page and option group). */
    public static function register_settings(): void
    {
        $group = BM_Relay_Admin::SLUG;
        $stun = static fn($v): string => implode("\n", self::urls((string) $v, ['stun', 'stuns']));
        $turn = static fn($v): string => implode("\n", self::urls((string) $v, ['turn', 'turns']));
        register_setting($group, 'bmr_stun_urls', ['type' => 'string', 'sanitize_callback' => $stun]);
        register_setting($group, 'bmr_turn_urls', ['type' => 'string', 'sanitize_callback' => $turn]);
        register_setting($group, 'bmr_turn_secret', ['type' => 'string', 'sanitize_callback' => static function ($v): string {
            // An empty field keeps the secret (the page never prints it).
            $v = trim((string) $v);
            return $v === '' ? (string) get_option('bmr_turn_secret', '') : $v;
        }]);
        register_setting($group, 'bmr_turn_ttl', ['type' => 'integer', 'sanitize_callback' => static fn($v) => max(60, min(86400, (int) $v))]);
        register_setting($group, 'bmr_turn_only', ['type' => 'boolean', 'sanitize_callback' => static fn($v) => $v ? 1 : 0]);
        add_settings_section('bmr_calls', __('Calls (STUN/TURN)', 'bm-relay'), static function (): void {
            $about = __('Voice and video calls connect the two browsers directly; behind NAT they need a STUN server, behind strict firewalls a TURN server (coturn).', 'bm-relay')
                . ' ' . __('WordPress mints each user a TURN password that expires; the shared secret never reaches a page.', 'bm-relay');
            echo '<p>' . esc_html($about) . '</p>';
        }, $group);
        $text = static function (array $a): void {
            printf(
                '<textarea class="large-text" rows="2" id="%1$s" name="%1$s">%2$s</textarea>',
                esc_attr($a['name']),
                esc_textarea((string) get_option($a['name'], ''))
            );
        };
        add_settings_field('bmr_stun_urls', __('STUN URLs (e.g. stun:turn.example.com:3478)', 'bm-relay'), $text, $group, 'bmr_calls', ['name' => 'bmr_stun_urls', 'label_for' => 'bmr_stun_urls']);
        $turn_label = __('TURN URLs (e.g. turn:turn.example.com:3478?transport=udp)', 'bm-relay');
        add_settings_field('bmr_turn_urls', $turn_label, $text, $group, 'bmr_calls', ['name' => 'bmr_turn_urls', 'label_for' => 'bmr_turn_urls']);
        add_settings_field('bmr_turn_secret', __('TURN shared secret (coturn static-auth-secret)', 'bm-relay'), static function (): void {
            printf(
                '<input type="password" class="regular-text" id="bmr_turn_secret" name="bmr_turn_secret" value="" autocomplete="off" placeholder="%s">',
                esc_attr(self::turn_secret() !== '' ? __('set (leave empty to keep)', 'bm-relay') : __('not set', 'bm-relay'))
            );
        }, $group, 'bmr_calls', ['label_for' => 'bmr_turn_secret']);
        add_settings_field('bmr_turn_ttl', __('TURN password lifetime (seconds)', 'bm-relay'), static function (): void {
            printf('<input type="number" min="60" max="86400" id="bmr_turn_ttl" name="bmr_turn_ttl" value="%d">', self::turn_ttl());
        }, $group, 'bmr_calls', ['label_for' => 'bmr_turn_ttl']);
        add_settings_field('bmr_turn_only', __('Media through TURN only (the two parties never see each other\'s IP address)', 'bm-relay'), static function (): void {
            printf('<input type="checkbox" id="bmr_turn_only" name="bmr_turn_only" value="1"%s>', checked((bool) get_option('bmr_turn_only', false), true, false));
        }, $group, 'bmr_calls', ['label_for' => 'bmr_turn_only']);
    }

    // ---- the call log -----------------------------------------------------

    /**
     * The thread of a route for one of its members (calls are between the
     * members themselves: a moderator reads the log as a member only).
     *
     * @return object|WP_Error
     */
    private static function thread_of($raw)
    {
        $id = BM_Relay_Params::id($raw, 'id');
        if ($id instanceof WP_Error) {
            return $id;
        }
        $thread = BM_Relay_Store::thread($id);
        if (!$thread) {
            return new WP_Error('bm_relay_no_thread', __('No such thread.', 'bm-relay'), ['status' => 404]);
        }
        if (!BM_Relay_Store::membership($id, get_current_user_id())) {
            return new WP_Error('bm_relay_not_member', __('You are not a member of this thread.', 'bm-relay'), ['status' => 403]);
        }
        return $thread;
    }

    /**
     * A page's tab id (letters, digits, `-`, `_`; at most TAB_MAX), '' when
     * none: it only tells the user's own tabs which one answered.
     *
     * @return string|WP_Error
     */
    private static function tab($raw)
    {
        if ($raw === null || $raw === '') {
            return '';
        }
        if (!is_string($raw) || strlen($raw) > self::TAB_MAX || !preg_match('/^[A-Za-z0-9_-]+$/', $raw)) {
            return new WP_Error('bm_relay_bad_param', __('Invalid tab id.', 'bm-relay'), ['status' => 400]);
        }
        return $raw;
    }

    /** A call row, or null. */
    public static function call(int $id): ?object
    {
        global $wpdb;
        $row = $wpdb->get_row($wpdb->prepare('SELECT * FROM ' . self::table() . ' WHERE id = %d', $id));
        return $row ?: null;
    }

    /** The thread's ringing or active call, or null. */
    private static function open_call(int $thread): ?object
    {
        global $wpdb;
        $row = $wpdb->get_row($wpdb->prepare(
            'SELECT * FROM ' . self::table() . " WHERE thread_id = %d AND state IN ('ringing','active') ORDER BY id DESC LIMIT 1",
            $thread
        ));
        return $row ?: null;
    }

    /**
     * The JSON shape of a call (REST answers and pushed events).
     *
     * @return array<string,mixed>
     */
    public static function shape(object $c): array
    {
        $answered = BM_Relay_Store::ts($c->answered_at);
        $ended = BM_Relay_Store::ts($c->ended_at);
        return [
            'id' => (int) $c->id,
            'thread' => (int) $c->thread_id,
            'caller' => (int) $c->caller_id,
            'callee' => (int) $c->callee_id,
            'video' => (bool) (int) $c->video,
            'state' => (string) $c->state,
            // Unix seconds, as every shape of the plugin.
            'created' => BM_Relay_Store::ts($c->created_at),
            'answered' => $answered,
            'ended' => $ended,
            'ended_by' => (int) $c->ended_by ?: null,
            'duration' => $answered !== null && $ended !== null ? max(0, $ended - $answered) : null,
        ];
    }

    /** Answers a ringing call: active, answered now (pushed with the answering tab). */
    private static function move(object $call, string $state, int $by, string $tab = ''): ?object
    {
        global $wpdb;
        $n = $wpdb->query($wpdb->prepare(
            'UPDATE ' . self::table() . " SET state = %s, answered_at = %s WHERE id = %d AND state = 'ringing'",
            $state,
            BM_Relay_Store::now(),
            (int) $call->id
        ));
        return $n ? self::pushed(self::call((int) $call->id), $by, $tab) : null;
    }

    /**
     * Ends a call in `$state` (ended, declined, missed) now, unless it is
     * over already (one UPDATE decides between two racing requests), and
     * pushes the change.
     */
    private static function finish(object $call, string $state, int $by, string $tab = ''): ?object
    {
        global $wpdb;
        $n = $wpdb->query($wpdb->prepare(
            'UPDATE ' . self::table() . " SET state = %s, ended_at = %s, ended_by = %d WHERE id = %d AND state IN ('ringing','active')",
            $state,
            BM_Relay_Store::now(),
            $by,
            (int) $call->id
        ));
        return $n ? self::pushed(self::call((int) $call->id), $by, $tab) : null;
    }

    /** Pushes `call.update` (the call's new shape) to the thread; returns the call. */
    private static function pushed(?object $call, int $by, string $tab): ?object
    {
        if ($call) {
            $thread = BM_Relay_Store::thread((int) $call->thread_id);
            if ($thread) {
                BM_Relay_Push::thread_event($thread, 'call.update', ['call' => self::shape($call), 'by' => $by, 'tab' => $tab]);
            }
        }
        return $call;
    }

    /**
     * Records calls that rang longer than ring_seconds() as missed (ended
     * when their ringing ran out) and pushes each change. Run by every
     * call route, so a call whose caller went away without hanging up is
     * missed as soon as anyone looks; at most 20 a request (the rest the
     * next time).
     */
    public static function expire(): int
    {
        global $wpdb;
        $ring = self::ring_seconds();
        $cut = gmdate('Y-m-d H:i:s', time() - $ring);
        $rows = $wpdb->get_results($wpdb->prepare(
            'SELECT * FROM ' . self::table() . " WHERE state = 'ringing' AND created_at <= %s ORDER BY id LIMIT 20",
            $cut
        ));
        $n = 0;
        foreach ($rows as $c) {
            $done = $wpdb->query($wpdb->prepare(
                'UPDATE ' . self::table() . " SET state = 'missed', ended_at = DATE_ADD(created_at, INTERVAL %d SECOND) WHERE id = %d AND state = 'ringing'",
                $ring,
                (int) $c->id
            ));
            if ($done) {
                $n++;
                self::pushed(self::call((int) $c->id), 0, '');
            }
        }
        return $n;
    }

    /**
     * Whether the callee is online: the sync push's `online` answer, else
     * (async mode, or a failed push) bm_presence() for the callee alone;
     * null when the relay cannot tell.
     *
     * @param array{online:list<int>}|null $res
     */
    private static function callee_online(?array $res, int $callee): ?bool
    {
        if ($res !== null && isset($res['online'])) {
            return in_array($callee, array_map('intval', (array) $res['online']), true);
        }
        try {
            return in_array($callee, array_map('intval', (array) bm_presence([$callee])), true);
        } catch (BmRelayException $e) {
            return null;
        }
    }

    // ---- privacy and retention --------------------------------------------

    /**
     * Exporter: one item per call the user made or received, oldest first,
     * PAGE a page.
     *
     * @return array{data:list<array>,done:bool}
     */
    public static function export(string $email, int $page = 1): array
    {
        global $wpdb;
        $user = get_user_by('email', $email);
        if (!$user) {
            return ['data' => [], 'done' => true];
        }
        $uid = (int) $user->ID;
        $rows = $wpdb->get_results($wpdb->prepare(
            'SELECT * FROM ' . self::table() . ' WHERE caller_id = %d OR callee_id = %d ORDER BY id LIMIT %d OFFSET %d',
            $uid,
            $uid,
            self::PAGE,
            (max(1, $page) - 1) * self::PAGE
        ));
        $data = [];
        foreach ($rows as $r) {
            $s = self::shape($r);
            $data[] = [
                'group_id' => 'bm-relay-calls',
                'group_label' => __('Chat calls', 'bm-relay'),
                'item_id' => 'bm-relay-call-' . (int) $r->id,
                'data' => [
                    ['name' => __('Thread', 'bm-relay'), 'value' => (int) $r->thread_id],
                    ['name' => __('Direction', 'bm-relay'), 'value' => (int) $r->caller_id === $uid ? __('outgoing', 'bm-relay') : __('incoming', 'bm-relay')],
                    ['name' => __('Kind', 'bm-relay'), 'value' => $s['video'] ? __('video', 'bm-relay') : __('voice', 'bm-relay')],
                    ['name' => __('Outcome', 'bm-relay'), 'value' => $s['state']],
                    ['name' => __('Started (UTC)', 'bm-relay'), 'value' => $r->created_at],
                    ['name' => __('Duration (seconds)', 'bm-relay'), 'value' => $s['duration'] ?? 0],
                ],
            ];
        }
        return ['data' => $data, 'done' => count($rows) < self::PAGE];
    }

    /**
     * Eraser: removes every call the user made or received. A call log row
     * is about both parties; erasing one party's data removes the row for
     * both (it names the erased person), as erasing a message does.
     *
     * @return array{items_removed:bool,items_retained:bool,messages:list<string>,done:bool}
     */
    public static function erase(string $email, int $page = 1): array
    {
        global $wpdb;
        $user = get_user_by('email', $email);
        if (!$user) {
            return ['items_removed' => false, 'items_retained' => false, 'messages' => [], 'done' => true];
        }
        $n = (int) $wpdb->query($wpdb->prepare(
            'DELETE FROM ' . self::table() . ' WHERE caller_id = %d OR callee_id = %d',
            (int) $user->ID,
            (int) $user->ID
        ));
        return ['items_removed' => $n > 0, 'items_retained' => false, 'messages' => [], 'done' => true];
    }

    /** Retention (the daily job): calls older than the message retention go too. */
    public static function retention(): void
    {
        global $wpdb;
        $days = (int) BM_Relay_Settings::get('bmr_retention_days');
        if ($days <= 0) {
            return;
        }
        $wpdb->query($wpdb->prepare(
            'DELETE FROM ' . self::table() . ' WHERE created_at < %s LIMIT 1000',
            gmdate('Y-m-d H:i:s', time() - $days * DAY_IN_SECONDS)
        ));
    }
}
