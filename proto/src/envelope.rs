//! Sealed events (protocol §4).
//!
//! ```json
//! {"v":1,"id":"<event id>","k":"<key id>","n":"<b64u nonce>","c":"<b64u ciphertext||tag>"}
//! ```
//!
//! AES-256-GCM with a fresh random 96-bit nonce per envelope, and as AAD the
//! bytes of `bm1|{site}|{id}|{k}`: whoever moves an envelope to another site,
//! event id or key (and so thread or user) makes it fail to open. The event
//! type travels inside the ciphertext, so the relay does not learn it.

use aes_gcm::aead::{Aead, KeyInit, Payload as AeadInput};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};

use crate::b64;
use crate::ids::{EventId, KeyId, SiteId};
use crate::keys::{fill_random, EnvelopeKey};
use crate::PROTOCOL_VERSION;

/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length, appended to the ciphertext in `c`.
pub const TAG_LEN: usize = 16;
/// Default bound on decoded `c` (ciphertext and tag): 64 KiB.
pub const DEFAULT_MAX_CIPHERTEXT: usize = 64 * 1024;

/// Why an envelope was refused. Opening failures say nothing about the
/// plaintext or the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not an envelope object (bad JSON, missing or unknown field, bad id).
    #[error("envelope is malformed: {0}")]
    Malformed(String),
    /// `v` is not 1.
    #[error("envelope version {0} is not supported (expected 1)")]
    Version(u8),
    /// `n` is not 12 bytes of base64url.
    #[error("envelope nonce `n` must be 12 bytes of base64url")]
    Nonce,
    /// `c` is not base64url, or shorter than a tag.
    #[error("envelope ciphertext `c` must be base64url of at least 16 bytes")]
    Ciphertext,
    /// `c` is over the size limit.
    #[error("envelope ciphertext is {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// The caller's key is not the one named by `k`.
    #[error("envelope is sealed with {envelope}, not with the key given ({given})")]
    WrongKey { envelope: KeyId, given: KeyId },
    /// Authentication failed: tampered, truncated, wrong site or wrong key.
    #[error("envelope does not open (tampered, wrong site or wrong key)")]
    Open,
    /// It opened, but the plaintext is not a `{"type","data"}` object.
    #[error("envelope payload is not a {{\"type\",\"data\"}} JSON object: {0}")]
    Payload(String),
}

/// An envelope, field for field. Serializing it writes the fields in the
/// protocol's order (`v`, `id`, `k`, `n`, `c`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Protocol version, always 1.
    pub v: u8,
    /// Event id (deduplication key, bound into the AAD).
    pub id: EventId,
    /// Key id (bound into the AAD).
    pub k: KeyId,
    /// base64url 12-byte nonce.
    pub n: String,
    /// base64url ciphertext followed by the 16-byte tag.
    pub c: String,
}

/// The plaintext inside an envelope: `{"type": …, "data": …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// Event type, e.g. `message.new`; hidden from the relay.
    #[serde(rename = "type")]
    pub kind: String,
    /// Anything JSON.
    pub data: serde_json::Value,
}

impl Payload {
    /// The plaintext bytes, `{"type":…,"data":…}`.
    pub fn to_plaintext(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a JSON value always serializes")
    }

    /// Reads opened plaintext.
    pub fn from_plaintext(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Payload(e.to_string()))
    }
}

/// The additional authenticated data: `bm1|{site}|{id}|{k}`.
pub fn aad(site: &SiteId, id: &EventId, k: KeyId) -> Vec<u8> {
    use std::io::Write;
    let (site, id) = (site.as_str(), id.as_str());
    let mut out = Vec::with_capacity(4 + site.len() + 1 + id.len() + 1 + 24);
    out.extend_from_slice(b"bm1|");
    out.extend_from_slice(site.as_bytes());
    out.push(b'|');
    out.extend_from_slice(id.as_bytes());
    out.push(b'|');
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{k}");
    out
}

impl Envelope {
    /// Parses envelope JSON and checks its shape (see [`Envelope::check`]).
    pub fn parse(json: &str, max_ciphertext: usize) -> Result<Self, EnvelopeError> {
        let env: Envelope = serde_json::from_str(json).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        env.check(max_ciphertext)?;
        Ok(env)
    }

    /// Checks everything that can be checked without the key: version, nonce
    /// length, ciphertext encoding and size. The relay runs this on every
    /// pushed and published envelope.
    pub fn check(&self, max_ciphertext: usize) -> Result<(), EnvelopeError> {
        self.decode_parts(max_ciphertext).map(|_| ())
    }

