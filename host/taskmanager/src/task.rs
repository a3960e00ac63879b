//! A subtask: what it is told to run, and the thread loop that runs it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use weir_state::{Capture, TaskState};
use weir_types::deployment::{SideOutputCount, TaskStats};
use weir_wasm::{Instance, JobComponent, Runtime, Sandbox, TaskInfo};

pub use crate::cancel::Cancel;
pub use crate::chain::OperatorStep;
use crate::chain::{Chain, ChainOutput, Downstream, SideCounter};
use crate::channel::POLL;
use crate::clock::Clock;
use crate::error::{Bug, TaskError};
use crate::exchange::{self, Event, Inputs, Router};
use crate::sink::Sink;
use crate::source::Source;
use crate::throttle::Throttle;
use crate::watermark::{BEFORE_TIME, END_OF_TIME, Emit, SplitWatermarks};
use weir_checkpoint::Split;
use weir_types::plan::WatermarkStrategy;

/// Where a subtask's records come from.
pub enum Head {
    /// A built-in source.
    Source(Box<dyn Source>),
    /// One channel per upstream subtask, each ending with [`Message::End`](crate::exchange::Message::End).
    Input(Inputs),
}

/// What a subtask captured at a checkpoint barrier, to persist and acknowledge.
pub struct TaskSnapshot {
    /// Checkpoint id.
    pub checkpoint: u64,
    /// Its keyed state, if it has any.
    pub state: Option<Capture>,
    /// The unread rest of its source, if it is a source.
    pub source: Option<Vec<Split>>,
    /// The state format version each of its operators' code declared, by uid.
    pub state_versions: BTreeMap<String, u32>,
}

/// A subtask's link to the job's checkpoints.
#[derive(Clone)]
pub struct Checkpointing {
    /// The newest checkpoint whose barrier sources should inject (shared by the job's
    /// subtasks on one TaskManager).
    pub requested: Arc<AtomicU64>,
    /// The checkpoint of a stop-with-savepoint (0: none). A source emits nothing between
    /// its barrier and the next one, so nothing past the savepoint reaches a sink, not
    /// even the final commit of an input that ends before the cancel arrives. A later
    /// barrier (the JobManager could not write the savepoint) resumes it.
    pub stop_at: Arc<AtomicU64>,
    /// Hears of every snapshot this subtask takes.
    pub on_snapshot: Arc<dyn Fn(TaskSnapshot) + Send + Sync>,
    /// The newest checkpoint the JobManager declared complete.
    pub completed: Arc<AtomicU64>,
    /// Hears that the subtask processed the end of its input, with the last checkpoint
    /// whose barrier it passed; `None` without checkpoints: the subtask finishes at
    /// once (its sinks are plain files, nothing waits for a commit).
    pub on_end: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    /// A live swap, once armed: new code from a checkpoint's barrier on.
    pub swap: SwapSlot,
}

impl Default for Checkpointing {
    fn default() -> Self {
        Self {
            requested: Arc::default(),
            stop_at: Arc::default(),
            on_snapshot: Arc::new(|_| {}),
            completed: Arc::default(),
            on_end: None,
            swap: SwapSlot::default(),
        }
    }
}

/// Where a subtask's records go.
pub enum Tail {
    /// A built-in sink.
    Sink(Sink),
    /// Downstream vertices, one router each.
    Routers(Vec<Router>),
}

/// Everything a subtask needs to run.
pub struct TaskDeployment {
    /// Names the subtask in logs and errors, e.g. `wordcount/count (2/4)`.
    pub label: String,
    /// Subtask index.
    pub subtask: u32,
    /// Parallelism of its vertex.
    pub parallelism: u32,
    /// Key groups of the job.
    pub max_parallelism: u32,
    /// Input.
    pub head: Head,
    /// A source head's watermark strategy (watermarks from its records' timestamps).
    pub watermarks: Option<WatermarkStrategy>,
    /// Chained guest operators, in order; may be empty.
    pub operators: Vec<OperatorStep>,
    /// Output.
    pub tail: Tail,
    /// The sandbox and the job's components (by index), if there are operators.
    pub wasm: Option<(Runtime, Vec<JobComponent>)>,
    /// What the operators' WASI grants (the job's capabilities, the random substitute
    /// seeded from the job's name, vertex and subtask).
    pub sandbox: Sandbox,
    /// Arguments of the job, given to `plan`.
    pub args: Vec<(String, String)>,
    /// The subtask's keyed state, if an operator is keyed.
    pub state: Option<TaskState>,
    /// Memory budget of each keyed operator's value cache.
    pub cache_bytes: usize,
    /// The job's cancel flag.
    pub cancel: Cancel,
    /// Where the subtask publishes its progress.
    pub counters: Arc<TaskCounters>,
    /// Checkpoint barriers and snapshots.
    pub checkpointing: Checkpointing,
    /// Its processing time ([`clock::system`](crate::clock::system) but in tests).
    pub clock: Arc<dyn Clock>,
    /// Its tenant's fuel rate on this TaskManager.
    pub throttle: Throttle,
}

/// Live record counts of a running subtask, read by metrics while it runs.
#[derive(Debug)]
pub struct TaskCounters {
    /// Records that entered the subtask so far.
    pub records_in: AtomicU64,
    /// Of those, per input of the head operator (the second counts only for a
    /// connect's two-input operator).
    pub records_in_by_input: [AtomicU64; 2],
    /// True if the head operator has two inputs (a connect).
    two_inputs: bool,
    /// Records that left it so far.
    pub records_out: AtomicU64,
    /// Fuel its operators burned so far.
    pub fuel: AtomicU64,
    /// Nanoseconds it spent blocked on full downstream channels so far.
    pub backpressured_ns: AtomicU64,
    /// Nanoseconds it waited for its tenant's fuel rate so far.
    pub throttled_ns: AtomicU64,
    /// The event time it reached: the watermark that left its operators
    /// ([`BEFORE_TIME`] until the first).
    pub watermark: AtomicI64,
    /// Every side output its operators declare, in chain order.
    pub side: Arc<[SideCounter]>,
    /// A Kafka source's lag per partition, as it last looked.
    pub source_lag: std::sync::Mutex<Vec<weir_types::deployment::PartitionLag>>,
}

