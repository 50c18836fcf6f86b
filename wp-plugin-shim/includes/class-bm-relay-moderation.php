<?php

/**
 * Moderation: Tools → Chat moderation lists every conversation; a moderator
 * (capability `bmr_moderate`, granted to administrators) reads one, deletes
 * messages and removes members without being a member. The same actions
 * are REST routes (GET /moderation/threads, GET /threads/{id},
 * GET /threads/{id}/messages, DELETE /messages/{id},
 * DELETE /threads/{id}/participants/{user}), which check the same
 * capability.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * The moderation screen and its actions.
 */
final class BM_Relay_Moderation
{
    /** Page slug under Tools. */
    public const SLUG = 'bm-relay-moderation';

    /** Hooks the screen and its two form actions in. */
    public static function register(): void
    {
        add_action('admin_menu', static function (): void {
            add_management_page(__('Chat moderation', 'bm-relay'), __('Chat moderation', 'bm-relay'), self::cap(), self::SLUG, [self::class, 'render']);
        });
        add_action('admin_post_bmr_moderate_delete', [self::class, 'handle_delete']);
        add_action('admin_post_bmr_moderate_remove', [self::class, 'handle_remove']);
    }

    /** The capability moderators need (filter `bm_relay_moderate_capability`). */
    public static function cap(): string
    {
        return (string) apply_filters('bm_relay_moderate_capability', BM_Relay_REST::MODERATE_CAP);
    }

    /** Gives administrators the capability (activation, upgrade). */
    public static function grant(): void
    {
        $role = get_role('administrator');
        if ($role && !$role->has_cap(BM_Relay_REST::MODERATE_CAP)) {
            $role->add_cap(BM_Relay_REST::MODERATE_CAP);
        }
    }

    /** Takes the capability back from every role (uninstall). */
    public static function revoke(): void
    {
        foreach (wp_roles()->role_objects as $role) {
            if ($role->has_cap(BM_Relay_REST::MODERATE_CAP)) {
                $role->remove_cap(BM_Relay_REST::MODERATE_CAP);
            }
        }
    }

    /** URL of the screen, optionally of one thread. */
    private static function url(int $thread = 0): string
    {
        $args = ['page' => self::SLUG];
        if ($thread > 0) {
            $args['thread'] = $thread;
        }
        return add_query_arg($args, admin_url('tools.php'));
    }

    /** admin-post: delete a message (tombstone, pushed like the sender's own delete). */
    public static function handle_delete(): void
    {
        if (!current_user_can(self::cap())) {
            wp_die(esc_html__('You are not allowed to moderate the chat.', 'bm-relay'), 403);
        }
        $id = isset($_POST['message']) ? absint(wp_unslash($_POST['message'])) : 0;
        check_admin_referer('bmr_moderate_delete_' . $id);
        $msg = BM_Relay_Store::message($id);
        $thread = $msg ? BM_Relay_Store::thread((int) $msg->thread_id) : null;
        if ($msg && $thread) {
            if ($msg->deleted_at === null) {
                BM_Relay_Store::delete_message($id);
            }
            BM_Relay_Push::thread_event($thread, 'message.delete', ['id' => $id, 'thread' => (int) $thread->id]);
        }
        wp_safe_redirect(self::url($thread ? (int) $thread->id : 0));
        exit;
    }

    /** admin-post: remove a member (epoch bump, re-key, relay revocation). */
    public static function handle_remove(): void
    {
        if (!current_user_can(self::cap())) {
            wp_die(esc_html__('You are not allowed to moderate the chat.', 'bm-relay'), 403);
        }
        $thread = isset($_POST['thread']) ? absint(wp_unslash($_POST['thread'])) : 0;
        $user = isset($_POST['user']) ? absint(wp_unslash($_POST['user'])) : 0;
        check_admin_referer('bmr_moderate_remove_' . $thread . '_' . $user);
        if ($thread > 0 && $user > 0 && BM_Relay_Store::remove_member($thread, $user) !== null) {
            BM_Relay_Push::member_removed($thread, $user);
        }
        wp_safe_redirect(self::url($thread));
        exit;
    }

    /** Display name of a user, or a placeholder. */
    private static function name(int $id): string
    {
        $u = get_userdata($id);
        return $u ? (string) $u->display_name : __('Deleted user', 'bm-relay');
    }

