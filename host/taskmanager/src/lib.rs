//! The TaskManager: runs subtasks (chains of sources, Wasm operators and sinks) in
//! slots, moves record batches between them with backpressure, and keeps their keyed
//! state.
//!
//! - [`deploy`]: what a subtask is told to run ([`TaskDeployment`]) and the thread that
//!   runs it.
//! - [`exchange`]: in-process channels and the routers that partition a subtask's
//!   output over the downstream subtasks (forward, key-by, rebalance, broadcast).
//!   Channels are bounded, so a slow consumer blocks its producers.
//! - [`source`] and [`sink`]: the built-in connectors.
//! - `chain`: the per-batch hot path through the chained operators of a subtask,
//!   including the keyed-state fast path (each distinct key's value travels with the
//!   batch into the guest and back).
//!
//! It is not: planning or failure policy (the JobManager decides those), nor the Wasm
//! sandbox itself (`weir-wasm`).

mod chain;
pub mod deploy;
pub mod exchange;
pub mod sink;
pub mod source;

pub use deploy::{Cancel, Head, OperatorStep, Tail, TaskDeployment, TaskError, TaskStats, run_task};
