<?php
/**
 * Messages over REST bm/v1: send, catch-up, edit, delete, react, read;
 * each checked in MariaDB and as the event a real subscriber opens.
 */

final class RestMessagesTest extends BM_WP_TestCase
{
    public function test_send_stores_then_pushes_message_new_and_reports_online_members(): void
    {
        $t = $this->thread('alice', ['bob', 'carol']);
        $bob = $this->sub('bob');                    // bob is online (any socket)
        $alice = $this->sub('alice', [$t['id']]);    // alice watches the thread
        $r = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => "  Hello <b>Bob</b> 😀\n", 'client_id' => 'c-1']), 201);
        $m = $r['message'];
        $this->assertSame("Hello <b>Bob</b> 😀", $m['text'], 'trimmed, HTML kept as text');
        $this->assertSame('c-1', $r['client_id']);
        $this->assertTrue($r['pushed']);
        $this->assertSame([$this->uid('bob')], $r['delivered_to'], 'only bob has a socket; carol is offline');

        $row = $this->rows("SELECT * FROM wp_bmr_messages WHERE id = {$m['id']}")[0];
        $this->assertSame("Hello <b>Bob</b> 😀", $row['content']);
        $this->assertSame((string) $this->uid('alice'), $row['sender_id']);
        $p = [];
        foreach ($this->rows("SELECT * FROM wp_bmr_participants WHERE thread_id = {$t['id']}") as $x) {
            $p[(int) $x['user_id']] = $x;
        }
        $this->assertSame('0', $p[$this->uid('alice')]['unread_count']);
        $this->assertSame('1', $p[$this->uid('bob')]['unread_count']);
        // Online is not delivered: bob's browser acknowledges that (ReceiptsTest).
        $this->assertSame('0', $p[$this->uid('bob')]['last_delivered_id'], 'not marked delivered from the online list');
        $this->assertSame('0', $p[$this->uid('carol')]['last_delivered_id'], 'not delivered to carol');

        $ids = [];
        foreach ([$bob, $alice] as $s) {
            $ev = $s->expect('message.new');
            $this->assertSame(BM_Relay_Ids::thread_kid($t['id'], 0), $ev['k']);
            $this->assertMatchesRegularExpression('/^[A-Za-z0-9_-]{22}$/', $ev['id'], 'a random event id (16 bytes), not derived from the message id');
            $ids[] = $ev['id'];
            $this->assertNull($ev['from'] ?? null, 'a server push, not a client pub');
            $this->assertSame($m['id'], $ev['payload']['data']['id']);
            $this->assertSame("Hello <b>Bob</b> 😀", $ev['payload']['data']['text']);
            $this->assertSame($this->uid('alice'), $ev['payload']['data']['sender']);
            $this->assertSame('c-1', $ev['payload']['data']['client_id']);
        }
        $this->assertCount(1, array_unique($ids), 'one event, the same id on every socket');
        $this->assertCount(1, $alice->settle(0.2), 'a socket gets each event once (member and subscriber)');
    }

    public function test_send_refuses_bad_input_and_stores_nothing(): void
    {
        $t = $this->thread('alice', ['bob']);
        $other = $this->thread('carol', ['dave']);
        $bob = $this->sub('bob');
        $this->err($this->rest('POST', "/threads/{$other['id']}/messages", 'alice', ['text' => 'intrude']), 403, 'bm_relay_not_member');
        $this->err($this->rest('POST', '/threads/88888888/messages', 'alice', ['text' => 'x']), 404, 'bm_relay_no_thread');
        $this->err($this->rest('POST', '/threads/0/messages', 'alice', ['text' => 'x']), 400);
        $this->err($this->rest('POST', '/threads/-1/messages', 'alice', ['text' => 'x']), 404, 'rest_no_route');
        foreach ([[], ['text' => ''], ['text' => "  \n\t "], ['text' => ['a']], ['text' => 12]] as $body) {
            $this->err($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', $body), 400, 'bm_relay_invalid_param');
        }
        // Invalid UTF-8 cannot travel in JSON; a form body carries it.
        $this->err($this->rest_form('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => "bad \xC3\x28 utf8"]), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'x', 'client_id' => 'no spaces allowed']), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => str_repeat('a', 5001)]), 413, 'bm_relay_too_long');
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => str_repeat('a', 5000)]), 201);
        $this->assertSame('1', $this->rows("SELECT COUNT(*) n FROM wp_bmr_messages WHERE thread_id = {$t['id']}")[0]['n']);
        $this->assertSame('0', $this->rows("SELECT COUNT(*) n FROM wp_bmr_messages WHERE thread_id = {$other['id']}")[0]['n']);
        $this->assertCount(1, $bob->settle(0.3), 'only the valid message was pushed');
    }

    public function test_catch_up_lists_messages_after_an_id_for_members_only(): void
    {
        $t = $this->thread('bob', ['carol']);
        $ids = [];
        for ($i = 1; $i <= 5; $i++) {
            $ids[] = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", $i % 2 ? 'bob' : 'carol', ['text' => "m$i"]), 201)['message']['id'];
        }
        $all = $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'carol'));
        $this->assertSame($ids, array_column($all['messages'], 'id'));
        $this->assertFalse($all['has_more']);
        $after = $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'carol', [], ['after' => $ids[2]]));
        $this->assertSame(['m4', 'm5'], array_column($after['messages'], 'text'));
        $page = $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'carol', [], ['after' => $ids[0], 'limit' => 2]));
        $this->assertSame([$ids[1], $ids[2]], array_column($page['messages'], 'id'));
        $this->assertTrue($page['has_more']);
        $hist = $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'carol', [], ['before' => $ids[4], 'limit' => 2]));
        $this->assertSame([$ids[2], $ids[3]], array_column($hist['messages'], 'id'));
        $this->assertTrue($hist['has_more']);
        $this->assertSame([], $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'carol', [], ['after' => $ids[4]]))['messages']);

        $this->err($this->rest('GET', "/threads/{$t['id']}/messages", 'dave'), 403, 'bm_relay_not_member');
        foreach ([['after' => 'x'], ['after' => '-1'], ['after' => '1e3'], ['limit' => '0'], ['limit' => '201'], ['before' => '0'], ['after' => "1' OR '1'='1"]] as $q) {
            $this->err($this->rest('GET', "/threads/{$t['id']}/messages", 'carol', [], $q), 400, 'bm_relay_invalid_param');
        }
    }

    public function test_edit_only_by_the_sender_pushes_message_edit(): void
    {
        $t = $this->thread('alice', ['bob']);
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'tpyo']), 201)['message'];
        $bob = $this->sub('bob');
        $this->err($this->rest('PATCH', "/messages/{$m['id']}", 'bob', ['text' => 'hacked']), 403, 'bm_relay_forbidden');
        $this->err($this->rest('PATCH', "/messages/{$m['id']}", 'carol', ['text' => 'hacked']), 403, 'bm_relay_not_member');
        $this->err($this->rest('PATCH', "/messages/{$m['id']}", 'alice', ['text' => '']), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('PATCH', "/messages/{$m['id']}", 'alice', ['text' => str_repeat('z', 5001)]), 413);
        $this->err($this->rest('PATCH', '/messages/77777777', 'alice', ['text' => 'x']), 404, 'bm_relay_no_message');
        $this->assertSame('tpyo', $this->rows("SELECT content FROM wp_bmr_messages WHERE id = {$m['id']}")[0]['content']);

        $r = $this->ok($this->rest('PUT', "/messages/{$m['id']}", 'alice', ['text' => 'typo']));
        $this->assertSame('typo', $r['message']['text']);
        $this->assertNotNull($r['message']['edited']);
        $row = $this->rows("SELECT content, edited_at FROM wp_bmr_messages WHERE id = {$m['id']}")[0];
        $this->assertSame('typo', $row['content']);
        $this->assertNotNull($row['edited_at']);
        $ev = $bob->expect('message.edit');
        $this->assertSame('typo', $ev['payload']['data']['text']);
        $this->assertSame($m['id'], $ev['payload']['data']['id']);
        $this->assertCount(1, $bob->settle(0.2), 'refused edits pushed nothing');
    }

    public function test_delete_by_sender_or_moderator_leaves_a_tombstone_and_pushes_message_delete(): void
    {
        // Admins are reachable only when they allow it (LimitsTest).
        update_user_meta($this->uid('admin'), BM_Relay_Limits::ALLOW_CONTACT_META, '1');
        $t = $this->thread('alice', ['bob', 'admin']);
        delete_user_meta($this->uid('admin'), BM_Relay_Limits::ALLOW_CONTACT_META);
        $m1 = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'secret plan']), 201)['message'];
        $m2 = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'bob', ['text' => 'spam']), 201)['message'];
        $this->ok($this->rest('POST', "/messages/{$m1['id']}/reactions", 'bob', ['emoji' => '👍']));
        $bob = $this->sub('bob');
        $this->err($this->rest('DELETE', "/messages/{$m1['id']}", 'bob'), 403, 'bm_relay_forbidden');
        $this->err($this->rest('DELETE', "/messages/{$m1['id']}", 'dave'), 403, 'bm_relay_not_member');
        $this->err($this->rest('DELETE', '/messages/abc', 'alice'), 404, 'rest_no_route');
        $this->ok($this->rest('DELETE', "/messages/{$m1['id']}", 'alice'));
        $this->ok($this->rest('DELETE', "/messages/{$m2['id']}", 'admin'), 200);

        $row = $this->rows("SELECT content, deleted_at FROM wp_bmr_messages WHERE id = {$m1['id']}")[0];
        $this->assertSame('', $row['content'], 'the text is gone from the database');
        $this->assertNotNull($row['deleted_at']);
        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_message_meta WHERE message_id = {$m1['id']}"));
        $this->assertSame($m1['id'], $bob->expect('message.delete')['payload']['data']['id']);
        $this->assertSame($m2['id'], $bob->expect('message.delete', 5, 2)['payload']['data']['id']);
        $list = $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'bob'))['messages'];
        $this->assertTrue($list[0]['deleted']);
        $this->assertNull($list[0]['text']);
        $this->err($this->rest('PATCH', "/messages/{$m1['id']}", 'alice', ['text' => 'undo']), 409, 'bm_relay_deleted');
    }

    public function test_reactions_add_remove_and_push_the_full_list(): void
    {
        $t = $this->thread('carol', ['dave', 'bob']);
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'carol', ['text' => 'pizza?']), 201)['message'];
        $carol = $this->sub('carol');
        $r = $this->ok($this->rest('POST', "/messages/{$m['id']}/reactions", 'dave', ['emoji' => '🍕']));
        $this->assertSame([['emoji' => '🍕', 'users' => [$this->uid('dave')]]], $r['reactions']);
        $this->ok($this->rest('POST', "/messages/{$m['id']}/reactions", 'bob', ['emoji' => '🍕']));
        $again = $this->ok($this->rest('POST', "/messages/{$m['id']}/reactions", 'bob', ['emoji' => '🍕']));
        $this->assertFalse($again['changed'], 'reacting twice is idempotent');
        $this->assertSame(2, (int) $this->rows("SELECT COUNT(*) n FROM wp_bmr_message_meta WHERE message_id = {$m['id']} AND meta_key = 'reaction'")[0]['n']);

        $ev = $carol->expect('reaction', 5, 2);
        $this->assertSame('add', $ev['payload']['data']['op']);
        $this->assertSame([['emoji' => '🍕', 'users' => [$this->uid('dave'), $this->uid('bob')]]], $ev['payload']['data']['reactions']);

        $this->ok($this->rest('POST', "/messages/{$m['id']}/reactions", 'dave', ['emoji' => '🍕', 'remove' => true]));
        $ev = $carol->expect('reaction', 5, 3);
        $this->assertSame('remove', $ev['payload']['data']['op']);
        $this->assertSame([['emoji' => '🍕', 'users' => [$this->uid('bob')]]], $ev['payload']['data']['reactions']);
        $this->assertSame([['emoji' => '🍕', 'users' => [$this->uid('bob')]]], $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'dave'))['messages'][0]['reactions']);

        foreach (['', 'two words', str_repeat('x', 17), '<script>', ['👍']] as $bad) {
            $this->err($this->rest('POST', "/messages/{$m['id']}/reactions", 'dave', ['emoji' => $bad]), 400, 'bm_relay_invalid_param');
        }
        $this->err($this->rest('POST', "/messages/{$m['id']}/reactions", 'alice', ['emoji' => '👍']), 403, 'bm_relay_not_member');
    }

    public function test_mark_read_recounts_unread_and_pushes_read(): void
    {
        $t = $this->thread('alice', ['bob']);
        $ids = [];
        foreach (['a', 'b', 'c'] as $x) {
            $ids[] = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => $x]), 201)['message']['id'];
        }
        $this->assertSame('3', $this->rows("SELECT unread_count FROM wp_bmr_participants WHERE thread_id = {$t['id']} AND user_id = {$this->uid('bob')}")[0]['unread_count']);
        $alice = $this->sub('alice');
        $r = $this->ok($this->rest('POST', "/threads/{$t['id']}/read", 'bob', ['message_id' => $ids[1]]));
        $this->assertSame(['thread' => $t['id'], 'last_read_id' => $ids[1], 'unread' => 1, 'pushed' => true], $r);
        $row = $this->rows("SELECT unread_count, last_read_id FROM wp_bmr_participants WHERE thread_id = {$t['id']} AND user_id = {$this->uid('bob')}")[0];
        $this->assertSame(['unread_count' => '1', 'last_read_id' => (string) $ids[1]], $row);
        $ev = $alice->expect('read');
        $this->assertEquals(['thread' => $t['id'], 'user' => $this->uid('bob'), 'message_id' => $ids[1], 'seq' => $ev['payload']['data']['seq'] ?? null], $ev['payload']['data']);
        $this->assertIsInt($ev['payload']['data']['seq'], 'numbered in its thread (PROTOCOL.md §4.1)');

        $this->assertSame(0, $this->ok($this->rest('POST', "/threads/{$t['id']}/read", 'bob'))['unread'], 'default: everything');
        $this->assertSame(0, $this->ok($this->rest('GET', '/threads', 'bob'))['threads'][0]['unread']);

        $other = $this->thread('carol', ['bob']);
        $foreign = $this->ok($this->rest('POST', "/threads/{$other['id']}/messages", 'carol', ['text' => 'x']), 201)['message']['id'];
        $this->err($this->rest('POST', "/threads/{$t['id']}/read", 'bob', ['message_id' => $foreign]), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('POST', "/threads/{$t['id']}/read", 'bob', ['message_id' => 'last']), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('POST', "/threads/{$t['id']}/read", 'dave'), 403, 'bm_relay_not_member');
    }
}
