//! Window count, the event-time benchmark ("window-count"): the numbers `0..n`
//! (argument `n`, default 20 000 000) with event time `i / records-per-ms` ms (default
//! 1000 records per ms), keyed by `splitmix64(i) % keys` (default 100 000), counted per
//! key in event-time windows; the watermark trails the newest timestamp by
//! `out-of-orderness-ms` (default 100). Argument `windows`: `tumbling` (default, size
//! `size-ms`, default 1000), `sliding` (10 s every 1 s) or `session` (gap 100 ms).
//! Each window emits its (window, count) when it fires. Argument `sink`: `discard`
//! (default) drops them, anything else writes `key<TAB><window start> <count>` lines
//! to the default text sink; `work` adds rounds of busy work per record (tests use it
//! to keep windows open across a crash).

use weir_sdk::prelude::*;

/// The standard splitmix64 finalizer, so the host side can compute expected outputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn build(job: &mut Job) {
    let n = job.arg_u64("n", 20_000_000);
    let keys = job.arg_u64("keys", 100_000).max(1);
    let rate = job.arg_u64("records-per-ms", 1000);
    let size = job.arg_u64("size-ms", 1000);
    let lag = job.arg_u64("out-of-orderness-ms", 100);
    let work = job.arg_u64("work", 0);
    let windows = match job.arg("windows") {
        None | Some("tumbling") => Windows::tumbling(size),
        Some("sliding") => Windows::sliding(10_000, 1_000),
        Some("session") => Windows::session(100),
        Some(other) => {
            job.fail(format!("unknown windows {other:?} (tumbling, sliding, session)"));
            Windows::tumbling(size)
        }
    };
    let discard = matches!(job.arg("sink"), None | Some("discard"));
    job.name("window_count");
    let key = move |i: &u64| {
        // Extra rounds that cost time without changing the key.
        std::hint::black_box((0..work).fold(*i, |x, _| splitmix64(x)));
        splitmix64(*i) % keys
    };
    let counts = job
        .generator_with_time("numbers", 0, n, rate)
        .with_watermarks(WatermarkStrategy::bounded(lag))
        .key_by("by-key", key)
        .window(windows)
        .count("count");
    // The benchmark discards the (window, count) records as they are, as keyed-sum
    // does its sums; text is only made where it is written.
    if discard {
        counts.discard("out");
    } else {
        counts.map("format", |(w, c): (Window, u64)| format!("{} {c}", w.start)).sink("out", Sink::default());
    }
}

weir_sdk::export_job!(build);
