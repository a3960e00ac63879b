//! Word count: the lines of the input file, split into words like Python's
//! `str.split()`, counted per word. Emits `(word, running count)` for every word;
//! argument `sink=discard` drops the output instead of printing it (otherwise the CLI
//! decides where the text goes).
//!
//! Demonstrates the DataStream-like API end to end: a host source, `flat_map`, a
//! `key_by_value` fused into it, a keyed `count`, and a text sink.

use weir_sdk::prelude::*;

/// Python's `str.isspace()`: Unicode White_Space (Rust's `char::is_whitespace`) plus
/// the separators U+001C..=U+001F, which Python also splits on.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn build(job: &mut Job) {
    let sink = match job.arg("sink") {
        Some("discard") => Sink::discard(),
        _ => Sink::default(),
    };
    job.name("wordcount");
    job.file_lines("lines")
        .flat_map("split", |line: String, out: &mut Emitter<String>| {
            // `emit_str` encodes the borrowed word directly: no String per word.
            for w in line.split(is_python_space).filter(|w| !w.is_empty()) {
                out.emit_str(w)
            }
        })
        // The word itself is the key; `key_by_value` writes it once and copies it.
        .key_by_value("by-word")
        .count("count")
        .sink("out", sink);
}

weir_sdk::export_job!(build);
