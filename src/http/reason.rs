//! `POST /v1/reason` (docs/API.md §4).

use std::time::Instant;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::api::{Cost, ModelInfo, ReasonLimits, ReasonRequest, ReasonResponse, Timing, Usage};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::http::AppState;
use crate::http::extract::JsonBody;
use crate::http::{reason_stream, request_id};
use crate::metering::{Outcome, Status, Ticket};
use crate::quota::Lease;
use crate::quota::headers as quota_headers;
use crate::routing::Winner;
use crate::upstream::answer::from_completion;
use crate::upstream::openai::ChatRequest;

/// `X-Affine-Model`: the model id that served the request.
pub const X_AFFINE_MODEL: HeaderName = HeaderName::from_static("x-affine-model");
/// `X-Affine-Cost-Rao`: what the request cost.
pub const X_AFFINE_COST_RAO: HeaderName = HeaderName::from_static("x-affine-cost-rao");

/// What a request has fixed before it goes upstream; shared by the whole and streamed paths.
#[derive(Debug)]
pub struct Prepared {
    /// `rsn_…`.
    pub id: String,
    /// Unix seconds of acceptance.
    pub created: i64,
    /// When the gateway received the request.
    pub started: Instant,
    /// The winner snapshot this request is served by, even if the winner changes meanwhile.
    pub winner: std::sync::Arc<Winner>,
    /// The caller's request id.
    pub request_id: String,
    /// Whether reasoning goes back to the caller.
    pub include_reasoning: bool,
    /// The gateway's input-token estimate (what is charged when the provider reports none).
    pub input_estimate: u64,
    /// The model that served when it was not the winner's upstream (`source: fallback`);
    /// set once the upstream answered.
    pub served: Option<ModelInfo>,
}

impl Prepared {
    /// The response object for a finished request.
    pub fn response(
        &self,
        output: String,
        reasoning: Option<String>,
        finish_reason: crate::api::FinishReason,
        usage: Usage,
        cost_rao: u64,
        ttft_ms: u64,
    ) -> ReasonResponse {
        ReasonResponse {
            id: self.id.clone(),
            object: "reason.result".into(),
            created: self.created,
            model: self.model(),
            output,
            reasoning,
            finish_reason,
            usage,
            cost: Cost::from_rao(cost_rao),
            timing: Timing {
                ttft_ms,
                total_ms: ms(self.started.elapsed()),
            },
        }
    }

    /// The model as reported to the caller.
    pub fn model(&self) -> ModelInfo {
        self.served
            .clone()
            .unwrap_or_else(|| self.winner.model.clone())
    }
}

/// Milliseconds, saturating.
pub fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sets `X-Affine-Model` (and the cost, when known) on a metered response.
pub fn metered_headers(res: &mut Response, model: &str, cost_rao: Option<u64>) {
    if let Ok(v) = HeaderValue::from_str(model) {
        res.headers_mut().insert(X_AFFINE_MODEL, v);
    }
    if let Some(c) = cost_rao {
        res.headers_mut()
            .insert(X_AFFINE_COST_RAO, HeaderValue::from(c));
    }
}

