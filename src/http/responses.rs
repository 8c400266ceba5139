//! `POST /v1/responses`: the stateless subset of Open Responses (the Responses API of OpenAI's
//! SDKs, `client.responses.create`), as one more adapter of the
//! [`pipeline`](crate::http::pipeline) — authenticated, limited, metered and routed exactly
//! like `/v1/reason`, whose request it is translated into.
//!
//! Accepted: `model` (`affine-winner` or the winner's id), `input` (a string, or message items
//! whose content is a string or text parts), `instructions`, `max_output_tokens`,
//! `temperature`, `top_p`, `reasoning: {effort, summary}`, `stream`, `metadata`, and client
//! settings that change nothing here (`user`, `parallel_tool_calls`, `truncation`, …).
//! Stateful or tool features (`previous_response_id`, `conversation`, `store: true`,
//! `background: true`, `tools`, `prompt`) are refused with 400 `unsupported_parameter` naming
//! the field: nothing is stored, so nothing could be continued or fetched later.
//!
//! The answer is a `response` object whose `output` is a `reasoning` item (the model's
//! reasoning as `reasoning_text` content, or as `summary_text` when `reasoning.summary` was
//! set; absent when there was none or `reasoning.exclude` / `include_reasoning: false` asked
//! for it to be left out) and a `message` item, with `usage` and `cost` (rao and TAO). A stream
//! is the specification's typed events (`response.created`, `response.in_progress`,
//! `response.output_item.added`, `response.content_part.added` /
//! `response.reasoning_summary_part.added`, `response.reasoning_text.delta` /
//! `response.reasoning_summary_text.delta`, `response.output_text.delta`, the matching `.done`
//! events, then `response.completed` or `response.incomplete`), each with its
//! `sequence_number`; a failure after the headers ends it with `error` and `response.failed`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::api::{Cost, FinishReason, ReasonLimits, ReasonRequest, Usage};
use crate::error::{ApiError, ErrorCode};
use crate::http::chat::WINNER_ALIAS;
use crate::http::pipeline::{self, Call, Incoming, Job, Surface};
use crate::upstream::UpstreamError;
use crate::upstream::answer::{Answer, StreamSummary, StreamTranslator, read_whole_answer};
use crate::upstream::events::Chunk;
use crate::upstream::openai::ChatRequest;
use crate::upstream::reasoning::Effort;
use crate::upstream::think::Piece;

/// Fields refused because they need state or tools this gateway does not keep; a falsy value
/// (`null`, `false`, an empty list) is accepted, since SDKs send defaults.
const STATEFUL: &[&str] = &[
    "previous_response_id",
    "conversation",
    "store",
    "background",
    "tools",
    "prompt",
];

/// Fields accepted and ignored: client settings with no effect on a stateless text answer.
const IGNORED: &[&str] = &[
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "service_tier",
    "parallel_tool_calls",
    "tool_choice",
    "truncation",
    "text",
    "include",
    "stream_options",
];

/// The documented request shape (requests are parsed by [`parse`], which refuses fields it does
/// not know: `additionalProperties: false` in the document).
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "the documented request shape; `parse` reads requests"
)]
pub struct ResponsesRequest {
    /// `affine-winner` or the current winner's id.
    #[schema(example = "affine-winner")]
    pub model: String,
    /// A prompt, or message items (`{"role", "content"}`, `type: "message"` optional) whose
    /// content is a string or `input_text` / `output_text` parts. Roles: `user`, `assistant`,
    /// `system`, `developer`.
    #[schema(schema_with = input_schema)]
    pub input: Value,
    /// A system message sent first.
    pub instructions: Option<String>,
    /// Most tokens to generate, reasoning included.
    #[schema(minimum = 1, maximum = 32768)]
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// Nucleus sampling, (0, 1].
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    /// Reasoning controls.
    pub reasoning: Option<ResponsesReasoning>,
    /// `false` leaves the reasoning item out (the same as `reasoning.exclude: true`).
    pub include_reasoning: Option<bool>,
    /// Stream typed events.
    pub stream: Option<bool>,
    /// Up to 16 string pairs, recorded with usage (the rules of `/v1/reason`).
    #[schema(schema_with = crate::api::reason::metadata_schema)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// The schema of `input`: a prompt, or at least one message item (a derived untagged enum
/// cannot say "at least one").
fn input_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .description(Some("A prompt, sent as one user message.")),
        )
        .item(
            ArrayBuilder::new()
                .items(utoipa::openapi::Ref::from_schema_name("ResponsesMessage"))
                .min_items(Some(1))
                .description(Some("Message items, in order.")),
        )
        .description(Some(
            "A prompt, or message items whose content is a string or `input_text` / \
             `output_text` parts. Roles: `user`, `assistant`, `system`, `developer`.",
        ))
        .into()
}

