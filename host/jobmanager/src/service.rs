//! The `weir jobmanager` process: serves TaskManagers (registration, heartbeats,
//! deployment orders, subtask ends) and clients (status, submit, cancel).
//!
//! A submission is loaded and planned here, placed on free slots, then deployed in
//! two phases: every TaskManager involved prepares its subtasks (fetching the
//! component only if it lacks it) and wires its inputs; only when all are prepared
//! are they started, so no producer ever sends to a consumer that does not exist yet.
//! The first failure, a lost TaskManager or a user's cancel fans out as a cancel to
//! every TaskManager of the job.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use weir_control::client::{recv_chunks, send_chunks};
use weir_control::protocol::{FromJobManager, Hello, SubmitRequest, TASKMANAGER_PREFIX, ToJobManager};
use weir_control::registry::Registry;
use weir_net::{CLOSE_PROTOCOL_ERROR, CLOSE_UNAUTHORIZED, Connection, Endpoint, FramedRecv, FramedSend};
use weir_types::deployment::{JobDeployment, JobReport, SinkFiles, place};
use weir_wasm::Runtime;

use crate::embedded::{new_job_id, prepare};
use crate::tracker::JobTracker;

/// How the JobManager watches its TaskManagers.
#[derive(Debug, Clone, Copy)]
pub struct JobManagerConfig {
    /// A TaskManager silent for longer than this is lost.
    pub heartbeat_timeout: Duration,
    /// How often TaskManagers are told to send heartbeats.
    pub heartbeat_interval: Duration,
}

impl Default for JobManagerConfig {
    fn default() -> Self {
        Self { heartbeat_timeout: Duration::from_secs(3), heartbeat_interval: Duration::from_millis(500) }
    }
}

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
}

#[derive(Default)]
struct State {
    /// Order queues of connected TaskManagers. Unbounded but small: a handful of
    /// control orders per job, and components are shared, not copied.
    orders: HashMap<u64, mpsc::UnboundedSender<Order>>,
    jobs: Vec<Job>,
}

struct Shared {
    registry: Mutex<Registry>,
    state: Mutex<State>,
    runtime: Runtime,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is completed under the lock before anything can panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves connections until the endpoint closes. `runtime` loads and plans submitted
/// components.
pub async fn serve(endpoint: Endpoint, config: JobManagerConfig, runtime: Runtime) {
    let shared = Arc::new(Shared { registry: Mutex::new(Registry::new(config.heartbeat_timeout)), state: Mutex::default(), runtime });
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
        tokio::spawn(async move { handle(conn, shared, config).await });
    }
}

