//! The state file: one subtask's keyed state at one checkpoint.
//!
//! ```text
//! magic "WRST" | version u16 LE (1) | kind u8 (0 = full, 1 = delta)
//! entry*       : key len u32 LE | key | tag u8 (0 = put, 1 = delete) | put only: value len u32 LE | value
//! trailer      : entry count u64 LE | xxh3-64 (u64 LE) of every byte before it
//! ```
//!
//! A full file holds every key of the subtask's key groups (and no tombstone); a delta
//! holds the keys changed since the subtask's previous checkpoint, a deleted key as a
//! tombstone. Keys are opaque here except for their first two bytes, the key group
//! (big-endian u16, as Weir's state store lays keys out), which lets a restore keep only
//! the key groups it owns.
//!
//! [`StateFileView`] checks a whole file before handing out a single entry, and borrows
//! keys and values from the input: nothing is allocated from a length field, so a hostile
//! length costs an error, never a huge buffer.

use crate::format::{self, CHECKSUM_LEN, FormatError, PREFIX_LEN};

const MAGIC: &[u8; 4] = b"WRST";
const VERSION: u16 = 1;
const WHAT: &str = "Weir state file";
const KIND_LEN: usize = 1;
const COUNT_LEN: usize = 8;
/// The smallest file: prefix, kind, no entries, count, checksum.
const MIN_LEN: usize = PREFIX_LEN + KIND_LEN + COUNT_LEN + CHECKSUM_LEN;
const TAG_PUT: u8 = 0;
const TAG_DELETE: u8 = 1;

/// What a state file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Every key of the subtask's key groups: the start of a chain.
    Full,
    /// Only the keys changed since the previous file of the chain.
    Delta,
}

impl FileKind {
    fn tag(self) -> u8 {
        match self {
            FileKind::Full => 0,
            FileKind::Delta => 1,
        }
    }
}

/// The key group of a state key: its first two bytes, big-endian. `None` for a key
/// shorter than that, which Weir's state store never writes.
pub fn key_group_of(key: &[u8]) -> Option<u16> {
    key.first_chunk::<2>().map(|g| u16::from_be_bytes(*g))
}

/// Builds a state file entry by entry.
#[derive(Debug)]
pub struct StateFileWriter {
    kind: FileKind,
    out: Vec<u8>,
    count: u64,
}

impl StateFileWriter {
    /// Starts a file of `kind`.
    pub fn new(kind: FileKind) -> Self {
        let mut out = Vec::with_capacity(MIN_LEN);
        format::write_prefix(&mut out, MAGIC, VERSION);
        out.push(kind.tag());
        Self { kind, out, count: 0 }
    }

    /// The kind of file being written.
    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// Entries written so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether no entry was written yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Records `key` = `value`. Fails (writing nothing) if either is 4 GiB or more.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), FormatError> {
        let (key_len, value_len) = (len_u32("key", key)?, len_u32("value", value)?);
        self.out.reserve(4 + key.len() + 1 + 4 + value.len());
        self.out.extend_from_slice(&key_len.to_le_bytes());
        self.out.extend_from_slice(key);
        self.out.push(TAG_PUT);
        self.out.extend_from_slice(&value_len.to_le_bytes());
        self.out.extend_from_slice(value);
        self.count += 1;
        Ok(())
    }

    /// Records that `key` was deleted. Only a delta can say so: a full file lists what
    /// exists.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), FormatError> {
        if self.kind == FileKind::Full {
            return Err(FormatError::Invalid("a full state file cannot hold a tombstone".into()));
        }
        let key_len = len_u32("key", key)?;
        self.out.extend_from_slice(&key_len.to_le_bytes());
        self.out.extend_from_slice(key);
        self.out.push(TAG_DELETE);
        self.count += 1;
        Ok(())
    }

    /// The finished file.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&self.count.to_le_bytes());
        format::seal(&mut self.out);
        self.out
    }
}

fn len_u32(what: &str, bytes: &[u8]) -> Result<u32, FormatError> {
    u32::try_from(bytes.len()).map_err(|_| FormatError::Invalid(format!("a state {what} of {} bytes exceeds the 4 GiB limit", bytes.len())))
}

/// One entry as stored: a key and its new value, or `None` for a tombstone.
pub type EntryRef<'a> = (&'a [u8], Option<&'a [u8]>);

/// A state file that passed every check, borrowing its entries from the bytes.
#[derive(Debug, Clone, Copy)]
pub struct StateFileView<'a> {
    kind: FileKind,
    entries: &'a [u8],
    count: u64,
}

