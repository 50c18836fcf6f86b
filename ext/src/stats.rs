//! This process's delivery counters (`bm_stats()`, phpinfo()) and the
//! bounded latency rings behind their percentiles. Touched by the PHP
//! thread and the sender alike, hence atomics and short locks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::error::BmError;
use crate::sync::lock;

/// Samples kept for the latency percentiles.
const LATENCY_SAMPLES: usize = 4096;

/// Counters shown by `bm_stats()` and phpinfo().
#[derive(Default)]
pub struct Stats {
    /// Events accepted by the relay.
    pub sent: AtomicU64,
    /// Events the relay refused or that could not reach it.
    pub failed: AtomicU64,
    /// Events refused because the queue was full, or left at shutdown.
    pub dropped: AtomicU64,
    /// Requests made to the relay.
    pub batches: AtomicU64,
    /// Failures not yet reported to the PHP error log.
    pub unlogged_failures: AtomicU64,
    /// Last failure: message and unix time.
    pub last_error: Mutex<Option<(String, u64)>>,
    /// Relay round-trip durations of batches (µs), newest last.
    pub batch_latency: Mutex<VecDeque<u32>>,
}

impl Stats {
    /// Counts one request to the relay and its round trip since `started`.
    pub fn record_request(&self, started: Instant) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        record_sample(&mut lock(&self.batch_latency), started.elapsed().as_micros());
    }

    /// Counts `events` that failed (at least one failure for the log) and
    /// keeps `err` as the last error.
    pub fn record_failure(&self, events: u64, err: &BmError) {
        self.failed.fetch_add(events, Ordering::Relaxed);
        self.unlogged_failures.fetch_add(events.max(1), Ordering::Relaxed);
        *lock(&self.last_error) = Some((err.to_string(), unix_now()));
    }
}

/// Seconds since the epoch (0 on a clock before it).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Pushes a sample into a bounded ring.
pub fn record_sample(ring: &mut VecDeque<u32>, micros: u128) {
    if ring.len() == LATENCY_SAMPLES {
        ring.pop_front();
    }
    ring.push_back(u32::try_from(micros).unwrap_or(u32::MAX));
}

/// p50 and p99 of the samples, in µs (0 when there are none).
pub fn percentiles(ring: &VecDeque<u32>) -> (u32, u32) {
    if ring.is_empty() {
        return (0, 0);
    }
    let mut v: Vec<u32> = ring.iter().copied().collect();
    v.sort_unstable();
    let at = |p: usize| v[((v.len() - 1) * p) / 100];
    (at(50), at(99))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_math() {
        let mut ring = VecDeque::new();
        assert_eq!(percentiles(&ring), (0, 0));
        for i in 1..=100u128 {
            record_sample(&mut ring, i);
        }
        assert_eq!(percentiles(&ring), (50, 99));
        for _ in 0..LATENCY_SAMPLES {
            record_sample(&mut ring, 7);
        }
        assert_eq!(ring.len(), LATENCY_SAMPLES);
        assert_eq!(percentiles(&ring), (7, 7));
    }
}
