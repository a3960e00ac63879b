//! The REST API's JSON documents (camelCase, RFC 3339 times), shared by the server and
//! the `weir` CLI. `host/api/openapi.json` describes the same shapes.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use weir_jobmanager::SubtaskMetrics;
use weir_jobmanager::model::{ArtifactInfo, CheckpointRecord, ClusterOverview, JobEvent, JobInfo, JobMetrics};
pub use weir_jobmanager::model::{SavepointSpec, SubmitSpec};

/// An RFC 3339 time with milliseconds, UTC.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The error document every failed request answers with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable kind (`not_found`, `bad_request`, ...).
    pub code: String,
    /// One line for people, naming the bad thing.
    pub message: String,
}

/// A Job resource (seed 002).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Always `Job`.
    pub kind: String,
    /// Identity.
    pub metadata: JobMetadata,
    /// As submitted; immutable.
    pub spec: SubmitSpec,
    /// Where it stands.
    pub status: JobStatusDoc,
}

/// A job's identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMetadata {
    /// Job id.
    pub id: String,
    /// The job's name, from its plan.
    pub name: String,
    /// Submission time.
    pub created_at: String,
}

/// `status` of a Job resource.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatusDoc {
    /// STARTING, STARTED, TERMINATING, TERMINATED, FAILED or FINISHED.
    pub state: String,
    /// Present once the job reached STARTED.
    pub started: Option<Started>,
    /// Present on FAILED.
    pub failure: Option<Failure>,
    /// Every state entered, oldest first.
    pub transitions: Vec<TransitionDoc>,
    /// The newest completed checkpoint.
    pub last_checkpoint: Option<u64>,
    /// Since submission (to the end, once ended).
    pub duration_ms: u64,
}

/// `status.started` of a Job resource.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    /// The engine's job id.
    pub job_id: String,
    /// When the job entered STARTED.
    pub transition_time: String,
    /// Last observation.
    pub last_update_time: String,
    /// Restarts the engine performed.
    pub observed_job_restarts: u32,
    /// The engine's status (CREATED, RUNNING, RESTARTING, ...).
    pub observed_job_status: String,
}

/// Why a job failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// Kind of failure.
    pub reason: String,
    /// The first failure's message.
    pub message: String,
}

/// One state change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransitionDoc {
    /// The state entered.
    pub state: String,
    /// When.
    pub time: String,
}

fn ms_time(ms: u64) -> String {
    time(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

impl From<JobInfo> for Job {
    fn from(j: JobInfo) -> Self {
        let r = &j.resource;
        let started = r.started_ms.map(|at| Started {
            job_id: j.id.clone(),
            transition_time: ms_time(at),
            last_update_time: ms_time(r.updated_ms),
            observed_job_restarts: r.observed_restarts,
            observed_job_status: r.observed_status.name().to_string(),
        });
        let failure = r.failure.as_ref().map(|m| Failure { reason: "JobFailed".into(), message: m.clone() });
        Job {
            kind: "Job".into(),
            metadata: JobMetadata { id: j.id.clone(), name: j.name.clone(), created_at: time(j.created) },
            spec: j.spec,
            status: JobStatusDoc {
                state: r.state.name().to_string(),
                started,
                failure,
                transitions: r.transitions.iter().map(|t| TransitionDoc { state: t.state.name().to_string(), time: ms_time(t.at_ms) }).collect(),
                last_checkpoint: j.report.last_checkpoint,
                duration_ms: j.report.elapsed.as_millis() as u64,
            },
        }
    }
}

/// `GET /api/v1/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<Job>,
}

/// An uploaded artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// SHA-256 of the bytes, hex.
    pub id: String,
    /// Bytes.
    pub size: u64,
    /// Upload time.
    pub uploaded_at: String,
}

impl From<ArtifactInfo> for Artifact {
    fn from(a: ArtifactInfo) -> Self {
        Artifact { id: a.id, size: a.size, uploaded_at: time(a.uploaded) }
    }
}

/// `GET /api/v1/artifacts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactList {
    /// Newest first.
    pub artifacts: Vec<Artifact>,
}

/// A finished savepoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavepointDone {
    /// The checkpoint it copies.
    pub checkpoint: u64,
    /// Where it is.
    pub dir: String,
}

/// One checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Id.
    pub id: u64,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub status: String,
    /// When its barriers were injected.
    pub triggered_at: String,
    /// Trigger to completion or failure.
    pub duration_ms: Option<u64>,
    /// Bytes written for it.
    pub size_bytes: Option<u64>,
    /// Why it failed.
    pub failure: Option<String>,
}

impl From<CheckpointRecord> for Checkpoint {
    fn from(c: CheckpointRecord) -> Self {
        Checkpoint {
            id: c.id,
            status: c.status.name().to_string(),
            triggered_at: time(c.triggered),
            duration_ms: c.duration_ms,
            size_bytes: c.size_bytes,
            failure: c.failure,
        }
    }
}

/// `GET /api/v1/jobs/{id}/checkpoints`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointList {
    /// Newest first.
    pub checkpoints: Vec<Checkpoint>,
    /// The newest completed checkpoint.
    pub last_completed: Option<u64>,
}

/// One job event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub time: String,
    /// INFO, WARN or ERROR.
    pub level: String,
    /// What happened.
    pub message: String,
}

impl From<JobEvent> for Event {
    fn from(e: JobEvent) -> Self {
        Event { time: time(e.at), level: e.level.name().to_string(), message: e.message }
    }
}

/// `GET /api/v1/jobs/{id}/logs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventList {
    /// Oldest first.
    pub events: Vec<Event>,
}

