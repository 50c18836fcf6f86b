<?php
/**
 * Search (issue #16): `GET /bm/v1/search` finds messages of the threads the
 * user is a member of now, through the FULLTEXT index `content_ft`
 * (schema 7), with paging, short and common words handled, the user's
 * text unable to change the query, and escaped snippets.
 */

final class SearchTest extends BM_WP_TestCase
{
    /** @var (callable():int)|null the plan filter of the running test */
    private $plan = null;

    /**
     * Both ways search reads: the FULLTEXT index (scan_max 0) and the scan
     * of a user's few messages (the default, which every user of this
     * suite is under); they must give the same answers.
     *
     * @return array<string,array{0:int}>
     */
    public function plans(): array
    {
        return ['index' => [0], 'scan' => [BM_Relay_Search::SCAN_MAX]];
    }

    /** Searches of this test use the plan of `bm_relay_search_scan_max` = $max. */
    private function plan(int $max): void
    {
        $this->plan = static fn() => $max;
        add_filter('bm_relay_search_scan_max', $this->plan);
    }

    protected function tearDown(): void
    {
        if ($this->plan) {
            remove_filter('bm_relay_search_scan_max', $this->plan);
            $this->plan = null;
        }
        parent::tearDown();
    }

    /** A word no other test wrote (letters only: a word to InnoDB's parser). */
    private function word(string $stem): string
    {
        // Letters only, and never "o" or "t": the short words the tests
        // look for ("go", "to", "the") are matched inside longer words, and a
        // suffix holding "go" once made a message match that was not meant to.
        return $stem . strtr(bin2hex(random_bytes(4)), '0123456789', 'ghijklmnqr');
    }

    /** Sends $text to thread $thread as $user; returns the message id. */
    private function say(string $user, int $thread, string $text): int
    {
        return $this->ok($this->rest('POST', "/threads/$thread/messages", $user, ['text' => $text]), 201)['message']['id'];
    }

    /** The search answer for $user. */
    private function find(string $user, string $q, array $more = []): array
    {
        return $this->ok($this->rest('GET', '/search', $user, [], ['q' => $q] + $more));
    }

    /** @dataProvider plans */
    public function test_finds_only_the_users_own_threads_messages_newest_first_without_deleted_ones(int $scan_max): void
    {
        $this->plan($scan_max);
        $w = $this->word('walrus');
        $ab = $this->thread('alice', ['bob'], 'Zoo trip');
        $cd = $this->thread('carol', ['dave'], 'Not Bob’s');
        $first = $this->say('alice', $ab['id'], "Did you see the $w yesterday?");
        $this->say('carol', $cd['id'], "the $w in a thread Bob is not in");
        $gone = $this->say('bob', $ab['id'], "a $w I then deleted");
        $last = $this->say('bob', $ab['id'], "Yes, the \u{00C9}norme " . strtoupper($w) . ' was asleep');
        $this->say('alice', $ab['id'], 'nothing to find here');
        $this->ok($this->rest('DELETE', "/messages/$gone", 'bob'));

        $r = $this->find('bob', $w);
        $this->assertSame([$last, $first], array_column($r['results'], 'id'), 'newest first; Carol’s thread and the deleted one left out; any case');
        $this->assertSame([2, 1, 1, false], [$r['total'], $r['total_pages'], $r['page'], $r['has_more']]);
        $hit = $r['results'][1];
        $this->assertSame(['id' => $ab['id'], 'subject' => 'Zoo trip'], $hit['thread']);
        $this->assertSame($this->uid('alice'), $hit['sender']['id']);
        $this->assertSame(get_userdata($this->uid('alice'))->display_name, $hit['sender']['name']);
        $this->assertArrayNotHasKey('email', $hit['sender']);
        $this->assertIsInt($hit['created']);
        $this->assertSame(gmdate('c', $hit['created']), $hit['created_at']);
        $this->assertSame("Did you see the <mark>$w</mark> yesterday?", $hit['snippet']);

        $this->assertSame(1, $this->find('carol', $w)['total'], 'Carol finds her own');
        $this->assertSame(0, $this->find('admin', $w)['total'], 'a moderator searches their own threads too, not everyone’s');

        // A member who leaves no longer finds the thread's messages.
        $this->ok($this->rest('DELETE', "/threads/{$ab['id']}/participants/{$this->uid('bob')}", 'bob'));
        $this->assertSame(0, $this->find('bob', $w)['total']);
    }

    /** @dataProvider plans */
    public function test_every_word_is_required_and_the_last_one_is_a_prefix(int $scan_max): void
    {
        $this->plan($scan_max);
        $w = $this->word('meeting');
        $t = $this->thread('alice', ['bob']);
        $both = $this->say('alice', $t['id'], "$w moved to Thursday afternoon");
        $this->say('alice', $t['id'], "$w cancelled");
        $this->assertSame([$both], array_column($this->find('bob', "$w thursday")['results'], 'id'), 'both words');
        $this->assertSame([$both], array_column($this->find('bob', "$w thurs")['results'], 'id'), 'the last word is a prefix');
        $this->assertSame(0, $this->find('bob', "thurs $w")['total'], 'an earlier word is a whole word');
        $this->assertSame(2, $this->find('bob', substr($w, 0, -2))['total'], 'a prefix alone');
    }

