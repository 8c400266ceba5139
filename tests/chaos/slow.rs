//! Clients that are slow on purpose, on raw TCP: readers that take a stream 1 byte per
//! second through a tiny receive buffer, and slowloris connections that dribble their headers
//! or their bodies.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::fixture::MAX_TOKENS;
use super::load::{Outcome, Sent, Target};

/// Slow readers per scenario, spread over both replicas.
const READERS: usize = 6;

/// Slowloris connections of each kind.
const LORIS: usize = 20;

/// The replicas' `server.header_read_timeout_secs` and `body_read_timeout_secs` (fixture).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Beyond its read timeout, how long a replica may take to close a dribbling connection.
const CLOSE_SLACK: Duration = Duration::from_secs(3);

async fn connect(addr: &str, recv_buffer: Option<u32>) -> TcpStream {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let sock = TcpSocket::new_v4().unwrap();
    if let Some(n) = recv_buffer {
        // Before connect, so the advertised window is small from the start.
        sock.set_recv_buffer_size(n).unwrap();
    }
    sock.connect(addr).await.expect("replica accepts")
}

/// Streams the longest answer to each reader and reads it at 1 byte/s until `until`, then
/// hangs up. What such a request is charged is at most its worst case.
pub async fn readers(t: &Target, until: Instant) -> Vec<Sent> {
    let tasks: Vec<_> = (0..READERS)
        .map(|i| {
            let addr = t.addr(i % 2);
            let token = t.prepaid_token();
            tokio::spawn(async move {
                let sent_at = Instant::now();
                let tag = format!("slow-{}", uuid::Uuid::new_v4().simple());
                let body = serde_json::json!({
                    "input": "chaos",
                    "max_tokens": MAX_TOKENS,
                    "stream": true,
                    "metadata": {"chaos": tag},
                })
                .to_string();
                let mut s = connect(&addr, Some(1024)).await;
                let req = format!(
                    "POST /v1/reason HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
                     content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(req.as_bytes()).await.unwrap();
                let mut byte = [0u8; 1];
                let mut read = 0usize;
                while Instant::now() < until {
                    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut byte)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(_)) => read += 1,
                        Err(_) => {}
                    }
                    // The pace of the reader, not a wait for anything.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                assert!(
                    read > 0 || Instant::now() >= until,
                    "slow reader got nothing"
                );
                Sent {
                    tag,
                    caller: "chaos-prepaid",
                    replica: i % 2,
                    sent_at,
                    worst_rao: MAX_TOKENS,
                    outcome: Outcome::Interrupted("slow reader"),
                }
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("a slow reader panicked"));
    }
    out
}

/// Waves of slowloris connections (see [`loris_wave`]) until `until`; returns how many.
pub async fn loris(t: &Target, until: Instant) -> usize {
    let mut n = 0;
    loop {
        n += loris_wave(t).await;
        if Instant::now() >= until {
            return n;
        }
    }
}

/// Opens `LORIS` connections that send their headers a byte at a time and `LORIS` that send
/// complete headers and then their body a byte at a time, and asserts the replica closes
/// each (or answers it, 408) within its read timeout and `CLOSE_SLACK`. Returns when all
/// are closed, with how many there were.
async fn loris_wave(t: &Target) -> usize {
    let mut tasks = Vec::new();
    for i in 0..2 * LORIS {
        let addr = t.addr(i % 2);
        let token = t.prepaid_token();
        let headers_only = i < LORIS;
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut s = connect(&addr, None).await;
            let (head, drip): (String, &[u8]) = if headers_only {
                (
                    format!("POST /v1/reason HTTP/1.1\r\nhost: {addr}\r\n"),
                    b"x-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                )
            } else {
                (
                    format!(
                        "POST /v1/reason HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
                         content-type: application/json\r\ncontent-length: 100000\r\n\r\n"
                    ),
                    b"{\"input\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                )
            };
            s.write_all(head.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            let mut next = 0;
            let closed = loop {
                assert!(
                    started.elapsed() < READ_TIMEOUT + CLOSE_SLACK,
                    "a slowloris connection ({}) was still open after {:?}",
                    if headers_only { "headers" } else { "body" },
                    started.elapsed()
                );
                if next < drip.len() && s.write_all(&drip[next..=next]).await.is_err() {
                    break started.elapsed();
                }
                next += 1;
                match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
                    Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            };
            let answer = String::from_utf8_lossy(&answer);
            // A body that never completes is answered 408 (problem+json) before the close; a
            // header that never completes may be closed without an answer, or answered 408.
            if !answer.is_empty() {
                assert!(answer.starts_with("HTTP/1.1 408"), "slowloris answered: {answer}");
            }
            closed
        }));
    }
    let n = tasks.len();
    for task in tasks {
        let closed = task.await.expect("a slowloris connection's check failed");
        assert!(
            closed >= Duration::from_millis(500),
            "closed before any timeout: {closed:?}"
        );
    }
    n
}
