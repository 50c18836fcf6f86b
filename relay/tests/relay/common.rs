//! Test harness: spawns the real `bm-relay serve` on free 127.0.0.1 ports,
//! in its own process group (killed and reaped on drop), and talks to it
//! over real sockets: a hyper HTTP/1.1 client for the server API and
//! tokio-tungstenite for WebSockets. Secrets are generated per relay.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bm_proto::token::Claims;
use bm_proto::{signing, Envelope, Epoch, EventId, Payload, SiteId, SiteSecret, ThreadId, UserId};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The site every test relay serves.
pub const SITE: &str = "test.local";

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// If the test process dies without running Drop (killed by a timeout,
/// say), the kernel kills this child too.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// A port that is free now, from 20000–32767: below the kernel's ephemeral
/// range, so no `bind(0)` elsewhere (other suites on this machine) can take
/// it between this probe and the relay's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed =
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 ^ (std::process::id() as u64) << 32;
    loop {
        // xorshift over a shared state: distinct ports within this process.
        let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20000 + (x % 12768) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn u(n: u64) -> UserId {
    UserId::new(n).unwrap()
}

pub fn t(n: u64) -> ThreadId {
    ThreadId::new(n).unwrap()
}

/// A site: its id and secret.
#[derive(Clone)]
pub struct Site {
    pub id: SiteId,
    pub secret: SiteSecret,
}

impl Site {
    pub fn new(id: &str) -> Site {
        Site { id: SiteId::new(id).unwrap(), secret: SiteSecret::generate() }
    }

    pub fn relay_key_b64(&self) -> String {
        self.secret.relay_key().to_b64()
    }

    pub fn token(&self, user: u64) -> String {
        Claims::connection(self.id.clone(), u(user), now(), 3600).mint(&self.secret.relay_key())
    }

    pub fn token_ttl(&self, user: u64, ttl: u64) -> String {
        Claims::connection(self.id.clone(), u(user), now(), ttl).mint(&self.secret.relay_key())
    }

    pub fn thread_token(&self, user: u64, thread: u64) -> String {
        Claims::thread(self.id.clone(), u(user), t(thread), now(), 3600).mint(&self.secret.relay_key())
    }

    /// An envelope sealed with the thread key (epoch 0).
    pub fn thread_env(&self, thread: u64, data: Value) -> Envelope {
        let key = self.secret.content_key().thread_key(t(thread), Epoch(0));
        Envelope::seal_payload(&self.id, &key, EventId::random(), &Payload { kind: "test".into(), data })
    }

    /// An envelope sealed with a user key.
    pub fn user_env(&self, user: u64, data: Value) -> Envelope {
        let key = self.secret.content_key().user_key(u(user));
        Envelope::seal_payload(&self.id, &key, EventId::random(), &Payload { kind: "test".into(), data })
    }

    /// Opens an envelope (as a browser would) and returns its data.
    pub fn open(&self, env: &Value) -> Value {
        let env = Envelope::parse(&env.to_string(), usize::MAX / 2).unwrap();
        let key = self.secret.content_key().key_for(env.k);
        env.open_payload(&self.id, &key, usize::MAX / 2).unwrap().data
    }
}

/// A running relay process; killed (whole process group) and reaped on drop.
pub struct Relay {
    pub child: Child,
    pub port: u16,
    pub admin: u16,
    pub site: Site,
    pub config_path: std::path::PathBuf,
    pub stderr: Arc<Mutex<String>>,
    _dir: TempDir,
    /// `BM_TEST_CLUSTER=1`: the second node (see [`on_cluster`]).
    pub peer: Option<Box<Relay>>,
    /// `BM_TEST_CLUSTER=1`: the nats-server joining the two nodes.
    nats: Option<Nats>,
    /// Alternates sockets over the two nodes.
    ws_turn: std::sync::atomic::AtomicUsize,
    /// Alternates server API calls over the two nodes.
    post_turn: std::sync::atomic::AtomicUsize,
}

/// `BM_TEST_CLUSTER=1` (`make test-relay-on-cluster`): the suite runs
/// against a two-node cluster. [`Relay::start`] and its variants start a
/// nats-server and two nodes joined through it (and wait until each
/// knows the other); [`Relay::ws_url`] (so every client) alternates
/// between the nodes, [`Relay::post`] (so every push, presence,
/// disconnect) too, and [`Relay::metric`] sums both nodes. `port`,
/// `admin` and the process helpers are the first node's. A test that is
/// single-node by nature returns early through [`single_node_only`].
pub fn on_cluster() -> bool {
    std::env::var("BM_TEST_CLUSTER").is_ok_and(|v| v == "1")
}

/// True (and says why on stderr) when the suite runs on a cluster and
/// the calling test, single-node by nature, must not run there.
pub fn single_node_only(why: &str) -> bool {
    if on_cluster() {
        eprintln!("not run on the cluster (BM_TEST_CLUSTER=1): {why}");
    }
    on_cluster()
}

/// A temporary directory removed on drop (holds the test's config file).
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("bm-relay-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary under test: this build's, or `BM_RELAY_BIN` (how a test is
/// shown to fail on an older build: `BM_RELAY_BIN=/path/to/old cargo test`).
pub fn relay_bin() -> String {
    std::env::var("BM_RELAY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_bm-relay").to_string())
}

/// Short timers so the suite runs quickly; a test adds its own keys.
pub const FAST: &str = "auth_timeout_secs = 1.0\nshutdown_deadline_secs = 3.0\n";

pub fn config_text(port: u16, admin: u16, sites: &[&Site], limits: &str) -> String {
    let mut s = format!("listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n[sites]\n");
    for site in sites {
        s.push_str(&format!("\"{}\" = \"{}\"\n", site.id, site.relay_key_b64()));
    }
    s.push_str("[limits]\n");
    s.push_str(limits);
    s
}

impl Relay {
    /// Starts a relay for one fresh site with `limits` lines added to [limits].
    pub async fn start(limits: &str) -> Relay {
        let site = Site::new(SITE);
        Relay::start_with(site.clone(), &[&site], limits).await
    }

    pub async fn start_with(main: Site, sites: &[&Site], limits: &str) -> Relay {
        Relay::start_env(main, sites, limits, &[]).await
    }

    /// [`Relay::start_with`] with extra environment variables (e.g. `RUST_LOG`).
    pub async fn start_env(main: Site, sites: &[&Site], limits: &str, env: &[(&str, &str)]) -> Relay {
        // The cluster tests configure their own nodes.
        if !on_cluster() || limits.contains("[cluster]") {
            return Relay::start_one(main, sites, limits, env).await;
        }
        let nats = Nats::start();
        let node = |name: &str| {
            format!("{limits}\n[cluster]\nnats = [\"{}\"]\nnode_name = \"{name}\"\nheartbeat_secs = 0.25\nnode_timeout_secs = 2.0\n", nats.url())
        };
        let mut a = Relay::start_one(main.clone(), sites, &node("a"), env).await;
        let b = Relay::start_one(main, sites, &node("b"), env).await;
        // Each must know the other before the test starts: from then on
        // `ready` and `ok` wait for the other's acknowledgement.
        let deadline = Instant::now() + Duration::from_secs(10);
        for r in [&a, &b] {
            while r.node_metric("bm_relay_cluster_peers").await != 1.0 {
                assert!(Instant::now() < deadline, "the two nodes did not see each other within 10 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        a.peer = Some(Box::new(b));
        a.nats = Some(nats);
        a
    }

    /// One relay process (what [`Relay::start_env`] starts off the cluster).
    async fn start_one(main: Site, sites: &[&Site], limits: &str, env: &[(&str, &str)]) -> Relay {
        // A port taken by someone else between probe and bind makes the
        // relay exit at once: try again with other ports.
        for attempt in 1..=5 {
            let relay = Relay::spawn(main.clone(), sites, limits, env);
            match relay.wait_healthy().await {
                Ok(()) => return relay,
                Err(log) if attempt < 5 && log.contains("cannot listen") => continue,
                Err(log) => panic!("relay did not become healthy; stderr:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(main: Site, sites: &[&Site], limits: &str, env: &[(&str, &str)]) -> Relay {
        let dir = TempDir::new();
        let port = free_port();
        let admin = free_port();
        let config_path = dir.0.join("relay.toml");
        // A test's own value of a FAST key replaces it (TOML refuses duplicates).
        let fast: String = FAST
            .lines()
            .filter(|l| {
                !limits.lines().any(|m| m.split('=').next().map(str::trim) == l.split('=').next().map(str::trim))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&config_path, config_text(port, admin, sites, &format!("{fast}{limits}"))).unwrap();
        let mut cmd = Command::new(relay_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .env_remove("BM_RELAY_SITES")
            .env_remove("BM_RELAY_LISTEN")
            .env_remove("BM_RELAY_ADMIN_LISTEN")
            .env_remove("BM_RELAY_NATS")
            .env_remove("BM_RELAY_NODE_NAME")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("bm-relay starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Relay {
            child,
            port,
            admin,
            site: main,
            config_path,
            stderr,
            _dir: dir,
            peer: None,
            nats: None,
            ws_turn: Default::default(),
            post_turn: Default::default(),
        }
    }

    /// Waits until *this* relay answers `/healthz` (the admin port's
    /// listening socket is one of its descriptors, so the answer is not
    /// from another process on a recycled port; `/healthz` shows no pid);
    /// `Err` with its stderr if it exits or takes over 15 s.
    pub async fn wait_healthy(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let pid = self.child.id();
        loop {
            if listens_on(pid, self.admin) {
                if let Ok((200, _)) = http_get(self.admin, "/healthz").await {
                    return Ok(());
                }
            }
            let exited = unsafe { libc::kill(pid as i32, 0) } != 0 || {
                // A zombie still answers kill(0): look at its state.
                std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
            };
            if exited || Instant::now() > deadline {
                tokio::time::sleep(Duration::from_millis(50)).await; // let the stderr reader catch up
                return Err(self.log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The WebSocket URL; on the cluster, each call the next node's.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.next(&self.ws_turn))
    }

    /// This node's port, or on the cluster each call the next node's.
    fn next(&self, turn: &std::sync::atomic::AtomicUsize) -> u16 {
        match &self.peer {
            Some(p) if turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2 == 1 => p.port,
            _ => self.port,
        }
    }

    /// A signed POST of `body` to `path` for the relay's main site (on
    /// the cluster, each call to the next node).
    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        signed_post(self.next(&self.post_turn), &self.site, path, body, now()).await
    }

    /// `POST /v1/push` with `events` (a JSON array).
    pub async fn push(&self, events: Value) -> (u16, Value) {
        self.post("/v1/push", &serde_json::json!({ "events": events }).to_string()).await
    }

    pub async fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").await.unwrap().1
    }

    /// Value of one metrics line (exact name with labels); on the
    /// cluster, the sum over both nodes.
    pub async fn metric(&self, name: &str) -> f64 {
        let mut v = self.node_metric(name).await;
        if let Some(p) = &self.peer {
            v += p.node_metric(name).await;
        }
        v
    }

    /// [`Relay::metric`] of this one process.
    pub async fn node_metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).map(|v| v.parse().unwrap()))
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }

    /// Polls [`Relay::metric`] until `ok` holds (every 20 ms, at most
    /// `within`); panics with the last value. What a test waits for
    /// instead of sleeping a guessed while.
    pub async fn wait_metric(&self, name: &str, ok: impl Fn(f64) -> bool, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let v = self.metric(name).await;
            if ok(v) {
                return;
            }
            assert!(Instant::now() < deadline, "{name} = {v} after {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the relay's stderr until it contains `needle` (at most `within`).
    pub async fn wait_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} in the log after {within:?}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Connects a WebSocket and authenticates as `user`; returns after `ready`.
    pub async fn client(&self, user: u64) -> Client {
        self.client_of(&self.site, user).await
    }

    /// Like [`Relay::client`], for a user of another configured site.
    pub async fn client_of(&self, site: &Site, user: u64) -> Client {
        let mut c = Client::connect(&self.ws_url()).await;
        c.send(serde_json::json!({"op":"auth","token": site.token(user)})).await;
        let ready = c.recv().await;
        assert_eq!(ready["op"], "ready", "{ready}");
        assert_eq!(ready["user"], user);
        c
    }

    /// A client subscribed to `thread`.
    pub async fn subscriber(&self, user: u64, thread: u64) -> Client {
        let mut c = self.client(user).await;
        c.sub(&self.site, user, thread).await;
        c
    }

    /// The relay's stderr so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        unsafe {
            libc::kill(-self.pid(), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Whether process `pid` holds the TCP socket listening on `port`
/// (`/proc/<pid>/fd` socket inodes against `/proc/net/tcp`).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    let inodes: Vec<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    let want = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).unwrap_or_default().lines().skip(1).any(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, st (0A = LISTEN), inode.
            f.len() > 9 && f[1].ends_with(&want) && f[3] == "0A" && inodes.iter().any(|i| i == f[9])
        })
    })
}

pub async fn signed_post(port: u16, site: &Site, path: &str, body: &str, ts: u64) -> (u16, Value) {
    let sig = signing::sign(&site.secret.relay_key(), ts, &site.id, "POST", path, body.as_bytes());
    raw_post(
        port,
        path,
        &[("X-BM-Site", site.id.to_string()), ("X-BM-Timestamp", ts.to_string()), ("X-BM-Signature", sig)],
        body,
    )
    .await
}

/// A keep-alive HTTP/1.1 connection to the relay.
pub struct Http {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Http {
    pub async fn connect(port: u16) -> Http {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Http { sender }
    }

    pub async fn request(&mut self, method: &str, path: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", "127.0.0.1");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), self.sender.send_request(req)).await.unwrap().unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    pub async fn signed_post(&mut self, site: &Site, path: &str, body: &str) -> (u16, Value) {
        let ts = now();
        let sig = signing::sign(&site.secret.relay_key(), ts, &site.id, "POST", path, body.as_bytes());
        let (s, b) = self
            .request(
                "POST",
                path,
                &[("X-BM-Site", site.id.to_string()), ("X-BM-Timestamp", ts.to_string()), ("X-BM-Signature", sig)],
                body,
            )
            .await;
        (s, serde_json::from_str(&b).unwrap_or(Value::String(b)))
    }
}

pub async fn raw_post(port: u16, path: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let (s, b) = Http::connect(port).await.request("POST", path, headers, body).await;
    (s, serde_json::from_str(&b).unwrap_or(Value::String(b)))
}

pub async fn http_get(port: u16, path: &str) -> Result<(u16, String), ()> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.map_err(|_| ())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| ())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path).header("host", "127.0.0.1").body(Full::new(Bytes::new())).unwrap();
    let resp = sender.send_request(req).await.map_err(|_| ())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|_| ())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// What a client saw: a frame, or the close.
#[derive(Debug)]
pub enum Seen {
    Frame(Value),
    Close(u16, String),
    Ended,
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        Client { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::Text(s.into())).await.expect("send");
    }

    /// Next frame or close, within `within`; `None` on timeout.
    pub async fn next_within(&mut self, within: Duration) -> Option<Seen> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let m = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(m) => m,
            };
            return Some(match m {
                Some(Ok(Message::Text(t))) => Seen::Frame(serde_json::from_str(&t).expect("relay frames are JSON")),
                Some(Ok(Message::Close(c))) => {
                    let (code, reason) =
                        c.map(|c| (u16::from(c.code), c.reason.to_string())).unwrap_or((1005, String::new()));
                    Seen::Close(code, reason)
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Seen::Ended,
            });
        }
    }

    /// The next frame (panics on close or after 5 s).
    pub async fn recv(&mut self) -> Value {
        match self.next_within(Duration::from_secs(5)).await {
            Some(Seen::Frame(v)) => v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Asserts nothing arrives for `d`.
    pub async fn silent_for(&mut self, d: Duration) {
        if let Some(seen) = self.next_within(d).await {
            panic!("expected silence, got {seen:?}");
        }
    }

    /// Skips frames until the relay closes; returns the close code and reason.
    pub async fn closed(&mut self, within: Duration) -> (u16, String) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Some(Seen::Close(c, r)) => return (c, r),
                Some(Seen::Frame(_)) => continue,
                Some(Seen::Ended) => panic!("connection ended without a close frame"),
                None => panic!("no close within {within:?}"),
            }
        }
    }

    pub async fn sub(&mut self, site: &Site, user: u64, thread: u64) {
        self.send(serde_json::json!({"op":"sub","thread":thread,"token":site.thread_token(user, thread),"ref":thread}))
            .await;
        let ok = self.recv().await;
        assert_eq!(ok, serde_json::json!({"op":"ok","ref":thread}));
    }
}

