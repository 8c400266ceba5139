//! The HTTP side: routes, handlers, and the [`Sim`] / [`SimHandle`] lifecycle.
//!
//! `POST /v1/chat/completions` runs these steps in order; the first that answers wins:
//! 1. Number the request (1-based since the config was installed; triggers and text use it)
//!    and record it.
//! 2. Missing or wrong `Authorization` when a key is required: 401 with the fixture body.
//! 3. Malformed JSON, wrong field types, no messages or no model: 400 `{"detail": …}`.
//! 4. With [`Catalogue::Strict`](crate::Catalogue) (the default), a model the catalogue does
//!    not serve now: 404 `{"detail": "model not found: {model}"}`.
//! 5. The configured fault, if its trigger fires for this request number.
//! 6. The answer, after `ttft`: JSON, or an SSE stream whose headers go out at once and whose
//!    first event waits for `ttft`.
//!
//! Every chat answer, error or not, carries `X-Chutes-InvocationID`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use bytes::Bytes;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::body::{self, End, Once, Plan};
use crate::catalogue::{Models, Outcome, ServedModel};
use crate::config::{Catalogue, FaultKind, SimConfig};
use crate::fixtures;
use crate::record::{RecordedRequest, Recorder};
use crate::render::{self, Answer, AnswerSpec};
use crate::request::ChatRequest;
use crate::stats::{Counters, InFlight, SimStats};
use crate::text;
use crate::webhook::{self, WebhookBody, WebhookCall, WebhookKind};

/// How long [`SimHandle::shutdown`] waits for open connections before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Chutes names the header this way; HTTP header names are case-insensitive anyway.
const INVOCATION_ID: &str = "x-chutes-invocationid";

/// Answer body of [`FaultKind::Garbage`] without streaming: what a proxy in front of a broken
/// upstream sends, labelled as JSON.
const GARBAGE_JSON: &str =
    "<html><body><h1>502 Bad Gateway</h1>naïve proxy — upstream π≈3</body></html>\n";

/// Answer body of [`FaultKind::Garbage`] with streaming: SSE framing is intact, the data is not
/// JSON, then the stream ends normally so only the JSON handling is tested.
const GARBAGE_SSE: &str = "data: {\"id\":\"chatcmpl-garbage\",\"choices\":[{\"delta\":{\"content\":\"unterminated\n\ndata: <html>502 Bad Gateway — ✓</html>\n\ndata: not json at all\n\ndata: [DONE]\n\n";

/// A config plus what is derived from it once, so requests only read.
#[derive(Debug)]
struct Active {
    config: SimConfig,
    /// The primary model as a JSON string literal, spliced into its answers.
    model_json: String,
    /// `Bearer {key}` when a key is required.
    expected_auth: Option<String>,
    /// Gap between streamed tokens.
    interval: Option<Duration>,
    /// Chat completions since this config was installed; numbers requests for triggers and text.
    chat_requests: AtomicU64,
}

