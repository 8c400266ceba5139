//! `POST /v1/reason`: request, response and stream event payloads (docs/API.md §4).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ModelInfo;
use crate::error::{ApiError, ErrorCode};

/// Most metadata entries a request may carry.
pub const MAX_METADATA_ENTRIES: usize = 16;
/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 64;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 256;
/// Most stop sequences (the OpenAI limit, which providers enforce too).
pub const MAX_STOP_SEQUENCES: usize = 4;

/// The body of `POST /v1/reason`. Only `input` is required; unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    /// A prompt, or a conversation of `{role, content}` messages.
    pub input: Input,
    /// An optional system prompt, sent before the input.
    #[serde(default)]
    pub system: Option<String>,
    /// Most tokens to generate, reasoning included (default from configuration, 2048; the
    /// plan may allow less than the maximum shown).
    #[serde(default, deserialize_with = "whole::opt_u32")]
    #[schema(minimum = 1, maximum = 32768, example = 2048)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 2.0, example = 0.6)]
    pub temperature: Option<f64>,
    /// Nucleus sampling, (0, 1].
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0, maximum = 1.0, example = 0.95)]
    pub top_p: Option<f64>,
    /// Seed for providers that support reproducible sampling.
    #[serde(default, deserialize_with = "whole::opt_i64")]
    pub seed: Option<i64>,
    /// Up to 4 stop sequences (a single string is accepted too).
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Whether to return the model's reasoning (default true).
    #[serde(default)]
    pub include_reasoning: Option<bool>,
    /// How hard the model thinks: `none` and `minimal` turn the provider's thinking switch
    /// off, `low`, `medium` and `high` turn it on and are passed on (default: the model's own).
    #[serde(default)]
    pub reasoning_effort: Option<crate::upstream::reasoning::Effort>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Up to 16 string keys (≤ 64 bytes) with string values (≤ 256 bytes), recorded with usage.
    #[serde(default)]
    #[schema(schema_with = metadata_schema)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Whole numbers as JSON Schema sees them: `5` and `5.0` are both the integer 5 (a schema
/// validator or fuzzer may send either), anything with a fraction or out of range is refused.
pub mod whole {
    use serde::de::{self, Deserialize, Deserializer};

    fn integral(n: &serde_json::Number) -> Option<i128> {
        if let Some(u) = n.as_u64() {
            return Some(i128::from(u));
        }
        if let Some(i) = n.as_i64() {
            return Some(i128::from(i));
        }
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
            .map(|f| f as i128)
    }

    /// A whole number in `lo..=hi`, converted to `T` (in range by construction).
    fn bounded<E: de::Error, T: TryFrom<i128>>(
        n: &serde_json::Number,
        lo: i128,
        hi: i128,
    ) -> Result<T, E> {
        integral(n)
            .filter(|v| (lo..=hi).contains(v))
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| {
                E::custom(format!(
                    "expected a whole number from {lo} to {hi}, got {n}"
                ))
            })
    }

    fn optional<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
        d: D,
        lo: i128,
        hi: i128,
    ) -> Result<Option<T>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?
            .map(|n| bounded(&n, lo, hi))
            .transpose()
    }

    const I64_MAX: i128 = i64::MAX as i128;

    /// An optional `u32`.
    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        optional(d, 0, i128::from(u32::MAX))
    }

    /// An optional `u64` no larger than `i64::MAX` (what JSON Schema's int64 allows).
    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        optional(d, 0, I64_MAX)
    }

    /// An optional `i64`.
    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        optional(d, i128::from(i64::MIN), I64_MAX)
    }
}

/// `input`: a prompt string or a list of messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A single user prompt.
    Text(String),
    /// A conversation.
    Messages(Vec<Message>),
}

fn string(min: usize, max: Option<usize>) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(max)
        .build()
}

