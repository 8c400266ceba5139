//! What `/v1/chat/completions` accepts, and the request it sends upstream.
//!
//! Everything the provider receives is either priced or harmless: the hold and the charge are
//! computed from the input the provider will read, so a caller cannot make the provider do
//! unpriced work (many choices, large unpriced tool schemas, non-text parts). The rule is an
//! allowlist, written down here and for callers in docs/API.md §5:
//!
//! - handled by the gateway: `model`, `messages`, `max_tokens` / `max_completion_tokens`,
//!   `stream`, `n` (only 1), and the reasoning controls: `reasoning_effort` (mapped to the
//!   provider's thinking switch, [`crate::upstream::reasoning`]), `include_reasoning` and
//!   `reasoning: {effort, exclude}` (OpenRouter's spelling of the same two);
//! - forwarded as sent: [`FORWARDED`];
//! - accepted and not forwarded (they change nothing here): [`IGNORED`];
//! - anything else is refused with 400 `invalid_request` naming the field (`best_of` and
//!   `n > 1` included: one request is one priced answer).
//!
//! Messages take `role` (`system`, `developer`, `user`, `assistant`, `tool`), `content`
//! (a string, text parts, or null on an assistant message with `tool_calls`), `name`, and per
//! role `tool_calls`, `reasoning_content` (assistant) or `tool_call_id` (tool).

use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};
use crate::upstream::reasoning::{self, Effort};

/// Top-level fields passed to the provider unchanged.
pub const FORWARDED: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "seed",
    "stop",
    "logit_bias",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "stream_options",
];

/// Top-level fields accepted and dropped: client bookkeeping the provider has no use for.
pub const IGNORED: &[&str] = &[
    "user",
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
];

/// Top-level fields whose size is input the provider reads (schemas rendered into the prompt).
const PRICED_EXTRAS: &[&str] = &["tools", "tool_choice", "response_format"];

/// Message fields by role, besides `role` and `content`.
fn message_fields(role: &str) -> Option<&'static [&'static str]> {
    Some(match role {
        "system" | "developer" | "user" => &["name"],
        "assistant" => &["name", "tool_calls", "reasoning_content", "refusal"],
        "tool" => &["tool_call_id", "name"],
        _ => return None,
    })
}

/// A validated chat request, ready to be admitted and sent.
#[derive(Debug)]
pub struct ChatPlan {
    /// What the caller asked for (`affine-winner` or a concrete id).
    pub model: String,
    /// Whether the caller asked for a stream.
    pub stream: bool,
    /// `max_completion_tokens`, else `max_tokens`, if the caller set one.
    pub max_tokens: Option<u32>,
    /// The gateway's estimate of the input tokens the provider will read.
    pub input_estimate: u64,
    /// Whether the answer keeps the model's reasoning (`include_reasoning`, default true;
    /// `reasoning.exclude: true` is the same as `false`).
    pub include_reasoning: bool,
    /// The reasoning effort asked for, if any.
    pub effort: Option<Effort>,
    /// The fields to send (without `model`, `max_tokens` and `stream`, which
    /// [`ChatPlan::upstream_body`] sets).
    fields: Map<String, Value>,
}

fn bad(detail: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, detail)
}

