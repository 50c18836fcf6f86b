<?php
/**
 * The settings page's status and test event, the [bm_chat] shortcode, and
 * the REST API over real HTTP (php -S) with a cookie login and the nonce a
 * browser gets — the path the chat page uses.
 */

final class AdminHttpTest extends BM_WP_TestCase
{
    public function test_status_reports_relay_health_and_implementation(): void
    {
        $s = BM_Relay_Admin::status();
        $relay = BM_Relay_Health::relay_health();
        $this->assertTrue($relay['reachable'], $relay['why']);
        $this->assertSame('ok', $relay['status'], $relay['why']);
        $this->assertTrue($s['configured']);
        $native = (new ReflectionFunction('bm_push'))->isInternal();
        $this->assertSame(getenv('BM_EXT_SO') ? true : false, $native, 'the run uses the implementation it was asked for');
        $this->assertSame($native ? 'extension' : 'fallback', strtok($s['implementation'], ' '));
        $this->assertSame('option', $s['secret_source']);
        $this->assertStringNotContainsString($this->h()->secret, (string) json_encode($s), 'the secret is never shown');

        update_option('bmr_admin_url', 'http://127.0.0.1:' . BM_WP_Harness::free_port());
        try {
            $this->assertFalse(BM_Relay_Health::relay_health()['reachable']);
        } finally {
            update_option('bmr_admin_url', 'http://127.0.0.1:' . $this->h()->admin_port);
        }
    }

    public function test_a_websocket_url_on_the_sites_own_host_is_flagged_with_the_cookie_risk(): void
    {
        // The harness site is http://127.0.0.1:PORT and its relay 127.0.0.1 too.
        $ws = (string) get_option('bmr_public_url');
        $this->assertSame('127.0.0.1', wp_parse_url($ws, PHP_URL_HOST));
        $warning = BM_Relay_Admin::status()['ws_warning'];
        $this->assertIsString($warning);
        $this->assertStringContainsString('login cookie', $warning);
        $this->assertStringContainsString('127.0.0.1', $warning);
        $admin = $this->h()->login('admin');
        [, , $page] = $admin->request('GET', '/wp-admin/options-general.php?page=bm-relay');
        $this->assertStringContainsString('login cookie', $page, 'shown on the settings page');
        try {
            // Another host name (localhost is not 127.0.0.1 to a browser's cookies): no warning.
            update_option('bmr_public_url', 'ws://localhost:' . $this->h()->relay_port . '/v1/ws');
            $this->assertNull(BM_Relay_Admin::status()['ws_warning']);
            [, , $page] = $admin->request('GET', '/wp-admin/options-general.php?page=bm-relay');
            $this->assertStringNotContainsString('login cookie', $page);
            $this->assertStringContainsString('a host name of its own', $page);
            $this->assertNull(BM_Relay_Admin::shared_host_warning(''), 'no URL, no warning');
        } finally {
            update_option('bmr_public_url', $ws);
        }
    }

    public function test_send_test_event_reaches_the_admins_browser(): void
    {
        $admin = $this->sub('admin');
        $r = BM_Relay_Admin::send_test_event($this->uid('admin'));
        $this->assertTrue($r['ok'], $r['detail']);
        $this->assertStringContainsString('1 of your browser sockets', $r['detail']);
        $ev = $admin->expect('test');
        $this->assertSame(BM_Relay_Ids::user_kid($this->uid('admin')), $ev['k']);
        $this->assertSame(get_option('bmr_mode'), BM_Relay_Settings::mode(), 'the configured mode is restored');
    }

