//! # bm_relay: the PHP extension
//!
//! `bm_push()` seals an event (AES-256-GCM, keys derived from the site
//! secret by `bm-proto`) and hands it to a per-process background sender
//! that batches events into signed `/v1/push` requests, so the request path
//! costs microseconds. Sync mode waits for the relay's answer instead.
//!
//! | module | what it holds |
//! |---|---|
//! | [`error`] | `BmRelayException` and the error type that becomes it |
//! | [`ini`] | the `bm_relay.*` INI entries |
//! | [`config`] | settings parsing, secret loading, per-request resolution |
//! | [`request`] | per-request `bm_configure()` overrides |
//! | [`values`] | PHP values → protocol ids, errors naming the field |
//! | [`json`] | `json_encode` / `json_decode` through PHP itself |
//! | [`event`] | checking and sealing one event |
//! | [`relay`] | signed HTTP requests and the relay's replies |
//! | [`direct`] | blocking keep-alive HTTP/1.1 for sync calls to an http relay |
//! | [`transport`] | http (direct) or https (reqwest), decided once per target |
//! | [`sync`] | poison-tolerant mutex locking |
//! | [`worker`] | fork-safe runtime, queue, batching sender, stats |
//!
//! The PHP API is documented in `docs/PHP-API.md`; IDE stubs are in
//! `ext/bm_relay.stub.php`.

#![cfg_attr(windows, feature(abi_vectorcall))]

pub mod config;
pub mod direct;
pub mod error;
pub mod event;
pub mod ini;
pub mod json;
pub mod random;
pub mod relay;
pub mod request;
pub mod sync;
pub mod transport;
pub mod values;
pub mod worker;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bm_proto::api::{DisconnectResponse, Limits, PresenceResponse, PushResponse};
use bm_proto::envelope::{Envelope, DEFAULT_MAX_CIPHERTEXT};
use bm_proto::{Claims, UserId};
use ext_php_rs::boxed::ZBox;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};
use ext_php_rs::zend::ModuleEntry;
use ext_php_rs::{info_table_end, info_table_header, info_table_row, info_table_start};

use crate::config::{Mode, Resolved};
use crate::error::{BmError, BmRelayException, BmResult};
use crate::relay::Endpoint;

/// The extension's version, shown by phpinfo() and `phpversion('bm_relay')`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn to_php<T>(r: BmResult<T>) -> PhpResult<T> {
    r.map_err(PhpException::from)
}

fn prefixed<T>(name: &str, r: BmResult<T>) -> PhpResult<T> {
    to_php(r.map_err(|e| e.context(&format!("{name}(): "))))
}

/// A PHP list of ints from user ids.
fn id_list(ids: &[UserId]) -> BmResult<ZBox<ZendHashTable>> {
    let mut ht = ZendHashTable::with_capacity(ids.len() as u32);
    for u in ids {
        ht.push(u.get() as i64).map_err(|e| BmError::input(e.to_string()))?;
    }
    Ok(ht)
}

fn push_result_array(r: &bm_proto::api::PushResult) -> BmResult<ZBox<ZendHashTable>> {
    let mut ht = ZendHashTable::with_capacity(2);
    ht.insert("online", id_list(&r.online)?).map_err(|e| BmError::input(e.to_string()))?;
    ht.insert("sockets", r.sockets as i64).map_err(|e| BmError::input(e.to_string()))?;
    Ok(ht)
}

/// Seals every event (all checked before any is queued or sent).
fn seal_all(res: &Resolved, events: &[(&Zval, String)]) -> BmResult<Vec<event::SealedEvent>> {
    let site = res.site()?;
    let keys = res.keys()?;
    let limits = Limits::default();
    events.iter().map(|(z, prefix)| event::seal(z, prefix, &site, &keys, &limits)).collect()
}

/// Writes accumulated delivery failures to the PHP error log, at most once
/// a minute per process.
fn maybe_log_failures(force: bool) {
    worker::with_existing(|w| {
        let due = w.last_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if !(due || force) {
            return;
        }
        let n = w.shared.stats.unlogged_failures.swap(0, Ordering::Relaxed);
        if n == 0 {
            return;
        }
        w.last_logged = Some(Instant::now());
        let last = sync::lock(&w.shared.stats.last_error).as_ref().map(|(m, _)| m.clone()).unwrap_or_default();
        log_error(&format!("bm_relay: {n} event(s) or call(s) not delivered to the relay; last error: {last}"));
    });
}

