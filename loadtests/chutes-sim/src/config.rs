//! What the simulator does: answer shape, pacing and injected faults.

use std::time::Duration;

/// Model the simulator serves unless told otherwise; matches the fixtures.
pub const DEFAULT_MODEL: &str = "affine-champ/Affine-Reasoner-32B";

/// How long a model deployed through `POST /_sim/deploy` takes to be served unless configured:
/// long enough that a gateway polling every second sees it absent first, short enough for a demo.
pub const DEFAULT_DEPLOY_DELAY: Duration = Duration::from_secs(2);

/// Behaviour of a running simulator; swap it at run time with
/// [`SimHandle::set_config`](crate::SimHandle::set_config).
///
/// Every random choice (fault probability, generated words, ids) derives from `seed` and the
/// number of chat-completion requests seen since this config was installed, so a test that
/// installs a config and then sends requests one by one always sees the same answers.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// The primary model: served from the start and listed first in `/v1/models`. Installing a
    /// config whose `model` differs from the installed one deploys that model at once (the
    /// others stay served); see [`SimHandle::served_models`](crate::SimHandle::served_models).
    pub model: String,
    /// Root of all randomness.
    pub seed: u64,
    /// Delay before the first streamed chunk, or before a non-streamed answer.
    pub ttft: Duration,
    /// Pacing of streamed chunks after the first one; `0.0` (or negative) sends them at once.
    pub tokens_per_sec: f64,
    /// Words of reasoning per answer (ignored with [`ReasoningStyle::None`]).
    pub reasoning_tokens: usize,
    /// Words of the final answer.
    pub output_tokens: usize,
    /// Where the reasoning goes.
    pub reasoning_style: ReasoningStyle,
    /// Streaming only: `Some(n)` cuts the text into deltas of `n` characters, so `<think>` and
    /// `</think>` get split across chunks; `None` sends one word per delta.
    pub delta_chars: Option<usize>,
    /// Streaming only: `Some(n)` writes the SSE body as HTTP frames of `n` bytes, splitting SSE
    /// lines and multi-byte UTF-8 characters across frames.
    pub fragment_bytes: Option<usize>,
    /// Fault to inject into chat completions.
    pub fault: Fault,
    /// `Some(k)`: `/v1/*` requests without `Authorization: Bearer k` get the 401 fixture.
    pub require_api_key: Option<String>,
    /// `false`: answer the configured number of words whatever `max_tokens` says, as a
    /// provider that does not count reasoning against the limit does (the gateway must still
    /// charge what the usage reports).
    pub honour_max_tokens: bool,
    /// How many of the latest requests to keep for [`SimHandle::requests`](crate::SimHandle::requests);
    /// `0` turns recording off, which benchmarks want because recording parses every body twice.
    pub record_requests: usize,
    /// Whether chat completions for a model outside the catalogue get Chutes' 404.
    pub catalogue: Catalogue,
    /// `Some(secret)`: `POST /_sim/deploy` and `/_sim/retire` without a valid
    /// `X-Affine-Signature: sha256=<hex HMAC-SHA256 of the body>` answer 401. `None` accepts
    /// any call (the signature is still checked against nothing and recorded as unverified).
    pub webhook_secret: Option<String>,
    /// Time from an accepted deploy webhook until its model is served, as a chute that has to
    /// download weights and start; `Duration::ZERO` serves it at once.
    pub deploy_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            model: DEFAULT_MODEL.to_owned(),
            seed: 7,
            ttft: Duration::ZERO,
            tokens_per_sec: 0.0,
            reasoning_tokens: 24,
            output_tokens: 16,
            reasoning_style: ReasoningStyle::ReasoningContent,
            delta_chars: None,
            fragment_bytes: None,
            fault: Fault::default(),
            require_api_key: None,
            honour_max_tokens: true,
            record_requests: 256,
            catalogue: Catalogue::Strict,
            webhook_secret: None,
            deploy_delay: DEFAULT_DEPLOY_DELAY,
        }
    }
}

/// Which models chat completions accept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Catalogue {
    /// Only the served models (as Chutes does): any other gets 404
    /// `{"detail": "model not found: <id>"}`. A deploy that is still in its delay is not served.
    #[default]
    Strict,
    /// Any model is answered, served or not; `/v1/models` still lists only the served ones.
    /// For load tests and clients that do not care which model answers.
    Open,
}

/// Where a reasoning model puts its thinking; upstreams differ, so the gateway must handle all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReasoningStyle {
    /// In `message.reasoning_content` / `delta.reasoning_content` (sglang's reasoning parser).
    #[default]
    ReasoningContent,
    /// Inline at the start of the content: `<think>\n…\n</think>\n\n` then the answer.
    ThinkTags,
    /// No reasoning at all, only the answer.
    None,
}

/// A fault and when it fires.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fault {
    /// What goes wrong; `None` means nothing does.
    pub kind: Option<FaultKind>,
    /// Which chat-completion requests it hits.
    pub trigger: Trigger,
}

impl Fault {
    /// A fault that hits every chat completion.
    pub fn always(kind: FaultKind) -> Self {
        Self {
            kind: Some(kind),
            trigger: Trigger::Always,
        }
    }
}

/// The ways the simulated upstream misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer this status with a FastAPI `{"detail": …}` body: the fixture for 401, 402, 404,
    /// 429 and 503, else `{"detail":"Internal Server Error"}`. 429 and 503 add `Retry-After: 1`.
    Status(u16),
    /// 200 with a body that is not JSON (non-stream) or SSE data lines that are not JSON (stream).
    Garbage,
    /// Stream: send that many SSE events (the role chunk is the first), then abort the
    /// connection without `[DONE]` or the chunked terminator. Non-stream: announce the full
    /// `Content-Length`, send half of the body, abort.
    Disconnect {
        /// SSE events sent before the abort.
        after_chunks: usize,
    },
    /// Send nothing at all, not even headers, until the client goes away.
    Stall,
    /// Stream: send that many SSE events, then nothing more until the client goes away.
    /// Non-stream: headers and half of the body, then nothing more.
    StallAfter {
        /// SSE events sent before stalling.
        after_chunks: usize,
    },
}

/// Which chat-completion requests a fault hits, counted from 1 since the config was installed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Trigger {
    /// Every request.
    #[default]
    Always,
    /// Each request independently with this probability, decided by hashing the seed and the
    /// request number, so the same seed gives the same pattern however requests interleave.
    Probability(f64),
    /// Only the n-th request (1-based).
    NthRequest(u64),
    /// Requests n, 2n, 3n, …
    EveryNth(u64),
}

impl Trigger {
    /// Whether request number `n` (1-based) is hit, given the config's seed.
    pub(crate) fn fires(self, seed: u64, n: u64) -> bool {
        match self {
            Trigger::Always => true,
            Trigger::Probability(p) => crate::text::unit_f64(seed ^ FAULT_SALT, n) < p,
            Trigger::NthRequest(k) => n == k,
            // `n` starts at 1, so `EveryNth(0)` never fires.
            Trigger::EveryNth(k) => n.is_multiple_of(k),
        }
    }
}

/// Keeps fault decisions independent of the word stream that uses the same seed.
const FAULT_SALT: u64 = 0x5eed_fa17_0000_0001;
