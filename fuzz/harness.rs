//! The fuzz targets' bodies, in one place.
//!
//! Each `fuzz/fuzz_targets/<name>.rs` is one line calling the function of
//! the same name here (cargo-fuzz, nightly), and `relay/tests/fuzz_corpus.rs`
//! (stable, part of `make test`) feeds every file of `fuzz/corpus/<name>/`
//! and `fuzz/artifacts/<name>/` to the very same function. A function here
//! returns normally for any input; a panic (a crash, or a broken invariant
//! asserted below) is a finding.
//!
//! Dependencies: `bm_proto`, `bm_relay` (the config target), `serde_json`,
//! `hmac` and `sha2` only, so that both crates can include this file.

use bm_proto::api::{self, DisconnectRequest, Limits, PresenceRequest, PushRequest};
use bm_proto::envelope::{Envelope, DEFAULT_MAX_CIPHERTEXT, NONCE_LEN};
use bm_proto::frames::{self, ClientFrame, ClientOp, ServerFrame};
use bm_proto::token::{self, Claims, TokenError, TokenKind};
use bm_proto::{b64, signing, KeyId, RelayKey, SiteId, SiteSecret};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A target's body: takes any bytes, panics only on a finding.
pub type Target = fn(&[u8]);

/// Every target: its name (the directory names under `fuzz/corpus/` and
/// `fuzz/artifacts/`, and the `[[bin]]` names in `fuzz/Cargo.toml`) and body.
pub const TARGETS: &[(&str, Target)] = &[
    ("envelope", envelope),
    ("token", token),
    ("client_frame", client_frame),
    ("push_body", push_body),
    ("users_body", users_body),
    ("signing", signing),
    ("config", config),
];

/// The site of `testdata/crypto-v1.json`'s first vectors.
pub const SITE: &str = "example.com";
/// Its site secret (same vectors).
pub const SECRET: &str = "IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM0";
/// The clock of the token and signing targets: 100 s after the vectors'
/// `iat` / timestamp (1764000000), so the vectors verify.
pub const NOW: u64 = 1_764_000_100;

fn site() -> SiteId {
    SiteId::new(SITE).expect("valid site id")
}

