//! `bm-relay`: the command line. See `bm-relay --help` and docs/DEPLOY.md.

use std::path::PathBuf;
use std::process::ExitCode;

use bm_relay::config::{Config, Overrides};
use bm_relay::tools::{self, ListenArgs, PushArgs};
use clap::{Args, Parser, Subcommand};

/// Zero-retention WebSocket fan-out relay for WordPress (bm-relay protocol v1).
///
/// The relay routes sealed envelopes from a WordPress site to its users'
/// browsers. It holds only routing metadata, in memory, and writes nothing
/// to disk. It is given each site's relay key, never the site secret.
#[derive(Parser)]
#[command(name = "bm-relay", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the relay (client listener: WebSockets + signed server API; admin
    /// listener: /healthz, /metrics). SIGHUP reloads sites and limits;
    /// SIGTERM/SIGINT shut down gracefully.
    Serve(ServeArgs),
    /// Generate a new site secret, its relay key, and config snippets for
    /// WordPress (php.ini) and for the relay (TOML).
    Keygen {
        /// Site id, e.g. example.com.
        #[arg(long)]
        site: String,
        /// Print {"site","site_secret","relay_key"} as JSON instead.
        #[arg(long)]
        json: bool,
        /// Relay URL to put in the php.ini snippet.
        #[arg(long, default_value = "http://127.0.0.1:8787")]
        relay_url: String,
    },
    /// Print the relay key of a site secret.
    Derive {
        /// The site secret (base64url); `-` reads it from stdin.
        #[arg(long, allow_hyphen_values = true)]
        secret: String,
    },
    /// Mint a connection token (or, with --thread, a thread token), as
    /// WordPress does; for testing a deployment.
    Token {
        /// The site secret; `-` reads it from stdin.
        #[arg(long, allow_hyphen_values = true)]
        secret: String,
        /// Site id.
        #[arg(long)]
        site: String,
        /// User id (the token's `sub`).
        #[arg(long)]
        user: u64,
        /// Make a thread token for this thread.
        #[arg(long)]
        thread: Option<u64>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Protocol version: 1, or 2 (--user and --thread are WordPress ids
        /// and the token is minted for their pseudonyms, with "v":2).
        #[arg(long, default_value_t = 1)]
        protocol: u8,
    },
    /// Seal one event and send it as a signed push; prints the relay's reply.
    /// Sealed with the thread key when --thread is given, else with the user
    /// key of the single --to.
    Push {
        /// Relay base URL (plain http://), e.g. http://127.0.0.1:8787.
        #[arg(long)]
        url: String,
        /// Site id.
        #[arg(long)]
        site: String,
        /// The site secret; `-` reads it from stdin.
        #[arg(long, allow_hyphen_values = true)]
        secret: String,
        /// Recipient user id (repeatable).
        #[arg(long)]
        to: Vec<u64>,
        /// Thread id: sealed with its key and routed to its subscribers too.
        #[arg(long)]
        thread: Option<u64>,
        /// Thread key epoch.
        #[arg(long, default_value_t = 0)]
        epoch: u32,
        /// Event type (inside the envelope).
        #[arg(long = "type", default_value = "demo.message")]
        kind: String,
        /// Event data, JSON.
        #[arg(long, default_value = "{}")]
        data: String,
        /// Protocol version: 1, or 2 (--to and --thread are WordPress ids,
        /// sent as their pseudonyms with X-BM-Protocol: 2).
        #[arg(long, default_value_t = 1)]
        protocol: u8,
    },
    /// A debugging subscriber: prints one JSON object per received frame on
    /// stdout; with --secret and --site, opens `ev` envelopes and prints
    /// their payload. Exit codes: 0 on a relay close or after --count
    /// events, 3 on --timeout, 1 on errors.
    Listen {
        /// WebSocket URL (plain ws://; TLS belongs to the proxy), e.g. ws://127.0.0.1:8787/v1/ws.
        #[arg(long)]
        url: String,
        /// Connection token.
        #[arg(long, allow_hyphen_values = true)]
        token: String,
        /// Thread to subscribe to (repeatable, paired with --thread-token).
        #[arg(long)]
        thread: Vec<u64>,
        /// Thread token for the --thread at the same position.
        #[arg(long, allow_hyphen_values = true)]
        thread_token: Vec<String>,
        /// Site secret, to open envelopes; `-` reads it from stdin.
        #[arg(long, requires = "site", allow_hyphen_values = true)]
        secret: Option<String>,
        /// Site id (with --secret).
        #[arg(long, requires = "secret")]
        site: Option<String>,
        /// Exit 0 after this many `ev` frames.
        #[arg(long)]
        count: Option<u64>,
        /// Exit 3 after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "BM_RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// Client listener address [default: 127.0.0.1:8787].
    #[arg(long, env = "BM_RELAY_LISTEN")]
    listen: Option<String>,
    /// Admin listener address [default: 127.0.0.1:8788].
    #[arg(long, env = "BM_RELAY_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// A file of `"site id" = "relay key"` lines (TOML), mode 0600: the
    /// place for relay keys (also `sites_file` in the config file).
    #[arg(long, env = "BM_RELAY_SITES_FILE")]
    sites_file: Option<PathBuf>,
    /// A site to serve, SITE=RELAY_KEY (repeatable; also BM_RELAY_SITES="a=k1,b=k2").
    /// Warned against: keys on the command line are visible to every local
    /// user; prefer --sites-file.
    #[arg(long)]
    site: Vec<String>,
    /// Log format: text or json. The filter is RUST_LOG (default: info).
    #[arg(long)]
    log_format: Option<String>,
    /// Join a cluster over NATS: comma-separated server URLs
    /// (nats://h1:4222,nats://h2:4222). Credentials come from the config
    /// file's [cluster] table or BM_RELAY_NATS_USER / _PASSWORD / _TOKEN /
    /// _CREDS, never from the command line.
    #[arg(long, env = "BM_RELAY_NATS")]
    nats: Option<String>,
    /// This node's name in the cluster [default: host name + pid].
    #[arg(long, env = "BM_RELAY_NODE_NAME")]
    node_name: Option<String>,
    /// Whether protocol v1 (WordPress ids in clear) is still accepted:
    /// true or false; wins over `[protocol] accept_v1` [default: true].
    /// With false, v1 pushes get 400 protocol_v1_refused and v1 tokens
    /// bad_token (docs/PROTOCOL.md §3.2).
    #[arg(long, env = "BM_RELAY_ACCEPT_V1", action = clap::ArgAction::Set)]
    accept_v1: Option<bool>,
}

/// Whether an event may be logged at all, whatever the filter says: the
/// relay's own crates at any level; tungstenite never (at debug and trace it
/// prints frame contents: tokens, envelopes); every other library (hyper,
/// h2, tokio) at info and above only. A per-layer filter AND-ed with the
/// `RUST_LOG` filter, so no directive (however specific, e.g.
/// `tungstenite::protocol=trace`) can lift it: an `EnvFilter` directive
/// alone is outranked by a more specific one.
fn may_log(target: &str, level: &tracing::Level) -> bool {
    let ours = ["bm_relay", "bm_proto"].iter().any(|c| target == *c || target.starts_with(&format!("{c}::")));
    if ours {
        return true;
    }
    if target.starts_with("tungstenite") || target.starts_with("tokio_tungstenite") {
        return false;
    }
    *level <= tracing::Level::INFO
}

fn init_logging(format: Option<&str>, filter: Option<&str>) {
    use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let env = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let caps = filter_fn(|m| may_log(m.target(), m.level()));
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr);
    let layer = if format == Some("json") { fmt.json().boxed() } else { fmt.boxed() };
    tracing_subscriber::registry().with(layer.with_filter(env.and(caps))).init();
}

