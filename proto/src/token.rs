//! Client tokens (protocol §6): JWTs, HS256 with the relay key.
//!
//! Written here rather than taken from a JWT crate for two reasons: tokens
//! must be byte-identical across the Rust, PHP and test-vector
//! implementations (header `{"alg":"HS256","typ":"JWT"}`, claims in the order
//! `site, sub, thread, iat, exp`), and verification must be narrower than a
//! general JWT library's: one algorithm, one key per site, and a hard split
//! between connection tokens and thread tokens. The whole format is three
//! base64url parts and one HMAC, which `hmac` and `sha2` already provide.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;

use crate::b64;
use crate::ids::{SiteId, ThreadId, UserId};
use crate::keys::RelayKey;

type HmacSha256 = Hmac<Sha256>;

/// The only header we write: `{"alg":"HS256","typ":"JWT"}`, base64url.
pub const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// Longest token accepted (bytes); anything longer is refused before any
/// decoding.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Tolerated clock difference for `iat` in the future (seconds).
pub const IAT_LEEWAY_SECS: u64 = 60;

/// Which of the two token kinds a place accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Opens a connection: no `thread` claim.
    Connection,
    /// Proves membership of one thread: has a `thread` claim.
    Thread,
}

/// Why a token was refused. Never contains the token or the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON, too long, or claims of the wrong type.
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// Header names an algorithm other than HS256 (or `none`).
    #[error("token algorithm is not HS256")]
    Algorithm,
    /// The `site` claim names a site this verifier does not know.
    #[error("token is for an unknown site")]
    UnknownSite,
    /// The HMAC does not match.
    #[error("token signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `iat` is in the future (beyond the leeway), or `exp` is not after `iat`.
    #[error("token is not valid yet")]
    NotYetValid,
    /// A thread token where a connection token belongs, or the reverse.
    #[error("expected a {expected} token")]
    WrongKind { expected: &'static str },
    /// Issued before the server revoked its holder's access (never returned
    /// by [`verify`] itself: a verifier that remembers revocations, such as
    /// the relay, adds this check).
    #[error("token was issued before access was revoked; fetch a new one")]
    Revoked,
}

/// Token claims, in the order they are serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The site the token is for.
    pub site: SiteId,
    /// The user, a decimal string on the wire (JWT `sub` is a string).
    #[serde(serialize_with = "sub_to_string", deserialize_with = "sub_from_string")]
    pub sub: UserId,
    /// For thread tokens: the thread `sub` is a member of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadId>,
    /// Issued at (unix seconds).
    pub iat: u64,
    /// Expires at (unix seconds).
    pub exp: u64,
}

fn sub_to_string<S: Serializer>(u: &UserId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(u)
}

