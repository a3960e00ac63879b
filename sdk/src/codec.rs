//! The flat batch layouts of `operator.process` (see `wit/dataflow.wit`), read in place
//! and written straight into the output buffer.
//!
//! Nothing here knows about WIT bindings, so the whole codec is unit-tested natively.
//! Every read is bounds-checked and reports what it was reading and where, because a
//! malformed batch must become `operator-error::bad-input`, never a panic.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::OpError;

/// `state-len` value meaning "this key has no state yet".
pub(crate) const NO_STATE: u32 = u32::MAX;

/// State update tags appended after the records of a keyed operator's output.
pub(crate) const STATE_UNCHANGED: u8 = 0;
pub(crate) const STATE_SET: u8 = 1;
pub(crate) const STATE_CLEARED: u8 = 2;

/// A cursor over an input batch that hands out borrowed slices of it.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// True once every byte has been consumed.
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Bytes not consumed yet.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Current offset, for error messages and for slicing whole records.
    #[inline(always)]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The bytes between `start` and the current position.
    #[inline(always)]
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.pos).unwrap_or(&[])
    }

    #[inline(always)]
    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], OpError> {
        match self.buf.get(self.pos..).and_then(|rest| rest.first_chunk::<N>()) {
            Some(bytes) => {
                self.pos += N;
                Ok(*bytes)
            }
            None => Err(truncated(what, self.pos)),
        }
    }

    #[inline(always)]
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, OpError> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }

    #[inline(always)]
    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, OpError> {
        self.array::<8>(what).map(i64::from_le_bytes)
    }

    /// `len` bytes, borrowed from the batch.
    #[inline(always)]
    pub(crate) fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], OpError> {
        let end = self.pos.checked_add(len);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(bytes) => {
                self.pos += len;
                Ok(bytes)
            }
            None => Err(past_end(what, len, self.pos, self.buf.len())),
        }
    }

    /// A `u32` length followed by that many bytes.
    #[inline(always)]
    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], OpError> {
        let len = self.u32(what)?;
        self.take(len as usize, what)
    }

    /// Fails if bytes are left over: a batch with trailing garbage was not written by a
    /// host that agrees with us on the layout.
    pub(crate) fn finish(&self) -> Result<(), OpError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(OpError::BadInput(format!(
                "{} trailing bytes after the batch at offset {}",
                self.remaining(),
                self.pos
            )))
        }
    }
}

// Error constructors are cold and out of line so the hot read/decode paths stay small
// enough to inline; in Wasm every call that is not inlined costs noticeably.

#[cold]
#[inline(never)]
fn truncated(what: &'static str, at: usize) -> OpError {
    OpError::BadInput(format!("batch truncated while reading {what} at offset {at}"))
}

#[cold]
#[inline(never)]
fn past_end(what: &'static str, len: usize, at: usize, total: usize) -> OpError {
    OpError::BadInput(format!("{what} of {len} bytes at offset {at} runs past the end of the {total}-byte batch"))
}

#[cold]
#[inline(never)]
fn trailing_bytes<T>(what: &'static str, left: usize) -> OpError {
    OpError::BadInput(format!("{what}: {left} bytes left after decoding {}", core::any::type_name::<T>()))
}

#[cold]
#[inline(never)]
fn undecodable<T>(what: &'static str, len: usize, e: postcard::Error) -> OpError {
    OpError::BadInput(format!("{what}: cannot decode {} from {len} bytes: {e}", core::any::type_name::<T>()))
}

/// One record of an unkeyed input batch, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub ts: i64,
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// The whole encoded record, for operators that pass records through unchanged.
    pub raw: &'a [u8],
}

/// Reads the next record of an unkeyed batch (`ts, key-len, key, value-len, value`).
#[inline(always)]
pub(crate) fn read_record<'a>(r: &mut Reader<'a>) -> Result<Record<'a>, OpError> {
    let start = r.pos();
    // Timestamp and key length in one bounds check.
    let head = r.array::<12>("record header")?;
    let (ts, key_len) = head.split_at(8);
    let ts = i64::from_le_bytes(ts.try_into().unwrap_or_default());
    let key_len = u32::from_le_bytes(key_len.try_into().unwrap_or_default());
    let key = r.take(key_len as usize, "record key")?;
    let value = r.bytes("record value")?;
    Ok(Record { ts, key, value, raw: r.since(start) })
}

/// The header of a keyed input batch: the batch's distinct keys with their value state.
/// The reader is left at the first record.
pub(crate) struct KeyTable;

