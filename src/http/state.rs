//! State shared by every handler.

use std::ops::Deref;
use std::sync::Arc;

use crate::api::ReasonLimits;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::routing::affine::Discovery;
use crate::routing::{UpstreamSet, WinnerHandle};
use crate::store::Store;

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The shared parts.
pub struct Inner {
    /// The effective configuration.
    pub(crate) config: Config,
    /// Redis or in-memory state.
    pub store: Store,
    /// The winner's upstream and the fallbacks (retries, breakers).
    pub(crate) upstream: Arc<UpstreamSet>,
    /// The current winner.
    pub(crate) winner: WinnerHandle,
    /// Where the winner comes from (the runtime pin is set through it).
    pub(crate) discovery: Arc<Discovery>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Validation limits for `/v1/reason` (from configuration until plans land).
    pub(crate) limits: ReasonLimits,
    /// Credentials checking.
    pub auth: crate::auth::Authenticator,
    /// Plan limits across replicas.
    pub(crate) limiter: Arc<crate::quota::Limiter>,
    /// Money: tickets, holds' refusals and every settlement.
    pub meter: Arc<crate::metering::Meter>,
    /// Per client IP flood guard.
    pub(crate) ip_guard: crate::quota::local::IpGuard,
    /// Whose forwarded headers name the client (`server.trusted_proxies`).
    pub(crate) trusted_proxies: crate::http::client_ip::TrustedProxies,
    /// `/v1/stats` days that can no longer change, kept so a range costs Redis only today.
    pub(crate) stats_days: crate::http::usage::PastDays,
    /// The chain features (`[chain]`); `None` when they are off.
    pub(crate) chain: Option<Arc<crate::chain::service::Chain>>,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.backend())
            .field("upstream", &self.upstream.base_url())
            .finish_non_exhaustive()
    }
}

impl axum::extract::FromRef<AppState> for crate::auth::middleware::AuthState {
    fn from_ref(st: &AppState) -> Self {
        crate::auth::middleware::AuthState {
            authenticator: st.auth.clone(),
            store: st.store.clone(),
            failures: st.metrics.auth_failures.clone(),
            max_body_bytes: st.config.max_body_bytes,
            replica_clock_skew: st.config.auth.replica_clock_skew(),
        }
    }
}
