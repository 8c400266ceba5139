//! `[chain]` and `[subnet_gates."<netuid>"]`: reading Bittensor's chain for subnet membership
//! and TAO deposits. Without a `[chain]` section (and without `GATEWAY_CHAIN_ENDPOINTS`) every
//! chain feature is off and the gateway behaves as before.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::{self, range};

/// Chain access (docs/OPERATIONS.md, "Chain").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// HTTP JSON-RPC endpoints, tried in order (`GATEWAY_CHAIN_ENDPOINTS`, comma-separated).
    pub endpoints: Vec<String>,
    /// Archive endpoints, asked when a lite node says a block's state is discarded.
    pub archive_endpoints: Vec<String>,
    /// Subnets whose metagraph is synced; empty: every netuid mapped in `[subnets]`.
    pub netuids: Vec<u16>,
    /// The SS58 address TAO deposits are sent to (`GATEWAY_DEPOSIT_ADDRESS`); unset: no
    /// deposit poller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deposit_address: Option<String>,
    /// How often each subnet's metagraph is read, seconds.
    pub metagraph_secs: u64,
    /// A snapshot older than this fails closed for gated subnets, seconds.
    pub max_age_secs: u64,
    /// Requests per second per endpoint (public nodes allow about 1).
    pub requests_per_second: u32,
    /// How often the deposit poller looks for new finalized blocks, seconds.
    pub deposit_poll_secs: u64,
    /// Deadline of one JSON-RPC request, milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for ChainConfig {
    fn default() -> ChainConfig {
        ChainConfig {
            endpoints: Vec::new(),
            archive_endpoints: Vec::new(),
            netuids: Vec::new(),
            deposit_address: None,
            metagraph_secs: 60,
            max_age_secs: 600,
            requests_per_second: 1,
            deposit_poll_secs: 6,
            request_timeout_ms: 30_000,
        }
    }
}

impl ChainConfig {
    /// [`ChainConfig::metagraph_secs`] as a duration.
    pub fn metagraph_every(&self) -> Duration {
        Duration::from_secs(self.metagraph_secs)
    }

    /// [`ChainConfig::max_age_secs`] as a duration.
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.max_age_secs)
    }

    /// [`ChainConfig::deposit_poll_secs`] as a duration.
    pub fn deposit_every(&self) -> Duration {
        Duration::from_secs(self.deposit_poll_secs)
    }

    /// The subnets to sync: the configured list, else every mapped subnet, sorted, unique.
    pub fn synced_netuids(&self, subnets: &BTreeMap<String, String>) -> Vec<u16> {
        let mut out: Vec<u16> = if self.netuids.is_empty() {
            subnets.keys().filter_map(|k| k.parse().ok()).collect()
        } else {
            self.netuids.clone()
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let field = |f: &str| format!("chain.{f}");
        if self.endpoints.is_empty() {
            return Err((
                field("endpoints"),
                "must list at least one HTTP JSON-RPC URL (GATEWAY_CHAIN_ENDPOINTS)".into(),
            ));
        }
        for (name, list) in [
            ("endpoints", &self.endpoints),
            ("archive_endpoints", &self.archive_endpoints),
        ] {
            for (i, url) in list.iter().enumerate() {
                validate::http_url(url).map_err(|e| (format!("chain.{name}[{i}]"), e))?;
            }
        }
        if let Some(addr) = &self.deposit_address {
            crate::auth::ss58::decode42(addr).map_err(|_| {
                (
                    field("deposit_address"),
                    format!("must be a canonical SS58 address (prefix 42), got {addr:?}"),
                )
            })?;
        }
        let secs = |v: u64, lo: u64, hi: u64, f: &str| {
            range(v, lo, hi, "seconds").map_err(|e| (field(f), e))
        };
        secs(self.metagraph_secs, 1, 86_400, "metagraph_secs")?;
        secs(self.max_age_secs, 1, 7 * 86_400, "max_age_secs")?;
        secs(self.deposit_poll_secs, 1, 3_600, "deposit_poll_secs")?;
        if self.max_age_secs < self.metagraph_secs {
            return Err((
                field("max_age_secs"),
                format!(
                    "must be at least chain.metagraph_secs ({}), or every snapshot would be \
                     stale before the next one, got {}",
                    self.metagraph_secs, self.max_age_secs
                ),
            ));
        }
        range(u64::from(self.requests_per_second), 1, 1_000, "requests")
            .map_err(|e| (field("requests_per_second"), e))?;
        range(self.request_timeout_ms, 100, 300_000, "milliseconds")
            .map_err(|e| (field("request_timeout_ms"), e))?;
        Ok(())
    }
}

