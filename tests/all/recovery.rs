//! Exactly-once under crashes: checkpoints, restarts from the latest checkpoint, and a
//! transactional file sink, on a real cluster whose TaskManagers are SIGKILLed.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;

use weir_testkit::{TestCluster, splitmix64, stderr, wait_until};

use crate::WEIR;

/// The job's line in `weir status`.
fn job_line(status: &str, job: &str) -> String {
    status.lines().find(|l| l.starts_with(&format!("job {job} "))).unwrap_or_default().to_string()
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(name))
}

/// Committed output lines of a checkpointed file sink: every `part-*` file.
pub(crate) fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let entry = entry.expect("entry");
        if entry.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(std::fs::read_to_string(entry.path()).expect("read part").lines().map(str::to_string));
        }
    }
    lines
}

/// Submits keyed_sum over `n` numbers at parallelism 2 with checkpoints every 300 ms,
/// detached; its id.
/// `work` rounds of busy work per record keep the job running long enough to crash it.
fn submit_keyed_sum(cluster: &TestCluster, n: u64, work: u32, output: &Path, restart: &str) -> String {
    let wasm = WEIR.example("keyed_sum");
    let (n, work) = (format!("n={n}"), format!("work={work}"));
    let args =
        ["submit", "-p", "2", "--arg", &n, "--arg", &work, "--arg", "sink=file", "--checkpoint-interval", "300", "--restart", restart, "--detach"];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.extend([wasm.as_os_str(), OsStr::new("--output-dir"), output.as_os_str()]);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string()
}

/// Exactly once: one committed output line per input record, each key's last sum exact.
pub(crate) fn assert_exactly_once(output: &Path, n: u64) {
    let lines = committed_lines(output);
    let mut expected: HashMap<u64, u64> = HashMap::new();
    for i in 0..n {
        *expected.entry(splitmix64(i) % 100_000).or_default() += i;
    }
    let mut last: HashMap<u64, u64> = HashMap::new();
    for l in &lines {
        let (k, v) = l.split_once('\t').expect("key<TAB>value");
        let (k, v): (u64, u64) = (k.parse().expect("key"), v.parse().expect("sum"));
        let e = last.entry(k).or_default();
        *e = (*e).max(v);
    }
    assert_eq!(last, expected, "final per-key sums");
    assert_eq!(lines.len() as u64, n, "nothing lost, nothing written twice");
}

fn wait_finished(cluster: &TestCluster, job: &str) {
    wait_until("the job to finish", || {
        let line = job_line(&cluster.status(), job);
        assert!(!line.contains(" FAILED "), "{line}\n{}", cluster.log("jobmanager"));
        line.contains(" FINISHED ")
    });
}

/// Completed checkpoint ids of a job, ascending.
fn completed_checkpoints(root: &Path, job: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(root.join(job))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("_metadata").exists())
        .filter_map(|e| e.file_name().to_string_lossy().strip_prefix("chk-").and_then(|i| i.parse().ok()))
        .collect();
    ids.sort_unstable();
    ids
}

/// `GET` on the cluster's REST API (with its token): status and body.
fn api_get(cluster: &TestCluster, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent.get(format!("{}{path}", cluster.rest)).header("Authorization", &format!("Bearer {}", cluster.token)).call().expect("request");
    (r.status().as_u16(), r.body_mut().read_to_string().expect("body"))
}

