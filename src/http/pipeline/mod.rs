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
//! `/v1/reason` ([`crate::http::reason`]), `/v1/chat/completions` ([`crate::http::chat`])
//! and `/v1/responses` ([`crate::http::responses`]) are the adapters today; a new API surface is another adapter, not a copy of this.

pub(crate) mod admission;
mod pump;
mod whole;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::api::{ModelInfo, Usage};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::http::extract::JsonBody;
use crate::http::{AppState, request_id};
use crate::quota::headers as quota_headers;
use crate::quota::limiter::Scopes;
use crate::routing::{Opened, Served, Winner};
use crate::upstream::UpstreamError;
use crate::upstream::events::Chunk;

/// `X-Affine-Model`: the model id that served the request.
pub const X_AFFINE_MODEL: HeaderName = HeaderName::from_static("x-affine-model");
/// `X-Affine-Cost-Rao`: what the request cost.
pub const X_AFFINE_COST_RAO: HeaderName = HeaderName::from_static("x-affine-cost-rao");

/// What every caller route receives: the state, the authenticated caller, the caller's
/// request id, and the JSON body (content type and size checked, read once).
#[derive(Debug)]
pub struct Incoming {
    /// The shared state.
    pub st: AppState,
    /// Who is calling (set by the auth middleware).
    pub caller: Caller,
    /// `X-Request-Id`.
    pub request_id: String,
    /// The request body.
    pub body: Bytes,
    /// When the body had been read.
    pub started: Instant,
}

impl FromRequest<AppState> for Incoming {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, ApiError> {
        let caller = req.extensions().get::<Caller>().cloned().ok_or_else(|| {
            // Only reachable if a caller route were mounted outside the auth layer.
            ApiError::new(ErrorCode::Internal, "the request was not authenticated")
        })?;
        let request_id = request_id::of(req.headers()).to_owned();
        let JsonBody(body) = JsonBody::from_request(req, st).await?;
        // Timing (`total_ms`, time to first token) counts from here, once the body is in.
        let started = Instant::now();
        Ok(Incoming {
            st: st.clone(),
            caller,
            request_id,
            body,
            started,
        })
    }
}

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
    /// A job for the request `inc`, identified as `id`.
    pub fn new(id: String, inc: &Incoming, winner: Arc<Winner>, input_estimate: u64) -> Job {
        Job {
            id,
            created: time::OffsetDateTime::now_utc().unix_timestamp(),
            started: inc.started,
            winner,
            request_id: inc.request_id.clone(),
            input_estimate,
            served: None,
        }
    }

    /// Records who served; a fallback's model is reported and charged as such.
    fn served_by(&mut self, served: &Served, admitted: &mut admission::Admitted) {
        if served.fallback {
            let m = served.model_info(&self.winner);
            admitted.served_by(&m);
            self.served = Some(m);
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
    let mut res = call_upstream(st, job, call, admitted, surface)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    quota_headers::insert(res.headers_mut(), &policies);
    res
}

/// Calls the provider (retries and fail-overs happen inside, before the caller got a byte;
/// failed attempts are counted there) and answers whole or streamed. On a failure the
/// admission drops here and gives the whole estimate back.
async fn call_upstream<S: Surface>(
    st: &AppState,
    mut job: Job,
    call: Call,
    mut admitted: admission::Admitted,
    surface: S,
) -> Result<Response, ApiError> {
    let up_started = Instant::now();
    if call.stream {
        let Opened { response, served } = st.upstream.open(&job.winner, call.upstream_body).await?;
        job.served_by(&served, &mut admitted);
        Ok(pump::respond(
            st, job, response, served, up_started, admitted, surface,
        ))
    } else {
        let (bytes, headers_at, served) = st
            .upstream
            .complete(&job.winner, call.upstream_body)
            .await?;
        observe_upstream(st, &served.upstream, up_started, None);
        job.served_by(&served, &mut admitted);
        whole::respond(job, bytes, headers_at, admitted, surface)
    }
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