impl Default for TaskCounters {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl TaskCounters {
    /// Counters of a subtask whose operators run in `operators`' order.
    pub fn new(operators: &[OperatorStep]) -> Self {
        let side = operators.iter().flat_map(|o| o.side_outputs.iter().map(|output| SideCounter::new(&o.name, output))).collect();
        Self {
            records_in: AtomicU64::new(0),
            records_in_by_input: Default::default(),
            two_inputs: operators.first().is_some_and(|o| o.two_inputs),
            records_out: AtomicU64::new(0),
            fuel: AtomicU64::new(0),
            backpressured_ns: AtomicU64::new(0),
            throttled_ns: AtomicU64::new(0),
            watermark: AtomicI64::new(BEFORE_TIME),
            side,
            source_lag: Default::default(),
        }
    }

    /// Every side output's counts so far.
    pub fn side_outputs(&self) -> Vec<SideOutputCount> {
        self.side
            .iter()
            .map(|s| SideOutputCount {
                operator: s.operator.clone(),
                output: s.output.clone(),
                records: s.records.load(Ordering::Relaxed),
                dropped: s.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Records in per input of a connect's two-input operator; empty for others.
    pub fn records_in_by_input(&self) -> Vec<u64> {
        match self.two_inputs {
            true => self.records_in_by_input.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            false => Vec::new(),
        }
    }

    /// The watermark, if one passed yet.
    pub fn watermark(&self) -> Option<i64> {
        Some(self.watermark.load(Ordering::Relaxed)).filter(|&w| w != BEFORE_TIME)
    }
}

/// A running subtask's middle and end: its operators and where their output goes.
struct Pipeline<'a> {
    chain: Option<Chain>,
    /// What instantiates the chain's operators again, for a live swap.
    code: Option<Code>,
    tail: Tail,
    cancel: &'a Cancel,
    counters: &'a TaskCounters,
    checkpointing: &'a Checkpointing,
    stats: TaskStats,
    /// The watermark last passed downstream.
    watermark: i64,
    throttle: Throttle,
    pauses: OutputPauses,
}

/// When a sink subtask's output starts, pauses and ends, logged at debug level (target
/// `weir_taskmanager::task`): what a consumer of the sink sees of a live swap or an
/// upgrade, which the swap benchmark measures. Only pauses over [`Self::NOTABLE`] are
/// logged, so a steady stream logs nothing.
struct OutputPauses {
    label: String,
    last: Option<(Instant, SystemTime)>,
}

impl OutputPauses {
    const NOTABLE: Duration = Duration::from_millis(10);

    fn new(label: String) -> Self {
        Self { label, last: None }
    }

    fn wrote(&mut self) {
        let now = (Instant::now(), SystemTime::now());
        match self.last {
            None => tracing::debug!(subtask = %self.label, at_unix_us = unix_us(now.1), "sink output begins"),
            Some((then, _)) if now.0 - then > Self::NOTABLE => {
                let gap_us = (now.0 - then).as_micros();
                tracing::debug!(subtask = %self.label, at_unix_us = unix_us(now.1), gap_us, "sink output resumed after a pause");
            }
            Some(_) => {}
        }
        self.last = Some(now);
    }
}

impl Drop for OutputPauses {
    fn drop(&mut self) {
        if let Some((_, at)) = self.last {
            tracing::debug!(subtask = %self.label, at_unix_us = unix_us(at), "sink output ends (its last write)");
        }
    }
}

fn unix_us(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros())
}

/// Where records leaving a subtask's operators go: its sink or its routers.
struct Output<'p, 'a> {
    tail: &'p mut Tail,
    pauses: &'p mut OutputPauses,
    cancel: &'a Cancel,
    counters: &'a TaskCounters,
    stats: &'p mut TaskStats,
}

impl Output<'_, '_> {
    fn emit(&mut self, records: &[u8], count: usize) -> Result<(), TaskError> {
        self.send(None, records, count)
    }

    /// The last operator's output: its records, then its side-output records.
    fn emit_chain(&mut self, output: &ChainOutput) -> Result<(), TaskError> {
        self.emit(output.records(), output.count)?;
        for (side, records, count) in output.side() {
            self.send(Some(side), records, count)?;
        }
        Ok(())
    }

    /// Sends `count` records of the main output (`None`) or a side output to the
    /// routers of its edges; a side output without one drops them.
    fn send(&mut self, side: Option<u32>, records: &[u8], count: usize) -> Result<(), TaskError> {
        let routed = match (&mut *self.tail, side) {
            (Tail::Sink(s), None) => {
                s.write(records)?;
                self.pauses.wrote();
                true
            }
            (Tail::Sink(_), Some(_)) => false,
            (Tail::Routers(rs), side) => {
                let mut routed = side.is_none();
                let mut pushed = Ok(());
                for r in rs.iter_mut().filter(|r| r.side_output() == side) {
                    routed = true;
                    pushed = r.push(records, count, self.cancel);
                    if pushed.is_err() {
                        break;
                    }
                }
                self.counters.backpressured_ns.store(rs.iter().map(Router::blocked_ns).sum(), Ordering::Relaxed);
                pushed?;
                routed
            }
        };
        if routed {
            self.stats.records_out += count as u64;
            self.counters.records_out.fetch_add(count as u64, Ordering::Relaxed);
        } else {
            self.stats.side_dropped += count as u64;
        }
        Ok(())
    }
}

impl Pipeline<'_> {
    /// Splits the pipeline into its operators and where their output goes.
    fn parts(&mut self) -> (Option<&mut Chain>, Output<'_, '_>) {
        let out = Output { tail: &mut self.tail, pauses: &mut self.pauses, cancel: self.cancel, counters: self.counters, stats: &mut self.stats };
        (self.chain.as_mut(), out)
    }

