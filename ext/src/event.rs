//! One `bm_push` event: the PHP array checked field by field, sealed with
//! the right key, and turned into the JSON the push body carries.
//!
//! Key choice (protocol §3/§4): an event with `thread` is sealed with the
//! thread key `t/{thread}/{epoch}`; one without is sealed with the user key
//! of its single recipient (`u/{user}`, and so `to` must hold exactly that
//! user). `live` adds the thread's current subscribers as recipients.

use bm_proto::api::Limits;
use bm_proto::envelope::{Envelope, TAG_LEN};
use bm_proto::{Epoch, EventId, SiteId, ThreadId, UserId};
use ext_php_rs::types::Zval;

use crate::config::Keys;
use crate::error::{BmError, BmResult};
use crate::json;
use crate::pseudonyms::Mapper;
use crate::values;

/// Longest event type, in bytes.
pub const MAX_TYPE_LEN: usize = 128;

/// The keys an event array may have.
pub const EVENT_KEYS: [&str; 7] = ["type", "data", "to", "thread", "epoch", "live", "id"];

/// A sealed event, ready to send or show.
pub struct SealedEvent {
    /// Users whose sockets get it.
    pub to: Vec<UserId>,
    /// The thread whose subscribers also get it (only when `live`).
    pub live_thread: Option<ThreadId>,
    /// The envelope.
    pub envelope: Envelope,
    /// Protocol 2: the WordPress ids `to` was mapped from, index-aligned
    /// with it (so a sync push's `online` maps back exactly). Empty in
    /// protocol 1, where `to` holds them: no allocation there.
    pub wp_to: Vec<UserId>,
}

/// Names a field of the event at `prefix` (`'to'` or `events[2]['to']`)
/// in error messages; written out only when an error needs it.
#[derive(Clone, Copy)]
struct Field<'a> {
    prefix: &'a str,
    key: &'a str,
}

impl std::fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "'{}'", self.key)
        } else {
            write!(f, "{}['{}']", self.prefix, self.key)
        }
    }
}

fn field<'a>(prefix: &'a str, key: &'a str) -> Field<'a> {
    Field { prefix, key }
}

