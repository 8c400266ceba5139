//! The runtimes the simulated chain runs: the recorded finney metadata (generation 0) and an
//! upgraded one derived from it, and the encoding of `System.Events` through their type
//! registries (never through hand-written byte offsets).
//!
//! The upgraded metadata differs where a decoder would notice: `Balances`' event variants are
//! re-indexed (reversed, so `Transfer` is no longer variant 2) and `System.ExtrinsicSuccess`
//! gains a trailing `upgrade_marker: u32` field. Decoding post-upgrade events with the old
//! metadata therefore fails or yields other events; a gateway must use the metadata of the
//! block's parent.

use std::sync::{Arc, OnceLock};

use frame_metadata::v14::RuntimeMetadataV14;
use frame_metadata::{META_RESERVED, RuntimeMetadata, RuntimeMetadataPrefixed};
use parity_scale_codec::{Decode, Encode};
use scale_info::form::PortableForm;
use scale_info::{Field, PortableRegistry, TypeDef, TypeDefPrimitive};
use scale_value::{Composite, Value};

/// The recorded `state_getMetadata` answer (finney, spec 343), compiled in so the crate stands
/// alone.
const METADATA_HEX: &str = include_str!("../fixtures/state_getMetadata.hex");

/// Name of the field the upgraded runtime adds to `System.ExtrinsicSuccess`.
pub(crate) const UPGRADE_MARKER_FIELD: &str = "upgrade_marker";

/// The recorded metadata, decoded once.
pub(crate) fn base_metadata() -> &'static RuntimeMetadataV14 {
    static BASE: OnceLock<RuntimeMetadataV14> = OnceLock::new();
    BASE.get_or_init(|| {
        let bytes = hex::decode(METADATA_HEX.trim().trim_start_matches("0x"))
            .expect("the compiled-in metadata fixture is hex");
        let prefixed = RuntimeMetadataPrefixed::decode(&mut &bytes[..])
            .expect("the compiled-in metadata fixture is SCALE RuntimeMetadataPrefixed");
        match prefixed.1 {
            RuntimeMetadata::V14(m) => m,
            _ => panic!("the compiled-in metadata fixture is V14"),
        }
    })
}

/// Where an event record applies (`frame_system::Phase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    ApplyExtrinsic(u32),
    Finalization,
    Initialization,
}

/// One event to encode: the pallet and variant by name, and the leading fields by position;
/// fields the runtime's metadata has beyond those are synthesised from their types.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) phase: Phase,
    pub(crate) pallet: &'static str,
    pub(crate) variant: &'static str,
    pub(crate) fields: Vec<Value>,
    /// Seeds the synthesised fields, so a block's bytes depend only on its number and content.
    pub(crate) seed: u64,
}

/// One runtime version: its metadata and what is needed to encode events with it.
pub(crate) struct Runtime {
    pub(crate) spec_version: u32,
    metadata: RuntimeMetadataV14,
    /// SCALE `RuntimeMetadataPrefixed` bytes as served by `state_getMetadata`.
    pub(crate) metadata_bytes: Arc<Vec<u8>>,
    /// `0x…` of `metadata_bytes`, cached: it is half a megabyte.
    pub(crate) metadata_hex: Arc<str>,
    /// Type id of `System.Events` (`Vec<EventRecord>`).
    events_ty: u32,
}

impl Runtime {
    /// The runtime of upgrade `generation` (0 = the recorded one). Odd generations run the
    /// derived metadata, even ones the recorded layout, so every upgrade changes the encoding.
    pub(crate) fn new(generation: u32, spec_version: u32) -> Runtime {
        let mut metadata = base_metadata().clone();
        if generation % 2 == 1 {
            derive_upgrade(&mut metadata);
        }
        patch_spec_version(&mut metadata, spec_version);
        let bytes =
            RuntimeMetadataPrefixed(META_RESERVED, RuntimeMetadata::V14(metadata.clone())).encode();
        let events_ty = events_type(&metadata);
        Runtime {
            spec_version,
            metadata_hex: Arc::from(format!("0x{}", hex::encode(&bytes))),
            metadata_bytes: Arc::new(bytes),
            metadata,
            events_ty,
        }
    }

    /// The type registry (tests decode events with it).
    #[cfg(test)]
    pub(crate) fn types(&self) -> &PortableRegistry {
        &self.metadata.types
    }

    /// Type id of `Vec<EventRecord>`.
    #[cfg(test)]
    pub(crate) fn events_type_id(&self) -> u32 {
        self.events_ty
    }