impl Active {
    fn new(config: SimConfig) -> Self {
        let interval = (config.tokens_per_sec > 0.0 && config.tokens_per_sec.is_finite())
            .then(|| Duration::from_secs_f64(1.0 / config.tokens_per_sec));
        Self {
            model_json: render::json_string(&config.model),
            expected_auth: config
                .require_api_key
                .as_ref()
                .map(|k| format!("Bearer {k}")),
            interval,
            chat_requests: AtomicU64::new(0),
            config,
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        self.expected_auth.as_ref().is_none_or(|expected| {
            headers
                .get(header::AUTHORIZATION)
                .is_some_and(|got| got.as_bytes() == expected.as_bytes())
        })
    }
}

/// State shared by all handlers, and the controls tests use (also reachable on a
/// [`SimHandle`], which dereferences to it).
///
/// Besides the [`SimConfig`], it holds what outlives a config change: the model catalogue
/// (served models, deploys in their delay, prices), the webhook calls and the Affine API.
#[derive(Debug)]
pub struct SimState {
    active: RwLock<Arc<Active>>,
    counters: Arc<Counters>,
    /// `GET /v1/models` apart from the chat counters: background reads of the list
    /// (readiness probes, prices) are not what a test counts as requests sent upstream.
    listing_counters: Arc<Counters>,
    recorder: Recorder,
    shutdown: watch::Receiver<bool>,
    affine: crate::affine::AffineSim,
    models: Models,
    models_requests: AtomicU64,
    webhooks: Recorder<WebhookCall>,
    failing_webhooks: AtomicU64,
    started: Instant,
}

impl SimState {
    /// State for [`router`]; `shutdown` turning true ends stalled and paced responses.
    pub fn new(config: SimConfig, shutdown: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(Self {
            models: Models::new(&config.model),
            active: RwLock::new(Arc::new(Active::new(config))),
            counters: Arc::default(),
            listing_counters: Arc::default(),
            recorder: Recorder::default(),
            shutdown,
            affine: crate::affine::AffineSim::default(),
            models_requests: AtomicU64::new(0),
            webhooks: Recorder::default(),
            failing_webhooks: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    fn active(&self) -> Arc<Active> {
        // Writers only swap an Arc, so a poisoned lock still holds a valid config.
        Arc::clone(
            &self
                .active
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Installs `config` for the next request; restarts request numbering for triggers and text.
    /// A `model` other than the installed config's is served at once and listed first (the
    /// models served before stay served: retire them with [`SimState::undeploy_model`]).
    pub fn set_config(&self, config: SimConfig) {
        let capacity = config.record_requests;
        let model = config.model.clone();
        let next = Arc::new(Active::new(config));
        let previous = std::mem::replace(
            &mut *self
                .active
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            next,
        );
        if previous.config.model != model {
            self.models.deploy_now(&model, true);
        }
        self.recorder.truncate(capacity);
    }

    /// Serves `model` at once, with no delay and no webhook (a deploy of it in its delay
    /// completes now). Listed after the models already served.
    pub fn deploy_model(&self, model: &str) {
        self.models.deploy_now(model, false);
    }

    /// Takes `model` out of the catalogue (served or deploying), as a retired chute: its chat
    /// completions get 404 under [`Catalogue::Strict`] and `/v1/models` no longer lists it.
    /// Returns whether it was there.
    pub fn undeploy_model(&self, model: &str) -> bool {
        self.models.retire(model) == Outcome::Retired
    }

    /// The models served now, in `/v1/models` order.
    pub fn served_models(&self) -> Vec<ServedModel> {
        self.models.served()
    }

    /// Deploys accepted by the webhook and still in their delay.
    pub fn pending_deploys(&self) -> Vec<ServedModel> {
        self.models.pending()
    }

    /// `GET /v1/models` requests received so far (also those refused for a missing key).
    pub fn models_requests(&self) -> u64 {
        self.models_requests.load(Ordering::Relaxed)
    }

    /// Sets the TAO prices (per 1M tokens) `/v1/models` shows for `model` (served now or
    /// later); the USD values stay the fixture's. Each value is printed verbatim when it is a
    /// JSON number (`"0.00045"`, `"0"`, `"-1"`, `"1e3"`, more digits than an f64 holds), else
    /// as a JSON string, so tests can offer the gateway absurd prices.
    pub fn set_model_price(&self, model: &str, input_tao: &str, output_tao: &str) {
        self.models
            .set_price_raw(model, Some(Models::tao_price(input_tao, output_tao)));
    }

    /// Sets the whole `price` field of `model` to any JSON (wrong shapes included);
    /// `Value::Null` leaves the field out, as a provider that does not publish prices.
    pub fn set_model_price_json(&self, model: &str, price: Value) {
        let raw = (!price.is_null()).then(|| price.to_string());
        self.models.set_price_raw(model, raw);
    }

    /// The next `n` webhook calls answer 500 (after being recorded), whatever they carry;
    /// replaces any count still pending. For the gateway's retries.
    pub fn fail_webhooks(&self, n: u64) {
        self.failing_webhooks.store(n, Ordering::Relaxed);
    }

    /// Webhook calls received (the latest 1024), oldest first.
    pub fn webhooks(&self) -> Vec<WebhookCall> {
        self.webhooks.snapshot()
    }

    /// Counter snapshot.
    pub fn stats(&self) -> SimStats {
        self.counters.snapshot()
    }

    /// Recorded requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorder.snapshot()
    }

    /// The simulated Affine API.
    pub fn affine(&self) -> &crate::affine::AffineSim {
        &self.affine
    }
}

/// The simulator's routes over `state`, for embedding in another server.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        // A chute's own base URL (`https://{slug}.chutes.ai/v1` in production), so tests can
        // see which chute a request went to (the path is recorded).
        .route("/c/{slug}/v1/chat/completions", post(chat_completions))
        .route("/c/{slug}/v1/models", get(models))
        .route("/api/v1/rank/current", get(crate::affine::rank_current))
        .route("/api/v1/scores/latest", get(crate::affine::scores_latest))
        .route("/api/v1/miners/uid/{uid}", get(crate::affine::miner))
        .route("/_sim/stats", get(sim_stats))
        .route("/_sim/requests", get(sim_requests))
        .route("/_sim/webhooks", get(sim_webhooks))
        .route("/_sim/deploy", post(webhook_call))
        .route("/_sim/retire", post(webhook_call))
        .route("/_sim/crown", post(sim_crown))
        .with_state(state)
}

/// Starts simulators.
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// Serves `config` on an ephemeral port of 127.0.0.1.
    pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Serves `config` on `addr`.
    pub async fn start_on(addr: SocketAddr, config: SimConfig) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let state = SimState::new(config, stop_rx.clone());
        let app = router(Arc::clone(&state));
        let mut signal = stop_rx;
        // Without TCP_NODELAY, each SSE event written after the headers waits for the client's
        // delayed ACK (~40 ms), which would make the simulator the bottleneck of every stream.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "chutes-sim: cannot set TCP_NODELAY");
            }
        });
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { body::shutdown(&mut signal).await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "chutes-sim server stopped with an error");
            }
        });
        Ok(SimHandle {
            addr,
            state,
            stop: stop_tx,
            server: Some(server),
        })
    }
}

