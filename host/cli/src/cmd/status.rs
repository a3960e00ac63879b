//! `weir status [JOB]`: the cluster (TaskManagers, slots, jobs with their vertices),
//! or one job with its vertices and checkpoints. Its job and vertex lines are also
//! how `weir submit` reports a job's end.

use anyhow::Result;
use clap::Args;
use weir_documents::{CheckpointList, Cluster, Job, JobList, Metrics, TaskManagerList};
use weir_types::ids::JobId;

use crate::client::{Client, Remote};

#[derive(Args)]
pub struct StatusArgs {
    /// A job's id: show that job [default: the whole cluster].
    job_id: Option<JobId>,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(a: StatusArgs) -> Result<()> {
    let c = a.remote.connect()?;
    match &a.job_id {
        Some(id) => job(&c, id),
        None => cluster(&c),
    }
}

fn job(c: &Client, id: &JobId) -> Result<()> {
    let j: Job = c.get(&format!("/jobs/{id}"), &format!("no status of job {id}"))?;
    let m: Metrics = c.get(&format!("/jobs/{id}/metrics"), "job metrics")?;
    let cps: CheckpointList = c.get(&format!("/jobs/{id}/checkpoints"), "job checkpoints")?;
    if c.json(&serde_json::json!({ "job": j, "metrics": m, "checkpoints": cps }))? {
        return Ok(());
    }
    print_job(&j);
    print_vertices(&m, j.status.duration_ms);
    for t in &j.status.transitions {
        println!("  {} at {}", t.state, t.time);
    }
    for cp in cps.checkpoints.iter().take(10) {
        println!(
            "  checkpoint {} {} {} bytes in {} ms",
            cp.id,
            cp.status,
            cp.size_bytes.map_or("-".into(), |s| s.to_string()),
            cp.duration_ms.map_or("-".into(), |d| d.to_string())
        );
    }
    Ok(())
}

fn cluster(c: &Client) -> Result<()> {
    let cluster: Cluster = c.get("/cluster", "cannot query the jobmanager")?;
    let tms: TaskManagerList = c.get("/taskmanagers", "cannot query the jobmanager")?;
    let jobs: JobList = c.get("/jobs", "cannot list jobs")?;
    if c.json(&serde_json::json!({ "cluster": cluster, "taskmanagers": tms.taskmanagers, "jobs": jobs.jobs }))? {
        return Ok(());
    }
    for t in &tms.taskmanagers {
        let state = if t.alive { "alive" } else { "lost" };
        println!(
            "{} id={} slots={} used={} {state} addr={} data={} last-heartbeat={}ms",
            t.name, t.id, t.slots, t.used_slots, t.addr, t.data_addr, t.last_heartbeat_ms
        );
    }
    println!("free slots: {}", cluster.slots_free);
    for j in jobs.jobs.iter().rev() {
        print_job(j);
        if let Ok(m) = c.get::<Metrics>(&format!("/jobs/{}/metrics", j.metadata.id), "job metrics") {
            print_vertices(&m, j.status.duration_ms);
        }
    }
    Ok(())
}

/// A job's one-line status.
pub fn print_job(j: &Job) {
    let started = j.status.started.as_ref();
    let checkpoint = j.status.last_checkpoint.map_or("none".to_string(), |c| c.to_string());
    let error = j.status.failure.as_ref().map(|f| format!(" error: {}", f.message)).unwrap_or_default();
    println!(
        "job {} {} {} {:.3}s restarts={} checkpoint={checkpoint} state={}{error}",
        j.metadata.id,
        j.metadata.name,
        started.map_or("CREATED", |s| s.observed_job_status.as_str()),
        j.status.duration_ms as f64 / 1000.0,
        started.map_or(0, |s| s.observed_job_restarts),
        j.status.state,
    );
}

/// A line per vertex of a job: records, fuel, backpressure and rate.
pub fn print_vertices(m: &Metrics, duration_ms: u64) {
    for v in &m.vertices {
        let rate = if v.records_in_per_second > 0.0 {
            v.records_in_per_second
        } else if duration_ms > 0 {
            v.records_in as f64 * 1000.0 / duration_ms as f64
        } else {
            0.0
        };
        println!(
            "  vertex {:?} x{} in={} out={} fuel={} backpressure={:.2} ({rate:.0} records/s in)",
            v.name, v.parallelism, v.records_in, v.records_out, v.fuel, v.backpressure
        );
    }
}
