//! Live code swap (issue 17) on a real cluster of two TaskManagers: keyed_sum at
//! parallelism 4 swapped to keyed_sum_v2 (the same graph, sums tagged with 10^12)
//! while it runs. The committed output is v1 up to the switch point's checkpoint and v2
//! after it, every key's sums continue, exactly once, in the one attempt the job ever
//! had. An incompatible component is refused and the job runs on untouched.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;

use serde_json::Value;
use weir_testkit::{TestCluster, stderr, wait_until};

use crate::WEIR;
use crate::recovery::assert_exactly_once;

/// keyed_sum_v2 adds this to every sum it emits.
const TAG: u64 = 1_000_000_000_000;
/// Records; with `WORK` rounds per record the job runs long enough to be swapped.
const N: u64 = 2_000_000;
const WORK: &str = "6000";

pub(crate) fn start() -> TestCluster {
    TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"])
}

pub(crate) fn get(cluster: &TestCluster, path: &str) -> Value {
    let auth = format!("Bearer {}", cluster.token);
    let (status, body) = weir_testkit::http::request("GET", &format!("{}/api/v1{path}", cluster.rest), &[("Authorization", auth.as_str())], &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

/// Committed epoch files of a file sink: (subtask, checkpoint, attempt) -> lines.
fn epochs(dir: &Path) -> HashMap<(u32, u64, u32), Vec<(u64, u64)>> {
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(dir).expect("output dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("part-") else { continue };
        let parts: Vec<&str> = rest.split('-').collect();
        let [subtask, checkpoint, attempt] = parts[..] else { panic!("unexpected part file {name}") };
        let key =
            (subtask.parse().expect("subtask"), checkpoint.parse().expect("checkpoint"), attempt.trim_start_matches('a').parse().expect("attempt"));
        let lines = std::fs::read_to_string(entry.path()).expect("read part");
        let lines = lines
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('\t').expect("key<TAB>value");
                (k.parse().expect("key"), v.parse().expect("sum"))
            })
            .collect();
        files.insert(key, lines);
    }
    files
}

/// Every epoch up to `at` holds only v1 sums, every later one only v2 sums; there
/// are v2 sums at all; with the tag taken off, the output is exactly once with exact
/// final sums; no attempt but the first wrote anything.
pub(crate) fn assert_swapped_at(output: &Path, at: u64) {
    assert!(epochs(output).keys().all(|(_, _, attempt)| *attempt == 0), "the job never restarted");
    assert_swapped_at_any_attempt(output, at);
}

/// [`assert_swapped_at`] for a job that may have restarted (its attempts resumed
/// from checkpoints at or past the switch point).
fn assert_swapped_at_any_attempt(output: &Path, at: u64) {
    let files = epochs(output);
    let mut v2 = 0;
    for ((subtask, checkpoint, attempt), lines) in &files {
        for (k, v) in lines {
            let tagged = *v >= TAG;
            assert_eq!(tagged, *checkpoint > at, "part-{subtask}-{checkpoint}-a{attempt}: key {k} sum {v}, the switch point is checkpoint {at}");
            v2 += usize::from(tagged);
        }
    }
    assert!(v2 > 0, "no v2 output at all");
    // The sums with the tag taken off, as v1 would have written them.
    let untagged = output.with_extension("untagged");
    std::fs::create_dir_all(&untagged).expect("mkdir");
    for ((subtask, checkpoint, attempt), lines) in &files {
        let text: String = lines.iter().map(|(k, v)| format!("{k}\t{}\n", v % TAG)).collect();
        std::fs::write(untagged.join(format!("part-{subtask}-{checkpoint}-a{attempt}")), text).expect("write");
    }
    assert_exactly_once(&untagged, N);
    std::fs::remove_dir_all(&untagged).expect("remove the copy");
}

/// Each key's sums, in epoch order, never go down: state continued across the swap.
fn assert_sums_continue(output: &Path) {
    let mut files: Vec<_> = epochs(output).into_iter().collect();
    files.sort_by_key(|((s, c, _), _)| (*s, *c));
    let mut last: HashMap<u64, u64> = HashMap::new();
    for (_, lines) in files {
        for (k, v) in lines {
            let v = v % TAG;
            let prev = last.insert(k, v).unwrap_or(0);
            assert!(v >= prev, "key {k}: sum {v} after {prev}: state did not continue");
        }
    }
}

fn swap(cluster: &TestCluster, job: &str, example: &str) -> std::process::Output {
    let wasm = WEIR.example(example);
    cluster.client(&[OsStr::new("swap"), OsStr::new(job), wasm.as_os_str()])
}

