<?php

/**
 * Pure-PHP fallback of the bm_relay extension: config.
 *
 * Settings: INI keys (read with get_cfg_var, the extension being absent), bm_configure() overrides of this request, validation, and the site secret (a secret file is read once per request).
 * Reads side by side with `ext/src/config.rs, ini.rs`.
 *
 * @package bm-relay
 * @internal
 */

/**
 * Settings (fallback).
 *
 * @internal
 */
final class BM_Relay_Fallback_Config
{
    /** Timeouts are 0/1 … 600000 ms, queue 1 … 1000000 events. */
    public const MAX_TIMEOUT_MS = 600000;

    public const MAX_QUEUE = 1000000;

    /** Most URLs in bm_relay.url (a comma-separated list), as the extension. */
    public const MAX_URLS = 16;

    /** INI keys and defaults, identical to the extension's. */
    public const KEYS = [
        'url' => '',
        'site' => '',
        'secret_file' => '',
        'secret' => '',
        'mode' => 'async',
        'timeout_ms' => '2000',
        'connect_timeout_ms' => '500',
        'queue_size' => '10000',
        'flush_timeout_ms' => '500',
        'protocol' => '1',
    ];

    /** @var list<array{0:string,1:string}> bm_configure() overrides of this request, in order */
    private static $overrides = [];

    /** @var array<string,string> secret files read in this request: path => their 32 bytes */
    private static $secret_files = [];

    /**
     * The raw settings of this request: INI (get_cfg_var, as the extension
     * is absent) or defaults, then the bm_configure() overrides in order.
     *
     * @param list<array{0:string,1:string}> $extra
     * @return array<string,string>
     */
    public static function raw(array $extra = []): array
    {
        $raw = [];
        foreach (self::KEYS as $key => $default) {
            $v = get_cfg_var('bm_relay.' . $key);
            $raw[$key] = is_string($v) ? $v : $default;
        }
        foreach (array_merge(self::$overrides, $extra) as [$key, $value]) {
            if ($key === 'secret') {
                $raw['secret_file'] = '';
            } elseif ($key === 'secret_file') {
                $raw['secret'] = '';
            }
            $raw[$key] = $value;
        }
        return $raw;
    }

    /**
     * Parses bm_relay.url: one URL or a comma-separated list (no empty
     * entry, no URL twice, at most MAX_URLS). Messages name an entry by its
     * position and never echo a rejected URL (it might hold credentials).
     *
     * @return list<string> without trailing slashes, in order
     */
    public static function parse_urls(string $text): array
    {
        $text = trim($text);
        if ($text === '') {
            return [];
        }
        $items = explode(',', $text);
        if (count($items) === 1) {
            return [self::check_url($text, 'bm_relay.url')];
        }
        if (count($items) > self::MAX_URLS) {
            throw new BmRelayException('bm_relay.url lists ' . count($items) . ' URLs, more than ' . self::MAX_URLS);
        }
        $urls = [];
        foreach ($items as $i => $item) {
            $label = sprintf('bm_relay.url (URL %d of %d)', $i + 1, count($items));
            if (trim($item) === '') {
                throw new BmRelayException("$label is empty (separate URLs with one comma)");
            }
            $url = self::check_url($item, $label);
            if (in_array($url, $urls, true)) {
                throw new BmRelayException("$label is listed twice: $url");
            }
            $urls[] = $url;
        }
        return $urls;
    }

    /** Checks one relay URL; returns it without a trailing slash. */
    private static function check_url(string $text, string $label): string
    {
        $text = trim($text);
        if ($text === '') {
            return '';
        }
        $bad = static function (string $why) use ($label): BmRelayException {
            return new BmRelayException("$label $why (expected http://host:port or https://host)");
        };
        $u = parse_url($text);
        if ($u === false || !isset($u['scheme'])) {
            throw $bad('is not a URL');
        }
        if ($u['scheme'] !== 'http' && $u['scheme'] !== 'https') {
            throw $bad('must start with http:// or https://');
        }
        if (($u['host'] ?? '') === '') {
            throw $bad('has no host');
        }
        if (isset($u['user']) || isset($u['pass'])) {
            throw $bad('must not contain credentials');
        }
        if (isset($u['query']) || isset($u['fragment'])) {
            throw $bad('must not have a query or fragment');
        }
        return rtrim($text, '/');
    }

    /** A site id check with the protocol's reasons; null when valid. */
    private static function site_problem(string $s): ?string
    {
        if ($s === '' || strlen($s) > 64) {
            return 'must be 1 to 64 characters';
        }
        if (!preg_match('/^[a-z0-9]/', $s)) {
            return 'must start with a-z or 0-9';
        }
        if (!preg_match('/^[a-z0-9._-]+$/D', $s)) {
            return 'may only hold a-z 0-9 . _ -';
        }
        return null;
    }

    /** Milliseconds setting min … 600000. */
    private static function ms(array $raw, string $key, int $min): int
    {
        $t = trim($raw[$key]);
        if (!preg_match('/^\d{1,7}$/D', $t) || (int) $t < $min || (int) $t > self::MAX_TIMEOUT_MS) {
            throw new BmRelayException("bm_relay.$key must be an integer number of milliseconds $min..=" . self::MAX_TIMEOUT_MS);
        }
        return (int) $t;
    }

