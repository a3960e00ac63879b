//! Streams that meet: a union of four streams and a connect (two keyed streams in one
//! `KeyedCoProcessFunction`) through `weir run` and a real cluster, checked exactly
//! against results computed here without Weir; exactly once across a TaskManager
//! SIGKILL with both inputs of the connect active, and with one input ending early.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use weir_testkit::{TestCluster, splitmix64, stderr, wait_until};

use crate::WEIR;

/// What `union_counts` writes for `n`, `m`, `s` and `keys`: per key `1..=count` (as
/// sorted `(key, count)` lines), whatever the interleaving of its four inputs.
pub(crate) fn union_reference(n: u64, m: u64, s: u64, keys: u64) -> Vec<(u64, u64)> {
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for x in (0..n).chain(n..n + m).chain((0..s).map(|x| x * x)) {
        *counts.entry(splitmix64(x) % keys).or_default() += 1;
    }
    counts.into_iter().flat_map(|(k, c)| (1..=c).map(move |i| (k, i))).collect()
}

/// `key<TAB>count` lines, sorted.
fn parse_counts(lines: impl IntoIterator<Item = String>) -> Vec<(u64, u64)> {
    let mut got: Vec<(u64, u64)> = lines
        .into_iter()
        .map(|l| {
            let (k, c) = l.split_once('\t').unwrap_or_else(|| panic!("key<TAB>count: {l:?}"));
            (k.parse().expect("key"), c.parse().expect("count"))
        })
        .collect();
    got.sort_unstable();
    got
}

/// The arguments of an `enrich_clicks` run.
#[derive(Clone, Copy)]
pub(crate) struct Enrich {
    pub(crate) profiles: u64,
    pub(crate) clicks: u64,
    pub(crate) users: u64,
    pub(crate) profile_rate: u64,
    pub(crate) click_rate: u64,
}

impl Enrich {
    pub(crate) fn args(&self) -> Vec<String> {
        let Enrich { profiles, clicks, users, profile_rate, click_rate } = self;
        [("profiles", profiles), ("clicks", clicks), ("users", users), ("profile-rate", profile_rate), ("click-rate", click_rate)]
            .iter()
            .flat_map(|(k, v)| ["--arg".to_string(), format!("{k}={v}")])
            .collect()
    }

    /// Every click with the version of its user's profile at the click's event time:
    /// profile `j` (user `j % users`, version `j / users`) counts from `j / profile_rate`
    /// ms on, so it is the user's newest `j` with that time at or before the click's.
    /// Sorted `user<TAB>click version` lines.
    pub(crate) fn reference(&self) -> Vec<String> {
        let mut newest: Vec<Option<u64>> = vec![None; self.users as usize];
        let mut profiles = (0..self.profiles).peekable();
        let mut lines = Vec::with_capacity(self.clicks as usize);
        for i in 0..self.clicks {
            let ts = i / self.click_rate;
            while let Some(j) = profiles.next_if(|j| j / self.profile_rate <= ts) {
                newest[(j % self.users) as usize] = Some(j / self.users);
            }
            let user = splitmix64(i) % self.users;
            let version = newest[user as usize].map_or("-".to_string(), |v| v.to_string());
            lines.push(format!("{user}\t{i} {version}"));
        }
        lines.sort_unstable();
        lines
    }
}

/// Runs `example` embedded at parallelism `p` with `args`; its output lines and its
/// report (stderr).
pub(crate) fn run_embedded(dir: &Path, example: &str, p: &str, args: &[String]) -> (Vec<String>, String) {
    let out = dir.join(format!("{example}-{p}.tsv"));
    let mut argv: Vec<&OsStr> = vec!["run".as_ref(), "-p".as_ref(), p.as_ref(), "-o".as_ref(), out.as_os_str()];
    let wasm = WEIR.example(example);
    argv.push(wasm.as_os_str());
    argv.extend(args.iter().map(OsStr::new));
    let o = WEIR.run(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    (std::fs::read_to_string(&out).expect("output").lines().map(str::to_string).collect(), stderr(&o))
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort_unstable();
    lines
}

#[test]
fn a_union_of_four_streams_counts_every_record_once_at_parallelism_1_and_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (n, m, s, keys) = (30_000, 12_000, 5_000, 500);
    let expected = union_reference(n, m, s, keys);
    let args: Vec<String> = [("n", n), ("m", m), ("s", s), ("keys", keys)].iter().flat_map(|(k, v)| ["--arg".into(), format!("{k}={v}")]).collect();
    for p in ["1", "3"] {
        assert_eq!(parse_counts(run_embedded(dir.path(), "union_counts", p, &args).0), expected, "parallelism {p}");
    }
}

