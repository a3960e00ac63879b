//! The REST API's JSON documents (camelCase, RFC 3339 times): what the JobManager's
//! API (`weir-api`) answers and accepts, and what its clients (the `weir` CLI) read
//! and send. `host/api/openapi.json` describes the same shapes.
//!
//! Plain data: the conversions from the JobManager's domain types are in `weir-api`,
//! so a client needs neither the JobManager nor the HTTP server. A job's spec is
//! [`SubmitSpec`] from `weir-types` (the JobManager keeps it as submitted).

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
pub use weir_types::deploy::{
    Deployment, DeploymentJob, DeploymentList, DeploymentMetadata, DeploymentSpec, DeploymentState, DeploymentStatus, DesiredState, JobDeployment,
    RestoreStrategy, UpgradeStrategy,
};
use weir_types::ids::{ComponentHash, JobId, TaskManagerId};
pub use weir_types::submit::SubmitSpec;

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
    pub id: JobId,
    /// The job's name, from its plan.
    pub name: String,
    /// Submission time.
    pub created_at: String,
    /// The Deployment that created the job and the spec version it ran, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<JobDeployment>,
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
    /// Why the job waits before its next attempt can run, e.g. "waiting for slots: the
    /// job needs 3 slots but only 2 are free".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// `status.started` of a Job resource.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    /// The engine's job id.
    pub job_id: JobId,
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
    pub id: ComponentHash,
    /// Bytes.
    pub size: u64,
    /// Upload time.
    pub uploaded_at: String,
}

/// `GET /api/v1/artifacts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactList {
    /// Newest first.
    pub artifacts: Vec<Artifact>,
}

/// `POST /api/v1/jobs/{id}/savepoints`: a savepoint request.
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

/// `POST /api/v1/jobs/{id}/swap`: a live code swap, to one job component
/// (`artifact`) or, for a job from a manifest, to new components for some of the
/// names the manifest uses (`components`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwapSpec {
    /// Id of the uploaded job component to run from the switch point on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// A manifest job's components to replace: the uploaded artifact id of each, by
    /// the name the manifest uses for it; the others stay.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, String>,
}

/// A completed live swap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwapDone {
    /// The checkpoint whose barrier was the switch point.
    pub checkpoint: u64,
    /// The component the job runs now (a swap of a job component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// The components replaced, by the manifest's names (a swap of manifest components).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, String>,
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
    pub job_id: JobId,
    /// The engine's status.
    pub status: String,
    /// Fuel the job burned, all vertices and attempts (running subtasks' from their
    /// last heartbeat): what hosting bills by.
    #[serde(default)]
    pub fuel: u64,
    /// Of `fuel`, what attempts that failed burned (a lower bound: a lost
    /// TaskManager's subtasks count with their last heartbeat).
    #[serde(default)]
    pub fuel_failed_attempts: u64,
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
    /// Of those, per input of a connect's two-input operator, all subtasks (empty
    /// for vertices with one input).
    pub records_in_by_input: Vec<u64>,
    /// Records out, all subtasks.
    pub records_out: u64,
    /// Records in per second, all subtasks.
    pub records_in_per_second: f64,
    /// Records out per second, all subtasks.
    pub records_out_per_second: f64,
    /// The most backpressured subtask's share of time blocked (0 to 1).
    pub backpressure: f64,
    /// The lowest watermark of its subtasks (ms of event time), null until every
    /// subtask passed one.
    pub watermark: Option<i64>,
    /// Its operators' side outputs (late data, for one), summed over the subtasks.
    pub side_outputs: Vec<SideOutputDoc>,
    /// Fuel burned, all subtasks and attempts (`subtasks` are the current attempt's).
    pub fuel: u64,
    /// Of `fuel`, what failed attempts burned.
    #[serde(default)]
    pub fuel_failed_attempts: u64,
    /// A Kafka source's consumer lag: records past what its subtasks read, summed over
    /// the partitions (Flink's pendingRecords); null for other vertices.
    #[serde(default)]
    pub source_lag: Option<i64>,
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
    /// Of those, per input of a connect's two-input operator (empty for others).
    pub records_in_by_input: Vec<u64>,
    /// Records out.
    pub records_out: u64,
    /// Share of time blocked on full outputs (0 to 1).
    pub backpressure: f64,
    /// The event time it reached: the last watermark that left its operators (ms),
    /// null before the first.
    pub watermark: Option<i64>,
    /// Its operators' side outputs.
    pub side_outputs: Vec<SideOutputDoc>,
    /// Fuel burned in the current attempt (live: from its last heartbeat).
    pub fuel: u64,
    /// Time it waited for its tenant's fuel rate in the current attempt.
    #[serde(default)]
    pub throttled_seconds: f64,
    /// A Kafka source subtask's consumer lag per partition it reads, as last looked up.
    #[serde(default)]
    pub source_lag: Vec<PartitionLagDoc>,
    /// CREATED, RUNNING, FINISHED, FAILED or CANCELED.
    pub status: String,
    /// It processed the end of its input (with checkpoints it stays RUNNING until the
    /// final checkpoint captured it).
    pub end_of_input: bool,
}

/// Records of a Kafka partition past what its source subtask read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLagDoc {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The log's end minus the offset of the next record to read.
    pub records: i64,
}

/// Records an operator emitted to one of its side outputs, and how many no edge read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SideOutputDoc {
    /// The operator's name.
    pub operator: String,
    /// The side output's name (a window's late data: its tag, `late` by default).
    pub name: String,
    /// Records emitted to it.
    pub records: u64,
    /// Of those, dropped because no edge reads the side output (for late data:
    /// Flink's numLateRecordsDropped).
    pub dropped: u64,
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
    /// The target's input the edge feeds (0 or 1) if the target is a connect's
    /// two-input operator; null for one-input targets.
    pub input: Option<u32>,
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

