//! A JobManager and one TaskManager with N slots in one process.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use thiserror::Error;
use weir_state::{StateError, StateStore};
use weir_taskmanager::exchange::{self, Router};
use weir_taskmanager::sink::{SharedWriter, Sink};
use weir_taskmanager::source::{FileLines, Generator, Source};
use weir_taskmanager::{Cancel, Head, OperatorStep, Tail, TaskDeployment, TaskError, TaskStats, run_task};
use weir_types::keygroup::key_group_range;
use weir_types::plan::{JobPlan, NodeKind, PlanError, SinkKind, SourceKind};
use weir_wasm::{Instance, JobComponent, Limits, LoadError, OperatorFailure, Runtime};

use crate::graph::ExecutionGraph;

/// How the embedded cluster is set up.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Slots of the embedded TaskManager.
    pub slots: u32,
    /// Sandbox limits.
    pub limits: Limits,
    /// Where compiled components are cached across runs (`None`: memory only).
    pub cache_dir: Option<PathBuf>,
    /// Where keyed state lives on disk.
    pub state_dir: PathBuf,
    /// Memory budget of each keyed operator's value cache, per subtask.
    pub cache_bytes: usize,
}

/// A job to run.
#[derive(Debug, Clone, Default)]
pub struct JobSpec {
    /// The component's bytes.
    pub wasm: Vec<u8>,
    /// Default parallelism of its nodes.
    pub parallelism: u32,
    /// Arguments for `plan` and `open`.
    pub args: Vec<(String, String)>,
    /// Binds file sources that leave their path to the submitter.
    pub input: Option<PathBuf>,
    /// Binds file sinks that leave their path to the submitter.
    pub output: Option<PathBuf>,
}

