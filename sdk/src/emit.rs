//! [`Emitter`]: how operators hand records to the output batch, and the key modes a
//! downstream `key_by` can install into an operator.

use core::marker::PhantomData;

use serde::Serialize;
use weir_batch::{TS_BYTES, WriteBuf, push_len_prefixed, push_ts};

use crate::Data;
use crate::codec::{self, Out};
use crate::error::OpError;
use crate::side::{self, OutputTag};

/// A key selector fused into the operator upstream of its `key_by`: returns the encoded
/// key of an output value. The key is returned as bytes held by the selector (not
/// written into the output), so the output cursor never escapes into this dynamic call
/// and stays in Wasm locals in the operators' loops.
pub(crate) trait KeySelect<W> {
    fn key(&mut self, value: &W) -> Result<&[u8], OpError>;
}

/// The `KeySelect` of a `key_by` closure, with its scratch buffer for the encoded key.
pub(crate) struct Selector<F> {
    pub(crate) f: F,
    pub(crate) scratch: Out,
}

impl<W, K, F> KeySelect<W> for Selector<F>
where
    K: Serialize + 'static,
    F: FnMut(&W) -> K,
{
    fn key(&mut self, value: &W) -> Result<&[u8], OpError> {
        self.scratch.clear();
        let key = (self.f)(value);
        codec::encode_into(&mut self.scratch, &key).map_err(codec::encode_error::<K>)?;
        Ok(self.scratch.as_slice())
    }
}

/// How an operator keys its output records.
pub(crate) enum KeyMode<W> {
    /// The input record's key (no `key_by` fused in).
    Keep,
    /// The output value itself is the key (`key_by_value`): its encoding is written
    /// once and copied, no selector runs.
    Value,
    /// A fused `key_by` selector.
    Select(Box<dyn KeySelect<W>>),
}

impl<W> KeyMode<W> {
    pub(crate) fn is_keep(&self) -> bool {
        matches!(self, KeyMode::Keep)
    }
}

/// Collects the output records of one input record, writing each straight into the
/// output batch (no intermediate record list).
///
/// Emitted records get the timestamp of the input record and, unless the stream is
/// re-keyed downstream, its key. Encoding errors and [`Emitter::fail`] make the whole
/// batch fail with `operator-error::failed`.
pub struct Emitter<'a, W> {
    out: &'a mut Out,
    key_mode: &'a mut KeyMode<W>,
    key: &'a [u8],
    ts: i64,
    error: Option<OpError>,
    _w: PhantomData<fn(W)>,
}

impl<'a, W: Serialize + 'static> Emitter<'a, W> {
    pub(crate) fn new(out: &'a mut Out, key_mode: &'a mut KeyMode<W>) -> Self {
        Emitter { out, key_mode, key: &[], ts: 0, error: None, _w: PhantomData }
    }

    /// Points the emitter at the input record whose outputs come next.
    #[inline(always)]
    pub(crate) fn set_input(&mut self, ts: i64, key: &'a [u8]) {
        self.ts = ts;
        self.key = key;
    }

    /// Sets the timestamp of the records emitted next, keeping the key: a window's
    /// results carry the window's last instant.
    #[inline(always)]
    pub(crate) fn set_ts(&mut self, ts: i64) {
        self.ts = ts;
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
        let key = self.key;
        if let Err(e) = self.write(ts, key, value, None) {
            self.error = Some(e);
        }
    }

    /// Emits `value` with timestamp `ts` and the encoded `key` instead of the input
    /// record's (a fused key selector still keys it by its value).
    pub(crate) fn emit_keyed(&mut self, key: &[u8], ts: i64, value: &W) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.write(ts, key, value, None) {
            self.error = Some(e);
        }
    }

    /// Emits `value` to the side output `tag`, with the input record's key (as it came
    /// in: a `key_by` after this operator keys only its main output) and timestamp.
    /// Records for a side output the plan never reads (no `side_output(&tag)` on this
    /// operator's stream) are dropped and counted.
    pub fn output<T: Data>(&mut self, tag: &OutputTag<T>, value: T) {
        side::emit_value(tag, self.ts, self.key, &value);
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
    /// encoding of `value`); used by filters to skip re-encoding.
    #[inline(always)]
    pub(crate) fn emit_raw_value(&mut self, value: &W, raw_value: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let (ts, key) = (self.ts, self.key);
        if let Err(e) = self.write(ts, key, value, Some(raw_value)) {
            self.error = Some(e);
        }
    }

    /// True if a fused key selector rewrites keys (so raw records cannot be copied).
    #[inline]
    pub(crate) fn rekeys(&self) -> bool {
        !self.key_mode.is_keep()
    }

    /// Copies a whole input record unchanged (only valid when `!rekeys()`).
    #[inline]
    pub(crate) fn copy_record(&mut self, raw: &[u8]) {
        self.out.put_slice(raw);
    }

    /// Copies a whole input record with timestamp `ts` instead of its own (only valid
    /// when `!rekeys()`): a timestamp assigner changes nothing else.
    #[inline]
    pub(crate) fn copy_record_at(&mut self, ts: i64, raw: &[u8]) {
        push_ts(self.out, ts);
        self.out.put_slice(raw.get(TS_BYTES..).unwrap_or(&[]));
    }

    #[inline(always)]
    fn write(&mut self, ts: i64, key: &[u8], value: &W, raw_value: Option<&[u8]>) -> Result<(), OpError> {
        let out = &mut *self.out;
        push_ts(out, ts);
        match self.key_mode {
            KeyMode::Keep => push_len_prefixed(out, key),
            KeyMode::Value => {
                // Key and value are the same bytes: write them once, then copy.
                let at = out.written();
                match raw_value {
                    Some(raw) => push_len_prefixed(out, raw),
                    None => codec::put_encoded(out, value)?,
                }
                out.repeat_since(at);
                return Ok(());
            }
            KeyMode::Select(select) => push_len_prefixed(out, select.key(value)?),
        }
        match raw_value {
            Some(raw) => {
                push_len_prefixed(out, raw);
                Ok(())
            }
            None => codec::put_encoded(out, value),
        }
    }
}

impl Emitter<'_, String> {
    /// Emits the string `s` as a `String` value without allocating one: the text is
    /// encoded straight from the borrowed `&str` (e.g. a word of the input line).
    ///
    /// Only a fused `key_by` selector, which takes `&String`, still needs an owned copy;
    /// `key_by_value` does not.
    #[inline(always)]
    pub fn emit_str(&mut self, s: &str) {
        if self.error.is_some() {
            return;
        }
        let out = &mut *self.out;
        match self.key_mode {
            KeyMode::Keep => {
                push_ts(out, self.ts);
                push_len_prefixed(out, self.key);
                codec::put_str_prefixed(out, s);
            }
            KeyMode::Value => {
                push_ts(out, self.ts);
                let at = out.written();
                codec::put_str_prefixed(out, s);
                out.repeat_since(at);
            }
            KeyMode::Select(_) => self.emit(s.to_string()),
        }
    }
}
