//! JSON-RPC 2.0 over HTTP POST to Subtensor nodes.
//!
//! Public nodes allow about one request a second per IP and answer 429 past it, and lite nodes
//! keep only recent state. So: endpoints are tried in order, each waits for its own rate
//! limiter before every request, one that fails (429, 5xx, any other non-2xx, transport
//! error, garbage) backs off exponentially (1 s to 60 s, at least its `Retry-After`) while the
//! next is tried, and a "state discarded" answer is retried on the archive endpoints. The
//! client never sleeps beyond the rate limiter: when every endpoint is failing or backing off
//! it says so ([`RpcError::Unavailable`], [`RpcError::RateLimited`]) and the caller's loop
//! decides when to come back.
//!
//! URLs may carry an API key, so they are never logged, put in an error or a metric label:
//! endpoints are named `lite0`, `lite1`, …, `archive0`, … instead.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};

/// A block hash.
pub(crate) type BlockHash = [u8; 32];

/// The fields of a block header the pollers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// The block number.
    pub number: u64,
    /// Its parent's hash: the metadata to decode this block's events with is read there.
    pub parent_hash: BlockHash,
}

/// The runtime's version; metadata is cached by `spec_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuntimeVersion {
    /// Bumped by every runtime upgrade.
    pub spec_version: u32,
}

/// Why a chain call failed. [`RpcError::code`] names each one stably.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RpcError {
    /// Every endpoint answered 429 (or is backing off after one).
    #[error("every chain endpoint is rate limiting us")]
    RateLimited,
    /// No endpoint answered; the text says why (never a URL).
    #[error("no chain endpoint answered: {0}")]
    Unavailable(String),
    /// The state asked for is pruned on every lite endpoint and no archive endpoint has it.
    #[error("the chain state at that block is discarded (no archive node has it)")]
    StateDiscarded,
    /// The node answered with a JSON-RPC error.
    #[error("chain RPC error {code}: {message}")]
    Rpc {
        /// JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The node's answer is not what the method returns.
    #[error("undecodable chain answer: {0}")]
    Decode(String),
}

impl RpcError {
    /// The stable, machine-readable name of this error.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            RpcError::RateLimited => "chain_rate_limited",
            RpcError::Unavailable(_) => "chain_unavailable",
            RpcError::StateDiscarded => "chain_state_discarded",
            RpcError::Rpc { .. } => "chain_rpc_error",
            RpcError::Decode(_) => "chain_decode",
        }
    }
}

/// One endpoint's health, as `GET /admin/v1/chain` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct EndpointStatus {
    /// `lite0`, `archive1`, …: never the URL, which may carry a key.
    pub label: String,
    /// An archive endpoint (only asked after a lite one said the state is discarded).
    pub archive: bool,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (429, 5xx, transport, garbage; not JSON-RPC errors).
    pub failures: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Skipped until its backoff ends.
    pub backing_off: bool,
}

/// The first backoff after a failure.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest backoff, and the cap on a `Retry-After` we honour.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Metadata is about 1 MB of hex; nothing we ask for is near this.
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// The backoff after a failure, given the previous one (zero after a success) and the
/// endpoint's `Retry-After`: doubling from 1 s to 60 s, never shorter than `Retry-After`
/// (itself capped at 60 s, so a hostile header cannot park an endpoint for a day).
fn next_backoff(previous: Duration, retry_after: Option<Duration>) -> Duration {
    let exp = if previous.is_zero() {
        BACKOFF_MIN
    } else {
        (previous * 2).min(BACKOFF_MAX)
    };
    exp.max(retry_after.unwrap_or_default().min(BACKOFF_MAX))
}

/// Whether a JSON-RPC error means the node no longer (or never) had the block's state, so an
/// archive node may still answer. Substrate: "State already discarded for 0x…",
/// "UnknownBlock: …", "pruned".
fn is_discarded(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "state already discarded",
        "unknownblock",
        "unknown block",
        "pruned",
        "discarded",
    ]
    .iter()
    .any(|s| m.contains(s))
}

