//! Planning a submission: loading its components, getting its plan (from the job
//! component's `plan` or a manifest), binding inputs and outputs, validating, and
//! building the execution graph. Every submission path (embedded, the service) does
//! this first; nothing here runs a job.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use thiserror::Error;
use weir_connectors::Role;
use weir_state::StateError;
use weir_taskmanager::TaskError;
use weir_types::access::{AccessError, Capabilities, FileAccess};
use weir_types::deployment::JobCode;
use weir_types::graph::ExecutionGraph;
use weir_types::ids::{ComponentHash, InvalidId, JobId};
use weir_types::manifest::{Manifest, ManifestError};
use weir_types::plan::{JobPlan, NodeKind, PlanError, SinkKind, SourceKind};
use weir_wasm::{Instance, JobComponent, LoadError, OpRef, OperatorFailure, Runtime, Sandbox, TaskInfo, World};

/// What a job is built from.
#[derive(Debug, Clone)]
pub enum JobSource {
    /// One job component (world `job-component`): its `plan` declares the graph.
    Component(Arc<Vec<u8>>),
    /// A job manifest (TOML) naming one component per operator, with the bytes of
    /// each component under the name the manifest uses for it.
    Manifest {
        /// The manifest's text.
        text: String,
        /// Component bytes by name.
        components: HashMap<String, Arc<Vec<u8>>>,
    },
}

impl Default for JobSource {
    fn default() -> Self {
        JobSource::Component(Arc::default())
    }
}

/// Why a job did not run to its end.
#[derive(Debug, Error)]
pub enum JobError {
    /// The component was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A component of a manifest was refused; names it.
    #[error("component {name:?}: {error}")]
    Component {
        /// The manifest's name for it.
        name: String,
        /// Why.
        error: LoadError,
    },
    /// The job manifest was refused.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The component's plan call failed.
    #[error("the job's plan failed: {0}")]
    PlanCall(OperatorFailure),
    /// The plan is not executable.
    #[error("invalid job plan: {0}")]
    Plan(#[from] PlanError),
    /// A connector of the plan was refused; names its node.
    #[error("node {uid:?}: {error}")]
    Connector {
        /// The node.
        uid: String,
        /// Why.
        error: weir_connectors::ConnectorError,
    },
    /// A tenant's connector names a host it may not reach.
    #[error(
        "node {uid:?}: connector {kind:?} reaches {host}, which this job's tenant may not reach (allowed: {allowed}; an admin allows it: weir tenant hosts TENANT HOST[:PORT],...)"
    )]
    HostNotAllowed {
        /// The node.
        uid: String,
        /// The connector's kind.
        kind: String,
        /// `host:port` as written.
        host: String,
        /// The tenant's allowed hosts.
        allowed: String,
    },
    /// Not enough free slots.
    #[error("the job needs {needed} slots but only {free} of {total} are free")]
    NoSlots {
        /// Slots the job needs.
        needed: u32,
        /// Slots free now.
        free: u32,
        /// Slots of the cluster.
        total: u32,
    },
    /// Keyed state could not be opened.
    #[error(transparent)]
    State(#[from] StateError),
    /// The subtasks could not be set up (sources, sinks, state, threads).
    #[error("cannot deploy the job: {0}")]
    Deploy(Box<TaskError>),
    /// The job's checkpoint storage cannot be opened.
    #[error("checkpoint storage {dir}: {source}")]
    CheckpointStorage {
        /// Its root.
        dir: String,
        /// Why.
        source: weir_checkpoint::StorageError,
    },
    /// A subtask failed (the message names it); the job was cancelled.
    #[error("subtask {0}")]
    Failed(String),
    /// The job was cancelled.
    #[error("the job was cancelled")]
    Cancelled,
}

/// A job's plan and its loaded code.
pub struct PlannedCode {
    /// The plan (not yet bound to inputs and outputs, nor validated).
    pub plan: JobPlan,
    /// Which component runs each operator.
    pub code: JobCode,
    /// The components, by index in `code`, with their bytes.
    pub components: Vec<(JobComponent, Arc<Vec<u8>>)>,
}