/// Every committed file of a file sink with its content.
fn committed_files(dir: &Path) -> HashMap<String, String> {
    std::fs::read_dir(dir)
        .expect("output dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).expect("read part")))
        .collect()
}

/// Every file in `before` is still there, unchanged.
fn assert_kept(output: &Path, before: &HashMap<String, String>) {
    let now = committed_files(output);
    for (name, content) in before {
        assert!(now.get(name) == Some(content), "committed file {name} was deleted or rewritten");
    }
}

/// At-least-once with exact results: the final per-key sums are exact, and each key
/// has at least one line per record of it (the gap's records may reach a key in
/// another order when replayed, so its running sums there need not repeat the first
/// ones). Returns how many lines were written more than once.
fn assert_at_least_once(output: &Path, n: u64) -> usize {
    let lines = committed_lines(output);
    let mut expected: HashMap<u64, (u64, usize)> = HashMap::new();
    for i in 0..n {
        let e = expected.entry(splitmix64(i) % 100_000).or_default();
        (e.0, e.1) = (e.0 + i, e.1 + 1);
    }
    let mut seen: HashMap<u64, (u64, usize)> = HashMap::new();
    for l in &lines {
        let (k, v) = l.split_once('\t').expect("key<TAB>value");
        let (k, v): (u64, u64) = (k.parse().expect("key"), v.parse().expect("sum"));
        let e = seen.entry(k).or_default();
        (e.0, e.1) = (e.0.max(v), e.1 + 1);
    }
    assert_eq!(seen.len(), expected.len(), "every key");
    for (k, (sum, count)) in &expected {
        let (s, c) = seen.get(k).copied().unwrap_or_default();
        assert_eq!(s, *sum, "final sum of key {k}");
        assert!(c >= *count, "key {k}: {c} lines for {count} records");
    }
    lines.len() - n as usize
}

/// A fallback past a corrupted checkpoint: the previous one is restored, the
/// checkpoint skipped is a job event (naming the file) and a metric, and the output
/// the skipped checkpoint committed stays (the gap is written again: at-least-once).
#[test]
fn a_corrupted_checkpoint_is_skipped_visibly_and_its_committed_output_stays() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let n: u64 = 1_500_000;
    let output = cluster.dir.path().join("out");
    let job = submit_keyed_sum(&cluster, n, 4000, &output, "fixed-delay:5:2000");
    let root = cluster.dir.path().join("checkpoints");
    wait_until("two completed checkpoints", || completed_checkpoints(&root, &job).len() >= 2);
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    // While the job waits out its restart delay no checkpoint completes: damage the newest.
    wait_until("the job to wait for its restart", || {
        let line = job_line(&cluster.status(), &job);
        assert!(!line.contains(" FINISHED ") && !line.contains(" FAILED "), "the job must outlive the crash: {line}");
        line.contains(" RESTARTING ")
    });
    let before = committed_files(&output);
    let ids = completed_checkpoints(&root, &job);
    let (newest, previous) = (ids[ids.len() - 1], ids[ids.len() - 2]);
    let dir = root.join(&job).join(format!("chk-{newest}"));
    let state = std::fs::read_dir(&dir)
        .expect("checkpoint dir")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".state"))
        .expect("a state file");
    let mut bytes = std::fs::read(state.path()).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(state.path(), bytes).expect("corrupt");

    wait_finished(&cluster, &job);
    let log = cluster.log("jobmanager");
    assert!(log.contains(&format!("restoring checkpoint {job}/chk-{previous}/_metadata")), "restored from the previous checkpoint: {log}");
    let (code, events) = api_get(&cluster, &format!("/api/v1/jobs/{job}/logs"));
    assert_eq!(code, 200, "{events}");
    let damaged = state.file_name().to_string_lossy().into_owned();
    assert!(events.contains(&format!("checkpoint {newest} cannot be restored")) && events.contains(&damaged), "the skip is a job event: {events}");
    assert!(events.contains("at-least-once"), "the gap is a job event: {events}");
    let (_, metrics) = api_get(&cluster, "/metrics");
    assert!(metrics.lines().any(|l| l == "weir_jobmanager_checkpoints_skipped_total 1"), "{metrics}");
    assert_kept(&output, &before);
    let duplicates = assert_at_least_once(&output, n);
    eprintln!("{duplicates} lines of the gap written twice");
}

/// Every completed checkpoint is corrupt when the job restarts: it does not start from
/// nothing on its own (that would replay the whole input into committed output); the
/// restart fails, the strategy gives up, and every committed file stays.
#[test]
fn a_job_whose_checkpoints_are_all_corrupt_fails_instead_of_starting_over() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let output = cluster.dir.path().join("out");
    let job = submit_keyed_sum(&cluster, 1_500_000, 4000, &output, "fixed-delay:1:2000");
    let root = cluster.dir.path().join("checkpoints");
    wait_until("two completed checkpoints", || completed_checkpoints(&root, &job).len() >= 2);
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_until("the job to wait for its restart", || job_line(&cluster.status(), &job).contains(" RESTARTING "));
    let before = committed_files(&output);
    let ids = completed_checkpoints(&root, &job);
    for id in &ids {
        let meta = root.join(&job).join(format!("chk-{id}/_metadata"));
        let mut bytes = std::fs::read(&meta).expect("read");
        bytes[8] ^= 0x5a;
        std::fs::write(&meta, bytes).expect("corrupt");
    }

    wait_until("the job to fail", || job_line(&cluster.status(), &job).contains(" FAILED "));
    let (_, info) = api_get(&cluster, &format!("/api/v1/jobs/{job}"));
    assert!(info.contains("not starting from nothing"), "{info}");
    let (_, events) = api_get(&cluster, &format!("/api/v1/jobs/{job}/logs"));
    for id in &ids {
        assert!(events.contains(&format!("checkpoint {id} cannot be restored")), "checkpoint {id} is named: {events}");
    }
    assert_eq!(cluster.log("jobmanager").matches("restoring nothing").count(), 1, "only the first attempt started from nothing");
    assert_kept(&output, &before);
    assert_eq!(committed_files(&output).len(), before.len(), "nothing was written after the failure");
}

