<?php
/**
 * Event numbers (docs/PROTOCOL.md §4.1): every thread event carries, sealed,
 * its thread and its number in the thread, 1, 2, 3 … with none skipped and
 * none repeated; the REST thread shape says the last number; a push that
 * fails still spends its number, so a browser sees the gap.
 */

final class EventSeqTest extends BM_WP_TestCase
{
    /** The sealed `data.seq` of every event a subscriber opened, in arrival order. */
    private static function seqs(BM_WP_Subscriber $s): array
    {
        return array_map(static fn($e) => $e['payload']['data']['seq'] ?? null, $s->events());
    }

    public function test_each_thread_numbers_its_events_one_by_one_and_rest_says_the_last(): void
    {
        $t = $this->thread('alice', ['bob']);
        $u = $this->thread('alice', ['carol']);
        $this->assertSame(0, $this->ok($this->rest('GET', "/threads/{$t['id']}", 'bob'))['thread']['seq'], 'no event yet');
        $bob = $this->sub('bob');
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'one']), 201)['message'];
        $this->ok($this->rest('POST', "/threads/{$u['id']}/messages", 'alice', ['text' => 'elsewhere']), 201);
        $this->ok($this->rest('PATCH', "/messages/{$m['id']}", 'alice', ['text' => 'one!']));
        $this->ok($this->rest('POST', "/messages/{$m['id']}/reactions", 'bob', ['emoji' => '👍']));
        $this->ok($this->rest('POST', "/threads/{$t['id']}/read", 'bob'));
        $this->ok($this->rest('DELETE', "/messages/{$m['id']}", 'alice'));
        $bob->wait(fn() => count($bob->events()) >= 5, 5, 'five events of the thread');
        $events = $bob->events();
        $this->assertSame(['message.new', 'message.edit', 'reaction', 'read', 'message.delete'], array_map(static fn($e) => $e['payload']['type'], $events));
        foreach ($events as $e) {
            $this->assertSame($t['id'], $e['payload']['data']['thread']);
        }
        $this->assertSame([1, 2, 3, 4, 5], self::seqs($bob), 'one by one, in the order stored');
        $this->assertSame(5, $this->ok($this->rest('GET', "/threads/{$t['id']}", 'bob'))['thread']['seq']);
        $this->assertSame(1, $this->ok($this->rest('GET', "/threads/{$u['id']}", 'alice'))['thread']['seq'], 'each thread counts its own');
        $this->assertSame('5', $this->rows("SELECT seq FROM wp_bmr_threads WHERE id = {$t['id']}")[0]['seq']);
    }

    public function test_a_push_that_fails_spends_its_number_so_the_next_event_shows_the_gap(): void
    {
        $t = $this->thread('alice', ['bob']);
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'before']), 201);
        $this->h()->stop_relay();
        try {
            $r = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'while down']), 201);
            $this->assertFalse($r['pushed'], 'the relay is down');
        } finally {
            $this->h()->start_relay();
        }
        $bob = $this->sub('bob');
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'after']), 201);
        $ev = $bob->expect('message.new');
        $this->assertSame('after', $ev['payload']['data']['text']);
        $this->assertSame(3, $ev['payload']['data']['seq'], 'number 2 went to the lost push: a page that saw 1 knows it missed one');
    }

    public function test_concurrent_requests_never_share_a_number(): void
    {
        $t = $this->thread('alice', ['bob']);
        $bob = $this->sub('bob');
        // Eight requests at once through the real web server (4 workers).
        $alice = $this->h()->login('alice');
        $headers = ['Content-Type: application/json', 'X-WP-Nonce: ' . $alice->nonce()];
        $mh = curl_multi_init();
        $handles = [];
        foreach (range(1, 8) as $i) {
            $ch = $alice->curl('POST', "/wp-json/bm/v1/threads/{$t['id']}/messages", (string) json_encode(['text' => "m$i"]), $headers);
            curl_multi_add_handle($mh, $ch);
            $handles[] = $ch;
        }
        do {
            curl_multi_exec($mh, $running);
            curl_multi_select($mh, 0.1);
        } while ($running > 0);
        foreach ($handles as $ch) {
            $this->assertSame(201, curl_getinfo($ch, CURLINFO_RESPONSE_CODE), (string) curl_multi_getcontent($ch));
            curl_multi_remove_handle($mh, $ch);
        }
        curl_multi_close($mh);
        $bob->wait(fn() => count($bob->events('message.new')) >= 8, 10, 'eight messages');
        $seqs = self::seqs($bob);
        sort($seqs);
        $this->assertSame(range(1, 8), $seqs, 'eight distinct numbers, none skipped');
    }
}
