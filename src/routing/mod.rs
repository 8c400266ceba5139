//! Which model serves a request.
//!
//! - [`winner`]: the current winner snapshot, read from memory on every request and swapped
//!   atomically when it changes (today: from `GATEWAY_WINNER` or the embedded simulator; Affine
//!   polling, runtime pins and fallbacks plug in here).

pub mod winner;

pub use winner::{Winner, WinnerHandle};
