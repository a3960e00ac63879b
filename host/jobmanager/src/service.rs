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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use tokio::sync::{mpsc, oneshot};
use weir_checkpoint::{CheckpointStorage, DirStorage, JobCheckpoints, load_savepoint};
use weir_control::client::{recv_chunks, send_chunks};
use weir_control::protocol::{CheckpointAck, FromJobManager, Hello, SubmitRequest, TASKMANAGER_PREFIX, ToJobManager};
use weir_control::registry::Registry;
use weir_net::{CLOSE_PROTOCOL_ERROR, CLOSE_UNAUTHORIZED, Connection, Endpoint, FramedRecv, FramedSend};
use weir_taskmanager::checkpoint::savepoint_location;
use weir_types::deployment::{CheckpointConfig, JobDeployment, JobReport, JobStatus, RestoreFrom, SinkFiles, place};
use weir_types::resource::JobResource;
use weir_wasm::Runtime;

use crate::coordinator::{AckOutcome, Coordinator};
use crate::embedded::{new_job_id, prepare};
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
    /// The component of a job: a header and its chunks, never interleaved.
    Component {
        job: String,
        bytes: Arc<Vec<u8>>,
    },
}

struct Job {
    /// The current attempt's deployment.
    deployment: Box<JobDeployment>,
    tracker: JobTracker,
    /// Run id of the current attempt: what TaskManagers call the job.
    run: String,
    /// Registry ids of the TaskManagers in the deployment, by index.
    tms: Vec<u64>,
    /// Slots held, per registry id.
    slots: Vec<(u64, u32)>,
    /// TaskManagers that have not yet reported their share prepared.
    preparing: HashSet<u64>,
    component: Arc<Vec<u8>>,
    watchers: Vec<oneshot::Sender<JobReport>>,
    restart: RestartStrategy,
    failures: Vec<Instant>,
    /// Set while the job waits to run again: not before this instant.
    restart_at: Option<Instant>,
    restarts: u32,
    coordinator: Option<Coordinator>,
    checkpoints: Option<Arc<JobCheckpoints>>,
    last_checkpoint: Option<u64>,
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
struct State {
    /// Order queues of connected TaskManagers. Unbounded but small: a handful of
    /// control orders per job, and components are shared, not copied.
    orders: Orders,
    jobs: Vec<Job>,
}

struct Shared {
    registry: Mutex<Registry>,
    state: Mutex<State>,
    runtime: Runtime,
    config: JobManagerConfig,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is completed under the lock before anything can panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves connections until the endpoint closes. `runtime` loads and plans submitted
/// components.
pub async fn serve(endpoint: Endpoint, config: JobManagerConfig, runtime: Runtime) {
    let registry = Mutex::new(Registry::new(config.heartbeat_timeout));
    let shared = Arc::new(Shared { registry, state: Mutex::default(), runtime, config: config.clone() });
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
                reaper.taskmanager_gone(id, &name);
            }
        }
    });
    while let Some(conn) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move { handle(conn, shared).await });
    }
}

