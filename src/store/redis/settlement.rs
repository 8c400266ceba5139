//! Settlement and renewal on Redis, in batches: `settle_v4.lua` and `renew_v4.lua` (each with
//! `ledger_lib_v3.lua`), one call per hash tag per batch, so every call stays on one Redis
//! Cluster slot and a busy account's many settlements cost one script run.
//!
//! A batch of endings is split by tag in two phases:
//! 1. every account tag at once: the leases of the caller's own scope, and the money of the
//!    account billed there (the done-mark per request id, the hold, the debit, the events,
//!    the account's rollup);
//! 2. then every shared tag at once: the subnet's or public tier's leases.
//!
//! The subnet and `{stats}` rollups of what phase 1 recorded *now* (never of a repeat, so a
//! journal replay counts nothing twice), and of expired holds swept meanwhile, are gathered in
//! memory and written at most once a second, one call per tag
//! ([`ROLLUP_EVERY`](crate::store::ROLLUP_EVERY)), with the
//! phase 2 of the batch that finds them due or by [`RedisStore::flush_rollups`].
//!
//! An ending whose phase-1 call failed comes back as an error, for the journal; replaying it
//! is a no-op where it had already landed (the lease is gone, the done-mark is set).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use ::redis::Value;

use super::RedisStore;
use super::reply::Fields;
use crate::store::ledger::{Charge, Ending, LedgerPolicy, Recorded, Renewal, Settled};
use crate::store::quota::ScopeSpec;
use crate::store::{StoreError, keys};

static SETTLE: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(concat!(
        include_str!("ledger_lib_v3.lua"),
        include_str!("settle_v4.lua")
    ))
});

static RENEW: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(concat!(
        include_str!("ledger_lib_v3.lua"),
        include_str!("renew_v4.lua")
    ))
});

/// An expired hold swept into a usage event, waiting for its subnet and `{stats}` rollups.
#[derive(Debug, Clone)]
pub(super) struct Swept {
    account: String,
    netuid: Option<u16>,
    day: String,
    cost_rao: u64,
    input_tokens: u64,
    output_tokens: u64,
}

/// Rollups of shared tags not written yet.
#[derive(Debug, Default)]
pub(super) struct PendingRollups {
    /// Tag → day → (requests, input, output, rao).
    rollups: BTreeMap<String, BTreeMap<String, [u64; 4]>>,
    /// (day, caller) for `{stats}:callers:<day>`.
    callers: std::collections::BTreeSet<(String, String)>,
    /// When the oldest of them was gathered.
    since: Option<std::time::Instant>,
}

impl PendingRollups {
    fn add(&mut self, netuid: Option<u16>, account: &str, day: &str, t: [u64; 3]) {
        let [i, o, r] = t;
        if let Some(n) = netuid {
            let tag = self.rollups.entry(keys::subnet_tag(n)).or_default();
            add(tag.entry(day.to_string()).or_default(), i, o, r);
        }
        let stats = self.rollups.entry(keys::STATS_TAG.to_string()).or_default();
        add(stats.entry(day.to_string()).or_default(), i, o, r);
        self.callers.insert((day.to_string(), account.to_string()));
        self.since.get_or_insert_with(std::time::Instant::now);
    }

    fn due(&self) -> bool {
        self.since
            .is_some_and(|t| t.elapsed() >= crate::store::ROLLUP_EVERY)
    }
}

/// One tag's share of a batch.
#[derive(Default)]
struct Slot<'a> {
    /// The scope whose leases are released here (its capacities bound the give-back).
    scope: Option<&'a ScopeSpec>,
    /// (ending, request id, tokens back, request back)
    releases: Vec<(usize, &'a str, i64, bool)>,
    /// The account whose money is settled here, and (ending, charge).
    account: Option<&'a str>,
    /// (ending, request id, charge)
    money: Vec<(usize, &'a str, &'a Charge)>,
    /// Day → (requests, input, output, rao), and (day, caller) for `{stats}`.
    rollups: BTreeMap<String, [u64; 4]>,
    callers: Vec<(String, String)>,
}

/// What one slot call answered.
struct SlotReply {
    removed: Vec<bool>,
    recorded: Vec<bool>,
}

