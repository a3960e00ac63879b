//! The jobs of a `weir jobmanager`: each a [`Driver`] plus what users see of it (its
//! events, checkpoint log, Job resource), indexed by id. [`Shared::drive`] feeds a
//! driver and carries out its commands: orders to TaskManagers go out on their
//! queues, slots come from the registry, and slow I/O (finding the newest checkpoint,
//! writing a checkpoint's metadata, exporting a savepoint) runs on blocking threads
//! whose answers come back as events.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use weir_checkpoint::{DirStorage, JobCheckpoints, load_savepoint, savepoint_location};
use weir_control::protocol::FromJobManager;
use weir_types::deployment::{CheckpointConfig, JobDeployment, JobReport, JobStatus, RestoreFrom, SinkFiles, place};
use weir_types::graph::ExecutionGraph;
use weir_types::resource::JobResource;

use crate::api::{
    ApiError, CHECKPOINTS_KEPT, CheckpointRecord, CheckpointStatus, EVENTS_KEPT, EventLevel, JobEvent, JobInfo, JobMetrics, SubmitSpec, push_bounded,
};
use crate::driver::{Command, Driver, Event, Exported, Placement};
use crate::persist::EndedJob;
use crate::planning::{JobSource, PlannedCode, new_job_id, prepare};
use crate::restart::RestartStrategy;
use crate::service::{Shared, lock};

