//! The two HTTP listeners.
//!
//! Client listener: `GET /v1/ws` (WebSocket upgrade, handed to [`crate::ws`])
//! and the signed server API of protocol §5 (`POST /v1/push`,
//! `/v1/presence`, `/v1/disconnect`), over HTTP/1.1 keep-alive or h2c.
//! Requests on one connection are handled one after the other, so the
//! events of consecutive pushes on one connection are queued in order.
//!
//! Admin listener (unsigned, bind it to loopback or a private network):
//! `GET /healthz` and `GET /metrics`.

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bm_proto::api::{self, ApiError, DisconnectRequest, ErrorCode, PresenceRequest, PresenceResponse, PushRequest, PushResponse, PushResult};
use bm_proto::frames;
use bm_proto::signing::{self, SignatureError};
use bm_proto::{KeyId, SiteId};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::frame::Frame;
use crate::outbox::Outbox;
use crate::sock::SharedTcp;
use crate::ws::WsIo;
use crate::metrics::RequestResult;
use crate::state::{unix_now, App};

/// Time allowed for a request's headers to arrive.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Every response body of the relay: small and complete.
pub type Body = Full<Bytes>;

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn api_error(e: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    json(status, e.to_body())
}

fn err(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

/// Accepts connections on the client listener until shutdown begins.
pub async fn serve_client(listener: TcpListener, app: Arc<App>) {
    let mut stop = app.shutdown_signal();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let sock = Arc::new(stream);
        let io = SharedTcp(sock.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (app, sock) = (app.clone(), sock.clone());
                async move { Ok::<_, Infallible>(client_request(req, app, sock).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // A client gets 30 s to send a request's headers (slowloris).
            builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            builder.http2().timer(TokioTimer::new());
            let _ = builder.serve_connection_with_upgrades(TokioIo::new(io), svc).await;
        });
    }
    tracing::info!("client listener closed");
}

/// Accepts connections on the admin listener (until the process exits).
pub async fn serve_admin(listener: TcpListener, app: Arc<App>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(admin_request(req, &app)) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn admin_request(req: Request<Incoming>, app: &App) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => {
            let cfg = app.config();
            let down = app.is_shutting_down();
            let body = serde_json::json!({
                "status": if down { "shutting_down" } else { "ok" },
                "version": env!("CARGO_PKG_VERSION"),
                "sites": cfg.sites.len(),
                "connections": app.metrics.ws_open.load(Relaxed),
                "pid": std::process::id(),
            });
            json(if down { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }, body.to_string())
        }
        (&Method::GET, "/metrics") => {
            let text = app.metrics.render(app.router.counts(), app.config().sites.len());
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            r
        }
        (_, "/healthz" | "/metrics") => api_error(&err(ErrorCode::MethodNotAllowed, "use GET")),
        _ => api_error(&err(ErrorCode::NotFound, "admin endpoints: /healthz, /metrics")),
    }
}

async fn client_request(req: Request<Incoming>, app: Arc<App>, sock: Arc<TcpStream>) -> Response<Body> {
    let path = req.uri().path();
    let endpoint = match path {
        api::PATH_PUSH => 0,
        api::PATH_PRESENCE => 1,
        api::PATH_DISCONNECT => 2,
        "/v1/ws" => return upgrade(req, app, sock),
        _ => return api_error(&err(ErrorCode::NotFound, "no such endpoint")),
    };
    if req.method() != Method::POST {
        return api_error(&err(ErrorCode::MethodNotAllowed, format!("{path} takes POST")));
    }
    let started = Instant::now();
    let result = server_api(req, &app, endpoint).await;
    let class = match &result {
        Ok(_) => RequestResult::Ok,
        Err(e) => match e.code.http_status() {
            401 => RequestResult::Unauthorized,
            503 => RequestResult::Unavailable,
            _ => RequestResult::ClientError,
        },
    };
    app.metrics.request(endpoint, class);
    if endpoint == 0 && result.is_ok() {
        app.metrics.push_latency(started.elapsed());
    }
    match result {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => {
            tracing::debug!(code = e.code.as_str(), "server API request refused");
            api_error(&e)
        }
    }
}

