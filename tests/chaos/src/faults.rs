//! Faults, one at a time: inject, hold, undo, and measure the recovery.
//!
//! Recovery time is measured from the REST API: from the fault's start until the job
//! is RUNNING again after the disruption (a new attempt, or a new JobManager) *and*
//! completed a checkpoint after that (its records flow and commit again). A fault
//! that disrupts nothing (a pause shorter than the heartbeat timeout) is "absorbed".

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::cluster::{Cluster, JobView};
use crate::sys::{self, Rng};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// SIGKILL a TaskManager; restart it (same identity, state dir) after `hold`.
    TmKill,
    /// SIGSTOP a TaskManager for `hold`, then SIGCONT: past the heartbeat timeout it
    /// is declared lost and wakes up as a zombie of a superseded attempt.
    TmPause,
    /// SIGKILL the JobManager; restart it on the same addresses after `hold`.
    JmKill,
    /// Cut a TaskManager's link for `hold`: JobManager and peers unreachable, the
    /// shared filesystem still there.
    Partition,
    /// SIGKILL a TaskManager, and while the job waits for its restart, corrupt or
    /// truncate one state file of a completed checkpoint the restore would read.
    Corrupt,
}

pub const KINDS: [Kind; 5] = [Kind::TmKill, Kind::TmPause, Kind::JmKill, Kind::Partition, Kind::Corrupt];

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

/// One fault of the schedule: drawn from the job's seeded stream before it is injected.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: Kind,
    /// TaskManager number (1-based); unused for the JobManager.
    pub victim: usize,
    pub hold: Duration,
}

impl Fault {
    /// Draws a fault. `kind` forces the kind (the smoke preset); `long_pause` makes a
    /// pause at least twice the heartbeat timeout. Victims are drawn among `hosts`
    /// (the TaskManagers running the job) so the fault hits the job.
    pub fn draw(rng: &mut Rng, kind: Option<Kind>, partitions: bool, hosts: &[usize], heartbeat_ms: u64, long_pause: bool) -> Fault {
        let kinds: Vec<Kind> = KINDS.into_iter().filter(|k| partitions || *k != Kind::Partition).collect();
        let drawn = kinds[rng.range(0, kinds.len() as u64 - 1) as usize];
        let kind = kind.unwrap_or(drawn);
        let hosts = if hosts.is_empty() { &[1, 2, 3][..] } else { hosts };
        let victim = hosts[rng.range(0, hosts.len() as u64 - 1) as usize];
        let hold = match kind {
            Kind::TmKill | Kind::Corrupt => rng.ms(200, 2000),
            // 1-6 s around a 1.5 s timeout: both a pause the heartbeats ride out and zombies.
            Kind::TmPause if long_pause => rng.ms(2 * heartbeat_ms, 6000.max(2 * heartbeat_ms)),
            Kind::TmPause => rng.ms(1000, 6000),
            Kind::JmKill => rng.ms(200, 1500),
            Kind::Partition => rng.ms(2000, 8000),
        };
        Fault { kind, victim, hold }
    }

    pub fn describe(&self) -> String {
        match self.kind {
            Kind::JmKill => format!("{} for {:.1}s", self.kind.name(), self.hold.as_secs_f64()),
            _ => format!("{} taskmanager-{} for {:.1}s", self.kind.name(), self.victim, self.hold.as_secs_f64()),
        }
    }
}

/// What became of a fault.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub fault: Fault,
    /// From the fault's start to a checkpoint completed after the recovery.
    pub recovery: Option<Duration>,
    /// Nothing restarted: the cluster rode it out.
    pub absorbed: bool,
    /// For corruptions: what was damaged, and whether the JobManager reported it.
    pub corrupted: Option<String>,
    pub detected: Option<bool>,
}

/// Everything needed to judge recovery is in the API; a fault that leaves the job
/// without recovery this long is a stuck job.
const STUCK: Duration = Duration::from_secs(180);

