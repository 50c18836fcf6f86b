<?php

/**
 * E-mail to members who were offline when a message arrived (issue #16).
 *
 * When a message is stored and pushed (action `bm_relay_message_sent`),
 * every other member the relay did not see online gets one pending WP-Cron
 * single event per (thread, recipient), `bmr_mail_notify` with the args
 * [thread, user], due `bmr_mail_delay` minutes later. Later messages of the
 * same window find that event scheduled and add nothing, so a thread of
 * fifty messages costs one event and one mail per recipient and window.
 *
 * Who is offline: in sync mode the push answers with the members the relay
 * saw online, who are left out at once. In async mode (the extension's
 * default) the push answers nothing, so every other member is scheduled and
 * the relay is asked (`bm_presence`) when the event fires: whoever has a
 * socket then is at the chat and gets no mail. The same question is asked
 * in sync mode too (a member may have come back meanwhile); a relay that
 * cannot be asked counts as "offline" (nothing reached them live).
 *
 * When the event fires nothing is sent if the member read the thread
 * meanwhile (no message after their `last_read_id` from someone else), left
 * it, or unsubscribed. State needs no table: the pending windows are the
 * cron events themselves; the newest message a mail listed is user meta
 * `bmr_mail_upto_{thread}` (written by the cron run, never on the send
 * path; deleted once the member read past it), so the next mail lists
 * only newer messages and a repeated run sends nothing; the opt-out is
 * user meta `bmr_mail_off`.
 * Uninstall removes both (user meta `bmr_*`) and the cron events.
 *
 * Message text in the mail: by default none (sender names, subject, count
 * and a link). A mail leaves the site for mail providers and inboxes that
 * neither the site nor the plugin's eraser can reach, while the product's
 * promise is that message text lives in the site's own database only; a
 * site that prefers excerpts turns on `bmr_mail_excerpt` (140 characters
 * of each of the five newest messages).
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Offline e-mail notifications: scheduling, sending, the unsubscribe link
 * and the user's preference.
 */
final class BM_Relay_Mail
{
    /** Cron hook of one pending mail; args [thread id, user id]. */
    public const HOOK = 'bmr_mail_notify';
    /** User meta: '1' when the user wants no chat e-mail. */
    public const OFF_META = 'bmr_mail_off';
    /** User meta prefix (+ thread id): the newest message of the last mail, while unread. */
    public const UPTO_META = 'bmr_mail_upto_';
    /** Query arguments of the unsubscribe link (user id, token). */
    public const ARG_USER = 'bmr_unsubscribe';
    public const ARG_TOKEN = 'bmr_token';
    /** Site options and their defaults. */
    public const DEFAULTS = [
        'bmr_mail_on' => '1',        // '0' turns the feature off for the whole site
        'bmr_mail_delay' => 10,      // minutes after the first unseen message; 0 = the next cron run
        'bmr_mail_excerpt' => '0',   // '1' puts excerpts of the messages in the mail
    ];
    /** Messages listed in one mail (the count covers the rest). */
    private const LISTED = 5;
    /** Characters of a message shown when excerpts are on. */
    private const EXCERPT = 140;
    /**
     * A mail wp_mail() refused (SMTP server down, a rate limit) is tried
     * again this many times, RETRY_MINUTES × 3^n later (5, 15, 45 min).
     * After that the messages wait for the thread's next mail window: they
     * stay unmailed (user meta `bmr_mail_upto_*` did not move), not lost.
     */
    public const RETRIES = 3;
    private const RETRY_MINUTES = 5;

