//! The chain model: blocks with deterministic hashes, each block's `System.Events` encoded
//! with the runtime in effect at its parent, queued transfers, runtime upgrades, finality and
//! per-block subnet states.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parity_scale_codec::{Compact, Encode};
use scale_value::Value;
use sp_crypto_hashing::blake2_256;

use crate::runtime::{self, Phase, Record, Runtime};
use crate::{SimNeuron, subnet};

/// A transfer recorded in a block: (event index in `System.Events`, from, to, amount in rao).
pub(crate) type TransferEvent = (u32, [u8; 32], [u8; 32], u64);

/// The fee the simulated transfers pay (Withdraw from the sender, Deposit to the author).
const FEE_RAO: u64 = 124_000;
/// The simulated block author (receives fees).
const AUTHOR: [u8; 32] = [0xa7; 32];
/// The account the forged EVM log names when no transfer was ever queued.
const FORGERY_DEFAULT_TO: [u8; 32] = [0xde; 32];

/// A subnet's answers over time: (first block, `Option<SubnetState>` bytes), in block order.
type SubnetHistory = Vec<(u64, Arc<Vec<u8>>)>;

/// One block.
pub(crate) struct Block {
    pub(crate) number: u64,
    pub(crate) hash: [u8; 32],
    pub(crate) parent_hash: [u8; 32],
    pub(crate) state_root: [u8; 32],
    pub(crate) extrinsics_root: [u8; 32],
    /// SCALE `Vec<EventRecord>`, encoded with the parent's runtime.
    pub(crate) events: Arc<Vec<u8>>,
    pub(crate) transfers: Vec<TransferEvent>,
    /// Index into [`ChainState::runtimes`] of the runtime in effect AFTER this block (the one
    /// that executes its child; `state_getMetadata(hash)` answers it).
    pub(crate) runtime: usize,
}

/// Substrate's header encoding; a block's hash is the blake2-256 of it.
#[derive(Encode)]
struct HeaderWire {
    parent_hash: [u8; 32],
    number: Compact<u32>,
    state_root: [u8; 32],
    extrinsics_root: [u8; 32],
    digest: Vec<()>,
}

/// Everything behind the [`crate::ChainSim`] lock.
pub(crate) struct ChainState {
    pub(crate) blocks: Vec<Block>,
    pub(crate) by_hash: HashMap<[u8; 32], u64>,
    pub(crate) finalized: u64,
    pub(crate) finality_lag: u64,
    pub(crate) runtimes: Vec<Arc<Runtime>>,
    pending_transfers: Vec<([u8; 32], [u8; 32], u64)>,
    upgrade_pending: bool,
    /// Per netuid: (first block, `Option<SubnetState>` bytes) in block order.
    subnets: BTreeMap<u16, SubnetHistory>,
    forgery_to: [u8; 32],
}

impl ChainState {
    /// Genesis, then blocks 1..=`head`, with runtime `spec_version`.
    pub(crate) fn new(head: u64, spec_version: u32, finality_lag: u64) -> ChainState {
        let mut subnets = BTreeMap::new();
        subnets.insert(1, vec![(0, Arc::new(subnet::fixture_netuid1().to_vec()))]);
        let mut state = ChainState {
            blocks: Vec::new(),
            by_hash: HashMap::new(),
            finalized: 0,
            finality_lag,
            runtimes: vec![Arc::new(Runtime::new(0, spec_version))],
            pending_transfers: Vec::new(),
            upgrade_pending: false,
            subnets,
            forgery_to: FORGERY_DEFAULT_TO,
        };
        state.push_block();
        state.produce(head);
        state.finalized = head.saturating_sub(finality_lag);
        state
    }

    pub(crate) fn head(&self) -> u64 {
        self.blocks.len() as u64 - 1
    }

    pub(crate) fn block(&self, n: u64) -> Option<&Block> {
        usize::try_from(n).ok().and_then(|i| self.blocks.get(i))
    }

    pub(crate) fn runtime_after(&self, n: u64) -> &Arc<Runtime> {
        let block = self.block(n.min(self.head())).expect("head exists");
        &self.runtimes[block.runtime]
    }