async fn handle(conn: Connection, shared: Arc<Shared>) {
    let (mut tx, mut rx) = match conn.accept_control::<FromJobManager, ToJobManager>().await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(peer = %conn.peer_name(), "no control stream: {e}");
            return;
        }
    };
    match next(&conn, &mut rx).await {
        Some(ToJobManager::Hello(Hello::TaskManager { slots, data_addr })) => taskmanager(conn, tx, rx, shared, slots, data_addr).await,
        Some(ToJobManager::Hello(Hello::Client)) => {
            while let Some(msg) = next(&conn, &mut rx).await {
                let reply = match msg {
                    ToJobManager::Status => FromJobManager::Status(shared.view()),
                    ToJobManager::Submit(request) => match submit(&conn, &mut rx, &shared, request).await {
                        Ok((job, graph, ended)) => {
                            if tx.send(&FromJobManager::Submitted { job, graph }).await.is_err() {
                                return;
                            }
                            match ended.await {
                                Ok(report) => FromJobManager::JobEnded(report),
                                Err(_) => return,
                            }
                        }
                        Err(Refusal::Reply(why)) => FromJobManager::Refused(why),
                        Err(Refusal::Close) => return,
                    },
                    ToJobManager::Savepoint { job, dir, stop } => match shared.savepoint(&job, dir.clone(), stop).await {
                        Ok(Ok(checkpoint)) => FromJobManager::SavepointDone { dir, checkpoint },
                        Ok(Err(why)) => FromJobManager::Refused(why),
                        Err(_) => return,
                    },
                    ToJobManager::Cancel { job } => match shared.cancel(&job) {
                        true => FromJobManager::Cancelling { job },
                        false => FromJobManager::Refused(format!("no running job {job}")),
                    },
                    other => return refuse(&conn, &format!("unexpected {} from a client", kind(&other))),
                };
                if tx.send(&reply).await.is_err() {
                    return;
                }
            }
        }
        Some(other) => refuse(&conn, &format!("expected a hello, got {}", kind(&other))),
        None => {}
    }
}

enum Refusal {
    Reply(String),
    Close,
}