    /** Hooks the feature in (plugin load). */
    public static function register(): void
    {
        add_action('bm_relay_message_sent', [self::class, 'message_sent'], 10, 4);
        add_action(self::HOOK, [self::class, 'run'], 10, 3);
        add_action('init', [self::class, 'maybe_unsubscribe'], 1);
        add_action('admin_init', [self::class, 'register_settings']);
        add_action('show_user_profile', [self::class, 'profile_field']);
        add_action('edit_user_profile', [self::class, 'profile_field']);
        add_action('personal_options_update', [self::class, 'save_profile_field']);
        add_action('edit_user_profile_update', [self::class, 'save_profile_field']);
        add_filter('wp_privacy_personal_data_exporters', static function (array $exporters): array {
            $exporters['bm-relay-mail'] = [
                'exporter_friendly_name' => __('Chat e-mail preference (bm-relay)', 'bm-relay'),
                'callback' => [self::class, 'export'],
            ];
            return $exporters;
        });
    }

    /**
     * Exporter: the member's own choice about chat e-mail (user meta
     * `bmr_mail_off`), one item. What was mailed is not kept: the mails
     * themselves are the site's mail log's, if it has one.
     *
     * @return array{data:list<array>,done:bool}
     */
    public static function export(string $email, int $page = 1): array
    {
        $user = get_user_by('email', $email);
        if (!$user) {
            return ['data' => [], 'done' => true];
        }
        return ['data' => [[
            'group_id' => 'bm-relay-mail',
            'group_label' => __('Chat e-mail', 'bm-relay'),
            'item_id' => 'bm-relay-mail-' . (int) $user->ID,
            'data' => [[
                'name' => __('E-mail me about unread chat messages', 'bm-relay'),
                'value' => self::opted_out((int) $user->ID) ? __('no', 'bm-relay') : __('yes', 'bm-relay'),
            ]],
        ]], 'done' => true];
    }

    /**
     * A site option of this feature with its default.
     *
     * @return mixed
     */
    public static function option(string $name)
    {
        return get_option($name, self::DEFAULTS[$name] ?? '');
    }

    /** True when the site sends offline mail at all. */
    public static function enabled(): bool
    {
        return (string) self::option('bmr_mail_on') === '1';
    }

    /** True when the user unsubscribed. */
    public static function opted_out(int $user): bool
    {
        return (string) get_user_meta($user, self::OFF_META, true) === '1';
    }

    /**
     * After a message was stored and pushed: one pending mail per offline
     * member and thread. `$res` is the push's answer in sync mode
     * (`online`: who the relay reached), null when nothing is known (async
     * mode, relay down): then presence is asked when the mail is due.
     * Cost on the send path: the member query and one pass over the
     * autoloaded cron array (in memory); only when some
     * member has no mail pending yet, one query for opt-outs and one write
     * of the cron option for all of them.
     *
     * @param array{online:list<int>,sockets:int}|null $res
     */
    public static function message_sent(object $thread, int $sender, int $message_id, ?array $res): void
    {
        if (!self::enabled()) {
            return;
        }
        $tid = (int) $thread->id;
        $others = array_values(array_diff(BM_Relay_Store::members($tid), [$sender]));
        if ($res !== null) {
            $others = array_values(array_diff($others, array_map('intval', $res['online'] ?? [])));
        }
        $pending = self::pending($tid);
        $new = array_values(array_filter($others, static fn(int $u): bool => !isset($pending[$u])));
        if (!$new) {
            return;
        }
        global $wpdb;
        $off = array_map('intval', $wpdb->get_col($wpdb->prepare(
            "SELECT user_id FROM {$wpdb->usermeta} WHERE meta_key = %s AND meta_value = '1' AND user_id IN (" . implode(',', array_fill(0, count($new), '%d')) . ')',
            self::OFF_META,
            ...$new
        )));
        self::schedule($tid, array_values(array_diff($new, $off)));
    }

    /**
     * Members of a thread with a mail pending, as keys: one pass over the
     * cron array (autoloaded, in memory), not one wp_next_scheduled() per
     * member (each of which walks the array again).
     *
     * @return array<int,true>
     */
    private static function pending(int $thread): array
    {
        $out = [];
        foreach ((array) _get_cron_array() as $events) {
            foreach ($events[self::HOOK] ?? [] as $event) {
                if ((int) ($event['args'][0] ?? 0) === $thread) {
                    $out[(int) ($event['args'][1] ?? 0)] = true;
                }
            }
        }
        return $out;
    }

