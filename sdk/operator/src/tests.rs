//! Codec tests: batches in and out, state updates, postcard helpers.

#![allow(clippy::unwrap_used)]

use weir_batch::Reader;

use crate::codec::{Emitter, KeyState};
use crate::*;

fn rec(ts: i64, k: &[u8], v: &[u8]) -> Vec<u8> {
    let mut e = Emitter::with_capacity(0);
    e.emit(ts, k, v);
    e.buf.split_off(4)
}

#[test]
fn records_round_trip() {
    let mut batch = rec(-5, b"k", b"hello");
    batch.extend(rec(7, b"", b""));
    let mut r = Reader::new(&batch);
    assert_eq!(r.record().unwrap(), RawRecord { ts: -5, key: b"k", value: b"hello" });
    assert_eq!(r.record().unwrap(), RawRecord { ts: 7, key: b"", value: b"" });
    assert!(r.is_empty());
    let mut trunc = Reader::new(&batch[..10]);
    assert!(matches!(trunc.record().map_err(Error::from), Err(Error::BadInput(_))));
}

#[test]
fn emit_parts_and_with() {
    let mut e = Emitter::with_capacity(0);
    e.emit_parts(1, b"a", &[b"v:", b"x"]);
    e.emit_with(2, b"", |b| b.extend_from_slice(b"42"));
    e.finish_records();
    let mut expect = rec(1, b"a", b"v:x");
    expect.extend(rec(2, b"", b"42"));
    assert_eq!(&e.buf[4..], &expect[..]);
    assert_eq!(u32::from_le_bytes(e.buf[..4].try_into().unwrap()) as usize, expect.len());
}

#[test]
fn key_state_updates() {
    let mut out = Vec::new();
    KeyState::new(Some(b"x")).write_update(&mut out);
    let mut s = KeyState::new(None);
    assert_eq!(s.get_u64().unwrap(), 0);
    s.set_u64(3);
    s.set_u64(4);
    s.write_update(&mut out);
    let mut c = KeyState::new(Some(b"y"));
    c.clear();
    c.write_update(&mut out);
    let mut expect = vec![0u8, 1, 8, 0, 0, 0];
    expect.extend(4u64.to_le_bytes());
    expect.push(2);
    assert_eq!(out, expect);
}

#[test]
fn postcard() {
    assert_eq!(postcard_str(b"\x03abc").unwrap(), "abc");
    assert!(postcard_str(b"\x05abc").is_err());
    assert_eq!(postcard_varint(&[0xac, 0x02]).unwrap().0, 300);
}
