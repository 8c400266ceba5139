//! The OpenAI-compatible surface: `POST /v1/chat/completions` and `GET /v1/models`.
//!
//! Existing OpenAI SDKs point their base URL here. Requests run the same
//! [`pipeline`](crate::http::pipeline) as `/v1/reason` — authenticated, limited and settled
//! the same way; this module is only the adapter. The model may be `affine-winner` or the
//! current winner's id. The provider's answer is passed through as it came (whole body, or
//! the SSE bytes as they arrive), so nothing is re-serialised; it is only read on the side for
//! its usage — except when the caller asked for the reasoning to be left out
//! (`include_reasoning: false` or `reasoning.exclude: true`): then `reasoning_content` (and an
//! inline `<think>` block) is removed from the answer or from each chunk
//! ([`crate::upstream::reasoning`]). Errors use the OpenAI error shape (see [`crate::error`]).

use std::convert::Infallible;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::api::Usage;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::http::AppState;
use crate::http::chat_request::ChatPlan;
use crate::http::pipeline::{self, Call, Incoming, Job, Surface};
use crate::upstream::UpstreamError;
use crate::upstream::events::Chunk;
use crate::upstream::openai::{ChatCompletion, ChatUsage, StreamChunk};
use crate::upstream::reasoning::StreamStripper;

/// The alias that always means "the current winner".
pub const WINNER_ALIAS: &str = "affine-winner";

/// OpenAI-compatible chat completions, whole or streamed.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    request_body(content = crate::http::chat_schema::ChatCompletionRequest, content_type = "application/json",
        description = "An OpenAI chat completions request; `model` is `affine-winner` or the current winner's id"),
    responses(
        (status = 200, description = "the provider's chat.completion (or chat.completion.chunk events when streaming)", body = serde_json::Value),
        (status = 400, description = "OpenAI error shape: invalid_request (also a field outside the forwarded allowlist, `n` above 1, `best_of`, non-text content parts), invalid_json, max_tokens_exceeds_plan", body = crate::error::OpenAiErrorBody),
    ))]
pub async fn chat_completions(inc: Incoming) -> Result<Response, ApiError> {
    let st = &inc.st;
    let req = ChatPlan::parse(&inc.body)?;
    let winner = pipeline::winner(st)?;
    if req.model != WINNER_ALIAS && req.model != winner.model.id {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "model `{}` is not served here; use `{WINNER_ALIAS}` or `{}`",
                req.model, winner.model.id
            ),
        ));
    }
    let scopes = st.limiter.scopes(&inc.caller);
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
    let (input_estimate, stream) = (req.input_estimate, req.stream);
    let surface = Chat {
        strip: (!req.include_reasoning).then(StreamStripper::default),
        ..Chat::default()
    };
    let call = Call {
        upstream_body: req.upstream_body(&winner.model.id, max_tokens)?,
        max_tokens,
        stream,
        metadata: None,
    };
    let job = Job::new(
        format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        &inc,
        winner,
        input_estimate,
    );
    Ok(pipeline::run(st, &inc.caller, scopes, job, call, surface).await)
}

/// The `/v1/chat/completions` adapter: the provider's bytes go through unchanged (unless the
/// reasoning is to be left out); its usage (or, when it reports none, the number of deltas
/// seen) is read on the side.
#[derive(Debug, Default)]
struct Chat {
    usage: Option<ChatUsage>,
    deltas: u64,
    /// Set when the caller asked for no reasoning: rewrites what goes out.
    strip: Option<StreamStripper>,
}

/// A chat usage in our terms, and whether it is the gateway's estimate.
fn usage_of(u: Option<&ChatUsage>, deltas: u64) -> (Usage, bool) {
    let (input, output) = u.map_or((0, deltas), |u| (u.prompt_tokens, u.completion_tokens));
    let usage = Usage {
        input_tokens: input,
        output_tokens: output,
        reasoning_tokens: 0,
        total_tokens: input.saturating_add(output),
    };
    (usage, u.is_none())
}

impl Surface for Chat {
    const ROUTE: &'static str = "/v1/chat/completions";
    type Whole = ();
    type Frame = Bytes;

    fn read_whole(&self, _job: &Job, body: &Bytes) -> Result<((), Usage, bool), UpstreamError> {
        let parsed: ChatCompletion = serde_json::from_slice(body)
            .map_err(|e| UpstreamError::Malformed(format!("completion is not valid JSON: {e}")))?;
        let (usage, estimated) = usage_of(parsed.usage.as_ref(), 0);
        Ok(((), usage, estimated))
    }

    fn render_whole(self, _job: &Job, _: (), body: Bytes, _cost: u64, _ttft_ms: u64) -> Response {
        let body = match self.strip {
            // `read_whole` already parsed it, so this is a JSON object.
            Some(_) => {
                crate::upstream::reasoning::strip_completion(&body).map_or(body, Bytes::from)
            }
            None => body,
        };
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    }