// PHP's own logger (main/main.c); not bound by ext-php-rs. The severity is
// a syslog level.
extern "C" {
    fn php_log_err_with_severity(message: *const std::os::raw::c_char, syslog_type: std::os::raw::c_int);
}

/// Writes one line to the PHP error log (never shown to the visitor).
fn log_error(msg: &str) {
    if let Ok(c) = std::ffi::CString::new(msg.replace('\0', " ")) {
        // SAFETY: PHP's logger copies the NUL-terminated string.
        unsafe { php_log_err_with_severity(c.as_ptr(), libc::LOG_WARNING) };
    }
}

/// Pushes sealed events according to the mode: returns the sync results or
/// the async queue verdict.
fn deliver(res: &Resolved, sealed: Vec<event::SealedEvent>, many: bool) -> BmResult<Zval> {
    let target = res.target()?;
    let jsons: Vec<String> =
        sealed.iter().map(|s| relay::event_json(&s.to, s.live_thread, &s.envelope.to_json())).collect();
    let mut out = Zval::new();
    match res.settings.mode {
        Mode::Async => {
            let queue_size = res.settings.queue_size;
            let queued = jsons.into_iter().map(|json| worker::QueuedEvent { target: target.clone(), json }).collect();
            let ok = worker::with_worker(|w| w.enqueue(queued, queue_size))?;
            out.set_bool(ok);
        }
        Mode::Sync => {
            let n = jsons.len() as u64;
            let body = relay::push_body(jsons.iter().map(String::as_str));
            let wait = res.settings.timeout;
            let text = worker::with_worker(|w| w.call(&target, Endpoint::Push, body, n, wait))??;
            let reply: PushResponse = serde_json::from_str(&text)
                .map_err(|e| BmError::bad_reply(format!("relay answered push with an unreadable body: {e}")))?;
            if reply.results.len() != sealed.len() {
                return Err(BmError::bad_reply(format!(
                    "relay answered {} results for {} events",
                    reply.results.len(),
                    sealed.len()
                )));
            }
            if many {
                let mut list = ZendHashTable::with_capacity(reply.results.len() as u32);
                for r in &reply.results {
                    list.push(push_result_array(r)?).map_err(|e| BmError::input(e.to_string()))?;
                }
                out.set_hashtable(list);
            } else {
                out.set_hashtable(push_result_array(&reply.results[0])?);
            }
        }
    }
    Ok(out)
}

fn record_push_latency(started: Instant) {
    worker::with_existing(|w| worker::record_sample(&mut w.push_latency, started.elapsed().as_micros()));
}

/// `bm_push(array $event): array|bool` — seal one event and send it
/// (async: queue, true/false; sync: the relay's result).
#[php_function]
pub fn bm_push(event: &Zval) -> PhpResult<Zval> {
    let started = Instant::now();
    let r = (|| {
        let res = request::resolved()?;
        let sealed = seal_all(&res, &[(event, String::new())])?;
        deliver(&res, sealed, false)
    })();
    record_push_latency(started);
    maybe_log_failures(false);
    prefixed("bm_push", r)
}

/// `bm_push_many(array $events): array|bool` — like `bm_push` for a list,
/// in order, all checked before any is sent.
#[php_function]
pub fn bm_push_many(events: &Zval) -> PhpResult<Zval> {
    let started = Instant::now();
    let r = (|| {
        let res = request::resolved()?;
        let list = values::array_of(events, "events")?;
        if list.len() > Limits::default().max_events {
            return Err(BmError::input(format!(
                "events has {} events, over the limit of {} per call",
                list.len(),
                Limits::default().max_events
            )));
        }
        let items: Vec<(&Zval, String)> = list.values().enumerate().map(|(i, z)| (z, format!("events[{i}]"))).collect();
        let sealed = seal_all(&res, &items)?;
        if sealed.is_empty() {
            let mut z = Zval::new();
            match res.settings.mode {
                Mode::Async => z.set_bool(true),
                Mode::Sync => z.set_hashtable(ZendHashTable::new()),
            }
            return Ok(z);
        }
        deliver(&res, sealed, true)
    })();
    record_push_latency(started);
    maybe_log_failures(false);
    prefixed("bm_push_many", r)
}

