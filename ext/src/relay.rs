//! Talking to the relay's server API (protocol §5): signed JSON requests
//! over a keep-alive HTTP client, and reading the replies.
//!
//! Bodies are assembled as text: each envelope is already JSON, and the
//! relay forwards it byte for byte, so re-encoding it here would only cost
//! time. Signatures come from `bm_proto::signing`, never re-implemented.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bm_proto::api::ErrorBody;
use bm_proto::signing::{self, HEADER_SIGNATURE, HEADER_SITE, HEADER_TIMESTAMP};
use bm_proto::{RelayKey, SiteId, ThreadId, UserId};

use crate::error::{BmError, Unreachable};
use crate::transport::Transport;

/// Where and how to send: one per (url, site, secret, timeouts) in force.
pub struct Target {
    /// Base URL without trailing slash; endpoint paths are appended.
    pub base_url: String,
    /// The site the requests are signed for.
    pub site: SiteId,
    /// Signs every request.
    pub relay_key: RelayKey,
    /// Whole-request bound.
    pub timeout: Duration,
    /// Connection bound.
    pub connect_timeout: Duration,
    /// http (direct client) or https (reqwest), from `base_url`'s scheme.
    pub transport: Transport,
    /// 1, or 2: requests carry `X-BM-Protocol: 2` (their ids are pseudonyms).
    pub protocol: u8,
}

impl Target {
    /// True when two targets send to the same place with the same key, so
    /// their events may share one batch.
    pub fn same_destination(&self, other: &Target) -> bool {
        self.base_url == other.base_url
            && self.site == other.site
            && self.relay_key == other.relay_key
            && self.timeout == other.timeout
            && self.connect_timeout == other.connect_timeout
            && self.protocol == other.protocol
    }
}

/// The relay URLs in force, in the configured order (never empty): one
/// [`Target`] each, alike but for the URL. Which one a request goes to is
/// decided by `failover`.
pub struct Relays {
    /// One target per URL of `bm_relay.url`.
    pub list: Vec<Target>,
}

impl Relays {
    /// The targets, one per URL.
    pub fn new(list: Vec<Target>) -> Relays {
        Relays { list }
    }

    /// True when both send to the same URLs in the same order with the same
    /// key, so their events may share one batch.
    pub fn same_destination(&self, other: &Relays) -> bool {
        self.list.len() == other.list.len() && self.list.iter().zip(&other.list).all(|(a, b)| a.same_destination(b))
    }

    /// The first URL's target (what errors name before any was tried).
    pub fn first(&self) -> &Target {
        &self.list[0]
    }
}

/// One event as it appears in a push body: `{"to":[…],"thread":t,"e":{…}}`.
pub fn event_json(to: &[UserId], live_thread: Option<ThreadId>, envelope_json: &str) -> String {
    let mut s = String::with_capacity(envelope_json.len() + 16 + to.len() * 8);
    s.push_str("{\"to\":[");
    use std::fmt::Write;
    for (i, u) in to.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Writing into a String cannot fail.
        let _ = write!(s, "{u}");
    }
    s.push(']');
    if let Some(t) = live_thread {
        s.push_str(",\"thread\":");
        let _ = write!(s, "{t}");
    }
    s.push_str(",\"e\":");
    s.push_str(envelope_json);
    s.push('}');
    s
}

/// A push body from already-encoded events.
pub fn push_body<'a>(events: impl Iterator<Item = &'a str>) -> String {
    let mut s = String::from("{\"events\":[");
    for (i, e) in events.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(e);
    }
    s.push_str("]}");
    s
}

/// `{"users":[…]}` or `{"users":[…],"thread":t}`.
pub fn users_body(users: &[UserId], thread: Option<ThreadId>) -> String {
    let ids: Vec<String> = users.iter().map(|u| u.to_string()).collect();
    match thread {
        Some(t) => format!("{{\"users\":[{}],\"thread\":{t}}}", ids.join(",")),
        None => format!("{{\"users\":[{}]}}", ids.join(",")),
    }
}

