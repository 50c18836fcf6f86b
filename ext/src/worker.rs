//! The per-process background sender: a tokio runtime running one task,
//! its keep-alive connection (the blocking HTTP/1.1 client of
//! [`crate::direct`] for an `http://` relay, one reqwest client per connect
//! timeout for `https://`), and the queue between PHP and them.
//!
//! Fork safety: FPM's master runs MINIT
//! and then forks; threads do not survive a fork, so a runtime made before it
//! is dead in the children. The worker is therefore created lazily on first
//! use and tagged with `std::process::id()`. When the pid differs (we are a
//! forked child), the inherited worker is leaked — never dropped, since
//! dropping would join threads that do not exist here or touch locks a dead
//! thread may hold — and a fresh one is built. The inherited queue goes with
//! it, so a child never re-sends its parent's events.
//!
//! Wake-ups: waking a parked thread is a syscall and, on a machine whose
//! other cores are idle, an inter-processor interrupt — several µs that
//! would land inside `bm_push`. So after a batch the sender does not park:
//! it lingers, looking at the queue every [`LINGER_TICK`] for
//! [`LINGER`], and only then parks and says so in `Shared::parked`. A
//! `bm_push` wakes the sender only when that flag is set; a burst of pushes
//! pays for one wake-up at most, and the events of a burst travel together.
//! `bm_flush` and request end always wake it, so waiting for the queue
//! never includes a linger tick.
//!
//! Order: one sender task takes events from the front of one queue, and
//! consecutive events for the same target travel in one signed `/v1/push`
//! (at most [`MAX_BATCH_EVENTS`] events / [`MAX_BATCH_BYTES`]), so they reach
//! the relay in the order PHP queued them.
//!
//! Calls PHP waits for (sync pushes, presence, disconnect) do not cross
//! threads: they run on the PHP thread itself, after waiting for what this
//! process queued before them — over one keep-alive connection with the
//! blocking client of [`crate::direct`] for an `http://` relay, or in a
//! current-thread runtime with its own reqwest client for `https://`. That
//! saves two thread wake-ups per call.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{BmError, Unreachable};
use crate::relay::{self, Endpoint, Target};
use crate::sync::lock;
use crate::transport::Transport;

/// Most events in one push request (the protocol's default relay limit).
pub const MAX_BATCH_EVENTS: usize = 1000;
/// Most body bytes in one batched push (under the relay's 1 MiB default).
pub const MAX_BATCH_BYTES: usize = 900 * 1024;
/// How often a lingering sender looks at the queue (tokio's timer
/// granularity): the most a queued event waits while the sender lingers.
pub const LINGER_TICK: Duration = Duration::from_millis(1);
/// How long the sender lingers after its last batch before it parks.
pub const LINGER: Duration = Duration::from_millis(50);
/// Samples kept for the latency percentiles.
const LATENCY_SAMPLES: usize = 4096;

/// One async event waiting to be sent.
pub struct QueuedEvent {
    /// Destination (events batch together only with the same one).
    pub target: Arc<Target>,
    /// `{"to":…,"thread":…,"e":…}`.
    pub json: String,
}

/// Counters shown by `bm_stats()` and phpinfo().
#[derive(Default)]
pub struct Stats {
    /// Events accepted by the relay.
    pub sent: AtomicU64,
    /// Events the relay refused or that could not reach it.
    pub failed: AtomicU64,
    /// Events refused because the queue was full, or left at shutdown.
    pub dropped: AtomicU64,
    /// Requests made to the relay.
    pub batches: AtomicU64,
    /// Failures not yet reported to the PHP error log.
    pub unlogged_failures: AtomicU64,
    /// Last failure: message and unix time.
    pub last_error: Mutex<Option<(String, u64)>>,
    /// Relay round-trip durations of batches (µs), newest last.
    pub batch_latency: Mutex<VecDeque<u32>>,
}

