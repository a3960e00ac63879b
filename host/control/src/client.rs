//! The JobManager's peers' side of the control plane: opening a session (TaskManager
//! or client), and the client requests (status, submit, cancel).

use std::net::SocketAddr;

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use weir_net::{Connection, Endpoint, FrameError, FramedRecv, FramedSend, NetError};
use weir_types::deployment::JobReport;

use crate::protocol::{CHUNK_BYTES, ClusterView, FromJobManager, Hello, SubmitRequest, ToJobManager};

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
    /// The JobManager refused the request.
    #[error("the jobmanager refused: {0}")]
    Refused(String),
    /// The peer answered something unexpected or hung up.
    #[error("{0}")]
    Protocol(String),
}

/// An open control session with the JobManager.
pub struct Session {
    /// The connection (kept open as long as the session).
    pub conn: Connection,
    /// Messages to the JobManager.
    pub tx: FramedSend<ToJobManager>,
    /// Messages from the JobManager.
    pub rx: FramedRecv<FromJobManager>,
}

/// Connects to the JobManager at `jm` and says who we are.
pub async fn open(endpoint: &Endpoint, jm: SocketAddr, hello: Hello) -> Result<Session, ControlError> {
    let conn = endpoint.connect(jm).await?;
    if conn.peer_name() != JOBMANAGER_NAME {
        return Err(ControlError::NotJobManager { addr: jm, name: conn.peer_name().to_string() });
    }
    let (mut tx, rx) = conn.open_control::<ToJobManager, FromJobManager>().await?;
    tx.send(&ToJobManager::Hello(hello)).await?;
    Ok(Session { conn, tx, rx })
}

impl Session {
    /// The next message; a hang-up is an error.
    pub async fn next(&mut self) -> Result<FromJobManager, ControlError> {
        match self.rx.recv().await? {
            Some(FromJobManager::Refused(why)) => Err(ControlError::Refused(why)),
            Some(m) => Ok(m),
            None => Err(ControlError::Protocol("the jobmanager closed the stream".into())),
        }
    }
}

/// Sends `bytes` as chunk messages made by `wrap`.
pub async fn send_chunks<T: Serialize>(tx: &mut FramedSend<T>, bytes: &[u8], wrap: impl Fn(Vec<u8>) -> T) -> Result<(), FrameError> {
    for chunk in bytes.chunks(CHUNK_BYTES) {
        tx.send(&wrap(chunk.to_vec())).await?;
    }
    Ok(())
}

/// Reads `size` bytes of chunk messages, which `unwrap` recognizes; anything else
/// on the stream meanwhile is a protocol error.
pub async fn recv_chunks<T: DeserializeOwned>(
    rx: &mut FramedRecv<T>,
    size: u64,
    unwrap: impl Fn(T) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, ControlError> {
    // The size was checked against the component limit by the caller; grow as bytes arrive.
    let mut out = Vec::with_capacity(size.min(CHUNK_BYTES as u64) as usize);
    while (out.len() as u64) < size {
        match rx.recv().await? {
            Some(m) => match unwrap(m) {
                Some(chunk) if out.len() as u64 + chunk.len() as u64 <= size => out.extend_from_slice(&chunk),
                Some(_) => return Err(ControlError::Protocol("component chunks exceed the announced size".into())),
                None => return Err(ControlError::Protocol("expected a component chunk, got another message".into())),
            },
            None => return Err(ControlError::Protocol("the stream ended inside a component".into())),
        }
    }
    Ok(out)
}

/// Asks the JobManager at `jm` for its resource view and jobs.
pub async fn status(endpoint: &Endpoint, jm: SocketAddr) -> Result<ClusterView, ControlError> {
    let mut s = open(endpoint, jm, Hello::Client).await?;
    s.tx.send(&ToJobManager::Status).await?;
    match s.next().await? {
        FromJobManager::Status(view) => Ok(view),
        other => Err(ControlError::Protocol(format!("expected a status, got {other:?}"))),
    }
}

/// A job the JobManager accepted; the session stays open to hear of its end.
pub struct Submitted {
    /// Job id.
    pub job: String,
    /// The execution graph, described.
    pub graph: String,
    session: Session,
}

/// Submits a job with its component.
pub async fn submit(endpoint: &Endpoint, jm: SocketAddr, mut request: SubmitRequest, wasm: &[u8]) -> Result<Submitted, ControlError> {
    let mut s = open(endpoint, jm, Hello::Client).await?;
    request.size = wasm.len() as u64;
    s.tx.send(&ToJobManager::Submit(request)).await?;
    send_chunks(&mut s.tx, wasm, ToJobManager::ComponentChunk).await?;
    match s.next().await? {
        FromJobManager::Submitted { job, graph } => Ok(Submitted { job, graph, session: s }),
        other => Err(ControlError::Protocol(format!("expected a submission receipt, got {other:?}"))),
    }
}

impl Submitted {
    /// Waits until the job ends; its final report.
    pub async fn wait(mut self) -> Result<JobReport, ControlError> {
        match self.session.next().await? {
            FromJobManager::JobEnded(report) => Ok(report),
            other => Err(ControlError::Protocol(format!("expected the job's end, got {other:?}"))),
        }
    }
}

/// Asks the JobManager to cancel a job.
pub async fn cancel(endpoint: &Endpoint, jm: SocketAddr, job: &str) -> Result<(), ControlError> {
    let mut s = open(endpoint, jm, Hello::Client).await?;
    s.tx.send(&ToJobManager::Cancel { job: job.to_string() }).await?;
    match s.next().await? {
        FromJobManager::Cancelling { .. } => Ok(()),
        other => Err(ControlError::Protocol(format!("expected a cancellation receipt, got {other:?}"))),
    }
}

/// Asks the JobManager for a savepoint of `job` in `dir` (and to stop the job after it);
/// the checkpoint id it copies.
pub async fn savepoint(endpoint: &Endpoint, jm: SocketAddr, job: &str, dir: &str, stop: bool) -> Result<u64, ControlError> {
    let mut s = open(endpoint, jm, Hello::Client).await?;
    s.tx.send(&ToJobManager::Savepoint { job: job.to_string(), dir: dir.to_string(), stop }).await?;
    match s.next().await? {
        FromJobManager::SavepointDone { checkpoint, .. } => Ok(checkpoint),
        other => Err(ControlError::Protocol(format!("expected a savepoint, got {other:?}"))),
    }
}
