//! Prices that follow the provider: the last good catalogue price of each served model.
//!
//! A plan with `pricing = "provider"` charges the serving upstream's own price for the model
//! (`price.input.tao` / `price.output.tao` of its `GET /v1/models` entry, TAO per 1M tokens,
//! converted to rao exactly by [`crate::upstream::catalogue`]) marked up by the plan's
//! `markup_percent` ([`super::marked_up`]). [`ProviderPrices`] reads the catalogues every
//! `upstream.catalogue_secs` (and at once when the set of [`PriceSource`]s changes, e.g. a new
//! winner, or when a request found no price) and publishes the last good price per model
//! atomically (one `ArcSwap` of the whole map), so a request reads a consistent price without
//! a lock.
//!
//! A price is kept only if it is sane: a missing, zero, negative or unparsable price, or one
//! that is 100 times the last good price or more (or a hundredth of it or less), is ignored —
//! the last good price stays in effect — and counted in
//! `agw_provider_price_rejected_total{reason}`. Until a model has a good price, requests on a
//! provider-priced plan are refused (503 `price_unavailable`): they are never served free.
//! `agw_provider_price_last_good_timestamp_seconds` is the last round in which every source
//! had a good price, so an alert sees a stalled poller, an unreachable catalogue or a price
//! that keeps being refused alike.
//!
//! Each replica polls on its own; replicas may so charge different prices for up to one poll
//! interval after the provider changes its price.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::Secret;
use crate::metrics::PriceMetrics;
use crate::upstream::catalogue::{Catalogue, CatalogueClient, CatalogueError, PriceProblem};

pub use crate::upstream::catalogue::ProviderPrice;

/// How long one catalogue read may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the poller checks whether its sources changed or a request asked for a read.
const WAKE_EVERY: Duration = Duration::from_secs(1);

/// A price (old → new) is refused when it moved by this factor or more, either way.
pub const JUMP_FACTOR: u64 = 100;

/// Where one model's price is read: the upstream that serves it (its OpenAI-compatible base
/// URL and key) and the model's id there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceSource {
    /// The upstream's base URL (its catalogue is `{base_url}/models`).
    pub base_url: String,
    /// The upstream's key, sent as a Bearer token.
    pub api_key: Option<Secret>,
    /// The model whose price counts.
    pub model: String,
    /// A champion waiting for its upstream (the readiness gate's pending one): while its
    /// upstream does not list it, it is skipped, not refused.
    pub pending: bool,
}

/// The sources to read now (the serving upstream of the current winner today; the serving
/// map's targets later). Called once a second, so it must be cheap.
pub type Sources = Arc<dyn Fn() -> Vec<PriceSource> + Send + Sync>;

/// What one polling round found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Models whose price was read and kept (new or unchanged).
    pub accepted: Vec<String>,
    /// Models whose price was refused, and why.
    pub rejected: Vec<(String, PriceProblem)>,
    /// Upstreams whose catalogue could not be read (base URL, why).
    pub failed: Vec<(String, CatalogueError)>,
}

/// The last good provider price of each model, and the poller that keeps them.
pub struct ProviderPrices {
    current: ArcSwap<HashMap<String, ProviderPrice>>,
    /// Context windows the catalogues list, for `GET /v1/models`.
    contexts: ArcSwap<HashMap<String, u64>>,
    client: CatalogueClient,
    sources: Sources,
    metrics: PriceMetrics,
    every: Duration,
    /// A request found no price: read at the next wake-up instead of waiting an interval.
    wanted: AtomicBool,
    /// One round at a time (the background poller and tests' explicit polls).
    round: tokio::sync::Mutex<()>,
    /// Whether the last read failed, so an outage is logged once, not every round.
    failing: AtomicBool,
}

