//! The streamed call.
//!
//! The upstream status is awaited before answering, so a provider that refuses the request
//! still yields a real HTTP error status. After that a detached task pumps the provider's
//! stream ([`UpstreamEvents`]) through the route's adapter into a bounded channel that backs
//! the response body: the task, not the client connection, owns the upstream call, so a
//! client that disconnects merely closes the channel (the task then drops the upstream
//! request), and the task settles the quota and the money whatever the client does.

use std::time::{Duration, Instant};

use axum::response::Response;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::admission::Admitted;
use super::{Job, Surface, metered_headers, ms, observe_upstream};
use crate::error::ApiError;
use crate::http::AppState;
use crate::metering::{Outcome, Status};
use crate::routing::Served;
use crate::upstream::UpstreamError;
use crate::upstream::events::UpstreamEvents;

/// How many frames may wait for a slow client before the pump waits too.
const CHANNEL_DEPTH: usize = 64;

/// Answers with the route's streamed response to the provider's `response` (its status
/// already awaited, so a refusal was still a real HTTP error) and spawns the pump.
pub(super) fn respond<S: Surface>(
    st: &AppState,
    job: Job,
    response: reqwest::Response,
    served: Served,
    up_started: Instant,
    admitted: Admitted,
    surface: S,
) -> Response {
    let (tx, rx) = mpsc::channel::<S::Frame>(CHANNEL_DEPTH);
    let model = job.model().id;
    let events = UpstreamEvents::new(response, served.timeouts, served.started);
    let pump = Pump {
        st: st.clone(),
        job,
        served,
        up_started,
        surface,
    };
    tokio::spawn(pump.run(events, tx, admitted));
    let mut res = S::stream_response(rx);
    // The cost is only known at the end: it travels in the stream, not in a header.
    metered_headers(&mut res, &model, None);
    res
}

/// Decrements the active-streams gauge however the pump ends.
struct StreamGuard(prometheus::IntGauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// How reading the upstream stream ended.
enum Ended {
    /// The provider finished the answer.
    Complete,
    /// The client went away (or stopped reading).
    ClientGone,
    /// The provider failed.
    Failed(UpstreamError),
}

struct Pump<S> {
    st: AppState,
    job: Job,
    served: Served,
    up_started: Instant,
    surface: S,
}

impl<S: Surface> Pump<S> {
    async fn run(
        mut self,
        mut events: UpstreamEvents,
        tx: mpsc::Sender<S::Frame>,
        admitted: Admitted,
    ) {
        self.st.metrics.streams_active.inc();
        let _guard = StreamGuard(self.st.metrics.streams_active.clone());
        let mut sender = Sender {
            tx: &tx,
            deadline: self.st.config.server.stream_send_timeout(),
            timeouts: &self.st.metrics.conn.stream_send_timeouts,
            ttft: &self.st.metrics.ttft,
            route: S::ROUTE,
            started: self.job.started,
            first_frame_at: None,
        };
        let mut frames: Vec<S::Frame> = Vec::with_capacity(8);
        let ended = loop {
            let Some(chunk) = events.next().await else {
                break Ended::Complete;
            };
            let complete = match chunk.and_then(|c| self.surface.on_chunk(c, &mut frames)) {
                Ok(complete) => complete,
                Err(e) => break Ended::Failed(e),
            };
            if !sender.frames(&mut frames).await {
                break Ended::ClientGone;
            }
            if sender.first_frame_at.is_some() {
                events.mark_answering();
            }
            if complete {
                break Ended::Complete;
            }
        };
        // Dropping the stream here closes the upstream connection at once when it did not
        // complete (client gone or provider failed), instead of reading it to the end.
        drop(events);

        let ttft_ms = sender
            .first_frame_at
            .map_or(0, |t| ms(t.duration_since(self.job.started)));
        let outcome = match ended {
            Ended::ClientGone => {
                admitted.settle(self.seen(Status::ClientClosed));
                observe_upstream(&self.st, &self.served.upstream, self.up_started, None);
                tracing::info!(request_id = %self.job.request_id, "client disconnected mid-stream");
                return;
            }
            Ended::Failed(e) => Err(e),
            Ended::Complete => self.surface.end(&mut frames),
        };
        // Whatever happened, the tokens seen so far count (a provider that produced output
        // used it, and read the whole prompt); the quota and the money are settled here, on
        // this detached task, not on the client's connection.
        let status = if outcome.is_ok() {
            Status::Ok
        } else {
            Status::Interrupted
        };
        let cost = admitted.settle(self.seen(status));
        observe_upstream(
            &self.st,
            &self.served.upstream,
            self.up_started,
            outcome.as_ref().err(),
        );
        match outcome {
            Ok(()) => {
                if !sender.frames(&mut frames).await {
                    return;
                }
                if let Some(done) = self.surface.done_frame(&self.job, cost, ttft_ms) {
                    sender.send(done).await;
                }
            }
            Err(e) => {
                let err = ApiError::from(e);
                self.st
                    .metrics
                    .stream_failures
                    .with_label_values(&[S::ROUTE, err.code.as_str()])
                    .inc();
                sender.send(self.surface.error_frame(&self.job, &err)).await;
            }
        }
    }

    /// The outcome of what the provider produced so far: nothing when no token reached
    /// anyone.
    fn seen(&self, status: Status) -> Outcome {
        let (usage, estimated) = self.surface.seen();
        let delivered = usage.output_tokens > 0 || !estimated;
        Outcome::measured(usage, estimated, self.job.input_estimate, status).nothing_if(!delivered)
    }
}

/// The pump's side of the channel to the client, with the send deadline: a client that stops
/// reading fills the channel, and would otherwise hold the pump (and with it the concurrency
/// slot, the hold and the upstream call) for as long as it keeps the connection open.
struct Sender<'a, F> {
    tx: &'a mpsc::Sender<F>,
    deadline: Duration,
    timeouts: &'a prometheus::IntCounterVec,
    ttft: &'a prometheus::HistogramVec,
    route: &'static str,
    /// When the request was received (time to first token counts from it).
    started: Instant,
    first_frame_at: Option<Instant>,
}

impl<F> Sender<'_, F> {
    /// Sends one frame; false when the client has gone or did not take it in time.
    async fn send(&mut self, frame: F) -> bool {
        match self.tx.send_timeout(frame, self.deadline).await {
            Ok(()) => true,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                self.timeouts.with_label_values(&[self.route]).inc();
                false
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
        }
    }

    /// Sends the pending frames; false when the client has gone or stopped reading. The
    /// first frame is the answer's first token.
    async fn frames(&mut self, frames: &mut Vec<F>) -> bool {
        for f in frames.drain(..) {
            if self.first_frame_at.is_none() {
                let now = Instant::now();
                self.first_frame_at = Some(now);
                self.ttft
                    .with_label_values(&[self.route])
                    .observe(now.duration_since(self.started).as_secs_f64());
            }
            if !self.send(f).await {
                return false;
            }
        }
        true
    }
}
