//! `POST /v1/stream` and `POST /v1/stream/<id>`: the streaming fallback
//! (protocol §6.1) for clients whose network refuses WebSocket upgrades.
//!
//! Opening: the body is the `auth` frame; the checks are a WebSocket's
//! (origin, capacity, per-address slot behind a proxy, token, caps,
//! revocation, the re-checks after registering), each refusal an HTTP
//! error with a JSON body. Then the relay writes its own response head and
//! the stream's SSE events straight into the connection through the
//! stream's [`Outbox`], exactly as a WebSocket's frames go (from the
//! pushing task, queued only when the kernel does not take them). hyper
//! has read the request; its handler never answers, and the connection's
//! task drops hyper's side of the connection (`ConnCtx::detach`), so
//! hyper never writes on it again and its buffers (16 KiB) are freed: the
//! stream's task holds only what a WebSocket's does. The body is
//! close-delimited (`Connection: close`): an event's bytes are the same
//! for every stream, encoded once per event.
//!
//! Ops: each POST takes its turn at the stream's [`Session`] (the code a
//! WebSocket's task applies frames with), with the socket's frame bucket
//! and size limit; the reply goes onto the stream.

use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::Poll;

use bm_proto::frames::{self, close, codes, ClientFrame, ClientOp};
use bm_proto::token::TokenKind;
use bm_proto::TokenError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};
use tokio::time::{sleep_until, timeout, Instant};

use super::accept::ConnCtx;
use super::upgrade::{admit_long_lived, check_origin};
use super::{json, Body};
use crate::bucket::Bucket;
use crate::config::{Config, Limits};
use crate::conn::Conn;
use crate::frame::sse_event;
use crate::metrics::SocketRefusal;
use crate::outbox::{CloseRequest, Outbox};
use crate::router::{Caps, RegisterError};
use crate::state::App;
use crate::stream::{Stream, StreamId};
use crate::ws::session::Session;
use crate::ws::{instant_of_unix, req};

/// How long the relay tries to write a stream's `close` event.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// The SSE heartbeat: a comment line, ignored by every SSE reader.
const HEARTBEAT: &[u8] = b":\n\n";

/// A refusal: status, code, message, and a `Retry-After` when waiting helps.
fn refusal(status: StatusCode, code: &str, message: &str, retry_after: Option<u32>) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut r = json(status, body);
    if let Some(s) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// Lets the page that asked read the answer (CORS, a simple request).
fn cors(mut r: Response<Body>, origin: &Option<HeaderValue>) -> Response<Body> {
    if let Some(o) = origin {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        // Else a page cannot read it on a 429/503 (CORS hides all but the
        // safelisted headers) and backs off by its own schedule instead.
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Retry-After"));
    }
    r
}

/// The request body, at most `max` bytes, within `body_timeout_secs`.
async fn read_frame(body: Incoming, max: usize, limits: &Limits) -> Result<Bytes, Response<Body>> {
    match timeout(Limits::dur(limits.body_timeout_secs), Limited::new(body, max).collect()).await {
        Err(_) => Err(refusal(StatusCode::REQUEST_TIMEOUT, "timeout", "the body did not arrive in time", None)),
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::TOO_LARGE,
            &format!("a client frame is at most {max} bytes"),
            None,
        )),
        Ok(Err(_)) => Err(refusal(StatusCode::BAD_REQUEST, "malformed", "the body could not be read", None)),
    }
}

/// `POST /v1/stream`: opens a stream. On success the stream's own task
/// takes the connection over and this never returns: the connection's
/// task drops hyper's side of it (and with it this future), so hyper
/// writes nothing more on it and its buffers are freed.
pub(super) async fn open(req: Request<Incoming>, ctx: &Arc<ConnCtx>) -> Response<Body> {
    let cfg = ctx.app.config();
    let origin = match check_origin(req.headers(), &cfg.limits) {
        Ok(o) => o,
        Err(r) => return r.response(),
    };
    match admit(req, ctx, cfg).await {
        Ok(opened) => {
            // Not anonymous any more, and counted before the task starts
            // (a shutdown that begins now waits for it).
            ctx.pending.release();
            ctx.app.stream_opened();
            tokio::spawn(serve(opened, ctx.clone(), origin));
            ctx.detach.notify_one();
            std::future::pending().await
        }
        Err(r) => cors(r, &origin),
    }
}

