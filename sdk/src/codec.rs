//! The job SDK's side of the batch layouts of `operator.process` (see `wit/dataflow.wit`):
//! the layout itself (reader, field writers, tags) is `weir-batch`, shared with the host
//! and `weir-sdk-operator`; here are what only this SDK needs on top of it: the output
//! buffer [`Out`] the writers write into, records with their raw bytes, and postcard
//! encoding and decoding of keys, values and states, with fast paths for integers and
//! strings.
//!
//! Nothing here knows about WIT bindings, so the whole codec is unit-tested natively.
//! Every read is bounds-checked and reports what it was reading and where, because a
//! malformed batch must become `operator-error::bad-input`, never a panic.

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_batch::{Reader, STATE_CLEARED, STATE_SET, STATE_UNCHANGED, WriteBuf};

use crate::error::OpError;

/// The output batch under construction.
///
/// The buffer is kept zero-filled up to its length and `len` counts the bytes written,
/// so a field is written with one bounds check and a store into an already initialized
/// slice. Compared with `Vec::extend_from_slice` per field this saves the capacity
/// check plus the load and store of the vector's length in memory, which in Wasm is a
/// large part of a record's cost (fuel is charged per instruction). Growing
/// (`memory.fill` of the new part) is rare: the buffer starts at the previous batch's
/// size. No `unsafe`: the zero fill is what makes plain slice writes possible.
pub(crate) struct Out {
    buf: Vec<u8>,
    len: usize,
}

impl Out {
    /// An empty output with `capacity` zeroed bytes ready.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Out { buf: vec![0; capacity], len: 0 }
    }

    /// The written bytes.
    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Forgets the written bytes, keeping the buffer. Bytes past `len` need not be
    /// zero: they are only ever overwritten, never read.
    #[inline(always)]
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends a copy of the bytes written since offset `at` (one `memory.copy`); used
    /// when a record's key and value are the same bytes.
    #[inline(always)]
    pub(crate) fn repeat_since(&mut self, at: usize) {
        let n = self.len.saturating_sub(at);
        if self.buf.len() - self.len < n {
            self.grow(n);
        }
        let end = self.len;
        if end + n <= self.buf.len() {
            self.buf.copy_within(at..end, end);
            self.len = end + n;
        }
    }

    /// The finished batch.
    pub(crate) fn into_vec(mut self) -> Vec<u8> {
        self.buf.truncate(self.len);
        self.buf
    }

    /// Makes room for `n` more bytes past `len`.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, n: usize) {
        let need = self.len.saturating_add(n);
        let size = need.max(self.buf.len().saturating_mul(2)).max(256);
        self.buf.resize(size, 0);
    }

    /// A window of exactly `N` writable bytes at the end, without advancing.
    #[inline(always)]
    fn window<const N: usize>(&mut self) -> &mut [u8; N] {
        if self.buf.len() - self.len < N {
            self.grow(N);
        }
        // Cannot fail after `grow`; the fallback keeps this panic-free without `unsafe`.
        match self.buf.get_mut(self.len..).and_then(|w| w.first_chunk_mut::<N>()) {
            Some(w) => w,
            None => unreachable_window(),
        }
    }

    /// Appends the first `n` bytes of the 8 in `word` (`n <= 8`): a fixed 8-byte store
    /// of which only `n` bytes count, so variable-length varints need no loop or call.
    #[inline(always)]
    fn put_partial(&mut self, word: u64, n: usize) {
        *self.window::<8>() = word.to_le_bytes();
        self.len += n;
    }

    /// Appends what `write` puts at the front of an `N`-byte window (it returns how
    /// many bytes): one capacity check for several fields, e.g. a whole small state.
    #[inline(always)]
    pub(crate) fn put_window<const N: usize>(&mut self, write: impl FnOnce(&mut [u8; N]) -> usize) {
        let n = write(self.window::<N>()).min(N);
        self.len += n;
    }

    /// Appends a postcard varint.
    #[inline(always)]
    pub(crate) fn put_varint(&mut self, v: u64) {
        match varint_word(v) {
            Some((word, n)) => self.put_partial(word, n),
            None => self.put_varint_long(v),
        }
    }

    /// Varints of 9 and 10 bytes (values of 2^56 and more).
    #[cold]
    #[inline(never)]
    fn put_varint_long(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.put([(v as u8) | 0x80]);
            v >>= 7;
        }
        self.put([v as u8]);
    }

    /// Appends `len: u32` and the varint of `v`: the prefix and up to 8 varint bytes in
    /// one 12-byte store.
    #[inline(always)]
    pub(crate) fn put_varint_prefixed(&mut self, v: u64) {
        match varint_word(v) {
            Some((word, n)) => {
                let w = self.window::<12>();
                let (prefix, body) = w.split_at_mut(4);
                prefix.copy_from_slice(&(n as u32).to_le_bytes());
                body.copy_from_slice(&word.to_le_bytes());
                self.len += 4 + n;
            }
            None => {
                let at = weir_batch::begin_len_prefixed(self);
                self.put_varint_long(v);
                weir_batch::end_len_prefixed(self, at);
            }
        }
    }
}

