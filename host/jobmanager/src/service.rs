//! The `weir jobmanager` process: serves TaskManagers (registration, heartbeats,
//! deployment orders, subtask ends) and clients (status, submit, cancel).
//!
//! A submission is loaded and planned here, placed on free slots, then deployed in
//! two phases: every TaskManager involved prepares its subtasks (fetching the
//! component only if it lacks it) and wires its inputs; only when all are prepared
//! are they started, so no producer ever sends to a consumer that does not exist yet.
//! The first failure, a lost TaskManager or a user's cancel fans out as a cancel to
//! every TaskManager of the job.
//!
//! With checkpointing, a per-job [`Coordinator`] triggers barriers on an interval and
//! completes a checkpoint once every subtask acknowledged it, writing its metadata
//! last. A failed run restarts under the job's [`RestartStrategy`] from the newest
//! intact checkpoint (falling back past corrupted ones), as a new attempt, as soon as
//! enough slots are free.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use tokio::sync::{mpsc, oneshot};
use weir_checkpoint::{CheckpointStorage, DirStorage, JobCheckpoints, load_savepoint};
use weir_control::client::send_chunks;
use weir_control::protocol::{CheckpointAck, FromJobManager, Hello, TASKMANAGER_PREFIX, ToJobManager};
use weir_control::registry::Registry;
use weir_net::{CLOSE_LOST, CLOSE_PROTOCOL_ERROR, CLOSE_UNAUTHORIZED, Connection, Endpoint, FramedRecv, FramedSend};
use weir_taskmanager::checkpoint::savepoint_location;
use weir_types::deployment::{CheckpointConfig, JobDeployment, JobReport, JobStatus, RestoreFrom, SinkFiles, TaskOutcome, place};
use weir_types::resource::JobResource;
use weir_wasm::{Runtime, World};

use crate::api::{
    ApiError, Artifact, CHECKPOINTS_KEPT, CheckpointRecord, CheckpointStatus, EVENTS_KEPT, EventLevel, JobEvent, JobInfo, JobMetrics, SubmitSpec,
    push_bounded,
};
use crate::coordinator::{AckOutcome, Coordinator};
use crate::embedded::{JobSource, PlannedCode, new_job_id, prepare};
use crate::restart::RestartStrategy;
use crate::tracker::JobTracker;

/// How the JobManager watches its TaskManagers and keeps checkpoints.
#[derive(Debug, Clone)]
pub struct JobManagerConfig {
    /// A TaskManager silent for longer than this is lost.
    pub heartbeat_timeout: Duration,
    /// How often TaskManagers are told to send heartbeats.
    pub heartbeat_interval: Duration,
    /// Root of the checkpoint storage (shared with the TaskManagers); without it jobs
    /// cannot be checkpointed.
    pub checkpoint_dir: Option<String>,
    /// Completed checkpoints kept per job.
    pub retain: u32,
}

impl Default for JobManagerConfig {
    fn default() -> Self {
        Self { heartbeat_timeout: Duration::from_secs(3), heartbeat_interval: Duration::from_millis(500), checkpoint_dir: None, retain: 3 }
    }
}

/// How often the JobManager looks for due checkpoints and restarts.
const TICK: Duration = Duration::from_millis(20);

/// Ended jobs kept for status queries.
const HISTORY: usize = 1000;

/// What a TaskManager's connection handler is asked to send.
enum Order {
    Send(FromJobManager),
    /// A component of a job: a header and its chunks, never interleaved.
    Component {
        job: String,
        hash: String,
        bytes: Arc<Vec<u8>>,
    },
    /// The TaskManager was declared lost: close its connection, so a paused one that
    /// wakes up hears at once that its attempts are superseded.
    Lost,
}

pub(crate) struct Job {
    /// The current attempt's deployment.
    deployment: Box<JobDeployment>,
    pub(crate) tracker: JobTracker,
    /// Run id of the current attempt: what TaskManagers call the job.
    run: String,
    /// Registry ids of the TaskManagers in the deployment, by index.
    pub(crate) tms: Vec<u64>,
    /// Slots held, per registry id.
    slots: Vec<(u64, u32)>,
    /// TaskManagers that have not yet reported their share prepared.
    preparing: HashSet<u64>,
    /// The bytes of each component in `deployment.code`, by index.
    components: Vec<Arc<Vec<u8>>>,
    restart: RestartStrategy,
    failures: Vec<Instant>,
    /// Set while the job waits to run again: not before this instant.
    restart_at: Option<Instant>,
    pub(crate) restarts: u32,
    coordinator: Option<Coordinator>,
    checkpoints: Option<Arc<JobCheckpoints>>,
    pub(crate) last_checkpoint: Option<u64>,
    /// Checkpoints whose metadata is being written. A restart waits for them: it must
    /// see whether they completed, or it would restore an older one while their
    /// attempt's pending output counts as committed.
    completing: u32,
    /// Id of the first checkpoint (after a savepoint's, to keep epochs increasing).
    first_checkpoint: u64,
    /// What the job started from; a restart without any checkpoint goes back to it.
    initial_restore: Option<RestoreFrom>,
    savepoints: Vec<SavepointRequest>,
    /// Over for good: in the history.
    done: bool,
    /// The Job resource (seed 002) tracking this job's lifecycle.
    resource: JobResource,
    /// A user asked the job to stop.
    terminating: bool,
    /// Overrides the last attempt's status (a job cancelled between attempts).
    final_status: Option<JobStatus>,
    /// As submitted.
    pub(crate) spec: SubmitSpec,
    pub(crate) created: SystemTime,
    /// What happened to the job, for users (`weir logs`).
    pub(crate) events: VecDeque<JobEvent>,
    /// Recent checkpoints, oldest first.
    pub(crate) checkpoint_log: VecDeque<CheckpointRecord>,
    pub(crate) checkpoints_completed: u64,
    pub(crate) checkpoints_failed: u64,
}

