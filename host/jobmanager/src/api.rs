//! What users can ask of a running JobManager: the operations behind its REST API
//! (`weir-api`), answered with the domain types of `model`. Transport-free: the HTTP
//! layer only maps these to JSON and status codes.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use weir_types::access::FileAccess;
use weir_types::ids::{ComponentHash, JobId};
use weir_wasm::World;

use crate::artifacts::ArtifactStore;
use crate::jobs::{SwapCode, lock};
pub use crate::model::SwapTarget;
use crate::model::{ApiError, ArtifactInfo, CheckpointRecord, ClusterOverview, JobEvent, JobInfo, JobMetrics, SubmitSpec};
use crate::planning::{JobSource, component_hash};
use crate::restart::RestartStrategy;
use crate::service::JobManager;
use crate::tenants::Caller;

/// Largest default parallelism a submission may ask for.
pub const MAX_PARALLELISM: u32 = 1024;

/// Checks what can be checked of a submission without the artifact; the restart
/// strategy parsed.
pub fn check(spec: &SubmitSpec) -> Result<RestartStrategy, ApiError> {
    match (&spec.artifact, &spec.manifest) {
        (Some(_), None) if spec.components.is_empty() => {}
        (Some(_), None) => return Err(ApiError::BadRequest("components go with a manifest, not with an artifact".into())),
        (None, Some(_)) => {}
        _ => return Err(ApiError::BadRequest("give either an artifact (a job component) or a manifest (with its components)".into())),
    }
    if !(1..=MAX_PARALLELISM).contains(&spec.parallelism) {
        return Err(ApiError::BadRequest(format!("parallelism must be 1 to {MAX_PARALLELISM}, got {}", spec.parallelism)));
    }
    if spec.checkpoint_interval_ms == Some(0) {
        return Err(ApiError::BadRequest("checkpointIntervalMs must be positive".into()));
    }
    if let Some(dir) = &spec.from_savepoint
        && !std::path::Path::new(dir).is_absolute()
    {
        return Err(ApiError::BadRequest(format!("fromSavepoint must be an absolute path, got {dir:?}")));
    }
    if let Some(of) = &spec.from_checkpoint_of {
        if spec.from_savepoint.is_some() {
            return Err(ApiError::BadRequest("give fromSavepoint or fromCheckpointOf, not both".into()));
        }
        crate::jobs::parse_checkpoint_of(of)?;
    }
    match &spec.restart_strategy {
        Some(r) => r.parse::<RestartStrategy>().map_err(|e| ApiError::BadRequest(format!("restartStrategy: {e}"))),
        None if spec.checkpoint_interval_ms.is_some() => Ok(RestartStrategy::default()),
        None => Ok(RestartStrategy::None),
    }
}

impl JobManager {
    /// The sandbox limits submissions are checked against.
    pub fn limits(&self) -> weir_wasm::Limits {
        self.0.runtime.limits().clone()
    }

    /// Every job, newest first, running ones and history.
    pub fn jobs(&self) -> Vec<JobInfo> {
        let now = Instant::now();
        let mut all: Vec<JobInfo> = {
            let mut state = lock(&self.0.state);
            let mut all: Vec<JobInfo> = state.ended.iter().map(|e| e.info.clone()).collect();
            all.extend(state.jobs.values_mut().map(|j| j.info(now)));
            all
        };
        all.sort_by_key(|j| std::cmp::Reverse(j.created));
        self.link_deployments(&mut all);
        all
    }

    /// One job.
    pub fn job(&self, id: &JobId) -> Result<JobInfo, ApiError> {
        let now = Instant::now();
        let info = {
            let mut state = lock(&self.0.state);
            match state.jobs.get_mut(id) {
                Some(j) => j.info(now),
                None => state.ended.iter().find(|e| e.info.id == *id).map(|e| e.info.clone()).ok_or_else(|| unknown_job(id.as_str()))?,
            }
        };
        let mut one = [info];
        self.link_deployments(&mut one);
        let [info] = one;
        Ok(info)
    }