/// The layout's writers (`weir_batch::push_*`) write into the output through these.
impl WriteBuf for Out {
    #[inline(always)]
    fn written(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn put<const N: usize>(&mut self, bytes: [u8; N]) {
        *self.window::<N>() = bytes;
        self.len += N;
    }

    /// Keys and values are mostly a few bytes: up to 16 are copied with fixed-size
    /// loads and stores, since a variable-length copy is a `memory.copy`, which wasmtime
    /// runs as a call out of the guest (measured: that call was a tenth of a windowed
    /// job's time). Longer ones take one `memory.copy`.
    #[inline(always)]
    fn put_slice(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        if n <= 16 {
            copy_small(self.window::<16>(), bytes);
            self.len += n;
            return;
        }
        if self.buf.len() - self.len < n {
            self.grow(n);
        }
        if let Some(dst) = self.buf.get_mut(self.len..self.len + n) {
            dst.copy_from_slice(bytes);
            self.len += n;
        }
    }

    #[inline(always)]
    fn patch(&mut self, at: usize, bytes: [u8; 4]) {
        // Slots come from `begin_len_prefixed` on this output: always inside it.
        if let Some(slot) = self.buf.get_mut(at..at + 4) {
            slot.copy_from_slice(&bytes);
        }
    }
}

/// Copies `src` (at most 16 bytes) to the front of `dst` as two overlapping
/// fixed-size chunks: the first and the last 8, 4, 2 or 1 bytes.
#[inline(always)]
fn copy_small(dst: &mut [u8; 16], src: &[u8]) {
    let n = src.len();
    macro_rules! two_chunks {
        ($w:literal) => {
            if let (Some(head), Some(tail)) = (src.first_chunk::<$w>(), src.last_chunk::<$w>()) {
                if let Some(d) = dst.first_chunk_mut::<$w>() {
                    *d = *head;
                }
                if let Some(d) = dst.get_mut(n - $w..n).and_then(|d| d.first_chunk_mut::<$w>()) {
                    *d = *tail;
                }
            }
        };
    }
    if n >= 8 {
        two_chunks!(8);
    } else if n >= 4 {
        two_chunks!(4);
    } else if n >= 2 {
        two_chunks!(2);
    } else if let Some(&b) = src.first() {
        dst[0] = b;
    }
}

#[cold]
#[inline(never)]
fn unreachable_window() -> ! {
    panic!("internal: output window missing after growing")
}

/// The postcard varint of `v` as the low bytes of a little-endian word plus its length,
/// for values below 2^56 (at most 8 varint bytes), computed without a loop: the 7-bit
/// groups are spread into bytes with three shift-and-mask steps and the continuation
/// bits are set on all bytes but the last.
#[inline(always)]
pub(crate) fn varint_word(v: u64) -> Option<(u64, usize)> {
    if v < 0x80 {
        return Some((v, 1));
    }
    if v >= 1 << 56 {
        return None;
    }
    let mut x = v;
    x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x00ff_ffff_f000_0000) << 4);
    x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x0fff_c000_0fff_c000) << 2);
    x = (x & 0x007f_007f_007f_007f) | ((x & 0x3f80_3f80_3f80_3f80) << 1);
    let bits = 64 - v.leading_zeros() as usize;
    let n = bits.div_ceil(7);
    let cont = 0x8080_8080_8080_8080u64 & ((1u64 << (8 * (n - 1))) - 1);
    Some((x | cont, n))
}

