//! Incremental decoder for `text/event-stream` (server-sent events).
//!
//! The provider streams answers as `data: {json}` events ending with `data: [DONE]`. Network
//! chunks may split the stream anywhere — inside a line, between `\r` and `\n`, inside a
//! multi-byte character — so the decoder buffers bytes and hands out events once they are
//! complete. It follows the WHATWG EventSource parsing rules for the parts the gateway needs
//! (line endings, BOM, comments, `data`/`event` fields) and ignores the rest (`id`, `retry`).
//!
//! Cost: each byte is copied once into the buffer and scanned once for a line end. The data
//! of an event made of one `data:` line (every event the provider sends) is handed out as a
//! slice of that buffer, without another copy.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The UTF-8 byte order mark, skipped once at the start of the stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` when absent or empty (the default type, "message").
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`, as raw bytes: the consumer parses them (as JSON)
    /// and validates UTF-8 on the way, so no separate pass is spent on it here.
    pub data: Bytes,
}

/// Why the stream cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// One event (its field lines, or a single unterminated line) outgrew the limit: a
    /// broken or hostile upstream that never ends a line must not grow memory without bound.
    #[error("SSE event larger than {0} bytes")]
    TooLarge(usize),
}

/// The data lines of the event being read.
///
/// One line (the usual case) is kept as a slice of the receive buffer; only a second line
/// forces a copy into a buffer of its own.
#[derive(Debug, Default)]
enum DataBuf {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

/// Incremental SSE decoder: [`push`](Self::push) bytes as they arrive, then take events with
/// [`next_event`](Self::next_event) until it returns `None`; at the end of the body call
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct SseDecoder {
    /// Unparsed bytes; always starts at the beginning of a line.
    buf: BytesMut,
    /// How many bytes of `buf` are known to hold no line end, so a long line that arrives in
    /// many chunks is scanned once, not once per chunk.
    scanned: usize,
    /// The last line ended with `\r`, and the next byte has not arrived yet: if it is `\n`,
    /// it belongs to that line end rather than starting an empty line.
    skip_lf: bool,
    /// Still at the start of the stream, where a BOM may be (possibly split across chunks).
    at_start: bool,
    /// The `event:` field of the event being read.
    event: Option<String>,
    /// The `data:` lines of the event being read.
    data: DataBuf,
    /// Length of the event's field lines so far (comments excluded: they are not kept).
    event_bytes: usize,
    max_event_bytes: usize,
    /// Set once the limit was exceeded; the decoder then refuses everything.
    failed: bool,
}

impl SseDecoder {
    /// A decoder that refuses events larger than `max_event_bytes` (the length of an event's
    /// field lines without their line ends, or of any single line).
    pub fn new(max_event_bytes: usize) -> Self {
        SseDecoder {
            buf: BytesMut::new(),
            scanned: 0,
            skip_lf: false,
            at_start: true,
            event: None,
            data: DataBuf::Empty,
            event_bytes: 0,
            max_event_bytes,
            failed: false,
        }
    }

    /// Appends bytes received from the network. Nothing is parsed until
    /// [`next_event`](Self::next_event) is called.
    pub fn push(&mut self, chunk: &[u8]) {
        // After an error the stream is abandoned; keeping its bytes would only waste memory.
        if !self.failed {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The next complete event, or `None` until more bytes are pushed.
    ///
    /// After an error every later call returns the same error.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        self.decode(false)
    }

    /// Ends the stream. Returns the events still buffered, one per call, and then — leniently,
    /// where EventSource would drop it — a last event that was not followed by a blank line
    /// (even when its last line has no line end). Returns `None` once nothing is left.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        self.decode(true)
    }

    fn decode(&mut self, eof: bool) -> Result<Option<SseEvent>, SseError> {
        if self.failed {
            return Err(SseError::TooLarge(self.max_event_bytes));
        }
        if self.at_start {
            let n = self.buf.len().min(BOM.len());
            if self.buf[..n] != BOM[..n] {
                self.at_start = false;
            } else if n == BOM.len() {
                self.buf.advance(n);
                self.at_start = false;
            } else if !eof {
                // Could still become a BOM: wait for more bytes.
                return Ok(None);
            } else {
                self.at_start = false;
            }
        }
        loop {
            if self.skip_lf {
                match self.buf.first() {
                    None if !eof => return Ok(None),
                    None => self.skip_lf = false,
                    Some(&b) => {
                        if b == b'\n' {
                            self.buf.advance(1);
                        }
                        self.skip_lf = false;
                    }
                }
            }
            let (line_len, term_len) =
                match memchr::memchr2(b'\n', b'\r', &self.buf[self.scanned..]) {
                    Some(i) => {
                        let at = self.scanned + i;
                        let term_len = if self.buf[at] == b'\n' {
                            1
                        } else if self.buf.get(at + 1) == Some(&b'\n') {
                            2
                        } else {
                            // A lone `\r` at the end of what has arrived may be half of a
                            // `\r\n`: end the line now (no added latency) and drop a `\n`
                            // that comes next.
                            self.skip_lf = at + 1 == self.buf.len();
                            1
                        };
                        (at, term_len)
                    }
                    None => {
                        self.scanned = self.buf.len();
                        self.check_size(self.buf.len())?;
                        if !eof {
                            return Ok(None);
                        }
                        if self.buf.is_empty() {
                            // End of stream: dispatch what was read, blank line or not.
                            return Ok(self.dispatch());
                        }
                        // The last line has no line end; it still counts.
                        (self.buf.len(), 0)
                    }
                };
            self.scanned = 0;
            if let Some(ev) = self.take_line(line_len, term_len)? {
                return Ok(Some(ev));
            }
        }
    }

    /// Fails (for good) when a line of `line_len` bytes would take the event over the limit.
    fn check_size(&mut self, line_len: usize) -> Result<(), SseError> {
        if self.event_bytes.saturating_add(line_len) > self.max_event_bytes {
            self.failed = true;
            self.buf = BytesMut::new();
            self.data = DataBuf::Empty;
            return Err(SseError::TooLarge(self.max_event_bytes));
        }
        Ok(())
    }

    /// Consumes the first line of the buffer (`line_len` bytes, then `term_len` bytes of line
    /// end) and applies it; returns the event a blank line completes.
    fn take_line(
        &mut self,
        line_len: usize,
        term_len: usize,
    ) -> Result<Option<SseEvent>, SseError> {
        if line_len == 0 {
            self.buf.advance(term_len);
            return Ok(self.dispatch());
        }
        self.check_size(line_len)?;
        let line = &self.buf[..line_len];
        let colon = memchr::memchr(b':', line);
        if colon == Some(0) {
            // A comment (providers use them as keep-alives).
            self.buf.advance(line_len + term_len);
            return Ok(None);
        }
        self.event_bytes += line_len;
        let (name_end, value_start) = match colon {
            Some(c) if line.get(c + 1) == Some(&b' ') => (c, c + 2),
            Some(c) => (c, c + 1),
            None => (line_len, line_len),
        };
        match &line[..name_end] {
            b"data" => {
                // Split the line off the buffer so a single data line is handed out without
                // a copy.
                let line = self.buf.split_to(line_len).freeze();
                self.buf.advance(term_len);
                self.push_data(line.slice(value_start..));
            }
            b"event" => {
                let value = &line[value_start..];
                self.event =
                    (!value.is_empty()).then(|| String::from_utf8_lossy(value).into_owned());
                self.buf.advance(line_len + term_len);
            }
            // `id`, `retry` and unknown fields do not matter to the gateway.
            _ => self.buf.advance(line_len + term_len),
        }
        Ok(None)
    }

    fn push_data(&mut self, value: Bytes) {
        self.data = match std::mem::take(&mut self.data) {
            DataBuf::Empty => DataBuf::One(value),
            DataBuf::One(first) => {
                let mut joined = BytesMut::with_capacity(first.len() + 1 + value.len());
                joined.extend_from_slice(&first);
                joined.put_u8(b'\n');
                joined.extend_from_slice(&value);
                DataBuf::Many(joined)
            }
            DataBuf::Many(mut joined) => {
                joined.put_u8(b'\n');
                joined.extend_from_slice(&value);
                DataBuf::Many(joined)
            }
        };
    }

    /// Ends the current event: returns it when it had at least one `data` line (even an empty
    /// one, as EventSource does) and resets the per-event state either way.
    fn dispatch(&mut self) -> Option<SseEvent> {
        self.event_bytes = 0;
        let event = self.event.take();
        let data = match std::mem::take(&mut self.data) {
            DataBuf::Empty => return None,
            DataBuf::One(b) => b,
            DataBuf::Many(b) => b.freeze(),
        };
        Some(SseEvent { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/loadtests/chutes-sim/fixtures/chutes/chat_completion_stream.sse"
    );

    fn fixture() -> Vec<u8> {
        std::fs::read(FIXTURE).unwrap_or_else(|e| panic!("reading {FIXTURE}: {e}"))
    }

    /// All events of `chunks` pushed one after the other, draining after each push.
    fn decode_chunks<'a>(
        max: usize,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<SseEvent>, SseError> {
        let mut dec = SseDecoder::new(max);
        let mut out = Vec::new();
        for c in chunks {
            dec.push(c);
            while let Some(ev) = dec.next_event()? {
                out.push(ev);
            }
        }
        while let Some(ev) = dec.finish()? {
            out.push(ev);
        }
        Ok(out)
    }

    fn decode(input: &[u8]) -> Vec<SseEvent> {
        decode_chunks(1 << 20, [input]).expect("decodes")
    }

    /// Asserts that every split into two chunks, and byte-by-byte feeding, decode `input`
    /// exactly as the whole input does; returns the events.
    fn decode_every_split(input: &[u8]) -> Vec<SseEvent> {
        let whole = decode(input);
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            let split = decode_chunks(1 << 20, [a, b]).expect("decodes");
            assert_eq!(
                split,
                whole,
                "split at byte {i} of {:?}",
                String::from_utf8_lossy(input)
            );
        }
        let bytewise = decode_chunks(1 << 20, input.chunks(1)).expect("decodes");
        assert_eq!(bytewise, whole, "byte by byte");
        whole
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    #[test]
    fn fixture_decodes_whole_and_at_every_split() {
        let input = fixture();
        let events = decode_every_split(&input);
        assert_eq!(events.len(), 7);
        assert!(events.iter().all(|e| e.event.is_none()));
        assert_eq!(events.last().map(|e| &e.data[..]), Some(&b"[DONE]"[..]));
        for e in &events[..6] {
            let v: serde_json::Value = serde_json::from_slice(&e.data).expect("chunk is JSON");
            assert_eq!(v["object"], "chat.completion.chunk");
        }
        let first: serde_json::Value = serde_json::from_slice(&events[0].data).unwrap();
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    }

    #[test]
    fn events_come_out_as_soon_as_complete() {
        let mut dec = SseDecoder::new(1024);
        dec.push(b"data: a\n");
        assert_eq!(dec.next_event(), Ok(None));
        dec.push(b"\ndata: b");
        assert_eq!(dec.next_event(), Ok(Some(ev(None, "a"))));
        assert_eq!(dec.next_event(), Ok(None));
        dec.push(b"\n\n");
        assert_eq!(dec.next_event(), Ok(Some(ev(None, "b"))));
        assert_eq!(dec.next_event(), Ok(None));
        assert_eq!(dec.finish(), Ok(None));
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        let input = b"data: a\r\n\r\ndata: b\r\rdata: c\n\ndata: d\r\n\n";
        let events = decode_every_split(input);
        assert_eq!(
            events,
            vec![ev(None, "a"), ev(None, "b"), ev(None, "c"), ev(None, "d")]
        );
    }

    #[test]
    fn crlf_split_between_cr_and_lf_is_one_line_end() {
        // Were the `\n` read as an empty line, "a" and "b" would be two events.
        let events = decode_chunks(1024, [&b"data: a\r"[..], b"\ndata: b\r\n\r\n"]).unwrap();
        assert_eq!(events, vec![ev(None, "a\nb")]);

        // A blank line ending in `\r` dispatches at once; the `\n` that follows is dropped.
        let mut dec = SseDecoder::new(1024);
        dec.push(b"data: x\r\n\r");
        assert_eq!(dec.next_event(), Ok(Some(ev(None, "x"))));
        dec.push(b"\ndata: y\r");
        assert_eq!(dec.next_event(), Ok(None));
        dec.push(b"\r");
        assert_eq!(dec.next_event(), Ok(Some(ev(None, "y"))));
        assert_eq!(dec.finish(), Ok(None));
    }

    #[test]
    fn comments_are_skipped_and_never_dispatch() {
        let input = b": keep-alive\n\n:\n\n:comment\ndata: a\n: in the middle\ndata: b\n\n";
        assert_eq!(decode_every_split(input), vec![ev(None, "a\nb")]);
    }

    #[test]
    fn multi_line_data_and_field_syntax() {
        let input = b"data: one\ndata:two\ndata:  three\ndata\ndata: \n\n";
        assert_eq!(
            decode_every_split(input),
            vec![ev(None, "one\ntwo\n three\n\n")]
        );
        // A colon inside the value is part of it.
        assert_eq!(decode(b"data: {\"a\":1}\n\n"), vec![ev(None, "{\"a\":1}")]);
    }

    #[test]
    fn event_names_and_ignored_fields() {
        let input = b"event: reasoning\nid: 7\nretry: 100\nfoo: bar\ndata: r\n\n\
                      data: plain\n\n\
                      event: only-a-name\n\n\
                      event: output\nevent:\ndata: x\n\n\
                      event: done\ndata: {}\n\n";
        assert_eq!(
            decode_every_split(input),
            vec![
                ev(Some("reasoning"), "r"),
                // The name does not carry over to the next event.
                ev(None, "plain"),
                // The last `event:` wins; empty means the default type.
                ev(None, "x"),
                ev(Some("done"), "{}"),
            ]
        );
    }

    #[test]
    fn empty_data_line_still_dispatches() {
        assert_eq!(
            decode(b"data\n\ndata:\n\n"),
            vec![ev(None, ""), ev(None, "")]
        );
    }

    #[test]
    fn leading_bom_is_skipped_once() {
        let input = "\u{FEFF}data: a\n\n\u{FEFF}data: b\n\ndata: c\n\n".as_bytes();
        // The second BOM is not at the start of the stream: it makes an unknown field.
        assert_eq!(
            decode_every_split(input),
            vec![ev(None, "a"), ev(None, "c")]
        );
        // A stream that only starts like a BOM is kept as it is.
        assert_eq!(
            decode(b"\xEF\xBBdata: a\n\ndata: b\n\n"),
            vec![ev(None, "b")]
        );
    }

    #[test]
    fn multi_byte_characters_split_across_chunks() {
        let input = "data: {\"t\":\"π≈日本\"}\n\n".as_bytes();
        let events = decode_every_split(input);
        assert_eq!(events, vec![ev(None, "{\"t\":\"π≈日本\"}")]);
    }

    #[test]
    fn finish_dispatches_a_trailing_event() {
        assert_eq!(
            decode(b"data: a\n\ndata: b\n"),
            vec![ev(None, "a"), ev(None, "b")]
        );
        assert_eq!(
            decode(b"data: a\n\ndata: b"),
            vec![ev(None, "a"), ev(None, "b")]
        );
        assert_eq!(decode(b"event: e\ndata: b\r"), vec![ev(Some("e"), "b")]);
        assert_eq!(decode(b"data: a\n\nevent: e\n"), vec![ev(None, "a")]);
        assert_eq!(decode(b": only a comment"), vec![]);
        assert_eq!(decode(b""), vec![]);

        // Called without draining first, finish hands out the buffered events one by one.
        let mut dec = SseDecoder::new(1024);
        dec.push(b"data: 1\n\ndata: 2\n\ndata: 3");
        assert_eq!(dec.finish(), Ok(Some(ev(None, "1"))));
        assert_eq!(dec.finish(), Ok(Some(ev(None, "2"))));
        assert_eq!(dec.finish(), Ok(Some(ev(None, "3"))));
        assert_eq!(dec.finish(), Ok(None));
    }

    #[test]
    fn too_large_unterminated_line() {
        let mut dec = SseDecoder::new(16);
        dec.push(b"data: 0123456789");
        assert_eq!(dec.next_event(), Ok(None));
        dec.push(b"abcdef");
        assert_eq!(dec.next_event(), Err(SseError::TooLarge(16)));
        // The error sticks: the stream is unusable.
        dec.push(b"\n\ndata: a\n\n");
        assert_eq!(dec.next_event(), Err(SseError::TooLarge(16)));
        assert_eq!(dec.finish(), Err(SseError::TooLarge(16)));
        assert_eq!(
            SseError::TooLarge(16).to_string(),
            "SSE event larger than 16 bytes"
        );
    }

    #[test]
    fn too_large_across_data_lines_but_not_across_events() {
        // Three lines of 8 bytes: one event of 24 > 20 bytes...
        let input = b"data: ab\ndata: cd\ndata: ef\n\n";
        assert_eq!(decode_chunks(20, [&input[..]]), Err(SseError::TooLarge(20)));
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(
                decode_chunks(20, [a, b]),
                Err(SseError::TooLarge(20)),
                "split at {i}"
            );
        }
        // ...whereas many small events each stay under the limit.
        let many = b"data: ab\ndata: cd\n\n".repeat(100);
        assert_eq!(decode_chunks(20, [&many[..]]).map(|v| v.len()), Ok(100));
        // A complete line over the limit fails as well, even when it arrives whole.
        assert_eq!(
            decode_chunks(20, [&b"data: 0123456789abcdefghij\n\n"[..]]),
            Err(SseError::TooLarge(20))
        );
        // Events before the oversized one are still handed out.
        let mut dec = SseDecoder::new(20);
        dec.push(b"data: ok\n\ndata: 0123456789abcdefghij\n\n");
        assert_eq!(dec.next_event(), Ok(Some(ev(None, "ok"))));
        assert_eq!(dec.next_event(), Err(SseError::TooLarge(20)));
    }

    #[test]
    fn a_line_arriving_in_pieces_is_scanned_once() {
        let mut dec = SseDecoder::new(1024);
        dec.push(b"data: abc");
        assert_eq!(dec.next_event(), Ok(None));
        assert_eq!(dec.scanned, 9);
        dec.push(b"def");
        assert_eq!(dec.next_event(), Ok(None));
        assert_eq!(dec.scanned, 12);
        dec.push(b"\n\n");
        assert_eq!(dec.next_event(), Ok(Some(ev(None, "abcdef"))));
        assert_eq!(dec.scanned, 0);
    }

    #[test]
    fn single_line_data_shares_the_receive_buffer() {
        let mut dec = SseDecoder::new(1024);
        dec.push(b"data: shared\n\n");
        let e = dec.next_event().unwrap().unwrap();
        // A slice of the buffer, not a fresh copy: the decoder's buffer starts right after it.
        let end = e.data.as_ptr_range().end;
        assert_eq!((dec.buf.as_ptr() as usize).wrapping_sub(end as usize), 2);
    }
}
