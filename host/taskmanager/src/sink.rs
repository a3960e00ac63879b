//! Built-in sinks. Text sinks write `key<TAB>value` lines; the SDK has already turned
//! key and value into UTF-8 text before them.
//!
//! With checkpoints, a file sink is exactly-once by two-phase commit, as Flink's file
//! sink: the lines between two barriers go to a pending file of that epoch (epoch `k`
//! ends at the barrier of checkpoint `k`), and a pending file is renamed to its final
//! name `part-<subtask>-<epoch>-a<attempt>` as soon as the TaskManager hears that
//! checkpoint `k` is complete ([`Commits`]).
//!
//! **Fencing.** Each attempt (run) of a job keeps its pending files in a directory of
//! its own, `.pending-<job>.<attempt>`, that only its TaskManagers' preparation creates.
//! A restore first settles what earlier attempts left ([`recover_output`]): it *seals*
//! each earlier attempt's directory by renaming it away, then commits the pending files
//! of the attempt that completed the restored checkpoint (epochs up to it) and deletes
//! the other pending files. Committed files are never deleted. The rename is atomic, so a superseded attempt that is still running
//! somewhere (a paused or partitioned TaskManager: a zombie) can neither commit nor
//! write a pending file afterwards: its paths no longer exist. Nothing it did before the
//! seal is visible unless its checkpoint completed.

use std::fs::File;
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use weir_connectors::ConnectorError;
use weir_connectors::kafka::KafkaWriter;
use weir_connectors::postgres::{PgError, PgSink, PgWriter};
use weir_types::batch::records;
use weir_types::ids::RunId;

use crate::error::{Bug, Refused, SinkError, TaskError};

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
    /// Rows of a PostgreSQL table (staged per epoch and applied with checkpoints).
    Postgres(Box<PgWriter>),
    /// Records of a Kafka topic, at least once: all acknowledged at every barrier.
    Kafka(Box<KafkaWriter>),
    /// Dropped.
    Discard,
}

/// The exactly-once file sink of one subtask.
pub struct Transactional {
    dir: PathBuf,
    /// This attempt's pending directory.
    pending: PathBuf,
    subtask: u32,
    attempt: u32,
    epoch: u64,
    file: BufWriter<File>,
    commits: Arc<Commits>,
    buf: Vec<u8>,
    /// The last epoch was closed after the end of the input.
    closed: bool,
}

/// A closed epoch waiting for its checkpoint.
struct Closed {
    epoch: u64,
    pending: PathBuf,
    committed: PathBuf,
}

/// Closed epochs of a sink subtask waiting for their checkpoint, oldest first. Shared
/// with the TaskManager, which commits them when it hears of the checkpoint's
/// completion, whatever the subtask is doing (or if it was cancelled right after).
#[derive(Default)]
pub struct Commits {
    closed: Mutex<Vec<Closed>>,
}

/// What commits a transactional sink's epochs when the TaskManager hears that a
/// checkpoint completed.
pub trait Commit: Send + Sync {
    /// Checkpoint `upto` completed: its epochs and older ones may become visible.
    fn commit(&self, upto: u64) -> Result<(), TaskError>;
}

impl Commit for Commits {
    fn commit(&self, upto: u64) -> Result<(), TaskError> {
        Commits::commit(self, upto)
    }
}

/// A PostgreSQL sink subtask's commits, run on a thread of their own: the TaskManager
/// hears of completions on its control loop, which must not wait for a database. A
/// commit that fails is retried by the next completion (it takes every staged epoch
/// up to its checkpoint) or by the restore; the subtask's own final commit is
/// synchronous.
pub struct PgCommits {
    tx: crossbeam_channel::Sender<u64>,
}

