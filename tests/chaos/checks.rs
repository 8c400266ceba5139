//! The invariants every scenario ends with, read from outside the gateway: its health, the
//! `ledger reconcile` CLI, the usage export, and the keys the Lua scripts store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use affine_gateway::auth::jwt::Scope;
use redis::AsyncCommands;

use super::fixture::{Chaos, HOLD_TTL_SECS, MAX_OVERSHOOT_RAO, PREFIX};
use super::load::{self, Outcome, Sent, Target};
use super::procs::BIN;
use crate::common::{self, admin_token};

/// The stated recovery time: after a fault ends, each replica answers `/readyz` with 200 and
/// serves a real request within this long. Redis restarts, reconnects and the first journal
/// replay (every second) all fit well inside it.
pub const RECOVERY: Duration = Duration::from_secs(10);

/// How long the ledger may take to come to rest after the load: a killed replica's holds
/// expire (`HOLD_TTL_SECS`) and its leases (3 s), the journals replay (every second).
pub const SETTLE: Duration = Duration::from_secs(HOLD_TTL_SECS + 20);

/// What a scenario measured, printed for docs/SECURITY.md.
#[derive(Debug)]
pub struct Measured {
    pub scenario: &'static str,
    pub requests: usize,
    pub outcomes: BTreeMap<String, usize>,
    pub recovery: Duration,
    pub settled_in: Duration,
    pub events: usize,
    /// Usage events of the scenario's requests by status (`ok`, `client_closed`, …).
    pub statuses: BTreeMap<String, usize>,
    pub reconcile: String,
    /// Answered requests of a SIGKILLed replica whose settlement died with it (see
    /// [`lost_to_kill`]).
    pub lost: usize,
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "chaos scenario {}", self.scenario)?;
        writeln!(
            f,
            "  requests: {}  usage events: {}",
            self.requests, self.events
        )?;
        for (k, n) in &self.outcomes {
            writeln!(f, "    answered {k}: {n}")?;
        }
        for (k, n) in &self.statuses {
            writeln!(f, "    event {k}: {n}")?;
        }
        writeln!(
            f,
            "  recovered within {} ms (limit {} s)",
            self.recovery.as_millis(),
            RECOVERY.as_secs()
        )?;
        writeln!(
            f,
            "  ledger at rest within {} ms",
            self.settled_in.as_millis()
        )?;
        writeln!(
            f,
            "  answered, settlement lost with the killed replica: {}",
            self.lost
        )?;
        write!(f, "  reconcile: {}", self.reconcile)
    }
}

