//! The SDK against a live gateway with its simulated upstream: every credential (btauth/1,
//! Epistula v2, bearer, automatic sessions), whole and streamed answers, a dropped stream
//! settled as `client_closed`, typed 429 and 402 refusals, and retries that wait for
//! `Retry-After`.

mod common;

use std::time::{Duration, Instant};

use affine_reason::{
    Client, Cost, Crypto, Error, Event, KeyPair, ReasonRequest, ReasonStream, RetryPolicy, Scheme,
};
use chutes_sim::SimConfig;
use common::{DEV_HOTKEY, Gateway, plan};
use futures_util::StreamExt;

fn key(uri: &str, crypto: Crypto) -> KeyPair {
    KeyPair::from_uri(uri, crypto).expect("dev key")
}

/// Reads a stream to its end: the concatenated reasoning and output, and the last event.
async fn drain(mut stream: ReasonStream) -> (String, String, Event) {
    let (mut reasoning, mut output) = (String::new(), String::new());
    let mut last = None;
    while let Some(event) = stream.next().await {
        let event = event.expect("stream event");
        match &event {
            Event::Reasoning { delta } => reasoning.push_str(delta),
            Event::Output { delta } => output.push_str(delta),
            Event::Done(_) | Event::Error(_) => {}
        }
        assert!(last.is_none(), "nothing after the terminal event");
        if matches!(event, Event::Done(_) | Event::Error(_)) {
            last = Some(event);
        }
    }
    (reasoning, output, last.expect("a terminal event"))
}

