//! The client listener: admission at accept, hyper's per-connection
//! limits, and the two timers hyper does not have.
//!
//! At accept, in this order (each O(1) but the per-address one, a sharded
//! map): total connections (`max_connections`), anonymous connections
//! (`max_pending_connections`: neither a signed request nor a WebSocket
//! upgrade yet; at the cap the *oldest idle* one is closed to make room,
//! see [`PendingSlot`](super::admission::PendingSlot)), then, unless the peer
//! is a trusted proxy, the peer address's open connections and
//! new-connection bucket. A refused connection has sent nothing yet: over
//! the total cap it is closed at once (writing costs a syscall the flood
//! would make us pay); over a per-address limit it gets a raw HTTP/1.1 429
//! with a JSON body and `Retry-After` first (a NAT'd office deserves to be
//! told). Every refusal is counted in `bm_relay_refused_total`.
//!
//! Per connection, a watchdog future beside hyper's:
//! - while the connection is anonymous it allows `request_head_timeout_secs`
//!   from accept: silent (covering what hyper-util's version detection and
//!   an h2 preface never time out), it is dropped then; having made only
//!   unsigned or refused requests, it is shut down once none is in flight
//!   (so junk requests cannot keep it open as keep-alive);
//! - once trusted (a signed request passed, or a WebSocket upgrade),
//!   whenever no request is in flight for `keepalive_idle_secs`, it shuts
//!   the connection down gracefully (HTTP/1.1 closes; h2 sends GOAWAY).
//!
//! A graceful shutdown that has not finished a little later is a drop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep_until, Instant};

use super::admission::{is_trusted, Admission, ConnSlot, PendingSlot};
use super::{api_error, err, Body, Refused};
use crate::config::Limits;
use crate::metrics::{Endpoint, Refusal};
use crate::sock::SharedTcp;
use crate::state::App;
use bm_proto::api::ErrorCode;

/// h2 flow-control windows and send buffer. hyper's defaults (1 MiB
/// windows, ~400 KiB send buffer) let one connection make the relay buffer
/// megabytes; server API bodies are read as they come, so small windows
/// cost a push nothing but round trips on bodies over 64 KiB.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONN_WINDOW: u32 = 256 * 1024;
const H2_SEND_BUF: usize = 64 * 1024;

/// Longest wait, after a graceful shutdown of an idle connection, before it
/// is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How often an anonymous connection past `request_head_timeout_secs` is
/// looked at while a request of it is still in flight.
const ANON_POLL: Duration = Duration::from_millis(250);

/// What the requests of one client connection share.
pub(super) struct ConnCtx {
    /// The relay's shared state.
    pub(super) app: Arc<App>,
    /// The listener's admission state (body bytes, per-address slots).
    pub(super) adm: Arc<Admission>,
    /// The socket, shared with a WebSocket's outbox after an upgrade.
    pub(super) sock: Arc<TcpStream>,
    /// Whether the peer is a trusted proxy (then `X-Forwarded-For` names
    /// the client, and per-address limits apply per upgrade instead).
    pub(super) peer_trusted: bool,
    /// This connection's place in `max_connections`; a WebSocket keeps a clone.
    pub(super) slot: Arc<ConnSlot>,
    /// This connection's place in `max_pending_connections` while anonymous.
    pub(super) pending: PendingSlot,
    /// Requests in flight.
    active: AtomicU32,
    /// When the last request ended, in ms since `born`.
    last_done_ms: AtomicU64,
    born: Instant,
    /// Notified when a stream (`/v1/stream`) took the connection over:
    /// hyper's part of it is then dropped, its buffers with it (an idle
    /// stream costs what an idle WebSocket does, not 16 KiB more).
    pub(super) detach: tokio::sync::Notify,
}

impl ConnCtx {
    fn since_born_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }
}

/// Marks a request in flight for the idle timer; its end on drop.
struct InFlight<'a>(&'a ConnCtx);

impl<'a> InFlight<'a> {
    fn start(ctx: &'a ConnCtx) -> Self {
        ctx.pending.enter();
        ctx.active.fetch_add(1, Relaxed);
        InFlight(ctx)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.last_done_ms.store(self.0.since_born_ms(), Relaxed);
        self.0.active.fetch_sub(1, Relaxed);
        self.0.pending.leave();
    }
}

