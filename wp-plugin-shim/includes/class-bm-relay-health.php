<?php

/**
 * The verdict on Settings → bm-relay: whether real time works, in words a
 * site owner understands — working, degraded or down, and why — instead
 * of the relay's raw /healthz. WordPress checks what it can from the
 * server (its settings; the relay's admin /healthz: reachable, cluster
 * state, live connections; one signed call to the relay: does it accept
 * this site's key), and the page's script (assets/bm-verdict.js) adds what
 * only the admin's browser can tell: whether a browser reaches the relay
 * (the connection doctor's result), and the measured round trip of a test
 * event from WordPress through the relay to this browser.
 *
 * The relay key and the site secret are never shown: only whether a secret
 * is set and where it comes from (`bm-relay keygen` prints the relay key
 * for the relay's configuration, docs/DEPLOY.md).
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * The settings page's verdict and its test-event round trip.
 */
final class BM_Relay_Health
{
    /** Script handle of the verdict (an ES module: it imports bm-client.js). */
    public const HANDLE = 'bm-relay-verdict';

    /** The AJAX action that pushes a timed test event to the admin. */
    public const PING_ACTION = 'bm_relay_test_ping';

    /** Verdict levels, best first. */
    public const LEVELS = ['working', 'degraded', 'down'];

    /** Hooks the script and the test-event action in (its module tag: BM_Relay_Shortcode::module_tag). */
    public static function register(): void
    {
        add_action('admin_enqueue_scripts', [self::class, 'enqueue']);
        add_action('wp_ajax_' . self::PING_ACTION, [self::class, 'ajax_ping']);
    }

    /**
     * Enqueues the verdict's script on the settings page (the doctor prints
     * the import map there that resolves its bm-client.js).
     *
     * @param string $hook the admin page's hook suffix
     */
    public static function enqueue($hook): void
    {
        if ((string) $hook !== 'settings_page_' . BM_Relay_Admin::SLUG || !current_user_can('manage_options')) {
            return;
        }
        wp_enqueue_script(self::HANDLE, plugins_url('assets/bm-verdict.js', BM_RELAY_FILE), [], BM_Relay_Shortcode::asset_version('bm-verdict.js'), true);
    }

    /**
     * What the relay's admin listener says: reachable or not, its status
     * (`ok`, `degraded`, `syncing`, `shutting_down`), live connections:
     * WebSockets from /healthz, and streams (the fallback through proxies
     * that block WebSocket) from /metrics' `bm_relay_streams` gauge, which
     * /healthz does not count. Null when no admin URL is set. Cost: two
     * loopback/LAN GETs, ≤ 2 s each (the second only when the first
     * answered).
     *
     * @return array{reachable:bool,status:?string,connections:?int,streams:?int,why:string}|null
     */
    public static function relay_health(): ?array
    {
        $admin = (string) BM_Relay_Settings::get('bmr_admin_url');
        if ($admin === '') {
            return null;
        }
        $r = wp_remote_get(rtrim($admin, '/') . '/healthz', ['timeout' => 2, 'redirection' => 0]);
        if (is_wp_error($r)) {
            return ['reachable' => false, 'status' => null, 'connections' => null, 'streams' => null, 'why' => $r->get_error_message()];
        }
        $body = json_decode((string) wp_remote_retrieve_body($r), true);
        $body = is_array($body) ? $body : [];
        $streams = null;
        $m = wp_remote_get(rtrim($admin, '/') . '/metrics', ['timeout' => 2, 'redirection' => 0]);
        if (!is_wp_error($m) && preg_match('/^bm_relay_streams (\d+)$/m', (string) wp_remote_retrieve_body($m), $g)) {
            $streams = (int) $g[1];
        }
        return [
            'reachable' => true,
            'status' => isset($body['status']) && is_string($body['status']) ? $body['status'] : null,
            'connections' => isset($body['connections']) && is_int($body['connections']) ? $body['connections'] : null,
            'streams' => $streams,
            'why' => 'HTTP ' . (int) wp_remote_retrieve_response_code($r),
        ];
    }

    /**
     * Whether the relay accepts this site's signed requests: one presence
     * question (signed with the relay key, answered by the relay, changes
     * nothing), so a wrong key or a site id the relay does not serve shows
     * here rather than as silently failing pushes. Null when it accepted;
     * else `unreachable` or `refused` with the relay's words.
     *
     * @return array{problem:string,detail:string}|null
     */
    public static function push_check(int $user): ?array
    {
        try {
            bm_presence([max(1, $user)]);
            return null;
        } catch (BmRelayException $e) {
            return ['problem' => $e->getCode() === 0 ? 'unreachable' : 'refused', 'detail' => $e->getMessage()];
        }
    }

