//! `weir taskmanager`: a TaskManager process offering slots to a JobManager (and
//! optionally Prometheus metrics over HTTP).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::common::{IdentityArgs, SandboxArgs, runtime, state_dir};

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
    /// Keyed-state directory [default: a temporary directory, removed at exit].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Memory budget of each keyed operator's state cache per subtask, in MiB.
    #[arg(long, default_value_t = 32)]
    state_cache_mib: usize,
    /// Serve Prometheus metrics over HTTP on this address (`/metrics`).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    id: IdentityArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub fn run(a: TaskManagerArgs) -> Result<()> {
    let (id, ca) = a.id.load()?;
    let sandbox = weir_wasm::Runtime::new(a.sandbox.limits(), a.sandbox.cache_dir()).context("cannot start the Wasm sandbox")?;
    let (state_dir, _temp_state) = state_dir(&a.state_dir)?;
    let state = weir_state::StateStore::open(&state_dir).context("cannot open the state store")?;
    let rt = runtime()?;
    rt.block_on(async {
        let endpoint = weir_net::Endpoint::bind(a.listen, &id, &ca)?;
        let data = weir_taskmanager::dataplane::DataPlane::new(tokio::runtime::Handle::current(), endpoint);
        let tm = weir_taskmanager::TaskManager::new(sandbox, state, a.state_cache_mib << 20, Some(data.clone()));
        let addr = data.local_addr().context("no local address")?;
        println!("taskmanager {} offering {} slots, data plane on {addr}", id.name(), a.slots);
        if let Some(listen) = a.metrics_listen {
            let http = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            println!("metrics on http://{}/metrics", http.local_addr().context("no local address")?);
            let router = weir_api::taskmanager_router(tm.clone(), a.slots);
            tokio::spawn(async move {
                if let Err(e) = weir_api::serve(http, router).await {
                    tracing::error!("the metrics endpoint stopped: {e}");
                }
            });
        }
        std::io::Write::flush(&mut std::io::stdout())?;
        tokio::spawn(data.clone().serve());
        // Serves until the process ends, registering again whenever the JobManager is
        // lost; it returns only when the first registration fails.
        let Err(e) = weir_taskmanager::service::serve_forever(tm, data, a.jobmanager, a.slots, a.advertise).await;
        Err(anyhow::Error::new(e).context(format!("cannot register with the jobmanager at {}", a.jobmanager)))
    })
}
