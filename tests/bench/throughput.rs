//! Throughput benchmark: records/s and peak RSS of two workloads, each as a Wasm job
//! run by `weir run` (embedded cluster, parallelism 1, fjall-backed keyed state) and
//! as a native Rust loop doing the same work, the limit Wasm is measured against.
//!
//! `cargo bench --bench throughput` (N records from `WEIR_BENCH_N`, default 20M).
//!
//! - keyed-sum: key = splitmix64(i) % 100000, value = i; running sum per key; every
//!   update emitted to a discard sink.
//! - wordcount: N/8 lines of 8 words, word j of line i = "w" + splitmix64(i*8+j) % 10000;
//!   split, running count per word, every update emitted to a discard sink.
//! - cluster: keyed-sum at parallelism 2, embedded (`weir run`) against a JobManager
//!   and two one-slot TaskManager processes on loopback (`weir submit`); see `cluster.rs`.
//! - checkpoints: keyed-sum at parallelism 1 without and with exactly-once checkpoints
//!   every second; see `checkpoint_overhead.rs`.
//! - recovery: time from SIGKILLing a TaskManager to records flowing again; see
//!   `recovery.rs`.
//! - languages: the same map operator in Rust, Python, JavaScript and C: records/s,
//!   cold and cached start; see `languages.rs`.
//! - windows: event-time window counts (tumbling, sliding, session) with exactly-once
//!   checkpoints; see `windows.rs`.
//! - streams: one keyed operator fed by one generator, a union of two, and a connect of
//!   two; see `streams.rs`.
//! - postgres: generator -> keyed sum -> PostgreSQL (upsert, append) at parallelism 1
//!   and 2 with exactly-once checkpoints; see `postgres.rs` (`WEIR_BENCH_PG_N`).
//! - joins: a regular inner join and an interval join of two generated streams with
//!   exactly-once checkpoints; see `joins.rs` (`WEIR_BENCH_JOIN_N` records per side).
//! - kafka: Kafka -> count -> Kafka (at-least-once) and -> PostgreSQL at parallelism 1
//!   and 2, records/s and latency p50/p99 at a fixed rate, beside the broker's own
//!   ceiling; see `kafka.rs` (`WEIR_BENCH_KAFKA_N`, `WEIR_BENCH_KAFKA_RATE`).
//!
//! - tenants: the noisy neighbour, a tenant's keyed-sum alone and beside another
//!   tenant's fuel-hungry job with and without a fuel rate; see `tenants.rs`.
//! - swap: the pause in output of a live code swap against a STATEFUL upgrade's gap,
//!   keyed_sum -> keyed_sum_v2 at parallelism 4 on two TaskManagers; see `swap.rs`.
//!
//! `WEIR_BENCH_ONLY` picks sections, comma-separated from `keyed-sum`, `wordcount`,
//! `cluster`, `checkpoints`, `recovery`, `languages`, `windows`, `streams`, `joins`, `postgres`, `kafka`, `tenants`, `swap` (default:
//! all), e.g.
//! `WEIR_BENCH_ONLY=cluster cargo bench --bench throughput`.

mod checkpoint_overhead;
mod cluster;
mod joins;
mod kafka;
mod languages;
mod postgres;
mod recovery;
mod streams;
mod swap;
mod tenants;
mod windows;

use std::collections::HashMap;
use std::hint::black_box;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use weir_testkit::{Weir, splitmix64};

/// This build's `weir` binary and target directory (Cargo tells only benches and tests
/// of the root package).
const WEIR: Weir = Weir::new(env!("CARGO_BIN_EXE_weir"), env!("CARGO_TARGET_TMPDIR"));

struct Measure {
    records_per_s: f64,
    peak_rss_mib: f64,
    /// The id of the last completed checkpoint, when the job checkpointed.
    last_checkpoint: Option<u64>,
    /// Warnings and errors the job logged.
    problems: Vec<String>,
}