fn header_str<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Authenticates and runs one server API request; `Ok` is the reply body.
async fn server_api(req: Request<Incoming>, app: &App, endpoint: usize) -> Result<String, ApiError> {
    if app.is_shutting_down() {
        return Err(err(ErrorCode::ShuttingDown, "the relay is shutting down; retry on another node or later"));
    }
    let cfg = app.config();
    let limits = &cfg.limits;
    let site_h = header_str(&req, signing::HEADER_SITE).to_owned();
    let ts = header_str(&req, signing::HEADER_TIMESTAMP).to_owned();
    let sig = header_str(&req, signing::HEADER_SIGNATURE).to_owned();
    let path = req.uri().path().to_owned();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        return Err(err(ErrorCode::TooLarge, format!("body over the limit of {} bytes", limits.max_body)));
    }
    let body = Limited::new(req.into_body(), limits.max_body)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                err(ErrorCode::TooLarge, format!("body over the limit of {} bytes", limits.max_body))
            } else {
                err(ErrorCode::Malformed, "the request body could not be read")
            }
        })?
        .to_bytes();
    let site = SiteId::new(site_h.as_str())
        .map_err(|_| err(ErrorCode::UnknownSite, "X-BM-Site is missing or not a site id"))?;
    let key = cfg.sites.get(&site).ok_or_else(|| err(ErrorCode::UnknownSite, format!("site `{site}` is not served here")))?;
    signing::verify(key, &ts, &sig, &site, "POST", &path, &body, unix_now(), limits.max_skew_secs).map_err(|e| match e {
        SignatureError::BadTimestamp => err(ErrorCode::Malformed, e.to_string()),
        SignatureError::BadSignature => err(ErrorCode::BadSignature, e.to_string()),
        SignatureError::Stale => err(ErrorCode::Stale, format!("{e} ({} s)", limits.max_skew_secs)),
    })?;
    let text = std::str::from_utf8(&body).map_err(|_| err(ErrorCode::Malformed, "the body is not UTF-8"))?;
    let api_limits = limits.api();
    let max_queue = limits.outbound_queue_bytes;
    match endpoint {
        0 => {
            let events = PushRequest::parse(text, &api_limits)?;
            for (i, ev) in events.iter().enumerate() {
                if let (Some(t), KeyId::Thread { thread, .. }) = (ev.thread, ev.envelope.k) {
                    if thread != t {
                        return Err(err(
                            ErrorCode::Malformed,
                            format!("events[{i}]: thread is {t} but the envelope is sealed with a key of thread {thread}"),
                        ));
                    }
                }
            }
            let m = &app.metrics;
            let mut results = Vec::with_capacity(events.len());
            for ev in &events {
                let frame = Frame::from(frames::ev(ev.envelope_json));
                let d = app.router.deliver(&site, &ev.to, ev.thread, &frame, max_queue);
                m.events_pushed.fetch_add(1, Relaxed);
                m.deliveries.fetch_add(d.sockets, Relaxed);
                if d.sockets > 0 {
                    m.events_delivered.fetch_add(1, Relaxed);
                } else {
                    m.events_unrouted.fetch_add(1, Relaxed);
                }
                results.push(PushResult { online: d.online, sockets: d.sockets });
            }
            Ok(serde_json::to_string(&PushResponse { results }).expect("results serialize"))
        }
        1 => {
            let p: PresenceRequest = api::parse_users_body(text, &api_limits)?;
            let online = app.router.presence(&site, &p.users);
            Ok(serde_json::to_string(&PresenceResponse { online }).expect("presence serializes"))
        }
        _ => {
            let d: DisconnectRequest = api::parse_users_body(text, &api_limits)?;
            // The signed timestamp (verified above): WordPress's clock, the
            // one that stamps `iat` (see crate::revocations).
            let at = ts.parse::<u64>().map_err(|_| err(ErrorCode::Malformed, "X-BM-Timestamp is not a number"))?;
            app.revoke(&site, &d.users, d.thread, at);
            let unsub = d.thread.map(|t| Frame::from(frames::unsub(t)));
            let closed = app.router.disconnect(&site, &d.users, d.thread, at, unsub.as_ref(), max_queue);
            Ok(serde_json::json!({ "closed": closed }).to_string())
        }
    }
}

/// Answers a WebSocket upgrade and spawns the socket's task. `sock` is the
/// connection's socket: the socket's outbox writes frames into it directly.
fn upgrade(req: Request<Incoming>, app: Arc<App>, sock: Arc<TcpStream>) -> Response<Body> {
    if app.is_shutting_down() {
        return api_error(&err(ErrorCode::ShuttingDown, "the relay is shutting down; reconnect with jitter"));
    }
    let h = req.headers();
    let is_ws = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_ok = h.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let key = h.get(header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes()));
    let (true, true, Some(accept), &Method::GET) = (is_ws, version_ok, key, req.method()) else {
        return api_error(&err(ErrorCode::Malformed, "/v1/ws expects a WebSocket upgrade (GET, version 13)"));
    };
    let limits = app.config().limits.clone();
    let cfg = crate::ws::ws_config(&limits);
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let out = Arc::new(Outbox::new(Some(sock)));
                let io = WsIo::new(TokioIo::new(upgraded), out.clone(), limits.outbound_queue_bytes);
                let ws = Box::new(WebSocketStream::from_raw_socket(io, Role::Server, Some(cfg)).await);
                crate::ws::run(ws, out, app).await;
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
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
