//! The NATS side of a node: connection, subscriptions, and the tasks that
//! receive, publish, send deltas and heartbeats.
//!
//! Sync costs grow with what changed: a socket's arrival or departure is
//! one entry in the next delta (batched every [`DELTA_EVERY`], one message
//! for all the changes of that interval); a node's whole state is sent
//! only when it (re)connects to NATS or when a peer saw a gap in its
//! deltas, at most once per [`FULL_EVERY`] however many peers ask; a
//! joining node asks for one snapshot, answered by one peer (a NATS queue
//! group). No message is ever answered by every node.

use std::collections::HashMap;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bm_proto::frames;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::directory::chunked;
use super::wire::{self, Entry, Member, Msg};
use super::{set_connected, ClusterRouter};
use crate::frame::Frame;
use crate::router::Fanout;
use crate::state::App;

/// Changes are batched into one delta per this interval.
pub const DELTA_EVERY: Duration = Duration::from_millis(2);
/// A node republishes its whole state at most this often.
pub const FULL_EVERY: Duration = Duration::from_secs(1);
/// Entries, and members, per delta or state message (~25 and ~35 bytes
/// each: at most ~480 KB, under NATS's default 1 MB payload).
const CHUNK: usize = 8000;
/// How long a joining node waits for its snapshot before it reports ready
/// anyway (and says so in the log).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);

/// Why the cluster link could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A NATS URL could not be parsed.
    #[error("NATS server address `{0}`: {1}")]
    Address(String, String),
    /// A credentials file could not be read.
    #[error("NATS credentials: {0}")]
    Credentials(String),
    /// The client could not be set up.
    #[error("NATS: {0}")]
    Nats(String),
}

