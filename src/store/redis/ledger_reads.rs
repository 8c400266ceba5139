//! The ledger's reads on Redis: daily rollups, the month's usage events and the snapshot the
//! reconciliation compares. Plain commands in pipelines; nothing here changes money.

use std::collections::BTreeSet;

use super::RedisStore;
use crate::store::ledger::{
    AccountBooks, DayRollup, LedgerSnapshot, Rollup, UsageEntry, credit_amount,
};
use crate::store::{StoreError, keys};

/// Usage events read per `XRANGE` while taking the snapshot.
const SNAPSHOT_PAGE: usize = 1000;

impl RedisStore {
    pub(in crate::store) async fn rollups(
        &self,
        tag: &str,
        days: &[String],
        callers: bool,
    ) -> Result<Vec<DayRollup>, StoreError> {
        let mut pipe = ::redis::pipe();
        for d in days {
            pipe.cmd("HGETALL")
                .arg(self.full_key(&keys::rollup(tag, d)));
            if callers {
                pipe.cmd("SCARD").arg(self.full_key(&keys::callers(d)));
            }
        }
        let v: Vec<::redis::Value> = self.pipeline("rollups", &pipe).await?;
        let step = if callers { 2 } else { 1 };
        let mut out = Vec::with_capacity(days.len());
        for c in v.chunks(step) {
            let pairs: Vec<(String, String)> = ::redis::from_redis_value_ref(&c[0])
                .map_err(|e| StoreError::Protocol(format!("rollup: {e}")))?;
            let callers: u64 = if callers {
                ::redis::from_redis_value_ref(&c[1])
                    .map_err(|e| StoreError::Protocol(format!("rollup: {e}")))?
            } else {
                0
            };
            out.push(DayRollup {
                rollup: Rollup::from_pairs(&pairs),
                callers,
            });
        }
        Ok(out)
    }

    pub(in crate::store) async fn usage_accounts(
        &self,
        month: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = self
            .scan(&keys::events_pattern(month))
            .await?
            .iter()
            .filter_map(|k| keys::events_of(k).map(|(id, _)| id.to_string()))
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    pub(in crate::store) async fn usage_events(
        &self,
        month: &str,
        account: &str,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<Vec<UsageEntry>, StoreError> {
        let start = cursor.map_or_else(|| "-".to_string(), |c| format!("({c}"));
        // Each entry holds every event one settlement batch wrote for the account: `a` the
        // account, then `e` per event (repeated fields, so read raw rather than as a map).
        let reply: Vec<(String, Vec<Vec<u8>>)> = self
            .query(
                "usage_events",
                ::redis::cmd("XRANGE")
                    .arg(self.full_key(&keys::events(account, month)))
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        let mut out = Vec::new();
        for (id, fields) in reply {
            for pair in fields.chunks(2) {
                if let [name, value] = pair
                    && name.as_slice() == b"e"
                {
                    out.push(UsageEntry {
                        cursor: id.clone(),
                        json: String::from_utf8_lossy(value).into_owned(),
                    });
                }
            }
        }
        Ok(out)
    }

    pub(in crate::store) async fn ledger_snapshot(&self) -> Result<LedgerSnapshot, StoreError> {
        let mut snap = LedgerSnapshot::default();
        let mut ids = BTreeSet::new();
        for suffix in ["bal", "debits", "held", "credits"] {
            for k in self.scan(&keys::account_pattern(suffix)).await? {
                if let Some(id) = keys::account_of(&k, suffix) {
                    ids.insert(id.to_string());
                }
            }
        }
        for id in ids {
            let mut pipe = ::redis::pipe();
            pipe.cmd("GET")
                .arg(self.full_key(&keys::balance(&id)))
                .cmd("GET")
                .arg(self.full_key(&keys::held(&id)))
                .cmd("HVALS")
                .arg(self.full_key(&keys::holds(&id)))
                .cmd("LRANGE")
                .arg(self.full_key(&keys::credit_log(&id)))
                .arg(0)
                .arg(-1)
                .cmd("HGETALL")
                .arg(self.full_key(&keys::debits(&id)));
            #[allow(clippy::type_complexity)]
            let (bal, held, holds, credits, debits): (
                Option<i64>,
                Option<i64>,
                Vec<String>,
                Vec<String>,
                Vec<(String, i64)>,
            ) = self.pipeline("ledger_read", &pipe).await?;
            let mut b = AccountBooks {
                balance_rao: bal.unwrap_or(0),
                held_rao: held.unwrap_or(0),
                ..Default::default()
            };
            for h in holds {
                b.holds_sum_rao += h
                    .split(' ')
                    .next()
                    .and_then(|a| a.parse::<i64>().ok())
                    .unwrap_or(0);
            }
            for line in credits {
                match credit_amount(&line) {
                    Some(a) => b.credits_rao += a,
                    None => b.bad_credit_lines += 1,
                }
            }
            for (field, v) in debits {
                if field == "total" {
                    b.debits_total_rao = v;
                } else {
                    b.debits_by_month.insert(field, v);
                }
            }
            snap.accounts.insert(id, b);
        }
        for stream in self.scan(keys::EVENTS_PATTERN).await? {
            let Some((account, month)) = keys::events_of(&stream) else {
                continue;
            };
            let mut cursor: Option<String> = None;
            loop {
                let batch = self
                    .usage_events(month, account, cursor.as_deref(), SNAPSHOT_PAGE)
                    .await?;
                let Some(last) = batch.last() else { break };
                cursor = Some(last.cursor.clone());
                for e in &batch {
                    snap.tally(month, &e.json);
                }
            }
        }
        Ok(snap)
    }
}
