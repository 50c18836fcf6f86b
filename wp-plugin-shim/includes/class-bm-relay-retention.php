<?php
/**
 * Retention: a daily WP-Cron job deletes messages older than the configured
 * number of days and tells the browsers (`message.delete`), so what the
 * site forgets also disappears from open chat pages.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * The auto-delete job.
 */
final class BM_Relay_Retention
{
    /** Cron hook name. */
    public const HOOK = 'bmr_retention';
    /** Messages removed per batch (bounded work per run). */
    private const BATCH = 500;
    /** Batches per run at most. */
    private const MAX_BATCHES = 20;

    /** Schedules the daily run (activation). */
    public static function schedule(): void
    {
        if (!wp_next_scheduled(self::HOOK)) {
            wp_schedule_event(time() + HOUR_IN_SECONDS, 'daily', self::HOOK);
        }
    }

    /** Removes the schedule (deactivation). */
    public static function unschedule(): void
    {
        wp_clear_scheduled_hook(self::HOOK);
    }

    /** The cron callback: deletes what is past retention; returns how many. */
    public static function run(): int
    {
        global $wpdb;
        $days = (int) BM_Relay_Settings::get('bmr_retention_days');
        if ($days < 1) {
            return 0;
        }
        $t = BM_Relay_Schema::tables();
        $cutoff = gmdate('Y-m-d H:i:s', time() - $days * DAY_IN_SECONDS);
        $total = 0;
        for ($i = 0; $i < self::MAX_BATCHES; $i++) {
            $rows = $wpdb->get_results($wpdb->prepare(
                "SELECT id, thread_id FROM {$t['messages']} WHERE created_at < %s ORDER BY id LIMIT %d",
                $cutoff,
                self::BATCH
            ));
            if (!$rows) {
                break;
            }
            BM_Relay_Store::purge_messages(array_map(static fn($r) => (int) $r->id, $rows));
            self::announce_deleted($rows);
            $total += count($rows);
            if (count($rows) < self::BATCH) {
                break;
            }
        }
        return $total;
    }

    /**
     * Pushes `message.delete` for removed messages, thread by thread, in one
     * request.
     *
     * @param list<object> $rows rows with id and thread_id
     */
    public static function announce_deleted(array $rows): void
    {
        $events = [];
        $threads = [];
        foreach ($rows as $row) {
            $tid = (int) $row->thread_id;
            if (!array_key_exists($tid, $threads)) {
                $threads[$tid] = BM_Relay_Store::thread($tid);
            }
            $thread = $threads[$tid];
            if (!$thread) {
                continue;
            }
            $events[] = [
                'type' => 'message.delete',
                'data' => ['id' => (int) $row->id, 'thread' => $tid],
                'to' => BM_Relay_Store::members($tid),
                'thread' => $tid,
                'epoch' => (int) $thread->epoch,
                'live' => true,
            ];
        }
        BM_Relay_Push::send($events);
    }
}
