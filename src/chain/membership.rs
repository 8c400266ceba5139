//! Subnet membership as the metagraph shows it, and what it grants a caller without an
//! account record.
//!
//! The sync task ([`super::metagraph`]) publishes one [`SubnetSnapshot`] per synced subnet,
//! each read at a finalized block; the request path only reads them (one atomic load, one hash
//! lookup per synced subnet). A hotkey found in a subnet mapped in `[subnets]` counts against
//! that subnet's aggregate and calls on the subnet plan, unless an admin record exists (the
//! record wins). A subnet with a gate (`[subnet_gates."<netuid>"]`) fails closed: its members
//! are refused while its snapshot is older than `chain.max_age_secs`, since the permit or the
//! stake the gate asks for may have changed since.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::SubnetGate;

/// One hotkey's place in one subnet, at the snapshot's block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The subnet.
    pub netuid: u16,
    /// Its uid there.
    pub uid: u16,
    /// Whether it holds a validator permit.
    pub validator_permit: bool,
    /// Inherited alpha stake, rao.
    pub alpha_stake: u64,
    /// Root TAO stake, rao.
    pub tao_stake: u64,
    /// `alpha + tao × TaoWeight`, rao: what `min_stake_rao` compares.
    pub total_stake: u64,
    /// The owning coldkey, SS58.
    pub coldkey: String,
}

/// One subnet's metagraph at one finalized block.
#[derive(Debug, Clone)]
pub(crate) struct SubnetSnapshot {
    /// The subnet.
    pub netuid: u16,
    /// The finalized block it was read at.
    pub block: u64,
    /// When it was read from the chain, unix milliseconds (not when this replica got it: a
    /// snapshot shared through the store keeps the time of its read).
    pub read_at_ms: u64,
    /// Hotkey (SS58) → its place.
    pub members: HashMap<String, Member>,
}

/// How one synced subnet admits its members.
#[derive(Debug, Clone)]
pub(crate) struct SubnetRule {
    /// Whether `[subnets]` maps it to an aggregate plan: only then does membership grant
    /// anything (an unmapped synced subnet is shown, not used).
    pub mapped: bool,
    /// The gate; `None` admits every registered hotkey.
    pub gate: Option<SubnetGate>,
}

impl SubnetRule {
    /// Whether a gate beyond registration applies (permit or stake).
    pub(crate) fn gated(&self) -> bool {
        self.gate
            .as_ref()
            .is_some_and(|g| g.validator_permit || g.min_stake_rao.is_some())
    }
}

/// What membership grants a hotkey that has no account record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Grant {
    /// A member of a mapped subnet that passes its gate.
    Member {
        /// The subnet whose aggregate it counts against.
        netuid: u16,
        /// Its own plan.
        plan: String,
        /// The account that pays (a sponsor), when not the hotkey itself.
        bill_to: Option<String>,
    },
    /// Not a member of any mapped subnet (as far as fresh snapshots tell): the public rules.
    None,
    /// Registered in a gated subnet whose snapshot is too old to judge the gate by.
    Unknown {
        /// That subnet.
        netuid: u16,
    },
    /// Registered in a gated subnet, and the gate says no.
    Refused {
        /// That subnet.
        netuid: u16,
        /// What is missing, for the error's detail.
        why: String,
    },
}

/// The published snapshots and the rules they are judged by.
#[derive(Debug)]
pub(crate) struct Membership {
    rules: BTreeMap<u16, SubnetRule>,
    snapshots: ArcSwap<BTreeMap<u16, Arc<SubnetSnapshot>>>,
    max_age: Duration,
}

impl Membership {
    /// No snapshot yet, for the subnets in `rules`.
    pub(crate) fn new(rules: BTreeMap<u16, SubnetRule>, max_age: Duration) -> Membership {
        Membership {
            rules,
            snapshots: ArcSwap::from_pointee(BTreeMap::new()),
            max_age,
        }
    }

