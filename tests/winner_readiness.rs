//! The readiness gate against the simulated Affine API and Chutes: a new champion that no
//! upstream serves yet stays pending while traffic stays on the current one (no failed
//! request), its deploy webhook is signed, retried and called once, and two replicas switch
//! to it together once the simulator has deployed it; a champion that never comes up stays
//! pending (and raises the pending metrics the alert reads); at start, a past champion
//! serves until the first champion is ready, and nothing serving means 503 `no_winner`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use affine_gateway::config::{Config, Secret};
use chutes_sim::{SimConfig, WebhookKind};
use common::*;
use serde_json::Value;

const CHAMP: &str = "affine-champ/Affine-Reasoner-32B";
const RUNNER: &str = "runner/Affine-Reasoner-14B";
const RUNNER_REV: &str = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b";
const SECRET: &str = "test-webhook-secret";

/// The simulator with a signed deploy webhook that serves a model `delay` after the call.
fn sim_deploying_after(delay: Duration) -> SimConfig {
    SimConfig {
        webhook_secret: Some(SECRET.into()),
        deploy_delay: delay,
        ..SimConfig::default()
    }
}

/// Following the simulated Affine API, polled and probed every second, with the per-address
/// guard out of the way (the tests poll /v1/winner and send steady streams from one address).
fn following(c: &mut Config) {
    c.winner.model = None;
    c.winner.poll_secs = 1;
    c.winner.probe_secs = 1;
    c.quota.ip_per_second = 10_000;
    c.quota.ip_burst = 10_000;
}

/// Waits until the replica at `base` serves `model`.
async fn until_serving(h: &Harness, base: &str, model: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{model} serving"),
        || async { (serving_at(h, base).await.as_deref() == Some(model)).then_some(()) },
    )
    .await;
}

async fn winner_at(h: &Harness, base: &str) -> Option<Value> {
    let res = h
        .http
        .get(format!("{base}/v1/winner"))
        .send()
        .await
        .unwrap();
    (res.status() == 200).then_some(())?;
    Some(res.json().await.unwrap())
}

async fn serving_at(h: &Harness, base: &str) -> Option<String> {
    Some(
        winner_at(h, base).await?["model"]["id"]
            .as_str()?
            .to_string(),
    )
}

/// Following Affine (polled every second), probing every second, ready after two probes,
/// on Redis (so replicas share the decision), with the simulator's signed deploy webhook.
async fn start_gated(sim_cfg: SimConfig) -> Harness {
    Harness::start_with(sim_cfg, |c| {
        // The simulator's own routes sit beside its `/v1`.
        let base = c.upstream.url.trim_end_matches("/v1").to_string();
        use_redis(c);
        following(c);
        c.winner.ready_probes = 2;
        c.winner.deploy_webhook = Some(format!("{base}/_sim/deploy"));
        c.winner.webhook_secret = Some(Secret::new(SECRET.into()));
    })
    .await
}

