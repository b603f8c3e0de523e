//! The session store (100ms's `set-metadata`, `get-metadata`, `listen-metadata-change` and the
//! `on-metadata-change` push): a key/value store per session that every joined peer may read
//! and write, and observe key by key. Prebuilt keeps pinned chat messages and the spotlight in
//! it.
//!
//! 100ms's limits: a value of at most 1 KB, at most 100 keys, 64 KB in all with the keys. A key
//! set to `null` is removed. A write may carry `if_change_version` (compare-and-set): it is
//! refused with 409 unless the key's version is still that one. The store is part of the
//! room's snapshot (a restarted signaling keeps it) and is emptied when the session ends.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::rpc::Param;
use super::{Refusal, Room};
use crate::rpc::{self, code};

/// A value's size, as its JSON text.
pub(super) const MAX_VALUE_BYTES: usize = 1024;
pub(super) const MAX_KEYS: usize = 100;
/// Every key and value together.
pub(super) const MAX_TOTAL_BYTES: usize = 64 * 1024;
/// A key: a non-empty string of at most this many bytes.
pub(super) const MAX_KEY_BYTES: usize = 256;

/// One session's keys and values.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct SessionStore {
    entries: BTreeMap<String, Entry>,
    /// The last version handed out; each write gets the next.
    version: u64,
}

/// A key's value and who wrote it when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Entry {
    data: Value,
    updated_by: String,
    /// Unix ms.
    updated_at: u64,
    change_version: u64,
}

/// Why a write is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum StoreError {
    #[error("a key must be a string of 1 to {MAX_KEY_BYTES} bytes")]
    BadKey,
    #[error("a value may be at most {MAX_VALUE_BYTES} bytes as JSON (this one is {0})")]
    ValueTooLarge(usize),
    #[error("the session store holds at most {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("the session store holds at most {MAX_TOTAL_BYTES} bytes of keys and values")]
    Full,
    #[error("the key changed since version {expected} (now {current})")]
    VersionMismatch { expected: u64, current: u64 },
}

impl StoreError {
    fn refusal(&self) -> Refusal {
        let code = match self {
            StoreError::BadKey => code::BAD_REQUEST,
            StoreError::ValueTooLarge(_) | StoreError::TooManyKeys | StoreError::Full => code::TOO_LARGE,
            StoreError::VersionMismatch { .. } => code::CONFLICT,
        };
        Refusal::new(code, self.to_string())
    }
}

impl Entry {
    /// The entry as 100ms's notifications and answers spell it.
    fn json(&self, key: &str) -> Value {
        json!({
            "key": key,
            "data": self.data,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
            "change_version": self.change_version,
        })
    }

    fn bytes(&self, key: &str) -> usize {
        key.len() + self.data.to_string().len()
    }
}

impl SessionStore {
    pub(super) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Sets `key` to `data` (`null` removes it); returns the entry as written (`data` null for
    /// a removal). Nothing changes when the write is refused.
    pub(super) fn set(
        &mut self,
        key: &str,
        data: Value,
        by: &str,
        at_ms: u64,
        if_version: Option<u64>,
    ) -> Result<Entry, StoreError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(StoreError::BadKey);
        }
        if let Some(expected) = if_version {
            let current = self.entries.get(key).map_or(0, |e| e.change_version);
            if current != expected {
                return Err(StoreError::VersionMismatch { expected, current });
            }
        }
        let size = data.to_string().len();
        if size > MAX_VALUE_BYTES {
            return Err(StoreError::ValueTooLarge(size));
        }
        let entry = Entry { data, updated_by: by.to_owned(), updated_at: at_ms, change_version: self.version + 1 };
        if entry.data.is_null() {
            self.entries.remove(key);
        } else {
            let old = self.entries.get(key).map_or(0, |e| e.bytes(key));
            if old == 0 && self.entries.len() >= MAX_KEYS {
                return Err(StoreError::TooManyKeys);
            }
            if self.total_bytes() - old + entry.bytes(key) > MAX_TOTAL_BYTES {
                return Err(StoreError::Full);
            }
            self.entries.insert(key.to_owned(), entry.clone());
        }
        self.version += 1;
        Ok(entry)
    }

    fn total_bytes(&self) -> usize {
        self.entries.iter().map(|(k, e)| e.bytes(k)).sum()
    }

    /// The session ended: everything goes.
    pub(super) fn clear(&mut self) {
        *self = SessionStore::default();
    }
}

/// `set-metadata {key, data, if_change_version}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SetMetadataParams {
    pub key: Param<String>,
    /// Any JSON value; absent or `null` removes the key.
    pub data: Param<Value>,
    pub if_change_version: Param<u64>,
}

/// `get-metadata {key}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct GetMetadataParams {
    pub key: Param<String>,
}

/// `listen-metadata-change {keys}`: the whole set of keys the peer observes from now on.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ListenMetadataParams {
    pub keys: Param<Vec<String>>,
}

