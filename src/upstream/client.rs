//! The pooled client for the provider's OpenAI-compatible API.
//!
//! One `reqwest::Client` (rustls, connection pool, HTTP/2 when the provider offers it) is
//! shared by every request. Provider failures become [`UpstreamError`]s, which map to the
//! contract's 502/503/504 codes; the caller never sees the provider's body or our key.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::error::{ApiError, ErrorCode};

/// Which deadline an upstream call missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// TCP/TLS connect.
    Connect,
    /// Until the first token (response headers, then the first streamed chunk).
    FirstToken,
    /// Between two streamed chunks.
    Idle,
    /// The whole call.
    Total,
}

impl TimeoutKind {
    /// A label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutKind::Connect => "connect",
            TimeoutKind::FirstToken => "first_token",
            TimeoutKind::Idle => "idle",
            TimeoutKind::Total => "total",
        }
    }
}

/// Why an upstream call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The provider could not be reached (refused, reset, DNS).
    #[error("upstream unreachable")]
    Connect,
    /// A deadline passed.
    #[error("upstream {} timeout", .0.as_str())]
    Timeout(TimeoutKind),
    /// The provider answered with an error status.
    #[error("upstream answered {status}")]
    Status {
        /// The provider's HTTP status.
        status: u16,
        /// The provider's `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    /// The answer could not be understood.
    #[error("upstream answer malformed: {0}")]
    Malformed(String),
    /// The connection broke while the answer was arriving.
    #[error("upstream connection broke mid-answer")]
    Disconnected,
    /// Chutes answered 503 "No instances available": the chute is cold. Not retried on the
    /// same upstream (a cold start takes minutes); the request fails over and the chute is
    /// probed in the background.
    #[error("upstream chute is cold")]
    Cold {
        /// The provider's `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    /// Every upstream that could serve was skipped: its circuit breaker is open (or it is
    /// cold). No call was made.
    #[error("no upstream available (circuit open)")]
    BreakerOpen,
}

impl UpstreamError {
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout(k) => k.as_str(),
            UpstreamError::Status { status: 429, .. } => "overloaded",
            UpstreamError::Status { status: 503, .. } => "unavailable",
            // The operator's provider balance is empty: the SRE alert keys on this outcome.
            UpstreamError::Status { status: 402, .. } => "payment_required",
            UpstreamError::Cold { .. } => "cold",
            UpstreamError::BreakerOpen => "breaker_open",
            UpstreamError::Status { .. } => "status",
            UpstreamError::Malformed(_) => "malformed",
            UpstreamError::Disconnected => "disconnected",
        }
    }

    /// The provider refused the request itself (400, 413, 422): another attempt or another
    /// upstream would refuse it too, and the upstream is healthy.
    pub fn is_request_error(&self) -> bool {
        matches!(
            self,
            UpstreamError::Status {
                status: 400 | 413 | 422,
                ..
            }
        )
    }

    /// Worth another attempt on the same upstream: the failure is transient and happened
    /// before any answer (connect errors, 429, 502, 503 other than a cold chute, 504).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect
                | UpstreamError::Timeout(TimeoutKind::Connect)
                | UpstreamError::Status {
                    status: 429 | 502 | 503 | 504,
                    ..
                }
        )
    }

    /// Whether the failure counts against the upstream's circuit breaker. Request errors say
    /// nothing about the upstream's health; a cold chute is handled by the cold-start probe.
    pub fn counts_against_breaker(&self) -> bool {
        !self.is_request_error()
            && !matches!(
                self,
                UpstreamError::Cold { .. } | UpstreamError::BreakerOpen
            )
    }

    /// The provider's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            UpstreamError::Status { retry_after, .. } | UpstreamError::Cold { retry_after } => {
                *retry_after
            }
            _ => None,
        }
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> ApiError {
        match e {
            UpstreamError::Connect => ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the model provider could not be reached",
            )
            .with_retry_after(1),
            UpstreamError::Timeout(k) => ApiError::new(
                ErrorCode::UpstreamTimeout,
                format!(
                    "the model provider did not answer in time ({} timeout)",
                    k.as_str()
                ),
            ),
            // Chutes: 429 = infrastructure at capacity, 503 = no instance of the chute is warm.
            UpstreamError::Status {
                status: status @ (429 | 503),
                retry_after,
            } => ApiError::new(
                ErrorCode::UpstreamUnavailable,
                if status == 429 {
                    "the model provider is at capacity; try again shortly"
                } else {
                    "the model is not available right now (cold start); try again shortly"
                },
            )
            .with_retry_after(retry_after.unwrap_or(1).clamp(1, 60)),
            UpstreamError::Cold { retry_after } => ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the model is not available right now (cold start); try again shortly",
            )
            .with_retry_after(retry_after.unwrap_or(5).clamp(1, 60)),
            UpstreamError::BreakerOpen => ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the model provider is failing and no fallback is available; try again shortly",
            )
            .with_retry_after(5),
            // The provider rejected the request itself (most often: input too long for the
            // model's context window). The body is not forwarded: it may echo our key or ids.
            UpstreamError::Status {
                status: 400 | 413 | 422,
                ..
            } => ApiError::new(
                ErrorCode::InvalidRequest,
                "the model provider rejected the request (for example, the input is too long for the model's context window)",
            ),
            // 401/402/404 are our configuration (key, provider balance, model name), not the
            // caller's fault: 502 `upstream_error`. A 402 is still told apart in the metrics
            // (`outcome="payment_required"`) so the operator is alerted to top up.
            UpstreamError::Status { status, .. } => ApiError::new(
                ErrorCode::UpstreamError,
                format!("the model provider failed (status {status})"),
            ),
            UpstreamError::Malformed(_) => ApiError::new(
                ErrorCode::UpstreamError,
                "the model provider sent an answer that could not be understood",
            ),
            UpstreamError::Disconnected => ApiError::new(
                ErrorCode::UpstreamError,
                "the model provider closed the connection before the answer was complete",
            ),
        }
    }
}

