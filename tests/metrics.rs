//! What the gateway exports for SREs: `/metrics` after mixed traffic, every metric the alert
//! rules and the dashboard name, and the JSON access log.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chutes_sim::{Fault, FaultKind, SimConfig, Trigger};
use common::*;

const RULE_FILES: &[&str] = &[
    "deploy/prometheus/recording.rules.yml",
    "deploy/prometheus/alerts.rules.yml",
];
const DASHBOARD: &str = "deploy/grafana/affine-gateway.json";

/// One scrape: every sample with its labels.
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    text: String,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let value: f64 = value.parse().expect("numeric sample");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').expect("closed label set")),
                None => (series, ""),
            };
            let mut map = BTreeMap::new();
            // Label values here never contain `",`, so splitting on it is exact.
            for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once("=\"").expect("label pair");
                map.insert(k.to_string(), v.trim_end_matches('"').to_string());
            }
            samples.push((name.to_string(), map, value));
        }
        Scrape { samples, text }
    }

    /// The sum of every sample of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, m, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| m.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Whether any sample of `name` has all of `labels`.
    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|(n, m, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| m.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Whether the metric family `name` is exported (histograms as `_bucket`/`_sum`/`_count`).
    fn exports(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| {
            n == name
                || n.strip_prefix(name)
                    .is_some_and(|s| matches!(s, "_bucket" | "_sum" | "_count"))
        })
    }
}

async fn scrape(h: &Harness) -> Scrape {
    let text = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    Scrape::parse(text)
}

/// Scrapes until `ok` holds (streams finish on their own task, after the client read the end).
async fn scrape_until(h: &Harness, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(h).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} never held:\n{}", s.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn chat(h: &Harness, stream: bool) -> reqwest::Response {
    h.http
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(&h.token)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"model":"affine-winner","messages":[{{"role":"user","content":"2+2?"}}],"stream":{stream}}}"#
        ))
        .send()
        .await
        .expect("request sent")
}