/// Zero retention includes crashes: no core file (it would hold tokens,
/// relay keys and envelopes in flight) is ever written by this process, and
/// it is not dumpable: other processes of the same user cannot ptrace it or
/// read its memory through /proc (PR_SET_DUMPABLE 0). Swap is the
/// operator's (docs/DEPLOY.md: encrypted swap or none); the relay holds no
/// key that opens content, so what swap could leak is routing metadata and
/// the relay keys, which sign tokens and pushes.
fn forbid_core_dumps() {
    let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit reads a valid, initialized struct; failure is harmless.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
    // SAFETY: prctl with PR_SET_DUMPABLE takes one integer argument.
    let rc2 = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 || rc2 != 0 {
        tracing::warn!("could not disable core dumps");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("the tokio runtime starts")
}

fn die(msg: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("bm-relay: {msg}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve(a) => {
            let overrides = Overrides {
                config: a.config,
                listen: a.listen,
                admin_listen: a.admin_listen,
                sites_file: a.sites_file,
                env_sites: std::env::var("BM_RELAY_SITES").ok(),
                sites: a.site,
                log_format: a.log_format,
                nats: a.nats,
                node_name: a.node_name,
                accept_v1: a.accept_v1,
            };
            let config = match Config::load(&overrides) {
                Ok(c) => c,
                Err(e) => return die(format!("configuration refused: {e}"), 2),
            };
            init_logging(config.log.format.as_deref(), config.log.filter.as_deref());
            forbid_core_dumps();
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            if config.sites.is_empty() {
                tracing::warn!("no site configured: every push and every token will be refused");
            }
            match runtime().block_on(bm_relay::server::serve(config, overrides)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => die(e, 1),
            }
        }
        Cmd::Keygen { site, json, relay_url } => match tools::keygen(&site, json, &relay_url) {
            Ok(text) => {
                println!("{}", text.trim_end());
                ExitCode::SUCCESS
            }
            Err(e) => die(e, 2),
        },
        Cmd::Derive { secret } => match tools::read_secret(&secret) {
            Ok(s) => {
                println!("{}", tools::derive(&s));
                ExitCode::SUCCESS
            }
            Err(e) => die(e, 2),
        },
        Cmd::Token { secret, site, user, thread, ttl, protocol } => {
            match tools::read_secret(&secret).and_then(|s| tools::token(&s, &site, user, thread, ttl, protocol)) {
                Ok(t) => {
                    println!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => die(e, 2),
            }
        }
        Cmd::Push { url, site, secret, to, thread, epoch, kind, data, protocol } => {
            let secret = match tools::read_secret(&secret) {
                Ok(s) => s,
                Err(e) => return die(e, 2),
            };
            let args = PushArgs { url, site, secret, to, thread, epoch, kind, data, protocol };
            match runtime().block_on(tools::push(args)) {
                Ok((status, body)) => {
                    println!("{body}");
                    if (200..300).contains(&status) {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("bm-relay: the relay answered HTTP {status}");
                        ExitCode::from(1)
                    }
                }
                Err(e) => die(e, 1),
            }
        }
        Cmd::Listen { url, token, thread, thread_token, secret, site, count, timeout } => {
            if thread.len() != thread_token.len() {
                return die("give one --thread-token for each --thread", 2);
            }
            let secret = match secret.map(|s| tools::read_secret(&s)).transpose() {
                Ok(s) => s,
                Err(e) => return die(e, 2),
            };
            let args = ListenArgs {
                url,
                token,
                threads: thread.into_iter().zip(thread_token).collect(),
                secret,
                site,
                count,
                timeout,
            };
            match runtime().block_on(tools::listen(args)) {
                Ok(code) => ExitCode::from(code as u8),
                Err(e) => die(e, 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_is_not_dumpable() {
        forbid_core_dumps();
        // SAFETY: plain queries.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
        let mut lim = libc::rlimit { rlim_cur: 1, rlim_max: 1 };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) }, 0);
        assert_eq!((lim.rlim_cur, lim.rlim_max), (0, 0));
    }

    #[test]
    fn library_logs_are_capped() {
        use tracing::Level;
        assert!(!may_log("tungstenite::protocol", &Level::ERROR));
        assert!(!may_log("tokio_tungstenite", &Level::INFO));
        assert!(!may_log("h2::codec", &Level::DEBUG));
        assert!(!may_log("hyper::proto::h1::io", &Level::TRACE));
        assert!(may_log("hyper", &Level::WARN));
        assert!(may_log("bm_relay::ws", &Level::TRACE));
        assert!(!may_log("bm_relayx", &Level::TRACE));
    }

    /// A base64url secret or token may begin with `-` (1 in 64 secrets):
    /// it must be taken as the value, not as an unknown flag.
    #[test]
    fn secrets_and_tokens_may_begin_with_a_hyphen() {
        let s = "-4Wz_5Nr7H5rga0G-4sbAkaIJ6kJtmYQR7kvzqaPRns";
        for args in [
            vec!["bm-relay", "derive", "--secret", s],
            vec!["bm-relay", "token", "--secret", s, "--site", "a", "--user", "1"],
            vec!["bm-relay", "push", "--url", "http://x", "--site", "a", "--secret", s, "--to", "1"],
            vec![
                "bm-relay",
                "listen",
                "--url",
                "ws://x",
                "--token",
                s,
                "--thread",
                "1",
                "--thread-token",
                s,
                "--secret",
                s,
                "--site",
                "a",
            ],
        ] {
            assert!(Cli::try_parse_from(&args).is_ok(), "{args:?}");
        }
    }
}