async fn handle(conn: Connection, shared: Arc<Shared>, config: JobManagerConfig) {
    let (mut tx, mut rx) = match conn.accept_control::<FromJobManager, ToJobManager>().await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(peer = %conn.peer_name(), "no control stream: {e}");
            return;
        }
    };
    match next(&conn, &mut rx).await {
        Some(ToJobManager::Hello(Hello::TaskManager { slots, data_addr })) => taskmanager(conn, tx, rx, shared, config, slots, data_addr).await,
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
        ToJobManager::ComponentChunk(c) => Ok(c),
        other => Err(other),
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

    let mut registry = lock(&shared.registry);
    let free = registry.free();
    let counts: Vec<u32> = free.iter().map(|(_, n, _)| *n).collect();
    let Some(placement) = place(&graph, &counts) else {
        return Err(Refusal::Reply(format!("the job needs {} slots but only {} are free", graph.slots_needed(), counts.iter().sum::<u32>())));
    };
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

    let deployment = JobDeployment {
        job: new_job_id(),
        plan,
        graph,
        args: request.args,
        component: component.hash.clone(),
        placement,
        taskmanagers: free.iter().map(|(_, _, addr)| addr.clone()).collect(),
        sink_files: SinkFiles::PartPerSubtask,
        attempt: 0,
        checkpoints: None,
        restore: None,
    };
    let tms: Vec<u64> = free.iter().map(|(id, _, _)| *id).collect();
    let involved: HashSet<u64> = slots.iter().map(|(id, _)| *id).collect();
    let description = describe(&deployment, &tms, &shared.registry);
    let (ended_tx, ended_rx) = oneshot::channel();
    let job = deployment.job.clone();
    tracing::info!(%job, name = %deployment.plan.name, tasks = deployment.task_count(), taskmanagers = involved.len(), "job submitted");
    let mut state = lock(&shared.state);
    let tracker = JobTracker::new(&job, &deployment.plan.name, deployment.graph.clone(), deployment.placement.clone(), Instant::now());
    let deployment = Box::new(deployment);
    for (me, id) in tms.iter().enumerate() {
        if involved.contains(id)
            && let Some(orders) = state.orders.get(id)
        {
            let _ = orders.send(Order::Send(FromJobManager::Deploy { deployment: deployment.clone(), me: me as u32 }));
        }
    }
    let run = deployment.run_id();
    state.jobs.push(Job { tracker, run, tms, slots, preparing: involved, component: Arc::new(wasm), watchers: vec![ended_tx] });
    drop(state);
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

impl Shared {
    fn view(&self) -> weir_control::protocol::ClusterView {
        let mut view = lock(&self.registry).view(Instant::now());
        let now = Instant::now();
        view.jobs = lock(&self.state).jobs.iter().map(|j| j.tracker.report(now)).collect();
        view
    }

    fn cancel(&self, job: &str) -> bool {
        let mut state = lock(&self.state);
        let State { orders, jobs } = &mut *state;
        let Some(j) = jobs.iter_mut().find(|j| j.tracker.id() == job && !j.tracker.is_done()) else { return false };
        tracing::info!(job, "cancelling on request");
        if j.tracker.cancel(Instant::now()) {
            fan_out_cancel(orders, j);
        }
        true
    }

    /// Applies `f` to a running job, then ends the job if it is over.
    fn with_job(&self, job: &str, f: impl FnOnce(&mut Job, &HashMap<u64, mpsc::UnboundedSender<Order>>)) {
        let mut state = lock(&self.state);
        let State { orders, jobs } = &mut *state;
        let Some(j) = jobs.iter_mut().find(|j| j.run == job && !j.tracker.is_done()) else { return };
        f(j, orders);
        if j.tracker.is_done() {
            self.job_ended(j);
        }
        let ended = jobs.iter().filter(|j| j.tracker.is_done()).count();
        if ended > HISTORY
            && let Some(oldest) = jobs.iter().position(|j| j.tracker.is_done())
        {
            jobs.remove(oldest);
        }
    }

    fn job_ended(&self, j: &mut Job) {
        let mut registry = lock(&self.registry);
        for &(id, n) in &j.slots {
            registry.release(id, n);
        }
        j.slots.clear();
        j.component = Arc::new(Vec::new());
        let report = j.tracker.report(Instant::now());
        tracing::info!(job = %report.id, status = report.status.name(), error = report.error.as_deref().unwrap_or(""), "job ended");
        for w in j.watchers.drain(..) {
            let _ = w.send(report.clone());
        }
    }

    fn taskmanager_gone(&self, id: u64, name: &str) {
        let jobs: Vec<String> =
            lock(&self.state).jobs.iter().filter(|j| !j.tracker.is_done() && j.tms.contains(&id)).map(|j| j.run.clone()).collect();
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
}

fn fan_out_cancel(orders: &HashMap<u64, mpsc::UnboundedSender<Order>>, j: &Job) {
    for (id, _) in &j.slots {
        if let Some(o) = orders.get(id) {
            let _ = o.send(Order::Send(FromJobManager::Cancel { job: j.run.clone() }));
        }
    }
}

async fn taskmanager(
    conn: Connection,
    mut tx: FramedSend<FromJobManager>,
    mut rx: FramedRecv<ToJobManager>,
    shared: Arc<Shared>,
    config: JobManagerConfig,
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
    let heartbeat_ms = config.heartbeat_interval.as_millis() as u64;
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
            if j.preparing.is_empty() && j.tracker.status() == weir_types::deployment::JobStatus::Created {
                for (tm, _) in &j.slots {
                    if let Some(o) = orders.get(tm) {
                        let _ = o.send(Order::Send(FromJobManager::Start { job: job.clone() }));
                    }
                }
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
        ToJobManager::Cancel { .. } => "cancel",
    }
}

fn refuse(conn: &Connection, reason: &str) {
    tracing::warn!(peer = %conn.peer_name(), "closing connection: {reason}");
    conn.close(CLOSE_PROTOCOL_ERROR, reason);
}
