//! How long a request waited for the model provider, so that the gateway's own overhead can be
//! measured as end-to-end time minus that wait (`agw_gateway_overhead_seconds`).
//!
//! The metrics layer ([`crate::http::stack`]) runs the rest of the request inside [`measure`];
//! whoever awaits the provider calls [`record`] with the time it waited. The sum lives in a
//! task-local cell rather than a request extension so the handlers' signatures do not change
//! and nothing is allocated per request. Waits recorded outside [`measure`] (a stream's pump
//! runs on its own task, after the response head has gone) are ignored: the overhead of a
//! stream is measured up to its head, like its latency.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static WAIT: Cell<Duration>;
}

/// Runs `fut` and returns its output with the upstream wait recorded while it ran.
pub async fn measure<F: Future>(fut: F) -> (F::Output, Duration) {
    WAIT.scope(Cell::new(Duration::ZERO), async {
        let out = fut.await;
        let waited = WAIT.try_with(Cell::get).unwrap_or_default();
        (out, waited)
    })
    .await
}

/// Adds the time since `started` to the current request's upstream wait (no-op outside
/// [`measure`]).
pub fn record(started: Instant) {
    let waited = started.elapsed();
    let _ = WAIT.try_with(|w| w.set(w.get().saturating_add(waited)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_add_up_inside_and_are_ignored_outside() {
        let earlier = Instant::now() - Duration::from_millis(40);
        record(earlier);
        let (out, waited) = measure(async {
            record(earlier);
            record(earlier);
            7
        })
        .await;
        assert_eq!(out, 7);
        assert!(waited >= Duration::from_millis(80), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        let (_, none) = measure(async {}).await;
        assert_eq!(none, Duration::ZERO);
    }
}
