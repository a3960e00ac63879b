//! What users see of the JobManager: its answers (jobs, events, checkpoints, metrics,
//! artifacts, the cluster) and its refusals ([`ApiError`]). Plain data, no behaviour
//! beyond names: every other module may use it, it uses none of them. A job's spec
//! is [`SubmitSpec`], from `weir-types`, since clients write it too.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use weir_control::protocol::TaskManagerInfo;
use weir_types::deployment::{JobReport, JobStatus};
use weir_types::graph::ExecutionGraph;
use weir_types::ids::{ComponentHash, JobId};
use weir_types::resource::JobResource;
pub use weir_types::submit::SubmitSpec;

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

/// An uploaded component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    /// SHA-256 of its bytes, hex.
    pub id: ComponentHash,
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

/// Pushes onto a bounded log.
pub(crate) fn push_bounded<T>(log: &mut VecDeque<T>, item: T, kept: usize) {
    if log.len() >= kept {
        log.pop_front();
    }
    log.push_back(item);
}

/// A job as users see it: its spec, its Job resource and the engine's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInfo {
    /// Job id.
    pub id: JobId,
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
    /// The Deployment that created it, if one did and still exists: looked up when
    /// asked (the Deployment's record lists its Jobs), so never stored twice.
    #[serde(skip)]
    pub deployment: Option<weir_types::deploy::JobDeployment>,
}

/// One subtask's live metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskMetrics {
    /// Vertex index.
    pub vertex: u32,
    /// Subtask index.
    pub subtask: u32,
    /// Index of its TaskManager in the deployment.
    pub taskmanager: u32,
    /// Records in so far.
    pub records_in: u64,
    /// Of those, per input of a connect's two-input operator (empty for others).
    pub records_in_by_input: Vec<u64>,
    /// Records out so far.
    pub records_out: u64,
    /// Records in per second over the last two progress reports.
    pub records_in_per_second: f64,
    /// Records out per second over the last two progress reports.
    pub records_out_per_second: f64,
    /// Share of the last interval spent blocked on full downstream channels (0 to 1).
    pub backpressure: f64,
    /// The event time it reached (the watermark leaving its operators), if any.
    pub watermark: Option<i64>,
    /// Records its operators emitted to side outputs, and dropped there.
    pub side_outputs: Vec<weir_types::deployment::SideOutputCount>,
    /// A Kafka source subtask's consumer lag per partition it reads (empty for others
    /// and once it ended).
    #[serde(default)]
    pub source_lag: Vec<weir_types::deployment::PartitionLag>,
    /// Fuel burned so far.
    pub fuel: u64,
    /// Time it waited for its tenant's fuel rate so far, in nanoseconds.
    #[serde(default)]
    pub throttled_ns: u64,
    /// RUNNING until it ends, then FINISHED, FAILED or CANCELED (CREATED before the
    /// job runs).
    pub status: JobStatus,
    /// It processed the end of its input (with checkpoints it stays RUNNING until the
    /// final checkpoint captured it).
    pub end_of_input: bool,
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
    /// Fuel earlier (failed) attempts burned, per vertex; `subtasks` are the current
    /// attempt's. A seam for tenant totals: a tenant's fuel is the sum over its jobs.
    #[serde(default)]
    pub fuel_failed_attempts: Vec<u64>,
}

impl JobMetrics {
    /// Fuel the job burned, every attempt (the current one's subtasks as of their last
    /// heartbeat), and of that what failed attempts burned.
    pub fn fuel(&self) -> (u64, u64) {
        let failed: u64 = self.fuel_failed_attempts.iter().sum();
        (self.subtasks.iter().map(|s| s.fuel).sum::<u64>() + failed, failed)
    }
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
    /// Completed checkpoints that restarts found unrestorable and passed over.
    pub checkpoints_skipped: u64,
    /// Restarts of all jobs.
    pub restarts: u64,
}

/// What a live swap replaces a running job's code with: uploaded artifacts by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapTarget {
    /// A job component in place of the job's one.
    Artifact(String),
    /// A manifest job's components by the names its manifest gives them; the others
    /// stay.
    Components(std::collections::BTreeMap<String, String>),
}

impl SwapTarget {
    /// The artifact ids it names.
    pub fn artifacts(&self) -> Vec<&str> {
        match self {
            SwapTarget::Artifact(a) => vec![a.as_str()],
            SwapTarget::Components(c) => c.values().map(String::as_str).collect(),
        }
    }
}

/// The answer for a job that does not exist or that the caller may not see, word for
/// word the same.
pub(crate) fn unknown_job(id: &str) -> ApiError {
    ApiError::NotFound(format!("no job {id:?}"))
}
