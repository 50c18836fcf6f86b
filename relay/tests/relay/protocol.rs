//! Protocol v2 on the relay (docs/PROTOCOL.md §3.2): the `X-BM-Protocol: 2`
//! header and the `"v":2` token claim counted by version in /metrics, the
//! `[protocol] accept_v1` switch refusing v1 pushes (400
//! `protocol_v1_refused`) and v1 tokens (`bad_token`) while v2 passes, a
//! SIGHUP turning the switch, and a `v` claim other than 1 or 2 refused.
//! The CLI's `--protocol 2` (token, push) is checked in `cli.rs`.

use std::time::Duration;

use bm_proto::token::Claims;
use serde_json::{json, Value};

use crate::common::*;

const V1_OFF: &str = "\n[protocol]\naccept_v1 = false\n";

/// A v2 connection token (the ids are taken as already pseudonymous: the
/// relay cannot tell, and need not).
fn token_v2(site: &Site, user: u64) -> String {
    Claims::connection(site.id.clone(), u(user), now(), 3600).with_protocol(2).mint(&site.secret.relay_key())
}

fn thread_token_v2(site: &Site, user: u64, thread: u64) -> String {
    Claims::thread(site.id.clone(), u(user), t(thread), now(), 3600).with_protocol(2).mint(&site.secret.relay_key())
}

/// A signed POST with `X-BM-Protocol: 2` (on the cluster, to the first node).
async fn post_v2(r: &Relay, path: &str, body: &str) -> (u16, Value) {
    let ts = now();
    let sig = bm_proto::signing::sign(&r.site.secret.relay_key(), ts, &r.site.id, "POST", path, body.as_bytes());
    raw_post(
        r.port,
        path,
        &[
            ("X-BM-Site", r.site.id.to_string()),
            ("X-BM-Timestamp", ts.to_string()),
            ("X-BM-Signature", sig),
            ("X-BM-Protocol", "2".into()),
        ],
        body,
    )
    .await
}

/// Authenticates with `token`; returns the client after `ready`.
async fn client_with(r: &Relay, token: &str) -> Client {
    let mut c = Client::connect(&r.ws_url()).await;
    c.send(json!({"op":"auth","token": token})).await;
    let ready = c.recv().await;
    assert_eq!(ready["op"], "ready", "{ready}");
    c
}

fn push_body(r: &Relay, user: u64) -> String {
    json!({"events":[{"to":[user],"e": r.site.user_env(user, json!({"n":1}))}]}).to_string()
}