    /// A job's events, oldest first.
    pub fn events(&self, id: &JobId) -> Result<Vec<JobEvent>, ApiError> {
        let state = lock(&self.0.state);
        if let Some(j) = state.jobs.get(id) {
            return Ok(j.events.iter().cloned().collect());
        }
        state.ended.iter().find(|e| e.info.id == *id).map(|e| e.events.clone()).ok_or_else(|| unknown_job(id.as_str()))
    }

    /// A job's recent checkpoints, newest first.
    pub fn checkpoints(&self, id: &JobId) -> Result<(Vec<CheckpointRecord>, Option<u64>), ApiError> {
        let state = lock(&self.0.state);
        if let Some(j) = state.jobs.get(id) {
            return Ok((j.checkpoint_log.iter().rev().cloned().collect(), j.driver.last_checkpoint()));
        }
        let e = state.ended.iter().find(|e| e.info.id == *id).ok_or_else(|| unknown_job(id.as_str()))?;
        Ok((e.checkpoints.iter().rev().cloned().collect(), e.info.report.last_checkpoint))
    }

    /// A job's live per-vertex and per-subtask metrics (as they ended, for history).
    pub fn metrics(&self, id: &JobId) -> Result<JobMetrics, ApiError> {
        let state = lock(&self.0.state);
        let Some(j) = state.jobs.get(id) else {
            return state.ended.iter().find(|e| e.info.id == *id).map(|e| e.metrics.clone()).ok_or_else(|| unknown_job(id.as_str()));
        };
        Ok(j.metrics(&lock(&self.0.registry)))
    }

    /// TaskManagers, slots and job counts.
    pub fn overview(&self) -> ClusterOverview {
        self.overview_where(|_| true)
    }

    /// [`Self::overview`] counting only the jobs whose owner (`None`: the admin)
    /// `counted` accepts; TaskManagers and slots are the cluster's.
    pub fn overview_where(&self, counted: impl Fn(Option<&str>) -> bool) -> ClusterOverview {
        let view = lock(&self.0.registry).view(Instant::now());
        let slots_total = view.taskmanagers.iter().filter(|t| t.alive).map(|t| t.slots).sum();
        let mut by_state: Vec<(&'static str, usize)> = Vec::new();
        let (mut completed, mut failed, mut restarts) = (0, 0, 0);
        {
            let now = Instant::now();
            let mut state = lock(&self.0.state);
            let mut count = |name: &'static str| match by_state.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => by_state.push((name, 1)),
            };
            let tenants = lock(&self.0.tenants);
            for (id, j) in state.jobs.iter_mut() {
                if !counted(tenants.job_owner(id)) {
                    continue;
                }
                count(j.info(now).resource.state.name());
                completed += j.checkpoints_completed;
                failed += j.checkpoints_failed;
                restarts += u64::from(j.driver.restarts());
            }
            for e in state.ended.iter().filter(|e| counted(tenants.job_owner(&e.info.id))) {
                count(e.info.resource.state.name());
                completed += e.checkpoints_completed;
                failed += e.checkpoints_failed;
                restarts += u64::from(e.info.report.restarts);
            }
        }
        ClusterOverview {
            taskmanagers: view.taskmanagers,
            slots_total,
            slots_free: view.free_slots,
            jobs_by_state: by_state,
            checkpoints_completed: completed,
            checkpoints_failed: failed,
            checkpoints_skipped: self.0.checkpoints_skipped.load(std::sync::atomic::Ordering::Relaxed),
            restarts,
        }
    }

    /// Uploaded artifacts still stored, newest first.
    pub fn artifacts(&self) -> Vec<ArtifactInfo> {
        lock(&self.0.artifacts).list()
    }

