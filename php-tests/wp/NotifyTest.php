<?php
/**
 * Mentions and the global unread count (issue #16): mentions parsed by
 * WordPress among the thread's members only, stored as message meta and
 * carried in the message shape (REST and the sealed push); `GET /unread`
 * totals; the admin bar item and the `[bm_unread]` shortcode.
 */

final class NotifyTest extends BM_WP_TestCase
{
    public function test_mentions_are_parsed_among_members_only_stored_and_in_the_shape(): void
    {
        $t = $this->thread('alice', ['bob', 'dave']);
        $bob = $this->sub('bob');
        // Carol is no member: her name is plain text. Alice is the sender:
        // not notified of herself. A client's own list is not asked for.
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', [
            'text' => 'Hi @bob and @Carol, @Alice; mail@Dave is no mention, @Daveed neither. (@BOB again)',
            'mentions' => [$this->uid('carol'), $this->uid('dave')],
        ]), 201)['message'];
        $this->assertSame([$this->uid('bob')], $m['mentions']);
        $rows = $this->rows("SELECT user_id, meta_value FROM wp_bmr_message_meta WHERE message_id = {$m['id']} AND meta_key = 'mention'");
        $this->assertSame([['user_id' => (string) $this->uid('bob'), 'meta_value' => (string) $t['id']]], $rows, 'one row: who is mentioned, in which thread');

        $ev = $bob->expect('message.new');
        $this->assertSame([$this->uid('bob')], $ev['payload']['data']['mentions'], 'the sealed push carries them');
        $list = $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'dave'))['messages'];
        $this->assertSame([[$this->uid('bob')]], array_column($list, 'mentions'), 'and the REST shape');

        // Several members, a name with a space beside a shorter one, any case.
        wp_update_user(['ID' => $this->uid('dave'), 'display_name' => 'Bob Smith']);
        try {
            $m2 = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => '@bob smith and @Bob: lunch?']), 201)['message'];
            $this->assertSame([$this->uid('dave'), $this->uid('bob')], $m2['mentions'], 'the longest name wins where both fit');
        } finally {
            wp_update_user(['ID' => $this->uid('dave'), 'display_name' => 'Dave']);
        }

        // An edit parses again: the mention goes, its row too.
        $e = $this->ok($this->rest('PATCH', "/messages/{$m['id']}", 'alice', ['text' => 'never mind']))['message'];
        $this->assertSame([], $e['mentions']);
        $this->assertSame([], $this->rows("SELECT id FROM wp_bmr_message_meta WHERE message_id = {$m['id']} AND meta_key = 'mention'"));
        // The first message of a new thread is parsed too.
        $t2 = $this->ok($this->rest('POST', '/threads', 'carol', ['participants' => [$this->uid('bob')], 'subject' => 'first', 'text' => 'hello @Bob']), 201)['thread'];
        $this->assertSame([$this->uid('bob')], $t2['last_message']['mentions']);
    }

    public function test_the_unread_endpoint_totals_a_users_threads_and_mentions(): void
    {
        $before = $this->ok($this->rest('GET', '/unread', 'bob'));
        $a = $this->thread('alice', ['bob']);
        $c = $this->thread('carol', ['bob']);
        $this->ok($this->rest('POST', "/threads/{$a['id']}/messages", 'alice', ['text' => 'one']), 201);
        $this->ok($this->rest('POST', "/threads/{$a['id']}/messages", 'alice', ['text' => 'two, @Bob']), 201);
        $this->ok($this->rest('POST', "/threads/{$c['id']}/messages", 'carol', ['text' => 'three']), 201);
        $this->ok($this->rest('POST', "/threads/{$c['id']}/messages", 'bob', ['text' => 'my own: not unread for me']), 201);

        $u = $this->ok($this->rest('GET', '/unread', 'bob'));
        $this->assertSame($before['total'] + 3, $u['total']);
        $this->assertSame($before['mentions'] + 1, $u['mentions']);
        $this->assertSame($u['total'], array_sum(array_column($u['threads'], 'unread')), 'the total is the sum of the threads');
        $by = array_column($u['threads'], null, 'id');
        $this->assertSame(['id' => $a['id'], 'unread' => 2, 'mentions' => 1], $by[$a['id']]);
        $this->assertSame(['id' => $c['id'], 'unread' => 1, 'mentions' => 0], $by[$c['id']]);
        $this->assertSame(sprintf('%d unread messages', $u['total']), $u['label']);
        $this->assertSame(1, array_column($this->ok($this->rest('GET', '/threads', 'bob'))['threads'], 'mentions', 'id')[$a['id']], 'the thread shape counts unread mentions');

        // Reading the thread clears its count and its mention.
        $this->ok($this->rest('POST', "/threads/{$a['id']}/read", 'bob'));
        $u = $this->ok($this->rest('GET', '/unread', 'bob'));
        $this->assertSame([$before['total'] + 1, $before['mentions']], [$u['total'], $u['mentions']]);
        $this->assertArrayNotHasKey($a['id'], array_column($u['threads'], null, 'id'));
        $this->assertSame(0, array_column($this->ok($this->rest('GET', '/threads', 'bob'))['threads'], 'mentions', 'id')[$a['id']]);

        $this->err($this->rest('GET', '/unread', null), 401, 'bm_relay_not_logged_in');
        $this->err($this->rest('GET', '/unread', 'bob', [], [], false), 403, 'bm_relay_bad_nonce');
    }

    /** The admin bar as WordPress builds it for the current user. */
    private function admin_bar(?string $user): WP_Admin_Bar
    {
        wp_set_current_user($user === null ? 0 : $this->uid($user));
        require_once ABSPATH . WPINC . '/class-wp-admin-bar.php';
        $bar = new WP_Admin_Bar();
        BM_Relay_Notify::admin_bar($bar);
        return $bar;
    }

    public function test_the_admin_bar_shows_the_count_and_links_to_the_chat_page(): void
    {
        $this->assertSame(70, has_action('admin_bar_menu', ['BM_Relay_Notify', 'admin_bar']), 'hooked on admin_bar_menu');
        $t = $this->thread('alice', ['bob']);
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'ping @Bob']), 201);
        $total = $this->ok($this->rest('GET', '/unread', 'bob'))['total'];
        $this->assertGreaterThan(0, $total);

        $node = $this->admin_bar('bob')->get_node(BM_Relay_Notify::NODE);
        $this->assertNotNull($node, 'a node for a user who may chat');
        $this->assertStringContainsString(sprintf('data-count="%d"', $total), $node->title);
        $this->assertStringContainsString(sprintf('<span class="bm-unread-count" aria-hidden="true">%d</span>', $total), $node->title);
        $this->assertStringContainsString(sprintf('%d unread messages', $total), $node->title);
        $this->assertMatchesRegularExpression('/data-mentions="[1-9]/', $node->title);
        // The site's chat page: the first page holding [bm_chat] (saving a
        // page forgets the cached URL), or what the filter says.
        $page = wp_insert_post(['post_type' => 'page', 'post_status' => 'publish', 'post_title' => 'Talk', 'post_content' => "Our chat:\n[bm_chat]"]);
        try {
            $href = $this->admin_bar('bob')->get_node(BM_Relay_Notify::NODE)->href;
            $this->assertIsString($href);
            $this->assertTrue(has_shortcode((string) get_post(url_to_postid($href))->post_content, 'bm_chat'), "links to a chat page: $href");
        } finally {
            wp_delete_post($page, true);
        }
        add_filter('bm_relay_chat_url', '__return_empty_string');
        try {
            $this->assertFalse($this->admin_bar('bob')->get_node(BM_Relay_Notify::NODE)->href, 'no chat page: no link');
        } finally {
            remove_filter('bm_relay_chat_url', '__return_empty_string');
        }
        $this->assertNull($this->admin_bar(null)->get_node(BM_Relay_Notify::NODE), 'nobody logged in: no node');
        add_filter('bm_relay_chat_capability', $cap = static fn() => 'manage_options');
        try {
            $this->assertNull($this->admin_bar('bob')->get_node(BM_Relay_Notify::NODE), 'no chat access: no node');
        } finally {
            remove_filter('bm_relay_chat_capability', $cap);
        }
    }

    public function test_the_shortcode_shows_the_count_for_a_user_who_may_chat(): void
    {
        $t = $this->thread('carol', ['bob']);
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'carol', ['text' => 'hello']), 201);
        wp_set_current_user($this->uid('bob'));
        $total = BM_Relay_Notify::unread($this->uid('bob'))['total'];
        $html = do_shortcode('[bm_unread label="Inbox"]');
        $this->assertStringContainsString('<span class="bm-unread-text">Inbox</span>', $html);
        $this->assertStringContainsString(sprintf('data-bm-unread data-count="%d"', $total), $html);
        add_filter('bm_relay_chat_url', $url = static fn() => 'https://example.test/chat/');
        try {
            $this->assertStringStartsWith('<a class="bm-unread" href="https://example.test/chat/">', do_shortcode('[bm_unread]'), 'a link to the chat page');
        } finally {
            remove_filter('bm_relay_chat_url', $url);
        }
        add_filter('bm_relay_chat_url', '__return_empty_string');
        try {
            $this->assertStringStartsWith('<span class="bm-unread">', do_shortcode('[bm_unread]'), 'no chat page: not a link');
        } finally {
            remove_filter('bm_relay_chat_url', '__return_empty_string');
        }
        wp_set_current_user(0);
        $this->assertSame('', do_shortcode('[bm_unread]'), 'nothing for a visitor');
    }
}
