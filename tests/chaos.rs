//! The chaos suite (issue #19): steady mixed load on two gateway replicas (real processes of
//! the built binary) and one Redis the test owns, while one thing at a time goes wrong. After
//! each scenario: no panic, recovery within `checks::RECOVERY`, `ledger reconcile` exits 0,
//! every request at most once in the usage events and charged what its answer said (at most
//! its worst case when interrupted), no live hold or concurrency slot left, no prepaid
//! balance below zero beyond one request.
//!
//! `AGW_CHAOS_SECONDS` sets each scenario's load duration: a few seconds by default (the CI
//! form, inside `cargo nextest run`), e.g. 120 or 300 for the long form run by hand with
//! `--no-capture`, whose printed figures go to docs/SECURITY.md ("Chaos suite").

mod common;

#[path = "chaos/checks.rs"]
mod checks;
#[path = "chaos/fixture.rs"]
mod fixture;
#[path = "chaos/load.rs"]
mod load;
#[path = "chaos/procs.rs"]
mod procs;
#[path = "chaos/slow.rs"]
mod slow;

use std::time::{Duration, Instant};

use checks::{recovered, verify};
use fixture::{Chaos, steady_sim};
use load::{Mix, Target};

/// The short form's load per scenario.
const DEFAULT_SECONDS: u64 = 4;

fn load_duration() -> Duration {
    let secs = std::env::var("AGW_CHAOS_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SECONDS);
    Duration::from_secs(secs.max(1))
}

/// Starts the load and waits (polling, bounded) until it is well under way.
async fn start_load(
    ch: &Chaos,
    mix: Mix,
) -> (Target, tokio::task::JoinHandle<Vec<load::Sent>>, Instant) {
    let t = Target::of(ch);
    let until = Instant::now() + load_duration();
    let task = {
        let t = t.clone();
        tokio::spawn(async move { load::run(&t, until, mix).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.started() < 2 * load::WORKERS {
        assert!(Instant::now() < deadline, "the load did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (t, task, until)
}

/// How long Redis stays down in the restart scenario.
const REDIS_DOWN: Duration = Duration::from_secs(1);

// (a) Redis is killed and restarted (its AOF keeps every acknowledged write) under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart() {
    let mut ch = Chaos::start().await;
    let (_t, task, _) = start_load(&ch, Mix::default()).await;
    tokio::task::block_in_place(|| ch.redis.restart(REDIS_DOWN));
    let fault_end = Instant::now();
    let (recovery, probes) = recovered(&ch, "redis restart", fault_end).await;
    let mut sent = task.await.unwrap();
    sent.extend(probes);
    verify(&mut ch, "redis restart", sent, recovery, None).await;
}

/// How long the stall scenario freezes Redis: eight command timeouts.
const STALL: Duration = Duration::from_millis(fixture::COMMAND_TIMEOUT_MS * 8);

// (a) Redis stops answering (SIGSTOP) for longer than the command timeout, then continues:
// every command sent meanwhile runs late, after the replica gave up on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stall() {
    let mut ch = Chaos::start().await;
    let (_t, task, _) = start_load(&ch, Mix::default()).await;
    ch.redis.freeze();
    tokio::time::sleep(STALL).await;
    ch.redis.resume();
    let fault_end = Instant::now();
    let (recovery, probes) = recovered(&ch, "redis stall", fault_end).await;
    let mut sent = task.await.unwrap();
    sent.extend(probes);
    verify(&mut ch, "redis stall", sent, recovery, None).await;
}

// (d) Clients drop one stream in two after its first chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_disconnect_mid_stream() {
    let mut ch = Chaos::start().await;
    let mix = Mix {
        disconnect: true,
        ..Mix::default()
    };
    let (_t, task, _) = start_load(&ch, mix).await;
    let sent = task.await.unwrap();
    let (recovery, probes) = recovered(&ch, "client disconnects", Instant::now()).await;
    let mut sent = sent;
    sent.extend(probes);
    verify(&mut ch, "client disconnects", sent, recovery, None).await;
}

// (e) Some clients read their streams at 1 byte/s (with a tiny receive buffer) beside the load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_read_at_one_byte_per_second() {
    let mut ch = Chaos::start().await;
    let (t, task, until) = start_load(&ch, Mix::default()).await;
    let readers = slow::readers(&t, until).await;
    let mut sent = task.await.unwrap();
    sent.extend(readers);
    let (recovery, probes) = recovered(&ch, "slow readers", Instant::now()).await;
    sent.extend(probes);
    verify(&mut ch, "slow readers", sent, recovery, None).await;
}

// (f) Slowloris: connections that dribble their headers, and ones that dribble their bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_and_bodies() {
    let mut ch = Chaos::start().await;
    let (t, task, until) = start_load(&ch, Mix::default()).await;
    let loris = slow::loris(&t, until).await;
    eprintln!("slowloris connections opened and closed by the replicas: {loris}");
    let sent = task.await.unwrap();
    assert!(
        sent.iter()
            .any(|s| matches!(s.outcome, load::Outcome::Charged(_))),
        "nothing was served beside the slowloris connections"
    );
    let (recovery, probes) = recovered(&ch, "slowloris", Instant::now()).await;
    let mut sent = sent;
    sent.extend(probes);
    verify(&mut ch, "slowloris", sent, recovery, None).await;
}

/// Workers flooding the replicas with fresh hotkeys in scenario g, beside the steady mix.
const FRESH_WORKERS: u64 = 24;

// (g) Beside the steady mix, a flood of short requests each signed by a hotkey never seen
// before (the public tier).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_fresh_hotkeys() {
    let mut ch = Chaos::start().await;
    let mix = Mix {
        fresh_workers: FRESH_WORKERS,
        ..Mix::default()
    };
    let (_t, task, _) = start_load(&ch, mix).await;
    let sent = task.await.unwrap();
    let (recovery, probes) = recovered(&ch, "fresh hotkeys", Instant::now()).await;
    let mut sent = sent;
    sent.extend(probes);
    verify(&mut ch, "fresh hotkeys", sent, recovery, None).await;
}

