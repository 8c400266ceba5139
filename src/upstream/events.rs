//! The provider's streamed answer as a [`Stream`] of decoded chunks.
//!
//! [`UpstreamEvents`] owns the provider's response: it reads the body under the stream
//! deadlines (first token until [`UpstreamEvents::mark_answering`], then idle, never past the
//! total), feeds the [`SseDecoder`] and yields each network chunk with the events it
//! completed. A route that re-renders the answer reads the events; one that passes the
//! provider's bytes through unchanged sends [`Chunk::bytes`] and reads the events on the side.
//! A decoder error (an event over the size limit) ends the stream with
//! [`UpstreamError::Malformed`]: no route can skip it. Dropping the stream drops the response,
//! which closes the provider's connection at once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;

use super::UpstreamError;
use super::client::{Timeouts, next_chunk, next_deadline};
use super::sse::{SseDecoder, SseEvent};

/// Largest single upstream SSE event accepted; a provider that never ends a line is cut off.
pub const MAX_UPSTREAM_EVENT_BYTES: usize = 1 << 20;

/// One network chunk of the provider's stream and the events it completed.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The bytes as they arrived (empty for the end of the body, which may still complete a
    /// last event).
    pub bytes: Bytes,
    /// The events completed by these bytes, in order.
    pub events: Vec<SseEvent>,
}

/// The decoded stream of one provider response.
pub struct UpstreamEvents {
    inner: BoxStream<'static, Result<Chunk, UpstreamError>>,
    answering: Arc<AtomicBool>,
}

impl std::fmt::Debug for UpstreamEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamEvents")
            .field("answering", &self.answering.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct State {
    res: reqwest::Response,
    decoder: SseDecoder,
    timeouts: Timeouts,
    started: Instant,
    answering: Arc<AtomicBool>,
    ended: bool,
}

impl UpstreamEvents {
    /// Decodes `res`, an attempt that started at `started` under `timeouts`.
    pub fn new(res: reqwest::Response, timeouts: Timeouts, started: Instant) -> Self {
        let answering = Arc::new(AtomicBool::new(false));
        let state = State {
            res,
            decoder: SseDecoder::new(MAX_UPSTREAM_EVENT_BYTES),
            timeouts,
            started,
            answering: Arc::clone(&answering),
            ended: false,
        };
        let inner = futures_util::stream::unfold(state, |mut s| async move {
            if s.ended {
                return None;
            }
            let item = s.next().await;
            // After an error, or the end of the body, nothing follows.
            s.ended |= item.is_err();
            Some((item, s))
        });
        UpstreamEvents {
            inner: Box::pin(inner),
            answering,
        }
    }

    /// The answer has started reaching the caller: from now on the idle deadline applies
    /// instead of the first-token one.
    pub fn mark_answering(&self) {
        self.answering.store(true, Ordering::Relaxed);
    }
}

impl State {
    async fn next(&mut self) -> Result<Chunk, UpstreamError> {
        let now = Instant::now();
        let (deadline, kind) = next_deadline(
            self.timeouts,
            self.started,
            self.answering.load(Ordering::Relaxed),
            now,
        );
        let bytes =
            next_chunk(&mut self.res, deadline.saturating_duration_since(now), kind).await?;
        let mut events = Vec::new();
        let malformed = |e: super::sse::SseError| UpstreamError::Malformed(e.to_string());
        match bytes {
            Some(bytes) => {
                self.decoder.push(&bytes);
                while let Some(ev) = self.decoder.next_event().map_err(malformed)? {
                    events.push(ev);
                }
                Ok(Chunk { bytes, events })
            }
            None => {
                self.ended = true;
                // End of body: a last event without its blank line still counts.
                while let Some(ev) = self.decoder.finish().map_err(malformed)? {
                    events.push(ev);
                }
                Ok(Chunk {
                    bytes: Bytes::new(),
                    events,
                })
            }
        }
    }
}

impl Stream for UpstreamEvents {
    type Item = Result<Chunk, UpstreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
