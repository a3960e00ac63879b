//! Fixture: operator "spin" loops forever on its first record, so the host's fuel or
//! epoch limit must stop it.

use weir_sdk::prelude::*;

fn build(job: &mut Job) {
    job.name("bad_loop");
    job.generator("numbers", 0, 10)
        .map("spin", |i: u64| -> u64 {
            let mut x = i;
            // black_box keeps the optimizer from proving the loop pure and removing it.
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
        .discard("out");
}

weir_sdk::export_job!(build);
