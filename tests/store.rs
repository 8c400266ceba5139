//! The storage boundary: one behaviour suite, run against the in-memory backend and against
//! the shared Redis (`common::redis_url`: `AGW_TEST_REDIS_URL`, default 127.0.0.1:6379;
//! `scripts/test.sh` starts a throwaway one when none answers).
//!
//! Every test works under its own random key prefix and removes its keys at the end with
//! `delete_all_prefixed`, checking through the store that nothing of that prefix is left.
//! The memory half runs on paused time (the memory store's clock is tokio's), so waiting for
//! an expiry there costs no real time; the Redis half keeps real time.
//! The Redis-only tests at the bottom use closed ports and a tiny fake Redis on an ephemeral
//! port to show that failures are reported quickly, classified, and free of credentials.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use affine_gateway::store::{Store, StoreError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// How long any polled condition may take before the test fails.
const POLL_DEADLINE: Duration = Duration::from_secs(5);

fn unique_prefix() -> String {
    format!("agw-test:{}:", uuid::Uuid::new_v4().simple())
}

fn memory_store() -> Store {
    let s = Store::memory(&unique_prefix());
    assert_eq!(s.backend(), "memory");
    s
}

async fn redis_store() -> Store {
    let s = common::shared_redis_store().await;
    assert_eq!(s.backend(), "redis");
    s
}

/// Removes the test's keys and proves, through the store, that none are left.
async fn finish(s: &Store) {
    s.delete_all_prefixed()
        .await
        .expect("delete_all_prefixed at the end of the test");
    let left = s.delete_all_prefixed().await.expect("second delete");
    assert_eq!(
        left,
        0,
        "keys under {} survived the cleanup",
        s.key_prefix()
    );
}

/// Polls `check` until it holds; fails the test after [`POLL_DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + POLL_DEADLINE;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still waiting after {POLL_DEADLINE:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn is_protocol<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Protocol(_)))
}

// ---------------------------------------------------------------------------------------
// The behaviour suite: every function runs once per backend.
// ---------------------------------------------------------------------------------------

async fn set_get_del(s: &Store) {
    assert_eq!(s.get("k").await.unwrap(), None);
    assert!(!s.del("k").await.unwrap());

    s.set("k", b"v1", None).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(s.pttl("k").await.unwrap(), None);
    s.set("k", b"v2", None).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"v2"[..]));

    // Values are bytes, not text; the empty value is a value, not an absence.
    let binary = [0u8, 159, 255, b'\r', b'\n', b'*'];
    s.set("{a:acct-1}:bin", &binary, None).await.unwrap();
    assert_eq!(
        s.get("{a:acct-1}:bin").await.unwrap().as_deref(),
        Some(&binary[..])
    );
    s.set("empty", b"", None).await.unwrap();
    assert_eq!(s.get("empty").await.unwrap(), Some(Vec::new()));

    assert!(s.del("k").await.unwrap());
    assert_eq!(s.get("k").await.unwrap(), None);
    assert!(!s.del("k").await.unwrap());
}

async fn ttl_expiry(s: &Store) {
    let ttl = Duration::from_millis(150);
    let issued = Instant::now();
    s.set("short", b"v", Some(ttl)).await.unwrap();
    assert!(s.set_nx_px("mark", b"1", ttl).await.unwrap());
    s.set("long", b"v", Some(Duration::from_secs(60)))
        .await
        .unwrap();

    // Present until its TTL has passed: if it is already gone, the TTL must have elapsed.
    match s.get("short").await.unwrap() {
        Some(v) => assert_eq!(v, b"v"),
        None => assert!(issued.elapsed() >= ttl, "expired early"),
    }

    eventually("the short-lived keys to expire", || async {
        s.get("short").await.unwrap().is_none() && s.get("mark").await.unwrap().is_none()
    })
    .await;
    // Redis keeps time in whole milliseconds, hence the small tolerance.
    let gone_after = issued.elapsed();
    assert!(
        gone_after + Duration::from_millis(5) >= ttl,
        "gone after {gone_after:?}"
    );

    // Expired keys are absent for every operation, and a replay mark can be set again.
    assert_eq!(s.pttl("short").await.unwrap(), None);
    assert!(!s.del("short").await.unwrap());
    assert!(s.set_nx_px("mark", b"2", ttl).await.unwrap());
    assert_eq!(s.get("long").await.unwrap().as_deref(), Some(&b"v"[..]));

    // Like Redis SET: a plain set replaces the expiry, here with none.
    s.set("long", b"w", None).await.unwrap();
    assert_eq!(s.pttl("long").await.unwrap(), None);
}

