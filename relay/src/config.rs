//! Relay configuration: a TOML file, overridden by environment variables,
//! overridden by command-line flags.
//!
//! ```toml
//! listen = "127.0.0.1:8787"
//! admin_listen = "127.0.0.1:8788"
//!
//! [sites]
//! "example.com" = "<relay key, base64url>"
//!
//! [limits]          # every key optional; the protocol's defaults otherwise
//! max_skew_secs = 60
//!
//! [log]
//! format = "text"   # or "json"
//! filter = "info"   # RUST_LOG syntax; the RUST_LOG variable wins
//! ```
//!
//! The file is parsed strictly (unknown keys are refused) and every error
//! names the line and the key at fault, so an operator's typo is refused at
//! start (or at SIGHUP, where the running configuration stays in force)
//! instead of being silently ignored. Relay keys are never echoed in errors.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bm_proto::{RelayKey, SiteId};
use serde::Deserialize;
use toml::Spanned;

/// Default client-facing listen address (WebSockets and the server API).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// Default admin listen address (`/healthz`, `/metrics`).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8788";

/// A configuration that cannot be used; the message names where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file, an environment variable or a flag holds a bad value.
    #[error("{origin}: {message}")]
    Invalid {
        /// Where the value came from, e.g. `relay.toml line 7, key limits.ping_interval_secs`.
        origin: String,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(origin: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { origin: origin.into(), message: message.into() }
}

/// Every tunable limit. Each has the protocol's default (or, where the
/// protocol is silent, ours, documented in docs/PROTOCOL.md and DEPLOY.md).
/// Durations are seconds and may be fractional (tests use short ones).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// §5: tolerated clock difference of a signed request.
    pub max_skew_secs: u64,
    /// §5: events in one push request.
    pub max_events: usize,
    /// §5: user ids in one event's `to` (and presence/disconnect lists).
    pub max_recipients: usize,
    /// §4: decoded `c` of a pushed envelope.
    pub max_ciphertext: usize,
    /// §5: bytes in one server API request body.
    pub max_body: usize,
    /// §6: decoded `c` of a client `pub` envelope.
    pub max_pub_ciphertext: usize,
    /// §6: `pub` token bucket refill rate, per second.
    pub pub_rate_per_sec: f64,
    /// §6: `pub` token bucket size.
    pub pub_burst: f64,
    /// Our choice: all client frames, per second; past it the socket is
    /// closed with 4029 (a flood, not a burst of typing indicators).
    pub frame_rate_per_sec: f64,
    /// Our choice: bucket size of the all-frames limiter.
    pub frame_burst: f64,
    /// §6: time allowed between the upgrade and a valid `auth`.
    pub auth_timeout_secs: f64,
    /// §6: interval of relay WebSocket pings.
    pub ping_interval_secs: f64,
    /// §6: a socket silent this long is closed.
    pub idle_timeout_secs: f64,
    /// §6: bytes a socket's outbound queue may hold; past it, close 4008.
    pub outbound_queue_bytes: usize,
    /// Our choice: largest client frame (bytes); larger ones close 4013.
    pub max_frame_bytes: usize,
    /// Our choice: thread subscriptions per socket.
    pub max_subscriptions: usize,
    /// Our choice: longest token lifetime (`exp - iat`) accepted, seconds;
    /// also how long a `/v1/disconnect` revocation is remembered.
    pub max_token_ttl_secs: u64,
    /// How long a graceful shutdown waits for sockets to close.
    pub shutdown_deadline_secs: f64,
    /// Bytes of tungstenite's eagerly allocated read buffer per socket.
    pub ws_read_buffer: usize,
    /// Bytes tungstenite buffers before handing its own frames (pongs, the
    /// close handshake) to the socket's outbox; events and replies bypass
    /// it (they are written pre-encoded by the outbox).
    pub ws_write_buffer: usize,
    /// Our choice: sockets one user may hold at once (per site); one more
    /// is closed with 4029. One browser needs one (tabs share it where the
    /// client can); the cap stops one stolen or scripted token from
    /// opening thousands. 0: no cap.
    pub max_sockets_per_user: usize,
    /// Our choice: sockets one site may hold at once (a relay shared by
    /// several sites keeps one from starving the others); one more is
    /// closed with 1013. 0: no cap.
    pub max_sockets_per_site: usize,
    /// Our choice: sockets between upgrade and a valid `auth`, in total;
    /// one more is closed at once with 1013 (each costs memory and an fd
    /// for up to `auth_timeout_secs` before it proves anything).
    pub max_unauthenticated_sockets: usize,
    /// Our choice: `/v1/disconnect` records kept per site; past it the
    /// oldest fold into a site-wide floor (older tokens of the whole site
    /// are refused), so memory is bounded and no revocation is lost.
    pub max_revocations_per_site: usize,
    /// Our choice: reconnects per second that a shutdown or reload asks
    /// for: each socket it closes is told (`retry_ms=` in the close reason)
    /// a random delay within `sockets / pace` seconds, so thousands of
    /// browsers do not return in the same second.
    pub reconnect_pace_per_sec: f64,
    /// Our choice: a shutdown or reload closes its sockets over this many
    /// seconds, in small batches, rather than all at once (clients that
    /// ignore `retry_ms` are spread too). Shorter than
    /// `shutdown_deadline_secs`.
    pub close_spread_secs: f64,

    // Admission of client connections (issue #11: no anonymous client can
    // exhaust the relay). Read at each accept, so a reload applies to new
    // connections; open ones keep the values they were admitted under.
    /// Time from accept an anonymous connection is given: a silent one
    /// (no complete request head: covers HTTP/2 preface and version
    /// detection, which hyper does not time) is dropped then; one that made
    /// only unsigned or refused requests is closed once none is in flight.
    /// A signed request or a WebSocket upgrade ends the anonymity.
    pub request_head_timeout_secs: f64,
    /// An idle keep-alive connection (HTTP/1.1 or h2c, no request in
    /// flight) is closed after this long (an idle connection costs an fd
    /// and hyper's buffers). On HTTP/1.1 a later request's head must be
    /// complete within this plus `request_head_timeout_secs` of the
    /// previous reply. h2 pings at half of it.
    pub keepalive_idle_secs: f64,
    /// Total time allowed to read one server API body: without it a
    /// client sending a byte a second holds a buffer and a task forever.
    pub body_timeout_secs: f64,
    /// Bytes of server API bodies held while being read, over all
    /// requests, counted as they arrive; the request that would cross it
    /// gets 503. Bounds the memory unsigned bodies can pin before their
    /// signature is checked (one cannot be checked before the whole body).
    pub max_body_bytes_in_flight: usize,
    /// Client connections open at once (WebSockets included). Each costs a
    /// file descriptor: keep it below the process's `RLIMIT_NOFILE`, with
    /// room for the admin listener. Past it, new connections are closed
    /// at accept, before anything is read.
    pub max_connections: usize,
    /// Connections kept for the signed server API: WebSocket upgrades are
    /// refused (503) once `max_connections - api_reserve_connections`
    /// connections are open, so browsers filling the relay cannot stop
    /// WordPress's pushes. Keep it above `max_pending_connections`: then
    /// WebSockets plus anonymous connections always leave room for signed
    /// requests.
    pub api_reserve_connections: usize,
    /// Anonymous connections: neither a signed server API request nor a
    /// WebSocket upgrade yet (silent, trickling, half a preface, junk
    /// requests): the cheapest thing to open in bulk. Past it, the oldest
    /// one with no request in flight is closed to make room, so a flood
    /// shortens how long such a connection may stay instead of locking out
    /// new clients (which send their request at once).
    pub max_pending_connections: usize,
    /// Connections open at once from one client address (IPv6: one /64).
    /// Generous by default: a NAT'd office shares one address.
    pub max_connections_per_ip: usize,
    /// New connections per second from one client address (token bucket).
    pub new_connections_per_ip_per_sec: f64,
    /// Bucket size of `new_connections_per_ip_per_sec`.
    pub new_connections_per_ip_burst: f64,
    /// Peers (CIDRs, e.g. "127.0.0.1/32") whose `X-Forwarded-For` names the
    /// client: its right-most address that is not itself a trusted proxy.
    /// From any other peer the header is ignored (anyone can write it).
    /// Connections from a trusted proxy are not counted per address at
    /// accept; each WebSocket upgrade through it counts its client address.
    /// Default: loopback (nginx on the same host, see docs/DEPLOY.md).
    pub trusted_proxies: Vec<Cidr>,
    /// Origins (`https://example.com`, exact, as browsers send them) whose
    /// pages may open `/v1/ws` and `/v1/stream`; empty (the default): any.
    /// A request with another `Origin` is refused (403 `forbidden_origin`);
    /// one without (not a browser) is not: only a browser's `Origin` can
    /// be trusted to name the page, and this stops other sites' pages.
    pub allowed_origins: Vec<String>,
    /// Largest HTTP/1.1 request head (hyper's read buffer; at least 8192)
    /// and h2 header list, bytes. Past it, 431. Also caps the per-connection
    /// read buffer (hyper's default is ~400 KiB).
    pub max_request_head_bytes: usize,
    /// Headers in one HTTP/1.1 request; past it, 431.
    pub max_headers: usize,
    /// Concurrent h2 streams per connection (each may be reading a body).
    pub h2_max_concurrent_streams: u32,
    /// Connections open at once on the admin listener; past it, closed at
    /// accept (a scraper needs one or two).
    pub admin_max_connections: usize,
}

