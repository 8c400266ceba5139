//! The published request and response types.
//!
//! Everything here is part of the public contract (docs/API.md) and carries a utoipa schema,
//! so `affine-gateway openapi` and `/openapi.json` are generated from these definitions.

pub(crate) mod reason;
pub(crate) mod winner;

pub use reason::*;
pub use winner::*;
