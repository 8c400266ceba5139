//! The IETF httpapi rate-limit header fields (`RateLimit-Policy`, `RateLimit`) and
//! `Retry-After`.
//!
//! Both fields are Structured Field Lists (RFC 9651) of Items whose value is the policy name
//! as an sf-string: `RateLimit-Policy` items carry `q` (quota units), `w` (window, seconds) and
//! optionally `qu` (quota unit); `RateLimit` items carry `r` (remaining units) and `t`
//! (seconds until the quota resets). For example
//! `RateLimit-Policy: "rpm";q=600;w=60` and `RateLimit: "rpm";r=599;t=60`.

use std::fmt::Write as _;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// One limit as the headers describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyState {
    /// Policy name, sent as an sf-string (`rpm`, `tpm`, `tpd`, `subnet-rpm`, …).
    pub name: &'static str,
    /// Quota units per window (`q`).
    pub quota: u64,
    /// Window in seconds (`w`).
    pub window_secs: u64,
    /// Quota unit (`qu`), when not requests.
    pub unit: Option<&'static str>,
    /// Units left (`r`).
    pub remaining: u64,
    /// Seconds until the quota resets (`t`).
    pub reset_secs: u64,
}

/// `RateLimit-Policy` value.
pub fn policy_header(p: &[PolicyState]) -> HeaderValue {
    let mut s = String::with_capacity(48 * p.len());
    for (i, x) in p.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "\"{}\";q={};w={}", x.name, x.quota, x.window_secs);
        if let Some(u) = x.unit {
            let _ = write!(s, ";qu=\"{u}\"");
        }
    }
    // Names and units are fixed ASCII identifiers: the value is always a valid header.
    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static(""))
}

/// `RateLimit` value.
pub fn ratelimit_header(p: &[PolicyState]) -> HeaderValue {
    let mut s = String::with_capacity(32 * p.len());
    for (i, x) in p.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "\"{}\";r={};t={}", x.name, x.remaining, x.reset_secs);
    }
    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static(""))
}

/// Inserts both headers (nothing when `p` is empty).
pub fn insert(headers: &mut HeaderMap, p: &[PolicyState]) {
    if p.is_empty() {
        return;
    }
    headers.insert(RATELIMIT_POLICY, policy_header(p));
    headers.insert(RATELIMIT, ratelimit_header(p));
}

/// `Retry-After` in whole seconds: rounded up and at least 1, so it is never earlier than the
/// moment capacity returns.
pub fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(
        name: &'static str,
        q: u64,
        w: u64,
        unit: Option<&'static str>,
        r: u64,
        t: u64,
    ) -> PolicyState {
        PolicyState {
            name,
            quota: q,
            window_secs: w,
            unit,
            remaining: r,
            reset_secs: t,
        }
    }

    #[test]
    fn the_contract_example() {
        let x = [p("rpm", 600, 60, None, 599, 60)];
        assert_eq!(policy_header(&x), r#""rpm";q=600;w=60"#);
        assert_eq!(ratelimit_header(&x), r#""rpm";r=599;t=60"#);
    }

    #[test]
    fn the_drafts_examples() {
        // A single policy: 100 units per 60 s, 50 left, resets in 30 s.
        let one = [p("default", 100, 60, None, 50, 30)];
        assert_eq!(policy_header(&one), r#""default";q=100;w=60"#);
        assert_eq!(ratelimit_header(&one), r#""default";r=50;t=30"#);
        // Two policies in one field, and a quota unit.
        let two = [
            p("burst", 100, 60, None, 0, 0),
            p("daily", 1000, 86400, Some("content-bytes"), 900, 3600),
        ];
        assert_eq!(
            policy_header(&two),
            r#""burst";q=100;w=60, "daily";q=1000;w=86400;qu="content-bytes""#
        );
        assert_eq!(
            ratelimit_header(&two),
            r#""burst";r=0;t=0, "daily";r=900;t=3600"#
        );
    }

    #[test]
    fn insert_sets_both_or_nothing() {
        let mut h = HeaderMap::new();
        insert(&mut h, &[]);
        assert!(h.is_empty());
        insert(&mut h, &[p("rpm", 1, 60, None, 0, 60)]);
        assert_eq!(h[RATELIMIT_POLICY], r#""rpm";q=1;w=60"#);
        assert_eq!(h[RATELIMIT], r#""rpm";r=0;t=60"#);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
    }
}