#[test]
fn a_running_keyed_job_is_swapped_live_to_v2_exactly_once_and_an_incompatible_swap_is_refused() {
    let cluster = start();
    let dir = cluster.dir.path();
    let output = dir.join("out");
    let wasm = WEIR.example("keyed_sum");
    let (n, work) = (format!("n={N}"), format!("work={WORK}"));
    let args = ["submit", "-p", "4", "--arg", &n, "--arg", &work, "--arg", "sink=file", "--checkpoint-interval", "300", "--detach"];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.extend([wasm.as_os_str(), OsStr::new("--output-dir"), output.as_os_str()]);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    let job = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    wait_until("a checkpoint of the running job", || get(&cluster, &format!("/jobs/{job}"))["status"]["lastCheckpoint"].is_u64());

    // Another graph: refused before anything starts, the job runs on v1.
    let refused = swap(&cluster, &job, "wordcount");
    assert!(!refused.status.success(), "a swap to wordcount must be refused");
    assert!(stderr(&refused).contains("incompatible"), "{}", stderr(&refused));
    let before = get(&cluster, &format!("/jobs/{job}"));
    assert_eq!(before["status"]["state"], "STARTED", "{before:#}");
    assert_eq!(before["spec"]["artifact"].as_str().map(str::len), Some(64), "{before:#}");

    let o = swap(&cluster, &job, "keyed_sum_v2");
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.log("jobmanager"));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let at = switch_point(&o);

    let last = finished_without_restart(&cluster, &job);
    assert_ne!(last["spec"]["artifact"], before["spec"]["artifact"], "{last:#}");
    assert!(last["spec"]["artifact"].as_str().is_some_and(|a| out.contains(a)), "the job's spec names v2: {last:#}\n{out}");
    assert_swapped_at(&output, at);
    assert_sums_continue(&output);
    // v2 opened after the switch, on the state v1 wrote: it was handed v1's version.
    let handed = crate::state_version::v2_restored(&cluster, &["taskmanager-1", "taskmanager-2"]);
    assert!(handed.keys().eq(["Some(1)"]), "v2 instances were handed {handed:?}");
}

fn call(cluster: &TestCluster, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {}", cluster.token);
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let (status, answer) = weir_testkit::http::request(method, &format!("{}/api/v1{path}", cluster.rest), &headers, body.to_string().as_bytes());
    (status, serde_json::from_slice(&answer).unwrap_or(Value::Null))
}