impl ChatPlan {
    /// Parses and checks a request body (already known to be JSON within the size limit).
    pub fn parse(body: &[u8]) -> Result<ChatPlan, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(crate::api::classify_json_error)?;
        let Value::Object(mut obj) = value else {
            return Err(bad("the request must be a JSON object"));
        };
        let model = match obj.remove("model") {
            Some(Value::String(m)) => m,
            Some(_) => return Err(bad("`model` must be a string")),
            None => return Err(bad("`model` is required")),
        };
        let messages = match obj.remove("messages") {
            Some(Value::Array(m)) if !m.is_empty() => m,
            Some(Value::Array(_)) => return Err(bad("`messages` must not be empty")),
            Some(_) => return Err(bad("`messages` must be an array")),
            None => return Err(bad("`messages` is required")),
        };
        let stream = match obj.remove("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(bad("`stream` must be a boolean")),
        };
        let max_tokens = whole(obj.remove("max_tokens"), "max_tokens")?;
        let max_completion = whole(obj.remove("max_completion_tokens"), "max_completion_tokens")?;
        match whole(obj.remove("n"), "n")? {
            None | Some(1) => {}
            Some(n) => {
                return Err(bad(format!(
                    "`n` is {n}: this gateway answers one choice per request (send `n: 1` or leave it out)"
                )));
            }
        }
        let (effort, include_reasoning) = reasoning_controls(&mut obj)?;
        let mut fields = Map::new();
        for (k, v) in obj {
            if FORWARDED.contains(&k.as_str()) {
                check_field(&k, &v)?;
                if !v.is_null() {
                    fields.insert(k, v);
                }
            } else if IGNORED.contains(&k.as_str()) {
                check_field(&k, &v)?;
            } else {
                return Err(bad(format!(
                    "`{k}` is not supported on this route (docs/API.md lists the fields it forwards)"
                )));
            }
        }
        let mut texts = Vec::with_capacity(messages.len() + PRICED_EXTRAS.len());
        for (i, m) in messages.iter().enumerate() {
            texts.push(check_message(i, m)?);
        }
        for k in PRICED_EXTRAS {
            if let Some(v) = fields.get(*k) {
                texts.push(json_len(v));
            }
        }
        fields.insert("messages".into(), Value::Array(messages));
        Ok(ChatPlan {
            model,
            stream,
            max_tokens: max_completion.or(max_tokens),
            input_estimate: crate::api::reason::estimate_input_tokens(texts.into_iter()),
            include_reasoning,
            effort,
            fields,
        })
    }

    /// The provider's request: the checked fields, the served model, the admitted
    /// `max_tokens`, and usage reporting on streams (the charge is settled from it).
    pub fn upstream_body(mut self, model: &str, max_tokens: u32) -> Result<Vec<u8>, ApiError> {
        let f = &mut self.fields;
        f.insert("model".into(), model.into());
        f.insert("max_tokens".into(), max_tokens.into());
        f.insert("stream".into(), self.stream.into());
        if let Some(e) = self.effort {
            reasoning::apply(f, e);
        }
        if self.stream {
            f.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        } else {
            f.remove("stream_options");
        }
        serde_json::to_vec(&self.fields)
            .map_err(|_| ApiError::new(ErrorCode::Internal, "could not encode the request"))
    }
}

/// Takes the reasoning controls out of the request: the effort (`reasoning_effort`, or
/// `reasoning.effort`) and whether reasoning is returned (`include_reasoning`, or
/// `reasoning.exclude`). Asking for both spellings with different values is refused.
fn reasoning_controls(obj: &mut Map<String, Value>) -> Result<(Option<Effort>, bool), ApiError> {
    let effort_of = |v: Value, name: &str| match v {
        Value::Null => Ok(None),
        Value::String(s) => Effort::parse(&s)
            .map(Some)
            .ok_or_else(|| bad(format!("`{name}` must be one of {}", Effort::NAMES))),
        _ => Err(bad(format!("`{name}` must be a string"))),
    };
    let mut effort = effort_of(
        obj.remove("reasoning_effort").unwrap_or(Value::Null),
        "reasoning_effort",
    )?;
    let mut include = match obj.remove("include_reasoning") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b),
        Some(_) => return Err(bad("`include_reasoning` must be a boolean")),
    };
    match obj.remove("reasoning") {
        None | Some(Value::Null) => {}
        Some(Value::Object(r)) => {
            for (k, v) in r {
                match k.as_str() {
                    "effort" => {
                        let e = effort_of(v, "reasoning.effort")?;
                        if effort.is_some() && e.is_some() && effort != e {
                            return Err(bad("`reasoning_effort` and `reasoning.effort` differ"));
                        }
                        effort = effort.or(e);
                    }
                    "exclude" => {
                        let Value::Bool(x) = v else {
                            return Err(bad("`reasoning.exclude` must be a boolean"));
                        };
                        if include == Some(x) {
                            return Err(bad(
                                "`include_reasoning` and `reasoning.exclude` disagree",
                            ));
                        }
                        include = Some(!x);
                    }
                    _ => {
                        return Err(bad(format!(
                            "`reasoning.{k}` is not supported (only `effort` and `exclude`)"
                        )));
                    }
                }
            }
        }
        Some(_) => return Err(bad("`reasoning` must be an object")),
    }
    Ok((effort, include.unwrap_or(true)))
}

/// An optional whole number of `u32` range, read as `/v1/reason` reads its whole numbers
/// ([`crate::api::reason::whole`]: `5` or `5.0`).
fn whole(v: Option<Value>, name: &str) -> Result<Option<u32>, ApiError> {
    crate::api::reason::whole::opt_u32(v.unwrap_or(Value::Null))
        .map_err(|e| bad(format!("`{name}`: {e}")))
}

