//! One adapter per server: how a client connects and authenticates, how it
//! answers the server's application-level pings, and how the publisher
//! addresses an event to a set of users, each in that server's own protocol.
//!
//! Every server carries the same payload bytes: a real bm-relay envelope
//! (AES-256-GCM sealed by `bm_proto`), whose event id `b<seq>` lets any
//! client find the publish time of what it received without opening it.
//!
//! | server | connect | auth | per-user routing | publish |
//! |---|---|---|---|---|
//! | bm-relay | `/v1/ws` | `auth` frame, HS256 token | `to` list | signed `POST /v1/push` |
//! | Centrifugo v6 | `/connection/websocket` | JWT in `connect`, channel `u<id>` in its `channels` claim (server-side subscription) | channel per user | `POST /api/broadcast` with API key |
//! | Nchan | `/sub/u<id>` | none (Nchan has no token check of its own) | channel per user | `POST /pub?c=u1,u2,…` (multiplexed, channel list ≤ 1000 characters; longer is refused with 403) |
//! | socket.io 4 | `/socket.io/?EIO=4&transport=websocket` | bm-relay token in the `auth` packet, checked by middleware | room per user | `POST /emit` → `io.to(rooms).emit` |

use std::net::SocketAddr;

use bm_proto::token::Claims;
use bm_proto::{b64, signing, Envelope, EventId, KeyId, Payload, SiteId, SiteSecret, ThreadId, UserId};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::http::Request;

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// bm-relay (this project).
    Relay,
    /// Centrifugo v6.
    Centrifugo,
    /// Nginx + Nchan.
    Nchan,
    /// socket.io 4 on Node.js.
    Socketio,
}

impl Kind {
    /// Every kind, bm-relay first (the ratio column is against it).
    pub const ALL: [Kind; 4] = [Kind::Relay, Kind::Centrifugo, Kind::Nchan, Kind::Socketio];

    /// Short name used in file names and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Relay => "relay",
            Kind::Centrifugo => "centrifugo",
            Kind::Nchan => "nchan",
            Kind::Socketio => "socketio",
        }
    }

    /// Human name for tables.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Relay => "bm-relay",
            Kind::Centrifugo => "Centrifugo",
            Kind::Nchan => "Nchan",
            Kind::Socketio => "socket.io",
        }
    }

    /// The loopback port the bench starts it on.
    pub fn port(self) -> u16 {
        match self {
            Kind::Relay => 18787,
            Kind::Centrifugo => 18800,
            Kind::Nchan => 18810,
            Kind::Socketio => 18820,
        }
    }

    /// Largest number of users one publish request may address.
    pub fn max_batch(self) -> usize {
        match self {
            Kind::Relay => 10_000,
            Kind::Centrifugo => 10_000,
            Kind::Nchan => 200,
            Kind::Socketio => 10_000,
        }
    }
}

/// Site id used for every bm-relay token and envelope.
pub const SITE: &str = "bench.local";
/// Longest channel list Nchan accepts in one publish (measured: 1019
/// characters pass, 1079 are refused with 403).
pub const NCHAN_MAX_IDS_LEN: usize = 1000;
/// Centrifugo's HTTP API key (loopback only, throwaway).
pub const CENTRIFUGO_API_KEY: &str = "bench-api-key";

/// What a client does with a text frame during the handshake or later.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do.
    Nothing,
    /// Send this text frame back.
    Reply(String),
    /// Authenticated; deliveries may follow.
    Ready,
    /// The server refused the client.
    Refused(String),
}

/// Keys and addresses shared by every client and publisher of one run.
pub struct Ctx {
    /// Which server.
    pub kind: Kind,
    /// Its address.
    pub addr: SocketAddr,
    /// The bm-relay site.
    pub site: SiteId,
    /// Derived from the site secret once: the relay gets only this key.
    relay_key: bm_proto::RelayKey,
    /// Seals envelopes; never leaves the load generator (as on a WordPress site).
    content_key: bm_proto::ContentKey,
    payload_pad: String,
}

type HmacSha256 = Hmac<Sha256>;

