//! The result of a run (JSON) and its rendering as `bench/RESULTS.md` plus
//! gnuplot plots (latency against load, memory against connections).
//!
//! Every table has a ratio column against bm-relay measured in the same
//! run, written so that > 1 always means "bm-relay is better by this
//! factor" and the reader never has to remember which way a column points.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::adapters::Kind;
use crate::cluster::{ClusterRun, System};
use crate::scenarios::{Broadcast, Chat, Churn, IdleRow, Plan};
use crate::streams::StreamsRun;

/// The machine the run was taken on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Memory, MiB.
    pub mem_mib: u64,
    /// `uname -sr`.
    pub kernel: String,
    /// Open-file limit of the load generator.
    pub nofile: u64,
    /// Load average at the start (other work on the machine shows here).
    pub loadavg: String,
}

impl Machine {
    /// Reads /proc.
    pub fn read(nofile: u64) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
        Machine {
            cpu,
            cpus: cpuinfo.lines().filter(|l| l.starts_with("processor")).count().max(1),
            mem_mib: mem_kib / 1024,
            kernel: format!("Linux {kernel}"),
            nofile,
            loadavg: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned(),
        }
    }
}

/// One server's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerResult {
    /// Which server.
    pub kind: Kind,
    /// Its version line.
    pub version: String,
    /// Idle memory rows.
    pub idle: Option<Vec<IdleRow>>,
    /// Broadcast.
    pub broadcast: Option<Broadcast>,
    /// Chat.
    pub chat: Option<Chat>,
    /// Churn.
    pub churn: Option<Churn>,
    /// Scenarios that could not run, and why.
    pub errors: Vec<String>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// `full` or `quick`.
    pub mode: String,
    /// Start, unix seconds.
    pub started_unix: u64,
    /// End, unix seconds.
    pub finished_unix: u64,
    /// The machine.
    pub machine: Machine,
    /// Sizes used.
    pub plan: Plan,
    /// How the clients were held (processes, source addresses).
    pub loadgen: String,
    /// Per server, bm-relay first.
    pub servers: Vec<ServerResult>,
    /// The cluster scenario (two nodes and a broker per system), if it ran.
    #[serde(default)]
    pub cluster: Option<ClusterRun>,
    /// bm-relay's streams against its sockets (issue #15), if it ran.
    #[serde(default)]
    pub streams: Option<StreamsRun>,
}

