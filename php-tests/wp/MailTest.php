<?php
/**
 * E-mail to members who were offline (issue #16), sent by WordPress's own
 * wp_mail() over SMTP to a real server on loopback (aiosmtpd,
 * php-tests/lib/smtp-sink.py): a must-use plugin of the test site
 * (php-tests/wp/mu/bm-test-smtp.php) points PHPMailer at it, in this
 * process and in `php -S`, as a site configures its SMTP server. Cron
 * events run as WordPress runs them: wp-cron.php over HTTP once the
 * event is due, or the hook's callback in this process.
 */

final class MailTest extends BM_WP_TestCase
{
    private static string $sink = '';
    private static int $page = 0;

    public static function setUpBeforeClass(): void
    {
        $h = $GLOBALS['bm_h'];
        self::$sink = $h->run . '/mail';
        $port = BM_WP_Harness::free_port();
        $h->spawn('smtp', ['/usr/bin/python3', $h->root . '/php-tests/lib/smtp-sink.py', (string) $port, self::$sink]);
        $h->wait_for('smtp', static function () use ($port): bool {
            $s = @fsockopen('127.0.0.1', $port, $errno, $errstr, 0.2);
            if ($s === false) {
                return false;
            }
            fclose($s);
            return true;
        }, 15);
        $mu = $h->docroot . '/wp-content/mu-plugins';
        @mkdir($mu, 0755, true);
        copy(__DIR__ . '/mu/bm-test-smtp.php', $mu . '/bm-test-smtp.php');
        // This process loaded WordPress before the file was there.
        require_once $mu . '/bm-test-smtp.php';
        update_option('bm_test_smtp_port', $port);
        self::$page = (int) wp_insert_post(['post_type' => 'page', 'post_status' => 'publish', 'post_title' => 'Chat', 'post_content' => '[bm_chat]']);
    }

    public static function tearDownAfterClass(): void
    {
        $GLOBALS['bm_h']->kill('smtp');
        wp_unschedule_hook(BM_Relay_Mail::HOOK);
        delete_option('bm_test_smtp_port');
        wp_delete_post(self::$page, true);
        foreach (['bmr_mail_on', 'bmr_mail_delay', 'bmr_mail_excerpt'] as $o) {
            delete_option($o);
        }
    }

    protected function setUp(): void
    {
        parent::setUp();
        foreach (glob(self::$sink . '/*.eml') ?: [] as $f) {
            unlink($f);
        }
        foreach (['bmr_mail_on', 'bmr_mail_delay', 'bmr_mail_excerpt'] as $o) {
            delete_option($o);
        }
        foreach (['bob', 'carol'] as $u) {
            delete_user_meta($this->uid($u), BM_Relay_Mail::OFF_META);
        }
        // Mails the other tests' messages left pending (due in 10 minutes:
        // a slow run could see them due in wp-cron.php here).
        wp_unschedule_hook(BM_Relay_Mail::HOOK);
    }

    /**
     * Mail the sink received, oldest first: recipients, decoded headers
     * (lower-case names), decoded body.
     *
     * @return list<array{to:string,headers:array<string,string>,body:string}>
     */
    private function mails(float $wait = 0.0, int $want = 1): array
    {
        $deadline = microtime(true) + $wait;
        do {
            $files = glob(self::$sink . '/*.eml') ?: [];
            if (count($files) >= $want) {
                break;
            }
            usleep(30000);
        } while (microtime(true) < $deadline);
        sort($files);
        $out = [];
        foreach ($files as $f) {
            [$head, $body] = explode("\r\n\r\n", str_replace("\n", "\r\n", str_replace("\r\n", "\n", (string) file_get_contents($f))), 2) + [1 => ''];
            $headers = [];
            foreach (preg_split('/\r\n(?![ \t])/', $head) as $line) {
                [$k, $v] = explode(':', $line, 2) + [1 => ''];
                $headers[strtolower(trim($k))] = trim((string) iconv_mime_decode(preg_replace('/\r\n[ \t]+/', ' ', $v), ICONV_MIME_DECODE_CONTINUE_ON_ERROR, 'UTF-8'));
            }
            if (stripos($headers['content-transfer-encoding'] ?? '', 'quoted-printable') !== false) {
                $body = quoted_printable_decode($body);
            } elseif (stripos($headers['content-transfer-encoding'] ?? '', 'base64') !== false) {
                $body = (string) base64_decode($body);
            }
            $out[] = ['to' => $headers['x-sink-rcpt'], 'headers' => $headers, 'body' => str_replace("\r\n", "\n", $body)];
        }
        return $out;
    }

