//! Nonces and event ids for `bm_push`, drawn from the OS in blocks.
//!
//! Every sealed event needs 28 random bytes (a 12-byte AES-GCM nonce and a
//! 16-byte event id). One `getrandom` syscall per envelope was a fifth of
//! `bm_seal`'s cost (the kernel's per-call CRNG setup dominates small
//! reads), so the PHP thread takes [`POOL_LEN`] bytes at once and hands
//! them out in order, each byte once.
//!
//! Fork safety is the whole difficulty: a forked child inherits a copy of
//! the pool, and handing the same bytes out in parent and child would reuse
//! AES-GCM nonces under the same key. The pool is therefore tagged with a
//! fork generation that a `pthread_atfork` child handler bumps in every new
//! process (PHP-FPM workers, `pcntl_fork`), and with the pid as a second
//! check; a pool whose tag does not match is discarded unread. The same
//! generation lets [`process_id`] skip the `getpid` syscall between forks. If the
//! handler cannot be registered, every call reads the OS directly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once};

/// Bytes drawn from the OS per refill (about 146 envelopes).
pub const POOL_LEN: usize = 4096;

/// Bumped in the child after every `fork()`.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
/// Whether the atfork handler is in place (set once, never unset).
static ATFORK_REGISTERED: AtomicBool = AtomicBool::new(false);
static REGISTER: Once = Once::new();

extern "C" fn forked_child() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

extern "C" {
    fn pthread_atfork(
        prepare: Option<extern "C" fn()>,
        parent: Option<extern "C" fn()>,
        child: Option<extern "C" fn()>,
    ) -> std::os::raw::c_int;
}

fn register_atfork() -> bool {
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic, which is
        // async-signal-safe and valid in the single-threaded child.
        let rc = unsafe { pthread_atfork(None, None, Some(forked_child)) };
        ATFORK_REGISTERED.store(rc == 0, Ordering::SeqCst);
    });
    ATFORK_REGISTERED.load(Ordering::SeqCst)
}

/// The pid cached for the fork generation it was read in.
static PID_CACHE: Mutex<Option<(u64, u32)>> = Mutex::new(None);

/// This process's id without a `getpid` syscall per call: the cached value
/// is reused until the atfork handler reports a fork (without the handler,
/// every call asks the kernel).
pub fn process_id() -> u32 {
    if !register_atfork() {
        return std::process::id();
    }
    let generation = FORK_GENERATION.load(Ordering::SeqCst);
    let mut cache = crate::worker::lock(&PID_CACHE);
    match *cache {
        Some((g, pid)) if g == generation => pid,
        _ => {
            let pid = std::process::id();
            *cache = Some((generation, pid));
            pid
        }
    }
}

struct Pool {
    bytes: [u8; POOL_LEN],
    /// Next unused byte; `POOL_LEN` when empty.
    next: usize,
    generation: u64,
    pid: u32,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { bytes: [0; POOL_LEN], next: POOL_LEN, generation: 0, pid: 0 });

/// Fills `out` with bytes from the OS's CSPRNG that no other call, in this
/// process or any process forked from it, ever received.
///
/// # Panics
/// Only if the OS has no randomness to give (as [`bm_proto::keys::fill_random`]).
pub fn fill(out: &mut [u8]) {
    if out.len() > POOL_LEN / 4 || !register_atfork() {
        bm_proto::keys::fill_random(out);
        return;
    }
    let mut pool = crate::worker::lock(&POOL);
    let generation = FORK_GENERATION.load(Ordering::SeqCst);
    let pid = process_id();
    if pool.generation != generation || pool.pid != pid || pool.next + out.len() > POOL_LEN {
        // Inherited through fork, or used up: never hand out what is left.
        bm_proto::keys::fill_random(&mut pool.bytes);
        pool.next = 0;
        pool.generation = generation;
        pool.pid = pid;
    }
    let at = pool.next;
    out.copy_from_slice(&pool.bytes[at..at + out.len()]);
    // Each byte leaves the pool once.
    pool.bytes[at..at + out.len()].fill(0);
    pool.next = at + out.len();
}

/// A fresh random AES-GCM nonce.
pub fn nonce() -> [u8; bm_proto::envelope::NONCE_LEN] {
    let mut n = [0u8; bm_proto::envelope::NONCE_LEN];
    fill(&mut n);
    n
}

/// A fresh random event id (16 bytes, base64url).
pub fn event_id() -> bm_proto::EventId {
    let mut b = [0u8; 16];
    fill(&mut b);
    bm_proto::EventId::from_random_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn no_two_draws_are_equal_across_refills() {
        let mut seen = HashSet::new();
        for _ in 0..(3 * POOL_LEN / 12) {
            assert!(seen.insert(nonce()), "a nonce repeated");
        }
        let ids: HashSet<_> = (0..1000).map(|_| event_id().as_str().to_string()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
