//! Whole-job tests: plans as the host sees them, and batches through the dispatcher.

#![allow(clippy::unwrap_used)]

use crate::codec::build::*;
use crate::error::OpError;
use crate::prelude::*;
use crate::runtime;
use crate::window::Window;
use crate::wit::weir::dataflow::plan_types::{JobPlan, NodeKind, Partitioning, SinkKind, SourceKind};

fn wordcount(job: &mut Job) {
    let sink = match job.arg("sink") {
        Some("discard") => Sink::discard(),
        _ => Sink::default(),
    };
    job.name("wordcount");
    job.file_lines("lines")
        .flat_map("split", |line: String, out: &mut Emitter<String>| {
            for w in line.split_whitespace() {
                out.emit(w.to_string())
            }
        })
        .key_by("by-word", |w: &String| w.clone())
        .count("count")
        .sink("out", sink);
}

fn shape(plan: &JobPlan) -> (Vec<String>, Vec<(u32, u32, Partitioning)>) {
    (plan.nodes.iter().map(|n| n.uid.clone()).collect(), plan.edges.iter().map(|e| (e.source, e.target, e.partitioning)).collect())
}

fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap()
}

#[test]
fn wordcount_plan_fuses_key_and_formats_text() {
    let (plan, registry) = runtime::build_job(wordcount, vec![]).unwrap();
    assert_eq!(plan.name, "wordcount");
    let (uids, edges) = shape(&plan);
    assert_eq!(uids, ["lines", "split", "count", "out.format", "out"]);
    assert_eq!(edges, [(0, 1, Partitioning::Forward), (1, 2, Partitioning::KeyBy), (2, 3, Partitioning::Forward), (3, 4, Partitioning::Forward)]);
    assert!(matches!(plan.nodes[0].kind, NodeKind::Source(SourceKind::FileLines(None))));
    assert!(matches!(&plan.nodes[2].kind, NodeKind::Operator(spec) if spec.keyed));
    assert!(matches!(&plan.nodes[3].kind, NodeKind::Operator(spec) if !spec.keyed));
    assert!(matches!(plan.nodes[4].kind, NodeKind::Sink(SinkKind::File(None))));
    assert_eq!(registry.iter().map(Option::is_some).collect::<Vec<_>>(), [false, true, true, true, false]);
}

#[test]
fn discard_sink_has_no_formatter() {
    let (plan, _) = runtime::build_job(wordcount, args(&[("sink", "discard")])).unwrap();
    assert_eq!(shape(&plan).0, ["lines", "split", "count", "out"]);
    assert!(matches!(plan.nodes[3].kind, NodeKind::Sink(SinkKind::Discard)));
}

#[test]
fn key_by_after_source_becomes_a_node() {
    fn job(job: &mut Job) {
        job.generator("numbers", 0, 10)
            .parallelism(2)
            .key_by("bucket", |i: &u64| i % 3)
            .sum("sum")
            .parallelism(3)
            .rebalance()
            .sink("out", Sink::stdout())
            .parallelism(1);
    }
    let (plan, _) = runtime::build_job(job, vec![]).unwrap();
    let (uids, edges) = shape(&plan);
    assert_eq!(uids, ["numbers", "bucket", "sum", "out.format", "out"]);
    assert_eq!(edges, [(0, 1, Partitioning::Forward), (1, 2, Partitioning::KeyBy), (2, 3, Partitioning::Rebalance), (3, 4, Partitioning::Forward)]);
    let par: Vec<_> = plan.nodes.iter().map(|n| n.parallelism).collect();
    assert_eq!(par, [Some(2), Some(2), Some(3), Some(1), Some(1)]);
}

#[test]
fn key_by_on_a_shared_stream_is_not_fused() {
    fn job(job: &mut Job) {
        let doubled = job.generator("numbers", 0, 10).map("double", |i: u64| i * 2);
        doubled.clone().discard("raw");
        doubled.key_by("bucket", |i: &u64| i % 3).count("count").discard("counts");
    }
    let (plan, _) = runtime::build_job(job, vec![]).unwrap();
    assert_eq!(shape(&plan).0, ["numbers", "double", "raw", "bucket", "count", "counts"]);
}

