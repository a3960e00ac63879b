//! One job, four languages: a manifest assembles a Rust parser, a Python enrichment, a
//! JavaScript filter and a C keyed count (examples-wasm/polyglot) into one job, run on
//! the embedded cluster and on two TaskManagers, and crashed in between.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use weir_testkit::{TestCluster, splitmix64, stderr};

use crate::WEIR;

const COUNTRIES: &[&str] = &["US", "ca", " DE", "fr ", "GB", "nl", "ES", "IT", "JP", "cn", "IN", "SG", "KR", "MX", "BR", "za"];

/// `n` orders as CSV (`order_id,customer,country,amount`) with blank, comment and
/// malformed lines mixed in; deterministic.
fn orders(n: u64) -> String {
    let mut s = String::from("# order_id,customer,country,amount\n");
    for i in 0..n {
        let r = splitmix64(i);
        let country = COUNTRIES[(r % COUNTRIES.len() as u64) as usize];
        let amount = (r >> 20) % 40;
        let line = match i % 97 {
            7 => String::new(),
            13 => format!("# note {i}"),
            29 => format!("{i},only-three,US"),
            41 => format!("{i},customer-{},US,lots", r % 1000),
            _ => format!("{i}, customer-{} ,{country},{amount}", r % 1000),
        };
        s.push_str(&line);
        s.push('\n');
    }
    s
}

fn region(country: &str) -> &'static str {
    match country {
        "US" | "CA" | "MX" => "americas",
        "DE" | "FR" | "GB" | "NL" | "ES" | "IT" => "europe",
        "JP" | "CN" | "IN" | "SG" | "KR" => "asia",
        _ => "other",
    }
}

/// What the job must print, computed here independently: for each region with `k`
/// orders of at least 10, the lines `region<TAB>1` .. `region<TAB>k` (running
/// counts), sorted.
fn expected(input: &str) -> Vec<String> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for line in input.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let [_, _, country, amount] = fields[..] else { continue };
        let Ok(amount) = amount.trim().parse::<u64>() else { continue };
        if amount >= 10 {
            *counts.entry(region(&country.trim().to_uppercase())).or_default() += 1;
        }
    }
    let mut lines: Vec<String> = counts.iter().flat_map(|(r, &k)| (1..=k).map(move |i| format!("{r}\t{i}"))).collect();
    lines.sort();
    lines
}

/// Lines of every file in `dir` whose name starts with `part-`, sorted.
pub(crate) fn part_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir").flatten() {
        if entry.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(std::fs::read_to_string(entry.path()).expect("part file").lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

fn manifest() -> std::path::PathBuf {
    WEIR.polyglot().join("orders.toml")
}

#[test]
fn four_languages_in_one_job_on_the_embedded_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = orders(20_000);
    std::fs::write(dir.path().join("orders.csv"), &input).expect("write input");
    let out = dir.path().join("counts.txt");
    let csv = dir.path().join("orders.csv");
    let m = manifest();
    // Twice, with a cache of compiled components of its own: the first run compiles
    // all four components (Python and JavaScript take seconds), the second only reads
    // them back.
    let cache = dir.path().join("cache");
    let run = |out: &Path| {
        let args = [
            OsStr::new("run"),
            m.as_os_str(),
            OsStr::new("--input"),
            csv.as_os_str(),
            OsStr::new("--output"),
            out.as_os_str(),
            OsStr::new("-p"),
            OsStr::new("2"),
        ];
        let o = WEIR.command().args(args).env("WEIR_CACHE_DIR", &cache).env("WEIR_LOG", "info").output().expect("weir starts");
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    let first = run(&dir.path().join("first.txt"));
    assert_eq!(stderr(&first).matches("compiled the component").count(), 4, "{}", stderr(&first));
    let o = run(&out);
    assert_eq!(stderr(&o).matches("loaded the compiled component from the cache").count(), 4, "{}", stderr(&o));
    assert!(!stderr(&o).contains("compiled the component hash"), "{}", stderr(&o));
    let mut lines: Vec<String> = std::fs::read_to_string(&out).expect("output").lines().map(str::to_string).collect();
    lines.sort();
    let want = expected(&input);
    assert!(want.len() > 10_000, "the test input keeps most orders");
    assert_eq!(lines, want);
    // Every stage ran in its own language's component and saw records.
    let report = stderr(&o);
    for stage in ["parse", "enrich", "filter", "count"] {
        assert!(report.contains(stage), "{report}");
    }
}

#[test]
fn four_languages_in_one_job_on_two_taskmanagers() {
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)]);
    let input = orders(20_000);
    let path = cluster.dir.path().join("orders.csv");
    std::fs::write(&path, &input).expect("write input");
    let out = cluster.dir.path().join("out");
    let m = manifest();
    let args = [OsStr::new("submit"), OsStr::new("-p"), OsStr::new("2"), m.as_os_str(), OsStr::new("--input"), path.as_os_str()];
    let mut argv = args.to_vec();
    argv.extend([OsStr::new("--output-dir"), out.as_os_str()]);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.log("jobmanager"));
    assert_eq!(part_lines(&out), expected(&input));
    // Both TaskManagers ran operators, so both were shipped all four components.
    for tm in ["taskmanager-1", "taskmanager-2"] {
        let log = cluster.log(tm);
        assert_eq!(log.matches("received a component of the job").count(), 4, "{tm}: {log}");
    }
}

