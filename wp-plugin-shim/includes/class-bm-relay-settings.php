<?php

/**
 * Settings and the site secret.
 *
 * The secret comes, in order of preference, from the `BM_RELAY_SECRET`
 * constant (wp-config.php), from the `bm_relay.secret_file` /
 * `bm_relay.secret` INI keys read by the extension or fallback themselves,
 * and only otherwise from an option generated on activation. The first two
 * keep it out of the database (and out of database backups).
 *
 * On multisite the same sources hold the *network* secret (the option is a
 * network option, `bmr_network_secret`), and each blog gets its own site
 * secret `HKDF(network_secret, "blog/{blog_id}")` (docs/PROTOCOL.md §3.1),
 * handed to bm_configure() for the current blog (again after every
 * switch_to_blog()). Blogs share no key.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Reads the plugin's options and hands them to bm_configure().
 */
final class BM_Relay_Settings
{
    /** Option names and defaults. */
    public const DEFAULTS = [
        'bmr_url' => '',            // server side: where WordPress pushes (http://host:port)
        'bmr_public_url' => '',     // browser side: the WebSocket URL (wss://…/v1/ws)
        'bmr_admin_url' => '',      // relay admin listener, for /healthz on the settings page
        'bmr_site' => '',
        'bmr_mode' => '',           // '' = auto: async with the extension, sync with the fallback; sync gives `online` (who had a socket; browsers acknowledge delivery themselves)
        'bmr_retention_days' => 0,  // 0 keeps messages forever
        'bmr_max_length' => 5000,   // characters per message
    ];

    /** Option that holds a generated secret when no other source is set. */
    public const SECRET_OPTION = 'bmr_secret';

    /** Network option (multisite) that holds a generated network secret. */
    public const NETWORK_SECRET_OPTION = 'bmr_network_secret';

    /** @var string|null last configuration error, for the admin page */
    public static $error = null;

    /**
     * An option's value with its default.
     *
     * @return mixed
     */
    public static function get(string $name)
    {
        return get_option($name, self::DEFAULTS[$name] ?? '');
    }

    /**
     * Where the secret comes from: constant, ini, option or none (on
     * multisite: network-constant, network-ini, network-option or none).
     */
    public static function secret_source(): string
    {
        $prefix = is_multisite() ? 'network-' : '';
        if (defined('BM_RELAY_SECRET') && BM_RELAY_SECRET !== '') {
            return $prefix . 'constant';
        }
        if (self::ini('secret_file') !== '' || self::ini('secret') !== '') {
            return $prefix . 'ini';
        }
        if (is_multisite()) {
            return get_site_option(self::NETWORK_SECRET_OPTION, '') !== '' ? 'network-option' : 'none';
        }
        return get_option(self::SECRET_OPTION, '') !== '' ? 'option' : 'none';
    }

    /**
     * The network secret's 32 bytes (multisite), from the first source set;
     * null when none is or it is not a secret. Never logged or shown.
     */
    public static function network_secret(): ?string
    {
        $text = '';
        switch (self::secret_source()) {
            case 'network-constant':
                $text = (string) BM_RELAY_SECRET;
                break;
            case 'network-ini':
                $file = self::ini('secret_file');
                if ($file !== '') {
                    $read = is_readable($file) ? file_get_contents($file) : false;
                    $text = $read === false ? '' : $read;
                } else {
                    $text = self::ini('secret');
                }
                break;
            case 'network-option':
                $text = (string) get_site_option(self::NETWORK_SECRET_OPTION, '');
                break;
        }
        $text = trim($text);
        if (!preg_match('/^[A-Za-z0-9_-]{43}$/D', $text)) {
            return null;
        }
        $raw = base64_decode(strtr($text, '-_', '+/') . '=', true);
        return is_string($raw) && strlen($raw) === 32 ? $raw : null;
    }

    /**
     * A blog's site secret, base64url: HKDF-SHA256 of the network secret
     * with salt `bm-relay/v1` and info `blog/{blog_id}` (PROTOCOL.md §3.1).
     */
    public static function blog_secret(string $network_secret, int $blog_id): string
    {
        $raw = hash_hkdf('sha256', $network_secret, 32, 'blog/' . $blog_id, 'bm-relay/v1');
        return rtrim(strtr(base64_encode($raw), '+/', '-_'), '=');
    }

    /**
     * True when bm_push() comes from the native extension (internal
     * function), false when the pure-PHP fallback defined it.
     */
    public static function native(): bool
    {
        return function_exists('bm_push') && (new ReflectionFunction('bm_push'))->isInternal();
    }

    /** The extension's version string, or null with the fallback. */
    public static function native_version(): ?string
    {
        if (!self::native()) {
            return null;
        }
        $ext = (new ReflectionFunction('bm_push'))->getExtension();
        return $ext ? (string) $ext->getVersion() : '';
    }

    /** A bm_relay.* INI value whichever implementation is active. */
    public static function ini(string $key): string
    {
        $v = self::native() ? ini_get('bm_relay.' . $key) : get_cfg_var('bm_relay.' . $key);
        return is_string($v) ? $v : '';
    }

    /** On activation: generate and store a secret unless one is provided. */
    public static function ensure_secret(): void
    {
        if (self::secret_source() === 'none') {
            $secret = rtrim(strtr(base64_encode(random_bytes(32)), '+/', '-_'), '=');
            if (is_multisite()) {
                add_site_option(self::NETWORK_SECRET_OPTION, $secret);
            } else {
                add_option(self::SECRET_OPTION, $secret, '', false);
            }
        }
        if ((string) get_option('bmr_site', '') === '' && self::ini('site') === '') {
            update_option('bmr_site', self::default_site());
        }
    }

