//! Store-level tests: whole checkpoints on a real directory.

use std::sync::Arc;

use weir_types::ids::JobId;

use crate::*;

const MAX: u32 = 4;

/// A state key in `group` (the store's layout: key group first, big-endian).
fn key(group: u16, name: &str) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn setup() -> (tempfile::TempDir, Arc<DirStorage>, JobCheckpoints) {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Arc::new(DirStorage::new(dir.path().join("checkpoints")).expect("storage"));
    let checkpoints = JobCheckpoints::new(storage.clone(), &job());
    (dir, storage, checkpoints)
}

enum Op {
    Put(u16, &'static str, &'static str),
    Delete(u16, &'static str),
}

fn state_file(kind: FileKind, ops: &[Op]) -> Vec<u8> {
    let mut w = StateFileWriter::new(kind);
    for op in ops {
        match op {
            Op::Put(g, k, v) => w.put(&key(*g, k), v.as_bytes()).expect("put"),
            Op::Delete(g, k) => w.delete(&key(*g, k)).expect("delete"),
        }
    }
    w.finish()
}

/// The job of every test here.
fn job() -> JobId {
    "job".parse().expect("a job id")
}

/// One keyed vertex ("sum", vertex 1) of parallelism 2 over 4 key groups: subtask 0 owns
/// groups [0, 2), subtask 1 [2, 4).
fn meta(id: u64, chains: [Vec<String>; 2]) -> CheckpointMeta {
    let [c0, c1] = chains;
    let task = |subtask: u32, key_groups, state| TaskMeta {
        subtask,
        key_groups,
        state,
        source: Some(id.to_le_bytes().to_vec()),
        sink: None,
        state_versions: Default::default(),
    };
    CheckpointMeta {
        job: job(),
        id,
        max_parallelism: MAX,
        vertices: vec![VertexMeta { uid: "sum".into(), parallelism: 2, tasks: vec![task(0, (0, 2), c0), task(1, (2, 4), c1)] }],
    }
}

/// Checkpoints 1-3: subtask 0 writes a full file then two deltas; subtask 1 a full file
/// at 1 and a new full file at 2 (a new chain), and nothing new at 3.
fn three_checkpoints(ck: &JobCheckpoints) -> [CheckpointMeta; 3] {
    let p = |id, subtask| ck.state_path(id, 1, subtask, 0);
    ck.write_state(&p(1, 0), &state_file(FileKind::Full, &[Op::Put(0, "a", "1"), Op::Put(1, "b", "1"), Op::Put(1, "c", "1")])).expect("write");
    ck.write_state(&p(1, 1), &state_file(FileKind::Full, &[Op::Put(2, "x", "1"), Op::Put(3, "y", "1")])).expect("write");
    let m1 = meta(1, [vec![p(1, 0)], vec![p(1, 1)]]);
    ck.complete(&m1).expect("complete 1");

    ck.write_state(&p(2, 0), &state_file(FileKind::Delta, &[Op::Put(0, "a", "2"), Op::Delete(1, "b"), Op::Put(0, "d", "2")])).expect("write");
    ck.write_state(&p(2, 1), &state_file(FileKind::Full, &[Op::Put(2, "x", "2")])).expect("write");
    let m2 = meta(2, [vec![p(1, 0), p(2, 0)], vec![p(2, 1)]]);
    ck.complete(&m2).expect("complete 2");

    // Re-adds a deleted key and deletes one added by the previous delta: order matters.
    ck.write_state(&p(3, 0), &state_file(FileKind::Delta, &[Op::Put(1, "b", "3"), Op::Delete(0, "d"), Op::Put(0, "a", "3")])).expect("write");
    let m3 = meta(3, [vec![p(1, 0), p(2, 0), p(3, 0)], vec![p(2, 1)]]);
    ck.complete(&m3).expect("complete 3");
    [m1, m2, m3]
}

fn kv(pairs: &[(Vec<u8>, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect()
}

fn flip_byte(storage: &DirStorage, path: &str, at: usize) {
    let file = storage.root().join(path);
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[at] ^= 0x40;
    std::fs::write(&file, bytes).expect("write");
}

#[test]
fn chains_apply_in_order_with_tombstones() {
    let (_dir, _storage, ck) = setup();
    let [m1, m2, m3] = three_checkpoints(&ck);
    let latest = ck.latest().expect("latest").expect("a checkpoint");
    assert_eq!(latest, m3);
    let load = |m: &CheckpointMeta, subtask: usize| ck.load_state(&m.vertices[0].tasks[subtask].state, 0..MAX).expect("load");
    assert_eq!(load(&m1, 0), kv(&[(key(0, "a"), "1"), (key(1, "b"), "1"), (key(1, "c"), "1")]));
    assert_eq!(load(&m2, 0), kv(&[(key(0, "a"), "2"), (key(0, "d"), "2"), (key(1, "c"), "1")]));
    assert_eq!(load(&m3, 0), kv(&[(key(0, "a"), "3"), (key(1, "b"), "3"), (key(1, "c"), "1")]));
    assert_eq!(load(&m3, 1), kv(&[(key(2, "x"), "2")]));
    assert_eq!(latest.vertices[0].tasks[0].source, Some(3u64.to_le_bytes().to_vec()));
    assert!(ck.load_state(&[], 0..MAX).expect("stateless").is_empty());
}

#[test]
fn load_state_keeps_only_the_owned_key_groups() {
    let (_dir, _storage, ck) = setup();
    let [_, _, m3] = three_checkpoints(&ck);
    let tasks = &m3.vertices[0].tasks;
    // Rescaled from 2 subtasks to 4: each new subtask owns one key group and reads every
    // old chain that overlaps it.
    let group = |g: u32| {
        let mut all = Vec::new();
        for task in tasks.iter().filter(|t| t.key_group_range().contains(&g)) {
            all.extend(ck.load_state(&task.state, g..g + 1).expect("load"));
        }
        all
    };
    assert_eq!(group(0), kv(&[(key(0, "a"), "3")]));
    assert_eq!(group(1), kv(&[(key(1, "b"), "3"), (key(1, "c"), "1")]));
    assert_eq!(group(2), kv(&[(key(2, "x"), "2")]));
    assert!(group(3).is_empty());
    assert!(ck.load_state(&tasks[0].state, 2..4).expect("foreign groups").is_empty());
}

#[test]
fn broadcast_state_loads_whatever_the_key_groups() {
    let (_dir, _storage, ck) = setup();
    let broadcast = weir_types::keygroup::BROADCAST_GROUP;
    let p = |id| ck.state_path(id, 1, 0, 0);
    ck.write_state(&p(1), &state_file(FileKind::Full, &[Op::Put(0, "a", "1"), Op::Put(broadcast, "rule", "1"), Op::Put(broadcast, "old", "1")]))
        .expect("write");
    ck.write_state(&p(2), &state_file(FileKind::Delta, &[Op::Put(broadcast, "rule", "2"), Op::Delete(broadcast, "old")])).expect("write");
    let chain = [p(1), p(2)];
    assert_eq!(ck.load_state(&chain, 0..1).expect("load"), kv(&[(key(0, "a"), "1"), (key(broadcast, "rule"), "2")]));
    // A new subtask that owns none of the old one's groups still gets the broadcast state.
    assert_eq!(ck.load_state(&chain, 5..5).expect("load"), kv(&[(key(broadcast, "rule"), "2")]));
}

#[test]
fn a_chain_must_start_with_a_full_file_and_keys_need_a_key_group() {
    let (_dir, _storage, ck) = setup();
    let [_, _, m3] = three_checkpoints(&ck);
    let chain = &m3.vertices[0].tasks[0].state;
    let err = ck.load_state(&chain[1..], 0..MAX).expect_err("delta first");
    assert!(matches!(&err, CheckpointError::Invalid { path, .. } if path == &chain[1]), "{err}");
    let err = ck.load_state(&[chain[0].clone(), chain[0].clone()], 0..MAX).expect_err("full after full");
    assert!(matches!(err, CheckpointError::Invalid { .. }), "{err}");

    let mut w = StateFileWriter::new(FileKind::Full);
    w.put(b"k", b"v").expect("put");
    ck.write_state("job/chk-9/short.state", &w.finish()).expect("write");
    let err = ck.load_state(&["job/chk-9/short.state".to_owned()], 0..MAX).expect_err("short key");
    assert!(err.to_string().contains("job/chk-9/short.state") && err.to_string().contains("no key group"), "{err}");
}

#[test]
fn latest_skips_a_checkpoint_whose_state_file_was_corrupted() {
    let (_dir, storage, ck) = setup();
    let [_, m2, _] = three_checkpoints(&ck);
    flip_byte(&storage, &ck.state_path(3, 1, 0, 0), 20);
    assert_eq!(ck.latest().expect("latest"), Some(m2));
    let err = ck.load_state(&[ck.state_path(1, 1, 0, 0), ck.state_path(2, 1, 0, 0), ck.state_path(3, 1, 0, 0)], 0..MAX).expect_err("corrupt");
    assert!(matches!(&err, CheckpointError::Corrupt { path, source: FormatError::ChecksumMismatch { .. } } if path == "job/chk-3/1-0-a0.state"));
    // The full file every chain shares: nothing is left to restore.
    flip_byte(&storage, &ck.state_path(1, 1, 0, 0), 10);
    assert_eq!(ck.latest().expect("latest"), None);
}

/// A restart hears which completed checkpoints it passes over, and why.
#[test]
fn find_restore_names_the_checkpoints_it_skipped() {
    let (_dir, storage, ck) = setup();
    let [m1, _, _] = three_checkpoints(&ck);
    flip_byte(&storage, &ck.state_path(3, 1, 0, 0), 20);
    flip_byte(&storage, &ck.metadata_path(2), 8);
    let r = ck.find_restore().expect("find");
    assert_eq!(r.found, Some(m1));
    assert_eq!(r.skipped.iter().map(|s| s.id).collect::<Vec<_>>(), [3, 2]);
    assert!(r.skipped[0].cause.contains("job/chk-3/1-0-a0.state"), "{}", r.skipped[0].cause);
    assert!(r.skipped[1].cause.contains("job/chk-2/_metadata"), "{}", r.skipped[1].cause);
    assert_eq!(checkpoint_of_metadata_path(&ck.metadata_path(12)), Some(12));
    for other in ["job/chk-07/_metadata", "job/chk-1/x.state", "job/chk-1/_metadata/x", "chk-1/_metadata"] {
        assert_eq!(checkpoint_of_metadata_path(other), None, "{other}");
    }
    // Storage that cannot be listed is an error, never "nothing to restore".
    storage.delete("job").expect("delete");
    storage.write("job", b"a file where the directory was").expect("write");
    assert!(matches!(ck.find_restore(), Err(StorageError::Io { .. })));
}

#[test]
fn latest_skips_a_checkpoint_whose_state_file_is_missing_or_metadata_corrupt() {
    let (_dir, storage, ck) = setup();
    let [m1, _, _] = three_checkpoints(&ck);
    storage.delete(&ck.state_path(3, 1, 0, 0)).expect("delete");
    flip_byte(&storage, &ck.metadata_path(2), 8);
    assert_eq!(ck.latest().expect("latest"), Some(m1));
}

#[test]
fn latest_skips_metadata_that_points_outside_the_storage() {
    let (_dir, _storage, ck) = setup();
    let [_, m2, _] = three_checkpoints(&ck);
    let mut hostile = meta(4, [vec!["../../etc/passwd".into()], vec![]]);
    hostile.vertices[0].tasks[1].state = vec!["/etc/passwd".into()];
    ck.complete(&hostile).expect("complete");
    // Also metadata that claims another id than its directory's.
    ck.storage().write(&ck.metadata_path(3), &encode_meta(&meta(5, [vec![], vec![]]))).expect("write");
    assert_eq!(ck.latest().expect("latest"), Some(m2));
}

#[test]
fn a_checkpoint_directory_without_metadata_is_ignored() {
    let (_dir, storage, ck) = setup();
    let [_, _, m3] = three_checkpoints(&ck);
    ck.write_state(&ck.state_path(4, 1, 0, 0), &state_file(FileKind::Full, &[])).expect("write");
    ck.write_state(&ck.state_path(4, 1, 1, 0), &state_file(FileKind::Full, &[])).expect("write");
    // Names that are not canonical checkpoint directories are not checkpoints either.
    for other in ["chk-07", "chk-x", "savepoints", "chk-"] {
        storage.write(&format!("job/{other}/{METADATA_FILE}"), &encode_meta(&meta(7, [vec![], vec![]]))).expect("write");
    }
    assert_eq!(ck.checkpoint_ids().expect("ids"), [1, 2, 3, 4]);
    assert_eq!(ck.latest().expect("latest"), Some(m3));
}

#[test]
fn retention_keeps_every_file_the_retained_chains_reference() {
    let (_dir, storage, ck) = setup();
    three_checkpoints(&ck);
    let p = |id, subtask| ck.state_path(id, 1, subtask, 0);
    // 4: subtask 0 continues its chain, subtask 1 starts a new one. 5: in progress.
    ck.write_state(&p(4, 0), &state_file(FileKind::Delta, &[Op::Put(1, "c", "4")])).expect("write");
    ck.write_state(&p(4, 1), &state_file(FileKind::Full, &[Op::Put(3, "y", "4")])).expect("write");
    let m4 = meta(4, [vec![p(1, 0), p(2, 0), p(3, 0), p(4, 0)], vec![p(4, 1)]]);
    ck.complete(&m4).expect("complete 4");
    ck.write_state(&p(5, 0), &state_file(FileKind::Delta, &[])).expect("write");
    let list = |id| storage.list(&ck.checkpoint_dir(id)).expect("list");

    ck.retain(2).expect("retain 2");
    assert_eq!(list(1), ["1-0-a0.state"]);
    // Checkpoint 3 still uses subtask 1's full file of checkpoint 2.
    assert_eq!(list(2), ["1-0-a0.state", "1-1-a0.state"]);
    assert_eq!(list(3), ["1-0-a0.state", METADATA_FILE]);
    assert_eq!(list(4), ["1-0-a0.state", "1-1-a0.state", METADATA_FILE]);
    assert_eq!(list(5), ["1-0-a0.state"]);

    ck.retain(1).expect("retain 1");
    assert_eq!(list(1), ["1-0-a0.state"]);
    assert_eq!(list(2), ["1-0-a0.state"]);
    assert_eq!(list(3), ["1-0-a0.state"]);
    assert_eq!(list(4), ["1-0-a0.state", "1-1-a0.state", METADATA_FILE]);
    assert_eq!(ck.checkpoint_ids().expect("ids"), [1, 2, 3, 4, 5]);
    assert_eq!(ck.latest().expect("latest"), Some(m4.clone()));
    assert_eq!(
        ck.load_state(&m4.vertices[0].tasks[0].state, 0..MAX).expect("load"),
        kv(&[(key(0, "a"), "3"), (key(1, "b"), "3"), (key(1, "c"), "4")])
    );

    // A new full file for subtask 0 frees the old chain; an abandoned attempt (6) older
    // than the newest completed checkpoint goes too.
    ck.write_state(&p(6, 0), &state_file(FileKind::Full, &[])).expect("write");
    ck.write_state(&p(7, 0), &state_file(FileKind::Full, &[Op::Put(0, "z", "7")])).expect("write");
    ck.complete(&meta(7, [vec![p(7, 0)], vec![p(4, 1)]])).expect("complete 7");
    ck.retain(1).expect("retain 1");
    assert_eq!(ck.checkpoint_ids().expect("ids"), [4, 7]);
    assert_eq!(list(4), ["1-1-a0.state"]);
    // retain(0) still keeps the newest.
    ck.retain(0).expect("retain 0");
    assert_eq!(ck.latest().expect("latest").map(|m| m.id), Some(7));

    ck.delete_all().expect("delete all");
    assert!(ck.checkpoint_ids().expect("ids").is_empty());
    assert_eq!(ck.latest().expect("latest"), None);
}

#[test]
fn retention_without_a_completed_checkpoint_deletes_nothing() {
    let (_dir, _storage, ck) = setup();
    ck.write_state(&ck.state_path(1, 0, 0, 0), &state_file(FileKind::Full, &[])).expect("write");
    ck.retain(1).expect("retain");
    assert_eq!(ck.checkpoint_ids().expect("ids"), [1]);
}

#[test]
fn complete_refuses_metadata_that_would_not_restore() {
    let (_dir, _storage, ck) = setup();
    let mut other = meta(1, [vec![], vec![]]);
    other.job = "other".parse().expect("a job id");
    assert!(matches!(ck.complete(&other), Err(CheckpointError::Invalid { .. })));
    let mut bad = meta(1, [vec![], vec![]]);
    bad.vertices[0].tasks[1].key_groups = (2, 5);
    assert!(matches!(ck.complete(&bad), Err(CheckpointError::Invalid { .. })));
    assert_eq!(ck.latest().expect("latest"), None);
}

#[test]
fn a_savepoint_is_a_relocatable_copy() {
    let (dir, _storage, ck) = setup();
    let [_, _, m3] = three_checkpoints(&ck);
    let target = DirStorage::new(dir.path().join("savepoints")).expect("target");
    ck.export(&m3, &target, "sp/one").expect("export");
    assert_eq!(target.list("sp/one").expect("list"), ["0.state", "1.state", "2.state", "3.state", METADATA_FILE]);
    assert!(matches!(ck.export(&m3, &target, "sp/one"), Err(CheckpointError::Invalid { .. })), "overwrote a savepoint");

    // The job's checkpoints go away; the savepoint, moved elsewhere, still restores.
    ck.delete_all().expect("delete all");
    std::fs::rename(target.root().join("sp/one"), target.root().join("moved")).expect("move");
    let restored = load_savepoint(&target, "moved").expect("load savepoint");
    assert_eq!(restored.id, 3);
    assert_eq!(restored.vertices[0].tasks[0].state, ["moved/0.state", "moved/1.state", "moved/2.state"]);
    assert_eq!(restored.vertices[0].tasks[1].state, ["moved/3.state"]);
    assert_eq!(restored.vertices[0].tasks[0].source, m3.vertices[0].tasks[0].source);
    let state = load_state(&target, &restored.vertices[0].tasks[0].state, 0..MAX).expect("load");
    assert_eq!(state, kv(&[(key(0, "a"), "3"), (key(1, "b"), "3"), (key(1, "c"), "1")]));

    flip_byte(&target, "moved/2.state", 12);
    let err = load_savepoint(&target, "moved").expect_err("corrupted savepoint");
    assert!(err.to_string().contains("moved/2.state"), "{err}");
    assert!(matches!(load_savepoint(&target, "nowhere"), Err(CheckpointError::Storage(StorageError::NotFound { .. }))));
}

#[test]
fn export_refuses_a_corrupted_checkpoint() {
    let (dir, storage, ck) = setup();
    let [_, _, m3] = three_checkpoints(&ck);
    flip_byte(&storage, &ck.state_path(2, 1, 0, 0), 12);
    let target = DirStorage::new(dir.path().join("savepoints")).expect("target");
    let err = ck.export(&m3, &target, "sp").expect_err("corrupted");
    assert!(matches!(&err, CheckpointError::Corrupt { path, .. } if path == "job/chk-2/1-0-a0.state"), "{err}");
    assert!(matches!(load_savepoint(&target, "sp"), Err(CheckpointError::Storage(StorageError::NotFound { .. }))));
}
