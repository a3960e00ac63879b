//! The component's side of the contract: `plan`, `open`, `process`, `on-timer`
//! (exported in `timers`), `close`, dispatched to the operators the user's `build`
//! function registered.
//!
//! `plan` runs `build` and keeps the resulting operators in a per-instance registry; the
//! host calls `plan` in every instance before `open`, and `open` rebuilds the registry
//! itself if the host did not. Operator ids are node indices of the plan.

use core::cell::RefCell;

use crate::error::OpError;
use crate::graph::Registry;
use crate::job::Job;
use crate::ops::Operator;
use crate::side;
use crate::wit::exports::weir::dataflow::{job as wit_job, operator as wit_op};
use crate::wit::weir::dataflow::plan_types::{JobPlan, NodeKind};

/// The user's `build` function, as passed to `export_job!`.
pub type BuildFn = fn(&mut Job);

/// Implemented by the type `export_job!` declares; the SDK implements the exported WIT
/// interfaces for every such type.
#[doc(hidden)]
pub trait JobMain {
    fn build(job: &mut Job);
}

struct Slot {
    op: Box<dyn Operator>,
    /// The state format version it declares to the host when it opens.
    state_version: u32,
    /// Size of the last output, used to size the next output buffer in one allocation:
    /// the canonical ABI takes ownership of the returned buffer, so capacity cannot be
    /// kept across calls, but the next allocation can be right the first time.
    out_hint: usize,
    /// The same for `on-timer` outputs, which differ in size from `process`'s.
    timer_hint: usize,
}

struct Runtime {
    slots: Vec<Option<Slot>>,
}

thread_local! {
    static RUNTIME: RefCell<Option<Runtime>> = const { RefCell::new(None) };
}

/// Runs `build` on fresh state and lowers the result.
pub(crate) fn build_job(build: BuildFn, args: Vec<(String, String)>) -> Result<(JobPlan, Registry), String> {
    let mut job = Job::new(args);
    build(&mut job);
    job.into_graph().finish("job")
}

fn install(plan: &JobPlan, registry: Registry) {
    let slots = registry.into_iter().map(|r| r.map(|r| Slot { op: r.op, state_version: r.state_version, out_hint: 0, timer_hint: 0 })).collect();
    RUNTIME.with(|rt| *rt.borrow_mut() = Some(Runtime { slots }));
    let declared = plan
        .nodes
        .iter()
        .map(|n| match &n.kind {
            NodeKind::Operator(spec) => spec.side_outputs.clone(),
            _ => Vec::new(),
        })
        .collect();
    side::install(declared);
}

/// `job.plan`: builds the job, remembers its operators, returns the plan.
pub(crate) fn plan(build: BuildFn, args: Vec<(String, String)>) -> Result<JobPlan, String> {
    install_panic_hook();
    let (plan, registry) = build_job(build, args)?;
    install(&plan, registry);
    Ok(plan)
}

fn with_slot<T>(op: u32, f: impl FnOnce(&mut Slot) -> Result<T, OpError>) -> Result<T, OpError> {
    RUNTIME.with(|rt| {
        let mut rt = rt.borrow_mut();
        let slot = rt.as_mut().and_then(|rt| rt.slots.get_mut(op as usize)).and_then(Option::as_mut).ok_or(OpError::UnknownOperator(op))?;
        f(slot)
    })
}

/// `operator.open`.
pub(crate) fn open(build: BuildFn, op: u32, args: Vec<(String, String)>) -> Result<(), OpError> {
    install_panic_hook();
    let built = RUNTIME.with(|rt| rt.borrow().is_some());
    if !built {
        let (plan, registry) = build_job(build, args).map_err(|e| OpError::Failed(format!("building the job failed: {e}")))?;
        install(&plan, registry);
    }
    with_slot(op, |slot| {
        declare_state_version(slot.state_version);
        slot.op.open()
    })
}

/// Tells the host the format version of the state the operator being opened writes.
fn declare_state_version(version: u32) {
    #[cfg(not(test))]
    crate::wit::weir::dataflow::state_version::declare(version);
    // Native tests run no host to tell.
    #[cfg(test)]
    let _ = version;
}

/// The state format version declared by the code whose state the running operator
/// starts from (see [`restored_state_version`](crate::restored_state_version)).
pub(crate) fn restored_state_version() -> Option<u32> {
    #[cfg(not(test))]
    return crate::wit::weir::dataflow::state_version::restored();
    // Native tests run no host: nothing is ever restored.
    #[cfg(test)]
    None
}

/// `operator.process`.
pub(crate) fn process(op: u32, batch: &[u8]) -> Result<Vec<u8>, OpError> {
    install_panic_hook();
    with_slot(op, |slot| {
        side::begin(op);
        let out = slot.op.process(batch, slot.out_hint.max(256));
        side::end();
        let out = out?;
        // Remember a little more than we needed so a slightly bigger batch still fits.
        slot.out_hint = out.len() + out.len() / 8;
        Ok(out)
    })
}

/// `timers.on-timer`.
pub(crate) fn on_timer(op: u32, batch: &[u8]) -> Result<Vec<u8>, OpError> {
    install_panic_hook();
    with_slot(op, |slot| {
        side::begin(op);
        let out = slot.op.on_timer(batch, slot.timer_hint.max(256));
        side::end();
        let out = out?;
        slot.timer_hint = out.len() + out.len() / 8;
        Ok(out)
    })
}

/// `operator.close`.
pub(crate) fn close(op: u32) -> Result<(), OpError> {
    install_panic_hook();
    let undeclared = side::undeclared(op);
    if undeclared > 0 {
        crate::log::info(&format!("dropped {undeclared} records emitted to side outputs that no stream of the plan reads"));
    }
    with_slot(op, |slot| slot.op.close())
}

/// Reports panics to the host's log (with their location) before the instance traps,
/// so the host can name the panic in the operator's error.
#[inline]
fn install_panic_hook() {
    weir_batch::guest::install_panic_hook(crate::log::error);
}

impl From<OpError> for wit_op::OperatorError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::UnknownOperator(op) => wit_op::OperatorError::UnknownOperator(op),
            OpError::BadInput(m) => wit_op::OperatorError::BadInput(m),
            OpError::Failed(m) => wit_op::OperatorError::Failed(m),
        }
    }
}

impl<T: JobMain> wit_job::Guest for T {
    fn plan(args: Vec<(String, String)>) -> Result<JobPlan, String> {
        plan(T::build, args)
    }
}

impl<T: JobMain> wit_op::Guest for T {
    fn open(op: u32, _info: wit_op::TaskInfo, args: Vec<(String, String)>) -> Result<(), wit_op::OperatorError> {
        Ok(open(T::build, op, args)?)
    }

    fn process(op: u32, batch: Vec<u8>) -> Result<Vec<u8>, wit_op::OperatorError> {
        Ok(process(op, &batch)?)
    }

    fn close(op: u32) -> Result<(), wit_op::OperatorError> {
        Ok(close(op)?)
    }
}
