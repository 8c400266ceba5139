//! Coldkey links: `POST /v1/account/coldkeys` (the caller links a coldkey it controls) and
//! the operators' `GET`/`DELETE /admin/v1/accounts/{id}/coldkeys…`. The rules and the store
//! layout are in [`crate::accounts::coldkeys`].

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::coldkeys::{self, ColdkeyLink, LinkError, Linked};
use crate::api::classify_json_error;
use crate::auth::{Caller, Operator, ss58};
use crate::error::{ApiError, ErrorCode};
use crate::http::AppState;
use crate::http::extract::JsonBody;

/// `POST /v1/account/coldkeys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkRequest {
    /// The coldkey's SS58 address (prefix 42, canonical spelling).
    #[schema(example = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")]
    pub coldkey: String,
    /// A nonce of the caller's choosing, 1 to 64 of `[A-Za-z0-9._:-]`; each coldkey can use a
    /// nonce once.
    #[schema(example = "2026-11-25.1", pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    pub nonce: String,
    /// The coldkey's sr25519 signature (`0x` + 128 hex digits) over the UTF-8 text
    /// `affine-gateway:link-coldkey:<account id>:<gateway hotkey ss58>:<nonce>`, raw or
    /// wrapped in `<Bytes>…</Bytes>`.
    #[schema(pattern = "^0x[0-9a-fA-F]{128}$")]
    pub signature: String,
}

/// `GET /admin/v1/accounts/{id}/coldkeys` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ColdkeyList {
    /// The account's linked coldkeys, sorted by address.
    pub coldkeys: Vec<ColdkeyLink>,
}

fn store_error(e: &crate::store::StoreError) -> ApiError {
    ApiError::from_store(e, "the coldkey link could not be read or written")
}

/// Links a coldkey to the caller's account (transfers from it then credit the account).
#[utoipa::path(post, path = "/v1/account/coldkeys", tag = "reason",
    request_body(content = LinkRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "linked", body = ColdkeyLink),
        (status = 200, description = "the coldkey was already linked to this account (the link as first made)", body = ColdkeyLink),
        (status = 400, description = "invalid_request: a malformed coldkey, nonce or signature, a signature that does not verify, a nonce this coldkey already used, or a coldkey linked to another account; invalid_json, unknown_field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "not authenticated", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn link(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let req: LinkRequest = serde_json::from_slice(&body).map_err(classify_json_error)?;
    let refused = |r: coldkeys::LinkRefusal| ApiError::new(ErrorCode::InvalidRequest, r.detail());
    coldkeys::verify(
        &caller.account_id,
        st.config.effective_hotkey(),
        &req.coldkey,
        &req.nonce,
        &req.signature,
    )
    .map_err(refused)?;
    match coldkeys::link(&st.store, &caller.account_id, &req.coldkey, &req.nonce).await {
        Ok(Linked::Created(l)) => {
            tracing::info!(account = %l.account, coldkey = %l.coldkey, "coldkey linked");
            Ok((StatusCode::CREATED, Json(l)).into_response())
        }
        Ok(Linked::Existing(l)) => Ok((StatusCode::OK, Json(l)).into_response()),
        Err(LinkError::Refused(r)) => Err(refused(r)),
        Err(LinkError::Store(e)) => Err(store_error(&e)),
    }
}

/// Lists the coldkeys linked to an account.
#[utoipa::path(get, path = "/admin/v1/accounts/{id}/coldkeys", tag = "admin",
    params(("id" = String, Path, description = "SS58 hotkey or enterprise slug")),
    responses(
        (status = 200, description = "the account's coldkeys (empty when it has none)", body = ColdkeyList),
    ))]
pub(crate) async fn list(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ColdkeyList>, ApiError> {
    let coldkeys = coldkeys::links_of(&st.store, &id)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(Json(ColdkeyList { coldkeys }))
}

/// Unlinks a coldkey from an account. Its used nonces stay used, so no signature it made
/// before can link it again.
#[utoipa::path(delete, path = "/admin/v1/accounts/{id}/coldkeys/{coldkey}", tag = "admin",
    params(
        ("id" = String, Path, description = "SS58 hotkey or enterprise slug"),
        ("coldkey" = String, Path, description = "the coldkey's SS58 address"),
    ),
    responses(
        (status = 204, description = "unlinked"),
        (status = 400, description = "invalid_request: not an SS58 address (prefix 42, canonical)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: the coldkey is not linked to this account", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn unlink(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    Path((id, coldkey)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if let Err(e) = ss58::decode42(&coldkey) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("the coldkey is not a usable SS58 address: {e}"),
        ));
    }
    if coldkeys::unlink(&st.store, &id, &coldkey)
        .await
        .map_err(|e| store_error(&e))?
    {
        tracing::info!(operator = %op.sub, account = %id, coldkey = %coldkey, "coldkey unlinked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            "that coldkey is not linked to this account",
        ))
    }
}
