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
    /** Messages removed per batch. */
    private const BATCH = 500;
    /** Seconds one run may work; what is left is done by a follow-up run. */
    private const RUN_SECONDS = 20;

    /** Schedules the daily run (activation, and every run: it reschedules itself). */
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

    /**
     * The cron callback: deletes everything past retention, in batches,
     * for at most RUN_SECONDS; when more is due, a follow-up run is
     * scheduled a minute later (so nothing due waits for tomorrow). Then
     * the unread counts and last-message ids of the touched threads are
     * recounted. Returns how many messages were deleted.
     */
    public static function run(): int
    {
        global $wpdb;
        self::schedule();
        $days = (int) BM_Relay_Settings::get('bmr_retention_days');
        if ($days < 1) {
            return 0;
        }
        $t = BM_Relay_Schema::tables();
        $cutoff = gmdate('Y-m-d H:i:s', time() - $days * DAY_IN_SECONDS);
        $total = 0;
        $threads = [];
        $until = microtime(true) + (float) apply_filters('bm_relay_retention_run_seconds', self::RUN_SECONDS);
        $more = false;
        while (true) {
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
            foreach ($rows as $r) {
                $threads[(int) $r->thread_id] = true;
            }
            $total += count($rows);
            if (count($rows) < self::BATCH) {
                break;
            }
            if (microtime(true) > $until) {
                $more = true;
                break;
            }
        }
        BM_Relay_Store::recount_threads(array_keys($threads));
        if ($more) {
            wp_schedule_single_event(time() + MINUTE_IN_SECONDS, self::HOOK);
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
        $by_thread = [];
        foreach ($rows as $row) {
            $by_thread[(int) $row->thread_id][] = (int) $row->id;
        }
        $events = [];
        foreach ($by_thread as $tid => $ids) {
            $thread = BM_Relay_Store::thread($tid);
            if (!$thread) {
                continue;
            }
            // Numbered like every thread event (PROTOCOL.md §4.1): the run
            // of numbers for this thread's deletions in one statement.
            $seq = BM_Relay_Store::next_seq($tid, count($ids)) - count($ids);
            $members = BM_Relay_Store::members($tid);
            foreach ($ids as $id) {
                $events[] = BM_Relay_Push::thread_event_array($thread, 'message.delete', ['id' => $id], null, ++$seq, $members);
            }
        }
        BM_Relay_Push::send($events);
    }
}
