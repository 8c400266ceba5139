//! `POST /v1/responses`: the request, the `response` object and its streamed events
//! (docs/API.md §5.2, the stateless subset of Open Responses).
//!
//! The gateway refuses stateful fields (`previous_response_id`, `store: true`, `tools`, …) with
//! 400 `unsupported_parameter`; they can still be sent through [`ResponsesRequest::field`],
//! so the refusal surfaces as an [`ApiError`] with that code rather than being hidden here.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Error};
use crate::rate_limit::RateLimit;
use crate::sse::{SseDecoder, SseEvent};
use crate::types::{Cost, Input, Message};

/// The model alias the gateway serves the current winner under.
const WINNER: &str = "affine-winner";

/// Reasoning controls of a [`ResponsesRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReasoningOptions {
    /// `none`, `minimal`, `low`, `medium` or `high`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// `auto`, `concise` or `detailed`: the reasoning comes back as `summary_text` parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// A `POST /v1/responses` request; only `input` is required (`model` defaults to
/// `affine-winner`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponsesRequest {
    /// `affine-winner` or the winner's id.
    pub model: String,
    /// A prompt, or messages (roles `user`, `assistant`, `system`, `developer`).
    pub input: Option<Input>,
    /// A system message sent first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The most tokens to generate, reasoning included (the plan caps it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// 0 … 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Greater than 0, at most 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Reasoning effort and summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningOptions>,
    /// Recorded with usage (at most 16 printable-ASCII keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Other fields, sent as given (see [`ResponsesRequest::field`]).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Set by [`Client::responses`](crate::Client::responses) and
    /// [`Client::responses_stream`](crate::Client::responses_stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stream: Option<bool>,
}

impl ResponsesRequest {
    fn with_input(input: Input) -> ResponsesRequest {
        ResponsesRequest {
            model: WINNER.to_owned(),
            input: Some(input),
            instructions: None,
            max_output_tokens: None,
            temperature: None,
            top_p: None,
            reasoning: None,
            metadata: None,
            extra: serde_json::Map::new(),
            stream: None,
        }
    }

    /// A request for a prompt, with every other field at its default.
    pub fn new(input: impl Into<String>) -> ResponsesRequest {
        Self::with_input(Input::Text(input.into()))
    }

    /// A request for a conversation.
    pub fn messages(messages: Vec<Message>) -> ResponsesRequest {
        Self::with_input(Input::Messages(messages))
    }

    /// Sets `model`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Sets `instructions`.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// Sets `max_output_tokens`.
    pub fn max_output_tokens(mut self, max: u32) -> Self {
        self.max_output_tokens = Some(max);
        self
    }

    /// Sets `temperature`.
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets `top_p`.
    pub fn top_p(mut self, top_p: f64) -> Self {
        self.top_p = Some(top_p);
        self
    }

    /// Sets `reasoning.effort`.
    pub fn effort(mut self, effort: impl Into<String>) -> Self {
        self.reasoning.get_or_insert_with(Default::default).effort = Some(effort.into());
        self
    }

    /// Sets `reasoning.summary`.
    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.reasoning.get_or_insert_with(Default::default).summary = Some(summary.into());
        self
    }

    /// Adds a `metadata` entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    /// Sets any other field of the specification (`include_reasoning`, `user`, …). The
    /// gateway decides: stateful ones are refused with `unsupported_parameter`, unknown ones
    /// with `unknown_field`.
    pub fn field(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }
}

impl From<&str> for ResponsesRequest {
    fn from(input: &str) -> Self {
        ResponsesRequest::new(input)
    }
}

impl From<String> for ResponsesRequest {
    fn from(input: String) -> Self {
        ResponsesRequest::new(input)
    }
}

/// A text part: `reasoning_text`, `summary_text` or `output_text`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPart {
    /// The part's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    #[serde(default)]
    pub text: String,
    /// Fields this version does not type (`annotations`, `logprobs`).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The model's reasoning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasoningItem {
    /// `rs_…`.
    pub id: String,
    /// `in_progress`, `completed` or `incomplete`.
    #[serde(default)]
    pub status: Option<String>,
    /// `summary_text` parts (when `reasoning.summary` was asked for).
    #[serde(default)]
    pub summary: Vec<TextPart>,
    /// `reasoning_text` parts (otherwise).
    #[serde(default)]
    pub content: Vec<TextPart>,
}

