//! Late records in event-time windows. The input file's lines are `<event time in ms>
//! <user>`; other lines are skipped. Clicks up to `bound-ms` (argument, default 2000)
//! out of order are on time. Each user's clicks are counted per window
//! (`windows=tumbling`, the default, of `size-ms`; `sliding` of `size-ms` every
//! `slide-ms`; `session` with `gap-ms`), and each firing writes
//! `<user><TAB><start> <end> <count>`.
//!
//! A window is kept `lateness-ms` (default 1000) after it fired: a late click still
//! counts and the window fires again at once with the new count. Clicks later than that
//! go to the side output `late`, which its own sink writes to the file `late-output`
//! (argument) as `<user><TAB><ms> <user>`, the click as it came; without that argument
//! nothing reads the side output, and the host drops and counts its records.
//!
//! The source and the timestamp assigner run as one subtask whatever the job's
//! parallelism, so the job has one watermark sequence and which clicks are late does
//! not depend on how parallel subtasks interleave; the windows run at the job's
//! parallelism.
//!
//! `weir run late_data.wasm -i clicks.txt -o windows.txt --arg late-output=late.txt`
//!
//! Demonstrates side outputs: `side_output_late_data` and `Stream::side_output`.

use weir_sdk::prelude::*;

/// A click: its event time (ms) and the user.
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
    let bound = job.arg_u64("bound-ms", 2_000);
    let lateness = job.arg_u64("lateness-ms", 1_000);
    let size = job.arg_u64("size-ms", 1_000);
    let windows = match job.arg("windows").unwrap_or("tumbling") {
        "tumbling" => Windows::tumbling(size),
        "sliding" => Windows::sliding(size, job.arg_u64("slide-ms", 250)),
        "session" => Windows::session(job.arg_u64("gap-ms", 300)),
        other => {
            job.fail(format!("windows={other:?}: tumbling, sliding or session"));
            Windows::tumbling(size)
        }
    };
    let late_output = job.arg("late-output").map(str::to_string);
    job.name("late_data");
    let late = OutputTag::<Click>::new("late");
    let counts = job
        .file_lines("clicks")
        .parallelism(1)
        .flat_map("parse", |line: String, out: &mut Emitter<Click>| {
            if let Some(click) = parse(&line) {
                out.emit(click)
            }
        })
        .parallelism(1)
        .assign_timestamps("event-time", |click: &Click| click.0, WatermarkStrategy::bounded(bound))
        .parallelism(1)
        .key_by("by-user", |click: &Click| click.1.clone())
        .window(windows)
        .allowed_lateness(lateness)
        .side_output_late_data(&late)
        .count("counts");
    if let Some(path) = late_output {
        counts.side_output(&late).map("late-format", |(ts, user): Click| format!("{ts} {user}")).sink("late-out", Sink::file(path));
    }
    counts.map("format", |(window, count): (Window, u64)| format!("{} {} {count}", window.start, window.end)).sink("out", Sink::default());
}

weir_sdk::export_job!(build);