#[derive(Debug, Default)]
struct Health {
    requests: u64,
    failures: u64,
    last_error: Option<String>,
    backoff: Duration,
    until: Option<Instant>,
}

struct Endpoint {
    label: String,
    url: String,
    archive: bool,
    limiter: DefaultDirectRateLimiter,
    health: Mutex<Health>,
}

/// How one attempt at one endpoint ended, short of a result.
enum Failure {
    /// 429: back off, try the next.
    RateLimited(Option<Duration>),
    /// Anything else that says this endpoint is not answering: back off, try the next.
    Down(String, Option<Duration>),
    /// The node answered that the state is gone: try the archive tier.
    Discarded,
    /// The node answered with an error another node would repeat: stop.
    Rpc(i64, String),
}

struct Inner {
    http: reqwest::Client,
    lite: Vec<Endpoint>,
    archive: Vec<Endpoint>,
    timeout: Duration,
    next_id: AtomicU64,
    requests: prometheus::IntCounterVec,
}

/// The chain client. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub(crate) struct ChainRpc {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ChainRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URLs: they may carry keys.
        f.debug_struct("ChainRpc")
            .field("endpoints", &self.inner.lite.len())
            .field("archive", &self.inner.archive.len())
            .finish()
    }
}

impl ChainRpc {
    /// A client over `endpoints` (tried in order) and `archive` (asked only when the state is
    /// discarded), each endpoint limited to `requests_per_second`; every request is bounded by
    /// `timeout`. `requests` is `agw_chain_rpc_requests_total{endpoint, outcome}`.
    pub(crate) fn new(
        endpoints: Vec<String>,
        archive: Vec<String>,
        requests_per_second: NonZeroU32,
        timeout: Duration,
        requests: prometheus::IntCounterVec,
    ) -> Result<ChainRpc, String> {
        if endpoints.is_empty() {
            return Err("chain: at least one endpoint is needed".into());
        }
        let tier = |urls: Vec<String>, archive: bool| -> Result<Vec<Endpoint>, String> {
            let prefix = if archive { "archive" } else { "lite" };
            urls.into_iter()
                .enumerate()
                .map(|(i, url)| {
                    let label = format!("{prefix}{i}");
                    match reqwest::Url::parse(&url) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(Endpoint {
                            label,
                            url,
                            archive,
                            limiter: RateLimiter::direct(Quota::per_second(requests_per_second)),
                            health: Mutex::default(),
                        }),
                        _ => Err(format!("chain endpoint {label} is not an http(s) URL")),
                    }
                })
                .collect()
        };
        let lite = tier(endpoints, false)?;
        let archive = tier(archive, true)?;
        crate::upstream::client::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // A node must not point the gateway at another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("affine-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the chain HTTP client: {e}"))?;
        Ok(ChainRpc {
            inner: Arc::new(Inner {
                http,
                lite,
                archive,
                timeout,
                next_id: AtomicU64::new(1),
                requests,
            }),
        })
    }

    /// The hash of the latest finalized block (`chain_getFinalizedHead`).
    pub(crate) async fn finalized_head(&self) -> Result<BlockHash, RpcError> {
        let v = self.call("chain_getFinalizedHead", json!([])).await?;
        hash_of(&v)
    }

    /// A block's header (`chain_getHeader`). A node that does not know the block (`null`) is
    /// treated like one that pruned it: the archive endpoints are asked.
    pub(crate) async fn header(&self, at: BlockHash) -> Result<Header, RpcError> {
        let v = self
            .call_inner("chain_getHeader", json!([hex0x(&at)]), true)
            .await?;
        let number = v
            .get("number")
            .ok_or_else(|| RpcError::Decode("header without number".into()))
            .and_then(number_of)?;
        let parent_hash = v
            .get("parentHash")
            .ok_or_else(|| RpcError::Decode("header without parentHash".into()))
            .and_then(hash_of)?;
        Ok(Header {
            number,
            parent_hash,
        })
    }

    /// The best (not yet finalized) head's number: `chain_getHeader` without a hash.
    pub(crate) async fn best_number(&self) -> Result<u64, RpcError> {
        let v = self.call("chain_getHeader", json!([])).await?;
        v.get("number")
            .ok_or_else(|| RpcError::Decode("header without number".into()))
            .and_then(number_of)
    }

    /// The hash of block `number` (`chain_getBlockHash`); `None` past the head.
    pub(crate) async fn block_hash(&self, number: u64) -> Result<Option<BlockHash>, RpcError> {
        let v = self.call("chain_getBlockHash", json!([number])).await?;
        if v.is_null() {
            return Ok(None);
        }
        hash_of(&v).map(Some)
    }

    /// A runtime API call (`state_call`) at `at` (the best block when `None`).
    pub(crate) async fn state_call(
        &self,
        method: &str,
        data: &[u8],
        at: Option<BlockHash>,
    ) -> Result<Vec<u8>, RpcError> {
        let v = self
            .call(
                "state_call",
                with_at(vec![json!(method), json!(hex0x(data))], at),
            )
            .await?;
        bytes_of(&v)
    }

    /// A storage value (`state_getStorage`); `None` when the key is empty.
    pub(crate) async fn storage(
        &self,
        key: &[u8],
        at: Option<BlockHash>,
    ) -> Result<Option<Vec<u8>>, RpcError> {
        let v = self
            .call("state_getStorage", with_at(vec![json!(hex0x(key))], at))
            .await?;
        if v.is_null() {
            return Ok(None);
        }
        bytes_of(&v).map(Some)
    }

    /// The runtime metadata (`state_getMetadata`), SCALE `RuntimeMetadataPrefixed`.
    pub(crate) async fn metadata(&self, at: Option<BlockHash>) -> Result<Vec<u8>, RpcError> {
        let v = self.call("state_getMetadata", with_at(vec![], at)).await?;
        bytes_of(&v)
    }

    /// The runtime version (`state_getRuntimeVersion`).
    pub(crate) async fn runtime_version(
        &self,
        at: Option<BlockHash>,
    ) -> Result<RuntimeVersion, RpcError> {
        let v = self
            .call("state_getRuntimeVersion", with_at(vec![], at))
            .await?;
        let spec_version = v
            .get("specVersion")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| RpcError::Decode("runtime version without specVersion".into()))?;
        Ok(RuntimeVersion { spec_version })
    }

    /// Every endpoint's health, lite ones first.
    pub(crate) fn status(&self) -> Vec<EndpointStatus> {
        let now = Instant::now();
        self.inner
            .lite
            .iter()
            .chain(&self.inner.archive)
            .map(|e| {
                let h = e.health.lock().unwrap_or_else(|p| p.into_inner());
                EndpointStatus {
                    label: e.label.clone(),
                    archive: e.archive,
                    requests: h.requests,
                    failures: h.failures,
                    last_error: h.last_error.clone(),
                    backing_off: h.until.is_some_and(|u| u > now),
                }
            })
            .collect()
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.call_inner(method, params, false).await
    }

    /// Lite endpoints in order, then — if one said the state is discarded — the archive ones.
    async fn call_inner(
        &self,
        method: &str,
        params: Value,
        null_is_discarded: bool,
    ) -> Result<Value, RpcError> {
        match self
            .tier(&self.inner.lite, method, &params, null_is_discarded)
            .await
        {
            Err(RpcError::StateDiscarded) if !self.inner.archive.is_empty() => {
                self.tier(&self.inner.archive, method, &params, null_is_discarded)
                    .await
            }
            other => other,
        }
    }

    async fn tier(
        &self,
        endpoints: &[Endpoint],
        method: &str,
        params: &Value,
        null_is_discarded: bool,
    ) -> Result<Value, RpcError> {
        let mut all_rate_limited = true;
        let mut discarded = false;
        let mut reasons = Vec::new();
        for e in endpoints {
            {
                let h = e.health.lock().unwrap_or_else(|p| p.into_inner());
                if h.until.is_some_and(|u| u > Instant::now()) {
                    if h.last_error.as_deref() != Some("rate limited") {
                        all_rate_limited = false;
                    }
                    reasons.push(format!("{}: backing off", e.label));
                    continue;
                }
            }
            let outcome = self.attempt(e, method, params, null_is_discarded).await;
            let label = match &outcome {
                Ok(_) => "ok",
                Err(Failure::RateLimited(_)) => "rate_limited",
                Err(Failure::Down(..)) => "unavailable",
                Err(Failure::Discarded) => "discarded",
                Err(Failure::Rpc(..)) => "rpc_error",
            };
            self.inner
                .requests
                .with_label_values(&[e.label.as_str(), label])
                .inc();
            let mut h = e.health.lock().unwrap_or_else(|p| p.into_inner());
            h.requests += 1;
            match outcome {
                Ok(v) => {
                    h.backoff = Duration::ZERO;
                    h.until = None;
                    return Ok(v);
                }
                Err(Failure::Rpc(code, message)) => {
                    // The node is up; another one would answer the same.
                    h.backoff = Duration::ZERO;
                    h.until = None;
                    return Err(RpcError::Rpc { code, message });
                }
                Err(Failure::Discarded) => {
                    // Up, but without the state: the next endpoint may have it.
                    discarded = true;
                }
                Err(Failure::RateLimited(retry)) => {
                    h.failures += 1;
                    h.last_error = Some("rate limited".into());
                    h.backoff = next_backoff(h.backoff, retry);
                    h.until = Some(Instant::now() + h.backoff);
                    reasons.push(format!("{}: rate limited", e.label));
                }
                Err(Failure::Down(why, retry)) => {
                    all_rate_limited = false;
                    h.failures += 1;
                    h.backoff = next_backoff(h.backoff, retry);
                    h.until = Some(Instant::now() + h.backoff);
                    reasons.push(format!("{}: {why}", e.label));
                    h.last_error = Some(why);
                }
            }
        }
        if discarded {
            Err(RpcError::StateDiscarded)
        } else if all_rate_limited && !reasons.is_empty() {
            Err(RpcError::RateLimited)
        } else {
            Err(RpcError::Unavailable(reasons.join("; ")))
        }
    }

    async fn attempt(
        &self,
        e: &Endpoint,
        method: &str,
        params: &Value,
        null_is_discarded: bool,
    ) -> Result<Value, Failure> {
        e.limiter.until_ready().await;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self
            .inner
            .http
            .post(&e.url)
            .timeout(self.inner.timeout)
            .json(&body)
            .send()
            .await
            .map_err(|err| Failure::Down(transport(&err), None))?;
        let status = resp.status();
        let retry = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.as_u16() == 429 {
            return Err(Failure::RateLimited(retry));
        }
        if !status.is_success() {
            return Err(Failure::Down(format!("HTTP {}", status.as_u16()), retry));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|err| Failure::Down(transport(&err), None))?;
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(Failure::Down("answer too large".into(), None));
        }
        let mut answer: Value = serde_json::from_slice(&bytes)
            .map_err(|_| Failure::Down("answer is not JSON".into(), None))?;
        if let Some(err) = answer.get("error") {
            let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let data = err.get("data").and_then(Value::as_str).unwrap_or_default();
            if is_discarded(&message) || is_discarded(data) {
                return Err(Failure::Discarded);
            }
            return Err(Failure::Rpc(code, message));
        }
        match answer.get_mut("result") {
            Some(v) if v.is_null() && null_is_discarded => Err(Failure::Discarded),
            Some(v) => Ok(v.take()),
            None => Err(Failure::Down(
                "answer has neither result nor error".into(),
                None,
            )),
        }
    }
}

