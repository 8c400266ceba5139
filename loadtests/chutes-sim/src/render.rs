//! Builds answer bodies as bytes: the non-streaming JSON and the whole SSE stream up front.
//!
//! Bodies are written by hand into one buffer instead of through `serde_json::Value`, because
//! this is the simulator's hot path and the shapes are fixed by the fixtures.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::ReasoningStyle;
use crate::text;

/// The `matched_stop` token id in the fixtures (Qwen's `<|im_end|>`).
const MATCHED_STOP: u32 = 151_645;

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Natural end of the answer.
    Stop,
    /// `max_tokens` reached first.
    Length,
}

impl Finish {
    fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Everything an answer contains, decided before any byte is written.
#[derive(Debug)]
pub struct Answer {
    /// `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// Reasoning words joined by spaces; empty when there is none.
    pub reasoning: String,
    /// Answer words joined by spaces.
    pub content: String,
    /// For [`ReasoningStyle::ThinkTags`], the content as sent: `<think>\n{reasoning}\n</think>\n\n{content}`,
    /// with the tag left open when `max_tokens` cut the reasoning; empty for other styles.
    pub inline: String,
    /// Words in `reasoning`.
    pub reasoning_words: u64,
    /// Words in `content`.
    pub content_words: u64,
    /// Whether all reasoning words were produced, so a `</think>` follows them.
    pub reasoning_complete: bool,
    /// Why it ended.
    pub finish: Finish,
    /// Billed prompt tokens.
    pub prompt_tokens: u64,
    /// Where the reasoning goes.
    pub style: ReasoningStyle,
}

/// What shapes one answer.
#[derive(Clone, Copy, Debug)]
pub struct AnswerSpec {
    /// Config seed.
    pub seed: u64,
    /// Request number since the config was installed, 1-based.
    pub n: u64,
    /// Configured reasoning words.
    pub reasoning_tokens: usize,
    /// Configured answer words.
    pub output_tokens: usize,
    /// Where the reasoning goes.
    pub style: ReasoningStyle,
    /// `max_tokens` of the request.
    pub limit: Option<u64>,
    /// Billed prompt tokens.
    pub prompt_tokens: u64,
}

impl Answer {
    /// Draws the words for request `spec.n` and applies `max_tokens`: reasoning words come
    /// first, so a small limit cuts the reasoning and leaves no answer, like a real model.
    pub fn generate(spec: AnswerSpec) -> Self {
        let wanted_reasoning = match spec.style {
            ReasoningStyle::None => 0,
            _ => spec.reasoning_tokens as u64,
        };
        let wanted_content = spec.output_tokens as u64;
        let limit = spec.limit.unwrap_or(u64::MAX);
        let reasoning_words = wanted_reasoning.min(limit);
        let content_words = wanted_content.min(limit - reasoning_words);
        let finish = if reasoning_words + content_words < wanted_reasoning + wanted_content {
            Finish::Length
        } else {
            Finish::Stop
        };
        let mut rng = text::rng_for(spec.seed, spec.n);
        let reasoning = text::words(&mut rng, reasoning_words as usize);
        let content = text::words(&mut rng, content_words as usize);
        let reasoning_complete = reasoning_words == wanted_reasoning;
        let inline = if spec.style == ReasoningStyle::ThinkTags && reasoning_words > 0 {
            let mut out = String::with_capacity(reasoning.len() + content.len() + 24);
            out.push_str(THINK_OPEN);
            out.push_str(&reasoning);
            if reasoning_complete {
                out.push_str(THINK_CLOSE);
                out.push_str(&content);
            }
            out
        } else if spec.style == ReasoningStyle::ThinkTags {
            content.clone()
        } else {
            String::new()
        };
        Self {
            id: format!("chatcmpl-{}", text::hex_id(spec.seed, spec.n)),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            reasoning,
            content,
            inline,
            reasoning_words,
            content_words,
            reasoning_complete,
            finish,
            prompt_tokens: spec.prompt_tokens,
            style: spec.style,
        }
    }

