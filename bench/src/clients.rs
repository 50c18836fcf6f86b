//! WebSocket clients and what they record.
//!
//! The whole load generator runs on one thread (a tokio current-thread
//! runtime with a `LocalSet`, pinned to its own core), so the counters are
//! plain `Cell`s behind an `Rc`: no atomics, no locks on the hot path.
//! A client records, for every event it receives, the time since the
//! publisher *scheduled* that event (open-loop: queueing in the publisher
//! or the server counts as latency, nothing is hidden).

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::adapters::{for_each_event_id, Ctx, Step};

/// Counters shared by every client and publisher of one scenario.
pub struct Shared {
    /// Time zero of the scenario.
    pub t0: Instant,
    /// Per event sequence number: (scheduled publish time in µs since `t0`
    /// plus one, 0 = unknown; bucket the event counts in).
    pub sent: RefCell<Vec<(u64, u32)>>,
    /// Latencies (µs) per bucket.
    pub lat: RefCell<Vec<Vec<u32>>>,
    /// Deliveries per bucket.
    pub delivered_in: RefCell<Vec<u64>>,
    /// Deliveries in all.
    pub delivered: Cell<u64>,
    /// Time of the latest delivery, µs since `t0`.
    pub last_delivery_us: Cell<u64>,
    /// Clients that finished their handshake.
    pub ready: Cell<u64>,
    /// Clients that failed to connect or authenticate.
    pub failed: Cell<u64>,
    /// Ready clients whose connection later ended by the server's doing.
    pub lost: Cell<u64>,
    /// Clients connecting right now.
    pub connecting: Cell<u64>,
    /// The most recent failure, for the report.
    pub last_error: RefCell<Option<String>>,
}

impl Shared {
    /// Fresh counters.
    pub fn new() -> Rc<Self> {
        Rc::new(Shared {
            t0: Instant::now(),
            sent: RefCell::new(Vec::new()),
            lat: RefCell::new(Vec::new()),
            delivered_in: RefCell::new(Vec::new()),
            delivered: Cell::new(0),
            last_delivery_us: Cell::new(0),
            ready: Cell::new(0),
            failed: Cell::new(0),
            lost: Cell::new(0),
            connecting: Cell::new(0),
            last_error: RefCell::new(None),
        })
    }

    /// Microseconds since `t0`.
    pub fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// Notes that event `seq`, counted in `bucket`, was scheduled at `at_us`.
    pub fn mark_sent(&self, seq: u64, at_us: u64, bucket: u32) {
        let mut sent = self.sent.borrow_mut();
        let i = seq as usize;
        if sent.len() <= i {
            sent.resize(i + 1, (0, 0));
        }
        sent[i] = (at_us + 1, bucket);
        let mut lat = self.lat.borrow_mut();
        let b = bucket as usize;
        if lat.len() <= b {
            lat.resize_with(b + 1, Vec::new);
            self.delivered_in.borrow_mut().resize(b + 1, 0);
        }
    }

    fn record(&self, seq: u64, now_us: u64) {
        let sent = self.sent.borrow();
        let Some(&(at, bucket)) = sent.get(seq as usize) else { return };
        if at == 0 {
            return;
        }
        let us = now_us.saturating_sub(at - 1);
        self.lat.borrow_mut()[bucket as usize].push(us.min(u64::from(u32::MAX)) as u32);
        self.delivered_in.borrow_mut()[bucket as usize] += 1;
        self.delivered.set(self.delivered.get() + 1);
        self.last_delivery_us.set(now_us);
    }

    fn fail(&self, why: String) {
        self.failed.set(self.failed.get() + 1);
        *self.last_error.borrow_mut() = Some(why);
    }
}

/// The source address of client `i`: spread over 127.0.0.2 … 127.0.0.(1+n),
/// so that no single source address runs out of its ~28k ephemeral ports
/// (churn leaves every closed connection in TIME_WAIT for 60 s).
pub fn source_addr(i: u64, n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % u64::from(n.max(1))) as u8)
}

/// Small buffers: 19k idle clients must not cost the generator gigabytes.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(16 * 1024).write_buffer_size(0)
}

/// How long a client may take from connect to ready.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a client does once ready.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Stay connected, record deliveries, until `stop` turns true.
    Hold,
    /// Disconnect at once (churn).
    Leave,
}

/// Runs a client's handshake within [`HANDSHAKE_TIMEOUT`], counted in
/// `connecting` meanwhile, then in `ready`, or recorded as a failure.
async fn handshake<T>(shared: &Shared, f: impl std::future::Future<Output = Result<T, String>>) -> Option<T> {
    shared.connecting.set(shared.connecting.get() + 1);
    let r = timeout(HANDSHAKE_TIMEOUT, f).await;
    shared.connecting.set(shared.connecting.get() - 1);
    match r {
        Ok(Ok(x)) => {
            shared.ready.set(shared.ready.get() + 1);
            Some(x)
        }
        Ok(Err(e)) => {
            shared.fail(e);
            None
        }
        Err(_) => {
            shared.fail("handshake timed out".into());
            None
        }
    }
}

/// One client: connect from `src`, handshake, then hold or leave. Returns
/// whether it became ready.
pub async fn run(
    ctx: Rc<Ctx>,
    shared: Rc<Shared>,
    user: u64,
    src: Ipv4Addr,
    mode: Mode,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let Some(mut ws) = handshake(&shared, connect(&ctx, user, src)).await else { return false };
    if mode == Mode::Leave {
        return true;
    }
    loop {
        tokio::select! {
            m = ws.next() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        if !*stop.borrow() {
                            shared.lost.set(shared.lost.get() + 1);
                        }
                        return true;
                    }
                };
                let now = shared.now_us();
                for_each_event_id(text.as_str(), |seq| shared.record(seq, now));
                if let Step::Reply(r) = ctx.on_text(user, text.as_str(), true) {
                    if ws.send(Message::text(r)).await.is_err() {
                        shared.lost.set(shared.lost.get() + 1);
                        return true;
                    }
                }
            }
            _ = stop.changed() => return true,
        }
    }
}

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A WebSocket (every server).
    WebSocket,
    /// bm-relay's streaming fallback: `POST /v1/stream`, SSE events.
    Stream,
}

