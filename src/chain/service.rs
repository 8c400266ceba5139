//! The chain features as one unit, built at start from `[chain]`: the JSON-RPC client, the
//! membership the auth layer reads, and the background tasks that keep it (and the
//! deposits) current.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::deposits::DepositPoller;
use super::membership::{Membership, SubnetRule};
use super::metagraph::MetagraphSync;
use super::rpc::ChainRpc;
use super::runtime::MetadataCache;
use crate::config::{ChainConfig, Config};
use crate::metrics::Metrics;
use crate::store::Store;

/// What the rest of the gateway sees of the chain.
#[derive(Debug)]
pub(crate) struct Chain {
    /// The client (its endpoints' status is on `GET /admin/v1/chain`).
    pub rpc: ChainRpc,
    /// The synced subnets' snapshots.
    pub membership: Arc<Membership>,
    /// `[chain]` as configured.
    pub config: ChainConfig,
    /// The deposit address's public key, when deposits are on.
    pub deposit_to: Option<[u8; 32]>,
    /// Runtime metadata, per spec version.
    pub metadata: Arc<MetadataCache>,
    /// The deposit poller's last error.
    pub deposit_error: Arc<std::sync::Mutex<Option<String>>>,
}

impl Chain {
    /// Builds the chain unit when `[chain]` is configured (`None`: chain features off).
    pub(crate) fn new(config: &Config, metrics: &Metrics) -> Result<Option<Arc<Chain>>, String> {
        let Some(c) = &config.chain else {
            return Ok(None);
        };
        let rps = NonZeroU32::new(c.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let rpc = ChainRpc::new(
            c.endpoints.clone(),
            c.archive_endpoints.clone(),
            rps,
            Duration::from_millis(c.request_timeout_ms),
            metrics.chain.rpc_requests.clone(),
        )?;
        let rules: BTreeMap<u16, SubnetRule> = c
            .synced_netuids(&config.subnets)
            .into_iter()
            .map(|n| {
                let rule = SubnetRule {
                    mapped: config.subnets.contains_key(&n.to_string()),
                    gate: config.subnet_gates.get(&n.to_string()).cloned(),
                };
                (n, rule)
            })
            .collect();
        let deposit_to = match &c.deposit_address {
            Some(a) => Some(crate::auth::ss58::decode42(a).map_err(|_| {
                format!("chain.deposit_address: {a:?} is not a canonical SS58 address")
            })?),
            None => None,
        };
        Ok(Some(Arc::new(Chain {
            rpc,
            membership: Arc::new(Membership::new(rules, c.max_age())),
            config: c.clone(),
            deposit_to,
            metadata: Arc::new(MetadataCache::new()),
            deposit_error: Arc::default(),
        })))
    }

    /// Starts the background tasks: the metagraph sync (and the deposit poller).
    pub(crate) fn spawn(
        self: &Arc<Self>,
        store: &Store,
        metrics: &Metrics,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let replica = uuid::Uuid::new_v4().simple().to_string();
        let sync = MetagraphSync {
            rpc: self.rpc.clone(),
            store: store.clone(),
            membership: Arc::clone(&self.membership),
            metrics: metrics.chain.clone(),
            every: self.config.metagraph_every(),
            replica: replica.clone(),
        };
        let mut tasks = vec![tokio::spawn(sync.run())];
        if let Some(to) = self.deposit_to {
            let poller = DepositPoller {
                rpc: self.rpc.clone(),
                store: store.clone(),
                metadata: Arc::clone(&self.metadata),
                to,
                metrics: metrics.chain.clone(),
                every: self.config.deposit_every(),
                replica,
                last_error: Arc::clone(&self.deposit_error),
            };
            tasks.push(tokio::spawn(poller.run()));
        }
        tasks
    }
}
