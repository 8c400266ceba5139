//! Separates a leading `<think>…</think>` block from the answer.
//!
//! Some models put their reasoning in a separate `reasoning_content` field, others inline at
//! the start of the content as `<think>…</think>`. The gateway returns reasoning separately
//! and must never leave the block in the output. The rules, shared by [`split_think`] (whole
//! answers) and [`ThinkSplitter`] (streamed answers), which must agree exactly:
//!
//! - Content that, after optional leading whitespace, starts with `<think>` has a think
//!   block. The reasoning is the text up to the first `</think>`, whitespace-trimmed on both
//!   sides; the output is what follows `</think>`, with leading whitespace trimmed.
//! - Without `</think>` (the answer was cut by `max_tokens`) everything after `<think>` is
//!   reasoning (trimmed) and the output is empty.
//! - Any other content is all output, unchanged, leading whitespace included.
//!
//! Whitespace is Unicode whitespace ([`char::is_whitespace`], as [`str::trim`] uses).

use memchr::memmem;

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// Non-streaming: splits a complete content string into `(reasoning, output)`.
///
/// The reasoning is `None` when there is no think block, and `Some("")` for an empty one.
pub fn split_think(content: &str) -> (Option<&str>, &str) {
    let Some(rest) = content.trim_start().strip_prefix(OPEN) else {
        return (None, content);
    };
    match memmem::find(rest.as_bytes(), CLOSE.as_bytes()) {
        Some(i) => (Some(rest[..i].trim()), rest[i + CLOSE.len()..].trim_start()),
        None => (Some(rest.trim()), ""),
    }
}

/// A piece of classified text from the streaming splitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Part of the reasoning.
    Reasoning(String),
    /// Part of the final answer.
    Output(String),
}

/// Where the streaming splitter is in the content.
#[derive(Debug)]
enum State {
    /// Before the first non-whitespace text: it may still open a think block. `held` is
    /// everything so far; `ws_len` how much of it is known to be leading whitespace.
    Start { held: String, ws_len: usize },
    /// Inside the think block.
    ///
    /// `lead`: no reasoning text yet, so whitespace is dropped (leading trim).
    /// `ws`: whitespace after the last reasoning text, held because it is trimmed if
    /// `</think>` follows. `partial`: length of the tail that is a proper prefix of
    /// `</think>`. Nothing else is ever held, so what is held stays small in practice and
    /// each byte is scanned a bounded number of times.
    Reasoning {
        lead: bool,
        ws: String,
        partial: usize,
    },
    /// Just after `</think>`: leading whitespace of the output is dropped.
    AfterThink,
    /// Everything from here on is output, passed through as it comes.
    Output,
}

/// Streaming counterpart of [`split_think`]: classifies content deltas as they arrive.
///
/// Only what is still ambiguous is held back — a start that may still become `<think>`, a
/// tail that may be the start of `</think>`, and whitespace at the end of the reasoning
/// (trimmed if `</think>` follows) — so text reaches the caller as soon as its kind is
/// known. Concatenating the pieces of each kind gives exactly what [`split_think`] returns
/// for the whole content (no `Reasoning` piece at all when it returns `None`). Empty pieces
/// are never emitted.
#[derive(Debug)]
pub struct ThinkSplitter {
    state: State,
}

impl Default for ThinkSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl ThinkSplitter {
    /// A splitter at the start of an answer.
    pub fn new() -> Self {
        ThinkSplitter {
            state: State::Start {
                held: String::new(),
                ws_len: 0,
            },
        }
    }

    /// Feeds the next content delta; the pieces now known are appended to `out` (possibly
    /// none, while the text is ambiguous).
    pub fn push(&mut self, delta: &str, out: &mut Vec<Piece>) {
        if delta.is_empty() {
            return;
        }
        match &mut self.state {
            State::Start { held, ws_len } => {
                held.push_str(delta);
                *ws_len += leading_ws_len(&held[*ws_len..]);
                let rest = &held[*ws_len..];
                if rest.is_empty() || (rest.len() < OPEN.len() && OPEN.starts_with(rest)) {
                    return;
                }
                if let Some(after) = rest.strip_prefix(OPEN) {
                    // The whitespace before `<think>` belongs to neither side.
                    let after = after.to_owned();
                    self.state = State::Reasoning {
                        lead: true,
                        ws: String::new(),
                        partial: 0,
                    };
                    self.push_reasoning(&after, out);
                } else {
                    out.push(Piece::Output(std::mem::take(held)));
                    self.state = State::Output;
                }
            }
            State::Reasoning { .. } => self.push_reasoning(delta, out),
            State::AfterThink => self.push_after_think(delta, out),
            State::Output => out.push(Piece::Output(delta.to_owned())),
        }
    }

