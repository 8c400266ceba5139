//! The memory backend's ledger: the rules of `admit_v4.lua` / `settle_v4.lua` for money, in
//! Rust, for a single process. Hold expiry and done-marks are timed on the backend clock's
//! monotonic milliseconds, the days and `finished_at` of expired holds on its wall time.
//!
//! Books are sharded by account. An admission locks its account's book, then the limiter's
//! shards (never the other way round), so the balance check, the hold and the quota
//! consumption happen all or nothing, like the script. Balances stay in the key-value part of
//! the store (credits write them there); a balance only grows outside the book lock (a
//! credit) or shrinks by at most the hold it replaces (a settlement), so a check made under the
//! lock stays true.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::MemoryStore;
use crate::store::ledger::{
    AccountBooks, Admission, BillMode, Charge, DayRollup, Ending, Hold, LedgerPolicy,
    LedgerSnapshot, Peek, Recorded, Rollup, Settled, UsageEntry, credit_amount,
};
use crate::store::{Limit, ScopeSpec, keys};

const SHARDS: usize = 16;

struct LiveHold {
    amount: u64,
    expires_ms: u64,
    input_tokens: u64,
    output_tokens: u64,
    netuid: Option<u16>,
    expiry_event: String,
}

#[derive(Default)]
struct Book {
    held: i64,
    holds: HashMap<String, LiveHold>,
    /// Settled (or expired) request ids with the mark's expiry (clock ms).
    done: HashMap<String, u64>,
    /// `done` is pruned of expired marks when it reaches this size (amortised O(1) per
    /// settlement, like the key-value shards' sweep), not on every call.
    done_prune_at: usize,
    debits_total: i64,
    debits_by_month: BTreeMap<String, i64>,
}

#[derive(Default)]
struct Shard {
    books: HashMap<String, Book>,
    /// Rollups by full tag, then day.
    rollups: HashMap<String, BTreeMap<String, Rollup>>,
    /// Callers by day (the `{stats}` tag's shard only).
    callers: HashMap<String, HashSet<String>>,
    /// Events by month, then account: (sequence, event json).
    events: BTreeMap<String, BTreeMap<String, Vec<(u64, String)>>>,
}

/// All books of one memory store family.
pub(super) struct LedgerTable {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    seq: AtomicU64,
}

impl LedgerTable {
    pub(super) fn new() -> Self {
        LedgerTable {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            seq: AtomicU64::new(0),
        }
    }

