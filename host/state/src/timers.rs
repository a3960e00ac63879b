//! Per-key timers of one keyed operator in one subtask, as Flink's timer service keeps
//! them: event-time timers fire when the watermark passes them, processing-time ones
//! when the wall clock does. A key has at most one timer per (domain, timestamp), so
//! registering twice fires once.
//!
//! Each timer is a fjall entry under its key's key group (`group | op | kind | time |
//! key`, no value), written when it is registered and removed when it fires or is
//! deleted. So timers are in every checkpoint with the rest of the state (incremental
//! ones too: the writes are noted as changes), and a restore or rescale hands each key
//! group's timers to the subtask that now owns it. An ordered set in memory mirrors
//! them for firing in time order without reading fjall per watermark.
//!
//! Writes to fjall wait for [`Timers::flush`] (the subtask flushes at every checkpoint
//! barrier, before its state is captured, and at its end): most timers of a busy job
//! are set and fire between two checkpoints, and then never touch fjall at all. A
//! timer set and fired in fjall costs two memtable writes that every later lookup pays
//! for; that was most of a windowed job's time.

use std::collections::{BTreeSet, HashMap};

use crate::store::{StateError, TaskState};

pub use weir_types::batch::TimeDomain;

/// The state-kind tag of a domain's entries (after value and map state's).
fn kind(domain: TimeDomain) -> u8 {
    match domain {
        TimeDomain::Event => 2,
        TimeDomain::Processing => 3,
    }
}

fn index(domain: TimeDomain) -> usize {
    domain as usize
}

/// A timer that is due: its time and its key.
pub type Fired = (i64, Vec<u8>);

/// One keyed operator's timers in one subtask.
pub struct Timers {
    state: TaskState,
    op: u32,
    /// (time, key) per domain, in firing order.
    pending: [BTreeSet<(i64, Vec<u8>)>; 2],
    /// Changes not in fjall yet, by entry key: `true` to write, `false` to delete. With
    /// them applied fjall holds exactly `pending`.
    unflushed: HashMap<Vec<u8>, bool>,
}

