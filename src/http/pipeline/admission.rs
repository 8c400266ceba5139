//! Admission: the request's ticket ([`crate::metering`]: price, hold, usage event) and its
//! lease ([`crate::quota`]: buckets, concurrency) taken together in one store round trip, and
//! the [`Admitted`] guard that settles both exactly once.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};

use super::{Call, Job};
use crate::api::ModelInfo;
use crate::auth::Caller;
use crate::http::AppState;
use crate::metering::{Meter, Outcome, Pricing, Ticket};
use crate::quota::headers::PolicyState;
use crate::quota::limiter::Scopes;
use crate::quota::{Lease, Money, Refusal, Refused};

/// An admitted request: its lease and its ticket. Settle it with the outcome; dropped
/// unsettled (an error, a panic) it settles itself as a request that used nothing: the whole
/// token estimate and the whole hold go back, and a zero-cost `failed` usage event is
/// recorded. Either way the settlement runs once, on a detached task, through the meter.
#[derive(Debug)]
pub struct Admitted {
    lease: Option<Lease>,
    ticket: Ticket,
    /// The plan's pricing, so a fallback's model is charged at its own provider price.
    pricing: Pricing,
    meter: Arc<Meter>,
}

/// Admits `call` for `caller`, or answers the refusal (429, 402, 503) with its headers.
pub(super) async fn admit(
    st: &AppState,
    caller: &Caller,
    scopes: Scopes,
    job: &Job,
    call: &Call,
) -> Result<Admitted, Response> {
    let max_tokens = u64::from(call.max_tokens);
    let pricing = scopes.plan.pricing();
    let prices = st
        .meter
        .prices(pricing, &job.winner.model.id)
        .map_err(IntoResponse::into_response)?;
    let ticket = Ticket::new(
        caller,
        &scopes.plan.name,
        prices,
        &job.id,
        &job.winner.model,
        job.input_estimate,
        max_tokens,
        call.metadata.clone(),
        crate::metering::now_ms(),
    );
    let money = ticket.hold().map(|hold| Money {
        hold,
        policy: st.meter.policy,
    });
    let estimate = job.input_estimate + max_tokens;
    let lease = match st.limiter.admit(scopes, &job.id, estimate, money).await {
        Ok(lease) => lease,
        Err(Refusal::Limited(refused)) => return Err(refused.into_response()),
        Err(Refusal::Unsure { refused, specs }) => {
            // Settled after the admission on the same connection (or replayed from the
            // journal), this releases a late hold and lease; should it land first, its
            // done-mark makes the hold's later sweep release it uncharged. No tokens go back:
            // whether the buckets were debited is unknown, and a refund would mint quota.
            st.meter.settle_detached(
                specs,
                job.id.clone(),
                0,
                Some((ticket.charge(&Outcome::failed()), ticket.event.plan.clone())),
            );
            return Err(refused.into_response());
        }
        Err(Refusal::Unfunded {
            balance_rao,
            held_rao,
            policies,
        }) => {
            let refused = Refused {
                error: ticket.unfunded(balance_rao, held_rao),
                policies,
            };
            return Err(refused.into_response());
        }
    };
    Ok(Admitted {
        lease: Some(lease),
        ticket,
        pricing,
        meter: Arc::clone(&st.meter),
    })
}

impl Admitted {
    /// The rate-limit headers of the admission.
    pub fn policies(&self) -> &[PolicyState] {
        self.lease.as_ref().map_or(&[], |l| &l.policies)
    }

    /// Records that `model` (a fallback's) served, so the usage event names it; on a
    /// provider-priced plan it is charged at that model's provider price when one is known
    /// (else at the admission's).
    pub fn served_by(&mut self, model: &ModelInfo) {
        self.ticket.served_by(model);
        if let Pricing::Provider { markup_percent } = self.pricing
            && let Some(p) = self
                .meter
                .provider_prices()
                .and_then(|pp| pp.get(&model.id))
        {
            self.ticket
                .reprice(crate::metering::marked_up(p, markup_percent));
        }
    }

    /// Ends the request with `outcome`: releases the lease, reconciles the token buckets and
    /// settles the money, on a detached task, so it happens whatever the client does.
    /// Returns the cost charged.
    pub fn settle(mut self, outcome: Outcome) -> u64 {
        self.finish(&outcome)
    }

    fn finish(&mut self, outcome: &Outcome) -> u64 {
        let Some(lease) = self.lease.take() else {
            return 0;
        };
        let release = lease.release(outcome.usage.total_tokens);
        let charge = self.ticket.charge(outcome);
        let cost = charge.cost_rao;
        self.meter.settle_detached(
            release.scopes,
            release.request_id,
            release.tokens_back,
            Some((charge, self.ticket.event.plan.clone())),
        );
        cost
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.finish(&Outcome::failed());
    }
}
