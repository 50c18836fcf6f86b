//! The HTTP layer against anonymous clients (issue #11), over raw sockets:
//! unsigned bodies refused before they are read, trickled bodies timed out,
//! body bytes in flight bounded, silent and half-preface connections
//! closed, idle keep-alive closed (HTTP/1.1 and h2c), connection caps
//! (total, pending, per address, reserve for the API), `X-Forwarded-For`
//! only from trusted proxies, bounded heads and h2 settings, and the
//! admin listener's timer, cap and `/healthz` without a pid.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Loopback peers are trusted proxies by default (nginx on the host): the
/// per-address tests count the test's own 127.0.0.1 connections.
const DIRECT: &str = "trusted_proxies = []\n";

/// Header lines of a raw request.
type Headers = Vec<(&'static str, String)>;

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.expect("connects")
}

/// Reads until the peer closes (EOF or reset) or `within` passes; returns
/// the bytes and whether it closed.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn status(resp: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(resp);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn header_of(resp: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(resp);
    let head = text.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

fn body_json(resp: &[u8]) -> Value {
    let text = String::from_utf8_lossy(resp);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// A POST head declaring `len` body bytes, with `headers` lines.
fn post_head(path: &str, len: usize, headers: &[(&str, String)]) -> String {
    let mut s = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n"
    );
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s
}

/// Headers that pass every check made before the body: a known site, a
/// fresh timestamp and a well-formed (but wrong) signature.
fn plausible(site: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-BM-Site", site.to_owned()),
        ("X-BM-Timestamp", now().to_string()),
        ("X-BM-Signature", format!("v1={}", "ab".repeat(32))),
    ]
}

