<?php
/**
 * Delivery statuses (issue #16): a member's browser acknowledges the
 * messages it received over `POST /delivered` (batched: thread id → newest
 * message id), stored in `participants.last_delivered_id` (monotonic, never
 * past the thread's last message, for the caller only), pushed sealed and
 * numbered as `delivered` when a mark moves, and given back in the thread
 * shape after a reload; reading moves it too.
 */

final class ReceiptsTest extends BM_WP_TestCase
{
    /** The delivered mark of a user in a thread, as MariaDB has it. */
    private function mark(int $thread, string $user): int
    {
        return (int) $this->rows("SELECT last_delivered_id FROM wp_bmr_participants WHERE thread_id = $thread AND user_id = {$this->uid($user)}")[0]['last_delivered_id'];
    }

    /** Sends a message as $user; returns its id. */
    private function say(int $thread, string $user, string $text): int
    {
        return $this->ok($this->rest('POST', "/threads/$thread/messages", $user, ['text' => $text]), 201)['message']['id'];
    }

    public function test_an_ack_advances_the_mark_never_moves_it_back_and_pushes_only_when_it_moves(): void
    {
        $t = $this->thread('alice', ['bob']);
        $m1 = $this->say($t['id'], 'alice', 'one');
        $m2 = $this->say($t['id'], 'alice', 'two');
        $this->assertSame(0, $this->mark($t['id'], 'bob'), 'sent, not delivered: bob\'s browser has not said so');
        $alice = $this->sub('alice');

        $r = $this->ok($this->rest('POST', '/delivered', 'bob', ['threads' => [$t['id'] => $m2]]));
        $this->assertSame(['marks' => [['thread' => $t['id'], 'last_delivered_id' => $m2, 'changed' => true]], 'pushed' => true], $r);
        $this->assertSame($m2, $this->mark($t['id'], 'bob'));
        $ev = $alice->expect('delivered');
        $this->assertSame(BM_Relay_Ids::thread_kid($t['id'], 0), $ev['k'], 'sealed with the thread key');
        $d = $ev['payload']['data'];
        $this->assertSame([$t['id'], 3, $this->uid('bob'), $m2], [$d['thread'], $d['seq'], $d['user'], $d['message_id']], 'numbered after the two message.new (1, 2)');

        // An older or equal id (a slower tab, a repeat): no change, no event, no number spent.
        foreach ([$m1, $m2] as $old) {
            $r = $this->ok($this->rest('POST', '/delivered', 'bob', ['threads' => [$t['id'] => $old]]));
            $this->assertSame([['thread' => $t['id'], 'last_delivered_id' => $m2, 'changed' => false]], $r['marks']);
            $this->assertFalse($r['pushed']);
        }
        $this->assertSame($m2, $this->mark($t['id'], 'bob'), 'never moves back');
        $this->assertSame(['delivered'], array_map(static fn($e) => $e['payload']['type'], $alice->settle(0.3)), 'the repeats pushed nothing');
        $this->assertSame(3, $this->ok($this->rest('GET', "/threads/{$t['id']}", 'alice'))['thread']['seq']);

        // Reading implies delivered: the read mark moves the delivered mark along.
        $m3 = $this->say($t['id'], 'alice', 'three');
        $this->ok($this->rest('POST', "/threads/{$t['id']}/read", 'bob'));
        $this->assertSame($m3, $this->mark($t['id'], 'bob'));
        $this->assertFalse($this->ok($this->rest('POST', '/delivered', 'bob', ['threads' => [$t['id'] => $m3]]))['marks'][0]['changed'], 'the ack after the read is no change');
    }

