//! Timeout counts, processing-time timers end to end: the numbers `0..n` (argument `n`,
//! default 1 000 000), keyed by `i % keys` (default 50). Each key counts its records;
//! the first record of a round sets a processing-time timer `timeout-ms` (default 500)
//! later, which writes `key<TAB><count>` and starts a new round. The counts of a key's
//! lines add up to its number of records: a timer that is lost, or fires twice, shows
//! there. At the end of the input pending timers fire at once. `work` adds rounds of
//! busy work per record (tests use it to keep rounds open across a crash).

use weir_sdk::prelude::*;

fn spin(x: u64, rounds: u64) -> u64 {
    (0..rounds).fold(x, |x, _| x.rotate_left(7).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn build(job: &mut Job) {
    let n = job.arg_u64("n", 1_000_000);
    let keys = job.arg_u64("keys", 50).max(1);
    let timeout = i64::try_from(job.arg_u64("timeout-ms", 500)).unwrap_or(i64::MAX);
    let work = job.arg_u64("work", 0);
    job.name("timeout_counts");
    job.generator("numbers", 0, n)
        .key_by("by-key", move |i: &u64| {
            std::hint::black_box(spin(*i, work));
            i % keys
        })
        .process_with_timers(
            "timeouts",
            move |ctx: &mut TimerContext<'_, u64, u64>, _i: u64, _out: &mut Emitter<'_, u64>| {
                match ctx.state_mut() {
                    Some(count) => *count += 1,
                    None => {
                        ctx.set_state(1);
                        let at = ctx.current_processing_time().saturating_add(timeout);
                        ctx.register_processing_time_timer(at);
                    }
                }
            },
            |ctx: &mut TimerContext<'_, u64, u64>, _timer: Timer, out: &mut Emitter<'_, u64>| {
                if let Some(&count) = ctx.state() {
                    out.emit(count);
                    ctx.clear_state();
                }
            },
        )
        .map("format", |count: u64| count.to_string())
        .sink("out", Sink::default());
}

weir_sdk::export_job!(build);
