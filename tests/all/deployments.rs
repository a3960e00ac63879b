//! Deployments (issue 17) on a real cluster, every transition through the REST API or
//! `weir deploy`: create, a STATEFUL rescale, suspend, resume, failed upgrades rolled
//! back (refused at submission, and failing after its Job started), a JobManager
//! killed mid-upgrade, cancel and delete. The keyed-sum output of
//! all of a Deployment's Jobs together is exactly once and its sums continue.

use std::ffi::OsStr;

use serde_json::{Value, json};
use weir_testkit::{TestCluster, stderr, wait_until};

use crate::WEIR;
use crate::recovery::assert_exactly_once;

/// Records of the keyed-sum jobs; with `WORK` rounds per record they run long enough
/// to be upgraded, suspended and resumed.
const N: u64 = 2_000_000;
const WORK: &str = "6000";

fn call(cluster: &TestCluster, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {}", cluster.token);
    let body = if body.is_null() { vec![] } else { body.to_string().into_bytes() };
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let (status, answer) = weir_testkit::http::request(method, &format!("{}/api/v1{path}", cluster.rest), &headers, &body);
    (status, serde_json::from_slice(&answer).unwrap_or(Value::Null))
}

fn get(cluster: &TestCluster, name: &str) -> Value {
    let (status, d) = call(cluster, "GET", &format!("/deployments/{name}"), &Value::Null);
    assert_eq!(status, 200, "{d}");
    d
}

fn upload(cluster: &TestCluster, example: &str) -> String {
    let auth = format!("Bearer {}", cluster.token);
    let wasm = std::fs::read(WEIR.example(example)).expect("example");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/wasm")];
    let (status, body) = weir_testkit::http::request("POST", &format!("{}/api/v1/artifacts", cluster.rest), &headers, &wasm);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<Value>(&body).expect("json")["id"].as_str().expect("id").to_string()
}

/// A keyed-sum Deployment spec at `parallelism`, checkpointed, STATEFUL.
fn spec(cluster: &TestCluster, artifact: &str, parallelism: u32) -> Value {
    let dir = cluster.dir.path();
    json!({
        "name": "sums",
        "savepointDir": dir.join("savepoints").display().to_string(),
        "template": {
            "artifact": artifact,
            "parallelism": parallelism,
            "args": {"n": N.to_string(), "work": WORK, "sink": "file"},
            "output": dir.join("out").display().to_string(),
            "checkpointIntervalMs": 300,
            "restartStrategy": "none",
        }
    })
}

/// Waits until the Deployment is in `state` at spec version `version`; FAILED or
/// FINISHED on the way fail the test.
fn wait_state(cluster: &TestCluster, name: &str, state: &str, version: u64) -> Value {
    let mut last = Value::Null;
    wait_until(&format!("deployment {name} {state} at version {version}"), || {
        last = get(cluster, name);
        let now = last["status"]["state"].as_str().unwrap_or_default().to_string();
        assert!(now == state || !["FAILED", "FINISHED"].contains(&now.as_str()), "{last:#}\n{}", cluster.log("jobmanager"));
        now == state && last["status"]["specVersion"] == version
    });
    last
}

fn job_ids(d: &Value) -> Vec<String> {
    d["status"]["jobs"].as_array().expect("jobs").iter().map(|j| j["jobId"].as_str().expect("id").to_string()).collect()
}

fn start() -> TestCluster {
    TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"])
}

