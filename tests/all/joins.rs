//! Joins (example `joins`): regular inner, left and full outer, interval and window
//! joins through `weir run` at parallelism 1 and 3 and on a cluster of two
//! TaskManagers, each checked exactly against a reference computed here with plain
//! loops over the same generated rows.

use std::collections::BTreeMap;

use std::ffi::OsStr;

use weir_testkit::{TestCluster, splitmix64, stderr, wait_until};

use crate::streams::{checkpoint, job_line, part_lines, run_embedded, submit, wait_finished};

/// The arguments of a `joins` run (the example's, see its doc).
#[derive(Clone, Copy)]
struct Joins {
    left: u64,
    right: u64,
    keys: u64,
    rate: u64,
    jitter: u64,
}

/// A generated row: its id (the value) and event time.
#[derive(Clone, Copy)]
struct Row {
    id: u64,
    ts: i64,
}

impl Joins {
    fn args(&self, kind: &str, extra: &[(&str, i64)]) -> Vec<String> {
        let Joins { left, right, keys, rate, jitter } = *self;
        let mut args: Vec<(String, String)> = [("left", left), ("right", right), ("keys", keys), ("rate", rate), ("jitter", jitter)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        args.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        args.push(("kind".into(), kind.into()));
        args.into_iter().flat_map(|(k, v)| ["--arg".to_string(), format!("{k}={v}")]).collect()
    }

    /// Each side's rows by key: left row `i` has key `splitmix64(i) % keys` and time
    /// `i / rate + splitmix64(i) % jitter`; right row `j` the same with its own salts.
    fn sides(&self) -> (BTreeMap<u64, Vec<Row>>, BTreeMap<u64, Vec<Row>>) {
        let (mut left, mut right): (BTreeMap<u64, Vec<Row>>, BTreeMap<u64, Vec<Row>>) = Default::default();
        for i in 0..self.left {
            let ts = (i / self.rate + splitmix64(i) % self.jitter) as i64;
            left.entry(splitmix64(i) % self.keys).or_default().push(Row { id: i, ts });
        }
        for j in 0..self.right {
            let ts = (j / self.rate + splitmix64(j + (1 << 41)) % self.jitter) as i64;
            right.entry(splitmix64(j + (1 << 40)) % self.keys).or_default().push(Row { id: j, ts });
        }
        (left, right)
    }

    /// Sorted `key<TAB>value` lines of every pair of a key for which `pair` gives a
    /// value, plus (outer joins) the left rows without any pair as `l -` and the right
    /// rows without any as `- r`: a naive nested loop, whatever the join's state does.
    fn reference(&self, pair: impl Fn(Row, Row) -> Vec<String>, left_outer: bool, right_outer: bool) -> Vec<String> {
        let (left, right) = self.sides();
        let none = Vec::new();
        let mut lines = Vec::new();
        for key in left.keys().chain(right.keys()).collect::<std::collections::BTreeSet<_>>() {
            let (ls, rs) = (left.get(key).unwrap_or(&none), right.get(key).unwrap_or(&none));
            for l in ls {
                for r in rs {
                    lines.extend(pair(*l, *r).into_iter().map(|v| format!("{key}\t{v}")));
                }
            }
            // A row is alone when it pairs with no row of the other side.
            if left_outer {
                lines.extend(ls.iter().filter(|l| rs.iter().all(|r| pair(**l, *r).is_empty())).map(|l| format!("{key}\t{} -", l.id)));
            }
            if right_outer {
                lines.extend(rs.iter().filter(|r| ls.iter().all(|l| pair(*l, **r).is_empty())).map(|r| format!("{key}\t- {}", r.id)));
            }
        }
        lines.sort_unstable();
        lines
    }
}

fn both(l: Row, r: Row) -> Vec<String> {
    vec![format!("{} {}", l.id, r.id)]
}

/// Pairs of a regular join with a retention: rows at most `retention` ms apart.
fn within(retention: i64) -> impl Fn(Row, Row) -> Vec<String> {
    move |l, r| if (l.ts - r.ts).abs() <= retention { both(l, r) } else { vec![] }
}

fn interval(lower: i64, upper: i64) -> impl Fn(Row, Row) -> Vec<String> {
    move |l, r| if r.ts >= l.ts + lower && r.ts <= l.ts + upper { both(l, r) } else { vec![] }
}

/// Pairs per sliding window `[s, s + size)`, `s` a multiple of `slide`, holding both
/// (tumbling: `slide == size`).
fn windows(size: i64, slide: i64) -> impl Fn(Row, Row) -> Vec<String> {
    move |l, r| {
        let last = l.ts.min(r.ts).div_euclid(slide) * slide;
        let mut out = Vec::new();
        let mut s = last;
        while s > l.ts.max(r.ts) - size {
            out.push(format!("{s} {} {}", l.id, r.id));
            s -= slide;
        }
        out
    }
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort_unstable();
    lines
}

/// Runs `kind` embedded at parallelism 1 and 3; each output must be `expected`.
fn exact_at_1_and_3(j: Joins, kind: &str, extra: &[(&str, i64)], expected: &[String]) {
    let dir = tempfile::tempdir().expect("tempdir");
    for p in ["1", "3"] {
        let got = sorted(run_embedded(dir.path(), "joins", p, &j.args(kind, extra)).0);
        assert!(got == expected, "{kind} at parallelism {p}: {} lines, {} expected", got.len(), expected.len());
    }
}

/// Keys with rows on one side only exist (about 2% of keys each way), so the outer
/// joins differ from the inner one.
const REGULAR: Joins = Joins { left: 20_000, right: 20_000, keys: 5_000, rate: 10, jitter: 1 };

#[test]
fn regular_inner_left_and_full_outer_joins_are_exact_at_parallelism_1_and_3() {
    let inner = REGULAR.reference(both, false, false);
    let left = REGULAR.reference(both, true, false);
    let full = REGULAR.reference(both, true, true);
    assert!(inner.len() > 50_000 && left.len() > inner.len() && full.len() > left.len(), "{} {} {}", inner.len(), left.len(), full.len());
    exact_at_1_and_3(REGULAR, "inner", &[], &inner);
    exact_at_1_and_3(REGULAR, "left", &[], &left);
    exact_at_1_and_3(REGULAR, "full", &[], &full);
}

/// Rows shuffled within 50 ms (500 rows) of event time, watermarks allowing exactly
/// that; 200 keys so each key's rows come often enough to meet within the interval.
const SHUFFLED: Joins = Joins { left: 20_000, right: 20_000, keys: 200, rate: 10, jitter: 50 };

#[test]
fn an_interval_join_of_out_of_order_streams_is_exact_at_parallelism_1_and_3() {
    for (lower, upper) in [(-5, 10), (3, 7)] {
        let expected = SHUFFLED.reference(interval(lower, upper), false, false);
        assert!(expected.len() > 5_000, "{}", expected.len());
        exact_at_1_and_3(SHUFFLED, "interval", &[("lower", lower), ("upper", upper)], &expected);
    }
}

#[test]
fn tumbling_and_sliding_window_joins_are_exact_at_parallelism_1_and_3() {
    let tumbling = SHUFFLED.reference(windows(20, 20), false, false);
    assert!(tumbling.len() > 5_000, "{}", tumbling.len());
    exact_at_1_and_3(SHUFFLED, "tumbling", &[("size", 20)], &tumbling);
    let sliding = SHUFFLED.reference(windows(20, 10), false, false);
    assert!(sliding.len() > tumbling.len(), "{} {}", sliding.len(), tumbling.len());
    exact_at_1_and_3(SHUFFLED, "sliding", &[("size", 20), ("slide", 10)], &sliding);
}

#[test]
fn full_outer_interval_and_sliding_window_joins_are_exact_on_a_cluster_of_two_taskmanagers() {
    let cluster = TestCluster::start(crate::WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)]);
    let runs = [
        ("full", REGULAR, vec![], REGULAR.reference(both, true, true)),
        ("interval", SHUFFLED, vec![("lower", -5), ("upper", 10)], SHUFFLED.reference(interval(-5, 10), false, false)),
        ("sliding", SHUFFLED, vec![("size", 20), ("slide", 10)], SHUFFLED.reference(windows(20, 10), false, false)),
    ];
    for (kind, j, extra, expected) in runs {
        let out = cluster.dir.path().join(kind);
        let job = submit(&cluster, "joins", "3", &out, &j.args(kind, &extra));
        wait_finished(&cluster, &job);
        let got = sorted(part_lines(&out));
        assert!(got == expected, "{kind} on two TaskManagers: {} lines, {} expected", got.len(), expected.len());
    }
}

