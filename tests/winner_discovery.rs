//! Winner discovery against the simulated Affine API: the champion of `/rank/current` is
//! followed within one poll, its outages and garbage keep the last good champion, a champion
//! without a revision is not taken, a deployment without the endpoint is read through its
//! scores and miner records (where invalid rows are never chosen and outages and garbage keep
//! the last good winner too), and runtime pins reach every replica.

mod common;

use std::time::{Duration, Instant};

use chutes_sim::{AffineMode, SimConfig};
use common::*;
use serde_json::{Value, json};

const CHAMP: &str = "affine-champ/Affine-Reasoner-32B";
const CHAMP_REV: &str = "9c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d";
const CHAMP_SLUG: &str = "affinechamp-affine-reasoner-32b";
const CHAMP_HOTKEY: &str = "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy";
const CHAMP_SINCE: u64 = 6_880_112;
const RUNNER: &str = "runner/Affine-Reasoner-14B";
const RUNNER_REV: &str = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b";
const RUNNER_HOTKEY: &str = "5HGjWAeFDfFCWPsjFQdVV2Msvz2XtMktvgocEZcCj68kUMaw";

fn discover(c: &mut affine_gateway::config::Config) {
    c.winner.model = None;
    c.winner.poll_secs = 1;
    // The readiness gate (tests/winner_readiness.rs) at its quickest: one probe, each second.
    c.winner.probe_secs = 1;
    c.winner.ready_probes = 1;
}

/// A gateway without a static winner, polling the simulator's Affine API every second; the
/// simulator serves the champion and the runner-up, so the gate lets each through.
async fn discovering(sim_cfg: SimConfig) -> Harness {
    Harness::start_prepared(sim_cfg, |sim| sim.deploy_model(RUNNER), discover).await
}

/// The same in front of an Affine API from before `/rank/current` (404 there from the
/// first poll on), which names the champion's chute in its miner record.
async fn discovering_without_rank(sim_cfg: SimConfig) -> Harness {
    Harness::start_prepared(
        sim_cfg,
        |sim| {
            sim.affine().set_rank_mode(AffineMode::Status(404));
            sim.deploy_model(RUNNER);
        },
        discover,
    )
    .await
}

/// `model` as the gateway reports the fixture's champion read from `/rank/current`.
fn champ_from_rank() -> Value {
    json!({"id": CHAMP, "revision": CHAMP_REV, "miner_hotkey": CHAMP_HOTKEY, "uid": 41,
           "since_block": CHAMP_SINCE, "source": "affine"})
}

/// The `/rank/current` fixture with its champion replaced by `champion`.
fn rank_naming(champion: Value) -> Value {
    let mut rank: Value = serde_json::from_str(chutes_sim::affine::RANK_CURRENT).unwrap();
    rank["window"]["champion"] = champion;
    rank
}

/// The runner-up (uid 7) as `/rank/current` would name it after a win, at `revision`.
fn runner_in_rank(revision: Value) -> Value {
    json!({"uid": 7, "hotkey": RUNNER_HOTKEY, "revision": revision, "model": RUNNER,
           "model_type": "qwen3", "since_block": 6_904_000})
}

/// The scores fixture with the runner-up (uid 7) as the champion: a gateway that reads
/// the scores moves to it, one that reads `/rank/current` does not.
fn scores_crowning_the_runner() -> Value {
    let mut scores: Value = serde_json::from_str(chutes_sim::affine::SCORES).unwrap();
    for r in scores["scores"].as_array_mut().unwrap() {
        r["overall_score"] = json!(if r["uid"] == 7 { 1.0 } else { 0.0 });
    }
    scores
}

async fn winner(h: &Harness) -> Option<Value> {
    let res = h.http.get(h.url("/v1/winner")).send().await.unwrap();
    if res.status() != 200 {
        return None;
    }
    Some(res.json().await.unwrap())
}

async fn winner_model(h: &Harness) -> Option<String> {
    Some(winner(h).await?["model"]["id"].as_str()?.to_string())
}

