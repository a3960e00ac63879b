//! The windows section (issue 14's "window-count"): parallelism 1, exactly-once
//! checkpoints every second, fjall-backed state; record i has key splitmix64(i) %
//! 100 000 and event time i / 1000 ms, the watermark trails the newest timestamp by
//! 100 ms, and tumbling 1 s windows count per key. Sliding (10 s every 1 s) and session
//! (gap 100 ms) windows are reported beside it.
//!
//! Flink 2.3 (DataStream, TumblingEventTimeWindows + AggregateFunction, hashmap state,
//! same checkpoints) does the tumbling workload at 1.3M records/s on this machine with
//! 1 GB RSS; the target is at least 7M records/s below 150 MB.

use std::path::Path;

use crate::{RUNS, median_of_runs};

const TARGET_RATE: f64 = 7e6;
const TARGET_RSS_MIB: f64 = 150.0;

pub fn bench(job: &Path, n: u64) {
    let n_arg = format!("n={n}");
    println!();
    println!("N = {n} records, window-count, parallelism 1, checkpoints every 1000 ms, median of {RUNS} runs");
    println!("{:<28} {:>14} {:>12}", "windows", "rec/s", "RSS MiB");
    for (name, windows) in [("tumbling 1 s", "tumbling"), ("sliding 10 s / 1 s", "sliding"), ("session gap 100 ms", "session")] {
        let windows = format!("windows={windows}");
        let args = ["--arg", n_arg.as_str(), "--arg", windows.as_str(), "--arg", "sink=discard", "--checkpoint-interval", "1000"];
        let m = median_of_runs(job, &args, n);
        println!("{name:<28} {:>14.0} {:>12.1}", m.records_per_s, m.peak_rss_mib);
        if windows == "windows=tumbling" {
            let verdict = |ok: bool| if ok { "holds" } else { "does NOT hold" };
            println!(
                "target (>= {:.0}M records/s, < {TARGET_RSS_MIB:.0} MiB): {}",
                TARGET_RATE / 1e6,
                verdict(m.records_per_s >= TARGET_RATE && m.peak_rss_mib < TARGET_RSS_MIB)
            );
        }
        for p in &m.problems {
            println!("  warning: {p}");
        }
    }
}
