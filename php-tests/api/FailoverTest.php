<?php
/**
 * Several relay URLs (`bm_relay.url = "http://a,http://b"`), with real
 * relays: a push goes past a relay that refuses connections or hangs (a
 * paused relay: the kernel accepts, nothing answers) to one that answers,
 * within timeout_ms for the whole call; the next starts with the relay that
 * answered last; a relay that did not answer waits its cooldown behind the
 * others unless all are down; an HTTP error is an answer, not a reason to
 * try another. The same tests run against the extension and the fallback
 * (docs/PHP-API.md, "Several relays").
 */

require_once __DIR__ . '/RelayTestCase.php';

final class FailoverTest extends RelayTestCase
{
    /** @var list<BM_Test_Relay> relays started by a test */
    private array $started = [];

    /** @var list<BM_Test_Listener> */
    private array $listeners = [];

    protected function tearDown(): void
    {
        foreach ($this->listeners as $l) {
            $l->stop();
        }
        foreach ($this->started as $r) {
            $r->resume();
            $r->stop();
        }
        $this->listeners = [];
        $this->started = [];
    }

    /** A fresh relay of the test site (fresh URL: no failover state yet). */
    private function relay(?string $secret = null): BM_Test_Relay
    {
        $r = (new BM_Test_Relay([self::SITE => $secret ?? self::$secret]))->start();
        $this->started[] = $r;
        return $r;
    }

    /**
     * Pauses $relay (SIGSTOP: the kernel still accepts connections, nothing
     * answers) and waits until every thread of it has stopped: the signal
     * takes effect asynchronously, and a relay caught mid-request could
     * otherwise still answer the first push.
     */
    private function hang(BM_Test_Relay $relay): void
    {
        $relay->pause();
        $pid = (int) $relay->pid();
        $stopped = BM_Test::wait_until(static function () use ($pid): bool {
            foreach (glob("/proc/$pid/task/*/stat") ?: [] as $f) {
                $fields = explode(' ', (string) preg_replace('/^.*\) /s', '', (string) @file_get_contents($f)));
                if (!in_array($fields[0] ?? '', ['T', 't'], true)) {
                    return false;
                }
            }
            return true;
        }, 5.0);
        $this->assertTrue($stopped, 'the relay stopped');
    }

    /** A subscriber of $user on $relay. */
    private function on(BM_Test_Relay $relay, int $user): BM_Test_Listener
    {
        $l = new BM_Test_Listener($relay, bm_client_token($user), self::SITE, self::$secret);
        $this->listeners[] = $l;
        return $l;
    }

    /** bm_stats()['relays'] by URL. */
    private static function relays(): array
    {
        $out = [];
        foreach (bm_stats()['relays'] as $r) {
            $out[$r['url']] = $r;
        }
        return $out;
    }

    public function test_a_relay_that_refuses_connections_is_passed_over_and_then_skipped(): void
    {
        $b = $this->relay();
        $lb = $this->on($b, 41);
        $closed = 'http://127.0.0.1:' . self::closed_port();
        bm_configure($this->settings(['url' => "$closed, {$b->url}"]));
        $this->assertSame(['online' => [41], 'sockets' => 1], bm_push(['type' => 'one', 'to' => [41]]), 'landed on the live relay');
        $this->assertSame(['one'], array_map(fn($e) => $e['payload']['type'], $lb->wait_events(1)));
        $s = self::relays();
        $this->assertSame([$closed, $b->url], array_keys($s), 'one entry per URL, in the configured order');
        $this->assertSame([0, 1], [$s[$closed]['answered'], $s[$closed]['unreachable']]);
        $this->assertGreaterThan(0, $s[$closed]['down_for_ms'], 'cooling down');
        $this->assertSame([1, 0, 0], [$s[$b->url]['answered'], $s[$b->url]['unreachable'], $s[$b->url]['down_for_ms']]);
        // The next push starts with the relay that answered: the refusing one is not tried again.
        $this->assertSame(['online' => [41], 'sockets' => 1], bm_push(['type' => 'two', 'to' => [41]]));
        $s = self::relays();
        $this->assertSame(1, $s[$closed]['unreachable']);
        $this->assertSame(2, $s[$b->url]['answered']);
        // Async pushes go the same way.
        bm_configure(['mode' => 'async']);
        $failed = bm_stats()['failed'];
        $this->assertTrue(bm_push(['type' => 'three', 'to' => [41]]));
        $this->assertTrue(bm_flush(5000));
        $this->assertSame(['one', 'two', 'three'], array_map(fn($e) => $e['payload']['type'], $lb->wait_events(3)));
        $this->assertSame($failed, bm_stats()['failed']);
        $this->assertSame(1, self::relays()[$closed]['unreachable']);
    }

