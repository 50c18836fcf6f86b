//! One WebSocket, from upgrade to close (protocol §6), in one task.
//!
//! The task first waits (at most `auth_timeout_secs`) for an `auth` frame;
//! then it registers a [`Conn`] with the router and loops over four event
//! sources, polled together from one `poll_fn`:
//!
//! - the client's next frame (ops, pings, close),
//! - writing out the socket's [`Outbox`] queue, when something is queued,
//! - the [`Outbox::wake`] notification (bytes queued, or a close request),
//! - one timer set to the earliest of: next ping, idle deadline, token expiry.
//!
//! tungstenite only reads here (and writes its own control frames: pongs,
//! the close handshake): it sees a [`WsIo`], whose reads come from the
//! upgraded connection and whose writes go into the outbox. Server frames
//! are written by the outbox, pre-encoded once per event, directly from the
//! pushing task while the socket keeps up (see [`crate::conn`]); this task
//! only writes out what the kernel did not take at once. A socket's
//! private state is a few hundred bytes plus tungstenite's (small,
//! configured) buffers.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bm_proto::frames::{self, close, codes, ClientFrame, ClientOp};
use bm_proto::token::TokenKind;
use bm_proto::{Envelope, EnvelopeError, KeyId, TokenError};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::config::Limits;
use crate::conn::{CloseRequest, Conn, Frame, Outbox};
use crate::router::SubError;
use crate::state::{unix_now, App};

type Ws<R> = WebSocketStream<WsIo<R>>;

/// The byte stream tungstenite sees: reads from the upgraded connection,
/// writes (whole frames: pongs, the close handshake) into the socket's
/// outbox, behind whatever is queued there. Flushing writes the outbox out.
pub struct WsIo<R> {
    read: R,
    out: Arc<Outbox>,
    max_queue: usize,
}

impl<R> WsIo<R> {
    /// Reads from `read`; writes through `out`, bounded by `max_queue`.
    pub fn new(read: R, out: Arc<Outbox>, max_queue: usize) -> Self {
        WsIo { read, out, max_queue }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for WsIo<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<R: Unpin> AsyncWrite for WsIo<R> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // tungstenite hands over its whole buffer of complete frames.
        Poll::Ready(self.out.send_control(buf, self.max_queue).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_drain(cx)
    }
}

/// How long the relay waits for its close frame to be written and answered.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// The tungstenite configuration for client sockets: small buffers (an idle
/// socket must cost little) and the client frame limit.
pub fn ws_config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(limits.ws_read_buffer)
        .write_buffer_size(limits.ws_write_buffer)
        .max_message_size(Some(limits.max_frame_bytes))
        .max_frame_size(Some(limits.max_frame_bytes))
}

/// A token bucket: `rate` tokens per second, at most `burst`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(burst: f64) -> Self {
        Bucket { tokens: burst, last: Instant::now() }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: f64, burst: f64) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts an open socket for the lifetime of its task.
struct OpenGuard<'a>(&'a App);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.metrics.ws_open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Removes the socket from routing however its task ends.
struct Registered<'a>(&'a App, Arc<Conn>);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.router.unregister(&self.1);
    }
}

fn deadline_after(secs: f64) -> Instant {
    Instant::now() + Limits::dur(secs)
}

/// Longest a token can keep a socket open (a far-future `exp` must not
/// overflow the clock arithmetic).
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Instant at which a unix-seconds `exp` falls (capped at ten years).
fn instant_of_unix(exp: u64) -> Instant {
    Instant::now() + Duration::from_secs(exp.saturating_sub(unix_now())).min(MAX_TOKEN_LIFE)
}

fn close_frame(req: CloseRequest) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(req.code), reason: req.reason.into() }))
}

const fn req(code: u16, reason: &'static str) -> CloseRequest {
    CloseRequest { code, reason }
}

/// Makes the outbox refuse every write once the socket's task has ended.
struct Retire<'a>(&'a Outbox);

impl Drop for Retire<'_> {
    fn drop(&mut self) {
        self.0.retire();
    }
}

