//! The value-state cache of one keyed operator: the hot path of keyed processing.

use hashbrown::HashTable;

use weir_types::keygroup::key_hash;

use crate::store::{StateError, TaskState};

/// Rough per-entry bookkeeping cost, counted against the byte budget.
const ENTRY_OVERHEAD: usize = 64;

/// Bytes stored in place up to this length. Keys and values of keyed operators are
/// mostly small (an integer, a short word, a counter); keeping them inside the entry
/// makes a lookup touch one cache line instead of three.
const INLINE: usize = 18;

/// A byte string, inline when short.
#[derive(Clone)]
enum Bytes {
    Inline { len: u8, data: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Bytes {
    #[inline]
    fn new(b: &[u8]) -> Self {
        if b.len() <= INLINE {
            let mut data = [0u8; INLINE];
            data[..b.len()].copy_from_slice(b);
            Bytes::Inline { len: b.len() as u8, data }
        } else {
            Bytes::Heap(b.into())
        }
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, data } => &data[..*len as usize],
            Bytes::Heap(b) => b,
        }
    }
}

// One cache line per entry (checked by a test): no room for the key's hash, which is
// recomputed from the key when the table grows.
#[repr(align(64))]
struct Entry {
    key: Bytes,
    value: Option<Bytes>,
    /// The batch that last touched this entry and the key's index in that batch, so
    /// grouping a batch by key reads only the cache line the lookup already fetched.
    batch: u32,
    slot: u32,
    group: u16,
    /// Newer than fjall.
    dirty: bool,
    /// Changed since the last checkpoint capture.
    changed: bool,
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
    /// Entry index and the high half of the key hash, so probing never has to touch
    /// an entry (a likely cache miss) to rule out a collision.
    table: HashTable<(u32, u32)>,
    entries: Vec<Entry>,
    candidates: Vec<u32>,
    /// Where the next TTL sweep starts.
    sweep_at: usize,
}

impl ValueCache {
    pub(crate) fn new(state: TaskState, op: u32, budget: usize) -> Self {
        Self { state, op, budget, used: 0, table: HashTable::new(), entries: Vec::new(), candidates: Vec::new(), sweep_at: 0 }
    }

    /// True if the subtask owns the key group of the key whose stable hash is `hash`.
    pub fn owns(&self, hash: u64) -> bool {
        self.state.owned_group_of_hash(hash).is_ok()
    }

