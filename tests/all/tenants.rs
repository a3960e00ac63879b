//! Tenants (issue 19) on a real cluster: tenant B walks every route of the OpenAPI
//! document against tenant A's job, artifact, savepoint and token and gets "not
//! found" (exactly what an unknown id gets), while A's job runs on untouched; tokens
//! that are missing, wrong, revoked or expired are 401; tenants, tokens and ownership
//! survive a JobManager restart; quotas refuse naming the quota.

use std::ffi::OsStr;

use serde_json::{Value, json};
use weir_testkit::{TestCluster, http, stderr};

use crate::WEIR;

/// `(status, JSON)` of a request with `token` (none: no Authorization header).
fn call(cluster: &TestCluster, token: Option<&str>, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", if path.ends_with("/artifacts") { "application/wasm" } else { "application/json" })];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let (status, bytes) = http::request(method, &format!("{}{path}", cluster.rest), &headers, body);
    let text = String::from_utf8_lossy(&bytes);
    // The dashboard, its assets and /metrics answer text: as a JSON string.
    (status, serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned())))
}

/// A client command as the admin (the cluster's token), its stdout.
fn admin_cli(cluster: &TestCluster, args: &[&str]) -> String {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let o = cluster.client(&args);
    assert!(o.status.success(), "weir {args:?}: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A client command with a tenant's token (`WEIR_TOKEN`).
fn tenant_cli(cluster: &TestCluster, token: &str, args: &[&str]) -> std::process::Output {
    WEIR.command().args(args).args(["--jobmanager", &cluster.rest]).env("WEIR_TOKEN", token).output().expect("weir starts")
}

/// Creates tenant `name` and a token for it; `(token, token id)`.
fn tenant(cluster: &TestCluster, name: &str) -> (String, String) {
    admin_cli(cluster, &["tenant", "create", name]);
    let issued: Value = serde_json::from_str(&admin_cli(cluster, &["tenant", "token", "create", name, "--output", "json"])).expect("json");
    (issued["token"].as_str().expect("token").to_string(), issued["id"].as_str().expect("id").to_string())
}

fn upload(cluster: &TestCluster, token: &str, example: &str) -> String {
    let (status, a) = call(cluster, Some(token), "POST", "/api/v1/artifacts", &std::fs::read(WEIR.example(example)).expect("example"));
    assert_eq!(status, 201, "{a}");
    a["id"].as_str().expect("id").to_string()
}

fn submit(cluster: &TestCluster, token: &str, spec: Value) -> (u16, Value) {
    call(cluster, Some(token), "POST", "/api/v1/jobs", spec.to_string().as_bytes())
}

#[test]
fn another_tenants_resources_are_not_found_on_every_route_and_stay_untouched() {
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 4)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let (a, a_token_id) = tenant(&cluster, "a");
    let (b, _) = tenant(&cluster, "b");
    let a_root = cluster.dir.path().join("a");
    admin_cli(&cluster, &["tenant", "roots", "a", &a_root.display().to_string()]);

    // A runs a checkpointed job and takes a savepoint of it.
    let a_artifact = upload(&cluster, &a, "slow_map");
    let slow = json!({"artifact": a_artifact, "args": {"n": "100000000", "work": "50"}, "checkpointIntervalMs": 200});
    let (status, job) = submit(&cluster, &a, slow.clone());
    assert_eq!(status, 201, "{job}");
    let id = job["metadata"]["id"].as_str().expect("id").to_string();
    let job_of = |token: &str| call(&cluster, Some(token), "GET", &format!("/api/v1/jobs/{id}"), b"");
    cluster.wait_until("A's job to run and checkpoint", || {
        let (_, c) = call(&cluster, Some(&a), "GET", &format!("/api/v1/jobs/{id}/checkpoints"), b"");
        job_of(&a).1["status"]["state"] == "STARTED" && c["lastCompleted"].is_u64()
    });
    let sp_a = a_root.join("sp-a");
    let (status, done) = call(&cluster, Some(&a), "POST", &format!("/api/v1/jobs/{id}/savepoints"), json!({"dir": sp_a}).to_string().as_bytes());
    assert_eq!(status, 200, "{done}");
    let before = job_of(&a).1;
    let b_artifact = upload(&cluster, &b, "wordcount");

    // What B gets for ids that exist nowhere: A's must get the same, word for word.
    let unknown_job = "0123456789abcdef";
    let (status, unknown) = call(&cluster, Some(&b), "GET", &format!("/api/v1/jobs/{unknown_job}"), b"");
    assert_eq!(status, 404, "{unknown}");
    let (_, no_route) = call(&cluster, Some(&b), "GET", "/api/v1/no-such-route", b"");
    let (status, unknown_artifact) = submit(&cluster, &b, json!({"artifact": "0".repeat(64)}));
    assert_eq!(status, 404, "{unknown_artifact}");
    let secrets = [id.as_str(), a_artifact.as_str(), "sp-a"];

    let (status, spec) = call(&cluster, None, "GET", "/api/v1/openapi.json", b"");
    assert_eq!(status, 200);
    let mut walked = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, _) in
            item.as_object().expect("path item").iter().filter(|(m, _)| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
        {
            let method = method.to_uppercase();
            let admin_route = path.contains("/tenants") || path.contains("/tokens") || path.contains("/deployments");
            let id_for = |param: &str| match param {
                "name" => "a".to_string(),
                "id" if path.starts_with("/api/v1/tokens") => a_token_id.clone(),
                _ => id.clone(),
            };
            let concrete = path.split('/').map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')).map_or(s.to_string(), id_for));
            let concrete: Vec<String> = concrete.collect();
            let concrete = concrete.join("/");
            let body = match (method.as_str(), path.as_str()) {
                ("POST", "/api/v1/jobs") => json!({"artifact": a_artifact}).to_string().into_bytes(),
                ("POST", "/api/v1/artifacts") => std::fs::read(WEIR.example("wordcount")).expect("example"),
                ("POST", p) if p.ends_with("/savepoints") => json!({"dir": cluster.dir.path().join("sp-b")}).to_string().into_bytes(),
                ("POST", "/api/v1/tenants") => json!({"name": "made-by-b"}).to_string().into_bytes(),
                _ => b"{}".to_vec(),
            };
            let (status, answer) = call(&cluster, Some(&b), &method, &concrete, &body);
            let text = answer.to_string();
            // Where B named A's ids, the answer is compared with the unknown ids' answer;
            // elsewhere it must not mention them at all.
            let named = path.contains('{') || (method == "POST" && path == "/api/v1/jobs");
            assert!(named || !secrets.iter().any(|s| text.contains(s)), "{method} {concrete} as B shows A's resources: {text}");
            if admin_route {
                assert_eq!((status, &answer), (404, &no_route), "{method} {concrete}: an admin route is an unknown route to a tenant");
            } else if path.contains('{') {
                let want = unknown.to_string().replace(unknown_job, &id);
                assert_eq!((status, text), (404, want), "{method} {concrete}: A's job is unknown to B");
            } else if method == "GET" {
                assert_eq!(status, 200, "{method} {concrete}: {answer}");
            } else if path == "/api/v1/jobs" {
                let want = unknown_artifact.to_string().replace(&"0".repeat(64), &a_artifact);
                assert_eq!((status, text), (404, want), "B cannot run A's artifact");
            } else if path == "/api/v1/artifacts" {
                assert_eq!(status, 201, "B stores its own artifact: {answer}");
            } else {
                assert!(status < 500, "{method} {concrete}: {answer}");
            }
            walked.push(format!("{method} {path}"));
        }
    }
    for must in [
        "GET /api/v1/jobs",
        "GET /api/v1/jobs/{id}",
        "POST /api/v1/jobs/{id}/cancel",
        "POST /api/v1/jobs/{id}/savepoints",
        "GET /api/v1/jobs/{id}/logs",
    ] {
        assert!(walked.iter().any(|w| w == must), "the document has {must}: {walked:?}");
    }
    assert!(walked.len() >= 19, "every operation walked: {walked:?}");

    // B cannot restore from A's savepoint, even with its own artifact.
    let (status, refused) = submit(&cluster, &b, json!({"artifact": b_artifact, "fromSavepoint": sp_a, "checkpointIntervalMs": 200}));
    assert_eq!(status, 404, "{refused}");
    assert!(refused["error"]["message"].as_str().is_some_and(|m| m.contains("no savepoint")), "{refused}");
    // Nor write its savepoints into A's.
    // (B has no job of its own here: any job id of A is unknown, checked above.)

    // The CLI with B's token: A's job is not in its list, and cannot be cancelled.
    let o = tenant_cli(&cluster, &b, &["list", "--output", "json"]);
    assert!(o.status.success() && !String::from_utf8_lossy(&o.stdout).contains(&id), "{}", stderr(&o));
    let o = tenant_cli(&cluster, &b, &["cancel", &id]);
    assert!(!o.status.success() && stderr(&o).contains("no job") && stderr(&o).contains("404"), "{}", stderr(&o));

    // Prometheus: B and anonymous scrapers see no series of A's job; A and the admin do.
    let metrics = |token: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let (status, text) = http::request("GET", &format!("{}/metrics", cluster.rest), &headers, b"");
        assert_eq!(status, 200);
        String::from_utf8_lossy(&text).into_owned()
    };
    let series = format!("job=\"{id}\"");
    assert!(metrics(Some(&a)).contains(&series) && metrics(Some(&cluster.token)).contains(&series), "{}", metrics(Some(&a)));
    assert!(!metrics(Some(&b)).contains(&series) && !metrics(None).contains(&series), "{}", metrics(None));

    // A's job ran on untouched: same attempt (no restart), still STARTED, and A's own
    // calls work, including a restore from its own savepoint.
    let (status, after) = job_of(&a);
    assert_eq!(status, 200);
    assert_eq!(after["status"]["state"], "STARTED", "{after}");
    assert_eq!(after["status"]["transitions"], before["status"]["transitions"], "{after}");
    assert_eq!(after["status"]["started"]["observedJobRestarts"], before["status"]["started"]["observedJobRestarts"]);
    let (status, logs) = call(&cluster, Some(&a), "GET", &format!("/api/v1/jobs/{id}/logs"), b"");
    assert!(status == 200 && !logs.to_string().contains("cancelling on request"), "{logs}");
    let (_, listed) = call(&cluster, Some(&a), "GET", "/api/v1/jobs", b"");
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(1), "A sees its job only: {listed}");
    let (_, all) = call(&cluster, Some(&cluster.token), "GET", "/api/v1/jobs", b"");
    assert!(all.to_string().contains(&id), "the admin sees every tenant's jobs: {all}");
    let mut restore = slow.clone();
    restore["fromSavepoint"] = json!(sp_a);
    let (status, restored) = submit(&cluster, &a, restore);
    assert_eq!(status, 201, "A restores from its own savepoint: {restored}");
    let restored = restored["metadata"]["id"].as_str().expect("id").to_string();
    for job in [&id, &restored] {
        assert_eq!(call(&cluster, Some(&a), "POST", &format!("/api/v1/jobs/{job}/cancel"), b"{}").0, 202);
    }
}