/// Runs one socket to completion; `out` is the outbox `ws` writes into.
///
/// The stream comes boxed: the socket's task then holds a pointer to it
/// rather than copies of it in several states of its future (an idle
/// socket's memory is mostly this task).
pub async fn run<R>(mut ws: Box<Ws<R>>, out: Arc<Outbox>, app: Arc<App>)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    use std::sync::atomic::Ordering::Relaxed;
    app.metrics.ws_opened.fetch_add(1, Relaxed);
    app.metrics.ws_open.fetch_add(1, Relaxed);
    let _open = OpenGuard(&app);
    let _retire = Retire(&out);
    let ws = &mut *ws;

    let auth = authenticate(&app, ws).await;
    let (claims, r#ref) = match auth {
        Ok(ok) => ok,
        Err(None) => {
            answer_close(ws).await;
            return;
        }
        Err(Some((error, why))) => {
            if let Some(text) = error {
                let _ = timeout(CLOSE_LINGER, ws.feed(Message::Text(text.into()))).await;
            }
            finish(&app, ws, why).await;
            return;
        }
    };
    let _ = r#ref;
    let conn = Arc::new(Conn::with_outbox(claims.site.clone(), claims.sub, out.clone()));
    app.router.register(&conn);
    let _registered = Registered(&app, conn.clone());
    tracing::debug!(conn = conn.id, site = %conn.site, user = %conn.user, "socket authenticated");
    let limits = app.config().limits.clone();
    conn.enqueue(&Frame::from(frames::ready(claims.sub, claims.exp)), limits.outbound_queue_bytes);

    let mut s = Session {
        app: &app,
        conn: &conn,
        exp_at: instant_of_unix(claims.exp),
        pub_bucket: Bucket::new(limits.pub_burst),
        frame_bucket: Bucket::new(limits.frame_burst),
    };
    match s.main_loop(ws).await {
        Some(why) => {
            // No event may follow the close frame: pushes stop here.
            conn.request_close(why);
            finish(&app, ws, why).await
        }
        None => answer_close(ws).await,
    }
}

type AuthFailure = Option<(Option<String>, CloseRequest)>;