impl PgCommits {
    /// Starts the committer of `subtask` of `sink`; it ends when this is dropped.
    pub fn start(sink: Arc<PgSink>, subtask: u32, run: RunId) -> Result<Self, TaskError> {
        let (tx, rx) = crossbeam_channel::unbounded::<u64>();
        std::thread::Builder::new()
            .name(format!("weir-pg-commit-{subtask}"))
            .spawn(move || {
                while let Ok(mut upto) = rx.recv() {
                    // Completions that queued meanwhile: the newest covers them.
                    upto = rx.try_iter().fold(upto, u64::max);
                    match sink.commit(subtask, upto) {
                        Ok(applied) => tracing::debug!(job = %run, subtask, checkpoint = upto, "applied {applied:?} to {}", sink.table()),
                        Err(e @ PgError::Superseded { .. }) => tracing::warn!(job = %run, subtask, checkpoint = upto, "{e}"),
                        Err(e) => tracing::error!(job = %run, subtask, checkpoint = upto, "cannot commit to PostgreSQL (a later commit or the restore retries): {e}"),
                    }
                }
            })
            .map_err(Bug::Spawn)?;
        Ok(PgCommits { tx })
    }
}

impl Commit for PgCommits {
    fn commit(&self, upto: u64) -> Result<(), TaskError> {
        // The thread ends only with this sender: a send cannot fail while it runs.
        let _ = self.tx.send(upto);
        Ok(())
    }
}

/// A PostgreSQL failure as a subtask's error; a fenced-off attempt is superseded.
pub fn pg_error(e: PgError) -> TaskError {
    match e {
        e @ PgError::Superseded { .. } => TaskError::Superseded(Refused::Postgres(e.to_string())),
        e => SinkError::from(ConnectorError::from(e)).into(),
    }
}

impl Commits {
    /// Renames the files of every epoch up to `upto` to their final names, oldest
    /// first. Idempotent, and ordered: an epoch that cannot be committed stays pending
    /// with every later one, so a newer epoch is never visible before an older one.
    /// Refused ([`TaskError::Superseded`]) once a newer attempt sealed this one.
    pub fn commit(&self, upto: u64) -> Result<(), TaskError> {
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(first) = closed.first().filter(|c| c.epoch <= upto) {
            commit_one(first)?;
            closed.remove(0);
        }
        Ok(())
    }
}

fn commit_one(c: &Closed) -> Result<(), TaskError> {
    match rename_new(&c.pending, &c.committed) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(SinkError::Foreign { path: c.committed.clone() }.into()),
        // Committed before: by an earlier call, or by the restore of a newer attempt
        // that found this attempt's checkpoint complete.
        Err(e) if e.kind() == ErrorKind::NotFound && c.committed.exists() => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound && c.pending.parent().is_some_and(|d| !d.exists()) => {
            Err(TaskError::Superseded(Refused::Commit(c.committed.clone())))
        }
        Err(e) => Err(io_error(&c.pending, e)),
    }
}

/// `.pending-<job>.<attempt>`: where attempt `attempt` of `job` keeps pending files.
fn pending_dir_name(job: &str, attempt: u32) -> String {
    format!(".pending-{job}.{attempt}")
}

/// (run, its attempt, sealed?) of a pending directory's name.
fn parse_pending_dir(name: &str) -> Option<(RunId, u32, bool)> {
    let (run, sealed) = match name.strip_prefix(".pending-") {
        Some(run) => (run, false),
        None => (name.strip_prefix(".sealed-")?, true),
    };
    let run: RunId = run.parse().ok()?;
    let attempt = run.attempt()?;
    Some((run, attempt, sealed))
}

/// A pending file's name in its attempt's directory.
fn pending_name(subtask: u32, epoch: u64) -> String {
    format!("part-{subtask}-{epoch}")
}

fn final_name(subtask: u32, epoch: u64, attempt: u32) -> String {
    format!("part-{subtask}-{epoch}-a{attempt}")
}

/// (subtask, epoch) of a pending file's name.
fn parse_pending(name: &str) -> Option<(u32, u64)> {
    let (subtask, epoch) = name.strip_prefix("part-")?.split_once('-')?;
    Some((subtask.parse().ok()?, epoch.parse().ok()?))
}

