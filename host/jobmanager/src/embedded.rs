//! A JobManager and one TaskManager with N slots in one process: `weir run`. A job's
//! life is the same [`Driver`] the `weir jobmanager` service drives; here its commands
//! are carried out in-process, on the one TaskManager, and a failure is final.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use weir_checkpoint::{DirStorage, JobCheckpoints};
use weir_state::StateStore;
use weir_taskmanager::{PreparedJob, Report, Reporter, TaskManager};
use weir_types::deployment::{CheckpointConfig, JobDeployment, JobReport, JobStatus, SinkFiles, place};
use weir_types::graph::ExecutionGraph;
use weir_types::ids::{JobId, TaskManagerId};
use weir_wasm::{JobComponent, Limits, Runtime};

use crate::driver::{Command, Driver, Event, Placement};
use crate::model::EventLevel;
use crate::planning::{JobError, JobSource, PlannedCode, Submitter, load_plan, new_job_id, prepare};
use crate::restart::RestartStrategy;

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
        load_plan(&self.inner.runtime, source, args, weir_types::access::Capabilities::ALL)
    }

    /// Checks, plans and deploys a job; its subtasks run on their own threads.
    pub fn submit(&self, spec: JobSpec) -> Result<JobHandle, JobError> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let (code, graph) =
            prepare(&self.inner.runtime, &spec.source, &spec.args, spec.parallelism, path(&spec.input), path(&spec.output), Submitter::ADMIN)?;
        let PlannedCode { plan, code, components } = code;
        // Embedded, a failure ends the run: no restart to outlive.
        let interval = spec.checkpoints.as_ref().map(|c| std::time::Duration::from_millis(c.interval_ms));
        crate::planning::check_checkpointing(&plan, interval, std::time::Duration::ZERO)?;
        let needed = graph.slots_needed();
        let slots = SlotLease::acquire(&self.inner, needed)?;
        // The lease guarantees `needed` slots, which is all `place` asks for.
        let placement = place(&graph, &[needed]).ok_or(JobError::NoSlots { needed, free: needed, total: self.inner.config.slots })?;
        let deployment = JobDeployment {
            job: new_job_id(),
            plan,
            graph,
            args: spec.args,
            code,
            placement: vec![],
            taskmanagers: vec![],
            sink_files: SinkFiles::Shared,
            attempt: 0,
            checkpoints: spec.checkpoints,
            restore: None,
            files: weir_types::access::FileAccess::Any,
            // A local user's own job, run with their own rights.
            capabilities: weir_types::access::Capabilities::ALL,
        };
        let store = match &deployment.checkpoints {
            Some(c) => {
                let storage = DirStorage::new(&c.dir).map_err(|source| JobError::CheckpointStorage { dir: c.dir.clone(), source })?;
                Some((JobCheckpoints::new(Arc::new(storage), &deployment.job), c.retain))
            }
            None => None,
        };
        let (tx, reports) = crossbeam_channel::unbounded();
        // The handle may be gone if the caller stopped waiting.
        let report: Reporter = Arc::new(move |r| drop(tx.send(r)));
        let (job, name, tasks) = (deployment.job.clone(), deployment.plan.name.clone(), deployment.task_count());
        let mut handle = JobHandle {
            tm: self.inner.tm.clone(),
            driver: Driver::new(deployment, RestartStrategy::None, 1, Instant::now()),
            reports,
            report,
            components: components.into_iter().map(|(c, _)| c).collect(),
            store,
            prepared: None,
            _slots: slots,
        };
        // One TaskManager (index 0) holds every slot: deploying prepares and starts.
        let tm = TaskManagerId::new(0);
        handle.feed(Event::Placed(Placement { tms: vec![tm], addrs: vec![], placement, slots: vec![(tm, needed)] }))?;
        tracing::info!(%job, %name, tasks, slots = needed, "job deployed");
        Ok(handle)
    }
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
    driver: Driver,
    reports: Receiver<Report>,
    report: Reporter,
    components: Vec<JobComponent>,
    store: Option<(JobCheckpoints, u32)>,
    prepared: Option<PreparedJob>,
    _slots: SlotLease,
}

/// How often a waiting handle looks for a due checkpoint.
const TICK: Duration = Duration::from_millis(10);

impl JobHandle {
    /// The job's id.
    pub fn id(&self) -> &JobId {
        &self.driver.deployment().job
    }

    /// The job's execution graph.
    pub fn graph(&self) -> &ExecutionGraph {
        &self.driver.deployment().graph
    }

