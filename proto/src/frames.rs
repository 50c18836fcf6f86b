//! WebSocket frames (protocol §6): one JSON object per text frame.
//!
//! Client frames are read into a flat, borrowing struct first and only then
//! into the typed [`ClientOp`], so that a frame with a bad field still
//! yields its `ref` for the error reply. Relay frames are written by small
//! functions that build the text directly: an `ev` frame wraps the pushed
//! envelope's exact bytes, built once per event and shared by every
//! recipient.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::{ThreadId, UserId};

/// WebSocket close codes used by the relay.
pub mod close {
    /// No auth, bad auth, or auth too late.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The server revoked the connection (`/v1/disconnect`, site removed).
    pub const REVOKED: u16 = 4003;
    /// The socket's outbound queue overflowed.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The connection token expired without a `refresh`.
    pub const TOKEN_EXPIRED: u16 = 4009;
    /// A frame over the size limit.
    pub const FRAME_TOO_LARGE: u16 = 4013;
    /// Too many frames, persistently, or too many sockets for one user.
    pub const RATE_LIMITED: u16 = 4029;
    /// The relay is at a capacity limit (sockets still authenticating,
    /// sockets of the site): reconnect later, with backoff (RFC 6455 1013).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Shutdown or restart: reconnect with jitter.
    pub const GOING_AWAY: u16 = 1001;
    /// Any other policy violation.
    pub const POLICY: u16 = 1008;
    /// A WebSocket protocol error (RFC 6455 §7.4.1): RSV bits, an unmasked
    /// client frame, a bad opcode, a fragmented or oversized control frame.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not UTF-8 (RFC 6455 §8.1).
    pub const INVALID_PAYLOAD: u16 = 1007;
}

/// Error codes in `{"op":"error"}` frames.
pub mod codes {
    /// Not JSON, unknown `op`, or a missing or mistyped field.
    pub const BAD_FRAME: &str = "bad_frame";
    /// A token that does not verify (signature, algorithm, form, site).
    pub const BAD_TOKEN: &str = "bad_token";
    /// An expired token.
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// A valid token for another user, site or thread than the frame's.
    pub const FORBIDDEN: &str = "forbidden";
    /// `pub` or `unsub` on a thread the socket does not watch.
    pub const NOT_SUBSCRIBED: &str = "not_subscribed";
    /// `pub` over the rate limit.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// A published envelope over its size limit.
    pub const TOO_LARGE: &str = "too_large";
    /// A published envelope that is not a valid envelope.
    pub const BAD_ENVELOPE: &str = "bad_envelope";
    /// A second `auth` on an authenticated socket.
    pub const ALREADY_AUTHENTICATED: &str = "already_authenticated";
    /// Too many subscriptions on one socket.
    pub const TOO_MANY_SUBSCRIPTIONS: &str = "too_many_subscriptions";
}

/// Threads one `presence` frame may ask about. Bounds the work of one
/// request (a lookup per thread) and, with [`MAX_PRESENCE_USERS`], its
/// answer: at most 16 × 500 user ids, about 140 KB.
pub const MAX_PRESENCE_THREADS: usize = 16;

/// Users listed per thread in a `presence` answer; past it the entry says
/// `"truncated":true`.
pub const MAX_PRESENCE_USERS: usize = 500;

/// A client frame, typed.
#[derive(Debug)]
pub enum ClientOp<'a> {
    /// `{"op":"auth","token":T}`.
    Auth { token: Cow<'a, str> },
    /// `{"op":"sub","thread":t,"token":T}`.
    Sub { thread: ThreadId, token: Cow<'a, str> },
    /// `{"op":"unsub","thread":t}`.
    Unsub { thread: ThreadId },
    /// `{"op":"pub","thread":t,"e":<envelope>}`.
    Pub { thread: ThreadId, e: &'a RawValue },
    /// `{"op":"refresh","token":T}`.
    Refresh { token: Cow<'a, str> },
    /// `{"op":"ping"}`.
    Ping,
    /// `{"op":"presence","threads":[T,…]}`: who is online in these
    /// threads (1 to [`MAX_PRESENCE_THREADS`]; repeats removed, the
    /// frame's order kept).
    Presence { threads: Vec<ThreadId> },
}

/// A client frame: the op and the `ref` to echo.
#[derive(Debug)]
pub struct ClientFrame<'a> {
    /// Echoed in the reply, when given.
    pub r#ref: Option<i64>,
    /// What the client asks.
    pub op: ClientOp<'a>,
}

/// A client frame that could not be read; answered with an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrameError {
    /// The frame's `ref`, when it could be read.
    pub r#ref: Option<i64>,
    /// One of [`codes`].
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(default, rename = "ref")]
    r#ref: Option<i64>,
    #[serde(default, borrow)]
    token: Option<Cow<'a, str>>,
    #[serde(default)]
    thread: Option<serde_json::Number>,
    #[serde(default, borrow)]
    e: Option<&'a RawValue>,
    /// Read raw, then typed in [`ClientFrame::parse`]: a bad element
    /// then still yields the frame's `ref`.
    #[serde(default, borrow)]
    threads: Option<&'a RawValue>,
}

