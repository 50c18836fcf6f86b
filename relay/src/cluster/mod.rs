//! Several relays as one, over core NATS (docs/PROTOCOL.md, "Cluster").
//!
//! | module | what |
//! |---|---|
//! | [`wire`] | subjects, messages, their MAC |
//! | [`directory`] | the other nodes' presence, kept from their deltas |
//! | [`link`] | the NATS connection and the tasks: receive, publish, deltas, heartbeats |
//! | this file | [`ClusterRouter`]: the [`Fanout`] over the [`LocalRouter`] |
//!
//! Every routing call runs on the local table first, exactly as on a
//! single node, then queues what other nodes must see to the publisher
//! task (a bounded channel; nothing awaits NATS on a push's path). Only
//! sealed frames and routing ids cross NATS; nothing is stored anywhere
//! (core NATS, no JetStream, no KV).

pub mod directory;
pub mod link;
pub mod wire;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bm_proto::{SiteId, ThreadId, UserId};
use bytes::Bytes;
use tokio::sync::{mpsc, watch, Notify};

use crate::config::{ClusterConfig, Config};
use crate::conn::{Conn, SubError};
use crate::frame::Frame;
use crate::router::{Caps, Counts, Delivery, Fanout, LocalRouter, RegisterError};
use crate::state::App;
use directory::Directory;
use wire::{ClusterKey, Msg};

/// Longest a socket's `ready` (or a `sub`'s `ok`) waits for the other
/// nodes to acknowledge its presence (the stated lag bound; past it the
/// reply goes anyway and `bm_relay_cluster_ready_unconfirmed_total`, or
/// `..._sub_unconfirmed_total`, counts it).
pub const READY_WAIT: Duration = Duration::from_secs(1);

/// How long a starting node that cannot reach NATS reports "syncing"
/// (503) before it reports "degraded" and serves its own sockets.
pub const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// Messages waiting for the publisher task; past this, cluster messages
/// are dropped and counted (a push's own sockets are never held back).
const OUT_QUEUE: usize = 65_536;

/// Presence keys changed since the last delta.
#[derive(Default)]
struct Dirty {
    users: HashSet<(SiteId, UserId)>,
    threads: HashSet<(SiteId, ThreadId)>,
    /// (thread, user) pairs whose subscriptions here changed.
    members: HashSet<(SiteId, ThreadId, UserId)>,
    /// A socket waits for this delta's acknowledgements.
    ack: bool,
    /// Republish the whole state (after an outage, or asked by a peer).
    full: bool,
    /// The seq the next delta will carry.
    next_seq: u64,
}

/// Counters of the cluster, for `/metrics`.
#[derive(Default)]
pub struct ClusterStats {
    /// Messages queued for NATS, by kind.
    pub sent_deliveries: AtomicU64,
    /// Deltas (and state chunks) sent.
    pub sent_deltas: AtomicU64,
    /// Messages received and applied.
    pub received: AtomicU64,
    /// Messages dropped: bad MAC, malformed, unknown ids.
    pub rejected: AtomicU64,
    /// Messages not queued because the publisher queue was full.
    pub dropped: AtomicU64,
    /// Sockets told `ready` before every node acknowledged them.
    pub ready_unconfirmed: AtomicU64,
    /// `sub`s answered `ok` before every node acknowledged them.
    pub sub_unconfirmed: AtomicU64,
    /// Nodes dropped from presence for silence.
    pub nodes_expired: AtomicU64,
    /// Whole-state republishes of this node.
    pub full_republishes: AtomicU64,
}

