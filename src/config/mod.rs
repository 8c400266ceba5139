//! The effective configuration: an optional TOML file, overridden by environment variables.
//!
//! The variables, their defaults and their meaning are public contract (the README's Configuration table).
//! Loading is strict so mistakes surface at start, not at the first request: unknown keys in
//! the file are errors, every value is range-checked, and every message names the field (and
//! the variable or file it came from) and what was expected. Secrets ([`Secret`]) never appear
//! in an error, a log line or the `check-config` output.
//!
//! The file mirrors the struct layout: top-level keys for the process (`listen`,
//! `max_body_bytes`, …), then one table per concern (`[redis]`, `[upstream]`, `[winner]`,
//! `[reason]`). A new concern is a new struct, a field here and, if it has variables, entries
//! in the table in `env.rs`.
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! log_format = "json"
//!
//! [redis]
//! url = "redis://cache.internal:6379"
//! key_prefix = "agw-prod:"
//!
//! [upstream]
//! first_token_timeout_secs = 90
//! ```

mod chain;
mod env;
mod redis_url;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use chain::{ChainConfig, SubnetGate};
pub use redis_url::{is_cluster_url, seeds as redis_seeds};
pub use secret::{REDACTED, Secret};

use validate::{MAX_BODY_BYTES, MAX_SECS, range};

/// The default provider: Chutes' OpenAI-compatible API.
pub const DEFAULT_UPSTREAM_URL: &str = "https://llm.chutes.ai/v1";

/// The default Affine public API, polled for the current winner.
pub const DEFAULT_AFFINE_API_URL: &str = "https://api.affine.io/api/v1";

/// The SS58 address of the well-known dev key `//Bob`, the gateway's identity when
/// `GATEWAY_HOTKEY` is unset. Anyone can sign as it, so it is for development only.
pub const DEV_HOTKEY: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

/// The shortest accepted `GATEWAY_JWT_SECRET`: an HS256 key shorter than the hash output
/// (32 bytes) weakens it.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Everything the gateway can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address (`GATEWAY_LISTEN`). Loopback by default so a first run exposes nothing.
    pub listen: SocketAddr,
    /// Largest accepted request body in bytes (`GATEWAY_MAX_BODY_BYTES`), at least 1.
    pub max_body_bytes: usize,
    /// Deadline for a whole non-streaming request, in seconds
    /// (`GATEWAY_REQUEST_TIMEOUT_SECS`), at least 1.
    pub request_timeout_secs: u64,
    /// How long graceful shutdown waits for in-flight requests, in seconds
    /// (`GATEWAY_DRAIN_TIMEOUT_SECS`); 0 stops at once.
    pub drain_timeout_secs: u64,
    /// Log line format (`GATEWAY_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// The gateway's own SS58 hotkey (`GATEWAY_HOTKEY`); `None` means [`DEV_HOTKEY`].
    pub hotkey: Option<String>,
    /// HS256 secret for caller and admin tokens (`GATEWAY_JWT_SECRET`), at least
    /// [`MIN_JWT_SECRET_BYTES`]; `None` means a random per-process secret.
    pub jwt_secret: Option<Secret>,
    /// A second HS256 secret still accepted, never used to sign
    /// (`GATEWAY_JWT_SECRET_PREVIOUS`): set during a rotation so the tokens signed with the
    /// outgoing secret keep working while every replica moves to the new one (docs/DEPLOY.md).
    /// At least [`MIN_JWT_SECRET_BYTES`], different from `jwt_secret`, and only with it.
    pub jwt_secret_previous: Option<Secret>,
    /// Whether hotkeys not in the registry may call, on the `public` plan
    /// (`GATEWAY_ALLOW_UNREGISTERED`).
    pub allow_unregistered: bool,
    /// Shared state.
    pub redis: RedisConfig,
    /// The model provider.
    pub upstream: UpstreamConfig,
    /// How the serving model is chosen.
    pub winner: WinnerConfig,
    /// `/v1/reason` request limits.
    pub reason: ReasonConfig,
    /// Bearer tokens and signed-request sessions.
    pub auth: AuthConfig,
    /// Quota behaviour (what happens when Redis fails, the per-IP flood guard, leases).
    pub quota: QuotaConfig,
    /// Money: holds, usage retention, the settlement journal.
    pub metering: MeteringConfig,
    /// Connections: limits, timeouts, trusted proxies, stream send deadline (`[server]`).
    pub server: ServerConfig,
    /// Plans added to or overriding the built-in `public`, `subnet` and `enterprise`
    /// (`[plans.NAME]`); resolved and checked by the quota module at start.
    pub plans: BTreeMap<String, PlanConfig>,
    /// `netuid → plan`: the plan that limits the sum of a subnet's hotkeys (`[subnets]`).
    pub subnets: BTreeMap<String, String>,
    /// The serving map (`[[serving]]`): where each model is served, first matching rule
    /// wins; the built-in default rule (`*` at `upstream.url` with `upstream.api_key`) is
    /// always the last one, so an empty list serves everything as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serving: Vec<ServingRuleConfig>,
    /// Chain access (`[chain]`): metagraph sync and TAO deposits; `None` turns both off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainConfig>,
    /// Per-subnet membership gates (`[subnet_gates."<netuid>"]`); a synced subnet without
    /// one admits every registered hotkey.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subnet_gates: BTreeMap<String, SubnetGate>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            max_body_bytes: 1_048_576,
            request_timeout_secs: 300,
            drain_timeout_secs: 30,
            log_format: LogFormat::default(),
            hotkey: None,
            jwt_secret: None,
            jwt_secret_previous: None,
            allow_unregistered: true,
            redis: RedisConfig::default(),
            upstream: UpstreamConfig::default(),
            winner: WinnerConfig::default(),
            reason: ReasonConfig::default(),
            auth: AuthConfig::default(),
            quota: QuotaConfig::default(),
            metering: MeteringConfig::default(),
            server: ServerConfig::default(),
            plans: BTreeMap::new(),
            subnets: BTreeMap::new(),
            serving: Vec::new(),
            chain: None,
            subnet_gates: BTreeMap::new(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Shared state in Redis; without a URL the state lives in process memory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL of one server, or `redis+cluster://` /
    /// `rediss+cluster://` URL of a Redis Cluster's seed nodes
    /// (`redis+cluster://user:password@host1:7000,host2:7001`: credentials once, nodes
    /// comma-separated) (`GATEWAY_REDIS_URL`). A secret because it may carry the password.
    /// `None`: in-memory state, one process only.
    pub url: Option<Secret>,
    /// Talk Redis Cluster (`GATEWAY_REDIS_CLUSTER`); needs `url`. A `redis://` URL then names
    /// one seed node; a `redis+cluster://` URL turns cluster mode on by itself.
    pub cluster: bool,
    /// Prefix of every key this gateway writes (`GATEWAY_KEY_PREFIX`): non-empty, at most
    /// 64 bytes, no whitespace, no `{`/`}` (those would hijack the Cluster hash tags).
    pub key_prefix: String,
    /// Deadline for connecting, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Deadline for one command or script, in milliseconds. Short: Redis sits on the latency
    /// path of every request.
    pub command_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> RedisConfig {
        RedisConfig {
            url: None,
            cluster: false,
            key_prefix: "agw:".to_string(),
            connect_timeout_ms: 2000,
            command_timeout_ms: 250,
        }
    }
}

