//! The simulator over real HTTP on loopback.

mod common;

use std::time::Duration;

use chutes_sim::{
    DEFAULT_MODEL, Fault, FaultKind, ReasoningStyle, Sim, SimConfig, SimHandle, SimStats, Trigger,
    fixtures,
};
use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

async fn start(config: SimConfig) -> SimHandle {
    Sim::start(config).await.expect("start simulator")
}

fn faulty(kind: FaultKind, trigger: Trigger) -> SimConfig {
    SimConfig {
        fault: Fault {
            kind: Some(kind),
            trigger,
        },
        ..SimConfig::default()
    }
}

fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

fn fixture_json(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture")
}

/// The fixture's SSE events as JSON (without `[DONE]`).
fn fixture_chunks() -> Vec<Value> {
    sse_data(fixtures::CHAT_COMPLETION_STREAM)
        .into_iter()
        .filter(|d| d != "[DONE]")
        .map(|d| serde_json::from_str(&d).expect("fixture chunk"))
        .collect()
}

fn chunks(reply: &Reply) -> (Vec<Value>, Option<String>) {
    let mut data = reply.sse_data();
    let done =
        (data.last().map(String::as_str) == Some("[DONE]")).then(|| data.pop().unwrap_or_default());
    let values = data
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("chunk not JSON ({e}): {d}")))
        .collect();
    (values, done)
}

/// Concatenated `delta.reasoning_content` and `delta.content` of a stream.
fn streamed_text(chunks: &[Value]) -> (String, String) {
    let mut reasoning = String::new();
    let mut content = String::new();
    for c in chunks {
        if let Some(d) = c["choices"].get(0).map(|ch| &ch["delta"]) {
            reasoning.push_str(d["reasoning_content"].as_str().unwrap_or(""));
            content.push_str(d["content"].as_str().unwrap_or(""));
        }
    }
    (reasoning, content)
}

#[tokio::test]
async fn non_stream_reasoning_content_has_the_fixture_shape() {
    let sim = start(SimConfig::default()).await;
    let body = json!({
        "model": DEFAULT_MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Is 2^61 - 1 prime? π≈3"}
        ],
        "temperature": 0.6, "top_p": 0.95, "seed": 1, "stop": ["</s>"], "unknown_field": {"x": 1}
    });
    let reply = chat(sim.addr(), &body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(
        reply
            .header("x-chutes-invocationid")
            .is_some_and(|v| v.len() == 36)
    );
    assert!(reply.complete);

    let v = reply.json();
    let fixture = fixture_json(fixtures::CHAT_COMPLETION);
    assert_eq!(keys(&v), keys(&fixture));
    assert_eq!(keys(&v["choices"][0]), keys(&fixture["choices"][0]));
    assert_eq!(
        keys(&v["choices"][0]["message"]),
        keys(&fixture["choices"][0]["message"])
    );
    assert_eq!(keys(&v["usage"]), keys(&fixture["usage"]));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], DEFAULT_MODEL);
    assert!(
        v["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-"))
    );

    let message = &v["choices"][0]["message"];
    assert_eq!(message["role"], "assistant");
    let reasoning = message["reasoning_content"].as_str().expect("reasoning");
    let content = message["content"].as_str().expect("content");
    assert_eq!(word_count(reasoning), 24);
    assert_eq!(word_count(content), 16);
    assert!(!content.contains("<think>"));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // 9 + 22 characters -> ceil(31 / 4) = 8, plus 3 per message.
    assert_eq!(v["usage"]["prompt_tokens"], 8 + 6);
    assert_eq!(v["usage"]["completion_tokens"], 40);
    assert_eq!(v["usage"]["total_tokens"], 54);
}

#[tokio::test]
async fn non_stream_think_tags_inline_the_reasoning() {
    let sim = start(SimConfig {
        reasoning_style: ReasoningStyle::ThinkTags,
        reasoning_tokens: 5,
        output_tokens: 3,
        ..SimConfig::default()
    })
    .await;
    let v = chat(sim.addr(), &chat_body(DEFAULT_MODEL, false))
        .await
        .json();
    let fixture = fixture_json(fixtures::CHAT_COMPLETION_THINK_TAGS);
    assert_eq!(
        keys(&v["choices"][0]["message"]),
        keys(&fixture["choices"][0]["message"])
    );
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    let rest = content
        .strip_prefix("<think>\n")
        .expect("opens with <think>");
    let (reasoning, answer) = rest
        .split_once("\n</think>\n\n")
        .expect("closes the think block");
    assert_eq!(word_count(reasoning), 5);
    assert_eq!(word_count(answer), 3);
    assert_eq!(v["usage"]["completion_tokens"], 8);
}

