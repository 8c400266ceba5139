//! Request decoding of the caller routes: `/v1/reason`, `/v1/chat/completions` and
//! `/v1/responses`, from the raw body to the checked request.

use crate::api::{ReasonLimits, ReasonRequest};
use crate::error::{ApiError, ErrorCode};
use crate::http::chat_request::ChatPlan;

const LIMITS: ReasonLimits = ReasonLimits {
    default_max_tokens: 256,
    max_tokens_limit: 4096,
};

/// A refused body must be refused with one of the 400 codes the contract names.
fn assert_client_error(e: &ApiError, allowed: &[ErrorCode]) {
    assert!(
        allowed.contains(&e.code),
        "unexpected code {:?}: {}",
        e.code,
        e.detail
    );
}

/// The checks after decoding, shared by `/v1/reason` and `/v1/responses` (which becomes a
/// reason request): an accepted request stays within the plan's limits.
fn check_reason(req: &ReasonRequest) {
    match req.validate(LIMITS) {
        Ok(max_tokens) => {
            assert!((1..=LIMITS.max_tokens_limit).contains(&max_tokens));
            assert!(req.temperature.is_none_or(|t| (0.0..=2.0).contains(&t)));
            assert!(req.top_p.is_none_or(|p| p > 0.0 && p <= 1.0));
        }
        Err(e) => assert_client_error(
            &e,
            &[ErrorCode::InvalidRequest, ErrorCode::MaxTokensExceedsPlan],
        ),
    }
    let _ = req.input_token_estimate();
    let _ = req.wants_reasoning();
}

/// Fuzz body: a `/v1/reason` body.
pub fn reason_request(data: &[u8]) {
    match ReasonRequest::from_slice(data) {
        Ok(req) => check_reason(&req),
        Err(e) => assert_client_error(
            &e,
            &[
                ErrorCode::InvalidJson,
                ErrorCode::UnknownField,
                ErrorCode::InvalidRequest,
            ],
        ),
    }
}

/// Fuzz body: a `/v1/chat/completions` body; an accepted one becomes a provider request that
/// is a JSON object with the admitted `max_tokens` and the caller's messages.
pub fn chat_request(data: &[u8]) {
    let plan = match ChatPlan::parse(data) {
        Ok(plan) => plan,
        Err(e) => {
            return assert_client_error(
                &e,
                &[
                    ErrorCode::InvalidJson,
                    ErrorCode::UnknownField,
                    ErrorCode::InvalidRequest,
                ],
            );
        }
    };
    let stream = plan.stream;
    let body = plan
        .upstream_body("served-model", 77)
        .expect("an accepted request encodes");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("upstream body is JSON");
    assert_eq!(v["model"], "served-model");
    assert_eq!(v["max_tokens"], 77);
    assert_eq!(v["stream"], stream);
    assert!(v["messages"].as_array().is_some_and(|m| !m.is_empty()));
}

/// Fuzz body: a `/v1/responses` body, translated to the reason request it means.
pub fn responses_request(data: &[u8]) {
    match crate::http::responses::parse(data) {
        Ok(parsed) => check_reason(&parsed.reason),
        Err(e) => assert_client_error(
            &e,
            &[
                ErrorCode::InvalidJson,
                ErrorCode::UnknownField,
                ErrorCode::InvalidRequest,
                ErrorCode::UnsupportedParameter,
            ],
        ),
    }
}