    /**
     * The verdict: a level and the reasons, in plain words, worst first,
     * plus the live connections when the relay's admin listener said.
     *
     * @return array{level:string,reasons:list<array{key:string,level:string,text:string}>,connections:?int,streams:?int,secret_set:bool,secret_source:string}
     */
    public static function verdict(int $user): array
    {
        $reasons = [];
        $connections = null;
        $streams = null;
        $source = BM_Relay_Settings::secret_source();
        if (!BM_Relay_Settings::ready()) {
            $reasons[] = 'not_set_up';
        } else {
            $health = self::relay_health();
            if ($health === null) {
                $reasons[] = 'no_admin_url';
            } elseif (!$health['reachable']) {
                $reasons[] = 'relay_silent';
            } else {
                $streams = $health['streams'];
                $connections = $health['connections'] === null ? null : $health['connections'] + (int) $streams;
                $by_status = ['ok' => null, 'degraded' => 'cluster_degraded', 'syncing' => 'syncing'];
                $reasons[] = array_key_exists((string) $health['status'], $by_status) ? $by_status[$health['status']] : 'relay_unwell';
            }
            $push = ($health === null || $health['reachable']) ? self::push_check($user) : null;
            if ($push !== null && $push['problem'] === 'unreachable') {
                $reasons[] = 'push_unreachable';
            } elseif ($push !== null) {
                $reasons[] = str_contains($push['detail'], 'unknown_site') ? 'unknown_site' : 'bad_key';
            }
        }
        $reasons = array_map([self::class, 'reason'], array_values(array_filter($reasons)));
        $level = 'working';
        foreach ($reasons as $r) {
            if (in_array($r['level'], self::LEVELS, true) && array_search($r['level'], self::LEVELS, true) > array_search($level, self::LEVELS, true)) {
                $level = $r['level'];
            }
        }
        $rank = static fn(array $r): int => (int) array_search($r['level'], self::LEVELS, true);
        usort($reasons, static fn($a, $b) => $rank($b) <=> $rank($a));
        return [
            'level' => $level,
            'reasons' => $reasons,
            'connections' => $connections,
            'streams' => $streams,
            'secret_set' => $source !== 'none',
            'secret_source' => $source,
        ];
    }

    /**
     * One reason of the verdict, in words for a site owner, with the level
     * it brings the verdict to (`info`: a note that lowers nothing).
     *
     * @return array{key:string,level:string,text:string}
     */
    public static function reason(string $key): array
    {
        $reasons = [
            'not_set_up' => ['down', __(
                'The plugin is not set up yet: it needs the relay\'s address, a site id and a secret (see the settings below).',
                'bm-relay'
            )],
            // A note, not a fault: real time may well work.
            'no_admin_url' => ['info', __(
                'The relay admin address is not set, so this page cannot tell how the relay is or how many people are connected.',
                'bm-relay'
            )],
            'relay_silent' => ['down', __(
                'The relay is not answering: it may be stopped, or its admin address below is wrong. New messages only appear every few seconds.',
                'bm-relay'
            )],
            'cluster_degraded' => ['degraded', __(
                'The relay lost contact with the other relays of its cluster: people on other relays may get messages late until it recovers.',
                'bm-relay'
            )],
            'syncing' => ['degraded', __('The relay is starting up. This normally takes a few seconds.', 'bm-relay')],
            'relay_unwell' => ['down', __('The relay is shutting down or reports a problem.', 'bm-relay')],
            'push_unreachable' => ['down', __(
                'WordPress cannot reach the relay to send messages: check the relay push address below and that the relay is running.',
                'bm-relay'
            )],
            'unknown_site' => ['down', __('The relay does not serve this site: add its site id to the relay\'s configuration.', 'bm-relay')],
            'bad_key' => ['down', __(
                'The relay refuses this site\'s messages: its relay key does not match this site\'s secret (bm-relay keygen prints the right one).',
                'bm-relay'
            )],
        ];
        [$level, $text] = $reasons[$key] ?? ['down', $key];
        return ['key' => $key, 'level' => $level, 'text' => $text];
    }

    /** The level's headline (the colour is never the only sign: the word is there too). */
    public static function headline(string $level): string
    {
        switch ($level) {
            case 'working':
                return __('Working: messages arrive instantly.', 'bm-relay');
            case 'degraded':
                return __('Degraded: messages arrive, but not everything is right.', 'bm-relay');
            default:
                return __('Down: messages are not delivered instantly.', 'bm-relay');
        }
    }

    /** The strings of the verdict's script. @return array<string,mixed> */
    public static function strings(): array
    {
        return [
            'working' => self::headline('working'),
            'degraded' => self::headline('degraded'),
            'down' => self::headline('down'),
            'checking' => __('Checking whether your browser can connect to the relay…', 'bm-relay'),
            'browserOk' => __('Your browser connects to the relay.', 'bm-relay'),
            'browserStream' => __('Between your browser and the relay something (a proxy or firewall) blocks WebSocket: pages use the slower streaming fallback.', 'bm-relay'),
            /* translators: %s: why the browser could not connect, e.g. "timed out" */
            'browserNo' => __('The relay answers WordPress, but your browser cannot connect to it (%s). Check the relay WebSocket address below and any proxy or firewall in between.', 'bm-relay'),
            'sending' => __('Sending a test event…', 'bm-relay'),
            /* translators: %d: milliseconds */
            'arrived' => __('Test event arrived in %d ms.', 'bm-relay'),
            'notArrived' => __('The relay accepted the test event, but it did not reach this browser within 5 seconds.', 'bm-relay'),
            'noClient' => __('This browser is not connected to the relay, so the test event cannot be timed.', 'bm-relay'),
            /* translators: %s: the error */
            'failed' => __('The test event could not be sent: %s', 'bm-relay'),
            // The connection doctor's words for why a connection failed.
            'reasons' => BM_Relay_Doctor::strings(),
        ];
    }

