//! Claims and sets of the memory backend (see [`crate::store::sets`]).
//!
//! A set is one entry whose value is the JSON array of its members, sorted: every operation
//! reads, changes and writes it under the shard lock, so it is atomic like its Redis command.
//! An entry that is not such an array is a plain value, refused like Redis' `WRONGTYPE`.

use std::collections::BTreeSet;

use super::{Entry, MemoryStore};
use crate::store::StoreError;

fn wrong_type() -> StoreError {
    StoreError::Protocol("WRONGTYPE the key holds a value, not a set".to_owned())
}

fn decode(value: &[u8]) -> Result<BTreeSet<String>, StoreError> {
    serde_json::from_slice(value).map_err(|_| wrong_type())
}

fn encode(set: &BTreeSet<String>) -> Vec<u8> {
    // A set of strings always serialises.
    serde_json::to_vec(set).unwrap_or_default()
}

impl MemoryStore {
    pub(in crate::store) fn set_nx(&self, key: &str, value: &[u8]) -> bool {
        self.set_if_absent(key, value, None)
    }

    pub(in crate::store) fn del_if_eq(&self, key: &str, value: &[u8]) -> bool {
        let key = self.full_key(key);
        let now = self.data.clock.now();
        let mut shard = self.shard(&key);
        if shard.live(&key, now).is_some_and(|e| e.value == value) {
            shard.map.remove(&key);
            return true;
        }
        false
    }

    pub(in crate::store) fn sadd(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        let key = self.full_key(key);
        let now = self.data.clock.now();
        let mut shard = self.shard(&key);
        if let Some(entry) = shard.live(&key, now) {
            let mut set = decode(&entry.value)?;
            let added = set.insert(member.to_owned());
            if added {
                entry.value = encode(&set);
            }
            return Ok(added);
        }
        let set = BTreeSet::from([member.to_owned()]);
        let entry = Entry {
            value: encode(&set),
            expires_at: None,
        };
        shard.insert(key, entry, now);
        Ok(true)
    }

    pub(in crate::store) fn srem(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        let key = self.full_key(key);
        let now = self.data.clock.now();
        let mut shard = self.shard(&key);
        let Some(entry) = shard.live(&key, now) else {
            return Ok(false);
        };
        let mut set = decode(&entry.value)?;
        if !set.remove(member) {
            return Ok(false);
        }
        if set.is_empty() {
            // Like Redis: a set without members does not exist.
            shard.map.remove(&key);
        } else {
            entry.value = encode(&set);
        }
        Ok(true)
    }

    pub(in crate::store) fn smembers(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let key = self.full_key(key);
        let now = self.data.clock.now();
        let mut shard = self.shard(&key);
        match shard.live(&key, now) {
            Some(entry) => Ok(decode(&entry.value)?.into_iter().collect()),
            None => Ok(Vec::new()),
        }
    }
}
