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
        $this->assertTrue($s['relay']['ok'], $s['relay']['detail']);
        $this->assertTrue($s['configured']);
        $native = (new ReflectionFunction('bm_push'))->isInternal();
        $this->assertSame(getenv('BM_EXT_SO') ? true : false, $native, 'the run uses the implementation it was asked for');
        $this->assertSame($native ? 'extension' : 'fallback', strtok($s['implementation'], ' '));
        $this->assertSame('option', $s['secret_source']);
        $this->assertStringNotContainsString($this->h()->secret, (string) json_encode($s), 'the secret is never shown');

        update_option('bm_relay_admin_url', 'http://127.0.0.1:' . BM_WP_Harness::free_port());
        try {
            $down = BM_Relay_Admin::status();
            $this->assertFalse($down['relay']['ok']);
        } finally {
            update_option('bm_relay_admin_url', 'http://127.0.0.1:' . $this->h()->admin_port);
        }
    }

    public function test_send_test_event_reaches_the_admins_browser(): void
    {
        $admin = $this->sub('admin');
        $r = BM_Relay_Admin::send_test_event($this->uid('admin'));
        $this->assertTrue($r['ok'], $r['detail']);
        $this->assertStringContainsString('1 of your browser sockets', $r['detail']);
        $ev = $admin->expect('test');
        $this->assertSame('u/' . $this->uid('admin'), $ev['k']);
        $this->assertSame(get_option('bm_relay_mode'), BM_Relay_Settings::mode(), 'the configured mode is restored');
    }

    public function test_settings_page_renders_for_admins(): void
    {
        wp_set_current_user($this->uid('admin'));
        ob_start();
        BM_Relay_Admin::render();
        $html = (string) ob_get_clean();
        $this->assertStringContainsString('id="bm-relay-status"', $html);
        $this->assertStringContainsString('Send test event', $html);
        $this->assertStringContainsString(esc_html($this->h()->site . '=' . $this->h()->relay_key), $html);
        $this->assertStringNotContainsString($this->h()->secret, $html);
        wp_set_current_user($this->uid('bob'));
        ob_start();
        BM_Relay_Admin::render();
        $this->assertSame('', ob_get_clean(), 'nothing for non-admins');
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
    }

    public function test_rest_over_http_with_cookie_login_and_nonce(): void
    {
        $h = $this->h();
        $t = $this->thread('alice', ['bob'], 'HTTP');
        $jar = $h->run . '/cookies-' . bin2hex(random_bytes(4));
        $curl = static function (string $method, string $url, ?string $body = null, array $headers = []) use ($jar): array {
            $ch = curl_init($url);
            curl_setopt_array($ch, [
                CURLOPT_CUSTOMREQUEST => $method, CURLOPT_RETURNTRANSFER => true, CURLOPT_COOKIEJAR => $jar,
                CURLOPT_COOKIEFILE => $jar, CURLOPT_TIMEOUT => 20, CURLOPT_HTTPHEADER => $headers,
            ]);
            if ($body !== null) {
                curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
            }
            $out = (string) curl_exec($ch);
            $code = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
            curl_close($ch);
            return [$code, $out];
        };
        // Browser-like login: test cookie, then the form.
        $curl('GET', $h->url . '/wp-login.php');
        [$code] = $curl('POST', $h->url . '/wp-login.php', http_build_query(['log' => 'bob', 'pwd' => $h->password, 'testcookie' => 1, 'redirect_to' => $h->url . '/wp-admin/']), ['Cookie: wordpress_test_cookie=WP%20Cookie%20check']);
        $this->assertSame(302, $code, 'login redirects');
        [$code, $nonce] = $curl('GET', $h->url . '/wp-admin/admin-ajax.php?action=rest-nonce');
        $this->assertSame(200, $code);
        $this->assertMatchesRegularExpression('/^[0-9a-f]{10}$/', $nonce);

        $bob = $this->sub('alice', [$t['id']]);
        $json = ['Content-Type: application/json'];
        [$code, $body] = $curl('POST', $h->url . "/wp-json/bm/v1/threads/{$t['id']}/messages", '{"text":"over http"}', $json);
        // WordPress treats a cookie without a nonce as logged out (CSRF guard).
        $this->assertSame(401, $code, 'cookie without nonce: ' . $body);
        [$code, $body] = $curl('POST', $h->url . "/wp-json/bm/v1/threads/{$t['id']}/messages", '{"text":"over http"}', array_merge($json, ['X-WP-Nonce: ' . $nonce]));
        $this->assertSame(201, $code, $body);
        $msg = json_decode($body, true)['message'];
        $this->assertSame($this->uid('bob'), $msg['sender']);
        $this->assertSame('over http', $bob->expect('message.new')['payload']['data']['text']);
        [$code, $body] = $curl('GET', $h->url . "/wp-json/bm/v1/threads/{$t['id']}/messages?after=0", null, ['X-WP-Nonce: ' . $nonce]);
        $this->assertSame(200, $code);
        $this->assertSame([$msg['id']], array_column(json_decode($body, true)['messages'], 'id'));
        [$code, $body] = $curl('POST', $h->url . '/wp-json/bm/v1/token', '', ['X-WP-Nonce: ' . $nonce]);
        $this->assertSame(200, $code, $body);
        $this->assertSame($this->uid('bob'), json_decode($body, true)['user']);
        [$code] = $curl('GET', $h->url . '/wp-json/bm/v1/threads', null, ['X-WP-Nonce: 0123456789']);
        $this->assertSame(403, $code, 'a forged nonce is refused');

        // Async mode in a real server: the event is queued during the request
        // and sent at request end (RSHUTDOWN / shutdown function).
        update_option('bm_relay_mode', 'async');
        try {
            [$code, $body] = $curl('POST', $h->url . "/wp-json/bm/v1/threads/{$t['id']}/messages", '{"text":"async over http"}', array_merge($json, ['X-WP-Nonce: ' . $nonce]));
            $this->assertSame(201, $code, $body);
            $this->assertFalse(json_decode($body, true)['pushed']);
            $this->assertSame('async over http', $bob->expect('message.new', 5, 2)['payload']['data']['text']);
        } finally {
            update_option('bm_relay_mode', 'sync');
        }
    }

    public function test_settings_page_and_test_event_button_over_http(): void
    {
        $h = $this->h();
        $jar = $h->run . '/cookies-admin-' . bin2hex(random_bytes(4));
        $curl = static function (string $method, string $url, ?string $body = null) use ($jar): array {
            $ch = curl_init($url);
            curl_setopt_array($ch, [
                CURLOPT_CUSTOMREQUEST => $method, CURLOPT_RETURNTRANSFER => true, CURLOPT_COOKIEJAR => $jar,
                CURLOPT_COOKIEFILE => $jar, CURLOPT_TIMEOUT => 20, CURLOPT_HEADER => true,
            ]);
            if ($body !== null) {
                curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
            }
            $out = (string) curl_exec($ch);
            $code = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
            curl_close($ch);
            return [$code, $out];
        };
        $curl('GET', $h->url . '/wp-login.php');
        [$code] = $curl('POST', $h->url . '/wp-login.php', http_build_query(['log' => 'admin', 'pwd' => $h->password, 'testcookie' => 1, 'redirect_to' => $h->url . '/wp-admin/']));
        $this->assertSame(302, $code);
        [$code, $page] = $curl('GET', $h->url . '/wp-admin/options-general.php?page=bm-relay');
        $this->assertSame(200, $code);
        $this->assertStringContainsString('id="bm-relay-status"', $page);
        $this->assertStringContainsString('HTTP 200', $page, 'relay /healthz shown');
        $this->assertStringNotContainsString($h->secret, $page);
        $this->assertSame(1, preg_match('/name="_wpnonce" value="([0-9a-f]+)"/', $page, $m));

        $admin = $this->sub('admin');
        [$code, $resp] = $curl('POST', $h->url . '/wp-admin/admin-post.php', http_build_query(['action' => 'bm_relay_test_event', '_wpnonce' => $m[1], '_wp_http_referer' => '/wp-admin/options-general.php?page=bm-relay']));
        $this->assertSame(302, $code, $resp);
        $this->assertSame('u/' . $this->uid('admin'), $admin->expect('test')['k']);
        [, $page] = $curl('GET', $h->url . '/wp-admin/options-general.php?page=bm-relay');
        $this->assertStringContainsString('1 of your browser sockets received it', $page);
        [$code] = $curl('POST', $h->url . '/wp-admin/admin-post.php', http_build_query(['action' => 'bm_relay_test_event', '_wpnonce' => 'bad']));
        $this->assertNotSame(302, $code, 'a forged nonce is refused');
    }
}
