<?php

/**
 * Search: `GET /bm/v1/search?q=&page=&per_page=` finds messages of the
 * threads the user is a member of now, by words, newest first.
 *
 * The index is a FULLTEXT (InnoDB) index on the messages' content
 * (`content_ft`, schema 7): a term costs one lookup in it, whatever the
 * size of the table, where a LIKE '%word%' reads every message. FULLTEXT
 * does two things badly, and they are handled so:
 * - words shorter than `innodb_ft_min_token_size` (3 by default) and
 *   InnoDB's stopwords ("the", "with", …) are not in the index. Such terms
 *   are matched with LIKE '%term%' (a substring, case-insensitive by the
 *   table's collation), but only on the rows the indexed terms found, so
 *   the index still bounds the work. A query with no indexed term at all
 *   (only short or common words) is refused with a 400 saying "at least 3
 *   letters", instead of scanning the user's whole history.
 * - its boolean mode has operators (+ - > < ( ) ~ * " @). The query is
 *   rebuilt from the words alone (letters, digits and _, as InnoDB's
 *   parser splits them): every term required (`+`), the last one a prefix
 *   (`*`), so a user's text can never change the query's meaning, and it
 *   goes to MySQL through $wpdb->prepare() all the same.
 *
 * Deleted messages are left out (their content is emptied as well). The
 * snippet is the message's text around the first match, HTML-escaped,
 * with the terms in `<mark>`: the only markup in it is ours.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * The search route, its query builder and the result's snippets.
 */
final class BM_Relay_Search
{
    /** Longest query text accepted, in characters. */
    public const MAX_CHARS = 200;

    /** Most terms in one query (each is an index lookup or a LIKE). */
    public const MAX_TERMS = 8;

    /**
     * Messages in a user's threads up to which search reads them all
     * (REGEXP) rather than asking the FULLTEXT index (filter
     * `bm_relay_search_scan_max`; 0 = always the index). 2,000 rows are a
     * few milliseconds; the index costs more than that for a word common
     * across the site.
     */
    public const SCAN_MAX = 2000;

    /** Default page size of the route. */
    public const PER_PAGE = 20;

    /**
     * InnoDB's longest indexed word (`innodb_ft_max_token_size` defaults to
     * 84); a longer term is matched with LIKE.
     */
    private const MAX_TOKEN = 84;

    /** Characters of context kept before the first match in a snippet. */
    private const BEFORE = 50;

    /** Characters of a snippet at most (plus the ellipses). */
    private const SNIPPET = 180;

    /**
     * InnoDB's default stopword list (information_schema
     * INNODB_FT_DEFAULT_STOPWORD): never indexed, so never looked up; a
     * site with its own list says so with `bm_relay_search_stopwords`.
     */
    public const STOPWORDS = [
        'a', 'about', 'an', 'are', 'as', 'at', 'be', 'by', 'com', 'de', 'en', 'for', 'from', 'how', 'i', 'in', 'is', 'it',
        'la', 'of', 'on', 'or', 'that', 'the', 'this', 'to', 'was', 'what', 'when', 'where', 'who', 'will', 'with', 'und', 'www',
    ];

    /** Hooks the route in (rest_api_init). */
    public static function register(): void
    {
        add_action('rest_api_init', [self::class, 'register_routes']);
    }

    /** The route: the same permission check (login, nonce, capability) as every bm/v1 route. */
    public static function register_routes(): void
    {
        register_rest_route(BM_Relay_REST::NS, '/search', [
            ['methods' => 'GET', 'callback' => [self::class, 'search'], 'permission_callback' => [BM_Relay_REST::class, 'check']],
        ]);
    }

