//! `weir list`: a cluster's jobs, running and ended.

use anyhow::Result;
use clap::Args;
use weir_documents::JobList;

use crate::client::Remote;

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    remote: Remote,
}

pub fn run(a: ListArgs) -> Result<()> {
    let c = a.remote.connect()?;
    let jobs: JobList = c.get("/jobs", "cannot list jobs")?;
    if c.json(&jobs)? {
        return Ok(());
    }
    println!("{:<18} {:<24} {:<12} {:<11} {:>10} {:>8}", "ID", "NAME", "STATE", "STATUS", "DURATION", "RESTARTS");
    for j in &jobs.jobs {
        let started = j.status.started.as_ref();
        println!(
            "{:<18} {:<24} {:<12} {:<11} {:>9.1}s {:>8}",
            j.metadata.id,
            j.metadata.name,
            j.status.state,
            started.map_or("CREATED", |s| s.observed_job_status.as_str()),
            j.status.duration_ms as f64 / 1000.0,
            started.map_or(0, |s| s.observed_job_restarts)
        );
    }
    Ok(())
}
