//! The streaming fallback (`/v1/stream`, protocol §6.1) over real sockets:
//! a raw HTTP/1.1 client reads the SSE events as a browser's fetch would,
//! beside WebSocket clients of the same relay.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::*;

/// What a stream's reader saw next.
#[derive(Debug)]
enum Got {
    Event(Value),
    Heartbeat,
    Ended,
}

/// One stream, read line by line as SSE.
struct Sse {
    rd: BufReader<TcpStream>,
    port: u16,
    head: String,
    id: String,
    ready: Value,
}

/// A refused open: status, headers (lower case), JSON body.
#[derive(Debug)]
struct Refusal {
    status: u16,
    head: String,
    body: Value,
}

/// `POST /v1/stream` with `body`, by hand (the head and the events are
/// what is tested, so no HTTP library in between).
async fn open_raw(port: u16, body: &str, origin: Option<&str>) -> Result<Sse, Refusal> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    let req = format!(
        "POST /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain;charset=UTF-8\r\n{origin}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut rd = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), rd.read_line(&mut line)).await.unwrap().unwrap();
        assert!(n > 0, "connection ended inside the head: {head}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if status != 200 {
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        let mut b = vec![0; len];
        rd.read_exact(&mut b).await.unwrap();
        return Err(Refusal { status, head, body: serde_json::from_slice(&b).unwrap_or(Value::Null) });
    }
    let mut sse = Sse { rd, port, head, id: String::new(), ready: Value::Null };
    match sse.next(Duration::from_secs(5)).await {
        Some(Got::Event(v)) if v["op"] == "ready" => {
            sse.id = v["stream"].as_str().expect("ready names the stream").to_owned();
            sse.ready = v;
        }
        other => panic!("expected ready, got {other:?}"),
    }
    Ok(sse)
}

async fn open(r: &Relay, user: u64) -> Sse {
    open_raw(r.port, &json!({"op":"auth","token": r.site.token(user)}).to_string(), None).await.expect("stream opens")
}

impl Sse {
    /// The next event or heartbeat, within `within` (`None`: silence).
    async fn next(&mut self, within: Duration) -> Option<Got> {
        let deadline = tokio::time::Instant::now() + within;
        let mut data: Option<String> = None;
        loop {
            let mut line = String::new();
            let n = match tokio::time::timeout_at(deadline, self.rd.read_line(&mut line)).await {
                Err(_) => return None,
                Ok(r) => r.unwrap_or(0),
            };
            if n == 0 {
                return Some(Got::Ended);
            }
            let line = line.strip_suffix('\n').expect("whole lines");
            if line.is_empty() {
                return Some(match data.take() {
                    Some(d) => Got::Event(serde_json::from_str(&d).expect("events are JSON")),
                    None => Got::Heartbeat,
                });
            }
            if line.starts_with(':') {
                continue;
            }
            let d = line.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data line: {line:?}"));
            assert!(data.is_none(), "one data line per event");
            data = Some(d.to_owned());
        }
    }

    /// The next event, skipping heartbeats (panics otherwise).
    async fn recv(&mut self) -> Value {
        loop {
            match self.next(Duration::from_secs(5)).await {
                Some(Got::Event(v)) => return v,
                Some(Got::Heartbeat) => continue,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// Skips events until the `close` event, then expects the end.
    async fn closed(&mut self, within: Duration) -> (u64, String) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Got::Event(v)) if v["op"] == "close" => {
                    assert!(matches!(self.next(Duration::from_secs(5)).await, Some(Got::Ended)), "body ends");
                    return (v["code"].as_u64().unwrap(), v["reason"].as_str().unwrap().to_owned());
                }
                Some(Got::Event(_) | Got::Heartbeat) => continue,
                other => panic!("expected the close event, got {other:?}"),
            }
        }
    }

    /// `POST /v1/stream/<id>` with one client frame.
    async fn op(&self, frame: Value) -> (u16, Value) {
        raw_post(self.port, &format!("/v1/stream/{}", self.id), &[], &frame.to_string()).await
    }
}

