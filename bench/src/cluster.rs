//! The cluster scenario (issue #13): two nodes of one server and their
//! broker, all pinned to the server core, under chat traffic whose members
//! sit on both nodes, against the same traffic with every thread on one node.
//!
//! | system | nodes | broker |
//! |---|---|---|
//! | bm-relay | two relays (`--nats`, `--node-name`) | one nats-server |
//! | Centrifugo on NATS | two Centrifugo v6 (`broker.type = nats`) | one nats-server |
//! | Centrifugo on Redis | two Centrifugo v6 (`engine.type = redis`, presence on) | one redis-server |
//!
//! User `u`'s socket sits on node `u % 2` (even users on node A, odd on B).
//! Two variants run on the same sockets, one after the other:
//!
//! - **cross-node**: threads of 2–10 members drawn from every user, so
//!   about half of a thread's members sit on the other node; pushes go to
//!   node A and B in turn (what a round-robin load balancer in front of
//!   the nodes does with WordPress's pushes);
//! - **same-node**: every thread's members sit on one node (threads
//!   alternate between A and B), and each push goes to that node.
//!
//! CPU is utime+stime of the three process trees together (both nodes and
//! the broker); broker traffic is read from nats-server's monitoring
//! endpoint (`/varz`) or Redis's `INFO stats` before and after each step.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};
use tokio::time::{sleep, sleep_until, Instant};

use crate::adapters::{Ctx, Kind};
use crate::clients::{percentiles, Percentiles, Shared};
use crate::http;
use crate::procstat;
use crate::scenarios::{connect_range, make_threads, progress, Plan, Rng};
use crate::server::{Env, Server};

/// A server run as two nodes and a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    /// Two bm-relays over one nats-server.
    Relay,
    /// Two Centrifugo v6 nodes, NATS broker.
    CentrifugoNats,
    /// Two Centrifugo v6 nodes, Redis engine (broker and presence).
    CentrifugoRedis,
}

impl System {
    /// Short name (files, JSON).
    pub fn name(self) -> &'static str {
        match self {
            System::Relay => "relay",
            System::CentrifugoNats => "centrifugo-nats",
            System::CentrifugoRedis => "centrifugo-redis",
        }
    }

    /// Human name for tables.
    pub fn label(self) -> &'static str {
        match self {
            System::Relay => "bm-relay × 2 + NATS",
            System::CentrifugoNats => "Centrifugo × 2 + NATS",
            System::CentrifugoRedis => "Centrifugo × 2 + Redis",
        }
    }

    /// The systems to measure for the servers asked for (bm-relay first).
    pub fn for_servers(servers: &[Kind]) -> Vec<System> {
        let mut out = Vec::new();
        if servers.contains(&Kind::Relay) {
            out.push(System::Relay);
        }
        if servers.contains(&Kind::Centrifugo) {
            out.push(System::CentrifugoNats);
            out.push(System::CentrifugoRedis);
        }
        out
    }

    fn kind(self) -> Kind {
        match self {
            System::Relay => Kind::Relay,
            System::CentrifugoNats | System::CentrifugoRedis => Kind::Centrifugo,
        }
    }

    fn broker_script(self) -> &'static str {
        match self {
            System::Relay | System::CentrifugoNats => "nats",
            System::CentrifugoRedis => "redis",
        }
    }
}

/// Broker counters (cumulative, or a difference of two readings).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct BrokerStats {
    /// NATS: messages published to the server (`in_msgs`); Redis: commands processed.
    pub in_msgs: u64,
    /// NATS: messages delivered to subscribers (`out_msgs`); Redis: 0 (not counted by `INFO stats`).
    pub out_msgs: u64,
    /// Bytes received by the broker.
    pub in_bytes: u64,
    /// Bytes sent by the broker.
    pub out_bytes: u64,
}

impl BrokerStats {
    fn minus(self, before: BrokerStats) -> BrokerStats {
        BrokerStats {
            in_msgs: self.in_msgs.saturating_sub(before.in_msgs),
            out_msgs: self.out_msgs.saturating_sub(before.out_msgs),
            in_bytes: self.in_bytes.saturating_sub(before.in_bytes),
            out_bytes: self.out_bytes.saturating_sub(before.out_bytes),
        }
    }
}

