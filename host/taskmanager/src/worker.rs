//! One TaskManager: turns its share of a [`JobDeployment`] into subtasks, wires their
//! channels (in memory to local subtasks, over the [`DataPlane`] to remote ones), runs
//! them, and reports each subtask's end. The embedded cluster and the `weir
//! taskmanager` process both run jobs through this.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crossbeam_channel::{Receiver, Sender};
use weir_state::StateStore;
use weir_types::access::FileAccess;
use weir_types::deployment::{JobDeployment, SinkFiles, TaskEnd, TaskOutcome, TaskProgress};
use weir_types::ids::RunId;
use weir_types::keygroup::key_group_range;
use weir_types::plan::{NodeKind, SinkKind, SourceKind};
use weir_wasm::{JobComponent, OpRef, Runtime, Sandbox};

use crate::cancel::Cancel;
use crate::chain::OperatorStep;
use crate::channel::{self, Message};
use crate::checkpoint::{CheckpointAck, EndOfInput, JobCheckpointing, Restore};
use crate::dataplane::DataPlane;
use crate::error::{Bug, DeploymentFault, SinkError, SourceError, TaskError};
use crate::exchange::{Inputs, Router, Target};
use crate::sink::{Commit, Commits, PgCommits, SharedWriter, Sink, Transactional, pg_error, recover_output};
use crate::source::{FileLines, Generator, Kafka, Source};
use crate::task::{Head, SwapTo, Tail, TaskCounters, TaskDeployment, run_task};
use crate::throttle::{Throttle, Throttles};
use crate::wiring::{self, Input, Link, Subtask};
use weir_checkpoint::Split;
use weir_connectors::postgres::{self, PgSink};

/// A TaskManager's executor: the sandbox, the state store and the running jobs.
#[derive(Clone)]
pub struct TaskManager {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    state: StateStore,
    cache_bytes: usize,
    data: Option<DataPlane>,
    jobs: Mutex<HashMap<RunId, RunningJob>>,
    /// This process's own files (credentials, state): no job reaches them, whatever
    /// its grant says.
    own_files: OnceLock<Vec<PathBuf>>,
    /// Tenants' fuel rates here, as the JobManager shares them out.
    throttles: Arc<Throttles>,
}

struct RunningJob {
    cancel: Cancel,
    counters: Vec<(u32, u32, Arc<TaskCounters>)>,
    checkpoints: JobCheckpointing,
    /// Transactional sinks' pending epochs, committed when a checkpoint completes.
    commits: Vec<Arc<dyn Commit>>,
}

/// What a TaskManager tells whoever runs it (the JobManager, or the embedded cluster).
#[derive(Debug)]
pub enum Report {
    /// A subtask ended.
    Ended(TaskEnd),
    /// A subtask's snapshot was persisted (or failed to be).
    Snapshot(CheckpointAck),
    /// A subtask processed the end of its input and waits for the final checkpoint.
    EndOfInput(EndOfInput),
}

/// Where reports go.
pub type Reporter = Arc<dyn Fn(Report) + Send + Sync>;

/// A job's subtasks on this TaskManager, wired but not yet started.
pub struct PreparedJob {
    tm: TaskManager,
    run: RunId,
    tasks: Vec<(u32, u32, TaskDeployment)>,
    report: Reporter,
}

impl TaskManager {
    /// A TaskManager; `data` is needed only for jobs spanning several TaskManagers.
    pub fn new(runtime: Runtime, state: StateStore, cache_bytes: usize, data: Option<DataPlane>) -> Self {
        Self {
            inner: Arc::new(Inner {
                runtime,
                state,
                cache_bytes,
                data,
                jobs: Mutex::new(HashMap::new()),
                own_files: OnceLock::new(),
                throttles: Arc::default(),
            }),
        }
    }

    /// Marks this process's own files (absolute) out of every job's reach; set once,
    /// before the first job.
    pub fn deny_own_files(&self, own: Vec<PathBuf>) {
        let _ = self.inner.own_files.set(own);
    }

