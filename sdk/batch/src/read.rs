//! Reading batches in place: every field is bounds-checked, nothing is copied.

use alloc::vec::Vec;
use core::iter::FusedIterator;

use crate::{
    BatchError, FIRED_TIMER_BYTES, FiredTimer, KEY_ENTRY_HEADER_BYTES, KEYED_RECORD_HEADER_BYTES, KeyedRecord, LEN_BYTES, NO_STATE, Record,
    STATE_CLEARED, STATE_SET, STATE_UNCHANGED, StateUpdate, TIMER_CHANGE_BYTES, TS_BYTES, TimeDomain, TimerChange,
};

/// A bounds-checked cursor over a batch that hands out slices of it.
///
/// It keeps the unread rest as a slice (pointer and length), so every read is one
/// length comparison and the cursor stays in registers (Wasm locals) in the callers'
/// loops; the offset for error messages is derived from the total length. Errors are
/// built out of line, so the reads stay small enough to inline.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
    total: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { rest: buf, total: buf.len() }
    }

    /// True once every byte has been read.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Bytes not read yet.
    #[inline(always)]
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Offset of the next byte in the buffer.
    #[inline(always)]
    pub fn position(&self) -> usize {
        self.total - self.rest.len()
    }

    /// The unread rest. Comparing it before and after reads slices out whole records.
    #[inline(always)]
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// The next `N` bytes.
    #[inline(always)]
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], BatchError> {
        self.chunk::<N>(what).copied()
    }

    /// A `u8`.
    #[inline(always)]
    pub fn u8(&mut self, what: &'static str) -> Result<u8, BatchError> {
        self.chunk::<1>(what).map(|[b]| *b)
    }

    /// A little-endian `u32`.
    #[inline(always)]
    pub fn u32(&mut self, what: &'static str) -> Result<u32, BatchError> {
        self.chunk::<4>(what).map(|b| u32::from_le_bytes(*b))
    }

    /// A little-endian `i64`.
    #[inline(always)]
    pub fn i64(&mut self, what: &'static str) -> Result<i64, BatchError> {
        self.chunk::<8>(what).map(|b| i64::from_le_bytes(*b))
    }

    /// The next `N` bytes, borrowed. Fields are decoded straight from the batch: a
    /// copied byte array inside a `Result` would sit at an odd offset (the error's tag
    /// byte comes first) and cost byte-wise loads on every record in Wasm.
    #[inline(always)]
    fn chunk<const N: usize>(&mut self, what: &'static str) -> Result<&'a [u8; N], BatchError> {
        match self.rest.split_first_chunk::<N>() {
            Some((bytes, rest)) => {
                self.rest = rest;
                Ok(bytes)
            }
            None => Err(truncated(what, self.position(), N as u64, self.rest.len())),
        }
    }

    /// The next `len` bytes, borrowed from the batch.
    #[inline(always)]
    pub fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], BatchError> {
        match self.rest.split_at_checked(len) {
            Some((bytes, rest)) => {
                self.rest = rest;
                Ok(bytes)
            }
            None => Err(truncated(what, self.position(), len as u64, self.rest.len())),
        }
    }

    /// A `u32` length followed by that many bytes.
    #[inline(always)]
    pub fn len_prefixed(&mut self, what: &'static str) -> Result<&'a [u8], BatchError> {
        let len = self.u32(what)?;
        self.take(len as usize, what)
    }

    /// One record: `ts, key-len, key, value-len, value` (plain input and output).
    #[inline(always)]
    pub fn record(&mut self) -> Result<Record<'a>, BatchError> {
        let head = self.head::<{ TS_BYTES + LEN_BYTES }>(record_head_error)?;
        let (ts, key_len) = head.split_at(TS_BYTES);
        // Fixed-size splits of a fixed-size array: the conversions cannot fail.
        let ts = i64::from_le_bytes(ts.try_into().unwrap_or_default());
        let key_len = u32::from_le_bytes(key_len.try_into().unwrap_or_default());
        let key = self.take(key_len as usize, "record key")?;
        let value = self.len_prefixed("record value")?;
        Ok(Record { ts, key, value })
    }

    /// One entry of a keyed input's key table: the key and its state (`None`: no state).
    /// Read `key-count: u32` first.
    #[inline(always)]
    pub fn key_entry(&mut self) -> Result<(&'a [u8], Option<&'a [u8]>), BatchError> {
        let key = self.len_prefixed("key")?;
        let len = self.u32("state length")?;
        let state = if len == NO_STATE { None } else { Some(self.take(len as usize, "state")?) };
        Ok((key, state))
    }

    /// One record of a keyed input: `key-index, ts, value-len, value`. Read
    /// `record-count: u32` first; the key index is the caller's to check.
    #[inline(always)]
    pub fn keyed_record(&mut self) -> Result<KeyedRecord<'a>, BatchError> {
        let head = self.head::<{ LEN_BYTES + TS_BYTES }>(keyed_head_error)?;
        let (key_index, ts) = head.split_at(LEN_BYTES);
        let key_index = u32::from_le_bytes(key_index.try_into().unwrap_or_default());
        let ts = i64::from_le_bytes(ts.try_into().unwrap_or_default());
        let value = self.len_prefixed("record value")?;
        Ok(KeyedRecord { key_index, ts, value })
    }

    /// State update number `index` of a keyed output.
    #[inline]
    pub fn state_update(&mut self, index: usize) -> Result<StateUpdate<'a>, BatchError> {
        match self.u8("state update tag")? {
            STATE_UNCHANGED => Ok(StateUpdate::Unchanged),
            STATE_SET => Ok(StateUpdate::Set(self.len_prefixed("state update")?)),
            STATE_CLEARED => Ok(StateUpdate::Cleared),
            tag => Err(BatchError::BadStateTag { index, tag }),
        }
    }

    /// Timer change number `index` of a keyed output; the key index is the caller's
    /// to check.
    #[inline]
    pub fn timer_change(&mut self, index: usize) -> Result<TimerChange, BatchError> {
        let kind = self.u8("timer change kind")?;
        let key_index = self.u32("timer key index")?;
        let ts = self.i64("timer time")?;
        TimerChange::from_kind(kind, key_index, ts).ok_or(BatchError::BadTimer { index, kind })
    }

    /// Fired timer number `index` of an `on-timer` input; the key index is the
    /// caller's to check.
    #[inline]
    pub fn fired_timer(&mut self, index: usize) -> Result<FiredTimer, BatchError> {
        let key_index = self.u32("timer key index")?;
        let ts = self.i64("timer time")?;
        let domain = match self.u8("timer domain")? {
            0 => TimeDomain::Event,
            1 => TimeDomain::Processing,
            kind => return Err(BatchError::BadTimer { index, kind }),
        };
        Ok(FiredTimer { key_index, ts, domain })
    }

    /// Fails if bytes are left: `what` (e.g. "keyed input") was complete before them.
    #[inline]
    pub fn finish(&self, what: &'static str) -> Result<(), BatchError> {
        if self.rest.is_empty() { Ok(()) } else { Err(trailing(what, self.rest.len())) }
    }

    /// The fixed-size fields a record starts with, in one bounds check; `short` makes the
    /// error from the offset and the bytes left.
    #[inline(always)]
    fn head<const N: usize>(&mut self, short: fn(usize, usize) -> BatchError) -> Result<&'a [u8; N], BatchError> {
        match self.rest.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.rest = rest;
                Ok(head)
            }
            None => Err(short(self.position(), self.rest.len())),
        }
    }
}