    /** @dataProvider plans */
    public function test_pages_with_totals_in_the_body_and_the_headers(int $scan_max): void
    {
        $this->plan($scan_max);
        $w = $this->word('pager');
        $t = $this->thread('alice', ['bob']);
        $ids = [];
        for ($i = 1; $i <= 5; $i++) {
            $ids[] = $this->say($i % 2 ? 'alice' : 'bob', $t['id'], "$w number $i");
        }
        $seen = [];
        for ($page = 1; $page <= 3; $page++) {
            $r = $this->find('bob', $w, ['page' => (string) $page, 'per_page' => '2']);
            $this->assertSame([5, 3, $page, 2, $page < 3], [$r['total'], $r['total_pages'], $r['page'], $r['per_page'], $r['has_more']]);
            array_push($seen, ...array_column($r['results'], 'id'));
        }
        $this->assertSame(array_reverse($ids), $seen, 'three pages, each message once, newest first');
        $this->assertSame([], $this->find('bob', $w, ['page' => '4', 'per_page' => '2'])['results'], 'past the end: empty');

        // The headers, as a browser reads them.
        wp_set_current_user($this->uid('bob'));
        $req = new WP_REST_Request('GET', '/bm/v1/search');
        $req->set_header('X-WP-Nonce', wp_create_nonce('wp_rest'));
        $req->set_query_params(['q' => $w, 'per_page' => '2']);
        $headers = rest_do_request($req)->get_headers();
        $this->assertSame(['5', '3'], [$headers['X-WP-Total'], $headers['X-WP-TotalPages']]);

        $this->err($this->rest('GET', '/search', 'bob', [], ['q' => $w, 'per_page' => '101']), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', '/search', 'bob', [], ['q' => $w, 'page' => '0']), 400, 'bm_relay_invalid_param');
        $this->assertSame(20, $this->find('bob', $w)['per_page'], 'default page size');
    }

    /** @dataProvider plans */
    public function test_short_and_common_words_are_matched_beside_a_long_one_and_refused_alone(int $scan_max): void
    {
        $this->plan($scan_max);
        $w = $this->word('harbour');
        $t = $this->thread('alice', ['bob']);
        $go = $this->say('alice', $t['id'], "Let us go to the $w at 5");
        $this->say('alice', $t['id'], "the $w is closed");
        $this->assertSame([$go], array_column($this->find('bob', "go $w")['results'], 'id'), 'a 2-letter word is required too (LIKE on the indexed rows)');
        $this->assertSame([$go], array_column($this->find('bob', "$w 5")['results'], 'id'), 'a digit as last word');
        $this->assertSame(2, $this->find('bob', "the $w")['total'], 'a stopword does not empty the result');
        $this->assertSame(0, $this->find('bob', "with $w")['total'], 'a stopword is still required');
        $this->assertSame(0, $this->find('bob', "$w _")['total'], '"_" is a character to find, not LIKE\'s wildcard');
        foreach (['go', 'to', 'the', 'go to the', 'a b c', '!!', '5'] as $q) {
            $r = $this->rest('GET', '/search', 'bob', [], ['q' => $q]);
            $this->err($r, 400, 'bm_relay_search_too_short');
            $this->assertStringContainsString('at least one word of 3 letters', $r[1]['message'], $q);
        }
    }

    /** @dataProvider plans */
    public function test_operators_and_quotes_in_the_text_cannot_break_the_query_or_leak(int $scan_max): void
    {
        $this->plan($scan_max);
        $w = $this->word('secret');
        $mine = $this->thread('alice', ['bob']);
        $theirs = $this->thread('carol', ['dave']);
        $text = "the $w plan, or 1=1 in boolean mode; drop table wp_bmr_messages";
        $id = $this->say('alice', $mine['id'], $text);
        $this->say('carol', $theirs['id'], $text);
        $this->say('carol', $theirs['id'], 'anything else at all');
        $tries = [
            "-$w", "+$w -plan", "\"$w plan\"", "$w*", "($w) ~plan", "<$w >plan", "@$w", "$w' OR '1'='1", "$w\\", "$w%",
            "$w') OR 1=1 -- ", "$w\" IN BOOLEAN MODE) OR 1=1 #", "$w;DROP TABLE wp_bmr_messages", "$w*) OR (1=1",
        ];
        foreach ($tries as $q) {
            $r = $this->find('bob', $q);
            $this->assertSame([$id], array_column($r['results'], 'id'), "q=$q: the operators are separators, every word required, only Bob's threads");
        }
        $this->assertSame(0, $this->find('bob', "$w -nowhere")['total'], '"-nowhere" is the word nowhere, required, not an exclusion');
        foreach (['*', '+-', '""', '()', '%', '_'] as $q) {
            $this->err($this->rest('GET', '/search', 'bob', [], ['q' => $q]), 400, 'bm_relay_search_too_short');
        }
        $this->assertSame('+alpha +beta*', BM_Relay_Search::boolean_query(BM_Relay_Search::parse('  +alpha  -"BETA ')));
        $this->assertSame('+beta +alpha*', BM_Relay_Search::boolean_query(BM_Relay_Search::parse('alpha beta ALPHA')), 'a repeated word once, at its last place');
        $this->assertNotEmpty($this->rows('SELECT id FROM wp_bmr_messages LIMIT 1'), 'the table is still there');
    }

    public function test_bad_parameters_and_callers_are_refused(): void
    {
        $this->err($this->rest('GET', '/search', 'bob', [], ['q' => '']), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', '/search', 'bob', [], ['q' => '   ']), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', '/search', 'bob'), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', '/search', 'bob', [], ['q' => str_repeat('abc ', 51)]), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', '/search', 'bob', [], ['q' => ['abc']]), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', '/search', 'bob', [], ['q' => "caf\xC3"]), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', '/search', 'bob', [], ['q' => 'one two three four five six seven eight nine']), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('GET', '/search', null, [], ['q' => 'hello']), 401, 'bm_relay_not_logged_in');
        $this->err($this->rest('GET', '/search', 'bob', [], ['q' => 'hello'], false), 403, 'bm_relay_bad_nonce');
    }

    public function test_the_snippet_is_escaped_cut_around_the_match_and_marks_every_term(): void
    {
        $w = $this->word('needle');
        $t = $this->thread('alice', ['bob']);
        $this->say('alice', $t['id'], "<script>alert(1)</script> & \"$w\" <b>bold</b> &amp; O'Brien");
        $s = $this->find('bob', $w)['results'][0]['snippet'];
        $this->assertSame("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;<mark>$w</mark>&quot; &lt;b&gt;bold&lt;/b&gt; &amp;amp; O&#039;Brien", $s);
        $this->assertSame(2, substr_count($s, '<'), 'the only tags are <mark> and </mark>');

        $long = str_repeat('lorem ipsum dolor sit amet ', 20) . "the $w is here, " . strtoupper($w) . ' twice; <i>' . str_repeat(' tail words', 30);
        $this->say('alice', $t['id'], $long);
        $s = $this->find('bob', "$w her")['results'][0]['snippet'];
        $this->assertStringStartsWith('…', $s);
        $this->assertStringEndsWith('…', $s);
        $this->assertStringContainsString("the <mark>$w</mark> is <mark>here</mark>, <mark>" . strtoupper($w) . '</mark> twice; &lt;i&gt;', $s);
        $plain = html_entity_decode(strip_tags($s), ENT_QUOTES, 'UTF-8');
        $this->assertLessThanOrEqual(182, mb_strlen($plain), 'at most 180 characters and the ellipses');
        $this->assertSame("x <mark>y</mark>", BM_Relay_Search::snippet("x\n\t y", ['y']), 'white space folded');
        $terms = BM_Relay_Search::parse('go tea wal');
        $this->assertSame(
            'a <mark>go</mark>od <mark>tea</mark>, steam, <mark>walruses</mark>, a <mark>wall</mark>, no kiwal',
            BM_Relay_Search::snippet('a good tea, steam, walruses, a wall, no kiwal', $terms),
            'as the query matched: a short word anywhere, an indexed one whole, the last from a word\'s start'
        );
    }

    public function test_the_schema_7_upgrade_adds_the_fulltext_index(): void
    {
        $index = fn() => array_values(array_filter($this->rows('SHOW INDEX FROM wp_bmr_messages'), static fn($r) => $r['Key_name'] === 'content_ft'));
        $this->assertSame([['content', 'FULLTEXT']], array_map(static fn($r) => [$r['Column_name'], $r['Index_type']], $index()), 'a fresh install has it');
        $m = $this->h()->mysqli();
        $m->query('ALTER TABLE wp_bmr_messages DROP INDEX content_ft');
        $m->close();
        update_option(BM_Relay_Schema::OPTION, 6, true);
        $this->assertSame([], $index());
        BM_Relay_Schema::maybe_upgrade();
        $this->assertCount(1, $index(), 'a site on schema 6 gets it');
        $this->assertSame((string) BM_Relay_Schema::VERSION, (string) get_option(BM_Relay_Schema::OPTION));
        require_once ABSPATH . 'wp-admin/includes/upgrade.php';
        $this->assertSame([], array_values(array_filter(dbDelta(BM_Relay_Schema::sql(), false), static fn($s) => stripos($s, 'content_ft') !== false)), 'dbDelta sees it as it is (no second ALTER)');
    }
}