/// Runs a job `RUNS` times and keeps the median throughput (and the largest RSS):
/// two cores shared with neighbours make single runs vary by 20% or more.
const RUNS: usize = 3;

fn median_of_runs(job: &Path, args: &[&str], records: u64) -> Measure {
    let mut runs: Vec<Measure> = (0..RUNS).map(|_| run_wasm(job, args, records)).collect();
    runs.sort_by(|a, b| a.records_per_s.total_cmp(&b.records_per_s));
    let peak = runs.iter().map(|m| m.peak_rss_mib).fold(0.0, f64::max);
    let mid = runs.swap_remove(RUNS / 2);
    Measure { peak_rss_mib: peak, ..mid }
}

/// Peak RSS of a finished child, from wait4's rusage.
#[allow(unsafe_code)]
fn wait_rss(child: std::process::Child) -> (std::process::ExitStatus, f64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child process.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    std::mem::forget(child);
    let exit = std::os::unix::process::ExitStatusExt::from_raw(status);
    (exit, usage.ru_maxrss as f64 / 1024.0)
}

fn self_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs a job and reads its throughput from the job report (so process start and
/// component loading are not counted) and its peak RSS from the kernel.
fn run_wasm(job: &Path, args: &[&str], records: u64) -> Measure {
    let mut child = WEIR
        .command()
        .arg("run")
        .arg(job)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("weir starts");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr).expect("read stderr");
    }
    let (status, rss) = wait_rss(child);
    assert!(status.success(), "job failed: {stderr}");
    let (secs, last_checkpoint) = stderr.lines().find_map(parse_finished).unwrap_or_else(|| panic!("no report in: {stderr}"));
    let problems = stderr.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).map(str::to_string).collect();
    Measure { records_per_s: records as f64 / secs, peak_rss_mib: rss, last_checkpoint, problems }
}

/// The seconds and the last completed checkpoint of a job report's first line,
/// `job NAME (ID) finished in X.XXXs[, last checkpoint K]`.
fn parse_finished(line: &str) -> Option<(f64, Option<u64>)> {
    let rest = line.split(") finished in ").nth(1)?;
    let (secs, tail) = rest.split_once(',').unwrap_or((rest, ""));
    let secs = secs.trim().trim_end_matches('s').parse().ok()?;
    Some((secs, tail.trim().strip_prefix("last checkpoint ").and_then(|k| k.trim().parse().ok())))
}

