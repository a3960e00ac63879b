//! `weir inspect`: a job's graph as the JobManager plans it, without running it.

use anyhow::{Context, Result};
use clap::Args;
use weir_jobmanager::{ClusterConfig, EmbeddedCluster, ExecutionGraph, JobSource, PlannedCode};

use crate::common::{JobArgs, SandboxArgs, read_job};

#[derive(Args)]
pub struct InspectArgs {
    #[command(flatten)]
    job: JobArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub fn run(a: InspectArgs) -> Result<()> {
    let limits = a.sandbox.limits();
    let source = read_job(&a.job.job, limits.max_component_bytes)?;
    let state = tempfile::Builder::new().prefix("weir-inspect-").tempdir().context("cannot create a state directory")?;
    let cluster = EmbeddedCluster::new(ClusterConfig {
        slots: 0,
        limits,
        cache_dir: a.sandbox.cache_dir(),
        state_dir: state.path().to_path_buf(),
        cache_bytes: 0,
    })?;
    let PlannedCode { plan, code, components } = cluster.plan(&source, &a.job.args)?;
    for (component, _) in &components {
        println!("component sha256:{} ({} bytes)", component.hash, component.size);
    }
    if let JobSource::Manifest { .. } = source {
        for (node, op) in plan.nodes.iter().zip(&code.operators) {
            if let Some(op) = op {
                println!("operator {:?}: operator {} of component {}", node.uid, op.op, code.hash(op.component).map_or("?", |h| h.as_str()));
            }
        }
    }
    print!("{}", plan.describe(a.job.parallelism));
    plan.validate(a.job.parallelism).context("the plan cannot run")?;
    let graph = ExecutionGraph::build(&plan, a.job.parallelism);
    println!("execution graph ({} slots):", graph.slots_needed());
    for (i, v) in graph.vertices.iter().enumerate() {
        let outs: Vec<String> = v
            .outputs
            .iter()
            .map(|(t, p, side)| match side {
                Some(i) => format!("v{t} {p:?} (side output {i})"),
                None => format!("v{t} {p:?}"),
            })
            .collect();
        println!("  v{i} {} x{}{}", v.name, v.parallelism, if outs.is_empty() { String::new() } else { format!(" -> {}", outs.join(", ")) });
    }
    Ok(())
}