/// What a stream that passed admission holds.
struct Opened {
    stream: Arc<Stream>,
    id: StreamId,
    user: bm_proto::UserId,
    exp: u64,
    /// The forwarded client address's slot, for the stream's life.
    _ip_slot: Option<super::admission::IpSlot>,
}

/// Every check of a socket's admission, as HTTP refusals; on success the
/// stream is registered (its outbox held) and has its id.
async fn admit(request: Request<Incoming>, ctx: &ConnCtx, cfg: Arc<Config>) -> Result<Opened, Response<Body>> {
    let app = &ctx.app;
    let limits = &cfg.limits;
    if request.version() != Version::HTTP_11 && request.version() != Version::HTTP_10 {
        return Err(refusal(StatusCode::BAD_REQUEST, "malformed", "/v1/stream needs HTTP/1.1", None));
    }
    if app.is_shutting_down() {
        return Err(refusal(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the relay is shutting down", Some(5)));
    }
    let ip_slot = admit_long_lived(request.headers(), ctx, limits).map_err(|r| r.response())?;
    let body = read_frame(request.into_body(), limits.max_frame_bytes, limits).await?;
    let unauthorized = |code: &str, message: &str| refusal(StatusCode::UNAUTHORIZED, code, message, None);
    let token = match std::str::from_utf8(&body).ok().map(ClientFrame::parse) {
        Some(Ok(ClientFrame { op: ClientOp::Auth { token }, .. })) => token,
        _ => return Err(refusal(StatusCode::BAD_REQUEST, codes::BAD_FRAME, "the body must be an `auth` frame", None)),
    };
    let claims = app.verify_token_in(&cfg, &token, TokenKind::Connection).map_err(|e| match e {
        TokenError::Expired => unauthorized(codes::TOKEN_EXPIRED, &e.to_string()),
        TokenError::Revoked => refusal(StatusCode::FORBIDDEN, codes::FORBIDDEN, &e.to_string(), None),
        _ => unauthorized(codes::BAD_TOKEN, &e.to_string()),
    })?;
    drop(token);
    let out = Arc::new(Outbox::sse(Some(ctx.sock.clone())));
    let conn = Arc::new(Conn::with_outbox(claims.site.clone(), claims.sub, claims.iat, out));
    let caps = Caps { per_user: limits.max_sockets_per_user, per_site: limits.max_sockets_per_site };
    if let Err(e) = app.router.register(&conn, caps) {
        return Err(match e {
            RegisterError::UserFull => {
                app.metrics.socket_refused(SocketRefusal::User);
                refusal(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many sockets for this user", Some(10))
            }
            RegisterError::SiteFull => {
                app.metrics.socket_refused(SocketRefusal::Site);
                refusal(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the site is at its socket limit", Some(10))
            }
        });
    }
    // The re-checks after the insert (crate::ws: a disconnect, reload or
    // shutdown in between did not see this stream).
    let recheck = if app.revocations.is_revoked(&claims.site, claims.sub, None, claims.iat) {
        Some(refusal(StatusCode::FORBIDDEN, codes::FORBIDDEN, "token revoked", None))
    } else if !app.same_key(&claims.site, &cfg) {
        Some(unauthorized(codes::BAD_TOKEN, "site removed or re-keyed"))
    } else if app.is_shutting_down() {
        Some(refusal(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the relay is shutting down", Some(5)))
    } else {
        None
    };
    let session = Session {
        app: app.clone(),
        conn: conn.clone(),
        exp_at: instant_of_unix(claims.exp),
        pub_bucket: Bucket::new(limits.pub_burst),
        frame_bucket: Bucket::new(limits.frame_burst),
        generation: app.config_generation(),
        cfg: cfg.clone(),
        gated: None,
    };
    let stream = Arc::new(Stream::new(session));
    let id = match recheck {
        None => app.streams.insert(stream.clone()),
        Some(_) => None,
    };
    let Some(id) = id else {
        conn.request_close(req(close::GOING_AWAY, "refused"));
        app.router.unregister(&conn);
        return Err(recheck.unwrap_or_else(|| {
            refusal(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "no randomness for a stream id", Some(5))
        }));
    };
    Ok(Opened { stream, id, user: claims.sub, exp: claims.exp, _ip_slot: ip_slot })
}

/// Ends a stream however its handler ends (hyper drops it when the client
/// goes): out of the router and the id table, the outbox retired, counted.
struct Teardown<'a> {
    app: &'a App,
    stream: &'a Stream,
    id: StreamId,
    routed: bool,
}

impl Teardown<'_> {
    /// No push reaches the stream and no op finds it from here on.
    fn unroute(&mut self) {
        if std::mem::take(&mut self.routed) {
            self.app.router.unregister(&self.stream.conn);
            self.app.streams.remove(&self.id);
        }
    }
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        self.stream.conn.request_close(req(close::GOING_AWAY, "client closed"));
        self.unroute();
        self.stream.conn.out.retire();
        self.app.stream_ended();
    }
}

/// Writes the head and the stream until it ends, then the `close` event.
/// Holds the connection's context (its place in `max_connections`) for
/// the stream's life.
async fn serve(o: Opened, ctx: Arc<ConnCtx>, origin: Option<HeaderValue>) {
    let app = &*ctx.app;
    let stream = &*o.stream;
    let out = &*stream.conn.out;
    let mut teardown = Teardown { app, stream, id: o.id, routed: true };
    out.release(head(&origin));
    // In a cluster, `ready` waits (bounded) until every node routes here,
    // as a socket's does.
    if let Some(routable) = app.router.routable(&stream.conn) {
        routable.await;
    }
    let ready = frames::ready(o.user, o.exp);
    let ready = format!("{},\"stream\":\"{}\"}}", &ready[..ready.len() - 1], crate::stream::id_text(&o.id));
    stream.conn.enqueue(&crate::frame::Frame::from(ready), app.config().limits.outbound_queue_bytes);
    tracing::debug!(conn = stream.conn.id, site = %stream.conn.site, user = %stream.conn.user, "stream opened");

    let ended = pump(app, stream).await;
    if let Some(why) = ended {
        // No event may follow the close event: pushes stop here.
        stream.conn.request_close(why);
        teardown.unroute();
        app.metrics.close(why.code);
        let close = serde_json::json!({"op": "close", "code": why.code, "reason": why.wire_reason()}).to_string();
        let max = app.config().limits.outbound_queue_bytes;
        if out.send_control(&sse_event(close.as_bytes()), max).is_ok() {
            let _ = timeout(CLOSE_LINGER, poll_fn(|cx| out.poll_drain(cx))).await;
        }
    }
    teardown.unroute();
    // The end of the body (close-delimited); the descriptor closes when
    // the last of the context and the outbox goes, just after.
    out.shutdown_write();
    drop(teardown);
}

/// The response head, written by the relay itself (see the module doc).
fn head(origin: &Option<HeaderValue>) -> Bytes {
    let mut h = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\nx-accel-buffering: no\r\nconnection: close\r\n",
    );
    if let Some(o) = origin.as_ref().and_then(|o| o.to_str().ok()) {
        // An origin that passed `allowed_origins` (or any, with an empty
        // list): a visible-ASCII header value, so no CR/LF can get in.
        h.push_str("access-control-allow-origin: ");
        h.push_str(o);
        h.push_str("\r\nvary: Origin\r\n");
    }
    h.push_str("\r\n");
    Bytes::from(h)
}

/// The stream's task: writes out what the kernel did not take, sends the
/// heartbeat, ends at the token's expiry or a close request. `None`: the
/// connection is gone (nothing more can be written).
async fn pump(app: &App, stream: &Stream) -> Option<CloseRequest> {
    let out = &*stream.conn.out;
    let mut generation = app.config_generation();
    let mut cfg = app.config();
    let mut last_beat = Instant::now();
    let timer = sleep_until(last_beat + Limits::dur(cfg.limits.ping_interval_secs));
    tokio::pin!(timer);
    loop {
        if app.config_generation() != generation {
            generation = app.config_generation();
            cfg = app.config();
        }
        if let Some(why) = stream.conn.close_requested() {
            return Some(why);
        }
        let now = Instant::now();
        let exp_at = stream.exp_at();
        if now >= exp_at {
            return Some(req(close::TOKEN_EXPIRED, "token expired"));
        }
        let every = Limits::dur(cfg.limits.ping_interval_secs);
        if now >= last_beat + every {
            last_beat = now;
            if out.send_control(HEARTBEAT, cfg.limits.outbound_queue_bytes).is_err() {
                return None;
            }
        }
        timer.as_mut().reset((last_beat + every).min(exp_at));
        let notified = out.wake.notified();
        tokio::pin!(notified);
        let wrote = poll_fn(|cx| {
            let mut wrote = None;
            if out.has_pending() {
                if let Poll::Ready(r) = out.poll_drain(cx) {
                    wrote = Some(r);
                }
            }
            let other = notified.as_mut().poll(cx).is_ready() | timer.as_mut().poll(cx).is_ready();
            if other || wrote.is_some() {
                Poll::Ready(wrote)
            } else {
                Poll::Pending
            }
        })
        .await;
        if let Some(Err(_)) = wrote {
            return None;
        }
    }
}

/// `POST /v1/stream/<id>`: one client frame for an open stream.
pub(super) async fn op(req: Request<Incoming>, ctx: &ConnCtx, id: &str) -> Response<Body> {
    let cfg = ctx.app.config();
    let origin = match check_origin(req.headers(), &cfg.limits) {
        Ok(o) => o,
        Err(r) => return r.response(),
    };
    cors(apply(req, ctx, &cfg, id).await, &origin)
}

async fn apply(request: Request<Incoming>, ctx: &ConnCtx, cfg: &Config, id: &str) -> Response<Body> {
    let limits = &cfg.limits;
    let stream = crate::stream::parse_id(id).and_then(|id| ctx.app.streams.get(&id));
    let Some(stream) = stream.filter(|s| s.conn.close_requested().is_none()) else {
        return refusal(StatusCode::NOT_FOUND, "unknown_stream", "no open stream has this id; open a new one", None);
    };
    let body = match read_frame(request.into_body(), limits.max_frame_bytes, limits).await {
        Ok(b) => b,
        Err(r) => {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                stream.conn.request_close(req(close::FRAME_TOO_LARGE, "frame too large"));
            }
            return r;
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return refusal(StatusCode::BAD_REQUEST, codes::BAD_FRAME, "a client frame is UTF-8 text", None);
    };
    // A valid id proves this connection is a client's, not a flood's.
    ctx.pending.release();
    let mut s = stream.session.lock().await;
    s.refresh_limits();
    let (rate, burst) = (s.cfg.limits.frame_rate_per_sec, s.cfg.limits.frame_burst);
    if !s.frame_bucket.take(rate, burst) {
        stream.conn.request_close(req(close::RATE_LIMITED, "too many frames"));
        return refusal(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many frames", Some(1));
    }
    s.on_text(text);
    // A cluster holds a new `sub`'s `ok` until every node routes the thread
    // here; the next op of this stream waits its turn meanwhile, so the
    // replies keep the order of the ops.
    if let Some(gate) = s.gated.take() {
        let r#ref = gate.await;
        s.reply(frames::ok(r#ref));
    }
    stream.note_exp(s.exp_at);
    drop(s);
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}
