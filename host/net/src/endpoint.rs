//! The QUIC endpoint (one UDP socket, server and client at once) and its connections.
//!
//! Incoming handshakes run concurrently in a background task, so one slow or hostile
//! peer cannot hold up `accept`; failed handshakes (wrong CA, no client certificate,
//! wrong ALPN) are logged, counted and never surface as connections.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;

use crate::frame::FrameError;
use crate::identity::{CLUSTER_SERVER_NAME, CaCert, IdentityError, NodeIdentity, cert_common_name};
use crate::stream::{FramedRecv, FramedSend};
use crate::tls::{NetConfig, TlsError, client_config, server_config};

/// Application close code: orderly shutdown.
pub const CLOSE_OK: u32 = 0;
/// Application close code: the peer violated the framing or message protocol.
pub const CLOSE_PROTOCOL_ERROR: u32 = 1;
/// Application close code: the peer is authenticated but not welcome (e.g. unknown name).
pub const CLOSE_UNAUTHORIZED: u32 = 2;
/// Application close code: the JobManager declared this TaskManager lost (silent past
/// the heartbeat timeout); its attempts are superseded and it must register anew.
pub const CLOSE_LOST: u32 = 3;

/// Handshaken connections waiting for `accept`; beyond this, handshake tasks wait.
const ACCEPT_QUEUE: usize = 64;

/// Endpoint and connection failures.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No tokio runtime: quinn's I/O driver and our accept task need one.
    #[error("weir-net must be used inside a tokio runtime")]
    NoRuntime,
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS material could not be turned into a config.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A connection attempt could not even start (e.g. endpoint closed).
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed (including TLS refusals such as a
    /// certificate from another CA, reported as a crypto transport error).
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The peer's certificate carries no readable node name.
    #[error("peer identity: {0}")]
    PeerIdentity(#[from] IdentityError),
    /// A stream-level framing or transport error.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A data stream ended before its header frame.
    #[error("data stream ended before its header")]
    MissingHeader,
}

impl NetError {
    /// The connection-level cause, wherever it surfaced (connect, stream open, read or
    /// write): match on it to tell a refused certificate or a peer's close code apart.
    pub fn connection_error(&self) -> Option<&quinn::ConnectionError> {
        match self {
            Self::Connection(e) => Some(e),
            Self::Frame(f) => f.connection_error(),
            _ => None,
        }
    }
}

/// A QUIC endpoint bound to one UDP address, accepting and opening mutually
/// authenticated connections within one cluster.
#[derive(Debug)]
pub struct Endpoint {
    inner: quinn::Endpoint,
    incoming: Mutex<mpsc::Receiver<Connection>>,
    rejected: watch::Receiver<u64>,
    max_frame: u32,
    accept_task: JoinHandle<()>,
}

impl Endpoint {
    /// Binds `addr` (port 0 picks a free port) with [`NetConfig::default`].
    ///
    /// Must be called inside a tokio runtime (multi-thread or current-thread).
    pub fn bind(addr: SocketAddr, id: &NodeIdentity, ca: &CaCert) -> Result<Self, NetError> {
        Self::bind_with(addr, id, ca, &NetConfig::default())
    }

    /// Binds with explicit transport settings.
    pub fn bind_with(addr: SocketAddr, id: &NodeIdentity, ca: &CaCert, cfg: &NetConfig) -> Result<Self, NetError> {
        // quinn would panic without a runtime; make it an error instead.
        let rt = tokio::runtime::Handle::try_current().map_err(|_| NetError::NoRuntime)?;
        let _guard = rt.enter();
        let mut inner = quinn::Endpoint::server(server_config(id, ca, cfg)?, addr).map_err(|source| NetError::Bind { addr, source })?;
        inner.set_default_client_config(client_config(id, ca, cfg)?);
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let (rejected_tx, rejected) = watch::channel(0);
        let accept_task = rt.spawn(accept_loop(inner.clone(), tx, Arc::new(rejected_tx), cfg.max_frame));
        Ok(Self { inner, incoming: Mutex::new(rx), rejected, max_frame: cfg.max_frame, accept_task })
    }

    /// The bound local address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Connects to the node at `addr`; fails if it cannot prove membership of the cluster.
    ///
    /// With TLS 1.3 the client finishes its handshake before the server has checked the
    /// client certificate, so a server refusing *us* shows up as an error on the
    /// connection's first use (or [`Connection::closed`]), not necessarily here.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Connection, NetError> {
        let conn = self.inner.connect(addr, CLUSTER_SERVER_NAME)?.await?;
        Connection::new(conn, self.max_frame)
    }

    /// The next authenticated incoming connection; `None` once the endpoint is closed.
    pub async fn accept(&self) -> Option<Connection> {
        self.incoming.lock().await.recv().await
    }

    /// Count of refused incoming handshakes so far, as a watch (for metrics and tests).
    pub fn rejected_handshakes(&self) -> watch::Receiver<u64> {
        self.rejected.clone()
    }

    /// Closes every connection with `code`/`reason` and stops accepting.
    pub fn close(&self, code: u32, reason: &str) {
        self.accept_task.abort();
        self.inner.close(code.into(), reason.as_bytes());
    }

    /// Waits until every connection is closed and its close was sent (call before exit).
    pub async fn wait_idle(&self) {
        self.inner.wait_idle().await;
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // The task holds an endpoint handle; without this it would keep the socket open.
        self.accept_task.abort();
    }
}

