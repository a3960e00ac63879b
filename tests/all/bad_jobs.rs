//! Bad jobs fail with one clear line naming the cause; the host survives them and
//! other jobs keep running.

use std::path::Path;

use weir_jobmanager::{ClusterConfig, EmbeddedCluster, JobSource, JobSpec};
use weir_testkit::{splitmix64, stderr};
use weir_wasm::Limits;

use crate::WEIR;

/// Runs `weir run JOB extra..` expecting failure, and returns the single error line.
fn run_failing(job: &Path, extra: &[&str]) -> String {
    let mut args: Vec<std::ffi::OsString> = vec!["run".into(), job.into(), "--quiet".into()];
    args.extend(extra.iter().map(Into::into));
    let o = WEIR.run(&args);
    let err = stderr(&o);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    assert_eq!(o.status.code(), Some(1), "a clean exit with an error, not a crash: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line of error: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

fn assert_mentions(line: &str, parts: &[&str]) {
    for p in parts {
        assert!(line.contains(p), "error line {line:?} does not mention {p:?}");
    }
}

#[test]
fn a_file_that_is_not_wasm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("job.wasm");
    std::fs::write(&f, "#!/bin/sh\necho definitely not wasm\n").expect("write");
    assert_mentions(&run_failing(&f, &[]), &["not a WebAssembly file"]);
}

#[test]
fn a_core_module_instead_of_a_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("core.wasm");
    let wat = std::fs::read_to_string(weir_testkit::root().join("examples-wasm/bad_core_module/module.wat")).expect("wat");
    std::fs::write(&f, wat::parse_str(&wat).expect("valid wat")).expect("write");
    assert_mentions(&run_failing(&f, &[]), &["core WebAssembly module, not a component"]);
}

#[test]
fn a_component_of_another_wit_version() {
    assert_mentions(&run_failing(&WEIR.example("wrong_world"), &[]), &["does not implement weir:dataflow/job-component@0.2.0", "@0.1.0"]);
}

#[test]
fn an_operator_that_loops_forever_runs_out_of_fuel() {
    let line = run_failing(&WEIR.example("bad_loop"), &["--fuel", "50000000"]);
    assert_mentions(&line, &["\"spin\"", "fuel exhausted"]);
}

/// Fuel is effectively unlimited here, so only the wall-clock guard can stop it.
#[test]
fn an_operator_that_loops_forever_hits_the_call_timeout() {
    let line = run_failing(&WEIR.example("bad_loop"), &["--fuel", "18000000000000000000", "--call-timeout-ms", "300"]);
    assert_mentions(&line, &["\"spin\"", "ran longer than 300 ms in one call"]);
}

/// The loop spends its time calling a host import: the host call is not interrupted,
/// but the guest traps at the next epoch check once back in Wasm.
#[test]
fn an_operator_spinning_on_host_calls_hits_the_call_timeout() {
    let line = run_failing(&WEIR.example("bad_loop"), &["--arg", "host-calls=1", "--fuel", "18000000000000000000", "--call-timeout-ms", "300"]);
    assert_mentions(&line, &["\"spin\"", "ran longer than 300 ms in one call"]);
}

#[test]
fn an_operator_that_allocates_without_bound_hits_the_memory_limit() {
    let line = run_failing(&WEIR.example("bad_memory"), &["--memory-limit-mib", "32"]);
    assert_mentions(&line, &["\"hog\"", "memory limit hit", "limit is 32 MiB"]);
}

#[test]
fn an_operator_that_panics_reports_the_panic_message() {
    let line = run_failing(&WEIR.example("bad_panic"), &[]);
    assert_mentions(&line, &["\"explode\"", "panicked", "poisoned record 3"]);
}

#[test]
fn an_operator_with_malformed_output_is_caught() {
    let line = run_failing(&WEIR.example("bad_output"), &[]);
    assert_mentions(&line, &["\"garble\"", "malformed output batch"]);
}

#[test]
fn a_component_over_the_size_limit_is_refused_before_compiling() {
    let job = WEIR.example("wordcount");
    let size = std::fs::metadata(&job).expect("built").len();
    let line = run_failing(&job, &["--max-component-size", "1000"]);
    assert_mentions(&line, &[&format!("component is {size} bytes, over the limit of 1000 bytes"), "refused before compiling"]);
}

