//! A minimal server-sent-events decoder for the gateway's streams.
//!
//! The gateway's grammar is small (docs/API.md §4.3): `event:` and `data:` lines, blank lines
//! between events, `:` comment lines as keep-alives. Lines may be split across network frames
//! anywhere, multi-byte characters included, so bytes are buffered until a full line arrives.

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field (`message` when absent, as the SSE specification says).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Decodes a byte stream into events.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

/// The longest line accepted: far above any event the gateway sends, so a broken stream
/// cannot grow the buffer without bound.
const MAX_LINE: usize = 4 << 20;

impl SseDecoder {
    /// Feeds bytes; returns the events they completed. `Err` on a line above the bound or
    /// that is not UTF-8.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|_| "an SSE line is not UTF-8")?;
            if let Some(ev) = self.line(&line) {
                out.push(ev);
            }
        }
        if self.buf.len() > MAX_LINE {
            return Err("an SSE line exceeds 4 MiB".to_owned());
        }
        Ok(out)
    }

    /// Ends the stream: an event not yet terminated by a blank line is dispatched.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            if let Ok(line) = String::from_utf8(rest) {
                let line = line.strip_suffix('\r').unwrap_or(&line).to_owned();
                if let Some(ev) = self.line(&line) {
                    return Some(ev);
                }
            }
        }
        self.line("")
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take()?;
            let event = self.event.take().unwrap_or_else(|| "message".to_owned());
            return Some(SseEvent { event, data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_decode_whole() {
        let text = ": keep-alive\n\nevent: output\ndata: {\"delta\":\"é\"}\n\nevent: done\r\ndata: {}\r\n\r\n";
        let bytes = text.as_bytes();
        for split in 0..bytes.len() {
            let mut dec = SseDecoder::default();
            let mut got = dec.push(&bytes[..split]).expect("ok");
            got.extend(dec.push(&bytes[split..]).expect("ok"));
            assert_eq!(
                got,
                vec![
                    SseEvent {
                        event: "output".into(),
                        data: "{\"delta\":\"é\"}".into()
                    },
                    SseEvent {
                        event: "done".into(),
                        data: "{}".into()
                    }
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn openai_data_only_events_and_unterminated_ends() {
        let mut dec = SseDecoder::default();
        let got = dec.push(b"data: {\"a\":1}\n\ndata: [DONE]").expect("ok");
        assert_eq!(got[0].event, "message");
        assert_eq!(dec.finish().map(|e| e.data), Some("[DONE]".into()));
    }
}