    public function test_a_hung_relay_costs_at_most_timeout_ms_for_the_whole_call(): void
    {
        $a = $this->relay();
        $b = $this->relay();
        $lb = $this->on($b, 42);
        $this->hang($a);
        bm_configure($this->settings(['url' => "{$a->url},{$b->url}", 'timeout_ms' => 1000]));
        $t0 = microtime(true);
        $this->assertSame(['online' => [42], 'sockets' => 1], bm_push(['type' => 'past-hung', 'to' => [42]]));
        $this->assertLessThan(1.0 + 2.0, microtime(true) - $t0, 'bounded by timeout_ms for both URLs together');
        $this->assertSame(1, self::relays()[$a->url]['unreachable']);
        // The hung relay waits behind the live one: no time is spent on it.
        $t0 = microtime(true);
        bm_configure(['mode' => 'async']);
        $this->assertTrue(bm_push(['type' => 'async', 'to' => [42]]));
        $this->assertTrue(bm_flush(5000));
        $this->assertSame(['past-hung', 'async'], array_map(fn($e) => $e['payload']['type'], $lb->wait_events(2)));
        $this->assertSame(1, self::relays()[$a->url]['unreachable'], 'not tried again');
        $this->assertSame(2, self::relays()[$b->url]['answered']);
    }

    public function test_it_starts_with_the_relay_that_answered_last_not_with_the_first(): void
    {
        $a = $this->relay();
        $b = $this->relay();
        $this->on($a, 43);
        $this->on($b, 44);
        bm_configure($this->settings(['url' => "{$a->url},{$b->url}"]));
        $both = ['type' => 'x', 'thread' => 5, 'to' => [43, 44]];
        $this->assertSame([43], bm_push($both)['online'], 'the first URL first');
        $a->stop();
        $this->assertSame([44], bm_push($both)['online'], 'past the stopped one');
        $a->start(); // same port: back up
        $this->on($a, 43);
        $this->assertSame([44], bm_push($both)['online'], 'stays with the relay that answered last');
        $this->assertSame([1, 1], [self::relays()[$a->url]['answered'], self::relays()[$a->url]['unreachable']]);
        $b->stop();
        $this->assertSame([43], bm_push($both)['online'], 'back to the first once the second is down');
    }

    public function test_a_relay_that_did_not_answer_waits_behind_the_others_unless_all_are_down(): void
    {
        $a = $this->relay();
        $b = $this->relay();
        $this->on($a, 45);
        $this->on($b, 46);
        $closed = 'http://127.0.0.1:' . self::closed_port();
        bm_configure($this->settings(['url' => "$closed,{$a->url},{$b->url}"]));
        $both = ['type' => 'x', 'thread' => 5, 'to' => [45, 46]];
        $this->assertSame([45], bm_push($both)['online']);
        $a->stop();
        // From a (down) on in list order: b answers; the closed URL, cooling down, comes last and is not reached.
        $this->assertSame([46], bm_push($both)['online']);
        $this->assertSame(1, self::relays()[$closed]['unreachable']);
        $b->stop();
        // All down: every URL is tried, the cooling ones too.
        try {
            bm_push($both);
            $this->fail('no exception with every relay down');
        } catch (BmRelayException $e) {
            $this->assertSame(0, $e->getCode());
            $this->assertStringStartsWith('bm_push(): relay unreachable for push: 3 of 3 URLs tried, none answered; last ', $e->getMessage());
        }
        $s = self::relays();
        $this->assertSame([2, 2, 1], [$s[$closed]['unreachable'], $s[$a->url]['unreachable'], $s[$b->url]['unreachable']]);
    }

