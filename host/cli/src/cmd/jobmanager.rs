//! `weir jobmanager`: the JobManager process (QUIC for TaskManagers, the REST API,
//! the dashboard and /metrics over HTTP).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::common::{IdentityArgs, SandboxArgs, runtime};

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
    /// Checkpoint storage: a directory every TaskManager can reach at the same path.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Completed checkpoints kept per job.
    #[arg(long, default_value_t = 3)]
    retain_checkpoints: u32,
    #[command(flatten)]
    id: IdentityArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub fn run(a: JobManagerArgs) -> Result<()> {
    let (id, ca) = a.id.load()?;
    let token_file = a.api_token_file.clone().unwrap_or_else(|| a.id.cluster_dir().join("api-token"));
    let token = std::fs::read_to_string(&token_file).with_context(|| format!("cannot read the api token {}", token_file.display()))?;
    let token = token.trim().to_string();
    anyhow::ensure!(token.len() >= 16, "the api token in {} is too short (16 characters at least)", token_file.display());
    let sandbox = weir_wasm::Runtime::new(a.sandbox.limits(), a.sandbox.cache_dir()).context("cannot start the Wasm sandbox")?;
    runtime()?.block_on(async {
        let endpoint = weir_net::Endpoint::bind(a.listen, &id, &ca)?;
        let addr = endpoint.local_addr().context("no local address")?;
        let http = tokio::net::TcpListener::bind(a.rest_listen).await.with_context(|| format!("cannot listen on {}", a.rest_listen))?;
        let http_addr = http.local_addr().context("no local address")?;
        // Tests and scripts wait for these lines, so they go out at once.
        println!("jobmanager listening on {addr}");
        println!("rest api on http://{http_addr}");
        std::io::Write::flush(&mut std::io::stdout())?;
        let timeout = std::time::Duration::from_millis(a.heartbeat_timeout_ms);
        let config = weir_jobmanager::JobManagerConfig {
            heartbeat_timeout: timeout,
            heartbeat_interval: timeout / 6,
            checkpoint_dir: a.checkpoint_dir.as_ref().map(|d| d.display().to_string()),
            retain: a.retain_checkpoints,
        };
        let jm = weir_jobmanager::JobManager::start(config, sandbox).await;
        let rest = weir_api::router(jm.clone(), token);
        tokio::spawn(async move {
            if let Err(e) = weir_api::serve(http, rest).await {
                tracing::error!("the rest api stopped: {e}");
            }
        });
        jm.serve(endpoint).await;
        Ok(())
    })
}
