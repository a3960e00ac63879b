//! The JobManager: turns a job component into an execution graph, assigns its
//! subtasks to slots, deploys them, and tracks them to the job's end.
//!
//! - [`graph`]: the pure planning step, from a checked [`JobPlan`] to vertices
//!   (operator chains, as Flink chains forward edges of equal parallelism) and the
//!   edges between them. No I/O; unit-tested on plans alone.
//! - [`embedded`]: a JobManager and a TaskManager with N slots in one process, wired by
//!   in-process channels. `weir run` uses it.
//!
//! It is not: the executor of subtasks (`weir-taskmanager`) or the sandbox
//! (`weir-wasm`).
//!
//! [`JobPlan`]: weir_types::plan::JobPlan

pub mod embedded;
pub mod graph;

pub use embedded::{ClusterConfig, EmbeddedCluster, JobError, JobHandle, JobReport, JobSpec, VertexReport};
pub use graph::{ExecutionGraph, Vertex};
