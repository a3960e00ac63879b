//! Event time end to end: watermarks, timers and windows through `weir run` and a real
//! cluster, checked against results computed here, without Weir.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use weir_testkit::{TestCluster, splitmix64, stderr, wait_until};

use crate::WEIR;

/// Click lines `<event time ms> <user>`, out of order by up to 4999 ms (within the
/// example's 5 s bound, so no record is late at any parallelism), with malformed lines
/// mixed in and lines of varying length (so byte-range splits get uneven shares).
fn write_clicks(path: &Path, n: u64) -> BTreeMap<(String, i64), u64> {
    let mut text = String::new();
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let r = splitmix64(i);
        if r.is_multiple_of(97) {
            text.push_str(["not a click\n", "12345\n", "\n", "x y z\n", "-5 bob extra\n"][(r >> 40) as usize % 5]);
        }
        let ts = (i * 37) as i64 + (r % 5000) as i64;
        let user = format!("user-{}{}", (r >> 16) % 40, "_".repeat(((r >> 32) % 9) as usize));
        text.push_str(&format!("{ts} {user}\n"));
        *expected.entry((user, ts - ts.rem_euclid(60_000))).or_default() += 1;
    }
    std::fs::write(path, text).expect("write clicks");
    expected
}

/// `user<TAB><window start> <count>` lines as (user, start) -> count; a window twice
/// is a failure.
fn parse_windows(lines: impl IntoIterator<Item = String>) -> BTreeMap<(String, i64), u64> {
    let mut got = BTreeMap::new();
    for line in lines {
        let (user, value) = line.split_once('\t').unwrap_or_else(|| panic!("key<TAB>value: {line:?}"));
        let (start, count) = value.split_once(' ').unwrap_or_else(|| panic!("start and count: {line:?}"));
        let key = (user.to_string(), start.parse().expect("window start"));
        let previous = got.insert(key.clone(), count.parse().expect("count"));
        assert!(previous.is_none(), "window {key:?} fired twice");
    }
    got
}

/// Every line of every `part-*` file in `dir` (a checkpointed file sink's committed output).
fn part_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir").flatten() {
        if entry.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(std::fs::read_to_string(entry.path()).expect("part").lines().map(str::to_string));
        }
    }
    lines
}

#[test]
fn clicks_per_minute_counts_every_window_once_at_parallelism_1_and_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("clicks.txt");
    let expected = write_clicks(&input, 60_000);
    for p in ["1", "3"] {
        let out = dir.path().join(format!("out-{p}.tsv"));
        let o = WEIR.run([
            OsStr::new("run"),
            WEIR.example("clicks_per_minute").as_os_str(),
            "-p".as_ref(),
            p.as_ref(),
            "-i".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = std::fs::read_to_string(&out).expect("output");
        assert_eq!(parse_windows(text.lines().map(str::to_string)), expected, "parallelism {p}");
    }
}

#[test]
fn clicks_per_minute_on_a_cluster_of_two_taskmanagers() {
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)]);
    let input = cluster.dir.path().join("clicks.txt");
    let expected = write_clicks(&input, 40_000);
    let output = cluster.dir.path().join("out");
    let wasm = WEIR.example("clicks_per_minute");
    let argv = [
        OsStr::new("submit"),
        "-p".as_ref(),
        "3".as_ref(),
        wasm.as_os_str(),
        "-i".as_ref(),
        input.as_os_str(),
        "--output-dir".as_ref(),
        output.as_os_str(),
    ];
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the job's output", || {
        let status = cluster.status();
        assert!(!status.contains(" FAILED "), "{status}\n{}", cluster.log("jobmanager"));
        status.contains(" FINISHED ")
    });
    assert_eq!(parse_windows(part_lines(&output)), expected);
}

/// The per-(key, window) counts of `window_count` over `n` generated records: record i
/// has key splitmix64(i) % keys and event time i / records_per_ms.
fn window_counts(n: u64, keys: u64, records_per_ms: u64, size_ms: i64) -> BTreeMap<(String, i64), u64> {
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let ts = (i / records_per_ms) as i64;
        *expected.entry(((splitmix64(i) % keys).to_string(), ts - ts.rem_euclid(size_ms))).or_default() += 1;
    }
    expected
}

