//! One run: open the connections, release requests on schedule, record what came back.
//!
//! Connections are managed by hand (one hyper HTTP/1.1 connection per worker task) rather than
//! through hyper-util's pooled client: that client opens another connection whenever all
//! pooled ones are busy, with no upper bound, so a slow server would be met with ever more
//! connections and their set-up cost would land inside the measured latencies. Here exactly
//! `--connections` sockets are opened before the clock starts, each is kept alive for the whole
//! run, and a request that finds every connection busy simply waits, which the open-loop
//! measurement counts as latency. A connection that breaks is reopened by its worker, and that
//! cost is counted too, because it is part of what the server made the client go through.
//!
//! Pacing runs on its own OS thread: tokio's timer has a 1 ms granularity, which at 2,000
//! requests per second (0.5 ms apart) would send them in bursts and add up to 1 ms of
//! artificial delay to every latency. The thread sleeps until each due time and hands out one
//! permit of a semaphore per request; workers wait on it in FIFO order.
//!
//! With `--sign-btauth` each worker signs its next request while it waits for that request's
//! permit, so the signature (tens of µs of sr25519) is not inside the measured latency; the
//! time it took is recorded apart (`sign`). A request signed more than [`MAX_PRESIGN_AGE`]
//! before it goes out (a long wait at a low rate) is signed again, inside the timed section,
//! so no nonce gets near the end of the gateway's freshness window.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use crate::histogram::Histogram;
use crate::observe::{Observed, Observer};
use crate::schedule::Schedule;
use crate::sign::Signer;
use crate::target::Target;

/// The oldest a pre-signed request may be when it goes out (the gateway accepts 10 s).
const MAX_PRESIGN_AGE: Duration = Duration::from_secs(1);

/// What a run adds to each request and measures besides its latency.
#[derive(Clone, Default)]
pub struct Options {
    /// Sign every request with btauth/1 (`--sign-btauth`).
    pub signer: Option<Arc<Signer>>,
    /// Responses are SSE streams: record the time to the first `data:` field (`--stream`),
    /// and count a 2xx response without one as a `stream_no_data` error.
    pub stream: bool,
}

/// Why a measured request did not count as a success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The server answered with a status outside 2xx.
    Status(u16),
    /// A connection could not be (re)opened.
    Connect,
    /// Sending the request or reading the response head failed.
    Send,
    /// The response body broke off before its end.
    Body,
    /// No complete response within `--timeout` of the due time.
    Timeout,
    /// A 2xx response to a streamed request that carried no SSE `data:` field.
    StreamNoData,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Status(code) => write!(f, "status_{code}"),
            ErrorKind::Connect => f.write_str("connect"),
            ErrorKind::Send => f.write_str("send"),
            ErrorKind::Body => f.write_str("body"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::StreamNoData => f.write_str("stream_no_data"),
        }
    }
}

/// What a run measured; warm-up requests are not in it.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Due time to the last body byte of every 2xx response, in µs.
    pub latency: Histogram,
    /// Due time to the moment the request started going out, in µs: how far the load
    /// generator (or a lack of free connections) lagged behind the schedule.
    pub send_lag: Histogram,
    /// Streams only: due time to the first SSE `data:` field of every 2xx response, in µs.
    pub ttft: Histogram,
    /// Signed runs only: time spent signing each request, in µs.
    pub sign: Histogram,
    /// Responses with a 2xx status, read to the end.
    pub ok: u64,
    /// Every other outcome, by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Body bytes of the 2xx responses.
    pub body_bytes: u64,
    /// Requests that got a complete HTTP response (any status).
    pub responses: u64,
    /// When the last measured response was complete, for the achieved rate.
    pub last_done: Option<Instant>,
}

impl Stats {
    fn merge(&mut self, other: &Stats) {
        self.latency.merge(&other.latency);
        self.send_lag.merge(&other.send_lag);
        self.ttft.merge(&other.ttft);
        self.sign.merge(&other.sign);
        self.ok += other.ok;
        for (kind, n) in &other.errors {
            *self.errors.entry(*kind).or_default() += n;
        }
        self.body_bytes += other.body_bytes;
        self.responses += other.responses;
        self.last_done = self.last_done.max(other.last_done);
    }
}

