//! Locking shared by the worker, the key cache and the random generator;
//! a module of its own so that none of them imports another for it.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: every critical section in the
/// extension leaves its data consistent, and a panic in one must not stop
/// PHP's requests.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