impl ReasoningItem {
    /// The reasoning text: the content parts, or the summary parts, concatenated.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .chain(&self.summary)
            .map(|p| p.text.as_str())
            .collect()
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    /// `msg_…`.
    pub id: String,
    /// `assistant`.
    pub role: String,
    /// `in_progress`, `completed` or `incomplete`.
    #[serde(default)]
    pub status: Option<String>,
    /// `output_text` parts.
    #[serde(default)]
    pub content: Vec<TextPart>,
}

impl MessageItem {
    /// The answer's text: the `output_text` parts concatenated.
    pub fn text(&self) -> String {
        self.content.iter().map(|p| p.text.as_str()).collect()
    }
}

/// One item of a response's `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// The reasoning (absent when there was none or it was excluded).
    Reasoning(ReasoningItem),
    /// The answer (always there).
    Message(MessageItem),
    /// An item type this version does not know.
    #[serde(other)]
    Other,
}

/// Input token details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InputTokensDetails {
    /// Tokens served from a prompt cache.
    #[serde(default)]
    pub cached_tokens: u64,
}

/// Output token details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OutputTokensDetails {
    /// The part of `output_tokens` the provider reports as reasoning.
    #[serde(default)]
    pub reasoning_tokens: u64,
}

/// Token counts of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ResponseUsage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Details of the prompt tokens.
    #[serde(default)]
    pub input_tokens_details: InputTokensDetails,
    /// Generated tokens, reasoning included.
    pub output_tokens: u64,
    /// Details of the generated tokens.
    #[serde(default)]
    pub output_tokens_details: OutputTokensDetails,
    /// Input plus output.
    pub total_tokens: u64,
}

/// The `response` object: the answer of `POST /v1/responses`, and what a stream's
/// `response.*` lifecycle events carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// `resp_…`.
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// `completed`, `incomplete` (see `incomplete_details`), `in_progress` or `failed`.
    pub status: String,
    /// The concrete model that served.
    pub model: String,
    /// The reasoning item (when there is one), then the message item.
    #[serde(default)]
    pub output: Vec<OutputItem>,
    /// Token counts (absent until the answer ended).
    #[serde(default)]
    pub usage: Option<ResponseUsage>,
    /// What it cost (absent until the answer ended).
    #[serde(default)]
    pub cost: Option<Cost>,
    /// `{"reason": "max_output_tokens" | "content_filter"}` when incomplete.
    #[serde(default)]
    pub incomplete_details: Option<serde_json::Value>,
    /// `{"code", "message"}` when failed.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    /// The request's metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The request id (`X-Request-Id`).
    #[serde(skip)]
    pub request_id: Option<String>,
    /// The caller's limits after this request.
    #[serde(skip)]
    pub rate_limit: Option<RateLimit>,
    /// How many HTTP attempts this result took (more than 1 after automatic retries).
    #[serde(skip)]
    pub attempts: u32,
    /// Fields this version does not type (the request's echo: `instructions`,
    /// `max_output_tokens`, `reasoning`, …).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Response {
    /// The answer's text (the message items' `output_text`).
    pub fn output_text(&self) -> String {
        self.output
            .iter()
            .filter_map(|i| match i {
                OutputItem::Message(m) => Some(m.text()),
                _ => None,
            })
            .collect()
    }

    /// The reasoning text, if the response has a reasoning item.
    pub fn reasoning_text(&self) -> Option<String> {
        self.output.iter().find_map(|i| match i {
            OutputItem::Reasoning(r) => Some(r.text()),
            _ => None,
        })
    }
}

/// `response.output_item.added` / `.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemEvent {
    /// The item's place in `output`.
    pub output_index: u32,
    /// The item (without content when added).
    pub item: OutputItem,
}

/// `response.content_part.*` / `response.reasoning_summary_part.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartEvent {
    /// The item's id.
    pub item_id: String,
    /// The item's place in `output`.
    pub output_index: u32,
    /// The part's place in the item (`content_index`, or `summary_index`).
    #[serde(alias = "summary_index")]
    pub content_index: u32,
    /// The part (empty when added, whole when done).
    pub part: TextPart,
}

/// A `….delta` event: a piece of text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextDelta {
    /// The item's id.
    pub item_id: String,
    /// The item's place in `output`.
    pub output_index: u32,
    /// The part's place in the item (`content_index`, or `summary_index`).
    #[serde(alias = "summary_index")]
    pub content_index: u32,
    /// The text.
    pub delta: String,
}