    /** A valid site id derived from the home URL's host. */
    public static function default_site(): string
    {
        $host = strtolower((string) wp_parse_url(home_url(), PHP_URL_HOST));
        $site = preg_replace('/[^a-z0-9._-]/', '-', $host);
        $site = ltrim((string) $site, '._-');
        $site = $site !== '' ? $site : 'wordpress';
        if (is_multisite() && !is_main_site()) {
            // Blogs of a subdirectory network share the host: the blog id
            // keeps each one a site of its own on the relay.
            $suffix = '-' . get_current_blog_id();
            return substr($site, 0, 64 - strlen($suffix)) . $suffix;
        }
        return substr($site, 0, 64);
    }

    /**
     * Checks the relay push URL option: one `http://` or `https://` URL or
     * a comma-separated list of them, as `bm_relay.url` takes it (the
     * extension and the fallback fail over from one to the next; see
     * docs/PHP-API.md). Each needs a host and has no credentials, query or
     * fragment; no empty entry, no URL twice, at most 16. Returns the list
     * normalized (trimmed, no trailing slashes, joined with ",") and null,
     * or null and what is wrong (naming the entry, never echoing it).
     *
     * @return array{0:?string,1:?string}
     */
    public static function check_relay_urls(string $text): array
    {
        $text = trim($text);
        if ($text === '') {
            return ['', null];
        }
        $items = explode(',', $text);
        if (count($items) > 16) {
            /* translators: %d: how many URLs were given */
            return [null, sprintf(__('The relay push URL lists %d URLs, more than 16.', 'bm-relay'), count($items))];
        }
        $urls = [];
        foreach ($items as $i => $item) {
            $item = trim($item);
            /* translators: 1: position of the URL in the list, 2: number of URLs */
            $which = count($items) === 1 ? __('The relay push URL', 'bm-relay') : sprintf(__('URL %1$d of %2$d of the relay push URL', 'bm-relay'), $i + 1, count($items));
            $u = $item === '' ? false : parse_url($item);
            if ($item === '') {
                $why = __('is empty (separate URLs with one comma)', 'bm-relay');
            } elseif ($u === false || !in_array($u['scheme'] ?? '', ['http', 'https'], true)) {
                $why = __('must start with http:// or https://', 'bm-relay');
            } elseif (($u['host'] ?? '') === '') {
                $why = __('has no host', 'bm-relay');
            } elseif (isset($u['user']) || isset($u['pass'])) {
                $why = __('must not contain credentials', 'bm-relay');
            } elseif (isset($u['query']) || isset($u['fragment'])) {
                $why = __('must not have a query or fragment', 'bm-relay');
            } elseif (in_array(rtrim($item, '/'), $urls, true)) {
                $why = __('is listed twice', 'bm-relay');
            } else {
                $urls[] = rtrim($item, '/');
                continue;
            }
            return [null, $which . ' ' . $why . '.'];
        }
        return [implode(',', $urls), null];
    }

    /**
     * Pushes the options into bm_configure() for this request. Options left
     * empty keep the INI values, so a sysadmin's php.ini still rules.
     */
    public static function apply(): void
    {
        $opts = [];
        foreach (['url' => 'bmr_url', 'site' => 'bmr_site', 'mode' => 'bmr_mode'] as $key => $option) {
            $value = (string) self::get($option);
            if ($value !== '') {
                $opts[$key] = $value;
            }
        }
        if (!isset($opts['mode'])) {
            // Auto: the extension sends from a background thread, so async
            // costs the request nothing; the fallback's async queue is sent
            // at request end, so there sync (bounded per request) is kept.
            $opts['mode'] = self::native() ? 'async' : 'sync';
        }
        // Protocol 2: the API puts pseudonyms in all it sends the relay.
        $opts['protocol'] = BM_Relay_Ids::protocol();
        $source = self::secret_source();
        if (is_multisite()) {
            $network = self::network_secret();
            if ($network !== null) {
                $opts['secret'] = self::blog_secret($network, get_current_blog_id());
            } else {
                // No usable network secret (none set, or malformed): the
                // INI holds none either (it is one of the sources read
                // above), so this blog stays unconfigured.
                self::$error = __('No usable network secret is configured.', 'bm-relay');
            }
        } elseif ($source === 'constant') {
            $opts['secret'] = (string) BM_RELAY_SECRET;
        } elseif ($source === 'option') {
            $opts['secret'] = (string) get_option(self::SECRET_OPTION);
        }
        try {
            bm_configure($opts);
            self::$error = null;
        } catch (BmRelayException $e) {
            self::$error = $e->getMessage();
        }
    }

    /** True when the relay can be used at all (site, url and secret known). */
    public static function ready(): bool
    {
        try {
            bm_relay_key();
            $stats = bm_stats();
            return ($stats['url'] ?? '') !== '' && ($stats['site'] ?? '') !== '';
        } catch (BmRelayException $e) {
            return false;
        }
    }

    /** The configured push mode as bm_stats() reports it. */
    public static function mode(): string
    {
        $stats = bm_stats();
        return (string) ($stats['mode'] ?? self::get('bmr_mode'));
    }
}
