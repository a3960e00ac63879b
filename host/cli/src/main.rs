//! `weir`: the command line of Weir.
//!
//! `weir run` starts an embedded cluster (a JobManager and a TaskManager with N slots
//! in this process) and runs one job on it to completion; `weir inspect` prints a
//! job's graph as the JobManager plans it. `weir jobmanager` and `weir taskmanager`
//! run the processes of a real cluster (QUIC, mutual TLS from `weir cluster-init`);
//! `weir submit`, `list`, `status`, `cancel`, `savepoint` and `logs` are clients of
//! the JobManager's REST API (module `client`).

mod client;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use weir_jobmanager::{ClusterConfig, EmbeddedCluster, ExecutionGraph, JobReport, JobSource, JobSpec, PlannedCode};
use weir_types::manifest::Manifest;
use weir_wasm::Limits;

#[derive(Parser)]
#[command(name = "weir", version, about = "Stream processing with WebAssembly operators")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job to completion on an embedded local cluster.
    Run(RunArgs),
    /// Print a job's graph: its nodes, edges and the chained vertices that would run.
    Inspect(InspectArgs),
    /// Create a cluster CA and node credentials (jobmanager, taskmanagers, client) in DIR.
    ClusterInit(ClusterInitArgs),
    /// Run a JobManager: TaskManagers register their slots with it over QUIC.
    Jobmanager(JobManagerArgs),
    /// Run a TaskManager offering slots to a JobManager.
    Taskmanager(TaskManagerArgs),
    /// Submit a job to a JobManager and (unless --detach) wait for its end.
    Submit(SubmitArgs),
    /// List a cluster's jobs, running and ended.
    List(ListArgs),
    /// Show the cluster (TaskManagers, slots, jobs), or one job in detail.
    Status(StatusArgs),
    /// Cancel a job running on a cluster.
    Cancel(JobIdArgs),
    /// Take a savepoint of a running job (and with --stop, stop it right after).
    Savepoint(SavepointArgs),
    /// Print a job's events: submission, attempts, failures, checkpoints, its end.
    Logs(JobIdArgs),
    /// Create an operator project (one component of world operator-component) that
    /// builds with its `build.sh`, in Rust, Python, JavaScript or C.
    New(NewArgs),
}

#[derive(Args)]
struct NewArgs {
    /// The operator's language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// Project name: the directory and the component `NAME.wasm` (letters, digits, `-`, `_`).
    name: String,
    /// Where to create the project directory.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Weir's `sdk/` directory, which the project builds against.
    #[arg(long, env = "WEIR_SDK", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk"))]
    sdk: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Lang {
    Rust,
    Python,
    Js,
    C,
}

/// The files of each language's project template (sdk/templates), embedded.
fn template(lang: Lang) -> &'static [(&'static str, &'static str)] {
    macro_rules! files {
        ($lang:literal: $($file:literal),+) => {
            &[$(($file, include_str!(concat!("../../../sdk/templates/", $lang, "/", $file)))),+]
        };
    }
    match lang {
        Lang::Rust => files!("rust": "Cargo.toml", "src/lib.rs", "build.sh", ".gitignore"),
        Lang::Python => files!("python": "app.py", "build.sh", ".gitignore"),
        Lang::Js => files!("js": "app.js", "build.sh", ".gitignore"),
        Lang::C => files!("c": "app.c", "build.sh", ".gitignore"),
    }
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    remote: client::Remote,
}

#[derive(Args)]
struct StatusArgs {
    /// A job's id: show that job [default: the whole cluster].
    job_id: Option<String>,
    #[command(flatten)]
    remote: client::Remote,
}

#[derive(Args)]
struct JobIdArgs {
    /// The job's id.
    job_id: String,
    #[command(flatten)]
    remote: client::Remote,
}

#[derive(Args)]
struct SavepointArgs {
    /// The job's id.
    job_id: String,
    /// Directory to write the savepoint to (must not exist or be empty; every
    /// TaskManager that restores it must reach it at the same path).
    #[arg(long)]
    dir: PathBuf,
    /// Cancel the job once the savepoint is written, so nothing after it is committed.
    #[arg(long)]
    stop: bool,
    #[command(flatten)]
    remote: client::Remote,
}