/// A `….done` text event: the part's whole text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextDone {
    /// The item's id.
    pub item_id: String,
    /// The item's place in `output`.
    pub output_index: u32,
    /// The part's place in the item (`content_index`, or `summary_index`).
    #[serde(alias = "summary_index")]
    pub content_index: u32,
    /// The whole text.
    pub text: String,
}

/// One event of a streamed `POST /v1/responses`, named after its `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseEvent {
    /// `response.created` (the object, `in_progress`).
    Created(Box<Response>),
    /// `response.in_progress`.
    InProgress(Box<Response>),
    /// `response.output_item.added`.
    OutputItemAdded(ItemEvent),
    /// `response.output_item.done`.
    OutputItemDone(ItemEvent),
    /// `response.content_part.added`.
    ContentPartAdded(PartEvent),
    /// `response.content_part.done`.
    ContentPartDone(PartEvent),
    /// `response.reasoning_summary_part.added`.
    ReasoningSummaryPartAdded(PartEvent),
    /// `response.reasoning_summary_part.done`.
    ReasoningSummaryPartDone(PartEvent),
    /// `response.reasoning_text.delta`: a piece of the reasoning.
    ReasoningTextDelta(TextDelta),
    /// `response.reasoning_text.done`.
    ReasoningTextDone(TextDone),
    /// `response.reasoning_summary_text.delta`: a piece of the reasoning, as a summary.
    ReasoningSummaryTextDelta(TextDelta),
    /// `response.reasoning_summary_text.done`.
    ReasoningSummaryTextDone(TextDone),
    /// `response.output_text.delta`: a piece of the answer.
    OutputTextDelta(TextDelta),
    /// `response.output_text.done`.
    OutputTextDone(TextDone),
    /// `response.completed`: the whole object with usage and cost. Always the last event.
    Completed(Box<Response>),
    /// `response.incomplete`: cut by `max_output_tokens` or a filter. Always the last event.
    Incomplete(Box<Response>),
    /// `error`: the answer failed after it began (`status` is 502: the event carries none);
    /// [`ResponseEvent::Failed`] follows.
    Error(ApiError),
    /// `response.failed`: the object with `status: "failed"`. Always the last event.
    Failed(Box<Response>),
    /// An event type this version does not know, as sent.
    Other {
        /// The event's type.
        event: String,
        /// Its data.
        data: serde_json::Value,
    },
}

impl ResponseEvent {
    /// Whether this event ends the stream.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            ResponseEvent::Completed(_) | ResponseEvent::Incomplete(_) | ResponseEvent::Failed(_)
        )
    }
}

type Body = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// The events of a streamed `POST /v1/responses`; ends after `response.completed`,
/// `response.incomplete` or `response.failed`. Dropping it closes the connection.
pub struct ResponseStream {
    body: Option<Body>,
    decoder: SseDecoder,
    pending: VecDeque<SseEvent>,
    ended: bool,
    request_id: Option<String>,
    rate_limit: Option<RateLimit>,
    attempts: u32,
}

impl std::fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream")
            .field("request_id", &self.request_id)
            .field("open", &self.body.is_some())
            .finish()
    }
}