/// Timestamps as big-endian bytes that sort as the signed numbers do.
fn time_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_of(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

impl Timers {
    /// The operator's timers in the subtask's key groups, as stored (after a restore,
    /// what the checkpoint held for those groups).
    pub fn load(state: &TaskState, op: u32) -> Result<Self, StateError> {
        let mut timers = Self { state: state.clone(), op, pending: Default::default(), unflushed: HashMap::new() };
        for domain in [TimeDomain::Event, TimeDomain::Processing] {
            for group in state.key_groups() {
                let prefix = Self::prefix(group as u16, op, domain);
                for guard in state.ks.prefix(prefix) {
                    let k = guard.key()?;
                    let Some((time, key)) = k[prefix.len()..].split_first_chunk::<8>() else { continue };
                    timers.pending[index(domain)].insert((time_of(*time), key.to_vec()));
                }
            }
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

    fn entry_key(&self, domain: TimeDomain, key: &[u8], ts: i64) -> Result<Vec<u8>, StateError> {
        let group = self.state.owned_group(key)?;
        let mut k = Vec::with_capacity(15 + key.len());
        k.extend_from_slice(&Self::prefix(group, self.op, domain));
        k.extend_from_slice(&time_bytes(ts));
        k.extend_from_slice(key);
        Ok(k)
    }

    /// Sets a timer for `key` at `ts`; false if that exact timer was already set.
    pub fn register(&mut self, domain: TimeDomain, key: &[u8], ts: i64) -> Result<bool, StateError> {
        let entry = self.entry_key(domain, key, ts)?;
        if !self.pending[index(domain)].insert((ts, key.to_vec())) {
            return Ok(false);
        }
        self.changed(entry, true);
        Ok(true)
    }

    /// Notes that `entry` is now pending (`present`) or not. Undoing an unflushed change
    /// forgets it: a timer set and fired between two flushes never reaches fjall, and
    /// one deleted and set again stays as fjall has it.
    fn changed(&mut self, entry: Vec<u8>, present: bool) {
        match self.unflushed.get(&entry) {
            Some(&was) if was != present => {
                self.unflushed.remove(&entry);
            }
            _ => {
                self.unflushed.insert(entry, present);
            }
        }
    }

    /// Writes the changes since the last flush to fjall (and notes them for the next
    /// incremental checkpoint), so a capture of the state holds exactly the pending
    /// timers.
    pub fn flush(&mut self) -> Result<(), StateError> {
        if self.unflushed.is_empty() {
            return Ok(());
        }
        let mut batch = self.state.db.batch();
        for (entry, present) in self.unflushed.drain() {
            self.state.note_changed(&entry);
            if present {
                batch.insert(&self.state.ks, entry, &[] as &[u8]);
            } else {
                batch.remove(&self.state.ks, entry);
            }
        }
        Ok(batch.commit()?)
    }

    /// Removes `key`'s timer at `ts`; false if there was none.
    pub fn delete(&mut self, domain: TimeDomain, key: &[u8], ts: i64) -> Result<bool, StateError> {
        let entry = self.entry_key(domain, key, ts)?;
        if !self.pending[index(domain)].remove(&(ts, key.to_vec())) {
            return Ok(false);
        }
        self.changed(entry, false);
        Ok(true)
    }

    /// The earliest pending timer's time.
    pub fn next(&self, domain: TimeDomain) -> Option<i64> {
        self.pending[index(domain)].first().map(|(ts, _)| *ts)
    }

    /// How many timers are pending.
    pub fn len(&self, domain: TimeDomain) -> usize {
        self.pending[index(domain)].len()
    }

    /// True without pending timers in either domain.
    pub fn is_empty(&self) -> bool {
        self.pending.iter().all(BTreeSet::is_empty)
    }

    /// Removes up to `limit` timers at or before `upto` and appends them to `out` in
    /// firing order (time, then key). A checkpoint captured after this no longer holds
    /// them, so a restore never fires them twice.
    pub fn take_due(&mut self, domain: TimeDomain, upto: i64, limit: usize, out: &mut Vec<Fired>) -> Result<(), StateError> {
        let set = &mut self.pending[index(domain)];
        let start = out.len();
        while out.len() - start < limit
            && let Some(first) = set.first()
            && first.0 <= upto
        {
            let Some(fired) = set.pop_first() else { break };
            out.push(fired);
        }
        for (ts, key) in &out[start..] {
            let entry = self.entry_key(domain, key, *ts)?;
            self.changed(entry, false);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use weir_types::keygroup;

    use super::*;
    use crate::StateStore;

    fn store() -> Result<(tempfile::TempDir, StateStore), StateError> {
        let dir = tempfile::tempdir().map_err(|e| StateError::Backend(e.into()))?;
        let store = StateStore::open(dir.path())?;
        Ok((dir, store))
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
        let mut due = Vec::new();
        timers.take_due(TimeDomain::Event, 19, usize::MAX, &mut due)?;
        assert_eq!(due, [(-5, b"a".to_vec())]);
        due.clear();
        timers.take_due(TimeDomain::Event, i64::MAX, 1, &mut due)?;
        assert_eq!(due, [(20, b"a".to_vec())], "at most the limit");
        timers.take_due(TimeDomain::Event, i64::MAX, usize::MAX, &mut due)?;
        assert_eq!(due, [(20, b"a".to_vec()), (20, b"b".to_vec())]);
        assert_eq!(timers.len(TimeDomain::Event), 0);
        assert_eq!(timers.len(TimeDomain::Processing), 1, "the other clock's timers stay");
        assert!(timers.delete(TimeDomain::Processing, b"a", 1)?);
        assert!(!timers.delete(TimeDomain::Processing, b"a", 1)?);
        assert!(timers.is_empty());
        timers.flush()?;
        assert!(Timers::load(&t, 1)?.is_empty(), "fired and deleted timers are gone from fjall");
        Ok(())
    }

    #[test]
    fn timers_survive_in_fjall_and_are_scoped_by_operator() -> Result<(), StateError> {
        let (_dir, store) = store()?;
        let t = store.task("job", 128, 0..128)?;
        let mut one = Timers::load(&t, 1)?;
        one.register(TimeDomain::Event, b"k", i64::MIN)?;
        one.register(TimeDomain::Event, b"k", i64::MAX)?;
        one.register(TimeDomain::Processing, b"k", 0)?;
        assert!(Timers::load(&t, 1)?.is_empty(), "nothing in fjall before a flush");
        one.flush()?;
        let mut two = Timers::load(&t, 2)?;
        two.register(TimeDomain::Event, b"k", 7)?;
        two.flush()?;
        let again = Timers::load(&t, 1)?;
        assert_eq!(again.len(TimeDomain::Event), 2);
        assert_eq!(again.next(TimeDomain::Event), Some(i64::MIN));
        assert_eq!(again.len(TimeDomain::Processing), 1);
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
        timers.flush()?;
        let entries = whole.capture(Vec::new()).full()?;
        let halves = [store.task("after", 128, 0..64)?, store.task("after", 128, 64..128)?];
        let mut loaded = 0;
        for half in &halves {
            let mine: Vec<_> =
                entries.iter().filter(|(k, _)| half.key_groups().contains(&(u16::from_be_bytes([k[0], k[1]]) as u32))).cloned().collect();
            half.restore(&mine)?;
            let mut t = Timers::load(half, 1)?;
            let mut due = Vec::new();
            t.take_due(TimeDomain::Event, i64::MAX, usize::MAX, &mut due)?;
            for (ts, key) in &due {
                assert!(half.key_groups().contains(&keygroup::key_group(key, 128)));
                assert_eq!(keys[*ts as usize], *key);
            }
            loaded += due.len();
        }
        assert_eq!(loaded, keys.len());
        Ok(())
    }

    #[test]
    fn incremental_checkpoints_see_timer_writes() -> Result<(), StateError> {
        let (_dir, store) = store()?;
        let t = store.task("job", 128, 0..128)?.track_changes();
        let mut timers = Timers::load(&t, 1)?;
        timers.register(TimeDomain::Event, b"k", 10)?;
        timers.register(TimeDomain::Event, b"gone", 11)?;
        timers.delete(TimeDomain::Event, b"gone", 11)?;
        timers.flush()?;
        let first = t.capture(Vec::new()).delta()?;
        assert_eq!(first.len(), 1);
        assert!(first[0].1.is_some());
        timers.take_due(TimeDomain::Event, 10, usize::MAX, &mut Vec::new())?;
        timers.flush()?;
        let second = t.capture(Vec::new()).delta()?;
        assert_eq!(second.len(), 1);
        assert!(second[0].1.is_none(), "the fired timer is a deletion in the next delta");
        Ok(())
    }
}
