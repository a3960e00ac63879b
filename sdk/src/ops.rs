//! The operators behind unkeyed stream nodes: map, flat_map, filter, the key selector
//! (when it cannot be fused), the text formatter in front of text sinks, and the raw
//! escape hatch. Keyed operators live in [`crate::keyed`].

use core::any::{Any, TypeId};
use core::marker::PhantomData;

use weir_batch::{Reader, begin_output, end_records, push_len_prefixed, push_ts};

use crate::Data;
use crate::codec::{self, Out, Record, decode, read_record};
use crate::emit::{Emitter, KeyMode, Selector};
use crate::error::OpError;
use crate::side::{self, Ending};
use crate::text::TextField;

/// One registered operator of the job, addressed by its node index.
pub(crate) trait Operator {
    /// Called once before the first batch.
    fn open(&mut self) -> Result<(), OpError> {
        Ok(())
    }

    /// Decodes `input` (layout per WIT `operator.process`) and returns the whole output
    /// batch, written into a buffer of `capacity` bytes to start with. The output
    /// cursor is a local of each operator's loop so it lives in Wasm locals.
    fn process(&mut self, input: &[u8], capacity: usize) -> Result<Vec<u8>, OpError>;

    /// Handles the operator's fired timers (layout per WIT `timers.on-timer`) and returns
    /// the output batch, a keyed `process` output. Only keyed operators that set timers
    /// get this call; the others say so.
    fn on_timer(&mut self, _input: &[u8], _capacity: usize) -> Result<Vec<u8>, OpError> {
        Err(OpError::Failed("on-timer for an operator that sets no timers".to_string()))
    }

    /// Called once when the subtask finishes.
    fn close(&mut self) -> Result<(), OpError> {
        Ok(())
    }

    /// True if this operator can take a downstream key selector for output values of
    /// type `value_type` (see [`Operator::fuse_key`]).
    fn accepts_key(&self, _value_type: TypeId) -> bool {
        false
    }

    /// Installs a downstream key (a `Box<KeyMode<W>>` for this operator's output type
    /// `W`) so this operator writes keyed records itself. Gives it back if this
    /// operator cannot take it.
    fn fuse_key(&mut self, key: Box<dyn Any>) -> Result<(), Box<dyn Any>> {
        Err(key)
    }

    /// Gives a keyed operator's state the time-to-live `ttl`; false if this operator
    /// keeps no keyed state it could apply to.
    fn set_state_ttl(&mut self, _ttl: crate::ttl::StateTtl) -> bool {
        false
    }
}

/// `Operator::accepts_key` of an operator with output type `W` and key mode `slot`.
pub(crate) fn accepts_key<W: 'static>(slot: &KeyMode<W>, value_type: TypeId) -> bool {
    slot.is_keep() && value_type == TypeId::of::<W>()
}

/// Takes a type-erased key mode for output type `W`, if it is one and none is
/// installed yet.
pub(crate) fn install_key<W: 'static>(slot: &mut KeyMode<W>, key: Box<dyn Any>) -> Result<(), Box<dyn Any>> {
    if !slot.is_keep() {
        return Err(key);
    }
    *slot = *key.downcast::<KeyMode<W>>()?;
    Ok(())
}

/// An unkeyed operator that decodes each record's value and hands it to `f` with an
/// emitter. map, flat_map and filter are all this with different `f`.
pub(crate) struct Stateless<V, W, F> {
    f: F,
    key_mode: KeyMode<W>,
    _v: PhantomData<fn(V)>,
}

impl<V, W, F> Stateless<V, W, F>
where
    V: Data,
    W: Data,
    F: FnMut(V, &Record<'_>, &mut Emitter<'_, W>) + 'static,
{
    pub(crate) fn new(f: F) -> Self {
        Stateless { f, key_mode: KeyMode::Keep, _v: PhantomData }
    }
}