impl RedisConfig {
    /// True when the store talks Redis Cluster: `cluster` is set or the URL's scheme says so.
    pub fn cluster_mode(&self) -> bool {
        self.cluster
            || self
                .url
                .as_ref()
                .is_some_and(|u| is_cluster_url(u.expose()))
    }

    /// [`RedisConfig::command_timeout_ms`] as a duration.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

/// The OpenAI-compatible provider of the winner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URL (`GATEWAY_UPSTREAM_URL`), `http://` or `https://`, stored without a trailing
    /// `/` so paths can be appended as `{url}/chat/completions`.
    pub url: String,
    /// Provider API key, sent as a Bearer token (`CHUTES_API_KEY`).
    pub api_key: Option<Secret>,
    /// Deadline for the TCP and TLS connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Deadline for the first token of the answer, in seconds. Long: reasoning models may
    /// think silently for a while.
    pub first_token_timeout_secs: u64,
    /// Longest silence allowed between two chunks of an answer, in seconds: between stream
    /// chunks, and in a whole answer's body once its headers arrived.
    pub idle_timeout_secs: u64,
    /// Deadline for the whole upstream call, streaming included, in seconds.
    pub total_timeout_secs: u64,
    /// How often a cold chute (Chutes' 503 "No instances available") is probed in the
    /// background, in seconds; requests skip it meanwhile when another upstream can serve.
    pub cold_probe_secs: u64,
    /// How often the serving upstream's model catalogue (`GET /models`: the provider's
    /// prices) is read, in seconds, when a plan is priced by the provider; a new winner is
    /// read at once.
    pub catalogue_secs: u64,
    /// The largest whole (non-streamed) answer read from a provider, bytes; a longer one is
    /// refused with 502 `upstream_error` (`/v1/reason` and `/v1/chat/completions` alike).
    pub max_answer_bytes: usize,
    /// Retries before the first byte reached the caller (`[upstream.retry]`).
    pub retry: RetryConfig,
    /// The circuit breaker of each upstream (`[upstream.breaker]`).
    pub breaker: BreakerConfig,
    /// Tried in order when the winner's upstream fails (`[[upstream.fallbacks]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<FallbackConfig>,
}

impl Default for UpstreamConfig {
    fn default() -> UpstreamConfig {
        UpstreamConfig {
            url: DEFAULT_UPSTREAM_URL.to_string(),
            api_key: None,
            connect_timeout_ms: 5000,
            first_token_timeout_secs: 120,
            idle_timeout_secs: 60,
            total_timeout_secs: 600,
            cold_probe_secs: 10,
            catalogue_secs: 60,
            max_answer_bytes: crate::upstream::client::DEFAULT_MAX_ANSWER_BYTES,
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            fallbacks: Vec::new(),
        }
    }
}

/// `[upstream.retry]`: retries of one upstream, only before the first byte reached the caller
/// and only for transient failures (connect errors, 429, 502, 503, 504).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Further attempts on the same upstream before failing over (0 to 5).
    pub max_retries: u32,
    /// Retries allowed per 100 requests on this replica (0 to 100): the retry budget, so an
    /// outage is not amplified into more load than this.
    pub budget_percent: u32,
    /// Retries the budget holds at most (and starts with), so a quiet replica can still retry.
    pub budget_burst: u32,
    /// Base of the jittered exponential backoff, in milliseconds.
    pub backoff_ms: u64,
    /// The longest `Retry-After` (or backoff) waited for, in milliseconds; an upstream asking
    /// for longer is not retried, the request fails over instead.
    pub max_wait_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig {
            max_retries: 1,
            budget_percent: 20,
            budget_burst: 10,
            backoff_ms: 100,
            max_wait_ms: 2000,
        }
    }
}

/// `[upstream.breaker]`: opens when the failure rate over a window passes a threshold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Failure rate (percent of calls in the window, 1 to 100) that opens the breaker.
    pub failure_percent: u32,
    /// Calls in the window before the rate is judged at all (at least 1).
    pub min_requests: u32,
    /// The window, in seconds.
    pub window_secs: u64,
    /// How long an open breaker refuses calls before one probe request is let through.
    pub open_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failure_percent: 50,
            min_requests: 20,
            window_secs: 30,
            open_secs: 15,
        }
    }
}

/// One `[[upstream.fallbacks]]` entry: another OpenAI-compatible provider (or another chute)
/// tried when the winner's upstream fails. Omitted timeouts are the `[upstream]` ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    /// A short name (`[a-z0-9_-]`, 1 to 32): the `upstream` label of the metrics and logs.
    pub name: String,
    /// Base URL, `http://` or `https://`.
    pub url: String,
    /// Its own API key, sent as a Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// The model to ask this provider for; unset: the winner's model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Connect deadline, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// First-token deadline, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_timeout_secs: Option<u64>,
    /// Longest silence between stream chunks, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// Whole-call deadline, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_timeout_secs: Option<u64>,
}

/// One `[[serving]]` rule: models whose id matches `match` are served at `url` (an
/// OpenAI-compatible base URL), asked for as `model_name`, with the rule's key and timeouts.
/// `url` and `model_name` may contain `{model}` (the repo id), `{revision}` and `{slug}`
/// (the Chutes chute slug, see `routing::serving::chute_slug`); a rule that uses `{revision}`
/// applies only to models with a known revision (others fall through to the next rule).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServingRuleConfig {
    /// A model id (`org/model`) or a glob over it (`*`, `?`, `[..]`, `{a,b}`; `*` also spans
    /// `/`), matched case-sensitively against the whole id. `*` alone matches every model.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Base URL, `http://` or `https://`, placeholders allowed.
    pub url: String,
    /// The provider key of this rule, sent as a Bearer token. Exclusive with `api_key_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// The name of an environment variable holding the key (read at start; it must be set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// What to send as `model`; placeholders allowed; unset: the repo id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// The Chutes username that deploys this rule's chutes: `{slug}` is then the slug Chutes
    /// gives that user's chute of the repo; unset: the slug of the repo id alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chutes_user: Option<String>,
    /// Connect deadline, milliseconds; unset: `upstream.connect_timeout_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// First-token deadline, seconds; unset: `upstream.first_token_timeout_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_timeout_secs: Option<u64>,
    /// Longest silence between chunks of an answer, seconds; unset: `upstream.idle_timeout_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// Whole-call deadline, seconds; unset: `upstream.total_timeout_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_timeout_secs: Option<u64>,
    /// The key read from `api_key_env` at load ([`Config::resolve_serving_keys`]); never
    /// serialized, so `check-config` shows only the variable's name.
    #[serde(skip)]
    pub env_api_key: Option<Secret>,
}

