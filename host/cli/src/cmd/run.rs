//! `weir run`: one job to completion on an embedded cluster in this process. SIGTERM
//! or SIGINT cancels the job; its temporary state directory is removed as it exits.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Args;
use weir_jobmanager::{ClusterConfig, EmbeddedCluster, JobReport, JobSpec};

use crate::common::{JobArgs, SandboxArgs, Signals, read_job, state_dir};

#[derive(Args)]
pub struct RunArgs {
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

pub fn run(a: RunArgs) -> Result<()> {
    let stop = cancel_on_signal()?;
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
    let report = handle.wait_or_cancel(&stop).with_context(|| format!("job {job_name} failed"))?;
    if !a.quiet {
        print_report(&report);
    }
    Ok(())
}

/// A flag set at the first SIGTERM or SIGINT (caught from now on by a thread of its
/// own: the embedded cluster has no async runtime).
fn cancel_on_signal() -> Result<Arc<AtomicBool>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the signal handler")?;
    let mut signals = rt.block_on(async { Signals::install() })?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let signal = rt.block_on(signals.recv());
            eprintln!("{signal}: cancelling the job");
            flag.store(true, Ordering::Relaxed);
        })
        .context("cannot start the signal handler")?;
    Ok(stop)
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
        // A connect: how many came through each of its inputs.
        if v.records_in_by_input.len() > 1 {
            let inputs: Vec<String> = v.records_in_by_input.iter().enumerate().map(|(i, n)| format!("input {}: {n}", i + 1)).collect();
            eprintln!("  {:<40}      {}", "", inputs.join(", "));
        }
    }
}
