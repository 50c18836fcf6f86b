//! Routing: which sockets belong to which user and which thread, per site.
//!
//! The relay talks to routing only through the [`Fanout`] trait, so that a
//! cluster broker (a later issue: NATS) can wrap the local table and
//! forward deliveries to other nodes without touching the socket or HTTP
//! code. [`LocalRouter`] is the single-node table.
//!
//! The methods are synchronous on purpose: they run inside a push handler
//! or a socket task without awaiting, so no lock is ever held across an
//! `.await`. A broker implementation would queue what other nodes must see
//! (deliveries, pubs, disconnects) to an async publisher, apply what it
//! receives from them through the same local calls, and answer `presence`
//! from a per-node presence view it keeps up to date in memory.
//!
//! The table is sharded: per site, 16 user shards and 16 thread shards,
//! each a `std::sync::Mutex<HashMap>`. Every operation locks one shard at a
//! time, briefly, and never across an `.await` (nothing here is async), so
//! pushes, subscriptions and socket teardown on different users or threads
//! do not contend. Lock order, where two locks nest: shard, then conn.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bm_proto::{SiteId, ThreadId, UserId};

use crate::conn::{Conn, SubError};
use crate::frame::Frame;
use crate::outbox::{CloseRequest, Enqueued};

/// A node's presence state: (site, user, sockets) and (site, thread,
/// subscribers) and (site, thread, user, that user's sockets subscribed).
pub type Inventory = (Vec<(SiteId, UserId, u32)>, Vec<(SiteId, ThreadId, u32)>, Vec<(SiteId, ThreadId, UserId, u32)>);

/// Number of shards per table; a power of two.
const SHARDS: usize = 16;

/// What one delivery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Users of `to` that had at least one socket the event was queued to.
    pub online: Vec<UserId>,
    /// Sockets the event was queued to.
    pub sockets: u64,
    /// Sockets closed with 4008 because their queue overflowed.
    pub overflowed: u64,
}

/// Why a socket could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// The user already has `max_sockets_per_user` sockets.
    UserFull,
    /// The site already has `max_sockets_per_site` sockets.
    SiteFull,
}

/// Caps checked when a socket registers (0: no cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// Sockets per (site, user).
    pub per_user: usize,
    /// Sockets per site.
    pub per_site: usize,
}

/// The routing interface the relay's sockets and HTTP handlers use.
pub trait Fanout: Send + Sync + 'static {
    /// Adds an authenticated socket under its site and user, unless that
    /// would pass one of `caps` (checked and inserted under one lock, so
    /// concurrent sockets of one user cannot all slip under the cap).
    fn register(&self, conn: &Arc<Conn>, caps: Caps) -> Result<(), RegisterError>;
    /// Removes a socket and all its subscriptions.
    fn unregister(&self, conn: &Arc<Conn>);
    /// Subscribes a socket to a thread with a thread token issued at
    /// `iat`; `Ok(false)` if it already was.
    fn subscribe(&self, conn: &Arc<Conn>, thread: ThreadId, iat: u64, max: usize) -> Result<bool, SubError>;
    /// Unsubscribes; true if it was subscribed.
    fn unsubscribe(&self, conn: &Arc<Conn>, thread: ThreadId) -> bool;
    /// Queues a server push to every socket of `to` and every subscriber of
    /// `thread`, each socket at most once.
    fn deliver(
        &self,
        site: &SiteId,
        to: &[UserId],
        thread: Option<ThreadId>,
        frame: &Frame,
        max_queue: usize,
    ) -> Delivery;
    /// Queues a client `pub` to the thread's subscribers except `sender`.
    fn publish(&self, sender: &Conn, thread: ThreadId, frame: &Frame, max_queue: usize) -> Delivery;
    /// The users among `users` with at least one socket.
    fn presence(&self, site: &SiteId, users: &[UserId]) -> Vec<UserId>;
    /// The users with at least one socket subscribed to `thread`, in
    /// ascending order, at most `max` of them; true when there were more.
    fn thread_presence(&self, site: &SiteId, thread: ThreadId, max: usize) -> (Vec<UserId>, bool);
    /// A `/v1/disconnect` stamped `at`: closes the users' sockets (4003)
    /// whose connection token was issued at or before `at`, or with
    /// `thread` ends their subscriptions to it opened with a thread token
    /// issued at or before `at` and tells them; returns sockets affected.
    /// Tokens issued later were minted after the revocation and stand.
    fn disconnect(
        &self,
        site: &SiteId,
        users: &[UserId],
        thread: Option<ThreadId>,
        at: u64,
        unsub_frame: Option<&Frame>,
        max_queue: usize,
    ) -> u64;
    /// Every registered socket of `site` (or of every site): what a reload
    /// or a shutdown closes, at its own pace.
    fn sockets(&self, site: Option<&SiteId>) -> Vec<Arc<Conn>>;
    /// Counts for `/metrics`: sockets, users online, subscriptions.
    fn counts(&self) -> Counts;
    /// A wait before a registered socket is told `ready`: in a cluster,
    /// until every other node can route to it (docs/PROTOCOL.md,
    /// "Cluster"). `None` (the single node): no wait, no allocation.
    fn routable(&self, _conn: &Arc<Conn>) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        None
    }
    /// The same wait before a `sub` is answered `ok`: in a cluster, until
    /// every other node routes the thread's pushes to this node. `None`
    /// (the single node): no wait, no allocation.
    fn subscribed(
        &self,
        _conn: &Arc<Conn>,
        _thread: ThreadId,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        None
    }
    /// What push results and `/healthz` add about the cluster: `None` for a
    /// single node or a healthy cluster, `Some("degraded")` while NATS is
    /// unreachable.
    fn cluster_status(&self) -> Option<&'static str> {
        None
    }
    /// Appends the cluster's Prometheus lines to `/metrics` (none for a
    /// single node).
    fn cluster_metrics(&self, _out: &mut String) {}
}