    /// Resolves the entries of many keys (`hashes[i]` is the stable hash of
    /// `key(i)`), appending their indices to `out` in order.
    ///
    /// Two passes, because the entries of a large state do not fit in the CPU caches:
    /// the first probes the table (small, cache-resident) and touches each candidate
    /// entry without waiting on it, so the memory system fetches many at once; the
    /// second checks keys against entries that are by then in cache.
    pub fn resolve<'k>(&mut self, hashes: &[u64], key: impl Fn(usize) -> &'k [u8], out: &mut Vec<usize>) -> Result<(), StateError> {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        for &hash in hashes {
            let tag = (hash >> 32) as u32;
            let c = self.table.find(hash, |&(_, t)| t == tag).map_or(u32::MAX, |&(i, _)| i);
            if let Some(e) = self.entries.get(c as usize) {
                prefetch(e);
            }
            candidates.push(c);
        }
        for (i, (&hash, &c)) in hashes.iter().zip(&candidates).enumerate() {
            let k = key(i);
            let index = match self.entries.get(c as usize) {
                Some(e) if e.key.as_slice() == k => c as usize,
                _ => self.entry(hash, k)?,
            };
            out.push(index);
        }
        self.candidates = candidates;
        Ok(())
    }

    /// Finds `key` (whose stable hash is `hash`), loading it from fjall on a miss.
    /// Refuses keys outside the subtask's key groups.
    #[inline]
    pub fn entry(&mut self, hash: u64, key: &[u8]) -> Result<usize, StateError> {
        let entries = &self.entries;
        let tag = (hash >> 32) as u32;
        if let Some(&(i, _)) = self.table.find(hash, |&(i, t)| t == tag && entries[i as usize].key.as_slice() == key) {
            return Ok(i as usize);
        }
        self.load(hash, key)
    }

    #[cold]
    fn load(&mut self, hash: u64, key: &[u8]) -> Result<usize, StateError> {
        let group = self.state.owned_group_of_hash(hash)?;
        let value = self.state.ks.get(TaskState::value_key(group, self.op, key))?.map(|v| Bytes::new(&v));
        let i = self.entries.len();
        self.used += ENTRY_OVERHEAD + key.len() + value.as_ref().map_or(0, |v| v.as_slice().len());
        self.entries.push(Entry { group, key: Bytes::new(key), value, batch: 0, slot: 0, dirty: false, changed: false });
        let entries = &self.entries;
        self.table.insert_unique(hash, (i as u32, (hash >> 32) as u32), |&(j, _)| key_hash(entries[j as usize].key.as_slice()));
        Ok(i)
    }

    /// Groups records by key within batch number `batch` (never 0): returns the key
    /// index of entry `index` in this batch, assigning `next` (and returning true) on the
    /// entry's first record of the batch.
    #[inline]
    pub fn batch_slot(&mut self, index: usize, batch: u32, next: u32) -> (u32, bool) {
        let e = &mut self.entries[index];
        if e.batch == batch {
            return (e.slot, false);
        }
        e.batch = batch;
        e.slot = next;
        (next, true)
    }

    /// Forgets every batch mark; for when batch numbers wrap around.
    pub fn clear_batch_marks(&mut self) {
        self.entries.iter_mut().for_each(|e| e.batch = 0);
    }

    /// The key at `index`.
    #[inline]
    pub fn key(&self, index: usize) -> &[u8] {
        self.entries[index].key.as_slice()
    }

    /// The value at `index`.
    #[inline]
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        self.entries[index].value.as_ref().map(Bytes::as_slice)
    }

    /// Replaces the value at `index` (`None` clears it).
    #[inline]
    pub fn set(&mut self, index: usize, value: Option<&[u8]>) {
        let e = &mut self.entries[index];
        let old = e.value.as_ref().map_or(0, |v| v.as_slice().len());
        match (&mut e.value, value) {
            // Overwrite in place: building a new `Bytes` on the stack and moving it in
            // stalls on store forwarding, which made this the hottest line of keyed
            // processing.
            (Some(Bytes::Inline { len, data }), Some(v)) if v.len() <= INLINE => {
                data[..v.len()].copy_from_slice(v);
                *len = v.len() as u8;
            }
            (slot, v) => *slot = v.map(Bytes::new),
        }
        e.dirty = true;
        e.changed = true;
        self.used = self.used + value.map_or(0, <[u8]>::len) - old;
    }

    /// For an operator with a state TTL, between batches: clears the expired values
    /// among the next `max` entries (a rotating cursor, so every entry is looked at
    /// every `len / max` calls). A cleared value is a state clear like any other: the
    /// deletion reaches fjall and the next incremental checkpoint. Returns how many.
    pub fn sweep_expired(&mut self, now: i64, max: usize) -> usize {
        let n = self.entries.len();
        let mut dropped = 0;
        for _ in 0..max.min(n) {
            if self.sweep_at >= n {
                self.sweep_at = 0;
            }
            let i = self.sweep_at;
            self.sweep_at += 1;
            if self.entries[i].value.as_ref().is_some_and(|v| crate::ttl::expired(v.as_slice(), now)) {
                self.set(i, None);
                dropped += 1;
            }
        }
        dropped
    }

    /// Number of cached values (keys whose state is cleared are not counted).
    pub fn live(&self) -> usize {
        self.entries.iter().filter(|e| e.value.is_some()).count()
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
            let k = TaskState::value_key(e.group, self.op, e.key.as_slice());
            if e.changed {
                // Out of the cache, the change is remembered by key until the next capture.
                self.state.note_changed(&k);
                e.changed = false;
            }
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

impl ValueCache {
    /// Appends every dirty entry (newer than fjall) to a checkpoint overlay, marking
    /// those changed since the previous capture, and starts a new change set. Copying
    /// is all the hot path pays: the entries stay cached and dirty, and fjall is not
    /// written.
    pub fn capture_into(&mut self, overlay: &mut Vec<u8>) {
        for e in self.entries.iter_mut().filter(|e| e.dirty) {
            let k = TaskState::value_key(e.group, self.op, e.key.as_slice());
            push_overlay(overlay, e.changed, &k, e.value.as_ref().map(Bytes::as_slice));
            e.changed = false;
        }
    }
}

/// Overlay record: changed flag, key, value (`u32::MAX` length: deleted).
pub(crate) fn push_overlay(out: &mut Vec<u8>, changed: bool, key: &[u8], value: Option<&[u8]>) {
    out.push(u8::from(changed));
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    match value {
        Some(v) => {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

/// Asks the CPU to start loading `e` into cache without waiting for it.
#[inline(always)]
fn prefetch(e: &Entry) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint with no architectural effect; it cannot fault and
    // reads nothing the program can observe. The pointer comes from a live reference.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((e as *const Entry).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    std::hint::black_box(e.batch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StateStore;

    #[test]
    fn an_entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Entry>(), 64);
    }

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

#[cfg(test)]
mod hit_tests {
    use crate::StateStore;
    use weir_types::keygroup::key_hash;

    #[test]
    fn repeated_keys_hit_the_cache() -> Result<(), crate::StateError> {
        let dir = tempfile::tempdir().map_err(|e| crate::StateError::Backend(e.into()))?;
        let store = StateStore::open(dir.path())?;
        let task = store.task("job", 128, 0..128)?;
        let mut cache = task.value_cache(1, 1 << 30);
        let keys: Vec<[u8; 4]> = (0..1000u32).map(u32::to_le_bytes).collect();
        let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k)).collect();
        for _ in 0..3 {
            for (k, &h) in keys.iter().zip(&hashes) {
                let i = cache.entry(h, k)?;
                assert_eq!(cache.key(i), k);
            }
            let mut out = Vec::new();
            cache.resolve(&hashes, |i| &keys[i], &mut out)?;
            assert!(out.iter().zip(&keys).all(|(&i, k)| cache.key(i) == k));
            cache.end_batch()?;
        }
        assert_eq!(cache.len(), 1000);
        // A hash whose tag matches an entry of another key must still find its own.
        let mut out = Vec::new();
        cache.resolve(&[hashes[0]], |_| b"other", &mut out)?;
        assert_eq!(cache.key(out[0]), b"other");
        Ok(())
    }
}