#[test]
fn tokens_missing_wrong_revoked_or_expired_are_refused_and_tenants_survive_a_restart() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let (c, _) = tenant(&cluster, "c");
    let revoked: Value = serde_json::from_str(&admin_cli(&cluster, &["tenant", "token", "create", "c", "--output", "json"])).expect("json");
    let (revoked, revoked_id) = (revoked["token"].as_str().expect("token").to_string(), revoked["id"].as_str().expect("id").to_string());
    let (status, expiring) = call(&cluster, Some(&cluster.token), "POST", "/api/v1/tenants/c/tokens", br#"{"expiresInSeconds": 1}"#);
    assert_eq!(status, 201, "{expiring}");
    let expiring = expiring["token"].as_str().expect("token").to_string();

    let unauthorized = |cluster: &TestCluster, token: Option<&str>, why: &str| {
        let (status, answer) = call(cluster, token, "GET", "/api/v1/jobs", b"");
        assert_eq!(status, 401, "{answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| m.contains(why)), "{why}: {answer}");
    };
    unauthorized(&cluster, None, "missing");
    unauthorized(&cluster, Some("weir_0123456789abcdef0123456789abcdef"), "not this cluster's api token");
    unauthorized(&cluster, Some(&c[..c.len() - 1]), "not this cluster's api token");
    assert_eq!(call(&cluster, Some(&revoked), "GET", "/api/v1/jobs", b"").0, 200);
    admin_cli(&cluster, &["tenant", "token", "revoke", &revoked_id]);
    unauthorized(&cluster, Some(&revoked), "revoked");
    cluster.wait_until("the 1 s token to expire", || call(&cluster, Some(&expiring), "GET", "/api/v1/jobs", b"").0 == 401);
    unauthorized(&cluster, Some(&expiring), "expired");
    // A tenant's token is no admin's: tenant management is an unknown route to it.
    let o = tenant_cli(&cluster, &c, &["tenant", "list"]);
    assert!(!o.status.success() && stderr(&o).contains("no such route"), "{}", stderr(&o));

    // C's finished job, then a JobManager restart: tenants, tokens (revoked ones too)
    // and ownership are as they were.
    let wordcount = upload(&cluster, &c, "wordcount");
    let c_root = cluster.dir.path().join("c");
    std::fs::create_dir_all(&c_root).expect("c's root");
    admin_cli(&cluster, &["tenant", "roots", "c", &c_root.display().to_string()]);
    let input = c_root.join("in.txt");
    std::fs::write(&input, "a b a\n").expect("input");
    let (status, job) = submit(&cluster, &c, json!({"artifact": wordcount, "input": input, "output": c_root.join("out")}));
    assert_eq!(status, 201, "{job}");
    let id = job["metadata"]["id"].as_str().expect("id").to_string();
    cluster
        .wait_until("C's job to finish", || call(&cluster, Some(&c), "GET", &format!("/api/v1/jobs/{id}"), b"").1["status"]["state"] == "FINISHED");
    let (d, _) = tenant(&cluster, "d");

    cluster.restart_jobmanager();
    let (status, listed) = call(&cluster, Some(&c), "GET", "/api/v1/jobs", b"");
    assert_eq!(status, 200, "C's token works after the restart: {listed}");
    assert!(listed.to_string().contains(&id), "{listed}");
    assert_eq!(call(&cluster, Some(&d), "GET", &format!("/api/v1/jobs/{id}"), b"").0, 404, "still C's, not D's");
    assert_eq!(call(&cluster, Some(&d), "GET", "/api/v1/artifacts", b"").1["artifacts"], json!([]), "C's artifact is not D's");
    unauthorized(&cluster, Some(&revoked), "revoked");
    let tenants: Value = serde_json::from_str(&admin_cli(&cluster, &["tenant", "list", "--output", "json"])).expect("json");
    let names: Vec<&str> = tenants["tenants"].as_array().expect("tenants").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["c", "d"]);

    // Quotas: over one, the refusal names it; within, jobs run.
    admin_cli(&cluster, &["tenant", "quota", "c", "--set", "--max-running-jobs", "1", "--max-slots", "2", "--max-artifact-mib", "1"]);
    let slow = upload(&cluster, &c, "slow_map");
    let long = |parallelism: u32| json!({"artifact": slow, "parallelism": parallelism, "args": {"n": "100000000", "work": "50"}});
    let (status, too_wide) = submit(&cluster, &c, long(3));
    assert_eq!(status, 409, "{too_wide}");
    assert!(too_wide["error"]["message"].as_str().is_some_and(|m| m.contains("quota of 2 slots")), "{too_wide}");
    let (status, first) = submit(&cluster, &c, long(1));
    assert_eq!(status, 201, "{first}");
    let (status, second) = submit(&cluster, &c, long(1));
    assert_eq!(status, 409, "{second}");
    assert!(second["error"]["message"].as_str().is_some_and(|m| m.contains("quota of 1 running jobs")), "{second}");
    let (status, big) = call(&cluster, Some(&c), "POST", "/api/v1/artifacts", &vec![0u8; 2 << 20]);
    assert_eq!(status, 409, "{big}");
    assert!(big["error"]["message"].as_str().is_some_and(|m| m.contains("artifact bytes")), "{big}");
    let shown = admin_cli(&cluster, &["tenant", "quota", "c"]);
    assert!(shown.contains("1/1") && shown.contains("1/2"), "usage against the quota: {shown}");
    let first = first["metadata"]["id"].as_str().expect("id");
    assert_eq!(call(&cluster, Some(&c), "POST", &format!("/api/v1/jobs/{first}/cancel"), b"{}").0, 202);
}

