//! `chain-sim`: a simulated Subtensor (Bittensor) node speaking JSON-RPC 2.0 over HTTP POST on
//! 127.0.0.1, so the gateway's chain client, metagraph sync and deposit poller are tested, load
//! tested and run in the embedded default without a real chain (none is reachable from
//! development or CI machines).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use chain_sim::{ChainSim, Role};
//! let chain = ChainSim::new(); // blocks 0..=1000, spec 343, finalized = head - 2
//! let lite = chain.serve(Role::Lite { retention: 256 }).await?;
//! let archive = chain.serve(Role::Archive).await?; // the same chain
//! chain.queue_transfer([1; 32], [2; 32], 5_000_000_000);
//! chain.produce_blocks(3); // block 1001 carries the Balances.Transfer
//! assert_eq!(chain.transfers_in(1001).len(), 1);
//! lite.fail_next(1, 429); // the next request gets 429 with Retry-After: 1
//! # let _ = (lite.url(), archive.url());
//! # Ok(())
//! # }
//! ```
//!
//! # Chain model
//! - Blocks `0..=head`; a block's hash is blake2-256 of its SCALE header (deterministic
//!   parent hash, number, state and extrinsics roots, empty digest). Finality trails the head by
//!   [`ChainSim::set_finality_lag`] blocks (default 2) and never goes backwards.
//! - Each block's `System.Events` is encoded through the metadata in effect at its parent:
//!   `System.ExtrinsicSuccess` per extrinsic, queued `Balances.Transfer`s (with their fee's
//!   `Withdraw`/`Deposit`), and noise: `SubtensorModule` events, `TransactionPayment` fees and
//!   an `EVM.Log` whose data bytes look like a transfer to the last queued recipient (every 5th
//!   block), which a byte scanner would wrongly credit.
//! - [`ChainSim::runtime_upgrade`]: the next block carries `System.CodeUpdated`; every block
//!   after it runs `spec_version + 1` with a derived metadata whose event encoding differs:
//!   `Balances` events re-indexed (reversed) and a `upgrade_marker: u32` field added to
//!   `System.ExtrinsicSuccess`, so decoding with the stale metadata fails or misreads.
//! - Subnets: netuid 1 answers the recorded mainnet fixture; [`ChainSim::set_subnet`] serves a
//!   synthesised `Option<SubnetState>` from the next block on; unknown netuids answer `0x00`.
//!
//! # JSON-RPC methods (`POST /`, single calls or batches)
//! `chain_getFinalizedHead`, `chain_getHeader([hash])`, `chain_getBlockHash([number])`,
//! `state_call(method, data, [hash])` (`SubnetInfoRuntimeApi_get_subnet_state` only; others
//! get -32601), `state_getStorage(key, [hash])` (`System.Events`, else `null`),
//! `state_getMetadata([hash])` (the runtime in effect after that block),
//! `state_getRuntimeVersion([hash])`. On a [`Role::Lite`] listener, state queries for blocks
//! older than `head - retention` get error 4003 `State already discarded for 0x…`.
//!
//! # Control routes (for out-of-process load tests)
//! `POST /_chain/transfer {from, to, amount}` (SS58 or 0x hex), `POST /_chain/blocks {count}`,
//! `POST /_chain/upgrade`, `POST /_chain/subnets/{netuid}` (a JSON array of neurons),
//! `POST /_chain/fail {count, status}` (this listener), `GET /_chain/status`,
//! `GET /_chain/requests` (this listener's counts per method).

mod chain;
mod runtime;
mod server;
mod ss58;
mod subnet;

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

pub use server::{Listener, Role};
pub use ss58::{SS58_PREFIX, parse_account, ss58_encode};

use chain::ChainState;

/// `state_getStorage` key of `System.Events` (twox128("System") ++ twox128("Events")).
pub const SYSTEM_EVENTS_KEY: &str =
    "0x26aa394eea5630e07c48ae0c9558cef780d41e5e16056765bc8461851072c9d7";

/// The recorded runtime's spec version (finney, from the metadata fixture).
pub const DEFAULT_SPEC_VERSION: u32 = 343;

/// One neuron of a synthesised subnet; its UID is its position in the list. Stakes in rao.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimNeuron {
    /// The neuron's hotkey (sr25519 public key).
    pub hotkey: [u8; 32],
    /// The owning coldkey.
    pub coldkey: [u8; 32],
    /// Whether it holds a validator permit.
    pub validator_permit: bool,
    /// Inherited alpha stake.
    pub alpha_stake: u64,
    /// Root TAO stake.
    pub tao_stake: u64,
    /// `alpha + tao · TaoWeight`, what `min_stake_rao` gates compare.
    pub total_stake: u64,
}

/// How a [`ChainSim`] starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainConfig {
    /// Blocks produced at start (the head); genesis is block 0.
    pub head: u64,
    /// Spec version of the initial runtime.
    pub spec_version: u32,
    /// Blocks between the head and the finalized block.
    pub finality_lag: u64,
    /// Produce a block every this many milliseconds in a background task (the embedded default
    /// and load tests); `None` produces only on [`ChainSim::produce_blocks`].
    pub block_ms: Option<u64>,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            head: 1000,
            spec_version: DEFAULT_SPEC_VERSION,
            finality_lag: 2,
            block_ms: None,
        }
    }
}

