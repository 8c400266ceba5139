//! Store operations of the distributed limiter: admit, peek, settle, renew.
//!
//! A *scope* is one set of limits sharing a hash tag: an account (`{a:<id>}`) or a subnet's
//! aggregate (`{s:<netuid>}`). Admission checks and consumes every bucket of every scope of a
//! request at once, all or nothing, and takes a concurrency lease per scope; settlement gives
//! back the unused part of the token estimate and releases the leases, idempotently. Redis runs
//! `admit_v2.lua` / `settle_v2.lua` (which also do the ledger's
//! part, see [`ledger`](super::ledger)); the memory backend implements the same rules
//! in [`memory_quota`](super::memory_quota), and `tests/quota_store.rs` runs one behaviour suite
//! against both.

use std::time::Duration;

use super::{Store, StoreError};

/// One scope's limits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScopeSpec {
    /// The scope's hash tag, braces included: `{a:<account>}` or `{s:<netuid>}`.
    pub tag: String,
    /// Requests per minute.
    pub rpm: u64,
    /// Tokens per minute.
    pub tpm: u64,
    /// Tokens per day.
    pub tpd: u64,
    /// Requests in flight.
    pub max_concurrent: u64,
}

impl ScopeSpec {
    /// The scope's four keys: three buckets and the lease set.
    pub fn keys(&self) -> [String; 4] {
        [
            format!("{}:q:rpm", self.tag),
            format!("{}:q:tpm", self.tag),
            format!("{}:q:tpd", self.tag),
            format!("{}:q:conc", self.tag),
        ]
    }

    /// Capacities in script order.
    pub fn caps(&self) -> [u64; 4] {
        [self.rpm, self.tpm, self.tpd, self.max_concurrent]
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Requests per minute.
    RequestsPerMinute,
    /// Tokens per minute.
    TokensPerMinute,
    /// Tokens per day.
    TokensPerDay,
    /// Requests in flight.
    Concurrency,
    /// The account's balance (prepaid: minus its holds; postpaid: down to the credit limit)
    /// does not cover the request's worst-case cost.
    Balance,
}

impl Limit {
    fn from_code(c: i64) -> Option<Limit> {
        match c {
            1 => Some(Limit::RequestsPerMinute),
            2 => Some(Limit::TokensPerMinute),
            3 => Some(Limit::TokensPerDay),
            4 => Some(Limit::Concurrency),
            5 => Some(Limit::Balance),
            _ => None,
        }
    }
}

/// One bucket after the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketView {
    /// Whole units left.
    pub remaining: u64,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: u64,
}

/// One scope after the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScopeView {
    /// Requests per minute.
    pub rpm: BucketView,
    /// Tokens per minute.
    pub tpm: BucketView,
    /// Tokens per day.
    pub tpd: BucketView,
    /// Leases held now (this request's included when admitted).
    pub in_flight: u64,
}

/// The limiter's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaDecision {
    /// `None` when admitted; else the refusing scope's index, the limit, and how long until it
    /// has capacity for this request.
    pub refused: Option<(usize, Limit, Duration)>,
    /// Every scope's state, in the order given.
    pub scopes: Vec<ScopeView>,
}

/// Decodes the flat integer reply of `admit_v2`.
pub(super) fn decode_decision(v: &[i64], n: usize) -> Result<QuotaDecision, StoreError> {
    if v.len() != 3 + 7 * n {
        return Err(StoreError::Protocol(format!(
            "quota script returned {} values for {n} scopes",
            v.len()
        )));
    }
    let u = |x: i64| u64::try_from(x).unwrap_or(0);
    let refused = match v[0] {
        0 => None,
        s => {
            let limit = Limit::from_code(v[1])
                .ok_or_else(|| StoreError::Protocol("quota script: unknown limit".into()))?;
            Some((u(s - 1) as usize, limit, Duration::from_millis(u(v[2]))))
        }
    };
    let scopes = v[3..]
        .chunks_exact(7)
        .map(|c| ScopeView {
            rpm: BucketView {
                remaining: u(c[0]),
                reset_ms: u(c[1]),
            },
            tpm: BucketView {
                remaining: u(c[2]),
                reset_ms: u(c[3]),
            },
            tpd: BucketView {
                remaining: u(c[4]),
                reset_ms: u(c[5]),
            },
            in_flight: u(c[6]),
        })
        .collect();
    Ok(QuotaDecision { refused, scopes })
}

impl Store {
    /// Checks and consumes one request (`tokens` = input estimate + `max_tokens`) against every
    /// scope, all or nothing, and takes a lease of `lease` per scope. No money involved: see
    /// [`Store::admit`] for that.
    pub async fn quota_admit(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        tokens: u64,
        lease: Duration,
    ) -> Result<QuotaDecision, StoreError> {
        let policy = super::LedgerPolicy::default();
        Ok(self
            .admit(scopes, request_id, tokens, lease, None, &policy)
            .await?
            .decision)
    }

    /// The scopes' state without consuming anything.
    pub async fn quota_peek(&self, scopes: &[ScopeSpec]) -> Result<Vec<ScopeView>, StoreError> {
        let policy = super::LedgerPolicy::default();
        Ok(self.peek(scopes, None, &policy).await?.0)
    }

    /// Ends a request: releases its leases and gives back `tokens_back` tokens (the estimate
    /// minus actual usage; negative takes the excess), and the request itself when
    /// `request_back` (admission undone). Idempotent: returns false when there was nothing to
    /// settle (already settled, or the lease expired).
    pub async fn quota_settle(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        tokens_back: i64,
        request_back: bool,
    ) -> Result<bool, StoreError> {
        let policy = super::LedgerPolicy::default();
        Ok(self
            .settle(scopes, request_id, tokens_back, request_back, None, &policy)
            .await?
            .0)
    }

    /// Extends a live request's leases to `lease` from now.
    pub async fn quota_renew(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let policy = super::LedgerPolicy::default();
        self.renew(scopes, request_id, lease, None, &policy).await
    }
}
