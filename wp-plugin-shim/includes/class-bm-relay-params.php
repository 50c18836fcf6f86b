<?php

/**
 * Argument validation of the REST API `bm/v1`: each function takes a raw
 * request parameter and returns the clean value or a WP_Error that names
 * the parameter (400, or 413 for a too long message). No database, no
 * push: the routes (BM_Relay_REST) call these in the order they always
 * checked, so which error a bad request gets does not depend on the split.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Request parameters of the chat routes.
 */
final class BM_Relay_Params
{
    /** Largest id (2^53 - 1), as in the protocol. */
    public const MAX_ID = 9007199254740991;
    /** Ids accepted in one `participants` list (bounds the work; the member limit is BM_Relay_Limits). */
    public const MAX_PARTICIPANTS_PARAM = 1000;

    /**
     * A positive id (1 … 2^53-1) from a parameter, or a WP_Error naming it.
     *
     * @param mixed $value
     * @return int|WP_Error
     */
    public static function id($value, string $name, bool $allow_zero = false)
    {
        if (is_int($value)) {
            $value = (string) $value;
        }
        if (!is_string($value) || !preg_match('/^\d{1,16}$/D', $value)) {
            return self::bad($name, __('must be a positive integer', 'bm-relay'));
        }
        $n = (int) $value;
        if ($n > self::MAX_ID || (!$allow_zero && $n < 1)) {
            return self::bad($name, __('is out of range', 'bm-relay'));
        }
        return $n;
    }

    /** A 400 error naming a parameter. */
    public static function bad(string $name, string $what): WP_Error
    {
        /* translators: 1: parameter name, 2: what is wrong with it */
        return new WP_Error('bm_relay_invalid_param', sprintf(__('Invalid parameter %1$s: %2$s.', 'bm-relay'), $name, $what), ['status' => 400, 'param' => $name]);
    }

    /**
     * `page` (default 1) and `per_page` (default 50, at most 100) of a
     * listing route.
     *
     * @return array{0:int,1:int}|WP_Error
     */
    public static function paging(WP_REST_Request $request)
    {
        $page = self::id($request->get_param('page') ?? '1', 'page');
        if ($page instanceof WP_Error) {
            return $page;
        }
        $per = self::id($request->get_param('per_page') ?? '50', 'per_page');
        if ($per instanceof WP_Error) {
            return $per;
        }
        if ($per > 100) {
            return self::bad('per_page', __('must be at most 100', 'bm-relay'));
        }
        return [$page, $per];
    }

    /**
     * Message text from a parameter: a non-empty UTF-8 string within the
     * length limit (413 over it). Control characters other than newline and
     * tab are removed; HTML is kept as text (the client renders text).
     *
     * @param mixed $value
     * @return string|WP_Error
     */
    public static function text($value)
    {
        if (!is_string($value)) {
            return self::bad('text', __('must be a string', 'bm-relay'));
        }
        if (wp_check_invalid_utf8($value) !== $value) {
            return self::bad('text', __('must be valid UTF-8', 'bm-relay'));
        }
        $text = trim((string) preg_replace('/[\x00-\x08\x0B-\x1F\x7F]/u', '', $value));
        if ($text === '') {
            return self::bad('text', __('must not be empty', 'bm-relay'));
        }
        $max = max(1, (int) BM_Relay_Settings::get('bmr_max_length'));
        if (mb_strlen($text, 'UTF-8') > $max || strlen($text) > 60000) {
            /* translators: %d: maximum number of characters */
            return new WP_Error('bm_relay_too_long', sprintf(__('Message is too long (at most %d characters).', 'bm-relay'), $max), ['status' => 413, 'param' => 'text']);
        }
        return $text;
    }