    /// Cancels every subtask of the job.
    pub fn cancel(&mut self) {
        // Cancelling runs no fallible command.
        let _ = self.feed(Event::Cancel);
    }

    /// Waits until every subtask has ended, checkpointing meanwhile if enabled. The
    /// first failure cancels the rest and is the job's error.
    pub fn wait(self) -> Result<JobReport, JobError> {
        self.wait_or_cancel(&std::sync::atomic::AtomicBool::new(false))
    }

    /// [`Self::wait`], cancelling the job once `cancel` is set (a signal handler sets
    /// it): the job ends [`JobError::Cancelled`] after its subtasks stopped.
    pub fn wait_or_cancel(mut self, cancel: &std::sync::atomic::AtomicBool) -> Result<JobReport, JobError> {
        let mut cancelled = false;
        while !self.driver.is_ended() {
            if !cancelled && cancel.load(std::sync::atomic::Ordering::Relaxed) {
                cancelled = true;
                self.cancel();
                continue;
            }
            let event = match self.reports.recv_timeout(TICK) {
                Ok(Report::Ended(end)) => Event::TaskEnded(end),
                Ok(Report::Snapshot(ack)) => Event::Ack(ack),
                Ok(Report::EndOfInput(end)) => Event::EndOfInput(end),
                Err(RecvTimeoutError::Timeout) => Event::Tick,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.feed(event)?;
        }
        let report = self.driver.report(Instant::now());
        match report.status {
            JobStatus::Finished => Ok(report),
            JobStatus::Canceled => Err(JobError::Cancelled),
            _ => Err(JobError::Failed(report.error.clone().unwrap_or_else(|| "the job did not finish".into()))),
        }
    }

    /// Feeds the driver and carries out its commands on the one TaskManager.
    fn feed(&mut self, event: Event) -> Result<(), JobError> {
        let mut events = std::collections::VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            for command in self.driver.on(event, Instant::now()) {
                match command {
                    Command::Deploy { deployment, .. } => {
                        self.prepared = Some(self.tm.prepare(&deployment, 0, &self.components, self.report.clone())?);
                        events.push_back(Event::Prepared { run: deployment.run_id(), tm: TaskManagerId::new(0) });
                    }
                    Command::Start { .. } => {
                        if let Some(p) = self.prepared.take() {
                            p.start()?;
                        }
                    }
                    Command::Cancel { run, .. } => self.tm.cancel(&run),
                    Command::Trigger { run, id, stop, .. } => self.tm.trigger_checkpoint(&run, id, stop),
                    Command::Complete { run, meta } => {
                        let result = match &self.store {
                            Some((store, retain)) => store
                                .complete(&meta)
                                .and_then(|()| store.retain(*retain as usize).map_err(Into::into))
                                .map(|()| store.written_bytes(&meta))
                                .map_err(|e| e.to_string()),
                            None => Err("the job has no checkpoint storage".into()),
                        };
                        events.push_back(Event::Completed { run, meta, result });
                    }
                    Command::Announce { run, id, .. } => self.tm.checkpoint_completed(&run, id),
                    // The failure that ends the job is what `wait` returns (and the
                    // CLI prints once); the driver's account of it is only a detail.
                    Command::Log(EventLevel::Error, message) if self.driver.is_ended() => {
                        tracing::debug!(job = %self.driver.deployment().job, "{message}")
                    }
                    Command::Log(EventLevel::Info, message) => tracing::info!(job = %self.driver.deployment().job, "{message}"),
                    Command::Log(EventLevel::Warn, message) => tracing::warn!(job = %self.driver.deployment().job, "{message}"),
                    Command::Log(EventLevel::Error, message) => tracing::error!(job = %self.driver.deployment().job, "{message}"),
                    // One attempt, no savepoints, nothing persisted; the slots go back
                    // with the handle.
                    Command::FindRestore
                    | Command::Place
                    | Command::Export { .. }
                    | Command::Reply { .. }
                    | Command::Release(_)
                    | Command::Persist
                    | Command::Checkpoint { .. }
                    | Command::AbandonCheckpoints(_)
                    | Command::Skipped { .. }
                    // Nothing asks an embedded job for a live swap.
                    | Command::Swap { .. }
                    | Command::SwapAbort { .. }
                    | Command::SwapCommitted { .. }
                    | Command::Ended => {}
                }
            }
        }
        Ok(())
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        // A handle dropped before its job ended must not leave subtasks running unobserved.
        if !self.driver.is_ended() {
            self.tm.cancel(&self.driver.run());
        }
    }
}
