//! The jobs of a `weir jobmanager` and the state its parts share ([`Shared`]): the
//! registry of TaskManagers, the jobs by id (each a [`Job`]: a driver plus what users
//! see of it), the ended jobs' history, uploaded artifacts and the order queues of
//! connected TaskManagers. [`Shared::drive`] feeds a job's driver and carries out its
//! commands: orders to TaskManagers go out on their queues, slots come from the
//! registry, and slow I/O (finding the newest checkpoint, writing a checkpoint's
//! metadata, exporting a savepoint) runs on blocking threads whose answers come back
//! as events. What must survive a JobManager restart goes through `persist`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use weir_checkpoint::{CheckpointMeta, DirStorage, VertexMeta, load_savepoint, savepoint_location};
use weir_control::protocol::{FromJobManager, FuelRate};
use weir_types::access::FileAccess;
use weir_types::deployment::{CheckpointConfig, JobDeployment, RestoreFrom, SinkFiles, place};
use weir_types::graph::ExecutionGraph;
use weir_types::ids::{ComponentHash, JobId, RunId, TaskManagerId};
use weir_wasm::{Runtime, World};

use crate::artifacts::{ArtifactStore, StoreError};
use crate::driver::{Command, Driver, Event, Exported, Found, Placement};
use crate::job::{Job, checkpoint_store};
use crate::model::{ApiError, EndedJob, EventLevel, SubmitSpec};
use crate::persist::{PersistedJob, Persistence};
use crate::planning::{JobSource, PlannedCode, Submitter, check_files, new_job_id, prepare};
use crate::registry::Registry;
use crate::restart::RestartStrategy;
use crate::retention;
use crate::tenants::{Caller, Tenants};

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
    /// Finished or cancelled jobs that keep their newest checkpoint; older ones lose
    /// their checkpoints (`retention`).
    pub retain_ended: u32,
    /// A lost TaskManager is forgotten this long after it was lost.
    pub lost_grace: Duration,
    /// Where uploaded artifacts are stored (`artifacts`).
    pub artifact_dir: std::path::PathBuf,
    /// Bytes of uploaded artifacts kept on disk; the least recently used go first.
    pub artifact_cap: u64,
    /// How long an attempt waits for free slots before it counts as failed.
    pub slot_timeout: Duration,
    /// The files jobs may open (`--data-root`, the cluster's own files refused).
    pub files: FileAccess,
}

impl Default for JobManagerConfig {
    fn default() -> Self {
        Self {
            heartbeat_timeout: Duration::from_secs(3),
            heartbeat_interval: Duration::from_millis(500),
            checkpoint_dir: None,
            retain: 3,
            retain_ended: 10,
            lost_grace: Duration::from_secs(600),
            artifact_dir: std::env::temp_dir().join("weir-artifacts"),
            artifact_cap: 1 << 30,
            slot_timeout: crate::driver::SLOT_TIMEOUT,
            files: FileAccess::granted(vec![], vec![]),
        }
    }
}

/// Ended jobs kept for status queries.
const HISTORY: usize = 1000;

/// What the JobManager's parts share: the TaskManager service, the timers and the
/// users' operations all work on it.
pub(crate) struct Shared {
    pub(crate) registry: Mutex<Registry>,
    pub(crate) state: Mutex<State>,
    /// Uploaded components, on disk.
    pub(crate) artifacts: Arc<Mutex<ArtifactStore>>,
    pub(crate) runtime: Runtime,
    pub(crate) config: JobManagerConfig,
    persistence: Persistence,
    /// Completed checkpoints restarts passed over as unrestorable, since the start.
    pub(crate) checkpoints_skipped: AtomicU64,
    /// Tenants, their tokens and what they own. Locked last (after state and registry).
    pub(crate) tenants: Mutex<Tenants>,
    /// The Deployments' controllers (`deployments`); never locked with `state`.
    pub(crate) deployments: Mutex<crate::deployment::Table>,
}

/// Locks `m`. Lock order: state, registry, tenants.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is completed under the lock before anything can panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a TaskManager's connection handler is asked to send.
pub(crate) enum Order {
    Send(FromJobManager),
    /// A component of a job: a header and its chunks, never interleaved.
    Component {
        run: RunId,
        hash: ComponentHash,
        bytes: Arc<Vec<u8>>,
    },
    /// The TaskManager was declared lost: close its connection, so a paused one that
    /// wakes up hears at once that its attempts are superseded.
    Lost,
}

/// Order queues of connected TaskManagers, by registry id. Unbounded but small: a
/// handful of control orders per job, and components are shared, not copied.
pub(crate) type Orders = HashMap<TaskManagerId, mpsc::UnboundedSender<Order>>;