// The error constructors are out of line and take a few scalars, never the reader or
// an aggregate: anything whose address is passed to a call is kept in memory, not in
// registers (Wasm locals), and its stores would run on every record of the loops.

/// A record head that does not fit in the `have` bytes at `at`.
#[cold]
#[inline(never)]
fn record_head_error(at: usize, have: usize) -> BatchError {
    head_error(at, have, ("record timestamp", TS_BYTES), ("record key", LEN_BYTES))
}

/// A keyed record head that does not fit in the `have` bytes at `at`.
#[cold]
#[inline(never)]
fn keyed_head_error(at: usize, have: usize) -> BatchError {
    head_error(at, have, ("key index", LEN_BYTES), ("record timestamp", TS_BYTES))
}

/// Names the field of a head (`first`, then `second`: name and size) the buffer ends in.
#[inline]
fn head_error(at: usize, have: usize, first: (&'static str, usize), second: (&'static str, usize)) -> BatchError {
    if have < first.1 { truncated(first.0, at, first.1 as u64, have) } else { truncated(second.0, at + first.1, second.1 as u64, have - first.1) }
}

#[cold]
#[inline(never)]
fn truncated(what: &'static str, offset: usize, need: u64, have: usize) -> BatchError {
    BatchError::Truncated { what, offset, need, have }
}

