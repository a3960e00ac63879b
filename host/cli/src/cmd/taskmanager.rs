//! `weir taskmanager`: a TaskManager process offering slots to a JobManager (and
//! optionally Prometheus metrics over HTTP).
//!
//! SIGTERM or SIGINT stops it gracefully: it stops serving metrics, cancels its
//! subtasks, closes its connections (the JobManager hears at once and restarts the
//! jobs elsewhere) and removes its temporary state directory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::common::{HttpArgs, IdentityArgs, SandboxArgs, Signals, resolved, runtime, state_dir};

#[derive(Args)]
pub struct TaskManagerArgs {
    /// The JobManager's address.
    #[arg(long)]
    jobmanager: std::net::SocketAddr,
    /// Slots to offer.
    #[arg(long, default_value_t = 2)]
    slots: u32,
    /// Address of this TaskManager's data plane (UDP, QUIC); other TaskManagers dial it.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// The data-plane address other TaskManagers dial, when it differs from --listen
    /// (NAT, port forwarding). With --listen on 0.0.0.0 and no --advertise, peers dial
    /// the address the JobManager sees this TaskManager at.
    #[arg(long)]
    advertise: Option<std::net::SocketAddr>,
    /// Keyed-state directory [default: a temporary directory, removed at exit; those
    /// of killed TaskManagers are removed by the next one].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Memory budget of each keyed operator's state cache per subtask, in MiB.
    #[arg(long, default_value_t = 32)]
    state_cache_mib: usize,
    /// Serve Prometheus metrics on this address (`/metrics`). On loopback it speaks
    /// plain HTTP; anywhere else HTTPS with this node's certificate, which names
    /// `weir.cluster` and is signed by the cluster CA (ca.pem): scrapers trust that CA
    /// and verify that name (Prometheus: `tls_config { ca_file, server_name }`).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Serve plain HTTP on a non-loopback --metrics-listen (for a trusted network, or a
    /// TLS proxy in front): what the TaskManager runs, for which tenants, is then
    /// readable by anyone on the way.
    #[arg(long, requires = "metrics_listen")]
    metrics_plain_http: bool,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    id: IdentityArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// How long a stopping TaskManager waits for its subtasks to end and its connections
/// to close.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub fn run(a: TaskManagerArgs) -> Result<()> {
    let rt = runtime()?;
    let mut signals = rt.block_on(async { Signals::install() })?;
    let (id, ca) = a.id.load()?;
    let sandbox = weir_wasm::Runtime::new(a.sandbox.limits(), a.sandbox.cache_dir()).context("cannot start the Wasm sandbox")?;
    let (state_dir, _temp_state) = state_dir(&a.state_dir)?;
    let state = weir_state::StateStore::open(&state_dir).context("cannot open the state store")?;
    rt.block_on(async {
        let endpoint = weir_net::Endpoint::bind(a.listen, &id, &ca)?;
        let data = weir_taskmanager::dataplane::DataPlane::new(tokio::runtime::Handle::current(), endpoint);
        let tm = weir_taskmanager::TaskManager::new(sandbox, state, a.state_cache_mib << 20, Some(data.clone()));
        let mut own = a.id.own_files();
        own.push(state_dir.clone());
        tm.deny_own_files(resolved(own).into_iter().map(PathBuf::from).collect());
        let addr = data.local_addr().context("no local address")?;
        println!("taskmanager {} offering {} slots, data plane on {addr}", id.name(), a.slots);
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut metrics = None;
        if let Some(listen) = a.metrics_listen {
            let tls = match listen.ip().is_loopback() || a.metrics_plain_http {
                true => None,
                false => Some(weir_api::tls::server_config(id.chain().to_vec(), id.key()).context("this node's certificate and key do not fit")?),
            };
            if tls.is_none() && !listen.ip().is_loopback() {
                tracing::warn!("metrics on {listen} are served as plain HTTP (--metrics-plain-http)");
            }
            let http = weir_api::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            println!("metrics on {scheme}://{}/metrics", http.local_addr().context("no local address")?);
            let router = weir_api::taskmanager_router(tm.clone(), a.slots);
            let limits = a.http.limits();
            metrics = Some(tokio::spawn(async move {
                if let Err(e) = weir_api::serve_on(http, router, limits, tls, async move { drop(http_stopped.await) }).await {
                    tracing::error!("the metrics endpoint stopped: {e}");
                }
            }));
        }
        std::io::Write::flush(&mut std::io::stdout())?;
        tokio::spawn(data.clone().serve());
        // Serves until the process ends, registering again whenever the JobManager is
        // lost; it returns only when the first registration fails.
        let serving = weir_taskmanager::service::serve_forever(tm.clone(), data.clone(), a.jobmanager, a.slots, a.advertise);
        let signal = tokio::select! {
            Err(e) = serving => return Err(anyhow::Error::new(e).context(format!("cannot register with the jobmanager at {}", a.jobmanager))),
            signal = signals.recv() => signal,
        };
        tracing::info!("{signal}: stopping (cancelling subtasks, removing temporary state)");
        let _ = stop_http.send(());
        let runs = tm.running_jobs();
        for run in &runs {
            tm.cancel(run);
        }
        let ended = tokio::time::timeout(STOP_GRACE, async {
            while !tm.running_jobs().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        if ended.await.is_err() {
            tracing::warn!("subtasks still running after {STOP_GRACE:?}; exiting anyway");
        }
        data.endpoint().close(weir_net::CLOSE_OK, "taskmanager stopping");
        let _ = tokio::time::timeout(STOP_GRACE, data.endpoint().wait_idle()).await;
        if let Some(m) = metrics {
            let _ = tokio::time::timeout(STOP_GRACE, m).await;
        }
        Ok(())
    })
}