/// (subtask, epoch, attempt) of a committed file's name.
fn parse_final(name: &str) -> Option<(u32, u64, u32)> {
    let (rest, attempt) = name.rsplit_once("-a")?;
    let (subtask, epoch) = parse_pending(rest)?;
    Some((subtask, epoch, attempt.parse().ok()?))
}

fn io_error(path: &Path, source: std::io::Error) -> TaskError {
    SinkError::Io { path: path.to_path_buf(), source }.into()
}

/// Tolerates what another TaskManager settling the same directory did first.
fn settled(path: &Path, r: std::io::Result<()>) -> Result<(), TaskError> {
    match r {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_error(path, e)),
        _ => Ok(()),
    }
}

/// Settles a sink directory before attempt `attempt` of `job`, restored from
/// checkpoint `restored` (0: none) that attempt `owner.1` of job `owner.0` completed
/// (`None`: a savepoint or nothing), writes to it; then creates the attempt's pending
/// directory. Every earlier attempt's pending directory is sealed (see the module
/// docs), and so is every pending directory of `owner.0` when that is another job (an
/// ended job whose retained checkpoint this one continues from); of their files only
/// the owner's epochs up to `restored` are committed, the rest (never committed)
/// deleted.
///
/// Committed files are never deleted or rewritten: a reader may have consumed them.
/// Those of earlier attempts past `restored` (the restore fell back past a checkpoint
/// that cannot be read: its epochs were committed) are returned: the records after `restored` will be written again, so the
/// output is at-least-once for that gap. Idempotent and safe to run concurrently, so
/// every TaskManager with a subtask of the sink runs it.
pub fn recover_output(dir: &Path, job: &str, attempt: u32, restored: u64, owner: Option<(&str, u32)>) -> Result<Vec<String>, TaskError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let mut past = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some((run, earlier, is_sealed)) = parse_pending_dir(&name) {
            let of = run.job();
            let of = of.as_str();
            let (this, predecessor) = (of == job, owner.is_some_and(|(o, _)| o != job && of == o));
            if !(this && earlier < attempt || predecessor) {
                continue;
            }
            let sealed_path = dir.join(format!(".sealed-{of}.{earlier}"));
            if !is_sealed {
                // The fence: from here on the earlier attempt's paths do not exist.
                settled(&path, std::fs::rename(&path, &sealed_path))?;
            }
            let keep = (owner == Some((of, earlier))).then_some(restored);
            settle_sealed(dir, &sealed_path, earlier, keep)?;
        } else if let Some((_, epoch, earlier)) = parse_final(&name)
            && earlier < attempt
            && epoch > restored
        {
            past.push(name);
        }
    }
    let own = dir.join(pending_dir_name(job, attempt));
    match std::fs::create_dir(&own) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(io_error(&own, e)),
        _ => {
            past.sort();
            Ok(past)
        }
    }
}

/// Renames `from` to `to` unless `to` is another file: a sink never replaces a file
/// it did not write (a rename would). A link, then the unlink of `from`; `to` already
/// the same file is a commit repeated after the link (by a retry or a restore), and
/// `from` gone by then was unlinked or sealed away by someone else: committed either
/// way. A foreign `to` is `AlreadyExists`.
fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::hard_link(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let (a, b) = (std::fs::symlink_metadata(from)?, std::fs::symlink_metadata(to)?);
            if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
                return Err(e);
            }
        }
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(from) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Commits the files of a sealed directory of attempt `attempt` with epochs up to
/// `keep` (if any), deletes the rest and the directory.
fn settle_sealed(dir: &Path, sealed: &Path, attempt: u32, keep: Option<u64>) -> Result<(), TaskError> {
    let entries = match std::fs::read_dir(sealed) {
        Ok(entries) => entries,
        // Another TaskManager finished with it.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(sealed, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error(sealed, e))?;
        let path = entry.path();
        match parse_pending(&entry.file_name().to_string_lossy()) {
            Some((subtask, epoch)) if keep.is_some_and(|k| epoch <= k) => {
                let committed = dir.join(final_name(subtask, epoch, attempt));
                match rename_new(&path, &committed) {
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(SinkError::Foreign { path: committed }.into()),
                    r => settled(&path, r)?,
                }
            }
            _ => settled(&path, std::fs::remove_file(&path))?,
        }
    }
    match std::fs::remove_dir(sealed) {
        // Another TaskManager is still emptying it; the next restore removes it.
        Err(e) if !matches!(e.kind(), ErrorKind::NotFound | ErrorKind::DirectoryNotEmpty) => Err(io_error(sealed, e)),
        _ => Ok(()),
    }
}

