<?php

/**
 * The connection doctor on Settings → bm-relay: from the admin's own
 * browser it tries each way a page can reach live updates — a WebSocket to
 * the relay (connect → `ready`), the relay's streaming fallback (open →
 * `ready`, docs/PROTOCOL.md §6.1) and WordPress polling (one REST GET of
 * the admin's threads) — and shows for each whether it works, why not
 * (refused, timed out, upgrade blocked, HTTP status) and how many ms it
 * took. It runs in the browser because that is where a proxy that blocks
 * WebSocket sits: WordPress's own server-side requests would not meet it.
 *
 * No REST route of its own: the token comes from `POST bm/v1/token` and the
 * poll is `GET bm/v1/threads`, both behind the REST API's nonce and
 * capability check (BM_Relay_REST::check), exactly what a chat page uses.
 * The button and script are on the settings page, which needs
 * `manage_options`.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * The doctor's markup and script.
 */
final class BM_Relay_Doctor
{
    /** Script handle (an ES module: it imports bm-client.js). */
    public const HANDLE = 'bm-relay-doctor';

    /** Hooks the script onto the settings page. */
    public static function register(): void
    {
        add_action('admin_enqueue_scripts', [self::class, 'enqueue']);
        add_action('admin_head', [self::class, 'import_map']);
    }

    /** True on Settings → bm-relay for someone who may configure it. */
    private static function on_page(?string $hook = null): bool
    {
        if ($hook === null) {
            $screen = function_exists('get_current_screen') ? get_current_screen() : null;
            $hook = $screen ? (string) $screen->id : '';
        }
        return $hook === 'settings_page_' . BM_Relay_Admin::SLUG && current_user_can('manage_options');
    }

    /**
     * Enqueues the doctor's script on the settings page only.
     *
     * @param string $hook the admin page's hook suffix
     */
    public static function enqueue($hook): void
    {
        if (!self::on_page((string) $hook)) {
            return;
        }
        wp_enqueue_script(self::HANDLE, plugins_url('assets/bm-doctor.js', BM_RELAY_FILE), [], BM_Relay_Shortcode::asset_version('bm-doctor.js'), true);
    }

    /** The versioned module URLs (as on the chat page), so bm-doctor.js gets the bm-client.js of this version. */
    public static function import_map(): void
    {
        if (self::on_page()) {
            BM_Relay_Shortcode::print_import_map();
        }
    }

    /**
     * The strings of the doctor's script, translatable; passed in the
     * container's `data-config` as the chat page passes its own.
     *
     * @return array<string,string>
     */
    public static function strings(): array
    {
        return [
            'websocket' => __('WebSocket to the relay', 'bm-relay'),
            'stream' => __('Streaming fallback (HTTP)', 'bm-relay'),
            'polling' => __('WordPress polling', 'bm-relay'),
            'running' => __('testing…', 'bm-relay'),
            'works' => __('works', 'bm-relay'),
            /* translators: %s: why a connection test failed, e.g. "timed out" */
            'fails' => __('fails: %s', 'bm-relay'),
            /* translators: %d: milliseconds */
            'ms' => __('%d ms', 'bm-relay'),
            'refused' => __('refused (no connection)', 'bm-relay'),
            'timeout' => __('timed out', 'bm-relay'),
            'blocked_upgrade' => __('upgrade blocked: HTTP reaches the relay, WebSocket does not (a proxy or firewall in between)', 'bm-relay'),
            /* translators: %s: an HTTP status code, e.g. 404 */
            'http' => __('HTTP status %s', 'bm-relay'),
            'noUrl' => __('no relay WebSocket URL is set', 'bm-relay'),
            'noStreamUrl' => __('no stream URL: the WebSocket URL does not end in /ws', 'bm-relay'),
            /* translators: %s: why WordPress gave no token, e.g. "HTTP status 503" */
            'noToken' => __('WordPress gave no relay token (%s)', 'bm-relay'),
        ];
    }

    /** The doctor's section of the settings page. */
    public static function render(): void
    {
        if (!current_user_can('manage_options')) {
            return;
        }
        $config = [
            'rest' => esc_url_raw(rest_url(BM_Relay_REST::NS . '/')),
            'nonce' => wp_create_nonce('wp_rest'),
            'strings' => self::strings(),
        ];
        printf('<h2>%s</h2>', esc_html__('Connection doctor', 'bm-relay'));
        printf(
            '<div id="bm-relay-doctor" data-config="%s"><p>%s</p>',
            esc_attr((string) wp_json_encode($config)),
            esc_html__(
                'Tries each way a chat page gets live updates from this browser and shows which works and how fast. Run it on your users\' network: a proxy blocking WebSocket shows only from there.',
                'bm-relay'
            )
        );
        printf(
            '<table class="widefat striped" id="bm-relay-doctor-results"><thead><tr><th>%s</th><th>%s</th><th>%s</th></tr></thead><tbody>',
            esc_html__('Way', 'bm-relay'),
            esc_html__('Result', 'bm-relay'),
            esc_html__('Time', 'bm-relay')
        );
        foreach (['websocket', 'stream', 'polling'] as $way) {
            printf(
                '<tr data-way="%1$s"><th scope="row">%2$s</th><td class="bm-doctor-result">—</td><td class="bm-doctor-ms">—</td></tr>',
                esc_attr($way),
                esc_html(self::strings()[$way])
            );
        }
        echo '</tbody></table><p>';
        printf('<button type="button" class="button" id="bm-relay-doctor-run">%s</button>', esc_html__('Run the connection doctor', 'bm-relay'));
        echo '</p><noscript>' . esc_html__('The connection doctor needs JavaScript.', 'bm-relay') . '</noscript></div>';
    }
}
