//! The JobManager's REST API against a real cluster: every endpoint, every error path
//! (each answered with the JSON error document), the Job resource's transitions
//! reached by real jobs, Prometheus endpoints, and schema-based fuzzing of the OpenAPI
//! document (schemathesis) finding no server error.

use std::ffi::OsStr;
use std::process::Stdio;

use serde_json::{Value, json};
use weir_testkit::{TestCluster, root, stderr, wait_until};

use crate::WEIR;

/// A REST client for the tests: every answer as (status, JSON).
struct Api {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Api {
    fn new(cluster: &TestCluster) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Self { agent, base: cluster.rest.clone(), auth: format!("Bearer {}", cluster.token) }
    }

    fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        let mut r = r.expect("the api answers");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().expect("body");
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("answer {status} is not JSON ({e}): {text}"));
        (status, value)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        Self::answer(self.agent.get(format!("{}{path}", self.base)).header("Authorization", &self.auth).call())
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        Self::answer(
            self.agent.post(format!("{}{path}", self.base)).header("Authorization", &self.auth).header("Content-Type", "application/json").send(body),
        )
    }

    fn upload(&self, bytes: &[u8], content_type: &str) -> (u16, Value) {
        Self::answer(
            self.agent
                .post(format!("{}/api/v1/artifacts", self.base))
                .header("Authorization", &self.auth)
                .header("Content-Type", content_type)
                .send(bytes),
        )
    }

    /// Uploads an example job; its artifact id.
    fn artifact(&self, name: &str) -> String {
        let (status, a) = self.upload(&std::fs::read(WEIR.example(name)).expect("example"), "application/wasm");
        assert_eq!(status, 201, "{a}");
        a["id"].as_str().expect("id").to_string()
    }

    fn job(&self, id: &str) -> Value {
        let (status, j) = self.get(&format!("/api/v1/jobs/{id}"));
        assert_eq!(status, 200, "{j}");
        j
    }

    fn wait_state(&self, id: &str, state: &str) -> Value {
        let mut last = Value::Null;
        wait_until(&format!("job {id} to be {state}"), || {
            last = self.job(id);
            last["status"]["state"] == state
        });
        last
    }
}

/// Asserts an error answer: its status and code, and that the message names `names`.
#[track_caller]
fn refused((status, body): (u16, Value), want: u16, code: &str, names: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(names), "the message should name {names:?}: {message}");
}

fn states(job: &Value) -> Vec<String> {
    job["status"]["transitions"].as_array().expect("transitions").iter().map(|t| t["state"].as_str().unwrap_or("?").to_string()).collect()
}