#[tokio::test]
async fn non_stream_without_reasoning_is_content_only() {
    let sim = start(SimConfig {
        reasoning_style: ReasoningStyle::None,
        ..SimConfig::default()
    })
    .await;
    let v = chat(sim.addr(), &chat_body(DEFAULT_MODEL, false))
        .await
        .json();
    let message = &v["choices"][0]["message"];
    assert!(message.get("reasoning_content").is_none(), "{message}");
    let content = message["content"].as_str().expect("content");
    assert!(!content.contains("think>"));
    assert_eq!(word_count(content), 16);
    assert_eq!(v["usage"]["completion_tokens"], 16);
}

#[tokio::test]
async fn stream_has_the_fixture_shape_and_the_same_text() {
    let sim = start(SimConfig::default()).await;
    let whole = chat(sim.addr(), &chat_body(DEFAULT_MODEL, false))
        .await
        .json();
    // Same request number as the non-streamed one, hence the same words.
    sim.set_config(SimConfig::default());
    let reply = chat(sim.addr(), &chat_body(DEFAULT_MODEL, true)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert!(reply.complete, "chunked terminator");

    let (chunks, done) = chunks(&reply);
    assert_eq!(done.as_deref(), Some("[DONE]"));
    let fixture = fixture_chunks();
    let (f_first, f_usage) = (&fixture[0], &fixture[fixture.len() - 1]);
    let f_delta = &fixture[1];
    let f_last = &fixture[fixture.len() - 2];

    let first = &chunks[0];
    assert_eq!(keys(first), keys(f_first));
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(first["object"], "chat.completion.chunk");

    let usage = &chunks[chunks.len() - 1];
    assert_eq!(keys(usage), keys(f_usage));
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 40);

    let deltas = &chunks[1..chunks.len() - 1];
    assert_eq!(deltas.len(), 40, "one word per delta");
    for (i, d) in deltas.iter().enumerate() {
        assert_eq!(keys(d), keys(f_delta));
        assert_eq!(d["id"], first["id"]);
        let finish = &d["choices"][0]["finish_reason"];
        if i == deltas.len() - 1 {
            assert_eq!(keys(&d["choices"][0]), keys(&f_last["choices"][0]));
            assert_eq!(finish, "stop");
            assert!(d["choices"][0]["delta"]["content"].is_string());
        } else {
            assert!(finish.is_null());
        }
    }
    let (reasoning, content) = streamed_text(&chunks);
    let message = &whole["choices"][0]["message"];
    assert_eq!(
        reasoning,
        message["reasoning_content"].as_str().unwrap_or_default()
    );
    assert_eq!(content, message["content"].as_str().unwrap_or_default());
}

#[tokio::test]
async fn stream_think_tags_cut_by_characters_split_the_tags() {
    let config = SimConfig {
        reasoning_style: ReasoningStyle::ThinkTags,
        delta_chars: Some(3),
        ..SimConfig::default()
    };
    let sim = start(config.clone()).await;
    let whole = chat(sim.addr(), &chat_body(DEFAULT_MODEL, false))
        .await
        .json();
    sim.set_config(config);
    let reply = chat(sim.addr(), &chat_body(DEFAULT_MODEL, true)).await;
    let (chunks, done) = chunks(&reply);
    assert!(done.is_some());
    let pieces: Vec<&str> = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .expect("content delta")
        })
        .collect();
    assert!(
        pieces
            .iter()
            .all(|p| p.chars().count() <= 3 && !p.is_empty())
    );
    assert!(
        pieces
            .iter()
            .all(|p| !p.contains("<think>") && !p.contains("</think>"))
    );
    let (reasoning, content) = streamed_text(&chunks);
    assert!(reasoning.is_empty());
    assert_eq!(
        content,
        whole["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
    );
    assert!(content.starts_with("<think>\n") && content.contains("\n</think>\n\n"));
}

