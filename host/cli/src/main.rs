//! `weir`: the command line of Weir.
//!
//! `weir run` starts an embedded cluster (a JobManager and a TaskManager with N slots
//! in this process) and runs one job on it to completion; `weir inspect` prints a
//! job's graph as the JobManager plans it. `weir jobmanager` and `weir taskmanager`
//! run the processes of a real cluster (QUIC, mutual TLS from `weir cluster-init`);
//! `weir submit`, `list`, `status`, `cancel`, `savepoint` and `logs` are clients of
//! the JobManager's REST API (module `client`). Each command lives in its module under
//! `cmd`; this file is the command line's shape and the dispatch.

mod client;
mod cmd;
mod common;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "weir", version, about = "Stream processing with WebAssembly operators")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job to completion on an embedded local cluster.
    Run(cmd::run::RunArgs),
    /// Print a job's graph: its nodes, edges and the chained vertices that would run.
    Inspect(cmd::inspect::InspectArgs),
    /// Create a cluster CA and node credentials (jobmanager, taskmanagers, client) in DIR.
    ClusterInit(cmd::cluster_init::ClusterInitArgs),
    /// Run a JobManager: TaskManagers register their slots with it over QUIC.
    Jobmanager(cmd::jobmanager::JobManagerArgs),
    /// Run a TaskManager offering slots to a JobManager.
    Taskmanager(cmd::taskmanager::TaskManagerArgs),
    /// Submit a job to a JobManager and (unless --detach) wait for its end.
    Submit(cmd::submit::SubmitArgs),
    /// List a cluster's jobs, running and ended.
    List(cmd::list::ListArgs),
    /// Show the cluster (TaskManagers, slots, jobs), or one job in detail.
    Status(cmd::status::StatusArgs),
    /// Cancel a job running on a cluster.
    Cancel(client::JobIdArgs),
    /// Take a savepoint of a running job (and with --stop, stop it right after).
    Savepoint(cmd::savepoint::SavepointArgs),
    /// Swap a running job's code live: the new component takes over at the next
    /// checkpoint with the same state, without a restart.
    Swap(cmd::swap::SwapArgs),
    /// Manage Deployments: a job's desired state, upgraded and resumed by the
    /// JobManager (apply -f FILE, list, get, suspend, resume, delete).
    #[command(subcommand)]
    Deploy(cmd::deploy::DeployCommand),
    /// Print a job's events: submission, attempts, failures, checkpoints, its end.
    Logs(client::JobIdArgs),
    /// Manage tenants, their API tokens and quotas (with the cluster's api token).
    Tenant(cmd::tenant::TenantArgs),
    /// Create an operator project (one component of world operator-component) that
    /// builds with its `build.sh`, in Rust, Python, JavaScript or C.
    New(cmd::new::NewArgs),
    /// The seed job's clicks (examples-wasm/clicks): `weir clicks generate`.
    #[command(subcommand)]
    Clicks(cmd::clicks::ClicksCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::ClusterInit(a) => cmd::cluster_init::run(a),
        Command::Jobmanager(a) => cmd::jobmanager::run(a),
        Command::Taskmanager(a) => cmd::taskmanager::run(a),
        Command::Submit(a) => cmd::submit::run(a),
        Command::List(a) => cmd::list::run(a),
        Command::Status(a) => cmd::status::run(a),
        Command::Cancel(a) => cmd::cancel::run(a),
        Command::Savepoint(a) => cmd::savepoint::run(a),
        Command::Swap(a) => cmd::swap::run(a),
        Command::Logs(a) => cmd::logs::run(a),
        Command::Deploy(a) => cmd::deploy::run(a),
        Command::New(a) => cmd::new::run(a),
        Command::Clicks(c) => cmd::clicks::run(c),
        Command::Tenant(a) => cmd::tenant::run(a),
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