impl<'a> StateFileView<'a> {
    /// Checks magic, version, checksum, kind, every entry's lengths and tag, that the
    /// entries end exactly at the trailer, and the entry count.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let inner = format::open(bytes, WHAT, MAGIC, VERSION, MIN_LEN)?;
        let too_short = || FormatError::TooShort { what: WHAT, len: bytes.len(), min: MIN_LEN };
        let Some(([kind], rest)) = inner.split_first_chunk::<KIND_LEN>() else { return Err(too_short()) };
        let Some((entries, count)) = rest.split_last_chunk::<COUNT_LEN>() else { return Err(too_short()) };
        let kind = match *kind {
            0 => FileKind::Full,
            1 => FileKind::Delta,
            value => return Err(FormatError::UnknownTag { what: "state file kind", value, offset: PREFIX_LEN }),
        };
        let stored = u64::from_le_bytes(*count);
        let mut cursor = Cursor { bytes: entries, pos: 0 };
        let mut found = 0u64;
        while !cursor.at_end() {
            let at = cursor.offset();
            let (_, value) = cursor.entry()?;
            if value.is_none() && kind == FileKind::Full {
                return Err(FormatError::Invalid(format!("a full state file holds a tombstone (entry at byte {at})")));
            }
            found += 1;
        }
        if found != stored {
            return Err(FormatError::CountMismatch { stored, found });
        }
        Ok(Self { kind, entries, count: stored })
    }

    /// Full or delta.
    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// The number of entries.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the file has no entry.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries in file order.
    pub fn entries(&self) -> Entries<'a> {
        Entries { cursor: Cursor { bytes: self.entries, pos: 0 } }
    }
}

/// The entries of a [`StateFileView`], in file order.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Iterator for Entries<'a> {
    type Item = EntryRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.cursor.at_end() {
            return None;
        }
        // `StateFileView::parse` already walked these bytes, so this cannot fail; if it
        // somehow did, ending the iteration is the only answer that cannot panic.
        self.cursor.entry().ok()
    }
}

#[derive(Debug, Clone)]
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// The position in the whole file, for error messages.
    fn offset(&self) -> usize {
        PREFIX_LEN + KIND_LEN + self.pos
    }

    fn left(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, need: u64, what: &'static str) -> Result<&'a [u8], FormatError> {
        let truncated = || FormatError::Truncated { what, offset: self.offset(), need, left: self.left() };
        let n = usize::try_from(need).map_err(|_| truncated())?;
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let taken = self.bytes.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let (offset, left) = (self.offset(), self.left());
        let taken = self.take(N as u64, what)?;
        taken.try_into().map_err(|_| FormatError::Truncated { what, offset, need: N as u64, left })
    }

    fn entry(&mut self) -> Result<EntryRef<'a>, FormatError> {
        let key_len = u32::from_le_bytes(self.array("key length")?);
        let key = self.take(u64::from(key_len), "key")?;
        let at = self.offset();
        let [tag] = self.array("entry tag")?;
        match tag {
            TAG_PUT => {
                let value_len = u32::from_le_bytes(self.array("value length")?);
                Ok((key, Some(self.take(u64::from(value_len), "value")?)))
            }
            TAG_DELETE => Ok((key, None)),
            value => Err(FormatError::UnknownTag { what: "entry tag", value, offset: at }),
        }
    }
}

/// A decoded state file that owns its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFile {
    /// Full or delta.
    pub kind: FileKind,
    /// Entries in file order; `None` is a tombstone.
    pub entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Decodes a state file after checking all of it (see [`StateFileView::parse`]).
