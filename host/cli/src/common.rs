//! What several commands share: the job, sandbox and identity options, reading a job
//! from disk, state directories and the async runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use weir_jobmanager::JobSource;
use weir_types::manifest::Manifest;
use weir_wasm::Limits;

/// The job to run, inspect or submit.
#[derive(Args)]
pub struct JobArgs {
    /// The job: a job component (.wasm), or a job manifest (.toml) that names one
    /// component per operator (paths relative to the manifest).
    pub job: PathBuf,
    /// Default parallelism of the job's operators.
    #[arg(short, long, default_value_t = 1)]
    pub parallelism: u32,
    /// A job argument `KEY=VALUE`, passed to the job's plan (repeatable).
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = parse_arg)]
    pub args: Vec<(String, String)>,
}

fn parse_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// The limits of the Wasm sandbox, and its compiled-component cache.
#[derive(Args)]
pub struct SandboxArgs {
    /// Refuse components larger than this many bytes (checked before compiling).
    #[arg(long, default_value_t = Limits::default().max_component_bytes)]
    max_component_size: u64,
    /// Linear-memory limit of each operator instance, in MiB.
    #[arg(long, default_value_t = Limits::default().max_memory_bytes >> 20)]
    memory_limit_mib: usize,
    /// Fuel (about one unit per Wasm instruction) each operator call may burn.
    #[arg(long, default_value_t = Limits::default().fuel_per_call)]
    fuel: u64,
    /// Wall-clock milliseconds one operator call may take before it traps (checked
    /// every 10 ms, also while the call is in a host call: it traps once back in Wasm).
    /// 0 turns the guard off.
    #[arg(long, default_value_t = Limits::default().call_timeout.as_millis() as u64)]
    call_timeout_ms: u64,
    /// Where compiled components are cached [default: $WEIR_CACHE_DIR, else ~/.cache/weir].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Size cap of the compiled-component cache on disk, in MiB; the least recently
    /// used files go first.
    #[arg(long, default_value_t = Limits::default().max_cache_bytes >> 20)]
    cache_max_mib: u64,
    /// Compiled code kept loaded in memory for later jobs, in MiB; the least recently
    /// used is dropped first (running jobs keep theirs).
    #[arg(long, default_value_t = Limits::default().max_compiled_bytes >> 20)]
    compiled_memory_mib: u64,
}

impl SandboxArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_component_bytes: self.max_component_size,
            max_memory_bytes: self.memory_limit_mib << 20,
            fuel_per_call: self.fuel,
            call_timeout: std::time::Duration::from_millis(self.call_timeout_ms),
            max_cache_bytes: self.cache_max_mib << 20,
            max_compiled_bytes: self.compiled_memory_mib << 20,
            ..Limits::default()
        }
    }

    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir
            .clone()
            .or_else(|| std::env::var_os("WEIR_CACHE_DIR").map(PathBuf::from))
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("weir")))
            .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/weir")))
    }
}

/// `paths` made absolute and resolved where they exist, as a grant compares them.
pub fn resolved(paths: impl IntoIterator<Item = PathBuf>) -> Vec<String> {
    paths
        .into_iter()
        .map(|p| {
            let p = std::path::absolute(&p).unwrap_or(p);
            std::fs::canonicalize(&p).unwrap_or(p).display().to_string()
        })
        .collect()
}

/// A cluster node's credentials (from `weir cluster-init`).
#[derive(Args)]
pub struct IdentityArgs {
    /// Directory with this node's node.pem and node.key (from `weir cluster-init`).
    #[arg(long)]
    identity: PathBuf,
    /// The cluster CA certificate [default: ca.pem next to the identity directory].
    #[arg(long)]
    ca: Option<PathBuf>,
}

impl IdentityArgs {
    /// The directory of the cluster's shared files (ca.pem, api-token).
    pub fn cluster_dir(&self) -> PathBuf {
        match &self.ca {
            Some(p) => p.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            None => self.identity.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        }
    }

    /// The node's credential directories (its identity and the cluster's shared
    /// files): no job may reach them.
    pub fn own_files(&self) -> Vec<PathBuf> {
        let mut own = vec![self.identity.clone(), self.cluster_dir()];
        own.extend(self.ca.clone());
        own
    }

    /// Loads this node's identity and the CA it trusts.
    pub fn load(&self) -> Result<(weir_net::NodeIdentity, weir_net::CaCert)> {
        let id = weir_net::NodeIdentity::load(&self.identity).with_context(|| format!("cannot load the identity in {}", self.identity.display()))?;
        let ca_path = match &self.ca {
            Some(p) => p.clone(),
            None => self.identity.parent().map_or_else(|| PathBuf::from("ca.pem"), |d| d.join("ca.pem")),
        };
        let ca = weir_net::CaCert::load(&ca_path).with_context(|| format!("cannot load the CA certificate {}", ca_path.display()))?;
        Ok((id, ca))
    }
}