async fn set_nx_px_exactly_once(s: &Store) {
    let ttl = Duration::from_secs(10);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let won = s
                .set_nx_px("{a:acct-1}:replay:n1", i.to_string().as_bytes(), ttl)
                .await
                .unwrap();
            (i, won)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (i, won) = t.await.unwrap();
        if won {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = s.get("{a:acct-1}:replay:n1").await.unwrap();
    assert_eq!(stored, Some(winners[0].to_string().into_bytes()));
    let left = s.pttl("{a:acct-1}:replay:n1").await.unwrap().unwrap();
    assert!(
        left <= ttl && left > ttl - Duration::from_secs(2),
        "{left:?}"
    );
}

async fn incr_by_atomic_under_concurrency(s: &Store) {
    // 100 tasks × 10 increments of 1: if every increment is atomic, the values returned are
    // exactly 1..=1000, each once.
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..10 {
                seen.push(
                    s.incr_by("ctr", 1, Some(Duration::from_secs(60)))
                        .await
                        .unwrap(),
                );
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=1000).collect::<Vec<i64>>());
    assert_eq!(s.get("ctr").await.unwrap().as_deref(), Some(&b"1000"[..]));

    // Mixed signs: the sum of -50..50 is -50.
    let mut tasks = Vec::new();
    for delta in -50i64..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.incr_by("mixed", delta, None).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(s.incr_by("mixed", 0, None).await.unwrap(), -50);
}

async fn incr_by_ttl_only_on_create(s: &Store) {
    let minute = Duration::from_secs(60);
    assert_eq!(s.incr_by("c", 5, Some(minute)).await.unwrap(), 5);
    let first = s.pttl("c").await.unwrap().expect("created with an expiry");
    assert!(first <= minute && first > minute - Duration::from_secs(2));
    // A later increment with another TTL neither resets nor shortens the window.
    assert_eq!(
        s.incr_by("c", 2, Some(Duration::from_secs(1)))
            .await
            .unwrap(),
        7
    );
    let later = s.pttl("c").await.unwrap().expect("still expires");
    assert!(
        later > Duration::from_secs(30) && later <= first,
        "{later:?}"
    );
    assert_eq!(s.get("c").await.unwrap().as_deref(), Some(&b"7"[..]));

    assert_eq!(s.incr_by("plain", 3, None).await.unwrap(), 3);
    assert_eq!(s.pttl("plain").await.unwrap(), None);

    // An existing counter without expiry keeps having none.
    s.set("fixed", b"10", None).await.unwrap();
    assert_eq!(s.incr_by("fixed", -15, Some(minute)).await.unwrap(), -5);
    assert_eq!(s.pttl("fixed").await.unwrap(), None);
}

async fn incr_by_refuses_non_integers(s: &Store) {
    for (i, bad) in ["abc", "", "+1", "01", "-0", " 1", "1.5"]
        .iter()
        .enumerate()
    {
        let key = format!("bad{i}");
        s.set(&key, bad.as_bytes(), None).await.unwrap();
        let plain = s.incr_by(&key, 1, None).await;
        assert!(is_protocol(&plain), "{bad:?}: {plain:?}");
        let with_ttl = s.incr_by(&key, 1, Some(Duration::from_secs(60))).await;
        assert!(is_protocol(&with_ttl), "{bad:?}: {with_ttl:?}");
        assert_eq!(s.get(&key).await.unwrap(), Some(bad.as_bytes().to_vec()));
        assert_eq!(s.pttl(&key).await.unwrap(), None, "{bad:?} gained a TTL");
    }

    s.set("max", i64::MAX.to_string().as_bytes(), None)
        .await
        .unwrap();
    let overflow = s.incr_by("max", 1, None).await;
    assert!(is_protocol(&overflow), "{overflow:?}");
    assert_eq!(
        s.get("max").await.unwrap(),
        Some(i64::MAX.to_string().into_bytes())
    );
    assert_eq!(s.incr_by("max", -1, None).await.unwrap(), i64::MAX - 1);
}

