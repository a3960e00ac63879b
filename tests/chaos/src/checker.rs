//! The job's input and the check of its committed output.
//!
//! Word count emits `(word, running count)` for every word, so each word's committed
//! lines, read in commit order, must be exactly 1, 2, ..., n_word: a value seen twice
//! is a duplicate, a value before a smaller one is out of order, a missing value is
//! lost. The expected n_word come from splitting the generated text here, the way the
//! job splits it (`examples-wasm/wordcount/src/lib.rs`: Python's `str.split()`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

use crate::sys::Rng;

/// Python's `str.isspace()`, as the job splits.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Writes about `words` words of seeded text to `path`; the expected count per word.
/// Words follow a skewed distribution (a few keys get millions of counts, many a
/// few), include non-ASCII letters, and are separated by assorted Unicode
/// whitespace; there are empty and blank lines. No `\r`: the source strips it.
pub fn generate(path: &Path, rng: &mut Rng, words: u64) -> Result<HashMap<String, u64>> {
    const LETTERS: [char; 31] = [
        'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'é', 'ß',
        'ж', '水', 'ø',
    ];
    const SEPARATORS: [&str; 8] = ["\t", "  ", "\u{a0}", "\u{3000}", "\u{1f}", "\u{b}", "\u{2028}", " \t "];
    let vocabulary: Vec<String> =
        (0..5000).map(|_| (0..rng.range(1, 12)).map(|_| LETTERS[rng.range(0, LETTERS.len() as u64 - 1) as usize]).collect()).collect();
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let mut expected: HashMap<String, u64> = HashMap::new();
    let (mut written, mut line) = (0, String::new());
    while written < words {
        line.clear();
        if rng.range(0, 99) == 0 {
            line.push_str(" \t ");
        }
        for i in 0..rng.range(0, 16) {
            if i > 0 {
                line.push_str(if rng.range(0, 9) == 0 { SEPARATORS[rng.range(0, 7) as usize] } else { " " });
            }
            // u^3 skews toward the first words: the top one gets ~6% of the text.
            let u = rng.unit();
            line.push_str(&vocabulary[(u * u * u * vocabulary.len() as f64) as usize]);
        }
        // Count what the text says, not what the generator meant.
        for w in line.split(is_python_space).filter(|w| !w.is_empty()) {
            written += 1;
            match expected.get_mut(w) {
                Some(n) => *n += 1,
                None => {
                    expected.insert(w.to_string(), 1);
                }
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    Ok(expected)
}

/// (subtask, epoch, attempt) of a committed file `part-<subtask>-<epoch>-a<attempt>`.
fn parse_part(name: &str) -> Option<(u32, u64, u32)> {
    let mut it = name.strip_prefix("part-")?.split('-');
    let (s, e, a) = (it.next()?, it.next()?, it.next()?.strip_prefix('a')?);
    if it.next().is_some() {
        return None;
    }
    Some((s.parse().ok()?, e.parse().ok()?, a.parse().ok()?))
}

/// An at-least-once gap the JobManager announced: attempt `attempt` restored
/// checkpoint `from` although epochs up to `newest` were committed (a fallback past a
/// damaged checkpoint; a sink's last epoch commits with the final checkpoint). Those
/// earlier attempts' files stay visible and their records are written again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub attempt: u32,
    pub from: u64,
    pub newest: u64,
}

impl Gap {
    /// The gaps the JobManager log announced for job `id`.
    pub fn announced(log: &str, id: &str) -> Vec<Gap> {
        let number = |line: &str, after: &str| -> Option<u64> {
            let rest = &line[line.find(after)? + after.len()..];
            rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        };
        log.lines()
            .filter(|l| l.contains(id) && l.contains("older than output already committed"))
            .filter_map(|l| {
                let from = if l.contains("restores nothing") { 0 } else { number(l, "restores checkpoint ")? };
                Some(Gap { attempt: u32::try_from(number(l, "attempt ")?).ok()?, from, newest: number(l, "epochs up to ")? })
            })
            .collect()
    }

    /// The file of (epoch, attempt) is output of the gap, written again after it.
    fn covers(&self, epoch: u64, attempt: u32) -> bool {
        attempt < self.attempt && self.from < epoch && epoch <= self.newest
    }
}

/// What the committed output holds, against the input.
#[derive(Default, Debug)]
pub struct Report {
    pub files: usize,
    pub lines: u64,
    pub keys: usize,
    /// Counts never committed.
    pub lost: u64,
    /// Counts committed more than once.
    pub duplicated: u64,
    /// Counts committed after a larger one of the same word.
    pub out_of_order: u64,
    /// Words whose last committed count is not their count in the input.
    pub wrong_final: u64,
    /// Lines that are not `word<TAB>count` of an input word, counts above the word's
    /// total, visible files that are not committed part files.
    pub malformed: u64,
    /// Each (subtask, epoch) committed by several attempts: their file names.
    pub committed_twice: Vec<Vec<String>>,
    /// Files of announced at-least-once gaps (not checked: their records are written
    /// again after them), and their lines.
    pub gap_files: usize,
    pub gap_lines: u64,
    /// The first few violations, for people.
    pub examples: Vec<String>,
}

impl Report {
    pub fn violations(&self) -> u64 {
        self.lost + self.duplicated + self.out_of_order + self.wrong_final + self.malformed + self.committed_twice.len() as u64
    }

    fn example(&mut self, what: String) {
        if self.examples.len() < 8 {
            self.examples.push(what);
        }
    }

    /// Totals of two reports (examples and file names: the first ones).
    pub fn add(mut self, o: &Report) -> Report {
        (self.files, self.lines, self.keys) = (self.files + o.files, self.lines + o.lines, self.keys + o.keys);
        (self.lost, self.duplicated, self.out_of_order) = (self.lost + o.lost, self.duplicated + o.duplicated, self.out_of_order + o.out_of_order);
        (self.wrong_final, self.malformed) = (self.wrong_final + o.wrong_final, self.malformed + o.malformed);
        self.committed_twice.extend(o.committed_twice.iter().cloned());
        (self.gap_files, self.gap_lines) = (self.gap_files + o.gap_files, self.gap_lines + o.gap_lines);
        o.examples.iter().for_each(|e| self.example(e.clone()));
        self
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Report { files, lines, keys, lost, duplicated, out_of_order, wrong_final, malformed, .. } = self;
        write!(f, "  {lines} lines checked in {files} files ({keys} words): lost {lost}, duplicated {duplicated}, out of order {out_of_order}, ")?;
        writeln!(f, "wrong final count {wrong_final}, malformed {malformed}, epochs committed twice {}", self.committed_twice.len())?;
        if self.gap_files > 0 {
            writeln!(f, "    announced at-least-once gaps: {} files, {} lines written again after them", self.gap_files, self.gap_lines)?;
        }
        self.committed_twice.iter().take(8).try_for_each(|names| writeln!(f, "    committed twice: {}", names.join(" ")))?;
        self.examples.iter().try_for_each(|e| writeln!(f, "    {e}"))
    }
}

/// One word's committed counts: a bitmap of those seen and the largest.
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
    distinct: u64,
    max: u64,
}

impl Seen {
    /// Marks `v`; false if it was already there.
    fn insert(&mut self, v: u64) -> bool {
        let (i, bit) = ((v / 64) as usize, 1u64 << (v % 64));
        if self.bits.len() <= i {
            self.bits.resize(i + 1, 0);
        }
        let fresh = self.bits[i] & bit == 0;
        self.bits[i] |= bit;
        self.distinct += u64::from(fresh);
        fresh
    }
}

/// Reads every committed part file of `dir` in commit order (by epoch, then subtask,
/// then attempt) and checks each word's sequence against `expected`. Files of the
/// announced `gaps` are counted apart: everything else must be exactly once.
pub fn check(dir: &Path, expected: &HashMap<String, u64>, gaps: &[Gap]) -> Result<Report> {
    let mut report = Report::default();
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading the output dir {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        match parse_part(&name) {
            Some((_, epoch, attempt)) if gaps.iter().any(|g| g.covers(epoch, attempt)) => {
                report.gap_files += 1;
                let text = std::fs::read(dir.join(&name)).with_context(|| format!("reading {name}"))?;
                report.gap_lines += text.iter().filter(|b| **b == b'\n').count() as u64;
            }
            Some((subtask, epoch, attempt)) => parts.push((epoch, subtask, attempt, name)),
            // Pending files live in hidden directories; anything else visible is wrong.
            None if name.starts_with('.') => {}
            None => {
                report.malformed += 1;
                report.example(format!("unexpected visible file {name}"));
            }
        }
    }
    parts.sort();
    report.files = parts.len();
    for w in parts.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if (a.0, a.1) == (b.0, b.1) {
            match report.committed_twice.last_mut() {
                Some(names) if names.last() == Some(&a.3) => names.push(b.3.clone()),
                _ => report.committed_twice.push(vec![a.3.clone(), b.3.clone()]),
            }
        }
    }
    let mut seen: HashMap<&str, Seen> = HashMap::with_capacity(expected.len());
    let mut line = Vec::new();
    for (_, _, _, name) in &parts {
        let path = dir.join(name);
        let mut r = BufReader::with_capacity(1 << 20, File::open(&path).with_context(|| format!("opening {}", path.display()))?);
        let mut number = 0u64;
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).with_context(|| format!("reading {}", path.display()))? == 0 {
                break;
            }
            number += 1;
            report.lines += 1;
            let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
            let parsed = text.rsplit_once('\t').and_then(|(w, v)| Some((w, v.parse::<u64>().ok()?)));
            let Some((word, total, v)) = parsed.and_then(|(w, v)| expected.get_key_value(w).map(|(w, total)| (w.as_str(), *total, v))) else {
                report.malformed += 1;
                report.example(format!("{name}:{number}: not a word of the input with a count: {text:?}"));
                continue;
            };
            if v == 0 || v > total {
                report.malformed += 1;
                report.example(format!("{name}:{number}: {word:?} counted {v}, its total is {total}"));
                continue;
            }
            let s = seen.entry(word).or_default();
            if !s.insert(v) {
                report.duplicated += 1;
                report.example(format!("{name}:{number}: {word:?} count {v} committed again"));
            } else if v != s.max + 1 {
                report.out_of_order += 1;
                report.example(format!("{name}:{number}: {word:?} count {v} after {}", s.max));
            }
            s.max = s.max.max(v);
        }
    }
    report.keys = seen.len();
    for (word, &total) in expected {
        let s = seen.get(word.as_str());
        let (distinct, max) = s.map_or((0, 0), |s| (s.distinct, s.max));
        if distinct < total {
            report.lost += total - distinct;
            report.example(format!("{word:?}: {} of its {total} counts never committed", total - distinct));
        }
        if max != total {
            report.wrong_final += 1;
            report.example(format!("{word:?}: final count {max}, expected {total}"));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn an_epoch_committed_by_two_attempts_is_found_with_its_duplicates() {
        let dir = std::env::temp_dir().join(format!("weir-chaos-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".pending-j.1")).expect("dir");
        let expected: HashMap<String, u64> = [("a".to_string(), 3), ("b".to_string(), 1)].into();
        write(&dir, "part-0-1-a0", "a\t1\nb\t1\n");
        write(&dir, "part-0-2-a0", "a\t2\n");
        write(&dir, "part-0-2-a1", "a\t2\n");
        write(&dir, "part-0-3-a1", "a\t3\n");
        let r = check(&dir, &expected, &[]).expect("check");
        assert_eq!((r.files, r.lines, r.duplicated, r.lost, r.out_of_order, r.wrong_final), (4, 5, 1, 0, 0, 0));
        assert_eq!(r.committed_twice, vec![vec!["part-0-2-a0".to_string(), "part-0-2-a1".to_string()]]);

        // Epoch 3 lost, and a stray file.
        std::fs::remove_file(dir.join("part-0-3-a1")).expect("rm");
        std::fs::remove_file(dir.join("part-0-2-a1")).expect("rm");
        write(&dir, "part-0", "");
        let r = check(&dir, &expected, &[]).expect("check");
        assert_eq!((r.lost, r.wrong_final, r.malformed, r.duplicated), (1, 1, 1, 0));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// Attempt 1 restored checkpoint 1 although epoch 2 was committed: epoch 2 of
    /// attempt 0 is the announced gap, and the rest must still be exactly once.
    #[test]
    fn an_announced_gap_is_set_apart_and_the_rest_checked_exactly_once() {
        let dir = std::env::temp_dir().join(format!("weir-chaos-gap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let expected: HashMap<String, u64> = [("a".to_string(), 3)].into();
        write(&dir, "part-0-1-a0", "a\t1\n");
        write(&dir, "part-0-2-a0", "a\t2\n");
        write(&dir, "part-0-3-a1", "a\t2\na\t3\n");
        let log = "2026-12-06T10:00:00Z  WARN weir_jobmanager::job: attempt 1 restores checkpoint 1, older than output already committed \
                   (epochs up to 2): that output stays, and the records after checkpoint 1 are written again (at-least-once for that gap) job=j7\n\
                   ... attempt 1 restores checkpoint 1, older than output already committed (epochs up to 2) job=other";
        let gaps = Gap::announced(log, "j7");
        assert_eq!(gaps, vec![Gap { attempt: 1, from: 1, newest: 2 }]);
        let r = check(&dir, &expected, &gaps).expect("check");
        assert_eq!((r.violations(), r.gap_files, r.gap_lines, r.lines), (0, 1, 1, 3));
        assert_eq!(check(&dir, &expected, &[]).expect("check").duplicated, 1, "unannounced, it is a duplicate");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn generated_text_splits_as_python_would() {
        let path = std::env::temp_dir().join(format!("weir-chaos-gen-{}", std::process::id()));
        let expected = generate(&path, &mut Rng::new(7), 20_000).expect("generate");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains('\r'));
        assert_eq!(expected.values().sum::<u64>(), text.split(is_python_space).filter(|w| !w.is_empty()).count() as u64);
        assert!(text.contains('\u{3000}') && text.contains('水'));
        std::fs::remove_file(&path).expect("cleanup");
    }
}