/// Answers a reasoning request, whole or streamed.
#[utoipa::path(
    post,
    path = "/v1/reason",
    tag = "reason",
    request_body(content = ReasonRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer (or, with `stream: true`, `text/event-stream` of `reasoning`/`output` events and one `done` or `error`)", body = ReasonResponse),
        (status = 400, description = "invalid_request, invalid_json, unknown_field, max_tokens_exceeds_plan", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "auth_missing, auth_malformed, bad_signature, stale_request, replayed_request, wrong_receiver, token_invalid, token_expired, token_revoked", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden, unregistered_hotkey, account_disabled", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited, quota_exceeded, concurrency_limited (with Retry-After, RateLimit-Policy and RateLimit)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body_too_large", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported_media_type", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "upstream_error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "no_winner, upstream_unavailable, store_unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 504, description = "upstream_timeout", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reason(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let mut req = ReasonRequest::from_slice(&body)?;
    let scopes = st.limiter.scopes(&caller);
    let plan = &scopes.plan;
    let max_tokens = req.validate(ReasonLimits {
        default_max_tokens: st.limits.default_max_tokens.min(plan.max_tokens),
        max_tokens_limit: st.limits.max_tokens_limit.min(plan.max_tokens),
    })?;
    let winner = st.winner.current().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NoWinner,
            "no winner model is known yet; try again shortly",
        )
        .with_retry_after(5)
    })?;
    let upstream_body = serde_json::to_vec(&ChatRequest::from_reason(
        &req,
        &winner.model.id,
        max_tokens,
    ))
    .map_err(|_| ApiError::new(ErrorCode::Internal, "could not encode the request"))?;
    let input_estimate = req.input_token_estimate();
    let mut prep = Prepared {
        id: format!("rsn_{}", uuid::Uuid::new_v4().simple()),
        created: time::OffsetDateTime::now_utc().unix_timestamp(),
        started,
        winner,
        request_id: request_id::of(&headers).to_owned(),
        include_reasoning: req.wants_reasoning(),
        input_estimate,
        served: None,
    };
    let ticket = Ticket::new(
        &caller,
        plan,
        &prep.id,
        &prep.winner.model,
        input_estimate,
        u64::from(max_tokens),
        req.metadata.take(),
        crate::metering::now_ms(),
    );
    let estimate = input_estimate + u64::from(max_tokens);
    let lease = match st
        .limiter
        .admit(&caller, &prep.id, estimate, Some(ticket))
        .await
    {
        Ok(lease) => lease,
        Err(refused) => return Ok(refused.into_response()),
    };
    let policies = lease.policies.clone();
    let stream = req.stream;
    drop(req);
    let result = if stream {
        reason_stream::respond(st, prep, upstream_body, lease).await
    } else {
        whole(&st, &mut prep, upstream_body, lease).await
    };
    let mut res = result.unwrap_or_else(IntoResponse::into_response);
    quota_headers::insert(res.headers_mut(), &policies);
    Ok(res)
}

/// The non-streamed answer.
async fn whole(
    st: &AppState,
    prep: &mut Prepared,
    upstream_body: Vec<u8>,
    mut lease: Lease,
) -> Result<Response, ApiError> {
    let up_started = Instant::now();
    // Failed attempts (and fail-overs) are counted by the upstream set; on a failure the
    // lease drops here and gives the whole estimate back.
    let (bytes, headers_at, served) = st.upstream.complete(&prep.winner, upstream_body).await?;
    observe_upstream(st, &served.upstream, up_started, None);
    if served.fallback {
        let m = served.model_info(&prep.winner);
        lease.served_by(&m);
        prep.served = Some(m);
    }
    let answer = from_completion(&bytes, prep.include_reasoning).inspect_err(|e| {
        tracing::warn!(request_id = %prep.request_id, error = %e, "upstream answer rejected");
    })?;
    let cost = lease.settle(Outcome::measured(
        answer.usage,
        answer.usage_estimated,
        prep.input_estimate,
        Status::Ok,
    ));
    let ttft_ms = ms(headers_at.duration_since(prep.started));
    let body = prep.response(
        answer.output,
        answer.reasoning,
        answer.finish_reason,
        answer.usage,
        cost,
        ttft_ms,
    );
    let cost = body.cost.rao;
    let mut res = Json(body).into_response();
    metered_headers(&mut res, &prep.model().id, Some(cost));
    Ok(res)
}

/// Records the outcome and duration of the upstream call that served (attempts that failed
/// before it, and the wait the overhead histogram subtracts, are recorded by
/// [`crate::routing::UpstreamSet`]).
pub fn observe_upstream(
    st: &AppState,
    upstream: &str,
    started: Instant,
    err: Option<&crate::upstream::UpstreamError>,
) {
    let outcome = err.map_or("ok", |e| e.kind());
    st.metrics
        .upstream_requests
        .with_label_values(&[upstream, outcome])
        .inc();
    st.metrics
        .upstream_duration
        .with_label_values(&[outcome])
        .observe(started.elapsed().as_secs_f64());
    if let Some(e) = err {
        tracing::warn!(upstream, error = %e, kind = outcome, "upstream call failed");
    }
}
