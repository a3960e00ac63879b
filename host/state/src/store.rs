use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, Readable, Snapshot};
use thiserror::Error;
use weir_types::keygroup::{self, BROADCAST_GROUP};

use crate::ValueCache;

/// A state operation failed.
#[derive(Debug, Error)]
pub enum StateError {
    /// fjall reported an error (disk full, I/O failure, corruption).
    #[error("state backend: {0}")]
    Backend(#[from] fjall::Error),
    /// The state directory could not be prepared.
    #[error("state directory {path}: {source}")]
    Io {
        /// The directory or entry.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key outside the subtask's key groups; an operator bug or a routing bug.
    #[error("key group {group} is not owned by this subtask (it owns {owned:?})")]
    ForeignKeyGroup {
        /// The key's group.
        group: u32,
        /// The subtask's range.
        owned: Range<u32>,
    },
}

/// All entries of one key's map state, as (field, value) pairs ordered by field.
pub type MapEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// Tags the kind of state an entry belongs to, so kinds never collide.
const VALUE_STATE: u8 = 0;
const MAP_STATE: u8 = 1;

/// The first bytes of the broadcast state of the subtask whose key groups start at
/// `first_group` (see [`BROADCAST_GROUP`]).
fn broadcast_tag(first_group: u32) -> [u8; 4] {
    let [a, b] = BROADCAST_GROUP.to_be_bytes();
    // Max parallelism is at most 32768, so groups fit in u16.
    let [c, d] = (first_group as u16).to_be_bytes();
    [a, b, c, d]
}

/// The process's keyed state: a fjall database per job under one directory.
///
/// A database per job, not a keyspace per job in one database: fjall 3 never frees its
/// metadata keyspace's versions, so creating and deleting a keyspace for every job grew
/// a TaskManager by about 4 MB per job, without bound. A job's database is temporary:
/// its directory goes when the last handle does ([`StateStore::drop_job`] and the
/// job's subtasks ending), since a job's state is always restored from checkpoints.
#[derive(Clone)]
pub struct StateStore {
    root: PathBuf,
    jobs: Arc<Mutex<HashMap<String, Database>>>,
}

impl StateStore {
    /// Opens (or creates) the state directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| StateError::Io { path: dir.into(), source: e })?;
        // Jobs of an earlier process are restored from checkpoints, never from here:
        // their databases are garbage.
        let entries = std::fs::read_dir(dir).map_err(|e| StateError::Io { path: dir.into(), source: e })?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("job-") {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(|e| StateError::Io { path, source: e })?;
            }
        }
        Ok(Self { root: dir.into(), jobs: Arc::default() })
    }

    /// The state of one subtask of a job, owning `key_groups` of `max_parallelism`.
    pub fn task(&self, job: &str, max_parallelism: u32, key_groups: Range<u32>) -> Result<TaskState, StateError> {
        let db = {
            let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            match jobs.get(job) {
                Some(db) => db.clone(),
                None => {
                    let db = Database::builder(self.root.join(job))
                        // Keep the block cache and write buffers small: the value caches
                        // in front hold the hot set, and a TaskManager's memory belongs
                        // to its slots.
                        .cache_size(16 << 20)
                        // Bound the descriptors per job: the process needs them for
                        // sockets and checkpoints too.
                        .max_cached_files(Some(64))
                        .manual_journal_persist(true)
                        .temporary(true)
                        .open()?;
                    jobs.insert(job.to_string(), db.clone());
                    db
                }
            }
        };
        let ks = db.keyspace("state", || KeyspaceCreateOptions::default().max_memtable_size(8 << 20))?;
        Ok(TaskState { db, ks, max_parallelism, key_groups, changed: None })
    }