/// True for an origin as a browser serializes it in `Origin`:
/// `http(s)://host[:port]`, lower case, with nothing after: a value with a
/// path or a slash would never match and silently refuse every page.
fn is_origin(o: &str) -> bool {
    let Some(rest) = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://")) else { return false };
    !rest.is_empty() && rest.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-:[]".contains(&c))
}

/// An IP network (`addr/prefix`), for `trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `v6::/n` or a bare address (a single host).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr =
            addr.trim().parse().map_err(|_| format!("`{}` is not an IP address", addr.escape_default()))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("`{}` is not a prefix length of 0..={max}", p.escape_default())),
            },
        };
        Ok(Cidr { net: mask(net, prefix), prefix })
    }

    /// Whether `ip` is inside the network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

/// `ip` with every bit past `prefix` cleared.
pub fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Cidr::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Default for Limits {
    fn default() -> Self {
        let api = bm_proto::api::Limits::default();
        Limits {
            max_skew_secs: bm_proto::signing::DEFAULT_MAX_SKEW_SECS,
            max_events: api.max_events,
            max_recipients: api.max_recipients,
            max_ciphertext: api.max_ciphertext,
            max_body: api.max_body,
            max_pub_ciphertext: 16 * 1024,
            pub_rate_per_sec: 10.0,
            pub_burst: 20.0,
            frame_rate_per_sec: 50.0,
            frame_burst: 100.0,
            auth_timeout_secs: 10.0,
            ping_interval_secs: 25.0,
            idle_timeout_secs: 60.0,
            // Room for one whole push (max_body) plus frame overhead, so a
            // single large push never closes a healthy socket (validated).
            outbound_queue_bytes: 2 * 1024 * 1024,
            max_frame_bytes: 32 * 1024,
            max_subscriptions: 256,
            max_token_ttl_secs: 86_400,
            shutdown_deadline_secs: 10.0,
            ws_read_buffer: 2 * 1024,
            ws_write_buffer: 8 * 1024,
            max_sockets_per_user: 16,
            max_sockets_per_site: 0,
            max_unauthenticated_sockets: 2000,
            max_revocations_per_site: 100_000,
            reconnect_pace_per_sec: 500.0,
            close_spread_secs: 2.0,
            request_head_timeout_secs: 10.0,
            keepalive_idle_secs: 60.0,
            body_timeout_secs: 10.0,
            max_body_bytes_in_flight: 64 * 1024 * 1024,
            max_connections: 18_000,
            api_reserve_connections: 2_500,
            max_pending_connections: 2_000,
            max_connections_per_ip: 500,
            new_connections_per_ip_per_sec: 50.0,
            new_connections_per_ip_burst: 100.0,
            // Loopback: the documented deployment has nginx on the same
            // host, and without this every WebSocket would count against
            // nginx's one address (max_connections_per_ip).
            trusted_proxies: vec![Cidr::parse("127.0.0.0/8").expect("valid"), Cidr::parse("::1/128").expect("valid")],
            allowed_origins: Vec::new(),
            max_request_head_bytes: 16 * 1024,
            max_headers: 64,
            h2_max_concurrent_streams: 16,
            admin_max_connections: 32,
        }
    }
}