    /// SCALE bytes of `Vec<EventRecord>` for `records`, encoded through this runtime's types.
    ///
    /// # Panics
    /// When a record names an event this metadata lacks or a field cannot take its value: the
    /// simulator only builds records from a fixed, tested set, so this is a bug, and silently
    /// dropping an event (a transfer) would be worse.
    pub(crate) fn encode_events(&self, records: &[Record]) -> Vec<u8> {
        let values: Vec<Value> = records.iter().map(|r| self.record_value(r)).collect();
        let value = Value::unnamed_composite(values);
        let mut out = Vec::new();
        scale_value::scale::encode_as_type(&value, self.events_ty, &self.metadata.types, &mut out)
            .unwrap_or_else(|e| panic!("chain-sim: cannot encode events {records:?}: {e}"));
        out
    }

    fn record_value(&self, record: &Record) -> Value {
        let phase = match record.phase {
            Phase::ApplyExtrinsic(i) => {
                Value::unnamed_variant("ApplyExtrinsic", [Value::u128(u128::from(i))])
            }
            Phase::Finalization => Value::unnamed_variant("Finalization", []),
            Phase::Initialization => Value::unnamed_variant("Initialization", []),
        };
        let event = self.event_value(record);
        Value::named_composite([
            ("phase", phase),
            ("event", event),
            ("topics", Value::unnamed_composite([])),
        ])
    }

    /// `RuntimeEvent::<pallet>(<pallet>::Event::<variant>{…})`.
    fn event_value(&self, record: &Record) -> Value {
        let types = &self.metadata.types;
        let pallet = self
            .metadata
            .pallets
            .iter()
            .find(|p| p.name == record.pallet)
            .unwrap_or_else(|| panic!("chain-sim: no pallet {}", record.pallet));
        let ty = pallet
            .event
            .as_ref()
            .unwrap_or_else(|| panic!("chain-sim: pallet {} has no events", record.pallet))
            .ty
            .id;
        let TypeDef::Variant(def) = &types.resolve(ty).expect("event type id").type_def else {
            panic!("chain-sim: {} events are not an enum", record.pallet);
        };
        let variant = def
            .variants
            .iter()
            .find(|v| v.name == record.variant)
            .unwrap_or_else(|| panic!("chain-sim: no event {}.{}", record.pallet, record.variant));
        let mut seed = record.seed;
        let mut given = record.fields.iter().cloned();
        let values: Vec<Value> = variant
            .fields
            .iter()
            .map(|f| {
                given
                    .next()
                    .unwrap_or_else(|| synth(types, f.ty.id, &mut seed, 0))
            })
            .collect();
        let inner = Value::variant(variant.name.clone(), composite(&variant.fields, values));
        Value::unnamed_variant(record.pallet, [inner])
    }
}

/// The `System.Events` storage type.
fn events_type(metadata: &RuntimeMetadataV14) -> u32 {
    let system = metadata
        .pallets
        .iter()
        .find(|p| p.name == "System")
        .expect("System pallet");
    let entry = system
        .storage
        .as_ref()
        .and_then(|s| s.entries.iter().find(|e| e.name == "Events"))
        .expect("System.Events storage");
    match &entry.ty {
        frame_metadata::v14::StorageEntryType::Plain(ty) => ty.id,
        frame_metadata::v14::StorageEntryType::Map { value, .. } => value.id,
    }
}

fn pallet_event_ty(metadata: &RuntimeMetadataV14, pallet: &str) -> u32 {
    metadata
        .pallets
        .iter()
        .find(|p| p.name == pallet)
        .and_then(|p| p.event.as_ref())
        .map(|e| e.ty.id)
        .unwrap_or_else(|| panic!("chain-sim: metadata has no {pallet} events"))
}

/// Changes the event encoding the way a real upgrade could: reversed `Balances` event indexes
/// and an extra `u32` at the end of `System.ExtrinsicSuccess`.
fn derive_upgrade(metadata: &mut RuntimeMetadataV14) {
    let balances = pallet_event_ty(metadata, "Balances");
    let system = pallet_event_ty(metadata, "System");
    let u32_ty = metadata
        .types
        .types
        .iter()
        .find(|t| {
            t.ty.path.segments.is_empty()
                && matches!(t.ty.type_def, TypeDef::Primitive(TypeDefPrimitive::U32))
        })
        .map(|t| t.id)
        .expect("the registry has a u32");
    for t in &mut metadata.types.types {
        let TypeDef::Variant(def) = &mut t.ty.type_def else {
            continue;
        };
        if t.id == balances {
            let max = def.variants.iter().map(|v| v.index).max().unwrap_or(0);
            for v in &mut def.variants {
                v.index = max - v.index;
            }
        } else if t.id == system {
            let success = def
                .variants
                .iter_mut()
                .find(|v| v.name == "ExtrinsicSuccess")
                .expect("System.ExtrinsicSuccess");
            success.fields.push(Field {
                name: Some(UPGRADE_MARKER_FIELD.to_owned()),
                ty: u32_ty.into(),
                type_name: Some("u32".to_owned()),
                docs: Vec::new(),
            });
        }
    }
}

