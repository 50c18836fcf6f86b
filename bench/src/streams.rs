//! The streaming fallback against WebSockets, on bm-relay alone (issue
//! #15: "the relay's performance targets apply to it too"): the same
//! relay build, started fresh for each transport (so neither inherits the
//! other's freed memory), pinned like every server; the same number of
//! clients held idle (RSS per client), then the same broadcast rounds to
//! all of them (server CPU per delivery). Sockets first, then streams,
//! `rounds` times alternating, so a shared machine's drifting load weighs
//! on both alike; the ratios are stream / socket.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::sleep;

use crate::adapters::{Ctx, Kind};
use crate::clients::{Shared, Transport};
use crate::scenarios::{self, Broadcast, Plan};
use crate::{procstat, server};

/// One transport's figures (one fresh relay).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leg {
    /// `socket` or `stream`.
    pub transport: String,
    /// Clients held.
    pub clients: u64,
    /// Clients that failed to connect.
    pub failed: u64,
    /// Relay RSS before the clients, bytes.
    pub rss_base_bytes: u64,
    /// (RSS with the clients idle − base) / clients.
    pub rss_per_client: f64,
    /// The broadcast rounds to them.
    pub broadcast: Broadcast,
}

/// The scenario's result: the legs in the order run, and the ratios of
/// their medians.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamsRun {
    /// When it started, unix seconds (it may be run on its own, apart
    /// from the rest of a result file).
    #[serde(default)]
    pub started_unix: u64,
    /// The relay's version line.
    #[serde(default)]
    pub version: String,
    /// Every leg, sockets and streams alternating.
    pub legs: Vec<Leg>,
    /// Median RSS per stream / median RSS per socket.
    pub memory_ratio: f64,
    /// Median CPU per delivery to a stream / to a socket.
    pub cpu_ratio: f64,
    /// What could not run.
    pub errors: Vec<String>,
}

/// The median of a few figures (each leg's; at least one).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl StreamsRun {
    /// The median of `f` over the legs of one transport.
    pub fn median_of(&self, transport: &str, f: impl Fn(&Leg) -> f64) -> f64 {
        median(self.legs.iter().filter(|l| l.transport == transport).map(f).collect())
    }
}

async fn leg(ctx: Rc<Ctx>, pid: u32, plan: &Plan, transport: Transport) -> Leg {
    let name = match transport {
        Transport::WebSocket => "socket",
        Transport::Stream => "stream",
    };
    let shared = Shared::new();
    let (stop_tx, stop) = watch::channel(false);
    let tick = scenarios::progress(format!("relay {name}s"), shared.clone(), Rc::new(Cell::new(0)));
    sleep(Duration::from_millis(500)).await;
    let base = procstat::rss_bytes(pid);
    let n = plan.broadcast_clients;
    scenarios::connect_range(transport, std::slice::from_ref(&ctx), &shared, 1, n, plan.sources, &stop).await;
    sleep(Duration::from_secs(2)).await;
    let held = shared.ready.get() - shared.lost.get();
    let rss_per_client = procstat::rss_bytes(pid).saturating_sub(base) as f64 / held.max(1) as f64;
    eprintln!("  [relay {name}s] {held} idle: {rss_per_client:.0} B of relay RSS each");
    let broadcast = scenarios::broadcast_rounds(&ctx, pid, &shared, n, plan.broadcast_rounds).await;
    eprintln!(
        "  [relay {name}s] broadcast: {} of {} delivered, {:.2} CPU-s per million deliveries",
        broadcast.delivered, broadcast.expected, broadcast.cpu_s_per_million
    );
    let _ = stop_tx.send(true);
    tick.abort();
    if let Some(e) = shared.last_error.borrow().as_ref() {
        eprintln!("  [relay {name}s] last error: {e}");
    }
    sleep(Duration::from_millis(300)).await;
    Leg {
        transport: name.into(),
        clients: held,
        failed: shared.failed.get(),
        rss_base_bytes: base,
        rss_per_client,
        broadcast,
    }
}

/// Runs the scenario: `plan.cluster_rounds.max(1)` pairs of legs (the
/// cluster scenario's round count: both are about comparing fairly on a
/// drifting machine).
pub fn run(
    env: &server::Env,
    secret: &bm_proto::SiteSecret,
    plan: &Plan,
    rt: &tokio::runtime::Runtime,
    local: &tokio::task::LocalSet,
) -> StreamsRun {
    eprintln!("== bm-relay: streams (/v1/stream) against sockets");
    let mut out = StreamsRun {
        started_unix: crate::adapters::unix_now(),
        version: env.version(Kind::Relay),
        ..StreamsRun::default()
    };
    for round in 0..plan.cluster_rounds.max(1) {
        for transport in [Transport::WebSocket, Transport::Stream] {
            let log = env.run_dir.join(format!("relay-streams-{round}-{transport:?}.log"));
            let mut srv = match env.start(Kind::Relay, &log) {
                Ok(s) => s,
                Err(e) => {
                    out.errors.push(format!("streams: {e}"));
                    return out;
                }
            };
            let ctx = match Ctx::new(Kind::Relay, secret.clone()) {
                Ok(c) => Rc::new(c),
                Err(e) => {
                    out.errors.push(format!("streams: {e}"));
                    return out;
                }
            };
            eprintln!("- round {} {transport:?} (server pid {})", round + 1, srv.pid);
            out.legs.push(local.block_on(rt, leg(ctx, srv.pid, plan, transport)));
            srv.stop();
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let socket_mem = out.median_of("socket", |l| l.rss_per_client);
    let socket_cpu = out.median_of("socket", |l| l.broadcast.cpu_s_per_million);
    out.memory_ratio = out.median_of("stream", |l| l.rss_per_client) / socket_mem.max(1e-9);
    out.cpu_ratio = out.median_of("stream", |l| l.broadcast.cpu_s_per_million) / socket_cpu.max(1e-9);
    eprintln!("  streams/sockets: memory per client {:.2}x, CPU per delivery {:.2}x", out.memory_ratio, out.cpu_ratio);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }
}