    /** Renders the list, or one thread with ?thread=ID. */
    public static function render(): void
    {
        if (!current_user_can(self::cap())) {
            return;
        }
        $thread_id = isset($_GET['thread']) ? absint(wp_unslash($_GET['thread'])) : 0;
        echo '<div class="wrap" id="bm-relay-moderation"><h1>' . esc_html__('Chat moderation', 'bm-relay') . '</h1>';
        if ($thread_id > 0) {
            self::render_thread($thread_id);
        } else {
            self::render_list();
        }
        echo '</div>';
    }

    /** Every thread, newest activity first, 50 a page. */
    private static function render_list(): void
    {
        $page = isset($_GET['paged']) ? max(1, absint(wp_unslash($_GET['paged']))) : 1;
        $rows = BM_Relay_Store::all_threads(51, ($page - 1) * 50);
        $more = count($rows) > 50;
        $rows = array_slice($rows, 0, 50);
        $members = BM_Relay_Store::members_of(array_map(static fn($t) => (int) $t->id, $rows));
        echo '<table class="widefat striped"><thead><tr><th>' . esc_html__('Conversation', 'bm-relay') . '</th><th>' . esc_html__('Members', 'bm-relay') . '</th><th>' . esc_html__('Messages', 'bm-relay') . '</th><th>' . esc_html__('Last activity (UTC)', 'bm-relay') . '</th></tr></thead><tbody>';
        foreach ($rows as $t) {
            $names = array_map([self::class, 'name'], $members[(int) $t->id] ?? []);
            printf(
                '<tr><td><a href="%s">%s</a></td><td>%s</td><td>%s</td><td>%s</td></tr>',
                esc_url(self::url((int) $t->id)),
                esc_html($t->subject !== '' ? $t->subject : sprintf(/* translators: %d: conversation id */ __('Conversation %d', 'bm-relay'), (int) $t->id)),
                esc_html(implode(', ', $names)),
                esc_html(number_format_i18n((int) $t->message_count)),
                esc_html($t->updated_at)
            );
        }
        echo '</tbody></table>';
        if ($more) {
            printf('<p><a class="button" href="%s">%s</a></p>', esc_url(add_query_arg('paged', $page + 1, self::url())), esc_html__('Older conversations', 'bm-relay'));
        }
    }

    /** One thread: members (remove) and its last 200 messages (delete). */
    private static function render_thread(int $id): void
    {
        $thread = BM_Relay_Store::thread($id);
        if (!$thread) {
            echo '<p>' . esc_html__('No such thread.', 'bm-relay') . '</p>';
            return;
        }
        printf('<p><a href="%s">%s</a></p>', esc_url(self::url()), esc_html__('All conversations', 'bm-relay'));
        echo '<h2>' . esc_html($thread->subject !== '' ? $thread->subject : sprintf(/* translators: %d: conversation id */ __('Conversation %d', 'bm-relay'), $id)) . '</h2>';
        echo '<h3>' . esc_html__('Members', 'bm-relay') . '</h3><ul class="bmr-members">';
        foreach (BM_Relay_Store::members($id) as $user) {
            echo '<li>' . esc_html(self::name($user)) . ' ';
            echo '<form method="post" action="' . esc_url(admin_url('admin-post.php')) . '" style="display:inline">';
            wp_nonce_field('bmr_moderate_remove_' . $id . '_' . $user);
            printf('<input type="hidden" name="action" value="bmr_moderate_remove"><input type="hidden" name="thread" value="%d"><input type="hidden" name="user" value="%d">', $id, $user);
            submit_button(__('Remove from conversation', 'bm-relay'), 'small', 'submit', false);
            echo '</form></li>';
        }
        echo '</ul><h3>' . esc_html__('Messages', 'bm-relay') . '</h3><table class="widefat striped"><tbody>';
        foreach (BM_Relay_Store::messages($id, 0, PHP_INT_MAX, 200) as $m) {
            echo '<tr><td>' . esc_html(self::name((int) $m->sender_id)) . '</td><td>' . esc_html($m->created_at) . '</td><td class="bmr-text">';
            echo $m->deleted_at !== null ? '<em>' . esc_html__('Message deleted', 'bm-relay') . '</em>' : esc_html((string) $m->content);
            echo '</td><td>';
            if ($m->deleted_at === null) {
                echo '<form method="post" action="' . esc_url(admin_url('admin-post.php')) . '">';
                wp_nonce_field('bmr_moderate_delete_' . (int) $m->id);
                printf('<input type="hidden" name="action" value="bmr_moderate_delete"><input type="hidden" name="message" value="%d">', (int) $m->id);
                submit_button(__('Delete', 'bm-relay'), 'small delete', 'submit', false);
                echo '</form>';
            }
            echo '</td></tr>';
        }
        echo '</tbody></table>';
    }
}
