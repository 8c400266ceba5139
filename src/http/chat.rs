//! The OpenAI-compatible surface: `POST /v1/chat/completions` and `GET /v1/models`.
//!
//! Existing OpenAI SDKs point their base URL here. Requests are authenticated, limited and
//! settled exactly like `/v1/reason`; the model may be `affine-winner` or the current winner's
//! id. The provider's answer is passed through as it came (whole body, or the SSE bytes as
//! they arrive), so nothing is re-serialised; it is only read on the side for its usage.
//! Errors use the OpenAI error shape (see [`crate::error`]).

use std::convert::Infallible;
use std::time::Instant;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::api::Usage;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::http::AppState;
use crate::http::chat_request::ChatPlan;
use crate::http::extract::JsonBody;
use crate::http::reason::{X_AFFINE_COST_RAO, metered_headers, observe_upstream};
use crate::metering::{Outcome, Status, Ticket};
use crate::quota::Lease;
use crate::quota::headers as quota_headers;
use crate::routing::{Opened, Served, Winner};
use crate::upstream::UpstreamError;
use crate::upstream::client::{next_chunk, next_deadline};
use crate::upstream::openai::{ChatCompletion, ChatUsage, StreamChunk};
use crate::upstream::sse::SseDecoder;

/// The `route` label of this route's stream metrics.
const ROUTE: &str = "/v1/chat/completions";

/// The alias that always means "the current winner".
pub const WINNER_ALIAS: &str = "affine-winner";

/// What the OpenAI-compatible route reads. The provider receives only an allowlist of fields
/// (sampling parameters, `stop`, `seed`, `response_format`, `reasoning_effort`, `tools`, … —
/// listed in docs/API.md §5); client bookkeeping (`user`, `metadata`, `store`, …) is accepted and
/// dropped; any other field, `n` above 1 and `best_of` are refused with 400 `invalid_request`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// `affine-winner` or the current winner's id (see `GET /v1/models`).
    #[schema(example = "affine-winner")]
    pub model: String,
    /// The conversation.
    #[schema(min_items = 1)]
    pub messages: Vec<crate::api::Message>,
    /// Most tokens to generate (the plan may allow less than the maximum shown).
    #[schema(minimum = 1, maximum = 32768)]
    pub max_tokens: Option<u32>,
    /// Stream `chat.completion.chunk` events.
    pub stream: Option<bool>,
    /// Sampling temperature.
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
}

/// OpenAI-compatible chat completions, whole or streamed.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    request_body(content = ChatCompletionRequest, content_type = "application/json",
        description = "An OpenAI chat completions request; `model` is `affine-winner` or the current winner's id"),
    responses(
        (status = 200, description = "the provider's chat.completion (or chat.completion.chunk events when streaming)", body = serde_json::Value),
        (status = 400, description = "OpenAI error shape: invalid_request (also a field outside the forwarded allowlist, `n` above 1, `best_of`, non-text content parts), invalid_json, max_tokens_exceeds_plan", body = crate::error::OpenAiErrorBody),
        (status = 401, description = "OpenAI error shape", body = crate::error::OpenAiErrorBody),
        (status = 404, description = "unknown model (not_found)", body = crate::error::OpenAiErrorBody),
        (status = 429, description = "rate_limited, quota_exceeded, concurrency_limited", body = crate::error::OpenAiErrorBody),
        (status = 502, description = "upstream_error", body = crate::error::OpenAiErrorBody),
        (status = 503, description = "no_winner, upstream_unavailable", body = crate::error::OpenAiErrorBody),
        (status = 504, description = "upstream_timeout", body = crate::error::OpenAiErrorBody),
    ))]
