//! A TaskManager's side of checkpoints: persisting what subtasks capture at barriers
//! (off their threads), acknowledging to the JobManager, and restoring state and
//! source positions when a job starts from a checkpoint or savepoint.
//!
//! Incremental snapshots: a subtask writes a delta (the keys changed since its last
//! capture) on top of its previous chain only when that previous checkpoint is known
//! complete; otherwise, or once the chain is long, it writes a full file. So a chain
//! never references a file of a checkpoint that was abandoned.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use weir_checkpoint::{
    CheckpointMeta, CheckpointStorage, DirStorage, FileKind, JobCheckpoints, RestoredState, StateFileWriter, TaskMeta, decode_meta, load_savepoint,
};
pub use weir_control::protocol::{CheckpointAck, EndOfInput};
use weir_state::Capture;
use weir_types::access::FileAccess;
use weir_types::deployment::{JobDeployment, RestoreFrom};
use weir_types::ids::RunId;

use crate::error::{CheckpointingError, RestoreError, SnapshotError, SourceError};
use crate::task::{Checkpointing, SwapSlot, TaskSnapshot};
use weir_checkpoint::{Split, decode_splits, encode_splits, savepoint_location};

/// Deltas a chain may grow to before the next snapshot is full again: bounds restore
/// work and the files a checkpoint keeps alive.
const MAX_DELTAS: usize = 8;

/// Hears of persisted snapshots.
pub type AckSink = Arc<dyn Fn(CheckpointAck) + Send + Sync>;

/// Hears of subtasks at the end of their input.
pub type EndSink = Arc<dyn Fn(EndOfInput) + Send + Sync>;

/// One job's checkpoints on this TaskManager.
pub struct JobCheckpointing {
    run: RunId,
    /// The attempt: it names this run's state files and owns its sinks' transactions.
    attempt: u32,
    /// Newest checkpoint whose barriers sources should inject.
    pub requested: Arc<AtomicU64>,
    /// The checkpoint of a stop-with-savepoint, 0 if none: sources suspend after it.
    pub stop_at: Arc<AtomicU64>,
    /// Newest checkpoint the JobManager declared complete.
    pub completed: Arc<AtomicU64>,
    /// A live swap, once armed (see [`crate::task::SwapTo`]).
    pub swap: SwapSlot,
    store: Option<Arc<JobCheckpoints>>,
    acks: AckSink,
    ends: EndSink,
}

impl JobCheckpointing {
    /// Checkpointing for a deployment; without a checkpoint config barriers never come.
    pub fn new(d: &JobDeployment, acks: AckSink, ends: EndSink) -> Result<Self, CheckpointingError> {
        let store = match &d.checkpoints {
            Some(c) => {
                let storage = DirStorage::new(&c.dir).map_err(|source| CheckpointingError::Storage { dir: c.dir.clone(), source })?;
                Some(Arc::new(JobCheckpoints::new(Arc::new(storage), &d.job)))
            }
            None => None,
        };
        // A restored job continues the checkpoint ids of the run it restores.
        Ok(Self {
            run: d.run_id(),
            attempt: d.attempt,
            requested: Arc::default(),
            stop_at: Arc::default(),
            completed: Arc::default(),
            swap: SwapSlot::default(),
            store,
            acks,
            ends,
        })
    }

    /// The hooks of one subtask; `transactional`: it ends in a transactional sink,
    /// whose pending epochs the restore of its checkpoint must commit.
    pub fn task(&self, vertex: u32, subtask: u32, key_groups: Range<u32>, transactional: bool) -> Checkpointing {
        let Some(store) = self.store.clone() else {
            return Checkpointing {
                requested: self.requested.clone(),
                stop_at: self.stop_at.clone(),
                on_snapshot: Arc::new(|_| {}),
                completed: self.completed.clone(),
                on_end: None,
                swap: self.swap.clone(),
            };
        };
        let (ends, run) = (self.ends.clone(), self.run.clone());
        let on_end = move |last_checkpoint| ends(EndOfInput { run: run.clone(), vertex, subtask, last_checkpoint });
        let chain = Arc::new(Mutex::new(Chain::default()));
        let (completed, acks, run, attempt) = (self.completed.clone(), self.acks.clone(), self.run.clone(), self.attempt);
        let sink = transactional.then(|| encode_sink_owner(attempt));
        let on_snapshot = move |snap: TaskSnapshot| {
            let kind = chain.lock().unwrap_or_else(PoisonError::into_inner).next_kind(completed.load(Ordering::Acquire));
            let (chain, store, acks, run, key_groups, sink) =
                (chain.clone(), store.clone(), acks.clone(), run.clone(), key_groups.clone(), sink.clone());
            // Reading the fjall snapshot and writing the file can take a while: never
            // on the subtask's thread.
            let spawned = std::thread::Builder::new().name(format!("weir-snapshot-{vertex}-{subtask}")).spawn(move || {
                let checkpoint = snap.checkpoint;
                let task = persist(&store, &chain, snap, kind, Writer { vertex, subtask, attempt }, key_groups, sink);
                if let Err(e) = &task {
                    tracing::warn!(job = %run, checkpoint, vertex, subtask, "snapshot failed: {e}");
                }
                // The acknowledgement crosses the wire, where the cause is text.
                acks(CheckpointAck { run, checkpoint, vertex, task: task.map_err(|e| e.to_string()) });
            });
            if let Err(e) = spawned {
                tracing::warn!(vertex, subtask, "cannot start a snapshot writer: {e}");
            }
        };
        Checkpointing {
            requested: self.requested.clone(),
            stop_at: self.stop_at.clone(),
            on_snapshot: Arc::new(on_snapshot),
            completed: self.completed.clone(),
            on_end: Some(Arc::new(on_end)),
            swap: self.swap.clone(),
        }
    }
}

