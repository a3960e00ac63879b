//! Real clusters: a JobManager and TaskManagers as `weir` processes on loopback, with
//! their credentials, logs, caches and state in a temporary directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::weir::{Weir, stderr};

/// Kills its processes when dropped, so a failing test leaves nothing running.
pub struct Processes(pub Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `--identity DIR/NAME`: the credentials `weir cluster-init` wrote for `name`.
pub fn identity(dir: &Path, name: &str) -> Vec<String> {
    vec!["--identity".into(), dir.join(name).display().to_string()]
}

/// Arguments that point a client command at a JobManager's REST API.
pub fn remote(creds: &Path, rest: &str) -> Vec<String> {
    vec!["--jobmanager".into(), rest.into(), "--token-file".into(), creds.join("api-token").display().to_string()]
}

/// `weir status` against the JobManager at `rest`.
pub fn status(weir: Weir, creds: &Path, rest: &str) -> String {
    let mut args = vec!["status".to_string()];
    args.extend(remote(creds, rest));
    let o = weir.run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Generous: CI machines run several clusters at once on two cores.
const WAIT: Duration = Duration::from_secs(120);

/// Polls `f` until it holds, failing after a generous deadline (never a fixed sleep).
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A JobManager and TaskManagers as real processes on loopback, each logging at info
/// level into its own file, each TaskManager with its own (initially empty)
/// compiled-component cache (unless started warm) and state directory.
pub struct TestCluster {
    /// The build under test.
    pub weir: Weir,
    /// Holds credentials, logs, caches and state; removed at the end.
    pub dir: tempfile::TempDir,
    /// The credentials from `weir cluster-init`.
    pub creds: PathBuf,
    /// The JobManager's QUIC address (TaskManagers dial it).
    pub jm: String,
    /// The JobManager's REST API, e.g. `http://127.0.0.1:PORT` (`https://` off loopback).
    pub rest: String,
    /// The API's bearer token.
    pub token: String,
    /// JobManager first, then the TaskManagers in order.
    pub procs: Processes,
    /// Names of `procs`, in order.
    names: Vec<String>,
    /// Extra JobManager arguments, for restarts.
    jobmanager_args: Vec<String>,
    /// The compiled-component cache every TaskManager shares, if not one each.
    shared_cache: Option<PathBuf>,
    /// The JobManager's open-file limit, if set (kept across restarts).
    jobmanager_nofile: Option<u64>,
    /// The `WEIR_LOG` filter of TaskManagers started from now on (`info` unless set).
    pub taskmanager_log: String,
}

impl TestCluster {
    /// Starts a JobManager and one TaskManager per `(name, slots)`, and waits until all
    /// slots are registered.
    pub fn start(weir: Weir, taskmanagers: &[(&str, u32)]) -> Self {
        Self::start_with(weir, taskmanagers, &[])
    }

    /// As [`Self::start`], with extra JobManager arguments; `{dir}` in them stands for
    /// the cluster's directory.
    pub fn start_with(weir: Weir, taskmanagers: &[(&str, u32)], jobmanager_args: &[&str]) -> Self {
        Self::launch(weir, taskmanagers, jobmanager_args, "127.0.0.1:0", None, None)
    }

    /// As [`Self::start_with`], with the REST API on `rest_listen` (off loopback it
    /// serves HTTPS: `rest` is then an `https://` URL, and the client commands trust
    /// the cluster CA beside the token file).
    pub fn start_with_rest(weir: Weir, taskmanagers: &[(&str, u32)], jobmanager_args: &[&str], rest_listen: &str) -> Self {
        Self::launch(weir, taskmanagers, jobmanager_args, rest_listen, None, None)
    }

    /// As [`Self::start_with`], with the JobManager's open-file limit (soft and hard)
    /// set to `nofile`, as a tightly configured host would.
    pub fn start_with_nofile(weir: Weir, taskmanagers: &[(&str, u32)], jobmanager_args: &[&str], nofile: u64) -> Self {
        Self::launch(weir, taskmanagers, jobmanager_args, "127.0.0.1:0", None, Some(nofile))
    }

    /// Like [`Self::start_with`], but the TaskManagers share the tests' warm
    /// compiled-component cache: for tests about running jobs, not about shipping and
    /// compiling them (a cold Python component takes a minute to compile on a loaded CI
    /// machine).
    pub fn start_warm(weir: Weir, taskmanagers: &[(&str, u32)], jobmanager_args: &[&str]) -> Self {
        Self::launch(weir, taskmanagers, jobmanager_args, "127.0.0.1:0", Some(weir.target_dir().join("weir-test-cache")), None)
    }

    fn launch(
        weir: Weir,
        taskmanagers: &[(&str, u32)],
        jobmanager_args: &[&str],
        rest_listen: &str,
        shared_cache: Option<PathBuf>,
        nofile: Option<u64>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds = dir.path().join("cluster");
        let o = weir.run(["cluster-init".as_ref(), creds.as_os_str(), "--taskmanagers".as_ref(), "3".as_ref()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut jobmanager_args: Vec<String> = jobmanager_args.iter().map(|a| a.replace("{dir}", &dir.path().display().to_string())).collect();
        // Jobs read and write under the cluster's temporary directory unless the test
        // grants its own roots (the credentials and checkpoints in it stay refused).
        if !jobmanager_args.iter().any(|a| a == "--data-root") {
            jobmanager_args.extend(["--data-root".to_string(), dir.path().display().to_string()]);
        }
        let (jm, addr, rest) = spawn_jobmanager_limited(weir, dir.path(), &creds, "127.0.0.1:0", rest_listen, &jobmanager_args, nofile);
        let token = std::fs::read_to_string(creds.join("api-token")).expect("api token").trim().to_string();
        let mut cluster = Self {
            weir,
            dir,
            creds,
            jm: addr,
            rest,
            token,
            procs: Processes(vec![jm]),
            names: vec!["jobmanager".into()],
            jobmanager_args,
            shared_cache,
            jobmanager_nofile: nofile,
            taskmanager_log: "info".into(),
        };
        for (name, slots) in taskmanagers {
            cluster.start_taskmanager(name, *slots);
        }
        let total: u32 = taskmanagers.iter().map(|(_, s)| s).sum();
        wait_until("the taskmanagers to register", || cluster.status().contains(&format!("free slots: {total}")));
        cluster
    }

    /// Starts (or restarts, with the same state directory and cache) TaskManager `name`.
    pub fn start_taskmanager(&mut self, name: &str, slots: u32) {
        self.start_taskmanager_with(name, slots, &[]);
    }

    /// [`Self::start_taskmanager`] with extra arguments.
    pub fn start_taskmanager_with(&mut self, name: &str, slots: u32, extra: &[&str]) {
        let tm = self
            .weir
            .command()
            .args(["taskmanager", "--jobmanager", &self.jm, "--slots", &slots.to_string()])
            .args(extra)
            .arg("--state-dir")
            .arg(self.dir.path().join(format!("state-{name}")))
            .args(identity(&self.creds, name))
            .env("WEIR_LOG", &self.taskmanager_log)
            .env("WEIR_CACHE_DIR", self.shared_cache.clone().unwrap_or_else(|| self.dir.path().join(format!("cache-{name}"))))
            .stdout(Stdio::null())
            .stderr(log_file(self.dir.path(), name))
            .spawn()
            .expect("taskmanager starts");
        match self.names.iter().position(|n| n == name) {
            Some(i) => self.procs.0[i] = tm,
            None => {
                self.procs.0.push(tm);
                self.names.push(name.to_string());
            }
        }
    }

    /// SIGKILLs the JobManager and starts a new one on the same address.
    pub fn restart_jobmanager(&mut self) {
        self.kill("jobmanager");
        let rest = self.rest.split_once("://").map_or(self.rest.as_str(), |(_, a)| a).to_string();
        let (jm, addr, rest) =
            spawn_jobmanager_limited(self.weir, self.dir.path(), &self.creds, &self.jm, &rest, &self.jobmanager_args, self.jobmanager_nofile);
        assert_eq!(addr, self.jm, "the new jobmanager listens where the old one did");
        assert_eq!(rest, self.rest, "the new jobmanager serves its api where the old one did");
        self.procs.0[0] = jm;
    }

    /// SIGKILLs process `name` and reaps it.
    pub fn kill(&mut self, name: &str) {
        let i = self.names.iter().position(|n| n == name).expect("known process");
        self.procs.0[i].kill().expect("kill");
        self.procs.0[i].wait().expect("reap");
    }

    /// `weir status`: TaskManagers, free slots, jobs with their vertices.
    pub fn status(&self) -> String {
        status(self.weir, &self.creds, &self.rest)
    }

    /// Runs a client command (`submit`, `cancel`, ...) against the JobManager's API.
    pub fn client(&self, args: &[&std::ffi::OsStr]) -> std::process::Output {
        let mut c = self.weir.command();
        c.args(args).args(remote(&self.creds, &self.rest));
        c.output().expect("weir starts")
    }

    /// What process `name` (`jobmanager`, `taskmanager-1`, ...) logged so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// [`wait_until`], failing with every process's log (a stuck cluster explains itself).
    pub fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !f() {
            if Instant::now() >= deadline {
                let logs: Vec<String> = self.names.iter().map(|n| format!("--- {n}.log\n{}", self.log(n))).collect();
                panic!("timed out waiting for {what}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (`libc::SIGSTOP`, `libc::SIGCONT`, ...) to process `name`.
    #[allow(unsafe_code)]
    pub fn signal(&self, name: &str, signal: i32) {
        let i = self.names.iter().position(|n| n == name).expect("known process");
        let pid = i32::try_from(self.procs.0[i].id()).expect("pid");
        // SAFETY: signals our own child, which has not been reaped yet.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill({pid}, {signal})");
    }

    /// Process ids: JobManager first.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.0.iter().map(Child::id).collect()
    }
}

/// Starts a JobManager on `listen` (QUIC) and `rest` (HTTP); the process, its QUIC
/// address and its REST base URL.
pub fn spawn_jobmanager(weir: Weir, dir: &Path, creds: &Path, listen: &str, rest: &str, extra: &[String]) -> (Child, String, String) {
    spawn_jobmanager_limited(weir, dir, creds, listen, rest, extra, None)
}

/// [`spawn_jobmanager`] with an open-file limit (`prlimit`, which execs the JobManager:
/// the child's pid is the JobManager's).
pub fn spawn_jobmanager_limited(
    weir: Weir,
    dir: &Path,
    creds: &Path,
    listen: &str,
    rest: &str,
    extra: &[String],
    nofile: Option<u64>,
) -> (Child, String, String) {
    let mut command = weir.command();
    if let Some(n) = nofile {
        let env: Vec<_> = command.get_envs().map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned))).collect();
        command = std::process::Command::new("prlimit");
        command.arg(format!("--nofile={n}:{n}")).arg(weir.bin());
        for (k, v) in env {
            if let Some(v) = v {
                command.env(k, v);
            }
        }
    }
    let mut jm = command
        .args(["jobmanager", "--listen", listen, "--rest-listen", rest, "--heartbeat-timeout-ms", "1500"])
        .args(extra)
        .args(identity(creds, "jobmanager"))
        .env("WEIR_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log_file(dir, "jobmanager"))
        .spawn()
        .expect("jobmanager starts");
    let mut out = BufReader::new(jm.stdout.take().expect("stdout"));
    let (mut line, mut api) = (String::new(), String::new());
    out.read_line(&mut line).expect("listening line");
    out.read_line(&mut api).expect("rest api line");
    let addr = line.trim().rsplit(' ').next().expect("address").to_string();
    let rest = api.trim().rsplit(' ').next().expect("rest address").to_string();
    (jm, addr, rest)
}

/// A process's log file; a restarted process appends to it.
pub fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{name}.log"))).expect("log file")
}

/// An IPv4 address of this machine that is not loopback: the source address of the
/// default route (a UDP "connect" sends nothing). Without one (no route), a dummy
/// interface `weir-test0` with 198.18.0.1 (a benchmarking range) is created, which
/// needs root.
pub fn non_loopback_ip() -> std::net::IpAddr {
    let routed = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect("10.255.255.255:1").and(s.local_addr())).map(|a| a.ip());
    if let Ok(ip) = routed
        && !ip.is_loopback()
        && !ip.is_unspecified()
    {
        return ip;
    }
    let ip = "198.18.0.1";
    for args in [
        &["link", "add", "weir-test0", "type", "dummy"][..],
        &["addr", "add", &format!("{ip}/32"), "dev", "weir-test0"],
        &["link", "set", "weir-test0", "up"],
    ] {
        // "File exists" from an earlier test is fine; a real failure shows at bind.
        let _ = std::process::Command::new("ip").args(args).output();
    }
    ip.parse().expect("an IPv4 address")
}
