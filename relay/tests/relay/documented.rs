//! Behaviours docs/PROTOCOL.md and docs/DEPLOY.md state that no other test
//! exercised over real sockets: the body length checked before the body is
//! read (413), malformed timestamps and the clock/signature order on a
//! signed request, JWT `typ` and `exp <= iat`, a binary frame before
//! `auth`, a reload that changes a site's key (4003), configuration
//! precedence (file → environment → flag), every documented metric, and
//! the limit keys no other test sets to a non-default value.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bm_proto::{b64, signing};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// Reads until the peer closes or `within` passes.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Status and JSON body of a raw HTTP/1.1 response (`(0, Null)` if none).
fn parse_response(resp: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(resp);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Signed headers for `body` at `ts`.
fn signed_headers(site: &Site, path: &str, body: &[u8], ts: u64) -> Vec<(&'static str, String)> {
    let sig = signing::sign(&site.secret.relay_key(), ts, &site.id, "POST", path, body);
    vec![("X-BM-Site", site.id.to_string()), ("X-BM-Timestamp", ts.to_string()), ("X-BM-Signature", sig)]
}

fn head(path: &str, headers: &[(&str, String)], extra: &str) -> String {
    let mut s = format!("POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{extra}");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s
}

#[tokio::test]
async fn a_body_over_max_body_is_413_before_it_is_read() {
    let r = Relay::start("max_body = 4096\n").await;
    // A correctly signed body of 5000 bytes: its declared length alone
    // decides. Not one body byte is sent, and the answer comes anyway.
    let body = format!("{{\"events\":[],\"pad\":\"{}\"}}", "x".repeat(4980));
    let headers = signed_headers(&r.site, "/v1/push", body.as_bytes(), now());
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    s.write_all(head("/v1/push", &headers, &format!("content-length: {}\r\n", body.len())).as_bytes()).await.unwrap();
    let (resp, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
    let (status, v) = parse_response(&resp);
    assert_eq!((status, v["error"]["code"].as_str()), (413, Some("too_large")), "{}", String::from_utf8_lossy(&resp));
    // Without a Content-Length (chunked), the count stops at max_body: the
    // rest of the body is never waited for (we send 4 KiB + 1 and stop).
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    s.write_all(head("/v1/push", &headers, "transfer-encoding: chunked\r\n").as_bytes()).await.unwrap();
    // (The relay may answer and close before the last of it is read.)
    s.write_all(format!("{:x}\r\n{}\r\n", 4097, "y".repeat(4097)).as_bytes()).await.ok();
    let (resp, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
    let (status, v) = parse_response(&resp);
    assert_eq!((status, v["error"]["code"].as_str()), (413, Some("too_large")), "{}", String::from_utf8_lossy(&resp));
    // At the limit it passes: the limit is max_body, not the default 1 MiB.
    let ok = format!("{{\"events\":[],\"pad\":\"{}\"}}", "x".repeat(100));
    assert_eq!(r.post("/v1/push", &ok).await.0, 400, "a small body is read (and refused for its unknown field)");
    let exact = format!("{{\"events\":[]{}}}", " ".repeat(4096 - 13));
    assert_eq!(exact.len(), 4096);
    let (s, v) = r.post("/v1/push", &exact).await;
    assert_eq!(s, 200, "exactly max_body bytes: {v}");
}

#[tokio::test]
async fn malformed_timestamps_are_400_and_the_clock_is_checked_before_the_signature() {
    let r = Relay::start("").await;
    let body = json!({"events":[]}).to_string();
    let good = signing::sign(&r.site.secret.relay_key(), now(), &r.site.id, "POST", "/v1/push", body.as_bytes());
    // Not canonical decimals (signed as the text they are, where possible).
    let n = now().to_string();
    for ts in ["", "+1", "-1", "0x10", "1.0", "1e9", &format!("0{n}"), &format!("{n}a"), "18446744073709551616"] {
        let headers =
            [("X-BM-Site", SITE.to_owned()), ("X-BM-Timestamp", ts.to_owned()), ("X-BM-Signature", good.clone())];
        let (s, v) = raw_post(r.port, "/v1/push", &headers, &body).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("malformed")), "timestamp {ts:?}: {v}");
    }
    // Order (PROTOCOL.md §5): the clock before the signature. A stale
    // timestamp with a wrong signature is `stale`; a fresh one with the
    // same wrong signature is `bad_signature`; a stale one correctly
    // signed is `stale` too.
    let wrong = format!("v1={}", "ab".repeat(32));
    let old = now() - 3600;
    let h = |ts: u64, sig: &str| {
        vec![("X-BM-Site", SITE.to_owned()), ("X-BM-Timestamp", ts.to_string()), ("X-BM-Signature", sig.to_owned())]
    };
    let (s, v) = raw_post(r.port, "/v1/push", &h(old, &wrong), &body).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("stale")), "{v}");
    let (s, v) = raw_post(r.port, "/v1/push", &h(now(), &wrong), &body).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("bad_signature")), "{v}");
    let old_sig = signing::sign(&r.site.secret.relay_key(), old, &r.site.id, "POST", "/v1/push", body.as_bytes());
    let (s, v) = raw_post(r.port, "/v1/push", &h(old, &old_sig), &body).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("stale")), "{v}");
    // A timestamp up to 60 s ahead (skew) is fresh.
    let ahead = now() + 30;
    let sig = signing::sign(&r.site.secret.relay_key(), ahead, &r.site.id, "POST", "/v1/push", body.as_bytes());
    assert_eq!(raw_post(r.port, "/v1/push", &h(ahead, &sig), &body).await.0, 200);
}