/// Why a job did not run to its end.
#[derive(Debug, Error)]
pub enum JobError {
    /// The component was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The component's plan call failed.
    #[error("the job's plan failed: {0}")]
    PlanCall(OperatorFailure),
    /// The plan is not executable.
    #[error("invalid job plan: {0}")]
    Plan(#[from] PlanError),
    /// Not enough free slots.
    #[error("the job needs {needed} slots but only {free} of {total} are free")]
    NoSlots {
        /// Slots the job needs.
        needed: u32,
        /// Slots free now.
        free: u32,
        /// Slots of the cluster.
        total: u32,
    },
    /// A sink's file could not be created.
    #[error("cannot open output {path}: {source}")]
    Output {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Keyed state could not be set up.
    #[error(transparent)]
    State(#[from] StateError),
    /// A subtask failed; the job was cancelled.
    #[error("subtask {task} failed: {error}")]
    Task {
        /// The failed subtask.
        task: String,
        /// Its error.
        error: TaskError,
    },
    /// The job was cancelled.
    #[error("the job was cancelled")]
    Cancelled,
}

/// What a finished job did, per vertex.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Job id.
    pub id: String,
    /// Job name.
    pub name: String,
    /// Wall time from deployment to the last subtask's end.
    pub elapsed: Duration,
    /// One entry per vertex, in topological order.
    pub vertices: Vec<VertexReport>,
}

/// Totals of one vertex over its subtasks.
#[derive(Debug, Clone, Default)]
pub struct VertexReport {
    /// Chain name.
    pub name: String,
    /// Subtasks.
    pub parallelism: u32,
    /// Records in.
    pub records_in: u64,
    /// Records out.
    pub records_out: u64,
    /// Fuel burned.
    pub fuel: u64,
}

/// The embedded cluster: its sandbox, its state store and its slots.
#[derive(Clone)]
pub struct EmbeddedCluster {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    state: StateStore,
    config: ClusterConfig,
    free_slots: Mutex<u32>,
}

impl EmbeddedCluster {
    /// Starts the cluster: the engine and the state database.
    pub fn new(config: ClusterConfig) -> Result<Self, JobError> {
        let runtime = Runtime::new(config.limits.clone(), config.cache_dir.clone())?;
        let state = StateStore::open(&config.state_dir)?;
        let free_slots = Mutex::new(config.slots);
        Ok(Self { inner: Arc::new(Inner { runtime, state, config, free_slots }) })
    }

    /// The sandbox, for callers that inspect components.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Loads a component and returns its plan, as submission does, without running it.
    pub fn plan(&self, wasm: &[u8], args: &[(String, String)]) -> Result<(JobComponent, JobPlan), JobError> {
        let runtime = &self.inner.runtime;
        let component = runtime.load(wasm)?;
        let mut instance = Instance::new(runtime, &component, "plan")?;
        let plan = instance.plan(args, runtime.limits().plan_fuel).map_err(JobError::PlanCall)?;
        plan.check_size()?;
        Ok((component, plan))
    }

    /// Checks, plans and deploys a job; its subtasks run on their own threads.
    pub fn submit(&self, spec: JobSpec) -> Result<JobHandle, JobError> {
        let (component, mut plan) = self.plan(&spec.wasm, &spec.args)?;
        let path_str = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        plan.bind_io(path_str(&spec.input).as_deref(), path_str(&spec.output).as_deref())?;
        plan.validate(spec.parallelism)?;
        let graph = ExecutionGraph::build(&plan, spec.parallelism);
        let needed = graph.slots_needed();
        let slots = SlotLease::acquire(&self.inner, needed)?;
        let id = new_job_id();
        let keyspace = format!("job-{id}");
        let cancel = Cancel::default();
        let max_parallelism = plan.max_parallelism();

        // One bounded input channel per subtask of every vertex with inputs.
        let (senders, mut receivers): (Vec<Vec<_>>, Vec<Vec<_>>) = graph
            .vertices
            .iter()
            .map(|v| (0..v.parallelism).map(|_| exchange::channel()).map(|(t, r)| (t, Some(r))).unzip())
            .unzip();
        let writers = open_sinks(&plan)?;

        let (results_tx, results_rx) = crossbeam_channel::unbounded();
        let mut tasks = 0;
        for (vi, v) in graph.vertices.iter().enumerate() {
            let producers = v.producers(&graph);
            let operators: Vec<OperatorStep> = v
                .nodes
                .iter()
                .filter_map(|&n| match plan.nodes[n].kind {
                    NodeKind::Operator { keyed } => Some(OperatorStep { op: n as u32, name: plan.nodes[n].name.clone(), keyed }),
                    _ => None,
                })
                .collect();
            let keyed = operators.iter().any(|o| o.keyed);
            for s in 0..v.parallelism {
                let label = format!("{} ({}/{})", v.name, s + 1, v.parallelism);
                let head = match &plan.nodes[v.nodes[0]].kind {
                    NodeKind::Source(kind) => Head::Source(open_source(kind, s, v.parallelism)?),
                    _ => Head::Input {
                        rx: receivers[vi][s as usize].take().ok_or_else(|| internal("input channel used twice"))?,
                        producers,
                    },
                };
                let last = *v.nodes.last().ok_or_else(|| internal("empty vertex"))?;
                let tail = match &plan.nodes[last].kind {
                    NodeKind::Sink(_) => match writers.get(&last) {
                        Some(w) => Tail::Sink(Sink::text(w.clone())),
                        None => Tail::Sink(Sink::Discard),
                    },
                    _ => Tail::Routers(
                        v.outputs
                            .iter()
                            .map(|&(t, p)| {
                                let targets = match p {
                                    weir_types::plan::Partitioning::Forward => vec![senders[t][s as usize].clone()],
                                    _ => senders[t].clone(),
                                };
                                Router::new(p, targets, max_parallelism)
                            })
                            .collect(),
                    ),
                };
                let state = match keyed {
                    true => Some(self.inner.state.task(&keyspace, max_parallelism, key_group_range(s, max_parallelism, v.parallelism))?),
                    false => None,
                };
                let deployment = TaskDeployment {
                    label: label.clone(),
                    subtask: s,
                    parallelism: v.parallelism,
                    max_parallelism,
                    head,
                    operators: operators.clone(),
                    tail,
                    wasm: (!operators.is_empty()).then(|| (self.inner.runtime.clone(), component.clone())),
                    args: spec.args.clone(),
                    state,
                    cache_bytes: self.inner.config.cache_bytes,
                    cancel: cancel.clone(),
                };
                let tx = results_tx.clone();
                let cancel_on_panic = cancel.clone();
                std::thread::Builder::new()
                    .name(format!("weir-task-{vi}-{s}"))
                    .spawn(move || {
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_task(deployment)))
                            .unwrap_or_else(|_| Err(TaskError::Internal("the subtask thread panicked".into())));
                        if result.is_err() {
                            cancel_on_panic.cancel();
                        }
                        // The handle may be gone if the caller stopped waiting.
                        let _ = tx.send((vi, label, result));
                    })
                    .map_err(|e| internal(&format!("cannot spawn a task thread: {e}")))?;
                tasks += 1;
            }
        }
        // Our copies of the senders would keep consumers waiting forever.
        drop(senders);
        tracing::info!(job = %id, name = %plan.name, tasks, slots = needed, "job deployed");
        Ok(JobHandle {
            id,
            name: plan.name.clone(),
            graph,
            tasks,
            results: results_rx,
            cancel,
            started: Instant::now(),
            cleanup: Some(Cleanup { state: self.inner.state.clone(), keyspace, _slots: slots }),
        })
    }
}

