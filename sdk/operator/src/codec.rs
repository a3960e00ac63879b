//! Output batches of `operator.process`, written into one buffer with the layout's
//! writers (`weir-batch`, shared with the host and `weir-sdk`), and the value state of
//! the key being processed.

use weir_batch::StateUpdate;

use crate::Error;

/// Collects the output records of one batch, written straight into the output buffer.
pub struct Emitter {
    pub(crate) buf: Vec<u8>,
    /// Offset of the `records-len` slot.
    records_at: usize,
}

impl Emitter {
    pub(crate) fn with_capacity(cap: usize) -> Self {
        let mut buf = Vec::with_capacity(cap.max(64));
        let records_at = weir_batch::begin_output(&mut buf);
        Emitter { buf, records_at }
    }

    /// Emits one record.
    #[inline]
    pub fn emit(&mut self, ts: i64, key: &[u8], value: &[u8]) {
        weir_batch::push_record(&mut self.buf, ts, key, value);
    }

    /// Emits one record whose value is the concatenation of `value_parts` (no
    /// intermediate allocation).
    #[inline]
    pub fn emit_parts(&mut self, ts: i64, key: &[u8], value_parts: &[&[u8]]) {
        weir_batch::push_record_parts(&mut self.buf, ts, key, value_parts);
    }

    /// Emits a record with the given key and a value written by `write` into the buffer
    /// (e.g. with `std::io::Write` or `extend_from_slice`).
    #[inline]
    pub fn emit_with(&mut self, ts: i64, key: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        weir_batch::push_record_with(&mut self.buf, ts, key, write);
    }

    /// Patches the records-length prefix.
    pub(crate) fn finish_records(&mut self) {
        weir_batch::end_records(&mut self.buf, self.records_at);
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
        let update = match &self.update {
            None => StateUpdate::Unchanged,
            // Clearing a key that had no state leaves it unchanged.
            Some(None) if self.original.is_none() => StateUpdate::Unchanged,
            Some(None) => StateUpdate::Cleared,
            Some(Some(b)) => StateUpdate::Set(b),
        };
        weir_batch::push_state_update(out, update);
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