/// One TaskManager, as the JobManager's registry sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskManager {
    /// Registry id.
    pub id: TaskManagerId,
    /// Certificate name.
    pub name: String,
    /// Network address it connected from.
    pub addr: String,
    /// Where its data plane listens.
    pub data_addr: String,
    /// Slots it offers.
    pub slots: u32,
    /// Slots running subtasks.
    pub used_slots: u32,
    /// False once its heartbeats stopped for longer than the timeout.
    pub alive: bool,
    /// Milliseconds since its last heartbeat.
    pub last_heartbeat_ms: u64,
}

/// `GET /api/v1/taskmanagers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskManagerList {
    /// By id.
    pub taskmanagers: Vec<TaskManager>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submission_needs_little_and_refuses_unknown_fields() -> serde_json::Result<()> {
        let spec: SubmitSpec = serde_json::from_str(r#"{"artifact": "ab12"}"#)?;
        assert_eq!((spec.artifact.as_deref(), spec.parallelism, spec.components.len()), (Some("ab12"), 1, 0));
        let typo = serde_json::from_str::<SubmitSpec>(r#"{"artifact": "ab12", "paralelism": 2}"#);
        assert!(typo.is_err_and(|e| e.to_string().contains("paralelism")));
        let savepoint: SavepointSpec = serde_json::from_str(r#"{"dir": "/sp"}"#)?;
        assert!(!savepoint.stop);
        Ok(())
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(time(t), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn documents_are_camel_case() -> serde_json::Result<()> {
        let tm = TaskManager {
            id: TaskManagerId::new(1),
            name: "taskmanager-0".into(),
            addr: "a".into(),
            data_addr: "d".into(),
            slots: 2,
            used_slots: 1,
            alive: true,
            last_heartbeat_ms: 5,
        };
        let json = serde_json::to_value(&tm)?;
        assert_eq!((json["dataAddr"].as_str(), json["usedSlots"].as_u64(), json["lastHeartbeatMs"].as_u64()), (Some("d"), Some(1), Some(5)));
        Ok(())
    }
}

/// What a tenant may hold at once (issue 19); a missing field is unlimited. The body
/// of `PUT /api/v1/tenants/{name}/quota`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quota {
    /// Slots its running jobs take together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// Jobs that have not ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_jobs: Option<u32>,
    /// Bytes of its uploaded artifacts still stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_bytes: Option<u64>,
    /// Wasm fuel per second its running subtasks burn together; past it they are
    /// throttled (they wait), never failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_per_second: Option<u64>,
}

/// What a tenant holds against its quota now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Jobs that have not ended.
    pub running_jobs: u32,
    /// Slots they take.
    pub slots: u32,
    /// Bytes of its artifacts still stored.
    pub artifact_bytes: u64,
    /// Wasm fuel its jobs burned, running and ended, every attempt: the sum of its
    /// jobs' `fuel`.
    #[serde(default)]
    pub fuel: u64,
    /// Of `fuel`, what attempts that failed burned.
    #[serde(default)]
    pub fuel_failed_attempts: u64,
}

/// `POST /api/v1/tenants`: a new tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantSpec {
    /// Lower-case letters, digits and `-`, starting with a letter, 1 to 40.
    pub name: String,
    /// Its limits; unlimited by default.
    #[serde(default)]
    pub quota: Quota,
    /// WASI capabilities its jobs get (`clock`, `random`); none by default.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Hosts its connectors may reach (`host` or `host:port`); none by default.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `PUT /api/v1/tenants/{name}/hosts`: the hosts a tenant's connectors may reach.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hosts {
    /// `host` (any port) or `host:port`; empty: none.
    pub hosts: Vec<String>,
}

/// `PUT /api/v1/tenants/{name}/roots`: the directories a tenant's job files lie under.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Roots {
    /// Absolute directories, each under a cluster `--data-root`; empty: none.
    pub roots: Vec<String>,
}

/// `PUT /api/v1/tenants/{name}/grants`: the WASI capabilities a tenant's jobs get.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Grants {
    /// `clock`, `random`; empty: neither.
    pub grants: Vec<String>,
}

/// A tenant (admin routes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: String,
    /// Its limits.
    pub quota: Quota,
    /// WASI capabilities its jobs get, by name.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Hosts its connectors may reach.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Directories its jobs' files lie under.
    #[serde(default)]
    pub roots: Vec<String>,
    /// What it holds now.
    pub usage: Usage,
}

/// `GET /api/v1/tenants`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantList {
    /// By name.
    pub tenants: Vec<Tenant>,
}

/// `POST /api/v1/tenants/{name}/tokens`: a new token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenSpec {
    /// It stops working this many seconds from now; never by default.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// A tenant's API token as listed: never the token itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    /// Public id, to revoke it.
    pub id: String,
    /// Whose it is.
    pub tenant: String,
    /// When it was issued.
    pub created_at: String,
    /// When it stops working, if ever.
    pub expires_at: Option<String>,
    /// Revoked tokens stay listed.
    pub revoked: bool,
}

/// `GET /api/v1/tenants/{name}/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenList {
    /// By id.
    pub tokens: Vec<Token>,
}

/// A token just issued: the only time the token itself is shown (only its hash is
/// kept).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewToken {
    /// The bearer token.
    pub token: String,
    /// Its details.
    #[serde(flatten)]
    pub details: Token,
}
