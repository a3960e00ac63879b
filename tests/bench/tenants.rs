//! The tenants section (issue 19): the noisy neighbour. Tenant A's keyed-sum (p=1)
//! runs alone on a TaskManager with two slots, then beside tenant B's fuel-hungry
//! keyed-sum (`work` per record, endless) held to B's `fuelPerSecond`, then beside the
//! same job of tenant C, who has no fuel rate. A's records/s in each, the ratios to
//! alone (the target: A keeps >= 90% beside the throttled B), B's throttled seconds,
//! and A's fuel over all its runs (the same job on the same input: the spread in %).
//!
//! `WEIR_BENCH_TENANTS_N` records per run of A (default 10 000 000),
//! `WEIR_BENCH_TENANTS_RUNS` runs of each (default 7: on a shared machine single runs
//! vary by a factor of two),
//! `WEIR_BENCH_TENANTS_RATE` B's fuel per second (default 50 000 000, about a tenth
//! of what one core burns running keyed-sum).

use serde_json::{Value, json};
use weir_testkit::{TestCluster, http};

use crate::WEIR;

const TARGET: f64 = 0.9;

fn call(cluster: &TestCluster, token: &str, method: &str, path: &str, body: &[u8]) -> Value {
    let auth = format!("Bearer {token}");
    let kind = if path.ends_with("/artifacts") { "application/wasm" } else { "application/json" };
    let (status, bytes) = http::request(method, &format!("{}{path}", cluster.rest), &[("Content-Type", kind), ("Authorization", &auth)], body);
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    assert!((200..300).contains(&status), "{method} {path}: {status} {v}");
    v
}

/// Creates tenant `name` with `quota` and returns a token for it.
fn tenant(cluster: &TestCluster, name: &str, quota: Value) -> String {
    call(cluster, &cluster.token, "POST", "/api/v1/tenants", json!({"name": name, "quota": quota}).to_string().as_bytes());
    call(cluster, &cluster.token, "POST", &format!("/api/v1/tenants/{name}/tokens"), b"{}")["token"].as_str().expect("token").to_string()
}

fn submit(cluster: &TestCluster, token: &str, args: Value) -> String {
    let artifact = call(cluster, token, "POST", "/api/v1/artifacts", &std::fs::read(WEIR.example("keyed_sum")).expect("keyed_sum"));
    let spec = json!({"artifact": artifact["id"], "parallelism": 1, "args": args});
    call(cluster, token, "POST", "/api/v1/jobs", spec.to_string().as_bytes())["metadata"]["id"].as_str().expect("id").to_string()
}

fn job(cluster: &TestCluster, id: &str) -> Value {
    call(cluster, &cluster.token, "GET", &format!("/api/v1/jobs/{id}"), b"")
}

fn fuel(cluster: &TestCluster, id: &str) -> u64 {
    call(cluster, &cluster.token, "GET", &format!("/api/v1/jobs/{id}/metrics"), b"")["fuel"].as_u64().expect("fuel")
}

/// One run of A's keyed-sum: (records/s from submission to end, its fuel).
fn run_a(cluster: &TestCluster, a: &str, n: u64) -> (f64, u64) {
    let id = submit(cluster, a, json!({"n": n.to_string(), "sink": "discard"}));
    cluster.wait_until("A's job to finish", || job(cluster, &id)["status"]["state"] == "FINISHED");
    let ms = job(cluster, &id)["status"]["durationMs"].as_u64().expect("durationMs");
    (n as f64 / (ms as f64 / 1000.0), fuel(cluster, &id))
}

/// B's (or C's) endless fuel-hungry job, running once it has burned some fuel.
fn start_hungry(cluster: &TestCluster, token: &str) -> String {
    let id = submit(cluster, token, json!({"n": "1000000000000", "work": "2000", "sink": "discard"}));
    cluster.wait_until("the hungry job to run", || fuel(cluster, &id) > 0);
    id
}

