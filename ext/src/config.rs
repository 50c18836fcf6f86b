//! Settings: the `bm_relay.*` INI keys, their per-request overrides from
//! `bm_configure()`, and the per-request resolution into keys and a relay
//! target.
//!
//! Values are validated where they are read, with messages that name the
//! key (`bm_relay.timeout_ms: …`). The site secret is read once per request
//! (from `secret_file`, preferred, or `secret`) and turned into the relay
//! and content keys; its text never appears in a message.

use std::sync::Arc;
use std::time::Duration;

use bm_proto::{ContentKey, RelayKey, SiteId, SiteSecret};

use crate::error::{BmError, BmResult};

/// Every setting name, without the `bm_relay.` prefix, with its default:
/// the one list of settings. `bm_configure()` accepts exactly these keys and
/// phpinfo() shows them in this order; the INI entries (`ini.rs`), the
/// sample `ext/bm_relay.ini` (shipped in the Debian package) and the table
/// of docs/PHP-API.md are checked against it by the test
/// `every_copy_of_the_settings_list_matches_keys`, in order and defaults.
pub const KEYS: [(&str, &str); 10] = [
    ("url", ""),
    ("site", ""),
    ("secret_file", ""),
    ("secret", ""),
    ("mode", "async"),
    ("timeout_ms", "2000"),
    ("connect_timeout_ms", "500"),
    ("queue_size", "10000"),
    ("flush_timeout_ms", "500"),
    ("protocol", "1"),
];

/// Longest accepted timeout (10 minutes): anything longer is a typo.
const MAX_TIMEOUT_MS: u64 = 600_000;
/// Largest accepted queue (events).
const MAX_QUEUE: u64 = 1_000_000;

/// How `bm_push` delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Seal, enqueue, return; a background task batches to the relay.
    Async,
    /// Seal and wait for the relay's answer (bounded by `timeout_ms`).
    Sync,
}

impl Mode {
    /// The INI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Sync => "sync",
        }
    }
}

/// The raw text of every setting (INI value or override), before parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSettings {
    values: [String; KEYS.len()],
}

impl RawSettings {
    /// Reads each key with `get` (the INI lookup), falling back to the default.
    pub fn from_lookup(mut get: impl FnMut(&str) -> Option<String>) -> Self {
        let mut s = RawSettings::default();
        for (i, (key, default)) in KEYS.iter().enumerate() {
            s.values[i] = get(&format!("bm_relay.{key}")).unwrap_or_else(|| (*default).to_string());
        }
        s
    }

    fn index(key: &str) -> Option<usize> {
        KEYS.iter().position(|(k, _)| *k == key)
    }

    /// The text of `key`.
    pub fn get(&self, key: &str) -> &str {
        Self::index(key).map(|i| self.values[i].as_str()).unwrap_or("")
    }

    /// Overrides `key`; an unknown key is an error naming it. Setting one of
    /// `secret` / `secret_file` clears the other, so an override always wins
    /// over the INI source of the secret.
    pub fn set(&mut self, key: &str, value: String) -> BmResult<()> {
        let i = Self::index(key).ok_or_else(|| {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            BmError::input(format!("unknown setting '{key}' (known: {})", known.join(", ")))
        })?;
        match key {
            "secret" => self.values[Self::index("secret_file").unwrap_or(i)] = String::new(),
            "secret_file" => self.values[Self::index("secret").unwrap_or(i)] = String::new(),
            _ => {}
        }
        self.values[i] = value;
        Ok(())
    }
}

/// Parsed, validated settings (everything but the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Relay base URLs without trailing slashes, in the configured order;
    /// empty when unset.
    pub urls: Vec<String>,
    /// Site id text, or empty when unset.
    pub site: String,
    /// Delivery mode.
    pub mode: Mode,
    /// Bound on one relay request (sync pushes, each async batch).
    pub timeout: Duration,
    /// Bound on opening a TCP(+TLS) connection to the relay.
    pub connect_timeout: Duration,
    /// Async events that may wait at once in this process.
    pub queue_size: usize,
    /// How long request end waits for the async queue to drain.
    pub flush_timeout: Duration,
    /// Protocol version, 1 or 2 (docs/PROTOCOL.md §3.2): with 2, every
    /// user and thread id the API sends or embeds is mapped to its
    /// pseudonym, and requests and tokens are marked v2.
    pub protocol: u8,
}