impl Job {
    /// The job's report now, after bringing its Job resource up to date.
    fn report(&mut self, now: Instant) -> JobReport {
        let mut r = self.tracker.report(now);
        if self.restart_at.is_some() {
            r.status = JobStatus::Restarting;
        }
        if let Some(status) = self.final_status {
            r.status = status;
        }
        r.restarts = self.restarts;
        r.last_checkpoint = self.last_checkpoint;
        let status = if self.done {
            r.status
        } else if r.status.is_terminal() {
            JobStatus::Restarting
        } else {
            r.status
        };
        self.resource.observe(status, self.restarts, r.error.as_deref(), self.terminating, SystemTime::now());
        r.resource = Some(self.resource.clone());
        r
    }

    /// The job as users see it.
    pub(crate) fn info(&mut self, now: Instant) -> JobInfo {
        let report = self.report(now);
        JobInfo {
            id: report.id.clone(),
            name: report.name.clone(),
            created: self.created,
            spec: self.spec.clone(),
            resource: self.resource.clone(),
            report,
        }
    }

    /// The job as it ended, for the history.
    fn ended(&mut self, registry: &Registry) -> EndedJob {
        let info = self.info(Instant::now());
        let taskmanagers = self.tms.iter().map(|id| registry.name(*id).unwrap_or("?").to_string()).collect();
        let metrics =
            JobMetrics { status: self.tracker.status(), graph: self.tracker.graph().clone(), subtasks: self.tracker.subtasks(), taskmanagers };
        EndedJob {
            info,
            events: self.events.iter().cloned().collect(),
            checkpoints: self.checkpoint_log.iter().cloned().collect(),
            metrics,
            checkpoints_completed: self.checkpoints_completed,
            checkpoints_failed: self.checkpoints_failed,
        }
    }

    /// Records an event for users and logs it.
    fn event(&mut self, level: EventLevel, message: String) {
        let job = self.tracker.id();
        match level {
            EventLevel::Info => tracing::info!(%job, "{message}"),
            EventLevel::Warn => tracing::warn!(%job, "{message}"),
            EventLevel::Error => tracing::error!(%job, "{message}"),
        }
        push_bounded(&mut self.events, JobEvent { at: SystemTime::now(), level, message }, EVENTS_KEPT);
    }

    /// Updates (or adds) checkpoint `id` in the job's log.
    fn checkpoint_event(&mut self, id: u64, status: CheckpointStatus, size_bytes: Option<u64>, failure: Option<String>) {
        let now = SystemTime::now();
        match self.checkpoint_log.iter_mut().rev().find(|c| c.id == id) {
            Some(c) if c.status == CheckpointStatus::InProgress => {
                c.status = status;
                c.duration_ms = now.duration_since(c.triggered).ok().map(|d| d.as_millis() as u64);
                c.size_bytes = size_bytes;
                c.failure = failure;
            }
            Some(_) => return,
            None => push_bounded(
                &mut self.checkpoint_log,
                CheckpointRecord { id, status, triggered: now, duration_ms: None, size_bytes, failure },
                CHECKPOINTS_KEPT,
            ),
        }
        match status {
            CheckpointStatus::Completed => self.checkpoints_completed += 1,
            CheckpointStatus::Failed => self.checkpoints_failed += 1,
            CheckpointStatus::InProgress => {}
        }
    }

    /// Fails every checkpoint still in progress (its attempt ended).
    fn abandon_checkpoints(&mut self, why: &str) {
        let open: Vec<u64> = self.checkpoint_log.iter().filter(|c| c.status == CheckpointStatus::InProgress).map(|c| c.id).collect();
        for id in open {
            self.checkpoint_event(id, CheckpointStatus::Failed, None, Some(why.to_string()));
        }
    }

    fn send(&self, orders: &Orders, msg: impl Fn() -> FromJobManager) {
        for (id, _) in &self.slots {
            if let Some(o) = orders.get(id) {
                let _ = o.send(Order::Send(msg()));
            }
        }
    }
}

type Orders = HashMap<u64, mpsc::UnboundedSender<Order>>;

/// A client waiting for a savepoint: the first checkpoint with an id of at least
/// `from` is copied to `dir`.
struct SavepointRequest {
    from: u64,
    dir: String,
    stop: bool,
    reply: oneshot::Sender<Result<u64, String>>,
}

#[derive(Default)]
pub(crate) struct State {
    /// Order queues of connected TaskManagers. Unbounded but small: a handful of
    /// control orders per job, and components are shared, not copied.
    orders: Orders,
    /// Jobs that have not ended.
    pub(crate) jobs: Vec<Job>,
    /// Ended jobs, oldest first: the history users can still query.
    pub(crate) ended: VecDeque<EndedJob>,
}

/// What is kept of an ended job (and persisted, so history survives a JobManager
/// restart).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct EndedJob {
    pub(crate) info: JobInfo,
    pub(crate) events: Vec<JobEvent>,
    pub(crate) checkpoints: Vec<CheckpointRecord>,
    pub(crate) metrics: JobMetrics,
    pub(crate) checkpoints_completed: u64,
    pub(crate) checkpoints_failed: u64,
}

pub(crate) struct Shared {
    pub(crate) registry: Mutex<Registry>,
    pub(crate) state: Mutex<State>,
    /// Uploaded components by hash.
    pub(crate) artifacts: Mutex<HashMap<String, Artifact>>,
    pub(crate) runtime: Runtime,
    config: JobManagerConfig,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is completed under the lock before anything can panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running JobManager: TaskManagers reach it over QUIC ([`JobManager::serve`]),
/// users through the operations of [`crate::api`] (the REST API).
#[derive(Clone)]
pub struct JobManager(pub(crate) Arc<Shared>);

impl JobManager {
    /// Starts the JobManager's timers (checkpoints, restarts, lost TaskManagers) and
    /// resumes the jobs a previous JobManager left running. `runtime` loads and plans
    /// submitted components.
    pub async fn start(config: JobManagerConfig, runtime: Runtime) -> Self {
        let registry = Mutex::new(Registry::new(config.heartbeat_timeout));
        let shared = Arc::new(Shared { registry, state: Mutex::default(), artifacts: Mutex::default(), runtime, config: config.clone() });
        shared.recover_jobs().await;
        let ticker = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                ticker.tick().await;
            }
        });
        let reaper = shared.clone();
        tokio::spawn(async move {
            let tick = (config.heartbeat_timeout / 10).max(Duration::from_millis(20));
            loop {
                tokio::time::sleep(tick).await;
                let lost = lock(&reaper.registry).expire(Instant::now());
                for (id, name) in lost {
                    tracing::warn!(taskmanager = %name, timeout = ?config.heartbeat_timeout, "taskmanager lost: no heartbeat within the timeout");
                    if let Some(o) = lock(&reaper.state).orders.get(&id) {
                        let _ = o.send(Order::Lost);
                    }
                    reaper.taskmanager_gone(id, &name);
                }
            }
        });
        Self(shared)
    }

    /// Serves TaskManagers until the endpoint closes.
    pub async fn serve(&self, endpoint: Endpoint) {
        while let Some(conn) = endpoint.accept().await {
            let shared = self.0.clone();
            tokio::spawn(async move { handle(conn, shared).await });
        }
    }
}