/// Metered fuel per tenant: a tenant's usage is the sum of its jobs' fuel as their
/// metrics report it, ended jobs included; the admin's jobs count for no tenant.
#[test]
fn a_tenants_fuel_is_the_sum_of_its_jobs_fuel() {
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 4)]);
    let (a, _) = tenant(&cluster, "a");
    let artifact = upload(&cluster, &a, "keyed_sum");
    let mut ids = Vec::new();
    for n in ["200000", "300000"] {
        let (status, job) = submit(&cluster, &a, json!({"artifact": artifact, "parallelism": 2, "args": {"n": n}}));
        assert_eq!(status, 201, "{job}");
        ids.push(job["metadata"]["id"].as_str().expect("id").to_string());
    }
    let admin_artifact = upload(&cluster, &cluster.token, "keyed_sum");
    let (status, job) = submit(&cluster, &cluster.token, json!({"artifact": admin_artifact, "args": {"n": "100000"}}));
    assert_eq!(status, 201, "{job}");
    let admin_job = job["metadata"]["id"].as_str().expect("id").to_string();
    let all: Vec<&String> = ids.iter().chain([&admin_job]).collect();
    cluster.wait_until("every job to finish", || {
        all.iter().all(|id| call(&cluster, Some(&cluster.token), "GET", &format!("/api/v1/jobs/{id}"), b"").1["status"]["state"] == "FINISHED")
    });
    let fuel_of = |id: &String| {
        let (_, m) = call(&cluster, Some(&cluster.token), "GET", &format!("/api/v1/jobs/{id}/metrics"), b"");
        m["fuel"].as_u64().unwrap_or_else(|| panic!("no fuel in {m}"))
    };
    let of_a: u64 = ids.iter().map(fuel_of).sum();
    assert!(of_a > 0 && fuel_of(&admin_job) > 0, "jobs burn fuel");
    let (status, t) = call(&cluster, Some(&cluster.token), "GET", "/api/v1/tenants/a", b"");
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["usage"]["fuel"].as_u64(), Some(of_a), "A's fuel is its jobs' and only theirs: {t}");
    assert_eq!(t["usage"]["fuelFailedAttempts"].as_u64(), Some(0), "{t}");
    let listed = admin_cli(&cluster, &["tenant", "list"]);
    assert!(listed.lines().any(|l| l.starts_with("a ") && l.trim_end().ends_with(&format!(" {of_a}"))), "{listed}");
}