/// Accepts incoming connections, handshaking each in its own task.
async fn accept_loop(ep: quinn::Endpoint, tx: mpsc::Sender<Connection>, rejected: Arc<watch::Sender<u64>>, max_frame: u32) {
    while let Some(incoming) = ep.accept().await {
        let (tx, rejected) = (tx.clone(), rejected.clone());
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let result = match incoming.await {
                Ok(conn) => Connection::new(conn, max_frame),
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(conn) => {
                    tracing::debug!(%remote, peer = conn.peer_name(), "accepted connection");
                    // The endpoint is gone if this fails; the connection just drops.
                    let _ = tx.send(conn).await;
                }
                Err(e) => {
                    tracing::warn!(%remote, error = %e, "refused incoming connection");
                    rejected.send_modify(|n| *n += 1);
                }
            }
        });
    }
}

/// An authenticated connection to another node of the cluster.
#[derive(Debug, Clone)]
pub struct Connection {
    inner: quinn::Connection,
    peer_name: Arc<str>,
    max_frame: u32,
}

impl Connection {
    fn new(inner: quinn::Connection, max_frame: u32) -> Result<Self, NetError> {
        // rustls has verified the chain; the leaf's common name is the node name.
        let name = inner
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>().ok())
            .and_then(|chain| chain.first().map(cert_common_name))
            .unwrap_or(Err(IdentityError::NoCommonName));
        match name {
            Ok(name) => Ok(Self { inner, peer_name: name.into(), max_frame }),
            Err(e) => {
                inner.close(CLOSE_UNAUTHORIZED.into(), b"certificate has no node name");
                Err(e.into())
            }
        }
    }

    /// The peer's node name, from its CA-signed certificate.
    pub fn peer_name(&self) -> &str {
        &self.peer_name
    }

    /// The peer's current UDP address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.inner.remote_address()
    }

    /// Largest frame payload on this connection's streams.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// Opens a bidirectional control stream sending `S` and receiving `R`.
    ///
    /// The peer's [`Connection::accept_control`] returns only once the first message
    /// has been sent here: QUIC announces a stream with its first byte.
    pub async fn open_control<S: Serialize, R: DeserializeOwned>(&self) -> Result<(FramedSend<S>, FramedRecv<R>), NetError> {
        let (send, recv) = self.inner.open_bi().await?;
        Ok((FramedSend::new(send, self.max_frame), FramedRecv::new(recv, self.max_frame)))
    }

    /// Accepts a control stream opened by the peer.
    pub async fn accept_control<S: Serialize, R: DeserializeOwned>(&self) -> Result<(FramedSend<S>, FramedRecv<R>), NetError> {
        let (send, recv) = self.inner.accept_bi().await?;
        Ok((FramedSend::new(send, self.max_frame), FramedRecv::new(recv, self.max_frame)))
    }

    /// Closes the connection with an application `code` and `reason` (both reach the
    /// peer as [`quinn::ConnectionError::ApplicationClosed`]); the reason is also logged.
    pub fn close(&self, code: u32, reason: &str) {
        if code == CLOSE_OK {
            tracing::debug!(peer = %self.peer_name, reason, "closing connection");
        } else {
            tracing::warn!(peer = %self.peer_name, code, reason, "closing connection with error");
        }
        self.inner.close(code.into(), reason.as_bytes());
    }

    /// Waits until the connection is closed, by either side, and says why.
    pub async fn closed(&self) -> quinn::ConnectionError {
        self.inner.closed().await
    }

    /// The underlying quinn connection, for what this crate does not wrap (stats, RTT).
    pub fn quinn(&self) -> &quinn::Connection {
        &self.inner
    }
}
