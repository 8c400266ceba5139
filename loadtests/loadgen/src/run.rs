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

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use crate::histogram::Histogram;
use crate::schedule::Schedule;
use crate::target::Target;

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
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Status(code) => write!(f, "status_{code}"),
            ErrorKind::Connect => f.write_str("connect"),
            ErrorKind::Send => f.write_str("send"),
            ErrorKind::Body => f.write_str("body"),
            ErrorKind::Timeout => f.write_str("timeout"),
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
}

/// Runs the whole schedule against `target` and returns when every request has finished or
/// timed out, i.e. at most `timeout` after the last due time.
pub async fn run(
    target: Arc<Target>,
    schedule: Schedule,
    connections: u32,
    timeout: Duration,
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

    let mut workers = Vec::with_capacity(conns.len());
    for conn in conns {
        let worker = Worker {
            target: Arc::clone(&target),
            schedule,
            t0,
            timeout,
            permits: Arc::clone(&permits),
            next: Arc::clone(&next),
            conn,
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
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok(Outcome {
        stats,
        measure_start: t0 + schedule.measure_start(),
        elapsed: started.elapsed(),
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
}

/// Owns one connection and sends requests on it as permits come.
struct Worker {
    target: Arc<Target>,
    schedule: Schedule,
    t0: Instant,
    timeout: Duration,
    permits: Arc<Semaphore>,
    next: Arc<AtomicU64>,
    conn: Conn,
    stats: Stats,
}

impl Worker {
    async fn run(mut self) -> Stats {
        // A broken connection is dropped here and reopened on the next request.
        let mut conn = Some(self.conn);
        loop {
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
            let result = if Instant::now() >= deadline {
                Err(ErrorKind::Timeout)
            } else {
                let exchange = exchange(&mut conn, &self.target);
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
            match result {
                Ok(exchange) => {
                    stats.responses += 1;
                    stats.last_done = Some(done);
                    stats.send_lag.record(micros(exchange.sent_at - due));
                    if exchange.status.is_success() {
                        stats.ok += 1;
                        stats.body_bytes += exchange.body_bytes;
                        stats.latency.record(micros(done - due));
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
async fn exchange(slot: &mut Option<Conn>, target: &Target) -> Result<Exchange, ErrorKind> {
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
    let response = match conn.sender.send_request(target.request()).await {
        Ok(response) => response,
        Err(_) => {
            *slot = None;
            return Err(ErrorKind::Send);
        }
    };
    let status = response.status();
    let mut body = response.into_body();
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    body_bytes += data.len() as u64;
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
    })
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
    }

    /// A raw HTTP/1.1 server for bodiless requests; returns its address.
    async fn server(behaviour: Behaviour) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let served = Arc::clone(&served);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let n = served.fetch_add(1, Ordering::Relaxed);
                            let status = match behaviour {
                                Behaviour::EverySecond503 if n % 2 == 1 => {
                                    "503 Service Unavailable"
                                }
                                Behaviour::Silent => return std::future::pending().await,
                                Behaviour::Slow(delay) => {
                                    tokio::time::sleep(delay).await;
                                    "200 OK"
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
        let addr = server(behaviour).await;
        let target = Target::new(&format!("http://{addr}/x"), None, &[], Bytes::new())
            .await
            .expect("target");
        let schedule = Schedule::new(
            rate,
            Duration::from_millis(warmup_ms),
            Duration::from_millis(duration_ms),
        );
        let outcome = run(Arc::new(target), schedule, connections, timeout)
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
        let result = run(Arc::new(target), schedule, 1, Duration::from_secs(1)).await;
        assert!(result.is_err());
    }
}