/// The jobs, running and ended.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) orders: Orders,
    /// Jobs that have not ended, by id.
    pub(crate) jobs: HashMap<JobId, Job>,
    /// Ended jobs, oldest first: the history users can still query.
    pub(crate) ended: VecDeque<EndedJob>,
    /// The fuel rates each TaskManager was last sent.
    fuel_sent: HashMap<TaskManagerId, Vec<FuelRate>>,
}

fn send(orders: &Orders, to: &[TaskManagerId], msg: impl Fn() -> FromJobManager) {
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
    let mut slots: Vec<(TaskManagerId, u32)> = free.iter().map(|(id, _, _)| (*id, 0)).collect();
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

/// Reserves slots for `graph`: [`Event::Placed`], or [`Event::NoSlots`] saying how many
/// are free.
fn try_place(registry: &mut Registry, graph: &ExecutionGraph) -> Event {
    match reserve(registry, graph) {
        Some(p) => Event::Placed(p),
        None => Event::NoSlots { needed: graph.slots_needed(), free: registry.free().iter().map(|(_, n, _)| n).sum() },
    }
}

impl Shared {
    pub(crate) fn new(config: JobManagerConfig, runtime: Runtime) -> Result<Self, StoreError> {
        let registry = Mutex::new(Registry::new(config.heartbeat_timeout, config.lost_grace));
        let persistence = Persistence::new(config.checkpoint_dir.clone());
        // Never below one component of the largest size accepted.
        let cap = config.artifact_cap.max(runtime.limits().max_component_bytes);
        let artifacts = Arc::new(Mutex::new(ArtifactStore::open(config.artifact_dir.clone(), cap)?));
        let dir = config.checkpoint_dir.clone();
        let tenants = Mutex::new(Tenants::open(dir.as_deref()).map_err(|e| StoreError::other(dir.as_deref().unwrap_or("-"), e))?);
        Ok(Self {
            registry,
            state: Mutex::default(),
            artifacts,
            runtime,
            config,
            persistence,
            checkpoints_skipped: AtomicU64::new(0),
            tenants,
            deployments: Mutex::default(),
        })
    }

    /// Picks up the history and the jobs a previous JobManager left running: each
    /// restarts from its latest checkpoint as soon as TaskManagers offer enough slots.
    pub(crate) async fn recover_jobs(&self) {
        let ended = self.persistence.load_history().await;
        lock(&self.state).ended = VecDeque::from(ended);
        let found = self.persistence.load_jobs(self.runtime.clone()).await;
        let now = Instant::now();
        let mut state = lock(&self.state);
        for (record, components) in found {
            let id = record.driver.deployment.job.clone();
            if state.ended.iter().any(|e| e.info.id == id) {
                // Killed between writing its history and forgetting its running record.
                self.persistence.delete_job(&id);
                continue;
            }
            tracing::info!(job = %id, attempt = record.driver.deployment.attempt, "resuming a job of the previous jobmanager");
            let mut driver = Driver::resume(record.driver, now);
            driver.set_slot_timeout(self.config.slot_timeout);
            let mut j = Job::new(driver, components, record.spec, record.created);
            j.event(EventLevel::Warn, "resumed by a new jobmanager after the previous one was lost".into());
            state.jobs.insert(id, j);
        }
    }

    /// Feeds `event` to job `id`'s driver and carries out what it asks.
    pub(crate) fn drive(self: &Arc<Self>, id: &JobId, event: Event) {
        let mut state = lock(&self.state);
        self.drive_locked(&mut state, id, event);
    }

    /// [`Self::drive`] with the state locked; moves a job that ended to the history.
    pub(crate) fn drive_locked(self: &Arc<Self>, state: &mut State, id: &JobId, event: Event) {
        let mut events = VecDeque::from([event]);
        let mut moved = false;
        while let Some(event) = events.pop_front() {
            let now = Instant::now();
            let State { orders, jobs, .. } = &mut *state;
            let Some(j) = jobs.get_mut(id) else { return };
            for command in j.driver.on(event, now) {
                moved |= matches!(command, Command::Deploy { .. } | Command::Release(_) | Command::Ended);
                events.extend(self.execute(j, orders, command));
            }
            // Observed now, so the Job resource's transition times are the events' times.
            j.report(now);
        }
        self.retire(state);
        if moved {
            // Queued behind the deployment, so a TaskManager knows the job's rate
            // before it is told to start it.
            self.share_fuel(state);
        }
    }

    /// Sends each TaskManager whose share of the tenants' fuel rates changed its new
    /// shares: after placements change (deploy, release, end) and quota changes.
    pub(crate) fn share_fuel(&self, state: &mut State) {
        let tenants = lock(&self.tenants);
        let rates: HashMap<&str, u64> = tenants.fuel_rates().collect();
        let hosts: Vec<(&str, &JobId, TaskManagerId)> = match rates.is_empty() {
            true => Vec::new(),
            false => state
                .jobs
                .iter()
                .filter_map(|(id, j)| Some((tenants.job_owner(id).filter(|o| rates.contains_key(o))?, id, j)))
                .flat_map(|(owner, id, j)| j.driver.subtask_hosts().into_iter().map(move |tm| (owner, id, tm)))
                .collect(),
        };
        let mut shares = crate::tenants::fuel_shares(&rates, hosts);
        drop(tenants);
        let State { orders, fuel_sent, .. } = state;
        fuel_sent.retain(|tm, _| orders.contains_key(tm));
        for (tm, o) in orders.iter() {
            let share = shares.remove(tm).unwrap_or_default();
            if fuel_sent.get(tm) != Some(&share) {
                let _ = o.send(Order::Send(FromJobManager::FuelRates(share.clone())));
                fuel_sent.insert(*tm, share);
            }
        }
    }

    /// Carries out one command of job `j`; an event to feed back at once, if any.
    fn execute(self: &Arc<Self>, j: &mut Job, orders: &Orders, command: Command) -> Option<Event> {
        let job = j.id().clone();
        match command {
            Command::FindRestore => {
                // Storage that could not be opened when the job was loaded is tried
                // again: taking it for "no checkpoint" would replay committed output.
                let store = match (&j.store, &j.driver.deployment().checkpoints) {
                    (Some(store), _) => store.clone(),
                    (None, None) => return Some(Event::Restorable(Ok(Found::default()))),
                    (None, Some(c)) => match checkpoint_store(c, &job) {
                        Ok(store) => j.store.insert(store).clone(),
                        Err(e) => return Some(Event::Restorable(Err(e.to_string()))),
                    },
                };
                let shared = self.clone();
                tokio::spawn(async move {
                    // Reads and verifies files: off the lock.
                    let found = tokio::task::spawn_blocking(move || {
                        let r = store.find_restore()?;
                        let skipped = r.skipped.into_iter().map(|s| (s.id, s.cause)).collect();
                        Ok::<_, weir_checkpoint::StorageError>(Found { restore: r.found.map(|m| (m.id, store.metadata_path(m.id))), skipped })
                    })
                    .await
                    .map_err(|e| format!("checkpoint lookup panicked: {e}"))
                    .and_then(|r| r.map_err(|e| e.to_string()));
                    shared.drive(&job, Event::Restorable(found));
                });
            }
            Command::Place => return Some(try_place(&mut lock(&self.registry), &j.driver.deployment().graph)),
            Command::Deploy { deployment, to } => {
                for (id, me) in to {
                    if let Some(o) = orders.get(&id) {
                        let _ = o.send(Order::Send(FromJobManager::Deploy { deployment: deployment.clone(), me }));
                    }
                }
            }
            Command::Start { run, to } => send(orders, &to, || FromJobManager::Start { run: run.clone() }),
            Command::Cancel { run, to } => send(orders, &to, || FromJobManager::Cancel { run: run.clone() }),
            Command::Trigger { run, id, stop, to } => send(orders, &to, || FromJobManager::TriggerCheckpoint { run: run.clone(), id, stop }),
            Command::Announce { run, id, to } => send(orders, &to, || FromJobManager::CheckpointComplete { run: run.clone(), id }),
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
                        // The metadata is the commit point: the checkpoint is complete
                        // (its sinks must commit) even if older ones cannot be dropped now.
                        if let Err(e) = store.retain(retain as usize) {
                            tracing::warn!(job = %store.job(), checkpoint = written_meta.id, "cannot drop older checkpoints: {e}");
                        }
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
                let files = j.driver.deployment().files.clone();
                tokio::spawn(async move {
                    let (id, target) = (meta.id, dir.clone());
                    let result = tokio::task::spawn_blocking(move || {
                        // Checked again where it is written: a symbolic link made since
                        // the request must not lead the JobManager out of the roots.
                        let target = files.resolve("savepoint dir", &target).map_err(|e| e.to_string())?.display().to_string();
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
                j.reply(request, result);
            }
            Command::Release(slots) => {
                let mut registry = lock(&self.registry);
                for (id, n) in slots {
                    registry.release(id, n);
                }
            }
            Command::Persist => {
                let record = PersistedJob { driver: j.driver.record(), spec: j.spec.clone(), created: j.created };
                if let Err(e) = self.persistence.write_job(record, &j.components) {
                    j.event(EventLevel::Error, format!("cannot persist the job (a new jobmanager would not resume this attempt): {e}"));
                }
            }
            Command::Log(level, message) => j.event(level, message),
            Command::Checkpoint { id, status, size, failure } => j.checkpoint_event(id, status, size, failure),
            Command::AbandonCheckpoints(why) => j.abandon_checkpoints(&why),
            Command::Skipped { id, cause } => {
                self.checkpoints_skipped.fetch_add(1, Ordering::Relaxed);
                j.event(EventLevel::Error, format!("checkpoint {id} cannot be restored, skipped for an older one: {cause}"));
            }
            Command::Swap { run, components, at, to } => {
                send(orders, &to, || FromJobManager::Swap { run: run.clone(), components: components.clone(), at });
            }
            Command::SwapAbort { run, to } => send(orders, &to, || FromJobManager::SwapAbort { run: run.clone() }),
            Command::SwapCommitted { components } => {
                let pending = std::mem::take(&mut j.swap_components);
                let bytes: Option<Vec<Arc<Vec<u8>>>> =
                    components.iter().map(|h| pending.iter().find(|(p, _)| p == h).map(|(_, b)| b.clone())).collect();
                match bytes {
                    // The `Persist` that follows stores them with the record naming them.
                    Some(bytes) => j.components = bytes,
                    None => j.event(EventLevel::Error, "the swapped components' bytes are gone".into()),
                }
                j.spec = swapped_spec(&j.spec, &components);
            }
            Command::Ended => j.end(),
        }
        None
    }

    /// The files `caller`'s jobs may open: the cluster's roots for the admin, its own
    /// roots for a tenant (the cluster's own files refused either way).
    pub(crate) fn files(&self, caller: &Caller) -> FileAccess {
        match (caller.owner(), lock(&self.tenants).roots(caller)) {
            (Some(tenant), Some(roots)) => self.config.files.for_tenant(tenant, roots),
            _ => self.config.files.clone(),
        }
    }

    /// Plans a job from `source`, places and deploys it; its id. A tenant's job is
    /// recorded as its own before it is acknowledged, and refused if it would exceed
    /// the tenant's quota.
    pub(crate) async fn submit(
        self: &Arc<Self>,
        caller: &Caller,
        source: JobSource,
        spec: SubmitSpec,
        restart: RestartStrategy,
    ) -> Result<JobId, ApiError> {
        let runtime = self.runtime.clone();
        let args: Vec<(String, String)> = spec.args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let (parallelism, input, output) = (spec.parallelism, spec.input.clone(), spec.output.clone());
        let job_args = args.clone();
        let (capabilities, hosts) = {
            let tenants = lock(&self.tenants);
            (tenants.capabilities(caller), tenants.hosts(caller))
        };
        let planned = tokio::task::spawn_blocking(move || {
            prepare(&runtime, &source, &job_args, parallelism, input, output, Submitter { capabilities, hosts: hosts.as_deref() })
        })
        .await;
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
        let interval = checkpoints.as_ref().map(|c| Duration::from_millis(c.interval_ms));
        crate::planning::check_checkpointing(&plan, interval, self.config.heartbeat_timeout + restart.longest_delay())
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        let files = self.files(caller);
        check_files(&plan, &files).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let uids = || graph.vertices.iter().filter_map(|v| v.nodes.first().and_then(|&n| plan.nodes.get(n))).map(|n| n.uid.clone()).collect();
        let (restore, first_checkpoint) = match (&spec.from_savepoint, &spec.from_checkpoint_of) {
            (Some(dir), _) => {
                files.check("fromSavepoint", dir).map_err(|e| ApiError::BadRequest(e.to_string()))?;
                let meta = self.load_savepoint(&files, dir).await?;
                let id = check_restored(&format!("savepoint {dir}"), &meta, plan.max_parallelism(), uids(), spec.allow_non_restored_state)?;
                (Some(RestoreFrom::Savepoint(dir.clone())), id + 1)
            }
            (None, Some(of)) => {
                let (job, path, meta, newest) = self.retained_checkpoint(of, checkpoints.is_some()).await?;
                let what = format!("checkpoint {} of job {job}", meta.id);
                let id = check_restored(&what, &meta, plan.max_parallelism(), uids(), spec.allow_non_restored_state)?;
                // Epochs go on above all the old job may have committed (an older `ID`
                // restored): its part files' names are never taken again.
                (Some(RestoreFrom::CheckpointOf { job: job.to_string(), path }), id.max(newest) + 1)
            }
            (None, None) => (None, 1),
        };
        let job = new_job_id();
        if let Some(c) = &checkpoints {
            checkpoint_store(c, &job)?;
        }
        if let Some(tenant) = caller.owner() {
            lock(&self.tenants).own_job(&job, tenant)?;
        }
        let components: Vec<Arc<Vec<u8>>> = components.into_iter().map(|(_, bytes)| bytes).collect();
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
            files,
            capabilities,
        };
        let created = SystemTime::now();
        let driver = Driver::new(deployment, restart, first_checkpoint, Instant::now());
        // Before the job is acknowledged or runs: a JobManager restarted later finds it.
        let record = PersistedJob { driver: driver.record(), spec: spec.clone(), created };
        if let Err(e) = self.persistence.write_new_job(&job, &components, record).await {
            lock(&self.tenants).forget_job(&job);
            return Err(e);
        }
        let deployment = driver.deployment();
        let mut state = lock(&self.state);
        // Under the state lock, so two submissions cannot both take the last of a quota.
        if let Some(tenant) = caller.owner()
            && let Err(e) = self.within_quota(&state, tenant, deployment.graph.slots_needed())
        {
            self.persistence.delete_job(&job);
            lock(&self.tenants).forget_job(&job);
            return Err(e);
        }
        // Too few free slots is no refusal: the job waits for them (STARTING, the reason
        // in its status) up to the slot timeout, as Flink's scheduler does.
        let placed = try_place(&mut lock(&self.registry), &deployment.graph);
        let description = match &placed {
            Event::Placed(placement) => format!(":\n{}", self.describe(deployment, placement)),
            _ => String::new(),
        };
        let name = deployment.plan.name.clone();
        let tasks = deployment.task_count();
        let mut driver = driver;
        driver.set_slot_timeout(self.config.slot_timeout);
        let mut j = Job::new(driver, components, spec, created);
        j.event(EventLevel::Info, format!("job {name} submitted ({tasks} subtasks){description}"));
        state.jobs.insert(job.clone(), j);
        self.drive_locked(&mut state, &job, placed);
        Ok(job)
    }

    /// Refuses a new job of `tenant` needing `slots` that its quota of running jobs or
    /// slots cannot take, naming the quota.
    fn within_quota(&self, state: &State, tenant: &str, slots: u32) -> Result<(), ApiError> {
        let tenants = lock(&self.tenants);
        let quota = tenants.get(tenant)?.quota;
        let running: Vec<&crate::job::Job> = state.jobs.iter().filter(|(id, _)| tenants.job_owner(id) == Some(tenant)).map(|(_, j)| j).collect();
        if let Some(max) = quota.running_jobs
            && running.len() as u64 >= u64::from(max)
        {
            return Err(ApiError::Conflict(format!(
                "over quota: tenant {tenant}'s quota of {max} running jobs is reached ({} running); cancel one or ask an admin for more",
                running.len()
            )));
        }
        let used: u64 = running.iter().map(|j| u64::from(j.driver.deployment().graph.slots_needed())).sum();
        if let Some(max) = quota.slots
            && used + u64::from(slots) > u64::from(max)
        {
            return Err(ApiError::Conflict(format!(
                "over quota: the job needs {slots} slots and tenant {tenant}'s running jobs hold {used} of its quota of {max} slots"
            )));
        }
        Ok(())
    }

    /// Reads the savepoint in `dir` a job starts from.
    async fn load_savepoint(&self, files: &FileAccess, dir: &str) -> Result<CheckpointMeta, ApiError> {
        let resolved = files.resolve("fromSavepoint", dir).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let location = savepoint_location(&resolved.display().to_string()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let loaded = tokio::task::spawn_blocking(move || {
            let storage = DirStorage::new(location.0).map_err(|e| e.to_string())?;
            load_savepoint(&storage, &location.1).map_err(|e| e.to_string())
        })
        .await;
        match loaded {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(e)) => Err(ApiError::BadRequest(format!("savepoint {dir:?}: {e}"))),
            Err(e) => Err(ApiError::Internal(format!("savepoint {dir:?}: {e}"))),
        }
    }

    /// The retained checkpoint `of` (`JOB`: its newest intact completed one, or
    /// `JOB/ID`) a new job starts from: the job, the metadata's path in the checkpoint
    /// storage, the metadata, and the newest checkpoint id the job took (completed or
    /// not). The job must have ended (a running job's checkpoints
    /// are its own to restore and to delete); whether the caller may see it is checked
    /// before (`check_sources`). The new job must checkpoint: it reads the cluster's
    /// checkpoint storage as its own.
    async fn retained_checkpoint(&self, of: &str, checkpointed: bool) -> Result<(JobId, String, CheckpointMeta, u64), ApiError> {
        let (job, id) = parse_checkpoint_of(of)?;
        let running = {
            let state = lock(&self.state);
            match state.jobs.get(&job) {
                Some(j) => !j.driver.is_ended(),
                None if state.ended.iter().any(|e| e.info.id == job) => false,
                None => return Err(crate::model::unknown_job(job.as_str())),
            }
        };
        if running {
            return Err(ApiError::Conflict(format!(
                "job {job} is still running: a new job starts from a retained checkpoint of an ended job only \
                 (stop it with a savepoint and start from that, or cancel it first)"
            )));
        }
        let Some(root) = self.config.checkpoint_dir.clone().filter(|_| checkpointed) else {
            return Err(ApiError::Conflict("fromCheckpointOf needs checkpointIntervalMs (and a jobmanager with --checkpoint-dir)".into()));
        };
        let store = checkpoint_store(&CheckpointConfig { dir: root, interval_ms: 0, retain: 0 }, &job)?;
        let what = job.clone();
        let found = tokio::task::spawn_blocking(move || {
            let newest = store.checkpoint_ids()?.last().copied().unwrap_or(0);
            let found = match id {
                Some(id) => store.intact(id)?,
                None => store.find_restore()?.found,
            };
            Ok::<_, weir_checkpoint::StorageError>((found, newest))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("reading the checkpoints of job {what}: {e}")))?
        .map_err(|e| ApiError::Internal(format!("reading the checkpoints of job {what}: {e}")))?;
        let (Some(meta), newest) = found else {
            let which = id.map_or_else(|| "no completed checkpoint".to_string(), |id| format!("no intact completed checkpoint {id}"));
            return Err(ApiError::Conflict(format!(
                "job {job} has {which} retained (it took none, or retention deleted them): start it from a savepoint or afresh"
            )));
        };
        let path = format!("{job}/chk-{}/{}", meta.id, weir_checkpoint::METADATA_FILE);
        Ok((job, path, meta, newest))
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
    pub(crate) fn cancel(self: &Arc<Self>, job: &JobId) -> bool {
        let mut state = lock(&self.state);
        if !state.jobs.contains_key(job) {
            return false;
        }
        self.drive_locked(&mut state, job, Event::Cancel);
        true
    }

    /// Asks for a savepoint of a running, checkpointed job; answers once written.
    pub(crate) fn savepoint(self: &Arc<Self>, job: &JobId, dir: String, stop: bool) -> oneshot::Receiver<Result<u64, String>> {
        let (reply, answer) = oneshot::channel();
        let mut state = lock(&self.state);
        let Some(j) = state.jobs.get_mut(job) else {
            let _ = reply.send(Err(format!("no running job {job}")));
            return answer;
        };
        let request = j.await_reply(reply);
        self.drive_locked(&mut state, job, Event::Savepoint { request, dir, stop });
        answer
    }

    /// A live swap of a running job to new code (`new`): refused before anything
    /// starts when it cannot plan this job or plans another graph, or (a manifest
    /// job) a new component implements another world or cannot open an operator it
    /// is to run (the job runs on untouched); else answered once a checkpoint at its
    /// switch point completed, with that checkpoint's id.
    pub(crate) async fn swap(self: &Arc<Self>, job: &JobId, new: SwapCode) -> Result<u64, ApiError> {
        let (running, spec, running_bytes) = {
            let state = lock(&self.state);
            let j = state.jobs.get(job).ok_or_else(|| ApiError::NotFound(format!("no job {:?}", job.as_str())))?;
            (j.driver.deployment().clone(), j.spec.clone(), j.components.clone())
        };
        // The new code as a whole, and the names of the components it replaces.
        let (source, replaced) = match (new, &spec.manifest) {
            (SwapCode::Component(wasm), None) if running.code.components.len() == 1 => (JobSource::Component(wasm), vec![]),
            (SwapCode::Manifest(named), Some(text)) => manifest_swap(job, text, &running_bytes, named)?,
            (SwapCode::Component(_), _) => {
                return Err(ApiError::Conflict(format!(
                    "job {job} runs from a manifest: name the components to replace (weir swap {job} --operator NAME=FILE)"
                )));
            }
            (SwapCode::Manifest(_), None) => {
                return Err(ApiError::Conflict(format!("job {job} runs from one job component: swap it whole (weir swap {job} FILE)")));
            }
        };
        let runtime = self.runtime.clone();
        let (args, parallelism, input, output) = (running.args.clone(), spec.parallelism, spec.input.clone(), spec.output.clone());
        // The new code runs under the job's grants and reaches only its tenant's hosts.
        let capabilities = running.capabilities;
        let hosts = {
            let tenants = lock(&self.tenants);
            let owner = tenants.job_owner(job).map(|t| Caller::Tenant(t.to_string())).unwrap_or(Caller::Admin);
            tenants.hosts(&owner)
        };
        let (id1, id2, id3) = (job.clone(), job.clone(), job.clone());
        let incompatible =
            move |e: String| ApiError::Conflict(format!("the new component is incompatible with job {id1}, which runs on untouched: {e}"));
        let cannot = move |e: crate::planning::JobError| {
            ApiError::Unprocessable(format!("the new component cannot run job {id2}, which runs on untouched: {e}"))
        };
        let unfit = move |e: String| ApiError::Unprocessable(format!("the new component cannot run job {id3}, which runs on untouched: {e}"));
        let running_plan = running.plan.clone();
        // Compiles, runs `plan`, probes operators and connectors: off the async workers.
        let planned = tokio::task::spawn_blocking(move || {
            let planned = crate::planning::load_plan(&runtime, &source, &args, capabilities).map_err(&cannot)?;
            crate::planning::check_swap_uids(&running_plan, &planned.plan).map_err(incompatible)?;
            let (planned, graph) = crate::planning::bind(planned, parallelism, input, output, hosts.as_deref()).map_err(&cannot)?;
            let replaced: Vec<_> = replaced
                .into_iter()
                .map(|(i, name, bytes)| runtime.load(&bytes, World::Operator).map(|c| (i, name, c)))
                .collect::<Result<_, _>>()
                .map_err(|e| unfit(format!("the running component does not load: {e}")))?;
            crate::planning::check_swap_components(&runtime, &replaced, &planned, &graph, &args, capabilities).map_err(&unfit)?;
            Ok::<_, ApiError>((planned, graph))
        })
        .await;
        let (PlannedCode { plan, code, components }, graph) = planned.map_err(|e| ApiError::Internal(format!("planning panicked: {e}")))??;
        crate::planning::check_swap((&running.plan, &running.graph, &running.code), (&plan, &graph, &code))
            .map_err(|e| ApiError::Conflict(format!("the new component is incompatible with job {job}, which runs on untouched: {e}")))?;
        if code.components == running.code.components {
            return Err(ApiError::Conflict(format!("job {job} already runs this code")));
        }
        let (reply, answer) = oneshot::channel();
        {
            let mut state = lock(&self.state);
            let Some(j) = state.jobs.get_mut(job) else { return Err(ApiError::NotFound(format!("no job {:?}", job.as_str()))) };
            for (hash, (_, bytes)) in code.components.iter().zip(components) {
                if !j.swap_components.iter().any(|(h, _)| h == hash) {
                    j.swap_components.push((hash.clone(), bytes));
                }
            }
            let request = j.await_reply(reply);
            self.drive_locked(&mut state, job, Event::Swap { request, components: code.components });
        }
        match answer.await {
            Ok(Ok(checkpoint)) => Ok(checkpoint),
            Ok(Err(e)) => Err(ApiError::Conflict(e)),
            Err(_) => Err(ApiError::Conflict(format!("job {job} ended before the swap completed"))),
        }
    }

    /// A finished or cancelled job just ended: it keeps only its newest checkpoint
    /// (`store`), and ended jobs past the newest `retain_ended` lose theirs.
    fn prune_checkpoints(&self, state: &State, store: Option<Arc<weir_checkpoint::JobCheckpoints>>) {
        let Some(root) = self.config.checkpoint_dir.clone() else { return };
        let ended = state.ended.iter().map(|e| retention::Ended {
            id: &e.info.id,
            status: e.info.report.status,
            checkpointed: e.info.spec.checkpoint_interval_ms.is_some(),
        });
        // Until a job started from another's checkpoint completed one of its own, a
        // restart restores that other job's.
        let held: Vec<&str> = state
            .jobs
            .values()
            .filter(|j| j.driver.last_checkpoint().is_none())
            .filter_map(|j| match j.driver.initial_restore() {
                Some(RestoreFrom::CheckpointOf { job, .. }) => Some(job.as_str()),
                _ => None,
            })
            .collect();
        let expired = retention::expired(ended, self.config.retain_ended as usize, &held);
        tokio::task::spawn_blocking(move || {
            if let Some(store) = store {
                // Writes still in flight (a checkpoint completing as the job ended)
                // hold the store: trim after them, or they would add one back.
                let deadline = Instant::now() + Duration::from_secs(60);
                while Arc::strong_count(&store) > 1 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let trimmed = store.retain(1).and_then(|()| retention::drop_incomplete(&root, store.job()));
                if let Err(e) = trimmed {
                    tracing::warn!(job = %store.job(), "cannot drop the older checkpoints of an ended job: {e}");
                }
            }
            for job in expired {
                if let Err(e) = retention::delete(&root, &job) {
                    tracing::warn!(%job, "cannot delete the checkpoints of an ended job: {e}");
                }
            }
        });
    }

    /// Moves ended jobs into the history (persisted), keeping the newest ones.
    fn retire(&self, state: &mut State) {
        let ended: Vec<JobId> = state.jobs.iter().filter(|(_, j)| j.driver.is_ended()).map(|(id, _)| id.clone()).collect();
        for id in ended {
            let Some(mut j) = state.jobs.remove(&id) else { continue };
            let e = j.ended(&lock(&self.registry));
            // History first, then forget the running record: a JobManager killed in
            // between finds the job in one of the two, never in neither.
            self.persistence.write_history(&e);
            self.persistence.delete_job(&id);
            let prune = retention::prunable(e.info.report.status, j.store.is_some());
            state.ended.push_back(e);
            if prune {
                self.prune_checkpoints(state, j.store.clone());
            }
            while state.ended.len() > HISTORY {
                let Some(old) = state.ended.pop_front() else { break };
                // Banked before the record goes: a crash in between counts it once.
                if let Err(e) = lock(&self.tenants).bank_job(&old.info.id, old.metrics.fuel()) {
                    tracing::warn!(job = %old.info.id, "cannot bank the fuel of a job leaving the history: {e}");
                }
                self.persistence.delete_history(&old.info.id);
            }
        }
    }
}

/// New code for a running job (`Shared::swap`).
pub(crate) enum SwapCode {
    /// A job component in place of the job's one.
    Component(Arc<Vec<u8>>),
    /// Components of a manifest job, by the names its manifest gives them; the others
    /// stay.
    Manifest(BTreeMap<String, Arc<Vec<u8>>>),
}

/// Components a swap replaces: index, the manifest's name, the running bytes.
type Replaced = Vec<(usize, String, Arc<Vec<u8>>)>;

/// A manifest job's code with the components `named` replaced: the job source of all
/// its components (`running`: the running ones' bytes, by index) and the replaced ones
/// (index, name, running bytes). A name the manifest does not use is refused.
fn manifest_swap(
    job: &JobId,
    text: &str,
    running: &[Arc<Vec<u8>>],
    mut named: BTreeMap<String, Arc<Vec<u8>>>,
) -> Result<(JobSource, Replaced), ApiError> {
    let names = weir_types::manifest::Manifest::parse(text)
        .and_then(|m| m.lower())
        .map_err(|e| ApiError::Internal(format!("the manifest of job {job} no longer lowers: {e}")))?
        .components;
    if let Some(unknown) = named.keys().find(|n| !names.contains(n)) {
        return Err(ApiError::Unprocessable(format!(
            "the manifest of job {job} names no component {unknown:?} (it names {}); the job runs on untouched",
            names.join(", ")
        )));
    }
    if named.is_empty() {
        return Err(ApiError::Unprocessable("no component to replace".into()));
    }
    let mut components = HashMap::new();
    let mut replaced = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let old = running.get(i).cloned().ok_or_else(|| ApiError::Internal(format!("job {job} lacks the bytes of component {name:?}")))?;
        let bytes = match named.remove(&name) {
            Some(new) => {
                replaced.push((i, name.clone(), old));
                new
            }
            None => old,
        };
        components.insert(name, bytes);
    }
    Ok((JobSource::Manifest { text: text.to_string(), components }, replaced))
}

/// The Job spec of a job running `components` after a live swap: a job component's
/// artifact id, or each manifest component's, is its hash.
fn swapped_spec(spec: &SubmitSpec, components: &[ComponentHash]) -> SubmitSpec {
    let mut spec = spec.clone();
    if spec.artifact.is_some()
        && let [hash] = components
    {
        spec.artifact = Some(hash.to_string());
    }
    if let Some(text) = &spec.manifest {
        let names = weir_types::manifest::Manifest::parse(text).and_then(|m| m.lower()).map(|l| l.components).unwrap_or_default();
        for (name, hash) in names.iter().zip(components) {
            spec.components.insert(name.clone(), hash.to_string());
        }
    }
    spec
}

/// `JOB` or `JOB/ID` of `fromCheckpointOf`.
pub(crate) fn parse_checkpoint_of(of: &str) -> Result<(JobId, Option<u64>), ApiError> {
    let bad = || ApiError::BadRequest(format!("fromCheckpointOf must be JOB or JOB/CHECKPOINT_ID, got {of:?}"));
    let (job, id) = match of.split_once('/') {
        Some((job, id)) => (job, Some(id.parse::<u64>().map_err(|_| bad())?)),
        None => (of, None),
    };
    Ok((job.parse().map_err(|_| bad())?, id))
}

/// Checks that the checkpoint or savepoint (`what`) a job starts from fits it: the same
/// key groups, and (unless `allow_non_restored`) no state of an operator the job lacks,
/// which would be silently lost (Flink's rule: it is most likely another job's).
/// Answers its checkpoint id.
fn check_restored(what: &str, meta: &CheckpointMeta, max_parallelism: u32, uids: Vec<String>, allow_non_restored: bool) -> Result<u64, ApiError> {
    if meta.max_parallelism != max_parallelism {
        return Err(ApiError::Unprocessable(format!(
            "{what} has {} key groups but the job has {max_parallelism}; max parallelism cannot change",
            meta.max_parallelism
        )));
    }
    let stateful = |v: &&VertexMeta| v.tasks.iter().any(|t| !t.state.is_empty() || t.source.is_some() || t.sink.is_some());
    let lost: Vec<&str> = meta.vertices.iter().filter(stateful).map(|v| v.uid.as_str()).filter(|uid| !uids.iter().any(|u| u == uid)).collect();
    if !lost.is_empty() && !allow_non_restored {
        return Err(ApiError::Unprocessable(format!(
            "{what} holds state of operator(s) {} that this job does not have (it may be another job's savepoint); \
             allow dropping it with allowNonRestoredState (--allow-non-restored-state)",
            lost.join(", ")
        )));
    }
    Ok(meta.id)
}
