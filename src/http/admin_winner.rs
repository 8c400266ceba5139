//! `PUT /admin/v1/winner` and `DELETE /admin/v1/winner`: the runtime pin.
//!
//! The pin is written to the store (key `winner:pin` under the key prefix) and applied on
//! this replica at once; every other replica reads it within `winner.pin_poll_ms`. It wins
//! over `GATEWAY_WINNER` and over Affine's champion until it is deleted.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::api::{ModelSource, WinnerResponse, classify_json_error};
use crate::auth::Operator;
use crate::auth::jwt::now_secs;
use crate::error::{ApiError, ErrorCode};
use crate::http::AppState;
use crate::http::extract::JsonBody;
use crate::routing::Winner;
use crate::routing::affine::Pin;

/// `PUT /admin/v1/winner` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// `org/model` or `org/model@revision`.
    #[schema(
        example = "affine-champ/Affine-Reasoner-32B@9c1d2e3f",
        pattern = r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(@[^@\s]+)?$"
    )]
    pub model: String,
}

fn store_failed(e: crate::store::StoreError) -> ApiError {
    ApiError::from_store(&e, "the pin could not be recorded")
}

/// Pins the winner on every replica until it is unpinned.
#[utoipa::path(put, path = "/admin/v1/winner", tag = "admin",
    request_body(content = PinRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "pinned; the winner now in effect", body = WinnerResponse),
        (status = 400, description = "invalid_request, invalid_json, unknown_field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the token lacks the admin scope", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn pin_winner(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    JsonBody(body): JsonBody,
) -> Result<Json<WinnerResponse>, ApiError> {
    let req: PinRequest = serde_json::from_slice(&body).map_err(classify_json_error)?;
    Winner::from_spec(&req.model, ModelSource::Pinned)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e))?;
    let pin = Pin {
        model: req.model,
        by: op.sub.clone(),
        at: now_secs(),
    };
    st.discovery.pin(&pin).await.map_err(store_failed)?;
    tracing::info!(operator = %op.sub, model = %pin.model, "winner pinned");
    st.winner
        .describe(&st.upstream)
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the pin did not take effect"))
}

/// Removes the pin: the winner is again `GATEWAY_WINNER` or Affine's champion.
#[utoipa::path(delete, path = "/admin/v1/winner", tag = "admin",
    responses(
        (status = 204, description = "unpinned (also when nothing was pinned)"),
        (status = 401, description = "missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the token lacks the admin scope", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn unpin_winner(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
) -> Result<Response, ApiError> {
    st.discovery.unpin().await.map_err(store_failed)?;
    tracing::info!(operator = %op.sub, "winner unpinned");
    Ok(StatusCode::NO_CONTENT.into_response())
}
