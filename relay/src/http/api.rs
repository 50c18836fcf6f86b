//! The signed server API (protocol §5): `POST /v1/push`, `/v1/presence`,
//! `/v1/disconnect`.
//!
//! Everything that can be judged from the head is judged before a byte of
//! the body is read: a known `X-BM-Site`, a canonical and fresh
//! `X-BM-Timestamp`, a well-formed `X-BM-Signature`, a `Content-Length`
//! within `max_body`. An anonymous client therefore gets its 401/400/413
//! at once and cannot make the relay buffer a body. The signature covers
//! the body, so it is verified after reading it; reading is bounded in
//! time (`body_timeout_secs`, 408) and, over all requests, in bytes
//! (`max_body_bytes_in_flight`, counted as bytes arrive, 503).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bm_proto::api::{
    self, ApiError, DisconnectRequest, ErrorCode, PresenceRequest, PresenceResponse, PushRequest, PushResponse,
    PushResult,
};
use bm_proto::frames;
use bm_proto::signing::{self, SignatureError};
use bm_proto::{KeyId, SiteId};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Request, Response, StatusCode, Version};

use super::accept::ConnCtx;
use super::{api_error, err, json, Body, Refused};
use crate::config::Limits;
use crate::frame::Frame;
use crate::metrics::{Endpoint, Refusal, RequestResult};
use crate::state::{unix_now, App};