/// Warns at start when the fd limit cannot hold `max_connections`.
fn check_fd_limit(l: &Limits) {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        let need = (l.max_connections + l.admin_max_connections + 64) as u64;
        if r.rlim_cur < need {
            tracing::warn!(
                nofile = r.rlim_cur,
                max_connections = l.max_connections,
                "RLIMIT_NOFILE is below max_connections + admin_max_connections + 64: accept will fail with EMFILE before the cap; raise LimitNOFILE or lower max_connections"
            );
        }
    }
}

/// Accepts connections on the client listener until shutdown begins.
pub async fn serve_client(listener: TcpListener, app: Arc<App>) {
    let mut stop = app.shutdown_signal();
    let adm = Admission::new();
    check_fd_limit(&app.config().limits);
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = sweep.tick() => {
                adm.sweep(&app.config().limits);
                continue;
            }
            _ = stop.changed() => break,
        };
        let cfg = app.config();
        let limits = &cfg.limits;
        match admit(&app, &adm, limits, stream, peer) {
            Ok(ctx) => {
                let timers = Timers::of(limits);
                let builder = builder(limits);
                tokio::spawn(serve_connection(ctx, builder, timers));
            }
            Err((stream, why)) => refuse(&app, stream, why),
        }
    }
    tracing::info!("client listener closed");
}

/// Runs the admission checks on a new connection.
fn admit(
    app: &Arc<App>,
    adm: &Arc<Admission>,
    l: &Limits,
    stream: TcpStream,
    peer: SocketAddr,
) -> Result<Arc<ConnCtx>, (TcpStream, Refusal)> {
    let slot = match ConnSlot::admit(app, l) {
        Ok(s) => s,
        Err(why) => return Err((stream, why)),
    };
    let pending = match PendingSlot::admit(app, adm, l) {
        Ok(p) => p,
        Err(why) => return Err((stream, why)),
    };
    let peer_trusted = is_trusted(peer.ip(), &l.trusted_proxies);
    let slot = if peer_trusted {
        slot
    } else {
        match adm.admit_ip(peer.ip(), l) {
            Ok(ip) => slot.with_ip(ip),
            Err(why) => return Err((stream, why)),
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(Arc::new(ConnCtx {
        app: app.clone(),
        adm: adm.clone(),
        sock: Arc::new(stream),
        peer_trusted,
        slot: Arc::new(slot),
        pending,
        active: AtomicU32::new(0),
        last_done_ms: AtomicU64::new(0),
        born: Instant::now(),
        detach: tokio::sync::Notify::new(),
    }))
}

/// The answer to a request from an address over its limits.
pub(super) fn per_ip_refusal(why: Refusal) -> Refused {
    match why {
        Refusal::PerIpRate => Refused::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many new connections from this address",
            Some(1),
        ),
        _ => Refused::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many connections from this address",
            Some(5),
        ),
    }
}

/// Refuses a connection that has sent nothing yet (see the module docs).
fn refuse(app: &App, stream: TcpStream, why: Refusal) {
    app.metrics.refused(why);
    if matches!(why, Refusal::PerIpConnections | Refusal::PerIpRate) {
        // A fresh socket's send buffer takes these ~200 bytes at once; if
        // not, the client gets the close alone.
        let _ = stream.try_write(&per_ip_refusal(why).raw_http1());
    }
    drop(stream);
}

/// The per-connection timers, read at accept.
#[derive(Clone, Copy)]
struct Timers {
    head: Duration,
    idle: Duration,
}

impl Timers {
    fn of(l: &Limits) -> Timers {
        Timers { head: Limits::dur(l.request_head_timeout_secs), idle: Limits::dur(l.keepalive_idle_secs) }
    }
}

/// hyper's per-connection limits.
fn builder(l: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper restarts its header timer as soon as a reply is written, so for
    // HTTP/1.1 it bounds the keep-alive idle time plus the next head. The
    // watchdog closes an idle connection at keepalive_idle_secs, first; the
    // first head is timed by the watchdog too (request_head_timeout_secs).
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Limits::dur(l.keepalive_idle_secs + l.request_head_timeout_secs))
        .max_buf_size(l.max_request_head_bytes)
        .max_headers(l.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(l.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(l.max_request_head_bytes).unwrap_or(u32::MAX))
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONN_WINDOW)
        .max_send_buf_size(H2_SEND_BUF)
        .keep_alive_interval(Limits::dur(l.keepalive_idle_secs / 2.0))
        .keep_alive_timeout(Limits::dur(l.request_head_timeout_secs));
    b
}

