<?php

/**
 * The global unread count (issue #16): `GET /bm/v1/unread` (total, unread
 * mentions, per thread), an admin bar item and the `[bm_unread]`
 * shortcode showing it, and the small module that keeps them live on any
 * page (assets/chat/unread.js: it opens the relay client with the user's
 * own connection token and, on any event for them, reads the count again
 * from REST, debounced; no keys needed). The chat page updates the same
 * elements through its own connection (assets/chat/notify.js).
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Unread count: route, admin bar node, shortcode, live script.
 */
final class BM_Relay_Notify
{
    /** Script handle of the live count module. */
    public const HANDLE = 'bm-relay-unread';

    /** Admin bar node id. */
    public const NODE = 'bm-relay-unread';

    /** Object cache group and key of the chat page's URL. */
    private const CACHE = ['bm-relay', 'chat_url'];

    /** Whether a page being built shows a count (the live script and its config are then printed). */
    private static bool $shown = false;

    /** Hooks the route, the admin bar item, the shortcode and the script in. */
    public static function register(): void
    {
        add_action('rest_api_init', [self::class, 'register_routes']);
        add_action('admin_bar_menu', [self::class, 'admin_bar'], 70);
        add_shortcode('bm_unread', [self::class, 'shortcode']);
        add_action('wp_footer', [self::class, 'footer'], 5);
        add_action('admin_footer', [self::class, 'footer'], 5);
        add_action('save_post_page', [self::class, 'forget_chat_url']);
        add_action('deleted_post', [self::class, 'forget_chat_url']);
    }

    /** `GET /bm/v1/unread`, with the chat's permission check (nonce, capability). */
    public static function register_routes(): void
    {
        register_rest_route(BM_Relay_REST::NS, '/unread', [
            ['methods' => 'GET', 'callback' => [self::class, 'rest_unread'], 'permission_callback' => [BM_Relay_REST::class, 'check']],
        ]);
    }

    /** The route's handler. */
    public static function rest_unread(): WP_REST_Response
    {
        return new WP_REST_Response(self::unread(get_current_user_id()));
    }