async fn handle(conn: Connection, shared: Arc<Shared>) {
    let (tx, mut rx) = match conn.accept_control::<FromJobManager, ToJobManager>().await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(peer = %conn.peer_name(), "no control stream: {e}");
            return;
        }
    };
    match next(&conn, &mut rx).await {
        Some(ToJobManager::Hello(Hello::TaskManager { slots, data_addr })) => taskmanager(conn, tx, rx, shared, slots, data_addr).await,
        Some(other) => refuse(&conn, &format!("expected a hello, got {}", kind(&other))),
        None => {}
    }
}

impl Shared {
    /// Plans a job from `source`, places and deploys it; its id.
    pub(crate) async fn submit(&self, source: JobSource, spec: SubmitSpec, restart: RestartStrategy) -> Result<String, ApiError> {
        let runtime = self.runtime.clone();
        let args: Vec<(String, String)> = spec.args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let (parallelism, input, output) = (spec.parallelism, spec.input.clone(), spec.output.clone());
        let job_args = args.clone();
        let planned = tokio::task::spawn_blocking(move || prepare(&runtime, &source, &job_args, parallelism, input, output)).await;
        let (PlannedCode { plan, code, components }, graph) = match planned {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(ApiError::Unprocessable(e.to_string())),
            Err(e) => return Err(ApiError::Internal(format!("planning panicked: {e}"))),
        };
        let checkpoints = match (spec.checkpoint_interval_ms, &self.config.checkpoint_dir) {
            (None, _) => None,
            (Some(_), None) => return Err(ApiError::Conflict("checkpointing needs a jobmanager started with --checkpoint-dir".into())),
            (Some(ms), Some(dir)) => Some(CheckpointConfig { dir: dir.clone(), interval_ms: ms.max(10), retain: self.config.retain.max(1) }),
        };
        let job = new_job_id();
        let (initial_restore, first_checkpoint) = match &spec.from_savepoint {
            Some(dir) => {
                let location = savepoint_location(dir).map_err(ApiError::BadRequest)?;
                let loaded = tokio::task::spawn_blocking(move || {
                    let storage = DirStorage::new(location.0).map_err(|e| e.to_string())?;
                    load_savepoint(&storage, &location.1).map_err(|e| e.to_string())
                })
                .await;
                let meta = match loaded {
                    Ok(Ok(m)) => m,
                    Ok(Err(e)) => return Err(ApiError::BadRequest(format!("savepoint {dir:?}: {e}"))),
                    Err(e) => return Err(ApiError::Internal(format!("savepoint {dir:?}: {e}"))),
                };
                if meta.max_parallelism != plan.max_parallelism() {
                    return Err(ApiError::Unprocessable(format!(
                        "savepoint {dir} has {} key groups but the job has {}; max parallelism cannot change",
                        meta.max_parallelism,
                        plan.max_parallelism()
                    )));
                }
                (Some(RestoreFrom::Savepoint(dir.clone())), meta.id + 1)
            }
            None => (None, 1),
        };
        let store = match &checkpoints {
            Some(c) => {
                let storage = DirStorage::new(&c.dir).map_err(|e| ApiError::Internal(format!("checkpoint storage {}: {e}", c.dir)))?;
                Some(Arc::new(JobCheckpoints::new(Arc::new(storage), &job)))
            }
            None => None,
        };
        let deployment = Box::new(JobDeployment {
            job: job.clone(),
            plan,
            graph,
            args,
            code,
            placement: vec![],
            taskmanagers: vec![],
            sink_files: SinkFiles::PartPerSubtask,
            attempt: 0,
            checkpoints,
            restore: None,
        });
        let tracker = JobTracker::new(&job, &deployment.plan.name, deployment.graph.clone(), vec![], Instant::now());
        let mut j = Job {
            run: deployment.run_id(),
            deployment,
            tracker,
            tms: vec![],
            slots: vec![],
            preparing: HashSet::new(),
            components: components.into_iter().map(|(_, bytes)| bytes).collect(),
            restart,
            failures: vec![],
            restart_at: None,
            restarts: 0,
            coordinator: None,
            checkpoints: store,
            last_checkpoint: None,
            completing: 0,
            first_checkpoint,
            initial_restore: initial_restore.clone(),
            savepoints: vec![],
            done: false,
            resource: JobResource::new(SystemTime::now()),
            terminating: false,
            final_status: None,
            spec,
            created: SystemTime::now(),
            events: VecDeque::new(),
            checkpoint_log: VecDeque::new(),
            checkpoints_completed: 0,
            checkpoints_failed: 0,
        };
        let persisted = {
            let mut state = lock(&self.state);
            if let Err(free) = self.deploy(&mut j, &state.orders, initial_restore) {
                return Err(ApiError::Unavailable(format!("the job needs {} slots but only {free} are free", j.deployment.graph.slots_needed())));
            }
            let description = describe(&j.deployment, &j.tms, &self.registry);
            j.event(EventLevel::Info, format!("job {} submitted ({} subtasks):\n{description}", j.deployment.plan.name, j.deployment.task_count()));
            let persisted = self.persisted(&j, true);
            state.jobs.push(j);
            persisted
        };
        self.persist(persisted).await;
        Ok(job)
    }
}

fn describe(d: &JobDeployment, tms: &[u64], registry: &Mutex<Registry>) -> String {
    let registry = lock(registry);
    let mut out = String::new();
    for (v, subtasks) in d.graph.vertices.iter().zip(&d.placement) {
        let on: Vec<&str> = subtasks.iter().map(|&t| tms.get(t as usize).and_then(|id| registry.name(*id)).unwrap_or("?")).collect();
        out.push_str(&format!("  {} x{}: {}\n", v.name, v.parallelism, on.join(", ")));
    }
    out
}