    pub(crate) fn queue_transfer(&mut self, from: [u8; 32], to: [u8; 32], amount: u64) {
        self.forgery_to = to;
        self.pending_transfers.push((from, to, amount));
    }

    pub(crate) fn schedule_upgrade(&mut self) {
        self.upgrade_pending = true;
    }

    /// The spec version the chain will run once a scheduled upgrade lands.
    pub(crate) fn next_spec_version(&self) -> u32 {
        let current = self.runtimes.last().expect("a runtime").spec_version;
        if self.upgrade_pending {
            current + 1
        } else {
            current
        }
    }

    pub(crate) fn set_subnet(&mut self, netuid: u16, neurons: &[SimNeuron]) {
        let from = self.head() + 1;
        let bytes = Arc::new(subnet::synthesize(netuid, neurons, from));
        let versions = self.subnets.entry(netuid).or_default();
        versions.retain(|(block, _)| *block < from);
        versions.push((from, bytes));
    }

    /// `Option<SubnetState>` bytes of `netuid` in the state after block `n`; `0x00` if none.
    pub(crate) fn subnet_state(&self, netuid: u16, n: u64) -> Arc<Vec<u8>> {
        self.subnets
            .get(&netuid)
            .and_then(|versions| versions.iter().rev().find(|(from, _)| *from <= n))
            .map(|(_, bytes)| Arc::clone(bytes))
            .unwrap_or_else(|| Arc::new(vec![0]))
    }

    /// Produces `count` blocks and returns the new head (finality is the caller's business).
    pub(crate) fn produce(&mut self, count: u64) -> u64 {
        for _ in 0..count {
            self.push_block();
        }
        self.head()
    }

    pub(crate) fn advance_finality(&mut self) {
        self.finalized = self
            .finalized
            .max(self.head().saturating_sub(self.finality_lag));
    }

    fn push_block(&mut self) {
        let number = self.blocks.len() as u64;
        let (parent_hash, parent_runtime) = match self.blocks.last() {
            Some(b) => (b.hash, b.runtime),
            None => ([0; 32], 0),
        };
        let (records, transfers, upgraded) = if number == 0 {
            (Vec::new(), Vec::new(), false)
        } else {
            self.block_records(number)
        };
        let encoder = Arc::clone(&self.runtimes[parent_runtime]);
        let events = encoder.encode_events(&records);
        let runtime = if upgraded {
            let generation = self.runtimes.len() as u32;
            let spec = encoder.spec_version + 1;
            self.runtimes.push(Arc::new(Runtime::new(generation, spec)));
            self.runtimes.len() - 1
        } else {
            parent_runtime
        };
        let mut state_input = b"chain-sim/state".to_vec();
        state_input.extend_from_slice(&number.to_le_bytes());
        state_input.extend_from_slice(&events);
        let state_root = blake2_256(&state_input);
        let mut ext_input = b"chain-sim/extrinsics".to_vec();
        ext_input.extend_from_slice(&number.to_le_bytes());
        let extrinsics_root = blake2_256(&ext_input);
        let header = HeaderWire {
            parent_hash,
            number: Compact(u32::try_from(number).expect("fewer than 2^32 blocks")),
            state_root,
            extrinsics_root,
            digest: Vec::new(),
        };
        let hash = blake2_256(&header.encode());
        self.by_hash.insert(hash, number);
        self.blocks.push(Block {
            number,
            hash,
            parent_hash,
            state_root,
            extrinsics_root,
            events: Arc::new(events),
            transfers,
            runtime,
        });
    }