/// The storage of a job's checkpoints is unreadable when it restarts (a file where its
/// directory was): the restart looks again and again and never starts from nothing;
/// committed output stays; once the storage is back the job restores its checkpoint
/// and ends exactly once.
#[test]
fn unreadable_checkpoints_at_restart_are_retried_until_the_storage_is_back() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let n: u64 = 1_500_000;
    let output = cluster.dir.path().join("out");
    let job = submit_keyed_sum(&cluster, n, 4000, &output, "fixed-delay:5:500");
    let root = cluster.dir.path().join("checkpoints");
    wait_until("two completed checkpoints", || completed_checkpoints(&root, &job).len() >= 2);
    let (checkpoints, away) = (root.join(&job), cluster.dir.path().join("away"));
    std::fs::rename(&checkpoints, &away).expect("move the checkpoints away");
    std::fs::write(&checkpoints, b"not a directory").expect("a file in its place");
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    cluster.wait_until("the restart to find the checkpoints unreadable, twice", || {
        cluster.log("jobmanager").matches("cannot read the job's checkpoints (lookup").count() >= 2
    });
    let line = job_line(&cluster.status(), &job);
    assert!(line.contains(" RESTARTING "), "{line}");
    let (_, events) = api_get(&cluster, &format!("/api/v1/jobs/{job}/logs"));
    assert!(events.contains("cannot read the job's checkpoints (lookup 1 of 5)") && events.contains("Not a directory"), "a job event: {events}");
    let before = committed_files(&output);
    assert!(!before.is_empty(), "checkpoints committed output");
    std::fs::remove_file(&checkpoints).expect("remove the file");
    std::fs::rename(&away, &checkpoints).expect("the storage is back");

    wait_finished(&cluster, &job);
    let log = cluster.log("jobmanager");
    assert_eq!(log.matches("restoring nothing").count(), 1, "only the first attempt started from nothing: {log}");
    assert!(log.contains(&format!("restoring checkpoint {job}/chk-")), "{log}");
    assert_kept(&output, &before);
    assert_exactly_once(&output, n);
}

/// Storage that stays unreadable fails the restarts until the restart strategy gives
/// up: the job fails naming the storage error, and nothing committed is touched.
#[test]
fn checkpoints_that_stay_unreadable_fail_the_job_and_keep_its_committed_output() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let output = cluster.dir.path().join("out");
    let job = submit_keyed_sum(&cluster, 1_500_000, 4000, &output, "fixed-delay:1:100");
    let root = cluster.dir.path().join("checkpoints");
    wait_until("two completed checkpoints", || completed_checkpoints(&root, &job).len() >= 2);
    let checkpoints = root.join(&job);
    std::fs::rename(&checkpoints, cluster.dir.path().join("away")).expect("move the checkpoints away");
    std::fs::write(&checkpoints, b"not a directory").expect("a file in its place");
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_until("the job to fail", || job_line(&cluster.status(), &job).contains(" FAILED "));
    let before = committed_files(&output);
    assert!(!before.is_empty(), "checkpoints committed output");
    let (_, info) = api_get(&cluster, &format!("/api/v1/jobs/{job}"));
    assert!(info.contains("checkpoints cannot be read") && info.contains("Not a directory"), "{info}");
    let log = cluster.log("jobmanager");
    assert_eq!(log.matches("restoring nothing").count(), 1, "only the first attempt started from nothing: {log}");
    assert_eq!(log.matches("cannot read the job's checkpoints (lookup").count(), 4, "looked up five times, then the restart failed: {log}");
    assert_kept(&output, &before);
    assert_eq!(committed_files(&output).len(), before.len(), "nothing was written after the failure");
}

