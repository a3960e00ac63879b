//! `weir jobmanager`: the JobManager process (QUIC for TaskManagers, the REST API,
//! the dashboard and /metrics over HTTP).
//!
//! SIGTERM or SIGINT stops it gracefully: the REST API stops accepting and finishes
//! the requests in progress, the TaskManagers' connections are closed (they cancel
//! their subtasks and wait for a JobManager to register with), and running jobs are
//! handed off: with `--checkpoint-dir` they are persisted, and the next JobManager
//! resumes them from their latest checkpoints.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::common::{HttpArgs, IdentityArgs, SandboxArgs, Signals, resolved, runtime, state_dir};

#[derive(Args)]
pub struct JobManagerArgs {
    /// Address to listen on (UDP, QUIC).
    #[arg(long, default_value = "127.0.0.1:6123")]
    listen: std::net::SocketAddr,
    /// Address of the REST API, web dashboard and /metrics (HTTP).
    #[arg(long, default_value = "127.0.0.1:8081")]
    rest_listen: std::net::SocketAddr,
    /// File with the API's bearer token [default: api-token next to the CA certificate].
    #[arg(long)]
    api_token_file: Option<PathBuf>,
    /// A TaskManager without heartbeat for this long is lost, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    heartbeat_timeout_ms: u64,
    /// A lost TaskManager stays listed (as lost) for this long, in milliseconds, then
    /// it is forgotten (a restarted one registers anew).
    #[arg(long, default_value_t = 600_000)]
    lost_taskmanager_grace_ms: u64,
    /// Checkpoint storage: a directory every TaskManager can reach at the same path.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Completed checkpoints kept per running job.
    #[arg(long, default_value_t = 3)]
    retain_checkpoints: u32,
    /// Finished or cancelled jobs that keep their newest checkpoint; older ones lose
    /// their checkpoints (savepoints are never deleted; a failed job keeps what it
    /// retained, to resume from).
    #[arg(long, default_value_t = 10)]
    retain_ended_jobs: u32,
    /// Where uploaded components are stored [default: _artifacts in the checkpoint
    /// directory, else a temporary directory removed at exit].
    #[arg(long)]
    artifact_dir: Option<PathBuf>,
    /// Size cap of the uploaded components on disk, in MiB (at least one component of
    /// --max-component-size); the least recently used go first.
    #[arg(long, default_value_t = 1024)]
    artifact_store_mib: u64,
    /// How long a job waits for free slots (STARTING, or between restarts) before the
    /// attempt counts as failed and the restart strategy decides.
    #[arg(long, default_value_t = 300_000)]
    slot_timeout_ms: u64,
    /// A directory jobs may read and write files under (file sources and sinks,
    /// savepoints); repeatable. Without one, jobs may use no file path at all. The
    /// cluster's own files (credentials, api token, checkpoints, artifacts) stay out of
    /// reach even under a root.
    #[arg(long = "data-root", value_name = "DIR")]
    data_roots: Vec<PathBuf>,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    id: IdentityArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub fn run(a: JobManagerArgs) -> Result<()> {
    let rt = runtime()?;
    let mut signals = rt.block_on(async { Signals::install() })?;
    let (id, ca) = a.id.load()?;
    let token_file = a.api_token_file.clone().unwrap_or_else(|| a.id.cluster_dir().join("api-token"));
    let token = std::fs::read_to_string(&token_file).with_context(|| format!("cannot read the api token {}", token_file.display()))?;
    let token = token.trim().to_string();
    anyhow::ensure!(token.len() >= 16, "the api token in {} is too short (16 characters at least)", token_file.display());
    let sandbox = weir_wasm::Runtime::new(a.sandbox.limits(), a.sandbox.cache_dir()).context("cannot start the Wasm sandbox")?;
    let (artifact_dir, _temp_artifacts) = match (&a.artifact_dir, &a.checkpoint_dir) {
        (Some(d), _) => (d.clone(), None),
        (None, Some(c)) => (c.join("_artifacts"), None),
        (None, None) => state_dir(&None)?,
    };
    let mut roots = Vec::new();
    for r in &a.data_roots {
        let root = std::fs::canonicalize(r).with_context(|| format!("--data-root {}: cannot resolve it", r.display()))?;
        anyhow::ensure!(root.is_dir(), "--data-root {} is not a directory", r.display());
        roots.push(root.display().to_string());
    }
    let mut own = a.id.own_files();
    own.extend([token_file.clone(), artifact_dir.clone()]);
    own.extend(a.checkpoint_dir.clone());
    let files = weir_types::access::FileAccess::granted(roots, resolved(own));
    rt.block_on(async {
        let endpoint = weir_net::Endpoint::bind(a.listen, &id, &ca)?;
        let addr = endpoint.local_addr().context("no local address")?;
        let http = weir_api::bind(a.rest_listen).with_context(|| format!("cannot listen on {}", a.rest_listen))?;
        let http_addr = http.local_addr().context("no local address")?;
        // Tests and scripts wait for these lines, so they go out at once.
        println!("jobmanager listening on {addr}");
        println!("rest api on http://{http_addr}");
        std::io::Write::flush(&mut std::io::stdout())?;
        let timeout = Duration::from_millis(a.heartbeat_timeout_ms);
        let config = weir_jobmanager::JobManagerConfig {
            heartbeat_timeout: timeout,
            heartbeat_interval: timeout / 6,
            lost_grace: Duration::from_millis(a.lost_taskmanager_grace_ms),
            checkpoint_dir: a.checkpoint_dir.as_ref().map(|d| d.display().to_string()),
            retain: a.retain_checkpoints,
            retain_ended: a.retain_ended_jobs,
            artifact_dir,
            artifact_cap: a.artifact_store_mib << 20,
            slot_timeout: Duration::from_millis(a.slot_timeout_ms),
            files,
        };
        let jm = weir_jobmanager::JobManager::start(config, sandbox).await.context("cannot start the jobmanager")?;
        jm.start_deployments().await;
        let rest = weir_api::router(jm.clone(), token);
        let (stop_rest, rest_stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = a.http.limits();
        let api = tokio::spawn(async move {
            if let Err(e) = weir_api::serve(http, rest, limits, async move { drop(rest_stopped.await) }).await {
                tracing::error!("the rest api stopped: {e}");
            }
        });
        let signal = tokio::select! {
            () = jm.serve(&endpoint) => return Ok(()),
            signal = signals.recv() => signal,
        };
        tracing::info!("{signal}: stopping (rest api, taskmanager connections; persisted jobs resume with the next jobmanager)");
        let _ = stop_rest.send(());
        let _ = api.await;
        endpoint.close(weir_net::CLOSE_OK, "jobmanager stopping");
        let _ = tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle()).await;
        Ok(())
    })
}
