//! A live gateway for the SDK's tests: the `affine_gateway` library in-process on an
//! ephemeral 127.0.0.1 port, in front of its simulated upstream (no Chutes key, no Redis:
//! the embedded in-memory store).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use affine_gateway::auth::jwt::{JwtKeys, Scope, now_secs};
use affine_gateway::config::{Config, PlanConfig, Secret};
use affine_gateway::server::Running;
use chutes_sim::{Sim, SimConfig, SimHandle};

pub use affine_gateway::config::DEV_HOTKEY;

const JWT_SECRET: &str = "sdk-test-secret-sdk-test-secret-0123456";
const SIM_KEY: &str = "cpk_sdk_test_key";

/// A running gateway and its simulator.
pub struct Gateway {
    pub running: Running,
    pub sim: SimHandle,
    pub http: reqwest::Client,
}

/// A plan with these limits and the built-in enterprise prices.
pub fn plan(rpm: u64) -> PlanConfig {
    PlanConfig {
        requests_per_minute: Some(rpm),
        tokens_per_minute: Some(100_000_000),
        tokens_per_day: Some(1_000_000_000),
        max_concurrent: Some(1_000),
        max_tokens: Some(32_768),
        input_rao_per_mtok: Some(500_000),
        output_rao_per_mtok: Some(2_000_000),
        ..PlanConfig::default()
    }
}

impl Gateway {
    /// Starts a simulator with `sim_cfg` and a gateway configured by `tweak`.
    pub async fn start(sim_cfg: SimConfig, tweak: impl FnOnce(&mut Config)) -> Gateway {
        affine_gateway::upstream::client::install_crypto_provider();
        let sim = Sim::start(sim_cfg.clone()).await.expect("simulator starts");
        let mut cfg = Config::default();
        cfg.upstream.url = sim.base_url();
        cfg.upstream.api_key = Some(Secret::new(SIM_KEY.to_owned()));
        cfg.winner.model = Some(sim_cfg.model.clone());
        cfg.winner.affine_api_url = sim.affine_base_url();
        cfg.winner.chute_url_template = sim.chute_url_template();
        cfg.jwt_secret = Some(Secret::new(JWT_SECRET.to_owned()));
        cfg.auth.jwt_leeway_secs = 0;
        // Tests send bursts from one address; the per-IP guards would refuse them first.
        cfg.quota.ip_per_second = 0;
        cfg.server.max_connections_per_ip = 0;
        cfg.metering.journal_path = std::env::temp_dir()
            .join(format!(
                "affine-reason-sdk-journal-{}",
                uuid::Uuid::new_v4().simple()
            ))
            .display()
            .to_string();
        tweak(&mut cfg);
        let running = Running::start(cfg).await.expect("gateway starts");
        Gateway {
            running,
            sim,
            http: reqwest::Client::new(),
        }
    }

    /// The default simulator and configuration.
    pub async fn default() -> Gateway {
        Self::start(SimConfig::default(), |_| {}).await
    }

    pub fn url(&self) -> String {
        self.running.url()
    }

    /// A token for `sub` with `scopes`.
    pub fn token(&self, sub: &str, scopes: &[Scope]) -> String {
        JwtKeys::new(JWT_SECRET.as_bytes(), Duration::ZERO)
            .issue(sub, scopes, Duration::from_secs(3600), now_secs())
            .0
    }

    /// Creates or updates an account through the admin API.
    pub async fn put_account(&self, id: &str, body: serde_json::Value) {
        let res = self
            .http
            .put(format!("{}/admin/v1/accounts/{id}", self.url()))
            .bearer_auth(self.token("ops", &[Scope::Admin]))
            .json(&body)
            .send()
            .await
            .expect("admin reachable");
        assert!(
            res.status().is_success(),
            "PUT account {id}: {}",
            res.status()
        );
    }

    /// A postpaid enterprise account `id` on `plan`, and a `reason` token for it.
    pub async fn enterprise(&self, id: &str, plan: &str) -> String {
        self.put_account(
            id,
            serde_json::json!({"billing": "postpaid", "credit_limit_rao": 1_000_000_000_000u64, "plan": plan}),
        )
        .await;
        self.token(id, &[Scope::Reason])
    }

    /// The sum of `agw_http_requests_total` samples for `route` with status `status`.
    pub async fn requests_served(&self, route: &str, status: u16) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let route = format!("route=\"{route}\"");
        let status = format!("status=\"{status}\"");
        text.lines()
            .filter(|l| l.starts_with("agw_http_requests_total{"))
            .filter(|l| l.contains(&route) && l.contains(&status))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    /// The usage event whose `metadata.probe` is `probe`, from the admin export of this
    /// month, once settled.
    pub async fn usage_event(&self, probe: &str, within: Duration) -> serde_json::Value {
        let now = time::OffsetDateTime::now_utc();
        let month = format!("{:04}-{:02}", now.year(), u8::from(now.month()));
        let admin = self.token("ops", &[Scope::Admin]);
        let deadline = Instant::now() + within;
        loop {
            self.running.state.meter.flush(Duration::from_secs(2)).await;
            let text = self
                .http
                .get(format!(
                    "{}/admin/v1/usage/export?month={month}&format=jsonl",
                    self.url()
                ))
                .bearer_auth(&admin)
                .send()
                .await
                .expect("export reachable")
                .text()
                .await
                .expect("export text");
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|ev| ev["metadata"]["probe"] == probe);
            if let Some(ev) = found {
                return ev;
            }
            assert!(
                Instant::now() < deadline,
                "no usage event for probe {probe} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
