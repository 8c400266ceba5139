//! The retry budget: retries are paid from a token bucket that every request fills by a
//! fraction, so during an outage retries add at most that fraction of extra upstream calls
//! (plus the bucket's small reserve) instead of multiplying the load.

use std::sync::Mutex;

/// Token bucket of retries, per replica.
#[derive(Debug)]
pub struct RetryBudget {
    /// Tokens a request deposits (0.2 for a 20 % budget).
    ratio: f64,
    /// Most tokens held; also the starting balance.
    cap: f64,
    tokens: Mutex<f64>,
}

impl RetryBudget {
    /// A budget of `percent` retries per 100 requests, holding at most `burst` retries.
    pub fn new(percent: u32, burst: u32) -> Self {
        let cap = f64::from(burst);
        RetryBudget {
            ratio: f64::from(percent) / 100.0,
            cap,
            tokens: Mutex::new(cap),
        }
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, f64> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request arrived: it earns a fraction of a retry.
    pub fn deposit(&self) {
        let mut t = self.tokens();
        *t = (*t + self.ratio).min(self.cap.max(1.0));
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        let mut t = self.tokens();
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_capped_at_the_ratio_plus_the_reserve() {
        let b = RetryBudget::new(20, 2);
        let mut retries = 0;
        for _ in 0..100 {
            b.deposit();
            if b.withdraw() {
                retries += 1;
            }
        }
        // 2 in reserve + 20 earned by 100 requests.
        assert!((20..=22).contains(&retries), "{retries}");
    }

    #[test]
    fn a_zero_budget_never_retries() {
        let b = RetryBudget::new(0, 0);
        for _ in 0..10 {
            b.deposit();
            assert!(!b.withdraw());
        }
    }
}
