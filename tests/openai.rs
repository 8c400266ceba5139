//! The OpenAI-compatible surface, as existing SDKs use it.

mod common;

use chutes_sim::SimConfig;
use common::*;

async fn chat(h: &Harness, body: &str) -> reqwest::Response {
    h.post_json("/v1/chat/completions", body).await
}

#[tokio::test]
async fn models_lists_the_alias_and_the_winner() {
    let h = Harness::start(SimConfig::default()).await;
    let v: serde_json::Value = h
        .http
        .get(h.url("/v1/models"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["affine-winner", "affine-champ/Affine-Reasoner-32B"]);
    for m in v["data"].as_array().unwrap() {
        // Fixed prices: the catalogue is never read, so no context window is claimed; a
        // static winner has no revision nor `since_block`.
        assert!(m.get("context_length").is_none(), "{m}");
        assert!(m.get("since_block").is_none(), "{m}");
        assert!(m["price"]["input"]["rao"].as_u64().unwrap() > 0);
    }
}

#[tokio::test]
async fn whole_completion_passes_through_with_the_winner_model() {
    let h = Harness::start(SimConfig::default()).await;
    let res = chat(
        &h,
        r#"{"model":"affine-winner","messages":[{"role":"user","content":[{"type":"text","text":"2+2?"}]}],"max_tokens":100,"temperature":0.2,"user":"u-1"}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["x-affine-model"],
        "affine-champ/Affine-Reasoner-32B"
    );
    let cost: u64 = res.headers()["x-affine-cost-rao"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(res.headers().contains_key("ratelimit-policy"));
    let v: serde_json::Value = res.json().await.unwrap();
    let want = (v["usage"]["prompt_tokens"].as_u64().unwrap() * 500_000).div_ceil(1_000_000)
        + (v["usage"]["completion_tokens"].as_u64().unwrap() * 2_000_000).div_ceil(1_000_000);
    assert_eq!(cost, want, "the enterprise plan's prices");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["content"].is_string());
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let sent = &h.sim.requests()[0].body;
    assert_eq!(sent["model"], "affine-champ/Affine-Reasoner-32B");
    assert_eq!(sent["max_tokens"], 100);
    assert_eq!(sent["temperature"], 0.2);
    assert!(
        sent.get("user").is_none(),
        "client bookkeeping is accepted but not forwarded (the allowlist)"
    );
}

#[tokio::test]
async fn streamed_completion_is_openai_sse() {
    let h = Harness::start(SimConfig::default()).await;
    let res = chat(&h, r#"{"model":"affine-champ/Affine-Reasoner-32B","messages":[{"role":"user","content":"hi"}],"stream":true}"#).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = res.text().await.unwrap();
    let datas: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(datas.last(), Some(&"[DONE]"));
    let chunk: serde_json::Value = serde_json::from_str(datas[0]).unwrap();
    assert_eq!(chunk["object"], "chat.completion.chunk");
    assert!(datas.iter().any(|d| d.contains("\"usage\"")));
    assert_eq!(
        h.sim.requests()[0].body["stream_options"]["include_usage"],
        true
    );
}

#[tokio::test]
async fn errors_use_the_openai_shape() {
    let h = Harness::start(SimConfig::default()).await;
    let res = chat(
        &h,
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(res.status(), 404);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("affine-winner")
    );

    let res = h
        .http
        .post(h.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "auth_missing");
    assert_eq!(v["error"]["type"], "authentication_error");

    for (body, code) in [
        (
            r#"{"model":"affine-winner","messages":[]}"#,
            "invalid_request",
        ),
        (
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            "invalid_request",
        ),
        ("{", "invalid_json"),
        (
            r#"{"model":"affine-winner","messages":[{"role":"user","content":"x"}],"max_tokens":100000}"#,
            "max_tokens_exceeds_plan",
        ),
    ] {
        let res = chat(&h, body).await;
        assert_eq!(res.status(), 400, "{body}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}");
    }
    assert!(h.sim.requests().is_empty());
}

/// Issue #12 item 2: a chat stream whose provider sends one event over the decoder's limit
/// ends with an OpenAI error frame and counts as a stream failure. Before, the chat pump
/// dropped the decoder's error and passed the provider's bytes on as if nothing was wrong,
/// while `/v1/reason` failed the same stream.
#[tokio::test]
async fn a_chat_stream_with_an_oversized_event_ends_with_an_error_frame() {
    use axum::body::{Body, Bytes};
    let huge = Bytes::from(format!("data: {}", "x".repeat(1 << 21)));
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let huge = huge.clone();
            async move {
                let first = Bytes::from_static(
                    b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n",
                );
                let chunks = futures_util::stream::iter([first, huge].map(Ok::<_, std::io::Error>));
                ([("content-type", "text/event-stream")], Body::from_stream(chunks))
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let h = Harness::start_with(SimConfig::default(), |c| {
        c.upstream.url = format!("http://{addr}/v1");
    })
    .await;
    let res = chat(
        &h,
        r#"{"model":"affine-winner","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let last = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let err: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|_| panic!("the stream ends with an error frame, not {:.60}", last));
    assert_eq!(err["error"]["code"], "upstream_error", "{last}");
    let failures = metric(
        &h.http,
        &h.gw.url(),
        r#"agw_stream_failures_total{code="upstream_error",route="/v1/chat/completions"}"#,
    )
    .await;
    assert_eq!(failures, Some(1.0));
}

/// `name`'s `r` and `t` in a `RateLimit` field, and its `q` in `RateLimit-Policy`.
fn ietf(res: &reqwest::Response, name: &str) -> (u64, u64, u64) {
    let param = |field: &str, key: &str| -> u64 {
        let v = res.headers()[field].to_str().unwrap();
        let member = v
            .split(", ")
            .find(|m| m.starts_with(&format!("\"{name}\";")))
            .unwrap_or_else(|| panic!("no `{name}` in {field}: {v}"));
        member
            .split(';')
            .find_map(|p| p.strip_prefix(&format!("{key}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        param("ratelimit-policy", "q"),
        param("ratelimit", "r"),
        param("ratelimit", "t"),
    )
}

/// Seconds of an OpenAI reset duration of whole seconds (`7s`, `1m0s`, `1h2m3s`).
fn go_secs(d: &str) -> u64 {
    let (mut total, mut n) = (0, 0);
    for c in d.chars() {
        match c {
            '0'..='9' => n = n * 10 + u64::from(c.to_digit(10).unwrap()),
            'h' => (total, n) = (total + n * 3600, 0),
            'm' => (total, n) = (total + n * 60, 0),
            's' => (total, n) = (total + n, 0),
            _ => panic!("not a whole-second Go duration: {d}"),
        }
    }
    total
}

fn assert_openai_matches_ietf(res: &reqwest::Response) {
    let h = |n: &str| res.headers()[n].to_str().unwrap().to_owned();
    for (kind, policy) in [("requests", "rpm"), ("tokens", "tpm")] {
        let (q, r, t) = ietf(res, policy);
        assert_eq!(h(&format!("x-ratelimit-limit-{kind}")), q.to_string());
        assert_eq!(h(&format!("x-ratelimit-remaining-{kind}")), r.to_string());
        let reset = h(&format!("x-ratelimit-reset-{kind}"));
        assert!(reset.ends_with('s'), "{reset}");
        assert_eq!(go_secs(&reset), t, "{kind} reset {reset} vs t={t}");
    }
}

#[tokio::test]
async fn openai_ratelimit_headers_agree_with_the_ietf_ones() {
    let h = Harness::start(SimConfig::default()).await;
    let res = chat(
        &h,
        r#"{"model":"affine-winner","messages":[{"role":"user","content":"hi"}],"max_tokens":50}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_openai_matches_ietf(&res);
    let (q, r, _) = ietf(&res, "rpm");
    assert!(r < q, "the request was counted: {r} of {q}");
    let res = h.reason(r#"{"input":"2+2?","max_tokens":50}"#).await;
    assert_eq!(res.status(), 200);
    assert_openai_matches_ietf(&res);
    // A streamed answer: the headers go out before the first event.
    let res = chat(
        &h,
        r#"{"model":"affine-winner","messages":[{"role":"user","content":"hi"}],"max_tokens":50,"stream":true}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_openai_matches_ietf(&res);
}

/// The `data:` payloads of a chat stream.
async fn chat_stream_datas(res: reqwest::Response) -> Vec<String> {
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn reasoning_effort_reaches_the_provider_as_its_thinking_switch() {
    let h = Harness::start(SimConfig::default()).await;
    let msgs =
        r#""model":"affine-winner","messages":[{"role":"user","content":"2+2?"}],"max_tokens":60"#;
    let v: serde_json::Value = chat(&h, &format!(r#"{{{msgs},"reasoning_effort":"low"}}"#))
        .await
        .json()
        .await
        .unwrap();
    let sent = &h.sim.requests()[0].body;
    assert_eq!(sent["chat_template_kwargs"]["enable_thinking"], true);
    assert_eq!(sent["reasoning_effort"], "low");
    assert!(v["choices"][0]["message"]["reasoning_content"].is_string());
    // `none`: thinking off at the provider, which then answers without reasoning.
    let v: serde_json::Value = chat(&h, &format!(r#"{{{msgs},"reasoning_effort":"none"}}"#))
        .await
        .json()
        .await
        .unwrap();
    let sent = &h.sim.requests()[1].body;
    assert_eq!(sent["chat_template_kwargs"]["enable_thinking"], false);
    assert!(sent.get("reasoning_effort").is_none());
    assert!(
        v["choices"][0]["message"]
            .get("reasoning_content")
            .is_none()
    );
    assert!(v["choices"][0]["message"]["content"].is_string());
    // No effort: nothing added, the model's default.
    chat(&h, &format!("{{{msgs}}}")).await;
    assert!(
        h.sim.requests()[2]
            .body
            .get("chat_template_kwargs")
            .is_none()
    );
    // An effort the gateway does not know is refused before the provider is called.
    let res = chat(&h, &format!(r#"{{{msgs},"reasoning_effort":"max"}}"#)).await;
    assert_eq!(res.status(), 400);
    assert_eq!(h.sim.requests().len(), 3);
}

#[tokio::test]
async fn include_reasoning_false_leaves_reasoning_out_of_chat_answers() {
    let h = Harness::start(SimConfig::default()).await;
    let msgs =
        r#""model":"affine-winner","messages":[{"role":"user","content":"2+2?"}],"max_tokens":60"#;
    // Kept by default, whole and streamed.
    let v: serde_json::Value = chat(&h, &format!("{{{msgs}}}")).await.json().await.unwrap();
    assert!(v["choices"][0]["message"]["reasoning_content"].is_string());
    let datas = chat_stream_datas(chat(&h, &format!(r#"{{{msgs},"stream":true}}"#)).await).await;
    assert!(datas.iter().any(|d| d.contains("reasoning_content")));
    for extra in [
        r#""include_reasoning":false"#,
        r#""reasoning":{"exclude":true}"#,
    ] {
        let v: serde_json::Value = chat(&h, &format!("{{{msgs},{extra}}}"))
            .await
            .json()
            .await
            .unwrap();
        let m = &v["choices"][0]["message"];
        assert!(m.get("reasoning_content").is_none(), "{extra}: {m}");
        assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        let datas =
            chat_stream_datas(chat(&h, &format!(r#"{{{msgs},"stream":true,{extra}}}"#)).await)
                .await;
        assert!(!datas.iter().any(|d| d.contains("reasoning")), "{extra}");
        assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));
        assert!(datas.iter().any(|d| d.contains("\"usage\"")));
    }
    assert!(
        h.sim
            .requests()
            .iter()
            .all(|r| r.body.get("include_reasoning").is_none()),
        "the gateway's own control, not forwarded"
    );
}

#[tokio::test]
async fn multi_turn_reasoning_content_is_accepted_and_passed_on() {
    let h = Harness::start(SimConfig::default()).await;
    let res = chat(
        &h,
        r#"{"model":"affine-winner","max_tokens":40,"messages":[
            {"role":"user","content":"Is 61 prime?"},
            {"role":"assistant","content":"Yes.","reasoning_content":"61 has no divisor up to 7."},
            {"role":"user","content":"And 2^61-1?"}]}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert!(v["choices"][0]["message"]["reasoning_content"].is_string());
    let sent = &h.sim.requests()[0].body;
    assert_eq!(
        sent["messages"][1]["reasoning_content"],
        "61 has no divisor up to 7."
    );
    assert_eq!(sent["messages"][1]["content"], "Yes.");
}

#[tokio::test]
async fn reason_takes_a_reasoning_effort() {
    let h = Harness::start(SimConfig::default()).await;
    let v: serde_json::Value = h
        .reason(r#"{"input":"2+2?","max_tokens":60,"reasoning_effort":"none"}"#)
        .await
        .json()
        .await
        .unwrap();
    let sent = &h.sim.requests()[0].body;
    assert_eq!(sent["chat_template_kwargs"]["enable_thinking"], false);
    assert!(v["reasoning"].is_null(), "{v}");
    assert!(v["output"].is_string());
    let v: serde_json::Value = h
        .reason(r#"{"input":"2+2?","max_tokens":60,"reasoning_effort":"high"}"#)
        .await
        .json()
        .await
        .unwrap();
    let sent = &h.sim.requests()[1].body;
    assert_eq!(sent["chat_template_kwargs"]["enable_thinking"], true);
    assert_eq!(sent["reasoning_effort"], "high");
    assert!(v["reasoning"].is_string());
    let res = h
        .reason(r#"{"input":"2+2?","reasoning_effort":"extreme"}"#)
        .await;
    assert_eq!(res.status(), 400);
}
