//! Side outputs, Flink's `OutputTag`: an operator emits records to named outputs
//! besides its main one, and the plan routes each to its own edges.
//!
//! A node declares a side output when the builder asks for it (`Stream::side_output`,
//! `WindowedStream::side_output_late_data`); its index among the node's declared ones is
//! what the output batch carries. Records are collected per side output during a call,
//! apart from the main output (their key and timestamp are the input record's, so no
//! main-output key selector applies), and written after everything else as the optional
//! side section of the batch layout (`weir-batch`). An operator that emitted none
//! writes nothing, so its bytes are exactly those of an operator without side outputs.
//!
//! The collected records live in one per-instance table rather than in every emitter
//! and context: the guest is single-threaded, one call runs at a time, and the hot path
//! of operators that never use side outputs stays as it was.

use core::cell::RefCell;
use core::marker::PhantomData;

use weir_batch::{WriteBuf, push_len_prefixed, push_side_batch, push_side_header, push_timers_header, push_ts};

use crate::Data;
use crate::codec::{Out, put_encoded};
use crate::error::OpError;

/// The name of a side output and the type of its values (Flink's `OutputTag`). Emit to
/// it with [`Emitter::output`](crate::Emitter::output) or
/// [`KeyedContext::output`](crate::KeyedContext::output); read it with
/// [`Stream::side_output`](crate::Stream::side_output) on the operator's stream.
/// Records keep the key and timestamp of the record (or timer) being processed.
pub struct OutputTag<V> {
    name: String,
    _v: PhantomData<fn() -> V>,
}

impl<V> Clone for OutputTag<V> {
    fn clone(&self) -> Self {
        OutputTag { name: self.name.clone(), _v: PhantomData }
    }
}

impl<V: Data> OutputTag<V> {
    /// A side output called `name`, unique among one operator's side outputs.
    pub fn new(name: impl Into<String>) -> Self {
        OutputTag { name: name.into(), _v: PhantomData }
    }
}

impl<V> OutputTag<V> {
    /// Its name, as the plan has it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The side records of the running call, and what every operator declares.
#[derive(Default)]
struct Table {
    /// Declared side-output names by operator id (node index), from the plan.
    declared: Vec<Vec<String>>,
    /// The operator of the running call.
    op: usize,
    /// Records per declared side output of `op` in this call.
    batches: Vec<Out>,
    /// Any record in `batches`.
    pending: bool,
    /// The first encoding error of the call: it fails the call.
    error: Option<OpError>,
    /// Records emitted to side outputs their operator does not declare (no edge could
    /// read them), by operator id.
    undeclared: Vec<u64>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::default();
}

/// Remembers the side outputs every operator declares (index = operator id).
pub(crate) fn install(declared: Vec<Vec<String>>) {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        t.undeclared = vec![0; declared.len()];
        t.declared = declared;
    });
}

/// A call of operator `op` starts: nothing is collected yet.
pub(crate) fn begin(op: u32) {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        t.op = op as usize;
        if t.pending || t.error.is_some() {
            t.discard();
        }
    });
}

/// A call ended: records its operator collected but did not write (an operator whose
/// output has no place for them) count as undeclared.
pub(crate) fn end() {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        if t.pending {
            let n: u64 = t.batches.iter().map(count_records).sum();
            let op = t.op;
            if let Some(c) = t.undeclared.get_mut(op) {
                *c += n;
            }
            t.discard();
        }
    });
}

/// Records operator `op` emitted to side outputs it does not declare so far.
pub(crate) fn undeclared(op: u32) -> u64 {
    TABLE.with(|t| t.borrow().undeclared.get(op as usize).copied().unwrap_or(0))
}

/// Emits one record to side output `name` of the running operator: `ts`, `key` (encoded)
/// and the value `write_value` appends, length-prefixed.
pub(crate) fn emit(name: &str, ts: i64, key: &[u8], write_value: impl FnOnce(&mut Out) -> Result<(), OpError>) {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        let t = &mut *t;
        let Some(index) = t.declared.get(t.op).and_then(|names| names.iter().position(|n| n == name)) else {
            if let Some(c) = t.undeclared.get_mut(t.op) {
                *c += 1;
            }
            return;
        };
        if t.batches.len() <= index {
            t.batches.resize_with(index + 1, || Out::with_capacity(0));
        }
        let Some(out) = t.batches.get_mut(index) else { return };
        push_ts(out, ts);
        push_len_prefixed(out, key);
        if let Err(e) = write_value(out) {
            t.error.get_or_insert(e);
        }
        t.pending = true;
    });
}

/// Emits `value` (encoded here) to `tag`.
pub(crate) fn emit_value<V: Data>(tag: &OutputTag<V>, ts: i64, key: &[u8], value: &V) {
    emit(&tag.name, ts, key, |out| put_encoded(out, value));
}

/// Emits a record whose value is already encoded (a late record, passed on as it came).
pub(crate) fn emit_raw(name: &str, ts: i64, key: &[u8], value: &[u8]) {
    emit(name, ts, key, |out| {
        push_len_prefixed(out, value);
        Ok(())
    });
}

/// How the output being finished ends, which decides where its side section goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// An unkeyed output: after its records.
    Records,
    /// A keyed output: after its timer changes, which it wrote (true) or left out, in
    /// which case their empty count goes first.
    Keyed { timers_written: bool },
}

/// Appends the side section of the running call to its output, if it emitted any side
/// record; fails the call if encoding one failed.
#[inline]
pub(crate) fn append(out: &mut Out, ending: Ending) -> Result<(), OpError> {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        if let Some(e) = t.error.take() {
            t.discard();
            return Err(e);
        }
        if !t.pending {
            return Ok(());
        }
        if ending == (Ending::Keyed { timers_written: false }) {
            push_timers_header(out, 0);
        }
        let written = t.batches.iter().filter(|b| b.written() > 0).count();
        push_side_header(out, written as u32);
        for (index, batch) in t.batches.iter().enumerate().filter(|(_, b)| b.written() > 0) {
            push_side_batch(out, index as u32, batch.as_slice());
        }
        t.discard();
        Ok(())
    })
}

impl Table {
    /// Forgets the call's side records, keeping the buffers.
    fn discard(&mut self) {
        for b in &mut self.batches {
            b.clear();
        }
        self.pending = false;
        self.error = None;
    }
}

/// Records in a side batch (it was written record by record, so it is valid).
fn count_records(batch: &Out) -> u64 {
    weir_batch::validate(batch.as_slice()).map_or(0, |n| n as u64)
}
