//! `POST /v1/responses` through the SDK against a live gateway with its simulated upstream:
//! whole and streamed, summaries, refused stateful fields, a broken stream, signed callers.

mod common;

use affine_reason::{
    Client, Cost, Crypto, Error, KeyPair, Message, OutputItem, Response, ResponseEvent,
    ResponseStream, ResponsesRequest, Scheme,
};
use chutes_sim::{FaultKind, SimConfig};
use common::{DEV_HOTKEY, Gateway, plan};
use futures_util::StreamExt;

/// What a stream carried: its events' reasoning and output deltas, and every event.
struct Drained {
    reasoning: String,
    summary: String,
    output: String,
    events: Vec<ResponseEvent>,
}

impl Drained {
    fn last(&self) -> &ResponseEvent {
        self.events.last().expect("at least one event")
    }

    fn completed(&self) -> &Response {
        match self.last() {
            ResponseEvent::Completed(r) => r,
            other => panic!("the stream ended with {other:?}"),
        }
    }
}

async fn drain(mut stream: ResponseStream) -> Drained {
    let mut d = Drained {
        reasoning: String::new(),
        summary: String::new(),
        output: String::new(),
        events: Vec::new(),
    };
    while let Some(event) = stream.next().await {
        let event = event.expect("stream event");
        assert!(
            !d.events.last().is_some_and(ResponseEvent::is_terminal),
            "nothing after the terminal event"
        );
        match &event {
            ResponseEvent::ReasoningTextDelta(t) => d.reasoning.push_str(&t.delta),
            ResponseEvent::ReasoningSummaryTextDelta(t) => d.summary.push_str(&t.delta),
            ResponseEvent::OutputTextDelta(t) => d.output.push_str(&t.delta),
            _ => {}
        }
        d.events.push(event);
    }
    assert!(d.last().is_terminal(), "ended with {:?}", d.last());
    d
}

async fn bearer_client(gw: &Gateway) -> Client {
    Client::builder(gw.url())
        .token(gw.enterprise("acme", "sdk").await)
        .build()
        .expect("client")
}

async fn priced_gateway(sim: SimConfig) -> Gateway {
    Gateway::start(sim, |c| {
        c.plans.insert("sdk".into(), plan(1_000));
    })
    .await
}

#[tokio::test]
async fn a_whole_response_has_reasoning_message_usage_and_cost() {
    let gw = priced_gateway(SimConfig::default()).await;
    let client = bearer_client(&gw).await;
    let r = client
        .responses(
            ResponsesRequest::messages(vec![
                Message::new("developer", "answer in one word"),
                Message::new("user", "Is 61 prime?"),
            ])
            .instructions("be brief")
            .max_output_tokens(200)
            .temperature(0.3)
            .top_p(0.9)
            .effort("high")
            .metadata("run", "r1")
            // The call decides whether it streams, whatever the extra fields say.
            .field("stream", serde_json::Value::Bool(true)),
        )
        .await
        .expect("whole response");
    assert_eq!(r.status, "completed");
    assert!(r.id.starts_with("resp_"), "{}", r.id);
    assert_eq!(r.model, SimConfig::default().model);
    assert!(matches!(
        r.output.as_slice(),
        [OutputItem::Reasoning(_), OutputItem::Message(_)]
    ));
    let OutputItem::Reasoning(reasoning) = &r.output[0] else {
        unreachable!()
    };
    assert_eq!(reasoning.content[0].kind, "reasoning_text");
    assert!(!r.reasoning_text().unwrap_or_default().is_empty());
    assert!(!r.output_text().is_empty());
    let usage = r.usage.as_ref().expect("usage");
    assert_eq!(usage.total_tokens, usage.input_tokens + usage.output_tokens);
    // The simulator, like vLLM, reports no reasoning token count: the gateway sends 0.
    assert!(usage.output_tokens_details.reasoning_tokens <= usage.output_tokens);
    let cost = r.cost.as_ref().expect("cost");
    assert!(cost.rao > 0, "a priced plan charges");
    assert_eq!(*cost, Cost::from_rao(cost.rao), "rao and TAO agree");
    assert_eq!(r.metadata["run"], "r1");
    assert_eq!(r.extra["max_output_tokens"], 200);
    assert_eq!(r.extra["reasoning"]["effort"], "high");
    assert!(r.request_id.is_some());
    assert_eq!(r.attempts, 1);
    assert!(r.rate_limit.as_ref().and_then(|l| l.get("rpm")).is_some());
    // What the provider got: the instructions first, `developer` as system.
    let sent = &gw.sim.requests()[0].body;
    assert_eq!(sent["messages"][0]["content"], "be brief");
    assert_eq!(sent["messages"][1]["role"], "system");
    assert_eq!(sent["max_tokens"], 200);
}