fn stop(cluster: &TestCluster, id: &str) {
    call(cluster, &cluster.token, "POST", &format!("/api/v1/jobs/{id}/cancel"), b"{}");
    cluster.wait_until("the hungry job to end", || job(cluster, id)["status"]["state"] == "TERMINATED");
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

pub fn bench() {
    let n: u64 = std::env::var("WEIR_BENCH_TENANTS_N").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let runs: usize = std::env::var("WEIR_BENCH_TENANTS_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    let rate: u64 = std::env::var("WEIR_BENCH_TENANTS_RATE").ok().and_then(|s| s.parse().ok()).unwrap_or(50_000_000);
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let listen = format!("127.0.0.1:{port}");
    let mut cluster = TestCluster::start_with(WEIR, &[], &[]);
    cluster.start_taskmanager_with("taskmanager-1", 2, &["--metrics-listen", &listen]);
    cluster.wait_until("the taskmanager to register", || cluster.status().contains("free slots: 2"));
    let a = tenant(&cluster, "a", json!({}));
    let b = tenant(&cluster, "b", json!({"fuelPerSecond": rate}));
    let c = tenant(&cluster, "c", json!({}));
    let _ = run_a(&cluster, &a, 10_000); // compiles and caches the component

    // Interleaved, so load from the machine's other users spreads over all three.
    let (mut alone, mut beside_b, mut beside_c, mut fuels) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut hungry_fuel = (0u64, 0u64);
    for _ in 0..runs {
        let (r, f) = run_a(&cluster, &a, n);
        alone.push(r);
        fuels.push(f);
        let hb = start_hungry(&cluster, &b);
        let (r, f) = run_a(&cluster, &a, n);
        beside_b.push(r);
        fuels.push(f);
        stop(&cluster, &hb);
        hungry_fuel.0 += fuel(&cluster, &hb);
        let hc = start_hungry(&cluster, &c);
        let (r, f) = run_a(&cluster, &a, n);
        beside_c.push(r);
        fuels.push(f);
        stop(&cluster, &hc);
        hungry_fuel.1 += fuel(&cluster, &hc);
    }
    let (_, body) = http::request("GET", &format!("http://{listen}/metrics"), &[], b"");
    let metrics = String::from_utf8_lossy(&body).into_owned();
    let throttled = metrics.lines().find_map(|l| l.strip_prefix("weir_tenant_throttled_seconds_total{tenant=\"b\"} ")).unwrap_or("-").to_string();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let (x, yb, yc) = (median(&alone), median(&beside_b), median(&beside_c));
    println!();
    println!("Noisy neighbour: tenant A's keyed-sum (n = {n}, p=1) on one TaskManager with 2 slots, median of {runs} interleaved runs");
    println!("{:<52} {:>12} {:>8}  runs", "A runs", "rec/s", "ratio");
    let each = |v: &[f64]| v.iter().map(|r| format!("{:.0}k", r / 1e3)).collect::<Vec<_>>().join(" ");
    println!("{:<52} {x:>12.0} {:>8.2}  {}", "alone", 1.0, each(&alone));
    println!("{:<52} {yb:>12.0} {:>8.2}  {}", format!("beside B (work=2000) at fuelPerSecond {rate}"), yb / x, each(&beside_b));
    println!("{:<52} {yc:>12.0} {:>8.2}  {}", "beside C (the same job, no fuel rate)", yc / x, each(&beside_c));
    let per_run = runs as f64;
    println!(
        "hungry fuel over its {runs} runs: B {:.3e} (throttled {throttled} subtask-seconds), C {:.3e}; per run of A: B {:.2e}, C {:.2e}",
        hungry_fuel.0 as f64,
        hungry_fuel.1 as f64,
        hungry_fuel.0 as f64 / per_run,
        hungry_fuel.1 as f64 / per_run
    );
    let verdict = if yb / x >= TARGET { "holds" } else { "does NOT hold" };
    println!("target (A keeps >= {:.0}% beside the throttled B): {verdict}", TARGET * 100.0);
    let (lo, hi) = (fuels.iter().min().copied().unwrap_or(0), fuels.iter().max().copied().unwrap_or(0));
    println!(
        "A's fuel over its {} identical runs: {lo} .. {hi}, spread {:.4}% (first two: {} and {})",
        fuels.len(),
        (hi - lo) as f64 / hi.max(1) as f64 * 100.0,
        fuels[0],
        fuels.get(1).copied().unwrap_or(0)
    );
    println!("load average at the end: {}", load.trim());
}