async fn options(
    c: &ClusterRouter,
    events: mpsc::UnboundedSender<bool>,
) -> Result<async_nats::ConnectOptions, ClusterError> {
    let cfg = &c.cfg;
    let mut o = match &cfg.credentials_file {
        Some(p) => async_nats::ConnectOptions::with_credentials_file(p)
            .await
            .map_err(|e| ClusterError::Credentials(format!("{}: {e}", p.display())))?,
        None => async_nats::ConnectOptions::new(),
    };
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        o = o.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &cfg.token {
        o = o.token(t.clone());
    }
    if let Some(p) = &cfg.nkey_seed_file {
        let seed =
            std::fs::read_to_string(p).map_err(|e| ClusterError::Credentials(format!("{}: {e}", p.display())))?;
        o = o.nkey(seed.trim().to_string());
    }
    if let Some(ca) = &cfg.tls_ca_file {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(o.name(format!("bm-relay {}", c.me))
        // Our own messages on shared subjects are not delivered back.
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        // A dead server is noticed within ~2 pings.
        .ping_interval(Duration::from_secs(2))
        .subscription_capacity(1 << 16)
        .reconnect_delay_callback(|n| Duration::from_millis((100 * n.saturating_sub(1) as u64).min(1000)))
        .event_callback(move |e| {
            let tx = events.clone();
            async move {
                match e {
                    async_nats::Event::Connected => {
                        let _ = tx.send(true);
                    }
                    async_nats::Event::Disconnected | async_nats::Event::Closed => {
                        let _ = tx.send(false);
                    }
                    _ => {}
                }
            }
        }))
}

/// Connects `c` to NATS and starts its tasks. Returns at once: a node
/// whose NATS is down starts degraded and joins when NATS answers.
pub async fn start(c: Arc<ClusterRouter>, app: Arc<App>) -> Result<(), ClusterError> {
    let _ = c.app.set(app.clone());
    let mut addrs = Vec::new();
    for u in &c.cfg.nats {
        addrs.push(u.parse::<async_nats::ServerAddr>().map_err(|e| ClusterError::Address(u.clone(), e.to_string()))?);
    }
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let client = options(&c, ev_tx).await?.connect(addrs).await.map_err(|e| ClusterError::Nats(e.to_string()))?;
    let _ = c.client.set(client.clone());
    let subs = Subs {
        all: client.subscribe(wire::all()).await.map_err(|e| ClusterError::Nats(e.to_string()))?,
        node: client.subscribe(wire::node(&c.me)).await.map_err(|e| ClusterError::Nats(e.to_string()))?,
        ack: client.subscribe(wire::ack(&c.me)).await.map_err(|e| ClusterError::Nats(e.to_string()))?,
    };
    let rx = c.out_rx.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(rx) = rx {
        tokio::spawn(publisher(client.clone(), rx));
    }
    tokio::spawn(receiver(c.clone(), app.clone(), subs));
    tokio::spawn(deltas(c.clone()));
    tokio::spawn(heartbeats(c.clone()));
    tokio::spawn(connection(c.clone(), client, ev_rx));
    tracing::info!(node = %c.me, servers = c.cfg.nats.len(), "cluster: joining over NATS");
    Ok(())
}

struct Subs {
    all: async_nats::Subscriber,
    node: async_nats::Subscriber,
    ack: async_nats::Subscriber,
}

/// Hands queued messages to the NATS client, in order (per node and
/// subject, NATS keeps that order to each subscriber).
async fn publisher(client: async_nats::Client, mut rx: mpsc::Receiver<(String, bytes::Bytes)>) {
    while let Some((subject, bytes)) = rx.recv().await {
        if let Err(e) = client.publish(subject, bytes).await {
            tracing::debug!(error = %e, "cluster: publish failed");
        }
    }
}

/// Follows the connection: degraded while down; on (re)connect, syncs.
async fn connection(c: Arc<ClusterRouter>, client: async_nats::Client, mut events: mpsc::UnboundedReceiver<bool>) {
    let mut first = true;
    let mut snap_sub: Option<tokio::task::JoinHandle<()>> = None;
    while let Some(up) = events.recv().await {
        if !up {
            if c.is_connected() {
                tracing::warn!(node = %c.me, "cluster: NATS unreachable; degraded (local delivery only)");
            }
            set_connected(&c, false);
            continue;
        }
        if c.is_connected() {
            continue;
        }
        set_connected(&c, true);
        tracing::info!(node = %c.me, "cluster: connected to NATS");
        // Our whole state once (rate-limited in `deltas`), the disconnects
        // made while apart, and one snapshot answered by one peer.
        c.mark(|d| d.full = true);
        let pending: Vec<Msg> = std::mem::take(&mut *c.pending.lock().unwrap_or_else(|p| p.into_inner()));
        for m in &pending {
            c.send(wire::all(), m, &[]);
        }
        if first {
            first = false;
            // Registered at the server (flushed) before this node can say
            // it is ready: a node started right after it must find it, or
            // it would believe itself alone. A node never gets its own
            // request (no_echo).
            match client.queue_subscribe(wire::snap(), wire::SNAP_GROUP.to_string()).await {
                Ok(sub) => snap_sub = Some(tokio::spawn(answer_snapshots(c.clone(), sub))),
                Err(e) => tracing::warn!(node = %c.me, error = %e, "cluster: cannot answer snapshots"),
            }
            let _ = tokio::time::timeout(SNAPSHOT_WAIT, client.flush()).await;
        }
        // The first time: presence and revocations. After an outage:
        // revocations only, since every node republishes its own state.
        snapshot(&c, &client, c.is_synced()).await;
    }
    if let Some(h) = snap_sub {
        h.abort();
    }
}

/// Asks one peer for presence and revocations; returns once they are in
/// (or no peer exists, or [`SNAPSHOT_WAIT`] passed).
async fn snapshot(c: &ClusterRouter, client: &async_nats::Client, revocations_only: bool) {
    let subject = wire::snap();
    let msg = Msg::SnapRequest { node: c.me.clone(), revocations_only };
    let bytes = wire::encode(&c.key(), &subject, &msg, &[]);
    let asked = Instant::now();
    let synced_before = c.is_synced();
    c.snap_done.store(false, Release);
    match tokio::time::timeout(SNAPSHOT_WAIT, client.request(subject, bytes)).await {
        Ok(Ok(_)) => {
            while !c.snap_done.load(Relaxed) && asked.elapsed() < SNAPSHOT_WAIT {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if !c.snap_done.load(Relaxed) {
                tracing::warn!(node = %c.me, "cluster: snapshot incomplete; presence fills in from heartbeats");
            }
        }
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            tracing::info!(node = %c.me, "cluster: no other node answers; starting the cluster");
        }
        Ok(Err(e)) => tracing::warn!(node = %c.me, error = %e, "cluster: snapshot request failed"),
        Err(_) => tracing::warn!(node = %c.me, "cluster: snapshot request timed out"),
    }
    if !synced_before {
        c.synced.store(true, Release);
        tracing::info!(node = %c.me, ms = asked.elapsed().as_millis() as u64, peers = c.dir.peers().len(), "cluster: synced");
    }
}

/// Answers snapshot requests (one peer per request: a queue group).
async fn answer_snapshots(c: Arc<ClusterRouter>, mut sub: async_nats::Subscriber) {
    while let Some(m) = sub.next().await {
        let keys = c.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        let (node, revocations_only) = match wire::decode(&keys, m.subject.as_str(), &m.payload) {
            Ok((Msg::SnapRequest { node, revocations_only }, _)) if valid_node(&node) => (node, revocations_only),
            _ => {
                c.stats.rejected.fetch_add(1, Relaxed);
                continue;
            }
        };
        if let (Some(reply), Some(client)) = (m.reply, c.client.get()) {
            let _ = client.publish(reply, bytes::Bytes::from_static(b"ok")).await;
        }
        send_snapshot(&c, &node, revocations_only);
    }
}

fn valid_node(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a joining node needs: every node's presence as known here (ours
/// included), the revocations, then the end mark; all on its own subject.
fn send_snapshot(c: &ClusterRouter, to: &str, revocations_only: bool) {
    let subject = wire::node(to);
    if !revocations_only {
        send_presence(c, &subject, to);
    }
    if let Some(app) = c.app.get() {
        for (site, floor, recs) in app.revocations.export() {
            let recs: Vec<(u64, Option<u64>, u64)> =
                recs.into_iter().map(|(u, t, at)| (u.get(), t.map(|t| t.get()), at)).collect();
            for r in recs.chunks(CHUNK).map(<[_]>::to_vec).chain(std::iter::once(Vec::new()).filter(|_| floor > 0)) {
                c.send(subject.clone(), &Msg::Revocations { site: site.to_string(), floor, r }, &[]);
            }
        }
    }
    c.send(subject, &Msg::SnapDone { from: c.me.clone() }, &[]);
}

/// Every node's presence as held here, ours included, to `subject`.
fn send_presence(c: &ClusterRouter, subject: &str, to: &str) {
    let subject = subject.to_string();
    for (node, epoch, seq, chunks) in c.dir.export(CHUNK) {
        if node == to {
            continue;
        }
        for (i, (e, m)) in chunks.into_iter().enumerate() {
            c.send(
                subject.clone(),
                &Msg::Delta { node: node.clone(), epoch, seq, reset: i == 0, ack: false, e, m },
                &[],
            );
        }
    }
    let seq = c.published.load(Relaxed);
    let (own, members) = own_state(c);
    for (i, (e, m)) in chunked(own, members, CHUNK).into_iter().enumerate() {
        c.send(
            subject.clone(),
            &Msg::Delta { node: c.me.clone(), epoch: c.epoch, seq, reset: i == 0, ack: false, e, m },
            &[],
        );
    }
}

/// This node's whole presence state, as delta entries and thread members
/// ([`chunked`] makes an empty state one empty message, as a reset needs).
fn own_state(c: &ClusterRouter) -> (Vec<Entry>, Vec<Member>) {
    let (users, threads, members) = c.local.inventory();
    let mut e: Vec<Entry> = users.into_iter().map(|(s, u, n)| Entry(s.to_string(), 'u', u.get(), n)).collect();
    e.extend(threads.into_iter().map(|(s, t, n)| Entry(s.to_string(), 't', t.get(), n)));
    let m = members.into_iter().map(|(s, t, u, n)| Member(s.to_string(), t.get(), u.get(), n)).collect();
    (e, m)
}

/// Batches presence changes into deltas; republishes the whole state when
/// asked, at most once per [`FULL_EVERY`].
async fn deltas(c: Arc<ClusterRouter>) {
    let mut last_full: Option<Instant> = None;
    // Set while a timer will bring a deferred whole state; the timer
    // clears it when it fires.
    let timer_armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        c.dirty_notify.notified().await;
        tokio::time::sleep(DELTA_EVERY).await;
        if !c.is_connected() {
            // Kept: the whole state goes out on reconnect.
            continue;
        }
        // A whole state at most once per FULL_EVERY, however many peers
        // ask; regular deltas are never held back by it (a timer brings
        // the deferred one).
        let full_due = match last_full {
            Some(t) => t.elapsed() >= FULL_EVERY,
            None => true,
        };
        let (seq, users, threads, members, ack, full) = {
            let mut d = c.dirty.lock().unwrap_or_else(|p| p.into_inner());
            let full = d.full && full_due;
            if d.full && !full && !timer_armed.swap(true, Relaxed) {
                let wait = FULL_EVERY.saturating_sub(last_full.map(|t| t.elapsed()).unwrap_or_default());
                let (c2, armed) = (c.clone(), timer_armed.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    armed.store(false, Relaxed);
                    c2.dirty_notify.notify_one();
                });
            }
            if d.users.is_empty() && d.threads.is_empty() && d.members.is_empty() && !full {
                continue;
            }
            let seq = d.next_seq;
            d.next_seq += 1;
            if full {
                d.full = false;
            }
            let members = std::mem::take(&mut d.members);
            (
                seq,
                std::mem::take(&mut d.users),
                std::mem::take(&mut d.threads),
                members,
                std::mem::take(&mut d.ack),
                full,
            )
        };
        let (entries, mem) = if full {
            last_full = Some(Instant::now());
            c.stats.full_republishes.fetch_add(1, Relaxed);
            own_state(&c)
        } else {
            let mut e: Vec<Entry> =
                users.iter().map(|(s, u)| Entry(s.to_string(), 'u', u.get(), c.local.user_sockets(s, *u))).collect();
            e.extend(threads.iter().map(|(s, t)| Entry(s.to_string(), 't', t.get(), c.local.thread_sockets(s, *t))));
            // One entry per (thread, user) whose subscription changed in
            // this interval, read from the user's few sockets: the cost
            // follows what changed, not the threads' sizes.
            let m = members
                .iter()
                .map(|(s, t, u)| Member(s.to_string(), t.get(), u.get(), c.local.member_sockets(s, *t, *u)))
                .collect();
            (e, m)
        };
        for (i, (e, m)) in chunked(entries, mem, CHUNK).into_iter().enumerate() {
            let msg = Msg::Delta { node: c.me.clone(), epoch: c.epoch, seq, reset: full && i == 0, ack, e, m };
            c.send(wire::all(), &msg, &[]);
            c.stats.sent_deltas.fetch_add(1, Relaxed);
        }
        c.published.store(seq, Release);
    }
}

