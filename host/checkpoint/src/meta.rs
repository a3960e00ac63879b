//! Checkpoint metadata: what a completed checkpoint consists of.
//!
//! ```text
//! magic "WRCM" | version u16 LE (1) | postcard(CheckpointMeta) | xxh3-64 (u64 LE) of every byte before it
//! ```
//!
//! Postcard is not self-describing: any change to these structs is a new format
//! version. This build writes version 2 and reads 1 and 2; version 1 lacks
//! [`TaskMeta::state_versions`] (read as empty: no operator declared a state version).
//!
//! State-file paths in a [`CheckpointMeta`] are relative to the root of the storage the
//! metadata was read from (a savepoint stores them relative to its own directory on disk
//! and [`crate::load_savepoint`] rebases them; see there).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use weir_types::ids::JobId;

use crate::format::{self, CHECKSUM_LEN, FormatError, PREFIX_LEN};

const MAGIC: &[u8; 4] = b"WRCM";
const VERSION: u16 = 2;
/// The first version this build still reads.
const OLDEST: u16 = 1;
const WHAT: &str = "Weir checkpoint metadata file";

/// A completed checkpoint of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The job's id (its checkpoint directory).
    pub job: JobId,
    /// The checkpoint id; ids grow with time.
    pub id: u64,
    /// The number of key groups: fixed for a job's whole life, state cannot be
    /// redistributed across a different count.
    pub max_parallelism: u32,
    /// Every vertex of the execution graph.
    pub vertices: Vec<VertexMeta>,
}

/// One vertex (a chain of plan nodes) of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VertexMeta {
    /// The uid of the vertex's first plan node: vertex indexes can change when a job is
    /// changed or rescaled, uids are how a restore matches vertices.
    pub uid: String,
    /// The parallelism the vertex ran with.
    pub parallelism: u32,
    /// One entry per subtask.
    pub tasks: Vec<TaskMeta>,
}

/// One subtask of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMeta {
    /// The subtask index.
    pub subtask: u32,
    /// The key groups the subtask owned, `[start, end)`.
    pub key_groups: (u32, u32),
    /// The chain of state files: one full file, then deltas in order. Empty if the
    /// subtask has no keyed state.
    pub state: Vec<String>,
    /// The source's position (opaque to the checkpoint layer).
    pub source: Option<Vec<u8>>,
    /// The sink's transaction information (opaque to the checkpoint layer).
    pub sink: Option<Vec<u8>>,
    /// The state format version each of the subtask's operators declared (by operator
    /// uid; 0 for code that never declared one), handed back to the code that restores
    /// it. Empty in metadata of format version 1.
    pub state_versions: BTreeMap<String, u32>,
}

impl TaskMeta {
    /// The key groups as a range.
    pub fn key_group_range(&self) -> Range<u32> {
        self.key_groups.0..self.key_groups.1
    }
}

impl CheckpointMeta {
    /// Every state-file path the checkpoint references, each once, in order of first
    /// appearance (chains of different checkpoints share their older files).
    pub fn state_files(&self) -> Vec<&str> {
        let mut seen = std::collections::HashSet::new();
        self.vertices.iter().flat_map(|v| &v.tasks).flat_map(|t| &t.state).map(String::as_str).filter(|p| seen.insert(*p)).collect()
    }

