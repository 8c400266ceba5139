//! TAO deposits: every finalized block's `System.Events`, decoded with the metadata of the
//! block's parent, and every `Balances.Transfer` to the deposit address credited once.
//!
//! Exactly once, whatever restarts, duplicate pollers or repeated deliveries do:
//! - a deposit's reference is `tao:<block>:<event index>`, unique once the block is final;
//! - its record (`{chain}:dep:<reference>`) is created once (`SET NX`), and it decides the
//!   account: the coldkey's link at that moment, or `unattributed`. A later poll of the same
//!   block (after a crash, or by a second replica) finds the record and only completes its
//!   credit, which is idempotent on the reference, so a link made in between cannot send the
//!   same deposit to a second account;
//! - the cursor moves past a block only after every deposit of it is recorded, and it never
//!   skips a block: a block that cannot be read or decoded stops the round there, to be
//!   retried (a lite node that has discarded the state sends the client to an archive node).
//!
//! One replica polls (a store lease); the others only serve what it records.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::events::{self, Transfer};
use super::rpc::{ChainRpc, RpcError};
use super::runtime::MetadataCache;
use crate::auth::ss58;
use crate::clock::now_ms;
use crate::metrics::ChainMetrics;
use crate::store::{CreditOutcome, Store, StoreError, keys};

/// Most blocks one round reads before it records its progress and yields.
const BLOCKS_PER_ROUND: u64 = 200;

/// What became of a deposit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DepositStatus {
    /// Credited to the account its coldkey was linked to.
    Credited,
    /// From a coldkey linked to no account: waits for an operator.
    Unattributed,
    /// Credited by an operator's assignment.
    Assigned,
}

/// One transfer to the deposit address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deposit {
    /// `tao:<block number>:<event index>`: the credit's reference.
    #[schema(example = "tao:6852690:4")]
    pub reference: String,
    /// The finalized block.
    pub block: u64,
    /// The event's 0-based position in that block's `System.Events`.
    pub event_index: u32,
    /// The sending coldkey (SS58).
    pub from: String,
    /// Rao transferred (and credited).
    pub amount_rao: u64,
    /// What became of it.
    pub status: DepositStatus,
    /// The account credited; null while unattributed.
    pub account: Option<String>,
    /// When the gateway recorded it, unix milliseconds.
    pub recorded_at_ms: u64,
    /// The operator who assigned it (assigned deposits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_by: Option<String>,
}

impl Deposit {
    /// The reference of the event at `event_index` of block `block`.
    pub(crate) fn reference_of(block: u64, event_index: u32) -> String {
        format!("tao:{block}:{event_index}")
    }

    fn log_line(&self) -> String {
        serde_json::json!({
            "reference": self.reference,
            "amount_rao": self.amount_rao,
            "at_ms": self.recorded_at_ms,
            "by": self.assigned_by.as_deref().unwrap_or("chain"),
            "from": self.from,
            "block": self.block,
            "event_index": self.event_index,
        })
        .to_string()
    }
}

/// Why a round stopped (the cursor stays before the block that failed).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DepositError {
    /// The chain could not be asked.
    #[error("chain: {0}")]
    Rpc(#[from] RpcError),
    /// A block's events do not decode with its parent's metadata.
    #[error("block {block}: {source}")]
    Decode {
        /// The block.
        block: u64,
        /// What failed.
        source: super::DecodeError,
    },
    /// The chain has no hash for a block at or below its finalized head.
    #[error("block {0} has no hash")]
    MissingBlock(u64),
    /// The store could not be read or written.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A record in the store does not decode, or a credit was refused.
    #[error("{0}")]
    Corrupt(String),
}