/// Current unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Ctx {
    /// A context for `kind` with the given site secret.
    pub fn new(kind: Kind, secret: SiteSecret) -> Result<Self, bm_proto::IdError> {
        Ok(Ctx {
            kind,
            addr: SocketAddr::from(([127, 0, 0, 1], kind.port())),
            site: SiteId::new(SITE)?,
            relay_key: secret.relay_key(),
            content_key: secret.content_key(),
            payload_pad: "x".repeat(80),
        })
    }

    /// The same context for a node listening on `addr` (the cluster
    /// scenario runs two nodes of one kind on ports picked at run time).
    pub fn at(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The HTTP path of the WebSocket endpoint for `user`.
    pub fn ws_path(&self, user: u64) -> String {
        match self.kind {
            Kind::Relay => "/v1/ws".into(),
            Kind::Centrifugo => "/connection/websocket".into(),
            Kind::Nchan => format!("/sub/u{user}"),
            Kind::Socketio => "/socket.io/?EIO=4&transport=websocket".into(),
        }
    }

    /// The bm-relay connection token of `user` (also checked by the socket.io peer).
    pub fn relay_token(&self, user: u64) -> String {
        let uid = UserId::new(user).unwrap_or_else(|_| UserId::new(1).expect("1 is a valid user id"));
        Claims::connection(self.site.clone(), uid, unix_now(), 3600).mint(&self.relay_key)
    }

    /// A bm-relay thread token of `user` for `thread` (what `sub` needs).
    pub fn thread_token(&self, user: u64, thread: u64) -> String {
        let uid = UserId::new(user).unwrap_or_else(|_| UserId::new(1).expect("1 is a valid user id"));
        let t = ThreadId::new(thread.max(1)).expect("thread ids start at 1");
        Claims::thread(self.site.clone(), uid, t, unix_now(), 3600).mint(&self.relay_key)
    }

    /// A signed bm-relay `POST /v1/push` of one event to the sockets of
    /// `to` and, with `thread`, to that thread's subscribers (each socket once).
    pub fn relay_push(&self, to: &[u64], thread: Option<u64>, envelope: &str) -> Request {
        let mut list = String::with_capacity(to.len() * 8);
        for (i, u) in to.iter().enumerate() {
            if i > 0 {
                list.push(',');
            }
            list.push_str(&u.to_string());
        }
        let thread = thread.map(|t| format!(r#","thread":{t}"#)).unwrap_or_default();
        let body = format!(r#"{{"events":[{{"to":[{list}]{thread},"e":{envelope}}}]}}"#);
        let ts = unix_now();
        let sig = signing::sign(&self.relay_key, ts, &self.site, "POST", "/v1/push", body.as_bytes());
        Request::post(
            &self.addr,
            "/v1/push",
            &[("X-BM-Site", self.site.to_string()), ("X-BM-Timestamp", ts.to_string()), ("X-BM-Signature", sig)],
            "application/json",
            body.as_bytes(),
        )
    }

    /// A Centrifugo connection JWT for `user` with the server-side
    /// subscription to its personal channel `u<user>`. Centrifugo is
    /// configured with the relay key (b64u text) as its HMAC secret.
    pub fn centrifugo_token(&self, user: u64) -> String {
        let header = b64::encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims =
            serde_json::json!({"sub": user.to_string(), "exp": unix_now() + 3600, "channels": [format!("u{user}")]});
        let mut t = format!("{header}.{}", b64::encode(claims.to_string()));
        let mut m = HmacSha256::new_from_slice(self.relay_key.to_b64().as_bytes()).expect("HMAC takes any key length");
        m.update(t.as_bytes());
        t.push('.');
        t.push_str(&b64::encode(m.finalize().into_bytes()));
        t
    }

    /// Frame to send right after the upgrade, if the protocol starts with the client.
    pub fn hello(&self, user: u64) -> Option<String> {
        match self.kind {
            Kind::Relay => Some(format!(r#"{{"op":"auth","token":"{}"}}"#, self.relay_token(user))),
            Kind::Centrifugo => {
                Some(format!(r#"{{"id":1,"connect":{{"token":"{}","name":"bm-bench"}}}}"#, self.centrifugo_token(user)))
            }
            Kind::Nchan | Kind::Socketio => None,
        }
    }

    /// Whether a client is ready as soon as the upgrade succeeds.
    pub fn ready_on_upgrade(&self) -> bool {
        self.kind == Kind::Nchan
    }

    /// What to do with a text frame. `ready` tells whether the handshake is done.
    pub fn on_text(&self, user: u64, text: &str, ready: bool) -> Step {
        match self.kind {
            Kind::Relay => {
                if !ready {
                    if text.starts_with(r#"{"op":"ready""#) {
                        return Step::Ready;
                    }
                    if text.starts_with(r#"{"op":"error""#) {
                        return Step::Refused(text.chars().take(200).collect());
                    }
                }
                Step::Nothing
            }
            Kind::Centrifugo => {
                // Centrifugo may put several replies in one frame, one per line.
                if text == "{}" {
                    return Step::Reply("{}".into());
                }
                if !ready {
                    if text.contains(r#""connect":"#) {
                        return Step::Ready;
                    }
                    if text.contains(r#""error":"#) {
                        return Step::Refused(text.chars().take(200).collect());
                    }
                }
                Step::Nothing
            }
            Kind::Nchan => Step::Nothing,
            Kind::Socketio => {
                // Engine.IO v4 packets: 0 open, 2 ping, 4x socket.io packets.
                if text == "2" {
                    return Step::Reply("3".into());
                }
                if text.starts_with('0') {
                    return Step::Reply(format!(r#"40{{"token":"{}"}}"#, self.relay_token(user)));
                }
                if !ready && text.starts_with("40") {
                    return Step::Ready;
                }
                if text.starts_with("44") {
                    return Step::Refused(text.chars().take(200).collect());
                }
                Step::Nothing
            }
        }
    }

    /// A real sealed envelope with event id `b<seq>`, ~200 bytes as JSON.
    pub fn envelope(&self, seq: u64, thread: u64) -> String {
        let id = EventId::new(format!("b{seq}")).expect("b<digits> is a valid event id");
        let t = ThreadId::new(thread.max(1)).expect("thread ids start at 1");
        let k = KeyId::Thread { thread: t, epoch: bm_proto::Epoch(0) };
        let key = self.content_key.key_for(k);
        let payload = Payload {
            kind: "message.new".into(),
            data: serde_json::json!({"thread": thread, "text": self.payload_pad}),
        };
        Envelope::seal_payload(&self.site, &key, id, &payload).to_json()
    }

    /// The publish requests that deliver `envelope` to every socket of `users`.
    pub fn publish(&self, users: &[u64], envelope: &str) -> Vec<Request> {
        if self.kind != Kind::Nchan {
            return users.chunks(self.kind.max_batch()).map(|chunk| self.publish_one(chunk, envelope)).collect();
        }
        // Nchan refuses (403) a channel list longer than about 1 KiB.
        let mut out = Vec::new();
        let (mut start, mut len) = (0, 0);
        for (i, u) in users.iter().enumerate() {
            let l = 2 + u.to_string().len();
            if i > start && (len + l > NCHAN_MAX_IDS_LEN || i - start >= self.kind.max_batch()) {
                out.push(self.publish_one(&users[start..i], envelope));
                start = i;
                len = 0;
            }
            len += l;
        }
        if start < users.len() {
            out.push(self.publish_one(&users[start..], envelope));
        }
        out
    }

    fn publish_one(&self, users: &[u64], envelope: &str) -> Request {
        let list = |prefix: &str, quote: bool| {
            let mut s = String::with_capacity(users.len() * 8);
            for (i, u) in users.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                if quote {
                    s.push('"');
                }
                s.push_str(prefix);
                s.push_str(&u.to_string());
                if quote {
                    s.push('"');
                }
            }
            s
        };
        match self.kind {
            Kind::Relay => self.relay_push(users, None, envelope),
            Kind::Centrifugo => {
                let body = format!(r#"{{"channels":[{}],"data":{envelope}}}"#, list("u", true));
                Request::post(
                    &self.addr,
                    "/api/broadcast",
                    &[("X-API-Key", CENTRIFUGO_API_KEY.into())],
                    "application/json",
                    body.as_bytes(),
                )
            }
            Kind::Nchan => {
                let path = format!("/pub?c={}", list("u", false));
                Request::post(&self.addr, &path, &[], "application/json", envelope.as_bytes())
            }
            Kind::Socketio => {
                let body = format!(r#"{{"rooms":[{}],"data":{envelope}}}"#, list("u", true));
                Request::post(&self.addr, "/emit", &[], "application/json", body.as_bytes())
            }
        }
    }

    /// Checks a publish reply body for an error the server reported with a 2xx status.
    pub fn reply_error(&self, body: &[u8]) -> Option<String> {
        if self.kind == Kind::Centrifugo {
            let text = String::from_utf8_lossy(body);
            if text.contains(r#""error""#) {
                return Some(text.chars().take(200).collect());
            }
        }
        None
    }
}

/// Calls `f(seq)` for every `"id":"b<seq>"` in a received frame (a frame may
/// carry several events, e.g. Centrifugo's newline-batched replies).
pub fn for_each_event_id(text: &str, mut f: impl FnMut(u64)) {
    const PAT: &str = "\"id\":\"b";
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(p) = text[from..].find(PAT) {
        let mut i = from + p + PAT.len();
        let mut v: u64 = 0;
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            v = v.wrapping_mul(10).wrapping_add(u64::from(bytes[i] - b'0'));
            i += 1;
        }
        if i > start {
            f(v);
        }
        from = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SiteSecret {
        SiteSecret::from_b64("IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM0").unwrap()
    }

    fn ctx(kind: Kind) -> Ctx {
        Ctx::new(kind, secret()).unwrap()
    }

    #[test]
    fn envelope_is_real_and_carries_the_sequence() {
        let c = ctx(Kind::Relay);
        let json = c.envelope(42, 7);
        let env = Envelope::parse(&json, 65536).unwrap();
        let key = secret().content_key().thread_key(ThreadId::new(7).unwrap(), bm_proto::Epoch(0));
        let p = env.open_payload(&c.site, &key, 65536).unwrap();
        assert_eq!(p.kind, "message.new");
        let mut seen = vec![];
        for_each_event_id(&format!(r#"{{"op":"ev","e":{json}}}"#), |s| seen.push(s));
        assert_eq!(seen, vec![42]);
    }

    #[test]
    fn event_ids_in_batched_frames() {
        let mut seen = vec![];
        for_each_event_id("{\"push\":{\"pub\":{\"data\":{\"id\":\"b1\"}}}}\n{\"id\":2}\n{\"id\":\"b23\"}", |s| {
            seen.push(s)
        });
        assert_eq!(seen, vec![1, 23]);
    }

    #[test]
    fn relay_push_is_signed_and_verifies() {
        let c = ctx(Kind::Relay);
        let env = c.envelope(1, 1);
        let reqs = c.publish(&[1, 2, 3], &env);
        assert_eq!(reqs.len(), 1);
        let text = String::from_utf8(reqs[0].bytes.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let ts = head.lines().find_map(|l| l.strip_prefix("X-BM-Timestamp: ")).unwrap();
        let sig = head.lines().find_map(|l| l.strip_prefix("X-BM-Signature: ")).unwrap();
        signing::verify(&secret().relay_key(), ts, sig, &c.site, "POST", "/v1/push", body.as_bytes(), unix_now(), 60)
            .unwrap();
        let parsed = bm_proto::api::PushRequest::parse(body, &bm_proto::api::Limits::default());
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn relay_thread_push_verifies_and_thread_token_is_a_thread_token() {
        let c = ctx(Kind::Relay);
        let req = c.relay_push(&[], Some(4), &c.envelope(2, 4));
        let text = String::from_utf8(req.bytes).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        let parsed = bm_proto::api::PushRequest::parse(body, &bm_proto::api::Limits::default()).unwrap();
        assert_eq!(parsed[0].thread, Some(ThreadId::new(4).unwrap()));
        assert!(parsed[0].to.is_empty());
        let key = secret().relay_key();
        let claims =
            bm_proto::token::verify(&c.thread_token(3, 4), bm_proto::token::TokenKind::Thread, unix_now(), |_| {
                Some(&key)
            });
        assert!(claims.is_ok(), "{claims:?}");
    }

    #[test]
    fn nchan_splits_into_multiplexed_batches() {
        let c = ctx(Kind::Nchan);
        let users: Vec<u64> = (1..=2000).collect();
        let reqs = c.publish(&users, "{}");
        let mut all = Vec::new();
        for r in &reqs {
            let text = String::from_utf8_lossy(&r.bytes).to_string();
            let list = text.strip_prefix("POST /pub?c=").unwrap().split(' ').next().unwrap().to_owned();
            assert!(list.len() <= NCHAN_MAX_IDS_LEN, "{} chars", list.len());
            all.extend(list.split(',').map(|c| c[1..].parse::<u64>().unwrap()));
        }
        assert_eq!(all, users, "every user once, in order");
        assert!(reqs.len() >= 10);
    }

    #[test]
    fn socketio_handshake_steps() {
        let c = ctx(Kind::Socketio);
        assert!(matches!(c.on_text(5, r#"0{"sid":"x"}"#, false), Step::Reply(s) if s.starts_with("40{\"token\":")));
        assert_eq!(c.on_text(5, r#"40{"sid":"y"}"#, false), Step::Ready);
        assert_eq!(c.on_text(5, "2", true), Step::Reply("3".into()));
        assert!(matches!(c.on_text(5, r#"44{"message":"no"}"#, false), Step::Refused(_)));
    }

    #[test]
    fn centrifugo_token_has_the_personal_channel() {
        let c = ctx(Kind::Centrifugo);
        let t = c.centrifugo_token(9);
        let claims = String::from_utf8(b64::decode(t.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert!(claims.contains(r#""channels":["u9"]"#), "{claims}");
        assert!(claims.contains(r#""sub":"9""#));
    }
}
