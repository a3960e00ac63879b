//! A subtask: what it is told to run, and the thread loop that runs it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::Receiver;
use thiserror::Error;
use weir_state::{StateError, TaskState};
use weir_types::deployment::TaskStats;
use weir_wasm::{Instance, JobComponent, LoadError, OperatorFailure, Runtime, TaskInfo};

use crate::chain::Chain;
use crate::exchange::{self, Message, Router};
use crate::sink::Sink;
use crate::source::Source;

/// Shared by all subtasks of a job: once set, every subtask stops at its next batch.
#[derive(Clone, Default, Debug)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Asks every holder to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Why a subtask stopped without finishing.
#[derive(Debug, Error)]
pub enum TaskError {
    /// A guest operator failed: trap, reported error, or malformed output.
    #[error("operator {name:?} failed: {failure}")]
    Operator {
        /// Operator name.
        name: String,
        /// What happened.
        failure: OperatorFailure,
    },
    /// The component could not be instantiated.
    #[error("could not start the operators: {0}")]
    Load(#[from] LoadError),
    /// A source failed.
    #[error("source failed: {0}")]
    Source(String),
    /// A sink failed.
    #[error("sink failed: {0}")]
    Sink(String),
    /// Keyed state failed.
    #[error("keyed state failed: {0}")]
    State(#[from] StateError),
    /// Exchanging records with another TaskManager failed.
    #[error("record exchange failed: {0}")]
    Exchange(String),
    /// The job was cancelled (because another subtask failed, or by the user).
    #[error("cancelled")]
    Cancelled,
    /// A bug in Weir.
    #[error("internal error: {0}")]
    Internal(String),
}

/// One chained guest operator of a subtask.
#[derive(Debug, Clone)]
pub struct OperatorStep {
    /// Operator id (node index in the plan).
    pub op: u32,
    /// Display name.
    pub name: String,
    /// Gets its value state with every batch.
    pub keyed: bool,
}

/// Where a subtask's records come from.
pub enum Head {
    /// A built-in source.
    Source(Box<dyn Source>),
    /// A channel fed by `producers` upstream subtasks, each ending with
    /// [`Message::End`].
    Input {
        /// The channel.
        rx: Receiver<Message>,
        /// Number of upstream subtasks.
        producers: usize,
    },
}

/// Where a subtask's records go.
pub enum Tail {
    /// A built-in sink.
    Sink(Sink),
    /// Downstream vertices, one router each.
    Routers(Vec<Router>),
}

/// Everything a subtask needs to run.
pub struct TaskDeployment {
    /// Names the subtask in logs and errors, e.g. `wordcount/count (2/4)`.
    pub label: String,
    /// Subtask index.
    pub subtask: u32,
    /// Parallelism of its vertex.
    pub parallelism: u32,
    /// Key groups of the job.
    pub max_parallelism: u32,
    /// Input.
    pub head: Head,
    /// Chained guest operators, in order; may be empty.
    pub operators: Vec<OperatorStep>,
    /// Output.
    pub tail: Tail,
    /// The sandbox and the job's component, if there are operators.
    pub wasm: Option<(Runtime, JobComponent)>,
    /// Arguments of the job, given to `plan` and `open`.
    pub args: Vec<(String, String)>,
    /// The subtask's keyed state, if an operator is keyed.
    pub state: Option<TaskState>,
    /// Memory budget of each keyed operator's value cache.
    pub cache_bytes: usize,
    /// The job's cancel flag.
    pub cancel: Cancel,
    /// Where the subtask publishes its progress.
    pub counters: Arc<TaskCounters>,
}

/// Live record counts of a running subtask, read by metrics while it runs.
#[derive(Debug, Default)]
pub struct TaskCounters {
    /// Records that entered the subtask so far.
    pub records_in: AtomicU64,
    /// Records that left it so far.
    pub records_out: AtomicU64,
}

/// Runs a subtask to its end on the calling thread.
pub fn run_task(d: TaskDeployment) -> Result<TaskStats, TaskError> {
    let started = Instant::now();
    let TaskDeployment { label, subtask, parallelism, max_parallelism, head, operators, mut tail, wasm, args, state, cache_bytes, cancel, counters } =
        d;
    let mut chain = match (&wasm, operators.is_empty()) {
        (_, true) => None,
        (Some((runtime, component)), false) => {
            let mut instance = Instance::new(runtime, component, &label)?;
            let fail = |name: &str| {
                let name = name.to_string();
                move |failure| TaskError::Operator { name, failure }
            };
            // Rebuild the guest's operator registry: `plan` is deterministic.
            instance.plan(&args, runtime.limits().plan_fuel).map_err(fail("plan"))?;
            let info = TaskInfo { subtask, parallelism, max_parallelism };
            for step in &operators {
                instance.open(step.op, info, &args).map_err(fail(&step.name))?;
            }
            Some(Chain::new(instance, operators, state, cache_bytes)?)
        }
        (None, false) => return Err(TaskError::Internal("operators deployed without a component".into())),
    };
    let mut stats = TaskStats::default();
    let mut deliver = |records: &[u8], count: usize, stats: &mut TaskStats| -> Result<(), TaskError> {
        let out;
        let (records, count) = match chain.as_mut() {
            Some(c) => {
                out = c.run(records)?;
                (out.records(), out.count)
            }
            None => (records, count),
        };
        stats.records_out += count as u64;
        counters.records_out.fetch_add(count as u64, Ordering::Relaxed);
        match &mut tail {
            Tail::Sink(s) => s.write(records),
            Tail::Routers(rs) => rs.iter_mut().try_for_each(|r| r.push(records, count, &cancel)),
        }
    };
    match head {
        Head::Source(mut src) => {
            let mut buf = Vec::with_capacity(exchange::BATCH_BYTES * 2);
            while let Some(n) = src.next_batch(&mut buf)? {
                if cancel.is_cancelled() {
                    return Err(TaskError::Cancelled);
                }
                stats.records_in += n as u64;
                counters.records_in.fetch_add(n as u64, Ordering::Relaxed);
                deliver(&buf, n, &mut stats)?;
                buf.clear();
            }
        }
        Head::Input { rx, producers } => {
            let mut ended = 0;
            while ended < producers {
                match exchange::recv(&rx, &cancel)? {
                    Message::Batch(b, n) => {
                        stats.records_in += n as u64;
                        counters.records_in.fetch_add(n as u64, Ordering::Relaxed);
                        deliver(&b, n, &mut stats)?;
                    }
                    Message::End => ended += 1,
                    Message::Failed(why) => return Err(TaskError::Exchange(why)),
                    Message::Abandoned => return Err(TaskError::Cancelled),
                }
            }
        }
    }
    if let Some(c) = chain.as_mut() {
        c.finish()?;
        stats.fuel = c.fuel_used();
    }
    match &mut tail {
        Tail::Sink(s) => s.finish()?,
        Tail::Routers(rs) => rs.iter_mut().try_for_each(|r| r.finish(&cancel))?,
    }
    stats.elapsed = started.elapsed();
    Ok(stats)
}
