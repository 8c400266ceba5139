//! Reading Bittensor's Subtensor chain: the JSON-RPC client and the SCALE decoders that the
//! metagraph sync and the TAO deposit poller are built on.
//!
//! - `rpc`: [`rpc::ChainRpc`], JSON-RPC 2.0 over HTTP POST to a list of endpoints tried in order,
//!   each with its own rate limiter (public nodes allow about one request a second per IP)
//!   and its own backoff after a 429, a 5xx or a transport error. A lite node that has pruned
//!   the state asked for ("State already discarded", "UnknownBlock") is not the end: the same
//!   call is retried on the archive endpoints, so a poller that fell behind catches up instead
//!   of skipping blocks.
//! - `subnet_state`: `SubnetInfoRuntimeApi_get_subnet_state`, decoded from mirrored
//!   parity-scale-codec structs inside their `Option` (the runtime answers `None` for a missing
//!   subnet), tolerant of the deprecated vectors the runtime now leaves empty and of fields
//!   appended after the ones we know.
//! - `events`: `System.Events` decoded with the runtime's own metadata (its type registry),
//!   never by scanning bytes: an EVM log can carry bytes that look like a transfer, and any
//!   event we cannot decode stops the decoder rather than being skipped.
//! - `runtime`: [`runtime::MetadataCache`], the metadata to decode a block with. Block N's events are
//!   decoded with the metadata read at N's **parent**: a runtime upgrade enacted in block N
//!   takes effect only after N, so N's own state may already describe the new runtime while its
//!   events were emitted by the old one. Metadata is cached per `spec_version`.
//!
//! - `membership`: the published metagraph snapshots and what they grant a hotkey without an
//!   account record (the subnet plan, a gate's refusal, or `membership_unknown` when stale);
//!   `metagraph`: the task that reads them (one replica, a store lease) and shares them.
//! - `deposits`: the finalized-block poller that credits TAO transfers exactly once, and the
//!   operator's assignment of unattributed ones; `service`: all of it built from `[chain]`.
//!
//! Facts the callers rely on: only the **finalized** head is followed (GRANDPA finality, so a
//! credited transfer cannot be re-orged away), and an event's identity is
//! `(block number, 0-based position in System.Events)`.

pub(crate) mod deposits;
pub(crate) mod events;
pub(crate) mod lease;
pub(crate) mod membership;
pub(crate) mod metagraph;
pub(crate) mod rpc;
pub(crate) mod runtime;
pub(crate) mod service;
pub(crate) mod subnet_state;
#[cfg(test)]
pub(crate) mod testing;

/// Why chain bytes could not be decoded. The poller stops on any of these (it never skips a
/// block it could not read); [`DecodeError::code`] is the stable name for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The bytes are not a valid SCALE encoding of the expected type.
    #[error("invalid SCALE encoding: {0}")]
    Scale(String),
    /// A vector indexed by UID does not have one entry per hotkey.
    #[error("`{field}` has {len} entries for {expected} hotkeys")]
    Length {
        /// The struct field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The number of hotkeys.
        expected: usize,
    },
    /// The runtime metadata is unusable (not `meta`-prefixed, a version before 14, or without
    /// the entries and types we need).
    #[error("runtime metadata: {0}")]
    Metadata(String),
    /// One event decoded, but not into the shape the metadata promised us (a field missing, an
    /// amount wider than u64).
    #[error("event {index}: {reason}")]
    Event {
        /// 0-based position in `System.Events`.
        index: u32,
        /// What was wrong.
        reason: String,
    },
    /// Bytes left over after the whole value was decoded: the type we decoded with is wrong.
    #[error("{0} bytes left after the value")]
    Trailing(usize),
}

impl DecodeError {
    /// The stable, machine-readable name of this error.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            DecodeError::Scale(_) => "scale",
            DecodeError::Length { .. } => "length_mismatch",
            DecodeError::Metadata(_) => "metadata",
            DecodeError::Event { .. } => "event_shape",
            DecodeError::Trailing(_) => "trailing_bytes",
        }
    }
}