/// The outcome of [`run`].
#[derive(Debug)]
pub struct Outcome {
    /// Merged results of all workers.
    pub stats: Stats,
    /// Due time of the first measured request.
    pub measure_start: Instant,
    /// Wall-clock time of the whole run, warm-up and draining included.
    pub elapsed: Duration,
    /// What the observed servers spent from the first measured due time to the end.
    pub observed: Observed,
}

/// Runs the whole schedule against `target` and returns when every request has finished or
/// timed out, i.e. at most `timeout` after the last due time. `observer` (if any) is read
/// when the first measured request is due and again at the end.
pub async fn run(
    target: Arc<Target>,
    schedule: Schedule,
    connections: u32,
    timeout: Duration,
    options: Options,
    observer: Option<Observer>,
) -> Result<Outcome, String> {
    let mut conns = Vec::with_capacity(connections as usize);
    for _ in 0..connections {
        let conn = Conn::open(target.addr)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
        conns.push(conn);
    }

    let permits = Arc::new(Semaphore::new(0));
    let next = Arc::new(AtomicU64::new(0));
    // A short head start so every worker is already waiting when the first request is due.
    let t0 = Instant::now() + Duration::from_millis(20);
    let started = Instant::now();
    let observing = observer
        .map(|o| o.start(t0 + schedule.measure_start()))
        .transpose()?;

    let mut workers = Vec::with_capacity(conns.len());
    for conn in conns {
        let worker = Worker {
            target: Arc::clone(&target),
            schedule,
            t0,
            timeout,
            permits: Arc::clone(&permits),
            next: Arc::clone(&next),
            conn: Some(conn),
            options: options.clone(),
            stats: Stats::default(),
        };
        workers.push(tokio::spawn(worker.run()));
    }

    let pacer = {
        let permits = Arc::clone(&permits);
        std::thread::Builder::new()
            .name("loadgen-pacer".into())
            .spawn(move || pace(&schedule, t0, &permits, connections as usize))
            .map_err(|e| format!("cannot start the pacing thread: {e}"))?
    };

    let mut stats = Stats::default();
    let mut failure = None;
    for worker in workers {
        match worker.await {
            Ok(s) => stats.merge(&s),
            Err(e) => failure = Some(format!("a worker failed: {e}")),
        }
    }
    // Workers only stop after the pacer's last permits, so this join does not block.
    if pacer.join().is_err() {
        failure = Some("the pacing thread panicked".to_owned());
    }
    let observed = observing
        .map(|o| o.finish())
        .transpose()?
        .unwrap_or_default();
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok(Outcome {
        stats,
        measure_start: t0 + schedule.measure_start(),
        elapsed: started.elapsed(),
        observed,
    })
}

/// Releases one permit per request at its due time, then one per worker so each wakes up,
/// finds the schedule exhausted and stops.
fn pace(schedule: &Schedule, t0: Instant, permits: &Semaphore, workers: usize) {
    for i in 0..schedule.total_requests() {
        let due = t0 + schedule.offset(i);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // When the thread was late, the following iterations find their due time passed and
        // release at once: the schedule catches up instead of shifting.
        permits.add_permits(1);
    }
    permits.add_permits(workers);
}

/// One keep-alive connection and the task driving it.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: AbortHandle,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        // Requests are small single writes; Nagle would only hold them back.
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        // The driver's own error is the same one the next request on `sender` reports.
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        })
        .abort_handle();
        Ok(Self { sender, driver })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Without this a connection abandoned mid-response (timeout) would stay open until the
        // server finished it.
        self.driver.abort();
    }
}

/// A completed exchange: status, body bytes, when the request started going out.
struct Exchange {
    status: StatusCode,
    body_bytes: u64,
    sent_at: Instant,
    /// When the first SSE `data:` field arrived (looked for only in streamed runs).
    first_data: Option<Instant>,
}

/// A request signed ahead of its due time.
struct Presigned {
    request: Request<Full<Bytes>>,
    signed_at: Instant,
    took: Duration,
}

