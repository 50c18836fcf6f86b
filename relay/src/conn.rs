//! The shared half of one WebSocket: its identity, its bounded outbound
//! queue and its subscriptions.
//!
//! The router holds `Arc<Conn>`s and pushes frames into them synchronously
//! (a short mutex, never held across an `.await`); the socket's own task
//! drains the queue into the WebSocket. Frames are [`Frame`]s, reference
//! counted byte strings built once per event: queuing one for 10 000
//! sockets costs 10 000 pointer copies, and the bytes are freed when the
//! last socket has written them.
//!
//! The queue is bounded in bytes. A push that would overflow it does not
//! drop the frame silently: it empties the queue, marks the socket for a
//! 4008 close and wakes its task (protocol §6).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bm_proto::{SiteId, ThreadId, UserId};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One serialized relay → client text frame, shared by every recipient.
pub type Frame = Utf8Bytes;

/// Why and how the relay wants a socket closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseRequest {
    /// WebSocket close code (see `bm_proto::frames::close`).
    pub code: u16,
    /// Short reason sent in the close frame (no secrets, no payloads).
    pub reason: &'static str,
}

/// Outcome of queuing a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued.
    Yes,
    /// The queue overflowed: the socket is now being closed with 4008.
    Overflow,
    /// The socket is already closing; nothing queued.
    Closing,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Frame>,
    bytes: usize,
    close: Option<CloseRequest>,
    subs: Vec<ThreadId>,
}

/// The part of a socket that other tasks may touch.
pub struct Conn {
    /// Process-unique id (for removal from routing vectors and for logs).
    pub id: u64,
    /// The site of the connection token.
    pub site: SiteId,
    /// The user of the connection token.
    pub user: UserId,
    state: Mutex<State>,
    /// Wakes the socket task: frames queued or a close requested.
    pub wake: Notify,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Conn {
    /// A new connection handle with an empty queue.
    pub fn new(site: SiteId, user: UserId) -> Conn {
        Conn {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            site,
            user,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it; the state is a
        // plain queue that stays consistent, so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `frame` unless that would take the queue past `max_bytes`,
    /// in which case the queue is emptied and a 4008 close requested.
    pub fn enqueue(&self, frame: &Frame, max_bytes: usize) -> Enqueued {
        let outcome = {
            let mut s = self.lock();
            if s.close.is_some() {
                return Enqueued::Closing;
            }
            if s.bytes + frame.len() > max_bytes {
                s.queue = VecDeque::new();
                s.bytes = 0;
                s.close = Some(CloseRequest {
                    code: bm_proto::frames::close::SLOW_CONSUMER,
                    reason: "slow consumer: outbound queue full",
                });
                Enqueued::Overflow
            } else {
                s.bytes += frame.len();
                s.queue.push_back(frame.clone());
                Enqueued::Yes
            }
        };
        self.wake.notify_one();
        outcome
    }

    /// Takes the next frame to write.
    pub fn pop(&self) -> Option<Frame> {
        let mut s = self.lock();
        let f = s.queue.pop_front()?;
        s.bytes -= f.len();
        if s.queue.is_empty() && s.queue.capacity() > 64 {
            // A burst is over: give the memory back (idle sockets stay small).
            s.queue = VecDeque::new();
        }
        Some(f)
    }

    /// True when frames are waiting.
    pub fn has_pending(&self) -> bool {
        !self.lock().queue.is_empty()
    }

    /// Bytes waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Asks the socket task to close with `req` (first request wins) and
    /// frees whatever was queued. Returns false when already closing.
    pub fn request_close(&self, req: CloseRequest) -> bool {
        let first = {
            let mut s = self.lock();
            if s.close.is_some() {
                false
            } else {
                s.close = Some(req);
                s.queue = VecDeque::new();
                s.bytes = 0;
                true
            }
        };
        self.wake.notify_one();
        first
    }

    /// The pending close request, if any.
    pub fn close_requested(&self) -> Option<CloseRequest> {
        self.lock().close
    }

    /// Records a subscription: `Ok(false)` if already there, an error when
    /// the socket already watches `max` threads.
    pub fn add_sub(&self, thread: ThreadId, max: usize) -> Result<bool, crate::router::SubError> {
        let mut s = self.lock();
        if s.subs.contains(&thread) {
            return Ok(false);
        }
        if s.subs.len() >= max {
            return Err(crate::router::SubError::TooMany);
        }
        s.subs.push(thread);
        Ok(true)
    }

    /// Forgets a subscription; true if it was there.
    pub fn remove_sub(&self, thread: ThreadId) -> bool {
        let mut s = self.lock();
        match s.subs.iter().position(|t| *t == thread) {
            Some(i) => {
                s.subs.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// True when the socket watches `thread`.
    pub fn is_subscribed(&self, thread: ThreadId) -> bool {
        self.lock().subs.contains(&thread)
    }

    /// Takes every subscription (socket teardown).
    pub fn take_subs(&self) -> Vec<ThreadId> {
        std::mem::take(&mut self.lock().subs)
    }

    /// Number of subscriptions.
    pub fn sub_count(&self) -> usize {
        self.lock().subs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        Conn::new(SiteId::new("s").unwrap(), UserId::new(1).unwrap())
    }

    #[test]
    fn queue_is_bounded_in_bytes_and_overflow_closes() {
        let c = conn();
        let f = Frame::from("x".repeat(40));
        assert_eq!(c.enqueue(&f, 100), Enqueued::Yes);
        assert_eq!(c.enqueue(&f, 100), Enqueued::Yes);
        assert_eq!(c.queued_bytes(), 80);
        assert_eq!(c.enqueue(&f, 100), Enqueued::Overflow);
        assert_eq!(c.queued_bytes(), 0, "overflow frees the queue");
        assert_eq!(c.close_requested().map(|r| r.code), Some(4008));
        assert_eq!(c.enqueue(&f, 100), Enqueued::Closing);
        assert!(c.pop().is_none());
    }

    #[test]
    fn pop_in_order_and_shared_bytes() {
        let c = conn();
        let a = Frame::from("a");
        let b = Frame::from("bb");
        c.enqueue(&a, 10);
        c.enqueue(&b, 10);
        assert_eq!(c.pop().as_deref(), Some("a"));
        assert_eq!(c.queued_bytes(), 2);
        assert_eq!(c.pop().as_deref(), Some("bb"));
        assert!(!c.has_pending());
    }

    #[test]
    fn subscriptions() {
        let c = conn();
        let t = ThreadId::new(3).unwrap();
        assert_eq!(c.add_sub(t, 1), Ok(true));
        assert_eq!(c.add_sub(t, 1), Ok(false));
        assert_eq!(c.add_sub(ThreadId::new(4).unwrap(), 1), Err(crate::router::SubError::TooMany));
        assert!(c.is_subscribed(t));
        assert!(c.remove_sub(t));
        assert!(!c.remove_sub(t));
    }

    #[test]
    fn first_close_wins() {
        let c = conn();
        assert!(c.request_close(CloseRequest { code: 4003, reason: "r" }));
        assert!(!c.request_close(CloseRequest { code: 1001, reason: "r" }));
        assert_eq!(c.close_requested().unwrap().code, 4003);
    }
}