#[cold]
#[inline(never)]
fn trailing(what: &'static str, extra: usize) -> BatchError {
    BatchError::Trailing { what, extra }
}

/// Iterates the records of a plain batch (or of an output's records), stopping after
/// the first malformed one.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    reader: Reader<'a>,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, BatchError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.reader.is_empty() {
            return None;
        }
        let r = self.reader.record();
        if r.is_err() {
            // Fuse: nothing after a bad length can be trusted.
            self.reader.rest = &[];
        }
        Some(r)
    }
}

impl FusedIterator for Records<'_> {}

/// The records of a plain batch.
#[inline]
pub fn records(buf: &[u8]) -> Records<'_> {
    Records { reader: Reader::new(buf) }
}

/// Checks a plain batch and counts its records.
pub fn validate(buf: &[u8]) -> Result<usize, BatchError> {
    let mut r = Reader::new(buf);
    let mut n = 0;
    while !r.is_empty() {
        r.record()?;
        n += 1;
    }
    Ok(n)
}

/// An operator's output batch, checked.
#[derive(Debug)]
pub struct Output<'a> {
    /// The emitted records, a valid plain batch.
    pub records: &'a [u8],
    /// Number of records in `records`.
    pub record_count: usize,
    /// One update per input key, for keyed operators; empty otherwise.
    pub states: Vec<StateUpdate<'a>>,
    /// Timers set or deleted, for keyed operators; key indices checked.
    pub timers: Vec<TimerChange>,
    /// Records for side outputs, in the order written; empty (no allocation) when the
    /// output has no side section. Output indices are the caller's to check.
    pub side: Vec<SideBatch<'a>>,
}

/// Records an operator emitted to one of its side outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideBatch<'a> {
    /// Index of the side output among the operator's declared ones.
    pub output: u32,
    /// A valid plain batch.
    pub records: &'a [u8],
    /// Number of records in `records`.
    pub record_count: usize,
}

/// Parses and checks an operator's output. `keys` is the number of keys of a keyed
/// input (so that many state updates must follow), or `None` for unkeyed operators.
pub fn parse_output(buf: &[u8], keys: Option<usize>) -> Result<Output<'_>, BatchError> {
    let mut r = Reader::new(buf);
    let records = r.len_prefixed("output records")?;
    let record_count = validate(records)?;
    let mut states = Vec::new();
    let mut timers = Vec::new();
    let mut side = Vec::new();
    if let Some(n) = keys {
        states.reserve(n);
        for index in 0..n {
            states.push(r.state_update(index)?);
        }
        if !r.is_empty() {
            let count = r.u32("timer change count")? as usize;
            timers.reserve(count.min(r.remaining() / TIMER_CHANGE_BYTES));
            for index in 0..count {
                let change = r.timer_change(index)?;
                if change.key_index as usize >= n {
                    return Err(BatchError::bad_key_index(index, change.key_index, n));
                }
                timers.push(change);
            }
        }
    }
    if !r.is_empty() {
        let count = r.u32("side output count")? as usize;
        // Each entry takes at least its two u32 fields.
        side.reserve(count.min(r.remaining() / (2 * LEN_BYTES)));
        for _ in 0..count {
            let output = r.u32("side output index")?;
            let records = r.len_prefixed("side output records")?;
            side.push(SideBatch { output, records, record_count: validate(records)? });
        }
    }
    r.finish("operator output")?;
    Ok(Output { records, record_count, states, timers, side })
}