/// A steady stream of whole `/v1/reason` calls (ten a second, well inside the test plan's
/// rate), alternating between `bases`, counting the answered and the failed ones, until
/// `stop`; returns the model (or status) of each call.
fn steady_calls(
    h: &Harness,
    bases: Vec<String>,
    stop: Arc<AtomicBool>,
) -> (
    Arc<AtomicU64>,
    Arc<AtomicU64>,
    tokio::task::JoinHandle<Vec<String>>,
) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (http, token) = (h.http.clone(), h.token.clone());
    let (ok2, failed2) = (ok.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let mut models = Vec::new();
        let mut i = 0usize;
        let mut pace = tokio::time::interval(Duration::from_millis(100));
        while !stop.load(Ordering::SeqCst) {
            pace.tick().await;
            let base = &bases[i % bases.len()];
            i += 1;
            let res = http
                .post(format!("{base}/v1/reason"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(r#"{"input":"2+2?","max_tokens":8}"#)
                .send()
                .await
                .unwrap();
            if res.status() == 200 {
                ok2.fetch_add(1, Ordering::SeqCst);
                let v: Value = res.json().await.unwrap();
                models.push(v["model"]["id"].as_str().unwrap_or("").to_string());
            } else {
                failed2.fetch_add(1, Ordering::SeqCst);
                models.push(format!("status {}", res.status()));
            }
        }
        models
    });
    (ok, failed, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_champion_serves_once_deployed_on_both_replicas_together_with_no_failed_request() {
    let h = start_gated(sim_deploying_after(Duration::from_secs(2))).await;
    let b = h.replica().await;
    let (a_url, b_url) = (h.gw.url(), b.url());
    for base in [&a_url, &b_url] {
        until_serving(&h, base, CHAMP).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, calls) = steady_calls(&h, vec![a_url.clone(), b_url.clone()], stop.clone());

    h.sim.affine().crown_rank(7, RUNNER, RUNNER_REV, 6_904_000);
    // Pending on both, deploying: the simulator does not serve it yet.
    for base in [&a_url, &b_url] {
        let w = eventually(Duration::from_secs(5), "the runner pending", || async {
            let w = winner_at(&h, base).await?;
            (w["pending"]["model"] == RUNNER).then_some(w)
        })
        .await;
        assert_eq!(
            w["model"]["id"], CHAMP,
            "traffic stays on the champion: {w}"
        );
        assert_eq!(w["pending"]["revision"], RUNNER_REV);
        // Probed where the serving map puts it (the built-in rule: the simulator), no key.
        assert_eq!(w["pending"]["serving"]["model_name"], RUNNER, "{w}");
        assert_eq!(w["pending"]["serving"]["url"], h.sim.base_url(), "{w}");
        assert!(
            ["deploying", "probing"].contains(&w["pending"]["state"].as_str().unwrap()),
            "{w}"
        );
    }

    // Watch both replicas switch, and when the simulator starts serving the runner.
    let watch = |base: String| {
        let http = h.http.clone();
        tokio::spawn(async move {
            loop {
                let res = http.get(format!("{base}/v1/winner")).send().await.unwrap();
                if res.status() == 200 {
                    let w: Value = res.json().await.unwrap();
                    if w["model"]["id"] == RUNNER {
                        assert!(w["pending"].is_null(), "{w}");
                        return Instant::now();
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let (wa, wb) = (watch(a_url.clone()), watch(b_url.clone()));
    let served = eventually(Duration::from_secs(10), "the runner deployed", || async {
        h.sim
            .served_models()
            .iter()
            .any(|m| m.id == RUNNER)
            .then(Instant::now)
    })
    .await;
    let (ta, tb) = (wa.await.unwrap(), wb.await.unwrap());
    let gap = if ta > tb { ta - tb } else { tb - ta };
    assert!(
        gap < Duration::from_secs(1),
        "replicas switched {gap:?} apart"
    );
    // Two probes a second apart after it is served, within one Affine poll of slack.
    let after = ta.max(tb).saturating_duration_since(served);
    assert!(
        after < Duration::from_secs(4),
        "switched {after:?} after it was served"
    );

    // Keep calling a little after the switch, then count.
    let before_stop = ok.load(Ordering::SeqCst);
    eventually(Duration::from_secs(5), "calls after the switch", || async {
        (ok.load(Ordering::SeqCst) > before_stop + 4).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let models = calls.await.unwrap();
    let failures: Vec<_> = models.iter().filter(|m| m.starts_with("status")).collect();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "failed calls: {failures:?}"
    );
    assert!(ok.load(Ordering::SeqCst) >= 10, "{models:?}");
    assert!(models.iter().any(|m| m == CHAMP), "{models:?}");
    assert_eq!(
        models.last().map(String::as_str),
        Some(RUNNER),
        "{models:?}"
    );

    // One deploy call for the runner, signed, from either replica (the first champion had
    // its own at start: it passed the same gate).
    let deploys: Vec<_> = h
        .sim
        .webhooks()
        .into_iter()
        .filter(|c| c.kind == WebhookKind::Deploy && c.body["model"] == RUNNER)
        .collect();
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert!(deploys[0].verified, "{deploys:?}");
    assert_eq!(deploys[0].body["model"], RUNNER);
    assert_eq!(deploys[0].body["revision"], RUNNER_REV);
    assert_eq!(deploys[0].body["uid"], 7);
    assert_eq!(deploys[0].body["since_block"], 6_904_000);
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_deploy_webhook_is_retried_and_called_once_per_champion_across_replicas() {
    let h = start_gated(sim_deploying_after(Duration::from_secs(3600))).await;
    let b = h.replica().await;
    for base in [h.gw.url(), b.url()] {
        until_serving(&h, &base, CHAMP).await;
    }
    // The first champion's own deploy call (at start) is in; now the runner's.
    let runner_calls = || {
        h.sim
            .webhooks()
            .into_iter()
            .filter(|c| c.body["model"] == RUNNER)
            .collect::<Vec<_>>()
    };
    eventually(
        Duration::from_secs(10),
        "the first champion announced",
        || async { (h.sim.webhooks().len() == 1).then_some(()) },
    )
    .await;
    h.sim.fail_webhooks(2);
    h.sim.affine().crown_rank(7, RUNNER, RUNNER_REV, 6_904_000);
    let calls = eventually(Duration::from_secs(10), "a delivered deploy", || async {
        let calls = runner_calls();
        calls.iter().any(|c| c.status == 200).then_some(calls)
    })
    .await;
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [500, 500, 200],
        "two failures, then the retry that succeeds: {calls:?}"
    );
    assert!(calls.iter().all(|c| c.verified), "{calls:?}");
    // Several more polls on both replicas: no second call for the same champion.
    let polls = h.sim.affine().rank_requests();
    eventually(Duration::from_secs(10), "four more polls", || async {
        (h.sim.affine().rank_requests() >= polls + 4).then_some(())
    })
    .await;
    assert_eq!(runner_calls().len(), 3);
    let retried = metric(
        &h.http,
        &h.gw.url(),
        r#"agw_webhook_calls_total{hook="deploy",outcome="retried"}"#,
    )
    .await
    .unwrap()
        + metric(
            &h.http,
            &b.url(),
            r#"agw_webhook_calls_total{hook="deploy",outcome="retried"}"#,
        )
        .await
        .unwrap();
    assert_eq!(retried, 2.0);
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_champion_that_never_comes_up_stays_pending_and_raises_the_pending_metrics() {
    let h = Harness::start_with(SimConfig::default(), |c| {
        following(c);
        c.winner.ready_timeout_secs = 1;
    })
    .await;
    let base = h.gw.url();
    until_serving(&h, &base, CHAMP).await;
    assert_eq!(
        metric(&h.http, &base, "agw_winner_pending").await,
        Some(0.0)
    );
    h.sim.affine().crown_rank(7, RUNNER, RUNNER_REV, 6_904_000);
    let w = eventually(Duration::from_secs(10), "the runner failed", || async {
        let w = winner_at(&h, &base).await?;
        (w["pending"]["state"] == "failed").then_some(w)
    })
    .await;
    assert_eq!(w["model"]["id"], CHAMP, "{w}");
    assert_eq!(w["pending"]["model"], RUNNER);
    assert!(
        w["pending"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("does not list")),
        "{w}"
    );
    assert_eq!(
        metric(&h.http, &base, "agw_winner_pending").await,
        Some(1.0)
    );
    eventually(
        Duration::from_secs(10),
        "pending seconds growing",
        || async {
            (metric(&h.http, &base, "agw_winner_pending_seconds").await? >= 2.0).then_some(())
        },
    )
    .await;
    // Answers still come from the champion.
    let res = h.reason(r#"{"input":"hi","max_tokens":4}"#).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["model"]["id"], CHAMP);
    assert_eq!(v["model"]["source"], "affine");

    // Deployed late, it is still switched to, and the metrics fall back to zero.
    h.sim.deploy_model(RUNNER);
    until_serving(&h, &base, RUNNER).await;
    assert_eq!(
        metric(&h.http, &base, "agw_winner_pending").await,
        Some(0.0)
    );
    assert_eq!(
        metric(&h.http, &base, "agw_winner_pending_seconds").await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_start_a_past_champion_serves_until_the_champion_is_ready_and_nothing_serving_is_503() {
    // The champion is not deployed; its past champion (the runner) is.
    let h = Harness::start_prepared(
        SimConfig::default(),
        |sim| {
            sim.undeploy_model(CHAMP);
            sim.deploy_model(RUNNER);
        },
        |c| {
            following(c);
        },
    )
    .await;
    let base = h.gw.url();
    let w = eventually(
        Duration::from_secs(10),
        "a past champion serving",
        || async { winner_at(&h, &base).await },
    )
    .await;
    assert_eq!(w["model"]["id"], RUNNER, "{w}");
    assert_eq!(w["model"]["source"], "fallback", "{w}");
    assert_eq!(w["pending"]["model"], CHAMP, "{w}");
    let res = h.reason(r#"{"input":"hi","max_tokens":4}"#).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["model"]["id"], RUNNER);
    assert_eq!(v["model"]["source"], "fallback");
    let ready = h.http.get(h.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // The champion deployed: it takes over.
    h.sim.deploy_model(CHAMP);
    eventually(Duration::from_secs(10), "the champion serves", || async {
        let w = winner_at(&h, &base).await?;
        (w["model"]["id"] == CHAMP && w["model"]["source"] == "affine").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_nothing_served_reason_is_503_no_winner_and_readyz_is_503() {
    let h = Harness::start_prepared(
        SimConfig::default(),
        |sim| {
            sim.undeploy_model(CHAMP);
        },
        |c| {
            following(c);
        },
    )
    .await;
    // Seen and probed at least once: pending, and nothing to fall back on.
    eventually(Duration::from_secs(10), "the champion probed", || async {
        (metric(
            &h.http,
            &h.gw.url(),
            r#"agw_winner_probes_total{outcome="not_listed"}"#,
        )
        .await?
            >= 2.0)
            .then_some(())
    })
    .await;
    expect_problem(
        h.reason(r#"{"input":"hi","max_tokens":4}"#).await,
        503,
        "no_winner",
    )
    .await;
    let ready = h.http.get(h.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaced_champion_is_retired_once_it_drained_and_is_no_past_champion() {
    let h = Harness::start_with(sim_deploying_after(Duration::ZERO), |c| {
        let base = c.upstream.url.trim_end_matches("/v1").to_string();
        following(c);
        c.winner.ready_probes = 1;
        c.winner.retire_webhook = Some(format!("{base}/_sim/retire"));
        c.winner.webhook_secret = Some(Secret::new(SECRET.into()));
        // The drain: no request admitted before the switch can outlive this.
        c.upstream.total_timeout_secs = 2;
    })
    .await;
    let base = h.gw.url();
    until_serving(&h, &base, CHAMP).await;
    h.sim.deploy_model(RUNNER);
    h.sim.affine().crown_rank(7, RUNNER, RUNNER_REV, 6_904_000);
    until_serving(&h, &base, RUNNER).await;
    let switched = Instant::now();
    // The old champion is still among the past champions (a fallback): not retired.
    let polls = h.sim.affine().rank_requests();
    eventually(Duration::from_secs(10), "polls past the drain", || async {
        (h.sim.affine().rank_requests() >= polls + 4).then_some(())
    })
    .await;
    assert!(h.sim.webhooks().is_empty(), "{:?}", h.sim.webhooks());

    // Affine drops it from the past champions: retired, once, signed.
    let mut rank = h.sim.affine().rank();
    rank["window"]["past_champions"] = serde_json::json!([
        {"uid": 7, "hotkey": chutes_sim::affine::CROWNED_HOTKEY, "model": RUNNER,
         "revision": RUNNER_REV, "share": 1.0}
    ]);
    h.sim.affine().set_rank(rank);
    let calls = eventually(Duration::from_secs(10), "the retire call", || async {
        let calls = h.sim.webhooks();
        (!calls.is_empty()).then_some(calls)
    })
    .await;
    assert!(
        switched.elapsed() >= Duration::from_secs(2),
        "retired before the drain"
    );
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].kind, WebhookKind::Retire);
    assert!(calls[0].verified, "{calls:?}");
    assert_eq!(calls[0].body["model"], CHAMP);
    let polls = h.sim.affine().rank_requests();
    eventually(Duration::from_secs(10), "more polls", || async {
        (h.sim.affine().rank_requests() >= polls + 3).then_some(())
    })
    .await;
    assert_eq!(h.sim.webhooks().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_past_champion_its_upstream_does_not_list_is_skipped_when_the_champion_fails() {
    use affine_gateway::config::FallbackConfig;
    use chutes_sim::{Fault, FaultKind, Sim, Trigger};
    // Another provider serving the champion's model, as the configured fallback.
    let fb = Sim::start(SimConfig::default()).await.unwrap();
    let fb_url = fb.base_url();
    let h = Harness::start_with(SimConfig::default(), |c| {
        following(c);
        c.upstream.fallbacks = vec![FallbackConfig::new("fb", &fb_url)];
    })
    .await;
    let base = h.gw.url();
    until_serving(&h, &base, CHAMP).await;
    // The fixture's past champion (the runner) is not deployed: a listing probe says so.
    eventually(
        Duration::from_secs(10),
        "the runner found unlisted",
        || async {
            (metric(
                &h.http,
                &base,
                r#"agw_winner_probes_total{outcome="not_listed"}"#,
            )
            .await?
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    // `GET /v1/winner` shows it, where it would be served, and that it is skipped.
    let w = winner_at(&h, &base).await.unwrap();
    let past = w["past_champions"].as_array().unwrap();
    let runner = past.iter().find(|p| p["model"] == RUNNER).expect("{w}");
    assert_eq!(runner["ready"], false, "{w}");
    assert_eq!(runner["revision"], RUNNER_REV);
    assert_eq!(runner["serving"]["url"], h.sim.base_url(), "{w}");
    let runner_attempts = || {
        h.sim
            .requests()
            .iter()
            .filter(|r| r.body["model"] == RUNNER)
            .count()
    };
    h.sim.set_config(SimConfig {
        fault: Fault {
            kind: Some(FaultKind::Status(503)),
            trigger: Trigger::Always,
        },
        ..SimConfig::default()
    });
    let res = h.reason(r#"{"input":"hi","max_tokens":4}"#).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["model"]["source"], "fallback");
    assert_eq!(fb.stats().requests_total, 1);
    assert_eq!(runner_attempts(), 0, "an unlisted past champion was tried");

    // Deployed, it is tried again before the configured fallback.
    h.sim.deploy_model(RUNNER);
    eventually(Duration::from_secs(10), "the runner ready", || async {
        let w = winner_at(&h, &base).await?;
        w["past_champions"]
            .as_array()?
            .iter()
            .any(|p| p["model"] == RUNNER && p["ready"] == true)
            .then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "the runner tried", || async {
        let res = h.reason(r#"{"input":"hi","max_tokens":4}"#).await;
        assert_eq!(res.status(), 200);
        (runner_attempts() > 0).then_some(())
    })
    .await;
}