fn forge(header: &str, claims: &Value, key: &[u8]) -> String {
    use hmac::Mac;
    let input = format!("{}.{}", b64::encode(header), b64::encode(claims.to_string()));
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(input.as_bytes());
    format!("{input}.{}", b64::encode(m.finalize().into_bytes()))
}

/// Sends `auth` with `token`; the error frame (if any) and the close code,
/// or `Ok` with the ready frame.
async fn try_auth(r: &Relay, token: &str) -> Result<Value, (Option<Value>, u16)> {
    let mut c = Client::connect(&r.ws_url()).await;
    c.send(json!({"op":"auth","token":token,"ref":1})).await;
    let mut err = None;
    loop {
        match c.next_within(Duration::from_secs(3)).await {
            Some(Seen::Frame(f)) if f["op"] == "ready" => return Ok(f),
            Some(Seen::Frame(f)) => err = Some(f),
            Some(Seen::Close(code, _)) => return Err((err, code)),
            other => panic!("expected ready or a close, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn jwt_typ_and_exp_after_iat_are_enforced_on_the_socket() {
    let r = Relay::start("").await;
    let key = r.site.secret.relay_key();
    let n = now();
    let claims = json!({"site": SITE, "sub": "2", "iat": n, "exp": n + 600});
    // typ, when present, must be JWT; absent is fine.
    let ready = try_auth(&r, &forge(r#"{"alg":"HS256"}"#, &claims, key.as_bytes())).await;
    assert_eq!(ready.expect("a header without typ is accepted")["user"], 2);
    for typ in ["JOSE", "jwt", "", "JWT "] {
        let header = format!("{{\"alg\":\"HS256\",\"typ\":\"{typ}\"}}");
        let (err, code) = try_auth(&r, &forge(&header, &claims, key.as_bytes())).await.expect_err(typ);
        assert_eq!((err.map(|e| e["code"].clone()), code), (Some(json!("bad_token")), 4001), "typ {typ:?}");
    }
    // exp must be after iat (both in the accepted window, exp in the future).
    for (iat, exp) in [(n + 30, n + 30), (n + 50, n + 20)] {
        let c = json!({"site": SITE, "sub": "2", "iat": iat, "exp": exp});
        let (err, code) = try_auth(&r, &forge(r#"{"alg":"HS256","typ":"JWT"}"#, &c, key.as_bytes())).await.unwrap_err();
        assert_eq!((err.map(|e| e["code"].clone()), code), (Some(json!("bad_token")), 4001), "iat {iat} exp {exp}");
    }
    // iat ahead within the 60 s leeway is accepted; beyond it, refused.
    let c = json!({"site": SITE, "sub": "2", "iat": n + 30, "exp": n + 600});
    assert!(try_auth(&r, &forge(r#"{"alg":"HS256","typ":"JWT"}"#, &c, key.as_bytes())).await.is_ok());
    let c = json!({"site": SITE, "sub": "2", "iat": n + 300, "exp": n + 900});
    assert_eq!(try_auth(&r, &forge(r#"{"alg":"HS256","typ":"JWT"}"#, &c, key.as_bytes())).await.unwrap_err().1, 4001);
}

#[tokio::test]
async fn a_binary_frame_before_auth_closes_4001() {
    let r = Relay::start("").await;
    let mut c = Client::connect(&r.ws_url()).await;
    c.ws.send(Message::Binary(b"{\"op\":\"auth\"}".to_vec().into())).await.unwrap();
    let (code, reason) = c.closed(Duration::from_secs(3)).await;
    assert_eq!(code, 4001, "{reason}");
    // After auth a binary frame is answered with bad_frame and the socket stays
    // (tested in limits.rs); before auth it never becomes a session.
    assert_eq!(r.metric("bm_relay_authenticated_connections").await, 0.0);
}

#[tokio::test]
async fn a_reload_that_changes_a_sites_key_closes_its_sockets_4003() {
    if single_node_only("a reload (SIGHUP to one process, its config file) is per process") {
        return;
    }
    let a = Site::new(SITE);
    let b = Site::new("b.example");
    let r = Relay::start_with(a.clone(), &[&a, &b], "").await;
    let mut on_a = r.client(2).await;
    let mut on_b = r.client_of(&b, 2).await;
    // b keeps its id, gets a new secret (so a new relay key).
    let b2 = Site { id: b.id.clone(), secret: bm_proto::SiteSecret::generate() };
    std::fs::write(&r.config_path, config_text(r.port, r.admin, &[&a, &b2], FAST)).unwrap();
    r.signal(libc::SIGHUP);
    let (code, _) = on_b.closed(Duration::from_secs(5)).await;
    assert_eq!(code, 4003, "sockets authenticated with the old key are closed");
    // The old key no longer signs anything; the new one does.
    let body = json!({"events":[]}).to_string();
    let (s, v) = signed_post(r.port, &b, "/v1/push", &body, now()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("bad_signature")), "{v}");
    assert_eq!(signed_post(r.port, &b2, "/v1/push", &body, now()).await.0, 200);
    assert_eq!(try_auth(&r, &b.token(2)).await.unwrap_err().1, 4001, "an old-key token is refused");
    let mut again = r.client_of(&b2, 2).await;
    again.send(json!({"op":"ping","ref":1})).await;
    assert_eq!(again.recv().await, json!({"op":"pong","ref":1}));
    // Site a, unchanged, kept its socket.
    on_a.send(json!({"op":"ping","ref":2})).await;
    assert_eq!(on_a.recv().await, json!({"op":"pong","ref":2}));
}

/// Starts `bm-relay serve` with `args` and `env`; waits until its admin
/// port answers; returns the child (killed on drop by the caller).
async fn spawn_relay(args: &[String], env: &[(&str, String)], admin: u16) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bm-relay"));
    die_with_parent(&mut cmd).arg("serve").args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    for k in ["BM_RELAY_LISTEN", "BM_RELAY_ADMIN_LISTEN", "BM_RELAY_SITES", "BM_RELAY_SITES_FILE", "BM_RELAY_CONFIG"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !listens_on(child.id(), admin) {
        assert!(Instant::now() < deadline, "relay did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

fn stop(mut child: std::process::Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

#[tokio::test]
async fn configuration_precedence_is_file_then_environment_then_flags() {
    let dir = TempDir::new();
    let (file_site, env_site, flag_site) = (Site::new("p.example"), Site::new("p.example"), Site::new("p.example"));
    let (p_file, p_env, p_flag, admin) = (free_port(), free_port(), free_port(), free_port());
    let path = dir.0.join("relay.toml");
    std::fs::write(&path, config_text(p_file, admin, &[&file_site], "")).unwrap();
    let cfg = vec!["--config".to_owned(), path.display().to_string()];
    let env = [
        ("BM_RELAY_LISTEN", format!("127.0.0.1:{p_env}")),
        ("BM_RELAY_SITES", format!("p.example={}", env_site.relay_key_b64())),
    ];
    let flags = ["--listen".to_owned(), format!("127.0.0.1:{p_flag}"), "--site".into()];
    let body = json!({"events":[]}).to_string();
    // Which listener, and which key for p.example, is in force.
    let in_force = |port: u16| {
        let (body, sites) = (body.clone(), [&file_site, &env_site, &flag_site].map(|s| (*s).clone()));
        async move {
            let mut which = None;
            for (i, s) in sites.iter().enumerate() {
                if signed_post(port, s, "/v1/push", &body, now()).await.0 == 200 {
                    which = Some(["file", "env", "flag"][i]);
                }
            }
            which
        }
    };

    // The file alone.
    let c = spawn_relay(&cfg, &[], admin).await;
    assert!(listens_on(c.id(), p_file));
    assert_eq!(in_force(p_file).await, Some("file"));
    stop(c);
    // The environment over the file.
    let c = spawn_relay(&cfg, &env, admin).await;
    assert!(listens_on(c.id(), p_env) && !listens_on(c.id(), p_file), "BM_RELAY_LISTEN wins over listen");
    assert_eq!(in_force(p_env).await, Some("env"), "BM_RELAY_SITES wins over [sites]");
    stop(c);
    // Flags over both.
    let mut args = cfg.clone();
    args.extend(flags.iter().cloned());
    args.push(format!("p.example={}", flag_site.relay_key_b64()));
    let c = spawn_relay(&args, &env, admin).await;
    assert!(listens_on(c.id(), p_flag) && !listens_on(c.id(), p_env), "--listen wins over BM_RELAY_LISTEN");
    assert_eq!(in_force(p_flag).await, Some("flag"), "--site wins over BM_RELAY_SITES");
    stop(c);
}

/// Every `bm_relay_*` name in docs/DEPLOY.md §7 (Observe).
fn documented_metrics() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/DEPLOY.md")).unwrap();
    let section = doc.split("## 7. Observe").nth(1).unwrap().split("\n## ").next().unwrap();
    let mut names = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `bm_relay_")) {
        let first = line.split(" | ").next().unwrap();
        for part in first.split('`').filter(|p| p.starts_with("bm_relay_")) {
            names.push(part.split('{').next().unwrap().to_owned());
        }
    }
    names
}

/// Sum of a metric's samples (all label sets; a histogram's `_count`).
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            let bare = k.split('{').next()?;
            (bare == name || bare == format!("{name}_count")).then(|| v.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[tokio::test]
async fn every_documented_metric_is_exported_and_moves() {
    if single_node_only("metrics are per process") {
        return;
    }
    let names = documented_metrics();
    assert!(names.len() >= 22, "the §7 table was not found or lost rows: {names:?}");
    let r = Relay::start("max_revocations_per_site = 1\nkeepalive_idle_secs = 1.0\nrequest_head_timeout_secs = 2.0\nmax_sockets_per_user = 1\n")
        .await;
    let before = r.metrics().await;
    for n in &names {
        assert!(before.contains(&format!("# TYPE {n} ")), "documented metric {n} is not exported");
    }
    // Drive each one.
    let mut a = r.subscriber(2, 7).await; // connections, users, subscriptions
    let mut b = r.subscriber(3, 7).await;
    assert_eq!(try_auth(&r, &r.site.token(2)).await.unwrap_err().1, 4029, "sockets_refused{{cap=user}}");
    a.send(json!({"op":"pub","thread":7,"e": r.site.thread_env(7, json!("p")),"ref":1})).await; // pubs
    assert_eq!(a.recv().await["op"], "ok");
    assert_eq!(b.recv().await["op"], "ev");
    a.send(json!({"op":"nope","ref":2})).await; // frame_errors
    assert_eq!(a.recv().await["op"], "error");
    assert_eq!(r.push(json!([{"to":[3],"thread":7,"e": r.site.thread_env(7, json!(1))}])).await.0, 200); // delivered
    assert_eq!(b.recv().await["op"], "ev");
    assert_eq!(r.push(json!([{"to":[9],"e": r.site.user_env(9, json!(1))}])).await.0, 200); // unrouted
    assert_eq!(r.post("/v1/push", "{").await.0, 400); // requests{client_error}
                                                      // Two disconnects of different users: the second folds the first
                                                      // (max_revocations_per_site = 1); user 3's socket closes 4003.
    assert_eq!(r.post("/v1/disconnect", r#"{"users":[4]}"#).await.0, 200);
    assert_eq!(r.post("/v1/disconnect", r#"{"users":[3]}"#).await.0, 200);
    assert_eq!(b.closed(Duration::from_secs(3)).await.0, 4003);
    // An anonymous connection (pending), then an idle keep-alive close.
    let anon = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    let mut ka = Http::connect(r.port).await;
    assert_eq!(ka.signed_post(&r.site, "/v1/push", "{\"events\":[]}").await.0, 200);
    // A head over max_request_head_bytes (16 KiB): 431, refused_total.
    let mut big = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    big.write_all(format!("GET /v1/ws HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n", "a".repeat(20_000)).as_bytes())
        .await
        .ok();
    assert_eq!(parse_response(&read_to_close(&mut big, Duration::from_secs(5)).await.0).0, 431);
    // A stream (streams, streams_opened_total), held while /metrics is read.
    let mut stream = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    // Issued after the site's revocation floor the disconnects above set.
    let token =
        bm_proto::token::Claims::connection(r.site.id.clone(), u(5), now() + 2, 3600).mint(&r.site.secret.relay_key());
    let auth = json!({"op":"auth","token": token}).to_string();
    let open = format!("POST /v1/stream HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{auth}", auth.len());
    stream.write_all(open.as_bytes()).await.unwrap();
    r.wait_metric("bm_relay_streams", |v| v == 1.0, Duration::from_secs(5)).await;
    // An admin connection held open while /metrics is read.
    let _admin = TcpStream::connect(("127.0.0.1", r.admin)).await.unwrap();
    let during = r.metrics().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while total(&r.metrics().await, "bm_relay_idle_closes_total") < 1.0 {
        assert!(Instant::now() < deadline, "no idle keep-alive close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = r.metrics().await;
    drop(anon);
    drop(stream);

    // Gauges seen above zero while their thing existed.
    for g in [
        "bm_relay_connections",
        "bm_relay_authenticated_connections",
        "bm_relay_users",
        "bm_relay_subscriptions",
        "bm_relay_client_connections",
        "bm_relay_pending_connections",
        "bm_relay_admin_connections",
        "bm_relay_revocations",
        "bm_relay_streams",
    ] {
        assert!(total(&during, g) > 0.0, "{g} stayed at 0 while in use:\n{during}");
    }
    // Counters moved.
    let mut unmoved = Vec::new();
    for n in &names {
        let gauge = [
            "bm_relay_connections",
            "bm_relay_authenticated_connections",
            "bm_relay_users",
            "bm_relay_subscriptions",
            "bm_relay_client_connections",
            "bm_relay_pending_connections",
            "bm_relay_admin_connections",
            "bm_relay_revocations",
            "bm_relay_streams",
            // Bytes waiting in outbound queues: loopback socket buffers
            // take a push at once, so it is only seen at 0 here (moved by
            // the slow-consumer test, limits.rs).
            "bm_relay_queue_bytes",
            // Moves only when a socket overflows its queue (limits.rs,
            // hardening.rs drive it); 0 before and after here.
            "bm_relay_slow_consumer_closes_total",
        ];
        if gauge.contains(&n.as_str()) {
            continue;
        }
        if total(&after, n) <= total(&before, n) {
            unmoved.push(n.clone());
        }
    }
    assert!(unmoved.is_empty(), "documented counters that did not move: {unmoved:?}\n{after}");
    let delivered = r#"bm_relay_events_total{result="delivered"}"#;
    let unrouted = r#"bm_relay_events_total{result="unrouted"}"#;
    for (line, want) in [(delivered, 1.0), (unrouted, 1.0)] {
        let v = after.lines().find_map(|l| l.strip_prefix(line)).map(|v| v.trim().parse::<f64>().unwrap());
        assert_eq!(v, Some(want), "{line}");
    }
}

/// The server settings an h2c connection advertises (id → value).
async fn h2_settings(port: u16) -> Vec<(u16, u32)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut head)).await.unwrap().unwrap();
    assert_eq!(head[3], 4, "the server's first frame is SETTINGS");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    payload
        .chunks(6)
        .map(|c| (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes([c[2], c[3], c[4], c[5]])))
        .collect()
}

#[tokio::test]
async fn limit_keys_at_non_default_values_are_in_force() {
    let r = Relay::start(
        "max_skew_secs = 5\nmax_recipients = 3\nmax_ciphertext = 1024\nmax_pub_ciphertext = 512\n\
         pub_rate_per_sec = 0.5\npub_burst = 3\nmax_headers = 12\nmax_request_head_bytes = 8192\n\
         h2_max_concurrent_streams = 3\nws_read_buffer = 256\nws_write_buffer = 512\n",
    )
    .await;
    let empty = json!({"events":[]}).to_string();
    // max_skew_secs = 5: 30 s old is stale (the default 60 s would take it).
    assert_eq!(signed_post(r.port, &r.site, "/v1/push", &empty, now() - 30).await.1["error"]["code"], "stale");
    assert_eq!(signed_post(r.port, &r.site, "/v1/push", &empty, now() - 2).await.0, 200);
    // max_recipients = 3.
    let env = r.site.thread_env(7, json!(1));
    let (s, v) = r.push(json!([{"to":[1,2,3,4],"e": env}])).await;
    assert_eq!((s, v["error"]["code"].as_str()), (413, Some("too_large")), "{v}");
    assert_eq!(r.push(json!([{"to":[1,2,3],"e": env}])).await.0, 200);
    // max_ciphertext = 1024 (decoded c).
    let (s, v) = r.push(json!([{"to":[2],"e": r.site.user_env(2, json!("z".repeat(1100)))}])).await;
    assert_eq!((s, v["error"]["code"].as_str()), (413, Some("too_large")), "{v}");
    assert_eq!(r.push(json!([{"to":[2],"e": r.site.user_env(2, json!("z".repeat(900)))}])).await.0, 200);
    // max_pub_ciphertext = 512, pub_burst = 3 at 0.5/s.
    let mut c = r.subscriber(2, 7).await;
    c.send(json!({"op":"pub","thread":7,"e": r.site.thread_env(7, json!("w".repeat(600))),"ref":0})).await;
    assert_eq!(c.recv().await["code"], "too_large");
    let (mut ok, mut limited) = (0, 0);
    for i in 1..=5 {
        c.send(json!({"op":"pub","thread":7,"e": r.site.thread_env(7, json!(i)),"ref":i})).await;
        match c.recv().await {
            f if f["op"] == "ok" => ok += 1,
            f if f["code"] == "rate_limited" => limited += 1,
            f => panic!("unexpected {f}"),
        }
    }
    // The too_large pub spent a token too (a refused pub is still a pub): 2 or 3 pass.
    assert!((2..=3).contains(&ok) && ok + limited == 5, "ok={ok} limited={limited}");
    // ws_read_buffer / ws_write_buffer: small buffers still carry frames
    // many times their size both ways.
    c.send(json!({"op":"ping","ref":99,"pad":"p".repeat(8000)})).await;
    assert_eq!(c.recv().await["op"], "pong");
    assert_eq!(r.push(json!([{"to":[2],"e": r.site.user_env(2, json!("q".repeat(900)))}])).await.0, 200);
    assert_eq!(c.recv().await["op"], "ev");
    // max_headers = 12: 13 header lines are 431, 12 are not (7 below + pads).
    for (pads, want) in [(6, 431), (5, 200)] {
        let mut h = signed_headers(&r.site, "/v1/push", empty.as_bytes(), now());
        let mut extra = String::new();
        for i in 0..pads {
            extra.push_str(&format!("x-pad-{i}: 1\r\n"));
        }
        extra.push_str(&format!("content-length: {}\r\n", empty.len()));
        h.push(("connection", "close".into()));
        let mut s = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
        // One write, head and body: a refused head may close the
        // connection before a second write.
        s.write_all(format!("{}{empty}", head("/v1/push", &h, &extra)).as_bytes()).await.ok();
        let (resp, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
        assert_eq!(parse_response(&resp).0, want, "{} headers: {}", 7 + pads, String::from_utf8_lossy(&resp));
    }
    // max_request_head_bytes = 8192: a 9000-byte head is 431 (under the 16 KiB default).
    let mut h = signed_headers(&r.site, "/v1/push", empty.as_bytes(), now());
    h.push(("x-pad", "a".repeat(9000)));
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    s.write_all(format!("{}{empty}", head("/v1/push", &h, &format!("content-length: {}\r\n", empty.len()))).as_bytes())
        .await
        .ok();
    let (resp, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert_eq!(parse_response(&resp).0, 431, "{}", String::from_utf8_lossy(&resp));
    // h2_max_concurrent_streams = 3, advertised (SETTINGS_MAX_CONCURRENT_STREAMS = 0x3).
    if !on_cluster() {
        assert!(h2_settings(r.port).await.contains(&(3, 3)), "{:?}", h2_settings(r.port).await);
    }
}

#[test]
fn ws_buffers_out_of_range_are_refused_at_start() {
    let dir = TempDir::new();
    let path = dir.0.join("bad.toml");
    for bad in ["ws_read_buffer = 0", "max_recipients = 0", "max_pub_ciphertext = 0", "h2_max_concurrent_streams = 0"] {
        std::fs::write(&path, format!("listen = \"127.0.0.1:1\"\n[limits]\n{bad}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_bm-relay"))
            .args(["serve", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let key = bad.split(' ').next().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains(&format!("key limits.{key}")), "{bad}: {err}");
    }
}
