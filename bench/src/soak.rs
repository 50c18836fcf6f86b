//! `bm-bench soak` (issue #11): a long run of mixed load against one real
//! relay, checking that it neither leaks memory nor loses deliveries.
//!
//! Load, all at once, for `--minutes`:
//! - **chat**: `--chat-sockets` long-lived sockets, one user each, each
//!   subscribed to two of `--threads` threads; `--publishers` keep-alive
//!   HTTP connections send signed `/v1/push` events (to users, to a thread,
//!   or both) at `--push-rate`, and the chat sockets send client `pub`
//!   frames at `--pub-rate` in all;
//! - **kills**: every `--kill-every` seconds a random `--kill-fraction` of
//!   the chat sockets is dropped abruptly (TCP RST or FIN, never a close
//!   frame) and reconnects;
//! - **churn**: `--churn-workers` loops that connect, authenticate,
//!   subscribe, hold the socket a moment and close it, continuously.
//!
//! Checks:
//! - **memory**: the relay's VmRSS is sampled every `--sample-secs`; after
//!   the warm-up (`--warmup-fraction` of the run) a least-squares slope is
//!   fitted, and the run fails above `--max-slope-kib-per-min`;
//! - **deliveries**: every event is expected at exactly the sockets that
//!   were ready (for a thread: whose `sub` was acknowledged) when it was
//!   sent. A socket checks what it receives in order per *source* (one
//!   publisher connection, or one sending socket for `pub`), because the
//!   relay keeps that order and nothing else: an expected event missing
//!   when a later one from the same source arrives is lost (or reordered,
//!   if it turns up later), whatever the latency. When we close or kill a
//!   socket, what it still expected is excluded (it may have been in
//!   flight); sockets open at the end must receive everything once the
//!   load has stopped and the queues have drained.
//! - **liveness**: the relay is running at the end, `/healthz` answers
//!   `ok`, and once every client has closed it counts no socket.
//!
//! Everything runs on one thread (a current-thread runtime and a
//! `LocalSet`), so the shared bookkeeping is plain `RefCell`s and every
//! decision (who is expected for an event) is atomic with respect to the
//! sockets' own tasks.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

use crate::adapters::{for_each_event_id, Ctx, Kind};
use crate::clients::{self, Ws};
use crate::http::{Conn, HttpError, Request};
use crate::procstat;
use crate::server::{self, Server};

/// Options of `bm-bench soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Length of the run (load phase), minutes; the drain and the checks add a few seconds.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Long-lived chat sockets (one distinct user each).
    #[arg(long, default_value_t = 400)]
    pub chat_sockets: u64,
    /// Threads the chat sockets subscribe to (two each).
    #[arg(long, default_value_t = 20)]
    pub threads: u64,
    /// Signed `/v1/push` events per second, over all publishers.
    #[arg(long, default_value_t = 100.0)]
    pub push_rate: f64,
    /// Keep-alive HTTP connections pushing concurrently (each one in order).
    #[arg(long, default_value_t = 2)]
    pub publishers: u64,
    /// Client `pub` frames per second, over all chat sockets.
    #[arg(long, default_value_t = 20.0)]
    pub pub_rate: f64,
    /// Concurrent churn loops (connect, auth, sub, hold 0.2–2 s, close).
    #[arg(long, default_value_t = 8)]
    pub churn_workers: u64,
    /// Seconds between two kills of chat sockets.
    #[arg(long, default_value_t = 5.0)]
    pub kill_every: f64,
    /// Share of the chat sockets dropped at each kill.
    #[arg(long, default_value_t = 0.1)]
    pub kill_fraction: f64,
    /// Seconds between two RSS samples.
    #[arg(long, default_value_t = 5.0)]
    pub sample_secs: f64,
    /// Share of the run before the RSS slope is fitted (allocator and
    /// routing tables reaching their working size).
    #[arg(long, default_value_t = 0.2)]
    pub warmup_fraction: f64,
    /// Largest RSS growth tolerated after the warm-up, KiB per minute.
    ///
    /// Why 512: at the default load (measured: ~120 events/s, ~18
    /// connects/s, ~3,200 deliveries/s) a leak of 80 bytes per event, 500
    /// bytes per connect or 3 bytes per delivery crosses it, while a relay
    /// whose memory is only noisy (allocator arenas, tables growing to a
    /// new power of two during the warm-up) stays well below it over 8
    /// minutes of samples. Short runs are noisier: trust 10 minutes or more.
    #[arg(long, default_value_t = 512.0)]
    pub max_slope_kib_per_min: f64,
    /// Seed of the random choices (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Relay port on 127.0.0.1 (admin on port+1); 0 picks a free pair.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Directory for the relay's config and log.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../run/soak"))]
    pub run_dir: PathBuf,
    /// The bm-relay binary.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/bm-relay"))]
    pub relay_bin: PathBuf,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Source addresses the clients spread over (as the other scenarios do):
/// churn leaves each closed connection in TIME_WAIT for 60 s.
const SOURCES: u8 = 16;

/// Once the load stops, how long the sockets may go without receiving
/// anything they still expect before what is missing counts as lost.
const DRAIN_QUIET: Duration = Duration::from_secs(10);
/// And the longest the drain may take in all.
const DRAIN_MAX: Duration = Duration::from_secs(60);

/// Sources of events: publisher `p` is `p`; a socket's `pub` frames are
/// `PUB_SOURCE_BASE + sid`.
const PUB_SOURCE_BASE: u64 = 1 << 32;

/// Ids of the churn users start here (the chat users are 1..=chat_sockets),
/// and cycle over this many, so that some users come back and most are new.
const CHURN_USER_BASE: u64 = 1_000_000;
const CHURN_USERS: u64 = 50_000;

/// A tiny xorshift64* generator: reproducible from `--seed`, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What happened to an event after it was sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Sent; the reply has not come yet.
    Pending,
    /// The relay accepted it.
    Accepted,
    /// The relay refused it: nothing of it was delivered.
    Refused,
    /// Unknown (the connection broke or the sender was killed before the
    /// reply): excluded from the checks.
    Unknown,
}

struct Event {
    source: u64,
    fate: Fate,
}

/// Per socket and source: what it still expects, in send order, and the
/// latest sequence number it received.
#[derive(Default)]
struct Track {
    expected: VecDeque<u64>,
    last: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Chat,
    Churn,
}

/// Commands to a chat socket.
enum Cmd {
    Pub,
    Kill,
}

/// A live, ready socket (one incarnation: a reconnect is a new one).
struct Sock {
    user: u64,
    role: Role,
    threads: Vec<u64>,
    cmd: Option<mpsc::UnboundedSender<Cmd>>,
    pub_pending: Option<u64>,
    tracks: HashMap<u64, Track>,
    lost: HashSet<u64>,
}

