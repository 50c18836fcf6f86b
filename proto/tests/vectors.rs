//! Reproduces every vector in `testdata/crypto-v1.json` (a copy of
//! `../shared/vectors/crypto-v1.json`, made outside the project).

use bm_proto::envelope::{aad, DEFAULT_MAX_CIPHERTEXT};
use bm_proto::token::{self, Claims, TokenKind};
use bm_proto::{b64, signing, Envelope, EnvelopeError, EventId, KeyId, RelayKey, SiteId, SiteSecret};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/crypto-v1.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read vectors")).expect("vectors are JSON")
}

fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

#[test]
fn repo_copy_matches_shared_vectors_when_present() {
    let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors/crypto-v1.json");
    if let Ok(text) = std::fs::read_to_string(shared) {
        let ours: Value = vectors();
        let theirs: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(ours, theirs, "testdata/crypto-v1.json differs from ../shared/vectors");
    }
}

#[test]
fn key_derivations() {
    let v = vectors();
    assert_eq!(s(&v["salt"]), "bm-relay/v1");
    let sites = v["sites"].as_array().unwrap();
    assert!(sites.len() >= 3);
    let mut checked = 0;
    for site in sites {
        let secret = SiteSecret::from_b64(s(&site["secret"])).unwrap();
        assert_eq!(secret.relay_key().to_b64(), s(&site["relay_key"]));
        let content = secret.content_key();
        assert_eq!(content.to_b64(), s(&site["content_key"]));
        for tk in site["thread_keys"].as_array().unwrap() {
            let kid = KeyId::parse(s(&tk["kid"])).unwrap();
            assert_eq!(
                kid,
                KeyId::Thread {
                    thread: bm_proto::ThreadId::new(tk["thread"].as_u64().unwrap()).unwrap(),
                    epoch: bm_proto::Epoch(tk["epoch"].as_u64().unwrap() as u32),
                }
            );
            assert_eq!(content.key_for(kid).to_b64(), s(&tk["key"]), "{kid}");
            checked += 1;
        }
        for uk in site["user_keys"].as_array().unwrap() {
            let kid = KeyId::parse(s(&uk["kid"])).unwrap();
            assert_eq!(kid.user().unwrap().get(), uk["user"].as_u64().unwrap());
            assert_eq!(content.key_for(kid).to_b64(), s(&uk["key"]), "{kid}");
            checked += 1;
        }
    }
    assert_eq!(checked, 21);
}

#[test]
fn envelopes_open_and_reseal_identically() {
    let v = vectors();
    let (mut opened, mut refused) = (0, 0);
    for case in v["envelopes"].as_array().unwrap() {
        let site = SiteId::new(s(&case["site"])).unwrap();
        let content = SiteSecret::from_b64(s(&case["secret"])).unwrap().content_key();
        let json = case["envelope"].to_string();
        let env = Envelope::parse(&json, DEFAULT_MAX_CIPHERTEXT).unwrap();
        let key = content.key_for(env.k);
        if case["must_fail"].as_bool() == Some(true) {
            assert_eq!(env.open(&site, &key, DEFAULT_MAX_CIPHERTEXT), Err(EnvelopeError::Open));
            refused += 1;
            continue;
        }
        assert_eq!(aad(&site, &env.id, env.k), s(&case["aad"]).as_bytes());
        let plain = env.open(&site, &key, DEFAULT_MAX_CIPHERTEXT).unwrap();
        assert_eq!(std::str::from_utf8(&plain).unwrap(), s(&case["plaintext"]));
        env.open_payload(&site, &key, DEFAULT_MAX_CIPHERTEXT).unwrap();
        // Sealing the same plaintext under the same nonce gives the same bytes.
        let nonce = b64::decode_array::<12>(&env.n).unwrap();
        let again = Envelope::seal_with_nonce(&site, &key, EventId::new(env.id.as_str()).unwrap(), nonce, &plain);
        assert_eq!(again, env);
        opened += 1;
    }
    assert_eq!((opened, refused), (12, 3));
}

#[test]
fn tokens_byte_identical() {
    let v = vectors();
    let cases = v["tokens"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let key = RelayKey::from_b64(s(&case["relay_key"])).unwrap();
        let claims: Claims = serde_json::from_value(case["claims"].clone()).unwrap();
        let token = claims.mint(&key);
        assert_eq!(token, s(&case["token"]));
        let kind = if claims.thread.is_some() { TokenKind::Thread } else { TokenKind::Connection };
        let site = SiteId::new(s(&case["site"])).unwrap();
        let back = token::verify(&token, kind, claims.iat + 1, |s| (s == &site).then_some(&key)).unwrap();
        assert_eq!(back, claims);
        assert!(token::verify(&token, kind, claims.exp, |s| (s == &site).then_some(&key)).is_err());
    }
}

#[test]
fn push_signatures_byte_identical() {
    let v = vectors();
    let cases = v["push_signatures"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let key = RelayKey::from_b64(s(&case["relay_key"])).unwrap();
        let site = SiteId::new(s(&case["site"])).unwrap();
        let ts = case["timestamp"].as_u64().unwrap();
        let body = s(&case["body"]).as_bytes();
        let header = signing::sign(&key, ts, &site, s(&case["method"]), s(&case["path"]), body);
        assert_eq!(header, s(&case["header"]));
        signing::verify(&key, &ts.to_string(), &header, &site, "POST", "/v1/push", body, ts, 60).unwrap();
        // The body inside is a valid push request.
        bm_proto::api::PushRequest::parse(s(&case["body"]), &Default::default()).unwrap();
    }
}