/// Two settings: profiles and clicks over the same stretch of event time, and profiles
/// far ahead of the clicks (they end first; versions wait in the state for the clicks).
const ENRICH: [Enrich; 2] = [
    Enrich { profiles: 6_000, clicks: 60_000, users: 150, profile_rate: 3, click_rate: 30 },
    Enrich { profiles: 3_000, clicks: 40_000, users: 40, profile_rate: 10, click_rate: 20 },
];

#[test]
fn clicks_enriched_by_connected_profiles_are_exact_at_parallelism_1_and_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    for e in ENRICH {
        let expected = e.reference();
        assert!(expected.iter().any(|l| l.ends_with(" -")) && expected.iter().any(|l| !l.ends_with(" -")), "some clicks before any profile");
        for (p, profile_parallelism) in [("1", "1"), ("3", "1"), ("3", "2")] {
            let mut args = e.args();
            args.extend(["--arg".into(), format!("profile-parallelism={profile_parallelism}")]);
            let (lines, report) = run_embedded(dir.path(), "enrich_clicks", p, &args);
            let got = sorted(lines);
            assert!(got == expected, "parallelism {p} (profiles {profile_parallelism}): {} lines, {} expected", got.len(), expected.len());
            assert!(report.contains(&format!("input 1: {}, input 2: {}", e.profiles, e.clicks)), "records in per input: {report}");
        }
    }
}

/// Every line of every `part-*` file in `dir` (a file sink's output on a cluster).
pub(crate) fn part_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir").flatten() {
        if entry.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(std::fs::read_to_string(entry.path()).expect("part").lines().map(str::to_string));
        }
    }
    lines
}

/// Submits `example` detached at parallelism `p` with `extra` options and job
/// arguments; its job id.
pub(crate) fn submit(cluster: &TestCluster, example: &str, p: &str, output: &Path, extra: &[String]) -> String {
    let wasm = WEIR.example(example);
    let mut argv: Vec<&OsStr> = vec!["submit".as_ref(), "-p".as_ref(), p.as_ref(), "--detach".as_ref(), wasm.as_os_str()];
    argv.extend(["--output-dir".as_ref(), output.as_os_str()]);
    argv.extend(extra.iter().map(OsStr::new));
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string()
}

/// The job's line in `weir status`.
pub(crate) fn job_line(cluster: &TestCluster, job: &str) -> String {
    cluster.status().lines().find(|l| l.starts_with(&format!("job {job} "))).unwrap_or_default().to_string()
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(name))
}

pub(crate) fn checkpoint(cluster: &TestCluster, job: &str) -> u64 {
    field(&job_line(cluster, job), "checkpoint=").and_then(|c| c.parse().ok()).unwrap_or(0)
}

pub(crate) fn wait_finished(cluster: &TestCluster, job: &str) {
    wait_until("the job to finish", || {
        let l = job_line(cluster, job);
        assert!(!l.contains(" FAILED "), "{l}\n{}", cluster.log("jobmanager"));
        l.contains(" FINISHED ")
    });
}