    /// Tenants' fuel rates on this TaskManager: the JobManager sets the shares, the
    /// metrics read each tenant's throttled time.
    pub fn throttles(&self) -> &Throttles {
        &self.inner.throttles
    }

    /// The sandbox.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    fn lock_jobs(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, RunningJob>> {
        // Single inserts and removals; a panicking holder leaves the map consistent.
        self.inner.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Builds the subtasks that `d` places on TaskManager number `me`.
    /// `components` are the job's components, by their index in `d.code`.
    pub fn prepare(&self, d: &JobDeployment, me: u32, components: &[JobComponent], report: Reporter) -> Result<PreparedJob, TaskError> {
        let plan = &d.plan;
        let graph = &d.graph;
        let max_parallelism = plan.max_parallelism();
        let run = d.run_id();
        let keyspace = keyspace(&run);
        let cancel = Cancel::default();
        let internal = |fault: DeploymentFault| TaskError::from(Bug::Deployment { job: d.job.clone(), fault });
        let addr = |tm: u32| -> Result<SocketAddr, TaskError> {
            let a = d.taskmanagers.get(tm as usize).ok_or_else(|| internal(DeploymentFault::UnknownTaskManager(tm)))?;
            a.parse().map_err(|source| internal(DeploymentFault::BadAddress { address: a.clone(), source }))
        };
        let wiring = wiring::plan(d, me).map_err(internal)?;
        if components.len() != d.code.components.len() || components.iter().zip(&d.code.components).any(|(c, h)| *h != c.hash.as_str()) {
            return Err(internal(DeploymentFault::ComponentMismatch));
        }
        let data = || self.inner.data.as_ref().ok_or_else(|| internal(DeploymentFault::NoDataPlane));

        // Every input gets its channel now; remote producers reach theirs through the
        // data plane, local ones pick up the sender when their routers are built.
        let mut local: HashMap<Link, Sender<Message>> = HashMap::new();
        let mut receivers: HashMap<Subtask, (Vec<Receiver<Message>>, Vec<u32>)> = HashMap::new();
        for w in &wiring.subtasks {
            let mut rxs = Vec::with_capacity(w.inputs.len());
            for input in &w.inputs {
                let (tx, rx) = channel::channel();
                rxs.push(rx);
                match input {
                    Input::Local(link) => {
                        local.insert(*link, tx);
                    }
                    Input::Remote(id) => data()?.register_input(id.clone(), tx, cancel.clone()),
                }
            }
            receivers.insert(w.subtask, (rxs, w.input_of.clone()));
        }
        let (acks, ends) = (report.clone(), report.clone());
        let checkpoints =
            JobCheckpointing::new(d, Arc::new(move |ack| acks(Report::Snapshot(ack))), Arc::new(move |end| ends(Report::EndOfInput(end))))?;
        // The deployment's grant, checked again here with this process's own files
        // added: a TaskManager never opens a path only the JobManager checked.
        let files = d.files.deny(self.inner.own_files.get().into_iter().flatten().cloned());
        let restore = Restore::open(d, &files)?;
        let mut commits = Vec::new();
        let mut sinks = open_sinks(d, me, &files, &mut commits, restore.as_ref())?;

        let mut tasks = Vec::new();
        let mut counters = Vec::new();
        for w in wiring.subtasks {
            let (v, s) = (w.subtask.vertex, w.subtask.index);
            let vertex = &graph.vertices[v];
            let mut operators = Vec::new();
            for &n in &vertex.nodes {
                let NodeKind::Operator { keyed, ref side_outputs, state_ttl_ms } = plan.nodes[n].kind else { continue };
                let side_outputs = side_outputs.clone();
                let code = d.code.operator(n).ok_or_else(|| internal(DeploymentFault::NoCode { uid: plan.nodes[n].uid.clone() }))?;
                let mut args = d.args.clone();
                for (k, v) in &code.args {
                    args.retain(|(key, _)| key != k);
                    args.push((k.clone(), v.clone()));
                }
                let op = OpRef { guest: code.op, state: n as u32 };
                let watermarks = plan.nodes[n].watermarks;
                let two_inputs = plan.is_two_input(n);
                operators.push(OperatorStep {
                    two_inputs,
                    broadcast_input: plan.has_broadcast_input(n),
                    op,
                    component: code.component,
                    name: plan.nodes[n].name.clone(),
                    uid: plan.nodes[n].uid.clone(),
                    restored_version: restore.as_ref().and_then(|r| r.state_version(&plan.nodes[n].uid)),
                    keyed,
                    args,
                    watermarks,
                    side_outputs,
                    state_ttl_ms,
                });
            }
            let uid = &plan.nodes[vertex.nodes[0]].uid;
            let key_groups = key_group_range(s, max_parallelism, vertex.parallelism);
            let head = match &plan.nodes[vertex.nodes[0]].kind {
                NodeKind::Source(kind) => {
                    let resumed = match (&restore, kind) {
                        (Some(r), SourceKind::Connector(_)) => r.all_source_splits(uid)?,
                        (Some(r), _) => r.source(uid, s, vertex.parallelism)?,
                        (None, _) => None,
                    };
                    Head::Source(open_source(kind, uid, &files, s, vertex.parallelism, resumed)?)
                }
                _ => {
                    let (rxs, input_of) = receivers.remove(&w.subtask).ok_or_else(|| internal(DeploymentFault::InputsMissing))?;
                    Head::Input(Inputs::new(rxs).feeding(input_of))
                }
            };
            let last = *vertex.nodes.last().ok_or_else(|| internal(DeploymentFault::EmptyVertex))?;
            let transactional = match sinks.get(&(last, s)) {
                Some(Sink::Transactional(_)) => true,
                Some(Sink::Postgres(_)) => d.checkpoints.is_some(),
                _ => false,
            };
            let tail = match &plan.nodes[last].kind {
                NodeKind::Sink(_) => Tail::Sink(sinks.remove(&(last, s)).unwrap_or(Sink::Discard)),
                _ => {
                    let mut routers = Vec::with_capacity(w.outputs.len());
                    for out in w.outputs {
                        let mut targets = Vec::with_capacity(out.targets.len());
                        for target in out.targets {
                            targets.push(match target {
                                wiring::Target::Local(link) => {
                                    Target::Local(local.remove(&link).ok_or_else(|| internal(DeploymentFault::LocalChannelMissing))?)
                                }
                                wiring::Target::Remote { taskmanager, channel } => Target::Remote(data()?.remote(addr(taskmanager)?, channel)),
                            });
                        }
                        routers.push(Router::new(out.partitioning, targets, max_parallelism).for_side_output(out.side_output));
                    }
                    Tail::Routers(routers)
                }
            };
            let state = match operators.iter().any(|o| o.keyed) {
                true => {
                    let mut state = self.inner.state.task(&keyspace, max_parallelism, key_groups.clone())?;
                    if d.checkpoints.is_some() {
                        state = state.track_changes();
                    }
                    if let Some(r) = &restore {
                        state.restore(&r.state(uid, key_groups.clone())?)?;
                    }
                    Some(state)
                }
                false => None,
            };
            let task_counters = Arc::new(TaskCounters::new(&operators));
            counters.push((v as u32, s, task_counters.clone()));
            let deployment = TaskDeployment {
                label: format!("{} ({}/{})", vertex.name, s + 1, vertex.parallelism),
                subtask: s,
                parallelism: vertex.parallelism,
                max_parallelism,
                wasm: (!operators.is_empty()).then(|| (self.inner.runtime.clone(), components.to_vec())),
                sandbox: Sandbox::new(d.capabilities, &format!("{}/{v}/{s}", plan.name)),
                head,
                watermarks: plan.nodes[vertex.nodes[0]].watermarks,
                operators,
                tail,
                args: d.args.clone(),
                state,
                cache_bytes: self.inner.cache_bytes,
                cancel: cancel.clone(),
                counters: task_counters,
                checkpointing: checkpoints.task(v as u32, s, key_groups, transactional),
                clock: crate::clock::system(),
                throttle: Throttle::new(self.inner.throttles.clone(), d.job.clone()),
            };
            tasks.push((v as u32, s, deployment));
        }
        self.lock_jobs().insert(run.clone(), RunningJob { cancel, counters, checkpoints, commits });
        Ok(PreparedJob { tm: self.clone(), run, tasks, report })
    }

