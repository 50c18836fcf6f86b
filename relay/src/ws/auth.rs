//! The first phase of a socket: waiting for a valid `auth` frame.

use bm_proto::frames::{self, close, codes, ClientFrame, ClientOp};
use bm_proto::token::TokenKind;
use bm_proto::{Claims, TokenError};
use futures_util::StreamExt;
use tokio::io::AsyncRead;
use tokio_tungstenite::tungstenite::Message;

use super::{error_close, req, retry_hint, Ws};
use crate::bucket::Bucket;
use crate::config::{Config, Limits};
use crate::outbox::CloseRequest;
use crate::state::App;

/// Why authentication ended without a socket: `Gone` when the client left
/// (or the connection broke), `Refused` with an optional `error` frame to
/// send before the close.
pub(super) enum AuthFailure {
    Gone,
    Refused(Option<String>, CloseRequest),
}

/// Waits (at most `auth_timeout_secs`) for the `auth` frame and verifies
/// its token against `cfg`, the configuration the socket is admitted
/// under. Every frame before it, control frames included, is counted
/// against `frames`: a client cannot flood the relay with pings or junk
/// while it has proved nothing.
pub(super) async fn authenticate<R>(
    app: &App,
    cfg: &Config,
    rx: &mut Ws<R>,
    frames: &mut Bucket,
) -> Result<Claims, AuthFailure>
where
    R: AsyncRead + Unpin,
{
    let limits = &cfg.limits;
    let wait = async {
        loop {
            let m = rx.next().await;
            if !frames.take(limits.frame_rate_per_sec, limits.frame_burst) {
                return Err(AuthFailure::Refused(None, req(close::RATE_LIMITED, "too many frames")));
            }
            let text = match m {
                None | Some(Ok(Message::Close(_))) => return Err(AuthFailure::Gone),
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => {
                    return Err(AuthFailure::Refused(
                        None,
                        req(close::UNAUTHORIZED, "first frame must be a text auth frame"),
                    ))
                }
                Some(Err(e)) => {
                    return Err(match error_close(e) {
                        Some(why) => AuthFailure::Refused(None, why),
                        None => AuthFailure::Gone,
                    })
                }
            };
            return match ClientFrame::parse(&text) {
                Ok(ClientFrame { r#ref, op: ClientOp::Auth { token } }) => {
                    match app.verify_token_in(cfg, &token, TokenKind::Connection) {
                        Ok(claims) => {
                            app.metrics.auth_protocol(claims.protocol());
                            Ok(claims)
                        }
                        Err(e) => {
                            if e == TokenError::ProtocolV1Refused {
                                app.metrics.auth_protocol(1);
                            }
                            let (code, why) = match e {
                                TokenError::Expired => {
                                    (codes::TOKEN_EXPIRED, req(close::TOKEN_EXPIRED, "token expired"))
                                }
                                TokenError::UnknownSite => (codes::BAD_TOKEN, req(close::UNAUTHORIZED, "unknown site")),
                                TokenError::Revoked => (codes::FORBIDDEN, req(close::REVOKED, "token revoked")),
                                _ => (codes::BAD_TOKEN, req(close::UNAUTHORIZED, "bad token")),
                            };
                            Err(AuthFailure::Refused(Some(frames::error(r#ref, code, &e.to_string())), why))
                        }
                    }
                }
                Ok(other) => Err(AuthFailure::Refused(
                    Some(frames::error(other.r#ref, codes::BAD_FRAME, "the first frame must be `auth`")),
                    req(close::UNAUTHORIZED, "not authenticated"),
                )),
                Err(e) => Err(AuthFailure::Refused(
                    Some(frames::error(e.r#ref, e.code, &e.message)),
                    req(close::UNAUTHORIZED, "not authenticated"),
                )),
            };
        }
    };
    // A shutdown does not wait for sockets that have not authenticated yet.
    let mut stop = app.shutdown_signal();
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let deadline = tokio::time::Instant::now() + Limits::dur(limits.auth_timeout_secs);
    tokio::select! {
        r = tokio::time::timeout_at(deadline, wait) => match r {
            Ok(r) => r,
            Err(_) => Err(AuthFailure::Refused(None, req(close::UNAUTHORIZED, "auth timeout"))),
        },
        _ = stopping => Err(AuthFailure::Refused(None, req(close::GOING_AWAY, "relay shutting down").with_retry(retry_hint(app)))),
    }
}
