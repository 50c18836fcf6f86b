//! One WebSocket, from upgrade to close (protocol §6), in one task.
//!
//! | module | what |
//! |---|---|
//! | [`io`] | the byte stream tungstenite sees: reads from the connection, writes into the outbox |
//! | [`auth`] | phase one: the `auth` frame, within `auth_timeout_secs` |
//! | this file | admission: caps, registration, the re-checks after it; closing |
//! | [`session`] | phase two: ops, pings, timers, rate limits |
//!
//! tungstenite only reads here (and writes its own control frames: pongs,
//! the close handshake, through [`io::WsIo`]). Server frames are written by
//! the socket's [`Outbox`], pre-encoded once per event, directly from the
//! pushing task while the socket keeps up (see [`crate::outbox`]); this
//! task only writes out what the kernel did not take at once. A socket's
//! private state is a few hundred bytes plus tungstenite's (small,
//! configured) buffers.
//!
//! Admission order, and why: the socket counts against
//! `max_unauthenticated_sockets` until `auth` succeeds; then it registers
//! under the per-user and per-site caps (checked and inserted under one
//! lock); then it re-checks revocation, the site's key and shutdown,
//! because a `/v1/disconnect`, a reload or a shutdown that ran between the
//! token check and the insert could not see it. A socket stops being
//! routable the moment its close begins, whoever began it.

mod auth;
pub mod io;
pub(crate) mod session;

use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bm_proto::frames::{self, close};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncRead;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::bucket::Bucket;
use crate::config::Limits;
use crate::conn::Conn;
use crate::frame::Frame;
use crate::metrics::SocketRefusal;
use crate::outbox::{CloseRequest, Outbox};
use crate::router::{Caps, RegisterError};
use crate::state::{unix_now, App};
pub use io::WsIo;

type Ws<R> = WebSocketStream<WsIo<R>>;

/// How long the relay waits for its close frame to be written and answered.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// After a frame it cannot read on, how long (and how many bytes) the
/// relay reads and discards before it closes (see [`io::WsIo::discard_until_eof`]).
const DISCARD_LINGER: Duration = Duration::from_secs(2);
const DISCARD_MAX: usize = 1 << 20;

/// The tungstenite configuration for client sockets: small buffers (an idle
/// socket must cost little) and the client frame limit.
pub fn ws_config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(limits.ws_read_buffer)
        .write_buffer_size(limits.ws_write_buffer)
        .max_message_size(Some(limits.max_frame_bytes))
        .max_frame_size(Some(limits.max_frame_bytes))
}

/// Counts an open socket for the lifetime of its task.
struct OpenGuard<'a>(&'a App);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.socket_ended();
    }
}

/// Holds one of the `max_unauthenticated_sockets` places until `auth`.
struct Authenticating<'a>(&'a App);

impl<'a> Authenticating<'a> {
    fn enter(app: &'a App, max: usize) -> Option<Self> {
        if app.authenticating.fetch_add(1, AcqRel) >= max {
            app.authenticating.fetch_sub(1, AcqRel);
            return None;
        }
        Some(Authenticating(app))
    }
}

impl Drop for Authenticating<'_> {
    fn drop(&mut self) {
        self.0.authenticating.fetch_sub(1, AcqRel);
    }
}

/// Removes the socket from routing however its task ends.
struct Registered<'a>(&'a App, Arc<Conn>);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.router.unregister(&self.1);
    }
}

/// Makes the outbox refuse every write once the socket's task has ended.
struct Retire<'a>(&'a Outbox);

impl Drop for Retire<'_> {
    fn drop(&mut self) {
        self.0.retire();
    }
}

/// Longest a token can keep a socket open (a far-future `exp` must not
/// overflow the clock arithmetic).
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Instant at which a unix-seconds `exp` falls (capped at ten years).
pub(crate) fn instant_of_unix(exp: u64) -> Instant {
    Instant::now() + Duration::from_secs(exp.saturating_sub(unix_now())).min(MAX_TOKEN_LIFE)
}

fn close_frame(req: CloseRequest) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(req.code), reason: req.wire_reason().into() }))
}

pub(crate) const fn req(code: u16, reason: &'static str) -> CloseRequest {
    CloseRequest::new(code, reason)
}

/// A reconnect delay for one socket closed because the relay is going
/// away (see [`crate::pacing`]).
pub(crate) fn retry_hint(app: &App) -> u32 {
    crate::pacing::retry_ms(app.metrics.ws_open.load(Relaxed), app.config().limits.reconnect_pace_per_sec)
}

