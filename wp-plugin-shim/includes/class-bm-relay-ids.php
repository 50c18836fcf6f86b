<?php

/**
 * The ids the relay sees (docs/PROTOCOL.md §3.2).
 *
 * In protocol 2 the relay never learns a WordPress user or thread id: the
 * PHP API (extension or fallback, `bm_relay.protocol = 2`) puts pseudonyms
 * in everything it sends or mints, and maps the relay's answers back. The
 * plugin only has to say the same ids to the browser: a page subscribes
 * to thread pseudonyms, sees pseudonyms in typing hints and presence, and
 * finds its keys under pseudonymous key ids (`t/{P}/{epoch}`, `u/{P}`). So
 * this class gives, per id, what the relay knows it by; the page maps
 * back with the table WordPress hands it (POST /token, thread shapes).
 *
 * In protocol 1 every id is its own wire id.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Wire ids of users and threads, for the protocol this site speaks.
 */
final class BM_Relay_Ids
{
    /** Option holding the protocol this site speaks to its relay, '1' or '2'. */
    public const OPTION = 'bmr_protocol';

    /** @var array<string,int> pseudonyms computed in this request ("user/12" => P) */
    private static array $cache = [];

    /**
     * The protocol this site speaks: 2 unless the option says 1. A new
     * install records 2; an install upgraded from a release that spoke
     * only v1 records 1 (BM_Relay_Schema::install), so an upgrade never
     * switches protocol under a relay the admin has not upgraded yet.
     */
    public static function protocol(): int
    {
        return (string) get_option(self::OPTION, '2') === '1' ? 1 : 2;
    }

    /** What the relay knows user `$id` by. */
    public static function user(int $id): int
    {
        return self::wire('user', $id);
    }

    /** What the relay knows thread `$id` by. */
    public static function thread(int $id): int
    {
        return self::wire('thread', $id);
    }

    /** The key id of a thread's key of `$epoch`, as in envelopes. */
    public static function thread_kid(int $id, int $epoch): string
    {
        return 't/' . self::thread($id) . '/' . $epoch;
    }

    /** The key id of a user's own key, as in envelopes. */
    public static function user_kid(int $id): string
    {
        return 'u/' . self::user($id);
    }

    private static function wire(string $kind, int $id): int
    {
        if (self::protocol() === 1) {
            return $id;
        }
        // One HMAC per id and request (a /token answer names up to 500
        // threads and their members); keyed by blog, since each blog of a
        // network has its own secret and so its own pseudonyms.
        $key = get_current_blog_id() . '/' . $kind . '/' . $id;
        if (!isset(self::$cache[$key])) {
            try {
                self::$cache[$key] = (int) bm_pseudonym($kind, $id);
            } catch (BmRelayException $e) {
                // No secret (the relay is not configured): nothing reaches
                // a relay, and a page is given no keys or tokens; 0 names
                // no wire id (a page learns none from it).
                return 0;
            }
        }
        return self::$cache[$key];
    }
}
