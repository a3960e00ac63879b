//! weir-chaos: word-count jobs, one after another, on a real cluster (a JobManager and
//! three TaskManagers, each TaskManager in its own network namespace unless
//! `--no-netns`) under seeded faults (kills, pauses past the heartbeat timeout,
//! JobManager failover, partitions, damaged checkpoints); then each job's committed
//! output must be exactly once: per word exactly 1, 2, ..., n in commit order.
//!
//! `--seed S --only-job J` replays job J of seed S: the same input and the same fault
//! kinds, holds and gaps (which TaskManager runs what, and timing, are the machine's).

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
use crate::cluster::{Cluster, JobView};
use crate::faults::{Fault, Kind, Outcome};
use crate::sys::{Rng, mix};

// A later flag wins: `just chaos --jobs 3` overrides the recipe's --jobs.
#[derive(Parser, Debug)]
#[command(about = "Chaos checker: a real Weir cluster under seeded faults, committed output checked exactly once", args_override_self = true)]
struct Args {
    /// Seed of the run [default: from the clock; always printed].
    #[arg(long)]
    seed: Option<u64>,
    /// Jobs to run one after another [default: 20; smoke: 2].
    #[arg(long)]
    jobs: Option<usize>,
    /// Faults per job, fewer if the job finishes first [default: 10; smoke: 3].
    #[arg(long)]
    faults_per_job: Option<usize>,
    /// Words of input per job [default: 9M per fault + 5M: the job must outlive its
    /// faults, and two cores get through 5-8M words per fault cycle].
    #[arg(long)]
    words: Option<u64>,
    /// Go on past --jobs (up to 3x as many) until this many faults were injected.
    #[arg(long, default_value_t = 0)]
    min_faults: usize,
    /// Run only job J (0-based) of the seed's schedule: reproduces a failure.
    #[arg(long)]
    only_job: Option<usize>,
    /// The CI preset: 2 jobs of 3 faults, among them pauses past the heartbeat
    /// timeout, a JobManager kill, a partition and a damaged checkpoint.
    #[arg(long)]
    smoke: bool,
    /// TaskManagers on loopback, without namespaces (and so without partitions).
    #[arg(long)]
    no_netns: bool,
    #[arg(long, default_value_t = 1500)]
    heartbeat_timeout_ms: u64,
    #[arg(long, default_value_t = 4)]
    parallelism: u32,
    /// The weir binary (copied at the start: others may rebuild it meanwhile).
    #[arg(long, default_value = "target/release/weir")]
    weir: PathBuf,
    #[arg(long, default_value = "target/wasm32-wasip2/release/wordcount.wasm")]
    wasm: PathBuf,
    /// Cluster, logs, inputs and outputs [default: a new directory in $TMPDIR].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory even when everything passed.
    #[arg(long)]
    keep: bool,
    /// A job not FINISHED this long after its submission is stuck.
    #[arg(long, default_value_t = 900)]
    job_timeout_secs: u64,
}

/// The run's settings, defaults resolved.
struct Config {
    seed: u64,
    jobs: usize,
    faults: usize,
    words: u64,
    netns: bool,
    a: Args,
}

impl Config {
    /// The command line that replays job `j`.
    fn repro(&self, j: usize) -> String {
        let (smoke, no_netns) = (if self.a.smoke { " --smoke" } else { "" }, if self.netns { "" } else { " --no-netns" });
        format!(
            "target/release/weir-chaos --seed {} --only-job {j} --faults-per-job {} --words {}{smoke}{no_netns}",
            self.seed, self.faults, self.words
        )
    }

    /// The smoke preset fixes the kinds (victims and holds stay seeded), so that a
    /// short run still sees zombies, a failover and a damaged checkpoint.
    fn forced(&self, job: usize, k: usize) -> (Option<Kind>, bool) {
        if !self.a.smoke {
            return (None, false);
        }
        let second = if self.netns { Kind::Partition } else { Kind::TmKill };
        let kind = [[Kind::TmPause, Kind::Corrupt, second], [Kind::JmKill, second, Kind::TmPause]][job % 2][k % 3];
        (Some(kind), kind == Kind::TmPause)
    }
}

