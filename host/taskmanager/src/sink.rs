//! Built-in sinks. Text sinks write `key<TAB>value` lines; the SDK has already turned
//! key and value into UTF-8 text before them.
//!
//! With checkpoints, a file sink is exactly-once by two-phase commit, as Flink's file
//! sink: the lines between two barriers go to a pending file of that epoch (epoch `k`
//! ends at the barrier of checkpoint `k`), and a pending file is renamed to its final
//! name as soon as the TaskManager hears that checkpoint `k` is complete ([`Commits`]). A restore first settles what earlier attempts
//! left ([`recover_output`]): pending files of completed checkpoints are committed, and
//! everything written after the restored checkpoint is deleted, since it will be
//! written again.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use weir_types::batch::records;

use crate::deploy::TaskError;

/// A text destination shared by all subtasks of a sink; each batch is written under
/// the lock in one piece, so lines of different subtasks never interleave.
pub type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

/// Where a sink subtask's records go.
pub enum Sink {
    /// Text lines into a shared writer.
    Text {
        /// The destination.
        out: SharedWriter,
        /// Lines of the current batch, reused.
        buf: Vec<u8>,
    },
    /// Text lines into per-epoch files committed with checkpoints.
    Transactional(Box<Transactional>),
    /// Dropped.
    Discard,
}

/// The exactly-once file sink of one subtask.
pub struct Transactional {
    dir: PathBuf,
    subtask: u32,
    attempt: u32,
    epoch: u64,
    file: BufWriter<File>,
    commits: Arc<Commits>,
    buf: Vec<u8>,
}

/// Closed epochs of a sink subtask waiting for their checkpoint: (epoch, pending
/// file, final name). Shared with the TaskManager, which commits them when it hears of
/// the checkpoint's completion, whatever the subtask is doing (or if it was cancelled
/// right after).
#[derive(Default)]
pub struct Commits {
    pending: Mutex<Vec<(u64, PathBuf, PathBuf)>>,
}

impl Commits {
    /// Renames the files of every epoch up to `upto` to their final names.
    pub fn commit(&self, upto: u64) -> Result<(), TaskError> {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut *pending).into_iter().partition(|(e, _, _)| *e <= upto);
        *pending = waiting;
        for (_, from, to) in ready {
            std::fs::rename(&from, &to).map_err(|e| io_error(&from, e))?;
        }
        Ok(())
    }
}

fn pending_name(subtask: u32, epoch: u64, attempt: u32) -> String {
    format!(".part-{subtask}-{epoch}-a{attempt}.pending")
}

fn final_name(subtask: u32, epoch: u64, attempt: u32) -> String {
    format!("part-{subtask}-{epoch}-a{attempt}")
}

/// (subtask, epoch, attempt, pending?) of a file this sink wrote.
fn parse_name(name: &str) -> Option<(u32, u64, u32, bool)> {
    let (body, pending) = match name.strip_prefix('.').and_then(|n| n.strip_suffix(".pending")) {
        Some(b) => (b, true),
        None => (name, false),
    };
    let mut parts = body.strip_prefix("part-")?.split('-');
    let subtask = parts.next()?.parse().ok()?;
    let epoch = parts.next()?.parse().ok()?;
    let attempt = parts.next()?.strip_prefix('a')?.parse().ok()?;
    parts.next().is_none().then_some((subtask, epoch, attempt, pending))
}

fn io_error(path: &Path, e: std::io::Error) -> TaskError {
    TaskError::Sink(format!("{}: {e}", path.display()))
}

/// Settles a sink directory before attempt `attempt` restored from checkpoint
/// `restored` (0: none) writes to it: files of earlier attempts from epochs up to
/// `restored` are committed (their checkpoint completed), later ones deleted.
/// Idempotent, so every TaskManager with a subtask of the sink may run it.
pub fn recover_output(dir: &Path, attempt: u32, restored: u64) -> Result<(), TaskError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((subtask, epoch, file_attempt, pending)) = parse_name(&name) else { continue };
        if file_attempt >= attempt {
            continue;
        }
        let path = entry.path();
        // Another TaskManager may settle the same file at the same moment.
        let settled = if epoch > restored {
            std::fs::remove_file(&path)
        } else if pending {
            std::fs::rename(&path, dir.join(final_name(subtask, epoch, file_attempt)))
        } else {
            Ok(())
        };
        match settled {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(&path, e)),
            _ => {}
        }
    }
    Ok(())
}

impl Transactional {
    /// The sink of `subtask` writing into `dir`, starting with the epoch after
    /// checkpoint `restored`; `completed` tracks the newest completed checkpoint.
    pub fn open(dir: PathBuf, subtask: u32, attempt: u32, restored: u64, commits: Arc<Commits>) -> Result<Self, TaskError> {
        let epoch = restored + 1;
        let file = Self::create(&dir, subtask, epoch, attempt)?;
        Ok(Self { dir, subtask, attempt, epoch, file, commits, buf: Vec::new() })
    }

