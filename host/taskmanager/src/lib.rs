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
//! - [`exchange`]: the routers that partition a subtask's output over the downstream
//!   subtasks (forward, key-by, rebalance, broadcast), and a subtask's inputs. The
//!   channels (`channel`, re-exported there) are bounded, so a slow consumer blocks
//!   its producers; every wait on them polls the job's [`Cancel`] flag.
//! - [`clock`]: a subtask's processing time, injectable so tests need no sleeps.
//! - [`alignment`]: which inputs a checkpoint barrier holds back, and when it is aligned.
//! - [`watermark`]: a subtask's event-time watermark from its splits' or inputs'
//!   watermarks and idleness (pure).
//! - [`dataplane`]: the same channels between TaskManagers, one QUIC stream each,
//!   backpressured by QUIC flow control.
//! - [`service`]: the `weir taskmanager` process's side of the control plane:
//!   registration, heartbeats with progress, deployments, component transfer.
//! - [`source`] and [`sink`]: the built-in connectors; a source's position in a
//!   checkpoint is a list of [`source::Split`]s (from `weir-checkpoint`).
//! - [`throttle`]: tenants' fuel rates here, one token bucket per tenant; a subtask
//!   in debt sleeps before its next batch.
//! - `chain`: the per-batch hot path through the chained operators of a subtask,
//!   including the keyed-state fast path (each distinct key's value travels with the
//!   batch into the guest and back).
//!
//! It is not: planning or failure policy (the JobManager decides those), nor the Wasm
//! sandbox itself (`weir-wasm`).
//!
//! Modules depend on each other one way only, from the TaskManager (`service`,
//! `worker`) down to the leaves (`error`, `cancel`, `alignment`); a test
//! below keeps it so.

pub mod alignment;
mod cancel;
mod chain;
mod channel;
pub mod checkpoint;
pub mod clock;
pub mod dataplane;
pub mod error;
pub mod exchange;
pub mod service;
pub mod sink;
pub mod source;
pub mod task;
pub mod throttle;
pub mod watermark;
pub mod wiring;
pub mod worker;

pub use cancel::Cancel;
pub use chain::OperatorStep;
pub use error::TaskError;
pub use task::{Head, SwapTo, Tail, TaskCounters, TaskDeployment, run_task};
pub use weir_types::deployment::{TaskProgress, TaskStats};
pub use worker::{PreparedJob, Report, Reporter, TaskManager};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// A module that imports one that imports it back can only be understood, tested
    /// and changed together with it; this keeps `crate::` uses a one-way graph.
    #[test]
    fn no_module_depends_on_itself_through_others() -> std::io::Result<()> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut uses: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in std::fs::read_dir(&src)? {
            let path = entry?.path();
            let Some(module) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else { continue };
            let text = std::fs::read_to_string(&path)?;
            let mut deps: Vec<String> = text
                .split("crate::")
                .skip(1)
                .map(|rest| rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect::<String>())
                .filter(|dep| !dep.is_empty() && *dep != module)
                .collect();
            deps.sort();
            deps.dedup();
            uses.insert(module, deps);
        }
        // Depth-first, with the path so far: a module met again on it closes a cycle.
        fn visit(m: &str, uses: &BTreeMap<String, Vec<String>>, path: &mut Vec<String>, done: &mut Vec<String>) {
            if done.iter().any(|d| d == m) {
                return;
            }
            if let Some(start) = path.iter().position(|p| p == m) {
                panic!("modules import each other: {} -> {m}", path[start..].join(" -> "));
            }
            path.push(m.to_string());
            for dep in uses.get(m).into_iter().flatten() {
                visit(dep, uses, path, done);
            }
            path.pop();
            done.push(m.to_string());
        }
        let mut done = Vec::new();
        for m in uses.keys() {
            visit(m, &uses, &mut Vec::new(), &mut done);
        }
        assert!(uses.len() > 10 && uses["worker"].contains(&"wiring".to_string()), "read the crate's modules: {uses:?}");
        Ok(())
    }
}