impl KeyTable {
    /// Reads `key-count` and the key entries, handing each `(key, state bytes)` to `each`.
    /// Returns the number of keys.
    #[inline]
    pub(crate) fn read<'a>(
        r: &mut Reader<'a>,
        mut each: impl FnMut(&'a [u8], Option<&'a [u8]>) -> Result<(), OpError>,
    ) -> Result<usize, OpError> {
        let count = r.u32("key count")? as usize;
        for _ in 0..count {
            let key = r.bytes("key")?;
            let state_len = r.u32("state length")?;
            let state = if state_len == NO_STATE { None } else { Some(r.take(state_len as usize, "state")?) };
            each(key, state)?;
        }
        Ok(count)
    }
}

/// One record of a keyed input batch (`key-index, ts, value-len, value`).
#[inline(always)]
pub(crate) fn read_keyed_record<'a>(r: &mut Reader<'a>) -> Result<(usize, i64, &'a [u8]), OpError> {
    let index = r.u32("key index")? as usize;
    let ts = r.i64("record timestamp")?;
    let value = r.bytes("record value")?;
    Ok((index, ts, value))
}

/// Decodes a postcard value that must span all of `bytes`.
#[inline(always)]
pub(crate) fn decode<T: DeserializeOwned + 'static>(bytes: &[u8], what: &'static str) -> Result<T, OpError> {
    if let Some(value) = fast::decode::<T>(bytes) {
        return Ok(value);
    }
    // Also the error path of the fast types: postcard names what is wrong.
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(trailing_bytes::<T>(what, rest.len())),
        Err(e) => Err(undecodable::<T>(what, bytes.len(), e)),
    }
}

/// postcard output flavor that appends to a `Vec<u8>` we already own, so encoding a
/// value into the output batch costs no allocation of its own.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends the postcard encoding of `value` (no length prefix).
#[inline(always)]
pub(crate) fn encode_into<T: Serialize + 'static>(out: &mut Vec<u8>, value: &T) -> postcard::Result<()> {
    if fast::encode(out, value) {
        return Ok(());
    }
    postcard::serialize_with_flavor(value, Append(out))
}

/// postcard's encoding of integer types, bypassing serde.
///
/// Integer keys, values and states are the common case (counts, sums, ids), and in Wasm
/// the generic serde path costs several calls per value that the optimizer does not
/// inline. The type test is on `TypeId`, which is a constant after monomorphization, so
/// each instantiation keeps exactly one branch. The encodings are postcard's: varint for
/// unsigned, zigzag varint for signed integers.
mod fast {
    use core::any::{Any, TypeId};

    /// Moves `a` into a `B` if they are the same type.
    #[inline(always)]
    fn cast<A: 'static, B: 'static>(a: A) -> Option<B> {
        let mut a = Some(a);
        (&mut a as &mut dyn Any).downcast_mut::<Option<B>>().and_then(Option::take)
    }

