//! Jobs on a real cluster: a JobManager and two TaskManager processes over QUIC.

use std::ffi::OsStr;

use weir_testkit::{TestCluster, stderr, wait_until};

use crate::WEIR;
use crate::wordcount::{final_counts, python_counts, write_text};

fn submit_wordcount(cluster: &TestCluster, input: &std::path::Path, output: &std::path::Path) -> std::process::Output {
    let wasm = WEIR.example("wordcount");
    cluster.client(&[
        OsStr::new("submit"),
        wasm.as_os_str(),
        OsStr::new("-p"),
        OsStr::new("4"),
        OsStr::new("-i"),
        input.as_os_str(),
        OsStr::new("--output-dir"),
        output.as_os_str(),
    ])
}

#[test]
fn wordcount_at_parallelism_4_on_two_taskmanagers_is_exact_and_ships_the_component_once() {
    let mut cluster = TestCluster::start(WEIR, &[("taskmanager-1", 2)]);
    // Listening on every interface: peers dial the address the JobManager sees it at.
    cluster.start_taskmanager_with("taskmanager-2", 2, &["--listen", "0.0.0.0:0"]);
    wait_until("taskmanager-2 to register", || cluster.status().contains("free slots: 4"));
    let status = cluster.status();
    let data = status
        .lines()
        .find(|l| l.starts_with("taskmanager-2 "))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("data=")))
        .unwrap_or_default()
        .to_string();
    assert!(data.starts_with("127.0.0.1:") && !data.ends_with(":0"), "a dialable data address: {status}");
    let input = cluster.dir.path().join("input.txt");
    write_text(&input, 20_000);
    let expected = python_counts(&input);
    let total: u64 = expected.values().sum();

    for run in 0..2 {
        let output = cluster.dir.path().join(format!("out-{run}"));
        let o = submit_wordcount(&cluster, &input, &output);
        let err = stderr(&o);
        assert!(o.status.success(), "submit failed: {err}");
        // Both TaskManagers run subtasks of every vertex, so the key-by crosses processes.
        let keyed = err.lines().find(|l| l.contains("count -> out.format -> out x4:")).unwrap_or_default();
        for tm in ["taskmanager-1", "taskmanager-2"] {
            assert_eq!(keyed.matches(tm).count(), 2, "two keyed subtasks on {tm}: {err}");
        }
        let mut text = String::new();
        for part in 0..4 {
            text.push_str(&std::fs::read_to_string(output.join(format!("part-{part}"))).expect("part file written"));
        }
        assert_eq!(text.lines().count() as u64, total, "one output line per word occurrence");
        assert_eq!(final_counts(&text), expected);
    }

    // Each TaskManager fetched the component for the first job only.
    for tm in ["taskmanager-1", "taskmanager-2"] {
        let log = cluster.log(tm);
        assert_eq!(log.matches("received a component of the job").count(), 1, "{tm}: {log}");
    }
    let status = cluster.status();
    assert_eq!(status.matches(" FINISHED ").count(), 2, "{status}");
    assert_eq!(status.matches("state=FINISHED").count(), 2, "a finite job ends FINISHED: {status}");
    assert!(status.contains("free slots: 4"), "slots are given back: {status}");
}

/// Resident memory of a process, from /proc.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()).unwrap_or(0);
    kb / 1024
}

/// `records in` of the vertex whose name starts with `name`, from a status line
/// `  vertex "name" xP in=N out=M`.
fn vertex_counts(status: &str, name: &str) -> (u64, u64) {
    let line = status.lines().find(|l| l.trim_start().starts_with(&format!("vertex \"{name}"))).unwrap_or_default();
    let field = |f: &str| line.split_whitespace().find_map(|w| w.strip_prefix(f)).and_then(|v| v.parse().ok()).unwrap_or(0);
    (field("in="), field("out="))
}