    /// Checks and stores a component; uploading the same bytes again is harmless.
    pub async fn upload(&self, wasm: Vec<u8>) -> Result<ArtifactInfo, ApiError> {
        let limit = self.0.runtime.limits().max_component_bytes;
        if wasm.is_empty() {
            return Err(ApiError::BadRequest("the artifact is empty: send the .wasm file's bytes as the request body".into()));
        }
        if wasm.len() as u64 > limit {
            return Err(ApiError::TooLarge(format!("artifact of {} bytes exceeds the limit of {limit} bytes", wasm.len())));
        }
        let runtime = self.0.runtime.clone();
        // Loading checks the magic, the world and compiles (cached): a bad artifact is
        // refused here, and a job made from it later starts without compiling.
        let loaded =
            tokio::task::spawn_blocking(move || runtime.load(&wasm, World::Operator).and_then(|c| component_hash(&c)).map(|hash| (hash, wasm))).await;
        let (id, wasm) = match loaded {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return Err(ApiError::Unprocessable(format!("artifact refused: {e}"))),
            Err(e) => return Err(ApiError::Internal(format!("loading the artifact panicked: {e}"))),
        };
        let store = self.0.artifacts.clone();
        let stored = tokio::task::spawn_blocking(move || lock(&store).put(&id, &wasm)).await;
        match stored {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(e)) => Err(ApiError::Internal(e.to_string())),
            Err(e) => Err(ApiError::Internal(format!("storing the artifact panicked: {e}"))),
        }
    }

    /// Creates a job from an uploaded artifact or a manifest of uploaded artifacts:
    /// plans, places and deploys it.
    pub async fn create_job(&self, spec: SubmitSpec) -> Result<JobInfo, ApiError> {
        self.create_job_as(&Caller::Admin, spec).await
    }

    /// [`Self::create_job`] for `caller`: a tenant uses only its own artifacts and
    /// savepoints (another's are unknown), the job is its own, within its quota.
    pub async fn create_job_as(&self, caller: &Caller, spec: SubmitSpec) -> Result<JobInfo, ApiError> {
        let restart = check(&spec)?;
        self.check_sources(caller, &spec)?;
        let store = self.0.artifacts.clone();
        let wanted = spec.clone();
        // Reads from disk: off the async workers.
        let read = tokio::task::spawn_blocking(move || {
            let artifact = |id: &str| read_artifact(&store, id);
            match (&wanted.artifact, &wanted.manifest) {
                (Some(id), _) => Ok(JobSource::Component(artifact(id)?)),
                (None, Some(text)) => {
                    let components = wanted.components.iter().map(|(name, id)| Ok((name.clone(), artifact(id)?))).collect::<Result<_, ApiError>>()?;
                    Ok(JobSource::Manifest { text: text.clone(), components })
                }
                (None, None) => Err(ApiError::BadRequest("give an artifact or a manifest".into())),
            }
        })
        .await;
        let source = read.unwrap_or_else(|e| Err(ApiError::Internal(format!("reading the artifacts panicked: {e}"))))?;
        let id = self.0.submit(caller, source, spec, restart).await?;
        self.job(&id)
    }

    /// Cancels a job; its Job resource goes TERMINATING, then TERMINATED.
    pub fn cancel(&self, id: &JobId) -> Result<JobInfo, ApiError> {
        if !self.0.cancel(id) {
            let info = self.job(id)?;
            return Err(ApiError::Conflict(format!("job {id} already ended ({})", info.resource.state.name())));
        }
        self.job(id)
    }

    /// Swaps a running job's code live to the uploaded job component `artifact`
    /// (see `Shared::swap`): the id of the checkpoint it switched at.
    pub async fn swap(&self, id: &JobId, artifact: &str) -> Result<u64, ApiError> {
        self.swap_to(id, &SwapTarget::Artifact(artifact.to_string())).await
    }

    /// Swaps a running job's code live to `to` (see `Shared::swap`): the id of the
    /// checkpoint it switched at.
    pub async fn swap_to(&self, id: &JobId, to: &SwapTarget) -> Result<u64, ApiError> {
        let info = self.job(id)?;
        if info.resource.state.is_terminal() {
            return Err(ApiError::Conflict(format!("job {id} already ended ({})", info.resource.state.name())));
        }
        let store = self.0.artifacts.clone();
        let wanted = to.clone();
        let read = tokio::task::spawn_blocking(move || {
            let read = |id: &str| read_artifact(&store, id);
            match &wanted {
                SwapTarget::Artifact(a) => read(a).map(SwapCode::Component),
                SwapTarget::Components(named) => {
                    named.iter().map(|(name, a)| Ok((name.clone(), read(a)?))).collect::<Result<_, ApiError>>().map(SwapCode::Manifest)
                }
            }
        })
        .await;
        let code = read.unwrap_or_else(|e| Err(ApiError::Internal(format!("reading the artifact panicked: {e}"))))?;
        self.0.swap(id, code).await
    }

    /// Takes a savepoint of a running job into `dir` (absolute), and with `stop`
    /// cancels the job right after; the id of the checkpoint it copies.
    pub async fn savepoint(&self, id: &JobId, dir: &str, stop: bool) -> Result<u64, ApiError> {
        self.savepoint_under(&self.0.config.files, id, dir, stop).await
    }

    /// [`Self::savepoint`] into a directory `files` allows (the caller's).
    pub(crate) async fn savepoint_under(&self, files: &FileAccess, id: &JobId, dir: &str, stop: bool) -> Result<u64, ApiError> {
        check_savepoint_dir(dir)?;
        files.check("savepoint dir", dir).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let info = self.job(id)?;
        if info.resource.state.is_terminal() {
            return Err(ApiError::Conflict(format!("job {id} already ended ({})", info.resource.state.name())));
        }
        match self.0.savepoint(id, dir.to_string(), stop).await {
            Ok(Ok(checkpoint)) => Ok(checkpoint),
            Ok(Err(e)) => Err(ApiError::Conflict(e)),
            Err(_) => Err(ApiError::Conflict(format!("job {id} ended before the savepoint was taken"))),
        }
    }
}

