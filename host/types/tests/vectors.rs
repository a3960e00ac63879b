//! The canonical batch encodings in `sdk/vectors/`, written by the host's own batch code.
//!
//! Every SDK's tests decode and encode these files, so they are the one place where the
//! layouts of `operator.process` are pinned down byte for byte. This test makes them:
//! each vector below is encoded with `weir_types::batch`'s writers (the layout crate
//! `weir-batch`, which the Rust SDKs write with too), then parsed back with its readers. With `WEIR_BLESS=1` it
//! rewrites `NAME.hex` and `NAME.txt`; otherwise it fails if a file differs from what
//! the host writes now, so a layout change in the host cannot go unnoticed by the SDKs.
//!
//!     WEIR_BLESS=1 cargo test -p weir-types --test vectors

#[path = "../../../sdk/vectors/reader.rs"]
mod reader;

use std::fmt::Write as _;
use std::fs;

use reader::{Domain, FiredTimer, Key, KeyedRecord, Layout, Record, TimerChange, Update, Vector, hex, hex_field};
use weir_types::batch::{self, StateUpdate, TimeDomain};

/// Timestamps at the edges: i64's ends, and 2^53 + 1, the first integer a JavaScript
/// number cannot hold (an SDK that reads ts as a double rounds it).
const TS_EDGES: [i64; 6] = [-1, i64::MIN, i64::MAX, (1 << 53) + 1, -(1 << 53) - 1, 1_700_000_000_000];

fn rec(ts: i64, key: &[u8], value: &[u8]) -> Record {
    Record { ts, key: key.to_vec(), value: value.to_vec() }
}

fn key(key: &[u8], state: Option<&[u8]>) -> Key {
    Key { key: key.to_vec(), state: state.map(<[u8]>::to_vec) }
}

fn krec(key_index: u32, ts: i64, value: &[u8]) -> KeyedRecord {
    KeyedRecord { key_index, ts, value: value.to_vec() }
}

fn fired(key_index: u32, ts: i64, domain: Domain) -> FiredTimer {
    FiredTimer { key_index, ts, domain }
}

fn change(set: bool, domain: Domain, key_index: u32, ts: i64) -> TimerChange {
    TimerChange { set, domain, key_index, ts }
}

fn time_domain(d: Domain) -> TimeDomain {
    match d {
        Domain::Event => TimeDomain::Event,
        Domain::Processing => TimeDomain::Processing,
    }
}

fn domain(d: TimeDomain) -> Domain {
    match d {
        TimeDomain::Event => Domain::Event,
        TimeDomain::Processing => Domain::Processing,
    }
}

fn vector(name: &str, layout: Layout, about: &[&str]) -> Vector {
    let mut v = Vector::new(name, layout);
    v.about = about.iter().map(|s| s.to_string()).collect();
    v
}

/// 256 bytes: every byte value once (not UTF-8), and a length whose low byte is 0.
fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

/// 300 bytes: a length spanning two bytes (0x2c 0x01).
fn digits300() -> Vec<u8> {
    b"0123456789".repeat(30)
}