impl<V, W, F> Operator for Stateless<V, W, F>
where
    V: Data,
    W: Data,
    F: FnMut(V, &Record<'_>, &mut Emitter<'_, W>) + 'static,
{
    fn process(&mut self, input: &[u8], capacity: usize) -> Result<Vec<u8>, OpError> {
        let Stateless { f, key_mode, .. } = self;
        let mut out = Out::with_capacity(capacity);
        let at = begin_output(&mut out);
        let mut em = Emitter::new(&mut out, key_mode);
        let mut r = Reader::new(input);
        while !r.is_empty() {
            let rec = read_record(&mut r)?;
            let value: V = decode(rec.value, "record value")?;
            em.set_input(rec.ts, rec.key);
            f(value, &rec, &mut em);
            if let Some(e) = em.take_error() {
                return Err(e);
            }
        }
        drop(em);
        end_records(&mut out, at);
        side::append(&mut out, Ending::Records)?;
        Ok(out.into_vec())
    }

    fn accepts_key(&self, value_type: TypeId) -> bool {
        accepts_key(&self.key_mode, value_type)
    }

    fn fuse_key(&mut self, key: Box<dyn Any>) -> Result<(), Box<dyn Any>> {
        install_key(&mut self.key_mode, key)
    }
}

/// Operator for `Stream::map`.
pub(crate) fn map<V: Data, W: Data>(mut f: impl FnMut(V) -> W + 'static) -> Box<dyn Operator> {
    Box::new(Stateless::new(move |v: V, _: &Record<'_>, em: &mut Emitter<'_, W>| em.emit(f(v))))
}

/// Operator for `Stream::flat_map`.
pub(crate) fn flat_map<V: Data, W: Data>(mut f: impl FnMut(V, &mut Emitter<'_, W>) + 'static) -> Box<dyn Operator> {
    Box::new(Stateless::new(move |v: V, _: &Record<'_>, em: &mut Emitter<'_, W>| f(v, em)))
}

/// Operator for `Stream::filter`: kept records are copied byte for byte unless a fused
/// key selector has to rewrite their keys.
pub(crate) fn filter<V: Data>(mut f: impl FnMut(&V) -> bool + 'static) -> Box<dyn Operator> {
    Box::new(Stateless::new(move |v: V, rec: &Record<'_>, em: &mut Emitter<'_, V>| {
        if f(&v) {
            if em.rekeys() {
                em.emit_raw_value(&v, rec.value);
            } else {
                em.copy_record(rec.raw);
            }
        }
    }))
}

/// Operator for `Stream::assign_timestamps`: each record is copied with the timestamp
/// `f` computes from its value, or re-encoded if a fused key selector rewrites its key.
pub(crate) fn assign_timestamps<V: Data>(mut f: impl FnMut(&V) -> i64 + 'static) -> Box<dyn Operator> {
    Box::new(Stateless::new(move |v: V, rec: &Record<'_>, em: &mut Emitter<'_, V>| {
        let ts = f(&v);
        if em.rekeys() {
            em.set_ts(ts);
            em.emit_raw_value(&v, rec.value);
        } else {
            em.copy_record_at(ts, rec.raw);
        }
    }))
}

/// A `key_by` waiting for the plan to decide where it runs: fused into the upstream
/// operator, or as an operator node of its own.
pub(crate) trait PendingKey {
    /// `TypeId` of the values being keyed.
    fn value_type(&self) -> TypeId;
    /// The `Box<KeyMode<V>>` (as `Box<dyn Any>`) to fuse into the upstream operator.
    fn into_fused(self: Box<Self>) -> Box<dyn Any>;
    /// The stand-alone operator, used when the key cannot be fused (e.g. the upstream
    /// is a host source). It is monomorphic in the selector: no dynamic call per record.
    fn into_operator(self: Box<Self>) -> Box<dyn Operator>;
}

/// `key_by(selector)` before placement.
struct PendingSelector<V, F> {
    f: F,
    _v: PhantomData<fn(&V)>,
}

impl<V: Data, K: Data, F: FnMut(&V) -> K + 'static> PendingKey for PendingSelector<V, F> {
    fn value_type(&self) -> TypeId {
        TypeId::of::<V>()
    }

    fn into_fused(self: Box<Self>) -> Box<dyn Any> {
        let select = Selector { f: self.f, scratch: Out::with_capacity(16) };
        Box::new(KeyMode::<V>::Select(Box::new(select)))
    }

    fn into_operator(self: Box<Self>) -> Box<dyn Operator> {
        Box::new(KeySelectorOp { f: self.f, _v: PhantomData })
    }
}

/// `key_by_value()` before placement.
struct PendingValue<V> {
    _v: PhantomData<fn(&V)>,
}

