//! The JobManager: turns a job component into an execution graph, assigns its
//! subtasks to slots, deploys them, and tracks them to the job's end.
//!
//! - [`tracker`]: a job's status from its subtasks' ends and progress (pure; says when
//!   to cancel the rest and when the job is over).
//! - [`coordinator`]: when to trigger a checkpoint and when it is complete (pure).
//! - [`restart`]: restart strategies: fixed delay, exponential backoff, failure rate.
//! - [`embedded`]: a JobManager and a TaskManager with N slots in one process, wired by
//!   in-process channels. `weir run` uses it. [`embedded::prepare`] is the load, plan
//!   and check step every submission shares.
//! - [`service`]: the `weir jobmanager` process: registrations and heartbeats,
//!   submissions, placement over the TaskManagers' slots, deployment in two phases
//!   (prepare everywhere, then start), component transfer once per TaskManager,
//!   failure and cancellation fan-out, lost-TaskManager handling, job history.
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
pub mod restart;
pub mod service;
pub mod tracker;

pub use embedded::{ClusterConfig, EmbeddedCluster, JobError, JobHandle, JobSource, JobSpec, PlannedCode};
pub use service::JobManager;
pub use tracker::{JobTracker, SubtaskMetrics};
pub use weir_types::deployment::{JobReport, JobStatus, VertexReport};
pub use weir_types::graph::{ExecutionGraph, Vertex};