#[tokio::test]
async fn a_stream_yields_deltas_that_make_the_completed_texts() {
    let gw = priced_gateway(SimConfig::default()).await;
    let client = bearer_client(&gw).await;
    let stream = client
        .responses_stream(ResponsesRequest::new("Is 61 prime?").max_output_tokens(200))
        .await
        .expect("stream opens");
    let request_id = stream.request_id().map(str::to_owned);
    assert!(request_id.is_some());
    assert!(stream.rate_limit().and_then(|l| l.get("tpm")).is_some());
    let d = drain(stream).await;
    assert!(matches!(d.events[0], ResponseEvent::Created(ref r) if r.status == "in_progress"));
    assert!(matches!(d.events[1], ResponseEvent::InProgress(_)));
    assert!(matches!(
        d.events[2],
        ResponseEvent::OutputItemAdded(ref a) if matches!(a.item, OutputItem::Reasoning(_))
    ));
    assert!(!d.reasoning.is_empty() && !d.output.is_empty());
    let done = d.completed();
    assert_eq!(done.status, "completed");
    assert_eq!(done.reasoning_text().as_deref(), Some(d.reasoning.as_str()));
    assert_eq!(done.output_text(), d.output);
    assert!(done.usage.as_ref().is_some_and(|u| u.output_tokens > 0));
    assert!(done.cost.as_ref().is_some_and(|c| c.rao > 0));
    assert_eq!(done.request_id, request_id);
    let text_done = d.events.iter().find_map(|e| match e {
        ResponseEvent::OutputTextDone(t) => Some(t.text.clone()),
        _ => None,
    });
    assert_eq!(text_done.as_deref(), Some(d.output.as_str()));
    let items_done = d
        .events
        .iter()
        .filter(|e| matches!(e, ResponseEvent::OutputItemDone(_)))
        .count();
    assert_eq!(items_done, 2);

    // With a summary asked for, the reasoning streams as summary text.
    let d = drain(
        client
            .responses_stream(ResponsesRequest::new("2+2?").summary("auto"))
            .await
            .expect("stream opens"),
    )
    .await;
    assert!(d.reasoning.is_empty() && !d.summary.is_empty());
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, ResponseEvent::ReasoningSummaryPartAdded(_)))
    );
    assert_eq!(
        d.completed().reasoning_text().as_deref(),
        Some(d.summary.as_str())
    );
}

#[tokio::test]
async fn stateful_fields_are_refused_with_unsupported_parameter() {
    let gw = priced_gateway(SimConfig::default()).await;
    let client = bearer_client(&gw).await;
    for (field, value) in [
        ("previous_response_id", serde_json::json!("resp_abc")),
        ("store", serde_json::json!(true)),
        (
            "tools",
            serde_json::json!([{"type": "function", "name": "f", "parameters": {}}]),
        ),
    ] {
        let req = ResponsesRequest::new("x").field(field, value);
        let err = client.responses(req.clone()).await.expect_err(field);
        let api = err.api().expect("an API error");
        assert_eq!(
            (api.status, api.code.as_str()),
            (400, "unsupported_parameter")
        );
        assert!(api.message.contains(field), "{}", api.message);
        assert!(api.request_id.is_some());
        let err = client.responses_stream(req).await.expect_err(field);
        assert_eq!(err.code(), Some("unsupported_parameter"));
    }
    let err = client
        .responses(ResponsesRequest::new("x").model("gpt-5"))
        .await
        .expect_err("unknown model");
    assert_eq!(err.code(), Some("not_found"));
    assert!(
        gw.sim.requests().is_empty(),
        "refusals never reach the provider"
    );
}

#[tokio::test]
async fn a_broken_stream_ends_with_the_error_then_response_failed() {
    let mut sim = SimConfig::default();
    sim.fault.kind = Some(FaultKind::Disconnect { after_chunks: 4 });
    let gw = priced_gateway(sim).await;
    let client = bearer_client(&gw).await;
    let d = drain(client.responses_stream("x").await.expect("stream opens")).await;
    let n = d.events.len();
    let ResponseEvent::Error(api) = &d.events[n - 2] else {
        panic!("no error event before the end: {:?}", d.events[n - 2])
    };
    assert_eq!(api.code, "upstream_error");
    assert!(api.request_id.is_some());
    let ResponseEvent::Failed(failed) = d.last() else {
        panic!("ended with {:?}", d.last())
    };
    assert_eq!(failed.status, "failed");
    assert_eq!(
        failed.error.as_ref().map(|e| e["code"].clone()),
        Some(serde_json::json!("upstream_error"))
    );
    // A whole answer from the same broken provider is the API error itself.
    let err = client.responses("x").await.expect_err("provider broke");
    assert!(matches!(err, Error::Api(_)), "{err:?}");
}

#[tokio::test]
async fn signed_clients_call_responses() {
    let gw = Gateway::default().await;
    let signed = [
        (Scheme::BtAuth, false, "//Alice", Crypto::Ed25519),
        (Scheme::BtAuth, false, "//Alice", Crypto::Sr25519),
        (Scheme::Epistula, false, "//Charlie", Crypto::Sr25519),
        (Scheme::BtAuth, true, "//Dave", Crypto::Sr25519),
    ];
    for (scheme, session, uri, crypto) in signed {
        let client = Client::builder(gw.url())
            .keypair(KeyPair::from_uri(uri, crypto).expect("dev key"))
            .receiver(DEV_HOTKEY)
            .scheme(scheme)
            .session(session)
            .build()
            .expect("client");
        let whole = client.responses("2+2?").await.expect("signed whole");
        assert!(!whole.output_text().is_empty(), "{scheme:?} {uri}");
        let d = drain(
            client
                .responses_stream("2+2?")
                .await
                .expect("signed stream"),
        )
        .await;
        assert_eq!(d.completed().output_text(), d.output);
        assert_eq!(client.session_exchanges(), u64::from(session));
    }
    assert_eq!(gw.requests_served("/v1/responses", 200).await, 8);
    assert_eq!(gw.requests_served("/v1/auth/session", 200).await, 1);
}
