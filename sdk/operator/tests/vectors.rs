//! The canonical batches of `sdk/vectors` (README.md there), which the host writes,
//! through the entry points `export_operator!` and `export_keyed_operator!` call
//! (`plain_process`, `keyed_process`): every input vector must reach the operator as the
//! records (and states) it describes, and every output vector must be what the SDK
//! writes for those records and state updates.

#![allow(clippy::unwrap_used)]

#[path = "../../vectors/reader.rs"]
mod reader;

use std::cell::RefCell;

use reader::{Layout, Record, Update, Vector};
use weir_sdk_operator::{Emitter, Error, KeyState, KeyedOperator, OpenContext, Operator, RawRecord};

fn vectors(layout: Layout) -> Vec<Vector> {
    reader::load_layout(&reader::dir(env!("CARGO_MANIFEST_DIR"), "../.."), layout)
}

fn ctx() -> OpenContext {
    OpenContext { subtask: 0, parallelism: 1, max_parallelism: 128, args: Vec::new() }
}

/// A record handed to the operator: (ts, key, value, the key's state if keyed).
type Seen = (i64, Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// What the operators below see and do; per test thread, like the SDK's operator slot.
#[derive(Default)]
struct Script {
    seen: Vec<Seen>,
    /// When set, the operator emits these records on the input record with ts 0 and,
    /// keyed, applies update i on the record with ts i, instead of echoing.
    output: Option<(Vec<Record>, Vec<Update>)>,
}

thread_local! {
    static SCRIPT: RefCell<Script> = RefCell::default();
}

fn emit_script(ts: i64, out: &mut Emitter) -> Option<Update> {
    SCRIPT.with(|s| {
        let s = s.borrow();
        let (records, updates) = s.output.as_ref()?;
        if ts == 0 {
            for r in records {
                out.emit(r.ts, &r.key, &r.value);
            }
        }
        Some(usize::try_from(ts).ok().and_then(|i| updates.get(i).cloned()).unwrap_or(Update::Unchanged))
    })
}

struct Plain;

impl Operator for Plain {
    fn open(_: &OpenContext) -> Result<Self, Error> {
        Ok(Plain)
    }
    fn process(&mut self, r: RawRecord<'_>, out: &mut Emitter) -> Result<(), Error> {
        if emit_script(r.ts, out).is_none() {
            SCRIPT.with(|s| s.borrow_mut().seen.push((r.ts, r.key.to_vec(), r.value.to_vec(), None)));
            out.emit(r.ts, r.key, r.value);
        }
        Ok(())
    }
}

struct Keyed;

impl KeyedOperator for Keyed {
    fn open(_: &OpenContext) -> Result<Self, Error> {
        Ok(Keyed)
    }
    fn process(&mut self, r: RawRecord<'_>, state: &mut KeyState<'_>, out: &mut Emitter) -> Result<(), Error> {
        match emit_script(r.ts, out) {
            Some(Update::Unchanged) => {}
            Some(Update::Set(s)) => state.set(&s),
            Some(Update::Cleared) => state.clear(),
            None => {
                SCRIPT.with(|s| s.borrow_mut().seen.push((r.ts, r.key.to_vec(), r.value.to_vec(), state.get().map(<[u8]>::to_vec))));
                out.emit(r.ts, r.key, r.value);
            }
        }
        Ok(())
    }
}

fn take_seen() -> Vec<Seen> {
    SCRIPT.with(|s| std::mem::take(&mut s.borrow_mut().seen))
}

fn set_output(v: Option<&Vector>) {
    SCRIPT.with(|s| s.borrow_mut().output = v.map(|v| (v.records.clone(), v.updates.clone())));
}

/// An output batch of `records` (the SDK's layout, written here independently).
fn output_of(records: &[(i64, &[u8], &[u8])], keys: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for (ts, key, value) in records {
        body.extend_from_slice(&ts.to_le_bytes());
        body.extend_from_slice(&(key.len() as u32).to_le_bytes());
        body.extend_from_slice(key);
        body.extend_from_slice(&(value.len() as u32).to_le_bytes());
        body.extend_from_slice(value);
    }
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out.extend(std::iter::repeat_n(0u8, keys)); // state updates: unchanged
    out
}

#[test]
fn plain_input_vectors() {
    weir_sdk_operator::plain_open::<Plain>(ctx()).unwrap();
    set_output(None);
    for v in vectors(Layout::Plain) {
        let out = weir_sdk_operator::plain_process::<Plain>(&v.bytes).unwrap();
        let want: Vec<_> = v.records.iter().map(|r| (r.ts, r.key.clone(), r.value.clone(), None)).collect();
        assert_eq!(take_seen(), want, "{}", v.name);
        let mut echo = (v.bytes.len() as u32).to_le_bytes().to_vec();
        echo.extend_from_slice(&v.bytes);
        assert_eq!(out, echo, "{}: echoed", v.name);
        // A batch may end after any whole record; a prefix ending inside one is bad input.
        let mut ends = vec![0];
        for r in &v.records {
            ends.push(ends[ends.len() - 1] + 16 + r.key.len() + r.value.len());
        }
        for cut in (0..v.bytes.len()).filter(|c| !ends.contains(c)) {
            let got = weir_sdk_operator::plain_process::<Plain>(&v.bytes[..cut]);
            assert!(matches!(got, Err(Error::BadInput(_))), "{} cut at {cut}: {got:?}", v.name);
        }
        take_seen();
    }
}

#[test]
fn keyed_input_vectors() {
    weir_sdk_operator::keyed_open::<Keyed>(ctx()).unwrap();
    set_output(None);
    for v in vectors(Layout::Keyed) {
        let out = weir_sdk_operator::keyed_process::<Keyed>(&v.bytes).unwrap();
        let want: Vec<_> = v
            .keyed_records
            .iter()
            .map(|r| {
                let k = &v.keys[r.key_index as usize];
                (r.ts, k.key.clone(), r.value.clone(), k.state.clone())
            })
            .collect();
        assert_eq!(take_seen(), want, "{}", v.name);
        let records: Vec<(i64, &[u8], &[u8])> = want.iter().map(|(ts, k, val, _)| (*ts, &k[..], &val[..])).collect();
        assert_eq!(out, output_of(&records, v.keys.len()), "{}: echoed", v.name);
        for cut in 0..v.bytes.len() {
            let got = weir_sdk_operator::keyed_process::<Keyed>(&v.bytes[..cut]);
            assert!(matches!(got, Err(Error::BadInput(_))), "{} cut at {cut}: {got:?}", v.name);
        }
        take_seen();
    }
}

#[test]
fn output_vectors() {
    weir_sdk_operator::plain_open::<Plain>(ctx()).unwrap();
    let input = output_of(&[(0, b"", b"")], 0)[4..].to_vec(); // one record, ts 0
    for v in vectors(Layout::Output) {
        set_output(Some(&v));
        assert_eq!(weir_sdk_operator::plain_process::<Plain>(&input).unwrap(), v.bytes, "{}", v.name);
    }
}

#[test]
fn keyed_output_vectors() {
    weir_sdk_operator::keyed_open::<Keyed>(ctx()).unwrap();
    for v in vectors(Layout::KeyedOutput) {
        // One key per update, each with a state no update sets and one record (ts = its
        // index), so every update shows.
        let n = v.updates.len() as u32;
        let mut input = n.to_le_bytes().to_vec();
        for i in 0..n {
            for field in [format!("k{i}").as_bytes(), b"old state"] {
                input.extend_from_slice(&(field.len() as u32).to_le_bytes());
                input.extend_from_slice(field);
            }
        }
        input.extend_from_slice(&n.to_le_bytes());
        for i in 0..n {
            input.extend_from_slice(&i.to_le_bytes());
            input.extend_from_slice(&i64::from(i).to_le_bytes());
            input.extend_from_slice(&0u32.to_le_bytes());
        }
        set_output(Some(&v));
        assert_eq!(weir_sdk_operator::keyed_process::<Keyed>(&input).unwrap(), v.bytes, "{}", v.name);
    }
}
