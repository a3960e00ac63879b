//! Checkpoint cost of keyed state at scale, through the libraries a TaskManager uses
//! (no job, no Wasm): the duration and size of a full checkpoint of `WEIR_BENCH_KEYS`
//! keys (default 1M, 8-byte keys and values), of deltas with 1% of the keys changed
//! (whose size must track the 1%, not the whole state), and of restoring the chain.
//!
//! `cargo bench --bench checkpoint`. The numbers are printed, never asserted: timings
//! on a shared two-core machine are not a test. What is checked is that the files hold
//! what they must (entry counts, restored values), or the numbers would mean nothing.
//!
//! Each checkpoint is measured as the engine splits it: the synchronous part on the
//! subtask's thread (flushing the value cache to fjall, then the fjall snapshot and the
//! set of changed keys), which stalls the hot path, and the asynchronous part
//! (`weir_taskmanager::checkpoint::write_state`: reading the snapshot, encoding, and a
//! durable atomic write), which runs on its own thread in the engine.
//!
//! `WEIR_BENCH_CACHE_MIB` (default 32, `--state-cache-mib`'s default) sizes the value
//! cache: with 1M keys it is smaller than the state, so, as in a real job, most
//! entries were already written back when a barrier comes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use weir_checkpoint::{DirStorage, FileKind, JobCheckpoints, StateFileView, StateFileWriter, load_state};
use weir_state::{Capture, StateStore, TaskState, ValueCache};
use weir_taskmanager::checkpoint::{Writer, write_state};
use weir_types::keygroup::key_hash;

const MAX_PARALLELISM: u32 = 128;
/// The keyed operator's id in the state keys.
const OP: u32 = 1;
/// Records between `end_batch` calls, about what one keyed batch holds in a job.
const BATCH: u64 = 1024;
/// One key in this many changes between checkpoints.
const CHANGE_EVERY: u64 = 100;
/// Incremental checkpoints after the full one (the engine allows up to 8 per chain).
const DELTAS: u64 = 3;
/// The subtask whose state files are written (vertex 0, subtask 0).
const VERTEX: u32 = 0;
const SUBTASK: u32 = 0;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// The value key `i` holds after `round` rounds of changes (0: as first written).
fn value(i: u64, round: u64) -> [u8; 8] {
    (i ^ (round << 56)).to_le_bytes()
}

/// Keys changed in round `round` (1-based): one in `CHANGE_EVERY`, a different one each
/// round, spread over the whole key space (and so over every key group).
fn changed_keys(keys: u64, round: u64) -> impl Iterator<Item = u64> {
    (0..keys / CHANGE_EVERY).map(move |j| j * CHANGE_EVERY + round % CHANGE_EVERY)
}

/// Writes `keys` through the value cache in batches, as a keyed operator does.
fn write_keys(cache: &mut ValueCache, keys: impl Iterator<Item = u64>, round: u64) -> Result<u64> {
    let mut n = 0;
    for i in keys {
        let k = key(i);
        let index = cache.entry(key_hash(&k), &k)?;
        cache.set(index, Some(&value(i, round)));
        n += 1;
        if n % BATCH == 0 {
            cache.end_batch()?;
        }
    }
    cache.end_batch()?;
    Ok(n)
}

/// What a subtask does at a barrier: copy the cache's dirty entries, then capture.
/// Returns the capture, the whole synchronous time and the copy's share of it.
fn barrier(cache: &mut ValueCache, task: &TaskState) -> Result<(Capture, Duration, Duration)> {
    let start = Instant::now();
    let mut overlay = Vec::new();
    cache.capture_into(&mut overlay);
    let copied = start.elapsed();
    let capture = task.capture(overlay);
    Ok((capture, start.elapsed(), copied))
}

struct Written {
    path: String,
    secs: Duration,
    bytes: u64,
    entries: u64,
}

fn persist(store: &JobCheckpoints, root: &Path, capture: &Capture, kind: FileKind, id: u64) -> Result<Written> {
    let start = Instant::now();
    let path = write_state(store, capture, kind, id, Writer { vertex: VERTEX, subtask: SUBTASK, attempt: 0 })
        .map_err(|e| anyhow!("writing the state of checkpoint {id}: {e}"))?;
    let secs = start.elapsed();
    let file = root.join(&path);
    let bytes = std::fs::metadata(&file).with_context(|| format!("state file {}", file.display()))?.len();
    // Read back outside the timing: the entry count is what makes the size meaningful.
    let raw = store.storage().read(&path)?;
    let entries = StateFileView::parse(&raw).with_context(|| format!("state file {path}"))?.len();
    Ok(Written { path, secs, bytes, entries })
}

