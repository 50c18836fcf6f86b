//! Delivery: multi-tab users, `to` ∪ `thread`, ordering, client `pub`,
//! disconnect and revocation, presence, site isolation, push validation.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const QUIET: Duration = Duration::from_millis(300);

fn ev_envelope(frame: &Value) -> &Value {
    assert_eq!(frame["op"], "ev", "{frame}");
    &frame["e"]
}

#[tokio::test]
async fn multi_tab_user_gets_one_copy_per_socket() {
    let r = Relay::start("").await;
    let mut tabs = vec![r.client(2).await, r.client(2).await, r.client(2).await];
    let mut other = r.client(3).await;
    let env = r.site.user_env(2, json!({"n": 1}));
    let (status, body) = r.push(json!([{ "to": [2], "e": env }])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"results":[{"online":[2],"sockets":3}]}));
    for tab in &mut tabs {
        let f = tab.recv().await;
        // Forwarded byte for byte: it parses back to the same envelope and opens.
        assert_eq!(ev_envelope(&f), &serde_json::to_value(&env).unwrap());
        assert!(f.get("from").is_none() && f.get("thread").is_none(), "{f}");
        assert_eq!(r.site.open(&f["e"]), json!({"n": 1}));
        tab.silent_for(QUIET).await;
    }
    other.silent_for(Duration::from_millis(50)).await;
    // Nobody online: the result says so.
    let (_, body) = r.push(json!([{ "to": [9], "e": r.site.user_env(9, json!(0)) }])).await;
    assert_eq!(body, json!({"results":[{"online":[],"sockets":0}]}));
}