/// Loads a job's components and gets its plan: from the job component's `plan`, or
/// from the manifest, whose components must each implement `operator-component`.
/// `plan` runs under the job's `capabilities`, as its operators will.
pub fn load_plan(runtime: &Runtime, source: &JobSource, args: &[(String, String)], capabilities: Capabilities) -> Result<PlannedCode, JobError> {
    match source {
        JobSource::Component(wasm) => {
            let component = runtime.load(wasm, World::Job)?;
            let mut instance = Instance::new(runtime, &component, "plan", Sandbox::new(capabilities, "plan"))?;
            let plan = instance.plan(args, runtime.limits().plan_fuel).map_err(JobError::PlanCall)?;
            plan.check_size()?;
            let code = JobCode::single(&component_hash(&component)?, &plan);
            Ok(PlannedCode { plan, code, components: vec![(component, wasm.clone())] })
        }
        JobSource::Manifest { text, components: files } => {
            let lowered = Manifest::parse(text)?.lower()?;
            lowered.plan.check_size()?;
            let mut components = Vec::with_capacity(lowered.components.len());
            for name in &lowered.components {
                let bytes = files
                    .get(name)
                    .ok_or_else(|| JobError::Component { name: name.clone(), error: LoadError::Invalid("not supplied with the manifest".into()) })?;
                let component = runtime.load(bytes, World::Operator).map_err(|error| JobError::Component { name: name.clone(), error })?;
                let hash = component_hash(&component).map_err(|error| JobError::Component { name: name.clone(), error })?;
                components.push((component, bytes.clone(), hash));
            }
            let code = JobCode { components: components.iter().map(|(_, _, hash)| hash.clone()).collect(), operators: lowered.operators };
            let components = components.into_iter().map(|(c, bytes, _)| (c, bytes)).collect();
            Ok(PlannedCode { plan: lowered.plan, code, components })
        }
    }
}

/// What a job's submitter lets its guests and connectors reach.
#[derive(Debug, Clone, Copy)]
pub struct Submitter<'a> {
    /// WASI capabilities of its guests.
    pub capabilities: Capabilities,
    /// Hosts its connectors may reach; `None`: any.
    pub hosts: Option<&'a [String]>,
}

impl Submitter<'_> {
    /// The admin's jobs and `weir run`: everything.
    pub const ADMIN: Submitter<'static> = Submitter { capabilities: Capabilities::ALL, hosts: None };
}

/// Loads, plans and checks a job: what every submission path does first.
pub fn prepare(
    runtime: &Runtime,
    source: &JobSource,
    args: &[(String, String)],
    parallelism: u32,
    input: Option<String>,
    output: Option<String>,
    submitter: Submitter<'_>,
) -> Result<(PlannedCode, ExecutionGraph), JobError> {
    bind(load_plan(runtime, source, args, submitter.capabilities)?, parallelism, input, output, submitter.hosts)
}

/// [`prepare`] after [`load_plan`]: binds, validates and builds the execution graph;
/// a tenant's connectors (`hosts`: `Some`) reach only the hosts it may reach.
pub fn bind(
    mut planned: PlannedCode,
    parallelism: u32,
    input: Option<String>,
    output: Option<String>,
    hosts: Option<&[String]>,
) -> Result<(PlannedCode, ExecutionGraph), JobError> {
    planned.plan.bind_io(input.as_deref(), output.as_deref())?;
    planned.plan.validate(parallelism)?;
    if let Some(hosts) = hosts {
        // Before the probe: the JobManager reaches no host on a tenant's behalf that
        // the tenant may not reach itself.
        check_hosts(&planned.plan, hosts)?;
    }
    check_connectors(&planned.plan)?;
    let graph = ExecutionGraph::build(&planned.plan, parallelism);
    Ok((planned, graph))
}

/// Checks that every connector of a tenant's plan reaches only `allowed` hosts.
fn check_hosts(plan: &JobPlan, allowed: &[String]) -> Result<(), JobError> {
    for n in &plan.nodes {
        let c = match &n.kind {
            NodeKind::Source(SourceKind::Connector(c)) | NodeKind::Sink(SinkKind::Connector(c)) => c,
            _ => continue,
        };
        for (host, port) in weir_connectors::endpoints(c) {
            if !weir_connectors::host_allowed(allowed, &host, port) {
                let host = port.map_or(host.clone(), |p| format!("{host}:{p}"));
                let allowed = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
                return Err(JobError::HostNotAllowed { uid: n.uid.clone(), kind: c.kind.clone(), host, allowed });
            }
        }
    }
    Ok(())
}

