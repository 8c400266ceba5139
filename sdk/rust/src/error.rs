//! Errors: the gateway's refusals as [`ApiError`] (its stable `code`), everything else as
//! the other variants of [`Error`].

use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::rate_limit::RateLimit;

/// A refusal or failure the gateway answered with (an RFC 9457 problem, or the OpenAI error
/// shape on `/v1/chat/completions`, `/v1/responses` and `/v1/models`), or the `error` event
/// that ended a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status (for a stream's `error` event, the problem's `status`).
    pub status: u16,
    /// The stable, machine-readable code (`rate_limited`, `insufficient_balance`, …; see
    /// docs/API.md §8). `unknown` when the answer carried none.
    pub code: String,
    /// The human-readable detail (may change between versions; match on `code`).
    pub message: String,
    /// The request id (`X-Request-Id`, also in the problem body).
    pub request_id: Option<String>,
    /// `Retry-After`, when the gateway sent one (429 and some 503/500).
    pub retry_after: Option<Duration>,
    /// The parsed `RateLimit-Policy`/`RateLimit` headers, when sent.
    pub rate_limit: Option<RateLimit>,
}

impl ApiError {
    /// Whether the client may retry this refusal automatically (429 and 503).
    pub fn is_retryable(&self) -> bool {
        matches!(self.status, 429 | 503)
    }

    /// Builds the error from an answer's status, headers and body.
    pub(crate) fn from_response(status: u16, headers: &HeaderMap, body: &[u8]) -> ApiError {
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let (code, message, body_rid) = match &json {
            Some(v) if v.get("error").is_some_and(|e| e.is_object()) => {
                // The OpenAI shape: {"error": {"message", "type", "code"}}.
                let e = &v["error"];
                (str_of(&e["code"]), str_of(&e["message"]), None)
            }
            Some(v) => (
                str_of(&v["code"]),
                str_of(&v["detail"]).or_else(|| str_of(&v["title"])),
                str_of(&v["request_id"]),
            ),
            None => (None, None, None),
        };
        ApiError {
            status,
            code: code.unwrap_or_else(|| "unknown".to_owned()),
            message: message.unwrap_or_else(|| format!("HTTP {status}")),
            request_id: header_str(headers, "x-request-id").or(body_rid),
            retry_after: retry_after(headers),
            rate_limit: RateLimit::from_headers(headers),
        }
    }

    /// Builds the error from a stream's `error` event (a problem object).
    pub(crate) fn from_problem(problem: &serde_json::Value, request_id: Option<String>) -> Self {
        ApiError {
            status: problem["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(500),
            code: str_of(&problem["code"]).unwrap_or_else(|| "unknown".to_owned()),
            message: str_of(&problem["detail"]).unwrap_or_default(),
            request_id: str_of(&problem["request_id"]).or(request_id),
            retry_after: None,
            rate_limit: None,
        }
    }
}

fn str_of(v: &serde_json::Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// A header's value as text, if present and visible ASCII.
pub(crate) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `Retry-After` as whole seconds (the only form the gateway sends).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_str(headers, "retry-after")?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Anything a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway refused or failed the request.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The request could not be sent or the answer not read (connection, TLS, timeout).
    #[error("transport error: {0}")]
    Transport(#[from] reqwest::Error),
    /// The answer was not what the API documents.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The client is misconfigured (a bad base URL, a signed client without receiver, …).
    #[error("client configuration: {0}")]
    Config(String),
    /// A key could not be loaded or cannot do what was asked.
    #[error(transparent)]
    Key(#[from] affine_reason_auth::KeyError),
}

impl Error {
    /// The gateway's error, if this is one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The stable error code, if the gateway answered one.
    pub fn code(&self) -> Option<&str> {
        self.api().map(|e| e.code.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_and_openai_errors_parse() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3".parse().expect("value"));
        headers.insert("x-request-id", "rid-1".parse().expect("value"));
        let problem = br#"{"type":"/docs#error-rate_limited","title":"Rate limited","status":429,
            "detail":"requests per minute","code":"rate_limited","request_id":"rid-1"}"#;
        let e = ApiError::from_response(429, &headers, problem);
        assert_eq!(e.code, "rate_limited");
        assert_eq!(e.message, "requests per minute");
        assert_eq!(e.request_id.as_deref(), Some("rid-1"));
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
        assert!(e.is_retryable());

        let openai = br#"{"error":{"message":"no money","type":"insufficient_quota","code":"insufficient_balance"}}"#;
        let e = ApiError::from_response(402, &HeaderMap::new(), openai);
        assert_eq!(e.code, "insufficient_balance");
        assert_eq!(e.retry_after, None);
        assert!(!e.is_retryable());

        let e = ApiError::from_response(502, &HeaderMap::new(), b"<html>");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("unknown", "HTTP 502")
        );
    }
}