/// Heartbeats, and dropping the nodes that stopped sending them.
async fn heartbeats(c: Arc<ClusterRouter>) {
    let every = Duration::from_secs_f64(c.cfg.heartbeat_secs);
    let timeout = Duration::from_secs_f64(c.cfg.node_timeout_secs);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if c.is_connected() {
            let msg = Msg::Heartbeat { node: c.me.clone(), epoch: c.epoch, seq: c.published.load(Relaxed) };
            c.send(wire::all(), &msg, &[]);
        }
        let gone = c.dir.expire(timeout);
        if !gone.is_empty() {
            c.stats.nodes_expired.fetch_add(gone.len() as u64, Relaxed);
            let mut acks = c.acks.lock().unwrap_or_else(|p| p.into_inner());
            for g in &gone {
                acks.remove(g);
                tracing::warn!(node = %c.me, peer = %g, "cluster: peer silent; its sockets leave presence");
            }
            drop(acks);
            c.ack_tick.send_modify(|v| *v += 1);
        }
    }
}

/// Applies what other nodes send.
async fn receiver(c: Arc<ClusterRouter>, app: Arc<App>, mut s: Subs) {
    let mut wanted: HashMap<String, Instant> = HashMap::new();
    loop {
        let m = tokio::select! {
            Some(m) = s.all.next() => m,
            Some(m) = s.node.next() => m,
            Some(m) = s.ack.next() => m,
            else => return,
        };
        let keys = c.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        let live = m.subject.as_str() == "bmr.all";
        match wire::decode(&keys, m.subject.as_str(), &m.payload) {
            Ok((msg, body)) => match apply(&c, &app, msg, body, live, &mut wanted) {
                Ok(()) => {
                    c.stats.received.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    c.stats.rejected.fetch_add(1, Relaxed);
                    tracing::debug!(subject = %m.subject, error = %e, "cluster: message refused");
                }
            },
            Err(e) => {
                c.stats.rejected.fetch_add(1, Relaxed);
                // The subject only: never the payload.
                tracing::debug!(subject = %m.subject, error = %e, "cluster: message refused");
            }
        }
    }
}

