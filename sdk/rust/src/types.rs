//! Request and answer types of the caller API (docs/API.md §4–§6).
//!
//! Answers keep the fields this version does not know in `extra`, so an additive change on the
//! gateway (the v1 policy) never breaks decoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rate_limit::RateLimit;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// What to reason about: a string, or a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Input {
    /// One user message.
    Text(String),
    /// A conversation.
    Messages(Vec<Message>),
}

/// A `POST /v1/reason` request; only `input` is required.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ReasonRequest {
    /// What to reason about.
    pub input: Option<Input>,
    /// Sent as the first message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The most output tokens (the plan caps it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// 0 … 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Greater than 0, at most 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Passed to the provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// At most 4 stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// Default `true`; `false` gives no reasoning text and no `reasoning` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_reasoning: Option<bool>,
    /// Copied into the usage event (at most 16 printable-ASCII keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Set by [`Client::reason`](crate::Client::reason) and
    /// [`Client::reason_stream`](crate::Client::reason_stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stream: Option<bool>,
}

impl ReasonRequest {
    /// A request for `input` with every other field at its default.
    pub fn new(input: impl Into<String>) -> ReasonRequest {
        ReasonRequest {
            input: Some(Input::Text(input.into())),
            ..ReasonRequest::default()
        }
    }

    /// A request for a conversation.
    pub fn messages(messages: Vec<Message>) -> ReasonRequest {
        ReasonRequest {
            input: Some(Input::Messages(messages)),
            ..ReasonRequest::default()
        }
    }

    /// Sets `max_tokens`.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Sets `system`.
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// Sets `temperature`.
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets `include_reasoning`.
    pub fn include_reasoning(mut self, include: bool) -> Self {
        self.include_reasoning = Some(include);
        self
    }

    /// Adds a `metadata` entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }
}

impl From<&str> for ReasonRequest {
    fn from(input: &str) -> Self {
        ReasonRequest::new(input)
    }
}

impl From<String> for ReasonRequest {
    fn from(input: String) -> Self {
        ReasonRequest::new(input)
    }
}

/// What a request cost: integer rao, and the same amount in TAO as an exact decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// rao (1 TAO = 10^9 rao).
    pub rao: u64,
    /// TAO with 9 decimal places, e.g. `"0.000000084"`.
    pub tao: String,
}

impl Cost {
    /// The cost of `rao`, with its TAO spelling.
    pub fn from_rao(rao: u64) -> Cost {
        Cost {
            rao,
            tao: format!("{}.{:09}", rao / 1_000_000_000, rao % 1_000_000_000),
        }
    }
}

/// Token counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens, reasoning included.
    pub output_tokens: u64,
    /// The part of `output_tokens` the provider reports as reasoning.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Input plus output.
    pub total_tokens: u64,
}

/// The model that served a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// `org/model`.
    pub id: String,
    /// The revision, when known.
    pub revision: Option<String>,
    /// The miner's hotkey, when known.
    #[serde(default)]
    pub miner_hotkey: Option<String>,
    /// The miner's uid, when known.
    #[serde(default)]
    pub uid: Option<u64>,
    /// The block since which Affine names it champion, when known.
    #[serde(default)]
    pub since_block: Option<u64>,
    /// `affine`, `static`, `pinned` or `fallback`.
    pub source: String,
}

/// Time to first token and total, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Timing {
    /// Until the first token.
    pub ttft_ms: Option<u64>,
    /// The whole request.
    pub total_ms: Option<u64>,
}

