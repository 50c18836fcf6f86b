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
        'bm_relay_url' => '',            // server side: where WordPress pushes (http://host:port)
        'bm_relay_public_url' => '',     // browser side: the WebSocket URL (wss://…/v1/ws)
        'bm_relay_admin_url' => '',      // relay admin listener, for /healthz on the settings page
        'bm_relay_site' => '',
        'bm_relay_mode' => 'sync',       // sync gives `online` (delivery marks); async never waits
        'bm_relay_retention_days' => 0,  // 0 keeps messages forever
        'bm_relay_max_length' => 5000,   // characters per message
    ];

    /** Option that holds a generated secret when no other source is set. */
    public const SECRET_OPTION = 'bm_relay_secret';

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

    /** Where the secret comes from: constant, ini, option or none. */
    public static function secret_source(): string
    {
        if (defined('BM_RELAY_SECRET') && BM_RELAY_SECRET !== '') {
            return 'constant';
        }
        if (self::ini('secret_file') !== '' || self::ini('secret') !== '') {
            return 'ini';
        }
        return get_option(self::SECRET_OPTION, '') !== '' ? 'option' : 'none';
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
            add_option(self::SECRET_OPTION, $secret, '', false);
        }
        if ((string) get_option('bm_relay_site', '') === '' && self::ini('site') === '') {
            update_option('bm_relay_site', self::default_site());
        }
    }

    /** A valid site id derived from the home URL's host. */
    public static function default_site(): string
    {
        $host = strtolower((string) wp_parse_url(home_url(), PHP_URL_HOST));
        $site = preg_replace('/[^a-z0-9._-]/', '-', $host);
        $site = ltrim((string) $site, '._-');
        return substr($site !== '' ? $site : 'wordpress', 0, 64);
    }

    /**
     * Pushes the options into bm_configure() for this request. Options left
     * empty keep the INI values, so a sysadmin's php.ini still rules.
     */
    public static function apply(): void
    {
        $opts = [];
        foreach (['url' => 'bm_relay_url', 'site' => 'bm_relay_site', 'mode' => 'bm_relay_mode'] as $key => $option) {
            $value = (string) self::get($option);
            if ($value !== '') {
                $opts[$key] = $value;
            }
        }
        $source = self::secret_source();
        if ($source === 'constant') {
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
        return (string) ($stats['mode'] ?? self::get('bm_relay_mode'));
    }
}