// (b) The upstream fails half its requests with 429, then half with 503, then stalls half its
// streams after three events, a third of the load each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_fails_half_and_stalls_streams() {
    use chutes_sim::{Fault, FaultKind, Trigger};
    let mut ch = Chaos::start().await;
    let (_t, task, until) = start_load(&ch, Mix::default()).await;
    let third = until.saturating_duration_since(Instant::now()) / 3;
    for kind in [
        FaultKind::Status(429),
        FaultKind::Status(503),
        FaultKind::StallAfter { after_chunks: 3 },
    ] {
        ch.sim.set_config(chutes_sim::SimConfig {
            fault: Fault {
                kind: Some(kind),
                trigger: Trigger::Probability(0.5),
            },
            ..steady_sim()
        });
        tokio::time::sleep(third).await;
    }
    ch.sim.set_config(steady_sim());
    let fault_end = Instant::now();
    let (recovery, probes) = recovered(&ch, "upstream faults", fault_end).await;
    let mut sent = task.await.unwrap();
    sent.extend(probes);
    verify(&mut ch, "upstream faults", sent, recovery, None).await;
}

// (c) Replica 1 is SIGKILLed while it serves streams and started again on its journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_killed_mid_stream_and_restarted() {
    let mut ch = Chaos::start().await;
    let (_t, task, _) = start_load(&ch, Mix::default()).await;
    let base = ch.replicas[1].url();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let streams = common::metric(&ch.http, &base, "agw_streams_active").await;
        if streams.unwrap_or(0.0) > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica 1 never had a stream open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = Instant::now();
    ch.replicas[1].kill();
    ch.replicas[1].start_again();
    let fault_end = Instant::now();
    let (recovery, probes) = recovered(&ch, "replica killed", fault_end).await;
    let mut sent = task.await.unwrap();
    sent.extend(probes);
    verify(
        &mut ch,
        "replica killed",
        sent,
        recovery,
        Some((1, killed_at)),
    )
    .await;
}