    fn decode_parts(&self, max_ciphertext: usize) -> Result<([u8; NONCE_LEN], Vec<u8>), EnvelopeError> {
        if self.v != PROTOCOL_VERSION {
            return Err(EnvelopeError::Version(self.v));
        }
        let nonce = b64::decode_array::<NONCE_LEN>(&self.n).ok_or(EnvelopeError::Nonce)?;
        // Size first, from the length alone, so an oversized `c` costs nothing.
        let len = b64::decoded_len(self.c.len()).ok_or(EnvelopeError::Ciphertext)?;
        if len > max_ciphertext {
            return Err(EnvelopeError::TooLarge { len, max: max_ciphertext });
        }
        let c = b64::decode(&self.c).map_err(|_| EnvelopeError::Ciphertext)?;
        if c.len() < TAG_LEN {
            return Err(EnvelopeError::Ciphertext);
        }
        Ok((nonce, c))
    }

    /// Seals `plaintext` under `key` with a fresh random nonce.
    pub fn seal(site: &SiteId, key: &EnvelopeKey, id: EventId, plaintext: &[u8]) -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        Self::seal_with_nonce(site, key, id, nonce, plaintext)
    }

    /// Seals with a caller-chosen nonce: for reproducing test vectors, and
    /// for callers that draw nonces from their own CSPRNG store (the PHP
    /// extension's fork-safe pool). Reusing a nonce under one key destroys
    /// AES-GCM's security: the nonce must be fresh random bytes.
    pub fn seal_with_nonce(
        site: &SiteId,
        key: &EnvelopeKey,
        id: EventId,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
    ) -> Self {
        let k = key.id();
        let aad = aad(site, &id, k);
        let cipher = Aes256Gcm::new(key.as_bytes().into());
        let c = cipher
            .encrypt(Nonce::from_slice(&nonce), AeadInput { msg: plaintext, aad: &aad })
            .expect("AES-GCM encryption only fails for inputs over 64 GiB");
        Envelope { v: PROTOCOL_VERSION, id, k, n: b64::encode(nonce), c: b64::encode(c) }
    }

    /// Seals a `{"type","data"}` payload.
    pub fn seal_payload(site: &SiteId, key: &EnvelopeKey, id: EventId, payload: &Payload) -> Self {
        Self::seal(site, key, id, &payload.to_plaintext())
    }

    /// Opens the envelope, checking the AAD for `site`; returns the plaintext.
    pub fn open(&self, site: &SiteId, key: &EnvelopeKey, max_ciphertext: usize) -> Result<Vec<u8>, EnvelopeError> {
        if key.id() != self.k {
            return Err(EnvelopeError::WrongKey { envelope: self.k, given: key.id() });
        }
        let (nonce, c) = self.decode_parts(max_ciphertext)?;
        let aad = aad(site, &self.id, self.k);
        Aes256Gcm::new(key.as_bytes().into())
            .decrypt(Nonce::from_slice(&nonce), AeadInput { msg: &c, aad: &aad })
            .map_err(|_| EnvelopeError::Open)
    }

    /// Opens and parses the `{"type","data"}` payload.
    pub fn open_payload(
        &self,
        site: &SiteId,
        key: &EnvelopeKey,
        max_ciphertext: usize,
    ) -> Result<Payload, EnvelopeError> {
        Payload::from_plaintext(&self.open(site, key, max_ciphertext)?)
    }

    /// The canonical JSON text: `{"v":1,"id":…,"k":…,"n":…,"c":…}`.
    ///
    /// Written directly when the id, nonce and ciphertext are plain
    /// base64url characters (always, for a sealed or checked envelope),
    /// since none of them then needs JSON escaping: scanning ~300 bytes of
    /// base64 for escapes was the largest single cost of sealing in the
    /// PHP extension. Anything else goes through serde_json; both give the
    /// same bytes (tested).
    pub fn to_json(&self) -> String {
        fn plain(s: &str) -> bool {
            s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }
        let id = self.id.as_str();
        if !(plain(id) && plain(&self.n) && plain(&self.c)) {
            return serde_json::to_string(self).expect("an envelope always serializes");
        }
        use std::fmt::Write;
        let mut out = String::with_capacity(48 + id.len() + self.n.len() + self.c.len());
        // Writing into a String cannot fail.
        let _ = write!(out, "{{\"v\":{},\"id\":\"", self.v);
        out.push_str(id);
        let _ = write!(out, "\",\"k\":\"{}\",\"n\":\"", self.k);
        out.push_str(&self.n);
        out.push_str("\",\"c\":\"");
        out.push_str(&self.c);
        out.push_str("\"}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SiteSecret;

    fn fixture() -> (SiteId, EnvelopeKey) {
        let secret = SiteSecret::from_b64("IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM0").unwrap();
        let key = secret.content_key().key_for(KeyId::parse("t/12/0").unwrap());
        (SiteId::new("example.com").unwrap(), key)
    }

    #[test]
    fn to_json_is_serde_json_byte_for_byte() {
        let (site, key) = fixture();
        for (i, len) in [0usize, 1, 15, 16, 100, 1000].into_iter().enumerate() {
            let id = if i % 2 == 0 { EventId::random() } else { EventId::new("Ab_9-z").unwrap() };
            let env = Envelope::seal(&site, &key, id, &vec![b'x'; len]);
            assert_eq!(env.to_json(), serde_json::to_string(&env).unwrap());
        }
        // Not base64url (only constructible by hand): the serde path escapes.
        let mut odd = Envelope::seal(&site, &key, EventId::new("e").unwrap(), b"{}");
        odd.n = "a\"b\\c".into();
        assert_eq!(odd.to_json(), serde_json::to_string(&odd).unwrap());
        assert!(odd.to_json().contains(r#""n":"a\"b\\c""#));
    }

    #[test]
    fn aad_layout() {
        let (site, _) = fixture();
        let k = KeyId::parse("t/12/3").unwrap();
        assert_eq!(aad(&site, &EventId::new("e1").unwrap(), k), b"bm1|example.com|e1|t/12/3");
    }

    #[test]
    fn seal_open_round_trip_and_field_order() {
        let (site, key) = fixture();
        let p = Payload { kind: "message.new".into(), data: serde_json::json!({"text": "hi"}) };
        let env = Envelope::seal_payload(&site, &key, EventId::new("e1").unwrap(), &p);
        let json = env.to_json();
        assert!(json.starts_with(r#"{"v":1,"id":"e1","k":"t/12/0","n":""#), "{json}");
        let back = Envelope::parse(&json, DEFAULT_MAX_CIPHERTEXT).unwrap();
        assert_eq!(back.open_payload(&site, &key, DEFAULT_MAX_CIPHERTEXT).unwrap(), p);
    }

    #[test]
    fn fresh_nonce_each_time() {
        let (site, key) = fixture();
        let a = Envelope::seal(&site, &key, EventId::new("e").unwrap(), b"{}");
        let b = Envelope::seal(&site, &key, EventId::new("e").unwrap(), b"{}");
        assert_ne!(a.n, b.n);
    }

    #[test]
    fn wrong_site_or_key_does_not_open() {
        let (site, key) = fixture();
        let env = Envelope::seal(&site, &key, EventId::new("e").unwrap(), b"{}");
        let other = SiteId::new("example.org").unwrap();
        assert_eq!(env.open(&other, &key, DEFAULT_MAX_CIPHERTEXT), Err(EnvelopeError::Open));
        let secret = SiteSecret::generate();
        let stranger = secret.content_key().key_for(env.k);
        assert_eq!(env.open(&site, &stranger, DEFAULT_MAX_CIPHERTEXT), Err(EnvelopeError::Open));
        let user_key = secret.content_key().key_for(KeyId::parse("u/1").unwrap());
        assert!(matches!(env.open(&site, &user_key, DEFAULT_MAX_CIPHERTEXT), Err(EnvelopeError::WrongKey { .. })));
    }

    #[test]
    fn shape_errors() {
        let (site, key) = fixture();
        let env = Envelope::seal(&site, &key, EventId::new("e").unwrap(), &[0u8; 100]);
        let mut v2 = env.clone();
        v2.v = 2;
        assert_eq!(v2.check(DEFAULT_MAX_CIPHERTEXT), Err(EnvelopeError::Version(2)));
        let mut short_nonce = env.clone();
        short_nonce.n = b64::encode([0u8; 11]);
        assert_eq!(short_nonce.check(DEFAULT_MAX_CIPHERTEXT), Err(EnvelopeError::Nonce));
        let mut truncated = env.clone();
        truncated.c = b64::encode([0u8; 15]);
        assert_eq!(truncated.check(DEFAULT_MAX_CIPHERTEXT), Err(EnvelopeError::Ciphertext));
        assert_eq!(env.check(115), Err(EnvelopeError::TooLarge { len: 116, max: 115 }));
        assert!(env.check(116).is_ok());
        for bad in [
            r#"{"v":1}"#,
            r#"[1]"#,
            r#"{"v":1,"id":"a","k":"t/1/0","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA","x":1}"#,
            r#"{"v":1,"id":"a b","k":"t/1/0","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA"}"#,
            r#"{"v":1,"id":"a","k":"t/0/0","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA"}"#,
            r#"{"v":1.0,"id":"a","k":"t/1/0","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA"}"#,
        ] {
            assert!(matches!(Envelope::parse(bad, DEFAULT_MAX_CIPHERTEXT), Err(EnvelopeError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn payload_must_be_type_and_data() {
        assert!(Payload::from_plaintext(br#"{"type":"x","data":null}"#).is_ok());
        assert!(Payload::from_plaintext(br#"{"data":1}"#).is_err());
        assert!(Payload::from_plaintext(b"\xff").is_err());
    }
}