/// A keyed input batch, parsed (tests and tools; operators read it in place).
#[derive(Debug, PartialEq, Eq)]
pub struct KeyedInput<'a> {
    /// Distinct keys with their states.
    pub keys: Vec<(&'a [u8], Option<&'a [u8]>)>,
    /// The records, each naming one of `keys`.
    pub records: Vec<KeyedRecord<'a>>,
}

/// Parses a keyed input batch, checking every key index.
pub fn parse_keyed_input(buf: &[u8]) -> Result<KeyedInput<'_>, BatchError> {
    let mut r = Reader::new(buf);
    let n = r.u32("key count")?;
    // Capacities from counts are capped by what the buffer can hold.
    let mut keys = Vec::with_capacity((n as usize).min(r.remaining() / KEY_ENTRY_HEADER_BYTES));
    for _ in 0..n {
        keys.push(r.key_entry()?);
    }
    let m = r.u32("record count")?;
    let mut records = Vec::with_capacity((m as usize).min(r.remaining() / KEYED_RECORD_HEADER_BYTES));
    for record in 0..m as usize {
        let rec = r.keyed_record()?;
        if rec.key_index as usize >= keys.len() {
            return Err(BatchError::bad_key_index(record, rec.key_index, keys.len()));
        }
        records.push(rec);
    }
    r.finish("keyed input")?;
    Ok(KeyedInput { keys, records })
}

/// Splits the keyed input of a two-input (connect) operator into the keyed batch and
/// the input its records came through (0 or 1), which the host appends last.
pub fn split_input(buf: &[u8]) -> Result<(&[u8], u32), BatchError> {
    let Some(body) = buf.len().checked_sub(LEN_BYTES) else {
        return Err(truncated("input tag", 0, LEN_BYTES as u64, buf.len()));
    };
    let (body, tag) = buf.split_at(body);
    let mut r = Reader::new(tag);
    let input = r.u32("input tag")?;
    if input > 1 {
        return Err(BatchError::BadInput { input });
    }
    Ok((body, input))
}

/// An `on-timer` input batch, parsed (tests and tools; operators read it in place).
#[derive(Debug, PartialEq, Eq)]
pub struct TimerInput<'a> {
    /// Distinct keys with their states.
    pub keys: Vec<(&'a [u8], Option<&'a [u8]>)>,
    /// The timers that fired, each naming one of `keys`.
    pub timers: Vec<FiredTimer>,
}

/// Parses an `on-timer` input batch, checking every key index.
pub fn parse_timer_input(buf: &[u8]) -> Result<TimerInput<'_>, BatchError> {
    let mut r = Reader::new(buf);
    let n = r.u32("key count")?;
    let mut keys = Vec::with_capacity((n as usize).min(r.remaining() / KEY_ENTRY_HEADER_BYTES));
    for _ in 0..n {
        keys.push(r.key_entry()?);
    }
    let m = r.u32("timer count")?;
    let mut timers = Vec::with_capacity((m as usize).min(r.remaining() / FIRED_TIMER_BYTES));
    for index in 0..m as usize {
        let t = r.fired_timer(index)?;
        if t.key_index as usize >= keys.len() {
            return Err(BatchError::bad_key_index(index, t.key_index, keys.len()));
        }
        timers.push(t);
    }
    r.finish("timer input")?;
    Ok(TimerInput { keys, timers })
}