/// The retention of the regular joins' tests: with 200 keys a key's rows come about
/// every 20 ms per side, so about a third of the rows meet nothing within 10 ms.
const RETENTION: i64 = 10;

/// The three regular joins with a retention, on rows shuffled within 50 ms: the
/// arguments and the reference of each.
fn with_retention() -> [(&'static str, Vec<String>); 3] {
    let pair = || within(RETENTION);
    [
        ("inner", SHUFFLED.reference(pair(), false, false)),
        ("left", SHUFFLED.reference(pair(), true, false)),
        ("full", SHUFFLED.reference(pair(), true, true)),
    ]
}

#[test]
fn regular_joins_with_an_event_time_retention_are_exact_at_parallelism_1_and_3() {
    let runs = with_retention();
    let [(_, inner), (_, left), (_, full)] = &runs;
    let unbounded = SHUFFLED.reference(both, false, false);
    assert!(inner.len() > 10_000 && inner.len() * 10 < unbounded.len(), "the retention decides: {} of {} pairs", inner.len(), unbounded.len());
    assert!(left.len() > inner.len() + 5_000 && full.len() > left.len() + 5_000, "{} {} {}", inner.len(), left.len(), full.len());
    for (kind, expected) in &runs {
        exact_at_1_and_3(SHUFFLED, kind, &[("retention-ms", RETENTION)], expected);
    }
}

#[test]
fn a_processing_time_ttl_that_never_fires_changes_nothing() {
    let hour = 3_600_000;
    exact_at_1_and_3(REGULAR, "full", &[("ttl-ms", hour)], &REGULAR.reference(both, true, true));
    let [_, (_, left), _] = with_retention();
    exact_at_1_and_3(SHUFFLED, "left", &[("retention-ms", RETENTION), ("ttl-ms", hour), ("update-on-read", 1)], &left);
}

/// The most rows of a source batch (32 KiB of records of at least 8 bytes): the rows
/// of a side from `PAUSE_AT - BATCH_ROWS` on may come in the batch that pauses.
const BATCH_ROWS: u64 = 4_096;
const PAUSE_AT: u64 = 10_000;

/// A regular join whose sources both pause 6 s at their row 10 000 (the job makes its own
/// silence, as `state_ttl.rs` does): under a TTL of 3 s, rows from before the pause
/// never meet rows from after it, and everything else meets as without a TTL; under a
/// TTL of an hour the output is exactly the join's.
#[test]
fn rows_expire_under_a_processing_time_ttl_and_no_longer_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = REGULAR.reference(both, false, false);
    let pause = [("pause-at", PAUSE_AT as i64), ("pause-ms", 6_000)];
    let run = |ttl_ms: i64| sorted(run_embedded(dir.path(), "joins", "1", &REGULAR.args("inner", &[pause[0], pause[1], ("ttl-ms", ttl_ms)])).0);
    assert!(run(3_600_000) == expected, "a TTL longer than the pause changes nothing");

    let got: std::collections::BTreeSet<String> = run(3_000).into_iter().collect();
    // Which side of the pause a row is on: before, after, or either (the pausing batch).
    let before = |id: u64| {
        if id < PAUSE_AT - BATCH_ROWS {
            Some(true)
        } else if id >= PAUSE_AT {
            Some(false)
        } else {
            None
        }
    };
    let (mut kept, mut expired) = (0, 0);
    for line in &expected {
        let (l, r) = line.split_once('\t').and_then(|(_, v)| v.split_once(' ')).expect("key<TAB>l r");
        let (l, r): (u64, u64) = (l.parse().expect("left id"), r.parse().expect("right id"));
        match (before(l), before(r)) {
            (Some(a), Some(b)) if a == b => {
                assert!(got.contains(line), "{line}: both rows on the same side of the pause, within the TTL, must meet");
                kept += 1;
            }
            (Some(_), Some(_)) => {
                assert!(!got.contains(line), "{line}: one row expired during the pause before the other came");
                expired += 1;
            }
            _ => {}
        }
    }
    assert!(kept > 10_000 && expired > 10_000, "{kept} pairs on one side of the pause, {expired} across it");
    assert!(got.iter().all(|l| expected.binary_search(l).is_ok()), "nothing but the join's pairs");
}

