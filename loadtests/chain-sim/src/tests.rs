//! Crate tests: the chain model through the Rust API and through JSON-RPC over HTTP.

use frame_metadata::{RuntimeMetadata, RuntimeMetadataPrefixed};
use parity_scale_codec::{Compact, Decode, Encode};
use scale_value::{Composite, Primitive, ValueDef};
use serde_json::{Value as J, json};
use sp_crypto_hashing::blake2_256;

use crate::runtime::{Runtime, UPGRADE_MARKER_FIELD};
use crate::*;

type Decoded = scale_value::Value<u32>;

async fn call(url: &str, method: &str, params: J) -> J {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    let answer: J = http_client()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["id"], 7, "{answer}");
    answer
}

async fn result(url: &str, method: &str, params: J) -> J {
    let answer = call(url, method, params).await;
    assert!(answer.get("error").is_none(), "{method}: {answer}");
    answer["result"].clone()
}

fn unhex(v: &J) -> Vec<u8> {
    hex::decode(v.as_str().unwrap().strip_prefix("0x").unwrap()).unwrap()
}

fn hash_hex(chain: &ChainSim, n: u64) -> String {
    format!("0x{}", hex::encode(chain.block_hash(n).unwrap()))
}

/// The registry and `System.Events` type of SCALE metadata bytes, as a gateway would get them.
fn registry(metadata: &[u8]) -> (scale_info::PortableRegistry, u32) {
    let RuntimeMetadata::V14(m) = RuntimeMetadataPrefixed::decode(&mut &metadata[..])
        .unwrap()
        .1
    else {
        panic!("v14")
    };
    let system = m.pallets.iter().find(|p| p.name == "System").unwrap();
    let entry = system
        .storage
        .as_ref()
        .unwrap()
        .entries
        .iter()
        .find(|e| e.name == "Events")
        .unwrap();
    let frame_metadata::v14::StorageEntryType::Plain(ty) = &entry.ty else {
        panic!("plain")
    };
    (m.types, ty.id)
}

/// One decoded event: pallet, variant, its fields.
struct Event {
    pallet: String,
    variant: String,
    fields: Composite<u32>,
}

/// Decodes `Vec<EventRecord>` through `metadata`, requiring every byte to be used.
fn decode_events(events: &[u8], metadata: &[u8]) -> Result<Vec<Event>, String> {
    let (types, ty) = registry(metadata);
    let mut input = events;
    let value =
        scale_value::scale::decode_as_type(&mut input, ty, &types).map_err(|e| e.to_string())?;
    if !input.is_empty() {
        return Err(format!("{} bytes left over", input.len()));
    }
    let ValueDef::Composite(records) = value.value else {
        return Err("not a sequence".into());
    };
    records
        .into_values()
        .map(|record| {
            let ValueDef::Composite(Composite::Named(fields)) = record.value else {
                return Err("record is not a struct".to_string());
            };
            let event = fields.into_iter().find(|(k, _)| k == "event").unwrap().1;
            let ValueDef::Variant(outer) = event.value else {
                return Err("event not an enum".into());
            };
            let inner = outer.values.into_values().next().unwrap();
            let ValueDef::Variant(inner) = inner.value else {
                return Err("pallet event not an enum".into());
            };
            Ok(Event {
                pallet: outer.name,
                variant: inner.name,
                fields: inner.values,
            })
        })
        .collect()
}

fn bytes_of(v: &Decoded, out: &mut Vec<u8>) {
    match &v.value {
        ValueDef::Composite(c) => c.values().for_each(|v| bytes_of(v, out)),
        ValueDef::Primitive(Primitive::U128(n)) => out.push(u8::try_from(*n).unwrap()),
        other => panic!("not bytes: {other:?}"),
    }
}

fn field<'a>(fields: &'a Composite<u32>, name: &str) -> &'a Decoded {
    let Composite::Named(named) = fields else {
        panic!("unnamed fields")
    };
    &named
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .1
}

fn account(fields: &Composite<u32>, name: &str) -> [u8; 32] {
    let mut out = Vec::new();
    bytes_of(field(fields, name), &mut out);
    out.try_into().unwrap()
}

fn amount(fields: &Composite<u32>) -> u64 {
    match field(fields, "amount").value {
        ValueDef::Primitive(Primitive::U128(n)) => u64::try_from(n).unwrap(),
        ref other => panic!("amount {other:?}"),
    }
}