impl Limits {
    /// The server API limits in `bm_proto`'s form.
    pub fn api(&self) -> bm_proto::api::Limits {
        bm_proto::api::Limits {
            max_events: self.max_events,
            max_recipients: self.max_recipients,
            max_ciphertext: self.max_ciphertext,
            max_body: self.max_body,
        }
    }

    /// Seconds as a `Duration` (values were validated as positive and finite).
    pub fn dur(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    /// Checks every value; returns the offending key and why.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive_f = [
            ("pub_rate_per_sec", self.pub_rate_per_sec),
            ("pub_burst", self.pub_burst),
            ("frame_rate_per_sec", self.frame_rate_per_sec),
            ("frame_burst", self.frame_burst),
            ("auth_timeout_secs", self.auth_timeout_secs),
            ("ping_interval_secs", self.ping_interval_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("shutdown_deadline_secs", self.shutdown_deadline_secs),
            ("reconnect_pace_per_sec", self.reconnect_pace_per_sec),
            ("close_spread_secs", self.close_spread_secs),
            ("request_head_timeout_secs", self.request_head_timeout_secs),
            ("keepalive_idle_secs", self.keepalive_idle_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("new_connections_per_ip_per_sec", self.new_connections_per_ip_per_sec),
        ];
        for (key, v) in positive_f {
            if !(v.is_finite() && v > 0.0 && v < 1e9) {
                return Err((key, format!("must be a positive number of reasonable size, not {v}")));
            }
        }
        let positive_u = [
            ("max_events", self.max_events),
            ("max_recipients", self.max_recipients),
            ("max_ciphertext", self.max_ciphertext),
            ("max_body", self.max_body),
            ("max_pub_ciphertext", self.max_pub_ciphertext),
            ("outbound_queue_bytes", self.outbound_queue_bytes),
            ("max_frame_bytes", self.max_frame_bytes),
            ("max_subscriptions", self.max_subscriptions),
            ("max_token_ttl_secs", self.max_token_ttl_secs as usize),
            ("ws_read_buffer", self.ws_read_buffer),
            ("max_unauthenticated_sockets", self.max_unauthenticated_sockets),
            ("max_revocations_per_site", self.max_revocations_per_site),
            ("max_connections", self.max_connections),
            ("max_pending_connections", self.max_pending_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
            ("max_headers", self.max_headers),
            ("h2_max_concurrent_streams", self.h2_max_concurrent_streams as usize),
            ("admin_max_connections", self.admin_max_connections),
        ];
        for (key, v) in positive_u {
            if v == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        if self.max_frame_bytes < 256 {
            return Err(("max_frame_bytes", "must be at least 256 (an auth frame carries a token)".into()));
        }
        if !(self.new_connections_per_ip_burst.is_finite() && (1.0..1e9).contains(&self.new_connections_per_ip_burst)) {
            return Err(("new_connections_per_ip_burst", "must be at least 1 (one connection)".into()));
        }
        // hyper asserts a read buffer of at least 8 KiB (it panics below).
        if !(8192..=1024 * 1024).contains(&self.max_request_head_bytes) {
            return Err(("max_request_head_bytes", "must be between 8192 and 1048576".into()));
        }
        if self.max_body_bytes_in_flight < self.max_body {
            return Err(("max_body_bytes_in_flight", "must be at least max_body (one whole body)".into()));
        }
        if self.api_reserve_connections >= self.max_connections {
            return Err(("api_reserve_connections", "must be below max_connections".into()));
        }
        if self.max_pending_connections > self.max_connections {
            return Err(("max_pending_connections", "must not exceed max_connections".into()));
        }
        if self.idle_timeout_secs <= self.ping_interval_secs {
            return Err(("idle_timeout_secs", "must be longer than ping_interval_secs".into()));
        }
        if let Some(o) = self.allowed_origins.iter().find(|o| !is_origin(o)) {
            return Err((
                "allowed_origins",
                format!("`{o}` is not an origin: scheme://host[:port], lower case, nothing after (no path, no `/`)"),
            ));
        }
        if self.close_spread_secs >= self.shutdown_deadline_secs {
            return Err(("close_spread_secs", "must be shorter than shutdown_deadline_secs".into()));
        }
        let (push, frame) = (self.largest_push_bytes(), self.largest_frame_bytes());
        if self.outbound_queue_bytes < push.max(frame) {
            return Err((
                "outbound_queue_bytes",
                format!(
                    "must hold one whole push ({push} bytes of frames from max_body and max_events) and the largest \
                     event frame ({frame} bytes from max_ciphertext / max_pub_ciphertext), else a single large push \
                     closes healthy sockets with 4008"
                ),
            ));
        }
        Ok(())
    }

    /// Bytes of frames one push request can queue to one socket: its body
    /// holds every envelope once; each becomes a frame with a header and
    /// the `{"op":"ev","e":…}` wrapper.
    pub fn largest_push_bytes(&self) -> usize {
        self.max_body.saturating_add(self.max_events.saturating_mul(FRAME_OVERHEAD))
    }

    /// Bytes of the largest single event frame: a pushed envelope with
    /// `max_ciphertext` (bounded by the body too), or a `pub` with
    /// `max_pub_ciphertext`.
    pub fn largest_frame_bytes(&self) -> usize {
        let env = |c: usize| c.div_ceil(3).saturating_mul(4).saturating_add(ENVELOPE_FIELDS);
        env(self.max_ciphertext).min(self.max_body).max(env(self.max_pub_ciphertext)).saturating_add(FRAME_OVERHEAD)
    }
}

/// Frame header (at most 10 bytes) plus the `ev` wrapper with a `thread`
/// and `from` (a `pub`): a generous bound.
const FRAME_OVERHEAD: usize = 80;
/// An envelope's JSON besides its ciphertext: `v`, `k`, `id`, `n`, names.
const ENVELOPE_FIELDS: usize = 200;

/// Log output settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: Option<String>,
    /// A `RUST_LOG`-style filter; the `RUST_LOG` variable takes precedence.
    pub filter: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Spanned<String>>,
    admin_listen: Option<Spanned<String>>,
    #[serde(default)]
    sites: BTreeMap<Spanned<String>, Spanned<String>>,
    sites_file: Option<Spanned<String>>,
    #[serde(default)]
    limits: Option<Spanned<toml::Table>>,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    cluster: Option<ClusterFile>,
    #[serde(default)]
    protocol: Option<ProtocolConfig>,
}

/// Which protocol versions the relay takes (`[protocol]`, docs/PROTOCOL.md
/// §3.2). Read again on SIGHUP, so v1 can be switched off without a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolConfig {
    /// Whether protocol v1 (WordPress ids in clear) is still accepted:
    /// requests without `X-BM-Protocol: 2` and tokens without `"v":2`.
    /// True by default for this release, so a site can upgrade WordPress
    /// and the relay in either order; an operator turns it off once the
    /// `protocol="1"` counters of /metrics stopped rising for a token
    /// lifetime.
    pub accept_v1: bool,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig { accept_v1: true }
    }
}