    /// Asks the sources of job run `run` to inject the barrier of checkpoint `id`.
    pub fn trigger_checkpoint(&self, run: &RunId, id: u64, stop: bool) {
        if let Some(j) = self.lock_jobs().get(run) {
            // Before the request: a source that sees the request must see the stop.
            if stop {
                j.checkpoints.stop_at.store(id, Ordering::Release);
            }
            j.checkpoints.requested.fetch_max(id, Ordering::AcqRel);
        }
    }

    /// Arms a live swap of job run `run`: its subtasks switch to `to`'s components
    /// after their snapshot for checkpoint `to.at`. False if the run is not here.
    pub fn arm_swap(&self, run: &RunId, to: SwapTo) -> bool {
        let jobs = self.lock_jobs();
        let Some(j) = jobs.get(run) else { return false };
        *j.checkpoints.swap.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(to));
        true
    }

    /// Drops a live swap of `run` not yet reached (another TaskManager could not
    /// load the new code). Subtasks that passed its barrier already keep the new code:
    /// the JobManager aborts only before it triggers that checkpoint.
    pub fn disarm_swap(&self, run: &RunId) {
        if let Some(j) = self.lock_jobs().get(run) {
            *j.checkpoints.swap.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Checkpoint `id` of job run `run` is complete: later snapshots may build on it.
    pub fn checkpoint_completed(&self, run: &RunId, id: u64) {
        if let Some(j) = self.lock_jobs().get(run) {
            for c in &j.commits {
                match c.commit(id) {
                    Ok(()) => {}
                    Err(e @ TaskError::Superseded(_)) => tracing::warn!(job = %run, checkpoint = id, "{e}"),
                    // The files stay pending; a restore commits them.
                    Err(e) => tracing::error!(job = %run, checkpoint = id, "cannot commit sink output: {e}"),
                }
            }
            // After the commits: a subtask waiting for its final checkpoint finishes
            // when it sees this, and the job may end right after.
            j.checkpoints.completed.fetch_max(id, Ordering::AcqRel);
        }
    }

    /// Cancels this TaskManager's subtasks of job run `run`; they report `Cancelled`.
    pub fn cancel(&self, run: &RunId) {
        if let Some(j) = self.lock_jobs().get(run) {
            j.cancel.cancel();
        }
    }

    /// Progress of every running subtask.
    pub fn progress(&self) -> Vec<TaskProgress> {
        let jobs = self.lock_jobs();
        let mut out = Vec::new();
        for (run, j) in jobs.iter() {
            for (vertex, subtask, c) in &j.counters {
                out.push(TaskProgress {
                    run: run.clone(),
                    vertex: *vertex,
                    subtask: *subtask,
                    records_in: c.records_in.load(Ordering::Relaxed),
                    records_in_by_input: c.records_in_by_input(),
                    records_out: c.records_out.load(Ordering::Relaxed),
                    fuel: c.fuel.load(Ordering::Relaxed),
                    backpressured_ns: c.backpressured_ns.load(Ordering::Relaxed),
                    throttled_ns: c.throttled_ns.load(Ordering::Relaxed),
                    watermark: c.watermark(),
                    side_outputs: c.side_outputs(),
                    source_lag: c.source_lag.lock().unwrap_or_else(PoisonError::into_inner).clone(),
                });
            }
        }
        out
    }

    /// Forgets a job run whose local subtasks all ended: its inputs and its keyed state.
    fn release(&self, run: &RunId) {
        self.lock_jobs().remove(run);
        if let Some(data) = &self.inner.data {
            data.unregister_run(run);
        }
        if let Err(e) = self.inner.state.drop_job(&keyspace(run)) {
            tracing::warn!(job = %run, "could not drop the job's state: {e}");
        }
    }

    /// The job runs with subtasks here.
    pub fn running_jobs(&self) -> Vec<RunId> {
        self.lock_jobs().keys().cloned().collect()
    }

    /// Forgets a job run that was prepared but will not start.
    pub fn discard(&self, run: &RunId) {
        self.release(run);
    }
}

fn keyspace(run: &RunId) -> String {
    format!("job-{run}")
}

impl PreparedJob {
    /// The job run prepared.
    pub fn run(&self) -> &RunId {
        &self.run
    }

    /// The prepared subtasks, as (vertex, subtask).
    pub fn subtasks(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.tasks.iter().map(|(v, s, _)| (*v, *s))
    }

    /// Number of subtasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True if the job has no subtask here.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Starts every subtask on its own thread; `on_end` hears of each one's end. The
    /// last to end releases the job's resources before reporting.
    pub fn start(self) -> Result<(), TaskError> {
        let report = self.report.clone();
        let on_end = Arc::new(move |end| report(Report::Ended(end)));
        let left = Arc::new(AtomicUsize::new(self.tasks.len()));
        let cancel = self.tm.lock_jobs().get(&self.run).map(|j| j.cancel.clone()).unwrap_or_default();
        for (vertex, subtask, deployment) in self.tasks {
            let (tm, run, on_end, left) = (self.tm.clone(), self.run.clone(), on_end.clone(), left.clone());
            let label = deployment.label.clone();
            let spawned = std::thread::Builder::new().name(format!("weir-task-{vertex}-{subtask}")).spawn(move || {
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_task(deployment))).unwrap_or_else(|_| Err(Bug::Panicked.into()));
                let outcome = match result {
                    Ok(stats) => TaskOutcome::Finished(stats),
                    Err(TaskError::Cancelled) => TaskOutcome::Cancelled,
                    Err(e) => {
                        // Not cancelling the local subtasks here: they would report
                        // their cancellation before this failure, hiding the cause.
                        // The JobManager cancels everything once it hears of it.
                        tracing::info!(job = %run, task = %label, "subtask failed: {e}");
                        TaskOutcome::Failed(format!("{label}: {e}"))
                    }
                };
                if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    tm.release(&run);
                }
                on_end(TaskEnd { run, vertex, subtask, outcome });
            });
            if let Err(e) = spawned {
                cancel.cancel();
                return Err(Bug::Spawn(e).into());
            }
        }
        Ok(())
    }
}

