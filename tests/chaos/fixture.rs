//! One chaos cluster: a durable Redis, the simulated upstream (in the test process, so a
//! scenario can switch its faults), two gateway replicas as processes, and the accounts the
//! load pays from.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use affine_gateway::auth::jwt::Scope;
use affine_gateway::auth::signing::{Crypto, KeyPair};
use affine_gateway::config::{Config, PlanConfig};
use chutes_sim::{Sim, SimConfig, SimHandle};

use super::procs::{Replica, free_port};
use crate::common::durable_redis::DurableRedis;
use crate::common::{self, admin_token, put_account};

/// Key prefix of the cluster's own Redis.
pub const PREFIX: &str = "agw:";

/// Redis command timeout of the replicas; the stall scenario freezes Redis for several.
pub const COMMAND_TIMEOUT_MS: u64 = 250;

/// How long a hold not renewed lives: short, so the holds of a killed replica's requests
/// expire within a scenario instead of after the default ten minutes.
pub const HOLD_TTL_SECS: u64 = 6;

/// The largest `max_tokens` the load sends. The `chaos` plan charges 1 rao per output token
/// and nothing for input, so this is also the most one request can cost.
pub const MAX_TOKENS: u64 = 400;

/// What a prepaid account may be below zero at most: one request's worst case (README,
/// Money: the provider reporting more than the hold is the only overshoot; the simulator
/// honours `max_tokens`, so here even that cannot happen).
pub const MAX_OVERSHOOT_RAO: i64 = MAX_TOKENS as i64;

