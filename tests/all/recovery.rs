//! Exactly-once under crashes: checkpoints, restarts from the latest checkpoint, and a
//! transactional file sink, on a real cluster whose TaskManagers are SIGKILLed.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;

use crate::cluster::{TestCluster, wait_until};
use crate::support::{example, splitmix64, stderr};

/// The job's line in `cluster-status`.
fn job_line(status: &str, job: &str) -> String {
    status.lines().find(|l| l.starts_with(&format!("job {job} "))).unwrap_or_default().to_string()
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(name))
}

/// Committed output lines of a checkpointed file sink: every `part-*` file.
fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let entry = entry.expect("entry");
        if entry.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(std::fs::read_to_string(entry.path()).expect("read part").lines().map(str::to_string));
        }
    }
    lines
}

#[test]
fn keyed_sum_is_exact_while_taskmanagers_are_killed_and_restarted() {
    let mut cluster = TestCluster::start_with(&[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let n: u64 = 2_000_000;
    let output = cluster.dir.path().join("out");
    let wasm = example("keyed_sum");
    let o = cluster.client(&[
        OsStr::new("submit"),
        wasm.as_os_str(),
        OsStr::new("-p"),
        OsStr::new("2"),
        OsStr::new("--arg"),
        OsStr::new(&format!("n={n}")),
        OsStr::new("--arg"),
        OsStr::new("work=1500"),
        OsStr::new("--arg"),
        OsStr::new("sink=file"),
        OsStr::new("-o"),
        output.as_os_str(),
        OsStr::new("--checkpoint-interval"),
        OsStr::new("300"),
        OsStr::new("--restart"),
        OsStr::new("fixed-delay:20:100"),
        OsStr::new("--detach"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let job = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();

    // Three times: once a checkpoint newer than the last crash completed and records
    // flow, SIGKILL a TaskManager and start it again.
    let mut after = 0u64;
    for (round, victim) in ["taskmanager-2", "taskmanager-1", "taskmanager-2"].into_iter().enumerate() {
        wait_until("a new checkpoint while running", || {
            let line = job_line(&cluster.status(), &job);
            let checkpoint = field(&line, "checkpoint=").and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
            assert!(!line.contains(" FINISHED ") && !line.contains(" FAILED "), "the job must outlive the crashes: {line}");
            line.contains(" RUNNING ") && checkpoint > after
        });
        let line = job_line(&cluster.status(), &job);
        after = field(&line, "checkpoint=").and_then(|c| c.parse().ok()).unwrap_or(0);
        cluster.kill(victim);
        cluster.start_taskmanager(victim, 2);
        wait_until("the restart", || field(&job_line(&cluster.status(), &job), "restarts=") == Some(&(round + 1).to_string()));
    }
    wait_until("the job to finish", || {
        let line = job_line(&cluster.status(), &job);
        assert!(!line.contains(" FAILED "), "{line}\n{}", cluster.log("jobmanager"));
        line.contains(" FINISHED ")
    });

    // Exactly once: one output line per input record, and each key's last sum exact.
    let lines = committed_lines(&output);
    let mut expected: HashMap<u64, u64> = HashMap::new();
    for i in 0..n {
        *expected.entry(splitmix64(i) % 100_000).or_default() += i;
    }
    let mut last: HashMap<u64, u64> = HashMap::new();
    for l in &lines {
        let (k, v) = l.split_once('\t').expect("key<TAB>value");
        let (k, v): (u64, u64) = (k.parse().expect("key"), v.parse().expect("sum"));
        let e = last.entry(k).or_default();
        *e = (*e).max(v);
    }
    assert_eq!(last, expected, "final per-key sums");
    assert_eq!(lines.len() as u64, n, "nothing lost, nothing written twice");
    let status = job_line(&cluster.status(), &job);
    assert!(field(&status, "restarts=").is_some_and(|r| r.parse::<u32>().is_ok_and(|r| r >= 3)), "{status}");
}
