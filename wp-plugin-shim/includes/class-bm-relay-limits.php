<?php

/**
 * Limits on what one logged-in user can do, each with a filter to change
 * it: messages per minute, thread creations per hour, members per thread,
 * distinct reactions per message, pins per thread, and who may start a conversation with
 * whom. A limit hit is a REST error with a clear message, a code and an
 * HTTP status (429 for rates, 403 for the rest).
 *
 * Counts come from the plugin's own tables (what was stored), so they hold
 * across PHP processes with no extra storage.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * The limits and their checks.
 */
final class BM_Relay_Limits
{
    /** User meta an administrator sets to be reachable by anyone (off by default). */
    public const ALLOW_CONTACT_META = 'bmr_allow_contact';

    /** Messages one user may send per minute (filter `bm_relay_limit_messages_per_minute`). */
    public static function messages_per_minute(int $user): int
    {
        return (int) apply_filters('bm_relay_limit_messages_per_minute', 30, $user);
    }

    /** Threads one user may start per hour (filter `bm_relay_limit_threads_per_hour`). */
    public static function threads_per_hour(int $user): int
    {
        return (int) apply_filters('bm_relay_limit_threads_per_hour', 20, $user);
    }

    /** Members of one thread, creator included (filter `bm_relay_limit_members_per_thread`). */
    public static function members_per_thread(): int
    {
        return max(2, (int) apply_filters('bm_relay_limit_members_per_thread', 50));
    }

    /** Distinct reactions (emoji) on one message (filter `bm_relay_limit_reactions_per_message`). */
    public static function reactions_per_message(): int
    {
        return max(1, (int) apply_filters('bm_relay_limit_reactions_per_message', 12));
    }

    /**
     * Pinned messages of one thread (filter `bm_relay_limit_pins_per_thread`):
     * the pinned bar stays a short list, and the thread shape, which lists
     * the pins of every thread on a page of the thread list, stays small.
     */
    public static function pins_per_thread(): int
    {
        return max(1, (int) apply_filters('bm_relay_limit_pins_per_thread', 50));
    }

    /** The 403 of a thread that has all the pins it may have. */
    public static function pins_full(): WP_Error
    {
        $max = self::pins_per_thread();
        /* translators: %d: pinned messages allowed in one conversation */
        $text = _n('A conversation can have at most %d pinned message. Unpin one first.', 'A conversation can have at most %d pinned messages. Unpin one first.', $max, 'bm-relay');
        return new WP_Error('bm_relay_too_many_pins', sprintf($text, $max), ['status' => 403]);
    }

    /**
     * Whether $from may start a conversation with (or add to one) $to.
     * Default: anyone logged in may reach anyone who can chat, except that
     * users who can manage the site are reachable only when they allowed it
     * (user meta `bmr_allow_contact`) or by another such user. Filter
     * `bm_relay_can_message` (bool, from, to) decides last.
     */
    public static function can_message(int $from, int $to): bool
    {
        $allowed = true;
        $target = get_userdata($to);
        if (!$target) {
            $allowed = false;
        } elseif (
            user_can($target, 'manage_options') && !user_can($from, 'manage_options')
            && get_user_meta($to, self::ALLOW_CONTACT_META, true) !== '1'
        ) {
            $allowed = false;
        }
        return (bool) apply_filters('bm_relay_can_message', $allowed, $from, $to);
    }

    /** A 429 for a rate, with Retry-After seconds in its data. */
    private static function rate_error(string $message, int $retry_after): WP_Error
    {
        return new WP_Error('bm_relay_rate_limited', $message, ['status' => 429, 'retry_after' => $retry_after]);
    }

    /** Stored rows since a time, for a rate. */
    private static function count_since(string $table, string $column, int $user, int $seconds): int
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        // Table and column come from constants here, not from input.
        return (int) $wpdb->get_var($wpdb->prepare(
            "SELECT COUNT(*) FROM {$t[$table]} WHERE $column = %d AND created_at >= %s",
            $user,
            gmdate('Y-m-d H:i:s', time() - $seconds)
        ));
    }

    /** @return true|WP_Error may $user send one more message now */
    public static function check_message_rate(int $user)
    {
        $max = self::messages_per_minute($user);
        if ($max > 0 && self::count_since('messages', 'sender_id', $user, MINUTE_IN_SECONDS) >= $max) {
            /* translators: %d: messages allowed per minute */
            return self::rate_error(sprintf(_n('You can send at most %d message a minute. Wait a moment and try again.', 'You can send at most %d messages a minute. Wait a moment and try again.', $max, 'bm-relay'), $max), MINUTE_IN_SECONDS);
        }
        return true;
    }

    /** @return true|WP_Error may $user start one more thread now */
    public static function check_thread_rate(int $user)
    {
        $max = self::threads_per_hour($user);
        if ($max > 0 && self::count_since('threads', 'created_by', $user, HOUR_IN_SECONDS) >= $max) {
            /* translators: %d: conversations allowed per hour */
            return self::rate_error(sprintf(_n('You can start at most %d conversation an hour. Try again later.', 'You can start at most %d conversations an hour. Try again later.', $max, 'bm-relay'), $max), HOUR_IN_SECONDS);
        }
        return true;
    }

    /** @return true|WP_Error may a thread grow to $count members */
    public static function check_members(int $count)
    {
        $max = self::members_per_thread();
        if ($count > $max) {
            /* translators: %d: members allowed in one conversation */
            return new WP_Error('bm_relay_thread_full', sprintf(_n('A conversation can have at most %d member.', 'A conversation can have at most %d members.', $max, 'bm-relay'), $max), ['status' => 403, 'param' => 'participants']);
        }
        return true;
    }

    /**
     * @param list<string> $emoji the message's distinct reactions now
     * @return true|WP_Error may $new be added to them
     */
    public static function check_reaction(array $emoji, string $new)
    {
        $max = self::reactions_per_message();
        if (!in_array($new, $emoji, true) && count($emoji) >= $max) {
            /* translators: %d: different reactions allowed on one message */
            return new WP_Error('bm_relay_too_many_reactions', sprintf(_n('A message can have at most %d different reaction.', 'A message can have at most %d different reactions.', $max, 'bm-relay'), $max), ['status' => 403, 'param' => 'emoji']);
        }
        return true;
    }

    /** @return true|WP_Error may $from bring $to into a conversation */
    public static function check_contact(int $from, int $to, string $param)
    {
        if (!self::can_message($from, $to)) {
            return new WP_Error('bm_relay_cannot_message', __('You cannot start a conversation with this person.', 'bm-relay'), ['status' => 403, 'param' => $param]);
        }
        return true;
    }
}