/// A JobManager that cannot record a job durably refuses it: a 5xx naming the cause,
/// and nothing runs (a restarted JobManager could not know the job). Tried with
/// `_jobs` unwritable (a file in its place) for a checkpointed job, and with the whole
/// checkpoint storage unusable for a job without checkpoints.
#[test]
fn a_job_that_cannot_be_persisted_is_refused_and_never_runs() {
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let root = cluster.dir.path().join("checkpoints");
    let output = cluster.dir.path().join("out");
    let submit = |checkpointed: bool| {
        let wasm = WEIR.example("keyed_sum");
        let mut args = vec!["submit", "--arg", "n=1000", "--arg", "sink=file", "--detach"];
        if checkpointed {
            args.extend(["--checkpoint-interval", "300"]);
        }
        let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        argv.extend([wasm.as_os_str(), OsStr::new("--output-dir"), output.as_os_str()]);
        let o = cluster.client(&argv);
        assert!(!o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        stderr(&o)
    };
    let nothing_runs = |what: &str| {
        let (code, jobs) = api_get(&cluster, "/api/v1/jobs");
        assert_eq!(code, 200);
        assert!(!jobs.contains("\"id\""), "{what}: no job was created: {jobs}");
        assert!(!output.exists(), "{what}: nothing ran");
        assert!(cluster.status().contains("free slots: 2"), "{what}: no slot is taken");
    };

    std::fs::create_dir_all(&root).expect("root");
    std::fs::write(root.join("_jobs"), b"not a directory").expect("a file where _jobs goes");
    let err = submit(true);
    assert!(err.contains("cannot persist the job, so it does not run") && err.contains("_jobs"), "the cause: {err}");
    nothing_runs("_jobs unwritable");

    std::fs::remove_dir_all(&root).expect("remove the storage");
    std::fs::write(&root, b"not a directory").expect("a file where the storage goes");
    let err = submit(false);
    // Uploads are kept in the same storage (`_artifacts`), so the upload is the first
    // thing refused; either way the answer names the storage and nothing runs.
    assert!(
        (err.contains("cannot persist the job") || err.contains("artifact store")) && err.contains("checkpoints") && err.contains("Not a directory"),
        "the cause: {err}"
    );
    nothing_runs("storage unusable");
}

#[test]
fn keyed_sum_is_exact_while_taskmanagers_are_killed_and_restarted() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let n: u64 = 2_000_000;
    let output = cluster.dir.path().join("out");
    let job = submit_keyed_sum(&cluster, n, 4000, &output, "fixed-delay:20:100");

    // Three times: once a checkpoint newer than the last crash completed and records
    // flow, SIGKILL a TaskManager and start it again.
    let mut after = 0u64;
    for (round, victim) in ["taskmanager-2", "taskmanager-1", "taskmanager-2"].into_iter().enumerate() {
        wait_until("a new checkpoint while running", || {
            let line = job_line(&cluster.status(), &job);
            let checkpoint = field(&line, "checkpoint=").and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
            assert!(!line.contains(" FINISHED ") && !line.contains(" FAILED "), "the job must outlive the crashes: {line}");
            line.contains(" RUNNING ") && checkpoint > after
        });
        let line = job_line(&cluster.status(), &job);
        after = field(&line, "checkpoint=").and_then(|c| c.parse().ok()).unwrap_or(0);
        cluster.kill(victim);
        cluster.start_taskmanager(victim, 2);
        wait_until("the restart", || field(&job_line(&cluster.status(), &job), "restarts=") == Some(&(round + 1).to_string()));
    }
    wait_finished(&cluster, &job);
    assert_exactly_once(&output, n);
    let status = job_line(&cluster.status(), &job);
    assert!(field(&status, "restarts=").is_some_and(|r| r.parse::<u32>().is_ok_and(|r| r >= 3)), "{status}");
}

/// A savepoint taken at parallelism 2 resumes at 3 exactly once; another job's
/// component is refused from it (it would drop the sums' state) unless asked to.
#[test]
fn a_savepoint_at_parallelism_2_resumes_at_3_exactly_once() {
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let n: u64 = 1_500_000;
    let (first, second) = (cluster.dir.path().join("out-p2"), cluster.dir.path().join("out-p3"));
    let job = submit_keyed_sum(&cluster, n, 4000, &first, "none");
    wait_until("a checkpoint while running", || {
        let line = job_line(&cluster.status(), &job);
        assert!(!line.contains(" FINISHED ") && !line.contains(" FAILED "), "the job must still run for its savepoint: {line}");
        line.contains(" RUNNING ") && !line.contains("checkpoint=none")
    });
    let savepoint = cluster.dir.path().join("savepoint");
    let o = cluster.client(&[OsStr::new("savepoint"), OsStr::new(&job), OsStr::new("--dir"), savepoint.as_os_str(), OsStr::new("--stop")]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the job to stop", || {
        let line = job_line(&cluster.status(), &job);
        assert!(!line.contains(" FINISHED ") && !line.contains(" FAILED "), "a stopped job ends CANCELED: {line}");
        line.contains(" CANCELED ")
    });
    let done: u64 = committed_lines(&first).len() as u64;
    assert!(done > 0 && done < n, "the first run stopped midway: {done} of {n}");

    // Another job's component from this savepoint: its "sum" state would be lost, so
    // it is refused, unless the caller says to drop that state.
    let other = WEIR.example("bad_panic");
    let o = cluster.client(&[OsStr::new("submit"), OsStr::new("--detach"), other.as_os_str(), OsStr::new("--from-savepoint"), savepoint.as_os_str()]);
    let refused = stderr(&o);
    assert!(!o.status.success() && refused.contains("state of operator(s) sum that this job does not have"), "{refused}");
    let o = cluster.client(&[
        OsStr::new("submit"),
        OsStr::new("--detach"),
        other.as_os_str(),
        OsStr::new("--from-savepoint"),
        savepoint.as_os_str(),
        OsStr::new("--allow-non-restored-state"),
    ]);
    assert!(o.status.success(), "dropping the state was asked for: {}", stderr(&o));

    let wasm = WEIR.example("keyed_sum");
    let args = ["submit", "-p", "3", "--arg", &format!("n={n}"), "--arg", "sink=file", "--checkpoint-interval", "300"];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.extend([wasm.as_os_str(), OsStr::new("--output-dir"), second.as_os_str(), OsStr::new("--from-savepoint"), savepoint.as_os_str()]);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "the resumed run finishes: {}", stderr(&o));

    // Both runs' committed output together: exactly once, exact per-key sums.
    let merged = cluster.dir.path().join("merged");
    std::fs::create_dir_all(&merged).expect("dir");
    for (i, dir) in [&first, &second].into_iter().enumerate() {
        std::fs::write(merged.join(format!("part-run{i}")), committed_lines(dir).join("\n") + "\n").expect("merge");
    }
    assert_exactly_once(&merged, n);
}

