//! The recovery section: how long a job stops when a TaskManager dies. A JobManager
//! with a 1 s heartbeat timeout and checkpoint storage, two one-slot TaskManagers, and
//! keyed-sum at parallelism 2 with checkpoints every 500 ms and immediate restarts.
//! Once the job runs and has completed a checkpoint, one TaskManager is SIGKILLed and
//! started again at once (same identity and state directory, as a supervisor would),
//! and the clock runs from the kill until the job's new attempt is RUNNING and the
//! keyed vertex counts records again.
//!
//! The target: records flow again less than 2 s after the kill.
//!
//! The end is seen by polling `weir status` (each poll is a process and an HTTP
//! handshake, about 10 ms) and the record counts come with heartbeats (every
//! timeout/6), so the measure overstates by up to about 200 ms. The phases in between
//! come from the JobManager's log timestamps (wall clock, the same as the kill's) and
//! from when the restarted TaskManager printed its start line.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_testkit::stderr;

use crate::cluster::{Cluster, TASKMANAGERS, median};

/// Kills per run of the section; `WEIR_BENCH_RECOVERY_ROUNDS` overrides it.
const ROUNDS: usize = 3;
const TARGET: Duration = Duration::from_secs(2);
/// A round that takes longer than this is reported as such rather than waited out.
const GIVE_UP: Duration = Duration::from_secs(60);
/// The keyed vertex of keyed-sum's execution graph (`sum -> out`).
const KEYED_VERTEX: &str = "\"sum -> out\"";

/// When each step of a recovery was seen, from the kill.
#[derive(Default)]
struct Recovery {
    /// When the restarted TaskManager printed its start line (state store open, endpoint
    /// bound, not yet registered): the modification time of its stdout log.
    started: Option<f64>,
    /// From the JobManager's log.
    lost: Option<f64>,
    registered: Option<f64>,
    failed: Option<f64>,
    redeployed: Option<f64>,
    running_logged: Option<f64>,
    /// From `weir status`: the new attempt RUNNING, then its keyed vertex counting.
    running: Option<Duration>,
    flowing: Option<Duration>,
    polls: u32,
    checkpoint_before: String,
    restore: String,
    /// Bytes in the killed TaskManager's state directory, which its successor opens.
    state_dir_bytes: u64,
}

/// The job's line in `weir status`.
fn job_line<'a>(status: &'a str, job: &str) -> Option<&'a str> {
    status.lines().find(|l| l.starts_with(&format!("job {job} ")))
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(name))
}

/// `in=` of the keyed vertex of the job whose line is `job`.
fn keyed_in(status: &str, job: &str) -> Option<u64> {
    let mut lines = status.lines().skip_while(|l| !l.starts_with(&format!("job {job} "))).skip(1);
    let vertex = lines.find(|l| !l.starts_with("  ") || l.contains(KEYED_VERTEX)).filter(|l| l.starts_with("  "))?;
    field(vertex, "in=")?.parse().ok()
}

fn submit(cluster: &Cluster, job: &Path) -> String {
    let o = cluster
        .client("submit")
        .arg(job)
        .args(["-p", "2", "--arg", "n=200000000", "--arg", "work=200", "--arg", "sink=discard"])
        .args(["--checkpoint-interval", "500", "--restart", "fixed-delay:100:0", "--detach"])
        .stdin(Stdio::null())
        .output()
        .expect("weir submit starts");
    if !o.status.success() {
        cluster.fail(&format!("submission failed: {}", stderr(&o)));
    }
    // `job <id> submitted`
    match String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1) {
        Some(id) => id.to_string(),
        None => cluster.fail(&format!("no job id from weir submit: {}", String::from_utf8_lossy(&o.stdout))),
    }
}

fn cancel(cluster: &mut Cluster, job: &str) {
    let o = cluster.client("cancel").arg(job).output().expect("weir cancel starts");
    if !o.status.success() {
        cluster.fail(&format!("cancel of {job} failed: {}", stderr(&o)));
    }
    let free = format!("free slots: {}", TASKMANAGERS.len());
    cluster.wait_until("the job to be cancelled and its slots freed", |c| {
        let status = c.status();
        job_line(&status, job).is_some_and(|l| l.contains(" CANCELED ")) && status.contains(&free)
    });
}

