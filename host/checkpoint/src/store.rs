//! The checkpoints of one job in a storage: the directory layout, completion, finding the
//! checkpoint to restore, loading state, and retention.
//!
//! ```text
//! <job>/chk-<id>/<vertex>-<subtask>-a<attempt>.state   state files, written by the subtasks
//! <job>/chk-<id>/_metadata                             written last, by the JobManager: the commit point
//! ```
//!
//! A checkpoint directory without `_metadata` is in progress or abandoned and never
//! counts. A delta chain reaches back into older checkpoint directories (its full file
//! and earlier deltas live where they were written), so retention works per file, not
//! per directory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use weir_types::ids::JobId;

use crate::format::FormatError;
use crate::meta::{CheckpointMeta, decode_meta, encode_meta};
use crate::state_file::{FileKind, StateFileView, key_group_of};
use crate::storage::{CheckpointStorage, StorageError};
use weir_types::keygroup::BROADCAST_GROUP;

/// A subtask's restored keyed state: (key, value) pairs sorted by key.
pub type RestoredState = Vec<(Vec<u8>, Vec<u8>)>;

/// The name of the file that completes a checkpoint (or a savepoint).
pub const METADATA_FILE: &str = "_metadata";

/// A checkpoint that cannot be completed, exported or restored from.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The storage failed, or a file is missing.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A file does not decode or fails its checksum.
    #[error("checkpoint file {path}: {source}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong with it.
        #[source]
        source: FormatError,
    },
    /// Files that decode but do not fit together (a chain not starting with a full file,
    /// metadata of another job, a key without a key group).
    #[error("checkpoint file {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The answer of [`JobCheckpoints::find_restore`].
#[derive(Debug, Clone, PartialEq)]
pub struct Restorable {
    /// The newest intact completed checkpoint, if any.
    pub found: Option<CheckpointMeta>,
    /// Completed checkpoints newer than `found` that cannot be restored, newest first.
    pub skipped: Vec<Skipped>,
}

/// A completed checkpoint passed over at restore time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its id.
    pub id: u64,
    /// Why it cannot be restored (the file and what is wrong with it).
    pub cause: String,
}

/// The checkpoints of one job.
#[derive(Clone)]
pub struct JobCheckpoints {
    storage: Arc<dyn CheckpointStorage>,
    job: JobId,
}

impl std::fmt::Debug for JobCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobCheckpoints").field("job", &self.job).finish_non_exhaustive()
    }
}

impl JobCheckpoints {
    /// The checkpoints of `job` (its directory in `storage`) in `storage`.
    pub fn new(storage: Arc<dyn CheckpointStorage>, job: &JobId) -> Self {
        Self { storage, job: job.clone() }
    }

    /// The job.
    pub fn job(&self) -> &JobId {
        &self.job
    }

    /// The storage the checkpoints live in.
    pub fn storage(&self) -> &Arc<dyn CheckpointStorage> {
        &self.storage
    }

    /// `<job>/chk-<id>`.
    pub fn checkpoint_dir(&self, id: u64) -> String {
        format!("{}/chk-{id}", self.job)
    }

    /// `<job>/chk-<id>/_metadata`.
    pub fn metadata_path(&self, id: u64) -> String {
        format!("{}/chk-{id}/{METADATA_FILE}", self.job)
    }

    /// `<job>/chk-<id>/<vertex>-<subtask>-a<attempt>.state`.
    pub fn state_path(&self, id: u64, vertex: u32, subtask: u32, attempt: u32) -> String {
        format!("{}/chk-{id}/{vertex}-{subtask}-a{attempt}.state", self.job)
    }

    /// Writes a state file (atomically and durably).
    pub fn write_state(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.storage.write(path, bytes)
    }