#[test]
fn the_polyglot_job_is_exact_after_a_taskmanager_is_killed() {
    let mut cluster = TestCluster::start_warm(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let input = orders(1_500_000);
    let path = cluster.dir.path().join("orders.csv");
    std::fs::write(&path, &input).expect("write input");
    let out = cluster.dir.path().join("out");
    let args = ["submit", "-p", "2", "--checkpoint-interval", "200", "--restart", "fixed-delay:10:200", "--detach", "--input"];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let m = manifest();
    argv.extend([path.as_os_str(), m.as_os_str(), OsStr::new("--output-dir"), out.as_os_str()]);
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    let job = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    let line = |cluster: &TestCluster| cluster.status().lines().find(|l| l.starts_with(&format!("job {job} "))).unwrap_or_default().to_string();
    cluster.wait_until("a completed checkpoint while running", || {
        let l = line(&cluster);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "the job must outlive the crash: {l}\n{}", cluster.log("jobmanager"));
        l.contains(" RUNNING ") && !l.contains("checkpoint=none")
    });
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    cluster.wait_until("the job to finish", || {
        let l = line(&cluster);
        assert!(!l.contains(" FAILED "), "{l}\n{}", cluster.log("jobmanager"));
        l.contains(" FINISHED ")
    });
    assert!(line(&cluster).contains("restarts=1"), "{}", line(&cluster));
    assert_eq!(part_lines(&out), expected(&input), "exactly once across the crash");
    // The Python stage declares state version 1 and logs what its open is handed:
    // none in the first attempt, 1 in the one restored from the checkpoint.
    let mut handed = BTreeMap::new();
    for tm in ["taskmanager-1", "taskmanager-2"] {
        for l in cluster.log(tm).lines() {
            if let Some((_, version)) = l.split_once("enrich: restored state version ") {
                *handed.entry(version.trim().to_string()).or_insert(0) += 1;
            }
        }
    }
    assert!(handed.keys().eq(["1", "None"]), "enrich was handed {handed:?}");
}

