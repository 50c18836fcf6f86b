//! The byte stream tungstenite sees for one socket.
//!
//! tungstenite only reads here; its own writes (pongs, the close handshake)
//! go into the socket's [`Outbox`], behind whatever is queued there, so
//! they never cut into a server frame that a pushing task is writing.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::outbox::Outbox;

/// The byte stream tungstenite sees: reads from the upgraded connection,
/// writes (whole frames: pongs, the close handshake) into the socket's
/// outbox, behind whatever is queued there. Flushing writes the outbox out.
pub struct WsIo<R> {
    read: R,
    out: Arc<Outbox>,
    max_queue: usize,
}

impl<R> WsIo<R> {
    /// Reads from `read`; writes through `out`, bounded by `max_queue`.
    pub fn new(read: R, out: Arc<Outbox>, max_queue: usize) -> Self {
        WsIo { read, out, max_queue }
    }
}

impl<R: AsyncRead + Unpin> WsIo<R> {
    /// Ends the write side (FIN, after the close frame already written),
    /// then reads and discards until the peer closes, at most `max` bytes:
    /// after a frame the relay cannot read on (too large, malformed), the
    /// rest of it is still arriving, and closing with unread bytes would
    /// make the kernel reset the connection under the close frame just
    /// sent. The FIN tells the client to answer and close now, so this
    /// ends as soon as it does. The caller bounds the time.
    pub async fn discard_until_eof(&mut self, max: usize) {
        self.out.shutdown_write();
        use tokio::io::AsyncReadExt;
        // On the heap, allocated only when discarding: an array here would
        // be held across the await inside every socket task's future, 4 KiB
        // more for each idle socket.
        let mut buf = vec![0u8; 4096];
        let mut seen = 0;
        while seen < max {
            match self.read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen += n,
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for WsIo<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<R: Unpin> AsyncWrite for WsIo<R> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // tungstenite hands over its whole buffer of complete frames.
        Poll::Ready(self.out.send_control(buf, self.max_queue).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_drain(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every socket's task is as large as the largest state of its future,
    /// and the close path (this discard included) is part of that future: a
    /// buffer held across an await here cost every idle socket its size
    /// (4 KiB of the 9.2 KiB per socket the bench measured at 19k sockets).
    #[test]
    fn discarding_does_not_grow_the_socket_task() {
        let mut io = WsIo::new(tokio::io::empty(), Arc::new(Outbox::new(None)), 1024);
        let fut = io.discard_until_eof(1);
        let size = std::mem::size_of_val(&fut);
        assert!(size < 256, "discard_until_eof's future is {size} bytes");
    }
}