/// One job's story: the faults it survived, then the check of its output, or why it
/// could not be checked (it failed, got stuck) and the fault it did not survive.
struct JobResult {
    index: usize,
    id: String,
    outcomes: Vec<Outcome>,
    report: Option<Report>,
    error: Option<String>,
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

fn run(a: Args) -> Result<bool> {
    for (what, p) in [("weir binary (cargo build --release)", &a.weir), ("word-count job (just examples)", &a.wasm)] {
        if !p.exists() {
            bail!("no {what} at {}", p.display());
        }
    }
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let (seed, smoke) = (a.seed.unwrap_or(mix(clock) % 1_000_000), a.smoke);
    let (jobs, faults) = (a.jobs.unwrap_or(if smoke { 2 } else { 20 }), a.faults_per_job.unwrap_or(if smoke { 3 } else { 10 }));
    let words = a.words.unwrap_or(9_000_000 * faults as u64 + 5_000_000);
    let netns = !a.no_netns && netns::available();
    if !a.no_netns && !netns {
        println!("network namespaces unavailable (not root? no iproute2?): TaskManagers on loopback, no partitions");
    }
    let cfg = Config { seed, jobs, faults, words, netns, a };
    let a = &cfg.a;
    let dir = a.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("weir-chaos-{seed}-{}", std::process::id())));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let wasm = dir.join("wordcount.wasm");
    std::fs::copy(&a.wasm, &wasm).with_context(|| format!("copying {}", a.wasm.display()))?;
    let net = if netns { "TaskManagers in network namespaces" } else { "loopback" };
    println!("weir-chaos seed {seed}: {jobs} job(s) x {faults} fault(s), {words} words each, p={}, {net}; in {}", a.parallelism, dir.display());
    let result = run_jobs(&cfg, &dir, &wasm);
    // The copy of the binary is big and no evidence; the rest is, unless all passed.
    let _ = std::fs::remove_file(dir.join("weir"));
    if matches!(result, Ok(true)) && !a.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("logs, inputs and outputs kept in {}", dir.display());
    }
    result
}

/// Starts the cluster and runs the jobs; whether everything passed.
fn run_jobs(cfg: &Config, dir: &Path, wasm: &Path) -> Result<bool> {
    let (started, a) = (Instant::now(), &cfg.a);
    let mut cluster = Cluster::start(dir, &a.weir, cfg.netns, a.heartbeat_timeout_ms)?;
    let mut results: Vec<JobResult> = Vec::new();
    let mut next = a.only_job.unwrap_or(0);
    loop {
        let injected: usize = results.iter().map(|r| r.outcomes.len()).sum();
        let more = next < cfg.jobs || (injected < a.min_faults && next < 3 * cfg.jobs);
        if !results.is_empty() && (a.only_job.is_some() || !more) {
            break;
        }
        let r = run_job(&mut cluster, cfg, wasm, next)?;
        print_job(cfg, &r);
        results.push(r);
        next += 1;
    }
    drop(cluster);
    Ok(print_total(cfg, &results, started.elapsed()))
}

/// Runs job `j`: submit, faults, wait for its end, check. What goes wrong with the job
/// is its result; what goes wrong with the harness ends the run.
fn run_job(c: &mut Cluster, cfg: &Config, wasm: &Path, j: usize) -> Result<JobResult> {
    // Two streams: the schedule (input, kinds, victims, holds, gaps) draws the same
    // numbers whatever the timing; choices that depend on the cluster's state (which
    // checkpoint file to damage) draw from the other.
    let mut plan = Rng::new(mix(cfg.seed ^ mix(j as u64 + 1)));
    let mut other = Rng::new(mix(plan.next_u64()));
    let dir = c.dir.join(format!("job-{j}"));
    std::fs::create_dir_all(&dir)?;
    let (input, output) = (dir.join("input.txt"), dir.join("out"));
    let expected = checker::generate(&input, &mut plan, cfg.words)?;
    let (interval, restart) = (plan.range(200, 500), format!("fixed-delay:1000000:{}", plan.range(200, 1000)));
    c.wait_all_slots(Duration::from_secs(120))?;
    let log_from = c.jobmanager_log_len();
    let t0 = Instant::now();
    let id = c.submit(wasm, &input, &output, cfg.a.parallelism, interval, &restart)?;
    println!("job {j} ({id}): {} distinct words, checkpoints every {interval} ms, restart {restart}", expected.len());
    let mut r = JobResult { index: j, id: id.clone(), outcomes: vec![], report: None, error: None, fatal: None, elapsed: Duration::ZERO };
    let deadline = t0 + Duration::from_secs(cfg.a.job_timeout_secs);
    let mut faults = || -> Result<()> {
        wait_job(c, &id, deadline, "first checkpoint", |s| s.ended() || (s.engine == "RUNNING" && s.last_checkpoint.is_some()))?;
        for k in 0..cfg.faults {
            sys::sleep(plan.ms(200, 1200))?;
            let (kind, long) = cfg.forced(j, k);
            let f = Fault::draw(&mut plan, kind, cfg.netns, &c.placement(&id), cfg.a.heartbeat_timeout_ms, long);
            if c.job(&id)?.ended() {
                break;
            }
            r.fatal = Some(f.clone());
            let o = faults::inject(c, &id, &f, &mut other)?;
            r.fatal = None;
            println!("  fault {k}: {}", o.describe(cfg.a.heartbeat_timeout_ms));
            r.outcomes.push(o);
        }
        let end = wait_job(c, &id, deadline, "end", JobView::ended)?;
        if end.state != "FINISHED" {
            bail!("job ended {}: {}", end.state, end.failure.unwrap_or_default());
        }
        Ok(())
    };
    let result = faults();
    r.elapsed = t0.elapsed();
    if let Err(e) = result {
        sys::interrupted()?;
        r.error = Some(format!("{e:#}"));
        println!("job {j} ({id}) did not complete: {e:#}\n{}", c.log_tails(60));
        c.cancel(&id);
        return Ok(r);
    }
    let gaps = checker::Gap::announced(&c.jobmanager_log_since(log_from), &id);
    let report = checker::check(&output, &expected, &gaps)?;
    if report.violations() == 0 && !cfg.a.keep {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(c.checkpoint_dir().join(&id));
    }
    r.report = Some(report);
    Ok(r)
}

