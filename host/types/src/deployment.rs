//! What the JobManager tells TaskManagers to run, and what they report back. The same
//! descriptor drives the embedded cluster (one TaskManager, in-process) and a real
//! cluster (shipped over the control plane), so both build subtasks with one code path.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::access::{Capabilities, FileAccess};
use crate::graph::ExecutionGraph;
use crate::ids::{ComponentHash, JobId, RunId};
use crate::plan::{JobPlan, NodeKind};

/// A job as deployed: its plan, its execution graph and where every subtask runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDeployment {
    /// Job id, unique in the cluster.
    pub job: JobId,
    /// The checked plan, with its sources and sinks bound.
    pub plan: JobPlan,
    /// Its vertices.
    pub graph: ExecutionGraph,
    /// Arguments for the guest's `plan` and `open`.
    pub args: Vec<(String, String)>,
    /// The components that run the job's operators.
    pub code: JobCode,
    /// `placement[vertex][subtask]` is the index in `taskmanagers` running that subtask.
    pub placement: Vec<Vec<u32>>,
    /// Data-plane addresses of the TaskManagers taking part, by index.
    pub taskmanagers: Vec<String>,
    /// How file sinks name their files.
    pub sink_files: SinkFiles,
    /// Which run of the job this is: 0, then one more per restart.
    pub attempt: u32,
    /// Checkpointing, if enabled.
    pub checkpoints: Option<CheckpointConfig>,
    /// Where state and source positions come from, if not from scratch.
    pub restore: Option<RestoreFrom>,
    /// Which files the job may open: checked again wherever one is opened.
    pub files: FileAccess,
    /// The WASI capabilities its guests get (its tenant's grant; all for the admin).
    pub capabilities: Capabilities,
}

/// A job's code: its components, and which one runs each operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCode {
    /// Hex SHA-256 of each component.
    pub components: Vec<ComponentHash>,
    /// Per plan node: for an operator, what runs it; `None` for sources and sinks.
    pub operators: Vec<Option<OperatorCode>>,
}

/// What runs one operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorCode {
    /// Index into [`JobCode::components`].
    pub component: u32,
    /// The operator's id inside that component.
    pub op: u32,
    /// Arguments for its `open`, over the job's arguments.
    pub args: Vec<(String, String)>,
}

impl JobCode {
    /// The code of a job whose one component also declared the plan: operator ids
    /// are node indices.
    pub fn single(hash: &ComponentHash, plan: &JobPlan) -> Self {
        let operators = plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| matches!(n.kind, NodeKind::Operator { .. }).then(|| OperatorCode { component: 0, op: i as u32, args: vec![] }))
            .collect();
        Self { components: vec![hash.clone()], operators }
    }

    /// What runs node `node`, if it is an operator.
    pub fn operator(&self, node: usize) -> Option<&OperatorCode> {
        self.operators.get(node).and_then(Option::as_ref)
    }

    /// Hash of component `index`.
    pub fn hash(&self, index: u32) -> Option<&ComponentHash> {
        self.components.get(index as usize)
    }
}

/// A snapshot a job starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestoreFrom {
    /// A checkpoint of this job: the path of its metadata in the checkpoint storage.
    Checkpoint(String),
    /// A savepoint: its directory (absolute, reachable by every TaskManager).
    Savepoint(String),
    /// A retained checkpoint of another (ended) job `job`: the path of its metadata in
    /// the checkpoint storage. Restored like a savepoint: its files stay that job's
    /// (never this job's to delete), and this job's first checkpoint is full.
    CheckpointOf { job: String, path: String },
}

impl std::fmt::Display for RestoreFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreFrom::Checkpoint(p) => write!(f, "checkpoint {p}"),
            RestoreFrom::Savepoint(p) => write!(f, "savepoint {p}"),
            RestoreFrom::CheckpointOf { job, path } => write!(f, "checkpoint {path} of job {job}"),
        }
    }
}

/// How a job is checkpointed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointConfig {
    /// Root of the checkpoint storage, shared by the JobManager and TaskManagers.
    pub dir: String,
    /// Time between checkpoints, in milliseconds.
    pub interval_ms: u64,
    /// Completed checkpoints kept.
    pub retain: u32,
}

/// How the subtasks of a file sink share its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SinkFiles {
    /// All subtasks run in one process and append whole batches to the one file.
    Shared,
    /// Subtasks may run on different machines: the path is a directory and subtask `i`
    /// writes `part-<i>` in it, as Flink's file sink writes part files.
    PartPerSubtask,
}

impl JobDeployment {
    /// Names this attempt of the job: channels, keyspaces and running subtasks are
    /// per attempt, so nothing of a failed attempt can leak into the next.
    pub fn run_id(&self) -> RunId {
        self.job.run(self.attempt)
    }

