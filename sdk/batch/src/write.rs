//! Writing batches: the fields and records of the layout, appended to any [`WriteBuf`].

use alloc::vec::Vec;

use crate::{FiredTimer, NO_STATE, RECORD_HEADER_BYTES, STATE_CLEARED, STATE_SET, STATE_UNCHANGED, StateUpdate, TimerChange};

/// A buffer a batch is written into. The layout's writers (`push_*`) need nothing else,
/// so each buffer keeps its own growth strategy: `Vec<u8>`, or the job SDK's output
/// buffer, which is kept zero-filled so that a field is one store into initialized
/// memory.
pub trait WriteBuf {
    /// Bytes written so far.
    fn written(&self) -> usize;

    /// Appends a fixed-size field.
    fn put<const N: usize>(&mut self, bytes: [u8; N]);

    /// Appends bytes.
    fn put_slice(&mut self, bytes: &[u8]);

    /// Overwrites the 4 bytes at offset `at`, a slot appended earlier (a length known
    /// only once what follows it is written).
    fn patch(&mut self, at: usize, bytes: [u8; 4]);

    /// Makes room for `additional` more bytes, if the buffer works that way.
    #[inline(always)]
    fn reserve(&mut self, additional: usize) {
        let _ = additional;
    }
}

impl WriteBuf for Vec<u8> {
    #[inline(always)]
    fn written(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    fn put<const N: usize>(&mut self, bytes: [u8; N]) {
        self.extend_from_slice(&bytes);
    }

    #[inline(always)]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    #[inline(always)]
    fn patch(&mut self, at: usize, bytes: [u8; 4]) {
        // Slots come from `begin_len_prefixed` on this buffer: always inside it.
        if let Some(slot) = self.get_mut(at..at + 4) {
            slot.copy_from_slice(&bytes);
        }
    }

    #[inline(always)]
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }
}

/// A length as its `u32` field. Fields are below 4 GiB (see the crate docs); in a
/// 32-bit guest the conversion is the identity.
#[inline(always)]
fn len_u32(len: usize) -> u32 {
    len as u32
}

/// Appends a `u8` (a state update tag).
#[inline(always)]
pub fn push_u8<W: WriteBuf + ?Sized>(w: &mut W, v: u8) {
    w.put([v]);
}

/// Appends a little-endian `u32` (a count or key index).
#[inline(always)]
pub fn push_u32<W: WriteBuf + ?Sized>(w: &mut W, v: u32) {
    w.put(v.to_le_bytes());
}

/// Appends a timestamp: the field a record starts with.
#[inline(always)]
pub fn push_ts<W: WriteBuf + ?Sized>(w: &mut W, ts: i64) {
    w.put(ts.to_le_bytes());
}

/// Appends a `u32` length and the bytes (a key, value or state field).
#[inline(always)]
pub fn push_len_prefixed<W: WriteBuf + ?Sized>(w: &mut W, bytes: &[u8]) {
    push_u32(w, len_u32(bytes.len()));
    w.put_slice(bytes);
}

/// Starts a length-prefixed field whose length is not known yet: appends a length slot
/// and returns its offset for [`end_len_prefixed`].
#[inline(always)]
pub fn begin_len_prefixed<W: WriteBuf + ?Sized>(w: &mut W) -> usize {
    let at = w.written();
    w.put([0; 4]);
    at
}

/// Ends the field begun at `at`: writes the number of bytes appended since into its slot.
#[inline(always)]
pub fn end_len_prefixed<W: WriteBuf + ?Sized>(w: &mut W, at: usize) {
    let len = w.written().saturating_sub(at + 4);
    w.patch(at, len_u32(len).to_le_bytes());
}

/// Appends one record of a plain batch or output.
#[inline]
pub fn push_record<W: WriteBuf + ?Sized>(w: &mut W, ts: i64, key: &[u8], value: &[u8]) {
    w.reserve(RECORD_HEADER_BYTES + key.len() + value.len());
    push_ts(w, ts);
    push_len_prefixed(w, key);
    push_len_prefixed(w, value);
}

/// Appends one record whose value is the concatenation of `value_parts`.
#[inline]
pub fn push_record_parts<W: WriteBuf + ?Sized>(w: &mut W, ts: i64, key: &[u8], value_parts: &[&[u8]]) {
    let value_len: usize = value_parts.iter().map(|p| p.len()).sum();
    w.reserve(RECORD_HEADER_BYTES + key.len() + value_len);
    push_ts(w, ts);
    push_len_prefixed(w, key);
    push_u32(w, len_u32(value_len));
    for p in value_parts {
        w.put_slice(p);
    }
}