/// One variant (cross-node or same-node) of one system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variant {
    /// `cross-node` or `same-node`.
    pub name: String,
    /// Offered deliveries per second.
    pub target_rate: f64,
    /// Pushes scheduled.
    pub pushes: u64,
    /// Deliveries expected.
    pub expected: u64,
    /// Of those, to sockets on the node the push did not go to.
    pub expected_remote: u64,
    /// Deliveries seen (within the step and its drain time).
    pub delivered: u64,
    /// Delivered per second of the step.
    pub achieved_rate: f64,
    /// Latency scheduled publish → frame.
    pub latency: Percentiles,
    /// CPU-seconds of both nodes and the broker during the step (and drain).
    pub cpu_s: f64,
    /// The same, per process: node A, node B, broker.
    pub cpu_s_each: [f64; 3],
    /// All three processes' CPU microseconds per delivery.
    pub cpu_us_per_delivery: f64,
    /// Broker traffic during the step (and drain).
    pub broker: BrokerStats,
    /// Failed publish calls.
    pub publish_errors: u64,
    /// Share of one core the load generator used during the step.
    pub loadgen_busy: f64,
}

/// One system's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterSystem {
    /// Which system.
    pub system: System,
    /// Versions of the node server and the broker.
    pub version: String,
    /// Clients that could not connect.
    pub failed_clients: u64,
    /// Clients whose connection a node closed during the run.
    pub lost_clients: u64,
    /// The two variants (cross-node first).
    pub variants: Vec<Variant>,
    /// What could not run, and why.
    pub errors: Vec<String>,
}

/// The whole cluster scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRun {
    /// Users (one socket each), half on each node.
    pub users: u64,
    /// Threads per variant.
    pub threads: u64,
    /// Mean members per thread (cross-node variant).
    pub mean_members: f64,
    /// Offered deliveries per second.
    pub rate: f64,
    /// Seconds per variant and round.
    pub step_secs: f64,
    /// Rounds (each runs both variants, one after the other).
    #[serde(default)]
    pub rounds: u32,
    /// Per system, bm-relay first.
    pub systems: Vec<ClusterSystem>,
}

/// A loopback port nobody listens on right now (the kernel's pick).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// A free port whose successor is free too (a relay's admin listens on +1).
fn free_port_pair() -> Result<u16, String> {
    for _ in 0..50 {
        let p = free_port()?;
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return Ok(p);
        }
    }
    Err("no two consecutive free loopback ports".into())
}

/// The broker's counters now.
async fn broker_stats(system: System, port: u16) -> Result<BrokerStats, String> {
    match system.broker_script() {
        "nats" => {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let body = http::Conn::new(addr)
                .send(&http::Request::get(&addr, "/varz"))
                .await
                .map_err(|e| format!("nats-server /varz: {e}"))?;
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("nats-server /varz is not JSON: {e}"))?;
            let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            Ok(BrokerStats {
                in_msgs: n("in_msgs"),
                out_msgs: n("out_msgs"),
                in_bytes: n("in_bytes"),
                out_bytes: n("out_bytes"),
            })
        }
        _ => {
            // Redis's inline protocol; the reply is one bulk string.
            let mut s =
                tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("redis-server: {e}"))?;
            s.write_all(b"INFO stats\r\n").await.map_err(|e| format!("redis-server: {e}"))?;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
                    .await
                    .map_err(|_| "redis-server: INFO timed out".to_string())?
                    .map_err(|e| format!("redis-server: {e}"))?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some((head, rest)) = text.split_once("\r\n") {
                    let want: usize = head.trim_start_matches('$').parse().unwrap_or(0);
                    if rest.len() >= want {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&buf);
            let n = |k: &str| {
                text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(':')?.trim().parse::<u64>().ok()).unwrap_or(0)
            };
            Ok(BrokerStats {
                in_msgs: n("total_commands_processed"),
                out_msgs: 0,
                in_bytes: n("total_net_input_bytes"),
                out_bytes: n("total_net_output_bytes"),
            })
        }
    }
}

