//! The joins section (issue 15): example `joins`, two generated streams of
//! `WEIR_BENCH_JOIN_N` records each (default 10M) over `keys = N / 10` keys (1M at the
//! default), parallelism 1, exactly-once checkpoints every second, output discarded:
//! the regular inner join (every row stays in its key's state; about N^2 / keys pairs
//! out) and the interval join `[-5, 10]` ms on the same input (rows leave the state
//! behind the watermark). One run each: a join run at the default size takes minutes.
//! Records/s counts the input records of both sides.
//!
//! The state cache is `WEIR_BENCH_JOIN_CACHE_MIB` per operator (default 512): the host's
//! default 32 MiB holds about 500 000 keys, and at 1M keys nearly every record then
//! misses it and reads fjall (measured 4x slower for the interval join, 5x for the
//! regular one).

use crate::run_wasm;

pub fn bench() {
    let n: u64 = std::env::var("WEIR_BENCH_JOIN_N").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let keys = (n / 10).max(1);
    let cache = std::env::var("WEIR_BENCH_JOIN_CACHE_MIB").unwrap_or_else(|_| "512".to_string());
    let job = crate::WEIR.example("joins");
    let (left, right, keys_arg) = (format!("left={n}"), format!("right={n}"), format!("keys={keys}"));
    println!();
    println!("joins: N = {n} records per side, {keys} keys, parallelism 1, checkpoints every 1000 ms, state cache {cache} MiB, one run each");
    println!("{:<44} {:>14} {:>12} {:>16}", "join", "rec/s (in)", "RSS MiB", "last checkpoint");
    for (name, kind) in [("regular inner join", "kind=inner"), ("interval join [-5, 10] ms", "kind=interval")] {
        let args = [
            "--arg",
            &left,
            "--arg",
            &right,
            "--arg",
            &keys_arg,
            "--arg",
            "rate=1000",
            "--arg",
            kind,
            "--arg",
            "sink=discard",
            "--checkpoint-interval",
            "1000",
            "--state-cache-mib",
            &cache,
        ];
        let m = run_wasm(&job, &args, 2 * n);
        let last = m.last_checkpoint.map_or("none".to_string(), |c| c.to_string());
        println!("{name:<44} {:>14.0} {:>12.1} {last:>16}", m.records_per_s, m.peak_rss_mib);
        for p in &m.problems {
            println!("  warning: {p}");
        }
    }
}
