//! `System.Events` decoded with the runtime's metadata.
//!
//! Events of every pallet sit back to back in one `Vec<EventRecord>` with no length prefix per
//! event, so finding the transfers means decoding every event: only the metadata's type
//! registry says how long each one is. Scanning for the `05 02` (Balances.Transfer) prefix
//! instead would credit forgeries — an EVM `Log` carries arbitrary bytes. So the whole vector
//! is decoded (frame-decode's storage value decoding, visited as scale-value values), any
//! byte we cannot decode is an error, and transfers are picked by pallet, variant and field
//! NAME.

use parity_scale_codec::Decode;
use scale_info::{PortableRegistry, TypeDef, TypeDefPrimitive};
use scale_value::{Composite, Primitive, Value, ValueDef};

use super::DecodeError;

/// `twox128("System") ++ twox128("Events")`: the storage key of the block's events.
pub(crate) const SYSTEM_EVENTS_KEY: [u8; 32] = [
    0x26, 0xaa, 0x39, 0x4e, 0xea, 0x56, 0x30, 0xe0, 0x7c, 0x48, 0xae, 0x0c, 0x95, 0x58, 0xce, 0xf7,
    0x80, 0xd4, 0x1e, 0x5e, 0x16, 0x05, 0x67, 0x65, 0xbc, 0x84, 0x61, 0x85, 0x10, 0x72, 0xc9, 0xd7,
];

/// `meta` little-endian: every `RuntimeMetadataPrefixed` starts with it.
const META_MAGIC: u32 = 0x6174_656d;

/// A runtime's metadata, reduced to what decoding events needs: the type registry and the
/// type of the `System.Events` storage value. V14, V15 and V16 are accepted.
#[derive(Debug)]
pub(crate) struct Metadata {
    types: PortableRegistry,
    events_ty: u32,
}

impl Metadata {
    /// Decodes `state_getMetadata`'s bytes (a SCALE `RuntimeMetadataPrefixed`).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Metadata, DecodeError> {
        use frame_decode::storage::StorageTypeInfo;
        use frame_metadata::{RuntimeMetadata, RuntimeMetadataPrefixed};

        let prefixed = RuntimeMetadataPrefixed::decode(&mut &bytes[..])
            .map_err(|e| DecodeError::Metadata(format!("not runtime metadata: {e}")))?;
        if prefixed.0 != META_MAGIC {
            return Err(DecodeError::Metadata("no `meta` prefix".into()));
        }
        fn events_ty<M: StorageTypeInfo<TypeId = u32>>(m: &M) -> Result<u32, DecodeError> {
            m.storage_info("System", "Events")
                .map(|info| info.value_id)
                .map_err(|e| DecodeError::Metadata(format!("System.Events: {e}")))
        }
        let (types, events_ty) = match prefixed.1 {
            RuntimeMetadata::V14(m) => {
                let ty = events_ty(&m)?;
                (m.types, ty)
            }
            RuntimeMetadata::V15(m) => {
                let ty = events_ty(&m)?;
                (m.types, ty)
            }
            RuntimeMetadata::V16(m) => {
                let ty = events_ty(&m)?;
                (m.types, ty)
            }
            other => {
                return Err(DecodeError::Metadata(format!(
                    "metadata version {} is not supported (14 to 16 are)",
                    other.version()
                )));
            }
        };
        Ok(Metadata { types, events_ty })
    }

    /// The type registry, for encoders in tests.
    #[cfg(test)]
    pub(crate) fn types(&self) -> &PortableRegistry {
        &self.types
    }

    /// The type id of `Vec<EventRecord>`, for encoders in tests.
    #[cfg(test)]
    pub(crate) fn events_ty(&self) -> u32 {
        self.events_ty
    }
}

/// A `Balances.Transfer` event. `amount` is in rao.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transfer {
    /// 0-based position of the event in the block's `System.Events`.
    pub event_index: u32,
    /// The sender (AccountId32).
    pub from: [u8; 32],
    /// The recipient (AccountId32).
    pub to: [u8; 32],
    /// rao.
    pub amount: u64,
}