/// What survives a JobManager restart of a job that has not ended: enough to run it
/// again from its latest checkpoint.
#[derive(Serialize, Deserialize)]
struct PersistedJob {
    deployment: JobDeployment,
    restart: RestartStrategy,
    initial_restore: Option<RestoreFrom>,
    first_checkpoint: u64,
    restarts: u32,
    spec: SubmitSpec,
    created: SystemTime,
}

/// Where jobs are persisted in the checkpoint storage.
const JOBS_DIR: &str = "_jobs";
/// Where ended jobs are persisted in the checkpoint storage.
const HISTORY_DIR: &str = "_history";

/// A job's persisted record, and its components when it is new.
struct Persist {
    job: String,
    record: Vec<u8>,
    components: Vec<Arc<Vec<u8>>>,
}

impl Shared {
    fn storage(&self) -> Option<DirStorage> {
        let dir = self.config.checkpoint_dir.as_ref()?;
        DirStorage::new(dir).map_err(|e| tracing::error!(dir, "checkpoint storage unusable: {e}")).ok()
    }

    /// The record of `j` to persist (with its components if `new`).
    fn persisted(&self, j: &Job, new: bool) -> Option<Persist> {
        self.config.checkpoint_dir.as_ref()?;
        let record = PersistedJob {
            deployment: (*j.deployment).clone(),
            restart: j.restart,
            initial_restore: j.initial_restore.clone(),
            first_checkpoint: j.first_checkpoint,
            restarts: j.restarts,
            spec: j.spec.clone(),
            created: j.created,
        };
        let record = postcard::to_allocvec(&record).map_err(|e| tracing::error!("cannot encode job {}: {e}", j.tracker.id())).ok()?;
        let components = if new { j.components.clone() } else { vec![] };
        Some(Persist { job: j.tracker.id().to_string(), record, components })
    }