fn sub_from_string<'de, D: Deserializer<'de>>(d: D) -> Result<UserId, D::Error> {
    let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

impl Claims {
    /// Connection claims for `user`, valid `ttl` seconds from `now`.
    pub fn connection(site: SiteId, user: UserId, now: u64, ttl: u64) -> Self {
        Claims { site, sub: user, thread: None, iat: now, exp: now.saturating_add(ttl) }
    }

    /// Thread claims: `user` is a member of `thread`.
    pub fn thread(site: SiteId, user: UserId, thread: ThreadId, now: u64, ttl: u64) -> Self {
        Claims { site, sub: user, thread: Some(thread), iat: now, exp: now.saturating_add(ttl) }
    }

    /// The kind these claims make.
    pub fn kind(&self) -> TokenKind {
        if self.thread.is_some() {
            TokenKind::Thread
        } else {
            TokenKind::Connection
        }
    }

    /// Signs the claims into a compact JWT.
    pub fn mint(&self, key: &RelayKey) -> String {
        let payload = serde_json::to_vec(self).expect("claims always serialize");
        let mut token = String::with_capacity(HEADER_B64.len() + payload.len() * 4 / 3 + 48);
        token.push_str(HEADER_B64);
        token.push('.');
        token.push_str(&b64::encode(payload));
        let sig = mac(key, token.as_bytes()).finalize().into_bytes();
        token.push('.');
        token.push_str(&b64::encode(sig));
        token
    }
}

fn mac(key: &RelayKey, signing_input: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    m.update(signing_input);
    m
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    typ: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Verifies a token of the expected `kind` at time `now` (unix seconds).
///
/// `key_for` maps the token's `site` claim to that site's relay key (the
/// relay serves many sites); returning `None` refuses the token as
/// [`TokenError::UnknownSite`]. The claims are read before the signature is
/// checked only to find the key; nothing in them is trusted until it is.
pub fn verify<'k>(
    token: &str,
    kind: TokenKind,
    now: u64,
    key_for: impl FnOnce(&SiteId) -> Option<&'k RelayKey>,
) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("too long"));
    }
    let (signing_input, sig_b64) = token.rsplit_once('.').ok_or(TokenError::Malformed("not three parts"))?;
    let (header_b64, claims_b64) = signing_input.split_once('.').ok_or(TokenError::Malformed("not three parts"))?;
    if claims_b64.contains('.') {
        return Err(TokenError::Malformed("not three parts"));
    }
    let header_json = b64::decode(header_b64).map_err(|_| TokenError::Malformed("header is not base64url"))?;
    let header: Header<'_> =
        serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
    if header.alg != "HS256" || header.crit.is_some() {
        return Err(TokenError::Algorithm);
    }
    if header.typ.as_deref().is_some_and(|t| t != "JWT") {
        return Err(TokenError::Malformed("typ is not JWT"));
    }
    let claims_json = b64::decode(claims_b64).map_err(|_| TokenError::Malformed("claims are not base64url"))?;
    let claims: Claims = serde_json::from_slice(&claims_json)
        .map_err(|_| TokenError::Malformed("claims are missing or of the wrong type"))?;
    let key = key_for(&claims.site).ok_or(TokenError::UnknownSite)?;
    let sig = b64::decode_array::<32>(sig_b64).ok_or(TokenError::Signature)?;
    // `verify_slice` compares in constant time.
    mac(key, signing_input.as_bytes()).verify_slice(&sig).map_err(|_| TokenError::Signature)?;

    if claims.kind() != kind {
        return Err(TokenError::WrongKind {
            expected: match kind {
                TokenKind::Connection => "connection",
                TokenKind::Thread => "thread",
            },
        });
    }
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    if claims.iat > now.saturating_add(IAT_LEEWAY_SECS) || claims.exp <= claims.iat {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RelayKey {
        RelayKey::from_b64("RHkXN1j46b1htCzTf4hIHU46rUWuuv5-qaMce_K-KFs").unwrap()
    }
    fn site() -> SiteId {
        SiteId::new("example.com").unwrap()
    }
    fn user() -> UserId {
        UserId::new(2).unwrap()
    }
    const NOW: u64 = 1_764_000_100;

    fn check(token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        let k = key();
        verify(token, kind, NOW, |s| (s == &site()).then_some(&k))
    }

    fn forge(header: &str, claims: &str) -> String {
        let input = format!("{}.{}", b64::encode(header), b64::encode(claims));
        let sig = mac(&key(), input.as_bytes()).finalize().into_bytes();
        format!("{input}.{}", b64::encode(sig))
    }

    #[test]
    fn round_trip_both_kinds() {
        let c = Claims::connection(site(), user(), NOW, 3600);
        assert_eq!(check(&c.mint(&key()), TokenKind::Connection).unwrap(), c);
        let t = Claims::thread(site(), user(), ThreadId::new(12).unwrap(), NOW, 3600);
        assert_eq!(check(&t.mint(&key()), TokenKind::Thread).unwrap(), t);
    }

    #[test]
    fn kinds_do_not_mix() {
        let c = Claims::connection(site(), user(), NOW, 3600).mint(&key());
        let t = Claims::thread(site(), user(), ThreadId::new(12).unwrap(), NOW, 3600).mint(&key());
        assert!(matches!(check(&c, TokenKind::Thread), Err(TokenError::WrongKind { .. })));
        assert!(matches!(check(&t, TokenKind::Connection), Err(TokenError::WrongKind { .. })));
    }

    #[test]
    fn time_rules() {
        let expired = Claims::connection(site(), user(), NOW - 100, 100).mint(&key());
        assert_eq!(check(&expired, TokenKind::Connection), Err(TokenError::Expired));
        let future = Claims::connection(site(), user(), NOW + 61, 3600).mint(&key());
        assert_eq!(check(&future, TokenKind::Connection), Err(TokenError::NotYetValid));
        let skewed = Claims::connection(site(), user(), NOW + 60, 3600).mint(&key());
        assert!(check(&skewed, TokenKind::Connection).is_ok());
    }

    #[test]
    fn refuses_other_algorithms_and_forgeries() {
        let claims = r#"{"site":"example.com","sub":"2","iat":1764000000,"exp":1764003600}"#;
        let none = format!("{}.{}.", b64::encode(r#"{"alg":"none","typ":"JWT"}"#), b64::encode(claims));
        assert_eq!(check(&none, TokenKind::Connection), Err(TokenError::Algorithm));
        let hs512 = forge(r#"{"alg":"HS512","typ":"JWT"}"#, claims);
        assert_eq!(check(&hs512, TokenKind::Connection), Err(TokenError::Algorithm));
        let crit = forge(r#"{"alg":"HS256","crit":["x"],"x":1}"#, claims);
        assert_eq!(check(&crit, TokenKind::Connection), Err(TokenError::Algorithm));
        // A header without typ is fine as long as the signature holds.
        assert!(check(&forge(r#"{"alg":"HS256"}"#, claims), TokenKind::Connection).is_ok());

        let good = Claims::connection(site(), user(), NOW, 3600).mint(&key());
        let other_key = RelayKey::from_bytes([9; 32]);
        let foreign = Claims::connection(site(), user(), NOW, 3600).mint(&other_key);
        assert_eq!(check(&foreign, TokenKind::Connection), Err(TokenError::Signature));
        let other_site = Claims::connection(SiteId::new("evil").unwrap(), user(), NOW, 3600).mint(&key());
        assert_eq!(check(&other_site, TokenKind::Connection), Err(TokenError::UnknownSite));
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(check(std::str::from_utf8(&flipped).unwrap(), TokenKind::Connection).is_err());
    }

    #[test]
    fn malformed_tokens() {
        for bad in ["", "a", "a.b", "a.b.c.d", "...", &"a".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(matches!(check(bad, TokenKind::Connection), Err(TokenError::Malformed(_))), "{bad}");
        }
        for claims in [
            r#"{"site":"example.com","sub":2,"iat":1764000000,"exp":1764003600}"#,
            r#"{"site":"example.com","sub":"02","iat":1764000000,"exp":1764003600}"#,
            r#"{"site":"example.com","sub":"0","iat":1764000000,"exp":1764003600}"#,
            r#"{"site":"example.com","sub":"2","iat":1764000000}"#,
            r#"{"site":"example.com","sub":"2","thread":0,"iat":1764000000,"exp":1764003600}"#,
        ] {
            assert!(
                matches!(
                    check(&forge(r#"{"alg":"HS256","typ":"JWT"}"#, claims), TokenKind::Connection),
                    Err(TokenError::Malformed(_))
                ),
                "{claims}"
            );
        }
    }
}