/// Reads a job: a component, or a manifest (`.toml`) and the components it names.
pub fn read_job(path: &Path, max_component_bytes: u64) -> Result<JobSource> {
    let refused = || format!("job {} was refused", path.display());
    if path.extension().is_none_or(|e| e != "toml") {
        let wasm = weir_wasm::read_component(path, max_component_bytes).with_context(refused)?;
        return Ok(JobSource::Component(Arc::new(wasm)));
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the job manifest {}", path.display()))?;
    let lowered = Manifest::parse(&text).and_then(|m| m.lower()).with_context(refused)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut components = HashMap::new();
    for name in lowered.components {
        let wasm = weir_wasm::read_component(&dir.join(&name), max_component_bytes)
            .with_context(|| format!("component {name:?} of job {}", path.display()))?;
        components.insert(name, Arc::new(wasm));
    }
    Ok(JobSource::Manifest { text, components })
}

/// Temporary state directories are named so, in the system's temporary directory.
const TEMP_STATE_PREFIX: &str = "weir-state-";
/// The file in a temporary state directory its process holds locked while it lives:
/// an unlocked one belongs to a dead process.
const OWNER_LOCK: &str = ".owner.lock";

/// A temporary state directory: removed when dropped (at exit, also after SIGTERM or
/// SIGINT), and swept by the next process if this one was killed.
pub struct TempState {
    // Field order: the directory goes before its lock is released.
    _dir: tempfile::TempDir,
    _lock: std::fs::File,
}

/// A state directory: the one given, or a temporary one removed when the guard drops.
/// Creating a temporary one first removes those of processes that died without
/// cleaning up (SIGKILL, a crash).
pub fn state_dir(given: &Option<PathBuf>) -> Result<(PathBuf, Option<TempState>)> {
    if let Some(d) = given {
        return Ok((d.clone(), None));
    }
    let tmp = std::env::temp_dir();
    sweep_stale_state(&tmp);
    let t = tempfile::Builder::new().prefix(TEMP_STATE_PREFIX).tempdir_in(&tmp).context("cannot create a state directory")?;
    // Locked before it gets its name: a sweeper never sees the lock file unlocked.
    let staged = t.path().join(".owner.lock.new");
    let lock = std::fs::File::create(&staged).with_context(|| format!("cannot create {}", staged.display()))?;
    lock.try_lock().with_context(|| format!("cannot lock {}", staged.display()))?;
    std::fs::rename(&staged, t.path().join(OWNER_LOCK)).with_context(|| format!("cannot name the lock in {}", t.path().display()))?;
    Ok((t.path().to_path_buf(), Some(TempState { _dir: t, _lock: lock })))
}

/// Removes the temporary state directories in `tmp` whose owner is gone (their lock
/// can be taken). Directories without a lock file (being created, or of an older
/// version) are left alone.
pub fn sweep_stale_state(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().starts_with(TEMP_STATE_PREFIX) || !path.is_dir() {
            continue;
        }
        let Ok(lock) = std::fs::File::open(path.join(OWNER_LOCK)) else { continue };
        if lock.try_lock().is_ok() {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::info!(dir = %path.display(), "removed the state directory of a process that is gone"),
                Err(e) => tracing::warn!(dir = %path.display(), "cannot remove a stale state directory: {e}"),
            }
        }
    }
}

/// Bounds of an HTTP server (the REST API, a TaskManager's metrics).
#[derive(Args)]
pub struct HttpArgs {
    /// Milliseconds an HTTP connection has to send a request's headers, from its
    /// opening or its previous response: idle and trickling connections are closed.
    #[arg(long, default_value_t = 10_000)]
    http_header_timeout_ms: u64,
    /// HTTP connections served at once (at most half the open-file limit, so clients
    /// never take the descriptors checkpoints need); more wait in the listen backlog.
    #[arg(long, default_value_t = 256)]
    http_max_connections: usize,
}

impl HttpArgs {
    pub fn limits(&self) -> weir_api::ServeLimits {
        weir_api::ServeLimits {
            header_timeout: std::time::Duration::from_millis(self.http_header_timeout_ms.max(1)),
            max_connections: weir_api::connection_budget(self.http_max_connections.max(1)),
        }
    }
}

/// SIGTERM and SIGINT, caught from [`Signals::install`] on (install them first
/// thing: before that, either ends the process without cleaning up).
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Catches SIGTERM and SIGINT; needs the async runtime's context.
    pub fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    /// Resolves at the next SIGTERM or SIGINT, with its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// The async runtime of the cluster's processes (QUIC, HTTP).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}
