//! `GET /v1/ws`: the WebSocket upgrade, handed to [`crate::ws`].
//!
//! Upgrades are refused with 503 `overloaded` once the client connections
//! reach `max_connections - api_reserve_connections`, so that sockets
//! filling the relay leave room for WordPress's signed pushes (which are
//! admitted up to `max_connections`). Behind a trusted proxy, the client
//! address of `X-Forwarded-For` is counted against the per-address limits
//! here, per upgrade, since the proxy's own connection was not. Streams
//! (`/v1/stream`) are admitted by the same two checks, and by the same
//! `allowed_origins`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bm_proto::api::ErrorCode;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::accept::{per_ip_refusal, ConnCtx};
use super::admission::{forwarded_client, IpSlot};
use super::{api_error, err, Body, Refused};
use crate::config::Limits;
use crate::metrics::Refusal;
use crate::outbox::Outbox;
use crate::ws::WsIo;

const RESERVED: Refused = Refused::new(
    StatusCode::SERVICE_UNAVAILABLE,
    "overloaded",
    "the relay is at its WebSocket capacity; reconnect with jitter",
    Some(10),
);

/// The admission of a connection that will stay (a WebSocket or a
/// stream): refused with 503 once the client connections leave only the
/// server API's reserve; behind a trusted proxy, the forwarded client
/// address takes one of its per-address slots (held as long as the
/// returned slot is).
pub(super) fn admit_long_lived(h: &HeaderMap, ctx: &ConnCtx, limits: &Limits) -> Result<Option<IpSlot>, Refused> {
    let app = &ctx.app;
    let cap = limits.max_connections.saturating_sub(limits.api_reserve_connections) as u64;
    if app.metrics.client_connections.load(Relaxed) > cap {
        app.metrics.refused(Refusal::ApiReserve);
        return Err(RESERVED);
    }
    if !ctx.peer_trusted {
        return Ok(None);
    }
    match forwarded_client(h, &limits.trusted_proxies).map(|ip| ctx.adm.admit_ip(ip, limits)) {
        Some(Err(why)) => {
            app.metrics.refused(why);
            Err(per_ip_refusal(why))
        }
        Some(Ok(slot)) => Ok(Some(slot)),
        None => Ok(None),
    }
}

const FORBIDDEN_ORIGIN: Refused = Refused::new(
    StatusCode::FORBIDDEN,
    "forbidden_origin",
    "pages of this origin may not connect to this relay (allowed_origins)",
    None,
);

/// `allowed_origins` (protocol §6.1): the request's `Origin`, when it has
/// one and it may connect (what a stream's answers echo in
/// `Access-Control-Allow-Origin`); a 403 when it may not. No `Origin`: not
/// a browser, not refused by this.
pub(super) fn check_origin(h: &HeaderMap, limits: &Limits) -> Result<Option<HeaderValue>, Refused> {
    let Some(origin) = h.get(header::ORIGIN) else { return Ok(None) };
    let allowed = limits.allowed_origins.is_empty()
        || origin.to_str().is_ok_and(|o| limits.allowed_origins.iter().any(|a| a == o));
    if allowed {
        Ok(Some(origin.clone()))
    } else {
        Err(FORBIDDEN_ORIGIN)
    }
}

/// Answers a WebSocket upgrade and spawns the socket's task. The socket's
/// outbox writes frames into the connection's socket directly.
pub(super) fn upgrade(req: Request<Incoming>, ctx: &ConnCtx) -> Response<Body> {
    let app = &ctx.app;
    if app.is_shutting_down() {
        return api_error(&err(ErrorCode::ShuttingDown, "the relay is shutting down; reconnect with jitter"));
    }
    let h = req.headers();
    let is_ws =
        h.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_ok = h.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let key = h.get(header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes()));
    let (true, true, Some(accept), &Method::GET) = (is_ws, version_ok, key, req.method()) else {
        return api_error(&err(ErrorCode::Malformed, "/v1/ws expects a WebSocket upgrade (GET, version 13)"));
    };
    let cfg = app.config();
    let limits = &cfg.limits;
    if let Err(r) = check_origin(h, limits) {
        return r.response();
    }
    let ip_slot = match admit_long_lived(h, ctx, limits) {
        Ok(slot) => slot,
        Err(r) => return r.response(),
    };
    let ws_cfg = crate::ws::ws_config(limits);
    let max_queue = limits.outbound_queue_bytes;
    let (app, sock, slot) = (app.clone(), ctx.sock.clone(), ctx.slot.clone());
    tokio::spawn(async move {
        // Held for the socket's life: its place in max_connections and its
        // client address's slot.
        let _slots = (slot, ip_slot);
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let out = Arc::new(Outbox::new(Some(sock)));
                let io = WsIo::new(TokioIo::new(upgraded), out.clone(), max_queue);
                let ws = Box::new(WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_cfg)).await);
                crate::ws::run(ws, out, app).await;
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    // A WebSocket now: its `auth` is timed (auth_timeout_secs) and capped
    // (max_unauthenticated_sockets) by crate::ws.
    ctx.pending.release();
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = r.headers_mut();
    hs.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hs.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}