/// Wall-clock seconds of the day, as the log's UTC timestamps count them.
fn of_day(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()) % 86_400.0
}

/// Seconds of the day of a log line's `2025-01-31T12:34:56.123456Z` timestamp.
fn log_time(line: &str) -> Option<f64> {
    let time = line.get(11..)?.split('Z').next()?;
    let mut parts = time.split(':');
    let (h, m, s): (f64, f64, f64) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Fills in the phases the JobManager logged after the kill (at `killed`, seconds of the day).
fn phases_from_log(r: &mut Recovery, log: &str, killed: f64, job: &str, victim: &str) {
    for line in log.lines() {
        let Some(t) = log_time(line) else { continue };
        let mut since = t - killed;
        if since < -43_200.0 {
            since += 86_400.0;
        }
        // Lines of earlier rounds; a little slack for the clock's granularity.
        if !(-0.005..300.0).contains(&since) {
            continue;
        }
        let first = |slot: &mut Option<f64>| {
            slot.get_or_insert(since);
        };
        if line.contains("taskmanager lost") && line.contains(victim) {
            first(&mut r.lost);
        } else if line.contains("taskmanager registered") && line.contains(victim) {
            first(&mut r.registered);
        } else if line.contains(" failed, restart ") && line.contains(job) {
            first(&mut r.failed);
        } else if line.contains(" deployed, restoring ") && line.contains(job) {
            if r.redeployed.is_none() {
                // `restoring checkpoint <job>/chk-<id>/_metadata`, or `restoring nothing`.
                let restore = line.split("restoring ").nth(1).unwrap_or("?");
                r.restore = restore.split('/').find(|p| p.starts_with("chk-")).unwrap_or(restore).trim().to_string();
            }
            first(&mut r.redeployed);
        } else if line.contains(" running") && line.contains("attempt ") && line.contains(job) && r.redeployed.is_some() {
            first(&mut r.running_logged);
        }
    }
}

fn one_round(cluster: &mut Cluster, job: &Path, victim: &str) -> Recovery {
    let id = submit(cluster, job);
    cluster.wait_until("the job to run with a completed checkpoint and records flowing", |c| {
        let status = c.status();
        let Some(line) = job_line(&status, &id) else { return false };
        if line.contains(" FAILED ") || line.contains(" FINISHED ") {
            c.fail(&format!("the job ended before the kill: {line}"));
        }
        line.contains(" RUNNING ") && !line.contains("checkpoint=none") && keyed_in(&status, &id).is_some_and(|n| n > 0)
    });
    let before = cluster.status();
    let mut r = Recovery {
        checkpoint_before: job_line(&before, &id).and_then(|l| field(l, "checkpoint=")).unwrap_or("?").to_string(),
        ..Recovery::default()
    };

    let stdout_log = cluster.dir.path().join(format!("{victim}.stdout.log"));
    let (killed, killed_at) = (Instant::now(), SystemTime::now());
    let killed_of_day = of_day(killed_at);
    cluster.kill(victim);
    r.state_dir_bytes = dir_bytes(&cluster.dir.path().join(format!("state-{victim}")));
    cluster.start_taskmanager(victim);
    loop {
        let status = cluster.status();
        r.polls += 1;
        let line = job_line(&status, &id).unwrap_or_default();
        if line.contains(" FAILED ") || line.contains(" FINISHED ") || line.contains(" CANCELED ") {
            cluster.fail(&format!("the job did not recover: {line}"));
        }
        // Counters start from zero with each attempt, so any count under the new
        // attempt is a record processed since the restart.
        if field(line, "restarts=") == Some("1") && line.contains(" RUNNING ") {
            r.running.get_or_insert(killed.elapsed());
            if keyed_in(&status, &id).is_some_and(|n| n > 0) {
                r.flowing = Some(killed.elapsed());
                break;
            }
        }
        if killed.elapsed() > GIVE_UP {
            println!("round with {victim} killed: no records {GIVE_UP:?} after the kill; last status:\n{status}");
            break;
        }
        cluster.check_alive();
        // Each poll is a process start and a handshake: leave the cluster some CPU.
        std::thread::sleep(Duration::from_millis(5));
    }
    phases_from_log(&mut r, &cluster.log("jobmanager"), killed_of_day, &id, victim);
    r.started =
        std::fs::metadata(&stdout_log).and_then(|m| m.modified()).ok().and_then(|t| t.duration_since(killed_at).ok()).map(|d| d.as_secs_f64());
    cancel(cluster, &id);
    r
}

/// Total size of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn secs(t: Option<f64>) -> String {
    t.map_or("-".to_string(), |t| format!("{t:.3}"))
}