/// Where a savepoint may be written: an absolute directory. Checked before the job is
/// looked up.
pub fn check_savepoint_dir(dir: &str) -> Result<(), ApiError> {
    match std::path::Path::new(dir).is_absolute() {
        true => Ok(()),
        false => Err(ApiError::BadRequest(format!("dir must be an absolute path, got {dir:?}"))),
    }
}

/// A job id from a request (a REST path). A malformed one names no job: it is refused
/// as unknown, with the same answer as a well-formed id of no job.
pub fn job_id(id: &str) -> Result<JobId, ApiError> {
    id.parse().map_err(|_| unknown_job(id))
}

pub(crate) use crate::model::unknown_job;

/// The bytes of uploaded artifact `id`. Blocking (reads from disk).
fn read_artifact(store: &Mutex<ArtifactStore>, id: &str) -> Result<Arc<Vec<u8>>, ApiError> {
    let missing = || ApiError::NotFound(format!("no artifact {id:?} (upload it first)"));
    match lock(store).get(&id.parse::<ComponentHash>().map_err(|_| missing())?) {
        Ok(Some(bytes)) => Ok(Arc::new(bytes)),
        Ok(None) => Err(missing()),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A malformed id in a path gets the answer of an unknown one, word for word.
    #[test]
    fn a_malformed_job_id_is_an_unknown_job() {
        assert_eq!(job_id("a\nb"), Err(ApiError::NotFound("no job \"a\\nb\"".into())));
        assert_eq!(job_id("a.1"), Err(unknown_job("a.1")));
        assert_eq!(job_id("0123456789abcdef").map(String::from), Ok("0123456789abcdef".to_string()));
    }
}