impl FallbackConfig {
    /// A fallback named `name` at `url`, without a key or a model override, on the
    /// `[upstream]` timeouts.
    pub fn new(name: &str, url: &str) -> FallbackConfig {
        FallbackConfig {
            name: name.to_string(),
            url: url.to_string(),
            api_key: None,
            model: None,
            connect_timeout_ms: None,
            first_token_timeout_secs: None,
            idle_timeout_secs: None,
            total_timeout_secs: None,
        }
    }
}

impl ServingRuleConfig {
    /// A rule serving `pattern` at `url` with everything else unset (defaults).
    pub fn new(pattern: &str, url: &str) -> ServingRuleConfig {
        ServingRuleConfig {
            pattern: pattern.to_string(),
            url: url.to_string(),
            api_key: None,
            api_key_env: None,
            model_name: None,
            chutes_user: None,
            connect_timeout_ms: None,
            first_token_timeout_secs: None,
            idle_timeout_secs: None,
            total_timeout_secs: None,
            env_api_key: None,
        }
    }

    /// The rule's key: `api_key`, or the one read from `api_key_env`.
    pub fn key(&self) -> Option<&Secret> {
        self.api_key.as_ref().or(self.env_api_key.as_ref())
    }
}

/// How the serving model is chosen.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WinnerConfig {
    /// A pinned model, `org/model[@revision]` (`GATEWAY_WINNER`); when set, Affine is not
    /// polled.
    pub model: Option<String>,
    /// How often the Affine API is polled, in seconds (`GATEWAY_WINNER_POLL_SECS`), at least 1.
    pub poll_secs: u64,
    /// The Affine public API (`GATEWAY_AFFINE_API_URL`), stored without a trailing `/`.
    pub affine_api_url: String,
    /// Base URL of a winner that names its chute; `{slug}` is replaced by the chute slug.
    pub chute_url_template: String,
    /// How often the runtime pin (`PUT /admin/v1/winner`) is read from the store, in
    /// milliseconds: every replica follows a pin within this. The readiness decision (a
    /// new champion switched to) is read at the same pace, capped at 500 ms so replicas
    /// switch within a second of each other.
    pub pin_poll_ms: u64,
    /// Called (POST, JSON, signed) when Affine names a new champion, so the operator's
    /// pipeline deploys it; none by default.
    pub deploy_webhook: Option<String>,
    /// Called when a replaced champion is no longer needed (not among the past champions and
    /// its requests drained); none by default.
    pub retire_webhook: Option<String>,
    /// The HMAC-SHA256 key of the webhooks' `X-Affine-Signature` (`GATEWAY_WEBHOOK_SECRET`);
    /// required when a webhook is set.
    pub webhook_secret: Option<Secret>,
    /// Consecutive successful probes that make a pending champion ready.
    pub ready_probes: u32,
    /// How long a pending champion may take to become ready before it is marked `failed`
    /// (it is still probed, and switched to if it comes up later).
    pub ready_timeout_secs: u64,
    /// Seconds between two probes of a pending champion (and of the winner in effect).
    pub probe_secs: u64,
}

/// Where a winner with a `chute_slug` is served.
pub const DEFAULT_CHUTE_URL_TEMPLATE: &str = "https://{slug}.chutes.ai/v1";

impl Default for WinnerConfig {
    fn default() -> WinnerConfig {
        WinnerConfig {
            model: None,
            poll_secs: 30,
            affine_api_url: DEFAULT_AFFINE_API_URL.to_string(),
            chute_url_template: DEFAULT_CHUTE_URL_TEMPLATE.to_string(),
            pin_poll_ms: 1000,
            deploy_webhook: None,
            retire_webhook: None,
            webhook_secret: None,
            ready_probes: 3,
            ready_timeout_secs: 3600,
            probe_secs: 10,
        }
    }
}

impl WinnerConfig {
    /// [`WinnerConfig::poll_secs`] as a duration.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_secs)
    }
}

/// `/v1/reason` limits that hold until per-plan limits exist.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReasonConfig {
    /// `max_tokens` used when a request omits it; at most `max_tokens_limit`.
    pub default_max_tokens: u32,
    /// The largest `max_tokens` a request may ask for.
    pub max_tokens_limit: u32,
}

impl Default for ReasonConfig {
    fn default() -> ReasonConfig {
        ReasonConfig {
            default_max_tokens: 2048,
            max_tokens_limit: 32768,
        }
    }
}

/// One `[plans.NAME]` table. For a built-in plan, omitted fields keep the built-in value; a new
/// plan must set every limit (prices default to 0).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Requests per minute (token bucket: a full minute may be spent at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Tokens (input estimate + `max_tokens`, reconciled with actual usage) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Tokens per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    /// Largest `max_tokens` a request may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Price of input tokens, rao per million.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_rao_per_mtok: Option<u64>,
    /// Price of output tokens, rao per million.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_rao_per_mtok: Option<u64>,
    /// Where the plan's prices come from: `fixed` (the two prices above; the default) or
    /// `provider` (the serving upstream's catalogue price plus `markup_percent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<PricingMode>,
    /// A provider-priced plan's markup over the provider's price, whole percent (0 sells at
    /// the provider's price). Required with `pricing = "provider"`, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markup_percent: Option<u32>,
}

/// Where a plan's prices come from (`[plans.NAME] pricing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PricingMode {
    /// The plan's own rao prices (`input_rao_per_mtok`, `output_rao_per_mtok`).
    #[default]
    Fixed,
    /// The serving upstream's price for the model (its `GET /v1/models` entry), marked up by
    /// `markup_percent`.
    Provider,
}

/// What the limiter does when Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreFailure {
    /// Admit the request (counted in a metric, logged at most once a minute): an outage of
    /// the quota store does not become an outage of the API.
    FailOpen,
    /// Refuse the request (503 `store_unavailable` with `Retry-After`).
    FailClosed,
}

