//! Distinct values per key, with all three kinds of keyed state in one `process`
//! function: numbers `0..n` (argument `n`, default 100000) are keyed by `i % 97`, each
//! carries the value `splitmix64(i) % 13`. Per key, map state counts how often each value
//! occurred, list state keeps the values in order of first appearance, and value state
//! counts the distinct values. On every new distinct value the operator emits
//! `(key, "<distinct> <first values, comma-separated>")`, so the last line of each key
//! holds its final answer.

use weir_sdk::prelude::*;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Records one occurrence of `value`; returns the first-appearance list if the value is
/// new for this key.
fn observe(ctx: &KeyedContext<u64, u64>, value: u64) -> Result<Option<Vec<u64>>, StateError> {
    let seen = ctx.map_state::<u64, u64>("seen");
    let before = seen.get(&value)?.unwrap_or(0);
    seen.put(&value, &(before + 1))?;
    if before > 0 {
        return Ok(None);
    }
    let firsts = ctx.list_state::<u64>("firsts");
    firsts.push(&value)?;
    firsts.get().map(Some)
}

fn build(job: &mut Job) {
    let n = job.arg_u64("n", 100_000);
    job.name("distinct_values");
    job.generator("numbers", 0, n)
        .key_by("by-residue", |i: &u64| i % 97)
        .process("distinct", |ctx: &mut KeyedContext<u64, u64>, i: u64, out: &mut Emitter<String>| match observe(ctx, splitmix64(i) % 13) {
            Ok(None) => {}
            Ok(Some(firsts)) => {
                let distinct = ctx.state().copied().unwrap_or(0) + 1;
                ctx.set_state(distinct);
                let list: Vec<String> = firsts.iter().map(u64::to_string).collect();
                out.emit(format!("{distinct} {}", list.join(",")));
            }
            Err(e) => out.fail(format!("keyed state failed: {e}")),
        })
        .sink("out", Sink::default());
}

weir_sdk::export_job!(build);
