//! What users can ask of a running JobManager: the operations behind its REST API
//! (`weir-api`), with their domain answers and errors. Transport-free: the HTTP layer
//! only maps these to JSON and status codes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use weir_control::protocol::TaskManagerInfo;
use weir_types::deployment::{JobReport, JobStatus};
use weir_types::graph::ExecutionGraph;
use weir_types::resource::JobResource;

use weir_wasm::World;

use crate::planning::JobSource;
use crate::restart::RestartStrategy;
use crate::service::{JobManager, lock};
use crate::tracker::SubtaskMetrics;

/// Why a request was refused, sorted by who must act.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ApiError {
    /// A parameter is invalid; the message names it.
    #[error("{0}")]
    BadRequest(String),
    /// No such job or artifact.
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the job's state (cancelling an ended job, a savepoint
    /// of a job without checkpoints).
    #[error("{0}")]
    Conflict(String),
    /// The artifact is larger than the JobManager accepts.
    #[error("{0}")]
    TooLarge(String),
    /// The artifact or the job's plan was refused (not a component, wrong world,
    /// plan fails or is invalid).
    #[error("{0}")]
    Unprocessable(String),
    /// The cluster cannot take the job now (too few free slots); retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a failing disk on the JobManager.
    #[error("{0}")]
    Internal(String),
}

/// A job as submitted: the spec of its Job resource, immutable once created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitSpec {
    /// SHA-256 (hex) of an uploaded job component (world `job-component`); or use
    /// `manifest`.
    #[serde(default)]
    pub artifact: Option<String>,
    /// A job manifest (TOML text) naming one component per operator; or use `artifact`.
    #[serde(default)]
    pub manifest: Option<String>,
    /// With `manifest`: the uploaded artifact id of each component it names, by the
    /// name it uses (e.g. `"parse.wasm": "<sha256>"`).
    #[serde(default)]
    pub components: std::collections::BTreeMap<String, String>,
    /// Default parallelism of the job's operators.
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Arguments for the job's `plan` and its operators' `open`.
    #[serde(default)]
    pub args: std::collections::BTreeMap<String, String>,
    /// Binds file sources that leave their path to the submitter (a TaskManager path).
    #[serde(default)]
    pub input: Option<String>,
    /// Binds file sinks: a directory on the TaskManagers, one part file per subtask.
    #[serde(default)]
    pub output: Option<String>,
    /// Checkpoint every this many milliseconds (needs the JobManager's checkpoint dir).
    #[serde(default)]
    pub checkpoint_interval_ms: Option<u64>,
    /// `none`, `fixed-delay:N:MS`, `exponential:MS:MS` or `failure-rate:N:MS:MS`;
    /// default: fixed delay with checkpoints, none without.
    #[serde(default)]
    pub restart_strategy: Option<String>,
    /// A savepoint directory (absolute) to start from, at any parallelism.
    #[serde(default)]
    pub from_savepoint: Option<String>,
}

fn one() -> u32 {
    1
}

/// Largest default parallelism a submission may ask for.
pub const MAX_PARALLELISM: u32 = 1024;

impl SubmitSpec {
    /// Checks what can be checked without the artifact; the restart strategy parsed.
    pub fn check(&self) -> Result<RestartStrategy, ApiError> {
        match (&self.artifact, &self.manifest) {
            (Some(_), None) if self.components.is_empty() => {}
            (Some(_), None) => return Err(ApiError::BadRequest("components go with a manifest, not with an artifact".into())),
            (None, Some(_)) => {}
            _ => return Err(ApiError::BadRequest("give either an artifact (a job component) or a manifest (with its components)".into())),
        }
        if !(1..=MAX_PARALLELISM).contains(&self.parallelism) {
            return Err(ApiError::BadRequest(format!("parallelism must be 1 to {MAX_PARALLELISM}, got {}", self.parallelism)));
        }
        if self.checkpoint_interval_ms == Some(0) {
            return Err(ApiError::BadRequest("checkpointIntervalMs must be positive".into()));
        }
        if let Some(dir) = &self.from_savepoint
            && !std::path::Path::new(dir).is_absolute()
        {
            return Err(ApiError::BadRequest(format!("fromSavepoint must be an absolute path, got {dir:?}")));
        }
        match &self.restart_strategy {
            Some(r) => r.parse::<RestartStrategy>().map_err(|e| ApiError::BadRequest(format!("restartStrategy: {e}"))),
            None if self.checkpoint_interval_ms.is_some() => Ok(RestartStrategy::default()),
            None => Ok(RestartStrategy::None),
        }
    }
}

/// A savepoint request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavepointSpec {
    /// Absolute directory to write it to (reachable by every TaskManager that will
    /// restore it, at the same path); must not exist or be empty.
    pub dir: String,
    /// Cancel the job right after, so nothing past the savepoint is committed.
    #[serde(default)]
    pub stop: bool,
}

/// An uploaded component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    /// SHA-256 of its bytes, hex.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was uploaded.
    pub uploaded: SystemTime,
}

/// Severity of a job event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventLevel {
    /// Normal operation.
    Info,
    /// Survived trouble (a restart, a failed checkpoint).
    Warn,
    /// A failure.
    Error,
}