fn utc(unix: u64) -> String {
    // civil-from-days (Howard Hinnant), enough for a timestamp line
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// `relay / other` for "lower is better" values, as a factor for bm-relay.
fn ratio_lower_better(relay: f64, other: f64) -> String {
    if relay > 0.0 && other > 0.0 {
        format!("{:.2}×", other / relay)
    } else {
        "–".into()
    }
}

/// `relay / other` for "higher is better" values.
fn ratio_higher_better(relay: f64, other: f64) -> String {
    if relay > 0.0 && other > 0.0 {
        format!("{:.2}×", relay / other)
    } else {
        "–".into()
    }
}

fn kib(b: f64) -> String {
    format!("{:.1}", b / 1024.0)
}

/// Renders the markdown.
pub fn markdown(r: &RunResult, plots_rel: &str, peers_doc: &str, analysis: &str) -> String {
    let mut s = String::new();
    let relay = r.servers.iter().find(|x| x.kind == Kind::Relay);
    let _ = writeln!(s, "# Benchmarks: bm-relay against Centrifugo, Nchan and socket.io\n");
    let _ = writeln!(s, "Written by `make bench` (`bm-bench run` then `bm-bench report`); do not edit by hand.\n");
    if r.mode == "quick" {
        let _ = writeln!(
            s,
            "> **QUICK run** (`QUICK=1`: small sizes, short steps). These are smoke-test figures, not the\n> comparison the issue asks for; run `make bench` for the full sizes.\n"
        );
    }
    let _ = writeln!(s, "Run: {} → {} ({} mode).\n", utc(r.started_unix), utc(r.finished_unix), r.mode);
    let _ = writeln!(s, "## Machine\n");
    let m = &r.machine;
    let _ = writeln!(s, "- CPU: {} × {} ({} MiB RAM), {}", m.cpus, m.cpu, m.mem_mib, m.kernel);
    let _ = writeln!(
        s,
        "- load average at start: `{}` (the machine is shared; figures are from one run, side by side)",
        m.loadavg
    );
    let _ = writeln!(s, "- server pinned to one core, load generator to the other (taskset / sched_setaffinity)");
    let _ = writeln!(s, "- load generator: {}", r.loadgen);
    let _ = writeln!(s, "- server CPU from `/proc/<pid>/stat` (utime+stime of the server's process tree), RSS from `/proc/<pid>/status`, kernel socket memory from `/proc/net/sockstat`\n");
    let _ = writeln!(s, "## Versions and configurations\n");
    let _ = writeln!(s, "| server | version |\n|---|---|");
    for x in &r.servers {
        let _ = writeln!(s, "| {} | {} |", x.kind.label(), x.version.replace('|', "/"));
    }
    let _ = writeln!(s, "\n{peers_doc}\n");

    // idle
    let _ = writeln!(s, "## 1. Idle connections: memory\n");
    let _ = writeln!(s, "Server RSS growth per connection, (RSS at N − RSS before any client) / N. Kernel TCP memory is machine-wide (both ends of each loopback connection). Ratio: other's bytes per connection / bm-relay's.\n");
    let _ = writeln!(s, "| server | connections | failed | server RSS MiB | RSS KiB/conn | kernel TCP MiB | kernel KiB/conn | ratio vs bm-relay |\n|---|---|---|---|---|---|---|---|");
    for x in &r.servers {
        for row in x.idle.iter().flatten() {
            let base = relay
                .and_then(|rl| rl.idle.as_ref())
                .and_then(|v| v.iter().find(|q| q.connections.abs_diff(row.connections) * 50 < row.connections.max(1)));
            let ratio =
                base.map(|b| ratio_lower_better(b.rss_per_conn, row.rss_per_conn)).unwrap_or_else(|| "–".into());
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {} | {:.1} | {} | {} |",
                x.kind.label(),
                row.connections,
                row.failed,
                row.rss_bytes as f64 / 1048576.0,
                kib(row.rss_per_conn),
                row.sock_mem_bytes as f64 / 1048576.0,
                kib(row.sock_mem_per_conn),
                ratio
            );
        }
    }
    let _ = writeln!(s, "\n![memory against connections]({plots_rel}/idle-memory.png)\n");

    // broadcast
    let _ = writeln!(s, "## 2. Broadcast: one event to every connection, repeated\n");
    let _ = writeln!(s, "Each round addresses every user by id (per-user routing: bm-relay `to` list, Centrifugo `broadcast` to every personal channel, Nchan multiplexed publish of ≤ 1000 characters of channel ids per request, socket.io `to(rooms)`), and waits for the last delivery before the next. Latency: publish call → frame received. Ratio: other's CPU-s per million deliveries / bm-relay's.\n");
    let _ = writeln!(s, "| server | clients | delivered / expected | requests/round | deliveries/s | server CPU-s per 1M | p50 ms | p99 ms | errors | clients lost | load gen. busy | ratio vs bm-relay |\n|---|---|---|---|---|---|---|---|---|---|---|---|");
    let rb = relay.and_then(|x| x.broadcast.as_ref());
    for x in &r.servers {
        if let Some(b) = &x.broadcast {
            let ratio =
                rb.map(|q| ratio_lower_better(q.cpu_s_per_million, b.cpu_s_per_million)).unwrap_or_else(|| "–".into());
            let _ = writeln!(
                s,
                "| {} | {} | {} / {} | {} | {:.0} | {:.2} | {:.1} | {:.1} | {} | {} | {:.0} % | {} |",
                x.kind.label(),
                b.clients,
                b.delivered,
                b.expected,
                b.requests_per_round,
                b.deliveries_per_sec,
                b.cpu_s_per_million,
                b.latency.p50_ms,
                b.latency.p99_ms,
                b.publish_errors,
                b.lost_clients,
                b.loadgen_busy * 100.0,
                ratio
            );
        }
    }

    // chat
    let _ = writeln!(s, "\n## 3. Chat: open-loop Poisson pushes at rising rates\n");
    if let Some(c) = r.servers.iter().find_map(|x| x.chat.as_ref()) {
        let _ = writeln!(
            s,
            "{} users, one connection each, in {} threads of 2–10 members (mean {:.2}). Each push goes to one random thread's members (one publish call per push). Pushes are scheduled by a Poisson process; latency runs from the *scheduled* time to the frame (queueing counts). A step is held when p99 < 50 ms, ≥ 99.9 % delivered and no publish failed; the run goes on after one missed step (noise on a shared machine) unless the server was plainly overloaded (p99 > 1 s or > 1 % lost), and stops after two misses in a row. *Load gen. busy* near 100 % means the load generator, not the server, set the pace. Each step lasts {} s.\n",
            c.users, c.threads, c.mean_members, r.plan.chat_step_secs
        );
    }
    let _ = writeln!(s, "| server | highest rate held (deliveries/s) | CPU µs/delivery at {:.0}/s | ratio (rate) | ratio (CPU) |\n|---|---|---|---|---|", r.plan.chat_fixed_rate);
    let rc = relay.and_then(|x| x.chat.as_ref());
    for x in &r.servers {
        if let Some(c) = &x.chat {
            let r1 = rc.map(|q| ratio_higher_better(q.max_held_rate, c.max_held_rate)).unwrap_or_else(|| "–".into());
            let r2 = rc
                .and_then(|q| {
                    Some(ratio_lower_better(q.cpu_us_per_delivery_at_fixed?, c.cpu_us_per_delivery_at_fixed?))
                })
                .unwrap_or_else(|| "–".into());
            let _ = writeln!(
                s,
                "| {} | {:.0} | {} | {} | {} |",
                x.kind.label(),
                c.max_held_rate,
                c.cpu_us_per_delivery_at_fixed.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into()),
                r1,
                r2
            );
        }
    }
    let _ = writeln!(s, "\nEvery step:\n");
    let _ = writeln!(s, "| server | offered/s | achieved/s | delivered / expected | p50 ms | p99 ms | max ms | CPU µs/delivery | errors | load gen. busy | held |\n|---|---|---|---|---|---|---|---|---|---|---|");
    for x in &r.servers {
        for st in x.chat.iter().flat_map(|c| c.steps.iter()) {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {} / {} | {:.2} | {:.2} | {:.1} | {:.2} | {} | {:.0} % | {} |",
                x.kind.label(),
                st.target_rate,
                st.achieved_rate,
                st.delivered,
                st.expected,
                st.latency.p50_ms,
                st.latency.p99_ms,
                st.latency.max_ms,
                st.cpu_us_per_delivery,
                st.publish_errors,
                st.loadgen_busy * 100.0,
                if st.held { "yes" } else { "**no**" }
            );
        }
    }
    let _ = writeln!(s, "\n![chat latency against load]({plots_rel}/chat-latency.png)\n");

    // churn
    let _ = writeln!(s, "## 4. Churn: connect + authenticate + disconnect\n");
    let _ = writeln!(s, "Closed-loop: a fixed number of loops each open a WebSocket from a rotating source address, authenticate (Nchan has no authentication step), wait for the server's acceptance, and drop the connection. The load generator's own cost per cycle (socket, handshake, token) often sets the pace (see *load gen. busy*), so the comparison is the server's CPU per cycle. Ratio: other's CPU per cycle / bm-relay's.\n");
    let _ = writeln!(s, "| server | loops | cycles/s | failed | server CPU ms/cycle | load gen. busy | ratio vs bm-relay |\n|---|---|---|---|---|---|---|");
    let rch = relay.and_then(|x| x.churn.as_ref());
    for x in &r.servers {
        if let Some(c) = &x.churn {
            let ratio =
                rch.map(|q| ratio_lower_better(q.cpu_ms_per_cycle, c.cpu_ms_per_cycle)).unwrap_or_else(|| "–".into());
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {:.3} | {:.0} % | {} |",
                x.kind.label(),
                c.concurrency,
                c.per_sec,
                c.failed,
                c.cpu_ms_per_cycle,
                c.loadgen_busy * 100.0,
                ratio
            );
        }
    }
    if let Some(c) = &r.cluster {
        cluster_section(&mut s, c);
    }
    if let Some(st) = &r.streams {
        streams_section(&mut s, st);
    }
    let _ = writeln!(s, "\n## Targets of issue 7, read from this run\n");
    for line in targets(r) {
        let _ = writeln!(s, "- {line}");
    }
    if let Some(c) = &r.cluster {
        let _ = writeln!(s, "\n## Targets of issue 13 (cluster), read from this run\n");
        for line in cluster_targets(c) {
            let _ = writeln!(s, "- {line}");
        }
    }
    if !analysis.is_empty() {
        let _ = writeln!(s, "\n{analysis}");
    }
    let mut errs: Vec<String> =
        r.servers.iter().flat_map(|x| x.errors.iter().map(move |e| format!("- {}: {e}", x.kind.label()))).collect();
    for x in r.cluster.iter().flat_map(|c| &c.systems) {
        errs.extend(x.errors.iter().map(|e| format!("- cluster, {}: {e}", x.system.label())));
    }
    errs.extend(r.streams.iter().flat_map(|x| x.errors.iter().map(|e| format!("- streams: {e}"))));
    if !errs.is_empty() {
        let _ = writeln!(s, "\n## Scenarios that could not run\n\n{}", errs.join("\n"));
    }
    s
}

