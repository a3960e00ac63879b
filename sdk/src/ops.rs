//! The operators behind unkeyed stream nodes: map, flat_map, filter, the key selector
//! (when it cannot be fused), the text formatter in front of text sinks, and the raw
//! escape hatch. Keyed operators live in [`crate::keyed`].

use core::any::Any;
use core::marker::PhantomData;

use crate::Data;
use crate::codec::{self, Reader, Record, decode, read_record};
use crate::emit::{Emitter, KeyFn};
use crate::error::OpError;
use crate::text::TextField;

/// One registered operator of the job, addressed by its node index.
pub(crate) trait Operator {
    /// Called once before the first batch.
    fn open(&mut self) -> Result<(), OpError> {
        Ok(())
    }

    /// Decodes `input` (layout per WIT `operator.process`) and appends the whole output
    /// batch to the empty `out`.
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), OpError>;

    /// Called once when the subtask finishes.
    fn close(&mut self) -> Result<(), OpError> {
        Ok(())
    }

    /// Installs a downstream key selector (a `Box<Box<KeyFn<W>>>` for this operator's
    /// output type `W`) so this operator writes keyed records itself. Gives the selector
    /// back if this operator cannot take it.
    fn fuse_key(&mut self, key_fn: Box<dyn Any>) -> Result<(), Box<dyn Any>> {
        Err(key_fn)
    }
}

/// Takes a type-erased key selector for output type `W`, if it is one and none is
/// installed yet.
pub(crate) fn install_key<W: 'static>(
    slot: &mut Option<Box<KeyFn<W>>>,
    key_fn: Box<dyn Any>,
) -> Result<(), Box<dyn Any>> {
    if slot.is_some() {
        return Err(key_fn);
    }
    let key_fn = key_fn.downcast::<Box<KeyFn<W>>>()?;
    *slot = Some(*key_fn);
    Ok(())
}

/// An unkeyed operator that decodes each record's value and hands it to `f` with an
/// emitter. map, flat_map, filter and the key selector are all this with different `f`.
pub(crate) struct Stateless<V, W, F> {
    f: F,
    key_fn: Option<Box<KeyFn<W>>>,
    _v: PhantomData<fn(V)>,
}

impl<V, W, F> Stateless<V, W, F>
where
    V: Data,
    W: Data,
    F: FnMut(V, &Record<'_>, &mut Emitter<'_, W>) + 'static,
{
    pub(crate) fn new(f: F) -> Self {
        Stateless { f, key_fn: None, _v: PhantomData }
    }

    pub(crate) fn with_key(f: F, key_fn: Box<KeyFn<W>>) -> Self {
        Stateless { f, key_fn: Some(key_fn), _v: PhantomData }
    }
}

impl<V, W, F> Operator for Stateless<V, W, F>
where
    V: Data,
    W: Data,
    F: FnMut(V, &Record<'_>, &mut Emitter<'_, W>) + 'static,
{
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), OpError> {
        let Stateless { f, key_fn, .. } = self;
        let at = codec::begin_output(out);
        let mut em = Emitter::new(out, key_fn.as_deref_mut());
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
        codec::end_records(out, at)
    }

    fn fuse_key(&mut self, key_fn: Box<dyn Any>) -> Result<(), Box<dyn Any>> {
        install_key(&mut self.key_fn, key_fn)
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

/// Builds the type-erased key selector of `key_by`, boxed twice so it can travel as
/// `Box<dyn Any>` until the plan decides where it runs.
pub(crate) fn key_fn<V: Data, K: Data>(mut selector: impl FnMut(&V) -> K + 'static) -> Box<dyn Any> {
    let key_fn: Box<KeyFn<V>> = Box::new(move |v: &V, out: &mut Vec<u8>| codec::put_encoded(out, &selector(v)));
    Box::new(key_fn)
}

/// The stand-alone key selector node, used when `key_fn` could not be fused into the
/// upstream operator (e.g. the upstream is a host source). It decodes the value only to
/// compute the key; the value bytes are copied as they are.
pub(crate) fn key_selector<V: Data>(key_fn: Box<dyn Any>) -> Result<Box<dyn Operator>, String> {
    let key_fn =
        key_fn.downcast::<Box<KeyFn<V>>>().map_err(|_| "internal: key selector of the wrong type".to_string())?;
    let op = Stateless::with_key(
        |v: V, rec: &Record<'_>, em: &mut Emitter<'_, V>| em.emit_raw_value(&v, rec.value),
        *key_fn,
    );
    Ok(Box::new(op))
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
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), OpError> {
        let at = codec::begin_output(out);
        let mut r = Reader::new(input);
        while !r.is_empty() {
            let rec = read_record(&mut r)?;
            let key: K = decode(rec.key, "record key")?;
            let value: V = decode(rec.value, "record value")?;
            out.extend_from_slice(&rec.ts.to_le_bytes());
            let slot = codec::len_slot(out);
            key.write_text(out);
            codec::patch_len(out, slot)?;
            let slot = codec::len_slot(out);
            value.write_text(out);
            codec::patch_len(out, slot)?;
        }
        codec::end_records(out, at)
    }
}

/// The raw escape hatch: the function gets the input batch and returns the complete
/// output batch, unchecked. Exists for tests of the host's output validation.
pub(crate) struct Raw(pub(crate) fn(&[u8]) -> Vec<u8>);

impl Operator for Raw {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), OpError> {
        *out = (self.0)(input);
        Ok(())
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
        let mut out = Vec::new();
        op.process(input, &mut out).unwrap();
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
        assert!(op.fuse_key(key_fn(|w: &String| w.len() as u32)).is_ok());
        // a second selector, or one of the wrong type, is refused
        assert!(op.fuse_key(key_fn(|w: &String| w.len() as u32)).is_err());
        let input = records(&[(1, b"", &enc(&"ab c".to_string()))]);
        assert_eq!(run(op.as_mut(), &input), vec![(1, enc(&2u32), enc(&"ab")), (1, enc(&1u32), enc(&"c"))]);
        let mut wrong = map(|v: u64| v);
        assert!(wrong.fuse_key(key_fn(|w: &String| w.len() as u32)).is_err());
    }

    #[test]
    fn key_selector_copies_values() {
        let mut op = key_selector::<u64>(key_fn(|v: &u64| v % 10)).unwrap();
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
        let mut out = Vec::new();
        assert!(matches!(op.process(&input, &mut out), Err(OpError::BadInput(_))));
    }

    #[test]
    fn emitter_fail_fails_batch() {
        let mut op = flat_map(|v: u64, out: &mut Emitter<u64>| out.fail(format!("no {v}")));
        let input = records(&[(1, b"", &enc(&9u64))]);
        let mut out = Vec::new();
        assert_eq!(op.process(&input, &mut out), Err(OpError::Failed("no 9".into())));
    }
}