fn open_source(
    kind: &SourceKind,
    uid: &str,
    files: &FileAccess,
    subtask: u32,
    parallelism: u32,
    resume: Option<Vec<Split>>,
) -> Result<Box<dyn Source>, SourceError> {
    Ok(match (kind, resume) {
        (SourceKind::Generator { records_per_ms, .. }, Some(splits)) => Box::new(Generator::resume(&splits, *records_per_ms)?),
        (SourceKind::Generator { start, count, records_per_ms }, None) => {
            Box::new(Generator::new(*start, *count, subtask, parallelism, *records_per_ms))
        }
        (SourceKind::FileLines(Some(path)) | SourceKind::TextLines(Some(path)), resume) => {
            let raw = matches!(kind, SourceKind::TextLines(_));
            let path = files.resolve(&format!("file source {uid:?}"), path)?;
            let lines = match resume {
                Some(splits) => FileLines::resume(path, &splits)?,
                None => FileLines::open(path, subtask, parallelism)?,
            };
            Box::new(lines.raw(raw))
        }
        (SourceKind::FileLines(None) | SourceKind::TextLines(None), _) => return Err(SourceError::NoPath),
        (SourceKind::Connector(c), resume) if c.kind == "kafka" => Box::new(Kafka::open(c, subtask, parallelism, resume.as_deref())?),
        (SourceKind::Connector(c), _) => return Err(weir_connectors::ConnectorError::NotRunnable { kind: c.kind.clone() }.into()),
    })
}