/// (index, from, to, amount) of every Balances.Transfer decoded.
fn decoded_transfers(events: &[Event]) -> Vec<(u32, [u8; 32], [u8; 32], u64)> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.pallet == "Balances" && e.variant == "Transfer")
        .map(|(i, e)| {
            (
                i as u32,
                account(&e.fields, "from"),
                account(&e.fields, "to"),
                amount(&e.fields),
            )
        })
        .collect()
}

#[test]
fn both_runtimes_encode_every_noise_event_and_differ() {
    // Blocks 1..=140 cover every noise kind (multiples of 3, 4, 5, 7) with each runtime.
    for generation in [0, 1] {
        let runtime = Runtime::new(generation, 343 + generation);
        let mut state = chain::ChainState::new(0, 343, 0);
        state.runtimes = vec![std::sync::Arc::new(runtime)];
        state.queue_transfer([1; 32], [2; 32], 3);
        state.produce(140);
        let metadata = state.runtimes[0].metadata_bytes.to_vec();
        for n in 1..=140 {
            let events = decode_events(&state.block(n).unwrap().events, &metadata).unwrap();
            assert_eq!(events[0].variant == "Minted", n % 4 == 0);
        }
        let types = state.runtimes[0].types();
        assert!(types.resolve(state.runtimes[0].events_type_id()).is_some());
    }
    let (old, new) = (Runtime::new(0, 343), Runtime::new(1, 344));
    assert_ne!(old.metadata_bytes, new.metadata_bytes);
}

#[tokio::test]
async fn hashes_headers_and_finality_are_consistent() {
    let chain = ChainSim::new();
    let node = chain.serve(Role::Archive).await.unwrap();
    let url = node.url();
    assert_eq!((chain.head(), chain.finalized()), (1000, 998));
    let finalized = result(&url, "chain_getFinalizedHead", json!([])).await;
    assert_eq!(finalized, json!(hash_hex(&chain, 998)));
    for n in [0u64, 1, 500, 999, 1000] {
        let hash = result(&url, "chain_getBlockHash", json!([n])).await;
        assert_eq!(hash, json!(hash_hex(&chain, n)));
        let header = result(&url, "chain_getHeader", json!([hash])).await;
        assert_eq!(header["number"], json!(format!("0x{n:x}")));
        let parent = if n == 0 {
            [0; 32]
        } else {
            chain.block_hash(n - 1).unwrap()
        };
        assert_eq!(unhex(&header["parentHash"]), parent);
        // Substrate's block hash: blake2-256 of the SCALE header.
        let mut encoded = parent.encode();
        Compact(n as u32).encode_to(&mut encoded);
        encoded.extend(unhex(&header["stateRoot"]));
        encoded.extend(unhex(&header["extrinsicsRoot"]));
        encoded.push(0); // empty digest
        assert_eq!(blake2_256(&encoded), chain.block_hash(n).unwrap());
        assert_eq!(header["digest"], json!({"logs": []}));
    }
    assert_eq!(
        result(&url, "chain_getBlockHash", json!(["0x3e8"])).await,
        json!(hash_hex(&chain, 1000))
    );
    assert_eq!(
        result(&url, "chain_getBlockHash", json!([1001])).await,
        J::Null
    );
    assert_eq!(
        result(
            &url,
            "chain_getHeader",
            json!([format!("0x{}", "00".repeat(32))])
        )
        .await,
        J::Null
    );
    let head_header = result(&url, "chain_getHeader", json!([])).await;
    assert_eq!(head_header["number"], "0x3e8");
    // A longer lag holds finality; it never goes backwards.
    chain.set_finality_lag(5);
    assert_eq!(chain.produce_blocks(2), 1002);
    assert_eq!(chain.finalized(), 998);
    chain.produce_blocks(2);
    assert_eq!(chain.finalized(), 999);
    chain.set_finality_lag(0);
    assert_eq!(chain.finalized(), 1004);
}

