//! Reads the batch vectors of this directory (format: README.md here).
//!
//! Shared by the host's vector test (`host/types/tests/vectors.rs`) and both Rust SDKs'
//! tests through `#[path]`, so the Rust side has one reader of the description format;
//! Python, JavaScript and C have their own few lines each. Plain std, no dependencies,
//! and it panics with the file and line on anything malformed: it only runs in tests.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

/// Which layout of `operator.process` (wit/dataflow.wit) a vector encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Input of an operator that is not keyed: records back to back.
    Plain,
    /// Input of a keyed operator: the key table, then records naming their key by index.
    Keyed,
    /// Output of an operator that is not keyed: `records-len`, then records.
    Output,
    /// Output of a keyed operator: as `Output`, then one state update per input key.
    KeyedOutput,
    /// Input of `timers.on-timer`: the key table, then the fired timers naming their key
    /// by index.
    FiredTimers,
    /// Output of a keyed operator that sets timers: as `KeyedOutput`, then the timer
    /// changes (`change-count`, then kind, key index and time per change).
    KeyedOutputTimers,
    /// Input of a two-input (connect) operator: a keyed batch, then `input: u32`, the
    /// input (0 or 1) all its records came through.
    TwoInput,
}

impl Layout {
    /// The word of the `layout` line.
    pub fn word(self) -> &'static str {
        match self {
            Layout::Plain => "plain",
            Layout::Keyed => "keyed",
            Layout::Output => "output",
            Layout::KeyedOutput => "keyed-output",
            Layout::FiredTimers => "fired-timers",
            Layout::KeyedOutputTimers => "keyed-output-timers",
            Layout::TwoInput => "two-input",
        }
    }

    fn from_word(word: &str) -> Option<Layout> {
        [Layout::Plain, Layout::Keyed, Layout::Output, Layout::KeyedOutput, Layout::FiredTimers, Layout::KeyedOutputTimers, Layout::TwoInput]
            .into_iter()
            .find(|l| l.word() == word)
    }
}

/// A record of a plain batch or of an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ts: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// One entry of a keyed batch's key table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub key: Vec<u8>,
    /// `None`: the key has no state (`state-len` 0xFFFFFFFF), not the same as empty.
    pub state: Option<Vec<u8>>,
}

/// A record of a keyed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRecord {
    pub key_index: u32,
    pub ts: i64,
    pub value: Vec<u8>,
}

/// What a keyed operator's output says about one input key's value state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    Unchanged,
    Set(Vec<u8>),
    Cleared,
}

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    Event,
    Processing,
}

impl Domain {
    /// The word in a description.
    pub fn word(self) -> &'static str {
        match self {
            Domain::Event => "event",
            Domain::Processing => "processing",
        }
    }

    fn from_word(word: &str) -> Result<Domain, String> {
        match word {
            "event" => Ok(Domain::Event),
            "processing" => Ok(Domain::Processing),
            _ => Err(format!("{word:?} is not a time domain (event, processing)")),
        }
    }
}

/// A timer of an `on-timer` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredTimer {
    pub key_index: u32,
    pub ts: i64,
    pub domain: Domain,
}

/// A timer change of a keyed output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerChange {
    /// Sets the timer (true) or deletes it.
    pub set: bool,
    pub domain: Domain,
    pub key_index: u32,
    pub ts: i64,
}

/// One vector: its bytes (from `NAME.hex`) and what they encode (from `NAME.txt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vector {
    pub name: String,
    /// The `#` lines at the top of the description: what the vector is for.
    pub about: Vec<String>,
    pub layout: Layout,
    /// `record` lines (plain input and outputs).
    pub records: Vec<Record>,
    /// `key` lines (keyed input).
    pub keys: Vec<Key>,
    /// `keyed-record` lines (keyed input).
    pub keyed_records: Vec<KeyedRecord>,
    /// `state` lines (keyed output), one per key of the input it answers.
    pub updates: Vec<Update>,
    /// `fired-timer` lines (`on-timer` input).
    pub fired: Vec<FiredTimer>,
    /// `timer-change` lines (keyed output with timers).
    pub changes: Vec<TimerChange>,
    /// The `input` line (two-input batch).
    pub input: Option<u32>,
    pub bytes: Vec<u8>,
}

impl Vector {
    /// An empty vector of `layout`, to be filled in.
    pub fn new(name: &str, layout: Layout) -> Self {
        Vector {
            name: name.into(),
            about: Vec::new(),
            layout,
            records: Vec::new(),
            keys: Vec::new(),
            keyed_records: Vec::new(),
            updates: Vec::new(),
            fired: Vec::new(),
            changes: Vec::new(),
            input: None,
            bytes: Vec::new(),
        }
    }
}

/// `sdk/vectors`, found from a crate's `CARGO_MANIFEST_DIR` and its path to the repo root.
pub fn dir(manifest_dir: &str, to_root: &str) -> PathBuf {
    Path::new(manifest_dir).join(to_root).join("sdk").join("vectors")
}

/// Every vector of `dir`, sorted by name. A `NAME.txt` without its `NAME.hex` (or the
/// other way round) is an error, so a half-added vector cannot be skipped silently.
pub fn load_all(dir: &Path) -> Vec<Vector> {
    let mut names = Vec::new();
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())).path();
        let ext = path.extension().and_then(|e| e.to_str());
        if matches!(ext, Some("txt" | "hex")) {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_else(|| panic!("bad file name {}", path.display()));
            names.push(stem.to_string());
        }
    }
    names.sort();
    names.dedup();
    assert!(!names.is_empty(), "no vectors in {}", dir.display());
    names.iter().map(|name| load(dir, name)).collect()
}

