//! Shared harness: a simulated upstream and a gateway in-process on ephemeral loopback ports.
#![allow(dead_code)]

pub mod cluster;
pub mod durable_redis;
pub mod quota_ops;

// Not every test binary uses it; those that do reach it through `common::*`.
#[allow(unused_imports)]
pub use cluster::TestRedis;

use affine_gateway::auth::jwt::{JwtKeys, Scope, now_secs};
use affine_gateway::config::{Config, Secret};
use affine_gateway::server::Running;
use affine_gateway::store::Store;
use affine_gateway::upstream::sse::SseDecoder;
use chutes_sim::{Sim, SimConfig, SimHandle};
use std::time::Duration;

/// The key the tests configure; the simulator can be told to require it.
pub const TEST_KEY: &str = "cpk_test_key_0123456789";

/// The JWT secret the tests configure.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// The enterprise account every harness creates, whose token `Harness::reason` sends.
pub const TEST_ACCOUNT: &str = "tester";

/// A gateway wired to its own simulator.
pub struct Harness {
    pub gw: Running,
    pub sim: SimHandle,
    pub http: reqwest::Client,
    /// The configuration the gateway runs with (to start more replicas of it).
    pub cfg: Config,
    /// A `reason` token for [`TEST_ACCOUNT`].
    pub token: String,
}

/// Token keys matching [`TEST_JWT_SECRET`].
pub fn keys() -> JwtKeys {
    JwtKeys::new(
        TEST_JWT_SECRET.as_bytes(),
        std::time::Duration::from_secs(0),
    )
}

/// A token for `sub` with `scopes`, valid for `ttl_secs`.
pub fn token(sub: &str, scopes: &[Scope], ttl_secs: u64) -> String {
    keys()
        .issue(
            sub,
            scopes,
            std::time::Duration::from_secs(ttl_secs),
            now_secs(),
        )
        .0
}

/// An `admin` token.
pub fn admin_token() -> String {
    token("ops", &[Scope::Admin], 600)
}

/// The gateway configuration for a simulator: its URL, a key, its model as the static winner.
pub fn config_for(sim: &SimHandle, sim_cfg: &SimConfig) -> Config {
    let mut cfg = Config::default();
    cfg.upstream.url = sim.base_url();
    cfg.upstream.api_key = Some(Secret::new(TEST_KEY.to_string()));
    cfg.winner.model = Some(sim_cfg.model.clone());
    // Never the real Affine API: a test that unsets the static winner follows the simulator's.
    cfg.winner.affine_api_url = sim.affine_base_url();
    cfg.winner.chute_url_template = sim.chute_url_template();
    cfg.jwt_secret = Some(Secret::new(TEST_JWT_SECRET.to_string()));
    cfg.auth.jwt_leeway_secs = 0;
    // Each gateway its own settlement journal: tests run in parallel processes.
    cfg.metering.journal_path = std::env::temp_dir()
        .join(format!(
            "agw-test-journal-{}",
            uuid::Uuid::new_v4().simple()
        ))
        .display()
        .to_string();
    cfg
}

/// A unique Redis key prefix for one test, on the shared server.
pub fn redis_prefix() -> String {
    format!("agw-test:{}:", uuid::Uuid::new_v4().simple())
}

/// The environment variable naming the shared Redis; `scripts/test.sh` sets it when it has
/// to start a throwaway server because nothing answers on the default address.
pub const REDIS_URL_ENV: &str = "AGW_TEST_REDIS_URL";

/// The shared Redis when [`REDIS_URL_ENV`] is unset: the one CI and developers run.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The URL of the shared Redis: the one place every test reads it from.
pub fn redis_url() -> String {
    std::env::var(REDIS_URL_ENV)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_string())
}

/// A store on the shared Redis under a fresh prefix, with 2 s connect and command timeouts.
pub async fn shared_redis_store() -> Store {
    Store::redis(
        &redis_url(),
        &redis_prefix(),
        Duration::from_secs(2),
        Duration::from_secs(2),
    )
    .await
    .unwrap_or_else(|e| {
        // The URL itself stays out of the message: it may carry a password.
        panic!(
            "these tests need the Redis named by {REDIS_URL_ENV} (default {DEFAULT_REDIS_URL}); \
             `bash scripts/test.sh` starts a throwaway one when none answers, but connecting \
             failed: {e}"
        )
    })
}

/// A raw connection to the shared Redis, for tests that inspect keys behind the store.
pub async fn shared_redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url().as_str())
        .expect("the shared Redis URL parses")
        .get_multiplexed_async_connection()
        .await
        .expect("the shared Redis accepts a connection")
}

/// Points `cfg` at the shared Redis (see [`redis_url`]) under a fresh prefix.
pub fn use_redis(cfg: &mut Config) {
    cfg.redis.url = Some(Secret::new(redis_url()));
    cfg.redis.key_prefix = redis_prefix();
}

/// Runs each `async fn name(redis: &TestRedis)` twice: `name::single` on the shared single
/// Redis and `name::cluster` on the Redis Cluster ([`cluster`]), so a Redis test gets its
/// cluster variant by being listed here instead of being copied.
#[macro_export]
macro_rules! single_and_cluster {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn single() {
                super::$name(&$crate::common::TestRedis::single()).await;
            }
            #[tokio::test]
            async fn cluster() {
                super::$name(&$crate::common::TestRedis::cluster()).await;
            }
        }
    )*};
}

/// `mod cluster`: one test per store behaviour `async fn name(&Store)`, on a fresh prefix of
/// the Redis Cluster, followed by the calling file's `finish(&Store)` cleanup check. The
/// cluster half of the files' memory/Redis behaviour suites.
#[macro_export]
macro_rules! cluster_suite {
    ($($name:ident),* $(,)?) => {
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let cluster = $crate::common::TestRedis::cluster();
                    let s = cluster.store().await;
                    super::$name(&s).await;
                    super::finish(&s).await;
                }
            )*
        }
    };
}