/// The `[cluster]` table of the config file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    #[serde(default)]
    nats: Vec<String>,
    node_name: Option<String>,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    credentials_file: Option<PathBuf>,
    nkey_seed_file: Option<PathBuf>,
    tls_ca_file: Option<PathBuf>,
    heartbeat_secs: Option<f64>,
    node_timeout_secs: Option<f64>,
}

/// Joining other relays over NATS (docs/PROTOCOL.md, "Cluster"). Absent:
/// a single node, exactly as without this feature.
#[derive(Clone, PartialEq)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:4222`), tried in turn.
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster (default: host name + pid).
    pub node_name: String,
    /// NATS user (with `password`); file or `BM_RELAY_NATS_USER` only.
    pub user: Option<String>,
    /// NATS password; file or `BM_RELAY_NATS_PASSWORD` only.
    pub password: Option<String>,
    /// NATS token; file or `BM_RELAY_NATS_TOKEN` only.
    pub token: Option<String>,
    /// A NATS `.creds` file (JWT + nkey).
    pub credentials_file: Option<PathBuf>,
    /// A file holding an nkey seed.
    pub nkey_seed_file: Option<PathBuf>,
    /// CA certificate (PEM) for `tls://` servers; TLS is then required.
    pub tls_ca_file: Option<PathBuf>,
    /// Interval of this node's heartbeat.
    pub heartbeat_secs: f64,
    /// A node not heard from for this long leaves presence on the others.
    pub node_timeout_secs: f64,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a password or token.
        f.debug_struct("ClusterConfig").field("nats", &self.nats).field("node_name", &self.node_name).finish()
    }
}

/// The default node name: host name + pid, unique per process.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    format!("{}-{}", if host.is_empty() { "relay" } else { &host }, std::process::id())
}

