//! Prometheus metrics.
//!
//! One registry per gateway instance (so in-process tests running several gateways don't mix
//! their counters). Label values are bounded: routes are the matched route templates, never
//! raw paths, and never caller identities. The full SLO set lands with issue #7.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds. They include the overhead and availability thresholds of the
/// SLOs so that "fraction under the threshold" is exact, not interpolated.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// The gateway's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route template, method and status code.
    pub http_requests: IntCounterVec,
    /// End-to-end latency by route template.
    pub http_duration: HistogramVec,
    /// Requests being served now.
    pub in_flight: IntGauge,
    /// SSE streams open now.
    pub streams_active: IntGauge,
    /// Upstream calls by outcome (`ok` or an error kind).
    pub upstream_requests: IntCounterVec,
    /// Time the upstream took, by outcome.
    pub upstream_duration: HistogramVec,
    /// Requests refused by a limit, by code.
    pub quota_rejections: IntCounterVec,
    /// Quota store failures (admission went by the failure policy).
    pub quota_store_errors: prometheus::IntCounter,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("agw_http_requests_total", "HTTP requests served"),
            &["route", "method", "status"],
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
            &["outcome"],
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
        for c in [
            Box::new(quota_rejections.clone()) as Box<dyn prometheus::core::Collector>,
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
        Metrics {
            registry,
            http_requests,
            http_duration,
            in_flight,
            streams_active,
            upstream_requests,
            upstream_duration,
            quota_rejections,
            quota_store_errors,
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
