//! The checkpoints section: keyed-sum at parallelism 1 (`weir run`, embedded) without
//! checkpoints and with exactly-once checkpoints every second, the state written to a
//! checkpoint directory inside the run's temporary state directory.
//!
//! The targets, with checkpoints: at least 7M records/s, and at least 90% of
//! the throughput without them.
//!
//! Runs alternate between the two setups, in the order ABBA ABBA..., so that a drift
//! of the machine's speed (neighbours, thermal) over the section weighs on both alike.

use std::path::Path;

use crate::cluster::median;
use crate::{Measure, RUNS, run_wasm};

const INTERVAL_MS: &str = "1000";
const TARGET_RATE: f64 = 7e6;
const TARGET_RATIO: f64 = 0.9;

pub fn bench(job: &Path, n: u64) {
    let n_arg = format!("n={n}");
    let plain = ["--arg", n_arg.as_str(), "--arg", "sink=discard"];
    let checkpointed = ["--arg", n_arg.as_str(), "--arg", "sink=discard", "--checkpoint-interval", INTERVAL_MS];
    let (mut without, mut with): (Vec<Measure>, Vec<Measure>) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        if run % 2 == 0 {
            without.push(run_wasm(job, &plain, n));
            with.push(run_wasm(job, &checkpointed, n));
        } else {
            with.push(run_wasm(job, &checkpointed, n));
            without.push(run_wasm(job, &plain, n));
        }
    }
    let rates = |ms: &[Measure]| ms.iter().map(|m| m.records_per_s).collect::<Vec<_>>();
    let (off, on) = (median(&rates(&without)), median(&rates(&with)));
    let ratio = on / off;
    let list = |ms: &[Measure]| ms.iter().map(|m| format!("{:.2}M", m.records_per_s / 1e6)).collect::<Vec<_>>().join(" ");
    let rss = |ms: &[Measure]| ms.iter().map(|m| m.peak_rss_mib).fold(0.0, f64::max);

    println!();
    println!("N = {n} records, keyed-sum, parallelism 1, median of {RUNS} runs (alternating ABBA)");
    println!("{:<44} {:>14} {:>12}  runs", "setup", "rec/s", "RSS MiB");
    println!("{:<44} {off:>14.0} {:>12.1}  {}", "no checkpoints", rss(&without), list(&without));
    println!("{:<44} {on:>14.0} {:>12.1}  {}", format!("exactly-once checkpoints every {INTERVAL_MS} ms"), rss(&with), list(&with));
    let completed: Vec<String> = with.iter().map(|m| m.last_checkpoint.map_or("none".to_string(), |c| c.to_string())).collect();
    let secs: Vec<String> = with.iter().map(|m| format!("{:.1}", n as f64 / m.records_per_s)).collect();
    println!("last completed checkpoint per run (ids count from 1): {} (run lengths {} s)", completed.join(" "), secs.join(" "));
    let pairs: Vec<String> = with.iter().zip(&without).map(|(a, b)| format!("{:.2}", a.records_per_s / b.records_per_s)).collect();
    println!("ratio with/without: {ratio:.3} (of medians; run by run: {})", pairs.join(" "));
    let verdict = |ok: bool| if ok { "holds" } else { "does NOT hold" };
    println!("target (>= {:.0}M records/s with checkpoints): {}", TARGET_RATE / 1e6, verdict(on >= TARGET_RATE));
    println!("target (>= {:.0}% of the throughput without checkpoints): {}", TARGET_RATIO * 100.0, verdict(ratio >= TARGET_RATIO));
    for (setup, ms) in [("without checkpoints", &without), ("with checkpoints", &with)] {
        for (run, m) in ms.iter().enumerate().filter(|(_, m)| !m.problems.is_empty()) {
            println!("--- warnings of run {run} {setup} ---\n{}", m.problems.join("\n"));
        }
    }
}
