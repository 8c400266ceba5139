//! The HTTP side: JSON-RPC 2.0 over POST `/`, the `/_chain/…` control routes, [`Role`]s and
//! per-listener faults and request counts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::chain::ChainState;
use crate::{ChainSim, SYSTEM_EVENTS_KEY, SimNeuron, parse_account};

/// How long [`Listener::shutdown`] waits for open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What a listener is: a pruning (lite) node or an archive node over the same chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Answers state queries only for the last `retention` blocks (`head - retention` and
    /// newer); older ones get error 4003 `State already discarded for 0x…`.
    Lite {
        /// Blocks of state kept behind the head.
        retention: u64,
    },
    /// Answers state queries for every block.
    Archive,
}

/// JSON-RPC error codes (Substrate's where it has one).
mod code {
    pub(super) const PARSE: i64 = -32700;
    pub(super) const INVALID_REQUEST: i64 = -32600;
    pub(super) const METHOD_NOT_FOUND: i64 = -32601;
    pub(super) const INVALID_PARAMS: i64 = -32602;
    /// Substrate's client error, e.g. pruned state or an unknown block.
    pub(super) const CLIENT: i64 = 4003;
}

struct RpcError {
    code: i64,
    message: String,
}

fn err(code: i64, message: impl Into<String>) -> RpcError {
    RpcError {
        code,
        message: message.into(),
    }
}

/// Per-listener counters and faults.
#[derive(Default)]
struct Counters {
    per_method: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    /// (requests still to fail, status)
    fail: Mutex<(u64, u16)>,
}

#[derive(Clone)]
struct AppState {
    chain: ChainSim,
    role: Role,
    counters: Arc<Counters>,
}

/// A running listener. Dropping it (or [`Listener::shutdown`]) stops it.
pub struct Listener {
    addr: SocketAddr,
    role: Role,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.addr)
            .field("role", &self.role)
            .finish()
    }
}

impl Listener {
    /// `http://127.0.0.1:PORT`, the JSON-RPC endpoint (POST `/`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// This listener's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The next `n` HTTP requests to this listener (JSON-RPC or control) answer `status`
    /// without being served; 429 carries `Retry-After: 1`. They are still counted.
    pub fn fail_next(&self, n: u64, status: u16) {
        *self.counters.fail.lock().unwrap_or_else(|e| e.into_inner()) = (n, status);
    }

    /// JSON-RPC calls of `method` received (a batch counts each call; failed ones included).
    pub fn requests(&self, method: &str) -> u64 {
        let counts = self
            .counters
            .per_method
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counts.get(method).copied().unwrap_or(0)
    }

    /// HTTP requests received on the JSON-RPC route, faulted ones included.
    pub fn total_requests(&self) -> u64 {
        self.counters.total.load(Ordering::Relaxed)
    }

    /// Stops accepting, lets open requests finish (up to 5 s) and returns.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err()
        {
            tracing::warn!("chain-sim: connections still open after shutdown grace");
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

pub(crate) async fn serve(
    chain: ChainSim,
    role: Role,
    addr: SocketAddr,
) -> std::io::Result<Listener> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let counters = Arc::new(Counters::default());
    let state = AppState {
        chain,
        role,
        counters: Arc::clone(&counters),
    };
    let app = Router::new()
        .route("/", post(rpc))
        .route("/_chain/transfer", post(control_transfer))
        .route("/_chain/blocks", post(control_blocks))
        .route("/_chain/upgrade", post(control_upgrade))
        .route("/_chain/subnets/{netuid}", post(control_subnet))
        .route("/_chain/fail", post(control_fail))
        .route("/_chain/status", get(control_status))
        .route("/_chain/requests", get(control_requests))
        .with_state(state);
    let (stop, mut stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stopped| *stopped).await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "chain-sim server stopped with an error");
        }
    });
    Ok(Listener {
        addr,
        role,
        counters,
        stop,
        task: Some(task),
    })
}

/// The fault for this request, if one is armed.
fn take_fault(counters: &Counters) -> Option<Response> {
    let mut fail = counters.fail.lock().unwrap_or_else(|e| e.into_inner());
    if fail.0 == 0 {
        return None;
    }
    fail.0 -= 1;
    let status = StatusCode::from_u16(fail.1).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = (status, status.canonical_reason().unwrap_or("fault")).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Some(response)
}

