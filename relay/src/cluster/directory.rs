//! The presence directory: which users and threads have sockets on which
//! *other* node, kept from their deltas (never by asking everyone).
//!
//! Memory: per node, one map entry per (site, user) with sockets there,
//! per (site, thread) with subscribers there, and per (site, thread, user)
//! subscribed there (what a client's `presence` op reads): proportional
//! to the subscriptions, as the node's own table is. A push looks up each
//! recipient once per node (nodes are few; recipients per push are few).

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bm_proto::{SiteId, ThreadId, UserId};

use super::wire::{self, Entry, Member, WireError};

#[derive(Default)]
struct SiteDir {
    users: HashMap<UserId, u32>,
    threads: HashMap<ThreadId, u32>,
    /// Per thread, its subscribed users there and their sockets.
    members: HashMap<ThreadId, HashMap<UserId, u32>>,
}

struct NodeState {
    epoch: u64,
    seq: u64,
    last_seen: Instant,
    sites: HashMap<SiteId, SiteDir>,
}

/// What applying a delta found.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Applied in sequence.
    InOrder,
    /// Applied, but earlier deltas were missed (or the node is new, or
    /// restarted): its whole state should be asked for.
    Gap,
    /// Older than what is held: ignored.
    Stale,
}

/// One node a push must be forwarded to.
pub struct Route {
    /// The node's name.
    pub node: String,
    /// The recipients with sockets there.
    pub to: Vec<u64>,
    /// Sockets there (users' sockets plus the thread's subscribers; a
    /// subscriber that is also a recipient is counted twice).
    pub sockets: u64,
}

/// The other nodes' presence.
#[derive(Default)]
pub struct Directory {
    nodes: RwLock<HashMap<String, NodeState>>,
}

impl Directory {
    /// Applies a delta (or a chunk of a whole state) of `node`.
    pub fn apply(
        &self,
        node: &str,
        epoch: u64,
        seq: u64,
        reset: bool,
        entries: &[Entry],
        members: &[Member],
    ) -> Result<Applied, WireError> {
        // Validate everything before touching the map: a bad entry drops
        // the whole message.
        let mut parsed = Vec::with_capacity(entries.len());
        for Entry(site, kind, id, n) in entries {
            let s = wire::site(site)?;
            match kind {
                'u' => parsed.push((s, Ok(wire::user(*id)?), *n)),
                't' => parsed.push((s, Err(wire::thread(*id)?), *n)),
                _ => return Err(WireError::BadId),
            }
        }
        let mut parsed_members = Vec::with_capacity(members.len());
        for Member(site, thread, user, n) in members {
            parsed_members.push((wire::site(site)?, wire::thread(*thread)?, wire::user(*user)?, *n));
        }
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let fresh = || NodeState { epoch, seq: 0, last_seen: now, sites: HashMap::new() };
        let st = nodes.entry(node.to_string()).or_insert_with(fresh);
        let mut result = Applied::InOrder;
        if st.epoch != epoch {
            // The node restarted: what it had before is gone.
            *st = fresh();
            result = Applied::Gap;
        }
        st.last_seen = now;
        if reset {
            if seq < st.seq {
                return Ok(Applied::Stale);
            }
            st.sites.clear();
            st.seq = seq;
        } else if seq < st.seq {
            return Ok(Applied::Stale);
        } else if seq > st.seq + 1 {
            result = Applied::Gap;
            st.seq = seq;
        } else {
            st.seq = seq;
        }
        for (site, id, n) in parsed {
            let d = st.sites.entry(site).or_default();
            match id {
                Ok(u) if n == 0 => {
                    d.users.remove(&u);
                }
                Ok(u) => {
                    d.users.insert(u, n);
                }
                Err(t) if n == 0 => {
                    d.threads.remove(&t);
                }
                Err(t) => {
                    d.threads.insert(t, n);
                }
            }
        }
        for (site, t, u, n) in parsed_members {
            let d = st.sites.entry(site).or_default();
            if n == 0 {
                if let Some(m) = d.members.get_mut(&t) {
                    m.remove(&u);
                    if m.is_empty() {
                        d.members.remove(&t);
                    }
                }
            } else {
                d.members.entry(t).or_default().insert(u, n);
            }
        }
        Ok(result)
    }

