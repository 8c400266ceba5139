//! The operators' API under `/admin/v1` (bearer tokens with the `admin` scope).

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::{self, Account, AccountRecord, AccountUpdate};
use crate::api::classify_json_error;
use crate::auth::Operator;
use crate::auth::jwt::now_secs;
use crate::error::{ApiError, ErrorCode};
use crate::http::AppState;
use crate::http::extract::JsonBody;
use crate::store::CreditOutcome;

/// Creates (201) or updates (200) an account; omitted fields keep their value.
#[utoipa::path(put, path = "/admin/v1/accounts/{id}", tag = "admin",
    params(("id" = String, Path, description = "SS58 hotkey or enterprise slug")),
    request_body(content = AccountUpdate, content_type = "application/json"),
    responses(
        (status = 200, description = "updated", body = Account),
        (status = 201, description = "created", body = Account),
        (status = 400, description = "invalid_request, invalid_json, unknown_field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the token lacks the admin scope", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_account(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let upd: AccountUpdate = serde_json::from_slice(&body).map_err(classify_json_error)?;
    let current = accounts::load(&st.store, &id).await?;
    let created = current.is_none();
    let rec = AccountRecord::apply(&id, current, upd, |p| st.limiter.plans().contains(p))?;
    accounts::save(&st.store, &rec).await?;
    st.auth.accounts.put(&rec.id, Some(rec.clone()));
    tracing::info!(operator = %op.sub, account = %rec.id, created, "account written");
    let balance = accounts::balance(&st.store, &id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(rec.with_balance(balance))).into_response())
}

/// Reads an account with its balance.
#[utoipa::path(get, path = "/admin/v1/accounts/{id}", tag = "admin",
    params(("id" = String, Path, description = "SS58 hotkey or enterprise slug")),
    responses(
        (status = 200, description = "the account", body = Account),
        (status = 404, description = "not_found", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_account(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Account>, ApiError> {
    let Some(rec) = accounts::load(&st.store, &id).await? else {
        return Err(ApiError::new(ErrorCode::NotFound, "no such account"));
    };
    let balance = accounts::balance(&st.store, &id).await?;
    Ok(Json(rec.with_balance(balance)))
}

/// `POST /admin/v1/accounts/{id}/credits` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditRequest {
    /// Rao to add (1 TAO = 10^9 rao): a JSON integer (no fraction, no exponent).
    #[serde(deserialize_with = "crate::accounts::money::positive")]
    #[schema(
        minimum = 1,
        maximum = 9_223_372_036_854_775_807_i64,
        example = 1_000_000_000
    )]
    pub amount_rao: u64,
    /// The idempotency key: the deposit's extrinsic hash or an invoice id (1 to 128 of
    /// `[A-Za-z0-9._:-]`). The same reference twice credits once.
    #[schema(example = "0x5f3c…", pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub reference: String,
}

/// A credit, as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct Credit {
    /// The account.
    pub id: String,
    /// Rao added.
    pub amount_rao: u64,
    /// The idempotency key.
    pub reference: String,
    /// The balance right after this credit.
    pub balance_rao: i64,
}

fn valid_reference(r: &str) -> bool {
    (1..=128).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Credits an account once per `reference`; a repeat returns the first result.
#[utoipa::path(post, path = "/admin/v1/accounts/{id}/credits", tag = "admin",
    params(("id" = String, Path, description = "SS58 hotkey or enterprise slug")),
    request_body(content = CreditRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "credited (or the first result of this reference)", body = Credit),
        (status = 404, description = "not_found: no such account", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 400, description = "invalid_request (e.g. `amount_rao` not a JSON integer from 1 to 2^63−1), invalid_json, unknown_field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict: the reference was credited with another amount, or the balance would pass 2^63−1 rao", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn credit(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Credit>, ApiError> {
    let req: CreditRequest = serde_json::from_slice(&body).map_err(classify_json_error)?;
    if !valid_reference(&req.reference) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`reference` must be 1 to 128 of [A-Za-z0-9._:-]",
        ));
    }
    if accounts::load(&st.store, &id).await?.is_none() {
        return Err(ApiError::new(ErrorCode::NotFound, "no such account"));
    }
    let now_ms = crate::auth::jwt::now_secs().saturating_mul(1000);
    let line = serde_json::json!({
        "reference": req.reference, "amount_rao": req.amount_rao, "at_ms": now_ms, "by": op.sub,
    })
    .to_string();
    let outcome = st
        .store
        .credit(&id, &req.reference, req.amount_rao, &line, now_ms)
        .await
        .map_err(|e| ApiError::from_store(&e, "the credit could not be recorded"))?;
    let balance_rao = match outcome {
        CreditOutcome::Credited { balance_rao } => {
            tracing::info!(operator = %op.sub, account = %id, amount_rao = req.amount_rao, reference = %req.reference, "credited");
            balance_rao
        }
        CreditOutcome::Repeated { balance_rao } => balance_rao,
        CreditOutcome::Overflow { balance_rao } => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "crediting {} rao would take the balance ({balance_rao} rao) past the largest balance, {} rao; nothing was credited",
                    req.amount_rao,
                    crate::accounts::money::MAX_RAO
                ),
            ));
        }
        CreditOutcome::Conflict { amount_rao } => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "reference `{}` was already credited with {amount_rao} rao",
                    req.reference
                ),
            ));
        }
    };
    Ok(Json(Credit {
        id,
        amount_rao: req.amount_rao,
        reference: req.reference,
        balance_rao,
    }))
}

