//! The IETF httpapi rate-limit header fields (`RateLimit-Policy`, `RateLimit`) and
//! `Retry-After`.
//!
//! Follows draft-ietf-httpapi-ratelimit-headers-11. Both fields are Structured Field Lists
//! (RFC 9651) of Items whose value is the policy name as an sf-string: `RateLimit-Policy` items
//! carry `q` (quota units), `qu` (quota unit, only when not requests) and `w` (window,
//! seconds); `RateLimit` items carry `r` (remaining units) and `t` (seconds until the quota
//! resets). For example `RateLimit-Policy: "rpm";q=600;w=60` and `RateLimit: "rpm";r=599;t=60`.
//!
//! The values are serialised the way RFC 9651 §4.1 serialises: members separated by `", "`,
//! parameters in a fixed order (`q`, `qu`, `w` — the order of the draft's own examples).
//! The partition key parameter (`pk`) is not sent: our partitions (account, subnet) are
//! implied by the credential, and the draft makes `pk` optional.
//!
//! Beside them, from the same policies, OpenAI's `x-ratelimit-*` fields, which OpenAI SDKs and
//! proxies (LiteLLM, …) read to pace themselves: `x-ratelimit-{limit,remaining,reset}-requests`
//! from the requests-per-minute policy and `…-tokens` from the tokens-per-minute one, the reset
//! written in OpenAI's (Go's) duration format (`1s`, `6m0s`, `1m30.5s`). When the caller is also
//! held to a subnet aggregate, the policy with fewer units left is the one reported, since that
//! is the one that refuses first (the own one on a tie).

use std::fmt::Write as _;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// `x-ratelimit-limit-requests`.
pub const X_RATELIMIT_LIMIT_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-limit-requests");
/// `x-ratelimit-remaining-requests`.
pub const X_RATELIMIT_REMAINING_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-requests");
/// `x-ratelimit-reset-requests`.
pub const X_RATELIMIT_RESET_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-reset-requests");
/// `x-ratelimit-limit-tokens`.
pub const X_RATELIMIT_LIMIT_TOKENS: HeaderName =
    HeaderName::from_static("x-ratelimit-limit-tokens");
/// `x-ratelimit-remaining-tokens`.
pub const X_RATELIMIT_REMAINING_TOKENS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-tokens");
/// `x-ratelimit-reset-tokens`.
pub const X_RATELIMIT_RESET_TOKENS: HeaderName =
    HeaderName::from_static("x-ratelimit-reset-tokens");

/// The largest sf-integer (RFC 9651 §3.3.1 allows at most 15 digits). Larger counts are
/// clamped so a huge configured quota never makes the whole field unparseable for clients.
const SF_INTEGER_MAX: u64 = 999_999_999_999_999;

/// One limit as the headers describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyState {
    /// Policy name, sent as an sf-string (`rpm`, `tpm`, `tpd`, `subnet-rpm`, …).
    pub name: &'static str,
    /// Quota units per window (`q`).
    pub quota: u64,
    /// Window in seconds (`w`); 0 leaves `w` out, since the draft requires a non-zero window
    /// when one is given.
    pub window_secs: u64,
    /// Quota unit (`qu`): `None` for requests, the draft's default unit, so it is not sent.
    pub unit: Option<&'static str>,
    /// Units left (`r`), already clamped at 0 by the caller.
    pub remaining: u64,
    /// Seconds until the quota resets (`t`).
    pub reset_secs: u64,
}

/// Appends `s` as an sf-string. Names and units are our own constants, but escaping (and
/// dropping what an sf-string cannot hold) keeps the field parseable whatever a later plan
/// name contains.
fn push_sf_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
}

/// Appends `;key=value` with the value as an sf-integer.
fn push_int_param(out: &mut String, key: &str, value: u64) {
    // Writing to a String cannot fail.
    let _ = write!(out, ";{key}={}", value.min(SF_INTEGER_MAX));
}