/// `[quota]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Policy when Redis fails during admission (`GATEWAY_QUOTA_ON_STORE_FAILURE`).
    pub on_store_failure: StoreFailure,
    /// Per client IP flood guard, requests per second sustained (0 disables it).
    pub ip_per_second: u32,
    /// Per client IP burst.
    pub ip_burst: u32,
    /// A concurrency slot's lease, seconds: a slot held by a replica that died comes back
    /// after this; live requests renew it every third of it.
    pub lease_secs: u64,
    /// The limits shared by every caller without an account (`[quota.public_tier]`).
    pub public_tier: PublicTierConfig,
}

/// `[quota.public_tier]`: one aggregate scope that all callers without an account (the
/// `public` plan's unregistered hotkeys) are held to together, on top of their own plan, so
/// a flood of fresh hotkeys — each with a fresh per-hotkey budget — cannot take the capacity
/// paying callers use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PublicTierConfig {
    /// Requests per minute, all such callers together.
    pub requests_per_minute: u64,
    /// Tokens per minute (estimate at admission, reconciled after), all together; the daily
    /// budget is 1,440 times this.
    pub tokens_per_minute: u64,
    /// Requests in flight at once, all together.
    pub max_concurrent: u64,
}

impl Default for PublicTierConfig {
    fn default() -> PublicTierConfig {
        PublicTierConfig {
            requests_per_minute: 1_200,
            tokens_per_minute: 4_000_000,
            max_concurrent: 64,
        }
    }
}

impl Default for QuotaConfig {
    fn default() -> QuotaConfig {
        QuotaConfig {
            on_store_failure: StoreFailure::FailOpen,
            ip_per_second: 500,
            ip_burst: 1000,
            lease_secs: 30,
            public_tier: PublicTierConfig::default(),
        }
    }
}

/// What happens to a prepaid hold whose request was never settled (its replica died).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiredHolds {
    /// Charge the reserved worst case (the request may well have been served).
    Charge,
    /// Charge nothing.
    Release,
}

/// `[metering]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MeteringConfig {
    /// A prepaid hold not renewed for this many seconds expires and becomes an `unsettled`
    /// usage event. Live requests renew it with their lease; it must outlast any Redis outage
    /// the journal is meant to ride out, since a settlement replayed after the expiry is moot.
    pub hold_ttl_secs: u64,
    /// Policy for expired holds.
    pub expired_holds: ExpiredHolds,
    /// Days usage events and daily rollups are kept after their month's last write.
    pub retention_days: u64,
    /// The settlement journal (`GATEWAY_JOURNAL_PATH`), used with Redis only. Relative paths
    /// are relative to the working directory; each replica needs its own. `{listen}` stands
    /// for the listen address ([`listen_slug`]), so the default
    /// ([`DEFAULT_JOURNAL_PATH`]) differs between replicas started in one directory on
    /// different ports, and stays the same across restarts of one replica (which must find
    /// its own journal again to replay it).
    pub journal_path: String,
}

/// The default `metering.journal_path`: one journal per listen address, in the working
/// directory (`affine-gateway-127.0.0.1-8080.journal` for the default address).
pub const DEFAULT_JOURNAL_PATH: &str = "affine-gateway-{listen}.journal";

/// The placeholder of `metering.journal_path` replaced by [`listen_slug`].
pub const LISTEN_PLACEHOLDER: &str = "{listen}";

/// A listen address as a file-name part: the IP, then `-` and the port, each `:` of an IPv6
/// address written `-` (`127.0.0.1-8080`, `0.0.0.0-8080`, `--1-8080` for `[::1]:8080`). No IP
/// spelling contains `-`, so two addresses never give the same name.
pub fn listen_slug(listen: SocketAddr) -> String {
    format!(
        "{}-{}",
        listen.ip().to_string().replace(':', "-"),
        listen.port()
    )
}

impl Default for MeteringConfig {
    fn default() -> MeteringConfig {
        MeteringConfig {
            hold_ttl_secs: 600,
            expired_holds: ExpiredHolds::Charge,
            retention_days: 400,
            journal_path: DEFAULT_JOURNAL_PATH.to_string(),
        }
    }
}

impl MeteringConfig {
    /// The journal of the replica listening on `listen`: `journal_path` with
    /// [`LISTEN_PLACEHOLDER`] replaced by [`listen_slug`]. The configured address is used,
    /// not the bound one, so a replica finds its journal again after a restart.
    pub fn journal_path_for(&self, listen: SocketAddr) -> PathBuf {
        PathBuf::from(
            self.journal_path
                .replace(LISTEN_PLACEHOLDER, &listen_slug(listen)),
        )
    }

    /// The store-level policy.
    pub fn policy(&self) -> crate::store::LedgerPolicy {
        crate::store::LedgerPolicy {
            hold_ttl_ms: self.hold_ttl_secs.saturating_mul(1000),
            charge_expired: self.expired_holds == ExpiredHolds::Charge,
            done_ttl_secs: crate::store::LedgerPolicy::default().done_ttl_secs,
            retention_secs: self.retention_days.saturating_mul(86_400),
        }
    }
}

// --- [server]: connection limits and timeouts (issue #11, connection items) ---

/// `[server]`: what one client may hold of the process (connections, time, a slot), and whom
/// to believe about the client's address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Connections open at once, in all (at least 1). Over it a new connection is closed at
    /// accept, so file descriptors stay available for `/healthz`, Redis and the upstream.
    pub max_connections: usize,
    /// Connections open at once from one TCP peer address (an IPv6 /64 counts as one; 0
    /// disables). Trusted proxies are exempt: every client behind them shares their address.
    pub max_connections_per_ip: usize,
    /// Seconds a connection gets to send a complete request head: the first one after
    /// connecting, and (HTTP/1) the next one on a kept-alive connection (at least 1).
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight before it is closed
    /// (gracefully; HTTP/2 gets a GOAWAY) (at least 1).
    pub idle_timeout_secs: u64,
    /// Seconds a request's body may take to arrive in full, from its head (at least 1).
    /// Past it the request is answered 408 `request_timeout`.
    pub body_read_timeout_secs: u64,
    /// HTTP/2 keep-alive ping interval in seconds (0 disables pings).
    pub http2_keepalive_interval_secs: u64,
    /// Seconds an HTTP/2 keep-alive ping may go unanswered before the connection is closed
    /// (at least 1).
    pub http2_keepalive_timeout_secs: u64,
    /// Seconds one event of a stream may wait for the client to take it. A client that stops
    /// reading for longer loses the stream (`client_closed`, charged for what was produced),
    /// which frees its concurrency slot, its hold and the upstream call (at least 1).
    pub stream_send_timeout_secs: u64,
    /// Proxies (CIDRs such as `10.0.0.0/8`, or single addresses) whose `X-Forwarded-For` /
    /// `Forwarded` headers are believed (`GATEWAY_TRUSTED_PROXIES`, comma-separated). Empty:
    /// the client is the TCP peer and those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// Runtime worker threads (`GATEWAY_WORKER_THREADS`); 0: one per available core. On a
    /// small machine shared with Redis or the provider, fewer workers wake each other less.
    pub worker_threads: usize,
    /// A second listen address serving `GET /metrics` alone (`GATEWAY_METRICS_LISTEN`). When
    /// set, the main address no longer serves `/metrics`, so a firewall or a Kubernetes
    /// NetworkPolicy can let only Prometheus reach the metrics; unset, `/metrics` is on the
    /// main address. Must differ from `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_connections: 10_000,
            max_connections_per_ip: 256,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            body_read_timeout_secs: 30,
            http2_keepalive_interval_secs: 20,
            http2_keepalive_timeout_secs: 20,
            stream_send_timeout_secs: 30,
            trusted_proxies: Vec::new(),
            worker_threads: 0,
            metrics_listen: None,
        }
    }
}