/// The [`Fanout`] of a cluster node.
pub struct ClusterRouter {
    /// This node's own sockets.
    pub local: Arc<LocalRouter>,
    /// This node's name (a NATS subject token).
    pub me: String,
    /// Random per process start: a restarted node is a new epoch.
    pub epoch: u64,
    cfg: ClusterConfig,
    dir: Directory,
    out: mpsc::Sender<(String, Bytes)>,
    out_rx: Mutex<Option<mpsc::Receiver<(String, Bytes)>>>,
    dirty: Mutex<Dirty>,
    dirty_notify: Notify,
    /// The seq of the last delta handed to the publisher.
    published: AtomicU64,
    /// Acknowledged seq per peer; bumped on every ack.
    acks: Mutex<std::collections::HashMap<String, u64>>,
    ack_tick: watch::Sender<u64>,
    connected: AtomicBool,
    synced: AtomicBool,
    /// When this node started: it reports "syncing" (not ready) until its
    /// first sync, or "degraded" once [`STARTUP_WAIT`] has passed without
    /// reaching NATS.
    started: std::time::Instant,
    /// The snapshot asked for has fully arrived.
    snap_done: AtomicBool,
    /// Current key first, then the one before a reload.
    keys: RwLock<Vec<ClusterKey>>,
    app: OnceLock<Arc<App>>,
    client: OnceLock<async_nats::Client>,
    /// Disconnects made while NATS was unreachable, sent when it returns.
    pending: Mutex<Vec<Msg>>,
    /// Counters.
    pub stats: ClusterStats,
    this: std::sync::Weak<ClusterRouter>,
}

impl ClusterRouter {
    /// A node for `cfg` over a new local table (not connected yet: see
    /// [`link::start`]).
    pub fn new(cfg: ClusterConfig, config: &Config) -> Arc<ClusterRouter> {
        let (out, rx) = mpsc::channel(OUT_QUEUE);
        let mut e = [0u8; 8];
        // A clock-based epoch if the OS has no randomness to give.
        if getrandom::fill(&mut e).is_err() {
            e = (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1))
            .to_be_bytes();
        }
        Arc::new_cyclic(|this| ClusterRouter {
            this: this.clone(),
            local: Arc::new(LocalRouter::new()),
            me: cfg.node_name.clone(),
            epoch: u64::from_be_bytes(e) | 1,
            cfg,
            dir: Directory::default(),
            out,
            out_rx: Mutex::new(Some(rx)),
            dirty: Mutex::new(Dirty { next_seq: 1, ..Dirty::default() }),
            dirty_notify: Notify::new(),
            published: AtomicU64::new(0),
            acks: Mutex::new(Default::default()),
            ack_tick: watch::channel(0).0,
            connected: AtomicBool::new(false),
            synced: AtomicBool::new(false),
            started: std::time::Instant::now(),
            snap_done: AtomicBool::new(false),
            keys: RwLock::new(vec![ClusterKey::derive(config)]),
            app: OnceLock::new(),
            client: OnceLock::new(),
            pending: Mutex::new(Vec::new()),
            stats: ClusterStats::default(),
        })
    }

    /// After a reload: the relay keys (hence the cluster key) may have
    /// changed; the previous key is still accepted until the next reload.
    pub fn rekey(&self, config: &Config) {
        let k = ClusterKey::derive(config);
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if keys[0] != k {
            let old = keys[0].clone();
            *keys = vec![k, old];
        }
    }

    /// At the end of a graceful shutdown: lets the last delta (its sockets
    /// gone) reach NATS, so peers drop them now rather than after
    /// `node_timeout_secs`. Bounded: at most about a second.
    pub async fn leave(&self) {
        tokio::time::sleep(link::DELTA_EVERY * 10).await;
        if let Some(c) = self.client.get() {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.flush()).await;
        }
    }

    fn key(&self) -> ClusterKey {
        self.keys.read().unwrap_or_else(|p| p.into_inner())[0].clone()
    }

    /// True while connected to a NATS server.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Acquire)
    }

    /// True once the first snapshot arrived (or no peer could give one).
    pub fn is_synced(&self) -> bool {
        self.synced.load(Acquire)
    }

    /// Queues a message for the publisher; never waits.
    fn send(&self, subject: String, msg: &Msg, body: &[u8]) {
        let bytes = wire::encode(&self.key(), &subject, msg, body);
        if self.out.try_send((subject, bytes)).is_err() {
            self.stats.dropped.fetch_add(1, Relaxed);
        }
    }

    fn mark(&self, f: impl FnOnce(&mut Dirty)) -> u64 {
        let seq = {
            let mut d = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut d);
            d.next_seq
        };
        self.dirty_notify.notify_one();
        seq
    }

    fn mark_conn(&self, conn: &Conn, threads: &[ThreadId]) {
        self.mark(|d| {
            d.users.insert((conn.site.clone(), conn.user));
            for t in threads {
                d.threads.insert((conn.site.clone(), *t));
                d.members.insert((conn.site.clone(), *t, conn.user));
            }
        });
    }

    /// After a disconnect (ours, or a peer's `dis`) applied to the local
    /// table: what it changed goes into the next delta. With a thread, its
    /// subscriber count and the users' memberships of it (their sockets'
    /// unsubscription went around `unsubscribe`); without, the users'
    /// sockets (their closing unregisters them, which marks the rest).
    fn mark_disconnected(&self, site: &SiteId, users: &[UserId], thread: Option<ThreadId>) {
        self.mark(|d| match thread {
            Some(t) => {
                d.threads.insert((site.clone(), t));
                d.members.extend(users.iter().map(|u| (site.clone(), t, *u)));
            }
            None => d.users.extend(users.iter().map(|u| (site.clone(), *u))),
        });
    }

    /// The wait behind [`Fanout::routable`] and [`Fanout::subscribed`]:
    /// `mark` puts the key again into the next delta, flagged `ack`
    /// (whatever was flushed since the change itself), and the future ends
    /// once every known peer acknowledged that delta, or after
    /// [`READY_WAIT`] (counted in `unconfirmed`). `None`, at no cost, when
    /// there is no peer to wait for or NATS is unreachable.
    fn acked(
        &self,
        mark: impl FnOnce(&mut Dirty),
        unconfirmed: fn(&ClusterStats) -> &AtomicU64,
    ) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        if !self.is_connected() || self.dir.peers().is_empty() {
            return None;
        }
        let seq = self.mark(|d| {
            mark(d);
            d.ack = true;
        });
        let me = self.this.upgrade()?;
        let mut tick = self.ack_tick.subscribe();
        Some(Box::pin(async move {
            let waited = tokio::time::timeout(READY_WAIT, async {
                while me.is_connected() && !me.all_acked(seq) {
                    if tick.changed().await.is_err() {
                        return;
                    }
                }
            })
            .await;
            if waited.is_err() {
                unconfirmed(&me.stats).fetch_add(1, Relaxed);
            }
        }))
    }

    /// True when every known peer acknowledged deltas up to `seq`.
    fn all_acked(&self, seq: u64) -> bool {
        let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        self.dir.peers().iter().all(|p| acks.get(p).is_some_and(|a| *a >= seq))
    }
}