#[test]
fn manifests_are_checked_at_submission() {
    let dir = tempfile::tempdir().expect("tempdir");
    let built = WEIR.polyglot();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write manifest");
        p
    };
    let refused = |manifest: &Path, wanted: &[&str]| {
        let o = WEIR.run([OsStr::new("run"), manifest.as_os_str(), OsStr::new("--output"), dir.path().join("o").as_os_str()]);
        let err = stderr(&o);
        assert!(!o.status.success(), "accepted: {err}");
        for w in wanted {
            assert!(err.contains(w), "{err} does not mention {w:?}");
        }
    };
    let job = |component: &Path| {
        format!(
            "name = \"x\"\n[[node]]\nuid = \"n\"\nsource = \"generator\"\ncount = 10\n[[node]]\nuid = \"op\"\ncomponent = {:?}\n[[node]]\nuid = \"out\"\nsink = \"discard\"\n",
            component.display().to_string()
        )
    };
    // A component of another WIT version is not an operator component.
    refused(
        &write("old.toml", &job(&WEIR.example("wrong_world"))),
        &["component", "does not implement weir:dataflow/operator-component@0.2.0", "@0.1.0"],
    );
    refused(&write("missing.toml", &job(&dir.path().join("nope.wasm"))), &["nope.wasm"]);
    refused(&write("syntax.toml", "name = \"x\"\n[[node]]\nuid = \"a\"\nsorce = \"generator\"\n"), &["unknown field `sorce`"]);
    // A source or sink that is not built in is a connector, checked by kind.
    refused(
        &write("connector.toml", &job(&built.join("count.wasm")).replace("sink = \"discard\"", "sink = \"nosuch\"\noptions = { a = 1 }")),
        &["node \"out\": unknown connector \"nosuch\""],
    );
    refused(&write("graph.toml", &job(&built.join("count.wasm")).replace("uid = \"out\"", "uid = \"op\"")), &["two nodes have the uid \"op\""]);
    // An operator-only component cannot run without a manifest, and says so.
    let o = WEIR.run([OsStr::new("run"), built.join("enrich.wasm").as_os_str()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not export weir:dataflow/job@0.2.0 (an operator-only component runs from a job manifest)"), "{}", stderr(&o));
    // An operator id the component does not have fails the job, naming the operator.
    let text = job(&built.join("enrich.wasm")).replace("uid = \"op\"", "uid = \"op\"\noperator = 5");
    let o = WEIR.run([OsStr::new("run"), write("op.toml", &text).as_os_str()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("\"op\""), "{}", stderr(&o));
}

#[test]
fn weir_new_scaffolds_an_operator_that_builds_and_runs_in_every_language() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "hello weir\nstreams in wasm\n").expect("write input");
    for lang in ["rust", "python", "js", "c"] {
        let name = format!("upper-{lang}");
        let o = WEIR.run([OsStr::new("new"), OsStr::new("--lang"), OsStr::new(lang), OsStr::new(&name), OsStr::new("--dir"), dir.path().as_os_str()]);
        assert!(o.status.success(), "{lang}: {}", stderr(&o));
        let project = dir.path().join(&name);
        let built = std::process::Command::new("bash")
            .arg(project.join("build.sh"))
            // Rust projects share one target directory across test runs.
            .env("CARGO_TARGET_DIR", WEIR.target_dir().join("new-projects"))
            .output()
            .expect("bash runs");
        assert!(built.status.success(), "{lang}: the scaffold does not build: {}", stderr(&built));
        let manifest = project.join("job.toml");
        let text = format!(
            "name = \"{name}\"\n[[node]]\nuid = \"lines\"\nsource = \"text-lines\"\n[[node]]\nuid = \"upper\"\ncomponent = \"{name}.wasm\"\n[[node]]\nuid = \"out\"\nsink = \"file\"\n"
        );
        std::fs::write(&manifest, text).expect("write manifest");
        let out = project.join("out.txt");
        let o = WEIR.run([OsStr::new("run"), manifest.as_os_str(), OsStr::new("-i"), input.as_os_str(), OsStr::new("--output"), out.as_os_str()]);
        assert!(o.status.success(), "{lang}: {}", stderr(&o));
        let printed = std::fs::read_to_string(&out).expect("output");
        let mut lines: Vec<&str> = printed.lines().collect();
        lines.sort_unstable();
        // An empty key, a tab, the value: the line as text-lines gave it, uppercased.
        assert_eq!(lines, ["\tHELLO WEIR", "\tSTREAMS IN WASM"], "{lang}");
    }
    let o = WEIR.run([OsStr::new("new"), OsStr::new("--lang"), OsStr::new("c"), OsStr::new("upper-c"), OsStr::new("--dir"), dir.path().as_os_str()]);
    assert!(!o.status.success() && stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = WEIR.run([OsStr::new("new"), OsStr::new("--lang"), OsStr::new("c"), OsStr::new("../x"), OsStr::new("--dir"), dir.path().as_os_str()]);
    assert!(!o.status.success() && stderr(&o).contains("use letters, digits"), "{}", stderr(&o));
}

// ---- event time: keyed process functions with timers in Python, JavaScript and C ----

/// Out-of-orderness the window manifests declare on their parse node (ms).
const OUT_OF_ORDERNESS_MS: u64 = 5_000;
const WINDOW_MS: u64 = 60_000;

/// `n` events `key,ts` whose timestamps run out of order but less than the manifests'
/// bound behind the newest before them, so no record is ever late whatever the batch
/// and watermark timing: record `i` has `ts = 37 i + jitter`, jitter below 4000 ms.
/// A comment and blank lines are mixed in (the parser drops them); deterministic.
fn events(n: u64) -> String {
    let mut s = String::from("# key,ts\n");
    for i in 0..n {
        let r = splitmix64(i ^ 0x5eed);
        let ts = 37 * i + r % 4_000;
        s.push_str(&format!("k{},{ts}\n", (r >> 40) % 13));
        if i % 1_000 == 999 {
            s.push('\n');
        }
    }
    s
}

/// What a window job must print, computed here: per key and 60 s window of the events'
/// timestamps, `key<TAB><window start> <count>`, sorted.
fn expected_windows(input: &str) -> Vec<String> {
    let mut counts: BTreeMap<(&str, u64), u64> = BTreeMap::new();
    for line in input.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (key, ts) = line.split_once(',').expect("key,ts");
        let ts: u64 = ts.parse().expect("ts");
        *counts.entry((key, ts - ts % WINDOW_MS)).or_default() += 1;
    }
    let mut lines: Vec<String> = counts.iter().map(|((k, start), n)| format!("{k}\t{start} {n}")).collect();
    lines.sort();
    lines
}