    public function test_with_every_relay_down_the_error_says_how_many_urls_were_tried(): void
    {
        $hung = $this->relay();
        $this->hang($hung);
        $closed = 'http://127.0.0.1:' . self::closed_port();
        bm_configure($this->settings(['url' => "{$hung->url},$closed", 'timeout_ms' => 600]));
        $t0 = microtime(true);
        try {
            bm_presence([1]);
            $this->fail('no exception');
        } catch (BmRelayException $e) {
            $this->assertSame(0, $e->getCode());
            $this->assertSame("bm_presence(): relay unreachable for presence: 2 of 2 URLs tried, none answered; last $closed: cannot connect (connect_timeout_ms=500): Connection refused (os error 111)", $e->getMessage());
            $this->assertStringNotContainsString(self::$secret, $e->getMessage());
        }
        $this->assertLessThan(0.6 + 2.0, microtime(true) - $t0);
        // Async: the batch fails once, counted once, the error in last_error.
        bm_configure(['mode' => 'async']);
        $failed = bm_stats()['failed'];
        $this->assertTrue(bm_push(['type' => 'x', 'to' => [1]]));
        $this->assertTrue(bm_flush(5000));
        $this->assertSame($failed + 1, bm_stats()['failed']);
        $this->assertStringContainsString('URLs tried, none answered', bm_stats()['last_error']['message']);
    }

    public function test_an_http_error_is_an_answer_and_no_reason_to_try_the_next_relay(): void
    {
        $wrong = $this->relay(BM_Test::new_secret()); // knows the site with another key: 401
        $b = $this->relay();
        $lb = $this->on($b, 47);
        bm_configure($this->settings(['url' => "{$wrong->url},{$b->url}"]));
        try {
            bm_push(['type' => 'x', 'to' => [47]]);
            $this->fail('no exception');
        } catch (BmRelayException $e) {
            $this->assertSame(401, $e->getCode());
            $this->assertStringStartsWith('bm_push(): relay refused push: HTTP 401 ', $e->getMessage());
        }
        $s = self::relays();
        $this->assertSame([1, 0], [$s[$wrong->url]['answered'], $s[$wrong->url]['unreachable']]);
        $this->assertSame([0, 0], [$s[$b->url]['answered'], $s[$b->url]['unreachable']], 'the second relay was not tried');
        $this->assertSame([], $lb->events());
    }

    public function test_url_lists_are_checked_entry_by_entry(): void
    {
        $cases = [
            'http://a:1,' => 'bm_relay.url (URL 2 of 2) is empty (separate URLs with one comma)',
            'http://a:1,,http://b:1' => 'bm_relay.url (URL 2 of 3) is empty (separate URLs with one comma)',
            'http://a:1,http://user:hunter2@b:1' => 'bm_relay.url (URL 2 of 2) must not contain credentials (expected http://host:port or https://host)',
            'http://a:1/,http://a:1' => 'bm_relay.url (URL 2 of 2) is listed twice: http://a:1',
            'ftp://a,http://b' => 'bm_relay.url (URL 1 of 2) must start with http:// or https:// (expected http://host:port or https://host)',
            implode(',', array_fill(0, 17, 'http://h')) => 'bm_relay.url lists 17 URLs, more than 16',
        ];
        foreach ($cases as $url => $message) {
            try {
                bm_configure(['url' => $url]);
                $this->fail("accepted $url");
            } catch (BmRelayException $e) {
                $this->assertSame("bm_configure(): $message", $e->getMessage(), $url);
                $this->assertSame(0, $e->getCode());
            }
        }
        bm_configure(['url' => ' http://a:1/ , https://b.example ']);
        $this->assertSame(['http://a:1', 'https://b.example'], array_column(bm_stats()['relays'], 'url'));
    }
}
