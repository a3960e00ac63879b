//! Backpressure fixture: a generator as fast as the host can make numbers (argument
//! `n`, default unbounded in practice), rebalanced over a deliberately slow operator
//! that burns `work` rounds of splitmix64 per record (default 20 000), into a discard
//! sink. Without backpressure the records in flight would grow by millions per second.

use weir_sdk::prelude::*;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn build(job: &mut Job) {
    let n = job.arg_u64("n", u64::MAX / 2);
    let work = job.arg_u64("work", 20_000);
    job.name("slow_map");
    job.generator("numbers", 0, n).rebalance().map("slow", move |i: u64| (0..work).fold(i, |x, _| splitmix64(x))).discard("out");
}

weir_sdk::export_job!(build);
