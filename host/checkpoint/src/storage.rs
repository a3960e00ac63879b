//! Where checkpoint files live: a small file-system-like trait, and the directory
//! implementation every process on one machine (or on one shared mount) can use.
//!
//! The trait is deliberately tiny (whole-file write, read, list, delete) so that an
//! object store fits behind it later: no appends, no partial reads, no locks. Atomicity
//! of a whole file is the one guarantee the rest of the crate builds on.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A storage failure, always naming the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A path that could escape the storage root or is otherwise malformed.
    #[error("invalid checkpoint path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The file does not exist (kept apart from [`StorageError::Io`] because a missing
    /// file is an expected state: an incomplete checkpoint, a deleted one).
    #[error("checkpoint file {path} does not exist")]
    NotFound {
        /// The missing path, relative to the storage root.
        path: String,
    },
    /// Any other I/O failure.
    #[error("checkpoint storage: cannot {op} {path}: {source}")]
    Io {
        /// What was being done ("write", "read", "list", ...).
        op: &'static str,
        /// The file-system path.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Where checkpoint files live.
///
/// Paths are '/'-separated and relative to the storage root ("job/chk-3/0-1.state").
/// An absolute path, an empty component, a backslash, or a component starting with '.'
/// (which covers "." and "..") is refused with [`StorageError::InvalidPath`]: a path
/// read from a (possibly hostile) metadata file must never reach outside the root.
/// Names starting with '.' are reserved for the storage's in-flight temporary files.
pub trait CheckpointStorage: Send + Sync {
    /// Writes a whole file atomically and durably, creating parent directories: a reader
    /// sees either no file or all of `bytes`, also after a crash.
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Reads a whole file; a missing one is [`StorageError::NotFound`].
    fn read(&self, path: &str) -> Result<Vec<u8>, StorageError>;
    /// The names (not paths) of the entries directly in directory `dir`, sorted; empty
    /// if the directory does not exist. `""` lists the root.
    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError>;
    /// Deletes a file or a whole directory tree; a missing one is not an error.
    fn delete(&self, path: &str) -> Result<(), StorageError>;
    /// The size of a file in bytes; a missing one is [`StorageError::NotFound`].
    fn size(&self, path: &str) -> Result<u64, StorageError>;
}

/// Checks a storage path (see [`CheckpointStorage`] for the rules).
pub fn validate_path(path: &str) -> Result<(), StorageError> {
    let refuse = |reason| Err(StorageError::InvalidPath { path: path.to_owned(), reason });
    if path.is_empty() {
        return refuse("empty path");
    }
    if path.starts_with('/') {
        return refuse("absolute paths are not allowed");
    }
    for component in path.split('/') {
        if component.is_empty() {
            return refuse("empty path component");
        }
        if component.starts_with('.') {
            return refuse("a path component may not start with '.' (this refuses '..')");
        }
        // On Windows a backslash is a separator, and NUL truncates paths in C APIs:
        // either would let a component smuggle in another.
        if component.contains(['\\', '\0']) {
            return refuse("backslash or NUL in a path");
        }
    }
    Ok(())
}

/// The default storage: a directory, shared by all processes on one machine.
#[derive(Debug, Clone)]
pub struct DirStorage {
    root: PathBuf,
}

/// Distinguishes the temporary files of concurrent writers in one process; the pid
/// distinguishes processes.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl DirStorage {
    /// Uses `root` (created if missing) as the storage root.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| io_error("create", &root, source))?;
        Ok(Self { root })
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn resolve(&self, path: &str) -> Result<PathBuf, StorageError> {
        validate_path(path)?;
        Ok(path.split('/').fold(self.root.clone(), |p, c| p.join(c)))
    }

    /// Creates the missing directories from the root down to `dir`, and makes each new
    /// entry durable by syncing its parent: a renamed file in a directory whose own entry
    /// was lost in a crash would be lost with it.
    fn create_dirs(&self, dir: &Path) -> Result<(), StorageError> {
        if dir.is_dir() {
            return Ok(());
        }
        let Ok(relative) = dir.strip_prefix(&self.root) else {
            return Ok(());
        };
        let mut current = self.root.clone();
        for component in relative.components() {
            let parent = current.clone();
            current.push(component);
            match std::fs::create_dir(&current) {
                Ok(()) => sync_dir(&parent)?,
                // Another writer (thread or process) may create it at the same time.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(io_error("create directory", &current, source)),
            }
        }
        Ok(())
    }
}