/// Submits `window_count` (tumbling 1 s windows over `n` records, 20 per ms, 500 keys,
/// slowed down by busy work) with checkpoints every 300 ms; extra arguments after the
/// component. Its job id.
fn submit_window_count(cluster: &TestCluster, n: u64, parallelism: &str, output: &Path, extra: &[&OsStr]) -> String {
    let wasm = WEIR.example("window_count");
    let args = [
        "submit",
        "-p",
        parallelism,
        "--arg",
        &format!("n={n}"),
        "--arg",
        "keys=500",
        "--arg",
        "records-per-ms=20",
        "--arg",
        "size-ms=1000",
        "--arg",
        "work=3000",
        "--arg",
        "sink=file",
        "--checkpoint-interval",
        "300",
        "--restart",
        "fixed-delay:10:100",
        "--detach",
    ];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.extend([wasm.as_os_str(), OsStr::new("--output-dir"), output.as_os_str()]);
    argv.extend(extra);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string()
}

/// The status line of `job`.
fn job_line(cluster: &TestCluster, job: &str) -> String {
    cluster.status().lines().find(|l| l.contains(job)).unwrap_or_default().to_string()
}

/// Waits until `job` finished, failing (with the JobManager's log) if it failed.
fn wait_finished(cluster: &TestCluster, job: &str, what: &str) {
    wait_until(what, || {
        let l = job_line(cluster, job);
        assert!(!l.contains(" FAILED "), "{l}\n{}", cluster.log("jobmanager"));
        l.contains(" FINISHED ")
    });
}

/// The value of a `name=value` field of a status line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(name))
}

/// Waits until `job` is running with checkpoint `at_least` completed (at 300 ms
/// intervals), failing if it ended.
fn wait_checkpointed(cluster: &TestCluster, job: &str, at_least: u64) {
    wait_until("a completed checkpoint while windows are open", || {
        let l = job_line(cluster, job);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "the job must still run: {l}");
        l.contains(" RUNNING ") && field(&l, "checkpoint=").is_some_and(|c| c.parse::<u64>().is_ok_and(|c| c >= at_least))
    });
}

/// GETs `path` of the cluster's REST API as JSON.
fn rest_json(cluster: &TestCluster, path: &str) -> serde_json::Value {
    let auth = format!("Bearer {}", cluster.token);
    let (status, body) = weir_testkit::http::request("GET", &format!("{}{path}", cluster.rest), &[("Authorization", &auth)], &[]);
    assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

/// The window vertex's watermark in the job's metrics document, checked against its
/// subtasks' (the vertex shows their lowest), and in the JobManager's Prometheus text.
fn window_watermark(cluster: &TestCluster, job: &str) -> Option<i64> {
    let m = rest_json(cluster, &format!("/api/v1/jobs/{job}/metrics"));
    let vertices = m["vertices"].as_array().expect("vertices");
    let window = vertices.iter().find(|v| v["name"].as_str().is_some_and(|n| n.starts_with("count"))).expect("the window vertex");
    let subtasks: Vec<Option<i64>> = window["subtasks"].as_array().expect("subtasks").iter().map(|s| s["watermark"].as_i64()).collect();
    let lowest = subtasks.iter().copied().min().flatten();
    assert_eq!(window["watermark"].as_i64(), lowest, "the vertex shows its subtasks' lowest watermark: {window}");
    let source = vertices.iter().find(|v| v["name"].as_str().is_some_and(|n| n.starts_with("numbers"))).expect("the source vertex");
    if let (Some(w), Some(s)) = (lowest, source["watermark"].as_i64()) {
        // The source's report may be newer, never older by more than a heartbeat.
        assert!(w >= 0 && s >= 0, "event time of generated records is non-negative: {m}");
    }
    let (status, text) = weir_testkit::http::request("GET", &format!("{}/metrics", cluster.rest), &[], &[]);
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&text);
    if lowest.is_some() {
        assert!(
            text.lines().any(|l| l.starts_with("weir_vertex_watermark_milliseconds{") && l.contains(job) && l.contains("vertex_name=\"count")),
            "/metrics has the window vertex's watermark:\n{text}"
        );
    }
    lowest
}

