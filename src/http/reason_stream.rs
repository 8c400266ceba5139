//! The streamed form of `/v1/reason`: server-sent events.
//!
//! The upstream status is awaited before answering, so a provider that refuses the request
//! still yields a real HTTP error status. After that a detached task pumps the provider's
//! stream into a bounded channel that backs the SSE body: the task, not the client
//! connection, owns the upstream call, so a client that disconnects merely closes the
//! channel (the task then drops the upstream request), and the task settles the quota and
//! the money whatever the client does.
//!
//! Events: `reasoning` and `output` (`{"delta": …}`), then exactly one `done` (the response
//! without its texts) or one `error` (a problem object).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::api::{ReasonDone, StreamDelta};
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::reason::{Prepared, metered_headers, ms, observe_upstream};
use crate::metering::{Outcome, Status};
use crate::quota::Lease;
use crate::routing::{Opened, Served};
use crate::upstream::UpstreamError;
use crate::upstream::answer::StreamTranslator;
use crate::upstream::client::{next_chunk, next_deadline};
use crate::upstream::sse::SseDecoder;
use crate::upstream::think::Piece;

/// Largest single upstream SSE event accepted; a provider that never ends a line is cut off.
pub const MAX_UPSTREAM_EVENT_BYTES: usize = 1 << 20;

/// The `route` label of this route's stream metrics.
const ROUTE: &str = "/v1/reason";

/// How many events may wait for a slow client before the pump waits too.
const CHANNEL_DEPTH: usize = 64;

/// Opens the upstream stream and answers with SSE.
pub async fn respond(
    st: AppState,
    mut prep: Prepared,
    upstream_body: Vec<u8>,
    mut lease: Lease,
) -> Result<Response, ApiError> {
    let up_started = Instant::now();
    // Retries and fail-overs happen inside, before the caller got a byte; failed attempts
    // are counted there.
    let Opened {
        response: res,
        served,
    } = st.upstream.open(&prep.winner, upstream_body).await?;
    if served.fallback {
        let m = served.model_info(&prep.winner);
        lease.served_by(&m);
        prep.served = Some(m);
    }
    let (tx, mut rx) = mpsc::channel::<Event>(CHANNEL_DEPTH);
    let model = prep.model().id;
    tokio::spawn(pump(st, prep, res, served, tx, up_started, lease));
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok::<_, Infallible>))
    });
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // The cost is only known at the end: it travels in the `done` event, not in a header.
    metered_headers(&mut res, &model, None);
    Ok(res)
}

