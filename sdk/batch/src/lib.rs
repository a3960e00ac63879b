//! # weir-batch: the flat record-batch layout of `operator.process`
//!
//! A batch crosses the Wasm boundary (and the network between TaskManagers) as one byte
//! buffer. Its layout is specified on `operator.process` in `wit/dataflow.wit`; this
//! crate is its one Rust implementation, used by the host (`weir_types::batch` re-exports
//! it) and by both Rust guest SDKs (`weir-sdk`, `weir-sdk-operator`). The vectors in
//! `sdk/vectors` pin it down byte for byte for every guest language.
//!
//! All integers are little-endian.
//!
//! ```text
//! record       ts: i64 | key-len: u32 | key | value-len: u32 | value
//! plain input  record*                                      (filling the buffer)
//! keyed input  key-count: u32 | (key-len: u32 | key | state-len: u32 | state)*
//!              record-count: u32 | (key-index: u32 | ts: i64 | value-len: u32 | value)*
//!              (state-len NO_STATE: the key has no state, not the same as empty)
//!              then, for a two-input (connect) operator only: input: u32 (0 or 1)
//! output       records-len: u32 | record*                   (records-len bytes)
//!              keyed operators then add one state update per input key, in key order:
//!              STATE_UNCHANGED | STATE_SET, len: u32, state | STATE_CLEARED   (u8 tags)
//!              and may then add timer changes (absent: none):
//!              change-count: u32 | (kind: u8 | key-index: u32 | ts: i64)*
//!              any operator may then add side-output records (absent: none; a keyed
//!              output then needs its timer changes, change-count 0 if there are none):
//!              side-count: u32 | (output: u32 | records-len: u32 | record*)*
//! timer input  key-count: u32 | (key-len: u32 | key | state-len: u32 | state)*
//! (on-timer)   timer-count: u32 | (key-index: u32 | ts: i64 | domain: u8)*
//! ```
//!
//! - Reading: [`Reader`] walks a buffer in place and hands out slices of it, checking
//!   every length against what is left (batches come from guests and peers, neither
//!   trusted): [`Reader::record`], [`Reader::key_entry`], [`Reader::keyed_record`],
//!   [`Reader::state_update`]. [`records`], [`validate`], [`parse_keyed_input`] and
//!   [`parse_output`] read whole batches with it.
//! - Writing: the `push_*` functions append fields and records to a [`WriteBuf`]:
//!   `Vec<u8>` (the host, `weir-sdk-operator`) or the job SDK's pre-zeroed output
//!   buffer. Lengths are `u32`, so a field must stay below 4 GiB: always so in a 32-bit
//!   Wasm guest, and host batches are bounded far below it.
//! - Feature `guest`: what both Rust SDKs share beyond the layout (module `guest`: the
//!   panic hook and the log functions).
//!
//! `no_std` + `alloc` and no dependencies, so it builds for the host and wasm32-wasip2.
//! Everything on the per-record path is `#[inline]` and generic over the buffer, so each
//! user gets code specialised to its own buffer.

#![no_std]

extern crate alloc;
#[cfg(feature = "guest")]
extern crate std;

mod error;
#[cfg(feature = "guest")]
pub mod guest;
mod read;
mod write;

pub use error::BatchError;
pub use read::{KeyedInput, Output, Reader, Records, SideBatch, TimerInput, parse_keyed_input, parse_output, parse_timer_input, records, split_input, validate};
pub use write::{
    WriteBuf, begin_len_prefixed, begin_output, end_len_prefixed, end_records, push_fired_timer, push_key_count, push_key_with_state,
    push_keyed_record, push_keyed_records_header, push_len_prefixed, push_record, push_record_parts, push_record_with, push_side_batch,
    push_side_header, push_state_update, push_timer_change, push_timers_header, push_ts, push_u8, push_u32,
};

/// `state-len` of a key with no state in a keyed input batch.
pub const NO_STATE: u32 = u32::MAX;

/// State update tag: the key's state is left as it was.
pub const STATE_UNCHANGED: u8 = 0;
/// State update tag: a `len: u32` and the new state bytes follow.
pub const STATE_SET: u8 = 1;
/// State update tag: the key's state is removed.
pub const STATE_CLEARED: u8 = 2;

/// Bytes of a `u32` length (or count, or key index) field.
pub const LEN_BYTES: usize = 4;
/// Bytes of a timestamp field.
pub const TS_BYTES: usize = 8;
/// Fixed bytes of a record: `ts`, `key-len`, `value-len`.
pub const RECORD_HEADER_BYTES: usize = TS_BYTES + 2 * LEN_BYTES;
/// Fixed bytes of a key entry of a keyed input: `key-len`, `state-len`.
pub const KEY_ENTRY_HEADER_BYTES: usize = 2 * LEN_BYTES;
/// Fixed bytes of a record of a keyed input: `key-index`, `ts`, `value-len`.
pub const KEYED_RECORD_HEADER_BYTES: usize = LEN_BYTES + TS_BYTES + LEN_BYTES;

/// One record, borrowed from its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Event timestamp (milliseconds; 0 when the source has none).
    pub ts: i64,
    /// Key bytes; empty for streams that are not keyed.
    pub key: &'a [u8],
    /// Value bytes.
    pub value: &'a [u8],
}

/// One record of a keyed input batch, borrowed from it; its key is named by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedRecord<'a> {
    /// Index of the record's key in the batch's key table (not checked by the reader).
    pub key_index: u32,
    /// Event timestamp.
    pub ts: i64,
    /// Value bytes.
    pub value: &'a [u8],
}

/// What a keyed operator did to one key's value state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateUpdate<'a> {
    /// Left as it was.
    Unchanged,
    /// Replaced by these bytes.
    Set(&'a [u8]),
    /// Removed.
    Cleared,
}

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeDomain {
    /// Event time: fires when the watermark reaches the timer.
    Event = 0,
    /// Processing time: fires when the wall clock does.
    Processing = 1,
}

/// What a keyed operator does to one of its keys' timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerChange {
    /// Sets the timer (true) or deletes it (false).
    pub set: bool,
    /// Its clock.
    pub domain: TimeDomain,
    /// The key's index in the input's key table.
    pub key_index: u32,
    /// When it fires (ms).
    pub ts: i64,
}

impl TimerChange {
    /// The change's `kind` byte: 0 set event time, 1 delete event time, 2 set
    /// processing time, 3 delete processing time.
    pub fn kind(&self) -> u8 {
        (self.domain as u8) * 2 + u8::from(!self.set)
    }

    fn from_kind(kind: u8, key_index: u32, ts: i64) -> Option<Self> {
        let domain = match kind / 2 {
            0 => TimeDomain::Event,
            1 => TimeDomain::Processing,
            _ => return None,
        };
        Some(TimerChange { set: kind % 2 == 0, domain, key_index, ts })
    }
}

/// A timer that fired, as `on-timer` receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiredTimer {
    /// The key's index in the batch's key table.
    pub key_index: u32,
    /// The time it was set for.
    pub ts: i64,
    /// Its clock.
    pub domain: TimeDomain,
}

/// Fixed bytes of a timer change: `kind`, `key-index`, `ts`.
pub const TIMER_CHANGE_BYTES: usize = 1 + LEN_BYTES + TS_BYTES;
/// Fixed bytes of a fired timer: `key-index`, `ts`, `domain`.
pub const FIRED_TIMER_BYTES: usize = LEN_BYTES + TS_BYTES + 1;

#[cfg(test)]
mod tests;