    /// The synced subnets, ascending.
    pub(crate) fn netuids(&self) -> impl Iterator<Item = u16> + '_ {
        self.rules.keys().copied()
    }

    /// The synced subnets with their rules, ascending.
    pub(crate) fn rules(&self) -> impl Iterator<Item = (u16, &SubnetRule)> + '_ {
        self.rules.iter().map(|(n, r)| (*n, r))
    }

    /// The age limit a gated subnet's snapshot is held to.
    pub(crate) fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Replaces one subnet's snapshot, unless the one in place was read at a later block
    /// (two readers of the store may deliver out of order). Returns whether it was taken.
    pub(crate) fn publish(&self, snap: SubnetSnapshot) -> bool {
        let snap = Arc::new(snap);
        let mut taken = false;
        self.snapshots.rcu(|current| {
            taken = current.get(&snap.netuid).is_none_or(|old| {
                old.block < snap.block
                    || (old.block == snap.block && old.read_at_ms < snap.read_at_ms)
            });
            let mut next = BTreeMap::clone(current);
            if taken {
                next.insert(snap.netuid, Arc::clone(&snap));
            }
            next
        });
        taken
    }

    /// One subnet's snapshot, if any was published.
    pub(crate) fn snapshot(&self, netuid: u16) -> Option<Arc<SubnetSnapshot>> {
        self.snapshots.load().get(&netuid).cloned()
    }

    /// Seconds since `netuid`'s snapshot was read (`None`: never).
    pub(crate) fn age(&self, netuid: u16, now_ms: u64) -> Option<Duration> {
        self.snapshot(netuid)
            .map(|s| Duration::from_millis(now_ms.saturating_sub(s.read_at_ms)))
    }

    /// Every place the snapshots give `hotkey`, by subnet.
    pub(crate) fn places(&self, hotkey: &str) -> Vec<(Member, u64)> {
        self.snapshots
            .load()
            .values()
            .filter_map(|s| s.members.get(hotkey).map(|m| (m.clone(), s.block)))
            .collect()
    }

    /// What membership grants `hotkey`, at `now_ms`.
    ///
    /// Mapped subnets are tried in ascending netuid order; the first one the hotkey is
    /// registered in decides (a hotkey in two mapped subnets counts against the lower one).
    /// A gated subnet with a stale or missing snapshot cannot tell whether the hotkey is
    /// registered now: it refuses a hotkey its last snapshot had (`Unknown`) and, with no
    /// snapshot at all, a hotkey of no other subnet is `Unknown` too, since any hotkey might
    /// be one of its members.
    pub(crate) fn grant(&self, hotkey: &str, now_ms: u64) -> Grant {
        let snaps = self.snapshots.load();
        for (&netuid, rule) in &self.rules {
            if !rule.mapped {
                continue;
            }
            let snap = snaps.get(&netuid);
            let fresh = snap.is_some_and(|s| {
                Duration::from_millis(now_ms.saturating_sub(s.read_at_ms)) <= self.max_age
            });
            let Some(member) = snap.and_then(|s| s.members.get(hotkey)) else {
                if rule.gated() && snap.is_none() {
                    return Grant::Unknown { netuid };
                }
                continue;
            };
            let gate = rule.gate.clone().unwrap_or_default();
            if rule.gated() && !fresh {
                return Grant::Unknown { netuid };
            }
            if gate.validator_permit && !member.validator_permit {
                return Grant::Refused {
                    netuid,
                    why: format!(
                        "subnet {netuid} admits hotkeys with a validator permit only, and uid {} has none",
                        member.uid
                    ),
                };
            }
            if let Some(min) = gate.min_stake_rao
                && member.total_stake < min
            {
                return Grant::Refused {
                    netuid,
                    why: format!(
                        "subnet {netuid} admits hotkeys with a total stake of at least {min} rao, and uid {} has {}",
                        member.uid, member.total_stake
                    ),
                };
            }
            return Grant::Member {
                netuid,
                plan: gate.plan.unwrap_or_else(|| "subnet".to_string()),
                bill_to: gate.bill_to,
            };
        }
        Grant::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HK: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const OTHER: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

    fn member(netuid: u16, permit: bool, total: u64) -> Member {
        Member {
            netuid,
            uid: 7,
            validator_permit: permit,
            alpha_stake: total,
            tao_stake: 0,
            total_stake: total,
            coldkey: OTHER.into(),
        }
    }

    fn snap(netuid: u16, block: u64, read_at_ms: u64, m: Option<Member>) -> SubnetSnapshot {
        SubnetSnapshot {
            netuid,
            block,
            read_at_ms,
            members: m.into_iter().map(|m| (HK.to_string(), m)).collect(),
        }
    }

    fn rules(gate: Option<SubnetGate>) -> BTreeMap<u16, SubnetRule> {
        [(3, SubnetRule { mapped: true, gate })].into()
    }

    const AGE: Duration = Duration::from_secs(60);

    #[test]
    fn a_registered_hotkey_of_a_mapped_subnet_is_a_member_on_the_subnet_plan() {
        let m = Membership::new(rules(None), AGE);
        assert_eq!(m.grant(HK, 1_000), Grant::None, "nothing published yet");
        m.publish(snap(3, 10, 1_000, Some(member(3, false, 0))));
        let g = m.grant(HK, 2_000);
        assert_eq!(
            g,
            Grant::Member {
                netuid: 3,
                plan: "subnet".into(),
                bill_to: None
            }
        );
        assert_eq!(m.grant(OTHER, 2_000), Grant::None);
        // Ungated: an old snapshot still says who is registered.
        assert!(matches!(
            m.grant(HK, 1_000 + 10 * AGE.as_millis() as u64),
            Grant::Member { .. }
        ));
    }

    #[test]
    fn gates_refuse_and_stale_snapshots_fail_closed() {
        let gate = SubnetGate {
            validator_permit: true,
            min_stake_rao: Some(100),
            bill_to: Some("sponsor-co".into()),
            plan: None,
        };
        let m = Membership::new(rules(Some(gate)), AGE);
        assert_eq!(m.grant(OTHER, 0), Grant::Unknown { netuid: 3 });
        m.publish(snap(3, 10, 0, Some(member(3, false, 500))));
        assert!(
            matches!(m.grant(HK, 1), Grant::Refused { netuid: 3, why } if why.contains("permit"))
        );
        m.publish(snap(3, 11, 0, Some(member(3, true, 99))));
        assert!(matches!(m.grant(HK, 1), Grant::Refused { netuid: 3, why } if why.contains("99")));
        m.publish(snap(3, 12, 0, Some(member(3, true, 100))));
        assert_eq!(
            m.grant(HK, 1),
            Grant::Member {
                netuid: 3,
                plan: "subnet".into(),
                bill_to: Some("sponsor-co".into())
            }
        );
        let later = AGE.as_millis() as u64 + 1;
        assert_eq!(m.grant(HK, later), Grant::Unknown { netuid: 3 });
        assert_eq!(
            m.grant(OTHER, later),
            Grant::None,
            "not in the last snapshot"
        );
    }

    #[test]
    fn an_older_block_never_replaces_a_newer_snapshot() {
        let m = Membership::new(rules(None), AGE);
        assert!(m.publish(snap(3, 10, 5, None)));
        assert!(!m.publish(snap(3, 9, 6, None)));
        assert_eq!(m.snapshot(3).unwrap().block, 10);
        assert!(
            m.publish(snap(3, 10, 7, None)),
            "a re-read of the same block is newer"
        );
    }

    #[test]
    fn unmapped_subnets_grant_nothing() {
        let mut r = rules(None);
        r.get_mut(&3).unwrap().mapped = false;
        let m = Membership::new(r, AGE);
        m.publish(snap(3, 1, 0, Some(member(3, true, 1))));
        assert_eq!(m.grant(HK, 0), Grant::None);
        assert_eq!(m.places(HK).len(), 1);
    }
}
