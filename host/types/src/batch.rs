//! The flat record-batch layout, specified in `wit/dataflow.wit` on `operator.process`.
//!
//! One batch is one byte buffer. All integers are little-endian. A record is
//! `ts: i64, key_len: u32, key, value_len: u32, value`; a plain batch is records back
//! to back. Keyed operators get the batch grouped by key, each distinct key once with
//! its current value state, and give back one state update per key after their output
//! records. Readers here check every length against the buffer: batches come from
//! guests and peers, neither of which is trusted.

use thiserror::Error;

/// Marks an absent state in the keyed input layout.
pub const NO_STATE: u32 = u32::MAX;

/// A batch that does not follow the layout.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    /// A length or count points past the end of the buffer.
    #[error("{what} at byte {offset} needs {need} bytes but only {have} remain")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where in the buffer.
        offset: usize,
        /// Bytes the field claims.
        need: u64,
        /// Bytes left in the buffer.
        have: usize,
    },
    /// A key index refers to no key of the batch.
    #[error("record {record} refers to key {index} but the batch has {keys} keys")]
    BadKeyIndex {
        /// Record number in the batch.
        record: usize,
        /// The index it carries.
        index: u32,
        /// Keys in the batch.
        keys: usize,
    },
    /// A state update has an unknown tag.
    #[error("state update {index} has unknown tag {tag}")]
    BadStateTag {
        /// Which update.
        index: usize,
        /// The tag found.
        tag: u8,
    },
    /// Bytes are left over after the last field.
    #[error("{extra} unexpected trailing bytes after {what}")]
    Trailing {
        /// What was complete.
        what: &'static str,
        /// How many bytes remain.
        extra: usize,
    },
}

/// One record, borrowed from its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Event timestamp (milliseconds; 0 when the source has none).
    pub ts: i64,
    /// Key bytes; empty for unkeyed streams.
    pub key: &'a [u8],
    /// Value bytes.
    pub value: &'a [u8],
}

/// A bounds-checked cursor over a byte buffer.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Take `n` bytes.
    #[inline]
    pub fn bytes(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], BatchError> {
        let have = self.remaining();
        if n > have as u64 {
            return Err(BatchError::Truncated { what, offset: self.pos, need: n, have });
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    /// Read a little-endian u32.
    #[inline]
    pub fn u32(&mut self, what: &'static str) -> Result<u32, BatchError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Read a little-endian i64.
    #[inline]
    pub fn i64(&mut self, what: &'static str) -> Result<i64, BatchError> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    /// Read a u8.
    #[inline]
    pub fn u8(&mut self, what: &'static str) -> Result<u8, BatchError> {
        Ok(self.bytes(1, what)?[0])
    }

    /// Read a u32 length followed by that many bytes.
    #[inline]
    pub fn len_prefixed(&mut self, what: &'static str) -> Result<&'a [u8], BatchError> {
        let n = self.u32(what)?;
        self.bytes(u64::from(n), what)
    }

    /// Read one record.
    #[inline]
    pub fn record(&mut self) -> Result<Record<'a>, BatchError> {
        let ts = self.i64("record timestamp")?;
        let key = self.len_prefixed("record key")?;
        let value = self.len_prefixed("record value")?;
        Ok(Record { ts, key, value })
    }
}

/// Iterates the records of a plain batch, stopping at the first malformed one.
pub struct Records<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, BatchError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.cursor.remaining() == 0 {
            return None;
        }
        let r = self.cursor.record();
        if r.is_err() {
            // Fuse: nothing after a bad length can be trusted.
            self.cursor.pos = self.cursor.buf.len();
        }
        Some(r)
    }
}

/// The records of a plain batch.
pub fn records(buf: &[u8]) -> Records<'_> {
    Records { cursor: Cursor::new(buf) }
}

/// Checks a plain batch and counts its records.
pub fn validate(buf: &[u8]) -> Result<usize, BatchError> {
    let mut n = 0;
    for r in records(buf) {
        r?;
        n += 1;
    }
    Ok(n)
}

