//! The four scenarios of the comparison, each against one running server:
//! idle memory, broadcast, chat (open-loop Poisson at rising rates), churn.
//! Every loop here is bounded in count and in time.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

use crate::adapters::Ctx;
use crate::clients::{self, percentiles, Mode, Percentiles, Shared, Transport};
use crate::http;
use crate::procstat;

/// Sizes and durations of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Connection counts at which idle memory is read.
    pub idle_steps: Vec<u64>,
    /// Clients of the broadcast scenario.
    pub broadcast_clients: u64,
    /// Broadcast rounds.
    pub broadcast_rounds: u32,
    /// Chat users (one connection each).
    pub chat_users: u64,
    /// Chat threads (2–10 members each).
    pub chat_threads: u64,
    /// Offered delivery rates (deliveries per second), rising.
    pub chat_rates: Vec<f64>,
    /// Seconds per chat rate step.
    pub chat_step_secs: f64,
    /// The rate at which CPU per delivery is compared.
    pub chat_fixed_rate: f64,
    /// Publisher connections (keep-alive) for chat.
    pub chat_publishers: usize,
    /// Churn duration, seconds.
    pub churn_secs: f64,
    /// Concurrent connect+auth+disconnect loops.
    pub churn_concurrency: u64,
    /// Source addresses 127.0.0.2 … used by clients.
    pub sources: u8,
    /// Cluster scenario: users (one socket each, half on each node).
    #[serde(default)]
    pub cluster_users: u64,
    /// Cluster scenario: threads per variant.
    #[serde(default)]
    pub cluster_threads: u64,
    /// Cluster scenario: offered deliveries per second (one rate: both
    /// Centrifugo clusters, nodes and broker on one core, must hold it).
    #[serde(default)]
    pub cluster_rate: f64,
    /// Cluster scenario: seconds per variant and round.
    #[serde(default)]
    pub cluster_secs: f64,
    /// Cluster scenario: rounds, each running both variants in turn.
    #[serde(default)]
    pub cluster_rounds: u32,
    /// Cluster scenario: keep-alive publishers per node.
    #[serde(default)]
    pub cluster_publishers: usize,
}

impl Plan {
    /// The full plan of issue 7.
    pub fn full() -> Plan {
        Plan {
            idle_steps: vec![5_000, 10_000, 19_000],
            broadcast_clients: 10_000,
            broadcast_rounds: 20,
            chat_users: 10_000,
            chat_threads: 5_000,
            chat_rates: vec![5_000.0, 10_000.0, 20_000.0, 35_000.0, 50_000.0, 75_000.0, 100_000.0, 150_000.0],
            chat_step_secs: 5.0,
            chat_fixed_rate: 10_000.0,
            chat_publishers: 64,
            churn_secs: 8.0,
            churn_concurrency: 128,
            sources: 16,
            cluster_users: 10_000,
            cluster_threads: 5_000,
            cluster_rate: 5_000.0,
            cluster_secs: 5.0,
            cluster_rounds: 3,
            cluster_publishers: 16,
        }
    }

    /// The smoke plan (`QUICK=1`): same code paths, small sizes.
    pub fn quick() -> Plan {
        Plan {
            idle_steps: vec![1_000, 2_000],
            broadcast_clients: 2_000,
            broadcast_rounds: 5,
            chat_users: 2_000,
            chat_threads: 1_000,
            chat_rates: vec![2_000.0, 5_000.0],
            chat_step_secs: 2.0,
            chat_fixed_rate: 2_000.0,
            chat_publishers: 16,
            churn_secs: 2.0,
            churn_concurrency: 32,
            sources: 16,
            cluster_users: 2_000,
            cluster_threads: 1_000,
            cluster_rate: 2_000.0,
            cluster_secs: 3.0,
            cluster_rounds: 1,
            cluster_publishers: 4,
        }
    }
}

