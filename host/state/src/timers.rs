//! Per-key timers of one keyed operator in one subtask, as Flink's timer service keeps
//! them: event-time timers fire when the watermark passes them, processing-time ones
//! when the wall clock does. A key has at most one timer per (domain, timestamp), so
//! registering twice fires once.
//!
//! Timers live in memory, like Flink's heap timers, grouped by timestamp: windows put
//! the timers of thousands of keys on one instant, so a bucket per instant with a hash
//! index of its keys makes registering, deduplicating and firing a probe and an append,
//! with no allocation per timer. Within an instant, timers fire in the order they were
//! set.
//!
//! They reach checkpoints the way the value caches' dirty entries do: each capture
//! copies the pending timers into the overlay as state entries (`group | op | kind |
//! time | key`, no value) under their keys' key groups, so a restore or rescale hands
//! each key group's timers to the subtask that now owns it. An incremental capture
//! marks only the timers set since the previous one, and records the removal of those
//! it held that fired or were deleted since. The hot path never writes fjall: most
//! timers of a windowed job are set and fire within a checkpoint interval, and writing
//! and deleting each of them in fjall was most of such a job's time.

use std::collections::BTreeMap;

use hashbrown::HashTable;
use weir_types::keygroup::key_hash;

use crate::cache::push_overlay;
use crate::store::{StateError, TaskState};

pub use weir_types::batch::TimeDomain;

/// The state-kind tag of a domain's entries (after value and map state's).
fn kind(domain: TimeDomain) -> u8 {
    match domain {
        TimeDomain::Event => 2,
        TimeDomain::Processing => 3,
    }
}

const DOMAINS: [TimeDomain; 2] = [TimeDomain::Event, TimeDomain::Processing];

/// Timestamps as big-endian bytes that sort as the signed numbers do.
fn time_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_of(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// Timers that are due, in firing order: their times and keys, without an allocation
/// per timer.
#[derive(Default)]
pub struct Due {
    times: Vec<i64>,
    hashes: Vec<u64>,
    ends: Vec<usize>,
    keys: Vec<u8>,
}

impl Due {
    fn push(&mut self, ts: i64, hash: u64, key: &[u8]) {
        self.keys.extend_from_slice(key);
        self.times.push(ts);
        self.hashes.push(hash);
        self.ends.push(self.keys.len());
    }

    /// Forgets every timer, keeping the memory.
    pub fn clear(&mut self) {
        self.times.clear();
        self.hashes.clear();
        self.ends.clear();
        self.keys.clear();
    }

    /// The stable hash of each timer's key (`weir_types::keygroup::key_hash`).
    pub fn hashes(&self) -> &[u64] {
        &self.hashes
    }

    /// The key of timer `i`.
    pub fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.keys[start..self.ends[i]]
    }

    /// How many timers.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// True without timers.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// (time, key) of each timer, in firing order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &[u8])> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.times.iter().zip(starts.zip(&self.ends)).map(|(&ts, (start, &end))| (ts, &self.keys[start..end]))
    }
}

/// One timer of a bucket.
#[derive(Clone, Copy)]
struct Slot {
    hash: u64,
    start: usize,
    len: u32,
    /// Neither fired nor deleted.
    live: bool,
    /// Held by the last capture: its removal must be recorded in the next one.
    captured: bool,
}

/// The timers of one instant, in the order they were set.
#[derive(Default)]
struct Bucket {
    keys: Vec<u8>,
    slots: Vec<Slot>,
    /// Slot index by key hash: the latest slot of each key.
    index: HashTable<u32>,
    /// Slots before this one have fired.
    next: usize,
    /// Live slots.
    live: usize,
}

impl Bucket {
    fn with_capacity(n: usize) -> Self {
        Bucket { keys: Vec::new(), slots: Vec::with_capacity(n), index: HashTable::with_capacity(n), next: 0, live: 0 }
    }

    fn key(&self, slot: &Slot) -> &[u8] {
        &self.keys[slot.start..slot.start + slot.len as usize]
    }

    /// The live, unfired slot of `key`, if any.
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let i = *self.index.find(hash, |&i| {
            let s = &self.slots[i as usize];
            s.hash == hash && self.key(s) == key
        })? as usize;
        (self.slots[i].live && i >= self.next).then_some(i)
    }
}

