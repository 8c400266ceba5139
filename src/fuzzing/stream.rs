//! The streamed-answer decoders: the SSE decoder and the `<think>` splitter. Their central
//! property is chunk invariance: the network may cut the same bytes anywhere, and what comes
//! out must not depend on where.

use super::input::{Input, chunk_sizes, split};
use crate::upstream::sse::{SseDecoder, SseError, SseEvent};
use crate::upstream::think::{Piece, ThinkSplitter, split_think};

/// What a decoder made of a stream: the events in order, then the error that ended it.
type Decoded = (Vec<SseEvent>, Option<SseError>);

/// Fuzz body: an event-size limit and chunk sizes from the front of `data`, the stream after.
pub fn sse(data: &[u8]) {
    let mut input = Input::new(data);
    // Small limits exercise the size check; 0 means a limit no test input reaches.
    let max = match input.byte() % 16 {
        0 => 1 << 20,
        k => 1 << k,
    };
    let sizes = chunk_sizes(&mut input);
    sse_chunked(max, input.rest(), &sizes);
}

/// Decodes `stream` whole, in chunks cycling through `sizes`, and byte by byte, and panics
/// unless all three give the same events and the same error; checks each event's limits.
pub fn sse_chunked(max: usize, stream: &[u8], sizes: &[usize]) {
    let whole = decode_sse(max, [stream]);
    let sizes = if sizes.is_empty() { &[1][..] } else { sizes };
    let chunked = decode_sse(max, split(stream, sizes));
    assert_eq!(chunked, whole, "chunked as {sizes:?}");
    let bytewise = decode_sse(max, stream.chunks(1));
    assert_eq!(bytewise, whole, "byte by byte");
    for ev in &whole.0 {
        // The data of an event is part of its field lines, which the limit bounds.
        assert!(ev.data.len() <= max, "event data over the limit {max}");
        assert!(
            ev.event.as_deref().is_none_or(|e| !e.is_empty()),
            "an empty event name is the default type"
        );
    }
}

/// Pushes `chunks`, draining events after each push, then finishes the stream.
fn decode_sse<'a>(max: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Decoded {
    let mut dec = SseDecoder::new(max);
    let mut events = Vec::new();
    for chunk in chunks {
        dec.push(chunk);
        loop {
            match dec.next_event() {
                Ok(Some(ev)) => events.push(ev),
                Ok(None) => break,
                Err(e) => return (events, Some(sticky(&mut dec, e))),
            }
        }
    }
    loop {
        match dec.finish() {
            Ok(Some(ev)) => events.push(ev),
            Ok(None) => break,
            Err(e) => return (events, Some(sticky(&mut dec, e))),
        }
    }
    // A finished decoder has nothing left.
    assert_eq!(dec.finish(), Ok(None), "finish after the end");
    (events, None)
}

/// Checks that an error sticks (the stream is abandoned) and returns it.
fn sticky(dec: &mut SseDecoder, e: SseError) -> SseError {
    let SseError::TooLarge(limit) = e;
    dec.push(b"data: more\n\n");
    assert_eq!(
        dec.next_event(),
        Err(SseError::TooLarge(limit)),
        "error must stick"
    );
    assert_eq!(
        dec.finish(),
        Err(SseError::TooLarge(limit)),
        "error must stick at the end"
    );
    e
}

/// Fuzz body: chunk sizes from the front of `data`, the content (as UTF-8, lossily) after.
pub fn think(data: &[u8]) {
    let mut input = Input::new(data);
    let sizes = chunk_sizes(&mut input);
    let text = String::from_utf8_lossy(input.rest());
    think_chunked(&text, &sizes);
}

/// Streams `content` through [`ThinkSplitter`] whole, in chunks cycling through `sizes`
/// (moved to character boundaries) and character by character, and panics unless each
/// agrees with [`split_think`] of the whole content and never emits an empty piece.
pub fn think_chunked(content: &str, sizes: &[usize]) {
    let (reasoning, output) = split_think(content);
    let sizes = if sizes.is_empty() { &[1][..] } else { sizes };
    let mut splitter = ThinkSplitter::new();
    let whole = stream_think(&mut splitter, [content]);
    check_think(&whole, reasoning, output, "whole");
    // The same splitter again: `finish` must have reset it for a new answer.
    let chunked = stream_think(&mut splitter, split_str(content, sizes));
    check_think(&chunked, reasoning, output, "chunked");
    let by_char = content
        .char_indices()
        .map(|(i, c)| &content[i..i + c.len_utf8()]);
    let by_char = stream_think(&mut ThinkSplitter::new(), by_char);
    check_think(&by_char, reasoning, output, "char by char");
}

/// The reasoning (`None` when no reasoning piece came) and the output of a stream.
fn stream_think<'a>(
    splitter: &mut ThinkSplitter,
    deltas: impl IntoIterator<Item = &'a str>,
) -> (Option<String>, String) {
    let mut pieces = Vec::new();
    for d in deltas {
        splitter.push(d, &mut pieces);
    }
    splitter.finish(&mut pieces);
    let (mut reasoning, mut output) = (None::<String>, String::new());
    for p in pieces {
        match p {
            Piece::Reasoning(t) => {
                assert!(!t.is_empty(), "empty reasoning piece");
                reasoning.get_or_insert_default().push_str(&t);
            }
            Piece::Output(t) => {
                assert!(!t.is_empty(), "empty output piece");
                output.push_str(&t);
            }
        }
    }
    (reasoning, output)
}

fn check_think(got: &(Option<String>, String), reasoning: Option<&str>, output: &str, how: &str) {
    match reasoning {
        // An empty think block may stream no reasoning piece at all.
        Some(expected) => assert_eq!(got.0.as_deref().unwrap_or(""), expected, "{how}"),
        None => assert_eq!(got.0, None, "{how}: no think block"),
    }
    assert_eq!(got.1, output, "{how}");
}

/// `s` cut into pieces of about the sizes in `sizes`, each cut moved forward to a character
/// boundary.
fn split_str<'a>(s: &'a str, sizes: &[usize]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < s.len() {
        let mut end = (at + sizes[i % sizes.len()].max(1)).min(s.len());
        i += 1;
        while !s.is_char_boundary(end) {
            end += 1;
        }
        out.push(&s[at..end]);
        at = end;
    }
    out
}