    /**
     * The fields a browser would post from the form whose action holds
     * $action: inputs (checkboxes and radios only when checked; no
     * buttons), textareas, and each select's selected option.
     *
     * @return array<string,string>
     */
    private function form_fields(string $html, string $action): array
    {
        $this->assertMatchesRegularExpression('#<form[^>]*action="[^"]*' . preg_quote($action, '#') . '[^"]*"[^>]*>(.*?)</form>#s', $html);
        preg_match('#<form[^>]*action="[^"]*' . preg_quote($action, '#') . '[^"]*"[^>]*>(.*?)</form>#s', $html, $f);
        $fields = [];
        // WordPress quotes some attributes with ' (settings_fields()).
        $attr = static fn(string $tag, string $name): ?string => preg_match('/\s' . $name . '=(["\'])(.*?)\1/', $tag, $a) ? html_entity_decode($a[2], ENT_QUOTES) : null;
        preg_match_all('/<input\s[^>]*>/', $f[1], $m);
        foreach ($m[0] as $tag) {
            $type = $attr($tag, 'type') ?? 'text';
            $name = $attr($tag, 'name');
            if ($name === null || in_array($type, ['submit', 'button'], true) || (in_array($type, ['checkbox', 'radio'], true) && !preg_match('/\schecked/', $tag))) {
                continue;
            }
            $fields[$name] = $attr($tag, 'value') ?? '';
        }
        preg_match_all('#<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>#s', $f[1], $m, PREG_SET_ORDER);
        foreach ($m as $sel) {
            preg_match_all('#<option[^>]*value="([^"]*)"([^>]*)>#', $sel[2], $opts, PREG_SET_ORDER);
            $fields[$sel[1]] = $opts[0][1] ?? '';
            foreach ($opts as $o) {
                if (strpos($o[2], 'selected') !== false) {
                    $fields[$sel[1]] = html_entity_decode($o[1], ENT_QUOTES);
                }
            }
        }
        preg_match_all('#<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>#s', $f[1], $m, PREG_SET_ORDER);
        foreach ($m as $ta) {
            $fields[$ta[1]] = html_entity_decode($ta[2], ENT_QUOTES);
        }
        return $fields;
    }

