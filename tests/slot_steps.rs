//! The Redis store's one-slot-per-call protocol (docs/ARCHITECTURE.md §5): an admission that
//! spans tags refunds its earlier steps when a later one refuses, a sponsor pays in a step of
//! its own, a batch of settlements debits each request once and sums exactly past 2^53, and
//! buckets written by the v3 scripts carry over.

mod common;

use std::time::Duration;

use affine_gateway::metering::reconcile::reconcile;
use affine_gateway::store::{
    Charge, Ending, Hold, LedgerPolicy, Limit, Recorded, ScopeSpec, Store,
};
use common::*;

fn spec(tag: &str, rpm: u64) -> ScopeSpec {
    ScopeSpec {
        tag: tag.into(),
        rpm,
        tpm: 1_000_000,
        tpd: 1_000_000,
        max_concurrent: 100,
    }
}

const EXPIRY_EVENT: &str = r#"{"cost_rao":"__COST__","finished_at":"__FINISHED__"}"#;

fn prepaid(account: &str, amount: u64) -> Hold<'_> {
    hold(account, amount, EXPIRY_EVENT)
}

fn charge(account: &str, request_id: &str, cost: u64, netuid: Option<u16>) -> Charge {
    let day = time::OffsetDateTime::now_utc().date().to_string();
    let event = serde_json::json!({
        "request_id": request_id, "account": account, "cost_rao": cost,
        "finished_at": format!("{day}T00:00:01.000Z"),
    });
    Charge {
        account: account.into(),
        cost_rao: cost,
        input_tokens: 1,
        output_tokens: 2,
        netuid,
        day,
        event: event.to_string(),
        anonymous: false,
        held: true,
    }
}

async fn fund(store: &Store, account: &str, amount: u64) {
    let line = serde_json::json!({"reference": "r1", "amount_rao": amount}).to_string();
    store.credit(account, "r1", amount, &line, 0).await.unwrap();
}

const LEASE: Duration = Duration::from_secs(30);

/// The subnet step runs first and consumes; when the account step then refuses (no money, or
/// the account's own limit), the subnet gets its request and its lease back. Without the
/// refund the subnet would show 9 of 10 left and one request in flight that never ran.
#[tokio::test]
async fn a_refused_account_step_gives_the_subnet_its_request_back() {
    let store = shared_redis_store().await;
    let policy = LedgerPolicy::default();
    let scopes = [spec("{s:77}", 10), spec("{a:broke}", 10)];
    let hold = prepaid("broke", 5);
    let a = store
        .admit(&scopes, "r-1", 10, LEASE, Some(&hold), &policy)
        .await
        .unwrap();
    assert!(
        matches!(a.decision.refused, Some((_, Limit::Balance, _))),
        "{a:?}"
    );
    let peek = store.peek(&scopes, None, &policy).await.unwrap();
    assert_eq!(peek.scopes[0].rpm.remaining, 10, "{peek:?}");
    assert_eq!(peek.scopes[0].in_flight, 0, "{peek:?}");

    // The account's own rpm refuses: the subnet is refunded too.
    let scopes = [spec("{s:77}", 10), spec("{a:busy}", 1)];
    let first = store
        .admit(&scopes, "r-2", 10, LEASE, None, &policy)
        .await
        .unwrap();
    assert_eq!(first.decision.refused, None);
    let second = store
        .admit(&scopes, "r-3", 10, LEASE, None, &policy)
        .await
        .unwrap();
    assert!(
        matches!(
            second.decision.refused,
            Some((1, Limit::RequestsPerMinute, _))
        ),
        "{second:?}"
    );
    let peek = store.peek(&scopes, None, &policy).await.unwrap();
    // r-2 holds one request and one lease of the subnet; r-3 holds nothing.
    assert_eq!(peek.scopes[0].rpm.remaining, 9, "{peek:?}");
    assert_eq!(peek.scopes[0].in_flight, 1, "{peek:?}");
    // The refusal still reports both scopes, for the rate-limit headers.
    assert_eq!(second.decision.scopes.len(), 2);
    assert_eq!(second.decision.scopes[1].rpm.remaining, 0);
}

/// A sponsored member's quota is its own, its money the sponsor's: admission holds on the
/// sponsor, settlement debits the sponsor and releases the member's lease.
#[tokio::test]
async fn a_sponsor_pays_in_a_step_of_its_own() {
    let store = shared_redis_store().await;
    let policy = LedgerPolicy::default();
    fund(&store, "sponsor", 100).await;
    let scopes = [spec("{a:member}", 10)];
    let hold = prepaid("sponsor", 60);
    let a = store
        .admit(&scopes, "m-1", 10, LEASE, Some(&hold), &policy)
        .await
        .unwrap();
    assert_eq!(a.decision.refused, None);
    assert_eq!((a.balance_rao, a.held_rao), (100, 60));
    // A second hold does not fit: the member's scope is refunded.
    let b = store
        .admit(&scopes, "m-2", 10, LEASE, Some(&hold), &policy)
        .await
        .unwrap();
    assert!(
        matches!(b.decision.refused, Some((_, Limit::Balance, _))),
        "{b:?}"
    );
    let peek = store.peek(&scopes, None, &policy).await.unwrap();
    assert_eq!(
        peek.scopes[0].in_flight, 1,
        "only m-1 holds a lease: {peek:?}"
    );

    let c = charge("sponsor", "m-1", 42, None);
    let s = store
        .settle(
            Ending {
                scopes: &scopes,
                request_id: "m-1",
                tokens_back: 0,
                request_back: false,
                charge: Some(&c),
            },
            &policy,
        )
        .await
        .unwrap();
    assert!(s.leases_removed);
    assert_eq!(s.recorded, Recorded::Now);
    let p = store.peek(&scopes, Some("sponsor"), &policy).await.unwrap();
    assert_eq!((p.balance_rao, p.held_rao), (58, 0));
    assert_eq!(p.scopes[0].in_flight, 0);
}

