//! Issue #13 item 5: plans priced by the provider (`pricing = "provider"` + `markup_percent`).
//!
//! The simulated provider's `GET /v1/models` carries per-model TAO prices, changed at runtime
//! with `set_model_price` / `set_model_price_json`. The gateway's catalogue poller is driven
//! explicitly (`ProviderPrices::poll`), so every price change is read at a known moment.

mod common;

use affine_gateway::config::{Config, PlanConfig, PricingMode};
use affine_gateway::metering::provider::PollReport;
use affine_gateway::upstream::catalogue::PriceProblem;
use chutes_sim::SimConfig;
use common::*;
use std::time::Duration;

const BODY: &str = r#"{"input":"2+2?","max_tokens":64}"#;

/// A change of the simulated provider's price for a model.
type Offer = fn(&chutes_sim::SimHandle, &str);

/// The test account's plan (`enterprise`) priced by the provider with a 20 % markup.
fn provider_priced(cfg: &mut Config) {
    cfg.plans.insert(
        "enterprise".into(),
        PlanConfig {
            pricing: Some(PricingMode::Provider),
            markup_percent: Some(20),
            ..PlanConfig::default()
        },
    );
}

async fn poll(h: &Harness) -> PollReport {
    h.gw.state
        .meter
        .provider_prices()
        .expect("a provider-priced plan polls the catalogue")
        .poll()
        .await
}

fn model(h: &Harness) -> String {
    h.cfg
        .winner
        .model
        .clone()
        .expect("the harness pins the sim's model")
}

/// The usage event of request `id`, once its settlement reached the store.
async fn event_of(h: &Harness, id: &str) -> serde_json::Value {
    eventually(Duration::from_secs(5), "the usage event", || async {
        h.events_of(&this_month())
            .await
            .into_iter()
            .find(|e| e["request_id"] == id)
    })
    .await
}

/// `ceil(tokens × price / 10^6)` per direction, as docs/API.md §9.1 prices a request.
fn cost(usage: &serde_json::Value, input_price: u64, output_price: u64) -> u64 {
    let part = |t: u64, p: u64| (t * p).div_ceil(1_000_000);
    part(usage["input_tokens"].as_u64().unwrap(), input_price)
        + part(usage["output_tokens"].as_u64().unwrap(), output_price)
}

