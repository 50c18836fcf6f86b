//! Spreading reconnects: a relay that closes thousands of sockets at once
//! (shutdown, restart, a reload that re-keys a site) must not have them all
//! return in the same second (a reconnect storm: every browser's `auth`,
//! and behind it every browser's token and catch-up request to WordPress).
//!
//! Two measures, both configurable (`reconnect_pace_per_sec`,
//! `close_spread_secs`):
//! - each close frame tells its client how long to wait before it
//!   reconnects (`; retry_ms=N` in the reason, protocol §6): a uniform
//!   random delay within `sockets / pace` seconds, so the clients that
//!   honour it come back at about `pace` per second;
//! - the closes themselves go out in small batches over
//!   `close_spread_secs`, so clients that ignore the hint are spread too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::conn::Conn;
use crate::outbox::CloseRequest;

/// Shortest window the hints spread over, however few the sockets.
const MIN_WINDOW_MS: f64 = 1000.0;
/// Longest delay ever asked of a client (clients cap it too).
const MAX_WINDOW_MS: f64 = 600_000.0;
/// Interval between two batches of closes.
const BATCH_EVERY: Duration = Duration::from_millis(50);

/// A random delay, in ms, for one of `sockets` sockets told to come back
/// at `pace` per second.
pub fn retry_ms(sockets: u64, pace: f64) -> u32 {
    let window = (sockets as f64 / pace * 1000.0).clamp(MIN_WINDOW_MS, MAX_WINDOW_MS);
    // At least 1: 0 means "no hint" in a close request.
    ((unit_random() * window) as u32).max(1)
}

/// A uniform draw in [0, 1): spreading, not secrecy, so a shared
/// SplitMix64 stream is enough (no syscall, no lock).
fn unit_random() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(seed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Closes `conns` with `req` over `spread`, in batches, each told a
/// reconnect delay at `pace` per second. Returns how many it closed (a
/// socket already closing keeps its first close).
pub async fn close_paced(conns: Vec<Arc<Conn>>, req: CloseRequest, spread: Duration, pace: f64) -> u64 {
    let n = conns.len();
    if n == 0 {
        return 0;
    }
    let batches = (spread.as_millis() / BATCH_EVERY.as_millis()).max(1) as usize;
    let per_batch = n.div_ceil(batches);
    let mut closed = 0;
    for (i, batch) in conns.chunks(per_batch).enumerate() {
        if i > 0 {
            tokio::time::sleep(BATCH_EVERY).await;
        }
        for c in batch {
            if c.request_close(req.with_retry(retry_ms(n as u64, pace))) {
                closed += 1;
            }
        }
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_spread_uniformly_over_sockets_over_pace() {
        let n = 20_000u64;
        let draws: Vec<u32> = (0..n).map(|_| retry_ms(n, 1000.0)).collect();
        assert!(draws.iter().all(|&d| d < 20_000));
        // Per-second buckets stay near the pace (binomial, sd ~ 31).
        let mut per_sec = [0u32; 20];
        for d in draws {
            per_sec[(d / 1000) as usize] += 1;
        }
        assert!(per_sec.iter().all(|&c| (850..1150).contains(&c)), "{per_sec:?}");
        assert!(retry_ms(3, 1000.0) < 1000, "a few sockets spread over the minimum window");
    }

    #[tokio::test]
    async fn closes_go_out_in_batches_over_the_spread() {
        use bm_proto::{SiteId, UserId};
        let conns: Vec<Arc<Conn>> =
            (1..=100).map(|u| Arc::new(Conn::new(SiteId::new("s").unwrap(), UserId::new(u).unwrap()))).collect();
        let started = tokio::time::Instant::now();
        let req = CloseRequest::new(1001, "bye");
        let n = close_paced(conns.clone(), req, Duration::from_millis(200), 50.0).await;
        assert_eq!(n, 100);
        assert!(started.elapsed() >= Duration::from_millis(150), "four batches, 50 ms apart");
        let hints: Vec<u32> = conns.iter().map(|c| c.close_requested().unwrap().retry_ms).collect();
        assert!(hints.iter().all(|&h| h < 2000), "100 sockets at 50/s: within 2 s");
        assert!(hints.iter().any(|&h| h > 1000), "and spread over it");
    }
}
