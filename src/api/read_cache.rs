//! Answers of the hottest reads (an API key by prefix, `GET /campaigns/{id}`'s body) kept in
//! memory for as long as the database has not changed.
//!
//! Every entry is tagged with the store's data version read *before* the database was (see
//! [`crate::store::Health::data_version`]); a request reads the version once, in the auth layer,
//! and takes only entries of that very version. Any commit, by this process (a PATCH, the engine
//! counting an outcome) or another (`outbound keys revoke`), moves the version on, so a cached
//! answer is never older than the request that receives it. Only the newest version's entries are
//! kept, at most [`MAX_ENTRIES`] of each kind, so memory stays bounded. Stores that cannot tell
//! their version cheaply (PostgreSQL) report none, and nothing is cached for them.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;

use crate::store::{ApiKeyRecord, OrgId};

/// Entries kept per kind; reaching it empties that kind (a new version empties it anyway).
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub struct ReadCache {
    keys: Mutex<Generation<String, Arc<ApiKeyRecord>>>,
    campaigns: Mutex<Generation<(OrgId, i64), Bytes>>,
}

impl ReadCache {
    pub fn key(&self, version: u64, prefix: &str) -> Option<Arc<ApiKeyRecord>> {
        lock(&self.keys).get(version, prefix)
    }

    pub fn keep_key(&self, version: u64, prefix: &str, record: Arc<ApiKeyRecord>) {
        lock(&self.keys).insert(version, prefix.to_owned(), record);
    }

    /// The JSON body of `GET /campaigns/{id}`.
    pub fn campaign(&self, version: u64, org: OrgId, id: i64) -> Option<Bytes> {
        lock(&self.campaigns).get(version, &(org, id))
    }

    pub fn keep_campaign(&self, version: u64, org: OrgId, id: i64, body: Bytes) {
        lock(&self.campaigns).insert(version, (org, id), body);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Entries read under one data version.
struct Generation<K, V> {
    version: u64,
    entries: HashMap<K, V>,
}

impl<K, V> Default for Generation<K, V> {
    fn default() -> Self {
        Generation { version: 0, entries: HashMap::new() }
    }
}

impl<K: Hash + Eq, V: Clone> Generation<K, V> {
    fn get<Q>(&self, version: u64, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if version != self.version {
            return None;
        }
        self.entries.get(key).cloned()
    }

    /// Versions only grow: an entry read under an older version than the kept ones is dropped,
    /// a newer one replaces them all.
    fn insert(&mut self, version: u64, key: K, value: V) {
        if version < self.version {
            return;
        }
        if version > self.version || self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
            self.version = version;
        }
        self.entries.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_version_is_served() {
        let mut cache = Generation::<&str, u32>::default();
        cache.insert(3, "a", 1);
        assert_eq!(cache.get(3, "a"), Some(1));
        assert_eq!(cache.get(4, "a"), None, "a later version must not see an older read");
        assert_eq!(cache.get(2, "a"), None);
        cache.insert(2, "b", 2);
        assert_eq!(cache.get(2, "b"), None, "an older read is not kept");
        assert_eq!(cache.get(3, "b"), None);
        cache.insert(4, "b", 3);
        assert_eq!(cache.get(4, "b"), Some(3));
        assert_eq!(cache.get(4, "a"), None, "a newer version drops the older entries");
    }

    #[test]
    fn entries_stay_bounded() {
        let mut cache = Generation::<usize, usize>::default();
        for i in 0..MAX_ENTRIES {
            cache.insert(1, i, i);
        }
        assert_eq!(cache.entries.len(), MAX_ENTRIES);
        cache.insert(1, MAX_ENTRIES, 0);
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.get(1, &MAX_ENTRIES), Some(0));
    }
}
