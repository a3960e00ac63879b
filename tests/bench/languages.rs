//! The same map operator in each guest language: records/s through it, and how long a
//! job with it takes to start cold (compiling the component) and cached.
//!
//! The operator (`examples-wasm/polyglot/tag-*`) prefixes each value with `v:`. A
//! manifest runs generator -> tag -> discard at parallelism 1 on the embedded cluster.
//! Start times are wall-clock times of a whole `weir run` of a 1-record job: process
//! start, loading (compiling, or reading the compiled-component cache), instantiating,
//! and the run.

use std::path::Path;
use std::time::Instant;

use crate::{RUNS, WEIR, run_wasm};

const LANGUAGES: [&str; 4] = ["rust", "python", "js", "c"];

fn manifest(dir: &Path, component: &Path, count: u64) -> std::path::PathBuf {
    let text = format!(
        "name = \"tag\"\n\n[[node]]\nuid = \"numbers\"\nsource = \"generator\"\ncount = {count}\n\n[[node]]\nuid = \"tag\"\ncomponent = {:?}\n\n[[node]]\nuid = \"out\"\nsink = \"discard\"\n",
        component.display().to_string()
    );
    let path = dir.join(format!("tag-{count}.toml"));
    std::fs::write(&path, text).expect("write the manifest");
    path
}

/// Wall time of one `weir run` of `job` with the compiled-component cache in `cache`.
fn start_ms(job: &Path, cache: &Path) -> f64 {
    let started = Instant::now();
    let o = WEIR.command().env("WEIR_CACHE_DIR", cache).arg("run").arg(job).output().expect("weir starts");
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ms
}

pub fn bench(n: u64) {
    let built = WEIR.polyglot();
    println!();
    println!("map operator `tag` by language: generator -> tag -> discard, parallelism 1, N = {n}, median of {RUNS} runs");
    println!("{:<8} {:>14} {:>10} {:>12} {:>12} {:>14}", "language", "records/s", "vs rust", "cold start", "cached start", "component MiB");
    let mut rust = 0.0;
    for lang in LANGUAGES {
        let dir = tempfile::tempdir().expect("tempdir");
        let component = built.join(format!("tag-{lang}.wasm"));
        let size = std::fs::metadata(&component).map_or(0, |m| m.len()) as f64 / (1 << 20) as f64;
        let tiny = manifest(dir.path(), &component, 1);
        let cache = dir.path().join("cache");
        let cold = start_ms(&tiny, &cache);
        let mut cached: Vec<f64> = (0..RUNS).map(|_| start_ms(&tiny, &cache)).collect();
        cached.sort_by(f64::total_cmp);
        let job = manifest(dir.path(), &component, n);
        let mut rates: Vec<f64> = (0..RUNS).map(|_| run_wasm(&job, &[], n).records_per_s).collect();
        rates.sort_by(f64::total_cmp);
        let rate = rates[RUNS / 2];
        if lang == "rust" {
            rust = rate;
        }
        println!(
            "{lang:<8} {rate:>14.0} {:>10.2} {:>9.0} ms {:>9.0} ms {size:>14.1}",
            if rust > 0.0 { rate / rust } else { 0.0 },
            cold,
            cached[RUNS / 2]
        );
    }
}
