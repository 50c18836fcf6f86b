<?php

/**
 * Personal-data exporter and eraser, registered with WordPress's privacy
 * tools (Tools → Export/Erase Personal Data).
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Exports and erases a user's messages, reactions and pins.
 */
final class BM_Relay_Privacy
{
    /** Items per page of the export/erase loop. */
    private const PAGE = 100;

    /** Hooks the exporter and the eraser in, and the clean-up of deleted users. */
    public static function register(): void
    {
        // A deleted account leaves its threads (messages stay, like posts
        // of a deleted author; the eraser removes them on request).
        add_action('deleted_user', static function ($user_id): void {
            BM_Relay_Push::remove_everywhere((int) $user_id);
        });
        add_filter('wp_privacy_personal_data_exporters', static function (array $exporters): array {
            $exporters['bm-relay'] = [
                'exporter_friendly_name' => __('Chat messages (bm-relay)', 'bm-relay'),
                'callback' => [self::class, 'export'],
            ];
            return $exporters;
        });
        add_filter('wp_privacy_personal_data_erasers', static function (array $erasers): array {
            $erasers['bm-relay'] = [
                'eraser_friendly_name' => __('Chat messages (bm-relay)', 'bm-relay'),
                'callback' => [self::class, 'erase'],
            ];
            return $erasers;
        });
    }

