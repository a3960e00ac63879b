//! What a JobManager keeps in the checkpoint storage so that a new one carries on:
//! each running job's record (`_jobs/<job>/job`: its driver's record, spec and
//! creation time) with its components, and each ended job's history record
//! (`_history/<job>`). A restarted JobManager resumes the running jobs from their
//! newest checkpoints and serves the history.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use weir_checkpoint::{CheckpointStorage, DirStorage};
use weir_wasm::World;

use crate::api::{ApiError, CheckpointRecord, EventLevel, JobEvent, JobInfo, JobMetrics, SubmitSpec};
use crate::driver::{Driver, DriverRecord};
use crate::jobs::{Job, State};
use crate::service::{Shared, lock};

/// Where running jobs are persisted in the checkpoint storage.
const JOBS_DIR: &str = "_jobs";
/// Where ended jobs are persisted in the checkpoint storage.
const HISTORY_DIR: &str = "_history";
/// Ended jobs kept for status queries.
const HISTORY: usize = 1000;

/// A running job's record. Postcard writes nested structs' fields in line, so this is
/// byte for byte the record earlier versions wrote.
#[derive(Serialize, Deserialize)]
struct PersistedJob {
    driver: DriverRecord,
    spec: SubmitSpec,
    created: SystemTime,
}

/// What is kept of an ended job (and persisted, so history survives a JobManager
/// restart).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct EndedJob {
    pub(crate) info: JobInfo,
    pub(crate) events: Vec<JobEvent>,
    pub(crate) checkpoints: Vec<CheckpointRecord>,
    pub(crate) metrics: JobMetrics,
    pub(crate) checkpoints_completed: u64,
    pub(crate) checkpoints_failed: u64,
}

impl Shared {
    fn storage(&self) -> Option<DirStorage> {
        let dir = self.config.checkpoint_dir.as_ref()?;
        DirStorage::new(dir).map_err(|e| tracing::error!(dir, "checkpoint storage unusable: {e}")).ok()
    }

    /// Writes a new job's components, before the job is acknowledged.
    pub(crate) async fn persist_components(&self, job: &str, components: &[Arc<Vec<u8>>]) -> Result<(), ApiError> {
        let Some(storage) = self.storage() else { return Ok(()) };
        let (job, components) = (job.to_string(), components.to_vec());
        let written = tokio::task::spawn_blocking(move || {
            for (i, c) in components.iter().enumerate() {
                storage.write(&format!("{JOBS_DIR}/{job}/component-{i}.wasm"), c)?;
            }
            Ok::<_, weir_checkpoint::StorageError>(())
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ApiError::Internal(format!("cannot persist the job's components: {e}"))),
            Err(e) => Err(ApiError::Internal(format!("persisting the job's components panicked: {e}"))),
        }
    }

    /// Writes a job's record durably, in order (a small file): a JobManager that
    /// crashes later resumes it with a new attempt number.
    pub(crate) fn persist(&self, driver: &Driver, spec: SubmitSpec, created: SystemTime) {
        let Some(storage) = self.storage() else { return };
        let job = driver.deployment().job.clone();
        let record = PersistedJob { driver: driver.record(), spec, created };
        let written = postcard::to_allocvec(&record)
            .map_err(|e| e.to_string())
            .and_then(|r| storage.write(&format!("{JOBS_DIR}/{job}/job"), &r).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::error!(%job, "cannot persist the job: {e}");
        }
    }

    /// Forgets a job's running record.
    pub(crate) fn unpersist(&self, job: &str) {
        if let Some(storage) = self.storage()
            && let Err(e) = storage.delete(&format!("{JOBS_DIR}/{job}"))
        {
            tracing::warn!(job, "cannot delete the job's record: {e}");
        }
    }

    /// Writes an ended job's record before it is reported ended (a small file, once
    /// per job).
    pub(crate) fn persist_history(&self, e: &EndedJob) {
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

    /// Adds an ended job to the history, forgetting the oldest beyond [`HISTORY`].
    pub(crate) fn push_history(&self, state: &mut State, e: EndedJob) {
        state.ended.push_back(e);
        while state.ended.len() > HISTORY {
            let Some(old) = state.ended.pop_front() else { break };
            if let Some(storage) = self.storage()
                && let Err(e) = storage.delete(&format!("{HISTORY_DIR}/{}", old.info.id))
            {
                tracing::warn!(job = %old.info.id, "cannot delete the job's history record: {e}");
            }
        }
    }

    /// Picks up the history and the jobs a previous JobManager left running: each
    /// restarts from its latest checkpoint as soon as TaskManagers offer enough slots.
    pub(crate) async fn recover_jobs(&self) {
        let Some(storage) = self.storage() else { return };
        let history = storage.clone();
        let ended = tokio::task::spawn_blocking(move || {
            let mut ended: Vec<EndedJob> = Vec::new();
            for job in history.list(HISTORY_DIR).unwrap_or_default() {
                match history
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
        .unwrap_or_default();
        lock(&self.state).ended = VecDeque::from(ended);
        let runtime = self.runtime.clone();
        let found = tokio::task::spawn_blocking(move || {
            let mut jobs = Vec::new();
            for job in storage.list(JOBS_DIR).unwrap_or_default() {
                let read = |name: &str| storage.read(&format!("{JOBS_DIR}/{job}/{name}"));
                let loaded = read("job").map_err(|e| e.to_string()).and_then(|record| {
                    let record: PersistedJob = postcard::from_bytes(&record).map_err(|e| e.to_string())?;
                    let mut components = Vec::new();
                    for (i, hash) in record.driver.deployment.code.components.iter().enumerate() {
                        let wasm = read(&format!("component-{i}.wasm")).map_err(|e| e.to_string())?;
                        let loaded = runtime.load(&wasm, World::Operator).map_err(|e| e.to_string())?;
                        if &loaded.hash != hash {
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
        .unwrap_or_default();
        let now = Instant::now();
        let mut state = lock(&self.state);
        for (record, components) in found {
            let id = record.driver.deployment.job.clone();
            if state.ended.iter().any(|e| e.info.id == id) {
                // Killed between writing its history and forgetting its running record.
                self.unpersist(&id);
                continue;
            }
            tracing::info!(job = %id, attempt = record.driver.deployment.attempt, "resuming a job of the previous jobmanager");
            let mut j = Job::new(Driver::resume(record.driver, now), components, record.spec, record.created);
            j.event(EventLevel::Warn, "resumed by a new jobmanager after the previous one was lost".into());
            state.jobs.insert(id, j);
        }
    }
}
