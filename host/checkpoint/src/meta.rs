//! Checkpoint metadata: what a completed checkpoint consists of.
//!
//! ```text
//! magic "WRCM" | version u16 LE (1) | postcard(CheckpointMeta) | xxh3-64 (u64 LE) of every byte before it
//! ```
//!
//! Postcard is not self-describing: any change to these structs is a new format
//! version, and this build refuses every version but its own.
//!
//! State-file paths in a [`CheckpointMeta`] are relative to the root of the storage the
//! metadata was read from (a savepoint stores them relative to its own directory on disk
//! and [`crate::load_savepoint`] rebases them; see there).

use std::ops::Range;

use serde::{Deserialize, Serialize};
use weir_types::ids::JobId;

use crate::format::{self, CHECKSUM_LEN, FormatError, PREFIX_LEN};

const MAGIC: &[u8; 4] = b"WRCM";
const VERSION: u16 = 1;
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
    let payload = format::open(bytes, WHAT, MAGIC, VERSION, PREFIX_LEN + CHECKSUM_LEN)?;
    // Postcard allocates no more than the input holds (serde caps size hints), so a
    // hostile sequence length fails on the missing bytes.
    let (meta, rest): (CheckpointMeta, _) = postcard::take_from_bytes(payload).map_err(|e| FormatError::Payload(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FormatError::Invalid(format!("{} bytes after the metadata payload", rest.len())));
    }
    meta.validate()?;
    Ok(meta)
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
                    tasks: vec![TaskMeta { subtask: 0, key_groups: (0, 128), state: vec![], source: Some(vec![1, 2, 3]), sink: None }],
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
                        },
                        TaskMeta { subtask: 1, key_groups: (64, 128), state: vec!["job/chk-5/1-1.state".into()], source: None, sink: None },
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
