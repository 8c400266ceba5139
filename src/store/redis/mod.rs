//! The Redis backend: one multiplexed, self-reconnecting connection shared by every request.
//!
//! On a single Redis a [`ConnectionManager`] pipelines all concurrent commands over one TCP
//! connection and, when it breaks, lets the next command reconnect (with a short, bounded
//! backoff). On a Redis Cluster a [`ClusterConnection`] does the same with one connection per
//! node: it routes each command (and each pipeline and script, by its first key) to the
//! primary of the key's slot and follows `MOVED`/`ASK` redirections itself. [`Conn`] is
//! either, so every operation is written once. Every command runs under two clocks: the
//! connection's own response timeout and a `tokio::time::timeout` around the whole call,
//! which also covers the wait for a reconnect. So a dead or stalled Redis turns into
//! [`StoreError::Unavailable`] or [`StoreError::Timeout`] within `command_timeout`, never
//! into a hung request.
//!
//! On a Cluster every script and `MULTI` block must touch keys of one hash slot (the tags in
//! [`keys`] make that so); a multi-key `UNLINK` is split by slot by the crate. `SCAN` sees
//! one node's keys only, so [`kv`]'s scan walks every primary (`CLUSTER SHARDS`).
//!
//! Error messages are built from the redis error text and then scrubbed of the connection
//! URL and its credentials, because the URL of a production Redis usually carries a
//! password and these messages end up in logs and problem responses.
//!
//! This file is the connection: connecting, running one call under the timeout, error
//! classification and the redactor. The operations are split by domain, each script beside
//! the Rust that calls it and decodes its reply ([`reply`]): [`kv`] the primitives,
//! [`admission`] admit and peek (`admit_v4.lua`), [`settlement`] settle and renew in batches
//! (`settle_v4.lua`, `renew_v4.lua`; all three with `ledger_lib_v3.lua`), each call on one
//! hash tag, [`ledger_reads`] the rollups, usage events and the reconciliation's
//! snapshot, [`credit`] credits (`credit_v3.lua`), [`auth`] the authentication step
//! (the replay mark and the account read, pipelined) and revocations.

mod admission;
mod auth;
mod credit;
mod kv;
mod ledger_reads;
mod reply;
mod sets;
mod settlement;

pub(super) use admission::AdmitMode;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{
    Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};

use super::{StoreError, keys};

/// Keys asked for per `SCAN` step (`delete_all_prefixed`, the ledger snapshot): large enough
/// to need few round trips, small enough that one `UNLINK` never blocks Redis noticeably.
const SCAN_BATCH: usize = 500;

/// Reconnection attempts per reconnect, after the first. Kept small on purpose: commands
/// that wait for a reconnect are bounded by the command timeout anyway, and a failed
/// reconnect is retried by the next command, so long backoff chains only delay recovery.
const RECONNECT_RETRIES: usize = 2;
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// Attempts per Cluster command after the first (redirections, a node reconnecting, a
/// `TRYAGAIN` during a slot migration), kept small for the same reason as
/// [`RECONNECT_RETRIES`]: the command timeout bounds them anyway.
const CLUSTER_RETRIES: u32 = 3;

/// The connection to a single Redis or to a Redis Cluster. Both multiplex and reconnect by
/// themselves; cloning either is the documented way to share it between tasks.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// One primary of a Cluster, as the cluster client names it (the endpoint `CLUSTER SHARDS`
/// reports, which is the one `CLUSTER SLOTS` gives the client).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Primary {
    host: String,
    port: u16,
}

/// The Redis store. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    /// The nodes are spoken to over TLS (`rediss://`): a Cluster's primaries are then reached
    /// at their `tls-port`.
    tls: bool,
    prefix: Arc<str>,
    command_timeout: Duration,
    redactor: Arc<Redactor>,
    /// Command latency and failures by operation, once the gateway has attached its metrics.
    metrics: Option<crate::metrics::RedisMetrics>,
    /// The subnet and `{stats}` rollups of settlements and swept holds, gathered until due
    /// (they live on other slots than the accounts, and are written once a second).
    rollups: Arc<std::sync::Mutex<settlement::PendingRollups>>,
}