/// PUTs an account through the admin API of the gateway at `base`.
pub async fn put_account(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    body: &str,
) -> reqwest::Response {
    http.put(format!("{base}/admin/v1/accounts/{id}"))
        .bearer_auth(admin_token())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request sent")
}

impl Harness {
    /// Starts a simulator with `sim_cfg` and a gateway in front of it.
    pub async fn start(sim_cfg: SimConfig) -> Harness {
        Self::start_with(sim_cfg, |_| {}).await
    }

    /// Same, with a chance to adjust the gateway configuration.
    pub async fn start_with(sim_cfg: SimConfig, tweak: impl FnOnce(&mut Config)) -> Harness {
        Self::start_prepared(sim_cfg, |_| {}, tweak).await
    }

    /// Same, with a chance to change the simulator before the gateway first talks to it.
    pub async fn start_prepared(
        sim_cfg: SimConfig,
        prepare: impl FnOnce(&SimHandle),
        tweak: impl FnOnce(&mut Config),
    ) -> Harness {
        affine_gateway::upstream::client::install_crypto_provider();
        let sim = Sim::start(sim_cfg.clone()).await.expect("simulator starts");
        prepare(&sim);
        let mut cfg = config_for(&sim, &sim_cfg);
        tweak(&mut cfg);
        let gw = Running::start(cfg.clone()).await.expect("gateway starts");
        let http = reqwest::Client::new();
        let res = put_account(
            &http,
            &gw.url(),
            TEST_ACCOUNT,
            r#"{"billing":"postpaid","credit_limit_rao":1000000000000000}"#,
        )
        .await;
        assert!(
            res.status().is_success(),
            "test account created: {}",
            res.status()
        );
        Harness {
            gw,
            sim,
            http,
            cfg,
            token: token(TEST_ACCOUNT, &[Scope::Reason], 3600),
        }
    }

    /// Another replica of the same gateway (same store), with its own settlement journal.
    pub async fn replica(&self) -> Running {
        let mut cfg = self.cfg.clone();
        cfg.metering.journal_path = format!(
            "{}-replica-{}",
            cfg.metering.journal_path,
            uuid::Uuid::new_v4().simple()
        );
        Running::start(cfg).await.expect("replica starts")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gw.url(), path)
    }

    /// `GET /admin/v1/accounts/{id}` once every settlement in flight has reached the store.
    pub async fn account(&self, id: &str) -> serde_json::Value {
        self.gw
            .state
            .meter
            .flush(std::time::Duration::from_secs(5))
            .await;
        self.http
            .get(self.url(&format!("/admin/v1/accounts/{id}")))
            .bearer_auth(admin_token())
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("account JSON")
    }

    /// POSTs a JSON body to `/v1/reason` as the test account.
    pub async fn reason(&self, body: &str) -> reqwest::Response {
        self.post_json("/v1/reason", body).await
    }

    /// POSTs a JSON body to `path` as the test account.
    pub async fn post_json(&self, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.token)
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

/// The value of the metric sample whose line starts with `series` (name and labels exactly
/// as exposed, e.g. `agw_breaker_state{upstream="winner"}`), or `None` if absent.
pub async fn metric(http: &reqwest::Client, base: &str, series: &str) -> Option<f64> {
    let res = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics reachable");
    // A refused scrape (the per-IP flood guard answers 429 to a tight polling loop) must not
    // read as "the series is absent", which a caller may take for a zero.
    assert!(res.status().is_success(), "GET /metrics: {}", res.status());
    let text = res.text().await.expect("metrics text");
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls `check` every 20 ms until it returns `Some`, failing with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The other SS58 spelling of a prefix-42 key: ident 42 written in SS58's two-byte prefix
/// form (`01aaaaaa bbcccccc`), with a valid checksum. sp-core decodes it to the same key on
/// the same network; the gateway must refuse it.
pub fn two_byte_ss58(public: &[u8; 32]) -> String {
    use blake2::{Blake2b512, Digest};
    const IDENT: u8 = 42;
    let mut payload = vec![0b0100_0000 | (IDENT >> 2), (IDENT & 0b11) << 6];
    payload.extend_from_slice(public);
    let hash = Blake2b512::new()
        .chain_update(b"SS58PRE")
        .chain_update(&payload)
        .finalize();
    payload.extend_from_slice(&hash[..2]);
    bs58::encode(payload).into_string()
}

impl Harness {
    /// Every usage event of `month` (`YYYY-MM`), from the admin export.
    pub async fn events_of(&self, month: &str) -> Vec<serde_json::Value> {
        let res = self
            .http
            .get(self.url(&format!("/admin/v1/usage/export?month={month}")))
            .bearer_auth(admin_token())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.text()
            .await
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A prepaid hold of `amount` rao for one request of `account` (one input token, `amount`
/// output tokens), with `template` as the event recorded if it expires.
pub fn hold<'a>(
    account: &'a str,
    amount: u64,
    template: &'a str,
) -> affine_gateway::store::Hold<'a> {
    affine_gateway::store::Hold {
        account,
        mode: affine_gateway::store::BillMode::Prepaid,
        amount_rao: amount,
        credit_limit_rao: 0,
        input_tokens: 1,
        output_tokens: amount,
        netuid: None,
        expiry_event: template,
    }
}

/// The current UTC month, `YYYY-MM` (an export's `month`).
pub fn this_month() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}", d.year(), u8::from(d.month()))
}
