//! Property tests: no tampering with any part of an envelope, or of where it
//! is opened, ever lets it open.

use bm_proto::envelope::DEFAULT_MAX_CIPHERTEXT;
use bm_proto::{b64, Envelope, EventId, KeyId, SiteId, SiteSecret};
use proptest::prelude::*;

const SECRET: &str = "IpHYzcMQQR5-wnN4pmHJNRh8B-TVY26bw8QAsnJEuM0";

fn sealed(plain: &[u8]) -> (SiteId, Envelope) {
    let site = SiteId::new("example.com").unwrap();
    let key = SiteSecret::from_b64(SECRET).unwrap().content_key().key_for(KeyId::parse("t/12/0").unwrap());
    (site.clone(), Envelope::seal(&site, &key, EventId::new("OMJ180rtBWrW6o7spBkvoQ").unwrap(), plain))
}

/// Opens as a browser would: with the key the envelope names.
fn opens(site: &SiteId, env: &Envelope) -> bool {
    let content = SiteSecret::from_b64(SECRET).unwrap().content_key();
    env.open(site, &content.key_for(env.k), DEFAULT_MAX_CIPHERTEXT).is_ok()
}

fn flip(text: &str, index: usize, bit: u8) -> Option<String> {
    let mut bytes = b64::decode(text).ok()?;
    let i = index % bytes.len();
    bytes[i] ^= 1 << (bit % 8);
    Some(b64::encode(bytes))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn flipped_ciphertext_bit_never_opens(plain in proptest::collection::vec(any::<u8>(), 0..300), i in any::<usize>(), bit in any::<u8>()) {
        let (site, mut env) = sealed(&plain);
        prop_assert!(opens(&site, &env));
        env.c = flip(&env.c, i, bit).unwrap();
        prop_assert!(!opens(&site, &env));
    }

    #[test]
    fn flipped_nonce_bit_never_opens(i in any::<usize>(), bit in any::<u8>()) {
        let (site, mut env) = sealed(b"{\"type\":\"x\",\"data\":1}");
        env.n = flip(&env.n, i, bit).unwrap();
        prop_assert!(!opens(&site, &env));
    }

    #[test]
    fn other_event_id_never_opens(id in "[A-Za-z0-9_-]{1,64}") {
        let (site, mut env) = sealed(b"{}");
        prop_assume!(id != env.id.as_str());
        env.id = EventId::new(id).unwrap();
        prop_assert!(!opens(&site, &env));
    }

    #[test]
    fn other_key_id_never_opens(t in 1u64..(1u64 << 53), e in any::<u32>(), user in proptest::option::of(1u64..1000)) {
        let (site, mut env) = sealed(b"{}");
        let k = match user {
            Some(u) => format!("u/{u}"),
            None => format!("t/{t}/{e}"),
        };
        prop_assume!(k != "t/12/0");
        env.k = KeyId::parse(&k).unwrap();
        prop_assert!(!opens(&site, &env));
    }

    #[test]
    fn other_site_never_opens(other in "[a-z0-9][a-z0-9._-]{0,63}") {
        let (site, env) = sealed(b"{}");
        prop_assume!(other != site.as_str());
        prop_assert!(!opens(&SiteId::new(other).unwrap(), &env));
    }

    #[test]
    fn truncated_or_extended_ciphertext_never_opens(cut in 1usize..40, extra in proptest::collection::vec(any::<u8>(), 1..20)) {
        let (site, env) = sealed(b"{\"type\":\"message.new\",\"data\":{\"text\":\"hello\"}}");
        let c = b64::decode(&env.c).unwrap();
        let mut short = env.clone();
        short.c = b64::encode(&c[..c.len().saturating_sub(cut)]);
        prop_assert!(!opens(&site, &short));
        let mut long = env.clone();
        long.c = b64::encode([c.as_slice(), extra.as_slice()].concat());
        prop_assert!(!opens(&site, &long));
    }

    #[test]
    fn random_json_never_panics(text in ".{0,200}") {
        let _ = Envelope::parse(&text, DEFAULT_MAX_CIPHERTEXT);
        let _ = bm_proto::frames::ClientFrame::parse(&text);
        let _ = bm_proto::api::PushRequest::parse(&text, &Default::default());
    }
}
