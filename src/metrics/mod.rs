//! Prometheus metrics.
//!
//! One registry per gateway instance (so in-process tests running several gateways don't mix
//! their counters). Label values are bounded: routes are the matched route templates, never
//! raw paths, and never caller identities.
//!
//! Every metric the SLO rules (`deploy/prometheus/`) and the dashboard (`deploy/grafana/`)
//! use is defined here, in one place, so names cannot drift between the code and the rules;
//! `tests/metrics.rs` checks that every name those files use is exported. The SLOs themselves
//! are written down in `docs/SLO.md`; their thresholds are the `*_SLO_SECONDS` constants below.
//!
//! Counters whose label values are known in advance (error codes, Redis operations, …) are
//! created at zero when the gateway starts: a series that appears only with its first increment
//! hides that increment from `rate()`, and alerts on a missing series cannot tell "no errors"
//! from "not scraped".

mod chain;
mod gate;
pub(crate) mod upstream_wait;

pub use chain::ChainMetrics;
pub use gate::GateMetrics;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The gateway-overhead SLO threshold: 99 % of requests to the Reasoning API spend less than
/// this in the gateway itself (`docs/SLO.md`). A bucket boundary of [`OVERHEAD_BUCKETS`].
pub const OVERHEAD_SLO_SECONDS: f64 = 0.01;

/// The time-to-first-token SLO threshold for streams (`docs/SLO.md`). A bucket boundary of
/// [`TTFT_BUCKETS`].
pub const TTFT_SLO_SECONDS: f64 = 10.0;

/// Latency buckets in seconds (end-to-end and upstream time; no SLO is set on them, the
/// provider's thinking time dominates). Fine enough to read percentiles from.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// Gateway overhead buckets in seconds (total minus upstream time). Fine-grained at the low
/// end, where [`OVERHEAD_SLO_SECONDS`] sits (exactly on a boundary, so "fraction under the
/// threshold" is a bucket count, not an interpolation).
pub const OVERHEAD_BUCKETS: &[f64] = &[
    0.0005,
    0.001,
    0.0025,
    0.005,
    OVERHEAD_SLO_SECONDS,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
];

/// Time-to-first-token buckets in seconds (streams); reasoning models think for a while.
/// [`TTFT_SLO_SECONDS`] is one of the boundaries.
pub const TTFT_BUCKETS: &[f64] = &[
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
    TTFT_SLO_SECONDS,
    20.0,
    30.0,
    60.0,
    120.0,
];