    fn index(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        self.shards[self.index(key)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` and `YYYY-MM-DD` of a unix-ms instant (UTC).
pub(crate) fn rfc3339_and_day(ms: u64) -> (String, String) {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (y, m, d) = (t.year(), u8::from(t.month()), t.day());
    (
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        format!("{y:04}-{m:02}-{d:02}"),
    )
}

impl MemoryStore {
    fn acct_tag(&self, account: &str) -> String {
        self.prefixed(&keys::account_tag(account))
    }

    fn prefixed(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.key_prefix().len() + key.len());
        k.push_str(self.key_prefix());
        k.push_str(key);
        k
    }

    fn bal_of(&self, account: &str) -> i64 {
        self.get(&keys::balance(account))
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
            .unwrap_or(0)
    }

    /// Appends one event and what derives from it (see `ledger_lib_v3.lua`'s `book` and `write_books`).
    /// `shard` is the account's shard, already locked by the caller: a subnet or stats tag
    /// that hashes to the same shard is updated through it (locking it again would deadlock).
    fn record(&self, book: &mut Book, shard: &mut Shard, c: &Charge) {
        let month = c.day.get(..7).unwrap_or("").to_string();
        let cost = i64::try_from(c.cost_rao).unwrap_or(i64::MAX);
        if !c.anonymous {
            book.debits_total = book.debits_total.saturating_add(cost);
            *book.debits_by_month.entry(month.clone()).or_default() += cost;
            // The balance key cannot fail to take a decrement it parsed before; a corrupt one
            // is left for the reconciliation to report.
            let _ = self.incr_by(&keys::balance(&c.account), -cost, None);
        }
        let seq = self.data().ledger.seq.fetch_add(1, Ordering::Relaxed);
        shard
            .events
            .entry(month)
            .or_default()
            .entry(c.account.clone())
            .or_default()
            .push((seq, c.event.clone()));
        let add = |r: &mut Rollup| {
            r.requests += 1;
            r.input_tokens = r.input_tokens.saturating_add(c.input_tokens);
            r.output_tokens = r.output_tokens.saturating_add(c.output_tokens);
            r.rao = r.rao.saturating_add(c.cost_rao);
        };
        if !c.anonymous {
            let own = self.acct_tag(&c.account);
            add(shard
                .rollups
                .entry(own)
                .or_default()
                .entry(c.day.clone())
                .or_default());
        }
        let stats = self.prefixed(keys::STATS_TAG);
        let mut others = vec![stats.clone()];
        if let Some(n) = c.netuid {
            others.push(self.prefixed(&keys::subnet_tag(n)));
        }
        let table = &self.data().ledger;
        let own_index = table.index(&self.acct_tag(&c.account));
        for tag in others {
            let mut other;
            let s: &mut Shard = if table.index(&tag) == own_index {
                &mut *shard
            } else {
                other = table.shard(&tag);
                &mut other
            };
            add(s
                .rollups
                .entry(tag.clone())
                .or_default()
                .entry(c.day.clone())
                .or_default());
            if tag == stats {
                s.callers
                    .entry(c.day.clone())
                    .or_default()
                    .insert(c.account.clone());
            }
        }
    }

    fn sweep(&self, account: &str, book: &mut Book, shard: &mut Shard, policy: &LedgerPolicy) {
        let now = self.clock().ms();
        if book.done.len() >= book.done_prune_at {
            book.done.retain(|_, exp| *exp > now);
            book.done_prune_at = (book.done.len() * 2).max(1024);
        }
        let expired: Vec<String> = book
            .holds
            .iter()
            .filter(|(_, h)| h.expires_ms <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for rid in expired {
            let Some(h) = book.holds.remove(&rid) else {
                continue;
            };
            book.held -= i64::try_from(h.amount).unwrap_or(i64::MAX);
            if book.done.get(&rid).is_some_and(|exp| *exp > now) {
                continue;
            }
            book.done
                .insert(rid, now.saturating_add(policy.done_ttl_secs * 1000));
            let cost = if policy.charge_expired { h.amount } else { 0 };
            let (finished, day) = rfc3339_and_day(self.clock().wall_ms());
            let event = h
                .expiry_event
                .replacen("\"__COST__\"", &cost.to_string(), 1)
                .replacen("__FINISHED__", &finished, 1);
            let c = Charge {
                account: account.to_string(),
                cost_rao: cost,
                input_tokens: h.input_tokens,
                output_tokens: h.output_tokens,
                netuid: h.netuid,
                day,
                event,
                anonymous: false,
                held: true,
            };
            self.record(book, shard, &c);
        }
    }

    /// Runs `f` on `account`'s book (expired holds swept first) with its shard locked.
    fn with_book<T>(
        &self,
        account: &str,
        policy: &LedgerPolicy,
        f: impl FnOnce(&mut Book, &mut Shard) -> T,
    ) -> T {
        let tag = self.acct_tag(account);
        let mut shard = self.data().ledger.shard(&tag);
        let shard = &mut *shard;
        let mut book = shard.books.remove(&tag).unwrap_or_default();
        self.sweep(account, &mut book, shard, policy);
        let out = f(&mut book, shard);
        shard.books.insert(tag, book);
        out
    }

    pub(in crate::store) fn admit(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        tokens: u64,
        lease_ms: u64,
        hold: Option<&Hold<'_>>,
        policy: &LedgerPolicy,
    ) -> Admission {
        let Some(h) = hold else {
            return Admission {
                decision: self.quota_admit(scopes, request_id, tokens, lease_ms, true),
                balance_rao: 0,
                held_rao: 0,
            };
        };
        self.with_book(h.account, policy, |book, _| {
            let balance = self.bal_of(h.account);
            let amount = i64::try_from(h.amount_rao).unwrap_or(i64::MAX);
            let fits = match h.mode {
                BillMode::None => true,
                BillMode::Prepaid => balance.saturating_sub(book.held) >= amount,
                BillMode::Postpaid => {
                    balance.saturating_sub(amount)
                        >= -i64::try_from(h.credit_limit_rao).unwrap_or(i64::MAX)
                }
            };
            let decision = if fits {
                let d = self.quota_admit(scopes, request_id, tokens, lease_ms, true);
                if d.refused.is_none() && h.mode == BillMode::Prepaid {
                    book.held += amount;
                    book.holds.insert(
                        request_id.to_string(),
                        LiveHold {
                            amount: h.amount_rao,
                            expires_ms: self.clock().ms().saturating_add(policy.hold_ttl_ms),
                            input_tokens: h.input_tokens,
                            output_tokens: h.output_tokens,
                            netuid: h.netuid,
                            expiry_event: h.expiry_event.to_string(),
                        },
                    );
                }
                d
            } else {
                let mut d = self.quota_admit(scopes, request_id, tokens, lease_ms, false);
                d.refused = Some((
                    scopes.len().saturating_sub(1),
                    Limit::Balance,
                    std::time::Duration::ZERO,
                ));
                d
            };
            Admission {
                decision,
                balance_rao: balance,
                held_rao: book.held,
            }
        })
    }

    pub(in crate::store) fn peek(
        &self,
        scopes: &[ScopeSpec],
        account: Option<&str>,
        policy: &LedgerPolicy,
    ) -> Peek {
        let scopes = self.quota_admit(scopes, "", 0, 1, false).scopes;
        let Some(a) = account else {
            return Peek {
                scopes,
                balance_rao: 0,
                held_rao: 0,
            };
        };
        let held = self.with_book(a, policy, |book, _| book.held);
        Peek {
            scopes,
            balance_rao: self.bal_of(a),
            held_rao: held,
        }
    }

    pub(in crate::store) fn settle(&self, end: Ending<'_>, policy: &LedgerPolicy) -> Settled {
        let Ending {
            scopes,
            request_id,
            tokens_back,
            request_back,
            charge,
        } = end;
        let leases_removed = self.quota_settle(scopes, request_id, tokens_back, request_back) > 0;
        let Some(c) = charge else {
            return Settled {
                leases_removed,
                recorded: Recorded::NotAsked,
            };
        };
        let recorded = self.with_book(&c.account, policy, |book, shard| {
            let now = self.clock().ms();
            if book.done.get(request_id).is_some_and(|exp| *exp > now) {
                Recorded::Before
            } else {
                book.done.insert(
                    request_id.to_string(),
                    now.saturating_add(policy.done_ttl_secs * 1000),
                );
                if let Some(h) = book.holds.remove(request_id) {
                    book.held -= i64::try_from(h.amount).unwrap_or(i64::MAX);
                }
                self.record(book, shard, c);
                Recorded::Now
            }
        });
        Settled {
            leases_removed,
            recorded,
        }
    }

    pub(in crate::store) fn renew(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        lease_ms: u64,
        account: Option<&str>,
        policy: &LedgerPolicy,
    ) {
        self.quota_renew(scopes, request_id, lease_ms);
        if let Some(a) = account {
            let tag = self.acct_tag(a);
            let mut shard = self.data().ledger.shard(&tag);
            if let Some(h) = shard
                .books
                .get_mut(&tag)
                .and_then(|b| b.holds.get_mut(request_id))
            {
                h.expires_ms = self.clock().ms().saturating_add(policy.hold_ttl_ms);
            }
        }
    }

    pub(in crate::store) fn rollups(
        &self,
        tag: &str,
        days: &[String],
        callers: bool,
    ) -> Vec<DayRollup> {
        let full = self.prefixed(tag);
        let shard = self.data().ledger.shard(&full);
        days.iter()
            .map(|d| {
                let r = shard
                    .rollups
                    .get(&full)
                    .and_then(|m| m.get(d))
                    .copied()
                    .unwrap_or_default();
                let callers = if callers {
                    shard.callers.get(d).map_or(0, |s| s.len() as u64)
                } else {
                    0
                };
                DayRollup { rollup: r, callers }
            })
            .collect()
    }

    /// Events of every shard are merged by their sequence number, which is the recording order;
    /// the cursor is that number.
    pub(in crate::store) fn usage_accounts(&self, month: &str) -> Vec<String> {
        let mut out = Vec::new();
        for s in self.data().ledger.shards.iter() {
            let s = s.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(m) = s.events.get(month) {
                out.extend(m.keys().cloned());
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    pub(in crate::store) fn usage_events(
        &self,
        month: &str,
        account: &str,
        cursor: Option<&str>,
        count: usize,
    ) -> Vec<UsageEntry> {
        let after = cursor.and_then(|c| c.parse::<u64>().ok());
        let mut all = Vec::new();
        for s in self.data().ledger.shards.iter() {
            let s = s.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(v) = s.events.get(month).and_then(|m| m.get(account)) {
                all.extend(
                    v.iter()
                        .filter(|(seq, _)| after.is_none_or(|a| *seq > a))
                        .cloned(),
                );
            }
        }
        all.sort_unstable_by_key(|(seq, _)| *seq);
        all.truncate(count);
        all.into_iter()
            .map(|(seq, json)| UsageEntry {
                cursor: seq.to_string(),
                json,
            })
            .collect()
    }

    pub(in crate::store) fn ledger_snapshot(&self) -> LedgerSnapshot {
        let mut snap = LedgerSnapshot::default();
        let mut ids = Vec::new();
        for s in self.data().ledger.shards.iter() {
            let s = s.lock().unwrap_or_else(PoisonError::into_inner);
            for (tag, b) in &s.books {
                let Some(id) = tag
                    .strip_prefix(self.key_prefix())
                    .and_then(keys::account_of_tag)
                else {
                    continue;
                };
                ids.push(id.to_string());
                snap.accounts.insert(
                    id.to_string(),
                    AccountBooks {
                        held_rao: b.held,
                        holds_sum_rao: b
                            .holds
                            .values()
                            .map(|h| i64::try_from(h.amount).unwrap_or(i64::MAX))
                            .sum(),
                        debits_total_rao: b.debits_total,
                        debits_by_month: b.debits_by_month.clone(),
                        ..AccountBooks::default()
                    },
                );
            }
            for (month, per_account) in &s.events {
                for (_, e) in per_account.values().flatten() {
                    snap.tally(month, e);
                }
            }
        }
        for id in self.credited_accounts() {
            snap.accounts.entry(id).or_default();
        }
        for (id, b) in snap.accounts.iter_mut() {
            b.balance_rao = self.bal_of(id);
            let log = self.get(&keys::credit_log(id)).unwrap_or_default();
            for line in String::from_utf8_lossy(&log).lines() {
                match credit_amount(line) {
                    Some(a) => b.credits_rao += a,
                    None => b.bad_credit_lines += 1,
                }
            }
        }
        snap
    }
}
