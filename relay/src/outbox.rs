//! The write side of one WebSocket: a bounded queue of [`Frame`]s and the
//! socket they are written into.
//!
//! The socket's write side belongs to its [`Outbox`], and only to whoever
//! holds the outbox's mutex. A push (running in the HTTP handler's task)
//! that finds the queue empty writes the frame straight into the socket
//! with a non-blocking `try_write`, in the same turn, with no wake-up of
//! the socket's task; what the kernel does not take (a partial write,
//! `WouldBlock`) is queued, and the socket's task, woken once, writes the
//! queue out when the socket is writable. Frames never interleave: every
//! byte goes out under the mutex, in queue order, and the queue's head may
//! be a frame already partly written. tungstenite's own writes (pongs, the
//! close handshake) come through the same outbox ([`crate::ws`]).
//!
//! The queue is bounded in bytes. A push that would overflow it does not
//! drop the frame silently: it empties the queue (all but the unwritten
//! rest of a frame already partly written), marks the socket for a 4008
//! close and wakes its task (protocol §6).
//!
//! A stream (`/v1/stream`, protocol §6.1) has an outbox too, writing SSE
//! events into its HTTP/1.1 connection by the same rules: same queue,
//! same bound, same direct write. It starts *held* (everything queues,
//! nothing is written) until its response head is put in front, so no
//! event can reach the wire before the head, however early it is routed.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::frame::Frame;

/// Why and how the relay wants a socket closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseRequest {
    /// WebSocket close code (see `bm_proto::frames::close`).
    pub code: u16,
    /// Short reason sent in the close frame (no secrets, no payloads).
    pub reason: &'static str,
    /// When non-zero, the client is told to wait this many milliseconds
    /// before it reconnects (`; retry_ms=N` after the reason, protocol §6):
    /// how a shutdown spreads thousands of reconnects over time.
    pub retry_ms: u32,
}

impl CloseRequest {
    /// A close with `code` and `reason`, no reconnect delay.
    pub const fn new(code: u16, reason: &'static str) -> CloseRequest {
        CloseRequest { code, reason, retry_ms: 0 }
    }

    /// The same close, telling the client to wait `ms` before reconnecting.
    pub const fn with_retry(self, ms: u32) -> CloseRequest {
        CloseRequest { retry_ms: ms, ..self }
    }

    /// The reason as sent in the close frame (at most 123 bytes, as RFC 6455
    /// allows: reasons are short and the suffix is at most 22 bytes).
    pub fn wire_reason(&self) -> String {
        if self.retry_ms == 0 {
            self.reason.to_owned()
        } else {
            format!("{}; retry_ms={}", self.reason, self.retry_ms)
        }
    }
}

/// Outcome of queuing a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Written to the socket or queued.
    Yes,
    /// The queue overflowed: the socket is now being closed with 4008.
    Overflow,
    /// The socket is already closing; nothing queued.
    Closing,
}

/// How far past the queue bound the relay's own control frames (pongs,
/// the close handshake) may go before the socket is given up: a client
/// that sends pings and reads nothing cannot grow the queue for ever.
const CONTROL_SLACK: usize = 4096;

/// Most frames handed to one `writev` when the queue is written out.
const MAX_IOV: usize = 64;

#[derive(Default)]
struct OutState {
    queue: VecDeque<Bytes>,
    /// Bytes of the queue's head already written.
    head_off: usize,
    /// Part of the head is on the wire already (it may have been queued
    /// as the rest of a direct write, with `head_off` 0): it must go out
    /// whole, whatever else is dropped.
    head_started: bool,
    /// Unwritten bytes in the queue.
    bytes: usize,
    close: Option<CloseRequest>,
    /// The socket's task has ended: nothing may be written any more.
    retired: bool,
    /// A stream's response head is not written yet: queue, do not write.
    held: bool,
}

impl OutState {
    /// Drops the queue but keeps the unwritten rest of a frame already
    /// partly written (cutting it would corrupt the stream).
    fn clear_queue(&mut self) {
        let partial = if self.head_started { self.queue.pop_front().map(|h| h.slice(self.head_off..)) } else { None };
        self.queue = VecDeque::new();
        self.head_off = 0;
        self.bytes = 0;
        self.head_started = partial.is_some();
        if let Some(rest) = partial {
            self.bytes = rest.len();
            self.queue.push_back(rest);
        }
    }

    /// Writes `bytes` now if nothing is waiting before them, and queues
    /// what the socket does not take. True when the task must be woken
    /// (the queue went from empty to not empty).
    fn send(&mut self, sock: Option<&TcpStream>, bytes: &Bytes) -> bool {
        let was_empty = self.queue.is_empty();
        let mut off = 0;
        if let (true, false, Some(sock)) = (was_empty, self.held, sock) {
            match sock.try_write(bytes) {
                Ok(n) if n == bytes.len() => return false,
                Ok(n) => off = n,
                // WouldBlock, or an error the task will meet and end on.
                Err(_) => {}
            }
        }
        let rest = if off == 0 {
            bytes.clone()
        } else {
            // The queue was empty: this rest is its head, begun on the wire.
            self.head_started = true;
            bytes.slice(off..)
        };
        self.bytes += rest.len();
        self.queue.push_back(rest);
        was_empty
    }

