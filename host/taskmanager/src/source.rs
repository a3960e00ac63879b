//! Built-in sources. Each subtask reads its own share, so the union over subtasks is
//! the whole input whatever the parallelism.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use weir_types::batch::push_record;

use crate::deploy::TaskError;
use crate::exchange::BATCH_BYTES;

/// A host-run source producing plain batches.
pub trait Source: Send {
    /// Appends the next records to `out` (about one batch) and returns how many, or
    /// `None` once exhausted.
    fn next_batch(&mut self, out: &mut Vec<u8>) -> Result<Option<usize>, TaskError>;
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
    next: u64,
    end: u64,
    step: u64,
    scratch: Vec<u8>,
}

impl Generator {
    /// Subtask `subtask` of `parallelism` of the numbers `start..start+count`.
    pub fn new(start: u64, count: u64, subtask: u32, parallelism: u32) -> Self {
        Self {
            next: start.saturating_add(u64::from(subtask)),
            end: start.saturating_add(count),
            step: u64::from(parallelism.max(1)),
            scratch: Vec::with_capacity(10),
        }
    }
}

impl Source for Generator {
    fn next_batch(&mut self, out: &mut Vec<u8>) -> Result<Option<usize>, TaskError> {
        if self.next >= self.end {
            return Ok(None);
        }
        let (mut n, limit) = (0, out.len() + BATCH_BYTES);
        while self.next < self.end && out.len() < limit {
            n += 1;
            self.scratch.clear();
            push_varint(&mut self.scratch, self.next);
            push_record(out, 0, &[], &self.scratch);
            self.next = self.next.saturating_add(self.step);
        }
        Ok(Some(n))
    }
}

/// The lines of a file whose first byte lies in this subtask's byte range.
pub struct FileLines {
    path: PathBuf,
    reader: BufReader<File>,
    pos: u64,
    end: u64,
    line: Vec<u8>,
    scratch: Vec<u8>,
}

impl FileLines {
    /// Subtask `subtask` of `parallelism` of the lines of `path`.
    pub fn open(path: PathBuf, subtask: u32, parallelism: u32) -> Result<Self, TaskError> {
        let io = |e: std::io::Error| TaskError::Source(format!("{}: {e}", path.display()));
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
        Ok(Self { reader: BufReader::with_capacity(256 * 1024, file), path, pos, end, line: Vec::new(), scratch: Vec::new() })
    }
}

impl Source for FileLines {
    fn next_batch(&mut self, out: &mut Vec<u8>) -> Result<Option<usize>, TaskError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let (mut count, limit) = (0, out.len() + BATCH_BYTES);
        while self.pos < self.end && out.len() < limit {
            self.line.clear();
            let n = self.reader.read_until(b'\n', &mut self.line).map_err(|e| TaskError::Source(format!("{}: {e}", self.path.display())))?;
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
                return Err(TaskError::Source(format!("{}: the line at byte {line_start} is not valid UTF-8", self.path.display())));
            }
            self.scratch.clear();
            push_varint(&mut self.scratch, text.len() as u64);
            self.scratch.extend_from_slice(text);
            push_record(out, 0, &[], &self.scratch);
            count += 1;
        }
        Ok(Some(count))
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
    fn file_splits_cover_every_line_once() -> Result<(), TaskError> {
        let dir = tempfile::tempdir().map_err(|e| TaskError::Source(e.to_string()))?;
        let path = dir.path().join("in.txt");
        let text = "alpha beta\n\ngamma\r\ndelta epsilon zeta\nlast line without newline";
        std::fs::write(&path, text).map_err(|e| TaskError::Source(e.to_string()))?;
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

    #[test]
    fn generator_splits_cover_every_number_once() -> Result<(), TaskError> {
        for p in 1..=4 {
            let mut seen = Vec::new();
            for s in 0..p {
                let mut g = Generator::new(10, 5000, s, p);
                let mut buf = Vec::new();
                while g.next_batch(&mut buf)?.is_some() {}
                seen.extend(records(&buf).map(|r| postcard::from_bytes::<u64>(r.expect("valid").value).expect("varint")));
            }
            seen.sort_unstable();
            assert_eq!(seen, (10..5010).collect::<Vec<u64>>());
        }
        Ok(())
    }
}
