//! Server API request signing (protocol §5).
//!
//! Every WordPress → relay request carries
//!
//! ```text
//! X-BM-Site: <site id>
//! X-BM-Timestamp: <unix seconds>
//! X-BM-Signature: v1=<hex HMAC-SHA256(relay_key, "{timestamp}\n{site}\n{METHOD} {path}\n" ++ body)>
//! ```
//!
//! Binding the method and path means a body signed for one endpoint is
//! refused by every other; the timestamp bounds replay to the skew window,
//! inside which a replay only re-delivers event ids clients already hold.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::SiteId;
use crate::keys::RelayKey;

/// Header naming the site.
pub const HEADER_SITE: &str = "X-BM-Site";
/// Header carrying the unix timestamp (seconds) the request was signed at.
pub const HEADER_TIMESTAMP: &str = "X-BM-Timestamp";
/// Header carrying `v1=<hex>`.
pub const HEADER_SIGNATURE: &str = "X-BM-Signature";
/// Header marking a protocol v2 request (§3.2, §5): `X-BM-Protocol: 2`.
/// Its absence means v1. It is not signed: it only tells the relay which
/// ids the sender meant (pseudonyms or WordPress ids), so a relay that
/// refuses v1 can refuse a sender that was not switched; forging it gains
/// nothing, since every id in a signed body routes the same either way.
pub const HEADER_PROTOCOL: &str = "X-BM-Protocol";
/// Default tolerated difference between the signer's and the relay's clocks.
pub const DEFAULT_MAX_SKEW_SECS: u64 = 60;

/// Why a signed request was refused. The relay maps each to its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Timestamp header missing or not a decimal number.
    #[error("X-BM-Timestamp must be unix seconds")]
    BadTimestamp,
    /// Signature header missing, not `v1=` followed by 64 hex digits, or wrong.
    #[error("X-BM-Signature does not match the request")]
    BadSignature,
    /// Signed too long ago or too far in the future.
    #[error("X-BM-Timestamp is outside the allowed clock skew")]
    Stale,
}

fn mac(key: &RelayKey, timestamp: u64, site: &str, method: &str, path: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    m.update(format!("{timestamp}\n{site}\n{method} {path}\n").as_bytes());
    m.update(body);
    m
}

/// The `X-BM-Signature` value for a request. `path` is the request path
/// without the query string.
pub fn sign(key: &RelayKey, timestamp: u64, site: &SiteId, method: &str, path: &str, body: &[u8]) -> String {
    let tag = mac(key, timestamp, site.as_str(), method, path, body).finalize().into_bytes();
    format!("v1={}", hex::encode(tag))
}