    /**
     * Opens a window for each of `$users` in a thread: their mail is due
     * `bmr_mail_delay` minutes from now. The events go into the cron array
     * as wp_schedule_single_event() puts them, but in one write of the
     * cron option for all: one call per member rewrote the whole (growing)
     * option once each, 49 writes for the first message to a 50-member
     * thread (SlowRelayTest's send went from 0.7 s to 1.9 s under load).
     *
     * @param list<int> $users members with no mail pending in this thread
     */
    public static function schedule(int $thread, array $users): void
    {
        if (!$users) {
            return;
        }
        $due = time() + max(0, (int) self::option('bmr_mail_delay')) * MINUTE_IN_SECONDS;
        $crons = _get_cron_array();
        $crons = is_array($crons) ? $crons : [];
        foreach ($users as $user) {
            $args = [$thread, (int) $user];
            $crons[$due][self::HOOK][md5(serialize($args))] = ['schedule' => false, 'args' => $args];
        }
        uksort($crons, 'strnatcasecmp');
        _set_cron_array($crons);
    }

    /**
     * The cron job: sends the mail of one (thread, user) window, or says
     * why not. It lists what the member has not read and was not mailed
     * about yet (after `last_read_id` and after user meta
     * `bmr_mail_upto_{thread}`, the newest message of the last mail), so a
     * run repeated after a mail sends nothing.
     *
     * @return string `sent`, `none` (mailed about everything unread
     *                already), `off` (site or user turned mail off), `gone`
     *                (not a member, no address), `read`, `online`, `failed`
     *                (wp_mail refused; tried again later while `$attempt`
     *                < RETRIES)
     * @param int|string $attempt 0 for the window's mail, n for its n-th retry
     */
    public static function run($thread, $user, $attempt = 0): string
    {
        $thread = (int) $thread;
        $user = (int) $user;
        $attempt = max(0, (int) $attempt);
        if (!self::enabled() || self::opted_out($user)) {
            return 'off';
        }
        $member = BM_Relay_Store::membership($thread, $user);
        $row = BM_Relay_Store::thread($thread);
        $who = get_userdata($user);
        if (!$member || !$row || !$who || !is_email($who->user_email)) {
            return 'gone';
        }
        $key = self::UPTO_META . $thread;
        $read = (int) $member->last_read_id;
        $upto = (int) get_user_meta($user, $key, true);
        if ($upto > 0 && $read >= $upto) {
            // Read past the last mail: the row has no more use.
            delete_user_meta($user, $key);
        }
        $unseen = self::unseen($thread, $user, max($read, $upto) + 1);
        if ($unseen['count'] === 0) {
            return $upto > $read ? 'none' : 'read';
        }
        try {
            if (in_array($user, array_map('intval', bm_presence([$user])), true)) {
                return 'online';
            }
        } catch (BmRelayException $e) {
            // The relay cannot be asked: nothing reached this user live.
        }
        if (!self::send($who, $row, $unseen)) {
            if ($attempt < self::RETRIES) {
                // Still pending for message_sent() (same thread and user):
                // no second window opens meanwhile.
                wp_schedule_single_event(time() + self::RETRY_MINUTES * (3 ** $attempt) * MINUTE_IN_SECONDS, self::HOOK, [$thread, $user, $attempt + 1]);
            }
            return 'failed';
        }
        $last = end($unseen['messages']);
        update_user_meta($user, $key, (int) $last->id);
        return 'sent';
    }