/// A refused server API request: a protocol error, or one of the HTTP
/// layer's own (timeout, overload).
enum Failure {
    Api(ApiError),
    Http(Refused, Refusal),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

const BODY_TIMEOUT: Refused = Refused::new(
    StatusCode::REQUEST_TIMEOUT,
    "timeout",
    "the request body did not arrive within body_timeout_secs",
    None,
);
const BODY_BUDGET: Refused = Refused::new(
    StatusCode::SERVICE_UNAVAILABLE,
    "overloaded",
    "too many request body bytes are being read; retry shortly",
    Some(1),
);

/// Runs one server API request and counts it.
pub(super) async fn handle(req: Request<Incoming>, ctx: &ConnCtx, endpoint: Endpoint) -> Response<Body> {
    let app = &*ctx.app;
    let started = Instant::now();
    let version = req.version();
    let result = server_api(req, ctx, endpoint).await;
    let status = match &result {
        Ok(_) => 200,
        Err(Failure::Api(e)) => e.code.http_status(),
        Err(Failure::Http(r, _)) => r.status.as_u16(),
    };
    let class = match status {
        200 => RequestResult::Ok,
        401 => RequestResult::Unauthorized,
        503 => RequestResult::Unavailable,
        _ => RequestResult::ClientError,
    };
    app.metrics.request(endpoint, class);
    match result {
        Ok(body) => {
            if endpoint == Endpoint::Push {
                app.metrics.push_latency(started.elapsed());
            }
            json(StatusCode::OK, body)
        }
        Err(Failure::Api(e)) => {
            tracing::debug!(code = e.code.as_str(), "server API request refused");
            api_error(&e)
        }
        Err(Failure::Http(r, why)) => {
            app.metrics.refused(why);
            let mut resp = r.response();
            // The body was not read to its end: the connection cannot carry
            // another request (h2 resets just the stream by itself).
            if version <= Version::HTTP_11 {
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    }
}

/// Reads a body whole, within `max_body`, counting its bytes in
/// `max_body_bytes_in_flight` as they arrive.
async fn read_body(mut body: Incoming, ctx: &ConnCtx, limits: &Limits) -> Result<Bytes, Failure> {
    let mut permit = ctx.adm.body_permit();
    // The usual push arrives in one chunk and is kept without a copy.
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| err(ErrorCode::Malformed, "the request body could not be read"))?;
        let Ok(chunk) = frame.into_data() else { continue };
        len += chunk.len();
        if len > limits.max_body {
            return Err(err(ErrorCode::TooLarge, format!("body over the limit of {} bytes", limits.max_body)).into());
        }
        if !permit.grow(chunk.len(), limits.max_body_bytes_in_flight) {
            return Err(Failure::Http(BODY_BUDGET, Refusal::BodyBudget));
        }
        match first.take() {
            None if joined.is_empty() => first = Some(chunk),
            f => {
                if let Some(f) = f {
                    joined.extend_from_slice(&f);
                }
                joined.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The checks that need only the head. Order: site, timestamp syntax,
/// signature syntax, then freshness (see docs/PROTOCOL.md §5 on why the
/// clock is no longer checked after the signature).
fn check_head<'c>(
    h: &HeaderMap,
    cfg: &'c crate::config::Config,
) -> Result<(SiteId, &'c bm_proto::RelayKey, u64), ApiError> {
    let limits = &cfg.limits;
    let site = SiteId::new(header(h, signing::HEADER_SITE))
        .map_err(|_| err(ErrorCode::UnknownSite, "X-BM-Site is missing or not a site id"))?;
    let key =
        cfg.sites.get(&site).ok_or_else(|| err(ErrorCode::UnknownSite, format!("site `{site}` is not served here")))?;
    let ts = bm_proto::ids::parse_canonical_decimal(header(h, signing::HEADER_TIMESTAMP).trim())
        .ok_or_else(|| err(ErrorCode::Malformed, SignatureError::BadTimestamp.to_string()))?;
    let sig = header(h, signing::HEADER_SIGNATURE).trim();
    let well_formed =
        sig.strip_prefix("v1=").is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err(err(ErrorCode::BadSignature, SignatureError::BadSignature.to_string()));
    }
    if ts.abs_diff(unix_now()) > limits.max_skew_secs {
        return Err(err(ErrorCode::Stale, format!("{} ({} s)", SignatureError::Stale, limits.max_skew_secs)));
    }
    Ok((site, key, ts))
}

/// Authenticates and runs one server API request; `Ok` is the reply body.
async fn server_api(req: Request<Incoming>, ctx: &ConnCtx, endpoint: Endpoint) -> Result<String, Failure> {
    let app: &App = &ctx.app;
    if app.is_shutting_down() {
        return Err(err(ErrorCode::ShuttingDown, "the relay is shutting down; retry on another node or later").into());
    }
    let cfg = app.config();
    let limits = &cfg.limits;
    let (parts, body) = req.into_parts();
    let (site, key, signed_at) = check_head(&parts.headers, &cfg)?;
    let too_large = || err(ErrorCode::TooLarge, format!("body over the limit of {} bytes", limits.max_body));
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        return Err(too_large().into());
    }
    let read = read_body(body, ctx, limits);
    let body = match tokio::time::timeout(Limits::dur(limits.body_timeout_secs), read).await {
        Err(_) => return Err(Failure::Http(BODY_TIMEOUT, Refusal::BodyTimeout)),
        Ok(r) => r?,
    };
    let ts = header(&parts.headers, signing::HEADER_TIMESTAMP);
    let sig = header(&parts.headers, signing::HEADER_SIGNATURE);
    signing::verify(key, ts, sig, &site, "POST", parts.uri.path(), &body, unix_now(), limits.max_skew_secs).map_err(
        |e| match e {
            SignatureError::BadTimestamp => err(ErrorCode::Malformed, e.to_string()),
            SignatureError::BadSignature => err(ErrorCode::BadSignature, e.to_string()),
            SignatureError::Stale => err(ErrorCode::Stale, format!("{e} ({} s)", limits.max_skew_secs)),
        },
    )?;
    // Signed by a site's relay key: the connection is no longer anonymous.
    ctx.pending.release();
    // Counted once signed (anonymous junk does not move it), before the
    // refusal below, so an operator sees v1 senders that are still refused.
    let protocol = if header(&parts.headers, signing::HEADER_PROTOCOL).trim() == "2" { 2 } else { 1 };
    app.metrics.request_protocol(protocol);
    if protocol == 1 && !cfg.protocol.accept_v1 {
        return Err(err(
            ErrorCode::ProtocolV1Refused,
            format!(
                "this relay no longer accepts protocol v1 (accept_v1 = false): send {}: 2 with pseudonymous ids \
                 (PHP: bm_relay.protocol = 2)",
                signing::HEADER_PROTOCOL
            ),
        )
        .into());
    }
    let text = std::str::from_utf8(&body).map_err(|_| err(ErrorCode::Malformed, "the body is not UTF-8"))?;
    let api_limits = limits.api();
    let max_queue = limits.outbound_queue_bytes;
    match endpoint {
        Endpoint::Push => {
            let events = PushRequest::parse(text, &api_limits)?;
            for (i, ev) in events.iter().enumerate() {
                if let (Some(t), KeyId::Thread { thread, .. }) = (ev.thread, ev.envelope.k) {
                    if thread != t {
                        return Err(err(
                            ErrorCode::Malformed,
                            format!(
                                "events[{i}]: thread is {t} but the envelope is sealed with a key of thread {thread}"
                            ),
                        )
                        .into());
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
            // Documented in PROTOCOL.md, "Cluster": present only while this
            // node cannot reach NATS (results are then this node's alone).
            if app.router.cluster_status() == Some("degraded") {
                return Ok(serde_json::json!({ "results": results, "cluster": "degraded" }).to_string());
            }
            Ok(serde_json::to_string(&PushResponse { results }).expect("results serialize"))
        }
        Endpoint::Presence => {
            let p: PresenceRequest = api::parse_users_body(text, &api_limits)?;
            let online = app.router.presence(&site, &p.users);
            if app.router.cluster_status() == Some("degraded") {
                return Ok(serde_json::json!({ "online": online, "cluster": "degraded" }).to_string());
            }
            Ok(serde_json::to_string(&PresenceResponse { online }).expect("presence serializes"))
        }
        Endpoint::Disconnect => {
            let d: DisconnectRequest = api::parse_users_body(text, &api_limits)?;
            // The signed timestamp (verified above): WordPress's clock, the
            // one that stamps `iat` (see crate::revocations).
            let at = signed_at;
            app.revoke(&site, &d.users, d.thread, at);
            let unsub = d.thread.map(|t| Frame::from(frames::unsub(t)));
            let closed = app.router.disconnect(&site, &d.users, d.thread, at, unsub.as_ref(), max_queue);
            Ok(serde_json::json!({ "closed": closed }).to_string())
        }
    }
}