/// What one block's events hold for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockEvents {
    /// How many events the block has (every pallet's).
    pub count: u32,
    /// Its `Balances.Transfer` events, in order.
    pub transfers: Vec<Transfer>,
}

/// Decodes a block's `System.Events` storage value with `md` (the metadata of the block's
/// parent) and picks its `Balances.Transfer` events. Any undecodable byte, leftover byte or
/// transfer of an unexpected shape is an error: the caller must stop, not skip the block.
pub(crate) fn decode_block_events(
    md: &Metadata,
    events: &[u8],
) -> Result<BlockEvents, DecodeError> {
    let info = frame_decode::storage::StorageInfo {
        keys: std::borrow::Cow::Borrowed(&[]),
        value_id: md.events_ty,
        default_value: None,
        use_old_v9_storage_hashers: false,
    };
    // A first pass that only walks the bytes: scale-value reserves a vector of the declared
    // length of every sequence before reading its items, so a few bytes claiming 2^30 events
    // (or a 2^30-byte field) would abort the process on an 80 GB allocation (found by the
    // `chain_events` fuzz target). Walking item by item fails as soon as the bytes run out,
    // so only sequences that are really there are reserved by the second pass.
    let mut walk = events;
    frame_decode::storage::decode_storage_value_with_info(
        &mut walk,
        &info,
        &md.types,
        frame_decode::helpers::scale_decode::visitor::IgnoreVisitor::new(),
    )
    .map_err(|e| DecodeError::Scale(e.to_string()))?;
    let mut cursor = events;
    let value = frame_decode::storage::decode_storage_value_with_info(
        &mut cursor,
        &info,
        &md.types,
        scale_value::scale::ValueVisitor::new(),
    )
    .map_err(|e| DecodeError::Scale(e.to_string()))?;
    if !cursor.is_empty() {
        return Err(DecodeError::Trailing(cursor.len()));
    }
    let records = match value.value {
        ValueDef::Composite(c) => c.into_values().collect::<Vec<_>>(),
        _ => {
            return Err(DecodeError::Metadata(
                "System.Events is not a sequence".into(),
            ));
        }
    };
    let count = u32::try_from(records.len())
        .map_err(|_| DecodeError::Scale("more than u32::MAX events".into()))?;
    let mut transfers = Vec::new();
    for (i, record) in records.into_iter().enumerate() {
        let index = i as u32;
        let event = named_field(record, "event").ok_or_else(|| DecodeError::Event {
            index,
            reason: "EventRecord has no `event` field".into(),
        })?;
        let ValueDef::Variant(pallet) = event.value else {
            return Err(DecodeError::Event {
                index,
                reason: "`event` is not a pallet enum".into(),
            });
        };
        if pallet.name != "Balances" {
            continue;
        }
        let Some(ValueDef::Variant(inner)) = pallet.values.into_values().next().map(|v| v.value)
        else {
            return Err(DecodeError::Event {
                index,
                reason: "Balances event is not an enum".into(),
            });
        };
        if inner.name != "Transfer" {
            continue;
        }
        transfers.push(transfer(md, index, inner.values)?);
    }
    Ok(BlockEvents { count, transfers })
}

/// The named field `name` of a composite value.
fn named_field(v: Value<u32>, name: &str) -> Option<Value<u32>> {
    match v.value {
        ValueDef::Composite(Composite::Named(fields)) => {
            fields.into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
        }
        _ => None,
    }
}