/// GETs `path` of the cluster's REST API as JSON.
fn rest_json(cluster: &TestCluster, path: &str) -> serde_json::Value {
    let auth = format!("Bearer {}", cluster.token);
    let (status, body) = weir_testkit::http::request("GET", &format!("{}{path}", cluster.rest), &[("Authorization", &auth)], &[]);
    assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

/// The status of each subtask of the job's vertex whose name starts with `name`.
pub(crate) fn subtasks(cluster: &TestCluster, job: &str, name: &str) -> Vec<String> {
    let m = rest_json(cluster, &format!("/api/v1/jobs/{job}/metrics"));
    let vertices = m["vertices"].as_array().cloned().unwrap_or_default();
    let Some(v) = vertices.iter().find(|v| v["name"].as_str().is_some_and(|n| n.starts_with(name))) else { return vec![] };
    v["subtasks"].as_array().into_iter().flatten().map(|s| s["status"].as_str().unwrap_or_default().to_string()).collect()
}

#[test]
fn union_and_connect_are_exact_on_a_cluster_of_two_taskmanagers() {
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)]);
    let (n, m, s, keys) = (20_000, 9_000, 3_000, 300);
    let union_out = cluster.dir.path().join("union");
    let args: Vec<String> = [("n", n), ("m", m), ("s", s), ("keys", keys)].iter().flat_map(|(k, v)| ["--arg".into(), format!("{k}={v}")]).collect();
    let union = submit(&cluster, "union_counts", "3", &union_out, &args);
    wait_finished(&cluster, &union);
    assert_eq!(parse_counts(part_lines(&union_out)), union_reference(n, m, s, keys));
    // A union is no node: the key selector after it reads all four streams (the odd
    // numbers, a side output of the evens' node, through a pass-through node), and its
    // vertex is drawn with an edge from each.
    let metrics = rest_json(&cluster, &format!("/api/v1/jobs/{union}/metrics"));
    let vertices = metrics["vertices"].as_array().expect("vertices");
    let union_vertex = vertices.iter().find(|v| v["name"] == "by-key").expect("the vertex after the union");
    let into_union: Vec<&serde_json::Value> =
        metrics["edges"].as_array().expect("edges").iter().filter(|e| e["target"] == union_vertex["id"]).collect();
    assert_eq!(into_union.len(), 4, "{metrics}");
    assert!(into_union.iter().all(|e| e["input"].is_null()), "a union has one input: {into_union:?}");
    assert_eq!(union_vertex["recordsIn"].as_u64(), Some(n + m + s));
    assert_eq!(union_vertex["recordsInByInput"], serde_json::json!([]));

    let e = ENRICH[0];
    let enrich_out = cluster.dir.path().join("enrich");
    let mut args = e.args();
    args.extend(["--arg".into(), "profile-parallelism=2".into()]);
    let enrich = submit(&cluster, "enrich_clicks", "3", &enrich_out, &args);
    wait_finished(&cluster, &enrich);
    assert!(sorted(part_lines(&enrich_out)) == e.reference(), "the enriched clicks differ");

    // The connect's vertex has an edge into each of its inputs and counts every
    // record of each, in total and per subtask.
    let metrics = rest_json(&cluster, &format!("/api/v1/jobs/{enrich}/metrics"));
    let vertices = metrics["vertices"].as_array().expect("vertices");
    let id_of = |name: &str| vertices.iter().find(|v| v["name"].as_str().is_some_and(|n| n.starts_with(name))).map(|v| v["id"].clone()).expect(name);
    let connect = vertices.iter().find(|v| v["name"].as_str().is_some_and(|n| n.starts_with("enrich"))).expect("the connect's vertex");
    assert_eq!(connect["recordsInByInput"], serde_json::json!([e.profiles, e.clicks]), "{connect}");
    let per_subtask = |input: usize| {
        connect["subtasks"].as_array().expect("subtasks").iter().map(|s| s["recordsInByInput"][input].as_u64().unwrap_or(0)).sum::<u64>()
    };
    assert_eq!((per_subtask(0), per_subtask(1)), (e.profiles, e.clicks));
    let edges = metrics["edges"].as_array().expect("edges");
    let into = |from: &str| edges.iter().find(|x| x["source"] == id_of(from) && x["target"] == connect["id"]).map(|x| x["input"].clone());
    assert_eq!((into("profiles"), into("clicks")), (Some(serde_json::json!(0)), Some(serde_json::json!(1))), "{metrics}");
}

/// Enrichment with both inputs slowed down and checkpoints every 300 ms on a real
/// cluster.
fn submit_slow_enrichment(cluster: &TestCluster, e: Enrich, output: &Path) -> String {
    let mut args = e.args();
    args.extend(
        ["--arg", "work=2000", "--arg", "profile-parallelism=2", "--checkpoint-interval", "300", "--restart", "fixed-delay:20:100"].map(String::from),
    );
    submit(cluster, "enrich_clicks", "2", output, &args)
}

/// Committed output against the reference: every click once, nothing lost or repeated.
fn assert_enriched_exactly_once(output: &Path, e: &Enrich) {
    let got = sorted(part_lines(output));
    let expected = e.reference();
    assert_eq!(got.len(), expected.len(), "one committed line per click");
    assert!(got == expected, "the enriched clicks differ");
}