#[tokio::test]
async fn a_stream_gets_what_a_socket_gets_and_its_ops_work() {
    let r = Relay::start("").await;
    let mut s = open(&r, 2).await;
    for h in
        ["content-type: text/event-stream", "cache-control: no-store", "x-accel-buffering: no", "connection: close"]
    {
        assert!(s.head.contains(h), "{h} missing from\n{}", s.head);
    }
    assert!(!s.head.contains("content-length") && !s.head.contains("transfer-encoding"), "{}", s.head);
    assert_eq!(s.ready["user"], 2);
    assert_eq!(s.id.len(), 22, "128 bits in base64url");
    r.wait_metric("bm_relay_streams", |v| v == 1.0, Duration::from_secs(5)).await;
    assert_eq!(r.node_metric("bm_relay_connections").await, 0.0, "streams are not counted as WebSockets");

    // A push reaches the stream as the same JSON a socket of the user gets.
    let mut ws = r.client(2).await;
    let (st, body) = r.push(json!([{"to":[2],"e": r.site.user_env(2, json!({"n":1}))}])).await;
    assert_eq!((st, &body["results"][0]["sockets"]), (200, &json!(2)), "{body}");
    let got = s.recv().await;
    assert_eq!(got, ws.recv().await);
    assert_eq!(r.site.open(&got["e"]), json!({"n":1}));

    // Ops: sub with a thread token (204, its ok on the stream), ping.
    let (st, _) = s.op(json!({"op":"sub","thread":7,"token": r.site.thread_token(2, 7),"ref":5})).await;
    assert_eq!(st, 204);
    assert_eq!(s.recv().await, json!({"op":"ok","ref":5}));
    assert_eq!(s.op(json!({"op":"ping","ref":6})).await.0, 204);
    assert_eq!(s.recv().await, json!({"op":"pong","ref":6}));
    // A thread token of another user: the socket's error, with its ref.
    assert_eq!(s.op(json!({"op":"sub","thread":8,"token": r.site.thread_token(3, 8),"ref":9})).await.0, 204);
    let e = s.recv().await;
    assert_eq!((&e["op"], &e["code"], &e["ref"]), (&json!("error"), &json!("forbidden"), &json!(9)), "{e}");

    // pub from the stream reaches a WebSocket subscriber, and back.
    let mut w = r.subscriber(3, 7).await;
    let env = r.site.thread_env(7, json!("from the stream"));
    assert_eq!(s.op(json!({"op":"pub","thread":7,"e": env,"ref":10})).await.0, 204);
    assert_eq!(s.recv().await, json!({"op":"ok","ref":10}));
    let f = w.recv().await;
    assert_eq!((&f["from"], r.site.open(&f["e"])), (&json!(2), json!("from the stream")));
    w.send(json!({"op":"pub","thread":7,"e": r.site.thread_env(7, json!("to the stream"))})).await;
    let f = s.recv().await;
    assert_eq!((&f["op"], &f["from"], r.site.open(&f["e"])), (&json!("ev"), &json!(3), json!("to the stream")));

    // presence: both users of thread 7, the stream's included.
    assert_eq!(s.op(json!({"op":"presence","threads":[7],"ref":11})).await.0, 204);
    let p = s.recv().await;
    assert_eq!(p["threads"][0]["users"], json!([2, 3]), "{p}");
    // A thread push reaches the stream once.
    r.push(json!([{"to":[], "thread":7, "e": r.site.thread_env(7, json!("t"))}])).await;
    assert_eq!(r.site.open(&s.recv().await["e"]), json!("t"));
    assert!(s.next(Duration::from_millis(300)).await.is_none(), "nothing more");
    // `auth` again is the socket's error.
    assert_eq!(s.op(json!({"op":"auth","token": r.site.token(2),"ref":12})).await.0, 204);
    assert_eq!(s.recv().await["code"], "already_authenticated");
}

