<?php

/**
 * The `[bm_chat]` shortcode: the chat page.
 *
 * It prints a mount element with the configuration the browser needs (REST
 * root, nonce, user, translated strings) and loads the chat page
 * (assets/bm-chat.js, an ES module importing bm-client.js) and its styles.
 * WordPress 6.1 has no script-module API, so the script tag gets
 * `type="module"` through the `script_loader_tag` filter.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Shortcode registration and asset hand-off.
 */
final class BM_Relay_Shortcode
{
    /** Script and style handle of the chat page. */
    public const HANDLE = 'bm-relay-chat';

    /** Hooks the shortcode in. */
    public static function register(): void
    {
        add_shortcode('bm_chat', [self::class, 'render']);
        add_filter('script_loader_tag', [self::class, 'module_tag'], 10, 3);
        add_action('template_redirect', [self::class, 'native_emoji']);
        add_action('wp_enqueue_scripts', [self::class, 'enqueue_head']);
        add_action('wp_head', [self::class, 'import_map'], 1);
    }

    /** True on a singular page whose content holds [bm_chat]. */
    private static function page_has_chat(): bool
    {
        $post = get_queried_object();
        return $post instanceof WP_Post && has_shortcode($post->post_content, 'bm_chat');
    }

    /**
     * Version of one asset: the plugin's version and the file's time, so a
     * changed file gets a new URL.
     */
    public static function asset_version(string $file): string
    {
        $time = @filemtime(BM_RELAY_DIR . 'assets/' . $file);
        return BM_RELAY_VERSION . '.' . (string) ($time ?: 0);
    }

    /**
     * On a page holding [bm_chat], the stylesheet goes in the head (no
     * flash of unstyled chat, valid markup); render() still enqueues it for
     * a shortcode found only while the body is built.
     */
    public static function enqueue_head(): void
    {
        if (self::page_has_chat() && file_exists(BM_RELAY_DIR . 'assets/bm-chat.css')) {
            wp_enqueue_style(self::HANDLE, plugins_url('assets/bm-chat.css', BM_RELAY_FILE), [], self::asset_version('bm-chat.css'));
        }
    }

    /**
     * An import map giving the modules the page script imports
     * (bm-client.js, bm-crypto.js through it, bm-wire.js, and the page's
     * own modules in assets/chat/) versioned URLs: after a plugin update
     * the browser cannot pair a new bm-chat.js with a cached old
     * bm-client.js or chat/store.js. (WordPress 6.1 has no script-module
     * API; this works there and on newer releases.)
     */
    public static function import_map(): void
    {
        if (self::page_has_chat()) {
            self::print_import_map();
        }
    }

    /**
     * Every module the chat page and the connection doctor import, relative
     * to assets/: the shared client modules and each of assets/chat/*.js
     * (the page's modules by concern, imported by bm-chat.js). The folder is
     * read, not listed here, so a feature's new module is versioned as soon
     * as it ships in the plugin zip (which packs the whole plugin folder);
     * cost: one directory read and one stat per module per chat page view.
     *
     * @return list<string>
     */
    public static function module_files(): array
    {
        $files = ['bm-client.js', 'bm-crypto.js', 'bm-wire.js', 'bm-shared.js', 'bm-shared-worker.js'];
        $chat = glob(BM_RELAY_DIR . 'assets/chat/*.js');
        foreach (is_array($chat) ? $chat : [] as $path) {
            $files[] = 'chat/' . basename($path);
        }
        return $files;
    }

    /** The import map itself (the chat page's head, and the settings page's for the connection doctor). */
    public static function print_import_map(): void
    {
        $imports = [];
        foreach (self::module_files() as $file) {
            $url = plugins_url('assets/' . $file, BM_RELAY_FILE);
            $imports[$url] = add_query_arg('ver', self::asset_version($file), $url);
        }
        printf(
            '<script type="importmap" id="bm-relay-importmap">%s</script>' . "\n",
            wp_json_encode(['imports' => $imports], JSON_UNESCAPED_SLASHES | JSON_HEX_TAG | JSON_HEX_AMP)
        );
    }

