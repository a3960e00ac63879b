//! `weir cluster-init`: a cluster CA, the nodes' identities and the API token.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct ClusterInitArgs {
    /// Directory to create the credentials in.
    dir: PathBuf,
    /// Number of TaskManager identities (taskmanager-1, taskmanager-2, ...).
    #[arg(long, default_value_t = 2)]
    taskmanagers: u32,
}

pub fn run(a: ClusterInitArgs) -> Result<()> {
    let ca = weir_net::ClusterCa::generate()?;
    ca.save(&a.dir).with_context(|| format!("cannot write the CA to {}", a.dir.display()))?;
    let mut names = vec!["jobmanager".to_string(), "client".to_string()];
    names.extend((1..=a.taskmanagers).map(|i| format!("taskmanager-{i}")));
    for name in &names {
        ca.issue(name)?.save(&a.dir.join(name)).with_context(|| format!("cannot write the identity {name}"))?;
    }
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(|e| anyhow::anyhow!("no randomness for the api token: {e}"))?;
    let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let token_file = a.dir.join("api-token");
    write_private(&token_file, &token).with_context(|| format!("cannot write {}", token_file.display()))?;
    println!("cluster credentials in {}: ca.pem, api-token, {}", a.dir.display(), names.join(", "));
    Ok(())
}

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())
}
