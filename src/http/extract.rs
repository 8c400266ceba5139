//! The JSON body extractor.
//!
//! The body is read once into `Bytes` (signature checks will hash exactly these bytes, and
//! the same bytes are parsed once), after checking the content type and the size limit.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::{ApiError, ErrorCode};

/// A raw `application/json` body within the configured size limit.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Bytes);

/// Whether a `Content-Type` value is JSON (`application/json`, optionally with parameters,
/// or an `application/*+json` type).
pub fn is_json_content_type(v: &str) -> bool {
    let essence = v.split(';').next().unwrap_or("").trim();
    let Some((ty, sub)) = essence.split_once('/') else {
        return false;
    };
    ty.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !ct.is_some_and(is_json_content_type) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as `Content-Type: application/json`",
            ));
        }
        match Bytes::from_request(req, state).await {
            Ok(b) => {
                require_object(&b)?;
                Ok(JsonBody(b))
            }
            Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                ErrorCode::BodyTooLarge,
                "the request body is larger than this gateway accepts (GATEWAY_MAX_BODY_BYTES)",
            )),
            Err(_) => Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "the request body could not be read",
            )),
        }
    }
}

/// Wraps the body of `req` so that reading it fails once `timeout` has passed from now; the
/// flag says whether that happened (the stack then answers 408 `request_timeout`, whatever
/// the reader made of the failure).
pub(crate) fn with_body_deadline(req: Request, timeout: Duration) -> (Request, Arc<AtomicBool>) {
    let expired = Arc::new(AtomicBool::new(false));
    let flag = expired.clone();
    let req = req.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Instant::now() + timeout,
            sleep: None,
            expired: flag,
        })
    });
    (req, expired)
}

/// The error a body read gets past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
struct BodyTimedOut;

/// A request body with a deadline for arriving in full. The timer is only armed when the body
/// is first read and not ready, so requests whose body is never read cost no timer.
struct DeadlineBody {
    inner: Body,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.expired.store(true, Ordering::Release);
                Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Every body this API takes is a JSON object. serde would also build a struct from an array
/// (`[null, null]`), so anything that is JSON but not an object is refused here: 400
/// `invalid_request` (and what is not JSON at all is left to the parser: `invalid_json`).
pub fn require_object(body: &[u8]) -> Result<(), ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => Ok(()),
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() => Err(
            ApiError::new(ErrorCode::InvalidRequest, "the body must be a JSON object"),
        ),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_pass() {
        assert!(require_object(b" {\"a\":1}").is_ok());
        assert!(require_object(b"not json").is_ok(), "left to the parser");
        assert!(require_object(b"").is_ok(), "left to the parser");
        for v in [&b"[null,null]"[..], b"\"x\"", b"5", b"null", b"true"] {
            assert_eq!(
                require_object(v).unwrap_err().code,
                ErrorCode::InvalidRequest
            );
        }
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(is_json_content_type("application/merge-patch+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/x-www-form-urlencoded"));
        assert!(!is_json_content_type("application/+json"));
        assert!(!is_json_content_type("json"));
    }
}
