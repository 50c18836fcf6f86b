<?php
/**
 * Voice and video calls (issue #17), WordPress side: the invite and every
 * change of state stored in `bmr_calls` and pushed sealed with the thread
 * key as numbered thread events; accept, decline, hang-up, a missed call
 * after the ringing time; members of 1:1 threads only; TURN credentials in
 * coturn's use-auth-secret format; the call log exported and erased.
 */

final class CallsTest extends BM_WP_TestCase
{
    public function test_alice_calls_bob_he_answers_on_one_tab_and_the_hang_up_records_the_duration(): void
    {
        $t = $this->thread('alice', ['bob']);
        $bob = $this->sub('bob');
        $r = $this->ok($this->rest('POST', "/threads/{$t['id']}/calls", 'alice', ['video' => true, 'tab' => 'tabA']), 201);
        $call = $r['call'];
        $this->assertSame([$t['id'], $this->uid('alice'), $this->uid('bob'), true, 'ringing', null], [$call['thread'], $call['caller'], $call['callee'], $call['video'], $call['state'], $call['duration']]);
        $this->assertTrue($r['online'], "Bob's subscriber is a socket on the relay: online at once");
        $ev = $bob->expect('call.invite');
        $this->assertSame(BM_Relay_Ids::thread_kid($t['id'], 0), $ev['k'], 'sealed with the thread key');
        $this->assertSame([1, $call['id'], 'tabA'], [$ev['payload']['data']['seq'], $ev['payload']['data']['call']['id'], $ev['payload']['data']['tab']], 'numbered');

        // A reloaded page of Bob's finds it ringing.
        $this->assertSame([$call['id']], array_column($this->ok($this->rest('GET', '/calls/active', 'bob'))['calls'], 'id'));
        $this->err($this->rest('POST', "/threads/{$t['id']}/calls", 'bob'), 409, 'bm_relay_call_busy');
        $this->err($this->rest('POST', "/calls/{$call['id']}/accept", 'alice'), 403, 'bm_relay_not_callee');

        $a = $this->ok($this->rest('POST', "/calls/{$call['id']}/accept", 'bob', ['tab' => 'bob-tab-2']));
        $this->assertSame('active', $a['call']['state']);
        $ev = $bob->expect('call.update');
        $this->assertSame(['active', 'bob-tab-2', 2], [$ev['payload']['data']['call']['state'], $ev['payload']['data']['tab'], $ev['payload']['data']['seq']], "the answering tab is named: Bob's other tabs stop ringing");
        $this->err($this->rest('POST', "/calls/{$call['id']}/accept", 'bob', ['tab' => 'bob-tab-3']), 409, 'bm_relay_call_over');
        $this->err($this->rest('POST', "/calls/{$call['id']}/decline", 'bob'), 409, 'bm_relay_call_over');

        // Two seconds of call, then Alice hangs up.
        $this->h()->mysqli()->query("UPDATE wp_bmr_calls SET answered_at = DATE_SUB(answered_at, INTERVAL 2 SECOND) WHERE id = {$call['id']}");
        $h = $this->ok($this->rest('POST', "/calls/{$call['id']}/hangup", 'alice'));
        $this->assertSame(['ended', $this->uid('alice')], [$h['call']['state'], $h['call']['ended_by']]);
        $this->assertGreaterThanOrEqual(2, $h['call']['duration']);
        $this->assertLessThan(10, $h['call']['duration']);
        $this->assertSame('ended', $bob->expect('call.update', 5, 2)['payload']['data']['call']['state']);
        $this->assertFalse($this->ok($this->rest('POST', "/calls/{$call['id']}/hangup", 'bob'))['changed'], 'both hanging up at once is no error');

        $log = $this->ok($this->rest('GET', "/threads/{$t['id']}/calls", 'bob'))['calls'];
        $this->assertSame([[$call['id'], 'ended']], array_map(static fn($c) => [$c['id'], $c['state']], $log), 'the call log of the thread');
        $this->assertSame([], $this->ok($this->rest('GET', '/calls/active', 'bob'))['calls']);
    }

