//! The per-process background sender's owner: a tokio runtime running the
//! sender task ([`crate::sender`]), the queue between PHP and it
//! ([`crate::queue`]), and the PHP thread's own connections for the calls
//! it waits for ([`crate::calls`]).
//!
//! Fork safety: FPM's master runs MINIT
//! and then forks; threads do not survive a fork, so a runtime made before it
//! is dead in the children. The worker is therefore created lazily on first
//! use and tagged with `std::process::id()`. When the pid differs (we are a
//! forked child), the inherited worker is leaked — never dropped, since
//! dropping would join threads that do not exist here or touch locks a dead
//! thread may hold — and a fresh one is built. The inherited queue goes with
//! it, so a child never re-sends its parent's events.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::calls::Caller;
use crate::error::BmError;
use crate::queue::{QueuedEvent, Shared};
use crate::relay::{Endpoint, Relays};
use crate::sync::lock;

/// The process's sender: runtime plus shared state, valid in process `pid`.
pub struct Worker {
    pid: u32,
    runtime: Option<tokio::runtime::Runtime>,
    /// The PHP thread's connections for calls it waits for.
    caller: Caller,
    /// Shared with the sender task.
    pub shared: Arc<Shared>,
    /// Durations of bm_push calls in this process (µs); PHP thread only.
    pub push_latency: VecDeque<u32>,
    /// When failures were last written to the PHP error log.
    pub last_logged: Option<Instant>,
}

impl Worker {
    fn start() -> Result<Worker, BmError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .thread_name("bm-relay-sender")
            .on_thread_start(crate::sender::lower_thread_priority)
            .enable_all()
            .build()
            .map_err(|e| BmError::internal(format!("cannot start the background sender: {e}")))?;
        let shared = Arc::new(Shared::new());
        runtime.spawn(crate::sender::sender(shared.clone()));
        Ok(Worker {
            pid: crate::random::process_id(),
            runtime: Some(runtime),
            caller: Caller::default(),
            shared,
            push_latency: VecDeque::new(),
            last_logged: None,
        })
    }

    /// Queues async events if they all fit under `queue_size`; all or none
    /// (see [`Shared::enqueue`]).
    pub fn enqueue(&self, events: Vec<QueuedEvent>, queue_size: usize) -> bool {
        self.shared.enqueue(events, queue_size)
    }

    /// A call PHP waits for, after what this process queued (see
    /// [`Caller::call`]).
    pub fn call(
        &mut self,
        target: &Relays,
        endpoint: Endpoint,
        body: String,
        events: u64,
        wait: Duration,
    ) -> Result<String, BmError> {
        self.caller.call(&self.shared, target, endpoint, body, events, wait)
    }

    /// Waits until every queued async event was sent or failed, at most
    /// `timeout`. True when the queue is empty.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared.flush(timeout)
    }

    /// Stops the runtime (module shutdown): what is still queued is counted
    /// as dropped. Threads must be gone before PHP unloads the library.
    pub fn stop(&mut self) -> u64 {
        let left = self.shared.clear();
        if left > 0 {
            self.shared.stats.dropped.fetch_add(left, Ordering::Relaxed);
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_millis(500));
        }
        self.caller.stop();
        left
    }
}

/// The process's worker slot. Touched only from the PHP thread.
static WORKER: Mutex<Option<Worker>> = Mutex::new(None);

/// Runs `f` with this process's worker, creating it on first use and
/// replacing (leaking) one inherited through fork.
pub fn with_worker<R>(f: impl FnOnce(&mut Worker) -> R) -> Result<R, BmError> {
    let mut slot = lock(&WORKER);
    let pid = crate::random::process_id();
    if slot.as_ref().is_some_and(|w| w.pid != pid) {
        if let Some(inherited) = slot.take() {
            // Its threads do not exist in this process: never drop it.
            std::mem::forget(inherited);
        }
    }
    if slot.is_none() {
        *slot = Some(Worker::start()?);
    }
    match slot.as_mut() {
        Some(w) => Ok(f(w)),
        None => Err(BmError::internal("background sender unavailable")),
    }
}