    /// Subtasks placed on TaskManager `tm`, as (vertex, subtask).
    pub fn subtasks_on(&self, tm: u32) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.placement
            .iter()
            .enumerate()
            .flat_map(move |(v, subtasks)| subtasks.iter().enumerate().filter(move |&(_, &t)| t == tm).map(move |(s, _)| (v, s as u32)))
    }

    /// Number of subtasks in the job (from the graph: a job waiting for slots has no
    /// placement yet).
    pub fn task_count(&self) -> usize {
        self.graph.vertices.iter().map(|v| v.parallelism as usize).sum()
    }
}

/// Spreads a job over slots. `slots` lists each TaskManager's free slots, by index.
/// With slot sharing, slot `i` of the job holds subtask `i` of every vertex; slots are
/// taken from the TaskManagers in turn, so a job wider than one TaskManager uses all of
/// them evenly. `None` if there are not enough free slots.
pub fn place(graph: &ExecutionGraph, slots: &[u32]) -> Option<Vec<Vec<u32>>> {
    let needed = graph.slots_needed() as usize;
    let mut left = slots.to_vec();
    let mut job_slots = Vec::with_capacity(needed);
    while job_slots.len() < needed {
        let before = job_slots.len();
        for (tm, free) in left.iter_mut().enumerate() {
            if *free > 0 && job_slots.len() < needed {
                *free -= 1;
                job_slots.push(tm as u32);
            }
        }
        if job_slots.len() == before {
            return None;
        }
    }
    Some(graph.vertices.iter().map(|v| job_slots[..v.parallelism as usize].to_vec()).collect())
}

/// Names one producer -> consumer channel: what a data stream's header carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChannelId {
    /// The job's run id ([`JobDeployment::run_id`]).
    pub run: RunId,
    /// Consuming vertex.
    pub vertex: u32,
    /// Consuming subtask.
    pub subtask: u32,
    /// Producing vertex.
    pub from_vertex: u32,
    /// Producing subtask.
    pub from_subtask: u32,
}

/// What a finished subtask did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStats {
    /// Records that entered the subtask.
    pub records_in: u64,
    /// Of those, per input of a connect's two-input operator (empty for others).
    pub records_in_by_input: Vec<u64>,
    /// Records that left it (to a sink or downstream).
    pub records_out: u64,
    /// Fuel its operators burned.
    pub fuel: u64,
    /// Wall time from start to finish.
    pub elapsed: Duration,
    /// The newest checkpoint whose barrier it passed (0: none). Later checkpoints
    /// count it as finished; this one and earlier wait for its acknowledgement.
    pub last_checkpoint: u64,
    /// Records its operators emitted to side outputs that no edge reads, dropped.
    pub side_dropped: u64,
    /// Every side output its operators declare, with its final counts.
    pub side_outputs: Vec<SideOutputCount>,
}

/// How a subtask ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskOutcome {
    /// It consumed all its input.
    Finished(TaskStats),
    /// It failed; the message names the cause.
    Failed(String),
    /// It stopped because the job was cancelled.
    Cancelled,
}

/// A subtask's end, as reported to the JobManager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEnd {
    /// The run (attempt) of the job it belonged to.
    pub run: RunId,
    /// Vertex index.
    pub vertex: u32,
    /// Subtask index.
    pub subtask: u32,
    /// How it ended.
    pub outcome: TaskOutcome,
}

/// Live progress of one running subtask, as TaskManagers report it with heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskProgress {
    /// The run (attempt) of the job it belongs to.
    pub run: RunId,
    /// Vertex index.
    pub vertex: u32,
    /// Subtask index.
    pub subtask: u32,
    /// Records in so far.
    pub records_in: u64,
    /// Of those, per input of a connect's two-input operator (empty for others).
    pub records_in_by_input: Vec<u64>,
    /// Records out so far.
    pub records_out: u64,
    /// Fuel its operators burned so far.
    pub fuel: u64,
    /// Time it spent blocked handing output to full downstream channels, in
    /// nanoseconds so far: the share of wall time it grows by is the subtask's
    /// backpressure (Flink's backPressuredTimeMsPerSecond).
    pub backpressured_ns: u64,
    /// Time it waited for its tenant's fuel rate, in nanoseconds so far.
    #[serde(default)]
    pub throttled_ns: u64,
    /// The event time it reached: the last watermark that left its operators (Flink's
    /// currentOutputWatermark), if any did.
    pub watermark: Option<i64>,
    /// Every side output its operators declare.
    pub side_outputs: Vec<SideOutputCount>,
    /// A Kafka source's consumer lag per partition it reads, as last looked up.
    #[serde(default)]
    pub source_lag: Vec<PartitionLag>,
}