    /// Ends the answer: flushes what was held back into `out`. The splitter is then ready
    /// for a new answer.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        match std::mem::replace(&mut self.state, Self::new().state) {
            // Whitespace only, or a start of `<think>` that never completed: plain output.
            State::Start { held, .. } => {
                if !held.is_empty() {
                    out.push(Piece::Output(held));
                }
            }
            // Cut before `</think>`: a partial closing tag is reasoning text; whitespace
            // before it is inside the reasoning, whitespace alone is trailing and trimmed.
            State::Reasoning {
                mut ws, partial, ..
            } => {
                if partial > 0 {
                    ws.push_str(&CLOSE[..partial]);
                    out.push(Piece::Reasoning(ws));
                }
            }
            State::AfterThink | State::Output => {}
        }
    }

    fn push_reasoning(&mut self, delta: &str, out: &mut Vec<Piece>) {
        let State::Reasoning { lead, ws, partial } = &mut self.state else {
            return;
        };
        // The held partial tag and the delta are searched together, as the tag may span them.
        let joined;
        let text = if *partial == 0 {
            delta
        } else {
            joined = [&CLOSE[..*partial], delta].concat();
            joined.as_str()
        };
        if let Some(i) = memmem::find(text.as_bytes(), CLOSE.as_bytes()) {
            let body = text[..i].trim_end();
            let body = if *lead { body.trim_start() } else { body };
            if !body.is_empty() {
                // `ws` sits between earlier reasoning and `body`, so it is inner whitespace.
                let mut piece = std::mem::take(ws);
                piece.push_str(body);
                out.push(Piece::Reasoning(piece));
            }
            let after = &text[i + CLOSE.len()..];
            self.state = State::AfterThink;
            self.push_after_think(after, out);
            return;
        }
        // Hold the longest tail that may still become `</think>`.
        let tail = (1..CLOSE.len())
            .rev()
            .find(|&k| text.as_bytes().ends_with(&CLOSE.as_bytes()[..k]))
            .unwrap_or(0);
        // `text[..cut]` is a char boundary: the byte at `cut` is the ASCII `<`.
        let cut = text.len() - tail;
        let mut before = &text[..cut];
        if *lead {
            before = before.trim_start();
        }
        let kept = before.trim_end();
        if kept.is_empty() {
            // Only whitespace: it may all be trailing.
            if !*lead {
                ws.push_str(before);
            }
        } else {
            let mut piece = std::mem::take(ws);
            piece.push_str(kept);
            out.push(Piece::Reasoning(piece));
            ws.push_str(&before[kept.len()..]);
            *lead = false;
        }
        *partial = tail;
    }

    fn push_after_think(&mut self, delta: &str, out: &mut Vec<Piece>) {
        let rest = delta.trim_start();
        if !rest.is_empty() {
            out.push(Piece::Output(rest.to_owned()));
            self.state = State::Output;
        }
    }
}