/// Checks every connector the plan names (kind and options) and reaches its system
/// (a Kafka broker and its topics), so a misspelt option, a broker that is down or a
/// missing topic fails the submission, naming its node and the cause.
fn check_connectors(plan: &JobPlan) -> Result<(), JobError> {
    for n in &plan.nodes {
        let checked = match &n.kind {
            NodeKind::Source(SourceKind::Connector(c)) => weir_connectors::probe(c, Role::Source),
            NodeKind::Sink(SinkKind::Connector(c)) => weir_connectors::probe(c, Role::Sink),
            _ => Ok(()),
        };
        checked.map_err(|error| JobError::Connector { uid: n.uid.clone(), error })?;
    }
    Ok(())
}

/// Checks what the plan's connectors need of its checkpoints (a transactional Kafka
/// sink: checkpoints, and a transaction timeout above the interval plus `restart`, the
/// longest a failure may take to be noticed and the job restarted).
pub fn check_checkpointing(plan: &JobPlan, interval: Option<std::time::Duration>, restart: std::time::Duration) -> Result<(), JobError> {
    for n in &plan.nodes {
        if let NodeKind::Sink(SinkKind::Connector(c)) = &n.kind {
            weir_connectors::check_checkpointing(c, Role::Sink, interval, restart)
                .map_err(|error| JobError::Connector { uid: n.uid.clone(), error })?;
        }
    }
    Ok(())
}

/// Checks every file path of the plan against what the job may open: the paths of
/// file sources and sinks, each named by its node.
pub fn check_files(plan: &JobPlan, files: &FileAccess) -> Result<(), AccessError> {
    for n in &plan.nodes {
        match &n.kind {
            NodeKind::Source(SourceKind::FileLines(Some(p)) | SourceKind::TextLines(Some(p))) => {
                files.check(&format!("file source {:?}", n.uid), p)?
            }
            NodeKind::Sink(SinkKind::File(Some(p))) => files.check(&format!("file sink {:?}", n.uid), p)?,
            _ => {}
        }
    }
    Ok(())
}

/// A loaded component's hash, typed. `weir-wasm` always gives 64 lower-case hex
/// digits; anything else is refused as an invalid component rather than trusted.
pub fn component_hash(c: &JobComponent) -> Result<ComponentHash, LoadError> {
    c.hash.parse().map_err(|e: InvalidId| LoadError::Invalid(e.to_string()))
}