/// The nats-server binary, if installed.
pub fn nats_bin() -> Option<String> {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

/// One nats-server on 127.0.0.1, optionally in a NATS cluster (routes).
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    cluster_port: u16,
    routes: Vec<u16>,
    dir: TempDir,
}

impl Nats {
    pub fn start() -> Nats {
        Nats::start_routed(free_port(), &[])
    }

    /// A server whose cluster listener is `cluster_port`, routed to `routes`.
    pub fn start_routed(cluster_port: u16, routes: &[u16]) -> Nats {
        let mut n = Nats { child: None, port: free_port(), cluster_port, routes: routes.to_vec(), dir: TempDir::new() };
        n.spawn();
        n
    }

    /// Three servers in one NATS cluster.
    pub fn cluster3() -> Vec<Nats> {
        let cps = [free_port(), free_port(), free_port()];
        let ns: Vec<Nats> = (0..3)
            .map(|i| Nats::start_routed(cps[i], &cps.iter().copied().filter(|p| *p != cps[i]).collect::<Vec<_>>()))
            .collect();
        ns
    }

    /// Starts the server; a port taken between probe and bind (by another
    /// test's process) is retried on a fresh port, except on a restart.
    fn spawn(&mut self) {
        self.spawn_on(true)
    }

    fn spawn_on(&mut self, may_move: bool) {
        for attempt in 1..=5 {
            if attempt > 1 {
                self.port = free_port();
                if self.routes.is_empty() {
                    self.cluster_port = free_port();
                }
            }
            let routes: Vec<String> = self.routes.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
            let conf = format!(
                "listen: \"127.0.0.1:{}\"\nno_sys_acc: true\ncluster {{\n  name: bmtest\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
                self.port,
                self.cluster_port,
                routes.join(", ")
            );
            let path = self.dir.0.join("nats.conf");
            std::fs::write(&path, conf).unwrap();
            let mut cmd = Command::new(nats_bin().expect("nats-server"));
            cmd.arg("-c").arg(&path).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
            die_with_parent(&mut cmd);
            let mut child = cmd.spawn().expect("nats-server starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            // This very process must hold the port (another test's server
            // or relay answering on it would mix the tests).
            loop {
                if listens_on(child.id(), self.port) {
                    self.child = Some(child);
                    return;
                }
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                assert!(Instant::now() < deadline, "nats-server did not listen");
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(may_move, "nats-server could not listen again on port {}", self.port);
        }
        panic!("nats-server did not start in 5 attempts");
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, reaped.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    /// Starts again on the same ports.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_on(false);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