/// Appends one record to a plain batch.
#[inline]
pub fn push_record(buf: &mut Vec<u8>, ts: i64, key: &[u8], value: &[u8]) {
    buf.reserve(16 + key.len() + value.len());
    buf.extend_from_slice(&ts.to_le_bytes());
    push_len_prefixed(buf, key);
    push_len_prefixed(buf, value);
}

/// Appends a u32 length and the bytes.
#[inline]
pub fn push_len_prefixed(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// Appends the key section of a keyed input batch: the key count, then each key with
/// its state (`None` for no state). Follow with [`push_keyed_records_header`] and one
/// [`push_keyed_record`] per record.
pub fn push_key_count(buf: &mut Vec<u8>, count: u32) {
    buf.extend_from_slice(&count.to_le_bytes());
}

/// Appends one key of the key section with its current state.
#[inline]
pub fn push_key_with_state(buf: &mut Vec<u8>, key: &[u8], state: Option<&[u8]>) {
    push_len_prefixed(buf, key);
    match state {
        Some(s) => push_len_prefixed(buf, s),
        None => buf.extend_from_slice(&NO_STATE.to_le_bytes()),
    }
}

/// Appends the record count of a keyed input batch.
pub fn push_keyed_records_header(buf: &mut Vec<u8>, count: u32) {
    buf.extend_from_slice(&count.to_le_bytes());
}

/// Appends one record of a keyed input batch.
#[inline]
pub fn push_keyed_record(buf: &mut Vec<u8>, key_index: u32, ts: i64, value: &[u8]) {
    buf.extend_from_slice(&key_index.to_le_bytes());
    buf.extend_from_slice(&ts.to_le_bytes());
    push_len_prefixed(buf, value);
}

/// What a keyed operator did to one key's value state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateUpdate<'a> {
    /// Left as it was.
    Unchanged,
    /// Replaced by these bytes.
    Set(&'a [u8]),
    /// Removed.
    Cleared,
}

/// An operator's output batch, checked.
#[derive(Debug)]
pub struct Output<'a> {
    /// The emitted records, a valid plain batch.
    pub records: &'a [u8],
    /// Number of records in `records`.
    pub record_count: usize,
    /// One update per input key, for keyed operators; empty otherwise.
    pub states: Vec<StateUpdate<'a>>,
}

/// Parses and checks an operator's output. `keys` is the number of keys of a keyed
/// input (so that many state updates must follow), or `None` for unkeyed operators.
pub fn parse_output(buf: &[u8], keys: Option<usize>) -> Result<Output<'_>, BatchError> {
    let mut c = Cursor::new(buf);
    let records = c.len_prefixed("output records")?;
    let record_count = validate(records)?;
    let mut states = Vec::new();
    if let Some(n) = keys {
        states.reserve(n);
        for index in 0..n {
            let update = match c.u8("state update tag")? {
                0 => StateUpdate::Unchanged,
                1 => StateUpdate::Set(c.len_prefixed("state update")?),
                2 => StateUpdate::Cleared,
                tag => return Err(BatchError::BadStateTag { index, tag }),
            };
            states.push(update);
        }
    }
    if c.remaining() != 0 {
        return Err(BatchError::Trailing { what: "operator output", extra: c.remaining() });
    }
    Ok(Output { records, record_count, states })
}

/// A keyed input batch, parsed (used by tests and by guests written against this crate).
#[derive(Debug, PartialEq, Eq)]
pub struct KeyedInput<'a> {
    /// Distinct keys with their states.
    pub keys: Vec<(&'a [u8], Option<&'a [u8]>)>,
    /// Records as (key index, ts, value).
    pub records: Vec<(u32, i64, &'a [u8])>,
}