/// Idle memory at one connection count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleRow {
    /// Connections held.
    pub connections: u64,
    /// Connections that failed to open.
    pub failed: u64,
    /// Server RSS (whole process tree), bytes.
    pub rss_bytes: u64,
    /// Server RSS before any client, bytes.
    pub rss_base_bytes: u64,
    /// (RSS − base) / connections.
    pub rss_per_conn: f64,
    /// Kernel TCP memory (both ends of every loopback connection), bytes.
    pub sock_mem_bytes: u64,
    /// (sockstat mem − before) / connections.
    pub sock_mem_per_conn: f64,
    /// Load-generator processes that held the clients.
    pub loadgen_processes: u32,
    /// The last connection failure, if any.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Broadcast result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Broadcast {
    /// Connected clients (recipients).
    pub clients: u64,
    /// Rounds published.
    pub rounds: u32,
    /// Publish requests per round (Nchan takes about 1 KiB of channel ids per request).
    pub requests_per_round: usize,
    /// Deliveries expected.
    pub expected: u64,
    /// Deliveries seen.
    pub delivered: u64,
    /// Deliveries per second while delivering (publish → last frame of each round).
    pub deliveries_per_sec: f64,
    /// Server CPU-seconds over the rounds.
    pub cpu_s: f64,
    /// Server CPU-seconds per million deliveries.
    pub cpu_s_per_million: f64,
    /// Latency publish → frame.
    pub latency: Percentiles,
    /// Failed publish calls.
    pub publish_errors: u64,
    /// Share of one core the load generator used over the rounds (near 1.0: it, not the server, set the pace).
    #[serde(default)]
    pub loadgen_busy: f64,
    /// Clients whose connection the server closed during the rounds.
    #[serde(default)]
    pub lost_clients: u64,
}

/// One chat rate step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatStep {
    /// Offered deliveries per second.
    pub target_rate: f64,
    /// Pushes scheduled.
    pub pushes: u64,
    /// Deliveries expected from them.
    pub expected: u64,
    /// Deliveries seen (within the step and its drain time).
    pub delivered: u64,
    /// Delivered per second of the step.
    pub achieved_rate: f64,
    /// Latency scheduled publish → frame.
    pub latency: Percentiles,
    /// Server CPU-seconds during the step (and drain).
    pub cpu_s: f64,
    /// Server CPU microseconds per delivery.
    pub cpu_us_per_delivery: f64,
    /// Failed publish calls.
    pub publish_errors: u64,
    /// p99 < 50 ms, ≥ 99.9 % delivered, no publish error.
    pub held: bool,
    /// Share of one core the load generator used during the step.
    #[serde(default)]
    pub loadgen_busy: f64,
}

/// Chat result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Chat {
    /// Users (one connection each).
    pub users: u64,
    /// Threads.
    pub threads: u64,
    /// Mean members per thread.
    pub mean_members: f64,
    /// Steps run, rising.
    pub steps: Vec<ChatStep>,
    /// Highest offered rate held.
    pub max_held_rate: f64,
    /// The common rate CPU per delivery is compared at.
    pub fixed_rate: f64,
    /// Server CPU µs per delivery at `fixed_rate` (if that step ran).
    pub cpu_us_per_delivery_at_fixed: Option<f64>,
}

/// Churn result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Churn {
    /// Seconds.
    pub secs: f64,
    /// Concurrent loops.
    pub concurrency: u64,
    /// Completed connect + auth + disconnect cycles.
    pub cycles: u64,
    /// Cycles per second.
    pub per_sec: f64,
    /// Failed cycles.
    pub failed: u64,
    /// Server CPU-seconds.
    pub cpu_s: f64,
    /// Server CPU milliseconds per cycle.
    pub cpu_ms_per_cycle: f64,
    /// Share of one core the load generator used.
    #[serde(default)]
    pub loadgen_busy: f64,
}