    /**
     * Validated settings.
     *
     * @param array<string,string> $raw
     * @return array{urls:list<string>,site:string,mode:string,timeout_ms:int,connect_timeout_ms:int,queue_size:int,flush_timeout_ms:int,protocol:int}
     */
    public static function settings(array $raw): array
    {
        $urls = self::parse_urls($raw['url']);
        $site = trim($raw['site']);
        if ($site !== '' && ($why = self::site_problem($site)) !== null) {
            throw new BmRelayException("bm_relay.site: site id is malformed: $why");
        }
        $mode = trim($raw['mode']);
        if ($mode === '') {
            $mode = 'async';
        }
        if ($mode !== 'async' && $mode !== 'sync') {
            throw new BmRelayException("bm_relay.mode must be 'async' or 'sync'");
        }
        $protocol = trim($raw['protocol']);
        if ($protocol !== '1' && $protocol !== '2') {
            throw new BmRelayException('bm_relay.protocol must be 1 or 2');
        }
        $q = trim($raw['queue_size']);
        if (!preg_match('/^\d{1,7}$/D', $q) || (int) $q < 1 || (int) $q > self::MAX_QUEUE) {
            throw new BmRelayException('bm_relay.queue_size must be an integer 1..=' . self::MAX_QUEUE);
        }
        return [
            'urls' => $urls,
            'site' => $site,
            'mode' => $mode,
            'timeout_ms' => self::ms($raw, 'timeout_ms', 1),
            'connect_timeout_ms' => self::ms($raw, 'connect_timeout_ms', 1),
            'queue_size' => (int) $q,
            'flush_timeout_ms' => self::ms($raw, 'flush_timeout_ms', 0),
            'protocol' => (int) $protocol,
        ];
    }

    /** The 32-byte site secret: secret_file (preferred) or secret. */
    public static function load_secret(array $raw): string
    {
        $form = '32 bytes written as base64url without padding, 43 characters';
        $file = trim($raw['secret_file']);
        if ($file !== '' && isset(self::$secret_files[$file])) {
            // Read once per request, like the extension (not at every key).
            return self::$secret_files[$file];
        }
        if ($file !== '') {
            if (!is_file($file)) {
                throw new BmRelayException("bm_relay.secret_file: cannot read '$file': no such file");
            }
            $text = @file_get_contents($file);
            if ($text === false) {
                throw new BmRelayException("bm_relay.secret_file: cannot read '$file': permission denied");
            }
            $key = BM_Relay_Fallback_Keys::b64u_decode(trim($text));
            if ($key === null || strlen($key) !== 32) {
                throw new BmRelayException("bm_relay.secret_file: '$file' does not hold a site secret ($form)");
            }
            return self::$secret_files[$file] = $key;
        }
        if (trim($raw['secret']) !== '') {
            $key = BM_Relay_Fallback_Keys::b64u_decode(trim($raw['secret']));
            if ($key === null || strlen($key) !== 32) {
                throw new BmRelayException("bm_relay.secret is not a site secret ($form)");
            }
            return $key;
        }
        throw new BmRelayException('no site secret configured: set bm_relay.secret_file (preferred) or bm_relay.secret');
    }

    /**
     * Validates bm_configure() options and stores them for this request.
     * A null value restores the INI value.
     */
    public static function configure($opts): void
    {
        if (!is_array($opts)) {
            throw new BmRelayException('opts must be an array, got ' . BM_Relay_Fallback_Values::type_name($opts));
        }
        $new = [];
        $restore = [];
        foreach ($opts as $key => $value) {
            if (is_int($key)) {
                throw new BmRelayException("opts must have string keys, got the int key $key");
            }
            if (!array_key_exists($key, self::KEYS)) {
                throw new BmRelayException("unknown setting '$key' (known: " . implode(', ', array_keys(self::KEYS)) . ')');
            }
            if ($value === null) {
                $restore[] = $key;
            } elseif (in_array($key, ['url', 'site', 'secret', 'secret_file', 'mode'], true)) {
                if (!is_string($value)) {
                    throw new BmRelayException("'$key' must be a string, got " . BM_Relay_Fallback_Values::type_name($value));
                }
                $new[] = [$key, $value];
            } else {
                $new[] = [$key, (string) BM_Relay_Fallback_Values::int_of($value, "'$key'", 'an integer')];
            }
        }
        foreach ($restore as $key) {
            $v = get_cfg_var('bm_relay.' . $key);
            $new[] = [$key, is_string($v) ? $v : self::KEYS[$key]];
        }
        $raw = self::raw($new);
        self::settings($raw);
        foreach ($new as [$key]) {
            if ($key === 'secret' || $key === 'secret_file') {
                self::load_secret($raw);
                break;
            }
        }
        foreach ($new as $pair) {
            self::$overrides[] = $pair;
        }
    }

    /** Validated settings of this request. */
    public static function current(): array
    {
        return self::settings(self::raw());
    }

    /** True when this request speaks protocol v2 (pseudonyms, §3.2). */
    public static function v2(): bool
    {
        return self::current()['protocol'] === 2;
    }

    /** The configured site id; throws when unset. */
    public static function site(): string
    {
        $site = self::current()['site'];
        if ($site === '') {
            throw new BmRelayException('bm_relay.site is not set');
        }
        return $site;
    }

    /**
     * The relay base URLs, in the configured order; throws when unset.
     *
     * @return non-empty-list<string>
     */
    public static function urls(): array
    {
        $urls = self::current()['urls'];
        if (!$urls) {
            throw new BmRelayException('bm_relay.url is not set');
        }
        return $urls;
    }

    /** The site secret of this request. */
    public static function secret(): string
    {
        return self::load_secret(self::raw());
    }
}