/// A Deployment with upgradeStrategy LIVE (created with `weir deploy apply`): a new
/// component applied is swapped into the running Job, which stays the only one, and
/// the output is v1 up to one checkpoint and v2 after it, exactly once.
#[test]
fn a_live_deployment_takes_a_new_component_as_a_live_swap() {
    let cluster = start();
    let dir = cluster.dir.path();
    let output = dir.join("out");
    let file = dir.join("sums.toml");
    let toml = |wasm: &str| {
        format!(
            "name = \"sums\"\nupgradeStrategy = \"LIVE\"\nsavepointDir = \"{sp}\"\n\n[template]\ncomponent = \"{wasm}\"\nparallelism = 4\ncheckpointIntervalMs = 300\nrestartStrategy = \"none\"\noutput = \"{out}\"\nargs = {{ n = \"{N}\", work = \"{WORK}\", sink = \"file\" }}\n",
            sp = dir.join("savepoints").display(),
            out = output.display(),
        )
    };
    let apply = |wasm: &Path| {
        std::fs::write(&file, toml(&wasm.display().to_string())).expect("write the spec");
        let o = cluster.client(&[OsStr::new("deploy"), OsStr::new("apply"), OsStr::new("-f"), file.as_os_str()]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let state = |want: &str, version: u64| {
        let mut last = Value::Null;
        wait_until(&format!("deployment {want} at version {version}"), || {
            let (_, d) = call(&cluster, "GET", "/deployments/sums", &Value::Null);
            last = d;
            let now = last["status"]["state"].as_str().unwrap_or_default().to_string();
            assert!(now == want || !["FAILED", "FINISHED"].contains(&now.as_str()) || want == "FINISHED", "{last:#}\n{}", cluster.log("jobmanager"));
            now == want && last["status"]["specVersion"] == version
        });
        last
    };
    apply(&WEIR.example("keyed_sum"));
    let d = state("RUNNING", 1);
    let job = d["status"]["jobs"][0]["jobId"].as_str().expect("job").to_string();
    apply(&WEIR.example("keyed_sum_v2"));
    let d = state("RUNNING", 2);
    assert_eq!(d["status"]["jobs"].as_array().map(Vec::len), Some(1), "the same job, swapped: {d:#}");
    assert_eq!(d["status"]["jobs"][0]["jobId"], job.as_str());
    assert_eq!(d["status"]["jobs"][0]["specVersion"], 2);
    assert!(d["status"]["latestSavepoint"].is_null(), "no savepoint: {d:#}");
    state("FINISHED", 2);
    let j = get(&cluster, &format!("/jobs/{job}"));
    assert_eq!(j["status"]["started"]["observedJobRestarts"], 0, "{j:#}");
    // The switch point: the newest epoch holding a v1 sum; every later one is v2.
    let at = epochs(&output).iter().filter(|(_, lines)| lines.iter().any(|(_, v)| *v < TAG)).map(|((_, c, _), _)| *c).max().expect("v1 output");
    assert_swapped_at(&output, at);
    assert_sums_continue(&output);
}

/// A polyglot manifest job whose keyed sum is keyed_sum's Rust operators (by-key,
/// sum, format: operators 1, 2 and 3 of keyed_sum.wasm) followed by the C `tag`
/// operator (value = "v:" + value; C rather than Python, whose 18 MB the JobManager
/// would compile cold for minutes), on two TaskManagers with the exactly-once file
/// sink. Starts it; the cluster, the job's id and the manifest's directory (with
/// keyed_sum_v2, tag-rust and slow_map beside it).
fn start_manifest_job() -> (TestCluster, String) {
    let cluster = start_warm();
    let dir = cluster.dir.path();
    let m = dir.join("sums.toml");
    std::fs::write(&m, manifest()).expect("write the manifest");
    let work = format!("work={WORK}");
    // keyed_sum's `plan` (run in every instance) reads `work` and `sink` from the job's args.
    let args = ["submit", "-p", "4", "--arg", &work, "--arg", "sink=file", "--checkpoint-interval", "300", "--detach"];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let output = dir.join("out");
    argv.extend([m.as_os_str(), OsStr::new("--output-dir"), output.as_os_str()]);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.log("jobmanager"));
    let job = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    wait_until("a checkpoint of the running job", || get(&cluster, &format!("/jobs/{job}"))["status"]["lastCheckpoint"].is_u64());
    (cluster, job)
}

/// Two TaskManagers sharing the warm compiled-component cache, checkpoints, and the
/// components of [`manifest`] (and the swaps' ones) in the cluster's directory.
fn start_warm() -> TestCluster {
    let cluster = TestCluster::start_warm(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    for (name, from) in [
        ("keyed_sum.wasm", WEIR.example("keyed_sum")),
        ("keyed_sum_v2.wasm", WEIR.example("keyed_sum_v2")),
        ("slow_map.wasm", WEIR.example("slow_map")),
        ("tag-c.wasm", WEIR.polyglot().join("tag-c.wasm")),
        ("tag-rust.wasm", WEIR.polyglot().join("tag-rust.wasm")),
    ] {
        std::fs::copy(&from, cluster.dir.path().join(name)).expect("copy a component");
    }
    cluster
}

/// The polyglot manifest of these tests: `N` numbers through keyed_sum.wasm's
/// operators and tag-c.wasm into the file sink.
fn manifest() -> String {
    let ops = [("by-key", 1, ""), ("sum", 2, "keyed = true\npartitioning = \"key-by\"\n"), ("format", 3, "")];
    let mut manifest = format!("name = \"poly-sums\"\n\n[[node]]\nuid = \"numbers\"\nsource = \"generator\"\nstart = 0\ncount = {N}\n");
    for (uid, op, extra) in ops {
        manifest.push_str(&format!("\n[[node]]\nuid = \"{uid}\"\ncomponent = \"keyed_sum.wasm\"\noperator = {op}\n{extra}"));
    }
    manifest.push_str("\n[[node]]\nuid = \"tag\"\ncomponent = \"tag-c.wasm\"\n\n[[node]]\nuid = \"out\"\nsink = \"file\"\n");
    manifest
}

/// `weir swap JOB --operator A=FILE ...` with files of the cluster's directory.
fn swap_operators(cluster: &TestCluster, job: &str, operators: &[(&str, &str)]) -> std::process::Output {
    let dir = cluster.dir.path();
    let mut argv = vec![OsStr::new("swap").to_os_string(), OsStr::new(job).to_os_string()];
    for (name, file) in operators {
        argv.push("--operator".into());
        argv.push(format!("{name}={}", dir.join(file).display()).into());
    }
    let argv: Vec<&OsStr> = argv.iter().map(|a| a.as_os_str()).collect();
    cluster.client(&argv)
}

/// The switch point `weir swap` printed.
/// The job's document once it finished, having never failed nor restarted.
fn finished_without_restart(cluster: &TestCluster, job: &str) -> Value {
    let mut last = Value::Null;
    wait_until("the swapped job to finish", || {
        last = get(cluster, &format!("/jobs/{job}"));
        assert_ne!(last["status"]["state"], "FAILED", "{last:#}\n{}", cluster.log("jobmanager"));
        last["status"]["state"] == "FINISHED"
    });
    assert_eq!(last["status"]["started"]["observedJobRestarts"], 0, "no restart: {last:#}");
    last
}

fn switch_point(o: &std::process::Output) -> u64 {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    out.split_whitespace().last().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("a switch point in {out:?}"))
}

/// A copy of the sink's committed files with the C operator's "v:" taken off every
/// value (each must have it: the C operator ran on every record).
fn untag_c(output: &Path) -> std::path::PathBuf {
    let copy = output.with_extension("c");
    std::fs::create_dir_all(&copy).expect("mkdir");
    for entry in std::fs::read_dir(output).expect("output dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("part-") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("read part");
        let lines: String = text
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('\t').expect("key<TAB>value");
                let v = v.strip_prefix("v:").unwrap_or_else(|| panic!("{name}: {l:?} did not pass the C operator"));
                format!("{k}\t{v}\n")
            })
            .collect();
        std::fs::write(copy.join(&name), lines).expect("write");
    }
    copy
}