/// The deposit poller.
#[derive(Clone)]
pub(crate) struct DepositPoller {
    /// The chain.
    pub rpc: ChainRpc,
    /// Links, records, the cursor, balances.
    pub store: Store,
    /// Metadata per runtime version.
    pub metadata: Arc<MetadataCache>,
    /// The deposit address's public key.
    pub to: [u8; 32],
    /// Its metrics.
    pub metrics: ChainMetrics,
    /// `chain.deposit_poll_secs`.
    pub every: Duration,
    /// This replica's id, the lease's value.
    pub replica: String,
    /// The last round's error (`GET /admin/v1/chain`); cleared by a round that succeeds.
    pub last_error: Arc<std::sync::Mutex<Option<String>>>,
}

impl DepositError {
    /// The stable name of the failure, for the log line.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            DepositError::Rpc(e) => e.code(),
            DepositError::Decode { source, .. } => source.code(),
            DepositError::MissingBlock(_) => "missing_block",
            DepositError::Store(_) => "store",
            DepositError::Corrupt(_) => "corrupt",
        }
    }
}

impl DepositPoller {
    /// Runs until aborted.
    pub(crate) async fn run(self) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            loop {
                let r = self.round().await;
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    r.as_ref().err().map(ToString::to_string);
                match r {
                    // A full round: more blocks may be waiting.
                    Ok(n) if n >= BLOCKS_PER_ROUND => continue,
                    Ok(_) => break,
                    Err(e) => {
                        self.metrics.deposit_errors.inc();
                        tracing::warn!(code = e.code(), error = %e, "deposit poll stopped; retrying from the same block");
                        break;
                    }
                }
            }
        }
    }

    /// One round, if this replica holds the lease: the finalized blocks after the cursor (at
    /// most [`BLOCKS_PER_ROUND`]). Returns how many blocks it recorded.
    pub(crate) async fn round(&self) -> Result<u64, DepositError> {
        if !self.hold_lease().await? {
            return Ok(0);
        }
        let head = self.rpc.finalized_head().await?;
        let finalized = self.rpc.header(head).await?.number;
        self.metrics.finalized_block.set(gauge(finalized));
        // For the operator's view only: a failure here must not stop the credits.
        if let Ok(best) = self.rpc.best_number().await {
            self.metrics.head_block.set(gauge(best));
        }
        let cursor = match self.cursor().await? {
            Some(c) => c,
            None => {
                // First start: deposits count from the finalized head on (earlier transfers
                // are an operator's to credit by hand).
                self.set_cursor(finalized).await?;
                finalized
            }
        };
        self.metrics.deposit_cursor.set(gauge(cursor));
        self.metrics
            .deposit_lag_blocks
            .set(gauge(finalized.saturating_sub(cursor)));
        let last = finalized.min(cursor.saturating_add(BLOCKS_PER_ROUND));
        let mut done = 0;
        for number in cursor.saturating_add(1)..=last {
            self.block(number).await?;
            self.set_cursor(number).await?;
            done += 1;
            self.metrics.deposit_cursor.set(gauge(number));
            self.metrics
                .deposit_lag_blocks
                .set(gauge(finalized.saturating_sub(number)));
        }
        Ok(done)
    }

    async fn hold_lease(&self) -> Result<bool, StoreError> {
        let ttl = (self.every * 5).max(Duration::from_secs(30));
        super::lease::hold(&self.store, keys::DEPOSIT_LEASE, &self.replica, ttl).await
    }

    /// The cursor, if one was ever set.
    pub(crate) async fn cursor(&self) -> Result<Option<u64>, DepositError> {
        read_cursor(&self.store).await
    }

    async fn set_cursor(&self, number: u64) -> Result<(), StoreError> {
        self.store
            .set(keys::DEPOSIT_CURSOR, number.to_string().as_bytes(), None)
            .await
    }

    /// Records every deposit of block `number`.
    async fn block(&self, number: u64) -> Result<(), DepositError> {
        let hash = self
            .rpc
            .block_hash(number)
            .await?
            .ok_or(DepositError::MissingBlock(number))?;
        let header = self.rpc.header(hash).await?;
        // The events of block N were written by the runtime N's parent ran: a block that
        // upgrades the runtime still emits its events with the old one.
        let md = self
            .metadata
            .at_parent(&self.rpc, header.parent_hash)
            .await?;
        let raw = self
            .rpc
            .storage(&events::SYSTEM_EVENTS_KEY, Some(hash))
            .await?
            .unwrap_or_default();
        let decoded =
            events::decode_block_events(&md, &raw).map_err(|source| DepositError::Decode {
                block: number,
                source,
            })?;
        for t in decoded.transfers.iter().filter(|t| t.to == self.to) {
            self.record(number, t).await?;
        }
        Ok(())
    }

    /// Records one deposit: creates its record once, then completes its credit.
    async fn record(&self, block: u64, t: &Transfer) -> Result<(), DepositError> {
        let reference = Deposit::reference_of(block, t.event_index);
        let key = keys::deposit(&reference);
        let account = crate::accounts::coldkeys::account_of(&self.store, &t.from).await?;
        let fresh = Deposit {
            reference: reference.clone(),
            block,
            event_index: t.event_index,
            from: ss58::encode42(&t.from),
            amount_rao: t.amount,
            status: if account.is_some() {
                DepositStatus::Credited
            } else {
                DepositStatus::Unattributed
            },
            account,
            recorded_at_ms: now_ms(),
            assigned_by: None,
        };
        let bytes = serde_json::to_vec(&fresh).map_err(|e| DepositError::Corrupt(e.to_string()))?;
        let created = self.store.set_nx(&key, &bytes).await?;
        let dep = if created {
            fresh
        } else {
            // Recorded before (a restart, a second poller): the first record decides.
            load(&self.store, &reference)
                .await?
                .ok_or_else(|| DepositError::Corrupt(format!("deposit {reference} vanished")))?
        };
        match dep.status {
            DepositStatus::Unattributed => {
                // Added again on a repeated poll: a crash between the record and the set
                // must not hide the deposit from the operator's list.
                self.store
                    .sadd(keys::DEPOSITS_UNATTRIBUTED, &reference)
                    .await?;
                if created {
                    self.metrics
                        .deposits
                        .with_label_values(&["unattributed"])
                        .inc();
                    tracing::warn!(reference = %reference, from = %dep.from, amount_rao = dep.amount_rao, "deposit from a coldkey linked to no account; an operator can assign it");
                }
                Ok(())
            }
            DepositStatus::Credited | DepositStatus::Assigned => {
                credit(&self.store, &dep, &self.metrics).await
            }
        }
    }
}

