//! `GET /v1/winner`.

use axum::Json;
use axum::extract::State;

use crate::api::WinnerResponse;
use crate::error::{ApiError, ErrorCode};
use crate::http::AppState;

/// The current winner, where it came from and since when.
#[utoipa::path(get, path = "/v1/winner", tag = "reason",
    responses((status = 200, description = "the current winner", body = WinnerResponse),
              (status = 503, description = "no_winner", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn winner(State(st): State<AppState>) -> Result<Json<WinnerResponse>, ApiError> {
    st.winner.describe(&st.upstream).map(Json).ok_or_else(|| {
        ApiError::new(ErrorCode::NoWinner, "no winner model is known yet").with_retry_after(5)
    })
}