    /// The ids of every checkpoint directory of the job, completed or not, ascending. A
    /// new checkpoint must take an id above all of them, or it could mix its files with
    /// an abandoned attempt's.
    pub fn checkpoint_ids(&self) -> Result<Vec<u64>, StorageError> {
        let mut ids: Vec<u64> = self.storage.list(self.job.as_str())?.iter().filter_map(|name| parse_checkpoint_dir(name)).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Completes checkpoint `meta.id` by writing its metadata, after every state file it
    /// references has been written: the metadata is the commit point.
    pub fn complete(&self, meta: &CheckpointMeta) -> Result<(), CheckpointError> {
        let path = self.metadata_path(meta.id);
        if meta.job != self.job {
            return Err(CheckpointError::Invalid { path, reason: format!("the metadata is for job {:?}", meta.job) });
        }
        // Refuse now what decoding would refuse later, so a checkpoint never looks
        // complete without being restorable.
        meta.validate().map_err(|e| CheckpointError::Invalid { path: path.clone(), reason: e.to_string() })?;
        self.storage.write(&path, &encode_meta(meta))?;
        tracing::debug!(job = %self.job, checkpoint = meta.id, "completed checkpoint");
        Ok(())
    }

    /// The metadata of completed checkpoint `id` if it exists and decodes. `Ok(None)`
    /// means "not completed"; a corrupted or foreign metadata file is an error.
    fn read_meta(&self, id: u64) -> Result<Option<CheckpointMeta>, CheckpointError> {
        let path = self.metadata_path(id);
        let bytes = match self.storage.read(&path) {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let meta = decode_meta(&bytes).map_err(|source| CheckpointError::Corrupt { path: path.clone(), source })?;
        if meta.id != id || meta.job != self.job {
            let reason = format!("the metadata describes checkpoint {} of job {:?}", meta.id, meta.job);
            return Err(CheckpointError::Invalid { path, reason });
        }
        Ok(Some(meta))
    }

    /// The newest completed checkpoint whose metadata and every referenced state file
    /// decode and pass their checksums (it reads all of them). See [`Self::find_restore`].
    pub fn latest(&self) -> Result<Option<CheckpointMeta>, StorageError> {
        self.find_restore().map(|r| r.found)
    }

    /// What a restart restores: the newest intact completed checkpoint, and the newer
    /// completed checkpoints passed over on the way, each with its cause.
    ///
    /// A corrupted, inconsistent or incomplete one is skipped and the previous one is
    /// tried. A storage failure (other than a missing file) is returned instead: a
    /// transient error must not silently roll a job back.
    pub fn find_restore(&self) -> Result<Restorable, StorageError> {
        let mut verified = HashMap::new();
        let mut skipped = Vec::new();
        for id in self.checkpoint_ids()?.into_iter().rev() {
            let checked = self.read_meta(id).and_then(|meta| match meta {
                Some(meta) => verify_with(&*self.storage, &meta, &mut verified, |_, _| Ok(())).map(|()| Some(meta)),
                None => Ok(None),
            });
            match checked {
                Ok(Some(meta)) => return Ok(Restorable { found: Some(meta), skipped }),
                Ok(None) => tracing::debug!(job = %self.job, checkpoint = id, "checkpoint has no metadata (in progress or abandoned)"),
                Err(CheckpointError::Storage(e @ StorageError::Io { .. })) => return Err(e),
                Err(e) => {
                    tracing::error!(job = %self.job, checkpoint = id, "skipping checkpoint {id}, trying the previous one: {e}");
                    skipped.push(Skipped { id, cause: e.to_string() });
                }
            }
        }
        Ok(Restorable { found: None, skipped })
    }

    /// Completed checkpoint `id` if it is intact (as [`Self::find_restore`] checks
    /// it); `Ok(None)` if it is not completed or cannot be restored.
    pub fn intact(&self, id: u64) -> Result<Option<CheckpointMeta>, StorageError> {
        let checked = self.read_meta(id).and_then(|meta| match meta {
            Some(meta) => verify_with(&*self.storage, &meta, &mut HashMap::new(), |_, _| Ok(())).map(|()| Some(meta)),
            None => Ok(None),
        });
        match checked {
            Ok(found) => Ok(found),
            Err(CheckpointError::Storage(e @ StorageError::Io { .. })) => Err(e),
            Err(e) => {
                tracing::warn!(job = %self.job, checkpoint = id, "checkpoint {id} cannot be restored: {e}");
                Ok(None)
            }
        }
    }

    /// Loads the state of a chain from this job's storage (see [`load_state`]).
    pub fn load_state(&self, chain: &[String], groups: Range<u32>) -> Result<RestoredState, CheckpointError> {
        load_state(&*self.storage, chain, groups)
    }

    /// Bytes written for checkpoint `meta`: the newest state file of every subtask's
    /// chain (a delta, with incremental checkpoints) plus the metadata. Files that
    /// cannot be read count as zero: this is for display.
    pub fn written_bytes(&self, meta: &CheckpointMeta) -> u64 {
        let files = meta.vertices.iter().flat_map(|v| &v.tasks).filter_map(|t| t.state.last());
        files.chain(std::iter::once(&self.metadata_path(meta.id))).map(|f| self.storage.size(f).unwrap_or(0)).sum()
    }

    /// Keeps the newest `keep` completed checkpoints (at least one) and every file their
    /// chains reference; deletes the other checkpoints, and the abandoned (never
    /// completed) directories older than the newest completed checkpoint. Newer
    /// directories without metadata are checkpoints in progress and stay.
    ///
    /// Only metadata is checked here, not state files; keep at least 2 so that a
    /// checkpoint found corrupted at restore time still has a predecessor. Files outside
    /// the job's checkpoint directories (a savepoint a chain started from) are never
    /// deleted.
    pub fn retain(&self, keep: usize) -> Result<(), StorageError> {
        let keep = keep.max(1);
        let ids = self.checkpoint_ids()?;
        let mut retained = Vec::new();
        for &id in ids.iter().rev() {
            if retained.len() == keep {
                break;
            }
            match self.read_meta(id) {
                Ok(Some(meta)) => retained.push(meta),
                Ok(None) => {}
                Err(CheckpointError::Storage(e @ StorageError::Io { .. })) => return Err(e),
                Err(e) => tracing::warn!(job = %self.job, checkpoint = id, "not retaining checkpoint {id}: {e}"),
            }
        }
        let Some(newest) = retained.first().map(|m| m.id) else {
            // Nothing completed: every directory may still become the first checkpoint.
            return Ok(());
        };
        let retained_ids: HashSet<u64> = retained.iter().map(|m| m.id).collect();
        let referenced: HashSet<&str> = retained.iter().flat_map(|m| m.state_files()).collect();
        for id in ids {
            if retained_ids.contains(&id) || id > newest {
                continue;
            }
            let dir = self.checkpoint_dir(id);
            let prefix = format!("{dir}/");
            // The metadata goes first: a crash halfway must leave an incomplete checkpoint,
            // never a completed one with files missing.
            self.storage.delete(&self.metadata_path(id))?;
            if referenced.iter().any(|p| p.starts_with(&prefix)) {
                for name in self.storage.list(&dir)? {
                    let path = format!("{prefix}{name}");
                    if !referenced.contains(path.as_str()) {
                        self.storage.delete(&path)?;
                    }
                }
                tracing::debug!(job = %self.job, checkpoint = id, "dropped checkpoint, kept the files newer chains reference");
            } else {
                self.storage.delete(&dir)?;
                tracing::debug!(job = %self.job, checkpoint = id, "deleted checkpoint");
            }
        }
        Ok(())
    }

    /// Deletes every checkpoint of the job.
    pub fn delete_all(&self) -> Result<(), StorageError> {
        self.storage.delete(self.job.as_str())
    }
}

/// The checkpoint id of a metadata path `<job>/chk-<id>/_metadata` (what
/// [`JobCheckpoints::metadata_path`] writes).
pub fn checkpoint_of_metadata_path(path: &str) -> Option<u64> {
    let mut parts = path.split('/');
    let (_job, dir, file) = (parts.next()?, parts.next()?, parts.next()?);
    (file == METADATA_FILE && parts.next().is_none()).then(|| parse_checkpoint_dir(dir)).flatten()
}

/// `chk-<id>` with the id written canonically (so "chk-07" cannot alias "chk-7").
fn parse_checkpoint_dir(name: &str) -> Option<u64> {
    let id: u64 = name.strip_prefix("chk-")?.parse().ok()?;
    (name.len() == 4 + id.to_string().len()).then_some(id)
}

/// Reads and checks every state file `meta` references: checksums, structure, chain
/// shape (a full file, then deltas) and that every key has a key group.
pub fn verify(storage: &dyn CheckpointStorage, meta: &CheckpointMeta) -> Result<(), CheckpointError> {
    verify_with(storage, meta, &mut HashMap::new(), |_, _| Ok(()))
}

/// [`verify`], skipping files already verified (`verified` maps them to their kind:
/// consecutive checkpoints share the older files of their chains), and handing each file
/// it reads and found intact to `on_file`, so a copy needs no second read.
pub(crate) fn verify_with(
    storage: &dyn CheckpointStorage,
    meta: &CheckpointMeta,
    verified: &mut HashMap<String, FileKind>,
    mut on_file: impl FnMut(&str, &[u8]) -> Result<(), CheckpointError>,
) -> Result<(), CheckpointError> {
    for chain in meta.vertices.iter().flat_map(|v| &v.tasks).map(|t| &t.state) {
        for (position, path) in chain.iter().enumerate() {
            let kind = match verified.get(path) {
                Some(kind) => *kind,
                None => {
                    let bytes = storage.read(path)?;
                    let view = parse(path, &bytes)?;
                    if let Some((key, _)) = view.entries().find(|(key, _)| key_group_of(key).is_none()) {
                        return Err(no_key_group(path, key));
                    }
                    on_file(path, &bytes)?;
                    verified.insert(path.clone(), view.kind());
                    view.kind()
                }
            };
            check_position(path, position, kind)?;
        }
    }
    Ok(())
}

fn parse<'a>(path: &str, bytes: &'a [u8]) -> Result<StateFileView<'a>, CheckpointError> {
    StateFileView::parse(bytes).map_err(|source| CheckpointError::Corrupt { path: path.to_owned(), source })
}