fn internal(msg: &str) -> JobError {
    JobError::Task { task: "deployment".into(), error: TaskError::Internal(msg.to_string()) }
}

fn new_job_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", nanos ^ (u64::from(std::process::id()) << 40) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn open_source(kind: &SourceKind, subtask: u32, parallelism: u32) -> Result<Box<dyn Source>, JobError> {
    Ok(match kind {
        SourceKind::Generator { start, count } => Box::new(Generator::new(*start, *count, subtask, parallelism)),
        SourceKind::FileLines(Some(path)) => Box::new(FileLines::open(path.into(), subtask, parallelism).map_err(|error| JobError::Task { task: "source".into(), error })?),
        SourceKind::FileLines(None) => return Err(JobError::Plan(PlanError::Binding("a file source has no path".into()))),
    })
}

/// One shared writer per text sink node, created (truncated) at submission.
fn open_sinks(plan: &JobPlan) -> Result<std::collections::HashMap<usize, SharedWriter>, JobError> {
    let mut writers = std::collections::HashMap::new();
    for (i, n) in plan.nodes.iter().enumerate() {
        let w: Box<dyn Write + Send> = match &n.kind {
            NodeKind::Sink(SinkKind::Stdout | SinkKind::File(None)) => Box::new(std::io::stdout()),
            NodeKind::Sink(SinkKind::File(Some(path))) => {
                let f = std::fs::File::create(path).map_err(|source| JobError::Output { path: path.clone(), source })?;
                Box::new(std::io::BufWriter::with_capacity(256 * 1024, f))
            }
            _ => continue,
        };
        writers.insert(i, Arc::new(Mutex::new(w)));
    }
    Ok(writers)
}

/// Slots held by a running job, returned when the job's handle is done with them.
struct SlotLease {
    inner: Arc<Inner>,
    count: u32,
}

impl SlotLease {
    fn acquire(inner: &Arc<Inner>, needed: u32) -> Result<Self, JobError> {
        let mut free = inner.free_slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *free < needed {
            return Err(JobError::NoSlots { needed, free: *free, total: inner.config.slots });
        }
        *free -= needed;
        Ok(Self { inner: inner.clone(), count: needed })
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        *self.inner.free_slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += self.count;
    }
}

struct Cleanup {
    state: StateStore,
    keyspace: String,
    _slots: SlotLease,
}

/// A running job.
pub struct JobHandle {
    id: String,
    name: String,
    graph: ExecutionGraph,
    tasks: usize,
    results: Receiver<(usize, String, Result<TaskStats, TaskError>)>,
    cancel: Cancel,
    started: Instant,
    cleanup: Option<Cleanup>,
}

impl JobHandle {
    /// The job's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The job's execution graph.
    pub fn graph(&self) -> &ExecutionGraph {
        &self.graph
    }

    /// Cancels every subtask of the job.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits until every subtask has ended. The first real failure cancels the rest
    /// and is the job's error.
    pub fn wait(mut self) -> Result<JobReport, JobError> {
        let mut vertices: Vec<VertexReport> =
            self.graph.vertices.iter().map(|v| VertexReport { name: v.name.clone(), parallelism: v.parallelism, ..Default::default() }).collect();
        let mut failure: Option<JobError> = None;
        for _ in 0..self.tasks {
            let Ok((vi, task, result)) = self.results.recv() else { break };
            match result {
                Ok(stats) => {
                    let v = &mut vertices[vi];
                    v.records_in += stats.records_in;
                    v.records_out += stats.records_out;
                    v.fuel += stats.fuel;
                }
                Err(TaskError::Cancelled) => {
                    failure.get_or_insert(JobError::Cancelled);
                }
                Err(error) => {
                    self.cancel.cancel();
                    tracing::info!(job = %self.id, %task, "subtask failed: {error}");
                    if failure.as_ref().is_none_or(|f| matches!(f, JobError::Cancelled)) {
                        failure = Some(JobError::Task { task, error });
                    }
                }
            }
        }
        if let Some(c) = self.cleanup.take()
            && let Err(e) = c.state.drop_job(&c.keyspace)
        {
            tracing::warn!(job = %self.id, "could not drop the job's state: {e}");
        }
        match failure {
            Some(f) => Err(f),
            None => Ok(JobReport { id: self.id.clone(), name: self.name.clone(), elapsed: self.started.elapsed(), vertices }),
        }
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        // A handle dropped before `wait` must not leave subtasks running unobserved.
        if self.cleanup.is_some() {
            self.cancel.cancel();
        }
    }
}