/// The close that a read error calls for (`None`: the connection is gone).
fn error_close(e: WsError) -> Option<CloseRequest> {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => Some(req(close::FRAME_TOO_LARGE, "frame too large")),
        // RFC 6455 §7.4.1: 1002 for a protocol error, 1007 for text that
        // is not UTF-8.
        WsError::Protocol(_) => Some(req(close::PROTOCOL_ERROR, "protocol error")),
        WsError::Utf8(_) => Some(req(close::INVALID_PAYLOAD, "text frame is not UTF-8")),
        _ => None,
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
    app.socket_opened();
    let _open = OpenGuard(&app);
    let _retire = Retire(&out);
    let ws = &mut *ws;
    // The generation first, then the configuration: a reload after this
    // point is seen by the session's first wake-up, never missed.
    let generation = app.config_generation();
    let cfg = app.config();
    let limits = &cfg.limits;
    let mut frame_bucket = Bucket::new(limits.frame_burst);

    let Some(pending) = Authenticating::enter(&app, limits.max_unauthenticated_sockets) else {
        app.metrics.socket_refused(SocketRefusal::Authenticating);
        return finish(&app, ws, req(close::TRY_AGAIN_LATER, "too many sockets authenticating; retry later")).await;
    };
    // Boxed: its state is needed only until `auth`, and left inline it
    // would size this task (what every idle socket keeps) for good.
    let claims = match Box::pin(auth::authenticate(&app, &cfg, ws, &mut frame_bucket)).await {
        Ok(c) => c,
        Err(auth::AuthFailure::Gone) => return answer_close(ws).await,
        Err(auth::AuthFailure::Refused(error, why)) => {
            if let Some(text) = error {
                let _ = timeout(CLOSE_LINGER, ws.feed(Message::Text(text.into()))).await;
            }
            return finish(&app, ws, why).await;
        }
    };
    drop(pending);

    let conn = Arc::new(Conn::with_outbox(claims.site.clone(), claims.sub, claims.iat, out.clone()));
    let caps = Caps { per_user: limits.max_sockets_per_user, per_site: limits.max_sockets_per_site };
    let registered = match app.router.register(&conn, caps) {
        Ok(()) => Registered(&app, conn.clone()),
        Err(e) => {
            let (refusal, why) = match e {
                RegisterError::UserFull => {
                    (SocketRefusal::User, req(close::RATE_LIMITED, "too many sockets for this user"))
                }
                RegisterError::SiteFull => {
                    (SocketRefusal::Site, req(close::TRY_AGAIN_LATER, "the site is at its socket limit; retry later"))
                }
            };
            app.metrics.socket_refused(refusal);
            return finish(&app, ws, why).await;
        }
    };
    // The re-checks after the insert (see the module doc).
    let recheck = if app.revocations.is_revoked(&claims.site, claims.sub, None, claims.iat) {
        Some(req(close::REVOKED, "token revoked"))
    } else if !app.same_key(&claims.site, &cfg) {
        Some(req(close::REVOKED, "site removed or re-keyed"))
    } else if app.is_shutting_down() {
        Some(req(close::GOING_AWAY, "relay shutting down").with_retry(retry_hint(&app)))
    } else {
        None
    };
    if let Some(why) = recheck {
        conn.request_close(why);
        drop(registered);
        return finish(&app, ws, why).await;
    }
    tracing::debug!(conn = conn.id, site = %conn.site, user = %conn.user, "socket authenticated");
    // In a cluster, `ready` waits (bounded) until every node can route to
    // this socket: nothing pushed after `ready` is lost (PROTOCOL.md,
    // "Cluster"). A single node returns None here and never waits.
    if let Some(routable) = app.router.routable(&conn) {
        routable.await;
    }
    conn.enqueue(&Frame::from(frames::ready(claims.sub, claims.exp)), limits.outbound_queue_bytes);

    let exp = claims.exp;
    // Not kept across the session (it would sit in every idle socket's task).
    drop(claims);
    let mut s = session::Session {
        app: app.clone(),
        conn: conn.clone(),
        exp_at: instant_of_unix(exp),
        pub_bucket: Bucket::new(limits.pub_burst),
        frame_bucket,
        generation,
        // Moved, not cloned: an idle socket holds one reference.
        cfg,
        gated: None,
    };
    let ended = s.main_loop(ws).await;
    // From here on the socket is not routable: no push counts it as
    // delivered, no presence shows its user online, while the close
    // handshake (up to CLOSE_LINGER) runs.
    match ended {
        session::Ended::Close(why) => {
            // No event may follow the close frame: pushes stop here.
            conn.request_close(why);
            drop(registered);
            finish(&app, ws, why).await
        }
        session::Ended::Gone => {
            conn.request_close(req(close::GOING_AWAY, "client closed"));
            drop(registered);
            answer_close(ws).await
        }
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
    // Closes for a frame the relay could not read: what follows it in the
    // stream is no frame, so it is read raw, not parsed.
    let unreadable = matches!(why.code, close::FRAME_TOO_LARGE | close::PROTOCOL_ERROR | close::INVALID_PAYLOAD);
    let _ = timeout(CLOSE_LINGER, async {
        if ws.send(close_frame(why)).await.is_ok() {
            loop {
                match ws.next().await {
                    Some(Ok(_)) if !unreadable => continue,
                    Some(Ok(_)) | None if !unreadable => break,
                    // The stream cannot be parsed on (the rest of a frame
                    // too large, a protocol error): read it raw, briefly,
                    // so the close frame is not lost to a reset.
                    _ => {
                        let _ = timeout(DISCARD_LINGER, ws.get_mut().discard_until_eof(DISCARD_MAX)).await;
                        break;
                    }
                }
            }
        }
    })
    .await;
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

    #[test]
    fn close_reason_carries_the_retry_hint_within_123_bytes() {
        let r = req(close::GOING_AWAY, "relay shutting down").with_retry(u32::MAX);
        let Message::Close(Some(f)) = close_frame(r) else { panic!("not a close") };
        assert_eq!(f.reason.as_str(), "relay shutting down; retry_ms=4294967295");
        assert!(f.reason.len() <= 123);
    }
}
