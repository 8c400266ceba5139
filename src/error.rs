//! The one error type of the request path and its rendering.
//!
//! Every failure a caller can see is an [`ApiError`]: a stable machine-readable
//! [`ErrorCode`] (docs/API.md §8) plus a human detail. Handlers return it; its
//! `IntoResponse` only records it in the response extensions, and the
//! [`render_problems`] middleware turns it into the body. Rendering happens there because
//! that is where the request id and the route are known: `/v1/chat/completions` answers in
//! (and its companions `/v1/models` and `/v1/responses`) answer in the OpenAI error shape so existing SDKs
//! understand them, everything else in
//! `application/problem+json` (RFC 9457).

use std::borrow::Cow;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use strum::{IntoStaticStr, VariantArray};
use utoipa::ToSchema;

/// Stable error codes of docs/API.md §8. The serialized name is the public `code`.
// serde (the JSON `code`) and strum (`as_str`, `ALL`) both derive the name from the variant
// with the same snake_case rule; a unit test below holds them equal. (A `//` comment, not a
// doc comment: utoipa would publish it in the OpenAPI document.)
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema, IntoStaticStr, VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    /// The request is well-formed JSON but a value is out of range or of the wrong type.
    InvalidRequest,
    /// The body is not JSON.
    InvalidJson,
    /// The body has a field the schema does not know (refused so typos surface).
    UnknownField,
    /// `max_tokens` is above what the caller's plan allows.
    MaxTokensExceedsPlan,
    /// A recognised field asks for something this gateway does not offer (on
    /// `/v1/responses`: stored state, background mode, tools); the detail names the field.
    UnsupportedParameter,
    /// No credentials were presented.
    AuthMissing,
    /// Credentials were presented but are not well-formed.
    AuthMalformed,
    /// A signature does not verify.
    BadSignature,
    /// A signed request is outside its freshness window.
    StaleRequest,
    /// A signed request was already accepted once.
    ReplayedRequest,
    /// A signed request is bound to another receiver hotkey.
    WrongReceiver,
    /// A bearer token is not a valid token of this gateway.
    TokenInvalid,
    /// A bearer token has expired.
    TokenExpired,
    /// A bearer token was revoked.
    TokenRevoked,
    /// The prepaid balance does not cover the request's worst-case cost.
    InsufficientBalance,
    /// The credentials lack the scope for this route.
    Forbidden,
    /// The request repeats an idempotency key with different content (a credit reference
    /// reused with another amount), or a credit would take a balance past 2^63−1 rao.
    Conflict,
    /// The hotkey is not registered and unregistered callers are not allowed.
    UnregisteredHotkey,
    /// The account is disabled.
    AccountDisabled,
    /// The hotkey is registered in a gated subnet whose metagraph snapshot is too old (or not
    /// read yet) to tell whether it passes the gate: refused until the gateway has a fresh one.
    MembershipUnknown,
    /// The hotkey is registered in a gated subnet but does not pass its gate (validator
    /// permit, minimum stake).
    MembershipRequired,
    /// No such route or resource.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The body is larger than the configured limit.
    BodyTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// 408: the request body did not arrive in full within `server.body_read_timeout_secs`.
    RequestTimeout,
    /// Too many requests in the current window.
    RateLimited,
    /// A token quota is used up.
    QuotaExceeded,
    /// Too many requests in flight at once.
    ConcurrencyLimited,
    /// The upstream answered with a server error or something unparseable.
    UpstreamError,
    /// No winner model is known yet.
    NoWinner,
    /// The upstream is overloaded, cold, or unreachable.
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// A bug or an unexpected condition inside the gateway.
    Internal,
    /// 503: the ledger store (Redis) is unreachable and the request needs it (a prepaid
    /// reservation, or any admission under `fail_closed`).
    StoreUnavailable,
    /// 503: the caller's plan is priced by the model provider and no good provider price for
    /// the model is known yet (the gateway never serves such a request free).
    PriceUnavailable,
}

