//! Word count through `weir run`, checked against Python's `str.split()`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use weir_testkit::{splitmix64, stderr};

use crate::WEIR;

/// A text with many kinds of whitespace, empty lines, CRLF, non-ASCII words and words
/// that differ only by case.
pub fn write_text(path: &Path, lines: u64) {
    const WORDS: &[&str] = &["the", "The", "THE", "weir", "flink", "élan", "日本語", "naïve", "🦀", "a-b", "x", "data,", "stream."];
    const SEPS: &[&str] = &[" ", "  ", "\t", "\u{a0}", "\u{3000}", " \u{2003} ", "\u{1c}", "\u{0b}", "\u{0c}", "\u{85}"];
    let mut text = String::new();
    for i in 0..lines {
        let r = splitmix64(i);
        let n = (r % 12) as usize;
        if r.is_multiple_of(7) {
            text.push_str(SEPS[(r >> 8) as usize % SEPS.len()]);
        }
        for j in 0..n {
            let w = splitmix64(i * 16 + j as u64);
            if j > 0 {
                text.push_str(SEPS[(w >> 20) as usize % SEPS.len()]);
            }
            text.push_str(WORDS[w as usize % WORDS.len()]);
            if w.is_multiple_of(5) {
                text.push_str(&format!("{}", w % 100));
            }
        }
        text.push_str(if r.is_multiple_of(3) { "\r\n" } else { "\n" });
    }
    std::fs::write(path, text).expect("write input");
}

/// Counts with Python, an implementation that shares no code with Weir.
pub fn python_counts(path: &Path) -> HashMap<String, u64> {
    let script = "import collections,json,sys\n\
                  text = open(sys.argv[1], encoding='utf-8', newline='').read()\n\
                  print(json.dumps(collections.Counter(text.split())))";
    let out = Command::new("python3").args(["-c", script]).arg(path).output().expect("python3 runs");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let json = String::from_utf8(out.stdout).expect("utf8");
    parse_json_counts(&json)
}

/// Parses the flat `{"word": count, ...}` object Python prints (ensure_ascii escapes).
fn parse_json_counts(json: &str) -> HashMap<String, u64> {
    let mut map = HashMap::new();
    let mut chars = json.trim().trim_start_matches('{').trim_end_matches('}').chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | ',')) {
            chars.next();
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut units: Vec<u16> = Vec::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('u') => {
                        let hex: String = chars.by_ref().take(4).collect();
                        units.push(u16::from_str_radix(&hex, 16).expect("hex escape"));
                    }
                    Some(other) => {
                        let mapped = match other {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            'b' => '\u{8}',
                            'f' => '\u{c}',
                            c => c,
                        };
                        units.extend(mapped.encode_utf16(&mut [0; 2]).iter());
                    }
                    None => break,
                },
                c => units.extend(c.encode_utf16(&mut [0; 2]).iter()),
            }
        }
        let word = String::from_utf16(&units).expect("valid utf16");
        let rest: String = chars.by_ref().skip_while(|c| *c == ':' || *c == ' ').take_while(|c| c.is_ascii_digit()).collect();
        map.insert(word, rest.parse().expect("count"));
    }
    map
}

/// Final counts from `weir run` output: the last line of each word holds its count.
pub fn final_counts(output: &str) -> HashMap<String, u64> {
    let mut map = HashMap::new();
    for line in output.lines() {
        let (word, count) = line.rsplit_once('\t').expect("key<TAB>value line");
        map.insert(word.to_string(), count.parse().expect("count"));
    }
    map
}

fn check_wordcount(lines: u64, parallelism: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input.txt");
    let output = dir.path().join("counts.tsv");
    write_text(&input, lines);
    let expected = python_counts(&input);
    assert!(expected.len() > 20, "the input has many distinct words");
    let o = WEIR.run([
        "run".as_ref(),
        WEIR.example("wordcount").as_os_str(),
        "--parallelism".as_ref(),
        parallelism.to_string().as_ref(),
        "--input".as_ref(),
        input.as_os_str(),
        "--output".as_ref(),
        output.as_os_str(),
    ]);
    assert!(o.status.success(), "weir run failed: {}", stderr(&o));
    let text = std::fs::read_to_string(&output).expect("output written");
    let total: u64 = expected.values().sum();
    assert_eq!(text.lines().count() as u64, total, "one output line per word occurrence");
    assert_eq!(final_counts(&text), expected);
}

#[test]
fn wordcount_matches_python_at_parallelism_1() {
    check_wordcount(3000, 1);
}

#[test]
fn wordcount_matches_python_at_parallelism_2() {
    check_wordcount(3000, 2);
}

#[test]
fn wordcount_of_an_empty_file_is_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, output) = (dir.path().join("empty.txt"), dir.path().join("out.tsv"));
    std::fs::write(&input, "").expect("write");
    let o = WEIR.run([
        "run".as_ref(),
        WEIR.example("wordcount").as_os_str(),
        "-p".as_ref(),
        "2".as_ref(),
        "-i".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&output).expect("output"), "");
}

#[test]
fn inspect_prints_the_graph_and_its_chains() {
    let o = WEIR.run(["inspect".as_ref(), WEIR.example("wordcount").as_os_str(), "-p".as_ref(), "2".as_ref()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("KeyBy"), "{out}");
    assert!(out.contains("execution graph (2 slots)"), "{out}");
    assert!(out.contains("source file-lines"), "{out}");
}