/// CPU µs of one delivery to a socket on the *other* node, derived from a
/// system's two variants of the same run: the cross-node step's CPU less
/// its same-node deliveries at the same-node step's cost per delivery,
/// over its remote deliveries. `None` without both variants or remote ones.
pub fn remote_delivery_us(x: &crate::cluster::ClusterSystem) -> Option<f64> {
    let cross = x.variants.iter().find(|v| v.name == "cross-node")?;
    let same = x.variants.iter().find(|v| v.name == "same-node")?;
    if cross.expected == 0 || cross.expected_remote == 0 || same.delivered == 0 {
        return None;
    }
    let per_same = same.cpu_s / same.delivered as f64;
    // what was delivered, split in the proportion that was expected
    let remote = cross.delivered as f64 * cross.expected_remote as f64 / cross.expected as f64;
    let local = cross.delivered as f64 - remote;
    Some(((cross.cpu_s - local * per_same) / remote * 1e6).max(0.0))
}

/// Section 6: bm-relay's streams (`/v1/stream`) against its WebSockets.
fn streams_section(s: &mut String, st: &StreamsRun) {
    let _ = writeln!(s, "\n## 6. Streams (`/v1/stream`, the fallback when WebSocket is blocked) against WebSockets\n");
    let _ = writeln!(
        s,
        "bm-relay alone, started fresh for each leg (so neither transport reuses the other's freed memory), pinned as above. Each leg holds the broadcast scenario's number of clients idle for 2 s (relay RSS above its own before them, per client), then runs the broadcast rounds to all of them (relay CPU per delivery). Sockets and streams alternate, round after round; the ratios are of the medians, stream / socket (lower is better for the stream).\n"
    );
    let _ = writeln!(
        s,
        "| leg | transport | clients | failed | RSS per client | CPU-s per 10⁶ deliveries | delivered | p50 / p99 ms |\n|---|---|---|---|---|---|---|---|"
    );
    for (i, l) in st.legs.iter().enumerate() {
        let b = &l.broadcast;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.1} KiB | {:.2} | {} of {} | {:.1} / {:.1} |",
            i + 1,
            l.transport,
            l.clients,
            l.failed,
            l.rss_per_client / 1024.0,
            b.cpu_s_per_million,
            b.delivered,
            b.expected,
            b.latency.p50_ms,
            b.latency.p99_ms
        );
    }
    let _ = writeln!(
        s,
        "\nStream / socket: **{:.2}×** the memory per idle client, **{:.2}×** the CPU per delivery.",
        st.memory_ratio, st.cpu_ratio
    );
    if st.started_unix > 0 {
        let _ = writeln!(s, "\nRun {}; {}.", utc(st.started_unix), st.version);
    }
}