    /// Runs a batch of `count` records that came through the head's input `through`
    /// through the operators to the tail.
    fn deliver(&mut self, records: &[u8], count: usize, through: u32) -> Result<(), TaskError> {
        self.stats.records_in += count as u64;
        self.counters.records_in.fetch_add(count as u64, Ordering::Relaxed);
        if let Some(c) = self.counters.records_in_by_input.get(through as usize) {
            c.fetch_add(count as u64, Ordering::Relaxed);
        }
        let counters = self.counters;
        let (chain, mut out) = self.parts();
        let Some(c) = chain else { return out.emit(records, count) };
        let output = c.run(records, through)?;
        out.emit_chain(&output)?;
        let downstream: &mut Downstream<'_> = &mut |o| out.emit_chain(o);
        let generated = c.generated(downstream)?;
        c.fire_processing(downstream)?;
        let fuel = c.fuel_used();
        counters.fuel.store(fuel, Ordering::Relaxed);
        // Before the next batch is taken: a subtask of a tenant over its fuel rate
        // waits here, holding its input back.
        let waited = self.throttle.pay(fuel, self.cancel);
        counters.throttled_ns.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        match generated {
            Some(w) => self.forward_watermark(w),
            None => Ok(()),
        }
    }

    /// Event time reached `w` at the subtask's input: timers fire along the chain and
    /// the resulting watermark goes downstream.
    fn watermark(&mut self, w: i64) -> Result<(), TaskError> {
        let (chain, mut out) = self.parts();
        let leaving = match chain {
            Some(c) => {
                let downstream: &mut Downstream<'_> = &mut |o| out.emit_chain(o);
                if w == END_OF_TIME {
                    // Ahead of the final watermark, so what they emit is not late downstream.
                    c.fire_processing_at_end(downstream)?;
                }
                c.advance(0, w, downstream)?
            }
            None => Some(w),
        };
        match leaving {
            Some(w) => self.forward_watermark(w),
            None => Ok(()),
        }
    }

    fn forward_watermark(&mut self, w: i64) -> Result<(), TaskError> {
        if w <= self.watermark {
            return Ok(());
        }
        self.watermark = w;
        self.counters.watermark.store(w, Ordering::Relaxed);
        match &mut self.tail {
            Tail::Sink(_) => Ok(()),
            Tail::Routers(rs) => rs.iter_mut().try_for_each(|r| r.watermark(w, self.cancel)),
        }
    }

    /// The inputs went idle or active again: downstream hears it unless an operator
    /// here generates watermarks of its own.
    fn idle(&mut self, idle: bool) -> Result<(), TaskError> {
        match &mut self.tail {
            Tail::Routers(rs) if self.chain.as_ref().is_none_or(|c| !c.generates()) => rs.iter_mut().try_for_each(|r| r.idle(idle, self.cancel)),
            _ => Ok(()),
        }
    }

    /// What a watermark valve decided, in order.
    fn emit(&mut self, emits: Vec<Emit>) -> Result<(), TaskError> {
        emits.into_iter().try_for_each(|e| match e {
            Emit::Watermark(w) => self.watermark(w),
            Emit::Idle => self.idle(true),
            Emit::Active => self.idle(false),
        })
    }

