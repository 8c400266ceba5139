//! Issue #11, billing defects: requests that made the provider do unpriced work (item 1),
//! answers buffered without a limit (item 5), and free callers that grew Redis forever
//! (item 6). Each test failed on the code before its fix.

mod common;

use affine_gateway::auth::jwt::Scope;
use affine_gateway::auth::signing::{Crypto, KeyPair, btauth_headers};
use affine_gateway::config::DEV_HOTKEY;
use chutes_sim::SimConfig;
use common::*;

/// Enterprise prices (rao per 1M tokens): what `payer` pays.
const IN_PRICE: u64 = 500_000;
const OUT_PRICE: u64 = 2_000_000;

fn price(input: u64, output: u64) -> u64 {
    (input * IN_PRICE).div_ceil(1_000_000) + (output * OUT_PRICE).div_ceil(1_000_000)
}

/// Creates the prepaid enterprise account `id` with `credit` rao; returns its token.
async fn prepaid(h: &Harness, id: &str, credit: u64) -> String {
    let res = put_account(&h.http, &h.gw.url(), id, r#"{"billing":"prepaid"}"#).await;
    assert!(res.status().is_success(), "{}", res.status());
    let res = h
        .http
        .post(h.url(&format!("/admin/v1/accounts/{id}/credits")))
        .bearer_auth(admin_token())
        .json(&serde_json::json!({"amount_rao": credit, "reference": format!("dep-{id}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    token(id, &[Scope::Reason], 600)
}

async fn balance(h: &Harness, id: &str) -> i64 {
    h.account(id).await["balance_rao"]
        .as_i64()
        .expect("balance")
}

/// The `X-Affine-Cost-Rao` of a whole answer.
fn cost_header(res: &reqwest::Response) -> u64 {
    res.headers()["x-affine-cost-rao"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn chat(h: &Harness, token: &str, body: serde_json::Value) -> reqwest::Response {
    h.http
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Item 1: `n: 64`, `best_of`, non-text parts and unknown fields never reach the provider.
#[tokio::test]
async fn chat_refuses_what_it_cannot_price_and_forwards_only_its_allowlist() {
    let h = Harness::start(SimConfig::default()).await;
    let msgs = serde_json::json!([{"role": "user", "content": "hi"}]);
    for (extra, field) in [
        (serde_json::json!({"n": 64}), "`n`"),
        (serde_json::json!({"best_of": 4}), "best_of"),
        (serde_json::json!({"logprobs": true}), "logprobs"),
        (serde_json::json!({"functions": []}), "functions"),
    ] {
        let mut body =
            serde_json::json!({"model": "affine-winner", "messages": msgs, "max_tokens": 4});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let res = chat(&h, &h.token, body).await;
        assert_eq!(res.status(), 400, "{extra}");
        let e: serde_json::Value = res.json().await.unwrap();
        assert_eq!(e["error"]["code"], "invalid_request", "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(field),
            "{e}"
        );
    }
    let image = serde_json::json!({"model": "affine-winner", "messages": [{"role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]});
    assert_eq!(chat(&h, &h.token, image).await.status(), 400);
    // Nothing refused reached the provider.
    assert!(h.sim.requests().is_empty(), "{:?}", h.sim.requests());

    let ok = serde_json::json!({"model": "affine-winner", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "reasoning_content": "greet back"},
            {"role": "user", "content": [{"type": "text", "text": "again"}]}],
        "max_tokens": 8, "temperature": 0.2, "seed": 1, "stop": ["\n\n"], "user": "u-7",
        "store": false, "reasoning_effort": "low", "response_format": {"type": "text"}, "n": 1});
    assert_eq!(chat(&h, &h.token, ok).await.status(), 200);
    let sent = &h.sim.requests()[0].body;
    let mut keys: Vec<&str> = sent
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            // `reasoning_effort` is mapped to the provider's thinking switch (issue #18).
            "chat_template_kwargs",
            "max_tokens",
            "messages",
            "model",
            "reasoning_effort",
            "response_format",
            "seed",
            "stop",
            "stream",
            "temperature"
        ]
    );
    assert_eq!(sent["messages"][1]["reasoning_content"], "greet back");
    assert_eq!(
        sent["chat_template_kwargs"],
        serde_json::json!({"enable_thinking": true})
    );
}

/// Item 1: 600 KB of tool schemas are input the provider reads: they are in the hold, so a
/// prepaid account holding 1,000 rao cannot have them read for a few rao.
#[tokio::test]
async fn tool_schemas_are_part_of_the_prepaid_hold() {
    let h = Harness::start(SimConfig::default()).await;
    let t = prepaid(&h, "toolsy", 1_000).await;
    let schema = "x".repeat(600_000);
    let body = serde_json::json!({"model": "affine-winner", "max_tokens": 4,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "description": schema,
            "parameters": {"type": "object"}}}]});
    let res = chat(&h, &t, body).await;
    assert_eq!(res.status(), 402);
    let e: serde_json::Value = res.json().await.unwrap();
    assert_eq!(e["error"]["code"], "insufficient_balance");
    assert!(h.sim.requests().is_empty());
    assert_eq!(balance(&h, "toolsy").await, 1_000);
}

/// Item 1: the provider's count is charged even when it beats the hold (the balance goes
/// below zero by that one request), and the next request is refused until it is paid — on
/// `/v1/reason` and `/v1/chat/completions` alike.
#[tokio::test]
async fn usage_beyond_the_hold_is_charged_and_blocks_the_next_request() {
    // A provider that answers 40 completion tokens whatever `max_tokens` says.
    let h = Harness::start(SimConfig {
        honour_max_tokens: false,
        ..SimConfig::default()
    })
    .await;
    let t = prepaid(&h, "overrun", 20).await;
    let res = h
        .http
        .post(h.url("/v1/reason"))
        .bearer_auth(&t)
        .json(&serde_json::json!({"input": "2+2?", "max_tokens": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cost = cost_header(&res);
    let v: serde_json::Value = res.json().await.unwrap();
    let (i, o) = (
        v["usage"]["input_tokens"].as_u64().unwrap(),
        v["usage"]["output_tokens"].as_u64().unwrap(),
    );
    assert!(o > 4, "the simulator overruns max_tokens");
    assert_eq!(
        cost,
        price(i, o),
        "charged the reported usage, not the hold"
    );
    assert_eq!(v["cost"]["rao"], cost);
    let after = balance(&h, "overrun").await;
    assert_eq!(after, 20 - cost as i64);
    assert!(after < 0);

    let res = h
        .http
        .post(h.url("/v1/reason"))
        .bearer_auth(&t)
        .json(&serde_json::json!({"input": "2+2?", "max_tokens": 1}))
        .send()
        .await
        .unwrap();
    let p = expect_problem(res, 402, "insufficient_balance").await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("more than it reserved"),
        "{p}"
    );

    // The chat route follows the same rule.
    let t2 = prepaid(&h, "overrun-chat", 20).await;
    let body = serde_json::json!({"model": "affine-winner", "max_tokens": 4,
        "messages": [{"role": "user", "content": "2+2?"}]});
    let res = chat(&h, &t2, body.clone()).await;
    assert_eq!(res.status(), 200);
    let cost = cost_header(&res);
    let v: serde_json::Value = res.json().await.unwrap();
    let (i, o) = (
        v["usage"]["prompt_tokens"].as_u64().unwrap(),
        v["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(cost, price(i, o));
    assert_eq!(balance(&h, "overrun-chat").await, 20 - cost as i64);
    assert_eq!(chat(&h, &t2, body).await.status(), 402);
}

/// Item 5: a whole answer longer than `upstream.max_answer_bytes` is refused with 502 instead
/// of being buffered, on both routes, and nothing is charged.
#[tokio::test]
async fn oversized_whole_answers_are_refused_not_buffered() {
    let sim = SimConfig {
        output_tokens: 4_000,
        ..SimConfig::default()
    };
    let h = Harness::start_with(sim, |c| c.upstream.max_answer_bytes = 8_192).await;
    let res = h.reason(r#"{"input":"2+2?"}"#).await;
    let p = expect_problem(res, 502, "upstream_error").await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("could not be understood")
    );
    let res = chat(
        &h,
        &h.token,
        serde_json::json!({"model": "affine-winner", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(res.status(), 502);
    let e: serde_json::Value = res.json().await.unwrap();
    assert_eq!(e["error"]["code"], "upstream_error");
    assert_eq!(balance(&h, TEST_ACCOUNT).await, 0);
    // A smaller answer still passes.
    h.sim.set_config(SimConfig::default());
    assert_eq!(h.reason(r#"{"input":"2+2?"}"#).await.status(), 200);
}

/// A btauth/1-signed `/v1/reason` request from `key`.
async fn signed_reason(h: &Harness, key: &KeyPair) -> reqwest::Response {
    let body = br#"{"input":"2+2?","max_tokens":16}"#;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut rb = h
        .http
        .post(h.url("/v1/reason"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in btauth_headers(key, "POST", "/v1/reason", body, DEV_HOTKEY, nonce) {
        rb = rb.header(k, v);
    }
    rb.send().await.unwrap()
}

fn fresh_key() -> KeyPair {
    KeyPair::from_uri(
        &format!("//fresh-{}", uuid::Uuid::new_v4().simple()),
        Crypto::Sr25519,
    )
    .unwrap()
}

/// Item 6: a free caller without an account leaves no key behind that lives forever (before:
/// balance, debits and a 400-day rollup per hotkey), while the usage event and the public
/// stats still count its request.
#[tokio::test]
async fn free_callers_without_an_account_leave_only_expiring_keys() {
    let h = Harness::start_with(SimConfig::default(), |c| {
        use_redis(c);
        c.quota.ip_per_second = 0;
    })
    .await;
    let prefix = h.cfg.redis.key_prefix.clone();
    let key = fresh_key();
    for _ in 0..2 {
        assert_eq!(signed_reason(&h, &key).await.status(), 200);
    }
    h.gw.state
        .meter
        .flush(std::time::Duration::from_secs(5))
        .await;

    let mut conn = shared_redis_connection().await;
    let own: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}{{a:{}}}*", key.ss58()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!own.is_empty(), "the done-marks are there");
    for k in &own {
        for never in [":bal", ":debits", ":use:", ":held", ":holds"] {
            assert!(
                !k.contains(never),
                "{k} written for a caller without an account"
            );
        }
        let ttl: i64 = redis::cmd("TTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{k} never expires (ttl {ttl})");
    }
    let tier: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}{{t:public}}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!tier.is_empty());
    for k in &tier {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{k} never expires");
    }
    // Counted where it should be: the public stats and the month's usage events.
    let day = time::OffsetDateTime::now_utc().date().to_string();
    let stats: serde_json::Value = h
        .http
        .get(h.url(&format!("/v1/stats?from={day}&to={day}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["days"][0]["requests"], 2, "{stats}");
    let month = &day[..7];
    let events = h.events_of(month).await;
    assert_eq!(events.len(), 2);
    // The ledger still reconciles.
    let snap = h.gw.state.store.ledger_snapshot().await.unwrap();
    let report = affine_gateway::metering::reconcile::reconcile(&snap);
    assert!(report.is_clean(), "{report:?}");
}

/// Item 6: all callers without an account share one admission cap, so a flood of fresh
/// hotkeys (each with a fresh per-hotkey budget) cannot take capacity from paying callers.
#[tokio::test]
async fn fresh_hotkeys_share_one_public_tier_cap() {
    let h = Harness::start_with(SimConfig::default(), |c| {
        use_redis(c);
        c.quota.ip_per_second = 0;
        c.quota.public_tier.requests_per_minute = 3;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(signed_reason(&h, &fresh_key()).await.status(), 200);
    }
    let res = signed_reason(&h, &fresh_key()).await;
    let p = expect_problem(res, 429, "rate_limited").await;
    assert!(p["detail"].as_str().unwrap().contains("free tier"), "{p}");
    // A caller with an account is not held to the free tier.
    assert_eq!(h.reason(r#"{"input":"2+2?"}"#).await.status(), 200);
}
