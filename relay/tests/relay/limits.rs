//! Limits: `pub` rate, frame flood (4029), frame size (4013), slow consumer
//! (4008 while others keep receiving), pings and idle timeout, and garbage
//! that must never crash the relay.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[tokio::test]
async fn pub_rate_limit_then_frame_flood_closes_4029() {
    let r = Relay::start("frame_rate_per_sec = 10\nframe_burst = 60\n").await;
    let mut sender = r.subscriber(2, 7).await;
    let mut peer = r.subscriber(3, 7).await;
    let env = r.site.thread_env(7, json!("typing"));
    let started = std::time::Instant::now();
    for i in 0..25 {
        sender.send(json!({"op":"pub","thread":7,"e":env,"ref":i})).await;
    }
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..25 {
        let f = sender.recv().await;
        match f["op"].as_str() {
            Some("ok") => ok += 1,
            Some("error") if f["code"] == "rate_limited" => limited += 1,
            _ => panic!("unexpected {f}"),
        }
    }
    // Burst 20 at 10/s: 20 pass, plus what refilled while the frames were
    // handled (at most 10 per second elapsed).
    let refill = (started.elapsed().as_secs_f64() * 10.0).ceil() as usize;
    assert!(ok >= 20 && ok <= 20 + refill, "ok={ok} limited={limited} refill={refill}");
    assert_eq!(ok + limited, 25);
    for _ in 0..ok {
        assert_eq!(peer.recv().await["from"], 2);
    }
    peer.silent_for(Duration::from_millis(200)).await;
    // A flood of any frames (burst 60, of which 26 are spent) closes 4029.
    for i in 0..60 {
        if sender.ws.send(Message::Text(json!({"op":"ping","ref":i}).to_string().into())).await.is_err() {
            break;
        }
    }
    assert_eq!(sender.closed(Duration::from_secs(3)).await.0, 4029);
    // The peer is unaffected.
    peer.send(json!({"op":"ping","ref":1})).await;
    assert_eq!(peer.recv().await, json!({"op":"pong","ref":1}));
}