/// Owns one connection and sends requests on it as permits come.
struct Worker {
    target: Arc<Target>,
    schedule: Schedule,
    t0: Instant,
    timeout: Duration,
    permits: Arc<Semaphore>,
    next: Arc<AtomicU64>,
    /// Taken by [`Worker::run`], which reopens it when it breaks.
    conn: Option<Conn>,
    options: Options,
    stats: Stats,
}

impl Worker {
    fn sign(&self, signer: &Signer) -> Presigned {
        let started = Instant::now();
        let request = self.target.signed_request(signer);
        let signed_at = Instant::now();
        Presigned {
            request,
            signed_at,
            took: signed_at - started,
        }
    }

    async fn run(mut self) -> Stats {
        // A broken connection is dropped here and reopened on the next request.
        let mut conn = self.conn.take();
        let mut presigned = None;
        loop {
            if let Some(signer) = &self.options.signer
                && presigned.is_none()
            {
                presigned = Some(self.sign(signer));
            }
            match self.permits.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.schedule.total_requests() {
                break;
            }
            let due = self.t0 + self.schedule.offset(i);
            let deadline = due + self.timeout;
            let mut sign_time = None;
            let result = if Instant::now() >= deadline {
                // Never sent: a pre-signed request stays for the next one, so an overloaded
                // run does not spend its CPU signing requests it then drops.
                Err(ErrorKind::Timeout)
            } else {
                let request = match (presigned.take(), &self.options.signer) {
                    (Some(p), Some(signer)) if p.signed_at.elapsed() > MAX_PRESIGN_AGE => {
                        let fresh = self.sign(signer);
                        sign_time = Some(fresh.took);
                        fresh.request
                    }
                    (Some(p), _) => {
                        sign_time = Some(p.took);
                        p.request
                    }
                    (None, _) => self.target.request(),
                };
                let exchange = exchange(&mut conn, &self.target, request, self.options.stream);
                match tokio::time::timeout_at(deadline.into(), exchange).await {
                    Ok(result) => result,
                    Err(_) => {
                        conn = None;
                        Err(ErrorKind::Timeout)
                    }
                }
            };
            let done = Instant::now();
            if self.schedule.is_warmup(i) {
                continue;
            }
            let stats = &mut self.stats;
            if let Some(took) = sign_time {
                stats.sign.record(micros(took));
            }
            match result {
                Ok(exchange) => {
                    stats.responses += 1;
                    stats.last_done = Some(done);
                    stats.send_lag.record(micros(exchange.sent_at - due));
                    let success = exchange.status.is_success();
                    if success && self.options.stream && exchange.first_data.is_none() {
                        *stats.errors.entry(ErrorKind::StreamNoData).or_default() += 1;
                    } else if success {
                        stats.ok += 1;
                        stats.body_bytes += exchange.body_bytes;
                        stats.latency.record(micros(done - due));
                        if let Some(first) = exchange.first_data {
                            stats
                                .ttft
                                .record(micros(first.saturating_duration_since(due)));
                        }
                    } else {
                        let kind = ErrorKind::Status(exchange.status.as_u16());
                        *stats.errors.entry(kind).or_default() += 1;
                    }
                }
                Err(kind) => {
                    *stats.errors.entry(kind).or_default() += 1;
                }
            }
        }
        self.stats
    }
}