impl ResponseStream {
    pub(crate) fn new(response: reqwest::Response, attempts: u32) -> ResponseStream {
        ResponseStream {
            request_id: crate::error::header_str(response.headers(), "x-request-id"),
            rate_limit: RateLimit::from_headers(response.headers()),
            body: Some(Box::pin(response.bytes_stream())),
            decoder: SseDecoder::default(),
            pending: VecDeque::new(),
            ended: false,
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

    fn decode(&mut self, ev: &SseEvent) -> Result<ResponseEvent, Error> {
        let data: serde_json::Value = serde_json::from_str(&ev.data)
            .map_err(|e| Error::Decode(format!("{} event: {e}", ev.event)))?;
        // The data names its type too; the `event:` line is absent from some proxies' output.
        let kind = match ev.event.as_str() {
            "message" => data["type"].as_str().unwrap_or("message").to_owned(),
            k => k.to_owned(),
        };
        let k = kind.as_str();
        let response = |mut data: serde_json::Value| -> Result<Box<Response>, Error> {
            let mut r: Response = typed(k, data["response"].take())?;
            r.request_id = self.request_id.clone();
            r.rate_limit = self.rate_limit.clone();
            r.attempts = self.attempts;
            Ok(Box::new(r))
        };
        Ok(match k {
            "response.created" => ResponseEvent::Created(response(data)?),
            "response.in_progress" => ResponseEvent::InProgress(response(data)?),
            "response.completed" => ResponseEvent::Completed(response(data)?),
            "response.incomplete" => ResponseEvent::Incomplete(response(data)?),
            "response.failed" => ResponseEvent::Failed(response(data)?),
            "response.output_item.added" => ResponseEvent::OutputItemAdded(typed(k, data)?),
            "response.output_item.done" => ResponseEvent::OutputItemDone(typed(k, data)?),
            "response.content_part.added" => ResponseEvent::ContentPartAdded(typed(k, data)?),
            "response.content_part.done" => ResponseEvent::ContentPartDone(typed(k, data)?),
            "response.reasoning_summary_part.added" => {
                ResponseEvent::ReasoningSummaryPartAdded(typed(k, data)?)
            }
            "response.reasoning_summary_part.done" => {
                ResponseEvent::ReasoningSummaryPartDone(typed(k, data)?)
            }
            "response.reasoning_text.delta" => ResponseEvent::ReasoningTextDelta(typed(k, data)?),
            "response.reasoning_text.done" => ResponseEvent::ReasoningTextDone(typed(k, data)?),
            "response.reasoning_summary_text.delta" => {
                ResponseEvent::ReasoningSummaryTextDelta(typed(k, data)?)
            }
            "response.reasoning_summary_text.done" => {
                ResponseEvent::ReasoningSummaryTextDone(typed(k, data)?)
            }
            "response.output_text.delta" => ResponseEvent::OutputTextDelta(typed(k, data)?),
            "response.output_text.done" => ResponseEvent::OutputTextDone(typed(k, data)?),
            "error" => ResponseEvent::Error(ApiError {
                status: 502,
                code: data["code"].as_str().unwrap_or("unknown").to_owned(),
                message: data["message"].as_str().unwrap_or_default().to_owned(),
                request_id: self.request_id.clone(),
                retry_after: None,
                rate_limit: None,
            }),
            // Events a later version may add are passed on, as the v1 policy allows.
            _ => ResponseEvent::Other {
                event: k.to_owned(),
                data,
            },
        })
    }
}

fn typed<T: serde::de::DeserializeOwned>(kind: &str, data: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(data).map_err(|e| Error::Decode(format!("{kind} event: {e}")))
}

impl Stream for ResponseStream {
    type Item = Result<ResponseEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            if let Some(ev) = this.pending.pop_front() {
                let item = this.decode(&ev);
                // Exactly one terminal event: nothing after it (or after a broken one) is read.
                if item.as_ref().map_or(true, ResponseEvent::is_terminal) {
                    this.ended = true;
                    this.body = None;
                    this.pending.clear();
                }
                return Poll::Ready(Some(item));
            }
            let Some(body) = this.body.as_mut() else {
                this.ended = true;
                return Poll::Ready(Some(Err(Error::Decode(
                    "the stream ended without response.completed, response.incomplete or response.failed"
                        .to_owned(),
                ))));
            };
            match body.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => match this.decoder.push(&chunk) {
                    Ok(events) => this.pending.extend(events),
                    Err(e) => {
                        this.ended = true;
                        this.body = None;
                        return Poll::Ready(Some(Err(Error::Decode(e))));
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_send_only_what_is_set() {
        let body = serde_json::to_value(
            ResponsesRequest::new("2+2?")
                .max_output_tokens(8)
                .effort("low")
                .field("store", serde_json::Value::Bool(false)),
        )
        .expect("json");
        assert_eq!(
            body,
            serde_json::json!({"model": "affine-winner", "input": "2+2?", "max_output_tokens": 8,
                "reasoning": {"effort": "low"}, "store": false})
        );
    }

    #[test]
    fn output_items_decode_and_unknown_ones_are_kept_apart() {
        let r: Response = serde_json::from_value(serde_json::json!({
            "id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
            "model": "m", "metadata": {},
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "a"}]},
                {"type": "web_search_call", "id": "ws_1"},
                {"type": "message", "id": "msg_1", "role": "assistant",
                 "content": [{"type": "output_text", "text": "b", "annotations": []}]}],
            "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3,
                      "output_tokens_details": {"reasoning_tokens": 1}},
            "cost": {"rao": 5, "tao": "0.000000005"}
        }))
        .expect("decodes");
        assert_eq!(r.reasoning_text().as_deref(), Some("a"));
        assert_eq!(r.output_text(), "b");
        assert_eq!(r.output[1], OutputItem::Other);
        assert_eq!(
            r.usage
                .expect("usage")
                .output_tokens_details
                .reasoning_tokens,
            1
        );
        assert_eq!(r.extra["object"], "response");
    }
}
