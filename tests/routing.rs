//! The upstream set under faults, with the simulator: fail-over to a fallback, the retry
//! budget, cold chutes, the circuit breaker, each timeout, no retry once bytes were sent, and
//! no credential in logs, errors or metrics.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use affine_gateway::config::{Config, FallbackConfig, Secret};
use chutes_sim::{Fault, FaultKind, Sim, SimConfig, SimHandle, Trigger};
use common::*;
use serde_json::Value;

const RUNNER: &str = "runner/Affine-Reasoner-14B";
const FALLBACK_KEY: &str = "fbk_fallback_key_5550123";

fn faulty(kind: FaultKind) -> SimConfig {
    SimConfig {
        fault: Fault {
            kind: Some(kind),
            trigger: Trigger::Always,
        },
        ..SimConfig::default()
    }
}

/// A second simulator serving the runner-up, requiring its own key.
async fn fallback_sim() -> SimHandle {
    Sim::start(SimConfig {
        model: RUNNER.into(),
        require_api_key: Some(FALLBACK_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .expect("fallback simulator")
}

fn with_fallback(c: &mut Config, fb: &SimHandle) {
    c.upstream.fallbacks = vec![FallbackConfig {
        api_key: Some(Secret::new(FALLBACK_KEY.into())),
        model: Some(RUNNER.into()),
        ..FallbackConfig::new("runner-up", &fb.base_url())
    }];
}

/// Chat completions the simulator received, probes excluded.
fn live_calls(sim: &SimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions") && r.body["max_tokens"] != 1)
        .count()
}

async fn m(h: &Harness, series: &str) -> f64 {
    metric(&h.http, &h.gw.url(), series).await.unwrap_or(0.0)
}

#[tokio::test]
async fn a_429_storm_fails_over_and_the_budget_caps_the_retries() {
    let fb = fallback_sim().await;
    let h = Harness::start_with(faulty(FaultKind::Status(429)), |c| {
        with_fallback(c, &fb);
        c.upstream.retry.budget_percent = 20;
        c.upstream.retry.budget_burst = 2;
        c.upstream.retry.max_retries = 2;
        // The simulator says `Retry-After: 1`: honoured.
        c.upstream.retry.max_wait_ms = 1500;
        c.upstream.breaker.min_requests = 1_000_000;
    })
    .await;
    const N: usize = 30;
    let started = Instant::now();
    let answers = futures_util::future::join_all(
        (0..N).map(|_| async { h.reason(r#"{"input":"x"}"#).await }),
    )
    .await;
    for res in answers {
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["model"]["source"], "fallback");
        assert_eq!(body["model"]["id"], RUNNER);
        assert_eq!(body["model"]["revision"], Value::Null);
    }
    let primary = h.sim.stats().requests_total as usize;
    let retries = primary - N;
    // At most the reserve (2) plus 20 % of the requests (6): not N × max_retries = 60.
    assert!(
        retries <= 2 + N / 5,
        "{primary} primary calls for {N} requests"
    );
    assert!(retries >= 1, "retries happen while the budget allows");
    assert_eq!(fb.stats().requests_total as usize, N);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(
        m(&h, "agw_upstream_retries_total{upstream=\"winner\"}").await as usize,
        retries
    );
    assert_eq!(
        m(&h, "agw_upstream_fallbacks_total{upstream=\"runner-up\"}").await as usize,
        N
    );
    assert_eq!(
        m(
            &h,
            "agw_upstream_requests_total{outcome=\"overloaded\",upstream=\"winner\"}"
        )
        .await as usize,
        primary
    );
    // The fallback got its own key, never the primary's.
    for r in fb.requests() {
        assert_eq!(
            r.authorization.as_deref(),
            Some(&*format!("Bearer {FALLBACK_KEY}"))
        );
    }
}

#[tokio::test]
async fn a_cold_chute_fails_over_at_once_and_takes_traffic_after_a_probe() {
    let fb = fallback_sim().await;
    let h = Harness::start_with(faulty(FaultKind::Status(503)), |c| {
        with_fallback(c, &fb);
        c.upstream.cold_probe_secs = 1;
        c.upstream.retry.max_wait_ms = 5000;
    })
    .await;
    let t = Instant::now();
    let res = h.reason(r#"{"input":"x"}"#).await;
    // Immediately: no retry of the cold chute, no wait for its `Retry-After: 1`.
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["model"]["source"], "fallback");
    // Meanwhile the cold chute gets no live traffic, only the background probe.
    for _ in 0..5 {
        let res = h.reason(r#"{"input":"x","stream":true}"#).await;
        assert_eq!(res.status(), 200);
        let events = read_events(res).await;
        assert_eq!(events.last().unwrap().data["model"]["source"], "fallback");
    }
    assert_eq!(live_calls(&h.sim), 1);
    assert_eq!(
        m(
            &h,
            "agw_upstream_requests_total{outcome=\"cold\",upstream=\"winner\"}"
        )
        .await,
        1.0
    );
    // The chute warms up: the probe notices, and the winner serves again.
    h.sim.set_config(SimConfig::default());
    eventually(
        Duration::from_secs(10),
        "the warm chute to serve",
        || async {
            let body: Value = h.reason(r#"{"input":"x"}"#).await.json().await.ok()?;
            (body["model"]["source"] == "static").then_some(())
        },
    )
    .await;
    let probes = h
        .sim
        .requests()
        .iter()
        .filter(|r| r.body["max_tokens"] == 1)
        .count();
    assert!(probes >= 1, "the chute was probed");
}

#[tokio::test]
async fn the_breaker_opens_at_the_threshold_and_closes_after_a_probe() {
    let h = Harness::start_with(faulty(FaultKind::Status(500)), |c| {
        c.upstream.breaker.min_requests = 4;
        c.upstream.breaker.failure_percent = 50;
        c.upstream.breaker.open_secs = 1;
    })
    .await;
    let state = "agw_breaker_state{upstream=\"winner\"}";
    assert_eq!(m(&h, state).await, 0.0);
    for _ in 0..4 {
        expect_problem(h.reason(r#"{"input":"x"}"#).await, 502, "upstream_error").await;
    }
    assert_eq!(m(&h, state).await, 2.0, "open");
    // Open, no fallback: refused at once without calling the provider.
    expect_problem(
        h.reason(r#"{"input":"x"}"#).await,
        503,
        "upstream_unavailable",
    )
    .await;
    assert_eq!(h.sim.stats().requests_total, 4);

    // The provider recovers; after the pause one probe request goes through and closes it.
    h.sim.set_config(SimConfig::default());
    eventually(Duration::from_secs(5), "a successful probe", || async {
        (h.reason(r#"{"input":"x"}"#).await.status() == 200).then_some(())
    })
    .await;
    assert_eq!(m(&h, state).await, 0.0, "closed");
    assert_eq!(h.reason(r#"{"input":"x"}"#).await.status(), 200);
}

fn timeouts(c: &mut Config, first: u64, idle: u64, total: u64) {
    c.upstream.first_token_timeout_secs = first;
    c.upstream.idle_timeout_secs = idle;
    c.upstream.total_timeout_secs = total;
}

async fn stream_error(h: &Harness) -> Value {
    let events = read_events(h.reason(r#"{"input":"x","stream":true}"#).await).await;
    let last = events.last().expect("events").clone();
    assert_eq!(last.event, "error", "{events:?}");
    assert!(events.iter().all(|e| e.event != "done"));
    last.data
}

#[tokio::test]
async fn the_first_token_timeout_triggers() {
    let h = Harness::start_with(
        SimConfig {
            ttft: Duration::from_secs(3),
            ..SimConfig::default()
        },
        |c| timeouts(c, 1, 10, 20),
    )
    .await;
    let t = Instant::now();
    let err = stream_error(&h).await;
    assert_eq!(err["code"], "upstream_timeout");
    assert_eq!(err["status"], 504);
    assert!(
        err["detail"].as_str().unwrap().contains("first_token"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(2900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        m(
            &h,
            "agw_upstream_requests_total{outcome=\"first_token\",upstream=\"winner\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn the_idle_timeout_triggers() {
    let h = Harness::start_with(faulty(FaultKind::StallAfter { after_chunks: 3 }), |c| {
        timeouts(c, 10, 1, 20)
    })
    .await;
    let err = stream_error(&h).await;
    assert_eq!(err["code"], "upstream_timeout");
    assert!(err["detail"].as_str().unwrap().contains("idle"), "{err}");
}

#[tokio::test]
async fn the_total_timeout_triggers_whole_and_streamed() {
    let h = Harness::start_with(
        SimConfig {
            tokens_per_sec: 4.0,
            output_tokens: 100,
            ..SimConfig::default()
        },
        |c| timeouts(c, 10, 10, 2),
    )
    .await;
    let err = stream_error(&h).await;
    assert_eq!(err["code"], "upstream_timeout");
    assert!(err["detail"].as_str().unwrap().contains("total"), "{err}");

    h.sim.set_config(SimConfig {
        ttft: Duration::from_secs(4),
        ..SimConfig::default()
    });
    let body = expect_problem(h.reason(r#"{"input":"x"}"#).await, 504, "upstream_timeout").await;
    assert!(body["detail"].as_str().unwrap().contains("total"), "{body}");
}

#[tokio::test]
async fn a_stream_that_already_sent_bytes_is_never_retried() {
    let fb = fallback_sim().await;
    let h = Harness::start_with(faulty(FaultKind::Disconnect { after_chunks: 4 }), |c| {
        with_fallback(c, &fb)
    })
    .await;
    let events = read_events(h.reason(r#"{"input":"x","stream":true}"#).await).await;
    assert!(
        events.len() >= 2,
        "text arrived before the break: {events:?}"
    );
    assert_eq!(events.last().unwrap().event, "error");
    assert_eq!(h.sim.stats().requests_total, 1);
    assert_eq!(fb.stats().requests_total, 0);
}

#[tokio::test]
async fn a_request_error_is_neither_retried_nor_failed_over() {
    let fb = fallback_sim().await;
    let h = Harness::start_with(faulty(FaultKind::Status(400)), |c| with_fallback(c, &fb)).await;
    expect_problem(h.reason(r#"{"input":"x"}"#).await, 400, "invalid_request").await;
    assert_eq!(h.sim.stats().requests_total, 1);
    assert_eq!(fb.stats().requests_total, 0);
}

#[tokio::test]
async fn an_empty_provider_balance_is_its_own_outcome() {
    let h = Harness::start(faulty(FaultKind::Status(402))).await;
    // The caller sees 502 upstream_error: the operator's balance, not the caller's problem.
    expect_problem(h.reason(r#"{"input":"x"}"#).await, 502, "upstream_error").await;
    assert_eq!(
        m(
            &h,
            "agw_upstream_requests_total{outcome=\"payment_required\",upstream=\"winner\"}"
        )
        .await,
        1.0
    );
}

/// Collects every log line of this process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn credentials_never_reach_logs_errors_or_metrics() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("this test owns the process's log subscriber (run it with nextest)");

    // The fallback is configured with a wrong key half the time: 401s, 429s, 402s, cold
    // chutes and successes all get logged.
    let fb = fallback_sim().await;
    let h = Harness::start_with(
        SimConfig {
            fault: Fault {
                kind: Some(FaultKind::Status(429)),
                trigger: Trigger::EveryNth(2),
            },
            require_api_key: Some(TEST_KEY.into()),
            ..SimConfig::default()
        },
        |c| {
            with_fallback(c, &fb);
            c.upstream.retry.max_wait_ms = 0;
        },
    )
    .await;
    let mut bodies = String::new();
    for i in 0..6 {
        let res = h
            .reason(&format!(r#"{{"input":"x","stream":{}}}"#, i % 2 == 0))
            .await;
        bodies.push_str(&res.text().await.unwrap());
    }
    for kind in [
        FaultKind::Status(402),
        FaultKind::Status(401),
        FaultKind::Status(503),
    ] {
        h.sim.set_config(faulty(kind));
        fb.set_config(SimConfig {
            model: RUNNER.into(),
            require_api_key: Some("another-key".into()),
            ..SimConfig::default()
        });
        bodies.push_str(&h.reason(r#"{"input":"x"}"#).await.text().await.unwrap());
    }
    let metrics = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let winner = h
        .http
        .get(h.url("/v1/winner"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("upstream attempt failed"),
        "the failures were logged"
    );
    assert!(logs.contains("runner-up"), "logs name the upstream");
    assert!(bodies.contains("upstream_"), "{bodies}");
    for key in [TEST_KEY, FALLBACK_KEY] {
        for (what, text) in [
            ("logs", &logs),
            ("bodies", &bodies),
            ("metrics", &metrics),
            ("winner", &winner),
        ] {
            assert!(!text.contains(key), "{what} contain a provider key");
        }
    }
}

#[test]
fn fallbacks_are_configured_in_the_file_and_printed_without_their_keys() {
    let toml = r#"
[upstream]
url = "https://llm.chutes.ai/v1"
cold_probe_secs = 5

[upstream.retry]
max_retries = 2
budget_percent = 10

[upstream.breaker]
min_requests = 10
open_secs = 30

[[upstream.fallbacks]]
name = "runner-up"
url = "https://llm.chutes.ai/v1/"
api_key = "cpk_secret_fallback_key"
model = "runner/Affine-Reasoner-14B"
first_token_timeout_secs = 30

[[upstream.fallbacks]]
name = "other-provider"
url = "https://api.example.com/v1"
"#;
    let c = Config::from_toml_str(toml).expect("valid");
    assert_eq!(c.upstream.fallbacks.len(), 2);
    assert_eq!(c.upstream.fallbacks[0].url, "https://llm.chutes.ai/v1");
    assert_eq!(c.upstream.retry.max_retries, 2);
    let shown = c.to_redacted_toml();
    assert!(!shown.contains("cpk_secret_fallback_key"), "{shown}");
    assert!(shown.contains("other-provider"), "{shown}");

    for (bad, field) in [
        (r#"name = "Bad Name""#, "upstream.fallbacks[0].name"),
        (r#"name = "winner""#, "upstream.fallbacks[0].name"),
    ] {
        let t = format!("[[upstream.fallbacks]]\n{bad}\nurl = \"https://x/v1\"\n");
        let err = Config::from_toml_str(&t).unwrap_err().to_string();
        assert!(err.contains(field), "{err}");
    }
    let twice = "[[upstream.fallbacks]]\nname = \"a\"\nurl = \"https://x/v1\"\n[[upstream.fallbacks]]\nname = \"a\"\nurl = \"https://y/v1\"\n";
    let err = Config::from_toml_str(twice).unwrap_err().to_string();
    assert!(err.contains("used twice"), "{err}");
    let err = Config::from_toml_str("[upstream.breaker]\nfailure_percent = 0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("upstream.breaker.failure_percent"), "{err}");
}

#[tokio::test]
async fn the_connect_timeout_triggers() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connect hangs.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let h = Harness::start_with(SimConfig::default(), |c| {
        c.upstream.url = format!("http://{addr}/v1");
        c.upstream.connect_timeout_ms = 300;
        c.upstream.retry.max_retries = 0;
    })
    .await;
    let t = Instant::now();
    let body = expect_problem(h.reason(r#"{"input":"x"}"#).await, 504, "upstream_timeout").await;
    assert!(
        body["detail"].as_str().unwrap().contains("connect"),
        "{body}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    drop((listener, fillers));
}

#[tokio::test]
async fn the_openai_route_fails_over_too_and_names_the_model_that_served() {
    let fb = fallback_sim().await;
    let h = Harness::start_with(faulty(FaultKind::Status(502)), |c| {
        with_fallback(c, &fb);
        c.upstream.retry.max_retries = 0;
    })
    .await;
    for stream in [false, true] {
        let res = h
            .http
            .post(h.url("/v1/chat/completions"))
            .bearer_auth(&h.token)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"model":"affine-winner","messages":[{{"role":"user","content":"x"}}],"stream":{stream}}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-affine-model"], RUNNER);
        assert!(res.text().await.unwrap().contains(RUNNER));
    }
    assert_eq!(fb.stats().requests_total, 2);
    // The fallback was asked for its own model.
    assert!(fb.requests().iter().all(|r| r.body["model"] == RUNNER));
}
