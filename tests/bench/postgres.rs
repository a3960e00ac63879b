//! The PostgreSQL section (issue 16): generator -> keyed sum -> PostgreSQL sink, exactly
//! once with checkpoints every second, embedded (`weir run`) at parallelism 1 and 2,
//! into a real server (`weir_testkit::Postgres`, fsync off) on this machine: upserts
//! into a table keyed by the key, and appends. N from `WEIR_BENCH_PG_N` (default 2M):
//! every record is a row, so the database, not the job, sets the pace.

use std::path::Path;

use weir_testkit::Postgres;

use crate::{RUNS, median_of_runs};

pub fn bench(keyed_sum: &Path) {
    let n: u64 = std::env::var("WEIR_BENCH_PG_N").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let pg = Postgres::start();
    pg.psql("CREATE TABLE sums (k bigint PRIMARY KEY, v bigint NOT NULL); CREATE TABLE log (k bigint NOT NULL, v bigint NOT NULL)");
    println!();
    println!("N = {n} records, generator -> keyed sum -> PostgreSQL, exactly-once checkpoints every 1 s, median of {RUNS} runs");
    println!("{:<36} {:>14} {:>12}", "postgres sink", "rec/s", "RSS MiB");
    let (n_arg, port, pw) = (format!("n={n}"), format!("pg-port={}", pg.port()), format!("pg-password-file={}", pg.dir().join("pw").display()));
    for (name, p, table, mode) in [
        ("upsert, p=1", "1", "sums", "upsert"),
        ("upsert, p=2", "2", "sums", "upsert"),
        ("append, p=1", "1", "log", "append"),
        ("append, p=2", "2", "log", "append"),
    ] {
        let (table, mode) = (format!("pg-table={table}"), format!("pg-mode={mode}"));
        let args = [
            "-p",
            p,
            "--checkpoint-interval",
            "1000",
            "--arg",
            &n_arg,
            "--arg",
            "sink=postgres",
            "--arg",
            &port,
            "--arg",
            &pw,
            "--arg",
            &table,
            "--arg",
            &mode,
        ];
        let m = median_of_runs(keyed_sum, &args, n);
        println!("{name:<36} {:>14.0} {:>12.1}", m.records_per_s, m.peak_rss_mib);
        for p in &m.problems {
            println!("  warning: {p}");
        }
    }
    let rows = pg.psql("SELECT count(*) FROM log");
    assert_eq!(rows.trim(), (n * RUNS as u64 * 2).to_string(), "every append run wrote each record once");
}