impl EventLevel {
    /// Upper-case name.
    pub fn name(self) -> &'static str {
        match self {
            EventLevel::Info => "INFO",
            EventLevel::Warn => "WARN",
            EventLevel::Error => "ERROR",
        }
    }
}

/// Something that happened to a job, for `weir logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// When.
    pub at: SystemTime,
    /// How bad.
    pub level: EventLevel,
    /// What happened.
    pub message: String,
}

/// Events kept per job; the oldest go first.
pub(crate) const EVENTS_KEPT: usize = 500;

/// Where a checkpoint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointStatus {
    /// Barriers are travelling; not every subtask acknowledged yet.
    InProgress,
    /// Its metadata is written: it can be restored.
    Completed,
    /// Abandoned: a subtask failed to snapshot, it timed out, or the attempt ended.
    Failed,
}

impl CheckpointStatus {
    /// Upper-case name, as Flink prints it.
    pub fn name(self) -> &'static str {
        match self {
            CheckpointStatus::InProgress => "IN_PROGRESS",
            CheckpointStatus::Completed => "COMPLETED",
            CheckpointStatus::Failed => "FAILED",
        }
    }
}

/// One checkpoint of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Checkpoint id.
    pub id: u64,
    /// Where it stands.
    pub status: CheckpointStatus,
    /// When its barriers were injected.
    pub triggered: SystemTime,
    /// From trigger to completion (or failure), in milliseconds.
    pub duration_ms: Option<u64>,
    /// Bytes written for it: the newest state file of every subtask's chain (with
    /// incremental checkpoints, the delta).
    pub size_bytes: Option<u64>,
    /// Why it failed.
    pub failure: Option<String>,
}

/// Checkpoints kept per job for display; the oldest go first.
pub(crate) const CHECKPOINTS_KEPT: usize = 100;

/// A job as users see it: its spec, its Job resource and the engine's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInfo {
    /// Job id.
    pub id: String,
    /// The job's name (from its plan).
    pub name: String,
    /// When it was submitted.
    pub created: SystemTime,
    /// As submitted.
    pub spec: SubmitSpec,
    /// Lifecycle state and its history (seed 002).
    pub resource: JobResource,
    /// The engine's view: status, error, per-vertex totals, restarts.
    pub report: JobReport,
}

/// Live metrics of a job's vertices and subtasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobMetrics {
    /// The job's engine status.
    pub status: JobStatus,
    /// The execution graph the metrics refer to.
    pub graph: ExecutionGraph,
    /// Every subtask.
    pub subtasks: Vec<SubtaskMetrics>,
    /// TaskManager names of the deployment, by index.
    pub taskmanagers: Vec<String>,
}

/// The cluster at a glance.
#[derive(Debug, Clone)]
pub struct ClusterOverview {
    /// Registered TaskManagers (lost ones included until they come back).
    pub taskmanagers: Vec<TaskManagerInfo>,
    /// Slots of alive TaskManagers.
    pub slots_total: u32,
    /// Free slots of alive TaskManagers.
    pub slots_free: u32,
    /// Jobs per Job resource state name.
    pub jobs_by_state: Vec<(&'static str, usize)>,
    /// Checkpoints completed and failed since the JobManager started.
    pub checkpoints_completed: u64,
    /// See `checkpoints_completed`.
    pub checkpoints_failed: u64,
    /// Restarts of all jobs.
    pub restarts: u64,
}

impl JobManager {
    /// The sandbox limits submissions are checked against.
    pub fn limits(&self) -> weir_wasm::Limits {
        self.0.runtime.limits().clone()
    }

    /// Every job, newest first, running ones and history.
    pub fn jobs(&self) -> Vec<JobInfo> {
        let now = Instant::now();
        let mut state = lock(&self.0.state);
        let mut all: Vec<JobInfo> = state.ended.iter().map(|e| e.info.clone()).collect();
        all.extend(state.jobs.values_mut().map(|j| j.info(now)));
        all.sort_by_key(|j| std::cmp::Reverse(j.created));
        all
    }

    /// One job.
    pub fn job(&self, id: &str) -> Result<JobInfo, ApiError> {
        let now = Instant::now();
        let mut state = lock(&self.0.state);
        if let Some(j) = state.jobs.get_mut(id) {
            return Ok(j.info(now));
        }
        state.ended.iter().find(|e| e.info.id == id).map(|e| e.info.clone()).ok_or_else(|| unknown_job(id))
    }

    /// A job's events, oldest first.
    pub fn events(&self, id: &str) -> Result<Vec<JobEvent>, ApiError> {
        let state = lock(&self.0.state);
        if let Some(j) = state.jobs.get(id) {
            return Ok(j.events.iter().cloned().collect());
        }
        state.ended.iter().find(|e| e.info.id == id).map(|e| e.events.clone()).ok_or_else(|| unknown_job(id))
    }

