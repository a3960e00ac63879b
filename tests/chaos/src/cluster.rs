//! The cluster under test: a JobManager and TaskManagers as real processes (each
//! TaskManager in its own network namespace unless `--no-netns`), each logging into
//! its own file, and the JobManager's REST API.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::netns::{self, Namespaces};
use crate::sys;

pub const TASKMANAGERS: usize = 3;
const SLOTS: u64 = 2;

/// A job as the REST API shows it.
#[derive(Debug)]
pub struct JobView {
    /// The Job resource's state: STARTING, STARTED, FINISHED, FAILED, TERMINATED, ...
    pub state: String,
    /// The engine's status (RUNNING, RESTARTING, ...); empty before STARTED.
    pub engine: String,
    pub restarts: u64,
    pub last_checkpoint: Option<u64>,
    pub failure: Option<String>,
}

impl JobView {
    pub fn ended(&self) -> bool {
        matches!(self.state.as_str(), "FINISHED" | "FAILED" | "TERMINATED")
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub heartbeat_ms: u64,
    /// A copy of the `weir` binary: others rebuild target/release while we run, and a
    /// restarted process must be the same build as the rest.
    weir: PathBuf,
    creds: PathBuf,
    /// The JobManager's QUIC listen address and REST base URL: port 0 at first, then
    /// fixed, so that a restarted JobManager is found where the old one was.
    jm_listen: String,
    rest: String,
    token: String,
    agent: ureq::Agent,
    jobmanager: Option<Child>,
    taskmanagers: Vec<Option<Child>>,
    /// Declared last: dropped after Drop killed the processes inside.
    netns: Option<Namespaces>,
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Cluster {
    /// Makes credentials in `dir`, starts the JobManager and the TaskManagers, and
    /// waits until every slot is registered.
    pub fn start(dir: &Path, weir: &Path, use_netns: bool, heartbeat_ms: u64) -> Result<Self> {
        let copy = dir.join("weir");
        std::fs::copy(weir, &copy).with_context(|| format!("copying {}", weir.display()))?;
        let creds = dir.join("cluster");
        let o = Command::new(&copy).arg("cluster-init").arg(&creds).args(["--taskmanagers", &TASKMANAGERS.to_string()]).output()?;
        if !o.status.success() {
            bail!("weir cluster-init: {}", String::from_utf8_lossy(&o.stderr));
        }
        let token = std::fs::read_to_string(creds.join("api-token")).context("reading the api token")?.trim().to_string();
        let netns = if use_netns { Some(Namespaces::create(TASKMANAGERS).context("creating network namespaces")?) } else { None };
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            heartbeat_ms,
            weir: copy,
            creds,
            // In namespaces the TaskManagers dial the root side of their own link.
            jm_listen: if use_netns { "0.0.0.0:0" } else { "127.0.0.1:0" }.into(),
            rest: "127.0.0.1:0".into(),
            token,
            agent: ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(5))).build().into(),
            jobmanager: None,
            taskmanagers: (0..TASKMANAGERS).map(|_| None).collect(),
            netns,
        };
        c.start_jobmanager()?;
        for n in 1..=TASKMANAGERS {
            c.start_taskmanager(n)?;
        }
        c.wait_all_slots(Duration::from_secs(60))?;
        Ok(c)
    }

    pub fn checkpoint_dir(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }

    /// Starts process `name` logging at info level into `<name>.log` (appending, across
    /// restarts), in its own process group: Ctrl-C reaches only us, and we clean up.
    fn spawn(&self, mut cmd: Command, name: &str, stdout: Stdio) -> Result<Child> {
        let log = self.dir.join(format!("{name}.log"));
        let log = OpenOptions::new().create(true).append(true).open(&log).with_context(|| format!("opening {}", log.display()))?;
        cmd.args(["--identity", &self.creds.join(name).display().to_string()]);
        cmd.env("WEIR_LOG", "info").env("WEIR_CACHE_DIR", self.dir.join(format!("cache-{name}")));
        cmd.stdout(stdout).stderr(log).process_group(0).spawn().with_context(|| format!("starting {name}"))
    }

    /// Starts the JobManager; it prints its QUIC and REST addresses first.
    pub fn start_jobmanager(&mut self) -> Result<()> {
        let out = self.dir.join("jobmanager.out");
        let stdout = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
        let mut cmd = Command::new(&self.weir);
        let (rest, heartbeat, checkpoints) = (self.rest.trim_start_matches("http://"), self.heartbeat_ms.to_string(), self.checkpoint_dir());
        cmd.args(["jobmanager", "--listen", &self.jm_listen, "--rest-listen", rest, "--heartbeat-timeout-ms", &heartbeat]);
        cmd.args(["--checkpoint-dir", &checkpoints.display().to_string()]);
        // The jobs' inputs and outputs live in the run's directory.
        cmd.args(["--data-root", &self.dir.display().to_string()]);
        let mut child = self.spawn(cmd, "jobmanager", stdout.into())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let said: Vec<String> = loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if text.lines().count() >= 2 {
                break text.lines().map(|l| l.rsplit(' ').next().unwrap_or_default().to_string()).collect();
            }
            if child.try_wait()?.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                bail!("the jobmanager did not start:\n{}", tail(&self.dir.join("jobmanager.log"), 30));
            }
            sys::sleep(Duration::from_millis(20))?;
        };
        self.jobmanager = Some(child);
        let port = said[0].rsplit(':').next().unwrap_or_default();
        let listen = format!("{}:{port}", self.jm_listen.rsplit_once(':').map_or("", |(host, _)| host));
        if self.rest.ends_with(":0") {
            (self.jm_listen, self.rest) = (listen, said[1].clone());
        } else if listen != self.jm_listen || said[1] != self.rest {
            bail!("the restarted jobmanager is at {} and {}, not where the first one was", said[0], said[1]);
        }
        Ok(())
    }

    pub fn kill_jobmanager(&mut self) -> Result<()> {
        if let Some(mut c) = self.jobmanager.take() {
            c.kill().context("killing the jobmanager")?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts (or restarts, with the same identity and state directory) TaskManager `n`.
    pub fn start_taskmanager(&mut self, n: usize) -> Result<()> {
        let (name, port) = (format!("taskmanager-{n}"), self.jm_listen.rsplit(':').next().unwrap_or_default());
        let (jm, listen, mut cmd) = match self.netns {
            // `ip netns exec` execs the command: the child's pid is the TaskManager's.
            Some(_) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &netns::name(n)]).arg(&self.weir);
                (netns::gateway(n), netns::address(n), cmd)
            }
            None => ("127.0.0.1".into(), "127.0.0.1".into(), Command::new(&self.weir)),
        };
        let state = self.dir.join(format!("state-{name}")).display().to_string();
        cmd.args(["taskmanager", "--jobmanager", &format!("{jm}:{port}"), "--listen", &format!("{listen}:0")]);
        cmd.args(["--slots", &SLOTS.to_string(), "--state-dir", &state]);
        self.taskmanagers[n - 1] = Some(self.spawn(cmd, &name, Stdio::null())?);
        Ok(())
    }

    pub fn kill_taskmanager(&mut self, n: usize) -> Result<()> {
        if let Some(mut c) = self.taskmanagers[n - 1].take() {
            c.kill().with_context(|| format!("killing taskmanager-{n}"))?;
            c.wait()?;
        }
        Ok(())
    }

    pub fn signal_taskmanager(&self, n: usize, sig: libc::c_int) -> Result<()> {
        sys::signal(self.taskmanagers[n - 1].as_ref().ok_or_else(|| anyhow!("taskmanager-{n} is not running"))?.id(), sig)
    }

    /// Cuts TaskManager `n` off the network (`up == false`) or reconnects it.
    pub fn set_link(&self, n: usize, up: bool) -> Result<()> {
        self.netns.as_ref().ok_or_else(|| anyhow!("partitions need network namespaces"))?.set_link(n, up)
    }

    /// GET on the REST API, as JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        let auth = format!("Bearer {}", self.token);
        let mut r =
            self.agent.get(format!("{}/api/v1{path}", self.rest)).header("Authorization", &auth).call().with_context(|| format!("GET {path}"))?;
        let body: Value = r.body_mut().read_json().with_context(|| format!("GET {path}: reading the answer"))?;
        if !r.status().is_success() {
            bail!("GET {path}: {}: {body}", r.status());
        }
        Ok(body)
    }

    pub fn job(&self, id: &str) -> Result<JobView> {
        let s = &self.get(&format!("/jobs/{id}"))?["status"];
        Ok(JobView {
            state: s["state"].as_str().unwrap_or_default().to_string(),
            engine: s["started"]["observedJobStatus"].as_str().unwrap_or_default().to_string(),
            restarts: s["started"]["observedJobRestarts"].as_u64().unwrap_or(0),
            last_checkpoint: s["lastCheckpoint"].as_u64(),
            failure: s["failure"]["message"].as_str().map(str::to_string),
        })
    }

    /// The TaskManagers (numbers) running subtasks of the job, ascending.
    pub fn placement(&self, id: &str) -> Vec<usize> {
        let Ok(m) = self.get(&format!("/jobs/{id}/metrics")) else { return vec![] };
        let subtasks = m["vertices"].as_array().into_iter().flatten().flat_map(|v| v["subtasks"].as_array().into_iter().flatten());
        let mut tms: Vec<usize> = subtasks.filter_map(|s| s["taskmanager"].as_str()?.strip_prefix("taskmanager-")?.parse().ok()).collect();
        tms.sort_unstable();
        tms.dedup();
        tms
    }

    /// Waits until every TaskManager is registered with all its slots free.
    pub fn wait_all_slots(&self, within: Duration) -> Result<()> {
        let (deadline, want) = (Instant::now() + within, TASKMANAGERS as u64 * SLOTS);
        loop {
            let free = self.get("/cluster").ok().and_then(|c| c["slotsFree"].as_u64());
            if free == Some(want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the cluster never had its {want} slots free (last: {free:?})\n{}", self.log_tails(40));
            }
            sys::sleep(Duration::from_millis(100))?;
        }
    }

    /// Submits a job, detached; its id.
    pub fn submit(&self, wasm: &Path, input: &Path, output: &Path, parallelism: u32, interval_ms: u64, restart: &str) -> Result<String> {
        let token = self.creds.join("api-token").display().to_string();
        let (p, interval) = (parallelism.to_string(), interval_ms.to_string());
        let o = Command::new(&self.weir)
            .args(["submit", "--jobmanager", &self.rest, "--token-file", &token, "-p", &p, "--checkpoint-interval", &interval, "--restart", restart])
            .args(["--detach", "--output-dir", &output.display().to_string(), "-i", &input.display().to_string(), &wasm.display().to_string()])
            .output()
            .context("running weir submit")?;
        let out = String::from_utf8_lossy(&o.stdout);
        match out.split_whitespace().nth(1) {
            Some(id) if o.status.success() => Ok(id.to_string()),
            _ => bail!("weir submit: {out}{}", String::from_utf8_lossy(&o.stderr)),
        }
    }

    /// Asks the JobManager to cancel a job (a stuck one, before the next job).
    pub fn cancel(&self, id: &str) {
        let auth = format!("Bearer {}", self.token);
        let _ = self.agent.post(format!("{}/api/v1/jobs/{id}/cancel", self.rest)).header("Authorization", &auth).send_empty();
    }

    /// The JobManager log's length: where a fault's look at it starts.
    pub fn jobmanager_log_len(&self) -> u64 {
        std::fs::metadata(self.dir.join("jobmanager.log")).map_or(0, |m| m.len())
    }

    /// The JobManager log from byte `from` on.
    pub fn jobmanager_log_since(&self, from: u64) -> String {
        let mut text = Vec::new();
        if let Ok(mut f) = File::open(self.dir.join("jobmanager.log")) {
            let _ = f.seek(SeekFrom::Start(from)).and_then(|_| f.read_to_end(&mut text));
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The last `n` lines of every process's log.
    pub fn log_tails(&self, n: usize) -> String {
        let names = std::iter::once("jobmanager".to_string()).chain((1..=TASKMANAGERS).map(|i| format!("taskmanager-{i}")));
        names.map(|name| format!("--- {name}.log, last {n} lines\n{}", tail(&self.dir.join(format!("{name}.log")), n))).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGKILL works on stopped processes too; the namespaces go after this.
        let _ = self.kill_jobmanager();
        for n in 1..=TASKMANAGERS {
            let _ = self.kill_taskmanager(n);
        }
    }
}
