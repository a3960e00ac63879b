//! A JobManager and one TaskManager with N slots in one process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use thiserror::Error;
use weir_checkpoint::{DirStorage, JobCheckpoints};
use weir_state::{StateError, StateStore};
use weir_taskmanager::{Report, Reporter, TaskError, TaskManager};
use weir_types::deployment::{CheckpointConfig, JobCode, JobDeployment, JobReport, JobStatus, SinkFiles, TaskOutcome, place};
use weir_types::graph::ExecutionGraph;
use weir_types::manifest::{Manifest, ManifestError};
use weir_types::plan::{JobPlan, PlanError};
use weir_wasm::{Instance, JobComponent, Limits, LoadError, OperatorFailure, Runtime, World};

use crate::coordinator::{AckOutcome, Coordinator};
use crate::tracker::JobTracker;

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

/// What a job is built from.
#[derive(Debug, Clone)]
pub enum JobSource {
    /// One job component (world `job-component`): its `plan` declares the graph.
    Component(Arc<Vec<u8>>),
    /// A job manifest (TOML) naming one component per operator, with the bytes of
    /// each component under the name the manifest uses for it.
    Manifest {
        /// The manifest's text.
        text: String,
        /// Component bytes by name.
        components: HashMap<String, Arc<Vec<u8>>>,
    },
}

impl Default for JobSource {
    fn default() -> Self {
        JobSource::Component(Arc::default())
    }
}

/// A job to run.
#[derive(Debug, Clone, Default)]
pub struct JobSpec {
    /// Its code.
    pub source: JobSource,
    /// Default parallelism of its nodes.
    pub parallelism: u32,
    /// Arguments for `plan` and `open`.
    pub args: Vec<(String, String)>,
    /// Binds file sources that leave their path to the submitter.
    pub input: Option<PathBuf>,
    /// Binds file sinks that leave their path to the submitter.
    pub output: Option<PathBuf>,
    /// Checkpointing, if wanted.
    pub checkpoints: Option<CheckpointConfig>,
}