    /**
     * The other members of a new thread from `participants`: a non-empty
     * list of ids of this site's users (at most MAX_PARTICIPANTS_PARAM),
     * the creator and repeats left out, someone left.
     *
     * @param mixed $raw
     * @return list<int>|WP_Error
     */
    public static function participants($raw, int $me)
    {
        if (!is_array($raw) || !$raw) {
            return self::bad('participants', __('must be a non-empty list of user ids', 'bm-relay'));
        }
        if (count($raw) > self::MAX_PARTICIPANTS_PARAM) {
            /* translators: %d: maximum number of participants */
            return self::bad('participants', sprintf(__('must hold at most %d users', 'bm-relay'), self::MAX_PARTICIPANTS_PARAM));
        }
        $members = [];
        foreach (array_values($raw) as $i => $v) {
            $id = self::id($v, "participants[$i]");
            if ($id instanceof WP_Error) {
                return $id;
            }
            if (!get_userdata($id)) {
                return self::bad("participants[$i]", __('is not a user of this site', 'bm-relay'));
            }
            if ($id !== $me) {
                $members[] = $id;
            }
        }
        $members = array_values(array_unique($members));
        if (!$members) {
            return self::bad('participants', __('must name someone other than yourself', 'bm-relay'));
        }
        return $members;
    }

    /**
     * A thread subject (default empty): UTF-8, at most 200 characters, as
     * given (the service sanitizes it for storage).
     *
     * @param mixed $value
     * @return string|WP_Error
     */
    public static function subject($value)
    {
        $subject = $value ?? '';
        if (!is_string($subject) || wp_check_invalid_utf8($subject) !== $subject || mb_strlen($subject, 'UTF-8') > 200) {
            return self::bad('subject', __('must be a string of at most 200 characters', 'bm-relay'));
        }
        return $subject;
    }

    /**
     * A page's own id of a message it sends (echoed back so its pending
     * copy and the pushed one are one message), or null when absent.
     *
     * @param mixed $value
     * @return string|null|WP_Error
     */
    public static function client_id($value)
    {
        if ($value !== null && (!is_string($value) || !preg_match('/^[A-Za-z0-9_-]{1,64}$/D', $value))) {
            return self::bad('client_id', __('must match [A-Za-z0-9_-]{1,64}', 'bm-relay'));
        }
        return $value;
    }

    /**
     * One emoji or short code: at most 16 characters (64 bytes), UTF-8, no
     * white space, controls or markup characters (it is shown as text and
     * used as a key).
     *
     * @param mixed $value
     * @return string|WP_Error
     */
    public static function emoji($value)
    {
        if (
            !is_string($value) || $value === '' || mb_strlen($value, 'UTF-8') > 16 || strlen($value) > 64
            || wp_check_invalid_utf8($value) !== $value || preg_match('/[\s\x00-\x1F\x7F<>&"\']/u', $value)
        ) {
            return self::bad('emoji', __('must be one emoji or short code (at most 16 characters, no spaces)', 'bm-relay'));
        }
        return $value;
    }

    /**
     * A yes/no parameter as JSON or a form sends it (true, 'true', '1', 1);
     * anything else is no.
     *
     * @param mixed $value
     */
    public static function flag($value): bool
    {
        return $value === true || $value === 'true' || $value === '1' || $value === 1;
    }

    /**
     * Thread ids from `threads` (a list, or a comma-separated string): at
     * most 50.
     *
     * @param mixed $raw
     * @return list<int>|WP_Error
     */
    public static function thread_ids($raw)
    {
        if (is_string($raw)) {
            $raw = $raw === '' ? [] : explode(',', $raw);
        }
        if (!is_array($raw) || count($raw) > 50) {
            return self::bad('threads', __('must be a list of at most 50 thread ids', 'bm-relay'));
        }
        $ids = [];
        foreach (array_values($raw) as $i => $v) {
            $id = self::id(is_string($v) ? trim($v) : $v, "threads[$i]");
            if ($id instanceof WP_Error) {
                return $id;
            }
            $ids[] = $id;
        }
        return $ids;
    }

    /**
     * A people search: a UTF-8 string of 2 to 60 characters, trimmed.
     *
     * @param mixed $value
     * @return string|WP_Error
     */
    public static function search($value)
    {
        if (!is_string($value) || wp_check_invalid_utf8($value) !== $value) {
            return self::bad('search', __('must be a string', 'bm-relay'));
        }
        $search = trim($value);
        if (mb_strlen($search, 'UTF-8') < 2 || mb_strlen($search, 'UTF-8') > 60) {
            return self::bad('search', __('must be 2 to 60 characters', 'bm-relay'));
        }
        return $search;
    }
}