#[test]
fn a_slow_operator_holds_back_a_fast_source_across_processes_and_cancel_stops_everything() {
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 1), ("taskmanager-2", 1)]);
    let wasm = WEIR.example("slow_map");
    let o = cluster.client(&[OsStr::new("submit"), wasm.as_os_str(), OsStr::new("-p"), OsStr::new("2"), OsStr::new("--detach")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let job = out.split_whitespace().nth(1).expect("job id").to_string();

    // Run until the slow operator has done real work; the source could have made
    // hundreds of millions of records by then.
    let mut peak = vec![0; 3];
    let mut status = String::new();
    wait_until("the slow operator to make progress", || {
        for (p, pid) in peak.iter_mut().zip(cluster.pids()) {
            *p = (*p).max(rss_mib(pid));
        }
        status = cluster.status();
        vertex_counts(&status, "slow").0 >= 30_000
    });
    let (_, produced) = vertex_counts(&status, "numbers");
    let (consumed, _) = vertex_counts(&status, "slow");
    // In flight at most: per consumer one bounded channel (16 batches), one QUIC
    // stream window (1 MiB) and the routers' unsent buffers: well under a million
    // records of ~12 bytes.
    assert!(produced - consumed < 1_000_000, "records in flight are bounded: produced {produced}, consumed {consumed}\n{status}");
    for (name, mib) in ["jobmanager", "taskmanager-1", "taskmanager-2"].iter().zip(&peak) {
        assert!(*mib < 200, "{name} stays small while the source is held back: {mib} MiB");
    }

    let o = cluster.client(&[OsStr::new("cancel"), OsStr::new(&job)]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the job to be cancelled everywhere", || {
        let s = cluster.status();
        s.contains(" CANCELED ") && s.contains("state=TERMINATED") && s.contains("free slots: 2")
    });
    for tm in ["taskmanager-1", "taskmanager-2"] {
        assert!(!cluster.log(tm).contains("panicked"), "{}", cluster.log(tm));
    }
    eprintln!("peak RSS MiB (jm, tm1, tm2): {peak:?}; in flight at the end: {}", produced - consumed);
}

#[test]
fn losing_a_taskmanager_fails_its_jobs_and_frees_the_survivors_slots() {
    let mut cluster = TestCluster::start(WEIR, &[("taskmanager-1", 1), ("taskmanager-2", 1)]);
    let wasm = WEIR.example("slow_map");
    let o = cluster.client(&[OsStr::new("submit"), wasm.as_os_str(), OsStr::new("-p"), OsStr::new("2"), OsStr::new("--detach")]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the job to make progress", || vertex_counts(&cluster.status(), "slow").0 > 0);
    cluster.kill("taskmanager-2");
    wait_until("the job to fail and the survivor's slot to be free", || {
        let s = cluster.status();
        s.lines().any(|l| l.contains(" FAILED ") && l.contains("state=FAILED") && l.contains("taskmanager taskmanager-2 was lost"))
            && s.contains("free slots: 1")
    });
    let log = cluster.log("taskmanager-1");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_failing_operator_is_restarted_until_its_budget_is_spent_then_the_job_fails() {
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 1), ("taskmanager-2", 1)]);
    let wasm = WEIR.example("bad_panic");
    let o = cluster.client(&[
        OsStr::new("submit"),
        wasm.as_os_str(),
        OsStr::new("-p"),
        OsStr::new("2"),
        OsStr::new("--restart"),
        OsStr::new("fixed-delay:2:50"),
    ]);
    assert!(!o.status.success(), "the job fails in the end");
    let err = stderr(&o);
    assert!(err.contains("poisoned record 3"), "the failure names its cause: {err}");
    let status = cluster.status();
    let line = status.lines().find(|l| l.contains(" bad_panic ") || l.contains("explode")).unwrap_or_default();
    assert!(line.contains(" FAILED ") && line.contains("restarts=2") && line.contains("state=FAILED"), "{status}");
}