#[test]
fn a_connect_with_both_inputs_active_is_exactly_once_across_a_taskmanager_sigkill() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    // Profiles and clicks over the same stretch of event time at the same speed: both
    // inputs run until the end.
    let e = Enrich { profiles: 600_000, clicks: 600_000, users: 1_000, profile_rate: 40, click_rate: 40 };
    let output = cluster.dir.path().join("out");
    let job = submit_slow_enrichment(&cluster, e, &output);
    wait_until("a completed checkpoint with both inputs running", || {
        let l = job_line(&cluster, &job);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "the job must outlive the kill: {l}");
        let running = |name| {
            let s = subtasks(&cluster, &job, name);
            !s.is_empty() && s.iter().all(|s| s == "RUNNING")
        };
        checkpoint(&cluster, &job) >= 2 && running("profiles") && running("clicks")
    });
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_finished(&cluster, &job);
    assert!(field(&job_line(&cluster, &job), "restarts=").is_some_and(|r| r != "0"), "{}", job_line(&cluster, &job));
    assert_enriched_exactly_once(&output, &e);
}

#[test]
fn a_connect_whose_profiles_end_early_keeps_checkpointing_and_finishes_exactly_once() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    // Few profiles against many slow clicks: the profiles input ends long before.
    let e = Enrich { profiles: 2_000, clicks: 600_000, users: 500, profile_rate: 1, click_rate: 100 };
    let output = cluster.dir.path().join("out");
    let job = submit_slow_enrichment(&cluster, e, &output);
    let mut at_end = 0;
    cluster.wait_until("the profiles to end while the clicks run", || {
        let l = job_line(&cluster, &job);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "the job must outlive the profiles: {l}");
        at_end = checkpoint(&cluster, &job);
        let (profiles, clicks) = (subtasks(&cluster, &job, "profiles"), subtasks(&cluster, &job, "clicks"));
        !profiles.is_empty() && profiles.iter().all(|s| s == "FINISHED") && clicks.iter().any(|s| s == "RUNNING")
    });
    cluster.wait_until("two more checkpoints after the profiles ended", || {
        let l = job_line(&cluster, &job);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "the job must outlive the kill: {l}");
        checkpoint(&cluster, &job) >= at_end + 2
    });
    // Restored from a checkpoint taken after the profiles ended: their versions are in
    // the restored state, their source resumes exhausted.
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_finished(&cluster, &job);
    assert!(field(&job_line(&cluster, &job), "restarts=").is_some_and(|r| r != "0"), "{}", job_line(&cluster, &job));
    assert_enriched_exactly_once(&output, &e);
}

/// A connect's shared state and timers travel by key group: a savepoint of the
/// enrichment at parallelism 2 (profiles at 2) resumes at 3, and both runs' committed
/// output together is every click once, exact.
#[test]
fn a_connect_stopped_with_a_savepoint_at_parallelism_2_resumes_at_3_exactly_once() {
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let e = Enrich { profiles: 400_000, clicks: 600_000, users: 700, profile_rate: 30, click_rate: 40 };
    let (first, second) = (cluster.dir.path().join("out-p2"), cluster.dir.path().join("out-p3"));
    let job = submit_slow_enrichment(&cluster, e, &first);
    cluster.wait_until("a checkpoint while running", || {
        let l = job_line(&cluster, &job);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "the job must still run for its savepoint: {l}");
        l.contains(" RUNNING ") && checkpoint(&cluster, &job) >= 1
    });
    let savepoint = cluster.dir.path().join("savepoint");
    let o = cluster.client(&[OsStr::new("savepoint"), OsStr::new(&job), OsStr::new("--dir"), savepoint.as_os_str(), OsStr::new("--stop")]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the job to stop", || {
        let l = job_line(&cluster, &job);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "a stopped job ends CANCELED: {l}");
        l.contains(" CANCELED ")
    });
    let done = part_lines(&first).len();
    assert!(done < e.clicks as usize, "the first run stopped midway: {done} of {}", e.clicks);

    let wasm = WEIR.example("enrich_clicks");
    let mut argv: Vec<std::ffi::OsString> = ["submit", "-p", "3", "--checkpoint-interval", "300"].iter().map(Into::into).collect();
    argv.extend([wasm.as_os_str().into(), "--output-dir".into(), second.as_os_str().into(), "--from-savepoint".into(), savepoint.as_os_str().into()]);
    argv.extend(e.args().into_iter().map(Into::into));
    argv.extend(["--arg".into(), "profile-parallelism=2".into()]);
    let argv: Vec<&OsStr> = argv.iter().map(|a| a.as_os_str()).collect();
    let o = cluster.client(&argv);
    assert!(o.status.success(), "the resumed run finishes: {}", stderr(&o));

    let mut both = part_lines(&first);
    both.extend(part_lines(&second));
    let both = sorted(both);
    assert_eq!(both.len(), e.clicks as usize, "one committed line per click over both runs");
    assert!(both == e.reference(), "the enriched clicks differ");
}
