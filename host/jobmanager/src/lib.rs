//! The JobManager: turns a job into an execution graph, assigns its subtasks to
//! slots, deploys them, checkpoints them, restarts them, and tracks them to the job's
//! end.
//!
//! Pure (no I/O, time passed in), unit-tested:
//! - [`driver`]: a job's life as a state machine (restarting, deploying, running,
//!   stopping with a savepoint, ended): events in, commands out. Both the service and
//!   the embedded cluster drive it.
//! - [`tracker`]: a job's status from its subtasks' ends and progress (says when to
//!   cancel the rest and when the attempt is over).
//! - [`coordinator`]: when to trigger a checkpoint and when it is complete.
//! - [`restart`]: restart strategies: fixed delay, exponential backoff, failure rate.
//! - [`registry`]: the resource view: TaskManagers, their slots, heartbeats, and which
//!   are lost after the heartbeat timeout.
//!
//! With I/O:
//! - [`planning`]: load, plan and check a submission (every path shares it).
//! - [`embedded`]: a JobManager and a TaskManager with N slots in one process, wired by
//!   in-process channels. `weir run` uses it.
//! - [`service`]: the `weir jobmanager` process: TaskManager connections (registration,
//!   heartbeats, lost TaskManagers, component transfer) and timers.
//! - `jobs`: the service's jobs by id: drivers fed and their commands carried out.
//! - `persist`: what a restarted JobManager needs: running jobs' records, history.
//! - [`api`]: what users can ask (the REST API's operations and domain types).
//!
//! Dependencies point one way: `service` -> `jobs` -> `driver` -> `coordinator`,
//! `tracker`, `restart`; `jobs` and `service` -> `registry`; `embedded` -> `driver`,
//! `planning`.
//!
//! The execution graph itself (chaining) is pure planning and lives in
//! `weir_types::graph`, since TaskManagers read it too.
//!
//! It is not: the executor of subtasks (`weir-taskmanager`) or the sandbox
//! (`weir-wasm`).

pub mod api;
pub mod coordinator;
pub mod driver;
pub mod embedded;
mod jobs;
mod persist;
pub mod planning;
pub mod registry;
pub mod restart;
pub mod service;
pub mod tracker;

pub use embedded::{ClusterConfig, EmbeddedCluster, JobHandle, JobSpec};
pub use planning::{JobError, JobSource, PlannedCode};
pub use service::JobManager;
pub use tracker::{JobTracker, SubtaskMetrics};
pub use weir_types::deployment::{JobReport, JobStatus, VertexReport};
pub use weir_types::graph::{ExecutionGraph, Vertex};
