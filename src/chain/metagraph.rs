//! The metagraph sync: every `chain.metagraph_secs`, at the finalized head, each synced
//! subnet's `SubnetInfoRuntimeApi_get_subnet_state`, decoded and published into
//! [`Membership`].
//!
//! One replica reads the chain (the holder of a store lease, renewed each round) and writes
//! each answer to the store; every replica, the reader included, publishes what it finds
//! there, so replicas agree on one block per subnet and the chain sees one reader whatever the
//! number of replicas. Subnets are read one after another, spread over the period, so a
//! deployment with many subnets stays under a public node's 1 request/s. A failed read keeps
//! the last snapshot: its age (`agw_metagraph_age_seconds`) is what fails gated subnets closed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::membership::{Member, Membership, SubnetSnapshot};
use super::rpc::ChainRpc;
use super::subnet_state;
use crate::auth::ss58;
use crate::clock::now_ms;
use crate::metrics::ChainMetrics;
use crate::store::{Store, keys};

/// What the sync needs.
#[derive(Clone)]
pub(crate) struct MetagraphSync {
    /// The chain.
    pub rpc: ChainRpc,
    /// Where the lease and the shared snapshots live.
    pub store: Store,
    /// Where snapshots are published.
    pub membership: Arc<Membership>,
    /// Its metrics.
    pub metrics: ChainMetrics,
    /// `chain.metagraph_secs`.
    pub every: Duration,
    /// This replica's id, the lease's value.
    pub replica: String,
}

/// Why one subnet's read failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    /// The chain could not be asked.
    #[error("chain: {0}")]
    Rpc(#[from] super::rpc::RpcError),
    /// Its answer does not decode.
    #[error("undecodable subnet state: {0}")]
    Decode(#[from] super::DecodeError),
    /// The stored copy is cut short.
    #[error("the stored snapshot is truncated")]
    Truncated,
    /// The store could not be read or written.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl SyncError {
    /// The stable name of the failure, for the log line.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            SyncError::Rpc(e) => e.code(),
            SyncError::Decode(e) => e.code(),
            SyncError::Truncated => "truncated",
            SyncError::Store(_) => "store",
        }
    }
}

impl MetagraphSync {
    /// Runs until aborted: reads (when holding the lease) and publishes, subnet after subnet.
    pub(crate) async fn run(self) {
        let netuids: Vec<u16> = self.membership.netuids().collect();
        if netuids.is_empty() {
            return;
        }
        for &n in &netuids {
            self.metrics.subnet(n);
        }
        let started = now_ms();
        let step = self.every / netuids.len() as u32;
        let mut ages = tokio::time::interval(Duration::from_secs(1));
        let mut turn = tokio::time::interval(step.max(Duration::from_millis(10)));
        turn.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next = 0usize;
        loop {
            tokio::select! {
                _ = ages.tick() => self.export_ages(&netuids, started),
                _ = turn.tick() => {
                    let netuid = netuids[next % netuids.len()];
                    next += 1;
                    if let Err(e) = self.round(netuid).await {
                        tracing::warn!(netuid, code = e.code(), error = %e, "metagraph sync failed; the last snapshot stays");
                        self.metrics
                            .metagraph_syncs
                            .with_label_values(&[netuid.to_string().as_str(), "failed"])
                            .inc();
                    }
                }
            }
        }
    }

