//! A cluster that runs for months: its HTTP servers cannot be held by clients (idle
//! and slow-header connections are timed out, connections are capped within the
//! descriptor budget), its processes stop cleanly on SIGTERM, and what it keeps
//! (artifacts, compiled components, ended jobs' checkpoints, lost TaskManagers) is
//! bounded.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use weir_testkit::cluster::{identity, log_file};
use weir_testkit::{TestCluster, stderr, wait_until};

use crate::WEIR;

/// A REST client: every answer as (status, JSON). Generous timeouts: under load the
/// API may queue a request behind held connections, and must answer it.
pub(crate) struct Api {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Api {
    pub(crate) fn new(cluster: &TestCluster) -> Self {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(300))).build().into();
        Self { agent, base: cluster.rest.clone(), auth: format!("Bearer {}", cluster.token) }
    }

    fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        let mut r = r.expect("the api answers");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        Self::answer(self.agent.get(format!("{}{path}", self.base)).header("Authorization", &self.auth).call())
    }

    pub(crate) fn text(&self, path: &str) -> String {
        let mut r = self.agent.get(format!("{}{path}", self.base)).call().expect("the api answers");
        r.body_mut().read_to_string().expect("body")
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let req = self.agent.post(format!("{}{path}", self.base)).header("Authorization", &self.auth).header("Content-Type", "application/json");
        Self::answer(req.send(body.to_string()))
    }

    /// Uploads `bytes`; the answer.
    pub(crate) fn upload(&self, bytes: &[u8]) -> (u16, Value) {
        let req =
            self.agent.post(format!("{}/api/v1/artifacts", self.base)).header("Authorization", &self.auth).header("Content-Type", "application/wasm");
        Self::answer(req.send(bytes))
    }

    /// Uploads `bytes`; the artifact id.
    pub(crate) fn artifact(&self, bytes: &[u8]) -> String {
        let (status, a) = self.upload(bytes);
        assert_eq!(status, 201, "{a}");
        a["id"].as_str().expect("id").to_string()
    }

    /// Creates a job; its id.
    pub(crate) fn create(&self, spec: &Value) -> String {
        let (status, j) = self.post("/api/v1/jobs", spec);
        assert_eq!(status, 201, "{j}");
        j["metadata"]["id"].as_str().expect("id").to_string()
    }

    /// Waits until job `id` is in `state`; the job.
    pub(crate) fn wait_state(&self, id: &str, state: &str) -> Value {
        let mut last = Value::Null;
        wait_until(&format!("job {id} to be {state}"), || {
            let (status, j) = self.get(&format!("/api/v1/jobs/{id}"));
            assert_eq!(status, 200, "{j}");
            assert!(!(j["status"]["state"] == "FAILED" && state != "FAILED"), "job {id} failed: {j}");
            last = j;
            last["status"]["state"] == state
        });
        last
    }
}

/// `base` with a custom section appended: a valid component with another hash (and
/// `pad` more bytes).
pub(crate) fn variant(base: &[u8], tag: u32, pad: usize) -> Vec<u8> {
    let name = format!("weir-test-{tag}");
    let mut payload = leb(name.len() as u64);
    payload.extend_from_slice(name.as_bytes());
    payload.resize(payload.len() + pad, 0);
    let mut out = base.to_vec();
    out.push(0);
    out.extend(leb(payload.len() as u64));
    out.extend(payload);
    out
}