impl Transactional {
    /// The sink of `subtask` of attempt `attempt` of `job`, writing into `dir` (settled
    /// by [`recover_output`] first), starting with the epoch after checkpoint `restored`.
    pub fn open(dir: PathBuf, job: &str, attempt: u32, subtask: u32, restored: u64, commits: Arc<Commits>) -> Result<Self, TaskError> {
        let epoch = restored + 1;
        let pending = dir.join(pending_dir_name(job, attempt));
        let file = Self::create(&pending, subtask, epoch)?;
        Ok(Self { dir, pending, subtask, attempt, epoch, file, commits, buf: Vec::new(), closed: false })
    }

    /// Never creates the pending directory: once it is sealed, a superseded attempt
    /// cannot write another pending file.
    fn create(pending: &Path, subtask: u32, epoch: u64) -> Result<BufWriter<File>, TaskError> {
        let path = pending.join(pending_name(subtask, epoch));
        match File::create(&path) {
            Ok(f) => Ok(BufWriter::with_capacity(256 * 1024, f)),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(TaskError::Superseded(Refused::Write(path))),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// Closes the open epoch as the one checkpoint `closed_by` commits. An attempt's
    /// first epoch was opened as the one after its restored checkpoint; after a restore
    /// older than the newest completed checkpoint, checkpoint ids go on above that
    /// one, and the file takes the closing id so that it sorts after every epoch
    /// committed before.
    fn close_epoch(&mut self, closed_by: u64) -> Result<(), TaskError> {
        let open = self.pending.join(pending_name(self.subtask, self.epoch));
        self.file.flush().map_err(|e| io_error(&open, e))?;
        // Durable before the checkpoint that commits it can complete.
        self.file.get_ref().sync_data().map_err(|e| io_error(&open, e))?;
        let path = self.pending.join(pending_name(self.subtask, closed_by));
        if path != open {
            match std::fs::rename(&open, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(TaskError::Superseded(Refused::Write(path))),
                Err(e) => return Err(io_error(&open, e)),
            }
        }
        let committed = self.dir.join(final_name(self.subtask, closed_by, self.attempt));
        self.commits.closed.lock().unwrap_or_else(PoisonError::into_inner).push(Closed { epoch: closed_by, pending: path, committed });
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
                let mut w = out.lock().map_err(|_| SinkError::Poisoned)?;
                Ok(w.write_all(buf).map_err(SinkError::Write)?)
            }
            Sink::Transactional(t) => {
                lines(batch, &mut t.buf)?;
                t.file.write_all(&t.buf).map_err(|e| io_error(&t.pending.join(pending_name(t.subtask, t.epoch)), e))
            }
            Sink::Postgres(w) => {
                for r in records(batch) {
                    let r = r.map_err(|source| Bug::InvalidBatch { at: "sink got an invalid batch", source })?;
                    w.write(r.key, r.value).map_err(pg_error)?;
                }
                Ok(())
            }
            Sink::Kafka(w) => {
                let mut bad = None;
                let rs = records(batch).map_while(|r| r.map_err(|e| bad = Some(e)).ok()).map(|r| (r.ts, r.key, r.value));
                w.write(rs).map_err(SinkError::from)?;
                match bad {
                    Some(source) => Err(Bug::InvalidBatch { at: "sink got an invalid batch", source }.into()),
                    None => Ok(()),
                }
            }
            Sink::Discard => Ok(()),
        }
    }