    public function test_settings_page_renders_for_admins(): void
    {
        require_once ABSPATH . 'wp-admin/includes/template.php'; // loaded in wp-admin
        wp_set_current_user($this->uid('admin'));
        // Every request to the relay's /healthz while the page is drawn.
        $healthz = 0;
        $count = static function ($pre, $args, $url) use (&$healthz) {
            $healthz += (int) str_ends_with((string) $url, '/healthz');
            return $pre;
        };
        add_filter('pre_http_request', $count, 10, 3);
        ob_start();
        BM_Relay_Admin::render();
        $html = (string) ob_get_clean();
        remove_filter('pre_http_request', $count, 10);
        $this->assertSame(1, $healthz, 'the page asks the relay\'s /healthz once (each costs up to 2 s)');
        $this->assertStringContainsString('id="bm-relay-status"', $html);
        $this->assertStringContainsString('Send test event', $html);
        $this->assertStringContainsString('data-level="working"', $html, 'the verdict');
        $this->assertStringNotContainsString($this->h()->relay_key, $html, 'the relay key is never shown');
        $this->assertStringNotContainsString($this->h()->secret, $html);
        wp_set_current_user($this->uid('bob'));
        ob_start();
        BM_Relay_Admin::render();
        $this->assertSame('', ob_get_clean(), 'nothing for non-admins');
    }

    /** The verdict's reason keys, in order (worst first). @param array{reasons:list<array{key:string}>} $v */
    private static function reason_keys(array $v): array
    {
        return array_column($v['reasons'], 'key');
    }

    public function test_verdict_working_with_live_connections_and_no_secret_or_relay_key_in_the_page(): void
    {
        $this->sub('admin');
        $this->sub('bob');
        $v = BM_Relay_Health::verdict($this->uid('admin'));
        $this->assertSame('working', $v['level'], json_encode($v));
        $this->assertSame([], self::reason_keys($v));
        $this->assertGreaterThanOrEqual(2, $v['connections'], 'live connections from the relay\'s /healthz');
        $this->assertSame(0, $v['streams'], 'streams from /metrics (none here)');
        $this->assertTrue($v['secret_set']);
        $this->assertSame('option', $v['secret_source']);

        $admin = $this->h()->login('admin');
        [$code, , $page] = $admin->request('GET', '/wp-admin/options-general.php?page=bm-relay');
        $this->assertSame(200, $code);
        $this->assertMatchesRegularExpression('/id="bm-relay-verdict" class="bm-verdict bm-verdict-working" data-level="working"/', $page);
        $this->assertStringContainsString('Working: messages arrive instantly.', $page);
        $this->assertMatchesRegularExpression('/\d+ browsers? connected to the relay now/', $page);
        $this->assertStringContainsString('set (stored in: option); never shown here', $page);
        $this->assertStringNotContainsString('{"status"', $page, 'no raw /healthz JSON');
        $this->assertStringNotContainsString($this->h()->relay_key, $page, 'the relay key never appears');
        $this->assertStringNotContainsString($this->h()->secret, $page, 'the secret never appears');
        $this->assertStringContainsString('assets/bm-verdict.js', $page, 'the browser half of the verdict');
    }

    public function test_verdict_down_when_the_relay_does_not_answer(): void
    {
        $admin_url = (string) get_option('bmr_admin_url');
        $push_url = (string) get_option('bmr_url');
        $dead = 'http://127.0.0.1:' . BM_WP_Harness::free_port();
        try {
            update_option('bmr_admin_url', $dead);
            $v = BM_Relay_Health::verdict($this->uid('admin'));
            $this->assertSame('down', $v['level']);
            $this->assertSame(['relay_silent'], self::reason_keys($v));
            $this->assertNull($v['connections']);
            $this->assertStringContainsString('The relay is not answering', $v['reasons'][0]['text']);

            // Its admin listener answers, but the push address is wrong.
            update_option('bmr_admin_url', $admin_url);
            update_option('bmr_url', $dead);
            BM_Relay_Settings::apply();
            $v = BM_Relay_Health::verdict($this->uid('admin'));
            $this->assertSame('down', $v['level']);
            $this->assertSame(['push_unreachable'], self::reason_keys($v));

            // No admin address: a note, and the push check still speaks.
            update_option('bmr_url', $push_url);
            update_option('bmr_admin_url', '');
            BM_Relay_Settings::apply();
            $v = BM_Relay_Health::verdict($this->uid('admin'));
            $this->assertSame('working', $v['level']);
            $this->assertSame(['no_admin_url'], self::reason_keys($v));
        } finally {
            update_option('bmr_admin_url', $admin_url);
            update_option('bmr_url', $push_url);
            BM_Relay_Settings::apply();
        }
    }

