//! The value-state cache of one keyed operator: the hot path of keyed processing.

use hashbrown::HashTable;

use crate::store::{StateError, TaskState};

/// Rough per-entry bookkeeping cost, counted against the byte budget.
const ENTRY_OVERHEAD: usize = 64;

struct Entry {
    hash: u64,
    group: u16,
    key: Box<[u8]>,
    value: Option<Vec<u8>>,
    dirty: bool,
}

/// In-memory value state of one operator's keys, in front of fjall.
///
/// Entry indices returned by [`ValueCache::entry`] stay valid until the next
/// [`ValueCache::end_batch`], which may evict; callers resolve keys, read and write
/// values by index within one batch. The table stores only indices, hashed with the
/// key's stable hash the caller already computed for routing, so a lookup hashes
/// nothing twice.
pub struct ValueCache {
    state: TaskState,
    op: u32,
    budget: usize,
    used: usize,
    table: HashTable<u32>,
    entries: Vec<Entry>,
}

impl ValueCache {
    pub(crate) fn new(state: TaskState, op: u32, budget: usize) -> Self {
        Self { state, op, budget, used: 0, table: HashTable::new(), entries: Vec::new() }
    }

    /// Finds `key` (whose stable hash is `hash`), loading it from fjall on a miss.
    /// Refuses keys outside the subtask's key groups.
    #[inline]
    pub fn entry(&mut self, hash: u64, key: &[u8]) -> Result<usize, StateError> {
        let entries = &self.entries;
        if let Some(&i) = self.table.find(hash, |&i| {
            let e = &entries[i as usize];
            e.hash == hash && &*e.key == key
        }) {
            return Ok(i as usize);
        }
        self.load(hash, key)
    }

    #[cold]
    fn load(&mut self, hash: u64, key: &[u8]) -> Result<usize, StateError> {
        let group = self.state.owned_group_of_hash(hash)?;
        let value = self.state.ks.get(TaskState::value_key(group, self.op, key))?.map(|v| v.to_vec());
        let i = self.entries.len();
        self.used += ENTRY_OVERHEAD + key.len() + value.as_ref().map_or(0, Vec::len);
        self.entries.push(Entry { hash, group, key: key.into(), value, dirty: false });
        let entries = &self.entries;
        self.table.insert_unique(hash, i as u32, |&j| entries[j as usize].hash);
        Ok(i)
    }

    /// The key at `index`.
    #[inline]
    pub fn key(&self, index: usize) -> &[u8] {
        &self.entries[index].key
    }

    /// The value at `index`.
    #[inline]
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        self.entries[index].value.as_deref()
    }

    /// Replaces the value at `index` (`None` clears it).
    #[inline]
    pub fn set(&mut self, index: usize, value: Option<&[u8]>) {
        let e = &mut self.entries[index];
        let old = e.value.as_ref().map_or(0, Vec::len);
        match (value, &mut e.value) {
            // Reuse the allocation: the common case is a same-size update.
            (Some(v), Some(cur)) => {
                cur.clear();
                cur.extend_from_slice(v);
            }
            (Some(v), slot) => *slot = Some(v.to_vec()),
            (None, slot) => *slot = None,
        }
        e.dirty = true;
        self.used = self.used + value.map_or(0, <[u8]>::len) - old;
    }

    /// Number of cached keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Ends a batch: if the cache outgrew its budget, writes it back and empties it.
    pub fn end_batch(&mut self) -> Result<(), StateError> {
        if self.used > self.budget {
            self.flush()?;
            self.entries.clear();
            self.table.clear();
            self.used = 0;
        }
        Ok(())
    }

    /// Writes every dirty entry to fjall in one write batch.
    pub fn flush(&mut self) -> Result<(), StateError> {
        let mut batch = self.state.db.batch();
        for e in self.entries.iter_mut().filter(|e| e.dirty) {
            let k = TaskState::value_key(e.group, self.op, &e.key);
            match &e.value {
                Some(v) => batch.insert(&self.state.ks, k, v.as_slice()),
                None => batch.remove(&self.state.ks, k),
            }
            e.dirty = false;
        }
        if !batch.is_empty() {
            batch.commit()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StateStore;
    use weir_types::keygroup::key_hash;

    #[test]
    fn values_survive_eviction_and_reload_from_fjall() -> Result<(), StateError> {
        let dir = tempfile::tempdir().map_err(|e| StateError::Backend(e.into()))?;
        let store = StateStore::open(dir.path())?;
        let task = store.task("job", 128, 0..128)?;
        // A tiny budget forces an eviction at every batch end.
        let mut cache = task.value_cache(3, 1);
        for round in 0..3u8 {
            for k in 0..50u8 {
                let key = [k];
                let i = cache.entry(key_hash(&key), &key)?;
                let next = cache.get(i).map_or(0, |v| v[0]) + 1;
                assert_eq!(next, round + 1, "key {k}");
                cache.set(i, Some(&[next]));
            }
            cache.end_batch()?;
            assert!(cache.is_empty());
        }
        let other_op = task.value_cache(4, 1 << 20).entry(key_hash(&[0]), &[0])?;
        assert_eq!(other_op, 0);
        let mut again = task.value_cache(4, 1 << 20);
        let i = again.entry(key_hash(&[0]), &[0])?;
        assert_eq!(again.get(i), None, "operators do not share value state");
        let mut mine = task.value_cache(3, 1 << 20);
        let i = mine.entry(key_hash(&[7]), &[7])?;
        assert_eq!(mine.get(i), Some(&[3u8][..]));
        Ok(())
    }
}