/// Timeouts of one upstream.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP/TLS connect.
    pub connect: Duration,
    /// Until the first token.
    pub first_token: Duration,
    /// Between stream chunks.
    pub idle: Duration,
    /// Whole call.
    pub total: Duration,
}

/// A pooled client bound to one provider base URL.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    /// Shared: the client is cloned for every attempt.
    base_url: Arc<str>,
    auth: Option<HeaderValue>,
    timeouts: Timeouts,
    max_answer_bytes: usize,
}

/// The default cap on a whole (non-streamed) upstream answer, bytes.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 16 << 20;

impl UpstreamClient {
    /// A client for `base_url` (e.g. `https://llm.chutes.ai/v1`), sending `api_key` as a
    /// Bearer token when given.
    pub fn new(base_url: &str, api_key: Option<&str>, timeouts: Timeouts) -> Result<Self, String> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            // A provider (or whatever answers at its address) must not be able to point the
            // gateway at another host — an internal address, say — with a redirect: a 3xx is
            // an upstream failure like any other unexpected status.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("affine-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the upstream HTTP client: {e}"))?;
        let auth = match api_key {
            Some(k) => {
                let mut v = HeaderValue::try_from(format!("Bearer {k}"))
                    .map_err(|_| "the upstream API key contains invalid characters".to_string())?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let base_url = base_url.trim_end_matches('/').into();
        Ok(UpstreamClient {
            http,
            base_url,
            auth,
            timeouts,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
        })
    }

    /// This client with whole answers capped at `max` bytes (`upstream.max_answer_bytes`).
    pub fn with_max_answer_bytes(mut self, max: usize) -> Self {
        self.max_answer_bytes = max;
        self
    }

    /// The base URL (without credentials: keys travel in headers, never in the URL).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The configured timeouts.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The `chat/completions` URL of another base URL served with this client's key and
    /// connection pool (the winner's own chute).
    pub fn completions_url_for(base_url: &str) -> String {
        format!("{}/chat/completions", base_url.trim_end_matches('/'))
    }

    /// [`UpstreamClient::completions_url_for`] parsed, once per upstream rather than on every
    /// request (parsing a URL runs IDNA on its host, a measurable share of a request's CPU).
    pub fn completions_endpoint(base_url: &str) -> Result<reqwest::Url, String> {
        reqwest::Url::parse(&Self::completions_url_for(base_url))
            .map_err(|e| format!("invalid upstream URL: {e}"))
    }

    fn post(&self, url: impl reqwest::IntoUrl, body: Bytes) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        if let Some(auth) = &self.auth {
            rb = rb.header(AUTHORIZATION, auth.clone());
        }
        rb
    }