/// What a subnet's hotkeys need, beyond being registered, to call as members
/// (`[subnet_gates."<netuid>"]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SubnetGate {
    /// Only hotkeys holding a validator permit in that subnet.
    pub validator_permit: bool,
    /// Only hotkeys whose `total_stake` in that subnet is at least this, rao.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_stake_rao: Option<u64>,
    /// The account that pays for every implicit member's usage (a sponsor); unset: each
    /// member's own hotkey account (prepaid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bill_to: Option<String>,
    /// The plan of an implicit member's own limits; unset: the built-in `subnet` plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// Checks `[subnet_gates]` keys (netuids); the plans and sponsors they name are checked with
/// the plans (`quota::plans::Plans::from_config`), which know the plan names.
pub(super) fn validate_gates(gates: &BTreeMap<String, SubnetGate>) -> Result<(), (String, String)> {
    for key in gates.keys() {
        key.parse::<u16>().map_err(|_| {
            (
                format!("subnet_gates.{key}"),
                "keys are netuids (0 to 65535)".to_string(),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(toml: &str) -> Result<Config, String> {
        Config::from_toml_str(toml).map_err(|e| e.to_string())
    }

    #[test]
    fn no_chain_section_means_chain_features_off() {
        let c = load("").unwrap();
        assert!(c.chain.is_none());
        assert!(c.subnet_gates.is_empty());
    }

    #[test]
    fn a_chain_section_parses_with_defaults_and_syncs_the_mapped_subnets() {
        let c = load(
            r#"
            [chain]
            endpoints = ["https://entrypoint-finney.opentensor.ai"]
            deposit_address = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
            [subnets]
            "12" = "subnet"
            "3" = "subnet"
            [subnet_gates."12"]
            validator_permit = true
            min_stake_rao = 1000
            bill_to = "sn12-owner"
            "#,
        )
        .unwrap();
        let chain = c.chain.as_ref().unwrap();
        assert_eq!(chain.metagraph_secs, 60);
        assert_eq!(chain.requests_per_second, 1);
        assert_eq!(chain.deposit_poll_secs, 6);
        assert_eq!(chain.synced_netuids(&c.subnets), vec![3, 12]);
        let g = &c.subnet_gates["12"];
        assert!(g.validator_permit);
        assert_eq!(g.min_stake_rao, Some(1000));
        // The redacted rendering parses back to the same configuration.
        assert_eq!(load(&c.to_redacted_toml()).unwrap(), c);
    }

    #[test]
    fn bad_chain_settings_name_their_field() {
        for (toml, field) in [
            ("[chain]\n", "chain.endpoints"),
            ("[chain]\nendpoints = [\"ws://x\"]\n", "chain.endpoints[0]"),
            (
                "[chain]\nendpoints = [\"http://x\"]\ndeposit_address = \"5abc\"\n",
                "chain.deposit_address",
            ),
            (
                "[chain]\nendpoints = [\"http://x\"]\nmetagraph_secs = 60\nmax_age_secs = 30\n",
                "chain.max_age_secs",
            ),
            (
                "[chain]\nendpoints = [\"http://x\"]\nrequests_per_second = 0\n",
                "chain.requests_per_second",
            ),
            (
                "[subnet_gates.x]\nvalidator_permit = true\n",
                "subnet_gates.x",
            ),
        ] {
            let e = load(toml).unwrap_err();
            assert!(e.contains(field), "{toml:?}: {e}");
        }
        assert!(load("[chain]\nendpoints = [\"http://x\"]\nnope = 1\n").is_err());
    }
}
