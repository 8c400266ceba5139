//! `X-Request-Id`: echo a valid incoming id, otherwise make a new UUID.
//!
//! tower-http's `SetRequestId` only fills a *missing* header, so an invalid incoming one is
//! removed first ([`drop_invalid_request_id`]); then `SetRequestId` generates, and
//! `PropagateRequestId` copies the id onto every response.

use axum::extract::Request;
use axum::http::HeaderName;

/// The header name.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id echoed back (docs/API.md §7).
pub const MAX_LEN: usize = 128;

/// Whether an incoming id may be echoed: 1–128 characters of `[A-Za-z0-9._-]`.
pub fn is_valid(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Removes an `X-Request-Id` that may not be echoed (and any duplicates), so a fresh one
/// is generated instead of reflecting arbitrary caller bytes into logs and responses.
pub fn drop_invalid_request_id(mut req: Request) -> Request {
    let headers = req.headers_mut();
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    let keep = match (values.next(), values.next()) {
        (Some(v), None) => is_valid(v.as_bytes()),
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !keep {
        headers.remove(&X_REQUEST_ID);
    }
    req
}

/// The id of a request whose headers went through the request-id layers.
pub fn of(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        assert!(is_valid(b"abc-DEF_1.2"));
        assert!(is_valid(&[b'a'; 128]));
        assert!(!is_valid(&[b'a'; 129]));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"a b"));
        assert!(!is_valid(b"a/b"));
        assert!(!is_valid("é".as_bytes()));
    }
}