    public function test_the_settings_page_saves_the_mail_settings_and_a_form_without_them_keeps_them(): void
    {
        $admin = $this->h()->login('admin');
        [$code, , $page] = $admin->request('GET', '/wp-admin/options-general.php?page=bm-relay');
        $this->assertSame(200, $code);
        $fields = $this->form_fields($page, 'options.php');
        $this->assertSame(['1', '10', '0'], [$fields['bmr_mail_on'], $fields['bmr_mail_delay'], $fields['bmr_mail_excerpt']], 'defaults: on, 10 minutes, no text');
        $before = ['bmr_mode' => get_option('bmr_mode'), 'bmr_url' => get_option('bmr_url')];
        $fields['bmr_mail_delay'] = '25';
        $fields['bmr_mail_excerpt'] = '1';
        $post = static fn(array $f) => $admin->request('POST', '/wp-admin/options.php', http_build_query($f), ['Content-Type: application/x-www-form-urlencoded']);
        $r = $post($fields);
        $this->assertSame(302, $r[0]);
        $opt = fn(string $n) => $this->rows("SELECT option_value FROM wp_options WHERE option_name = '$n'")[0]['option_value'] ?? null;
        $this->assertSame(['1', '25', '1'], [$opt('bmr_mail_on'), $opt('bmr_mail_delay'), $opt('bmr_mail_excerpt')]);
        $this->assertSame($before['bmr_mode'], $opt('bmr_mode'), 'the rest of the form saved as it was');
        // Unchecked "Send e-mail" (the hidden 0 is posted), out-of-range delay clamped.
        $fields['bmr_mail_on'] = '0';
        $fields['bmr_mail_delay'] = '99999';
        $this->assertSame(302, $post($fields)[0]);
        $this->assertSame(['0', '1440'], [$opt('bmr_mail_on'), $opt('bmr_mail_delay')]);
        // A settings form without this section (another page's markup) keeps the values.
        unset($fields['bmr_mail_on'], $fields['bmr_mail_delay'], $fields['bmr_mail_excerpt']);
        $this->assertSame(302, $post($fields)[0]);
        $this->assertSame(['0', '1440', '1'], [$opt('bmr_mail_on'), $opt('bmr_mail_delay'), $opt('bmr_mail_excerpt')]);
        $this->assertSame($before['bmr_url'], $opt('bmr_url'));
        wp_cache_delete('alloptions', 'options');
    }

    /** Sends $n messages as $who in a thread (REST, as the page does). */
    private function say(string $who, int $thread, array $texts): void
    {
        foreach ($texts as $text) {
            $this->ok($this->rest('POST', "/threads/$thread/messages", $who, ['text' => $text]), 201);
        }
    }

    /** The due time of the pending mail of (thread, user), false when none. */
    private function pending(int $thread, string $user)
    {
        return wp_next_scheduled(BM_Relay_Mail::HOOK, [$thread, $this->uid($user)]);
    }

    /**
     * Runs a pending mail's job in this process as WP-Cron does (the event
     * taken off the schedule, then the hook's callback); returns what the
     * job says it did.
     */
    private function fire(int $thread, int $user): string
    {
        $at = wp_next_scheduled(BM_Relay_Mail::HOOK, [$thread, $user]);
        if ($at !== false) {
            wp_unschedule_event($at, BM_Relay_Mail::HOOK, [$thread, $user]);
        }
        return BM_Relay_Mail::run($thread, $user);
    }

    /** Makes a pending mail due now and runs WordPress's cron over HTTP (wp-cron.php in `php -S`). */
    private function cron_over_http(int $thread, string $user): void
    {
        $args = [$thread, $this->uid($user)];
        $at = wp_next_scheduled(BM_Relay_Mail::HOOK, $args);
        $this->assertNotFalse($at, 'a pending mail');
        wp_unschedule_event($at, BM_Relay_Mail::HOOK, $args);
        wp_schedule_single_event(time() - 1, BM_Relay_Mail::HOOK, $args);
        delete_transient('doing_cron');
        // A session's request (20 s), not http_status() (1 s): under load
        // wp-cron.php may take longer, and a timed-out run would still
        // send its mail later, into the next test.
        $http = new BM_WP_HttpSession($this->h()->url, $this->h()->run . '/cookies-cron-' . bin2hex(random_bytes(4)));
        $this->assertSame(200, $http->request('GET', '/wp-cron.php')[0]);
        // The run happened in another process: read the cron array again.
        wp_cache_delete('cron', 'options');
        wp_cache_delete('alloptions', 'options');
        wp_cache_delete($this->uid($user), 'user_meta');
    }

