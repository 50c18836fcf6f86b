//! The cluster over real NATS (docs/PROTOCOL.md, "Cluster"): real
//! `nats-server` processes on free loopback ports with a private config,
//! real relays joined through them, real sockets. Every test is bounded in
//! time; processes are killed on drop (and with the test process).
//!
//! Marked `#[ignore]` so that `cargo test --workspace` (make test-rust)
//! does not run them a second time: `make test-cluster` (in `make test`)
//! installs nats-server if missing (`scripts/install-deps.sh broker`) and
//! runs them with `--ignored`. Run by hand:
//! `cargo test -p bm-relay --test relay cluster:: -- --ignored`.
//! ([`Nats`] is in `common.rs`: `BM_TEST_CLUSTER=1` uses it too.)

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// Heartbeat and silence bound the tests configure (the defaults are 1 s
/// and 5 s; shorter here so the SIGKILL test is quick).
const HEARTBEAT: f64 = 0.25;
const NODE_TIMEOUT: f64 = 2.0;

macro_rules! need_nats {
    () => {
        assert!(nats_bin().is_some(), "nats-server is not installed: make test-cluster installs it");
    };
}

/// A relay in the cluster reached through `urls`, named `name`.
async fn node(site: &Site, urls: &[String], name: &str) -> Relay {
    node_with(site, urls, name, "").await
}

/// [`node`] with lines added to `[limits]`.
async fn node_with(site: &Site, urls: &[String], name: &str, limits: &str) -> Relay {
    let list: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let extra = format!(
        "\n[cluster]\nnats = [{}]\nnode_name = \"{name}\"\nheartbeat_secs = {HEARTBEAT}\nnode_timeout_secs = {NODE_TIMEOUT}\n",
        list.join(", ")
    );
    let log = std::env::var("BM_TEST_RELAY_LOG").unwrap_or_else(|_| "info".into());
    Relay::start_env(site.clone(), &[site], &format!("{limits}{extra}"), &[("RUST_LOG", log.as_str())]).await
}

async fn healthz(r: &Relay) -> Value {
    let (_, body) = http_get(r.admin, "/healthz").await.unwrap();
    serde_json::from_str(&body).unwrap()
}

