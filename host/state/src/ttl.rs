//! State time-to-live in the host: dropping expired state in the background.
//!
//! A keyed operator with a state TTL (plan: `state_ttl_ms`) stores its value state,
//! map entry values and list elements with their expiry instant in front (processing
//! time ms, `i64` little-endian; the guest SDK writes and checks it). The guest never
//! returns expired state, but state it never reads again would stay forever: the host
//! drops it incrementally, as Flink's state backends do, in two places.
//!
//! - The operator's [`ValueCache`](crate::ValueCache): a rotating cursor over a bounded
//!   number of entries each time ([`ValueCache::sweep_expired`](crate::ValueCache::sweep_expired));
//!   an expired value is cleared like any state clear (a tombstone that reaches fjall and
//!   incremental checkpoints).
//! - fjall: a bounded scan of the operator's value and map entries within the subtask's
//!   key groups ([`TaskState::sweep_expired`](crate::TaskState::sweep_expired)), resumed
//!   where the previous one stopped; deletions are recorded for incremental checkpoints.
//!
//! The expiry is absolute, so it survives checkpoints, restores and rescaling; a
//! restored entry already expired reads as absent and is swept like any other.

/// Bytes of the expiry prefix.
pub const EXPIRY_LEN: usize = 8;

/// True if TTL'd `value` expired at processing time `now`. A value too short to hold an
/// expiry counts as expired, as the guest reads it.
#[inline]
pub fn expired(value: &[u8], now: i64) -> bool {
    match value.first_chunk::<EXPIRY_LEN>() {
        Some(expiry) => i64::from_le_bytes(*expiry) <= now,
        None => true,
    }
}

/// Where the fjall sweep of one operator goes on: the key group it is in and the first
/// key it has not looked at yet in it.
#[derive(Debug, Default, Clone)]
pub struct SweepCursor {
    pub(crate) group: u32,
    pub(crate) next: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_the_first_eight_bytes() {
        let mut v = 100i64.to_le_bytes().to_vec();
        v.push(7);
        assert!(!expired(&v, 99));
        assert!(expired(&v, 100));
        assert!(expired(b"short", 0));
    }

    use crate::{StateError, StateStore, TaskState};
    use weir_types::keygroup::key_hash;

    fn ttld(expiry: i64, v: &[u8]) -> Vec<u8> {
        let mut out = expiry.to_le_bytes().to_vec();
        out.extend_from_slice(v);
        out
    }

    fn store() -> Result<(tempfile::TempDir, TaskState), StateError> {
        let dir = tempfile::tempdir().map_err(|e| StateError::Backend(e.into()))?;
        let task = StateStore::open(dir.path())?.task("job", 128, 0..128)?.track_changes();
        Ok((dir, task))
    }

    /// The keys a delta deletes, and those it sets.
    fn delta(task: &TaskState) -> Result<(usize, usize), StateError> {
        let d = task.capture(Vec::new()).delta()?;
        Ok((d.iter().filter(|(_, v)| v.is_none()).count(), d.iter().filter(|(_, v)| v.is_some()).count()))
    }

    #[test]
    fn the_cache_sweep_clears_expired_values_only_and_checkpoints_see_it() -> Result<(), StateError> {
        let (_dir, task) = store()?;
        let mut cache = task.value_cache(1, 1 << 20);
        for k in 0..10u8 {
            let i = cache.entry(key_hash(&[k]), &[k])?;
            // Even keys expire at 100, odd ones at 200.
            cache.set(i, Some(&ttld(if k % 2 == 0 { 100 } else { 200 }, &[k])));
        }
        let mut overlay = Vec::new();
        cache.capture_into(&mut overlay);
        task.capture(overlay);
        assert_eq!(cache.sweep_expired(99, 100), 0, "nothing expired yet");
        // A bounded sweep: four entries per call, resumed where it stopped.
        assert_eq!(cache.sweep_expired(100, 4) + cache.sweep_expired(100, 4) + cache.sweep_expired(100, 4), 5);
        assert_eq!(cache.live(), 5);
        let mut overlay = Vec::new();
        cache.capture_into(&mut overlay);
        let d = task.capture(overlay).delta()?;
        let deleted: Vec<_> = d.iter().filter(|(_, v)| v.is_none()).collect();
        assert_eq!((deleted.len(), d.len()), (5, 5), "the incremental capture holds exactly the five deletions");
        cache.flush()?;
        assert_eq!(task.stored_entries(1)?, 5, "the deletions reached fjall");
        Ok(())
    }