/// Sets `spec_version` in the `System.Version` constant (a SCALE `RuntimeVersion`: two strings,
/// `authoring_version: u32`, then `spec_version: u32`), so the metadata agrees with
/// `state_getRuntimeVersion`.
fn patch_spec_version(metadata: &mut RuntimeMetadataV14, spec_version: u32) {
    let Some(system) = metadata.pallets.iter_mut().find(|p| p.name == "System") else {
        return;
    };
    let Some(version) = system.constants.iter_mut().find(|c| c.name == "Version") else {
        return;
    };
    let mut rest = &version.value[..];
    let prefix_ok = String::decode(&mut rest).is_ok()
        && String::decode(&mut rest).is_ok()
        && u32::decode(&mut rest).is_ok()
        && rest.len() >= 4;
    if prefix_ok {
        let at = version.value.len() - rest.len();
        version.value[at..at + 4].copy_from_slice(&spec_version.to_le_bytes());
    }
}

fn composite(fields: &[Field<PortableForm>], values: Vec<Value>) -> Composite<()> {
    if !fields.is_empty() && fields.iter().all(|f| f.name.is_some()) {
        Composite::Named(
            fields
                .iter()
                .zip(values)
                .map(|(f, v)| (f.name.clone().unwrap_or_default(), v))
                .collect(),
        )
    } else {
        Composite::Unnamed(values)
    }
}

/// splitmix64: deterministic noise without a dependency.
pub(crate) fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A plausible value of type `id`, for the fields of noise events. Deep in the type tree it
/// picks empty sequences and the smallest enum variants so recursive types terminate.
fn synth(types: &PortableRegistry, id: u32, seed: &mut u64, depth: u32) -> Value {
    let ty = types.resolve(id).expect("type id from the registry");
    match &ty.type_def {
        TypeDef::Composite(c) => {
            let values = c
                .fields
                .iter()
                .map(|f| synth(types, f.ty.id, seed, depth + 1))
                .collect();
            Value::from(composite(&c.fields, values))
        }
        TypeDef::Variant(v) => {
            let pick = if depth < 3 && !v.variants.is_empty() {
                &v.variants[(next(seed) % v.variants.len() as u64) as usize]
            } else {
                v.variants
                    .iter()
                    .min_by_key(|v| v.fields.len())
                    .expect("an enum has variants")
            };
            let values = pick
                .fields
                .iter()
                .map(|f| synth(types, f.ty.id, seed, depth + 1))
                .collect();
            Value::variant(pick.name.clone(), composite(&pick.fields, values))
        }
        TypeDef::Sequence(s) => {
            let n = if depth < 3 { 1 } else { 0 };
            Value::unnamed_composite(
                (0..n)
                    .map(|_| synth(types, s.type_param.id, seed, depth + 1))
                    .collect::<Vec<_>>(),
            )
        }
        TypeDef::Array(a) => Value::unnamed_composite(
            (0..a.len)
                .map(|_| synth(types, a.type_param.id, seed, depth + 1))
                .collect::<Vec<_>>(),
        ),
        TypeDef::Tuple(t) => Value::unnamed_composite(
            t.fields
                .iter()
                .map(|f| synth(types, f.id, seed, depth + 1))
                .collect::<Vec<_>>(),
        ),
        TypeDef::Primitive(p) => primitive(p, next(seed)),
        TypeDef::Compact(c) => synth(types, c.type_param.id, seed, depth + 1),
        TypeDef::BitSequence(_) => Value::bit_sequence(scale_value::BitSequence::new()),
    }
}

fn primitive(p: &TypeDefPrimitive, r: u64) -> Value {
    match p {
        TypeDefPrimitive::Bool => Value::bool(r.is_multiple_of(2)),
        TypeDefPrimitive::Char => Value::char('s'),
        TypeDefPrimitive::Str => Value::string("chain-sim"),
        TypeDefPrimitive::U8 => Value::u128(u128::from(r % 256)),
        TypeDefPrimitive::U16 => Value::u128(u128::from(r % 65_536)),
        TypeDefPrimitive::U32 => Value::u128(u128::from(r % 1_000_000)),
        TypeDefPrimitive::U64 | TypeDefPrimitive::U128 | TypeDefPrimitive::U256 => {
            Value::u128(u128::from(r % 1_000_000_000_000))
        }
        TypeDefPrimitive::I8 => Value::i128(i128::from(r % 100) - 50),
        _ => Value::i128(i128::from(r % 1_000_000) - 500_000),
    }
}

/// `AccountId32` as a value: a composite around `[u8; 32]`.
pub(crate) fn account(key: &[u8; 32]) -> Value {
    Value::unnamed_composite([Value::from_bytes(key)])
}

/// A balance or other plain number.
pub(crate) fn number(n: u64) -> Value {
    Value::u128(u128::from(n))
}