/// Gauges for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Registered (authenticated) sockets.
    pub sockets: u64,
    /// Users with at least one socket.
    pub users: u64,
    /// Thread subscriptions, summed over sockets.
    pub subscriptions: u64,
    /// Bytes waiting in the outbound queues of registered sockets.
    pub queue_bytes: u64,
}

/// Lists longer than this also index each socket's position.
const INDEX_AT: usize = 64;

/// The sockets under one key (a user, or a thread's subscribers). A short
/// list (a user's few tabs) is a plain vector, scanned on removal; a list
/// that grows past [`INDEX_AT`] also keeps each socket's position, so one
/// socket leaves a 100 000-subscriber thread in O(1) and the thread's whole
/// teardown is O(n), not O(n²). Fan-out iterates the vector either way.
#[derive(Default)]
struct ConnList {
    conns: Vec<Arc<Conn>>,
    /// Position of each socket id in `conns`, for long lists only. Boxed on
    /// purpose (clippy's `box_collection` notwithstanding): the common
    /// short list then pays 8 bytes for it instead of a 48-byte map.
    #[allow(clippy::box_collection)]
    pos: Option<Box<HashMap<u64, usize>>>,
}

impl ConnList {
    fn len(&self) -> usize {
        self.conns.len()
    }

    fn push(&mut self, conn: Arc<Conn>) {
        if let Some(pos) = &mut self.pos {
            pos.insert(conn.id, self.conns.len());
        }
        self.conns.push(conn);
        if self.pos.is_none() && self.conns.len() > INDEX_AT {
            self.pos = Some(Box::new(self.conns.iter().enumerate().map(|(i, c)| (c.id, i)).collect()));
        }
    }

    fn remove(&mut self, conn_id: u64) -> bool {
        let i = match &mut self.pos {
            Some(pos) => match pos.remove(&conn_id) {
                Some(i) => i,
                None => return false,
            },
            None => match self.conns.iter().position(|c| c.id == conn_id) {
                Some(i) => i,
                None => return false,
            },
        };
        self.conns.swap_remove(i);
        if let (Some(pos), Some(moved)) = (&mut self.pos, self.conns.get(i)) {
            pos.insert(moved.id, i);
        }
        if self.pos.is_some() && self.conns.len() < INDEX_AT / 2 {
            self.pos = None;
        }
        if self.conns.capacity() > 8 && self.conns.len() * 4 < self.conns.capacity() {
            self.conns.shrink_to_fit();
        }
        true
    }
}