/// Decrements the active-streams gauge however the pump ends.
struct StreamGuard(prometheus::IntGauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn piece_event(p: &Piece) -> Event {
    let (name, delta) = match p {
        Piece::Reasoning(t) => ("reasoning", t.as_str()),
        Piece::Output(t) => ("output", t.as_str()),
    };
    Event::default()
        .event(name)
        .json_data(StreamDelta { delta })
        .unwrap_or_default()
}

fn error_event(err: &ApiError, request_id: &str) -> Event {
    Event::default()
        .event("error")
        .json_data(err.to_problem(request_id))
        .unwrap_or_default()
}

/// Outcome of reading the upstream stream.
enum Ended {
    /// The provider finished the answer.
    Complete,
    /// The client went away.
    ClientGone,
    /// The provider failed.
    Failed(UpstreamError),
}

async fn pump(
    st: AppState,
    prep: Prepared,
    mut res: reqwest::Response,
    served: Served,
    tx: mpsc::Sender<Event>,
    up_started: Instant,
    lease: Lease,
) {
    st.metrics.streams_active.inc();
    let _guard = StreamGuard(st.metrics.streams_active.clone());
    let timeouts = served.timeouts;
    let mut decoder = SseDecoder::new(MAX_UPSTREAM_EVENT_BYTES);
    let mut translator = StreamTranslator::new(prep.include_reasoning);
    let mut pieces: Vec<Piece> = Vec::with_capacity(8);
    let mut first_piece_at: Option<Instant> = None;

    let sender = Sender {
        tx: &tx,
        deadline: st.config.server.stream_send_timeout(),
        timeouts: &st.metrics.conn.stream_send_timeouts,
    };
    let ended = 'read: loop {
        let now = Instant::now();
        let (deadline, kind) =
            next_deadline(timeouts, served.started, first_piece_at.is_some(), now);
        let chunk = match next_chunk(&mut res, deadline.saturating_duration_since(now), kind).await
        {
            Ok(c) => c,
            Err(e) => break 'read Ended::Failed(e),
        };
        match chunk {
            Some(bytes) => decoder.push(&bytes),
            None => {
                // End of body: a last event without its blank line still counts.
                match decoder.finish() {
                    Ok(Some(ev)) => {
                        if let Err(e) = translator.on_data(&ev.data, &mut pieces) {
                            break 'read Ended::Failed(e);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => break 'read Ended::Failed(UpstreamError::Malformed(e.to_string())),
                }
                if !sender.pieces(&mut pieces, &mut first_piece_at).await {
                    break 'read Ended::ClientGone;
                }
                break 'read Ended::Complete;
            }
        }
        loop {
            match decoder.next_event() {
                Ok(Some(ev)) => {
                    if let Err(e) = translator.on_data(&ev.data, &mut pieces) {
                        break 'read Ended::Failed(e);
                    }
                }
                Ok(None) => break,
                Err(e) => break 'read Ended::Failed(UpstreamError::Malformed(e.to_string())),
            }
        }
        if !sender.pieces(&mut pieces, &mut first_piece_at).await {
            break 'read Ended::ClientGone;
        }
        if translator.is_done() {
            break 'read Ended::Complete;
        }
    };
    // Dropping the response here closes the upstream connection at once when the stream did
    // not complete (client gone or provider failed), instead of reading it to the end.
    drop(res);

    let ttft_ms = first_piece_at.map_or(0, |t| ms(t.duration_since(prep.started)));
    if let Some(t) = first_piece_at {
        st.metrics
            .ttft
            .with_label_values(&[ROUTE])
            .observe(t.duration_since(prep.started).as_secs_f64());
    }
    // Whatever happened, the tokens seen so far count (a provider that produced output used
    // it, and read the whole prompt); the quota and the money are settled here, on this
    // detached task, not on the client's connection.
    let seen = |s: crate::upstream::answer::StreamSummary, status: Status| {
        let delivered = s.usage.output_tokens > 0 || !s.usage_estimated;
        Outcome::measured(s.usage, s.usage_estimated, prep.input_estimate, status)
            .nothing_if(!delivered)
    };
    let outcome = match ended {
        Ended::ClientGone => {
            lease.settle(seen(translator.summary(), Status::ClientClosed));
            observe_upstream(&st, &served.upstream, up_started, None);
            tracing::info!(request_id = %prep.request_id, "client disconnected mid-stream");
            return;
        }
        Ended::Failed(e) => Err(e),
        Ended::Complete => translator.finish(&mut pieces),
    };
    let cost = lease.settle(match &outcome {
        Ok(summary) => seen(*summary, Status::Ok),
        Err(_) => seen(translator.summary(), Status::Interrupted),
    });
    observe_upstream(&st, &served.upstream, up_started, outcome.as_ref().err());
    match outcome {
        Ok(summary) => {
            if !sender.pieces(&mut pieces, &mut first_piece_at).await {
                return;
            }
            let done = prep.response(
                String::new(),
                None,
                summary.finish_reason,
                summary.usage,
                cost,
                ttft_ms,
            );
            let ev = Event::default()
                .event("done")
                .json_data(ReasonDone(&done))
                .unwrap_or_default();
            sender.send(ev).await;
        }
        Err(e) => {
            let err = ApiError::from(e);
            st.metrics
                .stream_failures
                .with_label_values(&[ROUTE, err.code.as_str()])
                .inc();
            sender.send(error_event(&err, &prep.request_id)).await;
        }
    }
}

/// The pump's side of the channel to the client, with the send deadline: a client that stops
/// reading fills the channel, and would otherwise hold the pump (and with it the concurrency
/// slot, the hold and the upstream call) for as long as it keeps the connection open.
struct Sender<'a> {
    tx: &'a mpsc::Sender<Event>,
    deadline: Duration,
    timeouts: &'a prometheus::IntCounterVec,
}

impl Sender<'_> {
    /// Sends one event; false when the client has gone or did not take it in time.
    async fn send(&self, ev: Event) -> bool {
        match self.tx.send_timeout(ev, self.deadline).await {
            Ok(()) => true,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                self.timeouts.with_label_values(&[ROUTE]).inc();
                false
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
        }
    }

    /// Sends the pending pieces; false when the client has gone or stopped reading.
    async fn pieces(&self, pieces: &mut Vec<Piece>, first_piece_at: &mut Option<Instant>) -> bool {
        for p in pieces.drain(..) {
            let text_len = match &p {
                Piece::Reasoning(t) | Piece::Output(t) => t.len(),
            };
            if text_len == 0 {
                continue;
            }
            if first_piece_at.is_none() {
                *first_piece_at = Some(Instant::now());
            }
            if !self.send(piece_event(&p)).await {
                return false;
            }
        }
        true
    }
}
