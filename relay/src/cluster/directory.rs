//! The presence directory: which users and threads have sockets on which
//! *other* node, kept from their deltas (never by asking everyone).
//!
//! Memory: per node, one map entry per (site, user) with sockets there and
//! per (site, thread) with subscribers there. A push looks up each
//! recipient once per node (nodes are few; recipients per push are few).

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bm_proto::{SiteId, ThreadId, UserId};

use super::wire::{self, Entry, WireError};

#[derive(Default)]
struct SiteDir {
    users: HashMap<UserId, u32>,
    threads: HashMap<ThreadId, u32>,
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

    /// Every node's state as delta chunks of at most `chunk` entries (a
    /// snapshot for a joining node): (node, epoch, seq, entries).
    pub fn export(&self, chunk: usize) -> Vec<(String, u64, u64, Vec<Vec<Entry>>)> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes
            .iter()
            .map(|(name, st)| {
                let mut all = Vec::new();
                for (site, d) in &st.sites {
                    all.extend(d.users.iter().map(|(u, n)| Entry(site.to_string(), 'u', u.get(), *n)));
                    all.extend(d.threads.iter().map(|(t, n)| Entry(site.to_string(), 't', t.get(), *n)));
                }
                let chunks =
                    if all.is_empty() { vec![Vec::new()] } else { all.chunks(chunk).map(<[Entry]>::to_vec).collect() };
                (name.clone(), st.epoch, st.seq, chunks)
            })
            .collect()
    }

    /// Users and threads held for other nodes (for `/metrics`).
    pub fn size(&self) -> (u64, u64) {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let n = nodes.len() as u64;
        let e = nodes.values().flat_map(|s| s.sites.values()).map(|d| (d.users.len() + d.threads.len()) as u64).sum();
        (n, e)
    }
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
        assert_eq!(d.apply("a", 7, 1, false, &[e(1, 2)]).unwrap(), Applied::InOrder);
        assert_eq!(d.routes(&s, &[u1], None)[0].sockets, 2);
        assert_eq!(d.apply("a", 7, 3, false, &[e(2, 1)]).unwrap(), Applied::Gap);
        assert_eq!(d.apply("a", 7, 2, false, &[e(1, 0)]).unwrap(), Applied::Stale);
        assert!(!d.heartbeat("a", 7, 3));
        assert!(d.heartbeat("a", 7, 4), "a heartbeat ahead of the deltas is a gap");
        assert!(d.heartbeat("a", 8, 1), "a new epoch drops the old state");
        assert!(d.online(&s, &[u1]).is_empty());
        assert!(d.apply("a", 8, 2, false, &[Entry("s".into(), 'x', 1, 1)]).is_err());
        assert!(d.apply("a", 8, 2, false, &[Entry("s".into(), 'u', 0, 1)]).is_err());
    }
}