/// Byte length of the leading whitespace of `s`.
fn leading_ws_len(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Streams `deltas` and returns (reasoning pieces joined or `None` if there was none,
    /// output pieces joined), checking that no empty piece is emitted.
    fn stream(deltas: &[&str]) -> (Option<String>, String) {
        let mut s = ThinkSplitter::new();
        let mut out = Vec::new();
        for d in deltas {
            s.push(d, &mut out);
        }
        s.finish(&mut out);
        let (mut r, mut o) = (None::<String>, String::new());
        for p in out {
            match p {
                Piece::Reasoning(t) => {
                    assert!(!t.is_empty(), "empty reasoning piece for {deltas:?}");
                    r.get_or_insert_default().push_str(&t);
                }
                Piece::Output(t) => {
                    assert!(!t.is_empty(), "empty output piece for {deltas:?}");
                    o.push_str(&t);
                }
            }
        }
        (r, o)
    }

    /// Checks the streamed result of `deltas` against `split_think` of their concatenation.
    fn check(deltas: &[&str]) {
        let whole = deltas.concat();
        let (reasoning, output) = split_think(&whole);
        let (r, o) = stream(deltas);
        match reasoning {
            // An empty think block may stream no reasoning piece at all.
            Some(expected) => assert_eq!(
                r.as_deref().unwrap_or(""),
                expected,
                "reasoning of {deltas:?}"
            ),
            None => assert_eq!(r, None, "no think block in {deltas:?}"),
        }
        assert_eq!(o, output, "output of {deltas:?}");
    }

    const CASES: &[&str] = &[
        "",
        "<think>",
        "</think>",
        "<think></think>",
        "<think> \n </think>",
        "<think>\nA Mersenne number 2^p - 1 can only be prime if p is prime.\n</think>\n\n2^61 - 1 is prime.",
        "<think>short</think>answer",
        "  \n<think>  reasoning  </think>  answer  ",
        "<think>cut by max_tokens",
        "<think>cut inside the closing tag </thi",
        "<think>cut after whitespace \n ",
        "<think> a < b </ c </think",
        "<think>x</think></think>y",
        "<think>a</think>output with </think> and <think> inside",
        "<think><think>nested</think>rest",
        "<think>a <</think>b",
        "<think>a</</think>b",
        "no think at all",
        "  leading whitespace kept",
        "   ",
        "<th",
        "  <thin",
        "<thinking>not a tag</thinking>",
        "<think >not a tag",
        "answer first <think>x</think>",
        "<think>π≈日本 ≈ </think> 日本π",
        "\u{3000}<think>\u{3000}π\u{3000}</think>\u{3000}≈",
        "<think>日本</think>",
        "π<think>x</think>",
    ];

    /// Every cut of `s` into two and three deltas at char boundaries (empty deltas included)
    /// and char by char.
    #[test]
    fn streaming_agrees_with_split_think_for_every_cut() {
        for s in CASES {
            let bounds: Vec<usize> = (0..=s.len()).filter(|&i| s.is_char_boundary(i)).collect();
            check(&[s]);
            for &i in &bounds {
                check(&[&s[..i], &s[i..]]);
                for &j in bounds.iter().filter(|&&j| j >= i) {
                    check(&[&s[..i], &s[i..j], &s[j..]]);
                }
            }
            let chars: Vec<String> = s.chars().map(String::from).collect();
            let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
            check(&chars);
        }
    }

    #[test]
    fn split_think_rules() {
        assert_eq!(split_think(""), (None, ""));
        assert_eq!(split_think("  hi"), (None, "  hi"));
        assert_eq!(split_think("<think>"), (Some(""), ""));
        assert_eq!(
            split_think(" <think> r \n</think>\n\n out "),
            (Some("r"), "out ")
        );
        assert_eq!(split_think("<think>cut "), (Some("cut"), ""));
        assert_eq!(
            split_think("<think></think>a</think>b"),
            (Some(""), "a</think>b")
        );
        assert_eq!(
            split_think("x<think>r</think>"),
            (None, "x<think>r</think>")
        );
        assert_eq!(split_think("<think>π≈</think>日本"), (Some("π≈"), "日本"));
    }

    #[test]
    fn think_tags_fixture_content() {
        let content = "<think>\nA Mersenne number 2^p - 1 can only be prime if p is prime; 61 is prime. Lucas-Lehmer for p = 61 ends at 0.\n</think>\n\n2^61 - 1 = 2305843009213693951 is prime (it is a Mersenne prime, M61).";
        let (r, o) = split_think(content);
        assert_eq!(
            r,
            Some(
                "A Mersenne number 2^p - 1 can only be prime if p is prime; 61 is prime. Lucas-Lehmer for p = 61 ends at 0."
            )
        );
        assert_eq!(
            o,
            "2^61 - 1 = 2305843009213693951 is prime (it is a Mersenne prime, M61)."
        );
        // As a provider would stream it, a few characters per delta.
        let chars: Vec<char> = content.chars().collect();
        let deltas: Vec<String> = chars.chunks(5).map(|c| c.iter().collect()).collect();
        let deltas: Vec<&str> = deltas.iter().map(String::as_str).collect();
        check(&deltas);
    }

    #[test]
    fn unambiguous_text_is_emitted_before_finish() {
        let mut s = ThinkSplitter::new();
        let mut out = Vec::new();
        s.push("<think>", &mut out);
        assert_eq!(out, vec![]);
        s.push("\nStep one. ", &mut out);
        assert_eq!(out, vec![Piece::Reasoning("Step one.".into())]);
        out.clear();
        // A possible closing tag and the whitespace before it are held...
        s.push("Step two.\n</thi", &mut out);
        assert_eq!(out, vec![Piece::Reasoning(" Step two.".into())]);
        out.clear();
        // ...and dropped once the tag completes; the answer flows as it comes.
        s.push("nk>\n\nThe answer", &mut out);
        assert_eq!(out, vec![Piece::Output("The answer".into())]);
        out.clear();
        s.push(" is 42.", &mut out);
        assert_eq!(out, vec![Piece::Output(" is 42.".into())]);
        out.clear();
        s.finish(&mut out);
        assert_eq!(out, vec![]);

        // Without a think block, output passes through at once, leading whitespace included.
        let mut s = ThinkSplitter::new();
        s.push("\n  ", &mut out);
        assert_eq!(out, vec![]);
        s.push("<tx", &mut out);
        assert_eq!(out, vec![Piece::Output("\n  <tx".into())]);
        out.clear();
        s.push("more", &mut out);
        assert_eq!(out, vec![Piece::Output("more".into())]);
    }

    #[test]
    fn splitter_is_reusable_after_finish() {
        let mut s = ThinkSplitter::default();
        let mut out = Vec::new();
        s.push("<think>a", &mut out);
        s.finish(&mut out);
        s.push("plain", &mut out);
        s.finish(&mut out);
        assert_eq!(
            out,
            vec![Piece::Reasoning("a".into()), Piece::Output("plain".into())]
        );
    }
}