/// A running simulator. Dropping it stops the server too (in the background).
///
/// It dereferences to its [`SimState`], so every control (`deploy_model`, `served_models`,
/// `set_model_price`, `fail_webhooks`, `webhooks`, …) is called on the handle directly.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, the OpenAI base URL to give a client.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Takes effect for the next request; restarts request numbering for triggers and text.
    pub fn set_config(&self, config: SimConfig) {
        self.state.set_config(config);
    }

    /// `http://127.0.0.1:PORT/api/v1`: the simulated Affine API's base URL.
    pub fn affine_base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT/_sim/deploy`: the deploy webhook URL to configure in a gateway.
    pub fn deploy_webhook_url(&self) -> String {
        format!("http://{}/_sim/deploy", self.addr)
    }

    /// `http://127.0.0.1:PORT/_sim/retire`: the retire webhook URL to configure in a gateway.
    pub fn retire_webhook_url(&self) -> String {
        format!("http://{}/_sim/retire", self.addr)
    }

    /// `http://127.0.0.1:PORT/c/{slug}/v1`: the template of a chute's own base URL.
    pub fn chute_url_template(&self) -> String {
        format!("http://{}/c/{{slug}}/v1", self.addr)
    }

    /// The simulated Affine API, to change what it answers.
    pub fn affine(&self) -> &crate::affine::AffineSim {
        self.state.affine()
    }

    /// Counter snapshot.
    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    /// The last `record_requests` requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// Stops accepting, ends stalled and paced responses, and waits (up to a few seconds)
    /// for open connections to close.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err()
        {
            tracing::warn!("chutes-sim: connections still open after shutdown grace");
        }
    }
}

impl std::ops::Deref for SimHandle {
    type Target = SimState;

    fn deref(&self) -> &SimState {
        &self.state
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn sim_stats(State(state): State<Arc<SimState>>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&state.stats()).unwrap_or_default(),
    )
}

async fn sim_requests(State(state): State<Arc<SimState>>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&state.requests()).unwrap_or_default(),
    )
}

async fn sim_webhooks(State(state): State<Arc<SimState>>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&state.webhooks()).unwrap_or_default(),
    )
}

/// `POST /_sim/crown` body: a new champion for `/rank/current`.
#[derive(serde::Deserialize)]
struct Crown {
    uid: u16,
    model: String,
    revision: String,
    #[serde(default)]
    since_block: u64,
}

/// `POST /_sim/crown` with `{"uid", "model", "revision", "since_block"}`: Affine names a new
/// champion (see [`crate::affine::AffineSim::crown_rank`]), so a gateway in front of this
/// simulator can be watched through a whole champion change.
async fn sim_crown(State(state): State<Arc<SimState>>, raw: Bytes) -> Response {
    match serde_json::from_slice::<Crown>(&raw) {
        Ok(c) => {
            state
                .affine()
                .crown_rank(c.uid, &c.model, &c.revision, c.since_block);
            json_response(
                StatusCode::OK,
                serde_json::to_vec(&state.affine().rank()).unwrap_or_default(),
            )
        }
        Err(e) => json_response(
            StatusCode::BAD_REQUEST,
            serde_json::to_vec(&serde_json::json!({"detail": e.to_string()})).unwrap_or_default(),
        ),
    }
}

