//! Clicks per user and minute, in event time. The input file's lines are
//! `<event time in ms> <user>`, whitespace-separated; other lines are counted, logged and
//! skipped. Clicks may arrive up to 5 s out of order (bounded out-of-orderness). Tumbling
//! 60 s windows count each user's clicks, and each window writes one line
//! `<user><TAB><window start ms> <count>` once the watermark passes its end; at the end
//! of the input, all remaining windows do.
//!
//! `weir run clicks_per_minute.wasm --input clicks.txt --output counts.txt`
//!
//! Demonstrates event time end to end: timestamps taken from the records with a
//! watermark strategy (`assign_timestamps`), a `key_by` fused into that operator, and a
//! windowed count whose per-user windows live in keyed state.

use weir_sdk::prelude::*;

/// A click: its event time (ms since the epoch) and the user.
type Click = (i64, String);

/// `<ms> <user>` and nothing else.
fn parse(line: &str) -> Option<Click> {
    let mut fields = line.split_whitespace();
    let (Some(ts), Some(user), None) = (fields.next(), fields.next(), fields.next()) else {
        return None;
    };
    Some((ts.parse().ok()?, user.to_string()))
}

fn build(job: &mut Job) {
    job.name("clicks_per_minute");
    let mut malformed = 0u64;
    job.file_lines("clicks")
        .flat_map("parse", move |line: String, out: &mut Emitter<Click>| match parse(&line) {
            Some(click) => out.emit(click),
            None => {
                malformed += 1;
                // At 1, 2, 4, 8, ... so a bad file cannot flood the log.
                if malformed.is_power_of_two() {
                    weir_sdk::log::warn(&format!("skipped {malformed} malformed lines so far, the latest {line:?}"));
                }
            }
        })
        // Event time is the click's own time; the watermark trails the newest click by 5 s.
        .assign_timestamps("event-time", |click: &Click| click.0, WatermarkStrategy::bounded(5_000))
        .key_by("by-user", |click: &Click| click.1.clone())
        .window(Windows::tumbling(60_000))
        .count("per-minute")
        // The key (the user) stays; the window becomes its start.
        .map("format", |(window, count): (Window, u64)| format!("{} {count}", window.start))
        .sink("out", Sink::default());
}

weir_sdk::export_job!(build);