#[tokio::test]
async fn a_blocks_events_decode_through_the_parents_metadata() {
    let chain = ChainSim::new();
    let node = chain.serve(Role::Archive).await.unwrap();
    let url = node.url();
    let (alice, bob, carol) = ([0xaa; 32], [0xbb; 32], [0xcc; 32]);
    chain.queue_transfer(alice, bob, 1_500_000_000);
    chain.queue_transfer(carol, bob, 7);
    chain.produce_blocks(5); // 1001..=1005; 1005 also has the forged EVM log
    chain.queue_transfer(alice, carol, 42);
    chain.produce_blocks(1);
    let expected = chain.transfers_in(1001);
    assert_eq!(expected.len(), 2);
    assert_eq!(
        (expected[0].1, expected[0].2, expected[0].3),
        (alice, bob, 1_500_000_000)
    );
    let mut pallets = std::collections::BTreeSet::new();
    for n in 1001..=1006u64 {
        let hash = hash_hex(&chain, n);
        let parent = hash_hex(&chain, n - 1);
        let events =
            unhex(&result(&url, "state_getStorage", json!([SYSTEM_EVENTS_KEY, hash])).await);
        let metadata = unhex(&result(&url, "state_getMetadata", json!([parent])).await);
        let decoded = decode_events(&events, &metadata).unwrap();
        assert_eq!(
            decoded_transfers(&decoded),
            chain.transfers_in(n),
            "block {n}"
        );
        pallets.extend(
            decoded
                .iter()
                .map(|e| format!("{}.{}", e.pallet, e.variant)),
        );
    }
    assert_eq!(chain.transfers_in(1006)[0].3, 42);
    for expected in [
        "System.ExtrinsicSuccess",
        "Balances.Withdraw",
        "Balances.Deposit",
        "EVM.Log",
    ] {
        assert!(
            pallets.contains(expected),
            "{expected} missing from {pallets:?}"
        );
    }
    assert!(
        pallets.iter().any(|p| p.starts_with("SubtensorModule.")),
        "{pallets:?}"
    );
    // The forged log really carries transfer-looking bytes for the last recipient.
    let raw = chain.events_at(1005).unwrap();
    let mut forged = vec![5u8, 2];
    forged.extend([0x66; 32]);
    forged.extend(bob);
    assert!(raw.windows(forged.len()).any(|w| w == forged.as_slice()));
    assert!(
        chain.transfers_in(1005).is_empty(),
        "the forgery is not a transfer"
    );
    // Unknown keys are null.
    let other_key = format!("0x{}", "11".repeat(32));
    assert_eq!(
        result(&url, "state_getStorage", json!([other_key])).await,
        J::Null
    );
}

#[tokio::test]
async fn upgrade_block_uses_old_metadata_and_later_blocks_the_new() {
    let chain = ChainSim::new();
    let node = chain.serve(Role::Archive).await.unwrap();
    let url = node.url();
    chain.runtime_upgrade();
    chain.queue_transfer([1; 32], [2; 32], 10);
    chain.produce_blocks(1); // N = 1001: CodeUpdated, encoded with the old runtime
    chain.queue_transfer([3; 32], [4; 32], 20);
    chain.produce_blocks(1); // N + 1 = 1002: the new runtime
    assert_eq!(
        (
            chain.spec_version_at(1000),
            chain.spec_version_at(1001),
            chain.spec_version_at(1002)
        ),
        (343, 344, 344)
    );
    let old = unhex(&result(&url, "state_getMetadata", json!([hash_hex(&chain, 1000)])).await);
    let new = unhex(&result(&url, "state_getMetadata", json!([hash_hex(&chain, 1001)])).await);
    assert_eq!(old, chain.metadata_after(1000));
    assert_eq!(new, chain.metadata_after(1001));
    assert_ne!(old, new);
    let version = result(
        &url,
        "state_getRuntimeVersion",
        json!([hash_hex(&chain, 1001)]),
    )
    .await;
    assert_eq!(
        (version["specName"].clone(), version["specVersion"].clone()),
        (json!("node-subtensor"), json!(344))
    );
    let version = result(
        &url,
        "state_getRuntimeVersion",
        json!([hash_hex(&chain, 1000)]),
    )
    .await;
    assert_eq!(version["specVersion"], 343);

    let upgrade_block = decode_events(&chain.events_at(1001).unwrap(), &old).unwrap();
    assert!(
        upgrade_block
            .iter()
            .any(|e| e.pallet == "System" && e.variant == "CodeUpdated")
    );
    assert_eq!(decoded_transfers(&upgrade_block), chain.transfers_in(1001));

    let after = chain.events_at(1002).unwrap();
    let with_new = decode_events(&after, &new).unwrap();
    assert_eq!(decoded_transfers(&with_new), chain.transfers_in(1002));
    let success = with_new
        .iter()
        .find(|e| e.variant == "ExtrinsicSuccess")
        .unwrap();
    let _ = field(&success.fields, UPGRADE_MARKER_FIELD);
    // With the stale metadata the same bytes fail to decode or give other events.
    match decode_events(&after, &old) {
        Err(_) => {}
        Ok(events) => assert_ne!(decoded_transfers(&events), chain.transfers_in(1002)),
    }
}

