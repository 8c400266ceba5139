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
            Ok(b) => Ok(JsonBody(b)),
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

#[cfg(test)]
mod tests {
    use super::*;

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
