//! Built-in sources. Each subtask reads its own share, so the union over subtasks is
//! the whole input whatever the parallelism.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use weir_types::batch::push_record;

use crate::error::{SourceError, TaskError};
use crate::exchange::BATCH_BYTES;
pub use weir_checkpoint::{Split, decode_splits, encode_splits};

/// A host-run source producing plain batches.
pub trait Source: Send {
    /// Appends the next records to `out` (about one batch) and returns how many, or
    /// `None` once exhausted.
    fn next_batch(&mut self, out: &mut Vec<u8>) -> Result<Option<usize>, TaskError>;

    /// What is left to read, as splits. A checkpoint stores them; a restore hands each
    /// to a subtask, at the old parallelism or another one.
    fn splits(&self) -> Vec<Split>;
}

/// Appends `v` as a postcard varint, the SDK's encoding of integers and lengths.
#[inline]
pub fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Sequence numbers `start + subtask`, stepping by the parallelism.
pub struct Generator {
    /// Current split (next, end, step) first.
    splits: VecDeque<(u64, u64, u64)>,
    /// Event time: number `n` has timestamp `n / records_per_ms` (0 without).
    records_per_ms: Option<u64>,
    scratch: Vec<u8>,
}

impl Generator {
    /// Subtask `subtask` of `parallelism` of the numbers `start..start+count`.
    pub fn new(start: u64, count: u64, subtask: u32, parallelism: u32, records_per_ms: Option<u64>) -> Self {
        let split = (start.saturating_add(u64::from(subtask)), start.saturating_add(count), u64::from(parallelism.max(1)));
        Self { splits: VecDeque::from([split]), records_per_ms: records_per_ms.filter(|&r| r > 0), scratch: Vec::with_capacity(10) }
    }