    public function test_an_offline_member_gets_one_mail_for_three_messages_after_the_delay_over_smtp(): void
    {
        $t = $this->thread('alice', ['bob'], 'Trip to Lyon');
        $t0 = time();
        $this->say('alice', $t['id'], ['first: the train leaves at 9']);
        $first_due = $this->pending($t['id'], 'bob');
        // The next ones a second later: they must not move or add an event.
        usleep(1100000);
        $this->say('alice', $t['id'], ['second', 'third']);
        $due = $this->pending($t['id'], 'bob');
        $this->assertSame($first_due, $due, 'due after the first message, not moved by later ones');
        $this->assertNotFalse($due, 'one pending mail for Bob');
        $this->assertGreaterThanOrEqual($t0 + 600, $due, 'due after the default delay, 10 minutes after the first message');
        $this->assertLessThanOrEqual(time() + 600, $due);
        $this->assertFalse($this->pending($t['id'], 'alice'), 'the sender gets none');
        $events = array_filter(_get_cron_array(), static fn($e) => isset($e[BM_Relay_Mail::HOOK]));
        $mine = 0;
        foreach ($events as $e) {
            foreach ($e[BM_Relay_Mail::HOOK] as $ev) {
                $mine += $ev['args'] === [$t['id'], $this->uid('bob')] ? 1 : 0;
            }
        }
        $this->assertSame(1, $mine, 'one event per (thread, recipient), not one per message');
        $this->assertSame([], $this->mails(), 'nothing before the delay');

        $this->cron_over_http($t['id'], 'bob');
        $mails = $this->mails(10);
        $this->assertCount(1, $mails, 'one mail for the three messages');
        $m = $mails[0];
        $this->assertSame('bob@example.test', $m['to']);
        $this->assertSame('[bm-relay test] 3 new messages in “Trip to Lyon” from Alice', $m['headers']['subject']);
        $this->assertStringStartsWith('bm-relay test <', $m['headers']['from'], 'the site name as sender name');
        $unsub = home_url('/') . '?bmr_unsubscribe=' . $this->uid('bob') . '&bmr_token=' . BM_Relay_Mail::token($this->uid('bob'));
        $this->assertSame('<' . $unsub . '>', $m['headers']['list-unsubscribe']);
        $this->assertSame('List-Unsubscribe=One-Click', $m['headers']['list-unsubscribe-post']);
        $this->assertSame('auto-generated', $m['headers']['auto-submitted']);
        $this->assertStringContainsString('Hello Bob,', $m['body']);
        $this->assertStringContainsString('Read and reply: ' . get_permalink(self::$page) . '#thread-' . $t['id'], $m['body'], 'a link that opens the thread on the chat page');
        $this->assertStringContainsString('Stop these e-mails: ' . $unsub, $m['body']);
        $this->assertStringNotContainsString('the train leaves', $m['body'], 'no message text by default');
        $this->assertFalse($this->pending($t['id'], 'bob'), 'the window is closed');

        // Idempotent: the same event again sends nothing.
        $this->assertSame('none', $this->fire($t['id'], $this->uid('bob')));
        $this->assertSame((string) $this->rows("SELECT MAX(id) AS m FROM wp_bmr_messages WHERE thread_id = {$t['id']}")[0]['m'], get_user_meta($this->uid('bob'), BM_Relay_Mail::UPTO_META . $t['id'], true), 'the newest message mailed about');
        // The next message opens a new window.
        $this->say('alice', $t['id'], ['fourth']);
        $this->assertNotFalse($this->pending($t['id'], 'bob'));
        $this->assertCount(1, $this->mails(0.3), 'still one mail');
    }

    public function test_excerpts_when_the_site_allows_them_and_no_mail_when_the_site_turned_mail_off(): void
    {
        update_option('bmr_mail_delay', 0);
        update_option('bmr_mail_excerpt', '1');
        $t = $this->thread('carol', ['bob'], 'Menu');
        $long = str_repeat('soup ', 40);
        $this->say('carol', $t['id'], ['Ça va? Soupe ce soir', $long]);
        $this->assertLessThanOrEqual(time(), $this->pending($t['id'], 'bob'), 'delay 0: due at once');
        $this->assertSame('sent', $this->fire($t['id'], $this->uid('bob')));
        $m = $this->mails(10)[0];
        $this->assertSame('[bm-relay test] 2 new messages in “Menu” from Carol', $m['headers']['subject']);
        $this->assertStringContainsString("Carol: Ça va? Soupe ce soir\n", $m['body']);
        $this->assertStringContainsString('Carol: ' . mb_substr(trim(str_repeat('soup ', 28)), 0, 139) . '…', $m['body'], 'an excerpt of 140 characters');

        update_option('bmr_mail_on', '0');
        $this->say('carol', $t['id'], ['more']);
        $this->assertFalse($this->pending($t['id'], 'bob'), 'site setting off: nothing scheduled');
    }