    public function test_verdict_down_when_the_relay_refuses_the_sites_key_or_site_id(): void
    {
        $secret = (string) get_option(BM_Relay_Settings::SECRET_OPTION);
        $site = (string) get_option('bmr_site');
        try {
            // Another secret: its relay key is not the one the relay holds.
            update_option(BM_Relay_Settings::SECRET_OPTION, rtrim(strtr(base64_encode(random_bytes(32)), '+/', '-_'), '='));
            BM_Relay_Settings::apply();
            $this->assertTrue(BM_Relay_Settings::ready(), BM_Relay_Settings::$error ?? '');
            $v = BM_Relay_Health::verdict($this->uid('admin'));
            $this->assertSame('down', $v['level'], json_encode($v));
            $this->assertSame(['bad_key'], self::reason_keys($v));
            $this->assertStringContainsString('does not match', $v['reasons'][0]['text']);
            $admin = $this->h()->login('admin');
            [, , $page] = $admin->request('GET', '/wp-admin/options-general.php?page=bm-relay');
            $this->assertStringContainsString('Down: messages are not delivered instantly.', $page);
            $this->assertStringContainsString('data-reason="bad_key"', $page);
            $this->assertStringNotContainsString((string) get_option(BM_Relay_Settings::SECRET_OPTION), $page, 'not that secret either');

            update_option(BM_Relay_Settings::SECRET_OPTION, $secret);
            update_option('bmr_site', 'not-served-here');
            BM_Relay_Settings::apply();
            $v = BM_Relay_Health::verdict($this->uid('admin'));
            $this->assertSame(['unknown_site'], self::reason_keys($v), json_encode($v));
        } finally {
            update_option(BM_Relay_Settings::SECRET_OPTION, $secret);
            update_option('bmr_site', $site);
            BM_Relay_Settings::apply();
        }
        $this->assertSame('working', BM_Relay_Health::verdict($this->uid('admin'))['level'], 'restored');
    }

    public function test_timed_test_event_carries_the_pages_probe_id_admins_only(): void
    {
        $h = $this->h();
        $admin = $h->login('admin');
        [, , $page] = $admin->request('GET', '/wp-admin/options-general.php?page=bm-relay');
        $this->assertSame(1, preg_match('/data-config="([^"]+)" role="status"/', $page, $m));
        $cfg = json_decode(html_entity_decode($m[1]), true);
        $socket = $this->sub('admin');
        $form = ['Content-Type: application/x-www-form-urlencoded'];
        $ping = fn(BM_WP_HttpSession $who, string $nonce, string $probe): array => $who->request('POST', '/wp-admin/admin-ajax.php', http_build_query(['action' => 'bm_relay_test_ping', 'nonce' => $nonce, 'probe' => $probe]), $form);
        [$code, , $out] = $ping($admin, $cfg['ping_nonce'], 'a1b2c3');
        $this->assertSame(200, $code, $out);
        $this->assertTrue(json_decode($out, true)['success']);
        $ev = $socket->expect('test');
        $this->assertSame('a1b2c3', $ev['payload']['data']['probe']);
        [$code] = $ping($admin, 'bad', 'a1b2c3');
        $this->assertSame(403, $code, 'a forged nonce');
        [$code] = $ping($h->login('bob'), $cfg['ping_nonce'], 'a1b2c3');
        $this->assertSame(403, $code, 'not for subscribers');
        $this->assertCount(1, $socket->settle(1.0), 'one test event only');
    }