#[tokio::test]
async fn lite_discards_old_state_and_archive_answers() {
    let chain = ChainSim::new();
    let lite = chain.serve(Role::Lite { retention: 10 }).await.unwrap();
    let archive = chain.serve(Role::Archive).await.unwrap();
    let old = hash_hex(&chain, 989);
    let kept = hash_hex(&chain, 990);
    let answer = call(
        &lite.url(),
        "state_getStorage",
        json!([SYSTEM_EVENTS_KEY, old]),
    )
    .await;
    assert_eq!(answer["error"]["code"], 4003);
    assert_eq!(
        answer["error"]["message"],
        json!(format!("State already discarded for {old}"))
    );
    for method in ["state_getMetadata", "state_getRuntimeVersion"] {
        let answer = call(&lite.url(), method, json!([old])).await;
        assert_eq!(answer["error"]["code"], 4003, "{method}");
    }
    let answer = call(
        &lite.url(),
        "state_call",
        json!(["SubnetInfoRuntimeApi_get_subnet_state", "0x0100", old]),
    )
    .await;
    assert_eq!(answer["error"]["code"], 4003);
    result(
        &lite.url(),
        "state_getStorage",
        json!([SYSTEM_EVENTS_KEY, kept]),
    )
    .await;
    // Headers are not state: a lite node still has them.
    result(&lite.url(), "chain_getHeader", json!([old])).await;
    let events = result(
        &archive.url(),
        "state_getStorage",
        json!([SYSTEM_EVENTS_KEY, old]),
    )
    .await;
    assert_eq!(unhex(&events), chain.events_at(989).unwrap());
    // The window moves with the head.
    chain.produce_blocks(1);
    let answer = call(
        &lite.url(),
        "state_getStorage",
        json!([SYSTEM_EVENTS_KEY, kept]),
    )
    .await;
    assert_eq!(answer["error"]["code"], 4003);
    assert_eq!(lite.requests("state_getStorage"), 3);
    assert_eq!(archive.requests("state_getStorage"), 1);
}

#[tokio::test]
async fn fail_next_answers_429_with_retry_after_then_serves() {
    let chain = ChainSim::new();
    let node = chain.serve(Role::Archive).await.unwrap();
    let client = http_client();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "chain_getFinalizedHead", "params": []});
    node.fail_next(2, 429);
    for _ in 0..2 {
        let r = client.post(node.url()).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
    }
    let r = client.post(node.url()).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    node.fail_next(1, 503);
    let r = client.post(node.url()).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_none());
    assert_eq!(node.requests("chain_getFinalizedHead"), 4);
    assert_eq!(node.total_requests(), 4);
    assert_eq!(node.requests("state_call"), 0);
}

#[tokio::test]
async fn subnet_states_fixture_synthesised_and_none() {
    let chain = ChainSim::new();
    let node = chain.serve(Role::Archive).await.unwrap();
    let url = node.url();
    let get = |netuid: &'static str, at: Option<String>| {
        let url = url.clone();
        async move {
            let mut params = vec![
                json!("SubnetInfoRuntimeApi_get_subnet_state"),
                json!(netuid),
            ];
            params.extend(at.map(J::from));
            unhex(&result(&url, "state_call", J::Array(params)).await)
        }
    };
    assert_eq!(get("0x0100", None).await, subnet::fixture_netuid1());
    assert_eq!(get("0x0500", None).await, vec![0]);
    let neuron = SimNeuron {
        hotkey: [9; 32],
        coldkey: [8; 32],
        validator_permit: true,
        alpha_stake: 1,
        tao_stake: 2,
        total_stake: 3,
    };
    chain.set_subnet(5, vec![neuron.clone()]);
    assert_eq!(
        get("0x0500", None).await,
        vec![0],
        "takes effect from the next block"
    );
    chain.produce_blocks(1);
    let synthesised = get("0x0500", None).await;
    assert_eq!(synthesised, subnet::synthesize(5, &[neuron], 1001));
    assert_eq!(
        get("0x0500", Some(hash_hex(&chain, 1000))).await,
        vec![0],
        "history is kept"
    );
    let answer = call(
        &url,
        "state_call",
        json!(["NeuronInfoRuntimeApi_get_neurons_lite", "0x0100"]),
    )
    .await;
    assert_eq!(answer["error"]["code"], -32601);
    let answer = call(&url, "author_submitExtrinsic", json!(["0x00"])).await;
    assert_eq!(answer["error"]["code"], -32601);
}

