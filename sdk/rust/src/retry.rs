//! Bounded automatic retries of 429 and 503 refusals, honouring `Retry-After`.

use std::time::Duration;

use crate::error::ApiError;

/// When the client retries a refused request by itself.
///
/// Only 429 and 503 are retried, after the answer's `Retry-After` (never earlier; without
/// one, after an exponential backoff from [`RetryPolicy::backoff`]). Calls that are not
/// idempotent (`reason`, chat completions, coldkey links) are retried only when
/// [`RetryPolicy::non_idempotent`] is set; a stream is never retried once it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 turns retries off).
    pub max_retries: u32,
    /// A `Retry-After` longer than this is not waited for: the error is returned at once.
    pub max_wait: Duration,
    /// The first wait when the answer has no `Retry-After`; doubled per retry.
    pub backoff: Duration,
    /// Retry non-idempotent calls too. A 429/503 refusal happens before the request is
    /// admitted (nothing was charged), so this is safe for `reason`; it is off by default
    /// because the wait is then the caller's latency.
    pub non_idempotent: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            max_wait: Duration::from_secs(60),
            backoff: Duration::from_millis(500),
            non_idempotent: false,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// How long to wait before attempt `attempts + 1`, or `None` to give up with `err`.
    pub(crate) fn wait(&self, err: &ApiError, attempts: u32, idempotent: bool) -> Option<Duration> {
        if !err.is_retryable() || !(idempotent || self.non_idempotent) {
            return None;
        }
        if attempts > self.max_retries {
            return None;
        }
        let wait = err.retry_after.unwrap_or_else(|| {
            self.backoff
                .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)))
        });
        (wait <= self.max_wait).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, retry_after: Option<u64>) -> ApiError {
        ApiError {
            status,
            code: "x".into(),
            message: String::new(),
            request_id: None,
            retry_after: retry_after.map(Duration::from_secs),
            rate_limit: None,
        }
    }

    #[test]
    fn only_bounded_retries_of_429_and_503() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.wait(&refusal(429, Some(3)), 1, true),
            Some(Duration::from_secs(3))
        );
        assert_eq!(p.wait(&refusal(429, Some(3)), 3, true), None, "bounded");
        assert_eq!(p.wait(&refusal(429, Some(3)), 1, false), None, "POST");
        assert_eq!(p.wait(&refusal(402, None), 1, true), None);
        assert_eq!(p.wait(&refusal(429, Some(3600)), 1, true), None, "too long");
        assert_eq!(
            p.wait(&refusal(503, None), 2, true),
            Some(Duration::from_secs(1))
        );
        let posts = RetryPolicy {
            non_idempotent: true,
            ..RetryPolicy::default()
        };
        assert!(posts.wait(&refusal(503, Some(1)), 1, false).is_some());
        assert_eq!(
            RetryPolicy::none().wait(&refusal(429, Some(1)), 1, true),
            None
        );
    }
}
