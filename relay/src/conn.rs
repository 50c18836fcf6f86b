//! The routing handle of one authenticated socket: who it is (site, user,
//! a process-unique id), its subscriptions, and its [`Outbox`]. The router
//! holds these; it never sees the socket itself, only the outbox's
//! non-blocking `enqueue`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bm_proto::{SiteId, ThreadId, UserId};

use crate::frame::Frame;
use crate::outbox::{CloseRequest, Enqueued, Outbox};

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubError {
    /// The socket already holds the maximum number of subscriptions.
    TooMany,
}

/// One subscription: the thread, and the `iat` of the thread token that
/// opened it (a `/v1/disconnect` stamped `t` revokes it only if `iat <= t`,
/// so a replayed request cannot end a subscription opened afterwards).
type Sub = (ThreadId, u64);

/// The part of a socket that other tasks may touch.
pub struct Conn {
    /// Process-unique id (for removal from routing vectors and for logs).
    pub id: u64,
    /// The site of the connection token.
    pub site: SiteId,
    /// The user of the connection token.
    pub user: UserId,
    /// The socket's write side.
    pub out: Arc<Outbox>,
    /// `iat` of the connection token in force (the `auth` one, or the last
    /// `refresh`): a user-wide `/v1/disconnect` stamped `t` closes the
    /// socket only if this is `<= t`.
    iat: AtomicU64,
    subs: Mutex<Vec<Sub>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Conn {
    /// A connection handle without a socket: frames only queue up (tests,
    /// benchmarks of the routing table).
    pub fn new(site: SiteId, user: UserId) -> Conn {
        Conn::with_outbox(site, user, 0, Arc::new(Outbox::new(None)))
    }

    /// The handle of a socket authenticated with a token issued at `iat`,
    /// writing through `out`.
    pub fn with_outbox(site: SiteId, user: UserId, iat: u64, out: Arc<Outbox>) -> Conn {
        Conn {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            site,
            user,
            out,
            iat: AtomicU64::new(iat),
            subs: Mutex::new(Vec::new()),
        }
    }

    fn subs(&self) -> MutexGuard<'_, Vec<Sub>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `iat` of the connection token in force.
    pub fn iat(&self) -> u64 {
        self.iat.load(Ordering::Acquire)
    }

    /// A `refresh` put a newer connection token in force.
    pub fn set_iat(&self, iat: u64) {
        self.iat.store(iat, Ordering::Release);
    }

    /// See [`Outbox::enqueue`].
    pub fn enqueue(&self, frame: &Frame, max_bytes: usize) -> Enqueued {
        self.out.enqueue(frame, max_bytes)
    }

    /// See [`Outbox::pop`].
    pub fn pop(&self) -> Option<Frame> {
        self.out.pop()
    }

    /// True when frames are waiting.
    pub fn has_pending(&self) -> bool {
        self.out.has_pending()
    }

    /// Bytes waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.out.queued_bytes()
    }

    /// See [`Outbox::request_close`].
    pub fn request_close(&self, req: CloseRequest) -> bool {
        self.out.request_close(req)
    }

    /// The pending close request, if any.
    pub fn close_requested(&self) -> Option<CloseRequest> {
        self.out.close_requested()
    }

    /// Records a subscription opened with a thread token issued at `iat`:
    /// `Ok(false)` if already there (its `iat` then moves to the newer of
    /// the two), an error when the socket already watches `max` threads.
    pub fn add_sub(&self, thread: ThreadId, iat: u64, max: usize) -> Result<bool, SubError> {
        let mut s = self.subs();
        if let Some(sub) = s.iter_mut().find(|(t, _)| *t == thread) {
            sub.1 = sub.1.max(iat);
            return Ok(false);
        }
        if s.len() >= max {
            return Err(SubError::TooMany);
        }
        s.push((thread, iat));
        Ok(true)
    }

    /// Forgets a subscription; true if it was there.
    pub fn remove_sub(&self, thread: ThreadId) -> bool {
        self.remove_sub_if(thread, |_| true)
    }

    /// Forgets a subscription if `pred` holds for its token's `iat`; true
    /// if it was there and removed.
    pub fn remove_sub_if(&self, thread: ThreadId, pred: impl FnOnce(u64) -> bool) -> bool {
        let mut s = self.subs();
        match s.iter().position(|(t, _)| *t == thread) {
            Some(i) if pred(s[i].1) => {
                s.swap_remove(i);
                true
            }
            _ => false,
        }
    }

    /// True when the socket watches `thread`.
    pub fn is_subscribed(&self, thread: ThreadId) -> bool {
        self.subs().iter().any(|(t, _)| *t == thread)
    }

    /// Takes every subscription (socket teardown).
    pub fn take_subs(&self) -> Vec<ThreadId> {
        std::mem::take(&mut *self.subs()).into_iter().map(|(t, _)| t).collect()
    }

    /// The threads the socket watches (left in place; for the cluster's
    /// presence directory, read before a teardown takes them).
    pub fn threads(&self) -> Vec<ThreadId> {
        self.subs().iter().map(|(t, _)| *t).collect()
    }

    /// Number of subscriptions.
    pub fn sub_count(&self) -> usize {
        self.subs().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        Conn::new(SiteId::new("s").unwrap(), UserId::new(1).unwrap())
    }

    #[test]
    fn subscriptions() {
        let c = conn();
        let t = ThreadId::new(3).unwrap();
        assert_eq!(c.add_sub(t, 10, 1), Ok(true));
        assert_eq!(c.add_sub(t, 12, 1), Ok(false));
        assert_eq!(c.add_sub(ThreadId::new(4).unwrap(), 10, 1), Err(SubError::TooMany));
        assert!(!c.remove_sub_if(t, |iat| iat <= 11), "the newer token's iat is kept");
        assert!(c.is_subscribed(t));
        assert!(c.remove_sub(t));
        assert!(!c.remove_sub(t));
    }
}