    public function test_shortcode_gives_the_page_its_config(): void
    {
        $this->assertTrue(shortcode_exists('bm_chat'));
        wp_set_current_user(0);
        $this->assertStringContainsString('log in', do_shortcode('[bm_chat]'));
        wp_set_current_user($this->uid('carol'));
        $html = do_shortcode('[bm_chat]');
        $this->assertMatchesRegularExpression('/<div id="bm-chat" class="bm-chat" data-config="([^"]+)">/', $html);
        preg_match('/data-config="([^"]+)"/', $html, $m);
        $config = json_decode(html_entity_decode($m[1]), true);
        $this->assertSame($this->uid('carol'), $config['user']);
        $this->assertSame(1, wp_verify_nonce($config['nonce'], 'wp_rest'));
        $this->assertStringEndsWith('/wp-json/bm/v1/', $config['rest']);
        // Each string once: "offline" (a person) is not "Offline — reconnecting" (the page).
        $this->assertSame('offline', $config['strings']['offline']);
        $this->assertSame('Offline — reconnecting', $config['strings']['offlineReconnecting']);
    }

    public function test_rest_over_http_with_cookie_login_and_nonce(): void
    {
        $h = $this->h();
        $t = $this->thread('alice', ['bob'], 'HTTP');
        $bob = $h->login('bob');
        $nonce = $bob->nonce();
        $alice = $this->sub('alice', [$t['id']]);

        // WordPress treats a cookie without a nonce as logged out (CSRF guard).
        [$code, $body] = $bob->rest('POST', "/threads/{$t['id']}/messages", ['text' => 'over http'], false);
        $this->assertSame(401, $code, json_encode($body));
        [$code, $body] = $bob->rest('POST', "/threads/{$t['id']}/messages", ['text' => 'over http'], $nonce);
        $this->assertSame(201, $code, json_encode($body));
        $msg = $body['message'];
        $this->assertSame($this->uid('bob'), $msg['sender']);
        $this->assertSame('over http', $alice->expect('message.new')['payload']['data']['text']);
        [$code, $body] = $bob->rest('GET', "/threads/{$t['id']}/messages?after=0", null, $nonce);
        $this->assertSame(200, $code);
        $this->assertSame([$msg['id']], array_column($body['messages'], 'id'));
        [$code, $body] = $bob->rest('POST', '/token', null, $nonce);
        $this->assertSame(200, $code, json_encode($body));
        $this->assertSame($this->uid('bob'), $body['user']);
        [$code] = $bob->rest('GET', '/threads', null, '0123456789');
        $this->assertSame(403, $code, 'a forged nonce is refused');
        $count = $this->rows("SELECT COUNT(*) n FROM wp_bmr_messages WHERE thread_id = {$t['id']}")[0]['n'];
        [$code, , $out] = $bob->request('POST', "/wp-json/bm/v1/threads/{$t['id']}/messages", '{"text": "broken', ['Content-Type: application/json', 'X-WP-Nonce: ' . $nonce]);
        $this->assertSame(400, $code, $out);
        $this->assertSame('rest_invalid_json', json_decode($out, true)['code']);
        [$code, , $out] = $bob->request('POST', "/wp-json/bm/v1/threads/{$t['id']}/messages", '["text"]', ['Content-Type: application/json', 'X-WP-Nonce: ' . $nonce]);
        $this->assertSame(400, $code, $out);
        $this->assertSame($count, $this->rows("SELECT COUNT(*) n FROM wp_bmr_messages WHERE thread_id = {$t['id']}")[0]['n'], 'nothing stored from malformed bodies');
        [$code] = $h->login('carol')->rest('GET', "/threads/{$t['id']}/messages");
        $this->assertSame(403, $code, 'another logged-in user is not a member');

        // Async mode in a real server: the event is queued during the request
        // and sent at request end (RSHUTDOWN / shutdown function).
        update_option('bmr_mode', 'async');
        try {
            [$code, $body] = $bob->rest('POST', "/threads/{$t['id']}/messages", ['text' => 'async over http'], $nonce);
            $this->assertSame(201, $code, json_encode($body));
            $this->assertFalse($body['pushed']);
            $this->assertSame('async over http', $alice->expect('message.new', 5, 2)['payload']['data']['text']);
        } finally {
            update_option('bmr_mode', 'sync');
        }
    }