/// One message item of `input` (stateless: no item references, no tool items).
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "the documented request shape; `parse` reads requests"
)]
pub struct ResponsesMessage {
    /// `message` when given; any other item type is refused (`unsupported_parameter`).
    pub r#type: Option<ResponsesItemType>,
    /// `developer` is sent as `system`.
    pub role: ResponsesRole,
    /// Text, or text parts concatenated in order.
    pub content: ResponsesContent,
}

/// The item types `input` accepts.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
#[expect(
    dead_code,
    reason = "the documented request shape; `parse` reads requests"
)]
pub enum ResponsesItemType {
    /// A message.
    Message,
}

/// The roles of `input` message items.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
#[expect(
    dead_code,
    reason = "the documented request shape; `parse` reads requests"
)]
pub enum ResponsesRole {
    /// The caller.
    User,
    /// An earlier answer.
    Assistant,
    /// Instructions.
    System,
    /// Instructions (sent as `system`).
    Developer,
}

/// The content of an `input` message item.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
#[expect(
    dead_code,
    reason = "the documented request shape; `parse` reads requests"
)]
pub enum ResponsesContent {
    /// Text.
    Text(String),
    /// Text parts (this model reads text only).
    Parts(Vec<ResponsesTextPart>),
}

/// A text part of an `input` message.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "the documented request shape; `parse` reads requests"
)]
pub struct ResponsesTextPart {
    /// `input_text`, `output_text` or `text`.
    pub r#type: ResponsesPartType,
    /// The text.
    pub text: String,
}

/// The part types `input` message content accepts.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
#[expect(
    dead_code,
    reason = "the documented request shape; `parse` reads requests"
)]
pub enum ResponsesPartType {
    /// Caller text.
    InputText,
    /// Text of an earlier answer.
    OutputText,
    /// Plain text.
    Text,
}

/// `reasoning` of a responses request.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "the documented request shape; `parse` reads requests"
)]
pub struct ResponsesReasoning {
    /// Mapped to the provider's thinking switch (docs/API.md §5.1).
    pub effort: Option<Effort>,
    /// The reasoning is returned as `summary_text` (the model's own reasoning; no separate
    /// summary is written).
    pub summary: Option<ResponsesSummary>,
    /// `true` leaves the reasoning item out.
    pub exclude: Option<bool>,
}

/// `reasoning.summary` values.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
#[expect(
    dead_code,
    reason = "the documented request shape; `parse` reads requests"
)]
pub enum ResponsesSummary {
    /// The provider's choice.
    Auto,
    /// Short.
    Concise,
    /// Long.
    Detailed,
}

/// A parsed request: the `/v1/reason` request it amounts to, and what shapes the answer.
pub(crate) struct Parsed {
    model: String,
    pub(crate) reason: ReasonRequest,
    /// The reasoning goes out as `summary_text`.
    summary: Option<String>,
    echo: Echo,
}

/// Request values echoed in the response object.
#[derive(Debug, Clone)]
struct Echo {
    instructions: Option<String>,
    max_output_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    effort: Option<Effort>,
    summary: Option<String>,
    metadata: Value,
}