    /// A heartbeat: true when the node is unknown, restarted, or ahead of
    /// what was applied (its state should be asked for).
    pub fn heartbeat(&self, node: &str, epoch: u64, seq: u64) -> bool {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        match nodes.get_mut(node) {
            Some(st) if st.epoch == epoch => {
                st.last_seen = Instant::now();
                seq > st.seq
            }
            Some(st) => {
                *st = NodeState { epoch, seq: 0, last_seen: Instant::now(), sites: HashMap::new() };
                true
            }
            None => {
                nodes.insert(
                    node.to_string(),
                    NodeState { epoch, seq: 0, last_seen: Instant::now(), sites: HashMap::new() },
                );
                true
            }
        }
    }

    /// Drops the nodes not heard from within `timeout`; returns them.
    pub fn expire(&self, timeout: Duration) -> Vec<String> {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> =
            nodes.iter().filter(|(_, s)| s.last_seen.elapsed() > timeout).map(|(k, _)| k.clone()).collect();
        for g in &gone {
            nodes.remove(g);
        }
        gone
    }

    /// Drops every node (all of NATS is gone: their sockets may be anywhere).
    pub fn clear(&self) {
        self.nodes.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The nodes known now.
    pub fn peers(&self) -> Vec<String> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// The nodes a push to `to` (and `thread`'s subscribers) must reach.
    pub fn routes(&self, site: &SiteId, to: &[UserId], thread: Option<ThreadId>) -> Vec<Route> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (name, st) in nodes.iter() {
            let Some(d) = st.sites.get(site) else { continue };
            let mut r = Route { node: name.clone(), to: Vec::new(), sockets: 0 };
            for u in to {
                if let Some(n) = d.users.get(u) {
                    r.to.push(u.get());
                    r.sockets += *n as u64;
                }
            }
            let subs = thread.and_then(|t| d.threads.get(&t)).copied().unwrap_or(0);
            r.sockets += subs as u64;
            if !r.to.is_empty() || subs > 0 {
                out.push(r);
            }
        }
        out
    }

    /// The users among `users` with a socket on another node.
    pub fn online(&self, site: &SiteId, users: &[UserId]) -> HashSet<UserId> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let mut out = HashSet::new();
        for st in nodes.values() {
            if let Some(d) = st.sites.get(site) {
                out.extend(users.iter().filter(|u| d.users.contains_key(u)).copied());
            }
        }
        out
    }

    /// The users subscribed to `thread` on another node (at most `max + 1`
    /// of them are collected: the caller only needs to know there were
    /// more than it lists).
    pub fn thread_users(&self, site: &SiteId, thread: ThreadId, max: usize, out: &mut HashSet<UserId>) {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        for st in nodes.values() {
            let Some(m) = st.sites.get(site).and_then(|d| d.members.get(&thread)) else { continue };
            for u in m.keys() {
                if out.len() > max {
                    return;
                }
                out.insert(*u);
            }
        }
    }

    /// Every node's state as delta chunks of at most `chunk` entries and
    /// `chunk` members each (a snapshot for a joining node): (node, epoch,
    /// seq, chunks).
    #[allow(clippy::type_complexity)]
    pub fn export(&self, chunk: usize) -> Vec<(String, u64, u64, Vec<(Vec<Entry>, Vec<Member>)>)> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes
            .iter()
            .map(|(name, st)| {
                let (mut all, mut mem) = (Vec::new(), Vec::new());
                for (site, d) in &st.sites {
                    all.extend(d.users.iter().map(|(u, n)| Entry(site.to_string(), 'u', u.get(), *n)));
                    all.extend(d.threads.iter().map(|(t, n)| Entry(site.to_string(), 't', t.get(), *n)));
                    for (t, m) in &d.members {
                        mem.extend(m.iter().map(|(u, n)| Member(site.to_string(), t.get(), u.get(), *n)));
                    }
                }
                (name.clone(), st.epoch, st.seq, chunked(all, mem, chunk))
            })
            .collect()
    }

    /// Users and threads held for other nodes (for `/metrics`).
    pub fn size(&self) -> (u64, u64) {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let n = nodes.len() as u64;
        let e = nodes
            .values()
            .flat_map(|s| s.sites.values())
            .map(|d| (d.users.len() + d.threads.len() + d.members.values().map(HashMap::len).sum::<usize>()) as u64)
            .sum();
        (n, e)
    }
}

