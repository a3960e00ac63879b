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
    /// Where compiled components are cached [default: $WEIR_CACHE_DIR, else ~/.cache/weir].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

impl SandboxArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_component_bytes: self.max_component_size,
            max_memory_bytes: self.memory_limit_mib << 20,
            fuel_per_call: self.fuel,
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

/// A state directory: the one given, or a temporary one removed when the guard drops.
pub fn state_dir(given: &Option<PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match given {
        Some(d) => Ok((d.clone(), None)),
        None => {
            let t = tempfile::Builder::new().prefix("weir-state-").tempdir().context("cannot create a state directory")?;
            Ok((t.path().to_path_buf(), Some(t)))
        }
    }
}

/// The async runtime of the cluster's processes (QUIC, HTTP).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}