fn bad(detail: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, detail)
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::Array(a) => !a.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// Reads a responses request into the `/v1/reason` request it means.
pub(crate) fn parse(body: &[u8]) -> Result<Parsed, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(crate::api::classify_json_error)?;
    let Value::Object(mut obj) = value else {
        return Err(bad("the request must be a JSON object"));
    };
    for k in STATEFUL {
        if obj.get(*k).is_some_and(truthy) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedParameter,
                format!(
                    "`{k}` is not supported: this gateway serves the stateless subset of Open Responses (nothing is stored, no tools)"
                ),
            ));
        }
        obj.remove(*k);
    }
    for k in IGNORED {
        obj.remove(*k);
    }
    let model = match obj.remove("model") {
        Some(Value::String(m)) => m,
        Some(_) => return Err(bad("`model` must be a string")),
        None => return Err(bad("`model` is required")),
    };
    let input = match obj.remove("input") {
        Some(Value::String(s)) => Value::String(s),
        Some(Value::Array(items)) if !items.is_empty() => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, it)| message(i, it))
                .collect::<Result<_, _>>()?,
        ),
        Some(Value::Array(_)) => return Err(bad("`input` must not be empty")),
        Some(_) => return Err(bad("`input` must be a string or an array of message items")),
        None => return Err(bad("`input` is required")),
    };
    let mut effort = None;
    let mut summary = None;
    let mut include = match obj.remove("include_reasoning") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b),
        Some(_) => return Err(bad("`include_reasoning` must be a boolean")),
    };
    match obj.remove("reasoning") {
        None | Some(Value::Null) => {}
        Some(Value::Object(r)) => {
            for (k, v) in r {
                match (k.as_str(), v) {
                    (_, Value::Null) => {}
                    ("effort", Value::String(e)) => {
                        effort = Some(Effort::parse(&e).ok_or_else(|| {
                            bad(format!(
                                "`reasoning.effort` must be one of {}",
                                Effort::NAMES
                            ))
                        })?);
                    }
                    ("summary" | "generate_summary", Value::String(s))
                        if matches!(s.as_str(), "auto" | "concise" | "detailed") =>
                    {
                        summary = Some(s);
                    }
                    ("exclude", Value::Bool(x)) => {
                        if include == Some(x) {
                            return Err(bad(
                                "`include_reasoning` and `reasoning.exclude` disagree",
                            ));
                        }
                        include = Some(!x);
                    }
                    (k, _) => {
                        return Err(bad(format!(
                            "`reasoning.{k}` is not supported (effort: {}; summary: auto, concise, detailed; exclude: a boolean)",
                            Effort::NAMES
                        )));
                    }
                }
            }
        }
        Some(_) => return Err(bad("`reasoning` must be an object")),
    }
    let instructions = match obj.remove("instructions") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(bad("`instructions` must be a string")),
    };
    let max_output_tokens = obj.remove("max_output_tokens").unwrap_or(Value::Null);
    let metadata = obj.remove("metadata").unwrap_or(Value::Null);
    let mut reason = Map::new();
    reason.insert("input".into(), input);
    if let Some(i) = &instructions {
        reason.insert("system".into(), i.clone().into());
    }
    reason.insert("max_tokens".into(), max_output_tokens);
    for k in ["temperature", "top_p", "stream"] {
        if let Some(v) = obj.remove(k).filter(|v| !v.is_null()) {
            reason.insert(k.into(), v);
        }
    }
    reason.insert("metadata".into(), metadata.clone());
    reason.insert("include_reasoning".into(), include.unwrap_or(true).into());
    if let Some(e) = effort {
        reason.insert("reasoning_effort".into(), e.as_str().into());
    }
    if let Some(k) = obj.keys().next() {
        return Err(ApiError::new(
            ErrorCode::UnknownField,
            format!("`{k}` is not a field of this route (docs/API.md §5.2 lists them)"),
        ));
    }
    let reason: ReasonRequest = serde_json::from_value(Value::Object(reason)).map_err(|e| {
        // The translated names (`max_tokens`, `system`) are this route's
        // `max_output_tokens` and `instructions`.
        let msg = e
            .to_string()
            .replace("max_tokens", "max_output_tokens")
            .replace("`system`", "`instructions`");
        bad(msg)
    })?;
    let echo = Echo {
        instructions,
        max_output_tokens: reason.max_tokens,
        temperature: reason.temperature,
        top_p: reason.top_p,
        effort,
        summary: summary.clone(),
        metadata: if metadata.is_null() {
            json!({})
        } else {
            metadata
        },
    };
    Ok(Parsed {
        model,
        reason,
        summary,
        echo,
    })
}

