//! Talking to the winner's OpenAI-compatible provider (Chutes by default).
//!
//! - [`openai`]: the wire types of `/chat/completions`, borrowed from the bytes they are
//!   parsed from so answers are not copied on the way through.
//! - [`client`]: the pooled HTTP client, its timeouts and how provider failures map to ours.
//! - [`sse`]: the incremental server-sent-events decoder for streamed answers.
//! - [`events`]: a provider's streamed response as a `Stream` of decoded chunks, under the
//!   stream deadlines.
//! - [`think`]: separates a leading `<think>…</think>` block from the answer.
//! - [`catalogue`]: the provider's `GET /models` (which models it serves, at what price).
//! - [`reasoning`]: the caller's reasoning controls as the provider understands them, and
//!   reasoning left out of OpenAI-shaped answers.
//! - [`answer`]: turns a provider answer (whole or streamed) into the `/v1/reason` shape.

pub(crate) mod answer;
pub mod catalogue;
pub mod client;
pub(crate) mod events;
pub(crate) mod openai;
pub mod reasoning;
pub mod sse;
pub(crate) mod think;

pub use client::{TimeoutKind, UpstreamClient, UpstreamError};
