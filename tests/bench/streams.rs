//! The streams section (issue 15, streams that meet): parallelism 1, N records into one
//! keyed operator, arriving from one generator, from two generators in a union, and
//! from two generators meeting in a connect (`enrich_clicks mode=latest`: profiles set
//! a user's state, clicks read it), beside keyed-sum under the same conditions. The
//! union costs the channels of a second producer and nothing per record (it is no
//! node); the connect costs what a keyed operator costs plus four bytes per batch.

use std::path::Path;

use crate::{RUNS, WEIR, median_of_runs};

pub fn bench(keyed_sum: &Path, n: u64) {
    let half = n / 2;
    let (union, connect) = (WEIR.example("union_counts"), WEIR.example("enrich_clicks"));
    println!();
    println!("N = {n} records into one keyed operator, parallelism 1, median of {RUNS} runs");
    println!("{:<44} {:>14} {:>12}", "streams", "rec/s", "RSS MiB");
    let all = format!("n={n}");
    let (first, second) = (format!("n={half}"), format!("m={}", n - half));
    let (profiles, clicks) = (format!("profiles={half}"), format!("clicks={}", n - half));
    let cases: [(&str, &Path, Vec<&str>); 4] = [
        ("keyed-sum, one generator", keyed_sum, vec!["--arg", &all, "--arg", "sink=discard"]),
        ("union_counts, one generator", &union, vec!["--arg", &all, "--arg", "m=0", "--arg", "s=0", "--arg", "keys=100000", "--arg", "sink=discard"]),
        (
            "union_counts, union of two generators",
            &union,
            vec!["--arg", &first, "--arg", &second, "--arg", "s=0", "--arg", "keys=100000", "--arg", "sink=discard"],
        ),
        (
            "connect (enrich_clicks mode=latest)",
            &connect,
            vec![
                "--arg",
                &profiles,
                "--arg",
                &clicks,
                "--arg",
                "users=100000",
                "--arg",
                "profile-rate=1000",
                "--arg",
                "click-rate=1000",
                "--arg",
                "mode=latest",
                "--arg",
                "sink=discard",
            ],
        ),
    ];
    for (name, job, args) in cases {
        let m = median_of_runs(job, &args, n);
        println!("{name:<44} {:>14.0} {:>12.1}", m.records_per_s, m.peak_rss_mib);
        for p in &m.problems {
            println!("  warning: {p}");
        }
    }
}
