//! Counters and gauges, rendered in the Prometheus text format on the admin
//! listener's `/metrics`.
//!
//! Hand-rolled relaxed atomics rather than a metrics framework: the set is
//! small and fixed, every update is one `fetch_add` on the hot path, and
//! nothing here allocates per event. Only counts, codes and results are
//! recorded, never ids of users or threads, payloads or tokens.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::router::Counts;

/// Close codes counted individually; anything else lands in `other`.
pub const CLOSE_CODES: [u16; 10] = [1000, 1001, 1008, 1013, 4001, 4003, 4008, 4009, 4013, 4029];

/// Push latency histogram bounds, seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0];

/// Request results of the server API, counted by endpoint and status.
pub const ENDPOINTS: [&str; 3] = ["push", "presence", "disconnect"];

/// Every counter of the relay.
#[derive(Default)]
pub struct Metrics {
    /// WebSocket upgrades accepted.
    pub ws_opened: AtomicU64,
    /// Sockets currently open (authenticated or not).
    pub ws_open: AtomicU64,
    /// Closes initiated by the relay, by code (index in [`CLOSE_CODES`], last = other).
    closes: [AtomicU64; CLOSE_CODES.len() + 1],
    /// Server API requests: endpoint × {ok, client_error, unauthorized, unavailable}.
    requests: [[AtomicU64; 4]; ENDPOINTS.len()],
    /// Events accepted in pushes.
    pub events_pushed: AtomicU64,
    /// Events that reached at least one socket.
    pub events_delivered: AtomicU64,
    /// Events that reached no socket.
    pub events_unrouted: AtomicU64,
    /// Frames queued to sockets (server pushes and client pubs).
    pub deliveries: AtomicU64,
    /// Client `pub` frames accepted.
    pub pubs: AtomicU64,
    /// Client frames refused with an error reply.
    pub frame_errors: AtomicU64,
    /// Sockets refused by a cap, by [`SocketRefusal`].
    sockets_refused: [AtomicU64; SOCKET_REFUSALS.len()],
    /// Revocation records folded into a site's floor (the site was full).
    pub revocations_evicted: AtomicU64,
    /// Revocation records held (updated on each `/v1/disconnect`).
    pub revocation_records: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

/// Result class of a server API request.
#[derive(Debug, Clone, Copy)]
pub enum RequestResult {
    /// 2xx.
    Ok = 0,
    /// 400, 404, 405, 413, 429.
    ClientError = 1,
    /// 401.
    Unauthorized = 2,
    /// 503.
    Unavailable = 3,
}

const RESULT_NAMES: [&str; 4] = ["ok", "client_error", "unauthorized", "unavailable"];

/// Which cap refused a socket after its upgrade.
#[derive(Debug, Clone, Copy)]
pub enum SocketRefusal {
    /// `max_unauthenticated_sockets` (close 1013).
    Authenticating = 0,
    /// `max_sockets_per_user` (close 4029).
    User = 1,
    /// `max_sockets_per_site` (close 1013).
    Site = 2,
}

const SOCKET_REFUSALS: [&str; 3] = ["authenticating", "user", "site"];

impl Metrics {
    /// Counts a relay-initiated close.
    pub fn close(&self, code: u16) {
        let i = CLOSE_CODES.iter().position(|c| *c == code).unwrap_or(CLOSE_CODES.len());
        self.closes[i].fetch_add(1, Relaxed);
    }

    /// Closes counted so far with `code`.
    pub fn closes_with(&self, code: u16) -> u64 {
        let i = CLOSE_CODES.iter().position(|c| *c == code).unwrap_or(CLOSE_CODES.len());
        self.closes[i].load(Relaxed)
    }

    /// Counts a server API request by endpoint index and result.
    pub fn request(&self, endpoint: usize, result: RequestResult) {
        if let Some(row) = self.requests.get(endpoint) {
            row[result as usize].fetch_add(1, Relaxed);
        }
    }

    /// Counts a socket refused by a cap.
    pub fn socket_refused(&self, why: SocketRefusal) {
        self.sockets_refused[why as usize].fetch_add(1, Relaxed);
    }