/// A savepoint taken at parallelism 2 while windows are open and their timers pending
/// resumes at parallelism 3: the timers move with their key groups, and every window
/// fires exactly once over both runs' committed output.
#[test]
fn a_savepoint_with_pending_timers_at_parallelism_2_resumes_at_3() {
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let n = 400_000u64;
    let (first, second) = (cluster.dir.path().join("out-p2"), cluster.dir.path().join("out-p3"));
    let job = submit_window_count(&cluster, n, "2", &first, &[]);
    // Observability: event time shows per vertex and subtask while the job runs, and
    // only moves forward (20 records per ms, so it stays below n / 20 ms).
    let mut seen = None;
    wait_until("the window vertex's watermark to advance", || {
        let now = window_watermark(&cluster, &job);
        assert!(now >= seen, "watermarks never go back: {seen:?} then {now:?}");
        assert!(now.is_none_or(|w| w < (n / 20) as i64), "{now:?}");
        let advanced = seen.is_some() && now > seen;
        seen = now;
        advanced
    });
    // Late enough that some windows fired and were committed before the stop.
    wait_checkpointed(&cluster, &job, 5);
    let savepoint = cluster.dir.path().join("savepoint");
    let o = cluster.client(&[OsStr::new("savepoint"), OsStr::new(&job), OsStr::new("--dir"), savepoint.as_os_str(), OsStr::new("--stop")]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the job to stop", || job_line(&cluster, &job).contains(" CANCELED "));
    let before = part_lines(&first);
    let resumed = submit_window_count(&cluster, n, "3", &second, &[OsStr::new("--from-savepoint"), savepoint.as_os_str()]);
    wait_finished(&cluster, &resumed, "the resumed job to finish");
    let after = part_lines(&second);
    assert!(!before.is_empty() && !after.is_empty(), "windows fired in both runs: {} and {}", before.len(), after.len());
    assert_eq!(parse_windows(before.into_iter().chain(after)), window_counts(n, 500, 20, 1_000));
}

/// A TaskManager is SIGKILLed while windows are open and their timers pending; the job
/// restores from its last checkpoint and every window fires exactly once in the
/// committed output.
#[test]
fn windows_fire_exactly_once_across_a_killed_taskmanager() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let n = 600_000u64;
    let output = cluster.dir.path().join("out");
    let job = submit_window_count(&cluster, n, "2", &output, &[]);
    wait_checkpointed(&cluster, &job, 2);
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_finished(&cluster, &job, "the job to finish after a restart");
    assert_eq!(field(&job_line(&cluster, &job), "restarts="), Some("1"), "{}", job_line(&cluster, &job));
    assert_eq!(parse_windows(part_lines(&output)), window_counts(n, 500, 20, 1_000));
}

/// Processing-time timers on a cluster: `timeout_counts` flushes each key's count a
/// second of processing time after the key's first record of a round. A TaskManager
/// is SIGKILLed while rounds are open; the timers pending in the restored checkpoint
/// fire after the restore (late) rather than being lost, so the committed counts of
/// every key add up to its records exactly (a lost timer would strand its round's
/// count, since a round's first record sets the only timer). More lines than keys
/// show timers firing while the job runs, not only at the end of the input (which
/// fires the pending ones).
#[test]
fn processing_time_timers_fire_on_a_cluster_and_after_a_restore() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let (n, keys) = (300_000u64, 40u64);
    let output = cluster.dir.path().join("out");
    let wasm = WEIR.example("timeout_counts");
    let args = [
        "submit",
        "-p",
        "2",
        "--arg",
        &format!("n={n}"),
        "--arg",
        &format!("keys={keys}"),
        "--arg",
        "timeout-ms=1000",
        "--arg",
        "work=15000",
        "--checkpoint-interval",
        "300",
        "--restart",
        "fixed-delay:10:100",
        "--detach",
    ];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.extend([wasm.as_os_str(), OsStr::new("--output-dir"), output.as_os_str()]);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    let job = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    wait_checkpointed(&cluster, &job, 4);
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_finished(&cluster, &job, "the job to finish after a restart");
    assert_eq!(field(&job_line(&cluster, &job), "restarts="), Some("1"), "{}", job_line(&cluster, &job));
    let lines = part_lines(&output);
    let mut sums: BTreeMap<u64, u64> = BTreeMap::new();
    for line in &lines {
        let (key, count) = line.split_once('\t').unwrap_or_else(|| panic!("key<TAB>count: {line:?}"));
        *sums.entry(key.parse().expect("key")).or_default() += count.parse::<u64>().expect("count");
    }
    let expected: BTreeMap<u64, u64> = (0..keys).map(|k| (k, n / keys)).collect();
    assert_eq!(sums, expected, "every record counted once in a flushed round");
    assert!(lines.len() as u64 > keys, "timers fired while the job ran: {} lines for {keys} keys", lines.len());
}

