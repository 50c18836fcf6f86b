//! Server API bodies (protocol §5): what WordPress sends the relay and what
//! the relay answers.
//!
//! Push events carry their envelope as a borrowed [`RawValue`]: the relay
//! validates it but forwards the exact bytes it received, so an envelope is
//! never re-encoded between WordPress and the browser.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::envelope::{Envelope, EnvelopeError, DEFAULT_MAX_CIPHERTEXT};
use crate::ids::{KeyId, ThreadId, UserId};

/// Path of the push endpoint.
pub const PATH_PUSH: &str = "/v1/push";
/// Path of the presence endpoint.
pub const PATH_PRESENCE: &str = "/v1/presence";
/// Path of the disconnect endpoint.
pub const PATH_DISCONNECT: &str = "/v1/disconnect";

/// An endpoint of the signed server API: the relay routes and counts
/// requests by it, the PHP extension sends to it. One definition, here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/push`.
    Push,
    /// `POST /v1/presence`.
    Presence,
    /// `POST /v1/disconnect`.
    Disconnect,
}

impl Endpoint {
    /// Every endpoint, in a fixed order (metrics rows).
    pub const ALL: [Endpoint; 3] = [Endpoint::Push, Endpoint::Presence, Endpoint::Disconnect];

    /// The request path (also what is signed).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Push => PATH_PUSH,
            Endpoint::Presence => PATH_PRESENCE,
            Endpoint::Disconnect => PATH_DISCONNECT,
        }
    }

    /// The endpoint served at `path`, if any.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.path() == path)
    }

    /// A short name, for messages and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Push => "push",
            Endpoint::Presence => "presence",
            Endpoint::Disconnect => "disconnect",
        }
    }
}

/// Size limits of the server API; every one is configurable on the relay,
/// and these are the protocol's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Events in one push request.
    pub max_events: usize,
    /// User ids in one event's `to` (and in presence/disconnect lists).
    pub max_recipients: usize,
    /// Decoded `c` of one envelope, in bytes.
    pub max_ciphertext: usize,
    /// Bytes in one request body.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events: 1000,
            max_recipients: 10_000,
            max_ciphertext: DEFAULT_MAX_CIPHERTEXT,
            max_body: 1024 * 1024,
        }
    }
}

/// Error codes of the server API, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: the body or a header is not what the protocol says.
    Malformed,
    /// 401: the signature does not match.
    BadSignature,
    /// 401: the relay has no key for `X-BM-Site`.
    UnknownSite,
    /// 401: the timestamp is outside the skew window.
    Stale,
    /// 404: no such endpoint.
    NotFound,
    /// 405: the endpoint exists, the method does not.
    MethodNotAllowed,
    /// 413: the body or an envelope is over its limit.
    TooLarge,
    /// 429: too many requests.
    RateLimited,
    /// 503: the relay is shutting down.
    ShuttingDown,
    /// 400: a protocol v1 request (no `X-BM-Protocol: 2`) to a relay
    /// configured with `accept_v1 = false` (§3.2, §5): the sender must be
    /// switched to protocol 2 (`bm_relay.protocol = 2`). Not retryable.
    ProtocolV1Refused,
}

impl ErrorCode {
    /// The `code` string in error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::UnknownSite => "unknown_site",
            ErrorCode::Stale => "stale",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::ProtocolV1Refused => "protocol_v1_refused",
        }
    }

    /// The HTTP status that goes with it.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Malformed | ErrorCode::ProtocolV1Refused => 400,
            ErrorCode::BadSignature | ErrorCode::UnknownSite | ErrorCode::Stale => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::ShuttingDown => 503,
        }
    }

    /// Reads a code string back (clients mapping relay errors).
    pub fn parse(code: &str) -> Option<Self> {
        [
            ErrorCode::Malformed,
            ErrorCode::BadSignature,
            ErrorCode::UnknownSite,
            ErrorCode::Stale,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::TooLarge,
            ErrorCode::RateLimited,
            ErrorCode::ShuttingDown,
            ErrorCode::ProtocolV1Refused,
        ]
        .into_iter()
        .find(|c| c.as_str() == code)
    }
}

/// A refused server API request: a code and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}): {message}", code.as_str(), code.http_status())]
pub struct ApiError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// What was wrong, naming the field.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }

    /// The body `{"error":{"code":"…","message":"…"}}`.
    pub fn to_body(&self) -> String {
        serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}}).to_string()
    }
}

/// The JSON error body, for clients reading a relay error.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Inside [`ErrorBody`].
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ErrorDetail {
    /// Machine-readable code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// `POST /v1/push` body.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest<'a> {
    /// Events, delivered in order.
    #[serde(borrow)]
    pub events: Vec<PushEvent<'a>>,
}