/// Reads a submission's component, plans the job, places and deploys it.
async fn submit(
    conn: &Connection,
    rx: &mut FramedRecv<ToJobManager>,
    shared: &Arc<Shared>,
    request: SubmitRequest,
) -> Result<(String, String, oneshot::Receiver<JobReport>), Refusal> {
    let limit = shared.runtime.limits().max_component_bytes;
    if request.size > limit {
        refuse(conn, &format!("component of {} bytes exceeds the limit of {limit} bytes", request.size));
        return Err(Refusal::Close);
    }
    let unwrap = |m| match m {
        ToJobManager::ComponentChunk(c) => Some(c),
        _ => None,
    };
    let wasm = match recv_chunks(rx, request.size, unwrap).await {
        Ok(w) => w,
        Err(e) => {
            refuse(conn, &e.to_string());
            return Err(Refusal::Close);
        }
    };
    let runtime = shared.runtime.clone();
    let req = request.clone();
    let planned = tokio::task::spawn_blocking(move || {
        let prepared = prepare(&runtime, &wasm, &req.args, req.parallelism, req.input, req.output);
        prepared.map(|p| (p, wasm))
    })
    .await;
    let ((component, plan, graph), wasm) = match planned {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err(Refusal::Reply(e.to_string())),
        Err(e) => return Err(Refusal::Reply(format!("planning panicked: {e}"))),
    };

    let restart = match &request.restart {
        Some(r) => r.parse::<RestartStrategy>().map_err(Refusal::Reply)?,
        None if request.checkpoint_interval_ms.is_some() => RestartStrategy::default(),
        None => RestartStrategy::None,
    };
    let checkpoints = match (request.checkpoint_interval_ms, &shared.config.checkpoint_dir) {
        (None, _) => None,
        (Some(_), None) => return Err(Refusal::Reply("checkpointing needs a jobmanager started with --checkpoint-dir".into())),
        (Some(ms), Some(dir)) => Some(CheckpointConfig { dir: dir.clone(), interval_ms: ms.max(10), retain: shared.config.retain.max(1) }),
    };
    let job = new_job_id();
    let (initial_restore, first_checkpoint) = match &request.from_savepoint {
        Some(dir) => {
            let location = savepoint_location(dir).map_err(Refusal::Reply)?;
            let loaded = tokio::task::spawn_blocking(move || {
                let storage = DirStorage::new(location.0).map_err(|e| e.to_string())?;
                load_savepoint(&storage, &location.1).map_err(|e| e.to_string())
            })
            .await;
            let meta = match loaded {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => return Err(Refusal::Reply(format!("savepoint {dir}: {e}"))),
                Err(e) => return Err(Refusal::Reply(format!("savepoint {dir}: {e}"))),
            };
            if meta.max_parallelism != plan.max_parallelism() {
                return Err(Refusal::Reply(format!(
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
            let storage = DirStorage::new(&c.dir).map_err(|e| Refusal::Reply(format!("checkpoint storage {}: {e}", c.dir)))?;
            Some(Arc::new(JobCheckpoints::new(Arc::new(storage), &job)))
        }
        None => None,
    };
    let deployment = Box::new(JobDeployment {
        job: job.clone(),
        plan,
        graph,
        args: request.args,
        component: component.hash.clone(),
        placement: vec![],
        taskmanagers: vec![],
        sink_files: SinkFiles::PartPerSubtask,
        attempt: 0,
        checkpoints,
        restore: None,
    });
    let (ended_tx, ended_rx) = oneshot::channel();
    let tracker = JobTracker::new(&job, &deployment.plan.name, deployment.graph.clone(), vec![], Instant::now());
    let mut j = Job {
        run: deployment.run_id(),
        deployment,
        tracker,
        tms: vec![],
        slots: vec![],
        preparing: HashSet::new(),
        component: Arc::new(wasm),
        watchers: vec![ended_tx],
        restart,
        failures: vec![],
        restart_at: None,
        restarts: 0,
        coordinator: None,
        checkpoints: store,
        last_checkpoint: None,
        first_checkpoint,
        initial_restore: initial_restore.clone(),
        savepoints: vec![],
        done: false,
        resource: JobResource::new(SystemTime::now()),
        terminating: false,
        final_status: None,
    };
    let (description, persisted) = {
        let mut state = lock(&shared.state);
        if let Err(free) = shared.deploy(&mut j, &state.orders, initial_restore) {
            return Err(Refusal::Reply(format!("the job needs {} slots but only {free} are free", j.deployment.graph.slots_needed())));
        }
        let description = describe(&j.deployment, &j.tms, &shared.registry);
        tracing::info!(%job, name = %j.deployment.plan.name, tasks = j.deployment.task_count(), "job submitted");
        let persisted = shared.persisted(&j, true);
        state.jobs.push(j);
        (description, persisted)
    };
    shared.persist(persisted).await;
    Ok((job, description, ended_rx))
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
}

/// Where jobs are persisted in the checkpoint storage.
const JOBS_DIR: &str = "_jobs";

/// A job's persisted record, and its component when it is new.
struct Persist {
    job: String,
    record: Vec<u8>,
    component: Option<Arc<Vec<u8>>>,
}

impl Shared {
    fn storage(&self) -> Option<DirStorage> {
        let dir = self.config.checkpoint_dir.as_ref()?;
        DirStorage::new(dir).map_err(|e| tracing::error!(dir, "checkpoint storage unusable: {e}")).ok()
    }

    /// The record of `j` to persist (with its component if `new`).
    fn persisted(&self, j: &Job, new: bool) -> Option<Persist> {
        self.config.checkpoint_dir.as_ref()?;
        let record = PersistedJob {
            deployment: (*j.deployment).clone(),
            restart: j.restart,
            initial_restore: j.initial_restore.clone(),
            first_checkpoint: j.first_checkpoint,
            restarts: j.restarts,
        };
        let record = postcard::to_allocvec(&record).map_err(|e| tracing::error!("cannot encode job {}: {e}", j.tracker.id())).ok()?;
        Some(Persist { job: j.tracker.id().to_string(), record, component: new.then(|| j.component.clone()) })
    }

    /// Writes a job's record durably (a JobManager that crashes later resumes it).
    async fn persist(&self, p: Option<Persist>) {
        let (Some(p), Some(storage)) = (p, self.storage()) else { return };
        let written = tokio::task::spawn_blocking(move || {
            if let Some(c) = &p.component {
                storage.write(&format!("{JOBS_DIR}/{}/component.wasm", p.job), c)?;
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
        let runtime = self.runtime.clone();
        let found = tokio::task::spawn_blocking(move || {
            let mut jobs = Vec::new();
            for job in storage.list(JOBS_DIR).unwrap_or_default() {
                let read = |name: &str| storage.read(&format!("{JOBS_DIR}/{job}/{name}"));
                let loaded = read("job").map_err(|e| e.to_string()).and_then(|record| {
                    let record: PersistedJob = postcard::from_bytes(&record).map_err(|e| e.to_string())?;
                    let wasm = read("component.wasm").map_err(|e| e.to_string())?;
                    runtime.load(&wasm).map_err(|e| e.to_string())?;
                    Ok((record, wasm))
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
        for (record, wasm) in found {
            let d = record.deployment;
            let store = d.checkpoints.as_ref().and_then(|c| DirStorage::new(&c.dir).ok()).map(|s| Arc::new(JobCheckpoints::new(Arc::new(s), &d.job)));
            tracing::info!(job = %d.job, attempt = d.attempt, "resuming a job of the previous jobmanager");
            state.jobs.push(Job {
                run: d.run_id(),
                tracker: JobTracker::new(&d.job, &d.plan.name, d.graph.clone(), vec![], now),
                deployment: Box::new(d),
                tms: vec![],
                slots: vec![],
                preparing: HashSet::new(),
                component: Arc::new(wasm),
                watchers: vec![],
                restart: record.restart,
                failures: vec![],
                restart_at: Some(now),
                restarts: record.restarts,
                coordinator: None,
                checkpoints: store,
                last_checkpoint: None,
                first_checkpoint: record.first_checkpoint,
                initial_restore: record.initial_restore,
                savepoints: vec![],
                done: false,
                resource: JobResource::new(SystemTime::now()),
                terminating: false,
                final_status: None,
            });
        }
    }

    fn view(&self) -> weir_control::protocol::ClusterView {
        let mut view = lock(&self.registry).view(Instant::now());
        let now = Instant::now();
        view.jobs = lock(&self.state).jobs.iter_mut().map(|j| j.report(now)).collect();
        view
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

    fn cancel(&self, job: &str) -> bool {
        let mut state = lock(&self.state);
        let State { orders, jobs } = &mut *state;
        let Some(j) = jobs.iter_mut().find(|j| j.tracker.id() == job && !j.done) else { return false };
        tracing::info!(job, "cancelling on request");
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
        true
    }

    /// Applies `f` to the current attempt of a running job (by run id), then handles
    /// the attempt's end if it is over.
    fn with_job(&self, run: &str, f: impl FnOnce(&mut Job, &Orders)) {
        let mut state = lock(&self.state);
        let State { orders, jobs } = &mut *state;
        let Some(j) = jobs.iter_mut().find(|j| j.run == run && !j.done && j.restart_at.is_none()) else { return };
        f(j, orders);
        if j.tracker.is_done() {
            self.attempt_ended(j);
        }
        let ended = jobs.iter().filter(|j| j.done).count();
        if ended > HISTORY
            && let Some(oldest) = jobs.iter().position(|j| j.done)
        {
            jobs.remove(oldest);
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
        let now = Instant::now();
        if j.tracker.status() == JobStatus::Failed {
            j.failures.push(now);
            if let Some(delay) = j.restart.next_delay(&j.failures, now) {
                j.restarts += 1;
                j.restart_at = Some(now + delay);
                let error = j.tracker.report(now).error.unwrap_or_default();
                tracing::warn!(job = %j.tracker.id(), restarts = j.restarts, ?delay, "job failed, restarting: {error}");
                return;
            }
        }
        self.finish(j);
    }

    fn finish(&self, j: &mut Job) {
        j.done = true;
        self.unpersist(j.tracker.id());
        for r in j.savepoints.drain(..) {
            let _ = r.reply.send(Err("the job ended before the savepoint was taken".into()));
        }
        j.component = Arc::new(Vec::new());
        let report = j.report(Instant::now());
        tracing::info!(job = %report.id, status = report.status.name(), error = report.error.as_deref().unwrap_or(""), "job ended");
        for w in j.watchers.drain(..) {
            let _ = w.send(report.clone());
        }
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
            let State { orders, jobs } = &mut *state;
            for j in jobs.iter_mut().filter(|j| !j.done) {
                if j.restart_at.is_some_and(|t| t <= now) {
                    restarts.push((j.tracker.id().to_string(), j.checkpoints.clone()));
                    continue;
                }
                if j.tracker.status() != JobStatus::Running {
                    continue;
                }
                let Some(c) = j.coordinator.as_mut() else { continue };
                if let Some(id) = c.expire(now) {
                    tracing::warn!(job = %j.tracker.id(), checkpoint = id, "checkpoint abandoned: not all subtasks acknowledged in time");
                }
                if let Some(id) = c.due(now) {
                    let run = j.run.clone();
                    j.send(orders, || FromJobManager::TriggerCheckpoint { job: run.clone(), id });
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
                let State { orders, jobs } = &mut *state;
                let Some(j) = jobs.iter_mut().find(|j| j.tracker.id() == job && !j.done && j.restart_at.is_some()) else { continue };
                if let Some((id, _)) = latest {
                    j.last_checkpoint = Some(j.last_checkpoint.map_or(id, |l| l.max(id)));
                }
                let restore = latest.map(|(_, path)| RestoreFrom::Checkpoint(path)).or_else(|| j.initial_restore.clone());
                let described = restore.as_ref().map_or("nothing".to_string(), ToString::to_string);
                match self.deploy(j, orders, restore) {
                    Ok(()) => {
                        tracing::info!(%job, attempt = j.deployment.attempt, restore = %described, "job redeployed");
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
        let complete = {
            let mut state = lock(&self.state);
            let Some(j) = state.jobs.iter_mut().find(|j| j.run == ack.job && !j.done && j.restart_at.is_none()) else { return };
            let (Some(c), Some(store)) = (j.coordinator.as_mut(), j.checkpoints.clone()) else { return };
            match c.ack(&j.deployment, ack.checkpoint, ack.vertex, ack.task, now) {
                AckOutcome::Waiting => return,
                AckOutcome::Failed(id, e) => {
                    tracing::warn!(job = %j.tracker.id(), checkpoint = id, "checkpoint failed: {e}");
                    return;
                }
                AckOutcome::Complete(meta) => (meta, store, j.deployment.checkpoints.as_ref().map_or(1, |c| c.retain)),
            }
        };
        let (meta, store, retain) = complete;
        let id = meta.id;
        let job_store = store.clone();
        let written = tokio::task::spawn_blocking(move || {
            store.complete(&meta)?;
            store.retain(retain as usize).map_err(weir_checkpoint::CheckpointError::from)?;
            Ok::<_, weir_checkpoint::CheckpointError>(meta)
        })
        .await;
        let meta = match written {
            Ok(Ok(meta)) => meta,
            Ok(Err(e)) => return tracing::error!(job = %ack.job, checkpoint = id, "cannot complete the checkpoint: {e}"),
            Err(e) => return tracing::error!(job = %ack.job, checkpoint = id, "completing the checkpoint panicked: {e}"),
        };
        let (job, requests) = {
            let mut state = lock(&self.state);
            let State { orders, jobs } = &mut *state;
            let Some(j) = jobs.iter_mut().find(|j| j.run == ack.job && !j.done) else { return };
            j.last_checkpoint = Some(id);
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
                tracing::info!(%job, checkpoint = id, dir = %r.dir, stop = r.stop, "savepoint written");
                if r.stop {
                    self.cancel(&job);
                }
            }
            let _ = r.reply.send(exported.map(|()| id));
        }
    }

    /// Asks for a savepoint of a running, checkpointed job; answers once written.
    fn savepoint(&self, job: &str, dir: String, stop: bool) -> oneshot::Receiver<Result<u64, String>> {
        let (reply, answer) = oneshot::channel();
        let mut state = lock(&self.state);
        let Some(j) = state.jobs.iter_mut().find(|j| j.tracker.id() == job && !j.done) else {
            let _ = reply.send(Err(format!("no running job {job}")));
            return answer;
        };
        match j.coordinator.as_mut() {
            Some(c) if j.restart_at.is_none() => {
                let from = c.force();
                j.savepoints.push(SavepointRequest { from, dir, stop, reply });
            }
            _ => {
                let _ = reply.send(Err(format!("job {job} is not running with checkpoints (submit it with --checkpoint-interval)")));
            }
        }
        answer
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
    let id = lock(&shared.registry).register(&name, &conn.remote_addr().to_string(), &data_addr, slots, Instant::now());
    tracing::info!(taskmanager = %name, id, slots, %data_addr, "taskmanager registered");
    let heartbeat_ms = shared.config.heartbeat_interval.as_millis() as u64;
    if tx.send(&FromJobManager::Registered { id, heartbeat_ms }).await.is_err() {
        lock(&shared.registry).disconnect(id);
        return;
    }
    let (orders_tx, mut orders) = mpsc::unbounded_channel();
    lock(&shared.state).orders.insert(id, orders_tx);
    loop {
        tokio::select! {
            order = orders.recv() => {
                let sent = match order {
                    Some(Order::Send(m)) => tx.send(&m).await,
                    Some(Order::Component { job, bytes }) => match tx.send(&FromJobManager::Component { job, size: bytes.len() as u64 }).await {
                        Ok(()) => send_chunks(&mut tx, &bytes, FromJobManager::ComponentChunk).await,
                        Err(e) => Err(e),
                    },
                    None => break,
                };
                if sent.is_err() {
                    break;
                }
            }
            msg = next(&conn, &mut rx) => match msg {
                Some(ToJobManager::CheckpointAck(ack)) => shared.checkpoint_ack(ack).await,
                Some(m) => if !from_taskmanager(&shared, &conn, id, m) { break },
                None => break,
            },
        }
    }
    if lock(&shared.registry).disconnect(id) {
        tracing::warn!(taskmanager = %name, "taskmanager disconnected");
    }
    shared.taskmanager_gone(id, &name);
}

/// Handles one message from TaskManager `id`; false if the connection must end.
fn from_taskmanager(shared: &Shared, conn: &Connection, id: u64, msg: ToJobManager) -> bool {
    let now = Instant::now();
    match msg {
        ToJobManager::Heartbeat(progress) => {
            lock(&shared.registry).heartbeat(id, now);
            let mut state = lock(&shared.state);
            for p in &progress {
                if let Some(j) = state.jobs.iter_mut().find(|j| j.run == p.job) {
                    j.tracker.progress(p);
                }
            }
        }
        ToJobManager::NeedComponent { job } => shared.with_job(&job, |j, orders| {
            if let Some(o) = orders.get(&id) {
                tracing::info!(%job, taskmanager = id, bytes = j.component.len(), "shipping the component");
                let _ = o.send(Order::Component { job: job.clone(), bytes: j.component.clone() });
            }
        }),
        ToJobManager::Prepared { job } => shared.with_job(&job, |j, orders| {
            j.preparing.remove(&id);
            if j.preparing.is_empty() && j.tracker.status() == JobStatus::Created {
                j.send(orders, || FromJobManager::Start { job: job.clone() });
                j.tracker.running();
                tracing::info!(%job, "job running");
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
        ToJobManager::NeedComponent { .. } => "component request",
        ToJobManager::Prepared { .. } => "prepared",
        ToJobManager::PrepareFailed { .. } => "prepare failure",
        ToJobManager::TaskEnded(_) => "task end",
        ToJobManager::Status => "status request",
        ToJobManager::Submit(_) => "submission",
        ToJobManager::ComponentChunk(_) => "component chunk",
        ToJobManager::CheckpointAck(_) => "checkpoint acknowledgement",
        ToJobManager::Cancel { .. } => "cancel",
        ToJobManager::Savepoint { .. } => "savepoint request",
    }
}

fn refuse(conn: &Connection, reason: &str) {
    tracing::warn!(peer = %conn.peer_name(), "closing connection: {reason}");
    conn.close(CLOSE_PROTOCOL_ERROR, reason);
}
