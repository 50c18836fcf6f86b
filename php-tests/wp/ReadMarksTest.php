<?php
/**
 * Read marks after a reload (issue #16): the thread shape gives a member
 * every member's last read message (`participants[].last_read_id`), so a
 * page loaded afresh shows "Read" under messages, not only what `read`
 * events told it while it was open; a moderator who is not a member gets
 * none, and a member who left takes theirs along.
 */

final class ReadMarksTest extends BM_WP_TestCase
{
    /** user id → last_read_id of a thread shape's participants. */
    private static function marks(array $thread): array
    {
        return array_combine(array_column($thread['participants'], 'id'), array_column($thread['participants'], 'last_read_id'));
    }

    public function test_the_thread_shape_carries_every_members_read_mark_for_members_only(): void
    {
        $t = $this->thread('alice', ['bob', 'carol']);
        $m1 = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'one']), 201)['message']['id'];
        $m2 = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'two']), 201)['message']['id'];
        $this->ok($this->rest('POST', "/threads/{$t['id']}/read", 'bob', ['message_id' => $m1]));
        $this->ok($this->rest('POST', "/threads/{$t['id']}/read", 'carol'));

        $want = [$this->uid('alice') => $m2, $this->uid('bob') => $m1, $this->uid('carol') => $m2];
        $this->assertSame($want, self::marks($this->ok($this->rest('GET', "/threads/{$t['id']}", 'alice'))['thread']), 'GET /threads/{id}');
        $listed = array_values(array_filter($this->ok($this->rest('GET', '/threads', 'alice'))['threads'], fn($x) => $x['id'] === $t['id']))[0];
        $this->assertSame($want, self::marks($listed), 'GET /threads');
        $this->assertSame($want, self::marks($this->ok($this->rest('GET', "/threads/{$t['id']}", 'bob'))['thread']), 'the same for every member');

        // A moderator who is not a member reads the conversation, not when its members read it.
        $this->assertSame(array_fill_keys(array_keys($want), null), self::marks($this->ok($this->rest('GET', "/threads/{$t['id']}", 'admin'))['thread']));
        $this->err($this->rest('GET', "/threads/{$t['id']}", 'dave'), 403, 'bm_relay_not_member');

        // Carol leaves: her mark is gone with her membership.
        $this->ok($this->rest('DELETE', "/threads/{$t['id']}/participants/{$this->uid('carol')}", 'carol'));
        $this->assertSame([$this->uid('alice') => $m2, $this->uid('bob') => $m1], self::marks($this->ok($this->rest('GET', "/threads/{$t['id']}", 'alice'))['thread']));
    }
}