    /// Writes the queue out until it is empty (`Ok(true)`) or the socket
    /// is full (`Ok(false)`).
    fn write_out(&mut self, sock: &TcpStream) -> io::Result<bool> {
        while !self.queue.is_empty() {
            let n = {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut k = 0;
                for (i, b) in self.queue.iter().take(MAX_IOV).enumerate() {
                    iov[i] = IoSlice::new(if i == 0 { &b[self.head_off..] } else { b });
                    k = i + 1;
                }
                match sock.try_write_vectored(&iov[..k]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            };
            self.advance(n);
        }
        self.head_off = 0;
        if self.queue.capacity() > 64 {
            // A burst is over: give the memory back (idle sockets stay small).
            self.queue = VecDeque::new();
        }
        Ok(true)
    }

    /// Forgets `n` written bytes from the front of the queue.
    fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let head = self.queue[0].len() - self.head_off;
            if n >= head {
                n -= head;
                self.queue.pop_front();
                self.head_off = 0;
                self.head_started = false;
            } else {
                self.head_off += n;
                self.head_started = true;
                n = 0;
            }
        }
    }
}

/// How a frame goes on the wire: as the WebSocket frame it was encoded
/// as, or as an SSE event ([`Frame::sse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A WebSocket (`/v1/ws`).
    WebSocket,
    /// A stream (`/v1/stream`).
    Sse,
}

/// The write side of one socket: the bounded queue and the socket itself
/// (`None` in unit tests, where frames only queue up).
pub struct Outbox {
    state: Mutex<OutState>,
    sock: Option<Arc<TcpStream>>,
    framing: Framing,
    /// Wakes the socket task: frames queued or a close requested.
    pub wake: Notify,
}

impl Outbox {
    /// An empty outbox writing WebSocket frames into `sock`.
    pub fn new(sock: Option<Arc<TcpStream>>) -> Outbox {
        Outbox { state: Mutex::new(OutState::default()), sock, framing: Framing::WebSocket, wake: Notify::new() }
    }

    /// An empty, held outbox writing SSE events into `sock`: nothing goes
    /// out before [`Outbox::release`] puts the response head first.
    pub fn sse(sock: Option<Arc<TcpStream>>) -> Outbox {
        let state = OutState { held: true, ..OutState::default() };
        Outbox { state: Mutex::new(state), sock, framing: Framing::Sse, wake: Notify::new() }
    }

