//! Credits: idempotent on their reference, on both backends and over HTTP.

mod common;

use affine_gateway::store::{CreditOutcome, Store};
use chutes_sim::SimConfig;
use common::*;

async fn credits_are_once_per_reference(s: &Store) {
    let c = |r: &'static str, amount| {
        let s = s.clone();
        async move { s.credit("acme", r, amount, "{}", 1).await.unwrap() }
    };
    assert_eq!(
        c("tx-1", 500).await,
        CreditOutcome::Credited { balance_rao: 500 }
    );
    assert_eq!(
        c("tx-1", 500).await,
        CreditOutcome::Repeated { balance_rao: 500 }
    );
    assert_eq!(
        c("tx-1", 501).await,
        CreditOutcome::Conflict { amount_rao: 500 }
    );
    assert_eq!(
        c("tx-2", 7).await,
        CreditOutcome::Credited { balance_rao: 507 }
    );
    assert_eq!(
        c("tx-1", 500).await,
        CreditOutcome::Repeated { balance_rao: 500 }
    );
    // Fifty concurrent deliveries of one deposit credit it once.
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.credit("acme", "tx-3", 1_000, "{}", 2).await.unwrap() })
        })
        .collect();
    let mut credited = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), CreditOutcome::Credited { .. }) {
            credited += 1;
        }
    }
    assert_eq!(credited, 1);
    assert_eq!(s.get("{a:acme}:bal").await.unwrap().unwrap(), b"1507");
}

#[tokio::test]
async fn memory_credits_are_once_per_reference() {
    credits_are_once_per_reference(&Store::memory("agw-test:")).await;
}

#[tokio::test]
async fn redis_credits_are_once_per_reference() {
    let s = shared_redis_store().await;
    credits_are_once_per_reference(&s).await;
    s.delete_all_prefixed().await.unwrap();
}

#[tokio::test]
async fn cluster_credits_are_once_per_reference() {
    let cluster = TestRedis::cluster();
    let s = cluster.store().await;
    credits_are_once_per_reference(&s).await;
    s.delete_all_prefixed().await.unwrap();
}

#[tokio::test]
async fn the_credits_endpoint() {
    let h = Harness::start(SimConfig::default()).await;
    let post = |id: &str, body: &str, tok: String| {
        h.http
            .post(h.url(&format!("/admin/v1/accounts/{id}/credits")))
            .bearer_auth(tok)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let body = r#"{"amount_rao":2500000000,"reference":"0xabc123"}"#;
    let res = post(TEST_ACCOUNT, body, admin_token()).await.unwrap();
    assert_eq!(res.status(), 200);
    let first: serde_json::Value = res.json().await.unwrap();
    assert_eq!(first["id"], TEST_ACCOUNT);
    assert_eq!(first["amount_rao"], 2_500_000_000u64);
    assert_eq!(first["reference"], "0xabc123");
    assert_eq!(first["balance_rao"], 2_500_000_000u64);
    let again: serde_json::Value = post(TEST_ACCOUNT, body, admin_token())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        again, first,
        "a repeated reference returns the first result"
    );
    let res = post(
        TEST_ACCOUNT,
        r#"{"amount_rao":1,"reference":"0xabc123"}"#,
        admin_token(),
    )
    .await
    .unwrap();
    expect_problem(res, 409, "conflict").await;
    let v = h.account(TEST_ACCOUNT).await;
    assert_eq!(v["balance_rao"], 2_500_000_000u64);

    expect_problem(
        post("nobody-here", body, admin_token()).await.unwrap(),
        404,
        "not_found",
    )
    .await;
    expect_problem(
        post(TEST_ACCOUNT, body, h.token.clone()).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    for bad in [
        r#"{"amount_rao":0,"reference":"r"}"#,
        r#"{"amount_rao":-5,"reference":"r"}"#,
        r#"{"amount_rao":1.5,"reference":"r"}"#,
        r#"{"amount_rao":1,"reference":""}"#,
        r#"{"amount_rao":1,"reference":"has space"}"#,
        r#"{"amount_rao":1}"#,
    ] {
        expect_problem(
            post(TEST_ACCOUNT, bad, admin_token()).await.unwrap(),
            400,
            "invalid_request",
        )
        .await;
    }
    expect_problem(
        post(
            TEST_ACCOUNT,
            r#"{"amount_rao":1,"reference":"r","memo":"x"}"#,
            admin_token(),
        )
        .await
        .unwrap(),
        400,
        "unknown_field",
    )
    .await;
}

/// Issue #11 item 10: money fields are JSON integers (no rounding through floats), and a
/// credit that would overflow the balance is a 409, not a 500.
#[tokio::test]
async fn money_fields_take_integers_only_and_overflow_is_a_conflict() {
    let h = Harness::start_with(SimConfig::default(), use_redis).await;
    let memory = Harness::start(SimConfig::default()).await;
    for h in [&h, &memory] {
        let post = |body: &str| {
            h.http
                .post(h.url(&format!("/admin/v1/accounts/{TEST_ACCOUNT}/credits")))
                .bearer_auth(admin_token())
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
        };
        // 2^53 + 1 written as a float would be credited as a neighbouring integer.
        for bad in [
            r#"{"amount_rao":9007199254740993.0,"reference":"f1"}"#,
            r#"{"amount_rao":5.0,"reference":"f2"}"#,
            r#"{"amount_rao":1e9,"reference":"f3"}"#,
            r#"{"amount_rao":9223372036854775808,"reference":"f4"}"#,
        ] {
            let body = expect_problem(post(bad).await.unwrap(), 400, "invalid_request").await;
            assert!(
                body["detail"].as_str().unwrap().contains("JSON integer"),
                "{bad}: {body}"
            );
        }
        // The exact integer is credited exactly.
        let res = post(r#"{"amount_rao":9007199254740993,"reference":"big-1"}"#)
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["balance_rao"], 9_007_199_254_740_993u64);
        // Up to the largest balance, then one rao more is refused without a 500.
        let rest = i64::MAX as u64 - 9_007_199_254_740_993;
        let res = post(&format!(r#"{{"amount_rao":{rest},"reference":"big-2"}}"#))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let res = post(r#"{"amount_rao":1,"reference":"big-3"}"#)
            .await
            .unwrap();
        let body = expect_problem(res, 409, "conflict").await;
        assert!(body["detail"].as_str().unwrap().contains("past"), "{body}");
        let v = h.account(TEST_ACCOUNT).await;
        assert_eq!(
            v["balance_rao"],
            i64::MAX,
            "nothing credited by the refusal"
        );
        // The refused reference was not used up.
        let res = post(r#"{"amount_rao":1,"reference":"big-3"}"#)
            .await
            .unwrap();
        expect_problem(res, 409, "conflict").await;

        // Credit limits: integers only as well; a whole float is not rounded into a limit.
        for bad in [
            r#"{"credit_limit_rao":9007199254740993.0}"#,
            r#"{"credit_limit_rao":10.0}"#,
        ] {
            let res = put_account(&h.http, &h.gw.url(), TEST_ACCOUNT, bad).await;
            let body = expect_problem(res, 400, "invalid_request").await;
            assert!(
                body["detail"].as_str().unwrap().contains("JSON integer"),
                "{bad}: {body}"
            );
        }
        let res = put_account(
            &h.http,
            &h.gw.url(),
            TEST_ACCOUNT,
            r#"{"credit_limit_rao":9007199254740993}"#,
        )
        .await;
        assert_eq!(res.status(), 200);
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["credit_limit_rao"], 9_007_199_254_740_993u64);
    }
}
