//! Jobs on a real cluster: a JobManager and two TaskManager processes over QUIC.

use std::ffi::OsStr;

use crate::cluster::TestCluster;
use crate::support::{example, stderr};
use crate::wordcount::{final_counts, python_counts, write_text};

fn submit_wordcount(cluster: &TestCluster, input: &std::path::Path, output: &std::path::Path) -> std::process::Output {
    let wasm = example("wordcount");
    cluster.client(&[OsStr::new("submit"), wasm.as_os_str(), OsStr::new("-p"), OsStr::new("4"), OsStr::new("-i"), input.as_os_str(), OsStr::new("-o"), output.as_os_str()])
}

#[test]
fn wordcount_at_parallelism_4_on_two_taskmanagers_is_exact_and_ships_the_component_once() {
    let cluster = TestCluster::start(&[("taskmanager-1", 2), ("taskmanager-2", 2)]);
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
        assert_eq!(log.matches("received the job's component").count(), 1, "{tm}: {log}");
    }
    let status = cluster.status();
    assert_eq!(status.matches(" FINISHED ").count(), 2, "{status}");
    assert!(status.contains("free slots: 4"), "slots are given back: {status}");
}