    public function test_decline_missed_after_the_ringing_time_and_a_caller_who_gives_up(): void
    {
        $t = $this->thread('alice', ['bob']);
        $bob = $this->sub('bob');
        $c1 = $this->ok($this->rest('POST', "/threads/{$t['id']}/calls", 'alice'), 201)['call'];
        $this->assertFalse($c1['video']);
        $d = $this->ok($this->rest('POST', "/calls/{$c1['id']}/decline", 'bob'));
        $this->assertSame(['declined', null], [$d['call']['state'], $d['call']['duration']]);
        $this->err($this->rest('POST', "/calls/{$c1['id']}/accept", 'bob'), 409, 'bm_relay_call_over');

        // Nobody answers: past the ringing time, whoever asks next records it missed.
        $c2 = $this->ok($this->rest('POST', "/threads/{$t['id']}/calls", 'alice'), 201)['call'];
        $this->h()->mysqli()->query("UPDATE wp_bmr_calls SET created_at = DATE_SUB(created_at, INTERVAL 46 SECOND) WHERE id = {$c2['id']}");
        $this->assertSame([], $this->ok($this->rest('GET', '/calls/active', 'bob'))['calls'], 'no longer ringing');
        $missed = BM_Relay_Calls::call($c2['id']);
        $this->assertSame('missed', $missed->state);
        $this->assertSame(45, strtotime($missed->ended_at . ' UTC') - strtotime($missed->created_at . ' UTC'), 'ended when its ringing ran out');
        $this->err($this->rest('POST', "/calls/{$c2['id']}/accept", 'bob'), 409, 'bm_relay_call_over');

        // The caller hangs up while it rings: missed too (Bob never answered).
        $c3 = $this->ok($this->rest('POST', "/threads/{$t['id']}/calls", 'alice'), 201)['call'];
        $this->assertSame('missed', $this->ok($this->rest('POST', "/calls/{$c3['id']}/hangup", 'alice'))['call']['state']);
        $states = array_map(static fn($e) => [$e['payload']['type'], $e['payload']['data']['call']['state']], $bob->settle(0.5));
        $this->assertSame([['call.invite', 'ringing'], ['call.update', 'declined'], ['call.invite', 'ringing'], ['call.update', 'missed'], ['call.invite', 'ringing'], ['call.update', 'missed']], $states);
        $log = $this->ok($this->rest('GET', "/threads/{$t['id']}/calls", 'alice'))['calls'];
        $this->assertSame(['missed', 'missed', 'declined'], array_column($log, 'state'), 'newest first');
    }

    public function test_an_offline_callee_is_said_at_once_and_the_call_is_missed(): void
    {
        $t = $this->thread('alice', ['carol']);
        $r = $this->ok($this->rest('POST', "/threads/{$t['id']}/calls", 'alice'), 201);
        $this->assertFalse($r['online'], 'carol has no socket on the relay');
        $this->assertSame('missed', $r['call']['state']);

        // Async mode: the push answers nothing; the invite asks bm_presence().
        // (a thread of Alice's: PrivacyRetentionTest counts the threads Dave started)
        $u = $this->thread('alice', ['bob']);
        $bob = $this->sub('bob');
        update_option('bmr_mode', 'async');
        BM_Relay_Settings::apply();
        try {
            $r = $this->ok($this->rest('POST', "/threads/{$u['id']}/calls", 'alice'), 201);
            $this->assertSame([true, 'ringing'], [$r['online'], $r['call']['state']], 'bob is online, asked of the relay');
            $this->assertTrue(bm_flush(2000));
            $this->assertSame('call.invite', $bob->expect('call.invite')['payload']['type']);
            $this->ok($this->rest('POST', "/calls/{$r['call']['id']}/hangup", 'alice'));
            $r = $this->ok($this->rest('POST', "/threads/{$t['id']}/calls", 'alice'), 201);
            $this->assertSame([false, 'missed'], [$r['online'], $r['call']['state']], 'carol is not');
            $this->assertTrue(bm_flush(2000));
        } finally {
            update_option('bmr_mode', 'sync');
            BM_Relay_Settings::apply();
        }
    }

    public function test_only_members_of_a_two_person_thread_may_call_and_act(): void
    {
        $t = $this->thread('alice', ['bob']);
        $this->err($this->rest('POST', "/threads/{$t['id']}/calls", 'dave'), 403, 'bm_relay_not_member');
        $this->err($this->rest('GET', "/threads/{$t['id']}/calls", 'dave'), 403, 'bm_relay_not_member');
        $this->err($this->rest('POST', "/threads/{$t['id']}/calls", null), 401, 'bm_relay_not_logged_in');
        $this->err($this->rest('POST', "/threads/{$t['id']}/calls", 'alice', [], [], false), 403, 'bm_relay_bad_nonce');
        $this->err($this->rest('POST', '/threads/999999999/calls', 'alice'), 404, 'bm_relay_no_thread');
        $this->err($this->rest('POST', "/threads/{$t['id']}/calls", 'alice', ['tab' => '<script>']), 400, 'bm_relay_bad_param');
        $this->assertSame([], $this->rows("SELECT id FROM wp_bmr_calls WHERE thread_id = {$t['id']}"), 'nothing stored by a refused call');

        $group = $this->thread('alice', ['bob', 'carol']);
        $this->err($this->rest('POST', "/threads/{$group['id']}/calls", 'alice'), 400, 'bm_relay_call_not_direct');

        $c = $this->ok($this->rest('POST', "/threads/{$t['id']}/calls", 'alice'), 201)['call'];
        foreach (['accept', 'decline', 'hangup'] as $act) {
            $this->err($this->rest('POST', "/calls/{$c['id']}/$act", 'dave'), 403, 'bm_relay_not_member');
        }
        $this->err($this->rest('POST', '/calls/999999999/hangup', 'alice'), 404, 'bm_relay_no_call');
        $this->ok($this->rest('POST', "/calls/{$c['id']}/hangup", 'alice'));
    }

