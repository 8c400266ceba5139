//! Client for the Affine Reasoning API: the current Affine winner behind one gateway.
//!
//! ```no_run
//! use affine_reason::{Client, Crypto, Event, KeyPair};
//! use futures_util::StreamExt;
//!
//! # async fn demo() -> Result<(), affine_reason::Error> {
//! let client = Client::builder("http://127.0.0.1:8080")
//!     .keypair(KeyPair::from_wallet("my-wallet", "my-hotkey")?)
//!     .receiver("5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty") // GATEWAY_HOTKEY
//!     .build()?;
//! let answer = client.reason("2+2?").await?;
//! println!("{} (cost {} rao = {} TAO)", answer.output, answer.cost.rao, answer.cost.tao);
//!
//! let mut stream = client.reason_stream("Why is the sky blue?").await?;
//! while let Some(event) = stream.next().await {
//!     match event? {
//!         Event::Output { delta } => print!("{delta}"),
//!         Event::Done(result) => println!("\n{} rao", result.cost.rao),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! `POST /v1/responses` (Open Responses, stateless subset) is [`Client::responses`] and
//! [`Client::responses_stream`], a [`ResponseStream`] of typed [`ResponseEvent`]s.
//!
//! Credentials: a bearer token ([`ClientBuilder::token`]), or a hotkey
//! ([`ClientBuilder::keypair`]) that signs btauth/1 (or Epistula v2) — by default once, for
//! a session token it reuses until shortly before expiry. Signing comes from
//! [`affine_reason_auth`], the same crate the gateway verifies with.

mod client;
mod error;
mod rate_limit;
mod responses;
mod retry;
mod sse;
mod stream;
mod types;

pub use affine_reason_auth::{self as auth, Crypto, KeyError, KeyPair, Scheme};
pub use client::{Client, ClientBuilder, Linked};
pub use error::{ApiError, Error};
pub use rate_limit::{Limit, RateLimit};
pub use responses::{
    InputTokensDetails, ItemEvent, MessageItem, OutputItem, OutputTokensDetails, PartEvent,
    ReasoningItem, ReasoningOptions, Response, ResponseEvent, ResponseStream, ResponseUsage,
    ResponsesRequest, TextDelta, TextDone, TextPart,
};
pub use retry::RetryPolicy;
pub use stream::{ChatStream, Event, ReasonStream};
pub use types::{
    Account, ChatCompletion, ColdkeyLink, Cost, Input, Message, Model, ModelInfo, Models, Price,
    PriceAmount, ReasonRequest, ReasonResult, Session, Stats, StatsDay, Timing, Usage,
    UsageCounters, UsageDay, UsageReport, Winner,
};
