//! The cluster section: keyed-sum at parallelism 2 on the embedded cluster (`weir run`)
//! and on a real cluster of one JobManager and two TaskManager processes with one slot
//! each on loopback (`weir submit`). With one subtask of every vertex on each
//! TaskManager, about half of the key-by traffic crosses processes over QUIC.
//!
//! The target: the cross-process key-by costs no more than 25% of embedded
//! throughput, i.e. cluster records/s >= 0.75 x embedded records/s.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use weir_testkit::stderr;

use crate::{RUNS, WEIR, run_wasm};

/// Cluster throughput must be at least this share of embedded throughput.
const TARGET: f64 = 0.75;
const PARALLELISM: &str = "2";
pub(crate) const TASKMANAGERS: [&str; 2] = ["taskmanager-1", "taskmanager-2"];
/// Generous bound on any single step (registration, one submission), so a hang fails
/// the benchmark with the processes' logs instead of blocking forever.
const DEADLINE: Duration = Duration::from_secs(600);
/// How much of each log to show on failure.
const LOG_TAIL: usize = 6000;

/// A JobManager and two TaskManagers as processes on loopback, each writing its stderr
/// to its own file. Dropping it kills and reaps them (also when the benchmark panics,
/// in which case their logs are printed first).
pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    creds: PathBuf,
    jm: String,
    /// The JobManager's REST API.
    rest: String,
    /// `(name, process)`: the JobManager first, then the TaskManagers.
    pub(crate) procs: Vec<(String, Child)>,
    /// Kept open: the JobManager must never write into a closed pipe.
    _jm_stdout: Option<BufReader<ChildStdout>>,
    /// A failure message already carries the logs; the drop need not repeat them.
    logs_shown: Cell<bool>,
}

impl Cluster {
    fn start() -> Self {
        Self::start_with(&[], None)
    }

    /// Starts the cluster with extra JobManager arguments, in which `{dir}` stands for
    /// the cluster's temporary directory, and the JobManager's log filter (`WEIR_LOG`).
    pub(crate) fn start_with(jobmanager_args: &[&str], jobmanager_log: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds = dir.path().join("creds");
        let o =
            WEIR.command().arg("cluster-init").arg(&creds).args(["--taskmanagers", &TASKMANAGERS.len().to_string()]).output().expect("weir starts");
        assert!(o.status.success(), "cluster-init failed: {}", stderr(&o));
        let mut cluster =
            Self { dir, creds, jm: String::new(), rest: String::new(), procs: Vec::new(), _jm_stdout: None, logs_shown: Cell::new(false) };

        let mut jm = WEIR.command();
        if let Some(filter) = jobmanager_log {
            jm.env("WEIR_LOG", filter);
        }
        let mut jm = jm
            .args(["jobmanager", "--listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0"])
            .arg("--identity")
            .arg(cluster.creds.join("jobmanager"))
            .args(jobmanager_args.iter().map(|a| a.replace("{dir}", &cluster.dir.path().display().to_string())))
            // Jobs read and write under the cluster's directory.
            .arg("--data-root")
            .arg(cluster.dir.path())
            .stdout(Stdio::piped())
            .stderr(cluster.log_file("jobmanager"))
            .spawn()
            .expect("jobmanager starts");
        let mut out = BufReader::new(jm.stdout.take().expect("stdout"));
        cluster.procs.push(("jobmanager".into(), jm));
        let (mut line, mut api) = (String::new(), String::new());
        out.read_line(&mut line).expect("read the jobmanager's stdout");
        out.read_line(&mut api).expect("read the jobmanager's stdout");
        cluster._jm_stdout = Some(out);
        match (line.trim().strip_prefix("jobmanager listening on "), api.trim().strip_prefix("rest api on ")) {
            (Some(addr), Some(rest)) => (cluster.jm, cluster.rest) = (addr.to_string(), rest.to_string()),
            _ => cluster.fail(&format!("no listening lines from the jobmanager, got {line:?} {api:?}")),
        }

        for name in TASKMANAGERS {
            cluster.start_taskmanager(name);
        }
        let slots = format!("free slots: {}", TASKMANAGERS.len());
        cluster.wait_until("the taskmanagers to register", |c| c.status().contains(&slots));
        cluster
    }