    public function test_turn_credentials_are_minted_per_user_in_coturns_format_and_expire(): void
    {
        $this->assertSame(['ice_servers' => [], 'ice_transport_policy' => 'all', 'expires' => null], $this->ok($this->rest('GET', '/calls/ice', 'alice')), 'nothing configured');
        update_option('bmr_stun_urls', "stun:127.0.0.1:3478\nhttp://evil.example");
        update_option('bmr_turn_urls', 'turn:127.0.0.1:3478?transport=udp');
        update_option('bmr_turn_secret', 'north-wind-secret');
        update_option('bmr_turn_ttl', 600);
        update_option('bmr_turn_only', 1);
        try {
            $before = time();
            $r = $this->ok($this->rest('GET', '/calls/ice', 'alice'));
            $this->assertSame([['urls' => ['stun:127.0.0.1:3478']]], array_slice($r['ice_servers'], 0, 1), 'only stun: URLs');
            $turn = $r['ice_servers'][1];
            $this->assertSame(['turn:127.0.0.1:3478?transport=udp'], $turn['urls']);
            [$exp, $user] = explode(':', $turn['username']);
            $this->assertSame((string) BM_Relay_Ids::user($this->uid('alice')), $user, 'the user as the relay knows them');
            $this->assertGreaterThanOrEqual($before + 600, (int) $exp);
            $this->assertLessThanOrEqual(time() + 600, (int) $exp);
            $this->assertSame((int) $exp, $r['expires']);
            $this->assertSame(base64_encode(hash_hmac('sha1', $turn['username'], 'north-wind-secret', true)), $turn['credential'], 'base64(HMAC-SHA1(secret, username))');
            $this->assertSame('relay', $r['ice_transport_policy']);
            $this->assertStringNotContainsString('north-wind-secret', wp_json_encode($r), 'the secret itself never reaches a page');
            // Settings → bm-relay shows the fields, never the secret.
            [$code, , $page] = $this->h()->login('admin')->request('GET', '/wp-admin/options-general.php?page=bm-relay');
            $this->assertSame(200, $code);
            foreach (['bmr_stun_urls', 'bmr_turn_urls', 'bmr_turn_secret', 'bmr_turn_ttl', 'bmr_turn_only'] as $field) {
                $this->assertStringContainsString('name="' . $field . '"', $page);
            }
            $this->assertStringContainsString('turn:127.0.0.1:3478?transport=udp', $page);
            $this->assertStringNotContainsString('north-wind-secret', $page);
            $bob = $this->ok($this->rest('GET', '/calls/ice', 'bob'))['ice_servers'][1];
            $this->assertNotSame($turn['credential'], $bob['credential'], 'per user');
            $this->assertSame(28, strlen($turn['credential']), 'a 20-byte HMAC in base64');
        } finally {
            foreach (['bmr_stun_urls', 'bmr_turn_urls', 'bmr_turn_secret', 'bmr_turn_ttl', 'bmr_turn_only'] as $o) {
                delete_option($o);
            }
        }
    }

    public function test_the_schema_8_upgrade_creates_the_call_log(): void
    {
        $m = $this->h()->mysqli();
        $m->query('DROP TABLE wp_bmr_calls');
        $m->close();
        update_option(BM_Relay_Schema::OPTION, 6, true);
        BM_Relay_Schema::maybe_upgrade();
        $this->assertSame(['id', 'thread_id', 'caller_id', 'callee_id', 'video', 'state', 'created_at', 'answered_at', 'ended_at', 'ended_by'], array_column($this->rows('SHOW COLUMNS FROM wp_bmr_calls'), 'Field'), 'a site on schema 6 gets it');
        $this->assertSame((string) BM_Relay_Schema::VERSION, (string) get_option(BM_Relay_Schema::OPTION));
    }

    public function test_calls_are_in_the_personal_data_export_and_erased(): void
    {
        $login = 'hank' . bin2hex(random_bytes(2));
        $hank = wp_insert_user(['user_login' => $login, 'user_pass' => wp_generate_password(), 'user_email' => "$login@example.test", 'display_name' => 'Hank', 'role' => 'subscriber']);
        $this->h()->users[$login] = $hank;
        $t = $this->thread('bob', [$login], 'Calls to export');
        $c = $this->ok($this->rest('POST', "/threads/{$t['id']}/calls", 'bob', ['video' => true]), 201)['call'];
        $exporters = apply_filters('wp_privacy_personal_data_exporters', []);
        $r = call_user_func($exporters['bm-relay-calls']['callback'], "$login@example.test", 1);
        $this->assertTrue($r['done']);
        $this->assertCount(1, $r['data']);
        $this->assertSame('bm-relay-call-' . $c['id'], $r['data'][0]['item_id']);
        $this->assertSame([$t['id'], 'incoming', 'video'], array_slice(array_column($r['data'][0]['data'], 'value'), 0, 3));

        $erasers = apply_filters('wp_privacy_personal_data_erasers', []);
        $e = call_user_func($erasers['bm-relay-calls']['callback'], "$login@example.test", 1);
        $this->assertTrue($e['items_removed']);
        $this->assertSame([], $this->rows("SELECT id FROM wp_bmr_calls WHERE caller_id = $hank OR callee_id = $hank"));
        require_once ABSPATH . 'wp-admin/includes/user.php';
        wp_delete_user($hank);
    }
}