/// The sinks of the local subtasks, by (node, subtask). Files are created here, before
/// any subtask runs; a checkpointed job's part files are transactional, and what
/// earlier attempts left in their directory is settled first. Under a grant (a
/// cluster) a sink creates its files exclusively: it never writes into a file this
/// job did not create.
fn open_sinks(
    d: &JobDeployment,
    me: u32,
    files: &FileAccess,
    commits: &mut Vec<Arc<dyn Commit>>,
    restore: Option<&Restore>,
) -> Result<HashMap<(usize, u32), Sink>, TaskError> {
    let restored = restore.map_or(0, Restore::id);
    let mut sinks = HashMap::new();
    let mut shared: HashMap<usize, SharedWriter> = HashMap::new();
    let mut settled = std::collections::HashSet::new();
    let mut pg: HashMap<usize, Arc<PgSink>> = HashMap::new();
    for (v, s) in d.subtasks_on(me) {
        let Some(&last) = d.graph.vertices[v].nodes.last() else { continue };
        let path = match &d.plan.nodes[last].kind {
            NodeKind::Sink(SinkKind::Stdout | SinkKind::File(None)) => None,
            NodeKind::Sink(SinkKind::File(Some(path))) => {
                Some(files.resolve(&format!("file sink {:?}", d.plan.nodes[last].uid), path).map_err(SinkError::from)?)
            }
            NodeKind::Sink(SinkKind::Connector(c)) if c.kind == postgres::KIND => {
                let sink = match pg.get(&last) {
                    Some(sink) => sink.clone(),
                    None => {
                        let sink = Arc::new(open_postgres(d, &d.plan.nodes[last].uid, c, restore)?);
                        pg.insert(last, sink.clone());
                        sink
                    }
                };
                let transactional = d.checkpoints.is_some();
                if transactional {
                    commits.push(Arc::new(PgCommits::start(sink.clone(), s, d.run_id())?));
                }
                sinks.insert((last, s), Sink::Postgres(Box::new(sink.writer(s, restored, transactional))));
                continue;
            }
            NodeKind::Sink(SinkKind::Connector(c)) if c.kind == "kafka" => {
                let o = weir_connectors::kafka::sink_options(c).map_err(SinkError::from)?;
                if o.delivery != weir_connectors::kafka::Delivery::AtLeastOnce {
                    // Refused at submission by the broker probe or the checkpoint check.
                    return Err(SinkError::from(weir_connectors::ConnectorError::NotRunnable { kind: "kafka (exactly-once)".into() }).into());
                }
                let w = weir_connectors::kafka::KafkaWriter::open(&o).map_err(SinkError::from)?;
                sinks.insert((last, s), Sink::Kafka(Box::new(w)));
                continue;
            }
            NodeKind::Sink(SinkKind::Connector(c)) => {
                return Err(SinkError::from(weir_connectors::ConnectorError::NotRunnable { kind: c.kind.clone() }).into());
            }
            _ => continue,
        };
        let sink = match (path, d.sink_files) {
            (Some(dir), SinkFiles::PartPerSubtask) if d.checkpoints.is_some() => {
                let dir = dir.as_path();
                if settled.insert(last) {
                    let past = recover_output(dir, d.job.as_str(), d.attempt, restored, restore.and_then(Restore::sink_owner))?;
                    if !past.is_empty() {
                        tracing::warn!(
                            job = %d.run_id(),
                            "restored checkpoint {restored} is older than output already committed in {}: {} stay, their records are written again (at-least-once)",
                            dir.display(),
                            past.join(", ")
                        );
                    }
                }
                let c = Arc::new(Commits::default());
                commits.push(c.clone() as Arc<dyn Commit>);
                Sink::Transactional(Box::new(Transactional::open(dir.into(), d.job.as_str(), d.attempt, s, restored, c)?))
            }
            (Some(dir), SinkFiles::PartPerSubtask) => {
                let dir = dir.as_path();
                std::fs::create_dir_all(dir).map_err(|source| SinkError::CreateDir { path: dir.into(), source })?;
                Sink::text(part_writer(dir, d, s)?)
            }
            (path, _) => Sink::text(match shared.get(&last) {
                Some(w) => w.clone(),
                None => {
                    let w = match path {
                        Some(p) if files.confined() => new_file_writer(&p)?,
                        Some(p) => file_writer(&p)?,
                        None => Arc::new(Mutex::new(Box::new(std::io::stdout()) as Box<dyn Write + Send>)),
                    };
                    shared.insert(last, w.clone());
                    w
                }
            }),
        };
        sinks.insert((last, s), sink);
    }
    Ok(sinks)
}