/// The vectors. Names sort by layout; each says in `about` what it is there for.
fn specs() -> Vec<Vector> {
    let mut out = Vec::new();

    let mut v = vector("plain-records", Layout::Plain, &["Input of an unkeyed operator: records back to back, no header."]);
    v.records =
        vec![rec(1_700_000_000_000, b"user-1", b"click"), rec(1_700_000_000_001, b"user-2", b"view"), rec(1_700_000_000_002, b"user-1", b"buy")];
    out.push(v);

    out.push(vector("plain-empty", Layout::Plain, &["A plain batch of zero records: zero bytes."]));

    let mut v = vector("plain-empty-fields", Layout::Plain, &["Empty keys and values (length 0, no bytes) and bytes that are not UTF-8."]);
    v.records = vec![rec(0, b"", b""), rec(1, b"", b"v"), rec(2, b"k", b""), rec(3, &[0x00, 0xff], &[0xff, 0xfe, 0x00])];
    out.push(v);

    let mut v = vector("plain-timestamps", Layout::Plain, &["Timestamps are i64: negative, both ends, and beyond 2^53 (JavaScript numbers)."]);
    v.records = TS_EDGES.iter().map(|&ts| rec(ts, b"t", b"x")).collect();
    out.push(v);

    let mut v = vector("plain-long", Layout::Plain, &["Lengths of several bytes: a 256-byte key (0x00000100) and a 300-byte value (0x0000012c)."]);
    v.records = vec![rec(7, &all_bytes(), &digits300())];
    out.push(v);

    let mut v = vector(
        "keyed-states",
        Layout::Keyed,
        &[
            "Input of a keyed operator as the host groups it: keys in order of first appearance,",
            "records in arrival order naming their key by index. State: absent (none), one byte,",
            "empty (length 0, not absent), and the empty key (what a key of type () encodes to).",
        ],
    );
    v.keys = vec![key(b"b", Some(&[0x05])), key(b"a", None), key(b"", Some(b"s")), key(b"c", Some(b""))];
    v.keyed_records = vec![krec(0, 10, b"1"), krec(1, 11, b"2"), krec(0, 12, b"3"), krec(2, 13, b""), krec(3, 14, b"4"), krec(1, 15, b"5")];
    out.push(v);

    out.push(vector("keyed-empty", Layout::Keyed, &["A keyed batch of zero keys and zero records: two zero counts."]));

    let mut v = vector("keyed-long", Layout::Keyed, &["Multi-byte lengths in the key table and extreme timestamps in keyed records."]);
    v.keys = vec![key(&digits300(), Some(&all_bytes())), key(b"k", None)];
    v.keyed_records = vec![krec(0, i64::MIN, b""), krec(1, i64::MAX, b"v"), krec(0, (1 << 53) + 1, &digits300())];
    out.push(v);

    let mut v = vector(
        "two-input",
        Layout::TwoInput,
        &[
            "Input of a two-input (connect) operator: a keyed batch as for one input, then",
            "input: u32, the input all its records came through (here 1, the second).",
        ],
    );
    v.keys = vec![key(b"o1", Some(b"order")), key(b"o2", None)];
    v.keyed_records = vec![krec(0, 20, b"paid"), krec(1, 21, b"refund"), krec(0, i64::MAX, b"")];
    v.input = Some(1);
    out.push(v);

    let mut v = vector("output-records", Layout::Output, &["Output of an unkeyed operator: records-len, then records as in a plain batch."]);
    v.records = vec![rec(1_700_000_000_000, b"user-1", b"v:click"), rec(i64::MIN, b"", b""), rec(i64::MAX, &[0xff], &digits300())];
    out.push(v);

    out.push(vector("output-empty", Layout::Output, &["An output of zero records: records-len 0."]));

    let mut v = vector(
        "output-keyed",
        Layout::KeyedOutput,
        &[
            "Output of a keyed operator: the records, then one state update per key of its",
            "input, in key order: unchanged, set (here to one byte, to zero bytes, to 256 bytes), cleared.",
        ],
    );
    v.records = vec![rec(10, b"b", b"6"), rec(-1, b"", b"")];
    v.updates = vec![Update::Unchanged, Update::Set(vec![0x2a]), Update::Set(Vec::new()), Update::Cleared, Update::Set(all_bytes())];
    out.push(v);

    let mut v = vector("output-keyed-no-records", Layout::KeyedOutput, &["A keyed output that emits nothing but still updates state."]);
    v.updates = vec![Update::Cleared, Update::Unchanged];
    out.push(v);

    let mut v = vector(
        "timers-fired",
        Layout::FiredTimers,
        &[
            "Input of timers.on-timer: the key table as in a keyed batch (each key's state attached),",
            "then the fired timers naming their key by index, both domains (event 0, processing 1),",
            "a key with two timers, and extreme times.",
        ],
    );
    v.keys = vec![key(b"a", Some(&[0x02])), key(b"", None), key(&digits300(), Some(b""))];
    v.fired = vec![
        fired(0, 59_999, Domain::Event),
        fired(1, i64::MIN, Domain::Event),
        fired(0, 1_700_000_000_000, Domain::Processing),
        fired(2, i64::MAX, Domain::Processing),
        fired(1, (1 << 53) + 1, Domain::Event),
    ];
    out.push(v);

    out.push(vector("timers-fired-empty", Layout::FiredTimers, &["An on-timer batch of zero keys and zero timers: two zero counts."]));

    let mut v = vector(
        "output-timers",
        Layout::KeyedOutputTimers,
        &[
            "Output of a keyed operator that sets timers (process or on-timer): the records, one state",
            "update per input key, then change-count and the timer changes in the order they were made:",
            "kind 0 set event time, 1 delete event time, 2 set processing time, 3 delete processing time.",
        ],
    );
    v.records = vec![rec(59_999, b"a", b"0 3")];
    v.updates = vec![Update::Cleared, Update::Set(b"x".to_vec()), Update::Unchanged];
    v.changes = vec![
        change(true, Domain::Event, 0, 119_999),
        change(false, Domain::Event, 1, 59_999),
        change(true, Domain::Processing, 2, 1_700_000_000_000),
        change(false, Domain::Processing, 0, i64::MIN),
        change(true, Domain::Event, 2, i64::MAX),
        change(true, Domain::Event, 1, (1 << 53) + 1),
    ];
    out.push(v);

    let mut v =
        vector("output-timers-only", Layout::KeyedOutputTimers, &["A keyed output with no records and no state change that only sets a timer."]);
    v.updates = vec![Update::Unchanged];
    v.changes = vec![change(true, Domain::Processing, 0, 5)];
    out.push(v);

    out
}