/// Polls the job until `done`; past `deadline` it is stuck.
fn wait_job(c: &Cluster, id: &str, deadline: Instant, what: &str, done: impl Fn(&JobView) -> bool) -> Result<JobView> {
    loop {
        sys::interrupted()?;
        if let Ok(s) = c.job(id)
            && done(&s)
        {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("job {id} stuck: no {what} before the deadline (last seen: {:?})", c.job(id).ok());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn print_job(cfg: &Config, r: &JobResult) {
    let verdict = if r.ok() { "OK" } else { "VIOLATION" };
    println!("job {} ({}): {verdict} after {:.1}s and {} fault(s)", r.index, r.id, r.elapsed.as_secs_f64(), r.outcomes.len());
    if let Some(report) = &r.report {
        print!("{report}");
    }
    if !r.ok() {
        println!("  reproduce: {}", cfg.repro(r.index));
    }
}

/// Prints the run's totals; whether everything passed.
fn print_total(cfg: &Config, results: &[JobResult], elapsed: Duration) -> bool {
    let outcomes: Vec<&Outcome> = results.iter().flat_map(|r| &r.outcomes).collect();
    let fatal: Vec<String> = results.iter().filter_map(|r| r.fatal.as_ref()).map(Fault::describe).collect();
    println!("\n=== weir-chaos seed {}: {} job(s) in {:.0}s", cfg.seed, results.len(), elapsed.as_secs_f64());
    let (injected, lost) = (outcomes.len() + fatal.len(), if fatal.is_empty() { "none".to_string() } else { fatal.join(", ") });
    println!("faults injected {injected}, survived {}; not survived: {lost}", outcomes.len());
    let mut by_kind: BTreeMap<Kind, Vec<&Outcome>> = BTreeMap::new();
    for o in &outcomes {
        by_kind.entry(o.fault.kind).or_default().push(o);
    }
    for (kind, os) in by_kind {
        let mut times: Vec<Duration> = os.iter().filter_map(|o| o.recovery).collect();
        times.sort();
        let at = |q: f64| times.get(((times.len() as f64 - 1.0) * q).round() as usize).map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()));
        let absorbed = os.iter().filter(|o| o.absorbed).count();
        println!("  {:<18} {:>4}, {absorbed} absorbed; recovery min {} median {} max {}", kind.name(), os.len(), at(0.0), at(0.5), at(1.0));
    }
    let zombies = outcomes.iter().filter(|o| o.fault.kind == Kind::TmPause && o.fault.hold.as_millis() as u64 > cfg.a.heartbeat_timeout_ms).count();
    let damaged: Vec<bool> = outcomes.iter().filter_map(|o| o.detected).collect();
    let detected = damaged.iter().filter(|d| **d).count();
    println!("  pauses past the heartbeat timeout {zombies}; damaged checkpoint files reported by the jobmanager {detected} of {}", damaged.len());
    let total = results.iter().filter_map(|r| r.report.as_ref()).fold(Report::default(), |t, r| t.add(r));
    print!("total: {total}");
    let failed: Vec<&JobResult> = results.iter().filter(|r| !r.ok()).collect();
    for r in &failed {
        println!("FAILED job {} ({}): {}; reproduce: {}", r.index, r.id, r.error.as_deref().unwrap_or("exactly-once violated"), cfg.repro(r.index));
    }
    println!("{}", if failed.is_empty() { "PASS" } else { "FAIL" });
    failed.is_empty()
}
