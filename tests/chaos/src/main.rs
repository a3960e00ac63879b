//! weir-chaos: runs word-count jobs one after another on a real cluster (a JobManager,
//! three TaskManagers, each TaskManager in its own network namespace) while injecting
//! seeded faults (kills, pauses past the heartbeat timeout, JobManager failover,
//! network partitions, damaged checkpoints), then checks that every job's committed
//! output is exactly once: per word exactly 1, 2, ..., n in commit order.
//!
//! `--seed S --only-job J` replays job J's schedule of a run with seed S (the fault
//! kinds, victims, holds and gaps; timing is the machine's).

mod checker;
mod cluster;
mod faults;
mod netns;
mod sys;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::checker::Report;
use crate::cluster::Cluster;
use crate::faults::{Fault, Kind, Outcome};
use crate::sys::{Rng, mix};

#[derive(Parser, Debug)]
// A later flag wins: `just chaos --jobs 3` overrides the recipe's --jobs.
#[command(about = "Chaos checker: a real Weir cluster under seeded faults, committed output checked exactly once", args_override_self = true)]
struct Args {
    /// Seed of the whole run (default: from the clock; always printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Jobs to run one after another [default: 20, smoke 2].
    #[arg(long)]
    jobs: Option<usize>,
    /// Faults injected into each job (fewer if the job finishes first) [default: 10, smoke 3].
    #[arg(long)]
    faults_per_job: Option<usize>,
    /// Words of input per job [default: 5M per fault, plus 5M]: the job must outlive its
    /// faults (about 2.5M words/s on 2 cores between them).
    #[arg(long)]
    words: Option<u64>,
    /// Go on past --jobs (up to 3x) until this many faults were injected: jobs that
    /// finish early take fewer faults.
    #[arg(long, default_value_t = 0)]
    min_faults: usize,
    /// Run only job J (0-based) of the run's schedule: reproduces a failure.
    #[arg(long)]
    only_job: Option<usize>,
    /// Preset: 2 jobs of 3 faults, among them pauses longer than the heartbeat timeout.
    #[arg(long)]
    smoke: bool,
    /// TaskManagers on loopback without namespaces (no partition faults).
    #[arg(long)]
    no_netns: bool,
    #[arg(long, default_value_t = 1500)]
    heartbeat_timeout_ms: u64,
    #[arg(long, default_value_t = 4)]
    parallelism: u32,
    /// The weir binary (copied at start).
    #[arg(long, default_value = "target/release/weir")]
    weir: PathBuf,
    #[arg(long, default_value = "target/wasm32-wasip2/release/wordcount.wasm")]
    wasm: PathBuf,
    /// Where the cluster, logs, inputs and outputs go [default: a new directory in $TMPDIR].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory even when everything passed.
    #[arg(long)]
    keep: bool,
    /// A job not FINISHED this long after its submission is stuck.
    #[arg(long, default_value_t = 900)]
    job_timeout_secs: u64,
}

/// The run's effective settings.
struct Config {
    seed: u64,
    jobs: usize,
    faults: usize,
    words: u64,
    smoke: bool,
    args: Args,
}

impl Config {
    /// The command line that replays job `j`.
    fn repro(&self, j: usize) -> String {
        let mut s = format!("target/release/weir-chaos --seed {} --only-job {j} --faults-per-job {} --words {}", self.seed, self.faults, self.words);
        if self.smoke {
            s.push_str(" --smoke");
        }
        if self.args.no_netns {
            s.push_str(" --no-netns");
        }
        s
    }

    /// The smoke preset's kinds, so that a short run still sees a zombie, a JobManager
    /// failover and a damaged checkpoint (victims and holds stay seeded).
    fn forced(&self, job: usize, k: usize, netns: bool) -> (Option<Kind>, bool) {
        if !self.smoke {
            return (None, false);
        }
        let second = if netns { Kind::Partition } else { Kind::TmKill };
        let plan = [[Kind::TmPause, second, Kind::Corrupt], [Kind::JmKill, Kind::TmPause, Kind::TmKill]];
        let kind = plan[job % 2][k % 3];
        (Some(kind), kind == Kind::TmPause)
    }
}