#[tokio::test]
async fn control_routes_drive_the_chain() {
    let chain = ChainSim::new();
    let node = chain.serve(Role::Archive).await.unwrap();
    let client = http_client();
    let to = [0x42; 32];
    let transfer = json!({"from": ss58_encode(&[0x41; 32]), "to": format!("0x{}", hex::encode(to)), "amount": 99});
    let r = client
        .post(format!("{}/_chain/transfer", node.url()))
        .json(&transfer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let bad = json!({"from": "nope", "to": "0x00", "amount": 1});
    let r = client
        .post(format!("{}/_chain/transfer", node.url()))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: J = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_account");
    let r: J = client
        .post(format!("{}/_chain/blocks", node.url()))
        .json(&json!({"count": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (r["head"].clone(), r["finalized"].clone()),
        (json!(1003), json!(1001))
    );
    assert_eq!(chain.transfers_in(1001)[0].1, [0x41; 32]);
    assert_eq!(chain.transfers_in(1001)[0].2, to);
    let neurons = json!([{"hotkey": ss58_encode(&[1; 32]), "coldkey": ss58_encode(&[2; 32]), "validator_permit": true, "total_stake": 5}]);
    let r = client
        .post(format!("{}/_chain/subnets/64", node.url()))
        .json(&neurons)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r: J = client
        .post(format!("{}/_chain/upgrade", node.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["spec_version"], 344);
    chain.produce_blocks(1);
    assert_eq!(chain.spec_version_at(1004), 344);
    assert_ne!(chain.state().subnet_state(64, 1004).as_slice(), &[0]);
    let status: J = client
        .get(format!("{}/_chain/status", node.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (status["head"].clone(), status["spec_version"].clone()),
        (json!(1004), json!(344))
    );
    // A batch is answered in order, each call counted.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "chain_getBlockHash", "params": [1]},
        {"jsonrpc": "2.0", "id": 2, "method": "chain_getFinalizedHead"},
    ]);
    let r: J = client
        .post(node.url())
        .json(&batch)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r[0]["result"], json!(hash_hex(&chain, 1)));
    assert_eq!(r[1]["id"], 2);
    assert_eq!(node.requests("chain_getBlockHash"), 1);
}

#[tokio::test(start_paused = true)]
async fn block_ms_produces_blocks_in_the_background() {
    let chain = ChainSim::with_config(ChainConfig {
        head: 10,
        block_ms: Some(100),
        ..ChainConfig::default()
    });
    assert_eq!(chain.head(), 10);
    for expected in 11..=13 {
        tokio::time::advance(std::time::Duration::from_millis(100)).await;
        for _ in 0..100 {
            if chain.head() == expected {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(chain.head(), expected);
    }
    chain.stop_block_production();
    tokio::time::advance(std::time::Duration::from_millis(500)).await;
    tokio::task::yield_now().await;
    assert_eq!(chain.head(), 13);
}

#[tokio::test]
async fn dropping_a_listener_stops_it() {
    let chain = ChainSim::new();
    let node = chain.serve(Role::Archive).await.unwrap();
    let url = node.url();
    node.shutdown().await;
    let client = http_client();
    assert!(
        client
            .post(&url)
            .json(&json!({"method": "system_chain"}))
            .send()
            .await
            .is_err()
    );
}

/// A plain-HTTP client. In a workspace build reqwest carries the gateway's
/// `rustls-no-provider` feature, which needs a process-wide crypto provider even for http://.
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
