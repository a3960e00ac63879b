//! Faults, one at a time: inject, hold, undo, and measure the recovery.
//!
//! Recovery is read from the REST API: the time from the fault's start until the job
//! is RUNNING again after the disruption (a new attempt, or a new JobManager) *and*
//! has completed a checkpoint since (its records flow and commit again). A fault that
//! disrupts nothing (a pause shorter than the heartbeat timeout) is "absorbed".

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::Cluster;
use crate::sys::{self, Rng};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// SIGKILL a TaskManager; start it again (same identity, state dir) after the hold.
    TmKill,
    /// SIGSTOP a TaskManager, SIGCONT after the hold: past the heartbeat timeout it is
    /// declared lost and wakes up as a zombie of a superseded attempt.
    TmPause,
    /// SIGKILL the JobManager; start it again on the same addresses after the hold.
    JmKill,
    /// Cut a TaskManager's link: JobManager and peers unreachable, files still there.
    Partition,
    /// SIGKILL a TaskManager and, while the job waits for its restart, damage a state
    /// file of a completed checkpoint that the restore reads.
    Corrupt,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::TmKill => "tm-kill",
            Kind::TmPause => "tm-pause",
            Kind::JmKill => "jm-kill",
            Kind::Partition => "partition",
            Kind::Corrupt => "corrupt-checkpoint",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: Kind,
    /// A TaskManager (1-based); unused for the JobManager.
    pub victim: usize,
    pub hold: Duration,
}

impl Fault {
    /// Draws a fault: always three draws, so the schedule does not depend on `hosts`
    /// (the TaskManagers running the job, among which the victim is drawn so the fault
    /// hits the job). `kind` forces the kind; `long` makes a pause a zombie's.
    pub fn draw(rng: &mut Rng, kind: Option<Kind>, partitions: bool, hosts: &[usize], heartbeat_ms: u64, long: bool) -> Fault {
        let kinds = [Kind::TmKill, Kind::TmPause, Kind::JmKill, Kind::Corrupt, Kind::Partition];
        let drawn = kinds[rng.range(0, if partitions { 4 } else { 3 }) as usize];
        let hosts = if hosts.is_empty() { &[1, 2, 3][..] } else { hosts };
        let victim = hosts[rng.range(0, hosts.len() as u64 - 1) as usize];
        let kind = kind.unwrap_or(drawn);
        let hold = match kind {
            Kind::TmKill | Kind::Corrupt => rng.ms(200, 2000),
            Kind::TmPause if long => rng.ms(2 * heartbeat_ms, 6000.max(2 * heartbeat_ms)),
            // Around a 1.5 s timeout: pauses the heartbeats ride out, and zombies.
            Kind::TmPause => rng.ms(1000, 6000),
            Kind::JmKill => rng.ms(200, 1500),
            Kind::Partition => rng.ms(2000, 8000),
        };
        Fault { kind, victim, hold }
    }