/// A subtask's chain of state files and the checkpoint that wrote its last file.
#[derive(Default)]
struct Chain {
    files: Vec<String>,
    last: u64,
    /// Set once a write failed: the next snapshot must be full.
    broken: bool,
}

impl Chain {
    fn next_kind(&self, completed: u64) -> FileKind {
        let extendable = !self.broken && !self.files.is_empty() && self.last <= completed && self.files.len() <= MAX_DELTAS;
        if extendable { FileKind::Delta } else { FileKind::Full }
    }
}

/// Who writes a state file: a subtask of an attempt.
#[derive(Debug, Clone, Copy)]
pub struct Writer {
    /// Vertex index.
    pub vertex: u32,
    /// Subtask index.
    pub subtask: u32,
    /// The job's attempt.
    pub attempt: u32,
}

fn persist(
    store: &JobCheckpoints,
    chain: &Mutex<Chain>,
    snap: TaskSnapshot,
    kind: FileKind,
    writer: Writer,
    key_groups: Range<u32>,
    sink: Option<Vec<u8>>,
) -> Result<TaskMeta, SnapshotError> {
    let lock = || chain.lock().unwrap_or_else(PoisonError::into_inner);
    let files = match &snap.state {
        None => Vec::new(),
        Some(capture) => match write_state(store, capture, kind, snap.checkpoint, writer) {
            Ok(path) => {
                let mut c = lock();
                if kind == FileKind::Full {
                    c.files.clear();
                }
                c.files.push(path);
                c.last = snap.checkpoint;
                c.broken = false;
                c.files.clone()
            }
            Err(e) => {
                lock().broken = true;
                return Err(e);
            }
        },
    };
    Ok(TaskMeta {
        subtask: writer.subtask,
        key_groups: (key_groups.start, key_groups.end),
        state: files,
        source: snap.source.as_deref().map(encode_splits),
        sink,
        state_versions: snap.state_versions,
    })
}

/// Writes a captured state as a full or delta state file of checkpoint `id`; its path.
/// The path names the attempt: checkpoint ids repeat across attempts (one that never
/// completed is triggered again by the next), and a superseded attempt still writing
/// must never replace a file of its successor's checkpoint.
pub fn write_state(store: &JobCheckpoints, capture: &Capture, kind: FileKind, id: u64, writer: Writer) -> Result<String, SnapshotError> {
    let mut w = StateFileWriter::new(kind);
    match kind {
        FileKind::Full => {
            // `for_each` hands back our own error as text too; keep it typed aside.
            let mut encode = None;
            capture
                .for_each(|k, v| {
                    w.put(k, v).map_err(|e| {
                        let text = e.to_string();
                        encode = Some(e);
                        text
                    })
                })
                .map_err(|read| encode.take().map_or(SnapshotError::Read(read), SnapshotError::Encode))?;
        }
        FileKind::Delta => {
            for (k, v) in capture.delta()? {
                match v {
                    Some(v) => w.put(&k, &v),
                    None => w.delete(&k),
                }?;
            }
        }
    }
    let path = store.state_path(id, writer.vertex, writer.subtask, writer.attempt);
    store.write_state(&path, &w.finish())?;
    Ok(path)
}

/// What a deployment restores from: the checkpoint's metadata and its storage.
pub struct Restore {
    meta: CheckpointMeta,
    storage: Arc<dyn CheckpointStorage>,
    /// A checkpoint (this job's or an ended job's), not a savepoint: its sinks'
    /// pending epochs are settled by the restore.
    checkpoint: bool,
}

impl Restore {
    /// Reads the metadata a deployment names, if it names one.
    /// A savepoint's directory must be one `files` allows.
    pub fn open(d: &JobDeployment, files: &FileAccess) -> Result<Option<Self>, CheckpointingError> {
        let Some(from) = &d.restore else { return Ok(None) };
        let fail = |cause: RestoreError| CheckpointingError::Restore { from: from.clone(), cause };
        let (meta, storage) = Self::read(d, from, files).map_err(fail)?;
        if meta.max_parallelism != d.plan.max_parallelism() {
            return Err(fail(RestoreError::KeyGroups { checkpoint: meta.max_parallelism, job: d.plan.max_parallelism() }));
        }
        let checkpoint = !matches!(from, RestoreFrom::Savepoint(_));
        Ok(Some(Self { meta, storage, checkpoint }))
    }