    /// A checkpoint barrier passed: everything before it belongs to that checkpoint.
    pub fn barrier(&mut self, checkpoint: u64) -> Result<(), TaskError> {
        match self {
            Sink::Transactional(t) => {
                t.close_epoch(checkpoint)?;
                t.epoch = checkpoint + 1;
                t.file = Transactional::create(&t.pending, t.subtask, t.epoch)?;
                Ok(())
            }
            Sink::Postgres(w) => w.barrier(checkpoint).map_err(pg_error),
            // At least once: everything before the barrier is in Kafka before the
            // checkpoint can complete.
            Sink::Kafka(w) => Ok(w.flush().map_err(SinkError::from)?),
            _ => self.finish(),
        }
    }

    /// Flushes buffered output at the end of the input. A transactional sink's last
    /// epoch stays pending: the final checkpoint closes it ([`Sink::close_last`]) and
    /// its completion commits it, so a failure before that discards it like any
    /// pending epoch, and the restore writes its records once.
    pub fn finish(&mut self) -> Result<(), TaskError> {
        match self {
            Sink::Text { out, .. } => {
                let mut w = out.lock().map_err(|_| SinkError::Poisoned)?;
                Ok(w.flush().map_err(SinkError::Write)?)
            }
            Sink::Transactional(t) => {
                let open = t.pending.join(pending_name(t.subtask, t.epoch));
                t.file.flush().map_err(|e| io_error(&open, e))
            }
            Sink::Postgres(w) => w.finish().map_err(pg_error),
            Sink::Kafka(w) => Ok(w.flush().map_err(SinkError::from)?),
            Sink::Discard => Ok(()),
        }
    }

    /// A checkpoint after the end of the input: the last epoch becomes checkpoint
    /// `checkpoint`'s, once (a later checkpoint, after this one failed, finds it closed
    /// and commits it all the same: commits take every epoch up to theirs).
    pub fn close_last(&mut self, checkpoint: u64) -> Result<(), TaskError> {
        match self {
            Sink::Transactional(t) if !t.closed => {
                t.close_epoch(checkpoint)?;
                t.closed = true;
                Ok(())
            }
            Sink::Postgres(w) => w.close_last(checkpoint).map_err(pg_error),
            _ => Ok(()),
        }
    }

    /// Commits every closed epoch up to `checkpoint`, which completed (idempotent: the
    /// TaskManager may have committed them when it heard).
    pub fn commit(&mut self, checkpoint: u64) -> Result<(), TaskError> {
        match self {
            Sink::Transactional(t) => t.commits.commit(checkpoint),
            Sink::Postgres(w) => w.commit(checkpoint).map(drop).map_err(pg_error),
            _ => Ok(()),
        }
    }
}