/// Splits a state or delta into messages of at most `chunk` entries and
/// `chunk` members each; always at least one (a reset needs a message
/// even when the state is empty).
pub fn chunked(e: Vec<Entry>, m: Vec<Member>, chunk: usize) -> Vec<(Vec<Entry>, Vec<Member>)> {
    let chunk = chunk.max(1);
    let n = e.len().div_ceil(chunk).max(m.len().div_ceil(chunk)).max(1);
    let (mut e, mut m) = (e.into_iter(), m.into_iter());
    (0..n).map(|_| (e.by_ref().take(chunk).collect(), m.by_ref().take(chunk).collect())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(u: u64, n: u32) -> Entry {
        Entry("s".into(), 'u', u, n)
    }

    #[test]
    fn deltas_in_order_gaps_and_restarts() {
        let d = Directory::default();
        let s = SiteId::new("s").unwrap();
        let u1 = UserId::new(1).unwrap();
        assert_eq!(d.apply("a", 7, 1, false, &[e(1, 2)], &[]).unwrap(), Applied::InOrder);
        assert_eq!(d.routes(&s, &[u1], None)[0].sockets, 2);
        assert_eq!(d.apply("a", 7, 3, false, &[e(2, 1)], &[]).unwrap(), Applied::Gap);
        assert_eq!(d.apply("a", 7, 2, false, &[e(1, 0)], &[]).unwrap(), Applied::Stale);
        assert!(!d.heartbeat("a", 7, 3));
        assert!(d.heartbeat("a", 7, 4), "a heartbeat ahead of the deltas is a gap");
        assert!(d.heartbeat("a", 8, 1), "a new epoch drops the old state");
        assert!(d.online(&s, &[u1]).is_empty());
        assert!(d.apply("a", 8, 2, false, &[Entry("s".into(), 'x', 1, 1)], &[]).is_err());
        assert!(d.apply("a", 8, 2, false, &[Entry("s".into(), 'u', 0, 1)], &[]).is_err());
    }

    #[test]
    fn members_per_thread_per_node() {
        let d = Directory::default();
        let s = SiteId::new("s").unwrap();
        let m = |t, u, n| Member("s".into(), t, u, n);
        let t7 = ThreadId::new(7).unwrap();
        let users = |d: &Directory, max| {
            let mut out = HashSet::new();
            d.thread_users(&s, t7, max, &mut out);
            let mut v: Vec<u64> = out.into_iter().map(|u| u.get()).collect();
            v.sort_unstable();
            v
        };
        d.apply("a", 1, 1, false, &[], &[m(7, 2, 1), m(7, 3, 2), m(8, 4, 1)]).unwrap();
        d.apply("b", 1, 1, false, &[], &[m(7, 3, 1), m(7, 5, 1)]).unwrap();
        assert_eq!(users(&d, 10), vec![2, 3, 5]);
        assert_eq!(users(&d, 1).len(), 2, "stops once it holds more than max");
        d.apply("a", 1, 2, false, &[], &[m(7, 2, 0)]).unwrap();
        assert_eq!(users(&d, 10), vec![3, 5]);
        assert!(d.apply("a", 1, 3, false, &[], &[m(0, 2, 1)]).is_err(), "a bad thread id drops the message");
        d.apply("b", 1, 2, true, &[], &[]).unwrap();
        assert_eq!(users(&d, 10), vec![3], "a reset replaces the node's members");
        let exported = d.export(1);
        let a = exported.iter().find(|x| x.0 == "a").unwrap();
        assert_eq!(a.3.len(), 2, "one member per chunk: 2 chunks");
        assert_eq!(chunked(vec![], vec![], 8000).len(), 1, "an empty state is still one message");
    }
}