/// Input item `i` as a `/v1/reason` message.
fn message(i: usize, item: &Value) -> Result<Value, ApiError> {
    let Value::Object(o) = item else {
        return Err(bad(format!("`input[{i}]` must be a message item")));
    };
    if let Some(t) = o.get("type").and_then(Value::as_str)
        && t != "message"
    {
        return Err(ApiError::new(
            ErrorCode::UnsupportedParameter,
            format!(
                "`input[{i}].type` is `{t}`: only message items are supported (stateless, no tools)"
            ),
        ));
    }
    let role = match o.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => "system",
        Some(r @ ("user" | "assistant")) => r,
        _ => {
            return Err(bad(format!(
                "`input[{i}].role` must be user, assistant, system or developer"
            )));
        }
    };
    let content = match o.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                let t = p
                    .as_object()
                    .filter(|p| {
                        matches!(
                            p.get("type").and_then(Value::as_str),
                            Some("input_text" | "output_text" | "text")
                        )
                    })
                    .and_then(|p| p.get("text"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(format!(
                            "`input[{i}].content[{j}]` must be an `input_text` part: this model reads text only"
                        ))
                    })?;
                text.push_str(t);
            }
            text
        }
        _ => {
            return Err(bad(format!(
                "`input[{i}].content` must be a string or an array of text parts"
            )));
        }
    };
    Ok(json!({"role": role, "content": content}))
}

/// Open Responses `POST /v1/responses` (stateless subset), whole or streamed.
#[utoipa::path(post, path = "/v1/responses", tag = "openai",
    request_body(content = ResponsesRequest, content_type = "application/json",
        description = "An Open Responses request, stateless subset; `model` is `affine-winner` or the current winner's id"),
    responses(
        (status = 200, description = "a `response` object (or, with `stream: true`, `text/event-stream` of typed `response.*` events ending in `response.completed`, `response.incomplete` or `response.failed`)", body = serde_json::Value),
        (status = 400, description = "OpenAI error shape: invalid_request, invalid_json, unknown_field, max_tokens_exceeds_plan, unsupported_parameter (`previous_response_id`, `conversation`, `store: true`, `background: true`, `tools`, `prompt`, non-message input items)", body = crate::error::OpenAiErrorBody),
    ))]
pub async fn responses(inc: Incoming) -> Result<Response, ApiError> {
    let st = &inc.st;
    let Parsed {
        model,
        mut reason,
        summary,
        echo,
    } = parse(&inc.body)?;
    let scopes = st.limiter.scopes(&inc.caller);
    let max_tokens = reason.validate(ReasonLimits {
        default_max_tokens: st.limits.default_max_tokens.min(scopes.plan.max_tokens),
        max_tokens_limit: st.limits.max_tokens_limit.min(scopes.plan.max_tokens),
    })?;
    let winner = pipeline::winner(st)?;
    if model != WINNER_ALIAS && model != winner.model.id {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "model `{model}` is not served here; use `{WINNER_ALIAS}` or `{}`",
                winner.model.id
            ),
        ));
    }
    let upstream_body = serde_json::to_vec(&ChatRequest::from_reason(
        &reason,
        &winner.model.id,
        max_tokens,
    ))
    .map_err(|_| ApiError::new(ErrorCode::Internal, "could not encode the request"))?;
    let job = Job::new(
        format!("resp_{}", uuid::Uuid::new_v4().simple()),
        &inc,
        winner,
        reason.input_token_estimate(),
    );
    let call = Call {
        upstream_body,
        max_tokens,
        stream: reason.stream,
        metadata: reason.metadata.take(),
    };
    let echo = Echo {
        max_output_tokens: Some(max_tokens),
        ..echo
    };
    let surface = Responses {
        translator: StreamTranslator::new(reason.wants_reasoning()),
        include_reasoning: reason.wants_reasoning(),
        summary: summary.is_some(),
        echo,
        id: job.id.clone(),
        created: job.created,
        model: job.winner.model.id.clone(),
        pieces: Vec::new(),
        seq: Cell::new(0),
        started: Cell::new(false),
        open: None,
        items: Vec::new(),
        ended: None,
    };
    Ok(pipeline::run(st, &inc.caller, scopes, job, call, surface).await)
}

