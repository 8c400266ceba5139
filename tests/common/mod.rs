//! Shared harness: a simulated upstream and a gateway in-process on ephemeral loopback ports.
#![allow(dead_code)]

use affine_gateway::config::{Config, Secret};
use affine_gateway::server::Running;
use affine_gateway::upstream::sse::SseDecoder;
use chutes_sim::{Sim, SimConfig, SimHandle};

/// The key the tests configure; the simulator can be told to require it.
pub const TEST_KEY: &str = "cpk_test_key_0123456789";

/// A gateway wired to its own simulator.
pub struct Harness {
    pub gw: Running,
    pub sim: SimHandle,
    pub http: reqwest::Client,
}

/// The gateway configuration for a simulator: its URL, a key, its model as the static winner.
pub fn config_for(sim: &SimHandle, sim_cfg: &SimConfig) -> Config {
    let mut cfg = Config::default();
    cfg.upstream.url = sim.base_url();
    cfg.upstream.api_key = Some(Secret::new(TEST_KEY.to_string()));
    cfg.winner.model = Some(sim_cfg.model.clone());
    cfg
}

impl Harness {
    /// Starts a simulator with `sim_cfg` and a gateway in front of it.
    pub async fn start(sim_cfg: SimConfig) -> Harness {
        Self::start_with(sim_cfg, |_| {}).await
    }

    /// Same, with a chance to adjust the gateway configuration.
    pub async fn start_with(sim_cfg: SimConfig, tweak: impl FnOnce(&mut Config)) -> Harness {
        affine_gateway::upstream::client::install_crypto_provider();
        let sim = Sim::start(sim_cfg.clone()).await.expect("simulator starts");
        let mut cfg = config_for(&sim, &sim_cfg);
        tweak(&mut cfg);
        let gw = Running::start(cfg).await.expect("gateway starts");
        Harness {
            gw,
            sim,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gw.url(), path)
    }

    /// POSTs a JSON body to `/v1/reason`.
    pub async fn reason(&self, body: &str) -> reqwest::Response {
        self.http
            .post(self.url("/v1/reason"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent")
    }
}

/// One server-sent event as the gateway sent it.
#[derive(Debug, Clone)]
pub struct Ev {
    pub event: String,
    pub data: serde_json::Value,
}

/// Reads a whole SSE response into events.
pub async fn read_events(mut res: reqwest::Response) -> Vec<Ev> {
    let mut dec = SseDecoder::new(1 << 20);
    let mut out = Vec::new();
    while let Some(chunk) = res.chunk().await.expect("stream readable") {
        dec.push(&chunk);
        while let Some(ev) = dec.next_event().expect("well-formed SSE") {
            out.push(to_ev(ev));
        }
    }
    if let Some(ev) = dec.finish().expect("well-formed SSE") {
        out.push(to_ev(ev));
    }
    out
}

fn to_ev(ev: affine_gateway::upstream::sse::SseEvent) -> Ev {
    Ev {
        event: ev.event.unwrap_or_else(|| "message".into()),
        data: serde_json::from_slice(&ev.data).expect("event data is JSON"),
    }
}

/// Concatenated deltas of one event kind.
pub fn text_of(events: &[Ev], kind: &str) -> String {
    events
        .iter()
        .filter(|e| e.event == kind)
        .map(|e| e.data["delta"].as_str().expect("delta is a string"))
        .collect()
}

/// Asserts a problem+json error and returns its body.
pub async fn expect_problem(res: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status");
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "content type"
    );
    let rid = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = res.json().await.expect("problem is JSON");
    assert_eq!(body["code"], code, "code in {body}");
    assert_eq!(body["status"], status);
    assert_eq!(
        body["request_id"],
        rid.as_str(),
        "request id in body = header"
    );
    for k in ["type", "title", "detail"] {
        assert!(body[k].is_string(), "{k} in {body}");
    }
    body
}
