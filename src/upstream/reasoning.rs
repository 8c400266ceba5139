//! Reasoning controls: how a caller's `reasoning_effort` (chat completions, `/v1/reason`) or
//! `reasoning.effort` (responses) reaches the provider, and how reasoning is left out of an
//! OpenAI-shaped answer when the caller asked for it not to be returned.
//!
//! Chutes serves models through vLLM and SGLang, whose documented thinking switch is the chat
//! template variable `chat_template_kwargs.enable_thinking` (Qwen3-style templates; the
//! champion's family). So `none` and `minimal` send `enable_thinking: false`, and `low`,
//! `medium`, `high` send `enable_thinking: true` plus `reasoning_effort` itself, which the
//! servers hand to models whose template reads it (gpt-oss style). No reasoning budget is sent:
//! neither server documents a per-request thinking budget for these templates, and the caller's
//! `max_tokens` already bounds reasoning and answer together.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::think::{Piece, ThinkSplitter};

/// How hard the model should think.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Effort {
    /// No reasoning: the provider's thinking switch is turned off.
    None,
    /// As little as possible: thinking off too (these templates have no lighter mode).
    Minimal,
    /// Thinking on, `reasoning_effort: low`.
    Low,
    /// Thinking on, `reasoning_effort: medium`.
    Medium,
    /// Thinking on, `reasoning_effort: high`.
    High,
}

impl Effort {
    /// Every accepted spelling, for error messages.
    pub const NAMES: &'static str = "none, minimal, low, medium, high";

    /// The effort named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Effort> {
        Some(match s {
            "none" => Effort::None,
            "minimal" => Effort::Minimal,
            "low" => Effort::Low,
            "medium" => Effort::Medium,
            "high" => Effort::High,
            _ => return None,
        })
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Effort::None => "none",
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
        }
    }

    /// Whether the model thinks at all at this effort.
    pub fn thinks(self) -> bool {
        !matches!(self, Effort::None | Effort::Minimal)
    }
}

/// `chat_template_kwargs` as the provider receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TemplateKwargs {
    /// The thinking switch.
    pub enable_thinking: bool,
}

/// What the provider request carries for `effort`: the thinking switch, and the effort itself
/// when the model thinks (a server that does not know `none` or `minimal` would refuse them).
pub fn provider_switch(effort: Effort) -> (TemplateKwargs, Option<&'static str>) {
    (
        TemplateKwargs {
            enable_thinking: effort.thinks(),
        },
        effort.thinks().then_some(effort.as_str()),
    )
}

/// Sets `effort`'s provider fields on a provider request object (replacing the caller's
/// `reasoning_effort`).
pub fn apply(fields: &mut Map<String, Value>, effort: Effort) {
    let (kwargs, sent) = provider_switch(effort);
    fields.insert(
        "chat_template_kwargs".into(),
        serde_json::json!({"enable_thinking": kwargs.enable_thinking}),
    );
    match sent {
        Some(e) => fields.insert("reasoning_effort".into(), e.into()),
        None => fields.remove("reasoning_effort"),
    };
}

/// The reasoning fields of an OpenAI message or delta.
const REASONING_FIELDS: [&str; 2] = ["reasoning_content", "reasoning"];

/// A whole `chat.completion` without its reasoning: `reasoning_content` / `reasoning` removed
/// and a leading `<think>…</think>` cut from the content. `None` when `body` is not a JSON
/// object (the caller then passes the provider's error handling on).
pub fn strip_completion(body: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    for choice in v.get_mut("choices")?.as_array_mut()? {
        let Some(m) = choice.get_mut("message").and_then(Value::as_object_mut) else {
            continue;
        };
        for f in REASONING_FIELDS {
            m.remove(f);
        }
        if let Some(Value::String(c)) = m.get_mut("content") {
            let (_, output) = super::think::split_think(c);
            *c = output.to_owned();
        }
    }
    serde_json::to_vec(&v).ok()
}

/// Removes reasoning from a streamed `chat.completion.chunk` sequence, one event at a time.
#[derive(Debug, Default)]
pub struct StreamStripper {
    splitter: ThinkSplitter,
    pieces: Vec<Piece>,
}