impl ServerConfig {
    /// `body_read_timeout_secs` as a duration.
    pub(crate) fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }

    /// `stream_send_timeout_secs` as a duration.
    pub(crate) fn stream_send_timeout(&self) -> Duration {
        Duration::from_secs(self.stream_send_timeout_secs)
    }

    /// The runtime's worker threads: `worker_threads`, or one per available core when 0.
    pub fn worker_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        }
    }

    /// The trusted proxies as networks (a bare address is a /32 or /128). Validation has
    /// checked them, so an unparsable entry cannot reach here; it would be skipped.
    pub fn trusted_networks(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|s| validate::cidr(s).ok())
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let check = |field: &'static str, r: Result<(), String>| {
            r.map_err(|expected| ConfigError::Invalid {
                field: field.into(),
                origin: None,
                expected,
            })
        };
        let secs = |v: u64, lo: u64| range(v, lo, MAX_SECS, "seconds");
        check(
            "server.max_connections",
            range(self.max_connections as u64, 1, 10_000_000, "connections"),
        )?;
        check(
            "server.max_connections_per_ip",
            range(
                self.max_connections_per_ip as u64,
                0,
                10_000_000,
                "connections",
            ),
        )?;
        check(
            "server.header_read_timeout_secs",
            secs(self.header_read_timeout_secs, 1),
        )?;
        check("server.idle_timeout_secs", secs(self.idle_timeout_secs, 1))?;
        check(
            "server.body_read_timeout_secs",
            secs(self.body_read_timeout_secs, 1),
        )?;
        check(
            "server.http2_keepalive_interval_secs",
            secs(self.http2_keepalive_interval_secs, 0),
        )?;
        check(
            "server.http2_keepalive_timeout_secs",
            secs(self.http2_keepalive_timeout_secs, 1),
        )?;
        check(
            "server.stream_send_timeout_secs",
            secs(self.stream_send_timeout_secs, 1),
        )?;
        for p in &self.trusted_proxies {
            check("server.trusted_proxies", validate::cidr(p).map(|_| ()))?;
        }
        check(
            "server.worker_threads",
            range(self.worker_threads as u64, 0, 1024, "threads"),
        )?;
        Ok(())
    }
}

// --- end [server] ---

/// Bearer-token settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of the tokens `POST /v1/auth/session` hands out, in seconds (1 to 86400).
    /// Short, so a leaked session token is worth little; a caller re-signs to renew.
    pub session_ttl_secs: u64,
    /// Clock skew tolerated on a token's `exp`, in seconds (at most 300).
    pub jwt_leeway_secs: u64,
    // issue #11 (auth): replay protection across replicas.
    /// The largest clock difference between replicas sharing Redis that replay protection
    /// covers, in seconds (at most 60): replay marks outlive a signed request's window by this
    /// much, because every replica judges freshness by its own clock.
    pub replica_clock_skew_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            session_ttl_secs: 900,
            jwt_leeway_secs: 5,
            replica_clock_skew_secs: 5,
        }
    }
}

impl AuthConfig {
    /// `session_ttl_secs` as a duration.
    pub(crate) fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }

    /// `jwt_leeway_secs` as a duration.
    pub(crate) fn jwt_leeway(&self) -> Duration {
        Duration::from_secs(self.jwt_leeway_secs)
    }

    /// `replica_clock_skew_secs` as a duration.
    pub fn replica_clock_skew(&self) -> Duration {
        Duration::from_secs(self.replica_clock_skew_secs)
    }
}

/// Why the configuration was refused. Every message names the file, variable or field at
/// fault and what was expected; none contains a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read configuration file {}: {source}", .path.display())]
    Read {
        /// The file as given.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{location}: {message}")]
    Toml {
        /// `file:line:column`.
        location: String,
        /// What the TOML parser found.
        message: String,
    },
    /// An environment variable could not be parsed.
    #[error("{var}{}: {expected}", shown_value(.value.as_deref()))]
    Env {
        /// The variable.
        var: &'static str,
        /// The offending value; `None` for secret variables, whose values are never shown.
        value: Option<String>,
        /// What was expected.
        expected: String,
    },
    /// A value parsed but is not acceptable.
    #[error("{field}{}: {expected}", shown_origin(.origin.as_deref()))]
    Invalid {
        /// The field, spelled as in the TOML file (`upstream.url`, `plans.gold.max_tokens`).
        field: std::borrow::Cow<'static, str>,
        /// Where the value came from (`GATEWAY_UPSTREAM_URL`, a file path), when known.
        origin: Option<String>,
        /// What was expected.
        expected: String,
    },
}

fn shown_value(value: Option<&str>) -> String {
    match value {
        Some(v) => format!("={v:?}"),
        None => " (value not shown: it is a secret)".to_string(),
    }
}

fn shown_origin(origin: Option<&str>) -> String {
    origin.map(|o| format!(" (from {o})")).unwrap_or_default()
}

/// Every environment variable the configuration reads, with the field it sets (spelled as
/// in the TOML file), in the order they are applied. `RUST_LOG` is not among them: the log
/// filter reads it directly.
pub fn env_variables() -> impl Iterator<Item = (&'static str, &'static str)> {
    env::VARS.iter().map(|v| (v.name, v.field))
}