#[tokio::test]
async fn stream_think_tags_by_word_send_tags_whole() {
    let sim = start(SimConfig {
        reasoning_style: ReasoningStyle::ThinkTags,
        reasoning_tokens: 3,
        output_tokens: 2,
        ..SimConfig::default()
    })
    .await;
    let (chunks, _) = chunks(&chat(sim.addr(), &chat_body(DEFAULT_MODEL, true)).await);
    let pieces: Vec<&str> = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .expect("content delta")
        })
        .collect();
    assert_eq!(pieces.len(), 3 + 2 + 2);
    assert_eq!(pieces[0], "<think>\n");
    assert_eq!(pieces[4], "\n</think>\n\n");
    assert_eq!(chunks[chunks.len() - 1]["usage"]["completion_tokens"], 5);
}

/// `"created"` is the wall clock in seconds and may tick between two requests.
fn without_created(bytes: &[u8]) -> String {
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("\"created\":") {
        out.push_str(&rest[..i + 10]);
        rest = rest[i + 10..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn fragmented_streams_carry_the_same_bytes() {
    let sim = start(SimConfig::default()).await;
    let plain = chat(sim.addr(), &chat_body(DEFAULT_MODEL, true)).await;
    sim.set_config(SimConfig {
        fragment_bytes: Some(7),
        ..SimConfig::default()
    });
    let fragmented = chat(sim.addr(), &chat_body(DEFAULT_MODEL, true)).await;
    assert!(fragmented.complete);
    assert_eq!(
        without_created(&fragmented.body),
        without_created(&plain.body)
    );

    let frames = &fragmented.frames;
    assert!(
        frames.len() > fragmented.body.len() / 7,
        "{} frames",
        frames.len()
    );
    assert!(frames.iter().all(|f| f.len() <= 7));
    assert!(
        frames.iter().any(|f| std::str::from_utf8(f).is_err()),
        "some frame splits a multi-byte character"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.contains(&b'\n') && !f.ends_with(b"\n\n")),
        "some frame splits an SSE event"
    );
}

#[tokio::test]
async fn status_faults_send_chutes_bodies_and_headers() {
    let sim = start(SimConfig::default()).await;
    for (code, body) in [
        (401, fixtures::ERROR_401),
        (402, fixtures::ERROR_402),
        (404, fixtures::ERROR_404),
        (429, fixtures::ERROR_429),
        (503, fixtures::ERROR_503),
        (500, r#"{"detail":"Internal Server Error"}"#),
        (502, r#"{"detail":"Internal Server Error"}"#),
    ] {
        sim.set_config(faulty(FaultKind::Status(code), Trigger::Always));
        for stream in [false, true] {
            let reply = chat(sim.addr(), &chat_body(DEFAULT_MODEL, stream)).await;
            assert_eq!(reply.status, code);
            assert_eq!(reply.json(), fixture_json(body), "{code}");
            assert!(reply.header("x-chutes-invocationid").is_some(), "{code}");
            let retry = reply.header("retry-after");
            if matches!(code, 429 | 503) {
                assert_eq!(retry, Some("1"));
            } else {
                assert_eq!(retry, None, "{code}");
            }
        }
    }
}

#[tokio::test]
async fn garbage_is_not_json() {
    let sim = start(faulty(FaultKind::Garbage, Trigger::Always)).await;
    let reply = chat(sim.addr(), &chat_body(DEFAULT_MODEL, false)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());

    let reply = chat(sim.addr(), &chat_body(DEFAULT_MODEL, true)).await;
    assert_eq!(reply.status, 200);
    let data = reply.sse_data();
    let not_json = data
        .iter()
        .filter(|d| *d != "[DONE]" && serde_json::from_str::<Value>(d).is_err())
        .count();
    assert!(not_json >= 2, "{data:?}");
    assert!(
        data.iter()
            .all(|d| d == "[DONE]" || serde_json::from_str::<Value>(d).is_err())
    );
}

#[tokio::test]
async fn disconnect_cuts_the_stream_after_n_chunks() {
    let sim = start(faulty(
        FaultKind::Disconnect { after_chunks: 3 },
        Trigger::Always,
    ))
    .await;
    let reply = chat(sim.addr(), &chat_body(DEFAULT_MODEL, true)).await;
    assert_eq!(reply.status, 200);
    assert!(!reply.complete, "no chunked terminator");
    let (chunks, done) = chunks(&reply);
    assert_eq!(chunks.len(), 3);
    assert_eq!(done, None);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));

    let reply = chat(sim.addr(), &chat_body(DEFAULT_MODEL, false)).await;
    assert_eq!(reply.status, 200);
    assert!(!reply.complete, "short of Content-Length");
    let announced: usize = reply
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("length");
    assert!(!reply.body.is_empty() && reply.body.len() < announced);

    let stats = eventually(|| sim.stats(), |s| s.in_flight == 0).await;
    assert_eq!(stats.client_disconnects, 2);
    assert_eq!(stats.completed, 0);
}

#[tokio::test]
async fn stall_sends_nothing_until_the_client_leaves() {
    let sim = start(faulty(FaultKind::Stall, Trigger::Always)).await;
    for stream in [false, true] {
        let body = chat_body(DEFAULT_MODEL, stream);
        let mut conn = send(sim.addr(), "POST", "/v1/chat/completions", &[], Some(&body)).await;
        eventually(|| sim.stats(), |s| s.in_flight == 1).await;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(300), conn.read(&mut byte)).await;
        assert!(read.is_err(), "stalled answers send no byte: {read:?}");
        drop(conn);
        eventually(|| sim.stats(), |s| s.in_flight == 0).await;
    }
    let stats = sim.stats();
    assert_eq!(stats.client_disconnects, 2);
    assert_eq!(stats.completed, 0);
}

#[tokio::test]
async fn stall_after_sends_n_chunks_then_nothing() {
    let sim = start(faulty(
        FaultKind::StallAfter { after_chunks: 2 },
        Trigger::Always,
    ))
    .await;
    let body = chat_body(DEFAULT_MODEL, true);
    let mut conn = send(sim.addr(), "POST", "/v1/chat/completions", &[], Some(&body)).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until two complete events are in.
    while parse_events(&raw) < 2 {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("chunks arrive")
            .expect("read");
        assert!(n > 0, "closed early");
        raw.extend_from_slice(&buf[..n]);
    }
    let more = tokio::time::timeout(Duration::from_millis(300), conn.read(&mut buf)).await;
    assert!(more.is_err(), "nothing after the stall point: {more:?}");
    let reply = parse(&raw);
    assert!(!reply.complete);
    assert_eq!(reply.sse_data().len(), 2);
    drop(conn);
    let stats = eventually(|| sim.stats(), |s| s.in_flight == 0).await;
    assert_eq!(stats.client_disconnects, 1);
}

fn parse_events(raw: &[u8]) -> usize {
    if find_head_end(raw).is_none() {
        return 0;
    }
    let reply = parse(raw);
    String::from_utf8_lossy(&reply.body).matches("\n\n").count()
}

fn find_head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n")
}