impl ErrorCode {
    /// The HTTP status this code is always sent with.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidRequest | InvalidJson | UnknownField | MaxTokensExceedsPlan
            | UnsupportedParameter => StatusCode::BAD_REQUEST,
            AuthMissing | AuthMalformed | BadSignature | StaleRequest | ReplayedRequest
            | WrongReceiver | TokenInvalid | TokenExpired | TokenRevoked => {
                StatusCode::UNAUTHORIZED
            }
            InsufficientBalance => StatusCode::PAYMENT_REQUIRED,
            Forbidden | UnregisteredHotkey | AccountDisabled | MembershipUnknown
            | MembershipRequired => StatusCode::FORBIDDEN,
            Conflict => StatusCode::CONFLICT,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            RateLimited | QuotaExceeded | ConcurrencyLimited => StatusCode::TOO_MANY_REQUESTS,
            UpstreamError => StatusCode::BAD_GATEWAY,
            NoWinner | UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            StoreUnavailable | PriceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The public name, as serialized in `code`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A short, fixed summary of the problem type (RFC 9457 `title`).
    pub fn title(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "Invalid request",
            InvalidJson => "Body is not valid JSON",
            UnknownField => "Unknown field",
            MaxTokensExceedsPlan => "max_tokens exceeds the plan's limit",
            UnsupportedParameter => "Unsupported parameter",
            AuthMissing => "Authentication required",
            AuthMalformed => "Malformed credentials",
            BadSignature => "Bad signature",
            StaleRequest => "Stale request",
            ReplayedRequest => "Replayed request",
            WrongReceiver => "Wrong receiver",
            TokenInvalid => "Invalid token",
            TokenExpired => "Token expired",
            TokenRevoked => "Token revoked",
            InsufficientBalance => "Insufficient balance",
            Forbidden => "Forbidden",
            Conflict => "Conflict",
            UnregisteredHotkey => "Unregistered hotkey",
            AccountDisabled => "Account disabled",
            MembershipUnknown => "Subnet membership unknown",
            MembershipRequired => "Subnet gate not passed",
            NotFound => "Not found",
            MethodNotAllowed => "Method not allowed",
            BodyTooLarge => "Body too large",
            UnsupportedMediaType => "Unsupported media type",
            RequestTimeout => "Request timeout",
            RateLimited => "Rate limited",
            QuotaExceeded => "Quota exceeded",
            ConcurrencyLimited => "Too many concurrent requests",
            UpstreamError => "Upstream error",
            NoWinner => "No winner model available",
            UpstreamUnavailable => "Upstream unavailable",
            UpstreamTimeout => "Upstream timeout",
            Internal => "Internal error",
            StoreUnavailable => "Storage unavailable",
            PriceUnavailable => "Price unavailable",
        }
    }

    /// The OpenAI error `type` used on `/v1/chat/completions`.
    pub fn openai_type(self) -> &'static str {
        match self.status().as_u16() {
            400 | 404 | 405 | 408 | 409 | 413 | 415 => "invalid_request_error",
            401 => "authentication_error",
            402 => "insufficient_quota",
            403 => "permission_error",
            429 => "rate_limit_error",
            _ => "server_error",
        }
    }

    /// All codes in declaration order, for documentation and tests.
    pub const ALL: &'static [ErrorCode] = <ErrorCode as VariantArray>::VARIANTS;
}