/// Checks message `i` against the allowlist; returns the bytes of text the provider reads.
fn check_message(i: usize, m: &Value) -> Result<usize, ApiError> {
    let Value::Object(obj) = m else {
        return Err(bad(format!("`messages[{i}]` must be an object")));
    };
    let role = obj.get("role").and_then(Value::as_str).unwrap_or("");
    let Some(allowed) = message_fields(role) else {
        return Err(bad(format!(
            "`messages[{i}].role` must be system, developer, user, assistant or tool"
        )));
    };
    let mut len = 0usize;
    for (k, v) in obj {
        match k.as_str() {
            "role" => {}
            "content" => len += content_len(i, role, v, obj.contains_key("tool_calls"))?,
            k if allowed.contains(&k) => {
                check_message_field(i, k, v)?;
                len += strings_len(v);
            }
            k => {
                return Err(bad(format!(
                    "`messages[{i}].{k}` is not supported for a {role} message"
                )));
            }
        }
    }
    if !obj.contains_key("content") && !obj.contains_key("tool_calls") {
        return Err(bad(format!("`messages[{i}].content` is required")));
    }
    Ok(len)
}

/// Checks a top-level field against the type and range the OpenAPI document gives it
/// (`ChatCompletionRequest`): a value the provider would refuse, or misread, is the caller's
/// 400 naming the field, not a provider error after the request was admitted. `null` is the
/// same as leaving the field out.
fn check_field(k: &str, v: &Value) -> Result<(), ApiError> {
    let num = |lo: f64, hi: f64, lo_open: bool| -> Result<(), ApiError> {
        match v.as_f64() {
            Some(x) if x <= hi && (x > lo || (!lo_open && x == lo)) => Ok(()),
            _ => {
                let open = if lo_open { "(" } else { "[" };
                Err(bad(format!("`{k}` must be a number in {open}{lo}, {hi}]")))
            }
        }
    };
    let integer = |lo: Option<i64>| -> Result<(), ApiError> {
        match crate::api::reason::whole::opt_i64(v.clone()) {
            Ok(Some(x)) if lo.is_none_or(|lo| x >= lo) => Ok(()),
            _ => Err(bad(match lo {
                Some(lo) => format!("`{k}` must be an integer of at least {lo}"),
                None => format!("`{k}` must be a 64-bit integer"),
            })),
        }
    };
    let kind = |ok: bool, want: &str| -> Result<(), ApiError> {
        if ok {
            Ok(())
        } else {
            Err(bad(format!("`{k}` must be {want}")))
        }
    };
    if v.is_null() {
        return Ok(());
    }
    match k {
        "temperature" => num(0.0, 2.0, false),
        "top_p" => num(0.0, 1.0, true),
        "min_p" => num(0.0, 1.0, false),
        "frequency_penalty" | "presence_penalty" => num(-2.0, 2.0, false),
        "repetition_penalty" => num(0.0, 2.0, true),
        "top_k" => integer(Some(-1)),
        "seed" => integer(None),
        "stop" => {
            let ok = match v {
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => {
                    a.len() <= crate::api::reason::MAX_STOP_SEQUENCES
                        && a.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty()))
                }
                _ => false,
            };
            kind(
                ok,
                "a non-empty string or an array of at most 4 non-empty strings",
            )
        }
        "logit_bias" => kind(
            v.as_object().is_some_and(|o| {
                o.values()
                    .all(|b| b.as_f64().is_some_and(|b| (-100.0..=100.0).contains(&b)))
            }),
            "an object of token ids to numbers from -100 to 100",
        ),
        "metadata" => kind(
            v.as_object()
                .is_some_and(|o| o.values().all(Value::is_string)),
            "an object of strings",
        ),
        "response_format" | "stream_options" => kind(v.is_object(), "an object"),
        "tools" => kind(
            v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
            "an array of objects",
        ),
        "tool_choice" => kind(v.is_string() || v.is_object(), "a string or an object"),
        "parallel_tool_calls" | "store" => kind(v.is_boolean(), "a boolean"),
        _ => kind(v.is_string(), "a string"),
    }
}

