//! What a JobManager keeps in the checkpoint storage so that a new one carries on:
//! each running job's record (`_jobs/<job>/job`: its driver's record, spec and
//! creation time) with its components, and each ended job's history record
//! (`_history/<job>`). A restarted JobManager resumes the running jobs from their
//! newest checkpoints and serves the history.
//!
//! [`Persistence`] only reads and writes records: which jobs run and when they end is
//! the caller's (`jobs`) business.

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use weir_checkpoint::{CheckpointStorage, DirStorage};
use weir_types::ids::JobId;
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
            let written = (|| {
                for (i, c) in components.iter().enumerate() {
                    storage.write(&format!("{JOBS_DIR}/{job}/component-{i}.wasm"), c).map_err(|e| e.to_string())?;
                }
                let record = postcard::to_allocvec(&record).map_err(|e| format!("cannot encode the job's record: {e}"))?;
                storage.write(&format!("{JOBS_DIR}/{job}/job"), &record).map_err(|e| e.to_string())
            })();
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

    /// Replaces a running job's components (a live swap completed); its record,
    /// naming their hashes, is written right after. A JobManager that dies between the
    /// two finds components that do not match the record and does not resume the job:
    /// a narrow window, taken for one write of a small file.
    pub(crate) fn write_components(&self, job: &JobId, components: &[Arc<Vec<u8>>]) -> Result<(), String> {
        let storage = match self.open() {
            Ok(Some(storage)) => storage,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        for (i, c) in components.iter().enumerate() {
            storage.write(&format!("{JOBS_DIR}/{job}/component-{i}.wasm"), c).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Writes a job's record durably, in order (a small file): a JobManager that
    /// crashes later resumes it with a new attempt number.
    pub(crate) fn write_job(&self, driver: DriverRecord, spec: SubmitSpec, created: SystemTime) -> Result<(), String> {
        let storage = match self.open() {
            Ok(Some(storage)) => storage,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let job = driver.deployment.job.clone();
        let record = PersistedJob { driver, spec, created };
        postcard::to_allocvec(&record)
            .map_err(|e| e.to_string())
            .and_then(|r| storage.write(&format!("{JOBS_DIR}/{job}/job"), &r).map_err(|e| e.to_string()))
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
    /// compiled) by `runtime` and matched against the hashes the job was submitted
    /// with; a job that cannot be resumed is skipped (logged).
    pub(crate) async fn load_jobs(&self, runtime: Runtime) -> Vec<(PersistedJob, Vec<Arc<Vec<u8>>>)> {
        let Some(storage) = self.storage() else { return Vec::new() };
        tokio::task::spawn_blocking(move || {
            let mut jobs = Vec::new();
            for job in storage.list(JOBS_DIR).unwrap_or_default() {
                let read = |name: &str| storage.read(&format!("{JOBS_DIR}/{job}/{name}"));
                let loaded = read("job").map_err(|e| e.to_string()).and_then(|record| {
                    let record: PersistedJob = postcard::from_bytes(&record).map_err(|e| e.to_string())?;
                    let mut components = Vec::new();
                    for (i, hash) in record.driver.deployment.code.components.iter().enumerate() {
                        let wasm = read(&format!("component-{i}.wasm")).map_err(|e| e.to_string())?;
                        let loaded = runtime.load(&wasm, World::Operator).map_err(|e| e.to_string())?;
                        if *hash != loaded.hash.as_str() {
                            return Err(format!("component {i} is not the one the job was submitted with"));
                        }
                        components.push(Arc::new(wasm));
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