impl Stats {
    /// Counts one request to the relay and its round trip since `started`.
    fn record_request(&self, started: Instant) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        record_sample(&mut lock(&self.batch_latency), started.elapsed().as_micros());
    }

    fn record_failure(&self, events: u64, err: &BmError) {
        self.failed.fetch_add(events, Ordering::Relaxed);
        self.unlogged_failures.fetch_add(events.max(1), Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        *lock(&self.last_error) = Some((err.to_string(), now));
    }
}

/// Makes the calling (sender) thread a background thread: `SCHED_BATCH`
/// at nice 10.
///
/// The sender's work is never urgent for the PHP request, but on a busy
/// machine a freshly woken sender (its relay's answer arrived, its linger
/// tick fired) would otherwise often preempt the PHP thread in the middle
/// of a `bm_push`. `SCHED_BATCH` tells the scheduler not to preempt on its
/// wake-ups, and nice 10 gives it a smaller share under contention, yet it
/// is never starved the way `SCHED_IDLE` could be on a saturated FPM host.
/// On Linux both are per thread, so the PHP thread is left alone. Failure
/// (not permitted) changes nothing.
fn lower_thread_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall wrappers; pid/who 0 is the calling thread on Linux.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Pushes a sample into a bounded ring.
pub fn record_sample(ring: &mut VecDeque<u32>, micros: u128) {
    if ring.len() == LATENCY_SAMPLES {
        ring.pop_front();
    }
    ring.push_back(u32::try_from(micros).unwrap_or(u32::MAX));
}

/// p50 and p99 of the samples, in µs (0 when there are none).
pub fn percentiles(ring: &VecDeque<u32>) -> (u32, u32) {
    if ring.is_empty() {
        return (0, 0);
    }
    let mut v: Vec<u32> = ring.iter().copied().collect();
    v.sort_unstable();
    let at = |p: usize| v[((v.len() - 1) * p) / 100];
    (at(50), at(99))
}

/// State shared by the PHP thread and the sender task.
pub struct Shared {
    queue: Mutex<VecDeque<QueuedEvent>>,
    wake: tokio::sync::Notify,
    /// True while the sender is parked (not lingering): only then does a
    /// push pay for waking it.
    parked: AtomicBool,
    /// Async events queued or in flight.
    pending: Mutex<u64>,
    drained: Condvar,
    /// Counters.
    pub stats: Stats,
}

impl Shared {
    /// An empty queue. The sender starts lingering, not parked: it looks at
    /// the queue before it ever waits, so an event queued before it first
    /// runs needs no wake-up.
    fn new() -> Shared {
        Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            parked: AtomicBool::new(false),
            pending: Mutex::new(0),
            drained: Condvar::new(),
            stats: Stats::default(),
        }
    }

    /// Async events queued or in flight now.
    pub fn pending(&self) -> u64 {
        *lock(&self.pending)
    }

    fn finish_events(&self, n: u64) {
        let mut p = lock(&self.pending);
        *p = p.saturating_sub(n);
        if *p == 0 {
            self.drained.notify_all();
        }
    }
}

