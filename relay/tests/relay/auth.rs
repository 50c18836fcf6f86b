//! Every authentication failure gives its code: server API (401 with
//! `bad_signature`, `stale`, `unknown_site`) and sockets (4001, 4009,
//! `forbidden`), plus token expiry and refresh on a live socket.

use std::time::Duration;

use bm_proto::b64;
use bm_proto::signing;
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn server_api_auth_failures() {
    let r = Relay::start("").await;
    let body = json!({"events":[]}).to_string();
    let ts = now();
    let sig = signing::sign(&r.site.secret.relay_key(), ts, &r.site.id, "POST", "/v1/push", body.as_bytes());
    let h = |site: &str, ts: u64, sig: &str| {
        vec![("X-BM-Site", site.to_owned()), ("X-BM-Timestamp", ts.to_string()), ("X-BM-Signature", sig.to_owned())]
    };

    let (s, v) = raw_post(r.port, "/v1/push", &h(SITE, ts, &sig), &body).await;
    assert_eq!(s, 200, "{v}");
    // Bad signature: one flipped hex digit, another body, another endpoint.
    let flipped = format!("{}{}", &sig[..10], if &sig[10..11] == "0" { "1" } else { "0" }) + &sig[11..];
    for (path, b, sg) in [
        ("/v1/push", body.as_str(), flipped.as_str()),
        ("/v1/push", "{\"events\": []}", sig.as_str()),
        ("/v1/presence", body.as_str(), sig.as_str()),
    ] {
        let (s, v) = raw_post(r.port, path, &h(SITE, ts, sg), b).await;
        assert_eq!((s, v["error"]["code"].as_str()), (401, Some("bad_signature")), "{path} {v}");
    }
    // Stale: correctly signed, but 120 s old (skew 60 s).
    let old = ts - 120;
    let old_sig = signing::sign(&r.site.secret.relay_key(), old, &r.site.id, "POST", "/v1/push", body.as_bytes());
    let (s, v) = raw_post(r.port, "/v1/push", &h(SITE, old, &old_sig), &body).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("stale")), "{v}");
    // Unknown site, correctly signed with its own key.
    let stranger = Site::new("stranger.example");
    let (s, v) = signed_post(r.port, &stranger, "/v1/push", &body, ts).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unknown_site")), "{v}");
    // Missing headers.
    let (s, v) = raw_post(r.port, "/v1/push", &[], &body).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(r.metric("bm_relay_requests_total{endpoint=\"push\",result=\"unauthorized\"}").await, 5.0);
}

