//! The documented shape of a `POST /v1/chat/completions` request, for the OpenAPI document.
//!
//! Requests are parsed by [`ChatPlan`](crate::http::chat_request::ChatPlan), which checks every
//! field against its allowlist; these types only describe what it accepts, field for field,
//! with `additionalProperties: false`, so that schema tools generate only what is accepted.
//! Where a rule cannot be written as a schema (`content: null` beside `tool_calls`), the schema
//! shows the narrower form.

// The types are read by the OpenAPI derive only; no value of them is ever built.
#![expect(
    dead_code,
    reason = "the documented request shape; ChatPlan parses requests"
)]

use utoipa::ToSchema;

use crate::upstream::reasoning::Effort;

/// What the OpenAI-compatible route reads: every field it accepts (docs/API.md §5). The provider
/// receives the sampling parameters, `stop`, `seed`, `response_format`, `tools`, … as sent;
/// client bookkeeping (`user`, `metadata`, `store`, …) is accepted and dropped; any other
/// field, `n` above 1 and `best_of` are refused with 400 `invalid_request`.
// Only the OpenAPI document reads this type (a doc comment here would enter the document):
// requests are parsed by `ChatPlan`, which checks every field against the allowlist.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatCompletionRequest {
    /// `affine-winner` or the current winner's id (see `GET /v1/models`).
    #[schema(example = "affine-winner")]
    pub model: String,
    /// The conversation.
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate (the plan may allow less than the maximum shown).
    #[schema(minimum = 1, maximum = 32768)]
    pub max_tokens: Option<u32>,
    /// Stream `chat.completion.chunk` events.
    pub stream: Option<bool>,
    /// Sampling temperature, 0 to 2.
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// How hard the model thinks: `none` and `minimal` turn the provider's thinking switch off
    /// (`chat_template_kwargs.enable_thinking: false`), `low`/`medium`/`high` turn it on and are
    /// forwarded.
    pub reasoning_effort: Option<Effort>,
    /// `false` leaves the model's reasoning (`reasoning_content`, an inline `<think>` block)
    /// out of the answer; default true.
    pub include_reasoning: Option<bool>,
    /// OpenRouter's spelling: `{"effort": …, "exclude": true}`.
    pub reasoning: Option<ChatReasoning>,
    /// OpenAI's newer name for `max_tokens`; wins over it when both are set.
    #[schema(minimum = 1, maximum = 32768)]
    pub max_completion_tokens: Option<u32>,
    /// How many choices: only 1 (one request is one priced answer).
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u32>,
    /// Nucleus sampling, (0, 1].
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    /// Sample from the k most likely tokens (`-1`: all).
    #[schema(minimum = -1)]
    pub top_k: Option<i64>,
    /// Drop tokens below this share of the most likely one's probability.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub min_p: Option<f64>,
    /// Penalise tokens by how often they appeared.
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub frequency_penalty: Option<f64>,
    /// Penalise tokens that appeared at all.
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub presence_penalty: Option<f64>,
    /// vLLM's multiplicative repetition penalty (1: none).
    #[schema(exclusive_minimum = 0.0, maximum = 2.0)]
    pub repetition_penalty: Option<f64>,
    /// Sampling seed, for repeatable answers where the provider supports it.
    pub seed: Option<i64>,
    /// Up to four sequences that end the answer.
    pub stop: Option<crate::api::reason::Stop>,
    /// Token id (as a string) to a bias from -100 to 100.
    #[schema(schema_with = logit_bias_schema)]
    pub logit_bias: Option<serde_json::Value>,
    /// `{"type": "text" | "json_object" | "json_schema", …}`, forwarded as sent.
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<serde_json::Value>,
    /// Tool (function) definitions, forwarded as sent; they count as input.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<serde_json::Value>,
    /// `none`, `auto`, `required` or a named tool, forwarded as sent.
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<serde_json::Value>,
    /// Whether the model may call several tools in one turn.
    pub parallel_tool_calls: Option<bool>,
    /// `{"include_usage": true}`: the gateway always asks the provider for usage.
    #[schema(value_type = Option<Object>)]
    pub stream_options: Option<serde_json::Value>,
    /// Client bookkeeping, accepted and not forwarded.
    pub user: Option<String>,
    /// Client bookkeeping, accepted and not forwarded.
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub metadata: Option<serde_json::Value>,
    /// Accepted and not forwarded: nothing is stored.
    pub store: Option<bool>,
    /// Accepted and not forwarded.
    pub service_tier: Option<String>,
    /// Accepted and not forwarded.
    pub prompt_cache_key: Option<String>,
    /// Accepted and not forwarded.
    pub safety_identifier: Option<String>,
}

/// `reasoning` on a chat completions request.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatReasoning {
    /// The same as `reasoning_effort`.
    pub effort: Option<Effort>,
    /// `true` is the same as `include_reasoning: false`.
    pub exclude: Option<bool>,
}

/// One message of a chat conversation: the schema picks the fields by `role`.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum ChatMessage {
    /// `system`, `developer` or `user`.
    Prompt(ChatPromptMessage),
    /// An earlier answer of the model, with its reasoning and tool calls if it had them.
    Assistant(ChatAssistantMessage),
    /// A tool's result.
    Tool(ChatToolMessage),
}

/// A `system`, `developer` or `user` message.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatPromptMessage {
    /// Who wrote it.
    pub role: PromptRole,
    /// The text, or text parts.
    pub content: ChatContent,
    /// A name for the author.
    pub name: Option<String>,
}

/// The roles of a [`ChatPromptMessage`].
#[derive(Debug, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PromptRole {
    /// Instructions.
    System,
    /// Instructions (OpenAI's newer name).
    Developer,
    /// The caller.
    User,
}

/// An `assistant` message sent back in a multi-turn call.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatAssistantMessage {
    /// `assistant`.
    #[schema(value_type = String, pattern = "^assistant$")]
    pub role: String,
    /// The answer's text (may also be `null` when `tool_calls` is set).
    pub content: ChatContent,
    /// A name for the author.
    pub name: Option<String>,
    /// The model's reasoning in that turn, passed on to the provider as sent.
    pub reasoning_content: Option<String>,
    /// The tool calls the model made in that turn, passed on as sent.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<serde_json::Value>,
    /// The model's refusal, if it refused.
    pub refusal: Option<String>,
}

/// A `tool` message: a tool's result.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatToolMessage {
    /// `tool`.
    #[schema(value_type = String, pattern = "^tool$")]
    pub role: String,
    /// The tool's result.
    pub content: ChatContent,
    /// The call this answers.
    pub tool_call_id: Option<String>,
    /// The tool's name.
    pub name: Option<String>,
}

/// A message's content: a string, or text parts (this model reads text only).
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum ChatContent {
    /// The text.
    Text(String),
    /// Text parts.
    Parts(Vec<ChatTextPart>),
}

/// `{"type": "text", "text": …}`.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatTextPart {
    /// `text`.
    #[schema(value_type = String, pattern = "^text$")]
    pub r#type: String,
    /// The text.
    pub text: String,
}

/// `logit_bias`: token ids to numbers from -100 to 100 (or null).
fn logit_bias_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaType, Type};
    let bias = ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(-100.0))
        .maximum(Some(100.0));
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .additional_properties(Some(AdditionalProperties::RefOr(bias.into())))
        .description(Some("Token id (as a string) to a bias from -100 to 100."))
        .build()
}