/// Which kind of output item is being streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reasoning,
    Message,
}

/// One output item of a stream: its id, kind and text so far.
#[derive(Debug)]
struct Item {
    id: String,
    kind: Kind,
    text: String,
}

/// The `/v1/responses` adapter.
struct Responses {
    translator: StreamTranslator,
    include_reasoning: bool,
    /// The reasoning goes out as `summary_text` rather than `reasoning_text`.
    summary: bool,
    echo: Echo,
    id: String,
    created: i64,
    model: String,
    pieces: Vec<Piece>,
    /// The next `sequence_number` (a `Cell`: the closing frames are built from `&self`).
    seq: Cell<u64>,
    /// `response.created` was sent (a `Cell`, like `seq`).
    started: Cell<bool>,
    /// The index in `items` of the item being streamed.
    open: Option<usize>,
    items: Vec<Item>,
    /// The complete stream's summary, once it ended.
    ended: Option<StreamSummary>,
}

fn item_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

impl Responses {
    /// Appends one SSE event `kind` whose data is `data` with `type` and `sequence_number`.
    fn push(&self, out: &mut Vec<u8>, kind: &str, mut data: Map<String, Value>) {
        let n = self.seq.get();
        self.seq.set(n + 1);
        data.insert("type".into(), kind.into());
        data.insert("sequence_number".into(), n.into());
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(&serde_json::to_vec(&Value::Object(data)).unwrap_or_default());
        out.extend_from_slice(b"\n\n");
    }

    /// The `reasoning` item as it stands.
    fn reasoning_item(&self, id: &str, text: &str, status: &str) -> Value {
        if self.summary {
            json!({"type": "reasoning", "id": id, "status": status,
                   "summary": [{"type": "summary_text", "text": text}]})
        } else {
            json!({"type": "reasoning", "id": id, "status": status, "summary": [],
                   "content": [{"type": "reasoning_text", "text": text}]})
        }
    }

