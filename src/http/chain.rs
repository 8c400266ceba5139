//! The chain's operator views: `GET /admin/v1/chain` (sync status) and
//! `GET /admin/v1/chain/hotkeys/{ss58}` (what the snapshots say of one hotkey), plus the
//! membership part of `GET /v1/account`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::chain::membership::Member;
use crate::chain::service::Chain;
use crate::clock::now_ms;
use crate::error::{ApiError, ErrorCode};
use crate::http::AppState;

/// One subnet the hotkey is registered in, as the gateway's snapshot of it says.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MembershipView {
    /// The subnet.
    pub netuid: u16,
    /// The hotkey's uid there.
    pub uid: u16,
    /// Whether it holds a validator permit.
    pub validator_permit: bool,
    /// Inherited alpha stake, rao.
    pub alpha_stake_rao: u64,
    /// Root TAO stake, rao.
    pub tao_stake_rao: u64,
    /// Total stake (`alpha + tao × TaoWeight`), rao: what `min_stake_rao` gates on.
    pub total_stake_rao: u64,
    /// The owning coldkey (SS58).
    pub coldkey: String,
    /// The finalized block of the snapshot.
    pub block: u64,
}

impl MembershipView {
    fn of(m: Member, block: u64) -> MembershipView {
        MembershipView {
            netuid: m.netuid,
            uid: m.uid,
            validator_permit: m.validator_permit,
            alpha_stake_rao: m.alpha_stake,
            tao_stake_rao: m.tao_stake,
            total_stake_rao: m.total_stake,
            coldkey: m.coldkey,
            block,
        }
    }
}

/// Every synced subnet `hotkey` is registered in.
pub(crate) fn memberships(chain: Option<&Chain>, hotkey: &str) -> Vec<MembershipView> {
    chain.map_or_else(Vec::new, |c| {
        c.membership
            .places(hotkey)
            .into_iter()
            .map(|(m, block)| MembershipView::of(m, block))
            .collect()
    })
}

/// One synced subnet's snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubnetSync {
    /// The subnet.
    pub netuid: u16,
    /// Whether `[subnets]` maps it (only then does membership place callers).
    pub mapped: bool,
    /// Whether a gate (`validator_permit`, `min_stake_rao`) applies.
    pub gated: bool,
    /// The finalized block of the snapshot; null before the first read.
    pub block: Option<u64>,
    /// Seconds since it was read; null before the first read.
    pub age_secs: Option<u64>,
    /// Whether it is within `chain.max_age_secs` (a gated subnet fails closed otherwise).
    pub fresh: bool,
    /// Registered hotkeys in it.
    pub hotkeys: usize,
}

/// `GET /admin/v1/chain`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainStatus {
    /// Chain access is configured (`[chain]`); everything else is empty when false.
    pub enabled: bool,
    /// The endpoints, lite first.
    pub endpoints: Vec<crate::chain::rpc::EndpointStatus>,
    /// The synced subnets.
    pub subnets: Vec<SubnetSync>,
    /// `chain.max_age_secs`.
    pub max_age_secs: u64,
    /// The deposit poller; null when deposits are off.
    pub deposits: Option<DepositSync>,
}

fn chain_of(st: &AppState) -> Result<&Chain, ApiError> {
    st.chain.as_deref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "chain features are off: this gateway has no [chain] section (GATEWAY_CHAIN_ENDPOINTS)",
        )
    })
}

