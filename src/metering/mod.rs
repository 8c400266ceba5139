//! What a request costs, in integer rao.
//!
//! Prices are integer rao per million tokens; the cost of a request is rounded up per
//! direction (CONTRACT §5). Balances, holds and the ledger land with issue #4's successor
//! (#5); until then every plan's price is 0 and the `cost` field is present but zero.

use crate::api::Usage;

/// Rao per TAO.
pub const RAO_PER_TAO: u64 = 1_000_000_000;

/// Prices of one plan, in rao per 1M tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prices {
    /// Rao per 1M input tokens.
    pub input_rao_per_mtok: u64,
    /// Rao per 1M output tokens.
    pub output_rao_per_mtok: u64,
}

/// `ceil(tokens × price / 10^6)` without overflow (u128 intermediate); saturates at
/// `u64::MAX`, which no balance can cover.
fn part(tokens: u64, price: u64) -> u64 {
    let v = (tokens as u128 * price as u128).div_ceil(1_000_000);
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Cost of `usage` at `prices`: each direction rounded up separately (CONTRACT §5).
pub fn cost_rao(usage: &Usage, prices: Prices) -> u64 {
    part(usage.input_tokens, prices.input_rao_per_mtok)
        .saturating_add(part(usage.output_tokens, prices.output_rao_per_mtok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(i: u64, o: u64) -> Usage {
        Usage {
            input_tokens: i,
            output_tokens: o,
            reasoning_tokens: 0,
            total_tokens: i.saturating_add(o),
        }
    }

    #[test]
    fn cost_rounds_up_per_direction() {
        let p = Prices {
            input_rao_per_mtok: 500_000,
            output_rao_per_mtok: 2_000_000,
        };
        assert_eq!(cost_rao(&usage(0, 0), p), 0);
        // 1 × 0.5 rao → 1; 1 × 2 rao → 2
        assert_eq!(cost_rao(&usage(1, 1), p), 3);
        assert_eq!(cost_rao(&usage(1_000_000, 1_000_000), p), 2_500_000);
        assert_eq!(cost_rao(&usage(3, 0), p), 2); // 1.5 → 2
        assert_eq!(cost_rao(&usage(5, 7), Prices::default()), 0);
    }

    #[test]
    fn cost_never_overflows() {
        let p = Prices {
            input_rao_per_mtok: u64::MAX,
            output_rao_per_mtok: u64::MAX,
        };
        assert_eq!(cost_rao(&usage(u64::MAX, u64::MAX), p), u64::MAX);
    }
}