// ASCII keys and values in the schema keep its byte limits exact for generated examples.
pub(crate) fn metadata_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    let mut value = string(0, Some(MAX_METADATA_VALUE_BYTES));
    value.pattern = Some("^[ -~]*$".into());
    let mut key = string(1, Some(MAX_METADATA_KEY_BYTES));
    key.pattern = Some("^[ -~]+$".into());
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Object,
            Type::Null,
        ]))
        .max_properties(Some(MAX_METADATA_ENTRIES))
        .property_names(Some(key))
        .additional_properties(Some(AdditionalProperties::RefOr(value.into())))
        .build()
}

impl utoipa::PartialSchema for Input {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder};
        OneOfBuilder::new()
            .item(string(1, None))
            .item(
                ArrayBuilder::new()
                    .items(<Message as utoipa::PartialSchema>::schema())
                    .min_items(Some(1)),
            )
            .description(Some(
                "A prompt, or a conversation of {role, content} messages",
            ))
            .into()
    }
}

impl ToSchema for Input {}

impl utoipa::PartialSchema for Stop {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder};
        OneOfBuilder::new()
            .item(string(1, None))
            .item(
                ArrayBuilder::new()
                    .items(string(1, None))
                    .max_items(Some(MAX_STOP_SEQUENCES)),
            )
            .into()
    }
}

impl ToSchema for Stop {}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
}

/// Author of a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The caller.
    User,
    /// The model (earlier turns).
    Assistant,
}

/// `stop`: one sequence or several.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// One stop sequence.
    One(String),
    /// Several stop sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences as a slice, whichever form was sent.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Stop::One(s) => std::slice::from_ref(s),
            Stop::Many(v) => v,
        }
    }
}