/// Asks `node` for its whole state, at most once per [`FULL_EVERY`].
fn want(c: &ClusterRouter, node: &str, wanted: &mut HashMap<String, Instant>) {
    if wanted.get(node).is_some_and(|t| t.elapsed() < FULL_EVERY) {
        return;
    }
    wanted.insert(node.to_string(), Instant::now());
    c.send(wire::all(), &Msg::Want { node: node.to_string() }, &[]);
}

fn apply(
    c: &ClusterRouter,
    app: &App,
    msg: Msg,
    body: bytes::Bytes,
    live: bool,
    wanted: &mut HashMap<String, Instant>,
) -> Result<(), wire::WireError> {
    let max_queue = app.config().limits.outbound_queue_bytes;
    match msg {
        Msg::Deliver { site, to, thread } => {
            let site = wire::site(&site)?;
            let to = to.into_iter().map(wire::user).collect::<Result<Vec<_>, _>>()?;
            let thread = thread.map(wire::thread).transpose()?;
            let frame = Frame::from_encoded(body).ok_or(wire::WireError::BadFrame)?;
            let d = c.local.deliver(&site, &to, thread, &frame, max_queue);
            app.metrics.deliveries.fetch_add(d.sockets, Relaxed);
        }
        Msg::Publish { site, thread } => {
            let site = wire::site(&site)?;
            let thread = wire::thread(thread)?;
            let frame = Frame::from_encoded(body).ok_or(wire::WireError::BadFrame)?;
            let d = c.local.deliver(&site, &[], Some(thread), &frame, max_queue);
            app.metrics.deliveries.fetch_add(d.sockets, Relaxed);
        }
        Msg::Disconnect { site, users, thread, at } => {
            let site = wire::site(&site)?;
            let users = users.into_iter().map(wire::user).collect::<Result<Vec<_>, _>>()?;
            let thread = thread.map(wire::thread).transpose()?;
            app.revoke(&site, &users, thread, at);
            let unsub = thread.map(|t| Frame::from(frames::unsub(t)));
            c.local.disconnect(&site, &users, thread, at, unsub.as_ref(), max_queue);
            c.mark_disconnected(&site, &users, thread);
        }
        Msg::Delta { node, epoch, seq, reset, ack, e, m } => {
            if node == c.me || !valid_node(&node) {
                return Ok(());
            }
            let new_peer = !c.acks.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&node);
            let r = c.dir.apply(&node, epoch, seq, reset, &e, &m)?;
            if new_peer {
                peer_seen(c, &node);
            }
            if r == super::directory::Applied::Gap && live {
                want(c, &node, wanted);
            }
            if ack && live {
                c.send(wire::ack(&node), &Msg::Ack { node: c.me.clone(), seq }, &[]);
            }
        }
        Msg::Heartbeat { node, epoch, seq } => {
            if node == c.me || !valid_node(&node) {
                return Ok(());
            }
            if c.dir.heartbeat(&node, epoch, seq) {
                peer_seen(c, &node);
                want(c, &node, wanted);
            }
        }
        Msg::Want { node } => {
            if node == c.me {
                c.mark(|d| d.full = true);
            } else if valid_node(&node) {
                // Someone asked already: its answer is broadcast, so this
                // node does not ask too (O(nodes) wants after an outage,
                // not one per pair).
                wanted.insert(node, Instant::now());
            }
        }
        Msg::Ack { node, seq } => {
            let mut acks = c.acks.lock().unwrap_or_else(|p| p.into_inner());
            let a = acks.entry(node).or_insert(0);
            *a = (*a).max(seq);
            drop(acks);
            c.ack_tick.send_modify(|v| *v += 1);
        }
        Msg::Revocations { site, floor, r } => {
            let site = wire::site(&site)?;
            app.revocations.raise_floor(&site, floor);
            for (u, t, at) in r {
                let u = wire::user(u)?;
                let t = t.map(wire::thread).transpose()?;
                app.revoke(&site, &[u], t, at);
                // Applied to this node's sockets too: a disconnect made
                // while this node was cut off from NATS arrives this way
                // (a delta published meanwhile found no subscriber here).
                let unsub = t.map(|t| Frame::from(frames::unsub(t)));
                if c.local.disconnect(&site, &[u], t, at, unsub.as_ref(), max_queue) > 0 {
                    c.mark(|d| match t {
                        Some(t) => {
                            d.threads.insert((site.clone(), t));
                        }
                        None => {
                            d.users.insert((site.clone(), u));
                        }
                    });
                }
            }
        }
        Msg::SnapDone { .. } => c.snap_done.store(true, Release),
        Msg::SnapRequest { .. } => {}
    }
    Ok(())
}

/// A peer appeared: it learns this node's state from its snapshot or by
/// asking, so a socket's `ready` does not wait for it beyond what it has.
fn peer_seen(c: &ClusterRouter, node: &str) {
    let seq = c.published.load(Relaxed);
    c.acks.lock().unwrap_or_else(|p| p.into_inner()).entry(node.to_string()).or_insert(seq);
    c.ack_tick.send_modify(|v| *v += 1);
}