async fn zero_ttl_is_refused(s: &Store) {
    let r = s.set_nx_px("z", b"v", Duration::ZERO).await;
    assert!(is_protocol(&r), "{r:?}");
    let r = s.set("z", b"v", Some(Duration::ZERO)).await;
    assert!(is_protocol(&r), "{r:?}");
    let r = s.incr_by("z", 1, Some(Duration::ZERO)).await;
    assert!(is_protocol(&r), "{r:?}");
    assert_eq!(s.get("z").await.unwrap(), None, "a refused call wrote");
}

async fn pttl_reports_remaining_time(s: &Store) {
    assert_eq!(s.pttl("absent").await.unwrap(), None);
    s.set("forever", b"v", None).await.unwrap();
    assert_eq!(s.pttl("forever").await.unwrap(), None);
    let minute = Duration::from_secs(60);
    s.set("minute", b"v", Some(minute)).await.unwrap();
    let left = s.pttl("minute").await.unwrap().expect("has a TTL");
    assert!(
        left <= minute && left > minute - Duration::from_secs(2),
        "{left:?}"
    );
    // Millisecond resolution on both backends.
    assert_eq!(left.subsec_nanos() % 1_000_000, 0, "{left:?}");
}

async fn prefixes_isolate(s: &Store) {
    // `a`'s prefix is a glob that would match `b`'s keys if it were not escaped in SCAN.
    let base = format!("{}iso:", s.key_prefix());
    let a = s.with_key_prefix(&format!("{base}*"));
    let b = s.with_key_prefix(&format!("{base}b:"));
    assert_eq!(a.key_prefix(), format!("{base}*"));

    a.set("k", b"A", None).await.unwrap();
    b.set("k", b"B", None).await.unwrap();
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"A"[..]));
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"B"[..]));
    assert_eq!(s.get("k").await.unwrap(), None);
    // The prefix is prepended as is.
    assert_eq!(s.get("iso:b:k").await.unwrap().as_deref(), Some(&b"B"[..]));

    assert!(a.del("k").await.unwrap());
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"B"[..]));
    assert_eq!(a.incr_by("n", 1, None).await.unwrap(), 1);
    assert_eq!(b.incr_by("n", 1, None).await.unwrap(), 1);
    assert!(
        a.set_nx_px("m", b"1", Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        b.set_nx_px("m", b"1", Duration::from_secs(60))
            .await
            .unwrap()
    );

    assert_eq!(a.delete_all_prefixed().await.unwrap(), 2);
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"B"[..]));
    assert_eq!(b.get("n").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(b.delete_all_prefixed().await.unwrap(), 3);
}

async fn delete_all_prefixed_counts(s: &Store) {
    s.set("one", b"1", None).await.unwrap();
    s.set("{a:acct-2}:two", b"2", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    s.incr_by("three", 3, None).await.unwrap();
    // More than one SCAN batch on Redis.
    for i in 0..1200 {
        s.set(&format!("bulk:{i}"), b"x", Some(Duration::from_secs(60)))
            .await
            .unwrap();
    }
    assert_eq!(s.delete_all_prefixed().await.unwrap(), 1203);
    assert_eq!(s.get("one").await.unwrap(), None);
    assert_eq!(s.get("bulk:1199").await.unwrap(), None);
    assert_eq!(s.delete_all_prefixed().await.unwrap(), 0);
}

async fn ping_answers(s: &Store) {
    s.ping().await.unwrap();
}

/// Generates one `#[tokio::test]` per behaviour and backend.
macro_rules! behaviour_suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    let s = super::memory_store();
                    super::$name(&s).await;
                    super::finish(&s).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = super::redis_store().await;
                    super::$name(&s).await;
                    super::finish(&s).await;
                }
            )*
        }
        $crate::cluster_suite!($($name),*);
    };
}

behaviour_suite!(
    set_get_del,
    ttl_expiry,
    set_nx_px_exactly_once,
    incr_by_atomic_under_concurrency,
    incr_by_ttl_only_on_create,
    incr_by_refuses_non_integers,
    zero_ttl_is_refused,
    pttl_reports_remaining_time,
    prefixes_isolate,
    delete_all_prefixed_counts,
    ping_answers,
);