// Hand-written visitors instead of `#[serde(untagged)]`: untagged enums swallow the inner
// error, so an unknown field inside a message would surface as a vague "did not match any
// variant" instead of `unknown_field`.
impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Input;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of {role, content} messages")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Input, E> {
                Ok(Input::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Input, E> {
                Ok(Input::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Input, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
                while let Some(m) = seq.next_element::<Message>()? {
                    out.push(m);
                }
                Ok(Input::Messages(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Stop;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Stop, E> {
                Ok(Stop::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Stop, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Stop::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Limits that validation applies; they come from configuration (and later the plan).
#[derive(Debug, Clone, Copy)]
pub struct ReasonLimits {
    /// `max_tokens` when the request has none.
    pub default_max_tokens: u32,
    /// Largest `max_tokens` accepted.
    pub max_tokens_limit: u32,
}

impl ReasonRequest {
    /// Parses a body, classifying failures into `invalid_json`, `unknown_field` and
    /// `invalid_request`.
    pub fn from_slice(body: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(body).map_err(classify_json_error)
    }

    /// Checks values the types cannot express; returns the `max_tokens` to use.
    pub fn validate(&self, limits: ReasonLimits) -> Result<u32, ApiError> {
        let bad = |d: String| Err(ApiError::new(ErrorCode::InvalidRequest, d));
        match &self.input {
            Input::Text(t) if t.is_empty() => return bad("`input` must not be empty".into()),
            Input::Messages(m) if m.is_empty() => {
                return bad("`input` must contain at least one message".into());
            }
            Input::Messages(_) | Input::Text(_) => {}
        }
        let max_tokens = self.max_tokens.unwrap_or(limits.default_max_tokens);
        if max_tokens == 0 {
            return bad("`max_tokens` must be at least 1".into());
        }
        if max_tokens > limits.max_tokens_limit {
            return Err(ApiError::new(
                ErrorCode::MaxTokensExceedsPlan,
                format!(
                    "`max_tokens` is {max_tokens}; the most allowed is {}",
                    limits.max_tokens_limit
                ),
            ));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return bad(format!("`temperature` must be between 0 and 2, got {t}"));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return bad(format!("`top_p` must be in (0, 1], got {p}"));
        }
        if let Some(stop) = &self.stop {
            let s = stop.as_slice();
            if s.len() > MAX_STOP_SEQUENCES {
                return bad(format!(
                    "`stop` has {} sequences; at most {MAX_STOP_SEQUENCES} are allowed",
                    s.len()
                ));
            }
            if s.iter().any(|x| x.is_empty()) {
                return bad("`stop` sequences must not be empty".into());
            }
        }
        if let Some(md) = &self.metadata {
            if md.len() > MAX_METADATA_ENTRIES {
                return bad(format!(
                    "`metadata` has {} keys; at most {MAX_METADATA_ENTRIES} are allowed",
                    md.len()
                ));
            }
            for (k, v) in md {
                if k.is_empty() || k.len() > MAX_METADATA_KEY_BYTES {
                    return bad(format!(
                        "`metadata` keys must be 1 to {MAX_METADATA_KEY_BYTES} bytes"
                    ));
                }
                // Metadata is echoed into usage events, CSV exports and operators' terminals:
                // printable ASCII only (the schema's pattern), so no control character or
                // escape sequence can ride along.
                if !printable_ascii(k) || !printable_ascii(v) {
                    return bad(
                        "`metadata` keys and values must be printable ASCII (space to `~`)".into(),
                    );
                }
                if v.len() > MAX_METADATA_VALUE_BYTES {
                    return bad(format!(
                        "`metadata.{k}` is {} bytes; at most {MAX_METADATA_VALUE_BYTES} are allowed",
                        v.len()
                    ));
                }
            }
        }
        Ok(max_tokens)
    }

    /// A generous estimate of the input tokens (reconciled with the provider's count later).
    pub fn input_token_estimate(&self) -> u64 {
        let system = self.system.as_ref().map(|s| s.len());
        let texts: Box<dyn Iterator<Item = usize>> = match &self.input {
            Input::Text(t) => Box::new(std::iter::once(t.len())),
            Input::Messages(m) => Box::new(m.iter().map(|m| m.content.len())),
        };
        estimate_input_tokens(system.into_iter().chain(texts))
    }

    /// Whether reasoning text goes back to the caller.
    pub fn wants_reasoning(&self) -> bool {
        self.include_reasoning.unwrap_or(true)
    }
}

/// Only the characters from space to `~`: what the schema's metadata pattern allows.
fn printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// Maps a serde_json error to the contract's 400 codes.
pub fn classify_json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            ErrorCode::InvalidJson,
            format!("body is not valid JSON: {e}"),
        ),
        Category::Data => {
            let msg = e.to_string();
            // serde's derive reports unknown fields with this fixed wording.
            let code = if msg.starts_with("unknown field") {
                ErrorCode::UnknownField
            } else {
                ErrorCode::InvalidRequest
            };
            ApiError::new(code, msg)
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A natural end or a stop sequence.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The provider filtered the output.
    ContentFilter,
}

impl FinishReason {
    /// Maps the upstream's `finish_reason`; anything unknown counts as a natural stop.
    pub fn from_upstream(s: Option<&str>) -> Self {
        match s {
            Some("length") => FinishReason::Length,
            Some("content_filter") => FinishReason::ContentFilter,
            _ => FinishReason::Stop,
        }
    }
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens, reasoning included.
    pub output_tokens: u64,
    /// The part of `output_tokens` spent on reasoning (0 when unknown).
    pub reasoning_tokens: u64,
    /// `input_tokens + output_tokens`.
    pub total_tokens: u64,
}

/// What a request cost. Integer rao; `tao` is the same amount as a decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Cost {
    /// Cost in rao (1 TAO = 10^9 rao).
    pub rao: u64,
    /// The same cost in TAO, exactly, with 9 decimals.
    #[schema(example = "0.000000000")]
    pub tao: String,
}

impl Cost {
    /// A cost of `rao`, with its exact TAO rendering.
    pub fn from_rao(rao: u64) -> Self {
        Cost {
            rao,
            tao: format!("{}.{:09}", rao / 1_000_000_000, rao % 1_000_000_000),
        }
    }
}

/// Latency as the caller saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Timing {
    /// Milliseconds until the first token (non-streaming: until the upstream answered).
    pub ttft_ms: u64,
    /// Milliseconds for the whole request.
    pub total_ms: u64,
}

/// The 200 body of `POST /v1/reason`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReasonResponse {
    /// `rsn_` followed by the request's unique id.
    #[schema(example = "rsn_0f8e2b7c9d3a4e5f8a1b2c3d4e5f6a7b")]
    pub id: String,
    /// Always `reason.result`.
    #[schema(example = "reason.result")]
    pub object: String,
    /// Unix time (seconds) when the request was accepted.
    pub created: i64,
    /// The model that answered.
    pub model: ModelInfo,
    /// The final answer, never containing the think block.
    pub output: String,
    /// The reasoning, or null when the model gave none or it was not requested.
    pub reasoning: Option<String>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// What it cost.
    pub cost: Cost,
    /// Latency.
    pub timing: Timing,
}

/// The `data` of the stream's `done` event: the response without `output` and `reasoning`.
#[derive(Debug, Clone, Copy)]
pub struct ReasonDone<'a>(pub &'a ReasonResponse);

impl Serialize for ReasonDone<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut st = s.serialize_struct("ReasonDone", 8)?;
        st.serialize_field("id", &r.id)?;
        st.serialize_field("object", &r.object)?;
        st.serialize_field("created", &r.created)?;
        st.serialize_field("model", &r.model)?;
        st.serialize_field("finish_reason", &r.finish_reason)?;
        st.serialize_field("usage", &r.usage)?;
        st.serialize_field("cost", &r.cost)?;
        st.serialize_field("timing", &r.timing)?;
        st.end()
    }
}

