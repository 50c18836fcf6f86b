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
pub const CLOSE_CODES: [u16; 12] = [1000, 1001, 1002, 1007, 1008, 1013, 4001, 4003, 4008, 4009, 4013, 4029];

/// Push latency histogram bounds, seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0];

pub use bm_proto::api::Endpoint;

/// Why the HTTP layer refused or closed a client (or admin) connection or
/// request: the `reason` label of `bm_relay_refused_total`. Each is one
/// limit of `[limits]`, named after its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Total client connections at `max_connections`: closed at accept.
    MaxConnections,
    /// Anonymous connections at `max_pending_connections`: the oldest idle
    /// one closed to make room for the new one (or the new one closed, when
    /// every one is answering a request).
    MaxPending,
    /// One address at `max_connections_per_ip`: 429 at accept (or upgrade, behind a proxy).
    PerIpConnections,
    /// One address over `new_connections_per_ip_per_sec`: 429.
    PerIpRate,
    /// WebSocket upgrade refused (503) to keep `api_reserve_connections` for pushes.
    ApiReserve,
    /// Still anonymous `request_head_timeout_secs` after accept (silent, or
    /// only unsigned requests), or a later HTTP/1.1 head too slow: closed.
    RequestHeadTimeout,
    /// Request head over `max_request_head_bytes` / `max_headers`: 431.
    HeadTooLarge,
    /// Server API body not read within `body_timeout_secs`: 408.
    BodyTimeout,
    /// Bodies being read at `max_body_bytes_in_flight`: 503.
    BodyBudget,
    /// Admin listener at `admin_max_connections`: closed at accept.
    AdminConnections,
}

impl Refusal {
    /// Every reason, in metrics order.
    pub const ALL: [Refusal; 10] = [
        Refusal::MaxConnections,
        Refusal::MaxPending,
        Refusal::PerIpConnections,
        Refusal::PerIpRate,
        Refusal::ApiReserve,
        Refusal::RequestHeadTimeout,
        Refusal::HeadTooLarge,
        Refusal::BodyTimeout,
        Refusal::BodyBudget,
        Refusal::AdminConnections,
    ];

    /// The `reason` label: the limit's key.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxPending => "max_pending_connections",
            Refusal::PerIpConnections => "max_connections_per_ip",
            Refusal::PerIpRate => "new_connections_per_ip_per_sec",
            Refusal::ApiReserve => "api_reserve_connections",
            Refusal::RequestHeadTimeout => "request_head_timeout_secs",
            Refusal::HeadTooLarge => "max_request_head_bytes",
            Refusal::BodyTimeout => "body_timeout_secs",
            Refusal::BodyBudget => "max_body_bytes_in_flight",
            Refusal::AdminConnections => "admin_max_connections",
        }
    }
}

/// Every counter of the relay.
#[derive(Default)]
pub struct Metrics {
    /// WebSocket upgrades accepted.
    pub ws_opened: AtomicU64,
    /// Sockets currently open (authenticated or not).
    pub ws_open: AtomicU64,
    /// Streams (`/v1/stream`) opened: counted apart from WebSockets, so an
    /// operator sees how many clients needed the fallback.
    pub streams_opened: AtomicU64,
    /// Streams open now.
    pub streams_open: AtomicU64,
    /// Closes initiated by the relay, by code (index in [`CLOSE_CODES`], last = other).
    closes: [AtomicU64; CLOSE_CODES.len() + 1],
    /// Server API requests: endpoint × {ok, client_error, unauthorized, unavailable}.
    requests: [[AtomicU64; 4]; Endpoint::ALL.len()],
    /// Client connections open (HTTP and WebSocket), for `max_connections`.
    pub client_connections: AtomicU64,
    /// Anonymous client connections (no signed request, no upgrade yet).
    pub pending_connections: AtomicU64,
    /// Admin connections open.
    pub admin_connections: AtomicU64,
    /// Idle keep-alive connections closed after `keepalive_idle_secs`.
    pub idle_closes: AtomicU64,
    /// Refusals by [`Refusal`] (index in [`Refusal::ALL`]).
    refused: [AtomicU64; Refusal::ALL.len()],
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
    /// Signed server API requests by protocol version (index 0: v1, 1:
    /// v2), refused v1 ones included: what an operator watches before
    /// setting `accept_v1 = false`.
    requests_by_protocol: [AtomicU64; 2],
    /// Socket `auth`s with a valid signature, by the token's protocol
    /// version (refused v1 ones included).
    auths_by_protocol: [AtomicU64; 2],
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

