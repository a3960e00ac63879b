//! A TaskManager's side of the control plane: opening a session with the JobManager,
//! and components sent in chunks.

use std::net::SocketAddr;

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use weir_net::{Connection, Endpoint, FrameError, FramedRecv, FramedSend, NetError};

use crate::protocol::{CHUNK_BYTES, FromJobManager, Hello, ToJobManager};

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
