<?php

/**
 * Data access for threads, participants, messages and message meta.
 *
 * Every query goes through $wpdb->prepare (table names come from the site
 * prefix, never from input). WordPress is the system of record: a message
 * exists once it is in bm_messages, whatever the relay does afterwards.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Reads and writes the plugin's tables; knows nothing about HTTP or pushes.
 */
final class BM_Relay_Store
{
    /** Current UTC time in MySQL format. */
    public static function now(): string
    {
        return gmdate('Y-m-d H:i:s');
    }

    /** Unix seconds of a stored UTC datetime (null stays null). */
    public static function ts(?string $datetime): ?int
    {
        if ($datetime === null || $datetime === '') {
            return null;
        }
        return (int) strtotime($datetime . ' UTC');
    }

    /**
     * Creates a thread with its members (creator included) in one transaction.
     *
     * @param list<int> $members
     */
    public static function create_thread(int $creator, string $subject, array $members): int
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $now = self::now();
        $wpdb->query('START TRANSACTION');
        $ok = $wpdb->query($wpdb->prepare(
            "INSERT INTO {$t['threads']} (subject, created_by, created_at, updated_at, epoch, last_message_id) VALUES (%s, %d, %s, %s, 0, 0)",
            $subject,
            $creator,
            $now,
            $now
        ));
        $id = (int) $wpdb->insert_id;
        if (!$ok || $id < 1) {
            $wpdb->query('ROLLBACK');
            throw new RuntimeException('bm-relay: could not create the thread: ' . $wpdb->last_error);
        }
        foreach (array_unique(array_merge([$creator], $members)) as $user) {
            self::add_member($id, (int) $user, 0);
        }
        $wpdb->query('COMMIT');
        return $id;
    }

    /**
     * A thread row.
     *
     * @return object|null
     */
    public static function thread(int $id)
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        return $wpdb->get_row($wpdb->prepare("SELECT * FROM {$t['threads']} WHERE id = %d", $id)) ?: null;
    }

    /**
     * Takes the thread's next event number (threads.seq + 1) in one
     * atomic statement: concurrent requests never get the same number, and
     * a number is spent even when its push then fails, which is how a
     * browser learns it missed something (docs/PROTOCOL.md §4.1).
     */
    public static function next_seq(int $thread, int $count = 1): int
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        // LAST_INSERT_ID(expr) hands the new value back on this connection
        // without a second read that another request could overtake.
        // $count > 1 takes a run of numbers in the same statement (retention
        // numbers thousands of deletions with one query per thread and
        // batch); the last of the run is returned.
        $wpdb->query($wpdb->prepare("UPDATE {$t['threads']} SET seq = LAST_INSERT_ID(seq + %d) WHERE id = %d", max(1, $count), $thread));
        return (int) $wpdb->get_var('SELECT LAST_INSERT_ID()');
    }

    /**
     * The participant row of a user in a thread, null when not a member.
     *
     * @return object|null
     */
    public static function membership(int $thread, int $user)
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        return $wpdb->get_row($wpdb->prepare(
            "SELECT * FROM {$t['participants']} WHERE thread_id = %d AND user_id = %d",
            $thread,
            $user
        )) ?: null;
    }

    /**
     * User ids of a thread's members, ascending.
     *
     * @return list<int>
     */
    public static function members(int $thread): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $ids = $wpdb->get_col($wpdb->prepare(
            "SELECT user_id FROM {$t['participants']} WHERE thread_id = %d ORDER BY user_id",
            $thread
        ));
        return array_map('intval', $ids);
    }

    /**
     * Ids of the threads a user belongs to.
     *
     * @return list<int>
     */
    public static function thread_ids_of(int $user): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        return array_map('intval', $wpdb->get_col($wpdb->prepare(
            "SELECT thread_id FROM {$t['participants']} WHERE user_id = %d ORDER BY thread_id",
            $user
        )));
    }

    /**
     * Members of several threads: thread id → user ids, ascending (the
     * keys of read_marks_of(): one query either way).
     *
     * @param list<int> $threads
     * @return array<int,list<int>>
     */
    public static function members_of(array $threads): array
    {
        return array_map('array_keys', self::read_marks_of($threads));
    }

    /**
     * Each member's read mark in several threads: thread id → user id →
     * last read message id, users ascending (the members themselves: a
     * removed member's row, and so their mark, is gone). One query whatever
     * the number of threads, so a page of the thread list costs no more.
     * `$mark`: `last_delivered_id` gives the delivered marks the same way
     * (BM_Relay_Receipts).
     *
     * @param list<int> $threads
     * @return array<int,array<int,int>>
     */
    public static function read_marks_of(array $threads, string $mark = 'last_read_id'): array
    {
        global $wpdb;
        if (!$threads) {
            return [];
        }
        // A column name cannot be a placeholder: one of the two, never input.
        $mark = $mark === 'last_delivered_id' ? 'last_delivered_id' : 'last_read_id';
        $t = BM_Relay_Schema::tables();
        $in = implode(',', array_fill(0, count($threads), '%d'));
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT thread_id, user_id, $mark AS mark FROM {$t['participants']} WHERE thread_id IN ($in) ORDER BY thread_id, user_id",
            ...$threads
        ));
        $out = [];
        foreach ($rows as $r) {
            $out[(int) $r->thread_id][(int) $r->user_id] = (int) $r->mark;
        }
        return $out;
    }

    /**
     * Message rows by id.
     *
     * @param list<int> $ids
     * @return array<int,object>
     */
    public static function messages_by_id(array $ids): array
    {
        global $wpdb;
        if (!$ids) {
            return [];
        }
        $t = BM_Relay_Schema::tables();
        $in = implode(',', array_fill(0, count($ids), '%d'));
        $out = [];
        foreach ($wpdb->get_results($wpdb->prepare("SELECT * FROM {$t['messages']} WHERE id IN ($in)", ...$ids)) as $row) {
            $out[(int) $row->id] = $row;
        }
        return $out;
    }

    /** Adds a member (no-op when already one); returns true when added. */
    public static function add_member(int $thread, int $user, int $epoch): bool
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $last = self::last_message_id($thread);
        // A new member starts with everything before joining already read.
        return (bool) $wpdb->query($wpdb->prepare(
            "INSERT IGNORE INTO {$t['participants']} (thread_id, user_id, unread_count, last_read_id, last_delivered_id, key_epoch, joined_at) VALUES (%d, %d, 0, %d, %d, %d, %s)",
            $thread,
            $user,
            $last,
            $last,
            $epoch,
            self::now()
        ));
    }

    /**
     * Removes a member and bumps the thread's key epoch, so the removed
     * member's key opens nothing sent from now on. Returns the new epoch,
     * or null when the user was not a member.
     */
    public static function remove_member(int $thread, int $user): ?int
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $wpdb->query('START TRANSACTION');
        $gone = $wpdb->query($wpdb->prepare(
            "DELETE FROM {$t['participants']} WHERE thread_id = %d AND user_id = %d",
            $thread,
            $user
        ));
        if (!$gone) {
            $wpdb->query('ROLLBACK');
            return null;
        }
        $wpdb->query($wpdb->prepare(
            "UPDATE {$t['threads']} SET epoch = epoch + 1, updated_at = %s WHERE id = %d",
            self::now(),
            $thread
        ));
        $epoch = (int) $wpdb->get_var($wpdb->prepare("SELECT epoch FROM {$t['threads']} WHERE id = %d", $thread));
        $wpdb->query($wpdb->prepare(
            "UPDATE {$t['participants']} SET key_epoch = %d WHERE thread_id = %d",
            $epoch,
            $thread
        ));
        $wpdb->query('COMMIT');
        return $epoch;
    }

    /**
     * The threads of a user, most recently active first.
     *
     * @return list<object> thread rows joined with the user's participant row
     */
    public static function threads_for(int $user, int $limit, int $offset): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        return $wpdb->get_results($wpdb->prepare(
            "SELECT th.*, p.unread_count, p.last_read_id, p.last_delivered_id FROM {$t['threads']} th
             JOIN {$t['participants']} p ON p.thread_id = th.id AND p.user_id = %d
             ORDER BY th.updated_at DESC, th.last_message_id DESC, th.id DESC LIMIT %d OFFSET %d",
            $user,
            $limit,
            $offset
        ));
    }

    /**
     * Every thread of the site (moderation), newest activity first, with
     * its number of messages; optionally those whose subject contains
     * $search.
     *
     * @return list<object>
     */
    public static function all_threads(int $limit, int $offset, string $search = ''): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $where = '';
        $args = [];
        if ($search !== '') {
            $where = 'WHERE th.subject LIKE %s';
            $args[] = '%' . $wpdb->esc_like($search) . '%';
        }
        $args[] = $limit;
        $args[] = $offset;
        return $wpdb->get_results($wpdb->prepare(
            "SELECT th.*, (SELECT COUNT(*) FROM {$t['messages']} m WHERE m.thread_id = th.id) AS message_count
             FROM {$t['threads']} th $where ORDER BY th.updated_at DESC, th.id DESC LIMIT %d OFFSET %d",
            ...$args
        ));
    }

    /** Stores a message: bumps the thread and the other members' unread counts. */
    public static function insert_message(int $thread, int $sender, string $text): int
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $now = self::now();
        $wpdb->query('START TRANSACTION');
        $ok = $wpdb->query($wpdb->prepare(
            "INSERT INTO {$t['messages']} (thread_id, sender_id, content, created_at) VALUES (%d, %d, %s, %s)",
            $thread,
            $sender,
            $text,
            $now
        ));
        $id = (int) $wpdb->insert_id;
        if (!$ok || $id < 1) {
            $wpdb->query('ROLLBACK');
            throw new RuntimeException('bm-relay: could not store the message: ' . $wpdb->last_error);
        }
        // GREATEST: two messages stored at once may reach this update in
        // either order; the thread's last message is the newer one.
        $wpdb->query($wpdb->prepare(
            "UPDATE {$t['threads']} SET last_message_id = GREATEST(last_message_id, %d), updated_at = %s WHERE id = %d",
            $id,
            $now,
            $thread
        ));
        $wpdb->query($wpdb->prepare(
            "UPDATE {$t['participants']} SET unread_count = unread_count + 1 WHERE thread_id = %d AND user_id <> %d",
            $thread,
            $sender
        ));
        $wpdb->query($wpdb->prepare(
            "UPDATE {$t['participants']} SET last_read_id = %d, last_delivered_id = %d WHERE thread_id = %d AND user_id = %d",
            $id,
            $id,
            $thread,
            $sender
        ));
        $wpdb->query('COMMIT');
        return $id;
    }

    /**
     * A message row.
     *
     * @return object|null
     */
    public static function message(int $id)
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        return $wpdb->get_row($wpdb->prepare("SELECT * FROM {$t['messages']} WHERE id = %d", $id)) ?: null;
    }

    /** Id of a thread's newest message (0 when none). */
    public static function last_message_id(int $thread): int
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        return (int) $wpdb->get_var($wpdb->prepare("SELECT COALESCE(MAX(id), 0) FROM {$t['messages']} WHERE thread_id = %d", $thread));
    }

    /** Replaces a message's text and stamps edited_at. */
    public static function edit_message(int $id, string $text): void
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $wpdb->query($wpdb->prepare(
            "UPDATE {$t['messages']} SET content = %s, edited_at = %s WHERE id = %d AND deleted_at IS NULL",
            $text,
            self::now(),
            $id
        ));
    }

    /**
     * Deletes a message for everyone: the text and its meta are removed, the
     * row stays as a tombstone so catch-up can tell browsers it is gone.
     */
    public static function delete_message(int $id): void
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        /** Before the message's meta rows go (attachments read their links there). */
        do_action('bm_relay_messages_removed', [$id]);
        $wpdb->query($wpdb->prepare(
            "UPDATE {$t['messages']} SET content = '', deleted_at = %s WHERE id = %d",
            self::now(),
            $id
        ));
        $wpdb->query($wpdb->prepare("DELETE FROM {$t['meta']} WHERE message_id = %d", $id));
    }

    /**
     * After messages were removed for good: each thread's last_message_id
     * points at its newest remaining message, and each member's unread
     * count is what is really left after their last-read mark.
     *
     * @param list<int> $threads
     */
    public static function recount_threads(array $threads): void
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        foreach (array_chunk(array_values(array_unique(array_map('intval', $threads))), 200) as $chunk) {
            $in = implode(',', array_fill(0, count($chunk), '%d'));
            $wpdb->query($wpdb->prepare(
                "UPDATE {$t['threads']} th SET th.last_message_id = COALESCE((SELECT MAX(m.id) FROM {$t['messages']} m WHERE m.thread_id = th.id), 0) WHERE th.id IN ($in)",
                ...$chunk
            ));
            $wpdb->query($wpdb->prepare(
                "UPDATE {$t['participants']} p SET p.unread_count = (SELECT COUNT(*) FROM {$t['messages']} m WHERE m.thread_id = p.thread_id AND m.id > p.last_read_id AND m.sender_id <> p.user_id AND m.deleted_at IS NULL) WHERE p.thread_id IN ($in)",
                ...$chunk
            ));
        }
    }

    /**
     * Removes messages and their meta for good (retention, eraser).
     *
     * @param list<int> $ids
     */
    public static function purge_messages(array $ids): void
    {
        global $wpdb;
        if (!$ids) {
            return;
        }
        $t = BM_Relay_Schema::tables();
        $in = implode(',', array_fill(0, count($ids), '%d'));
        /** Before the messages' meta rows go (attachments read their links there). */
        do_action('bm_relay_messages_removed', $ids);
        $wpdb->query($wpdb->prepare("DELETE FROM {$t['meta']} WHERE message_id IN ($in)", ...$ids));
        $wpdb->query($wpdb->prepare("DELETE FROM {$t['messages']} WHERE id IN ($in)", ...$ids));
    }

    /**
     * Messages of a thread after an id (catch-up), ascending; or, with
     * $before, the page before that id (history), also ascending.
     *
     * @return list<object>
     */
    public static function messages(int $thread, int $after, ?int $before, int $limit): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        if ($before !== null) {
            $rows = $wpdb->get_results($wpdb->prepare(
                "SELECT * FROM {$t['messages']} WHERE thread_id = %d AND id > %d AND id < %d ORDER BY id DESC LIMIT %d",
                $thread,
                $after,
                $before,
                $limit
            ));
            return array_reverse($rows);
        }
        return $wpdb->get_results($wpdb->prepare(
            "SELECT * FROM {$t['messages']} WHERE thread_id = %d AND id > %d ORDER BY id ASC LIMIT %d",
            $thread,
            $after,
            $limit
        ));
    }

    /**
     * Reactions of some messages: message id → emoji → user ids.
     *
     * @param list<int> $ids
     * @return array<int,array<string,list<int>>>
     */
    public static function reactions(array $ids): array
    {
        global $wpdb;
        if (!$ids) {
            return [];
        }
        $t = BM_Relay_Schema::tables();
        $in = implode(',', array_fill(0, count($ids), '%d'));
        $args = array_merge($ids, ['reaction']);
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT message_id, user_id, meta_value FROM {$t['meta']} WHERE message_id IN ($in) AND meta_key = %s ORDER BY id",
            ...$args
        ));
        $out = [];
        foreach ($rows as $r) {
            $out[(int) $r->message_id][$r->meta_value][] = (int) $r->user_id;
        }
        return $out;
    }

    /** Adds or removes one user's reaction; true when something changed. */
    public static function set_reaction(int $message, int $user, string $emoji, bool $on): bool
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        if ($on) {
            return (bool) $wpdb->query($wpdb->prepare(
                "INSERT IGNORE INTO {$t['meta']} (message_id, user_id, meta_key, meta_value, created_at) VALUES (%d, %d, 'reaction', %s, %s)",
                $message,
                $user,
                $emoji,
                self::now()
            ));
        }
        return (bool) $wpdb->query($wpdb->prepare(
            "DELETE FROM {$t['meta']} WHERE message_id = %d AND user_id = %d AND meta_key = 'reaction' AND meta_value = %s",
            $message,
            $user,
            $emoji
        ));
    }

    /**
     * Meta key of a pin. A pin row is (message, the user who pinned it,
     * `pin`, the message's thread id as text): the thread in `meta_value`
     * puts a thread's pins in one range of the `key_value` index (schema 6),
     * so listing them reads those rows only, never the thread's messages
     * nor the site's reactions. A message never changes thread, so the
     * copy cannot go stale.
     */
    public const PIN = 'pin';

    /**
     * Pinned messages of several threads: thread id → message ids, in the
     * order they were pinned (one query).
     *
     * @param list<int> $threads
     * @return array<int,list<int>>
     */
    public static function pins_of(array $threads): array
    {
        global $wpdb;
        if (!$threads) {
            return [];
        }
        $t = BM_Relay_Schema::tables();
        $in = implode(',', array_fill(0, count($threads), '%s'));
        $args = array_merge([self::PIN], array_map('strval', $threads));
        // MIN(id): two members pinning one message at the same instant may
        // both get a row (the unique key has the user in it); it is one pin.
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT meta_value AS thread_id, message_id, MIN(id) AS first FROM {$t['meta']}
             WHERE meta_key = %s AND meta_value IN ($in) GROUP BY meta_value, message_id ORDER BY first",
            ...$args
        ));
        $out = [];
        foreach ($rows as $r) {
            $out[(int) $r->thread_id][] = (int) $r->message_id;
        }
        return $out;
    }

    /**
     * Pins a message of a thread for `$user`, unless it is pinned already
     * or the thread has `$max` pins: one statement checks both and inserts,
     * so the window in which two requests could both take the last free pin
     * is one statement's, not a request's (two rows for one message, the
     * same race, are counted once by pins_of()). A statement that fails
     * (InnoDB picks one of two such racing inserts as a deadlock victim)
     * is tried once more.
     *
     * @return string `pinned`, `already` (nothing changed) or `full` (the limit)
     */
    public static function pin(int $thread, int $message, int $user, int $max): string
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        // The checks read the target table as derived tables in FROM: the
        // form MySQL documents for an INSERT … SELECT into the table it
        // reads (not a subquery in WHERE).
        $sql = $wpdb->prepare(
            "INSERT INTO {$t['meta']} (message_id, user_id, meta_key, meta_value, created_at)
             SELECT %d, %d, %s, %s, %s
             FROM (SELECT COUNT(*) AS n FROM {$t['meta']} WHERE message_id = %d AND meta_key = %s) dup,
                  (SELECT COUNT(DISTINCT message_id) AS n FROM {$t['meta']} WHERE meta_key = %s AND meta_value = %s) cnt
             WHERE dup.n = 0 AND cnt.n < %d",
            $message,
            $user,
            self::PIN,
            (string) $thread,
            self::now(),
            $message,
            self::PIN,
            self::PIN,
            (string) $thread,
            $max
        );
        $added = $wpdb->query($sql);
        if ($added === false) {
            $added = $wpdb->query($sql);
        }
        if ($added) {
            return 'pinned';
        }
        return in_array($message, self::pins_of([$thread])[$thread] ?? [], true) ? 'already' : 'full';
    }

    /** Unpins a message (whoever pinned it); true when it was pinned. */
    public static function unpin(int $message): bool
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        return (bool) $wpdb->query($wpdb->prepare(
            "DELETE FROM {$t['meta']} WHERE message_id = %d AND meta_key = %s",
            $message,
            self::PIN
        ));
    }

    /**
     * Marks a thread read up to a message for a user and recounts unread.
     *
     * @return array{last_read_id:int,unread:int}
     */
    public static function mark_read(int $thread, int $user, int $message): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $wpdb->query($wpdb->prepare(
            "UPDATE {$t['participants']} SET last_read_id = GREATEST(last_read_id, %d), last_delivered_id = GREATEST(last_delivered_id, %d) WHERE thread_id = %d AND user_id = %d",
            $message,
            $message,
            $thread,
            $user
        ));
        $last = (int) $wpdb->get_var($wpdb->prepare(
            "SELECT last_read_id FROM {$t['participants']} WHERE thread_id = %d AND user_id = %d",
            $thread,
            $user
        ));
        $unread = (int) $wpdb->get_var($wpdb->prepare(
            "SELECT COUNT(*) FROM {$t['messages']} WHERE thread_id = %d AND id > %d AND sender_id <> %d AND deleted_at IS NULL",
            $thread,
            $last,
            $user
        ));
        $wpdb->query($wpdb->prepare(
            "UPDATE {$t['participants']} SET unread_count = %d WHERE thread_id = %d AND user_id = %d",
            $unread,
            $thread,
            $user
        ));
        return ['last_read_id' => $last, 'unread' => $unread];
    }

    /**
     * Reactions as a list of {emoji, users}: plain arrays, so the same
     * value encodes identically in REST replies and sealed events.
     *
     * @param array<string,list<int>> $reactions
     * @return list<array{emoji:string,users:list<int>}>
     */
    public static function reaction_list(array $reactions): array
    {
        $out = [];
        foreach ($reactions as $emoji => $users) {
            $out[] = ['emoji' => (string) $emoji, 'users' => array_values(array_map('intval', $users))];
        }
        return $out;
    }

    /**
     * The JSON shape of a message, shared by REST replies and pushed events.
     *
     * @param object $row
     * @param array<string,list<int>> $reactions
     * @return array<string,mixed>
     */
    public static function format_message($row, array $reactions = []): array
    {
        $deleted = $row->deleted_at !== null;
        return [
            'id' => (int) $row->id,
            'thread' => (int) $row->thread_id,
            'sender' => (int) $row->sender_id,
            'text' => $deleted ? null : (string) $row->content,
            'created' => self::ts($row->created_at),
            'edited' => self::ts($row->edited_at),
            'deleted' => $deleted,
            'reactions' => $deleted ? [] : self::reaction_list($reactions),
            // Members the text mentions, as WordPress parsed it (BM_Relay_Mentions).
            'mentions' => $deleted ? [] : BM_Relay_Mentions::of((int) $row->id),
        ];
    }
}
