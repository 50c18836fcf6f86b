<?php
/**
 * Personal-data exporter and eraser, registered with WordPress's privacy
 * tools (Tools → Export/Erase Personal Data).
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Exports and erases a user's messages and reactions.
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
     * Exporter: one item per message the user sent (deleted ones excluded).
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
        $offset = (max(1, $page) - 1) * self::PAGE;
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT m.*, th.subject FROM {$t['messages']} m JOIN {$t['threads']} th ON th.id = m.thread_id
             WHERE m.sender_id = %d AND m.deleted_at IS NULL ORDER BY m.id LIMIT %d OFFSET %d",
            $user->ID,
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
        if ($page === 1) {
            $reactions = $wpdb->get_results($wpdb->prepare(
                "SELECT message_id, meta_value, created_at FROM {$t['meta']} WHERE user_id = %d AND meta_key = %s ORDER BY id",
                $user->ID,
                'reaction'
            ));
            foreach ($reactions as $r) {
                $data[] = [
                    'group_id' => 'bm-relay-reactions',
                    'group_label' => __('Chat reactions', 'bm-relay'),
                    'item_id' => 'bm-relay-reaction-' . (int) $r->message_id . '-' . md5($r->meta_value),
                    'data' => [
                        ['name' => __('Message', 'bm-relay'), 'value' => (int) $r->message_id],
                        ['name' => __('Reaction', 'bm-relay'), 'value' => $r->meta_value],
                        ['name' => __('Time (UTC)', 'bm-relay'), 'value' => $r->created_at],
                    ],
                ];
            }
        }
        return ['data' => $data, 'done' => count($rows) < self::PAGE];
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
        $removed = (bool) $ids;
        $done = count($rows) < self::PAGE;
        if ($done) {
            $removed = (bool) $wpdb->query($wpdb->prepare("DELETE FROM {$t['meta']} WHERE user_id = %d", $user->ID)) || $removed;
            // Leaving every thread bumps its epoch: the erased user's keys
            // open nothing sent afterwards.
            $removed = BM_Relay_Push::remove_everywhere((int) $user->ID) > 0 || $removed;
        }
        return ['items_removed' => $removed, 'items_retained' => false, 'messages' => [], 'done' => $done];
    }
}
