//! The batch layouts of `operator.process` (see `wit/dataflow.wit`): decoding input
//! batches in place and writing output batches into one buffer.

use crate::Error;

/// One record as it crosses the boundary: opaque key and value bytes and a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Event timestamp.
    pub ts: i64,
    /// Key bytes (empty before any key-by).
    pub key: &'a [u8],
    /// Value bytes.
    pub value: &'a [u8],
}

/// Collects the output records of one batch, written straight into the output buffer.
pub struct Emitter {
    pub(crate) buf: Vec<u8>,
}

impl Emitter {
    pub(crate) fn with_capacity(cap: usize) -> Self {
        let mut buf = Vec::with_capacity(cap.max(64));
        buf.extend_from_slice(&[0; 4]);
        Emitter { buf }
    }

    /// Emits one record.
    #[inline]
    pub fn emit(&mut self, ts: i64, key: &[u8], value: &[u8]) {
        self.emit_parts(ts, key, &[value]);
    }

    /// Emits one record whose value is the concatenation of `value_parts` (no
    /// intermediate allocation).
    #[inline]
    pub fn emit_parts(&mut self, ts: i64, key: &[u8], value_parts: &[&[u8]]) {
        let vlen: usize = value_parts.iter().map(|p| p.len()).sum();
        let b = &mut self.buf;
        b.reserve(16 + key.len() + vlen);
        b.extend_from_slice(&ts.to_le_bytes());
        b.extend_from_slice(&(key.len() as u32).to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(&(vlen as u32).to_le_bytes());
        for p in value_parts {
            b.extend_from_slice(p);
        }
    }

    /// Emits a record with the given key and a value written by `write` into the buffer
    /// (e.g. with `std::io::Write` or `extend_from_slice`).
    #[inline]
    pub fn emit_with(&mut self, ts: i64, key: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        let b = &mut self.buf;
        b.extend_from_slice(&ts.to_le_bytes());
        b.extend_from_slice(&(key.len() as u32).to_le_bytes());
        b.extend_from_slice(key);
        let at = b.len();
        b.extend_from_slice(&[0; 4]);
        write(b);
        let vlen = (b.len() - at - 4) as u32;
        b[at..at + 4].copy_from_slice(&vlen.to_le_bytes());
    }

    /// Patches the records-length prefix; returns the buffer.
    pub(crate) fn finish_records(&mut self) {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
    }
}

/// The value state of one key during a keyed batch.
#[derive(Debug)]
pub struct KeyState<'a> {
    original: Option<&'a [u8]>,
    /// `None`: unchanged; `Some(None)`: cleared; `Some(Some(b))`: set to `b`.
    update: Option<Option<Vec<u8>>>,
}

impl<'a> KeyState<'a> {
    pub(crate) fn new(original: Option<&'a [u8]>) -> Self {
        KeyState { original, update: None }
    }

    /// The current state bytes of the key, if any.
    pub fn get(&self) -> Option<&[u8]> {
        match &self.update {
            None => self.original,
            Some(u) => u.as_deref(),
        }
    }

    /// Replaces the state.
    pub fn set(&mut self, bytes: &[u8]) {
        match &mut self.update {
            Some(Some(v)) => {
                v.clear();
                v.extend_from_slice(bytes);
            }
            _ => self.update = Some(Some(bytes.to_vec())),
        }
    }

    /// Removes the state.
    pub fn clear(&mut self) {
        self.update = Some(None);
    }

    /// The state as a little-endian u64 (0 when absent); fails on another length.
    pub fn get_u64(&self) -> Result<u64, Error> {
        match self.get() {
            None => Ok(0),
            Some(b) => b.try_into().map(u64::from_le_bytes).map_err(|_| Error::bad_input(format!("state of {} bytes is not a u64", b.len()))),
        }
    }

    /// Sets the state to a little-endian u64.
    pub fn set_u64(&mut self, v: u64) {
        self.set(&v.to_le_bytes())
    }

    pub(crate) fn write_update(&self, out: &mut Vec<u8>) {
        match &self.update {
            None => out.push(0),
            // Clearing a key that had no state leaves it unchanged.
            Some(None) if self.original.is_none() => out.push(0),
            Some(None) => out.push(2),
            Some(Some(b)) => {
                out.push(1);
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

/// A bounds-checked little-endian reader over a batch.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub(crate) fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| Error::bad_input(format!("batch ends inside {what} at byte {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline]
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, Error> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline]
    pub(crate) fn i64(&mut self, what: &str) -> Result<i64, Error> {
        let b = self.bytes(8, what)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    #[inline]
    pub(crate) fn record(&mut self) -> Result<RawRecord<'a>, Error> {
        let ts = self.i64("a timestamp")?;
        let klen = self.u32("a key length")? as usize;
        let key = self.bytes(klen, "a key")?;
        let vlen = self.u32("a value length")? as usize;
        let value = self.bytes(vlen, "a value")?;
        Ok(RawRecord { ts, key, value })
    }
}

/// Decodes a postcard string (LEB128 length, UTF-8 bytes), as the host's file-lines
/// source writes each line.
pub fn postcard_str(bytes: &[u8]) -> Result<&str, Error> {
    let (len, rest) = postcard_varint(bytes)?;
    let len = usize::try_from(len).map_err(|_| Error::bad_input("string length overflows"))?;
    let s = rest.get(..len).ok_or_else(|| Error::bad_input("postcard string is truncated"))?;
    core::str::from_utf8(s).map_err(|_| Error::bad_input("postcard string is not UTF-8"))
}

/// Decodes a postcard varint (LEB128 u64), as the host's generator source writes each
/// number; returns it and the bytes after it.
pub fn postcard_varint(bytes: &[u8]) -> Result<(u64, &[u8]), Error> {
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, &bytes[i + 1..]));
        }
    }
    Err(Error::bad_input("bad postcard varint"))
}
