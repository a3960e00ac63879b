//! `weir deploy`: Deployments (issue 17), clients of `/api/v1/deployments`.
//! `apply -f FILE` creates or updates one from a TOML file of the API's spec shape
//! (camelCase keys); `template.component = "PATH.wasm"` (relative to the file) is
//! uploaded and stands for `template.artifact`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use weir_documents::{Deployment, DeploymentList, DeploymentSpec};

use crate::client::{Client, Remote};

#[derive(Subcommand)]
pub enum DeployCommand {
    /// Create or update a Deployment from a TOML file.
    Apply(ApplyArgs),
    /// List Deployments.
    List(ListArgs),
    /// Show one Deployment.
    Get(NameArgs),
    /// Stop a Deployment's job with a savepoint; `resume` starts it again from it.
    Suspend(NameArgs),
    /// Run a suspended (or failed) Deployment again.
    Resume(NameArgs),
    /// Delete a Deployment without a running job.
    Delete(NameArgs),
}

#[derive(Args)]
pub struct ApplyArgs {
    /// The Deployment's spec (TOML).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct NameArgs {
    /// The Deployment's name.
    name: String,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(command: DeployCommand) -> Result<()> {
    match command {
        DeployCommand::Apply(a) => {
            let c = a.remote.connect()?;
            let spec = read_spec(&c, &a.file)?;
            let d: Deployment = c.post("/deployments", &spec, &format!("cannot apply deployment {}", spec.name))?;
            print(&c, &d)
        }
        DeployCommand::List(a) => {
            let c = a.remote.connect()?;
            let list: DeploymentList = c.get("/deployments", "cannot list deployments")?;
            if c.json(&list)? {
                return Ok(());
            }
            println!("{:<24} {:<14} {:>7} {:<18} MESSAGE", "NAME", "STATE", "VERSION", "JOB");
            for d in &list.deployments {
                println!("{}", line(d));
            }
            Ok(())
        }
        DeployCommand::Get(a) => {
            let c = a.remote.connect()?;
            let d: Deployment = c.get(&format!("/deployments/{}", a.name), &format!("cannot get deployment {}", a.name))?;
            print(&c, &d)
        }
        DeployCommand::Suspend(a) => state(a, "suspend"),
        DeployCommand::Resume(a) => state(a, "resume"),
        DeployCommand::Delete(a) => {
            let c = a.remote.connect()?;
            let d: Deployment = c.delete(&format!("/deployments/{}", a.name), &format!("cannot delete deployment {}", a.name))?;
            if !c.json(&d)? {
                println!("deployment {} deleted", a.name);
            }
            Ok(())
        }
    }
}

fn state(a: NameArgs, action: &str) -> Result<()> {
    let c = a.remote.connect()?;
    let d: Deployment =
        c.post(&format!("/deployments/{}/{action}", a.name), &serde_json::json!({}), &format!("cannot {action} deployment {}", a.name))?;
    print(&c, &d)
}

fn print(c: &Client, d: &Deployment) -> Result<()> {
    if !c.json(d)? {
        println!("{}", line(d));
    }
    Ok(())
}

/// `NAME STATE VERSION JOB MESSAGE` on one line.
fn line(d: &Deployment) -> String {
    let job = d.status.running.as_ref().map_or("-", |j| if j.job_id.is_empty() { "(submitting)" } else { &j.job_id });
    format!(
        "{:<24} {:<14} {:>7} {:<18} {}",
        d.metadata.name,
        d.status.state.name(),
        d.status.spec_version,
        job,
        d.status.message.as_deref().unwrap_or("")
    )
}

/// Reads the spec file, uploading `template.component`.
fn read_spec(c: &Client, file: &Path) -> Result<DeploymentSpec> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut doc: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not TOML", file.display()))?;
    let template = doc.get_mut("template").and_then(|t| t.as_table_mut()).with_context(|| format!("{}: no [template] table", file.display()))?;
    if let Some(component) = template.remove("component") {
        let Some(path) = component.as_str() else { bail!("{}: template.component must be a path", file.display()) };
        let path = file.parent().unwrap_or(Path::new(".")).join(path);
        let wasm = std::fs::read(&path).with_context(|| format!("cannot read the component {}", path.display()))?;
        let artifact = c.upload(&wasm, &path.display().to_string())?;
        template.insert("artifact".into(), toml::Value::String(artifact.id.to_string()));
    }
    let spec: DeploymentSpec = toml::Table::try_into(doc).with_context(|| format!("{}: not a deployment spec", file.display()))?;
    Ok(spec)
}