/// Per-tenant file roots (issue 19) on a cluster whose `--data-root` is DIR: tenants
/// A and B with roots DIR/a and DIR/b. A's wordcount under DIR/a runs; its paths into
/// B's root or elsewhere under DIR are refused naming the path and the rule, and so is
/// a savepoint into B's root; a tenant without roots is told the command that grants
/// them; a root outside the cluster's data roots is refused when set.
#[test]
fn a_tenants_files_lie_under_its_own_roots_only() {
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 2)]);
    let dir = cluster.dir.path();
    let (root_a, root_b) = (dir.join("a"), dir.join("b"));
    for (d, text) in [(&root_a, "x y x\n"), (&root_b, "b's data\n"), (&dir.to_path_buf(), "shared\n")] {
        std::fs::create_dir_all(d).expect("dir");
        std::fs::write(d.join("input"), text).expect("input");
    }
    let (a, _) = tenant(&cluster, "a");
    let (b, _) = tenant(&cluster, "b");
    let (c, _) = tenant(&cluster, "c");
    let show = |p: &std::path::Path| p.display().to_string();
    admin_cli(&cluster, &["tenant", "roots", "a", &show(&root_a)]);
    let set: Value = serde_json::from_str(&admin_cli(&cluster, &["tenant", "roots", "b", &show(&root_b), "--output", "json"])).expect("json");
    assert_eq!(set["roots"], json!([show(&root_b)]), "{set}");
    let (status, a_doc) = call(&cluster, Some(&cluster.token), "GET", "/api/v1/tenants/a", b"");
    assert_eq!((status, &a_doc["roots"]), (200, &json!([show(&root_a)])), "{a_doc}");

    // A root outside the cluster's data roots is refused when set, and nothing changes.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let o = cluster.client(&[OsStr::new("tenant"), OsStr::new("roots"), OsStr::new("c"), elsewhere.path().as_os_str()]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains(&show(elsewhere.path())) && err.contains("not under any of the cluster's data roots"), "{err}");
    assert!(err.contains("400"), "{err}");

    let wasm = WEIR.example("wordcount");
    let wordcount = |token: &str, input: &std::path::Path, output: &std::path::Path| {
        tenant_cli(&cluster, token, &["submit", &show(&wasm), "-i", &show(input), "--output-dir", &show(output)])
    };
    let refused = |o: &std::process::Output, path: &std::path::Path, rule: &str| {
        let err = stderr(o);
        assert!(!o.status.success(), "{} was accepted: {err}", path.display());
        assert!(err.contains(&show(path)) && err.contains(rule), "the error names {} and {rule:?}: {err}", path.display());
    };

    // A's job under its root runs.
    let out_a = root_a.join("out");
    let o = wordcount(&a, &root_a.join("input"), &out_a);
    assert!(o.status.success(), "A's job under its root runs: {}", stderr(&o));
    let text = std::fs::read_to_string(out_a.join("part-0")).expect("A's output");
    assert!(text.contains('x') && text.contains('y'), "{text}");

    // Into B's root, or under DIR outside A's: refused at submission, nothing written.
    refused(&wordcount(&a, &root_b.join("input"), &root_a.join("out-1")), &root_b.join("input"), "outside the data roots");
    refused(&wordcount(&a, &root_a.join("input"), &root_b.join("out")), &root_b.join("out"), "outside the data roots");
    refused(&wordcount(&a, &dir.join("input"), &root_a.join("out-2")), &dir.join("input"), "outside the data roots");
    assert!(!root_b.join("out").exists() && !root_a.join("out-1").exists() && !root_a.join("out-2").exists(), "no output of a refused job");

    // A savepoint of A's job into B's root.
    let artifact = upload(&cluster, &a, "wordcount");
    let spec = json!({"artifact": artifact, "input": root_a.join("input"), "output": root_a.join("out-3")});
    let (status, job) = submit(&cluster, &a, spec);
    assert_eq!(status, 201, "{job}");
    let id = job["metadata"]["id"].as_str().expect("id");
    let sp = root_b.join("sp");
    let (status, answer) = call(&cluster, Some(&a), "POST", &format!("/api/v1/jobs/{id}/savepoints"), json!({"dir": sp}).to_string().as_bytes());
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(status, 400, "{answer}");
    assert!(message.contains(&show(&sp)) && message.contains("outside the data roots"), "{answer}");
    assert!(!sp.exists(), "no savepoint written into B's root");

    // A tenant without roots is told which command grants them.
    let o = wordcount(&c, &root_a.join("input"), &root_a.join("out-c"));
    refused(&o, &root_a.join("input"), "weir tenant roots c");
    // B, with its own root, reads its own data.
    let o = wordcount(&b, &root_b.join("input"), &root_b.join("out"));
    assert!(o.status.success(), "B's job under its root runs: {}", stderr(&o));
}