    fn message_item(id: &str, text: &str, status: &str) -> Value {
        json!({"type": "message", "id": id, "role": "assistant", "status": status,
               "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
    }

    fn item_value(&self, it: &Item, status: &str) -> Value {
        match it.kind {
            Kind::Reasoning => self.reasoning_item(&it.id, &it.text, status),
            Kind::Message => Self::message_item(&it.id, &it.text, status),
        }
    }

    /// The response object.
    #[expect(clippy::too_many_arguments, reason = "the response object's parts")]
    fn object(
        &self,
        id: &str,
        created: i64,
        model: &str,
        status: &str,
        output: Vec<Value>,
        usage: Option<&Usage>,
        finish: Option<FinishReason>,
        cost_rao: Option<u64>,
    ) -> Value {
        let e = &self.echo;
        let incomplete = (finish == Some(FinishReason::Length))
            .then(|| json!({"reason": "max_output_tokens"}))
            .or_else(|| {
                (finish == Some(FinishReason::ContentFilter))
                    .then(|| json!({"reason": "content_filter"}))
            });
        let mut o = json!({
            "id": id, "object": "response", "created_at": created, "status": status,
            "model": model, "output": output, "error": null,
            "incomplete_details": incomplete,
            "instructions": e.instructions, "max_output_tokens": e.max_output_tokens,
            "temperature": e.temperature, "top_p": e.top_p,
            "reasoning": {"effort": e.effort.map(Effort::as_str), "summary": e.summary},
            "metadata": e.metadata, "parallel_tool_calls": false, "tool_choice": "none",
            "tools": [], "store": false, "background": false, "previous_response_id": null,
            "text": {"format": {"type": "text"}}, "truncation": "disabled",
            "usage": null,
        });
        if let Some(u) = usage {
            o["usage"] = json!({
                "input_tokens": u.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": u.output_tokens,
                "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
                "total_tokens": u.total_tokens,
            });
        }
        if let Some(c) = cost_rao {
            o["cost"] = serde_json::to_value(Cost::from_rao(c)).unwrap_or(Value::Null);
        }
        o
    }

    /// `status` of a finished answer.
    fn status_of(finish: FinishReason) -> &'static str {
        match finish {
            FinishReason::Stop => "completed",
            FinishReason::Length | FinishReason::ContentFilter => "incomplete",
        }
    }

    fn start(&self, out: &mut Vec<u8>) {
        if self.started.replace(true) {
            return;
        }
        let r = self.object(
            &self.id,
            self.created,
            &self.model,
            "in_progress",
            Vec::new(),
            None,
            None,
            None,
        );
        let mut m = Map::new();
        m.insert("response".into(), r);
        self.push(out, "response.created", m.clone());
        self.push(out, "response.in_progress", m);
    }

    /// The `…part.added` / `…part.done` pair's names and the part of an item of `kind`.
    fn part(&self, kind: Kind, text: &str) -> (&'static str, &'static str, &'static str, Value) {
        match (kind, self.summary) {
            (Kind::Reasoning, true) => (
                "response.reasoning_summary_part",
                "summary_index",
                "response.reasoning_summary_text",
                json!({"type": "summary_text", "text": text}),
            ),
            (Kind::Reasoning, false) => (
                "response.content_part",
                "content_index",
                "response.reasoning_text",
                json!({"type": "reasoning_text", "text": text}),
            ),
            (Kind::Message, _) => (
                "response.content_part",
                "content_index",
                "response.output_text",
                json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []}),
            ),
        }
    }

    fn open_item(&mut self, kind: Kind, out: &mut Vec<u8>) {
        self.close_item(out);
        let it = Item {
            id: item_id(match kind {
                Kind::Reasoning => "rs",
                Kind::Message => "msg",
            }),
            kind,
            text: String::new(),
        };
        let index = self.items.len();
        let mut added = Map::new();
        added.insert("output_index".into(), index.into());
        let mut empty = self.item_value(&it, "in_progress");
        // An item being added has no content yet.
        if let Some(c) = empty.get_mut("content") {
            *c = json!([]);
        }
        if kind == Kind::Reasoning && self.summary {
            empty["summary"] = json!([]);
        }
        added.insert("item".into(), empty);
        self.push(out, "response.output_item.added", added);
        let (part_event, index_key, _, part) = self.part(kind, "");
        let mut p = Map::new();
        p.insert("item_id".into(), it.id.clone().into());
        p.insert("output_index".into(), index.into());
        p.insert(index_key.into(), 0.into());
        p.insert("part".into(), part);
        self.push(out, &format!("{part_event}.added"), p);
        self.items.push(it);
        self.open = Some(index);
    }

    fn delta(&mut self, kind: Kind, text: &str, out: &mut Vec<u8>) {
        if self.open.is_none_or(|i| self.items[i].kind != kind) {
            self.open_item(kind, out);
        }
        let Some(index) = self.open else { return };
        let (_, index_key, text_event, _) = self.part(kind, "");
        let mut d = Map::new();
        d.insert("item_id".into(), self.items[index].id.clone().into());
        d.insert("output_index".into(), index.into());
        d.insert(index_key.into(), 0.into());
        d.insert("delta".into(), text.into());
        if kind == Kind::Message {
            d.insert("logprobs".into(), json!([]));
        }
        self.push(out, &format!("{text_event}.delta"), d);
        self.items[index].text.push_str(text);
    }

    fn close_item(&mut self, out: &mut Vec<u8>) {
        let Some(index) = self.open.take() else {
            return;
        };
        let it = &self.items[index];
        let (part_event, index_key, text_event, part) = self.part(it.kind, &it.text);
        let base = |m: &mut Map<String, Value>| {
            m.insert("item_id".into(), it.id.clone().into());
            m.insert("output_index".into(), index.into());
            m.insert(index_key.into(), 0.into());
        };
        let mut t = Map::new();
        base(&mut t);
        t.insert("text".into(), it.text.clone().into());
        self.push(out, &format!("{text_event}.done"), t);
        let mut p = Map::new();
        base(&mut p);
        p.insert("part".into(), part);
        self.push(out, &format!("{part_event}.done"), p);
        let mut d = Map::new();
        d.insert("output_index".into(), index.into());
        d.insert("item".into(), self.item_value(it, "completed"));
        self.push(out, "response.output_item.done", d);
    }

    fn take_pieces(&mut self, out: &mut Vec<u8>) {
        let pieces = std::mem::take(&mut self.pieces);
        for p in &pieces {
            match p {
                Piece::Reasoning(t) if !t.is_empty() && self.include_reasoning => {
                    self.delta(Kind::Reasoning, t, out);
                }
                Piece::Output(t) if !t.is_empty() => self.delta(Kind::Message, t, out),
                _ => {}
            }
        }
        self.pieces = pieces;
        self.pieces.clear();
    }
}