#[test]
fn a_union_is_the_inputs_of_the_next_operator() {
    fn job(job: &mut Job) {
        let a = job.generator("a", 0, 10);
        let b = job.generator("b", 10, 10).parallelism(1).rebalance();
        let c = job.generator("c", 0, 10).map("square", |x: u64| x * x);
        a.union(b).union(c).key_by("bucket", |x: &u64| x % 3).count("count").discard("out");
    }
    let (plan, _) = runtime::build_job(job, vec![]).unwrap();
    let (uids, edges) = shape(&plan);
    assert_eq!(uids, ["a", "b", "c", "square", "bucket", "count", "out"]);
    let into_bucket: Vec<_> = edges.iter().filter(|e| e.1 == 4).map(|e| (e.0, e.2)).collect();
    assert_eq!(into_bucket, [(0, Partitioning::Forward), (1, Partitioning::Rebalance), (3, Partitioning::Forward)]);
    assert_eq!(plan.nodes[4].parallelism, None, "the selector after a union runs at the default parallelism");

    fn union_then_map(job: &mut Job) {
        let a = job.generator("a", 0, 10);
        let b = job.generator("b", 10, 10);
        a.union(b).rebalance().map("double", |x: u64| 2 * x).discard("out");
    }
    let (plan, _) = runtime::build_job(union_then_map, vec![]).unwrap();
    assert_eq!(shape(&plan).1, [(0, 2, Partitioning::Rebalance), (1, 2, Partitioning::Rebalance), (2, 3, Partitioning::Forward)]);

    fn with_its_own_side_output(job: &mut Job) {
        let tag = OutputTag::<u64>::new("odd");
        let split = job.generator("a", 0, 10).flat_map(
            "split",
            move |x: u64, out: &mut Emitter<u64>| {
                if x.is_multiple_of(2) { out.emit(x) } else { out.output(&tag, x) }
            },
        );
        let odd = split.side_output(&OutputTag::<u64>::new("odd"));
        split.clone().union(odd).union(split).map("all", |x: u64| x).discard("out");
    }
    let (plan, _) = runtime::build_job(with_its_own_side_output, vec![]).unwrap();
    let (uids, edges) = shape(&plan);
    assert_eq!(uids, ["a", "split", "all", "all.union-1", "all.union-2", "out"]);
    assert_eq!(
        edges[1..5],
        [(1, 2, Partitioning::Forward), (1, 3, Partitioning::Forward), (3, 2, Partitioning::Forward), (1, 4, Partitioning::Forward)]
    );
    assert_eq!(plan.edges[2].side_output.as_deref(), Some("odd"), "the side output reaches its pass-through node");
    assert_eq!(plan.edges[3].side_output, None);

    fn named_union(job: &mut Job) {
        let a = job.generator("a", 0, 10);
        let b = job.generator("b", 10, 10);
        a.union(b).parallelism(2).discard("out");
    }
    let err = runtime::build_job(named_union, vec![]).err().unwrap();
    assert!(err.contains("parallelism on a union"), "{err}");
}

#[test]
fn connect_makes_one_keyed_operator_with_two_inputs_keyed_alike() {
    struct Join;
    impl KeyedCoProcessFunction<u64, u64, String> for Join {
        type State = u64;
        type Out = String;
        fn process_element1(&mut self, ctx: &mut TimerContext<'_, u64, u64>, v: u64, _: &mut Emitter<'_, String>) {
            ctx.set_state(v);
        }
        fn process_element2(&mut self, ctx: &mut TimerContext<'_, u64, u64>, v: String, out: &mut Emitter<'_, String>) {
            out.emit(format!("{v} {:?}", ctx.state()));
        }
    }
    fn job(job: &mut Job) {
        let numbers = job.generator("numbers", 0, 10).key_by("by-number", |x: &u64| x % 5);
        let words = job.file_lines("words").key_by("by-length", |w: &String| w.len() as u64);
        numbers.connect(words).process("join", Join).discard("out");
    }
    let (plan, registry) = runtime::build_job(job, vec![]).unwrap();
    let (uids, edges) = shape(&plan);
    assert_eq!(uids, ["numbers", "by-number", "words", "by-length", "join", "out"]);
    assert_eq!(edges[..2], [(0, 1, Partitioning::Forward), (2, 3, Partitioning::Forward)]);
    let into_join: Vec<_> = plan.edges.iter().filter(|e| e.target == 4).map(|e| (e.source, e.partitioning, e.input, e.key_type.clone())).collect();
    let key = Some("u64".to_string());
    assert_eq!(into_join, [(1, Partitioning::KeyBy, 0, key.clone()), (3, Partitioning::KeyBy, 1, key)]);
    assert!(matches!(&plan.nodes[4].kind, NodeKind::Operator(spec) if spec.keyed));
    assert!(registry[4].is_some());
}