/// A new job id: unique across processes and restarts.
pub fn new_job_id() -> JobId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    JobId::from_u64(nanos ^ (u64::from(std::process::id()) << 40) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

impl From<TaskError> for JobError {
    fn from(e: TaskError) -> Self {
        // Boxed: a typed task error is large, and every planning result carries it.
        JobError::Deploy(Box::new(e))
    }
}

/// A live swap's first check, on the new plan as the component declares it (before
/// binding, which could fail for another job's sources first): the same nodes by uid,
/// in order. The error names the first difference.
pub fn check_swap_uids(running: &JobPlan, new: &JobPlan) -> Result<(), String> {
    if new.nodes.len() != running.nodes.len() {
        return Err(format!("the new plan has {} nodes, the running one {}", new.nodes.len(), running.nodes.len()));
    }
    match new.nodes.iter().zip(&running.nodes).enumerate().find(|(_, (n, o))| n.uid != o.uid) {
        Some((i, (n, o))) => Err(format!("node {i} has uid {:?} in the new plan, {:?} in the running one", n.uid, o.uid)),
        None => Ok(()),
    }
}

/// Whether a running job (`running`: its plan, graph and code) may swap to new code
/// live: the new plan must be the same graph (nodes with their uids, names, kinds and
/// parallelism; edges with their partitioning and key-by types; key groups), so every
/// subtask, its state, timers and source positions carry over one to one, and each
/// operator must run from the same component index and guest operator id. Only the
/// components' bytes differ. The error names the first difference.
pub fn check_swap(running: (&JobPlan, &ExecutionGraph, &JobCode), new: (&JobPlan, &ExecutionGraph, &JobCode)) -> Result<(), String> {
    let ((old_plan, old_graph, old_code), (plan, graph, code)) = (running, new);
    if plan.nodes.len() != old_plan.nodes.len() {
        return Err(format!("the new plan has {} nodes, the running one {}", plan.nodes.len(), old_plan.nodes.len()));
    }
    for (i, (n, o)) in plan.nodes.iter().zip(&old_plan.nodes).enumerate() {
        if n.uid != o.uid {
            return Err(format!("node {i} has uid {:?} in the new plan, {:?} in the running one", n.uid, o.uid));
        }
        if n != o {
            return Err(format!("node {:?} differs (kind, name, parallelism or watermarks)", n.uid));
        }
    }
    if plan.edges != old_plan.edges {
        let uid = |e: &weir_types::plan::Edge| {
            let name = |i: u32| plan.nodes.get(i as usize).map_or("?", |n| n.uid.as_str());
            format!("{} -> {}", name(e.source), name(e.target))
        };
        let differing = plan.edges.iter().zip(&old_plan.edges).find(|(a, b)| a != b).map(|(a, _)| uid(a));
        return Err(match differing {
            Some(e) => format!("edge {e} differs (partitioning, key-by type, side output or input)"),
            None => format!("the new plan has {} edges, the running one {}", plan.edges.len(), old_plan.edges.len()),
        });
    }
    if plan.max_parallelism() != old_plan.max_parallelism() {
        return Err(format!("max parallelism {} differs from the running {}", plan.max_parallelism(), old_plan.max_parallelism()));
    }
    if graph != old_graph {
        return Err("the new plan chains into other vertices".into());
    }
    if code.operators != old_code.operators || code.components.len() != old_code.components.len() {
        return Err("the operators run from other components or guest operator ids".into());
    }
    Ok(())
}

/// A live swap's check of the components it replaces in a manifest job (`replaced`:
/// index, the manifest's name, the running component), on the new code (`new`,
/// `graph`): each new component exports what the one it replaces did (`job`,
/// `timers`), and opens every operator the job runs from it (an `open` probe with the
/// operator's arguments over `args`, then `close`, in a sandbox of the job's
/// `capabilities`), so a component lacking one of them is refused before anything
/// starts rather than failing the job at the switch. The error names the component.
pub fn check_swap_components(
    runtime: &Runtime,
    replaced: &[(usize, String, JobComponent)],
    new: &PlannedCode,
    graph: &ExecutionGraph,
    args: &[(String, String)],
    capabilities: Capabilities,
) -> Result<(), String> {
    let world = |c: &JobComponent| match (c.has_plan(), c.has_timers()) {
        (true, _) => "job-component",
        (false, true) => "timed-operator-component",
        (false, false) => "operator-component",
    };
    for (index, name, old) in replaced {
        let fail = |e: String| format!("component {name:?}: {e}");
        let (component, _) = new.components.get(*index).ok_or_else(|| fail("not in the new code".into()))?;
        if world(component) != world(old) {
            return Err(fail(format!("the new one implements world {}, the running one {}", world(component), world(old))));
        }
        let mut instance =
            Instance::new(runtime, component, "swap check", Sandbox::new(capabilities, "swap check")).map_err(|e| fail(e.to_string()))?;
        if component.has_plan() {
            instance.plan(args, runtime.limits().plan_fuel).map_err(|e| fail(format!("its plan failed: {e}")))?;
        }
        for (n, code) in new.code.operators.iter().enumerate() {
            let Some(code) = code.as_ref().filter(|c| c.component as usize == *index) else { continue };
            let uid = new.plan.nodes.get(n).map_or("?", |node| node.uid.as_str());
            let mut op_args = args.to_vec();
            for (k, v) in &code.args {
                op_args.retain(|(key, _)| key != k);
                op_args.push((k.clone(), v.clone()));
            }
            let parallelism = graph.vertices.iter().find(|v| v.nodes.contains(&n)).map_or(1, |v| v.parallelism);
            let info = TaskInfo { subtask: 0, parallelism, max_parallelism: new.plan.max_parallelism() };
            let op = OpRef { guest: code.op, state: n as u32 };
            let opened = instance.open(op, info, &op_args).and_then(|()| instance.close(op));
            opened.map_err(|e| fail(format!("cannot run operator {uid:?} (operator id {} in it): {e}", code.op)))?;
        }
    }
    Ok(())
}
