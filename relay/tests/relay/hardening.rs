//! The socket layer facing anonymous and abusive clients (issue 11): each
//! test is an attack or a race over real sockets, and each failed on the
//! relay before the fix (run with `BM_RELAY_BIN=<old build>` to see it).

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// One connection token opens at most `max_sockets_per_user` sockets; the
/// next is closed with 4029 and counted. Another user is unaffected.
#[tokio::test]
async fn one_token_cannot_open_unbounded_sockets() {
    if single_node_only("max_sockets_per_user is per node (PROTOCOL.md §7)") {
        return;
    }
    let r = Relay::start("max_sockets_per_user = 3\n").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(r.client(7).await);
    }
    let mut extra = Client::connect(&r.ws_url()).await;
    extra.send(json!({"op":"auth","token": r.site.token(7)})).await;
    let (code, reason) = extra.closed(Duration::from_secs(5)).await;
    assert_eq!((code, reason.as_str()), (4029, "too many sockets for this user"));
    assert_eq!(r.metric("bm_relay_sockets_refused_total{cap=\"user\"}").await, 1.0);
    let _other = r.client(8).await;
    // A socket that leaves frees its place.
    drop(held.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Client::connect(&r.ws_url()).await;
        c.send(json!({"op":"auth","token": r.site.token(7)})).await;
        match c.next_within(Duration::from_secs(5)).await {
            Some(Seen::Frame(f)) if f["op"] == "ready" => break,
            _ if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("the freed place was not reusable: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_site_at_its_cap_refuses_with_1013() {
    if single_node_only("max_sockets_per_site is per node (PROTOCOL.md §7)") {
        return;
    }
    let r = Relay::start("max_sockets_per_site = 2\n").await;
    let _a = r.client(1).await;
    let _b = r.client(2).await;
    let mut c = Client::connect(&r.ws_url()).await;
    c.send(json!({"op":"auth","token": r.site.token(3)})).await;
    assert_eq!(c.closed(Duration::from_secs(5)).await.0, 1013);
    assert_eq!(r.metric("bm_relay_sockets_refused_total{cap=\"site\"}").await, 1.0);
}

/// Sockets that never authenticate hold at most
/// `max_unauthenticated_sockets` places; one more is closed at once, not
/// after the auth timeout.
#[tokio::test]
async fn sockets_waiting_for_auth_are_capped() {
    if single_node_only("max_unauthenticated_sockets is per process") {
        return;
    }
    let r = Relay::start("max_unauthenticated_sockets = 3\nauth_timeout_secs = 30\n").await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(Client::connect(&r.ws_url()).await);
    }
    // The three are registered as authenticating before the fourth arrives.
    r.wait_metric("bm_relay_connections", |v| v == 3.0, Duration::from_secs(5)).await;
    let mut late = Client::connect(&r.ws_url()).await;
    let started = std::time::Instant::now();
    assert_eq!(late.closed(Duration::from_secs(5)).await.0, 1013);
    assert!(started.elapsed() < Duration::from_secs(5), "closed at once, not at the 30 s auth timeout");
    assert_eq!(r.metric("bm_relay_sockets_refused_total{cap=\"authenticating\"}").await, 1.0);
    // Once one of them authenticates, its place is free again.
    idle[0].send(json!({"op":"auth","token": r.site.token(1)})).await;
    assert_eq!(idle[0].recv().await["op"], "ready");
    let _ok = r.client(2).await;
}

/// Pings and pongs count against the frame limit, after `auth` and before.
#[tokio::test]
async fn ping_floods_are_closed_4029() {
    let r = Relay::start("frame_rate_per_sec = 5\nframe_burst = 10\nauth_timeout_secs = 20\n").await;
    let mut c = r.client(1).await;
    for _ in 0..200 {
        if c.ws.send(Message::Ping(vec![1, 2, 3].into())).await.is_err() {
            break;
        }
    }
    assert_eq!(c.closed(Duration::from_secs(5)).await.0, 4029);
    // Before `auth`: no token, yet the flood is cut long before the auth timeout.
    let mut anon = Client::connect(&r.ws_url()).await;
    for _ in 0..200 {
        if anon.ws.send(Message::Ping(vec![9].into())).await.is_err() {
            break;
        }
    }
    assert_eq!(anon.closed(Duration::from_secs(5)).await.0, 4029);
}

/// A client that sent its close frame is not routable while the close
/// handshake lingers (here the client reads nothing, so the relay's queue
/// cannot drain): pushes do not count it, presence does not show it.
/// (The relay before issue 11 passed this too, tungstenite ending such a
/// close at once; the socket task now unregisters before any close
/// handshake begins, so it no longer depends on that.)
#[tokio::test]
async fn a_closing_socket_is_not_counted_online() {
    let r = Relay::start("outbound_queue_bytes = 33554432\n").await;
    let mut c = r.client(5).await;
    let big = "q".repeat(60_000);
    let events: Vec<_> = (0..10).map(|_| json!({"to":[5],"e": r.site.user_env(5, json!(big))})).collect();
    for _ in 0..4 {
        let (s, body) = r.push(json!(events)).await;
        assert_eq!((s, body["results"][0]["sockets"].clone()), (200, json!(1)), "{body}");
    }
    // The close frame goes out; the client then neither reads nor closes TCP.
    c.ws.send(Message::Close(None)).await.unwrap();
    // Until the relay has read the close frame the socket is rightly
    // online; poll for that (bounded) instead of sleeping a guess. A
    // socket that stayed routable through its close never gets there.
    // Two answers in a row: on the cluster r.post alternates between the
    // nodes, and the other node learns of the close by a delta.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut empty_in_a_row = 0;
    while empty_in_a_row < 2 {
        let online = r.post("/v1/presence", &json!({"users":[5]}).to_string()).await.1["online"].clone();
        empty_in_a_row = if online == json!([]) { empty_in_a_row + 1 } else { 0 };
        assert!(std::time::Instant::now() < deadline, "user 5 still online 5 s after its close frame");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, body) = r.push(json!([{"to":[5],"e": r.site.user_env(5, json!("x"))}])).await;
    assert_eq!(s, 200);
    assert_eq!(body["results"][0], json!({"online": [], "sockets": 0}), "{body}");
    let (s, body) = r.post("/v1/presence", &json!({"users":[5]}).to_string()).await;
    assert_eq!((s, &body["online"]), (200, &json!([])), "{body}");
    drop(c);
}

/// A revocation is stamped with the request's signed time (WordPress's
/// clock, the one `iat` comes from), and covers a token of that very second.
#[tokio::test]
async fn revocation_uses_the_signed_time() {
    let r = Relay::start("").await;
    let t = now() + 30; // WordPress's clock runs 30 s ahead of the relay's
    let body = json!({"users":[4]}).to_string();
    let (s, _) = signed_post(r.port, &r.site, "/v1/disconnect", &body, t).await;
    assert_eq!(s, 200);
    for iat in [t - 10, t] {
        let token =
            bm_proto::token::Claims::connection(r.site.id.clone(), u(4), iat, 3600).mint(&r.site.secret.relay_key());
        let mut c = Client::connect(&r.ws_url()).await;
        c.send(json!({"op":"auth","token": token})).await;
        let (code, _) = c.closed(Duration::from_secs(5)).await;
        assert_eq!(code, 4003, "a token issued at {iat} (revoked at {t}) must be refused");
    }
    let fresh =
        bm_proto::token::Claims::connection(r.site.id.clone(), u(4), t + 1, 3600).mint(&r.site.secret.relay_key());
    let mut c = Client::connect(&r.ws_url()).await;
    c.send(json!({"op":"auth","token": fresh})).await;
    assert_eq!(c.recv().await["op"], "ready");
}

/// A replayed signed `/v1/disconnect` (same bytes, within the clock skew)
/// neither moves the revocation nor closes a socket whose token was issued
/// after it.
#[tokio::test]
async fn a_replayed_disconnect_closes_nothing_new() {
    let r = Relay::start("").await;
    let t = now();
    let body = json!({"users":[4]}).to_string();
    assert_eq!(signed_post(r.port, &r.site, "/v1/disconnect", &body, t).await.0, 200);
    let fresh =
        bm_proto::token::Claims::connection(r.site.id.clone(), u(4), t + 1, 3600).mint(&r.site.secret.relay_key());
    let mut c = Client::connect(&r.ws_url()).await;
    c.send(json!({"op":"auth","token": fresh})).await;
    assert_eq!(c.recv().await["op"], "ready");
    let (s, reply) = signed_post(r.port, &r.site, "/v1/disconnect", &body, t).await;
    assert_eq!((s, reply), (200, json!({"closed": 0})));
    c.silent_for(Duration::from_millis(500)).await;
    c.send(json!({"op":"ping","ref":1})).await;
    assert_eq!(c.recv().await, json!({"op":"pong","ref":1}));
    // The same for a thread: a subscription opened with a newer thread
    // token survives the replay of its removal.
    let th = json!({"users":[4],"thread":9}).to_string();
    assert_eq!(signed_post(r.port, &r.site, "/v1/disconnect", &th, t).await.0, 200);
    let tt =
        bm_proto::token::Claims::thread(r.site.id.clone(), u(4), t_id(9), t + 1, 3600).mint(&r.site.secret.relay_key());
    c.send(json!({"op":"sub","thread":9,"token":tt,"ref":2})).await;
    assert_eq!(c.recv().await, json!({"op":"ok","ref":2}));
    assert_eq!(signed_post(r.port, &r.site, "/v1/disconnect", &th, t).await.1, json!({"closed": 0}));
    let (s, body) = r.push(json!([{"to":[],"thread":9,"e": r.site.thread_env(9, json!("still here"))}])).await;
    assert_eq!((s, body["results"][0]["sockets"].clone()), (200, json!(1)), "{body}");
}

fn t_id(n: u64) -> bm_proto::ThreadId {
    bm_proto::ThreadId::new(n).unwrap()
}

/// The revocation table is bounded per site; what falls out of it is
/// folded into a floor, so the evicted users' old tokens stay refused.
#[tokio::test]
async fn revocation_records_are_bounded_and_nothing_revoked_comes_back() {
    let r = Relay::start("max_revocations_per_site = 50\n").await;
    let t = now();
    let old_token =
        bm_proto::token::Claims::connection(r.site.id.clone(), u(1), t - 5, 3600).mint(&r.site.secret.relay_key());
    for batch in 0..10u64 {
        let users: Vec<u64> = (1 + batch * 30..=30 + batch * 30).collect();
        let (s, _) = r.post("/v1/disconnect", &json!({ "users": users }).to_string()).await;
        assert_eq!(s, 200);
    }
    // The bound holds on each node (on the cluster every node records
    // every disconnect: summed, the counts double).
    // (A node learns the other's disconnects within the cluster's lag.)
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while r.node_metric("bm_relay_revocations_evicted_total").await < 250.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(r.node_metric("bm_relay_revocations").await <= 50.0);
    assert!(r.node_metric("bm_relay_revocations_evicted_total").await >= 250.0);
    if let Some(p) = &r.peer {
        assert!(p.node_metric("bm_relay_revocations").await <= 50.0);
    }
    let mut c = Client::connect(&r.ws_url()).await;
    c.send(json!({"op":"auth","token": old_token})).await;
    assert_eq!(
        c.closed(Duration::from_secs(5)).await.0,
        4003,
        "user 1's record was evicted, its old token still refused"
    );
}

/// A reload reaches the sockets already open: here the ping interval.
#[tokio::test]
async fn a_reload_applies_to_open_sockets() {
    let r = Relay::start("ping_interval_secs = 60\nidle_timeout_secs = 120\n").await;
    let c = r.client(1).await;
    let text = std::fs::read_to_string(&r.config_path).unwrap();
    let text = text
        .replace("ping_interval_secs = 60", "ping_interval_secs = 0.3")
        .replace("idle_timeout_secs = 120", "idle_timeout_secs = 5");
    std::fs::write(&r.config_path, text).unwrap();
    r.signal(libc::SIGHUP);
    // Read raw messages: the relay's pings are control frames.
    let mut ws = c.ws;
    let got_ping = tokio::time::timeout(Duration::from_secs(5), async {
        use futures_util::StreamExt;
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Ping(_)) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got_ping, Ok(true), "a 0.3 s ping interval reached the open socket within 5 s");
}

/// No `RUST_LOG` value makes the relay print a token, a key or an
/// envelope, however specific its directives.
#[tokio::test]
async fn no_log_filter_prints_secrets() {
    for filter in [
        "trace",
        "tungstenite::protocol=trace",
        "tokio_tungstenite=trace,tungstenite=trace",
        "hyper=trace,h2=trace,hyper_util=trace",
        "bm_relay=trace,trace",
    ] {
        let site = Site::new(SITE);
        let r = Relay::start_env(site.clone(), &[&site], "", &[("RUST_LOG", filter)]).await;
        let token = site.token(3);
        let thread_token = site.thread_token(3, 4);
        let mut c = Client::connect(&r.ws_url()).await;
        c.send(json!({"op":"auth","token": token})).await;
        assert_eq!(c.recv().await["op"], "ready");
        c.send(json!({"op":"sub","thread":4,"token":thread_token,"ref":1})).await;
        assert_eq!(c.recv().await["op"], "ok");
        let env = site.thread_env(4, json!("secret words"));
        let env_json = serde_json::to_value(&env).unwrap();
        let (s, _) = r.push(json!([{"to":[3],"thread":4,"e": env_json}])).await;
        assert_eq!(s, 200);
        assert_eq!(c.recv().await["op"], "ev");
        c.send(json!({"op":"pub","thread":4,"e": env_json,"ref":2})).await;
        assert_eq!(c.recv().await["op"], "ok");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = r.log();
        let c_field = env_json["c"].as_str().unwrap();
        for (what, secret) in [
            ("connection token", token.as_str()),
            ("token signature", token.rsplit('.').next().unwrap()),
            ("thread token", thread_token.as_str()),
            ("relay key", site.relay_key_b64().as_str()),
            ("ciphertext", &c_field[..32]),
        ] {
            assert!(!log.contains(secret), "RUST_LOG={filter}: the log holds the {what}");
        }
    }
}
