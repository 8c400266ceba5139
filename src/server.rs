//! Building, serving and stopping the gateway.
//!
//! [`Gateway::build`] turns a [`Config`] into a ready application (store connected, upstream
//! client built, the embedded simulator started when no provider key is configured, winner
//! set). [`Gateway::serve`] runs it on a listener until a shutdown future completes, then
//! drains: it stops accepting, lets in-flight requests and streams finish for up to
//! `drain_timeout_secs`, and returns.

mod connections;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::accounts::cache::AccountCache;
use crate::accounts::{self, AccountRecord, AccountUpdate, Billing};
use crate::api::{ModelSource, ReasonLimits};
use crate::auth::Authenticator;
use crate::auth::jwt::{JwtKeys, Scope, now_secs};
use crate::auth::middleware::AuthParts;
use crate::auth::revocation::Revocations;
use crate::config::{Config, Secret};
use crate::http::{self, AppState, state::Inner};
use crate::metering::{Journal, Meter};
use crate::metrics::Metrics;
use crate::quota::Limiter;
use crate::quota::local::IpGuard;
use crate::quota::plans::Plans;
use crate::routing::affine::{Discovery, Gate};
use crate::routing::readiness::Resolver;
use crate::routing::{UpstreamSet, Winner, WinnerHandle};
use crate::store::Store;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// Redis could not be reached.
    #[error("redis: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The embedded simulator could not start.
    #[error("embedded simulator: {0}")]
    Simulator(std::io::Error),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// A built gateway, ready to serve.
pub(crate) struct Gateway {
    state: AppState,
    /// Keeps the embedded simulator running for as long as the gateway lives.
    simulator: Option<chutes_sim::SimHandle>,
    /// The embedded simulated chain (with the embedded simulator, when `[chain]` is unset).
    chain_sim: Option<(chain_sim::ChainSim, chain_sim::Listener)>,
    /// Background tasks that live as long as the gateway serves.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Where `GET /metrics` is served alone (`server.metrics_listen`), once bound.
    metrics_listener: Option<TcpListener>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("state", &self.state)
            .field("simulator", &self.simulator.as_ref().map(|s| s.addr()))
            .field("chain_sim", &self.chain_sim.as_ref().map(|(_, l)| l.url()))
            .finish()
    }
}