    /// The metadata of what `from` names, and the storage its files are in.
    fn read(d: &JobDeployment, from: &RestoreFrom, files: &FileAccess) -> Result<(CheckpointMeta, Arc<dyn CheckpointStorage>), RestoreError> {
        Ok(match from {
            RestoreFrom::Checkpoint(path) | RestoreFrom::CheckpointOf { path, .. } => {
                let dir = &d.checkpoints.as_ref().ok_or(RestoreError::NoStorage)?.dir;
                let storage = DirStorage::new(dir)?;
                (decode_meta(&storage.read(path)?)?, Arc::new(storage))
            }
            RestoreFrom::Savepoint(dir) => {
                let dir = files.resolve("fromSavepoint", dir)?.display().to_string();
                let (root, name) = savepoint_location(&dir)?;
                let storage = DirStorage::new(root)?;
                (load_savepoint(&storage, &name)?, Arc::new(storage))
            }
        })
    }

    /// The checkpoint restored from.
    pub fn id(&self) -> u64 {
        self.meta.id
    }

    /// The job and attempt that completed the checkpoint, as its transactional sinks
    /// recorded it: the only attempt whose pending epochs the restore commits (this
    /// job's, or an ended job's whose checkpoint a new job continues from). `None`
    /// for a savepoint (its job was stopped and committed its own output).
    pub fn sink_owner(&self) -> Option<(&str, u32)> {
        if !self.checkpoint {
            return None;
        }
        let attempt = self.meta.vertices.iter().flat_map(|v| &v.tasks).find_map(|t| t.sink.as_deref().and_then(decode_sink_owner))?;
        Some((self.meta.job.as_str(), attempt))
    }

    /// The state format version the code of operator `uid` declared when it took this
    /// snapshot (whichever vertex held it then: chaining may have changed); `None` if
    /// the snapshot has no such operator or predates state versions.
    pub fn state_version(&self, uid: &str) -> Option<u32> {
        self.meta.vertices.iter().flat_map(|v| &v.tasks).find_map(|t| t.state_versions.get(uid).copied())
    }

    fn vertex(&self, uid: &str) -> Option<&weir_checkpoint::VertexMeta> {
        self.meta.vertices.iter().find(|v| v.uid == uid)
    }

    /// The keyed state of key groups `groups` of the vertex whose first node is `uid`,
    /// gathered from every old subtask that owned some of them (the parallelism may
    /// have changed), and the broadcast state, which only the old owner of key group 0
    /// checkpointed and every new subtask restores.
    pub fn state(&self, uid: &str, groups: Range<u32>) -> Result<RestoredState, CheckpointingError> {
        let Some(vertex) = self.vertex(uid) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for t in &vertex.tasks {
            let owned = t.key_group_range();
            let overlaps = owned.start < groups.end && groups.start < owned.end;
            if t.state.is_empty() || !(overlaps || owned.start == 0) {
                continue;
            }
            // Without overlap, an empty range: only the broadcast state.
            let start = owned.start.max(groups.start);
            let part = start..owned.end.min(groups.end).max(start);
            let entries = weir_checkpoint::load_state(self.storage.as_ref(), &t.state, part).map_err(|source| CheckpointingError::State {
                uid: uid.to_string(),
                subtask: t.subtask,
                source,
            })?;
            out.extend(entries);
        }
        Ok(out)
    }

    /// Every split of the source whose first node is `uid`, whichever subtask held it:
    /// for sources whose splits choose their subtask themselves (Kafka partitions).
    pub fn all_source_splits(&self, uid: &str) -> Result<Option<Vec<Split>>, SourceError> {
        let Some(vertex) = self.vertex(uid) else { return Ok(None) };
        let mut splits = Vec::new();
        for pos in vertex.tasks.iter().filter_map(|t| t.source.as_ref()) {
            splits.extend(decode_splits(pos).map_err(SourceError::Position)?);
        }
        Ok(Some(splits))
    }

    /// The unread source splits that new subtask `subtask` of `parallelism` resumes:
    /// old subtask `i`'s splits go to new subtask `i % parallelism`.
    pub fn source(&self, uid: &str, subtask: u32, parallelism: u32) -> Result<Option<Vec<Split>>, SourceError> {
        let Some(vertex) = self.vertex(uid) else { return Ok(None) };
        let mut splits = Vec::new();
        for t in vertex.tasks.iter().filter(|t| t.subtask % parallelism.max(1) == subtask) {
            if let Some(pos) = &t.source {
                splits.extend(decode_splits(pos).map_err(SourceError::Position)?);
            }
        }
        Ok(Some(splits))
    }
}

/// A transactional sink's part of a snapshot: the attempt that owns its pending epochs.
fn encode_sink_owner(attempt: u32) -> Vec<u8> {
    attempt.to_le_bytes().to_vec()
}

fn decode_sink_owner(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}