/// `POST /admin/v1/tokens/revoke` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The token id (`jti` claim) to refuse from now on.
    #[schema(min_length = 1, max_length = 128)]
    pub jti: String,
    /// The token's `exp` (unix seconds), if known: the revocation is kept until then (plus the
    /// `exp` leeway). Without it, or with an `exp` already past, the revocation is kept for
    /// the longest token lifetime (366 days).
    #[serde(default, deserialize_with = "crate::api::reason::whole::opt_u64")]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub exp: Option<u64>,
}

/// `POST /admin/v1/tokens/revoke` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// The revoked token id.
    pub jti: String,
    /// Always true.
    pub revoked: bool,
}

/// Longest a revocation is kept when the token's expiry is not given.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 366 * 86_400;

/// Until when a revocation is kept (unix seconds).
///
/// A token is accepted until its `exp` plus the leeway, so a revocation is kept that long. An
/// `exp` already behind that is not the expiry of a token anyone still needs to revoke (it
/// would be refused anyway): it is taken as a mistaken `exp`, and the revocation is kept for
/// the longest token lifetime rather than dropped at once while the token may still work.
fn revocation_until(exp: Option<u64>, now: u64, leeway_secs: u64) -> u64 {
    let longest = now.saturating_add(MAX_TOKEN_LIFETIME_SECS);
    match exp.map(|e| e.saturating_add(leeway_secs)) {
        Some(accepted_until) if accepted_until > now => accepted_until.min(longest),
        _ => longest,
    }
}

/// Refuses a token on every replica from now on (within a second).
#[utoipa::path(post, path = "/admin/v1/tokens/revoke", tag = "admin",
    request_body(content = RevokeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "revoked (an `exp` in the past keeps the revocation 366 days)", body = Revoked),
        (status = 400, description = "invalid_request, invalid_json, unknown_field", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_token(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    JsonBody(body): JsonBody,
) -> Result<Json<Revoked>, ApiError> {
    let req: RevokeRequest = serde_json::from_slice(&body).map_err(classify_json_error)?;
    if req.jti.is_empty() || req.jti.chars().count() > 128 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`jti` must be 1 to 128 characters",
        ));
    }
    let now = now_secs();
    let until = revocation_until(req.exp, now, st.config.auth.jwt_leeway_secs);
    st.store
        .revoke(&req.jti, until, now)
        .await
        .map_err(|e| ApiError::from_store(&e, "the revocation could not be recorded"))?;
    st.auth.revocations.insert_local(&req.jti);
    tracing::info!(operator = %op.sub, jti = %req.jti, "token revoked");
    Ok(Json(Revoked {
        jti: req.jti,
        revoked: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_last_while_the_token_is_accepted() {
        let now = 1_000_000;
        let longest = now + MAX_TOKEN_LIFETIME_SECS;
        assert_eq!(revocation_until(None, now, 5), longest);
        assert_eq!(revocation_until(Some(now + 60), now, 5), now + 65);
        // Within the leeway the token still works: keep it until the leeway ends.
        assert_eq!(revocation_until(Some(now - 2), now, 5), now + 3);
        // Past: a mistaken exp; never dropped at once.
        assert_eq!(revocation_until(Some(now - 60), now, 5), longest);
        assert_eq!(revocation_until(Some(0), now, 0), longest);
        assert_eq!(revocation_until(Some(u64::MAX), now, 5), longest);
    }
}