/// The value of a postcard varint spanning exactly `bytes` of 1 to 8 bytes, without a
/// loop (the inverse of [`varint_word`]); `None` if the bytes are not exactly one
/// varint, or it is longer, which then takes the general path.
#[inline(always)]
pub(crate) fn varint_exact(bytes: &[u8]) -> Option<u64> {
    let n = bytes.len();
    if let [b] = bytes {
        return (*b < 0x80).then_some(u64::from(*b));
    }
    if n == 0 || n > 8 {
        return None;
    }
    let mut word = [0u8; 8];
    word.get_mut(..n)?.copy_from_slice(bytes);
    let x = u64::from_le_bytes(word);
    // Continuation bits on every byte but the last, none on the last.
    let cont = 0x8080_8080_8080_8080u64 & ((1u64 << (8 * (n - 1))) - 1);
    if x & 0x8080_8080_8080_8080 != cont {
        return None;
    }
    Some(unspread(x & 0x7f7f_7f7f_7f7f_7f7f))
}

/// The 7-bit groups of a varint's bytes (continuation bits cleared) packed into one
/// number: the inverse of the spreading in [`varint_word`].
#[inline(always)]
pub(crate) fn unspread(mut x: u64) -> u64 {
    x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4)
}

/// The postcard varint at the front of `bytes`: its value and the bytes after it, or
/// `None` if there is none. For state made of several varints (window tables), read once
/// per key and batch: with 8 bytes at hand the varint's end is found and it is decoded
/// without a loop, as in [`varint_exact`].
#[inline(always)]
pub(crate) fn take_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    if let Some(word) = bytes.first_chunk::<8>() {
        let x = u64::from_le_bytes(*word);
        let stops = !x & 0x8080_8080_8080_8080;
        if stops != 0 {
            // The first byte without a continuation bit is the varint's last.
            let n = (stops.trailing_zeros() / 8) as usize + 1;
            let keep = u64::MAX >> (64 - 8 * n);
            return Some((unspread(x & keep & 0x7f7f_7f7f_7f7f_7f7f), bytes.get(n..)?));
        }
    }
    take_varint_short(bytes)
}

/// [`take_varint`] within the last 8 bytes (e.g. the last field of a state), or for
/// varints of 9 and 10 bytes: byte by byte.
#[inline]
fn take_varint_short(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            // The tenth byte may only hold the top bit of a u64.
            return (i < 9 || b <= 1).then(|| bytes.get(i + 1..)).flatten().map(|rest| (v, rest));
        }
    }
    None
}

/// postcard's zigzag encoding of signed integers.
#[inline(always)]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline(always)]
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

// Error constructors are cold and out of line so the hot decode paths stay small
// enough to inline; in Wasm every call that is not inlined costs noticeably.

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

/// Reads the next record of an unkeyed batch, with its raw bytes.
#[inline(always)]
pub(crate) fn read_record<'a>(r: &mut Reader<'a>) -> Result<Record<'a>, OpError> {
    let start = r.rest();
    let rec = r.record()?;
    let raw = start.get(..start.len() - r.remaining()).unwrap_or(&[]);
    Ok(Record { ts: rec.ts, key: rec.key, value: rec.value, raw })
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

/// True if `T` is one of the integer types postcard writes as a single varint (`u64`,
/// `u32`, `usize`, `i64`, `i32`); a constant after monomorphization.
#[inline(always)]
pub(crate) fn is_varint<T: 'static>() -> bool {
    fast::is_varint::<T>()
}

/// The varint value postcard writes for `value` if its type is one of [`is_varint`]'s.
#[inline(always)]
pub(crate) fn as_varint<T: 'static>(value: &T) -> Option<u64> {
    fast::as_varint(value)
}

/// The value of type `T` (one of [`is_varint`]'s) whose varint value is `v`, if in range.
#[inline(always)]
pub(crate) fn from_varint<T: 'static>(v: u64) -> Option<T> {
    fast::from_varint(v)
}

/// Decodes the postcard value at the front of `bytes`: the value and the bytes after it
/// (fields of a state made of several values).
#[inline(always)]
pub(crate) fn take<'b, T: DeserializeOwned + 'static>(bytes: &'b [u8], what: &'static str) -> Result<(T, &'b [u8]), OpError> {
    if let Some(taken) = fast::take::<T>(bytes) {
        return Ok(taken);
    }
    postcard::take_from_bytes::<T>(bytes).map_err(|e| undecodable::<T>(what, bytes.len(), e))
}