impl<'a> ClientFrame<'a> {
    /// Reads one text frame.
    pub fn parse(text: &'a str) -> Result<Self, FrameError> {
        let raw: RawFrame<'a> = serde_json::from_str(text).map_err(|e| FrameError {
            r#ref: None,
            code: codes::BAD_FRAME,
            message: format!("frame is not a valid JSON object: {e}"),
        })?;
        let r#ref = raw.r#ref;
        let bad = |message: String| FrameError { r#ref, code: codes::BAD_FRAME, message };
        let op = raw.op.as_ref();
        let token = || raw.token.clone().ok_or_else(|| bad(format!("`{op}` needs a string `token`")));
        let thread = || {
            let n = raw.thread.as_ref().ok_or_else(|| bad(format!("`{op}` needs a numeric `thread`")))?;
            n.as_u64()
                .ok_or_else(|| bad("`thread` must be a positive integer".into()))
                .and_then(|t| ThreadId::new(t).map_err(|e| bad(e.to_string())))
        };
        let op = match op {
            "auth" => ClientOp::Auth { token: token()? },
            "sub" => ClientOp::Sub { thread: thread()?, token: token()? },
            "unsub" => ClientOp::Unsub { thread: thread()? },
            "pub" => {
                ClientOp::Pub { thread: thread()?, e: raw.e.ok_or_else(|| bad("`pub` needs an envelope `e`".into()))? }
            }
            "refresh" => ClientOp::Refresh { token: token()? },
            "ping" => ClientOp::Ping,
            "presence" => {
                let list: Vec<serde_json::Number> = raw
                    .threads
                    .and_then(|v| serde_json::from_str(v.get()).ok())
                    .ok_or_else(|| bad("`presence` needs an array of thread ids `threads`".into()))?;
                if list.is_empty() || list.len() > MAX_PRESENCE_THREADS {
                    return Err(bad(format!("`presence` takes 1 to {MAX_PRESENCE_THREADS} threads")));
                }
                let mut threads: Vec<ThreadId> = Vec::with_capacity(list.len());
                for n in &list {
                    let t = n
                        .as_u64()
                        .ok_or_else(|| bad("`threads` must hold positive integers".into()))
                        .and_then(|t| ThreadId::new(t).map_err(|e| bad(e.to_string())))?;
                    if !threads.contains(&t) {
                        threads.push(t);
                    }
                }
                ClientOp::Presence { threads }
            }
            other => return Err(bad(format!("unknown op `{}`", other.chars().take(32).collect::<String>()))),
        };
        Ok(ClientFrame { r#ref, op })
    }
}

/// One thread of a `presence` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadPresence {
    /// The users with a socket subscribed to the thread, at most
    /// [`MAX_PRESENCE_USERS`] of them (`truncated`: there were more).
    Users { thread: ThreadId, users: Vec<UserId>, truncated: bool },
    /// The asking socket does not watch the thread: nothing is said of it.
    NotSubscribed(ThreadId),
}