#[tokio::test]
async fn nth_request_faults_only_that_request() {
    let sim = start(faulty(FaultKind::Status(503), Trigger::NthRequest(3))).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            chat(sim.addr(), &chat_body(DEFAULT_MODEL, false))
                .await
                .status,
        );
    }
    assert_eq!(statuses, [200, 200, 503, 200, 200]);

    // A new config starts counting again.
    sim.set_config(faulty(FaultKind::Status(429), Trigger::NthRequest(1)));
    assert_eq!(
        chat(sim.addr(), &chat_body(DEFAULT_MODEL, false))
            .await
            .status,
        429
    );
    assert_eq!(
        chat(sim.addr(), &chat_body(DEFAULT_MODEL, false))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn every_nth_faults_multiples() {
    let sim = start(faulty(FaultKind::Status(500), Trigger::EveryNth(2))).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            chat(sim.addr(), &chat_body(DEFAULT_MODEL, false))
                .await
                .status,
        );
    }
    assert_eq!(statuses, [200, 500, 200, 500, 200, 500]);
}

async fn probability_pattern(seed: u64) -> Vec<u16> {
    let sim = start(SimConfig {
        seed,
        ..faulty(FaultKind::Status(503), Trigger::Probability(0.5))
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..24 {
        statuses.push(
            chat(sim.addr(), &chat_body(DEFAULT_MODEL, false))
                .await
                .status,
        );
    }
    sim.shutdown().await;
    statuses
}

#[tokio::test]
async fn probability_with_a_fixed_seed_is_reproducible() {
    let a = probability_pattern(11).await;
    let b = probability_pattern(11).await;
    let c = probability_pattern(12).await;
    assert_eq!(a, b);
    assert!(a.contains(&200) && a.contains(&503), "{a:?}");
    assert_ne!(a, c, "another seed, another pattern");
}

#[tokio::test]
async fn max_in_flight_counts_concurrent_requests() {
    let sim = start(SimConfig {
        ttft: Duration::from_millis(400),
        ..SimConfig::default()
    })
    .await;
    let addr = sim.addr();
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move { chat(addr, &chat_body(DEFAULT_MODEL, i % 2 == 0)).await })
        })
        .collect();
    for t in tasks {
        let reply = t.await.expect("task");
        assert_eq!(reply.status, 200);
        assert!(reply.complete);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "ttft was honoured"
    );
    let stats = eventually(|| sim.stats(), |s| s.in_flight == 0).await;
    assert_eq!(
        stats,
        SimStats {
            requests_total: 8,
            in_flight: 0,
            max_in_flight: 8,
            completed: 8,
            client_disconnects: 0
        }
    );
}