/// The process's sender: runtime plus shared state, valid in process `pid`.
pub struct Worker {
    pid: u32,
    runtime: Option<tokio::runtime::Runtime>,
    /// The PHP thread's own runtime and clients for calls it waits for (https).
    local: Option<Local>,
    /// The PHP thread's keep-alive connection for calls to an http relay.
    direct: Option<crate::direct::Conn>,
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
            .on_thread_start(lower_thread_priority)
            .enable_all()
            .build()
            .map_err(|e| BmError::internal(format!("cannot start the background sender: {e}")))?;
        let shared = Arc::new(Shared::new());
        runtime.spawn(sender(shared.clone()));
        Ok(Worker {
            pid: crate::random::process_id(),
            runtime: Some(runtime),
            local: None,
            direct: None,
            shared,
            push_latency: VecDeque::new(),
            last_logged: None,
        })
    }

    /// Queues async events if they all fit under `queue_size`; all or none.
    /// Returns false (and counts them as dropped) when they do not fit.
    pub fn enqueue(&self, events: Vec<QueuedEvent>, queue_size: usize) -> bool {
        let n = events.len() as u64;
        {
            let mut p = lock(&self.shared.pending);
            if *p + n > queue_size as u64 {
                drop(p);
                self.shared.stats.dropped.fetch_add(n, Ordering::Relaxed);
                let err = BmError::input(format!("queue full ({queue_size} events): {n} event(s) dropped"));
                *lock(&self.shared.stats.last_error) = Some((err.to_string(), unix_now()));
                self.shared.stats.unlogged_failures.fetch_add(n, Ordering::Relaxed);
                return false;
            }
            *p += n;
        }
        lock(&self.shared.queue).extend(events);
        // Pairs with the sender's store of `parked` and its look at the
        // queue (see `sender`): one of the two sides sees the other.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst) {
            self.shared.wake.notify_one();
        }
        true
    }

    /// Sends a call PHP waits for, on this thread, after everything this
    /// process queued before it; the whole call (waiting for the queue
    /// included) takes at most `wait`. A failure before any HTTP answer
    /// (a keep-alive connection the relay closed) is retried once while time
    /// remains; a duplicate push carries the same event ids.
    pub fn call(
        &mut self,
        target: &Target,
        endpoint: Endpoint,
        body: String,
        events: u64,
        wait: Duration,
    ) -> Result<String, BmError> {
        let started = Instant::now();
        let deadline = started + wait;
        let timeout_error = || {
            BmError::unreachable(
                endpoint.name(),
                target.base_url.as_str(),
                Unreachable::Timeout { timeout_ms: wait.as_millis() },
            )
        };
        let result = if self.shared.pending() > 0 && !self.flush(wait) {
            Err(timeout_error())
        } else {
            if let Transport::Direct(url) = &target.transport {
                // Plain http: a direct blocking exchange on this thread.
                let sent_at = Instant::now();
                let r = crate::direct::send(
                    &mut self.direct,
                    url,
                    target,
                    endpoint,
                    &body,
                    deadline,
                    crate::direct::Wait::PollFirst,
                );
                self.shared.stats.record_request(sent_at);
                match &r {
                    Ok(_) => {
                        self.shared.stats.sent.fetch_add(events, Ordering::Relaxed);
                    }
                    Err(e) => self.shared.stats.record_failure(events, e),
                }
                return r;
            }
            let local = match self.local.take() {
                Some(l) => l,
                None => Local::new()?,
            };
            let local = self.local.insert(local);
            let client = local.client(target.connect_timeout)?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let remaining = deadline.saturating_duration_since(Instant::now());
                let sent_at = Instant::now();
                let r = local.runtime.block_on(async {
                    tokio::time::timeout(remaining, relay::send(&client, target, endpoint, body.clone())).await
                });
                self.shared.stats.record_request(sent_at);
                match r {
                    Err(_elapsed) => break Err(timeout_error()),
                    Ok(Err(e)) if e.is_retryable() && attempt == 1 && Instant::now() < deadline => continue,
                    Ok(r) => break r,
                }
            }
        };
        match &result {
            Ok(_) => {
                self.shared.stats.sent.fetch_add(events, Ordering::Relaxed);
            }
            Err(e) => self.shared.stats.record_failure(events, e),
        }
        result
    }

    /// Waits until every queued async event was sent or failed, at most
    /// `timeout`. True when the queue is empty.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut p = lock(&self.shared.pending);
        if *p > 0 {
            // Do not wait for a linger tick.
            self.shared.wake.notify_one();
        }
        while *p > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            p = self
                .shared
                .drained
                .wait_timeout(p, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Stops the runtime (module shutdown): what is still queued is counted
    /// as dropped. Threads must be gone before PHP unloads the library.
    pub fn stop(&mut self) -> u64 {
        let left = {
            let mut q = lock(&self.shared.queue);
            let n = q.len() as u64;
            q.clear();
            n
        };
        if left > 0 {
            self.shared.stats.dropped.fetch_add(left, Ordering::Relaxed);
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_millis(500));
        }
        if let Some(local) = self.local.take() {
            local.runtime.shutdown_timeout(Duration::from_millis(500));
        }
        left
    }
}

