//! The canonical batches of `sdk/vectors` (README.md there), which the host writes, through
//! this crate's codec: the readers every operator decodes input with (`read_record`, and
//! `weir_batch::Reader`'s `key_entry` and `keyed_record`) and the writers every operator
//! answers with (`Emitter`, `put_state_update`).
//!
//! Values here are postcard encodings of the job's types; the vectors hold arbitrary
//! bytes, so they go through the writers as [`Raw`], which postcard encodes as exactly
//! its bytes.

#![allow(clippy::unwrap_used)]

#[path = "../vectors/reader.rs"]
mod reader;

use serde::ser::{Serialize, SerializeTuple, Serializer};

use weir_batch::Reader;

use crate::codec::{self, Out, build, read_record};
use crate::emit::{Emitter, KeyMode};
use crate::error::OpError;
use reader::{Key, KeyedRecord, Layout, Record, Update, Vector};

fn vectors(layout: Layout) -> Vec<Vector> {
    reader::load_layout(&reader::dir(env!("CARGO_MANIFEST_DIR"), ".."), layout)
}

/// Bytes as a value whose postcard encoding is the bytes themselves: a tuple (postcard
/// writes no length for it) of `u8`s (written as one byte each).
struct Raw(Vec<u8>);

impl Serialize for Raw {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(self.0.len())?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

fn decode_plain(buf: &[u8]) -> Result<(Vec<Record>, Vec<u8>), OpError> {
    let mut r = Reader::new(buf);
    let (mut records, mut raw) = (Vec::new(), Vec::new());
    while !r.is_empty() {
        let rec = read_record(&mut r)?;
        records.push(Record { ts: rec.ts, key: rec.key.to_vec(), value: rec.value.to_vec() });
        raw.extend_from_slice(rec.raw);
    }
    Ok((records, raw))
}

fn decode_keyed(buf: &[u8]) -> Result<(Vec<Key>, Vec<KeyedRecord>), OpError> {
    let mut r = Reader::new(buf);
    let mut keys = Vec::new();
    for _ in 0..r.u32("key count")? {
        let (key, state) = r.key_entry()?;
        keys.push(Key { key: key.to_vec(), state: state.map(<[u8]>::to_vec) });
    }
    let count = r.u32("record count")?;
    let mut records = Vec::new();
    for _ in 0..count {
        let rec = r.keyed_record()?;
        records.push(KeyedRecord { key_index: rec.key_index, ts: rec.ts, value: rec.value.to_vec() });
    }
    r.finish("keyed input")?;
    Ok((keys, records))
}

/// Writes `v`'s records and state updates as an operator does.
fn encode_output(v: &Vector) -> Vec<u8> {
    let mut out = Out::with_capacity(0);
    let at = weir_batch::begin_output(&mut out);
    let mut keep = KeyMode::Keep;
    let mut em = Emitter::new(&mut out, &mut keep);
    for r in &v.records {
        em.set_input(r.ts, &r.key);
        em.emit(Raw(r.value.clone()));
        assert!(em.take_error().is_none());
    }
    drop(em);
    weir_batch::end_records(&mut out, at);
    for u in &v.updates {
        match u {
            Update::Unchanged => codec::put_state_update::<Raw>(&mut out, false, None),
            Update::Set(s) => codec::put_state_update(&mut out, true, Some(&Raw(s.clone()))),
            Update::Cleared => codec::put_state_update::<Raw>(&mut out, true, None),
        }
        .unwrap();
    }
    out.into_vec()
}

#[test]
fn plain_input_vectors() {
    for v in vectors(Layout::Plain) {
        let (records, raw) = decode_plain(&v.bytes).unwrap();
        assert_eq!(records, v.records, "{}", v.name);
        assert_eq!(raw, v.bytes, "{}: raw records", v.name);
        // A batch may end after any whole record; a prefix ending inside one is bad input.
        let mut ends = vec![0];
        for r in &v.records {
            ends.push(ends[ends.len() - 1] + 16 + r.key.len() + r.value.len());
        }
        for cut in (0..v.bytes.len()).filter(|c| !ends.contains(c)) {
            assert!(matches!(decode_plain(&v.bytes[..cut]), Err(OpError::BadInput(_))), "{} cut at {cut}", v.name);
        }
    }
}

#[test]
fn keyed_input_vectors() {
    for v in vectors(Layout::Keyed) {
        assert_eq!(decode_keyed(&v.bytes).unwrap(), (v.keys.clone(), v.keyed_records.clone()), "{}", v.name);
        for cut in 0..v.bytes.len() {
            assert!(matches!(decode_keyed(&v.bytes[..cut]), Err(OpError::BadInput(_))), "{} cut at {cut}", v.name);
        }
    }
}

#[test]
fn output_vectors() {
    for v in vectors(Layout::Output).into_iter().chain(vectors(Layout::KeyedOutput)) {
        assert_eq!(encode_output(&v), v.bytes, "{}: written", v.name);
        let parsed = build::parse_output(&v.bytes);
        let records: Vec<Record> = parsed.records.into_iter().map(|(ts, key, value)| Record { ts, key, value }).collect();
        assert_eq!(records, v.records, "{}: read back", v.name);
        let updates: Vec<Update> = build::parse_updates(&parsed.tail)
            .into_iter()
            .map(|u| match u {
                None => Update::Unchanged,
                Some(Some(s)) => Update::Set(s),
                Some(None) => Update::Cleared,
            })
            .collect();
        assert_eq!(updates, v.updates, "{}: state updates read back", v.name);
    }
}