impl Config {
    /// Loads the configuration: defaults, then the TOML `file` if given, then the
    /// environment, then validation.
    ///
    /// `env` looks a variable up; it is injected so tests need not touch the process
    /// environment, and production passes `|k| std::env::var(k).ok()`. A variable set to the
    /// empty string counts as unset (`VAR=` in compose files and `docker run -e` means "not
    /// set", and no setting accepts an empty value).
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                parse_toml(&text, &path.display().to_string())?
            }
            None => Config::default(),
        };
        let from_env = env::apply(&mut config, &env)?;
        config.normalize();
        config.validate().map_err(|e| match e {
            ConfigError::Invalid {
                field, expected, ..
            } => {
                let origin = if from_env.iter().any(|f| *f == field) {
                    env::var_for(&field).map(str::to_string)
                } else {
                    file.map(|p| p.display().to_string())
                };
                ConfigError::Invalid {
                    field,
                    origin,
                    expected,
                }
            }
            other => other,
        })?;
        config.resolve_serving_keys(&env).map_err(|e| match e {
            ConfigError::Invalid {
                field, expected, ..
            } => ConfigError::Invalid {
                field,
                origin: file.map(|p| p.display().to_string()),
                expected,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Reads the key of every `[[serving]]` rule that names `api_key_env` and has not read it
    /// yet, through `env` (the process environment in production). A variable that is unset
    /// (or empty) is an error naming the rule, so a missing key stops the start instead of
    /// sending unauthenticated requests.
    pub fn resolve_serving_keys(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (i, rule) in self.serving.iter_mut().enumerate() {
            let Some(var) = &rule.api_key_env else {
                continue;
            };
            if rule.env_api_key.is_some() {
                continue;
            }
            let value = env(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ConfigError::Invalid {
                    field: format!("serving[{i}].api_key_env").into(),
                    origin: None,
                    expected: format!("names the environment variable {var}, which is not set"),
                })?;
            validate::header_secret(&value).map_err(|expected| ConfigError::Invalid {
                field: format!("serving[{i}].api_key_env").into(),
                origin: Some(var.clone()),
                expected,
            })?;
            rule.env_api_key = Some(Secret::new(value));
        }
        Ok(())
    }

    /// Parses and validates the contents of a configuration file (no environment).
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let mut config = parse_toml(s, "<config>")?;
        config.normalize();
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |field: &'static str, r: Result<(), String>| {
            r.map_err(|expected| ConfigError::Invalid {
                field: field.into(),
                origin: None,
                expected,
            })
        };
        let secs = |v: u64, lo: u64| range(v, lo, MAX_SECS, "seconds");
        let millis = |v: u64| range(v, 1, MAX_SECS * 1000, "milliseconds");

        let body = u64::try_from(self.max_body_bytes).unwrap_or(u64::MAX);
        check(
            "max_body_bytes",
            range(body, 1, MAX_BODY_BYTES as u64, "bytes"),
        )?;
        check("request_timeout_secs", secs(self.request_timeout_secs, 1))?;
        check("drain_timeout_secs", secs(self.drain_timeout_secs, 0))?;
        if let Some(hotkey) = &self.hotkey {
            check("hotkey", validate::hotkey(hotkey))?;
        }
        for (field, secret) in [
            ("jwt_secret", &self.jwt_secret),
            ("jwt_secret_previous", &self.jwt_secret_previous),
        ] {
            if let Some(secret) = secret {
                check(field, validate::jwt_secret(secret.expose()))?;
            }
        }
        if let Some(previous) = &self.jwt_secret_previous {
            match &self.jwt_secret {
                None => check(
                    "jwt_secret_previous",
                    Err(
                        "requires jwt_secret (GATEWAY_JWT_SECRET): the previous secret is only \
                         accepted beside the current one"
                            .into(),
                    ),
                )?,
                // `Secret`'s equality is constant-time.
                Some(current) if current == previous => check(
                    "jwt_secret_previous",
                    Err(
                        "must differ from jwt_secret (GATEWAY_JWT_SECRET): a rotation needs a \
                         new secret"
                            .into(),
                    ),
                )?,
                Some(_) => {}
            }
        }

        let r = &self.redis;
        if let Some(url) = &r.url {
            check("redis.url", validate::redis_url(url.expose(), r.cluster))?;
        } else if r.cluster {
            check(
                "redis.cluster",
                Err(
                    "requires redis.url (GATEWAY_REDIS_URL): in-memory state has no cluster mode"
                        .to_string(),
                ),
            )?;
        }
        check("redis.key_prefix", validate::key_prefix(&r.key_prefix))?;
        check("redis.connect_timeout_ms", millis(r.connect_timeout_ms))?;
        check("redis.command_timeout_ms", millis(r.command_timeout_ms))?;

        let u = &self.upstream;
        check("upstream.url", validate::http_url(&u.url))?;
        if let Some(key) = &u.api_key {
            check("upstream.api_key", validate::header_secret(key.expose()))?;
        }
        check("upstream.connect_timeout_ms", millis(u.connect_timeout_ms))?;
        check(
            "upstream.first_token_timeout_secs",
            secs(u.first_token_timeout_secs, 1),
        )?;
        check("upstream.idle_timeout_secs", secs(u.idle_timeout_secs, 1))?;
        check("upstream.total_timeout_secs", secs(u.total_timeout_secs, 1))?;
        check("upstream.cold_probe_secs", secs(u.cold_probe_secs, 1))?;
        check("upstream.catalogue_secs", secs(u.catalogue_secs, 1))?;
        check(
            "upstream.max_answer_bytes",
            range(u.max_answer_bytes as u64, 4096, 1 << 30, "bytes"),
        )?;
        let rt = &u.retry;
        check(
            "upstream.retry.max_retries",
            range(rt.max_retries.into(), 0, 5, "retries"),
        )?;
        check(
            "upstream.retry.budget_percent",
            range(rt.budget_percent.into(), 0, 100, "percent"),
        )?;
        check(
            "upstream.retry.budget_burst",
            range(rt.budget_burst.into(), 0, 10_000, "retries"),
        )?;
        check(
            "upstream.retry.backoff_ms",
            range(rt.backoff_ms, 0, 60_000, "milliseconds"),
        )?;
        check(
            "upstream.retry.max_wait_ms",
            range(rt.max_wait_ms, 0, 60_000, "milliseconds"),
        )?;
        let b = &u.breaker;
        check(
            "upstream.breaker.failure_percent",
            range(b.failure_percent.into(), 1, 100, "percent"),
        )?;
        check(
            "upstream.breaker.min_requests",
            range(b.min_requests.into(), 1, 1_000_000, "requests"),
        )?;
        check("upstream.breaker.window_secs", secs(b.window_secs, 1))?;
        check("upstream.breaker.open_secs", secs(b.open_secs, 1))?;
        for (i, f) in u.fallbacks.iter().enumerate() {
            let field = |name: &str| format!("upstream.fallbacks[{i}].{name}");
            let checked = |name: &str, r: Result<(), String>| {
                r.map_err(|expected| ConfigError::Invalid {
                    field: field(name).into(),
                    origin: None,
                    expected,
                })
            };
            checked("name", validate::upstream_name(&f.name))?;
            if u.fallbacks[..i].iter().any(|o| o.name == f.name) {
                checked("name", Err(format!("`{}` is used twice", f.name)))?;
            }
            checked("url", validate::http_url(&f.url))?;
            if let Some(key) = &f.api_key {
                checked("api_key", validate::header_secret(key.expose()))?;
            }
            if let Some(m) = &f.model {
                checked("model", validate::provider_model(m))?;
            }
            check_timeouts(
                [
                    f.connect_timeout_ms,
                    f.first_token_timeout_secs,
                    f.idle_timeout_secs,
                    f.total_timeout_secs,
                ],
                checked,
            )?;
        }

        for (i, rule) in self.serving.iter().enumerate() {
            let checked = |name: &str, r: Result<(), String>| {
                r.map_err(|expected| ConfigError::Invalid {
                    field: format!("serving[{i}].{name}").into(),
                    origin: None,
                    expected,
                })
            };
            checked(
                "match",
                crate::routing::serving::compile_glob(&rule.pattern).map(|_| ()),
            )?;
            checked(
                "url",
                crate::routing::serving::check_url_template(&rule.url),
            )?;
            if let Some(m) = &rule.model_name {
                checked(
                    "model_name",
                    crate::routing::serving::check_model_template(m),
                )?;
            }
            if rule.api_key.is_some() && rule.api_key_env.is_some() {
                checked(
                    "api_key",
                    Err("api_key and api_key_env are both set; keep one".into()),
                )?;
            }
            if let Some(key) = &rule.api_key {
                checked("api_key", validate::header_secret(key.expose()))?;
            }
            if let Some(var) = &rule.api_key_env {
                checked("api_key_env", validate::env_var_name(var))?;
            }
            if let Some(user) = &rule.chutes_user {
                checked("chutes_user", validate::provider_model(user))?;
            }
            check_timeouts(
                [
                    rule.connect_timeout_ms,
                    rule.first_token_timeout_secs,
                    rule.idle_timeout_secs,
                    rule.total_timeout_secs,
                ],
                checked,
            )?;
        }

        let w = &self.winner;
        if let Some(model) = &w.model {
            check("winner.model", validate::winner_model(model))?;
        }
        check("winner.poll_secs", secs(w.poll_secs, 1))?;
        check(
            "winner.affine_api_url",
            validate::http_url(&w.affine_api_url),
        )?;
        check(
            "winner.chute_url_template",
            validate::http_url(&w.chute_url_template.replace("{slug}", "slug")),
        )?;
        check(
            "winner.pin_poll_ms",
            range(w.pin_poll_ms, 50, 60_000, "milliseconds"),
        )?;
        for (name, hook) in [
            ("winner.deploy_webhook", &w.deploy_webhook),
            ("winner.retire_webhook", &w.retire_webhook),
        ] {
            if let Some(url) = hook {
                check(name, validate::http_url(url))?;
                if w.webhook_secret
                    .as_ref()
                    .is_none_or(|s| s.expose().is_empty())
                {
                    check(
                        "winner.webhook_secret",
                        Err(format!(
                            "must be set (GATEWAY_WEBHOOK_SECRET) when {name} is: the \
                             webhooks are signed"
                        )),
                    )?;
                }
            }
        }
        check(
            "winner.ready_probes",
            range(u64::from(w.ready_probes), 1, 100, "probes"),
        )?;
        check(
            "winner.ready_timeout_secs",
            range(w.ready_timeout_secs, 1, 7 * 86_400, "seconds"),
        )?;
        check(
            "winner.probe_secs",
            range(w.probe_secs, 1, 3_600, "seconds"),
        )?;

        check(
            "auth.session_ttl_secs",
            range(self.auth.session_ttl_secs, 1, 86_400, "seconds"),
        )?;
        check(
            "auth.jwt_leeway_secs",
            range(self.auth.jwt_leeway_secs, 0, 300, "seconds"),
        )?;
        check(
            "auth.replica_clock_skew_secs",
            range(self.auth.replica_clock_skew_secs, 0, 60, "seconds"),
        )?;
        check(
            "quota.lease_secs",
            range(self.quota.lease_secs, 3, 3600, "seconds"),
        )?;
        check(
            "metering.journal_path",
            validate::journal_path(&self.metering.journal_path),
        )?;
        let t = &self.quota.public_tier;
        for (field, v) in [
            (
                "quota.public_tier.requests_per_minute",
                t.requests_per_minute,
            ),
            ("quota.public_tier.tokens_per_minute", t.tokens_per_minute),
            ("quota.public_tier.max_concurrent", t.max_concurrent),
        ] {
            check(field, range(v, 1, 1 << 40, "a count"))?;
        }
        if self.quota.ip_per_second > 0 && self.quota.ip_burst == 0 {
            check(
                "quota.ip_burst",
                Err("must be at least 1 when quota.ip_per_second is set".into()),
            )?;
        }
        self.server.validate()?;
        if self.server.metrics_listen == Some(self.listen) {
            check(
                "server.metrics_listen",
                Err(format!(
                    "must differ from listen ({}): it is a second address for /metrics alone",
                    self.listen
                )),
            )?;
        }
        let located = |(field, expected): (String, String)| ConfigError::Invalid {
            field: field.into(),
            origin: None,
            expected,
        };
        if let Some(c) = &self.chain {
            c.validate().map_err(located)?;
        }
        chain::validate_gates(&self.subnet_gates).map_err(located)?;
        let rs = &self.reason;
        check(
            "reason.max_tokens_limit",
            range(rs.max_tokens_limit.into(), 1, u32::MAX.into(), "tokens"),
        )?;
        if rs.default_max_tokens == 0 || rs.default_max_tokens > rs.max_tokens_limit {
            check(
                "reason.default_max_tokens",
                Err(format!(
                    "must be between 1 and reason.max_tokens_limit ({}), got {}",
                    rs.max_tokens_limit, rs.default_max_tokens
                )),
            )?;
        }
        Ok(())
    }

    /// The effective configuration as TOML, for `check-config`: secrets print as
    /// `<redacted>` (the whole Redis URL, since it may hold a password) and credentials
    /// embedded in other URLs are replaced. Unset optional values are omitted. Without
    /// secrets, the output parses back to an equal configuration.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.upstream.url = validate::redact_userinfo(&shown.upstream.url);
        shown.winner.affine_api_url = validate::redact_userinfo(&shown.winner.affine_api_url);
        for f in &mut shown.upstream.fallbacks {
            f.url = validate::redact_userinfo(&f.url);
        }
        for r in &mut shown.serving {
            r.url = validate::redact_userinfo(&r.url);
        }
        if let Some(c) = &mut shown.chain {
            for url in c.endpoints.iter_mut().chain(c.archive_endpoints.iter_mut()) {
                *url = validate::redact_userinfo(url);
            }
        }
        match toml::to_string_pretty(&shown) {
            Ok(body) => {
                format!("# Effective configuration; secrets are shown as \"{REDACTED}\".\n{body}")
            }
            // Only an unvalidated config (a value beyond TOML's i64) can get here.
            Err(e) => format!("# cannot render the configuration as TOML: {e}\n"),
        }
    }

    /// True when no `CHUTES_API_KEY` is set and the upstream is the default: the gateway then
    /// serves from the built-in simulator, so a first run works offline (the caller prints
    /// the loud warning).
    pub fn uses_simulator(&self) -> bool {
        self.upstream.api_key.is_none()
            && self.upstream.url.trim_end_matches('/') == DEFAULT_UPSTREAM_URL
    }

    /// The gateway's hotkey: the configured one, or [`DEV_HOTKEY`].
    pub fn effective_hotkey(&self) -> &str {
        self.hotkey.as_deref().unwrap_or(DEV_HOTKEY)
    }

    /// Human-readable warnings about defaults in force that are fine for a first run and
    /// wrong in production. Empty for a fully configured gateway.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.redis.url.is_none() {
            out.push(
                "GATEWAY_REDIS_URL is not set: state (quotas, balances, replay protection, \
                 revocations) is kept in memory; run a single process only, and expect it to \
                 be lost on restart"
                    .to_string(),
            );
        }
        if self.hotkey.is_none() {
            out.push(format!(
                "GATEWAY_HOTKEY is not set: using the dev hotkey //Bob ({DEV_HOTKEY}), whose \
                 private key is public; signed requests must be addressed to it"
            ));
        }
        if self.jwt_secret.is_none() {
            out.push(
                "GATEWAY_JWT_SECRET is not set: tokens are signed with a random per-process \
                 secret (they stop working on restart and other replicas refuse them), and a \
                 dev token for the account `dev` is printed at start"
                    .to_string(),
            );
        }
        if self.uses_simulator() {
            out.push(format!(
                "CHUTES_API_KEY is not set and the upstream is the default ({DEFAULT_UPSTREAM_URL}): \
                 answers come from the built-in SIMULATED upstream, not from a real model"
            ));
        }
        if self.upstream.api_key.is_some() && sends_in_clear(&self.upstream.url) {
            out.push(format!(
                "the upstream {} is plain http:// and not on this host: CHUTES_API_KEY crosses \
                 the network unencrypted",
                validate::redact_userinfo(&self.upstream.url)
            ));
        }
        out
    }

    /// [`Config::request_timeout_secs`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// Canonical forms that are not worth an error: base URLs lose trailing slashes so that
    /// `{url}/path` never has a `//`.
    fn normalize(&mut self) {
        let fallbacks = self
            .upstream
            .fallbacks
            .iter_mut()
            .map(|f| &mut f.url)
            .chain(self.serving.iter_mut().map(|r| &mut r.url));
        for url in [
            &mut self.upstream.url,
            &mut self.winner.affine_api_url,
            &mut self.winner.chute_url_template,
        ]
        .into_iter()
        .chain(fallbacks)
        {
            let trimmed = url.trim_end_matches('/').len();
            url.truncate(trimmed);
        }
    }
}