impl fmt::Debug for RedisStore {
    // By hand: the connection must never be printed, it knows the URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.prefix)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis at `url`, or to the Cluster whose seed nodes it names when
    /// `cluster` is set or its scheme is `redis+cluster://` / `rediss+cluster://`.
    pub(super) async fn connect(
        url: &str,
        cluster: bool,
        key_prefix: &str,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<RedisStore, StoreError> {
        let cluster = cluster || crate::config::is_cluster_url(url);
        let seeds = crate::config::redis_seeds(url);
        let mut redactor = Redactor::for_url(url);
        for seed in &seeds {
            redactor.add_url(seed);
            // The decoded password, which may be spelled differently from the URL's.
            if let Ok(info) = seed.as_str().into_connection_info() {
                redactor.add(info.redis_settings().password().unwrap_or_default());
            }
        }
        let no_answer = || {
            StoreError::Unavailable(format!(
                "no connection to Redis within {} ms",
                connect_timeout.as_millis()
            ))
        };
        let invalid = |e: RedisError, r: &Redactor| {
            StoreError::Unavailable(format!("invalid Redis URL: {}", r.clean(&e)))
        };
        let connecting = async {
            if cluster {
                let client = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
                    .connection_timeout(connect_timeout)
                    .response_timeout(command_timeout)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(millis(RECONNECT_MIN_DELAY))
                    .max_retry_wait(millis(RECONNECT_MAX_DELAY))
                    .build()
                    .map_err(|e| invalid(e, &redactor))?;
                client
                    .get_async_connection()
                    .await
                    .map(Conn::Cluster)
                    .map_err(|e| connect_error(&e, &redactor, no_answer))
            } else {
                let client = ::redis::Client::open(url).map_err(|e| invalid(e, &redactor))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(command_timeout))
                    .set_number_of_retries(RECONNECT_RETRIES)
                    .set_min_delay(RECONNECT_MIN_DELAY)
                    .set_max_delay(RECONNECT_MAX_DELAY);
                ConnectionManager::new_with_config(client, config)
                    .await
                    .map(Conn::Single)
                    .map_err(|e| connect_error(&e, &redactor, no_answer))
            }
        };
        let conn = tokio::time::timeout(connect_timeout, connecting)
            .await
            .map_err(|_| no_answer())??;
        tracing::info!(key_prefix, cluster, "connected to Redis");
        Ok(RedisStore {
            conn,
            tls: seeds
                .first()
                .and_then(|s| s.get(..9))
                .is_some_and(|h| h.eq_ignore_ascii_case("rediss://")),
            prefix: key_prefix.into(),
            command_timeout,
            redactor: Arc::new(redactor),
            metrics: None,
            rollups: Arc::default(),
        })
    }

    /// The same connection seen through another key prefix.
    pub fn with_key_prefix(&self, key_prefix: &str) -> RedisStore {
        RedisStore {
            prefix: key_prefix.into(),
            ..self.clone()
        }
    }

    /// Records every command's latency and failures in `metrics` from now on.
    pub fn instrument(&mut self, metrics: crate::metrics::RedisMetrics) {
        self.metrics = Some(metrics);
    }