/// A stop-with-savepoint suspends the sources after its barrier; when the savepoint
/// cannot be written the caller hears why and the job goes on to finish, exactly once.
#[test]
fn a_stop_whose_savepoint_cannot_be_written_leaves_the_job_running() {
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let n: u64 = 1_500_000;
    let output = cluster.dir.path().join("out");
    let job = submit_keyed_sum(&cluster, n, 4000, &output, "none");
    wait_until("a checkpoint while running", || {
        let line = job_line(&cluster.status(), &job);
        assert!(!line.contains(" FINISHED ") && !line.contains(" FAILED "), "the job must still run for its savepoint: {line}");
        line.contains(" RUNNING ") && !line.contains("checkpoint=none")
    });
    // A directory inside a file: the checkpoint completes, writing the copy fails.
    let unwritable = cluster.dir.path().join("cluster").join("api-token").join("savepoint");
    let o = cluster.client(&[OsStr::new("savepoint"), OsStr::new(&job), OsStr::new("--dir"), unwritable.as_os_str(), OsStr::new("--stop")]);
    assert!(!o.status.success(), "the savepoint cannot be written");
    assert!(stderr(&o).contains("api-token"), "the error names the place: {}", stderr(&o));
    wait_until("the job to finish on its own", || {
        let line = job_line(&cluster.status(), &job);
        assert!(!line.contains(" CANCELED ") && !line.contains(" FAILED "), "the job goes on: {line}");
        line.contains(" FINISHED ")
    });
    assert_exactly_once(&output, n);
}

/// The status (RUNNING, FINISHED, ...) of each subtask of the job's first vertex.
fn source_subtasks(cluster: &TestCluster, job: &str) -> Vec<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/api/v1/jobs/{job}/metrics", cluster.rest);
    let Ok(mut r) = agent.get(url).header("Authorization", &format!("Bearer {}", cluster.token)).call() else { return vec![] };
    let m: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
    let subtasks = m["vertices"][0]["subtasks"].as_array().cloned().unwrap_or_default();
    subtasks.iter().map(|s| s["status"].as_str().unwrap_or_default().to_string()).collect()
}

/// One source subtask reads a few long lines, the other millions of short ones: after
/// the first finishes, checkpoints go on (it stands in with its exhausted position),
/// and a TaskManager killed then restores from one of them, exactly once.
#[test]
fn checkpoints_go_on_after_a_source_subtask_finishes_and_restore_exactly_once() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let (input, output) = (cluster.dir.path().join("skewed.txt"), cluster.dir.path().join("out"));
    let mut text = String::new();
    let mut expected: HashMap<String, u64> = HashMap::new();
    let long = "L".repeat(10_000);
    for i in 0..6_000u64 {
        let w = format!("{long}{}", i % 7);
        text.push_str(&w);
        text.push('\n');
        *expected.entry(w).or_default() += 1;
    }
    let short_start = text.len();
    for i in 0u64.. {
        if text.len() >= 2 * short_start {
            break;
        }
        // Short words: as many records per byte as a line can carry.
        let r = splitmix64(i);
        let line: Vec<String> = (0..8).map(|j| char::from(b'a' + ((r >> (j * 5)) % 26) as u8).to_string()).collect();
        let line = line.join(" ");
        for w in line.split(' ') {
            *expected.entry(w.to_string()).or_default() += 1;
        }
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&input, &text).expect("write input");

    let wasm = WEIR.example("wordcount");
    let args = ["submit", "-p", "2", "--checkpoint-interval", "100", "--restart", "fixed-delay:5:200", "--detach", "--output-dir"];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.extend([output.as_os_str(), wasm.as_os_str(), OsStr::new("-i"), input.as_os_str()]);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    let job = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    let checkpoint = |cluster: &TestCluster| {
        let line = job_line(&cluster.status(), &job);
        assert!(!line.contains(" FINISHED ") && !line.contains(" FAILED "), "the job must outlive the test's kill: {line}");
        field(&line, "checkpoint=").and_then(|c| c.parse::<u64>().ok()).unwrap_or(0)
    };
    let mut at_finish = 0;
    cluster.wait_until("one source subtask to finish while the other runs", || {
        let s = source_subtasks(&cluster, &job);
        at_finish = checkpoint(&cluster);
        s.iter().any(|s| s == "FINISHED") && s.iter().any(|s| s == "RUNNING")
    });
    cluster.wait_until("two more checkpoints after it finished", || checkpoint(&cluster) >= at_finish + 2);
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_finished(&cluster, &job);
    assert!(job_line(&cluster.status(), &job).contains("restarts=1"), "{}", cluster.status());

    let lines = committed_lines(&output);
    let mut last: HashMap<String, u64> = HashMap::new();
    for l in &lines {
        let (w, n) = l.rsplit_once('\t').expect("word<TAB>count");
        let e = last.entry(w.to_string()).or_default();
        *e = (*e).max(n.parse().expect("count"));
    }
    assert_eq!(lines.len() as u64, expected.values().sum::<u64>(), "one output line per word: none lost, none repeated");
    assert!(last == expected, "final counts differ");
}

