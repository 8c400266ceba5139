//! What one client can hold of the gateway: connections (caps, header/idle timeouts), slow
//! bodies, streams it stops reading, and the Redis work behind `/v1/stats`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use affine_gateway::auth::jwt::Scope;
use affine_gateway::config::{Config, PlanConfig};
use chutes_sim::SimConfig;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to the gateway from the loopback address `from` (Linux routes all of
/// 127/8 to loopback, so tests can be several clients).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the gateway closes `conn` within `within` (EOF or reset on read).
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, conn.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 from hyper may come before the close.
            Ok(Ok(_)) => continue,
        }
    }
}

fn series(name: &str, label: &str, value: &str) -> String {
    format!("{name}{{{label}=\"{value}\"}}")
}

#[tokio::test]
async fn silent_and_trickling_connections_are_capped_and_closed_while_others_are_served() {
    let h = Harness::start_with(SimConfig::default(), |c| {
        c.server.max_connections_per_ip = 20;
        c.server.header_read_timeout_secs = 1;
        c.server.idle_timeout_secs = 1;
    })
    .await;
    let addr = h.gw.addr;
    // One client opens many silent sockets, more than its cap.
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(connect_from([127, 0, 0, 5], addr).await);
    }
    // Another trickles a request head, one byte at a time.
    let mut trickle = connect_from([127, 0, 0, 6], addr).await;
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();

    // A normal client is still served.
    // No pooled connection: each request on a fresh one, which the 1 s idle timeout cannot
    // close under it.
    let normal = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 7]))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let res = normal.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let refused = metric(
        &normal,
        &h.gw.url(),
        &series(
            "agw_connections_refused_total",
            "reason",
            "max_connections_per_ip",
        ),
    )
    .await
    .unwrap();
    assert!(
        refused >= 20.0,
        "over-cap sockets refused at accept: {refused}"
    );

    // The trickler keeps sending, yet is cut off at the header read timeout.
    let mut cut = false;
    for _ in 0..50 {
        if trickle.write_all(b"X").await.is_err() {
            cut = true;
            break;
        }
        // Paces the trickle; a close shows up as EOF here.
        if closed_within(&mut trickle, Duration::from_millis(200)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "a head trickled byte by byte is cut off");

    // Every silent socket is closed: at accept (over the cap) or after the header timeout.
    for (i, conn) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(conn, Duration::from_secs(5)).await,
            "silent connection {i} is still open"
        );
    }
    let header = metric(
        &normal,
        &h.gw.url(),
        &series("agw_connections_timed_out_total", "phase", "header"),
    )
    .await
    .unwrap();
    assert!(header >= 19.0, "silent sockets timed out: {header}");
    let open = metric(&normal, &h.gw.url(), "agw_connections_open")
        .await
        .unwrap();
    assert!(open < 5.0, "connections given back: {open} open");
}

#[tokio::test]
async fn the_global_cap_closes_new_connections_at_accept() {
    let h = Harness::start_with(SimConfig::default(), |c| {
        c.server.max_connections = 4;
        c.server.max_connections_per_ip = 0;
    })
    .await;
    // The harness keeps a pooled connection of its own; fill the rest.
    let mut held = Vec::new();
    let open = h.gw.state.metrics.conn.open.get() as usize;
    for _ in open..4 {
        held.push(connect_from([127, 0, 0, 8], h.gw.addr).await);
    }
    // Let the accept loop see the four before the fifth (each gets a request through).
    for c in &mut held {
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
    }
    let mut fifth = connect_from([127, 0, 0, 9], h.gw.addr).await;
    assert!(closed_within(&mut fifth, Duration::from_secs(5)).await);
    drop(held);
}

/// Sends a request head announcing a 100-byte body, then only part of it.
async fn stalled_body(addr: SocketAddr, path: &str, auth: &str) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n{auth}\r\n{{\"input\":"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "no answer to a stalled body");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_408_on_token_and_signed_routes() {
    let h = Harness::start_with(SimConfig::default(), |c| {
        c.server.body_read_timeout_secs = 1;
    })
    .await;
    // A bearer route: the JSON extractor reads the body.
    let auth = format!("authorization: Bearer {}\r\n", h.token);
    let res = stalled_body(h.gw.addr, "/v1/reason", &auth).await;
    assert!(res.starts_with("HTTP/1.1 408"), "{res}");
    assert!(res.contains("\"code\":\"request_timeout\""), "{res}");
    // A signed route: headers that pass the cheap checks, so the signature check must read
    // the body (which never arrives in full).
    let key = affine_gateway::auth::signing::KeyPair::from_uri(
        "//Alice",
        affine_gateway::auth::signing::Crypto::Sr25519,
    )
    .unwrap();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let auth: String = affine_gateway::auth::signing::btauth_headers(
        &key,
        "POST",
        "/v1/reason",
        b"{\"input\":\"never sent\"}",
        affine_gateway::config::DEV_HOTKEY,
        nonce,
    )
    .into_iter()
    .map(|(k, v)| format!("{k}: {v}\r\n"))
    .collect();
    let res = stalled_body(h.gw.addr, "/v1/reason", &auth).await;
    assert!(res.starts_with("HTTP/1.1 408"), "{res}");
    assert!(res.contains("\"code\":\"request_timeout\""), "{res}");
}

fn roomy_plan(cfg: &mut Config) {
    cfg.plans.insert(
        "roomy".into(),
        PlanConfig {
            requests_per_minute: Some(1_000_000),
            tokens_per_minute: Some(1_000_000_000),
            tokens_per_day: Some(1_000_000_000),
            max_concurrent: Some(1),
            max_tokens: Some(1_000_000),
            input_rao_per_mtok: Some(0),
            output_rao_per_mtok: Some(0),
            ..PlanConfig::default()
        },
    );
    cfg.reason.max_tokens_limit = 1_000_000;
    cfg.server.stream_send_timeout_secs = 1;
}

/// Opens a stream on `path` and never reads it; the receive window is kept small so the
/// gateway's side fills quickly.
async fn stuck_stream(addr: SocketAddr, path: &str, token: &str, body: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut c = socket.connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
         authorization: Bearer {token}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    c.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the stream opened");
    c
}

async fn usage_event_of(h: &Harness, account: &str) -> serde_json::Value {
    let d = time::OffsetDateTime::now_utc().date();
    let month = format!("{:04}-{:02}", d.year(), u8::from(d.month()));
    eventually(Duration::from_secs(20), "a usage event", || async {
        let text = h
            .http
            .get(h.url(&format!("/admin/v1/usage/export?month={month}")))
            .bearer_auth(admin_token())
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["account"] == account)
    })
    .await
}