/// `Transfer { from, to, amount }`, read by field name.
fn transfer(md: &Metadata, index: u32, fields: Composite<u32>) -> Result<Transfer, DecodeError> {
    let err = |reason: String| DecodeError::Event { index, reason };
    let Composite::Named(fields) = fields else {
        return Err(err("Balances.Transfer has unnamed fields".into()));
    };
    let mut from = None;
    let mut to = None;
    let mut amount = None;
    for (name, v) in fields {
        match name.as_str() {
            "from" => from = Some(account(v).ok_or_else(|| err("`from` is not 32 bytes".into()))?),
            "to" => to = Some(account(v).ok_or_else(|| err("`to` is not 32 bytes".into()))?),
            "amount" => amount = Some(balance(md, v).map_err(err)?),
            _ => {}
        }
    }
    match (from, to, amount) {
        (Some(from), Some(to), Some(amount)) => Ok(Transfer {
            event_index: index,
            from,
            to,
            amount,
        }),
        _ => Err(err("Balances.Transfer lacks from, to or amount".into())),
    }
}

/// Unwraps newtype composites (`AccountId32([u8; 32])`, `TaoBalance(u64)`) down to the value
/// inside.
fn unwrap_newtypes(mut v: Value<u32>) -> Value<u32> {
    loop {
        match v.value {
            ValueDef::Composite(c) if c.len() == 1 => {
                v = c.into_values().next().expect("one value");
            }
            other => {
                return Value {
                    value: other,
                    context: v.context,
                };
            }
        }
    }
}

/// 32 bytes from an `AccountId32`-shaped value.
fn account(v: Value<u32>) -> Option<[u8; 32]> {
    let ValueDef::Composite(c) = unwrap_newtypes(v).value else {
        return None;
    };
    let mut out = [0u8; 32];
    let mut n = 0;
    for b in c.into_values() {
        let ValueDef::Primitive(Primitive::U128(x)) = b.value else {
            return None;
        };
        *out.get_mut(n)? = u8::try_from(x).ok()?;
        n += 1;
    }
    (n == 32).then_some(out)
}

