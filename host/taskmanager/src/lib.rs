//! The TaskManager: runs subtasks (chains of sources, Wasm operators and sinks) in
//! slots, moves record batches between them with backpressure, and keeps their keyed
//! state.
//!
//! - [`task`]: what a subtask is told to run ([`TaskDeployment`]) and the thread that
//!   runs it ([`run_task`]).
//! - [`error`]: why a subtask stopped or could not be set up ([`TaskError`]), with
//!   typed causes.
//! - [`worker`]: the TaskManager itself: builds its share of a job deployment, wires
//!   the channels, starts the subtasks, reports their ends and progress, cancels.
//! - [`wiring`]: which of a TaskManager's channels are in memory and which cross to
//!   another TaskManager, as a pure function of the deployment.
//! - [`checkpoint`]: persisting snapshots taken at barriers (full or incremental,
//!   off the subtask threads), acknowledging them, and restoring state and source
//!   positions from a checkpoint, also at another parallelism.
//! - [`exchange`]: in-process channels and the routers that partition a subtask's
//!   output over the downstream subtasks (forward, key-by, rebalance, broadcast).
//!   Channels are bounded, so a slow consumer blocks its producers.
//! - [`alignment`]: which inputs a checkpoint barrier holds back, and when it is aligned.
//! - [`dataplane`]: the same channels between TaskManagers, one QUIC stream each,
//!   backpressured by QUIC flow control.
//! - [`service`]: the `weir taskmanager` process's side of the control plane:
//!   registration, heartbeats with progress, deployments, component transfer.
//! - [`source`] and [`sink`]: the built-in connectors.
//! - `chain`: the per-batch hot path through the chained operators of a subtask,
//!   including the keyed-state fast path (each distinct key's value travels with the
//!   batch into the guest and back).
//!
//! It is not: planning or failure policy (the JobManager decides those), nor the Wasm
//! sandbox itself (`weir-wasm`).

pub mod alignment;
mod chain;
pub mod checkpoint;
pub mod dataplane;
pub mod error;
pub mod exchange;
pub mod service;
pub mod sink;
pub mod source;
mod split;
pub mod task;
pub mod wiring;
pub mod worker;

pub use error::TaskError;
pub use task::{Cancel, Head, OperatorStep, Tail, TaskCounters, TaskDeployment, run_task};
pub use weir_types::deployment::{TaskProgress, TaskStats};
pub use worker::{PreparedJob, Report, Reporter, TaskManager};