/// Section 5: the cluster scenario.
fn cluster_section(s: &mut String, c: &ClusterRun) {
    let _ = writeln!(s, "\n## 5. Cluster: two nodes and a broker\n");
    let _ = writeln!(
        s,
        "Each system runs as two nodes and one broker, all three pinned to the server core: two bm-relays joined by one nats-server (`--nats`, `--node-name`), two Centrifugo v6 nodes on its NATS broker (one nats-server), and two Centrifugo nodes on its Redis engine (one redis-server; broker and presence in Redis, presence on for the personal channels, as bm-relay keeps every user's presence cluster-wide). {} users, one socket each: even users on node A, odd users on node B. Chat traffic at {:.0} deliveries/s offered, open-loop Poisson, {} threads of 2–10 members (mean {:.2}); {} round(s) of {} s per variant, each after a warm-up, the two variants taking turns (a shared machine's drifting load weighs on both alike):\n",
        c.users, c.rate, c.threads, c.mean_members, c.rounds.max(1), c.step_secs
    );
    let _ = writeln!(s, "- **cross-node**: members drawn from all users (about half on each node); pushes go to node A and node B in turn, as a round-robin load balancer in front of the nodes would send WordPress's pushes, so about half of the deliveries are to the other node's sockets (*remote* column);");
    let _ = writeln!(s, "- **same-node**: every thread's members sit on one node (threads alternate between A and B) and each push goes to that node: nothing has to cross to the other node.\n");
    let _ = writeln!(s, "CPU is utime+stime of the three processes together (both nodes and the broker). Broker traffic is the difference of nats-server's `/varz` counters (`in_msgs`, `out_msgs`, `in_bytes`, `out_bytes`; the relays' heartbeats and presence included) or of Redis's `INFO stats` (commands processed, network bytes) across the step, per push. *cross / same* is the cross-node variant's CPU per delivery over the same-node variant's (about half of its deliveries are remote); *vs bm-relay* is the system's CPU per delivery over bm-relay's in the same variant (> 1: bm-relay is cheaper).\n");
    let _ = writeln!(s, "| system | variant | remote | delivered / expected | p50 ms | p99 ms | CPU µs/delivery (A + B + broker) | node A / B / broker CPU-s | broker msgs in / out per push | broker bytes in / out per push | errors | load gen. busy | cross / same | vs bm-relay |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let relay = c.systems.iter().find(|x| x.system == System::Relay);
    for x in &c.systems {
        let same = x.variants.iter().find(|v| v.name == "same-node").map(|v| v.cpu_us_per_delivery);
        for v in &x.variants {
            let per = |n: u64| n as f64 / v.pushes.max(1) as f64;
            let base = relay.and_then(|r| r.variants.iter().find(|q| q.name == v.name)).map(|q| q.cpu_us_per_delivery);
            let cross_same = match (v.name.as_str(), same) {
                ("cross-node", Some(sm)) if sm > 0.0 => format!("{:.2}×", v.cpu_us_per_delivery / sm),
                _ => "–".into(),
            };
            let out_msgs = if x.system == System::CentrifugoRedis {
                format!("{:.2} commands / –", per(v.broker.in_msgs))
            } else {
                format!("{:.2} / {:.2}", per(v.broker.in_msgs), per(v.broker.out_msgs))
            };
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} % | {} / {} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} / {:.2} | {} | {:.0} / {:.0} | {} | {:.0} % | {} | {} |",
                x.system.label(),
                v.name,
                v.expected_remote as f64 * 100.0 / v.expected.max(1) as f64,
                v.delivered,
                v.expected,
                v.latency.p50_ms,
                v.latency.p99_ms,
                v.cpu_us_per_delivery,
                v.cpu_s_each[0],
                v.cpu_s_each[1],
                v.cpu_s_each[2],
                out_msgs,
                per(v.broker.in_bytes),
                per(v.broker.out_bytes),
                v.publish_errors,
                v.loadgen_busy * 100.0,
                cross_same,
                base.map(|b| ratio_lower_better(b, v.cpu_us_per_delivery)).unwrap_or_else(|| "–".into()),
            );
        }
        if x.failed_clients > 0 || x.lost_clients > 0 {
            let _ = writeln!(
                s,
                "| {} | (clients) | | {} failed to connect, {} lost | | | | | | | | | | |",
                x.system.label(),
                x.failed_clients,
                x.lost_clients
            );
        }
    }
    let _ = writeln!(s, "\nOne delivery to a socket on the other node, derived from the two variants (the cross-node step's CPU, less its same-node deliveries at the same-node step's cost, over its remote deliveries):\n");
    let _ = writeln!(
        s,
        "| system | CPU µs per same-node delivery | CPU µs per remote delivery | remote / same |\n|---|---|---|---|"
    );
    for x in &c.systems {
        let same = x.variants.iter().find(|v| v.name == "same-node").map(|v| v.cpu_us_per_delivery);
        if let (Some(sm), Some(rm)) = (same, remote_delivery_us(x)) {
            let _ = writeln!(s, "| {} | {sm:.2} | {rm:.2} | {:.2}× |", x.system.label(), rm / sm.max(1e-9));
        }
    }
    let _ = writeln!(
        s,
        "\nVersions: {}.",
        c.systems.iter().map(|x| format!("{}: {}", x.system.label(), x.version)).collect::<Vec<_>>().join("; ")
    );
}

