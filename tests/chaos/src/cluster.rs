//! The cluster under test: a JobManager and TaskManagers as real processes (each
//! TaskManager in its own network namespace unless `--no-netns`), their logs, and the
//! JobManager's REST API.

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
pub const SLOTS: u32 = 2;

/// A job as the REST API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    /// The Job resource's state: STARTING, STARTED, FINISHED, FAILED, ...
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
    /// A copy of the `weir` binary: other people rebuild target/release while we run,
    /// and a restarted process must be the same build as the others.
    weir: PathBuf,
    creds: PathBuf,
    /// JobManager QUIC and REST listen addresses, fixed after the first start so that a
    /// restarted JobManager is found where the old one was.
    jm_listen: String,
    rest_listen: String,
    quic_port: u16,
    pub rest: String,
    token: String,
    agent: ureq::Agent,
    heartbeat_ms: u64,
    jobmanager: Option<Child>,
    taskmanagers: Vec<Option<Child>>,
    /// Declared last: dropped after Drop killed the processes inside.
    netns: Option<Namespaces>,
}

fn log_file(dir: &Path, name: &str) -> Result<File> {
    let path = dir.join(format!("{name}.log"));
    OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("opening {}", path.display()))
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Cluster {
    /// Creates credentials in `dir`, starts the JobManager and the TaskManagers, and
    /// waits until every slot is registered.
    pub fn start(dir: &Path, weir: &Path, use_netns: bool, heartbeat_ms: u64) -> Result<Self> {
        let copy = dir.join("weir");
        std::fs::copy(weir, &copy).with_context(|| format!("copying {} (cargo build --release builds it)", weir.display()))?;
        let creds = dir.join("cluster");
        let o = Command::new(&copy).arg("cluster-init").arg(&creds).args(["--taskmanagers", &TASKMANAGERS.to_string()]).output()?;
        if !o.status.success() {
            bail!("weir cluster-init: {}", String::from_utf8_lossy(&o.stderr));
        }
        let token = std::fs::read_to_string(creds.join("api-token")).context("reading the api token")?.trim().to_string();
        let netns = if use_netns { Some(Namespaces::create(TASKMANAGERS).context("creating network namespaces")?) } else { None };
        // In namespaces the TaskManagers dial the root side of their own link, so the
        // JobManager listens on every interface; on loopback, on loopback only.
        let jm_listen = if use_netns { "0.0.0.0:0" } else { "127.0.0.1:0" }.to_string();
        let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(5))).build().into();
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            weir: copy,
            creds,
            jm_listen,
            rest_listen: "127.0.0.1:0".into(),
            quic_port: 0,
            rest: String::new(),
            token,
            agent,
            heartbeat_ms,
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

    pub fn heartbeat_ms(&self) -> u64 {
        self.heartbeat_ms
    }

    pub fn uses_netns(&self) -> bool {
        self.netns.is_some()
    }

    pub fn checkpoint_dir(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }

    pub fn jobmanager_log(&self) -> PathBuf {
        self.dir.join("jobmanager.log")
    }

    /// Starts the JobManager; its first two stdout lines name its QUIC and REST addresses.
    pub fn start_jobmanager(&mut self) -> Result<()> {
        let out = self.dir.join("jobmanager.out");
        let stdout = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
        let mut child = Command::new(&self.weir)
            .args(["jobmanager", "--listen", &self.jm_listen, "--rest-listen", &self.rest_listen])
            .args(["--heartbeat-timeout-ms", &self.heartbeat_ms.to_string()])
            .arg("--checkpoint-dir")
            .arg(self.checkpoint_dir())
            .arg("--identity")
            .arg(self.creds.join("jobmanager"))
            .env("WEIR_LOG", "info")
            .env("WEIR_CACHE_DIR", self.dir.join("cache-jobmanager"))
            .stdout(stdout)
            .stderr(log_file(&self.dir, "jobmanager")?)
            // Own process group: Ctrl-C reaches only us, and we clean up in order.
            .process_group(0)
            .spawn()
            .context("starting the jobmanager")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let lines = loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(|l| l.trim().rsplit(' ').next().unwrap_or_default().to_string()).collect();
            if lines.len() >= 2 {
                break lines;
            }
            if let Some(status) = child.try_wait()? {
                bail!("the jobmanager exited ({status}):\n{}", tail(&self.jobmanager_log(), 30));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the jobmanager did not print its addresses:\n{}", tail(&self.jobmanager_log(), 30));
            }
            sys::sleep(Duration::from_millis(20))?;
        };
        self.jobmanager = Some(child);
        let port = lines[0].rsplit(':').next().and_then(|p| p.parse().ok()).ok_or_else(|| anyhow!("no port in {:?}", lines[0]))?;
        if self.quic_port == 0 {
            self.quic_port = port;
            self.jm_listen = format!("{}:{port}", self.jm_listen.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h));
            self.rest = lines[1].clone();
            self.rest_listen = self.rest.trim_start_matches("http://").to_string();
        } else if port != self.quic_port || lines[1] != self.rest {
            bail!("the restarted jobmanager is at {} / {}, not where the first one was", lines[0], lines[1]);
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
        let name = format!("taskmanager-{n}");
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the command: the child's pid is the TaskManager's.
            Some(_) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &netns::name(n)]).arg(&self.weir);
                c.args(["taskmanager", "--jobmanager", &format!("{}:{}", netns::gateway(n), self.quic_port)]);
                c.args(["--listen", &format!("{}:0", netns::address(n))]);
                c
            }
            None => {
                let mut c = Command::new(&self.weir);
                c.args(["taskmanager", "--jobmanager", &format!("127.0.0.1:{}", self.quic_port), "--listen", "127.0.0.1:0"]);
                c
            }
        };
        let child = cmd
            .args(["--slots", &SLOTS.to_string()])
            .arg("--state-dir")
            .arg(self.dir.join(format!("state-{name}")))
            .arg("--identity")
            .arg(self.creds.join(&name))
            .env("WEIR_LOG", "info")
            .env("WEIR_CACHE_DIR", self.dir.join(format!("cache-{name}")))
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir, &name)?)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.taskmanagers[n - 1] = Some(child);
        Ok(())
    }

    fn taskmanager_pid(&self, n: usize) -> Result<u32> {
        self.taskmanagers.get(n - 1).and_then(Option::as_ref).map(Child::id).ok_or_else(|| anyhow!("taskmanager-{n} is not running"))
    }

    pub fn kill_taskmanager(&mut self, n: usize) -> Result<()> {
        if let Some(mut c) = self.taskmanagers.get_mut(n - 1).and_then(Option::take) {
            c.kill().with_context(|| format!("killing taskmanager-{n}"))?;
            c.wait()?;
        }
        Ok(())
    }

    pub fn signal_taskmanager(&self, n: usize, sig: libc::c_int) -> Result<()> {
        sys::signal(self.taskmanager_pid(n)?, sig)
    }

    /// Cuts TaskManager `n` off the network (`false`) or reconnects it.
    pub fn set_link(&self, n: usize, up: bool) -> Result<()> {
        self.netns.as_ref().ok_or_else(|| anyhow!("partitions need network namespaces"))?.set_link(n, up)
    }

    /// GET on the REST API, as JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        let mut r = self
            .agent
            .get(format!("{}/api/v1{path}", self.rest))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .with_context(|| format!("GET {path}"))?;
        let status = r.status();
        let body: Value = r.body_mut().read_json().with_context(|| format!("GET {path}: reading the answer"))?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {body}");
        }
        Ok(body)
    }

    pub fn job(&self, id: &str) -> Result<JobView> {
        let j = self.get(&format!("/jobs/{id}"))?;
        let s = &j["status"];
        Ok(JobView {
            state: s["state"].as_str().unwrap_or_default().to_string(),
            engine: s["started"]["observedJobStatus"].as_str().unwrap_or_default().to_string(),
            restarts: s["started"]["observedJobRestarts"].as_u64().unwrap_or(0),
            last_checkpoint: s["lastCheckpoint"].as_u64(),
            failure: s["failure"]["message"].as_str().map(str::to_string),
        })
    }

    /// TaskManagers (1-based numbers) that run subtasks of the job, ascending.
    pub fn placement(&self, id: &str) -> Vec<usize> {
        let Ok(m) = self.get(&format!("/jobs/{id}/metrics")) else { return vec![] };
        let mut tms: Vec<usize> = m["vertices"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|v| v["subtasks"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s["taskmanager"].as_str().and_then(|t| t.strip_prefix("taskmanager-")).and_then(|n| n.parse().ok()))
            .collect();
        tms.sort_unstable();
        tms.dedup();
        tms
    }

    /// Waits until every TaskManager is registered with all its slots free.
    pub fn wait_all_slots(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let want = TASKMANAGERS as u64 * u64::from(SLOTS);
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

    /// Submits a job detached; its id.
    pub fn submit(&self, wasm: &Path, input: &Path, output: &Path, parallelism: u32, interval_ms: u64, restart: &str) -> Result<String> {
        let o = Command::new(&self.weir)
            .args(["submit", "--jobmanager", &self.rest, "--token-file"])
            .arg(self.creds.join("api-token"))
            .args(["-p", &parallelism.to_string(), "--checkpoint-interval", &interval_ms.to_string(), "--restart", restart, "--detach"])
            .arg("--output-dir")
            .arg(output)
            .arg("-i")
            .arg(input)
            .arg(wasm)
            .output()
            .context("running weir submit")?;
        if !o.status.success() {
            bail!("weir submit: {}", String::from_utf8_lossy(&o.stderr));
        }
        let out = String::from_utf8_lossy(&o.stdout);
        out.split_whitespace().nth(1).map(str::to_string).ok_or_else(|| anyhow!("weir submit printed no job id: {out}"))
    }

    /// Asks the JobManager to cancel a job (a stuck one, before the next job).
    pub fn cancel(&self, id: &str) {
        let _ =
            self.agent.post(format!("{}/api/v1/jobs/{id}/cancel", self.rest)).header("Authorization", &format!("Bearer {}", self.token)).send_empty();
    }

    /// The JobManager log's length: what a fault's check reads from.
    pub fn jobmanager_log_len(&self) -> u64 {
        std::fs::metadata(self.jobmanager_log()).map(|m| m.len()).unwrap_or(0)
    }

    /// The JobManager log from byte `from` on.
    pub fn jobmanager_log_since(&self, from: u64) -> String {
        let mut text = Vec::new();
        if let Ok(mut f) = File::open(self.jobmanager_log()) {
            let _ = f.seek(SeekFrom::Start(from)).and_then(|_| f.read_to_end(&mut text));
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The last `n` lines of every process's log.
    pub fn log_tails(&self, n: usize) -> String {
        let names = std::iter::once("jobmanager".to_string()).chain((1..=TASKMANAGERS).map(|i| format!("taskmanager-{i}")));
        names
            .map(|name| format!("--- {name}.log (last {n} lines)\n{}", tail(&self.dir.join(format!("{name}.log")), n)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGKILL works on stopped processes too; links are brought back up by
        // deleting the namespaces (netns is dropped after this).
        let _ = self.kill_jobmanager();
        for n in 1..=TASKMANAGERS {
            let _ = self.kill_taskmanager(n);
        }
    }
}
