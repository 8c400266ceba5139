//! Test helpers: `System.Events` bytes built by ENCODING values through the recorded finney
//! metadata's type registry (scale-value), so tests never depend on hand-written byte
//! offsets, and a scripted JSON-RPC node on 127.0.0.1 for the client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use scale_value::Value;

use super::events::Metadata;

/// The recorded finney metadata (`state_getMetadata`, V14), raw bytes.
pub(crate) fn fixture_metadata_bytes() -> Vec<u8> {
    let text = include_str!("fixtures/state_getMetadata.hex");
    hex::decode(text.trim().trim_start_matches("0x")).expect("fixture is hex")
}

/// The recorded finney metadata, decoded once per test process.
pub(crate) fn fixture_metadata() -> Arc<Metadata> {
    static MD: OnceLock<Arc<Metadata>> = OnceLock::new();
    MD.get_or_init(|| Arc::new(Metadata::decode(&fixture_metadata_bytes()).expect("fixture")))
        .clone()
}

/// An `AccountId32` value.
pub(crate) fn account(bytes: [u8; 32]) -> Value {
    Value::unnamed_composite([Value::from_bytes(bytes)])
}

/// `RuntimeEvent::<pallet>(<pallet>::Event::<variant>)`.
pub(crate) fn event(pallet: &str, variant: Value) -> Value {
    Value::unnamed_variant(pallet, [variant])
}

/// `Balances.Transfer { from, to, amount }`.
pub(crate) fn transfer(from: [u8; 32], to: [u8; 32], amount: u64) -> Value {
    event(
        "Balances",
        Value::named_variant(
            "Transfer",
            [
                ("from", account(from)),
                ("to", account(to)),
                ("amount", Value::u128(u128::from(amount))),
            ],
        ),
    )
}

/// `System.ExtrinsicSuccess` with a zero weight, normal class, fee paid.
pub(crate) fn extrinsic_success() -> Value {
    let weight = Value::named_composite([
        ("ref_time", Value::u128(125_000)),
        ("proof_size", Value::u128(0)),
    ]);
    event(
        "System",
        Value::named_variant(
            "ExtrinsicSuccess",
            [(
                "dispatch_info",
                Value::named_composite([
                    ("weight", weight),
                    ("class", Value::unnamed_variant("Normal", [])),
                    ("pays_fee", Value::unnamed_variant("Yes", [])),
                ]),
            )],
        ),
    )
}

/// `EVM.Log { log: { address, topics: [], data } }`: arbitrary bytes inside an event.
pub(crate) fn evm_log(data: Vec<u8>) -> Value {
    event(
        "EVM",
        Value::named_variant(
            "Log",
            [(
                "log",
                Value::named_composite([
                    (
                        "address",
                        Value::unnamed_composite([Value::from_bytes([0x11u8; 20])]),
                    ),
                    ("topics", Value::unnamed_composite([])),
                    ("data", Value::from_bytes(data)),
                ]),
            )],
        ),
    )
}

/// An `EventRecord`: phase `ApplyExtrinsic(i)` for `Some(i)`, else `Finalization`; no topics.
pub(crate) fn record(extrinsic: Option<u32>, event: Value) -> Value {
    let phase = match extrinsic {
        Some(i) => Value::unnamed_variant("ApplyExtrinsic", [Value::u128(u128::from(i))]),
        None => Value::unnamed_variant("Finalization", []),
    };
    Value::named_composite([
        ("phase", phase),
        ("event", event),
        ("topics", Value::unnamed_composite([])),
    ])
}

/// Encodes `records` as the `System.Events` storage value, through `md`'s types.
pub(crate) fn encode_events(md: &Metadata, records: Vec<Value>) -> Vec<u8> {
    let mut out = Vec::new();
    scale_value::scale::encode_as_type(
        &Value::unnamed_composite(records),
        md.events_ty(),
        md.types(),
        &mut out,
    )
    .expect("records match the metadata's EventRecord");
    out
}

/// What the scripted node answers to one request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// `{"result": …}`.
    Result(serde_json::Value),
    /// `{"error": {"code", "message"}}`.
    Error(i64, String),
    /// A bare HTTP status (with `Retry-After` seconds when given).
    Status(u16, Option<u64>),
}

type Script = dyn Fn(&str, &serde_json::Value) -> Reply + Send + Sync;

/// A JSON-RPC node on 127.0.0.1 whose answers a closure decides; it counts requests per
/// method.
pub(crate) struct MockNode {
    /// `http://127.0.0.1:<port>/`.
    pub(crate) url: String,
    calls: Arc<Mutex<HashMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockNode {
    /// Starts a node answering with `script(method, params)`.
    pub(crate) async fn start(
        script: impl Fn(&str, &serde_json::Value) -> Reply + Send + Sync + 'static,
    ) -> MockNode {
        use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
        use axum::response::IntoResponse;

        let script: Arc<Script> = Arc::new(script);
        let calls: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let counted = calls.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: axum::Json<serde_json::Value>| {
                let script = script.clone();
                let counted = counted.clone();
                async move {
                    let method = body["method"].as_str().unwrap_or_default().to_string();
                    *counted.lock().unwrap().entry(method.clone()).or_default() += 1;
                    let id = body["id"].clone();
                    match script(&method, &body["params"]) {
                        Reply::Result(r) => {
                            axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": r}))
                                .into_response()
                        }
                        Reply::Error(code, message) => axum::Json(serde_json::json!({
                            "jsonrpc": "2.0", "id": id,
                            "error": {"code": code, "message": message}
                        }))
                        .into_response(),
                        Reply::Status(s, retry) => {
                            let mut r = StatusCode::from_u16(s).unwrap().into_response();
                            if let Some(secs) = retry {
                                r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
                            }
                            r
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        MockNode { url, calls, task }
    }

    /// How many requests of `method` the node has received.
    pub(crate) fn calls(&self, method: &str) -> u64 {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }
}

impl Drop for MockNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fresh `agw_chain_rpc_requests_total` for one test's client.
pub(crate) fn counter() -> prometheus::IntCounterVec {
    prometheus::IntCounterVec::new(
        prometheus::Opts::new("agw_chain_rpc_requests_total", "test"),
        &["endpoint", "outcome"],
    )
    .expect("valid metric")
}

/// A client of `lite` (then `archive`) mock nodes, with no rate limit to speak of, and the
/// request counter it reports to.
pub(crate) fn client(
    lite: &[&MockNode],
    archive: &[&MockNode],
) -> (super::rpc::ChainRpc, prometheus::IntCounterVec) {
    let c = counter();
    let rpc = super::rpc::ChainRpc::new(
        lite.iter().map(|n| n.url.clone()).collect(),
        archive.iter().map(|n| n.url.clone()).collect(),
        std::num::NonZeroU32::new(1000).expect("non-zero"),
        std::time::Duration::from_secs(5),
        c.clone(),
    )
    .expect("valid endpoints");
    (rpc, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_transfer_has_the_documented_layout() {
        // Cross-check of the encoder against CHAIN.md: Balances is pallet 5, Transfer variant 2,
        // amount u64 LE; phase Finalization = 1; no topics.
        let md = fixture_metadata();
        let bytes = encode_events(&md, vec![record(None, transfer([7; 32], [8; 32], 42))]);
        let mut want = vec![0x04, 0x01, 0x05, 0x02];
        want.extend_from_slice(&[7; 32]);
        want.extend_from_slice(&[8; 32]);
        want.extend_from_slice(&42u64.to_le_bytes());
        want.push(0x00);
        assert_eq!(bytes, want);
    }
}