struct Shards<K> {
    maps: [Mutex<HashMap<K, ConnList>>; SHARDS],
    hasher: std::collections::hash_map::RandomState,
}

impl<K: Hash + Eq + Copy> Shards<K> {
    fn new() -> Self {
        Shards { maps: std::array::from_fn(|_| Mutex::new(HashMap::new())), hasher: Default::default() }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, ConnList>> {
        let i = (self.hasher.hash_one(key) as usize) & (SHARDS - 1);
        self.maps[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove(&self, key: K, conn_id: u64) -> bool {
        let mut map = self.shard(&key);
        let Some(list) = map.get_mut(&key) else { return false };
        if !list.remove(conn_id) {
            return false;
        }
        if list.len() == 0 {
            map.remove(&key);
        }
        true
    }

    /// Runs `f` on the key's sockets, under its shard's lock.
    fn with<R>(&self, key: K, f: impl FnOnce(&[Arc<Conn>]) -> R) -> R {
        let map = self.shard(&key);
        f(map.get(&key).map(|l| l.conns.as_slice()).unwrap_or(&[]))
    }

    fn all(&self) -> Vec<Arc<Conn>> {
        let mut out = Vec::new();
        for m in &self.maps {
            let m = m.lock().unwrap_or_else(|p| p.into_inner());
            for list in m.values() {
                out.extend(list.conns.iter().cloned());
            }
        }
        out
    }

    fn key_count(&self) -> u64 {
        self.maps.iter().map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).len() as u64).sum()
    }

    fn queue_bytes(&self) -> u64 {
        self.maps
            .iter()
            .map(|m| {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                m.values().flat_map(|l| l.conns.iter()).map(|c| c.queued_bytes() as u64).sum::<u64>()
            })
            .sum()
    }

    fn value_count(&self) -> u64 {
        self.maps
            .iter()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).values().map(|l| l.len() as u64).sum::<u64>())
            .sum()
    }
}

struct SiteRoutes {
    users: Shards<UserId>,
    threads: Shards<ThreadId>,
    /// Registered sockets of the site (the per-site cap).
    sockets: AtomicUsize,
}

/// The single-node routing table.
#[derive(Default)]
pub struct LocalRouter {
    sites: RwLock<HashMap<SiteId, Arc<SiteRoutes>>>,
}

impl LocalRouter {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn site(&self, site: &SiteId) -> Option<Arc<SiteRoutes>> {
        self.sites.read().unwrap_or_else(|p| p.into_inner()).get(site).cloned()
    }

    fn site_or_create(&self, site: &SiteId) -> Arc<SiteRoutes> {
        if let Some(s) = self.site(site) {
            return s;
        }
        self.sites
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(site.clone())
            .or_insert_with(|| {
                Arc::new(SiteRoutes { users: Shards::new(), threads: Shards::new(), sockets: AtomicUsize::new(0) })
            })
            .clone()
    }
}

impl LocalRouter {
    /// Sockets of `user` that are not closing (the cluster's presence
    /// directory publishes this count).
    pub fn user_sockets(&self, site: &SiteId, user: UserId) -> u32 {
        self.site(site)
            .map(|r| r.users.with(user, |c| c.iter().filter(|c| c.close_requested().is_none()).count() as u32))
            .unwrap_or(0)
    }

    /// Subscribers of `thread` here.
    pub fn thread_sockets(&self, site: &SiteId, thread: ThreadId) -> u32 {
        self.site(site).map(|r| r.threads.with(thread, |c| c.len() as u32)).unwrap_or(0)
    }

    /// Sockets of `user` subscribed to `thread` here (the cluster's
    /// directory publishes this count). Read from the user's few sockets
    /// (at most `max_sockets_per_user`), not from the thread's list, which
    /// may hold 100 000: one change costs O(the user's sockets).
    pub fn member_sockets(&self, site: &SiteId, thread: ThreadId, user: UserId) -> u32 {
        self.site(site)
            .map(|r| r.users.with(user, |c| c.iter().filter(|c| c.is_subscribed(thread)).count() as u32))
            .unwrap_or(0)
    }