/// Runs `manifest` on the embedded cluster over `input`; the output lines, sorted.
pub(crate) fn run_lines(manifest: &Path, input: &str, parallelism: u32) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, out) = (dir.path().join("events.txt"), dir.path().join("out.txt"));
    std::fs::write(&path, input).expect("write input");
    let p = parallelism.to_string();
    let args = [
        OsStr::new("run"),
        manifest.as_os_str(),
        OsStr::new("-i"),
        path.as_os_str(),
        OsStr::new("--output"),
        out.as_os_str(),
        OsStr::new("-p"),
        OsStr::new(&p),
    ];
    let o = WEIR.run(args);
    assert!(o.status.success(), "{}: {}", manifest.display(), stderr(&o));
    let mut lines: Vec<String> = std::fs::read_to_string(&out).expect("output").lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn window_job(lang: &str, parallelism: u32) {
    let input = events(20_000);
    let want = expected_windows(&input);
    assert!(want.len() > 100, "the input spans many windows of many keys");
    let got = run_lines(&WEIR.polyglot().join(format!("window-{lang}.toml")), &input, parallelism);
    assert_eq!(got, want, "window-{lang} at parallelism {parallelism}");
}

#[test]
fn an_event_time_window_in_python_counts_each_window_once() {
    window_job("python", 2);
}

#[test]
fn an_event_time_window_in_javascript_counts_each_window_once() {
    window_job("js", 1);
}

#[test]
fn an_event_time_window_in_c_counts_each_window_once() {
    window_job("c", 2);
}

/// One job, three languages: a C parser feeds a Python and a JavaScript window on two
/// branches (both keyed, each with its own timers and state) into one sink.
#[test]
fn windows_in_two_languages_share_one_event_time_job() {
    let built = WEIR.polyglot();
    let dir = tempfile::tempdir().expect("tempdir");
    let component = |name: &str| format!("{:?}", built.join(name).display().to_string());
    let text = format!(
        "name = \"windows-mixed\"\n\
         [[node]]\nuid = \"events\"\nsource = \"text-lines\"\n\
         [[node]]\nuid = \"parse\"\ncomponent = {}\nout-of-orderness-ms = {OUT_OF_ORDERNESS_MS}\n\
         [[node]]\nuid = \"py\"\ncomponent = {}\nkeyed = true\npartitioning = \"key-by\"\ninputs = [\"parse\"]\n\
         [[node]]\nuid = \"js\"\ncomponent = {}\nkeyed = true\npartitioning = \"key-by\"\ninputs = [\"parse\"]\n\
         [[node]]\nuid = \"out\"\nsink = \"file\"\ninputs = [\"py\", \"js\"]\n",
        component("parse-events.wasm"),
        component("window-python.wasm"),
        component("window-js.wasm"),
    );
    let manifest = dir.path().join("mixed.toml");
    std::fs::write(&manifest, text).expect("write manifest");
    let input = events(5_000);
    let mut want: Vec<String> = expected_windows(&input).into_iter().flat_map(|l| [l.clone(), l]).collect();
    want.sort();
    assert_eq!(run_lines(&manifest, &input, 2), want);
}

/// Processing time: the C operator sets a processing-time timer (due at once) on each
/// key's first record; it fires right after its batch and announces the key once.
#[test]
fn processing_time_timers_fire_in_c() {
    let input = events(3_000);
    let mut want: Vec<String> = (0..13).map(|k| format!("k{k}\tfirst seen")).collect();
    want.sort();
    assert_eq!(run_lines(&WEIR.polyglot().join("first-seen.toml"), &input, 2), want);
}
