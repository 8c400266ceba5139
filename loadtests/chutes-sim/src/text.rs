//! Deterministic pseudo-random text, ids and coin flips derived from (seed, request number).

use std::fmt::Write as _;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Words the simulated model says. Several are multi-byte (2, 3 and 4 bytes in UTF-8) so that
/// byte-level splitting in the gateway's parsers gets exercised on every answer.
pub const VOCABULARY: &[&str] = &[
    "the",
    "prime",
    "so",
    "check",
    "sum",
    "proof",
    "therefore",
    "π",
    "≈",
    "—",
    "✓",
    "naïve",
    "日本",
    "x²",
    "∑",
    "Lucas-Lehmer",
    "mod",
    "p",
    "is",
    "2^61",
    "café",
    "ε",
    "→",
    "🙂",
    "next",
    "bound",
    "hence",
    "über",
    "Ω(n)",
    "résumé",
];

/// SplitMix64 finaliser over seed and counter: cheap, stateless, and good enough that nearby
/// request numbers give unrelated streams.
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform number in `[0, 1)` for (seed, n).
pub fn unit_f64(seed: u64, n: u64) -> f64 {
    // 53 high bits fill an f64 mantissa exactly.
    (mix(seed, n) >> 11) as f64 / (1u64 << 53) as f64
}

/// `count` words joined by single spaces, drawn from [`VOCABULARY`].
pub fn words(rng: &mut SmallRng, count: usize) -> String {
    let mut out = String::with_capacity(count * 7);
    for i in 0..count {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(VOCABULARY[rng.random_range(0..VOCABULARY.len())]);
    }
    out
}

/// The word generator for request `n`.
pub fn rng_for(seed: u64, n: u64) -> SmallRng {
    SmallRng::seed_from_u64(mix(seed, n))
}

/// 32 lowercase hex digits, the tail of a `chatcmpl-…` id.
pub fn hex_id(seed: u64, n: u64) -> String {
    let mut out = String::with_capacity(32);
    // Writing into a String cannot fail.
    let _ = write!(out, "{:016x}{:016x}", mix(seed, n), mix(!seed, n));
    out
}

/// A UUID-shaped `X-Chutes-InvocationID`.
pub fn invocation_id(seed: u64, n: u64) -> String {
    let hex = hex_id(seed.rotate_left(17), n);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_and_counter_give_same_words() {
        let a = words(&mut rng_for(7, 3), 20);
        let b = words(&mut rng_for(7, 3), 20);
        let c = words(&mut rng_for(7, 4), 20);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.split(' ').count(), 20);
    }

    #[test]
    fn vocabulary_has_multibyte_words_without_spaces() {
        assert!(VOCABULARY.iter().any(|w| w.len() != w.chars().count()));
        assert!(
            VOCABULARY
                .iter()
                .any(|w| w.len() == 4 && w.chars().count() == 1)
        );
        assert!(VOCABULARY.iter().all(|w| !w.is_empty() && !w.contains(' ')));
    }

    #[test]
    fn unit_f64_is_in_range_and_spread() {
        let values: Vec<f64> = (0..1000).map(|n| unit_f64(1, n)).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let below_half = values.iter().filter(|v| **v < 0.5).count();
        assert!((400..600).contains(&below_half), "{below_half}");
    }

    #[test]
    fn invocation_id_is_uuid_shaped() {
        let id = invocation_id(7, 1);
        let lens: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(lens, [8, 4, 4, 4, 12]);
    }
}