pub use bm_proto::api::Endpoint;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Builds the signed HTTP client for a connect timeout. Keep-alive pooling
/// is reqwest's; proxies from the environment are ignored because the relay
/// is addressed directly (an `http_proxy` set for package downloads must not
/// capture loopback relay traffic).
pub fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(55))
        .pool_max_idle_per_host(4)
        .tcp_nodelay(true)
        .no_proxy()
        .user_agent(concat!("bm_relay.so/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Sends one signed request and returns the 200 body, or an error whose
/// message says what failed and whose code is the HTTP status (0 when no
/// HTTP answer came).
pub async fn send(
    client: &reqwest::Client,
    target: &Target,
    endpoint: Endpoint,
    body: String,
) -> Result<String, BmError> {
    let path = endpoint.path();
    let ts = unix_now();
    let sig = signing::sign(&target.relay_key, ts, &target.site, "POST", path, body.as_bytes());
    let url = format!("{}{}", target.base_url, path);
    let mut req = client.post(&url);
    if target.protocol == 2 {
        req = req.header(signing::HEADER_PROTOCOL, "2");
    }
    let resp = req
        .timeout(target.timeout)
        .header(HEADER_SITE, target.site.as_str())
        .header(HEADER_TIMESTAMP, ts.to_string())
        .header(HEADER_SIGNATURE, sig)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| transport_error(endpoint, &target.base_url, &e, target))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| transport_error(endpoint, &target.base_url, &e, target))?;
    if status == 200 {
        return Ok(text);
    }
    Err(relay_error(endpoint, status, &text))
}

/// The error for a non-200 reply: `relay refused push: HTTP 401 bad_signature: …`.
pub fn relay_error(endpoint: Endpoint, status: u16, body: &str) -> BmError {
    let detail = match serde_json::from_str::<ErrorBody>(body) {
        Ok(b) => format!("{}: {}", b.error.code, b.error.message),
        Err(_) => "(no error body)".to_string(),
    };
    BmError::refused(endpoint.name(), status, detail)
}

fn transport_error(endpoint: Endpoint, base: &str, e: &reqwest::Error, target: &Target) -> BmError {
    let cause = if e.is_timeout() {
        Unreachable::Timeout { timeout_ms: target.timeout.as_millis() }
    } else if e.is_connect() {
        Unreachable::Connect { connect_timeout_ms: target.connect_timeout.as_millis(), error: root_cause(e) }
    } else {
        Unreachable::Io(root_cause(e))
    };
    BmError::unreachable(endpoint.name(), base, cause)
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let u = |n| UserId::new(n).unwrap();
        let e = event_json(&[u(1), u(2)], ThreadId::new(12).ok(), r#"{"v":1}"#);
        assert_eq!(e, r#"{"to":[1,2],"thread":12,"e":{"v":1}}"#);
        assert_eq!(event_json(&[u(3)], None, "{}"), r#"{"to":[3],"e":{}}"#);
        assert_eq!(push_body([e.as_str(), "{}"].into_iter()), format!(r#"{{"events":[{e},{{}}]}}"#));
        assert_eq!(users_body(&[u(1)], None), r#"{"users":[1]}"#);
        assert_eq!(users_body(&[], ThreadId::new(4).ok()), r#"{"users":[],"thread":4}"#);
    }

    #[test]
    fn relay_errors_carry_status_and_code() {
        let e = relay_error(Endpoint::Push, 401, r#"{"error":{"code":"bad_signature","message":"nope"}}"#);
        assert_eq!(e.code(), 401);
        assert_eq!(e.to_string(), "relay refused push: HTTP 401 bad_signature: nope");
        assert_eq!(
            relay_error(Endpoint::Presence, 502, "<html>").to_string(),
            "relay refused presence: HTTP 502 (no error body)"
        );
    }
}