fn fault(kind: FaultKind) -> SimConfig {
    SimConfig {
        fault: Fault {
            kind: Some(kind),
            trigger: Trigger::Always,
        },
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn mixed_traffic_moves_the_counters_and_histograms() {
    let h = Harness::start_with(SimConfig::default(), use_redis).await;
    let reason = [("route", "/v1/reason")];

    // Successes: 3 whole, 1 streamed on /v1/reason; 1 whole, 1 streamed on chat.
    for _ in 0..3 {
        assert_eq!(h.reason(r#"{"input":"2+2?"}"#).await.status(), 200);
    }
    let events = read_events(h.reason(r#"{"input":"2+2?","stream":true}"#).await).await;
    assert_eq!(events.last().unwrap().event, "done");
    assert_eq!(chat(&h, false).await.status(), 200);
    let body = chat(&h, true).await.text().await.unwrap();
    assert!(body.contains("[DONE]"), "{body}");

    // The caller's mistakes: 400, 401 twice.
    expect_problem(h.reason("{not json").await, 400, "invalid_json").await;
    let res = h
        .http
        .post(h.url("/v1/reason"))
        .header("content-type", "application/json")
        .body(r#"{"input":"x"}"#)
        .send()
        .await
        .unwrap();
    expect_problem(res, 401, "auth_missing").await;
    let res = h
        .http
        .post(h.url("/v1/reason"))
        .bearer_auth("not-a-token")
        .header("content-type", "application/json")
        .body(r#"{"input":"x"}"#)
        .send()
        .await
        .unwrap();
    expect_problem(res, 401, "token_invalid").await;

    // The provider's faults: a 500 (whole), a 402 (whole), a break mid-stream.
    h.sim.set_config(fault(FaultKind::Status(500)));
    expect_problem(h.reason(r#"{"input":"x"}"#).await, 502, "upstream_error").await;
    h.sim.set_config(fault(FaultKind::Status(402)));
    expect_problem(h.reason(r#"{"input":"x"}"#).await, 502, "upstream_error").await;
    h.sim
        .set_config(fault(FaultKind::Disconnect { after_chunks: 4 }));
    let events = read_events(h.reason(r#"{"input":"x","stream":true}"#).await).await;
    assert_eq!(events.last().unwrap().event, "error");

    // Both streams' pumps have finished (and settled) once their upstream outcome is counted.
    let s = scrape_until(&h, "every upstream call counted, streams closed", |s| {
        s.sum("agw_upstream_requests_total", &[]) == 9.0 && s.sum("agw_streams_active", &[]) == 0.0
    })
    .await;

    let requests = |labels: &[(&str, &str)]| s.sum("agw_http_requests_total", labels);
    // The stream that broke after its head is a 200: the status alone cannot see it.
    assert_eq!(
        requests(&[reason[0], ("status", "200"), ("code", "none")]),
        5.0,
        "{}",
        s.text
    );
    assert_eq!(
        requests(&[reason[0], ("status", "400"), ("code", "invalid_json")]),
        1.0
    );
    assert_eq!(
        requests(&[reason[0], ("status", "401"), ("code", "auth_missing")]),
        1.0
    );
    assert_eq!(
        requests(&[reason[0], ("status", "401"), ("code", "token_invalid")]),
        1.0
    );
    assert_eq!(
        requests(&[reason[0], ("status", "502"), ("code", "upstream_error")]),
        2.0
    );
    assert_eq!(
        requests(&[("route", "/v1/chat/completions"), ("status", "200")]),
        2.0
    );
    assert_eq!(
        s.sum(
            "agw_stream_failures_total",
            &[reason[0], ("code", "upstream_error")]
        ),
        1.0,
        "the broken stream is an availability error"
    );
    assert_eq!(
        s.sum(
            "agw_stream_failures_total",
            &[("route", "/v1/chat/completions")]
        ),
        0.0
    );
    assert_eq!(
        s.sum("agw_auth_failures_total", &[("code", "auth_missing")]),
        1.0
    );
    assert_eq!(
        s.sum("agw_auth_failures_total", &[("code", "token_invalid")]),
        1.0
    );

    // Upstream calls: 6 answered (4 on reason, 2 on chat), 3 failed.
    assert_eq!(
        s.sum("agw_upstream_requests_total", &[("outcome", "ok")]),
        6.0
    );
    // The provider's 500 is `status`; its 402 (the operator's balance) has its own outcome.
    assert_eq!(
        s.sum("agw_upstream_requests_total", &[("outcome", "status")]),
        1.0
    );
    assert_eq!(
        s.sum(
            "agw_upstream_requests_total",
            &[("outcome", "payment_required")]
        ),
        1.0
    );
    assert_eq!(
        s.sum(
            "agw_upstream_requests_total",
            &[("outcome", "disconnected")]
        ),
        1.0
    );
    assert_eq!(s.sum("agw_upstream_duration_seconds_count", &[]), 9.0);

    // Histograms: every request timed, overhead for each, one TTFT per stream that produced
    // a token (the broken one did, before it broke).
    assert_eq!(
        s.sum("agw_http_request_duration_seconds_count", &reason),
        10.0
    );
    assert_eq!(s.sum("agw_gateway_overhead_seconds_count", &reason), 10.0);
    assert_eq!(s.sum("agw_ttft_seconds_count", &reason), 2.0);
    assert_eq!(
        s.sum(
            "agw_ttft_seconds_count",
            &[("route", "/v1/chat/completions")]
        ),
        1.0
    );
    assert!(
        s.sum("agw_gateway_overhead_seconds_sum", &reason)
            <= s.sum("agw_http_request_duration_seconds_sum", &reason)
    );

    // Redis: every admission is one timed quota script; nothing failed.
    assert!(
        s.sum(
            "agw_redis_command_duration_seconds_count",
            &[("op", "quota_admit")]
        ) >= 8.0
    );
    assert_eq!(s.sum("agw_redis_errors_total", &[]), 0.0);
    assert!(s.has("agw_redis_errors_total", &[("op", "quota_admit")]));
    // Only the scrape itself is in flight: no request leaked the gauge.
    assert_eq!(s.sum("agw_http_requests_in_flight", &[]), 1.0);
}

#[tokio::test]
async fn overhead_excludes_the_time_spent_waiting_for_the_provider() {
    let slow = SimConfig {
        ttft: Duration::from_millis(300),
        ..SimConfig::default()
    };
    let h = Harness::start(slow).await;
    let reason = [("route", "/v1/reason")];
    assert_eq!(h.reason(r#"{"input":"2+2?"}"#).await.status(), 200);
    let events = read_events(h.reason(r#"{"input":"2+2?","stream":true}"#).await).await;
    assert_eq!(events.last().unwrap().event, "done");
    let s = scrape(&h).await;
    // The whole answer took at least the provider's 300 ms; the gateway's share is far less.
    assert!(s.sum("agw_http_request_duration_seconds_sum", &reason) >= 0.3);
    let overhead = s.sum("agw_gateway_overhead_seconds_sum", &reason);
    assert_eq!(s.sum("agw_gateway_overhead_seconds_count", &reason), 2.0);
    assert!(
        overhead < 0.15,
        "overhead {overhead}s includes upstream time"
    );
    // The stream's first token came after the provider's 300 ms.
    assert!(s.sum("agw_ttft_seconds_sum", &reason) >= 0.3);
    // Both fall under the SLO thresholds, which are bucket boundaries.
    assert_eq!(
        s.sum(
            "agw_gateway_overhead_seconds_bucket",
            &[reason[0], ("le", "0.01")]
        ),
        2.0,
        "{}",
        s.text
    );
    assert_eq!(
        s.sum("agw_ttft_seconds_bucket", &[reason[0], ("le", "10")]),
        1.0
    );
}

/// Every `agw_…` metric and `agw:…` recording name in a rules or dashboard text, with the `le`
/// values it selects on `_bucket` series. YAML comments are skipped.
fn referenced(
    text: &str,
) -> (
    BTreeSet<String>,
    BTreeSet<String>,
    BTreeSet<(String, String)>,
) {
    let (mut metrics, mut recorded, mut les) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let ident = |s: &str, extra: char| -> String {
        s.chars()
            .take_while(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == extra
            })
            .collect()
    };
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(i) = rest.find("agw") {
            rest = &rest[i..];
            if let Some(tail) = rest.strip_prefix("agw_") {
                let name = format!("agw_{}", ident(tail, '_'));
                let after = &rest[name.len()..];
                if name.ends_with("_bucket")
                    && let Some(sel) = after.strip_prefix('{').and_then(|a| a.split_once('}'))
                    && let Some((_, le)) = sel.0.split_once("le=\\\"").or(sel.0.split_once("le=\""))
                {
                    let le: String = le.chars().take_while(|c| *c != '"' && *c != '\\').collect();
                    les.insert((name.clone(), le));
                }
                metrics.insert(name);
            } else if let Some(tail) = rest.strip_prefix("agw:") {
                recorded.insert(format!("agw:{}", ident(tail, ':')));
            }
            rest = &rest[3..];
        }
    }
    (metrics, recorded, les)
}

#[tokio::test]
async fn every_metric_the_rules_and_the_dashboard_use_is_exported() {
    let root = env!("CARGO_MANIFEST_DIR");
    let read = |p: &str| std::fs::read_to_string(format!("{root}/{p}")).expect(p);
    let (mut metrics, mut used_recorded, mut les) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for f in RULE_FILES.iter().chain([&DASHBOARD]) {
        let (m, r, l) = referenced(&read(f));
        metrics.extend(m);
        used_recorded.extend(r);
        les.extend(l);
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8));
    assert!(metrics.len() >= 20, "{metrics:?}");

    // Every recording rule the alerts and the dashboard read is defined.
    let recording = read(RULE_FILES[0]);
    for r in &used_recorded {
        assert!(
            recording.contains(&format!("record: {r}\n")),
            "{r} is used but never recorded"
        );
    }

    // Traffic that touches every histogram: a whole answer and a stream, with Redis, and a
    // fallback upstream configured (its series exist from the start).
    // A chain (for the metagraph and deposit series) on the simulated node.
    let chain = chain_sim::ChainSim::new();
    let node = chain.serve(chain_sim::Role::Archive).await.unwrap();
    let node_url = node.url();
    let h = Harness::start_with(SimConfig::default(), |c| {
        use_redis(c);
        c.chain = Some(affine_gateway::config::ChainConfig {
            endpoints: vec![node_url],
            netuids: vec![1],
            requests_per_second: 1000,
            ..Default::default()
        });
        let backup = serde_json::json!({"name": "backup", "url": c.upstream.url});
        c.upstream
            .fallbacks
            .push(serde_json::from_value(backup).unwrap());
    })
    .await;
    assert_eq!(h.reason(r#"{"input":"2+2?"}"#).await.status(), 200);
    let events = read_events(h.reason(r#"{"input":"2+2?","stream":true}"#).await).await;
    assert_eq!(events.last().unwrap().event, "done");
    let s = scrape_until(&h, "the stream counted and the metagraph read", |s| {
        s.sum("agw_upstream_requests_total", &[("outcome", "ok")]) == 2.0
            && s.exports("agw_metagraph_age_seconds")
    })
    .await;

    let missing: Vec<_> = metrics.iter().filter(|m| !s.exports(m)).collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{}", s.text);
    // The thresholds the rules select are bucket boundaries, spelled as the gateway spells them.
    assert!(!les.is_empty());
    for (bucket, le) in &les {
        assert!(
            s.has(bucket, &[("le", le.as_str())]),
            "{bucket} has no le=\"{le}\" bucket"
        );
    }
}

/// Reads a child's stderr lines on a thread, so the test can wait for a line with a deadline.
fn line_reader(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Kills the child if the test ends before it, so no gateway outlives its test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn json_logs_have_one_access_line_per_request_without_credentials() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_affine-gateway"));
    for k in [
        "GATEWAY_REDIS_URL",
        "CHUTES_API_KEY",
        "GATEWAY_JWT_SECRET",
        "GATEWAY_WINNER",
        "RUST_LOG",
    ] {
        cmd.env_remove(k);
    }
    let child = cmd
        .arg("serve")
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEWAY_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut out = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let first = out.next().unwrap().unwrap();
    let dev_token = first.strip_prefix("dev token: ").unwrap().to_string();
    let lines = line_reader(child.0.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = Vec::new();
    let next_line = |log: &mut Vec<String>| {
        let wait = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(wait)
            .unwrap_or_else(|_| panic!("log ended early: {log:#?}"));
        log.push(line.clone());
        line
    };
    while !next_line(&mut log).contains("listening on") {}

    affine_gateway::upstream::client::install_crypto_provider();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let send = |token: &str, rid: &str| {
        rt.block_on(async {
            reqwest::Client::new()
                .post(format!("http://127.0.0.1:{port}/v1/reason"))
                .bearer_auth(token)
                .header("x-request-id", rid)
                .header("content-type", "application/json")
                .body(r#"{"input":"2+2?"}"#)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    assert_eq!(send(&dev_token, "rid-ok-1"), 200);
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNlY3JldA";
    assert_eq!(send(forged, "rid-bad-2"), 401);

    let mut access = BTreeMap::new();
    while access.len() < 2 {
        let line = next_line(&mut log);
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON line: {line}"));
        if v["target"] == "access" {
            access.insert(v["request_id"].as_str().unwrap().to_string(), v);
        }
    }
    let ok = &access["rid-ok-1"];
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(ok["code"], "none");
    assert_eq!(ok["route"], "/v1/reason");
    assert_eq!(ok["account"], "dev");
    assert_eq!(ok["account_kind"], "enterprise");
    assert_eq!(ok["plan"], "enterprise");
    assert_eq!(ok["model"], "affine-champ/Affine-Reasoner-32B");
    assert!(ok["latency_ms"].as_f64().unwrap() >= ok["upstream_ms"].as_f64().unwrap());
    let bad = &access["rid-bad-2"];
    assert_eq!(bad["status"], 401, "{bad}");
    assert_eq!(bad["code"], "token_invalid");
    assert_eq!(bad["account"], "");
    let all = log.join("\n");
    for secret in [dev_token.as_str(), forged, "c2lnbmF0dXJlLXNlY3JldA"] {
        assert!(!all.contains(secret), "a credential reached the log: {all}");
    }
}

// issue #16: with `server.metrics_listen` the metrics have their own port (so a
// NetworkPolicy can keep everyone but Prometheus away from them) and leave the main one.
#[tokio::test]
async fn a_metrics_listener_serves_the_metrics_alone_and_takes_them_off_the_main_port() {
    let h = Harness::start_with(SimConfig::default(), |c| {
        c.server.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = format!("http://{}", h.gw.metrics_addr.expect("a metrics listener"));
    assert_eq!(h.reason(r#"{"input":"hi"}"#).await.status(), 200);
    let scraped = h.http.get(format!("{metrics}/metrics")).send().await;
    let text = scraped
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("agw_http_requests_total{") && text.contains(r#"route="/v1/reason""#),
        "{text}"
    );
    // Nothing else there, and no metrics on the main port any more.
    for path in ["/healthz", "/v1/winner", "/admin/v1/accounts/tester"] {
        let res = h.http.get(format!("{metrics}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path} on the metrics port");
    }
    expect_problem(
        h.http.get(h.url("/metrics")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        h.http.get(h.url("/healthz")).send().await.unwrap().status(),
        200
    );
}