/// Sends one request on `slot`'s connection (reopening it if needed) and reads the response
/// to its last byte; on failure the connection is dropped so the next request gets a new one.
async fn exchange(
    slot: &mut Option<Conn>,
    target: &Target,
    request: Request<Full<Bytes>>,
    stream: bool,
) -> Result<Exchange, ErrorKind> {
    // A connection the server closed between requests (keep-alive timeout, `Connection:
    // close`) is not this request's failure: reopen it and carry on.
    if let Some(conn) = slot.as_mut()
        && conn.sender.ready().await.is_err()
    {
        *slot = None;
    }
    let conn = match slot {
        Some(conn) => conn,
        None => {
            let mut fresh = Conn::open(target.addr)
                .await
                .map_err(|_| ErrorKind::Connect)?;
            fresh.sender.ready().await.map_err(|_| ErrorKind::Connect)?;
            slot.insert(fresh)
        }
    };
    let sent_at = Instant::now();
    let response = match conn.sender.send_request(request).await {
        Ok(response) => response,
        Err(_) => {
            *slot = None;
            return Err(ErrorKind::Send);
        }
    };
    let status = response.status();
    let mut body = response.into_body();
    let mut body_bytes = 0u64;
    let mut scanner = stream.then(SseScanner::default);
    let mut first_data = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    body_bytes += data.len() as u64;
                    if let Some(s) = scanner.as_mut()
                        && s.feed(data)
                    {
                        first_data = Some(Instant::now());
                        scanner = None;
                    }
                }
            }
            Err(_) => {
                *slot = None;
                return Err(ErrorKind::Body);
            }
        }
    }
    Ok(Exchange {
        status,
        body_bytes,
        sent_at,
        first_data,
    })
}

/// Finds the first SSE `data:` field of a stream fed in arbitrary pieces.
///
/// A field starts a line; comments (`: keep-alive`) and other fields are skipped, and a
/// `data:` split across two body frames is still found.
#[derive(Debug)]
struct SseScanner {
    /// `Some(k)`: at the start of a line with the first `k` bytes of `data:` seen.
    matched: Option<usize>,
}

impl Default for SseScanner {
    fn default() -> Self {
        Self { matched: Some(0) }
    }
}

impl SseScanner {
    const FIELD: &[u8] = b"data:";