/// The targets of issue #13, each with the figures that decide it.
pub fn cluster_targets(c: &ClusterRun) -> Vec<String> {
    let mut out = Vec::new();
    let var = |sys: System, name: &str| {
        c.systems
            .iter()
            .find(|x| x.system == sys)
            .and_then(|x| x.variants.iter().find(|v| v.name == name))
            .map(|v| v.cpu_us_per_delivery)
    };
    for name in ["cross-node", "same-node"] {
        if let (Some(a), Some(b)) = (var(System::Relay, name), var(System::CentrifugoNats, name)) {
            let f = b / a.max(1e-9);
            out.push(format!(
                "≥ 2× fewer CPU-seconds per delivery than Centrifugo on NATS, {name}: {f:.2}× ({a:.1} vs {b:.1} µs per delivery, nodes and broker together) — {}",
                yes(f >= 2.0)
            ));
        }
    }
    let relay = c.systems.iter().find(|x| x.system == System::Relay);
    if let (Some(x), Some(y), Some(rm)) =
        (var(System::Relay, "cross-node"), var(System::Relay, "same-node"), relay.and_then(remote_delivery_us))
    {
        let f = rm / y.max(1e-9);
        out.push(format!(
            "a cross-node delivery costs ≤ 1.5× a same-node one (bm-relay, nodes and broker): one delivery to the other node's socket {f:.2}× a same-node one ({rm:.1} vs {y:.1} µs, derived) — {}; the cross-node traffic as a whole (about half remote) {:.2}× the same-node traffic ({x:.1} vs {y:.1} µs per delivery)",
            yes(f <= 1.5),
            x / y.max(1e-9)
        ));
    }
    if out.is_empty() {
        out.push("not decidable: bm-relay's and Centrifugo-on-NATS's cluster runs did not both complete".into());
    }
    out
}

