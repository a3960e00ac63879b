//! Fixture: operator "spin" loops forever on its first record, so the host's fuel or
//! epoch limit must stop it. With `--arg host-calls=1` the loop calls a host import
//! (the clock) on every turn, so most of its time is spent in the host.

use weir_sdk::prelude::*;

fn build(job: &mut Job) {
    job.name("bad_loop");
    let host_calls = job.arg("host-calls").is_some_and(|v| v == "1");
    let numbers = job.generator("numbers", 0, 10);
    let spun = if host_calls {
        numbers.map("spin", |i: u64| -> u64 {
            let mut x = i;
            loop {
                let now = weir_sdk::wit::weir::dataflow::clock::current_processing_time();
                x = std::hint::black_box(x.wrapping_add(now as u64));
            }
        })
    } else {
        numbers.map("spin", |i: u64| -> u64 {
            let mut x = i;
            // black_box keeps the optimizer from proving the loop pure and removing it.
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
    };
    spun.discard("out");
}

weir_sdk::export_job!(build);