/// Schema of the `done` event's data (documentation only; see [`ReasonDone`]).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReasonDoneSchema {
    /// As in the response.
    pub id: String,
    /// `reason.result`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model that answered.
    pub model: ModelInfo,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// What it cost.
    pub cost: Cost,
    /// Latency.
    pub timing: Timing,
}

/// The `data` of `reasoning` and `output` stream events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamDelta<'a> {
    /// The next piece of text.
    pub delta: &'a str,
}

/// A rough, deliberately generous input-token estimate: one token per 3 bytes of text plus a
/// few per message. Reconciled with the provider's count after the answer.
pub fn estimate_input_tokens(texts: impl Iterator<Item = usize>) -> u64 {
    texts.map(|len| len.div_ceil(3) as u64 + 4).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ReasonLimits = ReasonLimits {
        default_max_tokens: 2048,
        max_tokens_limit: 32768,
    };

    fn code_of(body: &str) -> ErrorCode {
        match ReasonRequest::from_slice(body.as_bytes()) {
            Ok(r) => r.validate(LIMITS).unwrap_err().code,
            Err(e) => e.code,
        }
    }

    #[test]
    fn minimal_request_parses_with_defaults() {
        let r = ReasonRequest::from_slice(br#"{"input":"2+2?"}"#).unwrap();
        assert_eq!(r.input, Input::Text("2+2?".into()));
        assert_eq!(r.validate(LIMITS).unwrap(), 2048);
        assert!(r.wants_reasoning());
        assert!(!r.stream);
    }

    #[test]
    fn messages_and_all_fields_parse() {
        let r = ReasonRequest::from_slice(
            br#"{"input":[{"role":"user","content":"hi"}],"system":"s","max_tokens":5,
                "temperature":0.6,"top_p":0.95,"seed":7,"stop":"x","include_reasoning":false,
                "stream":true,"metadata":{"k":"v"}}"#,
        )
        .unwrap();
        assert_eq!(r.validate(LIMITS).unwrap(), 5);
        assert_eq!(r.stop.unwrap().as_slice(), ["x".to_string()]);
        assert!(!r.include_reasoning.unwrap());
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(code_of("{"), ErrorCode::InvalidJson);
        assert_eq!(code_of("not json"), ErrorCode::InvalidJson);
        assert_eq!(
            code_of(r#"{"input":"x","inptu":1}"#),
            ErrorCode::UnknownField
        );
        assert_eq!(
            code_of(r#"{"input":[{"role":"user","content":"x","name":"n"}]}"#),
            ErrorCode::UnknownField
        );
        assert_eq!(code_of(r#"{}"#), ErrorCode::InvalidRequest);
        assert_eq!(code_of(r#"{"input":5}"#), ErrorCode::InvalidRequest);
        assert_eq!(code_of(r#"{"input":""}"#), ErrorCode::InvalidRequest);
        assert_eq!(code_of(r#"{"input":[]}"#), ErrorCode::InvalidRequest);
        assert_eq!(
            code_of(r#"{"input":[{"role":"robot","content":"x"}]}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(r#"{"input":"x","max_tokens":-1}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(r#"{"input":"x","max_tokens":0}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(r#"{"input":"x","max_tokens":40000}"#),
            ErrorCode::MaxTokensExceedsPlan
        );
        assert_eq!(
            code_of(r#"{"input":"x","temperature":3}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(r#"{"input":"x","top_p":0}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(r#"{"input":"x","stop":["a","b","c","d","e"]}"#),
            ErrorCode::InvalidRequest
        );
        let many: String = (0..17).map(|i| format!(r#""k{i}":"v","#)).collect();
        assert_eq!(
            code_of(&format!(
                r#"{{"input":"x","metadata":{{{}}}}}"#,
                many.trim_end_matches(',')
            )),
            ErrorCode::InvalidRequest
        );
        let long = "v".repeat(257);
        assert_eq!(
            code_of(&format!(r#"{{"input":"x","metadata":{{"k":"{long}"}}}}"#)),
            ErrorCode::InvalidRequest
        );
    }

    /// Issue #11 item 14: the schema says printable ASCII; control characters (a newline, an
    /// ANSI escape, DEL) and non-ASCII text in metadata keys or values are refused.
    #[test]
    fn metadata_takes_printable_ascii_only() {
        for bad in [
            r#"{"input":"x","metadata":{"k":"line\nbreak"}}"#,
            r#"{"input":"x","metadata":{"k":"\u001b[31mred"}}"#,
            r#"{"input":"x","metadata":{"k\u0000":"v"}}"#,
            r#"{"input":"x","metadata":{"k":"del\u007f"}}"#,
            r#"{"input":"x","metadata":{"k":"caf\u00e9"}}"#,
        ] {
            assert_eq!(code_of(bad), ErrorCode::InvalidRequest, "{bad}");
        }
        let ok: ReasonRequest =
            serde_json::from_str(r#"{"input":"x","metadata":{"trace id":"a-b_c.d ~ !"}}"#).unwrap();
        assert!(ok.validate(LIMITS).is_ok());
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        let r =
            ReasonRequest::from_slice(br#"{"input":"x","max_tokens":5.0,"seed":-3.0}"#).unwrap();
        assert_eq!(r.max_tokens, Some(5));
        assert_eq!(r.seed, Some(-3));
        assert_eq!(
            code_of(r#"{"input":"x","max_tokens":5.5}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(r#"{"input":"x","max_tokens":1e20}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(r#"{"input":"x","max_tokens":"5"}"#),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn tao_rendering_is_exact() {
        assert_eq!(Cost::from_rao(0).tao, "0.000000000");
        assert_eq!(Cost::from_rao(1).tao, "0.000000001");
        assert_eq!(Cost::from_rao(1_234_567_890).tao, "1.234567890");
        assert_eq!(Cost::from_rao(u64::MAX).tao, "18446744073.709551615");
    }

    #[test]
    fn done_omits_texts() {
        let r = ReasonResponse {
            id: "rsn_x".into(),
            object: "reason.result".into(),
            created: 1,
            model: ModelInfo {
                id: "a/b".into(),
                revision: None,
                miner_hotkey: None,
                uid: None,
                since_block: None,
                source: crate::api::ModelSource::Static,
            },
            output: "o".into(),
            reasoning: Some("r".into()),
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            cost: Cost::from_rao(0),
            timing: Timing::default(),
        };
        let v = serde_json::to_value(ReasonDone(&r)).unwrap();
        assert!(v.get("output").is_none() && v.get("reasoning").is_none());
        assert_eq!(v["id"], "rsn_x");
        assert_eq!(v["cost"]["tao"], "0.000000000");
    }
}