/// `testdata/multisite-v1.json` (scripts/gen-multisite-vectors.py, an
/// independent HKDF in Python): per-blog site secrets of a network (§3.1).
#[test]
fn multisite_blog_secrets() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/multisite-v1.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read vectors")).expect("JSON");
    let mut checked = 0;
    for net in v["networks"].as_array().unwrap() {
        let network = SiteSecret::from_b64(s(&net["network_secret"])).unwrap();
        assert!(network.blog_secret(0).is_none());
        assert!(network.blog_secret(bm_proto::ids::MAX_ID + 1).is_none());
        for b in net["blogs"].as_array().unwrap() {
            let blog = network.blog_secret(b["blog"].as_u64().unwrap()).unwrap();
            assert_eq!(blog.to_b64(), s(&b["blog_secret"]));
            assert_eq!(blog.relay_key().to_b64(), s(&b["relay_key"]));
            let content = blog.content_key();
            assert_eq!(content.to_b64(), s(&b["content_key"]));
            for k in [&b["thread_key"], &b["user_key"]] {
                assert_eq!(content.key_for(KeyId::parse(s(&k["kid"])).unwrap()).to_b64(), s(&k["key"]));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
}

/// `testdata/pseudonyms-v2.json` (scripts/gen-pseudonym-vectors.py, an
/// independent HKDF and HMAC in Python): the v2 pseudonyms of users and
/// threads (§3.2), and the key ids and keys they lead to.
#[test]
fn pseudonyms_v2() {
    use bm_proto::ids::{Epoch, ThreadId, UserId};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/pseudonyms-v2.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read vectors")).expect("JSON");
    let mut checked = 0;
    for site in v["sites"].as_array().unwrap() {
        let secret = SiteSecret::from_b64(s(&site["site_secret"])).unwrap();
        let pkey = secret.pseudonym_key();
        assert_eq!(pkey.to_b64(), s(&site["pseudonym_key"]));
        let content = secret.content_key();
        for u in site["users"].as_array().unwrap() {
            let p = pkey.user(UserId::new(u["user"].as_u64().unwrap()).unwrap());
            assert_eq!(p.get(), u["pseudonym"].as_u64().unwrap(), "user {}", u["user"]);
            let key = content.user_key(p);
            assert_eq!(key.id().to_string(), s(&u["kid"]));
            assert_eq!(key.to_b64(), s(&u["key"]));
            checked += 1;
        }
        for t in site["threads"].as_array().unwrap() {
            let p = pkey.thread(ThreadId::new(t["thread"].as_u64().unwrap()).unwrap());
            assert_eq!(p.get(), t["pseudonym"].as_u64().unwrap(), "thread {}", t["thread"]);
            let key = content.thread_key(p, Epoch(t["epoch"].as_u64().unwrap() as u32));
            assert_eq!(key.id().to_string(), s(&t["kid"]));
            assert_eq!(key.to_b64(), s(&t["key"]));
            checked += 1;
        }
    }
    assert_eq!(checked, 20);
}

/// The wire vectors of `testdata/pseudonyms-v2.json`: v2 tokens (claim
/// `"v":2` between `thread` and `iat`, for the pseudonyms) minted byte for
/// byte and verified, and envelopes under pseudonymous keys sealed byte
/// for byte with the vector's nonce and opened.
#[test]
fn wire_v2() {
    use bm_proto::ids::{ThreadId, UserId};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/pseudonyms-v2.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read vectors")).expect("JSON");
    let mut checked = 0;
    for site in v["sites"].as_array().unwrap() {
        let secret = SiteSecret::from_b64(s(&site["site_secret"])).unwrap();
        let id = SiteId::new(s(&site["site"])).unwrap();
        let relay = secret.relay_key();
        assert_eq!(relay.to_b64(), s(&site["relay_key"]));
        let pkey = secret.pseudonym_key();
        for t in site["tokens"].as_array().unwrap() {
            let c = &t["claims"];
            let (iat, exp) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap());
            let user = pkey.user(UserId::new(t["user"].as_u64().unwrap()).unwrap());
            let claims = match t["thread"].as_u64() {
                Some(th) => Claims::thread(id.clone(), user, pkey.thread(ThreadId::new(th).unwrap()), iat, exp - iat),
                None => Claims::connection(id.clone(), user, iat, exp - iat),
            }
            .with_protocol(2);
            assert_eq!(claims.mint(&relay), s(&t["token"]));
            let kind = if t["thread"].is_null() { TokenKind::Connection } else { TokenKind::Thread };
            let got = token::verify(s(&t["token"]), kind, iat + 1, |_| Some(&relay)).unwrap();
            assert_eq!((got.protocol(), got), (2, claims));
            checked += 1;
        }
        for e in site["envelopes"].as_array().unwrap() {
            let env = &e["envelope"];
            let kid = KeyId::parse(s(&env["k"])).unwrap();
            let key = secret.content_key().key_for(kid);
            assert_eq!(key.to_b64(), s(&e["key"]));
            assert_eq!(aad(&id, &EventId::new(s(&env["id"])).unwrap(), kid), s(&e["aad"]).as_bytes());
            let nonce: [u8; 12] = b64::decode(s(&env["n"])).unwrap().try_into().unwrap();
            let sealed = Envelope::seal_with_nonce(
                &id,
                &key,
                EventId::new(s(&env["id"])).unwrap(),
                nonce,
                s(&e["plaintext"]).as_bytes(),
            );
            assert_eq!(serde_json::from_str::<Value>(&sealed.to_json()).unwrap(), *env);
            let parsed = Envelope::parse(&env.to_string(), DEFAULT_MAX_CIPHERTEXT).unwrap();
            assert_eq!(parsed.open(&id, &key, DEFAULT_MAX_CIPHERTEXT).unwrap(), s(&e["plaintext"]).as_bytes());
            checked += 1;
        }
    }
    assert_eq!(checked, 8);
}