impl Gateway {
    /// Connects to the store, builds the upstream client and sets the initial winner.
    pub async fn build(config: Config) -> Result<Gateway, StartError> {
        for w in config.warnings() {
            tracing::warn!("{w}");
        }
        let metrics = Metrics::new();
        let mut store =
            match Store::from_config(&config.redis, config.redis.command_timeout()).await? {
                Some(store) => store,
                None => Store::memory(&config.redis.key_prefix),
            };
        store.instrument(&metrics);

        let mut config = config;
        let (simulator, upstream_url, api_key) = if config.uses_simulator() {
            let secret = config.winner.webhook_secret.as_ref().map_or_else(
                || uuid::Uuid::new_v4().simple().to_string(),
                |s| s.expose().to_owned(),
            );
            let sim = chutes_sim::Sim::start(chutes_sim::SimConfig {
                webhook_secret: Some(secret.clone()),
                deploy_delay: EMBEDDED_DEPLOY_DELAY,
                ..chutes_sim::SimConfig::default()
            })
            .await
            .map_err(StartError::Simulator)?;
            let url = sim.base_url();
            loud_simulator_warning(&url);
            embedded_champion_cycle(&mut config, &sim, secret);
            (Some(sim), url, None)
        } else {
            (
                None,
                config.upstream.url.clone(),
                config
                    .upstream
                    .api_key
                    .as_ref()
                    .map(|k| k.expose().to_owned()),
            )
        };
        // `[[serving]]` rules naming `api_key_env` read it from the process environment
        // when the configuration was built without `Config::load` (which reads it itself).
        config
            .resolve_serving_keys(|k| std::env::var(k).ok())
            .map_err(|e| StartError::Config(e.to_string()))?;
        let api_key = api_key.map(Secret::new);

        let fixed = match &config.winner.model {
            Some(spec) => {
                Some(Winner::from_spec(spec, ModelSource::Static).map_err(StartError::Config)?)
            }
            None => {
                tracing::info!("no static winner: following Affine's champion (and runtime pins)");
                None
            }
        };

        let chain_sim = if simulator.is_some() && config.chain.is_none() {
            Some(
                embedded_chain(&mut config)
                    .await
                    .map_err(StartError::Simulator)?,
            )
        } else {
            None
        };
        let chain =
            crate::chain::service::Chain::new(&config, &metrics).map_err(StartError::Config)?;
        let membership = chain.as_ref().map(|c| Arc::clone(&c.membership));
        let (auth, revocation_poller) = build_auth(&config, &store, membership).await?;

        let limits = ReasonLimits {
            default_max_tokens: config.reason.default_max_tokens,
            max_tokens_limit: config.reason.max_tokens_limit,
        };
        let upstream = Arc::new(
            UpstreamSet::new(&upstream_url, api_key.as_ref(), &config, metrics.clone())
                .map_err(StartError::Config)?,
        );
        let resolver = probe_resolver(upstream.clone());
        let gate =
            Gate::new(&config, resolver, store.clone(), &metrics).map_err(StartError::Config)?;
        let winner = WinnerHandle::new();
        let discovery = Discovery::new(
            winner.clone(),
            metrics.clone(),
            store.clone(),
            fixed,
            Some(upstream.clone()),
            gate,
        );
        let discovery_tasks = discovery.spawn(&config).map_err(StartError::Config)?;
        if simulator.is_some() {
            // The simulator answers at once: a local first run is ready when it listens.
            let deadline = Instant::now() + EMBEDDED_FIRST_WINNER_WAIT;
            while winner.current().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if let Some(w) = winner.current() {
            tracing::info!(model = %w.model.id, revision = ?w.model.revision, "winner");
        }
        let plans = Plans::from_config(&config)
            .map_err(|(field, expected)| StartError::Config(format!("{field}: {expected}")))?;
        let policy = config.metering.policy();
        let mut background = vec![revocation_poller];
        if let Some(c) = &chain {
            background.extend(c.spawn(&store, &metrics));
        }
        let journal = match &store {
            Store::Redis(_) => {
                let path = config.metering.journal_path_for(config.listen);
                let j = Journal::open(&path, metrics.journal_backlog.clone())
                    .map_err(|e| StartError::Config(e.to_string()))?;
                tracing::info!(path = %j.path().display(), "settlement journal");
                if j.backlog() > 0 {
                    tracing::warn!(pending = j.backlog(), path = %j.path().display(), "settlement journal has entries from an earlier run; replaying");
                }
                background.push(j.spawn_replayer(
                    store.clone(),
                    policy,
                    metrics.settlements.clone(),
                ));
                Some(j)
            }
            Store::Memory(_) => None,
        };
        let provider_prices = if plans.any_provider_priced() {
            let prices = provider_prices(&config, &winner, &upstream, api_key, &metrics)?;
            background.push(prices.spawn());
            Some(prices)
        } else {
            None
        };
        let meter = Meter::new(
            store.clone(),
            policy,
            journal,
            metrics.clone(),
            plans.names(),
            provider_prices,
        );
        let limiter = Arc::new(
            Limiter::new(
                store.clone(),
                plans,
                config.quota.on_store_failure,
                Duration::from_secs(config.quota.lease_secs),
                metrics.clone(),
            )
            .with_public_tier(&config.quota.public_tier),
        );
        let ip_guard = IpGuard::new(config.quota.ip_per_second, config.quota.ip_burst);
        let trusted_proxies =
            crate::http::client_ip::TrustedProxies::new(config.server.trusted_networks());
        let state = AppState::new(Inner {
            config,
            store,
            upstream,
            winner,
            discovery,
            metrics,
            limits,
            auth,
            limiter,
            meter,
            ip_guard,
            trusted_proxies,
            stats_days: crate::http::usage::PastDays::default(),
            chain,
        });
        Ok(Gateway {
            state,
            simulator,
            chain_sim,
            background: background.into_iter().chain(discovery_tasks).collect(),
            metrics_listener: None,
        })
    }

    /// Serves `GET /metrics` on `listener` too (and no longer on the main listener, which
    /// the router already knows from `server.metrics_listen`).
    fn with_metrics_listener(mut self, listener: Option<TcpListener>) -> Gateway {
        self.metrics_listener = listener;
        self
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The complete router.
    pub fn router(&self) -> Router {
        http::router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then drains for at most the
    /// configured drain timeout.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let drain = Duration::from_secs(self.state.config.drain_timeout_secs);
        let app = self.router();
        // Scraped until the main listener has drained, then dropped with the other tasks.
        let metrics_task = self.metrics_listener.take().map(|l| {
            let app = http::metrics_router(self.state.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            })
        });
        connections::serve(
            listener,
            app,
            &self.state.config.server,
            self.state.metrics.conn.clone(),
            shutdown,
            drain,
        )
        .await;
        // Settlements run on detached tasks: give the last ones a moment to reach the store
        // (or the journal) before the runtime goes away.
        self.state.meter.flush(Duration::from_secs(5)).await;
        for task in self.background.iter().chain(&metrics_task) {
            task.abort();
        }
        drop(self.simulator);
        drop(self.chain_sim);
        Ok(())
    }
}

/// The provider's prices for provider-priced plans, read from the catalogue of the winner's
/// upstream (its own chute when Affine names one, else the configured URL) with the
/// provider's key. The sources are a list of (base URL, key, model) so the serving map's
/// targets can replace them.
fn provider_prices(
    config: &Config,
    winner: &WinnerHandle,
    upstream: &Arc<UpstreamSet>,
    api_key: Option<Secret>,
    metrics: &Metrics,
) -> Result<Arc<crate::metering::provider::ProviderPrices>, StartError> {
    use crate::metering::provider::{PriceSource, ProviderPrices};
    let winner = winner.clone();
    let upstream = Arc::clone(upstream);
    // The winner's and the pending champion's upstreams, where the serving map puts them (a
    // champion's own chute, on older Affine deployments), so a new champion's price is known
    // before the switch. The catalogue entry read is the repo id's, as Chutes lists it.
    let sources = Arc::new(move || {
        let source = |model: &str, revision: Option<&str>, route: Option<&str>, pending| {
            let (base_url, key) = match route {
                Some(r) => (r.to_string(), api_key.clone()),
                None => {
                    let t = upstream.serving().resolve(model, revision).ok()?;
                    let key = t.key().cloned();
                    (t.base_url, key)
                }
            };
            Some(PriceSource {
                base_url,
                api_key: key,
                model: model.to_string(),
                pending,
            })
        };
        let mut out = Vec::new();
        if let Some(w) = winner.current() {
            out.extend(source(
                &w.model.id,
                w.model.revision.as_deref(),
                w.route.as_deref(),
                false,
            ));
        }
        if let Some(p) = winner.pending() {
            out.extend(source(&p.model, p.revision.as_deref(), None, true));
        }
        out
    });
    ProviderPrices::new(
        sources,
        Duration::from_secs(config.upstream.catalogue_secs),
        metrics.prices.clone(),
    )
    .map_err(StartError::Config)
}

/// How long the dev token printed at start is valid.
pub(crate) const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The credit limit of the `dev` account: 1,000 TAO.
pub(crate) const DEV_CREDIT_LIMIT_RAO: u64 = 1_000 * crate::metering::RAO_PER_TAO;

/// The account the dev token belongs to.
pub(crate) const DEV_ACCOUNT: &str = "dev";

/// Token keys (configured secret, or a random one plus the dev account and token), the
/// receiver hotkey and the revocation mirror with its poller.
async fn build_auth(
    config: &Config,
    store: &Store,
    membership: Option<Arc<crate::chain::membership::Membership>>,
) -> Result<(Authenticator, tokio::task::JoinHandle<()>), StartError> {
    let leeway = config.auth.jwt_leeway();
    let jwt = match &config.jwt_secret {
        Some(secret) => {
            let mut jwt = JwtKeys::new(secret.expose().as_bytes(), leeway);
            if let Some(previous) = &config.jwt_secret_previous {
                jwt = jwt.accepting(previous.expose().as_bytes());
            }
            // Key ids only (they are in every token anyway), so an operator can check that
            // every replica signs with the same secret during a rotation.
            tracing::info!(
                signing_kid = jwt.current_kid(),
                previous_kid = jwt.previous_kid(),
                "bearer token keys"
            );
            jwt
        }
        None => {
            let secret: [u8; 32] = rand::random();
            let jwt = JwtKeys::new(&secret, leeway);
            ensure_dev_account(store).await?;
            let (token, _) = jwt.issue(DEV_ACCOUNT, &[Scope::Reason], DEV_TOKEN_TTL, now_secs());
            // Printed on stdout, once, so a first-time user can copy it; logs go to stderr.
            println!("dev token: {token}");
            jwt
        }
    };
    let revocations = Arc::new(Revocations::new());
    if let Err(e) = revocations.refresh(store, now_secs()).await {
        tracing::warn!(error = %e, "cannot load token revocations yet; retrying in the background");
    }
    let poller = revocations.spawn_poller(store.clone());
    Ok((
        Authenticator::new(AuthParts {
            jwt,
            receiver: config.effective_hotkey().to_string(),
            allow_unregistered: config.allow_unregistered,
            revocations,
            accounts: AccountCache::new(),
            clock: Default::default(),
            membership,
        }),
        poller,
    ))
}

/// Creates the postpaid enterprise account `dev` unless it exists.
async fn ensure_dev_account(store: &Store) -> Result<(), StartError> {
    let existing = accounts::load(store, DEV_ACCOUNT)
        .await
        .map_err(|e| StartError::Config(format!("cannot read the dev account: {}", e.detail)))?;
    if existing.is_none() {
        let rec = AccountRecord::apply(
            DEV_ACCOUNT,
            None,
            AccountUpdate {
                billing: Some(Billing::Postpaid),
                // Postpaid with a wide limit: the dev token works at once; usage is still
                // metered and shows as a negative balance.
                credit_limit_rao: Some(DEV_CREDIT_LIMIT_RAO),
                ..AccountUpdate::default()
            },
            |p| accounts::BUILTIN_PLANS.contains(&p),
        )
        .map_err(|e| StartError::Config(e.detail.to_string()))?;
        accounts::save(store, &rec).await.map_err(|e| {
            StartError::Config(format!("cannot create the dev account: {}", e.detail))
        })?;
    }
    Ok(())
}

/// How long the embedded simulator takes to "deploy" a champion its deploy webhook names.
const EMBEDDED_DEPLOY_DELAY: Duration = Duration::from_secs(5);

/// The longest a gateway on the embedded simulator waits for its first champion before it
/// listens (it takes a few milliseconds).
const EMBEDDED_FIRST_WINNER_WAIT: Duration = Duration::from_secs(5);

/// On the embedded simulator the whole champion cycle runs locally: Affine is the
/// simulator's (`POST {sim}/_sim/crown` names a new champion), its deploy and retire webhooks
/// are the gateway's, and polls and probes are quick enough to watch. Only what the
/// configuration leaves at its default is changed.
fn embedded_champion_cycle(config: &mut Config, sim: &chutes_sim::SimHandle, secret: String) {
    let w = &mut config.winner;
    let defaults = crate::config::WinnerConfig::default();
    if w.affine_api_url == defaults.affine_api_url {
        w.affine_api_url = sim.affine_base_url();
    }
    if w.deploy_webhook.is_none() && w.retire_webhook.is_none() {
        w.deploy_webhook = Some(sim.deploy_webhook_url());
        w.retire_webhook = Some(sim.retire_webhook_url());
    }
    w.webhook_secret = Some(Secret::new(secret));
    if w.poll_secs == defaults.poll_secs {
        w.poll_secs = 2;
    }
    if w.probe_secs == defaults.probe_secs {
        w.probe_secs = 1;
    }
    tracing::warn!(
        "the simulated Affine API names the champion; POST {}/_sim/crown \
         {{\"uid\",\"model\",\"revision\",\"since_block\"}} to watch a champion change",
        sim.base_url().trim_end_matches("/v1")
    );
}

/// How often the embedded chain makes a block.
const EMBEDDED_BLOCK_TIME: Duration = Duration::from_secs(2);

/// On the embedded simulator the chain is simulated too: a node making a block every
/// [`EMBEDDED_BLOCK_TIME`], netuid 1 as recorded on mainnet, and a dev deposit address, so a
/// first run can link a coldkey and watch a transfer (`POST {chain}/_chain/transfer`) credit it.
async fn embedded_chain(
    config: &mut Config,
) -> Result<(chain_sim::ChainSim, chain_sim::Listener), std::io::Error> {
    use sp_core::Pair as _;
    let sim = chain_sim::ChainSim::new();
    sim.start_block_production(EMBEDDED_BLOCK_TIME);
    let node = sim.serve(chain_sim::Role::Archive).await?;
    let deposit = sp_core::sr25519::Pair::from_string("//AffineDeposit", None)
        .map(|p| crate::auth::ss58::encode42(&p.public().0))
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    let mut netuids: Vec<u16> = config
        .subnets
        .keys()
        .filter_map(|k| k.parse().ok())
        .collect();
    netuids.push(1);
    config.chain = Some(crate::config::ChainConfig {
        endpoints: vec![node.url()],
        netuids,
        deposit_address: Some(deposit.clone()),
        metagraph_secs: 10,
        max_age_secs: 60,
        requests_per_second: 100,
        deposit_poll_secs: 2,
        ..crate::config::ChainConfig::default()
    });
    tracing::warn!(
        "SIMULATED CHAIN at {}: deposit address {deposit}; POST {}/_chain/transfer \
         {{\"from\",\"to\",\"amount\"}} sends TAO (in rao) from a linked coldkey",
        node.url(),
        node.url()
    );
    Ok((sim, node))
}

fn loud_simulator_warning(url: &str) {
    let line = "*".repeat(78);
    tracing::warn!("{line}");
    tracing::warn!("SIMULATED UPSTREAM: no CHUTES_API_KEY is set, so answers come from the");
    tracing::warn!("built-in Chutes simulator at {url}, not from a real model.");
    tracing::warn!("Set CHUTES_API_KEY (and GATEWAY_WINNER) to serve the real Affine winner.");
    tracing::warn!("{line}");
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Checks what the configuration alone cannot: the plans and the subnet mapping resolve
/// (`affine-gateway check-config` and every command that loads a configuration run it; the
/// gateway resolves them again at start).
pub fn check(config: &Config) -> Result<(), crate::config::ConfigError> {
    crate::quota::plans::Plans::check(config).map(|_| ())
}

/// `affine-gateway serve`: builds, binds the configured address and serves until a signal.
pub async fn run(config: Config) -> Result<(), StartError> {
    connections::raise_nofile_limit();
    let addr = config.listen;
    let metrics_addr = config.server.metrics_listen;
    let gateway = Gateway::build(config).await?;
    let listener = bind(addr).await?;
    let metrics_listener = match metrics_addr {
        Some(m) => {
            let l = bind(m).await?;
            tracing::info!(addr = %m, "metrics on http://{m}/metrics");
            Some(l)
        }
        None => None,
    };
    tracing::info!(%addr, "affine-gateway listening on http://{addr}");
    gateway
        .with_metrics_listener(metrics_listener)
        .serve(listener, shutdown_signal())
        .await
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// A gateway serving in the background on an ephemeral loopback port (tests, load tests).
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves `/metrics` alone, when `server.metrics_listen` is set (then on an
    /// ephemeral loopback port too, whatever the configured address).
    pub metrics_addr: Option<SocketAddr>,
    /// Its shared state (store, limiter, meter…), for tests that look inside.
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), StartError>>,
}

impl Running {
    /// Builds and starts a gateway on `127.0.0.1:0`.
    pub async fn start(config: Config) -> Result<Running, StartError> {
        let wants_metrics_listener = config.server.metrics_listen.is_some();
        let gateway = Gateway::build(config).await?;
        let state = gateway.state().clone();
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let listener = bind(loopback).await?;
        let addr = listener.local_addr().map_err(StartError::Serve)?;
        let (gateway, metrics_addr) = if wants_metrics_listener {
            let l = bind(loopback).await?;
            let at = l.local_addr().map_err(StartError::Serve)?;
            (gateway.with_metrics_listener(Some(l)), Some(at))
        } else {
            (gateway, None)
        };
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(gateway.serve(listener, async move {
            let _ = rx.await;
        }));
        Ok(Running {
            addr,
            metrics_addr,
            state,
            shutdown: Some(tx),
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down gracefully and waits until serving has ended.
    pub async fn stop(mut self) -> Result<(), StartError> {
        self.begin_shutdown();
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(StartError::Serve(std::io::Error::other(e))),
        }
    }

    /// Waits for the server task to end (after [`Running::begin_shutdown`]).
    pub async fn join(mut self) -> Result<(), StartError> {
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(StartError::Serve(std::io::Error::other(e))),
        }
    }
}

/// Sets up logging: `RUST_LOG` filter (default `info`), JSON lines when asked.
pub fn init_tracing(format: crate::config::LogFormat) {
    crate::telemetry::init(format);
}

/// Where the readiness gate probes a champion: where the serving map serves it (or the
/// champion's own chute), with that rule's client and model name.
fn probe_resolver(upstreams: Arc<UpstreamSet>) -> Resolver {
    Arc::new(move |w: &Winner| upstreams.probe_target(w))
}

/// `affine-gateway healthcheck`: whether the gateway configured by `config` answers
/// `GET /healthz` with 200 within `timeout`. For container health checks in images without a
/// shell or curl (the distroless runtime image): the probe is the binary itself. An
/// unspecified listen address (`0.0.0.0`, `[::]`) is probed on loopback, where the process is
/// reachable from inside its own container.
pub fn healthcheck(config: &Config, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let fail = |what: &str, e: std::io::Error| format!("{what} http://{addr}/healthz: {e}");
    let mut conn = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| fail("cannot connect to", e))?;
    conn.set_read_timeout(Some(timeout))
        .and_then(|()| conn.set_write_timeout(Some(timeout)))
        .map_err(|e| fail("cannot probe", e))?;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| fail("cannot send to", e))?;
    // The status line is all that matters; the body is a few bytes.
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < head.len() {
        match conn.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(fail("no answer from", e)),
        }
    }
    let status = String::from_utf8_lossy(&head[..got]);
    let status = status.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.1 200 ") || status.starts_with("HTTP/1.0 200 ") {
        Ok(())
    } else {
        Err(format!("http://{addr}/healthz answered {status:?}"))
    }
}
