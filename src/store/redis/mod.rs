//! The Redis backend: one multiplexed, self-reconnecting connection shared by every request.
//!
//! A [`ConnectionManager`] pipelines all concurrent commands over one TCP connection and,
//! when it breaks, lets the next command reconnect (with a short, bounded backoff). Every
//! command runs under two clocks: the connection's own response timeout and a
//! `tokio::time::timeout` around the whole call, which also covers the wait for a reconnect.
//! So a dead or stalled Redis turns into [`StoreError::Unavailable`] or
//! [`StoreError::Timeout`] within `command_timeout`, never into a hung request.
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
//! (`auth_admit_v2.lua`) and revocations.

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

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{ErrorKind, RedisError, RedisResult, ServerErrorKind};

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

/// The Redis store. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
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
    pub(super) async fn connect(
        url: &str,
        key_prefix: &str,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<RedisStore, StoreError> {
        let mut redactor = Redactor::for_url(url);
        let client = ::redis::Client::open(url).map_err(|e| {
            StoreError::Unavailable(format!("invalid Redis URL: {}", redactor.clean(&e)))
        })?;
        redactor.add(
            client
                .get_connection_info()
                .redis_settings()
                .password()
                .unwrap_or_default(),
        );

        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(command_timeout))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY);
        let no_answer = || {
            StoreError::Unavailable(format!(
                "no connection to Redis within {} ms",
                connect_timeout.as_millis()
            ))
        };
        let conn = match tokio::time::timeout(
            connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            // At startup a timeout means "Redis is not there", not "a command was slow".
            Ok(Err(e)) => {
                return Err(match classify(&e, &redactor) {
                    StoreError::Timeout => no_answer(),
                    other => other,
                });
            }
            Err(_) => return Err(no_answer()),
        };
        tracing::info!(key_prefix, "connected to Redis");
        Ok(RedisStore {
            conn,
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
        // The manager is an Arc around the shared connection: cloning it is the documented
        // way to use it from many tasks.
        let mut conn = self.conn.clone();
        self.run(op, cmd.query_async(&mut conn)).await
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
        r.add(url);
        // The raw `user:password` part, which may be percent-encoded differently from the
        // decoded password added after parsing.
        if let Some((_, rest)) = url.split_once("://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                r.add(userinfo);
                if let Some((_, password)) = userinfo.split_once(':') {
                    r.add(password);
                }
            }
        }
        r
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
    fn urls_without_credentials_are_handled() {
        let r = Redactor::for_url("redis://127.0.0.1:6379");
        assert_eq!(r.secrets, vec!["redis://127.0.0.1:6379".to_owned()]);
        assert_eq!(r.clean(&"Connection refused"), "Connection refused");
    }
}
