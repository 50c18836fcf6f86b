//! `bm-bench`: the load generator that compares bm-relay with Centrifugo,
//! Nchan and socket.io on one machine (issue 7). See `bm-bench --help`.
//!
//! The generator runs on one thread pinned to one core; each server is
//! started by its script in `bench/peers/` pinned to the other core, so the
//! two never compete, and the server's own CPU-seconds and memory are read
//! from `/proc`.

mod adapters;
mod clients;
mod cluster;
mod http;
mod procstat;
mod report;
mod scenarios;
mod server;
mod soak;
mod streams;

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use clap::{Parser, Subcommand};

use adapters::{Ctx, Kind};
use report::{Machine, RunResult, ServerResult};
use scenarios::Plan;

/// Load generator: bm-relay against Centrifugo v6, Nchan and socket.io 4.
///
/// `run` starts each server (bench/peers/<name>.sh), runs the scenarios
/// against it and stops it; progress goes to stderr, `--json` prints the
/// result on stdout. `report` turns a result file into bench/RESULTS.md
/// and gnuplot plots.
#[derive(Parser)]
#[command(name = "bm-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Idle,
    Broadcast,
    Chat,
    Churn,
    /// Two nodes and a broker per server that has a cluster (bm-relay,
    /// Centrifugo): chat with members on both nodes, and on one node.
    Cluster,
    /// bm-relay alone: its streaming fallback (`/v1/stream`) against its
    /// WebSockets, memory per idle client and CPU per delivery.
    Streams,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenarios against servers (each started and stopped here).
    Run {
        /// Servers to measure, in order (bm-relay should come first: ratios are against it).
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = Kind::ALL.to_vec())]
        servers: Vec<Kind>,
        /// Scenarios to run.
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Scenario::Idle, Scenario::Broadcast, Scenario::Chat, Scenario::Churn, Scenario::Cluster, Scenario::Streams])]
        scenarios: Vec<Scenario>,
        /// Small sizes (the QUICK=1 smoke mode, about 2 minutes for all four servers).
        #[arg(long)]
        quick: bool,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Also write the JSON result to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Directory of the peers' scripts.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))]
        peers: PathBuf,
        /// Scratch directory for server configs and logs.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../run/bench"))]
        run_dir: PathBuf,
        /// The bm-relay binary.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/bm-relay"))]
        relay_bin: PathBuf,
        /// Core the servers are pinned to.
        #[arg(long, default_value_t = 0)]
        server_cpu: usize,
        /// Core the load generator is pinned to.
        #[arg(long, default_value_t = 1)]
        loadgen_cpu: usize,
        /// Override: chat rates (deliveries/s), comma-separated.
        #[arg(long, value_delimiter = ',')]
        chat_rates: Option<Vec<f64>>,
        /// Override: the cluster scenario's offered deliveries/s.
        #[arg(long)]
        cluster_rate: Option<f64>,
        /// Override: idle connection counts, comma-separated.
        #[arg(long, value_delimiter = ',')]
        idle_steps: Option<Vec<u64>>,
        /// Exit 3 unless every client connected, every broadcast and
        /// first-step chat event was delivered and every churn cycle
        /// succeeded (correctness only: nothing about speed).
        #[arg(long)]
        check: bool,
    },
    /// Soak bm-relay (issue #11): mixed load for N minutes, then fail on
    /// lost deliveries or growing memory.
    ///
    /// Starts its own relay (config and log in --run-dir, loopback only,
    /// stopped on any exit) and runs, all at once: long-lived chat sockets
    /// with signed pushes and client `pub` frames, periodic abrupt kills of
    /// some of them (they reconnect), and connect/auth/sub/close churn. A
    /// live line on stderr shows progress; the summary goes to stdout (and
    /// to --json). Exit 0: every check passed; 1: a check failed (lost or
    /// reordered delivery, RSS slope over the bound after the warm-up, relay
    /// dead or unhealthy, sockets it closed itself, refusals); 2: could not run.
    Soak(soak::Opts),
    /// Write RESULTS.md and plots from a `run --out` file.
    Report {
        /// The JSON result.
        #[arg(long)]
        input: PathBuf,
        /// Markdown file to write.
        #[arg(long)]
        output: PathBuf,
        /// Directory for the plots (PNG through gnuplot, if installed).
        #[arg(long)]
        plots: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Soak(opts) => soak::run(opts),
        Cmd::Report { input, output, plots } => match report::write(&input, &output, &plots) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bm-bench report: {e}");
                ExitCode::from(1)
            }
        },
        Cmd::Run {
            servers,
            scenarios,
            quick,
            json,
            out,
            peers,
            run_dir,
            relay_bin,
            server_cpu,
            loadgen_cpu,
            chat_rates,
            cluster_rate,
            idle_steps,
            check,
        } => {
            let mut plan = if quick { Plan::quick() } else { Plan::full() };
            if let Some(r) = chat_rates {
                plan.chat_rates = r;
            }
            if let Some(s) = idle_steps {
                plan.idle_steps = s;
            }
            if let Some(r) = cluster_rate {
                plan.cluster_rate = r;
            }
            let nofile = procstat::raise_nofile();
            let biggest = plan
                .idle_steps
                .iter()
                .copied()
                .max()
                .unwrap_or(0)
                .max(plan.broadcast_clients)
                .max(plan.chat_users)
                .max(plan.cluster_users);
            if biggest + 200 > nofile {
                eprintln!("bm-bench: {biggest} clients need more than this process's open-file limit ({nofile}); lower the sizes");
                return ExitCode::from(2);
            }
            if let Err(e) = procstat::pin_self(loadgen_cpu) {
                eprintln!("bm-bench: cannot pin to CPU {loadgen_cpu}: {e} (continuing unpinned)");
            }
            let secret = bm_proto::SiteSecret::generate();
            let env = server::Env {
                peers,
                run_dir: run_dir.clone(),
                server_cpu,
                relay_key: secret.relay_key().to_b64(),
                relay_bin,
            };
            let _ = std::fs::create_dir_all(&run_dir);
            let mut result = RunResult {
                mode: if quick { "quick".into() } else { "full".into() },
                started_unix: adapters::unix_now(),
                finished_unix: 0,
                machine: Machine::read(nofile),
                plan: plan.clone(),
                loadgen: format!(
                    "1 process, 1 thread pinned to CPU {loadgen_cpu}; open-file limit {nofile}, so up to {biggest} clients fit in one process (no split needed); clients spread over {} source addresses 127.0.0.2–127.0.0.{}",
                    plan.sources,
                    1 + plan.sources
                ),
                servers: Vec::new(),
                cluster: None,
                streams: None,
            };
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("bm-bench: no runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let local = tokio::task::LocalSet::new();
            // The cluster scenario runs once after the others, over systems
            // of two nodes each (cluster::run); with it alone, no server runs
            // on its own.
            let per_server: Vec<Scenario> =
                scenarios.iter().copied().filter(|&s| s != Scenario::Cluster && s != Scenario::Streams).collect();
            for &kind in servers.iter().filter(|_| !per_server.is_empty()) {
                let version = env.version(kind);
                eprintln!("== {} ({version})", kind.label());
                let mut sr = ServerResult {
                    kind,
                    version,
                    idle: None,
                    broadcast: None,
                    chat: None,
                    churn: None,
                    errors: Vec::new(),
                };
                for &sc in &per_server {
                    let name = match sc {
                        Scenario::Idle => "idle",
                        Scenario::Broadcast => "broadcast",
                        Scenario::Chat => "chat",
                        Scenario::Churn => "churn",
                        Scenario::Cluster | Scenario::Streams => continue,
                    };
                    let log = run_dir.join(format!("{}-{name}.log", kind.name()));
                    let mut srv = match env.start(kind, &log) {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("  {e}");
                            sr.errors.push(format!("{name}: {e}"));
                            continue;
                        }
                    };
                    eprintln!("- {name} (server pid {} on CPU {server_cpu})", srv.pid);
                    let ctx = match Ctx::new(kind, secret.clone()) {
                        Ok(c) => Rc::new(c),
                        Err(e) => {
                            sr.errors.push(format!("{name}: {e}"));
                            continue;
                        }
                    };
                    let pid = srv.pid;
                    let p = plan.clone();
                    match sc {
                        Scenario::Idle => sr.idle = Some(local.block_on(&rt, scenarios::idle(ctx, pid, &p))),
                        Scenario::Broadcast => {
                            sr.broadcast = Some(local.block_on(&rt, scenarios::broadcast(ctx, pid, &p)))
                        }
                        Scenario::Chat => sr.chat = Some(local.block_on(&rt, scenarios::chat(ctx, pid, &p))),
                        Scenario::Churn => sr.churn = Some(local.block_on(&rt, scenarios::churn(ctx, pid, &p))),
                        Scenario::Cluster | Scenario::Streams => {}
                    }
                    srv.stop();
                    // let the closed sockets of this scenario leave the kernel's tables
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                result.servers.push(sr);
            }
            if scenarios.contains(&Scenario::Cluster) {
                let systems = cluster::System::for_servers(&servers);
                if !systems.is_empty() {
                    result.cluster = Some(cluster::run(&env, &systems, &secret, &plan, &rt, &local));
                }
            }
            if scenarios.contains(&Scenario::Streams) && servers.contains(&Kind::Relay) {
                result.streams = Some(streams::run(&env, &secret, &plan, &rt, &local));
            }
            result.finished_unix = adapters::unix_now();
            let text = match serde_json::to_string_pretty(&result) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("bm-bench: {e}");
                    return ExitCode::from(1);
                }
            };
            if let Some(path) = out {
                if let Err(e) = std::fs::write(&path, &text) {
                    eprintln!("bm-bench: cannot write {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            if json {
                println!("{text}");
            }
            let failed = result.servers.iter().any(|s| !s.errors.is_empty())
                || result.cluster.iter().flat_map(|c| &c.systems).any(|s| !s.errors.is_empty())
                || result.streams.iter().any(|s| !s.errors.is_empty());
            if failed {
                eprintln!("bm-bench: some scenarios could not run (see errors in the result)");
                return ExitCode::from(1);
            }
            if check {
                let problems = report::check(&result);
                for p in &problems {
                    eprintln!("bm-bench check: {p}");
                }
                if !problems.is_empty() {
                    return ExitCode::from(3);
                }
                eprintln!("bm-bench check: every client connected and every event was delivered");
            }
            ExitCode::SUCCESS
        }
    }
}