/// The PHP thread's runtime for calls it waits for: current-thread, so the
/// request, its I/O and the answer all happen on the calling thread.
struct Local {
    runtime: tokio::runtime::Runtime,
    clients: HashMap<Duration, reqwest::Client>,
}

impl Local {
    fn new() -> Result<Local, BmError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(1)
            .build()
            .map_err(|e| BmError::internal(format!("cannot start the call runtime: {e}")))?;
        Ok(Local { runtime, clients: HashMap::new() })
    }

    fn client(&mut self, connect_timeout: Duration) -> Result<reqwest::Client, BmError> {
        if let Some(c) = self.clients.get(&connect_timeout) {
            return Ok(c.clone());
        }
        // The client's pool must belong to this runtime: build it inside it.
        let _guard = self.runtime.enter();
        let c = relay::build_client(connect_timeout).map_err(BmError::internal)?;
        self.clients.insert(connect_timeout, c.clone());
        Ok(c)
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
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

/// Takes a run of same-target events from the front of the queue, as one batch.
fn take(shared: &Shared) -> Option<(Arc<Target>, Vec<String>)> {
    let mut q = lock(&shared.queue);
    let first = q.pop_front()?;
    let target = first.target;
    let mut bytes = first.json.len();
    let mut batch = vec![first.json];
    while batch.len() < MAX_BATCH_EVENTS {
        match q.front() {
            Some(next)
                if (Arc::ptr_eq(&next.target, &target) || next.target.same_destination(&target))
                    && bytes + next.json.len() < MAX_BATCH_BYTES => {}
            _ => break,
        }
        if let Some(next) = q.pop_front() {
            bytes += next.json.len() + 1;
            batch.push(next.json);
        }
    }
    Some((target, batch))
}

/// The sender task: one batch at a time, in queue order.
async fn sender(shared: Arc<Shared>) {
    let mut clients: HashMap<Duration, reqwest::Client> = HashMap::new();
    // The sender's own keep-alive connection for `http://` relays.
    let mut direct: Option<crate::direct::Conn> = None;
    let mut last_batch = tokio::time::Instant::now();
    loop {
        let Some((target, batch)) = take(&shared) else {
            if last_batch.elapsed() < LINGER {
                // Linger: pushes need not wake us; a flush still does.
                let _ = tokio::time::timeout(LINGER_TICK, shared.wake.notified()).await;
                continue;
            }
            shared.parked.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if lock(&shared.queue).is_empty() {
                shared.wake.notified().await;
            }
            shared.parked.store(false, Ordering::SeqCst);
            last_batch = tokio::time::Instant::now();
            continue;
        };
        last_batch = tokio::time::Instant::now();
        let n = batch.len() as u64;
        let result = if let Transport::Direct(url) = &target.transport {
            send_batch_direct(&shared, &mut direct, url, &target, &batch)
        } else {
            let client = match clients.get(&target.connect_timeout) {
                Some(c) => Ok(c.clone()),
                None => relay::build_client(target.connect_timeout).inspect(|c| {
                    clients.insert(target.connect_timeout, c.clone());
                }),
            };
            match &client {
                Ok(client) => send_batch(&shared, client, &target, &batch).await,
                Err(e) => Err(BmError::internal(e.clone())),
            }
        };
        match result {
            Ok(()) => {
                shared.stats.sent.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => shared.stats.record_failure(n, &e),
        }
        shared.finish_events(n);
    }
}

/// Sends one batch to an `http://` relay with the blocking client of
/// [`crate::direct`] (which retries once on a keep-alive connection the
/// relay closed). It blocks this runtime's only worker thread, which runs
/// nothing but this task: about a third of reqwest's CPU per batch, and
/// that CPU is taken from the machine the PHP requests run on.
fn send_batch_direct(
    shared: &Shared,
    conn: &mut Option<crate::direct::Conn>,
    url: &crate::transport::HttpUrl,
    target: &Target,
    batch: &[String],
) -> Result<(), BmError> {
    let body = relay::push_body(batch.iter().map(String::as_str));
    let started = Instant::now();
    let r = crate::direct::send(
        conn,
        url,
        target,
        Endpoint::Push,
        &body,
        started + target.timeout,
        crate::direct::Wait::Block,
    );
    shared.stats.record_request(started);
    r.map(|_| ())
}

/// Sends one batch; a transport failure (not a relay refusal, not a
/// timeout) is retried once, which covers a keep-alive connection the relay
/// closed while idle (a restart). A duplicate that this could cause carries
/// the same event ids, which clients drop.
async fn send_batch(
    shared: &Shared,
    client: &reqwest::Client,
    target: &Target,
    batch: &[String],
) -> Result<(), BmError> {
    let body = relay::push_body(batch.iter().map(String::as_str));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let started = Instant::now();
        let r = relay::send(client, target, Endpoint::Push, body.clone()).await;
        shared.stats.record_request(started);
        match r {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() && attempt == 1 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use bm_proto::{RelayKey, SiteId};

    fn target(url: &str, site: &str) -> Arc<Target> {
        Arc::new(Target {
            base_url: url.to_string(),
            site: SiteId::new(site).unwrap(),
            relay_key: RelayKey::from_bytes([7; 32]),
            timeout: Duration::from_millis(2000),
            connect_timeout: Duration::from_millis(500),
            transport: crate::transport::Transport::for_url(url),
        })
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

    fn ev(t: &Arc<Target>, i: usize) -> QueuedEvent {
        QueuedEvent { target: t.clone(), json: format!(r#"{{"to":[1],"e":{{"i":{i}}}}}"#) }
    }

    #[test]
    fn batches_group_consecutive_events_of_one_target_only() {
        let shared = Shared::new();
        let a = target("http://127.0.0.1:1", "a.example");
        let a2 = target("http://127.0.0.1:1", "a.example"); // same destination, other Arc
        let b = target("http://127.0.0.1:1", "b.example");
        lock(&shared.queue).extend([ev(&a, 0), ev(&a2, 1), ev(&b, 2), ev(&a, 3)]);
        let sizes: Vec<(String, usize)> =
            std::iter::from_fn(|| take(&shared)).map(|(t, batch)| (t.site.to_string(), batch.len())).collect();
        assert_eq!(sizes, [("a.example".into(), 2), ("b.example".into(), 1), ("a.example".into(), 1)]);
        lock(&shared.queue).extend((0..MAX_BATCH_EVENTS + 5).map(|i| ev(&a, i)));
        assert_eq!(take(&shared).unwrap().1.len(), MAX_BATCH_EVENTS);
        assert_eq!(take(&shared).unwrap().1.len(), 5);
        assert!(take(&shared).is_none());
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
    fn a_full_queue_refuses_all_and_counts_them_dropped() {
        let t = target("http://127.0.0.1:9", "full.example");
        let mut w = Worker::start().unwrap();
        *lock(&w.shared.pending) = 9; // as if 9 were in flight
        assert!(!w.enqueue((0..2).map(|i| ev(&t, i)).collect(), 10));
        assert_eq!(w.shared.stats.dropped.load(Ordering::Relaxed), 2);
        assert!(lock(&w.shared.queue).is_empty(), "none of them queued");
        *lock(&w.shared.pending) = 0;
        w.stop();
    }

    #[test]
    fn percentile_math() {
        let mut ring = VecDeque::new();
        assert_eq!(percentiles(&ring), (0, 0));
        for i in 1..=100u128 {
            record_sample(&mut ring, i);
        }
        assert_eq!(percentiles(&ring), (50, 99));
        for _ in 0..LATENCY_SAMPLES {
            record_sample(&mut ring, 7);
        }
        assert_eq!(ring.len(), LATENCY_SAMPLES);
        assert_eq!(percentiles(&ring), (7, 7));
    }
}
