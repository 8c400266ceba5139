//! The model catalogue and the deploy/retire webhooks: what a gateway following Affine's
//! champion sees when a new champion has to be deployed first.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use chutes_sim::webhook::signature;
use chutes_sim::{
    Catalogue, DEFAULT_MODEL, ServedModel, Sim, SimConfig, SimHandle, SimState, WebhookKind,
    fixtures, router,
};
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &str = "webhook-secret-for-tests";
const NEW: &str = "challenger/Affine-Reasoner-70B";
const DEEPSEEK: &str = "deepseek-ai/DeepSeek-R1-0528";

async fn start(config: SimConfig) -> SimHandle {
    Sim::start(config).await.expect("start simulator")
}

fn signed(secret: &str) -> SimConfig {
    SimConfig {
        webhook_secret: Some(secret.into()),
        deploy_delay: Duration::ZERO,
        ..SimConfig::default()
    }
}

fn deploy_body(model: &str, revision: &str) -> String {
    json!({"model": model, "revision": revision, "uid": 88, "since_block": 6_905_000,
           "hotkey": "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y", "extra": [1, 2]})
    .to_string()
}

/// A webhook call over HTTP, signed with `secret` unless `None`.
async fn webhook(sim: &SimHandle, path: &str, body: &str, secret: Option<&str>) -> Reply {
    let sig = secret.map(|s| signature(s.as_bytes(), body.as_bytes()));
    let headers: Vec<(&str, &str)> = sig
        .iter()
        .map(|s| ("X-Affine-Signature", s.as_str()))
        .collect();
    request(sim.addr(), "POST", path, &headers, Some(body)).await
}

async fn models(sim: &SimHandle) -> Value {
    request(sim.addr(), "GET", "/v1/models", &[], None)
        .await
        .json()
}