    /**
     * GET /search?q=&page=&per_page= — the current user's messages matching
     * every word of `q`, newest first; the page's results and, in the body
     * and in X-WP-Total / X-WP-TotalPages, how many there are.
     *
     * @return WP_REST_Response|WP_Error
     */
    public static function search(WP_REST_Request $request)
    {
        $terms = self::parse($request->get_param('q'));
        if ($terms instanceof WP_Error) {
            return $terms;
        }
        $paging = BM_Relay_Params::paging($request);
        if ($paging instanceof WP_Error) {
            return $paging;
        }
        [$page, $per] = $paging;
        if ($request->get_param('per_page') === null) {
            $per = self::PER_PAGE;
        }
        $found = self::find(get_current_user_id(), $terms, $per, ($page - 1) * $per);
        $pages = (int) ceil($found['total'] / $per);
        $res = new WP_REST_Response([
            'results' => self::shape($found['rows'], $terms),
            'total' => $found['total'],
            'total_pages' => $pages,
            'page' => $page,
            'per_page' => $per,
            'has_more' => $page < $pages,
        ]);
        $res->header('X-WP-Total', (string) $found['total']);
        $res->header('X-WP-TotalPages', (string) $pages);
        return $res;
    }

    /**
     * The terms of a query text: its words (runs of letters, digits and _,
     * lowercased, each once), each marked `ft` when the FULLTEXT index has
     * it, else `like`; the last word of the text is a prefix. A 400 when
     * the text is not a string, is empty or too long, has too many words,
     * or no word the index holds.
     *
     * @param mixed $q
     * @return list<array{term:string,ft:bool,prefix:bool}>|WP_Error
     */
    public static function parse($q)
    {
        if (!is_string($q) || wp_check_invalid_utf8($q) !== $q) {
            return BM_Relay_Params::bad('q', __('must be a string', 'bm-relay'));
        }
        $q = trim($q);
        if ($q === '' || mb_strlen($q, 'UTF-8') > self::MAX_CHARS) {
            /* translators: %d: most characters */
            return BM_Relay_Params::bad('q', sprintf(__('must be 1 to %d characters', 'bm-relay'), self::MAX_CHARS));
        }
        // The words alone: every boolean operator, quote and space is a
        // separator here, so none reaches MATCH … AGAINST.
        preg_match_all('/[\p{L}\p{N}_]+/u', $q, $m);
        // Each word once, at its last place: the word typed last stays last (the prefix).
        $words = array_values(array_reverse(array_unique(array_reverse(array_map(static fn($w) => mb_strtolower($w, 'UTF-8'), $m[0])))));
        if (!$words) {
            return self::too_short();
        }
        if (count($words) > self::MAX_TERMS) {
            /* translators: %d: most words */
            return BM_Relay_Params::bad('q', sprintf(__('must have at most %d words', 'bm-relay'), self::MAX_TERMS));
        }
        $min = self::min_token();
        $stop = array_map('strval', (array) apply_filters('bm_relay_search_stopwords', self::STOPWORDS));
        $terms = [];
        $indexed = false;
        foreach ($words as $i => $w) {
            $len = mb_strlen($w, 'UTF-8');
            $ft = $len >= $min && $len <= self::MAX_TOKEN && !in_array($w, $stop, true);
            $indexed = $indexed || $ft;
            $terms[] = ['term' => $w, 'ft' => $ft, 'prefix' => $i === count($words) - 1];
        }
        if (!$indexed) {
            return self::too_short();
        }
        return $terms;
    }

    /** The 400 of a query without a word the index holds. */
    private static function too_short(): WP_Error
    {
        return new WP_Error(
            'bm_relay_search_too_short',
            __('Search for at least one word of 3 letters or more (very common words such as “the” do not count).', 'bm-relay'),
            ['status' => 400, 'param' => 'q']
        );
    }

    /** `innodb_ft_min_token_size` of the server (3 unless its admin changed it), read once a request. */
    private static function min_token(): int
    {
        static $min = null;
        if ($min === null) {
            global $wpdb;
            $v = (int) $wpdb->get_var('SELECT @@innodb_ft_min_token_size');
            $min = $v > 0 ? $v : 3;
        }
        return $min;
    }

    /**
     * The boolean-mode query of the indexed terms: `+term` each, `+term*`
     * for the last word of the text. Terms hold only letters, digits and
     * _ (parse()), so there is no operator to strip here.
     *
     * @param list<array{term:string,ft:bool,prefix:bool}> $terms
     */
    public static function boolean_query(array $terms): string
    {
        $out = [];
        foreach ($terms as $t) {
            if ($t['ft']) {
                $out[] = '+' . $t['term'] . ($t['prefix'] ? '*' : '');
            }
        }
        return implode(' ', $out);
    }

