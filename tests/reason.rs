//! `/v1/reason` end to end: real HTTP over loopback, gateway and simulator in-process.

mod common;

use chutes_sim::{ReasoningStyle, SimConfig};
use common::*;

fn sim() -> SimConfig {
    SimConfig::default()
}

#[tokio::test]
async fn non_streaming_answer_follows_the_contract() {
    let h = Harness::start(sim()).await;
    let res = h.reason(r#"{"input":"2+2?"}"#).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["x-affine-model"],
        "affine-champ/Affine-Reasoner-32B"
    );
    let cost_header: u64 = res.headers()["x-affine-cost-rao"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(res.headers().contains_key("x-request-id"));
    let v: serde_json::Value = res.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("rsn_"));
    assert_eq!(v["object"], "reason.result");
    assert!(v["created"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(v["model"]["id"], "affine-champ/Affine-Reasoner-32B");
    assert_eq!(v["model"]["source"], "static");
    assert!(v["model"].as_object().unwrap().contains_key("revision"));
    assert!(!v["output"].as_str().unwrap().is_empty());
    assert!(!v["reasoning"].as_str().unwrap().is_empty());
    assert_eq!(v["finish_reason"], "stop");
    let u = &v["usage"];
    assert!(u["input_tokens"].as_u64().unwrap() > 0);
    assert!(u["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap()
    );
    // The enterprise plan's prices: 500,000 and 2,000,000 rao per 1M tokens, rounded up.
    let want = (u["input_tokens"].as_u64().unwrap() * 500_000).div_ceil(1_000_000)
        + (u["output_tokens"].as_u64().unwrap() * 2_000_000).div_ceil(1_000_000);
    assert_eq!(v["cost"]["rao"], want);
    assert_eq!(cost_header, want);
    assert_eq!(v["cost"]["tao"], format!("0.{want:09}"));
    assert!(v["timing"]["ttft_ms"].as_u64().unwrap() <= v["timing"]["total_ms"].as_u64().unwrap());

    // What the gateway sent upstream.
    let sent = h.sim.requests();
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.authorization.as_deref(),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    assert_eq!(r.body["model"], "affine-champ/Affine-Reasoner-32B");
    assert_eq!(r.body["messages"][0]["role"], "user");
    assert_eq!(r.body["messages"][0]["content"], "2+2?");
    assert_eq!(r.body["max_tokens"], 2048);
    assert_eq!(r.body["stream"], false);
}

#[tokio::test]
async fn request_options_are_translated() {
    let h = Harness::start(sim()).await;
    let res = h
        .reason(
            r#"{"input":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}],
                "system":"sys","max_tokens":300,"temperature":0.6,"top_p":0.95,"seed":7,"stop":["END"]}"#,
        )
        .await;
    assert_eq!(res.status(), 200);
    let b = &h.sim.requests()[0].body;
    let roles: Vec<&str> = b["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(b["max_tokens"], 300);
    assert_eq!(b["temperature"], 0.6);
    assert_eq!(b["top_p"], 0.95);
    assert_eq!(b["seed"], 7);
    assert_eq!(b["stop"][0], "END");
}

#[tokio::test]
async fn think_tags_are_split_out_of_the_output() {
    let h = Harness::start(SimConfig {
        reasoning_style: ReasoningStyle::ThinkTags,
        ..sim()
    })
    .await;
    let v: serde_json::Value = h.reason(r#"{"input":"x"}"#).await.json().await.unwrap();
    let out = v["output"].as_str().unwrap();
    assert!(!out.is_empty());
    assert!(!out.contains("think>"), "{out}");
    assert!(!v["reasoning"].as_str().unwrap().is_empty());

    let v: serde_json::Value = h
        .reason(r#"{"input":"x","include_reasoning":false}"#)
        .await
        .json()
        .await
        .unwrap();
    assert!(v["reasoning"].is_null());
    assert!(!v["output"].as_str().unwrap().contains("think>"));
}

#[tokio::test]
async fn max_tokens_truncation_reports_length() {
    let h = Harness::start(sim()).await;
    let v: serde_json::Value = h
        .reason(r#"{"input":"x","max_tokens":5}"#)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["finish_reason"], "length");
    assert_eq!(v["usage"]["output_tokens"], 5);
}

#[tokio::test]
async fn streaming_answer_is_well_formed_sse_ending_in_one_done() {
    let h = Harness::start(sim()).await;
    let res = h.reason(r#"{"input":"2+2?","stream":true}"#).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(
        res.headers()["x-affine-model"],
        "affine-champ/Affine-Reasoner-32B"
    );
    let events = read_events(res).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "done");
    assert_eq!(events.iter().filter(|e| e.event == "done").count(), 1);
    assert!(events.iter().all(|e| e.event != "error"));
    // reasoning comes before output
    let first_output = events.iter().position(|e| e.event == "output").unwrap();
    assert!(
        events[..first_output]
            .iter()
            .any(|e| e.event == "reasoning")
    );
    assert!(
        events[first_output..]
            .iter()
            .all(|e| e.event != "reasoning")
    );
    assert!(!text_of(&events, "output").is_empty());
    let d = &last.data;
    assert!(d.get("output").is_none() && d.get("reasoning").is_none());
    assert!(d["id"].as_str().unwrap().starts_with("rsn_"));
    assert!(d["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let want = (d["usage"]["input_tokens"].as_u64().unwrap() * 500_000).div_ceil(1_000_000)
        + (d["usage"]["output_tokens"].as_u64().unwrap() * 2_000_000).div_ceil(1_000_000);
    assert_eq!(d["cost"]["rao"], want);

    let b = &h.sim.requests()[0].body;
    assert_eq!(b["stream"], true);
    assert_eq!(b["stream_options"]["include_usage"], true);
}

/// The same seeded answer, streamed with `<think>` tags cut across deltas and the SSE bytes
/// cut into 7-byte frames (inside lines and multi-byte characters), must come out exactly as
/// the unsplit non-streaming answer.
#[tokio::test]
async fn think_split_across_chunk_boundaries_matches_the_whole_answer() {
    let whole = Harness::start(SimConfig {
        reasoning_style: ReasoningStyle::ThinkTags,
        ..sim()
    })
    .await;
    let v: serde_json::Value = whole.reason(r#"{"input":"x"}"#).await.json().await.unwrap();

    for (delta_chars, fragment) in [(1, 1), (3, 7), (5, 2)] {
        let split = Harness::start(SimConfig {
            reasoning_style: ReasoningStyle::ThinkTags,
            delta_chars: Some(delta_chars),
            fragment_bytes: Some(fragment),
            ..sim()
        })
        .await;
        let events = read_events(split.reason(r#"{"input":"x","stream":true}"#).await).await;
        assert_eq!(events.last().unwrap().event, "done");
        let out = text_of(&events, "output");
        assert!(!out.contains('<'), "{out}");
        assert_eq!(out, v["output"].as_str().unwrap());
        assert_eq!(
            text_of(&events, "reasoning"),
            v["reasoning"].as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn streaming_without_reasoning_sends_no_reasoning_events() {
    let h = Harness::start(sim()).await;
    let events = read_events(
        h.reason(r#"{"input":"x","stream":true,"include_reasoning":false}"#)
            .await,
    )
    .await;
    assert!(events.iter().all(|e| e.event != "reasoning"));
    assert_eq!(events.last().unwrap().event, "done");
}

#[tokio::test]
async fn bad_requests_get_precise_codes() {
    let h = Harness::start_with(sim(), |c| c.max_body_bytes = 1024).await;
    expect_problem(
        h.reason(r#"{"input":"x","inptu":1}"#).await,
        400,
        "unknown_field",
    )
    .await;
    expect_problem(h.reason(r#"{"input":"x""#).await, 400, "invalid_json").await;
    expect_problem(h.reason(r#"{"input":""}"#).await, 400, "invalid_request").await;
    expect_problem(
        h.reason(r#"{"input":"x","max_tokens":1000000}"#).await,
        400,
        "max_tokens_exceeds_plan",
    )
    .await;
    let res = h
        .http
        .post(h.url("/v1/reason"))
        .bearer_auth(&h.token)
        .header("content-type", "text/plain")
        .body(r#"{"input":"x"}"#)
        .send()
        .await
        .unwrap();
    expect_problem(res, 415, "unsupported_media_type").await;
    let res = h
        .http
        .post(h.url("/v1/reason"))
        .bearer_auth(&h.token)
        .body(r#"{"input":"x"}"#)
        .send()
        .await
        .unwrap();
    expect_problem(res, 415, "unsupported_media_type").await;
    let big = format!(r#"{{"input":"{}"}}"#, "a".repeat(2000));
    expect_problem(h.reason(&big).await, 413, "body_too_large").await;
    let res = h.http.get(h.url("/v1/nope")).send().await.unwrap();
    expect_problem(res, 404, "not_found").await;
    let res = h.http.get(h.url("/v1/reason")).send().await.unwrap();
    expect_problem(res, 405, "method_not_allowed").await;
    assert!(
        h.sim.requests().is_empty(),
        "nothing invalid reached the upstream"
    );
}

#[tokio::test]
async fn request_id_is_echoed_when_valid_and_replaced_otherwise() {
    let h = Harness::start(sim()).await;
    let send = |rid: Option<&'static str>| {
        let mut rb = h.http.get(h.url("/healthz"));
        if let Some(r) = rid {
            rb = rb.header("x-request-id", r);
        }
        rb.send()
    };
    let res = send(Some("abc-123_x.y")).await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123_x.y");
    for bad in [Some("has space"), Some("a/b"), None] {
        let res = send(bad).await.unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    let long: &'static str = Box::leak("a".repeat(129).into_boxed_str());
    let res = send(Some(long)).await.unwrap();
    assert_ne!(res.headers()["x-request-id"], long);
    // errors carry the echoed id in the body too
    let res = h
        .http
        .post(h.url("/v1/reason"))
        .bearer_auth(&h.token)
        .header("content-type", "application/json")
        .header("x-request-id", "trace-42")
        .body("{")
        .send()
        .await
        .unwrap();
    let body = expect_problem(res, 400, "invalid_json").await;
    assert_eq!(body["request_id"], "trace-42");
}

#[tokio::test]
async fn public_routes_answer() {
    let h = Harness::start(sim()).await;
    let v: serde_json::Value = h
        .http
        .get(h.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
    let res = h.http.get(h.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = h
        .http
        .get(h.url("/v1/winner"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["model"]["id"], "affine-champ/Affine-Reasoner-32B");
    assert_eq!(v["upstream"], h.sim.base_url());
    assert!(
        time::OffsetDateTime::parse(
            v["since"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
    let v: serde_json::Value = h
        .http
        .get(h.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["openapi"], "3.1.0");
    let page = h
        .http
        .get(h.url("/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("/v1/reason") && page.contains("error-upstream_timeout"));
    h.reason(r#"{"input":"x"}"#).await;
    let m = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"agw_http_requests_total{code="none",method="POST",route="/v1/reason",status="200"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn without_a_winner_reason_is_503_no_winner_and_not_ready() {
    let h = Harness::start_with(sim(), |c| {
        c.winner.model = None;
        // Nothing listens on the discard port: Affine is unreachable, so no winner is known.
        c.winner.affine_api_url = "http://127.0.0.1:9/api/v1".into();
    })
    .await;
    let body = expect_problem(h.reason(r#"{"input":"x"}"#).await, 503, "no_winner").await;
    assert!(body["detail"].as_str().unwrap().contains("winner"));
    let res = h.http.get(h.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["checks"]["winner"], "missing");
}

#[tokio::test]
async fn graceful_shutdown_completes_an_in_flight_stream() {
    let mut h = Harness::start(SimConfig {
        tokens_per_sec: 40.0,
        reasoning_tokens: 10,
        output_tokens: 30,
        ..sim()
    })
    .await;
    let mut res = h.reason(r#"{"input":"x","stream":true}"#).await;
    assert_eq!(res.status(), 200);
    // Wait until the stream is really flowing, then ask the server to stop.
    let first = res.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    h.gw.begin_shutdown();
    let mut dec = affine_gateway::upstream::sse::SseDecoder::new(1 << 20);
    dec.push(&first);
    let mut names = Vec::new();
    while let Some(chunk) = res.chunk().await.expect("stream survives the shutdown") {
        dec.push(&chunk);
        while let Some(ev) = dec.next_event().unwrap() {
            names.push(ev.event.unwrap_or_default());
        }
    }
    assert_eq!(names.last().map(String::as_str), Some("done"), "{names:?}");
    let addr = h.gw.addr;
    h.gw.join().await.expect("serve ends cleanly");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