impl Fanout for ClusterRouter {
    fn register(&self, conn: &Arc<Conn>, caps: Caps) -> Result<(), RegisterError> {
        self.local.register(conn, caps)?;
        self.mark_conn(conn, &[]);
        Ok(())
    }

    fn unregister(&self, conn: &Arc<Conn>) {
        let threads = conn.threads();
        self.local.unregister(conn);
        self.mark_conn(conn, &threads);
    }

    fn subscribe(&self, conn: &Arc<Conn>, thread: ThreadId, iat: u64, max: usize) -> Result<bool, SubError> {
        let r = self.local.subscribe(conn, thread, iat, max)?;
        if r {
            self.mark_conn(conn, &[thread]);
        }
        Ok(r)
    }

    fn unsubscribe(&self, conn: &Arc<Conn>, thread: ThreadId) -> bool {
        let r = self.local.unsubscribe(conn, thread);
        self.mark_conn(conn, &[thread]);
        r
    }

    fn deliver(
        &self,
        site: &SiteId,
        to: &[UserId],
        thread: Option<ThreadId>,
        frame: &Frame,
        max_queue: usize,
    ) -> Delivery {
        let mut d = self.local.deliver(site, to, thread, frame, max_queue);
        if !self.is_connected() {
            return d;
        }
        let routes = self.dir.routes(site, to, thread);
        if routes.is_empty() {
            return d;
        }
        let mut online: HashSet<UserId> = d.online.iter().copied().collect();
        // With a thread the receiver needs every recipient, to skip the
        // subscribers that get the event as recipients (each socket once).
        let all_to: Vec<u64> = if thread.is_some() { to.iter().map(|u| u.get()).collect() } else { Vec::new() };
        for r in routes {
            for u in &r.to {
                if let Ok(u) = UserId::new(*u) {
                    online.insert(u);
                }
            }
            d.sockets += r.sockets;
            let msg = Msg::Deliver {
                site: site.to_string(),
                to: if thread.is_some() { all_to.clone() } else { r.to },
                thread: thread.map(|t| t.get()),
            };
            self.send(wire::node(&r.node), &msg, frame.as_bytes());
            self.stats.sent_deliveries.fetch_add(1, Relaxed);
        }
        let mut seen = HashSet::new();
        d.online = to.iter().copied().filter(|u| online.contains(u) && seen.insert(*u)).collect();
        d
    }

