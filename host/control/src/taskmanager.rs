//! A TaskManager's side of the control plane, and the client's status query.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use weir_net::{Connection, Endpoint, FrameError, FramedRecv, FramedSend, NetError};

use crate::protocol::{ClusterView, FromJobManager, Hello, ToJobManager};

/// Name the JobManager's certificate must carry.
pub const JOBMANAGER_NAME: &str = "jobmanager";

/// Why talking to the JobManager failed.
#[derive(Debug, Error)]
pub enum ControlError {
    /// Connecting or the connection failed (including TLS refusals).
    #[error(transparent)]
    Net(#[from] NetError),
    /// A message could not be sent or read.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer is a cluster member but not the JobManager.
    #[error("the peer at {addr} is {name:?}, not the jobmanager")]
    NotJobManager {
        /// Address dialed.
        addr: SocketAddr,
        /// Its certificate name.
        name: String,
    },
    /// The JobManager answered something unexpected or hung up.
    #[error("jobmanager: {0}")]
    Protocol(String),
}

async fn open(endpoint: &Endpoint, jm: SocketAddr, hello: Hello) -> Result<(Connection, FramedSend<ToJobManager>, FramedRecv<FromJobManager>), ControlError> {
    let conn = endpoint.connect(jm).await?;
    if conn.peer_name() != JOBMANAGER_NAME {
        return Err(ControlError::NotJobManager { addr: jm, name: conn.peer_name().to_string() });
    }
    let (mut tx, rx) = conn.open_control::<ToJobManager, FromJobManager>().await?;
    tx.send(&ToJobManager::Hello(hello)).await?;
    Ok((conn, tx, rx))
}

/// A registered TaskManager.
pub struct Registration {
    /// Id in the JobManager's registry.
    pub id: u64,
    _conn: Connection,
    tx: FramedSend<ToJobManager>,
    interval: Duration,
}

/// Registers `slots` with the JobManager at `jm`.
pub async fn register(endpoint: &Endpoint, jm: SocketAddr, slots: u32) -> Result<Registration, ControlError> {
    let (conn, tx, mut rx) = open(endpoint, jm, Hello::TaskManager { slots }).await?;
    match rx.recv().await? {
        Some(FromJobManager::Registered { id, heartbeat_ms }) => {
            Ok(Registration { id, _conn: conn, tx, interval: Duration::from_millis(heartbeat_ms.max(10)) })
        }
        Some(other) => Err(ControlError::Protocol(format!("expected registration, got {other:?}"))),
        None => Err(ControlError::Protocol("closed the stream instead of registering".into())),
    }
}

impl Registration {
    /// Sends heartbeats until the connection fails; returns why it failed.
    pub async fn heartbeat_forever(mut self) -> ControlError {
        loop {
            tokio::time::sleep(self.interval).await;
            if let Err(e) = self.tx.send(&ToJobManager::Heartbeat).await {
                return e.into();
            }
        }
    }
}

/// Asks the JobManager at `jm` for its resource view.
pub async fn status(endpoint: &Endpoint, jm: SocketAddr) -> Result<ClusterView, ControlError> {
    let (_conn, mut tx, mut rx) = open(endpoint, jm, Hello::Client).await?;
    tx.send(&ToJobManager::Status).await?;
    match rx.recv().await? {
        Some(FromJobManager::Status(view)) => Ok(view),
        Some(other) => Err(ControlError::Protocol(format!("expected a status, got {other:?}"))),
        None => Err(ControlError::Protocol("closed the stream without answering".into())),
    }
}