    /// Every (site, user, sockets) and (site, thread, subscribers) held
    /// here: the node's own presence state, republished whole only after a
    /// NATS outage or when a peer missed a delta.
    pub fn inventory(&self) -> Inventory {
        let sites: Vec<(SiteId, Arc<SiteRoutes>)> =
            self.sites.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let (mut users, mut threads, mut members) = (Vec::new(), Vec::new(), Vec::new());
        for (id, s) in sites {
            for m in &s.users.maps {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                users.extend(m.iter().map(|(u, l)| (id.clone(), *u, l.len() as u32)));
            }
            for m in &s.threads.maps {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                for (t, l) in m.iter() {
                    threads.push((id.clone(), *t, l.len() as u32));
                    let mut per_user: HashMap<UserId, u32> = HashMap::new();
                    for c in &l.conns {
                        *per_user.entry(c.user).or_default() += 1;
                    }
                    members.extend(per_user.into_iter().map(|(u, n)| (id.clone(), *t, u, n)));
                }
            }
        }
        (users, threads, members)
    }
}

fn queue(conn: &Conn, frame: &Frame, max_queue: usize, d: &mut Delivery) -> bool {
    match conn.enqueue(frame, max_queue) {
        Enqueued::Yes => {
            d.sockets += 1;
            true
        }
        Enqueued::Overflow => {
            d.overflowed += 1;
            false
        }
        Enqueued::Closing => false,
    }
}

/// The `max` lowest of `users`, ascending, and whether there were more:
/// the shape of a `presence` op's answer for one thread.
pub fn first_users(users: HashSet<UserId>, max: usize) -> (Vec<UserId>, bool) {
    let mut users: Vec<UserId> = users.into_iter().collect();
    users.sort_unstable();
    let more = users.len() > max;
    users.truncate(max);
    (users, more)
}

impl Fanout for LocalRouter {
    fn register(&self, conn: &Arc<Conn>, caps: Caps) -> Result<(), RegisterError> {
        let site = self.site_or_create(&conn.site);
        let before = site.sockets.fetch_add(1, Ordering::AcqRel);
        if caps.per_site > 0 && before >= caps.per_site {
            site.sockets.fetch_sub(1, Ordering::AcqRel);
            return Err(RegisterError::SiteFull);
        }
        let mut map = site.users.shard(&conn.user);
        let list = map.entry(conn.user).or_default();
        if caps.per_user > 0 && list.len() >= caps.per_user {
            drop(map);
            site.sockets.fetch_sub(1, Ordering::AcqRel);
            return Err(RegisterError::UserFull);
        }
        list.push(conn.clone());
        Ok(())
    }

    fn unregister(&self, conn: &Arc<Conn>) {
        let Some(site) = self.site(&conn.site) else { return };
        if site.users.remove(conn.user, conn.id) {
            site.sockets.fetch_sub(1, Ordering::AcqRel);
        }
        for t in conn.take_subs() {
            site.threads.remove(t, conn.id);
        }
    }

    fn subscribe(&self, conn: &Arc<Conn>, thread: ThreadId, iat: u64, max: usize) -> Result<bool, SubError> {
        let site = self.site_or_create(&conn.site);
        let mut map = site.threads.shard(&thread);
        match conn.add_sub(thread, iat, max) {
            Ok(true) => {
                map.entry(thread).or_default().push(conn.clone());
                Ok(true)
            }
            other => other,
        }
    }

    fn unsubscribe(&self, conn: &Arc<Conn>, thread: ThreadId) -> bool {
        let Some(site) = self.site(&conn.site) else { return false };
        let removed = site.threads.remove(thread, conn.id);
        conn.remove_sub(thread) || removed
    }

    fn deliver(
        &self,
        site: &SiteId,
        to: &[UserId],
        thread: Option<ThreadId>,
        frame: &Frame,
        max_queue: usize,
    ) -> Delivery {
        let mut d = Delivery::default();
        let Some(routes) = self.site(site) else { return d };
        for &user in to {
            let mut any = false;
            routes.users.with(user, |conns| {
                for c in conns {
                    any |= queue(c, frame, max_queue, &mut d);
                }
            });
            if any {
                d.online.push(user);
            }
        }
        if let Some(t) = thread {
            // A subscriber whose user is in `to` already has it on every
            // socket: skip it, so each socket gets the event once.
            let big = (to.len() > 16).then(|| to.iter().copied().collect::<HashSet<_>>());
            let in_to = |u: UserId| match &big {
                Some(set) => set.contains(&u),
                None => to.contains(&u),
            };
            routes.threads.with(t, |conns| {
                for c in conns {
                    if !in_to(c.user) {
                        queue(c, frame, max_queue, &mut d);
                    }
                }
            });
        }
        d
    }