#[derive(Args)]
struct SubmitArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Input file for file sources that take theirs at submission (a path on the TaskManagers).
    #[arg(short, long)]
    input: Option<String>,
    /// Output directory for file sinks (on the TaskManagers): one part-<subtask> file
    /// each. (`--output` is the format of this command's answer.)
    #[arg(long, value_name = "DIR")]
    output_dir: Option<String>,
    /// Print the job id and return at once instead of waiting for the job's end.
    #[arg(short, long)]
    detach: bool,
    /// Checkpoint every this many milliseconds (exactly-once state; needs a jobmanager
    /// with --checkpoint-dir).
    #[arg(long, value_name = "MS")]
    checkpoint_interval: Option<u64>,
    /// Restart strategy after a failure: none, fixed-delay:ATTEMPTS:DELAY_MS,
    /// exponential:INITIAL_MS:MAX_MS, failure-rate:FAILURES:INTERVAL_MS:DELAY_MS
    /// [default: fixed-delay:3:1000 with checkpoints, none without].
    #[arg(long)]
    restart: Option<String>,
    /// Start from this savepoint's state and source positions (any parallelism).
    #[arg(long, value_name = "DIR")]
    from_savepoint: Option<PathBuf>,
    /// Maximum component size accepted locally before sending.
    #[arg(long, default_value_t = Limits::default().max_component_bytes)]
    max_component_size: u64,
    #[command(flatten)]
    remote: client::Remote,
}

#[derive(Args)]
struct ClusterInitArgs {
    /// Directory to create the credentials in.
    dir: PathBuf,
    /// Number of TaskManager identities (taskmanager-1, taskmanager-2, ...).
    #[arg(long, default_value_t = 2)]
    taskmanagers: u32,
}

#[derive(Args)]
struct IdentityArgs {
    /// Directory with this node's node.pem and node.key (from `weir cluster-init`).
    #[arg(long)]
    identity: PathBuf,
    /// The cluster CA certificate [default: ca.pem next to the identity directory].
    #[arg(long)]
    ca: Option<PathBuf>,
}

#[derive(Args)]
struct JobManagerArgs {
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

#[derive(Args)]
struct TaskManagerArgs {
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

#[derive(Args)]
struct JobArgs {
    /// The job: a job component (.wasm), or a job manifest (.toml) that names one
    /// component per operator (paths relative to the manifest).
    job: PathBuf,
    /// Default parallelism of the job's operators.
    #[arg(short, long, default_value_t = 1)]
    parallelism: u32,
    /// A job argument `KEY=VALUE`, passed to the job's plan (repeatable).
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = parse_arg)]
    args: Vec<(String, String)>,
}

#[derive(Args)]
struct SandboxArgs {
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

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Input file for file sources that take theirs at submission.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Output file for file sinks that take theirs at submission (default: stdout).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Slots of the embedded TaskManager [default: the job's parallelism].
    #[arg(long)]
    slots: Option<u32>,
    /// Keyed-state directory [default: a temporary directory, removed afterwards].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Memory budget of each keyed operator's state cache per subtask, in MiB.
    #[arg(long, default_value_t = 32)]
    state_cache_mib: usize,
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
    /// Checkpoint every this many milliseconds.
    #[arg(long, value_name = "MS")]
    checkpoint_interval: Option<u64>,
    /// Checkpoint storage [default: a directory inside the state directory].
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

#[derive(Args)]
struct InspectArgs {
    #[command(flatten)]
    job: JobArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

fn parse_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Inspect(args) => inspect(args),
        Command::ClusterInit(args) => cluster_init(args),
        Command::Jobmanager(args) => jobmanager(args),
        Command::Taskmanager(args) => taskmanager(args),
        Command::Submit(args) => submit(args),
        Command::List(a) => a.remote.connect().and_then(|c| client::list(&c)),
        Command::Status(a) => a.remote.connect().and_then(|c| client::status(&c, a.job_id.as_deref())),
        Command::Cancel(a) => a.remote.connect().and_then(|c| client::cancel(&c, &a.job_id)),
        Command::Savepoint(a) => a.remote.connect().and_then(|c| client::savepoint(&c, &a.job_id, &a.dir, a.stop)),
        Command::Logs(a) => a.remote.connect().and_then(|c| client::logs(&c, &a.job_id)),
        Command::New(a) => new_project(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The cause chain on one line, so scripts and people see the reason. Library errors
/// often repeat their source's text in their own message: say each part once.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

impl SandboxArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_component_bytes: self.max_component_size,
            max_memory_bytes: self.memory_limit_mib << 20,
            fuel_per_call: self.fuel,
            ..Limits::default()
        }
    }

    fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir
            .clone()
            .or_else(|| std::env::var_os("WEIR_CACHE_DIR").map(PathBuf::from))
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("weir")))
            .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/weir")))
    }
}