/// Bytes being written, with a commented hex dump of every write: the `.hex` file.
#[derive(Default)]
struct Annotated {
    bytes: Vec<u8>,
    text: String,
}

impl Annotated {
    /// Runs one of the host's writers and dumps what it appended under `# note`, split
    /// into the layout's fields (`fields`: their sizes) for a reader of the file.
    fn write(&mut self, note: &str, fields: &[usize], writer: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        writer(&mut self.bytes);
        let written = &self.bytes[start..];
        assert_eq!(fields.iter().sum::<usize>(), written.len(), "fields of {note}");
        let _ = writeln!(self.text, "# {note}");
        let mut line = String::new();
        let mut rest = written;
        for &n in fields.iter().filter(|&&n| n > 0) {
            let (field, tail) = rest.split_at(n);
            rest = tail;
            // Long fields get lines of their own, 32 bytes each.
            for chunk in field.chunks(32) {
                if !line.is_empty() && line.len() + 1 + 2 * chunk.len() > 96 {
                    let _ = writeln!(self.text, "{line}");
                    line.clear();
                }
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(&hex(chunk));
            }
        }
        if !line.is_empty() {
            let _ = writeln!(self.text, "{line}");
        }
    }
}

/// Short text for a note: printable ASCII as a quoted string, else its length.
fn show(b: &[u8]) -> String {
    if b.len() <= 24 && b.iter().all(|c| (0x20..0x7f).contains(c) && *c != b'"') {
        format!("\"{}\"", String::from_utf8_lossy(b))
    } else {
        format!("{} byte{}", b.len(), if b.len() == 1 { "" } else { "s" })
    }
}

fn len32(b: &[u8]) -> u32 {
    u32::try_from(b.len()).expect("vector fields are small")
}

