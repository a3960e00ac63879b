//! Streams that meet in manifests: orders joined with their payments per order id by a
//! two-input keyed process (a manifest node with `inputs2`) written in Python,
//! JavaScript and C (examples-wasm/polyglot/join-*), behind a C parser that splits one
//! log into both sides. Exact against a join computed here, whatever the interleaving of
//! the two inputs, at parallelism 1 and 3 and on two TaskManagers.

use std::collections::BTreeMap;
use std::ffi::OsStr;

use weir_testkit::{TestCluster, splitmix64, stderr};

use crate::WEIR;
use crate::polyglot::{part_lines, run_lines};

/// The join examples' wait: a side alone this long (event time) is reported alone.
const WAIT_MS: i64 = 30_000;
/// The manifests' watermark bound; every line's time is less than this behind the
/// newest before it, so no record is ever late.
const OUT_OF_ORDERNESS_MS: i64 = 5_000;

/// One event of the log: kind, order id, value; its time comes from its line.
struct Event {
    kind: &'static str,
    id: u64,
    value: String,
}

/// A log of `n` orders (`order,ID,TS,ITEM`), four in five paid by one payment
/// (`payment,ID,TS,AMOUNT`) somewhat before or after it, and `n / 10` payments of ids
/// that have no order; comments and blank lines mixed in. Line `i` has time
/// `37 i + jitter` (jitter below 4000 ms): out of order, never late. Deterministic.
fn join_log(n: u64) -> (String, Vec<(Event, i64)>) {
    let mut slotted: Vec<(u64, u64, Event)> = Vec::new();
    for id in 0..n {
        let r = splitmix64(id ^ 0x0bde);
        slotted.push((4 * id + 200, 0, Event { kind: "order", id, value: format!("item-{}", r % 97) }));
        if !r.is_multiple_of(5) {
            // Up to 200 slots (about 100 lines) before or after its order.
            let slot = 4 * id + 200 + (r >> 8) % 400 - 200;
            slotted.push((slot, 1, Event { kind: "payment", id, value: format!("{}", (r >> 20) % 1_000) }));
        }
    }
    for k in 0..n / 10 {
        let r = splitmix64(k ^ 0xfee);
        slotted.push((r % (4 * n + 400), 2, Event { kind: "payment", id: n + k, value: format!("{}", (r >> 20) % 1_000) }));
    }
    slotted.sort_by_key(|(slot, tie, e)| (*slot, *tie, e.id));
    let mut text = String::from("# kind,id,ts,value\n");
    let mut events = Vec::new();
    for (i, (_, _, e)) in slotted.into_iter().enumerate() {
        let ts = 37 * i as i64 + (splitmix64(i as u64 ^ 0x7e) % 4_000) as i64;
        text.push_str(&format!("{},o{},{ts},{}\n", e.kind, e.id, e.value));
        if i % 1_000 == 999 {
            text.push_str("\n# a comment\n");
        }
        events.push((e, ts));
    }
    (text, events)
}

/// What a join job must print, computed here, sorted: per id, the order and payment
/// together, or the one that came alone.
/// An event's value and time.
type Side<'a> = Option<(&'a str, i64)>;

fn expected_join(events: &[(Event, i64)]) -> Vec<String> {
    let mut by_id: BTreeMap<u64, (Side, Side)> = BTreeMap::new();
    let mut newest = i64::MIN;
    for (e, ts) in events {
        assert!(*ts > newest.saturating_sub(OUT_OF_ORDERNESS_MS), "the log has a late line");
        newest = newest.max(*ts);
        let sides = by_id.entry(e.id).or_default();
        let side = if e.kind == "order" { &mut sides.0 } else { &mut sides.1 };
        assert!(side.replace((&e.value, *ts)).is_none(), "one {} per id", e.kind);
    }
    let mut lines: Vec<String> = by_id
        .iter()
        .map(|(id, sides)| match sides {
            (Some((item, at)), Some((amount, paid_at))) => {
                // Closer than the wait, they meet whichever input brings its side first.
                assert!((at - paid_at).abs() < WAIT_MS, "order and payment of o{id} are too far apart for the test");
                format!("o{id}\t{item} paid {amount}")
            }
            (Some((item, _)), None) => format!("o{id}\t{item} unpaid"),
            (None, Some((amount, _))) => format!("o{id}\tpayment {amount} without order"),
            (None, None) => unreachable!("an id has an event"),
        })
        .collect();
    lines.sort();
    lines
}