/// `POST /_sim/deploy` and `/_sim/retire`: the steps of [`crate::webhook`]; records the call
/// with the status it answers.
async fn webhook_call(
    State(state): State<Arc<SimState>>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let kind = if uri.path().ends_with("/retire") {
        WebhookKind::Retire
    } else {
        WebhookKind::Deploy
    };
    let headers = &headers;
    let raw = &raw[..];
    let active = state.active();
    let config = &active.config;
    let verified = config
        .webhook_secret
        .as_ref()
        .is_some_and(|secret| webhook::verified(secret.as_bytes(), headers, raw));
    let failing = state
        .failing_webhooks
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok();
    let (status, body) = if failing {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"detail": "Internal Server Error"}),
        )
    } else if config.webhook_secret.is_some() && !verified {
        (
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"detail": "invalid or missing X-Affine-Signature"}),
        )
    } else {
        match serde_json::from_slice::<WebhookBody>(raw) {
            Err(e) => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"detail": format!("invalid webhook body: {e}")}),
            ),
            Ok(call) => {
                let outcome = match kind {
                    WebhookKind::Deploy => state.models.deploy(
                        &call.model,
                        call.revision.as_deref(),
                        config.deploy_delay,
                    ),
                    WebhookKind::Retire => state.models.retire(&call.model),
                };
                (
                    StatusCode::OK,
                    serde_json::json!({
                        "model": call.model, "revision": call.revision, "state": outcome.as_str(),
                    }),
                )
            }
        }
    };
    state.webhooks.push(
        webhook::KEPT_CALLS,
        WebhookCall {
            kind,
            path: uri.path().to_owned(),
            body: serde_json::from_slice(raw)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned())),
            signature: headers
                .get(webhook::SIGNATURE_HEADER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            verified,
            status: status.as_u16(),
            at_ms: u64::try_from(state.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            unix_ms: webhook::unix_ms(),
        },
    );
    json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

async fn models(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    let guard = state.listing_counters.arrive();
    // Counted, not recorded: the gateway reads the list in the background (readiness probes,
    // prices), and the ring is for what callers' requests made it send.
    state.models_requests.fetch_add(1, Ordering::Relaxed);
    let active = state.active();
    if !active.authorized(&headers) {
        return respond(
            StatusCode::UNAUTHORIZED,
            fixtures::ERROR_401.into(),
            None,
            guard,
        );
    }
    respond(StatusCode::OK, state.models.body(), None, guard)
}