/// Fifty settlements of one account in one batch: each debited once, the sum exact although
/// it passes 2^53 (where a Lua number would round), every event exported, the subnet and
/// public rollups counted once; the same batch again changes nothing.
#[tokio::test]
async fn a_batch_debits_each_request_once_and_sums_exactly() {
    let store = shared_redis_store().await;
    let policy = LedgerPolicy::default();
    let start: u64 = 1 << 62;
    fund(&store, "whale", start).await;
    let scopes = [spec("{s:5}", 1000), spec("{a:whale}", 1000)];
    // Odd costs above 2^53 each: any rounding shows in the last digits.
    let costs: Vec<u64> = (0..50u64).map(|i| (1 << 54) + 2 * i + 1).collect();
    let ids: Vec<String> = (0..50).map(|i| format!("w-{i}")).collect();
    for (id, cost) in ids.iter().zip(&costs) {
        let hold = prepaid("whale", *cost);
        let a = store
            .admit(&scopes, id, 10, LEASE, Some(&hold), &policy)
            .await
            .unwrap();
        assert_eq!(a.decision.refused, None, "{id}");
    }
    let charges: Vec<Charge> = ids
        .iter()
        .zip(&costs)
        .map(|(id, c)| charge("whale", id, *c, Some(5)))
        .collect();
    let ends: Vec<Ending<'_>> = ids
        .iter()
        .zip(&charges)
        .map(|(id, c)| Ending {
            scopes: &scopes,
            request_id: id,
            tokens_back: 3,
            request_back: false,
            charge: Some(c),
        })
        .collect();
    for r in store.settle_many(&ends, &policy).await {
        let r = r.unwrap();
        assert!(r.leases_removed);
        assert_eq!(r.recorded, Recorded::Now);
    }
    let total: u64 = costs.iter().sum();
    let p = store.peek(&scopes, Some("whale"), &policy).await.unwrap();
    assert_eq!(p.balance_rao, i64::try_from(start - total).unwrap());
    assert_eq!(p.held_rao, 0);
    assert_eq!(p.scopes[0].in_flight, 0);
    assert_eq!(p.scopes[1].in_flight, 0);

    // Again: every one settled before, nothing moves.
    for r in store.settle_many(&ends, &policy).await {
        assert_eq!(r.unwrap().recorded, Recorded::Before);
    }
    let again = store.peek(&scopes, Some("whale"), &policy).await.unwrap();
    assert_eq!(again.balance_rao, p.balance_rao);

    let month = &charges[0].day[..7];
    assert_eq!(store.usage_accounts(month).await.unwrap(), ["whale"]);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .usage_events(month, "whale", cursor.as_deref(), 7)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(last.cursor.clone());
        seen.extend(page.into_iter().map(|e| e.json));
    }
    assert_eq!(seen.len(), 50);
    // The shared rollups are gathered in memory and written at most once a second.
    store.flush_rollups(&policy).await;
    let day = charges[0].day.clone();
    for tag in ["{s:5}", "{stats}", "{a:whale}"] {
        let r = store
            .rollups(tag, std::slice::from_ref(&day), tag == "{stats}")
            .await
            .unwrap();
        assert_eq!(r[0].rollup.requests, 50, "{tag}");
        assert_eq!(r[0].rollup.rao, total, "{tag}");
        assert_eq!(r[0].rollup.output_tokens, 100, "{tag}");
    }
    let snap = store.ledger_snapshot().await.unwrap();
    let report = reconcile(&snap);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        snap.events[month]["whale"],
        (50, i64::try_from(total).unwrap())
    );
}

/// A bucket left by the v3 scripts (one hash per bucket) is carried over, not refilled: an
/// upgrade in the middle of a minute does not hand every caller a fresh minute.
#[tokio::test]
async fn buckets_of_the_v3_layout_carry_over() {
    let store = shared_redis_store().await;
    let mut conn = shared_redis_connection().await;
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let now_ms = secs * 1000 + micros / 1000;
    let _: () = redis::cmd("HSET")
        .arg(format!("{}{{a:old}}:q:rpm", store.key_prefix()))
        .arg("l")
        .arg("0")
        .arg("t")
        .arg(now_ms)
        .query_async(&mut conn)
        .await
        .unwrap();
    let scopes = [spec("{a:old}", 5)];
    let a = store
        .admit(&scopes, "o-1", 1, LEASE, None, &LedgerPolicy::default())
        .await
        .unwrap();
    assert!(
        matches!(a.decision.refused, Some((0, Limit::RequestsPerMinute, _))),
        "{a:?}"
    );
}