/// Waits until both relays' `/healthz` answer 200 `ok` (each has synced
/// presence with the other over NATS), at most 30 s.
async fn relays_healthy(admins: &[SocketAddr]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for a in admins {
        loop {
            let r = http::Conn::new(*a).send(&http::Request::get(a, "/healthz")).await;
            match r {
                Ok(body) if String::from_utf8_lossy(&body).contains(r#""ok""#) => break,
                _ if Instant::now() > deadline => {
                    return Err(format!("relay at {a} not healthy within 30 s: {r:?}"));
                }
                _ => sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

/// The node (0 = A, 1 = B) user `u`'s socket sits on.
pub fn node_of(u: u64) -> usize {
    (u % 2) as usize
}

/// Threads of the same-node variant: thread `i`'s members all sit on node
/// `i % 2`, drawn like [`make_threads`] from that node's `users / 2` users.
pub fn same_node_threads(users: u64, threads: u64, rng: &mut Rng) -> Vec<Vec<u64>> {
    make_threads(users / 2, threads, rng)
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            // node 0 holds the even users 2, 4, …; node 1 the odd 1, 3, …
            let node = (i % 2) as u64;
            m.into_iter().map(|x| 2 * x - node).collect()
        })
        .collect()
}

struct Job {
    seq: u64,
    thread: usize,
    same: bool,
}

/// Starts `system` (broker first, then the two nodes), runs both variants
/// and stops everything.
pub fn run_system(
    env: &Env,
    system: System,
    secret: &bm_proto::SiteSecret,
    plan: &Plan,
    rt: &tokio::runtime::Runtime,
    local: &tokio::task::LocalSet,
) -> ClusterSystem {
    let node_script = system.kind().name();
    let version = format!("{}; {}", env.script_version(node_script), env.script_version(system.broker_script()));
    let mut out =
        ClusterSystem { system, version, failed_clients: 0, lost_clients: 0, variants: Vec::new(), errors: Vec::new() };
    match start_and_measure(env, system, secret, plan, rt, local) {
        Ok((variants, failed, lost)) => {
            out.variants = variants;
            out.failed_clients = failed;
            out.lost_clients = lost;
        }
        Err(e) => {
            eprintln!("  [cluster {}] {e}", system.name());
            out.errors.push(e);
        }
    }
    out
}

fn start_and_measure(
    env: &Env,
    system: System,
    secret: &bm_proto::SiteSecret,
    plan: &Plan,
    rt: &tokio::runtime::Runtime,
    local: &tokio::task::LocalSet,
) -> Result<(Vec<Variant>, u64, u64), String> {
    let dir = env.run_dir.join("cluster").join(system.name());
    let log = |what: &str| env.run_dir.join(format!("cluster-{}-{what}.log", system.name()));
    let broker_port = free_port()?;
    let monitor_port = free_port()?;
    let script = system.broker_script();
    let mut servers: Vec<Server> = Vec::new();
    let broker = env.start_script(
        script,
        script,
        broker_port,
        &dir.join(script),
        &[("BENCH_MONITOR_PORT", monitor_port.to_string())],
        &log(script),
    )?;
    servers.push(broker);
    let url = format!("{script}://127.0.0.1:{broker_port}");
    let mut addrs = Vec::new();
    for (i, node) in ["a", "b"].iter().enumerate() {
        let port = free_port_pair()?;
        let extra: Vec<(&str, String)> = match system {
            System::Relay => vec![("BENCH_NATS", url.clone()), ("BENCH_NODE", format!("bench-{node}"))],
            _ => vec![("BENCH_BROKER", url.clone())],
        };
        let label = format!("{} node {}", system.kind().label(), node.to_uppercase());
        let srv = env.start_script(system.kind().name(), &label, port, &dir.join(node), &extra, &log(node))?;
        eprintln!("- cluster {}: node {} pid {} on 127.0.0.1:{port}", system.name(), i, srv.pid);
        servers.insert(i, srv);
        addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    // pids in the order of Variant::cpu_s_each: node A, node B, broker
    let pids: Vec<u32> = servers.iter().map(|s| s.pid).collect();
    eprintln!("- cluster {}: broker {script} pid {} on 127.0.0.1:{broker_port}", system.name(), pids[2]);
    let ctxs: Vec<Rc<Ctx>> = addrs
        .iter()
        .map(|a| Ctx::new(system.kind(), secret.clone()).map(|c| Rc::new(c.at(*a))))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("context: {e}"))?;
    let monitor = if script == "nats" { monitor_port } else { broker_port };
    let r = local.block_on(rt, async {
        if system == System::Relay {
            let admins: Vec<SocketAddr> = addrs.iter().map(|a| SocketAddr::new(a.ip(), a.port() + 1)).collect();
            relays_healthy(&admins).await?;
        }
        drive(system, ctxs, &pids, monitor, plan).await
    });
    for s in servers.iter_mut() {
        s.stop();
    }
    std::thread::sleep(Duration::from_millis(500));
    r
}

/// Both variants against running nodes.
async fn drive(
    system: System,
    ctxs: Vec<Rc<Ctx>>,
    pids: &[u32],
    monitor: u16,
    plan: &Plan,
) -> Result<(Vec<Variant>, u64, u64), String> {
    let name = system.name();
    let shared = Shared::new();
    let (stop_tx, stop) = watch::channel(false);
    let queued = Rc::new(Cell::new(0u64));
    let tick = progress(format!("cluster {name}"), shared.clone(), queued.clone());
    let users = plan.cluster_users;
    connect_range(crate::clients::Transport::WebSocket, &ctxs, &shared, 1, users, plan.sources, &stop).await;
    if shared.failed.get() > 0 {
        eprintln!(
            "  [cluster {name}] {} clients failed to connect; last error: {:?}",
            shared.failed.get(),
            shared.last_error.borrow()
        );
    }
    let mut rng = Rng::new(0x5eed_c1a5);
    let cross = Rc::new(make_threads(users, plan.cluster_threads, &mut rng));
    let same = Rc::new(same_node_threads(users, plan.cluster_threads, &mut rng));
    let mean = cross.iter().map(|t| t.len() as f64).sum::<f64>() / cross.len().max(1) as f64;

    // One queue and a pool of keep-alive publishers per node.
    let queues: Vec<Rc<RefCell<VecDeque<Job>>>> = (0..2).map(|_| Rc::new(RefCell::new(VecDeque::new()))).collect();
    let notifies: Vec<Rc<Notify>> = (0..2).map(|_| Rc::new(Notify::new())).collect();
    let errors = Rc::new(Cell::new(0u64));
    let mut workers = Vec::new();
    for node in 0..2 {
        for _ in 0..plan.cluster_publishers.max(1) {
            let (q, n, c, cr, sa, err, sh) = (
                queues[node].clone(),
                notifies[node].clone(),
                ctxs[node].clone(),
                cross.clone(),
                same.clone(),
                errors.clone(),
                shared.clone(),
            );
            workers.push(tokio::task::spawn_local(async move {
                let mut conn = http::Conn::new(c.addr);
                loop {
                    let job = q.borrow_mut().pop_front();
                    let Some(job) = job else {
                        n.notified().await;
                        continue;
                    };
                    let members = if job.same { &sa[job.thread] } else { &cr[job.thread] };
                    let env = c.envelope(job.seq, job.thread as u64 + 1);
                    for r in c.publish(members, &env) {
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
    }

    let mut seq = 0u64;
    let rate = plan.cluster_rate;
    let pushes_per_sec = rate / mean.max(1.0);
    let names = ["cross-node", "same-node"];
    let mut variants: Vec<Variant> = names
        .iter()
        .map(|n| Variant {
            name: (*n).into(),
            target_rate: rate,
            pushes: 0,
            expected: 0,
            expected_remote: 0,
            delivered: 0,
            achieved_rate: 0.0,
            latency: Percentiles::default(),
            cpu_s: 0.0,
            cpu_s_each: [0.0; 3],
            cpu_us_per_delivery: 0.0,
            broker: BrokerStats::default(),
            publish_errors: 0,
            loadgen_busy: 0.0,
        })
        .collect();
    let (mut loadgen_s, mut wall_s) = ([0.0f64; 2], [0.0f64; 2]);
    // Rounds alternate the two variants, so that a shared machine's load
    // drifting over the run weighs on both alike.
    let rounds = plan.cluster_rounds.max(1);
    for round in 1..=rounds {
        for (v, vname) in names.into_iter().enumerate() {
            let is_same = v == 1;
            let threads = if is_same { &same } else { &cross };
            // The node a push goes to: in turn (cross-node), or the node
            // of the thread's members (same-node).
            let push_node = |seq: u64, thread: usize| if is_same { thread % 2 } else { (seq % 2) as usize };
            let (measured, warm) = (2 * v as u32, 2 * v as u32 + 1);
            // Warm-up, not counted: publishers' connections, the nodes'
            // routing state for these threads.
            let warm_end = Instant::now() + Duration::from_secs_f64((plan.cluster_secs / 3.0).clamp(1.0, 3.0));
            while Instant::now() < warm_end {
                seq += 1;
                let thread = rng.below(threads.len() as u64) as usize;
                shared.mark_sent(seq, shared.now_us(), warm);
                let node = push_node(seq, thread);
                queues[node].borrow_mut().push_back(Job { seq, thread, same: is_same });
                notifies[node].notify_one();
                sleep(Duration::from_secs_f64(1.0 / pushes_per_sec.max(1.0))).await;
            }
            sleep(Duration::from_millis(500)).await;
            let errors0 = errors.get();
            let b0 = broker_stats(system, monitor).await?;
            let cpu0: Vec<f64> = pids.iter().map(|&p| procstat::cpu_seconds(p)).collect();
            let lg0 = procstat::own_cpu_seconds(std::process::id());
            let start = Instant::now();
            let end = start + Duration::from_secs_f64(plan.cluster_secs);
            let mut next = start;
            let (mut pushes, mut expected, mut remote) = (0u64, 0u64, 0u64);
            eprintln!(
                "  [cluster {name}] round {round}/{rounds} {vname}: offering {rate:.0} deliveries/s ({pushes_per_sec:.0} pushes/s)"
            );
            while next < end {
                let now = Instant::now();
                if next > now {
                    sleep_until(next).await;
                }
                let now = Instant::now();
                while next <= now && next < end {
                    seq += 1;
                    let thread = rng.below(threads.len() as u64) as usize;
                    let node = push_node(seq, thread);
                    shared.mark_sent(seq, next.duration_since(shared.t0).as_micros() as u64, measured);
                    expected += threads[thread].len() as u64;
                    remote += threads[thread].iter().filter(|&&u| node_of(u) != node).count() as u64;
                    pushes += 1;
                    queues[node].borrow_mut().push_back(Job { seq, thread, same: is_same });
                    notifies[node].notify_one();
                    next += Duration::from_secs_f64(-(1.0 - rng.unit()).ln() / pushes_per_sec);
                }
                queued.set(queues.iter().map(|q| q.borrow().len() as u64).sum());
            }
            let var = &mut variants[v];
            let want = var.expected + expected;
            let deadline = Instant::now() + Duration::from_secs(3);
            let got = || shared.delivered_in.borrow().get(measured as usize).copied().unwrap_or(0);
            while got() < want && Instant::now() < deadline {
                sleep(Duration::from_millis(5)).await;
            }
            for (i, (&p, c0)) in pids.iter().zip(&cpu0).enumerate() {
                var.cpu_s_each[i] += procstat::cpu_seconds(p) - c0;
            }
            loadgen_s[v] += procstat::own_cpu_seconds(std::process::id()) - lg0;
            wall_s[v] += start.elapsed().as_secs_f64();
            let b = broker_stats(system, monitor).await?.minus(b0);
            var.broker.in_msgs += b.in_msgs;
            var.broker.out_msgs += b.out_msgs;
            var.broker.in_bytes += b.in_bytes;
            var.broker.out_bytes += b.out_bytes;
            var.pushes += pushes;
            var.expected = want;
            var.expected_remote += remote;
            var.delivered = got();
            var.publish_errors += errors.get() - errors0;
            for q in &queues {
                q.borrow_mut().clear();
            }
        }
    }
    for (v, var) in variants.iter_mut().enumerate() {
        var.latency = match shared.lat.borrow_mut().get_mut(2 * v) {
            Some(l) => percentiles(l),
            None => Percentiles::default(),
        };
        var.cpu_s = var.cpu_s_each.iter().sum();
        var.cpu_us_per_delivery = var.cpu_s * 1e6 / var.delivered.max(1) as f64;
        var.achieved_rate = var.delivered as f64 / (plan.cluster_secs * rounds as f64);
        var.loadgen_busy = loadgen_s[v] / wall_s[v].max(1e-9);
        let per = |n: u64| n as f64 / var.pushes.max(1) as f64;
        eprintln!(
            "  [cluster {name}] {}: delivered {}/{} ({:.0} % remote), p50 {:.2} ms p99 {:.2} ms, {:.2} µs CPU/delivery (A {:.2} s, B {:.2} s, broker {:.2} s), broker {:.2} msgs in / {:.2} out / {:.0} B in per push, {} errors, load generator {:.0} % busy",
            var.name,
            var.delivered,
            var.expected,
            var.expected_remote as f64 * 100.0 / var.expected.max(1) as f64,
            var.latency.p50_ms,
            var.latency.p99_ms,
            var.cpu_us_per_delivery,
            var.cpu_s_each[0],
            var.cpu_s_each[1],
            var.cpu_s_each[2],
            per(var.broker.in_msgs),
            per(var.broker.out_msgs),
            per(var.broker.in_bytes),
            var.publish_errors,
            var.loadgen_busy * 100.0
        );
    }
    for w in workers {
        w.abort();
    }
    let _ = stop_tx.send(true);
    tick.abort();
    if let Some(e) = shared.last_error.borrow().as_ref() {
        eprintln!("  [cluster {name}] last error: {e}");
    }
    sleep(Duration::from_millis(300)).await;
    Ok((variants, shared.failed.get(), shared.lost.get()))
}

/// The run's cluster scenario over `systems`.
pub fn run(
    env: &Env,
    systems: &[System],
    secret: &bm_proto::SiteSecret,
    plan: &Plan,
    rt: &tokio::runtime::Runtime,
    local: &tokio::task::LocalSet,
) -> ClusterRun {
    let mut rng = Rng::new(0x5eed_c1a5);
    let t = make_threads(plan.cluster_users, plan.cluster_threads, &mut rng);
    let mean = t.iter().map(|m| m.len() as f64).sum::<f64>() / t.len().max(1) as f64;
    let mut out = ClusterRun {
        users: plan.cluster_users,
        threads: plan.cluster_threads,
        mean_members: mean,
        rate: plan.cluster_rate,
        step_secs: plan.cluster_secs,
        rounds: plan.cluster_rounds.max(1),
        systems: Vec::new(),
    };
    for &s in systems {
        eprintln!("== cluster: {}", s.label());
        out.systems.push(run_system(env, s, secret, plan, rt, local));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_node_threads_sit_on_one_node_each() {
        let mut rng = Rng::new(3);
        let t = same_node_threads(2_000, 1_000, &mut rng);
        for (i, m) in t.iter().enumerate() {
            assert!((2..=10).contains(&m.len()));
            assert!(m.iter().all(|&u| (1..=2_000).contains(&u) && node_of(u) == i % 2), "thread {i}: {m:?}");
        }
    }

    #[test]
    fn cross_node_threads_are_about_half_remote() {
        let mut rng = Rng::new(3);
        let t = make_threads(2_000, 1_000, &mut rng);
        let (mut all, mut remote) = (0, 0);
        for (i, m) in t.iter().enumerate() {
            all += m.len();
            remote += m.iter().filter(|&&u| node_of(u) != i % 2).count();
        }
        let share = remote as f64 / all as f64;
        assert!((0.45..0.55).contains(&share), "{share}");
    }

    #[test]
    fn broker_differences_do_not_underflow() {
        let a = BrokerStats { in_msgs: 10, out_msgs: 5, in_bytes: 100, out_bytes: 50 };
        let b = BrokerStats { in_msgs: 4, out_msgs: 7, in_bytes: 40, out_bytes: 10 };
        let d = a.minus(b);
        assert_eq!((d.in_msgs, d.out_msgs, d.in_bytes, d.out_bytes), (6, 0, 60, 40));
    }
}
