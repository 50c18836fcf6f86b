<?php

/**
 * The chat page's script translations. The page is ES modules loaded
 * through an import map (BM_Relay_Shortcode), and WordPress attaches the
 * translation JSON of wp_set_script_translations() only to a registered
 * classic script: so [bm_chat] also enqueues the classic handle
 * `bm-relay-i18n` (assets/bm-i18n.js, depending on `wp-i18n`), WordPress
 * prints that JSON's locale data into `wp.i18n` for the text domain
 * `bm-relay`, and the modules take their strings from there
 * (assets/chat/strings.js, scriptTranslations()). PHP's own translations
 * (the shortcode's config strings, through the .mo) still apply wherever
 * the JSON has none.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Script translations of the chat page.
 */
final class BM_Relay_Page
{
    /** The classic script handle the translations hang on. */
    public const I18N_HANDLE = 'bm-relay-i18n';

    /** Hooks the handle onto every [bm_chat] render. */
    public static function register(): void
    {
        add_action('bm_relay_chat_shortcode', [self::class, 'enqueue_i18n']);
    }

    /**
     * Enqueues the translations' handle, in the footer beside the chat
     * module. WordPress looks for, in order: the plugin's own
     * `languages/bm-relay-LOCALE-bm-relay-i18n.json`, then the language
     * pack's `wp-content/languages/plugins/bm-relay-LOCALE-MD5.json` where
     * MD5 is md5('assets/bm-i18n.js') (what `wp i18n make-json` names it).
     * Cost: one small script and, with a translation, its JSON inline.
     */
    public static function enqueue_i18n(): void
    {
        wp_enqueue_script(self::I18N_HANDLE, plugins_url('assets/bm-i18n.js', BM_RELAY_FILE), ['wp-i18n'], BM_Relay_Shortcode::asset_version('bm-i18n.js'), true);
        wp_set_script_translations(self::I18N_HANDLE, 'bm-relay', BM_RELAY_DIR . 'languages');
    }
}