/// One `/v1/reason` call as `token`: checks its cost against the prices expected, and that its
/// usage event records those prices and that cost.
async fn charged_at(h: &Harness, token: &str, input_price: u64, output_price: u64) {
    let res = h
        .http
        .post(h.url("/v1/reason"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    let expected = cost(&body["usage"], input_price, output_price);
    assert!(expected > 0, "a priced request costs something: {body}");
    assert_eq!(body["cost"]["rao"], expected, "{body}");
    let e = event_of(h, body["id"].as_str().unwrap()).await;
    assert_eq!(e["input_rao_per_mtok"], input_price, "{e}");
    assert_eq!(e["output_rao_per_mtok"], output_price, "{e}");
    assert_eq!(e["cost_rao"], expected, "{e}");
}

async fn rejected(h: &Harness, reason: &str) -> f64 {
    metric(
        &h.http,
        &h.gw.url(),
        &format!("agw_provider_price_rejected_total{{reason=\"{reason}\"}}"),
    )
    .await
    .expect("the rejection series exists from the start")
}

#[tokio::test]
async fn a_price_change_at_the_provider_changes_the_next_requests_cost_and_their_events() {
    let h = Harness::start_with(SimConfig::default(), provider_priced).await;
    let m = model(&h);
    // The fixture's price: 0.00045 / 0.0018 TAO per 1M tokens, + 20 %.
    h.sim.set_model_price(&m, "0.00045", "0.0018");
    let report = poll(&h).await;
    assert_eq!(report.accepted, vec![m.clone()], "{report:?}");
    charged_at(&h, &h.token, 540_000, 2_160_000).await;
    assert_eq!(
        metric(
            &h.http,
            &h.gw.url(),
            "agw_provider_price_rao_per_mtok{direction=\"input\"}"
        )
        .await,
        Some(450_000.0)
    );
    let good = metric(
        &h.http,
        &h.gw.url(),
        "agw_provider_price_last_good_timestamp_seconds",
    )
    .await
    .unwrap();
    assert!(good > 1.0e9, "the last good read is a unix time: {good}");

    // The provider raises its price: the next request costs the new price, marked up.
    h.sim.set_model_price(&m, "0.001", "0.004375");
    assert_eq!(poll(&h).await.accepted, vec![m.clone()]);
    charged_at(&h, &h.token, 1_200_000, 5_250_000).await;
    assert_eq!(
        metric(
            &h.http,
            &h.gw.url(),
            "agw_provider_price_rao_per_mtok{direction=\"output\"}"
        )
        .await,
        Some(4_375_000.0)
    );
}

#[tokio::test]
async fn absurd_prices_are_ignored_counted_and_the_last_good_price_stays() {
    let h = Harness::start_with(SimConfig::default(), provider_priced).await;
    let m = model(&h);
    h.sim.set_model_price(&m, "0.00045", "0.0018");
    assert_eq!(poll(&h).await.accepted, vec![m.clone()]);

    let cases: [(&str, Offer, PriceProblem); 6] = [
        (
            "zero",
            |s, m| s.set_model_price(m, "0", "0.0018"),
            PriceProblem::Zero,
        ),
        (
            "negative",
            |s, m| s.set_model_price(m, "0.00045", "-0.0018"),
            PriceProblem::Negative,
        ),
        // 100 times the last good input price.
        (
            "jump",
            |s, m| s.set_model_price(m, "0.045", "0.0018"),
            PriceProblem::Jump,
        ),
        // A hundredth of the last good output price.
        (
            "jump",
            |s, m| s.set_model_price(m, "0.00045", "0.000018"),
            PriceProblem::Jump,
        ),
        (
            "missing",
            |s, m| s.set_model_price_json(m, serde_json::Value::Null),
            PriceProblem::Missing,
        ),
        // Not a JSON number: the sim prints it as a string.
        (
            "unparsable",
            |s, m| s.set_model_price(m, "cheap", "0.0018"),
            PriceProblem::Unparsable,
        ),
    ];
    for (reason, offer, problem) in cases {
        let before = rejected(&h, reason).await;
        offer(&h.sim, &m);
        let report = poll(&h).await;
        assert_eq!(
            report.rejected,
            [(m.clone(), problem)],
            "{reason}: {report:?}"
        );
        assert!(report.accepted.is_empty(), "{reason}: {report:?}");
        assert_eq!(rejected(&h, reason).await, before + 1.0, "{reason}");
        // Still the last good price.
        charged_at(&h, &h.token, 540_000, 2_160_000).await;
    }
    // A sane price again is taken (within 100x of the last good one).
    h.sim.set_model_price(&m, "0.0009", "0.0036");
    assert_eq!(poll(&h).await.accepted, vec![m.clone()]);
    charged_at(&h, &h.token, 1_080_000, 4_320_000).await;
}

#[tokio::test]
async fn fixed_price_plans_ignore_the_provider() {
    let h = Harness::start_with(SimConfig::default(), provider_priced).await;
    let m = model(&h);
    let res = put_account(
        &h.http,
        &h.gw.url(),
        "fixed-co",
        r#"{"billing":"postpaid","plan":"subnet","credit_limit_rao":1000000000000}"#,
    )
    .await;
    assert!(res.status().is_success(), "{}", res.status());
    let fixed = token("fixed-co", &[affine_gateway::auth::jwt::Scope::Reason], 600);
    h.sim.set_model_price(&m, "0.00045", "0.0018");
    poll(&h).await;
    // `subnet` keeps its built-in 500 000 / 2 000 000 rao, whatever the provider asks.
    charged_at(&h, &fixed, 500_000, 2_000_000).await;
    h.sim.set_model_price(&m, "0.001", "0.004375");
    poll(&h).await;
    charged_at(&h, &fixed, 500_000, 2_000_000).await;
    charged_at(&h, &h.token, 1_200_000, 5_250_000).await;
}

#[tokio::test]
async fn without_a_good_price_a_provider_priced_request_is_refused_never_free() {
    let h = Harness::start_prepared(
        SimConfig::default(),
        |sim| sim.set_model_price_json(&SimConfig::default().model, serde_json::Value::Null),
        provider_priced,
    )
    .await;
    let m = model(&h);
    let report = poll(&h).await;
    assert_eq!(report.rejected, [(m.clone(), PriceProblem::Missing)]);
    let res = h.reason(BODY).await;
    assert!(res.headers().contains_key("retry-after"));
    expect_problem(res, 503, "price_unavailable").await;
    // Nothing was served, so the provider never saw a completion.
    assert_eq!(
        h.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .count(),
        0
    );
    // The OpenAI surface refuses the same way, in its own shape.
    let res = h
        .http
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(&h.token)
        .header("content-type", "application/json")
        .body(r#"{"model":"affine-winner","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "price_unavailable", "{body}");
    // `GET /v1/models` shows no price yet.
    let list = models(&h, &h.token).await;
    assert!(list["data"][1].get("price").is_none(), "{list}");

    h.sim.set_model_price(&m, "0.00045", "0.0018");
    assert_eq!(poll(&h).await.accepted, vec![m.clone()]);
    charged_at(&h, &h.token, 540_000, 2_160_000).await;
}

async fn models(h: &Harness, token: &str) -> serde_json::Value {
    let res = h
        .http
        .get(h.url("/v1/models"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_model_list_shows_the_callers_price_in_rao_and_exact_tao() {
    let h = Harness::start_with(SimConfig::default(), provider_priced).await;
    let m = model(&h);
    h.sim.set_model_price(&m, "0.00045", "0.004375");
    poll(&h).await;
    let res = h
        .http
        .get(h.url("/v1/models"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    // Exact decimals, in Chutes' shape: 0.00045 × 1.2 and 0.004375 × 1.2.
    assert!(
        text.contains(r#""price":{"input":{"rao":540000,"tao":0.00054},"output":{"rao":5250000,"tao":0.00525}}"#),
        "{text}"
    );
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["data"][0]["id"], "affine-winner");
    assert_eq!(list["data"][1]["id"], m.as_str());
    assert_eq!(list["data"][0]["price"], list["data"][1]["price"]);
    // The catalogue also gave the context window (the simulator lists Chutes' `max_model_len`).
    for entry in list["data"].as_array().unwrap() {
        assert_eq!(entry["context_length"], 65_536, "{entry}");
    }

    // A caller on a fixed plan sees that plan's price.
    put_account(
        &h.http,
        &h.gw.url(),
        "fixed-co",
        r#"{"billing":"postpaid","plan":"subnet"}"#,
    )
    .await;
    let fixed = token("fixed-co", &[affine_gateway::auth::jwt::Scope::Reason], 600);
    let list = models(&h, &fixed).await;
    assert_eq!(
        list["data"][1]["price"],
        serde_json::json!({"input": {"rao": 500_000, "tao": 0.0005}, "output": {"rao": 2_000_000, "tao": 0.002}})
    );
}

#[tokio::test]
async fn the_poller_reads_the_catalogue_on_its_own_at_start() {
    let h = Harness::start_with(SimConfig::default(), provider_priced).await;
    // No explicit poll: the background poller's first read makes the price known.
    eventually(
        Duration::from_secs(5),
        "a price from the background poller",
        || async {
            let list = models(&h, &h.token).await;
            list["data"][1].get("price").cloned()
        },
    )
    .await;
    assert!(h.sim.models_requests() >= 1);
}

#[test]
fn provider_pricing_mistakes_are_configuration_errors() {
    let check = |toml: &str| {
        Config::from_toml_str(toml)
            .map_err(|e| e.to_string())
            .and_then(|c| affine_gateway::server::check(&c).map_err(|e| e.to_string()))
    };
    check("[plans.subnet]\npricing = \"provider\"\nmarkup_percent = 20\n").unwrap();
    // Fixed prices on a provider-priced plan would be ignored: refused, naming the field.
    let err = check(
        "[plans.subnet]\npricing = \"provider\"\nmarkup_percent = 20\ninput_rao_per_mtok = 5\n",
    )
    .unwrap_err();
    assert!(err.contains("plans.subnet.input_rao_per_mtok"), "{err}");
    let err = check("[plans.subnet]\npricing = \"provider\"\n").unwrap_err();
    assert!(err.contains("plans.subnet.markup_percent"), "{err}");
    let err = check("[plans.subnet]\npricing = \"provider\"\nmarkup_percent = 1001\n").unwrap_err();
    assert!(err.contains("plans.subnet.markup_percent"), "{err}");
    let err = check("[plans.subnet]\nmarkup_percent = 20\n").unwrap_err();
    assert!(err.contains("plans.subnet.markup_percent"), "{err}");
    assert!(check("[plans.subnet]\npricing = \"auction\"\n").is_err());
    let err = check("[upstream]\ncatalogue_secs = 0\n").unwrap_err();
    assert!(err.contains("upstream.catalogue_secs"), "{err}");
}

#[tokio::test]
async fn without_a_provider_priced_plan_nothing_is_polled() {
    let h = Harness::start(SimConfig::default()).await;
    assert!(h.gw.state.meter.provider_prices().is_none());
    // A request on a fixed plan is served; no price source is read.
    assert_eq!(h.reason(BODY).await.status(), 200);
    assert_eq!(
        metric(&h.http, &h.gw.url(), "agw_provider_price_sources").await,
        Some(0.0)
    );
}