impl Surface for Responses {
    const ROUTE: &'static str = "/v1/responses";
    type Whole = Answer;
    type Frame = Bytes;

    fn read_whole(&self, _job: &Job, body: &Bytes) -> Result<(Answer, Usage, bool), UpstreamError> {
        read_whole_answer(body, self.include_reasoning)
    }

    fn render_whole(
        self,
        job: &Job,
        answer: Answer,
        _body: Bytes,
        cost_rao: u64,
        _ttft_ms: u64,
    ) -> Response {
        let mut output = Vec::with_capacity(2);
        if let Some(r) = answer.reasoning.as_deref().filter(|r| !r.is_empty()) {
            output.push(self.reasoning_item(&item_id("rs"), r, "completed"));
        }
        output.push(Self::message_item(
            &item_id("msg"),
            &answer.output,
            "completed",
        ));
        let o = self.object(
            &job.id,
            job.created,
            &job.model().id,
            Self::status_of(answer.finish_reason),
            output,
            Some(&answer.usage),
            Some(answer.finish_reason),
            Some(cost_rao),
        );
        axum::Json(o).into_response()
    }

    fn on_chunk(&mut self, chunk: Chunk, out: &mut Vec<Bytes>) -> Result<bool, UpstreamError> {
        let mut frame = Vec::new();
        self.start(&mut frame);
        for ev in &chunk.events {
            self.translator.on_data(&ev.data, &mut self.pieces)?;
        }
        self.take_pieces(&mut frame);
        if !frame.is_empty() {
            out.push(Bytes::from(frame));
        }
        Ok(self.translator.is_done())
    }

    fn end(&mut self, out: &mut Vec<Bytes>) -> Result<(), UpstreamError> {
        let mut frame = Vec::new();
        self.start(&mut frame);
        let summary = self.translator.finish(&mut self.pieces)?;
        self.take_pieces(&mut frame);
        if !self.items.iter().any(|i| i.kind == Kind::Message) {
            // Every answer has its message, if only an empty one (the budget went to thinking).
            self.open_item(Kind::Message, &mut frame);
        }
        self.close_item(&mut frame);
        self.ended = Some(summary);
        if !frame.is_empty() {
            out.push(Bytes::from(frame));
        }
        Ok(())
    }

    fn seen(&self) -> (Usage, bool) {
        let s = self.ended.unwrap_or_else(|| self.translator.summary());
        (s.usage, s.usage_estimated)
    }

