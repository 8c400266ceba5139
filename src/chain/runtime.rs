//! The metadata to decode a block's events with.
//!
//! Block N's events are decoded with the metadata read at N's parent (a runtime upgrade
//! enacted in N changes N's own state, not the code that emitted N's events). Metadata is
//! about half a megabyte, so it is fetched once per `spec_version` and kept; a runtime upgrade
//! bumps the version and the next block after it fetches anew.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::events::Metadata;
use super::rpc::{BlockHash, ChainRpc, RpcError};

/// How many runtimes' metadata are kept: the current one, and a few back for a catch-up that
/// crosses upgrades.
const KEEP: usize = 4;

/// Decoded metadata by `spec_version`.
#[derive(Debug, Default)]
pub(crate) struct MetadataCache {
    by_spec: Mutex<HashMap<u32, Arc<Metadata>>>,
}

impl MetadataCache {
    /// An empty cache.
    pub(crate) fn new() -> MetadataCache {
        MetadataCache::default()
    }

    /// The metadata in force at block `parent` (pass the parent of the block whose events are
    /// decoded): `state_getRuntimeVersion(parent)`, then the cached metadata of that
    /// `spec_version`, or `state_getMetadata(parent)` decoded and cached. Undecodable
    /// metadata is [`RpcError::Decode`].
    pub(crate) async fn at_parent(
        &self,
        rpc: &ChainRpc,
        parent: BlockHash,
    ) -> Result<Arc<Metadata>, RpcError> {
        let spec = rpc.runtime_version(Some(parent)).await?.spec_version;
        if let Some(md) = self.lock().get(&spec) {
            return Ok(md.clone());
        }
        let bytes = rpc.metadata(Some(parent)).await?;
        let md = Arc::new(Metadata::decode(&bytes).map_err(|e| RpcError::Decode(e.to_string()))?);
        let mut map = self.lock();
        if map.len() >= KEEP && !map.contains_key(&spec) {
            // Drop the oldest runtime: spec versions only grow on a live chain.
            if let Some(oldest) = map.keys().min().copied() {
                map.remove(&oldest);
            }
        }
        Ok(map.entry(spec).or_insert(md).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Metadata>>> {
        self.by_spec.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::testing::{MockNode, Reply, client, fixture_metadata_bytes};
    use serde_json::json;

    #[tokio::test]
    async fn fetched_once_per_spec_version_at_the_parent() {
        let md_hex = format!("0x{}", hex::encode(fixture_metadata_bytes()));
        let node = MockNode::start(move |method, params| {
            // Block 0x22… is after a runtime upgrade: spec 426.
            let upgraded = params[0].as_str().is_some_and(|h| h.starts_with("0x22"));
            match method {
                "state_getRuntimeVersion" => {
                    Reply::Result(json!({"specVersion": if upgraded { 426 } else { 425 }}))
                }
                "state_getMetadata" => Reply::Result(json!(md_hex.clone())),
                _ => Reply::Error(-32601, "Method not found".into()),
            }
        })
        .await;
        let (rpc, _) = client(&[&node], &[]);
        let cache = MetadataCache::new();
        let a = cache.at_parent(&rpc, [0x11; 32]).await.unwrap();
        let b = cache.at_parent(&rpc, [0x12; 32]).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(node.calls("state_getMetadata"), 1);
        assert_eq!(node.calls("state_getRuntimeVersion"), 2);
        let c = cache.at_parent(&rpc, [0x22; 32]).await.unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(node.calls("state_getMetadata"), 2);
    }

    #[tokio::test]
    async fn undecodable_metadata_is_a_decode_error() {
        let node = MockNode::start(|method, _| match method {
            "state_getRuntimeVersion" => Reply::Result(json!({"specVersion": 1})),
            _ => Reply::Result(json!("0x6d657461")),
        })
        .await;
        let (rpc, _) = client(&[&node], &[]);
        let err = MetadataCache::new()
            .at_parent(&rpc, [0; 32])
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Decode(_)), "{err:?}");
    }
}
