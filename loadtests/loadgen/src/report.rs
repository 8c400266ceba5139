//! What a run prints: a text report for people, one JSON object for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::histogram::Histogram;
use crate::observe::{GatewayUsage, Observed, RedisUsage};
use crate::run::Outcome;
use crate::schedule::Schedule;

/// The machine-readable result of a run (`--json`); field names are part of the interface
/// `loadtests/run.sh` reads.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The URL requested.
    pub url: String,
    /// The HTTP method.
    pub method: String,
    /// Offered rate, requests per second.
    pub rate: f64,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// Warm-up before it, seconds.
    pub warmup_s: f64,
    /// Keep-alive connections.
    pub connections: u32,
    /// Requests scheduled in the measured window.
    pub scheduled: u64,
    /// Of those, 2xx responses read to the end.
    pub ok: u64,
    /// Of those, everything else by kind (`status_503`, `connect`, `send`, `body`, `timeout`).
    pub errors: BTreeMap<String, u64>,
    /// Complete HTTP responses (any status) per second, from the first measured due time to
    /// the last measured response.
    pub achieved_rate: f64,
    /// Mean body size of the 2xx responses, bytes.
    pub mean_body_bytes: f64,
    /// Latency of the 2xx responses from due time to last body byte, milliseconds.
    pub latency_ms: Percentiles,
    /// Due time to the moment the request went out, milliseconds: large values mean the load
    /// generator or the connection pool fell behind, not the server.
    pub send_lag_ms: Percentiles,
    /// Streamed runs (`--stream`): due time to the first SSE `data:` field of the 2xx
    /// responses, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<Percentiles>,
    /// Signed runs: the SS58 hotkey that signed (the account the gateway saw).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_as: Option<String>,
    /// Signed runs (`--sign-btauth`): the client's time to sign each request, milliseconds
    /// (done before the request is due, so not part of `latency_ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_ms: Option<Percentiles>,
    /// With `--gateway-pid`: the gateway's CPU and memory over the measured window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayReport>,
    /// With `--redis-url`: Redis's commands and CPU over the measured window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisReport>,
    /// Wall-clock length of the run, warm-up and draining included, seconds.
    pub elapsed_s: f64,
}

/// [`GatewayUsage`] and its share per request.
#[derive(Debug, Serialize)]
pub struct GatewayReport {
    /// The totals.
    #[serde(flatten)]
    pub usage: GatewayUsage,
    /// CPU µs per complete response in the window.
    pub cpu_us_per_request: f64,
}

/// [`RedisUsage`] and its share per request.
#[derive(Debug, Serialize)]
pub struct RedisReport {
    /// The totals.
    #[serde(flatten)]
    pub usage: RedisUsage,
    /// Commands per complete response in the window.
    pub commands_per_request: f64,
    /// Microseconds inside commands per response.
    pub usec_per_request: f64,
    /// Server CPU µs per response.
    pub cpu_us_per_request: f64,
    /// Calls of each command per response.
    pub calls_per_request: BTreeMap<String, f64>,
}

/// `total / requests` to two decimals (0 without requests).
fn per(total: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        (total as f64 / requests as f64 * 100.0).round() / 100.0
    }
}

impl GatewayReport {
    /// `usage` spread over `requests`.
    pub fn new(usage: GatewayUsage, requests: u64) -> Self {
        Self {
            cpu_us_per_request: per(usage.cpu_us, requests),
            usage,
        }
    }
}

impl RedisReport {
    /// `usage` spread over `requests`.
    pub fn new(usage: RedisUsage, requests: u64) -> Self {
        Self {
            commands_per_request: per(usage.calls, requests),
            usec_per_request: per(usage.usec, requests),
            cpu_us_per_request: per(usage.cpu_us, requests),
            calls_per_request: usage
                .commands
                .iter()
                .map(|(name, stat)| (name.clone(), per(stat.calls, requests)))
                .collect(),
            usage,
        }
    }
}

/// The report of a run wrapped around another command (`loadgen ... -- COMMAND`): totals
/// only, since loadgen does not know how many requests the command made.
#[derive(Debug, Serialize)]
pub struct WatchReport {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Its exit status (`None` if it was killed by a signal).
    pub exit_code: Option<i32>,
    /// How long it ran, seconds.
    pub elapsed_s: f64,
    /// What the observed servers spent while it ran.
    #[serde(flatten)]
    pub observed: Observed,
}

/// Summary of one histogram, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    /// Values summarised.
    pub count: u64,
    /// Smallest value.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest value.
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.count(),
            min: ms(h.min()),
            mean: h.mean().round() / 1000.0,
            p50: ms(h.percentile(50.0)),
            p90: ms(h.percentile(90.0)),
            p99: ms(h.percentile(99.0)),
            p99_9: ms(h.percentile(99.9)),
            max: ms(h.max()),
        }
    }
}

