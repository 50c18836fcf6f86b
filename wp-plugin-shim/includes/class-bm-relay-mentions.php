<?php

/**
 * Mentions (issue #16): `@Display Name` in a message's text, parsed by
 * WordPress against the thread's members only when the message is stored
 * or edited (a client's own list is never asked for, so nobody can notify
 * a stranger), stored as message meta, and listed in the message shape as
 * `mentions` (user ids), so the mentioned member's page can highlight the
 * message, mark the thread with "@" and say "mentioned you".
 *
 * Storage: one meta row per mentioned member, (message, mentioned user,
 * `mention`, the thread id as text). No table change (schema stays as it
 * is): the meta table's `user_id` index answers "my unread mentions" and
 * its unique key makes a repeated mention one row; erase and retention
 * remove them with the message's other meta.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Parses, stores and reads mentions.
 */
final class BM_Relay_Mentions
{
    /** Meta key of a mention row. */
    public const KEY = 'mention';

    /**
     * Mentions read ahead for a list of messages (prime()), used once each
     * by of(): a shape of 50 messages costs one query, not 50.
     *
     * @var array<int,list<int>>
     */
    private static array $primed = [];

    /**
     * The members mentioned in `$text`: an `@` at the start or after a
     * character that is not a letter, digit or `_`, followed by a member's
     * display name (any case) that does not run on into another letter or
     * digit; the longest name wins (`@Bob Smith` over `@Bob`). The sender
     * is left out (nobody is notified of themselves). Two members with the
     * same display name are both mentioned: the text cannot tell them apart.
     *
     * @param list<int> $members the thread's members
     * @return list<int> user ids, in the order of first mention
     */
    public static function parse(string $text, array $members, int $sender): array
    {
        if (strpos($text, '@') === false) {
            return [];
        }
        $by_name = [];
        foreach ($members as $id) {
            $id = (int) $id;
            $u = $id === $sender ? null : get_userdata($id);
            $name = $u ? trim((string) $u->display_name) : '';
            if ($name !== '') {
                $by_name[self::fold($name)][] = $id;
            }
        }
        if (!$by_name) {
            return [];
        }
        $names = array_keys($by_name);
        // Longest first: a regex alternation takes the first that matches.
        usort($names, static fn($a, $b) => mb_strlen((string) $b) <=> mb_strlen((string) $a));
        $alt = implode('|', array_map(static fn($n) => preg_quote((string) $n, '/'), $names));
        if (!preg_match_all('/(?<![\p{L}\p{N}_])@(' . $alt . ')(?![\p{L}\p{N}_])/iu', $text, $m)) {
            return [];
        }
        $out = [];
        foreach ($m[1] as $found) {
            foreach ($by_name[self::fold((string) $found)] ?? [] as $id) {
                $out[$id] = $id;
            }
        }
        return array_values($out);
    }

    /** A name as mentions compare it: case-folded, inner spaces as one. */
    private static function fold(string $name): string
    {
        return mb_strtolower((string) preg_replace('/\s+/u', ' ', $name), 'UTF-8');
    }

    /**
     * Parses a stored (or edited) message's text against its thread's
     * members and replaces its mention rows with the result.
     *
     * @return list<int> the mentioned user ids
     */
    public static function store(int $thread, int $message, int $sender, string $text): array
    {
        global $wpdb;
        $ids = self::parse($text, BM_Relay_Store::members($thread), $sender);
        $t = BM_Relay_Schema::tables();
        $wpdb->query($wpdb->prepare("DELETE FROM {$t['meta']} WHERE message_id = %d AND meta_key = %s", $message, self::KEY));
        $now = BM_Relay_Store::now();
        foreach ($ids as $id) {
            $wpdb->query($wpdb->prepare(
                "INSERT IGNORE INTO {$t['meta']} (message_id, user_id, meta_key, meta_value, created_at) VALUES (%d, %d, %s, %s, %s)",
                $message,
                $id,
                self::KEY,
                (string) $thread,
                $now
            ));
        }
        self::$primed[$message] = $ids;
        return $ids;
    }

    /**
     * Reads the mentions of several messages in one query, for the
     * message shapes built next (each read once by of()). Replaces what
     * an earlier call read and nobody used.
     *
     * @param list<int> $ids message ids
     */
    public static function prime(array $ids): void
    {
        self::$primed = $ids ? self::read($ids) : [];
    }

    /**
     * The users a message mentions (its shape's `mentions`): read ahead by
     * prime() or store(), else one query.
     *
     * @return list<int>
     */
    public static function of(int $message): array
    {
        if (array_key_exists($message, self::$primed)) {
            $ids = self::$primed[$message];
            unset(self::$primed[$message]);
            return $ids;
        }
        return self::read([$message])[$message];
    }

    /**
     * Mentioned user ids of each message (an entry for every id asked).
     *
     * @param list<int> $ids
     * @return array<int,list<int>>
     */
    private static function read(array $ids): array
    {
        global $wpdb;
        $ids = array_values(array_unique(array_map('intval', $ids)));
        $out = array_fill_keys($ids, []);
        $t = BM_Relay_Schema::tables();
        $in = implode(',', array_fill(0, count($ids), '%d'));
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT message_id, user_id FROM {$t['meta']} WHERE message_id IN ($in) AND meta_key = %s ORDER BY id",
            ...array_merge($ids, [self::KEY])
        ));
        foreach ($rows as $r) {
            $out[(int) $r->message_id][] = (int) $r->user_id;
        }
        return $out;
    }

    /**
     * How many messages mention `$user` past their read mark, per thread
     * (deleted messages left out): the "@" on a thread in their list and
     * in the unread count. One query over the meta table's `user_id` index,
     * so its cost grows with the meta rows of that user (their mentions,
     * reactions and pins), not with the site's messages.
     *
     * @param list<int>|null $threads only these threads (null: all of theirs)
     * @return array<int,int> thread id → unread mentions (threads with none left out)
     */
    public static function unread_by_thread(int $user, ?array $threads = null): array
    {
        global $wpdb;
        if ($threads === []) {
            return [];
        }
        $t = BM_Relay_Schema::tables();
        $args = [self::KEY, $user];
        $only = '';
        if ($threads !== null) {
            $threads = array_values(array_map('intval', $threads));
            $only = ' AND m.thread_id IN (' . implode(',', array_fill(0, count($threads), '%d')) . ')';
            $args = array_merge($args, $threads);
        }
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT m.thread_id, COUNT(*) AS n FROM {$t['meta']} mm
             JOIN {$t['messages']} m ON m.id = mm.message_id
             JOIN {$t['participants']} p ON p.thread_id = m.thread_id AND p.user_id = mm.user_id
             WHERE mm.meta_key = %s AND mm.user_id = %d AND m.id > p.last_read_id AND m.deleted_at IS NULL$only
             GROUP BY m.thread_id",
            ...$args
        ));
        $out = [];
        foreach ($rows as $r) {
            $out[(int) $r->thread_id] = (int) $r->n;
        }
        return $out;
    }
}