    /// Sends a streaming request to `completions_url` (this client's own chute or another
    /// one's, see [`UpstreamClient::completions_url_for`]) and waits for the response headers
    /// (bounded by `deadline`, the first-token timeout). A non-2xx status is returned as an
    /// error, its body discarded.
    pub async fn open_at(
        &self,
        completions_url: impl reqwest::IntoUrl,
        body: Bytes,
        deadline: Duration,
    ) -> Result<reqwest::Response, UpstreamError> {
        let started = std::time::Instant::now();
        let res =
            match tokio::time::timeout(deadline, self.post(completions_url, body).send()).await {
                Err(_) => return Err(UpstreamError::Timeout(TimeoutKind::FirstToken)),
                Ok(Err(e)) => return Err(map_reqwest(&e)),
                Ok(Ok(res)) => res,
            };
        let status = res.status();
        if !status.is_success() {
            let retry_after = res
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if status.as_u16() == 503 {
                let left = deadline.saturating_sub(started.elapsed());
                if is_cold_chute(res, left.min(COLD_BODY_WAIT)).await {
                    return Err(UpstreamError::Cold { retry_after });
                }
            }
            return Err(UpstreamError::Status {
                status: status.as_u16(),
                retry_after,
            });
        }
        Ok(res)
    }

    /// `GET url` with this client's key, within `deadline`: the body of a 2xx answer, at most
    /// `max` bytes (the model list a readiness probe reads).
    pub(crate) async fn get_at(
        &self,
        url: &str,
        max: usize,
        deadline: Duration,
    ) -> Result<Bytes, UpstreamError> {
        let call = async {
            let mut rb = self.http.get(url);
            if let Some(auth) = &self.auth {
                rb = rb.header(AUTHORIZATION, auth.clone());
            }
            let res = rb.send().await.map_err(|e| map_reqwest(&e))?;
            let status = res.status();
            if !status.is_success() {
                return Err(UpstreamError::Status {
                    status: status.as_u16(),
                    retry_after: None,
                });
            }
            read_capped(res, max, deadline).await
        };
        tokio::time::timeout(deadline, call)
            .await
            .unwrap_or(Err(UpstreamError::Timeout(TimeoutKind::Total)))
    }

    /// A non-streaming call to `completions_url` within `timeouts.total`: returns the whole
    /// answer's bytes and when its headers arrived.
    pub async fn complete_at(
        &self,
        completions_url: impl reqwest::IntoUrl,
        body: Bytes,
        timeouts: Timeouts,
    ) -> Result<(Bytes, std::time::Instant), UpstreamError> {
        let total = timeouts.total;
        let call = async {
            let res = self.open_at(completions_url, body, total).await?;
            let headers_at = std::time::Instant::now();
            let bytes = read_capped(res, self.max_answer_bytes, timeouts.idle).await?;
            Ok((bytes, headers_at))
        };
        match tokio::time::timeout(total, call).await {
            Ok(r) => r.map_err(|e| match e {
                // Without streaming the first token *is* the whole answer: report `total`.
                UpstreamError::Timeout(TimeoutKind::FirstToken) => {
                    UpstreamError::Timeout(TimeoutKind::Total)
                }
                other => other,
            }),
            Err(_) => Err(UpstreamError::Timeout(TimeoutKind::Total)),
        }
    }
}