    /// Records one push's handling time.
    pub fn push_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, counts: Counts, sites: usize) -> String {
        let mut o = String::with_capacity(4096);
        let g = |o: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        g(&mut o, "bm_relay_sites", "Sites configured.", "gauge", sites as u64);
        g(&mut o, "bm_relay_connections", "WebSockets open.", "gauge", self.ws_open.load(Relaxed));
        g(&mut o, "bm_relay_authenticated_connections", "Authenticated WebSockets.", "gauge", counts.sockets);
        g(&mut o, "bm_relay_users", "Users with at least one socket.", "gauge", counts.users);
        g(&mut o, "bm_relay_subscriptions", "Thread subscriptions.", "gauge", counts.subscriptions);
        g(&mut o, "bm_relay_queue_bytes", "Bytes waiting in outbound queues.", "gauge", counts.queue_bytes);
        g(&mut o, "bm_relay_connections_opened_total", "WebSocket upgrades accepted.", "counter", self.ws_opened.load(Relaxed));
        g(&mut o, "bm_relay_events_pushed_total", "Events accepted by /v1/push.", "counter", self.events_pushed.load(Relaxed));
        let _ = writeln!(o, "# HELP bm_relay_events_total Pushed events by result.\n# TYPE bm_relay_events_total counter");
        let _ = writeln!(o, "bm_relay_events_total{{result=\"delivered\"}} {}", self.events_delivered.load(Relaxed));
        let _ = writeln!(o, "bm_relay_events_total{{result=\"unrouted\"}} {}", self.events_unrouted.load(Relaxed));
        g(&mut o, "bm_relay_deliveries_total", "Frames queued to sockets.", "counter", self.deliveries.load(Relaxed));
        g(&mut o, "bm_relay_pubs_total", "Client pub frames relayed.", "counter", self.pubs.load(Relaxed));
        g(&mut o, "bm_relay_frame_errors_total", "Client frames refused.", "counter", self.frame_errors.load(Relaxed));
        let _ = writeln!(o, "# HELP bm_relay_closes_total Sockets closed by the relay, by code.\n# TYPE bm_relay_closes_total counter");
        for (i, c) in self.closes.iter().enumerate() {
            let code = CLOSE_CODES.get(i).map(|c| c.to_string()).unwrap_or_else(|| "other".into());
            let _ = writeln!(o, "bm_relay_closes_total{{code=\"{code}\"}} {}", c.load(Relaxed));
        }
        let _ = writeln!(o, "# HELP bm_relay_slow_consumer_closes_total Sockets closed with 4008.\n# TYPE bm_relay_slow_consumer_closes_total counter");
        let _ = writeln!(o, "bm_relay_slow_consumer_closes_total {}", self.closes_with(4008));
        let _ = writeln!(o, "# HELP bm_relay_sockets_refused_total Sockets closed at admission by a cap.\n# TYPE bm_relay_sockets_refused_total counter");
        for (i, name) in SOCKET_REFUSALS.iter().enumerate() {
            let _ = writeln!(o, "bm_relay_sockets_refused_total{{cap=\"{name}\"}} {}", self.sockets_refused[i].load(Relaxed));
        }
        g(&mut o, "bm_relay_revocations", "Revocation records held.", "gauge", self.revocation_records.load(Relaxed));
        g(&mut o, "bm_relay_revocations_evicted_total", "Revocation records folded into a site-wide floor.", "counter", self.revocations_evicted.load(Relaxed));
        let _ = writeln!(o, "# HELP bm_relay_requests_total Server API requests by endpoint and result.\n# TYPE bm_relay_requests_total counter");
        for (e, row) in self.requests.iter().enumerate() {
            for (r, c) in row.iter().enumerate() {
                let _ = writeln!(o, "bm_relay_requests_total{{endpoint=\"{}\",result=\"{}\"}} {}", ENDPOINTS[e], RESULT_NAMES[r], c.load(Relaxed));
            }
        }
        let _ = writeln!(o, "# HELP bm_relay_push_duration_seconds Time to validate and queue one push request.\n# TYPE bm_relay_push_duration_seconds histogram");
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(o, "bm_relay_push_duration_seconds_bucket{{le=\"{b}\"}} {}", self.latency_buckets[i].load(Relaxed));
        }
        let n = self.latency_count.load(Relaxed);
        let _ = writeln!(o, "bm_relay_push_duration_seconds_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(o, "bm_relay_push_duration_seconds_sum {}", self.latency_sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(o, "bm_relay_push_duration_seconds_count {n}");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.close(4008);
        m.close(1234);
        m.request(0, RequestResult::Ok);
        m.push_latency(Duration::from_micros(300));
        let text = m.render(Counts { sockets: 2, users: 1, subscriptions: 3, queue_bytes: 10 }, 1);
        assert!(text.contains("bm_relay_closes_total{code=\"4008\"} 1"));
        assert!(text.contains("bm_relay_closes_total{code=\"other\"} 1"));
        assert!(text.contains("bm_relay_requests_total{endpoint=\"push\",result=\"ok\"} 1"));
        assert!(text.contains("bm_relay_push_duration_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("bm_relay_push_duration_seconds_bucket{le=\"0.00025\"} 0"));
        assert!(text.contains("bm_relay_subscriptions 3"));
        m.socket_refused(SocketRefusal::User);
        let text = m.render(Counts::default(), 1);
        assert!(text.contains("bm_relay_sockets_refused_total{cap=\"user\"} 1"), "{text}");
        assert!(text.contains("bm_relay_sockets_refused_total{cap=\"site\"} 0"));
        assert!(text.contains("bm_relay_closes_total{code=\"1013\"} 0"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split(' ').count(), 2, "{line}");
        }
    }
}
