//! The second phase of a socket: authenticated, registered, serving ops.
//!
//! One loop polls four event sources together from one `poll_fn`:
//!
//! - the client's next frame (ops, pings, close),
//! - writing out the socket's [`crate::outbox::Outbox`] queue, when
//!   something is queued,
//! - the outbox's wake-up (bytes queued, or a close request),
//! - one timer set to the earliest of: next ping, idle deadline, token expiry.
//!
//! The session keeps its own copy of the limits and re-reads them when a
//! reload bumps the configuration generation, so a reload reaches open
//! sockets (ping interval, idle timeout, rate limits, queue bound, caps).

use std::future::{poll_fn, Future};
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Poll;

use bm_proto::frames::{self, close, codes, ClientFrame, ClientOp, ThreadPresence};
use bm_proto::token::TokenKind;
use bm_proto::{Envelope, EnvelopeError, KeyId, TokenError};
use futures_util::StreamExt;
use tokio::io::AsyncRead;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{error_close, instant_of_unix, req, Ws};
use crate::bucket::Bucket;
use crate::config::{Config, Limits};
use crate::conn::{Conn, SubError};
use crate::frame::Frame;
use crate::outbox::CloseRequest;
use crate::state::App;

/// How one session ended.
pub(crate) enum Ended {
    /// The relay closes, with this close frame.
    Close(CloseRequest),
    /// The client sent its close frame, or the connection broke.
    Gone,
}

/// What one message from the client leads to.
pub(crate) enum Step {
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
    /// The held `sub` `ok` may go, with this `ref`.
    gate_open: Option<Option<i64>>,
}

/// One authenticated socket's private state: a WebSocket's task holds it,
/// a stream's ops take turns at it ([`crate::http`]'s `/v1/stream`), so
/// both transports apply client frames by this one code.
pub(crate) struct Session {
    /// The relay (a pointer, as a reference would be: an idle socket pays
    /// 8 bytes for it).
    pub app: Arc<App>,
    pub conn: Arc<Conn>,
    /// When the connection token in force expires.
    pub exp_at: Instant,
    pub pub_bucket: Bucket,
    /// Every client frame, control frames included (4029 past it).
    pub frame_bucket: Bucket,
    /// The configuration in force (its limits), and the generation it is
    /// from. An `Arc`, not a copy of the limits: an idle socket pays 8
    /// bytes for it, not the few hundred of a `Limits`.
    pub cfg: Arc<Config>,
    pub generation: u64,
    /// A `sub`'s `ok` held until the cluster routes the thread here
    /// ([`crate::router::Fanout::subscribed`]; always `None` on a single
    /// node); it ends with the `ref` the `ok` answers. While it is held
    /// the client's next frames are not read, so replies keep the order
    /// of the ops; the outbox still drains and the timers still run. One
    /// pointer (16 bytes) per socket, nothing allocated on a single node.
    pub gated: Option<std::pin::Pin<Box<dyn Future<Output = Option<i64>> + Send>>>,
}

impl Session {
    /// Picks up a reload's limits (one relaxed load when nothing changed).
    pub(crate) fn refresh_limits(&mut self) -> bool {
        let g = self.app.config_generation();
        if g == self.generation {
            return false;
        }
        self.generation = g;
        self.cfg = self.app.config();
        true
    }