async fn a_reader_that_stops_loses_its_stream(path: &str, body: &str, account: &str) {
    let sim = SimConfig {
        reasoning_tokens: 0,
        // Far more than the socket buffers and the channel hold (~40 bytes an event).
        output_tokens: 300_000,
        ..SimConfig::default()
    };
    let h = Harness::start_with(sim, roomy_plan).await;
    let res = put_account(&h.http, &h.gw.url(), account, r#"{"plan":"roomy"}"#).await;
    assert!(res.status().is_success());
    let token = token(account, &[Scope::Reason], 3600);
    let stuck = stuck_stream(h.gw.addr, path, &token, body).await;

    let event = usage_event_of(&h, account).await;
    assert_eq!(event["status"], "client_closed", "{event}");
    let out = event["output_tokens"].as_u64().unwrap();
    assert!(out > 0 && out < 300_000, "charged what was produced: {out}");
    // The concurrency slot (the plan allows one) is free again while the socket is open.
    let again = h
        .http
        .post(h.url(path))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(body.replace("300000", "5"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "the slot was released");
    let timeouts = metric(
        &h.http,
        &h.gw.url(),
        &series("agw_stream_send_timeouts_total", "route", path),
    )
    .await
    .unwrap();
    assert_eq!(timeouts, 1.0);
    drop(stuck);
}

#[tokio::test]
async fn a_reason_stream_the_client_stops_reading_ends_as_client_closed() {
    a_reader_that_stops_loses_its_stream(
        "/v1/reason",
        r#"{"input":"hi","max_tokens":300000,"stream":true}"#,
        "stuck-reason",
    )
    .await;
}

#[tokio::test]
async fn a_chat_stream_the_client_stops_reading_ends_as_client_closed() {
    let model = SimConfig::default().model;
    a_reader_that_stops_loses_its_stream(
        "/v1/chat/completions",
        &format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":300000,"stream":true}}"#
        ),
        "stuck-chat",
    )
    .await;
}

fn day(offset: i64) -> String {
    let d = time::OffsetDateTime::now_utc().date() - time::Duration::days(offset);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Round trips the store made for `/v1/stats` so far.
fn rollup_reads(h: &Harness) -> u64 {
    let text = h.gw.state.metrics.render();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("agw_redis_command_duration_seconds_count{op=\"rollups\"} ")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn stats_read_past_days_from_redis_once() {
    let h = Harness::start_with(SimConfig::default(), use_redis).await;
    let mut redis = shared_redis_connection().await;
    let past = day(10);
    let key = format!("{}{{stats}}:use:{past}", h.cfg.redis.key_prefix);
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("requests")
        .arg(5)
        .query_async(&mut redis)
        .await
        .unwrap();
    let stats = |h: &Harness| {
        let url = h.url(&format!("/v1/stats?from={}&to={}", day(365), day(0)));
        let http = h.http.clone();
        async move {
            let res = http.get(url).send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.json::<serde_json::Value>().await.unwrap()
        }
    };
    let requests_on = |s: &serde_json::Value, d: &str| {
        s["days"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["date"] == d)
            .map(|e| e["requests"].as_u64().unwrap())
    };
    let first = stats(&h).await;
    assert_eq!(first["days"].as_array().unwrap().len(), 366);
    assert_eq!(requests_on(&first, &past), Some(5));

    // A settled request lands on today; a write to the past day cannot happen in service,
    // and here shows whether the second request read it again.
    let res = h.reason(r#"{"input":"hi","max_tokens":8}"#).await;
    assert_eq!(res.status(), 200);
    h.gw.state.meter.flush(Duration::from_secs(10)).await;
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("requests")
        .arg(9)
        .query_async(&mut redis)
        .await
        .unwrap();
    let before = rollup_reads(&h);
    let second = stats(&h).await;
    assert_eq!(rollup_reads(&h) - before, 1, "one round trip");
    assert_eq!(requests_on(&second, &past), Some(5), "past day from memory");
    assert_eq!(requests_on(&second, &day(0)), Some(1), "today from Redis");
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_stats_flood_from_one_address_is_refused() {
    let h = Harness::start_with(SimConfig::default(), |c| {
        c.quota.ip_per_second = 1;
        c.quota.ip_burst = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let res = h.http.get(h.url("/v1/stats")).send().await.unwrap();
        statuses.push(res.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let res = h.http.get(h.url("/v1/stats")).send().await.unwrap();
    expect_problem(res, 429, "rate_limited").await;
}