/// Waits for the `auth` frame. `Err(None)`: the client left; `Err(Some)`:
/// an optional error frame to send, then the close.
async fn authenticate<R>(app: &App, rx: &mut Ws<R>) -> Result<(bm_proto::Claims, Option<i64>), AuthFailure>
where
    R: AsyncRead + Unpin,
{
    let deadline = deadline_after(app.config().limits.auth_timeout_secs);
    let wait = async {
        loop {
            let text = match rx.next().await {
                None | Some(Ok(Message::Close(_))) => return Err(None),
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => {
                    return Err(Some((None, req(close::UNAUTHORIZED, "first frame must be a text auth frame"))))
                }
                Some(Err(e)) => return Err(error_close(e)),
            };
            return match ClientFrame::parse(&text) {
                Ok(ClientFrame { r#ref, op: ClientOp::Auth { token } }) => {
                    match app.verify_token(&token, TokenKind::Connection) {
                        Ok(claims) => Ok((claims, r#ref)),
                        Err(e) => {
                            let (code, why) = match e {
                                TokenError::Expired => (codes::TOKEN_EXPIRED, req(close::TOKEN_EXPIRED, "token expired")),
                                TokenError::UnknownSite => (codes::BAD_TOKEN, req(close::UNAUTHORIZED, "unknown site")),
                                TokenError::Revoked => (codes::FORBIDDEN, req(close::REVOKED, "token revoked")),
                                _ => (codes::BAD_TOKEN, req(close::UNAUTHORIZED, "bad token")),
                            };
                            Err(Some((Some(frames::error(r#ref, code, &e.to_string())), why)))
                        }
                    }
                }
                Ok(other) => Err(Some((
                    Some(frames::error(other.r#ref, codes::BAD_FRAME, "the first frame must be `auth`")),
                    req(close::UNAUTHORIZED, "not authenticated"),
                ))),
                Err(e) => Err(Some((
                    Some(frames::error(e.r#ref, e.code, &e.message)),
                    req(close::UNAUTHORIZED, "not authenticated"),
                ))),
            };
        }
    };
    // A shutdown does not wait for sockets that have not authenticated yet.
    let mut stop = app.shutdown_signal();
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::select! {
        r = tokio::time::timeout_at(deadline, wait) => match r {
            Ok(r) => r,
            Err(_) => Err(Some((None, req(close::UNAUTHORIZED, "auth timeout")))),
        },
        _ = stopping => Err(Some((None, req(close::GOING_AWAY, "relay shutting down")))),
    }
}

/// The close that a read error calls for (`None`: the connection is gone).
fn error_close(e: WsError) -> AuthFailure {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            Some((None, req(close::FRAME_TOO_LARGE, "frame too large")))
        }
        WsError::Protocol(_) | WsError::Utf8(_) => Some((None, req(close::POLICY, "protocol error"))),
        _ => None,
    }
}

/// The client closed (or the connection broke): flush tungstenite's reply
/// to the client's close frame, so the client sees a clean close. Fails
/// fast on a broken connection.
async fn answer_close<R>(tx: &mut Ws<R>)
where
    R: AsyncRead + Unpin,
{
    let _ = timeout(CLOSE_LINGER, SinkExt::close(tx)).await;
}

/// Sends the close frame, then waits briefly for the client's answer so the
/// close frame is not lost to a TCP reset.
async fn finish<R>(app: &App, ws: &mut Ws<R>, why: CloseRequest)
where
    R: AsyncRead + Unpin,
{
    app.metrics.close(why.code);
    tracing::debug!(code = why.code, reason = why.reason, "closing socket");
    let _ = timeout(CLOSE_LINGER, async {
        if ws.send(close_frame(why)).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

struct Session<'a> {
    app: &'a App,
    conn: &'a Arc<Conn>,
    exp_at: Instant,
    pub_bucket: Bucket,
    frame_bucket: Bucket,
}

enum Step {
    Continue,
    Close(CloseRequest),
    Gone,
}

/// What one wake-up of the socket task found: the read and write sides
/// are both polled on every wake-up, so neither can starve the other.
#[derive(Default)]
struct Woken {
    read: Option<Option<Result<Message, WsError>>>,
    wrote: Option<io::Result<()>>,
}

impl Session<'_> {
    async fn main_loop<R>(&mut self, ws: &mut Ws<R>) -> Option<CloseRequest>
    where
        R: AsyncRead + Unpin,
    {
        let limits = self.app.config().limits.clone();
        let ping_every = Limits::dur(limits.ping_interval_secs);
        let idle = Limits::dur(limits.idle_timeout_secs);
        let mut last_seen = Instant::now();
        let mut next_ping = last_seen + ping_every;
        let out = &*self.conn.out;
        let max_queue = limits.outbound_queue_bytes;
        let timer = sleep_until(next_ping);
        tokio::pin!(timer);
        loop {
            if let Some(why) = self.conn.close_requested() {
                return Some(why);
            }
            let now = Instant::now();
            if now >= self.exp_at {
                return Some(req(close::TOKEN_EXPIRED, "token expired"));
            }
            if now >= last_seen + idle {
                return Some(req(close::GOING_AWAY, "idle timeout"));
            }
            if now >= next_ping {
                next_ping = now + ping_every;
                if out.send_control(Frame::ping().as_bytes(), max_queue).is_err() {
                    return None;
                }
            }
            timer.as_mut().reset(next_ping.min(self.exp_at).min(last_seen + idle));
            let notified = out.wake.notified();
            tokio::pin!(notified);
            let woken = poll_fn(|cx| {
                let mut w = Woken::default();
                if out.has_pending() {
                    if let Poll::Ready(r) = out.poll_drain(cx) {
                        w.wrote = Some(r);
                    }
                }
                if let Poll::Ready(m) = ws.poll_next_unpin(cx) {
                    w.read = Some(m);
                }
                let other = notified.as_mut().poll(cx).is_ready() | timer.as_mut().poll(cx).is_ready();
                if other || w.read.is_some() || w.wrote.is_some() {
                    Poll::Ready(w)
                } else {
                    Poll::Pending
                }
            })
            .await;
            if let Some(Err(_)) = woken.wrote {
                return None;
            }
            if let Some(m) = woken.read {
                last_seen = Instant::now();
                match self.on_message(m) {
                    Step::Continue => {}
                    Step::Close(why) => return Some(why),
                    Step::Gone => return None,
                }
            }
        }
    }

    fn reply(&self, text: String) {
        let max = self.app.config().limits.outbound_queue_bytes;
        self.conn.enqueue(&Frame::from(text), max);
    }

    fn refuse(&self, r#ref: Option<i64>, code: &str, message: &str) {
        self.app.metrics.frame_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.reply(frames::error(r#ref, code, message));
    }

    fn on_message(&mut self, m: Option<Result<Message, WsError>>) -> Step {
        let limits = self.app.config().limits.clone();
        let text = match m {
            None | Some(Ok(Message::Close(_))) => return Step::Gone,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return Step::Continue,
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                if !self.frame_bucket.take(limits.frame_rate_per_sec, limits.frame_burst) {
                    return Step::Close(req(close::RATE_LIMITED, "too many frames"));
                }
                self.refuse(None, codes::BAD_FRAME, "binary frames are not part of the protocol");
                return Step::Continue;
            }
            Some(Err(e)) => {
                return match error_close(e) {
                    Some((_, why)) => Step::Close(why),
                    None => Step::Gone,
                }
            }
        };
        if !self.frame_bucket.take(limits.frame_rate_per_sec, limits.frame_burst) {
            return Step::Close(req(close::RATE_LIMITED, "too many frames"));
        }
        let frame = match ClientFrame::parse(&text) {
            Ok(f) => f,
            Err(e) => {
                self.refuse(e.r#ref, e.code, &e.message);
                return Step::Continue;
            }
        };
        let r#ref = frame.r#ref;
        match frame.op {
            ClientOp::Ping => self.reply(frames::pong(r#ref)),
            ClientOp::Auth { .. } => self.refuse(r#ref, codes::ALREADY_AUTHENTICATED, "this socket is already authenticated"),
            ClientOp::Refresh { token } => match self.app.verify_token(&token, TokenKind::Connection) {
                Ok(c) if c.site == self.conn.site && c.sub == self.conn.user => {
                    self.exp_at = instant_of_unix(c.exp);
                    self.reply(frames::ok(r#ref));
                }
                Ok(_) => self.refuse(r#ref, codes::FORBIDDEN, "a refresh token must be for the same site and user"),
                Err(e) => self.refuse_token(r#ref, e),
            },
            ClientOp::Sub { thread, token } => match self.app.verify_token(&token, TokenKind::Thread) {
                Ok(c) if c.site == self.conn.site && c.sub == self.conn.user && c.thread == Some(thread) => {
                    match self.app.router.subscribe(self.conn, thread, limits.max_subscriptions) {
                        Ok(_) => self.reply(frames::ok(r#ref)),
                        Err(SubError::TooMany) => self.refuse(
                            r#ref,
                            codes::TOO_MANY_SUBSCRIPTIONS,
                            &format!("a socket may watch at most {} threads", limits.max_subscriptions),
                        ),
                    }
                }
                Ok(_) => self.refuse(r#ref, codes::FORBIDDEN, "the thread token is for another site, user or thread"),
                Err(e) => self.refuse_token(r#ref, e),
            },
            ClientOp::Unsub { thread } => {
                if self.app.router.unsubscribe(self.conn, thread) {
                    self.reply(frames::ok(r#ref));
                } else {
                    self.refuse(r#ref, codes::NOT_SUBSCRIBED, "this socket does not watch that thread");
                }
            }
            ClientOp::Pub { thread, e } => self.on_pub(r#ref, thread, e.get(), &limits),
        }
        Step::Continue
    }

    fn refuse_token(&self, r#ref: Option<i64>, e: TokenError) {
        let code = match e {
            TokenError::Expired => codes::TOKEN_EXPIRED,
            TokenError::Revoked => codes::FORBIDDEN,
            _ => codes::BAD_TOKEN,
        };
        self.refuse(r#ref, code, &e.to_string());
    }

    fn on_pub(&mut self, r#ref: Option<i64>, thread: bm_proto::ThreadId, envelope_json: &str, limits: &Limits) {
        if !self.conn.is_subscribed(thread) {
            return self.refuse(r#ref, codes::NOT_SUBSCRIBED, "`pub` needs a live `sub` to the thread");
        }
        if !self.pub_bucket.take(limits.pub_rate_per_sec, limits.pub_burst) {
            return self.refuse(r#ref, codes::RATE_LIMITED, "too many `pub` frames; slow down");
        }
        let env = match Envelope::parse(envelope_json, limits.max_pub_ciphertext) {
            Ok(env) => env,
            Err(EnvelopeError::TooLarge { len, max }) => {
                return self.refuse(r#ref, codes::TOO_LARGE, &format!("envelope ciphertext is {len} bytes, over the limit of {max}"))
            }
            Err(e) => return self.refuse(r#ref, codes::BAD_ENVELOPE, &e.to_string()),
        };
        match env.k {
            KeyId::Thread { thread: t, .. } if t == thread => {}
            _ => {
                return self.refuse(
                    r#ref,
                    codes::BAD_ENVELOPE,
                    &format!("a `pub` to thread {thread} must be sealed with a key of that thread (t/{thread}/…)"),
                )
            }
        }
        let frame = Frame::from(frames::ev_from(thread, self.conn.user, envelope_json));
        let d = self.app.router.publish(self.conn, thread, &frame, limits.outbound_queue_bytes);
        let m = &self.app.metrics;
        m.pubs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        m.deliveries.fetch_add(d.sockets, std::sync::atomic::Ordering::Relaxed);
        self.reply(frames::ok(r#ref));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn far_future_expiry_does_not_overflow() {
        let far = instant_of_unix(u64::MAX);
        assert!(far > Instant::now() + Duration::from_secs(365 * 24 * 3600));
        assert!(instant_of_unix(0) <= Instant::now());
    }

    #[tokio::test]
    async fn bucket_allows_burst_then_rate() {
        let mut b = Bucket::new(3.0);
        assert!((0..3).all(|_| b.take(1.0, 3.0)));
        assert!(!b.take(1.0, 3.0));
    }
}