/// Opens PostgreSQL sink `uid` for this attempt (connects, checks the table) and, with
/// checkpoints, settles what earlier attempts left (see `weir_connectors::postgres`).
fn open_postgres(d: &JobDeployment, uid: &str, c: &weir_types::plan::Connector, restore: Option<&Restore>) -> Result<PgSink, TaskError> {
    let opts = postgres::PgOptions::parse(c).map_err(SinkError::from)?;
    let sink = PgSink::open(&opts, d.job.as_str(), uid, d.attempt).map_err(pg_error)?;
    if d.checkpoints.is_some() {
        let restored = restore.map_or(0, Restore::id);
        // Only this job's staged epochs: another job's (a retained checkpoint continued
        // from) are keyed by that job and not taken over yet.
        let owner = restore.and_then(Restore::sink_owner).filter(|(job, _)| *job == d.job.as_str()).map(|(_, attempt)| attempt);
        let recovered = sink.recover(restored, owner).map_err(pg_error)?;
        if !recovered.applied.is_empty() {
            tracing::info!(job = %d.run_id(), sink = uid, "the restore of checkpoint {restored} applied staged epochs (subtask, epoch, rows) {:?}", recovered.applied);
        }
        if !recovered.past.is_empty() {
            tracing::warn!(
                job = %d.run_id(),
                sink = uid,
                "restored checkpoint {restored} is older than epochs {:?} already applied to {}: their records are written again (at-least-once)",
                recovered.past,
                sink.table()
            );
        }
    }
    Ok(sink)
}