fn native_keyed_sum(n: u64) -> f64 {
    let start = Instant::now();
    let mut sums: HashMap<u64, u64, BuildFx> = HashMap::with_hasher(BuildFx);
    for i in 0..n {
        let key = splitmix64(i) % 100_000;
        let s = sums.entry(key).or_default();
        *s = s.wrapping_add(i);
        black_box((key, *s));
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn native_wordcount(path: &Path, words: u64) -> f64 {
    let start = Instant::now();
    let mut counts: HashMap<String, u64, BuildFx> = HashMap::with_hasher(BuildFx);
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("input"));
    for line in file.lines() {
        let line = line.expect("line");
        for w in line.split_whitespace() {
            let c = match counts.get_mut(w) {
                Some(c) => c,
                None => counts.entry(w.to_string()).or_default(),
            };
            *c += 1;
            black_box((w, *c));
        }
    }
    words as f64 / start.elapsed().as_secs_f64()
}

/// FxHash: the fast hasher a careful native implementation would pick.
#[derive(Clone, Copy, Default)]
struct BuildFx;
#[derive(Default)]
struct Fx(u64);
impl std::hash::BuildHasher for BuildFx {
    type Hasher = Fx;
    fn build_hasher(&self) -> Fx {
        Fx(0)
    }
}
impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

fn write_words(path: &Path, n: u64) {
    let mut w = BufWriter::new(std::fs::File::create(path).expect("create"));
    for i in 0..n / 8 {
        for j in 0..8 {
            let sep = if j == 7 { "\n" } else { " " };
            write!(w, "w{}{sep}", splitmix64(i * 8 + j) % 10_000).expect("write");
        }
    }
    w.flush().expect("flush");
}

fn row(name: &str, wasm: &Measure, native: f64, native_rss: f64) {
    println!(
        "{name:<12} {:>14.0} {:>14.0} {:>8.2} {:>12.1} {:>12.1}",
        wasm.records_per_s,
        native,
        wasm.records_per_s / native,
        wasm.peak_rss_mib,
        native_rss
    );
}

/// The benchmark's sections, in the order they run.
const SECTIONS: [&str; 12] =
    ["keyed-sum", "wordcount", "cluster", "checkpoints", "recovery", "languages", "windows", "streams", "joins", "postgres", "kafka", "tenants", "swap"];

/// The sections `WEIR_BENCH_ONLY` asks for (all when unset or empty).
fn sections() -> Vec<&'static str> {
    let only = std::env::var("WEIR_BENCH_ONLY").unwrap_or_default();
    if only.trim().is_empty() {
        return SECTIONS.to_vec();
    }
    let wanted: Vec<&str> = only.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    for w in &wanted {
        assert!(SECTIONS.contains(w), "WEIR_BENCH_ONLY: unknown section {w:?}, expected some of {SECTIONS:?}");
    }
    SECTIONS.iter().copied().filter(|s| wanted.contains(s)).collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("throughput: benchmark");
        return;
    }
    let n: u64 = std::env::var("WEIR_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000_000);
    let sections = sections();
    let (ks, wc) = (sections.contains(&"keyed-sum"), sections.contains(&"wordcount"));
    let keyed_sum = WEIR.example("keyed_sum");
    // Warm the compiled-component cache so runs measure processing, not compiling.
    let _ = run_wasm(&keyed_sum, &["--arg", "n=1000"], 1000);

    if ks || wc {
        println!("N = {n} records, parallelism 1, fjall-backed keyed state, fuel metering on, median of {RUNS} runs");
        println!("{:<12} {:>14} {:>14} {:>8} {:>12} {:>12}", "workload", "wasm rec/s", "native rec/s", "ratio", "wasm RSS MiB", "native MiB");
    }
    if ks {
        let native_ks = native_keyed_sum(n);
        let native_ks_rss = self_rss_mib();
        let n_arg = format!("n={n}");
        let wasm_ks = median_of_runs(&keyed_sum, &["--arg", &n_arg, "--arg", "sink=discard"], n);
        row("keyed-sum", &wasm_ks, native_ks, native_ks_rss);
    }
    if wc {
        let dir = tempfile::tempdir().expect("tempdir");
        let words = dir.path().join("words.txt");
        write_words(&words, n);
        let wordcount = WEIR.example("wordcount");
        let native_wc = native_wordcount(&words, n);
        let native_wc_rss = self_rss_mib();
        let words_arg = words.display().to_string();
        let wasm_wc = median_of_runs(&wordcount, &["--input", &words_arg, "--arg", "sink=discard"], n);
        row("wordcount", &wasm_wc, native_wc, native_wc_rss);
    }
    if sections.contains(&"cluster") {
        cluster::bench(&keyed_sum, n);
    }
    if sections.contains(&"checkpoints") {
        checkpoint_overhead::bench(&keyed_sum, n);
    }
    if sections.contains(&"recovery") {
        recovery::bench(&keyed_sum);
    }
    if sections.contains(&"languages") {
        languages::bench(n.min(5_000_000));
    }
    if sections.contains(&"windows") {
        windows::bench(&WEIR.example("window_count"), n);
    }
    if sections.contains(&"streams") {
        streams::bench(&keyed_sum, n);
    }
    if sections.contains(&"joins") {
        joins::bench();
    }
    if sections.contains(&"postgres") {
        postgres::bench(&keyed_sum);
    }
    if sections.contains(&"kafka") {
        kafka::bench();
    }
    if sections.contains(&"tenants") {
        tenants::bench();
    }
    if sections.contains(&"swap") {
        swap::bench();
    }
}