impl<V: Data> PendingKey for PendingValue<V> {
    fn value_type(&self) -> TypeId {
        TypeId::of::<V>()
    }

    fn into_fused(self: Box<Self>) -> Box<dyn Any> {
        Box::new(KeyMode::<V>::Value)
    }

    fn into_operator(self: Box<Self>) -> Box<dyn Operator> {
        Box::new(ValueKeyOp)
    }
}

/// The pending key of `key_by(selector)`.
pub(crate) fn key_fn<V: Data, K: Data>(selector: impl FnMut(&V) -> K + 'static) -> Box<dyn PendingKey> {
    Box::new(PendingSelector { f: selector, _v: PhantomData })
}

/// The pending key of `key_by_value()`.
pub(crate) fn key_value<V: Data>() -> Box<dyn PendingKey> {
    Box::new(PendingValue::<V> { _v: PhantomData })
}

/// The stand-alone key selector node: decodes the value only to compute the key; the
/// value bytes are copied as they are.
struct KeySelectorOp<V, F> {
    f: F,
    _v: PhantomData<fn(V)>,
}

impl<V: Data, K: Data, F: FnMut(&V) -> K + 'static> Operator for KeySelectorOp<V, F> {
    fn process(&mut self, input: &[u8], capacity: usize) -> Result<Vec<u8>, OpError> {
        let mut out = Out::with_capacity(capacity);
        let at = begin_output(&mut out);
        let mut r = Reader::new(input);
        while !r.is_empty() {
            let rec = read_record(&mut r)?;
            let value: V = decode(rec.value, "record value")?;
            let key = (self.f)(&value);
            push_ts(&mut out, rec.ts);
            codec::put_encoded(&mut out, &key)?;
            push_len_prefixed(&mut out, rec.value);
        }
        end_records(&mut out, at);
        Ok(out.into_vec())
    }
}

/// The stand-alone node of `key_by_value`: the value bytes become the key, nothing is
/// decoded.
struct ValueKeyOp;

impl Operator for ValueKeyOp {
    fn process(&mut self, input: &[u8], capacity: usize) -> Result<Vec<u8>, OpError> {
        let mut out = Out::with_capacity(capacity);
        let at = begin_output(&mut out);
        let mut r = Reader::new(input);
        while !r.is_empty() {
            let rec = read_record(&mut r)?;
            push_ts(&mut out, rec.ts);
            push_len_prefixed(&mut out, rec.value);
            push_len_prefixed(&mut out, rec.value);
        }
        end_records(&mut out, at);
        Ok(out.into_vec())
    }
}

/// The formatting operator inserted before text sinks: turns postcard `(K, V)` into the
/// UTF-8 text the host writes as `key<TAB>value`.
pub(crate) struct Format<K, V> {
    _t: PhantomData<fn(K, V)>,
}

impl<K: Data + TextField, V: Data + TextField> Format<K, V> {
    pub(crate) fn boxed() -> Box<dyn Operator> {
        Box::new(Format::<K, V> { _t: PhantomData })
    }
}

impl<K: Data + TextField, V: Data + TextField> Operator for Format<K, V> {
    fn process(&mut self, input: &[u8], capacity: usize) -> Result<Vec<u8>, OpError> {
        let mut out = Out::with_capacity(capacity);
        let at = begin_output(&mut out);
        let mut r = Reader::new(input);
        // TextField writes into a Vec; format into this one and copy, so `out` keeps
        // its preallocated room (handing `out` itself over as a Vec would drop it).
        let mut text = Vec::new();
        while !r.is_empty() {
            let rec = read_record(&mut r)?;
            let key: K = decode(rec.key, "record key")?;
            let value: V = decode(rec.value, "record value")?;
            push_ts(&mut out, rec.ts);
            text.clear();
            key.write_text(&mut text);
            push_len_prefixed(&mut out, &text);
            text.clear();
            value.write_text(&mut text);
            push_len_prefixed(&mut out, &text);
        }
        end_records(&mut out, at);
        Ok(out.into_vec())
    }
}

/// The raw escape hatch: the function gets the input batch and returns the complete
/// output batch, unchecked. Exists for tests of the host's output validation.
pub(crate) struct Raw(pub(crate) fn(&[u8]) -> Vec<u8>);