fn parse_ms(raw: &RawSettings, key: &str, min: u64) -> BmResult<Duration> {
    let text = raw.get(key).trim();
    match text.parse::<u64>() {
        Ok(v) if (min..=MAX_TIMEOUT_MS).contains(&v) => Ok(Duration::from_millis(v)),
        _ => Err(BmError::input(format!(
            "bm_relay.{key} must be an integer number of milliseconds {min}..={MAX_TIMEOUT_MS}"
        ))),
    }
}

/// Most URLs in `bm_relay.url`.
pub const MAX_URLS: usize = 16;

/// Checks a relay base URL: `http://` or `https://`, a host, no credentials,
/// no query or fragment. Returns it without a trailing slash.
pub fn check_url(text: &str) -> BmResult<String> {
    check_one_url(text, "bm_relay.url")
}

/// Parses `bm_relay.url`: one URL or a comma-separated list of them (each
/// checked by [`check_url`]; no empty entry, no URL twice, at most
/// [`MAX_URLS`]). Messages name the entry by position, never echoing a
/// rejected URL (it might hold credentials).
pub fn parse_urls(text: &str) -> BmResult<Vec<String>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<&str> = text.split(',').collect();
    if items.len() == 1 {
        return Ok(vec![check_url(text)?]);
    }
    if items.len() > MAX_URLS {
        return Err(BmError::input(format!("bm_relay.url lists {} URLs, more than {MAX_URLS}", items.len())));
    }
    let mut urls: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let label = format!("bm_relay.url (URL {} of {})", i + 1, items.len());
        if item.trim().is_empty() {
            return Err(BmError::input(format!("{label} is empty (separate URLs with one comma)")));
        }
        let url = check_one_url(item, &label)?;
        if urls.contains(&url) {
            return Err(BmError::input(format!("{label} is listed twice: {url}")));
        }
        urls.push(url);
    }
    Ok(urls)
}