/// Renders a batch as `key<TAB>value` lines into `buf`.
fn lines(batch: &[u8], buf: &mut Vec<u8>) -> Result<(), TaskError> {
    buf.clear();
    for r in records(batch) {
        let r = r.map_err(|source| Bug::InvalidBatch { at: "sink got an invalid batch", source })?;
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

    fn batch(value: &str) -> Vec<u8> {
        let mut batch = Vec::new();
        weir_types::batch::push_record(&mut batch, 0, b"k", value.as_bytes());
        batch
    }

    /// Attempt `attempt` of job "j", restored from `restored` owned by `owner`.
    fn attempt(dir: &Path, attempt: u32, restored: u64, owner: Option<u32>) -> Result<(Sink, Arc<Commits>), TaskError> {
        recover_output(dir, "j", attempt, restored, owner.map(|o| ("j", o)))?;
        let commits = Arc::new(Commits::default());
        let t = Transactional::open(dir.into(), "j", attempt, 0, restored, commits.clone())?;
        Ok((Sink::Transactional(Box::new(t)), commits))
    }

    #[test]
    fn epochs_commit_with_checkpoints_and_a_restore_discards_what_followed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (mut sink, commits) = attempt(dir.path(), 0, 0, None)?;
        sink.write(&batch("1"))?;
        sink.barrier(1)?;
        sink.write(&batch("2"))?;
        sink.barrier(2)?;
        commits.commit(1)?;
        sink.write(&batch("3"))?;
        assert_eq!(names(dir.path()), vec![".pending-j.0", "part-0-1-a0"]);
        assert_eq!(names(&dir.path().join(".pending-j.0")), vec!["part-0-2", "part-0-3"]);
        drop(sink);
        // Attempt 1 restores checkpoint 2, which attempt 0 completed: epoch 2 is
        // committed, epoch 3 is gone.
        let _next = attempt(dir.path(), 1, 2, Some(0))?;
        assert_eq!(names(dir.path()), vec![".pending-j.1", "part-0-1-a0", "part-0-2-a0"]);
        assert_eq!(parse_final("part-3-10-a2"), Some((3, 10, 2)));
        assert_eq!(parse_final("part-3"), None);
        let parsed = |name| parse_pending_dir(name).map(|(run, attempt, sealed)| (run.job().to_string(), attempt, sealed));
        assert_eq!(parsed(".sealed-ab12.7"), Some(("ab12".into(), 7, true)));
        assert_eq!(parsed(".pending-ab12.0"), Some(("ab12".into(), 0, false)));
        assert_eq!(parsed(".pending-ab12"), None);
        assert_eq!(parsed(".pending-ab12.x"), None);
        Ok(())
    }

    /// A file at an epoch's committed name that this job did not write (someone put
    /// `part-0-1-a0` in the output directory) is refused by name, never replaced; a
    /// commit repeated after its link succeeded is no conflict.
    #[test]
    fn a_commit_never_replaces_a_file_it_did_not_write() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("part-0-1-a0"), "not yours\n")?;
        let (mut sink, commits) = attempt(dir.path(), 0, 0, None)?;
        sink.write(&batch("1"))?;
        sink.barrier(1)?;
        let err = commits.commit(1).map_err(|e| e.to_string());
        assert!(err.as_ref().is_err_and(|e| e.contains("part-0-1-a0") && e.contains("did not write")), "{err:?}");
        assert_eq!(std::fs::read_to_string(dir.path().join("part-0-1-a0"))?, "not yours\n");

        let (from, to) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&from, "mine")?;
        std::fs::hard_link(&from, &to)?;
        rename_new(&from, &to)?;
        assert!(!from.exists() && std::fs::read_to_string(&to)? == "mine", "a repeated commit completes");
        Ok(())
    }

    /// The zombie: attempt 0 runs on (a paused TaskManager woke up) after attempt 1
    /// restored from checkpoint 1 and sealed it. Whatever it tries, nothing of it
    /// becomes visible: not a commit of an epoch its checkpoint never completed, not
    /// the commit of its input's last epoch, not a new pending file.
    #[test]
    fn a_superseded_attempt_can_neither_commit_nor_write() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (mut zombie, zombie_commits) = attempt(dir.path(), 0, 0, None)?;
        zombie.write(&batch("1"))?;
        zombie.barrier(1)?;
        zombie.write(&batch("2"))?;
        zombie.barrier(2)?;
        zombie.write(&batch("3"))?;
        // Checkpoint 1 completed, but the TaskManager was paused before it heard.
        let (mut next, next_commits) = attempt(dir.path(), 1, 1, Some(0))?;
        assert_eq!(names(dir.path()), vec![".pending-j.1", "part-0-1-a0"]);

        assert!(matches!(zombie_commits.commit(2), Err(TaskError::Superseded(_))), "commit of a checkpoint of a superseded attempt");
        assert!(matches!(zombie.barrier(3), Err(TaskError::Superseded(_))), "a new pending file");
        zombie.write(&batch("end"))?;
        zombie.finish()?;
        let last = zombie.close_last(3).and_then(|()| zombie.commit(3));
        assert!(matches!(last, Err(TaskError::Superseded(_))), "the commit of its input's last epoch");
        let visible = names(dir.path());
        assert_eq!(visible, vec![".pending-j.1", "part-0-1-a0"], "nothing of the zombie became visible");

        next.write(&batch("2"))?;
        next.barrier(2)?;
        next_commits.commit(2)?;
        assert_eq!(names(dir.path()), vec![".pending-j.1", "part-0-1-a0", "part-0-2-a1"]);
        Ok(())
    }

    /// Only the attempt that completed the restored checkpoint has its pending epochs
    /// committed; an attempt that failed before completing one leaves nothing.
    #[test]
    fn a_restore_commits_only_the_owner_of_its_checkpoint() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (mut a0, _) = attempt(dir.path(), 0, 0, None)?;
        a0.write(&batch("a0"))?;
        a0.barrier(1)?;
        drop(a0);
        // Attempt 1 restored nothing (checkpoint 1 never completed) and wrote epoch 1
        // again; its checkpoint 1 completed but its TaskManager died before committing.
        let (mut a1, _) = attempt(dir.path(), 1, 0, None)?;
        a1.write(&batch("a1"))?;
        a1.barrier(1)?;
        drop(a1);
        let _a2 = attempt(dir.path(), 2, 1, Some(1))?;
        assert_eq!(names(dir.path()), vec![".pending-j.2", "part-0-1-a1"]);
        assert_eq!(std::fs::read_to_string(dir.path().join("part-0-1-a1"))?, "k\ta1\n");
        Ok(())
    }

    /// A new job continuing from an ended job's retained checkpoint settles that job's
    /// pending directories as its own earlier attempts': the epochs up to the
    /// checkpoint of the attempt that completed it are committed (its TaskManager died
    /// before it heard), the rest deleted; other jobs' directories are left alone.
    #[test]
    fn a_job_restored_from_another_jobs_checkpoint_commits_that_jobs_epochs_up_to_it() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        for (job, attempt) in [("old", 0), ("old", 1), ("other", 0)] {
            let commits = Arc::new(Commits::default());
            recover_output(dir.path(), job, attempt, 0, None)?;
            let mut s = Sink::Transactional(Box::new(Transactional::open(dir.path().into(), job, attempt, 0, 0, commits)?));
            for epoch in 1..=3 {
                s.write(&batch(&format!("{job}{attempt}-{epoch}")))?;
                s.barrier(epoch)?;
            }
        }
        // Attempt 1 of "old" completed checkpoint 2 and the job failed.
        recover_output(dir.path(), "new", 0, 2, Some(("old", 1)))?;
        assert_eq!(names(dir.path()), vec![".pending-new.0", ".pending-other.0", "part-0-1-a1", "part-0-2-a1"]);
        assert_eq!(std::fs::read_to_string(dir.path().join("part-0-2-a1"))?, "k\told1-2\n");
        Ok(())
    }

    /// A restore older than the newest committed epoch (a fallback past checkpoints
    /// that cannot be read, the last one the final checkpoint) keeps
    /// every committed file and names them; the new attempt's first file takes the id
    /// of the checkpoint that closes it, so it sorts after them.
    #[test]
    fn committed_output_past_the_restored_checkpoint_stays() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (mut a0, commits) = attempt(dir.path(), 0, 0, None)?;
        for epoch in 1..=3 {
            a0.write(&batch(&epoch.to_string()))?;
            a0.barrier(epoch)?;
        }
        commits.commit(3)?;
        a0.write(&batch("end"))?;
        a0.finish()?;
        a0.close_last(4)?;
        a0.commit(4)?;
        drop(a0);
        let before = names(dir.path());
        assert_eq!(before, vec![".pending-j.0", "part-0-1-a0", "part-0-2-a0", "part-0-3-a0", "part-0-4-a0"]);
        // Checkpoints 2 and 3 cannot be read: attempt 1 restores checkpoint 1.
        let past = recover_output(dir.path(), "j", 1, 1, Some(("j", 0)))?;
        assert_eq!(past, vec!["part-0-2-a0", "part-0-3-a0", "part-0-4-a0"]);
        let commits = Arc::new(Commits::default());
        let mut a1 = Sink::Transactional(Box::new(Transactional::open(dir.path().into(), "j", 1, 0, 1, commits.clone())?));
        a1.write(&batch("2 again"))?;
        // The driver's checkpoint ids go on above the newest completed one (3).
        a1.barrier(4)?;
        commits.commit(4)?;
        assert_eq!(names(dir.path()), vec![".pending-j.1", "part-0-1-a0", "part-0-2-a0", "part-0-3-a0", "part-0-4-a0", "part-0-4-a1"]);
        assert_eq!(std::fs::read_to_string(dir.path().join("part-0-4-a1"))?, "k\t2 again\n");
        for (name, content) in [("part-0-2-a0", "k\t2\n"), ("part-0-4-a0", "k\tend\n")] {
            assert_eq!(std::fs::read_to_string(dir.path().join(name))?, content, "{name} untouched");
        }
        Ok(())
    }

    /// The final checkpoint completed but the TaskManager died before its sink heard:
    /// the last epoch stays pending, and the restore of that checkpoint commits it, as
    /// any epoch of a restored checkpoint (once: a retried commit is a no-op).
    #[test]
    fn a_restore_of_the_final_checkpoint_commits_the_last_epoch() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (mut a0, commits) = attempt(dir.path(), 0, 0, None)?;
        a0.write(&batch("1"))?;
        a0.barrier(1)?;
        commits.commit(1)?;
        a0.write(&batch("end"))?;
        a0.finish()?;
        a0.close_last(2)?;
        a0.close_last(3)?;
        assert_eq!(names(&dir.path().join(".pending-j.0")), vec!["part-0-2"], "closed once, as the first checkpoint after the end");
        drop(a0);
        let _a1 = attempt(dir.path(), 1, 3, Some(0))?;
        assert_eq!(names(dir.path()), vec![".pending-j.1", "part-0-1-a0", "part-0-2-a0"]);
        assert_eq!(std::fs::read_to_string(dir.path().join("part-0-2-a0"))?, "k\tend\n");
        commits.commit(3)?;
        assert_eq!(names(dir.path()), vec![".pending-j.1", "part-0-1-a0", "part-0-2-a0"], "a late commit of the old attempt changes nothing");
        Ok(())
    }

    /// An epoch that cannot be committed holds back every later one.
    #[test]
    fn commits_are_ordered_and_idempotent() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (mut sink, commits) = attempt(dir.path(), 0, 0, None)?;
        for epoch in 1..=3 {
            sink.write(&batch(&epoch.to_string()))?;
            sink.barrier(epoch)?;
        }
        // Epoch 1's final name is taken by a non-empty directory: its rename fails.
        std::fs::create_dir_all(dir.path().join("part-0-1-a0/x"))?;
        assert!(commits.commit(3).is_err());
        assert!(!dir.path().join("part-0-2-a0").exists(), "epoch 2 waits for epoch 1");
        std::fs::remove_dir_all(dir.path().join("part-0-1-a0"))?;
        commits.commit(3)?;
        commits.commit(3)?;
        assert_eq!(names(dir.path()), vec![".pending-j.0", "part-0-1-a0", "part-0-2-a0", "part-0-3-a0"]);
        Ok(())
    }
}