/// Runs `f` with this process's worker only if it exists (and is ours).
pub fn with_existing<R>(f: impl FnOnce(&mut Worker) -> R) -> Option<R> {
    let mut slot = lock(&WORKER);
    match slot.as_mut() {
        Some(w) if w.pid == crate::random::process_id() => Some(f(w)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use bm_proto::{RelayKey, SiteId};

    fn target(url: &str, site: &str) -> Arc<Relays> {
        Arc::new(Relays::new(vec![crate::relay::Target {
            base_url: url.to_string(),
            site: SiteId::new(site).unwrap(),
            relay_key: RelayKey::from_bytes([7; 32]),
            timeout: Duration::from_millis(2000),
            connect_timeout: Duration::from_millis(500),
            transport: crate::transport::Transport::for_url(url),
            protocol: 1,
        }]))
    }

    /// One target per URL, in order.
    fn targets(urls: &[&str], timeout: Duration) -> Arc<Relays> {
        Arc::new(Relays::new(
            urls.iter()
                .map(|url| crate::relay::Target {
                    base_url: url.to_string(),
                    site: SiteId::new("fo.example").unwrap(),
                    relay_key: RelayKey::from_bytes([7; 32]),
                    timeout,
                    connect_timeout: Duration::from_millis(500),
                    transport: crate::transport::Transport::for_url(url),
                    protocol: 1,
                })
                .collect(),
        ))
    }

    /// What the stub relay saw: (path, X-BM-Site, body) per request.
    type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

    /// A loopback HTTP/1.1 keep-alive server standing in for the relay: it
    /// records each request and answers 200 with one result per pushed
    /// event. One thread per connection; `stop` ends and joins it.
    struct RelayStub {
        url: String,
        seen: Seen,
        stop: Arc<std::sync::atomic::AtomicBool>,
        accept: Option<std::thread::JoinHandle<()>>,
    }

    impl RelayStub {
        fn start() -> RelayStub {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let seen: Seen = Arc::default();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (seen2, stop2) = (seen.clone(), stop.clone());
            let accept = std::thread::spawn(move || {
                while !stop2.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let seen = seen2.clone();
                            std::thread::spawn(move || serve(stream, seen));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
            RelayStub { url, seen, stop, accept: Some(accept) }
        }

        fn stop(mut self) -> Vec<(String, String, String)> {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(a) = self.accept.take() {
                a.join().unwrap();
            }
            lock(&self.seen).clone()
        }
    }

    fn serve(stream: std::net::TcpStream, seen: Seen) {
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (mut len, mut site) = (0usize, String::new());
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => len = v.trim().parse().unwrap(),
                        "x-bm-site" => site = v.trim().to_string(),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let n = body.matches("\"e\":").count();
            let results = vec![r#"{"online":[1],"sockets":1}"#; n].join(",");
            let reply = format!(r#"{{"results":[{results}]}}"#);
            lock(&seen).push((path, site, body));
            if write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                reply.len()
            )
            .is_err()
            {
                return;
            }
        }
    }

    fn ev(t: &Arc<Relays>, i: usize) -> QueuedEvent {
        QueuedEvent { target: t.clone(), json: format!(r#"{{"to":[1],"e":{{"i":{i}}}}}"#) }
    }

    #[test]
    fn the_relay_sees_every_event_once_in_order_with_calls_after_what_was_queued() {
        let stub = RelayStub::start();
        let t = target(&stub.url, "seq.example");
        let mut w = Worker::start().unwrap();
        for round in 0..4 {
            assert!(w.enqueue((0..25).map(|i| ev(&t, round * 25 + i)).collect(), 10_000));
        }
        // A call waits for what was queued before it.
        let reply = w.call(&t, Endpoint::Disconnect, r#"{"users":[1]}"#.into(), 0, Duration::from_secs(5)).unwrap();
        assert!(reply.starts_with(r#"{"results":"#));
        assert_eq!(w.shared.pending(), 0);
        w.call(&t, Endpoint::Push, r#"{"events":[{"to":[1],"e":{"i":100}}]}"#.into(), 1, Duration::from_secs(5))
            .unwrap();
        assert!(w.enqueue(vec![ev(&t, 101)], 10_000));
        assert!(w.flush(Duration::from_secs(5)));
        let stats = &w.shared.stats;
        assert_eq!(stats.sent.load(Ordering::Relaxed), 102);
        assert_eq!(stats.failed.load(Ordering::Relaxed), 0);
        w.stop();
        let seen = stub.stop();
        assert!(seen.len() < 100, "events were batched: {} requests", seen.len());
        assert!(seen.iter().all(|(_, site, _)| site == "seq.example"));
        let disconnect_at = seen.iter().position(|(p, _, _)| p == "/v1/disconnect").unwrap();
        let all: String = seen.iter().map(|(_, _, b)| b.as_str()).collect();
        let order: Vec<usize> = all
            .match_indices(r#""i":"#)
            .map(|(at, _)| all[at + 4..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap())
            .collect();
        assert_eq!(order, (0..=101).collect::<Vec<_>>(), "every event once, in order");
        let before: String = seen[..disconnect_at].iter().map(|(_, _, b)| b.as_str()).collect();
        assert_eq!(before.matches(r#""i":"#).count(), 100, "the call came after the 100 queued events");
    }

    #[test]
    fn a_relay_that_is_down_fails_calls_and_batches_and_counts_them() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let t = target(&format!("http://127.0.0.1:{port}"), "down.example");
        let mut w = Worker::start().unwrap();
        assert!(w.enqueue((0..3).map(|i| ev(&t, i)).collect(), 10_000));
        assert!(w.flush(Duration::from_secs(5)));
        let err = w.call(&t, Endpoint::Push, r#"{"events":[]}"#.into(), 2, Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.code(), 0);
        assert!(err.to_string().starts_with("relay unreachable for push at http://127.0.0.1:"), "{err}");
        let stats = &w.shared.stats;
        assert_eq!(stats.failed.load(Ordering::Relaxed), 5);
        assert_eq!(stats.sent.load(Ordering::Relaxed), 0);
        assert!(lock(&stats.last_error).as_ref().unwrap().0.contains("relay unreachable"));
        w.stop();
    }

    #[test]
    fn calls_and_batches_fail_over_past_a_refusing_and_a_silent_relay_within_one_deadline() {
        let stub = RelayStub::start();
        let closed =
            format!("http://127.0.0.1:{}", TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let silent = TcpListener::bind("127.0.0.1:0").unwrap(); // accepts (backlog), never answers
        let silent_url = format!("http://{}", silent.local_addr().unwrap());
        let wait = Duration::from_millis(1000);
        let t = targets(&[&closed, &silent_url, &stub.url], wait);
        let mut w = Worker::start().unwrap();
        let started = Instant::now();
        w.call(&t, Endpoint::Push, r#"{"events":[{"to":[1],"e":{"i":0}}]}"#.into(), 1, wait).unwrap();
        assert!(started.elapsed() < wait + Duration::from_secs(2), "one deadline for all: {:?}", started.elapsed());
        let shared = w.shared.clone();
        let state = |u: &str| lock(&shared.health).state(u);
        assert_eq!((state(&closed).unreachable, state(&silent_url).unreachable, state(&stub.url).answered), (1, 1, 1));
        // The next call starts with the relay that answered; the others are not tried.
        w.call(&t, Endpoint::Push, r#"{"events":[{"to":[1],"e":{"i":1}}]}"#.into(), 1, wait).unwrap();
        // So does the sender.
        assert!(w.enqueue(vec![ev(&t, 2)], 10_000));
        assert!(w.flush(Duration::from_secs(5)));
        assert_eq!((state(&closed).unreachable, state(&silent_url).unreachable, state(&stub.url).answered), (1, 1, 3));
        assert_eq!(w.shared.stats.sent.load(Ordering::Relaxed), 3);
        w.stop();
        assert_eq!(stub.stop().len(), 3);
        drop(silent);
    }

    #[test]
    fn with_every_relay_down_the_error_counts_the_urls_tried() {
        let port = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (a, b) = (format!("http://127.0.0.1:{}", port()), format!("http://127.0.0.1:{}", port()));
        let t = targets(&[&a, &b], Duration::from_secs(2));
        let mut w = Worker::start().unwrap();
        let err = w.call(&t, Endpoint::Presence, "{}".into(), 0, Duration::from_secs(2)).unwrap_err();
        assert_eq!(err.code(), 0);
        assert!(
            err.to_string().starts_with(&format!(
                "relay unreachable for presence: 2 of 2 URLs tried, none answered; last {b}: cannot connect"
            )),
            "{err}"
        );
        // The async sender: both down, the batch fails once, counted once.
        assert!(w.enqueue(vec![ev(&t, 0)], 10_000));
        assert!(w.flush(Duration::from_secs(5)));
        assert_eq!(w.shared.stats.failed.load(Ordering::Relaxed), 1);
        w.stop();
    }
}
