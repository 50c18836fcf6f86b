//! Reconnect storms (issue 11): a relay that shuts down with 5,000 sockets
//! open spreads its closes and tells each client when to come back, so the
//! relay they return to sees them at about `reconnect_pace_per_sec`, not
//! all in the same second. The clients here honour `retry_ms` as the
//! browser client does (wp-plugin-shim/assets/bm-client.js).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

const SOCKETS: usize = 5_000;
const PACE: f64 = 1_000.0;

/// `retry_ms=N` from a close reason, as the browser client reads it.
fn retry_ms(reason: &str) -> Option<u64> {
    reason.split("retry_ms=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

async fn connect_ready(url: &str, token: String) -> Client {
    let mut c = Client::connect(url).await;
    c.send(json!({"op":"auth","token": token})).await;
    let ready = c.recv().await;
    assert_eq!(ready["op"], "ready", "{ready}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_spreads_reconnects_at_the_configured_pace() {
    let site = Site::new(SITE);
    // auth_timeout_secs: this test is about pacing, and 5,000 sockets made
    // by this one process on a loaded 2-core machine once had a socket
    // wait over the default 10 s for its `auth` to be read (a CI run
    // beside three builds: "4001 auth timeout" in the first wave).
    let limits = format!(
        "reconnect_pace_per_sec = {PACE}\nclose_spread_secs = 1.0\nshutdown_deadline_secs = 20\nmax_unauthenticated_sockets = 20000\nauth_timeout_secs = 60\n"
    );
    let mut a = Relay::start_with(site.clone(), &[&site], &limits).await;
    let b = Relay::start_with(site.clone(), &[&site], &limits).await;
    let (a_url, b_url) = (a.ws_url(), b.ws_url());

    // Connect in waves (a browser fleet arrives over time too).
    let mut clients = Vec::with_capacity(SOCKETS);
    for wave in (0..SOCKETS).collect::<Vec<_>>().chunks(250) {
        let joins: Vec<_> = wave
            .iter()
            .map(|&i| {
                let (url, token) = (a_url.clone(), site.token(i as u64 + 1));
                tokio::spawn(async move { connect_ready(&url, token).await })
            })
            .collect();
        for j in joins {
            clients.push(j.await.unwrap());
        }
    }
    assert_eq!(a.metric("bm_relay_authenticated_connections").await as usize, SOCKETS);

    // Each client: wait for the close, honour retry_ms, reconnect to B.
    let back = Arc::new(AtomicUsize::new(0));
    let hinted = Arc::new(AtomicUsize::new(0));
    // When each client was told to come back (close seen + retry_ms), in
    // seconds after the SIGTERM: what the relay decides, whatever delays
    // this process's 5,000 tasks meet on a loaded machine afterwards.
    let planned = Arc::new(std::sync::Mutex::new(Vec::with_capacity(SOCKETS)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(SOCKETS);
    for (i, mut c) in clients.into_iter().enumerate() {
        let (url, token, back, hinted, planned) =
            (b_url.clone(), site.token(i as u64 + 1), back.clone(), hinted.clone(), planned.clone());
        tasks.push(tokio::spawn(async move {
            let (code, reason) = c.closed(Duration::from_secs(30)).await;
            assert_eq!(code, 1001, "{reason}");
            drop(c);
            if let Some(ms) = retry_ms(&reason) {
                hinted.fetch_add(1, Ordering::Relaxed);
                let at = started.elapsed().as_secs_f64() + ms as f64 / 1000.0;
                planned.lock().unwrap_or_else(|p| p.into_inner()).push(at);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let _again = connect_ready(&url, token).await;
            back.fetch_add(1, Ordering::Relaxed);
            // Hold the socket until the test ends.
            tokio::time::sleep(Duration::from_secs(60)).await;
        }));
    }
    a.signal(libc::SIGTERM);

    // What B sees: new sockets per second, sampled every 100 ms.
    let mut samples = vec![(0.0f64, b.metric("bm_relay_connections_opened_total").await)];
    let deadline = Duration::from_secs_f64(SOCKETS as f64 / PACE + 15.0);
    while back.load(Ordering::Relaxed) < SOCKETS && started.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        samples.push((started.elapsed().as_secs_f64(), b.metric("bm_relay_connections_opened_total").await));
    }
    assert_eq!(back.load(Ordering::Relaxed), SOCKETS, "every client came back within {deadline:?}");
    assert_eq!(hinted.load(Ordering::Relaxed), SOCKETS, "every close carried retry_ms");
    let mut worst = 0.0f64;
    for (i, (t0, n0)) in samples.iter().enumerate() {
        if let Some((_, n1)) = samples[i..].iter().take_while(|(t1, _)| t1 - t0 <= 1.0).last() {
            worst = worst.max(n1 - n0);
        }
    }
    let took = samples.last().map(|s| s.0).unwrap_or(0.0);
    // The relay's plan: the busiest one-second window of planned returns.
    let mut plan = planned.lock().unwrap_or_else(|p| p.into_inner()).clone();
    plan.sort_by(f64::total_cmp);
    let mut planned_worst = 0usize;
    let mut j = 0;
    for i in 0..plan.len() {
        while plan[i] - plan[j] > 1.0 {
            j += 1;
        }
        planned_worst = planned_worst.max(i - j + 1);
    }
    eprintln!(
        "storm: {SOCKETS} sockets back in {took:.1} s; busiest second planned by the relay: {planned_worst}, \
         seen at B: {worst} new sockets (pace {PACE})"
    );
    assert!(
        planned_worst as f64 <= PACE * 1.3,
        "the relay planned {planned_worst} returns in one second, pace {PACE}/s"
    );
    // What B saw also follows the pace, within what a loaded test machine
    // adds (its client tasks run late and in bunches): all 5,000 at once
    // would be 5x.
    assert!(worst <= PACE * 2.0, "B saw {worst} reconnects in one second, pace {PACE}/s");
    assert!(took >= SOCKETS as f64 / PACE * 0.7, "spread over about sockets/pace seconds, took {took:.1} s");
    assert_eq!(a.wait_exit(Duration::from_secs(20)).await, Some(0));
    for t in tasks {
        t.abort();
    }
}