/// Appends one record whose value `write_value` appends to the buffer itself.
#[inline]
pub fn push_record_with<W: WriteBuf + ?Sized>(w: &mut W, ts: i64, key: &[u8], write_value: impl FnOnce(&mut W)) {
    push_ts(w, ts);
    push_len_prefixed(w, key);
    let at = begin_len_prefixed(w);
    write_value(w);
    end_len_prefixed(w, at);
}

/// Starts an output batch: the `records-len` slot. Returns its offset for
/// [`end_records`].
#[inline(always)]
pub fn begin_output<W: WriteBuf + ?Sized>(w: &mut W) -> usize {
    begin_len_prefixed(w)
}

/// Ends the records of the output begun at `at`: fills in `records-len`. Keyed
/// operators then append one [`push_state_update`] per input key.
#[inline(always)]
pub fn end_records<W: WriteBuf + ?Sized>(w: &mut W, at: usize) {
    end_len_prefixed(w, at);
}

/// Appends the state update of one key of a keyed output.
#[inline]
pub fn push_state_update<W: WriteBuf + ?Sized>(w: &mut W, update: StateUpdate<'_>) {
    match update {
        StateUpdate::Unchanged => push_u8(w, STATE_UNCHANGED),
        StateUpdate::Set(state) => {
            push_u8(w, STATE_SET);
            push_len_prefixed(w, state);
        }
        StateUpdate::Cleared => push_u8(w, STATE_CLEARED),
    }
}

/// Appends the `key-count` of a keyed input batch. Follow with one
/// [`push_key_with_state`] per key, then [`push_keyed_records_header`] and one
/// [`push_keyed_record`] per record.
#[inline]
pub fn push_key_count<W: WriteBuf + ?Sized>(w: &mut W, count: u32) {
    push_u32(w, count);
}

/// Appends one key of the key table with its current state (`None`: no state).
#[inline]
pub fn push_key_with_state<W: WriteBuf + ?Sized>(w: &mut W, key: &[u8], state: Option<&[u8]>) {
    push_len_prefixed(w, key);
    match state {
        Some(s) => push_len_prefixed(w, s),
        None => push_u32(w, NO_STATE),
    }
}

/// Appends the `record-count` of a keyed input batch.
#[inline]
pub fn push_keyed_records_header<W: WriteBuf + ?Sized>(w: &mut W, count: u32) {
    push_u32(w, count);
}

/// Appends one record of a keyed input batch.
#[inline]
pub fn push_keyed_record<W: WriteBuf + ?Sized>(w: &mut W, key_index: u32, ts: i64, value: &[u8]) {
    push_u32(w, key_index);
    push_ts(w, ts);
    push_len_prefixed(w, value);
}

/// Appends the `change-count` of a keyed output's timer changes (after its state
/// updates). Follow with one [`push_timer_change`] each. An output without timer
/// changes may leave both out.
#[inline]
pub fn push_timers_header<W: WriteBuf + ?Sized>(w: &mut W, count: u32) {
    push_u32(w, count);
}

/// Appends one timer change of a keyed output.
#[inline]
pub fn push_timer_change<W: WriteBuf + ?Sized>(w: &mut W, change: TimerChange) {
    push_u8(w, change.kind());
    push_u32(w, change.key_index);
    push_ts(w, change.ts);
}

/// Appends one fired timer of an `on-timer` input (after its key table and
/// [`push_timers_header`] with the timer count).
#[inline]
pub fn push_fired_timer<W: WriteBuf + ?Sized>(w: &mut W, timer: FiredTimer) {
    push_u32(w, timer.key_index);
    push_ts(w, timer.ts);
    push_u8(w, timer.domain as u8);
}

/// Appends the `side-count` of an output's side-output section: the number of
/// [`push_side_batch`] that follow. It comes last: after the records of an unkeyed
/// output, after the timer changes of a keyed one (write [`push_timers_header`] with 0
/// first if there are none). An output without side records leaves it out, so
/// operators without side outputs write exactly what they did before.
#[inline]
pub fn push_side_header<W: WriteBuf + ?Sized>(w: &mut W, count: u32) {
    push_u32(w, count);
}

/// Appends records for side output number `output` (an index into the operator's
/// declared side outputs): `records` is a plain batch of whole records.
#[inline]
pub fn push_side_batch<W: WriteBuf + ?Sized>(w: &mut W, output: u32, records: &[u8]) {
    push_u32(w, output);
    push_len_prefixed(w, records);
}
