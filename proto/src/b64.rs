//! base64url without padding (RFC 4648 §5), the only binary-to-text form the
//! protocol uses. Decoding is strict: padding, characters outside the url-safe
//! alphabet and non-canonical trailing bits are all refused, so every value
//! has exactly one spelling (a tampered spelling cannot slip through).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The input was not canonical base64url without padding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid base64url without padding")]
pub struct B64Error;

/// Encodes bytes as base64url without padding.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding, strictly.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, B64Error> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| B64Error)
}

/// Decodes into a fixed-size array; `None` when the text is not canonical
/// base64url or does not decode to exactly `N` bytes.
pub fn decode_array<const N: usize>(text: impl AsRef<[u8]>) -> Option<[u8; N]> {
    let text = text.as_ref();
    // N bytes encode to exactly ceil(4N/3) characters without padding.
    if text.len() != (N * 4).div_ceil(3) {
        return None;
    }
    let mut out = [0u8; N];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
        Ok(n) if n == N => Some(out),
        _ => None,
    }
}

/// Length in bytes that a canonical unpadded base64 text of `chars`
/// characters decodes to, without decoding it (`None` for an impossible
/// length). Lets the relay enforce size limits before any allocation.
pub fn decoded_len(chars: usize) -> Option<usize> {
    match chars % 4 {
        1 => None,
        r => Some(chars / 4 * 3 + r.saturating_sub(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        assert_eq!(encode([0xfb, 0xff]), "-_8");
        assert_eq!(decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(decode("-_8=").is_err(), "padding refused");
        assert!(decode("+/8").is_err(), "standard alphabet refused");
        assert!(decode("-_9").is_err(), "non-canonical trailing bits refused");
        assert!(decode("a").is_err());
    }

    #[test]
    fn decoded_len_matches_decode() {
        for n in 0..50usize {
            let text = encode(vec![7u8; n]);
            assert_eq!(decoded_len(text.len()), Some(n));
        }
        assert_eq!(decoded_len(5), None);
    }

    #[test]
    fn decode_array_wants_exact_length() {
        let t = encode([1u8; 12]);
        assert_eq!(decode_array::<12>(&t), Some([1u8; 12]));
        assert_eq!(decode_array::<16>(&t), None);
        assert_eq!(decode_array::<12>(encode([1u8; 11])), None);
    }
}