#[test]
fn every_endpoint_and_error_path_answers_json() {
    let cluster =
        TestCluster::start_with(WEIR, &[("taskmanager-1", 2)], &["--checkpoint-dir", "{dir}/checkpoints", "--max-component-size", "2000000"]);
    let api = Api::new(&cluster);

    // Authentication: no token, a wrong token.
    let anonymous: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    refused(Api::answer(anonymous.get(format!("{}/api/v1/jobs", api.base)).call()), 401, "unauthorized", "Authorization: Bearer");
    refused(
        Api::answer(anonymous.get(format!("{}/api/v1/cluster", api.base)).header("Authorization", "Bearer 0123456789abcdef").call()),
        401,
        "unauthorized",
        "not this cluster's api token",
    );
    // Unknown routes and methods.
    refused(api.get("/api/v1/nothing"), 404, "not_found", "no such route");
    refused(
        Api::answer(api.agent.delete(format!("{}/api/v1/jobs", api.base)).header("Authorization", &api.auth).call()),
        405,
        "method_not_allowed",
        "method",
    );

    // The OpenAPI document is public and names every route the server has.
    let (status, spec) = Api::answer(anonymous.get(format!("{}/api/v1/openapi.json", api.base)).call());
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().expect("paths");
    for p in [
        "/cluster",
        "/taskmanagers",
        "/artifacts",
        "/jobs",
        "/jobs/{id}",
        "/jobs/{id}/cancel",
        "/jobs/{id}/savepoints",
        "/jobs/{id}/checkpoints",
        "/jobs/{id}/metrics",
        "/jobs/{id}/logs",
    ] {
        assert!(paths.keys().any(|k| k.ends_with(p)), "openapi.json lacks {p}");
    }
    let repo: Value = serde_json::from_str(&std::fs::read_to_string(root().join("host/api/openapi.json")).expect("spec")).expect("json");
    assert_eq!(repo, spec, "the served document is the one in the repository");

    // Cluster and TaskManagers.
    let (status, c) = api.get("/api/v1/cluster");
    assert_eq!((status, c["taskmanagers"].as_u64(), c["slotsTotal"].as_u64(), c["slotsFree"].as_u64()), (200, Some(1), Some(2), Some(2)), "{c}");
    let (status, t) = api.get("/api/v1/taskmanagers");
    assert_eq!(status, 200);
    assert_eq!(t["taskmanagers"][0]["name"], "taskmanager-1", "{t}");
    assert_eq!(t["taskmanagers"][0]["alive"], true, "{t}");

    // Artifacts: every way to be wrong, then right.
    refused(api.upload(b"", "application/wasm"), 400, "bad_request", "empty");
    refused(api.upload(b"hello", "text/plain"), 415, "unsupported_media_type", "text/plain");
    refused(api.upload(b"definitely not wasm", "application/wasm"), 422, "unprocessable", "not a WebAssembly");
    let core = wat::parse_str(std::fs::read_to_string(root().join("examples-wasm/bad_core_module/module.wat")).expect("wat")).expect("wat");
    refused(api.upload(&core, "application/wasm"), 422, "unprocessable", "core WebAssembly module");
    refused(api.upload(&std::fs::read(WEIR.example("wrong_world")).expect("wasm"), "application/wasm"), 422, "unprocessable", "does not implement");
    refused(api.upload(&vec![0u8; 2_010_000], "application/wasm"), 413, "payload_too_large", "limit of 2000000 bytes");
    let slow = api.artifact("slow_map");
    assert_eq!(api.artifact("slow_map"), slow, "uploading again is harmless");
    let (status, list) = api.get("/api/v1/artifacts");
    assert_eq!(status, 200);
    assert!(list["artifacts"].as_array().expect("artifacts").iter().any(|a| a["id"] == slow.as_str()), "{list}");

    // Job creation errors.
    refused(api.post("/api/v1/jobs", "{not json"), 400, "bad_request", "invalid job spec");
    refused(api.post("/api/v1/jobs", &json!({"artifact": slow, "paralelism": 2}).to_string()), 400, "bad_request", "paralelism");
    refused(api.post("/api/v1/jobs", &json!({"artifact": slow, "parallelism": 0}).to_string()), 400, "bad_request", "parallelism");
    refused(api.post("/api/v1/jobs", &json!({"artifact": slow, "parallelism": 5000}).to_string()), 400, "bad_request", "parallelism");
    refused(api.post("/api/v1/jobs", &json!({"artifact": "00ff"}).to_string()), 404, "not_found", "00ff");
    refused(api.post("/api/v1/jobs", &json!({"artifact": slow, "restartStrategy": "sometimes"}).to_string()), 400, "bad_request", "restartStrategy");
    refused(api.post("/api/v1/jobs", &json!({"artifact": slow, "fromSavepoint": "relative/dir"}).to_string()), 400, "bad_request", "fromSavepoint");
    refused(api.post("/api/v1/jobs", &json!({"artifact": slow, "args": {"n": "lots"}}).to_string()), 422, "unprocessable", "n");
    // Too few free slots: accepted, waiting (STARTING) with the reason; cancelled while it waits.
    let (status, wide) = api.post("/api/v1/jobs", &json!({"artifact": slow, "parallelism": 3}).to_string());
    assert_eq!(status, 201, "{wide}");
    let wide = wide["metadata"]["id"].as_str().expect("id").to_string();
    let (_, doc) = api.get(&format!("/api/v1/jobs/{wide}"));
    assert_eq!(doc["status"]["state"], "STARTING", "{doc}");
    assert!(doc["status"]["waiting"].as_str().is_some_and(|w| w.contains("needs 3 slots but only 2 are free")), "{doc}");
    assert_eq!(api.post(&format!("/api/v1/jobs/{wide}/cancel"), "{}").0, 202);
    let (_, doc) = api.get(&format!("/api/v1/jobs/{wide}"));
    assert_eq!(doc["status"]["state"], "TERMINATED", "nothing ran: it ends at once: {doc}");

    // A long-running checkpointed job.
    let (status, job) =
        api.post("/api/v1/jobs", &json!({"artifact": slow, "args": {"n": "100000000", "work": "50"}, "checkpointIntervalMs": 200}).to_string());
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["kind"], "Job");
    let id = job["metadata"]["id"].as_str().expect("id").to_string();
    assert_eq!(job["spec"]["artifact"], slow.as_str(), "the spec is kept as submitted");
    api.wait_state(&id, "STARTED");
    refused(api.get("/api/v1/jobs/nope"), 404, "not_found", "nope");
    refused(api.get("/api/v1/jobs/a%0Ab"), 404, "not_found", "\"a\\nb\"");
    let (status, running) = api.get("/api/v1/jobs?state=STARTED");
    assert_eq!(status, 200);
    assert!(running["jobs"].as_array().expect("jobs").iter().any(|j| j["metadata"]["id"] == id.as_str()), "{running}");
    refused(api.get("/api/v1/jobs?state=SLEEPING"), 400, "bad_request", "SLEEPING");
    refused(api.get("/api/v1/jobs?limit=3"), 400, "bad_request", "limit");

    // Metrics move; checkpoints complete with sizes and durations.
    let records = |api: &Api| {
        let (status, m) = api.get(&format!("/api/v1/jobs/{id}/metrics"));
        assert_eq!(status, 200, "{m}");
        m["vertices"][0]["recordsOut"].as_u64().unwrap_or(0)
    };
    let first = records(&api);
    wait_until("records to flow", || records(&api) > first);
    let (_, m) = api.get(&format!("/api/v1/jobs/{id}/metrics"));
    assert!(!m["vertices"].as_array().expect("vertices").is_empty(), "{m}");
    assert_eq!(m["vertices"][0]["subtasks"][0]["taskmanager"], "taskmanager-1", "{m}");
    refused(api.get("/api/v1/jobs/nope/metrics"), 404, "not_found", "nope");
    wait_until("a completed checkpoint", || {
        let (_, c) = api.get(&format!("/api/v1/jobs/{id}/checkpoints"));
        c["checkpoints"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["status"] == "COMPLETED" && c["sizeBytes"].as_u64() > Some(0) && c["durationMs"].is_u64()))
    });
    refused(api.get("/api/v1/jobs/nope/checkpoints"), 404, "not_found", "nope");

    // Savepoints.
    let sp = cluster.dir.path().join("savepoint");
    refused(api.post(&format!("/api/v1/jobs/{id}/savepoints"), &json!({"dir": "relative"}).to_string()), 400, "bad_request", "absolute");
    refused(api.post(&format!("/api/v1/jobs/{id}/savepoints"), "[]"), 400, "bad_request", "savepoint request");
    refused(api.post("/api/v1/jobs/nope/savepoints", &json!({"dir": sp}).to_string()), 404, "not_found", "nope");
    let (status, done) = api.post(&format!("/api/v1/jobs/{id}/savepoints"), &json!({"dir": sp}).to_string());
    assert_eq!(status, 200, "{done}");
    assert!(done["checkpoint"].as_u64() > Some(0), "{done}");
    assert!(sp.join("_metadata").exists(), "the savepoint is written");

    // Logs.
    let (status, logs) = api.get(&format!("/api/v1/jobs/{id}/logs"));
    assert_eq!(status, 200);
    let text = logs.to_string();
    assert!(text.contains("submitted") && text.contains("running") && text.contains("savepoint"), "{logs}");
    refused(api.get("/api/v1/jobs/nope/logs"), 404, "not_found", "nope");

    // Cancel: TERMINATING then TERMINATED; a second cancel and a savepoint conflict.
    refused(api.post("/api/v1/jobs/nope/cancel", "{}"), 404, "not_found", "nope");
    let (status, cancelling) = api.post(&format!("/api/v1/jobs/{id}/cancel"), "{}");
    assert_eq!(status, 202, "{cancelling}");
    let ended = api.wait_state(&id, "TERMINATED");
    assert_eq!(states(&ended), ["STARTING", "STARTED", "TERMINATING", "TERMINATED"], "{ended}");
    assert_eq!(ended["status"]["started"]["observedJobStatus"], "CANCELED", "{ended}");
    refused(api.post(&format!("/api/v1/jobs/{id}/cancel"), "{}"), 409, "conflict", "already ended");
    refused(
        api.post(&format!("/api/v1/jobs/{id}/savepoints"), &json!({"dir": cluster.dir.path().join("sp2")}).to_string()),
        409,
        "conflict",
        "already ended",
    );

    // A job without checkpoints has no savepoints.
    let (status, plain) = api.post("/api/v1/jobs", &json!({"artifact": slow, "args": {"n": "100000000", "work": "50"}}).to_string());
    assert_eq!(status, 201, "{plain}");
    let plain = plain["metadata"]["id"].as_str().expect("id").to_string();
    api.wait_state(&plain, "STARTED");
    refused(
        api.post(&format!("/api/v1/jobs/{plain}/savepoints"), &json!({"dir": cluster.dir.path().join("sp3")}).to_string()),
        409,
        "conflict",
        "checkpoints",
    );
    assert_eq!(api.post(&format!("/api/v1/jobs/{plain}/cancel"), "{}").0, 202);
    api.wait_state(&plain, "TERMINATED");

    // Prometheus on the JobManager.
    let text = anonymous.get(format!("{}/metrics", api.base)).call().expect("metrics").body_mut().read_to_string().expect("text");
    assert!(text.contains("weir_jobmanager_slots_total 2") && text.contains("weir_jobmanager_jobs{state=\"TERMINATED\"} 3"), "{text}");
    assert!(text.contains("weir_jobmanager_checkpoints_completed_total"), "{text}");

    // Prometheus on a TaskManager: a second one with a metrics endpoint runs part of a
    // job at parallelism 3, and its subtasks' counters show there.
    let mut tm = WEIR
        .command()
        .args(["taskmanager", "--jobmanager", &cluster.jm, "--slots", "1", "--metrics-listen", "127.0.0.1:0", "--identity"])
        .arg(cluster.creds.join("taskmanager-2"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskmanager starts");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(tm.stdout.take().expect("stdout")));
    let metrics_url = lines.find_map(|l| l.ok()?.strip_prefix("metrics on ").map(str::to_string)).expect("metrics line");
    let _tm = weir_testkit::cluster::Processes(vec![tm]);
    wait_until("the second taskmanager to register", || api.get("/api/v1/cluster").1["slotsTotal"] == 3);
    let (status, wide) = api.post("/api/v1/jobs", &json!({"artifact": slow, "parallelism": 3, "args": {"n": "100000000", "work": "50"}}).to_string());
    assert_eq!(status, 201, "{wide}");
    let wide = wide["metadata"]["id"].as_str().expect("id").to_string();
    wait_until("the second taskmanager's subtasks to count records", || {
        let text = anonymous.get(&metrics_url).call().expect("tm metrics").body_mut().read_to_string().expect("text");
        text.contains("weir_taskmanager_slots 1")
            && text.lines().any(|l| l.starts_with(&format!("weir_subtask_records_in_total{{job=\"{wide}.0\"")) && !l.ends_with(" 0"))
    });
    refused(Api::answer(anonymous.get(metrics_url.replace("/metrics", "/other")).call()), 404, "not_found", "try /metrics");
    assert_eq!(api.post(&format!("/api/v1/jobs/{wide}/cancel"), "{}").0, 202);
    api.wait_state(&wide, "TERMINATED");

    // The CLI over the same API, machine-readable.
    let o = cluster.client(&[OsStr::new("list"), OsStr::new("--output"), OsStr::new("json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(4), "history keeps ended jobs: {listed}");
    let o = cluster.client(&[OsStr::new("logs"), OsStr::new(&id)]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("cancelling on request"), "{}", stderr(&o));
}

#[test]
fn job_resource_transitions_are_reached_by_real_jobs() {
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 2)]);
    let api = Api::new(&cluster);

    // A finite job: STARTING -> STARTED -> FINISHED.
    let wordcount = api.artifact("wordcount");
    let input = cluster.dir.path().join("in.txt");
    std::fs::write(&input, "a b\nb c\n").expect("input");
    let spec = json!({"artifact": wordcount, "input": input, "output": cluster.dir.path().join("out")});
    let (status, job) = api.post("/api/v1/jobs", &spec.to_string());
    assert_eq!(status, 201, "{job}");
    let finished = api.wait_state(job["metadata"]["id"].as_str().expect("id"), "FINISHED");
    assert_eq!(states(&finished), ["STARTING", "STARTED", "FINISHED"], "{finished}");
    assert_eq!(finished["status"]["started"]["observedJobStatus"], "FINISHED");
    assert!(finished["status"]["failure"].is_null());

    // A failing operator past its restart budget: STARTED stays through the restarts,
    // which are counted, then FAILED with the failure.
    let panic = api.artifact("bad_panic");
    let (status, job) = api.post("/api/v1/jobs", &json!({"artifact": panic, "restartStrategy": "fixed-delay:2:100"}).to_string());
    assert_eq!(status, 201, "{job}");
    let failed = api.wait_state(job["metadata"]["id"].as_str().expect("id"), "FAILED");
    assert_eq!(states(&failed), ["STARTING", "STARTED", "FAILED"], "{failed}");
    assert_eq!(failed["status"]["started"]["observedJobRestarts"], 2, "{failed}");
    assert_eq!(failed["status"]["started"]["observedJobStatus"], "FAILED", "{failed}");
    assert!(failed["status"]["failure"]["message"].as_str().is_some_and(|m| m.contains("panicked")), "{failed}");

    // Ended jobs stay listed as history, newest first.
    let (_, list) = api.get("/api/v1/jobs");
    let names: Vec<&str> = list["jobs"].as_array().expect("jobs").iter().filter_map(|j| j["metadata"]["name"].as_str()).collect();
    assert_eq!(names.len(), 2, "{list}");
}

#[test]
fn the_openapi_document_survives_schema_based_fuzzing_without_a_server_error() {
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let api = Api::new(&cluster);
    // Something to find: an artifact and a running job, so the fuzzer's links reach them.
    let slow = api.artifact("slow_map");
    let (status, job) = api.post("/api/v1/jobs", &json!({"artifact": slow, "args": {"n": "100000000", "work": "50"}}).to_string());
    assert_eq!(status, 201, "{job}");
    let o = std::process::Command::new("schemathesis")
        .args(["run", &format!("{}/api/v1/openapi.json", cluster.rest), "--url", &cluster.rest])
        .args(["--header", &format!("Authorization: Bearer {}", cluster.token)])
        // Every check but two: a documented 503 (the fuzzer fills the slots with jobs) is
        // no server bug, and a body that fits the schema may still name no real
        // component (422). A 500 is undocumented, so status_code_conformance fails it.
        .args(["--checks", "all", "--exclude-checks", "not_a_server_error,positive_data_acceptance"])
        .args(["--max-examples", "40", "--seed", "7"])
        .env("NO_COLOR", "1")
        .current_dir(cluster.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("schemathesis must be installed (pip install schemathesis; .ci/run does): {e}"));
    let out = format!("{}\n{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "schemathesis found problems:\n{out}\n{}", cluster.log("jobmanager"));
    // It really reached every operation it selected from the document.
    let number = |label: &str| out.lines().find_map(|l| l.trim().strip_prefix(label)).map(|n| n.split('/').next().unwrap_or("").trim().to_string());
    let (selected, tested) = (number("Selected: "), number("Tested: "));
    assert!(selected.is_some() && selected == tested, "not every operation was tested ({selected:?} vs {tested:?}):\n{out}");
    assert!(tested.and_then(|n| n.parse::<u32>().ok()) >= Some(15), "{out}");
    assert!(!cluster.log("jobmanager").contains("internal error answering"), "{}", cluster.log("jobmanager"));
}

#[test]
fn ended_jobs_stay_queryable_across_a_jobmanager_restart() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let api = Api::new(&cluster);
    let wordcount = api.artifact("wordcount");
    let input = cluster.dir.path().join("in.txt");
    std::fs::write(&input, "x y x\n").expect("input");
    let spec = json!({"artifact": wordcount, "input": input, "output": cluster.dir.path().join("out")});
    let (status, job) = api.post("/api/v1/jobs", &spec.to_string());
    assert_eq!(status, 201, "{job}");
    let id = job["metadata"]["id"].as_str().expect("id").to_string();
    let before = api.wait_state(&id, "FINISHED");

    cluster.restart_jobmanager();
    let api = Api::new(&cluster);
    let after = api.job(&id);
    assert_eq!(after["status"], before["status"], "the ended job's resource survives the restart");
    assert_eq!(after["spec"], before["spec"]);
    let (status, m) = api.get(&format!("/api/v1/jobs/{id}/metrics"));
    assert_eq!(status, 200, "{m}");
    assert!(m["vertices"].as_array().is_some_and(|v| v.iter().any(|v| v["recordsIn"].as_u64() > Some(0))), "final counts are kept: {m}");
    let (_, logs) = api.get(&format!("/api/v1/jobs/{id}/logs"));
    assert!(logs.to_string().contains("job ended FINISHED"), "{logs}");
}