#[test]
fn a_killed_jobmanager_comes_back_and_resumes_its_job_exactly_once() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let n: u64 = 1_500_000;
    let output = cluster.dir.path().join("out");
    let job = submit_keyed_sum(&cluster, n, 4000, &output, "fixed-delay:20:100");
    wait_until("two checkpoints while running", || {
        let line = job_line(&cluster.status(), &job);
        assert!(!line.contains(" FINISHED "), "the job must outlive the crash: {line}");
        field(&line, "checkpoint=").and_then(|c| c.parse::<u64>().ok()).is_some_and(|c| c >= 2)
    });
    cluster.restart_jobmanager();
    // The new JobManager knows the job from its persisted record, and the TaskManagers
    // register with it again.
    wait_finished(&cluster, &job);
    assert!(cluster.log("jobmanager").contains("resuming a job of the previous jobmanager"));
    assert_exactly_once(&output, n);
}

/// Committed files of a checkpointed file sink, each subtask's in epoch order.
fn committed_in_order(dir: &Path) -> Vec<String> {
    let mut files: Vec<((u32, u64), std::path::PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("part-") else { continue };
        let mut parts = rest.split('-');
        let subtask = parts.next().and_then(|s| s.parse().ok()).expect("subtask");
        let epoch = parts.next().and_then(|s| s.parse().ok()).expect("epoch");
        files.push(((subtask, epoch), entry.path()));
    }
    files.sort();
    let epochs: Vec<(u32, u64)> = files.iter().map(|(k, _)| *k).collect();
    let mut unique = epochs.clone();
    unique.dedup();
    assert_eq!(epochs, unique, "an epoch of a sink subtask was committed by two attempts");
    files.iter().flat_map(|(_, p)| std::fs::read_to_string(p).expect("read part").lines().map(str::to_string).collect::<Vec<_>>()).collect()
}

/// The TaskManager hosting subtask 0 of the job's last vertex (the sink's).
fn sink_taskmanager(cluster: &TestCluster, job: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/api/v1/jobs/{job}/metrics", cluster.rest);
    let mut r = agent.get(url).header("Authorization", &format!("Bearer {}", cluster.token)).call().ok()?;
    let m: serde_json::Value = r.body_mut().read_json().ok()?;
    let last = m["vertices"].as_array()?.len().checked_sub(1)?;
    m["vertices"][last]["subtasks"][0]["taskmanager"].as_str().filter(|n| n.starts_with("taskmanager")).map(str::to_string)
}

/// The zombie: a TaskManager running sink subtasks is paused (SIGSTOP) past the
/// heartbeat timeout, the job restarts on the others, and the paused process resumes
/// with its superseded attempt still in memory, in the middle of its epochs. Its
/// connection is closed as lost (it cancels and registers anew), its sink can no longer
/// commit or write a pending file, its acknowledgements never count, and its records
/// reach no current channel: the output stays exactly once, each key's sums in order.
#[test]
fn a_taskmanager_paused_past_its_heartbeat_timeout_cannot_act_for_its_old_attempt() {
    let tms = [("taskmanager-1", 2), ("taskmanager-2", 2), ("taskmanager-3", 2)];
    let cluster = TestCluster::start_with(WEIR, &tms, &["--checkpoint-dir", "{dir}/checkpoints"]);
    let n: u64 = 1_500_000;
    let output = cluster.dir.path().join("out");
    let job = submit_keyed_sum(&cluster, n, 4000, &output, "fixed-delay:20:100");
    let completed = |cluster: &TestCluster| field(&job_line(&cluster.status(), &job), "checkpoint=").and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
    cluster.wait_until("two checkpoints while running", || completed(&cluster) >= 2);
    let mut victim = None;
    cluster.wait_until("the sink's taskmanager", || {
        victim = sink_taskmanager(&cluster, &job);
        victim.is_some()
    });
    let victim = victim.expect("victim");
    cluster.signal(&victim, libc::SIGSTOP);
    cluster.wait_until("the job to restart without the paused taskmanager", || {
        let line = job_line(&cluster.status(), &job);
        line.contains("restarts=1") && line.contains(" RUNNING ")
    });
    cluster.signal(&victim, libc::SIGCONT);
    cluster.wait_until("the paused taskmanager to register anew", || cluster.log(&victim).contains("registering again"));
    wait_finished(&cluster, &job);

    let lines = committed_in_order(&output);
    let mut last: HashMap<u64, u64> = HashMap::new();
    for l in &lines {
        let (k, v) = l.split_once('\t').expect("key<TAB>value");
        let (k, v): (u64, u64) = (k.parse().expect("key"), v.parse().expect("sum"));
        if let Some(prev) = last.insert(k, v) {
            assert!(v > prev, "key {k}: sum {v} committed after {prev}");
        }
    }
    assert_exactly_once(&output, n);
}

