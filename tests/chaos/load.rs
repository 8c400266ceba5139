//! Steady mixed load: bearer and signed callers, prepaid and postpaid accounts, whole and
//! streamed answers, spread over both replicas. Every request carries a tag in its `metadata`
//! (the usage event keeps it), and what its answer said is recorded against the tag.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use affine_gateway::auth::signing::{Crypto, KeyPair, btauth_headers};
use affine_gateway::config::DEV_HOTKEY;
use affine_gateway::upstream::sse::SseDecoder;

use super::fixture::{Caller, Chaos, MAX_TOKENS};

/// What the caller learned from one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A whole answer or a stream's `done`: the cost it stated.
    Charged(u64),
    /// A stream that began (200) but did not reach `done`: it ended in `error`, broke, or the
    /// client left on purpose. Charged at most the worst case (the gateway's estimate).
    Interrupted(&'static str),
    /// An HTTP error with its problem code.
    Refused { status: u16, code: String },
    /// No HTTP answer at all (connection refused or cut).
    NoAnswer,
}

/// One request the suite sent.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Its `metadata.chaos`.
    pub tag: String,
    /// Who sent it: the account's name, `signed` or `fresh`.
    pub caller: &'static str,
    /// The replica it was sent to.
    pub replica: usize,
    /// When it was sent.
    pub sent_at: Instant,
    /// The most it may cost (0 for the free public tier).
    pub worst_rao: u64,
    /// What the caller learned.
    pub outcome: Outcome,
}

/// What a scenario's load does besides the plain mix.
#[derive(Clone, Copy, Default)]
pub struct Mix {
    /// Workers besides the mix's that send only short requests, each signed by a hotkey never
    /// seen before (the public tier): scenario g's flood.
    pub fresh_workers: u64,
    /// Streams are dropped by the client after their first chunk, one in two (scenario d).
    pub disconnect: bool,
}

/// Concurrent callers: enough to keep streams in flight on both replicas, few enough for a
/// 2-core CI machine.
pub const WORKERS: u64 = 8;

/// What the workers need, cloneable into tasks.
#[derive(Clone)]
pub struct Target {
    urls: Arc<Vec<String>>,
    http: reqwest::Client,
    callers: Arc<Vec<Caller>>,
    seq: Arc<AtomicU64>,
}

