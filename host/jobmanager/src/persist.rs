//! What a JobManager keeps in the checkpoint storage so that a new one carries on:
//! each running job's record (`_jobs/<job>/job`: its driver's record, spec and
//! creation time) with its components (`_jobs/<job>/<sha256>.wasm`, by content: the
//! record names the hashes it runs, so components are written before the record that
//! names them and dropped only once no record does), and each ended job's history
//! record (`_history/<job>`). A restarted JobManager resumes the running jobs from their
//! newest checkpoints and serves the history.
//!
//! [`Persistence`] only reads and writes records: which jobs run and when they end is
//! the caller's (`jobs`) business.

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weir_checkpoint::{CheckpointStorage, DirStorage};
use weir_types::ids::{ComponentHash, JobId};
use weir_wasm::{Runtime, World};

use crate::driver::DriverRecord;
use crate::model::{ApiError, EndedJob, SubmitSpec};

/// Where running jobs are persisted in the checkpoint storage.
const JOBS_DIR: &str = "_jobs";
/// Where ended jobs are persisted in the checkpoint storage.
const HISTORY_DIR: &str = "_history";

/// A running job's record. Postcard writes nested structs' fields in line, so this is
/// byte for byte the record earlier versions wrote.
#[derive(Serialize, Deserialize)]
pub(crate) struct PersistedJob {
    pub(crate) driver: DriverRecord,
    pub(crate) spec: SubmitSpec,
    pub(crate) created: SystemTime,
}

/// The JobManager's records in the checkpoint storage; without a checkpoint directory
/// nothing is written and nothing is found.
pub(crate) struct Persistence {
    dir: Option<String>,
}

impl Persistence {
    pub(crate) fn new(checkpoint_dir: Option<String>) -> Self {
        Self { dir: checkpoint_dir }
    }

    /// Opened at each use: a directory that could not be created once (a mount not
    /// there yet) is tried again. `Ok(None)`: no checkpoint directory, nothing to keep.
    fn open(&self) -> Result<Option<DirStorage>, weir_checkpoint::StorageError> {
        self.dir.as_ref().map(DirStorage::new).transpose()
    }

    /// [`Self::open`] for what can only be logged when it fails.
    fn storage(&self) -> Option<DirStorage> {
        self.open().map_err(|e| tracing::error!("checkpoint storage unusable: {e}")).ok().flatten()
    }

    /// Records a new job durably before it is acknowledged: its components, then its
    /// record. A JobManager restarted later finds it; if this fails the job must not
    /// run (what is half written is removed).
    pub(crate) async fn write_new_job(&self, job: &JobId, components: &[Arc<Vec<u8>>], record: PersistedJob) -> Result<(), ApiError> {
        let storage = match self.open() {
            Ok(Some(storage)) => storage,
            Ok(None) => return Ok(()),
            Err(e) => return Err(ApiError::Internal(format!("cannot persist the job: {e}"))),
        };
        let (job, components) = (job.clone(), components.to_vec());
        let written = tokio::task::spawn_blocking(move || {
            let written = write_job_with(&storage, &components, &record);
            if written.is_err() {
                let _ = storage.delete(&format!("{JOBS_DIR}/{job}"));
            }
            written
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ApiError::Internal(format!("cannot persist the job, so it does not run: {e}"))),
            Err(e) => Err(ApiError::Internal(format!("persisting the job panicked: {e}"))),
        }
    }