    fn publish(&self, sender: &Conn, thread: ThreadId, frame: &Frame, max_queue: usize) -> Delivery {
        let mut d = self.local.publish(sender, thread, frame, max_queue);
        if !self.is_connected() {
            return d;
        }
        for r in self.dir.routes(&sender.site, &[], Some(thread)) {
            d.sockets += r.sockets;
            let msg = Msg::Publish { site: sender.site.to_string(), thread: thread.get() };
            self.send(wire::node(&r.node), &msg, frame.as_bytes());
            self.stats.sent_deliveries.fetch_add(1, Relaxed);
        }
        d
    }

    fn presence(&self, site: &SiteId, users: &[UserId]) -> Vec<UserId> {
        // Cut off from NATS, the directory is stale: this node's own answer.
        if !self.is_connected() {
            return self.local.presence(site, users);
        }
        let local: HashSet<UserId> = self.local.presence(site, users).into_iter().collect();
        let remote = self.dir.online(site, users);
        let mut seen = HashSet::new();
        users.iter().copied().filter(|u| (local.contains(u) || remote.contains(u)) && seen.insert(*u)).collect()
    }

    fn thread_presence(&self, site: &SiteId, thread: ThreadId, max: usize) -> (Vec<UserId>, bool) {
        let (local, more) = self.local.thread_presence(site, thread, max);
        // Cut off from NATS, the directory is stale: this node's own answer.
        if more || !self.is_connected() {
            return (local, more);
        }
        let mut all: HashSet<UserId> = local.into_iter().collect();
        self.dir.thread_users(site, thread, max, &mut all);
        crate::router::first_users(all, max)
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
        let n = self.local.disconnect(site, users, thread, at, unsub_frame, max_queue);
        self.mark_disconnected(site, users, thread);
        let msg = Msg::Disconnect {
            site: site.to_string(),
            users: users.iter().map(|u| u.get()).collect(),
            thread: thread.map(|t| t.get()),
            at,
        };
        if self.is_connected() {
            self.send(wire::all(), &msg, &[]);
        } else {
            // Sent when NATS returns (bounded: past it, the oldest go; the
            // peers still refuse the tokens once they resync by snapshot).
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if p.len() >= 10_000 {
                p.remove(0);
            }
            p.push(msg);
        }
        n
    }

    fn sockets(&self, site: Option<&SiteId>) -> Vec<Arc<Conn>> {
        self.local.sockets(site)
    }

    fn counts(&self) -> Counts {
        self.local.counts()
    }

