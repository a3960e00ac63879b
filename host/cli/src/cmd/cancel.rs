//! `weir cancel JOB`.

use anyhow::Result;
use weir_documents::Job;

use crate::client::JobIdArgs;

pub fn run(a: JobIdArgs) -> Result<()> {
    let c = a.remote.connect()?;
    let id = &a.job_id;
    let j: Job = c.post(&format!("/jobs/{id}/cancel"), &serde_json::json!({}), &format!("cannot cancel job {id}"))?;
    if !c.json(&j)? {
        println!("job {id} cancelling");
    }
    Ok(())
}
