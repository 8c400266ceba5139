//! Request counters, kept in atomics so the hot path never takes a lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the counters (`GET /_sim/stats` serves it as JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimStats {
    /// Chat completion requests received (`GET /v1/models` is counted apart, in
    /// `models_requests`; the `/_sim/*` endpoints are not counted).
    pub requests_total: u64,
    /// Requests whose response body is neither fully sent nor dropped yet.
    pub in_flight: u64,
    /// Highest `in_flight` seen; what a concurrency-limit test asserts on.
    pub max_in_flight: u64,
    /// Responses whose body was sent to the end (including error statuses).
    pub completed: u64,
    /// Responses dropped before their end: the client went away, or the simulator aborted the
    /// connection on purpose ([`FaultKind::Disconnect`](crate::FaultKind::Disconnect)).
    pub client_disconnects: u64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests_total: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    completed: AtomicU64,
    client_disconnects: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> SimStats {
        SimStats {
            requests_total: self.requests_total.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            max_in_flight: self.max_in_flight.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            client_disconnects: self.client_disconnects.load(Ordering::Relaxed),
        }
    }

    /// Counts a request and returns the guard that keeps it in flight.
    pub(crate) fn arrive(self: &Arc<Self>) -> InFlight {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.max_in_flight.fetch_max(now, Ordering::AcqRel);
        InFlight {
            counters: Arc::clone(self),
            completed: false,
        }
    }
}

/// Lives from request arrival until the response body has been sent or dropped; it travels
/// into the body stream so that streaming responses stay counted while they stream.
#[derive(Debug)]
pub(crate) struct InFlight {
    counters: Arc<Counters>,
    completed: bool,
}

impl InFlight {
    /// The body reached its end: dropping the guard now counts a completion.
    pub(crate) fn complete(&mut self) {
        self.completed = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let counter = if self.completed {
            &self.counters.completed
        } else {
            &self.counters.client_disconnects
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_track_in_flight_and_outcome() {
        let counters = Arc::new(Counters::default());
        let mut a = counters.arrive();
        let b = counters.arrive();
        assert_eq!(counters.snapshot().in_flight, 2);
        a.complete();
        drop(a);
        drop(b);
        let s = counters.snapshot();
        assert_eq!(
            s,
            SimStats {
                requests_total: 2,
                in_flight: 0,
                max_in_flight: 2,
                completed: 1,
                client_disconnects: 1
            }
        );
    }
}
