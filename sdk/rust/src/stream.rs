//! Streamed answers as a [`Stream`] of typed events.
//!
//! Dropping a stream drops the HTTP response body, which closes the connection; the gateway
//! then cancels the upstream call and settles the request as `client_closed` (charging what
//! the provider produced until then).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;

use crate::error::{ApiError, Error};
use crate::rate_limit::RateLimit;
use crate::sse::{SseDecoder, SseEvent};
use crate::types::ReasonResult;

/// One event of a streamed `POST /v1/reason`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A piece of the reasoning text.
    Reasoning {
        /// The text.
        delta: String,
    },
    /// A piece of the final answer.
    Output {
        /// The text.
        delta: String,
    },
    /// The end: usage and cost (the result without texts). Always the last event.
    Done(Box<ReasonResult>),
    /// The answer failed after it began (what was produced is charged). Always the last event.
    Error(ApiError),
}

type Body = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// The events of a streamed `POST /v1/reason`; ends after [`Event::Done`] or [`Event::Error`].
pub struct ReasonStream {
    body: Option<Body>,
    decoder: SseDecoder,
    pending: VecDeque<SseEvent>,
    request_id: Option<String>,
    rate_limit: Option<RateLimit>,
    attempts: u32,
}

impl std::fmt::Debug for ReasonStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReasonStream")
            .field("request_id", &self.request_id)
            .field("open", &self.body.is_some())
            .finish()
    }
}

impl ReasonStream {
    pub(crate) fn new(response: reqwest::Response, attempts: u32) -> ReasonStream {
        let request_id = crate::error::header_str(response.headers(), "x-request-id");
        let rate_limit = RateLimit::from_headers(response.headers());
        ReasonStream {
            body: Some(Box::pin(response.bytes_stream())),
            decoder: SseDecoder::default(),
            pending: VecDeque::new(),
            request_id,
            rate_limit,
            attempts,
        }
    }

    /// The request id (`X-Request-Id`), known as soon as the stream opened.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The caller's limits as the stream's headers reported them.
    pub fn rate_limit(&self) -> Option<&RateLimit> {
        self.rate_limit.as_ref()
    }

    fn decode(&mut self, ev: SseEvent) -> Option<Result<Event, Error>> {
        let data: serde_json::Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(e) => return Some(Err(Error::Decode(format!("{} event: {e}", ev.event)))),
        };
        let delta = || data["delta"].as_str().unwrap_or_default().to_owned();
        match ev.event.as_str() {
            "reasoning" => Some(Ok(Event::Reasoning { delta: delta() })),
            "output" => Some(Ok(Event::Output { delta: delta() })),
            "done" => {
                // Exactly one terminal event: nothing after it is read.
                self.body = None;
                Some(match serde_json::from_value::<ReasonResult>(data) {
                    Ok(mut result) => {
                        result.request_id = self.request_id.clone();
                        result.rate_limit = self.rate_limit.clone();
                        result.attempts = self.attempts;
                        Ok(Event::Done(Box::new(result)))
                    }
                    Err(e) => Err(Error::Decode(format!("done event: {e}"))),
                })
            }
            "error" => {
                self.body = None;
                Some(Ok(Event::Error(ApiError::from_problem(
                    &data,
                    self.request_id.clone(),
                ))))
            }
            // Events a later version may add are skipped, as the v1 policy allows.
            _ => None,
        }
    }
}

impl Stream for ReasonStream {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            while let Some(ev) = this.pending.pop_front() {
                if let Some(item) = this.decode(ev) {
                    if this.body.is_none() {
                        this.pending.clear();
                    }
                    return Poll::Ready(Some(item));
                }
            }
            let Some(body) = this.body.as_mut() else {
                return Poll::Ready(None);
            };
            match body.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => match this.decoder.push(&chunk) {
                    Ok(events) => this.pending.extend(events),
                    Err(e) => {
                        this.body = None;
                        return Poll::Ready(Some(Err(Error::Decode(e))));
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    this.body = None;
                    return Poll::Ready(Some(Err(Error::Transport(e))));
                }
                Poll::Ready(None) => {
                    this.body = None;
                    match this.decoder.finish() {
                        Some(ev) => this.pending.push_back(ev),
                        // The connection ended without `done` or `error`.
                        None => {
                            return Poll::Ready(Some(Err(Error::Decode(
                                "the stream ended without a done or error event".to_owned(),
                            ))));
                        }
                    }
                }
            }
        }
    }
}

/// The chunks of a streamed `POST /v1/chat/completions`, as the provider sent them
/// (`chat.completion.chunk` objects); ends at `data: [DONE]`.
pub struct ChatStream {
    body: Option<Body>,
    decoder: SseDecoder,
    pending: VecDeque<SseEvent>,
    request_id: Option<String>,
    rate_limit: Option<RateLimit>,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("request_id", &self.request_id)
            .finish()
    }
}

impl ChatStream {
    pub(crate) fn new(response: reqwest::Response) -> ChatStream {
        ChatStream {
            request_id: crate::error::header_str(response.headers(), "x-request-id"),
            rate_limit: RateLimit::from_headers(response.headers()),
            body: Some(Box::pin(response.bytes_stream())),
            decoder: SseDecoder::default(),
            pending: VecDeque::new(),
        }
    }

    /// The request id.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The caller's limits as the stream's headers reported them.
    pub fn rate_limit(&self) -> Option<&RateLimit> {
        self.rate_limit.as_ref()
    }
}

impl Stream for ChatStream {
    type Item = Result<serde_json::Value, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(ev) = this.pending.pop_front() {
                if ev.data == "[DONE]" {
                    this.body = None;
                    this.pending.clear();
                    return Poll::Ready(None);
                }
                let item = serde_json::from_str::<serde_json::Value>(&ev.data)
                    .map_err(|e| Error::Decode(format!("chat chunk: {e}")));
                // A provider failure mid-stream arrives as a last `{"error": {…}}` chunk.
                let item = item.and_then(|v| match v.get("error") {
                    Some(e) if e.is_object() => Err(Error::Api(ApiError {
                        status: 502,
                        code: e["code"].as_str().unwrap_or("unknown").to_owned(),
                        message: e["message"].as_str().unwrap_or_default().to_owned(),
                        request_id: this.request_id.clone(),
                        retry_after: None,
                        rate_limit: None,
                    })),
                    _ => Ok(v),
                });
                return Poll::Ready(Some(item));
            }
            let Some(body) = this.body.as_mut() else {
                return Poll::Ready(None);
            };
            match body.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => match this.decoder.push(&chunk) {
                    Ok(events) => this.pending.extend(events),
                    Err(e) => {
                        this.body = None;
                        return Poll::Ready(Some(Err(Error::Decode(e))));
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    this.body = None;
                    return Poll::Ready(Some(Err(Error::Transport(e))));
                }
                Poll::Ready(None) => {
                    this.body = None;
                    if let Some(ev) = this.decoder.finish() {
                        this.pending.push_back(ev);
                    }
                }
            }
        }
    }
}