/// A transport error's kind, without its text (which names the URL).
fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect failed".into()
    } else {
        "transport error".into()
    }
}

fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn with_at(mut params: Vec<Value>, at: Option<BlockHash>) -> Value {
    if let Some(h) = at {
        params.push(json!(hex0x(&h)));
    }
    Value::Array(params)
}

fn bytes_of(v: &Value) -> Result<Vec<u8>, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| RpcError::Decode("expected a hex string".into()))?;
    let s = s
        .strip_prefix("0x")
        .ok_or_else(|| RpcError::Decode("hex without 0x".into()))?;
    hex::decode(s).map_err(|_| RpcError::Decode("invalid hex".into()))
}

fn hash_of(v: &Value) -> Result<BlockHash, RpcError> {
    bytes_of(v)?
        .try_into()
        .map_err(|_| RpcError::Decode("a hash is 32 bytes".into()))
}

/// A block number: Substrate sends a `0x…` hex string; a plain JSON number is accepted too.
fn number_of(v: &Value) -> Result<u64, RpcError> {
    if let Some(n) = v.as_u64() {
        return Ok(n);
    }
    v.as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(|| RpcError::Decode("invalid block number".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::testing::{MockNode, Reply, client, counter};

    const H: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let s = Duration::from_secs;
        assert_eq!(next_backoff(Duration::ZERO, None), s(1));
        assert_eq!(next_backoff(s(1), None), s(2));
        assert_eq!(next_backoff(s(32), None), s(60));
        assert_eq!(next_backoff(s(60), None), s(60));
        assert_eq!(next_backoff(Duration::ZERO, Some(s(7))), s(7));
        assert_eq!(next_backoff(s(4), Some(s(2))), s(8));
        assert_eq!(next_backoff(Duration::ZERO, Some(s(86_400))), s(60));
    }

    #[test]
    fn discarded_messages_recognised() {
        assert!(is_discarded("State already discarded for 0xabc"));
        assert!(is_discarded(
            "Client error: UnknownBlock: State already discarded"
        ));
        assert!(!is_discarded("Method not found"));
    }

    #[test]
    fn new_refuses_bad_config_without_echoing_the_url() {
        let err = ChainRpc::new(
            vec!["ftp://key@host".into()],
            vec![],
            NonZeroU32::new(1).unwrap(),
            Duration::from_secs(1),
            counter(),
        )
        .unwrap_err();
        assert!(!err.contains("key@host"), "{err}");
        assert!(
            ChainRpc::new(
                vec![],
                vec![],
                NonZeroU32::MIN,
                Duration::from_secs(1),
                counter()
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn typed_calls_and_their_params() {
        let node = MockNode::start(|method, params| match method {
            "chain_getFinalizedHead" => Reply::Result(json!(H)),
            "chain_getHeader" => {
                assert_eq!(params[0], H);
                Reply::Result(json!({"number": "0x688f52", "parentHash": H, "stateRoot": H}))
            }
            "chain_getBlockHash" if params[0] == 5 => Reply::Result(json!(H)),
            "chain_getBlockHash" => Reply::Result(Value::Null),
            "state_call" => {
                assert_eq!(params[0], "SubnetInfoRuntimeApi_get_subnet_state");
                assert_eq!(params[1], "0x0100");
                Reply::Result(json!(format!("0x{:02x}", params.as_array().unwrap().len())))
            }
            "state_getStorage" => Reply::Result(Value::Null),
            "state_getMetadata" => Reply::Result(json!("0x6d657461")),
            "state_getRuntimeVersion" => {
                Reply::Result(json!({"specVersion": 425, "implVersion": 1}))
            }
            _ => Reply::Error(-32601, "Method not found".into()),
        })
        .await;
        let (rpc, metric) = client(&[&node], &[]);
        let h = [0x11u8; 32];
        assert_eq!(rpc.finalized_head().await.unwrap(), h);
        assert_eq!(
            rpc.header(h).await.unwrap(),
            Header {
                number: 6852434,
                parent_hash: h
            }
        );
        assert_eq!(rpc.block_hash(5).await.unwrap(), Some(h));
        assert_eq!(rpc.block_hash(6).await.unwrap(), None);
        // The answer encodes how many params were sent: 2 without a block, 3 with one.
        assert_eq!(
            rpc.state_call(crate::chain::subnet_state::GET_SUBNET_STATE, &[1, 0], None)
                .await
                .unwrap(),
            vec![0x02]
        );
        assert_eq!(
            rpc.state_call(
                crate::chain::subnet_state::GET_SUBNET_STATE,
                &[1, 0],
                Some(h)
            )
            .await
            .unwrap(),
            vec![0x03]
        );
        assert_eq!(rpc.storage(&[1, 2], Some(h)).await.unwrap(), None);
        assert_eq!(rpc.metadata(None).await.unwrap(), b"meta".to_vec());
        assert_eq!(
            rpc.runtime_version(Some(h)).await.unwrap().spec_version,
            425
        );
        assert_eq!(metric.with_label_values(&["lite0", "ok"]).get(), 9);
        let status = rpc.status();
        assert_eq!(status.len(), 1);
        assert_eq!(status[0].label, "lite0");
        assert_eq!(status[0].requests, 9);
        assert_eq!(status[0].failures, 0);
    }

    #[tokio::test]
    async fn rpc_error_is_not_failed_over() {
        let a = MockNode::start(|_, _| Reply::Error(-32601, "Method not found".into())).await;
        let b = MockNode::start(|_, _| Reply::Result(json!(H))).await;
        let (rpc, metric) = client(&[&a, &b], &[]);
        assert_eq!(
            rpc.finalized_head().await,
            Err(RpcError::Rpc {
                code: -32601,
                message: "Method not found".into()
            })
        );
        assert_eq!(b.calls("chain_getFinalizedHead"), 0);
        assert_eq!(metric.with_label_values(&["lite0", "rpc_error"]).get(), 1);
    }

    #[tokio::test]
    async fn failover_on_429_then_backing_off() {
        let a = MockNode::start(|_, _| Reply::Status(429, Some(30))).await;
        let b = MockNode::start(|_, _| Reply::Result(json!(H))).await;
        let (rpc, metric) = client(&[&a, &b], &[]);
        assert_eq!(rpc.finalized_head().await.unwrap(), [0x11; 32]);
        assert_eq!(rpc.finalized_head().await.unwrap(), [0x11; 32]);
        // The second call skipped the endpoint that is backing off.
        assert_eq!(a.calls("chain_getFinalizedHead"), 1);
        assert_eq!(b.calls("chain_getFinalizedHead"), 2);
        assert_eq!(
            metric.with_label_values(&["lite0", "rate_limited"]).get(),
            1
        );
        assert_eq!(metric.with_label_values(&["lite1", "ok"]).get(), 2);
        let s = rpc.status();
        assert!(s[0].backing_off && !s[1].backing_off);
        assert_eq!(s[0].failures, 1);
        assert_eq!(s[0].last_error.as_deref(), Some("rate limited"));
        // Nothing anywhere names the URL.
        let url_port = a
            .url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        assert!(s.iter().all(|e| !format!("{e:?}").contains(&url_port)));
    }

    #[tokio::test]
    async fn all_429_is_rate_limited_and_mixed_is_unavailable() {
        let a = MockNode::start(|_, _| Reply::Status(429, None)).await;
        let b = MockNode::start(|_, _| Reply::Status(429, None)).await;
        let (rpc, _) = client(&[&a, &b], &[]);
        assert_eq!(rpc.finalized_head().await, Err(RpcError::RateLimited));
        // Both backing off after a 429: still rate limited, without a request.
        assert_eq!(rpc.finalized_head().await, Err(RpcError::RateLimited));
        assert_eq!(a.calls("chain_getFinalizedHead"), 1);

        let c = MockNode::start(|_, _| Reply::Status(429, None)).await;
        let d = MockNode::start(|_, _| Reply::Status(503, None)).await;
        let (rpc, metric) = client(&[&c, &d], &[]);
        match rpc.finalized_head().await {
            Err(RpcError::Unavailable(why)) => {
                assert!(why.contains("lite1: HTTP 503"), "{why}");
                assert!(!why.contains("127.0.0.1"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(metric.with_label_values(&["lite1", "unavailable"]).get(), 1);
    }

    #[tokio::test]
    async fn transport_error_fails_over() {
        // A port nothing listens on: bind, note it, close.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/", l.local_addr().unwrap())
        };
        let b = MockNode::start(|_, _| Reply::Result(json!(H))).await;
        let rpc = ChainRpc::new(
            vec![dead, b.url.clone()],
            vec![],
            NonZeroU32::new(1000).unwrap(),
            Duration::from_secs(5),
            counter(),
        )
        .unwrap();
        assert_eq!(rpc.finalized_head().await.unwrap(), [0x11; 32]);
        let s = rpc.status();
        assert_eq!(s[0].failures, 1);
        assert!(s[0].backing_off);
        assert_eq!(s[0].last_error.as_deref(), Some("connect failed"));
    }

    #[tokio::test]
    async fn discarded_state_is_retried_on_archive() {
        let lite = MockNode::start(|_, _| {
            Reply::Error(
                4003,
                "Client error: UnknownBlock: State already discarded for 0x11".into(),
            )
        })
        .await;
        let archive = MockNode::start(|_, _| Reply::Result(json!("0x0102"))).await;
        let (rpc, metric) = client(&[&lite], &[&archive]);
        let h = [0x11u8; 32];
        assert_eq!(rpc.storage(&[0], Some(h)).await.unwrap(), Some(vec![1, 2]));
        assert_eq!(metric.with_label_values(&["lite0", "discarded"]).get(), 1);
        assert_eq!(metric.with_label_values(&["archive0", "ok"]).get(), 1);
        // Discarded is not a failure: the lite node stays in use.
        assert!(!rpc.status()[0].backing_off);
        assert!(rpc.status()[1].archive);

        // Without an archive endpoint, or when it has pruned the state too: StateDiscarded.
        let (rpc, _) = client(&[&lite], &[]);
        assert_eq!(
            rpc.storage(&[0], Some(h)).await,
            Err(RpcError::StateDiscarded)
        );
        let (rpc, _) = client(&[&lite], &[&lite]);
        assert_eq!(
            rpc.storage(&[0], Some(h)).await,
            Err(RpcError::StateDiscarded)
        );
    }

    #[tokio::test]
    async fn unknown_header_is_asked_of_archive() {
        let lite = MockNode::start(|_, _| Reply::Result(Value::Null)).await;
        let archive =
            MockNode::start(|_, _| Reply::Result(json!({"number": "0x10", "parentHash": H}))).await;
        let (rpc, _) = client(&[&lite], &[&archive]);
        assert_eq!(rpc.header([0; 32]).await.unwrap().number, 16);
    }

    #[tokio::test]
    async fn garbage_answers_are_errors() {
        let a = MockNode::start(|_, _| Reply::Result(json!("0x12"))).await;
        let (rpc, _) = client(&[&a], &[]);
        assert!(matches!(
            rpc.finalized_head().await,
            Err(RpcError::Decode(_))
        ));
        let b =
            MockNode::start(|_, _| Reply::Result(json!({"number": "zz", "parentHash": H}))).await;
        let (rpc, _) = client(&[&b], &[]);
        assert!(matches!(
            rpc.header([0; 32]).await,
            Err(RpcError::Decode(_))
        ));
    }
}
