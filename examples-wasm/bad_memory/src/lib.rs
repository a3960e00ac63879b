//! Fixture: operator "hog" allocates and touches memory without bound on its first
//! record, so the host's memory limit must stop it.

use weir_sdk::prelude::*;

fn build(job: &mut Job) {
    job.name("bad_memory");
    job.generator("numbers", 0, 10)
        .map("hog", |i: u64| -> u64 {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touch every page so the memory is really committed, and keep it alive.
                let mut chunk = vec![0u8; 1 << 20];
                for page in chunk.chunks_mut(4096) {
                    page[0] = i as u8 ^ 0x5a;
                }
                hoard.push(std::hint::black_box(chunk));
            }
        })
        .discard("out");
}

weir_sdk::export_job!(build);