/// One job's story.
struct JobResult {
    index: usize,
    id: String,
    outcomes: Vec<Outcome>,
    report: Option<Report>,
    error: Option<String>,
    /// The fault the job did not survive (it failed or got stuck).
    fatal: Option<Fault>,
    elapsed: Duration,
}

impl JobResult {
    fn ok(&self) -> bool {
        self.error.is_none() && self.report.as_ref().is_some_and(|r| r.violations() == 0)
    }
}

fn main() -> ExitCode {
    sys::catch_interrupts();
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("weir-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<bool> {
    let seed = args
        .seed
        .unwrap_or_else(|| mix(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)) % 1_000_000);
    let cfg = Config {
        seed,
        jobs: args.jobs.unwrap_or(if args.smoke { 2 } else { 20 }),
        faults: args.faults_per_job.unwrap_or(if args.smoke { 3 } else { 10 }),
        words: 0,
        smoke: args.smoke,
        args,
    };
    let cfg = Config { words: cfg.args.words.unwrap_or(5_000_000 * (cfg.faults as u64 + 1)), ..cfg };
    let a = &cfg.args;
    for (what, p) in [("weir binary (cargo build --release)", &a.weir), ("word-count job (just examples)", &a.wasm)] {
        if !p.exists() {
            bail!("no {what} at {}", p.display());
        }
    }
    let use_netns = !a.no_netns && netns::available();
    if !a.no_netns && !use_netns {
        println!("network namespaces unavailable (not root? no iproute2?): TaskManagers on loopback, no partitions");
    }
    let dir = a.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("weir-chaos-{seed}-{}", std::process::id())));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let wasm = dir.join("wordcount.wasm");
    std::fs::copy(&a.wasm, &wasm).with_context(|| format!("copying {}", a.wasm.display()))?;
    println!(
        "weir-chaos seed {seed}: {} job(s) of {} fault(s), {} words each, parallelism {}, heartbeat timeout {} ms, {}; work dir {}",
        cfg.jobs,
        cfg.faults,
        cfg.words,
        a.parallelism,
        a.heartbeat_timeout_ms,
        if use_netns { "TaskManagers in network namespaces" } else { "loopback" },
        dir.display()
    );
    let started = Instant::now();
    let mut cluster = Cluster::start(&dir, &a.weir, use_netns, a.heartbeat_timeout_ms)?;
    let mut results: Vec<JobResult> = Vec::new();
    let mut next = a.only_job.unwrap_or(0);
    loop {
        let injected: usize = results.iter().map(|r| r.outcomes.len()).sum();
        let more = next < cfg.jobs || (injected < a.min_faults && next < 3 * cfg.jobs);
        if !results.is_empty() && (a.only_job.is_some() || !more) {
            break;
        }
        let r = run_job(&mut cluster, &cfg, &wasm, next)?;
        print_job(&cfg, &r);
        results.push(r);
        next += 1;
    }
    drop(cluster);
    let all_ok = print_total(&cfg, &results, started.elapsed());
    if all_ok && !cfg.args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("logs, inputs and outputs kept in {}", dir.display());
    }
    Ok(all_ok)
}