    /// The prefix prepended to every key.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    fn full_key(&self, key: &str) -> String {
        keys::prefixed(&self.prefix, key)
    }

    /// Runs one call against Redis under the command timeout, maps its error, and records it
    /// as operation `op` (one of [`crate::metrics::REDIS_OPS`]).
    async fn run<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.command_timeout, call).await {
            Ok(result) => result.map_err(|e| classify(&e, &self.redactor)),
            Err(_) => Err(StoreError::Timeout),
        };
        if let Some(m) = &self.metrics {
            m.observe(op, started.elapsed(), result.is_ok());
        }
        result
    }

    async fn query<T: ::redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &::redis::Cmd,
    ) -> Result<T, StoreError> {
        // Both connections are an Arc around the shared state: cloning is the documented way
        // to use them from many tasks.
        let mut conn = self.conn.clone();
        self.run(op, cmd.query_async(&mut conn)).await
    }

    /// Runs `cmd` on one Cluster primary (`Some`), or routed as usual (`None`: by its key, or
    /// on the one server), as operation `op`. For the keyless commands whose answer depends
    /// on the node, such as `SCAN`.
    async fn query_on<T: ::redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &::redis::Cmd,
        node: Option<&Primary>,
    ) -> Result<T, StoreError> {
        let (Conn::Cluster(conn), Some(node)) = (&self.conn, node) else {
            return self.query(op, cmd).await;
        };
        let mut conn = conn.clone();
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: node.host.clone(),
            port: node.port,
        });
        let call = async move {
            let reply = conn.route_command(cmd.clone(), routing).await?;
            Ok(::redis::from_redis_value(reply)?)
        };
        self.run(op, call).await
    }

    /// Where a walk over every key goes: each primary of a Cluster, or the one server
    /// (`[None]`).
    async fn scan_targets(&self) -> Result<Vec<Option<Primary>>, StoreError> {
        if let Conn::Single(_) = self.conn {
            return Ok(vec![None]);
        }
        let shards: Value = self
            .query("scan", ::redis::cmd("CLUSTER").arg("SHARDS"))
            .await?;
        let primaries = primaries_of(&shards, self.tls)
            .map_err(|why| StoreError::Protocol(format!("CLUSTER SHARDS reply: {why}")))?;
        if primaries.is_empty() {
            return Err(StoreError::Unavailable(
                "CLUSTER SHARDS names no primary serving slots".to_owned(),
            ));
        }
        Ok(primaries.into_iter().map(Some).collect())
    }

    /// Runs a prepared script (EVALSHA, falling back to EVAL once if the server does not have
    /// it cached yet) as operation `op`, and returns its raw reply for a decoder.
    async fn invoke(
        &self,
        op: &'static str,
        inv: &::redis::ScriptInvocation<'_>,
    ) -> Result<::redis::Value, StoreError> {
        let mut conn = self.conn.clone();
        self.run(op, inv.invoke_async(&mut conn)).await
    }

    /// Runs a pipeline (or a `MULTI` block) as operation `op`.
    async fn pipeline<T: ::redis::FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &::redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.run(op, pipe.query_async(&mut conn)).await
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A failed connect as the caller sees it: at startup a timeout means "Redis is not there",
/// not "a command was slow".
fn connect_error(
    e: &RedisError,
    redactor: &Redactor,
    no_answer: impl Fn() -> StoreError,
) -> StoreError {
    match classify(e, redactor) {
        StoreError::Timeout => no_answer(),
        other => other,
    }
}

/// The primaries serving slots in a `CLUSTER SHARDS` reply (RESP2 flat maps or RESP3 maps),
/// by the endpoint clients are told to use, at the TLS port when `tls`.
fn primaries_of(shards: &Value, tls: bool) -> Result<Vec<Primary>, String> {
    let mut out = Vec::new();
    for shard in items(shards).ok_or("not an array")? {
        let shard = fields(shard).ok_or("a shard is not a map")?;
        let serves_slots = shard
            .get("slots")
            .and_then(|v| items(v))
            .is_some_and(|s| !s.is_empty());
        if !serves_slots {
            continue;
        }
        let nodes = shard
            .get("nodes")
            .and_then(|v| items(v))
            .ok_or("a shard has no nodes")?;
        for node in nodes {
            let node = fields(node).ok_or("a node is not a map")?;
            let text = |k: &str| match node.get(k) {
                Some(Value::BulkString(b)) => std::str::from_utf8(b).ok().map(str::to_owned),
                Some(Value::SimpleString(s)) => Some(s.clone()),
                _ => None,
            };
            if text("role").as_deref() != Some("master") {
                continue;
            }
            let port = [if tls { "tls-port" } else { "port" }, "port"]
                .iter()
                .find_map(|k| match node.get(*k) {
                    Some(Value::Int(p)) => u16::try_from(*p).ok().filter(|p| *p > 0),
                    _ => None,
                })
                .ok_or("a primary has no port")?;
            let host = text("endpoint")
                .filter(|h| !h.is_empty() && h != "?")
                .or_else(|| text("ip"))
                .ok_or("a primary has no endpoint")?;
            let primary = Primary { host, port };
            if !out.contains(&primary) {
                out.push(primary);
            }
        }
    }
    Ok(out)
}

fn items(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

/// A map reply by field name: a RESP3 map, or RESP2's flat array of names and values.
fn fields(v: &Value) -> Option<std::collections::HashMap<String, &Value>> {
    let name = |k: &Value| match k {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match v {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| Some((name(k)?, v))).collect(),
        Value::Array(flat) if flat.len() % 2 == 0 => flat
            .chunks(2)
            .map(|kv| Some((name(&kv[0])?, &kv[1])))
            .collect(),
        _ => None,
    }
}

/// Maps a redis error to ours: timeouts, then anything meaning "Redis is not usable right
/// now", then the rest (the server refused this particular command).
fn classify(e: &RedisError, redactor: &Redactor) -> StoreError {
    if e.is_timeout() {
        return StoreError::Timeout;
    }
    let unavailable = e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ReadOnly
                )
        );
    let message = redactor.clean(e);
    if unavailable {
        StoreError::Unavailable(message)
    } else {
        StoreError::Protocol(message)
    }
}

