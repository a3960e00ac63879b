//! The `weir jobmanager` process: serves TaskManagers over QUIC (registration,
//! heartbeats, deployment orders, subtask ends, checkpoint acknowledgements) and runs
//! the timers (checkpoints and restarts due, lost TaskManagers). Each job's life is its
//! [`Driver`](crate::driver::Driver), fed and carried out by `jobs`; what survives a
//! JobManager restart is in `persist`.
//!
//! Fencing: a TaskManager silent past the heartbeat timeout is lost. Its attempts are
//! failed, and its connection is closed (if it was only paused, it hears so when it
//! wakes up, cancels its subtasks and registers anew with a new id); its messages about
//! superseded attempts are never counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use weir_control::client::send_chunks;
use weir_control::protocol::{FromJobManager, Hello, TASKMANAGER_PREFIX, ToJobManager};
use weir_net::{CLOSE_LOST, CLOSE_PROTOCOL_ERROR, CLOSE_UNAUTHORIZED, Connection, Endpoint, FramedRecv, FramedSend};
use weir_types::ids::{JobId, TaskManagerId};
use weir_wasm::Runtime;

use crate::artifacts::StoreError;
use crate::driver::Event;
use crate::jobs::{JobManagerConfig, Order, Shared, lock};

/// How often the JobManager looks for due checkpoints and restarts.
const TICK: Duration = Duration::from_millis(20);

/// A running JobManager: TaskManagers reach it over QUIC ([`JobManager::serve`]),
/// users through its operations in `api` (the REST API's).
#[derive(Clone)]
pub struct JobManager(pub(crate) Arc<Shared>);

impl JobManager {
    /// Starts the JobManager's timers (checkpoints, restarts, lost TaskManagers) and
    /// resumes the jobs a previous JobManager left running. `runtime` loads and plans
    /// submitted components.
    pub async fn start(config: JobManagerConfig, runtime: Runtime) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared::new(config.clone(), runtime)?);
        shared.recover_jobs().await;
        let ticker = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                let mut state = lock(&ticker.state);
                let jobs: Vec<JobId> = state.jobs.keys().cloned().collect();
                for job in jobs {
                    ticker.drive_locked(&mut state, &job, Event::Tick);
                }
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
        Ok(Self(shared))
    }

    /// Serves TaskManagers until the endpoint closes.
    pub async fn serve(&self, endpoint: &Endpoint) {
        while let Some(conn) = endpoint.accept().await {
            let shared = self.0.clone();
            tokio::spawn(async move { handle(conn, shared).await });
        }
    }
}

impl Shared {
    /// TaskManager `id` is gone: the attempts it ran fail.
    fn taskmanager_gone(self: &Arc<Self>, id: TaskManagerId, name: &str) {
        let mut state = lock(&self.state);
        let jobs: Vec<JobId> = state.jobs.keys().cloned().collect();
        for job in jobs {
            self.drive_locked(&mut state, &job, Event::TaskManagerLost { tm: id, name: name.to_string() });
        }
        state.orders.remove(&id);
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
    tracing::info!(taskmanager = %name, %id, slots, %data_addr, "taskmanager registered");
    let heartbeat_ms = shared.config.heartbeat_interval.as_millis() as u64;
    if tx.send(&FromJobManager::Registered { id, heartbeat_ms }).await.is_err() {
        lock(&shared.registry).disconnect(id, Instant::now());
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
                Order::Component { run, hash, bytes } => match tx.send(&FromJobManager::Component { run, hash, size: bytes.len() as u64 }).await {
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
                Some(m) => if !from_taskmanager(&shared, &conn, id, m) { break },
                None => break,
            },
        }
    }
    writer.abort();
    if lock(&shared.registry).disconnect(id, Instant::now()) {
        tracing::warn!(taskmanager = %name, "taskmanager disconnected");
    } else {
        conn.close(CLOSE_LOST, "declared lost: silent past the heartbeat timeout; register again");
    }
    shared.taskmanager_gone(id, &name);
}

/// Handles one message from TaskManager `id`; false if the connection must end.
fn from_taskmanager(shared: &Arc<Shared>, conn: &Connection, id: TaskManagerId, msg: ToJobManager) -> bool {
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
                if let Some(j) = state.jobs.get_mut(&p.run.job()) {
                    j.driver.progress(p, now);
                }
            }
        }
        ToJobManager::NeedComponents { run, hashes } => {
            let state = lock(&shared.state);
            let (Some(j), Some(o)) = (state.jobs.get(&run.job()).filter(|j| j.driver.run() == run), state.orders.get(&id)) else {
                return true;
            };
            for hash in hashes {
                // An ended job has dropped its components' bytes; a live swap's are
                // the job's only once it completed.
                let position = j.driver.deployment().code.components.iter().position(|h| *h == hash);
                let swapping = || j.swap_components.iter().find(|(h, _)| *h == hash).map(|(_, b)| b.clone());
                let Some(bytes) = position.and_then(|i| j.components.get(i)).cloned().or_else(swapping) else {
                    tracing::warn!(%run, taskmanager = %id, %hash, "a taskmanager asked for a component the job does not have (any more)");
                    continue;
                };
                tracing::info!(%run, taskmanager = %id, %hash, bytes = bytes.len(), "shipping a component");
                let _ = o.send(Order::Component { run: run.clone(), hash, bytes });
            }
        }
        ToJobManager::Prepared { run } => shared.drive(&run.job(), Event::Prepared { tm: id, run }),
        ToJobManager::PrepareFailed { run, error } => shared.drive(&run.job(), Event::PrepareFailed { tm: id, run, error }),
        ToJobManager::TaskEnded(end) => shared.drive(&end.run.job(), Event::TaskEnded(end)),
        ToJobManager::CheckpointAck(ack) => shared.drive(&ack.run.job(), Event::Ack(ack)),
        ToJobManager::EndOfInput(end) => shared.drive(&end.run.job(), Event::EndOfInput(end)),
        ToJobManager::SwapReady { run, result } => shared.drive(&run.job(), Event::SwapReady { tm: id, run, result }),
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
        ToJobManager::EndOfInput(_) => "end of input",
        ToJobManager::SwapReady { .. } => "swap ready",
    }
}

fn refuse(conn: &Connection, reason: &str) {
    tracing::warn!(peer = %conn.peer_name(), "closing connection: {reason}");
    conn.close(CLOSE_PROTOCOL_ERROR, reason);
}