#[tokio::test]
async fn unsigned_bodies_are_refused_before_a_byte_is_read() {
    let r = Relay::start("").await;
    let ts = now().to_string();
    let sig = format!("v1={}", "0".repeat(64));
    let cases: Vec<(Headers, u16, &str)> = vec![
        (vec![], 401, "unknown_site"),
        (
            vec![
                ("X-BM-Site", "stranger.example".into()),
                ("X-BM-Timestamp", ts.clone()),
                ("X-BM-Signature", sig.clone()),
            ],
            401,
            "unknown_site",
        ),
        (vec![("X-BM-Site", SITE.into()), ("X-BM-Timestamp", ts.clone())], 401, "bad_signature"),
        (
            vec![("X-BM-Site", SITE.into()), ("X-BM-Timestamp", ts.clone()), ("X-BM-Signature", "v1=xyz".into())],
            401,
            "bad_signature",
        ),
        (
            vec![("X-BM-Site", SITE.into()), ("X-BM-Timestamp", "01".into()), ("X-BM-Signature", sig.clone())],
            400,
            "malformed",
        ),
        (
            vec![
                ("X-BM-Site", SITE.into()),
                ("X-BM-Timestamp", (now() - 3600).to_string()),
                ("X-BM-Signature", sig.clone()),
            ],
            401,
            "stale",
        ),
    ];
    for (headers, want, code) in cases {
        // 1 MiB declared, not one byte sent: the answer must not wait for it.
        let mut s = connect(r.port).await;
        s.write_all(post_head("/v1/push", 1024 * 1024, &headers).as_bytes()).await.unwrap();
        let started = Instant::now();
        let (resp, closed) = read_to_close(&mut s, Duration::from_secs(3)).await;
        assert_eq!(
            (status(&resp), body_json(&resp)["error"]["code"].as_str()),
            (want, Some(code)),
            "{headers:?}: {}",
            String::from_utf8_lossy(&resp)
        );
        assert!(
            closed && started.elapsed() < Duration::from_secs(2),
            "answered and closed at once: {:?}",
            started.elapsed()
        );
    }
    // A signed push still works.
    let (s, v) = r.push(json!([])).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn a_trickled_body_gets_408_and_body_bytes_in_flight_are_bounded() {
    let r = Relay::start("body_timeout_secs = 1.5\nmax_body_bytes_in_flight = 1048576\n").await;
    // Trickle: 10 bytes of 1000, then nothing.
    let mut s = connect(r.port).await;
    s.write_all(post_head("/v1/push", 1000, &plausible(SITE)).as_bytes()).await.unwrap();
    s.write_all(b"{\"events\":").await.unwrap();
    let started = Instant::now();
    let (resp, closed) = read_to_close(&mut s, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert_eq!(status(&resp), 408, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(body_json(&resp)["error"]["code"], "timeout");
    assert!(closed && took >= Duration::from_millis(1400) && took < Duration::from_secs(3), "{took:?}");
    assert_eq!(r.metric("bm_relay_refused_total{reason=\"body_timeout_secs\"}").await, 1.0);

    // 700 KB really sent and held (1 MiB declared), then a second body
    // crossing the 1 MiB in flight gets 503 with Retry-After; a small
    // signed push still passes beside the first.
    let mut a = connect(r.port).await;
    a.write_all(post_head("/v1/push", 1024 * 1024, &plausible(SITE)).as_bytes()).await.unwrap();
    a.write_all(&vec![b' '; 700_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, v) = r.push(json!([])).await;
    assert_eq!(st, 200, "{v}");
    let mut b = connect(r.port).await;
    b.write_all(post_head("/v1/push", 1024 * 1024, &plausible(SITE)).as_bytes()).await.unwrap();
    let _ = b.write_all(&vec![b' '; 400_000]).await;
    let (resp, _) = read_to_close(&mut b, Duration::from_secs(3)).await;
    assert_eq!(status(&resp), 503, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(body_json(&resp)["error"]["code"], "overloaded");
    assert_eq!(header_of(&resp, "retry-after").as_deref(), Some("1"));
    assert_eq!(r.metric("bm_relay_refused_total{reason=\"max_body_bytes_in_flight\"}").await, 1.0);
    // The held body times out and frees its bytes: a big signed push passes.
    let (resp, _) = read_to_close(&mut a, Duration::from_secs(3)).await;
    assert_eq!(status(&resp), 408);
    let big = json!({"events": [], "pad": "x".repeat(900_000)}).to_string();
    let (st, _) = r.post("/v1/push", &big).await;
    assert_eq!(st, 400, "read whole (then refused for its unknown field), not 503");
}

#[tokio::test]
async fn silent_half_preface_and_idle_connections_are_closed() {
    let r = Relay::start("request_head_timeout_secs = 1.0\nkeepalive_idle_secs = 2.0\n").await;
    let mut silent = connect(r.port).await;
    let mut half_preface = connect(r.port).await;
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut slow_head = connect(r.port).await;
    slow_head.write_all(b"GET /v1/ws HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let started = Instant::now();
    for s in [&mut silent, &mut half_preface, &mut slow_head] {
        let (_, closed) = read_to_close(s, Duration::from_secs(4)).await;
        assert!(closed, "closed by the relay");
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "{took:?}");
    assert!(r.metric("bm_relay_refused_total{reason=\"request_head_timeout_secs\"}").await >= 3.0);
    // The gauge drops when the connection's task ends, just after the
    // close the client saw: polled (it failed once read at once).
    r.wait_metric("bm_relay_pending_connections", |v| v == 0.0, Duration::from_secs(5)).await;

    // Junk requests do not make a connection trusted: a kept-alive one that
    // only got a 404 is closed at request_head_timeout_secs after accept.
    let mut junk = connect(r.port).await;
    let started = Instant::now();
    junk.write_all(b"GET /nope HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let (resp, closed) = read_to_close(&mut junk, Duration::from_secs(4)).await;
    assert_eq!(status(&resp), 404);
    assert!(closed && started.elapsed() < Duration::from_millis(1900), "{:?}", started.elapsed());

    // HTTP/1.1 keep-alive after a signed request: idle after the reply,
    // closed after keepalive_idle_secs.
    let body = "{\"events\":[]}";
    let mut ka = connect(r.port).await;
    ka.write_all(post_head("/v1/push", body.len(), &signed_headers(&r.site, "/v1/push", body)).as_bytes())
        .await
        .unwrap();
    ka.write_all(body.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (resp, closed) = read_to_close(&mut ka, Duration::from_secs(5)).await;
    assert_eq!(status(&resp), 200, "{}", String::from_utf8_lossy(&resp));
    assert!(closed && started.elapsed() >= Duration::from_millis(1900), "{:?}", started.elapsed());

    // h2c (prior knowledge): a signed request, then idle: GOAWAY and close.
    let stream = connect(r.port).await;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let mut req = hyper::Request::post("http://127.0.0.1/v1/push");
    for (k, v) in signed_headers(&r.site, "/v1/push", body) {
        req = req.header(k, v);
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(6), conn).await;
    assert!(ended.is_ok(), "h2 connection closed by the relay");
    assert!(started.elapsed() >= Duration::from_millis(1900), "{:?}", started.elapsed());
    assert!(r.metric("bm_relay_idle_closes_total").await >= 2.0);
}

#[tokio::test]
async fn connection_caps_answer_429_or_close_and_keep_room_for_pushes() {
    if single_node_only("the per-address and pending-connection caps are per process; clients spread over two nodes never reach one node's cap") {
        return;
    }
    // Per address: 4 open, then 429 with a JSON body and Retry-After.
    let r = Relay::start(&format!("max_connections_per_ip = 4\nrequest_head_timeout_secs = 5\n{DIRECT}")).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(r.port).await);
    }
    let mut fifth = connect(r.port).await;
    let (resp, closed) = read_to_close(&mut fifth, Duration::from_secs(2)).await;
    assert_eq!(status(&resp), 429, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(body_json(&resp)["error"]["code"], "rate_limited");
    assert!(header_of(&resp, "retry-after").is_some() && closed);
    assert_eq!(r.metric("bm_relay_refused_total{reason=\"max_connections_per_ip\"}").await, 1.0);
    drop(held);
    r.wait_metric("bm_relay_client_connections", |v| v == 0.0, Duration::from_secs(5)).await;
    let (s, v) = r.push(json!([])).await;
    assert_eq!(s, 200, "slots released on close: {v}");
    drop(r);

    // New connections per second: burst 3 at 0.5/s, the fourth is refused.
    let r = Relay::start(&format!("new_connections_per_ip_per_sec = 0.5\nnew_connections_per_ip_burst = 3\n{DIRECT}"))
        .await;
    for _ in 0..3 {
        let (s, _) = r.push(json!([])).await;
        assert_eq!(s, 200);
    }
    let mut fourth = connect(r.port).await;
    let (resp, _) = read_to_close(&mut fourth, Duration::from_secs(2)).await;
    assert_eq!(status(&resp), 429, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(r.metric("bm_relay_refused_total{reason=\"new_connections_per_ip_per_sec\"}").await, 1.0);
    drop(r);

    // Pending (no first request) capped at 3: a fourth connection evicts the
    // oldest silent one (closed unanswered) and is served itself.
    let r = Relay::start("max_pending_connections = 3\nmax_connections = 10\napi_reserve_connections = 3\n").await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(connect(r.port).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut newest = connect(r.port).await;
    let (resp, closed) = read_to_close(&mut silent[0], Duration::from_secs(2)).await;
    assert!(closed && resp.is_empty(), "the oldest pending connection is closed unanswered");
    newest.write_all(b"GET /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let (resp, _) = read_to_close(&mut newest, Duration::from_secs(2)).await;
    assert_eq!(status(&resp), 404, "the newest is served");
    for s in &mut silent[1..] {
        let (_, closed) = read_to_close(s, Duration::from_millis(200)).await;
        assert!(!closed, "the others are left alone");
    }
    assert_eq!(r.metric("bm_relay_refused_total{reason=\"max_pending_connections\"}").await, 1.0);
    drop(silent);
    r.wait_metric("bm_relay_client_connections", |v| v == 0.0, Duration::from_secs(5)).await;
    // WebSockets fill max_connections - api_reserve_connections = 7; the next
    // upgrade gets 503 while signed pushes still pass.
    let mut sockets = Vec::new();
    for u in 0..7 {
        sockets.push(r.client(10 + u).await);
    }
    let mut s = connect(r.port).await;
    s.write_all(b"GET /v1/ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let (resp, _) = read_to_close(&mut s, Duration::from_secs(2)).await;
    assert_eq!(status(&resp), 503, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(body_json(&resp)["error"]["code"], "overloaded");
    assert!(header_of(&resp, "retry-after").is_some());
    drop(s);
    let (st, v) = r.push(json!([{"to":[10],"e": r.site.user_env(10, json!(1))}])).await;
    assert_eq!((st, v["results"][0]["sockets"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(r.metric("bm_relay_refused_total{reason=\"api_reserve_connections\"}").await, 1.0);
    // Total cap: with 10 open, the next connection is closed unanswered.
    let mut more = Vec::new();
    for _ in 0..3 {
        more.push(connect(r.port).await);
    }
    // Until the relay counts exactly those ten (a loaded machine may take
    // a while to accept them, and to drop the refused upgrade's).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while r.metric("bm_relay_client_connections").await != 10.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut over = connect(r.port).await;
    let (resp, closed) = read_to_close(&mut over, Duration::from_secs(5)).await;
    assert!(closed && resp.is_empty(), "{}", String::from_utf8_lossy(&resp));
    assert_eq!(r.metric("bm_relay_refused_total{reason=\"max_connections\"}").await, 1.0);
    assert_eq!(r.metric("bm_relay_client_connections").await, 10.0);
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    if single_node_only("per-address caps are per process; clients spread over two nodes never reach one node's cap") {
        return;
    }
    // Not trusted: the header is ignored, the peer (127.0.0.1) is counted.
    // (Then the default: loopback is trusted.)
    let r = Relay::start(&format!("max_connections_per_ip = 2\n{DIRECT}")).await;
    let mut a = Client::connect(&r.ws_url()).await;
    let mut b = Client::connect(&r.ws_url()).await;
    let mut s = connect(r.port).await;
    let (resp, _) = read_to_close(&mut s, Duration::from_secs(2)).await;
    assert_eq!(status(&resp), 429);
    let _ = (a.ws.close(None).await, b.ws.close(None).await);
    drop(r);

    // Trusted loopback proxy: each upgrade counts its X-Forwarded-For client.
    let r = Relay::start("max_connections_per_ip = 2\ntrusted_proxies = [\"127.0.0.0/8\"]\n").await;
    let upgrade = |xff: &str| {
        format!("GET /v1/ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nx-forwarded-for: {xff}\r\n\r\n")
    };
    let mut held = Vec::new();
    for xff in ["9.9.9.9, 203.0.113.7", "203.0.113.7", "203.0.113.7", "198.51.100.1"] {
        let mut s = connect(r.port).await;
        s.write_all(upgrade(xff).as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.unwrap().unwrap();
        held.push((status(&buf[..n]), s));
    }
    let statuses: Vec<u16> = held.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses,
        [101, 101, 429, 101],
        "203.0.113.7 counted twice, then refused; 9.9.9.9 was the client's own claim"
    );
    assert_eq!(r.metric("bm_relay_refused_total{reason=\"max_connections_per_ip\"}").await, 1.0);
}

#[tokio::test]
async fn oversized_heads_get_431_and_h2_settings_are_small() {
    let r = Relay::start("").await;
    // 20 KiB of headers (over 16 KiB, under hyper's old ~400 KiB buffer).
    let mut s = connect(r.port).await;
    let mut head = String::from("GET /v1/ws HTTP/1.1\r\nhost: x\r\n");
    for i in 0..20 {
        head.push_str(&format!("x-pad-{i}: {}\r\n", "a".repeat(1000)));
    }
    let _ = s.write_all(head.as_bytes()).await;
    let (resp, closed) = read_to_close(&mut s, Duration::from_secs(3)).await;
    assert_eq!(status(&resp), 431, "{}", String::from_utf8_lossy(&resp));
    assert!(closed);
    // 1 MiB of headers: 431 or a close, well before it is all sent.
    let mut s = connect(r.port).await;
    s.write_all(b"GET /v1/ws HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let line = format!("x-pad: {}\r\n", "b".repeat(1000));
    let mut sent = 0;
    while sent < 1024 * 1024 {
        match tokio::time::timeout(Duration::from_secs(2), s.write_all(line.as_bytes())).await {
            Ok(Ok(())) => sent += line.len(),
            _ => break,
        }
    }
    let (resp, closed) = read_to_close(&mut s, Duration::from_secs(3)).await;
    assert!(closed && (resp.is_empty() || status(&resp) == 431), "{}", String::from_utf8_lossy(&resp));
    // Too many headers.
    let mut s = connect(r.port).await;
    let mut head = String::from("GET /v1/ws HTTP/1.1\r\nhost: x\r\n");
    for i in 0..80 {
        head.push_str(&format!("x-{i}: 1\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let (resp, _) = read_to_close(&mut s, Duration::from_secs(3)).await;
    assert_eq!(status(&resp), 431);
    assert!(r.metric("bm_relay_refused_total{reason=\"max_request_head_bytes\"}").await >= 2.0);

    // h2c: the server's SETTINGS advertise 16 streams and a 16 KiB header list.
    let mut s = connect(r.port).await;
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut frame)).await.unwrap().unwrap();
    assert_eq!(frame[3], 4, "first frame is SETTINGS");
    let len = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|c| (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes([c[2], c[3], c[4], c[5]])))
        .collect();
    assert!(settings.contains(&(3, 16)), "MAX_CONCURRENT_STREAMS 16: {settings:?}");
    assert!(settings.contains(&(6, 16384)), "MAX_HEADER_LIST_SIZE 16 KiB: {settings:?}");
    assert!(settings.contains(&(4, 65536)), "INITIAL_WINDOW_SIZE 64 KiB: {settings:?}");
    // The relay still works.
    let (st, _) = r.push(json!([])).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn admin_listener_has_a_timer_a_cap_and_no_pid() {
    let r = Relay::start("request_head_timeout_secs = 1.0\nadmin_max_connections = 3\n").await;
    let (st, body) = http_get(r.admin, "/healthz").await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st, 200);
    assert!(v.get("pid").is_none(), "{v}");
    let mut silent = connect(r.admin).await;
    let started = Instant::now();
    let (_, closed) = read_to_close(&mut silent, Duration::from_secs(4)).await;
    assert!(closed && started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(r.admin).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = connect(r.admin).await;
    let (resp, closed) = read_to_close(&mut over, Duration::from_millis(500)).await;
    assert!(closed && resp.is_empty(), "over the admin cap: closed at once");
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.metric("bm_relay_refused_total{reason=\"admin_max_connections\"}").await, 1.0);
}

#[tokio::test]
async fn a_reload_applies_new_connection_limits_to_new_connections() {
    let r = Relay::start(&format!("max_connections_per_ip = 10\n{DIRECT}")).await;
    let first = connect(r.port).await;
    let lowered = format!("{FAST}max_connections_per_ip = 1\n{DIRECT}");
    std::fs::write(&r.config_path, config_text(r.port, r.admin, &[&r.site], &lowered)).unwrap();
    r.signal(libc::SIGHUP);
    // The reload is logged; then a second connection from the same address
    // is over the new cap, while the first stays open.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !r.log().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload: {}", r.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut second = connect(r.port).await;
    let (resp, _) = read_to_close(&mut second, Duration::from_secs(2)).await;
    assert_eq!(status(&resp), 429, "{}", String::from_utf8_lossy(&resp));
    let mut first = first;
    first.write_all(b"GET /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let (resp, _) = read_to_close(&mut first, Duration::from_secs(2)).await;
    assert_eq!(status(&resp), 404, "the open connection is not cut by the reload");
}

/// Signs like WordPress does, for a request written by hand.
fn signed_headers(site: &Site, path: &str, body: &str) -> Headers {
    let ts = now();
    let sig = bm_proto::signing::sign(&site.secret.relay_key(), ts, &site.id, "POST", path, body.as_bytes());
    vec![("X-BM-Site", site.id.to_string()), ("X-BM-Timestamp", ts.to_string()), ("X-BM-Signature", sig)]
}

#[tokio::test]
async fn at_the_pending_cap_the_oldest_idle_anonymous_connection_makes_room() {
    let r = Relay::start(&format!("max_pending_connections = 3\nrequest_head_timeout_secs = 8\n{DIRECT}")).await;
    // A: one junk request answered, kept alive, idle (anonymous still).
    let mut a = connect(r.port).await;
    a.write_all(b"GET /nope HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(2), a.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(status(&buf[..n]), 404);
    // B: a signed request: trusted, no longer counted.
    let body = "{\"events\":[]}";
    let mut b = connect(r.port).await;
    b.write_all(post_head("/v1/push", body.len(), &signed_headers(&r.site, "/v1/push", body)).as_bytes())
        .await
        .unwrap();
    b.write_all(body.as_bytes()).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(2), b.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(status(&buf[..n]), 200);
    // C, D: silent. E: over the cap (A, C, D pending): A, the oldest idle, goes.
    let mut c = connect(r.port).await;
    let mut d = connect(r.port).await;
    r.wait_metric("bm_relay_pending_connections", |v| v == 3.0, Duration::from_secs(5)).await;
    let mut e = connect(r.port).await;
    let (_, closed) = read_to_close(&mut a, Duration::from_secs(3)).await;
    assert!(closed, "the oldest idle anonymous connection is evicted");
    for (name, s) in [("signed", &mut b), ("silent c", &mut c), ("silent d", &mut d)] {
        let (_, closed) = read_to_close(s, Duration::from_millis(300)).await;
        assert!(!closed, "{name} is left alone");
    }
    e.write_all(b"GET /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let (resp, _) = read_to_close(&mut e, Duration::from_secs(2)).await;
    assert_eq!(status(&resp), 404);
    assert_eq!(r.metric("bm_relay_refused_total{reason=\"max_pending_connections\"}").await, 1.0);
}