pub async fn chat_completions(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let req = ChatPlan::parse(&body)?;
    let winner = st.winner.current().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NoWinner,
            "no winner model is known yet; try again shortly",
        )
        .with_retry_after(5)
    })?;
    if req.model != WINNER_ALIAS && req.model != winner.model.id {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "model `{}` is not served here; use `{WINNER_ALIAS}` or `{}`",
                req.model, winner.model.id
            ),
        ));
    }
    let scopes = st.limiter.scopes(&caller);
    let ceiling = st.limits.max_tokens_limit.min(scopes.plan.max_tokens);
    let max_tokens = req
        .max_tokens
        .unwrap_or(st.limits.default_max_tokens.min(ceiling));
    if max_tokens == 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`max_tokens` must be at least 1",
        ));
    }
    if max_tokens > ceiling {
        return Err(ApiError::new(
            ErrorCode::MaxTokensExceedsPlan,
            format!("`max_tokens` is {max_tokens}; the most allowed is {ceiling}"),
        ));
    }
    let input_estimate = req.input_estimate;
    let estimate = input_estimate + u64::from(max_tokens);
    let stream = req.stream;
    let upstream_body = req.upstream_body(&winner.model.id, max_tokens)?;

    let request_id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let ticket = Ticket::new(
        &caller,
        &scopes.plan,
        &request_id,
        &winner.model,
        input_estimate,
        u64::from(max_tokens),
        None,
        crate::metering::now_ms(),
    );
    let lease = match st
        .limiter
        .admit(&caller, &request_id, estimate, Some(ticket))
        .await
    {
        Ok(l) => l,
        Err(refused) => return Ok(refused.into_response()),
    };
    let policies = lease.policies.clone();
    let model = winner.model.id.clone();
    let result = if stream {
        streamed(&st, &winner, upstream_body, lease, input_estimate).await
    } else {
        whole(&st, &winner, upstream_body, lease, input_estimate).await
    };
    let mut res = result.unwrap_or_else(IntoResponse::into_response);
    quota_headers::insert(res.headers_mut(), &policies);
    if res.status().is_success() {
        // A fallback may have served another model than the winner's.
        let model = res
            .extensions()
            .get::<Served>()
            .map_or(model, |s| s.model.to_string());
        metered_headers(&mut res, &model, None);
    }
    Ok(res)
}

/// The outcome of a chat completion: the provider's usage, or the gateway's estimate (the
/// deltas seen) when it sent none.
fn chat_outcome(
    u: Option<&ChatUsage>,
    input_estimate: u64,
    deltas: u64,
    status: Status,
) -> Outcome {
    let (input, output) = u.map_or((0, deltas), |u| (u.prompt_tokens, u.completion_tokens));
    let usage = Usage {
        input_tokens: input,
        output_tokens: output,
        reasoning_tokens: 0,
        total_tokens: input.saturating_add(output),
    };
    Outcome::measured(usage, u.is_none(), input_estimate, status)
}

async fn whole(
    st: &AppState,
    winner: &Winner,
    upstream_body: Vec<u8>,
    mut lease: Lease,
    input_estimate: u64,
) -> Result<Response, ApiError> {
    let up_started = Instant::now();
    let (bytes, _, served) = st.upstream.complete(winner, upstream_body).await?;
    observe_upstream(st, &served.upstream, up_started, None);
    if served.fallback {
        lease.served_by(&served.model_info(winner));
    }
    let parsed: ChatCompletion = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::from(UpstreamError::Malformed(format!(
            "completion is not valid JSON: {e}"
        )))
    })?;
    let cost = lease.settle(chat_outcome(
        parsed.usage.as_ref(),
        input_estimate,
        0,
        Status::Ok,
    ));
    let mut res = (
        Extension(served),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response();
    res.headers_mut()
        .insert(X_AFFINE_COST_RAO, HeaderValue::from(cost));
    Ok(res)
}