/// One domain's timers.
#[derive(Default)]
struct Queue {
    /// Buckets with live timers, by time.
    buckets: BTreeMap<i64, Bucket>,
    len: usize,
    /// Timers the last capture held that were removed since.
    removed: Due,
    /// Slots of the last bucket that fired completely.
    last_bucket: usize,
}

/// One keyed operator's timers in one subtask.
pub struct Timers {
    state: TaskState,
    op: u32,
    queues: [Queue; 2],
}

impl Timers {
    /// The operator's timers in the subtask's key groups, as stored (after a restore,
    /// what the checkpoint held for those groups). They move from fjall into memory:
    /// from here on captures carry them.
    pub fn load(state: &TaskState, op: u32) -> Result<Self, StateError> {
        let mut timers = Self { state: state.clone(), op, queues: Default::default() };
        let mut stored = Vec::new();
        for domain in DOMAINS {
            for group in state.key_groups() {
                let prefix = Self::prefix(group as u16, op, domain);
                for guard in state.ks.prefix(prefix) {
                    let k = guard.key()?;
                    if let Some((time, key)) = k[prefix.len()..].split_first_chunk::<8>() {
                        timers.register(domain, key, time_of(*time))?;
                    }
                    stored.push(k);
                }
            }
        }
        if !stored.is_empty() {
            let mut batch = state.db.batch();
            for k in stored {
                state.note_changed(&k);
                batch.remove(&state.ks, k);
            }
            batch.commit()?;
        }
        Ok(timers)
    }

    fn prefix(group: u16, op: u32, domain: TimeDomain) -> [u8; 7] {
        let mut p = [0; 7];
        p[..2].copy_from_slice(&group.to_be_bytes());
        p[2..6].copy_from_slice(&op.to_be_bytes());
        p[6] = kind(domain);
        p
    }

    fn entry_key(out: &mut Vec<u8>, group: u16, op: u32, domain: TimeDomain, ts: i64, key: &[u8]) {
        out.clear();
        out.extend_from_slice(&Self::prefix(group, op, domain));
        out.extend_from_slice(&time_bytes(ts));
        out.extend_from_slice(key);
    }

    /// Sets a timer for `key` at `ts`; false if that exact timer was already set.
    /// Refuses keys outside the subtask's key groups.
    pub fn register(&mut self, domain: TimeDomain, key: &[u8], ts: i64) -> Result<bool, StateError> {
        self.register_hashed(domain, key, key_hash(key), ts)
    }

    /// [`Self::register`] with the key's stable hash already computed.
    pub fn register_hashed(&mut self, domain: TimeDomain, key: &[u8], hash: u64, ts: i64) -> Result<bool, StateError> {
        self.state.owned_group_of_hash(hash)?;
        let q = &mut self.queues[domain as usize];
        // A window's instant collects about as many keys as the last one did: sized
        // up front, its index rarely rehashes. Capped, so one huge instant (the end of
        // input) does not inflate every small one after it.
        let expected = q.last_bucket.min(1 << 16);
        let Bucket { keys, slots, index, next, live } = q.buckets.entry(ts).or_insert_with(|| Bucket::with_capacity(expected));
        let found = index.find_entry(hash, |&i| {
            let s = &slots[i as usize];
            s.hash == hash && &keys[s.start..s.start + s.len as usize] == key
        });
        let new = slots.len() as u32;
        match found {
            Ok(mut entry) => {
                let i = *entry.get() as usize;
                if slots[i].live && i >= *next {
                    return Ok(false);
                }
                // Fired or deleted before: a new timer, which the index now names.
                *entry.get_mut() = new;
            }
            Err(_) => {
                index.insert_unique(hash, new, |&i| slots[i as usize].hash);
            }
        }
        slots.push(Slot { hash, start: keys.len(), len: key.len() as u32, live: true, captured: false });
        keys.extend_from_slice(key);
        *live += 1;
        q.len += 1;
        Ok(true)
    }

    /// Removes `key`'s timer at `ts`; false if there was none.
    pub fn delete(&mut self, domain: TimeDomain, key: &[u8], ts: i64) -> Result<bool, StateError> {
        self.delete_hashed(domain, key, key_hash(key), ts)
    }