/// The type of a message field besides `role` and `content`: what the provider would refuse
/// is the caller's 400 here, named, rather than a provider error.
fn check_message_field(i: usize, k: &str, v: &Value) -> Result<(), ApiError> {
    // `null` is the same as leaving the field out, as OpenAI's SDKs may send it.
    let ok = v.is_null()
        || match k {
            "tool_calls" => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
            _ => v.is_string(),
        };
    if ok {
        return Ok(());
    }
    let want = match k {
        "tool_calls" => "an array of objects",
        _ => "a string",
    };
    Err(bad(format!("`messages[{i}].{k}` must be {want} or null")))
}

/// Bytes of a message's content: a string, text parts, or null beside `tool_calls`.
fn content_len(i: usize, role: &str, v: &Value, has_tool_calls: bool) -> Result<usize, ApiError> {
    match v {
        Value::String(s) => Ok(s.len()),
        Value::Null if role == "assistant" && has_tool_calls => Ok(0),
        Value::Array(parts) => parts.iter().enumerate().try_fold(0usize, |acc, (j, p)| {
            let text = p
                .as_object()
                .filter(|o| o.get("type").and_then(Value::as_str) == Some("text"))
                .filter(|o| o.keys().all(|k| k == "type" || k == "text"))
                .and_then(|o| o.get("text"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    bad(format!(
                        "`messages[{i}].content[{j}]` must be a text part (`{{\"type\":\"text\",\"text\":…}}`): this model reads text only"
                    ))
                })?;
            Ok(acc + text.len())
        }),
        _ => Err(bad(format!(
            "`messages[{i}].content` must be a string or an array of text parts"
        ))),
    }
}

/// Bytes of every string (keys included) in `v`: tool calls' names and arguments, names.
fn strings_len(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(strings_len).sum(),
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + strings_len(v)).sum(),
        Value::Number(_) | Value::Bool(_) | Value::Null => 8,
    }
}