async fn chat_completions(
    State(state): State<Arc<SimState>>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let start = Instant::now();
    let guard = state.counters.arrive();
    let active = state.active();
    let n = active.chat_requests.fetch_add(1, Ordering::Relaxed) + 1;
    let config = &active.config;
    let invocation = text::invocation_id(config.seed, n);

    // Recording parses the body into a Value, and the request is then read from that Value
    // rather than parsing the bytes twice.
    let value = (config.record_requests > 0).then(|| {
        let value = if raw.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&raw)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()))
        };
        record(
            &state,
            &active,
            Method::POST,
            uri.path(),
            &headers,
            value.clone(),
        );
        value
    });

    if !active.authorized(&headers) {
        let body = Bytes::from_static(fixtures::ERROR_401.as_bytes());
        return respond(StatusCode::UNAUTHORIZED, body, Some(&invocation), guard);
    }

    let parsed = match &value {
        Some(Value::String(_)) => serde_json::from_slice::<ChatRequest<'_>>(&raw),
        Some(v) => serde::Deserialize::deserialize(v),
        None => serde_json::from_slice::<ChatRequest<'_>>(&raw),
    };
    let request = match parsed {
        Ok(r) => r,
        Err(e) => return bad_request(&format!("invalid request body: {e}"), &invocation, guard),
    };
    if request.messages.is_none_or(|m| m.count == 0) {
        return bad_request("messages must be a non-empty array", &invocation, guard);
    }
    let Some(model) = request.model.as_deref() else {
        return bad_request("model is required", &invocation, guard);
    };
    if config.catalogue == Catalogue::Strict && !state.models.serves(model) {
        let body = serde_json::json!({ "detail": format!("model not found: {model}") });
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        return respond(StatusCode::NOT_FOUND, body, Some(&invocation), guard);
    }

    let fault = config
        .fault
        .kind
        .filter(|_| config.fault.trigger.fires(config.seed, n));
    let stream = request.is_stream();
    // Answers name the model asked for; the primary one's literal is prepared once.
    let other_model;
    let model_json = if model == config.model {
        &active.model_json
    } else {
        other_model = render::json_string(model);
        &other_model
    };

    match fault {
        Some(FaultKind::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = Bytes::from_static(fixtures::error_body(status.as_u16()).as_bytes());
            let mut response = respond(status, body, Some(&invocation), guard);
            if matches!(code, 429 | 503) {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return response;
        }
        Some(FaultKind::Stall) => {
            // The guard stays alive in this future: hyper drops the future when it reads EOF
            // from the client, which counts the disconnect.
            let mut shutdown = state.shutdown.clone();
            body::shutdown(&mut shutdown).await;
            drop(guard);
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        Some(FaultKind::Garbage) => {
            wait_ttft(start, config.ttft).await;
            let (body, content_type) = if stream {
                (GARBAGE_SSE, "text/event-stream")
            } else {
                (GARBAGE_JSON, "application/json")
            };
            let mut response = respond(
                StatusCode::OK,
                Bytes::from_static(body.as_bytes()),
                Some(&invocation),
                guard,
            );
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            return response;
        }
        _ => {}
    }

    let answer = Answer::generate(AnswerSpec {
        seed: config.seed,
        n,
        reasoning_tokens: config.reasoning_tokens,
        output_tokens: config.output_tokens,
        // A template told not to think leaves the reasoning out, as the real model does.
        style: if request.thinking_off() {
            crate::config::ReasoningStyle::None
        } else {
            config.reasoning_style
        },
        limit: request.limit().filter(|_| config.honour_max_tokens),
        prompt_tokens: request.prompt_tokens(),
    });

    if stream {
        let (bytes, ends) = answer.to_sse(model_json, config.delta_chars);
        let (send_events, end) = match fault {
            Some(FaultKind::Disconnect { after_chunks }) => {
                // Never past the usage chunk: the point is a stream without its ending.
                (after_chunks.min(ends.len() - 2), End::Abort)
            }
            Some(FaultKind::StallAfter { after_chunks }) => {
                (after_chunks.min(ends.len() - 1), End::Stall)
            }
            _ => (ends.len(), End::Complete),
        };
        let plan = Plan {
            last_paced: ends.len() - 3,
            body: bytes,
            ends,
            send_events,
            end,
            ttft: config.ttft,
            interval: active.interval,
            fragment: config.fragment_bytes,
        };
        let stream = body::paced(plan, start, guard, state.shutdown.clone());
        let mut response = Response::new(Body::from_stream(stream));
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        insert_invocation(h, &invocation);
        return response;
    }

    wait_ttft(start, config.ttft).await;
    let bytes = answer.to_json(model_json);
    let end = match fault {
        Some(FaultKind::Disconnect { .. }) => End::Abort,
        Some(FaultKind::StallAfter { .. }) => End::Stall,
        _ => return respond(StatusCode::OK, bytes, Some(&invocation), guard),
    };
    // Half the body, announced with the full length, then abort or stall.
    let len = bytes.len();
    let plan = Plan {
        ends: vec![len / 2],
        body: bytes,
        send_events: 1,
        end,
        ttft: Duration::ZERO,
        interval: None,
        last_paced: 0,
        fragment: None,
    };
    let stream = body::paced(plan, start, guard, state.shutdown.clone());
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    insert_invocation(h, &invocation);
    response
}

async fn wait_ttft(start: Instant, ttft: Duration) {
    if !ttft.is_zero() {
        tokio::time::sleep_until(start + ttft).await;
    }
}

fn record(
    state: &SimState,
    active: &Active,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Value,
) {
    let capacity = active.config.record_requests;
    if capacity == 0 {
        return;
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    state.recorder.push(
        capacity,
        RecordedRequest {
            method: method.as_str().to_owned(),
            path: path.to_owned(),
            authorization,
            body,
        },
    );
}

fn bad_request(detail: &str, invocation: &str, guard: InFlight) -> Response {
    let body = serde_json::json!({ "detail": detail });
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    respond(StatusCode::BAD_REQUEST, body, Some(invocation), guard)
}

/// A complete JSON response whose body carries the in-flight guard.
fn respond(status: StatusCode, body: Bytes, invocation: Option<&str>, guard: InFlight) -> Response {
    let len = body.len();
    let mut response = Response::new(Body::from_stream(Once::new(body, guard)));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // The stream body has no size hint; without this hyper would fall back to chunked.
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(id) = invocation {
        insert_invocation(h, id);
    }
    response
}

fn insert_invocation(h: &mut HeaderMap, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert(INVOCATION_ID, v);
    }
}