    /// Processing time passed without input: fire what is due.
    fn tick(&mut self) -> Result<(), TaskError> {
        let (chain, mut out) = self.parts();
        let Some(c) = chain else { return Ok(()) };
        c.fire_processing(&mut |o| out.emit_chain(o))?;
        let fuel = c.fuel_used();
        let waited = self.throttle.pay(fuel, self.cancel);
        self.counters.throttled_ns.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// A checkpoint after the end of the input (no barrier reaches a subtask whose
    /// inputs ended): captures the final state and source position; a sink closes its
    /// last epoch as this checkpoint's. Nothing goes downstream: it has ended too.
    fn final_snapshot(&mut self, id: u64, source: Option<Vec<Split>>) -> Result<(), TaskError> {
        let state = self.chain.as_mut().map(Chain::capture).transpose()?.flatten();
        if let Tail::Sink(s) = &mut self.tail {
            s.close_last(id)?;
        }
        let state_versions = self.chain.as_ref().map(Chain::state_versions).unwrap_or_default();
        (self.checkpointing.on_snapshot)(TaskSnapshot { checkpoint: id, state, source, state_versions });
        self.stats.last_checkpoint = id;
        Ok(())
    }

    /// Flink's final checkpoint: after its end of input a subtask stays, answering
    /// each checkpoint triggered since with its final snapshot, until one of them
    /// completes; then its sink commits (a restore of that checkpoint would too) and
    /// it finishes. Cancelled meanwhile, its last epoch stays pending: a restore
    /// discards it and the records are written again, once.
    fn await_final_checkpoint(&mut self, on_end: &(dyn Fn(u64) + Send + Sync), source: Option<Vec<Split>>) -> Result<(), TaskError> {
        on_end(self.stats.last_checkpoint);
        // The first checkpoint that captured it: every one completed from there on
        // holds its final snapshot (its own, or the JobManager's copy of it).
        let mut first = None;
        loop {
            if self.cancel.is_cancelled() {
                return Err(TaskError::Cancelled);
            }
            let requested = self.checkpointing.requested.load(Ordering::Acquire);
            if requested > self.stats.last_checkpoint {
                self.final_snapshot(requested, source.clone())?;
                first = first.or(Some(requested));
            }
            let completed = self.checkpointing.completed.load(Ordering::Acquire);
            if first.is_some_and(|id| completed >= id) {
                return match &mut self.tail {
                    Tail::Sink(s) => s.commit(completed),
                    Tail::Routers(_) => Ok(()),
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// At a barrier: captures state and source position, then passes the barrier on.
    /// The capture is cheap (a cache flush and a fjall snapshot); writing it out
    /// happens elsewhere, so records keep flowing.
    fn barrier(&mut self, id: u64, source: Option<Vec<Split>>) -> Result<(), TaskError> {
        let started = Instant::now();
        let state = self.chain.as_mut().map(Chain::capture).transpose()?.flatten();
        // Flink's "sync duration": how long the barrier holds this subtask's records.
        tracing::debug!(subtask = %self.pauses.label, checkpoint = id, sync_us = started.elapsed().as_micros(), "snapshot captured");
        // A sink closes its epoch before the snapshot is acknowledged: once the
        // checkpoint completes, its commit must find the epoch's file (a stop with
        // savepoint cancels right after, and nothing would commit it later).
        if let Tail::Sink(s) = &mut self.tail {
            s.barrier(id)?;
        }
        let state_versions = self.chain.as_ref().map(Chain::state_versions).unwrap_or_default();
        (self.checkpointing.on_snapshot)(TaskSnapshot { checkpoint: id, state, source, state_versions });
        self.stats.last_checkpoint = id;
        match &mut self.tail {
            Tail::Sink(_) => {}
            Tail::Routers(rs) => rs.iter_mut().try_for_each(|r| r.barrier(id, self.cancel))?,
        }
        // After the barrier went on: downstream snapshots while this subtask swaps.
        self.swap(id)
    }

    /// A live swap armed for a checkpoint up to `id`: the barrier of `id` is the switch
    /// point. Everything before it ran on the old code and is in the snapshot just
    /// taken; the new instances carry on with the same state, timers and source
    /// position, opened as after a restore.
    fn swap(&mut self, id: u64) -> Result<(), TaskError> {
        let (Some(chain), Some(code)) = (self.chain.as_mut(), self.code.as_mut()) else { return Ok(()) };
        let armed = self.checkpointing.swap.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some(to) = armed.filter(|to| to.at <= id && to.at > code.swapped) else { return Ok(()) };
        let started = Instant::now();
        // The new code starts from the state the old code wrote, in its format.
        let declared = chain.state_versions();
        for step in &mut code.operators {
            step.restored_version = declared.get(&step.uid).copied();
        }
        let (instances, _) = instantiate(&code.runtime, &to.components, &code.operators, &code.args, &code.label, code.info, code.sandbox)?;
        chain.swap(instances);
        code.swapped = to.at;
        // What the swap adds to the barrier's pause in this subtask's output (the
        // swap benchmark reads it).
        let pause_us = started.elapsed().as_micros();
        tracing::info!(subtask = %code.label, checkpoint = id, pause_us, "live swap: runs the new code from this barrier on");
        Ok(())
    }
}

/// New code for a running job's subtasks: the components (by index, as the job's
/// code names them) and the checkpoint whose barrier is the switch point.
pub struct SwapTo {
    /// Checkpoint id: subtasks switch after their snapshot for the first barrier at
    /// or past it.
    pub at: u64,
    /// The new components, compiled.
    pub components: Vec<JobComponent>,
}

/// A job's armed swap on one TaskManager, shared by its subtasks.
pub type SwapSlot = Arc<std::sync::Mutex<Option<Arc<SwapTo>>>>;

/// What a subtask needs to instantiate its operators again.
struct Code {
    runtime: Runtime,
    operators: Vec<OperatorStep>,
    args: Vec<(String, String)>,
    label: String,
    info: TaskInfo,
    sandbox: Sandbox,
    /// The switch point of the last swap done (0: none).
    swapped: u64,
}

/// One instance per component the chain's `operators` use (shared by its operators
/// there), each operator opened; with each operator's instance index.
fn instantiate(
    runtime: &Runtime,
    components: &[JobComponent],
    operators: &[OperatorStep],
    args: &[(String, String)],
    label: &str,
    info: TaskInfo,
    sandbox: Sandbox,
) -> Result<(Vec<Instance>, Vec<usize>), TaskError> {
    let fail = |name: &str| {
        let name = name.to_string();
        move |failure| TaskError::Operator { name, failure }
    };
    let mut instances: Vec<(u32, Instance)> = Vec::new();
    let mut slots = Vec::with_capacity(operators.len());
    for step in operators {
        let slot = match instances.iter().position(|(c, _)| *c == step.component) {
            Some(slot) => slot,
            None => {
                let component = components.get(step.component as usize).ok_or_else(|| Bug::MissingComponent { operator: step.name.clone() })?;
                let mut instance = Instance::new(runtime, component, label, sandbox.part(step.component))?;
                if component.has_plan() {
                    // Rebuild the guest's operator registry: `plan` is deterministic.
                    instance.plan(args, runtime.limits().plan_fuel).map_err(fail("plan"))?;
                }
                instances.push((step.component, instance));
                instances.len() - 1
            }
        };
        instances[slot].1.set_restored_version(step.op, step.restored_version);
        instances[slot].1.open(step.op, info, &step.args).map_err(fail(&step.name))?;
        slots.push(slot);
    }
    Ok((instances.into_iter().map(|(_, i)| i).collect(), slots))
}

/// Runs a subtask to its end on the calling thread.
pub fn run_task(d: TaskDeployment) -> Result<TaskStats, TaskError> {
    let started = Instant::now();
    let TaskDeployment {
        label,
        subtask,
        parallelism,
        max_parallelism,
        head,
        watermarks,
        operators,
        tail,
        wasm,
        sandbox,
        args,
        state,
        cache_bytes,
        cancel,
        counters,
        checkpointing,
        clock,
        throttle,
    } = d;
    let info = TaskInfo { subtask, parallelism, max_parallelism };
    let chain = match (&wasm, operators.is_empty()) {
        (_, true) => None,
        (Some((runtime, components)), false) => {
            let (instances, slots) = instantiate(runtime, components, &operators, &args, &label, info, sandbox)?;
            let last_outputs = operators.last().map_or(0, |o| o.side_outputs.len()) as u32;
            let side_read = (0..last_outputs)
                .map(|o| match &tail {
                    Tail::Routers(rs) => rs.iter().any(|r| r.side_output() == Some(o)),
                    Tail::Sink(_) => false,
                })
                .collect();
            let ops = operators.iter().cloned().zip(slots).collect();
            Some(Chain::new(instances, ops, state, cache_bytes, counters.side.clone(), side_read, clock.clone())?)
        }
        (None, false) => return Err(Bug::NoComponents.into()),
    };
    let code =
        wasm.filter(|_| !operators.is_empty()).map(|(runtime, _)| Code { runtime, operators, args, label: label.clone(), info, sandbox, swapped: 0 });
    let mut p = Pipeline {
        chain,
        code,
        tail,
        cancel: &cancel,
        counters: &counters,
        checkpointing: &checkpointing,
        stats: TaskStats::default(),
        watermark: BEFORE_TIME,
        throttle,
        pauses: OutputPauses::new(label.clone()),
    };
    let exhausted = match head {
        Head::Source(mut src) => {
            let mut buf = Vec::with_capacity(exchange::BATCH_BYTES * 2);
            let now = || clock.now_ms().max(0) as u64;
            let mut splits = watermarks.map(|w| SplitWatermarks::new(&w, src.split_count(), now()));
            // A checkpoint already requested while this subtask was being set up (a
            // Python component takes a while to instantiate) still gets its barrier,
            // ahead of every record: its peers injected it, and downstream aligns on it.
            let (mut last, mut completed) = (0, 0);
            loop {
                if cancel.is_cancelled() {
                    return Err(TaskError::Cancelled);
                }
                let requested = checkpointing.requested.load(Ordering::Acquire);
                if requested > last {
                    last = requested;
                    src.barrier(requested);
                    p.barrier(requested, Some(src.splits()))?;
                }
                let done = checkpointing.completed.load(Ordering::Acquire);
                if done > completed {
                    completed = done;
                    src.checkpoint_completed(done);
                }
                let stop_at = checkpointing.stop_at.load(Ordering::Acquire);
                if stop_at != 0 && last == stop_at {
                    // Suspended until cancelled or resumed by a newer barrier.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                let Some(read) = src.next_batch(&mut buf)? else { break };
                if let Some(lag) = src.take_lag() {
                    *counters.source_lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = lag;
                }
                if let Some(s) = &mut splits {
                    // A split discovered while running (a new Kafka partition).
                    s.grow(src.split_count(), now());
                }
                if read.count > 0 {
                    if let Some(s) = &mut splits {
                        p.emit(s.wake(read.split))?;
                    }
                    p.deliver(&buf, read.count, 0)?;
                    if let Some(s) = &mut splits {
                        p.emit(s.batch(read.split, &buf, now()))?;
                    }
                } else {
                    if let Some(s) = splits.as_mut().filter(|_| !read.ended) {
                        p.emit(s.silent(read.split, now()))?;
                    }
                    p.tick()?;
                }
                if let Some(s) = splits.as_mut().filter(|_| read.ended) {
                    p.emit(s.end(read.split))?;
                }
                buf.clear();
            }
            // A finite input ends event time: every timer and window fires.
            p.watermark(END_OF_TIME)?;
            Some(src.splits())
        }
        Head::Input(mut inputs) => loop {
            // With timers to keep, the subtask wakes up for processing time.
            let deadline = p.chain.as_ref().is_some_and(Chain::has_timers).then(|| Instant::now() + POLL);
            match inputs.next_until(&cancel, deadline)? {
                Event::Batch(b, n, through) => p.deliver(&b, n, through)?,
                Event::Barrier(id) => p.barrier(id, None)?,
                Event::Watermark(w) => p.watermark(w)?,
                Event::Idle(idle) => p.idle(idle)?,
                Event::Timeout => p.tick()?,
                Event::End => break None,
            }
        },
    };
    if let Some(c) = p.chain.as_mut() {
        c.finish()?;
        p.stats.fuel = c.fuel_used();
        p.stats.side_dropped += c.side_dropped();
        if c.ttl_dropped() > 0 {
            tracing::info!(subtask = %label, entries = c.ttl_dropped(), "state TTL: the background sweep dropped expired keyed state entries");
        }
    }
    p.stats.side_outputs = counters.side_outputs();
    p.stats.records_in_by_input = counters.records_in_by_input();
    if p.stats.side_dropped > 0 {
        tracing::info!(subtask = %label, records = p.stats.side_dropped, "dropped records of side outputs that no edge reads");
    }
    match &mut p.tail {
        Tail::Sink(s) => s.finish()?,
        Tail::Routers(rs) => rs.iter_mut().try_for_each(|r| r.finish(&cancel))?,
    }
    if let Some(on_end) = &checkpointing.on_end {
        p.await_final_checkpoint(on_end.as_ref(), exhausted)?;
    }
    let mut stats = p.stats;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::clock::ManualClock;
    use crate::exchange::Message;
    use crate::sink::{Commits, Transactional, recover_output};
    use crate::source::{Source, Split, SplitRead};
    use std::sync::{Mutex, PoisonError};

    /// Two batches of one record; asks for checkpoint 1 while giving the first.
    struct TwoBatches {
        left: u32,
        requested: Arc<AtomicU64>,
    }

    impl Source for TwoBatches {
        fn next_batch(&mut self, out: &mut Vec<u8>) -> Result<Option<SplitRead>, TaskError> {
            if self.left == 0 {
                return Ok(None);
            }
            self.left -= 1;
            self.requested.store(1, Ordering::SeqCst);
            weir_types::batch::push_record(out, 0, b"k", b"v");
            Ok(Some(SplitRead { split: 0, count: 1, ended: self.left == 0 }))
        }

        fn splits(&self) -> Vec<Split> {
            vec![]
        }
    }

    /// A subtask reading [`TwoBatches`] straight into `sink`.
    fn two_batches_into(sink: Sink, requested: Arc<AtomicU64>, cancel: Cancel, checkpointing: Checkpointing) -> TaskDeployment {
        TaskDeployment {
            label: "source (1/1)".into(),
            sandbox: weir_wasm::Sandbox::OPEN,
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            head: Head::Source(Box::new(TwoBatches { left: 2, requested })),
            watermarks: None,
            operators: vec![],
            tail: Tail::Sink(sink),
            wasm: None,
            args: vec![],
            state: None,
            cache_bytes: 0,
            cancel,
            counters: Arc::default(),
            checkpointing,
            clock: crate::clock::system(),
            throttle: Throttle::none(),
        }
    }

    /// The JobManager may complete a checkpoint, and a TaskManager commit it, as soon
    /// as the last snapshot is acknowledged; with a stop-with-savepoint nothing commits
    /// later. So when a sink's snapshot is taken its epoch must already be committable.
    #[test]
    fn a_sink_closes_its_epoch_before_its_snapshot_is_acknowledged() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let commits = Arc::new(Commits::default());
        recover_output(dir.path(), "j", 0, 0, None)?;
        let sink = Sink::Transactional(Box::new(Transactional::open(dir.path().into(), "j", 0, 0, 0, commits.clone())?));
        let committed_at_snapshot = Arc::new(AtomicBool::new(false));
        let (seen, out) = (committed_at_snapshot.clone(), dir.path().to_path_buf());
        let requested = Arc::new(AtomicU64::new(0));
        let checkpointing = Checkpointing {
            requested: requested.clone(),
            stop_at: Arc::default(),
            on_snapshot: Arc::new(move |snapshot| {
                // The fastest possible completion: commit right away.
                let done = commits.commit(snapshot.checkpoint).is_ok() && out.join("part-0-1-a0").exists();
                seen.store(done, Ordering::SeqCst);
            }),
            ..Checkpointing::default()
        };
        run_task(two_batches_into(sink, requested, Cancel::default(), checkpointing))?;
        assert!(committed_at_snapshot.load(Ordering::SeqCst), "checkpoint 1's epoch was committed by its completion");
        Ok(())
    }

    /// Stop-with-savepoint: after the stop's barrier a source emits nothing more, so an
    /// input that would end before the cancel arrives commits nothing past the savepoint.
    #[test]
    fn a_source_suspends_after_the_barrier_of_a_stop_until_cancelled() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let commits = Arc::new(Commits::default());
        recover_output(dir.path(), "j", 0, 0, None)?;
        let sink = Sink::Transactional(Box::new(Transactional::open(dir.path().into(), "j", 0, 0, 0, commits.clone())?));
        let requested = Arc::new(AtomicU64::new(0));
        let cancel = Cancel::default();
        let canceller = cancel.clone();
        let checkpointing = Checkpointing {
            requested: requested.clone(),
            stop_at: Arc::new(AtomicU64::new(1)),
            on_snapshot: Arc::new(move |snapshot| {
                let _ = commits.commit(snapshot.checkpoint);
                let canceller = canceller.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    canceller.cancel();
                });
            }),
            ..Checkpointing::default()
        };
        let outcome = run_task(two_batches_into(sink, requested, cancel, checkpointing));
        assert!(matches!(outcome, Err(TaskError::Cancelled)), "the source waited for the cancel: {outcome:?}");
        let mut committed = 0;
        for e in std::fs::read_dir(dir.path())?.flatten() {
            if e.file_name().to_string_lossy().starts_with("part-") {
                committed += std::fs::read_to_string(e.path())?.lines().count();
            }
        }
        assert_eq!(committed, 1, "only the record before the stop's barrier is committed");
        Ok(())
    }

    /// Flink's final checkpoint: a sink subtask at the end of its input commits
    /// nothing by itself. It reports its end, closes its last epoch as the first
    /// checkpoint triggered after that, and commits and finishes only once that
    /// checkpoint completed; cancelled before, it leaves the epoch pending.
    #[test]
    fn a_sink_at_the_end_of_its_input_commits_only_with_the_final_checkpoint() -> Result<(), Box<dyn std::error::Error>> {
        let committed = |dir: &std::path::Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("part-"))
                .collect();
            v.sort();
            v
        };
        for complete in [true, false] {
            let dir = tempfile::tempdir()?;
            recover_output(dir.path(), "j", 0, 0, None)?;
            let sink = Sink::Transactional(Box::new(Transactional::open(dir.path().into(), "j", 0, 0, 0, Arc::default())?));
            let (requested, completed, cancel) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Cancel::default());
            let snapshots = Arc::new(Mutex::new(Vec::new()));
            let (seen, on_end_seen) = (snapshots.clone(), snapshots.clone());
            let (req, done, canceller, out) = (requested.clone(), completed.clone(), cancel.clone(), dir.path().to_path_buf());
            let checkpointing = Checkpointing {
                requested: requested.clone(),
                stop_at: Arc::default(),
                on_snapshot: Arc::new(move |s: TaskSnapshot| {
                    seen.lock().unwrap_or_else(PoisonError::into_inner).push((s.checkpoint, s.source.is_some()));
                    match complete {
                        true => done.store(s.checkpoint, Ordering::SeqCst),
                        // The job fails while the final checkpoint is in flight.
                        false if s.checkpoint == 2 => canceller.cancel(),
                        false => {}
                    }
                }),
                completed,
                on_end: Some(Arc::new(move |last| {
                    // Checkpoint 1 passed as a barrier; nothing is committed yet.
                    assert_eq!(last, 1);
                    assert!(committed(&out).is_empty(), "nothing committed at the end of the input");
                    on_end_seen.lock().unwrap_or_else(PoisonError::into_inner).push((0, false));
                    req.store(2, Ordering::SeqCst);
                })),
                swap: SwapSlot::default(),
            };
            let outcome = run_task(two_batches_into(sink, requested, cancel, checkpointing));
            let snapshots = snapshots.lock().unwrap_or_else(PoisonError::into_inner).clone();
            assert_eq!(snapshots, vec![(1, true), (0, false), (2, true)], "barrier 1, the end, then the final snapshot");
            if complete {
                assert_eq!(outcome?.last_checkpoint, 2);
                assert_eq!(committed(dir.path()), vec!["part-0-1-a0", "part-0-2-a0"], "the last epoch is the final checkpoint's");
            } else {
                assert!(matches!(outcome, Err(TaskError::Cancelled)), "{outcome:?}");
                assert!(committed(dir.path()).is_empty(), "a failure before the final checkpoint leaves everything pending");
            }
        }
        Ok(())
    }