#[tokio::test]
async fn bearer_whole_streamed_and_every_read_endpoint() {
    let gw = Gateway::start(SimConfig::default(), |c| {
        c.plans.insert("sdk".into(), plan(1_000));
    })
    .await;
    let token = gw.enterprise("acme", "sdk").await;
    let client = Client::builder(gw.url())
        .token(token)
        .build()
        .expect("client");

    let whole = client
        .reason(ReasonRequest::new("2+2?").max_tokens(64))
        .await
        .expect("whole answer");
    assert!(!whole.output.is_empty());
    assert!(whole.reasoning.as_deref().is_some_and(|r| !r.is_empty()));
    assert!(whole.cost.rao > 0, "a priced plan charges");
    assert_eq!(
        whole.cost,
        Cost::from_rao(whole.cost.rao),
        "rao and TAO agree"
    );
    assert!(whole.request_id.is_some());
    assert_eq!(whole.attempts, 1);
    let rpm = whole
        .rate_limit
        .as_ref()
        .and_then(|r| r.get("rpm"))
        .expect("rpm policy");
    assert_eq!(rpm.quota, Some(1_000));
    assert!(rpm.remaining.is_some_and(|r| r < 1_000));

    let stream = client
        .reason_stream(ReasonRequest::new("2+2?").max_tokens(64))
        .await
        .expect("stream opens");
    let request_id = stream.request_id().map(str::to_owned);
    assert!(stream.rate_limit().and_then(|r| r.get("tpm")).is_some());
    let (reasoning, output, last) = drain(stream).await;
    assert!(!reasoning.is_empty() && !output.is_empty());
    let Event::Done(done) = last else {
        panic!("the stream ended with {last:?}")
    };
    assert_eq!(done.request_id, request_id);
    assert!(done.output.is_empty(), "done carries no texts");
    assert!(done.cost.rao > 0 && done.usage.output_tokens > 0);

    let chat = client
        .chat_completions(serde_json::json!({
            "model": "affine-winner", "max_tokens": 32,
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .await
        .expect("chat completion");
    assert_eq!(chat.body["object"], "chat.completion");
    assert!(chat.cost.is_some_and(|c| c.rao > 0));
    let chunks: Vec<_> = client
        .chat_completions_stream(serde_json::json!({
            "model": "affine-winner", "max_tokens": 32,
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .await
        .expect("chat stream")
        .collect()
        .await;
    assert!(chunks.len() > 1);
    assert!(chunks.iter().all(|c| {
        c.as_ref()
            .is_ok_and(|c| c["object"] == "chat.completion.chunk")
    }));

    let models = client.models().await.expect("models");
    assert!(models.data.iter().any(|m| m.id == "affine-winner"));
    assert!(models.data.iter().all(|m| m.price.is_some()));
    let winner = client.winner().await.expect("winner");
    assert_eq!(winner.model.id, SimConfig::default().model);
    let account = client.account().await.expect("account");
    assert_eq!(
        (account.id.as_str(), account.kind.as_str()),
        ("acme", "enterprise")
    );
    gw.running.state.meter.flush(Duration::from_secs(5)).await;
    let usage = client.usage(None, None).await.expect("usage");
    assert_eq!(usage.account, "acme");
    assert_eq!(
        usage.total.requests, 4,
        "two reason calls, two chat completions"
    );
    let stats = client.stats(None, None).await.expect("stats");
    assert!(stats.days.iter().map(|d| d.requests).sum::<u64>() >= 4);
    assert_eq!(gw.requests_served("/v1/auth/session", 200).await, 0);
}

#[tokio::test]
async fn btauth_signs_every_request_with_sr25519_and_ed25519() {
    let gw = Gateway::default().await;
    for crypto in [Crypto::Sr25519, Crypto::Ed25519] {
        let alice = key("//Alice", crypto);
        let hotkey = alice.ss58();
        let client = Client::builder(gw.url())
            .keypair(alice)
            .receiver(DEV_HOTKEY)
            .session(false)
            .build()
            .expect("client");
        let whole = client.reason("2+2?").await.expect("signed whole");
        assert!(!whole.output.is_empty());
        let (_, output, last) =
            drain(client.reason_stream("2+2?").await.expect("signed stream")).await;
        assert!(!output.is_empty() && matches!(last, Event::Done(_)));
        assert_eq!(client.account().await.expect("account").id, hotkey);
        // A signed GET with a query: the signature covers the target exactly as sent.
        let usage = client
            .usage(Some("2026-01-01"), Some("2026-12-31"))
            .await
            .expect("signed query");
        assert_eq!(usage.account, hotkey);
        assert_eq!(client.session_exchanges(), 0);
    }
    assert_eq!(gw.requests_served("/v1/auth/session", 200).await, 0);
    assert_eq!(gw.requests_served("/v1/reason", 200).await, 4);
}

#[tokio::test]
async fn epistula_signs_every_request() {
    let gw = Gateway::default().await;
    let bob_key = key("//Charlie", Crypto::Sr25519);
    let hotkey = bob_key.ss58();
    let client = Client::builder(gw.url())
        .keypair(bob_key)
        .receiver(DEV_HOTKEY)
        .scheme(Scheme::Epistula)
        .session(false)
        .build()
        .expect("client");
    let whole = client.reason("2+2?").await.expect("Epistula whole");
    assert!(!whole.output.is_empty());
    let (_, output, _) = drain(client.reason_stream("2+2?").await.expect("Epistula stream")).await;
    assert!(!output.is_empty());
    assert_eq!(client.account().await.expect("account").id, hotkey);
    assert_eq!(gw.requests_served("/v1/auth/session", 200).await, 0);
}

#[tokio::test]
async fn sessions_sign_once_for_many_calls() {
    let gw = Gateway::start(SimConfig::default(), |c| {
        // Unregistered hotkeys call on the public plan (2 in flight) and the shared public
        // tier; let the concurrent calls in.
        c.quota.public_tier.max_concurrent = 64;
        c.plans.insert(
            "public".into(),
            affine_gateway::config::PlanConfig {
                max_concurrent: Some(64),
                ..Default::default()
            },
        );
    })
    .await;
    for scheme in [Scheme::BtAuth, Scheme::Epistula] {
        let before = gw.requests_served("/v1/auth/session", 200).await;
        let dave = key("//Dave", Crypto::Sr25519);
        // Epistula clients exchange their session with btauth/1 too (the gateway refuses
        // Epistula there).
        let client = Client::builder(gw.url())
            .keypair(dave)
            .receiver(DEV_HOTKEY)
            .scheme(scheme)
            .build()
            .expect("client");
        let calls = futures_util::future::join_all((0..4).map(|_| client.reason("2+2?"))).await;
        assert!(calls.iter().all(Result::is_ok), "{calls:?}");
        let (_, output, _) = drain(client.reason_stream("2+2?").await.expect("stream")).await;
        assert!(!output.is_empty());
        client.account().await.expect("account");
        client.models().await.expect("models");
        assert_eq!(client.session_exchanges(), 1, "{scheme:?}");
        assert_eq!(
            gw.requests_served("/v1/auth/session", 200).await - before,
            1,
            "one signed session request for seven calls ({scheme:?})"
        );
    }
    assert_eq!(gw.requests_served("/v1/reason", 200).await, 10);
}

#[tokio::test]
async fn a_dropped_stream_is_settled_as_client_closed() {
    let slow = SimConfig {
        tokens_per_sec: 20.0,
        output_tokens: 400,
        ..SimConfig::default()
    };
    let gw = Gateway::start(slow, |c| {
        c.plans.insert("sdk".into(), plan(1_000));
    })
    .await;
    let client = Client::builder(gw.url())
        .token(gw.enterprise("acme", "sdk").await)
        .build()
        .expect("client");
    let mut stream = client
        .reason_stream(
            ReasonRequest::new("a long answer")
                .include_reasoning(false)
                .metadata("probe", "dropped"),
        )
        .await
        .expect("stream opens");
    assert!(stream.request_id().is_some());
    let first = stream.next().await.expect("an event").expect("readable");
    assert!(matches!(first, Event::Output { .. }), "{first:?}");
    drop(stream);
    let event = gw.usage_event("dropped", Duration::from_secs(15)).await;
    assert_eq!(event["status"], "client_closed", "{event}");
    assert_eq!(event["estimated"], true, "{event}");
}

#[tokio::test]
async fn refusals_are_typed_with_code_and_retry_after() {
    let gw = Gateway::start(SimConfig::default(), |c| {
        c.plans.insert("tiny".into(), plan(60));
    })
    .await;
    // 402: a prepaid account with nothing on it.
    gw.put_account(
        "broke",
        serde_json::json!({"billing": "prepaid", "plan": "enterprise"}),
    )
    .await;
    let broke = Client::builder(gw.url())
        .token(gw.token("broke", &[affine_gateway::auth::jwt::Scope::Reason]))
        .build()
        .expect("client");
    let err = broke.reason("2+2?").await.expect_err("402");
    let api = err.api().expect("an API error");
    assert_eq!(
        (api.status, api.code.as_str()),
        (402, "insufficient_balance")
    );
    assert_eq!(api.retry_after, None);
    assert!(api.request_id.is_some());
    let err = broke
        .reason_stream("2+2?")
        .await
        .expect_err("402 before the stream");
    assert_eq!(err.code(), Some("insufficient_balance"));

    // 429: a 60-per-minute plan, drained.
    let limited = Client::builder(gw.url())
        .token(gw.enterprise("limited", "tiny").await)
        .build()
        .expect("client");
    let api = drain_until_limited(&limited).await;
    assert_eq!((api.status, api.code.as_str()), (429, "rate_limited"));
    assert!(api.retry_after.is_some_and(|r| r >= Duration::from_secs(1)));
    assert!(api.request_id.is_some());
    let rpm = api
        .rate_limit
        .as_ref()
        .and_then(|r| r.get("rpm"))
        .expect("rpm");
    assert_eq!((rpm.quota, rpm.remaining), (Some(60), Some(0)));
}

/// Sends requests until one is refused with 429; returns that refusal.
async fn drain_until_limited(client: &Client) -> affine_reason::ApiError {
    for _ in 0..5 {
        let results = futures_util::future::join_all((0..70).map(|_| client.reason("2+2?"))).await;
        if let Some(Err(Error::Api(api))) = results.into_iter().find(Result::is_err) {
            return api;
        }
    }
    panic!("never rate limited")
}

#[tokio::test]
async fn retries_wait_for_retry_after() {
    let gw = Gateway::start(SimConfig::default(), |c| {
        c.plans.insert("tiny".into(), plan(60));
    })
    .await;
    let token = gw.enterprise("limited", "tiny").await;
    let once = Client::builder(gw.url())
        .token(token.clone())
        .build()
        .expect("client");
    let patient = Client::builder(gw.url())
        .token(token)
        .retry(RetryPolicy {
            max_retries: 3,
            non_idempotent: true,
            ..RetryPolicy::default()
        })
        .build()
        .expect("client");
    // The bucket refills continuously, so the patient call may just catch a fresh token;
    // drain again until it had to wait.
    for _ in 0..5 {
        let refusal = drain_until_limited(&once).await;
        let retry_after = refusal.retry_after.expect("Retry-After on 429");
        let started = Instant::now();
        let result = patient.reason("2+2?").await.expect("served after waiting");
        let elapsed = started.elapsed();
        if result.attempts < 2 {
            continue;
        }
        let waits = result.attempts - 1;
        assert!(
            elapsed >= retry_after * waits,
            "{waits} retries after {elapsed:?}, Retry-After {retry_after:?}"
        );
        // The default policy leaves non-idempotent calls alone: the 429 surfaces at once.
        let refusal = drain_until_limited(&once).await;
        assert_eq!(refusal.code, "rate_limited");
        return;
    }
    panic!("the patient client was never refused first");
}

#[tokio::test]
async fn coldkeys_link_to_the_callers_account() {
    let gw = Gateway::default().await;
    let client = Client::builder(gw.url())
        .token(gw.enterprise("acme", "enterprise").await)
        .build()
        .expect("client");
    let coldkey = key("//Ferdie", Crypto::Sr25519);
    let linked = client
        .link_coldkey(&coldkey, Some("acme"), Some(DEV_HOTKEY))
        .await
        .expect("linked");
    assert!(linked.created);
    assert_eq!(
        (linked.link.coldkey.as_str(), linked.link.account.as_str()),
        (coldkey.ss58().as_str(), "acme")
    );
    let again = client
        .link_coldkey(&coldkey, Some("acme"), Some(DEV_HOTKEY))
        .await
        .expect("already linked");
    assert!(!again.created);
    let account = client.account().await.expect("account");
    assert_eq!(account.coldkeys, vec![linked.link]);
    // A signature for another account is refused with the gateway's code.
    let err = client
        .link_coldkey(&coldkey, Some("other"), Some(DEV_HOTKEY))
        .await
        .expect_err("bad signature");
    assert_eq!(err.code(), Some("invalid_request"));
}
