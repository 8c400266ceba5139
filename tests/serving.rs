//! The serving map against simulated upstreams: rules in order with globs, a self-hosted
//! rule's own model name and key (also from an environment variable), per-rule timeouts,
//! `/v1/winner` showing the rule without credentials, no rules meaning today's behaviour,
//! a failing champion served by a past champion, and the configuration errors.

mod common;

use std::time::{Duration, Instant};

use affine_gateway::config::{Config, FallbackConfig, Secret, ServingRuleConfig};
use chutes_sim::{DEFAULT_MODEL, Fault, FaultKind, Sim, SimConfig, SimHandle, Trigger};
use common::*;
use serde_json::Value;

const SELF_KEY: &str = "self-hosted-key-0123456789";
const SERVED_NAME: &str = "served-reasoner";
const RUNNER: &str = "runner/Affine-Reasoner-14B";
const RUNNER_REV: &str = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b";
const RUNNER_HOTKEY: &str = "5HGjWAeFDfFCWPsjFQdVV2Msvz2XtMktvgocEZcCj68kUMaw";

/// A second simulator: a "self-hosted" server of `model` that requires `key`.
async fn self_hosted(model: &str, key: &str) -> SimHandle {
    Sim::start(SimConfig {
        model: model.into(),
        require_api_key: Some(key.into()),
        ..SimConfig::default()
    })
    .await
    .expect("self-hosted simulator")
}

/// Chat completions a simulator received, the readiness gate's one-token probes excluded.
fn calls(sim: &SimHandle) -> Vec<chutes_sim::RecordedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions") && r.body["max_tokens"] != 1)
        .collect()
}

fn rule(pattern: &str, url: &str) -> ServingRuleConfig {
    ServingRuleConfig::new(pattern, url)
}