    /**
     * A user's unread messages: `total` (the sum of their threads' unread
     * counts), `mentions` (unread messages that mention them), `threads`
     * (each thread with either, newest activity first: id, unread,
     * mentions) and `label` (the total in words, in the site's language,
     * for screen readers and tooltips). Two queries.
     *
     * @return array{total:int,mentions:int,threads:list<array{id:int,unread:int,mentions:int}>,label:string}
     */
    public static function unread(int $user): array
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT p.thread_id, p.unread_count FROM {$t['participants']} p JOIN {$t['threads']} th ON th.id = p.thread_id
             WHERE p.user_id = %d AND p.unread_count > 0 ORDER BY th.updated_at DESC, th.id DESC",
            $user
        ));
        $mentions = BM_Relay_Mentions::unread_by_thread($user);
        $threads = [];
        $total = 0;
        foreach ($rows as $r) {
            $id = (int) $r->thread_id;
            $threads[$id] = ['id' => $id, 'unread' => (int) $r->unread_count, 'mentions' => $mentions[$id] ?? 0];
            $total += (int) $r->unread_count;
        }
        foreach ($mentions as $id => $n) {
            $threads[$id] ??= ['id' => $id, 'unread' => 0, 'mentions' => $n];
        }
        return [
            'total' => $total,
            'mentions' => array_sum($mentions),
            'threads' => array_values($threads),
            'label' => self::label($total),
        ];
    }

    /** The count in words ("3 unread messages"), translated. */
    public static function label(int $n): string
    {
        /* translators: %d: number of unread chat messages */
        return sprintf(_n('%d unread message', '%d unread messages', $n, 'bm-relay'), $n);
    }

    /** True when the current user may chat (the REST routes' capability). */
    private static function can_chat(): bool
    {
        return is_user_logged_in() && current_user_can((string) apply_filters('bm_relay_chat_capability', 'read'));
    }

    /**
     * The chat page's URL: the filter `bm_relay_chat_url`, else the first
     * published page whose content holds `[bm_chat` (one LIKE query over
     * the pages, kept in the object cache until a page is saved); '' when
     * there is none (the count is then not a link).
     */
    public static function chat_url(): string
    {
        $url = wp_cache_get(self::CACHE[1], self::CACHE[0]);
        if (!is_string($url)) {
            global $wpdb;
            $id = (int) $wpdb->get_var($wpdb->prepare(
                "SELECT ID FROM {$wpdb->posts} WHERE post_type = 'page' AND post_status = 'publish' AND post_content LIKE %s ORDER BY ID LIMIT 1",
                '%' . $wpdb->esc_like('[bm_chat') . '%'
            ));
            $url = $id ? (string) get_permalink($id) : '';
            wp_cache_set(self::CACHE[1], $url, self::CACHE[0]);
        }
        return (string) apply_filters('bm_relay_chat_url', $url);
    }

    /** A page was saved or a post deleted: the chat page may have moved. */
    public static function forget_chat_url(): void
    {
        wp_cache_delete(self::CACHE[1], self::CACHE[0]);
    }

    /**
     * The count's markup: the number, and its label for screen readers.
     * `data-bm-unread` marks it for the live module; `data-count` (0 hides
     * the bubble) and `data-mentions` for the styles.
     *
     * @param array{total:int,mentions:int,label:string} $u
     */
    private static function count_html(array $u, string $class): string
    {
        return sprintf(
            '<span class="%1$s" data-bm-unread data-count="%2$d" data-mentions="%3$d">'
                . '<span class="bm-unread-count" aria-hidden="true">%2$d</span><span class="screen-reader-text bm-unread-label">%4$s</span></span>',
            esc_attr($class),
            $u['total'],
            $u['mentions'],
            esc_html($u['label'])
        );
    }

    /**
     * The admin bar item "Messages N" for a logged-in user who may chat,
     * linking to the chat page when one is known.
     *
     * @param WP_Admin_Bar $bar
     */
    public static function admin_bar($bar): void
    {
        if (!self::can_chat() || !is_object($bar) || !method_exists($bar, 'add_node')) {
            return;
        }
        $u = self::unread(get_current_user_id());
        $url = self::chat_url();
        $bar->add_node([
            'id' => self::NODE,
            'title' => '<span class="ab-icon dashicons-before dashicons-format-chat" aria-hidden="true"></span><span class="ab-label">'
                . esc_html__('Messages', 'bm-relay') . '</span> ' . self::count_html($u, 'bm-unread-bubble'),
            'href' => $url !== '' ? $url : false,
            'meta' => ['title' => $u['label']],
        ]);
        self::$shown = true;
    }

    /**
     * `[bm_unread]`: "Messages N" linking to the chat page (attribute
     * `label` replaces the word); nothing for a visitor who may not chat.
     *
     * @param array<string,string>|string $atts
     */
    public static function shortcode($atts = []): string
    {
        if (!self::can_chat()) {
            return '';
        }
        $atts = shortcode_atts(['label' => __('Messages', 'bm-relay')], is_array($atts) ? $atts : [], 'bm_unread');
        $u = self::unread(get_current_user_id());
        self::$shown = true;
        $inner = '<span class="bm-unread-text">' . esc_html((string) $atts['label']) . '</span> ' . self::count_html($u, 'bm-unread-bubble');
        $url = self::chat_url();
        return $url !== ''
            ? sprintf('<a class="bm-unread" href="%s">%s</a>', esc_url($url), $inner)
            : sprintf('<span class="bm-unread">%s</span>', $inner);
    }

    /**
     * Where a count was shown, in the footer: its styles, the live
     * module and its configuration (REST root, nonce, the client module's
     * versioned URL). Not on pages whose chat keeps the count itself: the
     * module sees `#bm-chat` and stays idle.
     */
    public static function footer(): void
    {
        // The admin bar may be drawn after this (at the end of the footer,
        // in themes without wp_body_open): it shows the count if it shows.
        if (!(self::$shown || is_admin_bar_showing()) || !self::can_chat()) {
            return;
        }
        $config = [
            'rest' => esc_url_raw(rest_url(BM_Relay_REST::NS . '/')),
            'nonce' => wp_create_nonce('wp_rest'),
            // A fresh nonce for a tab left open past this one's life.
            'nonce_url' => esc_url_raw(admin_url('admin-ajax.php?action=rest-nonce')),
            'user' => get_current_user_id(),
            // Imported by URL (not through an import map, which a page
            // without the chat does not have), versioned like the map does.
            'client' => add_query_arg('ver', BM_Relay_Shortcode::asset_version('bm-client.js'), plugins_url('assets/bm-client.js', BM_RELAY_FILE)),
        ];
        printf(
            '<script type="application/json" id="bm-relay-unread-config">%s</script>' . "\n",
            wp_json_encode($config, JSON_UNESCAPED_SLASHES | JSON_HEX_TAG | JSON_HEX_AMP)
        );
        echo '<style id="bm-relay-unread-css">.bm-unread-bubble{display:inline-block;min-width:1.4em;padding:0 .35em;border-radius:.7em;'
            . 'background:#d63638;color:#fff;font-size:.8em;line-height:1.4;text-align:center}'
            . '.bm-unread-bubble[data-count="0"]{display:none}.bm-unread-bubble:not([data-mentions="0"])::before{content:"@ "}'
            . '#wpadminbar .bm-unread-bubble,#wpadminbar .bm-unread-bubble *{height:18px;line-height:18px;font-size:11px}'
            . '#wpadminbar .bm-unread-bubble{border-radius:9px;padding:0 6px;margin-left:4px;vertical-align:middle}'
            . '#wpadminbar #wp-admin-bar-' . esc_attr(self::NODE) . ' .ab-icon{top:2px}'
            . '.bm-unread .screen-reader-text{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(1px,1px,1px,1px)}</style>' . "\n";
        wp_enqueue_script(self::HANDLE, plugins_url('assets/chat/unread.js', BM_RELAY_FILE), [], BM_Relay_Shortcode::asset_version('chat/unread.js'), true);
    }
}