impl StreamStripper {
    /// The event `data` to send instead of `data`: the chunk without reasoning fields, its
    /// content stripped of an inline think block. `None` drops the event (it carried only
    /// reasoning). `[DONE]` and what is not a chunk pass unchanged, after whatever output the
    /// splitter still held (as `flushed`).
    pub fn event(&mut self, data: &[u8], flushed: &mut Option<Vec<u8>>) -> Option<Vec<u8>> {
        let Ok(Value::Object(mut chunk)) = serde_json::from_slice::<Value>(data) else {
            *flushed = self.flush();
            return Some(data.to_vec());
        };
        let mut keep = chunk.contains_key("usage") && !chunk["usage"].is_null();
        if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
            for choice in choices.iter_mut() {
                keep |= choice.get("finish_reason").is_some_and(|f| !f.is_null());
                let Some(d) = choice.get_mut("delta").and_then(Value::as_object_mut) else {
                    continue;
                };
                for f in REASONING_FIELDS {
                    d.remove(f);
                }
                if let Some(Value::String(c)) = d.get_mut("content") {
                    self.pieces.clear();
                    self.splitter.push(c, &mut self.pieces);
                    *c = output_of(&self.pieces);
                }
                // Kept when anything is left: text, a role, tool calls.
                keep |= d
                    .iter()
                    .any(|(k, v)| k != "content" || v.as_str().is_some_and(|c| !c.is_empty()));
            }
            if choices.is_empty() {
                keep = true;
            }
        } else {
            keep = true;
        }
        keep.then(|| serde_json::to_vec(&chunk).unwrap_or_else(|_| data.to_vec()))
    }

    /// A content chunk with what the splitter held back, if any.
    fn flush(&mut self) -> Option<Vec<u8>> {
        self.pieces.clear();
        self.splitter.finish(&mut self.pieces);
        let text = output_of(&self.pieces);
        (!text.is_empty()).then(|| {
            serde_json::to_vec(&serde_json::json!({
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]
            }))
            .unwrap_or_default()
        })
    }
}

fn output_of(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Output(t) => Some(t.as_str()),
            Piece::Reasoning(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efforts_map_to_the_thinking_switch() {
        let mut f = Map::new();
        f.insert("reasoning_effort".into(), "none".into());
        apply(&mut f, Effort::parse("none").unwrap());
        assert_eq!(
            Value::Object(f.clone()),
            serde_json::json!({"chat_template_kwargs":{"enable_thinking":false}})
        );
        apply(&mut f, Effort::Minimal);
        assert!(!f.contains_key("reasoning_effort"));
        apply(&mut f, Effort::parse("low").unwrap());
        assert_eq!(
            Value::Object(f),
            serde_json::json!({"chat_template_kwargs":{"enable_thinking":true},"reasoning_effort":"low"})
        );
        assert_eq!(Effort::parse("max"), None);
        for e in ["none", "minimal", "low", "medium", "high"] {
            assert_eq!(Effort::parse(e).unwrap().as_str(), e);
        }
    }

    #[test]
    fn a_whole_completion_loses_its_reasoning() {
        let body = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"<think>\nhmm\n</think>\n\n42","reasoning_content":"r"}}],"usage":{"prompt_tokens":1}}"#;
        let v: Value = serde_json::from_slice(&strip_completion(body).unwrap()).unwrap();
        assert_eq!(
            v["choices"][0]["message"],
            serde_json::json!({"role":"assistant","content":"42"})
        );
        assert_eq!(v["usage"]["prompt_tokens"], 1);
        assert!(strip_completion(b"[1]").is_none());
    }

    #[test]
    fn a_stream_loses_its_reasoning() {
        let mut s = StreamStripper::default();
        let mut flushed = None;
        let ev = |s: &mut StreamStripper, d: &str, f: &mut Option<Vec<u8>>| {
            s.event(d.as_bytes(), f)
                .map(|b| String::from_utf8(b).unwrap())
        };
        let role = ev(
            &mut s,
            r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#,
            &mut flushed,
        );
        assert!(role.is_some(), "a role delta stays");
        let r = ev(
            &mut s,
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"think"}}]}"#,
            &mut flushed,
        );
        assert_eq!(r, None, "a reasoning-only chunk is dropped");
        let r = ev(
            &mut s,
            r#"{"choices":[{"index":0,"delta":{"content":"<think>x</think>an"}}]}"#,
            &mut flushed,
        );
        assert!(r.unwrap().contains(r#""content":"an""#));
        let r = ev(
            &mut s,
            r#"{"choices":[{"index":0,"delta":{"content":"swer"},"finish_reason":"stop"}]}"#,
            &mut flushed,
        );
        assert!(r.unwrap().contains(r#""content":"swer""#));
        let r = ev(
            &mut s,
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            &mut flushed,
        );
        assert!(r.unwrap().contains("usage"));
        assert_eq!(
            ev(&mut s, "[DONE]", &mut flushed).as_deref(),
            Some("[DONE]")
        );
        assert!(flushed.is_none());
        // Output held back as a possible `<think>` start comes out before `[DONE]`.
        let mut s = StreamStripper::default();
        let r = ev(
            &mut s,
            r#"{"choices":[{"index":0,"delta":{"content":"<th"}}]}"#,
            &mut flushed,
        );
        assert_eq!(r, None);
        ev(&mut s, "[DONE]", &mut flushed);
        assert!(
            String::from_utf8(flushed.unwrap())
                .unwrap()
                .contains(r#""content":"<th""#)
        );
    }
}
