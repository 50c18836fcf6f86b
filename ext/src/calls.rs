//! Calls PHP waits for (sync pushes, presence, disconnect). They do not
//! cross threads: they run on the PHP thread itself, after waiting for what
//! this process queued before them — over one keep-alive connection with
//! the blocking client of [`crate::direct`] for an `http://` relay, or in a
//! current-thread runtime with its own reqwest client for `https://`. That
//! saves two thread wake-ups per call.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{BmError, Unreachable};
use crate::failover::Plan;
use crate::queue::Shared;
use crate::relay::{self, Endpoint, Relays, Target};
use crate::transport::Transport;

/// The PHP thread's connections for the calls it waits for.
#[derive(Default)]
pub struct Caller {
    /// Runtime and clients for `https://` relays, made on first need.
    local: Option<Local>,
    /// The keep-alive connections for calls to `http://` relays.
    direct: crate::direct::Conns,
}

impl Caller {
    /// Sends a call PHP waits for, on this thread, after everything this
    /// process queued before it; the whole call (waiting for the queue and
    /// trying several relay URLs included, see [`crate::failover`]) takes
    /// at most `wait`. A failure before any HTTP answer (a keep-alive
    /// connection the relay closed) is retried once on the same URL while
    /// its time remains; a duplicate push carries the same event ids.
    pub fn call(
        &mut self,
        shared: &Shared,
        relays: &Relays,
        endpoint: Endpoint,
        body: String,
        events: u64,
        wait: Duration,
    ) -> Result<String, BmError> {
        let deadline = Instant::now() + wait;
        let result = if shared.pending() > 0 && !shared.flush(wait) {
            Err(BmError::unreachable(
                endpoint.name(),
                relays.first().base_url.as_str(),
                Unreachable::Timeout { timeout_ms: wait.as_millis() },
            ))
        } else {
            let mut plan = Plan::new(&shared.health, relays, deadline);
            loop {
                let Some((i, until)) = plan.next_attempt(Instant::now()) else {
                    break Err(plan.give_up());
                };
                let r = self.attempt(shared, &relays.list[i], endpoint, &body, until);
                if let Some(done) = plan.settle(&shared.health, relays, i, r) {
                    break done;
                }
            }
        };
        match &result {
            Ok(_) => {
                shared.stats.sent.fetch_add(events, Ordering::Relaxed);
            }
            Err(e) => shared.stats.record_failure(events, e),
        }
        result
    }

    /// One relay URL, by `until`.
    fn attempt(
        &mut self,
        shared: &Shared,
        target: &Target,
        endpoint: Endpoint,
        body: &str,
        until: Instant,
    ) -> Result<String, BmError> {
        if let Transport::Direct(url) = &target.transport {
            // Plain http: a direct blocking exchange on this thread.
            let sent_at = Instant::now();
            let r = crate::direct::send(
                self.direct.slot(url),
                url,
                target,
                endpoint,
                body,
                until,
                crate::direct::Wait::PollFirst,
            );
            shared.stats.record_request(sent_at);
            return r;
        }
        let timeout_error = || {
            BmError::unreachable(
                endpoint.name(),
                target.base_url.as_str(),
                Unreachable::Timeout { timeout_ms: target.timeout.as_millis() },
            )
        };
        let local = match self.local.take() {
            Some(l) => l,
            None => Local::new()?,
        };
        let local = self.local.insert(local);
        let client = local.client(target.connect_timeout)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = until.saturating_duration_since(Instant::now());
            let sent_at = Instant::now();
            let r = local.runtime.block_on(async {
                tokio::time::timeout(remaining, relay::send(&client, target, endpoint, body.to_string())).await
            });
            shared.stats.record_request(sent_at);
            match r {
                Err(_elapsed) => break Err(timeout_error()),
                Ok(Err(e)) if e.is_retryable() && attempt == 1 && Instant::now() < until => continue,
                Ok(r) => break r,
            }
        }
    }

    /// Stops the https runtime (module shutdown).
    pub fn stop(&mut self) {
        if let Some(local) = self.local.take() {
            local.runtime.shutdown_timeout(Duration::from_millis(500));
        }
    }
}

/// The PHP thread's runtime for calls it waits for: current-thread, so the
/// request, its I/O and the answer all happen on the calling thread.
struct Local {
    runtime: tokio::runtime::Runtime,
    clients: HashMap<Duration, reqwest::Client>,
}

impl Local {
    fn new() -> Result<Local, BmError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(1)
            .build()
            .map_err(|e| BmError::internal(format!("cannot start the call runtime: {e}")))?;
        Ok(Local { runtime, clients: HashMap::new() })
    }

    fn client(&mut self, connect_timeout: Duration) -> Result<reqwest::Client, BmError> {
        if let Some(c) = self.clients.get(&connect_timeout) {
            return Ok(c.clone());
        }
        // The client's pool must belong to this runtime: build it inside it.
        let _guard = self.runtime.enter();
        let c = relay::build_client(connect_timeout).map_err(BmError::internal)?;
        self.clients.insert(connect_timeout, c.clone());
        Ok(c)
    }
}