/// Records of a partition (Kafka) past what its source subtask read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The log's end minus the offset of the next record to read.
    pub records: i64,
}

/// Records an operator emitted to one of its side outputs (late data, for one) and how
/// many of them no edge read (Flink's numLateRecordsDropped, for late data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideOutputCount {
    /// The operator's name.
    pub operator: String,
    /// The side output's name.
    pub output: String,
    /// Records emitted to it.
    pub records: u64,
    /// Of those, dropped because no edge reads the side output.
    pub dropped: u64,
}

/// The engine's view of a job, as Flink names its job statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    /// Accepted; subtasks are being deployed.
    Created,
    /// Every subtask was started.
    Running,
    /// A subtask failed; the others are being cancelled.
    Failing,
    /// A user asked to cancel; subtasks are stopping.
    Cancelling,
    /// A run failed; the job waits to run again from its latest checkpoint.
    Restarting,
    /// Every subtask consumed all its input.
    Finished,
    /// A subtask failed (or its TaskManager was lost).
    Failed,
    /// Cancelled by a user.
    Canceled,
}

impl JobStatus {
    /// True once the job can change no more.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Finished | JobStatus::Failed | JobStatus::Canceled)
    }

    /// Upper-case name, as Flink prints it.
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Created => "CREATED",
            JobStatus::Running => "RUNNING",
            JobStatus::Failing => "FAILING",
            JobStatus::Cancelling => "CANCELLING",
            JobStatus::Restarting => "RESTARTING",
            JobStatus::Finished => "FINISHED",
            JobStatus::Failed => "FAILED",
            JobStatus::Canceled => "CANCELED",
        }
    }
}

/// A job's status and what it did so far, per vertex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobReport {
    /// Job id.
    pub id: JobId,
    /// Job name.
    pub name: String,
    /// Where it stands.
    pub status: JobStatus,
    /// The first failure's message, if it failed.
    pub error: Option<String>,
    /// Wall time since deployment (to the end, once ended).
    pub elapsed: Duration,
    /// One entry per vertex, in topological order.
    pub vertices: Vec<VertexReport>,
    /// Times the job was restarted after a failure.
    pub restarts: u32,
    /// The newest completed checkpoint.
    pub last_checkpoint: Option<u64>,
    /// The Job resource (lifecycle state and its history), where one is kept.
    pub resource: Option<crate::resource::JobResource>,
    /// Why the job waits before its next attempt can run (too few free slots).
    #[serde(default)]
    pub waiting: Option<String>,
}

/// Totals of one vertex over its subtasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VertexReport {
    /// Chain name.
    pub name: String,
    /// Subtasks.
    pub parallelism: u32,
    /// Records in.
    pub records_in: u64,
    /// Of those, per input of a connect's two-input operator (empty for others).
    pub records_in_by_input: Vec<u64>,
    /// Records out.
    pub records_out: u64,
    /// Fuel burned by all attempts: running subtasks' from their last heartbeat,
    /// failed attempts' included.
    pub fuel: u64,
    /// Of `fuel`, what earlier attempts burned before they failed.
    #[serde(default)]
    pub fuel_failed_attempts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Vertex;

    fn graph(ps: &[u32]) -> ExecutionGraph {
        let vertices =
            ps.iter().map(|&parallelism| Vertex { nodes: vec![], parallelism, inputs: vec![], outputs: vec![], name: String::new() }).collect();
        ExecutionGraph { vertices }
    }

    #[test]
    fn placement_alternates_taskmanagers_and_shares_slots_across_vertices() {
        let p = place(&graph(&[4, 4, 1]), &[2, 3]);
        assert_eq!(p, Some(vec![vec![0, 1, 0, 1], vec![0, 1, 0, 1], vec![0]]));
        assert_eq!(place(&graph(&[3]), &[1, 0, 5]), Some(vec![vec![0, 2, 2]]));
        assert_eq!(place(&graph(&[4]), &[1, 2]), None);
        let d = JobDeployment {
            job: JobId::from_u64(1),
            plan: JobPlan { name: "j".into(), nodes: vec![], edges: vec![], max_parallelism: None },
            graph: graph(&[4, 1]),
            args: vec![],
            code: JobCode { components: vec![], operators: vec![] },
            placement: vec![vec![0, 1, 0, 1], vec![1]],
            taskmanagers: vec![],
            sink_files: SinkFiles::Shared,
            attempt: 0,
            checkpoints: None,
            restore: None,
            files: crate::access::FileAccess::Any,
            capabilities: Capabilities::ALL,
        };
        assert_eq!(d.subtasks_on(1).collect::<Vec<_>>(), vec![(0, 1), (0, 3), (1, 0)]);
        assert_eq!(d.task_count(), 5);
    }
}
