//! The Chutes fixtures, compiled in so the binary and the gateway's embedded mode need no files.
//!
//! The copies under `fixtures/chutes/` mirror `/work/shared/fixtures/chutes/`; tests compare the
//! simulator's answers against these shapes.

use bytes::Bytes;
use serde_json::Value;

/// `GET /v1/models`.
pub const MODELS: &str = include_str!("../fixtures/chutes/models.json");
/// Non-streaming chat completion with `reasoning_content`.
pub const CHAT_COMPLETION: &str = include_str!("../fixtures/chutes/chat_completion.json");
/// Non-streaming chat completion with inline `<think>` tags.
pub const CHAT_COMPLETION_THINK_TAGS: &str =
    include_str!("../fixtures/chutes/chat_completion_think_tags.json");
/// Streaming chat completion, SSE.
pub const CHAT_COMPLETION_STREAM: &str =
    include_str!("../fixtures/chutes/chat_completion_stream.sse");
/// 401: bad or missing key.
pub const ERROR_401: &str = include_str!("../fixtures/chutes/errors/401_bad_key.json");
/// 402: account without balance.
pub const ERROR_402: &str = include_str!("../fixtures/chutes/errors/402_no_balance.json");
/// 404: unknown model.
pub const ERROR_404: &str = include_str!("../fixtures/chutes/errors/404_model_not_found.json");
/// 429: infrastructure at capacity.
pub const ERROR_429: &str = include_str!("../fixtures/chutes/errors/429_infra_overload.json");
/// 503: no instances (cold chute).
pub const ERROR_503: &str = include_str!("../fixtures/chutes/errors/503_cold_chute.json");

/// FastAPI's body for statuses without a dedicated fixture.
const GENERIC_ERROR: &str = r#"{"detail":"Internal Server Error"}"#;

/// The body Chutes sends with `status`.
pub fn error_body(status: u16) -> &'static str {
    match status {
        401 => ERROR_401,
        402 => ERROR_402,
        404 => ERROR_404,
        429 => ERROR_429,
        503 => ERROR_503,
        _ => GENERIC_ERROR,
    }
}

/// The models list with the first entry renamed to `model`, so clients that pick the first
/// model find the one the simulator serves.
pub fn models_body(model: &str) -> Bytes {
    let renamed = serde_json::from_str::<Value>(MODELS)
        .ok()
        .and_then(|mut v| {
            let first = v.get_mut("data")?.get_mut(0)?.as_object_mut()?;
            first.insert("id".to_owned(), Value::from(model));
            first.insert("root".to_owned(), Value::from(model));
            serde_json::to_vec(&v).ok()
        });
    // The fixture is compiled in and always parses; keep serving it unchanged if it ever stops.
    renamed.map_or_else(|| Bytes::from_static(MODELS.as_bytes()), Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_parses() {
        for text in [
            MODELS,
            CHAT_COMPLETION,
            CHAT_COMPLETION_THINK_TAGS,
            ERROR_401,
            ERROR_402,
            ERROR_404,
            ERROR_429,
            ERROR_503,
            GENERIC_ERROR,
        ] {
            let v: Value = serde_json::from_str(text).expect(text);
            assert!(v.is_object());
        }
    }

    #[test]
    fn models_body_renames_only_the_first_entry() {
        let v: Value = serde_json::from_slice(&models_body("org/M")).expect("json");
        assert_eq!(v["data"][0]["id"], "org/M");
        assert_eq!(v["data"][0]["root"], "org/M");
        assert_eq!(v["data"][1]["id"], "deepseek-ai/DeepSeek-R1-0528");
    }
}