    /// The event records of block `number` (≥ 1): the timestamp inherent, noise from other
    /// pallets, the queued transfers and a scheduled upgrade. Returns whether it upgraded.
    fn block_records(&mut self, number: u64) -> (Vec<Record>, Vec<TransferEvent>, bool) {
        let mut records = Vec::new();
        let mut transfers = Vec::new();
        let seed = |k: u64| number.wrapping_mul(1_000_003).wrapping_add(k);
        let push = |records: &mut Vec<Record>, phase, pallet, variant, fields: Vec<Value>| {
            let k = records.len() as u64;
            records.push(Record {
                phase,
                pallet,
                variant,
                fields,
                seed: seed(k),
            });
        };
        if number.is_multiple_of(4) {
            // on_initialize work (emission), before any extrinsic.
            push(
                &mut records,
                Phase::Initialization,
                "Balances",
                "Minted",
                vec![runtime::account(&AUTHOR)],
            );
        }
        // Timestamp.set: an inherent with only its success event.
        push(
            &mut records,
            Phase::ApplyExtrinsic(0),
            "System",
            "ExtrinsicSuccess",
            vec![],
        );
        let mut ext = 1u32;
        if number.is_multiple_of(3) {
            // A subtensor call: its event, the fee, success.
            let variant = ["StakeAdded", "WeightsSet", "NeuronRegistered", "AxonServed"]
                [(number / 3 % 4) as usize];
            let payer = [number as u8; 32];
            push(
                &mut records,
                Phase::ApplyExtrinsic(ext),
                "Balances",
                "Withdraw",
                vec![runtime::account(&payer), runtime::number(FEE_RAO)],
            );
            push(
                &mut records,
                Phase::ApplyExtrinsic(ext),
                "SubtensorModule",
                variant,
                vec![],
            );
            push(
                &mut records,
                Phase::ApplyExtrinsic(ext),
                "TransactionPayment",
                "TransactionFeePaid",
                vec![runtime::account(&payer)],
            );
            push(
                &mut records,
                Phase::ApplyExtrinsic(ext),
                "System",
                "ExtrinsicSuccess",
                vec![],
            );
            ext += 1;
        }
        if number.is_multiple_of(5) {
            // An EVM call whose log data looks exactly like a Balances.Transfer to the last
            // address anyone paid: byte scanners credit it, metadata decoders do not.
            let mut forged = vec![5u8, 2];
            forged.extend_from_slice(&[0x66; 32]);
            forged.extend_from_slice(&self.forgery_to);
            forged.extend_from_slice(&1_000_000_000_000u64.to_le_bytes());
            let log = Value::named_composite([
                (
                    "address",
                    Value::unnamed_composite([Value::from_bytes([0x11u8; 20])]),
                ),
                ("topics", Value::unnamed_composite([])),
                ("data", Value::from_bytes(&forged)),
            ]);
            push(
                &mut records,
                Phase::ApplyExtrinsic(ext),
                "EVM",
                "Log",
                vec![log],
            );
            push(
                &mut records,
                Phase::ApplyExtrinsic(ext),
                "Ethereum",
                "Executed",
                vec![],
            );
            push(
                &mut records,
                Phase::ApplyExtrinsic(ext),
                "System",
                "ExtrinsicSuccess",
                vec![],
            );
            ext += 1;
        }
        for (from, to, amount) in std::mem::take(&mut self.pending_transfers) {
            let phase = Phase::ApplyExtrinsic(ext);
            push(
                &mut records,
                phase,
                "Balances",
                "Withdraw",
                vec![runtime::account(&from), runtime::number(FEE_RAO)],
            );
            transfers.push((records.len() as u32, from, to, amount));
            push(
                &mut records,
                phase,
                "Balances",
                "Transfer",
                vec![
                    runtime::account(&from),
                    runtime::account(&to),
                    runtime::number(amount),
                ],
            );
            push(
                &mut records,
                phase,
                "Balances",
                "Deposit",
                vec![runtime::account(&AUTHOR), runtime::number(FEE_RAO)],
            );
            push(&mut records, phase, "System", "ExtrinsicSuccess", vec![]);
            ext += 1;
        }
        let upgraded = std::mem::take(&mut self.upgrade_pending);
        if upgraded {
            // sudo(set_code): the new code takes effect for the next block.
            let phase = Phase::ApplyExtrinsic(ext);
            push(&mut records, phase, "System", "CodeUpdated", vec![]);
            push(&mut records, phase, "System", "ExtrinsicSuccess", vec![]);
        }
        if number.is_multiple_of(7) {
            // on_finalize work, after every extrinsic.
            push(
                &mut records,
                Phase::Finalization,
                "Balances",
                "Deposit",
                vec![runtime::account(&AUTHOR)],
            );
        }
        (records, transfers, upgraded)
    }
}