/// Appends a plain record with the host's writer.
fn write_record(a: &mut Annotated, what: &str, r: &Record) {
    let note = format!("{what}: ts {}, key {}, value {}", r.ts, show(&r.key), show(&r.value));
    a.write(&note, &[8, 4, r.key.len(), 4, r.value.len()], |b| batch::push_record(b, r.ts, &r.key, &r.value));
}

/// Encodes `v` with the host's writers: its bytes and its `.hex` file.
fn encode(v: &Vector) -> Annotated {
    let mut a = Annotated::default();
    let _ =
        writeln!(a.text, "# {}: layout {} (see {}.txt and README.md). Generated by host/types/tests/vectors.rs.", v.name, v.layout.word(), v.name);
    match v.layout {
        Layout::Plain => {
            if v.records.is_empty() {
                let _ = writeln!(a.text, "# (no bytes)");
            }
            for (i, r) in v.records.iter().enumerate() {
                write_record(&mut a, &format!("record {i}"), r);
            }
        }
        Layout::Keyed | Layout::TwoInput => {
            write_key_table(&mut a, &v.keys);
            let records = u32::try_from(v.keyed_records.len()).expect("few records");
            a.write(&format!("record-count {records}"), &[4], |b| batch::push_keyed_records_header(b, records));
            for (i, r) in v.keyed_records.iter().enumerate() {
                let note = format!("record {i}: key-index {}, ts {}, value {}", r.key_index, r.ts, show(&r.value));
                a.write(&note, &[4, 8, 4, r.value.len()], |b| batch::push_keyed_record(b, r.key_index, r.ts, &r.value));
            }
            if let Some(input) = v.input {
                a.write(&format!("input {input}"), &[4], |b| batch::push_u32(b, input));
            }
        }
        Layout::FiredTimers => {
            write_key_table(&mut a, &v.keys);
            let timers = u32::try_from(v.fired.len()).expect("few timers");
            a.write(&format!("timer-count {timers}"), &[4], |b| batch::push_timers_header(b, timers));
            for (i, t) in v.fired.iter().enumerate() {
                let note = format!("timer {i}: key-index {}, ts {}, domain {} ({})", t.key_index, t.ts, time_domain(t.domain) as u8, t.domain.word());
                let timer = batch::FiredTimer { key_index: t.key_index, ts: t.ts, domain: time_domain(t.domain) };
                a.write(&note, &[4, 8, 1], |b| batch::push_fired_timer(b, timer));
            }
        }
        Layout::Output | Layout::KeyedOutput | Layout::KeyedOutputTimers => {
            // records-len prefixes the records, so they are written first, then moved.
            let mut records = Annotated::default();
            for (i, r) in v.records.iter().enumerate() {
                write_record(&mut records, &format!("record {i}"), r);
            }
            let len = len32(&records.bytes);
            a.write(&format!("records-len {len}"), &[4], |b| batch::push_u32(b, len));
            a.bytes.extend_from_slice(&records.bytes);
            a.text.push_str(&records.text);
            for (i, u) in v.updates.iter().enumerate() {
                let (note, fields, update) = match u {
                    Update::Unchanged => (format!("state {i}: unchanged"), vec![1], StateUpdate::Unchanged),
                    Update::Cleared => (format!("state {i}: cleared"), vec![1], StateUpdate::Cleared),
                    Update::Set(s) => (format!("state {i}: set to {}", show(s)), vec![1, 4, s.len()], StateUpdate::Set(s)),
                };
                a.write(&note, &fields, |b| batch::push_state_update(b, update));
            }
            if v.layout == Layout::KeyedOutputTimers {
                let changes = u32::try_from(v.changes.len()).expect("few changes");
                a.write(&format!("change-count {changes}"), &[4], |b| batch::push_timers_header(b, changes));
                for (i, c) in v.changes.iter().enumerate() {
                    let change = batch::TimerChange { set: c.set, domain: time_domain(c.domain), key_index: c.key_index, ts: c.ts };
                    let action = if c.set { "set" } else { "delete" };
                    let note =
                        format!("change {i}: kind {} ({action} {} time), key-index {}, ts {}", change.kind(), c.domain.word(), c.key_index, c.ts);
                    a.write(&note, &[1, 4, 8], |b| batch::push_timer_change(b, change));
                }
            }
        }
    }
    a
}

