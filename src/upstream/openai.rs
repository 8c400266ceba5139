//! Wire types of the OpenAI-compatible `/chat/completions` endpoint.
//!
//! Requests are serialized from borrowed data; responses are deserialized borrowing from
//! the response bytes (`Cow` only allocates when a string has escapes).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::api::{Input, ReasonRequest, Role};

/// `POST /chat/completions` body.
#[derive(Debug, Serialize)]
pub struct ChatRequest<'a> {
    /// The provider's model id.
    pub model: &'a str,
    /// The conversation.
    pub messages: Vec<ChatMessage<'a>>,
    /// Generation budget.
    pub max_tokens: u32,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Sampling seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<&'a [String]>,
    /// Stream the answer.
    pub stream: bool,
    /// Asks for the usage chunk at the end of a stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// The caller's effort, when the model thinks at that effort.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<&'static str>,
    /// The provider's thinking switch, when the caller set an effort.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<super::reasoning::TemplateKwargs>,
}

/// `stream_options`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StreamOptions {
    /// Send a final chunk with `usage`.
    pub include_usage: bool,
}

/// One request message.
#[derive(Debug, Serialize)]
pub struct ChatMessage<'a> {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: &'a str,
}

fn role_str(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

impl<'a> ChatRequest<'a> {
    /// Translates a validated `/v1/reason` request for `model`.
    pub fn from_reason(req: &'a ReasonRequest, model: &'a str, max_tokens: u32) -> Self {
        let mut messages = Vec::with_capacity(match &req.input {
            Input::Text(_) => 2,
            Input::Messages(m) => m.len() + 1,
        });
        if let Some(system) = &req.system {
            messages.push(ChatMessage {
                role: "system",
                content: system,
            });
        }
        match &req.input {
            Input::Text(t) => messages.push(ChatMessage {
                role: "user",
                content: t,
            }),
            Input::Messages(ms) => messages.extend(ms.iter().map(|m| ChatMessage {
                role: role_str(m.role),
                content: &m.content,
            })),
        }
        let (chat_template_kwargs, reasoning_effort) = req
            .reasoning_effort
            .map(super::reasoning::provider_switch)
            .unzip();
        ChatRequest {
            model,
            messages,
            max_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            seed: req.seed,
            stop: req.stop.as_ref().map(|s| s.as_slice()),
            stream: req.stream,
            stream_options: req.stream.then_some(StreamOptions {
                include_usage: true,
            }),
            reasoning_effort: reasoning_effort.flatten(),
            chat_template_kwargs,
        }
    }
}

/// Non-streaming answer.
#[derive(Debug, Deserialize)]
pub struct ChatCompletion<'a> {
    /// The choices; the gateway asks for one.
    #[serde(borrow, default)]
    pub choices: Vec<Choice<'a>>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<ChatUsage>,
}

/// One choice of a non-streaming answer.
#[derive(Debug, Deserialize)]
pub struct Choice<'a> {
    /// The assistant message.
    #[serde(borrow)]
    pub message: AssistantMessage<'a>,
    /// Why generation stopped.
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// The assistant's message; reasoning may be in either of two fields depending on the server.
#[derive(Debug, Default, Deserialize)]
pub struct AssistantMessage<'a> {
    /// The answer, possibly with a leading `<think>` block.
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    /// Reasoning (SGLang/vLLM reasoning parsers, Chutes).
    #[serde(borrow, default)]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// Reasoning (newer vLLM and some other providers).
    #[serde(borrow, default)]
    pub reasoning: Option<Cow<'a, str>>,
}

/// Token counts as OpenAI-compatible servers report them.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct ChatUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Completion tokens (reasoning included).
    #[serde(default)]
    pub completion_tokens: u64,
    /// Breakdown, when the server gives one.
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetails>,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct CompletionDetails {
    /// Tokens spent on reasoning.
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

/// One streamed chunk.
#[derive(Debug, Deserialize)]
pub struct StreamChunk<'a> {
    /// Deltas; empty in the final usage chunk.
    #[serde(borrow, default)]
    pub choices: Vec<ChunkChoice<'a>>,
    /// Token counts (final chunk).
    #[serde(default)]
    pub usage: Option<ChatUsage>,
}

/// A choice inside a chunk.
#[derive(Debug, Deserialize)]
pub struct ChunkChoice<'a> {
    /// The new text.
    #[serde(borrow, default)]
    pub delta: AssistantMessage<'a>,
    /// Set on the last content chunk.
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_puts_system_first_and_asks_for_usage_when_streaming() {
        let req = ReasonRequest::from_slice(
            br#"{"input":"2+2?","system":"be brief","stream":true,"stop":["x"],"seed":3}"#,
        )
        .unwrap();
        let v = serde_json::to_value(ChatRequest::from_reason(&req, "org/m", 64)).unwrap();
        assert_eq!(v["model"], "org/m");
        assert_eq!(v["messages"][0]["role"], "system");
        assert_eq!(v["messages"][1]["content"], "2+2?");
        assert_eq!(v["max_tokens"], 64);
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stop"][0], "x");
        assert_eq!(v["seed"], 3);
        assert!(v.get("temperature").is_none());
    }

    #[test]
    fn fixture_completion_parses() {
        let raw = include_str!("../../loadtests/chutes-sim/fixtures/chutes/chat_completion.json");
        let c: ChatCompletion = serde_json::from_str(raw).unwrap();
        let m = &c.choices[0].message;
        assert!(
            m.reasoning_content
                .as_deref()
                .unwrap()
                .starts_with("A Mersenne")
        );
        assert_eq!(c.usage.unwrap().completion_tokens, 64);
    }
}