    /// A varint spanning exactly `bytes`; `None` for anything postcard might judge
    /// differently, which then takes the regular path.
    #[inline(always)]
    fn varint(bytes: &[u8]) -> Option<u64> {
        let mut out = 0u64;
        for (i, &b) in bytes.iter().enumerate().take(10) {
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return (i + 1 == bytes.len() && (i < 9 || b <= 1)).then_some(out);
            }
        }
        None
    }

    #[inline(always)]
    fn unzigzag(v: u64) -> i64 {
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    #[inline(always)]
    pub(super) fn decode<T: 'static>(bytes: &[u8]) -> Option<T> {
        let id = TypeId::of::<T>();
        if id == TypeId::of::<u64>() {
            cast(varint(bytes)?)
        } else if id == TypeId::of::<u32>() {
            cast(u32::try_from(varint(bytes)?).ok()?)
        } else if id == TypeId::of::<usize>() {
            cast(usize::try_from(varint(bytes)?).ok()?)
        } else if id == TypeId::of::<i64>() {
            cast(unzigzag(varint(bytes)?))
        } else if id == TypeId::of::<i32>() {
            cast(i32::try_from(unzigzag(varint(bytes)?)).ok()?)
        } else {
            None
        }
    }

    /// Appends a varint: a fixed 10-byte copy (a couple of stores, where a
    /// variable-length copy would be a call) cut back to the encoded length.
    #[inline(always)]
    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        if v < 0x80 {
            out.push(v as u8);
            return;
        }
        let mut buf = [0u8; 10];
        let mut len = 0;
        for slot in buf.iter_mut() {
            len += 1;
            if v < 0x80 {
                *slot = v as u8;
                break;
            }
            *slot = (v as u8) | 0x80;
            v >>= 7;
        }
        let start = out.len();
        out.extend_from_slice(&buf);
        out.truncate(start + len);
    }

    #[inline(always)]
    fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    /// Appends `len: u32` and the varint of `v`: one fixed 14-byte copy cut back to size.
    #[inline(always)]
    fn put_varint_prefixed(out: &mut Vec<u8>, mut v: u64) {
        let mut buf = [0u8; 14];
        let (prefix, body) = buf.split_at_mut(4);
        let mut len = 0u8;
        for slot in body.iter_mut() {
            len += 1;
            if v < 0x80 {
                *slot = v as u8;
                break;
            }
            *slot = (v as u8) | 0x80;
            v >>= 7;
        }
        prefix.copy_from_slice(&u32::from(len).to_le_bytes());
        let start = out.len();
        out.extend_from_slice(&buf);
        out.truncate(start + 4 + usize::from(len));
    }

    /// Appends `len: u32` and `value` if it is one of the fast types.
    #[inline(always)]
    pub(super) fn encode_prefixed<T: 'static>(out: &mut Vec<u8>, value: &T) -> bool {
        let any = value as &dyn Any;
        if let Some(v) = any.downcast_ref::<u64>() {
            put_varint_prefixed(out, *v);
        } else if let Some(v) = any.downcast_ref::<u32>() {
            put_varint_prefixed(out, u64::from(*v));
        } else if let Some(v) = any.downcast_ref::<usize>() {
            put_varint_prefixed(out, *v as u64);
        } else if let Some(v) = any.downcast_ref::<i64>() {
            put_varint_prefixed(out, zigzag(*v));
        } else if let Some(v) = any.downcast_ref::<i32>() {
            put_varint_prefixed(out, zigzag(i64::from(*v)));
        } else {
            return false;
        }
        true
    }

    /// Appends `value` if it is one of the fast types.
    #[inline(always)]
    pub(super) fn encode<T: 'static>(out: &mut Vec<u8>, value: &T) -> bool {
        let any = value as &dyn Any;
        if let Some(v) = any.downcast_ref::<u64>() {
            put_varint(out, *v);
        } else if let Some(v) = any.downcast_ref::<u32>() {
            put_varint(out, u64::from(*v));
        } else if let Some(v) = any.downcast_ref::<usize>() {
            put_varint(out, *v as u64);
        } else if let Some(v) = any.downcast_ref::<i64>() {
            put_varint(out, zigzag(*v));
        } else if let Some(v) = any.downcast_ref::<i32>() {
            put_varint(out, zigzag(i64::from(*v)));
        } else {
            return false;
        }
        true
    }
}

/// Appends a `u32` little-endian.
#[inline(always)]
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends `len: u32` and `bytes`.
#[inline(always)]
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), OpError> {
    put_u32(out, len_u32(bytes.len())?);
    out.extend_from_slice(bytes);
    Ok(())
}

/// Reserves a `u32` length slot; fill it with [`patch_len`] once the bytes are written.
#[inline(always)]
pub(crate) fn len_slot(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    at
}

/// Writes the number of bytes appended since the slot at `at` into that slot.
#[inline(always)]
pub(crate) fn patch_len(out: &mut [u8], at: usize) -> Result<(), OpError> {
    let len = len_u32(out.len().saturating_sub(at + 4))?;
    match out.get_mut(at..at + 4) {
        Some(slot) => {
            slot.copy_from_slice(&len.to_le_bytes());
            Ok(())
        }
        None => Err(bad_slot()),
    }
}

#[inline(always)]
pub(crate) fn len_u32(len: usize) -> Result<u32, OpError> {
    match u32::try_from(len) {
        Ok(len) => Ok(len),
        Err(_) => Err(too_long(len)),
    }
}

#[cold]
#[inline(never)]
fn bad_slot() -> OpError {
    OpError::Failed("internal: length slot outside the output batch".into())
}

#[cold]
#[inline(never)]
fn too_long(len: usize) -> OpError {
    OpError::Failed(format!("output of {len} bytes does not fit a u32 length"))
}

/// Appends `len: u32` and the postcard encoding of `value`.
#[inline(always)]
pub(crate) fn put_encoded<T: Serialize + 'static>(out: &mut Vec<u8>, value: &T) -> Result<(), OpError> {
    if fast::encode_prefixed(out, value) {
        return Ok(());
    }
    let at = len_slot(out);
    if let Err(e) = encode_into(out, value) {
        return Err(encode_error::<T>(e));
    }
    patch_len(out, at)
}