    /// Writes a job's record durably (a JobManager that crashes later resumes it).
    async fn persist(&self, p: Option<Persist>) {
        let (Some(p), Some(storage)) = (p, self.storage()) else { return };
        let written = tokio::task::spawn_blocking(move || {
            for (i, c) in p.components.iter().enumerate() {
                storage.write(&format!("{JOBS_DIR}/{}/component-{i}.wasm", p.job), c)?;
            }
            storage.write(&format!("{JOBS_DIR}/{}/job", p.job), &p.record)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("cannot persist a job: {e}"),
            Err(e) => tracing::error!("persisting a job panicked: {e}"),
        }
    }

    /// Forgets an ended job's record.
    fn unpersist(&self, job: &str) {
        if let Some(storage) = self.storage()
            && let Err(e) = storage.delete(&format!("{JOBS_DIR}/{job}"))
        {
            tracing::warn!(job, "cannot delete the job's record: {e}");
        }
    }

    /// Picks up the jobs a previous JobManager left running: each restarts from its
    /// latest checkpoint as soon as TaskManagers offer enough slots.
    async fn recover_jobs(&self) {
        let Some(storage) = self.storage() else { return };
        let history = storage.clone();
        let ended = tokio::task::spawn_blocking(move || {
            let mut ended: Vec<EndedJob> = Vec::new();
            for job in history.list(HISTORY_DIR).unwrap_or_default() {
                match history
                    .read(&format!("{HISTORY_DIR}/{job}"))
                    .map_err(|e| e.to_string())
                    .and_then(|r| postcard::from_bytes(&r).map_err(|e| e.to_string()))
                {
                    Ok(e) => ended.push(e),
                    Err(e) => tracing::warn!(%job, "skipping an unreadable history record: {e}"),
                }
            }
            ended.sort_by_key(|e| e.info.created);
            ended
        })
        .await
        .unwrap_or_default();
        lock(&self.state).ended = ended.into();
        let runtime = self.runtime.clone();
        let found = tokio::task::spawn_blocking(move || {
            let mut jobs = Vec::new();
            for job in storage.list(JOBS_DIR).unwrap_or_default() {
                let read = |name: &str| storage.read(&format!("{JOBS_DIR}/{job}/{name}"));
                let loaded = read("job").map_err(|e| e.to_string()).and_then(|record| {
                    let record: PersistedJob = postcard::from_bytes(&record).map_err(|e| e.to_string())?;
                    let mut components = Vec::new();
                    for (i, hash) in record.deployment.code.components.iter().enumerate() {
                        let wasm = read(&format!("component-{i}.wasm")).map_err(|e| e.to_string())?;
                        let loaded = runtime.load(&wasm, World::Operator).map_err(|e| e.to_string())?;
                        if &loaded.hash != hash {
                            return Err(format!("component {i} is not the one the job was submitted with"));
                        }
                        components.push(Arc::new(wasm));
                    }
                    Ok((record, components))
                });
                match loaded {
                    Ok(j) => jobs.push(j),
                    Err(e) => tracing::error!(%job, "cannot resume the job: {e}"),
                }
            }
            jobs
        })
        .await
        .unwrap_or_default();
        let now = Instant::now();
        let mut state = lock(&self.state);
        for (record, components) in found {
            let d = record.deployment;
            if state.ended.iter().any(|e| e.info.id == d.job) {
                // Killed between writing its history and forgetting its running record.
                self.unpersist(&d.job);
                continue;
            }
            let store = d.checkpoints.as_ref().and_then(|c| DirStorage::new(&c.dir).ok()).map(|s| Arc::new(JobCheckpoints::new(Arc::new(s), &d.job)));
            tracing::info!(job = %d.job, attempt = d.attempt, "resuming a job of the previous jobmanager");
            state.jobs.push(Job {
                run: d.run_id(),
                tracker: JobTracker::new(&d.job, &d.plan.name, d.graph.clone(), vec![], now),
                deployment: Box::new(d),
                tms: vec![],
                slots: vec![],
                preparing: HashSet::new(),
                components,
                restart: record.restart,
                failures: vec![],
                restart_at: Some(now),
                restarts: record.restarts,
                coordinator: None,
                checkpoints: store,
                last_checkpoint: None,
                completing: 0,
                first_checkpoint: record.first_checkpoint,
                initial_restore: record.initial_restore,
                savepoints: vec![],
                done: false,
                resource: JobResource::new(SystemTime::now()),
                terminating: false,
                final_status: None,
                spec: record.spec,
                created: record.created,
                events: VecDeque::from([JobEvent {
                    at: SystemTime::now(),
                    level: EventLevel::Warn,
                    message: "resumed by a new jobmanager after the previous one was lost".into(),
                }]),
                checkpoint_log: VecDeque::new(),
                checkpoints_completed: 0,
                checkpoints_failed: 0,
            });
        }
    }

    /// Places and deploys the next attempt of `j` (restoring `restore`, a checkpoint
    /// metadata path); `Err(free slots)` if the job does not fit now.
    fn deploy(&self, j: &mut Job, orders: &Orders, restore: Option<RestoreFrom>) -> Result<(), u32> {
        let mut registry = lock(&self.registry);
        let free = registry.free();
        let counts: Vec<u32> = free.iter().map(|(_, n, _)| *n).collect();
        let placement = place(&j.deployment.graph, &counts).ok_or_else(|| counts.iter().sum::<u32>())?;
        let mut slots: Vec<(u64, u32)> = free.iter().map(|(id, _, _)| (*id, 0)).collect();
        if let Some(widest) = placement.iter().max_by_key(|p| p.len()) {
            for &tm in widest {
                slots[tm as usize].1 += 1;
            }
        }
        slots.retain(|(_, n)| *n > 0);
        for &(id, n) in &slots {
            registry.reserve(id, n);
        }
        drop(registry);
        let d = &mut j.deployment;
        if !j.tms.is_empty() || j.restart_at.is_some() {
            d.attempt += 1;
        }
        d.placement = placement;
        d.taskmanagers = free.iter().map(|(_, _, addr)| addr.clone()).collect();
        d.restore = restore;
        j.tms = free.iter().map(|(id, _, _)| *id).collect();
        j.run = d.run_id();
        j.preparing = slots.iter().map(|(id, _)| *id).collect();
        j.slots = slots;
        j.restart_at = None;
        j.tracker = JobTracker::new(&d.job, &d.plan.name, d.graph.clone(), d.placement.clone(), Instant::now());
        let now = Instant::now();
        j.coordinator = d.checkpoints.as_ref().map(|c| {
            let first = j.last_checkpoint.map_or(j.first_checkpoint, |id| id + 1);
            Coordinator::new(Duration::from_millis(c.interval_ms), first, d.task_count(), now)
        });
        for (me, id) in j.tms.iter().enumerate() {
            if j.preparing.contains(id)
                && let Some(o) = orders.get(id)
            {
                let _ = o.send(Order::Send(FromJobManager::Deploy { deployment: j.deployment.clone(), me: me as u32 }));
            }
        }
        Ok(())
    }

    pub(crate) fn cancel(&self, job: &str) -> bool {
        let mut state = lock(&self.state);
        let State { orders, jobs, .. } = &mut *state;
        let Some(j) = jobs.iter_mut().find(|j| j.tracker.id() == job && !j.done) else { return false };
        j.event(EventLevel::Info, "cancelling on request".into());
        j.restart = RestartStrategy::None;
        j.terminating = true;
        if j.restart_at.is_some() {
            // Nothing runs between attempts: the job ends here.
            j.restart_at = None;
            j.final_status = Some(JobStatus::Canceled);
            self.finish(j);
        } else if j.tracker.cancel(Instant::now()) {
            fan_out_cancel(orders, j);
        }
        j.report(Instant::now());
        self.retire(&mut state);
        true
    }

    /// Applies `f` to the current attempt of a running job (by run id), then handles
    /// the attempt's end if it is over.
    fn with_job(&self, run: &str, f: impl FnOnce(&mut Job, &Orders)) {
        let mut state = lock(&self.state);
        let State { orders, jobs, .. } = &mut *state;
        let Some(j) = jobs.iter_mut().find(|j| j.run == run && !j.done && j.restart_at.is_none()) else { return };
        f(j, orders);
        if j.tracker.is_done() {
            self.attempt_ended(j);
        }
        // Observed now, so the Job resource's transition times are the events' times.
        j.report(Instant::now());
        self.retire(&mut state);
    }

    /// Moves ended jobs into the history (persisted), keeping the newest [`HISTORY`].
    fn retire(&self, state: &mut State) {
        if !state.jobs.iter().any(|j| j.done) {
            return;
        }
        let registry = lock(&self.registry);
        let mut retired = Vec::new();
        state.jobs.retain_mut(|j| {
            if j.done {
                retired.push(j.ended(&registry));
            }
            !j.done
        });
        drop(registry);
        let mut forgotten = Vec::new();
        for e in retired {
            // History first, then forget the running record: a JobManager killed in
            // between finds the job in one of the two, never in neither.
            self.persist_history(&e);
            self.unpersist(&e.info.id);
            state.ended.push_back(e);
            if state.ended.len() > HISTORY
                && let Some(old) = state.ended.pop_front()
            {
                forgotten.push(old.info.id);
            }
        }
        if let Some(storage) = self.storage() {
            for id in forgotten {
                if let Err(e) = storage.delete(&format!("{HISTORY_DIR}/{id}")) {
                    tracing::warn!(job = %id, "cannot delete the job's history record: {e}");
                }
            }
        }
    }

    /// Writes an ended job's record before it is reported ended (a small file, once
    /// per job).
    fn persist_history(&self, e: &EndedJob) {
        let Some(storage) = self.storage() else { return };
        let id = e.info.id.clone();
        let record = match postcard::to_allocvec(e) {
            Ok(r) => r,
            Err(err) => return tracing::error!(job = %id, "cannot encode the job's history record: {err}"),
        };
        if let Err(err) = storage.write(&format!("{HISTORY_DIR}/{id}"), &record) {
            tracing::error!(job = %id, "cannot persist the job's history record: {err}");
        }
    }

    /// An attempt's subtasks all ended: give back its slots, then restart or finish.
    fn attempt_ended(&self, j: &mut Job) {
        let mut registry = lock(&self.registry);
        for &(id, n) in &j.slots {
            registry.release(id, n);
        }
        drop(registry);
        j.slots.clear();
        j.coordinator = None;
        j.abandon_checkpoints("the attempt ended");
        let now = Instant::now();
        if j.tracker.status() == JobStatus::Failed {
            j.failures.push(now);
            let error = j.tracker.report(now).error.unwrap_or_default();
            if let Some(delay) = j.restart.next_delay(&j.failures, now) {
                j.restarts += 1;
                j.restart_at = Some(now + delay);
                j.event(EventLevel::Warn, format!("attempt {} failed, restart {} in {delay:?}: {error}", j.deployment.attempt, j.restarts));
                return;
            }
            j.event(EventLevel::Error, format!("attempt {} failed and the restart strategy gives up: {error}", j.deployment.attempt));
        }
        self.finish(j);
    }

    fn finish(&self, j: &mut Job) {
        j.done = true;
        for r in j.savepoints.drain(..) {
            let _ = r.reply.send(Err("the job ended before the savepoint was taken".into()));
        }
        j.components = vec![];
        let report = j.report(Instant::now());
        let error = report.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
        let level = if report.status == JobStatus::Failed { EventLevel::Error } else { EventLevel::Info };
        j.event(level, format!("job ended {} ({}){error}", report.status.name(), j.resource.state.name()));
    }

    fn taskmanager_gone(&self, id: u64, name: &str) {
        let jobs: Vec<String> =
            lock(&self.state).jobs.iter().filter(|j| !j.done && j.restart_at.is_none() && j.tms.contains(&id)).map(|j| j.run.clone()).collect();
        for job in jobs {
            self.with_job(&job, |j, orders| {
                let Some(index) = j.tms.iter().position(|t| *t == id) else { return };
                if j.tracker.abandon(index as u32, &format!("taskmanager {name} was lost"), Instant::now()) {
                    fan_out_cancel(orders, j);
                }
            });
        }
        lock(&self.state).orders.remove(&id);
    }

    /// Periodic work: due checkpoints, stuck checkpoints, due restarts.
    async fn tick(&self) {
        let now = Instant::now();
        let mut restarts = Vec::new();
        {
            let mut state = lock(&self.state);
            let State { orders, jobs, .. } = &mut *state;
            for j in jobs.iter_mut().filter(|j| !j.done) {
                if j.restart_at.is_some_and(|t| t <= now) && j.completing == 0 {
                    restarts.push((j.tracker.id().to_string(), j.checkpoints.clone()));
                    continue;
                }
                if j.tracker.status() != JobStatus::Running {
                    continue;
                }
                let Some(c) = j.coordinator.as_mut() else { continue };
                let expired = c.expire(now);
                let due = c.due(now);
                let stop = c.stopping();
                if let Some(id) = expired {
                    j.event(EventLevel::Warn, format!("checkpoint {id} abandoned: not all subtasks acknowledged in time"));
                    j.checkpoint_event(id, CheckpointStatus::Failed, None, Some("not all subtasks acknowledged in time".into()));
                }
                if let Some(id) = due {
                    let run = j.run.clone();
                    j.send(orders, || FromJobManager::TriggerCheckpoint { job: run.clone(), id, stop });
                    j.checkpoint_event(id, CheckpointStatus::InProgress, None, None);
                }
            }
        }
        for (job, store) in restarts {
            // Finding the newest intact checkpoint reads and verifies files: off the lock.
            let latest = match store {
                Some(store) => {
                    let found = tokio::task::spawn_blocking(move || store.latest().map(|m| m.map(|m| (m.id, store.metadata_path(m.id))))).await;
                    match found {
                        Ok(Ok(latest)) => latest,
                        Ok(Err(e)) => {
                            tracing::error!(%job, "cannot read the job's checkpoints, restarting without state: {e}");
                            None
                        }
                        Err(e) => {
                            tracing::error!(%job, "checkpoint lookup panicked: {e}");
                            None
                        }
                    }
                }
                None => None,
            };
            let persist = {
                let mut state = lock(&self.state);
                let State { orders, jobs, .. } = &mut *state;
                let Some(j) = jobs.iter_mut().find(|j| j.tracker.id() == job && !j.done && j.restart_at.is_some()) else { continue };
                if let Some((id, _)) = latest {
                    j.last_checkpoint = Some(j.last_checkpoint.map_or(id, |l| l.max(id)));
                }
                let restore = latest.map(|(_, path)| RestoreFrom::Checkpoint(path)).or_else(|| j.initial_restore.clone());
                let described = restore.as_ref().map_or("nothing".to_string(), ToString::to_string);
                match self.deploy(j, orders, restore) {
                    Ok(()) => {
                        j.event(EventLevel::Info, format!("attempt {} deployed, restoring {described}", j.deployment.attempt));
                        // The attempt number must never repeat, also across JobManager restarts.
                        self.persisted(j, false)
                    }
                    // Not enough slots yet (a TaskManager is gone): try again next tick.
                    Err(_) => {
                        j.restart_at = Some(now + TICK);
                        None
                    }
                }
            };
            self.persist(persist).await;
        }
    }

    /// A subtask acknowledged a checkpoint; completes it when it was the last.
    async fn checkpoint_ack(&self, ack: CheckpointAck) {
        let now = Instant::now();
        self.checkpoint_progress(&ack.job, |c, d| c.ack(d, ack.checkpoint, ack.vertex, ack.task, now)).await;
    }

    /// A subtask finished: it may have been the last one a checkpoint waited for.
    async fn subtask_finished(&self, run: &str, vertex: u32, subtask: u32, last_checkpoint: u64) {
        self.checkpoint_progress(run, |c, d| c.finished(d, vertex, subtask, last_checkpoint)).await;
    }

    /// Tells job run `run`'s coordinator of progress; writes the checkpoint out and
    /// announces it when that completed it.
    async fn checkpoint_progress(&self, run: &str, progress: impl FnOnce(&mut Coordinator, &JobDeployment) -> AckOutcome) {
        let complete = {
            let mut state = lock(&self.state);
            let Some(j) = state.jobs.iter_mut().find(|j| j.run == run && !j.done && j.restart_at.is_none()) else {
                // The fence on the JobManager's side: a superseded attempt's
                // acknowledgements and ends never count.
                tracing::info!(%run, "ignoring checkpoint progress of an attempt that is not current");
                return;
            };
            let (Some(c), Some(store)) = (j.coordinator.as_mut(), j.checkpoints.clone()) else { return };
            match progress(c, &j.deployment) {
                AckOutcome::Waiting => return,
                AckOutcome::Failed(id, e) => {
                    j.event(EventLevel::Warn, format!("checkpoint {id} failed: {e}"));
                    j.checkpoint_event(id, CheckpointStatus::Failed, None, Some(e));
                    return;
                }
                AckOutcome::Complete(meta) => {
                    j.completing += 1;
                    (meta, store, j.deployment.checkpoints.as_ref().map_or(1, |c| c.retain))
                }
            }
        };
        let (meta, store, retain) = complete;
        let id = meta.id;
        let job_store = store.clone();
        let written = tokio::task::spawn_blocking(move || {
            store.complete(&meta)?;
            let size = store.written_bytes(&meta);
            store.retain(retain as usize).map_err(weir_checkpoint::CheckpointError::from)?;
            Ok::<_, weir_checkpoint::CheckpointError>((meta, size))
        })
        .await;
        if let Some(j) = lock(&self.state).jobs.iter_mut().find(|j| j.run == run) {
            j.completing -= 1;
        }
        let failed = |why: String| {
            let mut state = lock(&self.state);
            if let Some(j) = state.jobs.iter_mut().find(|j| j.run == run) {
                j.event(EventLevel::Error, format!("checkpoint {id} cannot be completed: {why}"));
                j.checkpoint_event(id, CheckpointStatus::Failed, None, Some(why));
            }
        };
        let (meta, size) = match written {
            Ok(Ok(written)) => written,
            Ok(Err(e)) => return failed(e.to_string()),
            Err(e) => return failed(format!("completing the checkpoint panicked: {e}")),
        };
        let (job, requests) = {
            let mut state = lock(&self.state);
            let State { orders, jobs, .. } = &mut *state;
            let Some(j) = jobs.iter_mut().find(|j| j.run == run && !j.done) else { return };
            j.last_checkpoint = Some(id);
            j.checkpoint_event(id, CheckpointStatus::Completed, Some(size), None);
            tracing::debug!(job = %j.tracker.id(), checkpoint = id, "checkpoint complete");
            let run = j.run.clone();
            j.send(orders, || FromJobManager::CheckpointComplete { job: run.clone(), id });
            let (due, later): (Vec<_>, Vec<_>) = j.savepoints.drain(..).partition(|r| r.from <= id);
            j.savepoints = later;
            (j.tracker.id().to_string(), due)
        };
        for r in requests {
            let (store, meta, dir) = (job_store.clone(), meta.clone(), r.dir.clone());
            let exported = tokio::task::spawn_blocking(move || {
                let (root, name) = savepoint_location(&dir)?;
                let target = DirStorage::new(root).map_err(|e| e.to_string())?;
                store.export(&meta, &target, &name).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("writing the savepoint panicked: {e}")));
            if exported.is_ok() {
                if let Some(j) = lock(&self.state).jobs.iter_mut().find(|j| j.tracker.id() == job) {
                    j.event(EventLevel::Info, format!("savepoint of checkpoint {id} written to {}{}", r.dir, if r.stop { "; stopping" } else { "" }));
                }
                if r.stop {
                    self.cancel(&job);
                }
            } else if r.stop
                && let Some(j) = lock(&self.state).jobs.iter_mut().find(|j| j.tracker.id() == job && !j.done)
            {
                j.event(EventLevel::Warn, format!("savepoint of checkpoint {id} could not be written to {}; the job goes on", r.dir));
                if let Some(c) = j.coordinator.as_mut() {
                    c.resume();
                }
            }
            let _ = r.reply.send(exported.map(|()| id));
        }
    }

    /// Asks for a savepoint of a running, checkpointed job; answers once written.
    pub(crate) fn savepoint(&self, job: &str, dir: String, stop: bool) -> oneshot::Receiver<Result<u64, String>> {
        let (reply, answer) = oneshot::channel();
        let mut state = lock(&self.state);
        let Some(j) = state.jobs.iter_mut().find(|j| j.tracker.id() == job && !j.done) else {
            let _ = reply.send(Err(format!("no running job {job}")));
            return answer;
        };
        match j.coordinator.as_mut() {
            Some(c) if j.restart_at.is_none() => {
                let from = c.force(stop);
                j.savepoints.push(SavepointRequest { from, dir, stop, reply });
            }
            _ => {
                let _ = reply.send(Err(format!("job {job} is not running with checkpoints (submit it with --checkpoint-interval)")));
            }
        }
        answer
    }
}

/// A TaskManager listening on every interface (`0.0.0.0:P`) cannot tell which of its
/// addresses peers reach. Its control connection comes from its data-plane socket, so
/// the address we see it at, with its port, is one they can dial (`--advertise` covers
/// NAT).
fn dialable(data_addr: &str, seen: std::net::SocketAddr) -> String {
    match data_addr.parse::<std::net::SocketAddr>() {
        Ok(mut a) if a.ip().is_unspecified() => {
            a.set_ip(seen.ip());
            a.to_string()
        }
        _ => data_addr.to_string(),
    }
}

fn fan_out_cancel(orders: &Orders, j: &Job) {
    j.send(orders, || FromJobManager::Cancel { job: j.run.clone() });
}

async fn taskmanager(
    conn: Connection,
    mut tx: FramedSend<FromJobManager>,
    mut rx: FramedRecv<ToJobManager>,
    shared: Arc<Shared>,
    slots: u32,
    data_addr: String,
) {
    let name = conn.peer_name().to_string();
    if !name.starts_with(TASKMANAGER_PREFIX) {
        tracing::warn!(peer = %name, "refused: only taskmanager certificates may offer slots");
        conn.close(CLOSE_UNAUTHORIZED, "only taskmanager certificates may offer slots");
        return;
    }
    let data_addr = dialable(&data_addr, conn.remote_addr());
    let id = lock(&shared.registry).register(&name, &conn.remote_addr().to_string(), &data_addr, slots, Instant::now());
    tracing::info!(taskmanager = %name, id, slots, %data_addr, "taskmanager registered");
    let heartbeat_ms = shared.config.heartbeat_interval.as_millis() as u64;
    if tx.send(&FromJobManager::Registered { id, heartbeat_ms }).await.is_err() {
        lock(&shared.registry).disconnect(id);
        return;
    }
    let (orders_tx, mut orders) = mpsc::unbounded_channel();
    lock(&shared.state).orders.insert(id, orders_tx);
    // Sending runs on its own task: a TaskManager that takes its time reading tens of
    // MB of components (it compiles each as it arrives) must not stop us from reading
    // its heartbeats.
    let mut writer = tokio::spawn(async move {
        while let Some(order) = orders.recv().await {
            let sent = match order {
                Order::Send(m) => tx.send(&m).await,
                Order::Component { job, hash, bytes } => match tx.send(&FromJobManager::Component { job, hash, size: bytes.len() as u64 }).await {
                    Ok(()) => send_chunks(&mut tx, &bytes, FromJobManager::ComponentChunk).await,
                    Err(e) => Err(e),
                },
                Order::Lost => break,
            };
            if sent.is_err() {
                break;
            }
        }
    });
    loop {
        tokio::select! {
            _ = &mut writer => break,
            msg = next(&conn, &mut rx) => match msg {
                Some(ToJobManager::CheckpointAck(ack)) => shared.checkpoint_ack(ack).await,
                Some(ToJobManager::TaskEnded(end)) => {
                    let finished = match &end.outcome {
                        TaskOutcome::Finished(stats) => Some((end.job.clone(), end.vertex, end.subtask, stats.last_checkpoint)),
                        _ => None,
                    };
                    if !from_taskmanager(&shared, &conn, id, ToJobManager::TaskEnded(end)) {
                        break;
                    }
                    if let Some((run, vertex, subtask, last)) = finished {
                        shared.subtask_finished(&run, vertex, subtask, last).await;
                    }
                }
                Some(m) => if !from_taskmanager(&shared, &conn, id, m) { break },
                None => break,
            },
        }
    }
    writer.abort();
    if lock(&shared.registry).disconnect(id) {
        tracing::warn!(taskmanager = %name, "taskmanager disconnected");
    } else {
        conn.close(CLOSE_LOST, "declared lost: silent past the heartbeat timeout; register again");
    }
    shared.taskmanager_gone(id, &name);
}

/// Handles one message from TaskManager `id`; false if the connection must end.
fn from_taskmanager(shared: &Shared, conn: &Connection, id: u64, msg: ToJobManager) -> bool {
    let now = Instant::now();
    match msg {
        ToJobManager::Heartbeat(progress) => {
            if !lock(&shared.registry).heartbeat(id, now) {
                tracing::warn!(peer = %conn.peer_name(), "closing the connection of a taskmanager declared lost");
                conn.close(CLOSE_LOST, "declared lost: silent past the heartbeat timeout; register again");
                return false;
            }
            let mut state = lock(&shared.state);
            for p in &progress {
                if let Some(j) = state.jobs.iter_mut().find(|j| j.run == p.job) {
                    j.tracker.progress(p, now);
                }
            }
        }
        ToJobManager::NeedComponents { job, hashes } => shared.with_job(&job, |j, orders| {
            let Some(o) = orders.get(&id) else { return };
            for hash in hashes {
                // An ended job has dropped its components' bytes.
                let position = j.deployment.code.components.iter().position(|h| *h == hash);
                let Some(bytes) = position.and_then(|i| j.components.get(i)).cloned() else {
                    tracing::warn!(%job, taskmanager = id, %hash, "a taskmanager asked for a component the job does not have (any more)");
                    continue;
                };
                tracing::info!(%job, taskmanager = id, %hash, bytes = bytes.len(), "shipping a component");
                let _ = o.send(Order::Component { job: job.clone(), hash, bytes });
            }
        }),
        ToJobManager::Prepared { job } => shared.with_job(&job, |j, orders| {
            j.preparing.remove(&id);
            if j.preparing.is_empty() && j.tracker.status() == JobStatus::Created {
                j.send(orders, || FromJobManager::Start { job: job.clone() });
                j.tracker.running();
                j.event(EventLevel::Info, format!("attempt {} running", j.deployment.attempt));
            }
        }),
        ToJobManager::PrepareFailed { job, error } => shared.with_job(&job, |j, orders| {
            let Some(index) = j.tms.iter().position(|t| *t == id) else { return };
            if j.tracker.abandon(index as u32, &error, now) {
                fan_out_cancel(orders, j);
            }
        }),
        ToJobManager::TaskEnded(end) => shared.with_job(&end.job.clone(), |j, orders| {
            if j.tracker.ended(end.vertex, end.subtask, end.outcome, now) {
                fan_out_cancel(orders, j);
            }
        }),
        other => {
            refuse(conn, &format!("unexpected {} from a taskmanager", kind(&other)));
            return false;
        }
    }
    true
}

/// The next message, or `None` at the end of the stream or after closing the
/// connection over a bad frame (logged).
async fn next(conn: &Connection, rx: &mut FramedRecv<ToJobManager>) -> Option<ToJobManager> {
    match rx.recv().await {
        Ok(m) => m,
        Err(e) => {
            if e.is_protocol_violation() {
                refuse(conn, &format!("bad frame: {e}"));
            }
            None
        }
    }
}

/// A message's kind, for logs: never its payload (a chunk is a megabyte).
fn kind(m: &ToJobManager) -> &'static str {
    match m {
        ToJobManager::Hello(_) => "hello",
        ToJobManager::Heartbeat(_) => "heartbeat",
        ToJobManager::NeedComponents { .. } => "component request",
        ToJobManager::Prepared { .. } => "prepared",
        ToJobManager::PrepareFailed { .. } => "prepare failure",
        ToJobManager::TaskEnded(_) => "task end",
        ToJobManager::CheckpointAck(_) => "checkpoint acknowledgement",
    }
}

fn refuse(conn: &Connection, reason: &str) {
    tracing::warn!(peer = %conn.peer_name(), "closing connection: {reason}");
    conn.close(CLOSE_PROTOCOL_ERROR, reason);
}