fn dur(t: Option<Duration>) -> String {
    secs(t.map(|d| d.as_secs_f64()))
}

pub fn bench(job: &Path) {
    let mut cluster = Cluster::start_with(&["--heartbeat-timeout-ms", "1000", "--checkpoint-dir", "{dir}/checkpoints"], Some("info"));
    let mut rounds = Vec::new();
    let rounds_wanted = std::env::var("WEIR_BENCH_RECOVERY_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(ROUNDS);
    for round in 0..rounds_wanted {
        // Both in turn: each restart reopens a state directory that earlier rounds
        // left behind, so a cost growing with it shows across rounds.
        let victim = TASKMANAGERS[(round + 1) % TASKMANAGERS.len()];
        rounds.push((victim, one_round(&mut cluster, job, victim)));
    }
    cluster.check_alive();
    let logs: Vec<(String, String)> = cluster.procs.iter().map(|(name, _)| (name.clone(), cluster.log(name))).collect();
    drop(cluster);

    println!();
    println!("recovery: keyed-sum x2 (work=200), checkpoints every 500 ms, heartbeat timeout 1000 ms, restart fixed-delay:100:0");
    println!("seconds from the SIGKILL (the TaskManager is started again right after it):");
    println!(
        "{:<15} {:>4} {:>7} {:>10} {:>6} {:>7} {:>10} {:>8} {:>10} {:>8} {:>5}  restored from, victim's state dir",
        "killed", "chk", "started", "registered", "lost", "failed", "redeployed", "running", "status RUN", "flowing", "polls"
    );
    for (victim, r) in &rounds {
        println!(
            "{victim:<15} {:>4} {:>7} {:>10} {:>6} {:>7} {:>10} {:>8} {:>10} {:>8} {:>5}  {}, {:.1} MB",
            r.checkpoint_before,
            secs(r.started),
            secs(r.registered),
            secs(r.lost),
            secs(r.failed),
            secs(r.redeployed),
            secs(r.running_logged),
            dur(r.running),
            dur(r.flowing),
            r.polls,
            r.restore,
            r.state_dir_bytes as f64 / 1e6
        );
    }
    let flowing: Vec<f64> = rounds.iter().map(|(_, r)| r.flowing.map_or(f64::INFINITY, |d| d.as_secs_f64())).collect();
    let m = median(&flowing);
    let each: Vec<String> = flowing.iter().map(|f| format!("{f:.3}")).collect();
    println!("kill -> records flowing: median {m:.3} s (runs: {})", each.join(" "));
    let verdict = if m < TARGET.as_secs_f64() { "holds" } else { "does NOT hold" };
    let worst = flowing.iter().copied().fold(0.0, f64::max);
    println!("target (records flow again < {:.0} s after the kill): {verdict} for the median; worst run {worst:.3} s", TARGET.as_secs_f64());
    // Each kill logs that the TaskManager was lost and the job restarts: only the rest
    // is news.
    let expected = |l: &str| l.contains("taskmanager lost: no heartbeat") || (l.contains(" failed, restart ") && l.contains(" was lost"));
    for (name, log) in &logs {
        let problems: Vec<&str> = log.lines().filter(|l| (l.contains(" WARN ") || l.contains(" ERROR ")) && !expected(l)).collect();
        if !problems.is_empty() {
            println!("--- {name}: unexpected warnings and errors ({} lines) ---\n{}", problems.len(), problems.join("\n"));
        }
    }
}