    fn done_frame(&self, job: &Job, cost_rao: u64, _ttft_ms: u64) -> Option<Bytes> {
        let s = self.ended?;
        let output = self
            .items
            .iter()
            .map(|i| self.item_value(i, "completed"))
            .collect();
        let status = Self::status_of(s.finish_reason);
        let o = self.object(
            &job.id,
            job.created,
            &job.model().id,
            status,
            output,
            Some(&s.usage),
            Some(s.finish_reason),
            Some(cost_rao),
        );
        let mut m = Map::new();
        m.insert("response".into(), o);
        let mut frame = Vec::new();
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.push(&mut frame, kind, m);
        Some(Bytes::from(frame))
    }

    fn error_frame(&self, job: &Job, err: &ApiError) -> Bytes {
        let mut frame = Vec::new();
        // A stream that broke before its first chunk still begins as the specification says.
        self.start(&mut frame);
        let mut e = Map::new();
        e.insert("code".into(), err.code.as_str().into());
        e.insert("message".into(), err.detail.to_string().into());
        e.insert("param".into(), Value::Null);
        self.push(&mut frame, "error", e);
        let mut o = self.object(
            &job.id,
            job.created,
            &job.model().id,
            "failed",
            self.items
                .iter()
                .map(|i| self.item_value(i, "incomplete"))
                .collect(),
            None,
            None,
            None,
        );
        o["error"] = json!({"code": err.code.as_str(), "message": err.detail});
        let mut m = Map::new();
        m.insert("response".into(), o);
        self.push(&mut frame, "response.failed", m);
        Bytes::from(frame)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> ApiError {
        parse(body.as_bytes()).err().expect(body)
    }

    #[test]
    fn the_stateless_subset_becomes_a_reason_request() {
        let p = parse(
            br#"{"model":"affine-winner","instructions":"be brief","max_output_tokens":64,
                "input":[{"type":"message","role":"developer","content":"sys"},
                         {"role":"user","content":[{"type":"input_text","text":"2+"},{"type":"input_text","text":"2?"}]}],
                "reasoning":{"effort":"low","summary":"auto"},"store":false,"tools":[],
                "metadata":{"k":"v"},"stream":true,"user":"u"}"#,
        )
        .unwrap();
        assert_eq!(p.model, "affine-winner");
        assert_eq!(p.reason.system.as_deref(), Some("be brief"));
        assert_eq!(p.reason.max_tokens, Some(64));
        assert_eq!(p.reason.reasoning_effort, Some(Effort::Low));
        assert!(p.reason.stream);
        assert_eq!(p.summary.as_deref(), Some("auto"));
        let crate::api::Input::Messages(m) = &p.reason.input else {
            panic!("messages")
        };
        assert_eq!(m[1].content, "2+2?");
        assert_eq!(m[0].role, crate::api::Role::System);
    }

    #[test]
    fn stateful_features_are_refused_by_name() {
        for (field, value) in [
            ("previous_response_id", r#""resp_1""#),
            ("store", "true"),
            ("background", "true"),
            ("tools", r#"[{"type":"function","name":"f"}]"#),
            ("conversation", r#""conv_1""#),
        ] {
            let e = refused(&format!(r#"{{"model":"m","input":"x","{field}":{value}}}"#));
            assert_eq!(e.code, ErrorCode::UnsupportedParameter, "{field}");
            assert!(e.detail.contains(field), "{}", e.detail);
        }
        let e = refused(r#"{"model":"m","input":[{"type":"function_call_output","call_id":"c"}]}"#);
        assert_eq!(e.code, ErrorCode::UnsupportedParameter);
        assert!(e.detail.contains("input[0].type"));
        assert_eq!(
            refused(r#"{"model":"m","input":"x","frobnicate":1}"#).code,
            ErrorCode::UnknownField
        );
        assert!(
            refused(r#"{"model":"m","input":"x","reasoning":{"effort":"max"}}"#)
                .detail
                .contains("reasoning.effort")
        );
    }
}
