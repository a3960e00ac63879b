//! Keyed sum, the throughput benchmark: the numbers `0..n` (argument `n`, default
//! 1 000 000), keyed by `splitmix64(i) % 100 000`, summed per key; every record emits
//! `(key, running sum)`. Argument `sink`: `discard` (default) drops the output,
//! `postgres` writes table `pg-table` (columns `k`, `v`; default `sums`) of the server on
//! 127.0.0.1:`pg-port` as user postgres with the password in file `pg-password-file`,
//! `pg-mode` `upsert` (default) or `append`, `pg-on-error` `fail` (default) or
//! `dead-letter` (into `weir_sink_dead_letters`); anything else uses the default text sink.
//!
//! The key selector runs as its own small operator (the generator is a host source) and
//! passes the value through untouched, which is exactly "map i to (key, i), key by key";
//! the sum then runs on value state that travels with each batch, without host calls.
//!
//! Built with feature `v2` (the crate `keyed_sum_v2`, which compiles this file) it is
//! version 2 of the same job graph (nodes, uids, key-by, arguments, sinks): its sum
//! keeps the same value state (the untagged running sum) but emits `sum + TAG`, so
//! committed output shows which version wrote each record across a live swap or an
//! upgrade while the sums continue. v1 declares state version 1, v2 version 2; v2 logs
//! the version it restored from (`keyed_sum v2 sum: restored state version Some(1)`).

use weir_sdk::prelude::*;

/// The standard splitmix64 finalizer, so the host side can compute expected outputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What v2 adds to every sum it emits: far above any sum of `0..n` per key for the
/// inputs the tests and benchmarks use, so `v >= TAG` marks a v2 record.
#[cfg(feature = "v2")]
pub const TAG: u64 = 1_000_000_000_000;

fn build(job: &mut Job) {
    let n = job.arg_u64("n", 1_000_000);
    let work = job.arg_u64("work", 0);
    let arg = |name: &str, default: &str| job.arg(name).unwrap_or(default).to_string();
    let sink = match job.arg("sink") {
        None | Some("discard") => Sink::discard(),
        Some("postgres") => Sink::connector(
            Connector::new("postgres")
                .option("host", "127.0.0.1")
                .option("port", arg("pg-port", "5432"))
                .option("table", arg("pg-table", "sums"))
                .option("key-column", "k")
                .option("value-column", "v")
                .option("mode", arg("pg-mode", "upsert"))
                .option("on-error", arg("pg-on-error", "fail"))
                .option("password-file", arg("pg-password-file", "/etc/weir/pg-password")),
        ),
        Some(_) => Sink::default(),
    };
    job.name("keyed_sum");
    let key = move |i: &u64| {
        // Extra rounds that cost time without changing the key.
        std::hint::black_box((0..work).fold(*i, |x, _| splitmix64(x)));
        splitmix64(*i) % 100_000
    };
    let keyed = job.generator("numbers", 0, n).key_by("by-key", key);
    #[cfg(not(feature = "v2"))]
    let sums = keyed.sum("sum").state_version(1);
    #[cfg(feature = "v2")]
    let sums = {
        let mut checked = false;
        keyed
            .process("sum", move |ctx: &mut KeyedContext<u64, u64>, v: u64, out: &mut Emitter<u64>| {
                if !checked {
                    checked = true;
                    check_restored(ctx.restored_state_version());
                }
                let sum = ctx.state().copied().unwrap_or(0) + v;
                ctx.set_state(sum);
                out.emit(sum + TAG);
            })
            .state_version(2)
    };
    sums.sink("out", sink);
}

/// Both versions keep the untagged running sum, so v2 reads state of version 1 (or
/// its own) as it is; anything else it cannot read. What it restored from is logged
/// (once per instance), which the tests read in the TaskManagers' logs.
#[cfg(feature = "v2")]
fn check_restored(restored: Option<u32>) {
    if let Some(version) = restored.filter(|v| !matches!(v, 1 | 2)) {
        panic!("sum: cannot read state of format version {version}");
    }
    weir_sdk::log::info(&format!("keyed_sum v2 sum: restored state version {restored:?}"));
}

weir_sdk::export_job!(build);
