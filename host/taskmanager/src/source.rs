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

/// What one [`Source::next_batch`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitRead {
    /// The split its records came from, below [`Source::split_count`]: each split has
    /// its own watermark generator.
    pub split: usize,
    /// How many records were appended. 0: the split has nothing now (an unbounded
    /// source waiting for data), which is how a split comes to be idle.
    pub count: usize,
    /// The split ended with this read: it no longer holds the watermark back.
    pub ended: bool,
}

/// A host-run source producing plain batches, from one or more splits (a file range,
/// a generator range, a partition). A subtask holds several after a restore at a lower
/// parallelism.
pub trait Source: Send {
    /// How many splits it reads, for the subtask's whole life; reads name them
    /// `0..split_count()`.
    fn split_count(&self) -> usize {
        1
    }

    /// Appends the next records of one split to `out` (about one batch) and says which
    /// split and how many, or `None` once every split ended. A source that has nothing
    /// should wait a little for records first (a poll timeout): the subtask asks again
    /// right away.
    fn next_batch(&mut self, out: &mut Vec<u8>) -> Result<Option<SplitRead>, TaskError>;

    /// What is left to read, as splits. A checkpoint stores them; a restore hands each
    /// to a subtask, at the old parallelism or another one.
    fn splits(&self) -> Vec<Split>;

    /// Checkpoint `id`'s barrier leaves now, with [`Source::splits`] as its position.
    fn barrier(&mut self, _id: u64) {}

    /// Checkpoint `id` completed (the newest; earlier ones may not be told).
    fn checkpoint_completed(&mut self, _id: u64) {}

    /// The consumer lag per partition, when it was looked up again since last asked.
    fn take_lag(&mut self) -> Option<Vec<weir_types::deployment::PartitionLag>> {
        None
    }
}

/// A Kafka topic's partitions this subtask owns, one split each (unbounded: a read of
/// no records when caught up). Discovery may add splits while it runs.
pub struct Kafka {
    inner: weir_connectors::kafka::KafkaSource,
}

/// How long a caught-up Kafka source waits for records before it reads nothing.
const KAFKA_POLL: std::time::Duration = std::time::Duration::from_millis(100);

impl Kafka {
    /// Subtask `subtask` of `parallelism`, resuming from `restored`: every split of the
    /// source's checkpoint (partitions are re-assigned by their own rule, not by the
    /// subtask that held them).
    pub fn open(c: &weir_types::plan::Connector, subtask: u32, parallelism: u32, restored: Option<&[Split]>) -> Result<Self, SourceError> {
        let o = weir_connectors::kafka::source_options(c)?;
        Ok(Self { inner: weir_connectors::kafka::KafkaSource::open(o, subtask, parallelism, restored)? })
    }
}

impl Source for Kafka {
    fn split_count(&self) -> usize {
        // A subtask that owns no partition still has a split, which goes idle.
        self.inner.split_count().max(1)
    }

    fn next_batch(&mut self, out: &mut Vec<u8>) -> Result<Option<SplitRead>, TaskError> {
        let r = self.inner.next(out, BATCH_BYTES, KAFKA_POLL, push_record::<Vec<u8>>).map_err(SourceError::from)?;
        Ok(Some(SplitRead { split: r.split, count: r.count, ended: false }))
    }

    fn splits(&self) -> Vec<Split> {
        self.inner.splits()
    }

    fn barrier(&mut self, id: u64) {
        self.inner.barrier(id);
    }

    fn checkpoint_completed(&mut self, id: u64) {
        self.inner.checkpoint_completed(id);
    }

    fn take_lag(&mut self) -> Option<Vec<weir_types::deployment::PartitionLag>> {
        let lag = self.inner.take_lag()?;
        Some(lag.into_iter().map(|l| weir_types::deployment::PartitionLag { topic: l.topic, partition: l.partition, records: l.records }).collect())
    }
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
///
/// With several splits (a restore at a lower parallelism merged other subtasks'), the
/// splits take turns, a batch each. Their timestamps rise with their numbers, and the
/// subtask's watermark is the minimum over its splits: read one after another, a split
/// not started yet would hold the watermark at the start of time until the last one
/// starts (no window fires before), and a watermark from the splits read so far alone
/// would make every record of the later ones late.
pub struct Generator {
    /// Every split (next, end, step), in a fixed order: its index names it.
    splits: Vec<(u64, u64, u64)>,
    /// Splits whose end was reported.
    ended: Vec<bool>,
    /// The split whose turn it is.
    turn: usize,
    /// Event time: number `n` has timestamp `n / records_per_ms` (0 without).
    records_per_ms: Option<u64>,
    scratch: Vec<u8>,
}

impl Generator {
    /// Subtask `subtask` of `parallelism` of the numbers `start..start+count`.
    pub fn new(start: u64, count: u64, subtask: u32, parallelism: u32, records_per_ms: Option<u64>) -> Self {
        let split = (start.saturating_add(u64::from(subtask)), start.saturating_add(count), u64::from(parallelism.max(1)));
        Self::over(vec![split], records_per_ms)
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
        Ok(Self::over(splits, records_per_ms))
    }

    fn over(splits: Vec<(u64, u64, u64)>, records_per_ms: Option<u64>) -> Self {
        let ended = vec![false; splits.len()];
        Self { splits, ended, turn: 0, records_per_ms: records_per_ms.filter(|&r| r > 0), scratch: Vec::with_capacity(10) }
    }
}

impl Source for Generator {
    fn split_count(&self) -> usize {
        self.splits.len()
    }

