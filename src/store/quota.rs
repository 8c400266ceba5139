//! Store operations of the distributed limiter: admit, peek, settle, renew.
//!
//! A *scope* is one set of limits sharing a hash tag: an account (`{a:<id>}`) or a subnet's
//! aggregate (`{s:<netuid>}`). Admission checks and consumes every bucket of every scope of a
//! request at once, all or nothing, and takes a concurrency lease per scope; settlement gives
//! back the unused part of the token estimate and releases the leases, idempotently. Redis runs
//! `admit_v4.lua` / `settle_v4.lua`, one call per hash tag (which also do the ledger's part, see
//! [`ledger`](super::ledger)); the memory backend implements the same rules in its `quota`
//! module, and `tests/quota_store.rs` runs one behaviour suite against both. The operations
//! themselves are [`Store::admit`](super::Store::admit) and its siblings.

use std::time::Duration;

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
    /// The scope's two keys: the hash of its three buckets and the lease set.
    pub fn keys(&self) -> [String; 2] {
        super::keys::quota(&self.tag)
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