// ---------------------------------------------------------------------------------------
// Backend-specific behaviour.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn empty_prefix_refuses_to_delete_everything() {
    // Checked on the memory backend only: the guard lives in `Store`, shared by both, and
    // exercising it against the shared Redis would risk the whole database if it broke.
    let s = Store::memory("");
    s.set("k", b"v", None).await.unwrap();
    let r = s.delete_all_prefixed().await;
    assert!(is_protocol(&r), "{r:?}");
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn redis_debug_output_has_no_url() {
    let s = redis_store().await;
    let shown = format!("{s:?}");
    assert!(shown.contains(s.key_prefix()), "{shown}");
    assert!(
        !shown.contains("127.0.0.1") && !shown.contains("redis://"),
        "{shown}"
    );
    finish(&s).await;
}

fn assert_no_secret(e: &StoreError) {
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(!text.contains("hunter2"), "password leaked: {text}");
        assert!(!text.contains("redis://"), "URL leaked: {text}");
    }
}

#[tokio::test]
async fn redis_closed_port_fails_fast_without_leaking_the_password() {
    let connect_timeout = Duration::from_millis(800);
    let started = Instant::now();
    let r = Store::redis(
        "redis://:hunter2@127.0.0.1:1",
        "agw-test:closed:",
        connect_timeout,
        Duration::from_millis(500),
    )
    .await;
    let took = started.elapsed();
    let e = r.expect_err("nothing listens on port 1");
    assert!(
        matches!(e, StoreError::Unavailable(_) | StoreError::Timeout),
        "{e:?}"
    );
    // The bound is the connect timeout; the margin is scheduling on a busy CI machine.
    assert!(
        took <= connect_timeout + Duration::from_millis(300),
        "took {took:?}"
    );
    assert_no_secret(&e);
}

#[tokio::test]
async fn redis_invalid_url_does_not_leak_the_password() {
    let r = Store::redis(
        "redis://:hunter2@127.0.0.1:notaport",
        "agw-test:bad:",
        Duration::from_millis(500),
        Duration::from_millis(500),
    )
    .await;
    let e = r.expect_err("the URL is invalid");
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert_no_secret(&e);
}

#[tokio::test]
async fn redis_cluster_url_errors_never_show_the_password() {
    for url in [
        // Nothing listens on either seed.
        "redis+cluster://:hunter2@127.0.0.1:1,127.0.0.1:2",
        "redis+cluster://agw:hunter2@127.0.0.1:notaport,127.0.0.1:2",
        "rediss+cluster://agw:hunter2@127.0.0.1:1",
    ] {
        let e = Store::redis(
            url,
            "agw-test:cluster-bad:",
            Duration::from_millis(500),
            Duration::from_millis(500),
        )
        .await
        .expect_err("no cluster there");
        assert!(
            matches!(e, StoreError::Unavailable(_) | StoreError::Timeout),
            "{e:?}"
        );
        assert_no_secret(&e);
        assert!(!e.to_string().contains("cluster://"), "{e}");
    }
}

#[tokio::test]
async fn the_cluster_flag_makes_a_redis_url_one_seed_of_a_cluster() {
    let cluster = common::TestRedis::cluster();
    let seed = affine_gateway::config::redis_seeds(cluster.url())
        .into_iter()
        .next()
        .expect("one seed at least");
    assert!(seed.starts_with("redis://"), "{seed}");
    let mut config = affine_gateway::config::RedisConfig {
        url: Some(affine_gateway::config::Secret::new(seed)),
        cluster: true,
        key_prefix: unique_prefix(),
        ..Default::default()
    };
    assert!(config.cluster_mode());
    let s = Store::from_config(&config, Duration::from_secs(2))
        .await
        .unwrap()
        .expect("a Redis is configured");
    // Keys in many slots: a single-node connection to one seed would be told MOVED.
    for i in 0..64 {
        s.set(&format!("k{i}"), b"v", None).await.unwrap();
    }
    assert_eq!(s.delete_all_prefixed().await.unwrap(), 64);
    config.url = None;
    assert!(
        Store::from_config(&config, Duration::from_secs(2))
            .await
            .unwrap()
            .is_none()
    );
}

