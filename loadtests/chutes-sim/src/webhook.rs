//! The deploy and retire webhooks, as the gateway calls them when Affine crowns a champion:
//! `POST /_sim/deploy` and `POST /_sim/retire` with `{"model", "revision", "uid", "hotkey",
//! "since_block"}` (only `model` and `revision` are read; extra fields are ignored) and
//! `X-Affine-Signature: sha256=<lowercase hex HMAC-SHA256 of the raw body>`.
//!
//! Each call runs these steps; the first that answers wins, and every call is recorded as a
//! [`WebhookCall`] with the status it got:
//! 1. A pending [`SimState::fail_webhooks`](crate::SimState::fail_webhooks) fault: 500.
//! 2. A webhook secret is configured and the signature is missing or wrong: 401.
//! 3. A body that is not a JSON object with a string `model` (and a string or null
//!    `revision`): 400.
//! 4. Deploy: the model is served after [`SimConfig::deploy_delay`](crate::SimConfig), unless
//!    that model@revision is already served or deploying (then nothing changes). Retire: the
//!    model leaves the catalogue. 200 `{"model", "revision", "state"}` with `state` one of
//!    `deploying`, `served`, `retired`, `absent`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use hmac::{KeyInit, Mac};
use serde_json::Value;

/// The signature header the gateway sends.
pub const SIGNATURE_HEADER: &str = "x-affine-signature";

/// Calls kept for [`SimState::webhooks`](crate::SimState::webhooks); older ones are dropped.
pub(crate) const KEPT_CALLS: usize = 1024;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Which webhook was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    /// `POST /_sim/deploy`.
    Deploy,
    /// `POST /_sim/retire`.
    Retire,
}

/// One webhook call as received, with what the simulator answered.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WebhookCall {
    /// Deploy or retire.
    pub kind: WebhookKind,
    /// `/_sim/deploy` or `/_sim/retire`.
    pub path: String,
    /// The JSON body; a string holding the raw text if it is not JSON.
    pub body: Value,
    /// The `X-Affine-Signature` header verbatim, if any.
    pub signature: Option<String>,
    /// Whether the signature is `sha256=` + the lowercase hex HMAC-SHA256 of the raw body
    /// under the configured secret; always `false` without a secret.
    pub verified: bool,
    /// The status the simulator answered.
    pub status: u16,
    /// Milliseconds since the simulator started, on tokio's clock (so paused time shows).
    pub at_ms: u64,
    /// Wall-clock time of the call, Unix milliseconds.
    pub unix_ms: u64,
}

/// The header value for `body` signed with `secret`: `sha256=<lowercase hex>`. What the
/// gateway must send; tests use it to sign their own calls.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `headers` carry a valid signature of `body` under `secret`, compared in constant
/// time (`Mac::verify_slice`).
pub(crate) fn verified(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(hex_sig) = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
    else {
        return false;
    };
    // Only lowercase hex is the documented form; an uppercase signature is a gateway bug.
    if !hex_sig
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return false;
    }
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The fields of a webhook body the simulator acts on.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct WebhookBody {
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) revision: Option<String>,
}

/// Wall-clock Unix milliseconds.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn signatures_verify_only_with_the_right_secret_and_body() {
        let body = br#"{"model":"org/M","revision":"abc"}"#;
        let sig = signature(b"s3cret", body);
        // RFC 4231-style check that this is HMAC-SHA256 and not a plain hash.
        assert_eq!(
            signature(b"key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, HeaderValue::from_str(&sig).unwrap());
        assert!(verified(b"s3cret", &h, body));
        assert!(!verified(b"other", &h, body));
        assert!(!verified(b"s3cret", &h, b"{}"));
        let upper = format!("sha256={}", sig["sha256=".len()..].to_uppercase());
        h.insert(SIGNATURE_HEADER, HeaderValue::from_str(&upper).unwrap());
        assert!(!verified(b"s3cret", &h, body));
        assert!(!verified(b"s3cret", &HeaderMap::new(), body));
    }
}