/// The chain sync's status.
#[utoipa::path(get, path = "/admin/v1/chain", tag = "admin",
    responses(
        (status = 200, description = "sync status", body = ChainStatus),
        (status = 401, description = "missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the token lacks the admin scope", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn status(State(st): State<AppState>) -> Json<ChainStatus> {
    let Some(c) = st.chain.as_deref() else {
        return Json(ChainStatus {
            enabled: false,
            endpoints: Vec::new(),
            subnets: Vec::new(),
            max_age_secs: 0,
            deposits: None,
        });
    };
    let now = now_ms();
    let m = &c.membership;
    let subnets = m
        .rules()
        .map(|(netuid, rule)| {
            let snap = m.snapshot(netuid);
            let age = m.age(netuid, now);
            SubnetSync {
                netuid,
                mapped: rule.mapped,
                gated: rule.gated(),
                block: snap.as_ref().map(|s| s.block),
                age_secs: age.map(|a| a.as_secs()),
                fresh: age.is_some_and(|a| a <= m.max_age()),
                hotkeys: snap.map_or(0, |s| s.members.len()),
            }
        })
        .collect();
    Json(ChainStatus {
        enabled: true,
        endpoints: c.rpc.status(),
        subnets,
        max_age_secs: m.max_age().as_secs(),
        deposits: deposit_sync(&st, c).await,
    })
}

/// `GET /admin/v1/chain/hotkeys/{ss58}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HotkeyView {
    /// The hotkey.
    pub hotkey: String,
    /// Every synced subnet it is registered in (empty: none).
    pub memberships: Vec<MembershipView>,
}

/// What the metagraph snapshots say of one hotkey.
#[utoipa::path(get, path = "/admin/v1/chain/hotkeys/{ss58}", tag = "admin",
    params(("ss58" = String, Path, description = "the hotkey, SS58 (prefix 42)")),
    responses(
        (status = 200, description = "the hotkey's memberships", body = HotkeyView),
        (status = 400, description = "invalid_request: not a canonical SS58 address", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: chain features are off", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn hotkey(
    State(st): State<AppState>,
    Path(ss58): Path<String>,
) -> Result<Json<HotkeyView>, ApiError> {
    let chain = chain_of(&st)?;
    if crate::auth::ss58::decode42(&ss58).is_err() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "not a canonical SS58 address (prefix 42)",
        ));
    }
    Ok(Json(HotkeyView {
        memberships: memberships(Some(chain), &ss58),
        hotkey: ss58,
    }))
}

/// The deposit poller's part of `GET /admin/v1/chain`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DepositSync {
    /// `chain.deposit_address`.
    pub address: String,
    /// The last block whose deposits are all recorded; null before the first poll.
    pub cursor: Option<u64>,
    /// The best block this replica's poller last saw (null as `finalized`).
    pub head: Option<u64>,
    /// The finalized block this replica's poller last saw; null when this replica does not
    /// poll (another holds the lease) or has not yet.
    pub finalized: Option<u64>,
    /// `finalized - cursor`, when both are known.
    pub lag_blocks: Option<u64>,
    /// The last round's error, if it failed.
    pub last_error: Option<String>,
}

/// `GET /admin/v1/deposits` query.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DepositQuery {
    /// Only `unattributed` (the default): deposits from coldkeys linked to no account.
    pub status: Option<String>,
}

/// `GET /admin/v1/deposits`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DepositList {
    /// Oldest block first.
    pub deposits: Vec<crate::chain::deposits::Deposit>,
}

/// `POST /admin/v1/deposits/{reference}/assign` body.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// The account to credit (hotkey SS58 or enterprise id).
    pub account: String,
}

fn deposits_on(st: &AppState) -> Result<&Chain, ApiError> {
    let c = chain_of(st)?;
    if c.deposit_to.is_none() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "TAO deposits are off: chain.deposit_address (GATEWAY_DEPOSIT_ADDRESS) is not set",
        ));
    }
    Ok(c)
}

fn deposit_store_error(e: crate::chain::deposits::DepositError) -> ApiError {
    match e {
        crate::chain::deposits::DepositError::Store(e) => {
            ApiError::from_store(&e, "the deposits could not be read")
        }
        other => {
            tracing::error!(error = %other, "deposit records");
            ApiError::new(ErrorCode::Internal, "a deposit record is corrupt")
        }
    }
}

