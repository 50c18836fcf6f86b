//! A minimal HTTP/1.1 keep-alive client for the publish APIs.
//!
//! Why not a full client library: the load generator shares one core with
//! thousands of WebSockets, so the publish path should cost little and do
//! exactly one thing: write a prepared request, read one response
//! (`Content-Length` or chunked), keep the connection. Every peer's publish
//! API answers small bodies, so the reader keeps it simple.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One publish request, ready to write.
#[derive(Debug, Clone)]
pub struct Request {
    /// Full request bytes (head and body).
    pub bytes: Vec<u8>,
}

impl Request {
    /// A GET without a body (the admin endpoints).
    pub fn get(host: &SocketAddr, path: &str) -> Self {
        Request { bytes: format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes() }
    }

    /// A POST with the given extra header lines (each `Name: value`).
    pub fn post(host: &SocketAddr, path: &str, headers: &[(&str, String)], content_type: &str, body: &[u8]) -> Self {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        Request { bytes }
    }
}

/// A failed request; the message says what the server did.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connect, read or write failed.
    #[error("http i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection or sent something we cannot read.
    #[error("http: {0}")]
    Protocol(String),
    /// A non-2xx status.
    #[error("http status {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// One keep-alive connection; reconnects on the next request after a failure.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// A connection to `addr`, opened lazily.
    pub fn new(addr: SocketAddr) -> Self {
        Conn { addr, stream: None, buf: Vec::with_capacity(8192) }
    }

    /// Sends one request and returns `(status, body)`; a non-2xx status is an error.
    pub async fn send(&mut self, req: &Request) -> Result<Vec<u8>, HttpError> {
        let r = self.send_inner(req).await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn send_inner(&mut self, req: &Request) -> Result<Vec<u8>, HttpError> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let Some(stream) = self.stream.as_mut() else { return Err(HttpError::Protocol("no stream".into())) };
        stream.write_all(&req.bytes).await?;
        // read the head
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let status: u16 =
            head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
                HttpError::Protocol(format!("bad status line: {}", head.lines().next().unwrap_or("")))
            })?;
        let lower = head.to_ascii_lowercase();
        let close = lower.contains("\r\nconnection: close");
        let body = if let Some(len) = header(&lower, "content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < head_end + len {
                read_more(stream, &mut self.buf).await?;
            }
            let body = self.buf[head_end..head_end + len].to_vec();
            self.buf.drain(..head_end + len);
            body
        } else if header(&lower, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            let mut pos = head_end;
            loop {
                let line_end = loop {
                    if let Some(p) = find(&self.buf[pos..], b"\r\n") {
                        break pos + p;
                    }
                    read_more(stream, &mut self.buf).await?;
                };
                let size_text = String::from_utf8_lossy(&self.buf[pos..line_end]).to_string();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| HttpError::Protocol(format!("bad chunk size {size_text:?}")))?;
                let data_start = line_end + 2;
                while self.buf.len() < data_start + size + 2 {
                    read_more(stream, &mut self.buf).await?;
                }
                body.extend_from_slice(&self.buf[data_start..data_start + size]);
                pos = data_start + size + 2;
                if size == 0 {
                    break;
                }
            }
            self.buf.drain(..pos);
            body
        } else if status == 204 || status == 304 {
            self.buf.drain(..head_end);
            Vec::new()
        } else {
            return Err(HttpError::Protocol("response without length".into()));
        };
        if close {
            self.stream = None;
        }
        if !(200..300).contains(&status) {
            return Err(HttpError::Status {
                status,
                body: String::from_utf8_lossy(&body[..body.len().min(200)]).to_string(),
            });
        }
        Ok(body)
    }
}

fn header<'a>(lower_head: &'a str, name: &str) -> Option<&'a str> {
    lower_head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), HttpError> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(HttpError::Protocol("connection closed by the server".into()));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn serve_once(reply: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            // two requests on one connection
            for _ in 0..2 {
                let mut got = Vec::new();
                while find(&got, b"\r\n\r\nbody").is_none() {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                s.write_all(reply).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn content_length_and_keep_alive() {
        let addr = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        let mut c = Conn::new(addr);
        let req = Request::post(&addr, "/x", &[], "text/plain", b"body");
        assert_eq!(c.send(&req).await.unwrap(), b"hello");
        assert_eq!(c.send(&req).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn chunked_and_error_status() {
        let addr =
            serve_once(b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").await;
        let mut c = Conn::new(addr);
        let req = Request::post(&addr, "/x", &[("X-A", "1".into())], "text/plain", b"body");
        match c.send(&req).await {
            Err(HttpError::Status { status, body }) => {
                assert_eq!(status, 400);
                assert_eq!(body, "abcde");
            }
            other => panic!("expected a status error, got {other:?}"),
        }
    }
}