/// One pushed event.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PushEvent<'a> {
    /// Users whose every socket gets the event.
    pub to: Vec<UserId>,
    /// Also every socket subscribed to this thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadId>,
    /// The sealed envelope, exactly as sent.
    #[serde(borrow)]
    pub e: &'a RawValue,
}

/// A push event that passed validation.
#[derive(Debug)]
pub struct ValidEvent<'a> {
    /// Recipients, deduplicated, in first-seen order.
    pub to: Vec<UserId>,
    /// Thread whose subscribers also get it.
    pub thread: Option<ThreadId>,
    /// The envelope's exact JSON text.
    pub envelope_json: &'a str,
    /// The envelope, parsed.
    pub envelope: Envelope,
}

fn envelope_error(i: usize, err: EnvelopeError) -> ApiError {
    let code = match err {
        EnvelopeError::TooLarge { .. } => ErrorCode::TooLarge,
        _ => ErrorCode::Malformed,
    };
    ApiError::new(code, format!("events[{i}].e: {err}"))
}

impl<'a> PushRequest<'a> {
    /// Parses and validates a push body: JSON shape, id ranges, counts,
    /// envelope shape and size, and the user-key rule (an envelope sealed
    /// with `u/{u}` goes to user `u` alone, with no thread).
    pub fn parse(body: &'a str, limits: &Limits) -> Result<Vec<ValidEvent<'a>>, ApiError> {
        let req: PushRequest<'a> =
            serde_json::from_str(body).map_err(|e| ApiError::new(ErrorCode::Malformed, format!("push body: {e}")))?;
        if req.events.len() > limits.max_events {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("{} events, over the limit of {}", req.events.len(), limits.max_events),
            ));
        }
        req.events.into_iter().enumerate().map(|(i, ev)| ev.validate(i, limits)).collect()
    }
}

impl<'a> PushEvent<'a> {
    fn validate(self, i: usize, limits: &Limits) -> Result<ValidEvent<'a>, ApiError> {
        if self.to.len() > limits.max_recipients {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("events[{i}].to has {} ids, over the limit of {}", self.to.len(), limits.max_recipients),
            ));
        }
        let json = self.e.get();
        let envelope = Envelope::parse(json, limits.max_ciphertext).map_err(|e| envelope_error(i, e))?;
        if let KeyId::User(owner) = envelope.k {
            if self.thread.is_some() || self.to.iter().any(|u| *u != owner) || self.to.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::Malformed,
                    format!("events[{i}]: an envelope sealed with u/{owner} must be addressed to user {owner} alone"),
                ));
            }
        }
        let mut to = self.to;
        dedup_in_order(&mut to);
        Ok(ValidEvent { to, thread: self.thread, envelope_json: json, envelope })
    }
}

/// Removes repeated ids, keeping first occurrences in order.
pub fn dedup_in_order(ids: &mut Vec<UserId>) {
    if ids.len() < 2 {
        return;
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.retain(|u| seen.insert(*u));
}

/// One result per pushed event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PushResult {
    /// The users in `to` that had at least one socket.
    pub online: Vec<UserId>,
    /// Sockets the event was queued to (users and thread subscribers).
    pub sockets: u64,
}

/// `POST /v1/push` reply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PushResponse {
    /// In the order of the request's events.
    pub results: Vec<PushResult>,
}

/// `POST /v1/presence` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceRequest {
    /// Users to look up.
    pub users: Vec<UserId>,
}

/// `POST /v1/presence` reply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PresenceResponse {
    /// Those with at least one socket.
    pub online: Vec<UserId>,
}

/// `POST /v1/disconnect` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectRequest {
    /// Users concerned.
    pub users: Vec<UserId>,
    /// With a thread: revoke only that subscription; without: close sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadId>,
}

/// `POST /v1/disconnect` reply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DisconnectResponse {
    /// Sockets closed, or subscriptions revoked.
    pub closed: u64,
}

/// Parses a presence or disconnect body, checking the id count.
pub fn parse_users_body<T: serde::de::DeserializeOwned + HasUsers>(body: &str, limits: &Limits) -> Result<T, ApiError> {
    let req: T = serde_json::from_str(body).map_err(|e| ApiError::new(ErrorCode::Malformed, format!("body: {e}")))?;
    let n = req.users().len();
    if n > limits.max_recipients {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("users has {n} ids, over the limit of {}", limits.max_recipients),
        ));
    }
    Ok(req)
}

