//! `weir submit`: uploads a job's components, creates the job and (unless detached)
//! follows it to its end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use weir_documents::{Cluster, EventList, Job, Metrics, SubmitSpec};
use weir_jobmanager::JobSource;
use weir_wasm::Limits;

use super::status::{print_job, print_vertices};
use crate::client::{self, Client, Output};
use crate::common::{JobArgs, read_job};

#[derive(Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Input file for file sources that take theirs at submission (a path on the
    /// TaskManagers, under one of the cluster's data roots; a relative one is taken
    /// from this command's directory).
    #[arg(short, long)]
    input: Option<String>,
    /// Output directory for file sinks (on the TaskManagers, under a data root; a
    /// relative one is taken from this command's directory): one part-<subtask> file
    /// each, never over a file already there. (`--output` is the format of this
    /// command's answer.)
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
    /// Start from a retained checkpoint of another job that ended (failed or was
    /// cancelled): JOB for its newest completed checkpoint, or JOB/ID. Restored like a
    /// savepoint (any parallelism), the job named rather than a path.
    #[arg(long, value_name = "JOB[/ID]", conflicts_with = "from_savepoint")]
    from_checkpoint: Option<String>,
    /// Start from a savepoint (or checkpoint) even though it holds state of operators
    /// (uids) this job does not have: that state is dropped.
    #[arg(long)]
    allow_non_restored_state: bool,
    /// Maximum component size accepted locally before sending.
    #[arg(long, default_value_t = Limits::default().max_component_bytes)]
    max_component_size: u64,
    #[command(flatten)]
    remote: client::Remote,
}

pub fn run(a: SubmitArgs) -> Result<()> {
    let source = read_job(&a.job.job, a.max_component_size)?;
    let absolute = |p: &Path| std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display())).map(|p| p.display().to_string());
    let spec = SubmitSpec {
        artifact: None,
        manifest: None,
        components: Default::default(),
        parallelism: a.job.parallelism,
        args: a.job.args.iter().cloned().collect(),
        input: a.input.as_deref().map(|p| absolute(Path::new(p))).transpose()?,
        output: a.output_dir.as_deref().map(|p| absolute(Path::new(p))).transpose()?,
        checkpoint_interval_ms: a.checkpoint_interval,
        restart_strategy: a.restart.clone(),
        from_savepoint: a.from_savepoint.as_deref().map(absolute).transpose()?,
        allow_non_restored_state: a.allow_non_restored_state,
        from_checkpoint_of: a.from_checkpoint.clone(),
    };
    let c = a.remote.connect()?;
    let name = a.job.job.display().to_string();
    submit(&c, Submission { source: &source, name: &name, spec, detach: a.detach })
}

/// `weir submit`'s job options.
struct Submission<'a> {
    source: &'a JobSource,
    name: &'a str,
    spec: SubmitSpec,
    detach: bool,
}

/// Uploads, creates the job and (unless detached) follows it to its end; fails
/// unless it FINISHED.
fn submit(c: &Client, s: Submission<'_>) -> Result<()> {
    // A refused token is answered before the body is read, and the connection closed
    // under the upload: ask something small first so the refusal is what users see.
    let _: Cluster = c.get("/cluster", &format!("job {} was refused", s.name))?;
    let spec = match s.source {
        JobSource::Component(wasm) => SubmitSpec { artifact: Some(c.upload(wasm, s.name)?.id.into()), ..s.spec },
        JobSource::Manifest { text, components } => {
            let mut ids = std::collections::BTreeMap::new();
            for (name, wasm) in components {
                ids.insert(name.clone(), c.upload(wasm, name)?.id.into());
            }
            SubmitSpec { manifest: Some(text.clone()), components: ids, ..s.spec }
        }
    };
    let job: Job = c.post("/jobs", &spec, &format!("job {} was refused", s.name))?;
    let id = job.metadata.id.clone();
    if c.output == Output::Text {
        println!("job {id} submitted");
        std::io::Write::flush(&mut std::io::stdout())?;
        // The submission event describes where each vertex's subtasks run.
        let events: EventList = c.get(&format!("/jobs/{id}/logs"), "job events")?;
        if let Some(e) = events.events.first() {
            eprintln!("{}", e.message.trim_end());
        }
    }
    if s.detach {
        c.json(&job)?;
        return Ok(());
    }
    let bar = client::progress(None, &format!("job {id} {}", job.status.state));
    let path = format!("/jobs/{id}");
    let job = loop {
        let job: Job = c.get(&path, &format!("lost track of job {id}"))?;
        if matches!(job.status.state.as_str(), "FINISHED" | "FAILED" | "TERMINATED") {
            break job;
        }
        let observed = job.status.started.as_ref().map_or("CREATED", |s| s.observed_job_status.as_str());
        bar.set_message(format!(
            "job {id} {} ({observed}, restarts {})",
            job.status.state,
            job.status.started.as_ref().map_or(0, |s| s.observed_job_restarts)
        ));
        std::thread::sleep(Duration::from_millis(200));
    };
    bar.finish_and_clear();
    if !c.json(&job)? {
        let metrics: Metrics = c.get(&format!("/jobs/{id}/metrics"), "job metrics")?;
        print_job(&job);
        print_vertices(&metrics, job.status.duration_ms);
    }
    match job.status.state.as_str() {
        "FINISHED" => Ok(()),
        state => bail!("job {} {}: {}", s.name, state.to_lowercase(), job.status.failure.map(|f| f.message).unwrap_or_default()),
    }
}