fn check_one_url(text: &str, label: &str) -> BmResult<String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(String::new());
    }
    let bad = |why: &str| BmError::input(format!("{label} {why} (expected http://host:port or https://host)"));
    let url = reqwest::Url::parse(text).map_err(|_| bad("is not a URL"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

impl Settings {
    /// Parses every non-secret setting.
    pub fn parse(raw: &RawSettings) -> BmResult<Self> {
        let urls = parse_urls(raw.get("url"))?;
        let site = raw.get("site").trim().to_string();
        if !site.is_empty() {
            SiteId::new(site.clone()).map_err(|e| BmError::input(format!("bm_relay.site: {e}")))?;
        }
        let mode = match raw.get("mode").trim() {
            "async" | "" => Mode::Async,
            "sync" => Mode::Sync,
            _ => return Err(BmError::input("bm_relay.mode must be 'async' or 'sync'")),
        };
        let protocol = match raw.get("protocol").trim() {
            "1" => 1,
            "2" => 2,
            _ => return Err(BmError::input("bm_relay.protocol must be 1 or 2")),
        };
        let queue_size = match raw.get("queue_size").trim().parse::<u64>() {
            Ok(v) if (1..=MAX_QUEUE).contains(&v) => v as usize,
            _ => return Err(BmError::input(format!("bm_relay.queue_size must be an integer 1..={MAX_QUEUE}"))),
        };
        Ok(Settings {
            urls,
            site,
            mode,
            timeout: parse_ms(raw, "timeout_ms", 1)?,
            connect_timeout: parse_ms(raw, "connect_timeout_ms", 1)?,
            queue_size,
            flush_timeout: parse_ms(raw, "flush_timeout_ms", 0)?,
            protocol,
        })
    }
}

/// The keys derived from the site secret, shared by every use in a request.
pub struct Keys {
    /// Signs pushes and tokens.
    pub relay: RelayKey,
    /// Root of thread and user keys.
    pub content: ContentKey,
    /// Turns user and thread ids into protocol v2 pseudonyms (§3.2);
    /// derived on first use, so a request that never asks pays no HKDF.
    pseudonym: std::sync::OnceLock<bm_proto::keys::PseudonymKey>,
    /// The secret's pseudonym key is derived from (zeroized with `Keys`).
    secret: SiteSecret,
    /// Thread and user keys derived so far in this request: a request that
    /// pushes many events to one thread derives its key (two HKDF steps)
    /// once. Bounded; zeroized when dropped at request end.
    derived: std::sync::Mutex<std::collections::HashMap<bm_proto::KeyId, bm_proto::EnvelopeKey>>,
}

/// Most derived keys kept per request.
const MAX_CACHED_KEYS: usize = 256;

impl Keys {
    /// Derives the relay and content keys of a site secret.
    pub fn new(secret: &SiteSecret) -> Keys {
        Keys {
            relay: secret.relay_key(),
            content: secret.content_key(),
            pseudonym: std::sync::OnceLock::new(),
            secret: secret.clone(),
            derived: Default::default(),
        }
    }

    /// The pseudonym key, derived on first use.
    pub fn pseudonym(&self) -> &bm_proto::keys::PseudonymKey {
        self.pseudonym.get_or_init(|| self.secret.pseudonym_key())
    }

    /// The thread or user key named `id`, derived once per request.
    pub fn envelope_key(&self, id: bm_proto::KeyId) -> bm_proto::EnvelopeKey {
        let mut cache = crate::sync::lock(&self.derived);
        if let Some(k) = cache.get(&id) {
            return k.clone();
        }
        if cache.len() >= MAX_CACHED_KEYS {
            cache.clear();
        }
        let k = self.content.key_for(id);
        cache.insert(id, k.clone());
        k
    }
}

/// Where a secret came from, for phpinfo() (never the secret itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// `bm_relay.secret_file`.
    File,
    /// `bm_relay.secret`.
    Inline,
    /// Neither is set.
    None,
}

/// Which source a raw setting set uses.
pub fn secret_source(raw: &RawSettings) -> SecretSource {
    if !raw.get("secret_file").trim().is_empty() {
        SecretSource::File
    } else if !raw.get("secret").trim().is_empty() {
        SecretSource::Inline
    } else {
        SecretSource::None
    }
}

/// Reads and parses the site secret. Messages name the setting and (for a
/// file) its path, never the content.
pub fn load_secret(raw: &RawSettings) -> BmResult<SiteSecret> {
    const FORM: &str = "32 bytes written as base64url without padding, 43 characters";
    match secret_source(raw) {
        SecretSource::File => {
            let path = raw.get("secret_file").trim();
            let text = std::fs::read_to_string(path).map_err(|e| {
                BmError::input(format!("bm_relay.secret_file: cannot read '{path}': {}", io_reason(&e)))
            })?;
            SiteSecret::from_b64(&text).map_err(|_| {
                BmError::input(format!("bm_relay.secret_file: '{path}' does not hold a site secret ({FORM})"))
            })
        }
        SecretSource::Inline => SiteSecret::from_b64(raw.get("secret"))
            .map_err(|_| BmError::input(format!("bm_relay.secret is not a site secret ({FORM})"))),
        SecretSource::None => {
            Err(BmError::input("no site secret configured: set bm_relay.secret_file (preferred) or bm_relay.secret"))
        }
    }
}

/// An I/O error without the OS's "(os error N)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Everything a request needs, resolved once (first use) and shared.
pub struct Resolved {
    /// Parsed settings.
    pub settings: Settings,
    /// The raw form, for phpinfo() and error messages.
    pub raw: RawSettings,
    keys: std::cell::OnceCell<Result<Arc<Keys>, BmError>>,
    target: std::cell::OnceCell<Result<Arc<crate::relay::Relays>, BmError>>,
}

impl Resolved {
    /// Parses `raw`; the secret is read on first need.
    pub fn new(raw: RawSettings) -> BmResult<Self> {
        Ok(Resolved {
            settings: Settings::parse(&raw)?,
            raw,
            keys: std::cell::OnceCell::new(),
            target: std::cell::OnceCell::new(),
        })
    }

    /// The site id, or an error saying it is not set.
    pub fn site(&self) -> BmResult<SiteId> {
        if self.settings.site.is_empty() {
            return Err(BmError::input("bm_relay.site is not set"));
        }
        SiteId::new(self.settings.site.clone()).map_err(|e| BmError::input(format!("bm_relay.site: {e}")))
    }

    /// The derived keys (reads the secret on first call).
    pub fn keys(&self) -> BmResult<Arc<Keys>> {
        self.keys
            .get_or_init(|| {
                let secret = load_secret(&self.raw)?;
                Ok(Arc::new(Keys::new(&secret)))
            })
            .clone()
    }

    /// The relay targets (one per URL; site, relay key, timeouts) for sending.
    pub fn target(&self) -> BmResult<Arc<crate::relay::Relays>> {
        self.target
            .get_or_init(|| {
                if self.settings.urls.is_empty() {
                    return Err(BmError::input("bm_relay.url is not set"));
                }
                let keys = self.keys()?;
                let site = self.site()?;
                let list = self
                    .settings
                    .urls
                    .iter()
                    .map(|url| crate::relay::Target {
                        base_url: url.clone(),
                        site: site.clone(),
                        relay_key: keys.relay.clone(),
                        timeout: self.settings.timeout,
                        connect_timeout: self.settings.connect_timeout,
                        transport: crate::transport::Transport::for_url(url),
                        protocol: self.settings.protocol,
                    })
                    .collect();
                Ok(Arc::new(crate::relay::Relays::new(list)))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawSettings {
        let mut r = RawSettings::from_lookup(|_| None);
        for (k, v) in pairs {
            r.set(k, (*v).to_string()).unwrap();
        }
        r
    }

    #[test]
    fn defaults_parse() {
        let s = Settings::parse(&raw(&[])).unwrap();
        assert_eq!(s.mode, Mode::Async);
        assert_eq!(s.timeout, Duration::from_millis(2000));
        assert_eq!(s.connect_timeout, Duration::from_millis(500));
        assert_eq!(s.queue_size, 10_000);
        assert_eq!(s.flush_timeout, Duration::from_millis(500));
        assert_eq!(s.protocol, 1);
        assert_eq!(Settings::parse(&raw(&[("protocol", " 2 ")])).unwrap().protocol, 2);
    }

    #[test]
    fn errors_name_the_key() {
        for (k, v) in [
            ("timeout_ms", "0"),
            ("timeout_ms", "abc"),
            ("queue_size", "-1"),
            ("mode", "fast"),
            ("url", "ftp://x"),
            ("url", "http://u:p@x"),
            ("site", "Bad Site"),
            ("flush_timeout_ms", "9999999"),
            ("protocol", "3"),
            ("protocol", "v2"),
        ] {
            let err = Settings::parse(&raw(&[(k, v)])).unwrap_err();
            assert!(err.to_string().contains(&format!("bm_relay.{k}")), "{k}={v}: {err}");
        }
        assert!(raw(&[]).clone().set("nope", "1".into()).unwrap_err().to_string().contains("'nope'"));
    }

    #[test]
    fn secret_never_echoed_and_override_wins() {
        let r = raw(&[("secret", "not-a-secret-but-private")]);
        let e = load_secret(&r).unwrap_err();
        assert!(e.to_string().contains("bm_relay.secret") && !e.to_string().contains("private"));
        let mut r = raw(&[("secret_file", "/nonexistent/secret")]);
        assert!(load_secret(&r).unwrap_err().to_string().contains("no such file"));
        r.set("secret", "IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM0".into()).unwrap();
        assert!(load_secret(&r).is_ok());
    }

    #[test]
    fn derived_keys_are_cached_and_equal_to_fresh_ones() {
        let secret = SiteSecret::from_b64("IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM0").unwrap();
        let keys = Keys::new(&secret);
        let id = bm_proto::KeyId::parse("t/12/0").unwrap();
        let first = keys.envelope_key(id);
        assert_eq!(first.to_b64(), "eKY9wpcq_JUS95SW3tXcNPPi1DtIoKkO1pDlkB8gZtI");
        assert_eq!(keys.envelope_key(id), first);
        for t in 1..=300 {
            keys.envelope_key(bm_proto::KeyId::parse(&format!("t/{t}/1")).unwrap());
        }
        assert!(crate::sync::lock(&keys.derived).len() <= MAX_CACHED_KEYS);
        assert_eq!(keys.envelope_key(id).to_b64(), first.to_b64());
    }

    #[test]
    fn url_lists() {
        assert_eq!(parse_urls("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_urls(" http://a:1/ ").unwrap(), ["http://a:1"]);
        assert_eq!(
            parse_urls("http://a:8787, https://b.example/base/ ,http://[::1]:9").unwrap(),
            ["http://a:8787", "https://b.example/base", "http://[::1]:9"]
        );
        let err = |t: &str| parse_urls(t).unwrap_err().to_string();
        assert_eq!(err("http://a,"), "bm_relay.url (URL 2 of 2) is empty (separate URLs with one comma)");
        assert_eq!(err("http://a,,http://b"), "bm_relay.url (URL 2 of 3) is empty (separate URLs with one comma)");
        assert_eq!(
            err("http://a,http://u:secret@b"),
            "bm_relay.url (URL 2 of 2) must not contain credentials (expected http://host:port or https://host)"
        );
        assert!(!err("http://a,http://u:secret@b").contains("secret@"));
        assert_eq!(err("http://a/,http://a"), "bm_relay.url (URL 2 of 2) is listed twice: http://a");
        assert_eq!(
            err("ftp://x"),
            "bm_relay.url must start with http:// or https:// (expected http://host:port or https://host)"
        );
        let many = vec!["http://h"; MAX_URLS + 1].join(",");
        assert_eq!(err(&many), "bm_relay.url lists 17 URLs, more than 16");
        let s = Settings::parse(&raw(&[("url", "http://a:1,http://b:2")])).unwrap();
        assert_eq!(s.urls, ["http://a:1", "http://b:2"]);
    }

    #[test]
    fn url_forms() {
        assert_eq!(check_url("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(check_url("https://relay.example.com/base").unwrap(), "https://relay.example.com/base");
        assert!(check_url("127.0.0.1:80").is_err());
        assert!(check_url("http://x/?a=1").is_err());
    }

    /// The settings list exists once, here; the places that must restate
    /// it (C-string INI entries, the shipped ini, the docs' table) are
    /// compared with it, key by key, in order, with their defaults.
    #[test]
    fn every_copy_of_the_settings_list_matches_keys() {
        let ini_rs = include_str!("ini.rs");
        let entries: Vec<String> = ini_rs
            .lines()
            .filter_map(|l| l.trim().strip_prefix("IniEntryDef::new(c\"bm_relay."))
            .map(|rest| {
                let (key, rest) = rest.split_once('"').unwrap();
                let default = rest.split('"').nth(1).unwrap();
                format!("{key}={default}")
            })
            .collect();
        let keys: Vec<String> = KEYS.iter().map(|(k, d)| format!("{k}={d}")).collect();
        assert_eq!(entries, keys, "ext/src/ini.rs");

        let sample = include_str!("../bm_relay.ini");
        let sample_keys: Vec<&str> = sample
            .lines()
            .filter_map(|l| l.strip_prefix(";bm_relay."))
            .map(|l| l.split([' ', '=']).next().unwrap())
            .collect();
        assert_eq!(sample_keys, KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>(), "ext/bm_relay.ini");

        let doc = include_str!("../../docs/PHP-API.md");
        let rows: Vec<String> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `bm_relay."))
            .map(|l| {
                let (key, rest) = l.split_once('`').unwrap();
                let default = rest.split('|').nth(1).unwrap().trim();
                let default = if default == "(none)" { "" } else { default.trim_matches('`') };
                format!("{key}={default}")
            })
            .collect();
        assert_eq!(rows, keys, "the settings table of docs/PHP-API.md");
    }
}