    public function test_settings_page_and_test_event_button_over_http(): void
    {
        $h = $this->h();
        $admin = $h->login('admin');
        [$code, , $page] = $admin->request('GET', '/wp-admin/options-general.php?page=bm-relay');
        $this->assertSame(200, $code);
        $this->assertStringContainsString('id="bm-relay-status"', $page);
        $this->assertStringContainsString('Working: messages arrive instantly.', $page, 'the verdict, in words');
        $this->assertStringNotContainsString($h->secret, $page);
        $this->assertSame(1, preg_match('/name="_wpnonce" value="([0-9a-f]+)"/', $page, $m));

        $socket = $this->sub('admin');
        $form = ['Content-Type: application/x-www-form-urlencoded'];
        [$code, $head] = $admin->request('POST', '/wp-admin/admin-post.php', http_build_query(['action' => 'bm_relay_test_event', '_wpnonce' => $m[1], '_wp_http_referer' => '/wp-admin/options-general.php?page=bm-relay']), $form);
        $this->assertSame(302, $code);
        $this->assertStringContainsString('page=bm-relay', $head['location'] ?? '');
        $this->assertSame(BM_Relay_Ids::user_kid($this->uid('admin')), $socket->expect('test')['k']);
        [, , $page] = $admin->request('GET', '/wp-admin/options-general.php?page=bm-relay');
        $this->assertStringContainsString('1 of your browser sockets received it', $page);
        // A forged nonce: WordPress's own refusal (wp_nonce_ais: 403 and its
        // message), not any other non-redirect such as a 500, and no event.
        [$code, , $out] = $admin->request('POST', '/wp-admin/admin-post.php', http_build_query(['action' => 'bm_relay_test_event', '_wpnonce' => 'bad']), $form);
        $this->assertSame(403, $code, 'a forged nonce is refused: ' . substr($out, 0, 300));
        $this->assertStringContainsString('The link you followed has expired.', $out);
        $this->assertCount(1, $socket->settle(1.0), 'no test event for a forged nonce');
        [$code] = $h->login('bob')->request('GET', '/wp-admin/options-general.php?page=bm-relay');
        $this->assertSame(403, $code, 'not for subscribers');
    }

    public function test_application_passwords_work_without_a_nonce_for_headless_clients(): void
    {
        $h = $this->h();
        $t = $this->thread('alice', ['bob'], 'Headless');
        [$password] = WP_Application_Passwords::create_new_application_password($this->uid('bob'), ['name' => 'bm-relay test client']);
        $call = function (string $method, string $route, ?array $body, string $user, string $pass): array {
            $ch = curl_init($this->h()->url . '/wp-json/bm/v1' . $route);
            curl_setopt_array($ch, [CURLOPT_CUSTOMREQUEST => $method, CURLOPT_RETURNTRANSFER => true, CURLOPT_USERPWD => "$user:$pass",
                CURLOPT_HTTPHEADER => ['Content-Type: application/json'], CURLOPT_TIMEOUT => 20]);
            if ($body !== null) {
                curl_setopt($ch, CURLOPT_POSTFIELDS, json_encode($body));
            }
            $out = (string) curl_exec($ch);
            $code = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
            curl_close($ch);
            return [$code, json_decode($out, true)];
        };
        // The relay token flow of a mobile app: POST /token, then REST.
        [$code, $tok] = $call('POST', '/token', null, 'bob', $password);
        $this->assertSame(200, $code, json_encode($tok));
        $this->assertSame($this->uid('bob'), $tok['user']);
        $this->assertContains($t['id'], array_column($tok['threads'], 'thread'));
        $alice = $this->sub('alice', [$t['id']]);
        [$code, $body] = $call('POST', "/threads/{$t['id']}/messages", ['text' => 'from my phone'], 'bob', $password);
        $this->assertSame(201, $code, json_encode($body));
        $this->assertSame('from my phone', $alice->expect('message.new')['payload']['data']['text']);
        // A wrong password, or the login password itself, is refused.
        [$code] = $call('GET', '/threads', null, 'bob', 'wrong wrong wrong wrong');
        $this->assertSame(401, $code);
        [$code] = $call('GET', '/threads', null, 'bob', $h->password);
        $this->assertSame(401, $code, 'the account password is not an application password');
        // A cookie login still needs its nonce.
        [$code] = $h->login('bob')->rest('GET', '/threads', null, false);
        $this->assertSame(401, $code);
    }

