//! Accepting and serving connections: the caps, the timeouts and the drain.
//!
//! `axum::serve` has no header-read or idle timeout and no connection cap, so a client holding
//! a thousand silent sockets could exhaust the process's file descriptors. Here every accepted
//! socket is first counted against a global cap and a per-peer cap (over either, it is closed
//! at once); then hyper-util's auto builder serves HTTP/1 or HTTP/2 on it with a timer, so
//! hyper bounds the time to a complete request head (HTTP/1) and pings idle HTTP/2 peers. A
//! watchdog per connection covers what hyper does not: a socket that never sends a full first
//! request (hyper's auto builder waits for the protocol preface without a deadline), and a
//! connection idle for too long with no request in flight (HTTP/2 has no such bound).
//!
//! Handlers keep reading the peer through `ConnectInfo<SocketAddr>`, inserted on every
//! request here as `into_make_service_with_connect_info` did.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::http::client_ip::TrustedProxies;
use crate::metrics::ConnMetrics;

/// How long the accept loop backs off after an accept error (out of file descriptors, most
/// likely), so it does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The open-connection counts the caps are checked against.
struct Caps {
    max: usize,
    per_ip: usize,
    trusted: TrustedProxies,
    open: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
    metrics: ConnMetrics,
}

/// One admitted connection's place under the caps, given back on drop.
struct Slot {
    caps: Arc<Caps>,
    /// The per-peer key counted, `None` for an exempt (trusted proxy) peer or no per-IP cap.
    key: Option<IpAddr>,
}

impl Caps {
    /// A place for a connection from `peer`, or the `reason` label of the cap it is over.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, &'static str> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err("max_connections");
        }
        // Built (and shown in the gauge) first, so that an early return below gives the
        // global place back.
        self.metrics.open.inc();
        let mut slot = Slot {
            caps: self.clone(),
            key: None,
        };
        // Every client behind a trusted proxy arrives from its address: the per-IP cap would
        // cap them all together, so the proxies are exempt (the global cap still holds).
        if self.per_ip > 0 && !self.trusted.contains(peer) {
            let key = crate::quota::local::guard_key(peer);
            let mut by_ip = self.by_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let n = by_ip.entry(key).or_insert(0);
            if *n >= self.per_ip {
                return Err("max_connections_per_ip");
            }
            *n += 1;
            slot.key = Some(key);
        }
        Ok(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut by_ip = self
                .caps
                .by_ip
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = by_ip.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    by_ip.remove(&key);
                }
            }
        }
        self.caps.open.fetch_sub(1, Ordering::AcqRel);
        self.caps.metrics.open.dec();
    }
}

/// What a connection is doing, for its watchdog. Plain atomics, read by the watchdog only
/// when its timer fires: a request costs no wake-up of the watchdog and no timer of its own.
struct Activity {
    in_flight: AtomicUsize,
    served_any: AtomicBool,
    /// When the last request ended, as nanoseconds since `origin` (the connection's start).
    idle_since_ns: AtomicU64,
    origin: Instant,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            served_any: AtomicBool::new(false),
            idle_since_ns: AtomicU64::new(0),
            origin: Instant::now(),
        })
    }

    /// A request has begun; it is in flight until the returned guard (moved into its
    /// response body) is dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.served_any.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn idle_since(&self) -> Instant {
        self.origin + Duration::from_nanos(self.idle_since_ns.load(Ordering::Acquire))
    }

    /// Completes when the connection has had no request in flight for too long: `header`
    /// before its first request (it never sent a complete head), `idle` after. It sleeps
    /// until the earliest instant that could be the deadline and checks then.
    async fn expired(&self, header: Duration, idle: Duration) -> &'static str {
        let mut wake = self.origin + header;
        loop {
            tokio::time::sleep_until(wake).await;
            let (limit, phase) = if self.served_any.load(Ordering::Acquire) {
                (idle, "idle")
            } else {
                (header, "header")
            };
            let now = Instant::now();
            if self.in_flight.load(Ordering::Acquire) > 0 {
                // Its end is at the earliest now: the deadline is at least a limit away.
                wake = now + limit;
                continue;
            }
            let deadline = self.idle_since() + limit;
            if deadline > now {
                wake = deadline;
                continue;
            }
            // A request that began while this was being read is still served.
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return phase;
            }
            wake = now + limit;
        }
    }
}

