//! `weir savepoint JOB --dir DIR [--stop]`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use weir_documents::{SavepointDone, SavepointSpec};
use weir_types::ids::JobId;

use crate::client::{self, Remote};

#[derive(Args)]
pub struct SavepointArgs {
    /// The job's id.
    job_id: JobId,
    /// Directory to write the savepoint to (must not exist or be empty; every
    /// TaskManager that restores it must reach it at the same path).
    #[arg(long)]
    dir: PathBuf,
    /// Cancel the job once the savepoint is written, so nothing after it is committed.
    #[arg(long)]
    stop: bool,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(a: SavepointArgs) -> Result<()> {
    let c = a.remote.connect()?;
    let (id, stop) = (&a.job_id, a.stop);
    // The TaskManagers write the savepoint: they need the path, not this shell's cwd.
    let dir = std::path::absolute(&a.dir).with_context(|| format!("cannot resolve {}", a.dir.display()))?.display().to_string();
    let bar = client::progress(None, &format!("savepoint of job {id}"));
    let done: Result<SavepointDone> = c.post(&format!("/jobs/{id}/savepoints"), &SavepointSpec { dir, stop }, &format!("no savepoint of job {id}"));
    bar.finish_and_clear();
    let done = done?;
    if !c.json(&done)? {
        println!("savepoint of job {id} (checkpoint {}) in {}{}", done.checkpoint, done.dir, if stop { "; job stopped" } else { "" });
    }
    Ok(())
}