    /// Writes a job's record durably with its components (`components`, by index as
    /// the record's code names them): a JobManager that crashes later resumes it with a
    /// new attempt number. Crash-consistent across a live swap: components missing from
    /// the storage are stored under their hashes first, the record (one atomic write)
    /// then names them, and only then are components no record names dropped. A
    /// JobManager that dies at any point resumes the job on the old code or on the
    /// new, never on neither (the swap's checkpoint suits both).
    pub(crate) fn write_job(&self, record: PersistedJob, components: &[Arc<Vec<u8>>]) -> Result<(), String> {
        let storage = match self.open() {
            Ok(Some(storage)) => storage,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        write_job_with(&storage, components, &record)?;
        let job = &record.driver.deployment.job;
        let named: Vec<String> = record.driver.deployment.code.components.iter().map(component_file).collect();
        for name in storage.list(&format!("{JOBS_DIR}/{job}")).map_err(|e| e.to_string())? {
            if name.ends_with(".wasm") && !named.contains(&name) {
                // Only space is lost if this fails: nothing reads a component no record names.
                if let Err(e) = storage.delete(&format!("{JOBS_DIR}/{job}/{name}")) {
                    tracing::warn!(%job, "cannot drop the swapped-out component {name}: {e}");
                }
            }
        }
        Ok(())
    }

    /// Forgets a job's running record.
    pub(crate) fn delete_job(&self, job: &JobId) {
        if let Some(storage) = self.storage()
            && let Err(e) = storage.delete(&format!("{JOBS_DIR}/{job}"))
        {
            tracing::warn!(%job, "cannot delete the job's record: {e}");
        }
    }

    /// Writes an ended job's record before it is reported ended (a small file, once
    /// per job).
    pub(crate) fn write_history(&self, e: &EndedJob) {
        let Some(storage) = self.storage() else { return };
        let id = e.info.id.clone();
        let record = match postcard::to_allocvec(e) {
            Ok(r) => r,
            Err(err) => return tracing::error!(job = %id, "cannot encode the job's history record: {err}"),
        };
        if let Err(err) = storage.write(&format!("{HISTORY_DIR}/{id}"), &record) {
            tracing::error!(job = %id, "cannot persist the job's history record: {err}");
        }
    }

    /// Forgets an ended job's history record.
    pub(crate) fn delete_history(&self, job: &JobId) {
        if let Some(storage) = self.storage()
            && let Err(e) = storage.delete(&format!("{HISTORY_DIR}/{job}"))
        {
            tracing::warn!(%job, "cannot delete the job's history record: {e}");
        }
    }

    /// Every readable history record, oldest job first; unreadable ones are skipped
    /// (logged).
    pub(crate) async fn load_history(&self) -> Vec<EndedJob> {
        let Some(storage) = self.storage() else { return Vec::new() };
        tokio::task::spawn_blocking(move || {
            let mut ended: Vec<EndedJob> = Vec::new();
            for job in storage.list(HISTORY_DIR).unwrap_or_default() {
                match storage
                    .read(&format!("{HISTORY_DIR}/{job}"))
                    .map_err(|e| e.to_string())
                    .and_then(|r| postcard::from_bytes(&r).map_err(|e| e.to_string()))
                {
                    Ok(e) => ended.push(e),
                    Err(e) => tracing::warn!(%job, "skipping an unreadable history record: {e}"),
                }
            }
            ended.sort_by_key(|e| e.info.created);
            ended
        })
        .await
        .unwrap_or_default()
    }

    /// The running jobs' records with their components, each loaded (checked and
    /// compiled) by `runtime` and matched against the hashes the record names; a job
    /// that cannot be resumed is skipped (logged).
    pub(crate) async fn load_jobs(&self, runtime: Runtime) -> Vec<Resumable> {
        let Some(storage) = self.storage() else { return Vec::new() };
        tokio::task::spawn_blocking(move || {
            let mut jobs = Vec::new();
            for job in storage.list(JOBS_DIR).unwrap_or_default() {
                let loaded = read_job(&storage, &job).and_then(|(record, components)| {
                    for (i, wasm) in components.iter().enumerate() {
                        runtime.load(wasm, World::Operator).map_err(|e| format!("component {i}: {e}"))?;
                    }
                    Ok((record, components))
                });
                match loaded {
                    Ok(j) => jobs.push(j),
                    Err(e) => tracing::error!(%job, "cannot resume the job: {e}"),
                }
            }
            jobs
        })
        .await
        .unwrap_or_default()
    }
}

/// A running job's record with its components' bytes, by index.
pub(crate) type Resumable = (PersistedJob, Vec<Arc<Vec<u8>>>);

/// The file of a job's component, by its hash.
fn component_file(hash: &ComponentHash) -> String {
    format!("{hash}.wasm")
}

/// Writes the components `record` names that are not stored yet, then the record.
fn write_job_with(storage: &dyn CheckpointStorage, components: &[Arc<Vec<u8>>], record: &PersistedJob) -> Result<(), String> {
    let code = &record.driver.deployment.code;
    if components.len() != code.components.len() {
        return Err(format!("{} components for a job of {}", components.len(), code.components.len()));
    }
    let job = &record.driver.deployment.job;
    for (hash, bytes) in code.components.iter().zip(components) {
        let path = format!("{JOBS_DIR}/{job}/{}", component_file(hash));
        // By content: a complete file already there (writes are atomic) holds these bytes.
        if storage.size(&path).is_ok_and(|size| size == bytes.len() as u64) {
            continue;
        }
        storage.write(&path, bytes).map_err(|e| e.to_string())?;
    }
    let encoded = postcard::to_allocvec(record).map_err(|e| format!("cannot encode the job's record: {e}"))?;
    storage.write(&format!("{JOBS_DIR}/{job}/job"), &encoded).map_err(|e| e.to_string())
}

/// A running job's record and the bytes of each component it names, each checked
/// against its hash. Records written before components were stored by hash find
/// them by index (`component-<i>.wasm`).
fn read_job(storage: &dyn CheckpointStorage, job: &str) -> Result<Resumable, String> {
    let read = |name: &str| storage.read(&format!("{JOBS_DIR}/{job}/{name}"));
    let record: PersistedJob = read("job").map_err(|e| e.to_string()).and_then(|r| postcard::from_bytes(&r).map_err(|e| e.to_string()))?;
    let mut components = Vec::new();
    for (i, hash) in record.driver.deployment.code.components.iter().enumerate() {
        let wasm = match read(&component_file(hash)) {
            Err(weir_checkpoint::StorageError::NotFound { .. }) => read(&format!("component-{i}.wasm")),
            r => r,
        }
        .map_err(|e| format!("component {i}: {e}"))?;
        if hex::encode(Sha256::digest(&wasm)) != hash.as_str() {
            return Err(format!("component {i} is not the one the job's record names"));
        }
        components.push(Arc::new(wasm));
    }
    Ok((record, components))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restart::RestartStrategy;
    use weir_checkpoint::StorageError;

    fn hash(bytes: &[u8]) -> ComponentHash {
        hex::encode(Sha256::digest(bytes)).parse().expect("a hash")
    }

    fn record(components: &[&[u8]]) -> PersistedJob {
        let mut deployment = crate::coordinator::tests::deployment();
        deployment.code.components = components.iter().map(|c| hash(c)).collect();
        let driver =
            DriverRecord { deployment, restart: RestartStrategy::None, initial_restore: None, first_checkpoint: 1, restarts: 0, failed_fuel: vec![] };
        PersistedJob { driver, spec: serde_json::from_str("{}").expect("a spec"), created: SystemTime::UNIX_EPOCH }
    }

    fn bytes(components: &[&[u8]]) -> Vec<Arc<Vec<u8>>> {
        components.iter().map(|c| Arc::new(c.to_vec())).collect()
    }

    /// A storage that dies right before writing a job's record: what a JobManager
    /// killed between a swap's components and its record leaves behind.
    struct DiesBeforeTheRecord(DirStorage);

    impl CheckpointStorage for DiesBeforeTheRecord {
        fn write(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
            if path.ends_with("/job") {
                return Err(StorageError::InvalidPath { path: path.into(), reason: "killed" });
            }
            self.0.write(path, bytes)
        }
        fn read(&self, path: &str) -> Result<Vec<u8>, StorageError> {
            self.0.read(path)
        }
        fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
            self.0.list(dir)
        }
        fn delete(&self, path: &str) -> Result<(), StorageError> {
            self.0.delete(path)
        }
        fn size(&self, path: &str) -> Result<u64, StorageError> {
            self.0.size(path)
        }
    }

