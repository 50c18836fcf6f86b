//! The PHP API: the `bm_*` functions, each checking its arguments, then
//! sealing, queuing or calling the relay through the other modules, and
//! turning errors into `BmRelayException` (docs/PHP-API.md).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bm_proto::api::{DisconnectResponse, Limits, PresenceResponse, PushResponse};
use bm_proto::envelope::{Envelope, DEFAULT_MAX_CIPHERTEXT};
use bm_proto::{Claims, ThreadId, UserId};
use ext_php_rs::boxed::ZBox;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};

use crate::config::{self, Mode, Resolved};
use crate::errlog::maybe_log_failures;
use crate::error::{BmError, BmResult};
use crate::relay::{self, Endpoint};
use crate::{event, failover, ini, json, pseudonyms, request, stats, sync, values, worker};

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

fn push_result_array(r: &bm_proto::api::PushResult, online: &[UserId]) -> BmResult<ZBox<ZendHashTable>> {
    let mut ht = ZendHashTable::with_capacity(2);
    ht.insert("online", id_list(online)?).map_err(|e| BmError::input(e.to_string()))?;
    ht.insert("sockets", r.sockets as i64).map_err(|e| BmError::input(e.to_string()))?;
    Ok(ht)
}

/// Seals every event (all checked before any is queued or sent); in
/// protocol 2 with their ids mapped to pseudonyms (protocol 1 does no
/// extra work: not even the cache is looked at).
fn seal_all(res: &Resolved, events: &[(&Zval, String)]) -> BmResult<Vec<event::SealedEvent>> {
    let site = res.site()?;
    let keys = res.keys()?;
    let limits = Limits::default();
    if res.settings.protocol == 2 {
        return pseudonyms::with_mapper(&keys, |m| {
            events.iter().map(|(z, prefix)| event::seal(z, prefix, &site, &keys, &limits, Some(m))).collect()
        });
    }
    events.iter().map(|(z, prefix)| event::seal(z, prefix, &site, &keys, &limits, None)).collect()
}

/// A user id as the relay must see it under the request's protocol.
fn wire_user(res: &Resolved, user: UserId) -> BmResult<UserId> {
    if res.settings.protocol == 2 {
        return Ok(pseudonyms::with_mapper(&*res.keys()?, |m| m.user(user)));
    }
    Ok(user)
}

/// A thread id as the relay must see it under the request's protocol.
fn wire_thread(res: &Resolved, thread: ThreadId) -> BmResult<ThreadId> {
    if res.settings.protocol == 2 {
        return Ok(pseudonyms::with_mapper(&*res.keys()?, |m| m.thread(thread)));
    }
    Ok(thread)
}

/// A push result's `online` in WordPress ids: as the relay gave it in
/// protocol 1; mapped back through the event's own `to` in protocol 2.
fn online_of(r: &bm_proto::api::PushResult, sealed: &event::SealedEvent) -> Vec<UserId> {
    if sealed.wp_to.is_empty() {
        return r.online.clone();
    }
    pseudonyms::back(&sealed.wp_to, &sealed.to, &r.online)
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
            let queued =
                jsons.into_iter().map(|json| crate::queue::QueuedEvent { target: target.clone(), json }).collect();
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
                for (r, ev) in reply.results.iter().zip(&sealed) {
                    list.push(push_result_array(r, &online_of(r, ev))?).map_err(|e| BmError::input(e.to_string()))?;
                }
                out.set_hashtable(list);
            } else {
                out.set_hashtable(push_result_array(&reply.results[0], &online_of(&reply.results[0], &sealed[0]))?);
            }
        }
    }
    Ok(out)
}

fn record_push_latency(started: Instant) {
    worker::with_existing(|w| stats::record_sample(&mut w.push_latency, started.elapsed().as_micros()));
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
            let claims = Claims::connection(res.site()?, wire_user(&res, user)?, now_unix(), ttl);
            Ok(claims.with_protocol(res.settings.protocol).mint(&res.keys()?.relay))
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
            let (user, thread) = (wire_user(&res, user)?, wire_thread(&res, thread)?);
            let claims = Claims::thread(res.site()?, user, thread, now_unix(), ttl);
            Ok(claims.with_protocol(res.settings.protocol).mint(&res.keys()?.relay))
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
            let res = request::resolved()?;
            Ok(res.keys()?.content.thread_key(wire_thread(&res, thread)?, epoch).to_b64())
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
            let res = request::resolved()?;
            Ok(res.keys()?.content.user_key(wire_user(&res, user)?).to_b64())
        })(),
    )
}