    /// A job's recent checkpoints, newest first.
    pub fn checkpoints(&self, id: &str) -> Result<(Vec<CheckpointRecord>, Option<u64>), ApiError> {
        let state = lock(&self.0.state);
        if let Some(j) = state.jobs.get(id) {
            return Ok((j.checkpoint_log.iter().rev().cloned().collect(), j.driver.last_checkpoint()));
        }
        let e = state.ended.iter().find(|e| e.info.id == id).ok_or_else(|| unknown_job(id))?;
        Ok((e.checkpoints.iter().rev().cloned().collect(), e.info.report.last_checkpoint))
    }

    /// A job's live per-vertex and per-subtask metrics (as they ended, for history).
    pub fn metrics(&self, id: &str) -> Result<JobMetrics, ApiError> {
        let state = lock(&self.0.state);
        let Some(j) = state.jobs.get(id) else {
            return state.ended.iter().find(|e| e.info.id == id).map(|e| e.metrics.clone()).ok_or_else(|| unknown_job(id));
        };
        Ok(j.metrics(&lock(&self.0.registry)))
    }

    /// TaskManagers, slots and job counts.
    pub fn overview(&self) -> ClusterOverview {
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
            for j in state.jobs.values_mut() {
                count(j.info(now).resource.state.name());
                completed += j.checkpoints_completed;
                failed += j.checkpoints_failed;
                restarts += u64::from(j.driver.restarts());
            }
            for e in &state.ended {
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
            restarts,
        }
    }

    /// Uploaded artifacts, newest first.
    pub fn artifacts(&self) -> Vec<ArtifactInfo> {
        let artifacts = lock(&self.0.artifacts);
        let mut out: Vec<ArtifactInfo> = artifacts.values().map(|a| a.info.clone()).collect();
        out.sort_by_key(|a| std::cmp::Reverse(a.uploaded));
        out
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
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&wasm, World::Operator).map(|c| (c.hash.clone(), wasm))).await;
        let (id, wasm) = match loaded {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return Err(ApiError::Unprocessable(format!("artifact refused: {e}"))),
            Err(e) => return Err(ApiError::Internal(format!("loading the artifact panicked: {e}"))),
        };
        let info = ArtifactInfo { id: id.clone(), size: wasm.len() as u64, uploaded: SystemTime::now() };
        let mut artifacts = lock(&self.0.artifacts);
        if let Some(a) = artifacts.get(&id) {
            return Ok(a.info.clone());
        }
        if artifacts.len() >= ARTIFACTS_KEPT
            && let Some(oldest) = artifacts.values().min_by_key(|a| a.info.uploaded).map(|a| a.info.id.clone())
        {
            artifacts.remove(&oldest);
        }
        artifacts.insert(id, Artifact { info: info.clone(), bytes: Arc::new(wasm) });
        Ok(info)
    }

    /// Creates a job from an uploaded artifact or a manifest of uploaded artifacts:
    /// plans, places and deploys it.
    pub async fn create_job(&self, spec: SubmitSpec) -> Result<JobInfo, ApiError> {
        let restart = spec.check()?;
        let artifact = |id: &str| {
            lock(&self.0.artifacts)
                .get(id)
                .map(|a| a.bytes.clone())
                .ok_or_else(|| ApiError::NotFound(format!("no artifact {id:?} (upload it first)")))
        };
        let source = match (&spec.artifact, &spec.manifest) {
            (Some(id), _) => JobSource::Component(artifact(id)?),
            (None, Some(text)) => {
                let components = spec.components.iter().map(|(name, id)| Ok((name.clone(), artifact(id)?))).collect::<Result<_, ApiError>>()?;
                JobSource::Manifest { text: text.clone(), components }
            }
            (None, None) => return Err(ApiError::BadRequest("give an artifact or a manifest".into())),
        };
        let id = self.0.submit(source, spec, restart).await?;
        self.job(&id)
    }

    /// Cancels a job; its Job resource goes TERMINATING, then TERMINATED.
    pub fn cancel(&self, id: &str) -> Result<JobInfo, ApiError> {
        if !self.0.cancel(id) {
            let info = self.job(id)?;
            return Err(ApiError::Conflict(format!("job {id} already ended ({})", info.resource.state.name())));
        }
        self.job(id)
    }

    /// Takes a savepoint of a running job into `dir` (absolute), and with `stop`
    /// cancels the job right after; the id of the checkpoint it copies.
    pub async fn savepoint(&self, id: &str, dir: &str, stop: bool) -> Result<u64, ApiError> {
        if !std::path::Path::new(dir).is_absolute() {
            return Err(ApiError::BadRequest(format!("dir must be an absolute path, got {dir:?}")));
        }
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

fn unknown_job(id: &str) -> ApiError {
    ApiError::NotFound(format!("no job {id:?}"))
}

/// Artifacts kept in memory; the oldest upload goes first.
const ARTIFACTS_KEPT: usize = 64;

/// An uploaded component.
pub(crate) struct Artifact {
    pub(crate) info: ArtifactInfo,
    pub(crate) bytes: Arc<Vec<u8>>,
}

/// Pushes onto a bounded log.
pub(crate) fn push_bounded<T>(log: &mut VecDeque<T>, item: T, kept: usize) {
    if log.len() >= kept {
        log.pop_front();
    }
    log.push_back(item);
}
