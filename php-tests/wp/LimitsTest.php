<?php
/**
 * Limits on what a logged-in user can do, each changeable with a filter:
 * a limit hit is a REST error with a clear message, a code and 429/403,
 * and nothing is stored.
 */

final class LimitsTest extends BM_WP_TestCase
{
    protected function setUp(): void
    {
        parent::setUp();
        // The real defaults, not the suite's "off".
        remove_filter('bm_relay_limit_messages_per_minute', '__return_zero');
        remove_filter('bm_relay_limit_threads_per_hour', '__return_zero');
    }

    protected function tearDown(): void
    {
        foreach (['bm_relay_limit_messages_per_minute', 'bm_relay_limit_threads_per_hour', 'bm_relay_limit_members_per_thread', 'bm_relay_limit_reactions_per_message', 'bm_relay_can_message'] as $f) {
            remove_all_filters($f);
        }
        delete_user_meta($this->uid('admin'), BM_Relay_Limits::ALLOW_CONTACT_META);
        parent::tearDown();
    }

    /** Makes every stored row of a user old (outside any rate window). */
    private function age(string $who): void
    {
        global $wpdb;
        $old = gmdate('Y-m-d H:i:s', time() - 2 * DAY_IN_SECONDS);
        $wpdb->query($wpdb->prepare("UPDATE wp_bmr_messages SET created_at = %s WHERE sender_id = %d", $old, $this->uid($who)));
        $wpdb->query($wpdb->prepare("UPDATE wp_bmr_threads SET created_at = %s WHERE created_by = %d", $old, $this->uid($who)));
    }

    /**
     * Takes the hourly thread limit off for a test about another limit: the
     * suite's other classes start threads as alice too (calls, search,
     * attachments…), and at the real default of 20 an hour her twenty-first
     * would be refused before the limit under test is reached.
     */
    private function no_thread_rate(): void
    {
        add_filter('bm_relay_limit_threads_per_hour', '__return_zero');
    }

