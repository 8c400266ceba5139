//! Money fields of request bodies: whole rao as JSON integers, nothing else.
//!
//! A JSON number with a fraction or an exponent (`9007199254740993.0`, `1e9`) is a binary
//! float to any JSON parser, and above 2^53 it cannot hold every whole number: accepting it
//! would credit a rounded amount. So money fields take integers only, from their minimum to
//! 2^63−1 (balances are signed 64-bit). Non-money whole numbers (`max_tokens`, …) keep the
//! lenient `5.0` form of [`crate::api::reason::whole`].

use serde::de::{self, Deserialize, Deserializer};

/// The largest amount of rao a field takes: a balance is an `i64`.
pub const MAX_RAO: u64 = i64::MAX as u64;

/// `n` as rao in `min..=MAX_RAO`, if it is a JSON integer in that range.
fn rao<E: de::Error>(n: &serde_json::Number, min: u64) -> Result<u64, E> {
    // Without serde_json's `arbitrary_precision`, only literal integers that fit 64 bits are
    // kept as integers; anything written with a fraction or exponent, or larger, is a float.
    match n.as_u64() {
        Some(v) if (min..=MAX_RAO).contains(&v) => Ok(v),
        _ => Err(E::custom(format!(
            "expected a whole number of rao from {min} to {MAX_RAO}, written as a JSON integer \
             (no fraction, no exponent), got {n}"
        ))),
    }
}

/// A positive amount of rao (credits).
pub fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    rao(&serde_json::Number::deserialize(d)?, 1)
}

/// An optional amount of rao, zero allowed (limits).
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?
        .map(|n| rao(&n, 0))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[serde(deserialize_with = "positive")]
        amount: u64,
        #[serde(default, deserialize_with = "optional")]
        limit: Option<u64>,
    }

    fn parse(json: &str) -> Result<Body, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn integers_in_range_are_taken_exactly() {
        let b = parse(r#"{"amount":9007199254740993,"limit":0}"#).unwrap();
        assert_eq!(b.amount, 9_007_199_254_740_993);
        assert_eq!(b.limit, Some(0));
        let b = parse(r#"{"amount":9223372036854775807,"limit":null}"#).unwrap();
        assert_eq!(b.amount, MAX_RAO);
        assert_eq!(b.limit, None);
    }

    #[test]
    fn fractions_exponents_and_out_of_range_are_refused() {
        for bad in [
            r#"{"amount":9007199254740993.0}"#,
            r#"{"amount":5.0}"#,
            r#"{"amount":1e9}"#,
            r#"{"amount":1E3}"#,
            r#"{"amount":0}"#,
            r#"{"amount":-1}"#,
            r#"{"amount":9223372036854775808}"#,
            r#"{"amount":18446744073709551616}"#,
            r#"{"amount":"5"}"#,
            r#"{"amount":1,"limit":2.0}"#,
            r#"{"amount":1,"limit":-1}"#,
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(
                err.contains("JSON integer") || err.contains("invalid type"),
                "{bad}: {err}"
            );
        }
    }
}