/// Bodies that list users.
pub trait HasUsers {
    /// The list.
    fn users(&self) -> &[UserId];
}
impl HasUsers for PresenceRequest {
    fn users(&self) -> &[UserId] {
        &self.users
    }
}
impl HasUsers for DisconnectRequest {
    fn users(&self) -> &[UserId] {
        &self.users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = r#"{"v":1,"id":"a","k":"t/1/0","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA"}"#;
    const UENV: &str = r#"{"v":1,"id":"a","k":"u/5","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA"}"#;

    #[test]
    fn push_parses_and_keeps_raw_bytes() {
        let body = format!(r#"{{"events":[{{"to":[1,2,1],"thread":9,"e":{ENV}}}]}}"#);
        let evs = PushRequest::parse(&body, &Limits::default()).unwrap();
        assert_eq!(evs[0].envelope_json, ENV);
        assert_eq!(evs[0].to.iter().map(|u| u.get()).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(evs[0].thread.unwrap().get(), 9);
    }

    #[test]
    fn push_limits() {
        let small = Limits { max_events: 1, max_recipients: 2, max_ciphertext: 15, max_body: 100 };
        let two = format!(r#"{{"events":[{{"to":[],"e":{ENV}}},{{"to":[],"e":{ENV}}}]}}"#);
        assert_eq!(PushRequest::parse(&two, &small).unwrap_err().code, ErrorCode::TooLarge);
        let many = format!(r#"{{"events":[{{"to":[1,2,3],"e":{ENV}}}]}}"#);
        assert_eq!(PushRequest::parse(&many, &small).unwrap_err().code, ErrorCode::TooLarge);
        let big = format!(r#"{{"events":[{{"to":[1],"e":{ENV}}}]}}"#);
        let err = PushRequest::parse(&big, &small).unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);
        assert!(err.message.contains("events[0].e"), "{}", err.message);
    }

    #[test]
    fn user_key_goes_to_its_owner_alone() {
        let ok = format!(r#"{{"events":[{{"to":[5],"e":{UENV}}}]}}"#);
        assert!(PushRequest::parse(&ok, &Limits::default()).is_ok());
        for bad in [
            format!(r#"{{"events":[{{"to":[5,6],"e":{UENV}}}]}}"#),
            format!(r#"{{"events":[{{"to":[6],"e":{UENV}}}]}}"#),
            format!(r#"{{"events":[{{"to":[],"e":{UENV}}}]}}"#),
            format!(r#"{{"events":[{{"to":[5],"thread":1,"e":{UENV}}}]}}"#),
        ] {
            assert_eq!(PushRequest::parse(&bad, &Limits::default()).unwrap_err().code, ErrorCode::Malformed, "{bad}");
        }
    }

    #[test]
    fn push_malformed() {
        for bad in [
            "",
            "{}",
            r#"{"events":{}}"#,
            r#"{"events":[{"to":[1]}]}"#,
            &format!(r#"{{"events":[{{"to":[0],"e":{ENV}}}]}}"#),
            &format!(r#"{{"events":[{{"to":["1"],"e":{ENV}}}]}}"#),
            &format!(r#"{{"events":[{{"to":[1],"thread":-1,"e":{ENV}}}]}}"#),
            &format!(r#"{{"events":[{{"to":[1],"x":1,"e":{ENV}}}]}}"#),
            r#"{"events":[{"to":[1],"e":"not an envelope"}]}"#,
        ] {
            assert_eq!(PushRequest::parse(bad, &Limits::default()).unwrap_err().code, ErrorCode::Malformed, "{bad}");
        }
    }

    #[test]
    fn error_body_shape_and_codes() {
        let e = ApiError::new(ErrorCode::Stale, "too old \"x\"");
        let v: serde_json::Value = serde_json::from_str(&e.to_body()).unwrap();
        assert_eq!(v["error"]["code"], "stale");
        assert_eq!(v["error"]["message"], "too old \"x\"");
        assert_eq!(ErrorCode::parse("too_large"), Some(ErrorCode::TooLarge));
        assert_eq!(ErrorCode::TooLarge.http_status(), 413);
    }

    #[test]
    fn users_bodies() {
        let p: PresenceRequest = parse_users_body(r#"{"users":[1,2]}"#, &Limits::default()).unwrap();
        assert_eq!(p.users.len(), 2);
        let d: DisconnectRequest = parse_users_body(r#"{"users":[1],"thread":4}"#, &Limits::default()).unwrap();
        assert_eq!(d.thread.unwrap().get(), 4);
        let small = Limits { max_recipients: 1, ..Limits::default() };
        assert_eq!(
            parse_users_body::<PresenceRequest>(r#"{"users":[1,2]}"#, &small).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert_eq!(
            parse_users_body::<PresenceRequest>(r#"{"users":[0]}"#, &small).unwrap_err().code,
            ErrorCode::Malformed
        );
    }
}