/// A node name usable as a NATS subject token.
fn valid_node_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the command line (and, through clap, the environment) adds on top
/// of the file. Kept so that a SIGHUP reload re-applies the same overrides.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config` / `BM_RELAY_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--listen` / `BM_RELAY_LISTEN`.
    pub listen: Option<String>,
    /// `--admin-listen` / `BM_RELAY_ADMIN_LISTEN`.
    pub admin_listen: Option<String>,
    /// `--sites-file` / `BM_RELAY_SITES_FILE`: a file of `"site" = "key"`
    /// lines (wins over the config file's `sites_file`).
    pub sites_file: Option<PathBuf>,
    /// `BM_RELAY_SITES="site=key,site2=key2"`.
    pub env_sites: Option<String>,
    /// `--site SITE=KEY`, repeatable; wins over the file and the environment.
    pub sites: Vec<String>,
    /// `--log-format`.
    pub log_format: Option<String>,
    /// `--nats` / `BM_RELAY_NATS`: comma-separated NATS URLs.
    pub nats: Option<String>,
    /// `--node-name` / `BM_RELAY_NODE_NAME`.
    pub node_name: Option<String>,
    /// `--accept-v1` / `BM_RELAY_ACCEPT_V1` (`true` or `false`): wins over
    /// `[protocol] accept_v1`.
    pub accept_v1: Option<bool>,
}

/// The relay's complete, validated configuration.
#[derive(Clone)]
pub struct Config {
    /// Client listener (WebSockets and the signed server API).
    pub listen: SocketAddr,
    /// Admin listener (`/healthz`, `/metrics`).
    pub admin_listen: SocketAddr,
    /// The relay key of every site served.
    pub sites: Arc<HashMap<SiteId, RelayKey>>,
    /// Limits.
    pub limits: Limits,
    /// Things an operator should hear about once logging is up (keys on
    /// the command line, a key file others can read). Never a key.
    pub warnings: Vec<String>,
    /// Logging.
    pub log: LogConfig,
    /// The cluster, if `--nats` / `[cluster] nats` names servers.
    pub cluster: Option<ClusterConfig>,
    /// Protocol versions accepted.
    pub protocol: ProtocolConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sites: Vec<&str> = self.sites.keys().map(|s| s.as_str()).collect();
        sites.sort_unstable();
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("sites", &sites)
            .field("limits", &self.limits)
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// 1-based line of a byte offset, for error messages.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

fn parse_addr(value: &str, origin: &str) -> Result<SocketAddr, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(origin, format!("`{value}` is not an IP:port address (e.g. 127.0.0.1:8787)")))
}

/// Reads one `site=key` pair; the key is never echoed.
fn parse_site_pair(pair: &str, origin: &str) -> Result<(SiteId, RelayKey), ConfigError> {
    let (site, key) = pair.split_once('=').ok_or_else(|| invalid(origin, "expected SITE=RELAY_KEY"))?;
    site_entry(site.trim(), key.trim(), origin)
}

/// True when `text` has the shape of a relay key (base64url of 32 bytes).
fn looks_like_key(text: &str) -> bool {
    RelayKey::from_b64(text.trim()).is_ok()
}

/// A site id as it may appear in an error: never a value shaped like a
/// key (an operator who swapped site and key must not see the key echoed
/// into a terminal or a log).
fn shown_site(site: &str) -> String {
    if looks_like_key(site) {
        "<a value shaped like a relay key, not shown>".into()
    } else {
        site.escape_default().to_string()
    }
}

fn site_entry(site: &str, key: &str, origin: &str) -> Result<(SiteId, RelayKey), ConfigError> {
    if looks_like_key(site) && !looks_like_key(key) {
        return Err(invalid(
            origin,
            "the site id has the shape of a relay key and the key does not: site and key look swapped \
             (write \"site id\" = \"relay key\"); neither value is shown",
        ));
    }
    let id = SiteId::new(site).map_err(|e| invalid(origin, format!("site `{}`: {e}", shown_site(site))))?;
    let key = RelayKey::from_b64(key).map_err(|e| invalid(origin, format!("site `{id}`: {e}")))?;
    Ok((id, key))
}