impl Report {
    /// Summarises `outcome`.
    pub fn new(
        url: &str,
        method: &str,
        rate: f64,
        connections: u32,
        schedule: &Schedule,
        outcome: &Outcome,
    ) -> Self {
        let stats = &outcome.stats;
        let window = stats
            .last_done
            .map(|last| {
                last.saturating_duration_since(outcome.measure_start)
                    .as_secs_f64()
            })
            .unwrap_or(0.0);
        let achieved_rate = if window > 0.0 {
            stats.responses as f64 / window
        } else {
            0.0
        };
        let measured_s = schedule.measured_requests() as f64 / rate;
        Self {
            url: url.to_owned(),
            method: method.to_owned(),
            rate,
            duration_s: measured_s,
            warmup_s: schedule.warmup_requests() as f64 / rate,
            connections,
            scheduled: schedule.measured_requests(),
            ok: stats.ok,
            errors: stats
                .errors
                .iter()
                .map(|(kind, n)| (kind.to_string(), *n))
                .collect(),
            achieved_rate: (achieved_rate * 10.0).round() / 10.0,
            mean_body_bytes: if stats.ok == 0 {
                0.0
            } else {
                (stats.body_bytes as f64 / stats.ok as f64).round()
            },
            latency_ms: Percentiles::of(&stats.latency),
            send_lag_ms: Percentiles::of(&stats.send_lag),
            ttft_ms: (stats.ttft.count() > 0).then(|| Percentiles::of(&stats.ttft)),
            signed_as: None,
            sign_ms: (stats.sign.count() > 0).then(|| Percentiles::of(&stats.sign)),
            gateway: outcome
                .observed
                .gateway
                .clone()
                .map(|u| GatewayReport::new(u, stats.responses)),
            redis: outcome
                .observed
                .redis
                .clone()
                .map(|u| RedisReport::new(u, stats.responses)),
            elapsed_s: (outcome.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        }
    }

    /// Requests that were scheduled but did not end in a 2xx response.
    pub fn failed(&self) -> u64 {
        self.scheduled - self.ok
    }

    /// The report for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{} {}\n  rate {}/s for {:.1}s after {:.1}s warm-up, {} connections",
            self.method, self.url, self.rate, self.duration_s, self.warmup_s, self.connections
        );
        let _ = writeln!(
            out,
            "  requests: {} scheduled, {} ok, {} failed; achieved {:.1} responses/s; mean body {} B",
            self.scheduled,
            self.ok,
            self.failed(),
            self.achieved_rate,
            self.mean_body_bytes
        );
        if !self.errors.is_empty() {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            let _ = writeln!(out, "  errors: {}", list.join(", "));
        }
        let _ = writeln!(out, "  {:<10}{:>12}{:>12}", "ms", "latency", "send lag");
        let rows = [
            ("min", self.latency_ms.min, self.send_lag_ms.min),
            ("p50", self.latency_ms.p50, self.send_lag_ms.p50),
            ("p90", self.latency_ms.p90, self.send_lag_ms.p90),
            ("p99", self.latency_ms.p99, self.send_lag_ms.p99),
            ("p99.9", self.latency_ms.p99_9, self.send_lag_ms.p99_9),
            ("max", self.latency_ms.max, self.send_lag_ms.max),
            ("mean", self.latency_ms.mean, self.send_lag_ms.mean),
        ];
        for (name, latency, lag) in rows {
            let _ = writeln!(out, "  {name:<10}{latency:>12.3}{lag:>12.3}");
        }
        if let Some(t) = &self.ttft_ms {
            let _ = writeln!(
                out,
                "  time to first data field, ms: p50 {:.3}, p90 {:.3}, p99 {:.3}, p99.9 {:.3}",
                t.p50, t.p90, t.p99, t.p99_9
            );
        }
        if let Some(t) = &self.sign_ms {
            let _ = writeln!(
                out,
                "  signing (before the due time), ms: p50 {:.3}, p99 {:.3}",
                t.p50, t.p99
            );
        }
        if let Some(g) = &self.gateway {
            let _ = writeln!(
                out,
                "  gateway pid {}: {:.1} µs CPU/request, RSS {} KiB at the end, {} KiB max",
                g.usage.pid, g.cpu_us_per_request, g.usage.rss_kib_end, g.usage.rss_kib_max
            );
        }
        if let Some(r) = &self.redis {
            let _ = writeln!(
                out,
                "  redis ({} node(s)): {:.2} commands/request, {:.1} µs CPU/request, {:.1} µs in commands/request",
                r.usage.nodes.len(),
                r.commands_per_request,
                r.cpu_us_per_request,
                r.usec_per_request
            );
        }
        let _ = writeln!(
            out,
            "  latency: due time -> last body byte of 2xx responses; send lag: due time -> request sent"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_reported_in_milliseconds() {
        let mut h = Histogram::new();
        for us in 1..=1000 {
            h.record(us);
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, 0.5);
        assert_eq!(p.p90, 0.9);
        assert_eq!(p.p99, 0.99);
        assert_eq!(p.p99_9, 0.999);
        assert_eq!(p.max, 1.0);
        assert_eq!(p.min, 0.001);
        assert_eq!(p.mean, 0.501);
        let json = serde_json::to_value(&p).expect("serialises");
        assert_eq!(json["p99_9"], 0.999);
    }

    #[test]
    fn redis_figures_are_per_response() {
        use crate::observe::CommandStat;
        let usage = RedisUsage {
            nodes: vec!["redis://127.0.0.1:6379".into()],
            calls: 300,
            usec: 6_000,
            cpu_us: 9_000,
            commands: BTreeMap::from([
                (
                    "evalsha".to_owned(),
                    CommandStat {
                        calls: 200,
                        usec: 5_000,
                    },
                ),
                (
                    "xadd".to_owned(),
                    CommandStat {
                        calls: 100,
                        usec: 1_000,
                    },
                ),
            ]),
        };
        let r = RedisReport::new(usage, 100);
        assert_eq!(r.commands_per_request, 3.0);
        assert_eq!(r.cpu_us_per_request, 90.0);
        assert_eq!(r.usec_per_request, 60.0);
        assert_eq!(r.calls_per_request["evalsha"], 2.0);
        let json = serde_json::to_value(&r).expect("serialises");
        assert_eq!(
            json["commands"]["xadd"]["calls"], 100,
            "totals are flattened in"
        );
        assert_eq!(json["cpu_us"], 9_000);
        assert_eq!(RedisReport::new(r.usage, 0).commands_per_request, 0.0);
    }
}