    /// Whether `bytes` completes the first `data:` field.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                self.matched = Some(0);
                continue;
            }
            if let Some(k) = self.matched {
                if b != Self::FIELD[k] {
                    self.matched = None;
                } else if k + 1 == Self::FIELD.len() {
                    return true;
                } else {
                    self.matched = Some(k + 1);
                }
            }
        }
        false
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// How the test server answers the n-th request it reads (0-based, across connections).
    #[derive(Clone, Copy)]
    enum Behaviour {
        Hello,
        EverySecond503,
        Slow(Duration),
        Silent,
        /// An SSE answer: a comment, then `data:` split across two writes this far apart.
        Sse(Duration),
        /// An SSE answer with a comment only.
        SseWithoutData,
        /// 200 for a request whose btauth/1 signature verifies and whose nonce is new, else 401.
        CheckSignature,
    }

    /// Whether the header block of a GET carries a valid btauth/1 signature (empty body).
    fn signature_verifies(
        head: &str,
        seen: &std::sync::Mutex<std::collections::HashSet<u64>>,
    ) -> bool {
        use sp_core::crypto::{AccountId32, Ss58Codec};
        use sp_core::{Pair, sr25519};
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                })
                .map(|(_, v)| v.trim().to_owned())
        };
        let (Some(hotkey), Some(nonce), Some(receiver), Some(signature)) = (
            header("x-bittensor-hotkey"),
            header("x-bittensor-nonce").and_then(|n| n.parse::<u64>().ok()),
            header("x-bittensor-receiver"),
            header("x-bittensor-signature"),
        ) else {
            return false;
        };
        let path = head.split(' ').nth(1).unwrap_or("");
        let message = crate::sign::payload("GET", path, b"", nonce, &hotkey, &receiver);
        let Ok(account) = AccountId32::from_ss58check(&hotkey) else {
            return false;
        };
        let raw: &[u8; 32] = account.as_ref();
        let Some(signature) = hex::decode(signature.trim_start_matches("0x"))
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
        else {
            return false;
        };
        let fresh = seen.lock().expect("nonce set").insert(nonce);
        fresh
            && sr25519::Pair::verify(
                &sr25519::Signature::from_raw(signature),
                &message,
                &sr25519::Public::from_raw(*raw),
            )
    }

    /// A raw HTTP/1.1 server for bodiless requests; returns its address.
    async fn server(behaviour: Behaviour) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = Arc::new(AtomicU64::new(0));
        let nonces = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let served = Arc::clone(&served);
                let nonces = Arc::clone(&nonces);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..end + 4);
                            let n = served.fetch_add(1, Ordering::Relaxed);
                            let sse = match behaviour {
                                Behaviour::Sse(delay) => Some((": hi\n\nda", Some(delay))),
                                Behaviour::SseWithoutData => Some((": hi\n\n", None)),
                                _ => None,
                            };
                            if let Some((first, delay)) = sse {
                                let rest = if delay.is_some() { "ta: {}\n\n" } else { "" };
                                let head = format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                                     content-length: {}\r\n\r\n{first}",
                                    first.len() + rest.len()
                                );
                                if socket.write_all(head.as_bytes()).await.is_err() {
                                    return;
                                }
                                if let Some(delay) = delay {
                                    tokio::time::sleep(delay).await;
                                    if socket.write_all(rest.as_bytes()).await.is_err() {
                                        return;
                                    }
                                }
                                continue;
                            }
                            let status = match behaviour {
                                Behaviour::EverySecond503 if n % 2 == 1 => {
                                    "503 Service Unavailable"
                                }
                                Behaviour::Silent => return std::future::pending().await,
                                Behaviour::Slow(delay) => {
                                    tokio::time::sleep(delay).await;
                                    "200 OK"
                                }
                                Behaviour::CheckSignature
                                    if !signature_verifies(&head, &nonces) =>
                                {
                                    "401 Unauthorized"
                                }
                                _ => "200 OK",
                            };
                            let response =
                                format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\nhello");
                            if socket.write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        addr
    }

    async fn run_against(
        behaviour: Behaviour,
        rate: f64,
        warmup_ms: u64,
        duration_ms: u64,
        connections: u32,
        timeout: Duration,
    ) -> (Schedule, Outcome) {
        run_with(
            behaviour,
            (rate, warmup_ms, duration_ms),
            connections,
            timeout,
            Options::default(),
        )
        .await
    }

    /// Options of a streamed run.
    fn streamed() -> Options {
        Options {
            stream: true,
            ..Options::default()
        }
    }

    async fn run_with(
        behaviour: Behaviour,
        (rate, warmup_ms, duration_ms): (f64, u64, u64),
        connections: u32,
        timeout: Duration,
        options: Options,
    ) -> (Schedule, Outcome) {
        let addr = server(behaviour).await;
        let target = Target::new(&format!("http://{addr}/x"), None, &[], Bytes::new())
            .await
            .expect("target");
        let schedule = Schedule::new(
            rate,
            Duration::from_millis(warmup_ms),
            Duration::from_millis(duration_ms),
        );
        let outcome = run(
            Arc::new(target),
            schedule,
            connections,
            timeout,
            options,
            None,
        )
        .await
        .expect("run completes");
        (schedule, outcome)
    }

    #[tokio::test]
    async fn counts_every_measured_request_once() {
        let (schedule, outcome) =
            run_against(Behaviour::Hello, 400.0, 100, 250, 4, Duration::from_secs(5)).await;
        let stats = &outcome.stats;
        assert_eq!(schedule.measured_requests(), 100);
        assert_eq!(stats.ok, 100, "errors: {:?}", stats.errors);
        assert!(stats.errors.is_empty());
        assert_eq!(stats.latency.count(), 100, "warm-up requests are left out");
        assert_eq!(stats.body_bytes, 500);
        assert_eq!(stats.responses, 100);
    }

    #[tokio::test]
    async fn non_2xx_statuses_are_errors_by_code() {
        let (_, outcome) = run_against(
            Behaviour::EverySecond503,
            200.0,
            0,
            200,
            1,
            Duration::from_secs(5),
        )
        .await;
        let stats = &outcome.stats;
        assert_eq!(stats.ok, 20);
        assert_eq!(stats.errors.get(&ErrorKind::Status(503)), Some(&20));
        assert_eq!(stats.latency.count(), 20, "only 2xx latencies are recorded");
        assert_eq!(stats.responses, 40);
    }

    #[tokio::test]
    async fn a_slow_server_shows_up_as_growing_latency() {
        // One connection, 50 ms per answer, a request due every 10 ms: a closed-loop tool would
        // report 50 ms for all of them. Open loop, request i waits for the i before it, so the
        // last of 30 is about 30 * 50 - 29 * 10 = 1210 ms late.
        let (_, outcome) = run_against(
            Behaviour::Slow(Duration::from_millis(50)),
            100.0,
            0,
            300,
            1,
            Duration::from_secs(10),
        )
        .await;
        let stats = &outcome.stats;
        assert_eq!(stats.ok, 30);
        assert!(stats.latency.min() >= 50_000, "min {}", stats.latency.min());
        assert!(
            stats.latency.max() >= 1_100_000,
            "max {}",
            stats.latency.max()
        );
        assert!(
            stats.send_lag.max() >= 1_000_000,
            "lag {}",
            stats.send_lag.max()
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_the_run_still_ends() {
        let timeout = Duration::from_millis(200);
        let (_, outcome) = run_against(Behaviour::Silent, 50.0, 0, 200, 2, timeout).await;
        let stats = &outcome.stats;
        assert_eq!(stats.ok, 0);
        assert_eq!(stats.errors.get(&ErrorKind::Timeout), Some(&10));
        assert_eq!(stats.responses, 0);
        assert!(
            outcome.elapsed < Duration::from_secs(2),
            "run took {:?}",
            outcome.elapsed
        );
    }

    #[tokio::test]
    async fn an_unreachable_target_fails_up_front() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let target = Target::new(&format!("http://{addr}/"), None, &[], Bytes::new())
            .await
            .expect("target");
        let schedule = Schedule::new(10.0, Duration::ZERO, Duration::from_secs(1));
        let result = run(
            Arc::new(target),
            schedule,
            1,
            Duration::from_secs(1),
            Options::default(),
            None,
        )
        .await;
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn streams_report_the_first_data_field() {
        let gap = Duration::from_millis(30);
        let (_, outcome) = run_with(
            Behaviour::Sse(gap),
            (100.0, 0, 100),
            4,
            Duration::from_secs(5),
            streamed(),
        )
        .await;
        let stats = &outcome.stats;
        assert_eq!(stats.ok, 10, "errors: {:?}", stats.errors);
        assert_eq!(stats.ttft.count(), 10);
        // `data:` arrives split across writes 30 ms apart, after a comment: the first token is
        // the second write, not the first bytes.
        assert!(stats.ttft.min() >= 30_000, "ttft {}", stats.ttft.min());
        assert!(stats.latency.min() >= stats.ttft.min());
    }

    #[tokio::test]
    async fn a_stream_without_data_is_an_error() {
        let (_, outcome) = run_with(
            Behaviour::SseWithoutData,
            (100.0, 0, 100),
            2,
            Duration::from_secs(5),
            streamed(),
        )
        .await;
        let stats = &outcome.stats;
        assert_eq!(stats.ok, 0);
        assert_eq!(stats.errors.get(&ErrorKind::StreamNoData), Some(&10));
        assert_eq!(stats.ttft.count(), 0);
    }

    #[tokio::test]
    async fn signed_runs_sign_every_request_afresh() {
        let signer = Signer::new("//Alice", crate::sign::DEV_RECEIVER).expect("signer");
        let options = Options {
            signer: Some(Arc::new(signer)),
            ..Options::default()
        };
        let (schedule, outcome) = run_with(
            Behaviour::CheckSignature,
            (400.0, 50, 200),
            4,
            Duration::from_secs(5),
            options,
        )
        .await;
        let stats = &outcome.stats;
        // Every request verified and had a nonce the server had not seen.
        assert_eq!(
            stats.ok,
            schedule.measured_requests(),
            "errors: {:?}",
            stats.errors
        );
        assert_eq!(stats.sign.count(), schedule.measured_requests());
        assert!(stats.sign.max() > 0, "signing takes time");
    }

    #[test]
    fn the_sse_scanner_needs_a_field_at_a_line_start() {
        let mut s = SseScanner::default();
        assert!(!s.feed(b": comment with data: inside\n"));
        assert!(!s.feed(b"event: x\nda"));
        assert!(s.feed(b"ta: {}\n"));
        let mut s = SseScanner::default();
        assert!(s.feed(b"data:"));
        let mut s = SseScanner::default();
        assert!(!s.feed(b"xdata: 1"));
    }
}
