//! One relay → client WebSocket frame, encoded once per event.
//!
//! A [`Frame`] holds the complete bytes of one server frame (header and
//! payload; server frames are not masked, so the bytes are the same for
//! every recipient), reference counted: queuing one for 10 000 sockets
//! costs 10 000 pointer copies, and the bytes are freed when the last
//! socket has written them.
//!
//! A stream (`/v1/stream`, protocol §6.1) carries the same payload as an
//! SSE event instead. That encoding is made on first use, once per frame,
//! and shared the same way by every stream the frame goes to: a fan-out
//! reaching no stream never makes it, one reaching 10 000 makes it once.

use std::sync::OnceLock;

use bytes::Bytes;

/// One complete relay → client WebSocket frame, shared by every recipient,
/// with its SSE event made on demand.
#[derive(Clone)]
pub struct Frame(Bytes, OnceLock<Bytes>);

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.0 == other.0
    }
}

impl Eq for Frame {}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the payload: it may be an envelope.
        write!(f, "Frame({} bytes)", self.0.len())
    }
}

/// `data: <payload>\n\n`, the payload's line breaks made spaces: the
/// relay's payloads are JSON, where a line break can only be whitespace
/// between tokens (a client's `pub` envelope may hold one), and SSE would
/// read it as the end of the `data:` line.
pub fn sse_event(payload: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(payload.len() + 8);
    b.extend_from_slice(b"data: ");
    b.extend(payload.iter().map(|&c| if c == b'\n' || c == b'\r' { b' ' } else { c }));
    b.extend_from_slice(b"\n\n");
    Bytes::from(b)
}

const OP_TEXT: u8 = 0x1;
const OP_PING: u8 = 0x9;

impl Frame {
    /// A final, unmasked frame with `opcode` around `payload`.
    fn encode(opcode: u8, payload: &[u8]) -> Frame {
        let n = payload.len();
        let header = match n {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        // Exactly the frame's size: `Bytes` then takes the buffer as is.
        let mut b = Vec::with_capacity(header + n);
        b.push(0x80 | opcode);
        if header == 2 {
            b.push(n as u8);
        } else if header == 4 {
            b.push(126);
            b.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            b.push(127);
            b.extend_from_slice(&(n as u64).to_be_bytes());
        }
        b.extend_from_slice(payload);
        Frame(Bytes::from(b), OnceLock::new())
    }

    /// A complete frame received from another relay of the cluster: only a
    /// single final, unmasked text frame whose length header matches, so a
    /// malformed message cannot corrupt a socket's byte stream.
    pub fn from_encoded(b: Bytes) -> Option<Frame> {
        if b.len() < 2 || b[0] != (0x80 | OP_TEXT) || b[1] & 0x80 != 0 {
            return None;
        }
        let (header, n) = match b[1] {
            126 => (4, u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize),
            127 => (10, u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize),
            n => (2, n as usize),
        };
        if b.len() != header + n || std::str::from_utf8(&b[header..]).is_err() {
            return None;
        }
        Some(Frame(b, OnceLock::new()))
    }

    /// A text frame (the relay's frames are JSON text).
    pub fn text(payload: &str) -> Frame {
        Frame::encode(OP_TEXT, payload.as_bytes())
    }

    /// An empty ping (the relay's keep-alive).
    pub fn ping() -> Frame {
        Frame::encode(OP_PING, &[])
    }

    /// Bytes on the wire (header included): what the queue bound counts.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a frame has at least a two-byte header.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The frame's bytes, shared (the outbox queues them without a copy).
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// Wraps bytes that are already one complete frame (from the queue).
    pub(crate) fn from_wire(bytes: Bytes) -> Frame {
        Frame(bytes, OnceLock::new())
    }

    /// The same payload as one SSE event (see [`sse_event`]), made on the
    /// first call and shared by every later one.
    pub fn sse(&self) -> &Bytes {
        self.1.get_or_init(|| sse_event(self.payload_text().as_bytes()))
    }

    /// The frame's bytes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The frame's payload, as text (tests and tools look at it).
    pub fn payload_text(&self) -> &str {
        let b = &self.0;
        let start = match b.get(1).map(|l| l & 0x7f) {
            Some(126) => 4,
            Some(127) => 10,
            _ => 2,
        };
        std::str::from_utf8(b.get(start..).unwrap_or_default()).unwrap_or_default()
    }
}

impl From<String> for Frame {
    fn from(s: String) -> Frame {
        Frame::text(&s)
    }
}

impl From<&str> for Frame {
    fn from(s: &str) -> Frame {
        Frame::text(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frames built here are byte for byte what tungstenite writes for
    /// the same server message (headers of 2, 4 and 10 bytes).
    #[test]
    fn frames_match_tungstenite() {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
        for n in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let text = "é".repeat(n / 2) + &"x".repeat(n % 2);
            let mut want = Vec::new();
            WsFrame::message(text.clone().into_bytes(), OpCode::Data(Data::Text), true).format(&mut want).unwrap();
            let f = Frame::text(&text);
            assert_eq!(f.as_bytes(), &want[..], "payload of {} bytes", text.len());
            assert_eq!(f.payload_text(), text);
        }
        let mut want = Vec::new();
        WsFrame::ping(Vec::new()).format(&mut want).unwrap();
        assert_eq!(Frame::ping().as_bytes(), &want[..]);
    }

    /// An SSE event is one `data:` line whatever the payload holds: a line
    /// break inside a (pub'd) envelope's whitespace would otherwise end the
    /// line and cut the JSON a stream's client parses.
    #[test]
    fn sse_event_is_one_data_line() {
        let f = Frame::text("{\"op\":\"ev\",\r\n\"e\":{\n}}");
        assert_eq!(&f.sse()[..], b"data: {\"op\":\"ev\",  \"e\":{ }}\n\n");
        assert!(std::ptr::eq(f.sse(), f.sse()), "made once per frame");
        let big = "x".repeat(70000);
        assert_eq!(Frame::text(&big).sse().len(), 70000 + 8);
    }
}