/// Checks an `http://` or `https://` base URL as the configuration does (for URLs built at
/// run time, such as an expanded `[[serving]]` URL); the message quotes it without userinfo.
pub(crate) fn check_base_url(url: &str) -> Result<(), String> {
    validate::http_url(url)
}

/// Checks a model name as the configuration does (no blanks, 1 to 256 bytes).
pub(crate) fn check_model_name(name: &str) -> Result<(), String> {
    validate::provider_model(name)
}

/// Checks the optional per-upstream deadlines of a fallback or a serving rule (connect in
/// milliseconds, then first token, idle and total in seconds), reporting through `checked`
/// under the key each is written as.
fn check_timeouts(
    values: [Option<u64>; 4],
    checked: impl Fn(&str, Result<(), String>) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let names = [
        "connect_timeout_ms",
        "first_token_timeout_secs",
        "idle_timeout_secs",
        "total_timeout_secs",
    ];
    for (i, (name, v)) in names.into_iter().zip(values).enumerate() {
        if let Some(v) = v {
            let r = if i == 0 {
                range(v, 1, MAX_SECS * 1000, "milliseconds")
            } else {
                range(v, 1, MAX_SECS, "seconds")
            };
            checked(name, r)?;
        }
    }
    Ok(())
}

/// Whether a request to `url` leaves the host unencrypted.
fn sends_in_clear(url: &str) -> bool {
    let plain = url
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
    let local = validate::url_host(url).is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    });
    plain && !local
}