/// Reads a job: a component, or a manifest (`.toml`) and the components it names.
fn read_job(path: &Path, max_component_bytes: u64) -> Result<JobSource> {
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
fn state_dir(given: &Option<PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match given {
        Some(d) => Ok((d.clone(), None)),
        None => {
            let t = tempfile::Builder::new().prefix("weir-state-").tempdir().context("cannot create a state directory")?;
            Ok((t.path().to_path_buf(), Some(t)))
        }
    }
}

fn run(a: RunArgs) -> Result<()> {
    let limits = a.sandbox.limits();
    let source = read_job(&a.job.job, limits.max_component_bytes)?;
    let (state_dir, _temp_state) = state_dir(&a.state_dir)?;
    let checkpoints = a.checkpoint_interval.map(|ms| weir_types::deployment::CheckpointConfig {
        dir: a.checkpoint_dir.clone().unwrap_or_else(|| state_dir.join("checkpoints")).display().to_string(),
        interval_ms: ms.max(1),
        retain: 2,
    });
    let cluster = EmbeddedCluster::new(ClusterConfig {
        slots: a.slots.unwrap_or(a.job.parallelism),
        limits,
        cache_dir: a.sandbox.cache_dir(),
        state_dir,
        cache_bytes: a.state_cache_mib << 20,
    })
    .context("cannot start the embedded cluster")?;
    let job_name = a.job.job.display().to_string();
    let handle = cluster
        .submit(JobSpec { source, parallelism: a.job.parallelism, args: a.job.args, input: a.input, output: a.output, checkpoints })
        .with_context(|| format!("job {job_name} was refused"))?;
    let report = handle.wait().with_context(|| format!("job {job_name} failed"))?;
    if !a.quiet {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &JobReport) {
    let secs = r.elapsed.as_secs_f64();
    let checkpoint = r.last_checkpoint.map(|c| format!(", last checkpoint {c}")).unwrap_or_default();
    eprintln!("job {} ({}) {} in {secs:.3}s{checkpoint}", r.name, r.id, r.status.name().to_lowercase());
    for v in &r.vertices {
        let rate = if secs > 0.0 { v.records_in as f64 / secs } else { 0.0 };
        eprintln!(
            "  {:<40} x{:<3} in {:>12} out {:>12} fuel {:>14}  ({rate:.0} records/s in)",
            v.name, v.parallelism, v.records_in, v.records_out, v.fuel
        );
    }
}

fn inspect(a: InspectArgs) -> Result<()> {
    let limits = a.sandbox.limits();
    let source = read_job(&a.job.job, limits.max_component_bytes)?;
    let state = tempfile::Builder::new().prefix("weir-inspect-").tempdir().context("cannot create a state directory")?;
    let cluster = EmbeddedCluster::new(ClusterConfig {
        slots: 0,
        limits,
        cache_dir: a.sandbox.cache_dir(),
        state_dir: state.path().to_path_buf(),
        cache_bytes: 0,
    })?;
    let PlannedCode { plan, code, components } = cluster.plan(&source, &a.job.args)?;
    for (component, _) in &components {
        println!("component sha256:{} ({} bytes)", component.hash, component.size);
    }
    if let JobSource::Manifest { .. } = source {
        for (node, op) in plan.nodes.iter().zip(&code.operators) {
            if let Some(op) = op {
                println!("operator {:?}: operator {} of component {}", node.uid, op.op, code.hash(op.component).unwrap_or("?"));
            }
        }
    }
    print!("{}", plan.describe(a.job.parallelism));
    plan.validate(a.job.parallelism).context("the plan cannot run")?;
    let graph = ExecutionGraph::build(&plan, a.job.parallelism);
    println!("execution graph ({} slots):", graph.slots_needed());
    for (i, v) in graph.vertices.iter().enumerate() {
        let outs: Vec<String> = v.outputs.iter().map(|(t, p)| format!("v{t} {p:?}")).collect();
        println!("  v{i} {} x{}{}", v.name, v.parallelism, if outs.is_empty() { String::new() } else { format!(" -> {}", outs.join(", ")) });
    }
    Ok(())
}

fn new_project(a: NewArgs) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let valid = !a.name.is_empty() && a.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') && !a.name.starts_with('-');
    anyhow::ensure!(valid, "project name {:?}: use letters, digits, '-' and '_'", a.name);
    let sdk = std::path::absolute(&a.sdk).with_context(|| format!("cannot resolve {}", a.sdk.display()))?;
    anyhow::ensure!(sdk.join("operator").is_dir(), "{} is not Weir's sdk directory (give --sdk or WEIR_SDK)", sdk.display());
    let project = a.dir.join(&a.name);
    anyhow::ensure!(!project.exists(), "{} already exists", project.display());
    for (file, text) in template(a.lang) {
        let path = project.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = text.replace("{{name}}", &a.name).replace("{{sdk}}", &sdk.display().to_string());
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        if file.ends_with(".sh") {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    println!("created {}: build it with {}/build.sh, then name {}.wasm in a job manifest", project.display(), project.display(), a.name);
    Ok(())
}

fn cluster_init(a: ClusterInitArgs) -> Result<()> {
    let ca = weir_net::ClusterCa::generate()?;
    ca.save(&a.dir).with_context(|| format!("cannot write the CA to {}", a.dir.display()))?;
    let mut names = vec!["jobmanager".to_string(), "client".to_string()];
    names.extend((1..=a.taskmanagers).map(|i| format!("taskmanager-{i}")));
    for name in &names {
        ca.issue(name)?.save(&a.dir.join(name)).with_context(|| format!("cannot write the identity {name}"))?;
    }
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(|e| anyhow::anyhow!("no randomness for the api token: {e}"))?;
    let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let token_file = a.dir.join("api-token");
    write_private(&token_file, &token).with_context(|| format!("cannot write {}", token_file.display()))?;
    println!("cluster credentials in {}: ca.pem, api-token, {}", a.dir.display(), names.join(", "));
    Ok(())
}

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())
}

impl IdentityArgs {
    /// The directory of the cluster's shared files (ca.pem, api-token).
    fn cluster_dir(&self) -> PathBuf {
        match &self.ca {
            Some(p) => p.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            None => self.identity.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        }
    }

    /// Loads this node's identity and the CA it trusts.
    fn load(&self) -> Result<(weir_net::NodeIdentity, weir_net::CaCert)> {
        let id = weir_net::NodeIdentity::load(&self.identity).with_context(|| format!("cannot load the identity in {}", self.identity.display()))?;
        let ca_path = match &self.ca {
            Some(p) => p.clone(),
            None => self.identity.parent().map_or_else(|| PathBuf::from("ca.pem"), |d| d.join("ca.pem")),
        };
        let ca = weir_net::CaCert::load(&ca_path).with_context(|| format!("cannot load the CA certificate {}", ca_path.display()))?;
        Ok((id, ca))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn jobmanager(a: JobManagerArgs) -> Result<()> {
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
        let config = weir_jobmanager::service::JobManagerConfig {
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

fn taskmanager(a: TaskManagerArgs) -> Result<()> {
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
        // Once registered, a TaskManager outlives its JobManager: it cancels what ran
        // for it and registers again with the one that comes back, as Flink's do.
        let mut registered = false;
        loop {
            let started = std::time::Instant::now();
            match weir_taskmanager::service::serve(tm.clone(), data.clone(), a.jobmanager, a.slots, a.advertise).await {
                Err(weir_taskmanager::service::ServiceError::Register(e)) if !registered => {
                    return Err(anyhow::Error::new(e).context(format!("cannot register with the jobmanager at {}", a.jobmanager)));
                }
                Err(weir_taskmanager::service::ServiceError::Register(_)) => {}
                Err(e) => {
                    registered = true;
                    tracing::warn!("lost the jobmanager at {}: {e}; registering again", a.jobmanager);
                }
                Ok(()) => registered = true,
            }
            if started.elapsed() < std::time::Duration::from_millis(500) {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    })
}

fn submit(a: SubmitArgs) -> Result<()> {
    let source = read_job(&a.job.job, a.max_component_size)?;
    let absolute = |p: &Path| std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display())).map(|p| p.display().to_string());
    let spec = weir_api::model::SubmitSpec {
        artifact: None,
        manifest: None,
        components: Default::default(),
        parallelism: a.job.parallelism,
        args: a.job.args.iter().cloned().collect(),
        input: a.input.clone(),
        output: a.output_dir.clone(),
        checkpoint_interval_ms: a.checkpoint_interval,
        restart_strategy: a.restart.clone(),
        from_savepoint: a.from_savepoint.as_deref().map(absolute).transpose()?,
    };
    let c = a.remote.connect()?;
    let name = a.job.job.display().to_string();
    client::submit(&c, client::Submission { source: &source, name: &name, spec, detach: a.detach })
}