    fn on_chunk(&mut self, chunk: Chunk, out: &mut Vec<Bytes>) -> Result<bool, UpstreamError> {
        for ev in &chunk.events {
            // `[DONE]` and anything else that is not a chunk carries no usage.
            if let Ok(c) = serde_json::from_slice::<StreamChunk>(&ev.data) {
                self.deltas += c.choices.len() as u64;
                if let Some(u) = c.usage {
                    self.usage = Some(u);
                }
            }
        }
        if let Some(strip) = &mut self.strip {
            // Re-emitted event by event: the provider's bytes carry the reasoning.
            let mut frame = Vec::with_capacity(chunk.bytes.len());
            for ev in &chunk.events {
                let mut flushed = None;
                let data = strip.event(&ev.data, &mut flushed);
                for d in flushed.iter().chain(data.iter()) {
                    frame.extend_from_slice(b"data: ");
                    frame.extend_from_slice(d);
                    frame.extend_from_slice(b"\n\n");
                }
            }
            if !frame.is_empty() {
                out.push(Bytes::from(frame));
            }
        } else if !chunk.bytes.is_empty() {
            out.push(chunk.bytes);
        }
        // The provider's bytes go through to its end of the body.
        Ok(false)
    }

    fn end(&mut self, _out: &mut Vec<Bytes>) -> Result<(), UpstreamError> {
        Ok(())
    }

    fn seen(&self) -> (Usage, bool) {
        usage_of(self.usage.as_ref(), self.deltas)
    }

    fn done_frame(&self, _job: &Job, _cost_rao: u64, _ttft_ms: u64) -> Option<Bytes> {
        None
    }

    fn error_frame(&self, _job: &Job, err: &ApiError) -> Bytes {
        // Tell an OpenAI client in its own terms that the stream broke. The provider's bytes
        // may have stopped inside a line: the blank line first ends it, so the error is an
        // event of its own (between events it is an empty line, which dispatches nothing).
        let body = serde_json::json!({"error": {"message": err.detail, "type": err.code.openai_type(), "code": err.code}});
        Bytes::from(format!("\n\ndata: {body}\n\n"))
    }

    fn stream_response(mut rx: mpsc::Receiver<Bytes>) -> Response {
        let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx).map(|o| o.map(Ok::<_, Infallible>))
        }));
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            body,
        )
            .into_response()
    }
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
    /// The model's context window in tokens, as the provider's catalogue lists it; absent until
    /// the gateway has read a catalogue that lists it (the catalogue is read when a plan is
    /// priced by the provider).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
    /// The served model's revision (commit sha), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The chain block since which Affine names this model its champion, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_block: Option<u64>,
    /// What a request served by it costs the caller on the caller's plan, per 1M tokens, in
    /// Chutes' shape (`price.input`, `price.output`). Absent while a provider-priced plan has
    /// no good provider price for the model yet (such requests are refused with 503
    /// `price_unavailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<ModelPrice>,
}

/// A price per 1M tokens, in `GET /v1/models`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelPrice {
    /// Per 1M input tokens.
    pub input: PriceAmount,
    /// Per 1M output tokens.
    pub output: PriceAmount,
}

/// One price per 1M tokens, in rao (what is charged) and the same amount in TAO.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PriceAmount {
    /// Rao per 1M tokens, exactly what is charged.
    pub rao: u64,
    /// The same amount in TAO (rao / 10^9), written as an exact decimal JSON number.
    #[schema(value_type = f64, example = 0.00054)]
    pub tao: Box<serde_json::value::RawValue>,
}

impl PriceAmount {
    fn of(rao: u64) -> PriceAmount {
        let text = crate::upstream::catalogue::rao_to_tao_text(rao);
        PriceAmount {
            rao,
            // A decimal written by `rao_to_tao_text` is always a valid JSON number.
            tao: serde_json::value::RawValue::from_string(text)
                .unwrap_or_else(|_| serde_json::value::to_raw_value(&0).unwrap_or_default()),
        }
    }
}

impl From<crate::metering::Prices> for ModelPrice {
    fn from(p: crate::metering::Prices) -> ModelPrice {
        ModelPrice {
            input: PriceAmount::of(p.input_rao_per_mtok),
            output: PriceAmount::of(p.output_rao_per_mtok),
        }
    }
}

/// `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// `affine-winner`, then the concrete current model.
    pub data: Vec<ModelEntry>,
}

/// The models callers may ask for: the `affine-winner` alias and the current winner's id,
/// each with its price on the caller's plan, its context window, revision and `since_block`.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, description = "OpenAI-style model list; `price` is the caller's plan's price for the model", body = ModelList)))]
pub async fn models(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ModelList>, ApiError> {
    let w = st.winner.current().ok_or_else(|| {
        ApiError::new(ErrorCode::NoWinner, "no winner model is known yet").with_retry_after(5)
    })?;
    let created = w.since.unix_timestamp();
    let plan = st.limiter.scopes(&caller).plan;
    let price = st
        .meter
        .prices(plan.pricing(), &w.model.id)
        .ok()
        .map(ModelPrice::from);
    let context_length = st
        .meter
        .provider_prices()
        .and_then(|pp| pp.context_length(&w.model.id));
    let entry = |id: String| ModelEntry {
        id,
        object: "model",
        created,
        owned_by: "affine",
        context_length,
        revision: w.model.revision.clone(),
        since_block: w.model.since_block,
        price: price.clone(),
    };
    Ok(Json(ModelList {
        object: "list",
        data: vec![entry(WINNER_ALIAS.into()), entry(w.model.id.clone())],
    }))
}