fn gnuplot_data(r: &RunResult, dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    std::fs::create_dir_all(dir)?;
    let mut mem = String::new();
    let mut lat = String::new();
    for x in &r.servers {
        let name = x.kind.label();
        if let Some(rows) = &x.idle {
            let _ = writeln!(mem, "# {name}");
            for row in rows {
                let _ = writeln!(mem, "{} {:.3}", row.connections, row.rss_per_conn / 1024.0);
            }
            let _ = writeln!(mem, "\n");
        }
        if let Some(c) = &x.chat {
            let _ = writeln!(lat, "# {name}");
            for st in &c.steps {
                let _ = writeln!(
                    lat,
                    "{} {:.3} {:.3}",
                    st.achieved_rate,
                    st.latency.p50_ms.max(0.01),
                    st.latency.p99_ms.max(0.01)
                );
            }
            let _ = writeln!(lat, "\n");
        }
    }
    std::fs::write(dir.join("idle-memory.dat"), &mem)?;
    std::fs::write(dir.join("chat-latency.dat"), &lat)?;
    let names: Vec<&str> = r.servers.iter().map(|x| x.kind.label()).collect();
    let mem_plot = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("'idle-memory.dat' index {i} using 1:2 with linespoints lw 2 title '{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let lat_plot = names
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            [
                format!("'chat-latency.dat' index {i} using 1:3 with linespoints lw 2 lc {} title '{n} p99'", i + 1),
                format!("'chat-latency.dat' index {i} using 1:2 with linespoints dt 2 lc {} title '{n} p50'", i + 1),
            ]
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok(vec![
        (
            "idle-memory.gp".into(),
            format!(
                "set terminal pngcairo size 900,560\nset output 'idle-memory.png'\nset title 'Server RSS per idle connection'\nset xlabel 'connections'\nset ylabel 'KiB per connection'\nset grid\nset key top right\nset yrange [0:*]\nplot {mem_plot}\n"
            ),
        ),
        (
            "chat-latency.gp".into(),
            format!(
                "set terminal pngcairo size 900,560\nset output 'chat-latency.png'\nset title 'Chat: latency against delivered load'\nset xlabel 'deliveries per second'\nset ylabel 'latency (ms)'\nset logscale y\nset grid\nset key top left\nplot {lat_plot}\n"
            ),
        ),
    ])
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**missed**"
    }
}

