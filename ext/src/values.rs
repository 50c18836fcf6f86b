//! Reading PHP values into protocol types, with errors that name the field.
//!
//! The rules are the same for every function: ids are PHP ints (or strings
//! of canonical decimal digits, since `$wpdb` returns integers as strings)
//! in their protocol range; anything else — floats, bools, null, arrays —
//! is refused with a BmRelayException rather than coerced, because a wrong
//! recipient is worse than an error.

use std::fmt::Display;

use bm_proto::ids::{parse_canonical_decimal, MAX_ID};
use bm_proto::{Epoch, ThreadId, UserId};
use ext_php_rs::types::{ArrayKey, ZendHashTable, Zval};

use crate::error::{BmError, BmResult};

/// The PHP type name of a value, for messages.
pub fn type_name(z: &Zval) -> &'static str {
    let z = z.dereference();
    if z.is_null() {
        "null"
    } else if z.is_bool() {
        "bool"
    } else if z.is_long() {
        "int"
    } else if z.is_double() {
        "float"
    } else if z.is_string() {
        "string"
    } else if z.is_array() {
        "array"
    } else if z.is_object() {
        "object"
    } else {
        "resource"
    }
}

// Field names and expectations are `Display` values, formatted only when an
// error needs them: a successful `bm_push` allocates no message text.

/// An integer argument: a PHP int, or a string of canonical decimal digits.
pub fn int_of<F: Display + ?Sized, E: Display + ?Sized>(z: &Zval, field: &F, expected: &E) -> BmResult<i64> {
    let z = z.dereference();
    if let Some(v) = z.long() {
        return Ok(v);
    }
    if let Some(s) = z.str() {
        if let Some(v) = parse_canonical_decimal(s).and_then(|v| i64::try_from(v).ok()) {
            return Ok(v);
        }
        return Err(BmError::input(format!("{field} must be {expected}, got a non-numeric string")));
    }
    Err(BmError::input(format!("{field} must be {expected}, got {}", type_name(z))))
}

/// "an integer 1..2^53−1", the range of user and thread ids.
struct IdRange;

impl Display for IdRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an integer 1..{MAX_ID}")
    }
}

/// A user id (1 ..= 2^53 − 1).
pub fn user_id<F: Display + ?Sized>(z: &Zval, field: &F) -> BmResult<UserId> {
    let v = int_of(z, field, &IdRange)?;
    UserId::from_i64(v).map_err(|_| BmError::input(format!("{field} must be {IdRange}, got {v}")))
}

/// A thread id (1 ..= 2^53 − 1).
pub fn thread_id<F: Display + ?Sized>(z: &Zval, field: &F) -> BmResult<ThreadId> {
    let v = int_of(z, field, &IdRange)?;
    ThreadId::from_i64(v).map_err(|_| BmError::input(format!("{field} must be {IdRange}, got {v}")))
}

/// An epoch (0 ..= 2^32 − 1).
pub fn epoch<F: Display + ?Sized>(z: &Zval, field: &F) -> BmResult<Epoch> {
    let expected = format_args!("an integer 0..{}", u32::MAX);
    let v = int_of(z, field, &expected)?;
    Epoch::from_i64(v).map_err(|_| BmError::input(format!("{field} must be {expected}, got {v}")))
}

/// A time-to-live in seconds (1 ..= 10 years).
pub fn ttl(z: Option<&Zval>, field: &str) -> BmResult<u64> {
    const MAX_TTL: i64 = 10 * 366 * 86_400;
    let Some(z) = z.filter(|z| !z.dereference().is_null()) else {
        return Ok(3600);
    };
    let expected = format!("an integer number of seconds 1..{MAX_TTL}");
    let v = int_of(z, field, &expected)?;
    if (1..=MAX_TTL).contains(&v) {
        Ok(v as u64)
    } else {
        Err(BmError::input(format!("{field} must be {expected}, got {v}")))
    }
}

/// A list of user ids: a PHP array whose values are ids (keys ignored).
pub fn user_ids<F: Display + ?Sized>(z: &Zval, field: &F, max: usize) -> BmResult<Vec<UserId>> {
    let z = z.dereference();
    let Some(arr) = z.array() else {
        return Err(BmError::input(format!("{field} must be an array of user ids, got {}", type_name(z))));
    };
    if arr.len() > max {
        return Err(BmError::input(format!("{field} has {} user ids, over the limit of {max}", arr.len())));
    }
    arr.values().enumerate().map(|(i, v)| user_id(v, &format_args!("{field}[{i}]"))).collect()
}

/// A PHP array argument.
pub fn array_of<'a>(z: &'a Zval, field: &str) -> BmResult<&'a ZendHashTable> {
    let z = z.dereference();
    z.array().ok_or_else(|| BmError::input(format!("{field} must be an array, got {}", type_name(z))))
}

/// The string keys of an associative array; an int key is an error.
pub fn string_keys<'a>(arr: &'a ZendHashTable, field: &str) -> BmResult<Vec<(String, &'a Zval)>> {
    arr.iter()
        .map(|(k, v)| match k {
            ArrayKey::Long(i) => Err(BmError::input(format!("{field} must have string keys, got the int key {i}"))),
            ArrayKey::String(s) => Ok((s, v)),
            other => Ok((other.to_string(), v)),
        })
        .collect()
}