    /// Starts TaskManager `name` with one slot, or starts it again (same identity and
    /// state directory) after [`Self::kill`].
    pub(crate) fn start_taskmanager(&mut self, name: &str) {
        let tm = WEIR
            .command()
            .args(["taskmanager", "--jobmanager", &self.jm, "--slots", "1"])
            .arg("--state-dir")
            .arg(self.dir.path().join(format!("state-{name}")))
            .arg("--identity")
            .arg(self.creds.join(name))
            .stdout(self.log_file(&format!("{name}.stdout")))
            .stderr(self.log_file(name))
            .spawn()
            .expect("taskmanager starts");
        match self.procs.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = tm,
            None => self.procs.push((name.into(), tm)),
        }
    }

    /// SIGKILLs process `name` and reaps it.
    pub(crate) fn kill(&mut self, name: &str) {
        let Some((_, c)) = self.procs.iter_mut().find(|(n, _)| n == name) else { self.fail(&format!("no process {name}")) };
        c.kill().expect("kill");
        c.wait().expect("reap");
    }

    /// Appends, so that a restarted process's log follows its predecessor's.
    fn log_file(&self, name: &str) -> File {
        File::options().create(true).append(true).open(self.dir.path().join(format!("{name}.log"))).expect("log file")
    }

    pub(crate) fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The end of every process's stderr, for failure messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        for (name, _) in &self.procs {
            let log = self.log(name);
            let tail = &log[log.floor_char_boundary(log.len().saturating_sub(LOG_TAIL))..];
            s.push_str(&format!("--- {name} stderr ({} bytes) ---\n{tail}\n", log.len()));
        }
        s
    }

    pub(crate) fn fail(&self, what: &str) -> ! {
        self.logs_shown.set(true);
        panic!("cluster benchmark: {what}\n{}", self.logs())
    }

    /// Fails if a cluster process has exited.
    pub(crate) fn check_alive(&mut self) {
        let mut dead = Vec::new();
        for (name, c) in &mut self.procs {
            if let Ok(Some(status)) = c.try_wait() {
                dead.push(format!("{name} exited ({status})"));
            }
        }
        if !dead.is_empty() {
            self.fail(&dead.join(", "));
        }
    }

    pub(crate) fn client(&self, cmd: &str) -> Command {
        let mut c = WEIR.command();
        c.args([cmd, "--jobmanager", &self.rest]).arg("--token-file").arg(self.creds.join("api-token"));
        c
    }

    pub(crate) fn status(&self) -> String {
        let o = self.client("status").output().expect("weir starts");
        if !o.status.success() {
            self.fail(&format!("weir status failed: {}", stderr(&o)));
        }
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Polls `f` (never a fixed sleep), failing with the logs past the deadline or if a
    /// process dies.
    pub(crate) fn wait_until(&mut self, what: &str, mut f: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !f(self) {
            self.check_alive();
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Submits the job at parallelism 2 and waits for its end; returns the seconds the
    /// job reports and its placement. Checks that every vertex has a subtask on each TaskManager and that
    /// the keyed vertex saw all `records`.
    fn submit(&mut self, job: &Path, args: &[&str], records: u64, run: &str) -> (f64, String) {
        let (out, err) = (self.dir.path().join(format!("submit-{run}.out")), self.dir.path().join(format!("submit-{run}.err")));
        let mut child = Reaped(
            self.client("submit")
                .arg(job)
                .args(["-p", PARALLELISM])
                .args(args)
                .stdout(File::create(&out).expect("submit stdout"))
                .stderr(File::create(&err).expect("submit stderr"))
                .spawn()
                .expect("weir submit starts"),
        );
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = child.0.try_wait().expect("wait for weir submit") {
                break s;
            }
            if Instant::now() > deadline {
                self.fail(&format!("submission {run} did not end: {}", std::fs::read_to_string(&err).unwrap_or_default()));
            }
            self.check_alive();
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        if !status.success() {
            self.fail(&format!("submission {run} failed ({status}):\n{text}"));
        }
        // The execution graph: `  <vertex> x2: taskmanager-a, taskmanager-b`.
        let placed: Vec<&str> = text.lines().filter(|l| l.contains(&format!(" x{PARALLELISM}: "))).collect();
        if placed.is_empty() || !placed.iter().all(|l| TASKMANAGERS.iter().all(|tm| l.contains(tm))) {
            self.fail(&format!("submission {run}: subtasks not spread over both taskmanagers:\n{text}"));
        }
        let Some((secs, max_in)) = parse_report(&text) else { self.fail(&format!("submission {run}: no job report in:\n{text}")) };
        if max_in != records {
            self.fail(&format!("submission {run}: expected {records} records into the keyed vertex:\n{text}"));
        }
        (secs, placed.iter().map(|l| l.trim()).collect::<Vec<_>>().join("; "))
    }

    /// VmHWM of each process, in MiB, by name.
    fn peak_rss(&self) -> Vec<(String, f64)> {
        self.procs.iter().map(|(name, c)| (name.clone(), vm_hwm_mib(c.id()))).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.logs_shown.get() {
            eprintln!("{}", self.logs());
        }
        for (_, c) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A child process killed and reaped when dropped (a no-op once it has been waited for).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Seconds from `job NAME (ID) finished in X.XXXs` and the largest `in` count of the
/// vertex lines below it.
fn parse_report(text: &str) -> Option<(f64, u64)> {
    let mut lines = text.lines().skip_while(|l| !l.contains(") finished in "));
    let (secs, _) = crate::parse_finished(lines.next()?)?;
    let max_in = lines
        .filter_map(|l| {
            let mut words = l.split_whitespace().skip_while(|w| *w != "in");
            words.next()?;
            words.next()?.parse::<u64>().ok()
        })
        .max()?;
    Some((secs, max_in))
}

/// Peak resident set (VmHWM) of a running process, in MiB.
fn vm_hwm_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn rates(v: &[f64]) -> String {
    v.iter().map(|r| format!("{:.2}M", r / 1e6)).collect::<Vec<_>>().join(" ")
}

/// Runs the section and prints its table.
pub fn bench(job: &Path, n: u64) {
    let mut cluster = Cluster::start();
    // Ships the component to both TaskManagers (their compiled-component cache is the
    // one the warm-up run filled) and opens the data-plane connections.
    let (_, placement) = cluster.submit(job, &["--arg", "n=1000", "--arg", "sink=discard"], 1000, "warmup");

    let n_arg = format!("n={n}");
    let args = ["--arg", n_arg.as_str(), "--arg", "sink=discard"];
    let embedded_args = ["-p", PARALLELISM, "--arg", n_arg.as_str(), "--arg", "sink=discard"];
    // Interleaved, so a noisy neighbour does not favour one side.
    let (mut embedded, mut remote, mut embedded_rss) = (Vec::new(), Vec::new(), 0.0f64);
    for run in 0..RUNS {
        let m = run_wasm(job, &embedded_args, n);
        embedded.push(m.records_per_s);
        embedded_rss = embedded_rss.max(m.peak_rss_mib);
        remote.push(n as f64 / cluster.submit(job, &args, n, &run.to_string()).0);
    }
    cluster.check_alive();
    let status = cluster.status();
    let rss = cluster.peak_rss();
    let logs: Vec<(String, String)> = cluster.procs.iter().map(|(name, _)| (name.clone(), cluster.log(name))).collect();
    drop(cluster);

    let (e, c) = (median(&embedded), median(&remote));
    let ratio = c / e;
    println!();
    println!("N = {n} records, keyed-sum, parallelism {PARALLELISM}, median of {RUNS} runs (interleaved)");
    println!("{:<44} {:>14} {:>12}  runs", "setup", "rec/s", "RSS MiB");
    println!("{:<44} {e:>14.0} {embedded_rss:>12.1}  {}", "embedded (weir run, 2 slots)", rates(&embedded));
    let rss_text: Vec<String> = rss.iter().map(|(name, mib)| format!("{name} {mib:.1}")).collect();
    let total: f64 = rss.iter().map(|(_, mib)| mib).sum();
    println!("{:<44} {c:>14.0} {total:>12.1}  {}", "cluster (JM + 2 TM x 1 slot, weir submit)", rates(&remote));
    println!("cluster peak RSS (VmHWM, read before stopping; summed above) MiB: {}", rss_text.join(", "));
    println!("cluster placement: {placement}");
    let pairs: Vec<String> = remote.iter().zip(&embedded).map(|(c, e)| format!("{:.2}", c / e)).collect();
    println!("ratio cluster/embedded: {ratio:.2} (of medians; run by run: {})", pairs.join(" "));
    let verdict = if ratio >= TARGET { "holds" } else { "does NOT hold" };
    println!("target (cross-process key-by costs <= 25% of embedded throughput, ratio >= {TARGET}): {verdict}");
    if !status.contains(&format!("free slots: {}", TASKMANAGERS.len())) || status.matches(" FINISHED ").count() != RUNS + 1 {
        println!("odd cluster status at the end:\n{status}");
    }
    for (name, log) in logs.iter().filter(|(_, l)| !l.trim().is_empty()) {
        println!("--- {name} stderr ---\n{}", log.trim_end());
    }
}