    fn resumed(storage: &DirStorage) -> Vec<Vec<u8>> {
        let (record, components) = read_job(storage, "j").expect("the job resumes");
        assert_eq!(record.driver.deployment.code.components, components.iter().map(|c| hash(c)).collect::<Vec<_>>());
        components.iter().map(|c| c.to_vec()).collect()
    }

    #[test]
    fn a_jobmanager_killed_mid_swap_resumes_the_job_on_the_old_code_and_after_it_on_the_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = DirStorage::new(dir.path()).expect("storage");
        let persistence = Persistence::new(Some(dir.path().display().to_string()));
        let (parse, count, count_v2): (&[u8], &[u8], &[u8]) = (b"parse", b"count", b"count v2");
        persistence.write_job(record(&[parse, count]), &bytes(&[parse, count])).expect("written");
        assert_eq!(resumed(&storage), [parse, count]);

        // Killed after the new component, before the record: the old code, whole.
        let killed = DiesBeforeTheRecord(DirStorage::new(dir.path()).expect("storage"));
        assert!(write_job_with(&killed, &bytes(&[parse, count_v2]), &record(&[parse, count_v2])).is_err());
        assert!(storage.list(&format!("{JOBS_DIR}/j")).expect("list").contains(&format!("{}.wasm", hash(count_v2))));
        assert_eq!(resumed(&storage), [parse, count]);

        // The swap's record written: the new code; the swapped-out component is gone.
        persistence.write_job(record(&[parse, count_v2]), &bytes(&[parse, count_v2])).expect("written");
        assert_eq!(resumed(&storage), [parse, count_v2]);
        let files = storage.list(&format!("{JOBS_DIR}/j")).expect("list");
        let mut want = vec![format!("{}.wasm", hash(parse)), format!("{}.wasm", hash(count_v2)), "job".to_string()];
        want.sort();
        assert_eq!(files, want);

        // A component whose bytes do not match the record's hash is refused.
        storage.write(&format!("{JOBS_DIR}/j/{}.wasm", hash(parse)), b"tampered").expect("write");
        assert!(read_job(&storage, "j").is_err_and(|e| e.contains("component 0")));
    }

    #[test]
    fn a_record_of_an_earlier_version_finds_its_components_by_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = DirStorage::new(dir.path()).expect("storage");
        let (a, b): (&[u8], &[u8]) = (b"a", b"b");
        storage.write(&format!("{JOBS_DIR}/j/component-0.wasm"), a).expect("write");
        storage.write(&format!("{JOBS_DIR}/j/component-1.wasm"), b).expect("write");
        storage.write(&format!("{JOBS_DIR}/j/job"), &postcard::to_allocvec(&record(&[a, b])).expect("encode")).expect("write");
        assert_eq!(resumed(&storage), [a, b]);
        // Its next record stores them by hash and drops the old files.
        Persistence::new(Some(dir.path().display().to_string())).write_job(record(&[a, b]), &bytes(&[a, b])).expect("written");
        assert!(!storage.list(&format!("{JOBS_DIR}/j")).expect("list").iter().any(|f| f.starts_with("component-")));
        assert_eq!(resumed(&storage), [a, b]);
    }
}
