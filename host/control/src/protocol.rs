//! Control-stream messages. Each connection opens one control stream whose first
//! message says what the peer is; the certificate's common name must agree.
//!
//! Users and tools do not speak this protocol: they use the JobManager's REST API.
//!
//! Messages about a job name the attempt they are about, its run id (field `run`):
//! that is how the JobManager tells a superseded attempt's reports from the current
//! one's, and how a TaskManager keeps two attempts of a job apart.
//!
//! A component (tens of MB for some guest languages) never travels as one message: a
//! header message gives its size, then [`FromJobManager::ComponentChunk`] messages of at most [`CHUNK_BYTES`] follow on the
//! same stream, so the frame limit stays small.

use serde::{Deserialize, Serialize};
use weir_checkpoint::TaskMeta;
use weir_types::deployment::{JobDeployment, JobReport, TaskEnd, TaskProgress};
use weir_types::ids::{ComponentHash, JobId, RunId, TaskManagerId};

/// The first message on a control stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Hello {
    /// A TaskManager offering slots. Its certificate name must start with
    /// [`TASKMANAGER_PREFIX`].
    TaskManager {
        /// Slots it offers.
        slots: u32,
        /// Where its data plane accepts other TaskManagers.
        data_addr: String,
    },
}

/// Certificate names of TaskManagers start with this.
pub const TASKMANAGER_PREFIX: &str = "taskmanager";

/// Largest component chunk in one message.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Messages to the JobManager. The first on a stream is always a `Hello`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToJobManager {
    /// What the peer is.
    Hello(Hello),
    /// TaskManager: alive, with the progress of its running subtasks.
    Heartbeat(Vec<TaskProgress>),
    /// TaskManager: these components of the deployed job are not here; send them.
    NeedComponents {
        /// The run deployed.
        run: RunId,
        /// Their hashes.
        hashes: Vec<ComponentHash>,
    },
    /// TaskManager: the run's subtasks here are wired and wait for `Start`.
    Prepared {
        /// The run.
        run: RunId,
    },
    /// TaskManager: the run could not be set up here.
    PrepareFailed {
        /// The run.
        run: RunId,
        /// Why.
        error: String,
    },
    /// TaskManager: a subtask ended.
    TaskEnded(TaskEnd),
    /// TaskManager: a subtask's snapshot for a checkpoint is persisted (or failed).
    CheckpointAck(CheckpointAck),
    /// TaskManager: a subtask processed the end of all its inputs and waits for a
    /// checkpoint to capture its final state before it finishes.
    EndOfInput(EndOfInput),
    /// TaskManager: the new code of a live swap ([`FromJobManager::Swap`]) is compiled
    /// and armed here, or why not.
    SwapReady {
        /// The run.
        run: RunId,
        /// Armed, or the error.
        result: Result<(), String>,
    },
}

/// Messages from the JobManager.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromJobManager {
    /// TaskManager: registered under this id.
    Registered {
        /// Its id in this JobManager's registry.
        id: TaskManagerId,
        /// How often to send heartbeats, in milliseconds.
        heartbeat_ms: u64,
    },
    /// TaskManager: set up your share of a job.
    Deploy {
        /// The whole job.
        deployment: Box<JobDeployment>,
        /// Which of `deployment.taskmanagers` you are.
        me: u32,
    },
    /// TaskManager: a component of a job follows in `size` bytes of chunks.
    Component {
        /// The run that asked for it.
        run: RunId,
        /// Its hash, as named in the deployment.
        hash: ComponentHash,
        /// Size in bytes.
        size: u64,
    },
    /// A piece of a component.
    ComponentChunk(Vec<u8>),
    /// TaskManager: start the prepared subtasks of a run.
    Start {
        /// The run.
        run: RunId,
    },
    /// TaskManager: sources of a run inject the barrier of checkpoint `id`.
    TriggerCheckpoint {
        /// The run.
        run: RunId,
        /// Checkpoint id.
        id: u64,
        /// A stop-with-savepoint: sources emit nothing after this barrier.
        stop: bool,
    },
    /// TaskManager: checkpoint `id` of a run is complete.
    CheckpointComplete {
        /// The run.
        run: RunId,
        /// Checkpoint id.
        id: u64,
    },
    /// TaskManager: cancel a run's subtasks (prepared or running).
    Cancel {
        /// The run.
        run: RunId,
    },
    /// TaskManager: a live swap. Get and compile these components (ask for missing
    /// ones with `NeedComponents`), then arm them: each subtask of the run switches to
    /// them right after its snapshot for the first barrier at or past checkpoint `at`.
    /// Answer with [`ToJobManager::SwapReady`]. Until every TaskManager did, the
    /// JobManager triggers no checkpoint, so no barrier overtakes an arming.
    Swap {
        /// The run.
        run: RunId,
        /// The new components, by index in the job's code.
        components: Vec<ComponentHash>,
        /// The switch point.
        at: u64,
    },
    /// TaskManager: forget the run's armed swap (another TaskManager could not load
    /// the code); sent before the switch point's checkpoint is triggered.
    SwapAbort {
        /// The run.
        run: RunId,
    },
    /// TaskManager: the fuel rates of the tenants with subtasks here, replacing the
    /// last; a tenant not named is unlimited. Sent when placements or quotas change.
    FuelRates(Vec<FuelRate>),
}