#[test]
fn duplicate_uids_and_bad_parallelism_fail_the_plan() {
    fn job(job: &mut Job) {
        job.generator("x", 0, 1).map("x", |i: u64| i).parallelism(0).discard("out");
    }
    let err = runtime::build_job(job, vec![]).err().unwrap();
    assert!(err.contains("\"x\""), "{err}");
    assert!(err.contains("parallelism"), "{err}");
}

#[test]
fn an_operator_declares_its_state_version_and_only_operators_have_one() {
    fn job(job: &mut Job) {
        job.generator("numbers", 0, 10).key_by("by-number", |x: &u64| x % 5).sum("sum").state_version(3).discard("out");
    }
    let (plan, registry) = runtime::build_job(job, vec![]).unwrap();
    let versions: Vec<_> = plan.nodes.iter().zip(&registry).map(|(n, r)| (n.uid.as_str(), r.as_ref().map(|r| r.state_version))).collect();
    assert_eq!(versions, [("numbers", None), ("by-number", Some(0)), ("sum", Some(3)), ("out", None)]);

    fn on_a_source(job: &mut Job) {
        job.generator("numbers", 0, 10).state_version(1).discard("out");
    }
    let err = runtime::build_job(on_a_source, vec![]).err().unwrap();
    assert!(err.contains("\"numbers\": only operators have a state version"), "{err}");
    // Nothing restored in a native test: no host ran it.
    assert_eq!(weir_sdk::restored_state_version(), None);
}

#[test]
fn dispatch_runs_registered_operators() {
    runtime::plan(wordcount, vec![]).unwrap();
    runtime::open(wordcount, 1, vec![]).unwrap();
    let input = records(&[(4, b"", &enc(&"a b a"))]);
    let out = runtime::process(1, &input).unwrap();
    let split = parse_output(&out).records;
    assert_eq!(split, [(4, enc(&"a"), enc(&"a")), (4, enc(&"b"), enc(&"b")), (4, enc(&"a"), enc(&"a"))]);

    // The host groups by key for the keyed count.
    let (a, b) = (enc(&"a"), enc(&"b"));
    let keyed_input = keyed(&[(&a, None), (&b, None)], &[(0, 4, &a), (1, 4, &b), (0, 4, &a)]);
    let out = runtime::process(2, &keyed_input).unwrap();
    let counted = parse_output(&out);
    assert_eq!(counted.records[2], (4, a.clone(), enc(&2u64)));

    let format_input = records(&[(4, &a, &enc(&2u64))]);
    let out = runtime::process(3, &format_input).unwrap();
    assert_eq!(parse_output(&out).records, [(4, b"a".to_vec(), b"2".to_vec())]);

    assert_eq!(runtime::process(0, &[]), Err(OpError::UnknownOperator(0)));
    assert_eq!(runtime::process(4, &[]), Err(OpError::UnknownOperator(4)));
    assert_eq!(runtime::process(99, &[]), Err(OpError::UnknownOperator(99)));
    assert!(matches!(runtime::process(1, &[1, 2, 3]), Err(OpError::BadInput(_))));
    runtime::close(1).unwrap();
}

