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

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{ErrorKind, RedisError, RedisResult, ServerErrorKind};

use super::StoreError;
use super::ledger::{Admission, Charge, Hold, LedgerPolicy, LedgerSnapshot, Recorded, Rollup};

/// Keys asked for per `SCAN` step of [`RedisStore::delete_all_prefixed`]: large enough to
/// need few round trips, small enough that one `UNLINK` never blocks Redis noticeably.
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
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
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

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.query("ping", &::redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Protocol(format!(
                "unexpected PING reply {pong:?}"
            )))
        }
    }

    pub(super) async fn set_nx_px(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.full_key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        // OK when set, nil when the key was already there.
        self.query("set_nx", &cmd).await
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query("get", ::redis::cmd("GET").arg(self.full_key(key)))
            .await
    }

    pub(super) async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.full_key(key)).arg(value);
        if let Some(ms) = ttl_ms {
            cmd.arg("PX").arg(ms);
        }
        self.query("set", &cmd).await
    }

    pub(super) async fn del(&self, key: &str) -> Result<bool, StoreError> {
        let n: u64 = self
            .query("del", ::redis::cmd("DEL").arg(self.full_key(key)))
            .await?;
        Ok(n > 0)
    }

    pub(super) async fn incr_by(
        &self,
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, StoreError> {
        let key = self.full_key(key);
        let Some(ms) = ttl_ms else {
            return self
                .query("incr_by", ::redis::cmd("INCRBY").arg(&key).arg(delta))
                .await;
        };
        // MULTI { SET key 0 NX PX ttl; INCRBY key delta } in one round trip: the SET creates
        // the counter with its expiry only if it is absent, so an existing counter keeps its
        // expiry (or its lack of one), and the INCRBY reply is the exact 64-bit value (a Lua
        // script would pass it through a Lua double). If INCRBY fails (not an integer,
        // overflow) the key existed, so the SET did nothing and the value is unchanged.
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .ignore()
            .cmd("INCRBY")
            .arg(&key)
            .arg(delta);
        let mut conn = self.conn.clone();
        let (value,): (i64,) = self.run("incr_by", pipe.query_async(&mut conn)).await?;
        Ok(value)
    }

    pub(super) async fn admit_auth(
        &self,
        account_key: &str,
        mark: Option<(&str, u64)>,
    ) -> Result<(bool, Option<Vec<u8>>), StoreError> {
        static SCRIPT: std::sync::LazyLock<::redis::Script> = std::sync::LazyLock::new(|| {
            ::redis::Script::new(include_str!("lua/auth_admit_v1.lua"))
        });
        let mut inv = SCRIPT.prepare_invoke();
        inv.key(self.full_key(account_key));
        if let Some((k, ms)) = mark {
            inv.key(self.full_key(k)).arg(ms);
        }
        let mut conn = self.conn.clone();
        // EVALSHA, falling back to EVAL once if the script is not cached on the server yet.
        let (fresh, account): (i64, Option<Vec<u8>>) =
            self.run("auth_admit", inv.invoke_async(&mut conn)).await?;
        Ok((fresh == 1, account))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn admit(
        &self,
        scopes: &[super::quota::ScopeSpec],
        request_id: &str,
        tokens: u64,
        lease_ms: u64,
        admit: bool,
        hold: Option<&Hold<'_>>,
        policy: &LedgerPolicy,
    ) -> Result<Admission, StoreError> {
        static SCRIPT: std::sync::LazyLock<::redis::Script> = std::sync::LazyLock::new(|| {
            ::redis::Script::new(concat!(
                include_str!("lua/ledger_lib_v1.lua"),
                include_str!("lua/admit_v2.lua")
            ))
        });
        let mut inv = SCRIPT.prepare_invoke();
        for sc in scopes {
            for k in sc.keys() {
                inv.key(self.full_key(&k));
            }
        }
        let record = hold.map(Hold::record).unwrap_or_default();
        inv.arg(request_id)
            .arg(tokens)
            .arg(lease_ms)
            .arg(if admit { "admit" } else { "peek" })
            .arg(&*self.prefix)
            .arg(hold.map_or("", |h| h.account))
            .arg(hold.map_or("none", |h| h.mode.as_str()))
            .arg(hold.map_or(0, |h| h.amount_rao))
            .arg(hold.map_or(0, |h| h.credit_limit_rao))
            .arg(policy.hold_ttl_ms)
            .arg(policy.expired_policy())
            .arg(policy.done_ttl_secs)
            .arg(policy.retention_secs)
            .arg(record);
        for sc in scopes {
            for c in sc.caps() {
                inv.arg(c);
            }
        }
        let mut conn = self.conn.clone();
        let v: Vec<::redis::Value> = self.run("quota_admit", inv.invoke_async(&mut conn)).await?;
        let n = scopes.len();
        if v.len() != 3 + 7 * n + 2 {
            return Err(StoreError::Protocol(format!(
                "admit script returned {} values for {n} scopes",
                v.len()
            )));
        }
        let ints: Vec<i64> = v[..3 + 7 * n]
            .iter()
            .map(::redis::from_redis_value_ref::<i64>)
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::Protocol(format!("admit script: {e}")))?;
        let money = |x: &::redis::Value| -> Result<i64, StoreError> {
            let s: String = ::redis::from_redis_value_ref(x)
                .map_err(|e| StoreError::Protocol(format!("admit script: {e}")))?;
            s.parse()
                .map_err(|_| StoreError::Protocol(format!("balance `{s}` is not an integer")))
        };
        Ok(Admission {
            decision: super::quota::decode_decision(&ints, n)?,
            balance_rao: money(&v[3 + 7 * n])?,
            held_rao: money(&v[4 + 7 * n])?,
        })
    }

    /// Runs `settle_v2` in `mode` (`settle` or `renew`).
    #[allow(clippy::too_many_arguments)]
    async fn settle_script(
        &self,
        scopes: &[super::quota::ScopeSpec],
        request_id: &str,
        mode: &str,
        lease_ms: u64,
        tokens_back: i64,
        request_back: bool,
        account: &str,
        charge: Option<&Charge>,
        policy: &LedgerPolicy,
    ) -> Result<(i64, i64), StoreError> {
        static SCRIPT: std::sync::LazyLock<::redis::Script> = std::sync::LazyLock::new(|| {
            ::redis::Script::new(concat!(
                include_str!("lua/ledger_lib_v1.lua"),
                include_str!("lua/settle_v2.lua")
            ))
        });
        let mut inv = SCRIPT.prepare_invoke();
        for sc in scopes {
            for k in sc.keys() {
                inv.key(self.full_key(&k));
            }
        }
        inv.arg(request_id)
            .arg(mode)
            .arg(lease_ms)
            .arg(tokens_back)
            .arg(u8::from(request_back))
            .arg(&*self.prefix)
            .arg(account)
            .arg(policy.hold_ttl_ms)
            .arg(charge.map_or(0, |c| c.cost_rao))
            .arg(charge.map_or(0, |c| c.input_tokens))
            .arg(charge.map_or(0, |c| c.output_tokens))
            .arg(
                charge
                    .and_then(|c| c.netuid)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            )
            .arg(charge.map_or("", |c| c.day.as_str()))
            .arg(charge.map_or("", |c| c.event.as_str()))
            .arg(policy.done_ttl_secs)
            .arg(policy.retention_secs)
            .arg(policy.expired_policy())
            .arg(u8::from(charge.is_some_and(|c| c.anonymous)));
        for sc in scopes {
            for c in sc.caps() {
                inv.arg(c);
            }
        }
        let mut conn = self.conn.clone();
        let v: Vec<i64> = self
            .run("quota_settle", inv.invoke_async(&mut conn))
            .await?;
        match v[..] {
            [a, b] => Ok((a, b)),
            _ => Err(StoreError::Protocol("settle script: bad reply".into())),
        }
    }

    pub(super) async fn settle(
        &self,
        scopes: &[super::quota::ScopeSpec],
        request_id: &str,
        tokens_back: i64,
        request_back: bool,
        charge: Option<&Charge>,
        policy: &LedgerPolicy,
    ) -> Result<(bool, Recorded), StoreError> {
        let account = charge.map_or("", |c| c.account.as_str());
        let (removed, rec) = self
            .settle_script(
                scopes,
                request_id,
                "settle",
                0,
                tokens_back,
                request_back,
                account,
                charge,
                policy,
            )
            .await?;
        let rec = match rec {
            1 => Recorded::Now,
            0 => Recorded::Before,
            _ => Recorded::NotAsked,
        };
        Ok((removed > 0, rec))
    }

    pub(super) async fn renew(
        &self,
        scopes: &[super::quota::ScopeSpec],
        request_id: &str,
        lease_ms: u64,
        account: Option<&str>,
        policy: &LedgerPolicy,
    ) -> Result<(), StoreError> {
        self.settle_script(
            scopes,
            request_id,
            "renew",
            lease_ms,
            0,
            false,
            account.unwrap_or(""),
            None,
            policy,
        )
        .await
        .map(|_| ())
    }

    pub(super) async fn rollups(
        &self,
        tag: &str,
        days: &[String],
        callers: bool,
    ) -> Result<Vec<(Rollup, u64)>, StoreError> {
        let mut pipe = ::redis::pipe();
        for d in days {
            // Every rollup, the public totals' included, is `<tag>:use:<day>` (`ledger.rs`).
            pipe.cmd("HGETALL")
                .arg(self.full_key(&format!("{tag}:use:{d}")));
            if callers {
                pipe.cmd("SCARD")
                    .arg(self.full_key(&format!("{tag}:callers:{d}")));
            }
        }
        let mut conn = self.conn.clone();
        let v: Vec<::redis::Value> = self.run("rollups", pipe.query_async(&mut conn)).await?;
        let step = if callers { 2 } else { 1 };
        let mut out = Vec::with_capacity(days.len());
        for c in v.chunks(step) {
            let pairs: Vec<(String, String)> = ::redis::from_redis_value_ref(&c[0])
                .map_err(|e| StoreError::Protocol(format!("rollup: {e}")))?;
            let n: u64 = if callers {
                ::redis::from_redis_value_ref(&c[1])
                    .map_err(|e| StoreError::Protocol(format!("rollup: {e}")))?
            } else {
                0
            };
            out.push((Rollup::from_pairs(&pairs), n));
        }
        Ok(out)
    }

    pub(super) async fn usage_events(
        &self,
        month: &str,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let start = cursor.map_or_else(|| "-".to_string(), |c| format!("({c}"));
        let reply: ::redis::streams::StreamRangeReply = self
            .query(
                "usage_events",
                ::redis::cmd("XRANGE")
                    .arg(self.full_key(&format!("{{u:{month}}}")))
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|e| {
                let json: String = e.get("e").unwrap_or_default();
                (e.id, json)
            })
            .collect())
    }

    /// Keys under this prefix matching `pattern` (after the prefix).
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}{pattern}", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let mut scan = ::redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH);
            let (next, keys): (u64, Vec<String>) = self.query("scan", &scan).await?;
            out.extend(
                keys.into_iter()
                    .filter_map(|k| k.strip_prefix(&*self.prefix).map(str::to_string)),
            );
            if next == 0 {
                out.sort_unstable();
                out.dedup();
                return Ok(out);
            }
            cursor = next;
        }
    }

    pub(super) async fn ledger_snapshot(&self) -> Result<LedgerSnapshot, StoreError> {
        let mut snap = LedgerSnapshot::default();
        let mut ids = std::collections::BTreeSet::new();
        for suffix in ["bal", "debits", "held", "credits"] {
            for k in self.scan(&format!("{{a:*}}:{suffix}")).await? {
                if let Some(id) = k
                    .strip_prefix("{a:")
                    .and_then(|r| r.strip_suffix(&format!("}}:{suffix}")))
                {
                    ids.insert(id.to_string());
                }
            }
        }
        for id in ids {
            let k = |s: &str| self.full_key(&format!("{{a:{id}}}:{s}"));
            let mut pipe = ::redis::pipe();
            pipe.cmd("GET")
                .arg(k("bal"))
                .cmd("GET")
                .arg(k("held"))
                .cmd("HVALS")
                .arg(k("holds"))
                .cmd("LRANGE")
                .arg(k("credits"))
                .arg(0)
                .arg(-1)
                .cmd("HGETALL")
                .arg(k("debits"));
            let mut conn = self.conn.clone();
            #[allow(clippy::type_complexity)]
            let (bal, held, holds, credits, debits): (
                Option<i64>,
                Option<i64>,
                Vec<String>,
                Vec<String>,
                Vec<(String, i64)>,
            ) = self.run("ledger_read", pipe.query_async(&mut conn)).await?;
            let mut b = super::ledger::AccountBooks {
                balance_rao: bal.unwrap_or(0),
                held_rao: held.unwrap_or(0),
                ..Default::default()
            };
            for h in holds {
                b.holds_sum_rao += h
                    .split(' ')
                    .next()
                    .and_then(|a| a.parse::<i64>().ok())
                    .unwrap_or(0);
            }
            for line in credits {
                match super::ledger::credit_amount(&line) {
                    Some(a) => b.credits_rao += a,
                    None => b.bad_credit_lines += 1,
                }
            }
            for (field, v) in debits {
                if field == "total" {
                    b.debits_total_rao = v;
                } else {
                    b.debits_by_month.insert(field, v);
                }
            }
            snap.accounts.insert(id, b);
        }
        for stream in self.scan("{u:*}").await? {
            let Some(month) = stream
                .strip_prefix("{u:")
                .and_then(|r| r.strip_suffix('}'))
                .map(str::to_string)
            else {
                continue;
            };
            let mut cursor: Option<String> = None;
            loop {
                let batch = self.usage_events(&month, cursor.as_deref(), 1000).await?;
                let Some(last) = batch.last() else { break };
                cursor = Some(last.0.clone());
                for (_, e) in &batch {
                    snap.tally(&month, e);
                }
            }
        }
        Ok(snap)
    }

    pub(super) async fn credit(
        &self,
        balance: &str,
        record: &str,
        log: &str,
        amount_rao: u64,
        log_line: &str,
        now_ms: u64,
    ) -> Result<(i64, String, String), StoreError> {
        static SCRIPT: std::sync::LazyLock<::redis::Script> =
            std::sync::LazyLock::new(|| ::redis::Script::new(include_str!("lua/credit_v2.lua")));
        let mut inv = SCRIPT.prepare_invoke();
        inv.key(self.full_key(balance))
            .key(self.full_key(record))
            .key(self.full_key(log))
            .arg(amount_rao)
            .arg(now_ms)
            .arg(log_line);
        let mut conn = self.conn.clone();
        self.run("credit", inv.invoke_async(&mut conn)).await
    }

    pub(super) async fn revoke(
        &self,
        jti: &str,
        until_unix: u64,
        now_unix: u64,
    ) -> Result<(), StoreError> {
        let set = self.full_key(super::auth::REVOKED_KEY);
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&set)
            .arg(until_unix)
            .arg(jti)
            .ignore()
            // Tokens past their expiry are refused anyway: forget their revocations.
            .cmd("ZREMRANGEBYSCORE")
            .arg(&set)
            .arg("-inf")
            .arg(format!("({now_unix}"))
            .ignore()
            .cmd("INCR")
            .arg(self.full_key(super::auth::REVOKED_VERSION_KEY))
            .ignore();
        let mut conn = self.conn.clone();
        self.run("revoke", pipe.query_async::<()>(&mut conn)).await
    }

    pub(super) async fn revocations_version(&self) -> Result<u64, StoreError> {
        let v: Option<u64> = self
            .query(
                "revocations_version",
                ::redis::cmd("GET").arg(self.full_key(super::auth::REVOKED_VERSION_KEY)),
            )
            .await?;
        Ok(v.unwrap_or(0))
    }

    pub(super) async fn revocations(&self, now_unix: u64) -> Result<Vec<String>, StoreError> {
        self.query(
            "revocations",
            ::redis::cmd("ZRANGEBYSCORE")
                .arg(self.full_key(super::auth::REVOKED_KEY))
                .arg(now_unix)
                .arg("+inf"),
        )
        .await
    }

    pub(super) async fn pttl(&self, key: &str) -> Result<Option<Duration>, StoreError> {
        let ms: i64 = self
            .query("pttl", ::redis::cmd("PTTL").arg(self.full_key(key)))
            .await?;
        // -2: no such key, -1: no expiry.
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }

    pub(super) async fn delete_all_prefixed(&self) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        for batch in self.scan("*").await?.chunks(SCAN_BATCH) {
            let keys: Vec<String> = batch.iter().map(|k| self.full_key(k)).collect();
            // UNLINK frees memory in the background and counts only keys that still existed,
            // so concurrent expiry does not inflate the count.
            let n: u64 = self
                .query("unlink", ::redis::cmd("UNLINK").arg(&keys))
                .await?;
            deleted += n;
        }
        Ok(deleted)
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
