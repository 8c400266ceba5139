//! Every class of provider failure maps to its contract status and code (docs/API.md §8),
//! without leaking the provider's body or our key.

mod common;

use chutes_sim::{Fault, FaultKind, SimConfig, Trigger};
use common::*;

fn faulty(kind: FaultKind) -> SimConfig {
    SimConfig {
        fault: Fault {
            kind: Some(kind),
            trigger: Trigger::Always,
        },
        ..SimConfig::default()
    }
}

fn short_timeouts(c: &mut affine_gateway::config::Config) {
    c.upstream.first_token_timeout_secs = 1;
    c.upstream.idle_timeout_secs = 1;
    c.upstream.total_timeout_secs = 2;
}

#[tokio::test]
async fn status_faults_map_to_contract_codes() {
    for (status, want_status, want_code) in [
        (429, 503, "upstream_unavailable"),
        (503, 503, "upstream_unavailable"),
        (500, 502, "upstream_error"),
        (502, 502, "upstream_error"),
        (401, 502, "upstream_error"),
        (402, 502, "upstream_error"),
        (404, 502, "upstream_error"),
    ] {
        let h = Harness::start(faulty(FaultKind::Status(status))).await;
        for stream in [false, true] {
            let res = h
                .reason(&format!(r#"{{"input":"x","stream":{stream}}}"#))
                .await;
            if want_status == 503 {
                assert!(res.headers().contains_key("retry-after"), "{status}");
            }
            let body = expect_problem(res, want_status, want_code).await;
            let text = body.to_string();
            // Neither the provider's body nor our key reaches the caller.
            assert!(!text.contains("detail\":\"Infrastructure"), "{text}");
            assert!(!text.contains("chute_id"), "{text}");
            assert!(!text.contains("5FLSigC9"), "{text}");
            assert!(!text.contains(TEST_KEY), "{text}");
        }
    }
}

#[tokio::test]
async fn garbage_answers_are_502() {
    let h = Harness::start(faulty(FaultKind::Garbage)).await;
    expect_problem(h.reason(r#"{"input":"x"}"#).await, 502, "upstream_error").await;
    let events = read_events(h.reason(r#"{"input":"x","stream":true}"#).await).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(last.data["code"], "upstream_error");
    assert_eq!(events.iter().filter(|e| e.event == "error").count(), 1);
    assert!(events.iter().all(|e| e.event != "done"));
}

#[tokio::test]
async fn a_disconnect_mid_answer_is_502_or_one_error_event() {
    let h = Harness::start(faulty(FaultKind::Disconnect { after_chunks: 4 })).await;
    expect_problem(h.reason(r#"{"input":"x"}"#).await, 502, "upstream_error").await;
    let events = read_events(h.reason(r#"{"input":"x","stream":true}"#).await).await;
    assert!(events.len() >= 2, "some text before the break: {events:?}");
    let last = events.last().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(last.data["code"], "upstream_error");
    assert_eq!(last.data["status"], 502);
    assert!(events.iter().all(|e| e.event != "done"));
}

#[tokio::test]
async fn a_stalled_provider_times_out_with_504() {
    let h = Harness::start_with(faulty(FaultKind::Stall), short_timeouts).await;
    expect_problem(h.reason(r#"{"input":"x"}"#).await, 504, "upstream_timeout").await;
    expect_problem(
        h.reason(r#"{"input":"x","stream":true}"#).await,
        504,
        "upstream_timeout",
    )
    .await;
}

#[tokio::test]
async fn a_whole_answer_whose_body_stalls_times_out_on_the_idle_timeout() {
    // Headers and half the body, then silence: the idle timeout ends it, not the (long) total
    // deadline, which would hold the request's slot and hold for minutes.
    let h = Harness::start_with(faulty(FaultKind::StallAfter { after_chunks: 3 }), |c| {
        c.upstream.first_token_timeout_secs = 1;
        c.upstream.idle_timeout_secs = 1;
        c.upstream.total_timeout_secs = 5;
    })
    .await;
    let res = h.reason(r#"{"input":"x"}"#).await;
    assert_eq!(res.status(), 504);
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["code"], "upstream_timeout");
    assert!(
        p["detail"].as_str().unwrap().contains("idle"),
        "the idle timeout, not the total one: {p}"
    );
}

#[tokio::test]
async fn a_stall_mid_stream_ends_with_one_timeout_event() {
    let h = Harness::start_with(
        faulty(FaultKind::StallAfter { after_chunks: 3 }),
        short_timeouts,
    )
    .await;
    let events = read_events(h.reason(r#"{"input":"x","stream":true}"#).await).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(last.data["code"], "upstream_timeout");
    assert_eq!(last.data["status"], 504);
}

#[tokio::test]
async fn an_unreachable_provider_is_503() {
    // Take a free port and close it again: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = Harness::start_with(SimConfig::default(), |c| {
        c.upstream.url = format!("http://127.0.0.1:{port}/v1");
    })
    .await;
    expect_problem(
        h.reason(r#"{"input":"x"}"#).await,
        503,
        "upstream_unavailable",
    )
    .await;
}

#[tokio::test]
async fn a_fault_on_the_nth_request_hits_only_that_one() {
    let h = Harness::start(SimConfig {
        fault: Fault {
            kind: Some(FaultKind::Status(503)),
            trigger: Trigger::NthRequest(2),
        },
        ..SimConfig::default()
    })
    .await;
    assert_eq!(h.reason(r#"{"input":"x"}"#).await.status(), 200);
    assert_eq!(h.reason(r#"{"input":"x"}"#).await.status(), 503);
    assert_eq!(h.reason(r#"{"input":"x"}"#).await.status(), 200);
}

#[tokio::test]
async fn client_disconnect_mid_stream_releases_the_upstream() {
    let h = Harness::start(SimConfig {
        tokens_per_sec: 50.0,
        output_tokens: 200,
        ..SimConfig::default()
    })
    .await;
    let mut res = h.reason(r#"{"input":"x","stream":true}"#).await;
    assert!(res.chunk().await.unwrap().is_some());
    drop(res);
    // The gateway notices the closed channel and drops the upstream call; the simulator
    // then sees its body dropped before completion.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = h.sim.stats();
        if s.client_disconnects == 1 && s.in_flight == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "upstream still open: {s:?}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