    /**
     * On a page holding [bm_chat], leaves emoji to the browser: WordPress's
     * emoji script rewrites every text node the chat adds (messages,
     * reactions) into images from a CDN, which breaks the page's text and
     * does not load on a private or offline site.
     */
    public static function native_emoji(): void
    {
        $post = get_queried_object();
        if ($post instanceof WP_Post && has_shortcode($post->post_content, 'bm_chat')) {
            remove_action('wp_head', 'print_emoji_detection_script', 7);
            remove_action('wp_print_styles', 'print_emoji_styles');
        }
    }

    /**
     * Marks the plugin's module scripts as ES modules (they import
     * ./bm-client.js): the chat page, the connection doctor, the settings
     * page's verdict and the live unread count. One filter for all: a new
     * module script adds its handle here. Modules are deferred and strict
     * by nature; nothing else changes.
     *
     * @param string $tag    the `<script>` markup WordPress built
     * @param string $handle script handle
     * @param string $src    script URL
     */
    public static function module_tag($tag, $handle, $src): string
    {
        if (!in_array($handle, [self::HANDLE, BM_Relay_Doctor::HANDLE, BM_Relay_Health::HANDLE, BM_Relay_Notify::HANDLE], true)) {
            return (string) $tag;
        }
        return sprintf('<script type="module" src="%s" id="%s-js"></script>' . "\n", esc_url((string) $src), esc_attr((string) $handle));
    }