/// Serves one client connection under the watchdog (see the module docs).
async fn serve_connection(ctx: Arc<ConnCtx>, builder: auto::Builder<TokioExecutor>, t: Timers) {
    let svc_ctx = ctx.clone();
    let svc = hyper::service::service_fn(move |req| {
        let ctx = svc_ctx.clone();
        async move {
            let _in_flight = InFlight::start(&ctx);
            Ok::<_, Infallible>(client_request(req, &ctx).await)
        }
    });
    let io = TokioIo::new(SharedTcp(ctx.sock.clone()));
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let head_by = ctx.born + t.head;
    let mut closing: Option<Instant> = None;
    let evicted = ctx.pending.evicted();
    tokio::pin!(evicted);
    loop {
        let wake = match closing {
            Some(at) => at,
            None if !ctx.pending.is_released() && Instant::now() < head_by => head_by,
            // Anonymous past its time but a request in flight (a body has its
            // own timer): look again shortly.
            None if !ctx.pending.is_released() => Instant::now() + ANON_POLL,
            None if ctx.active.load(Relaxed) > 0 => Instant::now() + t.idle,
            None => ctx.born + Duration::from_millis(ctx.last_done_ms.load(Relaxed)) + t.idle,
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    count_hyper_error(&ctx.app, &*e);
                }
                return;
            }
            _ = sleep_until(wake) => {}
            // A stream owns the socket now (its task holds the context);
            // the request that opened it never answers through hyper.
            _ = ctx.detach.notified() => return,
            // Counted by the newer connection that evicted this one.
            _ = &mut evicted, if closing.is_none() && !ctx.pending.is_released() => {
                if !ctx.pending.is_started() {
                    return;
                }
                // Idle after a junk request: let its reply finish.
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + CLOSE_GRACE.min(t.head));
                continue;
            }
        }
        let now = Instant::now();
        if closing.is_some() {
            return;
        }
        if !ctx.pending.is_released() {
            if now < head_by || ctx.active.load(Relaxed) > 0 {
                continue;
            }
            ctx.app.metrics.refused(Refusal::RequestHeadTimeout);
            if !ctx.pending.is_started() {
                // Nothing was asked, nothing to answer.
                return;
            }
            // Let the last reply be written, then close.
            conn.as_mut().graceful_shutdown();
            closing = Some(now + CLOSE_GRACE.min(t.head));
            continue;
        }
        let idle_since = ctx.born + Duration::from_millis(ctx.last_done_ms.load(Relaxed));
        if ctx.active.load(Relaxed) == 0 && now >= idle_since + t.idle {
            ctx.app.metrics.idle_closes.fetch_add(1, Relaxed);
            conn.as_mut().graceful_shutdown();
            closing = Some(now + CLOSE_GRACE.min(t.head));
        }
    }
}

/// Counts what hyper refused on its own: heads over the size limits (it
/// answered 431) and later HTTP/1.1 heads that timed out.
fn count_hyper_error(app: &App, e: &(dyn std::error::Error + 'static)) {
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        if h.is_parse_too_large() {
            app.metrics.refused(Refusal::HeadTooLarge);
        } else if h.is_timeout() {
            app.metrics.refused(Refusal::RequestHeadTimeout);
        }
    }
}

async fn client_request(req: Request<Incoming>, ctx: &Arc<ConnCtx>) -> Response<Body> {
    let path = req.uri().path();
    if path == "/v1/ws" {
        return super::upgrade::upgrade(req, ctx);
    }
    if path == "/v1/stream" || path.starts_with("/v1/stream/") {
        if req.method() != Method::POST {
            return api_error(&err(ErrorCode::MethodNotAllowed, "/v1/stream takes POST"));
        }
        return match path.strip_prefix("/v1/stream/") {
            None => super::stream::open(req, ctx).await,
            Some(id) => {
                let id = id.to_owned();
                super::stream::op(req, ctx, &id).await
            }
        };
    }
    let Some(endpoint) = Endpoint::from_path(path) else {
        return api_error(&err(ErrorCode::NotFound, "no such endpoint"));
    };
    if req.method() != Method::POST {
        return api_error(&err(ErrorCode::MethodNotAllowed, format!("{path} takes POST")));
    }
    super::api::handle(req, ctx, endpoint).await
}