/// Why a job did not run to its end.
#[derive(Debug, Error)]
pub enum JobError {
    /// The component was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A component of a manifest was refused; names it.
    #[error("component {name:?}: {error}")]
    Component {
        /// The manifest's name for it.
        name: String,
        /// Why.
        error: LoadError,
    },
    /// The job manifest was refused.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
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
    /// Keyed state could not be opened.
    #[error(transparent)]
    State(#[from] StateError),
    /// The subtasks could not be set up (sources, sinks, state, threads).
    #[error("cannot deploy the job: {0}")]
    Deploy(#[from] TaskError),
    /// A subtask failed (the message names it); the job was cancelled.
    #[error("subtask {0}")]
    Failed(String),
    /// The job was cancelled.
    #[error("the job was cancelled")]
    Cancelled,
}

/// The embedded cluster: its sandbox, its state store and its slots.
#[derive(Clone)]
pub struct EmbeddedCluster {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    tm: TaskManager,
    config: ClusterConfig,
    free_slots: Mutex<u32>,
}

impl EmbeddedCluster {
    /// Starts the cluster: the engine and the state database.
    pub fn new(config: ClusterConfig) -> Result<Self, JobError> {
        let runtime = Runtime::new(config.limits.clone(), config.cache_dir.clone())?;
        let state = StateStore::open(&config.state_dir)?;
        let tm = TaskManager::new(runtime.clone(), state, config.cache_bytes, None);
        let free_slots = Mutex::new(config.slots);
        Ok(Self { inner: Arc::new(Inner { runtime, tm, config, free_slots }) })
    }

    /// The sandbox, for callers that inspect components.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Loads a job's components and returns its plan, as submission does, without
    /// running it.
    pub fn plan(&self, source: &JobSource, args: &[(String, String)]) -> Result<PlannedCode, JobError> {
        load_plan(&self.inner.runtime, source, args)
    }

    /// Checks, plans and deploys a job; its subtasks run on their own threads.
    pub fn submit(&self, spec: JobSpec) -> Result<JobHandle, JobError> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let (code, graph) = prepare(&self.inner.runtime, &spec.source, &spec.args, spec.parallelism, path(&spec.input), path(&spec.output))?;
        let PlannedCode { plan, code, components } = code;
        let needed = graph.slots_needed();
        let slots = SlotLease::acquire(&self.inner, needed)?;
        let placement = place(&graph, &[needed]).ok_or_else(|| JobError::Deploy(TaskError::Internal("placement failed".into())))?;
        let deployment = JobDeployment {
            job: new_job_id(),
            plan,
            graph,
            args: spec.args,
            code,
            placement,
            taskmanagers: vec![],
            sink_files: SinkFiles::Shared,
            attempt: 0,
            checkpoints: spec.checkpoints,
            restore: None,
        };
        let (tx, reports) = crossbeam_channel::unbounded();
        // The handle may be gone if the caller stopped waiting.
        let report: Reporter = Arc::new(move |r| drop(tx.send(r)));
        let components: Vec<JobComponent> = components.into_iter().map(|(c, _)| c).collect();
        let prepared = self.inner.tm.prepare(&deployment, 0, &components, report)?;
        let now = Instant::now();
        let mut tracker = JobTracker::new(&deployment.job, &deployment.plan.name, deployment.graph.clone(), deployment.placement.clone(), now);
        let checkpoints = match &deployment.checkpoints {
            Some(c) => {
                let storage = DirStorage::new(&c.dir).map_err(|e| JobError::Deploy(TaskError::Checkpoint(e.to_string())))?;
                let store = JobCheckpoints::new(Arc::new(storage), &deployment.job);
                let coordinator = Coordinator::new(Duration::from_millis(c.interval_ms), 1, deployment.task_count(), now);
                Some((coordinator, store, c.retain))
            }
            None => None,
        };
        let tasks = prepared.len();
        prepared.start()?;
        tracker.running();
        tracing::info!(job = %deployment.job, name = %deployment.plan.name, tasks, slots = needed, "job deployed");
        Ok(JobHandle { tm: self.inner.tm.clone(), deployment, tracker, reports, checkpoints, last_checkpoint: None, _slots: slots })
    }
}

/// A job's plan and its loaded code.
pub struct PlannedCode {
    /// The plan (not yet bound to inputs and outputs, nor validated).
    pub plan: JobPlan,
    /// Which component runs each operator.
    pub code: JobCode,
    /// The components, by index in `code`, with their bytes.
    pub components: Vec<(JobComponent, Arc<Vec<u8>>)>,
}

/// Loads a job's components and gets its plan: from the job component's `plan`, or
/// from the manifest, whose components must each implement `operator-component`.
pub fn load_plan(runtime: &Runtime, source: &JobSource, args: &[(String, String)]) -> Result<PlannedCode, JobError> {
    match source {
        JobSource::Component(wasm) => {
            let component = runtime.load(wasm, World::Job)?;
            let mut instance = Instance::new(runtime, &component, "plan")?;
            let plan = instance.plan(args, runtime.limits().plan_fuel).map_err(JobError::PlanCall)?;
            plan.check_size()?;
            let code = JobCode::single(&component.hash, &plan);
            Ok(PlannedCode { plan, code, components: vec![(component, wasm.clone())] })
        }
        JobSource::Manifest { text, components: files } => {
            let lowered = Manifest::parse(text)?.lower()?;
            lowered.plan.check_size()?;
            let mut components = Vec::with_capacity(lowered.components.len());
            for name in &lowered.components {
                let bytes = files
                    .get(name)
                    .ok_or_else(|| JobError::Component { name: name.clone(), error: LoadError::Invalid("not supplied with the manifest".into()) })?;
                let component = runtime.load(bytes, World::Operator).map_err(|error| JobError::Component { name: name.clone(), error })?;
                components.push((component, bytes.clone()));
            }
            let code = JobCode { components: components.iter().map(|(c, _)| c.hash.clone()).collect(), operators: lowered.operators };
            Ok(PlannedCode { plan: lowered.plan, code, components })
        }
    }
}

/// Loads, plans and checks a job: what every submission path does first.
pub fn prepare(
    runtime: &Runtime,
    source: &JobSource,
    args: &[(String, String)],
    parallelism: u32,
    input: Option<String>,
    output: Option<String>,
) -> Result<(PlannedCode, ExecutionGraph), JobError> {
    let mut planned = load_plan(runtime, source, args)?;
    planned.plan.bind_io(input.as_deref(), output.as_deref())?;
    planned.plan.validate(parallelism)?;
    let graph = ExecutionGraph::build(&planned.plan, parallelism);
    Ok((planned, graph))
}

/// A new job id: unique across processes and restarts.
pub fn new_job_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", nanos ^ (u64::from(std::process::id()) << 40) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
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

/// A running job.
pub struct JobHandle {
    tm: TaskManager,
    deployment: JobDeployment,
    tracker: JobTracker,
    reports: Receiver<Report>,
    checkpoints: Option<(Coordinator, JobCheckpoints, u32)>,
    last_checkpoint: Option<u64>,
    _slots: SlotLease,
}

/// How often a waiting handle looks for a due checkpoint.
const TICK: Duration = Duration::from_millis(10);

impl JobHandle {
    /// The job's id.
    pub fn id(&self) -> &str {
        self.tracker.id()
    }

