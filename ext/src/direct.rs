//! A minimal blocking HTTP/1.1 client for the calls PHP waits for on a
//! plain `http://` relay: one keep-alive TCP connection per process, used
//! from the PHP thread only.
//!
//! Why not reqwest here too: a sync push is a request/response on loopback
//! or a LAN, where reqwest's per-request machinery (futures, tower layers,
//! header maps) costs about as much as the relay's own work. Writing one
//! request and reading one `Content-Length` (or chunked) reply directly
//! halves that overhead. `https://` relays keep using reqwest (rustls).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bm_proto::signing::{self, HEADER_SIGNATURE, HEADER_SITE, HEADER_TIMESTAMP};

use crate::error::{BmError, Unreachable};
use crate::relay::{self, Endpoint, Target};
use crate::transport::HttpUrl;

/// Largest reply accepted (the relay's answers are small JSON documents).
const MAX_REPLY: usize = 4 * 1024 * 1024;

/// How long the PHP thread polls for the relay's reply before it blocks.
///
/// A thread that blocks in `read` lets its CPU go idle, and waking an idle
/// CPU when the reply lands costs tens of µs (an inter-processor interrupt;
/// far more in a VM) on top of a loopback round trip of about as much. A
/// local relay answers within this bound, so the thread polls, yielding
/// its CPU between polls (a relay on the same core still runs at once).
/// Past the bound it blocks as before: a slow relay costs one bounded
/// poll, not a spinning PHP worker.
const POLL_BEFORE_BLOCKING: Duration = Duration::from_micros(200);

/// How the caller waits for the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Poll for up to [`POLL_BEFORE_BLOCKING`], then block: for the PHP
    /// thread, whose request is waiting.
    PollFirst,
    /// Block at once: for the background sender, which must not take CPU
    /// from the PHP requests (or from a relay on the same machine) while
    /// it waits.
    Block,
}

/// What a non-blocking peek at a socket found.
enum Peek {
    /// Bytes (or the peer's FIN, or an error) are there to read.
    Ready,
    /// Nothing yet.
    Empty,
}

/// One `recv(MSG_PEEK | MSG_DONTWAIT)`: whether a read would return now,
/// without changing the socket's blocking mode (one syscall, not three).
fn peek_now(s: &TcpStream) -> Peek {
    let mut byte = 0u8;
    // SAFETY: a 1-byte buffer we own; the fd is open for the call's duration.
    let n = unsafe { libc::recv(s.as_raw_fd(), (&raw mut byte).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
        Peek::Empty
    } else {
        Peek::Ready
    }
}

/// Most relay addresses a [`Conns`] keeps a connection to.
const MAX_CONNS: usize = 16;

/// One keep-alive connection per relay address (several with a list of
/// relay URLs: switching to another relay and back does not reconnect).
#[derive(Default)]
pub struct Conns {
    slots: Vec<(HttpUrl, Option<Conn>)>,
}

impl Conns {
    /// The connection slot of `url` (empty until [`send`] fills it).
    pub fn slot(&mut self, url: &HttpUrl) -> &mut Option<Conn> {
        let i = match self.slots.iter().position(|(u, _)| u == url) {
            Some(i) => i,
            None => {
                if self.slots.len() >= MAX_CONNS {
                    self.slots.clear();
                }
                self.slots.push((url.clone(), None));
                self.slots.len() - 1
            }
        };
        &mut self.slots[i].1
    }
}

/// The process's connection to one relay address.
pub struct Conn {
    url: HttpUrl,
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// True when the peer has not closed the idle connection (and sent nothing).
    fn still_open(&self) -> bool {
        self.reader.buffer().is_empty() && matches!(peek_now(self.reader.get_ref()), Peek::Empty)
    }

    /// Polls for the reply for up to [`POLL_BEFORE_BLOCKING`] (see there).
    fn poll_for_reply(&self) {
        if !self.reader.buffer().is_empty() {
            return;
        }
        let start = Instant::now();
        while matches!(peek_now(self.reader.get_ref()), Peek::Empty) && start.elapsed() < POLL_BEFORE_BLOCKING {
            std::thread::yield_now();
        }
    }

    /// Bounds the socket reads of the next `read_line` by the deadline; a
    /// line already in the buffer needs no bound (and no syscall to set one).
    fn arm_read(&self, deadline: Instant) -> Result<(), Failure> {
        if !self.reader.buffer().contains(&b'\n') {
            self.reader.get_ref().set_read_timeout(Some(remaining(deadline)?)).map_err(Failure::Io)?;
        }
        Ok(())
    }
}

enum Failure {
    /// Nothing came back on a reused connection: safe to retry on a new one.
    Stale(io::Error),
    /// Connecting failed.
    Connect(io::Error),
    /// Deadline passed.
    Timeout,
    /// Anything else on the wire.
    Io(io::Error),
}

fn remaining(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Failure::Timeout)
    } else {
        Ok(left)
    }
}

