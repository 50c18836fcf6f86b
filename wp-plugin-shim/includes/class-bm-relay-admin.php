<?php

/**
 * Settings → bm-relay: the relay settings, the connection status (relay
 * /healthz, extension or fallback, push counters) and a "send test event"
 * button that pushes a user-sealed event to the admin's own browsers.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * The admin page.
 */
final class BM_Relay_Admin
{
    /** Page slug. */
    public const SLUG = 'bm-relay';

    /** Hooks the page, the settings and the test-event action in. */
    public static function register(): void
    {
        add_action('admin_menu', static function (): void {
            add_options_page(__('bm-relay', 'bm-relay'), __('bm-relay', 'bm-relay'), 'manage_options', self::SLUG, [self::class, 'render']);
        });
        add_action('network_admin_menu', static function (): void {
            add_submenu_page('settings.php', __('bm-relay', 'bm-relay'), __('bm-relay', 'bm-relay'), 'manage_network_options', self::SLUG . '-network', [self::class, 'render_network']);
        });
        add_action('admin_init', [self::class, 'register_settings']);
        add_action('admin_post_bm_relay_test_event', [self::class, 'handle_test_event']);
    }

    /** Registers the options with their sanitizers. */
    public static function register_settings(): void
    {
        $url = static function ($v): string {
            $v = is_string($v) ? trim($v) : '';
            return $v === '' ? '' : (string) esc_url_raw($v, ['http', 'https', 'ws', 'wss']);
        };
        register_setting(self::SLUG, 'bmr_url', ['type' => 'string', 'sanitize_callback' => static function ($v): string {
            [$urls, $error] = BM_Relay_Settings::check_relay_urls(is_string($v) ? $v : '');
            if ($error !== null) {
                add_settings_error('bmr_url', 'bmr_url', $error);
                return (string) get_option('bmr_url', '');
            }
            return (string) $urls;
        }]);
        register_setting(self::SLUG, 'bmr_public_url', ['type' => 'string', 'sanitize_callback' => static function ($v) use ($url): string {
            $v = $url($v);
            $warning = self::shared_host_warning($v);
            if ($warning !== null) {
                // Kept (it works), but the admin is told what it costs.
                add_settings_error('bmr_public_url', 'bmr_public_url', $warning, 'warning');
            }
            return $v;
        }]);
        register_setting(self::SLUG, 'bmr_admin_url', ['type' => 'string', 'sanitize_callback' => $url]);
        register_setting(self::SLUG, 'bmr_site', ['type' => 'string', 'sanitize_callback' => static function ($v): string {
            $v = is_string($v) ? strtolower(trim($v)) : '';
            if ($v !== '' && !preg_match('/^[a-z0-9][a-z0-9._-]{0,63}$/D', $v)) {
                add_settings_error('bmr_site', 'bmr_site', __('Site id must match ^[a-z0-9][a-z0-9._-]{0,63}$.', 'bm-relay'));
                return (string) get_option('bmr_site', '');
            }
            return $v;
        }]);
        register_setting(self::SLUG, 'bmr_mode', ['type' => 'string', 'sanitize_callback' => static fn($v) => in_array($v, ['async', 'sync'], true) ? $v : '']);
        register_setting(self::SLUG, BM_Relay_Ids::OPTION, ['type' => 'string', 'sanitize_callback' => static fn($v) => (string) $v === '1' ? '1' : '2']);
        register_setting(self::SLUG, 'bmr_retention_days', ['type' => 'integer', 'sanitize_callback' => static fn($v) => max(0, min(36500, (int) $v))]);
        register_setting(self::SLUG, 'bmr_max_length', ['type' => 'integer', 'sanitize_callback' => static fn($v) => max(1, min(20000, (int) $v))]);
    }

    /**
     * A warning when browsers reach the relay under WordPress's own host
     * name: they then send it WordPress's cookies, the login cookie among
     * them (the login, and a credential), and the relay holds them in
     * memory (docs/DEPLOY.md §5, found by the privacy end-to-end test).
     * Null when the hosts differ or no URL is set.
     */
    public static function shared_host_warning(string $ws_url): ?string
    {
        $relay = strtolower((string) wp_parse_url($ws_url, PHP_URL_HOST));
        $site = strtolower((string) wp_parse_url(home_url(), PHP_URL_HOST));
        if ($relay === '' || $relay !== $site) {
            return null;
        }
        return sprintf(
            /* translators: %s: a host name, e.g. example.com */
            __('The relay WebSocket URL uses this site\'s own host name (%s): browsers will send the relay WordPress\'s login cookie with every connection. Give the relay a host name of its own (e.g. relay.%s), or have the proxy in front of it remove the Cookie header.', 'bm-relay'),
            $site,
            $site
        );
    }