#[tokio::test]
async fn streamed_tokens_are_paced() {
    let sim = start(SimConfig {
        ttft: Duration::from_millis(100),
        tokens_per_sec: 100.0,
        reasoning_tokens: 10,
        output_tokens: 11,
        ..SimConfig::default()
    })
    .await;
    let started = std::time::Instant::now();
    let reply = chat(sim.addr(), &chat_body(DEFAULT_MODEL, true)).await;
    // ttft, then 20 gaps of 10 ms after the first token.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let (chunks, done) = chunks(&reply);
    assert_eq!(chunks.len(), 1 + 21 + 1);
    assert!(done.is_some());
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let sim = start(SimConfig {
        require_api_key: Some("cpk_test".into()),
        ..SimConfig::default()
    })
    .await;
    let body = chat_body(DEFAULT_MODEL, false);
    for auth in [None, Some("Bearer nope"), Some("cpk_test")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let reply = request(
            sim.addr(),
            "POST",
            "/v1/chat/completions",
            &headers,
            Some(&body),
        )
        .await;
        assert_eq!(reply.status, 401, "{auth:?}");
        assert_eq!(reply.json(), fixture_json(fixtures::ERROR_401));
        let models = request(sim.addr(), "GET", "/v1/models", &headers, None).await;
        assert_eq!(models.status, 401, "{auth:?}");
    }
    let ok = [("Authorization", "Bearer cpk_test")];
    let reply = request(sim.addr(), "POST", "/v1/chat/completions", &ok, Some(&body)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        request(sim.addr(), "GET", "/v1/models", &ok, None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn requests_are_recorded_with_their_body() {
    let sim = start(SimConfig {
        record_requests: 2,
        ..SimConfig::default()
    })
    .await;
    let body = json!({"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "日本"}], "max_tokens": 7});
    let auth = [("Authorization", "Bearer k1")];
    request(sim.addr(), "GET", "/v1/models", &[], None).await;
    request(
        sim.addr(),
        "POST",
        "/v1/chat/completions",
        &auth,
        Some(&body.to_string()),
    )
    .await;
    request(
        sim.addr(),
        "POST",
        "/v1/chat/completions",
        &[],
        Some("{not json"),
    )
    .await;

    let recorded = sim.requests();
    assert_eq!(recorded.len(), 2, "only the latest two are kept");
    assert_eq!(recorded[0].method, "POST");
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    assert_eq!(recorded[0].authorization.as_deref(), Some("Bearer k1"));
    assert_eq!(recorded[0].body, body);
    assert_eq!(recorded[1].body, Value::String("{not json".into()));
    assert_eq!(recorded[1].authorization, None);

    let over_http = request(sim.addr(), "GET", "/_sim/requests", &[], None)
        .await
        .json();
    assert_eq!(over_http[0]["body"], body);
    assert_eq!(over_http[0]["authorization"], "Bearer k1");

    sim.set_config(SimConfig {
        record_requests: 0,
        ..SimConfig::default()
    });
    assert!(sim.requests().is_empty());
    chat(sim.addr(), &chat_body(DEFAULT_MODEL, false)).await;
    assert!(sim.requests().is_empty(), "recording off");
}

#[tokio::test]
async fn max_tokens_truncates_with_length() {
    let sim = start(SimConfig::default()).await;
    let body = |max: u64, stream: bool| {
        json!({"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "hi"}],
               "max_tokens": max, "stream": stream})
        .to_string()
    };
    let v = chat(sim.addr(), &body(10, false)).await.json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 10);
    assert_eq!(
        word_count(
            v["choices"][0]["message"]["reasoning_content"]
                .as_str()
                .unwrap_or("")
        ),
        10
    );
    assert_eq!(v["choices"][0]["message"]["content"], "");

    let v = chat(sim.addr(), &body(30, false)).await.json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        word_count(v["choices"][0]["message"]["content"].as_str().unwrap_or("")),
        6
    );

    let v = chat(sim.addr(), &body(40, false)).await.json();
    assert_eq!(
        v["choices"][0]["finish_reason"], "stop",
        "exactly enough is not a cut"
    );

    let (chunks, done) = chunks(&chat(sim.addr(), &body(30, true)).await);
    assert!(done.is_some());
    let last_delta = &chunks[chunks.len() - 2];
    assert_eq!(last_delta["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[chunks.len() - 1]["usage"]["completion_tokens"], 30);
    let (reasoning, content) = streamed_text(&chunks);
    assert_eq!((word_count(&reasoning), word_count(&content)), (24, 6));

    sim.set_config(SimConfig {
        reasoning_style: ReasoningStyle::ThinkTags,
        ..SimConfig::default()
    });
    let v = chat(sim.addr(), &body(5, false)).await.json();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
    assert!(
        content.starts_with("<think>\n") && !content.contains("</think>"),
        "{content}"
    );
}

#[tokio::test]
async fn invalid_requests_get_fastapi_errors() {
    let sim = start(SimConfig::default()).await;
    for body in [
        "{not json",
        r#"{"model":"affine-champ/Affine-Reasoner-32B"}"#,
        r#"{"model":"affine-champ/Affine-Reasoner-32B","messages":[]}"#,
        r#"{"model":"affine-champ/Affine-Reasoner-32B","messages":"hi"}"#,
        r#"{"messages":[{"role":"user","content":"hi"}]}"#,
    ] {
        let reply = chat(sim.addr(), body).await;
        assert_eq!(reply.status, 400, "{body}");
        assert!(reply.json()["detail"].is_string(), "{body}");
    }
    let reply = chat(sim.addr(), &chat_body("org/Other-Model", false)).await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.json(),
        json!({"detail": "model not found: org/Other-Model"})
    );
}

#[tokio::test]
async fn models_lists_the_served_model_first() {
    let sim = start(SimConfig {
        model: "org/Served".into(),
        ..SimConfig::default()
    })
    .await;
    let v = request(sim.addr(), "GET", "/v1/models", &[], None)
        .await
        .json();
    let fixture = fixture_json(fixtures::MODELS);
    assert_eq!(v["data"][0]["id"], "org/Served");
    assert_eq!(v["data"][0]["root"], "org/Served");
    assert_eq!(v["data"][0]["price"], fixture["data"][0]["price"]);
    assert_eq!(v["data"][1], fixture["data"][1]);
    assert_eq!(sim.base_url(), format!("http://{}/v1", sim.addr()));
    assert_eq!(
        chat(sim.addr(), &chat_body("org/Served", false))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn stats_are_served_over_http() {
    let sim = start(SimConfig::default()).await;
    chat(sim.addr(), &chat_body(DEFAULT_MODEL, false)).await;
    eventually(|| sim.stats(), |s| s.completed == 1).await;
    let v: SimStats = serde_json::from_value(
        request(sim.addr(), "GET", "/_sim/stats", &[], None)
            .await
            .json(),
    )
    .expect("stats json");
    assert_eq!(v.requests_total, 1, "the /_sim endpoints are not counted");
    assert_eq!(v.completed, 1);
}

#[tokio::test]
async fn shutdown_ends_stalled_streams() {
    let sim = start(faulty(
        FaultKind::StallAfter { after_chunks: 1 },
        Trigger::Always,
    ))
    .await;
    let body = chat_body(DEFAULT_MODEL, true);
    let mut conn = send(sim.addr(), "POST", "/v1/chat/completions", &[], Some(&body)).await;
    let mut first = [0u8; 1];
    assert_eq!(conn.read(&mut first).await.expect("headers arrive"), 1);
    tokio::time::timeout(Duration::from_secs(10), sim.shutdown())
        .await
        .expect("shutdown does not wait for the stalled stream");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
        .await
        .expect("connection closed after shutdown");
}
