//! Turns a provider answer into the `/v1/reason` shape.
//!
//! Reasoning comes from `reasoning_content` (or `reasoning`) when the provider separates it,
//! else from a leading `<think>…</think>` in the content. The content always goes through
//! the splitter so a think block never reaches `output`, whichever form the provider used.

use crate::api::{FinishReason, Usage};
use crate::upstream::UpstreamError;
use crate::upstream::openai::{ChatCompletion, ChatUsage, StreamChunk};
use crate::upstream::think::{Piece, ThinkSplitter, split_think};

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The final answer.
    pub output: String,
    /// The reasoning, when there was some and it was asked for.
    pub reasoning: Option<String>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// True when the provider reported no usage and the counts are estimates.
    pub usage_estimated: bool,
}

fn usage_of(u: ChatUsage) -> Usage {
    let reasoning = u
        .completion_tokens_details
        .and_then(|d| d.reasoning_tokens)
        .unwrap_or(0)
        .min(u.completion_tokens);
    Usage {
        input_tokens: u.prompt_tokens,
        output_tokens: u.completion_tokens,
        reasoning_tokens: reasoning,
        total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
    }
}

/// A whole answer as the pipeline's surfaces read it: the answer, its usage and whether that
/// usage is an estimate (settlement charges the usage either way).
pub fn read_whole_answer(
    body: &[u8],
    include_reasoning: bool,
) -> Result<(Answer, Usage, bool), UpstreamError> {
    let answer = from_completion(body, include_reasoning)?;
    let (usage, estimated) = (answer.usage, answer.usage_estimated);
    Ok((answer, usage, estimated))
}

/// Parses a non-streaming `/chat/completions` answer.
pub fn from_completion(body: &[u8], include_reasoning: bool) -> Result<Answer, UpstreamError> {
    let c: ChatCompletion = serde_json::from_slice(body)
        .map_err(|e| UpstreamError::Malformed(format!("completion is not valid JSON: {e}")))?;
    let Some(choice) = c.choices.into_iter().next() else {
        return Err(UpstreamError::Malformed("completion has no choices".into()));
    };
    let m = choice.message;
    let content = m.content.as_deref().unwrap_or("");
    let (think, output) = split_think(content);
    let reasoning = m
        .reasoning_content
        .as_deref()
        .or(m.reasoning.as_deref())
        .filter(|r| !r.is_empty())
        .or(think);
    let (usage, usage_estimated) = match c.usage {
        Some(u) => (usage_of(u), false),
        None => (Usage::default(), true),
    };
    Ok(Answer {
        output: output.to_owned(),
        reasoning: if include_reasoning {
            reasoning.map(str::to_owned)
        } else {
            None
        },
        finish_reason: FinishReason::from_upstream(choice.finish_reason.as_deref()),
        usage,
        usage_estimated,
    })
}

/// What a finished stream amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSummary {
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// True when the provider sent no usage: output tokens are then the number of deltas seen.
    pub usage_estimated: bool,
    /// Whether any reasoning text was streamed to the caller.
    pub had_reasoning: bool,
}

/// Incremental translation of a streamed answer, one SSE `data` payload at a time.
#[derive(Debug)]
pub struct StreamTranslator {
    splitter: ThinkSplitter,
    include_reasoning: bool,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    deltas_seen: u64,
    done: bool,
    had_reasoning: bool,
}

impl StreamTranslator {
    /// A translator; reasoning pieces are dropped unless `include_reasoning`.
    pub fn new(include_reasoning: bool) -> Self {
        StreamTranslator {
            splitter: ThinkSplitter::new(),
            include_reasoning,
            finish_reason: None,
            usage: None,
            deltas_seen: 0,
            done: false,
            had_reasoning: false,
        }
    }