    /// Checks what the types cannot: key-group ranges within the job's key groups and
    /// subtask indexes within their vertex's parallelism.
    pub fn validate(&self) -> Result<(), FormatError> {
        for vertex in &self.vertices {
            for task in &vertex.tasks {
                let (start, end) = task.key_groups;
                if start > end || end > self.max_parallelism {
                    return Err(FormatError::Invalid(format!(
                        "vertex {} subtask {}: key groups [{start}, {end}) are not within [0, {})",
                        vertex.uid, task.subtask, self.max_parallelism
                    )));
                }
                if task.subtask >= vertex.parallelism {
                    return Err(FormatError::Invalid(format!(
                        "vertex {}: subtask {} is not below its parallelism {}",
                        vertex.uid, task.subtask, vertex.parallelism
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Encodes checkpoint metadata.
pub fn encode_meta(meta: &CheckpointMeta) -> Vec<u8> {
    let mut out = Vec::new();
    format::write_prefix(&mut out, MAGIC, VERSION);
    // Serializing these plain structs into a Vec cannot fail (no maps with non-string
    // keys, no unsized sequences), but a Result must go somewhere that cannot panic.
    if let Ok(payload) = postcard::to_stdvec(meta) {
        out.extend_from_slice(&payload);
    }
    format::seal(&mut out);
    out
}

/// Decodes and validates checkpoint metadata.
pub fn decode_meta(bytes: &[u8]) -> Result<CheckpointMeta, FormatError> {
    let (version, payload) = format::open_any(bytes, WHAT, MAGIC, OLDEST..=VERSION, PREFIX_LEN + CHECKSUM_LEN)?;
    // Postcard allocates no more than the input holds (serde caps size hints), so a
    // hostile sequence length fails on the missing bytes.
    let payload_error = |e: postcard::Error| FormatError::Payload(e.to_string());
    let (meta, rest): (CheckpointMeta, _) = match version {
        OLDEST => postcard::take_from_bytes::<v1::CheckpointMeta>(payload).map(|(m, rest)| (m.into(), rest)).map_err(payload_error)?,
        _ => postcard::take_from_bytes(payload).map_err(payload_error)?,
    };
    if !rest.is_empty() {
        return Err(FormatError::Invalid(format!("{} bytes after the metadata payload", rest.len())));
    }
    meta.validate()?;
    Ok(meta)
}

/// Format version 1: as now, without [`TaskMeta::state_versions`].
mod v1 {
    use serde::{Deserialize, Serialize};
    use weir_types::ids::JobId;

    #[derive(Serialize, Deserialize)]
    pub(super) struct CheckpointMeta {
        pub job: JobId,
        pub id: u64,
        pub max_parallelism: u32,
        pub vertices: Vec<VertexMeta>,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct VertexMeta {
        pub uid: String,
        pub parallelism: u32,
        pub tasks: Vec<TaskMeta>,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct TaskMeta {
        pub subtask: u32,
        pub key_groups: (u32, u32),
        pub state: Vec<String>,
        pub source: Option<Vec<u8>>,
        pub sink: Option<Vec<u8>>,
    }

    impl From<CheckpointMeta> for super::CheckpointMeta {
        fn from(m: CheckpointMeta) -> Self {
            let task = |t: TaskMeta| super::TaskMeta {
                subtask: t.subtask,
                key_groups: t.key_groups,
                state: t.state,
                source: t.source,
                sink: t.sink,
                state_versions: Default::default(),
            };
            let vertex = |v: VertexMeta| super::VertexMeta { uid: v.uid, parallelism: v.parallelism, tasks: v.tasks.into_iter().map(task).collect() };
            Self { job: m.job, id: m.id, max_parallelism: m.max_parallelism, vertices: m.vertices.into_iter().map(vertex).collect() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CheckpointMeta {
        CheckpointMeta {
            job: JobId::from_u64(1),
            id: 7,
            max_parallelism: 128,
            vertices: vec![
                VertexMeta {
                    uid: "source".into(),
                    parallelism: 1,
                    tasks: vec![TaskMeta {
                        subtask: 0,
                        key_groups: (0, 128),
                        state: vec![],
                        source: Some(vec![1, 2, 3]),
                        sink: None,
                        state_versions: BTreeMap::new(),
                    }],
                },
                VertexMeta {
                    uid: "sum".into(),
                    parallelism: 2,
                    tasks: vec![
                        TaskMeta {
                            subtask: 0,
                            key_groups: (0, 64),
                            state: vec!["job/chk-5/1-0.state".into(), "job/chk-7/1-0.state".into()],
                            source: None,
                            sink: Some(b"txn".to_vec()),
                            state_versions: BTreeMap::from([("sum".into(), 2), ("format".into(), 0)]),
                        },
                        TaskMeta {
                            subtask: 1,
                            key_groups: (64, 128),
                            state: vec!["job/chk-5/1-1.state".into()],
                            source: None,
                            sink: None,
                            state_versions: BTreeMap::from([("sum".into(), 2), ("format".into(), 0)]),
                        },
                    ],
                },
            ],
        }
    }

    #[test]
    fn roundtrip() {
        let meta = sample();
        assert_eq!(decode_meta(&encode_meta(&meta)).expect("decode"), meta);
        assert_eq!(meta.state_files(), ["job/chk-5/1-0.state", "job/chk-7/1-0.state", "job/chk-5/1-1.state"]);
        let empty = CheckpointMeta { job: JobId::from_u64(0), id: 0, max_parallelism: 0, vertices: vec![] };
        assert_eq!(decode_meta(&encode_meta(&empty)).expect("decode empty"), empty);
    }

    /// Metadata written before operators declared state versions (format 1, as a
    /// savepoint taken by an older Weir holds it) still restores: every operator's
    /// version is unknown, which the restored code reads as `none`.
    #[test]
    fn format_1_metadata_reads_without_state_versions() {
        let old = v1::CheckpointMeta {
            job: JobId::from_u64(1),
            id: 7,
            max_parallelism: 128,
            vertices: vec![v1::VertexMeta {
                uid: "sum".into(),
                parallelism: 1,
                tasks: vec![v1::TaskMeta {
                    subtask: 0,
                    key_groups: (0, 128),
                    state: vec!["job/chk-7/1-0.state".into()],
                    source: None,
                    sink: Some(b"txn".to_vec()),
                }],
            }],
        };
        let mut bytes = Vec::new();
        format::write_prefix(&mut bytes, MAGIC, 1);
        bytes.extend_from_slice(&postcard::to_stdvec(&old).expect("encode"));
        format::seal(&mut bytes);
        // The bytes of a format-1 file, pinned: the v1 types above must not drift.
        assert_eq!(
            bytes[..bytes.len() - CHECKSUM_LEN],
            *b"WRCM\x01\x00\x100000000000000001\x07\x80\x01\x01\x03sum\x01\x01\x00\x00\x80\x01\x01\x13job/chk-7/1-0.state\x00\x01\x03txn"
        );
        let meta = decode_meta(&bytes).expect("a format-1 file decodes");
        let task = &meta.vertices[0].tasks[0];
        assert!(task.state_versions.is_empty());
        assert_eq!((task.state.as_slice(), task.sink.as_deref()), (["job/chk-7/1-0.state".to_string()].as_slice(), Some(b"txn".as_slice())));
        // What this build writes is format 2, with the versions.
        let now = encode_meta(&sample());
        assert_eq!(now[4..6], [2, 0]);
        assert_eq!(decode_meta(&now).expect("decode").vertices[1].tasks[0].state_versions["sum"], 2);
        // A newer format is named as such.
        let mut newer = now.clone();
        newer[4] = 3;
        assert!(matches!(decode_meta(&newer), Err(FormatError::UnsupportedVersion { found: 3, supported: 2, .. })));
    }

    #[test]
    fn every_corruption_and_truncation_is_detected() {
        let good = encode_meta(&sample());
        for pos in 0..good.len() {
            let mut bad = good.clone();
            bad[pos] ^= 0x01;
            assert!(decode_meta(&bad).is_err(), "flip at byte {pos} went unnoticed");
        }
        for len in 0..good.len() {
            assert!(decode_meta(&good[..len]).is_err(), "truncation to {len} bytes went unnoticed");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(decode_meta(&long).is_err());
    }

    #[test]
    fn hostile_payloads_are_refused() {
        let sealed = |payload: &[u8]| {
            let mut out = Vec::new();
            format::write_prefix(&mut out, MAGIC, VERSION);
            out.extend_from_slice(payload);
            format::seal(&mut out);
            out
        };
        // A job name claiming ~2^63 bytes, and a vertex list claiming as many entries
        // (after job "", id 1, max parallelism 5).
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        let mut vertices = vec![0, 1, 5];
        vertices.extend_from_slice(&huge);
        format::assert_no_huge_allocation(|| {
            assert!(matches!(decode_meta(&sealed(&huge)), Err(FormatError::Payload(_))));
            assert!(matches!(decode_meta(&sealed(&vertices)), Err(FormatError::Payload(_))));
        });
        // Trailing bytes after a valid payload.
        let mut payload = postcard::to_stdvec(&sample()).expect("encode");
        payload.push(0);
        assert!(matches!(decode_meta(&sealed(&payload)), Err(FormatError::Invalid(_))));
        // Semantically impossible metadata.
        let mut meta = sample();
        meta.vertices[1].tasks[1].key_groups = (64, 129);
        assert!(matches!(decode_meta(&encode_meta(&meta)), Err(FormatError::Invalid(_))));
        let mut meta = sample();
        meta.vertices[1].tasks[1].subtask = 2;
        assert!(matches!(decode_meta(&encode_meta(&meta)), Err(FormatError::Invalid(_))));
    }
}