/// Every subtask's `endOfInput` flag and status, of the job's last vertex (its sink).
fn sink_subtasks(cluster: &TestCluster, job: &str) -> Vec<(bool, String, String)> {
    let (_, body) = api_get(cluster, &format!("/api/v1/jobs/{job}/metrics"));
    let m: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let vertices = m["vertices"].as_array().cloned().unwrap_or_default();
    let subtasks = vertices.last().and_then(|v| v["subtasks"].as_array().cloned()).unwrap_or_default();
    subtasks
        .iter()
        .map(|s| {
            let text = |f: &str| s[f].as_str().unwrap_or_default().to_string();
            (s["endOfInput"].as_bool().unwrap_or(false), text("status"), text("taskmanager"))
        })
        .collect()
}

/// Flink's final checkpoint. A forward job (text lines straight into the file sink) at
/// parallelism 2 reads a skewed file: sink subtask 1 reads a few long lines, subtask 0
/// many short ones. The job's checkpoint directory is replaced by a file, so no
/// checkpoint can complete: the job is held before its final checkpoint whatever the
/// timing. Once a sink subtask reached the end of its input (REST), nothing of it is
/// committed; a TaskManager is SIGKILLed, and the restart (from nothing: no checkpoint
/// completed) writes every line again, once: exactly once, and no at-least-once gap
/// is announced. The job then finishes through its final checkpoint.
#[test]
fn a_failure_after_sinks_reached_the_end_of_their_input_stays_exactly_once() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let dir = cluster.dir.path().to_path_buf();
    let (input, output, manifest) = (dir.join("skewed.txt"), dir.join("out"), dir.join("copy.toml"));
    std::fs::write(&manifest, "name = \"copy\"\n\n[[node]]\nuid = \"lines\"\nsource = \"text-lines\"\n\n[[node]]\nuid = \"out\"\nsink = \"file\"\n")
        .expect("write the manifest");
    let mut expected: Vec<String> = Vec::new();
    let mut text = String::new();
    for i in 0u64.. {
        if text.len() >= 1 << 20 {
            break;
        }
        expected.push(format!("short {i}"));
        text.push_str(&format!("short {i}\n"));
    }
    let half = text.len();
    for i in 0..(half / 10_000 + 1) {
        let line = format!("long {i} {}", "L".repeat(10_000));
        text.push_str(&line);
        text.push('\n');
        expected.push(line);
    }
    std::fs::write(&input, &text).expect("write input");

    let args = ["submit", "-p", "2", "--checkpoint-interval", "100", "--restart", "fixed-delay:5:200", "--detach", "--output-dir"];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.extend([output.as_os_str(), manifest.as_os_str(), OsStr::new("-i"), input.as_os_str()]);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    let job = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();

    // No checkpoint of the job can complete from here on: its metadata cannot be written.
    let (checkpoints, away) = (dir.join("checkpoints").join(&job), dir.join("away"));
    cluster.wait_until("the checkpoints' place taken by a file", || {
        if checkpoints.is_dir() {
            std::fs::rename(&checkpoints, &away).expect("move the checkpoints away");
        }
        std::fs::OpenOptions::new().write(true).create_new(true).open(&checkpoints).is_ok()
    });
    let mut victim = String::new();
    cluster.wait_until("a sink subtask at the end of its input", || {
        let subtasks = sink_subtasks(&cluster, &job);
        let line = job_line(&cluster.status(), &job);
        assert!(!line.contains(" FINISHED ") && !line.contains(" FAILED "), "the job is held before its final checkpoint: {line}");
        victim = subtasks.get(1).map(|s| s.2.clone()).unwrap_or_default();
        subtasks.iter().any(|(end, status, _)| *end && status == "RUNNING")
    });
    let completed = |cluster: &TestCluster| {
        let (_, body) = api_get(cluster, &format!("/api/v1/jobs/{job}/checkpoints"));
        body.matches("COMPLETED").count()
    };
    assert_eq!(completed(&cluster), 0, "no checkpoint completed");
    assert!(committed_lines(&output).is_empty(), "a sink at the end of its input commits nothing by itself");
    assert!(victim.starts_with("taskmanager"), "{victim}");
    cluster.kill(&victim);
    cluster.start_taskmanager(&victim, 2);
    cluster.wait_until("the restart to look for the job's checkpoints", || {
        cluster.log("jobmanager").contains("cannot read the job's checkpoints (lookup")
    });
    std::fs::remove_file(&checkpoints).expect("the storage is back");
    wait_finished(&cluster, &job);

    let line = job_line(&cluster.status(), &job);
    assert!(line.contains("restarts=1"), "{line}");
    let (_, list) = api_get(&cluster, &format!("/api/v1/jobs/{job}/checkpoints"));
    assert!(completed(&cluster) >= 1, "the final checkpoint is a completed checkpoint: {list}\n{}", cluster.log("jobmanager"));
    let (_, events) = api_get(&cluster, &format!("/api/v1/jobs/{job}/logs"));
    assert!(!events.contains("at-least-once"), "no gap announced: {events}");
    assert!(events.contains("taking the final checkpoint"), "{events}");
    let mut lines: Vec<String> = committed_lines(&output).into_iter().map(|l| l.strip_prefix('\t').unwrap_or(&l).to_string()).collect();
    lines.sort();
    expected.sort();
    assert_eq!(lines.len(), expected.len(), "one committed line per input line: none lost, none repeated");
    assert!(lines == expected, "the committed lines are the input's");
}