fn io_failure(e: io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
        _ => Failure::Io(e),
    }
}

fn connect(url: &HttpUrl, connect_timeout: Duration, deadline: Instant) -> Result<Conn, Failure> {
    let addrs = (url.host.as_str(), url.port).to_socket_addrs().map_err(Failure::Connect)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for addr in addrs {
        let bound = connect_timeout.min(remaining(deadline)?);
        match TcpStream::connect_timeout(&addr, bound) {
            Ok(s) => {
                s.set_nodelay(true).map_err(Failure::Connect)?;
                return Ok(Conn { url: url.clone(), reader: BufReader::with_capacity(16 * 1024, s) });
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
                last = io::Error::new(io::ErrorKind::TimedOut, "connection timed out");
            }
            Err(e) => last = e,
        }
    }
    Err(Failure::Connect(last))
}

/// Reads one reply: status and body. `fresh` is false on a reused connection.
fn exchange(
    conn: &mut Conn,
    request: &[u8],
    deadline: Instant,
    reused: bool,
    wait: Wait,
) -> Result<(u16, String, bool), Failure> {
    let stale_or = |e: io::Error, got_any: bool| if reused && !got_any { Failure::Stale(e) } else { io_failure(e) };
    {
        let s = conn.reader.get_mut();
        s.set_write_timeout(Some(remaining(deadline)?)).map_err(Failure::Io)?;
        s.write_all(request).map_err(|e| stale_or(e, false))?;
    }
    let mut line = String::new();
    if wait == Wait::PollFirst {
        conn.poll_for_reply();
    }
    conn.arm_read(deadline)?;
    match conn.reader.read_line(&mut line) {
        Ok(0) => {
            return Err(stale_or(
                io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a reply"),
                false,
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(stale_or(e, false)),
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::Io(io::Error::new(io::ErrorKind::InvalidData, "not an HTTP reply")))?;
    let (mut length, mut chunked, mut close) = (None, false, line.starts_with("HTTP/1.0"));
    loop {
        line.clear();
        conn.arm_read(deadline)?;
        if conn.reader.read_line(&mut line).map_err(io_failure)? == 0 {
            return Err(Failure::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "reply headers cut short")));
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.arm_read(deadline)?;
            conn.reader.read_line(&mut line).map_err(io_failure)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| Failure::Io(io::Error::new(io::ErrorKind::InvalidData, "bad chunk size")))?;
            if body.len() + size > MAX_REPLY {
                return Err(Failure::Io(io::Error::new(io::ErrorKind::InvalidData, "reply too large")));
            }
            let start = body.len();
            body.resize(start + size, 0);
            conn.reader.read_exact(&mut body[start..]).map_err(io_failure)?;
            line.clear();
            conn.reader.read_line(&mut line).map_err(io_failure)?; // CRLF after the chunk (or trailers end)
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        if n > MAX_REPLY {
            return Err(Failure::Io(io::Error::new(io::ErrorKind::InvalidData, "reply too large")));
        }
        body.resize(n, 0);
        if conn.reader.buffer().len() < n {
            conn.reader.get_ref().set_read_timeout(Some(remaining(deadline)?)).map_err(Failure::Io)?;
        }
        conn.reader.read_exact(&mut body).map_err(io_failure)?;
    } else {
        // No length: the body runs to the end of the connection.
        (&mut conn.reader).take(MAX_REPLY as u64).read_to_end(&mut body).map_err(io_failure)?;
        close = true;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned(), close))
}