    /// The job's execution graph.
    pub fn graph(&self) -> &ExecutionGraph {
        &self.deployment.graph
    }

    /// Cancels every subtask of the job.
    pub fn cancel(&mut self) {
        if self.tracker.cancel(Instant::now()) {
            self.tm.cancel(&self.deployment.run_id());
        }
    }

    /// Waits until every subtask has ended, checkpointing meanwhile if enabled. The
    /// first failure cancels the rest and is the job's error.
    pub fn wait(mut self) -> Result<JobReport, JobError> {
        let run = self.deployment.run_id();
        while !self.tracker.is_done() {
            let now = Instant::now();
            match self.reports.recv_timeout(TICK) {
                Ok(Report::Ended(end)) => {
                    if let TaskOutcome::Finished(stats) = &end.outcome {
                        let last = stats.last_checkpoint;
                        self.progress(|c, d| c.finished(d, end.vertex, end.subtask, last));
                    }
                    if self.tracker.ended(end.vertex, end.subtask, end.outcome, now) {
                        self.tm.cancel(&run);
                    }
                }
                Ok(Report::Snapshot(ack)) => self.progress(|c, d| c.ack(d, ack.checkpoint, ack.vertex, ack.task, now)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if let Some((c, _, _)) = self.checkpoints.as_mut() {
                if let Some(id) = c.expire(now) {
                    tracing::warn!(job = %run, checkpoint = id, "checkpoint abandoned: not all subtasks acknowledged in time");
                }
                if let Some(id) = c.due(now) {
                    self.tm.trigger_checkpoint(&run, id, false);
                }
            }
        }
        let mut report = self.tracker.report(Instant::now());
        report.last_checkpoint = self.last_checkpoint;
        match report.status {
            JobStatus::Finished => Ok(report),
            JobStatus::Canceled => Err(JobError::Cancelled),
            _ => Err(JobError::Failed(report.error.unwrap_or_else(|| "the job did not finish".into()))),
        }
    }

    /// Tells the coordinator of progress; writes out a checkpoint that completed.
    fn progress(&mut self, progress: impl FnOnce(&mut Coordinator, &JobDeployment) -> AckOutcome) {
        let Some((c, store, retain)) = self.checkpoints.as_mut() else { return };
        match progress(c, &self.deployment) {
            AckOutcome::Waiting => {}
            AckOutcome::Failed(id, e) => tracing::warn!(checkpoint = id, "checkpoint failed: {e}"),
            AckOutcome::Complete(meta) => {
                let id = meta.id;
                let done = store.complete(&meta).and_then(|()| store.retain(*retain as usize).map_err(Into::into));
                match done {
                    Ok(()) => {
                        self.last_checkpoint = Some(id);
                        self.tm.checkpoint_completed(&self.deployment.run_id(), id);
                    }
                    Err(e) => tracing::error!(checkpoint = id, "cannot complete the checkpoint: {e}"),
                }
            }
        }
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        // A handle dropped before its job ended must not leave subtasks running unobserved.
        if !self.tracker.is_done() {
            self.tm.cancel(&self.deployment.run_id());
        }
    }
}
