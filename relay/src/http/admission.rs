//! Admission state shared by every client connection: the per-address
//! connection counts and new-connection buckets, the bytes of server API
//! bodies being read, and the client address behind a trusted proxy.
//!
//! Costs: the total and pending caps are one atomic each (in
//! [`crate::metrics::Metrics`]); the per-address state is a map split into
//! [`SHARDS`] mutexes, touched once at accept and once at close, never per
//! request or per event.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hyper::HeaderMap;
use tokio::sync::Notify;

use crate::config::{mask, Cidr, Limits};
use crate::metrics::Refusal;
use crate::state::App;

/// Shards of the per-address map: accepts from different addresses rarely
/// contend on one mutex.
const SHARDS: usize = 64;

/// What one client address holds.
struct PerIp {
    /// Connections open (or WebSockets, behind a proxy).
    conns: usize,
    /// New-connection bucket.
    tokens: f64,
    last: Instant,
}

/// The shared admission state of the client listener.
pub(super) struct Admission {
    ips: [Mutex<HashMap<IpAddr, PerIp>>; SHARDS],
    body_bytes: AtomicUsize,
    /// Pending connections, oldest first (see [`PendingSlot`]).
    pending: Mutex<VecDeque<Arc<PendingState>>>,
}

/// The address the per-address limits count: IPv6 by /64 (one host
/// usually has a whole /64, so counting single addresses would be no limit).
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        v6 => mask(v6, 64),
    }
}

fn shard_of(key: &IpAddr) -> usize {
    use std::hash::{Hash, Hasher};
    // A fixed hasher: which shard an address lands in only spreads load,
    // and an attacker choosing addresses in one shard gains nothing the
    // per-address limits do not already bound.
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

impl Admission {
    /// Empty state, for one listener.
    pub(super) fn new() -> Arc<Admission> {
        Arc::new(Admission {
            ips: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            body_bytes: AtomicUsize::new(0),
            pending: Mutex::new(VecDeque::new()),
        })
    }

    /// Counts a new connection from `ip` against the per-address limits.
    pub(super) fn admit_ip(self: &Arc<Self>, ip: IpAddr, l: &Limits) -> Result<IpSlot, Refusal> {
        let key = ip_key(ip);
        let now = Instant::now();
        let mut map = self.ips[shard_of(&key)].lock().unwrap_or_else(|p| p.into_inner());
        let e = map.entry(key).or_insert(PerIp { conns: 0, tokens: l.new_connections_per_ip_burst, last: now });
        e.tokens = (e.tokens + now.duration_since(e.last).as_secs_f64() * l.new_connections_per_ip_per_sec)
            .min(l.new_connections_per_ip_burst);
        e.last = now;
        if e.conns >= l.max_connections_per_ip {
            return Err(Refusal::PerIpConnections);
        }
        if e.tokens < 1.0 {
            return Err(Refusal::PerIpRate);
        }
        e.tokens -= 1.0;
        e.conns += 1;
        Ok(IpSlot { adm: self.clone(), key })
    }

    /// Drops the entries of addresses with no connection whose bucket has
    /// refilled: they hold nothing a fresh entry would not. Run once a
    /// second, so the map holds at most the open connections' addresses
    /// plus those of the last `burst / rate` seconds.
    pub(super) fn sweep(&self, l: &Limits) {
        let now = Instant::now();
        let refill = l.new_connections_per_ip_burst / l.new_connections_per_ip_per_sec;
        for shard in &self.ips {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, e| e.conns > 0 || now.duration_since(e.last).as_secs_f64() < refill);
        }
    }

    /// An empty reservation of body bytes, grown as a body arrives.
    pub(super) fn body_permit(self: &Arc<Self>) -> BodyPermit {
        BodyPermit { adm: self.clone(), n: 0 }
    }
}

/// One connection counted against its address; released on drop.
pub(super) struct IpSlot {
    adm: Arc<Admission>,
    key: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.adm.ips[shard_of(&self.key)].lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&self.key) {
            e.conns = e.conns.saturating_sub(1);
        }
    }
}

/// Body bytes held while a body is read, counted in the bytes in flight
/// of all requests; released on drop.
///
/// Counted as they arrive, not by `Content-Length`: a trickling body pins
/// only what it has sent, so filling `max_body_bytes_in_flight` takes
/// really sending that many bytes within `body_timeout_secs`, and a
/// legitimate small push is not refused because of declared sizes.
pub(super) struct BodyPermit {
    adm: Arc<Admission>,
    n: usize,
}