    /// Counts a server API request by endpoint and result.
    pub fn request(&self, endpoint: Endpoint, result: RequestResult) {
        self.requests[endpoint as usize][result as usize].fetch_add(1, Relaxed);
    }

    /// Counts a signed server API request of protocol `v` (1 or 2).
    pub fn request_protocol(&self, v: u8) {
        self.requests_by_protocol[usize::from(v >= 2)].fetch_add(1, Relaxed);
    }

    /// Counts a socket `auth` whose token was of protocol `v` (1 or 2).
    pub fn auth_protocol(&self, v: u8) {
        self.auths_by_protocol[usize::from(v >= 2)].fetch_add(1, Relaxed);
    }

    /// Counts one refusal.
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    /// Refusals counted so far for `why`.
    pub fn refused_count(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Relaxed)
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
        g(
            &mut o,
            "bm_relay_connections_opened_total",
            "WebSocket upgrades accepted.",
            "counter",
            self.ws_opened.load(Relaxed),
        );
        g(&mut o, "bm_relay_streams", "Streams (/v1/stream) open.", "gauge", self.streams_open.load(Relaxed));
        g(
            &mut o,
            "bm_relay_streams_opened_total",
            "Streams (/v1/stream) opened.",
            "counter",
            self.streams_opened.load(Relaxed),
        );
        g(
            &mut o,
            "bm_relay_events_pushed_total",
            "Events accepted by /v1/push.",
            "counter",
            self.events_pushed.load(Relaxed),
        );
        let _ =
            writeln!(o, "# HELP bm_relay_events_total Pushed events by result.\n# TYPE bm_relay_events_total counter");
        let _ = writeln!(o, "bm_relay_events_total{{result=\"delivered\"}} {}", self.events_delivered.load(Relaxed));
        let _ = writeln!(o, "bm_relay_events_total{{result=\"unrouted\"}} {}", self.events_unrouted.load(Relaxed));
        g(&mut o, "bm_relay_deliveries_total", "Frames queued to sockets.", "counter", self.deliveries.load(Relaxed));
        g(&mut o, "bm_relay_pubs_total", "Client pub frames relayed.", "counter", self.pubs.load(Relaxed));
        g(&mut o, "bm_relay_frame_errors_total", "Client frames refused.", "counter", self.frame_errors.load(Relaxed));
        let _ = writeln!(
            o,
            "# HELP bm_relay_closes_total Sockets closed by the relay, by code.\n# TYPE bm_relay_closes_total counter"
        );
        for (i, c) in self.closes.iter().enumerate() {
            let code = CLOSE_CODES.get(i).map(|c| c.to_string()).unwrap_or_else(|| "other".into());
            let _ = writeln!(o, "bm_relay_closes_total{{code=\"{code}\"}} {}", c.load(Relaxed));
        }
        let _ = writeln!(o, "# HELP bm_relay_slow_consumer_closes_total Sockets closed with 4008.\n# TYPE bm_relay_slow_consumer_closes_total counter");
        let _ = writeln!(o, "bm_relay_slow_consumer_closes_total {}", self.closes_with(4008));
        let _ = writeln!(o, "# HELP bm_relay_sockets_refused_total Sockets closed at admission by a cap.\n# TYPE bm_relay_sockets_refused_total counter");
        for (i, name) in SOCKET_REFUSALS.iter().enumerate() {
            let _ = writeln!(
                o,
                "bm_relay_sockets_refused_total{{cap=\"{name}\"}} {}",
                self.sockets_refused[i].load(Relaxed)
            );
        }
        g(&mut o, "bm_relay_revocations", "Revocation records held.", "gauge", self.revocation_records.load(Relaxed));
        g(
            &mut o,
            "bm_relay_revocations_evicted_total",
            "Revocation records folded into a site-wide floor.",
            "counter",
            self.revocations_evicted.load(Relaxed),
        );
        let _ = writeln!(o, "# HELP bm_relay_requests_total Server API requests by endpoint and result.\n# TYPE bm_relay_requests_total counter");
        for (e, row) in Endpoint::ALL.iter().zip(&self.requests) {
            for (r, c) in row.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "bm_relay_requests_total{{endpoint=\"{}\",result=\"{}\"}} {}",
                    e.name(),
                    RESULT_NAMES[r],
                    c.load(Relaxed)
                );
            }
        }
        for (name, help, counts) in [
            (
                "bm_relay_requests_by_protocol_total",
                "Signed server API requests by protocol version (X-BM-Protocol), refused ones included.",
                &self.requests_by_protocol,
            ),
            (
                "bm_relay_auths_by_protocol_total",
                "Socket auths with a genuine token, by the token's protocol version (v claim), refused ones included.",
                &self.auths_by_protocol,
            ),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            for (i, c) in counts.iter().enumerate() {
                let _ = writeln!(o, "{name}{{protocol=\"{}\"}} {}", i + 1, c.load(Relaxed));
            }
        }
        g(
            &mut o,
            "bm_relay_client_connections",
            "Client connections open (HTTP and WebSocket).",
            "gauge",
            self.client_connections.load(Relaxed),
        );
        g(
            &mut o,
            "bm_relay_pending_connections",
            "Anonymous client connections (no signed request or upgrade yet).",
            "gauge",
            self.pending_connections.load(Relaxed),
        );
        g(
            &mut o,
            "bm_relay_admin_connections",
            "Admin connections open.",
            "gauge",
            self.admin_connections.load(Relaxed),
        );
        g(
            &mut o,
            "bm_relay_idle_closes_total",
            "Idle keep-alive connections closed.",
            "counter",
            self.idle_closes.load(Relaxed),
        );
        let _ = writeln!(o, "# HELP bm_relay_refused_total Connections and requests refused or closed by a limit, by the limit's key.\n# TYPE bm_relay_refused_total counter");
        for (r, c) in Refusal::ALL.iter().zip(&self.refused) {
            let _ = writeln!(o, "bm_relay_refused_total{{reason=\"{}\"}} {}", r.name(), c.load(Relaxed));
        }
        let _ = writeln!(o, "# HELP bm_relay_push_duration_seconds Time to validate and queue one push request.\n# TYPE bm_relay_push_duration_seconds histogram");
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "bm_relay_push_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.latency_buckets[i].load(Relaxed)
            );
        }
        let n = self.latency_count.load(Relaxed);
        let _ = writeln!(o, "bm_relay_push_duration_seconds_bucket{{le=\"+Inf\"}} {n}");
        let _ =
            writeln!(o, "bm_relay_push_duration_seconds_sum {}", self.latency_sum_micros.load(Relaxed) as f64 / 1e6);
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
        m.request(Endpoint::Push, RequestResult::Ok);
        m.request(Endpoint::Disconnect, RequestResult::Unauthorized);
        m.refused(Refusal::MaxPending);
        m.refused(Refusal::MaxPending);
        m.client_connections.store(7, Relaxed);
        m.request_protocol(2);
        m.auth_protocol(1);
        m.push_latency(Duration::from_micros(300));
        let text = m.render(Counts { sockets: 2, users: 1, subscriptions: 3, queue_bytes: 10 }, 1);
        assert!(text.contains("bm_relay_closes_total{code=\"4008\"} 1"));
        assert!(text.contains("bm_relay_closes_total{code=\"other\"} 1"));
        assert!(text.contains("bm_relay_requests_total{endpoint=\"push\",result=\"ok\"} 1"));
        assert!(text.contains("bm_relay_push_duration_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("bm_relay_push_duration_seconds_bucket{le=\"0.00025\"} 0"));
        assert!(text.contains("bm_relay_subscriptions 3"));
        assert!(text.contains("bm_relay_requests_total{endpoint=\"disconnect\",result=\"unauthorized\"} 1"));
        assert!(text.contains("bm_relay_refused_total{reason=\"max_pending_connections\"} 2"));
        assert!(text.contains("bm_relay_refused_total{reason=\"body_timeout_secs\"} 0"));
        assert!(text.contains("bm_relay_client_connections 7"));
        assert!(text.contains("bm_relay_requests_by_protocol_total{protocol=\"1\"} 0"));
        assert!(text.contains("bm_relay_requests_by_protocol_total{protocol=\"2\"} 1"));
        assert!(text.contains("bm_relay_auths_by_protocol_total{protocol=\"1\"} 1"));
        for r in Refusal::ALL {
            assert_eq!(Refusal::ALL[r as usize], r, "ALL is in discriminant order");
        }
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::ALL[e as usize], e);
            assert_eq!(Endpoint::from_path(&format!("/v1/{}", e.name())), Some(e));
        }
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
