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
//! - [`deployment`]: a Deployment's controller (issue 17): desired state and spec in,
//!   Jobs submitted, stopped with savepoints and cancelled out.
//! - [`registry`]: the resource view: TaskManagers, their slots, heartbeats, and which
//!   are lost after the heartbeat timeout.
//!
//! With I/O:
//! - [`planning`]: load, plan and check a submission (every path shares it).
//! - [`embedded`]: a JobManager and a TaskManager with N slots in one process, wired by
//!   in-process channels. `weir run` uses it.
//! - [`service`]: the `weir jobmanager` process: TaskManager connections (registration,
//!   heartbeats, lost TaskManagers, component transfer) and timers.
//! - `jobs`: the state the service's parts share (`Shared`: registry, jobs by id,
//!   history, artifacts, TaskManagers' order queues) and the jobs' drivers fed and
//!   their commands carried out; `job`: one job that has not ended.
//! - `artifacts`: uploaded components on disk under a size cap, least recently used
//!   evicted first.
//! - `retention`: which ended jobs' checkpoints go, and deleting them.
//! - `persist`: what a restarted JobManager needs (running jobs' records, history),
//!   read and written as plain records.
//! - `deployments`: the Deployments of the `weir jobmanager` (persisted under
//!   `_deployments/`), their controllers fed and their commands carried out.
//! - [`api`]: what users can ask (the REST API's operations); `scoped`: the same as a
//!   caller may use them (a tenant sees only its own), and tenant management.
//! - [`tenants`]: tenants, their hashed tokens and quotas, and who owns which job,
//!   artifact and savepoint (a small persisted book).
//! - [`model`]: what they get back: the domain types (jobs, events, checkpoints,
//!   metrics, artifacts, [`model::ApiError`]).
//!
//! Dependencies point one way (a test below keeps it so): `deployments` -> `api`,
//! `service`, `jobs`, `deployment`, `planning`, `model`; `api` -> `service`, `jobs`,
//! `planning`, `restart`, `model`; `service` -> `jobs`, `driver`, `artifacts`; `jobs`
//! -> `job`, `persist`, `driver`, `deployment`, `planning`, `registry`, `restart`,
//! `artifacts`, `retention`, `model`; `job` -> `driver`, `registry`, `model`; `persist` ->
//! `driver`, `model`; `embedded` -> `driver`, `planning`, `restart`, `model`; `driver`
//! -> `coordinator`, `tracker`, `restart`, `model`; `tracker`, `artifacts` -> `model`;
//! `model`, `coordinator`, `restart`, `registry`, `retention`, `planning` and
//! `deployment` are leaves.
//!
//! The execution graph itself (chaining) is pure planning and lives in
//! `weir_types::graph`, since TaskManagers read it too.
//!
//! It is not: the executor of subtasks (`weir-taskmanager`) or the sandbox
//! (`weir-wasm`).

pub mod api;
mod artifacts;
pub mod coordinator;
pub mod deployment;
mod deployments;
pub mod driver;
pub mod embedded;
mod job;
mod jobs;
pub mod model;
#[cfg(test)]
mod module_graph;
mod persist;
pub mod planning;
pub mod registry;
pub mod restart;
mod retention;
mod scoped;
pub mod service;
pub mod tenants;
pub mod tracker;

pub use artifacts::StoreError;
pub use embedded::{ClusterConfig, EmbeddedCluster, JobHandle, JobSpec};
pub use jobs::JobManagerConfig;
pub use model::SubtaskMetrics;
pub use planning::{JobError, JobSource, PlannedCode};
pub use scoped::Usage;
pub use service::JobManager;
pub use tenants::Caller;
pub use tracker::JobTracker;
pub use weir_types::deployment::{JobReport, JobStatus, VertexReport};
pub use weir_types::graph::{ExecutionGraph, Vertex};

#[cfg(test)]
mod tests {
    /// A module that imports one that imports it back can only be understood, tested
    /// and changed together with it; this keeps the modules' uses a one-way graph.
    #[test]
    fn no_module_depends_on_itself_through_others() -> std::io::Result<()> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let edges = crate::module_graph::edges(&src)?;
        let uses = |m: &str, dep: &str| edges.get(m).is_some_and(|deps| deps.contains(dep));
        // Files under driver/ count as `driver`.
        assert!(edges.len() > 10 && uses("api", "service") && !edges.contains_key("deploying"), "read the crate's modules: {edges:?}");
        if let Some(cycle) = crate::module_graph::cycle(&edges) {
            panic!("modules import each other: {}\n{edges:#?}", cycle.join(" -> "));
        }
        Ok(())
    }
}