    /// A generator resuming the given splits (other kinds are refused).
    pub fn resume(splits: &[Split], records_per_ms: Option<u64>) -> Result<Self, SourceError> {
        let splits = splits
            .iter()
            .map(|s| match *s {
                Split::Numbers { next, end, step } if step > 0 => Ok((next, end, step)),
                _ => Err(SourceError::Resume { reader: "generator", split: s.clone() }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { splits, records_per_ms: records_per_ms.filter(|&r| r > 0), scratch: Vec::with_capacity(10) })
    }
}

impl Source for Generator {
    fn next_batch(&mut self, out: &mut Vec<u8>) -> Result<Option<usize>, TaskError> {
        while self.splits.front().is_some_and(|&(next, end, _)| next >= end) {
            self.splits.pop_front();
        }
        let Some((next, end, step)) = self.splits.front_mut() else { return Ok(None) };
        let (mut n, limit) = (0, out.len() + BATCH_BYTES);
        while *next < *end && out.len() < limit {
            n += 1;
            self.scratch.clear();
            push_varint(&mut self.scratch, *next);
            let ts = self.records_per_ms.map_or(0, |r| i64::try_from(*next / r).unwrap_or(i64::MAX));
            push_record(out, ts, &[], &self.scratch);
            *next = next.saturating_add(*step);
        }
        Ok(Some(n))
    }

    fn splits(&self) -> Vec<Split> {
        self.splits.iter().filter(|(n, e, _)| n < e).map(|&(next, end, step)| Split::Numbers { next, end, step }).collect()
    }
}

/// The lines of a file whose first byte lies in this subtask's byte range.
pub struct FileLines {
    path: PathBuf,
    reader: BufReader<File>,
    pos: u64,
    end: u64,
    /// Further byte ranges (after a restore at a lower parallelism).
    more: VecDeque<(u64, u64)>,
    line: Vec<u8>,
    scratch: Vec<u8>,
    /// Values are the lines' bytes as they are, not postcard strings.
    raw: bool,
}

impl FileLines {
    /// Emits each line's UTF-8 bytes as they are instead of as a postcard string.
    pub fn raw(mut self, raw: bool) -> Self {
        self.raw = raw;
        self
    }

    /// Subtask `subtask` of `parallelism` of the lines of `path`.
    pub fn open(path: PathBuf, subtask: u32, parallelism: u32) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io { path: path.clone(), source };
        let mut file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let p = u64::from(parallelism.max(1));
        let (start, end) = (len * u64::from(subtask) / p, len * (u64::from(subtask) + 1) / p);
        let mut pos = start;
        if start > 0 {
            // A line belongs to the subtask whose range holds its first byte: unless
            // the previous byte ends a line, skip the tail of the line we landed in.
            file.seek(SeekFrom::Start(start - 1)).map_err(io)?;
            let mut prev = [0u8; 1];
            file.read_exact(&mut prev).map_err(io)?;
            if prev[0] != b'\n' {
                let mut r = BufReader::new(&mut file);
                let mut skipped = Vec::new();
                pos += r.read_until(b'\n', &mut skipped).map_err(io)? as u64;
            }
            file.seek(SeekFrom::Start(pos)).map_err(io)?;
        }
        Ok(Self {
            reader: BufReader::with_capacity(256 * 1024, file),
            path,
            pos,
            end,
            more: VecDeque::new(),
            line: Vec::new(),
            scratch: Vec::new(),
            raw: false,
        })
    }

    /// Lines of `path` resuming the given splits (other kinds are refused).
    pub fn resume(path: PathBuf, splits: &[Split]) -> Result<Self, SourceError> {
        let mut more = splits
            .iter()
            .map(|s| match *s {
                Split::Lines { pos, end } => Ok((pos, end)),
                _ => Err(SourceError::Resume { reader: "file source", split: s.clone() }),
            })
            .collect::<Result<VecDeque<_>, _>>()?;
        let (pos, end) = more.pop_front().unwrap_or((0, 0));
        let io = |source| SourceError::Io { path: path.clone(), source };
        let mut file = File::open(&path).map_err(io)?;
        file.seek(SeekFrom::Start(pos)).map_err(io)?;
        Ok(Self { reader: BufReader::with_capacity(256 * 1024, file), path, pos, end, more, line: Vec::new(), scratch: Vec::new(), raw: false })
    }
}

impl Source for FileLines {
    fn next_batch(&mut self, out: &mut Vec<u8>) -> Result<Option<usize>, TaskError> {
        while self.pos >= self.end {
            let Some((pos, end)) = self.more.pop_front() else { return Ok(None) };
            self.reader.seek(SeekFrom::Start(pos)).map_err(|source| SourceError::Io { path: self.path.clone(), source })?;
            (self.pos, self.end) = (pos, end);
        }
        let (mut count, limit) = (0, out.len() + BATCH_BYTES);
        while self.pos < self.end && out.len() < limit {
            self.line.clear();
            let n = self.reader.read_until(b'\n', &mut self.line).map_err(|source| SourceError::Io { path: self.path.clone(), source })?;
            if n == 0 {
                self.pos = self.end;
                break;
            }
            let line_start = self.pos;
            self.pos += n as u64;
            let mut text = self.line.as_slice();
            if let Some(t) = text.strip_suffix(b"\n") {
                text = t.strip_suffix(b"\r").unwrap_or(t);
            }
            if std::str::from_utf8(text).is_err() {
                return Err(SourceError::NotUtf8 { path: self.path.clone(), at: line_start }.into());
            }
            if self.raw {
                push_record(out, 0, &[], text);
            } else {
                self.scratch.clear();
                push_varint(&mut self.scratch, text.len() as u64);
                self.scratch.extend_from_slice(text);
                push_record(out, 0, &[], &self.scratch);
            }
            count += 1;
        }
        Ok(Some(count))
    }

