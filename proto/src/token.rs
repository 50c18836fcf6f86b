//! Client tokens (protocol §6): JWTs, HS256 with the relay key.
//!
//! Written here rather than taken from a JWT crate for two reasons: tokens
//! must be byte-identical across the Rust, PHP and test-vector
//! implementations (header `{"alg":"HS256","typ":"JWT"}`, claims in the order
//! `site, sub, thread, v, iat, exp`, where `v` appears only in protocol v2
//! tokens), and verification must be narrower than a
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
    /// A protocol v1 token (no `v` claim, or `"v":1`) at a relay configured
    /// with `accept_v1 = false` (never returned by [`verify`] itself; the
    /// relay adds this check). Maps to `bad_token`.
    #[error("token is of protocol v1 (WordPress ids), which this relay no longer accepts (accept_v1 = false); WordPress must mint v2 tokens (bm_relay.protocol = 2)")]
    ProtocolV1Refused,
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
    /// Protocol version (§3.2, §6): absent in v1 tokens, which thereby stay
    /// byte-identical to those minted before v2 existed; `2` in v2 tokens,
    /// whose `sub` and `thread` are pseudonyms. Only 1 and 2 are accepted
    /// (see [`verify`]); old relays ignore the claim.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "v_present")]
    pub v: Option<u8>,
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

/// A present `v` must be a number: `"v":null` is not "absent".
fn v_present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    u8::deserialize(d).map(Some)
}

impl Claims {
    /// Connection claims for `user`, valid `ttl` seconds from `now`.
    pub fn connection(site: SiteId, user: UserId, now: u64, ttl: u64) -> Self {
        Claims { site, sub: user, thread: None, v: None, iat: now, exp: now.saturating_add(ttl) }
    }

    /// Thread claims: `user` is a member of `thread`.
    pub fn thread(site: SiteId, user: UserId, thread: ThreadId, now: u64, ttl: u64) -> Self {
        Claims { site, sub: user, thread: Some(thread), v: None, iat: now, exp: now.saturating_add(ttl) }
    }

    /// The same claims marked with protocol version `protocol`: v2 adds
    /// `"v":2`; v1 leaves the claim out, as v1 tokens always did.
    pub fn with_protocol(mut self, protocol: u8) -> Self {
        self.v = (protocol != 1).then_some(protocol);
        self
    }

    /// The protocol version the token was minted for: its `v` claim, 1 when
    /// absent.
    pub fn protocol(&self) -> u8 {
        self.v.unwrap_or(1)
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
    if !matches!(claims.v, None | Some(1) | Some(2)) {
        return Err(TokenError::Malformed("v must be 1 or 2"));
    }
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

    /// v2 tokens carry `"v":2` after `thread` and before `iat`; v1 tokens
    /// have no `v` and are byte-identical to those minted before v2; a `v`
    /// other than 1 or 2 is refused.
    #[test]
    fn protocol_claim() {
        let v1 = Claims::thread(site(), user(), ThreadId::new(12).unwrap(), NOW, 3600);
        let payload = |c: &Claims| String::from_utf8(serde_json::to_vec(c).unwrap()).unwrap();
        assert_eq!(payload(&v1), r#"{"site":"example.com","sub":"2","thread":12,"iat":1764000100,"exp":1764003700}"#);
        assert_eq!(payload(&v1.clone().with_protocol(1)), payload(&v1));
        let v2 = v1.clone().with_protocol(2);
        assert_eq!(
            payload(&v2),
            r#"{"site":"example.com","sub":"2","thread":12,"v":2,"iat":1764000100,"exp":1764003700}"#
        );
        assert_eq!(check(&v2.mint(&key()), TokenKind::Thread).unwrap().protocol(), 2);
        assert_eq!(check(&v1.mint(&key()), TokenKind::Thread).unwrap().protocol(), 1);
        let explicit_v1 = r#"{"site":"example.com","sub":"2","v":1,"iat":1764000000,"exp":1764003600}"#;
        assert_eq!(
            check(&forge(r#"{"alg":"HS256","typ":"JWT"}"#, explicit_v1), TokenKind::Connection).unwrap().protocol(),
            1
        );
        for v in ["0", "3", "255", "256", "-1", "\"2\"", "2.0", "null"] {
            let claims = format!(r#"{{"site":"example.com","sub":"2","v":{v},"iat":1764000000,"exp":1764003600}}"#);
            let r = check(&forge(r#"{"alg":"HS256","typ":"JWT"}"#, &claims), TokenKind::Connection);
            assert!(matches!(r, Err(TokenError::Malformed(_))), "v={v}: {r:?}");
        }
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
