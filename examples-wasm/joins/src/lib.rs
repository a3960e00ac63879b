//! Joins: two generated streams keyed alike and joined, the kind chosen by `kind`.
//!
//! - `left`: the generator `0..left` (argument, default 20 000), row `i` with key
//!   `splitmix64(i) % keys` (`keys`, default 5 000) at event time
//!   `i / rate + splitmix64(i) % jitter` ms (`rate`, default 10 rows per ms; `jitter`,
//!   default 1: in order; more shuffles rows within `jitter` ms, and the watermarks
//!   allow that out-of-orderness).
//! - `right`: the generator `0..right` (default 20 000), row `j` with key
//!   `splitmix64(j + 2^40) % keys` at `j / rate + splitmix64(j + 2^41) % jitter` ms.
//!
//! `kind` (output lines `key<TAB>value`):
//! - `inner` (default): every pair of a key, `l r`;
//! - `left`: left outer, `l r` or `l -`; `full`: full outer, also `- r`;
//! - `interval`: pairs with `r.ts` in `[l.ts + lower, l.ts + upper]` (`lower`, default
//!   -5; `upper`, default 10), `l r`;
//! - `tumbling` / `sliding`: pairs in the same event-time window of `size` ms (default
//!   20) sliding by `slide` (default 10), `start l r`.
//!
//! The regular joins take `retention-ms` (event time: rows meet only if at most that far
//! apart, and an outer join emits an unmatched row once the watermark passes its time +
//! the retention; default 0: none) and `ttl-ms` (a processing-time state TTL per row;
//! default 0: none; `update-on-read=1` refreshes rows as they are met).
//!
//! To make a silence without a slow clock, each side's timestamp assigner sleeps
//! `pause-ms` (default 0) at its row `pause-at` (default none): the rows of both sides
//! from that row's batch on reach the join after the pause. `work` burns that many rounds
//! of splitmix64 per row (default 0), to keep the job running (and checkpointing).
//!
//! `sink=discard` drops the output (the benchmark).
//!
//! `weir run joins.wasm -p 3 -o joined.tsv --arg kind=interval --arg jitter=50`

use weir_sdk::prelude::*;

/// The standard splitmix64 finalizer, so the host side can compute expected outputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const RIGHT_KEY: u64 = 1 << 40;
const RIGHT_JITTER: u64 = 1 << 41;

fn or_dash(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A signed argument (`arg_u64` takes no sign).
fn arg_i64(job: &mut Job, name: &str, default: i64) -> i64 {
    match job.arg(name).map(str::parse::<i64>) {
        None => default,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            job.fail(format!("argument {name}: {e}"));
            default
        }
    }
}

fn build(job: &mut Job) {
    let left = job.arg_u64("left", 20_000);
    let right = job.arg_u64("right", 20_000);
    let keys = job.arg_u64("keys", 5_000).max(1);
    let rate = job.arg_u64("rate", 10).max(1);
    let jitter = job.arg_u64("jitter", 1).max(1);
    let lower = arg_i64(job, "lower", -5);
    let upper = arg_i64(job, "upper", 10);
    let size = job.arg_u64("size", 20);
    let slide = job.arg_u64("slide", 10);
    let retention = job.arg_u64("retention-ms", 0);
    let ttl_ms = job.arg_u64("ttl-ms", 0);
    let update_on_read = job.arg("update-on-read") == Some("1");
    let pause_at = job.arg_u64("pause-at", u64::MAX);
    let pause_ms = job.arg_u64("pause-ms", 0);
    let work = job.arg_u64("work", 0);
    job.name("joins");
    let strategy = WatermarkStrategy::bounded(jitter);
    // The pause and the work happen where each row gets its time, upstream of the join.
    let slow = move |i: u64| {
        if i == pause_at {
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
        } else if work > 0 {
            std::hint::black_box((0..work).fold(i, |x, _| splitmix64(x)));
        }
    };
    let left = job
        .generator("left", 0, left)
        .assign_timestamps(
            "left-time",
            move |i: &u64| {
                slow(*i);
                (i / rate + splitmix64(*i) % jitter) as i64
            },
            strategy,
        )
        .key_by("left-key", move |i: &u64| splitmix64(*i) % keys);
    let right = job
        .generator("right", 0, right)
        .assign_timestamps(
            "right-time",
            move |j: &u64| {
                slow(*j);
                (j / rate + splitmix64(j + RIGHT_JITTER) % jitter) as i64
            },
            strategy,
        )
        .key_by("right-key", move |j: &u64| splitmix64(j + RIGHT_KEY) % keys);
    let regular = move |joined: JoinedStreams<u64, u64, u64>| {
        let joined = if retention > 0 { joined.retention_ms(retention) } else { joined };
        let ttl = if update_on_read { StateTtl::new(ttl_ms).update_on_read() } else { StateTtl::new(ttl_ms) };
        if ttl_ms > 0 { joined.state_ttl(ttl) } else { joined }
    };
    let joined = match job.arg("kind") {
        None | Some("inner") => regular(left.join(right)).inner("join").map("format", |(l, r)| format!("{l} {r}")),
        Some("left") => regular(left.join(right)).left_outer("join").map("format", |(l, r)| format!("{l} {}", or_dash(r))),
        Some("full") => regular(left.join(right)).full_outer("join").map("format", |(l, r)| format!("{} {}", or_dash(l), or_dash(r))),
        Some("interval") => left.interval_join(right).between(lower, upper).process("join", |l: &u64, r: &u64, _ctx, out| {
            out.emit(format!("{l} {r}"));
        }),
        Some("tumbling") => left.join(right).window(Windows::tumbling(size)).apply("join", |w, l, r| format!("{} {l} {r}", w.start)),
        Some("sliding") => left.join(right).window(Windows::sliding(size, slide)).apply("join", |w, l, r| format!("{} {l} {r}", w.start)),
        Some(other) => {
            job.fail(format!("kind {other:?}: one of inner, left, full, interval, tumbling, sliding"));
            return;
        }
    };
    let sink = match job.arg("sink") {
        Some("discard") => Sink::discard(),
        _ => Sink::default(),
    };
    joined.sink("out", sink);
}

weir_sdk::export_job!(build);