/// `bm_flush(?int $timeout_ms = null): bool` — wait for the async queue to
/// drain (default bound: `timeout_ms`); true when it did.
#[php_function]
pub fn bm_flush(timeout_ms: Option<&Zval>) -> PhpResult<bool> {
    let r = (|| {
        let res = request::resolved()?;
        let wait = match timeout_ms.filter(|z| !z.dereference().is_null()) {
            None => res.settings.timeout,
            Some(z) => {
                let v = values::int_of(z, "timeout_ms", "an integer number of milliseconds 0..600000")?;
                if !(0..=600_000).contains(&v) {
                    return Err(BmError::input(format!(
                        "timeout_ms must be an integer number of milliseconds 0..600000, got {v}"
                    )));
                }
                Duration::from_millis(v as u64)
            }
        };
        Ok(worker::with_existing(|w| w.flush(wait)).unwrap_or(true))
    })();
    maybe_log_failures(false);
    prefixed("bm_flush", r)
}

/// `bm_seal(array $event): string` — the envelope JSON, nothing sent.
#[php_function]
pub fn bm_seal(event: &Zval) -> PhpResult<String> {
    prefixed(
        "bm_seal",
        (|| {
            let res = request::resolved()?;
            let mut sealed = seal_all(&res, &[(event, String::new())])?;
            Ok(sealed.remove(0).envelope.to_json())
        })(),
    )
}

/// `bm_open(string $envelope): array` — opens an envelope of this site:
/// `['type' => …, 'data' => …, 'id' => …, 'k' => …]`.
#[php_function]
pub fn bm_open(envelope: &Zval) -> PhpResult<Zval> {
    prefixed(
        "bm_open",
        (|| {
            let text = envelope.dereference().str().ok_or_else(|| {
                BmError::input(format!("envelope must be a string, got {}", values::type_name(envelope)))
            })?;
            let res = request::resolved()?;
            let site = res.site()?;
            let keys = res.keys()?;
            let env =
                Envelope::parse(text, DEFAULT_MAX_CIPHERTEXT).map_err(|e| BmError::input(format!("envelope: {e}")))?;
            let key = keys.content.key_for(env.k);
            let plain =
                env.open(&site, &key, DEFAULT_MAX_CIPHERTEXT).map_err(|e| BmError::input(format!("envelope: {e}")))?;
            let plain = std::str::from_utf8(&plain).map_err(|_| BmError::input("envelope: payload is not UTF-8"))?;
            let mut decoded = json::decode_assoc(plain, "envelope payload")?;
            let Some(arr) = decoded.array_mut() else {
                return Err(BmError::input("envelope payload is not a {\"type\",\"data\"} object"));
            };
            if !arr.get("type").is_some_and(Zval::is_string) || arr.get("data").is_none() {
                return Err(BmError::input("envelope payload is not a {\"type\",\"data\"} object"));
            }
            let err = |e: ext_php_rs::error::Error| BmError::input(e.to_string());
            arr.insert("id", env.id.as_str()).map_err(err)?;
            arr.insert("k", env.k.to_string()).map_err(err)?;
            Ok(decoded)
        })(),
    )
}

/// `bm_client_token(int $user_id, int $ttl = 3600): string` — a connection
/// token for that user's browser.
#[php_function]
pub fn bm_client_token(user_id: &Zval, ttl: Option<&Zval>) -> PhpResult<String> {
    prefixed(
        "bm_client_token",
        (|| {
            let user = values::user_id(user_id, "user_id")?;
            let ttl = values::ttl(ttl, "ttl")?;
            let res = request::resolved()?;
            let claims = Claims::connection(res.site()?, user, now_unix(), ttl);
            Ok(claims.mint(&res.keys()?.relay))
        })(),
    )
}

/// `bm_thread_token(int $user_id, int $thread_id, int $ttl = 3600): string`
/// — proof for the relay that the user is a member of the thread.
#[php_function]
pub fn bm_thread_token(user_id: &Zval, thread_id: &Zval, ttl: Option<&Zval>) -> PhpResult<String> {
    prefixed(
        "bm_thread_token",
        (|| {
            let user = values::user_id(user_id, "user_id")?;
            let thread = values::thread_id(thread_id, "thread_id")?;
            let ttl = values::ttl(ttl, "ttl")?;
            let res = request::resolved()?;
            let claims = Claims::thread(res.site()?, user, thread, now_unix(), ttl);
            Ok(claims.mint(&res.keys()?.relay))
        })(),
    )
}