    /**
     * One page of matching messages of `$user`'s threads, newest first, and
     * how many match in all (one statement with SQL_CALC_FOUND_ROWS, then
     * FOUND_ROWS(): the matching rows are read once, not once to count and
     * again for the page).
     *
     * Two plans, the same answer (see where_scan()):
     * - the FULLTEXT index finds the rows with the indexed words in the
     *   whole site, the join on participants' primary key keeps the user's
     *   threads, LIKE checks the short words on what is left. Its cost
     *   follows how many messages of the site hold the words: a rare word
     *   is a millisecond at 1M messages, a word in one message of ten
     *   about half a second (docs/PLUGIN.md "Search").
     * - a user whose threads hold at most `bm_relay_search_scan_max`
     *   messages (default 2,000; most users) has them read through the
     *   thread_id index and matched with REGEXP: at most that many rows,
     *   whatever the site's size and however common the word.
     *
     * @param list<array{term:string,ft:bool,prefix:bool}> $terms
     * @return array{rows:list<object>,total:int}
     */
    public static function find(int $user, array $terms, int $limit, int $offset): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $scan_max = max(0, (int) apply_filters('bm_relay_search_scan_max', self::SCAN_MAX, $user));
        // Table names come from $wpdb->prefix; every value is a placeholder.
        $few = $scan_max > 0 && (int) $wpdb->get_var($wpdb->prepare(
            "SELECT COUNT(*) FROM (SELECT 1 FROM {$t['participants']} p JOIN {$t['messages']} m ON m.thread_id = p.thread_id WHERE p.user_id = %d LIMIT %d) x",
            $user,
            $scan_max + 1
        )) <= $scan_max;
        [$where, $args] = $few ? self::where_scan($terms) : self::where_index($terms);
        $rows = (array) $wpdb->get_results($wpdb->prepare(
            "SELECT SQL_CALC_FOUND_ROWS m.id, m.thread_id, m.sender_id, m.content, m.created_at, th.subject
            FROM {$t['messages']} m JOIN {$t['participants']} p ON p.thread_id = m.thread_id AND p.user_id = %d
            JOIN {$t['threads']} th ON th.id = m.thread_id
            WHERE $where AND m.deleted_at IS NULL ORDER BY m.id DESC LIMIT %d OFFSET %d",
            $user,
            ...array_merge($args, [$limit, $offset])
        ));
        return ['rows' => $rows, 'total' => (int) $wpdb->get_var('SELECT FOUND_ROWS()')];
    }

    /**
     * The condition of the index plan: MATCH on the indexed words, LIKE on
     * the others.
     *
     * @param list<array{term:string,ft:bool,prefix:bool}> $terms
     * @return array{0:string,1:list<string>}
     */
    private static function where_index(array $terms): array
    {
        $where = ['MATCH(m.content) AGAINST(%s IN BOOLEAN MODE)'];
        $args = [self::boolean_query($terms)];
        foreach ($terms as $term) {
            if (!$term['ft']) {
                $where[] = 'm.content LIKE %s';
                $args[] = self::like($term['term']);
            }
        }
        return [implode(' AND ', $where), $args];
    }

    /**
     * The condition of the scan plan, matching what the index matches: an
     * indexed word as a whole word, the last as a word's start (REGEXP
     * with look-arounds on letters, digits and _, case-insensitive), the
     * others with LIKE as in the index plan. The one difference: the
     * index's collation also folds accents ("cafe" finds "café"), REGEXP
     * does not.
     *
     * @param list<array{term:string,ft:bool,prefix:bool}> $terms
     * @return array{0:string,1:list<string>}
     */
    private static function where_scan(array $terms): array
    {
        $where = [];
        $args = [];
        foreach ($terms as $term) {
            $where[] = $term['ft'] ? 'm.content REGEXP %s' : 'm.content LIKE %s';
            // Terms hold only letters, digits and _ (parse()): nothing to escape.
            $args[] = $term['ft'] ? '(?i)' . self::word_pattern($term) : self::like($term['term']);
        }
        return [implode(' AND ', $where), $args];
    }

    /** LIKE argument finding `$term` anywhere (its % and _ escaped). */
    private static function like(string $term): string
    {
        global $wpdb;
        return '%' . $wpdb->esc_like($term) . '%';
    }

    /**
     * The regular expression of one term as the query matches it (PCRE,
     * also MariaDB's and MySQL 8's REGEXP): an indexed word whole, the
     * last from a word's start, a LIKE term anywhere.
     *
     * @param array{term:string,ft:bool,prefix:bool} $term
     */
    private static function word_pattern(array $term): string
    {
        $w = '[\p{L}\p{N}_]';
        $q = preg_quote($term['term'], '/');
        return !$term['ft'] ? $q : "(?<!$w)$q" . ($term['prefix'] ? "$w*" : "(?!$w)");
    }

    /**
     * The result shape: message id, thread (id, subject), sender (public
     * profile), when, and the snippet (escaped HTML with `<mark>`).
     *
     * @param list<object> $rows
     * @param list<array{term:string,ft:bool,prefix:bool}> $terms
     * @return list<array<string,mixed>>
     */
    public static function shape(array $rows, array $terms): array
    {
        $people = [];
        $out = [];
        foreach ($rows as $r) {
            $sender = (int) $r->sender_id;
            $people[$sender] ??= BM_Relay_Shapes::person($sender);
            $created = BM_Relay_Store::ts($r->created_at);
            $out[] = [
                'id' => (int) $r->id,
                'thread' => ['id' => (int) $r->thread_id, 'subject' => (string) $r->subject],
                'sender' => $people[$sender],
                'created' => $created,
                'created_at' => gmdate('c', (int) $created),
                'snippet' => self::snippet((string) $r->content, $terms),
            ];
        }
        return $out;
    }

    /**
     * The text around the first match, at most SNIPPET characters (an
     * ellipsis where it was cut), HTML-escaped, and each match in `<mark>`
     * as the query matched it: an indexed term as a whole word, the last
     * one as any word it starts, a LIKE term wherever it stands (all
     * case-insensitive). Escaping is htmlspecialchars with double encoding
     * (esc_html would leave a typed "&amp;" as an entity, showing "&"
     * where the user wrote "&amp;").
     *
     * @param list<array{term:string,ft:bool,prefix:bool}|string> $terms parse()'s terms (a plain string: a LIKE term)
     */
    public static function snippet(string $text, array $terms): string
    {
        $text = trim((string) preg_replace('/\s+/u', ' ', $text));
        $terms = array_map(static fn($t) => is_array($t) ? $t : ['term' => (string) $t, 'ft' => false, 'prefix' => false], $terms);
        usort($terms, static fn($a, $b) => mb_strlen($b['term'], 'UTF-8') <=> mb_strlen($a['term'], 'UTF-8'));
        $pattern = '/(' . implode('|', array_map([self::class, 'word_pattern'], $terms)) . ')/iu';
        $start = 0;
        if ($terms && preg_match($pattern, $text, $m, PREG_OFFSET_CAPTURE)) {
            $start = max(0, mb_strlen(substr($text, 0, (int) $m[0][1]), 'UTF-8') - self::BEFORE);
        }
        $cut = mb_substr($text, $start, self::SNIPPET, 'UTF-8');
        $more = $start + mb_strlen($cut, 'UTF-8') < mb_strlen($text, 'UTF-8');
        $parts = $terms ? (array) preg_split($pattern, $cut, -1, PREG_SPLIT_DELIM_CAPTURE) : [$cut];
        $html = $start > 0 ? '…' : '';
        foreach ($parts as $i => $part) {
            $esc = htmlspecialchars((string) $part, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
            $html .= $i % 2 === 1 ? '<mark>' . $esc . '</mark>' : $esc;
        }
        return $html . ($more ? '…' : '');
    }
}
