//! Weir's shared vocabulary: the job graph, the flat record-batch format, and key groups.
//!
//! Everything here is pure data and pure functions: no I/O, no Wasm, no threads. The
//! JobManager, the TaskManagers and the Wasm runtime all speak these types, so a change
//! of the wire format or of the graph model happens in one place.
//!
//! - [`plan`]: the job graph a component declares, and its validation.
//! - [`batch`]: the byte layout of record batches (the same bytes cross the Wasm
//!   boundary, the in-process channels and, later, the network), with a checked reader
//!   that never trusts a length.
//! - [`manifest`]: job manifests (TOML) that assemble a job from one component per
//!   operator, possibly in several languages, lowered to a plan.
//! - [`resource`]: the Job resource of seed 002 (STARTING .. FINISHED) derived from
//!   the engine's job status, with its transitions (pure).
//! - [`submit`]: a job's spec as clients submit it (the Job resource's `spec`).
//! - [`deploy`]: the Deployment resource (spec, desired state, status document).
//! - [`ids`]: typed ids (job, run, component hash, TaskManager), serialized as the
//!   bare strings and numbers they replace.
//! - [`keygroup`]: how keys map to key groups and key groups to subtasks.
//! - [`graph`]: from a plan to an execution graph of chained vertices (Flink's
//!   operator chaining), pure and unit-tested on plans alone.
//! - [`deployment`]: what the JobManager tells TaskManagers to run (the same
//!   descriptor for the embedded and the networked cluster), slot placement, and the
//!   subtask outcomes reported back.

pub mod access;
pub mod batch;
pub mod deploy;
pub mod deployment;
pub mod graph;
pub mod ids;
pub mod keygroup;
pub mod manifest;
pub mod plan;
pub mod resource;
pub mod submit;
