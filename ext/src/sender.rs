//! The background sender task: takes batches from the queue in order and
//! sends each as one signed `/v1/push`, then lingers before it parks.
//!
//! Wake-ups: waking a parked thread is a syscall and, on a machine whose
//! other cores are idle, an inter-processor interrupt — several µs that
//! would land inside `bm_push`. So after a batch the sender does not park:
//! it lingers, looking at the queue every [`LINGER_TICK`] for
//! [`LINGER`], and only then parks and says so in `Shared::parked`. A
//! `bm_push` wakes the sender only when that flag is set; a burst of pushes
//! pays for one wake-up at most, and the events of a burst travel together.
//! `bm_flush` and request end always wake it, so waiting for the queue
//! never includes a linger tick.
//!
//! Order: one sender task takes events from the front of one queue, and
//! consecutive events for the same target travel in one signed `/v1/push`
//! (at most [`crate::queue::MAX_BATCH_EVENTS`] events /
//! [`crate::queue::MAX_BATCH_BYTES`]), so they reach the relay in the order
//! PHP queued them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{BmError, Unreachable};
use crate::failover::Plan;
use crate::queue::{take, Shared};
use crate::relay::{self, Endpoint, Target};
use crate::sync::lock;
use crate::transport::Transport;

/// How often a lingering sender looks at the queue (tokio's timer
/// granularity): the most a queued event waits while the sender lingers.
pub const LINGER_TICK: Duration = Duration::from_millis(1);
/// How long the sender lingers after its last batch before it parks.
pub const LINGER: Duration = Duration::from_millis(50);

/// Makes the calling (sender) thread a background thread: `SCHED_BATCH`
/// at nice 10.
///
/// The sender's work is never urgent for the PHP request, but on a busy
/// machine a freshly woken sender (its relay's answer arrived, its linger
/// tick fired) would otherwise often preempt the PHP thread in the middle
/// of a `bm_push`. `SCHED_BATCH` tells the scheduler not to preempt on its
/// wake-ups, and nice 10 gives it a smaller share under contention, yet it
/// is never starved the way `SCHED_IDLE` could be on a saturated FPM host.
/// On Linux both are per thread, so the PHP thread is left alone. Failure
/// (not permitted) changes nothing.
pub fn lower_thread_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall wrappers; pid/who 0 is the calling thread on Linux.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// The sender task: one batch at a time, in queue order.
pub async fn sender(shared: Arc<Shared>) {
    let mut clients: HashMap<Duration, reqwest::Client> = HashMap::new();
    // The sender's own keep-alive connections for `http://` relays.
    let mut direct = crate::direct::Conns::default();
    let mut last_batch = tokio::time::Instant::now();
    loop {
        let Some((relays, batch)) = take(&shared) else {
            if last_batch.elapsed() < LINGER {
                // Linger: pushes need not wake us; a flush still does.
                let _ = tokio::time::timeout(LINGER_TICK, shared.wake.notified()).await;
                continue;
            }
            shared.parked.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if lock(&shared.queue).is_empty() {
                shared.wake.notified().await;
            }
            shared.parked.store(false, Ordering::SeqCst);
            last_batch = tokio::time::Instant::now();
            continue;
        };
        last_batch = tokio::time::Instant::now();
        let n = batch.len() as u64;
        let body = relay::push_body(batch.iter().map(String::as_str));
        // One deadline for the batch, whichever relays it goes to.
        let mut plan = Plan::new(&shared.health, &relays, Instant::now() + relays.first().timeout);
        let result = loop {
            let Some((i, until)) = plan.next_attempt(Instant::now()) else {
                break Err(plan.give_up());
            };
            let target = &relays.list[i];
            let r = if let Transport::Direct(url) = &target.transport {
                send_batch_direct(&shared, direct.slot(url), url, target, &body, until)
            } else {
                let client = match clients.get(&target.connect_timeout) {
                    Some(c) => Ok(c.clone()),
                    None => relay::build_client(target.connect_timeout).inspect(|c| {
                        clients.insert(target.connect_timeout, c.clone());
                    }),
                };
                match &client {
                    Ok(client) => send_batch(&shared, client, target, &body, until).await,
                    Err(e) => Err(BmError::internal(e.clone())),
                }
            };
            if let Some(done) = plan.settle(&shared.health, &relays, i, r) {
                break done;
            }
        };
        match result {
            Ok(()) => {
                shared.stats.sent.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => shared.stats.record_failure(n, &e),
        }
        shared.finish_events(n);
    }
}

/// Sends one batch to an `http://` relay with the blocking client of
/// [`crate::direct`] (which retries once on a keep-alive connection the
/// relay closed), by `until`. It blocks this runtime's only worker thread,
/// which runs nothing but this task: about a third of reqwest's CPU per
/// batch, and that CPU is taken from the machine the PHP requests run on.
fn send_batch_direct(
    shared: &Shared,
    conn: &mut Option<crate::direct::Conn>,
    url: &crate::transport::HttpUrl,
    target: &Target,
    body: &str,
    until: Instant,
) -> Result<(), BmError> {
    let started = Instant::now();
    let r = crate::direct::send(conn, url, target, Endpoint::Push, body, until, crate::direct::Wait::Block);
    shared.stats.record_request(started);
    r.map(|_| ())
}

/// Sends one batch by `until`; a transport failure (not a relay refusal,
/// not a timeout) is retried once, which covers a keep-alive connection the
/// relay closed while idle (a restart). A duplicate that this could cause
/// carries the same event ids, which clients drop.
async fn send_batch(
    shared: &Shared,
    client: &reqwest::Client,
    target: &Target,
    body: &str,
    until: Instant,
) -> Result<(), BmError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let started = Instant::now();
        let left = until.saturating_duration_since(started);
        let r = tokio::time::timeout(left, relay::send(client, target, Endpoint::Push, body.to_string())).await;
        shared.stats.record_request(started);
        match r {
            Err(_elapsed) => {
                return Err(BmError::unreachable(
                    Endpoint::Push.name(),
                    target.base_url.as_str(),
                    Unreachable::Timeout { timeout_ms: target.timeout.as_millis() },
                ))
            }
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if e.is_retryable() && attempt == 1 && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())))
                    .await;
            }
            Ok(Err(e)) => return Err(e),
        }
    }
}