    public function test_the_settings_page_has_the_connection_doctor_with_its_config_module_and_import_map(): void
    {
        $admin = $this->h()->login('admin');
        [$code, , $page] = $admin->request('GET', '/wp-admin/options-general.php?page=bm-relay');
        $this->assertSame(200, $code);
        $this->assertSame(1, preg_match('#<div id="bm-relay-doctor" data-config="([^"]+)">#', $page, $m), 'the doctor\'s container');
        $config = json_decode(html_entity_decode($m[1], ENT_QUOTES), true);
        $this->assertIsArray($config);
        $this->assertStringEndsWith('/wp-json/bm/v1/', $config['rest']);
        // The REST nonce is the admin's: the doctor's two requests (token, one poll) pass with it.
        [$code, , $body] = $admin->request('POST', '/wp-json/bm/v1/token', '', ['X-WP-Nonce: ' . $config['nonce']]);
        $this->assertSame(200, $code, $body);
        $this->assertSame($this->uid('admin'), json_decode($body, true)['user']);
        [$code] = $admin->request('GET', '/wp-json/bm/v1/threads?per_page=1', '', ['X-WP-Nonce: ' . $config['nonce']]);
        $this->assertSame(200, $code);
        $this->assertSame(BM_Relay_Doctor::strings(), $config['strings']);
        foreach (['websocket', 'stream', 'polling'] as $way) {
            $this->assertStringContainsString('<tr data-way="' . $way . '">', $page);
        }
        $this->assertStringContainsString('id="bm-relay-doctor-run"', $page);
        [$head] = explode('</head>', $page, 2);
        $this->assertSame(1, preg_match('#<script type="importmap" id="bm-relay-importmap">(.*?)</script>#s', $head, $im), 'the versioned bm-client.js for the doctor');
        $url = plugins_url('assets/bm-client.js', BM_RELAY_FILE);
        $this->assertSame($url . '?ver=' . BM_Relay_Shortcode::asset_version('bm-client.js'), json_decode($im[1], true)['imports'][$url] ?? null);
        $this->assertMatchesRegularExpression('#<script type="module" src="[^"]+assets/bm-doctor\.js\?ver=[^"]+" id="bm-relay-doctor-js"></script>#', $page);
        // Elsewhere in wp-admin: neither the script nor the import map.
        [, , $other] = $this->h()->login('admin')->request('GET', '/wp-admin/options-general.php');
        $this->assertStringNotContainsString('bm-doctor.js', $other);
        $this->assertStringNotContainsString('bm-relay-importmap', $other);
    }

