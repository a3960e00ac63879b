//! The swap section: the pause in a running job's output when its code changes, live
//! (`weir swap`, issue 17) against a STATEFUL upgrade (stop with a savepoint, submit
//! the new component from it), side by side in one run. keyed_sum at parallelism 4 on
//! two TaskManagers of two slots, discard sink, checkpoints every 500 ms, swapped to
//! keyed_sum_v2 and back, five times.
//!
//! Measured at the sinks: every sink subtask logs (at debug level) when its output
//! begins, resumes after a pause of over 10 ms, and ends, with the wall-clock instant
//! and the gap. keyed_sum's keyed operator is chained to its sink, so a subtask's
//! switch to the new code delays exactly that subtask's output.
//!
//! - checkpoints alone: the longest pause while the job runs with no change (its
//!   checkpoints' barrier alignment), over as long as the swaps take: the floor.
//! - live swap: the longest pause that ended during a `weir swap` call (its switch
//!   checkpoint's alignment, snapshot and the new code's instantiation). Also each
//!   subtask's own switch time, which the TaskManagers log.
//! - stateful: from the old job's last output (any sink subtask) to the new job's first
//!   (any sink subtask): the gap a consumer of the sink sees.
//!
//! The target: a live swap's pause under 100 ms at parallelism 4 for a Rust operator.

use std::ffi::OsStr;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use weir_testkit::{TestCluster, stderr, wait_until};

use crate::WEIR;

const N: u64 = 400_000_000;
const TARGET: Duration = Duration::from_millis(100);
const SWAPS: usize = 5;

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

fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_micros() as u64
}

fn field(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('=')).and_then(|v| v.parse().ok())
}