/// Checks a request's timestamp and signature headers.
///
/// The signature is checked (in constant time) before the clock, so an
/// unsigned caller learns nothing about the relay's time. `now` and the
/// skew are in unix seconds.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    key: &RelayKey,
    timestamp_header: &str,
    signature_header: &str,
    site: &SiteId,
    method: &str,
    path: &str,
    body: &[u8],
    now: u64,
    max_skew_secs: u64,
) -> Result<(), SignatureError> {
    let timestamp = crate::ids::parse_canonical_decimal(timestamp_header.trim()).ok_or(SignatureError::BadTimestamp)?;
    let hex_sig = signature_header.trim().strip_prefix("v1=").ok_or(SignatureError::BadSignature)?;
    let mut tag = [0u8; 32];
    hex::decode_to_slice(hex_sig, &mut tag).map_err(|_| SignatureError::BadSignature)?;
    mac(key, timestamp, site.as_str(), method, path, body)
        .verify_slice(&tag)
        .map_err(|_| SignatureError::BadSignature)?;
    if timestamp.abs_diff(now) > max_skew_secs {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Request signatures and JWTs share the relay key; they cannot be
    /// confused: a request's signing string always holds a `\n` after the
    /// timestamp, a JWT's signing input (`base64url.base64url`) never holds
    /// one, so no HMAC input is both and no tag verifies as the other
    /// (docs/PROTOCOL.md §5, "domain separation").
    #[test]
    fn request_signatures_are_domain_separated_from_jwts() {
        let key = crate::RelayKey::from_bytes([7; 32]);
        let site = SiteId::new("example.com").unwrap();
        let jwt = crate::token::Claims::connection(site.clone(), crate::UserId::new(2).unwrap(), 1_764_000_000, 3600)
            .mint(&key);
        let (input, _) = jwt.rsplit_once('.').unwrap();
        assert!(input.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
        for (ts, method, path) in [(0u64, "POST", "/v1/push"), (u64::MAX, "", "")] {
            let prefix = format!("{ts}\n{site}\n{method} {path}\n");
            assert!(prefix.as_bytes()[..21.min(prefix.len())].contains(&b'\n'));
        }
        // And concretely: the token's tag is no request signature over its input.
        let tag = jwt.rsplit_once('.').unwrap().1;
        let as_sig = format!("v1={}", hex::encode(crate::b64::decode(tag).unwrap()));
        assert!(verify(&key, "1764000000", &as_sig, &site, "POST", "/v1/push", input.as_bytes(), 1_764_000_000, 60)
            .is_err());
    }

    use super::*;

    const NOW: u64 = 1_764_000_000;

    fn fixture() -> (RelayKey, SiteId) {
        (RelayKey::from_bytes([7; 32]), SiteId::new("example.com").unwrap())
    }

    fn check(sig: &str, ts: &str, path: &str, body: &[u8], now: u64) -> Result<(), SignatureError> {
        let (key, site) = fixture();
        verify(&key, ts, sig, &site, "POST", path, body, now, DEFAULT_MAX_SKEW_SECS)
    }

    #[test]
    fn sign_then_verify() {
        let (key, site) = fixture();
        let sig = sign(&key, NOW, &site, "POST", "/v1/push", b"{}");
        assert!(sig.starts_with("v1=") && sig.len() == 67);
        assert_eq!(check(&sig, "1764000000", "/v1/push", b"{}", NOW), Ok(()));
        // Uppercase hex is the same signature.
        let upper = format!("v1={}", sig[3..].to_uppercase());
        assert_eq!(check(&upper, "1764000000", "/v1/push", b"{}", NOW), Ok(()));
    }

    #[test]
    fn bound_to_path_body_site_and_time() {
        let (key, site) = fixture();
        let sig = sign(&key, NOW, &site, "POST", "/v1/push", b"{}");
        assert_eq!(check(&sig, "1764000000", "/v1/presence", b"{}", NOW), Err(SignatureError::BadSignature));
        assert_eq!(check(&sig, "1764000000", "/v1/push", b"{ }", NOW), Err(SignatureError::BadSignature));
        assert_eq!(check(&sig, "1764000001", "/v1/push", b"{}", NOW), Err(SignatureError::BadSignature));
        let other = SiteId::new("example.org").unwrap();
        assert_eq!(
            verify(&key, "1764000000", &sig, &other, "POST", "/v1/push", b"{}", NOW, 60),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(check(&sig, "1764000000", "/v1/push", b"{}", NOW + 60), Ok(()));
        assert_eq!(check(&sig, "1764000000", "/v1/push", b"{}", NOW + 61), Err(SignatureError::Stale));
        assert_eq!(check(&sig, "1764000000", "/v1/push", b"{}", NOW - 61), Err(SignatureError::Stale));
    }

    #[test]
    fn malformed_headers() {
        let (key, site) = fixture();
        let sig = sign(&key, NOW, &site, "POST", "/v1/push", b"{}");
        for ts in ["", "abc", "-1", "01764000000", "1.5"] {
            assert_eq!(check(&sig, ts, "/v1/push", b"{}", NOW), Err(SignatureError::BadTimestamp), "{ts}");
        }
        for bad in ["", "v1=", "v2=00", &sig[3..], &format!("{sig}00"), &sig.replace("v1=", "v1=zz")[..67]] {
            assert_eq!(check(bad, "1764000000", "/v1/push", b"{}", NOW), Err(SignatureError::BadSignature), "{bad}");
        }
    }
}