/// GETs `path` of the cluster's REST API as JSON.
fn rest_json(cluster: &TestCluster, path: &str) -> serde_json::Value {
    let auth = format!("Bearer {}", cluster.token);
    let (status, body) = weir_testkit::http::request("GET", &format!("{}{path}", cluster.rest), &[("Authorization", &auth)], &[]);
    assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

/// Too few free slots is no refusal (Flink's scheduler waits for resources): the job is
/// STARTING with the reason in its status until slots are free. A stop with savepoint
/// answers once its job has ended and given its slots back, so the waiting job gets
/// them at once; a job that waits past the slot timeout fails, naming the slots.
#[test]
fn a_job_waits_for_free_slots_and_a_stop_with_savepoint_frees_them_before_it_answers() {
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2)], &["--checkpoint-dir", "{dir}/checkpoints", "--slot-timeout-ms", "2000"]);
    let n: u64 = 1_500_000;
    let (first, second) = (cluster.dir.path().join("out-a"), cluster.dir.path().join("out-b"));
    let a = submit_keyed_sum(&cluster, n, 4000, &first, "none");
    wait_until("a checkpoint while running", || {
        let line = job_line(&cluster.status(), &a);
        assert!(!line.contains(" FINISHED ") && !line.contains(" FAILED "), "the job must still run for its savepoint: {line}");
        line.contains(" RUNNING ") && !line.contains("checkpoint=none")
    });

    // A job that cannot get its slots within the timeout fails, saying why.
    let wasm = WEIR.example("keyed_sum");
    let args = ["submit", "-p", "3", "--arg", "n=1000", "--arg", "sink=discard", "--restart", "none", "--detach"];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.push(wasm.as_os_str());
    let o = cluster.client(&argv);
    assert!(o.status.success(), "accepted, to wait: {}", stderr(&o));
    let too_wide = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    let doc = rest_json(&cluster, &format!("/api/v1/jobs/{too_wide}"));
    assert_eq!(doc["status"]["state"], "STARTING", "{doc}");
    assert!(doc["status"]["waiting"].as_str().is_some_and(|w| w.contains("needs 3 slots but only 0 are free")), "{doc}");
    wait_until("the too-wide job to give up", || job_line(&cluster.status(), &too_wide).contains("state=FAILED"));
    let doc = rest_json(&cluster, &format!("/api/v1/jobs/{too_wide}"));
    let message = doc["status"]["failure"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("needs 3 slots but only 0 are free (waited 2s"), "{doc}");

    // The resumed job waits for the first one's slots...
    let savepoint = cluster.dir.path().join("savepoint");
    let o = cluster.client(&[OsStr::new("savepoint"), OsStr::new(&a), OsStr::new("--dir"), savepoint.as_os_str(), OsStr::new("--stop")]);
    assert!(o.status.success(), "{}", stderr(&o));
    // ...which the stop gave back before it answered.
    let line = job_line(&cluster.status(), &a);
    assert!(line.contains(" CANCELED "), "the stop answers once the job ended: {line}");
    let args = ["submit", "-p", "2", "--arg", &format!("n={n}"), "--arg", "sink=file", "--checkpoint-interval", "300", "--detach"];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.extend([wasm.as_os_str(), OsStr::new("--output-dir"), second.as_os_str(), OsStr::new("--from-savepoint"), savepoint.as_os_str()]);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    let b = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    let doc = rest_json(&cluster, &format!("/api/v1/jobs/{b}"));
    assert!(doc["status"].get("waiting").is_none(), "the slots were free at once: {doc}");
    wait_until("the resumed job to finish", || {
        let line = job_line(&cluster.status(), &b);
        assert!(!line.contains(" FAILED "), "{line}");
        line.contains(" FINISHED ")
    });
    let merged = cluster.dir.path().join("merged");
    std::fs::create_dir_all(&merged).expect("dir");
    for (i, dir) in [&first, &second].into_iter().enumerate() {
        std::fs::write(merged.join(format!("part-run{i}")), committed_lines(dir).join("\n") + "\n").expect("merge");
    }
    assert_exactly_once(&merged, n);
}