/// The answer of `POST /v1/reason`, and (without texts) a stream's `done` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonResult {
    /// `rsn_…`.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// The model that served.
    pub model: ModelInfo,
    /// The final answer; empty in a stream's `done` (the deltas carry it).
    #[serde(default)]
    pub output: String,
    /// The reasoning text, if any (never in a stream's `done`).
    #[serde(default)]
    pub reasoning: Option<String>,
    /// `stop`, `length` or `content_filter`.
    pub finish_reason: String,
    /// Token counts.
    pub usage: Usage,
    /// What it cost.
    pub cost: Cost,
    /// Timings.
    #[serde(default)]
    pub timing: Timing,
    /// The request id (`X-Request-Id`).
    #[serde(skip)]
    pub request_id: Option<String>,
    /// The caller's limits after this request.
    #[serde(skip)]
    pub rate_limit: Option<RateLimit>,
    /// How many HTTP attempts this result took (more than 1 after automatic retries).
    #[serde(skip)]
    pub attempts: u32,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The answer of `POST /v1/chat/completions`, as the provider gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatCompletion {
    /// The `chat.completion` object.
    pub body: serde_json::Value,
    /// `X-Affine-Cost-Rao`.
    pub cost: Option<Cost>,
    /// `X-Affine-Model`.
    pub model: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// The caller's limits after this request.
    pub rate_limit: Option<RateLimit>,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Models {
    /// `affine-winner` and the winner's id.
    pub data: Vec<Model>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// `affine-winner` or a concrete id.
    pub id: String,
    /// The price on the caller's plan, per 1M tokens (absent while unknown).
    #[serde(default)]
    pub price: Option<Price>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Input and output prices per 1M tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Per 1M input tokens.
    pub input: PriceAmount,
    /// Per 1M output tokens.
    pub output: PriceAmount,
}

/// A price in rao (what is charged), and TAO as the gateway's exact decimal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceAmount {
    /// rao.
    pub rao: u64,
    /// TAO (the JSON number as sent; use `rao` for arithmetic).
    pub tao: serde_json::Number,
}

/// `GET /v1/winner`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Winner {
    /// The serving model.
    pub model: ModelInfo,
    /// When it became the winner (RFC 3339).
    pub since: Option<String>,
    /// The base URL serving it.
    pub upstream: Option<String>,
    /// Fields this version does not type (`serving`, `pending`, `past_champions`, …).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `GET /v1/account`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The account id (an SS58 hotkey or an enterprise slug).
    pub id: String,
    /// `hotkey` or `enterprise`.
    pub kind: String,
    /// The plan's name.
    pub plan: String,
    /// `prepaid` or `postpaid`.
    #[serde(default)]
    pub billing: Option<String>,
    /// The balance in rao (may be negative).
    #[serde(default)]
    pub balance_rao: Option<i64>,
    /// What live requests hold, in rao.
    #[serde(default)]
    pub holds_rao: Option<i64>,
    /// The linked coldkeys.
    #[serde(default)]
    pub coldkeys: Vec<ColdkeyLink>,
    /// Fields this version does not type (`limits`, `remaining`, `subnet`, …).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A coldkey linked to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdkeyLink {
    /// The coldkey's SS58 address.
    pub coldkey: String,
    /// The account its transfers credit.
    pub account: String,
    /// When the link was made (RFC 3339).
    pub linked_at: String,
}

/// `GET /v1/usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// The account.
    pub account: String,
    /// First day (`YYYY-MM-DD`), after any cut to 366 days.
    pub from: String,
    /// Last day.
    pub to: String,
    /// One entry per day with usage.
    pub days: Vec<UsageDay>,
    /// The sum.
    pub total: UsageCounters,
}

/// One day of `GET /v1/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDay {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// The counters.
    #[serde(flatten)]
    pub counters: UsageCounters,
}

/// Usage counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UsageCounters {
    /// Requests.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// rao charged.
    pub rao: u64,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// First day.
    pub from: String,
    /// Last day.
    pub to: String,
    /// Per day.
    pub days: Vec<StatsDay>,
}

/// One day of `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsDay {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Requests.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Distinct callers.
    pub unique_callers: u64,
}

/// `POST /v1/auth/session`: a bearer token for the signing hotkey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The token (treat it as opaque).
    pub token: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tao_is_rao_with_nine_places() {
        assert_eq!(Cost::from_rao(84).tao, "0.000000084");
        assert_eq!(Cost::from_rao(1_500_000_000).tao, "1.500000000");
        assert_eq!(Cost::from_rao(0).tao, "0.000000000");
        assert_eq!(Cost::from_rao(u64::MAX).tao, "18446744073.709551615");
    }

    #[test]
    fn requests_send_only_what_is_set() {
        let body = serde_json::to_value(ReasonRequest::new("2+2?").max_tokens(8)).expect("json");
        assert_eq!(body, serde_json::json!({"input": "2+2?", "max_tokens": 8}));
        let convo = ReasonRequest::messages(vec![Message::new("user", "hi")]);
        assert_eq!(
            serde_json::to_value(convo).expect("json"),
            serde_json::json!({"input": [{"role": "user", "content": "hi"}]})
        );
    }
}