fn check_position(path: &str, position: usize, kind: FileKind) -> Result<(), CheckpointError> {
    let reason = match (position, kind) {
        (0, FileKind::Full) | (1.., FileKind::Delta) => return Ok(()),
        (0, FileKind::Delta) => "a chain starts with a delta file instead of a full one".to_owned(),
        (_, FileKind::Full) => format!("a full file at position {position} of a chain, where only deltas may follow the first"),
    };
    Err(CheckpointError::Invalid { path: path.to_owned(), reason })
}

fn no_key_group(path: &str, key: &[u8]) -> CheckpointError {
    CheckpointError::Invalid { path: path.to_owned(), reason: format!("a key of {} bytes has no key group", key.len()) }
}

/// Loads a chain of state files from `storage`: the full file, then each delta in order
/// (a later value wins, a tombstone deletes), keeping only keys whose key group is in
/// `groups` (the subtask's share after rescaling), and broadcast state (group
/// [`BROADCAST_GROUP`], only ever in the chain of the subtask that owned group 0), which
/// every subtask restores. Returns the entries sorted by key.
/// Every file is checked (checksum, structure, chain shape) before any of it is used.
///
/// The chain's paths are relative to `storage`: the job's own storage for a checkpoint
/// from [`JobCheckpoints::latest`], the savepoint's for one from
/// [`crate::load_savepoint`].
pub fn load_state(storage: &dyn CheckpointStorage, chain: &[String], groups: Range<u32>) -> Result<RestoredState, CheckpointError> {
    let mut state = BTreeMap::new();
    for (position, path) in chain.iter().enumerate() {
        let bytes = storage.read(path)?;
        let view = parse(path, &bytes)?;
        check_position(path, position, view.kind())?;
        for (key, value) in view.entries() {
            let group = key_group_of(key).ok_or_else(|| no_key_group(path, key))?;
            if !groups.contains(&u32::from(group)) && group != BROADCAST_GROUP {
                continue;
            }
            match value {
                Some(value) => state.insert(key.to_vec(), value.to_vec()),
                None => state.remove(key),
            };
        }
    }
    Ok(state.into_iter().collect())
}
