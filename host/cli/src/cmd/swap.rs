//! `weir swap JOB COMPONENT`: a live code swap of a running job; for a job from a
//! manifest, `weir swap JOB --operator NAME=FILE ...` replaces the components of the
//! operators named (by uid, or by the manifest's name for the component).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use weir_documents::{Cluster, Job, SwapDone, SwapSpec};
use weir_types::ids::JobId;
use weir_types::manifest::Manifest;

use crate::client::{self, Remote};

#[derive(Args)]
pub struct SwapArgs {
    /// The job's id.
    job_id: JobId,
    /// The new job component (.wasm): it must plan the same graph (nodes, uids,
    /// key-by edges) as the running one, or the swap is refused and the job runs on.
    #[arg(required_unless_present = "operator", conflicts_with = "operator")]
    component: Option<PathBuf>,
    /// For a job from a manifest: NAME=FILE runs operator NAME (its uid, or the
    /// manifest's name for its component) from the operator component FILE; repeat for
    /// several. The other components stay. Every operator of a replaced component runs
    /// the new one, so name them all (or the component).
    #[arg(long, value_name = "NAME=FILE")]
    operator: Vec<String>,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(a: SwapArgs) -> Result<()> {
    let c = a.remote.connect()?;
    let id = &a.job_id;
    let what = format!("no swap of job {id}");
    // A refused token is answered before the upload's body is read: ask something
    // small first so the refusal is what users see.
    let _: Cluster = c.get("/cluster", &what)?;
    let spec = match &a.component {
        Some(path) => {
            let wasm = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
            SwapSpec { artifact: Some(c.upload(&wasm, &name)?.id.into()), components: BTreeMap::new() }
        }
        None => {
            let job: Job = c.get(&format!("/jobs/{id}"), &what)?;
            let Some(text) = job.spec.manifest else { bail!("job {id} runs from one job component: weir swap {id} FILE") };
            let mut components = BTreeMap::new();
            for (name, file) in by_component(&text, &a.operator)? {
                let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                components.insert(name.clone(), c.upload(&wasm, &name)?.id.into());
            }
            SwapSpec { artifact: None, components }
        }
    };
    let bar = client::progress(None, &format!("live swap of job {id}"));
    let done: Result<SwapDone> = c.post(&format!("/jobs/{id}/swap"), &spec, &what);
    bar.finish_and_clear();
    let done = done?;
    if !c.json(&done)? {
        let runs = match &done.artifact {
            Some(artifact) => artifact.clone(),
            None => done.components.iter().map(|(name, id)| format!("{name}={id}")).collect::<Vec<_>>().join(", "),
        };
        println!("job {id} runs {runs} since checkpoint {}", done.checkpoint);
    }
    Ok(())
}

/// `NAME=FILE` arguments as the files replacing the manifest's components, by the
/// manifest's names: a NAME is an operator's uid or a component's name. A component
/// given two files, or shared with an operator not named, is refused.
fn by_component(manifest: &str, operators: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    let manifest = Manifest::parse(manifest).context("the job's manifest")?;
    let uses: Vec<(&str, &str)> = manifest.nodes.iter().filter_map(|n| Some((n.uid.as_str(), n.component.as_deref()?))).collect();
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut named_uids: Vec<&str> = Vec::new();
    let mut by_uid: Vec<&str> = Vec::new();
    let mut by_name: Vec<&str> = Vec::new();
    for arg in operators {
        let Some((name, file)) = arg.split_once('=') else { bail!("--operator {arg:?}: expected NAME=FILE") };
        let component = match uses.iter().find(|(uid, _)| *uid == name) {
            Some((uid, component)) => {
                named_uids.push(uid);
                by_uid.push(component);
                *component
            }
            None if uses.iter().any(|(_, c)| *c == name) => {
                by_name.push(name);
                name
            }
            None => {
                let known: Vec<&str> = uses.iter().map(|(uid, _)| *uid).collect();
                bail!("the job's manifest has no operator or component {name:?} (operators: {})", known.join(", "))
            }
        };
        let file = PathBuf::from(file);
        match files.get(component) {
            Some(other) if *other != file => {
                bail!("component {component:?} given twice: {} and {}", other.display(), file.display())
            }
            _ => files.insert(component.to_string(), file),
        };
    }
    for component in by_uid.into_iter().filter(|c| !by_name.contains(c)) {
        let others: Vec<&str> = uses.iter().filter(|(uid, c)| *c == component && !named_uids.contains(uid)).map(|(uid, _)| *uid).collect();
        if !others.is_empty() {
            bail!(
                "component {component:?} also runs operator(s) {} (they would run the new code too): name them as well, or the component (--operator {component}=FILE)",
                others.join(", ")
            );
        }
    }
    Ok(files)
}