/// Clicks per user and minute, the shape of the `clicks_per_minute` example.
fn clicks(job: &mut Job) {
    job.file_lines("clicks")
        .flat_map("parse", |line: String, out: &mut Emitter<(i64, String)>| {
            if let Some((ts, user)) = line.split_once(' ')
                && let Ok(ts) = ts.parse()
            {
                out.emit((ts, user.to_string()))
            }
        })
        .assign_timestamps("event-time", |c: &(i64, String)| c.0, WatermarkStrategy::bounded(5_000).with_idleness(60_000))
        .key_by("by-user", |c: &(i64, String)| c.1.clone())
        .window(Windows::tumbling(60_000))
        .allowed_lateness(1_000)
        .count("count")
        .map("format", |(w, n): (Window, u64)| format!("{} {n}", w.start))
        .sink("out", Sink::default());
}

#[test]
fn event_time_plan_carries_watermarks() {
    let (plan, _) = runtime::build_job(clicks, vec![]).unwrap();
    let (uids, edges) = shape(&plan);
    assert_eq!(uids, ["clicks", "parse", "event-time", "count", "format", "out.format", "out"], "the key selector runs in the assigner");
    assert_eq!(edges[2], (2, 3, Partitioning::KeyBy));
    let marks: Vec<_> = plan.nodes.iter().map(|n| n.watermarks.map(|w| (w.out_of_orderness_ms, w.idle_timeout_ms))).collect();
    assert_eq!(marks, [None, None, Some((5_000, Some(60_000))), None, None, None, None]);
    assert!(matches!(&plan.nodes[3].kind, NodeKind::Operator(spec) if spec.keyed));

    fn generated(job: &mut Job) {
        job.generator_with_time("numbers", 0, 1000, 10)
            .with_watermarks(WatermarkStrategy::monotonous())
            .key_by("mod", |i: &u64| i % 7)
            .window(Windows::sliding(100, 10))
            .sum("sum")
            .discard("out");
    }
    let (plan, _) = runtime::build_job(generated, vec![]).unwrap();
    assert!(matches!(plan.nodes[0].kind, NodeKind::Source(SourceKind::Generator(g)) if g.records_per_ms == Some(10)));
    assert_eq!(plan.nodes[0].watermarks.map(|w| (w.out_of_orderness_ms, w.idle_timeout_ms)), Some((0, None)));
}

#[test]
fn bad_event_time_settings_fail_the_plan() {
    fn job(job: &mut Job) {
        let keyed = job.generator_with_time("numbers", 0, 10, 0).key_by("k", |i: &u64| *i);
        keyed.window_processing_time(Windows::tumbling(0)).allowed_lateness(5).count("count").discard("out");
    }
    let err = runtime::build_job(job, vec![]).err().unwrap();
    assert!(err.contains("records_per_ms"), "{err}");
    assert!(err.contains("event-time windows only"), "{err}");
    assert!(err.contains("\"count\": a window's size"), "{err}");

    let mut graph = crate::graph::Graph::default();
    let sink = graph.add_node("out", crate::graph::NodeKind::Sink(SinkKind::Discard));
    graph.set_watermarks(sink, WatermarkStrategy::bounded(1));
    assert!(graph.errors.iter().any(|e| e.contains("need a source or an operator")), "{:?}", graph.errors);
}

#[test]
fn assign_timestamps_sets_ts_and_keeps_the_rest() {
    runtime::plan(clicks, vec![]).unwrap();
    let line = |ts: i64, user: &str| enc(&(ts, user.to_string()));
    let input = records(&[(0, b"", &line(61_000, "ann")), (0, b"", &line(-5, "bo"))]);
    let out = runtime::process(2, &input).unwrap();
    // Keyed by the fused selector: the user is the key, the value is untouched.
    assert_eq!(parse_output(&out).records, [(61_000, enc(&"ann"), line(61_000, "ann")), (-5, enc(&"bo"), line(-5, "bo"))]);

    let mut plain = crate::ops::assign_timestamps(|v: &u64| *v as i64 * 2);
    let input = records(&[(0, b"k", &enc(&21u64))]);
    assert_eq!(parse_output(&plain.process(&input, 0).unwrap()).records, [(42, b"k".to_vec(), enc(&21u64))]);
}