async fn rpc(State(app): State<AppState>, body: Bytes) -> Response {
    app.counters.total.fetch_add(1, Ordering::Relaxed);
    let parsed: Result<Json_, _> = serde_json::from_slice(&body);
    if let Ok(doc) = &parsed {
        let calls: Vec<&Json_> = match doc {
            Json_::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        let mut counts = app
            .counters
            .per_method
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for call in calls {
            let method = call.get("method").and_then(Json_::as_str).unwrap_or("");
            *counts.entry(method.to_owned()).or_default() += 1;
        }
    }
    if let Some(fault) = take_fault(&app.counters) {
        return fault;
    }
    let answer = match parsed {
        Err(e) => reply(
            &Json_::Null,
            Err(err(code::PARSE, format!("Parse error: {e}"))),
        ),
        Ok(Json_::Array(items)) if items.is_empty() => reply(
            &Json_::Null,
            Err(err(code::INVALID_REQUEST, "Invalid request: empty batch")),
        ),
        Ok(Json_::Array(items)) => {
            let state = app.chain.state();
            Json_::Array(
                items
                    .iter()
                    .map(|c| answer_call(&state, app.role, c))
                    .collect(),
            )
        }
        Ok(one) => {
            let state = app.chain.state();
            answer_call(&state, app.role, &one)
        }
    };
    Json(answer).into_response()
}

fn reply(id: &Json_, result: Result<Json_, RpcError>) -> Json_ {
    match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}})
        }
    }
}

fn answer_call(state: &ChainState, role: Role, call: &Json_) -> Json_ {
    let id = call.get("id").cloned().unwrap_or(Json_::Null);
    let Some(method) = call.get("method").and_then(Json_::as_str) else {
        return reply(
            &id,
            Err(err(code::INVALID_REQUEST, "Invalid request: no method")),
        );
    };
    let params: &[Json_] = match call.get("params") {
        Some(Json_::Array(items)) => items,
        None | Some(Json_::Null) => &[],
        Some(_) => {
            return reply(
                &id,
                Err(err(
                    code::INVALID_PARAMS,
                    "Invalid params: expected an array",
                )),
            );
        }
    };
    reply(&id, dispatch(state, role, method, params))
}

fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// Positional parameter `i`, `None` when missing or `null`.
fn param(params: &[Json_], i: usize) -> Option<&Json_> {
    params.get(i).filter(|v| !v.is_null())
}

fn param_str<'a>(params: &'a [Json_], i: usize, what: &str) -> Result<&'a str, RpcError> {
    param(params, i).and_then(Json_::as_str).ok_or_else(|| {
        err(
            code::INVALID_PARAMS,
            format!("Invalid params: {what} must be a string"),
        )
    })
}

fn parse_hex(text: &str, what: &str) -> Result<Vec<u8>, RpcError> {
    text.strip_prefix("0x")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| {
            err(
                code::INVALID_PARAMS,
                format!("Invalid params: {what} must be 0x-prefixed hex"),
            )
        })
}

/// The block a hash parameter names; the head when absent. `None` for an unknown hash.
fn block_param(state: &ChainState, params: &[Json_], i: usize) -> Result<Option<u64>, RpcError> {
    let Some(value) = param(params, i) else {
        return Ok(Some(state.head()));
    };
    let text = value.as_str().ok_or_else(|| {
        err(
            code::INVALID_PARAMS,
            "Invalid params: block hash must be a string",
        )
    })?;
    let bytes = parse_hex(text, "block hash")?;
    let hash: [u8; 32] = bytes.try_into().map_err(|_| {
        err(
            code::INVALID_PARAMS,
            "Invalid params: block hash must be 32 bytes",
        )
    })?;
    Ok(state.by_hash.get(&hash).copied())
}

/// The block a state query reads, refused on a lite node past its retention.
fn state_block(
    state: &ChainState,
    role: Role,
    params: &[Json_],
    i: usize,
) -> Result<u64, RpcError> {
    let n = match block_param(state, params, i)? {
        Some(n) => n,
        None => {
            let text = param(params, i).and_then(Json_::as_str).unwrap_or_default();
            return Err(err(
                code::CLIENT,
                format!("Client error: UnknownBlock: Header was not found in the database: {text}"),
            ));
        }
    };
    if let Role::Lite { retention } = role
        && n < state.head().saturating_sub(retention)
    {
        let hash = state.block(n).map(|b| b.hash).unwrap_or_default();
        return Err(err(
            code::CLIENT,
            format!("State already discarded for {}", hex0x(&hash)),
        ));
    }
    Ok(n)
}

