//! The wall clock, read in one place.
//!
//! Every "unix time now" in the crate comes from here, so that the whole gateway agrees on one
//! definition (and one place to change if the wall clock ever has to be injected). Time that
//! decides expiry or rate inside one process is monotonic instead (`tokio::time::Instant`);
//! the in-memory store has its own clock for that, `store::memory::clock`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds now (0 if the system clock is set before 1970).
pub(crate) fn now_ms() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Unix seconds now (0 if the system clock is set before 1970).
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