/// The vectors of `dir` in `layout`, sorted by name; there must be some.
pub fn load_layout(dir: &Path, layout: Layout) -> Vec<Vector> {
    let some: Vec<Vector> = load_all(dir).into_iter().filter(|v| v.layout == layout).collect();
    assert!(!some.is_empty(), "no {} vectors in {}", layout.word(), dir.display());
    some
}

/// The vector `name` of `dir`.
pub fn load(dir: &Path, name: &str) -> Vector {
    let read = |ext: &str| {
        let path = dir.join(format!("{name}.{ext}"));
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    };
    let mut v = parse_description(name, &read("txt")).unwrap_or_else(|e| panic!("{name}.txt: {e}"));
    v.bytes = parse_hex(&read("hex")).unwrap_or_else(|e| panic!("{name}.hex: {e}"));
    v
}

/// The bytes of a `.hex` file: hex digits, whitespace ignored, `#` to the end of a line
/// is a comment.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let mut digits = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for c in strip_comment(line).chars().filter(|c| !c.is_whitespace()) {
            digits.push(c.to_digit(16).ok_or_else(|| format!("line {}: {c:?} is not a hex digit", n + 1))? as u8);
        }
    }
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    Ok(digits.chunks(2).map(|d| d[0] << 4 | d[1]).collect())
}

/// Parses a `.txt` description (see README.md); `bytes` is left empty.
pub fn parse_description(name: &str, text: &str) -> Result<Vector, String> {
    let mut v: Option<Vector> = None;
    let mut about = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", n + 1);
        let words: Vec<&str> = strip_comment(line).split_whitespace().collect();
        let Some((&first, args)) = words.split_first() else {
            // Comment lines before `layout` describe the vector.
            if v.is_none()
                && let Some(c) = line.trim().strip_prefix('#')
            {
                about.push(c.trim().to_string());
            }
            continue;
        };
        if first == "layout" {
            let [word] = args else { return Err(at("layout takes one word".into())) };
            let layout = Layout::from_word(word).ok_or_else(|| at(format!("unknown layout {word:?}")))?;
            if v.is_some() {
                return Err(at("second layout line".into()));
            }
            v = Some(Vector::new(name, layout));
            continue;
        }
        let v = v.as_mut().ok_or_else(|| at("the layout line must come first".into()))?;
        let wrong = || at(format!("{first:?} with {} arguments does not belong in layout {}", args.len(), v.layout.word()));
        match (v.layout, first, args) {
            (Layout::Plain | Layout::Output | Layout::KeyedOutput | Layout::KeyedOutputTimers, "record", [ts, key, value]) => {
                v.records.push(Record { ts: int(ts).map_err(at)?, key: bytes(key).map_err(at)?, value: bytes(value).map_err(at)? })
            }
            (Layout::Keyed | Layout::FiredTimers | Layout::TwoInput, "key", [key, state]) => {
                let state = if *state == "none" { None } else { Some(bytes(state).map_err(at)?) };
                v.keys.push(Key { key: bytes(key).map_err(at)?, state });
            }
            (Layout::TwoInput, "input", [input]) if v.input.is_none() => v.input = Some(int(input).map_err(at)?),
            (Layout::Keyed | Layout::TwoInput, "keyed-record", [index, ts, value]) => {
                v.keyed_records.push(KeyedRecord { key_index: int(index).map_err(at)?, ts: int(ts).map_err(at)?, value: bytes(value).map_err(at)? })
            }
            (Layout::KeyedOutput | Layout::KeyedOutputTimers, "state", ["unchanged"]) => v.updates.push(Update::Unchanged),
            (Layout::KeyedOutput | Layout::KeyedOutputTimers, "state", ["set", state]) => v.updates.push(Update::Set(bytes(state).map_err(at)?)),
            (Layout::KeyedOutput | Layout::KeyedOutputTimers, "state", ["cleared"]) => v.updates.push(Update::Cleared),
            (Layout::FiredTimers, "fired-timer", [index, ts, domain]) => v.fired.push(FiredTimer {
                key_index: int(index).map_err(at)?,
                ts: int(ts).map_err(at)?,
                domain: Domain::from_word(domain).map_err(at)?,
            }),
            (Layout::KeyedOutputTimers, "timer-change", [action, domain, index, ts]) => v.changes.push(TimerChange {
                set: match *action {
                    "set" => true,
                    "delete" => false,
                    _ => return Err(at(format!("{action:?} is not a timer action (set, delete)"))),
                },
                domain: Domain::from_word(domain).map_err(at)?,
                key_index: int(index).map_err(at)?,
                ts: int(ts).map_err(at)?,
            }),
            _ => return Err(wrong()),
        }
    }
    let mut v = v.ok_or("no layout line")?;
    if (v.layout == Layout::TwoInput) != v.input.is_some() {
        return Err("an `input` line belongs in layout two-input, and only there".into());
    }
    v.about = about;
    Ok(v)
}

fn strip_comment(line: &str) -> &str {
    line.split_once('#').map_or(line, |(before, _)| before)
}

fn int<T: std::str::FromStr>(word: &str) -> Result<T, String> {
    word.parse().map_err(|_| format!("{word:?} is not a valid integer here"))
}

/// A bytes field: `-` for no bytes, else lowercase or uppercase hex.
fn bytes(word: &str) -> Result<Vec<u8>, String> {
    if word == "-" { Ok(Vec::new()) } else { parse_hex(word) }
}

/// Lowercase hex of `b`, `-` when empty: the bytes field of a description.
pub fn hex_field(b: &[u8]) -> String {
    if b.is_empty() { "-".into() } else { hex(b) }
}

/// Lowercase hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
