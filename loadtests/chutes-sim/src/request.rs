//! The part of an OpenAI chat request the simulator looks at, parsed without allocating.
//!
//! Only `model`, `messages`, `max_tokens` (or `max_completion_tokens`), `stream` and the
//! thinking switch (`chat_template_kwargs.enable_thinking`, what vLLM and SGLang — hence Chutes —
//! hand to the chat template) change the answer; every other field (`temperature`, `top_p`, `seed`, `stop`, `stream_options`, …) is
//! accepted and ignored, as unknown fields are.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A parsed `POST /v1/chat/completions` body.
#[derive(Debug, Deserialize)]
pub struct ChatRequest<'a> {
    /// The requested model; compared with the served one.
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    /// Count and size of the messages; the texts themselves are not kept.
    #[serde(default)]
    pub messages: Option<Messages>,
    /// Upper bound on generated words.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Newer name of `max_tokens`; used when `max_tokens` is absent.
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// SSE answer when true.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Variables for the chat template; `enable_thinking: false` turns reasoning off.
    #[serde(default)]
    pub chat_template_kwargs: Option<TemplateKwargs>,
}

/// The chat template variables the simulator reads.
#[derive(Debug, Default, Deserialize)]
pub struct TemplateKwargs {
    /// Qwen3-style thinking switch; absent means the model's default (thinking on).
    #[serde(default)]
    pub enable_thinking: Option<bool>,
}

impl ChatRequest<'_> {
    /// The effective completion limit.
    pub fn limit(&self) -> Option<u64> {
        self.max_tokens.or(self.max_completion_tokens)
    }

    /// Whether the request turned thinking off, so the answer carries no reasoning.
    pub fn thinking_off(&self) -> bool {
        self.chat_template_kwargs
            .as_ref()
            .and_then(|k| k.enable_thinking)
            == Some(false)
    }

    /// Whether the client asked for SSE.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Prompt tokens as the simulator bills them: `ceil(chars / 4) + 3` per message, where
    /// `chars` counts Unicode scalar values of all message texts together. Roughly what a BPE
    /// tokenizer gives for English plus the per-message role/separator tokens of chat templates,
    /// and, unlike a real tokenizer, trivial to recompute in a test.
    pub fn prompt_tokens(&self) -> u64 {
        self.messages
            .as_ref()
            .map_or(0, |m| m.chars.div_ceil(4) + 3 * m.count)
    }
}

/// Number of messages and total characters of their contents.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Messages {
    /// How many messages.
    pub count: u64,
    /// Unicode scalar values over all contents (string contents, or the `text` of content parts).
    pub chars: u64,
}

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SeqVisitor;
        impl<'de> Visitor<'de> for SeqVisitor {
            type Value = Messages;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Messages, A::Error> {
                let mut out = Messages::default();
                while let Some(message) = seq.next_element::<Message>()? {
                    out.count += 1;
                    out.chars += message.content.0;
                }
                Ok(out)
            }
        }
        d.deserialize_seq(SeqVisitor)
    }
}

/// One chat message; the role is not checked because the simulator answers any conversation.
#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Chars,
}

/// Character count of a message content, which is a string, `null`, or an array of parts
/// (`{"type":"text","text":…}`; parts without text count zero).
#[derive(Default)]
struct Chars(u64);

impl<'de> Deserialize<'de> for Chars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CharsVisitor)
    }
}

struct CharsVisitor;

impl<'de> Visitor<'de> for CharsVisitor {
    type Value = Chars;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, null or an array of content parts")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Chars, E> {
        Ok(Chars(v.chars().count() as u64))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Chars, E> {
        Ok(Chars(0))
    }

    fn visit_none<E: de::Error>(self) -> Result<Chars, E> {
        Ok(Chars(0))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Chars, A::Error> {
        let mut total = 0;
        while let Some(part) = seq.next_element::<Part>()? {
            total += part.0;
        }
        Ok(Chars(total))
    }
}

/// A content part: only its `text` counts.
struct Part(u64);

impl<'de> Deserialize<'de> for Part {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PartVisitor;
        impl<'de> Visitor<'de> for PartVisitor {
            type Value = Part;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content part object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Part, A::Error> {
                let mut chars = 0;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "text" {
                        chars = map.next_value::<Chars>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Part(chars))
            }
        }
        d.deserialize_map(PartVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_string_and_part_contents() {
        let body = r#"{"model":"m","messages":[
            {"role":"system","content":"abcd"},
            {"role":"user","content":[{"type":"text","text":"naïve π"},{"type":"image_url","image_url":{"url":"x"}}]},
            {"role":"assistant","content":null}
        ],"temperature":0.2,"stream_options":{"include_usage":true}}"#;
        let req: ChatRequest<'_> = serde_json::from_str(body).expect("parse");
        assert_eq!(
            req.messages,
            Some(Messages {
                count: 3,
                chars: 4 + 7
            })
        );
        // ceil(11 / 4) + 3 * 3
        assert_eq!(req.prompt_tokens(), 3 + 9);
        assert!(!req.is_stream());
    }

    #[test]
    fn escaped_model_names_still_parse() {
        let req: ChatRequest<'_> =
            serde_json::from_str(r#"{"model":"a\/b","messages":[],"max_completion_tokens":5}"#)
                .expect("parse");
        assert_eq!(req.model.as_deref(), Some("a/b"));
        assert_eq!(req.limit(), Some(5));
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(serde_json::from_str::<ChatRequest<'_>>(r#"{"messages":"hi"}"#).is_err());
        assert!(
            serde_json::from_str::<ChatRequest<'_>>(r#"{"messages":[{"content":5}]}"#).is_err()
        );
    }
}