#[test]
fn regular_joins_with_retention_are_exact_on_a_cluster_of_two_taskmanagers() {
    let cluster = TestCluster::start(crate::WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)]);
    for (kind, expected) in with_retention() {
        let out = cluster.dir.path().join(kind);
        let job = submit(&cluster, "joins", "3", &out, &SHUFFLED.args(kind, &[("retention-ms", RETENTION)]));
        wait_finished(&cluster, &job);
        let got = sorted(part_lines(&out));
        assert!(got == expected, "{kind} with retention on two TaskManagers: {} lines, {} expected", got.len(), expected.len());
    }
}

/// A join's state (each key's rows of both sides) and its timers (the rows' deadlines)
/// travel by key group: a full outer join with a retention, stopped with a savepoint at
/// parallelism 2 and resumed from it at 3, commits over both runs exactly the join's
/// output, pairs and unmatched rows alike.
#[test]
fn a_join_stopped_with_a_savepoint_at_parallelism_2_resumes_at_3_exactly_once() {
    let cluster = TestCluster::start_with(crate::WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let j = Joins { left: 300_000, right: 300_000, keys: 200, rate: 10, jitter: 50 };
    let expected = j.reference(within(RETENTION), true, true);
    let (first, second) = (cluster.dir.path().join("out-p2"), cluster.dir.path().join("out-p3"));
    let mut args = j.args("full", &[("retention-ms", RETENTION)]);
    args.extend(["--checkpoint-interval", "300"].map(String::from));
    let mut slow = args.clone();
    slow.extend(["--arg", "work=5000"].map(String::from));
    let job = submit(&cluster, "joins", "2", &first, &slow);
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
    let done = part_lines(&first);
    assert!(!done.is_empty() && done.len() < expected.len() / 2, "the first run stopped midway: {} of {} lines", done.len(), expected.len());

    let wasm = crate::WEIR.example("joins");
    let mut argv: Vec<std::ffi::OsString> = ["submit", "-p", "3"].iter().map(Into::into).collect();
    argv.extend([wasm.as_os_str().into(), "--output-dir".into(), second.as_os_str().into(), "--from-savepoint".into(), savepoint.as_os_str().into()]);
    argv.extend(args.into_iter().map(Into::into));
    let argv: Vec<&OsStr> = argv.iter().map(|a| a.as_os_str()).collect();
    let o = cluster.client(&argv);
    assert!(o.status.success(), "the resumed run finishes: {}", stderr(&o));

    let mut both = done;
    both.extend(part_lines(&second));
    let both = sorted(both);
    assert_eq!(both.len(), expected.len(), "every line once over both runs");
    assert!(both == expected, "the joined lines differ");
}

#[test]
fn an_interval_join_with_bounds_the_wrong_way_round_is_refused_at_planning() {
    let o = crate::WEIR.run([
        "run".as_ref(),
        crate::WEIR.example("joins").as_os_str(),
        "--arg".as_ref(),
        "kind=interval".as_ref(),
        "--arg".as_ref(),
        "lower=5".as_ref(),
        "--arg".as_ref(),
        "upper=1".as_ref(),
    ]);
    let err = weir_testkit::stderr(&o);
    assert!(!o.status.success() && err.contains("interval join \"join\": lower bound 5 is above the upper bound 1"), "{err}");
}