fn file_writer(path: &Path) -> Result<SharedWriter, SinkError> {
    let f = std::fs::File::create(path).map_err(|source| SinkError::Open { path: path.into(), source })?;
    Ok(writer(f))
}

fn writer(f: std::fs::File) -> SharedWriter {
    Arc::new(Mutex::new(Box::new(std::io::BufWriter::with_capacity(256 * 1024, f))))
}

/// `path`, created by this call: an existing file (or symbolic link) is refused, never
/// truncated.
fn new_file_writer(path: &Path) -> Result<SharedWriter, SinkError> {
    match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(f) => Ok(writer(f)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(SinkError::Foreign { path: path.into() }),
        Err(source) => Err(SinkError::Open { path: path.into(), source }),
    }
}

/// Subtask `s`'s `part-<s>` of a job without checkpoints, created exclusively. A
/// restarted attempt writes it again from the start: it may truncate the file only
/// when the marker `.part-<s>.<job>` says this job created it, and the marker is
/// written only after an exclusive create, so a file the job found there is never
/// taken for its own.
fn part_writer(dir: &Path, d: &JobDeployment, s: u32) -> Result<SharedWriter, SinkError> {
    let (part, marker) = (dir.join(format!("part-{s}")), dir.join(format!(".part-{s}.{}", d.job)));
    if d.attempt > 0 && marker.exists() {
        return file_writer(&part);
    }
    let w = new_file_writer(&part)?;
    std::fs::write(&marker, b"").map_err(|source| SinkError::Io { path: marker, source })?;
    Ok(w)
}