/// Appends a key table (`key-count`, then each key with its state) with the host's writers.
fn write_key_table(a: &mut Annotated, table: &[Key]) {
    let keys = u32::try_from(table.len()).expect("few keys");
    a.write(&format!("key-count {keys}"), &[4], |b| batch::push_key_count(b, keys));
    for (i, k) in table.iter().enumerate() {
        let (state, fields) = match &k.state {
            Some(s) => (show(s), [4, k.key.len(), 4, s.len()]),
            None => ("none (0xffffffff)".to_string(), [4, k.key.len(), 4, 0]),
        };
        a.write(&format!("key {i}: {}, state {state}", show(&k.key)), &fields, |b| batch::push_key_with_state(b, &k.key, k.state.as_deref()));
    }
}

/// The `.txt` file of `v`.
fn describe(v: &Vector) -> String {
    let mut t = String::new();
    for line in &v.about {
        let _ = writeln!(t, "# {line}");
    }
    let _ = writeln!(t, "layout {}", v.layout.word());
    // A comment naming the printable fields in text, for whoever reads the file.
    let note = |fields: &[(&str, &[u8])]| {
        let shown: Vec<String> =
            fields.iter().filter(|(_, b)| !b.is_empty() && show(b).starts_with('"')).map(|(name, b)| format!("{name} {}", show(b))).collect();
        if shown.is_empty() { String::new() } else { format!("  # {}", shown.join(", ")) }
    };
    for r in &v.records {
        let _ = writeln!(t, "record {} {} {}{}", r.ts, hex_field(&r.key), hex_field(&r.value), note(&[("key", &r.key), ("value", &r.value)]));
    }
    for k in &v.keys {
        let state = k.state.as_deref().map_or("none".to_string(), hex_field);
        let _ = writeln!(t, "key {} {state}{}", hex_field(&k.key), note(&[("key", &k.key), ("state", k.state.as_deref().unwrap_or_default())]));
    }
    for r in &v.keyed_records {
        let _ = writeln!(t, "keyed-record {} {} {}{}", r.key_index, r.ts, hex_field(&r.value), note(&[("value", &r.value)]));
    }
    for u in &v.updates {
        let _ = match u {
            Update::Unchanged => writeln!(t, "state unchanged"),
            Update::Set(s) => writeln!(t, "state set {}{}", hex_field(s), note(&[("state", s)])),
            Update::Cleared => writeln!(t, "state cleared"),
        };
    }
    if let Some(input) = v.input {
        let _ = writeln!(t, "input {input}");
    }
    for f in &v.fired {
        let _ = writeln!(t, "fired-timer {} {} {}", f.key_index, f.ts, f.domain.word());
    }
    for c in &v.changes {
        let _ = writeln!(t, "timer-change {} {} {} {}", if c.set { "set" } else { "delete" }, c.domain.word(), c.key_index, c.ts);
    }
    t
}

