//! The state every task of a running relay shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bm_proto::token::{self, TokenKind};
use bm_proto::{Claims, TokenError};
use tokio::sync::watch;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::revocations::Revocations;
use crate::router::Fanout;

/// Shared relay state: the current configuration (swapped whole on SIGHUP),
/// the routing table, the metrics and the shutdown flag.
pub struct App {
    config: RwLock<Arc<Config>>,
    /// Where sockets are registered and events routed.
    pub router: Arc<dyn Fanout>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// What `/v1/disconnect` revoked (see [`Revocations`]).
    pub revocations: Revocations,
    shutting_down: AtomicBool,
    shutdown_tx: watch::Sender<bool>,
}

/// Unix time in seconds (tokens and signatures are in unix seconds).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl App {
    /// A relay state for `config`, routing through `router`.
    pub fn new(config: Config, router: Arc<dyn Fanout>) -> Arc<App> {
        let (shutdown_tx, _) = watch::channel(false);
        Arc::new(App {
            config: RwLock::new(Arc::new(config)),
            router,
            metrics: Metrics::default(),
            revocations: Revocations::default(),
            shutting_down: AtomicBool::new(false),
            shutdown_tx,
        })
    }

    /// The configuration in force (a cheap `Arc` clone; a reload swaps it).
    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Installs a new configuration; returns the previous one.
    pub fn set_config(&self, config: Config) -> Arc<Config> {
        std::mem::replace(&mut *self.config.write().unwrap_or_else(|p| p.into_inner()), Arc::new(config))
    }

    /// Verifies a client token against the sites configured now, the
    /// lifetime bound, and the revocations made through `/v1/disconnect`.
    pub fn verify_token(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        let cfg = self.config();
        let claims = token::verify(token, kind, unix_now(), |site| cfg.sites.get(site))?;
        if claims.exp - claims.iat > cfg.limits.max_token_ttl_secs {
            return Err(TokenError::Malformed("lifetime (exp - iat) is longer than this relay accepts"));
        }
        if self.revocations.is_revoked(&claims.site, claims.sub, claims.thread, claims.iat) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// Records a `/v1/disconnect`: tokens of that scope issued before now
    /// are refused from now on.
    pub fn revoke(&self, site: &bm_proto::SiteId, users: &[bm_proto::UserId], thread: Option<bm_proto::ThreadId>) {
        let retain = self.config().limits.max_token_ttl_secs;
        self.revocations.revoke(site, users, thread, unix_now(), retain);
    }

    /// True once a graceful shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Begins a graceful shutdown: new pushes get 503, listeners stop.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.shutdown_tx.send_replace(true);
    }

    /// A receiver that changes to `true` when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }
}