    /// A subtask set up after its TaskManager heard of a checkpoint still injects that
    /// checkpoint's barrier: without it, downstream subtasks aligning on it hold back
    /// the subtask's peers until the checkpoint times out.
    #[test]
    fn a_source_started_after_a_checkpoint_was_requested_injects_its_barrier() -> Result<(), TaskError> {
        let requested = Arc::new(AtomicU64::new(1));
        let snapshots = Arc::new(Mutex::new(Vec::new()));
        let seen = snapshots.clone();
        let checkpointing = Checkpointing {
            requested: requested.clone(),
            stop_at: Arc::default(),
            on_snapshot: Arc::new(move |s: TaskSnapshot| seen.lock().unwrap_or_else(PoisonError::into_inner).push(s.checkpoint)),
            ..Checkpointing::default()
        };
        run_task(two_batches_into(Sink::Discard, requested, Cancel::default(), checkpointing))?;
        assert_eq!(*snapshots.lock().unwrap_or_else(PoisonError::into_inner), vec![1]);
        Ok(())
    }

    /// What left a subtask, as its one downstream subtask sees it, in order: records
    /// by (first key byte, timestamp), and control messages.
    #[derive(Debug, PartialEq, Eq)]
    enum Out {
        R(u8, i64),
        W(i64),
        Idle(bool),
        End,
    }