/// Parses `v.bytes` with the host's readers and checks they see what `v` describes.
fn check_host_reads(v: &Vector) {
    let plain = |buf: &[u8]| -> Vec<Record> {
        batch::records(buf).map(|r| r.map(|r| rec(r.ts, r.key, r.value))).collect::<Result<_, _>>().expect("host reads the records")
    };
    match v.layout {
        Layout::Plain => {
            assert_eq!(plain(&v.bytes), v.records);
            assert_eq!(batch::validate(&v.bytes), Ok(v.records.len()));
        }
        Layout::Keyed => {
            let k = batch::parse_keyed_input(&v.bytes).expect("host reads the keyed batch");
            let keys: Vec<Key> = k.keys.iter().map(|(k, s)| key(k, *s)).collect();
            let records: Vec<KeyedRecord> = k.records.iter().map(|r| krec(r.key_index, r.ts, r.value)).collect();
            assert_eq!((keys, records), (v.keys.clone(), v.keyed_records.clone()));
        }
        Layout::TwoInput => {
            let (body, input) = batch::split_input(&v.bytes).expect("host reads the input tag");
            let k = batch::parse_keyed_input(body).expect("host reads the keyed batch");
            let keys: Vec<Key> = k.keys.iter().map(|(k, s)| key(k, *s)).collect();
            let records: Vec<KeyedRecord> = k.records.iter().map(|r| krec(r.key_index, r.ts, r.value)).collect();
            assert_eq!((keys, records, Some(input)), (v.keys.clone(), v.keyed_records.clone(), v.input));
        }
        Layout::FiredTimers => {
            let t = batch::parse_timer_input(&v.bytes).expect("host reads the on-timer batch");
            let keys: Vec<Key> = t.keys.iter().map(|(k, s)| key(k, *s)).collect();
            let timers: Vec<FiredTimer> = t.timers.iter().map(|f| fired(f.key_index, f.ts, domain(f.domain))).collect();
            assert_eq!((keys, timers), (v.keys.clone(), v.fired.clone()));
        }
        Layout::Output | Layout::KeyedOutput | Layout::KeyedOutputTimers => {
            let keys = (v.layout != Layout::Output).then_some(v.updates.len());
            let o = batch::parse_output(&v.bytes, keys).expect("host reads the output");
            assert_eq!(plain(o.records), v.records);
            assert_eq!(o.record_count, v.records.len());
            let updates: Vec<Update> = o
                .states
                .iter()
                .map(|s| match s {
                    StateUpdate::Unchanged => Update::Unchanged,
                    StateUpdate::Set(b) => Update::Set(b.to_vec()),
                    StateUpdate::Cleared => Update::Cleared,
                })
                .collect();
            assert_eq!(updates, v.updates);
            let changes: Vec<TimerChange> = o.timers.iter().map(|c| change(c.set, domain(c.domain), c.key_index, c.ts)).collect();
            assert_eq!(changes, v.changes);
        }
    }
}

#[test]
fn vectors_are_what_the_host_writes_and_reads() {
    let dir = reader::dir(env!("CARGO_MANIFEST_DIR"), "../..");
    let bless = std::env::var_os("WEIR_BLESS").is_some_and(|v| v == "1");
    let specs = specs();
    let mut stale = Vec::new();
    for spec in &specs {
        let encoded = encode(spec);
        let files = [(format!("{}.hex", spec.name), encoded.text), (format!("{}.txt", spec.name), describe(spec))];
        for (file, want) in &files {
            let path = dir.join(file);
            if bless {
                fs::write(&path, want).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            } else if fs::read_to_string(&path).ok().as_ref() != Some(want) {
                stale.push(file.clone());
            }
        }
        if stale.is_empty() {
            // What an SDK test reads from the files is what the host wrote and reads.
            let loaded = reader::load(&dir, &spec.name);
            assert_eq!(loaded, Vector { bytes: encoded.bytes.clone(), ..spec.clone() }, "{}: files read back", spec.name);
            check_host_reads(&loaded);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} in {} differ from what the host writes; if the change is intended, regenerate with WEIR_BLESS=1",
        dir.display()
    );
    let loaded = reader::load_all(&dir);
    let names: Vec<&str> = loaded.iter().map(|v| v.name.as_str()).collect();
    let mut want: Vec<&str> = specs.iter().map(|v| v.name.as_str()).collect();
    want.sort();
    assert_eq!(names, want, "{} holds vectors this test does not write; remove them or add them here", dir.display());
}
