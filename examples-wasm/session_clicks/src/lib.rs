//! Click sessions per user, in event time. The input file's lines are
//! `<event time in ms> <user>`, whitespace-separated; other lines are counted, logged and
//! skipped. A user's session ends after `gap-ms` (argument, default 30000) without a
//! click, and clicks up to 5 s out of order are on time. Each session writes one line
//! `<user><TAB><start> <end> <count>` once the watermark passes its end, where `end` is
//! the last click plus the gap.
//!
//! With `lateness-ms` (argument, default 0) a session is kept that long after it was
//! written: a late click still joins it (possibly merging it with the next session) and
//! the updated session is written again at once, as another line. Clicks later than that
//! are dropped, and their number is logged when the job ends.
//!
//! `weir run session_clicks.wasm --input clicks.txt --output sessions.txt --arg gap-ms=60000`
//!
//! Demonstrates merging windows and allowed lateness.

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
    let gap = job.arg_u64("gap-ms", 30_000);
    let lateness = job.arg_u64("lateness-ms", 0);
    job.name("session_clicks");
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
        // Sessions that come within the gap of each other merge, counts included.
        .window(Windows::session(gap))
        .allowed_lateness(lateness)
        .count("sessions")
        .map("format", |(window, count): (Window, u64)| format!("{} {} {count}", window.start, window.end))
        .sink("out", Sink::default());
}

weir_sdk::export_job!(build);