/// One bm-relay stream client (`/v1/stream`, PROTOCOL §6.1): open, then
/// hold, recording the events of its SSE body, until `stop` turns true.
/// Ops are never needed here (deliveries come by `to`), so it only reads.
pub async fn run_stream(
    ctx: Rc<Ctx>,
    shared: Rc<Shared>,
    user: u64,
    src: Ipv4Addr,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let Some(mut rd) = handshake(&shared, open_stream(&ctx, user, src)).await else { return false };
    let mut line = String::new();
    loop {
        line.clear();
        tokio::select! {
            n = rd.read_line(&mut line) => {
                if !matches!(n, Ok(n) if n > 0) {
                    if !*stop.borrow() {
                        shared.lost.set(shared.lost.get() + 1);
                    }
                    return true;
                }
                if let Some(data) = line.strip_prefix("data: ") {
                    let now = shared.now_us();
                    for_each_event_id(data, |seq| shared.record(seq, now));
                }
            }
            _ = stop.changed() => return true,
        }
    }
}

/// Opens a stream from `src` and reads up to its `ready` event: the head
/// must be a 200.
async fn open_stream(ctx: &Ctx, user: u64, src: Ipv4Addr) -> Result<BufReader<TcpStream>, String> {
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    sock.bind(SocketAddr::from((src, 0))).map_err(|e| format!("bind {src}: {e}"))?;
    let mut stream = sock.connect(ctx.addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let body = format!(r#"{{"op":"auth","token":"{}"}}"#, ctx.relay_token(user));
    let req = format!(
        "POST /v1/stream HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        ctx.addr,
        body.len()
    );
    stream.write_all(req.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    // Small: 10k idle streams must not cost the generator much.
    let mut rd = BufReader::with_capacity(2048, stream);
    let mut line = String::new();
    rd.read_line(&mut line).await.map_err(|e| format!("head: {e}"))?;
    if !line.starts_with("HTTP/1.1 200 ") {
        return Err(format!("refused: {}", line.trim_end()));
    }
    loop {
        line.clear();
        if rd.read_line(&mut line).await.map_err(|e| format!("head: {e}"))? == 0 {
            return Err("closed during the head".into());
        }
        if line == "\r\n" {
            break;
        }
    }
    loop {
        line.clear();
        if rd.read_line(&mut line).await.map_err(|e| format!("ready: {e}"))? == 0 {
            return Err("closed before ready".into());
        }
        if let Some(data) = line.strip_prefix("data: ") {
            return match ctx.on_text(user, data.trim_end(), false) {
                Step::Ready => Ok(rd),
                other => Err(format!("expected ready, got {other:?}")),
            };
        }
    }
}

/// A client WebSocket over plain TCP.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Connects from `src`, upgrades, and runs `ctx`'s handshake for `user`
/// until the server says the client is ready (or refuses it).
pub async fn connect(ctx: &Ctx, user: u64, src: Ipv4Addr) -> Result<Ws, String> {
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    sock.bind(SocketAddr::from((src, 0))).map_err(|e| format!("bind {src}: {e}"))?;
    let stream = sock.connect(ctx.addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let url = format!("ws://{}{}", ctx.addr, ctx.ws_path(user));
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    if let Some(h) = ctx.hello(user) {
        ws.send(Message::text(h)).await.map_err(|e| format!("send hello: {e}"))?;
    }
    if ctx.ready_on_upgrade() {
        return Ok(ws);
    }
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => return Err(format!("closed during handshake: {f:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("handshake: {e}")),
            None => return Err("closed during handshake".into()),
        };
        match ctx.on_text(user, text.as_str(), false) {
            Step::Ready => return Ok(ws),
            Step::Reply(r) => ws.send(Message::text(r)).await.map_err(|e| format!("send: {e}"))?,
            Step::Refused(why) => return Err(format!("refused: {why}")),
            Step::Nothing => {}
        }
    }
}

/// Latency percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Sample size.
    pub n: u64,
}

/// Sorts `us` and reads its percentiles.
pub fn percentiles(us: &mut [u32]) -> Percentiles {
    if us.is_empty() {
        return Percentiles::default();
    }
    us.sort_unstable();
    let at = |q: f64| f64::from(us[((us.len() as f64 - 1.0) * q).round() as usize]) / 1000.0;
    Percentiles { p50_ms: at(0.50), p99_ms: at(0.99), max_ms: at(1.0), n: us.len() as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_sample() {
        let mut v: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        let p = percentiles(&mut v);
        assert_eq!(p.n, 1000);
        assert!((p.p50_ms - 500.0).abs() <= 1.0, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() <= 1.0, "{p:?}");
        assert_eq!(p.max_ms, 1000.0);
    }

    #[test]
    fn source_addresses_cycle_in_loopback() {
        assert_eq!(source_addr(0, 16), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_addr(17, 16), Ipv4Addr::new(127, 0, 0, 3));
    }

    #[test]
    fn deliveries_are_timed_from_the_scheduled_send() {
        let s = Shared::new();
        s.mark_sent(3, 1_000, 0);
        s.record(3, 4_000);
        s.record(99, 4_000); // unknown event: ignored
        assert_eq!(s.delivered.get(), 1);
        assert_eq!(s.lat.borrow()[0], vec![3_000]);
    }
}