    fn splits(&self) -> Vec<Split> {
        let current = (self.pos < self.end).then_some(Split::Lines { pos: self.pos, end: self.end });
        current.into_iter().chain(self.more.iter().map(|&(pos, end)| Split::Lines { pos, end })).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_types::batch::records;

    fn decode_strings(buf: &[u8]) -> Vec<String> {
        records(buf)
            .map(|r| {
                let v = r.expect("valid").value;
                // Lengths in these tests stay below 128, a one-byte varint.
                String::from_utf8(v[1..].to_vec()).expect("utf8")
            })
            .collect()
    }

    #[test]
    fn file_splits_cover_every_line_once() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("in.txt");
        let text = "alpha beta\n\ngamma\r\ndelta epsilon zeta\nlast line without newline";
        std::fs::write(&path, text)?;
        let expected: Vec<String> = text.lines().map(str::to_string).collect();
        for p in 1..=7 {
            let mut all = Vec::new();
            for s in 0..p {
                let mut src = FileLines::open(path.clone(), s, p)?;
                let mut buf = Vec::new();
                while src.next_batch(&mut buf)?.is_some() {}
                all.extend(decode_strings(&buf));
            }
            assert_eq!(all, expected, "parallelism {p}");
        }
        Ok(())
    }

    /// Reads a source to its end, checkpointing (and resuming from the checkpoint)
    /// after every batch, as recovery would.
    fn drain_with_restarts(mut src: Box<dyn Source>, resume: impl Fn(&[Split]) -> Result<Box<dyn Source>, TaskError>) -> Result<Vec<u8>, TaskError> {
        let mut buf = Vec::new();
        while src.next_batch(&mut buf)?.is_some() {
            let position = decode_splits(&encode_splits(&src.splits())).map_err(SourceError::Position)?;
            src = resume(&position)?;
        }
        Ok(buf)
    }

    #[test]
    fn resumed_sources_neither_skip_nor_repeat() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("in.txt");
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text)?;
        let mut lines = Vec::new();
        for s in 0..3 {
            let p = path.clone();
            let buf = drain_with_restarts(Box::new(FileLines::open(path.clone(), s, 3)?), move |sp| Ok(Box::new(FileLines::resume(p.clone(), sp)?)))?;
            lines.extend(decode_strings(&buf));
        }
        assert_eq!(lines, text.lines().map(str::to_string).collect::<Vec<_>>());

        // Two subtasks' positions merged into one subtask (a restore at lower parallelism).
        let (mut a, mut b) = (Generator::new(0, 100_000, 0, 2, None), Generator::new(0, 100_000, 1, 2, None));
        let mut buf = Vec::new();
        a.next_batch(&mut buf)?;
        b.next_batch(&mut buf)?;
        let merged: Vec<Split> = a.splits().into_iter().chain(b.splits()).collect();
        let rest = drain_with_restarts(Box::new(Generator::resume(&merged, None)?), |sp| Ok(Box::new(Generator::resume(sp, None)?)))?;
        buf.extend_from_slice(&rest);
        let mut seen: Vec<u64> = records(&buf).map(|r| postcard::from_bytes::<u64>(r.expect("valid").value).expect("varint")).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100_000).collect::<Vec<u64>>());
        Ok(())
    }

    #[test]
    fn generator_splits_cover_every_number_once() -> Result<(), TaskError> {
        for p in 1..=4 {
            let mut seen = Vec::new();
            for s in 0..p {
                let mut g = Generator::new(10, 5000, s, p, Some(1000));
                let mut buf = Vec::new();
                while g.next_batch(&mut buf)?.is_some() {}
                for r in records(&buf) {
                    let r = r.expect("valid");
                    let n = postcard::from_bytes::<u64>(r.value).expect("varint");
                    assert_eq!(r.ts, (n / 1000) as i64, "1000 records per ms");
                    seen.push(n);
                }
            }
            seen.sort_unstable();
            assert_eq!(seen, (10..5010).collect::<Vec<u64>>());
        }
        Ok(())
    }
}