/// Which windows `late_data` counts in, as the reference below computes them.
#[derive(Clone, Copy)]
enum Assigner {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

/// One open window of a key in the reference: its bounds, count and whether it fired.
struct RefWindow {
    start: i64,
    end: i64,
    count: u64,
    fired: bool,
}

/// `late_data` computed here, from Flink's rules rather than Weir's code: each record
/// arrives at watermark `w`; a window fires once when `w` reaches its last instant and
/// is dropped when `w` reaches that plus the allowed lateness; a record for a fired but
/// kept window updates it and fires it again at once; a record no window takes goes to
/// the late side output.
struct Reference {
    assigner: Assigner,
    lateness: i64,
    watermark: i64,
    windows: BTreeMap<String, Vec<RefWindow>>,
    /// (user, start, end) -> every count written for the window, in order.
    fired: BTreeMap<(String, i64, i64), Vec<u64>>,
    /// `user<TAB><ms> <user>` lines of the late side output.
    late: Vec<String>,
    /// Firings of a window that had fired before (allowed lateness at work).
    refired: usize,
    /// Late records that merged two sessions or more.
    bridged: usize,
}

impl Reference {
    fn new(assigner: Assigner, lateness: i64) -> Self {
        Reference { assigner, lateness, watermark: i64::MIN, windows: BTreeMap::new(), fired: BTreeMap::new(), late: vec![], refired: 0, bridged: 0 }
    }

    fn emit(&mut self, user: &str, w: (i64, i64, u64)) {
        let counts = self.fired.entry((user.to_string(), w.0, w.1)).or_default();
        if !counts.is_empty() {
            self.refired += 1;
        }
        counts.push(w.2);
    }

    fn advance(&mut self, watermark: i64) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        let mut out = vec![];
        for (user, ws) in &mut self.windows {
            for w in ws.iter_mut().filter(|w| !w.fired && w.end - 1 <= watermark) {
                w.fired = true;
                out.push((user.clone(), (w.start, w.end, w.count)));
            }
            ws.retain(|w| (w.end - 1).saturating_add(self.lateness) > watermark);
        }
        for (user, w) in out {
            self.emit(&user, w);
        }
    }

    fn record(&mut self, user: &str, ts: i64) {
        let (wm, lateness) = (self.watermark, self.lateness);
        let ws = self.windows.entry(user.to_string()).or_default();
        let mut out = vec![];
        let taken = match self.assigner {
            Assigner::Session(gap) => {
                let (mut start, mut end) = (ts, ts + gap);
                let meets: Vec<usize> = (0..ws.len()).filter(|&i| ws[i].end >= ts && ws[i].start <= ts + gap).collect();
                for &i in &meets {
                    (start, end) = (start.min(ws[i].start), end.max(ws[i].end));
                }
                if end - 1 + lateness <= wm {
                    false
                } else {
                    if meets.len() > 1 && end - 1 <= wm {
                        self.bridged += 1;
                    }
                    let count = meets.iter().map(|&i| ws[i].count).sum::<u64>() + 1;
                    for &i in meets.iter().rev() {
                        ws.remove(i);
                    }
                    let fired = end - 1 <= wm;
                    if fired {
                        out.push((start, end, count));
                    }
                    ws.push(RefWindow { start, end, count, fired });
                    ws.sort_by_key(|w| w.start);
                    true
                }
            }
            Assigner::Tumbling(size) | Assigner::Sliding(size, _) => {
                let slide = match self.assigner {
                    Assigner::Sliding(_, slide) => slide,
                    _ => size,
                };
                let mut taken = false;
                let mut start = ts - ts.rem_euclid(slide);
                while start > ts - size {
                    let end = start + size;
                    if let Some(w) = ws.iter_mut().find(|w| w.start == start) {
                        w.count += 1;
                        if end - 1 <= wm {
                            out.push((start, end, w.count));
                        }
                        taken = true;
                    } else if end - 1 + lateness > wm {
                        let fired = end - 1 <= wm;
                        if fired {
                            out.push((start, end, 1));
                        }
                        ws.push(RefWindow { start, end, count: 1, fired });
                        taken = true;
                    }
                    start -= slide;
                }
                taken
            }
        };
        for w in out {
            self.emit(user, w);
        }
        if !taken {
            self.late.push(format!("{user}\t{ts} {user}"));
        }
    }
}