    /**
     * The page's strings, translatable with the plugin's text domain (the
     * script has English defaults for anything missing).
     *
     * @return array<string,string|array{forms: list<string>, index: list<int>}>
     */
    public static function strings(): array
    {
        return [
            'title' => __('Messages', 'bm-relay'),
            'conversations' => __('Conversations', 'bm-relay'),
            'newConversation' => __('New conversation', 'bm-relay'),
            'searchPeople' => __('Search people', 'bm-relay'),
            'searchHint' => __('Type at least two letters of a name.', 'bm-relay'),
            'noPeople' => __('Nobody found.', 'bm-relay'),
            /* translators: %s: a person's name */
            'add' => __('Add %s', 'bm-relay'),
            /* translators: %s: a person's name */
            'removeChosen' => __('Remove %s', 'bm-relay'),
            'subject' => __('Subject (optional)', 'bm-relay'),
            'firstMessage' => __('First message (optional)', 'bm-relay'),
            'create' => __('Start conversation', 'bm-relay'),
            'cancel' => __('Cancel', 'bm-relay'),
            'noThreads' => __('No conversations yet.', 'bm-relay'),
            'pickThread' => __('Choose a conversation, or start a new one.', 'bm-relay'),
            'unread' => self::plural(static fn(int $n): string =>
                /* translators: %d: number of unread messages in a conversation */
                _n('%d unread message', '%d unread messages', $n, 'bm-relay')),
            'online' => __('online', 'bm-relay'),
            'offline' => __('offline', 'bm-relay'),
            'back' => __('Back to conversations', 'bm-relay'),
            'loadEarlier' => __('Load earlier messages', 'bm-relay'),
            'message' => __('Message', 'bm-relay'),
            'send' => __('Send', 'bm-relay'),
            'sending' => __('Sending…', 'bm-relay'),
            'sent' => __('Sent', 'bm-relay'),
            'delivered' => __('Delivered', 'bm-relay'),
            'read' => __('Read', 'bm-relay'),
            /* translators: in a group conversation, under a message of yours: 1: how many members' browsers received it, 2: how many other members there are */
            'deliveredToOf' => __('Delivered to %1$d of %2$d', 'bm-relay'),
            /* translators: in a group conversation, under a message of yours: how many members read it */
            'readByCount' => __('Read by %d', 'bm-relay'),
            'failed' => __('Not sent', 'bm-relay'),
            'retry' => __('Retry', 'bm-relay'),
            'edit' => __('Edit', 'bm-relay'),
            'save' => __('Save', 'bm-relay'),
            'del' => __('Delete', 'bm-relay'),
            'confirmDelete' => __('Delete this message?', 'bm-relay'),
            'deleted' => __('Message deleted', 'bm-relay'),
            'edited' => __('edited', 'bm-relay'),
            /* translators: %s: an emoji */
            'react' => __('React with %s', 'bm-relay'),
            'reactions' => __('Reactions', 'bm-relay'),
            /* translators: %s: a person's name */
            'typing' => __('%s is typing…', 'bm-relay'),
            /* translators: 1: a person's name, 2: another person's name */
            'typingTwo' => __('%1$s and %2$s are typing…', 'bm-relay'),
            'typingMany' => self::plural(static fn(int $n): string =>
                /* translators: %d: number of people typing (3 or more) */
                _n('%d person is typing…', '%d people are typing…', $n, 'bm-relay')),
            /* translators: 1: a person's name, 2: the message text */
            'newMessageFrom' => __('New message from %1$s: %2$s', 'bm-relay'),
            'connecting' => __('Connecting…', 'bm-relay'),
            'connected' => __('Connected', 'bm-relay'),
            'connectedStream' => __('Connected (streaming: WebSocket is blocked on this network)', 'bm-relay'),
            'offlinePolling' => __('Offline — checking for messages every few seconds', 'bm-relay'),
            'offlineReconnecting' => __('Offline — reconnecting', 'bm-relay'),
            'closed' => __('Disconnected — reload the page', 'bm-relay'),
            'noRelay' => __('Live updates are not available — checking for messages every few seconds', 'bm-relay'),
            /* translators: %s: conversation title */
            'removed' => __('You are no longer a member of “%s”.', 'bm-relay'),
            /* translators: %s: error message */
            'error' => __('Something went wrong: %s', 'bm-relay'),
            'you' => __('You', 'bm-relay'),
            'someone' => __('Someone', 'bm-relay'),
            /* translators: %s: list of names */
            'members' => __('Members: %s', 'bm-relay'),
            'pinned' => __('Pinned messages', 'bm-relay'),
            'pin' => __('Pin', 'bm-relay'),
            'unpin' => __('Unpin', 'bm-relay'),
            /* translators: %s: the pinned message's text */
            'showPinned' => __('Show pinned message: %s', 'bm-relay'),
            /* translators: %s: the pinned message's text */
            'unpinNamed' => __('Unpin: %s', 'bm-relay'),
            /* translators: 1: a person's name, 2: the message text */
            'pinnedBy' => __('%1$s pinned a message: %2$s', 'bm-relay'),
            /* translators: %s: a person's name */
            'unpinnedBy' => __('%s unpinned a message', 'bm-relay'),
            'pinnedGone' => __('That message is no longer in this conversation.', 'bm-relay'),
            'searchMessages' => __('Search messages', 'bm-relay'),
            'searchButton' => __('Search', 'bm-relay'),
            'searchClose' => __('Close search', 'bm-relay'),
            'searchSearching' => __('Searching…', 'bm-relay'),
            /* translators: %d: how many messages the search found */
            'searchFound' => __('Messages found: %d', 'bm-relay'),
            'searchNone' => __('No messages found.', 'bm-relay'),
            'searchMore' => __('More results', 'bm-relay'),
            'attach' => __('Attach files', 'bm-relay'),
            'attachments' => __('Attachments', 'bm-relay'),
            /* translators: %s: a file name */
            'uploading' => __('Uploading %s', 'bm-relay'),
            /* translators: %s: a file name */
            'removeFile' => __('Remove %s', 'bm-relay'),
            'attachWait' => __('Wait until the files are uploaded.', 'bm-relay'),
            /* translators: 1: a file name, 2: a size such as "2 MB" */
            'attachTooBig' => __('%1$s is too big: this site accepts files up to %2$s.', 'bm-relay'),
            /* translators: %s: an image's file name */
            'openImage' => __('Open %s full size', 'bm-relay'),
            /* translators: 1: a file name, 2: its size such as "12 kB" */
            'fileLink' => __('%1$s (%2$s)', 'bm-relay'),
            'notifyOn' => __('Turn on notifications', 'bm-relay'),
            'notifyLater' => __('Not now', 'bm-relay'),
            /* translators: %s: a person's name */
            'mentionedYou' => __('%s mentioned you', 'bm-relay'),
            /* translators: 1: a person's name, 2: conversation title */
            'notifyFrom' => __('%1$s in %2$s', 'bm-relay'),
            'mentionMark' => __('You were mentioned', 'bm-relay'),
            'mentionList' => __('People in this conversation', 'bm-relay'),
            'addReaction' => __('Add reaction', 'bm-relay'),
        ];
    }

