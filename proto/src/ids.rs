//! Identifiers (protocol §2), each a type that can only hold a valid value.
//!
//! Everything that crosses a trust boundary (a JSON body, a token claim, a
//! key id, a PHP argument) is parsed into one of these types first, so the
//! range rules live in exactly one place and the rest of the code never
//! re-checks them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest user or thread id: 2^53 − 1, the largest integer a JavaScript
/// number (and so a browser) holds exactly.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// An identifier that failed validation; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A numeric id outside its range.
    #[error("{what} {value} is out of range ({min}..={max})")]
    OutOfRange { what: &'static str, value: u64, min: u64, max: u64 },
    /// Text that does not have the required form.
    #[error("{what} is malformed: {reason}")]
    Malformed { what: &'static str, reason: &'static str },
}

/// Parses a canonical decimal: digits only, no sign, no leading zero (except
/// "0" itself), no overflow. Used for key ids and the token `sub` claim, where
/// two spellings of one number would be two different AADs or principals.
pub fn parse_canonical_decimal(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return None;
    }
    text.parse().ok()
}

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(u64);

        impl $name {
            /// Validates `value` against the range 1 ..= 2^53 − 1.
            pub fn new(value: u64) -> Result<Self, IdError> {
                if (1..=MAX_ID).contains(&value) {
                    Ok(Self(value))
                } else {
                    Err(IdError::OutOfRange { what: $what, value, min: 1, max: MAX_ID })
                }
            }

            /// Like [`Self::new`] for signed input (PHP integers, JSON).
            pub fn from_i64(value: i64) -> Result<Self, IdError> {
                u64::try_from(value)
                    .map_err(|_| IdError::Malformed { what: $what, reason: "must be a positive integer" })
                    .and_then(Self::new)
            }

            /// The numeric value.
            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                parse_canonical_decimal(s)
                    .ok_or(IdError::Malformed { what: $what, reason: "not a canonical decimal" })
                    .and_then(Self::new)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = u64::deserialize(d)?;
                Self::new(v).map_err(serde::de::Error::custom)
            }
        }
    };
}

numeric_id!(
    /// A WordPress user id (1 ..= 2^53 − 1), a JSON number on the wire.
    UserId,
    "user id"
);
numeric_id!(
    /// A thread (conversation) id (1 ..= 2^53 − 1), a JSON number on the wire.
    ThreadId,
    "thread id"
);

/// Thread key generation (0 ..= 2^32 − 1): bumped when a member leaves, so the
/// departed member's key opens nothing sealed afterwards.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub u32);

impl Epoch {
    /// Validates a wider integer (a PHP int) against 0 ..= 2^32 − 1.
    pub fn from_i64(value: i64) -> Result<Self, IdError> {
        u32::try_from(value).map(Epoch).map_err(|_| IdError::OutOfRange {
            what: "epoch",
            value: value.max(0) as u64,
            min: 0,
            max: u32::MAX as u64,
        })
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `text`.
            pub fn new(text: impl Into<String>) -> Result<Self, IdError> {
                let text = text.into();
                let check: fn(&str) -> Result<(), &'static str> = $check;
                check(&text).map_err(|reason| IdError::Malformed { what: $what, reason })?;
                Ok(Self(text))
            }

            /// The text form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Self::new(s.into_owned()).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn check_site(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if !(b[0].is_ascii_lowercase() || b[0].is_ascii_digit()) {
        return Err("must start with a-z or 0-9");
    }
    if !b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')) {
        return Err("may only hold a-z 0-9 . _ -");
    }
    Ok(())
}

fn check_event(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if !b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-')) {
        return Err("may only hold A-Z a-z 0-9 _ -");
    }
    Ok(())
}

text_id!(
    /// A site id, `^[a-z0-9][a-z0-9._-]{0,63}$`: which WordPress site (and so
    /// which relay key) a request, token or envelope belongs to.
    SiteId,
    "site id",
    check_site
);
text_id!(
    /// An event id, `^[A-Za-z0-9_-]{1,64}$`: bound into the AAD, and the key
    /// browsers deduplicate on.
    EventId,
    "event id",
    check_event
);

impl EventId {
    /// A fresh id: 16 random bytes, base64url (22 characters).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        crate::keys::fill_random(&mut bytes);
        Self::from_random_bytes(bytes)
    }

    /// The id written for 16 random bytes the caller drew itself (the PHP
    /// extension draws them from a fork-safe pool instead of one syscall
    /// per event).
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        EventId(crate::b64::encode(bytes))
    }
}

