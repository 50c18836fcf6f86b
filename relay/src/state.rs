//! The state every task of a running relay shares.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bm_proto::token::{self, TokenKind};
use bm_proto::{Claims, TokenError};
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::revocations::Revocations;
use crate::router::Fanout;

/// Shared relay state: the current configuration (swapped whole on SIGHUP),
/// the routing table, the metrics and the shutdown flag.
pub struct App {
    config: RwLock<Arc<Config>>,
    /// Bumped by every reload: a socket task compares it (one relaxed load
    /// per wake-up) and re-reads its limits only when it moved.
    config_generation: AtomicU64,
    /// Sockets between upgrade and a valid `auth` (`max_unauthenticated_sockets`).
    pub authenticating: AtomicUsize,
    /// Notified when the last open socket ends (a shutdown waits on it).
    sockets_gone: Notify,
    /// Where sockets are registered and events routed.
    pub router: Arc<dyn Fanout>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// What `/v1/disconnect` revoked (see [`Revocations`]).
    pub revocations: Revocations,
    /// The open streams by id (`/v1/stream`, protocol §6.1).
    pub streams: crate::stream::Streams,
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
            config_generation: AtomicU64::new(0),
            authenticating: AtomicUsize::new(0),
            sockets_gone: Notify::new(),
            router,
            metrics: Metrics::default(),
            revocations: Revocations::default(),
            streams: crate::stream::Streams::default(),
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
        let old = std::mem::replace(&mut *self.config.write().unwrap_or_else(|p| p.into_inner()), Arc::new(config));
        self.config_generation.fetch_add(1, Ordering::Release);
        old
    }

    /// Changes with every reload (see [`App::set_config`]).
    pub fn config_generation(&self) -> u64 {
        self.config_generation.load(Ordering::Acquire)
    }

    /// True while `site` is served with the same relay key as in `cfg`: a
    /// socket authenticated under `cfg` re-checks this after it registered,
    /// since a reload in between did not see it.
    pub fn same_key(&self, site: &bm_proto::SiteId, cfg: &Config) -> bool {
        let now = self.config();
        match (now.sites.get(site), cfg.sites.get(site)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// Verifies a client token against the sites configured now, the
    /// lifetime bound, and the revocations made through `/v1/disconnect`.
    pub fn verify_token(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        self.verify_token_in(&self.config(), token, kind)
    }

    /// [`App::verify_token`] against a given configuration. A genuine v1
    /// token is refused ([`TokenError::ProtocolV1Refused`]) when `cfg`
    /// has `accept_v1 = false`.
    pub fn verify_token_in(&self, cfg: &Config, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        let claims = token::verify(token, kind, unix_now(), |site| cfg.sites.get(site))?;
        if claims.exp - claims.iat > cfg.limits.max_token_ttl_secs {
            return Err(TokenError::Malformed("lifetime (exp - iat) is longer than this relay accepts"));
        }
        if claims.protocol() == 1 && !cfg.protocol.accept_v1 {
            return Err(TokenError::ProtocolV1Refused);
        }
        if self.revocations.is_revoked(&claims.site, claims.sub, claims.thread, claims.iat) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// Records a `/v1/disconnect` signed at `at` (its `X-BM-Timestamp`):
    /// tokens of that scope issued at or before `at` are refused from now on.
    pub fn revoke(
        &self,
        site: &bm_proto::SiteId,
        users: &[bm_proto::UserId],
        thread: Option<bm_proto::ThreadId>,
        at: u64,
    ) {
        let limits = &self.config().limits;
        let r = self.revocations.revoke(
            site,
            users,
            thread,
            at,
            limits.max_token_ttl_secs,
            limits.max_revocations_per_site,
        );
        self.metrics.revocation_records.store(self.revocations.len() as u64, Ordering::Relaxed);
        if r.evicted > 0 {
            self.metrics.revocations_evicted.fetch_add(r.evicted, Ordering::Relaxed);
            tracing::warn!(site = %site, evicted = r.evicted, "revocation records full: the oldest were folded into the site's floor (its older tokens are refused)");
        }
    }

    /// Counts a socket opened (upgrade accepted); see [`App::socket_ended`].
    pub fn socket_opened(&self) {
        self.metrics.ws_opened.fetch_add(1, Ordering::Relaxed);
        self.metrics.ws_open.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a socket's task ended, and wakes a shutdown waiting for the last.
    pub fn socket_ended(&self) {
        self.one_fewer(&self.metrics.ws_open);
    }

    /// Takes one from an open count (sockets or streams); the last of
    /// either wakes a shutdown waiting in [`App::sockets_closed`], which
    /// checks both.
    fn one_fewer(&self, open: &AtomicU64) {
        if open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.sockets_gone.notify_waiters();
        }
    }

    /// Counts a stream opened; see [`App::stream_ended`].
    pub fn stream_opened(&self) {
        self.metrics.streams_opened.fetch_add(1, Ordering::Relaxed);
        self.metrics.streams_open.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a stream ended, and wakes a shutdown waiting for the last.
    pub fn stream_ended(&self) {
        self.one_fewer(&self.metrics.streams_open);
    }

    /// Waits until no socket or stream is open (structurally, not by polling).
    pub async fn sockets_closed(&self) {
        loop {
            let gone = self.sockets_gone.notified();
            tokio::pin!(gone);
            // Registered before the check: a last socket ending in between
            // still wakes this waiter.
            gone.as_mut().enable();
            if self.metrics.ws_open.load(Ordering::Acquire) == 0
                && self.metrics.streams_open.load(Ordering::Acquire) == 0
            {
                return;
            }
            gone.await;
        }
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
