//! `GET /v1/account`: the caller's account, its plan's limits and what is left of them.

use axum::Json;
use axum::extract::{Extension, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::coldkeys::{self, ColdkeyLink};
use crate::accounts::{self, Account};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::AppState;
use crate::quota::plans::Plan;
use crate::store::ScopeView;

/// What is left of each limit now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Remaining {
    /// Requests that may start now.
    pub requests_per_minute: u64,
    /// Tokens available this minute.
    pub tokens_per_minute: u64,
    /// Tokens available today.
    pub tokens_per_day: u64,
    /// Requests in flight now.
    pub in_flight: u64,
}

impl From<&ScopeView> for Remaining {
    fn from(v: &ScopeView) -> Remaining {
        Remaining {
            requests_per_minute: v.rpm.remaining,
            tokens_per_minute: v.tpm.remaining,
            tokens_per_day: v.tpd.remaining,
            in_flight: v.in_flight,
        }
    }
}

/// The subnet aggregate the caller also counts against.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubnetQuota {
    /// The subnet.
    pub netuid: u16,
    /// Its aggregate's plan limits.
    pub limits: Plan,
    /// What the whole subnet has left.
    pub remaining: Remaining,
}

/// `GET /v1/account`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// The account (an unregistered hotkey shows the `public` defaults).
    #[serde(flatten)]
    pub account: Account,
    /// The plan's limits and prices.
    pub limits: Plan,
    /// What is left now.
    pub remaining: Remaining,
    /// Rao held by requests in flight (prepaid accounts).
    pub holds_rao: u64,
    /// The subnet aggregate, when the caller's subnet is mapped to a plan.
    pub subnet: Option<SubnetQuota>,
    /// The synced subnets the caller's hotkey is registered in, as the gateway's metagraph
    /// snapshots say (empty for enterprises and without chain features).
    pub membership: Vec<crate::http::chain::MembershipView>,
    /// The caller's recent TAO deposits (newest last; empty without deposits).
    pub deposits: Vec<crate::chain::deposits::Deposit>,
    /// The coldkeys linked to the account (`POST /v1/account/coldkeys`): TAO transfers from
    /// them to the deposit address credit it.
    pub coldkeys: Vec<ColdkeyLink>,
}

/// The caller's account with its limits and remaining quota.
#[utoipa::path(get, path = "/v1/account", tag = "reason",
    responses(
        (status = 200, description = "the caller's account", body = AccountView),
        (status = 401, description = "not authenticated", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn account(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<AccountView>, ApiError> {
    let (scopes, views, balance, held) = st.limiter.peek(&caller, &st.meter.policy).await?;
    let credit_limit_rao = match accounts::load(&st.store, &caller.account_id).await? {
        Some(r) => r.credit_limit_rao,
        None => 0,
    };
    let account = Account {
        id: caller.account_id.clone(),
        kind: caller.kind,
        netuid: caller.netuid,
        plan: scopes.plan.name.clone(),
        billing: caller.billing,
        credit_limit_rao,
        balance_rao: balance,
        disabled: false,
    };
    let own = views.last().map(Remaining::from).unwrap_or(Remaining {
        requests_per_minute: 0,
        tokens_per_minute: 0,
        tokens_per_day: 0,
        in_flight: 0,
    });
    let subnet = match (caller.netuid, &scopes.subnet_plan, views.len()) {
        (Some(netuid), Some(p), 2) => Some(SubnetQuota {
            netuid,
            limits: Plan::clone(p),
            remaining: Remaining::from(&views[0]),
        }),
        _ => None,
    };
    let coldkeys = coldkeys::links_of(&st.store, &caller.account_id)
        .await
        .map_err(|e| ApiError::from_store(&e, "the linked coldkeys could not be read"))?;
    Ok(Json(AccountView {
        account,
        limits: Plan::clone(&scopes.plan),
        remaining: own,
        holds_rao: u64::try_from(held).unwrap_or(0),
        subnet,
        membership: crate::http::chain::memberships(st.chain.as_deref(), &caller.account_id),
        deposits: crate::http::chain::recent_deposits(&st, &caller.account_id).await?,
        coldkeys,
    }))
}