impl Operator for Raw {
    fn process(&mut self, input: &[u8], _capacity: usize) -> Result<Vec<u8>, OpError> {
        Ok((self.0)(input))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::codec::build::*;

    fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
        postcard::to_allocvec(v).unwrap()
    }

    fn run(op: &mut dyn Operator, input: &[u8]) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
        let out = op.process(input, 0).unwrap();
        let parsed = parse_output(&out);
        assert!(parsed.tail.is_empty());
        parsed.records
    }

    #[test]
    fn map_keeps_key_and_timestamp() {
        let mut op = map(|v: u64| v * 2);
        let input = records(&[(5, b"k", &enc(&21u64)), (6, b"", &enc(&1u64))]);
        assert_eq!(run(op.as_mut(), &input), vec![(5, b"k".to_vec(), enc(&42u64)), (6, vec![], enc(&2u64))]);
    }

    #[test]
    fn flat_map_emits_any_number() {
        let mut op = flat_map(|line: String, out: &mut Emitter<String>| {
            for w in line.split_whitespace() {
                out.emit(w.to_string())
            }
        });
        let input = records(&[(1, b"", &enc(&"a bb".to_string())), (2, b"", &enc(&"".to_string()))]);
        let got = run(op.as_mut(), &input);
        assert_eq!(got, vec![(1, vec![], enc(&"a")), (1, vec![], enc(&"bb"))]);
    }

    #[test]
    fn filter_copies_records() {
        let mut op = filter(|v: &u64| v.is_multiple_of(2));
        let input = records(&[(1, b"x", &enc(&1u64)), (2, b"y", &enc(&2u64))]);
        assert_eq!(run(op.as_mut(), &input), vec![(2, b"y".to_vec(), enc(&2u64))]);
    }

    #[test]
    fn fused_key_rewrites_keys() {
        let mut op = flat_map(|line: String, out: &mut Emitter<String>| {
            for w in line.split_whitespace() {
                out.emit(w.to_string())
            }
        });
        assert!(op.accepts_key(TypeId::of::<String>()));
        assert!(op.fuse_key(key_fn(|w: &String| w.len() as u32).into_fused()).is_ok());
        // a second selector, or one of the wrong type, is refused
        assert!(!op.accepts_key(TypeId::of::<String>()));
        assert!(op.fuse_key(key_fn(|w: &String| w.len() as u32).into_fused()).is_err());
        let input = records(&[(1, b"", &enc(&"ab c".to_string()))]);
        assert_eq!(run(op.as_mut(), &input), vec![(1, enc(&2u32), enc(&"ab")), (1, enc(&1u32), enc(&"c"))]);
        let mut wrong = map(|v: u64| v);
        assert!(!wrong.accepts_key(TypeId::of::<String>()));
        assert!(wrong.fuse_key(key_fn(|w: &String| w.len() as u32).into_fused()).is_err());
    }

    #[test]
    fn key_selector_copies_values() {
        let mut op = key_fn(|v: &u64| v % 10).into_operator();
        let input = records(&[(3, b"", &enc(&123u64))]);
        assert_eq!(run(op.as_mut(), &input), vec![(3, enc(&3u64), enc(&123u64))]);
    }

    #[test]
    fn format_writes_text() {
        let mut op = Format::<String, u64>::boxed();
        let input = records(&[(3, &enc(&"word"), &enc(&7u64))]);
        assert_eq!(run(op.as_mut(), &input), vec![(3, b"word".to_vec(), b"7".to_vec())]);
        let mut unit = Format::<(), String>::boxed();
        let input = records(&[(0, b"", &enc(&"line"))]);
        assert_eq!(run(unit.as_mut(), &input), vec![(0, vec![], b"line".to_vec())]);
    }

    #[test]
    fn bad_value_is_bad_input() {
        let mut op = map(|v: u64| v);
        let input = records(&[(1, b"", &[0xff, 0xff])]);
        assert!(matches!(op.process(&input, 0), Err(OpError::BadInput(_))));
    }

    #[test]
    fn emitter_fail_fails_batch() {
        let mut op = flat_map(|v: u64, out: &mut Emitter<u64>| out.fail(format!("no {v}")));
        let input = records(&[(1, b"", &enc(&9u64))]);
        assert_eq!(op.process(&input, 0), Err(OpError::Failed("no 9".into())));
    }
}