    /// True once `[DONE]` arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds one event's data; new text pieces are appended to `out`.
    pub fn on_data(&mut self, data: &[u8], out: &mut Vec<Piece>) -> Result<(), UpstreamError> {
        if data == b"[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: StreamChunk = serde_json::from_slice(data).map_err(|e| {
            UpstreamError::Malformed(format!("stream chunk is not valid JSON: {e}"))
        })?;
        if let Some(u) = chunk.usage {
            self.usage = Some(usage_of(u));
        }
        let start = out.len();
        for choice in chunk.choices {
            let d = choice.delta;
            if let Some(r) = d.reasoning_content.as_deref().or(d.reasoning.as_deref())
                && !r.is_empty()
            {
                self.deltas_seen += 1;
                out.push(Piece::Reasoning(r.to_owned()));
            }
            if let Some(c) = d.content.as_deref()
                && !c.is_empty()
            {
                self.deltas_seen += 1;
                self.splitter.push(c, out);
            }
            if let Some(f) = choice.finish_reason.as_deref() {
                self.finish_reason = Some(FinishReason::from_upstream(Some(f)));
            }
        }
        self.filter_from(start, out);
        Ok(())
    }

    fn filter_from(&mut self, start: usize, out: &mut Vec<Piece>) {
        if out[start..]
            .iter()
            .any(|p| matches!(p, Piece::Reasoning(_)))
        {
            if self.include_reasoning {
                self.had_reasoning = true;
            } else {
                let mut i = start;
                while i < out.len() {
                    if matches!(out[i], Piece::Reasoning(_)) {
                        out.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
        }
    }

    /// Ends the stream: flushes held-back text into `out` and tells whether the answer is
    /// complete. A stream counts as complete after `[DONE]`, or when the provider sent both a
    /// finish reason and usage (some servers close without `[DONE]`).
    pub fn finish(&mut self, out: &mut Vec<Piece>) -> Result<StreamSummary, UpstreamError> {
        let start = out.len();
        self.splitter.finish(out);
        self.filter_from(start, out);
        let complete = self.done || (self.finish_reason.is_some() && self.usage.is_some());
        if !complete {
            return Err(UpstreamError::Disconnected);
        }
        Ok(self.summary())
    }

    /// What has been seen so far (also used to charge for a stream that broke off).
    pub fn summary(&self) -> StreamSummary {
        let (usage, usage_estimated) = match self.usage {
            Some(u) => (u, false),
            None => (
                Usage {
                    output_tokens: self.deltas_seen,
                    total_tokens: self.deltas_seen,
                    ..Usage::default()
                },
                true,
            ),
        };
        StreamSummary {
            finish_reason: self.finish_reason.unwrap_or(FinishReason::Stop),
            usage,
            usage_estimated,
            had_reasoning: self.had_reasoning,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::sse::SseDecoder;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/loadtests/chutes-sim/fixtures/chutes/"
    );

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}{name}")).unwrap()
    }

    #[test]
    fn reasoning_content_fixture() {
        let a = from_completion(&fixture("chat_completion.json"), true).unwrap();
        assert!(a.output.starts_with("2^61 - 1"));
        assert!(a.reasoning.unwrap().starts_with("A Mersenne"));
        assert_eq!(a.usage.input_tokens, 21);
        assert_eq!(a.usage.output_tokens, 64);
        assert_eq!(a.usage.total_tokens, 85);
        assert_eq!(a.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn think_tags_fixture_never_leaves_the_block_in_output() {
        let a = from_completion(&fixture("chat_completion_think_tags.json"), true).unwrap();
        assert!(!a.output.contains("<think>") && !a.output.contains("</think>"));
        assert!(a.output.starts_with("2^61 - 1"));
        assert!(a.reasoning.unwrap().starts_with("A Mersenne"));
        let a = from_completion(&fixture("chat_completion_think_tags.json"), false).unwrap();
        assert!(a.reasoning.is_none());
        assert!(!a.output.contains("think>"));
    }

    #[test]
    fn garbage_and_empty_choices_are_malformed() {
        assert!(matches!(
            from_completion(b"<html>", true),
            Err(UpstreamError::Malformed(_))
        ));
        assert!(matches!(
            from_completion(br#"{"choices":[]}"#, true),
            Err(UpstreamError::Malformed(_))
        ));
    }

    #[test]
    fn stream_fixture_translates() {
        let mut dec = SseDecoder::new(1 << 20);
        dec.push(&fixture("chat_completion_stream.sse"));
        let mut t = StreamTranslator::new(true);
        let mut out = Vec::new();
        while let Some(ev) = dec.next_event().unwrap() {
            t.on_data(&ev.data, &mut out).unwrap();
        }
        let s = t.finish(&mut out).unwrap();
        let (mut r, mut o) = (String::new(), String::new());
        for p in out {
            match p {
                Piece::Reasoning(x) => r.push_str(&x),
                Piece::Output(x) => o.push_str(&x),
            }
        }
        assert_eq!(r, "61 is prime, so check Lucas-Lehmer.");
        assert_eq!(o, "M61 is prime.");
        assert_eq!(s.usage.output_tokens, 9);
        assert!(!s.usage_estimated);
        assert!(s.had_reasoning);
    }

    #[test]
    fn stream_without_done_or_usage_is_incomplete() {
        let mut t = StreamTranslator::new(false);
        let mut out = Vec::new();
        t.on_data(
            br#"{"choices":[{"delta":{"reasoning_content":"x","content":"ab"}}]}"#,
            &mut out,
        )
        .unwrap();
        assert!(out.iter().all(|p| matches!(p, Piece::Output(_))));
        assert_eq!(t.finish(&mut out), Err(UpstreamError::Disconnected));
        assert_eq!(t.summary().usage.output_tokens, 2);
        assert!(t.summary().usage_estimated);
    }
}