#[test]
fn on_timer_dispatches_to_the_window_operator() {
    runtime::plan(clicks, vec![]).unwrap();
    let ann = enc(&"ann");
    let minute = Window { start: 60_000, end: 120_000 };
    // The state layout: a sequence of (start, length, accumulator).
    let state = enc(&vec![(60_000i64, 60_000u64, 4u64)]);
    let input = timer_input(&[(&ann, Some(&state))], &[(0, minute.max_timestamp(), weir_batch::TimeDomain::Event)]);
    let out = runtime::on_timer(3, &input).unwrap();
    let o = parse_keyed_output(&out, 1);
    assert_eq!(o.records, [(119_999, ann.clone(), enc(&(minute, 4u64)))]);
    assert_eq!(o.states, [None], "kept for its allowed lateness");
    assert!(matches!(runtime::on_timer(1, &input), Err(OpError::Failed(_))), "parse sets no timers");
    assert_eq!(runtime::on_timer(0, &input), Err(OpError::UnknownOperator(0)));
}

/// `examples-wasm/clicks_per_minute`, without its log call (the log import needs a host).
fn clicks_per_minute(job: &mut Job) {
    type Click = (i64, String);
    fn parse(line: &str) -> Option<Click> {
        let mut fields = line.split_whitespace();
        let (Some(ts), Some(user), None) = (fields.next(), fields.next(), fields.next()) else {
            return None;
        };
        Some((ts.parse().ok()?, user.to_string()))
    }
    job.file_lines("clicks")
        .flat_map("parse", |line: String, out: &mut Emitter<Click>| {
            if let Some(click) = parse(&line) {
                out.emit(click)
            }
        })
        .assign_timestamps("event-time", |click: &Click| click.0, WatermarkStrategy::bounded(5_000))
        .key_by("by-user", |click: &Click| click.1.clone())
        .window(Windows::tumbling(60_000))
        .count("per-minute")
        .map("format", |(window, count): (Window, u64)| format!("{} {count}", window.start))
        .sink("out", Sink::default());
}

type Recs = Vec<(i64, Vec<u8>, Vec<u8>)>;

/// Runs an unkeyed operator of the planned job on `input`.
fn run(op: u32, input: &Recs) -> Recs {
    let refs: Vec<(i64, &[u8], &[u8])> = input.iter().map(|(ts, k, v)| (*ts, &k[..], &v[..])).collect();
    parse_output(&runtime::process(op, &records(&refs)).unwrap()).records
}

/// The host around one keyed operator that sets event-time timers, as the contract
/// describes it: a value state per key; timers per key and time (setting one twice is
/// a no-op); `process` with the batch grouped by key at the input's watermark; when the
/// watermark advances, `on-timer` with the due timers in firing order, grouped by key
/// with their states.
#[derive(Default)]
struct KeyedHost {
    states: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    timers: std::collections::BTreeSet<(i64, Vec<u8>)>,
}

