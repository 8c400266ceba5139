//! The JSON body extractor.
//!
//! The body is read once into `Bytes` (signature checks will hash exactly these bytes, and
//! the same bytes are parsed once), after checking the content type and the size limit.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};

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