/// `GET /api/v1/jobs/{id}/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Job id.
    pub job_id: String,
    /// The engine's status.
    pub status: String,
    /// Vertices (chains), in topological order.
    pub vertices: Vec<VertexMetrics>,
    /// Edges between vertices.
    pub edges: Vec<EdgeDoc>,
}

/// One vertex's metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VertexMetrics {
    /// Vertex index.
    pub id: u32,
    /// Chain name.
    pub name: String,
    /// Subtasks.
    pub parallelism: u32,
    /// Records in, all subtasks.
    pub records_in: u64,
    /// Records out, all subtasks.
    pub records_out: u64,
    /// Records in per second, all subtasks.
    pub records_in_per_second: f64,
    /// Records out per second, all subtasks.
    pub records_out_per_second: f64,
    /// The most backpressured subtask's share of time blocked (0 to 1).
    pub backpressure: f64,
    /// Fuel burned, all subtasks.
    pub fuel: u64,
    /// Every subtask.
    pub subtasks: Vec<SubtaskDoc>,
}

/// One subtask's metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubtaskDoc {
    /// Subtask index.
    pub subtask: u32,
    /// Its TaskManager's name.
    pub taskmanager: String,
    /// Records in.
    pub records_in: u64,
    /// Records out.
    pub records_out: u64,
    /// Share of time blocked on full outputs (0 to 1).
    pub backpressure: f64,
    /// Fuel burned.
    pub fuel: u64,
    /// CREATED, RUNNING, FINISHED, FAILED or CANCELED.
    pub status: String,
}

/// An edge of the execution graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeDoc {
    /// Upstream vertex.
    pub source: u32,
    /// Downstream vertex.
    pub target: u32,
    /// FORWARD, KEY_BY, REBALANCE or BROADCAST.
    pub partitioning: String,
}

impl Metrics {
    /// The document for job `id`.
    pub fn of(id: &str, m: JobMetrics) -> Self {
        let subtask = |s: &SubtaskMetrics| SubtaskDoc {
            subtask: s.subtask,
            taskmanager: m.taskmanagers.get(s.taskmanager as usize).cloned().unwrap_or_else(|| "-".into()),
            records_in: s.records_in,
            records_out: s.records_out,
            backpressure: s.backpressure,
            fuel: s.fuel,
            status: s.status.name().to_string(),
        };
        let vertices = m
            .graph
            .vertices
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mine: Vec<&SubtaskMetrics> = m.subtasks.iter().filter(|s| s.vertex as usize == i).collect();
                VertexMetrics {
                    id: i as u32,
                    name: v.name.clone(),
                    parallelism: v.parallelism,
                    records_in: mine.iter().map(|s| s.records_in).sum(),
                    records_out: mine.iter().map(|s| s.records_out).sum(),
                    records_in_per_second: mine.iter().map(|s| s.records_in_per_second).sum(),
                    records_out_per_second: mine.iter().map(|s| s.records_out_per_second).sum(),
                    backpressure: mine.iter().map(|s| s.backpressure).fold(0.0, f64::max),
                    fuel: mine.iter().map(|s| s.fuel).sum(),
                    subtasks: mine.into_iter().map(subtask).collect(),
                }
            })
            .collect();
        let edges = m
            .graph
            .vertices
            .iter()
            .enumerate()
            .flat_map(|(i, v)| {
                v.outputs.iter().map(move |(t, p)| EdgeDoc { source: i as u32, target: *t as u32, partitioning: partitioning_name(*p).into() })
            })
            .collect();
        Metrics { job_id: id.to_string(), status: m.status.name().to_string(), vertices, edges }
    }
}

fn partitioning_name(p: weir_types::plan::Partitioning) -> &'static str {
    use weir_types::plan::Partitioning::*;
    match p {
        Forward => "FORWARD",
        KeyBy => "KEY_BY",
        Rebalance => "REBALANCE",
        Broadcast => "BROADCAST",
    }
}

/// `GET /api/v1/cluster`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// Weir's version.
    pub version: String,
    /// Alive TaskManagers.
    pub taskmanagers: u32,
    /// Slots of alive TaskManagers.
    pub slots_total: u32,
    /// Free slots.
    pub slots_free: u32,
    /// Jobs per Job resource state (lower case keys: running, finished, ...).
    pub jobs: JobCounts,
}

/// Jobs per state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobCounts {
    /// STARTING or STARTED.
    pub running: usize,
    /// FINISHED.
    pub finished: usize,
    /// FAILED.
    pub failed: usize,
    /// TERMINATING or TERMINATED.
    pub terminated: usize,
}

impl From<&ClusterOverview> for Cluster {
    fn from(o: &ClusterOverview) -> Self {
        let mut jobs = JobCounts::default();
        for (state, n) in &o.jobs_by_state {
            match *state {
                "STARTING" | "STARTED" => jobs.running += n,
                "FINISHED" => jobs.finished += n,
                "FAILED" => jobs.failed += n,
                _ => jobs.terminated += n,
            }
        }
        Cluster {
            version: env!("CARGO_PKG_VERSION").into(),
            taskmanagers: o.taskmanagers.iter().filter(|t| t.alive).count() as u32,
            slots_total: o.slots_total,
            slots_free: o.slots_free,
            jobs,
        }
    }
}

/// One TaskManager, as the JobManager's registry sees it.
pub use weir_control::protocol::TaskManagerInfo as TaskManager;

/// `GET /api/v1/taskmanagers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskManagerList {
    /// By id.
    pub taskmanagers: Vec<TaskManager>,
}

impl From<&ClusterOverview> for TaskManagerList {
    fn from(o: &ClusterOverview) -> Self {
        TaskManagerList { taskmanagers: o.taskmanagers.clone() }
    }
}