/// `bm_thread_key(int $thread_id, int $epoch = 0): string` — the thread key
/// (b64u) for the members' browsers.
#[php_function]
pub fn bm_thread_key(thread_id: &Zval, epoch: Option<&Zval>) -> PhpResult<String> {
    prefixed(
        "bm_thread_key",
        (|| {
            let thread = values::thread_id(thread_id, "thread_id")?;
            let epoch = match epoch.filter(|z| !z.dereference().is_null()) {
                Some(z) => values::epoch(z, "epoch")?,
                None => bm_proto::Epoch(0),
            };
            Ok(request::resolved()?.keys()?.content.thread_key(thread, epoch).to_b64())
        })(),
    )
}

/// `bm_user_key(int $user_id): string` — the user key (b64u) for that
/// user's browsers.
#[php_function]
pub fn bm_user_key(user_id: &Zval) -> PhpResult<String> {
    prefixed(
        "bm_user_key",
        (|| {
            let user = values::user_id(user_id, "user_id")?;
            Ok(request::resolved()?.keys()?.content.user_key(user).to_b64())
        })(),
    )
}

/// `bm_relay_key(): string` — the relay key (b64u), for configuring the relay.
#[php_function]
pub fn bm_relay_key() -> PhpResult<String> {
    prefixed("bm_relay_key", (|| Ok(request::resolved()?.keys()?.relay.to_b64()))())
}

/// A presence or disconnect call: always waits for the relay (bounded by
/// `timeout_ms`), after whatever this process queued before it.
fn users_call<T: serde::de::DeserializeOwned>(endpoint: Endpoint, body: String) -> BmResult<T> {
    let res = request::resolved()?;
    let target = res.target()?;
    let wait = res.settings.timeout;
    let text = worker::with_worker(|w| w.call(&target, endpoint, body, 0, wait))??;
    serde_json::from_str(&text)
        .map_err(|e| BmError::bad_reply(format!("relay answered {} with an unreadable body: {e}", endpoint.name())))
}

/// `bm_presence(array $user_ids): array` — those of the users with at least
/// one open socket (a list of ints). Always waits for the relay.
#[php_function]
pub fn bm_presence(user_ids: &Zval) -> PhpResult<ZBox<ZendHashTable>> {
    prefixed(
        "bm_presence",
        (|| {
            let users = values::user_ids(user_ids, "user_ids", Limits::default().max_recipients)?;
            let reply: PresenceResponse = users_call(Endpoint::Presence, relay::users_body(&users, None))?;
            id_list(&reply.online)
        })(),
    )
}

/// `bm_disconnect(array $user_ids, ?int $thread_id = null): int` — closes
/// the users' sockets, or revokes their subscription to one thread; returns
/// how many sockets were affected.
#[php_function]
pub fn bm_disconnect(user_ids: &Zval, thread_id: Option<&Zval>) -> PhpResult<i64> {
    prefixed(
        "bm_disconnect",
        (|| {
            let users = values::user_ids(user_ids, "user_ids", Limits::default().max_recipients)?;
            let thread = match thread_id.filter(|z| !z.dereference().is_null()) {
                Some(z) => Some(values::thread_id(z, "thread_id")?),
                None => None,
            };
            let reply: DisconnectResponse = users_call(Endpoint::Disconnect, relay::users_body(&users, thread))?;
            Ok(reply.closed as i64)
        })(),
    )
}

/// Converts one `bm_configure()` value to its setting text, checking its type.
fn configure_value(key: &str, z: &Zval) -> BmResult<Option<String>> {
    let z = z.dereference();
    if z.is_null() {
        return Ok(None);
    }
    match key {
        "url" | "site" | "secret" | "secret_file" | "mode" => z
            .str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| BmError::input(format!("'{key}' must be a string, got {}", values::type_name(z)))),
        _ => Ok(Some(values::int_of(z, &format!("'{key}'"), "an integer")?.to_string())),
    }
}