fn header_json(state: &ChainState, n: u64) -> Json_ {
    match state.block(n) {
        Some(b) => json!({
            "parentHash": hex0x(&b.parent_hash),
            "number": format!("0x{:x}", b.number),
            "stateRoot": hex0x(&b.state_root),
            "extrinsicsRoot": hex0x(&b.extrinsics_root),
            "digest": {"logs": []},
        }),
        None => Json_::Null,
    }
}

/// A block number parameter: a JSON number or a hex / decimal string.
fn block_number(value: &Json_) -> Result<u64, RpcError> {
    let bad = || err(code::INVALID_PARAMS, "Invalid params: block number");
    match value {
        Json_::Number(n) => n.as_u64().ok_or_else(bad),
        Json_::String(s) => match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).map_err(|_| bad()),
            None => s.parse().map_err(|_| bad()),
        },
        _ => Err(bad()),
    }
}

fn dispatch(
    state: &ChainState,
    role: Role,
    method: &str,
    params: &[Json_],
) -> Result<Json_, RpcError> {
    match method {
        "chain_getFinalizedHead" | "chain_getFinalisedHead" => Ok(json!(hex0x(
            &state.block(state.finalized).expect("finalized exists").hash
        ))),
        "chain_getHeader" => Ok(match block_param(state, params, 0)? {
            Some(n) => header_json(state, n),
            None => Json_::Null,
        }),
        "chain_getBlockHash" | "chain_getHead" => {
            let hash_of = |value: Option<&Json_>| -> Result<Json_, RpcError> {
                let n = match value {
                    Some(v) => block_number(v)?,
                    None => state.head(),
                };
                Ok(state
                    .block(n)
                    .map_or(Json_::Null, |b| json!(hex0x(&b.hash))))
            };
            match param(params, 0) {
                Some(Json_::Array(list)) => list
                    .iter()
                    .map(|v| hash_of(Some(v)))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Json_::Array),
                other => hash_of(other),
            }
        }
        "state_call" => {
            let api = param_str(params, 0, "method")?;
            let data = parse_hex(param_str(params, 1, "data")?, "data")?;
            let n = state_block(state, role, params, 2)?;
            match api {
                "SubnetInfoRuntimeApi_get_subnet_state" => {
                    let netuid: [u8; 2] = data.as_slice().try_into().map_err(|_| {
                        err(
                            code::INVALID_PARAMS,
                            "Execution failed: cannot decode NetUid (u16) from data",
                        )
                    })?;
                    Ok(json!(hex0x(
                        &state.subnet_state(u16::from_le_bytes(netuid), n)
                    )))
                }
                other => Err(err(
                    code::METHOD_NOT_FOUND,
                    format!("Execution failed: Exported method {other} is not found"),
                )),
            }
        }
        "state_getStorage" | "state_getStorageAt" => {
            let key = param_str(params, 0, "key")?;
            let n = state_block(state, role, params, 1)?;
            if key.eq_ignore_ascii_case(SYSTEM_EVENTS_KEY) {
                let block = state.block(n).expect("resolved blocks exist");
                Ok(json!(hex0x(&block.events)))
            } else {
                Ok(Json_::Null)
            }
        }
        "state_getMetadata" => {
            let n = state_block(state, role, params, 0)?;
            Ok(json!(&*state.runtime_after(n).metadata_hex))
        }
        "state_getRuntimeVersion" | "chain_getRuntimeVersion" => {
            let n = state_block(state, role, params, 0)?;
            Ok(json!({
                "specName": "node-subtensor",
                "implName": "node-subtensor",
                "authoringVersion": 1,
                "specVersion": state.runtime_after(n).spec_version,
                "implVersion": 1,
                "apis": [],
                "transactionVersion": 1,
                "stateVersion": 1,
            }))
        }
        "system_chain" => Ok(json!("Bittensor")),
        "system_name" => Ok(json!("chain-sim")),
        other => Err(err(
            code::METHOD_NOT_FOUND,
            format!("Method not found: {other}"),
        )),
    }
}

/// A control-route error: `{"error": {"code", "message"}}` with a stable code.
fn control_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