/// The TaskManagers' log lines containing `what`.
fn lines(cluster: &TestCluster, what: &str) -> Vec<String> {
    ["taskmanager-1", "taskmanager-2"]
        .iter()
        .flat_map(|tm| cluster.log(tm).lines().filter(|l| l.contains(what)).map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// The sinks' output events `what`, as wall-clock instants (µs) with the gap (µs, 0
/// for begin and end events).
fn output_events(cluster: &TestCluster, what: &str) -> Vec<(u64, u64)> {
    lines(cluster, what).iter().filter_map(|l| Some((field(l, "at_unix_us")?, field(l, "gap_us").unwrap_or(0)))).collect()
}

/// The longest sink pause that ended within `[from, to]` (µs since the epoch).
fn longest_pause(cluster: &TestCluster, from: u64, to: u64) -> Duration {
    let gaps = output_events(cluster, "sink output resumed after a pause");
    Duration::from_micros(gaps.iter().filter(|(at, _)| (from..=to).contains(at)).map(|&(_, gap)| gap).max().unwrap_or(0))
}

/// Each subtask's own switch time of every swap so far, in µs.
fn switch_pauses(cluster: &TestCluster) -> Vec<u64> {
    lines(cluster, "live swap: runs the new code").iter().filter_map(|l| field(l, "pause_us")).collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn bench() {
    let mut cluster = TestCluster::start_with(WEIR, &[], &["--checkpoint-dir", "{dir}/checkpoints"]);
    cluster.taskmanager_log = "info,weir_taskmanager::task=debug".into();
    cluster.start_taskmanager("taskmanager-1", 2);
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_until("the taskmanagers to register", || cluster.status().contains("free slots: 4"));
    println!("\nswap: keyed_sum <-> keyed_sum_v2 at parallelism 4 on two TaskManagers, checkpoints every 500 ms, pauses seen at the sinks");

    let job = submit(&cluster, "keyed_sum", None);
    wait_flowing(&cluster, &job);

    let mut live = Vec::new();
    let (mut calls, mut windows) = (Duration::ZERO, Duration::ZERO);
    for i in 0..SWAPS {
        let to = WEIR.example(if i % 2 == 0 { "keyed_sum_v2" } else { "keyed_sum" });
        let (t0, w0) = (Instant::now(), unix_us(SystemTime::now()));
        let o = cluster.client(&[OsStr::new("swap"), OsStr::new(&job), to.as_os_str()]);
        let took = t0.elapsed();
        assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.log("jobmanager"));
        calls += took;
        // The switch checkpoint's pause ends once every sink subtask wrote again.
        std::thread::sleep(Duration::from_millis(300));
        live.push(longest_pause(&cluster, w0, unix_us(SystemTime::now())));
        windows += t0.elapsed();
    }
    // The floor: the same job's checkpoints with no change, over as long as the swaps.
    let (w0, window) = (unix_us(SystemTime::now()), windows);
    std::thread::sleep(window);
    let floor = longest_pause(&cluster, w0, unix_us(SystemTime::now()));
    let switches = switch_pauses(&cluster);
    let worst = live.iter().copied().max().unwrap_or_default();
    let median = {
        let mut sorted = live.clone();
        sorted.sort();
        sorted[SWAPS / 2]
    };
    println!(
        "  checkpoints alone: longest pause {:>8.1} ms over {:.1} s ({} checkpoints)",
        ms(floor),
        window.as_secs_f64(),
        window.as_millis() / 500
    );
    println!(
        "  live swap:         longest pause {:>8.1} ms, median of {SWAPS} swaps {:.1} ms (each: {}), target < {} ms: {}",
        ms(worst),
        ms(median),
        live.iter().map(|d| format!("{:.1}", ms(*d))).collect::<Vec<_>>().join(", "),
        TARGET.as_millis(),
        if worst < TARGET { "met" } else { "MISSED" }
    );
    println!(
        "                     of which a subtask's switch to the new code: at most {:.1} ms ({} switches); `weir swap` took {:.2} s on average",
        switches.iter().copied().max().unwrap_or(0) as f64 / 1e3,
        switches.len(),
        calls.as_secs_f64() / SWAPS as f64
    );

    let mut syncs: Vec<u64> = lines(&cluster, "snapshot captured").iter().filter_map(|l| field(l, "sync_us")).collect();
    syncs.sort();
    if let (Some(max), Some(mid)) = (syncs.last(), syncs.get(syncs.len() / 2)) {
        println!(
            "  snapshot capture (a subtask's sync part of each checkpoint): median {:.1} ms, at most {:.1} ms over {}",
            *mid as f64 / 1e3,
            *max as f64 / 1e3,
            syncs.len()
        );
    }

    // The same change as a STATEFUL upgrade: savepoint and stop, then v2 from it.
    let sp = cluster.dir.path().join("sp");
    let (t0, w0) = (Instant::now(), unix_us(SystemTime::now()));
    let o = cluster.client(&[OsStr::new("savepoint"), OsStr::new(&job), OsStr::new("--dir"), sp.as_os_str(), OsStr::new("--stop")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stopped = t0.elapsed();
    let next = submit(&cluster, "keyed_sum_v2", Some(&sp.display().to_string()));
    wait_until("the upgraded job's keyed vertex to count records", || keyed_in(&cluster, &next) > 0);
    wait_until("every sink subtask of the upgraded job to write", || {
        output_events(&cluster, "sink output begins").iter().filter(|(at, _)| *at > w0).count() >= 4
    });
    let last_old = output_events(&cluster, "sink output ends").iter().map(|&(at, _)| at).filter(|&at| at <= w0 + stopped.as_micros() as u64).max();
    let first_new = output_events(&cluster, "sink output begins").iter().map(|&(at, _)| at).filter(|&at| at > w0).min();
    let (Some(last_old), Some(first_new)) = (last_old, first_new) else {
        panic!("the sinks logged no end of the old job or no start of the new one");
    };
    let stateful = Duration::from_micros(first_new.saturating_sub(last_old));
    println!(
        "  stateful upgrade:  gap           {:>8.1} ms (last output of the old job to the first of the new; `weir savepoint --stop` took {:.0} ms)",
        ms(stateful),
        ms(stopped)
    );
    println!("  ratio: the stateful upgrade's gap is {:.0}x the live swap's longest pause", stateful.as_secs_f64() / worst.as_secs_f64().max(1e-6));
    let o = cluster.client(&[OsStr::new("cancel"), OsStr::new(&next)]);
    assert!(o.status.success(), "{}", stderr(&o));
}
