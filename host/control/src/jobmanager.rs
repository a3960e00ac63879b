//! The JobManager's control service: registrations, heartbeats, status queries.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use weir_net::{CLOSE_PROTOCOL_ERROR, CLOSE_UNAUTHORIZED, Connection, Endpoint, FramedRecv, FramedSend};

use crate::protocol::{FromJobManager, Hello, TASKMANAGER_PREFIX, ToJobManager};
use crate::registry::Registry;

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

type Shared = Arc<Mutex<Registry>>;

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    // Registry updates are single assignments; a panicking holder leaves it consistent.
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves connections until the endpoint closes.
pub async fn serve(endpoint: Endpoint, config: JobManagerConfig) {
    let registry: Shared = Arc::new(Mutex::new(Registry::new(config.heartbeat_timeout)));
    let reaper = registry.clone();
    tokio::spawn(async move {
        let tick = (config.heartbeat_timeout / 10).max(Duration::from_millis(20));
        loop {
            tokio::time::sleep(tick).await;
            for name in lock(&reaper).expire(Instant::now()) {
                tracing::warn!(taskmanager = %name, timeout = ?config.heartbeat_timeout, "taskmanager lost: no heartbeat within the timeout");
            }
        }
    });
    while let Some(conn) = endpoint.accept().await {
        let registry = registry.clone();
        tokio::spawn(async move { handle(conn, registry, config).await });
    }
}

async fn handle(conn: Connection, registry: Shared, config: JobManagerConfig) {
    let (mut tx, mut rx) = match conn.accept_control::<FromJobManager, ToJobManager>().await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(peer = %conn.peer_name(), "no control stream: {e}");
            return;
        }
    };
    match next(&conn, &mut rx).await {
        Some(ToJobManager::Hello(Hello::TaskManager { slots })) => taskmanager(conn, tx, rx, registry, config, slots).await,
        Some(ToJobManager::Hello(Hello::Client)) => {
            while let Some(msg) = next(&conn, &mut rx).await {
                let reply = match msg {
                    ToJobManager::Status => FromJobManager::Status(lock(&registry).view(Instant::now())),
                    other => return refuse(&conn, &format!("unexpected {other:?} from a client")),
                };
                if tx.send(&reply).await.is_err() {
                    return;
                }
            }
        }
        Some(other) => refuse(&conn, &format!("expected a hello, got {other:?}")),
        None => {}
    }
}

async fn taskmanager(
    conn: Connection,
    mut tx: FramedSend<FromJobManager>,
    mut rx: FramedRecv<ToJobManager>,
    registry: Shared,
    config: JobManagerConfig,
    slots: u32,
) {
    let name = conn.peer_name().to_string();
    if !name.starts_with(TASKMANAGER_PREFIX) {
        tracing::warn!(peer = %name, "refused: only taskmanager certificates may offer slots");
        conn.close(CLOSE_UNAUTHORIZED, "only taskmanager certificates may offer slots");
        return;
    }
    let id = lock(&registry).register(&name, &conn.remote_addr().to_string(), slots, Instant::now());
    tracing::info!(taskmanager = %name, id, slots, "taskmanager registered");
    let heartbeat_ms = config.heartbeat_interval.as_millis() as u64;
    if tx.send(&FromJobManager::Registered { id, heartbeat_ms }).await.is_err() {
        lock(&registry).disconnect(id);
        return;
    }
    while let Some(msg) = next(&conn, &mut rx).await {
        match msg {
            ToJobManager::Heartbeat => lock(&registry).heartbeat(id, Instant::now()),
            other => {
                refuse(&conn, &format!("unexpected {other:?} from a taskmanager"));
                break;
            }
        }
    }
    if lock(&registry).disconnect(id) {
        tracing::warn!(taskmanager = %name, "taskmanager disconnected");
    }
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

fn refuse(conn: &Connection, reason: &str) {
    tracing::warn!(peer = %conn.peer_name(), "closing connection: {reason}");
    conn.close(CLOSE_PROTOCOL_ERROR, reason);
}
