//! Pseudonyms (protocol §3.2): the user and thread ids of protocol v2.
//!
//! In v2 every user or thread id the relay sees (push `to` and `thread`,
//! presence and disconnect lists, token `sub` and `thread`, `from` on pub
//! frames, the ids inside key ids) is a pseudonym that only WordPress, which
//! holds the [`PseudonymKey`], can link back to a person or a thread:
//!
//! ```text
//! pseudonym(kind, id) = 1 + BE64(HMAC-SHA256(pseudonym_key, "{kind}/{id}")[0..8]) mod (2^53 − 1)
//! ```
//!
//! A pseudonym is an id like any other (1 … 2^53−1, exact in a JavaScript
//! number), so the relay's routing, the cluster and the key hierarchy work
//! on them unchanged. Two ids of a kind may share a pseudonym with
//! probability ≈ n²/2^54 for n ids (5·10⁻⁵ at a million users): the cost
//! is an event delivered to a socket that cannot open it (keys differ) and
//! a presence answer WordPress maps to both; never content.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::{ThreadId, UserId, MAX_ID};
use crate::keys::PseudonymKey;

impl PseudonymKey {
    /// The v2 pseudonym of a user id.
    pub fn user(&self, user: UserId) -> UserId {
        self.prepared().user(user)
    }

    /// The v2 pseudonym of a thread id.
    pub fn thread(&self, thread: ThreadId) -> ThreadId {
        self.prepared().thread(thread)
    }

    /// The key with its HMAC key schedule done once (the padded key's two
    /// SHA-256 blocks), for a caller that maps many ids: each pseudonym then
    /// costs the message's two compressions instead of four.
    pub fn prepared(&self) -> Pseudonyms {
        Pseudonyms {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(self.as_bytes()).expect("HMAC takes a key of any length"),
        }
    }
}

/// A [`PseudonymKey`] ready to map ids: the keyed HMAC state, cloned per
/// id. It is as secret as the key (it is derived from it); it prints as
/// `<redacted>`.
#[derive(Clone)]
pub struct Pseudonyms {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms(<redacted>)")
    }
}

impl Pseudonyms {
    /// The v2 pseudonym of a user id.
    pub fn user(&self, user: UserId) -> UserId {
        UserId::new(self.pseudonym("user", user.get())).expect("a pseudonym is within 1..=MAX_ID")
    }

    /// The v2 pseudonym of a thread id.
    pub fn thread(&self, thread: ThreadId) -> ThreadId {
        ThreadId::new(self.pseudonym("thread", thread.get())).expect("a pseudonym is within 1..=MAX_ID")
    }

    fn pseudonym(&self, kind: &str, id: u64) -> u64 {
        let mut mac = self.mac.clone();
        mac.update(kind.as_bytes());
        mac.update(b"/");
        let mut buf = [0u8; 20];
        mac.update(decimal(id, &mut buf));
        let tag = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag[..8]);
        // The modulus bias (2^64 mod (2^53−1) over 2^64) is below 2^-52.
        1 + u64::from_be_bytes(first) % MAX_ID
    }
}

/// `id` in decimal, written into `buf` (no allocation: this runs once per
/// id a v2 push maps).
fn decimal(mut id: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (id % 10) as u8;
        id /= 10;
        if id == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SiteSecret;

    #[test]
    fn pseudonyms_are_stable_distinct_per_kind_and_in_range() {
        let key = SiteSecret::from_bytes([7; 32]).pseudonym_key();
        let u = UserId::new(42).unwrap();
        let t = ThreadId::new(42).unwrap();
        assert_eq!(key.user(u), key.user(u), "a function of the id");
        assert_ne!(key.user(u).get(), key.thread(t).get(), "user 42 and thread 42 differ");
        assert_ne!(key.user(u), u);
        let other = SiteSecret::from_bytes([8; 32]).pseudonym_key();
        assert_ne!(key.user(u), other.user(u), "another site, another pseudonym");
        for id in [1, 2, MAX_ID] {
            let p = key.user(UserId::new(id).unwrap()).get();
            assert!((1..=MAX_ID).contains(&p));
        }
    }

    #[test]
    fn prepared_equals_one_shot_and_decimals_are_canonical() {
        let key = SiteSecret::from_bytes([7; 32]).pseudonym_key();
        let prepared = key.prepared();
        for id in [1, 9, 10, 99, 100, 123_456_789, MAX_ID] {
            assert_eq!(decimal(id, &mut [0; 20]), id.to_string().as_bytes());
            let u = UserId::new(id).unwrap();
            assert_eq!(prepared.user(u), key.user(u));
            assert_eq!(prepared.thread(ThreadId::new(id).unwrap()), key.thread(ThreadId::new(id).unwrap()));
        }
        assert!(!format!("{prepared:?}").contains(&key.to_b64()));
    }

    #[test]
    fn the_key_prints_redacted() {
        let key = SiteSecret::from_bytes([7; 32]).pseudonym_key();
        assert!(!format!("{key:?}").contains(&key.to_b64()));
    }
}