impl KeyedHost {
    fn table<'a>(&'a self, keys: &'a [Vec<u8>]) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
        keys.iter().map(|k| (&k[..], self.states.get(k).map(|s| &s[..]))).collect()
    }

    /// Applies an output's state updates and timer changes; returns its records.
    fn apply(&mut self, keys: &[Vec<u8>], out: &[u8]) -> Recs {
        let o = parse_keyed_output(out, keys.len());
        for (key, update) in keys.iter().zip(o.states) {
            match update {
                None => {}
                Some(Some(s)) => drop(self.states.insert(key.clone(), s)),
                Some(None) => drop(self.states.remove(key)),
            }
        }
        for c in o.timers {
            assert_eq!(c.domain, weir_batch::TimeDomain::Event);
            let timer = (c.ts, keys[c.key_index as usize].clone());
            if c.set {
                self.timers.insert(timer);
            } else {
                self.timers.remove(&timer);
            }
        }
        o.records
    }

    fn process(&mut self, op: u32, watermark: i64, input: &Recs) -> Recs {
        crate::time::test_host::WATERMARK.with(|w| w.set(watermark));
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut recs = Vec::new();
        for (ts, key, value) in input {
            let index = keys.iter().position(|k| k == key).unwrap_or_else(|| {
                keys.push(key.clone());
                keys.len() - 1
            });
            recs.push((index as u32, *ts, &value[..]));
        }
        let batch = keyed(&self.table(&keys), &recs);
        let out = runtime::process(op, &batch).unwrap();
        self.apply(&keys, &out)
    }

    /// Moves the watermark to `watermark` and fires the timers it reached.
    fn advance(&mut self, op: u32, watermark: i64) -> Recs {
        crate::time::test_host::WATERMARK.with(|w| w.set(watermark));
        let due: Vec<(i64, Vec<u8>)> = self.timers.iter().take_while(|(ts, _)| *ts <= watermark).cloned().collect();
        if due.is_empty() {
            return Vec::new();
        }
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut fired = Vec::new();
        for (ts, key) in &due {
            self.timers.remove(&(*ts, key.clone()));
            let index = keys.iter().position(|k| k == key).unwrap_or_else(|| {
                keys.push(key.clone());
                keys.len() - 1
            });
            fired.push((index as u32, *ts, weir_batch::TimeDomain::Event));
        }
        let out = runtime::on_timer(op, &timer_input(&self.table(&keys), &fired)).unwrap();
        self.apply(&keys, &out)
    }
}

#[test]
fn clicks_per_minute_on_a_simulated_host() {
    let (plan, _) = runtime::build_job(clicks_per_minute, vec![]).unwrap();
    assert_eq!(shape(&plan).0, ["clicks", "parse", "event-time", "per-minute", "format", "out.format", "out"]);
    runtime::plan(clicks_per_minute, vec![]).unwrap();
    let mut host = KeyedHost::default();
    let (mut watermark, mut newest) = (i64::MIN, i64::MIN);
    let mut lines = Vec::new();
    let batches: [&[&str]; 3] = [
        &["60000 ann", "61000 bo", "not a click", "119999 ann"],
        // At watermark 114998 the window [0, 60000) is gone: 59999 is late.
        &["120000 ann", "118000 bo", "   ", "59999 ann"],
        &["200000 bo x", "185000 cy"],
    ];
    let sink = |fired: Recs, lines: &mut Vec<(i64, String)>| {
        for (ts, key, value) in run(5, &run(4, &fired)) {
            lines.push((ts, format!("{}\t{}", String::from_utf8(key).unwrap(), String::from_utf8(value).unwrap())));
        }
    };
    for batch in batches {
        let source: Recs = batch.iter().map(|line| (0, vec![], enc(&line.to_string()))).collect();
        let stamped = run(2, &run(1, &source));
        let out = host.process(3, watermark, &stamped);
        sink(out, &mut lines);
        // The assigner's watermark: the newest timestamp, minus the bound, minus one.
        newest = stamped.iter().map(|r| r.0).fold(newest, i64::max);
        watermark = newest - 5_000 - 1;
        let out = host.advance(3, watermark);
        sink(out, &mut lines);
    }
    // The end of the input: every event-time timer fires.
    let out = host.advance(3, i64::MAX);
    sink(out, &mut lines);
    // Timers of one time fire in the host's key order (here the encoded keys': "bo" is
    // shorter than "ann").
    let expected = [(119_999, "bo\t60000 2"), (119_999, "ann\t60000 2"), (179_999, "ann\t120000 1"), (239_999, "cy\t180000 1")];
    assert_eq!(lines, expected.map(|(ts, l)| (ts, l.to_string())));
    assert!(host.states.is_empty() && host.timers.is_empty(), "every window was dropped with its state");
}

/// Late clicks: tumbling 1 s windows with 500 ms of allowed lateness; records later
/// than that go to the "late" side output, which has its own sink.
fn late_clicks(job: &mut Job) {
    let late = OutputTag::<u64>::new("late");
    let counts = job
        .generator_with_time("numbers", 0, 10, 1)
        .key_by("by-key", |i: &u64| i % 2)
        .window(Windows::tumbling(1000))
        .allowed_lateness(500)
        .side_output_late_data(&late)
        .count("count");
    counts.side_output(&late).key_by("late-by-value", |v: &u64| *v).sum("late-sum").sink("late-out", Sink::file("late.txt"));
    counts.map("format", |(w, n): (Window, u64)| format!("{} {n}", w.start)).sink("out", Sink::default());
}