    /// Lets a job's database go once nothing will read it again: it closes and its
    /// directory is deleted when the job's last subtask state is dropped too.
    pub fn drop_job(&self, job: &str) -> Result<(), StateError> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner).remove(job);
        Ok(())
    }

    /// Jobs with an open database (tests and metrics).
    pub fn jobs(&self) -> usize {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// One subtask's view of its job's state: only its own key groups.
#[derive(Clone)]
pub struct TaskState {
    pub(crate) db: Database,
    pub(crate) ks: Keyspace,
    max_parallelism: u32,
    key_groups: Range<u32>,
    /// Keys written since the last capture, length-prefixed back to back: what an
    /// incremental checkpoint must contain. One arena instead of a set, because
    /// appending is the only thing the hot path may pay for. `None` without checkpoints.
    changed: Option<Arc<Mutex<Vec<u8>>>>,
}

/// A stored key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A changed key and its new value (`None`: deleted).
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// A consistent view of a subtask's state at a checkpoint barrier, read off the hot
/// path: a fjall snapshot (cheap, isolated from later writes) overlaid with the value
/// caches' dirty entries (copied at the barrier, since they are not in fjall yet).
pub struct Capture {
    snapshot: Snapshot,
    ks: Keyspace,
    key_groups: Range<u32>,
    /// Keys written to fjall since the previous capture.
    changed: Vec<u8>,
    /// Dirty cache entries: see [`crate::cache::push_overlay`].
    overlay: Vec<u8>,
}

/// (changed since the previous capture, key, value or `None` if deleted).
type OverlayEntry<'a> = (bool, &'a [u8], Option<&'a [u8]>);

fn parse_overlay(mut rest: &[u8]) -> Vec<OverlayEntry<'_>> {
    let mut out = Vec::new();
    while let Some((&changed, tail)) = rest.split_first() {
        let Some((klen, tail)) = tail.split_first_chunk::<4>() else { break };
        let Some((key, tail)) = tail.split_at_checked(u32::from_le_bytes(*klen) as usize) else { break };
        let Some((vlen, tail)) = tail.split_first_chunk::<4>() else { break };
        let vlen = u32::from_le_bytes(*vlen);
        let (value, tail) = match vlen {
            u32::MAX => (None, tail),
            n => match tail.split_at_checked(n as usize) {
                Some((v, t)) => (Some(v), t),
                None => break,
            },
        };
        out.push((changed != 0, key, value));
        rest = tail;
    }
    out
}

fn parse_keys(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut keys = Vec::new();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let Some((key, tail)) = tail.split_at_checked(u32::from_le_bytes(*len) as usize) else { break };
        keys.push(key);
        rest = tail;
    }
    keys
}