#[derive(Default)]
struct Counters {
    connects: Cell<u64>,
    connect_failures: Cell<u64>,
    churn_cycles: Cell<u64>,
    kills: Cell<u64>,
    server_closes: Cell<u64>,
    pushes: Cell<u64>,
    push_refused: Cell<u64>,
    push_unknown: Cell<u64>,
    pubs: Cell<u64>,
    pub_refused: Cell<u64>,
    pub_unknown: Cell<u64>,
    subs: Cell<u64>,
    sub_refused: Cell<u64>,
    unsubs: Cell<u64>,
    expected: Cell<u64>,
    received: Cell<u64>,
    checked: Cell<u64>,
    lost: Cell<u64>,
    lost_at_end: Cell<u64>,
    reordered: Cell<u64>,
    duplicates: Cell<u64>,
    extra: Cell<u64>,
    excluded_closed: Cell<u64>,
    excluded_unknown: Cell<u64>,
    relay_undercount: Cell<u64>,
}

fn inc(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// Everything the tasks share.
struct State {
    ctx: Rc<Ctx>,
    opts: Opts,
    t0: Instant,
    rng: RefCell<Rng>,
    socks: RefCell<HashMap<u64, Sock>>,
    by_user: RefCell<HashMap<u64, Vec<u64>>>,
    by_thread: RefCell<HashMap<u64, Vec<u64>>>,
    events: RefCell<Vec<Event>>,
    next_sid: Cell<u64>,
    c: Counters,
    errors: RefCell<BTreeMap<String, u64>>,
    close_codes: RefCell<BTreeMap<String, u64>>,
    first_losses: RefCell<Vec<String>>,
}

impl State {
    fn note_error(&self, what: String) {
        let what: String = what.chars().take(160).collect();
        *self.errors.borrow_mut().entry(what).or_insert(0) += 1;
    }

    /// A new event from `source`; returns its sequence number.
    fn new_event(&self, source: u64) -> u64 {
        let mut ev = self.events.borrow_mut();
        if ev.is_empty() {
            ev.push(Event { source: u64::MAX, fate: Fate::Refused }); // seq 0 is never used
        }
        ev.push(Event { source, fate: Fate::Pending });
        (ev.len() - 1) as u64
    }

    fn settle(&self, seq: u64, fate: Fate) {
        if let Some(e) = self.events.borrow_mut().get_mut(seq as usize) {
            e.fate = fate;
        }
    }

    fn fate(&self, seq: u64) -> Fate {
        self.events.borrow().get(seq as usize).map(|e| e.fate).unwrap_or(Fate::Unknown)
    }

    fn register(&self, user: u64, role: Role, cmd: Option<mpsc::UnboundedSender<Cmd>>) -> u64 {
        let sid = self.next_sid.get() + 1;
        self.next_sid.set(sid);
        self.socks.borrow_mut().insert(
            sid,
            Sock {
                user,
                role,
                threads: Vec::new(),
                cmd,
                pub_pending: None,
                tracks: HashMap::new(),
                lost: HashSet::new(),
            },
        );
        self.by_user.borrow_mut().entry(user).or_default().push(sid);
        inc(&self.c.connects);
        sid
    }

    fn subscribed(&self, sid: u64, thread: u64) {
        if let Some(s) = self.socks.borrow_mut().get_mut(&sid) {
            s.threads.push(thread);
            self.by_thread.borrow_mut().entry(thread).or_default().push(sid);
            inc(&self.c.subs);
        }
    }

    /// The socket stops being a recipient; whatever it still expected is
    /// excluded (it may have been in flight when we closed it).
    fn unregister(&self, sid: u64) {
        let Some(s) = self.socks.borrow_mut().remove(&sid) else { return };
        if let Some(v) = self.by_user.borrow_mut().get_mut(&s.user) {
            v.retain(|&x| x != sid);
        }
        let mut bt = self.by_thread.borrow_mut();
        for t in &s.threads {
            if let Some(v) = bt.get_mut(t) {
                v.retain(|&x| x != sid);
            }
        }
        if let Some(seq) = s.pub_pending {
            if self.fate(seq) == Fate::Pending {
                self.settle(seq, Fate::Unknown);
                inc(&self.c.pub_unknown);
            }
        }
        let left: u64 = s.tracks.values().map(|t| t.expected.len() as u64).sum();
        self.c.excluded_closed.set(self.c.excluded_closed.get() + left);
    }

    /// Records that `seq` is expected at every socket of `sids`.
    fn expect(&self, seq: u64, source: u64, sids: &[u64]) {
        let mut socks = self.socks.borrow_mut();
        for sid in sids {
            if let Some(s) = socks.get_mut(sid) {
                s.tracks.entry(source).or_default().expected.push_back(seq);
                inc(&self.c.expected);
            }
        }
    }

    /// The sockets a push to `to` (and `thread`) must reach, each once.
    fn push_recipients(&self, to: &[u64], thread: Option<u64>) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        let bu = self.by_user.borrow();
        for u in to {
            if let Some(v) = bu.get(u) {
                out.extend(v);
            }
        }
        if let Some(t) = thread {
            if let Some(v) = self.by_thread.borrow().get(&t) {
                out.extend(v);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Socket `sid` received event `seq`: check it against what it expects.
    fn received(&self, sid: u64, seq: u64) {
        inc(&self.c.received);
        let source = match self.events.borrow().get(seq as usize) {
            Some(e) if seq > 0 => e.source,
            _ => {
                self.note_error(format!("received an event never sent (b{seq})"));
                return;
            }
        };
        let events = self.events.borrow();
        let mut socks = self.socks.borrow_mut();
        let Some(s) = socks.get_mut(&sid) else { return };
        let tr = s.tracks.entry(source).or_default();
        if seq <= tr.last {
            if s.lost.remove(&seq) {
                // counted lost when a later event overtook it: it was reordered
                self.c.lost.set(self.c.lost.get() - 1);
                inc(&self.c.reordered);
            } else {
                inc(&self.c.duplicates);
            }
            return;
        }
        tr.last = seq;
        while let Some(&f) = tr.expected.front() {
            if f >= seq {
                break;
            }
            tr.expected.pop_front();
            match events[f as usize].fate {
                Fate::Refused | Fate::Unknown => inc(&self.c.excluded_unknown),
                Fate::Pending | Fate::Accepted => {
                    inc(&self.c.lost);
                    s.lost.insert(f);
                    let mut fl = self.first_losses.borrow_mut();
                    if fl.len() < 10 {
                        fl.push(format!(
                            "at {:.1} s: socket {sid} (user {}) missed b{f} from source {} but got b{seq}",
                            self.t0.elapsed().as_secs_f64(),
                            s.user,
                            source_name(source)
                        ));
                    }
                }
            }
        }
        if tr.expected.front() == Some(&seq) {
            tr.expected.pop_front();
            inc(&self.c.checked);
        } else {
            // sent before this socket was ready or subscribed, yet routed to
            // it: allowed (we only know a lower bound of the recipients)
            inc(&self.c.extra);
        }
    }

    /// Expected events still outstanding at live sockets (not refused or unknown).
    fn outstanding(&self) -> u64 {
        let events = self.events.borrow();
        self.socks
            .borrow()
            .values()
            .flat_map(|s| s.tracks.values())
            .flat_map(|t| t.expected.iter())
            .filter(|&&q| matches!(events[q as usize].fate, Fate::Pending | Fate::Accepted))
            .count() as u64
    }

    fn live(&self, role: Role) -> u64 {
        self.socks.borrow().values().filter(|s| s.role == role).count() as u64
    }
}

fn source_name(source: u64) -> String {
    if source >= PUB_SOURCE_BASE {
        format!("pub of socket {}", source - PUB_SOURCE_BASE)
    } else {
        format!("publisher {source}")
    }
}

/// How a socket's session ended.
#[derive(PartialEq, Eq)]
enum End {
    Failed,
    Killed,
    ServerClosed,
    Closed,
}

/// The JSON summary (`--json`).
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    /// Whether every check passed.
    pub pass: bool,
    /// What failed, in words.
    pub problems: Vec<String>,
    /// Run length asked for, minutes.
    pub minutes: f64,
    /// Seconds the load actually ran.
    pub load_secs: f64,
    /// The options of the run.
    pub options: serde_json::Value,
    /// Whether the per-address `[limits]` keys were accepted by this relay (and lifted).
    pub per_ip_caps_lifted: bool,
    /// Relay pid.
    pub relay_pid: u32,
    /// RSS samples: (seconds since start, KiB).
    pub rss_samples: Vec<(f64, u64)>,
    /// RSS at the first sample, KiB.
    pub rss_start_kib: u64,
    /// RSS at the end of the warm-up, KiB.
    pub rss_warm_kib: u64,
    /// RSS at the last sample under load, KiB.
    pub rss_end_kib: u64,
    /// Largest RSS seen, KiB.
    pub rss_max_kib: u64,
    /// Least-squares slope after the warm-up, KiB per minute.
    pub rss_slope_kib_per_min: Option<f64>,
    /// The bound it is held to.
    pub max_slope_kib_per_min: f64,
    /// Relay CPU-seconds over the run.
    pub relay_cpu_secs: f64,
    /// Counters (sockets, events, deliveries, checks).
    pub counts: BTreeMap<String, u64>,
    /// Close codes the relay sent to sockets it closed itself.
    pub server_close_codes: BTreeMap<String, u64>,
    /// Errors seen, with counts.
    pub errors: BTreeMap<String, u64>,
    /// The first losses, if any, for the report.
    pub first_losses: Vec<String>,
    /// `/healthz` body at the end.
    pub healthz: Option<String>,
    /// Sockets the relay still counted after every client closed.
    pub relay_connections_after_close: Option<u64>,
}

/// Runs the soak; exit 0 when every check passed, 1 when one failed, 2 when it could not run.
pub fn run(opts: Opts) -> ExitCode {
    if !(opts.minutes > 0.0 && opts.minutes <= 24.0 * 60.0) {
        eprintln!("bm-bench soak: --minutes must be in (0, 1440]");
        return ExitCode::from(2);
    }
    if opts.threads == 0 || opts.publishers == 0 || opts.push_rate <= 0.0 || opts.sample_secs <= 0.0 {
        eprintln!("bm-bench soak: --threads, --publishers, --push-rate and --sample-secs must be positive");
        return ExitCode::from(2);
    }
    let nofile = procstat::raise_nofile();
    let need = opts.chat_sockets * 2 + opts.churn_workers * 2 + opts.publishers + 64;
    if need > nofile {
        eprintln!("bm-bench soak: {need} sockets need more than the open-file limit ({nofile})");
        return ExitCode::from(2);
    }
    if let Err(e) = std::fs::create_dir_all(&opts.run_dir) {
        eprintln!("bm-bench soak: run dir {}: {e}", opts.run_dir.display());
        return ExitCode::from(2);
    }
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1
    });
    let secret = bm_proto::SiteSecret::generate();
    let port = if opts.port == 0 { free_port_pair(seed) } else { opts.port };
    let (mut relay, caps_lifted) = match start_relay(&opts, port, &secret, nofile) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bm-bench soak: {e}");
            return ExitCode::from(2);
        }
    };
    let mut ctx = match Ctx::new(Kind::Relay, secret) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bm-bench soak: {e}");
            return ExitCode::from(2);
        }
    };
    ctx.addr = SocketAddr::from(([127, 0, 0, 1], port));
    eprintln!(
        "soak: relay pid {} on 127.0.0.1:{port} (admin {}), per-address caps {}; {} min, seed {seed}; log {}",
        relay.pid,
        port + 1,
        if caps_lifted { "lifted" } else { "not known to this relay" },
        opts.minutes,
        opts.run_dir.join("relay.log").display()
    );
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bm-bench soak: no runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let st = Rc::new(State {
        ctx: Rc::new(ctx),
        opts: opts.clone(),
        t0: Instant::now(),
        rng: RefCell::new(Rng(seed)),
        socks: RefCell::default(),
        by_user: RefCell::default(),
        by_thread: RefCell::default(),
        events: RefCell::default(),
        next_sid: Cell::new(0),
        c: Counters::default(),
        errors: RefCell::default(),
        close_codes: RefCell::default(),
        first_losses: RefCell::default(),
    });
    let local = tokio::task::LocalSet::new();
    let mut summary = local.block_on(&rt, drive(st, &mut relay, caps_lifted));
    drop(local);
    drop(rt);
    relay.stop();
    summary.options = serde_json::json!({
        "chat_sockets": opts.chat_sockets, "threads": opts.threads, "push_rate": opts.push_rate,
        "publishers": opts.publishers, "pub_rate": opts.pub_rate, "churn_workers": opts.churn_workers,
        "kill_every": opts.kill_every, "kill_fraction": opts.kill_fraction, "sample_secs": opts.sample_secs,
        "warmup_fraction": opts.warmup_fraction, "seed": seed, "port": port,
    });
    print_summary(&summary);
    if let Some(path) = &opts.json {
        match serde_json::to_string_pretty(&summary) {
            Ok(text) => {
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("bm-bench soak: cannot write {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            Err(e) => {
                eprintln!("bm-bench soak: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if summary.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A port `p` with `p` and `p + 1` free now, from 20000–32767 (below the
/// kernel's ephemeral range, so no client `bind(0)` takes it meanwhile).
fn free_port_pair(seed: u64) -> u16 {
    let mut rng = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
    loop {
        let p = 20000 + rng.below(12766) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
}

/// The per-source-address caps of the relay's `[limits]` (after the HTTP
/// hardening), lifted: every client of this single-machine load generator
/// comes from 127.0.0.x at a rate no real address would reach. Integers
/// only (the keys are counts or rates, and a TOML integer reads as either).
/// `max_connections` stays under the open-file limit the relay inherits
/// (it warns otherwise), with room for the admin listener and its own fds.
fn per_ip_lifts(nofile: u64) -> String {
    let max_connections = nofile.saturating_sub(200).max(5000);
    let pending = (max_connections / 2).min(10_000);
    format!(
        "max_connections = {max_connections}\nmax_pending_connections = {pending}\nmax_connections_per_ip = {max_connections}\n\
         new_connections_per_ip_per_sec = 100000\nnew_connections_per_ip_burst = 100000\n"
    )
}

/// The keys of [`per_ip_lifts`]: a relay that names one of them as an
/// unknown field predates them.
const PER_IP_KEYS: [&str; 5] = [
    "max_connections",
    "max_pending_connections",
    "max_connections_per_ip",
    "new_connections_per_ip_per_sec",
    "new_connections_per_ip_burst",
];

/// Writes `relay.toml` into the run dir and starts `bm-relay serve` on it;
/// first with the per-address caps lifted and, if this relay refuses them
/// as unknown keys, again without. The relay key goes through the
/// environment (`BM_RELAY_SITES`), never into the file or a command line.
fn start_relay(opts: &Opts, port: u16, secret: &bm_proto::SiteSecret, nofile: u64) -> Result<(Server, bool), String> {
    let conf = opts.run_dir.join("relay.toml");
    let log = opts.run_dir.join("relay.log");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for lift in [true, false] {
        // max_sockets_per_user stays at its default (16): the soak uses one
        // socket per user. Only warnings are logged: no per-socket lines.
        let text = format!(
            "listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{}\"\n[limits]\n{}[log]\nfilter = \"warn\"\n",
            port + 1,
            if lift { per_ip_lifts(nofile) } else { String::new() }
        );
        std::fs::write(&conf, text).map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let mut c = Command::new(&opts.relay_bin);
        c.arg("serve")
            .arg("--config")
            .arg(&conf)
            .env("BM_RELAY_SITES", format!("{}={}", crate::adapters::SITE, secret.relay_key().to_b64()))
            .env_remove("RUST_LOG")
            .env_remove("BM_RELAY_CONFIG")
            .env_remove("BM_RELAY_LISTEN")
            .env_remove("BM_RELAY_ADMIN_LISTEN")
            .env_remove("BM_RELAY_SITES_FILE");
        match server::launch(c, "bm-relay", addr, &log) {
            Ok(s) => return Ok((s, lift)),
            Err(e) => {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let unknown = PER_IP_KEYS.iter().any(|k| text.contains(&format!("unknown field `{k}`")));
                if lift && unknown {
                    // keep the probe's answer beside the real log
                    let _ = std::fs::rename(&log, opts.run_dir.join("relay-probe.log"));
                    continue;
                }
                return Err(format!("{e}\n{}", text.lines().take(5).collect::<Vec<_>>().join("\n")));
            }
        }
    }
    Err("the relay did not start".into())
}

async fn drive(st: Rc<State>, relay: &mut Server, caps_lifted: bool) -> Summary {
    let opts = st.opts.clone();
    let run_for = Duration::from_secs_f64(opts.minutes * 60.0);
    let warmup = run_for.mul_f64(opts.warmup_fraction.clamp(0.0, 0.9));
    let (load_tx, load_rx) = watch::channel(false);
    let (final_tx, final_rx) = watch::channel(false);
    let mut load_tasks = Vec::new();
    let mut chat_tasks = Vec::new();
    for i in 0..opts.chat_sockets {
        chat_tasks.push(tokio::task::spawn_local(chat_slot(st.clone(), i, final_rx.clone())));
    }
    for p in 0..opts.publishers {
        load_tasks.push(tokio::task::spawn_local(publisher(st.clone(), p, load_rx.clone())));
    }
    for w in 0..opts.churn_workers {
        load_tasks.push(tokio::task::spawn_local(churn_worker(st.clone(), w, load_rx.clone())));
    }
    if opts.pub_rate > 0.0 {
        load_tasks.push(tokio::task::spawn_local(pub_scheduler(st.clone(), load_rx.clone())));
    }
    if opts.kill_every > 0.0 && opts.kill_fraction > 0.0 {
        load_tasks.push(tokio::task::spawn_local(killer(st.clone(), load_rx.clone())));
    }

    let tty = std::io::stderr().is_terminal();
    let mut problems = Vec::new();
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let cpu0 = procstat::cpu_seconds(relay.pid);
    let mut next_sample = Duration::ZERO;
    let mut last_line = Duration::ZERO;
    let mut interrupted = false;
    let mut sigs = Signals::new();
    // the load phase
    loop {
        let now = st.t0.elapsed();
        if now >= next_sample {
            samples.push((now.as_secs_f64(), procstat::rss_bytes(relay.pid) / 1024));
            next_sample += Duration::from_secs_f64(opts.sample_secs);
        }
        if tty || now >= last_line + Duration::from_secs(10) {
            live_line(&st, samples.last().map(|s| s.1), "load", tty);
            last_line = now;
        }
        if !relay.running() {
            problems.push(format!("the relay exited during the run, at {:.0} s", now.as_secs_f64()));
            break;
        }
        if now >= run_for {
            break;
        }
        tokio::select! {
            _ = sleep(Duration::from_secs(1)) => {}
            _ = sigs.recv() => {
                interrupted = true;
                break;
            }
        }
    }
    let load_secs = st.t0.elapsed().as_secs_f64();
    let _ = load_tx.send(true);
    for t in load_tasks {
        let _ = timeout(Duration::from_secs(40), t).await;
    }
    if tty {
        eprintln!();
    }
    // the drain: sockets still open must get everything they expect
    let drain_start = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_out = st.outstanding();
    while last_out > 0 && drain_start.elapsed() < DRAIN_MAX && last_progress.elapsed() < DRAIN_QUIET && !interrupted {
        tokio::select! {
            _ = sleep(Duration::from_millis(200)) => {}
            _ = sigs.recv() => interrupted = true,
        }
        let out = st.outstanding();
        if out < last_out {
            last_progress = Instant::now();
        }
        last_out = out;
    }
    // what live sockets still expect is lost (the load is over, the queues drained)
    {
        let events = st.events.borrow();
        let socks = st.socks.borrow();
        let mut fl = st.first_losses.borrow_mut();
        for (sid, s) in socks.iter() {
            for (src, tr) in &s.tracks {
                for &q in &tr.expected {
                    match events[q as usize].fate {
                        Fate::Pending | Fate::Accepted => {
                            inc(&st.c.lost_at_end);
                            if fl.len() < 10 {
                                fl.push(format!(
                                    "at the end: socket {sid} (user {}) never got b{q} from {}",
                                    s.user,
                                    source_name(*src)
                                ));
                            }
                        }
                        Fate::Refused | Fate::Unknown => inc(&st.c.excluded_unknown),
                    }
                }
            }
        }
    }
    let relay_cpu = procstat::cpu_seconds(relay.pid) - cpu0;
    let alive = relay.running();
    let admin = SocketAddr::from(([127, 0, 0, 1], st.ctx.addr.port() + 1));
    let healthz = healthz(admin).await;
    let live_chat = st.live(Role::Chat);
    // everyone closes; the relay must count no socket afterwards
    let _ = final_tx.send(true);
    for t in chat_tasks {
        let _ = timeout(Duration::from_secs(20), t).await;
    }
    let mut after_close = None;
    if alive {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = healthz_connections(admin).await;
            after_close = n;
            if n == Some(0) || Instant::now() > deadline {
                break;
            }
            sleep(Duration::from_millis(250)).await;
        }
    }
    let c = &st.c;
    if interrupted {
        problems.push("interrupted before the end".into());
    }
    if !alive {
        problems.push("the relay is not running at the end".into());
    }
    match &healthz {
        Ok(body) if body.contains(r#""status":"ok""#) => {}
        Ok(body) => problems.push(format!("/healthz did not say ok: {body}")),
        Err(e) => problems.push(format!("/healthz did not answer: {e}")),
    }
    if alive && after_close != Some(0) {
        problems.push(format!("the relay still counts {after_close:?} sockets 10 s after every client closed"));
    }
    if c.lost.get() + c.lost_at_end.get() > 0 {
        problems.push(format!(
            "{} deliveries lost ({} overtaken by a later event, {} missing at the end)",
            c.lost.get() + c.lost_at_end.get(),
            c.lost.get(),
            c.lost_at_end.get()
        ));
    }
    if c.reordered.get() + c.duplicates.get() > 0 {
        problems.push(format!("{} events out of order, {} duplicated", c.reordered.get(), c.duplicates.get()));
    }
    if c.checked.get() == 0 {
        problems.push("no delivery was checked".into());
    }
    if c.server_closes.get() > 0 {
        problems.push(format!(
            "the relay closed {} sockets of its own accord (see server_close_codes)",
            c.server_closes.get()
        ));
    }
    if c.connect_failures.get() > 0 {
        problems.push(format!("{} connects or handshakes failed (see errors)", c.connect_failures.get()));
    }
    if c.push_refused.get() + c.pub_refused.get() + c.sub_refused.get() > 0 {
        problems.push(format!(
            "the relay refused {} pushes, {} pubs, {} subs (see errors)",
            c.push_refused.get(),
            c.pub_refused.get(),
            c.sub_refused.get()
        ));
    }
    if c.relay_undercount.get() > 0 {
        problems
            .push(format!("{} push replies counted fewer sockets than were ready for them", c.relay_undercount.get()));
    }
    // the memory check
    let warm_s = warmup.as_secs_f64();
    let fit: Vec<(f64, f64)> = samples.iter().filter(|s| s.0 >= warm_s).map(|s| (s.0 / 60.0, s.1 as f64)).collect();
    let slope = slope(&fit);
    match slope {
        Some(s) if s > opts.max_slope_kib_per_min => problems
            .push(format!("RSS grows {s:.0} KiB/min after the warm-up (bound {:.0})", opts.max_slope_kib_per_min)),
        Some(_) => {}
        None => problems.push(format!("too few RSS samples after the warm-up ({}) to fit a slope", fit.len())),
    }
    let at = |t: f64| samples.iter().find(|s| s.0 >= t).or(samples.last()).map(|s| s.1).unwrap_or(0);
    let mut counts = BTreeMap::new();
    for (k, v) in [
        ("socket_connects", c.connects.get()),
        ("connect_failures", c.connect_failures.get()),
        ("churn_cycles", c.churn_cycles.get()),
        ("kills", c.kills.get()),
        ("server_closes", c.server_closes.get()),
        ("chat_sockets_live_at_end", live_chat),
        ("subs_acknowledged", c.subs.get()),
        ("subs_refused", c.sub_refused.get()),
        ("unsubs_from_relay", c.unsubs.get()),
        ("pushes_sent", c.pushes.get()),
        ("pushes_refused", c.push_refused.get()),
        ("pushes_unknown", c.push_unknown.get()),
        ("pubs_sent", c.pubs.get()),
        ("pubs_refused", c.pub_refused.get()),
        ("pubs_unknown", c.pub_unknown.get()),
        ("deliveries_expected", c.expected.get()),
        ("deliveries_received", c.received.get()),
        ("deliveries_checked", c.checked.get()),
        ("deliveries_lost", c.lost.get() + c.lost_at_end.get()),
        ("reordered", c.reordered.get()),
        ("duplicates", c.duplicates.get()),
        ("extra_deliveries", c.extra.get()),
        ("excluded_closed_by_us", c.excluded_closed.get()),
        ("excluded_unknown_fate", c.excluded_unknown.get()),
        ("push_replies_undercounting", c.relay_undercount.get()),
    ] {
        counts.insert(k.to_owned(), v);
    }
    Summary {
        pass: problems.is_empty(),
        problems,
        minutes: opts.minutes,
        load_secs,
        options: serde_json::Value::Null,
        per_ip_caps_lifted: caps_lifted,
        relay_pid: relay.pid,
        rss_start_kib: samples.first().map(|s| s.1).unwrap_or(0),
        rss_warm_kib: at(warm_s),
        rss_end_kib: samples.last().map(|s| s.1).unwrap_or(0),
        rss_max_kib: samples.iter().map(|s| s.1).max().unwrap_or(0),
        rss_samples: samples,
        rss_slope_kib_per_min: slope,
        max_slope_kib_per_min: opts.max_slope_kib_per_min,
        relay_cpu_secs: relay_cpu,
        counts,
        server_close_codes: st.close_codes.borrow().clone(),
        errors: st.errors.borrow().clone(),
        first_losses: st.first_losses.borrow().clone(),
        healthz: healthz.ok(),
        relay_connections_after_close: after_close,
    }
}

/// SIGINT and SIGTERM end the load early (the checks and the relay's
/// stop still run); without signal support it never fires.
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Signals { int: signal(SignalKind::interrupt()).ok(), term: signal(SignalKind::terminate()).ok() }
    }

    async fn recv(&mut self) {
        let int = async {
            match self.int.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let term = async {
            match self.term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = int => {}
            _ = term => {}
        }
    }
}

/// Least-squares slope of y over x (None with fewer than 3 points or no spread of x).
fn slope(pts: &[(f64, f64)]) -> Option<f64> {
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn live_line(st: &State, rss_kib: Option<u64>, phase: &str, tty: bool) {
    let c = &st.c;
    let e = st.t0.elapsed().as_secs();
    let line = format!(
        "soak {}m{:02}s/{}m {phase}: sockets {} (chat {}, churn {}) | churn {} kills {} | sent {} push + {} pub | received {} checked {} lost {} | rss {:.1} MiB",
        e / 60,
        e % 60,
        st.opts.minutes,
        st.socks.borrow().len(),
        st.live(Role::Chat),
        st.live(Role::Churn),
        c.churn_cycles.get(),
        c.kills.get(),
        c.pushes.get(),
        c.pubs.get(),
        c.received.get(),
        c.checked.get(),
        c.lost.get(),
        rss_kib.unwrap_or(0) as f64 / 1024.0
    );
    if tty {
        eprint!("\r{line}\x1b[K");
    } else {
        eprintln!("{line}");
    }
}

async fn healthz(admin: SocketAddr) -> Result<String, String> {
    let mut conn = Conn::new(admin);
    match timeout(Duration::from_secs(5), conn.send(&Request::get(&admin, "/healthz"))).await {
        Ok(Ok(body)) => Ok(String::from_utf8_lossy(&body).into_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

async fn healthz_connections(admin: SocketAddr) -> Option<u64> {
    let body = healthz(admin).await.ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["connections"].as_u64()
}

/// One chat slot: user `i + 1`, two threads, reconnecting after every kill
/// until `stop`.
async fn chat_slot(st: Rc<State>, i: u64, stop: watch::Receiver<bool>) {
    let user = i + 1;
    let t = st.opts.threads;
    let mut threads = vec![1 + i % t, 1 + (i * 7 + 3) % t];
    threads.dedup();
    let (tx, mut rx) = mpsc::unbounded_channel();
    while !*stop.borrow() {
        let end = session(&st, user, Role::Chat, &threads, Some((tx.clone(), &mut rx)), None, stop.clone()).await;
        let pause = match end {
            End::Closed => break,
            // a killed browser comes back after a short while
            End::Killed => 50 + st.rng.borrow_mut().below(450),
            End::Failed | End::ServerClosed => 1000,
        };
        sleep(Duration::from_millis(pause)).await;
    }
}

/// One churn loop: a fresh user each cycle (cycling over a large pool),
/// one or two threads, held 0.2–2 s, until `stop`.
async fn churn_worker(st: Rc<State>, w: u64, stop: watch::Receiver<bool>) {
    let mut n = w;
    while !*stop.borrow() {
        let user = CHURN_USER_BASE + n % CHURN_USERS;
        n += st.opts.churn_workers.max(1);
        let (threads, hold) = {
            let mut r = st.rng.borrow_mut();
            let mut th = vec![1 + r.below(st.opts.threads)];
            if r.unit() < 0.5 {
                th.push(1 + r.below(st.opts.threads));
                th.dedup();
            }
            (th, Duration::from_millis(200 + r.below(1800)))
        };
        let end = session(&st, user, Role::Churn, &threads, None, Some(hold), stop.clone()).await;
        if end != End::Failed {
            inc(&st.c.churn_cycles);
        }
        let pause = if end == End::Failed { 1000 } else { st.rng.borrow_mut().below(100) };
        sleep(Duration::from_millis(pause)).await;
    }
}

/// One socket's life: connect and authenticate, subscribe to `threads`,
/// check every event it receives; obey kills and `pub` commands (chat) or
/// leave after `hold` (churn); close gracefully on `stop`.
async fn session(
    st: &Rc<State>,
    user: u64,
    role: Role,
    threads: &[u64],
    cmds: Option<(mpsc::UnboundedSender<Cmd>, &mut mpsc::UnboundedReceiver<Cmd>)>,
    hold: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) -> End {
    let src = clients::source_addr(user, SOURCES);
    let mut ws = match timeout(clients::HANDSHAKE_TIMEOUT, clients::connect(&st.ctx, user, src)).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            inc(&st.c.connect_failures);
            st.note_error(format!("connect: {e}"));
            return End::Failed;
        }
        Err(_) => {
            inc(&st.c.connect_failures);
            st.note_error("connect: handshake timed out".into());
            return End::Failed;
        }
    };
    let (tx, mut rx) = match cmds {
        Some((tx, rx)) => {
            while rx.try_recv().is_ok() {} // commands meant for the previous incarnation
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let sid = st.register(user, role, tx);
    for &t in threads {
        let frame = format!(r#"{{"op":"sub","thread":{t},"token":"{}","ref":-{t}}}"#, st.ctx.thread_token(user, t));
        if ws.send(Message::text(frame)).await.is_err() {
            return server_closed(st, sid, ws, None).await;
        }
    }
    let leave_at = hold.map(|h| Instant::now() + h);
    loop {
        let cmd = async {
            match rx.as_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        let leave = async {
            match leave_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(text))) => on_text(st, sid, text.as_str()),
                Some(Ok(Message::Close(f))) => return server_closed(st, sid, ws, f.map(|f| format!("{} {}", u16::from(f.code), f.reason))).await,
                Some(Ok(_)) => {}
                Some(Err(e)) => return server_closed(st, sid, ws, Some(format!("error: {e}"))).await,
                None => return server_closed(st, sid, ws, Some("eof".into())).await,
            },
            c = cmd => match c {
                Some(Cmd::Pub) => {
                    if let Some(frame) = make_pub(st, sid) {
                        if ws.send(Message::text(frame)).await.is_err() {
                            return server_closed(st, sid, ws, Some("send failed".into())).await;
                        }
                    }
                }
                Some(Cmd::Kill) | None => {
                    st.unregister(sid);
                    inc(&st.c.kills);
                    abrupt(st, ws);
                    return End::Killed;
                }
            },
            _ = leave => {
                st.unregister(sid);
                // most browsers close properly; some vanish
                if st.rng.borrow_mut().unit() < 0.7 {
                    graceful(ws).await;
                } else {
                    abrupt(st, ws);
                }
                return End::Closed;
            }
            _ = stop.changed() => {
                st.unregister(sid);
                graceful(ws).await;
                return End::Closed;
            }
        }
    }
}

/// The relay closed (or broke) a socket we did not close: counted, with its code.
async fn server_closed(st: &State, sid: u64, ws: Ws, why: Option<String>) -> End {
    st.unregister(sid);
    inc(&st.c.server_closes);
    let why: String = why.unwrap_or_else(|| "close without code".into()).chars().take(80).collect();
    *st.close_codes.borrow_mut().entry(why).or_insert(0) += 1;
    drop(ws);
    End::ServerClosed
}

/// Drops the TCP connection without a close frame: RST (zero linger) or FIN.
fn abrupt(st: &State, ws: Ws) {
    if st.rng.borrow_mut().unit() < 0.5 {
        let _ = ws.get_ref().set_zero_linger();
    }
    drop(ws);
}

/// A close frame, then waits briefly for the relay's.
async fn graceful(mut ws: Ws) {
    let _ = timeout(Duration::from_secs(2), async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Handles a text frame from the relay: events, `ok`/`error` replies to
/// `sub` (negative ref: the thread) and `pub` (positive ref: the event).
fn on_text(st: &State, sid: u64, text: &str) {
    if text.starts_with(r#"{"op":"ev""#) {
        for_each_event_id(text, |seq| st.received(sid, seq));
        return;
    }
    let v: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            st.note_error(format!("unreadable frame: {text}"));
            return;
        }
    };
    let r = v["ref"].as_i64();
    match (v["op"].as_str(), r) {
        (Some("ok"), Some(r)) if r < 0 => st.subscribed(sid, r.unsigned_abs()),
        (Some("ok"), Some(r)) if r > 0 => {
            st.settle(r as u64, Fate::Accepted);
            if let Some(s) = st.socks.borrow_mut().get_mut(&sid) {
                s.pub_pending = None;
            }
        }
        (Some("error"), Some(r)) => {
            st.note_error(format!("relay error frame: {}: {}", v["code"], v["message"]));
            if r < 0 {
                inc(&st.c.sub_refused);
            } else {
                st.settle(r as u64, Fate::Refused);
                inc(&st.c.pub_refused);
                if let Some(s) = st.socks.borrow_mut().get_mut(&sid) {
                    s.pub_pending = None;
                }
            }
        }
        (Some("unsub"), _) => {
            inc(&st.c.unsubs);
            st.note_error(format!("relay revoked a subscription: {text}"));
        }
        (Some("pong"), _) => {}
        _ => st.note_error(format!("unexpected frame: {}", text.chars().take(100).collect::<String>())),
    }
}

/// A `pub` frame from socket `sid` to one of its threads, with its
/// expectations recorded (every other socket subscribed to the thread);
/// None when it has no thread yet or its previous `pub` is unanswered
/// (one at a time, so that a refusal is known before the next one).
fn make_pub(st: &State, sid: u64) -> Option<String> {
    let thread = {
        let socks = st.socks.borrow();
        let s = socks.get(&sid)?;
        if s.pub_pending.is_some() || s.threads.is_empty() {
            return None;
        }
        s.threads[st.rng.borrow_mut().below(s.threads.len() as u64) as usize]
    };
    let source = PUB_SOURCE_BASE + sid;
    let seq = st.new_event(source);
    let to: Vec<u64> = st
        .by_thread
        .borrow()
        .get(&thread)
        .map(|v| v.iter().copied().filter(|&x| x != sid).collect())
        .unwrap_or_default();
    st.expect(seq, source, &to);
    if let Some(s) = st.socks.borrow_mut().get_mut(&sid) {
        s.pub_pending = Some(seq);
    }
    inc(&st.c.pubs);
    Some(format!(r#"{{"op":"pub","thread":{thread},"e":{},"ref":{seq}}}"#, st.ctx.envelope(seq, thread)))
}

/// One publisher connection: signed pushes at `push_rate / publishers`,
/// one at a time (so its events reach every socket in order), until `stop`.
async fn publisher(st: Rc<State>, p: u64, stop: watch::Receiver<bool>) {
    let period = Duration::from_secs_f64(st.opts.publishers as f64 / st.opts.push_rate);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = Conn::new(st.ctx.addr);
    while !*stop.borrow() {
        tick.tick().await;
        let (to, thread, th) = {
            let mut r = st.rng.borrow_mut();
            let th = 1 + r.below(st.opts.threads);
            let k = r.unit();
            let n = 1 + r.below(4);
            let mut to: Vec<u64> = (0..n).map(|_| 1 + r.below(st.opts.chat_sockets.max(1))).collect();
            // now and then a churn user that is online right now
            if r.unit() < 0.3 {
                let churn: Vec<u64> =
                    st.socks.borrow().values().filter(|s| s.role == Role::Churn).map(|s| s.user).collect();
                if !churn.is_empty() {
                    to.push(churn[r.below(churn.len() as u64) as usize]);
                }
            }
            to.sort_unstable();
            to.dedup();
            // 40 % to users, 45 % to a thread, 15 % both
            if k < 0.40 {
                (to, None, th)
            } else if k < 0.85 {
                (Vec::new(), Some(th), th)
            } else {
                (to, Some(th), th)
            }
        };
        let seq = st.new_event(p);
        let sids = st.push_recipients(&to, thread);
        st.expect(seq, p, &sids);
        inc(&st.c.pushes);
        let req = st.ctx.relay_push(&to, thread, &st.ctx.envelope(seq, th));
        match timeout(Duration::from_secs(30), conn.send(&req)).await {
            Ok(Ok(body)) => {
                st.settle(seq, Fate::Accepted);
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if let Some(n) = v["results"][0]["sockets"].as_u64() {
                    // the relay may count more (sockets we do not count yet),
                    // never fewer than were ready before we sent it
                    let still: u64 = {
                        let socks = st.socks.borrow();
                        sids.iter().filter(|s| socks.contains_key(s)).count() as u64
                    };
                    if n < still {
                        inc(&st.c.relay_undercount);
                        st.note_error(format!(
                            "push b{seq}: relay counted {n} sockets, {still} were ready and are still open"
                        ));
                    }
                }
            }
            Ok(Err(HttpError::Status { status, body })) => {
                st.settle(seq, Fate::Refused);
                inc(&st.c.push_refused);
                st.note_error(format!("push refused: {status} {body}"));
            }
            Ok(Err(e)) => {
                st.settle(seq, Fate::Unknown);
                inc(&st.c.push_unknown);
                st.note_error(format!("push: {e}"));
            }
            Err(_) => {
                st.settle(seq, Fate::Unknown);
                inc(&st.c.push_unknown);
                st.note_error("push: no reply within 30 s".into());
                conn = Conn::new(st.ctx.addr);
            }
        }
    }
}

/// Asks random chat sockets (subscribed, no `pub` unanswered) to `pub`, at `pub_rate` in all.
async fn pub_scheduler(st: Rc<State>, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / st.opts.pub_rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tick.tick().await;
        let socks = st.socks.borrow();
        let ready: Vec<&Sock> = socks
            .values()
            .filter(|s| s.role == Role::Chat && !s.threads.is_empty() && s.pub_pending.is_none())
            .collect();
        if ready.is_empty() {
            continue;
        }
        let s = ready[st.rng.borrow_mut().below(ready.len() as u64) as usize];
        if let Some(tx) = &s.cmd {
            let _ = tx.send(Cmd::Pub);
        }
    }
}

/// Every `kill_every` seconds, drops a random `kill_fraction` of the chat sockets.
async fn killer(st: Rc<State>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_secs_f64(st.opts.kill_every);
    loop {
        tokio::select! {
            _ = sleep(period) => {}
            _ = stop.changed() => return,
        }
        let socks = st.socks.borrow();
        let mut chat: Vec<&Sock> = socks.values().filter(|s| s.role == Role::Chat).collect();
        let k = ((chat.len() as f64) * st.opts.kill_fraction).ceil() as usize;
        let mut r = st.rng.borrow_mut();
        for _ in 0..k.min(chat.len()) {
            let s = chat.swap_remove(r.below(chat.len() as u64) as usize);
            if let Some(tx) = &s.cmd {
                let _ = tx.send(Cmd::Kill);
            }
        }
    }
}

/// Prints the human summary on stdout.
fn print_summary(s: &Summary) {
    let c = |k: &str| s.counts.get(k).copied().unwrap_or(0);
    println!("soak summary: {}", if s.pass { "PASS" } else { "FAIL" });
    println!("  load          {:.0} s of {} min", s.load_secs, s.minutes);
    println!(
        "  sockets       {} connects ({} churn cycles, {} kills), {} failed; {} closed by the relay itself",
        c("socket_connects"),
        c("churn_cycles"),
        c("kills"),
        c("connect_failures"),
        c("server_closes")
    );
    println!(
        "  events        {} pushes ({} refused, {} unknown), {} pubs ({} refused, {} unknown)",
        c("pushes_sent"),
        c("pushes_refused"),
        c("pushes_unknown"),
        c("pubs_sent"),
        c("pubs_refused"),
        c("pubs_unknown")
    );
    println!(
        "  deliveries    {} expected, {} received, {} checked, {} lost, {} reordered, {} duplicated; {} excluded (socket closed by us), {} extra (routed before we counted the socket)",
        c("deliveries_expected"),
        c("deliveries_received"),
        c("deliveries_checked"),
        c("deliveries_lost"),
        c("reordered"),
        c("duplicates"),
        c("excluded_closed_by_us"),
        c("extra_deliveries")
    );
    println!(
        "  relay RSS     start {:.1} MiB, after warm-up {:.1} MiB, end {:.1} MiB, max {:.1} MiB",
        s.rss_start_kib as f64 / 1024.0,
        s.rss_warm_kib as f64 / 1024.0,
        s.rss_end_kib as f64 / 1024.0,
        s.rss_max_kib as f64 / 1024.0
    );
    match s.rss_slope_kib_per_min {
        Some(v) => println!("  RSS slope     {v:+.1} KiB/min after the warm-up (bound {:.0})", s.max_slope_kib_per_min),
        None => println!("  RSS slope     (too few samples)"),
    }
    println!("  relay CPU     {:.1} s", s.relay_cpu_secs);
    println!(
        "  relay health  {}; sockets counted after every client closed: {}",
        s.healthz.as_deref().unwrap_or("no answer"),
        s.relay_connections_after_close.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
    );
    for (k, v) in &s.server_close_codes {
        println!("  relay closed  {v} × {k}");
    }
    for (k, v) in &s.errors {
        println!("  error         {v} × {k}");
    }
    for l in &s.first_losses {
        println!("  loss          {l}");
    }
    for p in &s.problems {
        println!("  PROBLEM       {p}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_noise() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 100.0 + 3.0 * i as f64)).collect();
        assert!((slope(&line).unwrap() - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, if i % 2 == 0 { 10.0 } else { 12.0 })).collect();
        assert!(slope(&flat).unwrap().abs() < 0.5);
        assert_eq!(slope(&line[..2]), None);
    }

    fn state() -> State {
        let secret = bm_proto::SiteSecret::generate();
        State {
            ctx: Rc::new(Ctx::new(Kind::Relay, secret).unwrap()),
            opts: <Opts as clap::FromArgMatches>::from_arg_matches(
                &<Opts as clap::Args>::augment_args(clap::Command::new("t")).get_matches_from(["t"]),
            )
            .unwrap(),
            t0: Instant::now(),
            rng: RefCell::new(Rng(1)),
            socks: RefCell::default(),
            by_user: RefCell::default(),
            by_thread: RefCell::default(),
            events: RefCell::default(),
            next_sid: Cell::new(0),
            c: Counters::default(),
            errors: RefCell::default(),
            close_codes: RefCell::default(),
            first_losses: RefCell::default(),
        }
    }

    #[test]
    fn a_gap_before_a_later_event_of_the_same_source_is_a_loss_and_a_late_arrival_a_reorder() {
        let st = state();
        let a = st.register(1, Role::Chat, None);
        st.subscribed(a, 5);
        let e1 = st.new_event(0);
        let e2 = st.new_event(0);
        let other = st.new_event(1);
        for e in [e1, e2] {
            let r = st.push_recipients(&[], Some(5));
            assert_eq!(r, vec![a]);
            st.expect(e, 0, &r);
        }
        st.expect(other, 1, &[a]);
        st.received(a, other); // another source: no gap in source 0
        assert_eq!((st.c.checked.get(), st.c.lost.get()), (1, 0));
        st.received(a, e2);
        assert_eq!((st.c.checked.get(), st.c.lost.get()), (2, 1));
        st.received(a, e1);
        assert_eq!((st.c.lost.get(), st.c.reordered.get()), (0, 1));
        st.received(a, e1);
        assert_eq!(st.c.duplicates.get(), 1);
    }

    #[test]
    fn refused_events_are_not_losses_and_closing_excludes_what_was_in_flight() {
        let st = state();
        let a = st.register(1, Role::Chat, None);
        let e1 = st.new_event(0);
        let e2 = st.new_event(0);
        let e3 = st.new_event(0);
        for e in [e1, e2, e3] {
            st.expect(e, 0, &st.push_recipients(&[1], None));
        }
        st.settle(e1, Fate::Refused);
        st.received(a, e2);
        assert_eq!((st.c.lost.get(), st.c.excluded_unknown.get(), st.c.checked.get()), (0, 1, 1));
        assert_eq!(st.outstanding(), 1);
        st.unregister(a);
        assert_eq!(st.c.excluded_closed.get(), 1);
        assert!(st.push_recipients(&[1], None).is_empty());
    }

    #[test]
    fn events_to_a_socket_not_yet_counted_are_extra() {
        let st = state();
        let e1 = st.new_event(0);
        st.expect(e1, 0, &st.push_recipients(&[1], None));
        let a = st.register(1, Role::Chat, None);
        st.received(a, e1);
        assert_eq!((st.c.extra.get(), st.c.lost.get(), st.c.checked.get()), (1, 0, 0));
    }
}