impl std::fmt::Debug for ProviderPrices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderPrices")
            .field("models", &self.current.load().len())
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl ProviderPrices {
    /// Prices read from `sources` every `every`, counted in `metrics`. Nothing is read until
    /// [`ProviderPrices::poll`] or [`ProviderPrices::spawn`].
    pub fn new(
        sources: Sources,
        every: Duration,
        metrics: PriceMetrics,
    ) -> Result<Arc<ProviderPrices>, String> {
        Ok(Arc::new(ProviderPrices {
            current: ArcSwap::from_pointee(HashMap::new()),
            contexts: ArcSwap::from_pointee(HashMap::new()),
            client: CatalogueClient::new(FETCH_TIMEOUT)?,
            sources,
            metrics,
            every,
            wanted: AtomicBool::new(false),
            round: tokio::sync::Mutex::new(()),
            failing: AtomicBool::new(false),
        }))
    }

    /// The last good provider price of `model`, if one is known.
    pub fn get(&self, model: &str) -> Option<ProviderPrice> {
        self.current.load().get(model).copied()
    }

    /// The context window the provider's catalogue lists for `model`, once read.
    pub fn context_length(&self, model: &str) -> Option<u64> {
        self.contexts.load().get(model).copied()
    }

    /// Asks for a read at the next wake-up (within a second): a request found no price.
    pub fn want(&self) {
        self.wanted.store(true, Ordering::Relaxed);
    }

    /// Reads every source's catalogue once (one read per distinct upstream) and publishes
    /// the prices that pass the checks.
    pub async fn poll(&self) -> PollReport {
        let _one = self.round.lock().await;
        self.wanted.store(false, Ordering::Relaxed);
        let sources = (self.sources)();
        let mut report = PollReport::default();
        // One read per (base URL, key), in the sources' order.
        let mut reads: Vec<(&str, Option<&Secret>, Result<Catalogue, CatalogueError>)> = Vec::new();
        for s in &sources {
            if reads
                .iter()
                .any(|(u, k, _)| *u == s.base_url && *k == s.api_key.as_ref())
            {
                continue;
            }
            let read = self
                .client
                .fetch(&s.base_url, s.api_key.as_ref().map(Secret::expose))
                .await;
            reads.push((&s.base_url, s.api_key.as_ref(), read));
        }
        let old = self.current.load_full();
        let mut next: HashMap<String, ProviderPrice> = (*old).clone();
        let mut not_yet_listed = std::collections::HashSet::new();
        // The first source that lists a model's context window decides it this round.
        let mut fresh: HashMap<String, u64> = HashMap::new();
        for s in &sources {
            let Some((_, _, read)) = reads
                .iter()
                .find(|(u, k, _)| *u == s.base_url && *k == s.api_key.as_ref())
            else {
                continue;
            };
            let catalogue = match read {
                Ok(c) => c,
                Err(e) => {
                    if !report.failed.iter().any(|(u, _)| *u == s.base_url) {
                        report.failed.push((s.base_url.clone(), e.clone()));
                    }
                    continue;
                }
            };
            if let Some(n) = catalogue
                .models
                .get(&s.model)
                .and_then(|e| e.context_length)
            {
                fresh.entry(s.model.clone()).or_insert(n);
            }
            if s.pending && !catalogue.lists(&s.model) {
                not_yet_listed.insert(s.model.as_str());
                continue;
            }
            // The first source that names a model decides its price this round.
            if report.accepted.contains(&s.model)
                || report.rejected.iter().any(|(m, _)| *m == s.model)
            {
                continue;
            }
            match judge(catalogue.price(&s.model), old.get(&s.model)) {
                Ok(p) => {
                    if old.get(&s.model) != Some(&p) {
                        tracing::info!(model = %s.model, input_rao_per_mtok = p.input_rao_per_mtok, output_rao_per_mtok = p.output_rao_per_mtok, "provider price in effect");
                    }
                    next.insert(s.model.clone(), p);
                    report.accepted.push(s.model.clone());
                }
                Err(problem) => {
                    self.metrics
                        .rejected
                        .with_label_values(&[problem.as_str()])
                        .inc();
                    tracing::warn!(model = %s.model, reason = problem.as_str(), kept = ?old.get(&s.model), "provider price refused; the last good price stays in effect");
                    report.rejected.push((s.model.clone(), problem));
                }
            }
        }
        self.log_reads(&report);
        if !fresh.is_empty() {
            let mut contexts = (**self.contexts.load()).clone();
            contexts.extend(fresh);
            self.contexts.store(Arc::new(contexts));
        }
        if next != *old {
            self.current.store(Arc::new(next));
        }
        // The winner's (first source's) price in effect; 0 while none is known.
        let shown = sources.first().and_then(|first| self.get(&first.model));
        for (direction, rao) in [
            ("input", shown.map_or(0, |p| p.input_rao_per_mtok)),
            ("output", shown.map_or(0, |p| p.output_rao_per_mtok)),
        ] {
            self.metrics
                .rao_per_mtok
                .with_label_values(&[direction])
                .set(i64::try_from(rao).unwrap_or(i64::MAX));
        }
        let models = sources
            .iter()
            .map(|s| s.model.as_str())
            .filter(|m| !not_yet_listed.contains(m))
            .collect::<std::collections::HashSet<_>>()
            .len();
        self.metrics
            .sources
            .set(i64::try_from(models).unwrap_or(i64::MAX));
        if models > 0 && report.accepted.len() == models {
            self.metrics
                .last_good
                .set(i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX));
        }
        report
    }

    fn log_reads(&self, report: &PollReport) {
        if let Some((_, e)) = report.failed.first() {
            if !self.failing.swap(true, Ordering::Relaxed) {
                // The URL may carry a tenant's chute name but never a key; still, the error
                // kind is what the operator needs.
                tracing::warn!(error = %e, kind = e.kind(), "cannot read the provider's model catalogue; the last good prices stay in effect");
            }
        } else if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("the provider's model catalogue reads again");
        }
    }

    /// Polls now and then every `every` (and within a second of a change of sources or a
    /// [`ProviderPrices::want`]), for as long as the task lives.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut last_sources = (me.sources)();
            me.poll().await;
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(WAKE_EVERY).await;
                let sources = (me.sources)();
                let due = last.elapsed() >= me.every
                    || sources != last_sources
                    || me.wanted.load(Ordering::Relaxed);
                if due {
                    me.poll().await;
                    last = Instant::now();
                    last_sources = sources;
                }
            }
        })
    }
}

