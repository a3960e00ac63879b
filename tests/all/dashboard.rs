//! The web dashboard in a real browser: a real cluster runs a job submitted through the
//! REST API, and headless Chromium, driven over the DevTools protocol
//! (`weir_testkit::browser`), must show it: its row STARTED, its graph with the right
//! vertex boxes, and records/s that are positive and move. Screenshots land in
//! `$CARGO_TARGET_TMPDIR/screenshots/`.
//!
//! Chromium is required (`.ci/install-browser` installs it); without it this test fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_testkit::browser::{Browser, find_chromium};
use weir_testkit::{TestCluster, http};

use crate::WEIR;

fn screenshot_dir() -> PathBuf {
    WEIR.tmp_dir().join("screenshots")
}

/// A JSON API call; panics naming the call unless the status is `expect`.
fn api(cluster: &TestCluster, method: &str, path: &str, content_type: &str, body: &[u8], expect: u16) -> Value {
    let auth = format!("Bearer {}", cluster.token);
    let url = format!("{}{path}", cluster.rest);
    let (status, body) = http::request(method, &url, &[("Authorization", &auth), ("Content-Type", content_type)], body);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, expect, "{method} {path} answered {status}: {text}");
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
}

/// Common to every view: the connection indicator and the token dialog.
const CHROME: &str = "conn: document.querySelector('#conn')?.dataset.conn, connText: document.querySelector('#conn-text')?.textContent, \
    view: document.querySelector('#view')?.dataset.view, \
    tokenDialog: !document.querySelector('#token-dialog')?.classList.contains('hidden'), \
    tokenError: document.querySelector('#token-error')?.textContent";

/// A records/s text as the page shows it ("12,345"), as a number.
fn rate_of(text: &str) -> Option<f64> {
    text.replace(',', "").trim().parse().ok()
}

fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Every file under `host/api/ui/` is served, as it is in the repository: the page at
/// `/`, the rest at `/ui/PATH` (a module the server does not list breaks the page).
fn assert_ui_files_served(cluster: &TestCluster) {
    let ui = weir_testkit::root().join("host/api/ui");
    let mut dirs = vec![ui.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("ui directory") {
            let path = entry.expect("ui entry").path();
            let rel = path.strip_prefix(&ui).expect("under ui/").to_str().expect("UTF-8 path").to_string();
            if rel.rsplit('/').next().is_some_and(|name| name.starts_with('.')) {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let url = if rel == "index.html" { format!("{}/", cluster.rest) } else { format!("{}/ui/{rel}", cluster.rest) };
            let (status, body) = http::request("GET", &url, &[], b"");
            assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
            assert!(body == std::fs::read(&path).expect("ui file"), "GET {url} is not host/api/ui/{rel}");
        }
    }
}

#[test]
fn the_dashboard_shows_a_running_job_with_its_graph_and_moving_throughput() {
    // First, so a machine without a browser fails at once, saying so.
    let chromium = find_chromium();
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)]);
    assert_ui_files_served(&cluster);

    // Upload and submit through the REST API, as the dashboard's own form would.
    let wasm = std::fs::read(WEIR.example("slow_map")).expect("slow_map.wasm");
    let artifact = api(&cluster, "POST", "/api/v1/artifacts", "application/wasm", &wasm, 201);
    let artifact_id = artifact["id"].as_str().unwrap_or_else(|| panic!("artifact without an id: {artifact}")).to_string();
    let spec = json!({"artifact": artifact_id, "parallelism": 2, "args": {"work": "5000"}});
    let job = api(&cluster, "POST", "/api/v1/jobs", "application/json", spec.to_string().as_bytes(), 201);
    let job_id = job["metadata"]["id"].as_str().unwrap_or_else(|| panic!("job without metadata.id: {job}")).to_string();

    let mut browser = Browser::launch(&chromium, screenshot_dir());
    let base = cluster.rest.trim_end_matches('/').to_string();

    // Overview: the token from the fragment is taken, the cluster and the job are shown.
    browser.navigate(&format!("{base}/#token={}", percent_encode(&cluster.token)));
    let row = format!("[data-job=\"{job_id}\"]");
    browser.wait_for("the overview to show 2 TaskManagers and the running job", |b| {
        let s = b.snapshot(&format!(
            "{{{CHROME}, hash: location.hash, taskmanagers: document.querySelector('[data-stat=taskmanagers] .value')?.textContent, \
                 slots: document.querySelector('[data-stat=slots] .value')?.textContent, \
                 running: document.querySelector('[data-stat=running] .value')?.textContent, \
                 jobRowState: document.querySelector('#ov-running {row} .state')?.textContent}}"
        ));
        let ok = s["taskmanagers"] == "2"
            && s["running"].as_str().and_then(|r| r.parse::<u32>().ok()).is_some_and(|r| r >= 1)
            && s["jobRowState"] == "STARTED";
        if ok && s["hash"].as_str().is_some_and(|h| h.contains("token=")) {
            return Err(format!("the token stayed in the address bar: {s}"));
        }
        if ok { Ok(()) } else { Err(s.to_string()) }
    });
    browser.screenshot("dashboard-overview.png");

    // Jobs list: the job's row says STARTED (the engine: RUNNING).
    browser.navigate(&format!("{base}/#/jobs"));
    browser.wait_for("the job's row to say STARTED and RUNNING", |b| {
        let s = b.snapshot(
            &format!(
                "{{{CHROME}, rows: [...document.querySelectorAll('#jobs-list tr[data-job]')].map(r => ({{id: r.dataset.job, state: r.querySelector('.state')?.textContent, \
                 engine: r.querySelector('.engine')?.textContent}})), mine: {{state: document.querySelector('#jobs-list {row} .state')?.textContent, \
                 engine: document.querySelector('#jobs-list {row} .engine')?.textContent}}}}"
            ),
        );
        if s["mine"]["state"] == "STARTED" && s["mine"]["engine"] == "RUNNING" { Ok(()) } else { Err(s.to_string()) }
    });
    browser.screenshot("dashboard-jobs.png");

    // Job view: slow_map is a generator, rebalanced to the slow map chained with its
    // discard sink: two vertex boxes and one REBALANCE edge.
    browser.navigate(&format!("{base}/#/jobs/{job_id}"));
    let read_graph = |b: &mut Browser| {
        b.snapshot(
            &format!(
                "{{{CHROME}, state: document.querySelector('#job-state .state')?.textContent, \
                 vertices: [...document.querySelectorAll('#graph svg .vertex')].map(g => ({{id: g.dataset.vertex, name: g.querySelector('.vname')?.textContent, \
                 rate: g.querySelector('.rate')?.textContent, level: g.dataset.level}})), \
                 edges: [...document.querySelectorAll('#graph svg .edge')].map(e => e.dataset.partitioning), \
                 graph: document.querySelector('#graph')?.textContent.slice(0, 200)}}"
            ),
        )
    };
    let first = browser.wait_for("the job graph: 2 vertex boxes with positive records/s", |b| {
        let s = read_graph(b);
        let vs = s["vertices"].as_array().cloned().unwrap_or_default();
        let positive = vs.iter().all(|v| v["rate"].as_str().and_then(rate_of).is_some_and(|r| r > 0.0));
        if s["state"] == "STARTED" && vs.len() == 2 && positive { Ok(s) } else { Err(s.to_string()) }
    });
    assert_eq!(first["edges"], json!(["REBALANCE"]), "the job graph's edges: {first}");
    let names: Vec<&str> = first["vertices"].as_array().expect("vertices").iter().filter_map(|v| v["name"].as_str()).collect();
    assert!(names.iter().any(|n| n.starts_with("numbers")) && names.iter().any(|n| n.contains("slow")), "vertex names: {names:?}; the page: {first}");

    // Live fuel of the running job (all attempts), from the heartbeats.
    browser.wait_for("the job's fuel, live", |b| {
        let s = b.snapshot(&format!(
            "{{{CHROME}, fuel: document.querySelector('#f-fuel')?.dataset.fuel, text: document.querySelector('#f-fuel')?.textContent}}"
        ));
        let fuel = s["fuel"].as_str().and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        if fuel > 0 && s["text"].as_str().is_some_and(|t| t != "–") { Ok(()) } else { Err(s.to_string()) }
    });

    // Moving throughput: every vertex's records/s text changes between reads a second
    // or more apart, and stays positive.
    let t0 = Instant::now();
    let before: Vec<(String, String)> = first["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .map(|v| (v["id"].as_str().unwrap_or("").to_string(), v["rate"].as_str().unwrap_or("").to_string()))
        .collect();
    let mut moved = std::collections::BTreeSet::new();
    browser.wait_for("every vertex's records/s to change while staying positive", |b| {
        let s = read_graph(b);
        let now = s["vertices"].as_array().cloned().unwrap_or_default();
        for v in &now {
            let (id, rate) = (v["id"].as_str().unwrap_or(""), v["rate"].as_str().unwrap_or(""));
            if !rate_of(rate).is_some_and(|r| r > 0.0) {
                return Err(format!("vertex {id} shows records/s {rate:?} (not a positive number): {s}"));
            }
            if t0.elapsed() >= Duration::from_secs(1) && before.iter().any(|(i, r)| i == id && r != rate) {
                moved.insert(id.to_string());
            }
        }
        if moved.len() == before.len() {
            Ok(())
        } else {
            Err(format!("first read {before:?}, {:?} later {s}; moved so far: {moved:?}", t0.elapsed()))
        }
    });
    browser.screenshot("dashboard-job.png");

    // TaskManagers: both listed, alive.
    browser.navigate(&format!("{base}/#/taskmanagers"));
    browser.wait_for("both TaskManagers listed alive", |b| {
        let s = b.snapshot(&format!(
            "{{{CHROME}, alive: document.querySelector('[data-stat=alive] .value')?.textContent, \
             rows: [...document.querySelectorAll('#tm-list tr[data-taskmanager]')].map(r => r.dataset.taskmanager + ' ' + r.querySelector('.pill')?.textContent)}}"
        ));
        if s["alive"] == "2" && s["rows"].as_array().is_some_and(|r| r.len() == 2 && r.iter().all(|r| r.as_str().is_some_and(|r| r.ends_with(" ALIVE"))))
        {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    browser.screenshot("dashboard-taskmanagers.png");

    // A job wider than the free slots waits, and its view says why.
    let spec = json!({"artifact": artifact_id, "parallelism": 5});
    let wide = api(&cluster, "POST", "/api/v1/jobs", "application/json", spec.to_string().as_bytes(), 201);
    let wide_id = wide["metadata"]["id"].as_str().unwrap_or_else(|| panic!("job without metadata.id: {wide}")).to_string();
    browser.navigate(&format!("{base}/#/jobs/{wide_id}"));
    browser.wait_for("the waiting job's view to say why it waits", |b| {
        let s = b.snapshot(&format!(
            "{{{CHROME}, state: document.querySelector('#job-state .state')?.textContent, waiting: document.querySelector('#job-waiting')?.textContent}}"
        ));
        if s["state"] == "STARTING" && s["waiting"].as_str().is_some_and(|w| w.contains("the job needs 5 slots but only")) { Ok(()) } else { Err(s.to_string()) }
    });
    api(&cluster, "POST", &format!("/api/v1/jobs/{wide_id}/cancel"), "application/json", b"{}", 202);

    // Event time: a windowed job's graph shows each vertex's watermark, and its
    // subtasks table each subtask's.
    let wasm = std::fs::read(WEIR.example("window_count")).expect("window_count.wasm");
    let artifact = api(&cluster, "POST", "/api/v1/artifacts", "application/wasm", &wasm, 201);
    let artifact_id = artifact["id"].as_str().unwrap_or_else(|| panic!("artifact without an id: {artifact}")).to_string();
    let args = json!({"n": "100000000", "keys": "50", "records-per-ms": "20", "work": "2000"});
    let spec = json!({"artifact": artifact_id, "parallelism": 1, "args": args});
    let windows = api(&cluster, "POST", "/api/v1/jobs", "application/json", spec.to_string().as_bytes(), 201);
    let windows_id = windows["metadata"]["id"].as_str().unwrap_or_else(|| panic!("job without metadata.id: {windows}")).to_string();
    browser.navigate(&format!("{base}/#/jobs/{windows_id}"));
    browser.wait_for("the window vertex and its subtask to show a watermark", |b| {
        let s = b.snapshot(&format!(
            "{{{CHROME}, vertices: [...document.querySelectorAll('#graph svg .vertex')].map(g => ({{name: g.querySelector('.vname')?.textContent, \
             watermark: g.dataset.watermark, text: g.querySelector('.wmtext')?.textContent}})), \
             cells: [...document.querySelectorAll('#subtasks td.wm')].map(td => td.textContent)}}"
        ));
        let vs = s["vertices"].as_array().cloned().unwrap_or_default();
        let window = vs.iter().find(|v| v["name"].as_str().is_some_and(|n| n.starts_with("count")));
        let shown = window.is_some_and(|v| {
            v["watermark"].as_str().and_then(|w| w.parse::<i64>().ok()).is_some_and(|w| w >= 0)
                && v["text"].as_str().is_some_and(|t| t.starts_with("watermark ") && t.ends_with(" ms"))
        });
        let cells = s["cells"].as_array().cloned().unwrap_or_default();
        let in_table = !cells.is_empty() && cells.iter().all(|c| c.as_str().is_some_and(|c| c.ends_with(" ms")));
        if shown && in_table { Ok(()) } else { Err(s.to_string()) }
    });
    browser.screenshot("dashboard-watermarks.png");
    api(&cluster, "POST", &format!("/api/v1/jobs/{windows_id}/cancel"), "application/json", b"{}", 202);

    // Streams that meet: a connect's vertex is drawn with an edge into each of its two
    // inputs, and counts its records in per input.
    let wasm = std::fs::read(WEIR.example("enrich_clicks")).expect("enrich_clicks.wasm");
    let artifact = api(&cluster, "POST", "/api/v1/artifacts", "application/wasm", &wasm, 201);
    let enrich_artifact = artifact["id"].as_str().unwrap_or_else(|| panic!("artifact without an id: {artifact}")).to_string();
    let args = json!({"profiles": "100000000", "clicks": "100000000", "profile-rate": "50", "work": "2000"});
    let spec = json!({"artifact": enrich_artifact, "parallelism": 1, "args": args});
    let enrich = api(&cluster, "POST", "/api/v1/jobs", "application/json", spec.to_string().as_bytes(), 201);
    let enrich_id = enrich["metadata"]["id"].as_str().unwrap_or_else(|| panic!("job without metadata.id: {enrich}")).to_string();
    browser.navigate(&format!("{base}/#/jobs/{enrich_id}"));
    browser.wait_for("the connect's vertex with both input edges and records in per input", |b| {
        let s = b.snapshot(&format!(
            "{{{CHROME}, vertices: [...document.querySelectorAll('#graph svg .vertex')].map(g => ({{id: g.dataset.vertex,              name: g.querySelector('.vname')?.textContent, byInput: g.dataset.recordsInByInput, totals: g.querySelector('.vtotals')?.textContent}})),              edges: [...document.querySelectorAll('#graph svg .edge')].map(e => ({{edge: e.dataset.edge, input: e.dataset.input, label: e.textContent.trim()}})),              cells: [...document.querySelectorAll('#subtasks td[data-by-input]')].map(td => td.dataset.byInput).filter(Boolean)}}"
        ));
        let vs = s["vertices"].as_array().cloned().unwrap_or_default();
        let Some(connect) = vs.iter().find(|v| v["name"].as_str().is_some_and(|n| n.starts_with("enrich"))) else { return Err(s.to_string()) };
        let counts: Vec<u64> = connect["byInput"].as_str().and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default();
        let id = connect["id"].as_str().unwrap_or("");
        let edges = s["edges"].as_array().cloned().unwrap_or_default();
        let mut inputs: Vec<String> = edges
            .iter()
            .filter(|e| e["edge"].as_str().is_some_and(|x| x.ends_with(&format!("-{id}"))))
            .map(|e| format!("{} {}", e["input"].as_str().unwrap_or(""), e["label"].as_str().unwrap_or("")))
            .collect();
        inputs.sort();
        // Each input's edge is labelled with the input, and its records in under it.
        let drawn = inputs.len() == 2 && inputs[0].starts_with("0 key-by → in 1") && inputs[1].starts_with("1 key-by → in 2") && inputs.iter().all(|l| l.ends_with(" in"));
        let counted = counts.len() == 2 && counts.iter().all(|&n| n > 0) && connect["totals"].as_str().is_some_and(|t| t.starts_with("in "));
        let in_table = s["cells"].as_array().is_some_and(|c| c.iter().any(|c| c.as_str().is_some_and(|c| c.contains(','))));
        if drawn && counted && in_table { Ok(()) } else { Err(format!("edges into it {inputs:?}: {s}")) }
    });
    browser.screenshot("dashboard-connect.png");
    // And Prometheus has them, per input.
    let (status, text) = http::request("GET", &format!("{base}/metrics"), &[], b"");
    let text = String::from_utf8_lossy(&text);
    assert_eq!(status, 200, "{text}");
    for input in ["1", "2"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("weir_vertex_input_records_in_total{") && l.contains(&enrich_id) && l.contains(&format!("input=\"{input}\""))),
            "no records in through input {input} of the connect: {text}"
        );
    }
    api(&cluster, "POST", &format!("/api/v1/jobs/{enrich_id}/cancel"), "application/json", b"{}", 202);

    // Submit: the form offers the uploaded artifact.
    browser.navigate(&format!("{base}/#/submit"));
    browser.wait_for("the submit form offering the uploaded artifact", |b| {
        let s = b.snapshot(&format!(
            "{{{CHROME}, form: !!document.querySelector('#submit-form'), \
             artifacts: [...document.querySelectorAll('#submit-artifact option')].map(o => o.value).filter(Boolean)}}"
        ));
        let offered = s["artifacts"].as_array().is_some_and(|a| a.iter().any(|a| a == artifact_id.as_str()));
        if s["view"] == "submit" && s["form"] == true && offered { Ok(()) } else { Err(s.to_string()) }
    });

    // A wrong token: the API's 401 brings up the token form with the server's message.
    browser.navigate(&format!("{base}/#/overview&token=not-the-token"));
    browser.wait_for("the token form with the 401 message", |b| {
        let s = b.snapshot(&format!("{{{CHROME}}}"));
        if s["tokenDialog"] == true && s["tokenError"].as_str().is_some_and(|e| !e.is_empty()) { Ok(()) } else { Err(s.to_string()) }
    });
    browser.screenshot("dashboard-token.png");
    drop(browser);
    assert!(Path::new(&screenshot_dir()).join("dashboard-job.png").exists());
}

/// Connectors on the dashboard: a Kafka source's consumer lag per vertex and per
/// subtask (and in the JobManager's `/metrics` and REST metrics), and a PostgreSQL sink's
/// password, read from a file on the TaskManager, nowhere: not in the page, not in any
/// answer of the API the page calls.
#[test]
fn the_dashboard_shows_kafka_lag_and_never_a_connector_secret() {
    let chromium = find_chromium();
    let kafka = weir_testkit::kafka::Kafka::start();
    kafka.create_topic("events", 4);
    let records: Vec<_> = (0..4000u32).map(|i| ((i % 4) as i32, Vec::new(), format!("key-{}", i % 40).into_bytes(), i64::from(i))).collect();
    kafka.produce("events", &records);
    let pg = weir_testkit::Postgres::start();
    pg.psql("CREATE TABLE sums (k bigint PRIMARY KEY, v bigint NOT NULL)");
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 4)], &["--checkpoint-dir", "{dir}/checkpoints"]);

    let submit = |example: &str, args: Value| -> String {
        let wasm = std::fs::read(WEIR.example(example)).unwrap_or_else(|e| panic!("{example}.wasm: {e}"));
        let artifact = api(&cluster, "POST", "/api/v1/artifacts", "application/wasm", &wasm, 201);
        let artifact = artifact["id"].as_str().unwrap_or_else(|| panic!("artifact without an id: {artifact}")).to_string();
        let spec = json!({"artifact": artifact, "parallelism": 2, "args": args, "checkpointIntervalMs": 300});
        let job = api(&cluster, "POST", "/api/v1/jobs", "application/json", spec.to_string().as_bytes(), 201);
        job["metadata"]["id"].as_str().unwrap_or_else(|| panic!("job without metadata.id: {job}")).to_string()
    };
    let kafka_job = submit("kafka_counts", json!({"bootstrap-servers": kafka.bootstrap(), "topic": "events", "group-id": "dash"}));
    let pw_file = pg.dir().join("pw");
    let pg_job = submit(
        "keyed_sum",
        json!({"n": "100000000", "work": "4000", "sink": "postgres", "pg-port": pg.port().to_string(), "pg-password-file": pw_file.display().to_string()}),
    );

    // The REST metrics: the source vertex sums its partitions' lag, each subtask lists
    // the partitions it reads; all 4 read to the end.
    let read_lag = || api(&cluster, "GET", &format!("/api/v1/jobs/{kafka_job}/metrics"), "application/json", b"", 200);
    let mut last = Value::Null;
    weir_testkit::wait_until("the kafka source's 4 partitions read to the end (lag 0)", || {
        last = read_lag();
        let Some(source) = last["vertices"].as_array().and_then(|vs| vs.iter().find(|v| v["sourceLag"].is_i64())) else { return false };
        let partitions: Vec<i64> = source["subtasks"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["sourceLag"].as_array().cloned().unwrap_or_default())
            .filter_map(|l| l["partition"].as_i64().filter(|_| l["topic"] == "events" && l["records"] == 0))
            .collect();
        source["sourceLag"] == 0 && partitions.len() == 4
    });
    let others = last["vertices"].as_array().map_or(0, |vs| vs.iter().filter(|v| v["sourceLag"].is_null()).count());
    assert!(others >= 1, "vertices that read no Kafka have no lag: {last}");
    // More records: the lag is what is not read yet, and goes back to 0.
    let more: Vec<_> = (4000..6000u32).map(|i| ((i % 4) as i32, Vec::new(), format!("key-{}", i % 40).into_bytes(), i64::from(i))).collect();
    kafka.produce("events", &more);
    let base = cluster.rest.trim_end_matches('/').to_string();
    let (status, text) = http::request("GET", &format!("{base}/metrics"), &[], b"");
    let text = String::from_utf8_lossy(&text);
    assert_eq!(status, 200, "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("weir_job_kafka_lag_records{") && l.contains(&kafka_job)).collect();
    assert_eq!(lines.len(), 4, "a line per partition: {lines:?}");
    for p in 0..4 {
        assert!(lines.iter().any(|l| l.contains(&format!("partition=\"{p}\"")) && l.contains("topic=\"events\"")), "partition {p}: {lines:?}");
    }

    let mut browser = Browser::launch(&chromium, screenshot_dir());
    browser.navigate(&format!("{base}/#token={}", percent_encode(&cluster.token)));
    browser.wait_for("the dashboard to take the token", |b| {
        let s = b.snapshot(&format!("{{{CHROME}}}"));
        if s["conn"] == "live" { Ok(()) } else { Err(s.to_string()) }
    });
    browser.navigate(&format!("{base}/#/jobs/{kafka_job}"));
    browser.wait_for("the source vertex with its lag, and a lag per subtask", |b| {
        let s = b.snapshot(&format!(
            "{{{CHROME}, vertices: [...document.querySelectorAll('#graph svg .vertex')].map(g => ({{lag: g.dataset.lag, totals: g.querySelector('.vtotals')?.textContent}})), \
             cells: [...document.querySelectorAll('#subtasks td.lag')].map(td => ({{text: td.textContent, title: td.title}}))}}"
        ));
        let vs = s["vertices"].as_array().cloned().unwrap_or_default();
        let source = vs.iter().filter(|v| v["lag"].as_str().is_some_and(|l| l.parse::<i64>().is_ok())).count();
        let shown = vs.iter().any(|v| v["totals"].as_str().is_some_and(|t| t.contains(" · lag ")));
        let cells = s["cells"].as_array().cloned().unwrap_or_default();
        let partitions: usize = cells.iter().map(|c| c["title"].as_str().map_or(0, |t| t.lines().filter(|l| l.starts_with("events/")).count())).sum();
        if source == 1 && shown && partitions == 4 { Ok(()) } else { Err(s.to_string()) }
    });
    browser.screenshot("dashboard-kafka-lag.png");

    // The PostgreSQL job's pages and every API answer they are built from.
    weir_testkit::wait_until("the postgres job to write rows", || pg.psql("SELECT count(*) FROM sums").trim().parse::<u64>().is_ok_and(|n| n > 0));
    for view in [format!("#/jobs/{pg_job}"), "#/jobs".to_string(), "#/".to_string()] {
        browser.navigate(&format!("{base}/{view}"));
        let page = browser.wait_for("the view to render", |b| {
            let s = b.snapshot(&format!("{{{CHROME}, html: document.documentElement.outerHTML}}"));
            if s["view"].is_string() { Ok(s["html"].as_str().unwrap_or_default().to_string()) } else { Err(s.to_string()) }
        });
        assert!(!page.contains(weir_testkit::Postgres::PASSWORD), "the password is on the dashboard at {view}");
    }
    for path in [
        format!("/api/v1/jobs/{pg_job}"),
        format!("/api/v1/jobs/{pg_job}/metrics"),
        format!("/api/v1/jobs/{pg_job}/checkpoints"),
        "/api/v1/jobs".into(),
    ] {
        let doc = api(&cluster, "GET", &path, "application/json", b"", 200).to_string();
        assert!(!doc.contains(weir_testkit::Postgres::PASSWORD), "GET {path} shows the password: {doc}");
    }
    let auth = format!("Bearer {}", cluster.token);
    let (status, logs) = http::request("GET", &format!("{base}/api/v1/jobs/{pg_job}/logs"), &[("Authorization", &auth)], b"");
    assert_eq!(status, 200);
    assert!(!String::from_utf8_lossy(&logs).contains(weir_testkit::Postgres::PASSWORD), "the job's logs show the password");
    assert!(!text.contains(weir_testkit::Postgres::PASSWORD), "/metrics shows the password");
    for job in [&kafka_job, &pg_job] {
        api(&cluster, "POST", &format!("/api/v1/jobs/{job}/cancel"), "application/json", b"{}", 202);
    }
}

/// The Deployments view lists a Deployment with its state and running Job, its page
/// shows the spec version and the Jobs it created, and the Job's page links back.
#[test]
fn the_dashboard_shows_a_deployment_its_jobs_and_the_link_back() {
    let chromium = find_chromium();
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let wasm = std::fs::read(WEIR.example("keyed_sum")).expect("keyed_sum.wasm");
    let artifact = api(&cluster, "POST", "/api/v1/artifacts", "application/wasm", &wasm, 201);
    let spec = json!({
        "name": "sums",
        "savepointDir": cluster.dir.path().join("savepoints").display().to_string(),
        "template": {"artifact": artifact["id"], "parallelism": 2, "args": {"n": "100000000", "work": "4000"}, "checkpointIntervalMs": 300},
    });
    api(&cluster, "POST", "/api/v1/deployments", "application/json", spec.to_string().as_bytes(), 201);
    let mut job = String::new();
    weir_testkit::wait_until("the deployment's job", || {
        let d = api(&cluster, "GET", "/api/v1/deployments/sums", "application/json", b"", 200);
        job = d["status"]["running"]["jobId"].as_str().unwrap_or_default().to_string();
        !job.is_empty()
    });

    let mut browser = Browser::launch(&chromium, screenshot_dir());
    let base = cluster.rest.trim_end_matches('/').to_string();
    browser.navigate(&format!("{base}/#token={}", percent_encode(&cluster.token)));
    browser.wait_for("the dashboard to connect with the token", |b| {
        let s = b.snapshot(&format!("{{{CHROME}}}"));
        if s["conn"] == "live" { Ok(()) } else { Err(s.to_string()) }
    });
    browser.navigate(&format!("{base}/#/deployments"));
    browser.wait_for("the deployments list to show sums RUNNING with its job", |b| {
        let s = b.snapshot(&format!(
            "{{{CHROME}, state: document.querySelector('[data-deployment=sums] .state')?.textContent, \
             running: document.querySelector('[data-deployment=sums] a.mono')?.textContent}}"
        ));
        if s["state"] == "RUNNING" && s["running"] == job.as_str() { Ok(()) } else { Err(s.to_string()) }
    });
    browser.screenshot("dashboard-deployments.png");
    browser.navigate(&format!("{base}/#/deployments/sums"));
    browser.wait_for("the deployment's page: version 1 and its job", |b| {
        let s = b.snapshot(&format!(
            "{{{CHROME}, version: document.querySelector('#d-version')?.textContent, \
             jobs: [...document.querySelectorAll('#d-jobs tr[data-job]')].map(r => r.dataset.job), \
             resume: document.querySelector('#d-resume')?.disabled}}"
        ));
        if s["version"] == "v1" && s["jobs"] == json!([job]) && s["resume"] == true { Ok(()) } else { Err(s.to_string()) }
    });
    browser.navigate(&format!("{base}/#/jobs/{job}"));
    browser.wait_for("the job's page to link to its deployment", |b| {
        let s = b.snapshot(&format!(
            "{{{CHROME}, text: document.querySelector('#f-deployment')?.textContent, \
             href: document.querySelector('#f-deployment a')?.getAttribute('href')}}"
        ));
        if s["text"] == "sums v1" && s["href"] == "#/deployments/sums" { Ok(()) } else { Err(s.to_string()) }
    });
    browser.screenshot("dashboard-job-deployment.png");
}
