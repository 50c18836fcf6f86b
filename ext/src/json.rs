//! JSON through PHP's own `json_encode` / `json_decode`.
//!
//! The pure-PHP fallback encodes plaintext with
//! `json_encode(['type' => …, 'data' => …], JSON_UNESCAPED_SLASHES |
//! JSON_UNESCAPED_UNICODE)`; calling the same function here gives identical
//! bytes for every PHP value (floats under `serialize_precision`,
//! `JsonSerializable` objects, empty arrays as `[]`, U+2028 escaped …), which
//! a Rust re-implementation could only approximate.

use ext_php_rs::types::{ZendCallable, ZendHashTable, Zval};

use crate::error::{BmError, BmResult};

/// `JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE`.
const ENCODE_FLAGS: i64 = 64 | 256;

fn call(name: &str, args: Vec<&dyn ext_php_rs::convert::IntoZvalDyn>) -> BmResult<Zval> {
    let f = ZendCallable::try_from_name(name).map_err(|e| BmError::input(format!("cannot call {name}(): {e}")))?;
    f.try_call(args).map_err(|e| BmError::input(format!("{name}() failed: {e}")))
}

fn last_error_msg() -> String {
    call("json_last_error_msg", vec![]).ok().and_then(|z| z.string()).unwrap_or_else(|| "unknown JSON error".into())
}

/// The plaintext `{"type":…,"data":…}` of an event, as `json_encode` writes
/// it. An unencodable `data` is an error naming `field`.
pub fn encode_payload<F: std::fmt::Display + ?Sized>(kind: &str, data: &Zval, field: &F) -> BmResult<Vec<u8>> {
    let mut ht = ZendHashTable::with_capacity(2);
    ht.insert("type", kind).map_err(|e| BmError::input(format!("{field}: {e}")))?;
    ht.insert("data", data.dereference().shallow_clone()).map_err(|e| BmError::input(format!("{field}: {e}")))?;
    let mut arr = Zval::new();
    arr.set_hashtable(ht);
    let out = call("json_encode", vec![&arr, &ENCODE_FLAGS])?;
    match out.zend_str() {
        Some(s) => Ok(s.as_bytes().to_vec()),
        None => Err(BmError::input(format!("{field} is not JSON-encodable: {}", last_error_msg()))),
    }
}

/// `json_decode($text, true)`; invalid JSON is an error naming `field`.
pub fn decode_assoc(text: &str, field: &str) -> BmResult<Zval> {
    let out = call("json_decode", vec![&text, &true])?;
    if out.is_null() && text.trim() != "null" {
        return Err(BmError::input(format!("{field} is not valid JSON: {}", last_error_msg())));
    }
    Ok(out)
}