/// Auth with `token` on a fresh socket; returns the error frame (if any) and the close.
async fn auth_fails(r: &Relay, token: &str) -> (Option<Value>, u16) {
    let mut c = Client::connect(&r.ws_url()).await;
    c.send(json!({"op":"auth","token":token,"ref":1})).await;
    let mut err = None;
    loop {
        match c.next_within(Duration::from_secs(3)).await {
            Some(Seen::Frame(f)) => err = Some(f),
            Some(Seen::Close(code, _)) => return (err, code),
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

fn forge(header: &str, claims: &Value, key: &[u8]) -> String {
    use hmac::Mac;
    let input = format!("{}.{}", b64::encode(header), b64::encode(claims.to_string()));
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(input.as_bytes());
    format!("{input}.{}", b64::encode(m.finalize().into_bytes()))
}

#[tokio::test]
async fn socket_auth_failures_give_their_codes() {
    let b = Site::new("b.example");
    let a = Site::new(SITE);
    let r = Relay::start_with(a.clone(), &[&a, &b], "").await;
    let n = now();
    let claims = json!({"site": SITE, "sub": "2", "iat": n, "exp": n + 600});
    let key = a.secret.relay_key();

    // alg none.
    let none = format!("{}.{}.", b64::encode(r#"{"alg":"none","typ":"JWT"}"#), b64::encode(claims.to_string()));
    let (err, code) = auth_fails(&r, &none).await;
    assert_eq!(code, 4001);
    assert_eq!(err.unwrap()["code"], "bad_token");
    // Bad signature (site b's key, claiming site a).
    let (_, code) =
        auth_fails(&r, &forge(r#"{"alg":"HS256","typ":"JWT"}"#, &claims, b.secret.relay_key().as_bytes())).await;
    assert_eq!(code, 4001);
    // Unknown site.
    let stranger = Site::new("stranger.example");
    assert_eq!(auth_fails(&r, &stranger.token(2)).await.1, 4001);
    // Expired: 4009, with a token_expired error first.
    let expired = forge(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &json!({"site": SITE, "sub": "2", "iat": n - 100, "exp": n - 10}),
        key.as_bytes(),
    );
    let (err, code) = auth_fails(&r, &expired).await;
    assert_eq!((err.unwrap()["code"].as_str(), code), (Some("token_expired"), 4009));
    // A thread token is not a connection token.
    assert_eq!(auth_fails(&r, &a.thread_token(2, 7)).await.1, 4001);
    // Garbage.
    assert_eq!(auth_fails(&r, "not.a.token").await.1, 4001);

    // First frame not auth.
    let mut c = Client::connect(&r.ws_url()).await;
    c.send(json!({"op":"ping","ref":1})).await;
    assert_eq!(c.closed(Duration::from_secs(3)).await.0, 4001);
    // Late auth: nothing within auth_timeout_secs (1 s in tests).
    let mut c = Client::connect(&r.ws_url()).await;
    let (code, reason) = c.closed(Duration::from_secs(4)).await;
    assert_eq!((code, reason.as_str()), (4001, "auth timeout"));

    // Wrong site / user / thread in a thread token: `forbidden`, socket stays.
    let mut c = r.client(2).await;
    for (tok, thread) in [(b.thread_token(2, 7), 7), (a.thread_token(3, 7), 7), (a.thread_token(2, 8), 7)] {
        c.send(json!({"op":"sub","thread":thread,"token":tok,"ref":1})).await;
        assert_eq!(c.recv().await["code"], "forbidden");
    }
    // A connection token where a thread token belongs: bad_token.
    c.send(json!({"op":"sub","thread":7,"token":a.token(2),"ref":2})).await;
    assert_eq!(c.recv().await["code"], "bad_token");
    c.send(json!({"op":"auth","token":a.token(2),"ref":3})).await;
    assert_eq!(c.recv().await["code"], "already_authenticated");
    c.sub(&a, 2, 7).await;
    assert!(r.metric("bm_relay_closes_total{code=\"4001\"}").await >= 6.0);
}

#[tokio::test]
async fn token_expiry_closes_4009_unless_refreshed() {
    let r = Relay::start("").await;
    let connect = |ttl| {
        let url = r.ws_url();
        let tok = r.site.token_ttl(2, ttl);
        async move {
            let mut c = Client::connect(&url).await;
            c.send(json!({"op":"auth","token":tok})).await;
            assert_eq!(c.recv().await["op"], "ready");
            c
        }
    };
    let mut lapsing = connect(2).await;
    let mut refreshed = connect(2).await;
    refreshed.send(json!({"op":"refresh","token": r.site.token_ttl(2, 3600),"ref":1})).await;
    assert_eq!(refreshed.recv().await, json!({"op":"ok","ref":1}));
    // A refresh for another user is refused.
    refreshed.send(json!({"op":"refresh","token": r.site.token(3),"ref":2})).await;
    assert_eq!(refreshed.recv().await["code"], "forbidden");
    let (code, _) = lapsing.closed(Duration::from_secs(5)).await;
    assert_eq!(code, 4009);
    refreshed.send(json!({"op":"ping","ref":3})).await;
    assert_eq!(refreshed.recv().await, json!({"op":"pong","ref":3}));
}
