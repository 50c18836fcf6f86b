//! `GET /v1/ws`: the WebSocket upgrade, handed to [`crate::ws`].
//!
//! Upgrades are refused with 503 `overloaded` once the client connections
//! reach `max_connections - api_reserve_connections`, so that sockets
//! filling the relay leave room for WordPress's signed pushes (which are
//! admitted up to `max_connections`). Behind a trusted proxy, the client
//! address of `X-Forwarded-For` is counted against the per-address limits
//! here, per upgrade, since the proxy's own connection was not.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bm_proto::api::ErrorCode;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::accept::{per_ip_refusal, ConnCtx};
use super::admission::forwarded_client;
use super::{api_error, err, Body, Refused};
use crate::metrics::Refusal;
use crate::outbox::Outbox;
use crate::ws::WsIo;

const RESERVED: Refused = Refused::new(
    StatusCode::SERVICE_UNAVAILABLE,
    "overloaded",
    "the relay is at its WebSocket capacity; reconnect with jitter",
    Some(10),
);

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
    let ws_cap = limits.max_connections.saturating_sub(limits.api_reserve_connections) as u64;
    if app.metrics.client_connections.load(Relaxed) > ws_cap {
        app.metrics.refused(Refusal::ApiReserve);
        return RESERVED.response();
    }
    let ip_slot = if ctx.peer_trusted {
        match forwarded_client(h, &limits.trusted_proxies).map(|ip| ctx.adm.admit_ip(ip, limits)) {
            Some(Err(why)) => {
                app.metrics.refused(why);
                return per_ip_refusal(why).response();
            }
            Some(Ok(slot)) => Some(slot),
            None => None,
        }
    } else {
        None
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