/// Injects `f` into the running job `job`, undoes it after its hold, and waits for the
/// recovery. Fails if the job fails or gets stuck.
pub fn inject(c: &mut Cluster, job: &str, f: &Fault, rng: &mut Rng) -> Result<Outcome> {
    let before = c.job(job)?;
    let log_from = c.jobmanager_log_len();
    let t0 = Instant::now();
    let mut outcome = Outcome { fault: f.clone(), recovery: None, absorbed: false, corrupted: None, detected: None };
    match f.kind {
        Kind::TmKill => c.kill_taskmanager(f.victim)?,
        Kind::TmPause => c.signal_taskmanager(f.victim, libc::SIGSTOP)?,
        Kind::JmKill => c.kill_jobmanager()?,
        Kind::Partition => c.set_link(f.victim, false)?,
        Kind::Corrupt => {
            c.kill_taskmanager(f.victim)?;
            outcome.corrupted = Some(corrupt_while_restarting(c, job, rng)?);
        }
    }
    let undo = |c: &mut Cluster| match f.kind {
        Kind::TmKill | Kind::Corrupt => c.start_taskmanager(f.victim),
        Kind::TmPause => c.signal_taskmanager(f.victim, libc::SIGCONT),
        Kind::JmKill => c.start_jobmanager(),
        Kind::Partition => c.set_link(f.victim, true),
    };
    let mut undone: Option<Instant> = None;
    // A JobManager restart disrupts by itself; otherwise a new attempt or a status
    // other than RUNNING does.
    let mut disrupted = f.kind == Kind::JmKill;
    // When the job was first seen RUNNING after the disruption, with its checkpoint then.
    let mut running: Option<Option<u64>> = None;
    loop {
        sys::interrupted()?;
        let now = Instant::now();
        if undone.is_none() && now >= t0 + f.hold {
            undo(c).with_context(|| format!("undoing {}", f.describe()))?;
            undone = Some(now);
        }
        match c.job(job) {
            // The JobManager is down (or restarting): nothing to learn.
            Err(_) => running = None,
            Ok(s) => {
                if s.state == "FINISHED" {
                    outcome.recovery.get_or_insert(now - t0);
                } else if s.ended() {
                    bail!("job {job} ended {} after {}: {}", s.state, f.describe(), s.failure.unwrap_or_default());
                }
                disrupted |= s.restarts != before.restarts || s.engine != "RUNNING";
                if disrupted && outcome.recovery.is_none() {
                    match running {
                        _ if s.engine != "RUNNING" => running = None,
                        None => running = Some(s.last_checkpoint),
                        Some(at) if s.last_checkpoint.is_some() && s.last_checkpoint != at => outcome.recovery = Some(now - t0),
                        Some(_) => {}
                    }
                }
            }
        }
        if let Some(undone) = undone {
            if outcome.recovery.is_some() {
                break;
            }
            // The heartbeat timeout and a restart delay passed without a disruption.
            if !disrupted && now > undone + Duration::from_millis(c.heartbeat_ms()) + Duration::from_secs(4) {
                outcome.absorbed = true;
                break;
            }
        }
        if now > t0 + f.hold + STUCK {
            bail!("job {job} did not recover within {STUCK:?} of {}", f.describe());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if outcome.corrupted.is_some() {
        outcome.detected = Some(c.jobmanager_log_since(log_from).lines().any(|l| l.contains("ERROR") && l.contains("skipping checkpoint")));
    }
    Ok(outcome)
}

/// Waits (briefly) until the job waits for its restart, when no checkpoint can
/// complete, then damages one state file the restore will read: one the newest
/// completed checkpoint references but an older completed one does not, so an intact
/// checkpoint to fall back to exists (damaging a file every retained checkpoint
/// shares, e.g. the base of an incremental chain, would leave nothing to restore).
fn corrupt_while_restarting(c: &Cluster, job: &str, rng: &mut Rng) -> Result<String> {
    let deadline = Instant::now() + Duration::from_millis(c.heartbeat_ms()) + Duration::from_secs(10);
    let mut seen: Option<JobView> = None;
    while Instant::now() < deadline {
        sys::interrupted()?;
        if let Ok(s) = c.job(job)
            && (s.engine == "RESTARTING" || s.ended())
        {
            seen = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let when = match seen {
        Some(s) if s.engine == "RESTARTING" => "while restarting",
        Some(_) => return Ok("nothing: the job ended".into()),
        None => "late: no RESTARTING seen",
    };
    let root = c.checkpoint_dir().join(job);
    let completed = completed_checkpoints(&root)?;
    let Some((newest, older)) = completed.split_last() else { return Ok("nothing: no completed checkpoint".into()) };
    let candidates: Vec<&String> = newest.1.iter().filter(|f| older.iter().any(|(_, refs)| !refs.contains(f))).collect();
    if older.is_empty() || candidates.is_empty() {
        return Ok(format!("nothing: no checkpoint to fall back to (completed: {})", completed.len()));
    }
    let file = candidates[rng.range(0, candidates.len() as u64 - 1) as usize];
    let path = c.checkpoint_dir().join(file);
    let mut bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let how = if rng.range(0, 1) == 0 && !bytes.is_empty() {
        let at = rng.range(0, bytes.len() as u64 - 1) as usize;
        bytes[at] ^= 0x5a;
        format!("flipped byte {at} of {}", bytes.len())
    } else {
        let to = rng.range(0, bytes.len() as u64 / 2) as usize;
        bytes.truncate(to);
        format!("truncated to {to} bytes")
    };
    std::fs::write(&path, &bytes).with_context(|| format!("damaging {}", path.display()))?;
    Ok(format!("{file} ({how}; newest checkpoint chk-{}, {when})", newest.0))
}

/// Completed checkpoints of a job (ascending id) with the state files each references.
/// The metadata is binary (postcard); the referenced paths are plain strings in it,
/// so a file is referenced iff its path `<job>/chk-N/<name>.state` occurs in it.
fn completed_checkpoints(root: &Path) -> Result<Vec<(u64, Vec<String>)>> {
    let job = root.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(|| anyhow!("bad checkpoint dir {}", root.display()))?;
    let mut dirs: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut files: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("chk-").and_then(|i| i.parse().ok()) else { continue };
        for f in std::fs::read_dir(entry.path()).into_iter().flatten().flatten() {
            let f = f.file_name().to_string_lossy().into_owned();
            if f.ends_with(".state") {
                files.push(format!("{job}/{name}/{f}"));
            }
        }
        if let Ok(meta) = std::fs::read(entry.path().join("_metadata")) {
            dirs.push((id, meta));
        }
    }
    dirs.sort_by_key(|d| d.0);
    let contains = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    Ok(dirs.into_iter().map(|(id, meta)| (id, files.iter().filter(|f| contains(&meta, f)).cloned().collect())).collect())
}