/// `bm_configure(array $opts): void` — overrides settings (INI keys without
/// the `bm_relay.` prefix) for the rest of this request; all are validated
/// and nothing is applied when one is invalid. A null value restores the
/// INI value.
#[php_function]
pub fn bm_configure(opts: &Zval) -> PhpResult<()> {
    prefixed(
        "bm_configure",
        (|| {
            let arr = values::array_of(opts, "opts")?;
            let mut new = Vec::new();
            let mut restore = Vec::new();
            for (key, value) in values::string_keys(arr, "opts")? {
                if !config::KEYS.iter().any(|(k, _)| *k == key) {
                    let known: Vec<&str> = config::KEYS.iter().map(|(k, _)| *k).collect();
                    return Err(BmError::input(format!("unknown setting '{key}' (known: {})", known.join(", "))));
                }
                match configure_value(&key, value)? {
                    Some(v) => new.push((key, v)),
                    None => restore.push(key),
                }
            }
            // Restoring means: the INI value, whatever was overridden before.
            for key in &restore {
                let ini_value = ini::get(&format!("bm_relay.{key}")).unwrap_or_default();
                new.push((key.clone(), ini_value));
            }
            let raw = request::raw_with(&new)?;
            config::Settings::parse(&raw)?;
            if new.iter().any(|(k, _)| k == "secret" || k == "secret_file") {
                config::load_secret(&raw)?;
            }
            request::add_overrides(new);
            Ok(())
        })(),
    )
}

fn stat_array() -> BmResult<ZBox<ZendHashTable>> {
    let err = |e: ext_php_rs::error::Error| BmError::input(e.to_string());
    let raw = request::raw_with(&[])?;
    let mut ht = ZendHashTable::new();
    let (pending, sent, failed, dropped, batches, last, push, relay) = worker::with_existing(|w| {
        let s = &w.shared.stats;
        (
            w.shared.pending(),
            s.sent.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
            s.dropped.load(Ordering::Relaxed),
            s.batches.load(Ordering::Relaxed),
            sync::lock(&s.last_error).clone(),
            worker::percentiles(&w.push_latency),
            worker::percentiles(&sync::lock(&s.batch_latency)),
        )
    })
    .unwrap_or((0, 0, 0, 0, 0, None, (0, 0), (0, 0)));
    ht.insert("queued", pending as i64).map_err(err)?;
    ht.insert("sent", sent as i64).map_err(err)?;
    ht.insert("failed", failed as i64).map_err(err)?;
    ht.insert("dropped", dropped as i64).map_err(err)?;
    ht.insert("batches", batches as i64).map_err(err)?;
    match last {
        Some((message, time)) => {
            let mut e = ZendHashTable::with_capacity(2);
            e.insert("message", message).map_err(err)?;
            e.insert("time", time as i64).map_err(err)?;
            ht.insert("last_error", e).map_err(err)?;
        }
        None => ht.insert("last_error", Zval::null()).map_err(err)?,
    }
    ht.insert("latency_p50_us", i64::from(push.0)).map_err(err)?;
    ht.insert("latency_p99_us", i64::from(push.1)).map_err(err)?;
    ht.insert("relay_p50_us", i64::from(relay.0)).map_err(err)?;
    ht.insert("relay_p99_us", i64::from(relay.1)).map_err(err)?;
    ht.insert("url", raw.get("url").trim().to_string()).map_err(err)?;
    ht.insert("site", raw.get("site").trim().to_string()).map_err(err)?;
    ht.insert("mode", raw.get("mode").trim().to_string()).map_err(err)?;
    ht.insert("pid", i64::from(std::process::id())).map_err(err)?;
    Ok(ht)
}

/// `bm_stats(): array` — this process's counters: queued, sent, failed,
/// dropped, batches, last_error (`['message','time']` or null), push
/// latency p50/p99 (µs), relay round trip p50/p99 (µs), url, site, mode, pid.
#[php_function]
pub fn bm_stats() -> PhpResult<ZBox<ZendHashTable>> {
    prefixed("bm_stats", stat_array())
}

/// RSHUTDOWN: flush what this request queued (bounded by
/// `flush_timeout_ms`), report failures, forget per-request settings.
extern "C" fn request_shutdown(_type: i32, _module_number: i32) -> i32 {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // Only a process that queued something pays for more than a check.
        if worker::with_existing(|w| w.shared.pending() > 0).unwrap_or(false) {
            let wait = request::resolved().map(|r| r.settings.flush_timeout).unwrap_or(Duration::from_millis(500));
            worker::with_existing(|w| w.flush(wait));
        }
        maybe_log_failures(false);
        request::reset();
    }));
    0
}

