//! `POST /v1/responses`: the stateless subset of Open Responses on the one pipeline.

mod common;

use chutes_sim::{FaultKind, SimConfig};
use common::*;

async fn responses(h: &Harness, body: &str) -> reqwest::Response {
    h.post_json("/v1/responses", body).await
}

#[tokio::test]
async fn a_whole_response_has_reasoning_message_usage_and_cost() {
    let h = Harness::start(SimConfig::default()).await;
    let res = responses(
        &h,
        r#"{"model":"affine-winner","input":[{"role":"user","content":[{"type":"input_text","text":"Is 61 prime?"}]}],
            "instructions":"be brief","max_output_tokens":200,"temperature":0.3,"metadata":{"run":"r1"}}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("ratelimit-policy"));
    assert!(res.headers().contains_key("x-ratelimit-remaining-requests"));
    let header_cost: u64 = res.headers()["x-affine-cost-rao"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["model"], "affine-champ/Affine-Reasoner-32B");
    let out = v["output"].as_array().unwrap();
    assert_eq!(out.len(), 2, "{v}");
    assert_eq!(out[0]["type"], "reasoning");
    assert!(!out[0]["content"][0]["text"].as_str().unwrap().is_empty());
    assert_eq!(out[0]["content"][0]["type"], "reasoning_text");
    assert_eq!(out[1]["type"], "message");
    assert_eq!(out[1]["role"], "assistant");
    assert_eq!(out[1]["content"][0]["type"], "output_text");
    assert!(!out[1]["content"][0]["text"].as_str().unwrap().is_empty());
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap()
    );
    assert_eq!(v["cost"]["rao"].as_u64().unwrap(), header_cost);
    assert!(header_cost > 0);
    assert_eq!(v["metadata"]["run"], "r1");
    assert_eq!(v["max_output_tokens"], 200);
    // The provider got the `/v1/reason` translation.
    let sent = &h.sim.requests()[0].body;
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][0]["content"], "be brief");
    assert_eq!(sent["messages"][1]["content"], "Is 61 prime?");
    assert_eq!(sent["max_tokens"], 200);
    assert_eq!(sent["temperature"], 0.3);
}

#[tokio::test]
async fn effort_summary_and_exclude_shape_the_reasoning_item() {
    let h = Harness::start(SimConfig::default()).await;
    let v: serde_json::Value = responses(
        &h,
        r#"{"model":"affine-winner","input":"2+2?","reasoning":{"effort":"high","summary":"auto"}}"#,
    )
    .await
    .json()
    .await
    .unwrap();
    let sent = &h.sim.requests()[0].body;
    assert_eq!(sent["chat_template_kwargs"]["enable_thinking"], true);
    assert_eq!(sent["reasoning_effort"], "high");
    assert_eq!(v["output"][0]["summary"][0]["type"], "summary_text");
    assert!(v["output"][0].get("content").is_none());
    assert_eq!(v["reasoning"]["effort"], "high");
    // `none`: thinking off at the provider, no reasoning item.
    let v: serde_json::Value = responses(
        &h,
        r#"{"model":"affine-winner","input":"2+2?","reasoning":{"effort":"none"}}"#,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        h.sim.requests()[1].body["chat_template_kwargs"]["enable_thinking"],
        false
    );
    assert_eq!(v["output"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["output"][0]["type"], "message");
    // Excluded: the model reasons, the answer leaves it out.
    for extra in [
        r#""reasoning":{"exclude":true}"#,
        r#""include_reasoning":false"#,
    ] {
        let v: serde_json::Value = responses(
            &h,
            &format!(r#"{{"model":"affine-winner","input":"2+2?",{extra}}}"#),
        )
        .await
        .json()
        .await
        .unwrap();
        let types: Vec<&str> = v["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["message"], "{extra}");
    }
}

#[tokio::test]
async fn a_stream_is_typed_events_ending_in_response_completed() {
    let h = Harness::start(SimConfig::default()).await;
    let res = responses(
        &h,
        r#"{"model":"affine-winner","input":"Is 61 prime?","stream":true,"max_output_tokens":200}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-ratelimit-limit-tokens"));
    let events = read_events(res).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        &kinds[..3],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added"
        ]
    );
    assert_eq!(kinds.last(), Some(&"response.completed"));
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.data["type"], e.event, "the data names its event");
        assert_eq!(e.data["sequence_number"], i, "numbered from 0 without gaps");
    }
    let reasoning = text_of(&events, "response.reasoning_text.delta");
    let output = text_of(&events, "response.output_text.delta");
    assert!(!reasoning.is_empty() && !output.is_empty());
    let last = &events.last().unwrap().data["response"];
    assert_eq!(last["status"], "completed");
    assert_eq!(last["output"][0]["content"][0]["text"], reasoning.as_str());
    assert_eq!(last["output"][1]["content"][0]["text"], output.as_str());
    assert!(last["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert!(last["cost"]["rao"].as_u64().unwrap() > 0);
    // Each item is opened before its deltas and closed after them.
    let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    assert!(pos("response.reasoning_text.done") < pos("response.output_text.delta"));
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "response.output_item.done")
            .count(),
        2
    );
    assert!(pos("response.output_text.done") < pos("response.completed"));
}

#[tokio::test]
async fn stateful_features_are_refused_naming_the_field() {
    let h = Harness::start(SimConfig::default()).await;
    for (field, value) in [
        ("previous_response_id", r#""resp_abc""#),
        ("store", "true"),
        ("background", "true"),
        (
            "tools",
            r#"[{"type":"function","name":"f","parameters":{}}]"#,
        ),
    ] {
        let res = responses(
            &h,
            &format!(r#"{{"model":"affine-winner","input":"x","{field}":{value}}}"#),
        )
        .await;
        assert_eq!(res.status(), 400, "{field}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unsupported_parameter", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(field));
    }
    // Their defaults, as SDKs send them, are fine.
    let res = responses(
        &h,
        r#"{"model":"affine-winner","input":"x","store":false,"tools":[],"previous_response_id":null}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    let res = responses(&h, r#"{"model":"gpt-5","input":"x"}"#).await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        h.sim.requests().len(),
        1,
        "refusals never reach the provider"
    );
}

#[tokio::test]
async fn a_stream_that_breaks_ends_with_response_failed() {
    let mut cfg = SimConfig::default();
    cfg.fault.kind = Some(FaultKind::Disconnect { after_chunks: 4 });
    let h = Harness::start(cfg).await;
    let events =
        read_events(responses(&h, r#"{"model":"affine-winner","input":"x","stream":true}"#).await)
            .await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds[0], "response.created");
    assert_eq!(&kinds[kinds.len() - 2..], ["error", "response.failed"]);
    let failed = &events.last().unwrap().data["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "upstream_error");
    assert!(!kinds.contains(&"response.completed"));
}