impl Capture {
    /// Every entry of the subtask's key groups, handed to `f` one at a time (a full
    /// checkpoint of a large state never needs a second copy of it in memory).
    /// Errors of `f` and of reading come back as text.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8]) -> Result<(), String>) -> Result<(), String> {
        let overlay: std::collections::HashMap<&[u8], Option<&[u8]>> = parse_overlay(&self.overlay).into_iter().map(|(_, k, v)| (k, v)).collect();
        let (start, end) = (self.key_groups.start as u16, self.key_groups.end);
        let iter = match u16::try_from(end) {
            Ok(end) => self.snapshot.range(&self.ks, start.to_be_bytes()..end.to_be_bytes()),
            Err(_) => self.snapshot.range(&self.ks, start.to_be_bytes()..),
        };
        for guard in iter {
            let (k, v) = guard.into_inner().map_err(|e| StateError::from(e).to_string())?;
            if !overlay.contains_key(&*k) {
                f(&k, &v)?;
            }
        }
        for (k, v) in overlay {
            if let Some(v) = v {
                f(k, v)?;
            }
        }
        if self.key_groups.start == 0 {
            for guard in self.snapshot.prefix(&self.ks, broadcast_tag(0)) {
                let (k, v) = guard.into_inner().map_err(|e| StateError::from(e).to_string())?;
                f(&k, &v)?;
            }
        }
        Ok(())
    }

    /// Every entry of the subtask's key groups, collected.
    pub fn full(&self) -> Result<Vec<Entry>, String> {
        let mut out = Vec::new();
        self.for_each(|k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }

    /// The entries changed since the previous capture, with `None` for deleted keys.
    pub fn delta(&self) -> Result<Vec<Change>, StateError> {
        let overlay = parse_overlay(&self.overlay);
        let cached: std::collections::HashSet<&[u8]> = overlay.iter().map(|(_, k, _)| *k).collect();
        let mut out: Vec<Change> = overlay.iter().filter(|(changed, _, _)| *changed).map(|(_, k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect();
        let mut written = parse_keys(&self.changed);
        written.sort_unstable();
        written.dedup();
        for k in written.into_iter().filter(|k| !cached.contains(k)) {
            out.push((k.to_vec(), self.snapshot.get(&self.ks, k)?.map(|v| v.to_vec())));
        }
        Ok(out)
    }
}

impl TaskState {
    /// Notes a written key for the next incremental checkpoint (only when the job is
    /// checkpointed: nothing else would ever empty the set).
    pub(crate) fn note_changed(&self, key: &[u8]) {
        if let Some(changed) = &self.changed {
            let mut changed = changed.lock().unwrap_or_else(PoisonError::into_inner);
            changed.extend_from_slice(&(key.len() as u32).to_le_bytes());
            changed.extend_from_slice(key);
        }
    }

    /// Tracks written keys from now on, for incremental checkpoints.
    pub fn track_changes(mut self) -> Self {
        self.changed = Some(Arc::default());
        self
    }

    /// Takes a consistent view of this subtask's state, given its value caches'
    /// overlay ([`crate::ValueCache::capture_into`]), and starts a new set of changed keys.
    pub fn capture(&self, overlay: Vec<u8>) -> Capture {
        let changed = self.changed.as_ref().map(|c| std::mem::take(&mut *c.lock().unwrap_or_else(PoisonError::into_inner))).unwrap_or_default();
        Capture { snapshot: self.db.snapshot(), ks: self.ks.clone(), key_groups: self.key_groups.clone(), changed, overlay }
    }

    /// Loads restored entries (from a checkpoint) into this subtask's state. Broadcast
    /// entries (of whichever old subtask wrote them) become this subtask's copy.
    pub fn restore(&self, entries: &[Entry]) -> Result<(), StateError> {
        let own = broadcast_tag(self.key_groups.start);
        for chunk in entries.chunks(64 * 1024) {
            let mut batch = self.db.batch();
            for (k, v) in chunk {
                if k.starts_with(&BROADCAST_GROUP.to_be_bytes()) && k.len() >= own.len() {
                    let mut mine = own.to_vec();
                    mine.extend_from_slice(&k[own.len()..]);
                    batch.insert(&self.ks, mine, v.as_slice());
                } else {
                    batch.insert(&self.ks, k.as_slice(), v.as_slice());
                }
            }
            batch.commit()?;
        }
        Ok(())
    }

    /// The key groups this subtask owns.
    pub fn key_groups(&self) -> Range<u32> {
        self.key_groups.clone()
    }
    /// The key group of `key`, if this subtask owns it.
    pub fn owned_group(&self, key: &[u8]) -> Result<u16, StateError> {
        self.owned_group_of_hash(keygroup::key_hash(key))
    }

    /// As [`Self::owned_group`], from an already computed key hash.
    #[inline]
    pub fn owned_group_of_hash(&self, hash: u64) -> Result<u16, StateError> {
        let group = keygroup::key_group_of_hash(hash, self.max_parallelism);
        if !self.key_groups.contains(&group) {
            return Err(StateError::ForeignKeyGroup { group, owned: self.key_groups.clone() });
        }
        // Max parallelism is at most 32768, so groups fit in u16.
        Ok(group as u16)
    }

    /// A value cache for operator `op` holding at most about `budget_bytes`.
    pub fn value_cache(&self, op: u32, budget_bytes: usize) -> ValueCache {
        ValueCache::new(self.clone(), op, budget_bytes)
    }

    pub(crate) fn value_key(group: u16, op: u32, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(7 + key.len());
        k.extend_from_slice(&group.to_be_bytes());
        k.extend_from_slice(&op.to_be_bytes());
        k.push(VALUE_STATE);
        k.extend_from_slice(key);
        k
    }

    fn map_prefix(&self, op: u32, name: &str, key: &[u8]) -> Result<Vec<u8>, StateError> {
        let group = self.owned_group(key)?;
        let mut k = Vec::with_capacity(13 + name.len() + key.len());
        k.extend_from_slice(&group.to_be_bytes());
        k.extend_from_slice(&op.to_be_bytes());
        k.push(MAP_STATE);
        // Length prefixes keep (name, key) pairs from aliasing each other.
        k.extend_from_slice(&(name.len() as u32).to_be_bytes());
        k.extend_from_slice(name.as_bytes());
        k.extend_from_slice(&(key.len() as u32).to_be_bytes());
        k.extend_from_slice(key);
        Ok(k)
    }

    /// Reads entry `field` of map state `name` for `key`.
    pub fn map_get(&self, op: u32, name: &str, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let mut k = self.map_prefix(op, name, key)?;
        k.extend_from_slice(field);
        Ok(self.ks.get(k)?.map(|v| v.to_vec()))
    }

    /// Writes entry `field` of map state `name` for `key`.
    pub fn map_put(&self, op: u32, name: &str, key: &[u8], field: &[u8], value: &[u8]) -> Result<(), StateError> {
        let mut k = self.map_prefix(op, name, key)?;
        k.extend_from_slice(field);
        self.note_changed(&k);
        Ok(self.ks.insert(k, value)?)
    }

    /// Removes entry `field` of map state `name` for `key`.
    pub fn map_remove(&self, op: u32, name: &str, key: &[u8], field: &[u8]) -> Result<(), StateError> {
        let mut k = self.map_prefix(op, name, key)?;
        k.extend_from_slice(field);
        self.note_changed(&k);
        Ok(self.ks.remove(k)?)
    }

    /// All entries of map state `name` for `key`, ordered by field.
    pub fn map_entries(&self, op: u32, name: &str, key: &[u8]) -> Result<MapEntries, StateError> {
        let prefix = self.map_prefix(op, name, key)?;
        let mut out = Vec::new();
        for guard in self.ks.prefix(&prefix) {
            let (k, v) = guard.into_inner()?;
            out.push((k[prefix.len()..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// For operator `op` with a state TTL: looks at up to `max` of its value and map
    /// entries in fjall, from where `cursor` stopped (one owned key group after another,
    /// wrapping around), and deletes the expired ones, noting them for the next
    /// incremental checkpoint. Timers (other kinds) are not TTL'd and are skipped.
    /// Returns how many it deleted.
    pub fn sweep_expired(&self, op: u32, now: i64, cursor: &mut crate::SweepCursor, max: usize) -> Result<usize, StateError> {
        if self.key_groups.is_empty() {
            return Ok(0);
        }
        let mut seen = 0;
        let mut doomed = Vec::new();
        // At most one pass over the owned key groups per call.
        for _ in 0..=self.key_groups.len() {
            if !self.key_groups.contains(&cursor.group) {
                cursor.group = self.key_groups.start;
                cursor.next = None;
            }
            let mut prefix = Vec::with_capacity(6);
            prefix.extend_from_slice(&(cursor.group as u16).to_be_bytes());
            prefix.extend_from_slice(&op.to_be_bytes());
            let start = cursor.next.take().unwrap_or_else(|| prefix.clone());
            let mut end = prefix.clone();
            // The operator id is followed by a kind byte, so `prefix + 0xff` bounds them.
            end.push(u8::MAX);
            for guard in self.ks.range(start..end) {
                let (k, v) = guard.into_inner()?;
                if seen == max {
                    cursor.next = Some(k.to_vec());
                    break;
                }
                seen += 1;
                let kind = k.get(prefix.len()).copied();
                if matches!(kind, Some(VALUE_STATE | MAP_STATE)) && crate::ttl::expired(&v, now) {
                    doomed.push(k.to_vec());
                }
            }
            if cursor.next.is_some() {
                break;
            }
            cursor.group += 1;
            if seen == max {
                break;
            }
        }
        let mut batch = self.db.batch();
        for k in &doomed {
            self.note_changed(k);
            batch.remove(&self.ks, k.as_slice());
        }
        if !batch.is_empty() {
            batch.commit()?;
        }
        Ok(doomed.len())
    }

    /// Number of value and map entries of operator `op` in fjall within the subtask's
    /// key groups (tests and diagnostics: a full scan).
    pub fn stored_entries(&self, op: u32) -> Result<usize, StateError> {
        let mut n = 0;
        for group in self.key_groups.clone() {
            let mut prefix = (group as u16).to_be_bytes().to_vec();
            prefix.extend_from_slice(&op.to_be_bytes());
            for guard in self.ks.prefix(&prefix) {
                let (k, _) = guard.into_inner()?;
                n += usize::from(matches!(k.get(prefix.len()).copied(), Some(VALUE_STATE | MAP_STATE)));
            }
        }
        Ok(n)
    }

    /// This subtask's copy of broadcast state `name` of operator `op`: the prefix of
    /// its entries.
    fn broadcast_prefix(&self, op: u32, name: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(12 + name.len());
        k.extend_from_slice(&broadcast_tag(self.key_groups.start));
        k.extend_from_slice(&op.to_be_bytes());
        k.extend_from_slice(&(name.len() as u32).to_be_bytes());
        k.extend_from_slice(name.as_bytes());
        k
    }

    /// Only the copy of the subtask owning key group 0 goes into checkpoints: every
    /// subtask's copy is the same, so one is enough.
    fn note_broadcast(&self, key: &[u8]) {
        if self.key_groups.start == 0 {
            self.note_changed(key);
        }
    }

    /// Reads entry `field` of broadcast state `name`.
    pub fn broadcast_get(&self, op: u32, name: &str, field: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let mut k = self.broadcast_prefix(op, name);
        k.extend_from_slice(field);
        Ok(self.ks.get(k)?.map(|v| v.to_vec()))
    }

    /// Writes entry `field` of broadcast state `name`.
    pub fn broadcast_put(&self, op: u32, name: &str, field: &[u8], value: &[u8]) -> Result<(), StateError> {
        let mut k = self.broadcast_prefix(op, name);
        k.extend_from_slice(field);
        self.note_broadcast(&k);
        Ok(self.ks.insert(k, value)?)
    }

    /// Removes entry `field` of broadcast state `name`.
    pub fn broadcast_remove(&self, op: u32, name: &str, field: &[u8]) -> Result<(), StateError> {
        let mut k = self.broadcast_prefix(op, name);
        k.extend_from_slice(field);
        self.note_broadcast(&k);
        Ok(self.ks.remove(k)?)
    }

    /// All entries of broadcast state `name`, ordered by field.
    pub fn broadcast_entries(&self, op: u32, name: &str) -> Result<MapEntries, StateError> {
        let prefix = self.broadcast_prefix(op, name);
        let mut out = Vec::new();
        for guard in self.ks.prefix(&prefix) {
            let (k, v) = guard.into_inner()?;
            out.push((k[prefix.len()..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Removes all entries of map state `name` for `key`.
    pub fn map_clear(&self, op: u32, name: &str, key: &[u8]) -> Result<(), StateError> {
        let prefix = self.map_prefix(op, name, key)?;
        let mut batch = self.db.batch();
        for guard in self.ks.prefix(&prefix) {
            let k = guard.key()?;
            self.note_changed(&k);
            batch.remove(&self.ks, k);
        }
        Ok(batch.commit()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_state_is_scoped_by_operator_name_and_key() -> Result<(), StateError> {
        let dir = tempfile::tempdir().map_err(|e| StateError::Backend(e.into()))?;
        let store = StateStore::open(dir.path())?;
        let t = store.task("job", 128, 0..128)?;
        t.map_put(1, "m", b"k", b"a", b"1")?;
        t.map_put(1, "m", b"k", b"b", b"2")?;
        t.map_put(1, "m", b"k2", b"a", b"x")?;
        t.map_put(2, "m", b"k", b"a", b"y")?;
        t.map_put(1, "n", b"k", b"a", b"z")?;
        assert_eq!(t.map_get(1, "m", b"k", b"a")?, Some(b"1".to_vec()));
        assert_eq!(t.map_entries(1, "m", b"k")?, vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
        t.map_remove(1, "m", b"k", b"a")?;
        assert_eq!(t.map_get(1, "m", b"k", b"a")?, None);
        t.map_clear(1, "m", b"k")?;
        assert!(t.map_entries(1, "m", b"k")?.is_empty());
        assert_eq!(t.map_get(1, "m", b"k2", b"a")?, Some(b"x".to_vec()));
        assert_eq!(t.map_get(2, "m", b"k", b"a")?, Some(b"y".to_vec()));
        Ok(())
    }

    /// A job's state leaves no trace: its database's directory goes once the job is
    /// dropped and its last subtask state is gone (it grew the process by megabytes
    /// per job as a keyspace of one shared database), and a new start sweeps what a
    /// killed process left.
    #[test]
    fn a_dropped_job_leaves_no_directory_and_a_restart_sweeps_old_ones() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = StateStore::open(dir.path())?;
        let jobs = |dir: &Path| -> Result<Vec<String>, std::io::Error> {
            let mut names: Vec<String> =
                std::fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect::<Result<_, _>>()?;
            names.sort();
            Ok(names)
        };
        let (a, b) = (store.task("job-a", 128, 0..64)?, store.task("job-a", 128, 64..128)?);
        a.map_put(1, "m", b"k", b"f", b"v")?;
        let other = store.task("job-b", 128, 0..128)?;
        other.map_put(1, "m", b"k", b"f", b"v")?;
        assert_eq!(jobs(dir.path())?, ["job-a", "job-b"]);
        store.drop_job("job-a")?;
        // Subtasks still holding the state keep it readable until they end.
        assert_eq!(a.map_get(1, "m", b"k", b"f")?, Some(b"v".to_vec()));
        drop((a, b));
        assert_eq!(jobs(dir.path())?, ["job-b"]);
        assert_eq!(store.jobs(), 1);
        // The same job again starts empty.
        assert_eq!(store.task("job-a", 128, 0..128)?.map_get(1, "m", b"k", b"f")?, None);
        // A process killed with jobs running leaves their directories; the next sweeps them.
        std::mem::forget(other);
        std::mem::forget(store);
        StateStore::open(dir.path())?;
        assert!(jobs(dir.path())?.is_empty());
        Ok(())
    }

    #[test]
    fn foreign_keys_are_refused() -> Result<(), StateError> {
        let dir = tempfile::tempdir().map_err(|e| StateError::Backend(e.into()))?;
        let store = StateStore::open(dir.path())?;
        let group = keygroup::key_group(b"k", 128);
        let other = if group == 0 { 1..128 } else { 0..group };
        let t = store.task("job", 128, other)?;
        assert!(matches!(t.map_put(1, "m", b"k", b"a", b"1"), Err(StateError::ForeignKeyGroup { .. })));
        Ok(())
    }

    #[test]
    fn broadcast_state_is_per_subtask_checkpointed_once_and_restored_to_every_subtask() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = StateStore::open(dir.path())?;
        // Two subtasks of one job share the job's database: their copies stay apart.
        let first = store.task("job", 128, 0..64)?.track_changes();
        let second = store.task("job", 128, 64..128)?.track_changes();
        for t in [&first, &second] {
            t.broadcast_put(1, "rules", b"a", b"1")?;
            t.broadcast_put(1, "rules", b"b", b"2")?;
        }
        first.broadcast_put(2, "rules", b"a", b"other operator")?;
        second.broadcast_remove(1, "rules", b"a")?;
        assert_eq!(first.broadcast_entries(1, "rules")?, vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
        assert_eq!(second.broadcast_entries(1, "rules")?, vec![(b"b".to_vec(), b"2".to_vec())]);
        assert_eq!(second.broadcast_get(1, "rules", b"a")?, None);
        assert_eq!(first.broadcast_get(2, "rules", b"a")?.as_deref(), Some(&b"other operator"[..]));

        // Only the subtask owning group 0 checkpoints its copy, fully and incrementally.
        let is_broadcast = |k: &[u8]| k.starts_with(&BROADCAST_GROUP.to_be_bytes());
        let full = first.capture(Vec::new());
        assert_eq!(full.full()?.iter().filter(|(k, _)| is_broadcast(k)).count(), 3);
        assert_eq!(full.delta()?.iter().filter(|(k, _)| is_broadcast(k)).count(), 3);
        let other = second.capture(Vec::new());
        assert!(other.full()?.is_empty());
        assert!(other.delta()?.is_empty());

        // Restored at parallelism 3, every new subtask gets the same copy.
        let saved = full.full()?;
        for (i, groups) in [0..43, 43..86, 86..128].into_iter().enumerate() {
            let t = store.task("restored", 128, groups)?;
            t.restore(&saved)?;
            assert_eq!(t.broadcast_entries(1, "rules")?, vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())], "subtask {i}");
            assert_eq!(t.broadcast_get(2, "rules", b"a")?.as_deref(), Some(&b"other operator"[..]), "subtask {i}");
        }
        Ok(())
    }
}