    public function test_the_installed_plugin_is_the_zip_without_tests_and_with_a_readme(): void
    {
        $dir = WP_PLUGIN_DIR . '/bm-relay';
        if (getenv('BM_PLUGIN_ZIP')) {
            $this->assertFileDoesNotExist($dir . '/tests', 'tests are not shipped');
            $this->assertFileDoesNotExist($dir . '/package.json');
        }
        $readme = (string) file_get_contents($dir . '/readme.txt');
        $this->assertStringStartsWith('=== bm-relay ===', $readme);
        foreach (['Requires at least:', 'Requires PHP:', 'Stable tag: ' . BM_RELAY_VERSION, '== Description ==', '== Installation ==', '== Changelog =='] as $part) {
            $this->assertStringContainsString($part, $readme);
        }
        $headers = get_plugin_data($dir . '/bm-relay.php', false, false);
        $this->assertSame('6.1', $headers['RequiresWP']);
        $this->assertSame('8.1', $headers['RequiresPHP']);
        $this->assertSame('false', $headers['UpdateURI']);
        $this->assertSame(BM_RELAY_VERSION, $headers['Version']);
    }

    public function test_chat_page_styles_in_the_head_and_versioned_modules(): void
    {
        $page = wp_insert_post(['post_type' => 'page', 'post_status' => 'publish', 'post_title' => 'Chat head', 'post_content' => '[bm_chat]']);
        [$code, , $html] = $this->h()->login('carol')->request('GET', wp_make_link_relative(get_permalink($page)));
        $this->assertSame(200, $code);
        [$head] = explode('</head>', $html, 2);
        $this->assertMatchesRegularExpression('#<link[^>]+id=.bm-relay-chat-css.[^>]+assets/bm-chat\.css\?ver=' . preg_quote(BM_RELAY_Shortcode::asset_version('bm-chat.css'), '#') . '#', $head, 'the stylesheet is in the head');
        $this->assertSame(1, preg_match('#<script type="importmap" id="bm-relay-importmap">(.*?)</script>#s', $head, $m), 'an import map in the head');
        $map = json_decode($m[1], true)['imports'];
        foreach (['bm-client.js', 'bm-crypto.js', 'bm-shared-worker.js'] as $file) {
            $url = plugins_url('assets/' . $file, BM_RELAY_FILE);
            $this->assertSame($url . '?ver=' . BM_Relay_Shortcode::asset_version($file), $map[$url] ?? null, "$file gets its own version");
        }
        // Every module bm-chat.js imports, directly or through another
        // (assets/chat/*.js), is in the installed plugin and versioned.
        $seen = [];
        $todo = ['bm-chat.js'];
        while ($todo) {
            $file = array_shift($todo);
            $source = (string) file_get_contents(BM_RELAY_DIR . 'assets/' . $file);
            preg_match_all("#^import [^;]+ from '(\\.{1,2}/[a-z/-]+\\.js)';#m", $source, $imports);
            foreach ($imports[1] as $rel) {
                // The import's path relative to assets/ ('chat/x.js' + '../y.js' is 'y.js').
                $parts = [];
                foreach (explode('/', (dirname($file) === '.' ? '' : dirname($file) . '/') . $rel) as $part) {
                    if ($part === '..') {
                        array_pop($parts);
                    } elseif ($part !== '.' && $part !== '') {
                        $parts[] = $part;
                    }
                }
                $dep = implode('/', $parts);
                if (isset($seen[$dep])) {
                    continue;
                }
                $seen[$dep] = true;
                $todo[] = $dep;
                $this->assertFileExists(BM_RELAY_DIR . 'assets/' . $dep, "$file imports $rel");
                $url = plugins_url('assets/' . $dep, BM_RELAY_FILE);
                $this->assertSame($url . '?ver=' . BM_Relay_Shortcode::asset_version($dep), $map[$url] ?? null, "$dep (imported by $file) gets its own version");
            }
        }
        $this->assertArrayHasKey('chat/store.js', $seen, 'the page imports its modules by concern');
        $this->assertMatchesRegularExpression('#<script type="module" src="[^"]+assets/bm-chat\.js\?ver=' . preg_quote(BM_Relay_Shortcode::asset_version('bm-chat.js'), '#') . '"#', $html);
        wp_delete_post($page, true);
    }
}