/// The targets, each with the figures that decide it.
pub fn targets(r: &RunResult) -> Vec<String> {
    let mut out = Vec::new();
    let get = |k: Kind| r.servers.iter().find(|x| x.kind == k);
    let Some(relay) = get(Kind::Relay) else {
        return vec!["bm-relay was not measured: no target can be read".into()];
    };
    // 2x Centrifugo's deliveries per CPU-second, broadcast and chat
    if let Some(cf) = get(Kind::Centrifugo) {
        if let (Some(a), Some(b)) = (&relay.broadcast, &cf.broadcast) {
            let f = b.cpu_s_per_million / a.cpu_s_per_million.max(1e-9);
            out.push(format!(
                "≥ 2× Centrifugo's deliveries per CPU-second, broadcast: {f:.2}× ({:.1} vs {:.1} CPU-s per million) — {}",
                a.cpu_s_per_million,
                b.cpu_s_per_million,
                yes(f >= 2.0)
            ));
        }
        match (relay.chat.as_ref().and_then(|c| c.cpu_us_per_delivery_at_fixed), cf.chat.as_ref().and_then(|c| c.cpu_us_per_delivery_at_fixed)) {
            (Some(a), Some(b)) => out.push(format!(
                "≥ 2× Centrifugo's deliveries per CPU-second, chat at {:.0}/s: {:.2}× ({a:.1} vs {b:.1} µs per delivery) — {}",
                r.plan.chat_fixed_rate,
                b / a,
                yes(b / a >= 2.0)
            )),
            _ => out.push(format!("≥ 2× Centrifugo in chat: not decidable, the {:.0}/s step did not run for both", r.plan.chat_fixed_rate)),
        }
    }
    // ahead of Nchan and socket.io on every row
    let mut behind = Vec::new();
    for k in [Kind::Nchan, Kind::Socketio] {
        let Some(o) = get(k) else { continue };
        let name = k.label();
        if let (Some(a), Some(b)) = (&relay.idle, &o.idle) {
            for (x, y) in a.iter().zip(b.iter()) {
                if x.rss_per_conn >= y.rss_per_conn {
                    behind.push(format!("{name} idle memory at {}", y.connections));
                }
            }
        }
        if let (Some(a), Some(b)) = (&relay.broadcast, &o.broadcast) {
            if a.cpu_s_per_million >= b.cpu_s_per_million {
                behind.push(format!(
                    "{name} broadcast CPU per delivery ({:.1} vs {:.1} CPU-s per million)",
                    a.cpu_s_per_million, b.cpu_s_per_million
                ));
            }
            if a.latency.p50_ms >= b.latency.p50_ms {
                behind.push(format!(
                    "{name} broadcast p50 latency ({:.1} vs {:.1} ms)",
                    a.latency.p50_ms, b.latency.p50_ms
                ));
            }
        }
        if let (Some(a), Some(b)) = (&relay.chat, &o.chat) {
            if a.max_held_rate < b.max_held_rate {
                behind.push(format!(
                    "{name} chat highest rate held ({:.0} vs {:.0}/s)",
                    a.max_held_rate, b.max_held_rate
                ));
            }
            if let (Some(x), Some(y)) = (a.cpu_us_per_delivery_at_fixed, b.cpu_us_per_delivery_at_fixed) {
                if x >= y {
                    behind.push(format!("{name} chat CPU per delivery ({x:.1} vs {y:.1} µs)"));
                }
            }
        }
        if let (Some(a), Some(b)) = (&relay.churn, &o.churn) {
            if a.cpu_ms_per_cycle >= b.cpu_ms_per_cycle {
                behind.push(format!(
                    "{name} churn CPU per cycle ({:.3} vs {:.3} ms)",
                    a.cpu_ms_per_cycle, b.cpu_ms_per_cycle
                ));
            }
        }
    }
    if behind.is_empty() {
        out.push("ahead of Nchan and socket.io on every row — **met**".into());
    } else {
        out.push(format!("ahead of Nchan and socket.io on every row — **missed** on: {}", behind.join("; ")));
    }
    // memory
    if let Some(row) = relay.idle.as_ref().and_then(|v| v.iter().max_by_key(|x| x.connections)) {
        out.push(format!(
            "≤ 8 KiB of server RSS per idle connection at 19k: {:.1} KiB at {} connections — {}",
            row.rss_per_conn / 1024.0,
            row.connections,
            yes(row.rss_per_conn <= 8192.0 && row.connections >= 19_000)
        ));
    }
    // latency at 50k
    if let Some(c) = &relay.chat {
        let at50 = c.steps.iter().find(|s| s.target_rate >= 50_000.0);
        out.push(match at50 {
            Some(st) => format!(
                "p99 < 10 ms in chat at 50k deliveries/s: p99 {:.1} ms at {:.0}/s offered — {}",
                st.latency.p99_ms,
                st.target_rate,
                yes(st.latency.p99_ms < 10.0 && st.held)
            ),
            None => format!(
                "p99 < 10 ms in chat at 50k deliveries/s — **missed**: the relay held at most {:.0} deliveries/s on its one core (p99 < 50 ms), so the 50k step was not reached",
                c.max_held_rate
            ),
        });
    }
    out
}

