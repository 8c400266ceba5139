//! The one request pipeline every caller route runs: parse → estimate → admit → route → call →
//! answer or pump → settle.
//!
//! A route is an adapter ([`Surface`]): it parses its own request into a [`Call`] (the
//! upstream body, `max_tokens`, whether to stream), and renders the provider's answer in its
//! own shape — a whole body ([`Surface::read_whole`], [`Surface::render_whole`]) or stream
//! frames ([`Surface::on_chunk`] …). Everything between is here, once:
//!
//! - [`admission`]: the ticket (money, [`crate::metering`]) and the lease (limits,
//!   [`crate::quota`]) taken in one store round trip, and the guard that settles both exactly
//!   once on every path;
//! - [`whole`]: the non-streamed call, its usage and its settlement;
//! - [`pump`]: the streamed call, pumped by a detached task that owns the upstream response
//!   and settles whatever the client does.
//!
//! `/v1/reason` ([`crate::http::reason`]) and `/v1/chat/completions` ([`crate::http::chat`])
//! are the adapters today; a new API surface is another adapter, not a copy of this.

pub(crate) mod admission;
mod pump;
mod whole;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::api::{ModelInfo, Usage};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::http::AppState;
use crate::quota::headers as quota_headers;
use crate::quota::limiter::Scopes;
use crate::routing::Winner;
use crate::upstream::UpstreamError;
use crate::upstream::events::Chunk;

/// `X-Affine-Model`: the model id that served the request.
pub const X_AFFINE_MODEL: HeaderName = HeaderName::from_static("x-affine-model");
/// `X-Affine-Cost-Rao`: what the request cost.
pub const X_AFFINE_COST_RAO: HeaderName = HeaderName::from_static("x-affine-cost-rao");

/// What a request has fixed before it goes upstream.
#[derive(Debug)]
pub struct Job {
    /// The gateway's id of the request (`rsn_…`, `chatcmpl-…`): the settlement's key.
    pub id: String,
    /// Unix seconds of acceptance.
    pub created: i64,
    /// When the gateway received the request.
    pub started: Instant,
    /// The winner snapshot this request is served by, even if the winner changes meanwhile.
    pub winner: Arc<Winner>,
    /// The caller's request id (`X-Request-Id`).
    pub request_id: String,
    /// The gateway's input-token estimate (what is charged when the provider reports none).
    pub input_estimate: u64,
    /// The model that served when it was not the winner's upstream (`source: fallback`);
    /// set once the upstream answered.
    pub served: Option<ModelInfo>,
}

impl Job {
    /// A job for a request received at `started`, identified as `id`.
    pub fn new(
        id: String,
        started: Instant,
        winner: Arc<Winner>,
        request_id: &str,
        input_estimate: u64,
    ) -> Job {
        Job {
            id,
            created: time::OffsetDateTime::now_utc().unix_timestamp(),
            started,
            winner,
            request_id: request_id.to_owned(),
            input_estimate,
            served: None,
        }
    }

    /// The model as reported to the caller.
    pub fn model(&self) -> ModelInfo {
        self.served
            .clone()
            .unwrap_or_else(|| self.winner.model.clone())
    }
}

/// What a route asks of the provider.
#[derive(Debug)]
pub struct Call {
    /// The OpenAI-compatible request body, `model` set to the winner's.
    pub upstream_body: Vec<u8>,
    /// The output tokens reserved.
    pub max_tokens: u32,
    /// Streamed or whole.
    pub stream: bool,
    /// The caller's metadata, recorded in the usage event.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// A caller route's adapter: its answer shape, whole and streamed.
pub trait Surface: Send + Sized + 'static {
    /// The `route` label of the stream metrics.
    const ROUTE: &'static str;
    /// A whole answer, read.
    type Whole: Send;
    /// One frame of the streamed answer, as the client receives it.
    type Frame: Send + 'static;

    /// Reads the provider's whole answer: the route's form of it, the usage, and whether the
    /// usage is the gateway's estimate (the provider reported none).
    fn read_whole(
        &self,
        job: &Job,
        body: &Bytes,
    ) -> Result<(Self::Whole, Usage, bool), UpstreamError>;

    /// The response for a whole answer that cost `cost_rao`.
    fn render_whole(
        self,
        job: &Job,
        whole: Self::Whole,
        body: Bytes,
        cost_rao: u64,
        ttft_ms: u64,
    ) -> Response;

    /// Turns one chunk of the provider's stream into frames for the client; `Ok(true)` when
    /// the answer is complete.
    fn on_chunk(&mut self, chunk: Chunk, out: &mut Vec<Self::Frame>)
    -> Result<bool, UpstreamError>;

    /// The stream ended (complete, or the provider closed it): the last frames, or the
    /// error of an answer that is not complete.
    fn end(&mut self, out: &mut Vec<Self::Frame>) -> Result<(), UpstreamError>;

    /// The usage seen so far and whether it is the gateway's estimate.
    fn seen(&self) -> (Usage, bool);

    /// The frame that closes a complete stream, if the route has one.
    fn done_frame(&self, job: &Job, cost_rao: u64, ttft_ms: u64) -> Option<Self::Frame>;

    /// The frame that tells the client the stream broke.
    fn error_frame(&self, job: &Job, err: &ApiError) -> Self::Frame;

    /// The streamed response whose body is the frames received on `rx`.
    fn stream_response(rx: mpsc::Receiver<Self::Frame>) -> Response;
}

/// The current winner, or 503 `no_winner`.
pub fn winner(st: &AppState) -> Result<Arc<Winner>, ApiError> {
    st.winner.current().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NoWinner,
            "no winner model is known yet; try again shortly",
        )
        .with_retry_after(5)
    })
}

/// Runs an admitted-or-refused request through the pipeline with `surface` rendering it:
/// admits `call` for `caller` (held to `scopes`), calls the provider, answers or pumps, and
/// settles. Every response carries the admission's rate-limit headers.
pub async fn run<S: Surface>(
    st: &AppState,
    caller: &Caller,
    scopes: Scopes,
    job: Job,
    call: Call,
    surface: S,
) -> Response {
    let admitted = match admission::admit(st, caller, scopes, &job, &call).await {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    let policies = admitted.policies().to_vec();
    let result = if call.stream {
        pump::respond(st, job, call.upstream_body, admitted, surface).await
    } else {
        whole::respond(st, job, call.upstream_body, admitted, surface).await
    };
    let mut res = result.unwrap_or_else(IntoResponse::into_response);
    quota_headers::insert(res.headers_mut(), &policies);
    res
}

/// Milliseconds, saturating.
pub fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sets `X-Affine-Model` (and the cost, when known) on a metered response.
fn metered_headers(res: &mut Response, model: &str, cost_rao: Option<u64>) {
    if let Ok(v) = HeaderValue::from_str(model) {
        res.headers_mut().insert(X_AFFINE_MODEL, v);
    }
    if let Some(c) = cost_rao {
        res.headers_mut()
            .insert(X_AFFINE_COST_RAO, HeaderValue::from(c));
    }
}

/// Records the outcome and duration of the upstream call that served (attempts that failed
/// before it, and the wait the overhead histogram subtracts, are recorded by
/// [`crate::routing::UpstreamSet`]).
fn observe_upstream(st: &AppState, upstream: &str, started: Instant, err: Option<&UpstreamError>) {
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