    #[test]
    fn the_fjall_sweep_deletes_expired_value_and_map_entries_in_bounded_steps() -> Result<(), StateError> {
        let (_dir, task) = store()?;
        let mut cache = task.value_cache(1, 1 << 20);
        for k in 0..50u8 {
            let i = cache.entry(key_hash(&[k]), &[k])?;
            cache.set(i, Some(&ttld(if k < 20 { 100 } else { 200 }, &[k])));
            task.map_put(1, "m", &[k], b"f", &ttld(if k < 30 { 100 } else { 200 }, b"v"))?;
        }
        cache.flush()?;
        // Another operator's state is not touched.
        task.map_put(2, "m", &[1], b"f", &ttld(100, b"v"))?;
        task.capture(Vec::new());
        assert_eq!(task.stored_entries(1)?, 100);
        let mut cursor = SweepCursor::default();
        let mut dropped = 0;
        let mut calls = 0;
        while task.stored_entries(1)? > 50 {
            let n = task.sweep_expired(1, 100, &mut cursor, 7)?;
            assert!(n <= 7);
            dropped += n;
            calls += 1;
            assert!(calls < 100, "the sweep makes progress");
        }
        assert_eq!(dropped, 50);
        assert!(calls > 7, "bounded: {calls} calls");
        assert_eq!(task.map_get(1, "m", &[40], b"f")?, Some(ttld(200, b"v")), "live entries stay");
        assert_eq!(task.map_get(1, "m", &[0], b"f")?, None);
        assert_eq!(task.map_get(2, "m", &[1], b"f")?, Some(ttld(100, b"v")), "other operators are not swept");
        assert_eq!(delta(&task)?, (50, 0), "the deletions are in the next incremental capture");
        // Another full round finds nothing more.
        for _ in 0..20 {
            assert_eq!(task.sweep_expired(1, 100, &mut cursor, 7)?, 0);
        }
        Ok(())
    }

    #[test]
    fn a_restore_of_expired_entries_keeps_them_only_until_swept() -> Result<(), StateError> {
        let (_dir, task) = store()?;
        let mut cache = task.value_cache(1, 1 << 20);
        for k in 0..4u8 {
            let i = cache.entry(key_hash(&[k]), &[k])?;
            cache.set(i, Some(&ttld(if k < 2 { 100 } else { 1_000 }, &[k])));
        }
        task.map_put(1, "m", &[0], b"f", &ttld(100, b"v"))?;
        let mut overlay = Vec::new();
        cache.capture_into(&mut overlay);
        let checkpoint = task.capture(overlay).full().map_err(|e| StateError::Backend(fjall::Error::Io(std::io::Error::other(e))))?;
        assert_eq!(checkpoint.len(), 5, "the checkpoint holds expired entries as they were");

        let (_dir2, restored) = store()?;
        restored.restore(&checkpoint)?;
        let mut cache = restored.value_cache(1, 1 << 20);
        let i = cache.entry(key_hash(&[0]), &[0])?;
        assert!(cache.get(i).is_some_and(|v| expired(v, 500)), "restored unchanged: the guest reads it as absent");
        let j = cache.entry(key_hash(&[3]), &[3])?;
        assert!(cache.get(j).is_some_and(|v| !expired(v, 500)));
        assert_eq!(cache.sweep_expired(500, 10), 1);
        cache.flush()?;
        assert_eq!(restored.sweep_expired(1, 500, &mut SweepCursor::default(), 100)?, 2, "the uncached value and the map entry");
        let full = restored.capture(Vec::new()).full().map_err(|e| StateError::Backend(fjall::Error::Io(std::io::Error::other(e))))?;
        assert_eq!(full.len(), 2, "only the live entries are left");
        Ok(())
    }
}
