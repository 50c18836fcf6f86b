//! What crosses NATS between relays: subjects, messages, and their MAC.
//!
//! A message is `tag (32 bytes) ‖ header JSON ‖ '\n' ‖ body`. The body is
//! a complete WebSocket frame (the sealed envelope, as the sockets get it)
//! for deliveries and pubs, empty otherwise. The tag is
//! HMAC-SHA256(cluster key, subject ‖ 0 ‖ header ‖ '\n' ‖ body), the
//! cluster key an HMAC of every configured (site, relay key) pair: anyone
//! who can publish on the NATS server but holds no relay key cannot inject
//! a delivery, a disconnect or presence, nor move a message to another
//! subject. Ids and counts only: no token, no key, no plaintext.

use bm_proto::{SiteId, ThreadId, UserId};
use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::Config;

type HmacSha256 = Hmac<Sha256>;

/// Subject prefix of every cluster message.
pub const PREFIX: &str = "bmr";
/// Presence deltas, heartbeats, disconnects: every node listens.
pub fn all() -> String {
    format!("{PREFIX}.all")
}
/// Deliveries and pubs for one node; also where a snapshot is sent.
pub fn node(name: &str) -> String {
    format!("{PREFIX}.node.{name}")
}
/// Acknowledgements of a node's presence deltas.
pub fn ack(name: &str) -> String {
    format!("{PREFIX}.ack.{name}")
}
/// Snapshot requests, in a queue group: exactly one peer answers.
pub fn snap() -> String {
    format!("{PREFIX}.snap")
}
/// The queue group of [`snap`].
pub const SNAP_GROUP: &str = "bmr-snap";

/// The key that authenticates cluster messages, derived from the relay
/// keys (every node is configured with the same sites and keys).
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    /// HMAC-SHA256("bm-relay cluster v1", sorted (site, relay key) pairs).
    pub fn derive(cfg: &Config) -> ClusterKey {
        let mut sites: Vec<_> = cfg.sites.iter().collect();
        sites.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut m = <HmacSha256 as Mac>::new_from_slice(b"bm-relay cluster v1").expect("HMAC takes any key length");
        for (site, key) in sites {
            m.update(&(site.as_str().len() as u32).to_be_bytes());
            m.update(site.as_str().as_bytes());
            m.update(key.as_bytes());
        }
        ClusterKey(m.finalize().into_bytes().into())
    }

    fn mac(&self, subject: &str, rest: &[u8]) -> HmacSha256 {
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(subject.as_bytes());
        m.update(&[0]);
        m.update(rest);
        m
    }
}

/// One presence entry: a user's sockets or a thread's subscribers on one
/// node, as an absolute count (0: gone), so that applying it twice or
/// late does no harm.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry(pub String, pub char, pub u64, pub u32);

/// One thread membership entry: (site, thread, user, that user's sockets
/// subscribed to the thread on the node), absolute (0: none), like
/// [`Entry`]. What a client's `presence` op reads for other nodes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member(pub String, pub u64, pub u64, pub u32);

/// The header of a cluster message (docs/PROTOCOL.md §7.1). Ids travel as
/// plain numbers and strings and are validated on receipt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t")]
pub enum Msg {
    /// Deliver the body to these users' sockets and the thread's
    /// subscribers on the receiving node (`/v1/push`).
    #[serde(rename = "dlv")]
    Deliver {
        /// Site id.
        site: String,
        /// Recipients (with a thread: all of the push's recipients).
        to: Vec<u64>,
        /// Thread whose subscribers also get it.
        thread: Option<u64>,
    },
    /// A client `pub`: deliver the body to the thread's subscribers.
    #[serde(rename = "pub")]
    Publish {
        /// Site id.
        site: String,
        /// Thread id.
        thread: u64,
    },
    /// A `/v1/disconnect`: record the revocation, close or unsubscribe.
    #[serde(rename = "dis")]
    Disconnect {
        /// Site id.
        site: String,
        /// Users revoked.
        users: Vec<u64>,
        /// Only this thread's subscriptions, if given.
        thread: Option<u64>,
        /// The request's signed time (WordPress's clock).
        at: u64,
    },
    /// A node's presence changes since its previous delta (`seq - 1`), or
    /// with `reset` its whole state (the first chunk clears the old one).
    #[serde(rename = "dlt")]
    Delta {
        /// The node whose presence this is.
        node: String,
        /// That node's epoch (random per process start).
        epoch: u64,
        /// That node's delta counter.
        seq: u64,
        /// A whole state: replace what is held for the node.
        reset: bool,
        /// Receivers acknowledge it (a socket's `ready` waits for that).
        ack: bool,
        /// Absolute counts (0: gone).
        e: Vec<Entry>,
        /// Thread memberships, absolute counts (0: gone). Absent when
        /// empty, and ignored by a node that predates it (it then answers
        /// a `presence` op from its own sockets and the others it knows).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        m: Vec<Member>,
    },
    /// Liveness, and the last delta seq, so a gap is noticed.
    #[serde(rename = "hb")]
    Heartbeat {
        /// Sender.
        node: String,
        /// Sender's epoch.
        epoch: u64,
        /// Sender's last delta seq.
        seq: u64,
    },
    /// Asks `node` to republish its whole state (coalesced, rate-limited).
    #[serde(rename = "want")]
    Want {
        /// The node asked.
        node: String,
    },
    /// A node applied `node`'s deltas up to `seq`.
    #[serde(rename = "ack")]
    Ack {
        /// The acknowledging node.
        node: String,
        /// The delta acknowledged.
        seq: u64,
    },
    /// A joining node asks one peer for presence and revocations; a node
    /// back from a NATS outage asks for revocations only (presence comes
    /// from every node republishing its own state once).
    #[serde(rename = "snapreq")]
    SnapRequest {
        /// The asking node (answers go to its subject).
        node: String,
        /// Revocations only, no presence.
        #[serde(default)]
        revocations_only: bool,
    },
    /// Revocation records copied to a joining node.
    #[serde(rename = "rev")]
    Revocations {
        /// Site id.
        site: String,
        /// The site's floor (every token issued at or before is refused).
        floor: u64,
        /// (user, thread, time) records.
        r: Vec<(u64, Option<u64>, u64)>,
    },
    /// The end of a snapshot.
    #[serde(rename = "snapdone")]
    SnapDone {
        /// The answering node.
        from: String,
    },
}