/// `bm_pseudonym(string $kind, int $id): int` — the protocol v2 pseudonym
/// (§3.2) of a user (`kind` "user") or thread ("thread") id: what the relay
/// is given instead of the id. One HMAC, no relay call.
#[php_function]
pub fn bm_pseudonym(kind: &str, id: &Zval) -> PhpResult<i64> {
    prefixed(
        "bm_pseudonym",
        (|| {
            let keys = request::resolved()?.keys()?;
            let p = match kind {
                "user" => keys.pseudonym().user(values::user_id(id, "id")?).get(),
                "thread" => keys.pseudonym().thread(values::thread_id(id, "id")?).get(),
                _ => return Err(BmError::input("kind must be \"user\" or \"thread\"")),
            };
            // Below 2^53: exact as a PHP int.
            Ok(p as i64)
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
            let res = request::resolved()?;
            if res.settings.protocol == 2 {
                // The relay is asked about pseudonyms; the caller gets the
                // WordPress ids it asked about.
                let wire = pseudonyms::with_mapper(&*res.keys()?, |m| m.users(&users));
                let reply: PresenceResponse = users_call(Endpoint::Presence, relay::users_body(&wire, None))?;
                return id_list(&pseudonyms::back(&users, &wire, &reply.online));
            }
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
            let res = request::resolved()?;
            let (users, thread) = if res.settings.protocol == 2 {
                pseudonyms::with_mapper(&*res.keys()?, |m| (m.users(&users), thread.map(|t| m.thread(t))))
            } else {
                (users, thread)
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
            stats::percentiles(&w.push_latency),
            stats::percentiles(&sync::lock(&s.batch_latency)),
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
    // Per relay URL in force: what this process saw of it.
    let urls = config::parse_urls(raw.get("url")).unwrap_or_default();
    let now = Instant::now();
    let states: Vec<failover::UrlState> = worker::with_existing(|w| {
        let health = sync::lock(&w.shared.health);
        urls.iter().map(|u| health.state(u)).collect()
    })
    .unwrap_or_else(|| vec![failover::UrlState::default(); urls.len()]);
    let mut relays = ZendHashTable::with_capacity(urls.len() as u32);
    for (url, s) in urls.iter().zip(&states) {
        let mut r = ZendHashTable::with_capacity(4);
        r.insert("url", url.as_str()).map_err(err)?;
        r.insert("answered", s.answered as i64).map_err(err)?;
        r.insert("unreachable", s.unreachable as i64).map_err(err)?;
        let down_ms = s.down_until.map_or(0, |t| t.saturating_duration_since(now).as_millis() as i64);
        r.insert("down_for_ms", down_ms).map_err(err)?;
        relays.push(r).map_err(err)?;
    }
    ht.insert("relays", relays).map_err(err)?;
    ht.insert("site", raw.get("site").trim().to_string()).map_err(err)?;
    ht.insert("mode", raw.get("mode").trim().to_string()).map_err(err)?;
    ht.insert("pid", i64::from(std::process::id())).map_err(err)?;
    Ok(ht)
}

/// `bm_stats(): array` — this process's counters: queued, sent, failed,
/// dropped, batches, last_error (`['message','time']` or null), push
/// latency p50/p99 (µs), relay round trip p50/p99 (µs), url, relays (per
/// relay URL in force: answered, unreachable, down_for_ms), site, mode, pid.
#[php_function]
pub fn bm_stats() -> PhpResult<ZBox<ZendHashTable>> {
    prefixed("bm_stats", stat_array())
}

/// Adds every `bm_*` function to the module (the generated wrappers are
/// private to this module).
pub fn register_functions(module: ModuleBuilder) -> ModuleBuilder {
    module
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
        .function(wrap_function!(bm_pseudonym))
        .function(wrap_function!(bm_relay_key))
        .function(wrap_function!(bm_presence))
        .function(wrap_function!(bm_disconnect))
        .function(wrap_function!(bm_stats))
}