    fn create(dir: &Path, subtask: u32, epoch: u64, attempt: u32) -> Result<BufWriter<File>, TaskError> {
        let path = dir.join(pending_name(subtask, epoch, attempt));
        Ok(BufWriter::with_capacity(256 * 1024, File::create(&path).map_err(|e| io_error(&path, e))?))
    }

    fn close_epoch(&mut self) -> Result<(), TaskError> {
        let path = self.dir.join(pending_name(self.subtask, self.epoch, self.attempt));
        self.file.flush().map_err(|e| io_error(&path, e))?;
        // Durable before the checkpoint that commits it can complete.
        self.file.get_ref().sync_data().map_err(|e| io_error(&path, e))?;
        let target = self.dir.join(final_name(self.subtask, self.epoch, self.attempt));
        self.commits.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((self.epoch, path, target));
        Ok(())
    }
}

impl Sink {
    /// A text sink into `out`.
    pub fn text(out: SharedWriter) -> Self {
        Sink::Text { out, buf: Vec::new() }
    }

    /// Writes one valid plain batch.
    pub fn write(&mut self, batch: &[u8]) -> Result<(), TaskError> {
        match self {
            Sink::Text { out, buf } => {
                lines(batch, buf)?;
                let mut w = out.lock().map_err(|_| TaskError::Sink("the output writer is poisoned by an earlier failure".into()))?;
                w.write_all(buf).map_err(|e| TaskError::Sink(e.to_string()))
            }
            Sink::Transactional(t) => {
                lines(batch, &mut t.buf)?;
                t.file.write_all(&t.buf).map_err(|e| TaskError::Sink(e.to_string()))
            }
            Sink::Discard => Ok(()),
        }
    }

    /// A checkpoint barrier passed: everything before it belongs to that checkpoint.
    pub fn barrier(&mut self, checkpoint: u64) -> Result<(), TaskError> {
        match self {
            Sink::Transactional(t) => {
                t.close_epoch()?;
                t.epoch = checkpoint + 1;
                t.file = Transactional::create(&t.dir, t.subtask, t.epoch, t.attempt)?;
                Ok(())
            }
            _ => self.finish(),
        }
    }

    /// Flushes buffered output; a transactional sink at the end of its input commits
    /// everything (a later restore deletes it again if it was premature).
    pub fn finish(&mut self) -> Result<(), TaskError> {
        match self {
            Sink::Text { out, .. } => {
                let mut w = out.lock().map_err(|_| TaskError::Sink("the output writer is poisoned by an earlier failure".into()))?;
                w.flush().map_err(|e| TaskError::Sink(e.to_string()))
            }
            Sink::Transactional(t) => {
                t.close_epoch()?;
                t.commits.commit(u64::MAX)
            }
            Sink::Discard => Ok(()),
        }
    }
}

/// Renders a batch as `key<TAB>value` lines into `buf`.
fn lines(batch: &[u8], buf: &mut Vec<u8>) -> Result<(), TaskError> {
    buf.clear();
    for r in records(batch) {
        let r = r.map_err(|e| TaskError::Internal(format!("sink got an invalid batch: {e}")))?;
        buf.extend_from_slice(r.key);
        buf.push(b'\t');
        buf.extend_from_slice(r.value);
        buf.push(b'\n');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn epochs_commit_with_checkpoints_and_a_restore_discards_what_followed() -> Result<(), TaskError> {
        let dir = tempfile::tempdir().map_err(|e| TaskError::Sink(e.to_string()))?;
        let commits = Arc::new(Commits::default());
        let mut sink = Sink::Transactional(Box::new(Transactional::open(dir.path().into(), 0, 0, 0, commits.clone())?));
        let mut batch = Vec::new();
        weir_types::batch::push_record(&mut batch, 0, b"k", b"1");
        sink.write(&batch)?;
        sink.barrier(1)?;
        sink.write(&batch)?;
        sink.barrier(2)?;
        commits.commit(1)?;
        sink.write(&batch)?;
        assert_eq!(names(dir.path()), vec![".part-0-2-a0.pending", ".part-0-3-a0.pending", "part-0-1-a0"]);
        drop(sink);
        // Attempt 1 restores checkpoint 2: epoch 2 is committed, epoch 3 is gone.
        recover_output(dir.path(), 1, 2)?;
        assert_eq!(names(dir.path()), vec!["part-0-1-a0", "part-0-2-a0"]);
        assert_eq!(parse_name("part-3-10-a2"), Some((3, 10, 2, false)));
        assert_eq!(parse_name("part-3"), None);
        Ok(())
    }
}