/// Who a request is sent as.
#[derive(Clone)]
pub enum Caller {
    /// A bearer token of the account.
    Bearer { name: &'static str, token: String },
    /// btauth/1 signed by the account's hotkey.
    Signed { key: std::sync::Arc<KeyPair> },
    /// btauth/1 signed by a hotkey never seen before (no account: the public tier).
    Fresh,
}

/// The load's accounts.
pub struct Accounts {
    /// Prepaid, well funded, bearer.
    pub prepaid: Caller,
    /// Prepaid with a balance the load exhausts: 402s and the below-zero check.
    pub lean: Caller,
    /// Postpaid with a large credit limit, bearer.
    pub postpaid: Caller,
    /// Prepaid, signed with its hotkey.
    pub signed: Caller,
    /// Every prepaid account's id (for the hold and balance checks).
    pub prepaid_ids: Vec<String>,
}

/// The cluster.
pub struct Chaos {
    pub redis: DurableRedis,
    pub sim: SimHandle,
    pub replicas: Vec<Replica>,
    pub http: reqwest::Client,
    pub accounts: Accounts,
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
    /// Holds the config, journals and logs until the cluster is dropped.
    _dir: tempfile::TempDir,
}

/// The simulator's steady behaviour: streams of about a second (40 words at 50 per second),
/// and up to `MAX_TOKENS` words when a request asks for that many.
pub fn steady_sim() -> SimConfig {
    SimConfig {
        tokens_per_sec: 50.0,
        reasoning_tokens: 24,
        output_tokens: MAX_TOKENS as usize,
        record_requests: 0,
        ..SimConfig::default()
    }
}

fn gateway_config(sim: &SimHandle, sim_cfg: &SimConfig) -> Config {
    let mut c = Config::default();
    c.upstream.url = sim.base_url();
    c.winner.model = Some(sim_cfg.model.clone());
    c.winner.affine_api_url = sim.affine_base_url();
    c.winner.chute_url_template = sim.chute_url_template();
    c.auth.jwt_leeway_secs = 0;
    c.redis.key_prefix = PREFIX.to_string();
    c.redis.command_timeout_ms = COMMAND_TIMEOUT_MS;
    c.metering.hold_ttl_secs = HOLD_TTL_SECS;
    // Renewed every second, expired three seconds after a replica dies.
    c.quota.lease_secs = 3;
    // All the load comes from 127.0.0.1: the per-address guards would measure themselves.
    c.quota.ip_per_second = 1_000_000;
    c.quota.ip_burst = 1_000_000;
    c.server.max_connections_per_ip = 0;
    c.server.header_read_timeout_secs = 2;
    c.server.body_read_timeout_secs = 2;
    c.server.stream_send_timeout_secs = 2;
    c.upstream.first_token_timeout_secs = 2;
    c.upstream.idle_timeout_secs = 2;
    // A whole answer is bounded by the total deadline alone (no idle deadline inside a body),
    // so a provider stalling mid-body holds its caller this long: above the longest answer
    // (`MAX_TOKENS` words at 50 per second, about 9 s), far below the default 600 s.
    c.upstream.total_timeout_secs = 15;
    c.plans.insert(
        "chaos".into(),
        PlanConfig {
            requests_per_minute: Some(1_000_000),
            tokens_per_minute: Some(1_000_000_000),
            tokens_per_day: Some(1_000_000_000),
            max_concurrent: Some(5_000),
            max_tokens: Some(MAX_TOKENS as u32),
            input_rao_per_mtok: Some(0),
            output_rao_per_mtok: Some(1_000_000),
            ..PlanConfig::default()
        },
    );
    c
}

impl Chaos {
    /// Starts everything and creates the accounts.
    pub async fn start() -> Chaos {
        affine_gateway::upstream::client::install_crypto_provider();
        let redis = DurableRedis::start();
        let sim_cfg = steady_sim();
        let sim = Sim::start(sim_cfg.clone()).await.expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.toml");
        // Secrets serialize redacted, so they go in the environment, as in production.
        std::fs::write(
            &config,
            toml::to_string(&gateway_config(&sim, &sim_cfg)).unwrap(),
        )
        .unwrap();
        let env = vec![
            ("GATEWAY_REDIS_URL".to_string(), redis.url()),
            (
                "GATEWAY_JWT_SECRET".to_string(),
                common::TEST_JWT_SECRET.to_string(),
            ),
            ("CHUTES_API_KEY".to_string(), common::TEST_KEY.to_string()),
        ];
        let mut replicas = Vec::new();
        for i in 0..2 {
            let port = free_port();
            let mut env = env.clone();
            env.push(("GATEWAY_LISTEN".into(), format!("127.0.0.1:{port}")));
            env.push((
                "GATEWAY_JOURNAL_PATH".into(),
                dir.path()
                    .join(format!("replica-{i}.journal"))
                    .display()
                    .to_string(),
            ));
            replicas.push(Replica::start(
                dir.path(),
                &format!("replica-{i}"),
                port,
                &config,
                env,
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut chaos = Chaos {
            redis,
            sim,
            replicas,
            http,
            accounts: Accounts {
                prepaid: Caller::Fresh,
                lean: Caller::Fresh,
                postpaid: Caller::Fresh,
                signed: Caller::Fresh,
                prepaid_ids: Vec::new(),
            },
            config,
            env,
            _dir: dir,
        };
        for i in 0..chaos.replicas.len() {
            let waited = chaos.wait_ready(i, Duration::from_secs(30)).await;
            assert!(
                waited.is_some(),
                "replica {i} never became ready:\n{}",
                chaos.replicas[i].log_text()
            );
        }
        chaos.accounts = chaos.create_accounts().await;
        chaos
    }

    async fn create_accounts(&self) -> Accounts {
        let base = self.replicas[0].url();
        let bearer = |account: &'static str| Caller::Bearer {
            name: account,
            token: common::token(account, &[Scope::Reason], 3600),
        };
        let key = KeyPair::from_uri("//ChaosSigned", Crypto::Sr25519).unwrap();
        let hotkey = key.ss58();
        for (id, body, credit) in [
            ("chaos-prepaid", r#"{"plan":"chaos"}"#, 50_000_000u64),
            ("chaos-lean", r#"{"plan":"chaos"}"#, 3_000),
            (
                "chaos-postpaid",
                r#"{"plan":"chaos","billing":"postpaid","credit_limit_rao":1000000000000}"#,
                0,
            ),
            (hotkey.as_str(), r#"{"plan":"chaos"}"#, 50_000_000),
        ] {
            let res = put_account(&self.http, &base, id, body).await;
            assert!(res.status().is_success(), "account {id}: {}", res.status());
            if credit > 0 {
                let res = self
                    .http
                    .post(format!("{base}/admin/v1/accounts/{id}/credits"))
                    .bearer_auth(admin_token())
                    .json(&serde_json::json!({"amount_rao": credit, "reference": format!("chaos-{id}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200, "credit {id}");
            }
        }
        Accounts {
            prepaid: bearer("chaos-prepaid"),
            lean: bearer("chaos-lean"),
            postpaid: bearer("chaos-postpaid"),
            signed: Caller::Signed {
                key: std::sync::Arc::new(key),
            },
            prepaid_ids: vec!["chaos-prepaid".into(), "chaos-lean".into(), hotkey],
        }
    }

    /// Polls `GET /readyz` of replica `i` (store reachable, winner known) until 200; the time
    /// it took, or `None` after `within`.
    pub async fn wait_ready(&self, i: usize, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let url = format!("{}/readyz", self.replicas[i].url());
        loop {
            let ok = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                return Some(started.elapsed());
            }
            if started.elapsed() > within {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A raw connection to the cluster's Redis, for reading what the scripts store.
    pub async fn redis_conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url().as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("the cluster's Redis answers")
    }
}