    /// Exports each subnet's snapshot age; before a subnet's first snapshot, the time since
    /// the sync started (`started`, unix ms), so a sync that never succeeds still alerts.
    fn export_ages(&self, netuids: &[u16], started: u64) {
        let now = now_ms();
        for &n in netuids {
            let age = self
                .membership
                .age(n, now)
                .unwrap_or_else(|| Duration::from_millis(now.saturating_sub(started)));
            self.metrics
                .metagraph_age
                .with_label_values(&[n.to_string().as_str()])
                .set(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
        }
    }

    /// One subnet's turn: read the chain if this replica holds the lease, then publish the
    /// store's copy (whoever wrote it).
    pub(crate) async fn round(&self, netuid: u16) -> Result<(), SyncError> {
        if self.hold_lease().await? {
            // The reader publishes what it read; only the others need the store's copy.
            let snap = self.read_chain(netuid).await?;
            self.install(snap);
            Ok(())
        } else {
            self.adopt(netuid).await
        }
    }

    /// Takes or renews the reader's lease; it outlives three periods so a reader that stalls
    /// for one round keeps it, and one that died gives it up within three.
    async fn hold_lease(&self) -> Result<bool, SyncError> {
        let ttl = (self.every * 3).max(Duration::from_secs(5));
        Ok(super::lease::hold(&self.store, keys::METAGRAPH_LEASE, &self.replica, ttl).await?)
    }

    /// Reads `netuid` at the finalized head, shares the answer through the store and returns
    /// its snapshot.
    async fn read_chain(&self, netuid: u16) -> Result<SubnetSnapshot, SyncError> {
        let head = self.rpc.finalized_head().await?;
        let header = self.rpc.header(head).await?;
        let answer = self
            .rpc
            .state_call(
                subnet_state::GET_SUBNET_STATE,
                &subnet_state::call_arg(netuid),
                Some(head),
            )
            .await?;
        // Decoded before it is shared: garbage never replaces a good snapshot.
        let decoded = subnet_state::decode(&answer)?;
        if decoded.is_none() {
            self.metrics
                .metagraph_syncs
                .with_label_values(&[netuid.to_string().as_str(), "no_subnet"])
                .inc();
        }
        let read_at_ms = now_ms();
        let mut blob = Vec::with_capacity(16 + answer.len());
        blob.extend_from_slice(&header.number.to_be_bytes());
        blob.extend_from_slice(&read_at_ms.to_be_bytes());
        blob.extend_from_slice(&answer);
        self.store
            .set(&keys::metagraph_snapshot(netuid), &blob, None)
            .await?;
        Ok(snapshot_of(netuid, header.number, read_at_ms, decoded))
    }

    /// Publishes the store's snapshot of `netuid` when it is newer than the one in place;
    /// the answer is decoded only then.
    async fn adopt(&self, netuid: u16) -> Result<(), SyncError> {
        let Some(blob) = self.store.get(&keys::metagraph_snapshot(netuid)).await? else {
            return Ok(());
        };
        let (block, read_at_ms, answer) = split_blob(&blob)?;
        if let Some(current) = self.membership.snapshot(netuid)
            && (current.block, current.read_at_ms) >= (block, read_at_ms)
        {
            return Ok(());
        }
        let state = subnet_state::decode(answer)?;
        self.install(snapshot_of(netuid, block, read_at_ms, state));
        Ok(())
    }

    /// Publishes a snapshot (unless a newer one is in place) and exports its series.
    fn install(&self, snap: SubnetSnapshot) {
        let netuid = snap.netuid;
        let n = netuid.to_string();
        let members = snap.members.len();
        let block = snap.block;
        if self.membership.publish(snap) {
            self.metrics
                .metagraph_block
                .with_label_values(&[n.as_str()])
                .set(block as i64);
            self.metrics
                .metagraph_members
                .with_label_values(&[n.as_str()])
                .set(members as i64);
            self.metrics
                .metagraph_syncs
                .with_label_values(&[n.as_str(), "ok"])
                .inc();
            self.export_ages(&[netuid], now_ms());
        }
    }
}

/// A stored snapshot's block, read time and the chain's answer.
fn split_blob(blob: &[u8]) -> Result<(u64, u64, &[u8]), SyncError> {
    let (Some(block), Some(read_at), Some(answer)) =
        (blob.get(..8), blob.get(8..16), blob.get(16..))
    else {
        return Err(SyncError::Truncated);
    };
    let be = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
    Ok((be(block), be(read_at), answer))
}

/// The request path's view of a decoded subnet state (`None`: the subnet does not exist, so
/// it has no members).
pub(crate) fn snapshot_of(
    netuid: u16,
    block: u64,
    read_at_ms: u64,
    state: Option<subnet_state::SubnetState>,
) -> SubnetSnapshot {
    let members: HashMap<String, Member> = state
        .map(|s| s.neurons)
        .unwrap_or_default()
        .into_iter()
        .map(|n| {
            (
                ss58::encode42(&n.hotkey),
                Member {
                    netuid,
                    uid: n.uid,
                    validator_permit: n.validator_permit,
                    alpha_stake: n.alpha_stake,
                    tao_stake: n.tao_stake,
                    total_stake: n.total_stake,
                    coldkey: ss58::encode42(&n.coldkey),
                },
            )
        })
        .collect();
    SubnetSnapshot {
        netuid,
        block,
        read_at_ms,
        members,
    }
}