/// Waits, from the end of a fault at `fault_end`, until each replica answers `/readyz` with
/// 200 and serves a real request; asserts that happens within [`RECOVERY`] and returns how long
/// it took, with the probes it sent.
pub async fn recovered(ch: &Chaos, scenario: &str, fault_end: Instant) -> (Duration, Vec<Sent>) {
    let target = Target::of(ch);
    let mut sent = Vec::new();
    for i in 0..ch.replicas.len() {
        let left = RECOVERY.saturating_sub(fault_end.elapsed());
        assert!(
            ch.wait_ready(i, left).await.is_some(),
            "{scenario}: replica {i} not ready within {RECOVERY:?} of the fault's end:\n{}",
            tail(&ch.replicas[i].log_text())
        );
        loop {
            let probe = load::probe(&target, i).await;
            let ok = matches!(probe.outcome, Outcome::Charged(_));
            sent.push(probe);
            if ok {
                break;
            }
            assert!(
                fault_end.elapsed() < RECOVERY,
                "{scenario}: replica {i} served nothing within {RECOVERY:?}: {:?}",
                sent.last()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let took = fault_end.elapsed();
    assert!(
        took <= RECOVERY,
        "{scenario}: recovery took {took:?}, over {RECOVERY:?}"
    );
    (took, sent)
}

/// Lets the ledger come to rest after the load and asserts every invariant over `sent`
/// (everything the scenario sent, probes included); `recovery` is what [`recovered`] measured.
pub async fn verify(
    ch: &mut Chaos,
    scenario: &'static str,
    sent: Vec<Sent>,
    recovery: Duration,
    killed: Option<(usize, Instant)>,
) -> Measured {
    // The replicas serve again after the load, too (a fault may have been at its very end).
    let (_, probes) = recovered(ch, scenario, Instant::now()).await;
    let mut sent = sent;
    sent.extend(probes);
    let settle_start = Instant::now();
    let mut con = ch.redis_conn().await;
    let events = loop {
        match at_rest(ch, &mut con).await {
            Ok(()) => {
                let events = export(ch).await;
                let missing: Vec<_> = sent
                    .iter()
                    .filter(|s| matches!(s.outcome, Outcome::Charged(_)))
                    .filter(|s| !lost_to_kill(s, killed))
                    .filter(|s| !events.contains_key(&s.tag))
                    .collect();
                if missing.is_empty() {
                    break events;
                }
                assert!(
                    settle_start.elapsed() < SETTLE,
                    "{scenario}: {} answered requests have no usage event after {SETTLE:?}: {missing:?}",
                    missing.len()
                );
            }
            Err(what) => assert!(
                settle_start.elapsed() < SETTLE,
                "{scenario}: the ledger did not come to rest within {SETTLE:?}: {what}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let settled_in = settle_start.elapsed();

    let reconcile = reconcile(ch, scenario);
    let lost = check_events(scenario, &sent, &events, killed);
    check_balances(ch, &mut con, scenario).await;
    for (i, r) in ch.replicas.iter_mut().enumerate() {
        assert!(
            r.running(),
            "{scenario}: replica {i} exited:\n{}",
            tail(&r.log_text())
        );
        let log = r.log_text();
        assert!(
            !log.contains("panicked"),
            "{scenario}: replica {i} panicked:\n{}",
            tail(&log)
        );
    }
    let m = Measured {
        scenario,
        requests: sent.len(),
        outcomes: load::tally(&sent),
        recovery,
        settled_in,
        events: events.values().map(Vec::len).sum(),
        statuses: events.values().flatten().fold(BTreeMap::new(), |mut m, e| {
            *m.entry(e["status"].as_str().unwrap_or("?").to_string())
                .or_insert(0) += 1;
            m
        }),
        reconcile,
        lost,
    };
    eprintln!("{m}");
    m
}

fn tail(log: &str) -> String {
    let lines: Vec<_> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The postpaid account's name (fixture).
const POSTPAID: &str = "chaos-postpaid";

/// Whether `s` was sent, before the kill, to the replica the scenario SIGKILLed. Its settlement is queued in
/// that process after the answer (README, Money: settlement runs on a detached task) and the
/// kill may take it along; only such requests may end in their documented fallback instead of
/// their stated charge.
fn lost_to_kill(s: &Sent, killed: Option<(usize, Instant)>) -> bool {
    killed.is_some_and(|(replica, at)| replica == s.replica && s.sent_at < at)
}

/// `Ok` when nothing is in flight any more: both journals empty, no live hold, no live
/// concurrency slot; else what is still there.
async fn at_rest(ch: &Chaos, con: &mut redis::aio::MultiplexedConnection) -> Result<(), String> {
    for r in &ch.replicas {
        let backlog = common::metric(&ch.http, &r.url(), "agw_journal_backlog").await;
        if backlog.unwrap_or(0.0) != 0.0 {
            return Err(format!("journal backlog {backlog:?} on {}", r.url()));
        }
    }
    for id in &ch.accounts.prepaid_ids {
        // Reading the balance sweeps expired holds (a killed replica's) into `unsettled`
        // events, as a caller looking at its account would.
        let res = ch
            .http
            .get(format!("{}/v1/account", ch.replicas[0].url()))
            .bearer_auth(common::token(id, &[Scope::Reason], 600))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if res.status() != 200 {
            return Err(format!("GET /v1/account as {id}: {}", res.status()));
        }
        let held: Option<i64> = con.get(format!("{PREFIX}{{a:{id}}}:held")).await.unwrap();
        let holds: u64 = con.hlen(format!("{PREFIX}{{a:{id}}}:holds")).await.unwrap();
        if held.unwrap_or(0) != 0 || holds != 0 {
            return Err(format!("{id}: held {held:?} rao in {holds} holds"));
        }
    }
    // A lease counts while its expiry (Redis clock, ms) is ahead: that is how admission counts.
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(con).await.unwrap();
    let now_ms = secs * 1000 + micros / 1000;
    let keys: Vec<String> = scan(con, &format!("{PREFIX}*:q:conc")).await;
    for k in keys {
        let live: u64 = con.zcount(&k, now_ms, "+inf").await.unwrap();
        if live != 0 {
            return Err(format!("{k}: {live} live concurrency slots"));
        }
    }
    Ok(())
}

async fn scan(con: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await
            .unwrap();
        out.extend(keys);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

/// Every usage event with a chaos tag, by tag, from the admin export of this month (and the
/// previous one, should a run straddle a month's end).
async fn export(ch: &Chaos) -> HashMap<String, Vec<serde_json::Value>> {
    let now = time::OffsetDateTime::now_utc();
    let earlier = now - time::Duration::hours(1);
    let months: HashSet<String> = [earlier, now]
        .iter()
        .map(|d| format!("{:04}-{:02}", d.year(), u8::from(d.month())))
        .collect();
    let mut by_tag: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for month in months {
        let res = ch
            .http
            .get(format!(
                "{}/admin/v1/usage/export?month={month}",
                ch.replicas[0].url()
            ))
            .bearer_auth(admin_token())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "export");
        for line in res.text().await.unwrap().lines() {
            let e: serde_json::Value = serde_json::from_str(line).expect("export line is JSON");
            if let Some(tag) = e["metadata"]["chaos"].as_str() {
                by_tag.entry(tag.to_string()).or_default().push(e);
            }
        }
    }
    by_tag
}

/// `affine-gateway ledger reconcile` against the cluster's Redis: exit 0, or the test fails
/// with its report.
fn reconcile(ch: &Chaos, scenario: &str) -> String {
    let out = Command::new(BIN)
        .args(["ledger", "reconcile", "--config"])
        .arg(&ch.config)
        .env_clear()
        .envs(ch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("the gateway binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{scenario}: ledger reconcile: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.trim().replace('\n', "; ")
}

/// Each request at most once in the usage events, charged what its answer said; an
/// interrupted one at most its worst case; a refused one nothing.
fn check_events(
    scenario: &str,
    sent: &[Sent],
    events: &HashMap<String, Vec<serde_json::Value>>,
    killed: Option<(usize, Instant)>,
) -> usize {
    let mut ids = HashSet::new();
    for evs in events.values() {
        for e in evs {
            let id = e["request_id"].as_str().unwrap().to_string();
            assert!(
                ids.insert(id.clone()),
                "{scenario}: request id {id} has two events"
            );
        }
    }
    let mut lost = 0;
    for s in sent {
        let evs = events.get(&s.tag).map(Vec::as_slice).unwrap_or(&[]);
        assert!(
            evs.len() <= 1,
            "{scenario}: {} counted {} times: {evs:?}",
            s.tag,
            evs.len()
        );
        let cost = evs
            .first()
            .map(|e| e["cost_rao"].as_u64().expect("cost_rao"));
        match &s.outcome {
            Outcome::Charged(c) if lost_to_kill(s, killed) && cost != Some(*c) => {
                // The documented fate of a settlement still queued in a replica that died:
                // a prepaid hold expires into `unsettled` at most the worst case; a postpaid
                // request has no hold and leaves no event.
                let expired = evs.first().is_some_and(|e| e["status"] == "unsettled");
                assert!(
                    (expired && cost.unwrap_or(0) <= s.worst_rao)
                        || (cost.is_none() && s.caller == POSTPAID),
                    "{scenario}: {} answered {c} rao on the killed replica: {evs:?}",
                    s.tag
                );
                lost += 1;
            }
            Outcome::Charged(c) => assert_eq!(
                cost,
                Some(*c),
                "{scenario}: {} answered with cost {c} rao, its event: {evs:?}",
                s.tag
            ),
            Outcome::Interrupted(_) | Outcome::NoAnswer => assert!(
                cost.unwrap_or(0) <= s.worst_rao,
                "{scenario}: {} ({:?}) charged beyond its worst case {}: {evs:?}",
                s.tag,
                s.outcome,
                s.worst_rao
            ),
            Outcome::Refused { .. } => assert_eq!(
                cost.unwrap_or(0),
                0,
                "{scenario}: {} was refused ({:?}) but charged: {evs:?}",
                s.tag,
                s.outcome
            ),
        }
    }
    lost
}

/// No prepaid balance below zero by more than one request's worst case.
async fn check_balances(ch: &Chaos, con: &mut redis::aio::MultiplexedConnection, scenario: &str) {
    for id in &ch.accounts.prepaid_ids {
        let bal: Option<i64> = con.get(format!("{PREFIX}{{a:{id}}}:bal")).await.unwrap();
        let bal = bal.unwrap_or(0);
        assert!(
            bal >= -MAX_OVERSHOOT_RAO,
            "{scenario}: prepaid {id} at {bal} rao, below −{MAX_OVERSHOOT_RAO}"
        );
    }
}