    /**
     * The technical details shown on the page. The relay's health is not
     * here: the verdict asks the relay (BM_Relay_Health::relay_health()).
     *
     * @return array{implementation:string,configured:bool,config_error:?string,stats:array,secret_source:string,ws_warning:?string}
     */
    public static function status(): array
    {
        return [
            'implementation' => BM_Relay_Settings::native()
                ? 'extension ' . (string) BM_Relay_Settings::native_version()
                : 'fallback (pure PHP)',
            'configured' => BM_Relay_Settings::ready(),
            'config_error' => BM_Relay_Settings::$error,
            'stats' => bm_stats(),
            'secret_source' => BM_Relay_Settings::secret_source(),
            'ws_warning' => self::shared_host_warning((string) BM_Relay_Settings::get('bmr_public_url')),
        ];
    }

    /**
     * Pushes a `test` event to the given user's browsers, in sync mode so the
     * answer says how many sockets got it. `$extra` goes into the event's
     * data (the settings page's probe id, to time its arrival).
     *
     * @param array<string,string> $extra
     * @return array{ok:bool,detail:string}
     */
    public static function send_test_event(int $user, array $extra = []): array
    {
        try {
            bm_configure(['mode' => 'sync']);
            $res = bm_push(['type' => 'test', 'data' => ['time' => time()] + $extra, 'to' => [$user]]);
        } catch (BmRelayException $e) {
            return ['ok' => false, 'detail' => $e->getMessage()];
        } finally {
            BM_Relay_Settings::apply();
        }
        /* translators: %d: number of browser sockets that received the event */
        return ['ok' => true, 'detail' => sprintf(__('Relay accepted the event; %d of your browser sockets received it.', 'bm-relay'), (int) ($res['sockets'] ?? 0))];
    }

    /** admin-post handler of the "send test event" button. */
    public static function handle_test_event(): void
    {
        if (!current_user_can('manage_options')) {
            wp_die(esc_html__('You are not allowed to do this.', 'bm-relay'), 403);
        }
        check_admin_referer('bm_relay_test_event');
        set_transient('bmr_test_' . get_current_user_id(), self::send_test_event(get_current_user_id()), 60);
        wp_safe_redirect(admin_url('options-general.php?page=' . self::SLUG));
        exit;
    }

    /**
     * Each blog's site id and relay key, for the relay's configuration
     * (`--site SITE=RELAY_KEY`, one per blog). Network admins only.
     *
     * @return list<array{blog:int,url:string,site:string,relay_key:string}>
     */
    public static function network_sites(): array
    {
        if (!is_multisite() || !current_user_can('manage_network_options')) {
            return [];
        }
        $out = [];
        foreach (get_sites(['fields' => 'ids', 'number' => 0]) as $blog_id) {
            switch_to_blog((int) $blog_id);
            try {
                $out[] = ['blog' => (int) $blog_id, 'url' => home_url('/'), 'site' => (string) (bm_stats()['site'] ?? ''), 'relay_key' => bm_relay_key()];
            } catch (BmRelayException $e) {
                $out[] = ['blog' => (int) $blog_id, 'url' => home_url('/'), 'site' => '', 'relay_key' => ''];
            } finally {
                restore_current_blog();
            }
        }
        return $out;
    }

    /** Network Admin → Settings → bm-relay: the relay's site list. */
    public static function render_network(): void
    {
        if (!current_user_can('manage_network_options')) {
            return;
        }
        echo '<div class="wrap"><h1>' . esc_html__('bm-relay', 'bm-relay') . '</h1>';
        echo '<p>' . esc_html__('Each site of the network is a site of its own on the relay, with keys derived from the network secret. Give the relay one --site line per site:', 'bm-relay') . '</p>';
        echo '<table class="widefat striped" id="bm-relay-network-sites"><thead><tr><th>' . esc_html__('Site', 'bm-relay') . '</th><th>' . esc_html__('Relay --site', 'bm-relay') . '</th></tr></thead><tbody>';
        foreach (self::network_sites() as $row) {
            printf('<tr><td>%s</td><td><code>%s</code></td></tr>', esc_html($row['url']), esc_html($row['site'] . '=' . $row['relay_key']));
        }
        echo '</tbody></table></div>';
    }

