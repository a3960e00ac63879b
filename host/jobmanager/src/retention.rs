//! Checkpoints of ended jobs: a finished or cancelled job keeps only its newest
//! completed checkpoint, and only the newest `keep` such jobs keep even that; older
//! ones lose their checkpoint directories. Failed jobs keep what they retained (it is
//! what a user resumes them from), and savepoints live in their own directories and
//! are never touched. A job a running one started from (`fromCheckpointOf`) keeps its
//! checkpoints until that one completed a checkpoint of its own (a full one,
//! referencing none of the old job's files): before, a restart restores the old job's. Which jobs go is decided here without I/O; [`delete`] and
//! [`drop_incomplete`] do it.

use weir_checkpoint::{CheckpointStorage, DirStorage};
use weir_types::deployment::JobStatus;
use weir_types::ids::JobId;

/// An ended job as retention sees it.
pub(crate) struct Ended<'a> {
    pub(crate) id: &'a JobId,
    pub(crate) status: JobStatus,
    pub(crate) checkpointed: bool,
}

/// Whether a job that ended so gives up its checkpoints once `keep` newer ones did.
pub(crate) fn prunable(status: JobStatus, checkpointed: bool) -> bool {
    checkpointed && matches!(status, JobStatus::Finished | JobStatus::Canceled)
}

/// The jobs, of `ended` (oldest first), whose checkpoints go: every prunable one but
/// the newest `keep`, and but those that running jobs without a checkpoint of their
/// own started from (`held`).
pub(crate) fn expired<'a>(ended: impl DoubleEndedIterator<Item = Ended<'a>>, keep: usize, held: &[&str]) -> Vec<JobId> {
    ended.rev().filter(|e| prunable(e.status, e.checkpointed)).skip(keep).filter(|e| !held.contains(&e.id.as_str())).map(|e| e.id.clone()).collect()
}

/// Deletes job `job`'s checkpoints (`chk-*`) under the storage `root`, then its
/// directory if nothing else is in it. Blocking.
pub(crate) fn delete(root: &str, job: &JobId) -> Result<(), weir_checkpoint::StorageError> {
    let storage = DirStorage::new(root)?;
    let mut others = false;
    for name in storage.list(job.as_str())? {
        if name.starts_with("chk-") {
            storage.delete(&format!("{job}/{name}"))?;
        } else {
            others = true;
        }
    }
    if !others {
        storage.delete(job.as_str())?;
    }
    Ok(())
}

/// Deletes job `job`'s checkpoints newer than its newest completed one (`chk-<k>`
/// without metadata): they were in flight when it ended and will never complete.
/// Older ones without metadata may hold files a retained checkpoint still references,
/// and stay. Blocking.
pub(crate) fn drop_incomplete(root: &str, job: &JobId) -> Result<(), weir_checkpoint::StorageError> {
    let storage = DirStorage::new(root)?;
    let ids: Vec<u64> = storage.list(job.as_str())?.iter().filter_map(|n| n.strip_prefix("chk-")?.parse().ok()).collect();
    let complete = |id: u64| storage.size(&format!("{job}/chk-{id}/{}", weir_checkpoint::METADATA_FILE)).is_ok();
    let newest = ids.iter().copied().filter(|&id| complete(id)).max().unwrap_or(0);
    for id in ids.into_iter().filter(|&id| id > newest) {
        storage.delete(&format!("{job}/chk-{id}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> JobId {
        s.parse().expect("job id")
    }

    #[test]
    fn only_finished_and_cancelled_checkpointed_jobs_past_the_newest_keep_go() {
        let ids: Vec<JobId> = ["a", "b", "c", "d", "e", "f"].iter().map(|s| id(s)).collect();
        let statuses = [JobStatus::Finished, JobStatus::Failed, JobStatus::Canceled, JobStatus::Finished, JobStatus::Finished, JobStatus::Canceled];
        let checkpointed = [true, true, true, false, true, true];
        let ended = || ids.iter().zip(statuses).zip(checkpointed).map(|((id, status), checkpointed)| Ended { id, status, checkpointed });
        // Newest first: f, e (kept), then c and a; b failed, d had no checkpoints.
        assert_eq!(expired(ended(), 2, &[]), vec![id("c"), id("a")]);
        assert_eq!(expired(ended(), 0, &[]), vec![id("f"), id("e"), id("c"), id("a")]);
        assert!(expired(ended(), 4, &[]).is_empty());
        // A running job started from c's checkpoint: c keeps it.
        assert_eq!(expired(ended(), 2, &["c"]), vec![id("a")]);
    }

    #[test]
    fn deleting_keeps_what_is_not_a_checkpoint() -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let job = root.path().join("j1");
        std::fs::create_dir_all(job.join("chk-3"))?;
        std::fs::write(job.join("chk-3/_metadata"), b"m")?;
        std::fs::create_dir_all(job.join("my-savepoint"))?;
        let root_str = root.path().display().to_string();
        delete(&root_str, &id("j1"))?;
        assert!(!job.join("chk-3").exists());
        assert!(job.join("my-savepoint").exists(), "only checkpoints are deleted");
        std::fs::remove_dir_all(job.join("my-savepoint"))?;
        std::fs::create_dir_all(job.join("chk-4"))?;
        delete(&root_str, &id("j1"))?;
        assert!(!job.exists(), "an emptied job directory goes too");
        delete(&root_str, &id("j2"))?;

        // Of an ended job's checkpoints, those newer than the newest completed go.
        for (k, done) in [(1, false), (2, true), (3, false)] {
            std::fs::create_dir_all(job.join(format!("chk-{k}")))?;
            if done {
                std::fs::write(job.join(format!("chk-{k}/_metadata")), b"m")?;
            }
        }
        drop_incomplete(&root_str, &id("j1"))?;
        assert!(job.join("chk-1").exists() && job.join("chk-2").exists() && !job.join("chk-3").exists());
        Ok(())
    }
}