/// Click lines for `late_data` (bound 2000 ms) and the reference's results over them.
///
/// The watermark comes from one assigner subtask after each batch it reads (about a
/// thousand records), so only records whose lateness does not depend on where batches
/// end are late: on-time clicks lag the newest by less than the bound, and every so
/// often 2500 on-time fillers that never raise the newest time are followed by probes
/// lagging far behind, whose watermark is then exactly the newest time minus the bound
/// minus one wherever a batch ends.
fn write_late_clicks(path: &Path, assigner: Assigner, lateness: i64, users: u64) -> Reference {
    const BOUND: i64 = 2_000;
    let mut text = String::new();
    let mut reference = Reference::new(assigner, lateness);
    let mut newest = i64::MIN;
    let line = |text: &mut String, reference: &mut Reference, ts: i64, user: &str, newest: &mut i64| {
        text.push_str(&format!("{ts} {user}\n"));
        reference.advance(newest.saturating_sub(BOUND + 1));
        reference.record(user, ts);
        *newest = (*newest).max(ts);
    };
    let mut r = 0u64;
    for round in 0..30u64 {
        for i in 0..400u64 {
            r = splitmix64(round << 20 | i);
            let t = ((round * 400 + i) * 25) as i64;
            line(&mut text, &mut reference, t - (r % 1_500) as i64, &format!("u{}", r % users), &mut newest);
            if r.is_multiple_of(61) {
                text.push_str("not a click\n");
            }
        }
        for i in 0..2_500u64 {
            r = splitmix64(r ^ i);
            line(&mut text, &mut reference, newest - 100 - (r % 1_000) as i64, &format!("u{}", r % users), &mut newest);
        }
        for i in 0..12u64 {
            r = splitmix64(r ^ (i + 7));
            let lag = BOUND + 1 + (r % 3_000) as i64;
            line(&mut text, &mut reference, newest - lag, &format!("u{}", (r >> 32) % users), &mut newest);
        }
        for i in 0..2_500u64 {
            r = splitmix64(r ^ (i + 1_000_000));
            line(&mut text, &mut reference, newest - 100 - (r % 1_000) as i64, &format!("u{}", r % users), &mut newest);
        }
    }
    // The end of the input fires every window left.
    reference.advance(i64::MAX);
    std::fs::write(path, text).expect("write clicks");
    reference
}