/// A tenant's share of its `fuelPerSecond` on one TaskManager: the rate times its
/// subtasks there over all its running subtasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuelRate {
    /// The tenant.
    pub tenant: String,
    /// Fuel per second for its subtasks on this TaskManager together.
    pub fuel_per_second: u64,
    /// Its jobs with subtasks on this TaskManager.
    pub jobs: Vec<JobId>,
}

/// A subtask's snapshot for checkpoint `checkpoint`, persisted (or not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointAck {
    /// The run (attempt) of the job that took it.
    pub run: RunId,
    /// Checkpoint id.
    pub checkpoint: u64,
    /// Vertex index.
    pub vertex: u32,
    /// What was written, or why it could not be.
    pub task: Result<TaskMeta, String>,
}

/// A subtask at the end of its input, waiting for the final checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndOfInput {
    /// The run (attempt).
    pub run: RunId,
    /// Vertex index.
    pub vertex: u32,
    /// Subtask index.
    pub subtask: u32,
    /// The last checkpoint whose barrier it passed (0: none): later ones capture it
    /// at its end.
    pub last_checkpoint: u64,
}

/// The resource view and the jobs, running and finished.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterView {
    /// TaskManagers, by id.
    pub taskmanagers: Vec<TaskManagerInfo>,
    /// Free slots of the alive TaskManagers.
    pub free_slots: u32,
    /// Jobs, oldest first.
    pub jobs: Vec<JobReport>,
}

/// One TaskManager as the JobManager sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
// camelCase: the REST API serves it as JSON too (postcard ignores field names).
#[serde(rename_all = "camelCase")]
pub struct TaskManagerInfo {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed ids and the fields renamed to `run` left the bytes alone: postcard
    /// writes no field names, and ids are written as the bare strings and numbers.
    #[test]
    fn messages_are_the_bytes_they_were_with_bare_ids() -> Result<(), Box<dyn std::error::Error>> {
        let run = "ab".parse::<JobId>()?.run(2);
        let hash: ComponentHash = "0f".repeat(32).parse()?;
        // Variant index, then each field: a string is its length and bytes, an integer a varint.
        assert_eq!(bytes(&ToJobManager::Prepared { run: run.clone() })?, b"\x03\x04ab.2");
        let need = ToJobManager::NeedComponents { run: run.clone(), hashes: vec![hash] };
        assert_eq!(bytes(&need)?, [b"\x02\x04ab.2\x01\x40".as_slice(), "0f".repeat(32).as_bytes()].concat());
        assert_eq!(bytes(&FromJobManager::Registered { id: TaskManagerId::new(300), heartbeat_ms: 5 })?, b"\x00\xac\x02\x05");
        assert_eq!(bytes(&FromJobManager::TriggerCheckpoint { run: run.clone(), id: 7, stop: true })?, b"\x05\x04ab.2\x07\x01");
        assert_eq!(bytes(&FromJobManager::Cancel { run })?, b"\x07\x04ab.2");
        Ok(())
    }

    fn bytes(m: &impl Serialize) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(m)
    }
}
