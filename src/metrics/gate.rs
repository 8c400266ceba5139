//! Champion discovery's metrics: how Affine's polls go, whether a new champion is waiting to
//! serve, for how long, what its probes found, and what the deploy and retire calls did.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// Outcomes of one readiness probe.
pub(crate) const PROBE_OUTCOMES: [&str; 3] = ["ok", "not_listed", "failed"];

/// Outcomes of one Affine poll: `ok`, or why the last good champion was kept.
pub(crate) const POLL_OUTCOMES: [&str; 5] =
    ["ok", "not_found", "unavailable", "garbage", "not_routable"];

/// The webhooks.
pub(crate) const WEBHOOKS: [&str; 2] = ["deploy", "retire"];

/// Outcomes of one webhook attempt: `ok` (2xx), `retried` (a failure that is tried again),
/// `failed` (given up: a 4xx other than 429, or the retries ran out).
pub(crate) const WEBHOOK_OUTCOMES: [&str; 3] = ["ok", "retried", "failed"];

/// See the module docs.
#[derive(Debug, Clone)]
pub struct GateMetrics {
    /// 1 while a champion (new, or the winner in effect) is not ready to serve, else 0.
    pub pending: IntGauge,
    /// Seconds since that champion was first seen not ready; 0 when none is.
    pub pending_seconds: IntGauge,
    /// Readiness probes, by [`PROBE_OUTCOMES`].
    pub probes: IntCounterVec,
    /// Webhook attempts, by hook and [`WEBHOOK_OUTCOMES`].
    pub webhooks: IntCounterVec,
    /// Affine polls, by [`POLL_OUTCOMES`].
    pub polls: IntCounterVec,
    /// When Affine last answered with a usable champion, unix seconds (0: never, or not
    /// polled): a stalled discovery keeps serving the last champion, so only this shows it.
    pub last_poll_ok: IntGauge,
}

impl GateMetrics {
    pub(super) fn register(registry: &Registry) -> GateMetrics {
        let pending = IntGauge::new(
            "agw_winner_pending",
            "1 while a champion Affine named (or the winner in effect) is not ready to serve",
        )
        .expect("valid metric");
        let pending_seconds = IntGauge::new(
            "agw_winner_pending_seconds",
            "Seconds the champion that is not ready has been waiting; 0 when none is",
        )
        .expect("valid metric");
        let probes = IntCounterVec::new(
            Opts::new(
                "agw_winner_probes_total",
                "Readiness probes of champions, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let webhooks = IntCounterVec::new(
            Opts::new(
                "agw_webhook_calls_total",
                "Deploy and retire webhook attempts, by hook and outcome",
            ),
            &["hook", "outcome"],
        )
        .expect("valid metric");
        let polls = IntCounterVec::new(
            Opts::new(
                "agw_winner_polls_total",
                "Polls of Affine's API, by outcome (ok, or why the last good champion was kept)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let last_poll_ok = IntGauge::new(
            "agw_winner_last_poll_ok_timestamp_seconds",
            "When Affine's API last named a usable champion (unix seconds; 0 if never)",
        )
        .expect("valid metric");
        for o in POLL_OUTCOMES {
            polls.with_label_values(&[o]);
        }
        for o in PROBE_OUTCOMES {
            probes.with_label_values(&[o]);
        }
        for h in WEBHOOKS {
            for o in WEBHOOK_OUTCOMES {
                webhooks.with_label_values(&[h, o]);
            }
        }
        for c in [
            Box::new(pending.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(pending_seconds.clone()),
            Box::new(probes.clone()),
            Box::new(webhooks.clone()),
            Box::new(polls.clone()),
            Box::new(last_poll_ok.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        GateMetrics {
            pending,
            pending_seconds,
            probes,
            webhooks,
            polls,
            last_poll_ok,
        }
    }
}