    fn publish(&self, sender: &Conn, thread: ThreadId, frame: &Frame, max_queue: usize) -> Delivery {
        let mut d = Delivery::default();
        let Some(routes) = self.site(&sender.site) else { return d };
        routes.threads.with(thread, |conns| {
            for c in conns {
                if c.id != sender.id {
                    queue(c, frame, max_queue, &mut d);
                }
            }
        });
        d
    }

    fn presence(&self, site: &SiteId, users: &[UserId]) -> Vec<UserId> {
        let Some(routes) = self.site(site) else { return Vec::new() };
        let mut seen = HashSet::new();
        users
            .iter()
            .copied()
            .filter(|u| seen.insert(*u) && routes.users.with(*u, |c| c.iter().any(|c| c.close_requested().is_none())))
            .collect()
    }

    fn thread_presence(&self, site: &SiteId, thread: ThreadId, max: usize) -> (Vec<UserId>, bool) {
        let Some(routes) = self.site(site) else { return (Vec::new(), false) };
        // Stops at `max + 1` distinct users: a 100 000-subscriber thread
        // costs a bounded scan, not a set of every member.
        let mut seen = HashSet::new();
        routes.threads.with(thread, |conns| {
            for c in conns {
                if seen.len() > max {
                    break;
                }
                if c.close_requested().is_none() {
                    seen.insert(c.user);
                }
            }
        });
        first_users(seen, max)
    }

    fn disconnect(
        &self,
        site: &SiteId,
        users: &[UserId],
        thread: Option<ThreadId>,
        at: u64,
        unsub_frame: Option<&Frame>,
        max_queue: usize,
    ) -> u64 {
        let Some(routes) = self.site(site) else { return 0 };
        let mut n = 0;
        let mut seen = HashSet::new();
        for &u in users.iter().filter(|u| seen.insert(**u)) {
            let conns: Vec<Arc<Conn>> = routes.users.with(u, |c| c.to_vec());
            for c in conns {
                match thread {
                    None => {
                        if c.iat() <= at
                            && c.request_close(CloseRequest::new(
                                bm_proto::frames::close::REVOKED,
                                "revoked by the server",
                            ))
                        {
                            n += 1;
                        }
                    }
                    Some(t) => {
                        if c.remove_sub_if(t, |iat| iat <= at) {
                            routes.threads.remove(t, c.id);
                            n += 1;
                            if let Some(f) = unsub_frame {
                                c.enqueue(f, max_queue);
                            }
                        }
                    }
                }
            }
        }
        n
    }

    fn sockets(&self, site: Option<&SiteId>) -> Vec<Arc<Conn>> {
        match site {
            Some(site) => self.site(site).map(|r| r.users.all()).unwrap_or_default(),
            None => {
                let sites: Vec<Arc<SiteRoutes>> =
                    self.sites.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
                sites.iter().flat_map(|s| s.users.all()).collect()
            }
        }
    }

