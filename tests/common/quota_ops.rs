//! The limiter's store operations without the money: what `tests/quota_store.rs` exercises.
//!
//! The gateway always admits and settles with its ledger policy (`Store::admit`,
//! `Store::settle`, …); these wrappers pass no hold, no charge and the default policy, so a
//! suite can look at the buckets and leases alone.

use std::time::Duration;

use affine_gateway::store::{
    Ending, LedgerPolicy, QuotaDecision, ScopeSpec, ScopeView, Store, StoreError,
};

/// Quota-only admit, peek, settle and renew on a [`Store`].
#[allow(async_fn_in_trait)]
pub trait QuotaOps {
    /// Checks and consumes one request (`tokens` = input estimate + `max_tokens`) against every
    /// scope, all or nothing, and takes a lease of `lease` per scope.
    async fn quota_admit(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        tokens: u64,
        lease: Duration,
    ) -> Result<QuotaDecision, StoreError>;

    /// The scopes' state without consuming anything.
    async fn quota_peek(&self, scopes: &[ScopeSpec]) -> Result<Vec<ScopeView>, StoreError>;

    /// Ends a request: releases its leases and gives back `tokens_back` tokens (negative takes
    /// the excess), and the request itself when `request_back`. False when there was nothing
    /// to settle (already settled, or the lease expired).
    async fn quota_settle(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        tokens_back: i64,
        request_back: bool,
    ) -> Result<bool, StoreError>;

    /// Extends a live request's leases to `lease` from now.
    async fn quota_renew(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        lease: Duration,
    ) -> Result<(), StoreError>;
}

impl QuotaOps for Store {
    async fn quota_admit(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        tokens: u64,
        lease: Duration,
    ) -> Result<QuotaDecision, StoreError> {
        let policy = LedgerPolicy::default();
        Ok(self
            .admit(scopes, request_id, tokens, lease, None, &policy)
            .await?
            .decision)
    }

    async fn quota_peek(&self, scopes: &[ScopeSpec]) -> Result<Vec<ScopeView>, StoreError> {
        let policy = LedgerPolicy::default();
        Ok(self.peek(scopes, None, &policy).await?.scopes)
    }

    async fn quota_settle(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        tokens_back: i64,
        request_back: bool,
    ) -> Result<bool, StoreError> {
        let policy = LedgerPolicy::default();
        Ok(self
            .settle(
                Ending {
                    scopes,
                    request_id,
                    tokens_back,
                    request_back,
                    charge: None,
                },
                &policy,
            )
            .await?
            .leases_removed)
    }

    async fn quota_renew(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let policy = LedgerPolicy::default();
        self.renew(scopes, request_id, lease, None, &policy).await
    }
}
