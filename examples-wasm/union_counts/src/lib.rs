//! Union: four streams of numbers become one, counted per key. `numbers` is the
//! generator `0..n` (argument `n`, default 100 000) at the job's parallelism, split into
//! its even numbers (main output) and odd ones (side output `odd`), which meet again
//! in the union; `more`
//! is `n..n+m` (`m`, default n / 2) at parallelism 1, rebalanced into the union;
//! `squares` is `0..s` (`s`, default n / 4) squared by a map. The union is no node:
//! the key selector after it reads all three. Each number `x` is keyed
//! by `splitmix64(x) % keys` (`keys`, default 1000) and counted: every record emits
//! `key<TAB>running count`, so each key's lines are exactly `1..=its count` whatever
//! the interleaving. `work` rounds of busy work per record slow it down; `sink=discard`
//! drops the output (benchmarks).
//!
//! `weir run union_counts.wasm -p 3 -o counts.tsv`

use weir_sdk::prelude::*;

/// The standard splitmix64 finalizer, so the host side can compute expected outputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn build(job: &mut Job) {
    let n = job.arg_u64("n", 100_000);
    let m = job.arg_u64("m", n / 2);
    let s = job.arg_u64("s", n / 4);
    let keys = job.arg_u64("keys", 1_000).max(1);
    let work = job.arg_u64("work", 0);
    let sink = match job.arg("sink") {
        Some("discard") => Sink::discard(),
        _ => Sink::default(),
    };
    job.name("union_counts");
    let odd = OutputTag::<u64>::new("odd");
    let evens = job.generator("numbers", 0, n).flat_map(
        "split",
        move |x: u64, out: &mut Emitter<u64>| {
            if x.is_multiple_of(2) { out.emit(x) } else { out.output(&odd, x) }
        },
    );
    let odds = evens.side_output(&OutputTag::<u64>::new("odd"));
    let more = job.generator("more", n, m).parallelism(1).rebalance();
    let squares = job.generator("squares", 0, s).map("square", |x: u64| x * x);
    evens
        .union(odds)
        .union(more)
        .union(squares)
        .key_by("by-key", move |x: &u64| {
            std::hint::black_box((0..work).fold(*x, |y, _| splitmix64(y)));
            splitmix64(*x) % keys
        })
        .count("count")
        .sink("out", sink);
}

weir_sdk::export_job!(build);