/// postcard output flavor that appends to the output batch, so encoding a value costs
/// no allocation of its own.
struct Append<'a>(&'a mut Out);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.put_slice(data);
        Ok(())
    }

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put([data]);
        Ok(())
    }

    #[inline]
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends the postcard encoding of `value` (no length prefix).
#[inline(always)]
pub(crate) fn encode_into<T: Serialize + 'static>(out: &mut Out, value: &T) -> postcard::Result<()> {
    if fast::encode(out, value) {
        return Ok(());
    }
    postcard::serialize_with_flavor(value, Append(out))
}

/// postcard's encoding of integer and string types, bypassing serde.
///
/// Integer keys, values and states are the common case (counts, sums, ids), and so are
/// strings (words); in Wasm the generic serde path costs several calls per value that
/// the optimizer does not inline. The type test is on `TypeId`, which is a constant
/// after monomorphization, so each instantiation keeps exactly one branch. The
/// encodings are postcard's: varint for unsigned, zigzag varint for signed integers,
/// varint length and UTF-8 bytes for strings.
mod fast {
    use core::any::{Any, TypeId};

    use weir_batch::WriteBuf;

    use super::{Out, take_varint, unzigzag, varint_exact, zigzag};

    /// Moves `a` into a `B` if they are the same type.
    #[inline(always)]
    fn cast<A: 'static, B: 'static>(a: A) -> Option<B> {
        let mut a = Some(a);
        (&mut a as &mut dyn Any).downcast_mut::<Option<B>>().and_then(Option::take)
    }

    /// True for the integer types postcard writes as one varint.
    #[inline(always)]
    pub(super) fn is_varint<T: 'static>() -> bool {
        let id = TypeId::of::<T>();
        id == TypeId::of::<u64>()
            || id == TypeId::of::<u32>()
            || id == TypeId::of::<usize>()
            || id == TypeId::of::<i64>()
            || id == TypeId::of::<i32>()
    }

    /// The integer of a fast integer type from its varint's value.
    #[inline(always)]
    pub(super) fn from_varint<T: 'static>(v: u64) -> Option<T> {
        let id = TypeId::of::<T>();
        if id == TypeId::of::<u64>() {
            cast(v)
        } else if id == TypeId::of::<u32>() {
            cast(u32::try_from(v).ok()?)
        } else if id == TypeId::of::<usize>() {
            cast(usize::try_from(v).ok()?)
        } else if id == TypeId::of::<i64>() {
            cast(unzigzag(v))
        } else if id == TypeId::of::<i32>() {
            cast(i32::try_from(unzigzag(v)).ok()?)
        } else {
            None
        }
    }

    #[inline(always)]
    pub(super) fn decode<T: 'static>(bytes: &[u8]) -> Option<T> {
        if !is_varint::<T>() {
            return None;
        }
        from_varint(varint_exact(bytes)?)
    }

    /// A fast integer type's value at the front of `bytes`, and the bytes after it.
    #[inline(always)]
    pub(super) fn take<T: 'static>(bytes: &[u8]) -> Option<(T, &[u8])> {
        if !is_varint::<T>() {
            return None;
        }
        let (v, rest) = take_varint(bytes)?;
        Some((from_varint(v)?, rest))
    }

    /// The integer of a fast integer type, as the unsigned value postcard writes.
    #[inline(always)]
    pub(super) fn as_varint<T: 'static>(value: &T) -> Option<u64> {
        let any = value as &dyn Any;
        if let Some(v) = any.downcast_ref::<u64>() {
            Some(*v)
        } else if let Some(v) = any.downcast_ref::<u32>() {
            Some(u64::from(*v))
        } else if let Some(v) = any.downcast_ref::<usize>() {
            Some(*v as u64)
        } else if let Some(v) = any.downcast_ref::<i64>() {
            Some(zigzag(*v))
        } else {
            any.downcast_ref::<i32>().map(|v| zigzag(i64::from(*v)))
        }
    }

    /// The text of a string value (`String` or `&'static str`).
    #[inline(always)]
    pub(super) fn as_str<T: 'static>(value: &T) -> Option<&str> {
        let any = value as &dyn Any;
        if let Some(s) = any.downcast_ref::<String>() { Some(s) } else { any.downcast_ref::<&'static str>().copied() }
    }

    /// Appends `len: u32` and `value` if it is one of the fast types.
    #[inline(always)]
    pub(super) fn encode_prefixed<T: 'static>(out: &mut Out, value: &T) -> bool {
        if let Some(v) = as_varint(value) {
            out.put_varint_prefixed(v);
        } else if let Some(s) = as_str(value) {
            super::put_str_prefixed(out, s);
        } else {
            return false;
        }
        true
    }

    /// Appends `value` if it is one of the fast types.
    #[inline(always)]
    pub(super) fn encode<T: 'static>(out: &mut Out, value: &T) -> bool {
        if let Some(v) = as_varint(value) {
            out.put_varint(v);
        } else if let Some(s) = as_str(value) {
            out.put_varint(s.len() as u64);
            out.put_slice(s.as_bytes());
        } else {
            return false;
        }
        true
    }
}