/// Create (CLI), a STATEFUL rescale 2 -> 3 (REST), suspend, resume, the last Job's
/// end, then delete; the Jobs' committed output together is exactly once.
#[test]
fn a_deployment_is_created_rescaled_suspended_resumed_and_deleted_exactly_once() {
    let cluster = start();
    let dir = cluster.dir.path();
    let file = dir.join("sums.toml");
    let toml = format!(
        "name = \"sums\"\nsavepointDir = \"{sp}\"\n\n[template]\ncomponent = \"{wasm}\"\nparallelism = 2\ncheckpointIntervalMs = 300\nrestartStrategy = \"none\"\noutput = \"{out}\"\nargs = {{ n = \"{N}\", work = \"{WORK}\", sink = \"file\" }}\n",
        sp = dir.join("savepoints").display(),
        wasm = WEIR.example("keyed_sum").display(),
        out = dir.join("out").display(),
    );
    std::fs::write(&file, toml).expect("write the spec");
    let o = cluster.client(&[OsStr::new("deploy"), OsStr::new("apply"), OsStr::new("-f"), file.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d = wait_state(&cluster, "sums", "RUNNING", 1);
    assert_eq!(job_ids(&d).len(), 1);
    let artifact = d["spec"]["template"]["artifact"].as_str().expect("uploaded").to_string();

    // Rescale as an upgrade: a new spec version, stopped with a savepoint, resumed at 3.
    let (status, d) = call(&cluster, "POST", "/deployments", &spec(&cluster, &artifact, 3));
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["status"]["specVersion"], 2);
    let d = wait_state(&cluster, "sums", "RUNNING", 2);
    let jobs = job_ids(&d);
    assert_eq!(jobs.len(), 2, "{d:#}");
    let savepoint = d["status"]["latestSavepoint"].as_str().expect("a savepoint").to_string();
    assert_eq!(d["status"]["jobs"][0]["fromSavepoint"], savepoint.as_str());
    let (_, old) = call(&cluster, "GET", &format!("/jobs/{}", jobs[1]), &Value::Null);
    assert_eq!(old["status"]["state"], "TERMINATED", "the first job stopped: {old}");
    let (_, new) = call(&cluster, "GET", &format!("/jobs/{}", jobs[0]), &Value::Null);
    assert_eq!(new["spec"]["parallelism"], 3, "{new}");

    // Suspend and resume, through the CLI with --output json.
    let o = cluster.client(&[OsStr::new("deploy"), OsStr::new("suspend"), OsStr::new("sums")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d = wait_state(&cluster, "sums", "SUSPENDED", 2);
    let suspended_at = d["status"]["latestSavepoint"].as_str().expect("the suspend's savepoint").to_string();
    assert_ne!(suspended_at, savepoint);
    let o = cluster.client(&[OsStr::new("deploy"), OsStr::new("resume"), OsStr::new("sums"), OsStr::new("--output"), OsStr::new("json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let answer: Value = serde_json::from_slice(&o.stdout).expect("--output json");
    assert_eq!(answer["spec"]["state"], "RUNNING", "{answer}");
    let d = wait_state(&cluster, "sums", "RUNNING", 2);
    assert_eq!(d["status"]["jobs"][0]["fromSavepoint"], suspended_at.as_str(), "resumed from the suspend's savepoint");
    let (status, refused) = call(&cluster, "DELETE", "/deployments/sums", &Value::Null);
    assert_eq!(status, 409, "a deployment with a job is not deleted: {refused}");
    let mut finished = Value::Null;
    wait_until("the resumed deployment to finish its input", || {
        finished = get(&cluster, "sums");
        assert_ne!(finished["status"]["state"], "FAILED", "{finished:#}\n{}", cluster.log("jobmanager"));
        finished["status"]["state"] == "FINISHED"
    });
    assert_exactly_once(&dir.join("out"), N);
    let o = cluster.client(&[OsStr::new("deploy"), OsStr::new("delete"), OsStr::new("sums")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cluster.client(&[OsStr::new("deploy"), OsStr::new("list"), OsStr::new("--output"), OsStr::new("json")]);
    let list: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(list["deployments"], json!([]));
}

/// The other transitions through REST: an upgrade with strategy NONE only records
/// the spec (the Job runs on); STATELESS cancels the Job and starts the new spec
/// without state; desired state CANCELLED cancels it; RUNNING again starts a Job.
#[test]
fn none_and_stateless_upgrades_and_a_cancel_go_through_rest() {
    let cluster = start();
    let keyed_sum = upload(&cluster, "keyed_sum");
    let mut s = spec(&cluster, &keyed_sum, 2);
    s["template"]["args"]["n"] = json!("100000000");
    s["template"].as_object_mut().expect("template").remove("output");
    s["template"]["args"]["sink"] = json!("discard");
    let (status, d) = call(&cluster, "POST", "/deployments", &s);
    assert_eq!(status, 201, "{d}");
    let first = job_ids(&wait_state(&cluster, "sums", "RUNNING", 1));

    s["upgradeStrategy"] = json!("NONE");
    s["template"]["parallelism"] = json!(3);
    let (status, d) = call(&cluster, "POST", "/deployments", &s);
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["status"]["specVersion"], 2);
    let d = get(&cluster, "sums");
    assert_eq!(job_ids(&d), first, "NONE records the spec and leaves the Job alone: {d:#}");
    assert_eq!(d["status"]["running"]["specVersion"], 1);

    s["upgradeStrategy"] = json!("STATELESS");
    let (status, d) = call(&cluster, "POST", "/deployments", &s);
    assert_eq!(status, 200, "{d}");
    let d = wait_state(&cluster, "sums", "RUNNING", 3);
    let jobs = job_ids(&d);
    assert_eq!(jobs.len(), 2, "{d:#}");
    assert_eq!(d["status"]["jobs"][0]["fromSavepoint"], Value::Null, "STATELESS starts without state: {d:#}");
    assert!(d["status"]["latestSavepoint"].is_null(), "and takes no savepoint: {d:#}");
    let (_, old) = call(&cluster, "GET", &format!("/jobs/{}", jobs[1]), &Value::Null);
    assert_eq!(old["status"]["state"], "TERMINATED", "{old:#}");
    let (_, new) = call(&cluster, "GET", &format!("/jobs/{}", jobs[0]), &Value::Null);
    assert_eq!(new["spec"]["parallelism"], 3, "{new:#}");

    // A desired state is no new spec version.
    s["state"] = json!("CANCELLED");
    let (status, d) = call(&cluster, "POST", "/deployments", &s);
    assert_eq!(status, 200, "{d}");
    let d = wait_state(&cluster, "sums", "CANCELLED", 3);
    assert!(d["status"]["running"].is_null(), "{d:#}");
    let (_, cancelled) = call(&cluster, "GET", &format!("/jobs/{}", jobs[0]), &Value::Null);
    assert_eq!(cancelled["status"]["state"], "TERMINATED", "{cancelled:#}");

    s["state"] = json!("RUNNING");
    let (status, d) = call(&cluster, "POST", "/deployments", &s);
    assert_eq!(status, 200, "{d}");
    let d = wait_state(&cluster, "sums", "RUNNING", 3);
    assert_eq!(job_ids(&d).len(), 3, "{d:#}");
    let (status, d) = call(&cluster, "POST", "/deployments/sums/suspend", &Value::Null);
    assert_eq!(status, 202, "{d}");
    wait_state(&cluster, "sums", "SUSPENDED", 3);
}

/// What keyed_sum_v2 adds to each sum it emits (examples-wasm/keyed_sum_v2).
const V2_TAG: u64 = 1_000_000_000_000;

/// A STATEFUL upgrade to a new component (keyed_sum_v2, whose sums are tagged) and a
/// new parallelism at once: the first Job's committed sums are untagged, the second's
/// tagged, and with the tag taken off, both together are exactly once and each key's
/// sum continues where the first Job left it.
#[test]
fn a_stateful_upgrade_to_a_new_component_and_parallelism_continues_the_same_sums() {
    let cluster = start();
    let v1 = upload(&cluster, "keyed_sum");
    let v2 = upload(&cluster, "keyed_sum_v2");
    let (status, d) = call(&cluster, "POST", "/deployments", &spec(&cluster, &v1, 2));
    assert_eq!(status, 201, "{d}");
    wait_state(&cluster, "sums", "RUNNING", 1);
    let (status, d) = call(&cluster, "POST", "/deployments", &spec(&cluster, &v2, 3));
    assert_eq!(status, 200, "{d}");
    let d = wait_state(&cluster, "sums", "RUNNING", 2);
    let jobs = job_ids(&d);
    assert_eq!(jobs.len(), 2, "{d:#}");
    let (_, new) = call(&cluster, "GET", &format!("/jobs/{}", jobs[0]), &Value::Null);
    assert_eq!((new["spec"]["artifact"].as_str(), new["spec"]["parallelism"].as_u64()), (Some(v2.as_str()), Some(3)), "{new:#}");
    assert_eq!(new["spec"]["fromSavepoint"], d["status"]["latestSavepoint"]);
    wait_until("the deployment to finish", || {
        let d = get(&cluster, "sums");
        assert_ne!(d["status"]["state"], "FAILED", "{d:#}");
        d["status"]["state"] == "FINISHED"
    });
    let out = cluster.dir.path().join("out");
    let lines = crate::recovery::committed_lines(&out);
    let tagged = |l: &String| l.split_once('\t').and_then(|(_, v)| v.parse::<u64>().ok()).is_some_and(|v| v >= V2_TAG);
    let v2_lines = lines.iter().filter(|l| tagged(l)).count();
    assert!(v2_lines > 0 && v2_lines < lines.len(), "both versions committed output: {v2_lines} of {} tagged", lines.len());
    let untagged: Vec<String> = lines
        .iter()
        .map(|l| match l.split_once('\t') {
            Some((k, v)) => format!("{k}\t{}", v.parse::<u64>().map(|v| v % V2_TAG).unwrap_or(u64::MAX)),
            None => l.clone(),
        })
        .collect();
    let merged = cluster.dir.path().join("untagged");
    std::fs::create_dir_all(&merged).expect("dir");
    std::fs::write(merged.join("part-all"), untagged.join("\n") + "\n").expect("write");
    assert_exactly_once(&merged, N);
}

/// An upgrade to a component that fails at its start (its plan is refused) is rolled back to the last
/// good spec from the same savepoint: the Deployment says why, and the keyed sums go
/// on exactly once.
#[test]
fn an_upgrade_whose_component_fails_at_start_is_rolled_back_with_its_state_intact() {
    let cluster = start();
    let keyed_sum = upload(&cluster, "keyed_sum");
    let bad = upload(&cluster, "bad_connect");
    let (status, d) = call(&cluster, "POST", "/deployments", &spec(&cluster, &keyed_sum, 2));
    assert_eq!(status, 201, "{d}");
    wait_state(&cluster, "sums", "RUNNING", 1);
    let mut upgrade = spec(&cluster, &bad, 2);
    upgrade["template"]["restartStrategy"] = json!("fixed-delay:3:100");
    let (status, d) = call(&cluster, "POST", "/deployments", &upgrade);
    assert_eq!(status, 200, "{d}");
    let mut d = Value::Null;
    let mut polls = 0;
    wait_until("the failed upgrade to be rolled back", || {
        d = get(&cluster, "sums");
        polls += 1;
        assert!(polls < 2000, "not rolled back: {d:#}\n{}", cluster.log("jobmanager"));
        d["status"]["message"].as_str().is_some_and(|m| m.contains("rolled back to version 1"))
    });
    let message = d["status"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("spec version 2 failed"), "{message}");
    assert_eq!(d["spec"]["template"]["artifact"], keyed_sum.as_str(), "the spec is the last good one again");
    let d = wait_state(&cluster, "sums", "RUNNING", 1);
    let jobs = d["status"]["jobs"].as_array().expect("jobs").clone();
    // Version 2 never got a job (its plan was refused); version 1 runs again from the
    // savepoint the upgrade took.
    assert_eq!(jobs.len(), 2, "{d:#}");
    assert_eq!(jobs[0]["specVersion"], 1);
    assert_eq!(jobs[0]["fromSavepoint"], d["status"]["latestSavepoint"], "rolled back from the upgrade's savepoint");
    assert!(message.contains("refused"), "{message}");
    wait_until("the deployment to finish", || get(&cluster, "sums")["status"]["state"] == "FINISHED");
    assert_exactly_once(&cluster.dir.path().join("out"), N);
}

/// An upgrade whose Job starts and then fails (its PostgreSQL sink has no server to
/// reach) is rolled back once the Job restarts: the failed Job is cancelled and the
/// last good spec starts again from the savepoint the failed Job started from, so
/// nothing is lost or doubled. Every Job links back to the Deployment and the spec
/// version it ran.
#[test]
fn an_upgrade_that_fails_after_its_job_started_is_rolled_back_with_its_state_intact() {
    let cluster = start();
    let keyed_sum = upload(&cluster, "keyed_sum");
    let (status, d) = call(&cluster, "POST", "/deployments", &spec(&cluster, &keyed_sum, 2));
    assert_eq!(status, 201, "{d}");
    wait_state(&cluster, "sums", "RUNNING", 1);
    let password = cluster.dir.path().join("pg-password");
    std::fs::write(&password, "unused").expect("password file");
    // Nothing listens on this port: the sink fails where it opens, on the TaskManager.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
    let mut upgrade = spec(&cluster, &keyed_sum, 2);
    upgrade["template"]["args"] = json!({"n": N.to_string(), "work": WORK, "sink": "postgres", "pg-port": closed.to_string(), "pg-password-file": password.display().to_string()});
    upgrade["template"]["restartStrategy"] = json!("fixed-delay:100:200");
    let (status, d) = call(&cluster, "POST", "/deployments", &upgrade);
    assert_eq!(status, 200, "{d}");
    let mut d = Value::Null;
    wait_until("the failed upgrade to be rolled back", || {
        d = get(&cluster, "sums");
        d["status"]["message"].as_str().is_some_and(|m| m.contains("rolled back to version 1"))
    });
    let message = d["status"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("spec version 2 failed") && message.contains("PostgreSQL"), "{message}");
    assert_eq!(d["spec"]["template"]["args"]["sink"], "file", "the spec is the last good one again: {d:#}");
    let d = wait_state(&cluster, "sums", "RUNNING", 1);
    let jobs = d["status"]["jobs"].as_array().expect("jobs").clone();
    assert_eq!(jobs.iter().map(|j| j["specVersion"].as_u64().unwrap_or(0)).collect::<Vec<_>>(), [1, 2, 1], "{d:#}");
    let upgrade_savepoint = d["status"]["latestSavepoint"].clone();
    assert_eq!(jobs[1]["fromSavepoint"], upgrade_savepoint, "the failed job started from the upgrade's savepoint");
    assert_eq!(jobs[0]["fromSavepoint"], upgrade_savepoint, "rolled back from that same savepoint");
    // The failed Job started (it is no refused submission) and says why it failed.
    let failed = jobs[1]["jobId"].as_str().expect("id");
    let (_, doc) = call(&cluster, "GET", &format!("/jobs/{failed}"), &Value::Null);
    assert!(doc["status"]["started"].is_object(), "{doc:#}");
    let (_, events) = call(&cluster, "GET", &format!("/jobs/{failed}/logs"), &Value::Null);
    assert!(events.to_string().contains("cannot connect to PostgreSQL"), "{events:#}");
    for job in &jobs {
        let (_, doc) = call(&cluster, "GET", &format!("/jobs/{}", job["jobId"].as_str().expect("id")), &Value::Null);
        assert_eq!(doc["metadata"]["deployment"]["name"], "sums", "{doc:#}");
        assert_eq!(doc["metadata"]["deployment"]["id"], d["metadata"]["id"]);
        assert_eq!(doc["metadata"]["deployment"]["specVersion"], job["specVersion"]);
    }
    wait_until("the deployment to finish", || {
        let d = get(&cluster, "sums");
        assert_ne!(d["status"]["state"], "FAILED", "{d:#}");
        d["status"]["state"] == "FINISHED"
    });
    assert_exactly_once(&cluster.dir.path().join("out"), N);
}

/// A JobManager SIGKILLed right after a STATEFUL upgrade was asked for: the new one
/// reads the Deployment back and completes the upgrade (or the job failover resumes the
/// old job and the stop is asked again), exactly once.
#[test]
fn a_jobmanager_killed_during_a_stateful_upgrade_completes_it_exactly_once() {
    let mut cluster = start();
    let keyed_sum = upload(&cluster, "keyed_sum");
    let (status, d) = call(&cluster, "POST", "/deployments", &spec(&cluster, &keyed_sum, 2));
    assert_eq!(status, 201, "{d}");
    wait_state(&cluster, "sums", "RUNNING", 1);
    let (status, d) = call(&cluster, "POST", "/deployments", &spec(&cluster, &keyed_sum, 3));
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["status"]["state"], "TRANSITIONING");
    cluster.restart_jobmanager();
    let d = wait_state(&cluster, "sums", "RUNNING", 2);
    assert!(job_ids(&d).len() >= 2, "{d:#}");
    wait_until("the deployment to finish", || {
        let d = get(&cluster, "sums");
        assert_ne!(d["status"]["state"], "FAILED", "{d:#}");
        d["status"]["state"] == "FINISHED"
    });
    assert_exactly_once(&cluster.dir.path().join("out"), N);
}

/// Whether job `job` has a completed checkpoint in the cluster's storage.
fn has_checkpoint(cluster: &TestCluster, job: &str) -> bool {
    let dir = cluster.dir.path().join("checkpoints").join(job);
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| e.path().join("_metadata").exists())
}

/// LATEST_STATE after a Job failed for good (restart strategy `none`, its
/// TaskManagers SIGKILLed): the Deployment shows FAILED and names the Job; resumed,
/// the new Job starts from the failed Job's newest retained checkpoint (not from
/// nothing: the Deployment took no savepoint). The failed Job's checkpoints are then
/// deleted (as retention would) and the new Job fails for good too: the third Job
/// starts from the second's checkpoint, which needs none of the first's files. The
/// committed output of the three Jobs together is exactly once, the sums continued.
#[test]
fn a_failed_deployment_resumes_from_its_failed_jobs_retained_checkpoint_exactly_once() {
    let mut cluster = start();
    let keyed_sum = upload(&cluster, "keyed_sum");
    let out = cluster.dir.path().join("out");
    let (status, d) = call(&cluster, "POST", "/deployments", &spec(&cluster, &keyed_sum, 2));
    assert_eq!(status, 201, "{d}");
    let mut failed = job_ids(&wait_state(&cluster, "sums", "RUNNING", 1))[0].clone();
    for round in 1..=2 {
        // Some output committed, then every TaskManager dies: the Job fails for good.
        wait_until("committed output", || {
            std::fs::read_dir(&out).into_iter().flatten().flatten().any(|e| e.file_name().to_string_lossy().starts_with("part-"))
        });
        cluster.kill("taskmanager-1");
        cluster.kill("taskmanager-2");
        let mut d = Value::Null;
        wait_until("the deployment to fail", || {
            d = get(&cluster, "sums");
            assert_ne!(d["status"]["state"], "FINISHED", "the job must fail before its end: {d:#}");
            d["status"]["state"] == "FAILED"
        });
        assert_eq!(d["status"]["latestCheckpointOf"], failed.as_str(), "{d:#}");
        assert!(d["status"]["latestSavepoint"].is_null(), "no savepoint was taken: {d:#}");
        assert!(has_checkpoint(&cluster, &failed), "the failed job retained its checkpoints");
        cluster.start_taskmanager("taskmanager-1", 2);
        cluster.start_taskmanager("taskmanager-2", 2);
        let (status, d) = call(&cluster, "POST", "/deployments/sums/resume", &Value::Null);
        assert_eq!(status, 202, "{d}");
        let d = wait_state(&cluster, "sums", "RUNNING", 1);
        let jobs = job_ids(&d);
        assert_eq!(jobs.len(), round + 1, "{d:#}");
        assert_eq!(d["status"]["jobs"][0]["fromCheckpointOf"], failed.as_str(), "{d:#}");
        let (_, job) = call(&cluster, "GET", &format!("/jobs/{}", jobs[0]), &Value::Null);
        assert_eq!(job["spec"]["fromCheckpointOf"], failed.as_str(), "{job:#}");
        let (_, events) = call(&cluster, "GET", &format!("/jobs/{}/logs", jobs[0]), &Value::Null);
        assert!(events.to_string().contains(&format!("of job {failed}")), "restored from the failed job's checkpoint: {events:#}");
        // Running means the new Job completed a checkpoint of its own (a full one):
        // the failed Job's files may go, as retention deletes an expired job's.
        assert!(has_checkpoint(&cluster, &jobs[0]));
        std::fs::remove_dir_all(cluster.dir.path().join("checkpoints").join(&failed)).expect("delete the failed job's checkpoints");
        failed = jobs[0].clone();
    }
    wait_until("the deployment to finish", || {
        let d = get(&cluster, "sums");
        assert_ne!(d["status"]["state"], "FAILED", "{d:#}\n{}", cluster.log("jobmanager"));
        d["status"]["state"] == "FINISHED"
    });
    assert_exactly_once(&out, N);
}

fn cli(cluster: &TestCluster, args: &[&str]) -> std::process::Output {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    cluster.client(&args)
}

/// `weir submit --from-checkpoint JOB` and its refusals: a running job (409), another
/// tenant's job (404, as if unknown), a checkpoint id that is not retained; then a
/// cancelled job continued by a new one, whose source job's checkpoints retention then
/// deletes (`--retain-ended-jobs 1`, another job ending), and which fails over from
/// its own checkpoint: the two jobs' output together is exactly once.
#[test]
fn weir_submit_from_checkpoint_continues_a_cancelled_job_and_refuses_what_it_must() {
    let mut cluster = TestCluster::start_with(
        WEIR,
        &[("taskmanager-1", 2), ("taskmanager-2", 2)],
        &["--checkpoint-dir", "{dir}/checkpoints", "--retain-ended-jobs", "1"],
    );
    let dir = cluster.dir.path().to_path_buf();
    let out = dir.join("out");
    let wasm = WEIR.example("keyed_sum").display().to_string();
    let (n, work) = (format!("n={N}"), format!("work={WORK}"));
    let out_arg = out.display().to_string();
    let keyed_sum = |from: Option<&str>| -> Vec<String> {
        let mut a = vec!["submit", "-p", "2", "--arg", &n, "--arg", &work, "--arg", "sink=file", "--checkpoint-interval", "300", "--detach"];
        a.extend(["--restart", "fixed-delay:20:500", "--output-dir", &out_arg]);
        if let Some(from) = from {
            a.extend(["--from-checkpoint", from]);
        }
        a.push(&wasm);
        a.into_iter().map(String::from).collect()
    };
    let submit = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&cluster, &args)
    };
    let o = submit(&keyed_sum(None));
    assert!(o.status.success(), "{}", stderr(&o));
    let first = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    wait_until("a completed checkpoint", || has_checkpoint(&cluster, &first));

    let o = submit(&keyed_sum(Some(&first)));
    assert!(!o.status.success() && stderr(&o).contains("still running"), "{}", stderr(&o));

    // Tenant b does not see the admin's job.
    cli(&cluster, &["tenant", "create", "b"]);
    let o = cli(&cluster, &["tenant", "token", "create", "b", "--output", "json"]);
    let token = serde_json::from_slice::<Value>(&o.stdout).expect("json")["token"].as_str().expect("token").to_string();
    let o = WEIR
        .command()
        .args(["submit", "--checkpoint-interval", "300", "--detach", "--from-checkpoint", &first, &wasm, "--jobmanager", &cluster.rest])
        .env("WEIR_TOKEN", &token)
        .output()
        .expect("weir starts");
    assert!(!o.status.success() && stderr(&o).contains(&format!("no job \"{first}\"")), "{}", stderr(&o));
    assert!(stderr(&o).contains("404"), "{}", stderr(&o));

    let o = cli(&cluster, &["cancel", &first]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the first job to end", || {
        let (_, j) = call(&cluster, "GET", &format!("/jobs/{first}"), &Value::Null);
        j["status"]["state"] == "TERMINATED"
    });
    let o = submit(&keyed_sum(Some(&format!("{first}/999999"))));
    assert!(!o.status.success() && stderr(&o).contains("no intact completed checkpoint 999999"), "{}", stderr(&o));

    let o = submit(&keyed_sum(Some(&first)));
    assert!(o.status.success(), "{}", stderr(&o));
    let second = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    wait_until("the second job's own checkpoint", || has_checkpoint(&cluster, &second));

    // Another checkpointed job ends: the cancelled first job is past the newest one
    // kept and loses its checkpoints.
    let small = dir.join("small");
    let small_arg = small.display().to_string();
    let o = cli(&cluster, &["submit", "--arg", "n=1000", "--arg", "sink=file", "--checkpoint-interval", "300", "--output-dir", &small_arg, &wasm]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("retention to delete the first job's checkpoints", || !dir.join("checkpoints").join(&first).exists());

    // The second job fails over from its own checkpoints.
    cluster.kill("taskmanager-1");
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-1", 2);
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_until("the second job to finish", || {
        let (_, j) = call(&cluster, "GET", &format!("/jobs/{second}"), &Value::Null);
        assert_ne!(j["status"]["state"], "FAILED", "{j:#}\n{}", cluster.log("jobmanager"));
        j["status"]["state"] == "FINISHED"
    });
    let (_, events) = call(&cluster, "GET", &format!("/jobs/{second}/logs"), &Value::Null);
    let events = events.to_string();
    assert!(events.contains(&format!("of job {first}")), "{events}");
    assert!(events.contains(&format!("restoring checkpoint {second}/chk-")), "failed over from its own checkpoint: {events}");
    assert_exactly_once(&out, N);
}
