//! The two HTTP listeners, one file per concern:
//!
//! | file | what |
//! |---|---|
//! | [`accept`](self::accept) | client listener: admission caps at accept, hyper's limits, the first-head and idle timers |
//! | `admission` | the caps' shared state: per-address slots and buckets, body bytes in flight, trusted proxies |
//! | `api` | the signed server API of protocol §5 |
//! | `upgrade` | `GET /v1/ws`: the WebSocket upgrade, handed to [`crate::ws`] |
//! | `stream` | `POST /v1/stream`, `/v1/stream/<id>`: the streaming fallback (SSE), protocol §6.1 |
//! | `admin` | admin listener (unsigned, bind it to loopback or a private network): `GET /healthz`, `GET /metrics` |
//!
//! Client listener: `GET /v1/ws` and `POST /v1/push`, `/v1/presence`,
//! `/v1/disconnect`, over HTTP/1.1 keep-alive or h2c. Ordering: the
//! requests of one HTTP/1.1 connection are handled one after the other
//! (hyper reads the next head only once the reply is written; pipelined
//! requests wait), so the events of consecutive pushes on one HTTP/1.1
//! connection are queued in order. The streams of one h2c connection are
//! handled concurrently (up to `h2_max_concurrent_streams`), so there is no
//! order between pushes in flight together: a sender that needs order
//! sends the next push after the reply to the previous one.
//!
//! Every refusal is a JSON error body (`{"error":{"code":…,"message":…}}`)
//! with its status, `Retry-After` on 429/503, and a count in
//! `bm_relay_refused_total{reason}`; a connection refused before it sent
//! anything may instead just be closed (see docs/DEPLOY.md "Limits and
//! attacks").

mod accept;
mod admin;
mod admission;
mod api;
mod stream;
mod upgrade;

pub use accept::serve_client;
pub use admin::serve_admin;

use bm_proto::api::{ApiError, ErrorCode};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

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

/// A refusal of the HTTP layer that has no protocol error code: the same
/// JSON shape as [`ApiError`], with its own code (`timeout`, `overloaded`,
/// `rate_limited`) and a `Retry-After` when retrying later can work.
#[derive(Debug, Clone)]
struct Refused {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    retry_after_secs: Option<u32>,
}

impl Refused {
    const fn new(status: StatusCode, code: &'static str, message: &'static str, retry_after_secs: Option<u32>) -> Self {
        Refused { status, code, message, retry_after_secs }
    }

    fn body(&self) -> String {
        serde_json::json!({"error": {"code": self.code, "message": self.message}}).to_string()
    }

    fn response(&self) -> Response<Body> {
        let mut r = json(self.status, self.body());
        if let Some(s) = self.retry_after_secs {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }

    /// The same answer as raw HTTP/1.1 bytes with `Connection: close`, for
    /// a connection refused at accept (before hyper runs).
    fn raw_http1(&self) -> Vec<u8> {
        let body = self.body();
        let mut s = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            body.len()
        );
        if let Some(r) = self.retry_after_secs {
            s.push_str(&format!("retry-after: {r}\r\n"));
        }
        s.push_str("\r\n");
        s.push_str(&body);
        s.into_bytes()
    }
}