/// Appends `len: u32` and the postcard encoding of the string `s` (varint length and
/// bytes), as `String` and `&str` values encode.
#[inline(always)]
pub(crate) fn put_str_prefixed(out: &mut Out, s: &str) {
    let at = weir_batch::begin_len_prefixed(out);
    out.put_varint(s.len() as u64);
    out.put_slice(s.as_bytes());
    weir_batch::end_len_prefixed(out, at);
}

/// Appends `len: u32` and the postcard encoding of `value`.
#[inline(always)]
pub(crate) fn put_encoded<T: Serialize + 'static>(out: &mut Out, value: &T) -> Result<(), OpError> {
    if fast::encode_prefixed(out, value) {
        return Ok(());
    }
    let at = weir_batch::begin_len_prefixed(out);
    if let Err(e) = encode_into(out, value) {
        return Err(encode_error::<T>(e));
    }
    weir_batch::end_len_prefixed(out, at);
    Ok(())
}

#[cold]
#[inline(never)]
pub(crate) fn encode_error<T: ?Sized>(e: postcard::Error) -> OpError {
    OpError::Failed(format!("cannot encode {}: {e}", core::any::type_name::<T>()))
}

/// Appends the state update of one key of a keyed batch.
#[cfg(test)]
pub(crate) fn put_state_update<S: Serialize + 'static>(out: &mut Out, changed: bool, state: Option<&S>) -> Result<(), OpError> {
    put_state_update_with(out, changed, state, put_encoded)
}

/// Appends the state update of one key of a keyed batch; `put` appends a set state,
/// length-prefixed ([`put_encoded`], or an operator's own codec).
#[inline(always)]
pub(crate) fn put_state_update_with<S>(
    out: &mut Out,
    changed: bool,
    state: Option<&S>,
    put: impl FnOnce(&mut Out, &S) -> Result<(), OpError>,
) -> Result<(), OpError> {
    // The tags are the layout's; a set state is encoded straight into the output.
    match (changed, state) {
        (false, _) => weir_batch::push_u8(out, STATE_UNCHANGED),
        (true, Some(s)) => {
            weir_batch::push_u8(out, STATE_SET);
            put(out, s)?;
        }
        (true, None) => weir_batch::push_u8(out, STATE_CLEARED),
    }
    Ok(())
}

/// Builders for batches, used by the tests here and by the SDK's own operator tests to
/// play the host's part, with the layout's own writers and readers.
#[cfg(test)]
pub(crate) mod build {
    use weir_batch::StateUpdate;