/// The header line of a protocol v2 request (`signing::HEADER_PROTOCOL`).
const V2_HEADER_LINE: &str = "X-BM-Protocol: 2\r\n";

/// Sends one signed request over the process's connection (opening or
/// re-opening it as needed) and returns the 200 body, or an error worded
/// like the async path's (`relay unreachable …`, `relay refused …`).
pub fn send(
    slot: &mut Option<Conn>,
    url: &HttpUrl,
    target: &Target,
    endpoint: Endpoint,
    body: &str,
    deadline: Instant,
    wait: Wait,
) -> Result<String, BmError> {
    let path = format!("{}{}", url.prefix, endpoint.path());
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let sig = signing::sign(&target.relay_key, ts, &target.site, "POST", endpoint.path(), body.as_bytes());
    let mut request = Vec::with_capacity(body.len() + 320);
    write!(
        request,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: bm_relay.so/{}\r\nContent-Type: application/json\r\n{HEADER_SITE}: {}\r\n{HEADER_TIMESTAMP}: {ts}\r\n{HEADER_SIGNATURE}: {sig}\r\n{}Content-Length: {}\r\n\r\n",
        url.host_header(),
        env!("CARGO_PKG_VERSION"),
        target.site,
        if target.protocol == 2 { V2_HEADER_LINE } else { "" },
        body.len()
    )
    .map_err(|e| BmError::internal(e.to_string()))?;
    request.extend_from_slice(body.as_bytes());

    let unreachable = |cause: Unreachable| BmError::unreachable(endpoint.name(), target.base_url.as_str(), cause);
    let timeout = || unreachable(Unreachable::Timeout { timeout_ms: target.timeout.as_millis() });
    if slot.as_ref().is_some_and(|c| c.url != *url || !c.still_open()) {
        *slot = None;
    }
    for attempt in 0..2 {
        let reused = slot.is_some();
        let mut conn = match slot.take() {
            Some(c) => c,
            None => match connect(url, target.connect_timeout, deadline) {
                Ok(c) => c,
                Err(Failure::Timeout) => return Err(timeout()),
                Err(Failure::Connect(e)) | Err(Failure::Io(e)) | Err(Failure::Stale(e)) => {
                    return Err(unreachable(Unreachable::Connect {
                        connect_timeout_ms: target.connect_timeout.as_millis(),
                        error: e.to_string(),
                    }))
                }
            },
        };
        match exchange(&mut conn, &request, deadline, reused, wait) {
            Ok((status, text, close)) => {
                if !close {
                    *slot = Some(conn);
                }
                return if status == 200 { Ok(text) } else { Err(relay::relay_error(endpoint, status, &text)) };
            }
            Err(Failure::Stale(_)) if attempt == 0 => continue,
            Err(Failure::Timeout) => return Err(timeout()),
            Err(Failure::Stale(e)) | Err(Failure::Io(e)) | Err(Failure::Connect(e)) => {
                return Err(unreachable(Unreachable::Io(e.to_string())))
            }
        }
    }
    Err(timeout())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::net::TcpListener;
    use std::sync::Arc;

    use bm_proto::{RelayKey, SiteId};

    /// Serves one connection: for each canned reply, reads one request
    /// (headers + Content-Length body) and writes the reply.
    fn one_connection(replies: Vec<&'static str>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut out = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            let mut heads = Vec::new();
            for reply in replies {
                let mut head = String::new();
                let mut len = 0;
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).unwrap();
                    if l.trim_end().is_empty() {
                        break;
                    }
                    if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    head.push_str(&l);
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                heads.push(head);
                out.write_all(reply.as_bytes()).unwrap();
            }
            heads
        });
        (url, h)
    }

    fn target(url: &str) -> Arc<Target> {
        Arc::new(Target {
            base_url: url.into(),
            site: SiteId::new("direct.example").unwrap(),
            relay_key: RelayKey::from_bytes([3; 32]),
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            transport: crate::transport::Transport::for_url(url),
            protocol: 1,
        })
    }

    /// The v2 header line is the protocol's header name.
    #[test]
    fn v2_header_line_names_the_protocol_header() {
        assert_eq!(V2_HEADER_LINE, format!("{}: 2\r\n", signing::HEADER_PROTOCOL));
    }

    #[test]
    fn content_length_chunked_and_errors_on_one_keep_alive_connection() {
        let (url, server) = one_connection(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"online\":[]}",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"clo\r\n7\r\nsed\":3}\r\n0\r\n\r\n",
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 52\r\n\r\n{\"error\":{\"code\":\"bad_signature\",\"message\":\"wrong\"}}",
        ]);
        let t = target(&url);
        let u = HttpUrl::parse(&url).unwrap();
        let mut slot = None;
        let deadline = || Instant::now() + Duration::from_secs(5);
        assert_eq!(
            send(&mut slot, &u, &t, Endpoint::Presence, "{}", deadline(), Wait::PollFirst).unwrap(),
            r#"{"online":[]}"#
        );
        assert!(slot.is_some(), "kept alive");
        assert_eq!(
            send(&mut slot, &u, &t, Endpoint::Disconnect, "{}", deadline(), Wait::PollFirst).unwrap(),
            r#"{"closed":3}"#
        );
        let err = send(&mut slot, &u, &t, Endpoint::Push, "{}", deadline(), Wait::PollFirst).unwrap_err();
        assert_eq!((err.code(), err.to_string().as_str()), (401, "relay refused push: HTTP 401 bad_signature: wrong"));
        let heads = server.join().unwrap();
        assert!(heads[0].starts_with("POST /v1/presence HTTP/1.1\r\n"));
        assert!(heads[2].starts_with("POST /v1/push HTTP/1.1\r\n"));
        assert!(heads.iter().all(|h| h.contains("X-BM-Site: direct.example") && h.contains("X-BM-Signature: v1=")));
        // The server closed the connection: the next call notices and reconnects (and fails: nobody listens).
        let err = send(&mut slot, &u, &t, Endpoint::Push, "{}", deadline(), Wait::PollFirst).unwrap_err();
        assert_eq!(err.code(), 0);
        assert!(
            matches!(err.kind(), ErrorKind::Unreachable { cause: Unreachable::Connect { .. }, .. })
                && !err.is_retryable()
        );
        assert!(err.to_string().starts_with(&format!("relay unreachable for push at {url}: cannot connect")), "{err}");
    }

    #[test]
    fn a_silent_relay_times_out_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap(); // accepts (backlog), never answers
        let url = format!("http://{}", listener.local_addr().unwrap());
        let t = target(&url);
        let started = Instant::now();
        let err = send(
            &mut None,
            &HttpUrl::parse(&url).unwrap(),
            &t,
            Endpoint::Push,
            "{}",
            Instant::now() + Duration::from_millis(200),
            Wait::Block,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no answer within timeout_ms=2000"), "{err}");
        assert!(matches!(err.kind(), ErrorKind::Unreachable { cause: Unreachable::Timeout { timeout_ms: 2000 }, .. }));
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(listener);
    }

    #[test]
    fn urls() {
        assert_eq!(
            HttpUrl::parse("http://127.0.0.1:8787"),
            Some(HttpUrl { host: "127.0.0.1".into(), port: 8787, prefix: String::new() })
        );
        assert_eq!(
            HttpUrl::parse("http://relay.example/base"),
            Some(HttpUrl { host: "relay.example".into(), port: 80, prefix: "/base".into() })
        );
        let v6 = HttpUrl::parse("http://[::1]:9000").unwrap();
        assert_eq!((v6.host.as_str(), v6.host_header().as_str()), ("::1", "[::1]:9000"));
        assert_eq!(HttpUrl::parse("https://relay.example"), None);
    }
}
