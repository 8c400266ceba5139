//! `/healthz`, `/readyz` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::AppState;

/// Body of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `unready`.
    pub status: &'static str,
    /// Per-dependency results (`/readyz` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Checks>,
}

/// What `/readyz` checked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    /// `ok`, or `error` when Redis does not answer (`ok` for the in-memory store).
    pub store: &'static str,
    /// `ok`, or `missing` when no winner is known.
    pub winner: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        checks: None,
    })
}

/// Ready to serve: Redis (if configured) answers and a winner is known.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready", body = Health),
              (status = 503, description = "not ready; `checks` says why", body = Health)))]
pub async fn readyz(State(st): State<AppState>) -> Response {
    let store_ok = st.store.ping().await.is_ok();
    let winner_ok = st.winner.current().is_some();
    let ready = store_ok && winner_ok;
    let body = Health {
        status: if ready { "ready" } else { "unready" },
        checks: Some(Checks {
            store: if store_ok { "ok" } else { "error" },
            winner: if winner_ok { "ok" } else { "missing" },
        }),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus text exposition.
///
/// Served on the API listener by default. With `server.metrics_listen`
/// (`GATEWAY_METRICS_LISTEN`) it is served on that address alone and the API listener answers
/// 404 here, so that a NetworkPolicy can keep the metrics port to Prometheus.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}
