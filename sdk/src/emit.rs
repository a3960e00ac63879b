//! [`Emitter`]: how operators hand records to the output batch.

use core::marker::PhantomData;

use serde::Serialize;

use crate::codec;
use crate::error::OpError;

/// Writes the key of an output value into the output batch, length-prefixed. Installed
/// into an operator when a downstream `key_by` is fused into it, so the key selector
/// runs inside this operator's emit instead of costing a separate operator hop.
pub(crate) type KeyFn<W> = dyn FnMut(&W, &mut Vec<u8>) -> Result<(), OpError>;

/// Collects the output records of one input record, writing each straight into the
/// output batch (no intermediate record list).
///
/// Emitted records get the timestamp of the input record and, unless the stream is
/// re-keyed downstream, its key. Encoding errors and [`Emitter::fail`] make the whole
/// batch fail with `operator-error::failed`.
pub struct Emitter<'a, W> {
    out: &'a mut Vec<u8>,
    key_fn: Option<&'a mut KeyFn<W>>,
    key: &'a [u8],
    ts: i64,
    error: Option<OpError>,
    _w: PhantomData<fn(W)>,
}

impl<'a, W: Serialize + 'static> Emitter<'a, W> {
    pub(crate) fn new(out: &'a mut Vec<u8>, key_fn: Option<&'a mut KeyFn<W>>) -> Self {
        Emitter { out, key_fn, key: &[], ts: 0, error: None, _w: PhantomData }
    }

    /// Points the emitter at the input record whose outputs come next.
    #[inline]
    pub(crate) fn set_input(&mut self, ts: i64, key: &'a [u8]) {
        self.ts = ts;
        self.key = key;
    }

    /// Takes the first error recorded since the last call. Checks before taking so the
    /// common no-error case costs a load, not a store.
    #[inline(always)]
    pub(crate) fn take_error(&mut self) -> Option<OpError> {
        self.error.as_ref()?;
        self.error.take()
    }

    /// Emits `value` with the input record's key and timestamp.
    #[inline(always)]
    pub fn emit(&mut self, value: W) {
        self.emit_ref(&value);
    }

    /// Emits `value` by reference: no clone needed for values the operator keeps.
    #[inline(always)]
    pub fn emit_ref(&mut self, value: &W) {
        let ts = self.ts;
        self.emit_at(ts, value);
    }

    /// Emits `value` with timestamp `ts` instead of the input record's.
    #[inline(always)]
    pub fn emit_at(&mut self, ts: i64, value: &W) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.write(ts, value, None) {
            self.error = Some(e);
        }
    }

    /// Fails the batch with `msg` once the current call returns (`operator-error::failed`).
    /// Records emitted for this batch are dropped with it; the job restarts or fails
    /// according to its restart strategy.
    pub fn fail(&mut self, msg: impl core::fmt::Display) {
        if self.error.is_none() {
            self.error = Some(OpError::Failed(msg.to_string()));
        }
    }

    /// Emits a record whose value bytes are already encoded (`raw_value` must be the
    /// encoding of `value`); used by filters and key selectors to skip re-encoding.
    #[inline(always)]
    pub(crate) fn emit_raw_value(&mut self, value: &W, raw_value: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let ts = self.ts;
        if let Err(e) = self.write(ts, value, Some(raw_value)) {
            self.error = Some(e);
        }
    }

    /// True if a fused key selector rewrites keys (so raw records cannot be copied).
    #[inline]
    pub(crate) fn rekeys(&self) -> bool {
        self.key_fn.is_some()
    }

    /// Copies a whole input record unchanged (only valid when `!rekeys()`).
    #[inline]
    pub(crate) fn copy_record(&mut self, raw: &[u8]) {
        self.out.extend_from_slice(raw);
    }

    #[inline(always)]
    fn write(&mut self, ts: i64, value: &W, raw_value: Option<&[u8]>) -> Result<(), OpError> {
        let out = &mut *self.out;
        match self.key_fn.as_deref_mut() {
            Some(key_fn) => {
                out.extend_from_slice(&ts.to_le_bytes());
                key_fn(value, out)?;
            }
            None => {
                // Timestamp and key length in one append.
                let mut head = [0u8; 12];
                let (ts_bytes, len_bytes) = head.split_at_mut(8);
                ts_bytes.copy_from_slice(&ts.to_le_bytes());
                len_bytes.copy_from_slice(&codec::len_u32(self.key.len())?.to_le_bytes());
                out.extend_from_slice(&head);
                out.extend_from_slice(self.key);
            }
        }
        match raw_value {
            Some(raw) => codec::put_bytes(out, raw),
            None => codec::put_encoded(out, value),
        }
    }
}