    /// An unkeyed batch of `(ts, key, value)` records.
    pub(crate) fn records(records: &[(i64, &[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (ts, key, value) in records {
            weir_batch::push_record(&mut out, *ts, key, value);
        }
        out
    }

    /// A keyed batch: keys with optional state, then `(key-index, ts, value)` records.
    pub(crate) fn keyed(keys: &[(&[u8], Option<&[u8]>)], records: &[(u32, i64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        weir_batch::push_key_count(&mut out, keys.len() as u32);
        for (key, state) in keys {
            weir_batch::push_key_with_state(&mut out, key, *state);
        }
        weir_batch::push_keyed_records_header(&mut out, records.len() as u32);
        for (index, ts, value) in records {
            weir_batch::push_keyed_record(&mut out, *index, *ts, value);
        }
        out
    }

    /// An `on-timer` input: keys with optional state, then `(key-index, ts, domain)`
    /// fired timers.
    pub(crate) fn timer_input(keys: &[(&[u8], Option<&[u8]>)], timers: &[(u32, i64, weir_batch::TimeDomain)]) -> Vec<u8> {
        let mut out = Vec::new();
        weir_batch::push_key_count(&mut out, keys.len() as u32);
        for (key, state) in keys {
            weir_batch::push_key_with_state(&mut out, key, *state);
        }
        weir_batch::push_timers_header(&mut out, timers.len() as u32);
        for &(key_index, ts, domain) in timers {
            weir_batch::push_fired_timer(&mut out, weir_batch::FiredTimer { key_index, ts, domain });
        }
        out
    }

    /// A keyed output with `keys` keys, parsed and checked by the host's parser.
    #[derive(Debug)]
    pub(crate) struct KeyedOutput {
        pub records: Vec<(i64, Vec<u8>, Vec<u8>)>,
        /// Per key: `None` unchanged, `Some(None)` cleared, `Some(Some(bytes))` set.
        pub states: Vec<Option<Option<Vec<u8>>>>,
        pub timers: Vec<weir_batch::TimerChange>,
        /// True if the output ends with a timer-change trailer at all.
        pub has_trailer: bool,
        /// Side-output records: (side output index, records).
        pub side: Vec<(u32, OwnedRecords)>,
    }

    /// Records as `(ts, key, value)`.
    pub(crate) type OwnedRecords = Vec<(i64, Vec<u8>, Vec<u8>)>;

    /// The records of a plain batch.
    fn owned(batch: &[u8]) -> OwnedRecords {
        weir_batch::records(batch).map(|rec| rec.expect("record")).map(|rec| (rec.ts, rec.key.to_vec(), rec.value.to_vec())).collect()
    }

    /// The side-output records of an output: (side output index, records).
    pub(crate) fn side_records(buf: &[u8], keys: Option<usize>) -> Vec<(u32, OwnedRecords)> {
        let o = weir_batch::parse_output(buf, keys).expect("a valid output");
        o.side.iter().map(|s| (s.output, owned(s.records))).collect()
    }

    pub(crate) fn parse_keyed_output(buf: &[u8], keys: usize) -> KeyedOutput {
        let o = weir_batch::parse_output(buf, Some(keys)).expect("a valid keyed output");
        let records =
            weir_batch::records(o.records).map(|rec| rec.expect("record")).map(|rec| (rec.ts, rec.key.to_vec(), rec.value.to_vec())).collect();
        let states = o
            .states
            .iter()
            .map(|u| match u {
                StateUpdate::Unchanged => None,
                StateUpdate::Set(s) => Some(Some(s.to_vec())),
                StateUpdate::Cleared => Some(None),
            })
            .collect();
        let mut r = weir_batch::Reader::new(buf);
        r.len_prefixed("records").expect("records");
        for index in 0..keys {
            r.state_update(index).expect("state update");
        }
        let side = o.side.iter().map(|s| (s.output, owned(s.records))).collect();
        KeyedOutput { records, states, timers: o.timers, has_trailer: !r.is_empty(), side }
    }

    /// An output batch split into its records and the state-update tail.
    pub(crate) struct Output {
        pub records: Vec<(i64, Vec<u8>, Vec<u8>)>,
        pub tail: Vec<u8>,
    }

    pub(crate) fn parse_output(buf: &[u8]) -> Output {
        let mut r = weir_batch::Reader::new(buf);
        let body = r.len_prefixed("records").expect("records");
        let records = weir_batch::records(body).map(|rec| rec.expect("record")).map(|rec| (rec.ts, rec.key.to_vec(), rec.value.to_vec())).collect();
        Output { records, tail: r.rest().to_vec() }
    }

    /// Parses the state-update tail of a keyed output.
    pub(crate) fn parse_updates(tail: &[u8]) -> Vec<Option<Option<Vec<u8>>>> {
        let mut r = weir_batch::Reader::new(tail);
        let mut updates = Vec::new();
        while !r.is_empty() {
            updates.push(match r.state_update(updates.len()).expect("state update") {
                StateUpdate::Unchanged => None,
                StateUpdate::Set(s) => Some(Some(s.to_vec())),
                StateUpdate::Cleared => Some(None),
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
    fn small_slices_are_appended_exactly() {
        let src: Vec<u8> = (1..=40).collect();
        for n in 0..=src.len() {
            let mut out = Out::with_capacity(0);
            out.put([0xAA]);
            out.put_slice(&src[..n]);
            out.put([0xBB]);
            let mut want = vec![0xAA];
            want.extend_from_slice(&src[..n]);
            want.push(0xBB);
            assert_eq!(out.as_slice(), &want[..], "{n} bytes");
        }
    }

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
        weir_batch::push_u32(&mut batch, u32::MAX);
        let mut r = Reader::new(&batch);
        assert!(matches!(read_record(&mut r), Err(OpError::BadInput(_))));
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
                // A tiny first buffer also exercises growing mid-value.
                let mut ours = Out::with_capacity(1);
                ours.put([0xaa]);
                encode_into(&mut ours, v).unwrap();
                assert_eq!(&ours.as_slice()[1..], &reference[..], "{v:?}");
                assert_eq!(&decode::<T>(&reference, "v").unwrap(), v);
                let mut prefixed = Out::with_capacity(0);
                put_encoded(&mut prefixed, v).unwrap();
                let prefixed = prefixed.into_vec();
                assert_eq!(prefixed[..4], (reference.len() as u32).to_le_bytes());
                assert_eq!(&prefixed[4..], &reference[..]);
            }
        }
        // Every varint length, at both ends of its range.
        let mut edges = vec![0u64, u64::MAX];
        for bits in (7..64).step_by(7) {
            edges.extend([(1u64 << bits) - 1, 1u64 << bits, (1u64 << bits) + 1]);
        }
        check(&edges);
        for v in &edges {
            assert!(fast::decode::<u64>(&postcard::to_allocvec(v).unwrap()).is_some() || *v >= 1 << 56);
        }
        check(&["".to_string(), "a".to_string(), "é".repeat(100)]);
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
    fn take_varint_reads_what_postcard_writes() {
        let mut values = vec![0u64, 1, 127, 128, 300, u64::MAX];
        for bits in (7..64).step_by(7) {
            values.extend([(1u64 << bits) - 1, 1u64 << bits]);
        }
        for v in values {
            let enc = postcard::to_allocvec(&v).unwrap();
            // With nothing, a little and a lot after it: the short and the word path.
            for tail in [0, 1, 7, 8] {
                let mut bytes = enc.clone();
                bytes.extend(core::iter::repeat_n(0xaa, tail));
                let (got, rest) = take_varint(&bytes).unwrap();
                assert_eq!((got, rest.len()), (v, tail), "{v} with {tail} bytes after");
            }
            for cut in 0..enc.len() {
                assert!(take_varint(&enc[..cut]).is_none(), "{v} cut at {cut}");
            }
            let (got, rest) = take::<u64>(&enc, "v").unwrap();
            assert_eq!((got, rest.len()), (v, 0));
        }
        let mut overlong = vec![0xff; 9];
        overlong.push(0x02);
        assert!(take_varint(&overlong).is_none(), "more than 64 bits");
        assert!(take_varint(&[0x80; 11]).is_none());
        assert!(take::<u32>(&postcard::to_allocvec(&u64::MAX).unwrap(), "v").is_err());
        let (s, rest) = take::<String>(&[2, b'h', b'i', 9], "v").unwrap();
        assert_eq!((s.as_str(), rest), ("hi", &[9u8][..]));
        let negative = postcard::to_allocvec(&-1_700_000_000_000i64).unwrap();
        assert_eq!(take::<i64>(&negative, "v").unwrap(), (-1_700_000_000_000, &[][..]));
    }

    #[test]
    fn output_lengths_are_patched() {
        let mut out = Out::with_capacity(3);
        let at = weir_batch::begin_output(&mut out);
        weir_batch::push_ts(&mut out, 1);
        put_encoded(&mut out, &()).unwrap();
        put_encoded(&mut out, &"hi".to_string()).unwrap();
        weir_batch::end_records(&mut out, at);
        put_state_update(&mut out, true, Some(&3u64)).unwrap();
        put_state_update::<u64>(&mut out, false, None).unwrap();
        put_state_update::<u64>(&mut out, true, None).unwrap();
        let parsed = parse_output(&out.into_vec());
        assert_eq!(parsed.records, vec![(1, vec![], vec![2, b'h', b'i'])]);
        assert_eq!(parse_updates(&parsed.tail), vec![Some(Some(vec![3])), None, Some(None)]);
    }
}