    fn routable(&self, conn: &Arc<Conn>) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        let key = (conn.site.clone(), conn.user);
        self.acked(
            |d| {
                d.users.insert(key);
            },
            |s| &s.ready_unconfirmed,
        )
    }

    fn subscribed(&self, conn: &Arc<Conn>, thread: ThreadId) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        let key = (conn.site.clone(), thread);
        self.acked(
            |d| {
                d.threads.insert(key);
            },
            |s| &s.sub_unconfirmed,
        )
    }

    fn cluster_status(&self) -> Option<&'static str> {
        let synced = self.is_synced();
        if !synced && (self.is_connected() || self.started.elapsed() < STARTUP_WAIT) {
            // Not ready: presence and revocations not copied yet.
            Some("syncing")
        } else if !self.is_connected() {
            Some("degraded")
        } else {
            Some("ok")
        }
    }

    fn cluster_metrics(&self, o: &mut String) {
        use std::fmt::Write;
        let g = |o: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        let (nodes, entries) = self.dir.size();
        g(
            o,
            "bm_relay_cluster_degraded",
            "1 while NATS is unreachable (local delivery only).",
            "gauge",
            u64::from(!self.is_connected()),
        );
        g(o, "bm_relay_cluster_peers", "Other nodes in the presence directory.", "gauge", nodes);
        g(
            o,
            "bm_relay_cluster_directory_entries",
            "Users, threads and thread memberships held for other nodes.",
            "gauge",
            entries,
        );
        let s = &self.stats;
        g(
            o,
            "bm_relay_cluster_deliveries_sent_total",
            "Deliveries and pubs forwarded to other nodes.",
            "counter",
            s.sent_deliveries.load(Relaxed),
        );
        g(
            o,
            "bm_relay_cluster_deltas_sent_total",
            "Presence deltas and state chunks sent.",
            "counter",
            s.sent_deltas.load(Relaxed),
        );
        g(o, "bm_relay_cluster_received_total", "Cluster messages applied.", "counter", s.received.load(Relaxed));
        g(
            o,
            "bm_relay_cluster_rejected_total",
            "Cluster messages dropped (bad MAC, malformed).",
            "counter",
            s.rejected.load(Relaxed),
        );
        g(
            o,
            "bm_relay_cluster_dropped_total",
            "Cluster messages not sent (publisher queue full).",
            "counter",
            s.dropped.load(Relaxed),
        );
        g(
            o,
            "bm_relay_cluster_ready_unconfirmed_total",
            "Sockets told ready before every node acknowledged them.",
            "counter",
            s.ready_unconfirmed.load(Relaxed),
        );
        g(
            o,
            "bm_relay_cluster_sub_unconfirmed_total",
            "Thread subs answered ok before every node acknowledged them.",
            "counter",
            s.sub_unconfirmed.load(Relaxed),
        );
        g(
            o,
            "bm_relay_cluster_nodes_expired_total",
            "Nodes dropped from presence for silence.",
            "counter",
            s.nodes_expired.load(Relaxed),
        );
        g(
            o,
            "bm_relay_cluster_full_republishes_total",
            "Whole-state republishes of this node.",
            "counter",
            s.full_republishes.load(Relaxed),
        );
        if let Some(c) = self.client.get() {
            let st = c.statistics();
            g(
                o,
                "bm_relay_cluster_nats_out_messages_total",
                "Messages published to NATS.",
                "counter",
                st.out_messages.load(Relaxed),
            );
            g(
                o,
                "bm_relay_cluster_nats_out_bytes_total",
                "Payload bytes published to NATS.",
                "counter",
                st.out_bytes.load(Relaxed),
            );
            g(
                o,
                "bm_relay_cluster_nats_in_messages_total",
                "Messages received from NATS.",
                "counter",
                st.in_messages.load(Relaxed),
            );
            g(
                o,
                "bm_relay_cluster_nats_in_bytes_total",
                "Payload bytes received from NATS.",
                "counter",
                st.in_bytes.load(Relaxed),
            );
            g(
                o,
                "bm_relay_cluster_nats_connects_total",
                "Connections made to NATS servers.",
                "counter",
                st.connects.load(Relaxed),
            );
        }
    }
}

/// Marks the node as connected or not (from the NATS event callback).
pub(crate) fn set_connected(c: &ClusterRouter, up: bool) {
    c.connected.store(up, Release);
    c.ack_tick.send_modify(|v| *v += 1);
}