fn join_job(lang: &str, parallelism: u32) {
    let (log, events) = join_log(6_000);
    let want = expected_join(&events);
    for kind in ["paid", "unpaid", "without order"] {
        assert!(want.iter().filter(|l| l.contains(kind)).count() > 100, "the log has many lines of kind {kind:?}");
    }
    let got = run_lines(&WEIR.polyglot().join(format!("join-{lang}.toml")), &log, parallelism);
    assert_eq!(got.len(), want.len(), "join-{lang} at parallelism {parallelism}: line count");
    assert_eq!(got, want, "join-{lang} at parallelism {parallelism}");
}

#[test]
fn a_two_input_join_in_python_meets_orders_and_payments() {
    join_job("python", 1);
    join_job("python", 3);
}

#[test]
fn a_two_input_join_in_javascript_meets_orders_and_payments() {
    join_job("js", 1);
    join_job("js", 3);
}

#[test]
fn a_two_input_join_in_c_meets_orders_and_payments() {
    join_job("c", 1);
    join_job("c", 3);
}

/// The Python join at parallelism 3 on two TaskManagers: both sides cross the network
/// keyed by order id, and the REST API counts the join's records per input.
#[test]
fn a_two_input_join_in_python_on_two_taskmanagers() {
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)]);
    let (log, events) = join_log(6_000);
    let want = expected_join(&events);
    let path = cluster.dir.path().join("log.txt");
    std::fs::write(&path, &log).expect("write input");
    let out = cluster.dir.path().join("out");
    let m = WEIR.polyglot().join("join-python.toml");
    let argv = [
        OsStr::new("submit"),
        OsStr::new("-p"),
        OsStr::new("3"),
        m.as_os_str(),
        OsStr::new("--input"),
        path.as_os_str(),
        OsStr::new("--output-dir"),
        out.as_os_str(),
    ];
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.log("jobmanager"));
    assert_eq!(part_lines(&out), want);
}

/// A manifest whose two inputs are keyed by different types, or whose second input is
/// not key-by, is refused before anything runs, in one line naming the join.
#[test]
fn a_polyglot_join_of_mismatched_inputs_is_refused_naming_it() {
    let built = WEIR.polyglot();
    let original = std::fs::read_to_string(built.join("join-python.toml")).expect("join-python.toml");
    let absolute = original.replace("component = \"", &format!("component = \"{}/", built.display()));
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("log.txt");
    std::fs::write(&input, "order,o1,5,book\n").expect("write input");
    let refused = |text: String, wanted: &str| {
        let manifest = dir.path().join("join.toml");
        std::fs::write(&manifest, text).expect("write manifest");
        let o = WEIR.run([OsStr::new("run"), manifest.as_os_str(), OsStr::new("-i"), input.as_os_str()]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{err}");
        assert!(err.contains("\"join\"") && err.contains(wanted), "{err}");
    };
    let other_type = absolute.replacen("key-type = \"order-id\"", "key-type = \"customer-id\"", 1);
    assert_ne!(other_type, absolute);
    refused(other_type, "keyed by different types");
    refused(absolute.replace("partitioning = \"key-by\"\n", ""), "must only have key-by inputs");
    refused(absolute.replace("keyed = true\n", ""), "`inputs2` (a second input) belongs to keyed operators");
}