#[cold]
#[inline(never)]
pub(crate) fn encode_error<T: ?Sized>(e: postcard::Error) -> OpError {
    OpError::Failed(format!("cannot encode {}: {e}", core::any::type_name::<T>()))
}

/// Starts an output batch: the `records-len` placeholder.
#[inline]
pub(crate) fn begin_output(out: &mut Vec<u8>) -> usize {
    len_slot(out)
}

/// Ends the records part of an output batch by patching `records-len`.
#[inline]
pub(crate) fn end_records(out: &mut [u8], at: usize) -> Result<(), OpError> {
    patch_len(out, at)
}

/// Appends the state update of one key of a keyed batch.
#[inline(always)]
pub(crate) fn put_state_update<S: Serialize + 'static>(
    out: &mut Vec<u8>,
    changed: bool,
    state: Option<&S>,
) -> Result<(), OpError> {
    match (changed, state) {
        (false, _) => out.push(STATE_UNCHANGED),
        (true, Some(s)) => {
            out.push(STATE_SET);
            put_encoded(out, s)?;
        }
        (true, None) => out.push(STATE_CLEARED),
    }
    Ok(())
}

/// Builders for batches, used by the tests here and by the SDK's own operator tests to
/// play the host's part.
#[cfg(test)]
pub(crate) mod build {
    use super::*;