    public function test_non_members_beyond_the_last_message_and_bad_input_are_refused_and_store_nothing(): void
    {
        $t = $this->thread('alice', ['bob']);
        $other = $this->thread('carol', ['dave']);
        $m = $this->say($t['id'], 'alice', 'hi');
        $theirs = $this->say($other['id'], 'carol', 'not yours');

        $this->err($this->rest('POST', '/delivered', 'dave', ['threads' => [$t['id'] => $m]]), 403, 'bm_relay_not_member');
        // All or nothing: bob's own thread in the same batch is not marked either.
        $this->err($this->rest('POST', '/delivered', 'bob', ['threads' => [$t['id'] => $m, $other['id'] => $theirs]]), 403, 'bm_relay_not_member');
        $this->assertSame(0, $this->mark($t['id'], 'bob'));
        $this->err($this->rest('POST', '/delivered', 'admin', ['threads' => [$t['id'] => $m]]), 403, 'bm_relay_not_member'); // a moderator is no member: nothing of theirs to deliver
        $this->err($this->rest('POST', '/delivered', 'bob', ['threads' => [999999999 => 1]]), 404, 'bm_relay_no_thread');

        // Beyond the thread's last message (another thread's newer id): 400.
        $this->err($this->rest('POST', '/delivered', 'bob', ['threads' => [$t['id'] => $theirs]]), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('POST', '/delivered', 'bob', ['threads' => [$t['id'] => $m + 1000]]), 400, 'bm_relay_invalid_param');
        $this->assertSame(0, $this->mark($t['id'], 'bob'));

        foreach ([[], ['threads' => []], ['threads' => 5], ['threads' => [$t['id'] => 'x']], ['threads' => [$t['id'] => 0]], ['threads' => ['abc' => $m]], ['threads' => [$t['id'] => -1]]] as $body) {
            $this->err($this->rest('POST', '/delivered', 'bob', $body), 400, 'bm_relay_invalid_param');
        }
        $this->err($this->rest('POST', '/delivered', 'bob', ['threads' => array_fill_keys(range(1, BM_Relay_Receipts::MAX_THREADS + 1), 1)]), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('POST', '/delivered', null, ['threads' => [$t['id'] => $m]]), 401, 'bm_relay_not_logged_in');
        $this->err($this->rest('POST', '/delivered', 'bob', ['threads' => [$t['id'] => $m]], [], false), 403, 'bm_relay_bad_nonce');
        $this->assertSame(0, $this->mark($t['id'], 'bob'), 'nothing stored by a refused call');
        // A member acknowledges for themself only: a `user` in the body changes nothing.
        $this->ok($this->rest('POST', '/delivered', 'bob', ['threads' => [$t['id'] => $m], 'user' => $this->uid('alice')]));
        $this->assertSame([$m, $m], [$this->mark($t['id'], 'bob'), $this->mark($t['id'], 'alice')]);
    }

    public function test_one_ack_carries_several_threads_in_one_push(): void
    {
        $a = $this->thread('alice', ['bob'], 'A');
        $b = $this->thread('carol', ['bob', 'dave'], 'B');
        $c = $this->thread('dave', ['bob'], 'C');
        $ma = $this->say($a['id'], 'alice', 'a');
        $mb = $this->say($b['id'], 'carol', 'b');
        $mc = $this->say($c['id'], 'dave', 'c');
        $this->ok($this->rest('POST', "/threads/{$c['id']}/read", 'bob'));
        $dave = $this->sub('dave');

        $r = $this->ok($this->rest('POST', '/delivered', 'bob', ['threads' => [$a['id'] => $ma, $b['id'] => $mb, $c['id'] => $mc]]));
        $this->assertSame([
            ['thread' => $a['id'], 'last_delivered_id' => $ma, 'changed' => true],
            ['thread' => $b['id'], 'last_delivered_id' => $mb, 'changed' => true],
            ['thread' => $c['id'], 'last_delivered_id' => $mc, 'changed' => false],
        ], $r['marks'], 'C was read already: no change there');
        $this->assertTrue($r['pushed']);
        $this->assertSame([$ma, $mb, $mc], [$this->mark($a['id'], 'bob'), $this->mark($b['id'], 'bob'), $this->mark($c['id'], 'bob')]);
        // Dave is in B (and C, unchanged): one event, B's.
        $ev = $dave->expect('delivered');
        $this->assertSame(BM_Relay_Ids::thread_kid($b['id'], 0), $ev['k']);
        $this->assertSame([$b['id'], $this->uid('bob'), $mb], [$ev['payload']['data']['thread'], $ev['payload']['data']['user'], $ev['payload']['data']['message_id']]);
        $this->assertCount(1, $dave->events('delivered'));
        $this->assertSame(['delivered'], array_map(static fn($e) => $e['payload']['type'], $dave->settle(0.3)));
    }

    public function test_after_a_reload_the_thread_shape_carries_every_members_delivered_mark(): void
    {
        $t = $this->thread('alice', ['bob', 'carol']);
        $m1 = $this->say($t['id'], 'alice', 'one');
        $m2 = $this->say($t['id'], 'alice', 'two');
        $this->ok($this->rest('POST', '/delivered', 'bob', ['threads' => [$t['id'] => $m2]]));
        $this->ok($this->rest('POST', "/threads/{$t['id']}/read", 'carol', ['message_id' => $m1]));

        $marks = static fn(array $th): array => array_combine(array_column($th['participants'], 'id'), array_map(static fn($p) => [$p['last_delivered_id'], $p['last_read_id']], $th['participants']));
        $want = [$this->uid('alice') => [$m2, $m2], $this->uid('bob') => [$m2, 0], $this->uid('carol') => [$m1, $m1]];
        $this->assertSame($want, $marks($this->ok($this->rest('GET', "/threads/{$t['id']}", 'alice'))['thread']), 'GET /threads/{id}: delivered to bob, read (so delivered) by carol up to one');
        $listed = array_values(array_filter($this->ok($this->rest('GET', '/threads', 'bob'))['threads'], fn($x) => $x['id'] === $t['id']))[0];
        $this->assertSame($want, $marks($listed), 'GET /threads, for every member');
        $this->assertSame(array_fill_keys(array_keys($want), [null, null]), $marks($this->ok($this->rest('GET', "/threads/{$t['id']}", 'admin'))['thread']), 'a moderator who is not a member sees no marks');
    }
}