    public function test_a_mail_the_smtp_server_refused_is_tried_again_later_and_then_sent(): void
    {
        update_option('bmr_mail_delay', 0);
        $t = $this->thread('alice', ['bob'], 'Retry');
        $this->say('alice', $t['id'], ['are you there?']);
        $bob = $this->uid('bob');
        $port = (int) get_option('bm_test_smtp_port');
        // The site's SMTP server is down: nothing listens on that port.
        $dead = stream_socket_server('tcp://127.0.0.1:0');
        $dead_port = (int) substr((string) stream_socket_get_name($dead, false), strrpos((string) stream_socket_get_name($dead, false), ':') + 1);
        fclose($dead);
        update_option('bm_test_smtp_port', $dead_port);
        try {
            $this->assertSame('failed', $this->fire($t['id'], $bob));
            $retry = wp_next_scheduled(BM_Relay_Mail::HOOK, [$t['id'], $bob, 1]);
            $this->assertNotFalse($retry, 'a retry is scheduled');
            $this->assertEqualsWithDelta(time() + 300, $retry, 5, 'five minutes later');
            $this->say('alice', $t['id'], ['hello?']);
            $this->assertFalse($this->pending($t['id'], 'bob'), 'no second window while the retry is pending');
            // The last retry fails too: none after it.
            $this->assertSame('failed', BM_Relay_Mail::run($t['id'], $bob, BM_Relay_Mail::RETRIES));
            $this->assertFalse(wp_next_scheduled(BM_Relay_Mail::HOOK, [$t['id'], $bob, BM_Relay_Mail::RETRIES + 1]), 'no retry after the last');
        } finally {
            update_option('bm_test_smtp_port', $port);
        }
        // The server is back: the retry sends both messages.
        wp_unschedule_event($retry, BM_Relay_Mail::HOOK, [$t['id'], $bob, 1]);
        $this->assertSame('sent', BM_Relay_Mail::run($t['id'], $bob, 1));
        $mails = $this->mails(10);
        $this->assertCount(1, $mails);
        $this->assertStringContainsString('2 new messages', $mails[0]['headers']['subject']);
    }

    public function test_a_member_who_read_meanwhile_gets_none(): void
    {
        update_option('bmr_mail_delay', 0);
        $t = $this->thread('alice', ['bob', 'carol'], 'Read it');
        $this->say('alice', $t['id'], ['one', 'two']);
        $this->ok($this->rest('POST', "/threads/{$t['id']}/read", 'bob'));
        $this->assertSame('read', $this->fire($t['id'], $this->uid('bob')));
        $this->assertSame('sent', $this->fire($t['id'], $this->uid('carol')));
        $mails = $this->mails(10);
        $this->assertSame(['carol@example.test'], array_column($mails, 'to'), 'Carol, who did not read, only');
        $this->assertStringContainsString('2 new messages', $mails[0]['headers']['subject']);
    }

    public function test_an_online_member_gets_none_whether_seen_at_the_push_or_when_the_mail_is_due(): void
    {
        update_option('bmr_mail_delay', 0);
        $t = $this->thread('alice', ['bob', 'carol'], 'Online');
        // Sync mode: the push answers who the relay reached.
        $bob = $this->sub('bob');
        $this->say('alice', $t['id'], ['hello']);
        $this->assertFalse($this->pending($t['id'], 'bob'), 'online at the push: nothing scheduled');
        $this->assertNotFalse($this->pending($t['id'], 'carol'));
        // Async mode has no answer; the relay is asked when the mail is
        // due: Carol came online meanwhile.
        $this->sub('carol');
        $this->assertSame('online', $this->fire($t['id'], $this->uid('carol')));
        $this->assertSame([], $this->mails(0.5));
        $this->assertCount(1, $bob->events('message.new'));
    }

