//! `POST /v1/auth/session`: one signed request buys a short-lived `reason` token, so
//! high-rate callers skip per-request signature work.
//!
//! Only btauth/1 is taken (the authentication layer refuses Epistula here): it signs the
//! method and the path, so a request signed for another route cannot be redeemed for a token.

use axum::Json;
use axum::extract::{Extension, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::auth::jwt::{Scope, now_secs};
use crate::error::ApiError;
use crate::http::AppState;

/// The session token.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    /// A bearer token with the `reason` scope for the signing hotkey.
    pub token: String,
    /// When it expires (RFC 3339).
    #[schema(example = "2026-11-25T10:15:00Z")]
    pub expires_at: String,
}

/// Exchanges a btauth/1-signed request for a short-lived bearer token.
///
/// Epistula is refused (401 `auth_malformed`): it signs neither the method nor the path.
#[utoipa::path(post, path = "/v1/auth/session", tag = "auth",
    responses(
        (status = 200, description = "a session token for the signing hotkey", body = Session),
        (status = 401, description = "auth_missing, auth_malformed (also: an Epistula-signed request; this route takes btauth/1 only), bad_signature, stale_request, replayed_request, wrong_receiver", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden (a token instead of a signature), unregistered_hotkey, account_disabled", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn session(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Session>, ApiError> {
    let ttl = st.config.auth.session_ttl();
    let (token, claims) = st
        .auth
        .jwt
        .issue(&caller.account_id, &[Scope::Reason], ttl, now_secs());
    let expires_at = time::OffsetDateTime::from_unix_timestamp(claims.exp as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    Ok(Json(Session { token, expires_at }))
}