/// One embedded cluster runs a good job while bad ones fail beside it: the host
/// process survives every failure and the good job's result stays exact.
#[test]
fn other_jobs_keep_running_while_bad_jobs_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = EmbeddedCluster::new(ClusterConfig {
        slots: 8,
        limits: Limits { fuel_per_call: 50_000_000, max_memory_bytes: 32 << 20, ..Limits::default() },
        cache_dir: None,
        state_dir: dir.path().join("state"),
        cache_bytes: 1 << 20,
    })
    .expect("cluster starts");
    let read = |name: &str| std::fs::read(WEIR.example(name)).expect("example built");
    let n: u64 = 300_000;
    let output = dir.path().join("sums.tsv");
    let good = cluster
        .submit(JobSpec {
            source: JobSource::Component(std::sync::Arc::new(read("keyed_sum"))),
            parallelism: 2,
            args: vec![("n".into(), n.to_string()), ("sink".into(), "file".into())],
            output: Some(output.clone()),
            ..JobSpec::default()
        })
        .expect("good job accepted");
    let mut bad = Vec::new();
    for name in ["bad_loop", "bad_memory", "bad_panic", "bad_output"] {
        let h = cluster
            .submit(JobSpec { source: JobSource::Component(std::sync::Arc::new(read(name))), parallelism: 1, ..JobSpec::default() })
            .expect("bad job accepted");
        bad.push((name, h));
    }
    for (name, h) in bad {
        let err = h.wait().expect_err(name).to_string();
        assert!(!err.contains('\n'), "{name}: one line: {err}");
    }
    let report = good.wait().expect("the good job finishes");
    assert_eq!(report.vertices[0].records_in, n);

    let mut expected = std::collections::HashMap::<u64, u64>::new();
    for i in 0..n {
        *expected.entry(splitmix64(i) % 100_000).or_default() += i;
    }
    let mut got = std::collections::HashMap::<u64, u64>::new();
    let text = std::fs::read_to_string(&output).expect("output");
    for line in text.lines() {
        let (k, v) = line.split_once('\t').expect("key<TAB>value");
        got.insert(k.parse().expect("key"), v.parse().expect("sum"));
    }
    assert_eq!(text.lines().count() as u64, n);
    assert_eq!(got, expected);
}

#[test]
fn a_connect_of_streams_keyed_differently_or_not_keyed_is_refused_at_submission() {
    let job = WEIR.example("bad_connect");
    let line = run_failing(&job, &["--arg", "case=key-types"]);
    assert_mentions(&line, &["\"meet\"", "keyed by different types", "\"by-number\" by u64", "\"word\" by alloc::string::String"]);
    let line = run_failing(&job, &["--arg", "case=unkeyed"]);
    assert_mentions(&line, &["\"meet\"", "a connect must only have key-by inputs", "its input from \"word\" is not keyed"]);
}

/// On a cluster the wall-clock guard is the TaskManager's (`--call-timeout-ms`): the
/// trapped subtask fails, the restart strategy restarts the job once, then it fails
/// with the cause.
#[test]
fn a_call_past_the_taskmanagers_deadline_fails_the_subtask_and_the_restart_strategy_decides() {
    let mut cluster = weir_testkit::TestCluster::start(WEIR, &[]);
    cluster.start_taskmanager_with("taskmanager-1", 2, &["--call-timeout-ms", "300", "--fuel", "18000000000000000000"]);
    cluster.wait_until("the taskmanager to register", || cluster.status().contains("free slots: 2"));
    let wasm = WEIR.example("bad_loop");
    let argv: Vec<&std::ffi::OsStr> =
        ["submit", "--restart", "fixed-delay:1:100", "--detach"].iter().map(std::ffi::OsStr::new).chain([wasm.as_os_str()]).collect();
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    let job = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    let auth = format!("Bearer {}", cluster.token);
    let mut last = serde_json::Value::Null;
    cluster.wait_until("the job to fail after one restart", || {
        let (status, body) = weir_testkit::http::request("GET", &format!("{}/api/v1/jobs/{job}", cluster.rest), &[("Authorization", &auth)], &[]);
        assert_eq!(status, 200);
        last = serde_json::from_slice(&body).expect("json");
        last["status"]["state"] == "FAILED"
    });
    let message = last["status"]["failure"]["message"].as_str().unwrap_or_default();
    assert_mentions(message, &["\"spin\"", "ran longer than 300 ms in one call"]);
    assert_eq!(last["status"]["started"]["observedJobRestarts"], 1, "{last}");
}