/// Runs job `j`: submit, faults, wait for its end, check. Errors of the job (it
/// failed, got stuck) are its result; errors of the harness end the run.
fn run_job(c: &mut Cluster, cfg: &Config, wasm: &Path, j: usize) -> Result<JobResult> {
    let a = &cfg.args;
    // Two streams: the schedule (kinds, victims, holds, gaps) draws the same numbers
    // whatever the timing; what depends on the cluster's state (which checkpoint file
    // to damage) draws from the other.
    let mut plan = Rng::new(mix(cfg.seed ^ mix(j as u64 + 1)));
    let mut other = Rng::new(mix(plan.next_u64()));
    let dir = c.dir.join(format!("job-{j}"));
    std::fs::create_dir_all(&dir)?;
    let (input, output) = (dir.join("input.txt"), dir.join("out"));
    let generating = Instant::now();
    let expected = checker::generate(&input, &mut plan, cfg.words)?;
    let generated = generating.elapsed();
    let interval = plan.range(200, 500);
    let restart = format!("fixed-delay:1000000:{}", plan.range(200, 1000));
    c.wait_all_slots(Duration::from_secs(120))?;
    let t0 = Instant::now();
    let id = c.submit(wasm, &input, &output, a.parallelism, interval, &restart)?;
    println!(
        "job {j} ({id}): {} words ({} distinct, generated in {:.1}s), checkpoints every {interval} ms, restart {restart}",
        cfg.words,
        expected.len(),
        generated.as_secs_f64()
    );
    let mut r = JobResult { index: j, id: id.clone(), outcomes: vec![], report: None, error: None, fatal: None, elapsed: Duration::ZERO };
    let deadline = t0 + Duration::from_secs(a.job_timeout_secs);
    let result = (|| -> Result<()> {
        wait_job(c, &id, deadline, "its first checkpoint", |s| s.ended() || (s.engine == "RUNNING" && s.last_checkpoint.is_some()))?;
        for k in 0..cfg.faults {
            sys::sleep(plan.ms(300, 1500))?;
            let (kind, long) = cfg.forced(j, k, c.uses_netns());
            let f = Fault::draw(&mut plan, kind, c.uses_netns(), &c.placement(&id), a.heartbeat_timeout_ms, long);
            if c.job(&id)?.ended() {
                break;
            }
            println!("  fault {k}: {}", f.describe());
            r.fatal = Some(f.clone());
            let o = faults::inject(c, &id, &f, &mut other)?;
            r.fatal = None;
            print_fault(k, &o, a.heartbeat_timeout_ms);
            r.outcomes.push(o);
        }
        let end = wait_job(c, &id, deadline, "its end", |s| s.ended())?;
        if end.state != "FINISHED" {
            bail!("job ended {}: {}", end.state, end.failure.unwrap_or_default());
        }
        Ok(())
    })();
    r.elapsed = t0.elapsed();
    match result {
        Err(e) if e.to_string() == "interrupted" => return Err(e),
        Err(e) => {
            r.error = Some(format!("{e:#}"));
            println!("job {j} ({id}) FAILED TO COMPLETE: {e:#}\n{}", c.log_tails(60));
            c.cancel(&id);
            return Ok(r);
        }
        Ok(()) => {}
    }
    let checking = Instant::now();
    let report = checker::check(&output, &expected)?;
    println!("  output checked in {:.1}s", checking.elapsed().as_secs_f64());
    if report.violations() == 0 && !a.keep {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(c.checkpoint_dir().join(&id));
    }
    r.report = Some(report);
    Ok(r)
}

