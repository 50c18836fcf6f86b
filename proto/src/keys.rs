//! The key hierarchy (protocol §3).
//!
//! ```text
//! site_secret ──HKDF "relay"──▶ relay_key    (WordPress + relay: signs pushes and tokens)
//!             ├─HKDF "pseudonym"▶ pseudonym_key (WordPress only: ids → v2 pseudonyms)
//!             └─HKDF "content"─▶ content_key (WordPress only)
//!                                 ├─HKDF "thread/{t}/{e}"─▶ thread key (members' browsers)
//!                                 └─HKDF "user/{u}"───────▶ user key   (that user's browsers)
//! ```
//!
//! HKDF-SHA256 with salt `bm-relay/v1`, 32-byte outputs. The relay is given
//! only the relay key, from which nothing below `content_key` can be
//! derived, so a breach of the relay exposes no content.
//!
//! Every key type zeroizes its bytes on drop and prints as `<redacted>` in
//! `Debug`, so a stray `{:?}` in a log line or a panic message leaks nothing.
//! The only way to get the text of a key is an explicitly named method
//! (`to_b64`).

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::b64;
use crate::ids::{Epoch, KeyId, ThreadId, UserId};

/// HKDF salt for every derivation in protocol v1.
pub const HKDF_SALT: &[u8] = b"bm-relay/v1";

/// Length of every key in the hierarchy.
pub const KEY_LEN: usize = 32;

/// A key could not be read. Never contains any of the key's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base64url, or not 32 bytes once decoded.
    #[error("{what} must be 32 bytes written as base64url without padding (43 characters)")]
    Malformed { what: &'static str },
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Panics
/// Only if the OS has no randomness to give, in which case no key or nonce
/// could be made safely anyway.
pub fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source failed");
}

fn hkdf32(ikm: &[u8], info: &[u8]) -> [u8; KEY_LEN] {
    let mut okm = [0u8; KEY_LEN];
    Hkdf::<Sha256>::new(Some(HKDF_SALT), ikm)
        .expand(info, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
        pub struct $name([u8; KEY_LEN]);

        impl $name {
            /// Reads the base64url text form (43 characters).
            pub fn from_b64(text: &str) -> Result<Self, KeyError> {
                b64::decode_array::<KEY_LEN>(text.trim().as_bytes())
                    .map(Self)
                    .ok_or(KeyError::Malformed { what: $what })
            }

            /// Wraps raw key bytes.
            pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                Self(bytes)
            }

            /// The base64url text form. Named so that every place that
            /// reveals a key is easy to find.
            pub fn to_b64(&self) -> String {
                b64::encode(self.0)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret_key!(
    /// The site secret: 32 random bytes, the root of every key of one site.
    /// Lives only on the WordPress side.
    SiteSecret,
    "site secret"
);
secret_key!(
    /// Signs server API requests and client tokens; the only key the relay has.
    RelayKey,
    "relay key"
);
secret_key!(
    /// Root of every content key; WordPress only.
    ContentKey,
    "content key"
);
secret_key!(
    /// Turns user and thread ids into the pseudonyms of protocol v2
    /// (`crate::pseudonym`); WordPress only, so only WordPress can link a
    /// pseudonym to a person or a thread.
    PseudonymKey,
    "pseudonym key"
);

impl SiteSecret {
    /// A new random site secret.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        fill_random(&mut bytes);
        Self(bytes)
    }

    /// The site secret of one blog of a WordPress network:
    /// `HKDF(network_secret, "blog/{blog}")` (protocol §3.1). `blog` is the
    /// blog id, 1 … 2^53−1, written as a canonical decimal; `None` outside
    /// that range. Each blog then derives its own relay and content keys,
    /// so blogs share no key and each is its own site on the relay.
    pub fn blog_secret(&self, blog: u64) -> Option<SiteSecret> {
        if !(1..=crate::ids::MAX_ID).contains(&blog) {
            return None;
        }
        Some(SiteSecret(hkdf32(&self.0, format!("blog/{blog}").as_bytes())))
    }

    /// `HKDF(site_secret, "relay")`.
    pub fn relay_key(&self) -> RelayKey {
        RelayKey(hkdf32(&self.0, b"relay"))
    }

    /// `HKDF(site_secret, "content")`.
    pub fn content_key(&self) -> ContentKey {
        ContentKey(hkdf32(&self.0, b"content"))
    }

    /// `HKDF(site_secret, "pseudonym")` (protocol §3.2).
    pub fn pseudonym_key(&self) -> PseudonymKey {
        PseudonymKey(hkdf32(&self.0, b"pseudonym"))
    }
}

impl ContentKey {
    /// The key named by `id`, derived from this content key.
    pub fn key_for(&self, id: KeyId) -> EnvelopeKey {
        EnvelopeKey { id, key: hkdf32(&self.0, id.hkdf_info().as_bytes()) }
    }

    /// Thread key `t/{thread}/{epoch}`.
    pub fn thread_key(&self, thread: ThreadId, epoch: Epoch) -> EnvelopeKey {
        self.key_for(KeyId::Thread { thread, epoch })
    }

    /// User key `u/{user}`.
    pub fn user_key(&self, user: UserId) -> EnvelopeKey {
        self.key_for(KeyId::User(user))
    }
}

/// A content-encryption key together with its id. Keeping the two together
/// means an envelope can never be sealed under one key while claiming
/// another in its `k` (and so in its AAD).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct EnvelopeKey {
    #[zeroize(skip)]
    id: KeyId,
    key: [u8; KEY_LEN],
}

impl EnvelopeKey {
    /// A key received in text form (a browser's view), with its id.
    pub fn from_b64(id: KeyId, text: &str) -> Result<Self, KeyError> {
        let key =
            b64::decode_array::<KEY_LEN>(text.trim().as_bytes()).ok_or(KeyError::Malformed { what: "envelope key" })?;
        Ok(Self { id, key })
    }

    /// Which key this is.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The base64url form handed to browsers.
    pub fn to_b64(&self) -> String {
        b64::encode(self.key)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.key
    }
}

impl fmt::Debug for EnvelopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvelopeKey({}, <redacted>)", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_material() {
        let s = SiteSecret::from_b64("IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM0").unwrap();
        let shown = format!("{s:?} {:?} {:?}", s.relay_key(), s.content_key());
        assert!(!shown.contains("IpHY"));
        assert!(shown.contains("<redacted>"));
        let k = s.content_key().user_key(UserId::new(2).unwrap());
        assert_eq!(format!("{k:?}"), "EnvelopeKey(u/2, <redacted>)");
    }

    #[test]
    fn malformed_secrets_are_refused_without_echo() {
        for bad in [
            "",
            "abc",
            "IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM",
            "IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM0A",
            "IpHYzcMQQR5+wnN4pmHJNRh8B+TVY26bw8QAsnJEuM0",
            "IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM0=",
        ] {
            let err = SiteSecret::from_b64(bad).unwrap_err();
            assert!(!err.to_string().contains("IpHY"));
        }
        // Surrounding whitespace (a secret file's newline) is tolerated.
        assert!(SiteSecret::from_b64("IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM0\n").is_ok());
    }

    #[test]
    fn generated_secrets_differ() {
        assert_ne!(SiteSecret::generate(), SiteSecret::generate());
    }
}