/// What the fake Redis does with one command.
#[derive(Clone, Copy)]
enum Reply {
    /// Writes these bytes.
    Send(&'static [u8]),
    /// Reads on, never answering.
    Silent,
    /// Closes the connection.
    Close,
}

/// A tiny RESP server on an ephemeral port: `decide(connection number, command name)` says
/// how to answer each command. Returns its URL (with a password, to check it never leaks) and
/// the number of connections accepted so far.
async fn fake_redis(decide: fn(usize, &str) -> Reply) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (read, mut write) = sock.into_split();
                let mut read = BufReader::new(read);
                while let Some(name) = read_command_name(&mut read).await {
                    match decide(n, &name) {
                        Reply::Send(bytes) => {
                            if write.write_all(bytes).await.is_err() {
                                return;
                            }
                        }
                        Reply::Silent => {}
                        Reply::Close => return,
                    }
                }
            });
        }
    });
    (format!("redis://:hunter2@{addr}"), accepted)
}

/// Reads one RESP array of bulk strings and returns its first element, upper-cased.
async fn read_command_name<R: AsyncBufReadExt + Unpin>(r: &mut R) -> Option<String> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut name = None;
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).await.ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0; len + 2];
        r.read_exact(&mut buf).await.ok()?;
        buf.truncate(len);
        name.get_or_insert_with(|| String::from_utf8_lossy(&buf).to_ascii_uppercase());
    }
    name
}

#[tokio::test]
async fn redis_silent_server_fails_within_the_connect_timeout() {
    let (url, _) = fake_redis(|_, _| Reply::Silent).await;
    let connect_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let r = Store::redis(&url, "agw-test:silent:", connect_timeout, connect_timeout).await;
    let took = started.elapsed();
    let e = r.expect_err("the server never answers");
    assert!(
        matches!(e, StoreError::Unavailable(_) | StoreError::Timeout),
        "{e:?}"
    );
    assert!(
        took <= connect_timeout + Duration::from_millis(300),
        "took {took:?}"
    );
    assert_no_secret(&e);
}

#[tokio::test]
async fn redis_command_that_gets_no_answer_times_out() {
    // Answers the connection handshake (AUTH, CLIENT SETINFO…) and PING, never GET.
    let (url, _) = fake_redis(|_, name| match name {
        "GET" => Reply::Silent,
        "PING" => Reply::Send(b"+PONG\r\n"),
        _ => Reply::Send(b"+OK\r\n"),
    })
    .await;
    let command_timeout = Duration::from_millis(300);
    let s = Store::redis(
        &url,
        "agw-test:stall:",
        Duration::from_secs(2),
        command_timeout,
    )
    .await
    .expect("the fake server completes the handshake");
    s.ping().await.expect("PING is answered");

    let started = Instant::now();
    let r = s.get("k").await;
    let took = started.elapsed();
    assert!(matches!(r, Err(StoreError::Timeout)), "{r:?}");
    assert!(
        took <= command_timeout + Duration::from_millis(300),
        "took {took:?}"
    );
}

#[tokio::test]
async fn redis_dropped_connection_is_unavailable_then_reconnects() {
    // The first connection is closed by the server on GET; later connections answer it.
    let (url, accepted) = fake_redis(|conn, name| match (conn, name) {
        (0, "GET") => Reply::Close,
        (_, "GET") => Reply::Send(b"$2\r\nok\r\n"),
        (_, "PING") => Reply::Send(b"+PONG\r\n"),
        _ => Reply::Send(b"+OK\r\n"),
    })
    .await;
    let s = Store::redis(
        &url,
        "agw-test:drop:",
        Duration::from_secs(2),
        Duration::from_secs(2),
    )
    .await
    .expect("the fake server completes the handshake");

    let r = s.get("k").await;
    match &r {
        Err(e @ StoreError::Unavailable(_)) => assert_no_secret(e),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    eventually("the store to reconnect", || async {
        matches!(s.get("k").await, Ok(Some(v)) if v == b"ok")
    })
    .await;
    assert!(accepted.load(Ordering::SeqCst) >= 2);
}