/// Serialises one List member per policy, separated as RFC 9651 serialises Lists.
fn list(
    p: &[PolicyState],
    per_item: usize,
    item: impl Fn(&mut String, &PolicyState),
) -> HeaderValue {
    let mut s = String::with_capacity(per_item * p.len());
    for (i, x) in p.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        push_sf_string(&mut s, x.name);
        item(&mut s, x);
    }
    // Only printable ASCII is ever written above, so this cannot fail; an empty value is the
    // harmless fallback rather than a panic on the request path.
    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static(""))
}

/// `RateLimit-Policy` value for the policies, in order.
pub fn policy_header(p: &[PolicyState]) -> HeaderValue {
    list(p, 48, |s, x| {
        push_int_param(s, "q", x.quota);
        if let Some(u) = x.unit {
            s.push_str(";qu=");
            push_sf_string(s, u);
        }
        if x.window_secs > 0 {
            push_int_param(s, "w", x.window_secs);
        }
    })
}

/// `RateLimit` value for the policies, in order.
pub fn ratelimit_header(p: &[PolicyState]) -> HeaderValue {
    list(p, 32, |s, x| {
        push_int_param(s, "r", x.remaining);
        push_int_param(s, "t", x.reset_secs);
    })
}

/// Inserts both IETF headers and the OpenAI ones, replacing any earlier ones (nothing when `p`
/// is empty: the draft requires `RateLimit-Policy` to be a non-empty List).
pub fn insert(headers: &mut HeaderMap, p: &[PolicyState]) {
    if p.is_empty() {
        return;
    }
    headers.insert(RATELIMIT_POLICY, policy_header(p));
    headers.insert(RATELIMIT, ratelimit_header(p));
    insert_openai(headers, p);
}

/// The policy OpenAI's fields report for one kind (`rpm` or `tpm`): among the caller's own and
/// the subnet's, the one with fewer units left.
fn binding<'a>(p: &'a [PolicyState], own: &str, subnet: &str) -> Option<&'a PolicyState> {
    p.iter()
        .filter(|x| x.name == own || x.name == subnet)
        .min_by_key(|x| (x.remaining, x.name != own))
}

/// Inserts OpenAI's `x-ratelimit-*` fields for whichever of the requests and tokens per
/// minute policies `p` holds (a refusal from the over-limit cache knows only the refusing one).
fn insert_openai(headers: &mut HeaderMap, p: &[PolicyState]) {
    let kinds = [
        (
            binding(p, "rpm", "subnet-rpm"),
            [
                X_RATELIMIT_LIMIT_REQUESTS,
                X_RATELIMIT_REMAINING_REQUESTS,
                X_RATELIMIT_RESET_REQUESTS,
            ],
        ),
        (
            binding(p, "tpm", "subnet-tpm"),
            [
                X_RATELIMIT_LIMIT_TOKENS,
                X_RATELIMIT_REMAINING_TOKENS,
                X_RATELIMIT_RESET_TOKENS,
            ],
        ),
    ];
    for (policy, [limit, remaining, reset]) in kinds {
        let Some(x) = policy else { continue };
        headers.insert(limit, HeaderValue::from(x.quota));
        headers.insert(remaining, HeaderValue::from(x.remaining));
        let d = openai_duration(Duration::from_secs(x.reset_secs));
        // Digits, letters and a dot only: always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&d) {
            headers.insert(reset, v);
        }
    }
}