/// Credits a recorded deposit to its account (idempotent on its reference).
pub(crate) async fn credit(
    store: &Store,
    dep: &Deposit,
    metrics: &ChainMetrics,
) -> Result<(), DepositError> {
    let Some(account) = &dep.account else {
        return Err(DepositError::Corrupt(format!(
            "deposit {} has no account",
            dep.reference
        )));
    };
    match store
        .credit(
            account,
            &dep.reference,
            dep.amount_rao,
            &dep.log_line(),
            now_ms(),
        )
        .await?
    {
        CreditOutcome::Credited { .. } => {
            metrics.deposits.with_label_values(&["credited"]).inc();
            metrics.credited_rao.inc_by(dep.amount_rao);
            tracing::info!(account = %account, reference = %dep.reference, amount_rao = dep.amount_rao, "TAO deposit credited");
            Ok(())
        }
        CreditOutcome::Repeated { .. } => {
            metrics.deposits.with_label_values(&["duplicate"]).inc();
            Ok(())
        }
        CreditOutcome::Conflict { amount_rao } => Err(DepositError::Corrupt(format!(
            "deposit {} was credited before with {amount_rao} rao, not {}",
            dep.reference, dep.amount_rao
        ))),
        CreditOutcome::Overflow { balance_rao } => Err(DepositError::Corrupt(format!(
            "deposit {} would take {account}'s balance ({balance_rao} rao) past the largest balance",
            dep.reference
        ))),
    }
}