fn secret() -> SiteSecret {
    SiteSecret::from_b64(SECRET).expect("valid secret")
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Envelope JSON: parse (shape checks), canonical re-encoding, open with
/// the key the envelope names (derived from the vectors' secret), and the
/// re-seal of what opened.
pub fn envelope(data: &[u8]) {
    let Some(json) = text(data) else { return };
    // Two limits: the default, and one small enough that size errors happen.
    let small = Envelope::parse(json, 32);
    let Ok(env) = Envelope::parse(json, DEFAULT_MAX_CIPHERTEXT) else {
        assert!(small.is_err(), "a smaller limit cannot accept what the default refuses");
        return;
    };
    // The canonical text is serde_json's, byte for byte, and reads back.
    let canonical = env.to_json();
    assert_eq!(canonical, serde_json::to_string(&env).expect("serializes"));
    let back = Envelope::parse(&canonical, DEFAULT_MAX_CIPHERTEXT).expect("canonical text parses");
    assert_eq!(back, env);
    assert_eq!(KeyId::parse(&env.k.to_string()).expect("key id text round-trips"), env.k);
    assert_eq!(b64::decode(&env.n).expect("checked nonce").len(), NONCE_LEN);
    let c_len = b64::decode(&env.c).expect("checked ciphertext").len();
    assert_eq!(b64::decoded_len(env.c.len()), Some(c_len));
    assert!((bm_proto::envelope::TAG_LEN..=DEFAULT_MAX_CIPHERTEXT).contains(&c_len));
    assert_eq!(small.is_ok(), c_len <= 32);

    let key = secret().content_key().key_for(env.k);
    match env.open(&site(), &key, DEFAULT_MAX_CIPHERTEXT) {
        Ok(plain) => {
            // Only a genuine envelope opens: sealing its plaintext again with
            // the same nonce must give the very same ciphertext.
            let nonce = b64::decode_array::<NONCE_LEN>(&env.n).expect("checked nonce");
            let again = Envelope::seal_with_nonce(&site(), &key, env.id.clone(), nonce, &plain);
            assert_eq!(again, env, "seal(open(e)) != e");
            let other = SiteId::new("example.org").expect("valid");
            assert!(env.open(&other, &key, DEFAULT_MAX_CIPHERTEXT).is_err(), "opened under another site's AAD");
            if let Ok(p) = bm_proto::Payload::from_plaintext(&plain) {
                let re = bm_proto::Payload::from_plaintext(&p.to_plaintext()).expect("payload round-trips");
                assert_eq!(re, p);
            }
        }
        Err(e) => {
            assert!(matches!(e, bm_proto::EnvelopeError::Open), "unexpected open error {e:?} for a checked envelope")
        }
    }
}

fn hmac_b64(key: &RelayKey, input: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    m.update(input);
    b64::encode(m.finalize().into_bytes())
}

fn check_token(tok: &str, key: &RelayKey) {
    for kind in [TokenKind::Connection, TokenKind::Thread] {
        let r = token::verify(tok, kind, NOW, |s| (s.as_str() == SITE).then_some(key));
        match r {
            Ok(c) => {
                assert!(tok.len() <= token::MAX_TOKEN_LEN);
                assert!(c.exp > NOW, "verified an expired token");
                assert!(c.exp > c.iat, "verified a token with exp <= iat");
                assert!(c.iat <= NOW + token::IAT_LEEWAY_SECS, "verified a token from the future");
                assert_eq!(c.kind(), kind, "verified a token of the other kind");
                assert_eq!(c.site.as_str(), SITE);
                // Minting the same claims gives a token that verifies to them.
                let minted = c.mint(key);
                let again = token::verify(&minted, kind, NOW, |s| (s.as_str() == SITE).then_some(key));
                assert_eq!(again.as_ref(), Ok(&c), "mint(verify(t)) does not verify to the same claims");
                // Claims survive JSON.
                let json = serde_json::to_string(&c).expect("claims serialize");
                assert_eq!(serde_json::from_str::<Claims>(&json).expect("claims read back"), c);
                // Any change to the signature is refused.
                let (input, sig) = tok.rsplit_once('.').expect("verified tokens have three parts");
                let flipped = format!(
                    "{input}.{}",
                    if sig.starts_with('A') { sig.replacen('A', "B", 1) } else { format!("A{}", &sig[1..]) }
                );
                assert!(token::verify(&flipped, kind, NOW, |_| Some(key)).is_err(), "a changed signature verified");
            }
            Err(TokenError::Revoked) => panic!("verify never returns Revoked by itself"),
            Err(_) => {}
        }
    }
    // A verifier that knows no site accepts nothing.
    assert!(token::verify(tok, TokenKind::Connection, NOW, |_| None).is_err());
}

/// Tokens. Three input forms, so the fuzzer reaches the checks behind the
/// signature: `header JSON \n claims JSON` (signed here with the site's
/// relay key), `{claims JSON}` (signed, with the standard header), or any
/// other text, verified as it is.
pub fn token(data: &[u8]) {
    let Some(input) = text(data) else { return };
    let key = secret().relay_key();
    if let Some((header, claims)) = input.split_once('\n') {
        let signing_input = format!("{}.{}", b64::encode(header), b64::encode(claims));
        let tok = format!("{signing_input}.{}", hmac_b64(&key, signing_input.as_bytes()));
        check_token(&tok, &key);
    } else if input.starts_with('{') {
        let signing_input = format!("{}.{}", token::HEADER_B64, b64::encode(input));
        let tok = format!("{signing_input}.{}", hmac_b64(&key, signing_input.as_bytes()));
        check_token(&tok, &key);
    }
    check_token(input, &key);
}

/// The op as JSON text, the way a client would write it; `e` goes in as
/// the very bytes received (the relay forwards them untouched; a trip
/// through `serde_json::Value` would round floats).
fn frame_text(f: &ClientFrame<'_>) -> String {
    let s = |t: &str| serde_json::to_string(t).expect("strings serialize");
    let mut out = match &f.op {
        ClientOp::Auth { token } => format!(r#"{{"op":"auth","token":{}"#, s(token)),
        ClientOp::Sub { thread, token } => format!(r#"{{"op":"sub","thread":{thread},"token":{}"#, s(token)),
        ClientOp::Unsub { thread } => format!(r#"{{"op":"unsub","thread":{thread}"#),
        ClientOp::Pub { thread, e } => format!(r#"{{"op":"pub","thread":{thread},"e":{}"#, e.get()),
        ClientOp::Refresh { token } => format!(r#"{{"op":"refresh","token":{}"#, s(token)),
        ClientOp::Ping => r#"{"op":"ping""#.to_string(),
        ClientOp::Presence { threads } => {
            let list: Vec<String> = threads.iter().map(ToString::to_string).collect();
            format!(r#"{{"op":"presence","threads":[{}]"#, list.join(","))
        }
    };
    if let Some(r) = f.r#ref {
        out.push_str(&format!(r#","ref":{r}"#));
    }
    out.push('}');
    out
}

/// Client frames: a frame that parses re-encodes to one that parses to the
/// same op; an error carries `bad_frame`, and the relay's `error` reply to
/// it is valid JSON with the same `ref`.
pub fn client_frame(data: &[u8]) {
    let Some(input) = text(data) else { return };
    match ClientFrame::parse(input) {
        Ok(f) => {
            // `e` is only captured here (its strings are not decoded, so a
            // lone surrogate escape passes); the relay forwards it only once
            // it parses as an envelope, and then it is JSON any parser reads.
            if let ClientOp::Pub { e, .. } = &f.op {
                if Envelope::parse(e.get(), DEFAULT_MAX_CIPHERTEXT).is_ok() {
                    serde_json::from_str::<serde_json::Value>(e.get()).expect("a valid envelope is strict JSON");
                }
            }
            let text = frame_text(&f);
            let again = ClientFrame::parse(&text).expect("a re-encoded frame parses");
            assert_eq!(frame_text(&again), text, "frame does not round-trip");
            if matches!(f.op, ClientOp::Ping) {
                let pong: ServerFrame = serde_json::from_str(&frames::pong(f.r#ref)).expect("pong is JSON");
                assert_eq!((pong.op.as_str(), pong.r#ref), ("pong", f.r#ref));
            }
        }
        Err(e) => {
            assert_eq!(e.code, frames::codes::BAD_FRAME);
            let reply: ServerFrame =
                serde_json::from_str(&frames::error(e.r#ref, e.code, &e.message)).expect("the error reply is JSON");
            assert_eq!(reply.op, "error");
            assert_eq!(reply.r#ref, e.r#ref);
            assert_eq!(reply.message.as_deref(), Some(e.message.as_str()));
        }
    }
}

fn limit_sets() -> [Limits; 2] {
    [Limits::default(), Limits { max_events: 2, max_recipients: 3, max_ciphertext: 40, max_body: 1 << 20 }]
}

/// Push bodies: every accepted event obeys the rules the relay relies on
/// (limits, deduplicated recipients, the user-key rule, the envelope's
/// exact bytes kept), and an accepted body re-encoded is accepted again.
pub fn push_body(data: &[u8]) {
    let Some(body) = text(data) else { return };
    for limits in limit_sets() {
        match PushRequest::parse(body, &limits) {
            Ok(events) => {
                assert!(events.len() <= limits.max_events);
                let mut re = Vec::new();
                for ev in &events {
                    assert!(ev.to.len() <= limits.max_recipients);
                    let mut seen = std::collections::HashSet::new();
                    assert!(ev.to.iter().all(|u| seen.insert(*u)), "recipients not deduplicated");
                    let parsed = Envelope::parse(ev.envelope_json, limits.max_ciphertext).expect("kept bytes parse");
                    assert_eq!(parsed, ev.envelope, "kept bytes are not the checked envelope");
                    if let KeyId::User(owner) = ev.envelope.k {
                        assert!(ev.thread.is_none() && ev.to == [owner], "user-key rule broken");
                    }
                    let e: serde_json::Value = serde_json::from_str(ev.envelope_json).expect("JSON");
                    let mut o = serde_json::json!({"to": ev.to.iter().map(|u| u.get()).collect::<Vec<_>>(), "e": e});
                    if let Some(t) = ev.thread {
                        o["thread"] = t.get().into();
                    }
                    re.push(o);
                }
                let again_text = serde_json::json!({"events": re}).to_string();
                let again = PushRequest::parse(&again_text, &limits).expect("a re-encoded accepted body is accepted");
                assert_eq!(again.len(), events.len());
                for (a, b) in again.iter().zip(&events) {
                    assert_eq!((&a.to, a.thread, &a.envelope), (&b.to, b.thread, &b.envelope));
                }
            }
            Err(e) => assert!(matches!(e.code.http_status(), 400 | 413), "push error {e:?}"),
        }
    }
}

/// Presence and disconnect bodies: accepted bodies round-trip and respect
/// the id limit; refusals are 400 or 413.
pub fn users_body(data: &[u8]) {
    let Some(body) = text(data) else { return };
    for limits in limit_sets() {
        match api::parse_users_body::<PresenceRequest>(body, &limits) {
            Ok(p) => {
                assert!(p.users.len() <= limits.max_recipients);
                let again = serde_json::to_string(&p).expect("serializes");
                assert_eq!(api::parse_users_body::<PresenceRequest>(&again, &limits).expect("round-trips"), p);
            }
            Err(e) => assert!(matches!(e.code.http_status(), 400 | 413), "presence error {e:?}"),
        }
        match api::parse_users_body::<DisconnectRequest>(body, &limits) {
            Ok(d) => {
                assert!(d.users.len() <= limits.max_recipients);
                let again = serde_json::to_string(&d).expect("serializes");
                assert_eq!(api::parse_users_body::<DisconnectRequest>(&again, &limits).expect("round-trips"), d);
            }
            Err(e) => assert!(matches!(e.code.http_status(), 400 | 413), "disconnect error {e:?}"),
        }
    }
}

/// Request signatures. Input: `timestamp \n signature \n method \n path \n
/// body` (missing parts are empty). Checks the arbitrary headers against
/// the site's key, and that `sign` and `verify` agree for any timestamp,
/// method, path and body.
pub fn signing(data: &[u8]) {
    let mut parts = data.splitn(5, |b| *b == b'\n');
    let mut next = || parts.next().unwrap_or_default();
    let (ts, sig, method, path, body) = (next(), next(), next(), next(), next());
    let (Some(ts), Some(sig), Some(method), Some(path)) = (text(ts), text(sig), text(method), text(path)) else {
        return;
    };
    let key = secret().relay_key();
    let site = site();
    let skew = signing::DEFAULT_MAX_SKEW_SECS;
    let r = signing::verify(&key, ts, sig, &site, method, path, body, NOW, skew);
    let parsed = bm_proto::ids::parse_canonical_decimal(ts.trim());
    if r.is_ok() {
        let t = parsed.expect("a verified timestamp is canonical");
        assert!(t.abs_diff(NOW) <= skew, "verified a stale timestamp");
    }
    if parsed.is_none() {
        assert_eq!(r, Err(signing::SignatureError::BadTimestamp));
    }
    // A fresh signature over the same request verifies (or is only stale),
    // in either case of hex; with another body it does not.
    if let Some(t) = parsed {
        let good = signing::sign(&key, t, &site, method, path, body);
        let want = if t.abs_diff(NOW) <= skew { Ok(()) } else { Err(signing::SignatureError::Stale) };
        assert_eq!(signing::verify(&key, ts, &good, &site, method, path, body, NOW, skew), want);
        let upper = format!("v1={}", good[3..].to_uppercase());
        assert_eq!(signing::verify(&key, ts, &upper, &site, method, path, body, NOW, skew), want);
        let mut other = body.to_vec();
        other.push(b'x');
        assert_eq!(
            signing::verify(&key, ts, &good, &site, method, path, &other, NOW, skew),
            Err(signing::SignatureError::BadSignature)
        );
    }
}

/// The relay's TOML configuration, read through `Config::from_toml` (the
/// file reader without the disk). An accepted configuration satisfies the
/// documented limit rules; no error message and no `Debug` output echoes a
/// value of `[sites]`.
pub fn config(data: &[u8]) {
    // Not UTF-8: the file reader refuses it before parsing.
    let Some(source) = text(data) else { return };
    let r = bm_relay::config::Config::from_toml(std::path::Path::new("fuzz.toml"), source);
    // The strings given as site keys: none may appear in output.
    let secrets: Vec<String> =
        text(data).and_then(|t| t.parse::<toml_lite::Doc>().ok()).map(|d| d.site_values).unwrap_or_default();
    match r {
        Ok(c) => {
            let l = &c.limits;
            assert!(l.idle_timeout_secs > l.ping_interval_secs);
            assert!(l.max_frame_bytes >= 256);
            for v in [
                l.auth_timeout_secs,
                l.ping_interval_secs,
                l.idle_timeout_secs,
                l.pub_rate_per_sec,
                l.frame_rate_per_sec,
            ] {
                assert!(v.is_finite() && v > 0.0);
                let _ = bm_relay::config::Limits::dur(v);
            }
            let shown = format!("{c:?}");
            for s in &secrets {
                assert!(!shown.contains(s.as_str()), "Debug shows a relay key");
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for s in &secrets {
                assert!(!msg.contains(s.as_str()), "error message echoes a [sites] value: {msg}");
            }
        }
    }
}

/// Just enough TOML reading to find the string values of a `[sites]`
/// table written one per line (`"site" = "value"`), for the secrecy check
/// above: values that look like a key (20 or more base64url characters)
/// and occur nowhere else in the file (so a message quoting another part
/// of it is not mistaken for a leak).
mod toml_lite {
    pub struct Doc {
        pub site_values: Vec<String>,
    }

    impl std::str::FromStr for Doc {
        type Err = ();
        fn from_str(text: &str) -> Result<Doc, ()> {
            let mut in_sites = false;
            let mut site_values = Vec::new();
            for line in text.lines() {
                let t = line.trim();
                if t.starts_with('[') {
                    in_sites = t == "[sites]";
                    continue;
                }
                if !in_sites {
                    continue;
                }
                if let Some((_, v)) = t.split_once('=') {
                    let v = v.trim();
                    if let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                        let key_like = inner.len() >= 20
                            && inner.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                        if key_like && text.matches(inner).count() == 1 {
                            site_values.push(inner.to_string());
                        }
                    }
                }
            }
            Ok(Doc { site_values })
        }
    }
}