impl Config {
    /// Builds the configuration: defaults, then the file (if any), then the
    /// environment, then flags. Every error names its origin.
    pub fn load(o: &Overrides) -> Result<Config, ConfigError> {
        let file = match &o.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                Some((path.clone(), text))
            }
            None => None,
        };
        Config::build(o, file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())))
    }

    /// A configuration from TOML text alone, as if read from a file at
    /// `path` (named in errors; a relative `sites_file` is taken from its
    /// folder): what the fuzzer and tools use without touching the disk.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::build(&Overrides::default(), Some((path, text)))
    }

    fn build(o: &Overrides, config_file: Option<(&Path, &str)>) -> Result<Config, ConfigError> {
        let mut listen = DEFAULT_LISTEN.parse().expect("default address parses");
        let mut admin_listen = DEFAULT_ADMIN_LISTEN.parse().expect("default address parses");
        let mut sites = HashMap::new();
        let mut limits = Limits::default();
        let mut log = LogConfig::default();
        let mut warnings = Vec::new();
        let mut sites_file: Option<PathBuf> = None;
        let mut cluster_file = ClusterFile::default();
        let mut protocol = ProtocolConfig::default();

        if let Some((path, text)) = config_file {
            let name = path.display().to_string();
            let file: FileConfig = toml::from_str(text).map_err(|e| {
                let at = e.span().map(|s| format!(" line {}", line_of(text, s.start))).unwrap_or_default();
                invalid(format!("{name}{at}"), e.message().to_string())
            })?;
            if let Some(v) = &file.listen {
                listen =
                    parse_addr(v.get_ref(), &format!("{name} line {}, key listen", line_of(text, v.span().start)))?;
            }
            if let Some(v) = &file.admin_listen {
                admin_listen = parse_addr(
                    v.get_ref(),
                    &format!("{name} line {}, key admin_listen", line_of(text, v.span().start)),
                )?;
            }
            for (site, key) in &file.sites {
                let origin = format!(
                    "{name} line {}, key sites.\"{}\"",
                    line_of(text, site.span().start),
                    shown_site(site.get_ref())
                );
                let (id, key) = site_entry(site.get_ref(), key.get_ref(), &origin)?;
                sites.insert(id, key);
            }
            if let Some(table) = &file.limits {
                let start = table.span().start;
                limits = Limits::deserialize(toml::Value::Table(table.get_ref().clone())).map_err(|e| {
                    invalid(format!("{name} line {}, table [limits]", line_of(text, start)), e.message().to_string())
                })?;
                limits.validate().map_err(|(key, msg)| {
                    let line = find_key_line(text, key).unwrap_or_else(|| line_of(text, start));
                    invalid(format!("{name} line {line}, key limits.{key}"), msg)
                })?;
            }
            log = file.log;
            if let Some(c) = file.cluster {
                cluster_file = c;
            }
            if let Some(p) = file.protocol {
                protocol = p;
            }
            if let Some(v) = &file.sites_file {
                // Relative to the config file's folder, as an admin reads it.
                let p = Path::new(v.get_ref());
                sites_file = Some(path.parent().map(|d| d.join(p)).unwrap_or_else(|| p.to_path_buf()));
            }
        }
        if let Some(p) = o.sites_file.clone().or(sites_file) {
            read_sites_file(&p, &mut sites, &mut warnings)?;
        }
        if let Some(v) = &o.env_sites {
            for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (id, key) = parse_site_pair(pair, "BM_RELAY_SITES")?;
                sites.insert(id, key);
            }
        }
        for pair in &o.sites {
            let (id, key) = parse_site_pair(pair, "--site")?;
            sites.insert(id, key);
        }
        if !o.sites.is_empty() {
            warnings.push(
                "--site puts relay keys on the command line, where every local user can read them (ps, /proc); \
                 use sites_file / --sites-file (mode 0600) or BM_RELAY_SITES instead"
                    .into(),
            );
        }
        if let Some(v) = &o.listen {
            listen = parse_addr(v, "--listen / BM_RELAY_LISTEN")?;
        }
        if let Some(v) = &o.admin_listen {
            admin_listen = parse_addr(v, "--admin-listen / BM_RELAY_ADMIN_LISTEN")?;
        }
        if let Some(f) = &o.log_format {
            log.format = Some(f.clone());
        }
        match log.format.as_deref() {
            None | Some("text") | Some("json") => {}
            Some(other) => return Err(invalid("log.format", format!("`{other}` is neither `text` nor `json`"))),
        }
        limits.validate().map_err(|(key, msg)| invalid(format!("limits.{key}"), msg))?;
        let cluster = cluster_config(o, cluster_file)?;
        if let Some(v) = o.accept_v1 {
            protocol.accept_v1 = v;
        }
        Ok(Config { listen, admin_listen, sites: Arc::new(sites), limits, log, warnings, cluster, protocol })
    }

    /// Reads only the config file named by `path` (for tests and tooling).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        Config::load(&Overrides { config: Some(path.to_path_buf()), ..Overrides::default() })
    }
}

/// The cluster settings: file, then environment, then flags. Credentials
/// come from the file or the environment only (argv is world-readable).
fn cluster_config(o: &Overrides, f: ClusterFile) -> Result<Option<ClusterConfig>, ConfigError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut nats = f.nats;
    if let Some(v) = &o.nats {
        nats = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    }
    if nats.is_empty() {
        return Ok(None);
    }
    for u in &nats {
        let ok = ["nats://", "tls://"].iter().any(|p| u.starts_with(p)) && u.len() > 7;
        if !ok {
            return Err(invalid(
                "cluster.nats / --nats",
                format!("`{}` is not a nats:// or tls:// URL", u.escape_default()),
            ));
        }
    }
    let node_name = o.node_name.clone().or(f.node_name).unwrap_or_else(default_node_name);
    if !valid_node_name(&node_name) {
        return Err(invalid("cluster.node_name / --node-name", "use 1-64 characters of A-Z a-z 0-9 - _"));
    }
    let heartbeat_secs = f.heartbeat_secs.unwrap_or(1.0);
    let node_timeout_secs = f.node_timeout_secs.unwrap_or(5.0);
    if !(0.05..=60.0).contains(&heartbeat_secs) || node_timeout_secs < 2.0 * heartbeat_secs || node_timeout_secs > 600.0
    {
        return Err(invalid(
            "cluster",
            "heartbeat_secs must be 0.05-60 and node_timeout_secs at least twice it (at most 600)",
        ));
    }
    Ok(Some(ClusterConfig {
        nats,
        node_name,
        user: env("BM_RELAY_NATS_USER").or(f.user),
        password: env("BM_RELAY_NATS_PASSWORD").or(f.password),
        token: env("BM_RELAY_NATS_TOKEN").or(f.token),
        credentials_file: env("BM_RELAY_NATS_CREDS").map(PathBuf::from).or(f.credentials_file),
        nkey_seed_file: env("BM_RELAY_NATS_NKEY_SEED_FILE").map(PathBuf::from).or(f.nkey_seed_file),
        tls_ca_file: env("BM_RELAY_NATS_TLS_CA").map(PathBuf::from).or(f.tls_ca_file),
        heartbeat_secs,
        node_timeout_secs,
    }))
}