/// Issue 17, manifests: one component of a running polyglot job (keyed_sum's Rust
/// operators) is swapped live to keyed_sum_v2 while the C one stays; a component
/// of another world, one lacking the operators the job runs from it, and a swap of
/// one operator of a shared component are refused before anything starts. The
/// committed output is v1 up to the switch point and v2 after it, exactly once, with
/// no restart.
#[test]
fn a_manifest_jobs_rust_component_is_swapped_live_while_its_c_one_stays_and_unfit_components_are_refused() {
    let (cluster, job) = start_manifest_job();
    let output = cluster.dir.path().join("out");
    let before = get(&cluster, &format!("/jobs/{job}"));
    let refused = |operators: &[(&str, &str)], wanted: &str| {
        let o = swap_operators(&cluster, &job, operators);
        assert!(!o.status.success(), "{operators:?} must be refused");
        assert!(stderr(&o).contains(wanted), "{operators:?}: {}", stderr(&o));
        let now = get(&cluster, &format!("/jobs/{job}"));
        assert_eq!(now["status"]["state"], "STARTED", "{now:#}");
        assert_eq!(now["spec"], before["spec"], "the job runs on untouched");
    };
    // An operator component (no plan) for a job component's operators: another world.
    refused(&[("keyed_sum.wasm", "tag-rust.wasm")], "implements world operator-component, the running one job-component");
    // The same world, but without operators 2 and 3.
    refused(&[("keyed_sum.wasm", "slow_map.wasm")], "cannot run operator \"sum\"");
    // by-key and format run from keyed_sum.wasm too.
    refused(&[("sum", "keyed_sum_v2.wasm")], "also runs operator(s) by-key, format");

    let o = swap_operators(&cluster, &job, &[("by-key", "keyed_sum_v2.wasm"), ("sum", "keyed_sum_v2.wasm"), ("format", "keyed_sum_v2.wasm")]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.log("jobmanager"));
    let at = switch_point(&o);
    let last = finished_without_restart(&cluster, &job);
    let (old, new) = (&before["spec"]["components"], &last["spec"]["components"]);
    assert_ne!(new["keyed_sum.wasm"], old["keyed_sum.wasm"], "the spec names v2: {last:#}");
    assert!(new["keyed_sum.wasm"].as_str().is_some_and(|a| String::from_utf8_lossy(&o.stdout).contains(a)), "{last:#}");
    assert_eq!(new["tag-c.wasm"], old["tag-c.wasm"], "the C component stays: {last:#}");
    let untagged = untag_c(&output);
    assert_swapped_at(&untagged, at);
    assert_sums_continue(&untagged);
}