    pub fn describe(&self) -> String {
        let victim = if self.kind == Kind::JmKill { String::new() } else { format!(" taskmanager-{}", self.victim) };
        format!("{}{victim} for {:.1}s", self.kind.name(), self.hold.as_secs_f64())
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub fault: Fault,
    /// From the fault's start to the first checkpoint completed after the recovery.
    pub recovery: Option<Duration>,
    /// Nothing restarted: the cluster rode it out.
    pub absorbed: bool,
    /// For damaged checkpoints: what was damaged, and whether the JobManager said so.
    pub damaged: Option<String>,
    pub detected: Option<bool>,
}

impl Outcome {
    pub fn describe(&self, heartbeat_ms: u64) -> String {
        let f = &self.fault;
        let zombie = if f.kind == Kind::TmPause && f.hold.as_millis() as u64 > heartbeat_ms { " (past the heartbeat timeout)" } else { "" };
        let result = match self.recovery {
            _ if self.absorbed => "absorbed, no restart".to_string(),
            Some(d) => format!("recovered in {:.1}s", d.as_secs_f64()),
            None => "not recovered".to_string(),
        };
        let damaged = match (&self.damaged, self.detected) {
            (Some(what), Some(seen)) => format!("\n    damaged {what}; reported by the jobmanager: {}", if seen { "yes" } else { "NO" }),
            _ => String::new(),
        };
        format!("{}{zombie}: {result}{damaged}", f.describe())
    }
}

/// A job that has not recovered this long after a fault's hold is stuck.
const STUCK: Duration = Duration::from_secs(180);

/// Injects `f` into job `job`, undoes it after its hold, and waits for the recovery.
/// Fails if the job fails or gets stuck.
pub fn inject(c: &mut Cluster, job: &str, f: &Fault, rng: &mut Rng) -> Result<Outcome> {
    let before = c.job(job)?;
    let log_from = c.jobmanager_log_len();
    let t0 = Instant::now();
    let mut o = Outcome { fault: f.clone(), recovery: None, absorbed: false, damaged: None, detected: None };
    match f.kind {
        Kind::TmKill => c.kill_taskmanager(f.victim)?,
        Kind::TmPause => c.signal_taskmanager(f.victim, libc::SIGSTOP)?,
        Kind::JmKill => c.kill_jobmanager()?,
        Kind::Partition => c.set_link(f.victim, false)?,
        Kind::Corrupt => {
            c.kill_taskmanager(f.victim)?;
            o.damaged = Some(damage_while_restarting(c, job, rng)?);
        }
    }
    let mut undone: Option<Instant> = None;
    // A JobManager restart is a disruption by itself; else a restart or a status
    // other than RUNNING is.
    let mut disrupted = f.kind == Kind::JmKill;
    // The checkpoint when the job was first seen RUNNING again.
    let mut running: Option<Option<u64>> = None;
    loop {
        sys::interrupted()?;
        let now = Instant::now();
        if undone.is_none() && now >= t0 + f.hold {
            match f.kind {
                Kind::TmKill | Kind::Corrupt => c.start_taskmanager(f.victim),
                Kind::TmPause => c.signal_taskmanager(f.victim, libc::SIGCONT),
                Kind::JmKill => c.start_jobmanager(),
                Kind::Partition => c.set_link(f.victim, true),
            }
            .with_context(|| format!("undoing {}", f.describe()))?;
            undone = Some(now);
        }
        // While the JobManager is down there is nothing to learn.
        if let Ok(s) = c.job(job) {
            if s.state == "FINISHED" {
                o.recovery.get_or_insert(now - t0);
            } else if s.ended() {
                bail!("job {job} ended {} after {}: {}", s.state, f.describe(), s.failure.unwrap_or_default());
            }
            disrupted |= s.restarts != before.restarts || s.engine != "RUNNING";
            match running {
                _ if !disrupted || o.recovery.is_some() => {}
                _ if s.engine != "RUNNING" => running = None,
                None => running = Some(s.last_checkpoint),
                Some(at) if s.last_checkpoint.is_some() && s.last_checkpoint != at => o.recovery = Some(now - t0),
                Some(_) => {}
            }
        } else {
            running = None;
        }
        if let Some(undone) = undone {
            if o.recovery.is_some() {
                break;
            }
            // The heartbeat timeout and then some passed without a disruption.
            if !disrupted && now > undone + Duration::from_millis(c.heartbeat_ms + 4000) {
                o.absorbed = true;
                break;
            }
        }
        if now > t0 + f.hold + STUCK {
            bail!("job {job} did not recover within {STUCK:?} of {}", f.describe());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if o.damaged.is_some() {
        o.detected = Some(c.jobmanager_log_since(log_from).lines().any(|l| l.contains("ERROR") && l.contains("skipping checkpoint")));
    }
    Ok(o)
}

/// Waits (briefly) until the job waits for its restart, when no checkpoint completes,
/// then damages one state file the restore will read: one that the newest completed
/// checkpoint references and an older completed one does not, so there is an intact
/// checkpoint to fall back to. (A file every retained checkpoint shares, the base of
/// an incremental chain, would leave nothing to restore: no system survives that.)
fn damage_while_restarting(c: &Cluster, job: &str, rng: &mut Rng) -> Result<String> {
    let deadline = Instant::now() + Duration::from_millis(c.heartbeat_ms + 10_000);
    let mut when = "late: no RESTARTING seen";
    while Instant::now() < deadline {
        sys::interrupted()?;
        match c.job(job) {
            Ok(s) if s.ended() => return Ok("nothing: the job ended".into()),
            Ok(s) if s.engine == "RESTARTING" => {
                when = "while restarting";
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let completed = completed_checkpoints(&c.checkpoint_dir(), job)?;
    let Some(((newest, files), older)) = completed.split_last() else { return Ok("nothing: no completed checkpoint".into()) };
    let candidates: Vec<&String> = files.iter().filter(|f| older.iter().any(|(_, refs)| !refs.contains(f))).collect();
    if candidates.is_empty() {
        return Ok(format!("nothing: no checkpoint to fall back to ({} completed)", completed.len()));
    }
    let file = candidates[rng.range(0, candidates.len() as u64 - 1) as usize];
    let path = c.checkpoint_dir().join(file);
    let mut bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let how = if rng.range(0, 1) == 0 && !bytes.is_empty() {
        let at = rng.range(0, bytes.len() as u64 - 1) as usize;
        bytes[at] ^= 0x5a;
        format!("flipped byte {at} of {}", bytes.len())
    } else {
        bytes.truncate(rng.range(0, bytes.len() as u64 / 2) as usize);
        format!("truncated to {} bytes", bytes.len())
    };
    std::fs::write(&path, &bytes).with_context(|| format!("damaging {}", path.display()))?;
    Ok(format!("{file} ({how}; newest checkpoint chk-{newest}; {when})"))
}

/// Completed checkpoints of a job (ascending id), each with the state files it
/// references: the metadata is binary (postcard), but the paths are plain strings in
/// it, so file `<job>/chk-N/<name>.state` is referenced iff that string occurs.
fn completed_checkpoints(root: &Path, job: &str) -> Result<Vec<(u64, Vec<String>)>> {
    let dir = root.join(job);
    let (mut metas, mut files) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("chk-").and_then(|i| i.parse::<u64>().ok()) else { continue };
        for f in std::fs::read_dir(entry.path()).into_iter().flatten().flatten() {
            let f = f.file_name().to_string_lossy().into_owned();
            if f.ends_with(".state") {
                files.push(format!("{job}/{name}/{f}"));
            }
        }
        if let Ok(meta) = std::fs::read(entry.path().join("_metadata")) {
            metas.push((id, meta));
        }
    }
    metas.sort_by_key(|m| m.0);
    let refers = |meta: &[u8], f: &String| meta.windows(f.len()).any(|w| w == f.as_bytes());
    Ok(metas.into_iter().map(|(id, meta)| (id, files.iter().filter(|f| refers(&meta, f)).cloned().collect())).collect())
}