/// Why a cluster message was dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than a tag and a header.
    #[error("truncated message")]
    Truncated,
    /// The tag does not match (no relay key, another key set, or altered).
    #[error("bad MAC (not from a relay with the same keys)")]
    BadMac,
    /// The header is not a known message.
    #[error("malformed header: {0}")]
    Header(String),
    /// An id is out of range.
    #[error("bad id in a cluster message")]
    BadId,
    /// The body is not one complete text frame.
    #[error("malformed frame in a cluster message")]
    BadFrame,
}

/// Encodes a message for `subject`.
pub fn encode(key: &ClusterKey, subject: &str, msg: &Msg, body: &[u8]) -> Bytes {
    let header = serde_json::to_vec(msg).expect("cluster headers serialize");
    let mut rest = BytesMut::with_capacity(32 + header.len() + 1 + body.len());
    rest.put_bytes(0, 32);
    rest.put_slice(&header);
    rest.put_u8(b'\n');
    rest.put_slice(body);
    let tag = key.mac(subject, &rest[32..]).finalize().into_bytes();
    rest[..32].copy_from_slice(&tag);
    rest.freeze()
}

/// Checks the tag and parses the header; returns it and the body.
pub fn decode(keys: &[ClusterKey], subject: &str, payload: &Bytes) -> Result<(Msg, Bytes), WireError> {
    if payload.len() < 34 {
        return Err(WireError::Truncated);
    }
    let (tag, rest) = payload.split_at(32);
    if !keys.iter().any(|k| k.mac(subject, rest).verify_slice(tag).is_ok()) {
        return Err(WireError::BadMac);
    }
    let nl = rest.iter().position(|b| *b == b'\n').ok_or(WireError::Truncated)?;
    let msg: Msg = serde_json::from_slice(&rest[..nl]).map_err(|e| WireError::Header(e.to_string()))?;
    Ok((msg, payload.slice(32 + nl + 1..)))
}

/// A site id from a message.
pub fn site(s: &str) -> Result<SiteId, WireError> {
    SiteId::new(s).map_err(|_| WireError::BadId)
}
/// A user id from a message.
pub fn user(n: u64) -> Result<UserId, WireError> {
    UserId::new(n).map_err(|_| WireError::BadId)
}
/// A thread id from a message.
pub fn thread(n: u64) -> Result<ThreadId, WireError> {
    ThreadId::new(n).map_err(|_| WireError::BadId)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ClusterKey {
        ClusterKey([b; 32])
    }

    /// A frame from another node is taken only whole and well-formed.
    #[test]
    fn frames_from_peers_are_checked() {
        use crate::frame::Frame;
        for n in [0, 5, 125, 126, 300, 70_000] {
            let f = Frame::text(&"x".repeat(n));
            assert_eq!(Frame::from_encoded(f.bytes().clone()).as_ref(), Some(&f), "{n}");
            let b = f.bytes();
            assert!(Frame::from_encoded(b.slice(..b.len() - 1)).is_none(), "truncated {n}");
        }
        assert!(Frame::from_encoded(Bytes::from_static(b"\x82\x01x")).is_none(), "binary");
        assert!(Frame::from_encoded(Bytes::from_static(b"\x81\x81xxxxx")).is_none(), "masked");
        assert!(Frame::from_encoded(Bytes::from_static(b"\x81\x02x\xff")).is_none(), "not UTF-8");
        assert!(Frame::from_encoded(Bytes::from_static(b"\x81\x01xy")).is_none(), "two frames");
        assert!(Frame::from_encoded(Bytes::from_static(b"\x81")).is_none());
    }

    #[test]
    fn round_trip_and_tamper() {
        let m = Msg::Deliver { site: "s".into(), to: vec![1, 2], thread: Some(3) };
        let b = encode(&key(1), "bmr.node.a", &m, b"\x81\x01x");
        let (back, body) = decode(&[key(1)], "bmr.node.a", &b).unwrap();
        assert_eq!((back, &body[..]), (m, &b"\x81\x01x"[..]));
        assert_eq!(decode(&[key(2)], "bmr.node.a", &b).unwrap_err(), WireError::BadMac);
        assert_eq!(decode(&[key(1)], "bmr.node.b", &b).unwrap_err(), WireError::BadMac, "bound to its subject");
        let mut t = b.to_vec();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(decode(&[key(1)], "bmr.node.a", &Bytes::from(t)).unwrap_err(), WireError::BadMac);
        assert_eq!(decode(&[key(1)], "x", &Bytes::from_static(b"short")).unwrap_err(), WireError::Truncated);
    }
}