/// Checks an event array and seals it. With a `mapper` (protocol 2), `to`
/// and `thread` are replaced by their pseudonyms once checked, and so are
/// the key id and the key (`t/{P}/{epoch}`, `u/{P}`); the plaintext is
/// left as the caller wrote it (it is sealed).
pub fn seal(
    event: &Zval,
    prefix: &str,
    site: &SiteId,
    keys: &Keys,
    limits: &Limits,
    mapper: Option<&mut Mapper<'_>>,
) -> BmResult<SealedEvent> {
    let what = if prefix.is_empty() { "event" } else { prefix };
    let arr = values::array_of(event, what)?;
    let mut kind = None;
    let mut data = None;
    let mut to = Vec::new();
    let mut thread = None;
    let mut epoch = Epoch(0);
    let mut live = false;
    let mut id = None;
    for (key, value) in values::string_keys(arr, what)? {
        let f = field(prefix, key.as_str());
        let value = value.dereference();
        match key.as_str() {
            "type" => {
                let Some(s) = value.zend_str() else {
                    return Err(BmError::input(format!("{f} must be a string, got {}", values::type_name(value))));
                };
                let s = s.as_str().map_err(|_| BmError::input(format!("{f} must be valid UTF-8")))?;
                if s.is_empty() || s.len() > MAX_TYPE_LEN {
                    return Err(BmError::input(format!("{f} must be 1..{MAX_TYPE_LEN} bytes long, got {}", s.len())));
                }
                kind = Some(s.to_string());
            }
            "data" => data = Some(value),
            "to" => to = values::user_ids(value, &f, limits.max_recipients)?,
            "thread" => {
                if !value.is_null() {
                    thread = Some(values::thread_id(value, &f)?);
                }
            }
            "epoch" => epoch = values::epoch(value, &f)?,
            "live" => {
                live = value
                    .bool()
                    .ok_or_else(|| BmError::input(format!("{f} must be a bool, got {}", values::type_name(value))))?;
            }
            "id" => {
                if !value.is_null() {
                    let Some(s) = value.str() else {
                        return Err(BmError::input(format!(
                            "{f} must be a string or null, got {}",
                            values::type_name(value)
                        )));
                    };
                    id = Some(EventId::new(s).map_err(|e| BmError::input(format!("{f}: {e}")))?);
                }
            }
            _ => {
                return Err(BmError::input(format!(
                    "{what} has an unknown key '{key}' (known: {})",
                    EVENT_KEYS.join(", ")
                )))
            }
        }
    }
    let kind = kind.ok_or_else(|| BmError::input(format!("{} is required", field(prefix, "type"))))?;
    let mut wp_to = Vec::new();
    if let Some(m) = mapper {
        let pseudonyms = m.users(&to);
        wp_to = std::mem::replace(&mut to, pseudonyms);
        thread = thread.map(|t| m.thread(t));
    }
    let key = match thread {
        Some(t) => {
            if to.is_empty() && !live {
                return Err(BmError::input(format!(
                    "{} is empty and {} is false: the event would reach nobody",
                    field(prefix, "to"),
                    field(prefix, "live")
                )));
            }
            keys.envelope_key(bm_proto::KeyId::Thread { thread: t, epoch })
        }
        None => {
            if live {
                return Err(BmError::input(format!("{} needs {}", field(prefix, "live"), field(prefix, "thread"))));
            }
            if epoch.0 != 0 {
                return Err(BmError::input(format!("{} needs {}", field(prefix, "epoch"), field(prefix, "thread"))));
            }
            if to.len() != 1 {
                return Err(BmError::input(format!(
                    "{} must hold exactly one user id when {} is not set (the event is sealed with that user's key), got {}",
                    field(prefix, "to"),
                    field(prefix, "thread"),
                    to.len()
                )));
            }
            keys.envelope_key(bm_proto::KeyId::User(to[0]))
        }
    };
    let null = Zval::null();
    let plaintext = json::encode_payload(&kind, data.unwrap_or(&null), &field(prefix, "data"))?;
    let sealed_len = plaintext.len() + TAG_LEN;
    if sealed_len > limits.max_ciphertext {
        return Err(BmError::input(format!(
            "{} is too large: the sealed event is {sealed_len} bytes, over the limit of {}",
            field(prefix, "data"),
            limits.max_ciphertext
        )));
    }
    let id = id.unwrap_or_else(crate::random::event_id);
    let envelope = Envelope::seal_with_nonce(site, &key, id, crate::random::nonce(), &plaintext);
    Ok(SealedEvent { to, live_thread: if live { thread } else { None }, envelope, wp_to })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bm_proto::envelope::DEFAULT_MAX_CIPHERTEXT;
    use bm_proto::SiteSecret;
    use ext_php_rs::embed::Embed;

    fn fixture() -> (SiteId, Keys, Limits) {
        let secret = SiteSecret::from_b64("IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM0").unwrap();
        (SiteId::new("example.com").unwrap(), Keys::new(&secret), Limits::default())
    }

    /// Seals the PHP array literal `php`; Err carries the message.
    fn seal_php(php: &str, prefix: &str) -> Result<(SealedEvent, Vec<u8>), String> {
        let (site, keys, limits) = fixture();
        let ev = Embed::eval(php).map_err(|e| format!("eval: {e:?}"))?;
        let sealed = seal(&ev, prefix, &site, &keys, &limits, None).map_err(|e| e.to_string())?;
        let plain =
            sealed.envelope.open(&site, &keys.content.key_for(sealed.envelope.k), DEFAULT_MAX_CIPHERTEXT).unwrap();
        Ok((sealed, plain))
    }

    #[test]
    fn sealing_in_a_real_php_engine() {
        Embed::run(|| {
            // Thread key, live routing, ids from strings, json_encode's bytes.
            let (s, plain) = seal_php(
                r#"['type' => 'message.new', 'data' => ['t' => "é/\u{1F600}", 'n' => 1.0, 'f' => 0.1, 'e' => []], 'to' => [1, '2'], 'thread' => 12, 'epoch' => 3, 'live' => true, 'id' => 'abc']"#,
                "",
            )
            .unwrap();
            assert_eq!(s.to.iter().map(|u| u.get()).collect::<Vec<_>>(), [1, 2]);
            assert_eq!(s.live_thread.map(ThreadId::get), Some(12));
            assert_eq!((s.envelope.k.to_string(), s.envelope.id.as_str()), ("t/12/3".to_string(), "abc"));
            assert_eq!(
                String::from_utf8(plain).unwrap(),
                r#"{"type":"message.new","data":{"t":"é/😀","n":1,"f":0.1,"e":[]}}"#
            );
            // User key; data defaults to null; not live → no thread routing.
            let (s, plain) = seal_php("['type' => 'typing', 'to' => [7]]", "").unwrap();
            assert_eq!((s.envelope.k.to_string(), s.live_thread), ("u/7".to_string(), None));
            assert_eq!(plain, br#"{"type":"typing","data":null}"#);
            assert_eq!(s.envelope.id.as_str().len(), 22, "a random id");

            // Protocol 2: ids, key id and key are the pseudonyms'; the
            // WordPress ids are kept beside them; the plaintext is as given.
            let (site, keys, limits) = fixture();
            let ev = Embed::eval("['type' => 'm', 'data' => ['from' => 1], 'to' => [1, 2], 'thread' => 12, 'epoch' => 3, 'live' => true]").unwrap();
            let s = crate::pseudonyms::with_mapper(&keys, |m| seal(&ev, "", &site, &keys, &limits, Some(m))).unwrap();
            let p = keys.pseudonym();
            let (p1, p2, pt) = (
                p.user(UserId::new(1).unwrap()),
                p.user(UserId::new(2).unwrap()),
                p.thread(ThreadId::new(12).unwrap()),
            );
            assert_eq!((s.to.clone(), s.wp_to.iter().map(|u| u.get()).collect::<Vec<_>>()), (vec![p1, p2], vec![1, 2]));
            assert_eq!(s.live_thread, Some(pt));
            assert_eq!(s.envelope.k.to_string(), format!("t/{pt}/3"));
            let plain = s.envelope.open(&site, &keys.content.key_for(s.envelope.k), DEFAULT_MAX_CIPHERTEXT).unwrap();
            assert_eq!(plain, br#"{"type":"m","data":{"from":1}}"#);

            let cases = [
                ("['to' => [1]]", "", "'type' is required"),
                ("['type' => 'x', 'to' => [1, 2]]", "", "'to' must hold exactly one user id when 'thread' is not set (the event is sealed with that user's key), got 2"),
                ("['type' => 'x', 'thread' => 3]", "", "'to' is empty and 'live' is false: the event would reach nobody"),
                ("['type' => 'x', 'to' => [1], 'live' => true]", "", "'live' needs 'thread'"),
                ("['type' => 'x', 'to' => [1], 'data' => NAN]", "", "'data' is not JSON-encodable: Inf and NaN cannot be JSON encoded"),
                ("['type' => 'x', 'to' => [1], 'data' => str_repeat('a', 70000)]", "", "'data' is too large: the sealed event is 70038 bytes, over the limit of 65536"),
                ("['type' => 'x', 'to' => [0]]", "events[4]", "events[4]['to'][0] must be an integer 1..9007199254740991, got 0"),
                ("['type' => 'x', 'to' => [1], 'oops' => 1]", "events[1]", "events[1] has an unknown key 'oops' (known: type, data, to, thread, epoch, live, id)"),
                ("'not an array'", "", "event must be an array, got string"),
            ];
            for (php, prefix, want) in cases {
                match seal_php(php, prefix) {
                    Ok(_) => panic!("{php} was accepted"),
                    Err(msg) => assert_eq!(msg, want, "{php}"),
                }
            }
        });
    }
}