/// An error on the request path: a code, a detail for humans and, for 429/503, when to retry.
///
/// The detail is written for the caller: it never contains upstream bodies, keys or
/// signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The stable machine-readable code.
    pub code: ErrorCode,
    /// A human explanation specific to this occurrence.
    pub detail: Cow<'static, str>,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// A store failure seen by a request: 503 `store_unavailable` (with `Retry-After`) when
    /// Redis cannot be reached or timed out, 500 `internal` when it refused the operation (a
    /// bug or corrupt data: retrying will not help). Logged here with `context`, so callers do
    /// not log it again; the detail never carries the store's own message.
    pub fn from_store(e: &crate::store::StoreError, context: &'static str) -> Self {
        tracing::error!(error = %e, "{context}");
        match e {
            crate::store::StoreError::Protocol(_) => ApiError::new(
                ErrorCode::Internal,
                format!("{context}: the state store refused the operation"),
            ),
            _ => ApiError::new(
                ErrorCode::StoreUnavailable,
                format!("{context}: the state store is unavailable; try again shortly"),
            )
            .with_retry_after(1),
        }
    }

    /// An error with a detail.
    pub fn new(code: ErrorCode, detail: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            code,
            detail: detail.into(),
            retry_after_secs: None,
        }
    }

    /// Adds a `Retry-After`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The problem object for this error (also used as the `data` of an SSE `error` event).
    pub fn to_problem(&self, request_id: &str) -> Problem {
        Problem {
            type_: format!("/docs#error-{}", self.code.as_str()),
            title: self.code.title(),
            status: self.status().as_u16(),
            detail: self.detail.to_string(),
            code: self.code,
            request_id: request_id.to_owned(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl std::error::Error for ApiError {}

/// RFC 9457 problem details with the gateway's `code` and `request_id` extensions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type (resolves to the docs page's error table).
    #[serde(rename = "type")]
    #[schema(example = "/docs#error-invalid_request")]
    pub type_: String,
    /// Short summary of the problem type.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Stable machine-readable code (docs/API.md §8).
    pub code: ErrorCode,
    /// The request id (also in the `X-Request-Id` header).
    pub request_id: String,
}

/// The OpenAI error shape used on `/v1/chat/completions`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    /// The error.
    pub error: OpenAiError,
}

/// Inner object of [`OpenAiErrorBody`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpenAiError {
    /// Human-readable message.
    pub message: String,
    /// OpenAI error type (`invalid_request_error`, `rate_limit_error`, …).
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// The gateway's stable code.
    pub code: ErrorCode,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.status().into_response();
        if let Some(secs) = self.retry_after_secs {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res.extensions_mut().insert(self);
        res
    }
}

/// Renders an [`ApiError`] left in a response's extensions into the body the route expects.
///
/// Sits right inside the request-id layers so every error, including those of the layers
/// below it (body limit, timeout, fallback routes), carries the request id.
pub async fn render_problems(req: Request, next: Next) -> Response {
    let openai = matches!(
        req.uri().path(),
        "/v1/chat/completions" | "/v1/models" | "/v1/responses"
    );
    let request_id = req
        .headers()
        .get(crate::http::request_id::X_REQUEST_ID)
        .cloned();
    let mut res = next.run(req).await;
    let Some(err) = res.extensions_mut().remove::<ApiError>() else {
        return res;
    };
    let rid = request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (body, content_type) = if openai {
        let body = OpenAiErrorBody {
            error: OpenAiError {
                message: err.detail.to_string(),
                type_: err.code.openai_type(),
                code: err.code,
            },
        };
        (serde_json::to_vec(&body), "application/json")
    } else {
        (
            serde_json::to_vec(&err.to_problem(rid)),
            "application/problem+json",
        )
    };
    let (mut parts, _) = res.into_parts();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    parts.headers.remove(header::CONTENT_LENGTH);
    // Serializing these plain structs cannot fail; fall back to an empty body rather than panic.
    Response::from_parts(parts, axum::body::Body::from(body.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_to_their_public_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn statuses_follow_the_contract_table() {
        assert_eq!(ErrorCode::UnknownField.status(), 400);
        assert_eq!(ErrorCode::ReplayedRequest.status(), 401);
        assert_eq!(ErrorCode::InsufficientBalance.status(), 402);
        assert_eq!(ErrorCode::AccountDisabled.status(), 403);
        assert_eq!(ErrorCode::BodyTooLarge.status(), 413);
        assert_eq!(ErrorCode::UnsupportedMediaType.status(), 415);
        assert_eq!(ErrorCode::ConcurrencyLimited.status(), 429);
        assert_eq!(ErrorCode::UpstreamError.status(), 502);
        assert_eq!(ErrorCode::NoWinner.status(), 503);
        assert_eq!(ErrorCode::UpstreamUnavailable.status(), 503);
        assert_eq!(ErrorCode::UpstreamTimeout.status(), 504);
    }

    #[test]
    fn problem_carries_code_status_and_request_id() {
        let p = ApiError::new(ErrorCode::InvalidRequest, "x").to_problem("rid-1");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["code"], "invalid_request");
        assert_eq!(v["status"], 400);
        assert_eq!(v["request_id"], "rid-1");
        assert_eq!(v["type"], "/docs#error-invalid_request");
        assert_eq!(v["detail"], "x");
    }
}