pub fn decode_state_file(bytes: &[u8]) -> Result<StateFile, FormatError> {
    let view = StateFileView::parse(bytes)?;
    let entries = view.entries().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect();
    Ok(StateFile { kind: view.kind(), entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: u16, rest: &[u8]) -> Vec<u8> {
        let mut k = group.to_be_bytes().to_vec();
        k.extend_from_slice(rest);
        k
    }

    fn small_delta() -> Vec<u8> {
        let mut w = StateFileWriter::new(FileKind::Delta);
        w.put(&key(3, b"a"), b"one").expect("put");
        w.delete(&key(7, b"b")).expect("delete");
        w.put(&key(3, b""), b"").expect("put empty");
        w.finish()
    }

    /// Re-seals `content` (a file without its checksum) so that a test reaches the checks
    /// behind the checksum, as a hostile writer could.
    fn sealed(mut content: Vec<u8>) -> Vec<u8> {
        format::seal(&mut content);
        content
    }

    fn header(kind: u8) -> Vec<u8> {
        let mut out = Vec::new();
        format::write_prefix(&mut out, MAGIC, VERSION);
        out.push(kind);
        out
    }

    #[test]
    fn roundtrip() {
        let file = decode_state_file(&small_delta()).expect("decode");
        assert_eq!(file.kind, FileKind::Delta);
        assert_eq!(file.entries, vec![(key(3, b"a"), Some(b"one".to_vec())), (key(7, b"b"), None), (key(3, b""), Some(Vec::new()))]);
        let empty = StateFileWriter::new(FileKind::Full).finish();
        assert_eq!(empty.len(), MIN_LEN);
        assert_eq!(decode_state_file(&empty).expect("empty"), StateFile { kind: FileKind::Full, entries: Vec::new() });
        let view = StateFileView::parse(&empty).expect("view");
        assert!(view.is_empty() && view.entries().next().is_none());
    }

    #[test]
    fn full_files_refuse_tombstones() {
        let mut w = StateFileWriter::new(FileKind::Full);
        assert!(w.delete(b"\0\0k").is_err());
        assert!(w.is_empty());
        // A hand-made full file with a tombstone is refused on read as well.
        let mut content = header(0);
        content.extend_from_slice(&3u32.to_le_bytes());
        content.extend_from_slice(b"\0\0k");
        content.push(TAG_DELETE);
        content.extend_from_slice(&1u64.to_le_bytes());
        assert!(matches!(decode_state_file(&sealed(content)), Err(FormatError::Invalid(_))));
    }

    #[test]
    fn every_single_byte_corruption_is_detected() {
        let good = small_delta();
        for pos in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[pos] ^= flip;
                assert!(decode_state_file(&bad).is_err(), "flipping {flip:#x} at byte {pos} went unnoticed");
            }
        }
    }

    #[test]
    fn every_truncation_and_extension_is_detected() {
        let good = small_delta();
        for len in 0..good.len() {
            assert!(decode_state_file(&good[..len]).is_err(), "truncation to {len} bytes went unnoticed");
        }
        for extra in [&[0u8][..], b"garbage", &[0; 16]] {
            let mut long = good.clone();
            long.extend_from_slice(extra);
            assert!(decode_state_file(&long).is_err(), "{} trailing bytes went unnoticed", extra.len());
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let good = small_delta();
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(decode_state_file(&bad), Err(FormatError::BadMagic { .. })));
        let mut bad = good.clone();
        bad[4] = 9;
        assert!(matches!(decode_state_file(&bad), Err(FormatError::UnsupportedVersion { found: 9, .. })));
        let mut bad = good.clone();
        bad[10] ^= 1;
        assert!(matches!(decode_state_file(&bad), Err(FormatError::ChecksumMismatch { .. })));
        assert!(matches!(decode_state_file(&good[..5]), Err(FormatError::TooShort { .. })));
        // Behind a valid checksum: an unknown kind, an unknown tag, a wrong count.
        let mut content = header(7);
        content.extend_from_slice(&0u64.to_le_bytes());
        assert!(matches!(decode_state_file(&sealed(content)), Err(FormatError::UnknownTag { value: 7, .. })));
        let mut content = header(1);
        content.extend_from_slice(&2u32.to_le_bytes());
        content.extend_from_slice(b"\0\0");
        content.push(5);
        content.extend_from_slice(&1u64.to_le_bytes());
        assert!(matches!(decode_state_file(&sealed(content)), Err(FormatError::UnknownTag { value: 5, offset: 13, .. })));
        let mut content = good[..good.len() - CHECKSUM_LEN - COUNT_LEN].to_vec();
        content.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode_state_file(&sealed(content)), Err(FormatError::CountMismatch { stored: u64::MAX, found: 3 })));
    }

    #[test]
    fn hostile_lengths_are_refused_before_any_allocation() {
        format::assert_no_huge_allocation(hostile_lengths);
    }

    fn hostile_lengths() {
        // Lengths up to u32::MAX behind a valid checksum: each must be an error about the
        // length, and no buffer may be sized from it.
        for len in [4u32, 5, 1 << 20, u32::MAX - 1, u32::MAX] {
            let mut content = header(1);
            content.extend_from_slice(&len.to_le_bytes());
            content.extend_from_slice(b"\0\0\0");
            content.extend_from_slice(&1u64.to_le_bytes());
            let err = decode_state_file(&sealed(content)).expect_err("hostile key length");
            assert!(matches!(err, FormatError::Truncated { what: "key", need, left: 3, .. } if need == u64::from(len)), "{err}");

            let mut content = header(0);
            content.extend_from_slice(&2u32.to_le_bytes());
            content.extend_from_slice(b"\0\0");
            content.push(TAG_PUT);
            content.extend_from_slice(&len.to_le_bytes());
            content.extend_from_slice(b"abc");
            content.extend_from_slice(&1u64.to_le_bytes());
            let err = decode_state_file(&sealed(content)).expect_err("hostile value length");
            assert!(matches!(err, FormatError::Truncated { what: "value", need, left: 3, .. } if need == u64::from(len)), "{err}");
        }
        // A length field cut short by the trailer.
        let mut content = header(1);
        content.extend_from_slice(&[1, 0]);
        content.extend_from_slice(&0u64.to_le_bytes());
        assert!(matches!(decode_state_file(&sealed(content)), Err(FormatError::Truncated { what: "key length", .. })));
    }

    #[test]
    fn key_groups_are_the_first_two_bytes_big_endian() {
        assert_eq!(key_group_of(&key(0x0102, b"rest")), Some(0x0102));
        assert_eq!(key_group_of(&[0, 127]), Some(127));
        assert_eq!(key_group_of(&[1]), None);
        assert_eq!(key_group_of(&[]), None);
    }
}