/// Correctness problems in a run (what `--check` fails on): clients that
/// could not connect, events lost in broadcast or in the first chat step
/// (a rate every server holds), failed churn cycles, publish errors.
pub fn check(r: &RunResult) -> Vec<String> {
    let mut out = Vec::new();
    for x in &r.servers {
        let name = x.kind.label();
        for row in x.idle.iter().flatten() {
            if row.failed > 0 {
                out.push(format!("{name} idle: {} connections failed", row.failed));
            }
        }
        if let Some(b) = &x.broadcast {
            if b.delivered != b.expected || b.publish_errors > 0 || b.clients == 0 {
                out.push(format!(
                    "{name} broadcast: {} of {} delivered, {} publish errors",
                    b.delivered, b.expected, b.publish_errors
                ));
            }
        }
        if let Some(st) = x.chat.as_ref().and_then(|c| c.steps.first()) {
            if st.delivered < st.expected || st.publish_errors > 0 || st.expected == 0 {
                out.push(format!(
                    "{name} chat: {} of {} delivered, {} publish errors",
                    st.delivered, st.expected, st.publish_errors
                ));
            }
        }
        if let Some(c) = &x.churn {
            if c.failed > 0 || c.cycles == 0 {
                out.push(format!("{name} churn: {} cycles, {} failed", c.cycles, c.failed));
            }
        }
    }
    for l in r.streams.iter().flat_map(|x| &x.legs) {
        let b = &l.broadcast;
        if l.failed > 0 || l.clients == 0 || b.delivered != b.expected || b.publish_errors > 0 {
            out.push(format!(
                "streams, {} leg: {} clients failed; {} of {} delivered, {} publish errors",
                l.transport, l.failed, b.delivered, b.expected, b.publish_errors
            ));
        }
    }
    for x in r.cluster.iter().flat_map(|c| &c.systems) {
        let name = x.system.label();
        if x.failed_clients > 0 || x.lost_clients > 0 {
            out.push(format!("cluster {name}: {} clients failed, {} lost", x.failed_clients, x.lost_clients));
        }
        for want in ["cross-node", "same-node"] {
            match x.variants.iter().find(|v| v.name == want) {
                None => out.push(format!("cluster {name}: the {want} variant did not run")),
                Some(v) => {
                    if v.delivered < v.expected || v.publish_errors > 0 || v.expected == 0 {
                        out.push(format!(
                            "cluster {name} {want}: {} of {} delivered, {} publish errors",
                            v.delivered, v.expected, v.publish_errors
                        ));
                    }
                    // cross-node must have carried deliveries to the other node
                    if want == "cross-node" && v.expected_remote == 0 {
                        out.push(format!("cluster {name} cross-node: no delivery was to the other node"));
                    }
                }
            }
        }
    }
    out
}

/// Reads a result file, writes the markdown and the plots.
pub fn write(input: &Path, output: &Path, plots: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let r: RunResult =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a bm-bench result: {e}", input.display()))?;
    let scripts = gnuplot_data(&r, plots).map_err(|e| format!("plots: {e}"))?;
    let mut made_png = true;
    for (name, body) in &scripts {
        std::fs::write(plots.join(name), body).map_err(|e| format!("plots: {e}"))?;
        let ok = std::process::Command::new("gnuplot")
            .arg(name)
            .current_dir(plots)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        made_png &= ok;
    }
    if !made_png {
        eprintln!("bm-bench report: gnuplot is missing or failed; data and scripts are in {}", plots.display());
    }
    let rel = match (output.parent(), plots.strip_prefix(output.parent().unwrap_or(Path::new("")))) {
        (Some(_), Ok(p)) => p.display().to_string(),
        _ => plots.display().to_string(),
    };
    let peers_doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/CONFIGS.md")).unwrap_or_default();
    let analysis =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ANALYSIS.md")).unwrap_or_default();
    std::fs::write(output, markdown(&r, &rel, peers_doc.trim(), analysis.trim()))
        .map_err(|e| format!("cannot write {}: {e}", output.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_of_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_764_000_000), "2025-11-24 16:00:00 UTC");
    }

    fn variant(name: &str, cpu_s: f64, delivered: u64, expected_remote: u64) -> crate::cluster::Variant {
        crate::cluster::Variant {
            name: name.into(),
            target_rate: 5000.0,
            pushes: delivered / 6,
            expected: delivered,
            expected_remote,
            delivered,
            achieved_rate: 5000.0,
            latency: crate::clients::Percentiles::default(),
            cpu_s,
            cpu_s_each: [cpu_s / 2.0, cpu_s / 2.0, 0.0],
            cpu_us_per_delivery: cpu_s * 1e6 / delivered as f64,
            broker: crate::cluster::BrokerStats::default(),
            publish_errors: 0,
            loadgen_busy: 0.1,
        }
    }

    #[test]
    fn remote_delivery_cost_is_what_the_remote_half_adds() {
        // same-node: 20 µs a delivery; cross-node: half remote, 30 µs on
        // average, so a remote delivery costs 40 µs
        let x = crate::cluster::ClusterSystem {
            system: System::Relay,
            version: String::new(),
            failed_clients: 0,
            lost_clients: 0,
            variants: vec![variant("cross-node", 1.5, 50_000, 25_000), variant("same-node", 1.0, 50_000, 0)],
            errors: Vec::new(),
        };
        let us = remote_delivery_us(&x).unwrap();
        assert!((us - 40.0).abs() < 1e-6, "{us}");
        let only_same = crate::cluster::ClusterSystem { variants: vec![x.variants[1].clone()], ..x };
        assert!(remote_delivery_us(&only_same).is_none());
    }

    #[test]
    fn ratios_point_towards_bm_relay() {
        assert_eq!(ratio_lower_better(2.0, 6.0), "3.00×");
        assert_eq!(ratio_higher_better(6.0, 2.0), "3.00×");
        assert_eq!(ratio_higher_better(0.0, 2.0), "–");
    }
}
