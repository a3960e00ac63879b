//! `weir logs JOB`: the job's events (submission, attempts, failures, checkpoints,
//! its end).

use anyhow::Result;
use weir_documents::EventList;

use crate::client::JobIdArgs;

pub fn run(a: JobIdArgs) -> Result<()> {
    let c = a.remote.connect()?;
    let id = &a.job_id;
    let events: EventList = c.get(&format!("/jobs/{id}/logs"), &format!("no logs of job {id}"))?;
    if !c.json(&events)? {
        for e in &events.events {
            println!("{} {:<5} {}", e.time, e.level, e.message);
        }
    }
    Ok(())
}
