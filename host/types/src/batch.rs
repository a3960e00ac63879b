//! The flat record-batch layout, specified in `wit/dataflow.wit` on `operator.process`.
//!
//! One batch is one byte buffer. A record is `ts: i64, key_len: u32, key, value_len: u32,
//! value`; a plain batch is records back to back. Keyed operators get the batch grouped
//! by key, each distinct key once with its current value state, and give back one state
//! update per key after their output records.
//!
//! The layout lives in one crate, `weir-batch` (sdk/batch), which the Rust guest SDKs
//! use too; this module is the host's name for it. Its readers check every length
//! against the buffer: batches come from guests and peers, neither of which is trusted.

pub use weir_batch::*;

/// The host's name for [`Reader`]: a bounds-checked cursor over a batch.
pub type Cursor<'a> = Reader<'a>;