/// MSHUTDOWN: last flush, then stop the sender's threads before PHP unloads
/// the library. What could not be sent is counted and logged.
extern "C" fn module_shutdown(_type: i32, _module_number: i32) -> i32 {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let wait = ini::get("bm_relay.flush_timeout_ms")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_millis(500));
        let left = worker::with_existing(|w| {
            w.flush(wait);
            w.stop()
        });
        if let Some(left) = left.filter(|n| *n > 0) {
            log_error(&format!("bm_relay: {left} queued event(s) dropped at shutdown (relay too slow or down)"));
        }
        maybe_log_failures(true);
    }));
    0
}

/// phpinfo(): version, mode, relay, site, secret source (never the secret)
/// and this process's queue figures.
extern "C" fn module_info(_module: *mut ModuleEntry) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let raw = request::raw_with(&[]).unwrap_or_default();
        let secret = match config::secret_source(&raw) {
            config::SecretSource::File => "configured (bm_relay.secret_file)",
            config::SecretSource::Inline => "configured (bm_relay.secret)",
            config::SecretSource::None => "not configured",
        };
        let (pending, sent, failed, dropped) = worker::with_existing(|w| {
            let s = &w.shared.stats;
            (
                w.shared.pending(),
                s.sent.load(Ordering::Relaxed),
                s.failed.load(Ordering::Relaxed),
                s.dropped.load(Ordering::Relaxed),
            )
        })
        .unwrap_or((0, 0, 0, 0));
        info_table_start!();
        info_table_row!("bm_relay support", "enabled");
        info_table_row!("version", VERSION);
        info_table_row!("mode", raw.get("mode"));
        info_table_row!("relay URL", raw.get("url"));
        info_table_row!("site", raw.get("site"));
        info_table_row!("site secret", secret);
        info_table_row!("queue size", raw.get("queue_size"));
        info_table_row!("queued / sent / failed / dropped", format!("{pending} / {sent} / {failed} / {dropped}"));
        info_table_end!();
        // The directives, as a C extension's DISPLAY_INI_ENTRIES would show
        // them, but with the inline secret redacted.
        info_table_start!();
        info_table_header!("Directive", "Value");
        for (key, _) in config::KEYS {
            let value = raw.get(key).trim();
            let shown = if key == "secret" && !value.is_empty() { "<redacted>" } else { value };
            info_table_row!(format!("bm_relay.{key}"), shown);
        }
        info_table_end!();
    }));
}

fn startup(_ty: i32, module_number: i32) -> i32 {
    ini::register(module_number);
    pin_library();
    0
}

/// Keeps this library mapped until the process exits.
///
/// PHP unloads shared extensions (dlclose) right after MSHUTDOWN. The
/// sender's threads are stopped there, but a thread that is still returning
/// (thread-local destructors) would then run unmapped code. Re-opening
/// ourselves with RTLD_NODELETE makes the unload a no-op, as for a
/// statically built extension.
fn pin_library() {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr only reads the loader's tables for an address inside
    // this library; dlopen with RTLD_NOLOAD never loads anything new.
    unsafe {
        if libc::dladdr(pin_library as *const libc::c_void, &mut info) != 0 && !info.dli_fname.is_null() {
            libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE);
        }
    }
}

/// The module: functions, the exception class, INI, lifecycle hooks.
#[php_module]
#[php(startup = startup)]
pub fn get_module(module: ModuleBuilder) -> ModuleBuilder {
    module
        .name("bm_relay")
        .version(VERSION)
        .class::<BmRelayException>()
        .function(wrap_function!(bm_configure))
        .function(wrap_function!(bm_push))
        .function(wrap_function!(bm_push_many))
        .function(wrap_function!(bm_flush))
        .function(wrap_function!(bm_seal))
        .function(wrap_function!(bm_open))
        .function(wrap_function!(bm_client_token))
        .function(wrap_function!(bm_thread_token))
        .function(wrap_function!(bm_thread_key))
        .function(wrap_function!(bm_user_key))
        .function(wrap_function!(bm_relay_key))
        .function(wrap_function!(bm_presence))
        .function(wrap_function!(bm_disconnect))
        .function(wrap_function!(bm_stats))
        .request_shutdown_function(request_shutdown)
        .shutdown_function(module_shutdown)
        .info_function(module_info)
}
