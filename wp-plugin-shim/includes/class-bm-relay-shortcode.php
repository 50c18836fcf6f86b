<?php
/**
 * The `[bm_chat]` shortcode: the registration point of the chat page.
 *
 * It prints a mount element with the configuration the browser client needs
 * (REST root, nonce) and enqueues the client script when it is present
 * (assets/bm-chat.js, written with the browser client). The page itself is
 * built by that client.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Shortcode registration and asset hand-off.
 */
final class BM_Relay_Shortcode
{
    /** Hooks the shortcode in. */
    public static function register(): void
    {
        add_shortcode('bm_chat', [self::class, 'render']);
    }

    /**
     * Output of [bm_chat].
     *
     * @param array<string,string>|string $atts
     */
    public static function render($atts = []): string
    {
        if (!is_user_logged_in()) {
            return '<p class="bm-chat-login">' . esc_html__('Please log in to use the chat.', 'bm-relay') . '</p>';
        }
        $config = [
            'rest' => esc_url_raw(rest_url(BM_Relay_REST::NS . '/')),
            'nonce' => wp_create_nonce('wp_rest'),
            'user' => get_current_user_id(),
        ];
        $script = BM_RELAY_DIR . 'assets/bm-chat.js';
        if (file_exists($script)) {
            wp_enqueue_script('bm-relay-chat', plugins_url('assets/bm-chat.js', BM_RELAY_FILE), [], BM_RELAY_VERSION, true);
        }
        /** Lets the chat client add its own assets and markup. */
        do_action('bm_relay_chat_shortcode', $config, $atts);
        $html = sprintf('<div id="bm-chat" class="bm-chat" data-config="%s"></div>', esc_attr((string) wp_json_encode($config)));
        return (string) apply_filters('bm_relay_chat_html', $html, $config, $atts);
    }
}