/// Reads a whole answer, refusing one longer than `max` bytes as soon as it is known to be
/// (from `Content-Length`, or while the chunks arrive): a provider — or whatever answers at its
/// address — must not be able to make the gateway buffer without bound. Once the headers are
/// in, the model has finished: a body that falls silent for `idle` is a stalled provider, not
/// a thinking one, and must not hold the request's slot and hold until the total deadline.
async fn read_capped(
    mut res: reqwest::Response,
    max: usize,
    idle: Duration,
) -> Result<Bytes, UpstreamError> {
    let too_large = || UpstreamError::Malformed(format!("answer longer than {max} bytes"));
    let announced = res.content_length().unwrap_or(0);
    if announced > max as u64 {
        return Err(too_large());
    }
    let mut buf = bytes::BytesMut::with_capacity(usize::try_from(announced).unwrap_or(0));
    loop {
        let Ok(chunk) = tokio::time::timeout(idle, res.chunk()).await else {
            return Err(UpstreamError::Timeout(TimeoutKind::Idle));
        };
        match chunk {
            Ok(Some(c)) => {
                if buf.len() + c.len() > max {
                    return Err(too_large());
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) if e.is_timeout() => return Err(UpstreamError::Timeout(TimeoutKind::Total)),
            Err(_) => return Err(UpstreamError::Disconnected),
        }
    }
}

/// How long the body of a 503 may take to arrive before it is judged without it.
const COLD_BODY_WAIT: Duration = Duration::from_secs(1);

/// The most of a 503 body read to tell a cold chute from other unavailability.
const COLD_BODY_MAX: usize = 4096;

/// Whether a 503 answer is Chutes' cold chute (`{"detail": "No instances available …"}`).
/// Only the first few KiB are read, within `wait`; the body is never logged or forwarded.
async fn is_cold_chute(mut res: reqwest::Response, wait: Duration) -> bool {
    let read = async {
        let mut buf = Vec::new();
        while buf.len() < COLD_BODY_MAX {
            match res.chunk().await {
                Ok(Some(c)) => buf.extend_from_slice(&c),
                _ => break,
            }
        }
        buf
    };
    let Ok(buf) = tokio::time::timeout(wait, read).await else {
        return false;
    };
    memchr::memmem::find(&buf, b"No instances available").is_some()
}

/// Installs ring as the process-wide rustls provider. reqwest is built without a default
/// provider so that only ring is compiled in; any other reqwest client in the process (tests,
/// tools) needs this too. Installing twice is harmless: the second call is ignored.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Classifies a reqwest error without ever formatting it (its text contains the URL).
fn map_reqwest(e: &reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        // reqwest only times out here on connect: it has no overall timeout configured.
        UpstreamError::Timeout(TimeoutKind::Connect)
    } else if e.is_connect() {
        UpstreamError::Connect
    } else {
        UpstreamError::Disconnected
    }
}

/// When the next chunk of a stream that started at `started` must arrive: the first-token
/// deadline until something arrived, then the idle deadline from `now`, never past the total.
pub fn next_deadline(
    timeouts: Timeouts,
    started: std::time::Instant,
    anything_yet: bool,
    now: std::time::Instant,
) -> (std::time::Instant, TimeoutKind) {
    let total = started + timeouts.total;
    let (wait, kind) = if anything_yet {
        (now + timeouts.idle, TimeoutKind::Idle)
    } else {
        (started + timeouts.first_token, TimeoutKind::FirstToken)
    };
    if wait < total {
        (wait, kind)
    } else {
        (total, TimeoutKind::Total)
    }
}

