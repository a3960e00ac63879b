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
    /// Address of the REST API, web dashboard and /metrics. On loopback it speaks
    /// plain HTTP (unless --rest-cert is given); anywhere else HTTPS, with a
    /// certificate the cluster CA issues at start (the CA's key, ca.key, must be next
    /// to ca.pem) or --rest-cert.
    #[arg(long, default_value = "127.0.0.1:8081")]
    rest_listen: std::net::SocketAddr,
    /// The REST API's certificate chain (PEM, leaf first), instead of one issued by the
    /// cluster CA; with --rest-key.
    #[arg(long, requires = "rest_key", value_name = "FILE")]
    rest_cert: Option<PathBuf>,
    /// The private key (PEM) of --rest-cert.
    #[arg(long, requires = "rest_cert", value_name = "FILE")]
    rest_key: Option<PathBuf>,
    /// A DNS name or IP address clients use for the REST API, added to the certificate
    /// the cluster CA issues (repeatable; it already names the bind address, this
    /// host's name, localhost, 127.0.0.1 and ::1).
    #[arg(long = "rest-name", value_name = "NAME")]
    rest_names: Vec<String>,
    /// Serve plain HTTP on a non-loopback --rest-listen: bearer tokens then cross the
    /// network in clear (for a TLS proxy in front, on a trusted network).
    #[arg(long, conflicts_with = "rest_cert")]
    rest_plain_http: bool,
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
    let rest_tls = rest_tls(&a)?;
    let mut own = a.id.own_files();
    own.extend([token_file.clone(), artifact_dir.clone()]);
    own.extend(a.rest_cert.iter().chain(&a.rest_key).cloned());
    own.extend(a.checkpoint_dir.clone());
    let files = weir_types::access::FileAccess::granted(roots, resolved(own));
    rt.block_on(async {
        let endpoint = weir_net::Endpoint::bind(a.listen, &id, &ca)?;
        let addr = endpoint.local_addr().context("no local address")?;
        let http = weir_api::bind(a.rest_listen).with_context(|| format!("cannot listen on {}", a.rest_listen))?;
        let http_addr = http.local_addr().context("no local address")?;
        // Tests and scripts wait for these lines, so they go out at once.
        println!("jobmanager listening on {addr}");
        let scheme = if rest_tls.is_some() { "https" } else { "http" };
        println!("rest api on {scheme}://{http_addr}");
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
            if let Err(e) = weir_api::serve_on(http, rest, limits, rest_tls, async move { drop(rest_stopped.await) }).await {
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

/// The REST API's TLS configuration, `None` for plain HTTP: only on loopback, or with
/// --rest-plain-http. Never falls back to plain HTTP when a certificate is missing.
fn rest_tls(a: &JobManagerArgs) -> Result<Option<std::sync::Arc<weir_api::tls::ServerConfig>>> {
    let addr = a.rest_listen;
    let identity = if let (Some(cert), Some(key)) = (&a.rest_cert, &a.rest_key) {
        weir_net::ServerIdentity::load(cert, key).context("cannot load the REST API's certificate (--rest-cert, --rest-key)")?
    } else if addr.ip().is_loopback() || a.rest_plain_http {
        if a.rest_plain_http && !addr.ip().is_loopback() {
            tracing::warn!("the rest api on {addr} speaks plain HTTP (--rest-plain-http): bearer tokens cross the network in clear");
        }
        return Ok(None);
    } else {
        let dir = a.id.cluster_dir();
        let ca = weir_net::ClusterCa::load(&dir).with_context(|| {
            format!(
                "the REST API on {addr} is not on loopback, so it serves HTTPS, and its certificate cannot be issued: the cluster CA \
                 (ca.pem and ca.key in {}) does not load; pass --rest-cert and --rest-key, or --rest-plain-http to serve plain HTTP \
                 (bearer tokens then cross the network in clear)",
                dir.display()
            )
        })?;
        let mut names = Vec::new();
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
        if let Some(host) = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()) {
            names.push(host);
        }
        names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
        for name in &a.rest_names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        ca.issue_server(&names).with_context(|| format!("cannot issue the REST API's certificate for {}", names.join(", ")))?
    };
    // Operators pin it with `curl --pinnedpubkey sha256//PIN`.
    let pin = identity.spki_sha256().context("cannot read the REST API's certificate")?;
    tracing::info!("rest api certificate: public key sha256//{pin}");
    let config = weir_api::tls::server_config(identity.chain().to_vec(), identity.key()).context("the REST API's certificate and key do not fit")?;
    Ok(Some(config))
}