    pub(crate) async fn main_loop<R>(&mut self, ws: &mut Ws<R>) -> Ended
    where
        R: AsyncRead + Unpin,
    {
        let mut last_seen = Instant::now();
        let mut last_ping = last_seen;
        // Its own pointer: the loop lends `self` mutably to the ops.
        let conn = self.conn.clone();
        let out = &*conn.out;
        let timer = sleep_until(last_ping + Limits::dur(self.cfg.limits.ping_interval_secs));
        tokio::pin!(timer);
        loop {
            self.refresh_limits();
            if let Some(why) = self.conn.close_requested() {
                return Ended::Close(why);
            }
            let ping_every = Limits::dur(self.cfg.limits.ping_interval_secs);
            let idle_at = last_seen + Limits::dur(self.cfg.limits.idle_timeout_secs);
            let now = Instant::now();
            if now >= self.exp_at {
                return Ended::Close(req(close::TOKEN_EXPIRED, "token expired"));
            }
            if now >= idle_at {
                return Ended::Close(req(close::GOING_AWAY, "idle timeout"));
            }
            if now >= last_ping + ping_every {
                last_ping = now;
                if out.send_control(Frame::ping().as_bytes(), self.cfg.limits.outbound_queue_bytes).is_err() {
                    return Ended::Gone;
                }
            }
            timer.as_mut().reset((last_ping + ping_every).min(self.exp_at).min(idle_at));
            let notified = out.wake.notified();
            tokio::pin!(notified);
            let gated = &mut self.gated;
            let woken = poll_fn(|cx| {
                let mut w = Woken::default();
                if out.has_pending() {
                    if let Poll::Ready(r) = out.poll_drain(cx) {
                        w.wrote = Some(r);
                    }
                }
                match gated {
                    Some(gate) => {
                        if let Poll::Ready(r) = gate.as_mut().poll(cx) {
                            w.gate_open = Some(r);
                        }
                    }
                    None => {
                        if let Poll::Ready(m) = ws.poll_next_unpin(cx) {
                            w.read = Some(m);
                        }
                    }
                }
                let other = notified.as_mut().poll(cx).is_ready() | timer.as_mut().poll(cx).is_ready();
                if other || w.gate_open.is_some() || w.read.is_some() || w.wrote.is_some() {
                    Poll::Ready(w)
                } else {
                    Poll::Pending
                }
            })
            .await;
            if let Some(Err(_)) = woken.wrote {
                return Ended::Gone;
            }
            if let Some(r#ref) = woken.gate_open {
                self.gated = None;
                self.reply(frames::ok(r#ref));
            }
            if let Some(m) = woken.read {
                last_seen = Instant::now();
                match self.on_message(m) {
                    Step::Continue => {}
                    Step::Close(why) => return Ended::Close(why),
                    Step::Gone => return Ended::Gone,
                }
            }
        }
    }

    pub(crate) fn reply(&self, text: String) {
        self.conn.enqueue(&Frame::from(text), self.cfg.limits.outbound_queue_bytes);
    }

    fn refuse(&self, r#ref: Option<i64>, code: &str, message: &str) {
        self.app.metrics.frame_errors.fetch_add(1, Relaxed);
        self.reply(frames::error(r#ref, code, message));
    }

    fn on_message(&mut self, m: Option<Result<Message, WsError>>) -> Step {
        // Every frame counts, pings and pongs too: tungstenite answers a
        // ping with a pong, so an unmetered ping flood costs the relay a
        // write per frame.
        let counted = matches!(m, Some(Ok(_)));
        if counted && !self.frame_bucket.take(self.cfg.limits.frame_rate_per_sec, self.cfg.limits.frame_burst) {
            return Step::Close(req(close::RATE_LIMITED, "too many frames"));
        }
        let text = match m {
            None | Some(Ok(Message::Close(_))) => return Step::Gone,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return Step::Continue,
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                self.refuse(None, codes::BAD_FRAME, "binary frames are not part of the protocol");
                return Step::Continue;
            }
            Some(Err(e)) => {
                return match error_close(e) {
                    Some(why) => Step::Close(why),
                    None => Step::Gone,
                }
            }
        };
        self.on_text(&text);
        Step::Continue
    }

    /// Applies one client text frame (a WebSocket's text message, or the
    /// body of a stream's op): the reply, if any, goes to the outbox.
    pub(crate) fn on_text(&mut self, text: &str) {
        let frame = match ClientFrame::parse(text) {
            Ok(f) => f,
            Err(e) => {
                return self.refuse(e.r#ref, e.code, &e.message);
            }
        };
        let r#ref = frame.r#ref;
        match frame.op {
            ClientOp::Ping => self.reply(frames::pong(r#ref)),
            ClientOp::Auth { .. } => {
                self.refuse(r#ref, codes::ALREADY_AUTHENTICATED, "this socket is already authenticated")
            }
            ClientOp::Refresh { token } => match self.app.verify_token(&token, TokenKind::Connection) {
                Ok(c) if c.site == self.conn.site && c.sub == self.conn.user => {
                    self.exp_at = instant_of_unix(c.exp);
                    self.conn.set_iat(c.iat);
                    self.reply(frames::ok(r#ref));
                }
                Ok(_) => self.refuse(r#ref, codes::FORBIDDEN, "a refresh token must be for the same site and user"),
                Err(e) => self.refuse_token(r#ref, e),
            },
            ClientOp::Sub { thread, token } => self.on_sub(r#ref, thread, &token),
            ClientOp::Unsub { thread } => {
                if self.app.router.unsubscribe(&self.conn, thread) {
                    self.reply(frames::ok(r#ref));
                } else {
                    self.refuse(r#ref, codes::NOT_SUBSCRIBED, "this socket does not watch that thread");
                }
            }
            ClientOp::Pub { thread, e } => self.on_pub(r#ref, thread, e.get()),
            ClientOp::Presence { threads } => self.on_presence(r#ref, &threads),
        }
    }

    fn on_sub(&mut self, r#ref: Option<i64>, thread: bm_proto::ThreadId, token: &str) {
        let c = match self.app.verify_token(token, TokenKind::Thread) {
            Ok(c) if c.site == self.conn.site && c.sub == self.conn.user && c.thread == Some(thread) => c,
            Ok(_) => {
                return self.refuse(r#ref, codes::FORBIDDEN, "the thread token is for another site, user or thread")
            }
            Err(e) => return self.refuse_token(r#ref, e),
        };
        match self.app.router.subscribe(&self.conn, thread, c.iat, self.cfg.limits.max_subscriptions) {
            Ok(new) => {
                // Re-checked after the insert: a `/v1/disconnect` for this
                // thread that ran between the verification above and the
                // insert did not see this subscription.
                if self.app.revocations.is_revoked(&c.site, c.sub, Some(thread), c.iat) {
                    self.app.router.unsubscribe(&self.conn, thread);
                    return self.refuse_token(r#ref, TokenError::Revoked);
                }
                // In a cluster, `ok` waits (bounded) until every node routes
                // the thread's pushes here, as `ready` does for the socket
                // (PROTOCOL.md, "Cluster"). A single node never waits, nor
                // does a repeated `sub` (the thread was routed already).
                match if new { self.app.router.subscribed(&self.conn, thread) } else { None } {
                    Some(gate) => {
                        self.gated = Some(Box::pin(async move {
                            gate.await;
                            r#ref
                        }))
                    }
                    None => self.reply(frames::ok(r#ref)),
                }
            }
            Err(SubError::TooMany) => self.refuse(
                r#ref,
                codes::TOO_MANY_SUBSCRIPTIONS,
                &format!("a socket may watch at most {} threads", self.cfg.limits.max_subscriptions),
            ),
        }
    }

    /// `presence`: the users with a socket subscribed to each thread,
    /// cluster-wide, for the threads this socket watches only (its thread
    /// token proved membership at `sub`); any other thread gets a
    /// `not_subscribed` entry and nothing about it. It shares the `pub`
    /// bucket: one request costs a lookup per thread (at most 16) and an
    /// answer of up to 16 × 500 ids, so it is metered like a `pub`.
    fn on_presence(&mut self, r#ref: Option<i64>, threads: &[bm_proto::ThreadId]) {
        let limits = &self.cfg.limits;
        if !self.pub_bucket.take(limits.pub_rate_per_sec, limits.pub_burst) {
            return self.refuse(r#ref, codes::RATE_LIMITED, "too many `pub` and `presence` frames; slow down");
        }
        let answer: Vec<ThreadPresence> = threads
            .iter()
            .map(|&thread| {
                if !self.conn.is_subscribed(thread) {
                    return ThreadPresence::NotSubscribed(thread);
                }
                let (users, truncated) =
                    self.app.router.thread_presence(&self.conn.site, thread, frames::MAX_PRESENCE_USERS);
                ThreadPresence::Users { thread, users, truncated }
            })
            .collect();
        let degraded = self.app.router.cluster_status() == Some("degraded");
        self.reply(frames::presence(r#ref, &answer, degraded));
    }

    fn refuse_token(&self, r#ref: Option<i64>, e: TokenError) {
        let code = match e {
            TokenError::Expired => codes::TOKEN_EXPIRED,
            TokenError::Revoked => codes::FORBIDDEN,
            _ => codes::BAD_TOKEN,
        };
        self.refuse(r#ref, code, &e.to_string());
    }

    fn on_pub(&mut self, r#ref: Option<i64>, thread: bm_proto::ThreadId, envelope_json: &str) {
        let limits = &self.cfg.limits;
        if !self.conn.is_subscribed(thread) {
            return self.refuse(r#ref, codes::NOT_SUBSCRIBED, "`pub` needs a live `sub` to the thread");
        }
        if !self.pub_bucket.take(limits.pub_rate_per_sec, limits.pub_burst) {
            return self.refuse(r#ref, codes::RATE_LIMITED, "too many `pub` frames; slow down");
        }
        let env = match Envelope::parse(envelope_json, limits.max_pub_ciphertext) {
            Ok(env) => env,
            Err(EnvelopeError::TooLarge { len, max }) => {
                return self.refuse(
                    r#ref,
                    codes::TOO_LARGE,
                    &format!("envelope ciphertext is {len} bytes, over the limit of {max}"),
                )
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
        let d = self.app.router.publish(&self.conn, thread, &frame, limits.outbound_queue_bytes);
        let m = &self.app.metrics;
        m.pubs.fetch_add(1, Relaxed);
        m.deliveries.fetch_add(d.sockets, Relaxed);
        self.reply(frames::ok(r#ref));
    }
}
