//! The client `presence` op (docs/PROTOCOL.md §6): who has a socket
//! subscribed to a thread, asked over the socket, for the socket's own
//! threads only. On the cluster suite (BM_TEST_CLUSTER=1) the clients
//! alternate between two nodes, so every answer is polled within the
//! stated lag bound (1 s).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// The cluster's stated presence lag (PROTOCOL.md §7.3).
const LAG: Duration = Duration::from_secs(1);

/// Sends one `presence` for `threads` and returns the answer.
async fn ask(c: &mut Client, threads: &[u64], r#ref: i64) -> Value {
    c.send(json!({"op":"presence","threads":threads,"ref":r#ref})).await;
    let f = c.recv().await;
    assert_eq!(f["ref"], r#ref, "{f}");
    f
}

/// Asks until the answer equals `want`, within the lag bound.
async fn ask_until(c: &mut Client, threads: &[u64], want: &Value) -> Duration {
    let t0 = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let f = ask(c, threads, n).await;
        if &f["threads"] == want {
            assert_eq!(f["op"], "presence", "{f}");
            return t0.elapsed();
        }
        assert!(t0.elapsed() < LAG, "presence not {want} within {LAG:?}; last answer {f}");
        // Under the pub bucket's rate (10/s).
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
}

#[tokio::test]
async fn presence_lists_each_threads_subscribers_and_only_the_askers_threads() {
    let r = Relay::start("").await;
    let mut alice = r.subscriber(1, 5).await;
    let bob = r.subscriber(2, 5).await;
    let mut bob2 = r.client(2).await;
    bob2.sub(&r.site, 2, 5).await;
    let _carol = r.subscriber(3, 6).await;
    let _dave = r.client(4).await;
    alice.sub(&r.site, 1, 8).await;

    // Thread 5: Alice and Bob (two sockets, listed once); thread 6 is
    // Carol's, not Alice's: refused per thread, nothing said about it;
    // thread 8: Alice alone. Dave, connected but subscribed to nothing,
    // is in no list.
    let want = json!([
        {"thread":5,"users":[1,2]},
        {"thread":6,"error":"not_subscribed"},
        {"thread":8,"users":[1]},
    ]);
    ask_until(&mut alice, &[5, 6, 8, 5], &want).await;

    // Bob's sockets leave one by one: he stays until the last is gone.
    drop(bob);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let f = ask(&mut alice, &[5], 90).await;
    assert_eq!(f["threads"], json!([{"thread":5,"users":[1,2]}]), "{f}");
    bob2.send(json!({"op":"unsub","thread":5,"ref":1})).await;
    assert_eq!(bob2.recv().await["op"], "ok");
    ask_until(&mut alice, &[5], &json!([{"thread":5,"users":[1]}])).await;

    // Once Alice leaves thread 8 she may not ask about it any more.
    alice.send(json!({"op":"unsub","thread":8,"ref":2})).await;
    assert_eq!(alice.recv().await["op"], "ok");
    let f = ask(&mut alice, &[8], 91).await;
    assert_eq!(f["threads"], json!([{"thread":8,"error":"not_subscribed"}]), "{f}");
}

#[tokio::test]
async fn a_server_revoked_subscription_leaves_presence() {
    let r = Relay::start("").await;
    let mut alice = r.subscriber(1, 5).await;
    let mut bob = r.subscriber(2, 5).await;
    ask_until(&mut alice, &[5], &json!([{"thread":5,"users":[1,2]}])).await;
    let (s, body) = r.post("/v1/disconnect", &json!({"users":[2],"thread":5}).to_string()).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(bob.recv().await, json!({"op":"unsub","thread":5}));
    ask_until(&mut alice, &[5], &json!([{"thread":5,"users":[1]}])).await;
    // And Bob, no longer subscribed, learns nothing about the thread.
    let f = ask(&mut bob, &[5], 3).await;
    assert_eq!(f["threads"], json!([{"thread":5,"error":"not_subscribed"}]), "{f}");
}

#[tokio::test]
async fn presence_frames_are_bounded_and_rate_limited() {
    let r = Relay::start("pub_rate_per_sec = 0.5\npub_burst = 3\n").await;
    let mut alice = r.subscriber(1, 5).await;
    let seventeen: Vec<u64> = (1..=17).collect();
    for (bad, r#ref) in [(json!(seventeen), 1), (json!([]), 2), (json!([0]), 3), (json!(["5"]), 4), (json!(5), 5)] {
        alice.send(json!({"op":"presence","threads":bad,"ref":r#ref})).await;
        let f = alice.recv().await;
        assert_eq!(
            (f["op"].as_str(), f["code"].as_str(), f["ref"].as_i64()),
            (Some("error"), Some("bad_frame"), Some(r#ref)),
            "{f}"
        );
    }
    alice.send(json!({"op":"presence","ref":6})).await;
    assert_eq!(alice.recv().await["code"], "bad_frame");
    // The pub bucket (burst 3): three answers, then rate_limited.
    for i in 0..3 {
        assert_eq!(ask(&mut alice, &[5], 10 + i).await["op"], "presence");
    }
    let f = ask(&mut alice, &[5], 20).await;
    assert_eq!((f["op"].as_str(), f["code"].as_str()), (Some("error"), Some("rate_limited")), "{f}");
    // A `pub` shares the bucket: refused too, not the socket closed.
    let env = r.site.thread_env(5, json!("typing"));
    alice.send(json!({"op":"pub","thread":5,"e":env,"ref":21})).await;
    assert_eq!(alice.recv().await["code"], "rate_limited");
}