/// The simulated chain; cheap to clone (all clones and all [`Listener`]s share one chain).
#[derive(Clone)]
pub struct ChainSim {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<ChainState>,
    producer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.producer.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

impl Default for ChainSim {
    fn default() -> Self {
        ChainSim::new()
    }
}

impl ChainSim {
    /// Blocks 0..=1000, spec 343, finality lag 2, no automatic production.
    pub fn new() -> ChainSim {
        ChainSim::with_config(ChainConfig::default())
    }

    /// A chain as `config` says.
    ///
    /// # Panics
    /// With `block_ms: Some(_)` outside a Tokio runtime (the producer is a Tokio task).
    pub fn with_config(config: ChainConfig) -> ChainSim {
        let state = ChainState::new(config.head, config.spec_version, config.finality_lag);
        let sim = ChainSim {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                producer: Mutex::new(None),
            }),
        };
        if let Some(ms) = config.block_ms {
            sim.start_block_production(Duration::from_millis(ms.max(1)));
        }
        sim
    }

    /// Produces one block every `every` from now on (replacing an earlier producer), until
    /// [`ChainSim::stop_block_production`] or the last clone is dropped.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start_block_production(&self, every: Duration) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        // The first block is due `every` after this call, not after the task first runs.
        let first = tokio::time::Instant::now() + every;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(first, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                ChainSim { inner }.produce_blocks(1);
            }
        });
        let old = self
            .inner
            .producer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task);
        if let Some(old) = old {
            old.abort();
        }
    }

    /// Stops automatic block production.
    pub fn stop_block_production(&self) {
        if let Some(task) = self
            .inner
            .producer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, ChainState> {
        // A panic while producing is a simulator bug already reported; keep serving.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves this chain on 127.0.0.1 (a free port) in `role`.
    pub async fn serve(&self, role: Role) -> std::io::Result<Listener> {
        server::serve(
            self.clone(),
            role,
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
    }

    /// Serves this chain on `addr` in `role` (the binary's `--listen`).
    pub async fn serve_on(
        &self,
        addr: std::net::SocketAddr,
        role: Role,
    ) -> std::io::Result<Listener> {
        server::serve(self.clone(), role, addr).await
    }

    /// Netuid `netuid` answers a synthesised `SubnetState` of `neurons` from the next block on.
    pub fn set_subnet(&self, netuid: u16, neurons: Vec<SimNeuron>) {
        self.state().set_subnet(netuid, &neurons);
    }

    /// Queues a `Balances.Transfer` (amount in rao) into the next block.
    pub fn queue_transfer(&self, from: [u8; 32], to: [u8; 32], amount: u64) {
        self.state().queue_transfer(from, to, amount);
    }

    /// Produces `n` blocks, finalizes up to `head - lag` and returns the new head.
    pub fn produce_blocks(&self, n: u64) -> u64 {
        let mut state = self.state();
        let head = state.produce(n);
        state.advance_finality();
        head
    }

    /// Blocks the finalized block trails the head by. Finality never goes backwards: a larger
    /// lag holds the finalized block where it is until the head is `lag` ahead of it.
    pub fn set_finality_lag(&self, lag: u64) {
        let mut state = self.state();
        state.finality_lag = lag;
        state.advance_finality();
    }

    /// The next block carries `System.CodeUpdated`; blocks after it run `spec_version + 1`
    /// with a metadata whose event encoding differs ([`ChainSim::spec_version_at`] tells).
    pub fn runtime_upgrade(&self) {
        self.state().schedule_upgrade();
    }

    /// The best block's number.
    pub fn head(&self) -> u64 {
        self.state().head()
    }

    /// The finalized block's number.
    pub fn finalized(&self) -> u64 {
        self.state().finalized
    }

    /// Spec version of the runtime in effect after block `n` (what
    /// `state_getRuntimeVersion(hash of n)` answers; block `n + 1`'s events use it). Past the
    /// head: the head's.
    pub fn spec_version_at(&self, n: u64) -> u32 {
        self.state().runtime_after(n).spec_version
    }

    /// The `Balances.Transfer`s in block `n`: (event index in that block's `System.Events`,
    /// from, to, amount in rao). Empty for blocks without transfers or past the head.
    pub fn transfers_in(&self, n: u64) -> Vec<(u32, [u8; 32], [u8; 32], u64)> {
        self.state()
            .block(n)
            .map(|b| b.transfers.clone())
            .unwrap_or_default()
    }

    /// The hash of block `n`, if produced.
    pub fn block_hash(&self, n: u64) -> Option<[u8; 32]> {
        self.state().block(n).map(|b| b.hash)
    }

    /// The SCALE `System.Events` bytes of block `n`, if produced.
    pub fn events_at(&self, n: u64) -> Option<Vec<u8>> {
        self.state().block(n).map(|b| b.events.to_vec())
    }

    /// The SCALE `RuntimeMetadataPrefixed` in effect after block `n` (decode block `n + 1`'s
    /// events with it); past the head: the head's.
    pub fn metadata_after(&self, n: u64) -> Vec<u8> {
        self.state().runtime_after(n).metadata_bytes.to_vec()
    }
}

#[cfg(test)]
mod tests;