    /// Generated words, which is what the simulator bills as completion tokens.
    pub fn completion_tokens(&self) -> u64 {
        self.reasoning_words + self.content_words
    }

    /// The message content as the client sees it.
    pub fn full_content(&self) -> &str {
        if self.style == ReasoningStyle::ThinkTags {
            &self.inline
        } else {
            &self.content
        }
    }

    /// The non-streaming body, in the shape of `chat_completion.json` (reasoning in
    /// `reasoning_content`) or `chat_completion_think_tags.json` (otherwise).
    pub fn to_json(&self, model_json: &str) -> Bytes {
        let mut b = Vec::with_capacity(320 + 2 * (self.reasoning.len() + self.content.len()));
        b.extend_from_slice(b"{\"id\":\"");
        b.extend_from_slice(self.id.as_bytes());
        b.extend_from_slice(b"\",\"object\":\"chat.completion\",\"created\":");
        push_u64(&mut b, self.created);
        b.extend_from_slice(b",\"model\":");
        b.extend_from_slice(model_json.as_bytes());
        b.extend_from_slice(
            b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":",
        );
        if self.style == ReasoningStyle::ReasoningContent {
            push_json_str(&mut b, &self.content);
            b.extend_from_slice(b",\"reasoning_content\":");
            push_json_str(&mut b, &self.reasoning);
            b.extend_from_slice(b",\"tool_calls\":null");
        } else {
            push_json_str(&mut b, self.full_content());
        }
        b.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":\"");
        b.extend_from_slice(self.finish.as_str().as_bytes());
        b.push(b'"');
        if self.finish == Finish::Stop {
            b.extend_from_slice(b",\"matched_stop\":");
            push_u64(&mut b, u64::from(MATCHED_STOP));
        }
        b.extend_from_slice(b"}],");
        self.push_usage(&mut b, true);
        b.extend_from_slice(b"}");
        Bytes::from(b)
    }

