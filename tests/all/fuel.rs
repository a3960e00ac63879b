//! Metered fuel: the same job on the same input burns the same fuel, and work done in
//! attempts that failed (a SIGKILLed TaskManager) is counted, reported apart, kept in
//! the job history and survives a JobManager restart.

use std::ffi::OsStr;

use weir_testkit::{TestCluster, stderr, wait_until};

use crate::WEIR;

/// Fuel per vertex of a `weir run` of keyed_sum at parallelism 2 (its summary lines).
fn run_fuel(n: u64) -> Vec<u64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = WEIR.example("keyed_sum");
    let n = format!("n={n}");
    let state = dir.path().join("state");
    let args: Vec<&OsStr> = vec![
        "run".as_ref(),
        job.as_ref(),
        "-p".as_ref(),
        "2".as_ref(),
        "--arg".as_ref(),
        n.as_ref(),
        "--arg".as_ref(),
        "sink=discard".as_ref(),
        "--state-dir".as_ref(),
        state.as_ref(),
    ];
    let o = WEIR.run(&args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(o.status.success(), "{out}");
    let fuel: Vec<u64> = out.lines().filter_map(|l| l.split_whitespace().skip_while(|w| *w != "fuel").nth(1).and_then(|f| f.parse().ok())).collect();
    assert_eq!(fuel.len(), 2, "a fuel count per vertex: {out}");
    fuel
}

/// Fuel counts Wasm instructions, not time, so a run on a loaded machine costs what an
/// idle one does. It is exact for the source; a keyed vertex varies by a few calls'
/// overhead, since how records arrive in batches depends on the network's timing.
#[test]
fn the_same_job_on_the_same_input_burns_the_same_fuel() {
    let (a, b) = (run_fuel(300_000), run_fuel(300_000));
    assert!(a.iter().all(|&f| f > 0), "{a:?}");
    assert_eq!(a[0], b[0], "the source vertex: {a:?} vs {b:?}");
    for (x, y) in a.iter().zip(&b) {
        let diff = x.abs_diff(*y) as f64 / *x.max(y) as f64;
        assert!(diff < 0.01, "within 1%: {a:?} vs {b:?} ({:.4}%)", diff * 100.0);
    }
}

fn rest_json(cluster: &TestCluster, path: &str) -> serde_json::Value {
    let auth = format!("Bearer {}", cluster.token);
    let (status, body) = weir_testkit::http::request("GET", &format!("{}{path}", cluster.rest), &[("Authorization", &auth)], &[]);
    assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

fn prometheus(cluster: &TestCluster) -> String {
    let (status, body) = weir_testkit::http::request("GET", &format!("{}/metrics", cluster.rest), &[], &[]);
    assert_eq!(status, 200);
    String::from_utf8_lossy(&body).into_owned()
}

fn u64_of(v: &serde_json::Value, name: &str) -> u64 {
    v[name].as_u64().unwrap_or_else(|| panic!("{name} in {v}"))
}

/// Checks the totals add up: each vertex's fuel is its current subtasks' plus its
/// failed attempts', the job's is the vertices'. Returns (total, failed attempts).
fn fuel_totals(m: &serde_json::Value) -> (u64, u64) {
    let vertices = m["vertices"].as_array().expect("vertices");
    let (mut total, mut failed) = (0, 0);
    for v in vertices {
        let current: u64 = v["subtasks"].as_array().expect("subtasks").iter().map(|s| u64_of(s, "fuel")).sum();
        assert_eq!(u64_of(v, "fuel"), current + u64_of(v, "fuelFailedAttempts"), "vertex total = this attempt + failed ones: {v}");
        total += u64_of(v, "fuel");
        failed += u64_of(v, "fuelFailedAttempts");
    }
    assert_eq!((u64_of(m, "fuel"), u64_of(m, "fuelFailedAttempts")), (total, failed), "job totals are the vertices' sums");
    (total, failed)
}

#[test]
fn fuel_of_an_attempt_lost_with_its_taskmanager_is_counted_apart_and_kept_in_the_history() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let wasm = WEIR.example("keyed_sum");
    let output = cluster.dir.path().join("out");
    let args = [
        "submit",
        "-p",
        "2",
        "--arg",
        "n=1000000",
        "--arg",
        "work=4000",
        "--arg",
        "sink=file",
        "--checkpoint-interval",
        "300",
        "--restart",
        "fixed-delay:20:100",
        "--detach",
    ];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.extend([wasm.as_os_str(), OsStr::new("--output-dir"), output.as_os_str()]);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    let job = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    let metrics = format!("/api/v1/jobs/{job}/metrics");

    // Live fuel from heartbeats, before any subtask ended: on every subtask of
    // taskmanager-2, and in /metrics.
    wait_until("live fuel on taskmanager-2's subtasks", || {
        let m = rest_json(&cluster, &metrics);
        assert!(m["status"] != "FINISHED" && m["status"] != "FAILED", "the job must outlive the kill: {m}");
        let on_tm2: Vec<&serde_json::Value> = m["vertices"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|v| v["subtasks"].as_array().into_iter().flatten())
            .filter(|s| s["taskmanager"] == "taskmanager-2")
            .collect();
        m["status"] == "RUNNING" && on_tm2.iter().any(|s| s["status"] == "RUNNING") && on_tm2.iter().all(|s| u64_of(s, "fuel") > 0)
    });
    let text = prometheus(&cluster);
    assert!(text.lines().any(|l| l.starts_with(&format!("weir_job_fuel_total{{job=\"{job}\"")) && !l.ends_with(" 0")), "{text}");
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);

    // The metrics' status is the attempt's (FAILED while the job restarts); the Job
    // resource's state is the job's.
    wait_until("the job to finish", || {
        let j = rest_json(&cluster, &format!("/api/v1/jobs/{job}"));
        assert_ne!(j["status"]["state"], "FAILED", "{j}");
        j["status"]["state"] == "FINISHED"
    });
    let m = rest_json(&cluster, &metrics);
    let (total, failed) = fuel_totals(&m);
    assert!(failed > 0, "the killed attempt's work is counted: {m}");
    assert!(total > failed, "{m}");

    // Ended jobs keep their fuel in the persisted history, also for a new JobManager.
    cluster.restart_jobmanager();
    let after = rest_json(&cluster, &metrics);
    assert_eq!(fuel_totals(&after), (total, failed), "{after}");
}
