//! Nonces and event ids for `bm_push`: a ChaCha20 CSPRNG seeded from the OS.
//!
//! Every sealed event needs 28 random bytes (a 12-byte AES-GCM nonce and a
//! 16-byte event id). One `getrandom` syscall per envelope was a fifth of
//! `bm_seal`'s cost; drawing 4 KiB at a time instead put a 10 µs refill on
//! every 146th push, right in the latency tail. So the PHP thread seeds a
//! ChaCha20 generator (`rand_chacha`, the cipher behind the OS's own CRNG)
//! with 32 bytes from `getrandom` and draws from it in user space: about
//! 0.1 µs per event, no syscall, no periodic spike. It is reseeded from the
//! OS every [`RESEED_AFTER`] bytes.
//!
//! Fork safety is the whole difficulty: a forked child inherits a copy of
//! the generator, and drawing the same stream in parent and child would
//! reuse AES-GCM nonces under the same key. The generator is therefore
//! tagged with a fork generation that a `pthread_atfork` child handler
//! bumps in every process made by `fork()` (PHP-FPM workers, `pcntl_fork`);
//! a generator whose tag does not match is replaced by a freshly seeded one
//! before anything is drawn. If the handler cannot be registered, every
//! call reads the OS directly. The same generation lets [`process_id`]
//! skip the `getpid` syscall between forks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Bytes drawn from one seed before the generator is reseeded from the OS.
pub const RESEED_AFTER: usize = 1 << 20;

/// Bumped in the child after every `fork()`.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
/// Whether the atfork handler is in place (set once, never unset).
static ATFORK_REGISTERED: AtomicBool = AtomicBool::new(false);
static REGISTER: Once = Once::new();

extern "C" fn forked_child() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

fn register_atfork() -> bool {
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic, which is
        // async-signal-safe and valid in the single-threaded child.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forked_child as unsafe extern "C" fn())) };
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
    let mut cache = crate::sync::lock(&PID_CACHE);
    match *cache {
        Some((g, pid)) if g == generation => pid,
        _ => {
            let pid = std::process::id();
            *cache = Some((generation, pid));
            pid
        }
    }
}

/// The seeded generator and the fork generation it belongs to.
struct Seeded {
    rng: ChaCha20Rng,
    drawn: usize,
    generation: u64,
}

static GENERATOR: Mutex<Option<Seeded>> = Mutex::new(None);

/// Fills `out` with bytes no other call, in this process or any process
/// forked from it, ever received (CSPRNG output; see the module docs).
///
/// # Panics
/// Only if the OS has no randomness to give (as [`bm_proto::keys::fill_random`]).
pub fn fill(out: &mut [u8]) {
    if !register_atfork() {
        bm_proto::keys::fill_random(out);
        return;
    }
    let generation = FORK_GENERATION.load(Ordering::SeqCst);
    let mut slot = crate::sync::lock(&GENERATOR);
    let fresh = match slot.as_ref() {
        Some(g) => g.generation != generation || g.drawn + out.len() > RESEED_AFTER,
        None => true,
    };
    if fresh {
        // Inherited through fork, or used enough: never draw from it again.
        let mut seed = [0u8; 32];
        bm_proto::keys::fill_random(&mut seed);
        *slot = Some(Seeded { rng: ChaCha20Rng::from_seed(seed), drawn: 0, generation });
    }
    if let Some(g) = slot.as_mut() {
        g.rng.fill_bytes(out);
        g.drawn += out.len();
    }
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
    fn no_two_draws_are_equal() {
        let nonces: HashSet<_> = (0..5000).map(|_| nonce()).collect();
        assert_eq!(nonces.len(), 5000, "a nonce repeated");
        let ids: HashSet<_> = (0..1000).map(|_| event_id().as_str().to_string()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn the_generator_is_reseeded_after_its_budget() {
        let _ = nonce();
        let before = crate::sync::lock(&GENERATOR).as_ref().map(|g| g.drawn).unwrap_or(0);
        assert!(before > 0);
        if let Some(g) = crate::sync::lock(&GENERATOR).as_mut() {
            g.drawn = RESEED_AFTER;
        }
        let _ = nonce();
        let after = crate::sync::lock(&GENERATOR).as_ref().map(|g| g.drawn).unwrap_or(0);
        // Other tests may draw meanwhile; the count restarted either way.
        assert!(after < RESEED_AFTER / 2, "a fresh seed after the budget ({after} bytes drawn)");
    }
}