fn account_field(text: &str, field: &str) -> Result<[u8; 32], Box<Response>> {
    parse_account(text).ok_or_else(|| {
        Box::new(control_error(
            StatusCode::BAD_REQUEST,
            "invalid_account",
            format!("{field} must be an SS58 address or 0x + 64 hex digits"),
        ))
    })
}

#[derive(Deserialize)]
struct TransferBody {
    from: String,
    to: String,
    amount: u64,
}

async fn control_transfer(State(app): State<AppState>, Json(body): Json<TransferBody>) -> Response {
    if let Some(fault) = take_fault(&app.counters) {
        return fault;
    }
    let (from, to) = match (
        account_field(&body.from, "from"),
        account_field(&body.to, "to"),
    ) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(e), _) | (_, Err(e)) => return *e,
    };
    app.chain.queue_transfer(from, to, body.amount);
    (
        StatusCode::ACCEPTED,
        Json(json!({"queued": true, "next_block": app.chain.head() + 1})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct BlocksBody {
    #[serde(default = "one")]
    count: u64,
}

fn one() -> u64 {
    1
}

async fn control_blocks(State(app): State<AppState>, body: Option<Json<BlocksBody>>) -> Response {
    if let Some(fault) = take_fault(&app.counters) {
        return fault;
    }
    let count = body.map_or(1, |b| b.count);
    let head = app.chain.produce_blocks(count);
    Json(json!({"head": head, "finalized": app.chain.finalized()})).into_response()
}

async fn control_upgrade(State(app): State<AppState>) -> Response {
    if let Some(fault) = take_fault(&app.counters) {
        return fault;
    }
    app.chain.runtime_upgrade();
    let next = app.chain.state().next_spec_version();
    Json(json!({"upgrade_block": app.chain.head() + 1, "spec_version": next})).into_response()
}

#[derive(Deserialize)]
struct NeuronBody {
    hotkey: String,
    coldkey: String,
    #[serde(default)]
    validator_permit: bool,
    #[serde(default)]
    alpha_stake: u64,
    #[serde(default)]
    tao_stake: u64,
    #[serde(default)]
    total_stake: u64,
}

async fn control_subnet(
    State(app): State<AppState>,
    Path(netuid): Path<u16>,
    Json(body): Json<Vec<NeuronBody>>,
) -> Response {
    if let Some(fault) = take_fault(&app.counters) {
        return fault;
    }
    let mut neurons = Vec::with_capacity(body.len());
    for n in body {
        let hotkey = match account_field(&n.hotkey, "hotkey") {
            Ok(k) => k,
            Err(e) => return *e,
        };
        let coldkey = match account_field(&n.coldkey, "coldkey") {
            Ok(k) => k,
            Err(e) => return *e,
        };
        neurons.push(SimNeuron {
            hotkey,
            coldkey,
            validator_permit: n.validator_permit,
            alpha_stake: n.alpha_stake,
            tao_stake: n.tao_stake,
            total_stake: n.total_stake,
        });
    }
    let count = neurons.len();
    app.chain.set_subnet(netuid, neurons);
    Json(json!({"netuid": netuid, "neurons": count, "from_block": app.chain.head() + 1}))
        .into_response()
}

#[derive(Deserialize)]
struct FailBody {
    count: u64,
    status: u16,
}

async fn control_fail(State(app): State<AppState>, Json(body): Json<FailBody>) -> Response {
    if StatusCode::from_u16(body.status).is_err() {
        return control_error(
            StatusCode::BAD_REQUEST,
            "invalid_status",
            "status must be 100..=999",
        );
    }
    *app.counters.fail.lock().unwrap_or_else(|e| e.into_inner()) = (body.count, body.status);
    Json(json!({"failing": body.count, "status": body.status})).into_response()
}

async fn control_status(State(app): State<AppState>) -> Response {
    let state = app.chain.state();
    let head = state.head();
    Json(json!({
        "head": head,
        "finalized": state.finalized,
        "finality_lag": state.finality_lag,
        "spec_version": state.runtime_after(head).spec_version,
        "role": match app.role {
            Role::Archive => json!({"archive": {}}),
            Role::Lite { retention } => json!({"lite": {"retention": retention}}),
        },
    }))
    .into_response()
}

async fn control_requests(State(app): State<AppState>) -> Response {
    let counts = app
        .counters
        .per_method
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Json(json!({"total": app.counters.total.load(Ordering::Relaxed), "per_method": counts}))
        .into_response()
}