/// Parses a keyed input batch.
pub fn parse_keyed_input(buf: &[u8]) -> Result<KeyedInput<'_>, BatchError> {
    let mut c = Cursor::new(buf);
    let n = c.u32("key count")?;
    let mut keys = Vec::with_capacity((n as usize).min(c.remaining() / 8));
    for _ in 0..n {
        let key = c.len_prefixed("key")?;
        let len = c.u32("state length")?;
        let state = if len == NO_STATE { None } else { Some(c.bytes(u64::from(len), "state")?) };
        keys.push((key, state));
    }
    let m = c.u32("record count")?;
    let mut recs = Vec::with_capacity((m as usize).min(c.remaining() / 16));
    for record in 0..m as usize {
        let index = c.u32("key index")?;
        if index as usize >= keys.len() {
            return Err(BatchError::BadKeyIndex { record, index, keys: keys.len() });
        }
        let ts = c.i64("record timestamp")?;
        let value = c.len_prefixed("record value")?;
        recs.push((index, ts, value));
    }
    if c.remaining() != 0 {
        return Err(BatchError::Trailing { what: "keyed input", extra: c.remaining() });
    }
    Ok(KeyedInput { keys, records: recs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut b = Vec::new();
        push_record(&mut b, 7, b"k", b"value");
        push_record(&mut b, -1, b"", b"");
        let got: Vec<_> = records(&b).collect::<Result<_, _>>().expect("valid");
        assert_eq!(got, vec![Record { ts: 7, key: b"k", value: b"value" }, Record { ts: -1, key: b"", value: b"" },]);
        assert_eq!(validate(&b), Ok(2));
    }

    #[test]
    fn truncated_and_lying_lengths_are_errors_not_panics() {
        let mut b = Vec::new();
        push_record(&mut b, 1, b"key", b"value");
        for cut in 0..b.len() {
            if cut == 0 {
                continue;
            }
            assert!(validate(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut lying = b.clone();
        lying[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(validate(&lying), Err(BatchError::Truncated { .. })));
    }

    #[test]
    fn output_checks_states_and_trailing_bytes() {
        let mut recs = Vec::new();
        push_record(&mut recs, 0, b"a", b"1");
        let mut out = Vec::new();
        push_len_prefixed(&mut out, &recs);
        out.extend_from_slice(&[0, 1, 2, 0, 0, 0, b'h', b'i', 2]);
        let o = parse_output(&out, Some(3)).expect("valid");
        assert_eq!(o.record_count, 1);
        assert_eq!(o.states, vec![StateUpdate::Unchanged, StateUpdate::Set(b"hi"), StateUpdate::Cleared]);
        assert!(matches!(parse_output(&out, Some(4)), Err(BatchError::Truncated { .. })));
        assert!(matches!(parse_output(&out, Some(2)), Err(BatchError::Trailing { .. })));
        assert!(matches!(parse_output(&out, None), Err(BatchError::Trailing { .. })));
        let mut bad = out.clone();
        bad[4 + recs.len()] = 9;
        assert_eq!(parse_output(&bad, Some(3)).err(), Some(BatchError::BadStateTag { index: 0, tag: 9 }));
    }

    #[test]
    fn keyed_input_round_trip_and_bad_index() {
        let mut b = Vec::new();
        push_key_count(&mut b, 2);
        push_key_with_state(&mut b, b"x", None);
        push_key_with_state(&mut b, b"y", Some(b"s"));
        push_keyed_records_header(&mut b, 2);
        push_keyed_record(&mut b, 1, 5, b"v1");
        push_keyed_record(&mut b, 0, 6, b"v2");
        let k = parse_keyed_input(&b).expect("valid");
        assert_eq!(k.keys, vec![(&b"x"[..], None), (&b"y"[..], Some(&b"s"[..]))]);
        assert_eq!(k.records, vec![(1, 5, &b"v1"[..]), (0, 6, &b"v2"[..])]);
        let mut bad = b.clone();
        let at = b.len() - 4 - 2 - 8 - 4;
        bad[at..at + 4].copy_from_slice(&7u32.to_le_bytes());
        assert!(matches!(parse_keyed_input(&bad), Err(BatchError::BadKeyIndex { index: 7, .. })));
    }
}