/// Which key sealed an envelope: `t/{thread}/{epoch}` or `u/{user}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum KeyId {
    /// A thread key of one epoch.
    Thread { thread: ThreadId, epoch: Epoch },
    /// A user's personal key.
    User(UserId),
}

impl KeyId {
    /// Parses the strict text form (decimal numbers, no leading zeros).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        const BAD: IdError = IdError::Malformed { what: "key id", reason: "expected t/{thread}/{epoch} or u/{user}" };
        let mut parts = text.split('/');
        let key_id = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("t"), Some(t), Some(e), None) => KeyId::Thread {
                thread: t.parse()?,
                epoch: parse_canonical_decimal(e).and_then(|e| u32::try_from(e).ok()).map(Epoch).ok_or(BAD)?,
            },
            (Some("u"), Some(u), None, None) => KeyId::User(u.parse()?),
            _ => return Err(BAD),
        };
        Ok(key_id)
    }

    /// The user this key belongs to, for a user key.
    pub fn user(&self) -> Option<UserId> {
        match self {
            KeyId::User(u) => Some(*u),
            KeyId::Thread { .. } => None,
        }
    }

    /// The HKDF `info` string that derives this key from the content key.
    pub fn hkdf_info(&self) -> String {
        match self {
            KeyId::Thread { thread, epoch } => format!("thread/{thread}/{epoch}"),
            KeyId::User(u) => format!("user/{u}"),
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyId::Thread { thread, epoch } => write!(f, "t/{thread}/{epoch}"),
            KeyId::User(u) => write!(f, "u/{u}"),
        }
    }
}

impl FromStr for KeyId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ranges() {
        assert!(UserId::new(0).is_err());
        assert!(UserId::new(1).is_ok());
        assert!(UserId::new(MAX_ID).is_ok());
        assert!(UserId::new(MAX_ID + 1).is_err());
        assert!(ThreadId::from_i64(-1).is_err());
        assert_eq!(Epoch::from_i64(u32::MAX as i64), Ok(Epoch(u32::MAX)));
        assert!(Epoch::from_i64(u32::MAX as i64 + 1).is_err());
        assert!(Epoch::from_i64(-1).is_err());
    }

    #[test]
    fn numeric_json() {
        assert_eq!(serde_json::from_str::<UserId>("42").unwrap().get(), 42);
        for bad in ["0", "-3", "1.5", "\"7\"", "9007199254740992", "1e3"] {
            assert!(serde_json::from_str::<UserId>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn canonical_decimal() {
        assert_eq!(parse_canonical_decimal("0"), Some(0));
        assert_eq!(parse_canonical_decimal("120"), Some(120));
        for bad in ["", "01", "+1", "-1", " 1", "1 ", "1a", "99999999999999999999999"] {
            assert_eq!(parse_canonical_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn site_ids() {
        for good in ["a", "example.com", "0shop_1-x.y", &"a".repeat(64)] {
            assert!(SiteId::new(good).is_ok(), "{good}");
        }
        for bad in ["", ".a", "-a", "A", "ex ample", "é", "a/b", "a|b", &"a".repeat(65)] {
            assert!(SiteId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_ids() {
        assert!(EventId::new("OMJ180rtBWrW6o7spBkvoQ").is_ok());
        assert!(EventId::new("a".repeat(64)).is_ok());
        for bad in ["", "a b", "a|b", "a.b", &"a".repeat(65)] {
            assert!(EventId::new(bad).is_err(), "{bad}");
        }
        let r = EventId::random();
        assert_eq!(r.as_str().len(), 22);
        assert_ne!(r, EventId::random());
    }

    #[test]
    fn key_ids_round_trip() {
        for text in ["t/1/0", "t/12/3", "t/9007199254740991/4294967295", "u/1", "u/424242"] {
            let k = KeyId::parse(text).unwrap();
            assert_eq!(k.to_string(), text);
        }
        assert_eq!(KeyId::parse("u/7").unwrap().user(), UserId::new(7).ok());
        assert_eq!(KeyId::parse("t/12/3").unwrap().hkdf_info(), "thread/12/3");
    }

    #[test]
    fn key_ids_strict() {
        for bad in [
            "",
            "t",
            "t/1",
            "t/1/",
            "t//0",
            "t/0/0",
            "t/01/0",
            "t/1/00",
            "t/1/01",
            "t/1/-1",
            "t/1/4294967296",
            "t/9007199254740992/0",
            "u/0",
            "u/01",
            "u/",
            "u/1/2",
            "x/1",
            "T/1/0",
            "t/1/0/",
            " u/1",
            "u/+1",
        ] {
            assert!(KeyId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