impl CheckpointStorage for DirStorage {
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let target = self.resolve(path)?;
        let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(StorageError::InvalidPath { path: path.to_owned(), reason: "no file name" });
        };
        self.create_dirs(dir)?;
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{}.{}-{seq}.tmp", name.to_string_lossy(), std::process::id()));
        let result = write_synced(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &target).map_err(|source| io_error("rename into place", &target, source)))
            .and_then(|()| sync_dir(dir));
        if result.is_err() {
            // Best effort: a leftover temporary file is invisible to `list` and is removed
            // with its checkpoint directory anyway.
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        let file = self.resolve(path)?;
        std::fs::read(&file).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound { path: path.to_owned() },
            _ => io_error("read", &file, source),
        })
    }

    fn size(&self, path: &str) -> Result<u64, StorageError> {
        let file = self.resolve(path)?;
        std::fs::metadata(&file).map(|m| m.len()).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound { path: path.to_owned() },
            _ => io_error("stat", &file, source),
        })
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        let dir_path = if dir.is_empty() { self.root.clone() } else { self.resolve(dir)? };
        let entries = match std::fs::read_dir(&dir_path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(io_error("list", &dir_path, source)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| io_error("list", &dir_path, source))?;
            // A name that is not UTF-8 or starts with '.' was not written through this
            // trait (or is an in-flight temporary file): not ours to report.
            if let Ok(name) = entry.file_name().into_string()
                && !name.starts_with('.')
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        let target = self.resolve(path)?;
        let result = match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&target),
            Ok(_) => std::fs::remove_file(&target),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_error("delete", &target, source)),
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let io = |source| io_error("write", path, source);
    let mut file = File::create(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Makes the directory's entries (a rename, a new subdirectory) durable.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    // Only Unix lets a directory be opened and synced; elsewhere the rename is as
    // durable as the platform makes it.
    if cfg!(unix) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|source| io_error("sync directory", dir, source))?;
    }
    Ok(())
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io { op, path: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (tempfile::TempDir, DirStorage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = DirStorage::new(dir.path().join("root")).expect("storage");
        (dir, storage)
    }

    #[test]
    fn refuses_paths_that_escape_or_are_malformed() {
        for bad in ["../x", "/x", "a/../x", "a/./x", "a//b", "", "a/", ".hidden", "a\\..\\b", "a\0b", ".."] {
            assert!(matches!(validate_path(bad), Err(StorageError::InvalidPath { .. })), "{bad:?} was accepted");
        }
        for good in ["x", "job/chk-3/0-1.state", "a.b/c..d"] {
            validate_path(good).expect(good);
        }
        let (_dir, s) = storage();
        for bad in ["../x", "/x"] {
            assert!(matches!(s.write(bad, b"no"), Err(StorageError::InvalidPath { .. })));
            assert!(matches!(s.read(bad), Err(StorageError::InvalidPath { .. })));
            assert!(matches!(s.list(bad), Err(StorageError::InvalidPath { .. })));
            assert!(matches!(s.delete(bad), Err(StorageError::InvalidPath { .. })));
        }
        assert!(!s.root().parent().expect("parent").join("x").exists());
    }

    #[test]
    fn write_read_list_delete() {
        let (_dir, s) = storage();
        s.write("job/chk-1/0-0.state", b"one").expect("write");
        s.write("job/chk-1/0-0.state", b"two").expect("overwrite");
        s.write("job/chk-1/_metadata", b"m").expect("write");
        assert_eq!(s.read("job/chk-1/0-0.state").expect("read"), b"two");
        assert!(matches!(s.read("job/chk-2/_metadata"), Err(StorageError::NotFound { .. })));
        assert_eq!(s.list("job/chk-1").expect("list"), ["0-0.state", "_metadata"]);
        assert_eq!(s.list("job").expect("list"), ["chk-1"]);
        assert_eq!(s.list("").expect("list root"), ["job"]);
        assert!(s.list("nope").expect("list missing").is_empty());
        // No temporary file is left behind, and one that is (a crashed writer) is hidden.
        std::fs::write(s.root().join("job/chk-1/.x.tmp"), b"partial").expect("write tmp");
        assert_eq!(s.list("job/chk-1").expect("list"), ["0-0.state", "_metadata"]);
        s.delete("job/chk-1/_metadata").expect("delete file");
        assert_eq!(s.list("job/chk-1").expect("list"), ["0-0.state"]);
        s.delete("job/chk-1").expect("delete dir");
        s.delete("job/chk-1").expect("delete missing");
        assert!(s.list("job").expect("list").is_empty());
    }
}