    /// How this outbox puts frames on the wire.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Puts `head` in front of whatever was queued while held, and lets
    /// the queue go out (the task is woken to write it).
    pub fn release(&self, head: Bytes) {
        {
            let mut s = self.lock();
            s.held = false;
            s.bytes += head.len();
            s.queue.push_front(head);
        }
        self.wake.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, OutState> {
        // A poisoned lock means a panic while holding it; the state is a
        // plain queue that stays consistent, so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `frame` unless that would take the queue past `max_bytes`,
    /// in which case the queue is emptied and a 4008 close requested.
    pub fn enqueue(&self, frame: &Frame, max_bytes: usize) -> Enqueued {
        let (outcome, wake) = {
            let mut s = self.lock();
            if s.close.is_some() || s.retired {
                return Enqueued::Closing;
            }
            let bytes = match self.framing {
                Framing::WebSocket => frame.bytes(),
                Framing::Sse => frame.sse(),
            };
            if s.bytes + bytes.len() > max_bytes {
                s.clear_queue();
                s.close = Some(CloseRequest::new(
                    bm_proto::frames::close::SLOW_CONSUMER,
                    "slow consumer: outbound queue full",
                ));
                (Enqueued::Overflow, true)
            } else {
                (Enqueued::Yes, s.send(self.sock.as_deref(), bytes))
            }
        };
        if wake {
            self.wake.notify_one();
        }
        outcome
    }

    /// Sends the relay's own bytes (whole frames: pings, tungstenite's
    /// pongs and close handshake), also while closing. Errs when the queue
    /// is past its bound by more than a little: the client reads nothing.
    pub fn send_control(&self, bytes: &[u8], max_bytes: usize) -> io::Result<()> {
        let wake = {
            let mut s = self.lock();
            if s.retired {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            if s.bytes + bytes.len() > max_bytes + CONTROL_SLACK {
                return Err(io::Error::other("outbound queue full"));
            }
            s.send(self.sock.as_deref(), &Bytes::copy_from_slice(bytes))
        };
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Writes the queue out; `Ready(Ok)` once it is empty (at once without
    /// a socket). Called by the socket's task only.
    pub fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(sock) = self.sock.as_deref() else { return Poll::Ready(Ok(())) };
        loop {
            if self.lock().queue.is_empty() {
                return Poll::Ready(Ok(()));
            }
            ready!(sock.poll_write_ready(cx))?;
            let mut s = self.lock();
            if s.retired {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if s.write_out(sock)? {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Takes the next queued frame (the queue of a socketless outbox).
    pub fn pop(&self) -> Option<Frame> {
        let mut s = self.lock();
        let f = s.queue.pop_front()?;
        s.bytes -= f.len();
        s.head_off = 0;
        s.head_started = false;
        Some(Frame::from_wire(f))
    }

    /// True when bytes are waiting.
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
                s.clear_queue();
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

    /// Sends FIN after what was written (the socket stays readable): after
    /// a close for a stream the relay cannot parse on, the client sees the
    /// close frame and then the end, answers, and closes its side, while
    /// the relay reads on so that nothing unread makes the kernel reset.
    pub fn shutdown_write(&self) {
        if let Some(sock) = self.sock.as_deref() {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain syscall on a descriptor the Arc keeps open;
            // failure (already shut, not connected) is harmless.
            unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_WR) };
        }
    }

    /// The socket's task has ended: write nothing more into the socket.
    pub fn retire(&self) {
        let mut s = self.lock();
        s.retired = true;
        s.queue = VecDeque::new();
        s.bytes = 0;
        s.head_off = 0;
        s.head_started = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_bounded_in_bytes_and_overflow_closes() {
        let c = Outbox::new(None);
        let f = Frame::from("x".repeat(40));
        assert_eq!(c.enqueue(&f, 100), Enqueued::Yes);
        assert_eq!(c.enqueue(&f, 100), Enqueued::Yes);
        assert_eq!(c.queued_bytes(), 84, "two 42-byte frames (2-byte headers)");
        assert_eq!(c.enqueue(&f, 100), Enqueued::Overflow);
        assert_eq!(c.queued_bytes(), 0, "overflow frees the queue");
        assert_eq!(c.close_requested().map(|r| r.code), Some(4008));
        assert_eq!(c.enqueue(&f, 100), Enqueued::Closing);
        assert!(c.pop().is_none());
    }

    #[test]
    fn pop_in_order_and_shared_bytes() {
        let c = Outbox::new(None);
        let a = Frame::from("a");
        let b = Frame::from("bb");
        c.enqueue(&a, 10);
        c.enqueue(&b, 10);
        assert_eq!(c.pop().as_ref().map(Frame::payload_text), Some("a"));
        assert_eq!(c.queued_bytes(), 4);
        assert_eq!(c.pop().as_ref().map(Frame::payload_text), Some("bb"));
        assert!(!c.has_pending());
    }

    #[test]
    fn first_close_wins() {
        let c = Outbox::new(None);
        assert!(c.request_close(CloseRequest::new(4003, "r")));
        assert!(!c.request_close(CloseRequest::new(1001, "r")));
        assert_eq!(c.close_requested().unwrap().code, 4003);
    }

    /// Written bytes leave the queue's front; an overflow or a close keeps
    /// the unwritten rest of a frame already partly written, so the stream
    /// stays well formed for the close frame that follows.
    #[test]
    fn partial_head_survives_a_clear() {
        let mut s = OutState::default();
        for f in [Frame::text("abcdef"), Frame::text("gh"), Frame::text("ij")] {
            s.send(None, f.bytes());
        }
        assert_eq!(s.bytes, 8 + 4 + 4);
        s.advance(10);
        assert_eq!((s.queue.len(), s.head_off, s.bytes), (2, 2, 6));
        s.clear_queue();
        assert_eq!((s.queue.len(), s.head_off, s.bytes), (1, 0, 2));
        assert_eq!(&s.queue[0][..], b"gh");
        s.advance(2);
        assert!(s.queue.is_empty());
        assert_eq!(s.bytes, 0);
        s.clear_queue();
        assert!(s.queue.is_empty());
    }

    /// Over a real socket whose peer does not read: a large frame goes out
    /// partly, the rest queues; a close request drops everything but that
    /// rest; the bytes the peer finally reads are the whole frame, then the
    /// close frame, with nothing cut or interleaved.
    #[tokio::test]
    async fn partial_direct_write_then_close_keeps_the_stream_whole() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let out = Outbox::new(Some(Arc::new(server)));
        let big = Frame::text(&"b".repeat(8 << 20));
        assert_eq!(out.enqueue(&big, 64 << 20), Enqueued::Yes);
        assert!(out.has_pending(), "8 MiB do not fit the socket buffers of a peer that does not read");
        assert_eq!(out.enqueue(&Frame::text("dropped"), 64 << 20), Enqueued::Yes);
        assert!(out.request_close(CloseRequest::new(4008, "r")));
        let close = [0x88u8, 2, 0x0f, 0xa8];
        out.send_control(&close, 64 << 20).unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        std::future::poll_fn(|cx| out.poll_drain(cx)).await.unwrap();
        out.retire();
        drop(out);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), big.len() + close.len());
        assert!(got[..big.len()] == *big.as_bytes());
        assert_eq!(&got[big.len()..], &close);
    }
}
