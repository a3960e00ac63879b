//! `weir swap JOB COMPONENT`: a live code swap of a running job.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use weir_documents::{Cluster, SwapDone, SwapSpec};
use weir_types::ids::JobId;

use crate::client::{self, Remote};

#[derive(Args)]
pub struct SwapArgs {
    /// The job's id.
    job_id: JobId,
    /// The new job component (.wasm): it must plan the same graph (nodes, uids,
    /// key-by edges) as the running one, or the swap is refused and the job runs on.
    component: PathBuf,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(a: SwapArgs) -> Result<()> {
    let c = a.remote.connect()?;
    let id = &a.job_id;
    let wasm = std::fs::read(&a.component).with_context(|| format!("cannot read {}", a.component.display()))?;
    // A refused token is answered before the upload's body is read: ask something
    // small first so the refusal is what users see.
    let _: Cluster = c.get("/cluster", &format!("no swap of job {id}"))?;
    let name = a.component.file_name().map_or_else(|| a.component.display().to_string(), |n| n.to_string_lossy().into_owned());
    let artifact: String = c.upload(&wasm, &name)?.id.into();
    let bar = client::progress(None, &format!("live swap of job {id}"));
    let done: Result<SwapDone> = c.post(&format!("/jobs/{id}/swap"), &SwapSpec { artifact }, &format!("no swap of job {id}"));
    bar.finish_and_clear();
    let done = done?;
    if !c.json(&done)? {
        println!("job {id} runs {} since checkpoint {}", done.artifact, done.checkpoint);
    }
    Ok(())
}