/// The answer to `presence`: `{"op":"presence","ref":n,"threads":[…]}`,
/// one entry per thread asked, in the order asked, and
/// `"cluster":"degraded"` when the answer is this node's alone.
pub fn presence(r#ref: Option<i64>, threads: &[ThreadPresence], degraded: bool) -> String {
    use std::fmt::Write;
    let mut s = String::from(r#"{"op":"presence""#);
    push_ref(&mut s, r#ref);
    s.push_str(r#","threads":["#);
    for (i, t) in threads.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match t {
            ThreadPresence::Users { thread, users, truncated } => {
                let _ = write!(s, r#"{{"thread":{thread},"users":["#);
                for (j, u) in users.iter().enumerate() {
                    if j > 0 {
                        s.push(',');
                    }
                    let _ = write!(s, "{u}");
                }
                s.push(']');
                if *truncated {
                    s.push_str(r#","truncated":true"#);
                }
                s.push('}');
            }
            ThreadPresence::NotSubscribed(thread) => {
                let _ = write!(s, r#"{{"thread":{thread},"error":"{}"}}"#, codes::NOT_SUBSCRIBED);
            }
        }
    }
    s.push(']');
    if degraded {
        s.push_str(r#","cluster":"degraded""#);
    }
    s.push('}');
    s
}

fn push_ref(out: &mut String, r#ref: Option<i64>) {
    if let Some(r) = r#ref {
        out.push_str(",\"ref\":");
        out.push_str(&r.to_string());
    }
}

/// `{"op":"ready","user":u,"exp":e}`.
pub fn ready(user: UserId, exp: u64) -> String {
    format!(r#"{{"op":"ready","user":{user},"exp":{exp}}}"#)
}

/// `{"op":"ok","ref":r}` (`ref` left out when the client gave none).
pub fn ok(r#ref: Option<i64>) -> String {
    let mut s = String::from(r#"{"op":"ok""#);
    push_ref(&mut s, r#ref);
    s.push('}');
    s
}

/// `{"op":"pong","ref":r}`.
pub fn pong(r#ref: Option<i64>) -> String {
    let mut s = String::from(r#"{"op":"pong""#);
    push_ref(&mut s, r#ref);
    s.push('}');
    s
}

/// `{"op":"error","ref":r,"code":"…","message":"…"}`.
pub fn error(r#ref: Option<i64>, code: &str, message: &str) -> String {
    let mut s = String::from(r#"{"op":"error""#);
    push_ref(&mut s, r#ref);
    s.push_str(",\"code\":");
    s.push_str(&serde_json::to_string(code).expect("strings serialize"));
    s.push_str(",\"message\":");
    s.push_str(&serde_json::to_string(message).expect("strings serialize"));
    s.push('}');
    s
}

/// `{"op":"unsub","thread":t}`: the server revoked a subscription.
pub fn unsub(thread: ThreadId) -> String {
    format!(r#"{{"op":"unsub","thread":{thread}}}"#)
}

/// `{"op":"ev","e":<envelope>}`: a server push, envelope bytes untouched.
pub fn ev(envelope_json: &str) -> String {
    let mut s = String::with_capacity(envelope_json.len() + 16);
    s.push_str(r#"{"op":"ev","e":"#);
    s.push_str(envelope_json);
    s.push('}');
    s
}

/// `{"op":"ev","thread":t,"from":u,"e":<envelope>}`: a client `pub`, with
/// `from` set by the relay from the sender's token.
pub fn ev_from(thread: ThreadId, from: UserId, envelope_json: &str) -> String {
    let mut s = String::with_capacity(envelope_json.len() + 64);
    s.push_str(r#"{"op":"ev","thread":"#);
    s.push_str(&thread.to_string());
    s.push_str(r#","from":"#);
    s.push_str(&from.to_string());
    s.push_str(r#","e":"#);
    s.push_str(envelope_json);
    s.push('}');
    s
}

/// Any relay → client frame, read back (for clients, tools and tests).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerFrame {
    /// `ready`, `ok`, `pong`, `ev`, `error` or `unsub`.
    pub op: String,
    /// Echoed `ref`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<i64>,
    /// `ready`: the authenticated user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// `ready`: the token's expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// `ev` from a `pub`, or `unsub`: the thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadId>,
    /// `ev` from a `pub`: the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<UserId>,
    /// `ev`: the envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<Box<RawValue>>,
    /// `error`: the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// `error`: the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_op() {
        let f = ClientFrame::parse(r#"{"op":"auth","token":"abc"}"#).unwrap();
        assert!(matches!(f.op, ClientOp::Auth { ref token } if token == "abc"));
        assert_eq!(f.r#ref, None);
        let f = ClientFrame::parse(r#"{"op":"sub","thread":12,"token":"t","ref":3}"#).unwrap();
        assert!(matches!(f.op, ClientOp::Sub { thread, ref token } if thread.get() == 12 && token == "t"));
        assert_eq!(f.r#ref, Some(3));
        let f = ClientFrame::parse(r#"{"op":"pub","thread":1,"e":{"v":1},"ref":-4}"#).unwrap();
        match f.op {
            ClientOp::Pub { e, .. } => assert_eq!(e.get(), r#"{"v":1}"#),
            other => panic!("{other:?}"),
        }
        assert!(matches!(ClientFrame::parse(r#"{"op":"ping","ref":1}"#).unwrap().op, ClientOp::Ping));
        assert!(matches!(ClientFrame::parse(r#"{"op":"unsub","thread":2}"#).unwrap().op,
                   ClientOp::Unsub { thread } if thread.get() == 2));
        assert!(matches!(ClientFrame::parse(r#"{"op":"refresh","token":"x\u0041"}"#).unwrap().op,
                   ClientOp::Refresh { ref token } if token == "xA"));
        match ClientFrame::parse(r#"{"op":"presence","threads":[3,1,3],"ref":5}"#).unwrap().op {
            ClientOp::Presence { threads } => {
                assert_eq!(
                    threads.iter().map(|t| t.get()).collect::<Vec<_>>(),
                    vec![3, 1],
                    "repeats removed, order kept"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn presence_is_bounded_and_typed() {
        let many = format!(r#"{{"op":"presence","threads":{:?},"ref":1}}"#, (1..=17).collect::<Vec<u64>>());
        for text in [
            r#"{"op":"presence","ref":1}"#,
            r#"{"op":"presence","threads":[],"ref":1}"#,
            r#"{"op":"presence","threads":[0],"ref":1}"#,
            r#"{"op":"presence","threads":["1"],"ref":1}"#,
            r#"{"op":"presence","threads":[1.5],"ref":1}"#,
            r#"{"op":"presence","threads":5,"ref":1}"#,
            many.as_str(),
        ] {
            let err = ClientFrame::parse(text).unwrap_err();
            assert_eq!((err.code, err.r#ref), (codes::BAD_FRAME, Some(1)), "{text}");
        }
        let sixteen = format!(r#"{{"op":"presence","threads":{:?}}}"#, (1..=16).collect::<Vec<u64>>());
        assert!(ClientFrame::parse(&sixteen).is_ok());
    }

    #[test]
    fn presence_answer_shape() {
        let (t, u) = (|n| ThreadId::new(n).unwrap(), |n| UserId::new(n).unwrap());
        let s = presence(
            Some(4),
            &[
                ThreadPresence::Users { thread: t(1), users: vec![u(2), u(3)], truncated: false },
                ThreadPresence::Users { thread: t(2), users: vec![], truncated: true },
                ThreadPresence::NotSubscribed(t(9)),
            ],
            true,
        );
        assert_eq!(
            s,
            r#"{"op":"presence","ref":4,"threads":[{"thread":1,"users":[2,3]},{"thread":2,"users":[],"truncated":true},{"thread":9,"error":"not_subscribed"}],"cluster":"degraded"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&presence(None, &[], false)).unwrap();
        assert_eq!(v, serde_json::json!({"op":"presence","threads":[]}));
    }

    #[test]
    fn errors_keep_the_ref() {
        for (text, r) in [
            (r#"{"op":"sub","thread":0,"token":"t","ref":7}"#, Some(7)),
            (r#"{"op":"sub","thread":1.5,"token":"t","ref":7}"#, Some(7)),
            (r#"{"op":"sub","thread":1,"ref":8}"#, Some(8)),
            (r#"{"op":"pub","thread":1,"ref":9}"#, Some(9)),
            (r#"{"op":"nope","ref":10}"#, Some(10)),
            (r#"{"ref":11}"#, None),
            ("not json", None),
            ("[]", None),
            (r#"{"op":"auth","token":5}"#, None),
        ] {
            let err = ClientFrame::parse(text).unwrap_err();
            assert_eq!(err.r#ref, r, "{text}");
            assert_eq!(err.code, codes::BAD_FRAME);
        }
    }

    #[test]
    fn relay_frames_are_valid_json() {
        let u = UserId::new(2).unwrap();
        let t = ThreadId::new(12).unwrap();
        for s in [
            ready(u, 5),
            ok(Some(1)),
            ok(None),
            pong(Some(-2)),
            error(Some(1), "x", "a \"q\"\n"),
            unsub(t),
            ev(r#"{"v":1}"#),
            ev_from(t, u, r#"{"v":1}"#),
        ] {
            let f: ServerFrame = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(!f.op.is_empty());
        }
        assert_eq!(ok(None), r#"{"op":"ok"}"#);
        assert_eq!(ev_from(t, u, "{}"), r#"{"op":"ev","thread":12,"from":2,"e":{}}"#);
    }
}