    /// The whole SSE body in the shape of `chat_completion_stream.sse`: a role chunk, one chunk
    /// per delta (the last one carrying `finish_reason`), a usage chunk with empty `choices`,
    /// then `data: [DONE]`. Also returns where each event ends, so the sender can pace and
    /// cut the stream at event boundaries.
    pub fn to_sse(&self, model_json: &str, delta_chars: Option<usize>) -> (Bytes, Vec<usize>) {
        let deltas = self.deltas(delta_chars);
        let mut prefix = Vec::with_capacity(160);
        prefix.extend_from_slice(b"data: {\"id\":\"");
        prefix.extend_from_slice(self.id.as_bytes());
        prefix.extend_from_slice(b"\",\"object\":\"chat.completion.chunk\",\"created\":");
        push_u64(&mut prefix, self.created);
        prefix.extend_from_slice(b",\"model\":");
        prefix.extend_from_slice(model_json.as_bytes());
        prefix.extend_from_slice(b",\"choices\":");

        let text_bytes = self.reasoning.len() + self.content.len() + 32;
        let mut b = Vec::with_capacity((deltas.len() + 4) * (prefix.len() + 80) + 2 * text_bytes);
        let mut ends = Vec::with_capacity(deltas.len() + 4);

        b.extend_from_slice(&prefix);
        b.extend_from_slice(b"[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
        ends.push(b.len());

        let last = deltas.len().saturating_sub(1);
        let empty = [Delta {
            field: Field::Content,
            text: "",
        }];
        let deltas: &[Delta<'_>] = if deltas.is_empty() { &empty } else { &deltas };
        for (i, delta) in deltas.iter().enumerate() {
            b.extend_from_slice(&prefix);
            b.extend_from_slice(b"[{\"index\":0,\"delta\":{\"");
            b.extend_from_slice(delta.field.name().as_bytes());
            b.extend_from_slice(b"\":");
            push_json_str(&mut b, delta.text);
            b.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":");
            if i == last {
                b.push(b'"');
                b.extend_from_slice(self.finish.as_str().as_bytes());
                b.push(b'"');
                if self.finish == Finish::Stop {
                    b.extend_from_slice(b",\"matched_stop\":");
                    push_u64(&mut b, u64::from(MATCHED_STOP));
                }
            } else {
                b.extend_from_slice(b"null");
            }
            b.extend_from_slice(b"}]}\n\n");
            ends.push(b.len());
        }

        b.extend_from_slice(&prefix);
        b.extend_from_slice(b"[],");
        self.push_usage(&mut b, false);
        b.extend_from_slice(b"}\n\n");
        ends.push(b.len());

        b.extend_from_slice(b"data: [DONE]\n\n");
        ends.push(b.len());
        (Bytes::from(b), ends)
    }

    /// `details` adds `prompt_tokens_details: null`, which sglang sends only without streaming.
    fn push_usage(&self, b: &mut Vec<u8>, details: bool) {
        let completion = self.completion_tokens();
        b.extend_from_slice(b"\"usage\":{\"prompt_tokens\":");
        push_u64(b, self.prompt_tokens);
        b.extend_from_slice(b",\"completion_tokens\":");
        push_u64(b, completion);
        b.extend_from_slice(b",\"total_tokens\":");
        push_u64(b, self.prompt_tokens + completion);
        if details {
            b.extend_from_slice(b",\"prompt_tokens_details\":null");
        }
        b.extend_from_slice(b"}");
    }

    /// The text deltas in order; their concatenation per field equals the non-streaming answer.
    fn deltas(&self, delta_chars: Option<usize>) -> Vec<Delta<'_>> {
        let mut out = Vec::with_capacity((self.reasoning_words + self.content_words) as usize + 2);
        match (self.style, delta_chars) {
            (ReasoningStyle::ThinkTags, Some(n)) => {
                cut_chars(&self.inline, n, Field::Content, &mut out)
            }
            (ReasoningStyle::ThinkTags, None) if self.reasoning_words > 0 => {
                // Tags go out as deltas of their own, as a model emits them as single tokens.
                let s = self.inline.as_str();
                let words_end = THINK_OPEN.len() + self.reasoning.len();
                let tag = |text| Delta {
                    field: Field::Content,
                    text,
                };
                out.push(tag(&s[..THINK_OPEN.len()]));
                split_words(&s[THINK_OPEN.len()..words_end], Field::Content, &mut out);
                if self.reasoning_complete {
                    let close_end = words_end + THINK_CLOSE.len();
                    out.push(tag(&s[words_end..close_end]));
                    split_words(&s[close_end..], Field::Content, &mut out);
                }
            }
            (_, Some(n)) => {
                cut_chars(&self.reasoning, n, Field::Reasoning, &mut out);
                cut_chars(&self.content, n, Field::Content, &mut out);
            }
            (_, None) => {
                split_words(&self.reasoning, Field::Reasoning, &mut out);
                split_words(&self.content, Field::Content, &mut out);
            }
        }
        out
    }
}

const THINK_OPEN: &str = "<think>\n";
const THINK_CLOSE: &str = "\n</think>\n\n";

/// Which delta field a piece of text goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Reasoning,
    Content,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Reasoning => "reasoning_content",
            Field::Content => "content",
        }
    }
}

/// One streamed delta.
#[derive(Clone, Copy, Debug)]
struct Delta<'a> {
    field: Field,
    text: &'a str,
}

/// One delta per word, each keeping its trailing space, so the deltas concatenate back to `s`.
fn split_words<'a>(s: &'a str, field: Field, out: &mut Vec<Delta<'a>>) {
    out.extend(s.split_inclusive(' ').map(|text| Delta { field, text }));
}

/// Cuts `s` into pieces of `n` characters (`n == 0` is treated as 1); the last may be shorter.
fn cut_chars<'a>(s: &'a str, n: usize, field: Field, out: &mut Vec<Delta<'a>>) {
    let n = n.max(1);
    let mut start = 0;
    for (count, (i, _)) in s.char_indices().enumerate() {
        if count > 0 && count % n == 0 {
            out.push(Delta {
                field,
                text: &s[start..i],
            });
            start = i;
        }
    }
    if start < s.len() {
        out.push(Delta {
            field,
            text: &s[start..],
        });
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(b: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    b.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let escape: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        b.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            b.extend_from_slice(b"\\u00");
            b.push(HEX[usize::from(c >> 4)]);
            b.push(HEX[usize::from(c & 0xf)]);
        } else {
            b.extend_from_slice(escape);
        }
        start = i + 1;
    }
    b.extend_from_slice(&bytes[start..]);
    b.push(b'"');
}

