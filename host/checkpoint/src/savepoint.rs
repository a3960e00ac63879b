//! Savepoints: a completed checkpoint copied out of the job's checkpoint directory, so
//! that it outlives the job and its retention.
//!
//! ```text
//! <dir>/_metadata      the checkpoint's metadata, chain paths relative to <dir>
//! <dir>/<n>.state      the n-th distinct state file the checkpoint references
//! ```
//!
//! Storing paths relative to the savepoint's directory makes a savepoint relocatable:
//! it can be moved or copied to another machine as a directory. [`load_savepoint`]
//! rebases them onto the storage root, so a loaded savepoint is used like any
//! checkpoint, with [`crate::load_state`] on the savepoint's storage.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::meta::{CheckpointMeta, decode_meta, encode_meta};
use crate::storage::{CheckpointStorage, validate_path};
use crate::store::{CheckpointError, JobCheckpoints, METADATA_FILE, verify, verify_with};

impl JobCheckpoints {
    /// Copies completed checkpoint `meta` (its state files, then its metadata last) into
    /// the empty or missing directory `dir` of `target`. Every file is verified before it
    /// is copied (the chain shape too, before the metadata makes the savepoint count),
    /// so a savepoint never preserves corruption.
    pub fn export(&self, meta: &CheckpointMeta, target: &dyn CheckpointStorage, dir: &str) -> Result<(), CheckpointError> {
        validate_path(dir)?;
        // Overwriting a savepoint in place would mix its files with the new ones under
        // the old metadata.
        if !target.list(dir)?.is_empty() {
            return Err(CheckpointError::Invalid { path: dir.to_owned(), reason: "the savepoint directory is not empty".into() });
        }
        let files = meta.state_files();
        let renamed: HashMap<&str, String> = files.iter().enumerate().map(|(n, path)| (*path, format!("{n}.state"))).collect();
        verify_with(&**self.storage(), meta, &mut HashMap::new(), |path, bytes| {
            let name = renamed.get(path).ok_or_else(|| CheckpointError::Invalid { path: path.to_owned(), reason: "not in the checkpoint".into() })?;
            Ok(target.write(&format!("{dir}/{name}"), bytes)?)
        })?;
        let mut copy = meta.clone();
        for chain in copy.vertices.iter_mut().flat_map(|v| &mut v.tasks).map(|t| &mut t.state) {
            for path in chain.iter_mut() {
                if let Some(name) = renamed.get(path.as_str()) {
                    path.clone_from(name);
                }
            }
        }
        target.write(&format!("{dir}/{METADATA_FILE}"), &encode_meta(&copy))?;
        tracing::info!(job = %meta.job, checkpoint = meta.id, savepoint = dir, files = files.len(), "exported a savepoint");
        Ok(())
    }
}

/// Reads the savepoint in `dir` of `storage`, verifies every state file it references,
/// and returns its metadata with chain paths relative to the root of `storage` (for
/// [`crate::load_state`] with the same storage).
pub fn load_savepoint(storage: &dyn CheckpointStorage, dir: &str) -> Result<CheckpointMeta, CheckpointError> {
    let path = format!("{dir}/{METADATA_FILE}");
    let bytes = storage.read(&path)?;
    let mut meta = decode_meta(&bytes).map_err(|source| CheckpointError::Corrupt { path: path.clone(), source })?;
    for chain in meta.vertices.iter_mut().flat_map(|v| &mut v.tasks).map(|t| &mut t.state) {
        for file in chain.iter_mut() {
            // Checked on its own too: "<dir>/../x" could otherwise pass as "x".
            validate_path(file).map_err(|e| CheckpointError::Invalid { path: path.clone(), reason: e.to_string() })?;
            *file = format!("{dir}/{file}");
        }
    }
    verify(storage, &meta)?;
    Ok(meta)
}

/// A path that names no directory (`/`, `..`): a savepoint has a directory of its own.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} does not name a directory")]
pub struct NotADirectory(pub String);

/// A savepoint directory as (storage root, name in it): savepoints are addressed by
/// their own directory, which may live anywhere.
pub fn savepoint_location(dir: &str) -> Result<(PathBuf, String), NotADirectory> {
    let path = Path::new(dir);
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| NotADirectory(dir.to_string()))?;
    let root = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok((root.to_path_buf(), name.to_string()))
}