/// Bytes of `v` as JSON: tool schemas and response formats reach the model as text.
fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(0, |b| b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> String {
        let e = ChatPlan::parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{body}: {}", e.detail);
        e.detail.to_string()
    }

    #[test]
    fn only_allowlisted_fields_reach_the_provider() {
        let p = ChatPlan::parse(
            br#"{"model":"affine-winner","messages":[{"role":"user","content":"hi"}],
                "temperature":0.5,"seed":3,"stop":["x"],"user":"u-1","store":false,
                "reasoning_effort":"high","response_format":{"type":"json_object"},"n":1}"#,
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&p.upstream_body("m", 9).unwrap()).unwrap();
        let mut keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "chat_template_kwargs",
                "max_tokens",
                "messages",
                "model",
                "reasoning_effort",
                "response_format",
                "seed",
                "stop",
                "stream",
                "temperature"
            ]
        );
        assert_eq!(body["max_tokens"], 9);
        assert_eq!(body["model"], "m");
        assert_eq!(body["chat_template_kwargs"]["enable_thinking"], true);
    }

    #[test]
    fn forwarded_fields_are_checked_against_their_documented_types() {
        let with = |extra: &str| {
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],{extra}}}"#)
        };
        for (extra, named) in [
            (r#""temperature":"hot""#, "`temperature`"),
            (r#""temperature":2.5"#, "`temperature`"),
            (r#""top_p":0"#, "`top_p`"),
            (r#""top_k":-2"#, "`top_k`"),
            (r#""seed":1.5"#, "`seed`"),
            (r#""stop":["a","b","c","d","e"]"#, "`stop`"),
            (r#""stop":[""]"#, "`stop`"),
            (r#""logit_bias":{"42":101}"#, "`logit_bias`"),
            (r#""tools":[1]"#, "`tools`"),
            (r#""parallel_tool_calls":"yes""#, "`parallel_tool_calls`"),
            (r#""metadata":{"k":1}"#, "`metadata`"),
            (r#""user":7"#, "`user`"),
        ] {
            assert!(refused(&with(extra)).contains(named), "{extra}");
        }
        let p = ChatPlan::parse(
            with(r#""seed":2.0,"top_k":-1,"top_p":null,"stop":"x","logit_bias":{"42":-100},"tool_choice":"none""#)
                .as_bytes(),
        )
        .unwrap();
        let body = p.upstream_body("m", 9).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        // `null` is the same as leaving a field out: nothing of it reaches the provider.
        assert!(body.get("top_p").is_none());
        assert_eq!(body["top_k"], -1);
    }

    #[test]
    fn message_fields_are_checked_by_type() {
        let with = |m: &str| format!(r#"{{"model":"m","messages":[{m}]}}"#);
        assert!(
            refused(&with(
                r#"{"role":"assistant","content":"a","reasoning_content":5}"#
            ))
            .contains("`messages[0].reasoning_content` must be a string or null")
        );
        assert!(
            refused(&with(
                r#"{"role":"assistant","content":null,"tool_calls":{}}"#
            ))
            .contains("`messages[0].tool_calls`")
        );
        assert!(refused(&with(r#"{"role":"user","content":"a","name":["x"]}"#)).contains("name"));
        ChatPlan::parse(
            with(r#"{"role":"tool","content":"r","name":null,"tool_call_id":"c"}"#).as_bytes(),
        )
        .unwrap();
    }

    #[test]
    fn reasoning_controls_are_read_and_checked() {
        let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
        let p =
            |extra: &str| ChatPlan::parse(format!(r#"{{"model":"m",{msgs}{extra}}}"#).as_bytes());
        let plan = p("").unwrap();
        assert!(plan.include_reasoning && plan.effort.is_none());
        let body: Value = serde_json::from_slice(&plan.upstream_body("m", 9).unwrap()).unwrap();
        assert!(
            body.get("chat_template_kwargs").is_none(),
            "no effort, no switch"
        );
        let plan = p(r#","reasoning_effort":"none","include_reasoning":false"#).unwrap();
        assert_eq!(plan.effort, Some(Effort::None));
        assert!(!plan.include_reasoning);
        let body: Value = serde_json::from_slice(&plan.upstream_body("m", 9).unwrap()).unwrap();
        assert_eq!(body["chat_template_kwargs"]["enable_thinking"], false);
        assert!(body.get("reasoning_effort").is_none());
        assert!(
            body.get("include_reasoning").is_none(),
            "the gateway's own, never forwarded"
        );
        let plan = p(r#","reasoning":{"effort":"medium","exclude":true}"#).unwrap();
        assert_eq!(plan.effort, Some(Effort::Medium));
        assert!(!plan.include_reasoning);
        assert!(
            refused(&format!(
                r#"{{"model":"m",{msgs},"reasoning_effort":"max"}}"#
            ))
            .contains("one of")
        );
        assert!(
            refused(&format!(
                r#"{{"model":"m",{msgs},"reasoning":{{"budget":1}}}}"#
            ))
            .contains("reasoning.budget")
        );
        assert!(refused(&format!(r#"{{"model":"m",{msgs},"include_reasoning":false,"reasoning":{{"exclude":false}}}}"#)).contains("disagree"));
    }

    #[test]
    fn unpriced_work_is_refused() {
        let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
        assert!(refused(&format!(r#"{{"model":"m",{msgs},"n":64}}"#)).contains("`n` is 64"));
        assert!(refused(&format!(r#"{{"model":"m",{msgs},"best_of":2}}"#)).contains("best_of"));
        assert!(
            refused(&format!(r#"{{"model":"m",{msgs},"logprobs":true}}"#)).contains("logprobs")
        );
        assert!(
            refused(&format!(r#"{{"model":"m",{msgs},"functions":[]}}"#)).contains("functions")
        );
        refused(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:"}}]}]}"#,
        );
        refused(r#"{"model":"m","messages":[{"role":"user","content":"x","extra":1}]}"#);
        refused(r#"{"model":"m","messages":[{"role":"user","content":"x","tool_calls":[]}]}"#);
        refused(r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#);
        refused(r#"{"model":"m","messages":[]}"#);
        refused(r#"{"model":"m","messages":[{"role":"user"}]}"#);
    }

    #[test]
    fn the_estimate_counts_everything_the_provider_reads() {
        let small =
            ChatPlan::parse(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
                .unwrap()
                .input_estimate;
        let schema = "x".repeat(30_000);
        let with_tools = ChatPlan::parse(
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],
                   "tools":[{{"type":"function","function":{{"name":"f","description":"{schema}"}}}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap()
        .input_estimate;
        assert!(with_tools >= small + 10_000, "{small} vs {with_tools}");
        let args = "y".repeat(9_000);
        let tool_calls = ChatPlan::parse(
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}},
                   {{"role":"assistant","content":null,"reasoning_content":"why",
                     "tool_calls":[{{"id":"c1","type":"function","function":{{"name":"f","arguments":"{args}"}}}}]}},
                   {{"role":"tool","tool_call_id":"c1","content":"ok"}},
                   {{"role":"user","content":[{{"type":"text","text":"{args}"}}]}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap()
        .input_estimate;
        assert!(tool_calls >= small + 6_000, "{small} vs {tool_calls}");
    }
}