#[tokio::test]
async fn heartbeat_comment_at_the_ping_interval() {
    let r = Relay::start("ping_interval_secs = 0.3\nidle_timeout_secs = 5.0\n").await;
    let mut s = open(&r, 2).await;
    for _ in 0..2 {
        match s.next(Duration::from_secs(2)).await {
            Some(Got::Heartbeat) => {}
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn refusals_are_json_with_the_socket_codes() {
    let other = Site::new("other.local");
    let r = Relay::start("").await;
    let auth = |t: String| json!({"op":"auth","token": t}).to_string();
    let e = open_raw(r.port, &auth("not.a.token".into()), None).await.err().expect("refused");
    assert_eq!((e.status, &e.body["error"]["code"]), (401, &json!("bad_token")), "{e:?}");
    assert!(e.head.contains("content-type: application/json"), "{}", e.head);
    let e = open_raw(r.port, &auth(other.token(2)), None).await.err().expect("refused");
    assert_eq!((e.status, &e.body["error"]["code"]), (401, &json!("bad_token")));
    let expired =
        bm_proto::token::Claims::connection(r.site.id.clone(), u(2), now() - 100, 50).mint(&r.site.secret.relay_key());
    let e = open_raw(r.port, &auth(expired), None).await.err().expect("refused");
    assert_eq!((e.status, &e.body["error"]["code"]), (401, &json!("token_expired")));
    let e = open_raw(r.port, r#"{"op":"ping"}"#, None).await.err().expect("refused");
    assert_eq!((e.status, &e.body["error"]["code"]), (400, &json!("bad_frame")));
    let e = open_raw(r.port, &auth(r.site.thread_token(2, 7)), None).await.err().expect("a thread token is refused");
    assert_eq!(e.status, 401);

    // Unknown, malformed or ended ids: 404 unknown_stream.
    for id in ["AAAAAAAAAAAAAAAAAAAAAA", "nope", "..%2F..%2Fx"] {
        let (st, body) = raw_post(r.port, &format!("/v1/stream/{id}"), &[], r#"{"op":"ping"}"#).await;
        assert_eq!((st, &body["error"]["code"]), (404, &json!("unknown_stream")), "{id}");
    }
    // GET is not the way.
    assert_eq!(http_get(r.port, "/v1/stream").await.unwrap().0, 405);
}

#[tokio::test]
async fn allowed_origins_apply_to_streams_and_sockets() {
    let r = Relay::start("allowed_origins = [\"https://good.example\"]\n").await;
    let auth = json!({"op":"auth","token": r.site.token(2)}).to_string();
    let e = open_raw(r.port, &auth, Some("https://evil.example")).await.err().expect("refused");
    assert_eq!((e.status, &e.body["error"]["code"]), (403, &json!("forbidden_origin")), "{e:?}");
    let s = open_raw(r.port, &auth, Some("https://good.example")).await.expect("allowed");
    assert!(s.head.contains("access-control-allow-origin: https://good.example\r\n"), "{}", s.head);
    // Ops answer with the same CORS header, and refuse another origin.
    let path = format!("/v1/stream/{}", s.id);
    let (st, head) = Http::connect(r.port)
        .await
        .request("POST", &path, &[("Origin", "https://good.example".into())], r#"{"op":"ping"}"#)
        .await;
    assert_eq!(st, 204, "{head}");
    let (st, _) = raw_post(r.port, &path, &[("Origin", "https://evil.example".into())], r#"{"op":"ping"}"#).await;
    assert_eq!(st, 403);
    // The WebSocket upgrade: the same list.
    let req = tokio_tungstenite::tungstenite::http::Request::builder()
        .uri(r.ws_url())
        .header("Host", "127.0.0.1")
        .header("Origin", "https://evil.example")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn revocation_ends_the_stream_with_4003() {
    let r = Relay::start("").await;
    let mut s = open(&r, 2).await;
    let (st, body) = r.post("/v1/disconnect", &json!({"users":[2]}).to_string()).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(s.closed(Duration::from_secs(5)).await.0, 4003);
    // Its id is dead.
    assert_eq!(s.op(json!({"op":"ping"})).await.0, 404);
    r.wait_metric("bm_relay_streams", |v| v == 0.0, Duration::from_secs(5)).await;
    // The revoked token cannot open another.
    let e = open_raw(r.port, &json!({"op":"auth","token": r.site.token_ttl(2, 3600)}).to_string(), None).await;
    let e = e.err().expect("refused");
    assert!(e.status == 403 || e.status == 401, "{e:?}");
}

#[tokio::test]
async fn the_per_user_cap_counts_streams_and_sockets_together() {
    let r = Relay::start("max_sockets_per_user = 2\n").await;
    if single_node_only("the cap is per node") {
        return;
    }
    let _ws = r.client(2).await;
    let _s = open(&r, 2).await;
    // From a page (with Origin): the browser must be allowed to read
    // Retry-After, or the client falls back to its own backoff.
    let e = open_raw(r.port, &json!({"op":"auth","token": r.site.token(2)}).to_string(), Some("https://site.example"))
        .await;
    let e = e.err().expect("a third is refused");
    assert_eq!((e.status, &e.body["error"]["code"]), (429, &json!("rate_limited")), "{e:?}");
    assert!(e.head.contains("retry-after: "), "{}", e.head);
    assert!(e.head.contains("access-control-expose-headers: retry-after"), "{}", e.head);
    let mut c = Client::connect(&r.ws_url()).await;
    c.send(json!({"op":"auth","token": r.site.token(2)})).await;
    assert_eq!(c.closed(Duration::from_secs(5)).await.0, 4029);
}

#[tokio::test]
async fn a_stream_that_is_not_read_is_closed_at_the_socket_queue_bound() {
    let r = Relay::start("outbound_queue_bytes = 262144\nmax_body = 240000\nmax_events = 10\n").await;
    let s = open(&r, 2).await; // never read
    let big = "z".repeat(40_000);
    let mut http = Http::connect(r.port).await;
    let mut overflowed = false;
    for _ in 0..400 {
        let events: Vec<_> = (0..4).map(|_| json!({"to":[2],"e": r.site.user_env(2, json!(big))})).collect();
        let (st, body) = http.signed_post(&r.site, "/v1/push", &json!({ "events": events }).to_string()).await;
        assert_eq!(st, 200, "{body}");
        if r.metric("bm_relay_slow_consumer_closes_total").await >= 1.0 {
            overflowed = true;
            break;
        }
    }
    assert!(overflowed, "the stream that is not read never overflowed");
    assert_eq!(r.metric("bm_relay_closes_total{code=\"4008\"}").await, 1.0);
    assert_eq!(s.op(json!({"op":"ping"})).await.0, 404, "the stream is gone");
    r.wait_metric("bm_relay_streams", |v| v == 0.0, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn oversized_ops_and_floods_close_like_a_socket() {
    let r = Relay::start("frame_rate_per_sec = 1.0\nframe_burst = 3.0\n").await;
    let mut s = open(&r, 2).await;
    let (st, body) = s.op(json!({"op":"ping","pad": "p".repeat(40_000)})).await;
    assert_eq!((st, &body["error"]["code"]), (413, &json!("too_large")));
    assert_eq!(s.closed(Duration::from_secs(5)).await.0, 4013);
    let mut s = open(&r, 2).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(s.op(json!({"op":"ping","ref":i})).await.0);
    }
    assert_eq!(statuses[..3], [204, 204, 204]);
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(s.closed(Duration::from_secs(5)).await.0, 4029);
}

#[tokio::test]
async fn shutdown_ends_streams_with_1001_and_a_retry_hint() {
    let mut r = Relay::start("").await;
    if single_node_only("one process is signalled") {
        return;
    }
    let mut s = open(&r, 2).await;
    r.signal(libc::SIGTERM);
    let (code, reason) = s.closed(Duration::from_secs(5)).await;
    assert_eq!(code, 1001);
    assert!(reason.contains("; retry_ms="), "{reason}");
    assert_eq!(r.wait_exit(Duration::from_secs(5)).await, Some(0), "{}", r.log());
}

#[tokio::test]
async fn a_client_that_goes_away_ends_its_stream() {
    let r = Relay::start("ping_interval_secs = 0.2\nidle_timeout_secs = 5.0\n").await;
    let s = open(&r, 2).await;
    let id = s.id.clone();
    r.wait_metric("bm_relay_streams", |v| v == 1.0, Duration::from_secs(5)).await;
    drop(s);
    // Seen at the next heartbeats (the relay reads nothing on a stream):
    // out of routing, its id dead, the count back to zero.
    r.wait_metric("bm_relay_streams", |v| v == 0.0, Duration::from_secs(5)).await;
    r.wait_metric("bm_relay_authenticated_connections", |v| v == 0.0, Duration::from_secs(5)).await;
    let (st, _) = raw_post(r.port, &format!("/v1/stream/{id}"), &[], r#"{"op":"ping"}"#).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn the_token_s_expiry_ends_the_stream_with_4009_unless_refreshed() {
    let r = Relay::start("").await;
    let body = |t: String| json!({"op":"auth","token": t}).to_string();
    let mut short = open_raw(r.port, &body(r.site.token_ttl(2, 2)), None).await.expect("opens");
    let mut refreshed = open_raw(r.port, &body(r.site.token_ttl(3, 2)), None).await.expect("opens");
    assert_eq!(refreshed.op(json!({"op":"refresh","token": r.site.token(3),"ref":1})).await.0, 204);
    assert_eq!(refreshed.recv().await, json!({"op":"ok","ref":1}));
    assert_eq!(short.closed(Duration::from_secs(5)).await.0, 4009);
    assert!(
        matches!(refreshed.next(Duration::from_secs(1)).await, None | Some(Got::Heartbeat)),
        "the refreshed stream stays open"
    );
}