    /** Renders the page. */
    public static function render(): void
    {
        if (!current_user_can('manage_options')) {
            return;
        }
        $s = self::status();
        $test = get_transient('bmr_test_' . get_current_user_id());
        delete_transient('bmr_test_' . get_current_user_id());
        echo '<div class="wrap"><h1>' . esc_html__('bm-relay', 'bm-relay') . '</h1>';
        if (is_array($test)) {
            printf('<div class="notice notice-%s"><p>%s</p></div>', $test['ok'] ? 'success' : 'error', esc_html($test['detail']));
        }
        echo '<h2>' . esc_html__('Status', 'bm-relay') . '</h2>';
        // The verdict in words (working / degraded / down and why); no raw
        // /healthz, and never the relay key or the secret.
        BM_Relay_Health::render(BM_Relay_Health::verdict(get_current_user_id()));
        echo '<details id="bm-relay-details"><summary>' . esc_html__('Technical details', 'bm-relay') . '</summary><table class="widefat striped"><tbody>';
        $rows = [
            __('Implementation', 'bm-relay') => $s['implementation'],
            __('Configured', 'bm-relay') => $s['configured'] ? __('yes', 'bm-relay') : __('no', 'bm-relay') . ($s['config_error'] ? ' — ' . $s['config_error'] : ''),
            __('Relay WebSocket host', 'bm-relay') => ($s['ws_warning'] === null ? '✔ ' . __('a host name of its own', 'bm-relay') : '✘ ' . $s['ws_warning']),
            __('Pushed / failed / dropped', 'bm-relay') => sprintf('%d / %d / %d', $s['stats']['sent'] ?? 0, $s['stats']['failed'] ?? 0, $s['stats']['dropped'] ?? 0),
        ];
        foreach ($rows as $k => $v) {
            echo '<tr><th scope="row">' . esc_html($k) . '</th><td>' . esc_html((string) $v) . '</td></tr>';
        }
        echo '</tbody></table></details>';
        echo '<p id="bm-relay-roundtrip" class="bm-verdict-roundtrip" aria-live="polite"></p>';
        echo '<form method="post" action="' . esc_url(admin_url('admin-post.php')) . '">';
        wp_nonce_field('bm_relay_test_event');
        echo '<input type="hidden" name="action" value="bm_relay_test_event">';
        submit_button(__('Send test event', 'bm-relay'), 'secondary', 'submit', false);
        echo '</form>';
        BM_Relay_Doctor::render();
        echo '<h2>' . esc_html__('Settings', 'bm-relay') . '</h2><form method="post" action="options.php">';
        settings_fields(self::SLUG);
        echo '<table class="form-table">';
        $fields = [
            'bmr_url' => __('Relay push URL (server side, e.g. http://127.0.0.1:8080; several, comma-separated, to fail over from one to the next)', 'bm-relay'),
            'bmr_public_url' => __('Relay WebSocket URL (browser side, e.g. wss://relay.example.com/v1/ws)', 'bm-relay'),
            'bmr_admin_url' => __('Relay admin URL (for /healthz)', 'bm-relay'),
            'bmr_site' => __('Site id', 'bm-relay'),
            'bmr_retention_days' => __('Delete messages after N days (0 keeps them)', 'bm-relay'),
            'bmr_max_length' => __('Longest message (characters)', 'bm-relay'),
        ];
        foreach ($fields as $name => $label) {
            printf(
                '<tr><th><label for="%1$s">%2$s</label></th><td><input class="regular-text" id="%1$s" name="%1$s" value="%3$s"></td></tr>',
                esc_attr($name),
                esc_html($label),
                esc_attr((string) BM_Relay_Settings::get($name))
            );
        }
        $mode = (string) BM_Relay_Settings::get('bmr_mode');
        printf(
            '<tr><th><label for="bmr_mode">%s</label></th><td><select id="bmr_mode" name="bmr_mode"><option value=""%s>%s</option><option value="sync"%s>sync</option><option value="async"%s>async</option></select></td></tr>',
            esc_html__('Push mode (sync waits for the relay’s answer; async never waits)', 'bm-relay'),
            selected($mode, '', false),
            esc_html__('automatic (async with the extension)', 'bm-relay'),
            selected($mode, 'sync', false),
            selected($mode, 'async', false)
        );
        $protocol = BM_Relay_Ids::protocol();
        printf(
            '<tr><th><label for="bmr_protocol">%s</label></th><td><select id="bmr_protocol" name="bmr_protocol"><option value="2"%s>%s</option><option value="1"%s>%s</option></select><p class="description">%s</p>%s</td></tr>',
            esc_html__('Ids the relay sees', 'bm-relay'),
            selected($protocol, 2, false),
            esc_html__('pseudonyms (protocol 2)', 'bm-relay'),
            selected($protocol, 1, false),
            esc_html__('WordPress user and thread ids (protocol 1)', 'bm-relay'),
            esc_html__('With pseudonyms the relay cannot tell which WordPress user or thread it routes for. Every relay routes both. Pages open at the switch get live events again once reloaded or reconnected, and catch up from WordPress, so nothing is lost.', 'bm-relay'),
            $protocol === 1 ? '<p class="notice notice-warning inline">' . esc_html__('This site still shows its relay the WordPress ids of its users and threads.', 'bm-relay') . '</p>' : ''
        );
        echo '</table>';
        do_settings_sections(self::SLUG);
        submit_button();
        echo '</form></div>';
    }
}
