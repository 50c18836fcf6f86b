//! The queue between PHP and the background sender: async events waiting
//! in order, the count of those queued or in flight (what `bm_flush` waits
//! on), the sender's parked flag and wake-up, and the batching rule.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::BmError;
use crate::failover::Health;
use crate::relay::Relays;
use crate::stats::{unix_now, Stats};
use crate::sync::lock;

/// Most events in one push request (the protocol's default relay limit).
pub const MAX_BATCH_EVENTS: usize = 1000;
/// Most body bytes in one batched push (under the relay's 1 MiB default).
pub const MAX_BATCH_BYTES: usize = 900 * 1024;

/// One async event waiting to be sent.
pub struct QueuedEvent {
    /// Destination (events batch together only with the same one).
    pub target: Arc<Relays>,
    /// `{"to":…,"thread":…,"e":…}`.
    pub json: String,
}

/// State shared by the PHP thread and the sender task.
pub struct Shared {
    pub(crate) queue: Mutex<VecDeque<QueuedEvent>>,
    pub(crate) wake: tokio::sync::Notify,
    /// True while the sender is parked (not lingering): only then does a
    /// push pay for waking it.
    pub(crate) parked: AtomicBool,
    /// Async events queued or in flight.
    pub(crate) pending: Mutex<u64>,
    drained: Condvar,
    /// Counters.
    pub stats: Stats,
    /// Which relay URLs answered or not, for the sender and the calls alike.
    pub health: Mutex<Health>,
}

impl Shared {
    /// An empty queue. The sender starts lingering, not parked: it looks at
    /// the queue before it ever waits, so an event queued before it first
    /// runs needs no wake-up.
    pub fn new() -> Shared {
        Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            parked: AtomicBool::new(false),
            pending: Mutex::new(0),
            drained: Condvar::new(),
            stats: Stats::default(),
            health: Mutex::new(Health::default()),
        }
    }

    /// Async events queued or in flight now.
    pub fn pending(&self) -> u64 {
        *lock(&self.pending)
    }

    /// Marks `n` events as settled (sent or failed); wakes waiting flushes
    /// when none are left.
    pub fn finish_events(&self, n: u64) {
        let mut p = lock(&self.pending);
        *p = p.saturating_sub(n);
        if *p == 0 {
            self.drained.notify_all();
        }
    }

    /// Queues async events if they all fit under `queue_size`; all or none.
    /// Returns false (and counts them as dropped) when they do not fit.
    pub fn enqueue(&self, events: Vec<QueuedEvent>, queue_size: usize) -> bool {
        let n = events.len() as u64;
        {
            let mut p = lock(&self.pending);
            if *p + n > queue_size as u64 {
                drop(p);
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                let err = BmError::input(format!("queue full ({queue_size} events): {n} event(s) dropped"));
                *lock(&self.stats.last_error) = Some((err.to_string(), unix_now()));
                self.stats.unlogged_failures.fetch_add(n, Ordering::Relaxed);
                return false;
            }
            *p += n;
        }
        lock(&self.queue).extend(events);
        // Pairs with the sender's store of `parked` and its look at the
        // queue (see `sender`): one of the two sides sees the other.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
        true
    }

    /// Waits until every queued async event was sent or failed, at most
    /// `timeout`. True when the queue is empty.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut p = lock(&self.pending);
        if *p > 0 {
            // Do not wait for a linger tick.
            self.wake.notify_one();
        }
        while *p > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            p = self.drained.wait_timeout(p, deadline - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        true
    }

    /// Empties the queue (module shutdown); returns how many were left.
    pub fn clear(&self) -> u64 {
        let mut q = lock(&self.queue);
        let n = q.len() as u64;
        q.clear();
        n
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// Takes a run of same-target events from the front of the queue, as one batch.
pub fn take(shared: &Shared) -> Option<(Arc<Relays>, Vec<String>)> {
    let mut q = lock(&shared.queue);
    let first = q.pop_front()?;
    let target = first.target;
    let mut bytes = first.json.len();
    let mut batch = vec![first.json];
    while batch.len() < MAX_BATCH_EVENTS {
        match q.front() {
            Some(next)
                if (Arc::ptr_eq(&next.target, &target) || next.target.same_destination(&target))
                    && bytes + next.json.len() < MAX_BATCH_BYTES => {}
            _ => break,
        }
        if let Some(next) = q.pop_front() {
            bytes += next.json.len() + 1;
            batch.push(next.json);
        }
    }
    Some((target, batch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use bm_proto::{RelayKey, SiteId};

    use crate::relay::Target;

    fn target(url: &str, site: &str) -> Arc<Relays> {
        Arc::new(Relays::new(vec![Target {
            base_url: url.to_string(),
            site: SiteId::new(site).unwrap(),
            relay_key: RelayKey::from_bytes([7; 32]),
            timeout: Duration::from_millis(2000),
            connect_timeout: Duration::from_millis(500),
            transport: crate::transport::Transport::for_url(url),
            protocol: 1,
        }]))
    }

    fn ev(t: &Arc<Relays>, i: usize) -> QueuedEvent {
        QueuedEvent { target: t.clone(), json: format!(r#"{{"to":[1],"e":{{"i":{i}}}}}"#) }
    }

    #[test]
    fn batches_group_consecutive_events_of_one_target_only() {
        let shared = Shared::new();
        let a = target("http://127.0.0.1:1", "a.example");
        let a2 = target("http://127.0.0.1:1", "a.example"); // same destination, other Arc
        let b = target("http://127.0.0.1:1", "b.example");
        lock(&shared.queue).extend([ev(&a, 0), ev(&a2, 1), ev(&b, 2), ev(&a, 3)]);
        let sizes: Vec<(String, usize)> =
            std::iter::from_fn(|| take(&shared)).map(|(t, batch)| (t.first().site.to_string(), batch.len())).collect();
        assert_eq!(sizes, [("a.example".into(), 2), ("b.example".into(), 1), ("a.example".into(), 1)]);
        lock(&shared.queue).extend((0..MAX_BATCH_EVENTS + 5).map(|i| ev(&a, i)));
        assert_eq!(take(&shared).unwrap().1.len(), MAX_BATCH_EVENTS);
        assert_eq!(take(&shared).unwrap().1.len(), 5);
        assert!(take(&shared).is_none());
    }

    #[test]
    fn a_full_queue_refuses_all_and_counts_them_dropped() {
        let t = target("http://127.0.0.1:9", "full.example");
        let shared = Shared::new();
        *lock(&shared.pending) = 9; // as if 9 were in flight
        assert!(!shared.enqueue((0..2).map(|i| ev(&t, i)).collect(), 10));
        assert_eq!(shared.stats.dropped.load(Ordering::Relaxed), 2);
        assert!(lock(&shared.queue).is_empty(), "none of them queued");
    }
}
