<?php
/**
 * Moderation without membership: a capability (bmr_moderate, granted to
 * administrators) to list every thread, read it, delete messages and remove
 * members — over REST and in Tools → Chat moderation.
 */

final class ModerationTest extends BM_WP_TestCase
{
    public function test_administrators_have_the_capability_and_nobody_else(): void
    {
        $this->assertTrue(user_can($this->uid('admin'), 'bmr_moderate'));
        foreach (['alice', 'bob'] as $who) {
            $this->assertFalse(user_can($this->uid($who), 'bmr_moderate'));
        }
        $this->assertContains('bmr_moderate', array_keys(array_filter(get_role('administrator')->capabilities)));
    }

    public function test_a_moderator_lists_reads_deletes_and_removes_without_being_a_member(): void
    {
        $t = $this->thread('alice', ['bob', 'carol'], 'Needs a moderator');
        $bad = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'bob', ['text' => 'rude words']), 201)['message'];
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'please stop']), 201);
        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_participants WHERE thread_id = {$t['id']} AND user_id = {$this->uid('admin')}"), 'admin is not a member');

        // Everyone else: 403.
        $this->err($this->rest('GET', '/moderation/threads', 'dave'), 403, 'bm_relay_forbidden');
        $this->err($this->rest('GET', "/threads/{$t['id']}/messages", 'dave'), 403, 'bm_relay_not_member');
        $this->err($this->rest('DELETE', "/messages/{$bad['id']}", 'dave'), 403, 'bm_relay_not_member');

        $list = $this->ok($this->rest('GET', '/moderation/threads', 'admin', [], ['search' => 'Needs a moder']));
        $this->assertSame([$t['id']], array_column($list['threads'], 'id'));
        $this->assertSame(2, $list['threads'][0]['messages']);
        $this->assertSame([$this->uid('alice'), $this->uid('bob'), $this->uid('carol')], array_column($list['threads'][0]['participants'], 'id'));

        $read = $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'admin'));
        $this->assertSame(['rude words', 'please stop'], array_column($read['messages'], 'text'));
        $one = $this->ok($this->rest('GET', "/threads/{$t['id']}", 'admin'))['thread'];
        $this->assertNull($one['keys'], 'no thread key or token for a non-member');

        $alice = $this->sub('alice');
        $this->ok($this->rest('DELETE', "/messages/{$bad['id']}", 'admin'));
        $this->assertNotNull($this->rows("SELECT deleted_at FROM wp_bmr_messages WHERE id = {$bad['id']}")[0]['deleted_at']);
        $this->assertSame($bad['id'], $alice->expect('message.delete')['payload']['data']['id'], 'members\' pages drop it');

        $r = $this->ok($this->rest('DELETE', "/threads/{$t['id']}/participants/{$this->uid('bob')}", 'admin'));
        $this->assertSame(1, $r['epoch']);
        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_participants WHERE thread_id = {$t['id']} AND user_id = {$this->uid('bob')}"));
        // A moderator does not write into a thread they are not in.
        $this->err($this->rest('POST', "/threads/{$t['id']}/messages", 'admin', ['text' => 'hi']), 403, 'bm_relay_not_member');
    }

    public function test_the_capability_can_be_given_to_another_role(): void
    {
        $t = $this->thread('alice', ['bob'], 'Editor moderates');
        $editor = get_role('editor');
        $dave = new WP_User($this->uid('dave'));
        $dave->add_cap('bmr_moderate');
        try {
            $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'dave'));
        } finally {
            $dave->remove_cap('bmr_moderate');
            wp_set_current_user(0); // (the next call loads dave afresh)
        }
        $this->err($this->rest('GET', "/threads/{$t['id']}/messages", 'dave'), 403, 'bm_relay_not_member');
        $this->assertNotNull($editor);
    }

    public function test_the_moderation_screen_lists_shows_deletes_and_removes(): void
    {
        $h = $this->h();
        $t = $this->thread('carol', ['dave', 'bob'], 'Screen moderation');
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'dave', ['text' => 'spam spam']), 201)['message'];
        $admin = $h->login('admin');
        [$code, , $html] = $admin->request('GET', '/wp-admin/tools.php?page=bm-relay-moderation');
        $this->assertSame(200, $code);
        $this->assertStringContainsString('Screen moderation', $html);
        [$code, , $html] = $admin->request('GET', '/wp-admin/tools.php?page=bm-relay-moderation&thread=' . $t['id']);
        $this->assertSame(200, $code);
        $this->assertStringContainsString('spam spam', $html);
        $this->assertSame(1, preg_match('/name="_wpnonce" value="([0-9a-f]+)"[^<]*<input type="hidden" name="_wp_http_referer"[^>]*><input type="hidden" name="action" value="bmr_moderate_delete"><input type="hidden" name="message" value="' . $m['id'] . '">/', $html, $d), 'a delete button for the message');
        $form = ['Content-Type: application/x-www-form-urlencoded'];
        [$code] = $admin->request('POST', '/wp-admin/admin-post.php', http_build_query(['action' => 'bmr_moderate_delete', 'message' => $m['id'], '_wpnonce' => $d[1]]), $form);
        $this->assertSame(302, $code);
        $this->assertNotNull($this->rows("SELECT deleted_at FROM wp_bmr_messages WHERE id = {$m['id']}")[0]['deleted_at']);
        [, , $html] = $admin->request('GET', '/wp-admin/tools.php?page=bm-relay-moderation&thread=' . $t['id']);
        $dave = $this->uid('dave');
        $this->assertSame(1, preg_match('/name="_wpnonce" value="([0-9a-f]+)"[^<]*<input type="hidden" name="_wp_http_referer"[^>]*><input type="hidden" name="action" value="bmr_moderate_remove"><input type="hidden" name="thread" value="' . $t['id'] . '"><input type="hidden" name="user" value="' . $dave . '">/', $html, $r));
        [$code] = $admin->request('POST', '/wp-admin/admin-post.php', http_build_query(['action' => 'bmr_moderate_remove', 'thread' => $t['id'], 'user' => $dave, '_wpnonce' => $r[1]]), $form);
        $this->assertSame(302, $code);
        $this->assertSame([], $this->rows("SELECT * FROM wp_bmr_participants WHERE thread_id = {$t['id']} AND user_id = $dave"));
        // Not for others, and not without the nonce.
        [$code] = $h->login('bob')->request('GET', '/wp-admin/tools.php?page=bm-relay-moderation');
        $this->assertSame(403, $code);
        [$code] = $admin->request('POST', '/wp-admin/admin-post.php', http_build_query(['action' => 'bmr_moderate_remove', 'thread' => $t['id'], 'user' => $this->uid('bob'), '_wpnonce' => 'bad']), $form);
        $this->assertNotSame(302, $code);
        $this->assertCount(1, $this->rows("SELECT * FROM wp_bmr_participants WHERE thread_id = {$t['id']} AND user_id = {$this->uid('bob')}"));
    }
}