    /// An unkeyed batch of `(ts, key, value)` records.
    pub(crate) fn records(records: &[(i64, &[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (ts, key, value) in records {
            out.extend_from_slice(&ts.to_le_bytes());
            put_bytes(&mut out, key).expect("small");
            put_bytes(&mut out, value).expect("small");
        }
        out
    }

    /// A keyed batch: keys with optional state, then `(key-index, ts, value)` records.
    pub(crate) fn keyed(keys: &[(&[u8], Option<&[u8]>)], records: &[(u32, i64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(&mut out, keys.len() as u32);
        for (key, state) in keys {
            put_bytes(&mut out, key).expect("small");
            match state {
                Some(s) => put_bytes(&mut out, s).expect("small"),
                None => put_u32(&mut out, NO_STATE),
            }
        }
        put_u32(&mut out, records.len() as u32);
        for (index, ts, value) in records {
            put_u32(&mut out, *index);
            out.extend_from_slice(&ts.to_le_bytes());
            put_bytes(&mut out, value).expect("small");
        }
        out
    }

    /// An output batch split into its records and the state-update tail.
    pub(crate) struct Output {
        pub records: Vec<(i64, Vec<u8>, Vec<u8>)>,
        pub tail: Vec<u8>,
    }

    pub(crate) fn parse_output(buf: &[u8]) -> Output {
        let mut r = Reader::new(buf);
        let len = r.u32("records-len").expect("records-len") as usize;
        let body = r.take(len, "records").expect("records");
        let tail = buf[4 + len..].to_vec();
        let mut rr = Reader::new(body);
        let mut records = Vec::new();
        while !rr.is_empty() {
            let rec = read_record(&mut rr).expect("record");
            records.push((rec.ts, rec.key.to_vec(), rec.value.to_vec()));
        }
        Output { records, tail }
    }

    /// Parses the state-update tail of a keyed output.
    pub(crate) fn parse_updates(tail: &[u8]) -> Vec<Option<Option<Vec<u8>>>> {
        let mut r = Reader::new(tail);
        let mut updates = Vec::new();
        while !r.is_empty() {
            let tag = r.take(1, "tag").expect("tag")[0];
            updates.push(match tag {
                STATE_UNCHANGED => None,
                STATE_SET => Some(Some(r.bytes("state").expect("state").to_vec())),
                STATE_CLEARED => Some(None),
                other => panic!("bad tag {other}"),
            });
        }
        updates
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::build::*;
    use super::*;

    #[test]
    fn reads_records_in_place() {
        let batch = records(&[(7, b"k", b"v1"), (-1, b"", b"")]);
        let mut r = Reader::new(&batch);
        let a = read_record(&mut r).unwrap();
        assert_eq!((a.ts, a.key, a.value), (7, &b"k"[..], &b"v1"[..]));
        assert_eq!(a.raw.len(), 8 + 4 + 1 + 4 + 2);
        let b = read_record(&mut r).unwrap();
        assert_eq!((b.ts, b.key, b.value), (-1, &b""[..], &b""[..]));
        assert!(r.is_empty());
    }

    #[test]
    fn truncated_record_is_bad_input() {
        let batch = records(&[(7, b"key", b"value")]);
        for cut in 0..batch.len() {
            let mut r = Reader::new(&batch[..cut]);
            if cut == 0 {
                assert!(r.is_empty());
                continue;
            }
            assert!(matches!(read_record(&mut r), Err(OpError::BadInput(_))), "cut at {cut}");
        }
    }

    #[test]
    fn huge_length_does_not_overflow() {
        let mut batch = 0i64.to_le_bytes().to_vec();
        put_u32(&mut batch, u32::MAX);
        let mut r = Reader::new(&batch);
        assert!(matches!(read_record(&mut r), Err(OpError::BadInput(_))));
    }

    #[test]
    fn reads_key_table() {
        let batch = keyed(&[(b"a", None), (b"bb", Some(b"\x05"))], &[(1, 3, b"x")]);
        let mut r = Reader::new(&batch);
        let mut seen = Vec::new();
        let n = KeyTable::read(&mut r, |k, s| {
            seen.push((k.to_vec(), s.map(<[u8]>::to_vec)));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(seen, vec![(b"a".to_vec(), None), (b"bb".to_vec(), Some(vec![5]))]);
        assert_eq!(r.u32("count").unwrap(), 1);
        assert_eq!(read_keyed_record(&mut r).unwrap(), (1, 3, &b"x"[..]));
        r.finish().unwrap();
    }

    #[test]
    fn decode_rejects_trailing_bytes_and_garbage() {
        assert_eq!(decode::<u64>(&[5], "v").unwrap(), 5);
        assert!(matches!(decode::<u64>(&[5, 0], "v"), Err(OpError::BadInput(_))));
        assert!(matches!(decode::<String>(&[9, b'a'], "v"), Err(OpError::BadInput(_))));
        assert!(matches!(decode::<String>(&[2, 0xff, 0xfe], "v"), Err(OpError::BadInput(_))));
    }

    #[test]
    fn fast_paths_match_postcard() {
        fn check<T>(values: &[T])
        where
            T: Serialize + DeserializeOwned + PartialEq + core::fmt::Debug + 'static,
        {
            for v in values {
                let reference = postcard::to_allocvec(v).unwrap();
                let mut ours = vec![0xaa];
                encode_into(&mut ours, v).unwrap();
                assert_eq!(&ours[1..], &reference[..], "{v:?}");
                assert_eq!(&decode::<T>(&reference, "v").unwrap(), v);
                assert!(fast::decode::<T>(&reference).is_some());
                let mut prefixed = Vec::new();
                put_encoded(&mut prefixed, v).unwrap();
                assert_eq!(prefixed[..4], (reference.len() as u32).to_le_bytes());
                assert_eq!(&prefixed[4..], &reference[..]);
            }
        }
        check(&[0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX]);
        check(&[0u32, 127, 128, u32::MAX]);
        check(&[0usize, 128, usize::MAX]);
        check(&[0i64, -1, 1, -64, 64, i64::MIN, i64::MAX]);
        check(&[0i32, -1, 63, -65, i32::MIN, i32::MAX]);
        // over-long and out-of-range encodings fall back to postcard's verdict
        assert!(decode::<u32>(&postcard::to_allocvec(&u64::MAX).unwrap(), "v").is_err());
        assert!(decode::<u64>(&[0xff; 11], "v").is_err());
        assert!(decode::<u64>(&[0x80], "v").is_err());
        assert!(decode::<u64>(&[], "v").is_err());
    }

    #[test]
    fn output_lengths_are_patched() {
        let mut out = Vec::new();
        let at = begin_output(&mut out);
        out.extend_from_slice(&1i64.to_le_bytes());
        put_encoded(&mut out, &()).unwrap();
        put_encoded(&mut out, &"hi".to_string()).unwrap();
        end_records(&mut out, at).unwrap();
        put_state_update(&mut out, true, Some(&3u64)).unwrap();
        put_state_update::<u64>(&mut out, false, None).unwrap();
        put_state_update::<u64>(&mut out, true, None).unwrap();
        let parsed = parse_output(&out);
        assert_eq!(parsed.records, vec![(1, vec![], vec![2, b'h', b'i'])]);
        assert_eq!(parse_updates(&parsed.tail), vec![Some(Some(vec![3])), None, Some(None)]);
    }
}