    fn next_batch(&mut self, out: &mut Vec<u8>) -> Result<Option<SplitRead>, TaskError> {
        let n = self.splits.len();
        let Some(split) = (0..n).map(|k| (self.turn + k) % n).find(|&i| !self.ended[i]) else { return Ok(None) };
        let (next, end, step) = &mut self.splits[split];
        let (mut count, limit) = (0, out.len() + BATCH_BYTES);
        while *next < *end && out.len() < limit {
            count += 1;
            self.scratch.clear();
            push_varint(&mut self.scratch, *next);
            let ts = self.records_per_ms.map_or(0, |r| i64::try_from(*next / r).unwrap_or(i64::MAX));
            push_record(out, ts, &[], &self.scratch);
            *next = next.saturating_add(*step);
        }
        let ended = *next >= *end;
        self.ended[split] = ended;
        self.turn = (split + 1) % n;
        Ok(Some(SplitRead { split, count, ended }))
    }

    fn splits(&self) -> Vec<Split> {
        self.splits.iter().filter(|(n, e, _)| n < e).map(|&(next, end, step)| Split::Numbers { next, end, step }).collect()
    }
}

/// The lines of a file whose first byte lies in this subtask's byte range.
///
/// Several ranges (after a restore at a lower parallelism) are read one after another,
/// each a split: taking turns would cost a seek and a refill of the read buffer per
/// batch, and lines carry no timestamps (all 0), so a range not started yet holds back
/// nothing that could fire.
pub struct FileLines {
    path: PathBuf,
    reader: BufReader<File>,
    pos: u64,
    end: u64,
    /// Further byte ranges (after a restore at a lower parallelism).
    more: VecDeque<(u64, u64)>,
    /// The current range's index among all of them, and whether its end was reported.
    split: usize,
    reported: bool,
    splits: usize,
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
            split: 0,
            reported: false,
            splits: 1,
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
        // Nothing left to read is no split at all, not an empty one whose end a
        // resumed source would report again each time.
        let (splits, reported) = (more.len(), more.is_empty());
        let (pos, end) = more.pop_front().unwrap_or((0, 0));
        let io = |source| SourceError::Io { path: path.clone(), source };
        let mut file = File::open(&path).map_err(io)?;
        file.seek(SeekFrom::Start(pos)).map_err(io)?;
        Ok(Self {
            reader: BufReader::with_capacity(256 * 1024, file),
            path,
            pos,
            end,
            more,
            split: 0,
            reported,
            splits,
            line: Vec::new(),
            scratch: Vec::new(),
            raw: false,
        })
    }
}

impl Source for FileLines {
    fn split_count(&self) -> usize {
        self.splits
    }

    fn next_batch(&mut self, out: &mut Vec<u8>) -> Result<Option<SplitRead>, TaskError> {
        while self.pos >= self.end {
            // An empty range still ends, or it would hold the watermark back.
            if !self.reported {
                self.reported = true;
                return Ok(Some(SplitRead { split: self.split, count: 0, ended: true }));
            }
            let Some((pos, end)) = self.more.pop_front() else { return Ok(None) };
            self.reader.seek(SeekFrom::Start(pos)).map_err(|source| SourceError::Io { path: self.path.clone(), source })?;
            (self.pos, self.end) = (pos, end);
            (self.split, self.reported) = (self.split + 1, false);
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
        self.reported = self.pos >= self.end;
        Ok(Some(SplitRead { split: self.split, count, ended: self.reported }))
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

    /// Splits take turns a batch each, and each says when it ended, an empty one too.
    #[test]
    fn generator_splits_take_turns_and_report_their_ends() -> Result<(), TaskError> {
        let splits = [
            Split::Numbers { next: 0, end: 5000, step: 1 },
            Split::Numbers { next: 9, end: 9, step: 1 },
            Split::Numbers { next: 10_000, end: 10_010, step: 1 },
        ];
        let mut g = Generator::resume(&splits, None)?;
        assert_eq!(g.split_count(), 3);
        let mut reads = Vec::new();
        let mut buf = Vec::new();
        while let Some(r) = g.next_batch(&mut buf)? {
            reads.push((r.split, r.ended, r.count > 0));
        }
        let first = [(0, false, true), (1, true, false), (2, true, true)];
        assert_eq!(reads[..3], first);
        assert!(reads[3..].iter().all(|&(s, _, _)| s == 0), "only split 0 is left: {reads:?}");
        assert_eq!(reads.last(), Some(&(0, true, true)));
        assert_eq!(records(&buf).count(), 5010);
        Ok(())
    }

    /// File ranges are read one after another, each ending once, an empty one too.
    #[test]
    fn file_ranges_report_their_ends() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "a\nb\nc\n")?;
        let ranges = [Split::Lines { pos: 0, end: 2 }, Split::Lines { pos: 4, end: 4 }, Split::Lines { pos: 2, end: 6 }];
        let mut src = FileLines::resume(path, &ranges)?;
        assert_eq!(src.split_count(), 3);
        let mut reads = Vec::new();
        let mut buf = Vec::new();
        while let Some(r) = src.next_batch(&mut buf)? {
            reads.push((r.split, r.count, r.ended));
        }
        assert_eq!(reads, [(0, 1, true), (1, 0, true), (2, 2, true)]);
        assert_eq!(decode_strings(&buf), ["a", "b", "c"]);
        Ok(())
    }
}
