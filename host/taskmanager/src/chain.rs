//! The per-batch hot path through a subtask's chained guest operators, and event time
//! along the chain: each operator sees the watermark that reached it, a keyed
//! operator's due timers fire through `on-timer` before the watermark passes on, and an
//! operator with a watermark strategy (a timestamp assigner) generates the watermark
//! the operators after it see.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weir_state::{Due, StateError, SweepCursor, TaskState, TimeDomain, Timers, ValueCache};
use weir_types::batch::{self, Cursor, FiredTimer, StateUpdate, TimerChange};
use weir_types::keygroup::key_hash;
use weir_types::plan::WatermarkStrategy;
use weir_wasm::{Instance, KeyedStateAccess, MapEntries, OpRef, OperatorFailure, StateAccessError, Time};

use crate::clock::Clock;
use crate::error::{Bug, TaskError};
use crate::watermark::{BEFORE_TIME, BoundedOutOfOrderness, END_OF_TIME};

/// Timers handed to the guest per `on-timer` call, so firing a million windows at the
/// end of input is many bounded calls, not one huge batch.
const FIRE_BATCH: usize = 4096;

/// Value-cache entries a TTL sweep looks at after each batch and each wake-up.
const CACHE_SWEEP: usize = 1024;

/// fjall entries a TTL sweep looks at per `FJALL_SWEEP_EVERY_MS` of processing time:
/// bounded, so a large state costs a little every second instead of a pause.
const FJALL_SWEEP: usize = 8192;
const FJALL_SWEEP_EVERY_MS: i64 = 1000;

/// Where output leaving the chain goes (the subtask's sink or routers): the last
/// operator's records and side-output records.
pub(crate) type Downstream<'a> = dyn FnMut(&ChainOutput) -> Result<(), TaskError> + 'a;

/// One chained guest operator of a subtask.
#[derive(Debug, Clone)]
pub struct OperatorStep {
    /// Its id in its component, and its node index in the plan (which scopes state).
    pub op: OpRef,
    /// Which of the job's components runs it.
    pub component: u32,
    /// Display name.
    pub name: String,
    /// Its node's uid: its state and its state version are recorded under it.
    pub uid: String,
    /// The state format version declared by the code whose state it starts from
    /// (`state-version.restored`): `None` without restored state.
    pub restored_version: Option<u32>,
    /// Gets its value state with every batch.
    pub keyed: bool,
    /// Arguments for its `open`.
    pub args: Vec<(String, String)>,
    /// Generates the watermark from its output (a timestamp assigner).
    pub watermarks: Option<WatermarkStrategy>,
    /// The side outputs it declares; its outputs name them by index.
    pub side_outputs: Vec<String>,
    /// A connect's two-input operator: its keyed batches end with the input they came
    /// through. Always a chain's head (its inputs fan in).
    pub two_inputs: bool,
    /// A keyed broadcast operator: the batches of its second input are broadcast (every
    /// subtask gets every record, whatever its key), so they come plain, tagged, with no
    /// key's state, and may only touch the operator's broadcast state.
    pub broadcast_input: bool,
    /// A keyed operator's state TTL (ms): its expired state is swept in the background.
    pub state_ttl_ms: Option<u64>,
}

/// One operator's output: a guest buffer and where its records lie in it.
pub(crate) struct ChainOutput {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pub(crate) count: usize,
    /// Its side-output records, if any (an empty `Vec` does not allocate).
    side: Vec<SideRecords>,
}

/// Where one batch of side-output records lies in an operator's output buffer.
struct SideRecords {
    output: u32,
    range: std::ops::Range<usize>,
    count: usize,
}

