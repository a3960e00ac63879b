//! Uploaded components on disk: `<dir>/<sha256>.wasm`, at most `cap` bytes in all.
//! Memory holds only an index (hash, size, last use); the bytes are read when a job is
//! created from them, and a running job keeps its own copy. When an upload would pass
//! the cap, the least recently used artifacts are deleted (creating a job counts as a
//! use); a job made from an evicted artifact fails with "upload it first", as for
//! one never uploaded. Last use is the file's modification time, so the order
//! survives a JobManager restart, which finds the store as it was.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use weir_types::ids::ComponentHash;

use crate::model::ArtifactInfo;

/// The artifact store. Blocking: call it off the async workers.
pub(crate) struct ArtifactStore {
    dir: PathBuf,
    cap: u64,
    index: HashMap<ComponentHash, Stored>,
    total: u64,
}

struct Stored {
    info: ArtifactInfo,
    last_used: SystemTime,
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[error("artifact store {path}: {source}")]
pub struct StoreError {
    path: String,
    source: std::io::Error,
}

impl StoreError {
    /// A failure to open another of the JobManager's files at start.
    pub(crate) fn other(path: &str, message: String) -> Self {
        Self { path: path.to_string(), source: std::io::Error::other(message) }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError { path: path.display().to_string(), source }
}

impl ArtifactStore {
    /// Opens (creating) the store in `dir`, indexing what is there and evicting down
    /// to `cap` bytes. Leftovers of interrupted writes are removed.
    pub(crate) fn open(dir: PathBuf, cap: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut store = Self { dir, cap, index: HashMap::new(), total: 0 };
        for entry in std::fs::read_dir(&store.dir).map_err(io(&store.dir))?.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(hash) = name.strip_suffix(".wasm").and_then(|h| h.parse::<ComponentHash>().ok()) else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            let last_used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            store.total += meta.len();
            store.index.insert(hash.clone(), Stored { info: ArtifactInfo { id: hash, size: meta.len(), uploaded: last_used }, last_used });
        }
        store.evict(None);
        Ok(store)
    }

    fn path(&self, hash: &ComponentHash) -> PathBuf {
        self.dir.join(format!("{}.wasm", hash.as_str()))
    }

    /// Stores `bytes` under `hash` (already checked by the caller), evicting the least
    /// recently used others past the cap. Storing it again only marks it used.
    pub(crate) fn put(&mut self, hash: &ComponentHash, bytes: &[u8]) -> Result<ArtifactInfo, StoreError> {
        if self.index.contains_key(hash)
            && self.touch(hash)
            && let Some(s) = self.index.get(hash)
        {
            return Ok(s.info.clone());
        }
        let path = self.path(hash);
        // Written then renamed: a crash never leaves a partial artifact under its name.
        let tmp = self.dir.join(format!(".{}.{}.tmp", hash.as_str(), std::process::id()));
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        let now = SystemTime::now();
        let info = ArtifactInfo { id: hash.clone(), size: bytes.len() as u64, uploaded: now };
        if let Some(old) = self.index.insert(hash.clone(), Stored { info: info.clone(), last_used: now }) {
            self.total -= old.info.size;
        }
        self.total += info.size;
        self.evict(Some(hash));
        Ok(info)
    }

    /// The bytes of artifact `hash`, marking it used; `None` if it is not stored (never
    /// uploaded, or evicted).
    pub(crate) fn get(&mut self, hash: &ComponentHash) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.index.contains_key(hash) {
            return Ok(None);
        }
        let path = self.path(hash);
        match std::fs::read(&path) {
            Ok(bytes) => {
                self.touch(hash);
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget(hash);
                Ok(None)
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Stored artifacts, newest upload first.
    pub(crate) fn list(&self) -> Vec<ArtifactInfo> {
        let mut out: Vec<ArtifactInfo> = self.index.values().map(|s| s.info.clone()).collect();
        out.sort_by_key(|a| std::cmp::Reverse(a.uploaded));
        out
    }

    /// Bytes stored.
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Marks `hash` used now (on disk too); false if its file is gone.
    fn touch(&mut self, hash: &ComponentHash) -> bool {
        let now = SystemTime::now();
        let file = std::fs::File::options().write(true).open(self.path(hash));
        match file {
            Ok(f) => {
                // The order in memory holds even if the time cannot be written.
                let _ = f.set_modified(now);
                if let Some(s) = self.index.get_mut(hash) {
                    s.last_used = now;
                }
                true
            }
            Err(_) => {
                self.forget(hash);
                false
            }
        }
    }

    fn forget(&mut self, hash: &ComponentHash) {
        if let Some(s) = self.index.remove(hash) {
            self.total -= s.info.size;
        }
    }

    /// Deletes least recently used artifacts (never `keep`) until within the cap.
    fn evict(&mut self, keep: Option<&ComponentHash>) {
        while self.total > self.cap {
            let oldest = self.index.iter().filter(|(h, _)| Some(*h) != keep).min_by_key(|(_, s)| s.last_used).map(|(h, _)| h.clone());
            let Some(hash) = oldest else { break };
            let path = self.path(&hash);
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(artifact = %hash, "evicted the least recently used artifact (store over its cap)"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %path.display(), "cannot evict an artifact: {e}"),
            }
            self.forget(&hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> ComponentHash {
        format!("{n:02x}").repeat(32).parse().expect("hash")
    }

    #[test]
    fn uploads_past_the_cap_evict_the_least_recently_used_and_a_reopened_store_keeps_the_order() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut s = ArtifactStore::open(dir.path().to_path_buf(), 300)?;
        s.put(&hash(1), &[1; 100])?;
        std::thread::sleep(std::time::Duration::from_millis(20));
        s.put(&hash(2), &[2; 100])?;
        std::thread::sleep(std::time::Duration::from_millis(20));
        s.put(&hash(3), &[3; 100])?;
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Using 1 makes 2 the least recently used.
        assert_eq!(s.get(&hash(1))?, Some(vec![1; 100]));
        std::thread::sleep(std::time::Duration::from_millis(20));
        s.put(&hash(4), &[4; 100])?;
        assert_eq!(s.get(&hash(2))?, None, "evicted");
        assert!(!dir.path().join(format!("{}.wasm", hash(2).as_str())).exists(), "deleted from disk");
        assert_eq!(s.total(), 300);
        let files = std::fs::read_dir(dir.path())?.count();
        assert_eq!(files, 3, "nothing else left on disk");

        // A restarted JobManager finds the same artifacts, in the same order of use.
        drop(s);
        let mut s = ArtifactStore::open(dir.path().to_path_buf(), 300)?;
        assert_eq!(s.list().len(), 3);
        s.put(&hash(5), &[5; 100])?;
        assert_eq!(s.get(&hash(3))?, None, "3 was the least recently used");
        assert!(s.get(&hash(1))?.is_some() && s.get(&hash(4))?.is_some() && s.get(&hash(5))?.is_some());

        // A store reopened with a smaller cap evicts at once.
        drop(s);
        let s = ArtifactStore::open(dir.path().to_path_buf(), 150)?;
        assert_eq!(s.list().len(), 1);
        Ok(())
    }
}