    /// Runs a source subtask generating watermarks under `strategy` on `clock`, its
    /// output going forward to one in-memory channel, and returns what went down it.
    fn run_source(source: Box<dyn Source>, strategy: WatermarkStrategy, clock: Arc<dyn Clock>) -> Result<Vec<Out>, TaskError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let router = Router::new(weir_types::plan::Partitioning::Forward, vec![crate::exchange::Target::Local(tx)], 128);
        run_task(TaskDeployment {
            label: "source (1/1)".into(),
            sandbox: weir_wasm::Sandbox::OPEN,
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            head: Head::Source(source),
            watermarks: Some(strategy),
            operators: vec![],
            tail: Tail::Routers(vec![router]),
            wasm: None,
            args: vec![],
            state: None,
            cache_bytes: 0,
            cancel: Cancel::default(),
            counters: Arc::default(),
            checkpointing: Checkpointing::default(),
            clock,
            throttle: Throttle::none(),
        })?;
        let mut out = Vec::new();
        for msg in rx.try_iter() {
            match msg {
                Message::Batch(b, _) => {
                    for r in weir_types::batch::records(&b) {
                        let r = r.map_err(|source| Bug::InvalidBatch { at: "test output", source })?;
                        out.push(Out::R(r.key.first().copied().unwrap_or(0), r.ts));
                    }
                }
                Message::Watermark(w) => out.push(Out::W(w)),
                Message::Idle(idle) => out.push(Out::Idle(idle)),
                Message::End => out.push(Out::End),
                other => panic!("unexpected {other:?}"),
            }
        }
        Ok(out)
    }

    /// Checks what any output must satisfy: watermarks only rise, and no record comes
    /// at or before a watermark that went down before it (none is late).
    fn assert_nothing_late(out: &[Out]) {
        let mut w = BEFORE_TIME;
        for o in out {
            match *o {
                Out::W(next) => {
                    assert!(next > w, "watermark {next} after {w}: {out:?}");
                    w = next;
                }
                Out::R(split, ts) => assert!(ts > w, "record {ts} of split {split} after watermark {w}: {out:?}"),
                _ => {}
            }
        }
    }

    /// One read of a scripted source: at processing time `at`, split `split` yields
    /// records with these timestamps (none: it has nothing now).
    struct Step {
        at: i64,
        split: usize,
        ts: Vec<i64>,
        ended: bool,
    }

    fn read(at: i64, split: usize, ts: &[i64]) -> Step {
        Step { at, split, ts: ts.to_vec(), ended: false }
    }

    fn last(at: i64, split: usize, ts: &[i64]) -> Step {
        Step { at, split, ts: ts.to_vec(), ended: true }
    }

    fn silent(at: i64, split: usize) -> Step {
        read(at, split, &[])
    }

    /// A source of two splits whose reads and processing times a test scripts: each
    /// read first sets the manual clock, so the run is the same every time.
    struct Scripted {
        clock: Arc<ManualClock>,
        steps: std::collections::VecDeque<Step>,
    }

    impl Source for Scripted {
        fn split_count(&self) -> usize {
            2
        }

        fn next_batch(&mut self, out: &mut Vec<u8>) -> Result<Option<SplitRead>, TaskError> {
            let Some(step) = self.steps.pop_front() else { return Ok(None) };
            self.clock.set(step.at);
            for &ts in &step.ts {
                weir_types::batch::push_record(out, ts, &[step.split as u8], b"");
            }
            Ok(Some(SplitRead { split: step.split, count: step.ts.len(), ended: step.ended }))
        }

        fn splits(&self) -> Vec<Split> {
            vec![]
        }
    }

    /// Issue 14's idleness, on a manual clock: split B (1) falls silent while split A
    /// (0) goes on, then wakes up; later both fall silent. Bound 5 ms (a watermark is
    /// the newest timestamp less 6), idle after 100 ms without records.
    #[test]
    fn a_silent_split_stops_holding_the_watermark_after_its_idle_timeout_and_loses_nothing_when_it_wakes() -> Result<(), TaskError> {
        const A: usize = 0;
        const B: usize = 1;
        let clock = ManualClock::at(1000);
        let script = vec![
            read(1000, A, &[100]),
            read(1000, B, &[50]),
            // (a) B has nothing, but for less than its timeout: it holds the watermark.
            read(1050, A, &[200]),
            silent(1050, B),
            silent(1099, B),
            // A split that is merely not read (backpressure, a long batch elsewhere)
            // is not silent, however long that takes.
            read(5000, A, &[300]),
            // (b) Asked again past the timeout, it has nothing: A alone decides.
            silent(5000, B),
            read(5050, A, &[400]),
            // (c) B wakes up with records after the watermark (394): all delivered, and
            // it holds the watermark where it woke up even though its own watermark
            // (398 - 6) is behind, so A's 500 cannot move it past B's coming records.
            read(5060, B, &[395, 398]),
            read(5070, A, &[500]),
            read(5080, B, &[420]),
            // (d) Both silent past the timeout: the subtask is idle; A's records end it.
            silent(5200, A),
            silent(5200, B),
            read(5210, A, &[600]),
            // A ends while B is idle: idle again, until B's last records.
            last(5220, A, &[700]),
            last(5230, B, &[800]),
        ];
        let sent: usize = script.iter().map(|s| s.ts.len()).sum();
        let source = Scripted { clock: clock.clone(), steps: script.into() };
        let strategy = WatermarkStrategy { out_of_orderness_ms: 5, idle_timeout_ms: Some(100) };
        let out = run_source(Box::new(source), strategy, clock)?;
        use Out::*;
        let (a, b) = (A as u8, B as u8);
        #[rustfmt::skip]
        let expected = [
            R(a, 100), R(b, 50), W(44),
            // (a) held back by B
            R(a, 200), R(a, 300),
            // (b) B idle: A's 300 - 6
            W(294), R(a, 400), W(394),
            // (c) nothing of B is late; A's 500 does not move the watermark, B's 420 does
            R(b, 395), R(b, 398), R(a, 500), R(b, 420), W(414),
            // (d) idle, and active again ahead of A's records
            Idle(true), Idle(false), R(a, 600), W(594),
            R(a, 700), W(694), Idle(true), Idle(false), R(b, 800), W(794),
            W(END_OF_TIME), End,
        ];
        assert_eq!(out, expected);
        assert_nothing_late(&out);
        assert_eq!(out.iter().filter(|o| matches!(o, R(..))).count(), sent, "every record delivered");
        Ok(())
    }

    /// A rescale-like restore: one subtask resumes two generator splits, the first
    /// listed holding the later timestamps. Read one after another with one watermark,
    /// every record of the second would be late; per split, with the splits taking
    /// turns, none is, and the watermark still advances while both are read.
    #[test]
    fn a_subtask_with_several_splits_never_runs_ahead_of_one_it_has_not_read() -> Result<(), TaskError> {
        let later = Split::Numbers { next: 100_000, end: 200_000, step: 1 };
        let earlier = Split::Numbers { next: 0, end: 100_000, step: 1 };
        let source = crate::source::Generator::resume(&[later, earlier], Some(1))?;
        let out = run_source(Box::new(source), WatermarkStrategy { out_of_orderness_ms: 0, idle_timeout_ms: Some(10) }, ManualClock::at(0))?;
        assert_nothing_late(&out);
        assert_eq!(out.iter().filter(|o| matches!(o, Out::R(..))).count(), 200_000);
        let mid = out.iter().filter(|o| matches!(o, Out::W(w) if *w > 0 && *w < 100_000)).count();
        assert!(mid > 10, "the watermark follows the earlier split while both are read: {mid} watermarks");
        Ok(())
    }
}