    public function test_an_unsubscribed_member_gets_none(): void
    {
        update_option('bmr_mail_delay', 0);
        $t = $this->thread('alice', ['bob', 'carol'], 'Quiet');
        update_user_meta($this->uid('bob'), BM_Relay_Mail::OFF_META, '1');
        $this->say('alice', $t['id'], ['one']);
        $this->assertFalse($this->pending($t['id'], 'bob'));
        // Unsubscribed after the window opened: nothing either.
        update_user_meta($this->uid('carol'), BM_Relay_Mail::OFF_META, '1');
        $this->assertSame('off', $this->fire($t['id'], $this->uid('carol')));
        $this->assertSame('off', $this->fire($t['id'], $this->uid('bob')));
        $this->assertSame([], $this->mails(0.5));
    }

    public function test_the_unsubscribe_link_works_over_http_and_a_forged_token_is_refused(): void
    {
        $bob = $this->uid('bob');
        $url = BM_Relay_Mail::unsubscribe_url($bob);
        $forged = add_query_arg([BM_Relay_Mail::ARG_USER => $bob, BM_Relay_Mail::ARG_TOKEN => str_repeat('0', 32)], home_url('/'));
        $other = add_query_arg([BM_Relay_Mail::ARG_USER => $this->uid('carol'), BM_Relay_Mail::ARG_TOKEN => BM_Relay_Mail::token($bob)], home_url('/'));
        $http = new BM_WP_HttpSession($this->h()->url, $this->h()->run . '/cookies-anon-' . bin2hex(random_bytes(4)));
        foreach ([$forged, $other] as $bad) {
            [$code, , $body] = $http->request('POST', substr($bad, strlen($this->h()->url)), 'List-Unsubscribe=One-Click', ['Content-Type: application/x-www-form-urlencoded']);
            $this->assertSame(403, $code, $body);
            $this->assertStringContainsString('not valid', $body);
        }
        $path = substr($url, strlen($this->h()->url));
        // A GET (a mail scanner opening links) only shows the button.
        [$code, , $body] = $http->request('GET', $path);
        $this->assertSame(200, $code);
        $this->assertStringContainsString('id="bmr-unsubscribe"', $body);
        $this->assertSame([], $this->rows("SELECT meta_value FROM wp_usermeta WHERE user_id = $bob AND meta_key = 'bmr_mail_off'"), 'a GET changes nothing');
        // What a mail client's one-click button sends (RFC 8058), logged out.
        [$code, , $body] = $http->request('POST', $path, 'List-Unsubscribe=One-Click', ['Content-Type: application/x-www-form-urlencoded']);
        $this->assertSame(200, $code, $body);
        $this->assertStringContainsString('no more e-mail', $body);
        $this->assertSame([['meta_value' => '1']], $this->rows("SELECT meta_value FROM wp_usermeta WHERE user_id = $bob AND meta_key = 'bmr_mail_off'"));
    }