/// Where `write_state`'s time goes, measured by redoing its steps one by one after it:
/// reading the capture (the fjall snapshot), encoding the file, and the durable write
/// (to a scratch path). The read is warmer the second time, so it is a lower bound.
fn breakdown(store: &JobCheckpoints, capture: &Capture, kind: FileKind) -> Result<String> {
    let start = Instant::now();
    let mut w = StateFileWriter::new(kind);
    let read = match kind {
        FileKind::Full => {
            let entries = capture.full().map_err(anyhow::Error::msg)?;
            let read = start.elapsed();
            for (k, v) in &entries {
                w.put(k, v)?;
            }
            read
        }
        FileKind::Delta => {
            let changes = capture.delta()?;
            let read = start.elapsed();
            for (k, v) in &changes {
                match v {
                    Some(v) => w.put(k, v)?,
                    None => w.delete(k)?,
                }
            }
            read
        }
    };
    let bytes = w.finish();
    let encoded = start.elapsed();
    store.write_state("scratch/breakdown.state", &bytes)?;
    let written = start.elapsed();
    store.storage().delete("scratch")?;
    Ok(format!("read snapshot {:.1} ms, encode {:.1} ms, durable write {:.1} ms", ms(read), ms(encoded - read), ms(written - encoded)))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Peak resident set of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("checkpoint: benchmark");
        return Ok(());
    }
    let keys = env_u64("WEIR_BENCH_KEYS", 1_000_000);
    let cache_mib = env_u64("WEIR_BENCH_CACHE_MIB", 32);
    let dir = tempfile::tempdir().context("tempdir")?;
    let root = dir.path().join("checkpoints");
    let storage = Arc::new(DirStorage::new(&root)?);
    let store = JobCheckpoints::new(storage.clone(), &"job".parse()?);
    let state = StateStore::open(&dir.path().join("state"))?;
    let task = state.task("job", MAX_PARALLELISM, 0..MAX_PARALLELISM)?.track_changes();
    let mut cache = task.value_cache(OP, (cache_mib as usize) << 20);

    println!("{keys} keys of 8 bytes with 8-byte values, {MAX_PARALLELISM} key groups in one subtask, value cache {cache_mib} MiB");
    let start = Instant::now();
    write_keys(&mut cache, 0..keys, 0)?;
    let load = start.elapsed();
    println!(
        "loading the state: {:.2} s ({:.2}M keys/s), {} keys still cached, peak RSS {:.1} MiB",
        load.as_secs_f64(),
        keys as f64 / load.as_secs_f64() / 1e6,
        cache.len(),
        peak_rss_mib()
    );

    let (capture, sync, flush) = barrier(&mut cache, &task)?;
    let full = persist(&store, &root, &capture, FileKind::Full, 1)?;
    let full_peak = peak_rss_mib();
    let steps = breakdown(&store, &capture, FileKind::Full)?;
    drop(capture);
    ensure!(full.entries == keys, "the full file holds {} entries, expected {keys}", full.entries);
    println!(
        "full checkpoint of {keys} keys: {:.2} s (sync part {:.1} ms, of which cache copy {:.1} ms; write {:.2} s), {:.2} MB, peak RSS {:.1} MiB",
        (sync + full.secs).as_secs_f64(),
        ms(sync),
        ms(flush),
        full.secs.as_secs_f64(),
        mb(full.bytes),
        full_peak
    );
    println!("  write steps, redone one by one: {steps}");

    let mut chain = vec![full.path.clone()];
    for round in 1..=DELTAS {
        let changed = write_keys(&mut cache, changed_keys(keys, round), round)?;
        let (capture, sync, flush) = barrier(&mut cache, &task)?;
        let delta = persist(&store, &root, &capture, FileKind::Delta, 1 + round)?;
        let steps = breakdown(&store, &capture, FileKind::Delta)?;
        ensure!(delta.entries == changed, "delta {round} holds {} entries, expected the {changed} changed keys", delta.entries);
        println!(
            "delta checkpoint {round}, {changed} of {keys} keys changed: {:.1} ms (sync part {:.1} ms, of which cache copy {:.1} ms; write {:.1} ms), \
             {:.3} MB ({:.2}% of full)",
            ms(sync + delta.secs),
            ms(sync),
            ms(flush),
            ms(delta.secs),
            mb(delta.bytes),
            100.0 * delta.bytes as f64 / full.bytes as f64
        );
        println!("  write steps, redone one by one: {steps}");
        chain.push(delta.path);
    }

    // A restore is a fresh TaskManager: another state store, nothing cached.
    let start = Instant::now();
    let entries = load_state(storage.as_ref(), &chain, 0..MAX_PARALLELISM)?;
    let read = start.elapsed();
    let restored_state = StateStore::open(&dir.path().join("restored"))?;
    let restored = restored_state.task("job", MAX_PARALLELISM, 0..MAX_PARALLELISM)?;
    restored.restore(&entries)?;
    let restore = start.elapsed();
    ensure!(entries.len() as u64 == keys, "restored {} entries, expected {keys}", entries.len());
    drop(entries);
    println!(
        "restore of {keys} keys (full + {DELTAS} deltas): {:.2} s (reading and merging the files {:.2} s, loading fjall {:.2} s), peak RSS {:.1} MiB",
        restore.as_secs_f64(),
        read.as_secs_f64(),
        (restore - read).as_secs_f64(),
        peak_rss_mib()
    );

    // The restored state must be the state at the last checkpoint: spot-check keys
    // changed in each round and one never changed.
    let mut check = restored.value_cache(OP, 1 << 20);
    let last_round = |i: u64| (1..=DELTAS).rev().find(|&r| i % CHANGE_EVERY == r % CHANGE_EVERY).unwrap_or(0);
    for i in (0..keys).step_by(7919).chain((1..=DELTAS).map(|r| r % CHANGE_EVERY)) {
        let k = key(i);
        let index = check.entry(key_hash(&k), &k)?;
        let want = value(i, last_round(i));
        ensure!(check.get(index) == Some(&want[..]), "key {i} restored as {:?}, expected {want:?}", check.get(index));
    }
    println!("peak RSS {:.1} MiB", peak_rss_mib());
    Ok(())
}