    /**
     * Counts below which the page's plural table is exact; larger counts are
     * looked up as 100 + n % 100 (see plural()).
     */
    public const PLURAL_TABLE = 200;

    /**
     * A count-dependent string for the page, plural-correct in every
     * language: WordPress's own `_n()` (the site's locale, its plural
     * rule, any `ngettext` filter) is asked for each count 0 … 199, and the
     * page gets the distinct results (`forms`) and, per count, which one
     * (`index`). The script needs no wp-i18n (an ES module, and the trimmed
     * current-WordPress build has none) and no plural-rule parser. Counts of
     * 200 and more use the entry of 100 + n % 100: gettext plural rules of
     * WordPress's locales depend on n only through n % 10, n % 100 and
     * comparisons with numbers below 100, which that keeps. Cost: 200 calls
     * of `_n()` per string per page view, ~0.5 KB of config.
     *
     * @param callable(int):string $n_of the `_n()` call, with literal strings so that xgettext (make wp-pot) finds them
     * @return array{forms: list<string>, index: list<int>}
     */
    public static function plural(callable $n_of): array
    {
        $forms = [];
        $index = [];
        for ($n = 0; $n < self::PLURAL_TABLE; $n++) {
            $s = (string) $n_of($n);
            $i = array_search($s, $forms, true);
            if ($i === false) {
                $i = count($forms);
                $forms[] = $s;
            }
            $index[] = (int) $i;
        }
        return ['forms' => $forms, 'index' => $index];
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
            // Where an open tab gets a fresh nonce when its own expired.
            'nonce_url' => esc_url_raw(admin_url('admin-ajax.php?action=rest-nonce')),
            'user' => get_current_user_id(),
            // My own display name: mentions of me are highlighted by it.
            'name' => (string) wp_get_current_user()->display_name,
            'strings' => self::strings() + BM_Relay_Calls::strings(),
            // Largest attachment, so the page refuses a bigger file before uploading it.
            'attach_max' => BM_Relay_Attachments::max_bytes(),
        ];
        $script = BM_RELAY_DIR . 'assets/bm-chat.js';
        if (file_exists($script)) {
            // Each file is versioned by its own time (its imports through
            // the import map printed in the head).
            wp_enqueue_script(self::HANDLE, plugins_url('assets/bm-chat.js', BM_RELAY_FILE), [], self::asset_version('bm-chat.js'), true);
            if (file_exists(BM_RELAY_DIR . 'assets/bm-chat.css')) {
                wp_enqueue_style(self::HANDLE, plugins_url('assets/bm-chat.css', BM_RELAY_FILE), [], self::asset_version('bm-chat.css'));
            }
        }
        /** Lets the site add its own assets and markup. */
        do_action('bm_relay_chat_shortcode', $config, $atts);
        $html = sprintf(
            '<div id="bm-chat" class="bm-chat" data-config="%s"><noscript>%s</noscript></div>',
            esc_attr((string) wp_json_encode($config)),
            esc_html__('The chat needs JavaScript.', 'bm-relay')
        );
        return (string) apply_filters('bm_relay_chat_html', $html, $config, $atts);
    }
}
