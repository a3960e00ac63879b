//! Fixture: operator "explode" panics with `poisoned record 3` on the fourth record of
//! generator(0, 10); the SDK's panic hook logs the message before the instance traps.

use weir_sdk::prelude::*;

fn build(job: &mut Job) {
    job.name("bad_panic");
    job.generator("numbers", 0, 10)
        .map("explode", |i: u64| {
            if i == 3 {
                panic!("poisoned record {i}");
            }
            i
        })
        .discard("out");
}

weir_sdk::export_job!(build);