#[tokio::test]
async fn to_and_thread_union_without_duplicates() {
    let r = Relay::start("").await;
    let mut a1 = r.subscriber(2, 7).await; // in `to` and subscribed
    let mut a2 = r.client(2).await; // in `to`, not subscribed
    let mut b = r.subscriber(3, 7).await; // in `to` and subscribed
    let mut c = r.subscriber(4, 7).await; // subscribed only
    let mut d = r.client(5).await; // neither
    let mut e = r.subscriber(6, 8).await; // another thread
    let env = r.site.thread_env(7, json!("hello"));
    let (status, body) = r.push(json!([{ "to": [2, 3, 3], "thread": 7, "e": env }])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"results":[{"online":[2,3],"sockets":4}]}));
    for cl in [&mut a1, &mut a2, &mut b, &mut c] {
        let f = cl.recv().await;
        assert_eq!(r.site.open(ev_envelope(&f)), json!("hello"));
        cl.silent_for(QUIET).await;
    }
    d.silent_for(Duration::from_millis(50)).await;
    e.silent_for(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn events_arrive_in_order_within_and_across_requests() {
    let r = Relay::start("").await;
    let mut c = r.client(2).await;
    let mut http = Http::connect(r.port).await;
    let mut sent = Vec::new();
    for batch in 0..3 {
        let events: Vec<Value> = (0..5)
            .map(|i| {
                let env = r.site.user_env(2, json!(batch * 5 + i));
                sent.push(batch * 5 + i);
                json!({"to":[2],"e":env})
            })
            .collect();
        let (s, _) = http.signed_post(&r.site, "/v1/push", &json!({ "events": events }).to_string()).await;
        assert_eq!(s, 200);
    }
    for want in sent {
        let f = c.recv().await;
        assert_eq!(r.site.open(&f["e"]), json!(want));
    }
}

#[tokio::test]
async fn thread_pub_reaches_others_but_not_the_sender() {
    let r = Relay::start("").await;
    let mut sender = r.subscriber(2, 7).await;
    let mut sender_tab = r.subscriber(2, 7).await;
    let mut peer = r.subscriber(3, 7).await;
    let mut outsider = r.subscriber(4, 8).await;
    let env = r.site.thread_env(7, json!({"typing": true}));
    sender.send(json!({"op":"pub","thread":7,"e":env,"ref":5})).await;
    assert_eq!(sender.recv().await, json!({"op":"ok","ref":5}));
    for cl in [&mut sender_tab, &mut peer] {
        let f = cl.recv().await;
        assert_eq!(f["thread"], 7);
        assert_eq!(f["from"], 2, "from is set by the relay from the token");
        assert_eq!(r.site.open(&f["e"]), json!({"typing": true}));
    }
    sender.silent_for(QUIET).await;
    outsider.silent_for(Duration::from_millis(50)).await;

    // Not subscribed: refused.
    outsider.send(json!({"op":"pub","thread":7,"e":env,"ref":1})).await;
    let f = outsider.recv().await;
    assert_eq!((f["code"].as_str(), f["ref"].as_i64()), (Some("not_subscribed"), Some(1)), "{f}");
    // Sealed with a user key, or another thread's key: bad_envelope.
    for bad in [r.site.user_env(2, json!(1)), r.site.thread_env(8, json!(1))] {
        sender.send(json!({"op":"pub","thread":7,"e":bad,"ref":2})).await;
        let f = sender.recv().await;
        assert_eq!(f["code"], "bad_envelope", "{f}");
    }
    sender.send(json!({"op":"pub","thread":7,"e":{"v":1},"ref":3})).await;
    assert_eq!(sender.recv().await["code"], "bad_envelope");
    // Over 16 KiB of ciphertext: too_large.
    let big = r.site.thread_env(7, json!("x".repeat(17 * 1024)));
    sender.send(json!({"op":"pub","thread":7,"e":big,"ref":4})).await;
    assert_eq!(sender.recv().await["code"], "too_large");
    peer.silent_for(QUIET).await;
}

#[tokio::test]
async fn disconnect_closes_sockets_and_revokes_threads() {
    let r = Relay::start("").await;
    let mut a = r.subscriber(2, 7).await;
    let mut b1 = r.subscriber(3, 7).await;
    let mut b2 = r.client(3).await;
    // On the cluster `closed` counts the sockets of the node that took the
    // call only (the other closes its own on the broadcast; PROTOCOL.md
    // §7.3): the sockets' closing is what is checked there.
    let closed = |n: u64, body: &Value| {
        if on_cluster() {
            body["closed"].as_u64().is_some_and(|c| c <= n)
        } else {
            *body == json!({ "closed": n })
        }
    };
    let (s, body) = r.post("/v1/disconnect", r#"{"users":[3]}"#).await;
    assert!(s == 200 && closed(2, &body), "{s} {body}");
    assert_eq!(b1.closed(Duration::from_secs(3)).await.0, 4003);
    assert_eq!(b2.closed(Duration::from_secs(3)).await.0, 4003);

    // Revoke user 2's subscription to thread 7: told, then no more events.
    let (s, body) = r.post("/v1/disconnect", r#"{"users":[2],"thread":7}"#).await;
    assert!(s == 200 && closed(1, &body), "{s} {body}");
    assert_eq!(a.recv().await, json!({"op":"unsub","thread":7}));
    // On the cluster a push taken by the other node counts the socket
    // until the delta reaches it (the ≤ 1 s lag, PROTOCOL.md §7.3), but
    // none of these pushes may reach the revoked subscription.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        let (_, body) = r.push(json!([{ "to": [], "thread": 7, "e": r.site.thread_env(7, json!(1)) }])).await;
        if body["results"][0]["sockets"] == 0 {
            break;
        }
        assert!(on_cluster() && std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.silent_for(QUIET).await;
    a.send(json!({"op":"pub","thread":7,"e":r.site.thread_env(7, json!(1)),"ref":1})).await;
    assert_eq!(a.recv().await["code"], "not_subscribed");
    // The socket itself stays up.
    a.send(json!({"op":"ping","ref":9})).await;
    assert_eq!(a.recv().await, json!({"op":"pong","ref":9}));
}

#[tokio::test]
async fn tokens_issued_before_a_disconnect_are_refused() {
    let r = Relay::start("").await;
    let before = r.site.thread_token(3, 7);
    let old_connection = r.site.token(3);
    let mut c = r.subscriber(3, 7).await;
    // Tokens minted at the same second as the revocation stay valid, so
    // step past it before revoking.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _) = r.post("/v1/disconnect", r#"{"users":[3],"thread":7}"#).await;
    assert_eq!(s, 200);
    assert_eq!(c.recv().await, json!({"op":"unsub","thread":7}));
    // The removed member's old thread token no longer subscribes ...
    c.send(json!({"op":"sub","thread":7,"token":before,"ref":1})).await;
    let refused = c.recv().await;
    assert_eq!((refused["op"].as_str(), refused["code"].as_str()), (Some("error"), Some("forbidden")), "{refused}");
    // ... while one WordPress mints afterwards does.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.sub(&r.site, 3, 7).await;

    // Closing a user's sockets also retires their older connection tokens.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _) = r.post("/v1/disconnect", r#"{"users":[3]}"#).await;
    assert_eq!(s, 200);
    assert_eq!(c.closed(Duration::from_secs(3)).await.0, 4003);
    let mut again = Client::connect(&r.ws_url()).await;
    again.send(json!({"op":"auth","token":old_connection})).await;
    assert_eq!(again.recv().await["code"], "forbidden");
    assert_eq!(again.closed(Duration::from_secs(3)).await.0, 4003);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _fresh = r.client(3).await;
}

#[tokio::test]
async fn tokens_living_longer_than_the_relay_allows_are_refused() {
    let r = Relay::start("max_token_ttl_secs = 600").await;
    let mut c = Client::connect(&r.ws_url()).await;
    c.send(json!({"op":"auth","token": r.site.token_ttl(2, 601)})).await;
    assert_eq!(c.recv().await["code"], "bad_token");
    assert_eq!(c.closed(Duration::from_secs(3)).await.0, 4001);
    let mut ok = Client::connect(&r.ws_url()).await;
    ok.send(json!({"op":"auth","token": r.site.token_ttl(2, 600)})).await;
    assert_eq!(ok.recv().await["op"], "ready");
}

#[tokio::test]
async fn presence_reports_users_with_sockets() {
    let r = Relay::start("").await;
    let _a = r.client(2).await;
    let b = r.client(3).await;
    let (s, body) = r.post("/v1/presence", r#"{"users":[2,3,9]}"#).await;
    assert_eq!((s, body), (200, json!({"online":[2,3]})));
    drop(b);
    let mut online = Value::Null;
    for _ in 0..50 {
        online = r.post("/v1/presence", r#"{"users":[2,3,9]}"#).await.1;
        if online == json!({"online":[2]}) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(online, json!({"online":[2]}));
}

#[tokio::test]
async fn sites_are_isolated() {
    let a = Site::new("a.example");
    let b = Site::new("b.example");
    let r = Relay::start_with(a.clone(), &[&a, &b], "").await;
    let mut on_a = r.client(2).await;
    let mut on_b = r.client_of(&b, 2).await;
    let (_, body) = r.push(json!([{ "to": [2], "e": a.user_env(2, json!("for a")) }])).await;
    assert_eq!(body["results"][0]["sockets"], 1);
    assert_eq!(a.open(&on_a.recv().await["e"]), json!("for a"));
    on_b.silent_for(QUIET).await;
    // A thread token of site b does not subscribe a socket of site a.
    on_a.send(json!({"op":"sub","thread":7,"token": b.thread_token(2, 7),"ref":1})).await;
    let f = on_a.recv().await;
    assert_eq!(f["code"], "forbidden", "{f}");
}

#[tokio::test]
async fn malformed_pushes_are_refused_whole() {
    let r = Relay::start("max_events = 3\n").await;
    let mut c = r.subscriber(2, 7).await;
    let good = json!({"to":[2],"thread":7,"e": r.site.thread_env(7, json!(1))});
    let cases = [
        // Thread-key envelope routed to another thread.
        (json!([good, {"to":[2],"thread":8,"e": r.site.thread_env(7, json!(1))}]), 400, "malformed"),
        // User key to someone else.
        (json!([{"to":[3],"e": r.site.user_env(2, json!(1))}]), 400, "malformed"),
        (json!([{"to":[2],"e": r.site.thread_env(7, json!(1)), "extra": 1}]), 400, "malformed"),
        (json!([{"to":[0],"e": r.site.thread_env(7, json!(1))}]), 400, "malformed"),
        (json!([good, good, good, good]), 413, "too_large"),
    ];
    for (events, status, code) in cases {
        let (s, body) = r.push(events).await;
        assert_eq!((s, body["error"]["code"].as_str()), (status, Some(code)), "{body}");
    }
    // Nothing of a refused request was delivered, not even its valid first event.
    c.silent_for(QUIET).await;
    let (s, _) = r.post("/v1/push", "{not json").await;
    assert_eq!(s, 400);
    let (s, _) = r.post("/v1/push", "{\"events\":[]}").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_client_close_is_answered_and_the_socket_forgotten() {
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    let r = Relay::start("").await;
    let mut c = r.client(2).await;
    c.ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).await.unwrap();
    match c.next_within(Duration::from_secs(3)).await {
        Some(Seen::Close(1000, _)) => {}
        other => panic!("expected the relay's close reply, got {other:?}"),
    }
    let mut online = Value::Null;
    for _ in 0..50 {
        online = r.post("/v1/presence", r#"{"users":[2]}"#).await.1;
        if online == json!({"online":[]}) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(online, json!({"online":[]}));
    assert_eq!(r.metric("bm_relay_connections").await, 0.0);
}

#[tokio::test]
async fn pushes_work_over_h2c() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let r = Relay::start("").await;
    let mut c = r.client(2).await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    for i in 0..3 {
        let body = json!({"events":[{"to":[2],"e": r.site.user_env(2, json!(i))}]}).to_string();
        let ts = now();
        let sig =
            bm_proto::signing::sign(&r.site.secret.relay_key(), ts, &r.site.id, "POST", "/v1/push", body.as_bytes());
        let req = hyper::Request::post(format!("http://127.0.0.1:{}/v1/push", r.port))
            .header("X-BM-Site", SITE)
            .header("X-BM-Timestamp", ts.to_string())
            .header("X-BM-Signature", sig)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let reply: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(reply, json!({"results":[{"online":[2],"sockets":1}]}));
        assert_eq!(r.site.open(&c.recv().await["e"]), json!(i));
    }
}

#[tokio::test]
async fn unsub_and_the_subscription_limit() {
    let r = Relay::start("max_subscriptions = 2\n").await;
    let mut c = r.client(2).await;
    let mut peer = r.subscriber(3, 1).await;
    c.sub(&r.site, 2, 1).await;
    c.sub(&r.site, 2, 2).await;
    c.send(json!({"op":"sub","thread":3,"token": r.site.thread_token(2, 3),"ref":3})).await;
    assert_eq!(c.recv().await["code"], "too_many_subscriptions");
    // Subscribing again to a watched thread is fine and takes no slot.
    c.sub(&r.site, 2, 1).await;
    c.send(json!({"op":"unsub","thread":1,"ref":4})).await;
    assert_eq!(c.recv().await, json!({"op":"ok","ref":4}));
    c.send(json!({"op":"unsub","thread":1,"ref":5})).await;
    assert_eq!(c.recv().await["code"], "not_subscribed");
    c.sub(&r.site, 2, 3).await;
    // After unsub, thread 1's events no longer reach it.
    peer.send(json!({"op":"pub","thread":1,"e": r.site.thread_env(1, json!(1)),"ref":1})).await;
    assert_eq!(peer.recv().await["op"], "ok");
    c.silent_for(QUIET).await;
    assert_eq!(r.metric("bm_relay_subscriptions").await, 3.0);
}
