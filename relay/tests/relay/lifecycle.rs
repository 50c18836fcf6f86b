//! Process lifecycle: SIGHUP reload, graceful shutdown, refusing a bad
//! config at start, and zero retention (no disk writes over thousands of
//! events).

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn sighup_reloads_sites_and_limits_without_dropping_sockets() {
    if single_node_only("a reload (SIGHUP to one process, its config file) is per process") {
        return;
    }
    let a = Site::new(SITE);
    let b = Site::new("b.example");
    let c = Site::new("c.example");
    let r = Relay::start_with(a.clone(), &[&a, &b], "").await;
    let mut on_a = r.client(2).await;
    let mut on_b = r.client_of(&b, 2).await;

    // Remove b, add c, tighten a limit.
    std::fs::write(&r.config_path, config_text(r.port, r.admin, &[&a, &c], &format!("{FAST}max_events = 2\n")))
        .unwrap();
    r.signal(libc::SIGHUP);
    let (code, _) = on_b.closed(Duration::from_secs(5)).await;
    assert_eq!(code, 4003, "a removed site's sockets are closed with 4003");
    let (s, body) = signed_post(r.port, &c, "/v1/push", &json!({"events":[]}).to_string(), now()).await;
    assert_eq!(s, 200, "the added site is served: {body}");
    let (s, body) = signed_post(r.port, &b, "/v1/push", &json!({"events":[]}).to_string(), now()).await;
    assert_eq!((s, body["error"]["code"].as_str()), (401, Some("unknown_site")));
    let three: Vec<_> = (0..3).map(|_| json!({"to":[2],"e": a.user_env(2, json!(1))})).collect();
    assert_eq!(r.push(json!(three)).await.0, 413, "the new limit is in force");
    // a's socket survived and still receives.
    let (s, _) = r.push(json!([{"to":[2],"e": a.user_env(2, json!("still here"))}])).await;
    assert_eq!(s, 200);
    assert_eq!(a.open(&on_a.recv().await["e"]), json!("still here"));

    // A broken file is refused; the running configuration stays.
    std::fs::write(&r.config_path, "listen = 5\n[sites\n").unwrap();
    r.signal(libc::SIGHUP);
    // Wait until the relay has handled the signal (it logs the refusal),
    // then check the old configuration still serves.
    r.wait_log("reload refused", Duration::from_secs(5)).await;
    let (s, _) = r.push(json!([{"to":[2],"e": a.user_env(2, json!("after bad reload"))}])).await;
    assert_eq!(s, 200);
    assert_eq!(a.open(&on_a.recv().await["e"]), json!("after bad reload"));
}

#[tokio::test]
async fn graceful_shutdown_closes_1001_and_answers_503() {
    let mut r = Relay::start("").await;
    let mut c = r.client(2).await;
    let mut http = Http::connect(r.port).await;
    assert_eq!(http.signed_post(&r.site, "/v1/push", "{\"events\":[]}").await.0, 200);
    r.signal(libc::SIGTERM);
    let (code, _) = c.closed(Duration::from_secs(5)).await;
    assert_eq!(code, 1001);
    let (s, body) = http.signed_post(&r.site, "/v1/push", "{\"events\":[]}").await;
    assert_eq!((s, body["error"]["code"].as_str()), (503, Some("shutting_down")), "{body}");
    assert_eq!(r.wait_exit(Duration::from_secs(5)).await, Some(0), "exits 0 within the deadline");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", r.port)).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn shutdown_deadline_bounds_the_wait() {
    // A client that never answers the close still lets the relay exit by the deadline.
    let mut r = Relay::start("").await;
    let _c = r.client(2).await; // never read again
    let started = std::time::Instant::now();
    r.signal(libc::SIGINT);
    assert_eq!(r.wait_exit(Duration::from_secs(8)).await, Some(0));
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
}

