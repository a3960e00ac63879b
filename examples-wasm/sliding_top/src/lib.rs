//! Clicks per user over the last 10 s, every second, in event time. The input file's
//! lines are `<event time in ms> <user>`, whitespace-separated; other lines are counted,
//! logged and skipped. Clicks may arrive up to 5 s out of order. Sliding windows of 10 s
//! start every second, so each click counts in ten of them; every window with clicks of
//! a user writes one line `<user><TAB><window start ms> <count>` once the watermark
//! passes its end.
//!
//! `weir run sliding_top.wasm --input clicks.txt --output counts.txt`
//!
//! Demonstrates overlapping windows. (The top users per window are a later step; the
//! counts here are what it would rank.)

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
    job.name("sliding_top");
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
        .assign_timestamps("event-time", |click: &Click| click.0, WatermarkStrategy::bounded(5_000))
        .key_by("by-user", |click: &Click| click.1.clone())
        // Each user keeps up to ten open windows (plus those waiting for the watermark),
        // one count each, in its keyed state.
        .window(Windows::sliding(10_000, 1_000))
        .count("per-10s")
        .map("format", |(window, count): (Window, u64)| format!("{} {count}", window.start))
        .sink("out", Sink::default());
}

weir_sdk::export_job!(build);