/// Reads a deposit's record.
pub(crate) async fn load(store: &Store, reference: &str) -> Result<Option<Deposit>, DepositError> {
    match store.get(&keys::deposit(reference)).await? {
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| DepositError::Corrupt(format!("deposit {reference}: {e}"))),
        None => Ok(None),
    }
}

/// The deposit cursor, if set.
pub(crate) async fn read_cursor(store: &Store) -> Result<Option<u64>, DepositError> {
    match store.get(keys::DEPOSIT_CURSOR).await? {
        Some(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| DepositError::Corrupt("the deposit cursor is corrupt".into())),
        None => Ok(None),
    }
}

/// Why an assignment was refused.
#[derive(Debug)]
pub(crate) enum AssignError {
    /// No deposit has this reference.
    Unknown,
    /// It was credited or assigned before.
    Taken(Deposit),
    /// The store failed.
    Failed(DepositError),
}

/// Assigns an unattributed deposit to `account` and credits it, once: a second assignment
/// (to any account) is refused.
pub(crate) async fn assign(
    store: &Store,
    reference: &str,
    account: &str,
    operator: &str,
    metrics: &ChainMetrics,
) -> Result<Deposit, AssignError> {
    let dep = load(store, reference)
        .await
        .map_err(AssignError::Failed)?
        .ok_or(AssignError::Unknown)?;
    if dep.status != DepositStatus::Unattributed {
        return Err(AssignError::Taken(dep));
    }
    let claimed = store
        .set_nx(&keys::deposit_assignment(reference), account.as_bytes())
        .await
        .map_err(|e| AssignError::Failed(e.into()))?;
    if !claimed {
        let current = load(store, reference)
            .await
            .map_err(AssignError::Failed)?
            .unwrap_or(dep);
        return Err(AssignError::Taken(current));
    }
    let assigned = Deposit {
        status: DepositStatus::Assigned,
        account: Some(account.to_string()),
        assigned_by: Some(operator.to_string()),
        ..dep
    };
    let bytes = serde_json::to_vec(&assigned)
        .map_err(|e| AssignError::Failed(DepositError::Corrupt(e.to_string())))?;
    store
        .set(&keys::deposit(reference), &bytes, None)
        .await
        .map_err(|e| AssignError::Failed(e.into()))?;
    credit(store, &assigned, metrics)
        .await
        .map_err(AssignError::Failed)?;
    store
        .srem(keys::DEPOSITS_UNATTRIBUTED, reference)
        .await
        .map_err(|e| AssignError::Failed(e.into()))?;
    Ok(assigned)
}

/// Every unattributed deposit, oldest block first.
pub(crate) async fn unattributed(store: &Store) -> Result<Vec<Deposit>, DepositError> {
    let refs = store.smembers(keys::DEPOSITS_UNATTRIBUTED).await?;
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        if let Some(d) = load(store, &r).await?
            && d.status == DepositStatus::Unattributed
        {
            out.push(d);
        }
    }
    out.sort_by_key(|d| (d.block, d.event_index));
    Ok(out)
}

/// The deposits among an account's recent credits (newest last).
pub(crate) async fn recent(
    store: &Store,
    account: &str,
    n: usize,
) -> Result<Vec<Deposit>, DepositError> {
    let lines = store.credit_log_tail(account, n.saturating_mul(4)).await?;
    let mut out = Vec::new();
    for line in lines {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let Some(reference) = v.get("reference").and_then(|r| r.as_str()) else {
            continue;
        };
        if reference.starts_with("tao:")
            && let Some(d) = load(store, reference).await?
        {
            out.push(d);
        }
    }
    let from = out.len().saturating_sub(n);
    Ok(out.split_off(from))
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