impl BodyPermit {
    /// Adds `more` bytes; `false` (nothing added) when the total in flight
    /// would exceed `limit`.
    pub(super) fn grow(&mut self, more: usize, limit: usize) -> bool {
        let bytes = &self.adm.body_bytes;
        let mut cur = bytes.load(Relaxed);
        loop {
            let Some(next) = cur.checked_add(more).filter(|v| *v <= limit) else {
                return false;
            };
            match bytes.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => {
                    self.n += more;
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        self.adm.body_bytes.fetch_sub(self.n, Relaxed);
    }
}

/// One client connection counted in `max_connections` (and its address's
/// slot); shared by the connection's task and, after an upgrade, the
/// WebSocket's task, and released when the last of them ends.
pub(super) struct ConnSlot {
    app: Arc<App>,
    _ip: Option<IpSlot>,
}

impl ConnSlot {
    /// Counts a connection against `max_connections`.
    pub(super) fn admit(app: &Arc<App>, l: &Limits) -> Result<ConnSlot, Refusal> {
        let m = &app.metrics;
        let before = m.client_connections.fetch_add(1, Relaxed);
        // Built first so that every refusal below releases the count.
        let slot = ConnSlot { app: app.clone(), _ip: None };
        if before >= l.max_connections as u64 {
            return Err(Refusal::MaxConnections);
        }
        Ok(slot)
    }

    /// Attaches the address's slot (released with this one).
    pub(super) fn with_ip(mut self, ip: IpSlot) -> ConnSlot {
        self._ip = Some(ip);
        self
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.app.metrics.client_connections.fetch_sub(1, Relaxed);
    }
}

/// What a pending connection shares with the queue of pending connections:
/// whether it has started a request or proved itself, and the bell that
/// evicts it.
pub(super) struct PendingState {
    released: AtomicBool,
    started: AtomicBool,
    /// Requests in flight: a connection answering one is not evicted.
    in_flight: AtomicU32,
    evict: Notify,
}

/// A connection counted in `max_pending_connections` while it is
/// anonymous: until it makes a server API request whose signature checks,
/// or is upgraded to a WebSocket ([`PendingSlot::release`]; a WebSocket's
/// `auth` is then timed by `auth_timeout_secs`), or it ends. So junk
/// requests on a kept-alive connection do not make it trusted, and the
/// connections an anonymous client can hold are bounded by this cap and
/// `request_head_timeout_secs`, whatever it sends.
///
/// At the cap, a new connection evicts the oldest pending one with no
/// request in flight, rather than being refused: a flood of silent (or
/// idle, junk-request) connections then only shortens how long such a
/// connection may stay, cap ÷ flood rate, while a client that sends its
/// request right after connecting, as every real one does, still gets in.
/// Refusing the newest instead would lock every new client out for as long
/// as the flood lasts. A request in flight is never cut by an eviction.
pub(super) struct PendingSlot {
    app: Arc<App>,
    state: Arc<PendingState>,
}

impl PendingSlot {
    /// Counts a connection against `max_pending_connections`, evicting the
    /// oldest idle pending connection when at the cap.
    pub(super) fn admit(app: &Arc<App>, adm: &Admission, l: &Limits) -> Result<PendingSlot, Refusal> {
        let before = app.metrics.pending_connections.fetch_add(1, Relaxed);
        let state = Arc::new(PendingState {
            released: AtomicBool::new(false),
            started: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            evict: Notify::new(),
        });
        let slot = PendingSlot { app: app.clone(), state: state.clone() };
        let mut queue = adm.pending.lock().unwrap_or_else(|p| p.into_inner());
        // Released entries leave lazily, from the front, so the queue holds
        // at most the accepts since the oldest still-pending connection.
        while queue.front().is_some_and(|f| f.released.load(Relaxed)) {
            queue.pop_front();
        }
        if before >= l.max_pending_connections as u64 {
            // O(pending) at worst, and only at the cap: the front is almost
            // always idle.
            let idle = queue.iter().position(|f| !f.released.load(Relaxed) && f.in_flight.load(Relaxed) == 0);
            match idle.and_then(|i| queue.remove(i)) {
                Some(oldest) => {
                    oldest.evict.notify_one();
                    app.metrics.refused(Refusal::MaxPending);
                }
                // Every pending connection is answering a request: refuse
                // the new one.
                None => return Err(Refusal::MaxPending),
            }
        }
        queue.push_back(state);
        Ok(slot)
    }

    /// A request head arrived: not evicted while it is answered.
    pub(super) fn enter(&self) {
        self.state.started.store(true, Relaxed);
        self.state.in_flight.fetch_add(1, Relaxed);
    }

    /// The request's reply is done.
    pub(super) fn leave(&self) {
        self.state.in_flight.fetch_sub(1, Relaxed);
    }

    /// A signed request passed, or the connection became a WebSocket: no
    /// longer pending (idempotent).
    pub(super) fn release(&self) {
        if !self.state.released.swap(true, Relaxed) {
            self.app.metrics.pending_connections.fetch_sub(1, Relaxed);
        }
    }

    /// Whether the connection has proved itself (see [`PendingSlot::release`]).
    pub(super) fn is_released(&self) -> bool {
        self.state.released.load(Relaxed)
    }

    /// Whether a request head has arrived.
    pub(super) fn is_started(&self) -> bool {
        self.state.started.load(Relaxed)
    }

    /// Resolves when a newer connection evicts this one (see the type docs).
    pub(super) fn evicted(&self) -> tokio::sync::futures::Notified<'_> {
        self.state.evict.notified()
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.release();
    }
}

/// Whether `ip` is one of the configured trusted proxies.
pub(super) fn is_trusted(ip: IpAddr, proxies: &[Cidr]) -> bool {
    proxies.iter().any(|c| c.contains(ip))
}

/// The client address of a request from a trusted proxy: the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy (entries to
/// its left were written by the client and prove nothing). `None` when the
/// header is absent, or every entry is trusted or unreadable up to the
/// first untrusted one (the caller then counts the peer).
pub(super) fn forwarded_client(headers: &HeaderMap, proxies: &[Cidr]) -> Option<IpAddr> {
    // Several X-Forwarded-For lines are one list, in order.
    let lines: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    for entry in lines.iter().rev().flat_map(|l| l.rsplit(',')) {
        let ip: IpAddr = entry.trim().parse().ok()?;
        if !is_trusted(ip, proxies) {
            return Some(ip);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
    }

    #[test]
    fn forwarded_for_takes_the_right_most_untrusted_address() {
        let proxies = cidrs(&["127.0.0.1/32", "10.0.0.0/8"]);
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, 1.2.3.4".parse().unwrap());
        h.append("x-forwarded-for", "10.1.2.3".parse().unwrap());
        assert_eq!(forwarded_client(&h, &proxies), Some("1.2.3.4".parse().unwrap()));
        let mut only_proxies = HeaderMap::new();
        only_proxies.append("x-forwarded-for", "10.0.0.1, 127.0.0.1".parse().unwrap());
        assert_eq!(forwarded_client(&only_proxies, &proxies), None);
        let mut junk = HeaderMap::new();
        junk.append("x-forwarded-for", "1.2.3.4, garbage".parse().unwrap());
        assert_eq!(forwarded_client(&junk, &proxies), None);
        assert_eq!(forwarded_client(&HeaderMap::new(), &proxies), None);
    }

    #[test]
    fn cidrs_match_by_prefix() {
        let c = Cidr::parse("192.168.0.0/16").unwrap();
        assert!(c.contains("192.168.7.9".parse().unwrap()));
        assert!(c.contains("::ffff:192.168.7.9".parse().unwrap()), "IPv4-mapped peers of a [::] listener");
        assert!(!c.contains("192.169.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains("::1".parse().unwrap()));
        for bad in ["1.2.3.4/33", "1.2.3/8", "::/129", "x", "1.2.3.4/"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn per_address_slots_and_buckets() {
        let adm = Admission::new();
        let l = Limits {
            max_connections_per_ip: 2,
            new_connections_per_ip_per_sec: 0.001,
            new_connections_per_ip_burst: 3.0,
            ..Limits::default()
        };
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let same64: IpAddr = "2001:db8::2".parse().unwrap();
        let a = adm.admit_ip(ip, &l).unwrap();
        let _b = adm.admit_ip(same64, &l).unwrap();
        assert_eq!(adm.admit_ip(ip, &l).err(), Some(Refusal::PerIpConnections), "one /64 is one address");
        drop(a);
        let _c = adm.admit_ip(ip, &l).unwrap();
        drop(_c);
        assert_eq!(adm.admit_ip(ip, &l).err(), Some(Refusal::PerIpRate), "burst of 3 spent");
        assert!(adm.admit_ip("2001:db9::1".parse().unwrap(), &l).is_ok(), "another address has its own");
    }

    #[test]
    fn body_budget() {
        let adm = Admission::new();
        let mut a = adm.body_permit();
        assert!(a.grow(400, 1000) && a.grow(200, 1000));
        let mut b = adm.body_permit();
        assert!(!b.grow(500, 1000), "600 + 500 > 1000");
        assert!(b.grow(400, 1000));
        drop(a);
        assert!(b.grow(600, 1000), "a's 600 were released");
    }
}