fn listed(models: &Value) -> Vec<String> {
    models["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

fn served_ids(sim: &SimState) -> Vec<String> {
    sim.served_models().into_iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn the_catalogue_has_the_chutes_shape_and_per_model_prices() {
    let sim = start(SimConfig::default()).await;
    let fixture: Value = serde_json::from_str(fixtures::MODELS).expect("fixture");
    assert_eq!(
        models(&sim).await,
        fixture,
        "by default, the fixture itself"
    );

    sim.deploy_model(NEW);
    sim.set_model_price(NEW, "0.0012345678901234567890", "0.004");
    let raw = request(sim.addr(), "GET", "/v1/models", &[], None)
        .await
        .text();
    assert!(
        raw.contains(r#""tao":0.0012345678901234567890}"#),
        "the price is printed as given: {raw}"
    );
    let v: Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(listed(&v), [DEFAULT_MODEL, DEEPSEEK, NEW]);
    let new = &v["data"][2];
    assert_eq!(keys(new), keys(&fixture["data"][0]));
    assert_eq!(new["id"], NEW);
    assert_eq!(new["root"], NEW);
    assert_eq!(new["object"], "model");
    assert_eq!(new["price"]["output"]["tao"], 0.004);
    assert_eq!(
        new["price"]["input"]["usd"],
        fixture["data"][0]["price"]["input"]["usd"]
    );
    assert_eq!(
        v["data"][0], fixture["data"][0],
        "other models keep their prices"
    );

    // Absurd prices are served as they are: zero, negative, not a number, no price at all.
    sim.set_model_price(DEFAULT_MODEL, "0", "-1");
    sim.set_model_price(DEEPSEEK, "cheap", "1e3");
    sim.set_model_price_json(NEW, Value::Null);
    let v = models(&sim).await;
    assert_eq!(v["data"][0]["price"]["input"]["tao"], 0);
    assert_eq!(v["data"][0]["price"]["output"]["tao"], -1);
    assert_eq!(v["data"][1]["price"]["input"]["tao"], "cheap");
    assert_eq!(v["data"][1]["price"]["output"]["tao"], 1000.0);
    assert!(v["data"][2].get("price").is_none(), "{v}");
    assert_eq!(v["data"][2]["pricing"], fixture["data"][0]["pricing"]);
    sim.set_model_price_json(NEW, json!({"input": "free"}));
    assert_eq!(
        models(&sim).await["data"][2]["price"],
        json!({"input": "free"})
    );
    assert_eq!(sim.models_requests(), 4);
}

#[tokio::test]
async fn a_model_not_served_gets_chutes_404_until_it_is_deployed() {
    let sim = start(SimConfig::default()).await;
    let not_found = json!({"detail": format!("model not found: {NEW}")});
    let reply = chat(sim.addr(), &chat_body(NEW, false)).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json(), not_found);
    let on_chute = request(
        sim.addr(),
        "POST",
        "/c/challenger-affine-reasoner-70b/v1/chat/completions",
        &[],
        Some(&chat_body(NEW, true)),
    )
    .await;
    assert_eq!(on_chute.status, 404);
    assert_eq!(on_chute.json(), not_found);
    // The fixture's other model is served, and answers under its own name.
    let reply = chat(sim.addr(), &chat_body(DEEPSEEK, false)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["model"], DEEPSEEK);

    sim.deploy_model(NEW);
    let reply = chat(sim.addr(), &chat_body(NEW, true)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains(&format!(r#""model":"{NEW}""#)));

    // Retired: gone from the list and refused again, the primary model included.
    assert!(sim.undeploy_model(NEW));
    assert!(sim.undeploy_model(DEFAULT_MODEL));
    assert!(!sim.undeploy_model(DEFAULT_MODEL), "already gone");
    assert_eq!(listed(&models(&sim).await), [DEEPSEEK]);
    for model in [NEW, DEFAULT_MODEL] {
        assert_eq!(chat(sim.addr(), &chat_body(model, false)).await.status, 404);
    }

    // A config naming another primary model serves it at once, listed first.
    sim.set_config(SimConfig {
        model: NEW.into(),
        ..SimConfig::default()
    });
    assert_eq!(served_ids(&sim), [NEW, DEEPSEEK]);
    // The open catalogue answers any model but lists only the served ones.
    sim.set_config(SimConfig {
        model: NEW.into(),
        catalogue: Catalogue::Open,
        ..SimConfig::default()
    });
    assert_eq!(
        chat(sim.addr(), &chat_body("org/Whatever", false))
            .await
            .status,
        200
    );
    assert_eq!(listed(&models(&sim).await), [NEW, DEEPSEEK]);
}

#[tokio::test]
async fn a_signed_deploy_is_served_after_the_delay() {
    let delay = Duration::from_secs(1);
    let sim = start(SimConfig {
        deploy_delay: delay,
        ..signed(SECRET)
    })
    .await;
    let body = deploy_body(NEW, "0f0e0d");
    let sent = tokio::time::Instant::now();
    let reply = webhook(&sim, "/_sim/deploy", &body, Some(SECRET)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"model": NEW, "revision": "0f0e0d", "state": "deploying"})
    );
    let pending = vec![ServedModel {
        id: NEW.into(),
        revision: Some("0f0e0d".into()),
    }];
    // Checked before the delay can have passed: the answer above came back within it.
    let early = (
        sim.pending_deploys(),
        listed(&models(&sim).await),
        chat(sim.addr(), &chat_body(NEW, false)).await.status,
    );
    if sent.elapsed() < delay {
        assert_eq!(
            early,
            (pending, vec![DEFAULT_MODEL.into(), DEEPSEEK.into()], 404)
        );
    }

    eventually(|| served_ids(&sim), |ids| ids.iter().any(|m| m == NEW)).await;
    assert!(sent.elapsed() >= delay, "served before its delay");
    assert!(sim.pending_deploys().is_empty());
    assert_eq!(listed(&models(&sim).await), [DEFAULT_MODEL, DEEPSEEK, NEW]);
    assert_eq!(chat(sim.addr(), &chat_body(NEW, false)).await.status, 200);
    let served = sim.served_models();
    assert_eq!(served[2].revision.as_deref(), Some("0f0e0d"));

    let calls = sim.webhooks();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].kind, WebhookKind::Deploy);
    assert_eq!(calls[0].path, "/_sim/deploy");
    assert_eq!(calls[0].body, serde_json::from_str::<Value>(&body).unwrap());
    assert_eq!(
        calls[0].signature.as_deref(),
        Some(signature(SECRET.as_bytes(), body.as_bytes()).as_str())
    );
    assert!(calls[0].verified);
    assert_eq!(calls[0].status, 200);

    // Retire takes it out at once.
    let reply = webhook(&sim, "/_sim/retire", &body, Some(SECRET)).await;
    assert_eq!(reply.json()["state"], "retired");
    assert_eq!(chat(sim.addr(), &chat_body(NEW, false)).await.status, 404);
    let reply = webhook(&sim, "/_sim/retire", &body, Some(SECRET)).await;
    assert_eq!(
        (reply.status, reply.json()["state"].clone()),
        (200, json!("absent"))
    );
    let over_http = request(sim.addr(), "GET", "/_sim/webhooks", &[], None)
        .await
        .json();
    assert_eq!(over_http.as_array().map(Vec::len), Some(3));
    assert_eq!(over_http[1]["kind"], "retire");
    assert_eq!(over_http[1]["verified"], true);
}

#[tokio::test]
async fn a_missing_or_bad_signature_is_401_and_deploys_nothing() {
    let sim = start(signed(SECRET)).await;
    let body = deploy_body(NEW, "abc");
    let good = signature(SECRET.as_bytes(), body.as_bytes());
    let upper = format!("sha256={}", good["sha256=".len()..].to_uppercase());
    let bare = good["sha256=".len()..].to_owned();
    let other_body = signature(SECRET.as_bytes(), b"{}");
    for header in [
        None,
        Some("sha256=00"),
        Some(upper.as_str()),
        Some(bare.as_str()),
        Some(other_body.as_str()),
    ] {
        let headers: Vec<(&str, &str)> =
            header.iter().map(|h| ("X-Affine-Signature", *h)).collect();
        let reply = request(sim.addr(), "POST", "/_sim/deploy", &headers, Some(&body)).await;
        assert_eq!(reply.status, 401, "{header:?}");
    }
    let wrong_secret = webhook(&sim, "/_sim/deploy", &body, Some("not-the-secret")).await;
    assert_eq!(wrong_secret.status, 401);
    let retire = webhook(&sim, "/_sim/retire", &deploy_body(DEFAULT_MODEL, "x"), None).await;
    assert_eq!(retire.status, 401);
    assert_eq!(served_ids(&sim), [DEFAULT_MODEL, DEEPSEEK]);
    assert!(sim.pending_deploys().is_empty());
    let calls = sim.webhooks();
    assert_eq!(calls.len(), 7);
    assert!(
        calls.iter().all(|c| !c.verified && c.status == 401),
        "{calls:?}"
    );

    // Signed, but not a deploy body: 400.
    for bad in ["{not json", r#"{"revision":"abc"}"#, r#"{"model":7}"#] {
        let reply = webhook(&sim, "/_sim/deploy", bad, Some(SECRET)).await;
        assert_eq!(reply.status, 400, "{bad}");
    }
    assert_eq!(sim.webhooks()[7].body, Value::String("{not json".into()));

    // Without a secret, unsigned calls are accepted (and recorded as unverified).
    let open = start(SimConfig {
        deploy_delay: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let reply = webhook(&open, "/_sim/deploy", &body, None).await;
    assert_eq!(reply.json()["state"], "served");
    assert!(!open.webhooks()[0].verified);
    assert_eq!(served_ids(&open), [DEFAULT_MODEL, DEEPSEEK, NEW]);
}

/// One signed webhook call through the router itself, so paused time drives the delay.
async fn oneshot(state: &Arc<SimState>, path: &str, body: &str) -> (u16, Value) {
    let request = Request::post(path)
        .header(
            "x-affine-signature",
            signature(SECRET.as_bytes(), body.as_bytes()),
        )
        .body(Body::from(body.to_owned()))
        .expect("request");
    let response = router(Arc::clone(state))
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).expect("json"))
}

#[tokio::test(start_paused = true)]
async fn a_second_deploy_of_the_same_revision_changes_nothing() {
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let state = SimState::new(
        SimConfig {
            deploy_delay: Duration::from_secs(10),
            ..signed(SECRET)
        },
        shutdown,
    );
    let body = deploy_body(NEW, "r1");
    assert_eq!(
        oneshot(&state, "/_sim/deploy", &body).await.1["state"],
        "deploying"
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(
        oneshot(&state, "/_sim/deploy", &body).await.1["state"],
        "deploying"
    );
    assert_eq!(state.pending_deploys().len(), 1);
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(
        !served_ids(&state).contains(&NEW.to_owned()),
        "not before its delay"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(
        served_ids(&state).contains(&NEW.to_owned()),
        "served 10 s after the first call: the second did not restart the delay"
    );
    let before = state.served_models();
    assert_eq!(
        oneshot(&state, "/_sim/deploy", &body).await,
        (
            200,
            json!({"model": NEW, "revision": "r1", "state": "served"})
        )
    );
    assert_eq!(state.served_models(), before);
    assert!(state.pending_deploys().is_empty());

    // Another revision deploys anew; the served one keeps answering meanwhile.
    let r2 = deploy_body(NEW, "r2");
    assert_eq!(
        oneshot(&state, "/_sim/deploy", &r2).await.1["state"],
        "deploying"
    );
    assert_eq!(state.served_models(), before);
    tokio::time::advance(Duration::from_secs(10)).await;
    let now = state.served_models();
    assert_eq!(now.len(), before.len());
    assert_eq!(now.last().and_then(|m| m.revision.as_deref()), Some("r2"));
    let at: Vec<u64> = state.webhooks().iter().map(|c| c.at_ms).collect();
    assert_eq!(at, [0, 6_000, 10_000, 10_000]);
}

#[tokio::test]
async fn fail_webhooks_answers_500_to_the_next_calls() {
    let sim = start(signed(SECRET)).await;
    sim.fail_webhooks(2);
    let body = deploy_body(NEW, "abc");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            webhook(&sim, "/_sim/deploy", &body, Some(SECRET))
                .await
                .status,
        );
        if statuses.len() < 3 {
            assert!(
                !served_ids(&sim).contains(&NEW.to_owned()),
                "a failed call deploys nothing"
            );
        }
    }
    assert_eq!(statuses, [500, 500, 200]);
    assert!(served_ids(&sim).contains(&NEW.to_owned()));
    let calls = sim.webhooks();
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.status, c.verified))
            .collect::<Vec<_>>(),
        [(500, true), (500, true), (200, true)]
    );
    assert!(calls.windows(2).all(|w| w[0].unix_ms <= w[1].unix_ms));
    // A failing call is 500 even when unsigned; the count is replaced, not added.
    sim.fail_webhooks(5);
    sim.fail_webhooks(1);
    assert_eq!(webhook(&sim, "/_sim/retire", &body, None).await.status, 500);
    assert_eq!(webhook(&sim, "/_sim/retire", &body, None).await.status, 401);
}