    public function test_the_profile_checkbox_turns_mail_off_and_on(): void
    {
        $bob = $this->uid('bob');
        $s = $this->h()->login('bob');
        $form = function () use ($s): array {
            [$code, , $html] = $s->request('GET', '/wp-admin/profile.php');
            $this->assertSame(200, $code);
            $this->assertStringContainsString('id="bmr_mail_notify"', $html);
            return [$html, $this->form_fields($html, 'profile.php')];
        };
        [$html, $fields] = $form();
        $this->assertMatchesRegularExpression('/id="bmr_mail_notify"[^>]*checked/', $html, 'on by default');
        unset($fields['bmr_mail_notify'], $fields['pass1'], $fields['pass2']);
        [$code] = $s->request('POST', '/wp-admin/profile.php', http_build_query($fields), ['Content-Type: application/x-www-form-urlencoded']);
        $this->assertSame(302, $code);
        $this->assertSame([['meta_value' => '1']], $this->rows("SELECT meta_value FROM wp_usermeta WHERE user_id = $bob AND meta_key = 'bmr_mail_off'"));
        // The choice is Bob's personal data: Tools → Export Personal Data lists it.
        $exporter = apply_filters('wp_privacy_personal_data_exporters', [])['bm-relay-mail'] ?? null;
        $this->assertNotNull($exporter, 'an exporter for the chat e-mail preference');
        wp_cache_delete($bob, 'user_meta');
        $export = call_user_func($exporter['callback'], 'bob@example.test', 1);
        $this->assertTrue($export['done']);
        $this->assertSame([['name' => 'E-mail me about unread chat messages', 'value' => 'no']], $export['data'][0]['data']);
        [$html, $fields] = $form();
        $this->assertDoesNotMatchRegularExpression('/id="bmr_mail_notify"[^>]*checked/', $html);
        $fields['bmr_mail_notify'] = '1';
        unset($fields['pass1'], $fields['pass2']);
        $s->request('POST', '/wp-admin/profile.php', http_build_query($fields), ['Content-Type: application/x-www-form-urlencoded']);
        $this->assertSame([], $this->rows("SELECT meta_value FROM wp_usermeta WHERE user_id = $bob AND meta_key = 'bmr_mail_off'"));
    }

    /**
     * The WordPress time of a send with offline mail on and off, in the
     * same run (figures for the closing note; asserted only loosely: the
     * machine is shared): 50-member threads, everyone offline, the first
     * message (opens 49 windows: the worst case) and the next three (a
     * window pending: the usual case), alternating on and off.
     */
    public function test_time_per_send_with_mail_on_and_off(): void
    {
        $crowd = [];
        for ($i = 0; $i < 49; $i++) {
            $login = 'mailcrowd' . $i . '_' . bin2hex(random_bytes(2));
            $crowd[] = (int) wp_insert_user(['user_login' => $login, 'user_pass' => 'x', 'user_email' => "$login@example.test", 'role' => 'subscriber']);
        }
        $times = ['on' => ['first' => [], 'next' => []], 'off' => ['first' => [], 'next' => []]];
        for ($round = 0; $round < 4; $round++) {
            $pair = ['on', 'off'];
            foreach ($round % 2 ? array_reverse($pair) : $pair as $k) {
                update_option('bmr_mail_on', $k === 'on' ? '1' : '0');
                $t = $this->ok($this->rest('POST', '/threads', 'alice', ['participants' => $crowd, 'subject' => "timing $k"]), 201)['thread'];
                for ($n = 0; $n < 4; $n++) {
                    $t0 = hrtime(true);
                    $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => "m$n"]), 201);
                    $times[$k][$n === 0 ? 'first' : 'next'][] = (hrtime(true) - $t0) / 1e6;
                }
                $this->assertSame($k === 'on', (bool) $this->pending($t['id'], 'bob') || (bool) wp_next_scheduled(BM_Relay_Mail::HOOK, [$t['id'], $crowd[48]]));
            }
        }
        $med = static function (array $a): float {
            sort($a);
            return $a[intdiv(count($a), 2)];
        };
        $line = [];
        foreach (['first', 'next'] as $which) {
            $line[] = sprintf('%s message %.1f ms on, %.1f ms off (ratio %.2f)', $which, $med($times['on'][$which]), $med($times['off'][$which]), $med($times['on'][$which]) / max(0.001, $med($times['off'][$which])));
        }
        fwrite(STDERR, "\nMailTest: WordPress time per send, 50-member thread, all offline, medians: " . implode('; ', $line) . "\n");
        $crons = (string) $this->rows("SELECT LENGTH(option_value) AS n FROM wp_options WHERE option_name = 'cron'")[0]['n'];
        fwrite(STDERR, "MailTest: the cron option holds $crons bytes now\n");
    }
}
