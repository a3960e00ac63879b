//! State versions (issue 17) on a real cluster: keyed_sum declares state version 1,
//! keyed_sum_v2 version 2 and logs the version `state-version.restored` handed it
//! (`keyed_sum v2 sum: restored state version ...`, once per instance), which is what
//! these tests read in the TaskManagers' logs. A fresh job is handed none; a job
//! started from v1's savepoint 1; its restart from its own checkpoint after a
//! TaskManager is killed 2. (A live swap v1 -> v2: `live_swap.rs`; a Python guest
//! restored from a checkpoint: `polyglot.rs`.)

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use weir_testkit::{TestCluster, stderr};

use crate::WEIR;

/// What keyed_sum_v2 logs before the version it was handed.
const LOGGED: &str = "keyed_sum v2 sum: restored state version ";

/// How often each restored version was handed to a keyed_sum_v2 instance so far,
/// over every TaskManager's log.
pub(crate) fn v2_restored(cluster: &TestCluster, taskmanagers: &[&str]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for tm in taskmanagers {
        for line in cluster.log(tm).lines() {
            if let Some((_, version)) = line.split_once(LOGGED) {
                *seen.entry(version.trim().to_string()).or_default() += 1;
            }
        }
    }
    seen
}

/// `weir submit` of `example` at parallelism 2 with checkpoints, detached; its job id.
fn submit(cluster: &TestCluster, example: &str, args: &[&str], output: &Path, extra: &[&OsStr]) -> String {
    let wasm = WEIR.example(example);
    let mut argv: Vec<&OsStr> = ["submit", "-p", "2", "--checkpoint-interval", "300", "--detach"].iter().map(OsStr::new).collect();
    for a in args {
        argv.extend([OsStr::new("--arg"), OsStr::new(a)]);
    }
    argv.extend([wasm.as_os_str(), OsStr::new("--output-dir"), output.as_os_str()]);
    argv.extend_from_slice(extra);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string()
}

fn job_line(cluster: &TestCluster, job: &str) -> String {
    cluster.status().lines().find(|l| l.starts_with(&format!("job {job} "))).unwrap_or_default().to_string()
}

fn checkpoint(line: &str) -> u64 {
    line.split_whitespace().find_map(|w| w.strip_prefix("checkpoint=")).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Waits for a completed checkpoint of a running `job` newer than `after`.
fn wait_checkpoint(cluster: &TestCluster, job: &str, after: u64) {
    cluster.wait_until("a completed checkpoint while running", || {
        let l = job_line(cluster, job);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "the job must still run: {l}\n{}", cluster.log("jobmanager"));
        l.contains(" RUNNING ") && checkpoint(&l) > after
    });
}

fn wait_state(cluster: &TestCluster, job: &str, state: &str) {
    cluster.wait_until(&format!("job {job} {state}"), || {
        let l = job_line(cluster, job);
        assert!(!l.contains(" FAILED "), "{l}\n{}", cluster.log("jobmanager"));
        l.contains(&format!(" {state} "))
    });
}

#[test]
fn the_guest_is_handed_the_state_version_it_restores_from() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let tms = ["taskmanager-1", "taskmanager-2"];
    let dir = cluster.dir.path().to_path_buf();
    let seen = |cluster: &TestCluster| v2_restored(cluster, &tms);
    let want = |pairs: &[(&str, usize)]| pairs.iter().map(|(v, n)| (v.to_string(), *n)).collect::<BTreeMap<_, _>>();

    // A fresh job: nothing restored, every instance (one per subtask) hears none.
    let fresh = submit(&cluster, "keyed_sum_v2", &["n=20000", "sink=file"], &dir.join("fresh"), &[]);
    wait_state(&cluster, &fresh, "FINISHED");
    assert_eq!(seen(&cluster), want(&[("None", 2)]));

    // v1's savepoint, v2 started from it (a STATEFUL upgrade by hand): v1 wrote the
    // state, v2 hears 1.
    let v1 = submit(&cluster, "keyed_sum", &["n=2000000", "work=4000", "sink=file"], &dir.join("v1"), &[]);
    wait_checkpoint(&cluster, &v1, 0);
    let savepoint = dir.join("savepoint");
    let o = cluster.client(&[OsStr::new("savepoint"), OsStr::new(&v1), OsStr::new("--dir"), savepoint.as_os_str(), OsStr::new("--stop")]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_state(&cluster, &v1, "CANCELED");
    let savepoint_id = checkpoint(&job_line(&cluster, &v1));
    let from = [OsStr::new("--from-savepoint"), savepoint.as_os_str(), OsStr::new("--restart"), OsStr::new("fixed-delay:10:200")];
    let v2 = submit(&cluster, "keyed_sum_v2", &["n=2000000", "work=4000", "sink=file"], &dir.join("v2"), &from);
    cluster.wait_until("v2 to process records restored from v1's savepoint", || seen(&cluster).get("Some(1)") == Some(&2));
    assert_eq!(seen(&cluster), want(&[("None", 2), ("Some(1)", 2)]));

    // A TaskManager dies after v2's own checkpoint (ids go on from the savepoint's):
    // the restarted attempt restores what v2 wrote, and hears 2.
    wait_checkpoint(&cluster, &v2, savepoint_id);
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_state(&cluster, &v2, "FINISHED");
    assert!(job_line(&cluster, &v2).contains("restarts=1"), "{}", job_line(&cluster, &v2));
    assert_eq!(seen(&cluster), want(&[("None", 2), ("Some(1)", 2), ("Some(2)", 2)]));
}