#[tokio::test]
async fn both_versions_are_accepted_by_default_and_counted_apart() {
    let r = Relay::start("").await;
    let mut v1 = r.client(3).await;
    let mut v2 = client_with(&r, &token_v2(&r.site, 4)).await;
    let (s, b) = r.post("/v1/push", &push_body(&r, 3)).await;
    assert_eq!((s, b["results"][0]["sockets"].as_u64()), (200, Some(1)), "{b}");
    assert_eq!(v1.recv().await["op"], "ev");
    let (s, b) = post_v2(&r, "/v1/push", &push_body(&r, 4)).await;
    assert_eq!((s, b["results"][0]["online"].clone()), (200, json!([4])), "{b}");
    assert_eq!(v2.recv().await["op"], "ev");
    let (s, _) = post_v2(&r, "/v1/presence", r#"{"users":[4]}"#).await;
    assert_eq!(s, 200);
    assert_eq!(r.metric("bm_relay_requests_by_protocol_total{protocol=\"1\"}").await, 1.0);
    assert_eq!(r.metric("bm_relay_requests_by_protocol_total{protocol=\"2\"}").await, 2.0);
    assert_eq!(r.metric("bm_relay_auths_by_protocol_total{protocol=\"1\"}").await, 1.0);
    assert_eq!(r.metric("bm_relay_auths_by_protocol_total{protocol=\"2\"}").await, 1.0);
    // An unsigned request counts nowhere: only senders that hold the key
    // tell the operator anything.
    let (s, _) = raw_post(r.port, "/v1/push", &[("X-BM-Protocol", "2".into())], "{}").await;
    assert_eq!(s, 401);
    assert_eq!(r.metric("bm_relay_requests_by_protocol_total{protocol=\"2\"}").await, 2.0);
}

#[tokio::test]
async fn with_accept_v1_false_v1_is_refused_and_v2_passes() {
    let r = Relay::start(V1_OFF).await;
    let mut v2 = client_with(&r, &token_v2(&r.site, 4)).await;
    // A v1 push: 400 with the documented code, nothing delivered.
    let (s, b) = r.post("/v1/push", &push_body(&r, 4)).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("protocol_v1_refused")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("X-BM-Protocol: 2"), "{b}");
    v2.silent_for(Duration::from_millis(200)).await;
    for path in ["/v1/presence", "/v1/disconnect"] {
        let (s, b) = r.post(path, r#"{"users":[4]}"#).await;
        assert_eq!((s, b["error"]["code"].as_str()), (400, Some("protocol_v1_refused")), "{path}: {b}");
    }
    // The same push as v2 is delivered.
    let (s, b) = post_v2(&r, "/v1/push", &push_body(&r, 4)).await;
    assert_eq!((s, b["results"][0]["sockets"].as_u64()), (200, Some(1)), "{b}");
    assert_eq!(v2.recv().await["op"], "ev");
    assert_eq!(r.metric("bm_relay_requests_by_protocol_total{protocol=\"1\"}").await, 3.0, "refused ones counted");

    // A v1 token: bad_token at auth (close 4001), at sub and at refresh.
    let mut c = Client::connect(&r.ws_url()).await;
    c.send(json!({"op":"auth","token": r.site.token(5),"ref":1})).await;
    let e = c.recv().await;
    assert_eq!((e["op"].as_str(), e["code"].as_str()), (Some("error"), Some("bad_token")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("accept_v1 = false"), "{e}");
    assert_eq!(c.closed(Duration::from_secs(5)).await.0, 4001);
    assert_eq!(r.metric("bm_relay_auths_by_protocol_total{protocol=\"1\"}").await, 1.0);
    v2.send(json!({"op":"sub","thread":9,"token": r.site.thread_token(4, 9),"ref":2})).await;
    let e = v2.recv().await;
    assert_eq!((e["code"].as_str(), e["ref"].as_i64()), (Some("bad_token"), Some(2)), "{e}");
    v2.send(json!({"op":"refresh","token": r.site.token(4),"ref":3})).await;
    let e = v2.recv().await;
    assert_eq!((e["code"].as_str(), e["ref"].as_i64()), (Some("bad_token"), Some(3)), "{e}");
    // v2 tokens pass at sub and refresh.
    v2.send(json!({"op":"sub","thread":9,"token": thread_token_v2(&r.site, 4, 9),"ref":4})).await;
    assert_eq!(v2.recv().await, json!({"op":"ok","ref":4}));
    v2.send(json!({"op":"refresh","token": token_v2(&r.site, 4),"ref":5})).await;
    assert_eq!(v2.recv().await, json!({"op":"ok","ref":5}));
}

#[tokio::test]
async fn a_reload_turns_accept_v1_off() {
    if single_node_only("rewrites one node's config file") {
        return;
    }
    let r = Relay::start("").await;
    assert_eq!(r.post("/v1/presence", r#"{"users":[1]}"#).await.0, 200);
    let off = format!("{FAST}{V1_OFF}");
    std::fs::write(&r.config_path, config_text(r.port, r.admin, &[&r.site], &off)).unwrap();
    r.signal(libc::SIGHUP);
    r.wait_log("configuration reloaded", Duration::from_secs(5)).await;
    let (s, b) = r.post("/v1/presence", r#"{"users":[1]}"#).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("protocol_v1_refused")), "{b}");
    assert_eq!(post_v2(&r, "/v1/presence", r#"{"users":[1]}"#).await.0, 200);
}

#[tokio::test]
async fn a_v_claim_other_than_1_or_2_is_a_bad_token() {
    let r = Relay::start("").await;
    for v in ["3", "0", "\"2\"", "null"] {
        let claims = format!(r#"{{"site":"{}","sub":"4","v":{v},"iat":{},"exp":{}}}"#, r.site.id, now(), now() + 600);
        let input = format!(
            "{}.{}",
            bm_proto::b64::encode(r#"{"alg":"HS256","typ":"JWT"}"#),
            bm_proto::b64::encode(claims.as_bytes())
        );
        let sig = {
            use hmac::Mac;
            let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(r.site.secret.relay_key().as_bytes()).unwrap();
            m.update(input.as_bytes());
            bm_proto::b64::encode(m.finalize().into_bytes())
        };
        let mut c = Client::connect(&r.ws_url()).await;
        c.send(json!({"op":"auth","token": format!("{input}.{sig}")})).await;
        let e = c.recv().await;
        assert_eq!(e["code"], "bad_token", "v={v}: {e}");
        // A number out of range is named; a `v` of another type is a claim
        // of the wrong type.
        let want = if v.parse::<u8>().is_ok() { "v must be 1 or 2" } else { "wrong type" };
        assert!(e["message"].as_str().unwrap().contains(want), "v={v}: {e}");
        assert_eq!(c.closed(Duration::from_secs(5)).await.0, 4001);
    }
}
