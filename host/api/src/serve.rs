//! Serving HTTP so that no client can hold the process's resources:
//!
//! - a connection must send a request's headers within `header_timeout` of its
//!   opening or of the end of its previous response, so idle and trickling
//!   connections are closed;
//! - at most `max_connections` are served at once (within the process's descriptor
//!   budget, [`connection_budget`]), plus one being accepted. Past the cap, the oldest
//!   connection that has not sent a request yet is closed to make room: under a flood
//!   of idle connections a real client is served at once instead of queueing behind
//!   them. When every connection is busy with a request, new ones wait in the kernel's
//!   listen backlog ([`bind`]), where they cost no descriptor.
//!
//! So the descriptors the rest of the process needs (checkpoint files, QUIC) are
//! never taken by clients.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tower_service::Service;

/// The bounds of an HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Time a connection has to deliver a request's headers, from its opening or the
    /// end of its previous response: covers idle keep-alive connections too.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self { header_timeout: Duration::from_secs(10), max_connections: 256 }
    }
}

/// Open connections a process may give HTTP clients: `wanted`, but never more than
/// half of its file-descriptor limit, which it first raises to the hard limit. The
/// other half stays for checkpoints, state and the network.
pub fn connection_budget(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        // Keep the soft limit if raising it is refused: it still bounds the budget.
        let _ = setrlimit(Resource::Nofile, limit);
        limit = getrlimit(Resource::Nofile);
    }
    let descriptors = limit.current.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    wanted.min(descriptors / 2).max(1)
}

/// Listens on `addr` with a listen backlog of 4096 (the kernel caps it at its
/// `somaxconn`): connections past the cap wait there. The usual 128 fills up under a
/// few hundred held connections, and clients then wait on SYN retries for minutes.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Connections that have not sent a request yet, oldest first, each with the sender
/// that closes it.
#[derive(Default)]
struct Waiting {
    next: u64,
    conns: BTreeMap<u64, oneshot::Sender<()>>,
}

fn lock(w: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    // Plain map updates: a panic elsewhere cannot leave it inconsistent.
    w.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, lets requests in progress finish (up to `header_timeout`), and returns.
pub async fn serve(listener: TcpListener, router: Router, limits: ServeLimits, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    serve_on(listener, router, limits, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (HTTPS only: see [`crate::tls`]). The TLS
/// handshake counts against `header_timeout` like the request's headers.
pub async fn serve_on(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors (or a connection reset before we took it):
                    // wait for some to close rather than spin.
                    tracing::warn!("accepting an http connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the cap: close the oldest connection still silent, if any, and
                // take its slot as it ends.
                let oldest = lock(&waiting).conns.pop_first();
                if let Some((_, close)) = oldest {
                    let _ = close.send(());
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
                    () = &mut shutdown => break,
                }
            }
        };
        let (close_tx, close_rx) = oneshot::channel();
        let id = {
            let mut w = lock(&waiting);
            w.next += 1;
            let id = w.next;
            w.conns.insert(id, close_tx);
            id
        };
        let (router, waiting, stop, tls) = (router.clone(), waiting.clone(), stop_rx.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let conn = Conn { router, waiting: waiting.clone(), id, limits, stop };
            tokio::select! {
                () = conn.run(stream, tls) => {}
                // Closed to make room; a dropped sender (it sent a request) is not that.
                Ok(()) = close_rx => {}
            }
            lock(&waiting).conns.remove(&id);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it ends: taking them all waits for them.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.header_timeout + Duration::from_secs(1), slots.acquire_many(all)).await;
    Ok(())
}

/// One accepted connection.
struct Conn {
    router: Router,
    waiting: Arc<Mutex<Waiting>>,
    id: u64,
    limits: ServeLimits,
    stop: watch::Receiver<bool>,
}

impl Conn {
    async fn run(mut self, stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        let Some(acceptor) = tls else { return self.http1(stream).await };
        let mut stop = self.stop.clone();
        let secured = tokio::select! {
            s = tokio::time::timeout(self.limits.header_timeout, crate::tls::accept(&acceptor, stream)) => s,
            () = async { drop(stop.wait_for(|s| *s).await) } => return,
        };
        match secured {
            Ok(Ok(Some(stream))) => self.http1(stream).await,
            // Refused (plain HTTP) or closed before a handshake: nothing to serve.
            Ok(Ok(None)) => {}
            // A client that does not trust the certificate ends here: it is its error
            // to report, so ours stays at debug.
            Ok(Err(e)) => tracing::debug!("tls handshake failed: {e}"),
            Err(_) => tracing::debug!("tls handshake timed out"),
        }
    }

    async fn http1<I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(&mut self, io: I) {
        let (router, waiting, id) = (self.router.clone(), self.waiting.clone(), self.id);
        let service = hyper::service::service_fn(move |request| {
            // It sent a request: no longer closed to make room.
            lock(&waiting).conns.remove(&id);
            router.clone().call(request)
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let stop = &mut self.stop;
        tokio::select! {
            _ = conn.as_mut() => {}
            () = async { drop(stop.wait_for(|s| *s).await) } => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(self.limits.header_timeout, conn).await;
            }
        }
    }
}