pub fn progress(label: String, shared: Rc<Shared>, extra: Rc<Cell<u64>>) -> JoinHandle<()> {
    tokio::task::spawn_local(async move {
        loop {
            sleep(Duration::from_secs(1)).await;
            eprintln!(
                "  [{label}] ready {} failed {} lost {} delivered {} queued {}",
                shared.ready.get(),
                shared.failed.get(),
                shared.lost.get(),
                shared.delivered.get(),
                extra.get()
            );
        }
    })
}

/// Opens clients for users `from..=to`, at most 256 handshakes at a time;
/// returns when all are ready or failed (or after 120 s). User `u`
/// connects to `ctxs[u % ctxs.len()]` (one server, or the nodes of a cluster).
/// `transport`: WebSockets (every server), or bm-relay's streams.
pub async fn connect_range(
    transport: Transport,
    ctxs: &[Rc<Ctx>],
    shared: &Rc<Shared>,
    from: u64,
    to: u64,
    sources: u8,
    stop: &watch::Receiver<bool>,
) {
    let launched_before = shared.ready.get() + shared.failed.get();
    let mut launched = 0u64;
    for u in from..=to {
        while launched - (shared.ready.get() + shared.failed.get() - launched_before) >= 256 {
            sleep(Duration::from_millis(2)).await;
        }
        let (c, s, st) = (ctxs[(u % ctxs.len() as u64) as usize].clone(), shared.clone(), stop.clone());
        let src = clients::source_addr(u, sources);
        match transport {
            Transport::WebSocket => tokio::task::spawn_local(clients::run(c, s, u, src, Mode::Hold, st)),
            Transport::Stream => tokio::task::spawn_local(clients::run_stream(c, s, u, src, st)),
        };
        launched += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.ready.get() + shared.failed.get() - launched_before < launched && Instant::now() < deadline {
        sleep(Duration::from_millis(20)).await;
    }
}

/// Idle memory: grow the connection count step by step, read RSS and sockstat.
pub async fn idle(ctx: Rc<Ctx>, pid: u32, plan: &Plan) -> Vec<IdleRow> {
    let shared = Shared::new();
    let (stop_tx, stop) = watch::channel(false);
    let tick = progress(format!("{} idle", ctx.kind.name()), shared.clone(), Rc::new(Cell::new(0)));
    sleep(Duration::from_millis(500)).await;
    let base = procstat::rss_bytes(pid);
    let sock0 = procstat::sockstat();
    let mut rows = Vec::new();
    let mut have = 0u64;
    for &n in &plan.idle_steps {
        connect_range(Transport::WebSocket, std::slice::from_ref(&ctx), &shared, have + 1, n, plan.sources, &stop)
            .await;
        have = n;
        sleep(Duration::from_secs(2)).await;
        let rss = procstat::rss_bytes(pid);
        let sock = procstat::sockstat();
        let held = shared.ready.get() - shared.lost.get();
        rows.push(IdleRow {
            connections: held,
            failed: shared.failed.get(),
            rss_bytes: rss,
            rss_base_bytes: base,
            rss_per_conn: rss.saturating_sub(base) as f64 / held.max(1) as f64,
            sock_mem_bytes: sock.mem_bytes,
            sock_mem_per_conn: sock.mem_bytes.saturating_sub(sock0.mem_bytes) as f64 / held.max(1) as f64,
            loadgen_processes: 1,
            last_error: shared.last_error.borrow().clone(),
        });
        if let Some(e) = shared.last_error.borrow().as_ref() {
            eprintln!("  [{} idle] last connection error: {e}", ctx.kind.name());
        }
        eprintln!(
            "  [{} idle] {held} connections: server RSS {:.1} MiB, {:.0} B/conn; kernel TCP mem {:.1} MiB",
            ctx.kind.name(),
            rss as f64 / 1048576.0,
            rss.saturating_sub(base) as f64 / held.max(1) as f64,
            sock.mem_bytes as f64 / 1048576.0
        );
    }
    let _ = stop_tx.send(true);
    tick.abort();
    sleep(Duration::from_millis(300)).await;
    rows
}

/// Broadcast: one event to every client, `rounds` times, one after the other.
pub async fn broadcast(ctx: Rc<Ctx>, pid: u32, plan: &Plan) -> Broadcast {
    let shared = Shared::new();
    let (stop_tx, stop) = watch::channel(false);
    let tick = progress(format!("{} broadcast", ctx.kind.name()), shared.clone(), Rc::new(Cell::new(0)));
    let n = plan.broadcast_clients;
    connect_range(Transport::WebSocket, std::slice::from_ref(&ctx), &shared, 1, n, plan.sources, &stop).await;
    let b = broadcast_rounds(&ctx, pid, &shared, n, plan.broadcast_rounds).await;
    let _ = stop_tx.send(true);
    tick.abort();
    if let Some(e) = shared.last_error.borrow().as_ref() {
        eprintln!("  [{} broadcast] last error: {e}", ctx.kind.name());
    }
    sleep(Duration::from_millis(300)).await;
    b
}

/// The rounds of a broadcast to users `1..=n`, whose clients are connected
/// (and counted in `shared`) already: one event to all of them per round,
/// each round once the previous one was delivered (or after 10 s).
pub async fn broadcast_rounds(ctx: &Ctx, pid: u32, shared: &Shared, n: u64, rounds: u32) -> Broadcast {
    let clients = shared.ready.get();
    let users: Vec<u64> = (1..=n).collect();
    let mut conn = http::Conn::new(ctx.addr);
    let mut errors = 0u64;
    let mut busy_us = 0u64;
    let mut requests_per_round = 0;
    sleep(Duration::from_millis(500)).await;
    let cpu0 = procstat::cpu_seconds(pid);
    let me = std::process::id();
    let (lg0, wall0) = (procstat::own_cpu_seconds(me), Instant::now());
    for round in 0..rounds {
        let seq = u64::from(round) + 1;
        let env = ctx.envelope(seq, 1);
        let reqs = ctx.publish(&users, &env);
        requests_per_round = reqs.len();
        let at = shared.now_us();
        shared.mark_sent(seq, at, 0);
        for r in &reqs {
            match conn.send(r).await {
                Ok(body) => {
                    if let Some(e) = ctx.reply_error(&body) {
                        errors += 1;
                        *shared.last_error.borrow_mut() = Some(e);
                    }
                }
                Err(e) => {
                    errors += 1;
                    *shared.last_error.borrow_mut() = Some(e.to_string());
                }
            }
        }
        let want = clients * seq;
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.delivered.get() < want && Instant::now() < deadline {
            sleep(Duration::from_millis(1)).await;
        }
        busy_us += shared.last_delivery_us.get().saturating_sub(at);
        sleep(Duration::from_millis(100)).await;
    }
    let cpu = procstat::cpu_seconds(pid) - cpu0;
    let loadgen_busy = (procstat::own_cpu_seconds(me) - lg0) / wall0.elapsed().as_secs_f64();
    let delivered = shared.delivered.get();
    let latency = percentiles(&mut shared.lat.borrow_mut()[0]);
    Broadcast {
        clients,
        rounds,
        requests_per_round,
        expected: clients * u64::from(rounds),
        delivered,
        deliveries_per_sec: delivered as f64 / (busy_us.max(1) as f64 / 1e6),
        cpu_s: cpu,
        cpu_s_per_million: cpu / (delivered.max(1) as f64) * 1e6,
        latency,
        publish_errors: errors,
        loadgen_busy,
        lost_clients: shared.lost.get(),
    }
}

/// A small deterministic generator (xorshift64*): the same threads every run.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `threads` threads of 2–10 distinct members drawn from users 1..=users.
/// The gap before the next push of a Poisson process at `rate` per second
/// (exponentially distributed, mean 1/rate): pushes come at the rate on
/// average but bunch up and thin out the way independent senders do.
pub fn exponential_gap(rng: &mut Rng, rate: f64) -> f64 {
    -(1.0 - rng.unit()).ln() / rate
}

pub fn make_threads(users: u64, threads: u64, rng: &mut Rng) -> Vec<Vec<u64>> {
    (0..threads)
        .map(|_| {
            let size = 2 + rng.below(9);
            let mut m: Vec<u64> = Vec::with_capacity(size as usize);
            while (m.len() as u64) < size.min(users) {
                let u = 1 + rng.below(users);
                if !m.contains(&u) {
                    m.push(u);
                }
            }
            m
        })
        .collect()
}

struct Job {
    seq: u64,
    thread: usize,
}

/// Chat: open-loop Poisson pushes to random threads at rising rates.
pub async fn chat(ctx: Rc<Ctx>, pid: u32, plan: &Plan) -> Chat {
    let shared = Shared::new();
    let (stop_tx, stop) = watch::channel(false);
    let queued = Rc::new(Cell::new(0u64));
    let tick = progress(format!("{} chat", ctx.kind.name()), shared.clone(), queued.clone());
    connect_range(Transport::WebSocket, std::slice::from_ref(&ctx), &shared, 1, plan.chat_users, plan.sources, &stop)
        .await;
    let mut rng = Rng::new(0x5eed_cafe);
    let threads = Rc::new(make_threads(plan.chat_users, plan.chat_threads, &mut rng));
    let mean = threads.iter().map(|t| t.len() as f64).sum::<f64>() / threads.len().max(1) as f64;

    // publisher pool
    let queue: Rc<RefCell<VecDeque<Job>>> = Rc::new(RefCell::new(VecDeque::new()));
    let notify = Rc::new(Notify::new());
    let errors = Rc::new(Cell::new(0u64));
    let mut workers = Vec::new();
    for _ in 0..plan.chat_publishers {
        let (q, n, c, th, err, sh, qd) = (
            queue.clone(),
            notify.clone(),
            ctx.clone(),
            threads.clone(),
            errors.clone(),
            shared.clone(),
            queued.clone(),
        );
        workers.push(tokio::task::spawn_local(async move {
            let mut conn = http::Conn::new(c.addr);
            loop {
                let job = q.borrow_mut().pop_front();
                let Some(job) = job else {
                    n.notified().await;
                    continue;
                };
                qd.set(q.borrow().len() as u64);
                let env = c.envelope(job.seq, job.thread as u64 + 1);
                for r in c.publish(&th[job.thread], &env) {
                    match conn.send(&r).await {
                        Ok(body) => {
                            if let Some(e) = c.reply_error(&body) {
                                err.set(err.get() + 1);
                                *sh.last_error.borrow_mut() = Some(e);
                            }
                        }
                        Err(e) => {
                            err.set(err.get() + 1);
                            *sh.last_error.borrow_mut() = Some(e.to_string());
                        }
                    }
                }
            }
        }));
    }

    let mut steps = Vec::new();
    let mut seq = 0u64;
    let mut misses = 0;
    sleep(Duration::from_millis(1000)).await;
    // Warm-up, not counted: opens the publishers' keep-alive connections
    // and lets the server settle after the connection storm.
    let warm = plan.chat_rates.first().copied().unwrap_or(1000.0) / mean;
    let warm_bucket = plan.chat_rates.len() as u32;
    let warm_end = Instant::now() + Duration::from_secs_f64(plan.chat_step_secs.min(3.0));
    while Instant::now() < warm_end {
        seq += 1;
        let thread = rng.below(threads.len() as u64) as usize;
        shared.mark_sent(seq, shared.now_us(), warm_bucket);
        queue.borrow_mut().push_back(Job { seq, thread });
        notify.notify_one();
        sleep(Duration::from_secs_f64(1.0 / warm.max(1.0))).await;
    }
    sleep(Duration::from_millis(500)).await;
    for (b, &rate) in plan.chat_rates.iter().enumerate() {
        let pushes_per_sec = rate / mean;
        let errors0 = errors.get();
        let cpu0 = procstat::cpu_seconds(pid);
        let lg0 = procstat::own_cpu_seconds(std::process::id());
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(plan.chat_step_secs);
        let mut next = start;
        let mut pushes = 0u64;
        let mut expected = 0u64;
        eprintln!("  [{} chat] offering {rate:.0} deliveries/s ({pushes_per_sec:.0} pushes/s)", ctx.kind.name());
        while next < end {
            let now = Instant::now();
            if next > now {
                sleep_until(next).await;
            }
            // enqueue every push due by now (the timer wakes at ms granularity)
            let now = Instant::now();
            while next <= now && next < end {
                seq += 1;
                let thread = rng.below(threads.len() as u64) as usize;
                let at_us = next.duration_since(shared.t0).as_micros() as u64;
                shared.mark_sent(seq, at_us, b as u32);
                expected += threads[thread].len() as u64;
                pushes += 1;
                queue.borrow_mut().push_back(Job { seq, thread });
                notify.notify_one();
                next += Duration::from_secs_f64(exponential_gap(&mut rng, pushes_per_sec));
            }
            queued.set(queue.borrow().len() as u64);
        }
        // drain: wait for the step's deliveries (bounded)
        let deadline = Instant::now() + Duration::from_secs(3);
        while shared.delivered_in.borrow().get(b).copied().unwrap_or(0) < expected && Instant::now() < deadline {
            sleep(Duration::from_millis(5)).await;
        }
        let cpu = procstat::cpu_seconds(pid) - cpu0;
        let loadgen_busy = (procstat::own_cpu_seconds(std::process::id()) - lg0) / start.elapsed().as_secs_f64();
        let delivered = shared.delivered_in.borrow().get(b).copied().unwrap_or(0);
        let latency = match shared.lat.borrow_mut().get_mut(b) {
            Some(v) => percentiles(v),
            None => Percentiles::default(),
        };
        let errs = errors.get() - errors0;
        let held = latency.p99_ms < 50.0 && delivered as f64 >= expected as f64 * 0.999 && errs == 0 && expected > 0;
        let step = ChatStep {
            target_rate: rate,
            pushes,
            expected,
            delivered,
            achieved_rate: delivered as f64 / plan.chat_step_secs,
            latency,
            cpu_s: cpu,
            cpu_us_per_delivery: cpu * 1e6 / delivered.max(1) as f64,
            publish_errors: errs,
            held,
            loadgen_busy,
        };
        eprintln!(
            "  [{} chat] {rate:.0}/s: delivered {delivered}/{expected}, p50 {:.2} ms p99 {:.2} ms, {:.2} µs CPU/delivery, {} errors, load generator {:.0} % busy{}",
            ctx.kind.name(),
            step.latency.p50_ms,
            step.latency.p99_ms,
            step.cpu_us_per_delivery,
            errs,
            loadgen_busy * 100.0,
            if held { "" } else { " — not held" }
        );
        let hopeless = step.latency.p99_ms > 1000.0 || (delivered as f64) < expected as f64 * 0.99;
        steps.push(step);
        // clear what is left queued before the next step
        queue.borrow_mut().clear();
        // One step missed on a shared machine may be noise: go on once,
        // unless the server is plainly overloaded; stop after two misses.
        misses = if held { 0 } else { misses + 1 };
        if misses >= 2 || (!held && hopeless) {
            break;
        }
        if !held {
            sleep(Duration::from_secs(2)).await;
        }
    }
    for w in workers {
        w.abort();
    }
    let _ = stop_tx.send(true);
    tick.abort();
    if let Some(e) = shared.last_error.borrow().as_ref() {
        eprintln!("  [{} chat] last error: {e}", ctx.kind.name());
    }
    sleep(Duration::from_millis(300)).await;
    let max_held_rate = steps.iter().filter(|s| s.held).map(|s| s.target_rate).fold(0.0, f64::max);
    let at_fixed =
        steps.iter().find(|s| (s.target_rate - plan.chat_fixed_rate).abs() < 1.0).map(|s| s.cpu_us_per_delivery);
    Chat {
        users: plan.chat_users,
        threads: plan.chat_threads,
        mean_members: mean,
        steps,
        max_held_rate,
        fixed_rate: plan.chat_fixed_rate,
        cpu_us_per_delivery_at_fixed: at_fixed,
    }
}

/// Churn: `concurrency` loops of connect + authenticate + disconnect.
pub async fn churn(ctx: Rc<Ctx>, pid: u32, plan: &Plan) -> Churn {
    let shared = Shared::new();
    let (_stop_tx, stop) = watch::channel(false);
    let tick = progress(format!("{} churn", ctx.kind.name()), shared.clone(), Rc::new(Cell::new(0)));
    let cpu0 = procstat::cpu_seconds(pid);
    let lg0 = procstat::own_cpu_seconds(std::process::id());
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(plan.churn_secs);
    let counter = Rc::new(Cell::new(0u64));
    let mut loops = Vec::new();
    for w in 0..plan.churn_concurrency {
        let (c, s, st, k) = (ctx.clone(), shared.clone(), stop.clone(), counter.clone());
        let sources = plan.sources;
        loops.push(tokio::task::spawn_local(async move {
            while Instant::now() < end {
                let i = k.get();
                k.set(i + 1);
                let user = 1 + (i * 7919 + w) % 100_000;
                clients::run(c.clone(), s.clone(), user, clients::source_addr(i, sources), Mode::Leave, st.clone())
                    .await;
            }
        }));
    }
    for l in loops {
        let _ = l.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = procstat::cpu_seconds(pid) - cpu0;
    let loadgen_busy = (procstat::own_cpu_seconds(std::process::id()) - lg0) / secs;
    tick.abort();
    let cycles = shared.ready.get();
    if let Some(e) = shared.last_error.borrow().as_ref() {
        eprintln!("  [{} churn] last error: {e}", ctx.kind.name());
    }
    Churn {
        secs,
        concurrency: plan.churn_concurrency,
        cycles,
        per_sec: cycles as f64 / secs,
        failed: shared.failed.get(),
        cpu_s: cpu,
        cpu_ms_per_cycle: cpu * 1e3 / cycles.max(1) as f64,
        loadgen_busy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_have_two_to_ten_distinct_members() {
        let mut rng = Rng::new(1);
        let t = make_threads(10_000, 5_000, &mut rng);
        assert_eq!(t.len(), 5_000);
        for m in &t {
            assert!((2..=10).contains(&m.len()));
            let mut s = m.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), m.len());
            assert!(m.iter().all(|&u| (1..=10_000).contains(&u)));
        }
        let mean = t.iter().map(|m| m.len()).sum::<usize>() as f64 / 5_000.0;
        assert!((5.5..6.5).contains(&mean), "mean {mean}");
    }

    #[test]
    fn exponential_gaps_average_to_the_rate() {
        let mut rng = Rng::new(7);
        let n = 100_000;
        let gaps: Vec<f64> = (0..n).map(|_| exponential_gap(&mut rng, 1000.0)).collect();
        let mean = gaps.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.001).abs() < 0.00005, "mean gap {mean}");
        // Exponential, not merely the right mean (a constant 1 ms gap has it
        // too): P(gap > mean) = e^-1 and P(gap > 3·mean) = e^-3.
        let over = |x: f64| gaps.iter().filter(|&&g| g > x).count() as f64 / n as f64;
        assert!((over(0.001) - (-1f64).exp()).abs() < 0.01, "P(gap > mean) = {}", over(0.001));
        assert!((over(0.003) - (-3f64).exp()).abs() < 0.005, "P(gap > 3 mean) = {}", over(0.003));
    }
}