/// The scripts' `swept` answer (flat netuid or '', day, cost, input, output) of `account`.
fn parse_swept(account: &str, swept: Value) -> Result<Vec<Swept>, StoreError> {
    let flat: Vec<String> = ::redis::from_redis_value(swept)
        .map_err(|e| StoreError::Protocol(format!("swept holds: {e}")))?;
    if !flat.len().is_multiple_of(5) {
        return Err(StoreError::Protocol(
            "swept holds: not in fives".to_string(),
        ));
    }
    let num = |s: &str| s.parse::<u64>().unwrap_or(0);
    Ok(flat
        .chunks(5)
        .map(|c| Swept {
            account: account.to_string(),
            netuid: c[0].parse().ok(),
            day: c[1].clone(),
            cost_rao: num(&c[2]),
            input_tokens: num(&c[3]),
            output_tokens: num(&c[4]),
        })
        .collect())
}

fn add(r: &mut [u64; 4], input: u64, output: u64, rao: u64) {
    r[0] += 1;
    r[1] = r[1].saturating_add(input);
    r[2] = r[2].saturating_add(output);
    r[3] = r[3].saturating_add(rao);
}

impl RedisStore {
    /// Keeps the expired holds an admission swept for the next batch's subnet and `{stats}`
    /// rollups.
    pub(super) fn defer_swept(&self, account: &str, swept: Value) -> Result<(), StoreError> {
        let swept = parse_swept(account, swept)?;
        if !swept.is_empty() {
            let mut p = self.pending();
            for s in swept {
                p.add(
                    s.netuid,
                    &s.account,
                    &s.day,
                    [s.input_tokens, s.output_tokens, s.cost_rao],
                );
            }
        }
        Ok(())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, PendingRollups> {
        self.rollups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the subnet and `{stats}` rollups gathered so far, one call per tag (at shutdown,
    /// and when the meter is idle). What cannot be written is kept for the next try unless the
    /// call timed out (it may have landed: counting it twice would be worse than once less).
    pub(in crate::store) async fn flush_rollups(&self, policy: &LedgerPolicy) {
        let mut second = BTreeMap::new();
        self.take_rollups(&mut second);
        self.send_second(second, policy).await;
    }

    /// Moves every pending rollup into `second`'s slots.
    fn take_rollups<'a>(&self, second: &mut BTreeMap<String, Slot<'a>>) {
        let PendingRollups {
            rollups, callers, ..
        } = std::mem::take(&mut *self.pending());
        for (tag, days) in rollups {
            let slot = second.entry(tag).or_default();
            slot.rollups = days;
        }
        if !callers.is_empty() {
            second
                .entry(keys::STATS_TAG.to_string())
                .or_default()
                .callers = callers.into_iter().collect();
        }
    }

    /// Runs phase 2 over `second`; returns per slot whether it landed. Rollups that failed go
    /// back to the pending ones (see [`RedisStore::flush_rollups`]).
    async fn send_second<'a>(
        &self,
        second: BTreeMap<String, Slot<'a>>,
        policy: &LedgerPolicy,
    ) -> Vec<(Slot<'a>, Result<SlotReply, StoreError>)> {
        let replies = futures_util::future::join_all(
            second
                .iter()
                .map(|(tag, slot)| self.settle_slot(tag, slot, policy)),
        )
        .await;
        let mut out = Vec::with_capacity(replies.len());
        for ((tag, slot), reply) in second.into_iter().zip(replies) {
            let reply = reply.map(|(r, _)| r);
            if let Err(e) = &reply
                && !(slot.rollups.is_empty() && slot.callers.is_empty())
            {
                if matches!(e, StoreError::Timeout) {
                    tracing::warn!(error = %e, %tag, "rollups of settlements may be lost");
                } else {
                    let mut p = self.pending();
                    let days = p.rollups.entry(tag.clone()).or_default();
                    for (day, r) in &slot.rollups {
                        let d = days.entry(day.clone()).or_default();
                        for k in 0..4 {
                            d[k] = d[k].saturating_add(r[k]);
                        }
                    }
                    p.callers.extend(slot.callers.iter().cloned());
                    p.since.get_or_insert_with(std::time::Instant::now);
                }
            }
            out.push((slot, reply));
        }
        out
    }

    pub(in crate::store) async fn settle_many(
        &self,
        ends: &[Ending<'_>],
        policy: &LedgerPolicy,
    ) -> Vec<Result<Settled, StoreError>> {
        let mut removed = vec![false; ends.len()];
        let mut recorded: Vec<Recorded> = ends
            .iter()
            .map(|e| {
                if e.charge.is_some() {
                    Recorded::Before
                } else {
                    Recorded::NotAsked
                }
            })
            .collect();
        let mut failed: Vec<Option<StoreError>> = (0..ends.len()).map(|_| None).collect();

        // Phase 1: the account tags.
        let mut first: BTreeMap<String, Slot<'_>> = BTreeMap::new();
        let mut second: BTreeMap<String, Slot<'_>> = BTreeMap::new();
        for (i, e) in ends.iter().enumerate() {
            for sc in e.scopes {
                let phase = if keys::account_of_tag(&sc.tag).is_some() {
                    &mut first
                } else {
                    &mut second
                };
                let slot = phase.entry(sc.tag.clone()).or_default();
                slot.scope.get_or_insert(sc);
                slot.releases
                    .push((i, e.request_id, e.tokens_back, e.request_back));
            }
            if let Some(c) = e.charge {
                let slot = first.entry(keys::account_tag(&c.account)).or_default();
                slot.account = Some(&c.account);
                slot.money.push((i, e.request_id, c));
            }
        }
        let replies = futures_util::future::join_all(
            first
                .iter()
                .map(|(tag, slot)| self.settle_slot(tag, slot, policy)),
        )
        .await;
        let mut swept = Vec::new();
        for (slot, reply) in first.values().zip(replies) {
            match reply {
                Ok((r, more)) => {
                    for (k, (i, ..)) in slot.releases.iter().enumerate() {
                        removed[*i] |= r.removed.get(k).copied().unwrap_or(false);
                    }
                    for (k, (i, ..)) in slot.money.iter().enumerate() {
                        if r.recorded.get(k).copied().unwrap_or(false) {
                            recorded[*i] = Recorded::Now;
                        }
                    }
                    swept.extend(more);
                }
                Err(e) => {
                    for i in slot
                        .releases
                        .iter()
                        .map(|r| r.0)
                        .chain(slot.money.iter().map(|m| m.0))
                    {
                        failed[i] = Some(e.clone());
                    }
                }
            }
        }

        // The rollups of what was recorded now wait in memory until due.
        let due = {
            let mut p = self.pending();
            for (e, rec) in ends.iter().zip(&recorded) {
                if let (Some(c), Recorded::Now) = (e.charge, rec) {
                    p.add(
                        c.netuid,
                        &c.account,
                        &c.day,
                        [c.input_tokens, c.output_tokens, c.cost_rao],
                    );
                }
            }
            for s in &swept {
                p.add(
                    s.netuid,
                    &s.account,
                    &s.day,
                    [s.input_tokens, s.output_tokens, s.cost_rao],
                );
            }
            p.due()
        };
        if due {
            self.take_rollups(&mut second);
        }

        // Phase 2: the shared tags.
        for (slot, reply) in self.send_second(second, policy).await {
            match reply {
                Ok(r) => {
                    for (k, (i, ..)) in slot.releases.iter().enumerate() {
                        removed[*i] |= r.removed.get(k).copied().unwrap_or(false);
                    }
                }
                Err(e) => {
                    // The money is settled; the shared leases expire on their own, and a
                    // replay of the release is harmless, so the ending goes to the journal.
                    for (i, ..) in &slot.releases {
                        failed[*i].get_or_insert(e.clone());
                    }
                }
            }
        }

        failed
            .into_iter()
            .zip(removed.into_iter().zip(recorded))
            .map(|(f, (leases_removed, recorded))| match f {
                Some(e) => Err(e),
                None => Ok(Settled {
                    leases_removed,
                    recorded,
                }),
            })
            .collect()
    }

    /// Runs `settle_v4` for one tag's share of a batch; also returns the holds it swept.
    async fn settle_slot(
        &self,
        tag: &str,
        slot: &Slot<'_>,
        policy: &LedgerPolicy,
    ) -> Result<(SlotReply, Vec<Swept>), StoreError> {
        let mut inv = SETTLE.prepare_invoke();
        match slot.scope {
            Some(sc) => {
                for k in sc.keys() {
                    inv.key(self.full_key(&k));
                }
            }
            None => {
                inv.key(self.full_key(&keys::rollup(tag, "")));
            }
        }
        let caps = slot.scope.map_or([0; 4], ScopeSpec::caps);
        let releases = if slot.scope.is_some() {
            slot.releases.len()
        } else {
            0
        };
        inv.arg(&*self.prefix)
            .arg(slot.account.unwrap_or(""))
            .arg(policy.done_ttl_secs)
            .arg(policy.retention_secs)
            .arg(policy.expired_policy());
        for c in caps {
            inv.arg(c);
        }
        let rollup_tag = if slot.rollups.is_empty() { "" } else { tag };
        inv.arg(releases)
            .arg(slot.money.len())
            .arg(slot.rollups.len())
            .arg(rollup_tag)
            .arg(slot.callers.len());
        for (_, id, tokens, whole) in &slot.releases {
            inv.arg(*id).arg(*tokens).arg(u8::from(*whole));
        }
        for (_, id, c) in &slot.money {
            inv.arg(*id)
                .arg(c.cost_rao)
                .arg(c.input_tokens)
                .arg(c.output_tokens)
                .arg(&c.day)
                .arg(if c.anonymous {
                    "1"
                } else if c.held {
                    "0"
                } else {
                    "2"
                })
                .arg(&c.event);
        }
        for (day, r) in &slot.rollups {
            inv.arg(day).arg(r[0]).arg(r[1]).arg(r[2]).arg(r[3]);
        }
        for (day, who) in &slot.callers {
            inv.arg(day).arg(who);
        }
        let reply = self.invoke("quota_settle", &inv).await?;
        let mut f = Fields::new("settle", reply)?;
        let removed: Vec<i64> = f.get("removed")?;
        let recorded: Vec<String> = f.get("recorded")?;
        let swept_raw = f.take("swept")?;
        f.finish()?;
        if removed.len() != releases || recorded.len() != slot.money.len() {
            return Err(StoreError::Protocol(format!(
                "settle script reply: {} releases and {} money entries for {releases} and {}",
                removed.len(),
                recorded.len(),
                slot.money.len()
            )));
        }
        let recorded = recorded
            .iter()
            .map(|r| match r.as_str() {
                "now" => Ok(true),
                "before" => Ok(false),
                other => Err(StoreError::Protocol(format!(
                    "settle script reply: unknown `recorded` value `{other}`"
                ))),
            })
            .collect::<Result<_, _>>()?;
        let more = parse_swept(slot.account.unwrap_or(""), swept_raw)?;
        Ok((
            SlotReply {
                removed: removed.into_iter().map(|n| n == 1).collect(),
                recorded,
            },
            more,
        ))
    }

    pub(in crate::store) async fn renew_many(
        &self,
        leases: &[Renewal<'_>],
        lease_ms: u64,
        policy: &LedgerPolicy,
    ) -> Result<(), StoreError> {
        // Per tag: the scope (for its lease set), the leases, the account's holds.
        #[derive(Default)]
        struct Group<'a> {
            scope: Option<&'a ScopeSpec>,
            leases: Vec<&'a str>,
            account: Option<&'a str>,
            holds: Vec<&'a str>,
        }
        let mut groups: BTreeMap<String, Group<'_>> = BTreeMap::new();
        for r in leases {
            for sc in r.scopes {
                let g = groups.entry(sc.tag.clone()).or_default();
                g.scope.get_or_insert(sc);
                g.leases.push(r.request_id);
            }
            if let Some(a) = r.account {
                let g = groups.entry(keys::account_tag(a)).or_default();
                g.account = Some(a);
                g.holds.push(r.request_id);
            }
        }
        let calls = groups.values().map(|g| {
            let mut inv = RENEW.prepare_invoke();
            let with_leases = match g.scope {
                Some(sc) => {
                    inv.key(self.full_key(&sc.keys()[1]));
                    true
                }
                None => {
                    inv.key(self.full_key(&keys::holdexp(g.account.unwrap_or(""))));
                    false
                }
            };
            inv.arg(lease_ms)
                .arg(policy.hold_ttl_ms)
                .arg(&*self.prefix)
                .arg(g.account.unwrap_or(""))
                .arg(u8::from(with_leases))
                .arg(if with_leases { g.leases.len() } else { 0 })
                .arg(g.holds.len());
            if with_leases {
                for id in &g.leases {
                    inv.arg(*id);
                }
            }
            for id in &g.holds {
                inv.arg(*id);
            }
            async move {
                let mut f = Fields::new("renew", self.invoke("quota_renew", &inv).await?)?;
                // How many leases were still there is not needed: a lease that expired is the
                // settlement's concern, not the renewer's.
                f.count("renewed")?;
                f.finish()
            }
        });
        for r in futures_util::future::join_all(calls).await {
            r?;
        }
        Ok(())
    }
}