impl Room {
    pub(super) fn set_metadata(&mut self, peer_id: &str, params: SetMetadataParams) -> Result<Value, Refusal> {
        self.requester(peer_id)?;
        let key = params.key.or_refuse(code::INVALID_PARAMS, "key must be a string")?.unwrap_or_default();
        let version = params.if_change_version.or_refuse(code::INVALID_PARAMS, "if_change_version must be a number")?;
        let data = params.data.valid().unwrap_or(Value::Null);
        let entry = self.session_store.set(&key, data, peer_id, util::unix_ms(), version).map_err(|e| e.refusal())?;
        let change = entry.json(&key);
        let text = rpc::push("on-metadata-change", json!({ "values": [change] }));
        for p in self.peers.values().filter(|p| p.joined && p.observed_keys.contains(&key)) {
            p.send(text.clone());
        }
        Ok(change)
    }

    pub(super) fn get_metadata(&self, peer_id: &str, params: GetMetadataParams) -> Result<Value, Refusal> {
        self.requester(peer_id)?;
        let key = params.key.or_refuse(code::INVALID_PARAMS, "key must be a string")?.unwrap_or_default();
        // A missing key answers `data: null`, never a null result (the SDK reads the object).
        Ok(self.session_store.get(&key).map_or_else(|| json!({ "key": key, "data": null }), |e| e.json(&key)))
    }

    pub(super) fn listen_metadata_change(
        &mut self,
        peer_id: &str,
        params: ListenMetadataParams,
    ) -> Result<Value, Refusal> {
        self.requester(peer_id)?;
        let keys = params.keys.or_refuse(code::INVALID_PARAMS, "keys must be a list of strings")?.unwrap_or_default();
        if keys.len() > MAX_KEYS || keys.iter().any(|k| k.is_empty() || k.len() > MAX_KEY_BYTES) {
            return Err(Refusal::new(
                code::BAD_REQUEST,
                format!("keys: at most {MAX_KEYS}, each a string of 1 to {MAX_KEY_BYTES} bytes"),
            ));
        }
        let keys: BTreeSet<String> = keys.into_iter().collect();
        // The SDK does not ask for the values of the keys it starts observing: they come now.
        let values: Vec<Value> = keys.iter().filter_map(|k| self.session_store.get(k).map(|e| e.json(k))).collect();
        let Some(peer) = self.peers.get_mut(peer_id) else { return Ok(json!({})) };
        peer.observed_keys = keys;
        if !values.is_empty() {
            peer.push("on-metadata-change", json!({ "values": values }));
        }
        Ok(json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_version_and_remove_and_a_refused_write_changes_nothing() {
        let mut s = SessionStore::default();
        let a = s.set("pinned", json!({"text": "hello"}), "p1", 10, None).unwrap();
        assert_eq!(a.change_version, 1);
        let b = s.set("pinned", json!("bye"), "p2", 20, Some(1)).unwrap();
        assert_eq!((b.change_version, b.updated_by.as_str()), (2, "p2"));
        let stale = s.set("pinned", json!("x"), "p1", 30, Some(1)).unwrap_err();
        assert_eq!(stale, StoreError::VersionMismatch { expected: 1, current: 2 });
        assert_eq!(s.get("pinned").unwrap().data, json!("bye"));
        // Compare-and-set on a key that does not exist yet: version 0.
        assert!(s.set("new", json!(1), "p1", 30, Some(0)).is_ok());
        s.set("pinned", Value::Null, "p1", 40, None).unwrap();
        assert!(s.get("pinned").is_none());
        assert_eq!(s.set("", json!(1), "p1", 50, None).unwrap_err(), StoreError::BadKey);
        assert_eq!(s.set(&"k".repeat(MAX_KEY_BYTES + 1), json!(1), "p1", 50, None).unwrap_err(), StoreError::BadKey);
    }

    #[test]
    fn the_limits_are_100ms_s_and_hold_with_keys_counted() {
        let mut s = SessionStore::default();
        let too_big = json!("x".repeat(MAX_VALUE_BYTES));
        assert!(matches!(s.set("k", too_big, "p", 0, None), Err(StoreError::ValueTooLarge(_))));
        for i in 0..MAX_KEYS {
            s.set(&format!("key{i}"), json!(i), "p", 0, None).unwrap();
        }
        assert_eq!(s.set("one-more", json!(1), "p", 0, None).unwrap_err(), StoreError::TooManyKeys);
        // An existing key may still change, and a removal makes room.
        s.set("key0", json!("changed"), "p", 0, None).unwrap();
        s.set("key1", Value::Null, "p", 0, None).unwrap();
        s.set("one-more", json!(1), "p", 0, None).unwrap();
        // 64 KB in all: about 64 values of 1 KB fit, not 100.
        let mut s = SessionStore::default();
        let kb = json!("y".repeat(MAX_VALUE_BYTES - 10));
        let mut stored = 0;
        while s.set(&format!("big{stored}"), kb.clone(), "p", 0, None).is_ok() {
            stored += 1;
        }
        assert!((60..=64).contains(&stored), "{stored} values of 1 KB fit");
        assert!(s.total_bytes() <= MAX_TOTAL_BYTES);
        s.clear();
        assert!(s.get("big0").is_none());
    }
}