impl ChainOutput {
    pub(crate) fn records(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Its side-output records: (side output index, plain batch, record count).
    pub(crate) fn side(&self) -> impl Iterator<Item = (u32, &[u8], usize)> {
        self.side.iter().map(|s| (s.output, &self.buf[s.range.clone()], s.count))
    }
}

/// Moves the records of `buf[range]` whose key group `cache`'s subtask owns to the
/// front of the range, in order; their end and count.
fn keep_owned(buf: &mut [u8], range: std::ops::Range<usize>, cache: &ValueCache) -> Result<(usize, usize), TaskError> {
    let mut owned = Vec::new();
    let mut c = Cursor::new(&buf[range.clone()]);
    while c.remaining() > 0 {
        let from = c.position();
        let r = c.record().map_err(|source| Bug::InvalidBatch { at: "the output of a broadcast element", source })?;
        if cache.owns(key_hash(r.key)) {
            owned.push(range.start + from..range.start + c.position());
        }
    }
    let mut at = range.start;
    for r in &owned {
        buf.copy_within(r.clone(), at);
        at += r.len();
    }
    Ok((at, owned.len()))
}

/// Where the side batches of `parsed`, an output parsed from `buf`, lie in `buf`.
fn side_ranges(buf: &[u8], side: &[batch::SideBatch<'_>]) -> Vec<SideRecords> {
    let base = buf.as_ptr().addr();
    side.iter()
        .map(|s| {
            let start = s.records.as_ptr().addr() - base;
            SideRecords { output: s.output, range: start..start + s.records.len(), count: s.record_count }
        })
        .collect()
}

struct Step {
    op: OperatorStep,
    /// Index of the instance that runs it.
    instance: usize,
    cache: Option<ValueCache>,
    /// A keyed operator's timers, if its component exports `on-timer`.
    timers: Option<Timers>,
    /// Its watermark generator, if it assigns timestamps.
    generator: Option<BoundedOutOfOrderness>,
    /// The watermark that reached it, and the one it passed on.
    wm_in: i64,
    wm_out: i64,
    /// Its background TTL sweep, if its state has a TTL.
    sweep: Option<Sweep>,
}

/// Where a keyed operator's TTL sweep of fjall goes on, and when.
struct Sweep {
    cursor: SweepCursor,
    next_fjall: i64,
}

/// Reused buffers for building keyed input batches.
#[derive(Default)]
struct KeyedScratch {
    input: Vec<u8>,
    /// Cache entry of each distinct key of the batch, in key-index order.
    slots: Vec<usize>,
    /// Stable hash of each distinct key, in key-index order.
    slot_hashes: Vec<u64>,
    /// The incoming batch's records.
    records: Vec<KeyedRecord>,
    /// Stable hash of each record's key.
    hashes: Vec<u64>,
    /// Cache entry of each record's key.
    entries: Vec<usize>,
    epoch: u32,
}

/// Where a record of the incoming batch lies, and its key index once known.
struct KeyedRecord {
    key: std::ops::Range<usize>,
    ts: i64,
    value: std::ops::Range<usize>,
    slot: u32,
}

pub(crate) struct Chain {
    instances: Vec<Instance>,
    /// Fuel of instances a live swap replaced.
    retired_fuel: u64,
    steps: Vec<Step>,
    scratch: KeyedScratch,
    state: Option<TaskState>,
    /// Reused for due timers.
    fired: Due,
    /// Side-output records of operators inside the chain: no edge can read those.
    side_dropped: u64,
    /// Expired state entries the TTL sweeps dropped (value caches and fjall).
    ttl_dropped: u64,
    /// The subtask's side-output counters, each step's from `side_first`.
    side: Arc<[SideCounter]>,
    side_first: Vec<usize>,
    /// Which side outputs of the last step an edge reads.
    side_read: Vec<bool>,
    /// The subtask's processing time.
    clock: Arc<dyn Clock>,
}

/// Records an operator emitted to one of its side outputs (late data, for one), and
/// how many of them no edge read; live, for metrics.
#[derive(Debug)]
pub struct SideCounter {
    /// The operator's name.
    pub operator: String,
    /// The side output's name.
    pub output: String,
    /// Records emitted to it so far.
    pub records: AtomicU64,
    /// Of those, dropped because no edge reads it.
    pub dropped: AtomicU64,
}

impl SideCounter {
    pub(crate) fn new(operator: &str, output: &str) -> Self {
        Self { operator: operator.into(), output: output.into(), records: AtomicU64::new(0), dropped: AtomicU64::new(0) }
    }
}

impl Chain {
    /// A chain of `ops`, each with the index of its instance in `instances`; `side`
    /// counts every side output they declare, in order, and `side_read` says which of
    /// the last one's an edge reads; `clock` is the subtask's processing time.
    pub(crate) fn new(
        mut instances: Vec<Instance>,
        ops: Vec<(OperatorStep, usize)>,
        state: Option<TaskState>,
        cache_bytes: usize,
        side: Arc<[SideCounter]>,
        side_read: Vec<bool>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TaskError> {
        let keyed_ops: Vec<u32> = ops.iter().filter(|(o, _)| o.keyed).map(|(o, _)| o.op.state).collect();
        let state = match (state, keyed_ops.is_empty()) {
            (Some(s), _) => Some(s),
            (None, true) => None,
            (None, false) => return Err(Bug::NoKeyedState.into()),
        };
        if let Some(s) = &state {
            for instance in &mut instances {
                instance.set_state_access(Box::new(MapStateAccess { state: s.clone(), keyed_ops: keyed_ops.clone() }));
            }
        }
        let now = clock.now_ms();
        let mut steps = Vec::with_capacity(ops.len());
        let mut side_first = Vec::with_capacity(ops.len());
        let mut first = 0;
        for (op, instance) in ops {
            side_first.push(first);
            first += op.side_outputs.len();
            let (cache, timers) = match (&state, op.keyed) {
                (Some(s), true) => {
                    // Timers restored with the state (or left by an earlier batch) are
                    // loaded once; the component must be able to fire them.
                    let timers = if instances[instance].has_timers() { Some(Timers::load(s, op.op.state)?) } else { None };
                    (Some(s.value_cache(op.op.state, cache_bytes)), timers)
                }
                _ => (None, None),
            };
            let generator = op.watermarks.map(|w| BoundedOutOfOrderness::for_strategy(&w, now.max(0) as u64));
            let sweep = (op.keyed && op.state_ttl_ms.is_some()).then(|| Sweep { cursor: SweepCursor::default(), next_fjall: now });
            steps.push(Step { op, instance, cache, timers, generator, wm_in: BEFORE_TIME, wm_out: BEFORE_TIME, sweep });
        }
        Ok(Self {
            instances,
            retired_fuel: 0,
            steps,
            scratch: KeyedScratch::default(),
            state,
            fired: Due::default(),
            side_dropped: 0,
            ttl_dropped: 0,
            side,
            side_first,
            side_read,
            clock,
        })
    }

    /// Runs one plain batch that came through the head's input `through` (0 but for
    /// a connect's second) through every operator of the chain.
    pub(crate) fn run(&mut self, input: &[u8], through: u32) -> Result<ChainOutput, TaskError> {
        self.run_from(0, input, through)?.ok_or_else(|| Bug::EmptyChain.into())
    }

    /// Runs a batch through the operators from step `from` on; `None` if there are none.
    fn run_from(&mut self, from: usize, input: &[u8], through: u32) -> Result<Option<ChainOutput>, TaskError> {
        let now = self.clock.now_ms();
        let mut current: Option<ChainOutput> = None;
        for i in from..self.steps.len() {
            let data = current.as_ref().map_or(input, ChainOutput::records);
            let step = &mut self.steps[i];
            let name = &step.op.name;
            let fail = |failure: OperatorFailure| TaskError::Operator { name: name.clone(), failure };
            let instance = &mut self.instances[step.instance];
            instance.set_time(Time { watermark: step.wm_in, processing: now });
            let out = match &mut step.cache {
                Some(cache) if step.op.broadcast_input && through == 1 => {
                    let s = &mut self.scratch;
                    s.input.clear();
                    s.input.extend_from_slice(data);
                    batch::push_u32(&mut s.input, through);
                    let mut buf = instance.process(step.op.op, &s.input).map_err(fail)?;
                    let parsed = batch::parse_output(&buf, None).map_err(|e| fail(e.into()))?;
                    let start = 4;
                    let end = start + parsed.records.len();
                    let side = side_ranges(&buf, &parsed.side);
                    // Every subtask runs every control record: each emitted record goes
                    // on from the one subtask that owns its key, so it comes out once.
                    let (end, count) = keep_owned(&mut buf, start..end, cache)?;
                    ChainOutput { buf, start, end, count, side }
                }
                None => {
                    let buf = instance.process(step.op.op, data).map_err(fail)?;
                    let parsed = batch::parse_output(&buf, None).map_err(|e| fail(e.into()))?;
                    let (start, count) = (4, parsed.record_count);
                    let end = start + parsed.records.len();
                    let side = side_ranges(&buf, &parsed.side);
                    ChainOutput { buf, start, end, count, side }
                }
                Some(cache) => {
                    let s = &mut self.scratch;
                    build_keyed_input(cache, data, s)?;
                    if step.op.two_inputs {
                        batch::push_u32(&mut s.input, through);
                    }
                    let buf = instance.process(step.op.op, &s.input).map_err(fail)?;
                    keyed_output(buf, &s.slots, &s.slot_hashes, cache, step.timers.as_mut(), &step.op.name)?
                }
            };
            if let Some(g) = &mut step.generator {
                g.batch(out.records(), now.max(0) as u64);
            }
            let out = self.settle_side(i, out)?;
            current = Some(out);
        }
        Ok(current)
    }

    /// The watermark `w` reached step `from`: each step from there fires its due
    /// event-time timers (their output runs down the rest of the chain into `out`)
    /// and passes the watermark on, or its own if it generates one. Returns the
    /// watermark leaving the chain, if it advanced.
    pub(crate) fn advance(&mut self, from: usize, mut w: i64, out: &mut Downstream<'_>) -> Result<Option<i64>, TaskError> {
        for i in from..self.steps.len() {
            if w <= self.steps[i].wm_in {
                return Ok(None);
            }
            self.steps[i].wm_in = w;
            self.fire_due(i, TimeDomain::Event, w, usize::MAX, out)?;
            let step = &mut self.steps[i];
            let next = match &step.generator {
                // The end of the input ends event time for an assigner too.
                Some(_) if w == END_OF_TIME => END_OF_TIME,
                Some(g) => g.current(),
                None => w,
            };
            if next <= step.wm_out {
                return Ok(None);
            }
            step.wm_out = next;
            w = next;
        }
        Ok(Some(w))
    }

    /// After a batch: the watermark of the steps that generate one, passed on if it
    /// advanced. Returns the watermark leaving the chain, if that advanced.
    pub(crate) fn generated(&mut self, out: &mut Downstream<'_>) -> Result<Option<i64>, TaskError> {
        let mut leaving = None;
        for i in 0..self.steps.len() {
            let Some(g) = &self.steps[i].generator else { continue };
            let w = g.current();
            if w > self.steps[i].wm_out {
                self.steps[i].wm_out = w;
                leaving = if i + 1 == self.steps.len() { Some(w) } else { self.advance(i + 1, w, out)? };
            }
        }
        Ok(leaving)
    }

    /// True if an operator of the chain generates watermarks.
    pub(crate) fn generates(&self) -> bool {
        self.steps.iter().any(|s| s.generator.is_some())
    }

    /// True if an operator of the chain keeps timers or state with a TTL (the subtask
    /// then wakes up for processing time even without input).
    pub(crate) fn has_timers(&self) -> bool {
        self.steps.iter().any(|s| s.timers.is_some() || s.sweep.is_some())
    }

    /// Fires every processing-time timer that is due now, and sweeps expired state.
    pub(crate) fn fire_processing(&mut self, out: &mut Downstream<'_>) -> Result<(), TaskError> {
        for i in 0..self.steps.len() {
            self.fire_due(i, TimeDomain::Processing, self.clock.now_ms(), usize::MAX, out)?;
            self.sweep(i)?;
        }
        Ok(())
    }

    /// Step `i`'s TTL sweep, between batches: the next entries of its value cache, and
    /// once a second the next entries of its state in fjall.
    fn sweep(&mut self, i: usize) -> Result<(), TaskError> {
        let step = &mut self.steps[i];
        let (Some(sweep), Some(cache), Some(state)) = (&mut step.sweep, &mut step.cache, &self.state) else { return Ok(()) };
        let now = self.clock.now_ms();
        let mut dropped = cache.sweep_expired(now, CACHE_SWEEP);
        if now >= sweep.next_fjall {
            sweep.next_fjall = now.saturating_add(FJALL_SWEEP_EVERY_MS);
            dropped += state.sweep_expired(step.op.op.state, now, &mut sweep.cursor, FJALL_SWEEP)?;
        }
        self.ttl_dropped += dropped as u64;
        Ok(())
    }

    /// At the end of the input: fires every processing-time timer pending now, as
    /// Flink's batch execution does, so a bounded job's output is complete. Timers
    /// they set in turn are not waited for (a timer that re-arms itself would never
    /// let the job end).
    pub(crate) fn fire_processing_at_end(&mut self, out: &mut Downstream<'_>) -> Result<(), TaskError> {
        for i in 0..self.steps.len() {
            let pending = self.steps[i].timers.as_ref().map_or(0, |t| t.len(TimeDomain::Processing));
            self.fire_due(i, TimeDomain::Processing, i64::MAX, pending, out)?;
        }
        Ok(())
    }

    /// Fires up to `budget` of step `i`'s timers of `domain` due at `upto`, in bounded
    /// calls, until none is left (a timer may set another that is already due).
    fn fire_due(&mut self, i: usize, domain: TimeDomain, upto: i64, mut budget: usize, out: &mut Downstream<'_>) -> Result<(), TaskError> {
        loop {
            let mut fired = std::mem::take(&mut self.fired);
            fired.clear();
            if let Some(t) = &mut self.steps[i].timers {
                t.take_due(domain, upto, FIRE_BATCH.min(budget), &mut fired);
            }
            budget -= fired.len();
            if fired.is_empty() {
                self.fired = fired;
                return Ok(());
            }
            let output = self.on_timer(i, &fired, domain);
            self.fired = fired;
            let output = self.settle_side(i, output?)?;
            match self.run_from(i + 1, output.records(), 0)? {
                Some(rest) => out(&rest)?,
                None => out(&output)?,
            }
        }
    }

    /// Calls step `i`'s `on-timer` with `fired`, grouped by key with each key's state,
    /// and applies what it returns.
    fn on_timer(&mut self, i: usize, fired: &Due, domain: TimeDomain) -> Result<ChainOutput, TaskError> {
        let step = &mut self.steps[i];
        let Some(cache) = &mut step.cache else { return Err(Bug::EmptyChain.into()) };
        let s = &mut self.scratch;
        s.next_epoch(cache);
        s.slots.clear();
        s.slot_hashes.clear();
        s.entries.clear();
        cache.resolve(fired.hashes(), |i| fired.key(i), &mut s.entries)?;
        for (entry, &hash) in s.entries.iter_mut().zip(fired.hashes()) {
            let (slot, first) = cache.batch_slot(*entry, s.epoch, s.slots.len() as u32);
            if first {
                s.slots.push(*entry);
                s.slot_hashes.push(hash);
            }
            *entry = slot as usize;
        }
        s.input.clear();
        batch::push_key_count(&mut s.input, s.slots.len() as u32);
        for &entry in &s.slots {
            batch::push_key_with_state(&mut s.input, cache.key(entry), cache.get(entry));
        }
        batch::push_timers_header(&mut s.input, fired.len() as u32);
        for ((ts, _), &slot) in fired.iter().zip(&s.entries) {
            batch::push_fired_timer(&mut s.input, FiredTimer { key_index: slot as u32, ts, domain });
        }
        let name = &step.op.name;
        let instance = &mut self.instances[step.instance];
        instance.set_time(Time { watermark: step.wm_in, processing: self.clock.now_ms() });
        let buf = instance.on_timer(step.op.op, &s.input).map_err(|failure| TaskError::Operator { name: name.clone(), failure })?;
        keyed_output(buf, &s.slots, &s.slot_hashes, cache, step.timers.as_mut(), name)
    }

    /// Captures keyed state for a checkpoint (`None` without state): the caches' dirty
    /// entries and the pending timers are copied, nothing is written.
    pub(crate) fn capture(&mut self) -> Result<Option<weir_state::Capture>, TaskError> {
        let Some(state) = &self.state else { return Ok(None) };
        let mut overlay = Vec::new();
        for step in &mut self.steps {
            if let Some(cache) = &mut step.cache {
                cache.capture_into(&mut overlay);
            }
            if let Some(timers) = &mut step.timers {
                timers.capture_into(&mut overlay)?;
            }
        }
        Ok(Some(state.capture(overlay)))
    }

    /// The state format version each operator's code declared, by uid: recorded with
    /// each snapshot.
    pub(crate) fn state_versions(&self) -> BTreeMap<String, u32> {
        self.steps.iter().map(|s| (s.op.uid.clone(), self.instances[s.instance].declared_version(s.op.op))).collect()
    }

    /// Writes back keyed state and closes the operators.
    pub(crate) fn finish(&mut self) -> Result<(), TaskError> {
        for step in &mut self.steps {
            if let Some(cache) = &mut step.cache {
                cache.flush()?;
            }
            let name = step.op.name.clone();
            self.instances[step.instance].close(step.op.op).map_err(|failure| TaskError::Operator { name, failure })?;
        }
        Ok(())
    }

    /// Fuel the chain's instances burned so far, every call counted.
    pub(crate) fn fuel_used(&self) -> u64 {
        self.retired_fuel + self.instances.iter().map(Instance::fuel_burned).sum::<u64>()
    }

    /// A live swap: `instances` (opened, one per component as in [`Chain::new`]) run the
    /// operators from now on. State, caches and timers stay: they are the host's.
    pub(crate) fn swap(&mut self, mut instances: Vec<Instance>) {
        if let Some(s) = &self.state {
            let keyed_ops: Vec<u32> = self.steps.iter().filter(|st| st.op.keyed).map(|st| st.op.op.state).collect();
            for instance in &mut instances {
                instance.set_state_access(Box::new(MapStateAccess { state: s.clone(), keyed_ops: keyed_ops.clone() }));
            }
        }
        self.retired_fuel += self.instances.iter().map(Instance::fuel_burned).sum::<u64>();
        self.instances = instances;
    }

    /// Expired state entries the TTL sweeps dropped so far.
    pub(crate) fn ttl_dropped(&self) -> u64 {
        self.ttl_dropped
    }

    /// Side-output records dropped inside the chain so far.
    pub(crate) fn side_dropped(&self) -> u64 {
        self.side_dropped
    }

    /// Checks the side outputs step `i` wrote against those it declares. Only the last
    /// step's leave the chain (an operator with a consumed side output ends its chain);
    /// the others' are dropped and counted here.
    fn settle_side(&mut self, i: usize, mut out: ChainOutput) -> Result<ChainOutput, TaskError> {
        if out.side.is_empty() {
            return Ok(out);
        }
        let step = &self.steps[i].op;
        if let Some(bad) = out.side.iter().find(|s| s.output as usize >= step.side_outputs.len()) {
            let problem = format!("it emitted to side output {} but declares {} side outputs", bad.output, step.side_outputs.len());
            return Err(TaskError::Operator { name: step.name.clone(), failure: OperatorFailure::Reported(problem) });
        }
        let last = i + 1 == self.steps.len();
        for s in &out.side {
            let o = s.output as usize;
            if let Some(c) = self.side.get(self.side_first[i] + o) {
                c.records.fetch_add(s.count as u64, Ordering::Relaxed);
                if !(last && self.side_read.get(o).copied().unwrap_or(false)) {
                    c.dropped.fetch_add(s.count as u64, Ordering::Relaxed);
                }
            }
        }
        if !last {
            self.side_dropped += out.side.iter().map(|s| s.count as u64).sum::<u64>();
            out.side.clear();
        }
        Ok(out)
    }
}

/// Checks a keyed operator's output and applies it: each key's state update to the
/// cache, its timer changes to the timers.
fn keyed_output(
    buf: Vec<u8>,
    slots: &[usize],
    hashes: &[u64],
    cache: &mut ValueCache,
    timers: Option<&mut Timers>,
    name: &str,
) -> Result<ChainOutput, TaskError> {
    let fail = |failure: OperatorFailure| TaskError::Operator { name: name.to_string(), failure };
    let parsed = batch::parse_output(&buf, Some(slots.len())).map_err(|e| fail(e.into()))?;
    for (update, &entry) in parsed.states.iter().zip(slots) {
        match update {
            StateUpdate::Unchanged => {}
            StateUpdate::Set(v) => cache.set(entry, Some(v)),
            StateUpdate::Cleared => cache.set(entry, None),
        }
    }
    if !parsed.timers.is_empty() {
        let Some(timers) = timers else {
            return Err(fail(OperatorFailure::Reported("it set timers but its component does not export weir:dataflow/timers (on-timer)".into())));
        };
        for &TimerChange { set, domain, key_index, ts } in &parsed.timers {
            // parse_output checked the index against the key table.
            let (key, hash) = (cache.key(slots[key_index as usize]), hashes[key_index as usize]);
            if set {
                timers.register_hashed(domain, key, hash, ts)?;
            } else {
                timers.delete_hashed(domain, key, hash, ts)?;
            }
        }
    }
    let (start, count) = (4, parsed.record_count);
    let end = start + parsed.records.len();
    let side = side_ranges(&buf, &parsed.side);
    cache.end_batch()?;
    Ok(ChainOutput { buf, start, end, count, side })
}

impl KeyedScratch {
    /// A new batch of key marks in the cache.
    fn next_epoch(&mut self, cache: &mut ValueCache) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // After 2^32 batches the epochs wrap: forget every old marker once.
            cache.clear_batch_marks();
            self.epoch = 1;
        }
    }
}

/// Groups a plain batch by key into the keyed input layout, each distinct key once
/// with its current value state from the cache.
fn build_keyed_input(cache: &mut ValueCache, data: &[u8], s: &mut KeyedScratch) -> Result<(), TaskError> {
    s.next_epoch(cache);
    s.slots.clear();
    s.slot_hashes.clear();
    s.records.clear();
    s.hashes.clear();
    s.entries.clear();
    let mut c = Cursor::new(data);
    while c.remaining() > 0 {
        let r = c.record().map_err(|source| Bug::InvalidBatch { at: "keyed input", source })?;
        let value_end = c.position();
        let key_end = value_end - r.value.len() - 4;
        s.hashes.push(key_hash(r.key));
        s.records.push(KeyedRecord { key: key_end - r.key.len()..key_end, ts: r.ts, value: value_end - r.value.len()..value_end, slot: 0 });
    }
    let records = &s.records;
    cache.resolve(&s.hashes, |i| &data[records[i].key.clone()], &mut s.entries)?;
    for ((rec, &entry), &hash) in s.records.iter_mut().zip(&s.entries).zip(&s.hashes) {
        let (slot, first) = cache.batch_slot(entry, s.epoch, s.slots.len() as u32);
        if first {
            s.slots.push(entry);
            s.slot_hashes.push(hash);
        }
        rec.slot = slot;
    }
    s.input.clear();
    batch::push_key_count(&mut s.input, s.slots.len() as u32);
    for &entry in &s.slots {
        batch::push_key_with_state(&mut s.input, cache.key(entry), cache.get(entry));
    }
    batch::push_keyed_records_header(&mut s.input, s.records.len() as u32);
    for r in &s.records {
        batch::push_keyed_record(&mut s.input, r.slot, r.ts, &data[r.value.clone()]);
    }
    Ok(())
}

/// The guest's `keyed-state` imports, over the subtask's fjall state.
struct MapStateAccess {
    state: TaskState,
    keyed_ops: Vec<u32>,
}

impl MapStateAccess {
    fn check(&self, op: u32) -> Result<&TaskState, StateAccessError> {
        if self.keyed_ops.contains(&op) { Ok(&self.state) } else { Err(StateAccessError::NotKeyed) }
    }
}

fn access(e: StateError) -> StateAccessError {
    match e {
        StateError::ForeignKeyGroup { .. } => StateAccessError::ForeignKey,
        other => StateAccessError::Backend(other.to_string()),
    }
}

impl KeyedStateAccess for MapStateAccess {
    fn map_get(&mut self, op: u32, name: &str, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>, StateAccessError> {
        self.check(op)?.map_get(op, name, key, field).map_err(access)
    }
    fn map_put(&mut self, op: u32, name: &str, key: &[u8], field: &[u8], value: &[u8]) -> Result<(), StateAccessError> {
        self.check(op)?.map_put(op, name, key, field, value).map_err(access)
    }
    fn map_remove(&mut self, op: u32, name: &str, key: &[u8], field: &[u8]) -> Result<(), StateAccessError> {
        self.check(op)?.map_remove(op, name, key, field).map_err(access)
    }
    fn map_entries(&mut self, op: u32, name: &str, key: &[u8]) -> Result<MapEntries, StateAccessError> {
        self.check(op)?.map_entries(op, name, key).map_err(access)
    }
    fn map_clear(&mut self, op: u32, name: &str, key: &[u8]) -> Result<(), StateAccessError> {
        self.check(op)?.map_clear(op, name, key).map_err(access)
    }
    fn broadcast_get(&mut self, op: u32, name: &str, field: &[u8]) -> Result<Option<Vec<u8>>, StateAccessError> {
        self.check(op)?.broadcast_get(op, name, field).map_err(access)
    }
    fn broadcast_put(&mut self, op: u32, name: &str, field: &[u8], value: &[u8]) -> Result<(), StateAccessError> {
        self.check(op)?.broadcast_put(op, name, field, value).map_err(access)
    }
    fn broadcast_remove(&mut self, op: u32, name: &str, field: &[u8]) -> Result<(), StateAccessError> {
        self.check(op)?.broadcast_remove(op, name, field).map_err(access)
    }
    fn broadcast_entries(&mut self, op: u32, name: &str) -> Result<MapEntries, StateAccessError> {
        self.check(op)?.broadcast_entries(op, name).map_err(access)
    }
}