/// Reads the next chunk of a streamed body within `deadline`.
pub async fn next_chunk(
    res: &mut reqwest::Response,
    deadline: Duration,
    kind: TimeoutKind,
) -> Result<Option<Bytes>, UpstreamError> {
    match tokio::time::timeout(deadline, res.chunk()).await {
        Err(_) => Err(UpstreamError::Timeout(kind)),
        Ok(Err(_)) => Err(UpstreamError::Disconnected),
        Ok(Ok(c)) => Ok(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_failures_map_to_contract_codes() {
        let code = |e: UpstreamError| ApiError::from(e).code;
        let st = |status| UpstreamError::Status {
            status,
            retry_after: None,
        };
        assert_eq!(code(st(429)), ErrorCode::UpstreamUnavailable);
        assert_eq!(code(st(503)), ErrorCode::UpstreamUnavailable);
        assert_eq!(code(st(500)), ErrorCode::UpstreamError);
        assert_eq!(code(st(502)), ErrorCode::UpstreamError);
        assert_eq!(code(st(401)), ErrorCode::UpstreamError);
        assert_eq!(code(st(402)), ErrorCode::UpstreamError);
        assert_eq!(code(st(404)), ErrorCode::UpstreamError);
        assert_eq!(code(st(400)), ErrorCode::InvalidRequest);
        assert_eq!(
            code(UpstreamError::Malformed("x".into())),
            ErrorCode::UpstreamError
        );
        assert_eq!(code(UpstreamError::Connect), ErrorCode::UpstreamUnavailable);
        for k in [
            TimeoutKind::Connect,
            TimeoutKind::FirstToken,
            TimeoutKind::Idle,
            TimeoutKind::Total,
        ] {
            assert_eq!(code(UpstreamError::Timeout(k)), ErrorCode::UpstreamTimeout);
        }
    }

    #[test]
    fn failure_classes() {
        let st = |status| UpstreamError::Status {
            status,
            retry_after: None,
        };
        assert_eq!(st(402).kind(), "payment_required");
        assert_eq!(UpstreamError::Cold { retry_after: None }.kind(), "cold");
        let cold = ApiError::from(UpstreamError::Cold {
            retry_after: Some(3),
        });
        assert_eq!(cold.code, ErrorCode::UpstreamUnavailable);
        assert_eq!(cold.retry_after_secs, Some(3));
        assert_eq!(
            ApiError::from(UpstreamError::BreakerOpen).code,
            ErrorCode::UpstreamUnavailable
        );
        for s in [429, 502, 503, 504] {
            assert!(st(s).is_retryable(), "{s}");
        }
        assert!(UpstreamError::Connect.is_retryable());
        assert!(UpstreamError::Timeout(TimeoutKind::Connect).is_retryable());
        for e in [
            st(400),
            st(401),
            st(402),
            st(500),
            UpstreamError::Cold { retry_after: None },
            UpstreamError::Timeout(TimeoutKind::FirstToken),
            UpstreamError::Disconnected,
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
        for s in [400, 413, 422] {
            assert!(st(s).is_request_error());
            assert!(!st(s).counts_against_breaker());
        }
        assert!(st(500).counts_against_breaker());
        assert!(!UpstreamError::Cold { retry_after: None }.counts_against_breaker());
    }

    #[test]
    fn stream_deadlines_move_from_first_token_to_idle_and_stop_at_total() {
        let t = Timeouts {
            connect: Duration::from_secs(1),
            first_token: Duration::from_secs(10),
            idle: Duration::from_secs(3),
            total: Duration::from_secs(20),
        };
        let s = std::time::Instant::now();
        assert_eq!(
            next_deadline(t, s, false, s),
            (s + t.first_token, TimeoutKind::FirstToken)
        );
        let later = s + Duration::from_secs(5);
        assert_eq!(
            next_deadline(t, s, true, later),
            (later + t.idle, TimeoutKind::Idle)
        );
        let late = s + Duration::from_secs(19);
        assert_eq!(
            next_deadline(t, s, true, late),
            (s + t.total, TimeoutKind::Total)
        );
    }

    #[test]
    fn retry_after_is_passed_on_within_bounds() {
        let e = ApiError::from(UpstreamError::Status {
            status: 503,
            retry_after: Some(7),
        });
        assert_eq!(e.retry_after_secs, Some(7));
        let e = ApiError::from(UpstreamError::Status {
            status: 429,
            retry_after: Some(100_000),
        });
        assert_eq!(e.retry_after_secs, Some(60));
    }
}
