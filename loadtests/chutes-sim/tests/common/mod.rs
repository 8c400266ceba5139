//! A deliberately tiny HTTP/1.1 client over `TcpStream`: one request per connection
//! (`Connection: close`), read to EOF, chunked bodies decoded with their frame boundaries
//! kept, so tests can see exactly what went over the wire — including bodies cut short.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Decoded body (chunk payloads concatenated).
    pub body: Vec<u8>,
    /// Payload of each HTTP chunk, for chunked bodies.
    pub frames: Vec<Vec<u8>>,
    /// Chunked: the terminating zero chunk arrived. Content-Length: all announced bytes arrived.
    pub complete: bool,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }

    /// The `data:` payloads of an SSE body, in order.
    pub fn sse_data(&self) -> Vec<String> {
        sse_data(&self.text())
    }
}

/// `data:` payloads of an SSE text.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data line: {e:?}"))
                .to_owned()
        })
        .collect()
}

/// Writes a request and leaves the connection open (for stall tests).
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str("Content-Type: application/json\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or("").as_bytes());
    // No write shutdown afterwards: the server would take the half-close for a client that
    // went away.
    stream.write_all(&bytes).await.expect("write request");
    stream
}

/// Sends a request and reads the whole reply until the server closes.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut stream = send(addr, method, path, headers, body).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw)).await;
    // An aborted connection may end in a reset instead of EOF; what arrived still counts.
    assert!(read.is_ok(), "no EOF within 20 s");
    parse(&raw)
}

/// `POST /v1/chat/completions` with `body`.
pub async fn chat(addr: SocketAddr, body: &str) -> Reply {
    request(addr, "POST", "/v1/chat/completions", &[], Some(body)).await
}

/// A minimal valid chat body for `model`.
pub fn chat_body(model: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Is 2^61 - 1 prime?"}],
        "stream": stream,
    })
    .to_string()
}

/// Parses a raw HTTP/1.1 response as far as it goes.
pub fn parse(raw: &[u8]) -> Reply {
    let head_end = find(raw, b"\r\n\r\n").expect("response head");
    let head = std::str::from_utf8(&raw[..head_end]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[head_end + 4..];
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
        frames: Vec::new(),
        complete: false,
    };
    if reply.header("transfer-encoding") == Some("chunked") {
        decode_chunked(rest, &mut reply);
    } else if let Some(len) = reply
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        reply.body = rest[..rest.len().min(len)].to_vec();
        reply.complete = rest.len() >= len;
    } else {
        reply.body = rest.to_vec();
        reply.complete = true;
    }
    reply
}

fn decode_chunked(mut rest: &[u8], reply: &mut Reply) {
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return;
        };
        let size_text = std::str::from_utf8(&rest[..line_end]).expect("chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            reply.complete = true;
            return;
        }
        let available = rest.len().min(size);
        reply.body.extend_from_slice(&rest[..available]);
        reply.frames.push(rest[..available].to_vec());
        if rest.len() < size + 2 {
            return;
        }
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Polls `check` until it holds, failing after 10 s. For server-side effects that happen
/// right after the client has seen the end of a response (counters updated on drop).
pub async fn eventually<T: std::fmt::Debug>(
    mut probe: impl FnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let value = probe();
        if check(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held: {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sorted keys of a JSON object, for comparing shapes with the fixtures.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}