/// Parses TOML into a [`Config`] (unvalidated). Errors carry `origin:line:column` and the
/// parser's message, but not the source line it would normally quote: that line may hold a
/// secret.
fn parse_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|mut e: toml::de::Error| {
        let location = match e.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!("{origin}:{line}:{column}")
            }
            None => origin.to_string(),
        };
        e.set_input(None);
        let mut message = e.to_string().trim_end().replace('\n', " ");
        // A type error quotes the value ("invalid type: integer `123`"); for a secret field
        // keep only which field was wrong.
        if let Some(field) = env::secret_fields().find(|f| message.ends_with(&format!(" in `{f}`")))
        {
            message = format!("expected a string (value not shown: it is a secret) in `{field}`");
        }
        ConfigError::Toml { location, message }
    })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_columns() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("a\nbc", 3), (2, 2));
        assert_eq!(line_column("a\n", 9), (2, 1));
        assert_eq!(line_column("é=1", 2), (1, 2));
    }

    #[test]
    fn every_variable_names_a_distinct_field() {
        let mut fields: Vec<_> = env::VARS.iter().map(|v| v.field).collect();
        fields.sort_unstable();
        fields.dedup();
        assert_eq!(fields.len(), env::VARS.len());
    }

    #[test]
    fn clear_text_detection() {
        assert!(sends_in_clear("http://llm.example.com/v1"));
        assert!(!sends_in_clear("https://llm.example.com/v1"));
        assert!(!sends_in_clear("http://127.0.0.1:9000/v1"));
        assert!(!sends_in_clear("http://[::1]:9000/v1"));
        assert!(!sends_in_clear("http://localhost:9000"));
    }
}
