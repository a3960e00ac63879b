//! State TTL: a running count per key whose state expires `ttl-ms` (default one hour; 0:
//! no TTL) of processing time after the key's last record (`update-on-read=1`: after its
//! last batch), so a key that comes back after a longer silence starts again at 1.
//!
//! Records are the numbers `0..n` (default 20 000) from one generator, keyed by
//! `i % keys` (default 40). To make a silence without a slow clock, the counter sleeps
//! `pause-ms` (default 0) after record `pause-at` (default none): every state written
//! up to then is older than the pause when the next batch comes. After `pause-at`,
//! records go to the first `keys-after` keys only (default all), so the state of the
//! others is never read again and only the host's background sweep removes it. Each
//! record burns `work` rounds of splitmix64 (default 0), to keep the job running (and
//! checkpointing) for a while. Output: `key<TAB>count` per record.

use std::time::Duration;

use weir_sdk::prelude::*;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn build(job: &mut Job) {
    let n = job.arg_u64("n", 20_000);
    let keys = job.arg_u64("keys", 40).max(1);
    let keys_after = job.arg_u64("keys-after", keys).max(1);
    let ttl_ms = job.arg_u64("ttl-ms", 3_600_000);
    let pause_at = job.arg_u64("pause-at", u64::MAX);
    let pause_ms = job.arg_u64("pause-ms", 0);
    let work = job.arg_u64("work", 0);
    let mut ttl = StateTtl::new(ttl_ms);
    if job.arg("update-on-read") == Some("1") {
        ttl = ttl.update_on_read();
    }
    job.name("ttl_counts");
    let keyed = job.generator("numbers", 0, n).key_by("by-key", move |i: &u64| if *i <= pause_at { i % keys } else { i % keys_after });
    // `ttl-ms=0`: no TTL, the baseline of what the TTL costs.
    let keyed = if ttl_ms > 0 { keyed.state_ttl(ttl) } else { keyed };
    keyed
        .process("count", move |ctx: &mut KeyedContext<u64, u64>, i: u64, out: &mut Emitter<u64>| {
            let count = ctx.state().copied().unwrap_or(0) + 1;
            ctx.set_state(count);
            out.emit(count);
            if i == pause_at {
                std::thread::sleep(Duration::from_millis(pause_ms));
            } else if work > 0 {
                std::hint::black_box((0..work).fold(i, |x, _| splitmix64(x)));
            }
        })
        .sink("out", Sink::default());
}

weir_sdk::export_job!(build);