/// The price to keep, given what the catalogue says and the last good price.
fn judge(
    read: Result<ProviderPrice, PriceProblem>,
    last: Option<&ProviderPrice>,
) -> Result<ProviderPrice, PriceProblem> {
    let p = read?;
    if let Some(last) = last {
        let jumped = |old: u64, new: u64| {
            u128::from(new) >= u128::from(old) * u128::from(JUMP_FACTOR)
                || u128::from(new) * u128::from(JUMP_FACTOR) <= u128::from(old)
        };
        if jumped(last.input_rao_per_mtok, p.input_rao_per_mtok)
            || jumped(last.output_rao_per_mtok, p.output_rao_per_mtok)
        {
            return Err(PriceProblem::Jump);
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(i: u64, o: u64) -> ProviderPrice {
        ProviderPrice {
            input_rao_per_mtok: i,
            output_rao_per_mtok: o,
        }
    }

    #[test]
    fn a_first_price_is_taken_as_it_is() {
        assert_eq!(
            judge(Ok(price(1, 1_000_000)), None),
            Ok(price(1, 1_000_000))
        );
        assert_eq!(
            judge(Err(PriceProblem::Zero), None),
            Err(PriceProblem::Zero)
        );
    }

    #[test]
    fn a_hundredfold_move_either_way_is_a_jump() {
        let last = price(450_000, 1_800_000);
        assert_eq!(
            judge(Ok(price(45_000_000, 1_800_000)), Some(&last)),
            Err(PriceProblem::Jump)
        );
        assert_eq!(
            judge(Ok(price(450_000, 18_000)), Some(&last)),
            Err(PriceProblem::Jump)
        );
        // Just inside the bounds either way.
        assert_eq!(
            judge(Ok(price(44_999_999, 18_001)), Some(&last)),
            Ok(price(44_999_999, 18_001))
        );
        assert_eq!(
            judge(Ok(price(4_501, 1_800_000)), Some(&last)),
            Ok(price(4_501, 1_800_000))
        );
        assert_eq!(
            judge(Ok(price(4_500, 1_800_000)), Some(&last)),
            Err(PriceProblem::Jump)
        );
        // A problem of the read itself wins over the comparison.
        assert_eq!(
            judge(Err(PriceProblem::Negative), Some(&last)),
            Err(PriceProblem::Negative)
        );
    }
}