/// A balance the metadata types as u64 (subtensor), or as u128 when it fits u64.
fn balance(md: &Metadata, v: Value<u32>) -> Result<u64, String> {
    let v = unwrap_newtypes(v);
    let ValueDef::Primitive(Primitive::U128(x)) = v.value else {
        return Err("`amount` is not an unsigned integer".into());
    };
    let def = md.types.resolve(v.context).map(|t| &t.type_def);
    match def {
        Some(TypeDef::Primitive(TypeDefPrimitive::U64)) => {
            u64::try_from(x).map_err(|_| "u64 amount out of range".into())
        }
        Some(TypeDef::Primitive(TypeDefPrimitive::U128)) => {
            u64::try_from(x).map_err(|_| format!("u128 amount {x} does not fit u64 rao"))
        }
        _ => Err("`amount` is neither u64 nor u128 in the metadata".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::testing::{self, fixture_metadata};

    #[test]
    fn events_key_is_twox128_system_events() {
        let mut key = sp_crypto_hashing::twox_128(b"System").to_vec();
        key.extend_from_slice(&sp_crypto_hashing::twox_128(b"Events"));
        assert_eq!(key, SYSTEM_EVENTS_KEY);
    }

    #[test]
    fn fixture_metadata_decodes() {
        let md = fixture_metadata();
        assert!(md.types.resolve(md.events_ty).is_some());
    }

    #[test]
    fn not_metadata_is_refused() {
        assert!(matches!(
            Metadata::decode(b"hello"),
            Err(DecodeError::Metadata(_))
        ));
        let mut bytes = testing::fixture_metadata_bytes();
        bytes[0] = b'n';
        assert!(matches!(
            Metadata::decode(&bytes),
            Err(DecodeError::Metadata(_))
        ));
    }

    #[test]
    fn empty_vector_has_no_events() {
        let md = fixture_metadata();
        let got = decode_block_events(&md, &[0]).unwrap();
        assert_eq!(got.count, 0);
        assert!(got.transfers.is_empty());
    }

    #[test]
    fn transfers_picked_from_a_mixed_block() {
        let md = fixture_metadata();
        let a = [1u8; 32];
        let b = [2u8; 32];
        let c = [3u8; 32];
        // An EVM log whose data looks like a Balances.Transfer to `b`.
        let mut forged = vec![0x05, 0x02];
        forged.extend_from_slice(&a);
        forged.extend_from_slice(&b);
        forged.extend_from_slice(&5_000u64.to_le_bytes());
        let records = vec![
            testing::record(Some(0), testing::extrinsic_success()),
            testing::record(Some(1), testing::transfer(a, b, 1_500_000_000)),
            testing::record(Some(1), testing::evm_log(forged)),
            testing::record(Some(2), testing::transfer(c, b, u64::MAX)),
            testing::record(None, testing::extrinsic_success()),
        ];
        let bytes = testing::encode_events(&md, records);
        let got = decode_block_events(&md, &bytes).unwrap();
        assert_eq!(got.count, 5);
        assert_eq!(
            got.transfers,
            vec![
                Transfer {
                    event_index: 1,
                    from: a,
                    to: b,
                    amount: 1_500_000_000
                },
                Transfer {
                    event_index: 3,
                    from: c,
                    to: b,
                    amount: u64::MAX
                },
            ]
        );
    }

    #[test]
    fn truncated_or_extended_bytes_are_errors() {
        let md = fixture_metadata();
        let bytes = testing::encode_events(
            &md,
            vec![
                testing::record(Some(0), testing::extrinsic_success()),
                testing::record(Some(1), testing::transfer([1; 32], [2; 32], 7)),
            ],
        );
        for cut in 1..bytes.len() {
            assert!(
                decode_block_events(&md, &bytes[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode_block_events(&md, &longer),
            Err(DecodeError::Trailing(1))
        );
    }

    #[test]
    fn a_huge_declared_length_is_refused_without_reserving_it() {
        // 31 bytes whose compact prefix claims 1 073 741 811 events: reserving them aborted
        // the process (fuzz/artifacts/chain_events/crash-080b6c03…).
        let mut bytes = vec![0xce];
        bytes.extend([0xff; 30]);
        let md = fixture_metadata();
        assert!(
            matches!(decode_block_events(&md, &bytes), Err(DecodeError::Scale(_))),
            "refused as invalid SCALE"
        );
        // The same inside an event: an EVM log whose data claims 2^30 bytes.
        let mut records = testing::encode_events(
            &md,
            vec![testing::record(Some(0), testing::evm_log(vec![1, 2, 3]))],
        );
        let at = records.len() - 4 - 1;
        records.truncate(at);
        records.extend([0xfe, 0xff, 0xff, 0xff]);
        assert!(decode_block_events(&md, &records).is_err());
    }

    #[test]
    fn unknown_pallet_index_is_an_error() {
        let md = fixture_metadata();
        // One record: phase Finalization (1), then pallet index 0xfe, which no runtime has.
        let bytes = [0x04, 0x01, 0xfe, 0x00, 0x00];
        assert!(matches!(
            decode_block_events(&md, &bytes),
            Err(DecodeError::Scale(_))
        ));
    }

    #[test]
    fn u128_amounts_only_when_they_fit_u64() {
        let mut reg = scale_info::Registry::new();
        let u128_id = reg.register_type(&scale_info::MetaType::new::<u128>()).id;
        let u32_id = reg.register_type(&scale_info::MetaType::new::<u32>()).id;
        let md = Metadata {
            types: reg.into(),
            events_ty: 0,
        };
        let v = |x: u128, ty: u32| Value::u128(x).map_context(|_| ty);
        assert_eq!(balance(&md, v(5, u128_id)), Ok(5));
        assert_eq!(balance(&md, v(u128::from(u64::MAX), u128_id)), Ok(u64::MAX));
        assert!(balance(&md, v(u128::from(u64::MAX) + 1, u128_id)).is_err());
        assert!(balance(&md, v(5, u32_id)).is_err());
        // A newtype around the integer (`TaoBalance(u64)`) is unwrapped.
        let wrapped = Value::unnamed_composite([Value::u128(7)]).map_context(|_| u128_id);
        assert_eq!(balance(&md, wrapped), Ok(7));
    }
}