#[tokio::test]
async fn frame_too_large_closes_4013() {
    let r = Relay::start("max_frame_bytes = 4096\n").await;
    let mut c = r.client(2).await;
    c.send_text(&format!("{{\"op\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(5000))).await;
    assert_eq!(c.closed(Duration::from_secs(3)).await.0, 4013);
    // Before auth too.
    let mut c = Client::connect(&r.ws_url()).await;
    c.send_text(&"y".repeat(10_000)).await;
    assert_eq!(c.closed(Duration::from_secs(3)).await.0, 4013);
    assert_eq!(r.metric("bm_relay_closes_total{code=\"4013\"}").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_4008_while_others_keep_receiving() {
    // The queue must hold one whole push (validated at load): bodies of at
    // most 240 000 bytes and 10 events fit 256 KiB.
    let r = Relay::start("outbound_queue_bytes = 262144\nmax_body = 240000\nmax_events = 10\n").await;
    let mut slow = r.client(2).await; // never reads until the end
    let mut fast = r.client(3).await;
    let (seen_tx, mut seen_rx) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            match fast.next_within(Duration::from_secs(10)).await {
                Some(Seen::Frame(f)) if f["op"] == "ev" => {
                    n += 1;
                    seen_tx.send_replace(n);
                }
                other => panic!("fast reader: {other:?} after {n} events"),
            }
        }
    });
    // Each request (4 × ~54 KB frames) fits the 256 KiB queue of a socket
    // that keeps up; the one that never reads fills its TCP buffers, then
    // its queue, and is closed.
    let big = "z".repeat(40_000);
    let mut pushed = 0u64;
    let mut overflowed = false;
    let mut http = Http::connect(r.port).await;
    for round in 0..400 {
        let events: Vec<_> = (0..4).map(|_| json!({"to":[2,3],"e": r.site.thread_env(1, json!(big))})).collect();
        let (s, body) = http.signed_post(&r.site, "/v1/push", &json!({ "events": events }).to_string()).await;
        assert_eq!(s, 200, "{body}");
        pushed += 4;
        tokio::time::timeout(Duration::from_secs(10), seen_rx.wait_for(|n| *n >= pushed))
            .await
            .expect("the fast socket keeps receiving")
            .unwrap();
        if round >= 4 && r.metric("bm_relay_slow_consumer_closes_total").await >= 1.0 {
            overflowed = true;
            break;
        }
    }
    assert!(overflowed, "the non-reading socket never overflowed after {pushed} events");
    // The slow socket gets its close frame after what was already in flight.
    let (code, reason) = slow.closed(Duration::from_secs(10)).await;
    assert_eq!(code, 4008, "{reason}");
    // The fast one is still connected and got every event.
    let (s, body) = r.push(json!([{"to":[3],"e": r.site.user_env(3, json!("after"))}])).await;
    assert_eq!((s, body["results"][0]["sockets"].as_u64()), (200, Some(1)));
    tokio::time::timeout(Duration::from_secs(10), seen_rx.wait_for(|n| *n > pushed)).await.unwrap().unwrap();
    assert_eq!(r.metric("bm_relay_slow_consumer_closes_total").await, 1.0);
    reader.abort();
}

#[tokio::test]
async fn garbage_never_crashes_the_relay() {
    let r = Relay::start("").await;
    let mut c = r.client(2).await;
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let garbage = [
        "",
        "null",
        "[]",
        "{",
        "{}",
        "{\"op\":1}",
        "{\"op\":\"sub\"}",
        "{\"op\":\"sub\",\"thread\":1e400,\"token\":\"x\"}",
        "{\"op\":\"pub\",\"thread\":-1,\"e\":{}}",
        "{\"op\":\"unsub\",\"thread\":99999999999999999999}",
        "{\"op\":\"pub\",\"thread\":1,\"e\":\"x\"}",
        "{\"op\":\"refresh\",\"token\":\"\"}",
        "{\"op\":\"\\u0000\"}",
        "\u{feff}{\"op\":\"ping\"}",
        &deep,
    ];
    for g in garbage {
        c.send_text(g).await;
        let f = c.recv().await;
        assert_eq!(f["op"], "error", "{g:.40}: {f}");
    }
    c.ws.send(Message::Binary(vec![0xff, 0x00, 0x13].into())).await.unwrap();
    assert_eq!(c.recv().await["code"], "bad_frame");
    c.send(json!({"op":"ping","ref":1})).await;
    assert_eq!(c.recv().await, json!({"op":"pong","ref":1}));

    // Raw garbage on the TCP port, a broken WebSocket handshake, and huge
    // declared bodies: each gets its answer (not a hang, not a crash).
    // Unsigned, the site is checked first (401); with plausible signed
    // headers the length is refused (413) before a body byte is read.
    let signed_head = format!(
        "POST /v1/push HTTP/1.1\r\nHost: x\r\nX-BM-Site: {SITE}\r\nX-BM-Timestamp: {}\r\nX-BM-Signature: v1={}\r\nContent-Length: 99999999999\r\n\r\nabc",
        now(),
        "ab".repeat(32)
    );
    for (bytes, want) in [
        (&b"\x00\x01\x02 garbage\r\n\r\n"[..], "400"),
        (b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", "400"),
        (b"POST /v1/push HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nabc", "401"),
        (signed_head.as_bytes(), "413"),
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("answered").unwrap_or(0);
        let resp = String::from_utf8_lossy(&buf[..n]);
        assert_eq!(resp.split(' ').nth(1), Some(want), "{:?}: {resp}", String::from_utf8_lossy(&bytes[..20]));
        if want == "413" {
            assert!(resp.contains("\"too_large\""), "{resp}");
        }
    }
    // Unknown paths and methods.
    let mut h = Http::connect(r.port).await;
    assert_eq!(h.request("GET", "/v1/push", &[], "").await.0, 405);
    assert_eq!(h.request("GET", "/nope", &[], "").await.0, 404);
    assert_eq!(h.request("GET", "/v1/ws", &[], "").await.0, 400);
    assert_eq!(r.post("/v1/push", "\u{0}\u{1}").await.0, 400);
    assert_eq!(r.post("/v1/presence", "{\"users\":[\"x\"]}").await.0, 400);
    assert_eq!(http_get(r.admin, "/healthz").await.unwrap().0, 200);
    c.send(json!({"op":"ping","ref":2})).await;
    assert_eq!(c.recv().await, json!({"op":"pong","ref":2}));
}

/// A client that completes the handshake and auth by hand, then never
/// writes again (so never answers pings).
async fn silent_client(r: &Relay) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    s.write_all(b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let payload = json!({"op":"auth","token": r.site.token(2)}).to_string().into_bytes();
    let mut frame = vec![0x81u8];
    assert!(payload.len() < 65536);
    if payload.len() < 126 {
        frame.push(0x80 | payload.len() as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    let mask = [1u8, 2, 3, 4];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.unwrap();
    s
}

#[tokio::test]
async fn pings_keep_live_sockets_and_silent_ones_are_closed() {
    let r = Relay::start("ping_interval_secs = 0.3\nidle_timeout_secs = 1.2\n").await;
    // tokio-tungstenite answers pings while it reads: it stays up.
    let mut live = r.client(2).await;
    live.silent_for(Duration::from_millis(2000)).await;
    live.send(json!({"op":"ping","ref":1})).await;
    assert_eq!(live.recv().await, json!({"op":"pong","ref":1}));
    // The silent one sees pings (opcode 0x9), then a close with 1001.
    let mut s = silent_client(&r).await;
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    assert!(bytes.windows(2).any(|w| w == [0x89, 0x00]), "no ping seen");
    let close_at = bytes.windows(2).position(|w| w[0] == 0x88).expect("a close frame");
    let code = u16::from_be_bytes([bytes[close_at + 2], bytes[close_at + 3]]);
    assert_eq!(code, 1001);
    assert!(r.metric("bm_relay_closes_total{code=\"1001\"}").await >= 1.0);
}