/// Reads a key file: `"site id" = "relay key"` lines (TOML). Refuses a
/// file others can write; warns when others can read it.
fn read_sites_file(
    path: &Path,
    sites: &mut HashMap<SiteId, RelayKey>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 {
        return Err(invalid(
            &name,
            "the key file is writable by every user; chmod 600 (or 640 with the service's group)",
        ));
    }
    if mode & 0o004 != 0 {
        warnings.push(format!(
            "{name} is readable by every user: it holds relay keys; chmod 600 (or 640 with the service's group)"
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let table: BTreeMap<Spanned<String>, Spanned<String>> = toml::from_str(&text).map_err(|e| {
        // Not the parser's message: it may quote the line, and the line may hold a key.
        let at = e.span().map(|s| format!(" line {}", line_of(&text, s.start))).unwrap_or_default();
        invalid(format!("{name}{at}"), "expected lines of the form \"site id\" = \"relay key\"")
    })?;
    for (site, key) in &table {
        let origin =
            format!("{name} line {}, site \"{}\"", line_of(&text, site.span().start), shown_site(site.get_ref()));
        let (id, key) = site_entry(site.get_ref(), key.get_ref(), &origin)?;
        sites.insert(id, key);
    }
    Ok(())
}

/// Line of `key = …` inside the `[limits]` table, for a validation error.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let mut in_limits = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_limits = t == "[limits]";
            continue;
        }
        if in_limits {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim() == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "RHkXN1j46b1htCzTf4hIHU46rUWuuv5-qaMce_K-KFs";

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("bm-relay-cfg-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("c{}.toml", text.len()));
        std::fs::write(&path, text).unwrap();
        let r = Config::from_file(&path);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn full_file_parses() {
        let c = load_text(&format!(
            "listen = \"127.0.0.1:9000\"\n[sites]\n\"example.com\" = \"{KEY}\"\n[limits]\nping_interval_secs = 1.5\nidle_timeout_secs = 4\n"
        ))
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.sites.len(), 1);
        assert_eq!(c.limits.ping_interval_secs, 1.5);
        assert_eq!(c.limits.max_events, 1000);
        assert!(!format!("{c:?}").contains(KEY), "keys never printed");
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = load_text("listen = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("line 1, key listen"), "{e}");
        let e = load_text(&format!("[sites]\n\"ok.site\" = \"{KEY}\"\n\"Bad Site\" = \"{KEY}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("Bad Site"), "{e}");
        let e = load_text("[sites]\n\"a\" = \"secret-looking-but-short\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && !e.contains("secret-looking"), "{e}");
        let e = load_text("[limits]\nmax_events = 5\nping_interval_secs = 0\n").unwrap_err().to_string();
        assert!(e.contains("line 3, key limits.ping_interval_secs"), "{e}");
        let e = load_text("[limits]\nmax_evnts = 5\n").unwrap_err().to_string();
        assert!(e.contains("max_evnts"), "{e}");
        let e = load_text("[limits]\ntrusted_proxies = [\"10.0.0.0/33\"]\n").unwrap_err().to_string();
        assert!(e.contains("prefix length") && e.contains("line"), "{e}");
        let e = load_text("[limits]\nmax_connections = 100\napi_reserve_connections = 100\n").unwrap_err().to_string();
        assert!(e.contains("line 3, key limits.api_reserve_connections"), "{e}");
        let e = load_text("[limits]\nmax_request_head_bytes = 4096\n").unwrap_err().to_string();
        assert!(e.contains("key limits.max_request_head_bytes"), "{e}");
        let e = load_text("bogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn the_sample_config_parses_and_states_the_defaults() {
        let text = include_str!("../deploy/relay.toml");
        let sample = text.replace("# \"example.com\"", "\"example.com\"");
        let c = load_text(&sample).unwrap();
        assert_eq!(c.limits, Limits::default(), "deploy/relay.toml must show every default");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.admin_listen.to_string(), DEFAULT_ADMIN_LISTEN);
        assert_eq!(c.sites.len(), 1);
        assert_eq!(c.log.format.as_deref(), Some("text"));
        assert!(c.cluster.is_none(), "the sample is a single node");
        assert_eq!(c.protocol, ProtocolConfig::default(), "deploy/relay.toml must show the [protocol] default");
        let clustered = sample.replace("# [cluster]\n# nats", "[cluster]\nnats");
        assert_eq!(
            load_text(&clustered).unwrap().cluster.unwrap().nats.len(),
            2,
            "the [cluster] sample parses once uncommented"
        );
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            listen: Some("127.0.0.1:1234".into()),
            env_sites: Some(format!("a={KEY}, b={KEY}")),
            sites: vec![format!("c={KEY}")],
            ..Overrides::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(c.listen.port(), 1234);
        assert_eq!(c.sites.len(), 3);
        let bad = Overrides { sites: vec!["nokey".into()], ..Overrides::default() };
        assert!(Config::load(&bad).unwrap_err().to_string().contains("--site"));
    }

    /// `[cluster]` from the file, `--nats` over it; no cluster without
    /// servers; a bad URL or node name is refused; secrets stay out of Debug.
    #[test]
    fn cluster_settings() {
        assert!(load_text("").unwrap().cluster.is_none(), "no --nats: a single node");
        let c = load_text(
            "[cluster]\nnats = [\"nats://10.0.0.1:4222\", \"tls://n2:4222\"]\nnode_name = \"r-1\"\npassword = \"s3cret\"\nuser = \"u\"\n",
        )
        .unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(cl.nats.len(), 2);
        assert_eq!(cl.node_name, "r-1");
        assert_eq!((cl.heartbeat_secs, cl.node_timeout_secs), (1.0, 5.0));
        assert!(!format!("{cl:?}").contains("s3cret"));
        let o = Overrides { nats: Some("nats://a:1, nats://b:2".into()), ..Overrides::default() };
        let cl = Config::load(&o).unwrap().cluster.unwrap();
        assert_eq!(cl.nats, vec!["nats://a:1", "nats://b:2"]);
        assert!(cl.node_name.ends_with(&format!("-{}", std::process::id())), "{}", cl.node_name);
        let bad = Overrides { nats: Some("http://a:1".into()), ..Overrides::default() };
        assert!(Config::load(&bad).unwrap_err().to_string().contains("nats"));
        let bad = Overrides { nats: Some("nats://a:1".into()), node_name: Some("a.b".into()), ..Overrides::default() };
        assert!(Config::load(&bad).is_err(), "a dot would split the NATS subject");
        assert!(
            load_text("[cluster]\nnats = [\"nats://a:1\"]\nheartbeat_secs = 3.0\nnode_timeout_secs = 4.0\n").is_err()
        );
    }

    /// `[protocol] accept_v1`: true by default, false from the file, the
    /// flag/env override over the file; anything but a bool is refused.
    #[test]
    fn accept_v1_switch() {
        assert!(load_text("").unwrap().protocol.accept_v1, "v1 accepted by default in this release");
        assert!(!load_text("[protocol]\naccept_v1 = false\n").unwrap().protocol.accept_v1);
        let e = load_text("[protocol]\naccept_v1 = \"no\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(load_text("[protocol]\naccept_v2 = true\n").is_err(), "unknown keys refused");
        let o = Overrides { accept_v1: Some(false), ..Overrides::default() };
        assert!(!Config::load(&o).unwrap().protocol.accept_v1);
    }

    /// An operator who swaps site and key must not see the key echoed.
    #[test]
    fn swapped_site_and_key_are_named_not_echoed() {
        for text in [format!("[sites]\n\"{KEY}\" = \"example.com\"\n"), format!("[sites]\n\"{KEY}\" = \"{KEY}x\"\n")] {
            let e = load_text(&text).unwrap_err().to_string();
            assert!(!e.contains(KEY) && !e.contains(&KEY[..20]), "{e}");
            assert!(e.contains("line 2"), "{e}");
        }
        let e = load_text(&format!("[sites]\n\"{KEY}\" = \"example.com\"\n")).unwrap_err().to_string();
        assert!(e.contains("swapped"), "{e}");
        let bad = Overrides { sites: vec![format!("{KEY}=example.com")], ..Overrides::default() };
        let e = Config::load(&bad).unwrap_err().to_string();
        assert!(e.contains("swapped") && !e.contains(&KEY[..20]), "{e}");
    }

    #[test]
    fn sites_file_is_read_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bm-relay-sites-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let keys = dir.join("sites.toml");
        std::fs::write(&keys, format!("\"a.example\" = \"{KEY}\"\n")).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = dir.join("relay.toml");
        std::fs::write(&cfg, "sites_file = \"sites.toml\"\n").unwrap();
        let c = Config::from_file(&cfg).unwrap();
        assert_eq!(c.sites.len(), 1);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::from_file(&cfg).unwrap();
        assert!(c.warnings.iter().any(|w| w.contains("readable by every user")), "{:?}", c.warnings);
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(Config::from_file(&cfg).unwrap_err().to_string().contains("writable"));
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&keys, format!("\"a.example\" = {KEY}\n")).unwrap();
        let e = Config::from_file(&cfg).unwrap_err().to_string();
        assert!(e.contains("line 1") && !e.contains(&KEY[..20]), "{e}");
        let o = Overrides { sites: vec![format!("c={KEY}")], ..Overrides::default() };
        assert!(Config::load(&o).unwrap().warnings.iter().any(|w| w.contains("--site")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A queue smaller than one whole push would close healthy sockets
    /// with 4008 on the first large push: refused at load, naming the keys.
    #[test]
    fn queue_must_hold_a_whole_push() {
        let e = load_text("[limits]\nmax_body = 65536\noutbound_queue_bytes = 16384\n").unwrap_err().to_string();
        assert!(e.contains("limits.outbound_queue_bytes") && e.contains("max_body"), "{e}");
        let l = Limits { max_body: 65536, max_events: 10, ..Limits::default() };
        assert!(l.largest_push_bytes() >= 65536 + 10 * 20);
        assert!(load_text("[limits]\nmax_body = 65536\nmax_ciphertext = 16384\nmax_pub_ciphertext = 4096\noutbound_queue_bytes = 200000\n").is_ok());
    }
}
