//! State TTL end to end: `ttl_counts` (a running count per key whose state has a TTL)
//! through `weir run` and a real cluster. The job makes its own silence: its counter
//! sleeps after one record, longer than the TTL, so the outcome does not depend on the
//! machine's speed: every state written before the pause is expired for every batch
//! after it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use weir_testkit::{TestCluster, stderr, wait_until};

use crate::WEIR;

const N: u64 = 20_000;
const PAUSE_AT: u64 = 9_999;
const KEYS: u64 = 40;
const KEYS_AFTER: u64 = 20;

/// Runs `ttl_counts` with `args`; its output's counts per key in output order, and its
/// log (at info level).
fn run(dir: &Path, args: &[String]) -> (BTreeMap<u64, Vec<u64>>, String) {
    let out = dir.join("out.tsv");
    let mut c = WEIR.command();
    c.env("WEIR_LOG", "info").arg("run").arg(WEIR.example("ttl_counts")).arg("-o").arg(&out);
    for a in args {
        c.arg("--arg").arg(a);
    }
    let o = c.output().expect("weir starts");
    assert!(o.status.success(), "{}", stderr(&o));
    let mut counts: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for line in std::fs::read_to_string(&out).expect("output").lines() {
        let (k, c) = line.split_once('\t').unwrap_or_else(|| panic!("key<TAB>count: {line:?}"));
        counts.entry(k.parse().expect("key")).or_default().push(c.parse().expect("count"));
    }
    (counts, stderr(&o))
}

fn args(list: &[(&str, u64)]) -> Vec<String> {
    list.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Records per key: `i % KEYS` up to `PAUSE_AT`, `i % KEYS_AFTER` after it.
fn totals() -> BTreeMap<u64, u64> {
    let mut t = BTreeMap::new();
    for i in 0..N {
        *t.entry(if i <= PAUSE_AT { i % KEYS } else { i % KEYS_AFTER }).or_insert(0) += 1;
    }
    t
}

#[test]
fn counts_under_a_long_ttl_never_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = [("n", N), ("keys", KEYS), ("keys-after", KEYS_AFTER), ("pause-at", PAUSE_AT)];
    for update_on_read in [0, 1] {
        let mut a = args(&base);
        a.push(format!("update-on-read={update_on_read}"));
        let (counts, log) = run(dir.path(), &a);
        let expected: BTreeMap<u64, Vec<u64>> = totals().into_iter().map(|(k, n)| (k, (1..=n).collect())).collect();
        assert!(counts == expected, "each key counts 1..=n through the expiry prefix (update-on-read={update_on_read})");
        assert!(!log.contains("state TTL"), "nothing expired: {log}");
    }
}

#[test]
fn a_count_restarts_after_a_silence_longer_than_its_ttl_and_the_host_sweeps_expired_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    // TTL 3 s, a 5 s pause; after it, records go to half the keys.
    let a = args(&[
        ("n", N),
        ("keys", KEYS),
        ("keys-after", KEYS_AFTER),
        ("pause-at", PAUSE_AT),
        ("ttl-ms", 3_000),
        ("pause-ms", 5_000),
        ("work", 20_000),
    ]);
    let (counts, log) = run(dir.path(), &a);
    let totals = totals();
    assert_eq!(counts.keys().collect::<Vec<_>>(), totals.keys().collect::<Vec<_>>());
    for (k, seq) in &counts {
        let total = totals[k];
        assert_eq!(seq.len() as u64, total, "key {k}: one output per record");
        // Each run of counts starts at 1 and climbs by one: a restart is a 1.
        let restarts: Vec<usize> = seq.iter().enumerate().filter(|&(i, &c)| i > 0 && c == 1).map(|(i, _)| i).collect();
        let expected: Vec<u64> = match restarts[..] {
            [] => (1..=total).collect(),
            [at] => (1..=at as u64).chain(1..=total - at as u64).collect(),
            _ => panic!("key {k} restarted more than once, at {restarts:?}"),
        };
        assert_eq!(seq, &expected, "key {k}");
        if *k < KEYS_AFTER {
            let at = restarts.first().copied().unwrap_or_else(|| panic!("key {k} comes back after the pause but its count did not restart"));
            assert!(at as u64 >= (PAUSE_AT + 1) / KEYS, "key {k} restarted at {at}, before the pause");
        } else {
            assert!(restarts.is_empty(), "key {k} has no records after the pause");
        }
    }
    // Right after the pause every key's state is expired: the host drops all of it,
    // including the keys that never come back (nothing else would ever remove those).
    assert!(log.contains(&format!("entries={KEYS}")), "the background sweep dropped each key's expired state once: {log}");
}

/// The expiry prefix survives checkpoints and restores: under a long TTL, a TaskManager
/// SIGKILLed midway costs nothing, every key's committed counts are exactly 1..=n.
#[test]
fn ttl_state_is_exact_across_a_taskmanager_sigkill_and_a_restore() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let (n, keys) = (400_000u64, 1_000u64);
    let output = cluster.dir.path().join("out");
    let wasm = WEIR.example("ttl_counts");
    let (n_arg, keys_arg) = (format!("n={n}"), format!("keys={keys}"));
    let args = [
        "submit",
        "-p",
        "2",
        "--arg",
        &n_arg,
        "--arg",
        &keys_arg,
        "--arg",
        "work=4000",
        "--checkpoint-interval",
        "300",
        "--restart",
        "fixed-delay:10:500",
        "--detach",
    ];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.extend([wasm.as_os_str(), OsStr::new("--output-dir"), output.as_os_str()]);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    let job = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    let line = |cluster: &TestCluster| cluster.status().lines().find(|l| l.starts_with(&format!("job {job} "))).unwrap_or_default().to_string();
    let root = cluster.dir.path().join("checkpoints").join(&job);
    wait_until("two completed checkpoints", || {
        let l = line(&cluster);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "the job must outlive the kill: {l}");
        std::fs::read_dir(&root).into_iter().flatten().flatten().filter(|e| e.path().join("_metadata").exists()).count() >= 2
    });
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_until("the job to finish", || {
        let l = line(&cluster);
        assert!(!l.contains(" FAILED "), "{l}\n{}", cluster.log("jobmanager"));
        l.contains(" FINISHED ")
    });
    assert!(line(&cluster).split_whitespace().any(|w| w.strip_prefix("restarts=").is_some_and(|r| r != "0")), "{}", line(&cluster));
    let mut counts: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for entry in std::fs::read_dir(&output).expect("output dir").flatten() {
        if !entry.file_name().to_string_lossy().starts_with("part-") {
            continue;
        }
        for l in std::fs::read_to_string(entry.path()).expect("part file").lines() {
            let (k, c) = l.split_once('\t').unwrap_or_else(|| panic!("key<TAB>count: {l:?}"));
            counts.entry(k.parse().expect("key")).or_default().push(c.parse().expect("count"));
        }
    }
    assert_eq!(counts.len() as u64, keys);
    for (k, seq) in &mut counts {
        seq.sort_unstable();
        let total = (0..n).filter(|i| i % keys == *k).count() as u64;
        assert!(*seq == (1..=total).collect::<Vec<_>>(), "key {k}: counts 1..={total} exactly once, got {} lines", seq.len());
    }
}