/// What a TaskManager's connection handler is asked to send.
pub(crate) enum Order {
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

/// Order queues of connected TaskManagers, by registry id. Unbounded but small: a
/// handful of control orders per job, and components are shared, not copied.
pub(crate) type Orders = HashMap<u64, mpsc::UnboundedSender<Order>>;

/// A job that has not ended.
pub(crate) struct Job {
    pub(crate) driver: Driver,
    /// The bytes of each component in the deployment's code, by index.
    pub(crate) components: Vec<Arc<Vec<u8>>>,
    store: Option<Arc<JobCheckpoints>>,
    /// The Job resource (seed 002) tracking this job's lifecycle.
    resource: JobResource,
    /// As submitted.
    pub(crate) spec: SubmitSpec,
    pub(crate) created: SystemTime,
    /// What happened to the job, for users (`weir logs`).
    pub(crate) events: VecDeque<JobEvent>,
    /// Recent checkpoints, oldest first.
    pub(crate) checkpoint_log: VecDeque<CheckpointRecord>,
    pub(crate) checkpoints_completed: u64,
    pub(crate) checkpoints_failed: u64,
    /// Savepoint callers waiting, by request.
    replies: HashMap<u64, oneshot::Sender<Result<u64, String>>>,
    next_request: u64,
}

impl Job {
    pub(crate) fn new(driver: Driver, components: Vec<Arc<Vec<u8>>>, spec: SubmitSpec, created: SystemTime) -> Self {
        let store = driver.deployment().checkpoints.as_ref().and_then(|c| checkpoint_store(c, &driver.deployment().job).ok());
        Self {
            driver,
            components,
            store,
            resource: JobResource::new(SystemTime::now()),
            spec,
            created,
            events: VecDeque::new(),
            checkpoint_log: VecDeque::new(),
            checkpoints_completed: 0,
            checkpoints_failed: 0,
            replies: HashMap::new(),
            next_request: 0,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.driver.deployment().job
    }

    /// The job's report now, after bringing its Job resource up to date.
    fn report(&mut self, now: Instant) -> JobReport {
        let mut r = self.driver.report(now);
        // Between an attempt's end and the driver's decision nothing is terminal yet.
        let status = if !self.driver.is_ended() && r.status.is_terminal() { JobStatus::Restarting } else { r.status };
        self.resource.observe(status, r.restarts, r.error.as_deref(), self.driver.terminating(), SystemTime::now());
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

    /// Live metrics; TaskManagers named through the registry.
    pub(crate) fn metrics(&self, registry: &Registry) -> JobMetrics {
        let tracker = self.driver.tracker();
        let taskmanagers = self.driver.taskmanagers().iter().map(|id| registry.name(*id).unwrap_or("?").to_string()).collect();
        JobMetrics { status: tracker.status(), graph: tracker.graph().clone(), subtasks: tracker.subtasks(), taskmanagers }
    }

    /// The job as it ended, for the history.
    fn ended(&mut self, registry: &Registry) -> EndedJob {
        EndedJob {
            info: self.info(Instant::now()),
            events: self.events.iter().cloned().collect(),
            checkpoints: self.checkpoint_log.iter().cloned().collect(),
            metrics: self.metrics(registry),
            checkpoints_completed: self.checkpoints_completed,
            checkpoints_failed: self.checkpoints_failed,
        }
    }

    /// Records an event for users and logs it.
    pub(crate) fn event(&mut self, level: EventLevel, message: String) {
        let job = self.id();
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
}

fn checkpoint_store(c: &CheckpointConfig, job: &str) -> Result<Arc<JobCheckpoints>, ApiError> {
    let storage = DirStorage::new(&c.dir).map_err(|e| ApiError::Internal(format!("checkpoint storage {}: {e}", c.dir)))?;
    Ok(Arc::new(JobCheckpoints::new(Arc::new(storage), job)))
}

/// The jobs, running and ended.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) orders: Orders,
    /// Jobs that have not ended, by id.
    pub(crate) jobs: HashMap<String, Job>,
    /// Ended jobs, oldest first: the history users can still query.
    pub(crate) ended: VecDeque<EndedJob>,
}

fn send(orders: &Orders, to: &[u64], msg: impl Fn() -> FromJobManager) {
    for id in to {
        if let Some(o) = orders.get(id) {
            let _ = o.send(Order::Send(msg()));
        }
    }
}

/// Reserves free slots for `graph`; `None` if they do not fit now.
fn reserve(registry: &mut Registry, graph: &ExecutionGraph) -> Option<Placement> {
    let free = registry.free();
    let counts: Vec<u32> = free.iter().map(|(_, n, _)| *n).collect();
    let placement = place(graph, &counts)?;
    let mut slots: Vec<(u64, u32)> = free.iter().map(|(id, _, _)| (*id, 0)).collect();
    // Slot i of the job holds subtask i of every vertex: the widest vertex counts.
    if let Some(widest) = placement.iter().max_by_key(|p| p.len()) {
        for &tm in widest {
            slots[tm as usize].1 += 1;
        }
    }
    slots.retain(|(_, n)| *n > 0);
    for &(id, n) in &slots {
        registry.reserve(id, n);
    }
    Some(Placement {
        tms: free.iter().map(|(id, _, _)| *id).collect(),
        addrs: free.iter().map(|(_, _, addr)| addr.clone()).collect(),
        placement,
        slots,
    })
}

impl Shared {
    /// Feeds `event` to job `id`'s driver and carries out what it asks.
    pub(crate) fn drive(self: &Arc<Self>, id: &str, event: Event) {
        let mut state = lock(&self.state);
        self.drive_locked(&mut state, id, event);
    }

    /// [`Self::drive`] with the state locked; moves a job that ended to the history.
    pub(crate) fn drive_locked(self: &Arc<Self>, state: &mut State, id: &str, event: Event) {
        let mut events = VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            let now = Instant::now();
            let State { orders, jobs, .. } = &mut *state;
            let Some(j) = jobs.get_mut(id) else { return };
            for command in j.driver.on(event, now) {
                events.extend(self.execute(j, orders, command));
            }
            // Observed now, so the Job resource's transition times are the events' times.
            j.report(now);
        }
        self.retire(state);
    }

    /// Carries out one command of job `j`; an event to feed back at once, if any.
    fn execute(self: &Arc<Self>, j: &mut Job, orders: &Orders, command: Command) -> Option<Event> {
        let job = j.id().to_string();
        match command {
            Command::FindRestore => {
                // Storage that could not be opened when the job was loaded is tried
                // again: taking it for "no checkpoint" would replay committed output.
                let store = match (&j.store, &j.driver.deployment().checkpoints) {
                    (Some(store), _) => store.clone(),
                    (None, None) => return Some(Event::Restorable(Ok(None))),
                    (None, Some(c)) => match checkpoint_store(c, &job) {
                        Ok(store) => j.store.insert(store).clone(),
                        Err(e) => return Some(Event::Restorable(Err(e.to_string()))),
                    },
                };
                let shared = self.clone();
                tokio::spawn(async move {
                    // Reads and verifies files: off the lock.
                    let found = tokio::task::spawn_blocking(move || store.latest().map(|m| m.map(|m| (m.id, store.metadata_path(m.id)))))
                        .await
                        .map_err(|e| format!("checkpoint lookup panicked: {e}"))
                        .and_then(|r| r.map_err(|e| e.to_string()));
                    shared.drive(&job, Event::Restorable(found));
                });
            }
            Command::Place => {
                let placed = reserve(&mut lock(&self.registry), &j.driver.deployment().graph);
                return Some(placed.map_or(Event::NoSlots, Event::Placed));
            }
            Command::Deploy { deployment, to } => {
                for (id, me) in to {
                    if let Some(o) = orders.get(&id) {
                        let _ = o.send(Order::Send(FromJobManager::Deploy { deployment: deployment.clone(), me }));
                    }
                }
            }
            Command::Start { run, to } => send(orders, &to, || FromJobManager::Start { job: run.clone() }),
            Command::Cancel { run, to } => send(orders, &to, || FromJobManager::Cancel { job: run.clone() }),
            Command::Trigger { run, id, stop, to } => send(orders, &to, || FromJobManager::TriggerCheckpoint { job: run.clone(), id, stop }),
            Command::Announce { run, id, to } => send(orders, &to, || FromJobManager::CheckpointComplete { job: run.clone(), id }),
            Command::Complete { run, meta } => {
                let (Some(store), retain) = (j.store.clone(), j.driver.deployment().checkpoints.as_ref().map_or(1, |c| c.retain)) else {
                    return Some(Event::Completed { run, meta, result: Err("the job has no checkpoint storage".into()) });
                };
                let shared = self.clone();
                tokio::spawn(async move {
                    let written_meta = meta.clone();
                    let written = tokio::task::spawn_blocking(move || {
                        store.complete(&written_meta)?;
                        let size = store.written_bytes(&written_meta);
                        store.retain(retain as usize).map_err(weir_checkpoint::CheckpointError::from)?;
                        Ok::<_, weir_checkpoint::CheckpointError>(size)
                    })
                    .await;
                    let result = match written {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(e) => Err(format!("completing the checkpoint panicked: {e}")),
                    };
                    shared.drive(&job, Event::Completed { run, meta, result });
                });
            }
            Command::Export { request, meta, dir, stop } => {
                let store = j.store.clone()?;
                let shared = self.clone();
                tokio::spawn(async move {
                    let (id, target) = (meta.id, dir.clone());
                    let result = tokio::task::spawn_blocking(move || {
                        let (root, name) = savepoint_location(&target).map_err(|e| e.to_string())?;
                        let storage = DirStorage::new(root).map_err(|e| e.to_string())?;
                        store.export(&meta, &storage, &name).map_err(|e| e.to_string())
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("writing the savepoint panicked: {e}")));
                    shared.drive(&job, Event::SavepointWritten(Exported { request, id, dir, stop, result }));
                });
            }
            Command::Reply { request, result } => {
                if let Some(reply) = j.replies.remove(&request) {
                    let _ = reply.send(result);
                }
            }
            Command::Release(slots) => {
                let mut registry = lock(&self.registry);
                for (id, n) in slots {
                    registry.release(id, n);
                }
            }
            Command::Persist => self.persist(&j.driver, j.spec.clone(), j.created),
            Command::Log(level, message) => j.event(level, message),
            Command::Checkpoint { id, status, size, failure } => j.checkpoint_event(id, status, size, failure),
            Command::AbandonCheckpoints(why) => j.abandon_checkpoints(&why),
            Command::Ended => {
                j.components = vec![];
                let report = j.report(Instant::now());
                let error = report.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
                let level = if report.status == JobStatus::Failed { EventLevel::Error } else { EventLevel::Info };
                let state = j.resource.state.name();
                j.event(level, format!("job ended {} ({state}){error}", report.status.name()));
            }
        }
        None
    }

    /// Plans a job from `source`, places and deploys it; its id.
    pub(crate) async fn submit(self: &Arc<Self>, source: JobSource, spec: SubmitSpec, restart: RestartStrategy) -> Result<String, ApiError> {
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
        let (restore, first_checkpoint) = match &spec.from_savepoint {
            Some(dir) => (Some(RestoreFrom::Savepoint(dir.clone())), self.savepoint_id(dir, plan.max_parallelism()).await? + 1),
            None => (None, 1),
        };
        let job = new_job_id();
        if let Some(c) = &checkpoints {
            checkpoint_store(c, &job)?;
        }
        let components: Vec<Arc<Vec<u8>>> = components.into_iter().map(|(_, bytes)| bytes).collect();
        // Before the job is acknowledged: a JobManager restarted later finds its code.
        self.persist_components(&job, &components).await?;
        let deployment = JobDeployment {
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
            restore,
        };
        let mut state = lock(&self.state);
        let placed = {
            let mut registry = lock(&self.registry);
            reserve(&mut registry, &deployment.graph).ok_or_else(|| registry.free().iter().map(|(_, n, _)| n).sum::<u32>())
        };
        let placement = match placed {
            Ok(p) => p,
            Err(free) => {
                drop(state);
                self.unpersist(&job);
                return Err(ApiError::Unavailable(format!("the job needs {} slots but only {free} are free", deployment.graph.slots_needed())));
            }
        };
        let description = self.describe(&deployment, &placement);
        let name = deployment.plan.name.clone();
        let tasks = deployment.task_count();
        let mut j = Job::new(Driver::new(deployment, restart, first_checkpoint, Instant::now()), components, spec, SystemTime::now());
        j.event(EventLevel::Info, format!("job {name} submitted ({tasks} subtasks):\n{description}"));
        state.jobs.insert(job.clone(), j);
        self.drive_locked(&mut state, &job, Event::Placed(placement));
        Ok(job)
    }

    /// The checkpoint id of the savepoint in `dir`, checked against the job's key groups.
    async fn savepoint_id(&self, dir: &str, max_parallelism: u32) -> Result<u64, ApiError> {
        let location = savepoint_location(dir).map_err(|e| ApiError::BadRequest(e.to_string()))?;
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
        if meta.max_parallelism != max_parallelism {
            return Err(ApiError::Unprocessable(format!(
                "savepoint {dir} has {} key groups but the job has {max_parallelism}; max parallelism cannot change",
                meta.max_parallelism
            )));
        }
        Ok(meta.id)
    }

    /// Where each vertex's subtasks run, for the job's events.
    fn describe(&self, d: &JobDeployment, p: &Placement) -> String {
        let registry = lock(&self.registry);
        let mut out = String::new();
        for (v, subtasks) in d.graph.vertices.iter().zip(&p.placement) {
            let on: Vec<&str> = subtasks.iter().map(|&t| p.tms.get(t as usize).and_then(|id| registry.name(*id)).unwrap_or("?")).collect();
            out.push_str(&format!("  {} x{}: {}\n", v.name, v.parallelism, on.join(", ")));
        }
        out
    }

    /// A user's cancel; false if the job is not running.
    pub(crate) fn cancel(self: &Arc<Self>, job: &str) -> bool {
        let mut state = lock(&self.state);
        if !state.jobs.contains_key(job) {
            return false;
        }
        self.drive_locked(&mut state, job, Event::Cancel);
        true
    }

    /// Asks for a savepoint of a running, checkpointed job; answers once written.
    pub(crate) fn savepoint(self: &Arc<Self>, job: &str, dir: String, stop: bool) -> oneshot::Receiver<Result<u64, String>> {
        let (reply, answer) = oneshot::channel();
        let mut state = lock(&self.state);
        let Some(j) = state.jobs.get_mut(job) else {
            let _ = reply.send(Err(format!("no running job {job}")));
            return answer;
        };
        let request = j.next_request;
        j.next_request += 1;
        j.replies.insert(request, reply);
        self.drive_locked(&mut state, job, Event::Savepoint { request, dir, stop });
        answer
    }

    /// Moves ended jobs into the history (persisted), keeping the newest ones.
    fn retire(&self, state: &mut State) {
        let ended: Vec<String> = state.jobs.iter().filter(|(_, j)| j.driver.is_ended()).map(|(id, _)| id.clone()).collect();
        for id in ended {
            let Some(mut j) = state.jobs.remove(&id) else { continue };
            let e = j.ended(&lock(&self.registry));
            // History first, then forget the running record: a JobManager killed in
            // between finds the job in one of the two, never in neither.
            self.persist_history(&e);
            self.unpersist(&id);
            self.push_history(state, e);
        }
    }
}