async fn winner(h: &Harness) -> Value {
    let res = h.http.get(h.url("/v1/winner")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn ok_answer(h: &Harness) -> Value {
    let res = h.reason(r#"{"input":"2+2?"}"#).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_first_matching_rule_serves_with_its_model_name_and_key() {
    let never = self_hosted(DEFAULT_MODEL, "never-key").await;
    let own = self_hosted(SERVED_NAME, SELF_KEY).await;
    let (never_url, own_url) = (never.base_url(), own.base_url());
    let h = Harness::start_with(SimConfig::default(), |c| {
        let mut served = rule("affine-champ/Affine-*", &own_url);
        served.api_key = Some(Secret::new(SELF_KEY.into()));
        served.model_name = Some(SERVED_NAME.into());
        c.serving = vec![
            rule("other/*", &never_url),
            served,
            // Matches too, but comes later.
            rule("*", &never_url),
        ];
    })
    .await;

    let v = ok_answer(&h).await;
    // Callers still see the winner's id; only the upstream hears the rule's model name.
    assert_eq!(v["model"]["id"], DEFAULT_MODEL);
    assert_eq!(v["model"]["source"], "static");
    let got = calls(&own);
    assert_eq!(got.len(), 1, "the self-hosted rule got the request");
    assert_eq!(got[0].body["model"], SERVED_NAME);
    assert_eq!(
        got[0].authorization.as_deref(),
        Some(format!("Bearer {SELF_KEY}").as_str())
    );
    assert!(
        calls(&never).is_empty(),
        "earlier and later rules got nothing"
    );
    assert!(calls(&h.sim).is_empty(), "the default upstream got nothing");

    let w = winner(&h).await;
    assert_eq!(w["upstream"], own_url.as_str());
    assert_eq!(w["serving"]["rule"], 1);
    assert_eq!(w["serving"]["match"], "affine-champ/Affine-*");
    assert_eq!(w["serving"]["url"], own_url.as_str());
    assert_eq!(w["serving"]["model_name"], SERVED_NAME);
}

#[tokio::test]
async fn without_rules_everything_is_served_as_before() {
    let h = Harness::start(SimConfig::default()).await;
    let v = ok_answer(&h).await;
    assert_eq!(v["model"]["id"], DEFAULT_MODEL);
    let got = calls(&h.sim);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["model"], DEFAULT_MODEL);
    assert_eq!(
        got[0].authorization.as_deref(),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    let w = winner(&h).await;
    assert_eq!(w["upstream"], h.sim.base_url().as_str());
    assert_eq!(w["serving"]["rule"], 0);
    assert_eq!(w["serving"]["match"], "*");
    assert_eq!(w["serving"]["url"], h.sim.base_url().as_str());
    assert_eq!(w["serving"]["model_name"], DEFAULT_MODEL);
}

#[tokio::test]
async fn a_key_from_an_environment_variable_and_a_slug_model_name() {
    let slug = "affine-champ-affine-reasoner-32b";
    let own = self_hosted(slug, "env-held-key-987654").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        format!(
            "[[serving]]\nmatch = \"*\"\nurl = \"{}\"\napi_key_env = \"AGW_SERVING_TEST_KEY\"\nmodel_name = \"{{slug}}\"\n",
            own.base_url()
        ),
    )
    .unwrap();
    let env = |k: &str| (k == "AGW_SERVING_TEST_KEY").then(|| "env-held-key-987654".to_string());
    let loaded = Config::load(Some(&path), env).expect("the file loads");
    // check-config names the variable, never its value.
    let shown = loaded.to_redacted_toml();
    assert!(shown.contains("AGW_SERVING_TEST_KEY"), "{shown}");
    assert!(!shown.contains("env-held-key-987654"), "{shown}");

    let h = Harness::start_with(SimConfig::default(), |c| c.serving = loaded.serving).await;
    ok_answer(&h).await;
    let got = calls(&own);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["model"], slug);
    assert_eq!(
        got[0].authorization.as_deref(),
        Some("Bearer env-held-key-987654")
    );
    assert_eq!(winner(&h).await["serving"]["model_name"], slug);
}

#[tokio::test]
async fn a_rules_own_first_token_timeout_applies_and_fails_over() {
    let slow = Sim::start(SimConfig {
        fault: Fault::always(FaultKind::Stall),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let slow_url = slow.base_url();
    let h = Harness::start_with(SimConfig::default(), |c| {
        let mut r = rule("*", &slow_url);
        r.first_token_timeout_secs = Some(1);
        r.total_timeout_secs = Some(1);
        c.serving = vec![r];
        // The [upstream] deadlines are long: only the rule's can end the stalled calls soon.
        c.upstream.first_token_timeout_secs = 300;
        c.upstream.total_timeout_secs = 300;
        c.upstream.fallbacks = vec![FallbackConfig {
            api_key: c.upstream.api_key.clone(),
            ..FallbackConfig::new("router", &c.upstream.url)
        }];
    })
    .await;

    let started = Instant::now();
    let v = ok_answer(&h).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the rule's 1 s deadline ended the stalled call, took {:?}",
        started.elapsed()
    );
    assert_eq!(v["model"]["source"], "fallback");
    assert!(
        !calls(&slow).is_empty(),
        "the rule's upstream was tried first"
    );
    assert_eq!(calls(&h.sim).len(), 1, "the fallback answered");

    // Streams too: the first-token deadline is the rule's.
    let started = Instant::now();
    let res = h.reason(r#"{"input":"2+2?","stream":true}"#).await;
    assert_eq!(res.status(), 200);
    let events = read_events(res).await;
    assert_eq!(events.last().unwrap().event, "done");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn the_winner_view_shows_no_credentials() {
    let h = Harness::start_with(SimConfig::default(), |c| {
        let mut r = rule("*", "https://ops:hunter2-pass@gpu.example.com/{slug}/v1");
        r.api_key = Some(Secret::new("sk-rule-secret-000111".into()));
        c.serving = vec![r];
    })
    .await;
    let res = h.http.get(h.url("/v1/winner")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    for secret in ["hunter2-pass", "ops:", "sk-rule-secret-000111", TEST_KEY] {
        assert!(!text.contains(secret), "{secret} shown in {text}");
    }
    let w: Value = serde_json::from_str(&text).unwrap();
    let url = "https://gpu.example.com/affine-champ-affine-reasoner-32b/v1";
    assert_eq!(w["serving"]["url"], url);
    assert_eq!(w["upstream"], url);
    assert_eq!(w["serving"]["rule"], 0);
}

#[tokio::test]
async fn a_failing_champion_is_served_by_a_past_champion() {
    // The fixture's champion is served by the default rule; the fixture's past champion
    // uid 7 by its own rule. Once the champion serves, its upstream starts failing.
    let runner = self_hosted(RUNNER, SELF_KEY).await;
    let runner_url = runner.base_url();
    let h = Harness::start_with(SimConfig::default(), |c| {
        c.winner.model = None;
        c.winner.poll_secs = 1;
        // The readiness gate passes the champion after one probe.
        c.winner.probe_secs = 1;
        c.winner.ready_probes = 1;
        let mut r = rule("runner/*", &runner_url);
        r.api_key = Some(Secret::new(SELF_KEY.into()));
        c.serving = vec![r];
    })
    .await;
    eventually(Duration::from_secs(10), "the champion serving", || async {
        let res = h.http.get(h.url("/v1/winner")).send().await.ok()?;
        let w: Value = res.json().await.ok()?;
        (w["model"]["id"] == DEFAULT_MODEL).then_some(())
    })
    .await;
    h.sim.set_config(SimConfig {
        fault: Fault {
            kind: Some(FaultKind::Status(500)),
            trigger: Trigger::Always,
        },
        ..SimConfig::default()
    });

    let v = ok_answer(&h).await;
    assert_eq!(v["model"]["id"], RUNNER);
    assert_eq!(v["model"]["revision"], RUNNER_REV);
    assert_eq!(v["model"]["uid"], 7);
    assert_eq!(v["model"]["miner_hotkey"], RUNNER_HOTKEY);
    assert_eq!(v["model"]["source"], "fallback");
    assert!(!calls(&h.sim).is_empty(), "the champion was tried first");
    let got = calls(&runner);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["model"], RUNNER);
    let served = metric(
        &h.http,
        &h.gw.url(),
        "agw_upstream_fallbacks_total{upstream=\"past:1\"}",
    )
    .await;
    assert_eq!(served, Some(1.0));
}

fn load_err(toml: &str, env: impl Fn(&str) -> Option<String>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, toml).unwrap();
    Config::load(Some(&path), env)
        .expect_err("the configuration is refused")
        .to_string()
}

#[test]
fn configuration_errors_name_the_rule() {
    let none = |_: &str| None;
    let ok_rule = "[[serving]]\nmatch = \"*\"\nurl = \"https://a.example/v1\"\n";
    let cases: [(String, &str, &str); 6] = [
        (
            format!("{ok_rule}[[serving]]\nmatch = \"x\"\nurl = \"https://{{name}}.example/v1\"\n"),
            "serving[1].url",
            "unknown placeholder `{name}`",
        ),
        (
            "[[serving]]\nmatch = \"a/[b\"\nurl = \"https://a.example/v1\"\n".into(),
            "serving[0].match",
            "not a valid glob",
        ),
        (
            "[[serving]]\nmatch = \"*\"\nurl = \"ftp://{slug}.example\"\n".into(),
            "serving[0].url",
            "http",
        ),
        (
            "[[serving]]\nmatch = \"*\"\nurl = \"https://a.example/v1\"\napi_key = \"k\"\napi_key_env = \"K\"\n"
                .into(),
            "serving[0].api_key",
            "both set",
        ),
        (
            "[[serving]]\nmatch = \"*\"\nurl = \"https://a.example/v1\"\napi_key_env = \"AGW_UNSET_KEY\"\n"
                .into(),
            "serving[0].api_key_env",
            "AGW_UNSET_KEY, which is not set",
        ),
        (
            "[[serving]]\nmatch = \"*\"\nurl = \"https://a.example/v1\"\nmodel_name = \"{revison}\"\n"
                .into(),
            "serving[0].model_name",
            "unknown placeholder",
        ),
    ];
    for (toml, field, why) in cases {
        let e = load_err(&toml, none);
        assert!(e.contains(field), "{e} should name {field}");
        assert!(e.contains(why), "{e} should say {why}");
    }
    // A key in a file is never quoted back, even when refused.
    let e = load_err(
        "[[serving]]\nmatch = \"*\"\nurl = \"https://a.example/v1\"\napi_key = \"sk bad key\"\n",
        none,
    );
    assert!(e.contains("serving[0].api_key"), "{e}");
    assert!(!e.contains("sk bad key"), "{e}");
}