    /**
     * The verdict's section of the settings page.
     *
     * @param array{level:string,reasons:list<array{key:string,level:string,text:string}>,connections:?int,streams:?int,secret_set:bool,secret_source:string} $v
     */
    public static function render(array $v): void
    {
        $config = [
            'rest' => esc_url_raw(rest_url(BM_Relay_REST::NS . '/')),
            'nonce' => wp_create_nonce('wp_rest'),
            'ajax' => esc_url_raw(admin_url('admin-ajax.php')),
            'ping_nonce' => wp_create_nonce(self::PING_ACTION),
            'level' => $v['level'],
            'strings' => self::strings(),
        ];
        // Colours with words (the headline says the level): a tinted box
        // with a strong left edge, all pairs above WCAG AA contrast.
        echo '<style>.bm-verdict{border-left:6px solid;padding:.5em 1em;margin:1em 0;max-width:60em}'
            . '.bm-verdict-working{border-color:#15803d;background:#f0fdf4;color:#14532d}'
            . '.bm-verdict-degraded{border-color:#b45309;background:#fffbeb;color:#78350f}'
            . '.bm-verdict-down{border-color:#b91c1c;background:#fef2f2;color:#7f1d1d}'
            . '.bm-verdict-head{font-size:1.2em;margin:.3em 0}.bm-verdict-reasons{list-style:disc;margin-left:1.5em}'
            . '.bm-verdict-roundtrip{font-size:1.1em;font-weight:600}</style>';
        printf(
            '<div id="bm-relay-verdict" class="bm-verdict bm-verdict-%1$s" data-level="%1$s" data-config="%2$s" role="status">',
            esc_attr($v['level']),
            esc_attr((string) wp_json_encode($config))
        );
        printf('<p class="bm-verdict-head"><strong>%s</strong></p>', esc_html(self::headline($v['level'])));
        echo '<ul class="bm-verdict-reasons">';
        foreach ($v['reasons'] as $r) {
            printf('<li data-level="%s" data-reason="%s">%s</li>', esc_attr($r['level']), esc_attr($r['key']), esc_html($r['text']));
        }
        echo '<li class="bm-verdict-browser" data-level="" hidden></li></ul>';
        echo '</div>';
        echo '<table class="widefat striped" id="bm-relay-status"><tbody>';
        $rows = [
            __('Live connections', 'bm-relay') => $v['connections'] === null
                ? __('unknown (set the relay admin address)', 'bm-relay')
                /* translators: %d: number of browser connections open on the relay */
                : sprintf(_n('%d browser connected to the relay now', '%d browsers connected to the relay now', $v['connections'], 'bm-relay'), $v['connections'])
                    . ($v['streams'] > 0
                        /* translators: %d: how many of those connections use the streaming fallback */
                        ? ' ' . sprintf(_n('(%d through the streaming fallback)', '(%d through the streaming fallback)', $v['streams'], 'bm-relay'), $v['streams'])
                        : ''),
            __('Site secret', 'bm-relay') => $v['secret_set']
                /* translators: %s: where the secret is stored: option, constant, ini … */
                ? sprintf(__('set (stored in: %s); never shown here', 'bm-relay'), $v['secret_source'])
                : __('not set', 'bm-relay'),
        ];
        foreach ($rows as $k => $text) {
            printf('<tr><th scope="row">%s</th><td>%s</td></tr>', esc_html($k), esc_html($text));
        }
        echo '</tbody></table>';
    }

    /**
     * The page's "Send test event" with JavaScript: pushes a `test` event to
     * the admin's own browsers carrying the page's probe id, so the page
     * that asked can time it from click to arrival. JSON answer.
     */
    public static function ajax_ping(): void
    {
        if (!current_user_can('manage_options')) {
            wp_send_json_error(['detail' => __('You are not allowed to do this.', 'bm-relay')], 403);
        }
        if (!check_ajax_referer(self::PING_ACTION, 'nonce', false)) {
            wp_send_json_error(['detail' => __('The page has expired; reload it.', 'bm-relay')], 403);
        }
        $probe = isset($_POST['probe']) ? sanitize_key(wp_unslash((string) $_POST['probe'])) : '';
        if ($probe === '' || strlen($probe) > 40) {
            wp_send_json_error(['detail' => __('Missing probe id.', 'bm-relay')], 400);
        }
        $r = BM_Relay_Admin::send_test_event(get_current_user_id(), ['probe' => $probe]);
        if (!$r['ok']) {
            wp_send_json_error(['detail' => $r['detail']], 502);
        }
        wp_send_json_success(['detail' => $r['detail']]);
    }
}
