//! WASI capability grants (issue 19) on a real cluster: a tenant's guest that reaches
//! for a file, a socket, the environment or a clock it was not granted fails its job
//! with a cause naming what was refused, the TaskManager stays up and runs the next
//! job; randomness not granted is a deterministic substitute (two runs agree); with the
//! grants the clocks work and randomness is the host's. The admin keeps everything.

use std::ffi::OsStr;

use serde_json::{Value, json};
use weir_testkit::{TestCluster, http, stderr};

use crate::WEIR;

fn call(cluster: &TestCluster, token: &str, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let content = if path.ends_with("/artifacts") { "application/wasm" } else { "application/json" };
    let (status, bytes) = http::request(method, &format!("{}{path}", cluster.rest), &[("Content-Type", content), ("Authorization", &auth)], body);
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn admin_cli(cluster: &TestCluster, args: &[&str]) -> String {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let o = cluster.client(&args);
    assert!(o.status.success(), "weir {args:?}: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Submits bad_sandbox with `try=what` as `token`'s, writing into `out`; waits for it
/// to end and returns its final document.
fn attempt(cluster: &TestCluster, token: &str, artifact: &str, what: &str, out: &std::path::Path) -> Value {
    let addr = cluster.rest.trim_start_matches("http://").to_string();
    let spec = json!({"artifact": artifact, "args": {"try": what, "addr": addr}, "output": out, "restartStrategy": "none"});
    let (status, job) = call(cluster, token, "POST", "/api/v1/jobs", spec.to_string().as_bytes());
    assert_eq!(status, 201, "{job}");
    let id = job["metadata"]["id"].as_str().expect("id").to_string();
    let mut last = Value::Null;
    cluster.wait_until(&format!("the try={what} job to end"), || {
        last = call(cluster, token, "GET", &format!("/api/v1/jobs/{id}"), b"").1;
        matches!(last["status"]["state"].as_str(), Some("FINISHED" | "FAILED" | "CANCELED"))
    });
    last
}

fn failure(job: &Value) -> String {
    assert_eq!(job["status"]["state"], "FAILED", "{job}");
    job["status"]["failure"]["message"].as_str().unwrap_or_default().to_string()
}

fn output(job: &Value, out: &std::path::Path) -> String {
    assert_eq!(job["status"]["state"], "FINISHED", "{job}");
    std::fs::read_to_string(out.join("part-0")).expect("part file")
}

/// The TaskManager is the same process and still running.
fn alive(cluster: &mut TestCluster) {
    let tm = &mut cluster.procs.0[1];
    assert!(matches!(tm.try_wait(), Ok(None)), "the taskmanager exited");
}

#[test]
fn a_tenants_guest_is_refused_what_it_was_not_granted_and_the_taskmanager_carries_on() {
    let mut cluster = TestCluster::start(WEIR, &[("taskmanager-1", 2)]);
    // The tenant's outputs go under its own root.
    let dir = cluster.dir.path().join("t");
    std::fs::create_dir_all(&dir).expect("the tenant's root");
    admin_cli(&cluster, &["tenant", "create", "t"]);
    admin_cli(&cluster, &["tenant", "roots", "t", dir.to_str().expect("UTF-8 path")]);
    let token = admin_cli(&cluster, &["tenant", "token", "create", "t"]).trim().to_string();
    let listed = admin_cli(&cluster, &["tenant", "list"]);
    assert!(listed.lines().any(|l| l.starts_with("t ") && l.contains(" none ")), "{listed}");
    let (status, a) = call(&cluster, &token, "POST", "/api/v1/artifacts", &std::fs::read(WEIR.example("bad_sandbox")).expect("example"));
    assert_eq!(status, 201, "{a}");
    let artifact = a["id"].as_str().expect("id").to_string();
    let addr = cluster.rest.trim_start_matches("http://").to_string();

    // Refused, each naming what: the guest turns WASI errors into panics, a clock not
    // granted traps in the host naming the interface.
    let socket = format!("socket to {addr} refused");
    let refused = [
        ("file", vec!["\"reach\"", "file /etc/passwd refused"]),
        ("socket", vec!["\"reach\"", socket.as_str()]),
        ("env", vec!["\"reach\"", "env HOME refused"]),
        ("clock", vec!["\"reach\"", "wasi:clocks/wall-clock is not granted to this job's tenant"]),
        ("instant", vec!["\"reach\"", "wasi:clocks/monotonic-clock is not granted to this job's tenant"]),
    ];
    for (i, (what, expected)) in refused.iter().enumerate() {
        let job = attempt(&cluster, &token, &artifact, what, &dir.join(format!("refused-{i}")));
        let message = failure(&job);
        for e in expected {
            assert!(message.contains(e), "try={what}: {message:?} lacks {e:?}");
        }
        assert!(!message.contains('\n'), "one line: {message}");
        alive(&mut cluster);
    }

    // Randomness not granted: the substitute, seeded from the job's name, vertex and
    // subtask, so two runs agree; the TaskManager that refused the rest runs them.
    let one = output(&attempt(&cluster, &token, &artifact, "random", &dir.join("random-1")), &dir.join("random-1"));
    let two = output(&attempt(&cluster, &token, &artifact, "random", &dir.join("random-2")), &dir.join("random-2"));
    assert!(one.trim().starts_with("hash "), "{one}");
    assert_eq!(one, two, "a tenant without the random grant gets the same bytes every run");
    alive(&mut cluster);

    // Granted: the clocks answer, randomness is the host's (two runs differ).
    let shown = admin_cli(&cluster, &["tenant", "grant", "t", "clock,random"]);
    assert!(shown.contains("clock,random"), "{shown}");
    let listed = admin_cli(&cluster, &["tenant", "list", "--output", "json"]);
    let listed: Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(listed["tenants"][0]["grants"], json!(["clock", "random"]), "{listed}");
    let clock = output(&attempt(&cluster, &token, &artifact, "clock", &dir.join("clock")), &dir.join("clock"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
    let read: u64 = clock.trim().rsplit(' ').next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{clock:?}"));
    assert!(read <= now && read + 3600 > now, "the guest read the wall clock: {read} vs {now}");
    let slept = output(&attempt(&cluster, &token, &artifact, "instant", &dir.join("instant")), &dir.join("instant"));
    assert!(slept.contains("slept "), "{slept}");
    let three = output(&attempt(&cluster, &token, &artifact, "random", &dir.join("random-3")), &dir.join("random-3"));
    let four = output(&attempt(&cluster, &token, &artifact, "random", &dir.join("random-4")), &dir.join("random-4"));
    assert_ne!(three, four, "with the grant randomness is the host's");
    assert_ne!(three, one);

    // Files, sockets and the environment are granted to nobody, the admin included;
    // the admin's jobs keep the clocks without any grant.
    let admin = cluster.token.clone();
    let (status, a) = call(&cluster, &admin, "POST", "/api/v1/artifacts", &std::fs::read(WEIR.example("bad_sandbox")).expect("example"));
    assert_eq!(status, 201, "{a}");
    let admin_artifact = a["id"].as_str().expect("id").to_string();
    let admin_clock = attempt(&cluster, &admin, &admin_artifact, "clock", &dir.join("admin-clock"));
    assert!(output(&admin_clock, &dir.join("admin-clock")).contains("wall clock "));
    let message = failure(&attempt(&cluster, &admin, &admin_artifact, "file", &dir.join("admin-file")));
    assert!(message.contains("file /etc/passwd refused"), "{message}");
    alive(&mut cluster);

    // Unknown capabilities are refused naming them.
    let (status, body) = call(&cluster, &admin, "PUT", "/api/v1/tenants/t/grants", json!({"grants": ["files"]}).to_string().as_bytes());
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("unknown capability \\\"files\\\""), "{body}");
}

/// A tenant's connectors reach only the hosts an admin allowed it: checked at
/// submission, before the JobManager reaches anything on its behalf.
#[test]
fn a_tenants_connector_to_a_host_not_allowed_is_refused_at_submission_naming_it() {
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 1)]);
    admin_cli(&cluster, &["tenant", "create", "t"]);
    let token = admin_cli(&cluster, &["tenant", "token", "create", "t"]).trim().to_string();
    let wasm = std::fs::read(WEIR.example("kafka_counts")).expect("example");
    let submit = |token: &str| {
        let (status, a) = call(&cluster, token, "POST", "/api/v1/artifacts", &wasm);
        assert_eq!(status, 201, "{a}");
        let spec = json!({"artifact": a["id"], "args": {"bootstrap-servers": "127.0.0.1:1", "topic": "clicks"}});
        let (status, body) = call(&cluster, token, "POST", "/api/v1/jobs", spec.to_string().as_bytes());
        (status, body.to_string())
    };
    let (status, body) = submit(&token);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("reaches 127.0.0.1:1, which this job's tenant may not reach (allowed: none"), "{body}");

    // Another port of the host, another host: still refused.
    let shown = admin_cli(&cluster, &["tenant", "hosts", "t", "127.0.0.1:2,db.internal"]);
    assert!(shown.contains("127.0.0.1:2, db.internal"), "{shown}");
    let (status, body) = submit(&token);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("reaches 127.0.0.1:1") && body.contains("allowed: 127.0.0.1:2, db.internal"), "{body}");

    // Allowed (and for the admin, always): the submission goes on to reach the broker,
    // which is not there.
    admin_cli(&cluster, &["tenant", "hosts", "t", "127.0.0.1"]);
    let admin = cluster.token.clone();
    for who in [&token, &admin] {
        let (status, body) = submit(who);
        assert_ne!(status, 201, "{body}");
        assert!(!body.contains("may not reach"), "{body}");
    }
    let listed: Value = serde_json::from_str(&admin_cli(&cluster, &["tenant", "list", "--output", "json"])).expect("json");
    assert_eq!(listed["tenants"][0]["hosts"], json!(["127.0.0.1"]), "{listed}");
}