async fn presence(r: &Relay, users: &[u64]) -> Vec<u64> {
    let (s, body) = r.post("/v1/presence", &json!({ "users": users }).to_string()).await;
    assert_eq!(s, 200, "{body}");
    body["online"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

/// Polls `/v1/presence` on `r` until `users` online equals `want`; returns
/// how long it took (panics past `within`).
async fn presence_becomes(r: &Relay, users: &[u64], want: &[u64], within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if presence(r, users).await == want {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < within, "presence on :{} not {want:?} within {within:?}", r.port);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One nats-server and two relays on it, "a" and "b" (the set-up of most
/// tests here). The `Nats` must be kept alive as long as the relays.
async fn two_nodes() -> (Nats, Site, Relay, Relay) {
    need_nats!();
    let nats = Nats::start();
    let site = Site::new(SITE);
    let a = node(&site, &[nats.url()], "a").await;
    let b = node(&site, &[nats.url()], "b").await;
    (nats, site, a, b)
}

/// Whether `c` receives, within 2 s, the event sealed around `i` (a push
/// whose answer was `result`); says what came instead when it does not.
async fn received_live(c: &mut Client, site: &Site, i: u64, result: &Value) -> bool {
    match c.next_within(Duration::from_secs(2)).await {
        Some(Seen::Frame(f)) => {
            assert_eq!(ev_data(site, &f), json!(i));
            true
        }
        other => {
            eprintln!("round {i}: {other:?}, result {result}");
            false
        }
    }
}

fn ev_data(site: &Site, f: &Value) -> Value {
    assert_eq!(f["op"], "ev", "{f}");
    site.open(&f["e"])
}

#[tokio::test]
#[ignore = "needs nats-server: make test-cluster"]
async fn push_pub_and_presence_cross_nodes() {
    let (_nats, site, a, b) = two_nodes().await;
    assert_eq!(healthz(&a).await["cluster"], "ok");

    let mut alice = a.subscriber(1, 7).await;
    let mut bob = b.subscriber(2, 7).await;
    let t0 = Instant::now();
    let lag = presence_becomes(&a, &[1, 2, 3], &[1, 2], Duration::from_secs(1)).await;
    eprintln!("presence lag (connect on B seen on A): {lag:?} (after ready: {:?})", t0.elapsed());

    // A push on A to Bob (on B) and Carol (offline): cluster-wide result.
    let (s, body) = a.push(json!([{ "to": [3, 2], "thread": 99, "e": site.thread_env(99, json!({"n": 1})) }])).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body, json!({"results":[{"online":[2],"sockets":1}]}));
    assert_eq!(ev_data(&site, &bob.recv().await), json!({"n": 1}));

    // A thread push on B reaches both subscribers, each once.
    let (_, body) = b.push(json!([{ "to": [2], "thread": 7, "e": site.thread_env(7, json!({"n": 2})) }])).await;
    assert_eq!(body["results"][0]["online"], json!([2]));
    assert_eq!(ev_data(&site, &alice.recv().await), json!({"n": 2}));
    assert_eq!(ev_data(&site, &bob.recv().await), json!({"n": 2}));
    bob.silent_for(Duration::from_millis(200)).await;
    alice.silent_for(Duration::from_millis(10)).await;

    // A client pub on B reaches the subscriber on A.
    let env = site.thread_env(7, json!({"n": 3}));
    bob.send(json!({"op":"pub","thread":7,"e": env})).await;
    let f = alice.recv().await;
    assert_eq!(f["from"], 2);
    assert_eq!(ev_data(&site, &f), json!({"n": 3}));

    // Bob leaves: A's presence follows within the bound.
    drop(bob);
    let lag = presence_becomes(&a, &[1, 2], &[1], Duration::from_secs(1)).await;
    eprintln!("presence lag (disconnect on B seen on A): {lag:?}");
}

#[tokio::test]
#[ignore = "needs nats-server: make test-cluster"]
async fn disconnect_revokes_on_every_node_and_a_joining_node_learns_it() {
    let (nats, site, a, b) = two_nodes().await;
    let old_token = site.token(2);
    let mut bob = Client::connect(&b.ws_url()).await;
    bob.send(json!({"op":"auth","token": old_token})).await;
    assert_eq!(bob.recv().await["op"], "ready");
    let _alice = a.client(1).await;
    // Thread revocation first: Carol on B loses thread 9 by a request on A.
    let mut carol = b.subscriber(3, 9).await;
    let (s, body) = a.post("/v1/disconnect", &json!({"users":[3],"thread":9}).to_string()).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(carol.recv().await, json!({"op":"unsub","thread":9}));

    let (s, body) = a.post("/v1/disconnect", &json!({"users":[2]}).to_string()).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(bob.closed(Duration::from_secs(2)).await.0, 4003, "closed on the other node");

    // The old token is refused on A too (a later connect to another node).
    let mut again = Client::connect(&a.ws_url()).await;
    again.send(json!({"op":"auth","token": old_token})).await;
    let first = again.next_within(Duration::from_secs(2)).await;
    assert!(format!("{first:?}").contains("4003") || format!("{first:?}").contains("revoked"), "{first:?}");

    // A node started now learns presence and revocations before it is ready.
    let c = node(&site, &[nats.url()], "c").await;
    assert_eq!(presence(&c, &[1, 2]).await, vec![1], "presence copied before /healthz said ok");
    let mut late = Client::connect(&c.ws_url()).await;
    late.send(json!({"op":"auth","token": old_token})).await;
    let first = late.next_within(Duration::from_secs(2)).await;
    assert!(format!("{first:?}").contains("4003") || format!("{first:?}").contains("revoked"), "{first:?}");
    // A fresh token (issued after the revocation's second) works anywhere.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _bob = c.client(2).await;
}

#[tokio::test]
#[ignore = "needs nats-server: make test-cluster"]
async fn sigkilled_node_leaves_presence_within_the_bound() {
    let (_nats, site, a, b) = two_nodes().await;
    let mut alice = a.client(1).await;
    let _bob = b.client(2).await;
    presence_becomes(&a, &[1, 2], &[1, 2], Duration::from_secs(1)).await;
    b.signal(libc::SIGKILL);
    let t0 = Instant::now();
    let took = presence_becomes(&a, &[1, 2], &[1], Duration::from_secs_f64(NODE_TIMEOUT + 2.0 * HEARTBEAT + 1.0)).await;
    eprintln!("SIGKILLed node out of presence after {took:?} (node_timeout_secs = {NODE_TIMEOUT})");
    assert!(t0.elapsed() >= Duration::from_secs_f64(NODE_TIMEOUT - HEARTBEAT), "not before the timeout: {took:?}");
    // A keeps serving.
    let (_, body) = a.push(json!([{ "to": [1, 2], "thread": 99, "e": site.thread_env(99, json!(1)) }])).await;
    assert_eq!(body, json!({"results":[{"online":[1],"sockets":1}]}));
    assert_eq!(ev_data(&site, &alice.recv().await), json!(1));
}

#[tokio::test]
#[ignore = "needs nats-server: make test-cluster"]
async fn nats_down_degrades_then_resyncs_without_restart() {
    need_nats!();
    let mut nats = Nats::start();
    let site = Site::new(SITE);
    let a = node(&site, &[nats.url()], "a").await;
    let b = node(&site, &[nats.url()], "b").await;
    let mut alice = a.client(1).await;
    let mut bob = b.client(2).await;
    presence_becomes(&a, &[1, 2], &[1, 2], Duration::from_secs(1)).await;

    nats.kill();
    let t0 = Instant::now();
    while healthz(&a).await["status"] != "degraded" {
        assert!(t0.elapsed() < Duration::from_secs(5), "not degraded: {}", healthz(&a).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("degraded reported {:?} after NATS died", t0.elapsed());
    assert_eq!(a.metric("bm_relay_cluster_degraded").await, 1.0);
    // Local delivery goes on, and the result says it is local only.
    let (s, body) = a.push(json!([{ "to": [1], "e": site.user_env(1, json!("local")) }])).await;
    assert_eq!(s, 200);
    assert_eq!(body["cluster"], "degraded", "{body}");
    assert_eq!(body["results"][0]["sockets"], 1);
    assert_eq!(ev_data(&site, &alice.recv().await), json!("local"));
    let (_, body) = a.post("/v1/presence", &json!({"users":[1, 2]}).to_string()).await;
    assert_eq!(body, json!({"online":[1],"cluster":"degraded"}), "this node's own answer, said so");
    // A disconnect made while apart reaches Bob's node once NATS is back.
    let (s, _) = a.post("/v1/disconnect", &json!({"users":[2]}).to_string()).await;
    assert_eq!(s, 200);

    nats.restart();
    let t1 = Instant::now();
    assert_eq!(bob.closed(Duration::from_secs(5)).await.0, 4003, "the disconnect made during the outage");
    eprintln!("disconnect made during the outage applied {:?} after NATS returned", t1.elapsed());
    let _carol = b.client(3).await;
    let lag = presence_becomes(&a, &[1, 2, 3], &[1, 3], Duration::from_secs(5)).await;
    eprintln!("presence resynced {:?} after NATS returned", t1.elapsed());
    let _ = lag;
    assert_eq!(healthz(&a).await["status"], "ok");
    let (_, body) = a.push(json!([{ "to": [3], "e": site.user_env(3, json!(1)) }])).await;
    assert_eq!(body, json!({"results":[{"online":[3],"sockets":1}]}));
}

/// Nothing pushed after `ready` is lost: a push from A in the first
/// instant after a socket on B got `ready` reaches it live, every time.
#[tokio::test]
#[ignore = "needs nats-server: make test-cluster"]
async fn push_right_after_ready_on_another_node_is_never_lost() {
    let (_nats, site, a, b) = two_nodes().await;
    let mut http = Http::connect(a.port).await;
    let rounds = 60;
    let mut lost = 0;
    for i in 0..rounds {
        let user = 100 + i;
        let mut c = b.client(user).await; // returns on `ready`
        let body = json!({"events":[{ "to": [user], "e": site.user_env(user, json!(i)) }]}).to_string();
        let (s, r) = http.signed_post(&site, "/v1/push", &body).await;
        assert_eq!(s, 200, "{r}");
        if !received_live(&mut c, &site, i, &r).await {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "{lost} of {rounds} pushes right after ready were lost");
    assert_eq!(b.metric("bm_relay_cluster_ready_unconfirmed_total").await, 0.0);
}

/// Nothing pushed after a `sub`'s `ok` is lost: a thread push from A in
/// the first instant after a socket on B got `ok` for the thread reaches
/// it live, every time (the socket's user is not a recipient, so only the
/// thread routes it). Without the gate on `ok` (PROTOCOL.md §7) a push
/// often finds no route to B yet.
#[tokio::test]
#[ignore = "needs nats-server: make test-cluster"]
async fn thread_push_right_after_sub_ok_on_another_node_is_never_lost() {
    let (_nats, site, a, b) = two_nodes().await;
    let mut http = Http::connect(a.port).await;
    // One socket on B, subscribed to a new thread every round: `ready`
    // is long past, only the `sub` is new.
    let mut c = b.client(5).await;
    let rounds = 60;
    let mut lost = 0;
    for i in 0..rounds {
        let thread = 1000 + i;
        c.sub(&site, 5, thread).await; // returns on `ok`
        let body =
            json!({"events":[{ "to": [9], "thread": thread, "e": site.thread_env(thread, json!(i)) }]}).to_string();
        let (s, r) = http.signed_post(&site, "/v1/push", &body).await;
        assert_eq!(s, 200, "{r}");
        if !received_live(&mut c, &site, i, &r).await {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "{lost} of {rounds} thread pushes right after `ok` were lost");
    assert_eq!(b.metric("bm_relay_cluster_sub_unconfirmed_total").await, 0.0);
}

/// One server of a three-server NATS cluster dies: the relays on it move
/// to another and deliveries resume within the bound.
#[tokio::test]
#[ignore = "needs nats-server: make test-cluster"]
async fn one_nats_server_of_three_killed() {
    need_nats!();
    let mut ns = Nats::cluster3();
    let site = Site::new(SITE);
    // A is given server 0 only (it learns the others from the NATS
    // cluster's INFO); B is on server 2.
    let a = node(&site, &[ns[0].url()], "a").await;
    let b = node(&site, &[ns[2].url()], "b").await;
    let mut bob = b.client(2).await;
    presence_becomes(&a, &[2], &[2], Duration::from_secs(3)).await;
    ns[0].kill();
    let t0 = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let (_, body) = a.push(json!([{ "to": [2], "e": site.user_env(2, json!(n)) }])).await;
        if body["results"][0]["sockets"] == 1 && body.get("cluster").is_none() {
            // Pushes made during the outage may arrive now too (the NATS
            // client holds what was published while it reconnected): read
            // past them to this push's frame, or the loop would stay one
            // frame behind for good.
            let until = Instant::now() + Duration::from_millis(300);
            let mut resumed = false;
            while let Some(Seen::Frame(f)) =
                bob.next_within(until.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))).await
            {
                if ev_data(&site, &f) == json!(n) {
                    resumed = true;
                    break;
                }
            }
            if resumed {
                break;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "deliveries did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("deliveries A→B resumed {:?} after A's NATS server was killed", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(6));
}

/// Four relays: NATS traffic per push grows with the nodes that have
/// recipients, not with recipients or nodes; and the traffic of a
/// reconnect of many sockets.
#[tokio::test]
#[ignore = "needs nats-server: make test-cluster"]
async fn four_nodes_traffic_per_push_and_reconnect_storm() {
    need_nats!();
    let nats = Nats::start();
    let site = Site::new(SITE);
    let a = node(&site, &[nats.url()], "a").await;
    let storm_limits = "max_unauthenticated_sockets = 20000\nmax_pending_connections = 15000\n";
    let b = node_with(&site, &[nats.url()], "b", storm_limits).await;
    let c = node(&site, &[nats.url()], "c").await;
    let d = node(&site, &[nats.url()], "d").await;
    let nodes = [&a, &b, &c, &d];
    // Bob has 3 tabs on B, Carol 1 on C, Dave 1 on C; D has nobody.
    let mut socks = vec![b.client(2).await, b.client(2).await, b.client(2).await, c.client(3).await, c.client(4).await];
    presence_becomes(&a, &[2, 3, 4], &[2, 3, 4], Duration::from_secs(1)).await;
    let sent = "bm_relay_cluster_deliveries_sent_total";
    let out_bytes = "bm_relay_cluster_nats_out_bytes_total";
    for (to, want_msgs) in [(vec![2u64], 1.0), (vec![2, 3, 4], 2.0), (vec![2, 3, 4, 9, 10], 2.0), (vec![9], 0.0)] {
        let (m0, b0) = (a.metric(sent).await, a.metric(out_bytes).await);
        let (_, body) = a.push(json!([{ "to": to, "thread": 99, "e": site.thread_env(99, json!(0)) }])).await;
        let (m1, b1) = (a.metric(sent).await, a.metric(out_bytes).await);
        eprintln!("push to {to:?}: {} NATS message(s), {} bytes (result {body})", m1 - m0, b1 - b0);
        assert_eq!(m1 - m0, want_msgs, "messages for {to:?}");
    }
    for s in &mut socks {
        s.recv().await; // drain what the pushes delivered
    }
    assert_eq!(d.metric(sent).await, 0.0);
    assert_eq!(d.metric("bm_relay_deliveries_total").await, 0.0, "a node without recipients gets nothing");

    // Reconnect storm: many sockets arrive on B at once.
    let n: u64 = std::env::var("BM_CLUSTER_STORM").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let in_msgs = "bm_relay_cluster_nats_in_messages_total";
    let out_msgs = "bm_relay_cluster_nats_out_messages_total";
    let mut before = 0.0;
    for r in nodes {
        before += r.metric(out_msgs).await;
    }
    let t0 = Instant::now();
    let url = b.ws_url();
    let mut tasks = Vec::new();
    // At most 1000 handshakes in flight (the listen backlog is 4096 here).
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(1000));
    for i in 0..n {
        let url = url.clone();
        let token = site.token(1000 + i);
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let mut c = Client::connect(&url).await;
            c.send(json!({"op":"auth","token": token})).await;
            let f = c.recv().await;
            assert_eq!(f["op"], "ready");
            c
        }));
    }
    let mut storm = Vec::new();
    for t in tasks {
        storm.push(t.await.unwrap());
    }
    let users: Vec<u64> = (1000..1000 + n).collect();
    let online = presence(&a, &users).await.len();
    let took = t0.elapsed();
    let mut after = 0.0;
    for r in nodes {
        after += r.metric(out_msgs).await;
    }
    let msgs = after - before;
    eprintln!(
        "reconnect of {n} sockets on B: {took:?}, {msgs} NATS messages published by the 4 nodes ({:.0}/s), A sees {online} online; A received {} messages in all",
        msgs / took.as_secs_f64(),
        a.metric(in_msgs).await
    );
    assert_eq!(online as u64, n);
    assert!(msgs < n as f64, "sync traffic grows with batches, not with sockets x nodes: {msgs}");
}

/// Anyone on the NATS server can publish: a delivery without a valid MAC
/// (another key, or garbage) is dropped and counted, never delivered.
#[tokio::test]
#[ignore = "needs nats-server: make test-cluster"]
async fn forged_cluster_messages_are_refused() {
    need_nats!();
    let nats = Nats::start();
    let site = Site::new(SITE);
    let b = node(&site, &[nats.url()], "b").await;
    let mut bob = b.client(2).await;
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let frame =
        format!("{{\"op\":\"ev\",\"e\":{}}}", serde_json::to_string(&site.user_env(2, json!("forged"))).unwrap());
    assert!(frame.len() < 0x10000);
    let mut ws = vec![0x81u8, 126];
    ws.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    ws.extend_from_slice(frame.as_bytes());
    let header = br#"{"t":"dlv","site":"test.local","to":[2],"thread":null}"#;
    let mut forged = vec![7u8; 32]; // a tag made without the relay keys
    forged.extend_from_slice(header);
    forged.push(b'\n');
    forged.extend_from_slice(&ws);
    nc.publish("bmr.node.b", forged.into()).await.unwrap();
    nc.publish("bmr.node.b", bytes::Bytes::from_static(b"garbage")).await.unwrap();
    nc.publish("bmr.all", bytes::Bytes::from_static(b"{\"t\":\"dis\"}")).await.unwrap();
    nc.flush().await.unwrap();
    bob.silent_for(Duration::from_millis(300)).await;
    assert_eq!(b.metric("bm_relay_cluster_rejected_total").await, 3.0, "{}", b.log());
    assert_eq!(b.metric("bm_relay_deliveries_total").await, 0.0);
}

/// A node stopped with SIGTERM closes its sockets and says so before it
/// exits: its users leave presence on the others at once, not after the
/// silence bound.
#[tokio::test]
#[ignore = "needs nats-server: make test-cluster"]
async fn sigterm_node_leaves_presence_at_once() {
    need_nats!();
    let nats = Nats::start();
    let site = Site::new(SITE);
    let a = node(&site, &[nats.url()], "a").await;
    let mut b = node_with(&site, &[nats.url()], "b", "close_spread_secs = 0.05\n").await;
    let _alice = a.client(1).await;
    let mut bob = b.client(2).await;
    presence_becomes(&a, &[1, 2], &[1, 2], Duration::from_secs(1)).await;
    b.signal(libc::SIGTERM);
    assert_eq!(bob.closed(Duration::from_secs(2)).await.0, 1001);
    let took = presence_becomes(&a, &[1, 2], &[1], Duration::from_secs_f64(NODE_TIMEOUT)).await;
    eprintln!("SIGTERMed node's user out of presence {took:?} after its socket closed");
    assert!(took < Duration::from_secs_f64(NODE_TIMEOUT / 2.0), "{took:?}: not by the silence bound");
    assert_eq!(b.wait_exit(Duration::from_secs(5)).await, Some(0));
}

/// The client `presence` op asked on A lists a subscriber whose socket is
/// on B, within the lag bound, and drops it within the bound when it
/// leaves; a node joining later learns the memberships from its snapshot.
#[tokio::test]
#[ignore = "needs nats-server: make test-cluster"]
async fn presence_op_on_a_lists_a_subscriber_on_b() {
    need_nats!();
    let nats = Nats::start();
    let site = Site::new(SITE);
    let a = node(&site, &[nats.url()], "a").await;
    let b = node(&site, &[nats.url()], "b").await;
    let mut alice = a.subscriber(1, 7).await;
    let t0 = Instant::now();
    let bob = b.subscriber(2, 7).await;
    // Poll within the lag bound (1 s), under the pub bucket's rate.
    async fn until(c: &mut Client, want: Value, within: Duration) -> Duration {
        let t0 = Instant::now();
        for r in 1.. {
            c.send(json!({"op":"presence","threads":[7],"ref":r})).await;
            let f = c.recv().await;
            if f["threads"] == want {
                return t0.elapsed();
            }
            assert!(t0.elapsed() < within, "presence not {want} within {within:?}: {f}");
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
        unreachable!()
    }
    let lag = until(&mut alice, json!([{"thread":7,"users":[1,2]}]), Duration::from_secs(1)).await;
    eprintln!("presence op lag (sub on B seen on A): {lag:?} after the ok; {:?} after connecting", t0.elapsed());

    // A third node, started now, learns Bob's membership from its snapshot.
    let c = node(&site, &[nats.url()], "c").await;
    let mut carol = c.subscriber(3, 7).await;
    until(&mut carol, json!([{"thread":7,"users":[1,2,3]}]), Duration::from_secs(1)).await;

    drop(bob);
    let lag = until(&mut alice, json!([{"thread":7,"users":[1,3]}]), Duration::from_secs(1)).await;
    eprintln!("presence op lag (socket on B closed, seen on A): {lag:?}");
}