    /**
     * Exporter: one item per message the user sent (deleted ones excluded),
     * then one per reaction, then one per message they pinned, PAGE items
     * a page: each kind fills whole pages of its own (pages 1 … M the
     * messages, then the reactions, then the pins), so a page is one query
     * at a known offset whatever came before it.
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
        $t = BM_Relay_Schema::tables();
        $page = max(1, $page);
        $counts = [
            'messages' => (int) $wpdb->get_var($wpdb->prepare(
                "SELECT COUNT(*) FROM {$t['messages']} WHERE sender_id = %d AND deleted_at IS NULL",
                $user->ID
            )),
            'reaction' => self::meta_count((int) $user->ID, 'reaction'),
            BM_Relay_Store::PIN => self::meta_count((int) $user->ID, BM_Relay_Store::PIN),
        ];
        $first = 1;
        $kinds = array_keys($counts);
        foreach ($kinds as $i => $kind) {
            $pages = (int) ceil($counts[$kind] / self::PAGE);
            if ($page < $first + $pages) {
                $offset = ($page - $first) * self::PAGE;
                $data = $kind === 'messages' ? self::export_messages((int) $user->ID, $offset) : self::export_meta((int) $user->ID, $kind, $offset);
                $later = array_sum(array_slice(array_values($counts), $i + 1));
                return ['data' => $data, 'done' => $page === $first + $pages - 1 && $later === 0];
            }
            $first += $pages;
        }
        return ['data' => [], 'done' => true];
    }

    /** How many meta rows of one kind a user has. */
    private static function meta_count(int $user, string $key): int
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        return (int) $wpdb->get_var($wpdb->prepare("SELECT COUNT(*) FROM {$t['meta']} WHERE user_id = %d AND meta_key = %s", $user, $key));
    }

    /**
     * One page of the export's messages.
     *
     * @return list<array>
     */
    private static function export_messages(int $user, int $offset): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT m.*, th.subject FROM {$t['messages']} m JOIN {$t['threads']} th ON th.id = m.thread_id
             WHERE m.sender_id = %d AND m.deleted_at IS NULL ORDER BY m.id LIMIT %d OFFSET %d",
            $user,
            self::PAGE,
            $offset
        ));
        $data = [];
        foreach ($rows as $row) {
            $data[] = [
                'group_id' => 'bm-relay-messages',
                'group_label' => __('Chat messages', 'bm-relay'),
                'item_id' => 'bm-relay-message-' . (int) $row->id,
                'data' => [
                    ['name' => __('Thread', 'bm-relay'), 'value' => (int) $row->thread_id . ($row->subject !== '' ? ' — ' . $row->subject : '')],
                    ['name' => __('Sent (UTC)', 'bm-relay'), 'value' => $row->created_at],
                    ['name' => __('Message', 'bm-relay'), 'value' => $row->content],
                ],
            ];
        }
        return $data;
    }

    /**
     * One page of the export's reactions or pins (message meta rows).
     *
     * @return list<array>
     */
    private static function export_meta(int $user, string $key, int $offset): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT id, message_id, meta_value, created_at FROM {$t['meta']} WHERE user_id = %d AND meta_key = %s ORDER BY id LIMIT %d OFFSET %d",
            $user,
            $key,
            self::PAGE,
            $offset
        ));
        $data = [];
        foreach ($rows as $r) {
            if ($key === BM_Relay_Store::PIN) {
                $data[] = [
                    'group_id' => 'bm-relay-pins',
                    'group_label' => __('Chat messages pinned', 'bm-relay'),
                    'item_id' => 'bm-relay-pin-' . (int) $r->id,
                    'data' => [
                        ['name' => __('Thread', 'bm-relay'), 'value' => (int) $r->meta_value],
                        ['name' => __('Message', 'bm-relay'), 'value' => (int) $r->message_id],
                        ['name' => __('Pinned (UTC)', 'bm-relay'), 'value' => $r->created_at],
                    ],
                ];
                continue;
            }
            $data[] = [
                'group_id' => 'bm-relay-reactions',
                'group_label' => __('Chat reactions', 'bm-relay'),
                'item_id' => 'bm-relay-reaction-' . (int) $r->id,
                'data' => [
                    ['name' => __('Message', 'bm-relay'), 'value' => (int) $r->message_id],
                    ['name' => __('Reaction', 'bm-relay'), 'value' => $r->meta_value],
                    ['name' => __('Time (UTC)', 'bm-relay'), 'value' => $r->created_at],
                ],
            ];
        }
        return $data;
    }

    /**
     * Eraser: removes the user's messages (pushing `message.delete` to the
     * threads), reactions and memberships.
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
        $t = BM_Relay_Schema::tables();
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT id, thread_id FROM {$t['messages']} WHERE sender_id = %d ORDER BY id LIMIT %d",
            $user->ID,
            self::PAGE
        ));
        $ids = array_map(static fn($r) => (int) $r->id, $rows);
        BM_Relay_Store::purge_messages($ids);
        BM_Relay_Retention::announce_deleted($rows);
        BM_Relay_Store::recount_threads(array_map(static fn($r) => (int) $r->thread_id, $rows));
        $removed = (bool) $ids;
        $done = count($rows) < self::PAGE;
        $retained = false;
        $messages = [];
        if ($done) {
            $removed = (bool) $wpdb->query($wpdb->prepare("DELETE FROM {$t['meta']} WHERE user_id = %d", $user->ID)) || $removed;
            // Leaving every thread bumps its epoch: the erased user's keys
            // open nothing sent afterwards.
            $removed = BM_Relay_Push::remove_everywhere((int) $user->ID) > 0 || $removed;
            // What is kept, and why: conversations this user started stay
            // for their other members (their subject and the creator's id).
            $started = (int) $wpdb->get_var($wpdb->prepare("SELECT COUNT(*) FROM {$t['threads']} WHERE created_by = %d", $user->ID));
            if ($started > 0) {
                $retained = true;
                $messages[] = sprintf(
                    /* translators: %d: number of conversations */
                    _n(
                        'Kept %d chat conversation this user started (its subject and starter): its other members still use it. The user\'s messages, reactions and memberships were removed.',
                        'Kept %d chat conversations this user started (their subjects and starter): their other members still use them. The user\'s messages, reactions and memberships were removed.',
                        $started,
                        'bm-relay'
                    ),
                    $started
                );
            }
        }
        return ['items_removed' => $removed, 'items_retained' => $retained, 'messages' => $messages, 'done' => $done];
    }
}