    public function test_messages_per_minute(): void
    {
        $this->age('carol');
        $this->age('bob');
        $t = $this->thread('carol', ['bob'], 'chatty');
        add_filter('bm_relay_limit_messages_per_minute', static fn() => 3);
        for ($i = 1; $i <= 3; $i++) {
            $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'carol', ['text' => "m$i"]), 201);
        }
        $r = $this->rest('POST', "/threads/{$t['id']}/messages", 'carol', ['text' => 'one too many']);
        $this->err($r, 429, 'bm_relay_rate_limited');
        $this->assertSame('You can send at most 3 messages a minute. Wait a moment and try again.', $r[1]['message']);
        $this->assertSame(60, $r[1]['data']['retry_after']);
        $this->assertSame('3', $this->rows("SELECT COUNT(*) n FROM wp_bmr_messages WHERE thread_id = {$t['id']}")[0]['n'], 'nothing stored');
        // Someone else is not limited by carol's rate; the default is 30.
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'bob', ['text' => 'bob is fine']), 201);
        remove_all_filters('bm_relay_limit_messages_per_minute');
        $this->assertSame(30, BM_Relay_Limits::messages_per_minute($this->uid('carol')));
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'carol', ['text' => 'within 30']), 201);
        // A first message given at creation counts too.
        add_filter('bm_relay_limit_messages_per_minute', static fn() => 4);
        $this->err($this->rest('POST', '/threads', 'carol', ['participants' => [$this->uid('dave')], 'text' => 'x']), 429, 'bm_relay_rate_limited');
    }

    public function test_threads_per_hour(): void
    {
        $this->age('bob');
        add_filter('bm_relay_limit_threads_per_hour', static fn() => 2);
        $before = $this->rows('SELECT COUNT(*) n FROM wp_bmr_threads')[0]['n'];
        $this->thread('bob', ['carol'], 'one');
        $this->thread('bob', ['dave'], 'two');
        $r = $this->rest('POST', '/threads', 'bob', ['participants' => [$this->uid('carol')], 'subject' => 'three']);
        $this->err($r, 429, 'bm_relay_rate_limited');
        $this->assertSame('You can start at most 2 conversations an hour. Try again later.', $r[1]['message']);
        $this->assertSame((string) ($before + 2), $this->rows('SELECT COUNT(*) n FROM wp_bmr_threads')[0]['n']);
        $this->assertSame(20, (remove_all_filters('bm_relay_limit_threads_per_hour') ? BM_Relay_Limits::threads_per_hour(1) : 0));
    }

    public function test_members_per_thread_on_creation_and_when_adding(): void
    {
        $this->no_thread_rate();
        add_filter('bm_relay_limit_members_per_thread', static fn() => 3);
        $r = $this->rest('POST', '/threads', 'alice', ['participants' => [$this->uid('bob'), $this->uid('carol'), $this->uid('dave')]]);
        $this->err($r, 403, 'bm_relay_thread_full');
        $this->assertSame('A conversation can have at most 3 members.', $r[1]['message']);
        $t = $this->thread('alice', ['bob', 'carol']);
        $r = $this->rest('POST', "/threads/{$t['id']}/participants", 'alice', ['user_id' => $this->uid('dave')]);
        $this->err($r, 403, 'bm_relay_thread_full');
        $this->assertCount(3, $this->rows("SELECT * FROM wp_bmr_participants WHERE thread_id = {$t['id']}"));
        remove_all_filters('bm_relay_limit_members_per_thread');
        $this->assertSame(50, BM_Relay_Limits::members_per_thread());
        $this->ok($this->rest('POST', "/threads/{$t['id']}/participants", 'alice', ['user_id' => $this->uid('dave')]));
    }

    public function test_distinct_reactions_per_message(): void
    {
        $this->no_thread_rate();
        $t = $this->thread('alice', ['bob']);
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'react']), 201)['message'];
        add_filter('bm_relay_limit_reactions_per_message', static fn() => 2);
        $this->ok($this->rest('POST', "/messages/{$m['id']}/reactions", 'alice', ['emoji' => '👍']));
        $this->ok($this->rest('POST', "/messages/{$m['id']}/reactions", 'bob', ['emoji' => '🎉']));
        $r = $this->rest('POST', "/messages/{$m['id']}/reactions", 'bob', ['emoji' => '🔥']);
        $this->err($r, 403, 'bm_relay_too_many_reactions');
        $this->assertSame('A message can have at most 2 different reactions.', $r[1]['message']);
        // Joining an existing reaction is always fine.
        $this->ok($this->rest('POST', "/messages/{$m['id']}/reactions", 'bob', ['emoji' => '👍']));
        $this->assertSame('3', $this->rows("SELECT COUNT(*) n FROM wp_bmr_message_meta WHERE message_id = {$m['id']}")[0]['n']);
    }

    public function test_admins_are_reachable_only_if_they_allow_it_and_the_rule_is_a_filter(): void
    {
        $admin = $this->uid('admin');
        $r = $this->rest('POST', '/threads', 'bob', ['participants' => [$admin]]);
        $this->err($r, 403, 'bm_relay_cannot_message');
        $this->assertSame('You cannot start a conversation with this person.', $r[1]['message']);
        $t = $this->thread('bob', ['carol']);
        $this->err($this->rest('POST', "/threads/{$t['id']}/participants", 'bob', ['user_id' => $admin]), 403, 'bm_relay_cannot_message');
        $this->assertSame([], $this->ok($this->rest('GET', '/users', 'bob', [], ['search' => 'adm']))['users'], 'not offered in search either');
        // The admin starts one: fine (admins reach anyone).
        $this->thread('admin', ['bob']);
        update_user_meta($admin, BM_Relay_Limits::ALLOW_CONTACT_META, '1');
        $this->thread('bob', ['admin']);
        // A site's own rule: nobody may write to dave.
        add_filter('bm_relay_can_message', fn($ok, $from, $to) => $to === $this->uid('dave') ? false : $ok, 10, 3);
        $this->err($this->rest('POST', '/threads', 'alice', ['participants' => [$this->uid('dave')]]), 403, 'bm_relay_cannot_message');
        $this->assertSame([], $this->ok($this->rest('GET', '/users', 'alice', [], ['search' => 'Dav']))['users']);
    }

    public function test_user_search_does_not_enumerate_logins(): void
    {
        $login = 'zq' . bin2hex(random_bytes(3));
        $plain = wp_insert_user(['user_login' => $login, 'user_pass' => wp_generate_password(), 'user_email' => "$login@example.test", 'role' => 'subscriber']);
        $named = wp_insert_user(['user_login' => $login . 'x', 'user_pass' => wp_generate_password(), 'user_email' => "{$login}x@example.test", 'display_name' => 'Quentin Public', 'role' => 'subscriber']);
        $this->assertIsInt($plain);
        // A user whose public name is still the login is not found by it; nor
        // is anyone found by their login (only by the display name).
        $this->assertSame([], $this->ok($this->rest('GET', '/users', 'alice', [], ['search' => $login]))['users']);
        $this->assertSame([], $this->ok($this->rest('GET', '/users', 'alice', [], ['search' => substr($login, 0, 4)]))['users']);
        $found = $this->ok($this->rest('GET', '/users', 'alice', [], ['search' => 'Quentin']))['users'];
        $this->assertSame([$named], array_column($found, 'id'));
        $this->assertSame([['id', 'name', 'avatar']], array_map('array_keys', $found));
        require_once ABSPATH . 'wp-admin/includes/user.php';
        wp_delete_user($plain);
        wp_delete_user($named);
    }
}