/// Redis command latency buckets in seconds.
pub const REDIS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The gateway's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route template, method, status code and error `code` (`none` on success).
    pub http_requests: IntCounterVec,
    /// Streams that ended with an error after their 200 head, by route and error code: the
    /// availability SLO counts them as failed requests, which the status alone cannot show.
    pub stream_failures: IntCounterVec,
    /// End-to-end latency by route template.
    pub http_duration: HistogramVec,
    /// Requests being served now.
    pub in_flight: IntGauge,
    /// SSE streams open now.
    pub streams_active: IntGauge,
    /// Upstream calls by upstream name and outcome (`ok` or an error kind, e.g.
    /// `payment_required` when the provider balance is empty).
    pub upstream_requests: IntCounterVec,
    /// Time the upstream took, by outcome.
    pub upstream_duration: HistogramVec,
    /// Requests refused by a limit, by code.
    pub quota_rejections: IntCounterVec,
    /// Quota store failures (admission went by the failure policy).
    pub quota_store_errors: prometheus::IntCounter,
    /// Time to the first token of a stream, by route.
    pub ttft: HistogramVec,
    /// Gateway overhead (end-to-end time minus upstream time), by route.
    pub overhead: HistogramVec,
    /// Authentication failures by error code.
    pub auth_failures: IntCounterVec,
    /// Upstream attempts that were retries, by upstream name.
    pub upstream_retries: IntCounterVec,
    /// Requests served by a fallback upstream, by the upstream that served.
    pub upstream_fallbacks: IntCounterVec,
    /// Circuit breaker state by upstream name: 0 closed, 1 half-open, 2 open.
    pub breaker_state: IntGaugeVec,
    /// The current winner: value 1 on the series labelled with its model, revision and source.
    pub winner_info: IntGaugeVec,
    /// 1 when a winner is known, else 0.
    pub winner_known: IntGauge,
    /// Winner changes seen by this replica.
    pub winner_changes: IntCounter,
    /// Rao charged to accounts, by plan.
    pub metered_rao: IntCounterVec,
    /// Tokens metered, by plan and direction (`input`, `output`).
    pub metered_tokens: IntCounterVec,
    /// Settlements by outcome (`settled`, `repeated`, `journaled`, `replayed`, `failed`).
    pub settlements: IntCounterVec,
    /// Settlements waiting in the local journal for Redis to come back.
    pub journal_backlog: IntGauge,
    /// Redis command latency by operation.
    pub redis_duration: HistogramVec,
    /// Redis command failures by operation.
    pub redis_errors: IntCounterVec,
    /// Connections: open, refused at accept, closed for slowness; stream send deadlines.
    pub conn: ConnMetrics,
    /// Provider prices: refused catalogue prices, the price in effect, the last good read.
    pub prices: PriceMetrics,
    /// The readiness gate and the deploy/retire webhooks.
    pub gate: GateMetrics,
    /// Chain endpoints, metagraph sync and TAO deposits.
    pub chain: ChainMetrics,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("agw_http_requests_total", "HTTP requests served"),
            &["route", "method", "status", "code"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "agw_http_request_duration_seconds",
                "Time from request to response headers (for streams: until the stream opened)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new("agw_http_requests_in_flight", "Requests being served")
            .expect("valid metric");
        let streams_active =
            IntGauge::new("agw_streams_active", "SSE streams open").expect("valid metric");
        let upstream_requests = IntCounterVec::new(
            Opts::new("agw_upstream_requests_total", "Calls to the model provider"),
            &["upstream", "outcome"],
        )
        .expect("valid metric");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "agw_upstream_duration_seconds",
                "Time until the provider's answer was complete",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )
        .expect("valid metric");
        let quota_rejections = IntCounterVec::new(
            Opts::new(
                "agw_quota_rejections_total",
                "Requests refused by a plan limit",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let quota_store_errors = prometheus::IntCounter::new(
            "agw_quota_store_errors_total",
            "Quota admissions or settlements that failed on the store",
        )
        .expect("valid metric");
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid metric")
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let ttft = histogram(
            "agw_ttft_seconds",
            "Time from request to the first token sent to the caller (streams)",
            TTFT_BUCKETS,
            &["route"],
        );
        let overhead = histogram(
            "agw_gateway_overhead_seconds",
            "Time the gateway added: end-to-end time minus time waiting for the upstream",
            OVERHEAD_BUCKETS,
            &["route"],
        );
        let auth_failures = counter(
            "agw_auth_failures_total",
            "Requests refused by authentication",
            &["code"],
        );
        let upstream_retries = counter(
            "agw_upstream_retries_total",
            "Upstream attempts that were retries",
            &["upstream"],
        );
        let upstream_fallbacks = counter(
            "agw_upstream_fallbacks_total",
            "Requests served by a fallback upstream",
            &["upstream"],
        );
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "agw_breaker_state",
                "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        let winner_info = IntGaugeVec::new(
            Opts::new("agw_winner_info", "The current winner model (value 1)"),
            &["model", "revision", "source"],
        )
        .expect("valid metric");
        let winner_known = IntGauge::new("agw_winner_known", "1 when a winner model is known")
            .expect("valid metric");
        let winner_changes =
            IntCounter::new("agw_winner_changes_total", "Times the winner model changed")
                .expect("valid metric");
        let metered_rao = counter(
            "agw_metered_rao_total",
            "Rao charged to accounts",
            &["plan"],
        );
        let metered_tokens = counter(
            "agw_metered_tokens_total",
            "Tokens metered",
            &["plan", "direction"],
        );
        let settlements = counter(
            "agw_settlements_total",
            "Request settlements by outcome",
            &["outcome"],
        );
        let journal_backlog = IntGauge::new(
            "agw_journal_backlog",
            "Settlements in the local journal waiting for Redis",
        )
        .expect("valid metric");
        let redis_duration = histogram(
            "agw_redis_command_duration_seconds",
            "Redis round-trip time by operation",
            REDIS_BUCKETS,
            &["op"],
        );
        let redis_errors = counter(
            "agw_redis_errors_total",
            "Redis operations that failed",
            &["op"],
        );
        let stream_failures = counter(
            "agw_stream_failures_total",
            "Streams that ended with an error event after a 200 head",
            &["route", "code"],
        );
        for c in [
            Box::new(ttft.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(overhead.clone()),
            Box::new(auth_failures.clone()),
            Box::new(upstream_retries.clone()),
            Box::new(upstream_fallbacks.clone()),
            Box::new(breaker_state.clone()),
            Box::new(winner_info.clone()),
            Box::new(winner_known.clone()),
            Box::new(winner_changes.clone()),
            Box::new(metered_rao.clone()),
            Box::new(metered_tokens.clone()),
            Box::new(settlements.clone()),
            Box::new(journal_backlog.clone()),
            Box::new(redis_duration.clone()),
            Box::new(redis_errors.clone()),
            Box::new(stream_failures.clone()),
            Box::new(quota_rejections.clone()),
            Box::new(quota_store_errors.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(streams_active.clone()),
            Box::new(upstream_requests.clone()),
            Box::new(upstream_duration.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        let conn = ConnMetrics::register(&registry);
        let prices = PriceMetrics::register(&registry);
        let gate = GateMetrics::register(&registry);
        let chain = ChainMetrics::register(&registry);
        let m = Metrics {
            conn,
            prices,
            gate,
            chain,
            registry,
            http_requests,
            stream_failures,
            http_duration,
            in_flight,
            streams_active,
            upstream_requests,
            upstream_duration,
            quota_rejections,
            quota_store_errors,
            ttft,
            overhead,
            auth_failures,
            upstream_retries,
            upstream_fallbacks,
            breaker_state,
            winner_info,
            winner_known,
            winner_changes,
            metered_rao,
            metered_tokens,
            settlements,
            journal_backlog,
            redis_duration,
            redis_errors,
        };
        pre_initialise(&m);
        m
    }

    /// The Redis command metrics, for the store.
    pub fn redis(&self) -> RedisMetrics {
        RedisMetrics {
            duration: self.redis_duration.clone(),
            errors: self.redis_errors.clone(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The Reasoning API routes, as their `route` label reads: the routes the availability SLO
/// covers.
pub const SLO_ROUTES: &[&str] = &["/v1/reason", "/v1/chat/completions"];

/// Redis operations, as the `op` label reads (one per store method that talks to Redis).
pub const REDIS_OPS: &[&str] = &[
    "ping",
    "get",
    "set",
    "set_nx",
    "del",
    "incr_by",
    "pttl",
    "auth_admit",
    "quota_admit",
    "quota_settle",
    "quota_refund",
    "quota_renew",
    "credit",
    "revoke",
    "revocations",
    "revocations_version",
    "scan",
    "unlink",
    "rollups",
    "usage_events",
    "ledger_read",
    "del_if_eq",
    "sadd",
    "srem",
    "smembers",
];

/// Upstream outcomes known in advance (`ok`, the error kinds, and `payment_required`, the
/// provider's 402 that the upstream-balance alert watches).
const UPSTREAM_OUTCOMES: &[&str] = &[
    "ok",
    "connect",
    "first_token",
    "idle",
    "total",
    "overloaded",
    "unavailable",
    "status",
    "malformed",
    "disconnected",
    "payment_required",
    "cold",
    "breaker_open",
];

/// Settlement outcomes ([`crate::metering::Meter`]).
const SETTLEMENT_OUTCOMES: &[&str] = &[
    "settled",
    "repeated",
    "quota_only",
    "journaled",
    "replayed",
    "failed",
];

/// Creates the zero series of counters whose label values are known (see the module doc).
fn pre_initialise(m: &Metrics) {
    let Metrics {
        auth_failures,
        quota_rejections,
        upstream_requests,
        redis_errors,
        stream_failures,
        settlements,
        upstream_retries,
        breaker_state,
        ..
    } = m;
    use crate::error::ErrorCode;
    for code in ErrorCode::ALL {
        match code.status().as_u16() {
            401 | 403 => {
                auth_failures.with_label_values(&[code.as_str()]);
            }
            402 | 429 => {
                quota_rejections.with_label_values(&[code.as_str()]);
            }
            _ => {}
        }
    }
    quota_rejections.with_label_values(&["ip_flood"]);
    // The winner's upstream always exists; fallbacks appear with their first call.
    for outcome in UPSTREAM_OUTCOMES {
        upstream_requests.with_label_values(&["winner", outcome]);
    }
    for op in REDIS_OPS {
        redis_errors.with_label_values(&[op]);
    }
    for outcome in SETTLEMENT_OUTCOMES {
        settlements.with_label_values(&[outcome]);
    }
    upstream_retries.with_label_values(&["winner"]);
    breaker_state.with_label_values(&["winner"]);
    for route in SLO_ROUTES {
        for code in [
            ErrorCode::UpstreamError,
            ErrorCode::UpstreamTimeout,
            ErrorCode::Internal,
        ] {
            stream_failures.with_label_values(&[route, code.as_str()]);
        }
    }
}

// --- connection metrics (issue #11, connection items) ---

/// Why a connection was closed at accept, as the `reason` label of
/// `agw_connections_refused_total` reads.
pub const CONN_REFUSED_REASONS: &[&str] = &["max_connections", "max_connections_per_ip"];

/// Why an open connection was closed by the gateway, as the `phase` label of
/// `agw_connections_timed_out_total` reads: no complete first request head in time, or idle
/// with no request in flight for too long.
pub const CONN_TIMEOUT_PHASES: &[&str] = &["header", "idle"];

/// Connection-level metrics.
#[derive(Clone)]
pub struct ConnMetrics {
    /// Client connections open now.
    pub open: IntGauge,
    /// Connections closed at accept because a cap was reached, by [`CONN_REFUSED_REASONS`].
    pub refused: IntCounterVec,
    /// Connections closed for slowness, by [`CONN_TIMEOUT_PHASES`].
    pub timed_out: IntCounterVec,
    /// Streams ended because the client did not take an event within the send deadline, by
    /// route.
    pub stream_send_timeouts: IntCounterVec,
}

impl ConnMetrics {
    fn register(registry: &Registry) -> ConnMetrics {
        let open =
            IntGauge::new("agw_connections_open", "Client connections open").expect("valid metric");
        let refused = IntCounterVec::new(
            Opts::new(
                "agw_connections_refused_total",
                "Connections closed at accept because a connection cap was reached",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let timed_out = IntCounterVec::new(
            Opts::new(
                "agw_connections_timed_out_total",
                "Connections closed for sending no request head in time, or for idling",
            ),
            &["phase"],
        )
        .expect("valid metric");
        let stream_send_timeouts = IntCounterVec::new(
            Opts::new(
                "agw_stream_send_timeouts_total",
                "Streams ended because the client stopped reading (send deadline passed)",
            ),
            &["route"],
        )
        .expect("valid metric");
        for r in CONN_REFUSED_REASONS {
            refused.with_label_values(&[r]);
        }
        for p in CONN_TIMEOUT_PHASES {
            timed_out.with_label_values(&[p]);
        }
        for r in SLO_ROUTES {
            stream_send_timeouts.with_label_values(&[r]);
        }
        for c in [
            Box::new(open.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(refused.clone()),
            Box::new(timed_out.clone()),
            Box::new(stream_send_timeouts.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        ConnMetrics {
            open,
            refused,
            timed_out,
            stream_send_timeouts,
        }
    }
}

// --- end connection metrics ---

/// The two Redis command metrics, cheap to clone, held by the Redis store.
#[derive(Clone)]
pub struct RedisMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
}

impl RedisMetrics {
    /// Records one command: its round-trip time and whether it failed.
    pub fn observe(&self, op: &'static str, elapsed: std::time::Duration, ok: bool) {
        self.duration
            .with_label_values(&[op])
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.errors.with_label_values(&[op]).inc();
        }
    }
}

impl std::fmt::Debug for RedisMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisMetrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// The metrics of provider-priced plans (`crate::metering::provider`).
#[derive(Clone)]
pub struct PriceMetrics {
    /// Catalogue prices refused (the last good price stayed in effect), by `reason`
    /// (`crate::upstream::catalogue::PRICE_PROBLEMS`).
    pub rejected: IntCounterVec,
    /// The provider price in effect for the current winner's model, rao per 1M tokens, by
    /// `direction` (`input`, `output`), before any plan's markup; 0 while none is known.
    pub rao_per_mtok: IntGaugeVec,
    /// Unix seconds of the last polling round in which every model had a good price; 0
    /// until the first.
    pub last_good: IntGauge,
    /// Models whose provider price the last round read (0: no plan is priced by the
    /// provider, or there is no winner), so the stale-price alert stays silent without them.
    pub sources: IntGauge,
}

impl PriceMetrics {
    fn register(registry: &Registry) -> PriceMetrics {
        let rejected = IntCounterVec::new(
            Opts::new(
                "agw_provider_price_rejected_total",
                "Provider catalogue prices refused (missing, zero, negative, unparsable, a 100x jump); the last good price stays in effect",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let rao_per_mtok = IntGaugeVec::new(
            Opts::new(
                "agw_provider_price_rao_per_mtok",
                "The provider price in effect for the current winner, rao per 1M tokens, before markup",
            ),
            &["direction"],
        )
        .expect("valid metric");
        let last_good = IntGauge::new(
            "agw_provider_price_last_good_timestamp_seconds",
            "Unix time of the last catalogue read that gave every served model a good price",
        )
        .expect("valid metric");
        let sources = IntGauge::new(
            "agw_provider_price_sources",
            "Models whose provider price the last catalogue round read",
        )
        .expect("valid metric");
        for r in crate::upstream::catalogue::PRICE_PROBLEMS {
            rejected.with_label_values(&[r]);
        }
        for d in ["input", "output"] {
            rao_per_mtok.with_label_values(&[d]);
        }
        for c in [
            Box::new(rejected.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rao_per_mtok.clone()),
            Box::new(last_good.clone()),
            Box::new(sources.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        PriceMetrics {
            rejected,
            rao_per_mtok,
            last_good,
            sources,
        }
    }
}