fn leb(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Connections that hold a server the way a careless or hostile client does: `idle`
/// ones that never send a byte and `slow` ones that trickle a request's headers, one
/// byte per 200 ms. Each one the server closes is opened again at once, so the
/// pressure holds until dropped; `closed` counts the server's closes.
struct Hold {
    stop: Arc<AtomicBool>,
    closed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hold {
    fn start(addr: &str, idle: usize, slow: usize) -> Self {
        let (stop, closed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (addr, stop2, closed2) = (addr.to_string(), stop.clone(), closed.clone());
        let thread = std::thread::spawn(move || {
            const HEAD: &[u8] = b"GET /api/v1/cluster HTTP/1.1\r\nHost: weir\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            let open = || loop {
                match TcpStream::connect(&addr) {
                    Ok(s) => {
                        s.set_nonblocking(true).expect("nonblocking");
                        return s;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            let mut conns: Vec<(TcpStream, bool, usize)> = (0..idle + slow).map(|i| (open(), i >= idle, 0)).collect();
            while !stop2.load(Ordering::Relaxed) {
                for (conn, slow, sent) in &mut conns {
                    let mut byte = [0u8; 1];
                    let gone = match conn.peek(&mut byte) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    };
                    let gone = gone || (*slow && conn.write_all(&HEAD[*sent % HEAD.len()..][..1]).is_err());
                    *sent += 1;
                    if gone {
                        closed2.fetch_add(1, Ordering::Relaxed);
                        *conn = open();
                        *sent = 0;
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self { stop, closed, thread: Some(thread) }
    }

    fn closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn held_connections_starve_neither_the_api_nor_checkpoints_of_a_jobmanager_with_256_descriptors() {
    let cluster = TestCluster::start_with_nofile(
        WEIR,
        &[("taskmanager-1", 2)],
        &["--checkpoint-dir", "{dir}/checkpoints", "--http-header-timeout-ms", "2000"],
        256,
    );
    let jm = cluster.pids()[0];
    let limits = std::fs::read_to_string(format!("/proc/{jm}/limits")).expect("limits");
    assert!(limits.lines().any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("256")), "{limits}");
    let api = Api::new(&cluster);
    let slow = api.artifact(&std::fs::read(WEIR.example("slow_map")).expect("example"));

    let hold = Hold::start(cluster.rest.trim_start_matches("http://"), 400, 200);
    // The server has taken connections up to its cap and timed some out.
    wait_until("the server to close held connections", || hold.closed() >= 100);
    let (status, c) = api.get("/api/v1/cluster");
    assert_eq!(status, 200, "the api answers while 600 connections are held: {c}");
    let job = api.create(&json!({"artifact": slow, "parallelism": 2, "args": {"n": "3000000", "work": "300"}, "checkpointIntervalMs": 100}));
    let done = api.wait_state(&job, "FINISHED");
    let (_, checkpoints) = api.get(&format!("/api/v1/jobs/{job}/checkpoints"));
    let completed = checkpoints["checkpoints"].as_array().expect("checkpoints").iter().filter(|c| c["status"] == "COMPLETED").count();
    assert!(completed >= 1 && checkpoints["lastCompleted"].as_u64() >= Some(1), "checkpoints completed under pressure: {checkpoints}\n{done}");
    assert!(open_files(jm) < 256, "the jobmanager stays within its descriptors");
    let closed = hold.closed();
    drop(hold);
    let log = cluster.log("jobmanager");
    assert!(!log.contains("Too many open files") && !log.to_lowercase().contains("checkpoint failed"), "{log}");
    eprintln!("held 400 idle + 200 slow-header connections; the server closed {closed}; {completed} checkpoints completed");
}

/// A TaskManager started without --state-dir, with the system temp directory at `tmp`.
fn taskmanager_in(cluster: &TestCluster, tmp: &Path, name: &str) -> Child {
    cluster
        .weir
        .command()
        .args(["taskmanager", "--jobmanager", &cluster.jm, "--slots", "1"])
        .args(identity(&cluster.creds, name))
        .env("TMPDIR", tmp)
        .env("WEIR_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file(cluster.dir.path(), name))
        .spawn()
        .expect("taskmanager starts")
}

fn state_dirs(tmp: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(tmp)
        .expect("tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("weir-state-"))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

#[allow(unsafe_code)]
fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: signals our own child, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

#[test]
fn a_taskmanager_stopped_by_sigterm_leaves_no_temporary_state_and_a_new_one_sweeps_those_of_killed_ones() {
    let cluster = TestCluster::start(WEIR, &[]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let registered = |n: u32| cluster.status().contains(&format!("free slots: {n}"));

    // A TaskManager that ran a job stops on SIGTERM and removes its state directory.
    let mut tm = taskmanager_in(&cluster, tmp.path(), "taskmanager-1");
    cluster.wait_until("the taskmanager to register", || registered(1));
    assert_eq!(state_dirs(tmp.path()).len(), 1, "its temporary state directory");
    let o = cluster.client(&["submit".as_ref(), WEIR.example("keyed_sum").as_os_str(), "--arg".as_ref(), "sink=discard".as_ref()]);
    assert!(o.status.success(), "{}", stderr(&o));
    signal(&tm, libc::SIGTERM);
    let status = tm.wait().expect("reap");
    assert!(status.success(), "a stop on SIGTERM is a clean exit: {status:?}\n{}", cluster.log("taskmanager-1"));
    assert_eq!(state_dirs(tmp.path()), Vec::<PathBuf>::new(), "{}", cluster.log("taskmanager-1"));
    // Its JobManager heard it go at once (a closed connection, not a heartbeat timeout).
    assert!(cluster.log("jobmanager").contains("taskmanager disconnected"), "{}", cluster.log("jobmanager"));

    // SIGKILL leaves its directory behind; the next TaskManager removes it.
    let mut killed = taskmanager_in(&cluster, tmp.path(), "taskmanager-1");
    cluster.wait_until("the taskmanager to register", || registered(1));
    killed.kill().expect("kill");
    killed.wait().expect("reap");
    let stale = state_dirs(tmp.path());
    assert_eq!(stale.len(), 1, "SIGKILL cannot clean up");
    let mut tm = taskmanager_in(&cluster, tmp.path(), "taskmanager-2");
    cluster.wait_until("the new taskmanager to sweep", || {
        cluster.log("taskmanager-2").contains("removed the state directory of a process that is gone")
    });
    cluster.wait_until("the new taskmanager to register", || cluster.log("jobmanager").matches("taskmanager registered").count() == 3);
    let now = state_dirs(tmp.path());
    assert_eq!(now.len(), 1, "the stale directory is gone, the new one is there: {now:?}");
    assert_ne!(now, stale);
    signal(&tm, libc::SIGINT);
    assert!(tm.wait().expect("reap").success());
    assert_eq!(state_dirs(tmp.path()), Vec::<PathBuf>::new());
}

#[test]
fn a_lost_taskmanager_is_dropped_from_taskmanagers_and_metrics_after_the_grace_period() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 1), ("taskmanager-2", 1)], &["--lost-taskmanager-grace-ms", "2000"]);
    let api = Api::new(&cluster);
    let listed = |api: &Api| -> Vec<(String, bool)> {
        let (_, t) = api.get("/api/v1/taskmanagers");
        t["taskmanagers"]
            .as_array()
            .expect("taskmanagers")
            .iter()
            .map(|t| (t["name"].as_str().unwrap_or("").to_string(), t["alive"] == true))
            .collect()
    };
    cluster.kill("taskmanager-2");
    // First it is listed as lost, in both places...
    cluster.wait_until("taskmanager-2 to be lost", || listed(&api).contains(&("taskmanager-2".into(), false)));
    let metrics = api.text("/metrics");
    assert!(metrics.contains("weir_jobmanager_taskmanagers{state=\"lost\"} 1"), "{metrics}");
    // ... then forgotten.
    cluster.wait_until("taskmanager-2 to be forgotten", || listed(&api) == vec![("taskmanager-1".to_string(), true)]);
    let metrics = api.text("/metrics");
    assert!(metrics.contains("weir_jobmanager_taskmanagers{state=\"lost\"} 0"), "{metrics}");
    assert!(metrics.contains("weir_jobmanager_taskmanagers{state=\"alive\"} 1"), "{metrics}");
    // It comes back as a new registration.
    cluster.start_taskmanager("taskmanager-2", 1);
    cluster.wait_until("taskmanager-2 to register again", || listed(&api).contains(&("taskmanager-2".into(), true)));
    assert_eq!(listed(&api).len(), 2);
}

/// Whether a job's checkpoint directory holds exactly one completed checkpoint (with
/// metadata) and nothing newer. Older directories may remain with only the state
/// files the kept checkpoint's incremental chain references.
fn kept(job_dir: &Path) -> bool {
    let ids: Vec<(u64, bool)> = std::fs::read_dir(job_dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let id = e.file_name().to_string_lossy().strip_prefix("chk-")?.parse().ok()?;
                    Some((id, e.path().join("_metadata").exists()))
                })
                .collect()
        })
        .unwrap_or_default();
    let complete: Vec<u64> = ids.iter().filter(|(_, c)| *c).map(|(id, _)| *id).collect();
    complete.len() == 1 && ids.iter().all(|(id, _)| *id <= complete[0])
}

#[test]
fn ended_jobs_keep_only_their_newest_checkpoint_and_only_the_newest_jobs_keep_one_savepoints_stay() {
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2)], &["--checkpoint-dir", "{dir}/checkpoints", "--retain-ended-jobs", "1"]);
    let api = Api::new(&cluster);
    let slow = api.artifact(&std::fs::read(WEIR.example("slow_map")).expect("example"));
    let root = cluster.dir.path().join("checkpoints");
    let spec = |n: &str| json!({"artifact": slow, "parallelism": 2, "args": {"n": n, "work": "300"}, "checkpointIntervalMs": 50});

    let first = api.create(&spec("1000000"));
    api.wait_state(&first, "FINISHED");
    cluster.wait_until("the finished job to keep only its newest checkpoint", || kept(&root.join(&first)));

    // A job stopped with a savepoint ends CANCELED: its savepoint stays, and the
    // first job, no longer among the newest 1, loses its checkpoints.
    let second = api.create(&spec("100000000000"));
    wait_until("a completed checkpoint", || api.get(&format!("/api/v1/jobs/{second}/checkpoints")).1["lastCompleted"].as_u64().is_some());
    let savepoint = cluster.dir.path().join("savepoint");
    let (status, done) = api.post(&format!("/api/v1/jobs/{second}/savepoints"), &json!({"dir": savepoint.display().to_string(), "stop": true}));
    assert_eq!(status, 200, "{done}");
    api.wait_state(&second, "TERMINATED");
    cluster.wait_until("the first job's checkpoints to go", || !root.join(&first).exists());
    cluster.wait_until("the cancelled job to keep only its newest checkpoint", || kept(&root.join(&second)));
    assert!(std::fs::read_dir(&savepoint).expect("the savepoint is kept").count() > 0);

    // The next ended job takes the cancelled one's place; the savepoint stays, and the
    // ended jobs stay queryable.
    let third = api.create(&spec("1000000"));
    api.wait_state(&third, "FINISHED");
    cluster.wait_until("the cancelled job's checkpoints to go", || !root.join(&second).exists());
    assert!(std::fs::read_dir(&savepoint).expect("the savepoint is kept").count() > 0);
    let (_, j) = api.get(&format!("/api/v1/jobs/{first}"));
    assert_eq!(j["status"]["state"], "FINISHED", "ended jobs stay queryable: {j}");
}

#[test]
fn uploads_past_the_artifact_store_cap_evict_the_least_recently_used() {
    let base = std::fs::read(WEIR.example("keyed_sum")).expect("example");
    // Three artifacts of a bit over 400 KiB each, against a store of 1 MiB.
    let pad = (400 << 10) - base.len().min(400 << 10) + 1000;
    let cluster = TestCluster::start_with(
        WEIR,
        &[("taskmanager-1", 1)],
        &["--artifact-dir", "{dir}/artifacts", "--artifact-store-mib", "1", "--max-component-size", "1000000"],
    );
    let api = Api::new(&cluster);
    let ids: Vec<String> = (0..3).map(|i| api.artifact(&variant(&base, i, pad))).collect();
    let (_, list) = api.get("/api/v1/artifacts");
    let listed: Vec<&str> = list["artifacts"].as_array().expect("artifacts").iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(listed, vec![ids[2].as_str(), ids[1].as_str()], "the oldest went: {list}");
    let (status, refused) = api.post("/api/v1/jobs", &json!({"artifact": ids[0], "args": {"n": "1000", "sink": "discard"}}));
    assert_eq!(status, 404, "{refused}");
    assert!(refused.to_string().contains("upload it first"), "{refused}");
    // Using the second makes the third the least recently used one.
    let job = api.create(&json!({"artifact": ids[1], "args": {"n": "1000", "sink": "discard"}}));
    api.wait_state(&job, "FINISHED");
    api.artifact(&variant(&base, 0, pad));
    let (_, list) = api.get("/api/v1/artifacts");
    let listed: Vec<&str> = list["artifacts"].as_array().expect("artifacts").iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(listed, vec![ids[0].as_str(), ids[1].as_str()], "{list}");
    let on_disk: u64 =
        std::fs::read_dir(cluster.dir.path().join("artifacts")).expect("store").flatten().map(|e| e.metadata().map_or(0, |m| m.len())).sum();
    assert!(on_disk <= 1 << 20, "{on_disk} bytes on disk");
}

#[test]
fn the_compiled_component_cache_stays_under_its_cap() {
    let cache = tempfile::tempdir().expect("tempdir");
    let inspect = |name: &str| {
        let o = WEIR
            .command()
            .env("WEIR_CACHE_DIR", cache.path())
            .env("WEIR_LOG", "weir_wasm=info")
            .args(["inspect".as_ref(), WEIR.example(name).as_os_str(), "--cache-max-mib".as_ref(), "1".as_ref()])
            .output()
            .expect("weir starts");
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let cached = || -> Vec<(String, u64)> {
        std::fs::read_dir(cache.path())
            .expect("cache")
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map_or(0, |m| m.len())))
            .collect()
    };
    let total = |files: &[(String, u64)]| files.iter().map(|(_, len)| len).sum::<u64>();
    let mut evicted = false;
    for name in ["wordcount", "keyed_sum", "slow_map", "window_count", "distinct_values"] {
        let log = inspect(name);
        assert!(log.contains("compiled the component"), "{log}");
        evicted |= log.contains("evicted a compiled component from the cache");
        let files = cached();
        assert!(total(&files) <= 1 << 20 || files.len() == 1, "over the cap: {files:?}");
    }
    assert!(evicted, "five compiled examples do not fit in 1 MiB: {:?}", cached());
    // The first one, least recently used, went; it compiles again.
    let log = inspect("wordcount");
    assert!(log.contains("compiled the component") && !log.contains("loaded the compiled component from the cache"), "{log}");
    assert!(total(&cached()) <= 1 << 20, "{:?}", cached());
}

#[test]
fn weir_run_and_the_jobmanager_stop_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut run = WEIR
        .command()
        .args(["run".as_ref(), WEIR.example("slow_map").as_os_str(), "-p".as_ref(), "2".as_ref()])
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir run starts");
    wait_until("the embedded cluster's state directory", || state_dirs(tmp.path()).len() == 1);
    signal(&run, libc::SIGTERM);
    let status = run.wait().expect("reap");
    let mut err = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().expect("stderr"), &mut err).expect("stderr");
    assert!(!status.success() && err.contains("SIGTERM: cancelling the job") && err.contains("cancel"), "{status:?} {err}");
    assert_eq!(state_dirs(tmp.path()), Vec::<PathBuf>::new(), "{err}");

    // A JobManager stops on SIGTERM with a clean exit, and its TaskManager waits for
    // the next one.
    let mut cluster = TestCluster::start(WEIR, &[("taskmanager-1", 1)]);
    cluster.signal("jobmanager", libc::SIGTERM);
    let status = cluster.procs.0[0].wait().expect("reap");
    assert!(status.success(), "{status:?}\n{}", cluster.log("jobmanager"));
    cluster.wait_until("the taskmanager to hear", || cluster.log("taskmanager-1").contains("lost the jobmanager"));
    assert!(cluster.procs.0[1].try_wait().expect("taskmanager").is_none(), "the taskmanager outlives its jobmanager");
    cluster.restart_jobmanager();
    cluster.wait_until("the taskmanager to register with the new jobmanager", || cluster.status().contains("free slots: 1"));
}