/// Appends a JSON string literal of `s` to a new `String` (used for the model name once per
/// config).
pub fn json_string(s: &str) -> String {
    let mut b = Vec::with_capacity(s.len() + 2);
    push_json_str(&mut b, s);
    // Only ASCII was inserted into valid UTF-8, so this cannot fail.
    String::from_utf8(b).unwrap_or_default()
}

fn push_u64(b: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    b.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn answer(style: ReasoningStyle, limit: Option<u64>) -> Answer {
        Answer::generate(AnswerSpec {
            seed: 3,
            n: 1,
            reasoning_tokens: 6,
            output_tokens: 4,
            style,
            limit,
            prompt_tokens: 5,
        })
    }

    /// Concatenated reasoning and content deltas of an SSE body, and its finish reason.
    fn replay(sse: &[u8]) -> (String, String, String) {
        let text = std::str::from_utf8(sse).expect("utf-8");
        let (mut reasoning, mut content, mut finish) =
            (String::new(), String::new(), String::new());
        for event in text.split("\n\n").filter(|e| !e.is_empty()) {
            let data = event.strip_prefix("data: ").expect("data line");
            if data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(data).expect("chunk json");
            let Some(choice) = v["choices"].get(0) else {
                continue;
            };
            reasoning.push_str(choice["delta"]["reasoning_content"].as_str().unwrap_or(""));
            content.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = f.to_owned();
            }
        }
        (reasoning, content, finish)
    }

    #[test]
    fn every_stream_form_replays_the_non_stream_answer() {
        let styles = [
            ReasoningStyle::ReasoningContent,
            ReasoningStyle::ThinkTags,
            ReasoningStyle::None,
        ];
        for style in styles {
            for limit in [None, Some(0), Some(3), Some(6), Some(8)] {
                for delta_chars in [None, Some(1), Some(2), Some(5)] {
                    let a = answer(style, limit);
                    let whole: Value = serde_json::from_slice(&a.to_json("\"m\"")).expect("json");
                    let message = &whole["choices"][0]["message"];
                    let (body, ends) = a.to_sse("\"m\"", delta_chars);
                    assert_eq!(ends.last().copied(), Some(body.len()));
                    let (reasoning, content, finish) = replay(&body);
                    let ctx = format!("{style:?} {limit:?} {delta_chars:?}");
                    assert_eq!(
                        reasoning,
                        message["reasoning_content"].as_str().unwrap_or(""),
                        "{ctx}"
                    );
                    assert_eq!(content, message["content"].as_str().unwrap_or(""), "{ctx}");
                    assert_eq!(
                        finish,
                        whole["choices"][0]["finish_reason"].as_str().unwrap_or(""),
                        "{ctx}"
                    );
                }
            }
        }
    }

    #[test]
    fn limits_cut_reasoning_first() {
        let a = answer(ReasoningStyle::ReasoningContent, Some(8));
        assert_eq!(
            (a.reasoning_words, a.content_words, a.finish),
            (6, 2, Finish::Length)
        );
        let a = answer(ReasoningStyle::None, Some(8));
        assert_eq!(
            (a.reasoning_words, a.content_words, a.finish),
            (0, 4, Finish::Stop)
        );
        let a = answer(ReasoningStyle::ThinkTags, Some(6));
        assert!(
            a.full_content().ends_with("</think>\n\n"),
            "{}",
            a.full_content()
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}é"),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
        let parsed: String = serde_json::from_str(&json_string("x\t\r\u{1f}🙂")).expect("valid");
        assert_eq!(parsed, "x\t\r\u{1f}🙂");
    }
}