/// Polls the job until `done`, failing at `deadline` with every log's tail.
fn wait_job(c: &Cluster, id: &str, deadline: Instant, what: &str, done: impl Fn(&cluster::JobView) -> bool) -> Result<cluster::JobView> {
    loop {
        sys::interrupted()?;
        if let Ok(s) = c.job(id)
            && done(&s)
        {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("job {id} stuck: no {what} before the deadline (last: {:?})", c.job(id).ok());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn print_fault(k: usize, o: &Outcome, heartbeat_ms: u64) {
    let result = match (o.absorbed, o.recovery) {
        (true, _) => "absorbed (no restart)".to_string(),
        (false, Some(d)) => format!("recovered in {:.1}s", d.as_secs_f64()),
        (false, None) => "not recovered".to_string(),
    };
    let zombie = if o.fault.kind == Kind::TmPause && o.fault.hold.as_millis() as u64 > heartbeat_ms { " (past the heartbeat timeout)" } else { "" };
    println!("  fault {k} done{zombie}: {result}");
    if let Some(what) = &o.corrupted {
        println!("    damaged {what}; reported by the jobmanager: {}", if o.detected == Some(true) { "yes" } else { "NO" });
    }
}

fn print_job(cfg: &Config, r: &JobResult) {
    let status = if r.ok() { "OK" } else { "VIOLATION" };
    println!("job {} ({}): {status} in {:.1}s, {} fault(s)", r.index, r.id, r.elapsed.as_secs_f64(), r.outcomes.len());
    if let Some(rep) = &r.report {
        println!(
            "  checked {} lines in {} files, {} words: lost {}, duplicated {}, out of order {}, wrong final count {}, malformed {}, epochs committed twice {}",
            rep.lines,
            rep.files,
            rep.keys,
            rep.lost,
            rep.duplicated,
            rep.out_of_order,
            rep.wrong_final,
            rep.malformed,
            rep.committed_twice.len()
        );
        for names in rep.committed_twice.iter().take(10) {
            println!("    committed twice: {}", names.join(" "));
        }
        for e in &rep.examples {
            println!("    {e}");
        }
    }
    if !r.ok() {
        println!("  reproduce: {}", cfg.repro(r.index));
    }
}

/// Prints the run's totals; whether everything passed.
fn print_total(cfg: &Config, results: &[JobResult], elapsed: Duration) -> bool {
    let mut by_kind: BTreeMap<Kind, (usize, usize, Vec<Duration>)> = BTreeMap::new();
    for o in results.iter().flat_map(|r| &r.outcomes) {
        let e = by_kind.entry(o.fault.kind).or_default();
        e.0 += 1;
        e.1 += usize::from(o.absorbed);
        e.2.extend(o.recovery);
    }
    let survived: usize = results.iter().map(|r| r.outcomes.len()).sum();
    let fatal: Vec<String> = results.iter().filter_map(|r| r.fatal.as_ref()).map(Fault::describe).collect();
    println!("\n=== weir-chaos seed {}: {} job(s) in {:.0}s", cfg.seed, results.len(), elapsed.as_secs_f64());
    println!(
        "faults injected {}, survived {survived}; not survived: {}",
        survived + fatal.len(),
        if fatal.is_empty() { "none".into() } else { fatal.join(", ") }
    );
    for (kind, (n, absorbed, mut times)) in by_kind {
        times.sort();
        let pick = |q: f64| times.get(((times.len() as f64 - 1.0) * q).round() as usize).map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()));
        println!("  {:<19} {n:>4} injected, {absorbed:>3} absorbed; recovery min {} median {} max {}", kind.name(), pick(0.0), pick(0.5), pick(1.0));
    }
    let zombies = results
        .iter()
        .flat_map(|r| &r.outcomes)
        .filter(|o| o.fault.kind == Kind::TmPause && o.fault.hold.as_millis() as u64 > cfg.args.heartbeat_timeout_ms)
        .count();
    let corrupt: Vec<&Outcome> = results.iter().flat_map(|r| &r.outcomes).filter(|o| o.detected.is_some()).collect();
    println!(
        "  pauses past the heartbeat timeout: {zombies}; checkpoint files damaged then reported by the jobmanager: {} of {}",
        corrupt.iter().filter(|o| o.detected == Some(true)).count(),
        corrupt.len()
    );
    let reports: Vec<&Report> = results.iter().filter_map(|r| r.report.as_ref()).collect();
    let sum = |f: fn(&Report) -> u64| reports.iter().map(|r| f(r)).sum::<u64>();
    println!(
        "lines checked {}: lost {}, duplicated {}, out of order {}, wrong final counts {}, malformed {}, epochs committed twice {}",
        sum(|r| r.lines),
        sum(|r| r.lost),
        sum(|r| r.duplicated),
        sum(|r| r.out_of_order),
        sum(|r| r.wrong_final),
        sum(|r| r.malformed),
        sum(|r| r.committed_twice.len() as u64)
    );
    let bad: Vec<&JobResult> = results.iter().filter(|r| !r.ok()).collect();
    for r in &bad {
        println!("FAILED job {} ({}): {}; reproduce: {}", r.index, r.id, r.error.as_deref().unwrap_or("exactly-once violated"), cfg.repro(r.index));
    }
    println!("{}", if bad.is_empty() { "PASS" } else { "FAIL" });
    bad.is_empty()
}