async fn streamed(
    st: &AppState,
    winner: &Winner,
    upstream_body: Vec<u8>,
    mut lease: Lease,
    input_estimate: u64,
) -> Result<Response, ApiError> {
    let up_started = Instant::now();
    let Opened {
        response: mut res,
        served,
    } = st.upstream.open(winner, upstream_body).await?;
    if served.fallback {
        lease.served_by(&served.model_info(winner));
    }
    let (timeouts, started) = (served.timeouts, served.started);
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let tag = Extension(served.clone());
    let st2 = st.clone();
    tokio::spawn(async move {
        st2.metrics.streams_active.inc();
        // A client that stops reading fills the channel; past this deadline per chunk the
        // stream ends as `client_closed`, freeing the slot, the hold and the upstream call.
        let send_deadline = st2.config.server.stream_send_timeout();
        let send = |bytes: Bytes| {
            let (tx, st2) = (&tx, &st2);
            async move {
                match tx.send_timeout(bytes, send_deadline).await {
                    Ok(()) => true,
                    Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                        st2.metrics
                            .conn
                            .stream_send_timeouts
                            .with_label_values(&[ROUTE])
                            .inc();
                        false
                    }
                    Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
                }
            }
        };
        let mut decoder = SseDecoder::new(crate::http::reason_stream::MAX_UPSTREAM_EVENT_BYTES);
        let (mut used, mut deltas, mut first) = (None::<ChatUsage>, 0u64, true);
        let mut client_gone = false;
        let outcome: Result<(), UpstreamError> = loop {
            let now = Instant::now();
            let (deadline, kind) = next_deadline(timeouts, started, !first, now);
            match next_chunk(&mut res, deadline.saturating_duration_since(now), kind).await {
                Ok(Some(bytes)) => {
                    if first {
                        st2.metrics
                            .ttft
                            .with_label_values(&[ROUTE])
                            .observe(started.elapsed().as_secs_f64());
                    }
                    first = false;
                    decoder.push(&bytes);
                    while let Ok(Some(ev)) = decoder.next_event() {
                        if let Ok(c) = serde_json::from_slice::<StreamChunk>(&ev.data) {
                            deltas += c.choices.len() as u64;
                            if let Some(u) = c.usage {
                                used = Some(u);
                            }
                        }
                    }
                    if !send(bytes).await {
                        client_gone = true;
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => {
                    // Tell an OpenAI client in its own terms that the stream broke.
                    let err = ApiError::from(e.clone());
                    st2.metrics
                        .stream_failures
                        .with_label_values(&[ROUTE, err.code.as_str()])
                        .inc();
                    let body = serde_json::json!({"error": {"message": err.detail, "type": err.code.openai_type(), "code": err.code}});
                    send(Bytes::from(format!("data: {body}\n\n"))).await;
                    break Err(e);
                }
            }
        };
        drop(res);
        observe_upstream(&st2, &served.upstream, up_started, outcome.as_ref().err());
        let status = match (&outcome, client_gone) {
            (Err(_), _) => Status::Interrupted,
            (Ok(()), true) => Status::ClientClosed,
            (Ok(()), false) => Status::Ok,
        };
        let delivered = deltas > 0 || used.is_some();
        lease.settle(
            chat_outcome(used.as_ref(), input_estimate, deltas, status).nothing_if(!delivered),
        );
        st2.metrics.streams_active.dec();
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok::<_, Infallible>))
    }));
    Ok((
        tag,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response())
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelEntry {
    /// The model id to send as `model`.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds since the model has been the winner.
    pub created: i64,
    /// Who serves it.
    pub owned_by: &'static str,
}

/// `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// `affine-winner`, then the concrete current model.
    pub data: Vec<ModelEntry>,
}

/// The models callers may ask for: the `affine-winner` alias and the current winner's id.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, description = "OpenAI-style model list", body = ModelList)))]
pub async fn models(State(st): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let w = st.winner.current().ok_or_else(|| {
        ApiError::new(ErrorCode::NoWinner, "no winner model is known yet").with_retry_after(5)
    })?;
    let created = w.since.unix_timestamp();
    Ok(Json(ModelList {
        object: "list",
        data: vec![
            ModelEntry {
                id: WINNER_ALIAS.into(),
                object: "model",
                created,
                owned_by: "affine",
            },
            ModelEntry {
                id: w.model.id.clone(),
                object: "model",
                created,
                owned_by: "affine",
            },
        ],
    }))
}