/// `user<TAB><start> <end> <count>` lines as (user, start, end) -> the counts in order.
fn parse_firings(lines: impl IntoIterator<Item = String>) -> BTreeMap<(String, i64, i64), Vec<u64>> {
    let mut got: BTreeMap<_, Vec<u64>> = BTreeMap::new();
    for line in lines {
        let (user, value) = line.split_once('\t').unwrap_or_else(|| panic!("key<TAB>value: {line:?}"));
        let fields: Vec<i64> = value.split(' ').map(|f| f.parse().unwrap_or_else(|_| panic!("numbers: {line:?}"))).collect();
        let [start, end, count] = fields[..] else { panic!("start, end, count: {line:?}") };
        got.entry((user.to_string(), start, end)).or_default().push(count as u64);
    }
    got
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

/// Runs `late_data` embedded at parallelism 1 and 3 and checks both outputs exactly
/// against the reference: every window's firings in order, re-firings included, and
/// the late side output's records in their own sink.
fn late_data_at_1_and_3(windows: &[&str], assigner: Assigner) -> Reference {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("clicks.txt");
    let reference = write_late_clicks(&input, assigner, 1_000, 40);
    for p in ["1", "3"] {
        let (out, late) = (dir.path().join(format!("out-{p}.tsv")), dir.path().join(format!("late-{p}.tsv")));
        let wasm = WEIR.example("late_data");
        let mut argv: Vec<&OsStr> = ["run", "-p", p, "--arg", "lateness-ms=1000"].into_iter().map(OsStr::new).collect();
        let late_arg = format!("late-output={}", late.display());
        argv.extend([wasm.as_os_str(), OsStr::new("--arg"), OsStr::new(&late_arg)]);
        for w in windows {
            argv.extend([OsStr::new("--arg"), OsStr::new(w)]);
        }
        argv.extend([OsStr::new("-i"), input.as_os_str(), OsStr::new("-o"), out.as_os_str()]);
        let o = WEIR.run(&argv);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = std::fs::read_to_string(&out).expect("output");
        assert_eq!(parse_firings(text.lines().map(str::to_string)), reference.fired, "windows at parallelism {p}");
        let late_lines = std::fs::read_to_string(&late).unwrap_or_default().lines().map(str::to_string).collect();
        assert_eq!(sorted(late_lines), sorted(reference.late.clone()), "late side output at parallelism {p}");
    }
    assert!(!reference.late.is_empty(), "the input has records past the allowed lateness");
    assert!(reference.refired > 0, "the input has late records within the allowed lateness");
    reference
}

#[test]
fn tumbling_windows_refire_for_late_records_and_send_later_ones_to_a_side_output() {
    late_data_at_1_and_3(&["windows=tumbling", "size-ms=1000"], Assigner::Tumbling(1_000));
}

#[test]
fn a_late_record_within_the_allowed_lateness_merges_two_sessions() {
    let reference = late_data_at_1_and_3(&["windows=session", "gap-ms=300"], Assigner::Session(300));
    assert!(reference.bridged > 0, "a late record bridged fired sessions");
}

#[test]
fn sliding_windows_with_late_records_are_exact() {
    late_data_at_1_and_3(&["windows=sliding", "size-ms=1000", "slide-ms=250"], Assigner::Sliding(1_000, 250));
}

#[test]
fn late_records_reach_their_side_output_sink_on_a_cluster_of_two_taskmanagers() {
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)]);
    let input = cluster.dir.path().join("clicks.txt");
    let reference = write_late_clicks(&input, Assigner::Tumbling(1_000), 1_000, 40);
    let (output, late) = (cluster.dir.path().join("out"), cluster.dir.path().join("late"));
    let wasm = WEIR.example("late_data");
    let late_arg = format!("late-output={}", late.display());
    let argv = [
        OsStr::new("submit"),
        "-p".as_ref(),
        "3".as_ref(),
        "--arg".as_ref(),
        late_arg.as_ref(),
        wasm.as_os_str(),
        "-i".as_ref(),
        input.as_os_str(),
        "--output-dir".as_ref(),
        output.as_os_str(),
    ];
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the job's output", || {
        let status = cluster.status();
        assert!(!status.contains(" FAILED "), "{status}\n{}", cluster.log("jobmanager"));
        status.contains(" FINISHED ")
    });
    assert_eq!(parse_firings(part_lines(&output)), reference.fired);
    assert_eq!(sorted(part_lines(&late)), sorted(reference.late.clone()));

    // Observability: the window vertex counts its late records, all routed to the
    // late sink. Run again without that sink: the same records, all dropped.
    let late_count = |job: &str| -> (u64, u64) {
        let m = rest_json(&cluster, &format!("/api/v1/jobs/{job}/metrics"));
        let late: Vec<serde_json::Value> = m["vertices"]
            .as_array()
            .expect("vertices")
            .iter()
            .flat_map(|v| v["sideOutputs"].as_array().cloned().unwrap_or_default())
            .filter(|s| s["name"] == "late")
            .collect();
        assert_eq!(late.len(), 1, "one window operator with a late output: {m}");
        (late[0]["records"].as_u64().expect("records"), late[0]["dropped"].as_u64().expect("dropped"))
    };
    let finished = |name: &str| -> Vec<String> {
        cluster
            .status()
            .lines()
            .filter(|l| l.contains(name) && l.contains(" FINISHED "))
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
            .collect()
    };
    let first = finished(" late_data ");
    assert_eq!(first.len(), 1, "{}", cluster.status());
    let expected = reference.late.len() as u64;
    assert_eq!(late_count(&first[0]), (expected, 0), "late records counted, none dropped");
    let again = cluster.dir.path().join("out-again");
    let o = cluster.client(&[
        OsStr::new("submit"),
        OsStr::new("-p"),
        OsStr::new("3"),
        wasm.as_os_str(),
        OsStr::new("-i"),
        input.as_os_str(),
        OsStr::new("--output-dir"),
        again.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the second job to finish", || finished(" late_data ").len() == 2);
    let second = finished(" late_data ").into_iter().find(|j| *j != first[0]).expect("the second job");
    assert_eq!(late_count(&second), (expected, expected), "without a late sink every late record is dropped, and counted");
}