/// A duration in OpenAI's reset format, which is Go's `time.Duration` string: `0s`, `500ms`,
/// `1s`, `1.5s`, `6m0s`, `1m30.5s`, `2h0m0s` (hours, minutes, then seconds with the fraction's
/// trailing zeros dropped; below one second, `ms`/`µs`/`ns`).
pub fn openai_duration(d: Duration) -> String {
    let total = d.as_nanos();
    if total == 0 {
        return "0s".to_owned();
    }
    if total < 1_000_000_000 {
        // Go writes sub-second durations in the largest unit that is at least 1.
        let (unit, per) = if total < 1_000 {
            ("ns", 1)
        } else if total < 1_000_000 {
            ("\u{b5}s", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", decimal(total / per, total % per, per));
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let sec = decimal(u128::from(s), u128::from(d.subsec_nanos()), 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sec}s"),
        (0, m) => format!("{m}m{sec}s"),
        (h, m) => format!("{h}h{m}m{sec}s"),
    }
}

/// `whole.frac` with `frac` out of `per` (a power of ten), trailing zeros and a bare dot dropped.
fn decimal(whole: u128, frac: u128, per: u128) -> String {
    if frac == 0 {
        return whole.to_string();
    }
    let digits = per.ilog10() as usize;
    let f = format!("{frac:0digits$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// `Retry-After` in whole seconds: rounded up and at least 1, so a client that honours it never
/// comes back before capacity returns (and `0` would invite an immediate retry).
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

    // The examples of draft-ietf-httpapi-ratelimit-headers-11 §3, §3.2 and §4.2. The draft
    // writes Lists without the optional space after the comma; RFC 9651 §4.1.1 serialises it
    // with one, so the multi-policy strings below differ from the draft's by that space only.

    #[test]
    fn draft_single_policy() {
        let x = [p("default", 100, 10, None, 50, 30)];
        assert_eq!(policy_header(&x), r#""default";q=100;w=10"#);
        assert_eq!(ratelimit_header(&x), r#""default";r=50;t=30"#);
    }

    #[test]
    fn draft_multiple_policies() {
        let x = [
            p("burst", 100, 60, None, 0, 0),
            p("daily", 1000, 86_400, None, 0, 0),
        ];
        assert_eq!(
            policy_header(&x),
            r#""burst";q=100;w=60, "daily";q=1000;w=86400"#
        );
        let x = [
            p("permin", 50, 60, None, 0, 0),
            p("perhr", 1000, 3600, None, 0, 0),
        ];
        assert_eq!(
            policy_header(&x),
            r#""permin";q=50;w=60, "perhr";q=1000;w=3600"#
        );
    }

    #[test]
    fn draft_policy_with_a_quota_unit() {
        // The draft's example also carries `pk`, which we never send.
        let x = [p("peruser", 65_535, 10, Some("content-bytes"), 1, 7)];
        assert_eq!(
            policy_header(&x),
            r#""peruser";q=65535;qu="content-bytes";w=10"#
        );
        // §7: a successful response with one unit left in the next 7 seconds.
        assert_eq!(ratelimit_header(&x), r#""peruser";r=1;t=7"#);
    }

    #[test]
    fn our_token_policies_and_zero_remaining() {
        let x = [
            p("rpm", 600, 60, None, 0, 60),
            p("tpm", 2_000_000, 60, Some("tokens"), 0, 1),
        ];
        assert_eq!(
            policy_header(&x),
            r#""rpm";q=600;w=60, "tpm";q=2000000;qu="tokens";w=60"#
        );
        assert_eq!(ratelimit_header(&x), r#""rpm";r=0;t=60, "tpm";r=0;t=1"#);
    }

    #[test]
    fn values_stay_valid_structured_fields() {
        let x = [p("a\"b\\c\u{e9}", u64::MAX, 0, None, u64::MAX, 0)];
        // Quotes and backslashes escaped, non-ASCII dropped, integers clamped to 15 digits,
        // a zero window left out.
        assert_eq!(policy_header(&x), r#""a\"b\\c";q=999999999999999"#);
        assert_eq!(ratelimit_header(&x), r#""a\"b\\c";r=999999999999999;t=0"#);
    }

    #[test]
    fn insert_sets_both_or_nothing() {
        let mut h = HeaderMap::new();
        insert(&mut h, &[]);
        assert!(h.is_empty());
        insert(&mut h, &[p("rpm", 1, 60, None, 1, 60)]);
        insert(&mut h, &[p("rpm", 1, 60, None, 0, 59)]);
        assert_eq!(h.len(), 5, "a second insert replaces, never appends");
        assert_eq!(h[RATELIMIT_POLICY], r#""rpm";q=1;w=60"#);
        assert_eq!(h[RATELIMIT], r#""rpm";r=0;t=59"#);
    }

    #[test]
    fn openai_durations_are_go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(openai_duration(Duration::ZERO), "0s");
        assert_eq!(openai_duration(Duration::from_nanos(7)), "7ns");
        assert_eq!(openai_duration(Duration::from_micros(20)), "20\u{b5}s");
        assert_eq!(openai_duration(ms(500)), "500ms");
        assert_eq!(openai_duration(Duration::from_micros(1_500)), "1.5ms");
        assert_eq!(openai_duration(ms(1000)), "1s");
        assert_eq!(openai_duration(ms(1500)), "1.5s");
        assert_eq!(openai_duration(ms(17_250)), "17.25s");
        assert_eq!(openai_duration(ms(60_000)), "1m0s");
        assert_eq!(openai_duration(ms(90_500)), "1m30.5s");
        assert_eq!(openai_duration(ms(360_000)), "6m0s");
        assert_eq!(openai_duration(ms(7_200_000)), "2h0m0s");
        assert_eq!(openai_duration(ms(86_400_000)), "24h0m0s");
        assert_eq!(openai_duration(ms(3_723_000)), "1h2m3s");
    }

    #[test]
    fn openai_fields_follow_the_ietf_ones() {
        let mut h = HeaderMap::new();
        insert(
            &mut h,
            &[
                p("rpm", 600, 60, None, 599, 60),
                p("tpm", 2_000_000, 60, None, 1_999_000, 1),
                p("tpd", 9_000_000, 86_400, None, 8_000_000, 86_400),
            ],
        );
        assert_eq!(h[X_RATELIMIT_LIMIT_REQUESTS], "600");
        assert_eq!(h[X_RATELIMIT_REMAINING_REQUESTS], "599");
        assert_eq!(h[X_RATELIMIT_RESET_REQUESTS], "1m0s");
        assert_eq!(h[X_RATELIMIT_LIMIT_TOKENS], "2000000");
        assert_eq!(h[X_RATELIMIT_REMAINING_TOKENS], "1999000");
        assert_eq!(h[X_RATELIMIT_RESET_TOKENS], "1s");
    }

    #[test]
    fn openai_fields_report_the_binding_scope() {
        let mut h = HeaderMap::new();
        insert(
            &mut h,
            &[
                p("rpm", 600, 60, None, 500, 60),
                p("tpm", 1_000, 60, None, 10, 6),
                p("subnet-rpm", 6_000, 60, None, 20, 360),
                p("subnet-tpm", 9_000, 60, None, 10, 30),
            ],
        );
        assert_eq!(
            h[X_RATELIMIT_LIMIT_REQUESTS], "6000",
            "the subnet has fewer left"
        );
        assert_eq!(h[X_RATELIMIT_REMAINING_REQUESTS], "20");
        assert_eq!(h[X_RATELIMIT_RESET_REQUESTS], "6m0s");
        assert_eq!(
            h[X_RATELIMIT_LIMIT_TOKENS], "1000",
            "a tie goes to the own plan"
        );
        assert_eq!(h[X_RATELIMIT_RESET_TOKENS], "6s");
        // A cached refusal knows only its requests policy: no token fields then.
        let mut h = HeaderMap::new();
        insert(&mut h, &[p("rpm", 5, 60, None, 0, 42)]);
        assert_eq!(h[X_RATELIMIT_REMAINING_REQUESTS], "0");
        assert_eq!(h[X_RATELIMIT_RESET_REQUESTS], "42s");
        assert!(!h.contains_key(X_RATELIMIT_LIMIT_TOKENS));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(999)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(86_400)), 86_400);
    }
}
