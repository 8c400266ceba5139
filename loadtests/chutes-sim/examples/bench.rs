//! Throughput check of the simulator itself: keep-alive HTTP/1.1 clients hammering
//! `POST /v1/chat/completions` for a few seconds.
//!
//! ```text
//! cargo run --release -p chutes-sim --example bench -- [CONNECTIONS] [SECONDS] [stream]
//! ```
//! Starts an in-process simulator with recording off, so the numbers include the client's own
//! CPU use on the same machine; they are a lower bound for what a separate load generator gets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chutes_sim::{DEFAULT_MODEL, Sim, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let connections: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let stream = args.get(2).is_some_and(|a| a == "stream");

    let sim = Sim::start(SimConfig {
        record_requests: 0,
        reasoning_tokens: 8,
        output_tokens: 8,
        ..SimConfig::default()
    })
    .await?;
    let body = format!(
        r#"{{"model":"{DEFAULT_MODEL}","messages":[{{"role":"user","content":"Is 2^61 - 1 prime?"}}],"max_tokens":64,"stream":{stream}}}"#
    );
    let request = Arc::new(format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let addr = sim.addr();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (request, done, stop) = (Arc::clone(&request), Arc::clone(&done), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut conn = TcpStream::connect(addr).await?;
            conn.set_nodelay(true)?;
            let mut buf = Vec::with_capacity(16 * 1024);
            while !stop.load(Ordering::Relaxed) {
                conn.write_all(request.as_bytes()).await?;
                buf.clear();
                read_response(&mut conn, &mut buf).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, std::io::Error>(())
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let total = done.load(Ordering::Relaxed);
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            eprintln!("client error: {e}");
        }
    }
    println!(
        "{total} requests in {elapsed:.1} s over {connections} connections (stream={stream}): {:.0} req/s; {:?}",
        total as f64 / elapsed,
        sim.stats()
    );
    sim.shutdown().await;
    Ok(())
}

/// Reads one response: `Content-Length` bodies, or chunked bodies up to the last chunk.
async fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let body = buf.len() - head_end - 4;
        if head.contains("transfer-encoding: chunked") {
            if buf.ends_with(b"\r\n0\r\n\r\n") {
                return Ok(());
            }
        } else if head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|len| body >= len)
        {
            return Ok(());
        }
    }
}