/// Deposits waiting for an operator.
#[utoipa::path(get, path = "/admin/v1/deposits", tag = "admin",
    params(DepositQuery),
    responses(
        (status = 200, description = "the unattributed deposits", body = DepositList),
        (status = 400, description = "invalid_request: an unknown status", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: TAO deposits are off", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_deposits(
    State(st): State<AppState>,
    query: Result<axum::extract::Query<DepositQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DepositList>, ApiError> {
    deposits_on(&st)?;
    let q = query.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    match q.status.as_deref() {
        None | Some("unattributed") => {}
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("`status` must be `unattributed`, got {other:?}"),
            ));
        }
    }
    let deposits = crate::chain::deposits::unattributed(&st.store)
        .await
        .map_err(deposit_store_error)?;
    Ok(Json(DepositList { deposits }))
}

/// Credits an unattributed deposit to an account, once.
#[utoipa::path(post, path = "/admin/v1/deposits/{reference}/assign", tag = "admin",
    params(("reference" = String, Path, description = "`tao:<block>:<event index>`")),
    request_body(content = AssignRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "assigned and credited", body = crate::chain::deposits::Deposit),
        (status = 400, description = "invalid_request: not an account id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no such deposit, or deposits are off", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict: the deposit was credited or assigned before", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn assign_deposit(
    State(st): State<AppState>,
    axum::extract::Extension(op): axum::extract::Extension<crate::auth::Operator>,
    Path(reference): Path<String>,
    crate::http::extract::JsonBody(body): crate::http::extract::JsonBody,
) -> Result<Json<crate::chain::deposits::Deposit>, ApiError> {
    use crate::chain::deposits::{AssignError, assign};
    deposits_on(&st)?;
    let req: AssignRequest =
        serde_json::from_slice(&body).map_err(crate::api::classify_json_error)?;
    if crate::accounts::AccountKind::of_id(&req.account).is_none() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`account` must be an SS58 hotkey (prefix 42) or an enterprise id",
        ));
    }
    match assign(
        &st.store,
        &reference,
        &req.account,
        &op.sub,
        &st.metrics.chain,
    )
    .await
    {
        Ok(d) => {
            tracing::info!(operator = %op.sub, account = %req.account, reference = %reference, "deposit assigned");
            Ok(Json(d))
        }
        Err(AssignError::Unknown) => Err(ApiError::new(ErrorCode::NotFound, "no such deposit")),
        Err(AssignError::Taken(d)) => Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "deposit {reference} was already {} to {}",
                match d.status {
                    crate::chain::deposits::DepositStatus::Credited => "credited",
                    _ => "assigned",
                },
                d.account.as_deref().unwrap_or("another account")
            ),
        )),
        Err(AssignError::Failed(e)) => Err(deposit_store_error(e)),
    }
}

/// The deposit part of `GET /admin/v1/chain`.
pub(crate) async fn deposit_sync(st: &AppState, c: &Chain) -> Option<DepositSync> {
    let to = c.deposit_to?;
    let cursor = crate::chain::deposits::read_cursor(&st.store)
        .await
        .ok()
        .flatten();
    let seen = |g: &prometheus::IntGauge| u64::try_from(g.get()).ok().filter(|n| *n > 0);
    let finalized = seen(&st.metrics.chain.finalized_block);
    let head = seen(&st.metrics.chain.head_block);
    Some(DepositSync {
        address: crate::auth::ss58::encode42(&to),
        cursor,
        head,
        finalized,
        lag_blocks: match (finalized, cursor) {
            (Some(f), Some(c)) => Some(f.saturating_sub(c)),
            _ => None,
        },
        last_error: c
            .deposit_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    })
}

/// The deposits among `account`'s recent credits, for `GET /v1/account`.
pub(crate) async fn recent_deposits(
    st: &AppState,
    account: &str,
) -> Result<Vec<crate::chain::deposits::Deposit>, ApiError> {
    if st.chain.as_ref().is_none_or(|c| c.deposit_to.is_none()) {
        return Ok(Vec::new());
    }
    crate::chain::deposits::recent(&st.store, account, 20)
        .await
        .map_err(deposit_store_error)
}
