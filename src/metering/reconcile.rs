//! `affine-gateway ledger reconcile`: proves, to the rao, that the ledger adds up.
//!
//! Checks, per account: Σ credits − Σ debits = balance; the held counter = Σ live holds; the
//! debits counter's total = Σ of its months; and, per retained month, Σ usage-event costs =
//! that month's debits. Money that moved without its record (or a record without its money)
//! shows up as a named discrepancy.

use std::fmt;

use crate::store::LedgerSnapshot;

/// One thing that does not add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    /// The account (or `*` for the whole ledger).
    pub account: String,
    /// What was compared.
    pub check: &'static str,
    /// What it should be.
    pub expected: i64,
    /// What it is.
    pub actual: i64,
}

impl fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: expected {} rao, found {} rao (off by {})",
            self.account,
            self.check,
            self.expected,
            self.actual,
            self.actual.saturating_sub(self.expected)
        )
    }
}

/// The reconciliation's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Accounts checked.
    pub accounts: usize,
    /// Months of events checked.
    pub months: usize,
    /// Events read.
    pub events: u64,
    /// Σ credits, all accounts.
    pub credits_rao: i64,
    /// Σ debits, all accounts.
    pub debits_rao: i64,
    /// Σ balances, all accounts.
    pub balances_rao: i64,
    /// Σ live holds, all accounts.
    pub held_rao: i64,
    /// Everything that does not add up.
    pub discrepancies: Vec<Discrepancy>,
}

impl Report {
    /// True when every check passed.
    pub fn is_clean(&self) -> bool {
        self.discrepancies.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "accounts: {}  months of events: {}  events: {}",
            self.accounts, self.months, self.events
        )?;
        writeln!(
            f,
            "credits: {} rao  debits: {} rao  balances: {} rao  held: {} rao",
            self.credits_rao, self.debits_rao, self.balances_rao, self.held_rao
        )?;
        if self.is_clean() {
            write!(f, "ledger reconciled: every rao accounted for")
        } else {
            writeln!(f, "{} discrepancies:", self.discrepancies.len())?;
            for d in &self.discrepancies {
                writeln!(f, "  {d}")?;
            }
            Ok(())
        }
    }
}

/// Reads the ledger of the configured Redis and reconciles it (the CLI's work). An embedded
/// in-memory ledger lives inside one gateway process and cannot be read from outside.
pub async fn run(config: &crate::config::Config) -> Result<Report, String> {
    let store = crate::store::Store::from_config(
        &config.redis,
        // Reading a whole ledger takes longer than a request's commands.
        std::time::Duration::from_millis(config.redis.command_timeout_ms.max(10_000)),
    )
    .await
    .map_err(|e| e.to_string())?
    .ok_or_else(|| {
        "no GATEWAY_REDIS_URL: the embedded in-memory ledger lives inside the serving process and cannot be reconciled from outside".to_string()
    })?;
    let snap = store.ledger_snapshot().await.map_err(|e| e.to_string())?;
    Ok(reconcile(&snap))
}

/// Compares everything in `snap`.
pub fn reconcile(snap: &LedgerSnapshot) -> Report {
    let mut r = Report {
        accounts: snap.accounts.len(),
        months: snap.events.len(),
        ..Report::default()
    };
    let mut bad = |account: &str, check: &'static str, expected: i64, actual: i64| {
        if expected != actual {
            r.discrepancies.push(Discrepancy {
                account: account.to_string(),
                check,
                expected,
                actual,
            });
        }
    };
    let (mut credits, mut debits, mut balances, mut held) = (0i64, 0i64, 0i64, 0i64);
    for (id, b) in &snap.accounts {
        credits = credits.saturating_add(b.credits_rao);
        debits = debits.saturating_add(b.debits_total_rao);
        balances = balances.saturating_add(b.balance_rao);
        held = held.saturating_add(b.held_rao);
        bad(
            id,
            "credits - debits = balance",
            b.credits_rao.saturating_sub(b.debits_total_rao),
            b.balance_rao,
        );
        bad(
            id,
            "held counter = sum of live holds",
            b.holds_sum_rao,
            b.held_rao,
        );
        bad(
            id,
            "debits total = sum of monthly debits",
            b.debits_by_month.values().sum(),
            b.debits_total_rao,
        );
        bad(
            id,
            "unreadable credit log lines",
            0,
            b.bad_credit_lines as i64,
        );
    }
    let mut events = 0u64;
    for (month, per_account) in &snap.events {
        for (id, (n, cost)) in per_account {
            events += n;
            let debited = snap
                .accounts
                .get(id)
                .and_then(|b| b.debits_by_month.get(month))
                .copied()
                .unwrap_or(0);
            bad(id, "usage events' cost = month's debits", debited, *cost);
        }
        // A month's debits without any event of that account are as wrong as the reverse.
        for (id, b) in &snap.accounts {
            if let (Some(d), false) = (b.debits_by_month.get(month), per_account.contains_key(id)) {
                bad(id, "usage events' cost = month's debits", *d, 0);
            }
        }
    }
    bad("*", "unreadable usage events", 0, snap.bad_events as i64);
    r.events = events;
    r.credits_rao = credits;
    r.debits_rao = debits;
    r.balances_rao = balances;
    r.held_rao = held;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ledger::AccountBooks;

    fn books(credits: i64, debits: i64, balance: i64) -> AccountBooks {
        AccountBooks {
            balance_rao: balance,
            credits_rao: credits,
            debits_total_rao: debits,
            debits_by_month: [("2026-11".to_string(), debits)].into(),
            ..AccountBooks::default()
        }
    }

    #[test]
    fn a_consistent_ledger_is_clean() {
        let mut s = LedgerSnapshot::default();
        s.accounts.insert("a".into(), books(100, 30, 70));
        s.events
            .entry("2026-11".into())
            .or_default()
            .insert("a".into(), (3, 30));
        let r = reconcile(&s);
        assert!(r.is_clean(), "{r}");
        assert_eq!(r.events, 3);
    }

    #[test]
    fn each_kind_of_gap_is_named() {
        let mut s = LedgerSnapshot::default();
        s.accounts.insert("a".into(), books(100, 30, 71));
        s.events
            .entry("2026-11".into())
            .or_default()
            .insert("a".into(), (3, 29));
        let r = reconcile(&s);
        let checks: Vec<_> = r.discrepancies.iter().map(|d| d.check).collect();
        assert_eq!(
            checks,
            [
                "credits - debits = balance",
                "usage events' cost = month's debits"
            ]
        );
        assert!(r.to_string().contains("off by 1"));
    }

    #[test]
    fn debits_without_events_are_a_gap() {
        let mut s = LedgerSnapshot::default();
        s.accounts.insert("a".into(), books(100, 30, 70));
        s.events.entry("2026-11".into()).or_default();
        assert_eq!(reconcile(&s).discrepancies.len(), 1);
    }
}
