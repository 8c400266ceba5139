//! Chain metrics: the JSON-RPC endpoints, each synced subnet's metagraph, and the deposit
//! poller. Both chain tasks keep serving from what they last read when the chain is away, so
//! only these series show that they stopped (the alerts in deploy/prometheus/rules.yml).

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Outcomes of one metagraph read: `ok`, `no_subnet` (the chain says the netuid does not
/// exist), `failed` (unreachable or undecodable: the last snapshot stays).
pub(crate) const SYNC_OUTCOMES: [&str; 3] = ["ok", "no_subnet", "failed"];

/// What the deposit poller did with one `Balances.Transfer` to the deposit address.
pub(crate) const DEPOSIT_OUTCOMES: [&str; 3] = ["credited", "duplicate", "unattributed"];

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ChainMetrics {
    /// JSON-RPC requests, by endpoint label (`lite0`, `archive0`: never the URL) and outcome
    /// (`ok`, `rate_limited`, `unavailable`, `rpc_error`, `discarded`).
    pub rpc_requests: IntCounterVec,
    /// Seconds since each synced subnet's snapshot was read from the chain.
    pub metagraph_age: IntGaugeVec,
    /// The finalized block each subnet's snapshot was read at.
    pub metagraph_block: IntGaugeVec,
    /// Registered hotkeys in each subnet's snapshot.
    pub metagraph_members: IntGaugeVec,
    /// Metagraph reads, by netuid and [`SYNC_OUTCOMES`].
    pub metagraph_syncs: IntCounterVec,
    /// The chain's finalized block, as the deposit poller last saw it.
    pub finalized_block: IntGauge,
    /// The chain's best block, as the deposit poller last saw it.
    pub head_block: IntGauge,
    /// The last block whose deposits are all recorded.
    pub deposit_cursor: IntGauge,
    /// Finalized blocks not yet scanned for deposits.
    pub deposit_lag_blocks: IntGauge,
    /// Transfers to the deposit address, by [`DEPOSIT_OUTCOMES`].
    pub deposits: IntCounterVec,
    /// Rao credited to accounts from TAO deposits.
    pub credited_rao: IntCounter,
    /// Deposit poll rounds that stopped on an error (the cursor stays; the round is retried).
    pub deposit_errors: IntCounter,
}

impl ChainMetrics {
    pub(super) fn register(registry: &Registry) -> ChainMetrics {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let gauge_vec = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["netuid"]).expect("valid metric")
        };
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let m = ChainMetrics {
            rpc_requests: counter_vec(
                "agw_chain_rpc_requests_total",
                "Chain JSON-RPC requests, by endpoint (lite0, archive0, ...) and outcome",
                &["endpoint", "outcome"],
            ),
            metagraph_age: gauge_vec(
                "agw_metagraph_age_seconds",
                "Seconds since the subnet's metagraph snapshot was read from the chain",
            ),
            metagraph_block: gauge_vec(
                "agw_metagraph_block",
                "The finalized block the subnet's metagraph snapshot was read at",
            ),
            metagraph_members: gauge_vec(
                "agw_metagraph_hotkeys",
                "Registered hotkeys in the subnet's metagraph snapshot",
            ),
            metagraph_syncs: counter_vec(
                "agw_metagraph_syncs_total",
                "Metagraph reads, by netuid and outcome",
                &["netuid", "outcome"],
            ),
            finalized_block: gauge(
                "agw_chain_finalized_block",
                "The chain's finalized block, as the deposit poller last saw it",
            ),
            head_block: gauge(
                "agw_chain_head_block",
                "The chain's best block, as the deposit poller last saw it",
            ),
            deposit_cursor: gauge(
                "agw_deposit_cursor_block",
                "The last block whose TAO deposits are all recorded",
            ),
            deposit_lag_blocks: gauge(
                "agw_deposit_lag_blocks",
                "Finalized blocks not yet scanned for TAO deposits",
            ),
            deposits: counter_vec(
                "agw_deposits_total",
                "Transfers to the deposit address, by outcome",
                &["outcome"],
            ),
            credited_rao: IntCounter::new(
                "agw_deposits_credited_rao_total",
                "Rao credited to accounts from TAO deposits",
            )
            .expect("valid metric"),
            deposit_errors: IntCounter::new(
                "agw_deposit_poll_errors_total",
                "Deposit poll rounds that stopped on an error (retried from the same cursor)",
            )
            .expect("valid metric"),
        };
        for o in DEPOSIT_OUTCOMES {
            m.deposits.with_label_values(&[o]);
        }
        for c in [
            Box::new(m.rpc_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.metagraph_age.clone()),
            Box::new(m.metagraph_block.clone()),
            Box::new(m.metagraph_members.clone()),
            Box::new(m.metagraph_syncs.clone()),
            Box::new(m.finalized_block.clone()),
            Box::new(m.head_block.clone()),
            Box::new(m.deposit_cursor.clone()),
            Box::new(m.deposit_lag_blocks.clone()),
            Box::new(m.deposits.clone()),
            Box::new(m.credited_rao.clone()),
            Box::new(m.deposit_errors.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        m
    }

    /// Creates a subnet's series at zero so its alert has something to watch from the start.
    pub(crate) fn subnet(&self, netuid: u16) {
        let n = netuid.to_string();
        for o in SYNC_OUTCOMES {
            self.metagraph_syncs.with_label_values(&[n.as_str(), o]);
        }
    }
}
