//! The admin listener (unsigned: bind it to loopback or a private
//! network): `GET /healthz` and `GET /metrics`, over HTTP/1.1.
//!
//! It has its own small connection cap (`admin_max_connections`, closed at
//! accept past it) and hyper's header timer from the first byte
//! (`request_head_timeout_secs`, also the keep-alive idle time here), so a
//! stuck scraper or a flood on this port cannot pin descriptors.

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bm_proto::api::ErrorCode;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{api_error, err, json, Body};
use crate::config::Limits;
use crate::metrics::Refusal;
use crate::state::App;

/// Counts an admin connection for its lifetime.
struct AdminSlot(Arc<App>);

impl Drop for AdminSlot {
    fn drop(&mut self) {
        self.0.metrics.admin_connections.fetch_sub(1, Relaxed);
    }
}

/// Accepts connections on the admin listener (until the process exits).
pub async fn serve_admin(listener: TcpListener, app: Arc<App>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let cfg = app.config();
        let l = &cfg.limits;
        let before = app.metrics.admin_connections.fetch_add(1, Relaxed);
        let slot = AdminSlot(app.clone());
        if before >= l.admin_max_connections as u64 {
            app.metrics.refused(Refusal::AdminConnections);
            drop((stream, slot));
            continue;
        }
        let mut builder = hyper::server::conn::http1::Builder::new();
        // An http1-only connection starts reading a head at once, so this
        // timer runs from accept, and again from each reply.
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Limits::dur(l.request_head_timeout_secs))
            .max_buf_size(l.max_request_head_bytes)
            .max_headers(l.max_headers);
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(admin_request(req, &app)) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn admin_request(req: Request<Incoming>, app: &App) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => {
            let cfg = app.config();
            let down = app.is_shutting_down();
            // In a cluster: "syncing" (503, not ready: presence and
            // revocations not yet copied), "degraded" (200: NATS down, this
            // node serves its own sockets) or "ok".
            let cluster = app.router.cluster_status();
            let syncing = cluster == Some("syncing");
            let status = if down {
                "shutting_down"
            } else if syncing {
                "syncing"
            } else if cluster == Some("degraded") {
                "degraded"
            } else {
                "ok"
            };
            // No pid: nothing here helps an attacker aim at the process.
            let mut body = serde_json::json!({
                "status": status,
                "version": env!("CARGO_PKG_VERSION"),
                "sites": cfg.sites.len(),
                "connections": app.metrics.ws_open.load(Relaxed),
            });
            if let Some(c) = cluster {
                body["cluster"] = serde_json::Value::from(c);
            }
            json(if down || syncing { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }, body.to_string())
        }
        (&Method::GET, "/metrics") => {
            let mut text = app.metrics.render(app.router.counts(), app.config().sites.len());
            app.router.cluster_metrics(&mut text);
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            r
        }
        (_, "/healthz" | "/metrics") => api_error(&err(ErrorCode::MethodNotAllowed, "use GET")),
        _ => api_error(&err(ErrorCode::NotFound, "admin endpoints: /healthz, /metrics")),
    }
}