fn node_index(plan: &JobPlan, uid: &str) -> u32 {
    plan.nodes.iter().position(|n| n.uid == uid).unwrap() as u32
}

#[test]
fn late_records_go_to_a_side_output_with_their_key_time_and_value() {
    let (plan, _) = runtime::build_job(late_clicks, vec![]).unwrap();
    let count = node_index(&plan, "count");
    assert!(matches!(&plan.nodes[count as usize].kind, NodeKind::Operator(spec) if spec.side_outputs == ["late"]));
    let side: Vec<_> = plan.edges.iter().filter(|e| e.side_output.is_some()).map(|e| (e.source, plan.nodes[e.target as usize].uid.clone())).collect();
    assert_eq!(side, [(count, "late-by-value".to_string())], "a key_by after a side output is a node of its own, never fused");
    assert!(plan.edges.iter().filter(|e| e.source == count).count() == 2);

    runtime::plan(late_clicks, vec![]).unwrap();
    let (one, a, b) = (enc(&1u64), enc(&7u64), enc(&9u64));
    // Watermark 1600: [0, 1000) is past its lateness (cleanup at 1499), [1000, 2000) is on time.
    crate::time::test_host::WATERMARK.with(|w| w.set(1600));
    let out = runtime::process(count, &keyed(&[(&one, None)], &[(0, 400, &a), (0, 1200, &b), (0, 999, &a)])).unwrap();
    let o = parse_keyed_output(&out, 1);
    assert!(o.records.is_empty());
    assert_eq!(o.side, [(0, vec![(400, one.clone(), a.clone()), (999, one.clone(), a.clone())])]);
    assert_eq!(o.timers.len(), 2, "[1000, 2000) opened: fire at 1999, drop at 2499");
    // No late record and the window open: records and a state update, nothing after them.
    let state = enc(&vec![(1000i64, 1000u64, 1u64)]);
    let out = runtime::process(count, &keyed(&[(&one, Some(&state))], &[(0, 1300, &b)])).unwrap();
    let o = parse_keyed_output(&out, 1);
    assert!(o.side.is_empty() && !o.has_trailer);
    // Late with no timer changes: the side section follows an empty timer section.
    let out = runtime::process(count, &keyed(&[(&one, Some(&state))], &[(0, 5, &b)])).unwrap();
    let o = parse_keyed_output(&out, 1);
    assert!(o.timers.is_empty() && o.has_trailer);
    assert_eq!(o.side, [(0, vec![(5, one.clone(), b.clone())])]);
}

#[test]
fn process_functions_and_emitters_write_to_declared_side_outputs() {
    fn job(job: &mut Job) {
        let odd = OutputTag::<String>::new("odd");
        let never = OutputTag::<u64>::new("never-read");
        let split = job.generator("numbers", 0, 10).flat_map("split", move |i: u64, out: &mut Emitter<u64>| {
            if i % 2 == 1 {
                out.output(&odd, format!("odd {i}"));
                out.output(&never, i);
            } else {
                out.emit(i);
            }
        });
        split.side_output(&OutputTag::<String>::new("odd")).discard("odd-out");
        let big = OutputTag::<u64>::new("big");
        let keyed = split.key_by("k", |i: &u64| *i).process("proc", move |ctx: &mut KeyedContext<u64, ()>, v: u64, out: &mut Emitter<u64>| {
            if v >= 4 {
                ctx.output(&big, v * 10);
            }
            out.emit(v);
        });
        keyed.side_output(&OutputTag::<u64>::new("big")).discard("big-out");
        keyed.discard("out");
    }
    let (plan, _) = runtime::build_job(job, vec![]).unwrap();
    let (split, proc) = (node_index(&plan, "split"), node_index(&plan, "proc"));
    runtime::plan(job, vec![]).unwrap();
    let input = records(&[(3, b"", &enc(&1u64)), (4, b"", &enc(&2u64)), (5, b"", &enc(&3u64))]);
    let out = runtime::process(split, &input).unwrap();
    assert_eq!(parse_output(&out).records.len(), 1);
    assert_eq!(side_records(&out, None), [(0, vec![(3, vec![], enc(&"odd 1")), (5, vec![], enc(&"odd 3"))])]);
    assert_eq!(crate::side::undeclared(split), 2, "\"never-read\" is no side output of the plan");
    let (k4, k2) = (enc(&4u64), enc(&2u64));
    let out = runtime::process(proc, &keyed(&[(&k4, None), (&k2, None)], &[(0, 8, &k4), (1, 9, &k2)])).unwrap();
    let o = parse_keyed_output(&out, 2);
    assert_eq!(o.records.len(), 2);
    assert_eq!(o.side, [(0, vec![(8, k4.clone(), enc(&40u64))])]);
}

