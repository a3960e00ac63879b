//! The per-batch hot path through a subtask's chained guest operators.

use weir_state::{StateError, TaskState, ValueCache};
use weir_types::batch::{self, Cursor, StateUpdate};
use weir_types::keygroup::key_hash;
use weir_wasm::{Instance, KeyedStateAccess, MapEntries, OpRef, OperatorFailure, StateAccessError};

use crate::error::{Bug, TaskError};

/// One chained guest operator of a subtask.
#[derive(Debug, Clone)]
pub struct OperatorStep {
    /// Its id in its component, and its node index in the plan (which scopes state).
    pub op: OpRef,
    /// Which of the job's components runs it.
    pub component: u32,
    /// Display name.
    pub name: String,
    /// Gets its value state with every batch.
    pub keyed: bool,
    /// Arguments for its `open`.
    pub args: Vec<(String, String)>,
}

/// One operator's output: a guest buffer and where its records lie in it.
pub(crate) struct ChainOutput {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pub(crate) count: usize,
}

impl ChainOutput {
    pub(crate) fn records(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

struct Step {
    op: OperatorStep,
    /// Index of the instance that runs it.
    instance: usize,
    cache: Option<ValueCache>,
}

/// Reused buffers for building keyed input batches.
#[derive(Default)]
struct KeyedScratch {
    input: Vec<u8>,
    /// Cache entry of each distinct key of the batch, in key-index order.
    slots: Vec<usize>,
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
    steps: Vec<Step>,
    scratch: KeyedScratch,
    state: Option<TaskState>,
    fuel_used: u64,
}

impl Chain {
    /// A chain of `ops`, each with the index of its instance in `instances`.
    pub(crate) fn new(
        mut instances: Vec<Instance>,
        ops: Vec<(OperatorStep, usize)>,
        state: Option<TaskState>,
        cache_bytes: usize,
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
        let steps = ops
            .into_iter()
            .map(|(op, instance)| {
                let cache = match (&state, op.keyed) {
                    (Some(s), true) => Some(s.value_cache(op.op.state, cache_bytes)),
                    _ => None,
                };
                Step { op, instance, cache }
            })
            .collect();
        Ok(Self { instances, steps, scratch: KeyedScratch::default(), state, fuel_used: 0 })
    }

    /// Runs one plain batch through every operator of the chain.
    pub(crate) fn run(&mut self, input: &[u8]) -> Result<ChainOutput, TaskError> {
        let mut current: Option<ChainOutput> = None;
        for step in &mut self.steps {
            let data = current.as_ref().map_or(input, ChainOutput::records);
            let name = &step.op.name;
            let fail = |failure: OperatorFailure| TaskError::Operator { name: name.clone(), failure };
            let instance = &mut self.instances[step.instance];
            let out = match &mut step.cache {
                None => {
                    let buf = instance.process(step.op.op, data).map_err(fail)?;
                    let parsed = batch::parse_output(&buf, None).map_err(|e| fail(e.into()))?;
                    let (start, count) = (4, parsed.record_count);
                    let end = start + parsed.records.len();
                    ChainOutput { buf, start, end, count }
                }
                Some(cache) => {
                    let s = &mut self.scratch;
                    build_keyed_input(cache, data, s)?;
                    let buf = instance.process(step.op.op, &s.input).map_err(fail)?;
                    let parsed = batch::parse_output(&buf, Some(s.slots.len())).map_err(|e| fail(e.into()))?;
                    for (update, &entry) in parsed.states.iter().zip(&s.slots) {
                        match update {
                            StateUpdate::Unchanged => {}
                            StateUpdate::Set(v) => cache.set(entry, Some(v)),
                            StateUpdate::Cleared => cache.set(entry, None),
                        }
                    }
                    let (start, count) = (4, parsed.record_count);
                    let end = start + parsed.records.len();
                    cache.end_batch()?;
                    ChainOutput { buf, start, end, count }
                }
            };
            // Fuel budgets are per call; the instance reports what is left after each.
            self.fuel_used += instance.fuel_budget().saturating_sub(instance.fuel_left());
            current = Some(out);
        }
        current.ok_or_else(|| Bug::EmptyChain.into())
    }

    /// Captures keyed state for a checkpoint (`None` without state): the caches' dirty
    /// entries are copied, nothing is written.
    pub(crate) fn capture(&mut self) -> Result<Option<weir_state::Capture>, TaskError> {
        let Some(state) = &self.state else { return Ok(None) };
        let mut overlay = Vec::new();
        for step in &mut self.steps {
            if let Some(cache) = &mut step.cache {
                cache.capture_into(&mut overlay);
            }
        }
        Ok(Some(state.capture(overlay)))
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

    pub(crate) fn fuel_used(&self) -> u64 {
        self.fuel_used
    }
}

/// Groups a plain batch by key into the keyed input layout, each distinct key once
/// with its current value state from the cache.
fn build_keyed_input(cache: &mut ValueCache, data: &[u8], s: &mut KeyedScratch) -> Result<(), TaskError> {
    s.epoch = s.epoch.wrapping_add(1);
    if s.epoch == 0 {
        // After 2^32 batches the epochs wrap: forget every old marker once.
        cache.clear_batch_marks();
        s.epoch = 1;
    }
    s.slots.clear();
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
    for (rec, &entry) in s.records.iter_mut().zip(&s.entries) {
        let (slot, first) = cache.batch_slot(entry, s.epoch, s.slots.len() as u32);
        if first {
            s.slots.push(entry);
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
}