    /**
     * What a user has not seen in a thread from message `$from` on: the
     * count and the newest few messages of others, not deleted, oldest
     * first (two indexed queries on messages(thread_id, id)).
     *
     * @return array{count:int,messages:list<object>}
     */
    private static function unseen(int $thread, int $user, int $from): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $count = (int) $wpdb->get_var($wpdb->prepare(
            "SELECT COUNT(*) FROM {$t['messages']} WHERE thread_id = %d AND id >= %d AND sender_id <> %d AND deleted_at IS NULL",
            $thread,
            $from,
            $user
        ));
        $rows = $count === 0 ? [] : $wpdb->get_results($wpdb->prepare(
            "SELECT id, sender_id, content FROM {$t['messages']} WHERE thread_id = %d AND id >= %d AND sender_id <> %d AND deleted_at IS NULL ORDER BY id DESC LIMIT %d",
            $thread,
            $from,
            $user,
            self::LISTED
        ));
        return ['count' => $count, 'messages' => array_reverse($rows)];
    }

    /**
     * The chat page's URL, opening the thread (`#thread-ID`, which the
     * page reads on load): the chat page the admin bar links to
     * (BM_Relay_Notify::chat_url: filter `bm_relay_chat_url`, else the
     * first published page holding `[bm_chat]`, cached), else the home
     * page; filter `bm_relay_mail_chat_url` (url, thread, user) for a mail
     * that should point elsewhere.
     */
    public static function chat_url(int $thread, int $user): string
    {
        $base = BM_Relay_Notify::chat_url();
        if ($base === '') {
            $base = home_url('/');
        }
        return (string) apply_filters('bm_relay_mail_chat_url', $base . '#thread-' . $thread, $thread, $user);
    }

    /**
     * The token of a user's unsubscribe link: an HMAC of the blog and user
     * under the site's auth salt. It never expires (a link in an old mail
     * must still work) and can do one thing only: turn this user's chat
     * mail off.
     */
    public static function token(int $user): string
    {
        return substr(hash_hmac('sha256', 'bmr-unsubscribe|' . get_current_blog_id() . '|' . $user, wp_salt('auth')), 0, 32);
    }

    /** The unsubscribe link of a user (in the body and List-Unsubscribe). */
    public static function unsubscribe_url(int $user): string
    {
        return add_query_arg([self::ARG_USER => $user, self::ARG_TOKEN => self::token($user)], home_url('/'));
    }

    /**
     * Composes and sends one mail in the recipient's language, from the
     * site's name, as plain text (no markup to escape, no remote images:
     * nothing tells the sender it was opened).
     *
     * @param array{count:int,messages:list<object>} $unseen
     */
    private static function send(WP_User $to, object $thread, array $unseen): bool
    {
        $switched = function_exists('switch_to_user_locale') ? switch_to_user_locale((int) $to->ID) : switch_to_locale(get_user_locale($to));
        try {
            $senders = [];
            foreach ($unseen['messages'] as $m) {
                $u = get_userdata((int) $m->sender_id);
                $senders[(int) $m->sender_id] = $u ? $u->display_name : __('someone', 'bm-relay');
            }
            $names = implode(', ', $senders);
            $site = wp_specialchars_decode((string) get_bloginfo('name'), ENT_QUOTES);
            $subject = (string) $thread->subject !== '' ? (string) $thread->subject : __('a conversation', 'bm-relay');
            $n = $unseen['count'];
            $line = sprintf(
                /* translators: 1: number of messages, 2: conversation subject, 3: sender names */
                _n('%1$d new message in “%2$s” from %3$s', '%1$d new messages in “%2$s” from %3$s', $n, 'bm-relay'),
                $n,
                $subject,
                $names
            );
            $body = [
                /* translators: %s: the recipient's display name */
                sprintf(__('Hello %s,', 'bm-relay'), $to->display_name),
                '',
                $line . '.',
                '',
            ];
            if ((string) self::option('bmr_mail_excerpt') === '1') {
                foreach ($unseen['messages'] as $m) {
                    $text = trim((string) preg_replace('/\s+/u', ' ', (string) $m->content));
                    if (mb_strlen($text) > self::EXCERPT) {
                        $text = mb_substr($text, 0, self::EXCERPT - 1) . '…';
                    }
                    $body[] = $senders[(int) $m->sender_id] . ': ' . $text;
                }
                $body[] = '';
            }
            $unsubscribe = self::unsubscribe_url((int) $to->ID);
            array_push(
                $body,
                /* translators: %s: link to the conversation */
                sprintf(__('Read and reply: %s', 'bm-relay'), self::chat_url((int) $thread->id, (int) $to->ID)),
                '',
                '-- ',
                /* translators: %s: the site's name */
                sprintf(__('You get this e-mail because you were away when these messages arrived on %s.', 'bm-relay'), $site),
                /* translators: %s: the unsubscribe link */
                sprintf(__('Stop these e-mails: %s', 'bm-relay'), $unsubscribe)
            );
            $headers = [
                'Content-Type: text/plain; charset=UTF-8',
                // RFC 2369 and RFC 8058: mail clients show an unsubscribe
                // button that POSTs to the link (one click, no page).
                'List-Unsubscribe: <' . $unsubscribe . '>',
                'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
                // RFC 3834: no out-of-office replies to a notification.
                'Auto-Submitted: auto-generated',
            ];
            $from_name = static fn(): string => $site;
            add_filter('wp_mail_from_name', $from_name);
            try {
                return wp_mail($to->user_email, '[' . $site . '] ' . $line, implode("\n", $body) . "\n", $headers);
            } finally {
                remove_filter('wp_mail_from_name', $from_name);
            }
        } finally {
            if ($switched) {
                restore_previous_locale();
            }
        }
    }

    /**
     * The unsubscribe link, answered on `init` for anyone (the recipient
     * need not be logged in). A POST (what a mail client's one-click
     * button sends, RFC 8058, and the page's button) turns the mail off;
     * a GET only shows that button, because mail scanners open every link
     * of a mail and would otherwise unsubscribe people who never clicked.
     * A wrong token: 403 and nothing changes.
     */
    public static function maybe_unsubscribe(): void
    {
        // phpcs:ignore -- the signed token is the credential, not a nonce
        if (!isset($_GET[self::ARG_USER])) {
            return;
        }
        $user = absint(wp_unslash($_GET[self::ARG_USER]));
        $token = isset($_GET[self::ARG_TOKEN]) ? sanitize_text_field(wp_unslash($_GET[self::ARG_TOKEN])) : '';
        $title = __('E-mail notifications', 'bm-relay');
        if ($user < 1 || !get_userdata($user) || !hash_equals(self::token($user), $token)) {
            wp_die(esc_html__('This unsubscribe link is not valid.', 'bm-relay'), esc_html($title), ['response' => 403]);
        }
        if (($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST') {
            update_user_meta($user, self::OFF_META, '1');
            wp_die(
                '<p>' . esc_html__('You will get no more e-mail about new chat messages. You can turn it on again on your profile page.', 'bm-relay') . '</p>',
                esc_html($title),
                ['response' => 200]
            );
        }
        wp_die(
            '<p>' . esc_html__('Stop e-mails about chat messages that arrive while you are away?', 'bm-relay') . '</p>'
            . '<form method="post" action="' . esc_url(self::unsubscribe_url($user)) . '">'
            . '<button type="submit" class="button" id="bmr-unsubscribe">' . esc_html__('Unsubscribe', 'bm-relay') . '</button></form>',
            esc_html($title),
            ['response' => 200]
        );
    }

    /** The checkbox on the user's profile screen. */
    public static function profile_field(WP_User $user): void
    {
        echo '<h2>' . esc_html__('Chat', 'bm-relay') . '</h2><table class="form-table" role="presentation"><tr><th>'
            . esc_html__('E-mail notifications', 'bm-relay') . '</th><td><label for="bmr_mail_notify">';
        wp_nonce_field('bmr_mail_pref_' . $user->ID, 'bmr_mail_nonce');
        printf(
            '<input type="hidden" name="bmr_mail_field" value="1"><input type="checkbox" id="bmr_mail_notify" name="bmr_mail_notify" value="1"%s> %s</label>',
            checked(!self::opted_out((int) $user->ID), true, false),
            esc_html__('E-mail me about chat messages that arrive while I am away', 'bm-relay')
        );
        echo '</td></tr></table>';
    }

    /** Saves the profile checkbox (the profile form's own nonce and capability, and ours). */
    public static function save_profile_field(int $user_id): void
    {
        if (!isset($_POST['bmr_mail_field']) || !current_user_can('edit_user', $user_id)) {
            return;
        }
        if (!isset($_POST['bmr_mail_nonce']) || !wp_verify_nonce(sanitize_text_field(wp_unslash($_POST['bmr_mail_nonce'])), 'bmr_mail_pref_' . $user_id)) {
            return;
        }
        if (isset($_POST['bmr_mail_notify'])) {
            delete_user_meta($user_id, self::OFF_META);
        } else {
            update_user_meta($user_id, self::OFF_META, '1');
        }
    }

    /** The three site settings, in their own section of Settings → bm-relay. */
    public static function register_settings(): void
    {
        $slug = BM_Relay_Admin::SLUG;
        // options.php saves every option of the page's group, null for a
        // field the posted form lacks (a page that does not render this
        // section): null keeps the value instead of turning mail off.
        foreach (['bmr_mail_on', 'bmr_mail_excerpt'] as $name) {
            register_setting($slug, $name, ['type' => 'string', 'sanitize_callback' => static function ($v) use ($name): string {
                return (string) ($v ?? self::option($name)) === '1' ? '1' : '0';
            }]);
        }
        register_setting($slug, 'bmr_mail_delay', ['type' => 'integer', 'sanitize_callback' => static function ($v): int {
            return max(0, min(1440, (int) ($v ?? self::option('bmr_mail_delay'))));
        }]);
        add_settings_section('bmr_mail', __('E-mail to members who are away', 'bm-relay'), static function (): void {
            echo '<p>' . esc_html__(
                'One e-mail per conversation and delay to members who are not online, unless they read first. WordPress sends it (wp_mail): set up SMTP with an SMTP plugin.',
                'bm-relay'
            ) . '</p>';
        }, $slug);
        $checkbox = static function (array $a): void {
            printf(
                '<input type="hidden" name="%1$s" value="0"><label><input type="checkbox" id="%1$s" name="%1$s" value="1"%2$s> %3$s</label>',
                esc_attr($a['name']),
                checked((string) self::option($a['name']), '1', false),
                esc_html($a['label'])
            );
        };
        add_settings_field('bmr_mail_on', __('Send e-mail', 'bm-relay'), $checkbox, $slug, 'bmr_mail', [
            'name' => 'bmr_mail_on',
            'label' => __('E-mail members about messages they missed', 'bm-relay'),
        ]);
        add_settings_field('bmr_mail_delay', __('Delay (minutes)', 'bm-relay'), static function (): void {
            printf(
                '<input type="number" min="0" max="1440" id="bmr_mail_delay" name="bmr_mail_delay" value="%d"> <span class="description">%s</span>',
                (int) self::option('bmr_mail_delay'),
                esc_html__('after the first unread message; 0 sends at the next cron run', 'bm-relay')
            );
        }, $slug, 'bmr_mail');
        add_settings_field('bmr_mail_excerpt', __('Message text', 'bm-relay'), $checkbox, $slug, 'bmr_mail', [
            'name' => 'bmr_mail_excerpt',
            'label' => __('Quote the start of each message (the text then leaves the site in e-mail)', 'bm-relay'),
        ]);
    }
}