/// Waits until the gateway has polled the simulated Affine API `n` times, all begun after
/// this call: every poll starts with `/rank/current`, so its (n+1)-th request since means
/// that the n-th poll is over.
async fn polls(h: &Harness, n: u64) {
    let start = h.sim.affine().rank_requests();
    eventually(Duration::from_secs(10 + n), "Affine polls", || async {
        (h.sim.affine().rank_requests() > start + n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_champion_of_rank_current_is_served_and_followed() {
    let h = discovering(SimConfig::default()).await;
    let w = eventually(Duration::from_secs(5), "the first winner", || winner(&h)).await;
    assert_eq!(w["model"], champ_from_rank());
    // `/rank/current` names no chute: served at the configured upstream under its repo id.
    assert_eq!(w["upstream"], h.sim.base_url().as_str());
    let res = h.reason(r#"{"input":"x"}"#).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["model"], champ_from_rank());
    let last = h.sim.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(last.body["model"], CHAMP);
    // `GET /v1/models` names the champion's revision and since when it is champion.
    let models: Value = h
        .http
        .get(h.url("/v1/models"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for m in models["data"].as_array().unwrap() {
        assert_eq!(m["revision"], CHAMP_REV, "{m}");
        assert_eq!(m["since_block"], CHAMP_SINCE, "{m}");
    }

    // `/rank/current` crowns the runner-up while the scores still say uid 41: the rank wins.
    h.sim.set_config(SimConfig {
        model: RUNNER.into(),
        ..SimConfig::default()
    });
    h.sim
        .affine()
        .set_rank(rank_naming(runner_in_rank(RUNNER_REV.into())));
    let w = eventually(Duration::from_secs(5), "the new champion", || async {
        let w = winner(&h).await?;
        (w["model"]["id"] == RUNNER).then_some(w)
    })
    .await;
    let runner = json!({"id": RUNNER, "revision": RUNNER_REV, "miner_hotkey": RUNNER_HOTKEY,
                        "uid": 7, "since_block": 6_904_000, "source": "affine"});
    assert_eq!(w["model"], runner);
    let res = h.reason(r#"{"input":"x"}"#).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["model"], runner);
    // Only `/rank/current` was ever read.
    assert_eq!(h.sim.affine().requests(), h.sim.affine().rank_requests());
}

#[tokio::test]
async fn rank_current_outages_and_garbage_keep_the_last_good_champion() {
    let h = discovering(SimConfig::default()).await;
    let w = eventually(Duration::from_secs(5), "the first winner", || winner(&h)).await;
    assert_eq!(w["model"], champ_from_rank());
    // The scores crown another miner: falling back to them would move the winner.
    h.sim.affine().set_scores(scores_crowning_the_runner());
    let fixture: Value = serde_json::from_str(chutes_sim::affine::RANK_CURRENT).unwrap();
    let mut no_champion = fixture.clone();
    no_champion["window"]
        .as_object_mut()
        .unwrap()
        .remove("champion");
    let mut null_champion = fixture.clone();
    null_champion["window"]["champion"] = Value::Null;
    let mut wrong_types = fixture.clone();
    wrong_types["window"]["champion"]["uid"] = json!("41");
    wrong_types["window"]["champion"]["since_block"] = json!("soon");
    let cases = [
        ("cold cache (503)", AffineMode::Status(503), fixture.clone()),
        (
            "server error (500)",
            AffineMode::Status(500),
            fixture.clone(),
        ),
        ("not JSON", AffineMode::Garbage, fixture.clone()),
        ("no champion", AffineMode::Normal, no_champion),
        ("a null champion", AffineMode::Normal, null_champion),
        ("wrong types", AffineMode::Normal, wrong_types),
    ];
    for (what, mode, rank) in cases {
        h.sim.affine().set_rank_mode(mode);
        h.sim.affine().set_rank(rank);
        polls(&h, 2).await;
        let w = winner(&h).await.expect("a winner");
        assert_eq!(w["model"], champ_from_rank(), "{what}");
        assert_eq!(h.reason(r#"{"input":"x"}"#).await.status(), 200, "{what}");
        let ready = h.http.get(h.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{what}");
    }
    // None of that sent the gateway to the scores.
    assert_eq!(h.sim.affine().requests(), h.sim.affine().rank_requests());
}

#[tokio::test]
async fn without_rank_current_the_scores_are_read_until_it_appears() {
    let h = discovering(SimConfig::default()).await;
    let w = eventually(Duration::from_secs(5), "the first winner", || winner(&h)).await;
    assert_eq!(w["model"], champ_from_rank());

    // The deployment loses the endpoint; its scores crown the runner-up.
    h.sim.set_config(SimConfig {
        model: RUNNER.into(),
        ..SimConfig::default()
    });
    h.sim.affine().set_scores(scores_crowning_the_runner());
    h.sim.affine().set_rank_mode(AffineMode::Status(404));
    let w = eventually(Duration::from_secs(5), "the scores' champion", || async {
        let w = winner(&h).await?;
        (w["model"]["id"] == RUNNER).then_some(w)
    })
    .await;
    // The miner record gives revision and hotkey; nothing says since when it is champion.
    let runner = json!({"id": RUNNER, "revision": RUNNER_REV, "miner_hotkey": RUNNER_HOTKEY,
                        "uid": 7, "since_block": null, "source": "affine"});
    assert_eq!(w["model"], runner);
    let res = h.reason(r#"{"input":"x"}"#).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["model"], runner);
    let before = h.sim.affine().requests();
    polls(&h, 1).await;
    assert!(
        h.sim.affine().requests() >= before + 3,
        "rank/current, then the scores and the miner record"
    );

    // The endpoint is back: decided at every poll, so its champion is followed again.
    h.sim.set_config(SimConfig::default());
    h.sim.affine().set_rank_mode(AffineMode::Normal);
    let w = eventually(Duration::from_secs(5), "the rank's champion", || async {
        let w = winner(&h).await?;
        (w["model"]["id"] == CHAMP).then_some(w)
    })
    .await;
    assert_eq!(w["model"], champ_from_rank());
}

#[tokio::test]
async fn a_champion_without_a_revision_is_not_taken() {
    let h = discovering(SimConfig::default()).await;
    let w = eventually(Duration::from_secs(5), "the first winner", || winner(&h)).await;
    assert_eq!(w["model"], champ_from_rank());
    let mut absent = runner_in_rank(Value::Null);
    absent.as_object_mut().unwrap().remove("revision");
    for (what, champion) in [
        ("null", runner_in_rank(Value::Null)),
        ("empty", runner_in_rank("".into())),
        ("absent", absent),
    ] {
        h.sim.affine().set_rank(rank_naming(champion));
        polls(&h, 2).await;
        let w = winner(&h).await.expect("a winner");
        assert_eq!(w["model"], champ_from_rank(), "revision {what}");
    }
    // With its revision it is taken.
    h.sim
        .affine()
        .set_rank(rank_naming(runner_in_rank(RUNNER_REV.into())));
    eventually(Duration::from_secs(5), "the runner-up", || async {
        let w = winner(&h).await?;
        (w["model"]["id"] == RUNNER && w["model"]["revision"] == RUNNER_REV).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_champion_is_served_on_its_chute_and_followed_within_one_poll() {
    // Only deployments from before `/rank/current` name a chute.
    let h = discovering_without_rank(SimConfig {
        tokens_per_sec: 20.0,
        output_tokens: 30,
        ..SimConfig::default()
    })
    .await;
    let w = eventually(Duration::from_secs(5), "the first winner", || winner(&h)).await;
    assert_eq!(w["model"]["id"], CHAMP);
    assert_eq!(w["model"]["revision"], CHAMP_REV);
    assert_eq!(w["model"]["uid"], 41);
    assert_eq!(w["model"]["source"], "affine");
    let chute = format!("http://{}/c/{CHAMP_SLUG}/v1", h.sim.addr());
    assert_eq!(w["upstream"], chute.as_str());
    let since = w["since"].as_str().unwrap().to_string();

    // Served on the champion's chute, and reported with its provenance.
    let res = h.reason(r#"{"input":"x"}"#).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["model"]["source"], "affine");
    assert_eq!(body["model"]["revision"], CHAMP_REV);
    let paths: Vec<String> = h.sim.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths.contains(&format!("/c/{CHAMP_SLUG}/v1/chat/completions")),
        "{paths:?}"
    );

    // A stream that starts before the change finishes on the model it started with.
    let stream = h.reason(r#"{"input":"x","stream":true}"#).await;
    assert_eq!(stream.status(), 200);

    // A challenger wins; it has no chute, so it is served by the base URL under its repo.
    h.sim.set_config(SimConfig {
        model: RUNNER.into(),
        ..SimConfig::default()
    });
    h.sim.affine().crown(7, RUNNER, "1a2b3c", None);
    let crowned = Instant::now();
    let w = eventually(Duration::from_secs(5), "the new champion", || async {
        let w = winner(&h).await?;
        (w["model"]["id"] == RUNNER).then_some(w)
    })
    .await;
    // One poll interval (1 s) plus the time a poll takes on a busy machine.
    assert!(
        crowned.elapsed() < Duration::from_millis(3000),
        "{:?}",
        crowned.elapsed()
    );
    assert_eq!(w["model"]["revision"], "1a2b3c");
    assert_eq!(w["model"]["uid"], 7);
    assert_eq!(w["upstream"], h.sim.base_url().as_str());
    assert_ne!(w["since"].as_str().unwrap(), since, "since moved");

    let events = read_events(stream).await;
    let done = events.iter().find(|e| e.event == "done").expect("done");
    assert_eq!(
        done.data["model"]["id"], CHAMP,
        "in-flight stream kept its model"
    );

    let res = h.reason(r#"{"input":"x"}"#).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["model"]["id"], RUNNER);
    let last = h.sim.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(last.body["model"], RUNNER);

    let base = h.gw.url();
    assert_eq!(
        metric(&h.http, &base, "agw_winner_changes_total").await,
        Some(1.0)
    );
    assert_eq!(metric(&h.http, &base, "agw_winner_known").await, Some(1.0));
    let info =
        format!("agw_winner_info{{model=\"{RUNNER}\",revision=\"1a2b3c\",source=\"affine\"}}");
    assert_eq!(metric(&h.http, &base, &info).await, Some(1.0));
    let old =
        format!("agw_winner_info{{model=\"{CHAMP}\",revision=\"{CHAMP_REV}\",source=\"affine\"}}");
    assert_eq!(
        metric(&h.http, &base, &old).await,
        None,
        "the old series is gone"
    );
}

#[tokio::test]
async fn an_invalid_row_never_wins() {
    // Validity is in the scores, which only a deployment without `/rank/current` is read by.
    let h = discovering_without_rank(SimConfig::default()).await;
    eventually(Duration::from_secs(5), "the first winner", || {
        winner_model(&h)
    })
    .await;
    // The plagiarist (uid 88, is_valid: false) gets the best score of all.
    let mut scores: Value = serde_json::from_str(chutes_sim::affine::SCORES).unwrap();
    for r in scores["scores"].as_array_mut().unwrap() {
        if r["uid"] == 88 {
            r["overall_score"] = 5.0.into();
        }
    }
    h.sim.affine().set_scores(scores.clone());
    polls(&h, 2).await;
    assert_eq!(winner_model(&h).await.as_deref(), Some(CHAMP));

    // Valid in the scores but invalid in its miner record: refused as well.
    for r in scores["scores"].as_array_mut().unwrap() {
        if r["uid"] == 88 {
            r["is_valid"] = true.into();
        }
    }
    h.sim.affine().set_scores(scores);
    polls(&h, 2).await;
    assert_eq!(winner_model(&h).await.as_deref(), Some(CHAMP));
}

#[tokio::test]
async fn outages_and_garbage_keep_the_last_good_winner() {
    // The scores and miner routes failing (`/rank/current`'s own failures: above).
    let h = discovering_without_rank(SimConfig::default()).await;
    eventually(Duration::from_secs(5), "the first winner", || {
        winner_model(&h)
    })
    .await;
    for mode in [
        AffineMode::Status(500),
        AffineMode::Status(404),
        AffineMode::Garbage,
    ] {
        h.sim.affine().set_mode(mode);
        let start = h.sim.affine().requests();
        eventually(Duration::from_secs(10), "failing polls", || async {
            (h.sim.affine().requests() >= start + 2).then_some(())
        })
        .await;
        assert_eq!(winner_model(&h).await.as_deref(), Some(CHAMP), "{mode:?}");
        assert_eq!(h.reason(r#"{"input":"x"}"#).await.status(), 200, "{mode:?}");
        let ready = h.http.get(h.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{mode:?}");
    }
    // Back to normal: a new champion is followed again.
    h.sim.affine().set_mode(AffineMode::Normal);
    h.sim.affine().crown(7, RUNNER, "1a2b3c", None);
    eventually(Duration::from_secs(5), "the new champion", || async {
        (winner_model(&h).await?.as_str() == RUNNER).then_some(())
    })
    .await;
}

async fn pin(h: &Harness, base: &str, body: &str, token: &str) -> reqwest::Response {
    h.http
        .put(format!("{base}/admin/v1/winner"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn model_at(h: &Harness, base: &str) -> (String, String) {
    let w: Value = h
        .http
        .get(format!("{base}/v1/winner"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        w["model"]["id"].as_str().unwrap().to_string(),
        w["model"]["source"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_runtime_pin_reaches_every_replica_within_a_poll() {
    // Two replicas on one Redis; the static winner (GATEWAY_WINNER) is the simulator's model.
    let h = Harness::start_with(SimConfig::default(), use_redis).await;
    let b = h.replica().await;
    let (a_url, b_url) = (h.gw.url(), b.url());
    assert_eq!(model_at(&h, &b_url).await, (CHAMP.into(), "static".into()));

    // Only operators pin, and only well-formed models.
    let res = pin(&h, &a_url, r#"{"model":"org/m"}"#, &h.token).await;
    assert_eq!(res.status(), 403);
    expect_problem(
        pin(&h, &a_url, r#"{"model":"not a model"}"#, &admin_token()).await,
        400,
        "invalid_request",
    )
    .await;

    let res = pin(&h, &a_url, r#"{"model":"org/pinned@rev1"}"#, &admin_token()).await;
    assert_eq!(res.status(), 200);
    let w: Value = res.json().await.unwrap();
    assert_eq!(w["model"]["id"], "org/pinned");
    assert_eq!(w["model"]["revision"], "rev1");
    assert_eq!(w["model"]["source"], "pinned");
    let pinned = Instant::now();
    eventually(Duration::from_secs(5), "the pin on replica B", || async {
        (model_at(&h, &b_url).await == ("org/pinned".into(), "pinned".into())).then_some(())
    })
    .await;
    // One pin poll (1 s) plus scheduling slack.
    assert!(
        pinned.elapsed() < Duration::from_millis(1800),
        "{:?}",
        pinned.elapsed()
    );

    let res = h
        .http
        .delete(format!("{b_url}/admin/v1/winner"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(model_at(&h, &b_url).await, (CHAMP.into(), "static".into()));
    eventually(Duration::from_secs(5), "the unpin on replica A", || async {
        (model_at(&h, &a_url).await == (CHAMP.into(), "static".into())).then_some(())
    })
    .await;
    // A static winner means Affine is never polled.
    assert_eq!(h.sim.affine().requests(), 0);
    b.stop().await.unwrap();
}

#[tokio::test]
async fn polls_are_counted_by_outcome_and_the_last_good_one_is_timestamped() {
    let h = discovering(SimConfig::default()).await;
    let base = h.gw.url();
    eventually(Duration::from_secs(5), "the first winner", || {
        winner_model(&h)
    })
    .await;
    let ok = metric(&h.http, &base, r#"agw_winner_polls_total{outcome="ok"}"#).await;
    assert!(ok.is_some_and(|n| n >= 1.0), "{ok:?}");
    let at = metric(&h.http, &base, "agw_winner_last_poll_ok_timestamp_seconds")
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - at).abs() < 30.0, "{at} vs {now}");

    h.sim.affine().set_rank_mode(AffineMode::Status(503));
    eventually(
        Duration::from_secs(5),
        "an unavailable poll counted",
        || async {
            (metric(
                &h.http,
                &base,
                r#"agw_winner_polls_total{outcome="unavailable"}"#,
            )
            .await?
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    // The timestamp stays at the last good poll while Affine fails.
    polls(&h, 2).await;
    assert_eq!(
        metric(&h.http, &base, "agw_winner_last_poll_ok_timestamp_seconds").await,
        Some(at)
    );
}