/// Escapes the glob metacharacters of a `SCAN MATCH` pattern, so a prefix containing `*`,
/// `?` or `[` matches only itself.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Removes the connection URL and its credentials from error text.
///
/// The redis errors we see do not normally quote the URL, but that is a property of a
/// dependency we do not control; scrubbing here makes the guarantee ours.
struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    fn for_url(url: &str) -> Redactor {
        let mut r = Redactor {
            secrets: Vec::new(),
        };
        r.add_url(url);
        r
    }

    /// Learns `url` and its raw `user:password` part, which may be percent-encoded
    /// differently from the decoded password added after parsing.
    fn add_url(&mut self, url: &str) {
        self.add(url);
        if let Some((_, rest)) = url.split_once("://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                self.add(userinfo);
                if let Some((_, password)) = userinfo.split_once(':') {
                    self.add(password);
                }
            }
        }
    }

    fn add(&mut self, secret: &str) {
        if !secret.is_empty() && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
            // Longest first, so a secret containing another is removed whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    fn clean(&self, e: &dyn fmt::Display) -> String {
        let mut text = e.to_string();
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), "[redacted]");
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("agw:{a:1}:"), "agw:{a:1}:");
        assert_eq!(glob_escape(r"p*?[x]\"), r"p\*\?\[x\]\\");
    }

    #[test]
    fn redactor_removes_url_and_credentials() {
        let mut r = Redactor::for_url("redis://user:s%40cret@db.internal:6380/2");
        r.add("s@cret");
        let text = "failed redis://user:s%40cret@db.internal:6380/2 with user:s%40cret, s@cret \
                    and s%40cret";
        let cleaned = r.clean(&text);
        assert!(!cleaned.contains("cret"), "{cleaned}");
        assert!(!cleaned.contains("redis://"), "{cleaned}");
        assert!(cleaned.starts_with("failed [redacted]"), "{cleaned}");
    }

    #[test]
    fn redactor_learns_every_seed_of_a_cluster_url() {
        let url = "redis+cluster://agw:s%40cret@h1:7000,h2:7001";
        let mut r = Redactor::for_url(url);
        for seed in crate::config::redis_seeds(url) {
            r.add_url(&seed);
        }
        r.add("s@cret");
        let text = "h2: redis://agw:s%40cret@h2:7001 refused agw:s%40cret (s@cret, s%40cret)";
        let cleaned = r.clean(&text);
        assert!(!cleaned.contains("cret"), "{cleaned}");
        assert!(!cleaned.contains("redis://"), "{cleaned}");
    }

    #[test]
    fn cluster_shards_replies_name_the_primaries() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let node = |port: i64, role: &str| {
            Value::Array(vec![
                bulk("port"),
                Value::Int(port),
                bulk("tls-port"),
                Value::Int(port + 1),
                bulk("endpoint"),
                bulk("10.0.0.1"),
                bulk("role"),
                bulk(role),
            ])
        };
        let shard = |slots: Vec<Value>, nodes: Vec<Value>| {
            Value::Array(vec![
                bulk("slots"),
                Value::Array(slots),
                bulk("nodes"),
                Value::Array(nodes),
            ])
        };
        let reply = Value::Array(vec![
            shard(
                vec![Value::Int(0), Value::Int(8191)],
                vec![node(7000, "master"), node(7003, "replica")],
            ),
            // A primary without slots holds no keys and may have no connection.
            shard(vec![], vec![node(7009, "master")]),
            shard(
                vec![Value::Int(8192), Value::Int(16383)],
                vec![node(7001, "master")],
            ),
        ]);
        let hosts = |tls| {
            primaries_of(&reply, tls)
                .unwrap()
                .into_iter()
                .map(|p| format!("{}:{}", p.host, p.port))
                .collect::<Vec<_>>()
        };
        assert_eq!(hosts(false), vec!["10.0.0.1:7000", "10.0.0.1:7001"]);
        assert_eq!(hosts(true), vec!["10.0.0.1:7001", "10.0.0.1:7002"]);
        assert!(primaries_of(&Value::Int(1), false).is_err());
    }

    #[test]
    fn urls_without_credentials_are_handled() {
        let r = Redactor::for_url("redis://127.0.0.1:6379");
        assert_eq!(r.secrets, vec!["redis://127.0.0.1:6379".to_owned()]);
        assert_eq!(r.clean(&"Connection refused"), "Connection refused");
    }
}
