//! Serving HTTP so that no client can hold the process's resources: a connection must
//! send a request's headers within `header_timeout` of its opening or of the end of
//! its previous response (so idle and trickling connections are closed), and at most
//! `max_connections` are served at once. Connections past the cap wait in the
//! kernel's listen backlog, where they cost no file descriptor, and are served in
//! arrival order as others close: the descriptors the rest of the process needs
//! (checkpoint files, QUIC) are never taken by clients.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

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
        let _ = setrlimit(Resource::Nofile, limit.clone());
        limit = getrlimit(Resource::Nofile);
    }
    let descriptors = limit.current.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    wanted.min(descriptors / 2).max(1)
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, lets requests in progress finish (up to `header_timeout`), and returns.
pub async fn serve(listener: TcpListener, router: Router, limits: ServeLimits, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
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
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = tokio::time::timeout(limits.header_timeout, conn).await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it ends: taking them all waits for them.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.header_timeout + Duration::from_secs(1), slots.acquire_many(all)).await;
    Ok(())
}