/// Rough native throughput of the keyed-sum operators (run with
/// `cargo test --release -- --ignored --nocapture bench`). Batches are built before
/// timing so the harness's allocations stay out of the measurement.
#[test]
#[ignore]
fn bench_keyed_sum_native() {
    fn key(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 100_000
    }
    fn job(job: &mut Job) {
        job.generator("numbers", 0, 1).key_by("by-key", |i: &u64| key(*i)).sum("sum").discard("out");
    }
    runtime::plan(job, vec![]).unwrap();
    let (n, batch) = (4_000_000u64, 4096u64);
    let mut selector_batches = Vec::new();
    let mut sum_batches = Vec::new();
    let state = enc(&7u64);
    for start in (0..n).step_by(batch as usize) {
        let end = (start + batch).min(n);
        let values: Vec<Vec<u8>> = (start..end).map(|x| enc(&x)).collect();
        let recs: Vec<(i64, &[u8], &[u8])> = values.iter().map(|v| (0, &b""[..], &v[..])).collect();
        selector_batches.push(records(&recs));
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let mut rs = Vec::new();
        for (x, v) in (start..end).zip(&values) {
            let k = enc(&key(x));
            let i = *index.entry(k.clone()).or_insert_with(|| {
                keys.push(k.clone());
                keys.len() as u32 - 1
            });
            rs.push((i, 0i64, &v[..]));
        }
        let ks: Vec<(&[u8], Option<&[u8]>)> = keys.iter().map(|k| (&k[..], Some(&state[..]))).collect();
        sum_batches.push(keyed(&ks, &rs));
    }
    let time = |op: u32, batches: &[Vec<u8>]| {
        let t = std::time::Instant::now();
        for b in batches {
            std::hint::black_box(runtime::process(op, b).unwrap());
        }
        n as f64 / t.elapsed().as_secs_f64() / 1e6
    };
    for _ in 0..3 {
        println!("selector {:.1} M/s, sum {:.1} M/s", time(1, &selector_batches), time(2, &sum_batches));
    }
}

#[test]
fn connectors_reach_the_plan_with_their_options() {
    fn job(job: &mut Job) {
        let kafka = Connector::new("kafka").option("topic", "old").option("bootstrap-servers", "b:9092").option("topic", "clicks");
        job.connector_source::<String>("clicks", kafka)
            .key_by("by-user", |s: &String| s.clone())
            .count("count")
            .sink("out", Sink::connector(Connector::new("postgres").option("table", "user_clicks").option("batch", 500)));
    }
    let (plan, _) = runtime::build_job(job, vec![]).unwrap();
    let NodeKind::Source(SourceKind::Connector(source)) = &plan.nodes[0].kind else { panic!("a connector source") };
    assert_eq!(source.kind, "kafka");
    assert_eq!(source.options, vec![("bootstrap-servers".to_string(), "b:9092".to_string()), ("topic".to_string(), "clicks".to_string())]);
    let NodeKind::Sink(SinkKind::Connector(sink)) = &plan.nodes.last().unwrap().kind else { panic!("a connector sink") };
    assert_eq!((sink.kind.as_str(), sink.options.len()), ("postgres", 2));
}