    fn counts(&self) -> Counts {
        let sites: Vec<Arc<SiteRoutes>> =
            self.sites.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let mut c = Counts::default();
        for s in sites {
            c.sockets += s.users.value_count();
            c.users += s.users.key_count();
            c.subscriptions += s.threads.value_count();
            c.queue_bytes += s.users.queue_bytes();
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> SiteId {
        SiteId::new("s").unwrap()
    }
    fn u(n: u64) -> UserId {
        UserId::new(n).unwrap()
    }
    fn t(n: u64) -> ThreadId {
        ThreadId::new(n).unwrap()
    }
    fn conn(r: &LocalRouter, user: u64) -> Arc<Conn> {
        let c = Arc::new(Conn::new(site(), u(user)));
        r.register(&c, Caps::default()).unwrap();
        c
    }
    fn drain(c: &Conn) -> usize {
        let mut n = 0;
        while c.pop().is_some() {
            n += 1;
        }
        n
    }

    #[test]
    fn to_and_thread_union_without_duplicates() {
        let r = LocalRouter::new();
        let a1 = conn(&r, 1);
        let a2 = conn(&r, 1);
        let b = conn(&r, 2);
        let c = conn(&r, 3);
        for x in [&a1, &b, &c] {
            r.subscribe(x, t(9), 0, 10).unwrap();
        }
        let d = r.deliver(&site(), &[u(1), u(4)], Some(t(9)), &Frame::from("x"), 1000);
        assert_eq!(d.online, vec![u(1)]);
        assert_eq!(d.sockets, 4);
        assert_eq!((drain(&a1), drain(&a2), drain(&b), drain(&c)), (1, 1, 1, 1));
    }

    #[test]
    fn publish_skips_sender_and_unregister_cleans_up() {
        let r = LocalRouter::new();
        let a = conn(&r, 1);
        let b = conn(&r, 2);
        r.subscribe(&a, t(1), 0, 10).unwrap();
        r.subscribe(&b, t(1), 0, 10).unwrap();
        assert_eq!(r.publish(&a, t(1), &Frame::from("p"), 100).sockets, 1);
        assert_eq!((drain(&a), drain(&b)), (0, 1));
        assert_eq!(r.counts(), Counts { sockets: 2, users: 2, subscriptions: 2, queue_bytes: 0 });
        r.unregister(&b);
        assert_eq!(r.counts(), Counts { sockets: 1, users: 1, subscriptions: 1, queue_bytes: 0 });
        assert_eq!(r.presence(&site(), &[u(1), u(2), u(1)]), vec![u(1)]);
    }

    #[test]
    fn disconnect_thread_revokes_and_tells() {
        let r = LocalRouter::new();
        let a = conn(&r, 1);
        r.subscribe(&a, t(5), 0, 10).unwrap();
        let unsub = Frame::from("unsub");
        assert_eq!(r.disconnect(&site(), &[u(1)], Some(t(5)), 0, Some(&unsub), 100), 1);
        assert!(!a.is_subscribed(t(5)));
        assert_eq!(a.pop().as_ref().map(Frame::payload_text), Some("unsub"));
        assert_eq!(r.deliver(&site(), &[], Some(t(5)), &Frame::from("x"), 100).sockets, 0);
        assert_eq!(r.disconnect(&site(), &[u(1)], None, 0, None, 100), 1);
        assert_eq!(a.close_requested().unwrap().code, 4003);
    }

    #[test]
    fn thread_presence_lists_live_subscribers_once_and_bounded() {
        let r = LocalRouter::new();
        let a1 = conn(&r, 1);
        let a2 = conn(&r, 1);
        let b = conn(&r, 2);
        let c = conn(&r, 3);
        let _d = conn(&r, 4);
        for x in [&a1, &a2, &b, &c] {
            r.subscribe(x, t(7), 0, 10).unwrap();
        }
        assert_eq!(r.thread_presence(&site(), t(7), 10), (vec![u(1), u(2), u(3)], false));
        assert_eq!(r.thread_presence(&site(), t(7), 2), (vec![u(1), u(2)], true));
        assert_eq!(r.member_sockets(&site(), t(7), u(1)), 2);
        c.request_close(CloseRequest::new(4003, "x"));
        assert_eq!(r.thread_presence(&site(), t(7), 10).0, vec![u(1), u(2)], "a closing socket is not online");
        r.unsubscribe(&a1, t(7));
        assert_eq!(r.member_sockets(&site(), t(7), u(1)), 1);
        r.unregister(&a2);
        assert_eq!(r.member_sockets(&site(), t(7), u(1)), 0);
        assert_eq!(r.thread_presence(&site(), t(7), 10).0, vec![u(2)]);
        assert_eq!(r.thread_presence(&site(), t(8), 10), (vec![], false));
        let (_, _, members) = r.inventory();
        let mut members: Vec<(u64, u64, u32)> = members.iter().map(|(_, t, u, n)| (t.get(), u.get(), *n)).collect();
        members.sort_unstable();
        assert_eq!(members, vec![(7, 2, 1), (7, 3, 1)], "the closing socket is listed until it unregisters");
    }

    #[test]
    fn sites_are_isolated() {
        let r = LocalRouter::new();
        let _a = conn(&r, 1);
        let other = SiteId::new("other").unwrap();
        assert_eq!(r.deliver(&other, &[u(1)], None, &Frame::from("x"), 100).sockets, 0);
        assert!(r.presence(&other, &[u(1)]).is_empty());
    }

    #[test]
    fn overflow_is_counted_not_silent() {
        let r = LocalRouter::new();
        let a = conn(&r, 1);
        let f = Frame::from("0123456789");
        assert_eq!(r.deliver(&site(), &[u(1)], None, &f, 15).sockets, 1);
        let d = r.deliver(&site(), &[u(1)], None, &f, 15);
        assert_eq!((d.sockets, d.overflowed), (0, 1));
        assert_eq!(a.close_requested().unwrap().code, 4008);
    }

    /// A disconnect stamped `at` ends only what tokens issued at or before
    /// `at` opened: a replay of an old request leaves later sockets and
    /// subscriptions alone.
    #[test]
    fn disconnect_spares_tokens_issued_after_it() {
        let r = LocalRouter::new();
        let old = Arc::new(Conn::with_outbox(site(), u(1), 100, Arc::new(crate::outbox::Outbox::new(None))));
        let new = Arc::new(Conn::with_outbox(site(), u(1), 200, Arc::new(crate::outbox::Outbox::new(None))));
        for c in [&old, &new] {
            r.register(c, Caps::default()).unwrap();
        }
        r.subscribe(&old, t(5), 100, 10).unwrap();
        r.subscribe(&new, t(5), 200, 10).unwrap();
        assert_eq!(r.disconnect(&site(), &[u(1)], Some(t(5)), 150, None, 100), 1);
        assert!(!old.is_subscribed(t(5)) && new.is_subscribed(t(5)));
        assert_eq!(r.disconnect(&site(), &[u(1)], None, 150, None, 100), 1);
        assert!(old.close_requested().is_some() && new.close_requested().is_none());
    }

    #[test]
    fn caps_per_user_and_site() {
        let r = LocalRouter::new();
        let caps = Caps { per_user: 2, per_site: 3 };
        let mk = |user| Arc::new(Conn::new(site(), u(user)));
        let (a1, a2, a3) = (mk(1), mk(1), mk(1));
        assert_eq!(r.register(&a1, caps), Ok(()));
        assert_eq!(r.register(&a2, caps), Ok(()));
        assert_eq!(r.register(&a3, caps), Err(RegisterError::UserFull));
        let (b1, c1) = (mk(2), mk(3));
        assert_eq!(r.register(&b1, caps), Ok(()));
        assert_eq!(r.register(&c1, caps), Err(RegisterError::SiteFull));
        r.unregister(&a1);
        assert_eq!(r.register(&c1, caps), Ok(()), "a freed slot is reusable");
        r.unregister(&a3);
        assert_eq!(r.counts().sockets, 3, "unregistering a socket that never registered changes nothing");
    }

    /// A thread with many subscribers indexes positions; removals in any
    /// order keep the list and the index consistent, and the list shrinks
    /// back to a plain vector.
    #[test]
    fn long_lists_remove_by_index() {
        let mut list = ConnList::default();
        let conns: Vec<Arc<Conn>> = (0..1000).map(|i| Arc::new(Conn::new(site(), u(i + 1)))).collect();
        for c in &conns {
            list.push(c.clone());
        }
        assert!(list.pos.is_some());
        // Remove in a scrambled order.
        let mut order: Vec<usize> = (0..1000).collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for (n, &i) in order.iter().enumerate() {
            assert!(list.remove(conns[i].id));
            assert!(!list.remove(conns[i].id), "removed twice");
            if let Some(pos) = &list.pos {
                assert_eq!(pos.len(), list.len());
                for (k, c) in list.conns.iter().enumerate() {
                    assert_eq!(pos.get(&c.id), Some(&k));
                }
            }
            assert_eq!(list.len(), 999 - n);
        }
        assert!(list.pos.is_none());
    }
}