impl Target {
    /// The cluster's replicas and callers.
    pub fn of(ch: &Chaos) -> Target {
        let a = &ch.accounts;
        Target {
            urls: Arc::new(ch.replicas.iter().map(|r| r.url()).collect()),
            http: ch.http.clone(),
            callers: Arc::new(vec![
                a.prepaid.clone(),
                a.signed.clone(),
                a.postpaid.clone(),
                a.lean.clone(),
            ]),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Target {
    /// Requests started so far.
    pub fn started(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// A bearer token of the well-funded prepaid account (for hand-made requests).
    pub fn prepaid_token(&self) -> String {
        match &self.callers[0] {
            Caller::Bearer { token, .. } => token.clone(),
            _ => unreachable!("the prepaid account is a bearer caller"),
        }
    }

    /// Replica `i`'s address.
    pub fn addr(&self, i: usize) -> String {
        self.urls[i].trim_start_matches("http://").to_string()
    }
}

/// Runs `WORKERS` callers until `until` and returns every request they sent.
pub async fn run(t: &Target, until: Instant, mix: Mix) -> Vec<Sent> {
    let tasks: Vec<_> = (0..WORKERS + mix.fresh_workers)
        .map(|w| {
            let t = t.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                while Instant::now() < until {
                    let n = t.seq.fetch_add(1, Ordering::Relaxed);
                    let s = if w < WORKERS {
                        one(&t, n, mix).await
                    } else {
                        send(&t, &Caller::Fresh, (n % 2) as usize, n % 4 == 1, 16, false).await
                    };
                    // A replica that is down refuses connections at once; pacing the retry
                    // keeps a worker from spinning through thousands of refusals meanwhile.
                    if s.outcome == Outcome::NoAnswer {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    sent.push(s);
                }
                sent
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a load worker panicked"));
    }
    all
}

/// A btauth nonce: nanoseconds, strictly increasing across the process so that two workers
/// signing in the same nanosecond are not a replay.
fn nonce() -> u128 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return u128::from(next),
            Err(p) => prev = p,
        }
    }
}

/// Sends request number `n` of the mix and reads its answer.
pub async fn one(t: &Target, n: u64, mix: Mix) -> Sent {
    let caller = t.callers[(n as usize) % t.callers.len()].clone();
    let stream = (n / 4) % 2 == 1;
    // Mostly short answers; one in sixteen runs to the plan's limit, a longer stream.
    let max_tokens = if n % 16 == 5 {
        MAX_TOKENS
    } else {
        16 + (n % 4) * 16
    };
    let replica = ((n / 8) as usize) % t.urls.len();
    let leave_early = mix.disconnect && n.is_multiple_of(2);
    send(t, &caller, replica, stream, max_tokens, leave_early).await
}

/// One whole answer from replica `i` for the postpaid account: the recovery probe.
pub async fn probe(t: &Target, i: usize) -> Sent {
    let postpaid = t.callers[2].clone();
    send(t, &postpaid, i, false, 16, false).await
}

async fn send(
    t: &Target,
    caller: &Caller,
    replica: usize,
    stream: bool,
    max_tokens: u64,
    leave_early: bool,
) -> Sent {
    let sent_at = Instant::now();
    let tag = format!("c-{}", uuid::Uuid::new_v4().simple());
    let body = serde_json::json!({
        "input": "chaos",
        "max_tokens": max_tokens,
        "stream": stream,
        "metadata": {"chaos": tag},
    })
    .to_string();
    let mut rb = t
        .http
        .post(format!("{}/v1/reason", t.urls[replica]))
        .header("content-type", "application/json")
        .body(body.clone());
    let worst_rao = match caller {
        Caller::Bearer { token, .. } => {
            rb = rb.bearer_auth(token);
            max_tokens
        }
        Caller::Signed { key } => {
            for (k, v) in btauth_headers(
                key,
                "POST",
                "/v1/reason",
                body.as_bytes(),
                DEV_HOTKEY,
                nonce(),
            ) {
                rb = rb.header(k, v);
            }
            max_tokens
        }
        Caller::Fresh => {
            let key = KeyPair::from_uri(&format!("//chaos-fresh-{tag}"), Crypto::Ed25519).unwrap();
            for (k, v) in btauth_headers(
                &key,
                "POST",
                "/v1/reason",
                body.as_bytes(),
                DEV_HOTKEY,
                nonce(),
            ) {
                rb = rb.header(k, v);
            }
            // The public tier is free.
            0
        }
    };
    let outcome = match rb.send().await {
        Err(_) => Outcome::NoAnswer,
        Ok(res) => read(res, stream, leave_early).await,
    };
    let who = match caller {
        Caller::Bearer { name, .. } => *name,
        Caller::Signed { .. } => "signed",
        Caller::Fresh => "fresh",
    };
    Sent {
        tag,
        caller: who,
        replica,
        sent_at,
        worst_rao,
        outcome,
    }
}

async fn read(mut res: reqwest::Response, stream: bool, leave_early: bool) -> Outcome {
    let status = res.status().as_u16();
    if status != 200 {
        let code = match res.json::<serde_json::Value>().await {
            Ok(v) => v["code"].as_str().unwrap_or("").to_string(),
            Err(_) => String::new(),
        };
        return Outcome::Refused { status, code };
    }
    if !stream {
        let cost = res
            .headers()
            .get("x-affine-cost-rao")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        // The body must arrive too: a cut body is an interrupted answer.
        return match (cost, res.bytes().await) {
            (Some(c), Ok(_)) => Outcome::Charged(c),
            _ => Outcome::Interrupted("whole answer cut"),
        };
    }
    let mut dec = SseDecoder::new(1 << 20);
    loop {
        let chunk = match tokio::time::timeout(Duration::from_secs(30), res.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => return Outcome::Interrupted("stream ended without done"),
            Ok(Err(_)) => return Outcome::Interrupted("stream broke"),
            Err(_) => return Outcome::Interrupted("stream silent for 30 s"),
        };
        if leave_early {
            // Dropping the response closes the connection mid-stream.
            return Outcome::Interrupted("client left");
        }
        dec.push(&chunk);
        while let Ok(Some(ev)) = dec.next_event() {
            match ev.event.as_deref() {
                Some("done") => {
                    let v: serde_json::Value = serde_json::from_slice(&ev.data).unwrap_or_default();
                    return match v["cost"]["rao"].as_u64() {
                        Some(c) => Outcome::Charged(c),
                        None => Outcome::Interrupted("done without cost"),
                    };
                }
                Some("error") => return Outcome::Interrupted("error event"),
                _ => {}
            }
        }
    }
}

/// Requests per outcome kind (`200`, `402 insufficient_balance`, `interrupted: …`, …).
pub fn tally(sent: &[Sent]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for s in sent {
        let k = match &s.outcome {
            Outcome::Charged(_) => "200".to_string(),
            Outcome::Interrupted(why) => format!("interrupted: {why}"),
            Outcome::Refused { status, code } => format!("{status} {code}"),
            Outcome::NoAnswer => "no answer".to_string(),
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}