/// Issue 17: a JobManager SIGKILLed right after a manifest job's live swap resumes
/// the job on the new code (its record and components, stored by hash), and the
/// committed output is still v1 up to the switch point, v2 after it, exactly once.
#[test]
fn a_jobmanager_killed_right_after_a_manifest_swap_resumes_the_job_on_the_new_code() {
    let (mut cluster, job) = start_manifest_job();
    let output = cluster.dir.path().join("out");
    let o = swap_operators(&cluster, &job, &[("keyed_sum.wasm", "keyed_sum_v2.wasm")]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.log("jobmanager"));
    let at = switch_point(&o);
    cluster.restart_jobmanager();
    let mut last = Value::Null;
    wait_until("the resumed job to finish", || {
        last = get(&cluster, &format!("/jobs/{job}"));
        assert_ne!(last["status"]["state"], "FAILED", "{last:#}\n{}", cluster.log("jobmanager"));
        last["status"]["state"] == "FINISHED"
    });
    assert!(cluster.log("jobmanager").contains("resuming a job of the previous jobmanager"), "{}", cluster.log("jobmanager"));
    let untagged = untag_c(&output);
    assert!(epochs(&untagged).keys().any(|(_, _, attempt)| *attempt > 0), "the resumed attempt committed output");
    assert_swapped_at_any_attempt(&untagged, at);
}

/// Issue 17: a LIVE Deployment of the manifest job (through REST: its template's
/// manifest and uploaded components) takes a change of one component as a live swap
/// into its running Job: one Job, no savepoint, no restart, v1 up to one checkpoint
/// and v2 after it, exactly once.
#[test]
fn a_live_manifest_deployment_takes_a_new_component_as_a_live_swap() {
    let cluster = start_warm();
    let dir = cluster.dir.path();
    let output = dir.join("out");
    let upload = |file: &str| {
        let auth = format!("Bearer {}", cluster.token);
        let wasm = std::fs::read(dir.join(file)).expect("component");
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/wasm")];
        let (status, body) = weir_testkit::http::request("POST", &format!("{}/api/v1/artifacts", cluster.rest), &headers, &wasm);
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<Value>(&body).expect("json")["id"].as_str().expect("id").to_string()
    };
    let (v1, v2, tag) = (upload("keyed_sum.wasm"), upload("keyed_sum_v2.wasm"), upload("tag-c.wasm"));
    let spec = |sums: &str| {
        serde_json::json!({
            "name": "poly",
            "upgradeStrategy": "LIVE",
            "savepointDir": dir.join("savepoints").display().to_string(),
            "template": {
                "manifest": manifest(),
                "components": {"keyed_sum.wasm": sums, "tag-c.wasm": tag},
                "parallelism": 4,
                "args": {"work": WORK, "sink": "file"},
                "output": output.display().to_string(),
                "checkpointIntervalMs": 300,
                "restartStrategy": "none",
            }
        })
    };
    let state = |want: &str, version: u64| {
        let mut last = Value::Null;
        wait_until(&format!("deployment {want} at version {version}"), || {
            let (_, d) = call(&cluster, "GET", "/deployments/poly", &Value::Null);
            last = d;
            let now = last["status"]["state"].as_str().unwrap_or_default().to_string();
            assert!(now == want || !["FAILED", "FINISHED"].contains(&now.as_str()), "{last:#}\n{}", cluster.log("jobmanager"));
            now == want && last["status"]["specVersion"] == version
        });
        last
    };
    let (status, d) = call(&cluster, "POST", "/deployments", &spec(&v1));
    assert_eq!(status, 201, "{d:#}");
    let d = state("RUNNING", 1);
    let job = d["status"]["jobs"][0]["jobId"].as_str().expect("job").to_string();
    let (status, d) = call(&cluster, "POST", "/deployments", &spec(&v2));
    assert_eq!(status, 200, "{d:#}");
    let d = state("RUNNING", 2);
    assert_eq!(d["status"]["jobs"].as_array().map(Vec::len), Some(1), "the same job, swapped: {d:#}");
    assert_eq!(d["status"]["jobs"][0]["jobId"], job.as_str());
    assert!(d["status"]["latestSavepoint"].is_null(), "no savepoint: {d:#}");
    state("FINISHED", 2);
    let j = get(&cluster, &format!("/jobs/{job}"));
    assert_eq!(j["status"]["started"]["observedJobRestarts"], 0, "{j:#}");
    assert_eq!(j["spec"]["components"]["keyed_sum.wasm"], v2.as_str(), "{j:#}");
    let untagged = untag_c(&output);
    let at = epochs(&untagged).iter().filter(|(_, lines)| lines.iter().any(|(_, v)| *v < TAG)).map(|((_, c, _), _)| *c).max().expect("v1 output");
    assert_swapped_at(&untagged, at);
    assert_sums_continue(&untagged);
}