    /// [`Self::delete`] with the key's stable hash already computed.
    pub fn delete_hashed(&mut self, domain: TimeDomain, key: &[u8], hash: u64, ts: i64) -> Result<bool, StateError> {
        self.state.owned_group_of_hash(hash)?;
        let q = &mut self.queues[domain as usize];
        let Some(bucket) = q.buckets.get_mut(&ts) else { return Ok(false) };
        let Some(i) = bucket.find(hash, key) else { return Ok(false) };
        bucket.slots[i].live = false;
        bucket.live -= 1;
        q.len -= 1;
        if bucket.slots[i].captured {
            q.removed.push(ts, hash, key);
        }
        if bucket.live == 0 {
            q.buckets.remove(&ts);
        }
        Ok(true)
    }

    /// The earliest pending timer's time.
    pub fn next(&self, domain: TimeDomain) -> Option<i64> {
        self.queues[domain as usize].buckets.first_key_value().map(|(ts, _)| *ts)
    }

    /// How many timers are pending.
    pub fn len(&self, domain: TimeDomain) -> usize {
        self.queues[domain as usize].len
    }

    /// True without pending timers in either domain.
    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(|q| q.len == 0)
    }

    /// Removes up to `limit` timers at or before `upto` and appends them to `out` in
    /// firing order (time, then the order they were set). A capture after this no
    /// longer holds them, so a restore never fires them twice.
    pub fn take_due(&mut self, domain: TimeDomain, upto: i64, limit: usize, out: &mut Due) {
        let q = &mut self.queues[domain as usize];
        let mut taken = 0;
        while taken < limit
            && let Some(mut first) = q.buckets.first_entry()
            && *first.key() <= upto
        {
            let ts = *first.key();
            let bucket = first.get_mut();
            while taken < limit && bucket.next < bucket.slots.len() {
                let slot = bucket.slots[bucket.next];
                bucket.next += 1;
                if !slot.live {
                    continue;
                }
                let key = bucket.key(&slot);
                out.push(ts, slot.hash, key);
                if slot.captured {
                    q.removed.push(ts, slot.hash, key);
                }
                bucket.live -= 1;
                q.len -= 1;
                taken += 1;
            }
            if bucket.live == 0 {
                q.last_bucket = bucket.slots.len();
                first.remove();
            }
        }
    }

    /// Appends the timers to a checkpoint overlay (see [`TaskState::capture`]): every
    /// pending timer, marked changed if it was set since the previous capture, and the
    /// removal of each timer that capture held and that is gone now.
    pub fn capture_into(&mut self, overlay: &mut Vec<u8>) -> Result<(), StateError> {
        let mut k = Vec::new();
        for domain in DOMAINS {
            let q = &mut self.queues[domain as usize];
            for (&ts, bucket) in &mut q.buckets {
                let Bucket { keys, slots, next, .. } = bucket;
                for slot in slots[*next..].iter_mut().filter(|s| s.live) {
                    let group = self.state.owned_group_of_hash(slot.hash)?;
                    Self::entry_key(&mut k, group, self.op, domain, ts, &keys[slot.start..slot.start + slot.len as usize]);
                    push_overlay(overlay, !slot.captured, &k, Some(&[]));
                    slot.captured = true;
                }
            }
            for ((ts, key), &hash) in q.removed.iter().zip(&q.removed.hashes) {
                let group = self.state.owned_group_of_hash(hash)?;
                Self::entry_key(&mut k, group, self.op, domain, ts, key);
                push_overlay(overlay, true, &k, None);
            }
            q.removed.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use weir_types::keygroup;

    use super::*;
    use crate::{Capture, StateStore};

    fn store() -> Result<(tempfile::TempDir, StateStore), StateError> {
        let dir = tempfile::tempdir().map_err(|e| StateError::Backend(e.into()))?;
        let store = StateStore::open(dir.path())?;
        Ok((dir, store))
    }

    fn due(timers: &mut Timers, domain: TimeDomain, upto: i64, limit: usize) -> Vec<(i64, Vec<u8>)> {
        let mut out = Due::default();
        timers.take_due(domain, upto, limit, &mut out);
        out.iter().map(|(ts, k)| (ts, k.to_vec())).collect()
    }

    fn capture(task: &TaskState, timers: &mut Timers) -> Result<Capture, StateError> {
        let mut overlay = Vec::new();
        timers.capture_into(&mut overlay)?;
        Ok(task.capture(overlay))
    }

    #[test]
    fn timers_fire_in_time_order_once_and_are_deduplicated() -> Result<(), StateError> {
        let (_dir, store) = store()?;
        let t = store.task("job", 128, 0..128)?;
        let mut timers = Timers::load(&t, 1)?;
        assert!(timers.register(TimeDomain::Event, b"b", 20)?);
        assert!(timers.register(TimeDomain::Event, b"a", 20)?);
        assert!(timers.register(TimeDomain::Event, b"a", -5)?);
        assert!(!timers.register(TimeDomain::Event, b"a", 20)?, "same key and time: one timer");
        assert!(timers.register(TimeDomain::Processing, b"a", 1)?);
        assert_eq!(timers.next(TimeDomain::Event), Some(-5));
        assert_eq!(due(&mut timers, TimeDomain::Event, 19, usize::MAX), [(-5, b"a".to_vec())]);
        assert_eq!(due(&mut timers, TimeDomain::Event, i64::MAX, 1), [(20, b"b".to_vec())], "at most the limit, in the order set");
        assert!(!timers.register(TimeDomain::Event, b"a", 20)?, "a bucket half fired still deduplicates");
        assert_eq!(due(&mut timers, TimeDomain::Event, i64::MAX, usize::MAX), [(20, b"a".to_vec())]);
        assert_eq!(timers.len(TimeDomain::Event), 0);
        assert_eq!(timers.next(TimeDomain::Event), None);
        assert!(timers.register(TimeDomain::Event, b"a", 20)?, "set again after it fired: a new timer");
        assert_eq!(due(&mut timers, TimeDomain::Event, 20, usize::MAX), [(20, b"a".to_vec())]);
        assert_eq!(timers.len(TimeDomain::Processing), 1, "the other clock's timers stay");
        assert!(timers.delete(TimeDomain::Processing, b"a", 1)?);
        assert!(!timers.delete(TimeDomain::Processing, b"a", 1)?);
        assert!(timers.register(TimeDomain::Processing, b"a", 1)?, "set again after a delete");
        assert!(timers.delete(TimeDomain::Processing, b"a", 1)?);
        assert!(timers.is_empty());
        assert!(due(&mut timers, TimeDomain::Processing, i64::MAX, usize::MAX).is_empty(), "deleted timers never fire");
        Ok(())
    }

    #[test]
    fn foreign_keys_are_refused() -> Result<(), StateError> {
        let (_dir, store) = store()?;
        let group = keygroup::key_group(b"k", 128);
        let t = store.task("job", 128, if group == 0 { 1..128 } else { 0..group })?;
        let mut timers = Timers::load(&t, 1)?;
        assert!(matches!(timers.register(TimeDomain::Event, b"k", 1), Err(StateError::ForeignKeyGroup { .. })));
        assert!(timers.is_empty());
        Ok(())
    }

    /// A checkpoint's entries, restored into a new subtask, give back exactly the
    /// pending timers, per operator; nothing of them stays in fjall.
    #[test]
    fn timers_survive_a_checkpoint_and_are_scoped_by_operator() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = store()?;
        let t = store.task("job", 128, 0..128)?;
        let mut one = Timers::load(&t, 1)?;
        one.register(TimeDomain::Event, b"k", i64::MIN)?;
        one.register(TimeDomain::Event, b"k", i64::MAX)?;
        one.register(TimeDomain::Event, b"fired", 3)?;
        one.register(TimeDomain::Processing, b"k", 0)?;
        assert_eq!(due(&mut one, TimeDomain::Event, 3, usize::MAX).len(), 2, "k at the earliest instant and fired");
        let mut two = Timers::load(&t, 2)?;
        two.register(TimeDomain::Event, b"k", 7)?;
        let mut overlay = Vec::new();
        one.capture_into(&mut overlay)?;
        two.capture_into(&mut overlay)?;
        let entries = t.capture(overlay).full()?;
        assert_eq!(entries.len(), 3, "{entries:?}");
        let after = store.task("after", 128, 0..128)?;
        after.restore(&entries)?;
        let mut again = Timers::load(&after, 1)?;
        assert_eq!(again.len(TimeDomain::Event), 1);
        assert_eq!(again.next(TimeDomain::Event), Some(i64::MAX));
        assert_eq!(again.len(TimeDomain::Processing), 1);
        assert_eq!(Timers::load(&after, 2)?.len(TimeDomain::Event), 1);
        assert!(Timers::load(&after, 1)?.is_empty(), "loading took them out of fjall");
        assert_eq!(capture(&after, &mut again)?.full()?.len(), 2, "the next capture holds them again");
        Ok(())
    }

    /// What a rescale does: a checkpoint's entries restored into two subtasks that
    /// split the key groups; each loads exactly the timers of its own keys.
    #[test]
    fn a_restore_splits_timers_by_key_group() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = store()?;
        let whole = store.task("before", 128, 0..128)?;
        let mut timers = Timers::load(&whole, 1)?;
        let keys: Vec<Vec<u8>> = (0..200u32).map(|i| format!("key-{i}").into_bytes()).collect();
        for (i, k) in keys.iter().enumerate() {
            timers.register(TimeDomain::Event, k, i as i64)?;
        }
        let entries = capture(&whole, &mut timers)?.full()?;
        let halves = [store.task("after", 128, 0..64)?, store.task("after", 128, 64..128)?];
        let mut loaded = 0;
        for half in &halves {
            let mine: Vec<_> =
                entries.iter().filter(|(k, _)| half.key_groups().contains(&(u16::from_be_bytes([k[0], k[1]]) as u32))).cloned().collect();
            half.restore(&mine)?;
            let mut t = Timers::load(half, 1)?;
            for (ts, key) in due(&mut t, TimeDomain::Event, i64::MAX, usize::MAX) {
                assert!(half.key_groups().contains(&keygroup::key_group(&key, 128)));
                assert_eq!(keys[ts as usize], key);
                loaded += 1;
            }
        }
        assert_eq!(loaded, keys.len());
        Ok(())
    }

    /// Incremental checkpoints: a delta holds the timers set since the previous
    /// capture and the removal of those it held that fired or were deleted; a timer
    /// set and fired between two captures appears in neither.
    #[test]
    fn incremental_checkpoints_see_timer_changes() -> Result<(), StateError> {
        let (_dir, store) = store()?;
        let t = store.task("job", 128, 0..128)?.track_changes();
        let mut timers = Timers::load(&t, 1)?;
        timers.register(TimeDomain::Event, b"k", 10)?;
        timers.register(TimeDomain::Event, b"stays", 50)?;
        timers.register(TimeDomain::Event, b"gone", 11)?;
        timers.delete(TimeDomain::Event, b"gone", 11)?;
        timers.register(TimeDomain::Event, b"brief", 5)?;
        due(&mut timers, TimeDomain::Event, 5, usize::MAX);
        let first = capture(&t, &mut timers)?.delta()?;
        assert_eq!(first.len(), 2, "k and stays");
        assert!(first.iter().all(|(_, v)| v.is_some()));
        due(&mut timers, TimeDomain::Event, 10, usize::MAX);
        timers.register(TimeDomain::Event, b"new", 60)?;
        let second = capture(&t, &mut timers)?.delta()?;
        assert_eq!(second.len(), 2, "k's removal and new");
        let removed: Vec<_> = second.iter().filter(|(_, v)| v.is_none()).collect();
        assert_eq!(removed.len(), 1);
        assert!(removed[0].0.ends_with(b"k"), "the fired timer is a deletion in the next delta");
        assert!(capture(&t, &mut timers)?.delta()?.is_empty(), "nothing changed since");
        Ok(())
    }

    /// After a restore the first delta must still hold every timer: they left fjall
    /// (a deletion there) and live in memory (present in the overlay, which wins).
    #[test]
    fn restored_timers_stay_in_the_next_delta() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = store()?;
        let before = store.task("before", 128, 0..128)?;
        let mut timers = Timers::load(&before, 1)?;
        timers.register(TimeDomain::Event, b"a", 1)?;
        timers.register(TimeDomain::Event, b"b", 2)?;
        let entries = capture(&before, &mut timers)?.full()?;
        let after = store.task("after", 128, 0..128)?.track_changes();
        after.restore(&entries)?;
        let mut restored = Timers::load(&after, 1)?;
        due(&mut restored, TimeDomain::Event, 1, usize::MAX);
        let delta = capture(&after, &mut restored)?.delta()?;
        let present: Vec<_> = delta.iter().filter(|(_, v)| v.is_some()).collect();
        let gone: Vec<_> = delta.iter().filter(|(_, v)| v.is_none()).collect();
        assert_eq!((present.len(), gone.len()), (1, 1), "{delta:?}");
        assert!(present[0].0.ends_with(b"b") && gone[0].0.ends_with(b"a"));
        Ok(())
    }
}
