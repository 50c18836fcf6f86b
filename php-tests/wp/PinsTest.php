<?php
/**
 * Pinned messages (issue #16): members and moderators pin and unpin over
 * REST (`POST`/`DELETE /messages/{id}/pin`), stored as message meta, listed
 * in the thread shape and `GET /threads/{id}/pins`, pushed sealed with the
 * thread key as numbered thread events, limited per thread, exported.
 */

final class PinsTest extends BM_WP_TestCase
{
    public function test_a_member_pins_and_another_unpins_each_pushed_sealed_and_numbered(): void
    {
        $t = $this->thread('alice', ['bob']);
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'the address: 12 Elm St']), 201)['message'];
        $bob = $this->sub('bob');

        $r = $this->ok($this->rest('POST', "/messages/{$m['id']}/pin", 'alice'));
        $this->assertSame(['id' => $m['id'], 'thread' => $t['id'], 'pinned' => [$m['id']], 'changed' => true, 'pushed' => true], $r);
        $rows = $this->rows("SELECT user_id, meta_value FROM wp_bmr_message_meta WHERE message_id = {$m['id']} AND meta_key = 'pin'");
        $this->assertSame([['user_id' => (string) $this->uid('alice'), 'meta_value' => (string) $t['id']]], $rows, 'one row: who pinned, in which thread');

        $ev = $bob->expect('message.pin');
        $this->assertSame(BM_Relay_Ids::thread_kid($t['id'], 0), $ev['k'], 'sealed with the thread key');
        $d = $ev['payload']['data'];
        $this->assertSame([$t['id'], 2, $m['id'], $this->uid('alice'), [$m['id']]], [$d['thread'], $d['seq'], $d['id'], $d['user'], $d['pinned']], 'numbered after message.new (1)');
        $this->assertSame('the address: 12 Elm St', $d['message']['text'], 'the text travels sealed with it, for the pinned bar');

        // The shapes say it: the thread lists the pinned ids, /pins the messages.
        $this->assertSame([$m['id']], $this->ok($this->rest('GET', "/threads/{$t['id']}", 'bob'))['thread']['pinned']);
        $mine = array_values(array_filter($this->ok($this->rest('GET', '/threads', 'bob'))['threads'], fn($x) => $x['id'] === $t['id']))[0];
        $this->assertSame([$m['id']], $mine['pinned']);
        $this->assertSame(['the address: 12 Elm St'], array_column($this->ok($this->rest('GET', "/threads/{$t['id']}/pins", 'bob'))['pinned'], 'text'));

        // Again: no change, nothing pushed, no number spent.
        $again = $this->ok($this->rest('POST', "/messages/{$m['id']}/pin", 'bob'));
        $this->assertFalse($again['changed']);
        $this->assertSame([$m['id']], $again['pinned']);

        // Bob unpins Alice's pin: pins belong to the conversation.
        $r = $this->ok($this->rest('DELETE', "/messages/{$m['id']}/pin", 'bob'));
        $this->assertSame([[], true, true], [$r['pinned'], $r['changed'], $r['pushed']]);
        $ev = $bob->expect('message.unpin');
        $this->assertSame(BM_Relay_Ids::thread_kid($t['id'], 0), $ev['k']);
        $this->assertSame([3, [], $this->uid('bob')], [$ev['payload']['data']['seq'], $ev['payload']['data']['pinned'], $ev['payload']['data']['user']]);
        $this->assertArrayNotHasKey('message', $ev['payload']['data']);
        $this->assertSame([], $this->rows("SELECT id FROM wp_bmr_message_meta WHERE message_id = {$m['id']} AND meta_key = 'pin'"));
        $this->assertFalse($this->ok($this->rest('DELETE', "/messages/{$m['id']}/pin", 'alice'))['changed'], 'unpinning twice is no change');
        $this->assertSame(['message.pin', 'message.unpin'], array_map(static fn($e) => $e['payload']['type'], $bob->settle(0.3)), 'the repeats pushed nothing');
        $this->assertSame(3, $this->ok($this->rest('GET', "/threads/{$t['id']}", 'alice'))['thread']['seq']);
    }

    public function test_non_members_are_refused_moderators_may_and_deleted_messages_cannot_be_pinned(): void
    {
        $t = $this->thread('alice', ['bob']);
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'bob', ['text' => 'pin me']), 201)['message'];
        foreach (['POST', 'DELETE'] as $method) {
            $this->err($this->rest($method, "/messages/{$m['id']}/pin", 'dave'), 403, 'bm_relay_not_member');
            $this->err($this->rest($method, "/messages/{$m['id']}/pin", null), 401, 'bm_relay_not_logged_in');
            $this->err($this->rest($method, "/messages/{$m['id']}/pin", 'alice', [], [], false), 403, 'bm_relay_bad_nonce');
            $this->err($this->rest($method, '/messages/999999999/pin', 'alice'), 404, 'bm_relay_no_message');
            $this->err($this->rest($method, '/messages/abc/pin', 'alice'), 404, 'rest_no_route');
        }
        $this->err($this->rest('GET', "/threads/{$t['id']}/pins", 'dave'), 403, 'bm_relay_not_member');
        $this->assertSame([], $this->rows("SELECT id FROM wp_bmr_message_meta WHERE message_id = {$m['id']}"), 'nothing stored by a refused call');

        // A moderator (bmr_moderate) who is not a member may; members see it.
        $alice = $this->sub('alice');
        $this->assertSame([$m['id']], $this->ok($this->rest('POST', "/messages/{$m['id']}/pin", 'admin'))['pinned']);
        $this->assertSame($this->uid('admin'), $alice->expect('message.pin')['payload']['data']['user']);
        $this->assertSame(['pin me'], array_column($this->ok($this->rest('GET', "/threads/{$t['id']}/pins", 'admin'))['pinned'], 'text'));

        // Deleting a pinned message unpins it (its meta goes with its text);
        // a deleted message cannot be pinned.
        $this->ok($this->rest('DELETE', "/messages/{$m['id']}", 'bob'));
        $this->assertSame([], $this->ok($this->rest('GET', "/threads/{$t['id']}", 'alice'))['thread']['pinned']);
        $this->err($this->rest('POST', "/messages/{$m['id']}/pin", 'alice'), 409, 'bm_relay_deleted');
    }

    public function test_a_thread_holds_a_limited_number_of_pins_with_a_clear_error(): void
    {
        $this->assertSame(50, BM_Relay_Limits::pins_per_thread(), 'the default');
        $t = $this->thread('alice', ['bob']);
        $u = $this->thread('alice', ['carol']);
        $ids = [];
        foreach (range(1, 4) as $i) {
            $ids[] = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => "m$i"]), 201)['message']['id'];
        }
        $other = $this->ok($this->rest('POST', "/threads/{$u['id']}/messages", 'alice', ['text' => 'elsewhere']), 201)['message']['id'];
        $three = static fn() => 3;
        add_filter('bm_relay_limit_pins_per_thread', $three);
        try {
            foreach (array_slice($ids, 0, 3) as $id) {
                $this->ok($this->rest('POST', "/messages/$id/pin", 'bob'));
            }
            $r = $this->rest('POST', "/messages/{$ids[3]}/pin", 'alice');
            $this->err($r, 403, 'bm_relay_too_many_pins');
            $this->assertSame('A conversation can have at most 3 pinned messages. Unpin one first.', $r[1]['message']);
            $this->assertSame(array_slice($ids, 0, 3), $this->ok($this->rest('GET', "/threads/{$t['id']}", 'alice'))['thread']['pinned'], 'in pin order, the fourth not stored');
            $this->assertTrue($this->ok($this->rest('POST', "/messages/$other/pin", 'alice'))['changed'], 'each thread counts its own');
            $this->assertFalse($this->ok($this->rest('POST', "/messages/{$ids[0]}/pin", 'alice'))['changed'], 'a pinned one again is no change, not an error');
            $this->ok($this->rest('DELETE', "/messages/{$ids[1]}/pin", 'alice'));
            $this->assertSame([$ids[0], $ids[2], $ids[3]], $this->ok($this->rest('POST', "/messages/{$ids[3]}/pin", 'alice'))['pinned']);
        } finally {
            remove_filter('bm_relay_limit_pins_per_thread', $three);
        }
    }

    public function test_the_schema_6_upgrade_adds_the_index_that_lists_a_threads_pins(): void
    {
        $keys = fn() => array_values(array_unique(array_column($this->rows('SHOW INDEX FROM wp_bmr_message_meta'), 'Key_name')));
        $this->assertContains('key_value', $keys(), 'a fresh install has it');
        $m = $this->h()->mysqli();
        $m->query('ALTER TABLE wp_bmr_message_meta DROP INDEX key_value');
        $m->close();
        update_option(BM_Relay_Schema::OPTION, 5, true);
        $this->assertNotContains('key_value', $keys());
        BM_Relay_Schema::maybe_upgrade();
        $this->assertContains('key_value', $keys(), 'a site on schema 5 gets it');
        $this->assertSame((string) BM_Relay_Schema::VERSION, (string) get_option(BM_Relay_Schema::OPTION));
    }

    public function test_pins_are_in_the_personal_data_export_and_erased(): void
    {
        $login = 'gina' . bin2hex(random_bytes(2));
        $gina = wp_insert_user(['user_login' => $login, 'user_pass' => wp_generate_password(), 'user_email' => "$login@example.test", 'display_name' => 'Gina', 'role' => 'subscriber']);
        $this->h()->users[$login] = $gina;
        $t = $this->thread('bob', [$login], 'Pins to export');
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'bob', ['text' => 'worth a pin']), 201)['message'];
        $this->ok($this->rest('POST', "/messages/{$m['id']}/pin", $login));
        $exporters = apply_filters('wp_privacy_personal_data_exporters', []);
        $items = [];
        for ($page = 1; $page < 10; $page++) {
            $r = call_user_func($exporters['bm-relay']['callback'], "$login@example.test", $page);
            array_push($items, ...$r['data']);
            if ($r['done']) {
                break;
            }
        }
        $this->assertTrue($r['done']);
        $pins = array_values(array_filter($items, static fn($i) => $i['group_id'] === 'bm-relay-pins'));
        $this->assertCount(1, $pins);
        $this->assertSame([$t['id'], $m['id']], [$pins[0]['data'][0]['value'], $pins[0]['data'][1]['value']], 'thread and message');

        $erasers = apply_filters('wp_privacy_personal_data_erasers', []);
        call_user_func($erasers['bm-relay']['callback'], "$login@example.test", 1);
        $this->assertSame([], $this->rows("SELECT id FROM wp_bmr_message_meta WHERE user_id = $gina"), 'the pin row names who pinned: erased');
        require_once ABSPATH . 'wp-admin/includes/user.php';
        wp_delete_user($gina);
    }
}
