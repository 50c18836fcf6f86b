//! `bm-relay serve`: binds the listeners, then waits for signals.
//!
//! - SIGHUP re-reads the configuration (file, environment, the original
//!   flags) and swaps sites and limits in without dropping sockets; the
//!   sockets of a site that was removed, or whose relay key changed, are
//!   closed with 4003 (their tokens were signed with a key the relay no
//!   longer trusts). A bad file is logged and the running config is kept.
//!   Listen addresses are not changed by a reload.
//! - SIGTERM / SIGINT start a graceful shutdown: stop accepting, answer
//!   server API requests with 503, close every socket with 1001 over
//!   `close_spread_secs`, each told when to come back (see
//!   [`crate::pacing`]), and exit once they are gone (the last socket's
//!   task wakes the wait) or `shutdown_deadline_secs` has passed. Sockets
//!   that finish authenticating meanwhile close themselves (see
//!   [`crate::ws`]). A second SIGTERM/SIGINT exits at once.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bm_proto::frames::close;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{Config, Limits, Overrides};
use crate::outbox::CloseRequest;
use crate::router::{Fanout, LocalRouter};
use crate::state::App;

/// Why `serve` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The cluster link could not start (bad address or credentials).
    #[error("cluster: {0}")]
    Cluster(crate::cluster::link::ClusterError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Runs the relay until a graceful shutdown completes.
pub async fn serve(config: Config, overrides: Overrides) -> Result<(), ServeError> {
    let client =
        TcpListener::bind(config.listen).await.map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let admin = TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| ServeError::Bind { addr: config.admin_listen, source })?;
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;

    tracing::info!(
        listen = %config.listen,
        admin = %config.admin_listen,
        sites = config.sites.len(),
        "bm-relay listening"
    );
    // Without a cluster the router is today's `LocalRouter`, unwrapped:
    // a single node pays nothing for the cluster's existence.
    let cluster = config.cluster.clone().map(|c| crate::cluster::ClusterRouter::new(c, &config));
    let router: Arc<dyn Fanout> = match &cluster {
        Some(c) => c.clone(),
        None => Arc::new(LocalRouter::new()),
    };
    let app = App::new(config, router);
    if let Some(c) = &cluster {
        crate::cluster::link::start(c.clone(), app.clone()).await.map_err(ServeError::Cluster)?;
    }
    tokio::spawn(crate::http::serve_client(client, app.clone()));
    tokio::spawn(crate::http::serve_admin(admin, app.clone()));

    loop {
        tokio::select! {
            _ = hup.recv() => {
                reload(&app, &overrides).await;
                if let Some(c) = &cluster {
                    c.rekey(&app.config());
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tokio::select! {
        _ = async {
            shutdown(&app).await;
            if let Some(c) = &cluster {
                c.leave().await;
            }
        } => {}
        // A second SIGTERM/SIGINT ends the wait at once.
        _ = term.recv() => tracing::warn!("second signal: exiting without waiting for sockets"),
        _ = int.recv() => tracing::warn!("second signal: exiting without waiting for sockets"),
    }
    Ok(())
}

async fn reload(app: &App, overrides: &Overrides) {
    let new = match Config::load(overrides) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reload refused; the running configuration stays in force");
            return;
        }
    };
    for w in &new.warnings {
        tracing::warn!("{w}");
    }
    let old = app.set_config(new.clone());
    // Each socket task re-reads its limits when woken; wake them all, so a
    // shorter ping interval or idle timeout takes effect now, not after
    // the old timer fires (O(sockets), once per reload).
    for c in app.router.sockets(None) {
        c.out.wake.notify_one();
    }
    let mut conns = Vec::new();
    for (site, key) in old.sites.iter() {
        if new.sites.get(site) != Some(key) {
            conns.extend(app.router.sockets(Some(site)));
        }
    }
    let limits = &new.limits;
    let revoked = CloseRequest::new(close::REVOKED, "site removed or re-keyed");
    let closed = crate::pacing::close_paced(
        conns,
        revoked,
        Limits::dur(limits.close_spread_secs),
        limits.reconnect_pace_per_sec,
    )
    .await;
    tracing::info!(sites = new.sites.len(), closed, "configuration reloaded");
}

async fn shutdown(app: &App) {
    let limits = app.config().limits.clone();
    let deadline = Limits::dur(limits.shutdown_deadline_secs);
    tracing::info!(deadline_secs = deadline.as_secs_f64(), "shutting down");
    app.begin_shutdown();
    let going_away = CloseRequest::new(close::GOING_AWAY, "relay shutting down");
    let all = app.router.sockets(None);
    let _ = tokio::time::timeout(deadline, async {
        crate::pacing::close_paced(
            all,
            going_away,
            Limits::dur(limits.close_spread_secs),
            limits.reconnect_pace_per_sec,
        )
        .await;
        app.sockets_closed().await;
    })
    .await;
    tracing::info!(left = app.metrics.ws_open.load(Relaxed), "shutdown complete");
}