/// Marks a request in flight on its connection while alive.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let since = u64::try_from(a.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Stored before the count drops, so a watchdog that sees no request in flight sees
        // when the last one ended.
        a.idle_since_ns.fetch_max(since, Ordering::AcqRel);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it has been sent (or dropped).
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The per-connection settings, shared by every connection task.
struct Settings {
    builder: auto::Builder<TokioExecutor>,
    header_timeout: Duration,
    idle_timeout: Duration,
    metrics: ConnMetrics,
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, asks every
/// connection to finish (in-flight requests and streams complete, idle connections close),
/// and waits for them for at most `drain`.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    cfg: &ServerConfig,
    metrics: ConnMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.header_read_timeout_secs));
    let ping = (cfg.http2_keepalive_interval_secs > 0)
        .then(|| Duration::from_secs(cfg.http2_keepalive_interval_secs));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(ping)
        .keep_alive_timeout(Duration::from_secs(cfg.http2_keepalive_timeout_secs));
    let settings = Arc::new(Settings {
        builder,
        header_timeout: Duration::from_secs(cfg.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
        metrics: metrics.clone(),
    });
    let caps = Arc::new(Caps {
        max: cfg.max_connections,
        per_ip: cfg.max_connections_per_ip,
        trusted: TrustedProxies::new(cfg.trusted_networks()),
        open: AtomicUsize::new(0),
        by_ip: Mutex::new(HashMap::new()),
        metrics: metrics.clone(),
    });
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::error!(error = %e, "accept error");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let slot = match caps.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                metrics.refused.with_label_values(&[reason]).inc();
                tracing::debug!(%peer, reason, "connection refused at accept");
                drop(tcp);
                continue;
            }
        };
        // Streamed answers are many small writes: without TCP_NODELAY each SSE event after
        // the first waits for the client's delayed ACK (~40 ms), which turns a stream of 40
        // events into seconds.
        let _ = tcp.set_nodelay(true);
        tracker.spawn(connection(
            settings.clone(),
            tcp,
            peer,
            app.clone(),
            stop.clone(),
            slot,
        ));
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; draining in-flight requests");
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!(
            drain_secs = drain.as_secs(),
            "drain timeout reached; closing remaining connections"
        );
    }
}

/// Serves one connection until it ends, is too slow, idles too long, or the drain asks it
/// to finish.
async fn connection(
    settings: Arc<Settings>,
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    stop: CancellationToken,
    _slot: Slot,
) {
    let activity = Activity::new();
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = activity.begin();
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let res = app.oneshot(req).await?;
                Ok::<_, std::convert::Infallible>(res.map(|inner| {
                    Body::new(Tracked {
                        inner,
                        _in_flight: in_flight,
                    })
                }))
            }
        })
    };
    let conn = settings
        .builder
        .serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            phase = activity.expired(settings.header_timeout, settings.idle_timeout), if !closing => {
                settings.metrics.timed_out.with_label_values(&[phase]).inc();
                if phase == "header" {
                    // Nothing was served: there is nothing to finish gracefully.
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Raises the soft limit on open files to the hard limit: each connection is a descriptor,
/// and the default soft limit (often 1024) is what a few hundred slow clients exhausted.
pub(super) fn raise_nofile_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(limit = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_fires_a_limit_after_the_last_request_and_never_during_one() {
        let a = Activity::new();
        let request = a.begin();
        let during = tokio::time::timeout(IDLE * 5, a.expired(HEADER, IDLE)).await;
        assert!(during.is_err(), "a request in flight keeps the connection");
        drop(request);
        let ended = Instant::now();
        assert_eq!(a.expired(HEADER, IDLE).await, "idle");
        assert_eq!(ended.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_sends_a_request_gets_the_header_limit() {
        let a = Activity::new();
        assert_eq!(a.expired(HEADER, IDLE).await, "header");
        assert_eq!(a.origin.elapsed(), HEADER);
    }
}