#[test]
fn bad_config_is_refused_with_line_and_key() {
    let dir = TempDir::new();
    let path = dir.0.join("bad.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:1\"\n[limits]\nmax_events = 10\nidle_timeout_secs = -1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bm-relay"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4, key limits.idle_timeout_secs"), "{err}");
    // A site key that is not a key: refused without echoing it.
    std::fs::write(&path, "[sites]\n\"x.example\" = \"this-is-not-a-key\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bm-relay")).args(["serve", "--config"]).arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("line 2") && !err.contains("this-is-not-a-key"), "{err}");
    // Flags: a bad --site.
    let out = Command::new(env!("CARGO_BIN_EXE_bm-relay")).args(["serve", "--site", "nokey"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn write_bytes(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/<pid>/io is readable");
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).expect("write_bytes line").trim().parse().unwrap()
}

#[tokio::test]
async fn no_disk_writes_during_thousands_of_events() {
    let r = Relay::start("").await;
    let mut user = r.client(2).await;
    let mut member = r.subscriber(3, 7).await;
    let before = write_bytes(r.pid());
    let mut http = Http::connect(r.port).await;
    let rounds = 5;
    for _ in 0..rounds {
        let events: Vec<_> = (0..1000)
            .map(|i| {
                if i % 2 == 0 {
                    json!({"to":[2],"e": r.site.user_env(2, json!({"secret text": i}))})
                } else {
                    json!({"to":[],"thread":7,"e": r.site.thread_env(7, json!({"secret text": i}))})
                }
            })
            .collect();
        let (s, _) = http.signed_post(&r.site, "/v1/push", &json!({ "events": events }).to_string()).await;
        assert_eq!(s, 200);
    }
    for _ in 0..rounds * 500 {
        assert_eq!(user.recv().await["op"], "ev");
        assert_eq!(member.recv().await["op"], "ev");
    }
    for i in 0..20 {
        member.send(json!({"op":"pub","thread":7,"e": r.site.thread_env(7, json!(i)),"ref":i})).await;
        assert_eq!(member.recv().await["op"], "ok");
    }
    drop(user);
    drop(member);
    // The relay has seen both sockets go (anything it would write about
    // them is written by then).
    r.wait_metric("bm_relay_connections", |v| v == 0.0, Duration::from_secs(5)).await;
    let after = write_bytes(r.pid());
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", r.pid())).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    assert_eq!(core.split_whitespace().nth(5), Some("0"), "no core dumps, not even by raising the soft limit: {core}");
    assert_eq!(after - before, 0, "the relay wrote {} bytes to storage", after - before);
    assert_eq!(r.metric("bm_relay_events_pushed_total").await, (rounds * 1000) as f64);
    let log = r.log();
    assert!(!log.contains("secret text") && !log.contains(&r.site.token(2)[..20]), "no payloads or tokens in logs");
}

#[tokio::test]
async fn environment_configures_a_relay_without_a_file() {
    let site = Site::new("env.example");
    let (port, admin) = (free_port(), free_port());
    let child = die_with_parent(&mut Command::new(env!("CARGO_BIN_EXE_bm-relay")))
        .arg("serve")
        .env("BM_RELAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("BM_RELAY_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .env("BM_RELAY_SITES", format!("other.example={},{}={}", site.relay_key_b64(), site.id, site.relay_key_b64()))
        .env("RUST_LOG", "info")
        .env_remove("BM_RELAY_CONFIG")
        .args(["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut guard = Kill(child);
    let mut healthy = None;
    for _ in 0..300 {
        if let Ok((200, body)) = http_get(admin, "/healthz").await {
            healthy = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body: serde_json::Value = serde_json::from_str(&healthy.expect("healthy")).unwrap();
    assert_eq!(body["sites"], 2);
    let (s, _) = signed_post(port, &site, "/v1/push", "{\"events\":[]}", now()).await;
    assert_eq!(s, 200);
    // JSON logs: every stderr line is one JSON object.
    guard.0.kill().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut guard.0.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.lines().count() >= 1);
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

#[tokio::test]
async fn trace_logging_never_shows_tokens_or_payloads() {
    // The harness starts relays with RUST_LOG=info; restart this one at trace.
    let site = Site::new(SITE);
    let dir = TempDir::new();
    let (port, admin) = (free_port(), free_port());
    let path = dir.0.join("relay.toml");
    std::fs::write(&path, config_text(port, admin, &[&site], FAST)).unwrap();
    let mut child = die_with_parent(&mut Command::new(env!("CARGO_BIN_EXE_bm-relay")))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut healthy = false;
    for _ in 0..300 {
        if let Ok((200, _)) = http_get(admin, "/healthz").await {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = site.token(2);
    let env = site.user_env(2, json!("private words"));
    if healthy {
        let mut c = Client::connect(&format!("ws://127.0.0.1:{port}/v1/ws")).await;
        c.send(json!({"op":"auth","token": token})).await;
        assert_eq!(c.recv().await["op"], "ready");
        let (s, _) =
            signed_post(port, &site, "/v1/push", &json!({"events":[{"to":[2],"e": env}]}).to_string(), now()).await;
        assert_eq!(s, 200);
        assert_eq!(c.recv().await["op"], "ev");
        c.send(json!({"op":"refresh","token": token, "ref": 1})).await;
        assert_eq!(c.recv().await["op"], "ok");
    }
    let _ = child.kill();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    let _ = child.wait();
    assert!(healthy, "relay did not start:\n{log}");
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "trace logging is on");
    for secret in [&token[token.len() - 20..], &env.c[..20], &env.n, &site.relay_key_b64()] {
        assert!(!log.contains(secret), "the log shows {secret}:\n{log}");
    }
}
