//! The swap section: the pause in a running job's output when its code changes, live
//! (`weir swap`, issue 17) against a STATEFUL upgrade (stop with a savepoint, submit
//! the new component from it), side by side in one run. keyed_sum at parallelism 4 on
//! two TaskManagers of two slots, discard sink, checkpoints every 500 ms, swapped to
//! keyed_sum_v2.
//!
//! - live: every subtask logs how long its switch took (instantiating and opening the
//!   new component after its snapshot, `pause_us`); the longest over the subtasks is
//!   what the swap adds to that barrier's pause. Reported with the end-to-end time of
//!   `weir swap` (upload, check, shipping and compiling while the old code runs, the
//!   switch point's checkpoint).
//! - stateful: from the stop request until the new job's keyed vertex counts records
//!   again (REST metrics, which come with heartbeats: overstated by up to one
//!   heartbeat interval).
//!
//! The target: a live swap's pause under 100 ms at parallelism 4 for a Rust operator.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_testkit::{TestCluster, stderr, wait_until};

use crate::WEIR;

const N: u64 = 400_000_000;
const TARGET: Duration = Duration::from_millis(100);

fn get(cluster: &TestCluster, path: &str) -> Value {
    let auth = format!("Bearer {}", cluster.token);
    let (status, body) = weir_testkit::http::request("GET", &format!("{}/api/v1{path}", cluster.rest), &[("Authorization", auth.as_str())], &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

/// Records into the keyed vertex (`sum -> out`) so far, as the last heartbeats said.
fn keyed_in(cluster: &TestCluster, job: &str) -> u64 {
    let m = get(cluster, &format!("/jobs/{job}/metrics"));
    m["vertices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["name"].as_str().is_some_and(|n| n.contains("sum")))
        .filter_map(|v| v["recordsIn"].as_u64())
        .sum()
}

fn submit(cluster: &TestCluster, example: &str, from: Option<&str>) -> String {
    let wasm = WEIR.example(example);
    let n = format!("n={N}");
    let base = ["submit", "-p", "4", "--arg", &n, "--arg", "sink=discard", "--checkpoint-interval", "500", "--detach"];
    let mut args: Vec<&OsStr> = base.iter().map(OsStr::new).collect();
    if let Some(sp) = from {
        args.extend([OsStr::new("--from-savepoint"), OsStr::new(sp)]);
    }
    args.push(wasm.as_os_str());
    let o = cluster.client(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string()
}

fn wait_flowing(cluster: &TestCluster, job: &str) {
    wait_until("the job's keyed vertex to count records", || keyed_in(cluster, job) > 0);
    wait_until("a completed checkpoint", || get(cluster, &format!("/jobs/{job}"))["status"]["lastCheckpoint"].is_u64());
}

/// The longest switch a subtask logged, in µs, and how many subtasks logged one.
fn switch_pauses(cluster: &TestCluster) -> (u64, usize) {
    let mut pauses = Vec::new();
    for tm in ["taskmanager-1", "taskmanager-2"] {
        for line in cluster.log(tm).lines().filter(|l| l.contains("live swap: runs the new code")) {
            if let Some(us) = line.split_whitespace().find_map(|w| w.strip_prefix("pause_us=")).and_then(|v| v.parse::<u64>().ok()) {
                pauses.push(us);
            }
        }
    }
    (pauses.iter().copied().max().unwrap_or(0), pauses.len())
}

pub fn bench() {
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    println!("\nswap: keyed_sum -> keyed_sum_v2 at parallelism 4 on two TaskManagers, checkpoints every 500 ms");

    let job = submit(&cluster, "keyed_sum", None);
    wait_flowing(&cluster, &job);
    let v2 = WEIR.example("keyed_sum_v2");
    let t0 = Instant::now();
    let o = cluster.client(&[OsStr::new("swap"), OsStr::new(&job), v2.as_os_str()]);
    let swap_call = t0.elapsed();
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.log("jobmanager"));
    let (pause_us, subtasks) = switch_pauses(&cluster);
    let live = Duration::from_micros(pause_us);
    println!(
        "  live swap:        longest pause {:>8.1} ms over {subtasks} subtasks (target < {} ms: {}); `weir swap` took {:.2} s end to end",
        live.as_secs_f64() * 1e3,
        TARGET.as_millis(),
        if live < TARGET { "met" } else { "MISSED" },
        swap_call.as_secs_f64()
    );

    // The same change as a STATEFUL upgrade: savepoint and stop, then v2 from it.
    let sp = cluster.dir.path().join("sp");
    let t0 = Instant::now();
    let o = cluster.client(&[OsStr::new("savepoint"), OsStr::new(&job), OsStr::new("--dir"), sp.as_os_str(), OsStr::new("--stop")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stopped = t0.elapsed();
    let next = submit(&cluster, "keyed_sum_v2", Some(&sp.display().to_string()));
    wait_until("the upgraded job's keyed vertex to count records", || keyed_in(&cluster, &next) > 0);
    let stateful = t0.elapsed();
    println!(
        "  stateful upgrade: gap          {:>8.1} ms (savepoint and stop {:.0} ms, then submit, deploy, restore, first records; heartbeat-granular)",
        stateful.as_secs_f64() * 1e3,
        stopped.as_secs_f64() * 1e3
    );
    println!("  ratio: the stateful upgrade's gap is {:.0}x the live swap's pause", stateful.as_secs_f64() / live.as_secs_f64().max(1e-6));
    let o = cluster.client(&[OsStr::new("cancel"), OsStr::new(&next)]);
    assert!(o.status.success(), "{}", stderr(&o));
}
