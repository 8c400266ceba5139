//! Money: prepaid holds under concurrency, idempotent settlement, expired holds, disconnects,
//! the journal across a Redis outage, usage reads and the monthly export.

mod common;

use std::time::{Duration, Instant};

use affine_gateway::auth::jwt::Scope;
use affine_gateway::config::{Config, PlanConfig, Secret};
use affine_gateway::metering::reconcile::reconcile;
use affine_gateway::store::{
    Charge, Ending, LedgerPolicy, Limit, Peek, Recorded, ScopeSpec, Store,
};
use chutes_sim::SimConfig;
use common::durable_redis::DurableRedis;
use common::*;

/// One rao per output token, inputs free: a request's worst case is exactly its `max_tokens`.
fn bulk_plan(cfg: &mut Config) {
    cfg.plans.insert(
        "bulk".into(),
        PlanConfig {
            requests_per_minute: Some(1_000_000),
            tokens_per_minute: Some(1_000_000_000),
            tokens_per_day: Some(1_000_000_000),
            max_concurrent: Some(5_000),
            max_tokens: Some(1_000),
            input_rao_per_mtok: Some(0),
            output_rao_per_mtok: Some(1_000_000),
            ..PlanConfig::default()
        },
    );
}

async fn credit(h: &Harness, account: &str, amount: u64, reference: &str) {
    let res = h
        .http
        .post(h.url(&format!("/admin/v1/accounts/{account}/credits")))
        .bearer_auth(admin_token())
        .json(&serde_json::json!({"amount_rao": amount, "reference": reference}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

async fn prepaid_account(h: &Harness, id: &str, balance: u64) -> String {
    let res = put_account(&h.http, &h.gw.url(), id, r#"{"plan":"bulk"}"#).await;
    assert!(res.status().is_success(), "{}", res.status());
    if balance > 0 {
        credit(h, id, balance, &format!("dep-{id}")).await;
    }
    token(id, &[Scope::Reason], 3600)
}

async fn reason_as(h: &Harness, token: &str, body: &str) -> reqwest::Response {
    h.http
        .post(h.url("/v1/reason"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// Waits until every settlement of the gateway has reached the store (or the journal).
async fn settled(h: &Harness) {
    let meter = h.gw.state.meter.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while meter.running() > 0 {
        assert!(Instant::now() < deadline, "settlements still running");
        meter.flush(Duration::from_millis(100)).await;
    }
}

async fn gauge(h: &Harness, name: &str) -> f64 {
    metric(&h.http, &h.gw.url(), name).await.unwrap_or(0.0)
}

// The Redis halves, on the single Redis and on the cluster: `…::single`, `…::cluster`.
single_and_cluster!(
    a_thousand_concurrent_requests_never_overdraw_a_prepaid_balance,
    the_export_holds_exactly_the_months_events,
);

async fn a_thousand_concurrent_requests_never_overdraw_a_prepaid_balance(redis: &TestRedis) {
    let h = Harness::start_with(SimConfig::default(), |c| {
        redis.configure(c);
        bulk_plan(c);
        c.quota.ip_per_second = 100_000;
        c.quota.ip_burst = 100_000;
        // 1 000 connections from 127.0.0.1 at once: the per-address connection cap (256, proved
        // in tests/connections.rs) would reset those past it at accept whenever a loaded machine
        // keeps more than 256 of them open together.
        c.server.max_connections_per_ip = 0;
    })
    .await;
    // The simulator answers with more than 8 words, so each request costs its worst case:
    // the balance covers exactly 37 of them.
    let token = prepaid_account(&h, "exactly-37", 37 * 8).await;
    let body = r#"{"input":"hello","max_tokens":8}"#;
    let calls = (0..1000).map(|_| reason_as(&h, &token, body));
    let results = futures_util::future::join_all(calls).await;
    let (mut ok, mut broke) = (0, 0);
    let mut charged = 0u64;
    for r in results {
        match r.status().as_u16() {
            200 => {
                ok += 1;
                charged += r.headers()["x-affine-cost-rao"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
            402 => {
                broke += 1;
                expect_problem(r, 402, "insufficient_balance").await;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!((ok, broke), (37, 963));
    assert_eq!(charged, 37 * 8);
    settled(&h).await;
    let store = &h.gw.state.store;
    let snap = store.ledger_snapshot().await.unwrap();
    let books = &snap.accounts["exactly-37"];
    assert_eq!(books.balance_rao, 0, "never below zero, nothing left over");
    assert_eq!(books.held_rao, 0);
    let report = reconcile(&snap);
    assert!(report.is_clean(), "{report}");
    let events = h.events_of(&this_month()).await;
    let mine: Vec<_> = events
        .iter()
        .filter(|e| e["account"] == "exactly-37")
        .collect();
    assert_eq!(mine.len(), 37, "one usage event per served request");
    assert!(
        mine.iter()
            .all(|e| e["status"] == "ok" && e["cost_rao"] == 8)
    );
}

fn scope(account: &str) -> Vec<ScopeSpec> {
    vec![ScopeSpec {
        tag: format!("{{a:{account}}}"),
        rpm: 1000,
        tpm: 1_000_000,
        tpd: 1_000_000,
        max_concurrent: 10,
    }]
}

fn charge(account: &str, request_id: &str, cost: u64, day: &str) -> Charge {
    let event = serde_json::json!({
        "request_id": request_id, "account": account, "netuid": null, "plan": "bulk",
        "model": "org/m", "revision": null, "input_tokens": 1, "output_tokens": cost,
        "input_rao_per_mtok": 0, "output_rao_per_mtok": 1_000_000, "cost_rao": cost,
        "status": "ok", "estimated": false, "started_at": format!("{day}T00:00:00.000Z"),
        "finished_at": format!("{day}T00:00:01.000Z"), "metadata": null,
    });
    Charge {
        account: account.into(),
        cost_rao: cost,
        input_tokens: 1,
        output_tokens: cost,
        netuid: None,
        day: day.into(),
        event: event.to_string(),
        anonymous: false,
        held: true,
    }
}

/// The end of a request that used exactly its estimate, with `charge`.
fn charged<'a>(scopes: &'a [ScopeSpec], request_id: &'a str, charge: &'a Charge) -> Ending<'a> {
    Ending {
        scopes,
        request_id,
        tokens_back: 0,
        request_back: false,
        charge: Some(charge),
    }
}

async fn fund(store: &Store, account: &str, amount: u64) {
    let line = serde_json::json!({"reference": "r1", "amount_rao": amount}).to_string();
    store.credit(account, "r1", amount, &line, 0).await.unwrap();
}

/// The same behaviour on both backends: settling twice charges once.
async fn settle_twice_charges_once(store: Store) {
    let policy = LedgerPolicy::default();
    let a = "twice";
    fund(&store, a, 100).await;
    let sc = scope(a);
    let tmpl = charge(a, "r-1", 0, "2026-11-25")
        .event
        .replace("\"cost_rao\":0", "\"cost_rao\":\"__COST__\"");
    let adm = store
        .admit(
            &sc,
            "r-1",
            10,
            Duration::from_secs(30),
            Some(&hold(a, 60, &tmpl)),
            &policy,
        )
        .await
        .unwrap();
    assert!(adm.decision.refused.is_none());
    assert_eq!((adm.balance_rao, adm.held_rao), (100, 60));
    // A second request does not fit beside the first one's hold.
    let adm2 = store
        .admit(
            &sc,
            "r-2",
            10,
            Duration::from_secs(30),
            Some(&hold(a, 60, &tmpl)),
            &policy,
        )
        .await
        .unwrap();
    assert!(matches!(
        adm2.decision.refused,
        Some((_, Limit::Balance, _))
    ));
    let c = charge(a, "r-1", 25, "2026-11-25");
    let first = store
        .settle(charged(&sc, "r-1", &c), &policy)
        .await
        .unwrap();
    assert_eq!(
        (first.leases_removed, first.recorded),
        (true, Recorded::Now)
    );
    let again = store
        .settle(charged(&sc, "r-1", &c), &policy)
        .await
        .unwrap();
    assert_eq!(
        (again.leases_removed, again.recorded),
        (false, Recorded::Before)
    );
    let Peek {
        balance_rao: balance,
        held_rao: held,
        ..
    } = store.peek(&sc, Some(a), &policy).await.unwrap();
    assert_eq!((balance, held), (75, 0));
    // A repeated credit reference credits once.
    fund(&store, a, 100).await;
    let snap = store.ledger_snapshot().await.unwrap();
    assert_eq!(snap.accounts[a].balance_rao, 75);
    assert_eq!(snap.events["2026-11"][a], (1, 25));
    let r = reconcile(&snap);
    assert!(r.is_clean(), "{r}");
}

#[tokio::test]
async fn settling_twice_charges_once_in_memory() {
    settle_twice_charges_once(Store::memory("t:")).await;
}

#[tokio::test]
async fn settling_twice_charges_once_on_redis() {
    settle_twice_charges_once(shared_redis_store().await).await;
}

#[tokio::test]
async fn settling_twice_charges_once_on_the_cluster() {
    let cluster = TestRedis::cluster();
    settle_twice_charges_once(cluster.store().await).await;
}

/// A hold whose replica died expires into an `unsettled` event, charged per the policy; a
/// settlement arriving after that changes nothing.
async fn expired_hold_becomes_an_unsettled_event(store: Store) {
    let policy = LedgerPolicy {
        hold_ttl_ms: 50,
        ..LedgerPolicy::default()
    };
    let a = "ghost";
    fund(&store, a, 100).await;
    let sc = scope(a);
    let tmpl = charge(a, "r-9", 0, "2026-11-25")
        .event
        .replace("\"cost_rao\":0", "\"cost_rao\":\"__COST__\"")
        .replace("2026-11-25T00:00:01.000Z", "__FINISHED__");
    store
        .admit(
            &sc,
            "r-9",
            10,
            Duration::from_secs(30),
            Some(&hold(a, 40, &tmpl)),
            &policy,
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let Peek {
            balance_rao: balance,
            held_rao: held,
            ..
        } = store.peek(&sc, Some(a), &policy).await.unwrap();
        if held == 0 {
            assert_eq!(balance, 60, "charged the hold (policy `charge`)");
            break;
        }
        assert!(Instant::now() < deadline, "hold never expired");
        // A timer, not a yield: on paused time (the memory half) it is what moves the clock.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let late = store
        .settle(
            charged(&sc, "r-9", &charge(a, "r-9", 5, "2026-11-25")),
            &policy,
        )
        .await
        .unwrap();
    assert_eq!(late.recorded, Recorded::Before);
    let snap = store.ledger_snapshot().await.unwrap();
    let month = this_month();
    assert_eq!(snap.events[&month][a], (1, 40));
    assert!(reconcile(&snap).is_clean());
}

/// An admission that only an expired hold keeps from fitting sweeps that hold and is admitted
/// (admissions sweep only then: an unswept hold merely counts as still held).
async fn an_expired_hold_never_blocks_an_admission(store: Store) {
    let policy = LedgerPolicy {
        hold_ttl_ms: 50,
        charge_expired: false,
        ..LedgerPolicy::default()
    };
    let a = "stale";
    fund(&store, a, 100).await;
    let sc = scope(a);
    let tmpl = charge(a, "r-1", 0, "2026-11-25")
        .event
        .replace("\"cost_rao\":0", "\"cost_rao\":\"__COST__\"")
        .replace("2026-11-25T00:00:01.000Z", "__FINISHED__");
    let first = store
        .admit(
            &sc,
            "r-1",
            10,
            Duration::from_secs(30),
            Some(&hold(a, 100, &tmpl)),
            &policy,
        )
        .await
        .unwrap();
    assert!(first.decision.refused.is_none());
    let deadline = Instant::now() + Duration::from_secs(5);
    let second = loop {
        let adm = store
            .admit(
                &sc,
                "r-2",
                10,
                Duration::from_secs(30),
                Some(&hold(a, 60, &tmpl)),
                &policy,
            )
            .await
            .unwrap();
        if adm.decision.refused.is_none() {
            break adm;
        }
        assert!(matches!(adm.decision.refused, Some((_, Limit::Balance, _))));
        assert!(
            Instant::now() < deadline,
            "the expired hold kept blocking admissions"
        );
        // A timer, not a yield: on paused time (the memory half) it is what moves the clock.
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // The first hold was released (policy `release`), the second one is held.
    assert_eq!((second.balance_rao, second.held_rao), (100, 60));
    let snap = store.ledger_snapshot().await.unwrap();
    assert_eq!(
        snap.events[&this_month()][a],
        (1, 0),
        "one unsettled event, charged nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_hold_never_blocks_an_admission_in_memory() {
    an_expired_hold_never_blocks_an_admission(Store::memory("t:")).await;
}

#[tokio::test]
async fn an_expired_hold_never_blocks_an_admission_on_redis() {
    an_expired_hold_never_blocks_an_admission(shared_redis_store().await).await;
}

#[tokio::test]
async fn an_expired_hold_never_blocks_an_admission_on_the_cluster() {
    let cluster = TestRedis::cluster();
    an_expired_hold_never_blocks_an_admission(cluster.store().await).await;
}

/// On paused time: the 50 ms hold TTL passes without waiting for it.
#[tokio::test(start_paused = true)]
async fn expired_holds_become_unsettled_events_in_memory() {
    expired_hold_becomes_an_unsettled_event(Store::memory("t:")).await;
}

#[tokio::test]
async fn expired_holds_become_unsettled_events_on_redis() {
    expired_hold_becomes_an_unsettled_event(shared_redis_store().await).await;
}

#[tokio::test]
async fn expired_holds_become_unsettled_events_on_the_cluster() {
    let cluster = TestRedis::cluster();
    expired_hold_becomes_an_unsettled_event(cluster.store().await).await;
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_charged_for_what_was_produced() {
    let sim = SimConfig {
        tokens_per_sec: 40.0,
        ..SimConfig::default()
    };
    let h = Harness::start_with(sim, bulk_plan).await;
    let token = prepaid_account(&h, "leaver", 1_000).await;
    let mut res = reason_as(
        &h,
        &token,
        r#"{"input":"hi","max_tokens":400,"stream":true}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    let first = res.chunk().await.unwrap().expect("a first event");
    assert!(!first.is_empty());
    drop(res);
    let event = eventually(
        Duration::from_secs(10),
        "no usage event for the disconnect",
        || async {
            settled(&h).await;
            let events = h.events_of(&this_month()).await;
            events.into_iter().find(|e| e["account"] == "leaver")
        },
    )
    .await;
    assert_eq!(event["status"], "client_closed");
    assert_eq!(event["estimated"], true);
    let out = event["output_tokens"].as_u64().unwrap();
    assert!(out > 0 && out < 400, "charged what was produced: {out}");
    assert_eq!(event["cost_rao"].as_u64().unwrap(), out);
    let account: serde_json::Value = h
        .http
        .get(h.url("/v1/account"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["balance_rao"].as_i64().unwrap(), 1_000 - out as i64);
    assert_eq!(account["holds_rao"], 0);
}

#[tokio::test]
async fn usage_and_stats_count_settled_requests() {
    let h = Harness::start_with(SimConfig::default(), bulk_plan).await;
    let token = prepaid_account(&h, "counted", 1_000).await;
    for _ in 0..3 {
        let r = reason_as(&h, &token, r#"{"input":"hi","max_tokens":8}"#).await;
        assert_eq!(r.status(), 200);
    }
    settled(&h).await;
    let today = time::OffsetDateTime::now_utc().date();
    let day = format!(
        "{:04}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    let usage: serde_json::Value = h
        .http
        .get(h.url(&format!("/v1/usage?from={day}&to={day}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["days"][0]["date"], day.as_str());
    assert_eq!(usage["days"][0]["requests"], 3);
    assert_eq!(usage["total"]["rao"], 24);
    let stats: serde_json::Value = h
        .http
        .get(h.url(&format!("/v1/stats?from={day}&to={day}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["days"][0]["requests"], 3);
    assert_eq!(stats["days"][0]["unique_callers"], 1);
    assert!(
        stats["days"][0].get("rao").is_none(),
        "no money in public stats"
    );
    for q in [
        "from=2026-13-01",
        "to=2026-01-01&to=2026-01-02",
        "from=2026-02-01&to=2026-01-01",
    ] {
        let bad = h
            .http
            .get(h.url(&format!("/v1/usage?{q}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        expect_problem(bad, 400, "invalid_request").await;
    }
    // A range longer than 366 days is cut to its last 366.
    let long: serde_json::Value = h
        .http
        .get(h.url("/v1/stats?from=2000-01-01&to=2026-11-25"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(long["days"].as_array().unwrap().len(), 366);
    assert_eq!(long["from"], "2025-11-25");
}

async fn the_export_holds_exactly_the_months_events(redis: &TestRedis) {
    let h = Harness::start_with(SimConfig::default(), |c| redis.configure(c)).await;
    let store = h.gw.state.store.clone();
    let policy = LedgerPolicy::default();
    let sc = scope("exporter");
    for (id, day) in [
        ("oct-31", "2026-10-31"),
        ("nov-01", "2026-11-01"),
        ("nov-30", "2026-11-30"),
        ("dec-01", "2026-12-01"),
    ] {
        let c = charge("exporter", id, 3, day);
        store.settle(charged(&sc, id, &c), &policy).await.unwrap();
    }
    let ids = |v: Vec<serde_json::Value>| -> Vec<String> {
        v.iter()
            .map(|e| e["request_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(h.events_of("2026-11").await), ["nov-01", "nov-30"]);
    let csv = h
        .http
        .get(h.url("/admin/v1/usage/export?month=2026-11&format=csv"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "request_id,account,netuid,plan,model,revision,input_tokens,output_tokens,input_rao_per_mtok,output_rao_per_mtok,cost_rao,status,estimated,started_at,finished_at,metadata"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].starts_with("nov-01,exporter,,bulk,org/m,,1,3,0,1000000,3,ok,false,"));
    assert!(rows[1].starts_with("nov-30,"));
    let empty = h.events_of("2026-09").await;
    assert!(empty.is_empty());
    let bad = h
        .http
        .get(h.url("/admin/v1/usage/export?month=2026-11&format=xml"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    expect_problem(bad, 400, "invalid_request").await;
}

#[tokio::test]
async fn settlements_survive_a_redis_outage_through_the_journal() {
    let mut redis = DurableRedis::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let sim = SimConfig {
        tokens_per_sec: 50.0,
        ..SimConfig::default()
    };
    let h = Harness::start_with(sim, |c| {
        c.redis.url = Some(Secret::new(url.clone()));
        c.redis.command_timeout_ms = 200;
        bulk_plan(c);
    })
    .await;
    let token = prepaid_account(&h, "outage", 10_000).await;
    // Three streams in flight when Redis goes away.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut res = reason_as(
            &h,
            &token,
            r#"{"input":"hi","max_tokens":20,"stream":true}"#,
        )
        .await;
        assert_eq!(res.status(), 200);
        assert!(res.chunk().await.unwrap().is_some());
        streams.push(res);
    }
    redis.kill();
    let mut costs = 0;
    for res in streams {
        let events = read_events(res).await;
        let done = events.iter().find(|e| e.event == "done").expect("done");
        costs += done.data["cost"]["rao"].as_u64().unwrap();
    }
    assert_eq!(costs, 60);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge(&h, "agw_journal_backlog").await < 3.0 {
        assert!(Instant::now() < deadline, "settlements were not journaled");
        settled(&h).await;
    }
    // No new prepaid reservation without Redis: no free usage.
    let refused = reason_as(&h, &token, r#"{"input":"hi","max_tokens":20}"#).await;
    expect_problem(refused, 503, "store_unavailable").await;
    // Its admission may have reached Redis before the failure, so it is settled as failed
    // (nothing charged) through the journal too: a hold it left must not expire into a charge.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge(&h, "agw_journal_backlog").await < 4.0 {
        assert!(
            Instant::now() < deadline,
            "the refusal's settlement was not journaled"
        );
        settled(&h).await;
    }
    let journal = std::fs::read_to_string(&h.cfg.metering.journal_path).unwrap();
    assert_eq!(journal.lines().count(), 4);

    redis.start_again();
    let deadline = Instant::now() + Duration::from_secs(15);
    eventually(
        deadline.saturating_duration_since(Instant::now()),
        "journal never replayed",
        || async { (gauge(&h, "agw_journal_backlog").await == 0.0).then_some(()) },
    )
    .await;
    let store = Store::redis(
        &url,
        &h.cfg.redis.key_prefix,
        Duration::from_secs(2),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    // Replaying the same settlements again changes nothing.
    let policy = LedgerPolicy::default();
    for line in journal.lines() {
        let e: affine_gateway::metering::journal::Entry = serde_json::from_str(line).unwrap();
        let rec = store
            .settle(
                Ending {
                    scopes: &e.scopes,
                    request_id: &e.request_id,
                    tokens_back: e.tokens_back,
                    request_back: false,
                    charge: e.charge.as_ref(),
                },
                &policy,
            )
            .await
            .unwrap();
        assert_eq!(rec.recorded, Recorded::Before);
    }
    let snap = store.ledger_snapshot().await.unwrap();
    let r = reconcile(&snap);
    assert!(r.is_clean(), "{r}");
    assert_eq!(snap.accounts["outage"].balance_rao, 10_000 - 60);
    assert_eq!(snap.accounts["outage"].held_rao, 0);
    assert_eq!(snap.events[&this_month()]["outage"], (4, 60));
    let failed = h
        .events_of(&this_month())
        .await
        .into_iter()
        .filter(|e| e["account"] == "outage" && e["status"] == "failed")
        .collect::<Vec<_>>();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["cost_rao"], 0);
}

/// Accounts, subnets and the public stats share the memory ledger's shards: settling for many
/// accounts (some on the same shard as the stats) must never wait on itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_settlements_for_many_accounts_all_finish() {
    let store = Store::memory("t:");
    let policy = LedgerPolicy::default();
    let s2 = store.clone();
    // On its own task, so a deadlocked worker cannot stop the timeout from firing.
    let run = tokio::spawn(async move {
        let store = s2;
        for i in 0..200 {
            let a = format!("acct-{i}");
            let mut c = charge(&a, "r", 1, "2026-11-25");
            c.netuid = Some(7);
            let rec = store
                .settle(charged(&scope(&a), "r", &c), &policy)
                .await
                .unwrap();
            assert_eq!(rec.recorded, Recorded::Now);
        }
    });
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("no settlement deadlocks")
        .unwrap();
    let days = ["2026-11-25".to_string()];
    let stats = store.rollups("{stats}", &days, true).await.unwrap();
    assert_eq!((stats[0].rollup.requests, stats[0].callers), (200, 200));
    let subnet = store.rollups("{s:7}", &days, false).await.unwrap();
    assert_eq!(subnet[0].rollup.rao, 200);
}
