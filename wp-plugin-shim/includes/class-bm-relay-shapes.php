<?php

/**
 * The JSON shapes of the REST API `bm/v1` (docs/PLUGIN.md): people,
 * members, threads, messages, the moderators' thread list and the thread
 * a `thread.added` event carries. Kept apart from the routes and the
 * service so that a shape has one definition whatever returns it, and a
 * feature that adds a field (attachments, pins, receipts) adds it here.
 * Reads the store (in a fixed number of queries per list), writes nothing.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * JSON shapes of the chat's REST answers and events.
 */
final class BM_Relay_Shapes
{
    /**
     * Public profile of a user for the chat page.
     *
     * @return array{id:int,name:string,avatar:string}
     */
    public static function person(int $id): array
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
    public static function member(int $id): array
    {
        return ['wire' => BM_Relay_Ids::user($id)] + self::person($id);
    }

    /**
     * The JSON shape of a thread for one member, with its current key.
     *
     * @param object $thread a thread row; with unread_count/last_read_id when joined
     * @return array<string,mixed>
     */
    public static function thread(object $thread, int $user): array
    {
        return self::threads([$thread], $user)[0];
    }

    /**
     * Several threads at once, with a fixed number of queries whatever
     * their count (members and read marks, pins, last messages, their
     * reactions, user profiles).
     *
     * @param list<object> $threads
     * @return list<array<string,mixed>>
     */
    public static function threads(array $threads, int $user): array
    {
        if (!$threads) {
            return [];
        }
        $ids = array_map(static fn($t) => (int) $t->id, $threads);
        $marks = BM_Relay_Store::read_marks_of($ids);
        $members = array_map('array_keys', $marks);
        $pins = BM_Relay_Store::pins_of($ids);
        $delivered = BM_Relay_Store::read_marks_of($ids, 'last_delivered_id');
        $last_ids = array_values(array_filter(array_map(static fn($t) => (int) $t->last_message_id, $threads)));
        $last_rows = BM_Relay_Store::messages_by_id($last_ids);
        $reactions = BM_Relay_Store::reactions($last_ids);
        // Before format_message(), which reads the mentions from this cache.
        BM_Relay_Mentions::prime($last_ids);
        // The last messages with their attachment references (two queries
        // for all): a files-only message previews by its files' names.
        $last = [];
        foreach (BM_Relay_Attachments::add_refs(array_values(array_map(static fn($row) => BM_Relay_Store::format_message($row, $reactions[(int) $row->id] ?? []), $last_rows))) as $m) {
            $last[(int) $m['id']] = $m;
        }
        $mentions = BM_Relay_Mentions::unread_by_thread($user, $ids);
        $people = array_values(array_unique(array_merge([], ...array_values($members))));
        if ($people) {
            cache_users($people);
        }
        $out = [];
        foreach ($threads as $thread) {
            $tid = (int) $thread->id;
            $me = isset($thread->unread_count) ? $thread : BM_Relay_Store::membership($tid, $user);
            $out[] = [
                'id' => $tid,
                'subject' => (string) $thread->subject,
                'created_by' => (int) $thread->created_by,
                'created' => BM_Relay_Store::ts($thread->created_at),
                'updated' => BM_Relay_Store::ts($thread->updated_at),
                'participants' => self::participants($marks[$tid] ?? [], $me !== null, $delivered[$tid] ?? []),
                'unread' => $me ? (int) $me->unread_count : 0,
                'last_read_id' => $me ? (int) $me->last_read_id : 0,
                'last_message' => $last[(int) $thread->last_message_id] ?? null,
                // Pinned messages, in the order they were pinned (their
                // text: GET /threads/{id}/pins, or the pin event).
                'pinned' => $pins[$tid] ?? [],
                // Messages past the read mark that mention this user (the "@" in their list).
                'mentions' => $me ? ($mentions[$tid] ?? 0) : 0,
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

    /**
     * A thread's members as its shape lists them. For a member viewing it,
     * each one's read mark (`last_read_id`), so a page loaded afresh shows
     * who read what, not only what was pushed to it while open; for a
     * moderator who is not a member, null: when people read is for the
     * conversation's own members. The same for the delivered mark
     * (`last_delivered_id`, BM_Relay_Receipts): "delivered" under a message
     * survives a reload too.
     *
     * @param array<int,int> $marks user id → last read message id
     * @param array<int,int> $delivered user id → last delivered message id
     * @return list<array<string,mixed>>
     */
    private static function participants(array $marks, bool $for_member, array $delivered = []): array
    {
        $out = [];
        foreach ($marks as $user => $last_read) {
            $out[] = self::member((int) $user) + [
                'last_read_id' => $for_member ? $last_read : null,
                'last_delivered_id' => $for_member ? ($delivered[$user] ?? 0) : null,
            ];
        }
        return $out;
    }

    /**
     * One stored message with its reactions; `$reactions` null reads them
     * (one query), an array is used as it is (a message just stored has none).
     *
     * @param array<string,list<int>>|null $reactions
     * @return array<string,mixed>
     */
    public static function message(object $row, ?array $reactions = null): array
    {
        if ($reactions === null) {
            $reactions = BM_Relay_Store::reactions([(int) $row->id])[(int) $row->id] ?? [];
        }
        return BM_Relay_Attachments::add_refs([BM_Relay_Store::format_message($row, $reactions)])[0];
    }

    /**
     * Several messages with their reactions, read in one query.
     *
     * @param list<object> $rows
     * @return list<array<string,mixed>>
     */
    public static function messages(array $rows): array
    {
        $reactions = BM_Relay_Store::reactions(array_map(static fn($r) => (int) $r->id, $rows));
        BM_Relay_Mentions::prime(array_map(static fn($r) => (int) $r->id, $rows));
        $messages = [];
        foreach ($rows as $row) {
            $messages[] = BM_Relay_Store::format_message($row, $reactions[(int) $row->id] ?? []);
        }
        return BM_Relay_Attachments::add_refs($messages);
    }

    /**
     * Threads as a moderator's list shows them: id, subject, creator,
     * members (profiles, no wire ids: a moderator is not on the relay for
     * them), message count, times.
     *
     * @param list<object> $rows rows of BM_Relay_Store::all_threads()
     * @return list<array<string,mixed>>
     */
    public static function moderation_threads(array $rows): array
    {
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
        return $out;
    }

    /**
     * The thread a `thread.added` event carries (its keys travel beside it).
     *
     * @param list<int> $participants
     * @return array{id:int,subject:string,created_by:int,participants:list<int>}
     */
    public static function added_thread(object $thread, array $participants): array
    {
        return [
            'id' => (int) $thread->id,
            'subject' => (string) $thread->subject,
            'created_by' => (int) $thread->created_by,
            'participants' => $participants,
        ];
    }
}
