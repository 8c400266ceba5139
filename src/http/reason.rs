//! `POST /v1/reason` (docs/API.md §4): the request mapping and the answer's shape, as an
//! adapter of the [`pipeline`](crate::http::pipeline).
//!
//! Streamed events: `reasoning` and `output` (`{"delta": …}`), then exactly one `done` (the
//! response without its texts) or one `error` (a problem object).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::api::{
    Cost, FinishReason, ReasonDone, ReasonLimits, ReasonRequest, ReasonResponse, StreamDelta,
    Timing, Usage,
};
use crate::error::ApiError;
use crate::http::pipeline::{self, Call, Incoming, Job, Surface};
use crate::upstream::UpstreamError;
use crate::upstream::answer::{Answer, StreamSummary, StreamTranslator, read_whole_answer};
use crate::upstream::events::Chunk;
use crate::upstream::openai::ChatRequest;
use crate::upstream::think::Piece;

/// Answers a reasoning request, whole or streamed.
#[utoipa::path(
    post,
    path = "/v1/reason",
    tag = "reason",
    request_body(content = ReasonRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer (or, with `stream: true`, `text/event-stream` of `reasoning`/`output` events and one `done` or `error`)", body = ReasonResponse),
        (status = 400, description = "invalid_request, invalid_json, unknown_field, max_tokens_exceeds_plan", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reason(inc: Incoming) -> Result<Response, ApiError> {
    let st = &inc.st;
    let mut req = ReasonRequest::from_slice(&inc.body)?;
    let scopes = st.limiter.scopes(&inc.caller);
    let max_tokens = req.validate(ReasonLimits {
        default_max_tokens: st.limits.default_max_tokens.min(scopes.plan.max_tokens),
        max_tokens_limit: st.limits.max_tokens_limit.min(scopes.plan.max_tokens),
    })?;
    let winner = pipeline::winner(st)?;
    let upstream_body = serde_json::to_vec(&ChatRequest::from_reason(
        &req,
        &winner.model.id,
        max_tokens,
    ))
    .map_err(|_| {
        ApiError::new(
            crate::error::ErrorCode::Internal,
            "could not encode the request",
        )
    })?;
    let job = Job::new(
        format!("rsn_{}", uuid::Uuid::new_v4().simple()),
        &inc,
        winner,
        req.input_token_estimate(),
    );
    let call = Call {
        upstream_body,
        max_tokens,
        stream: req.stream,
        metadata: req.metadata.take(),
    };
    let surface = Reason {
        translator: StreamTranslator::new(req.wants_reasoning()),
        include_reasoning: req.wants_reasoning(),
        pieces: Vec::new(),
        summary: None,
    };
    drop(req);
    Ok(pipeline::run(st, &inc.caller, scopes, job, call, surface).await)
}

/// The `/v1/reason` adapter.
struct Reason {
    include_reasoning: bool,
    translator: StreamTranslator,
    /// Text pieces translated and not yet turned into events (kept to reuse its buffer).
    pieces: Vec<Piece>,
    /// The complete stream's summary, once it ended.
    summary: Option<StreamSummary>,
}

/// The response object for a finished request.
fn response(
    job: &Job,
    output: String,
    reasoning: Option<String>,
    finish_reason: FinishReason,
    usage: Usage,
    cost_rao: u64,
    ttft_ms: u64,
) -> ReasonResponse {
    ReasonResponse {
        id: job.id.clone(),
        object: "reason.result".into(),
        created: job.created,
        model: job.model(),
        output,
        reasoning,
        finish_reason,
        usage,
        cost: Cost::from_rao(cost_rao),
        timing: Timing {
            ttft_ms,
            total_ms: pipeline::ms(job.started.elapsed()),
        },
    }
}

impl Surface for Reason {
    const ROUTE: &'static str = "/v1/reason";
    type Whole = Answer;
    type Frame = Event;

    fn read_whole(&self, _job: &Job, body: &Bytes) -> Result<(Answer, Usage, bool), UpstreamError> {
        read_whole_answer(body, self.include_reasoning)
    }

    fn render_whole(
        self,
        job: &Job,
        answer: Answer,
        _body: Bytes,
        cost_rao: u64,
        ttft_ms: u64,
    ) -> Response {
        Json(response(
            job,
            answer.output,
            answer.reasoning,
            answer.finish_reason,
            answer.usage,
            cost_rao,
            ttft_ms,
        ))
        .into_response()
    }

    fn on_chunk(&mut self, chunk: Chunk, out: &mut Vec<Event>) -> Result<bool, UpstreamError> {
        for ev in &chunk.events {
            self.translator.on_data(&ev.data, &mut self.pieces)?;
        }
        out.extend(self.pieces.drain(..).filter_map(|p| piece_event(&p)));
        Ok(self.translator.is_done())
    }

    fn end(&mut self, out: &mut Vec<Event>) -> Result<(), UpstreamError> {
        let summary = self.translator.finish(&mut self.pieces)?;
        out.extend(self.pieces.drain(..).filter_map(|p| piece_event(&p)));
        self.summary = Some(summary);
        Ok(())
    }

    fn seen(&self) -> (Usage, bool) {
        let s = self.summary.unwrap_or_else(|| self.translator.summary());
        (s.usage, s.usage_estimated)
    }

    fn done_frame(&self, job: &Job, cost_rao: u64, ttft_ms: u64) -> Option<Event> {
        let s = self.summary?;
        let done = response(
            job,
            String::new(),
            None,
            s.finish_reason,
            s.usage,
            cost_rao,
            ttft_ms,
        );
        Some(
            Event::default()
                .event("done")
                .json_data(ReasonDone(&done))
                .unwrap_or_default(),
        )
    }

    fn error_frame(&self, job: &Job, err: &ApiError) -> Event {
        Event::default()
            .event("error")
            .json_data(err.to_problem(&job.request_id))
            .unwrap_or_default()
    }

    fn stream_response(mut rx: mpsc::Receiver<Event>) -> Response {
        let stream = futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx).map(|o| o.map(Ok::<_, Infallible>))
        });
        Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response()
    }
}

/// The event of one piece of text; none for an empty one.
fn piece_event(p: &Piece) -> Option<Event> {
    let (name, delta) = match p {
        Piece::Reasoning(t) => ("reasoning", t.as_str()),
        Piece::Output(t) => ("output", t.as_str()),
    };
    (!delta.is_empty()).then(|| {
        Event::default()
            .event(name)
            .json_data(StreamDelta { delta })
            .unwrap_or_default()
    })
}
