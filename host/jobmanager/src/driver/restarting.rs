//! Between attempts: the restart strategy's delay, then the newest intact checkpoint,
//! then slots, then the next attempt's deployment.

use std::time::{Duration, Instant};

use weir_types::deployment::RestoreFrom;
use weir_types::ids::TaskManagerId;

use super::{Command, Driver, Found, Phase};
use crate::coordinator::Coordinator;
use crate::model::EventLevel;
use crate::tracker::JobTracker;

/// How long to wait before asking again for slots.
const RETRY: Duration = Duration::from_millis(20);
/// Checkpoints that cannot be read are looked up again after this, doubling each time:
/// a restart from nothing would replay the input into output already committed.
const STORAGE_RETRY: Duration = Duration::from_millis(500);
/// Lookups of unreadable checkpoints before the restart counts as a failed attempt
/// (about 15 s with the doubling delays); the restart strategy decides what follows.
const STORAGE_LOOKUPS: u32 = 5;

/// Where a restart stands.
#[derive(Debug)]
pub struct Restart {
    /// Not before this.
    at: Instant,
    step: Step,
    /// Lookups of the checkpoints that failed so far.
    unreadable: u32,
    /// Since when the attempt waits for slots.
    no_slots_since: Option<Instant>,
}

#[derive(Debug)]
enum Step {
    /// The delay runs.
    Waiting,
    /// The newest intact checkpoint is being looked for.
    Looking,
    /// Restoring this, waiting for slots.
    Placing(Option<RestoreFrom>),
}

impl Restart {
    /// A restart at `at`, restoring the newest checkpoint.
    pub(super) fn at(at: Instant) -> Self {
        Self { at, step: Step::Waiting, unreadable: 0, no_slots_since: None }
    }

    /// A first attempt restoring `restore`, as soon as slots are free.
    pub(super) fn placing(now: Instant, restore: Option<RestoreFrom>) -> Self {
        Self { at: now, step: Step::Placing(restore), unreadable: 0, no_slots_since: None }
    }
}

/// Slots reserved for an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Registry ids of the TaskManagers the placement indexes.
    pub tms: Vec<TaskManagerId>,
    /// Their data-plane addresses, by the same index.
    pub addrs: Vec<String>,
    /// Per vertex, per subtask: the index of its TaskManager.
    pub placement: Vec<Vec<u32>>,
    /// Slots reserved: (registry id, count).
    pub slots: Vec<(TaskManagerId, u32)>,
}

impl Driver {
    /// A due restart moves on: find the checkpoint, or ask for slots again.
    pub(super) fn tick(&mut self, now: Instant, out: &mut Vec<Command>) {
        match &mut self.phase {
            Phase::Restarting(r) if r.at <= now && self.completing == 0 => match &r.step {
                Step::Waiting if self.deployment.checkpoints.is_some() => {
                    r.step = Step::Looking;
                    out.push(Command::FindRestore);
                }
                Step::Waiting => {
                    r.step = Step::Placing(self.initial_restore.clone());
                    out.push(Command::Place);
                }
                Step::Placing(_) => out.push(Command::Place),
                Step::Looking => {}
            },
            Phase::Running | Phase::Stopping | Phase::Finishing => self.tick_checkpoints(now, out),
            _ => {}
        }
    }

    pub(super) fn restorable(&mut self, found: Result<Found, String>, now: Instant, out: &mut Vec<Command>) {
        let Phase::Restarting(r) = &mut self.phase else { return };
        if !matches!(r.step, Step::Looking) {
            return;
        }
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                r.unreadable += 1;
                if r.unreadable < STORAGE_LOOKUPS {
                    let delay = STORAGE_RETRY * 2u32.pow(r.unreadable - 1);
                    (r.at, r.step) = (now + delay, Step::Waiting);
                    let n = r.unreadable;
                    let m = format!("cannot read the job's checkpoints (lookup {n} of {STORAGE_LOOKUPS}), trying again in {delay:?}: {e}");
                    return out.push(Command::Log(EventLevel::Error, m));
                }
                return self.restart_failed(format!("the job's checkpoints cannot be read: {e}"), now, out);
            }
        };
        for (id, cause) in &found.skipped {
            out.push(Command::Skipped { id: *id, cause: cause.clone() });
        }
        let skipped = found.skipped.iter().map(|(id, _)| *id).max();
        self.committed_epoch = self.committed_epoch.max(skipped);
        self.last_checkpoint = self.last_checkpoint.max(skipped);
        let committed = self.committed_epoch.max(self.last_checkpoint);
        let (restore, from) = match found.restore {
            Some((id, path)) => {
                self.last_checkpoint = self.last_checkpoint.max(Some(id));
                (Some(RestoreFrom::Checkpoint(path)), id)
            }
            // Starting from nothing would replay the whole input into committed output:
            // only a user may decide that (by submitting the job again).
            None if let Some(newest) = self.last_checkpoint => {
                let why = format!(
                    "no completed checkpoint can be restored (the newest, {newest}, and every older one are unreadable); \
                     not starting from nothing: submit the job again to start over, or from a savepoint"
                );
                return self.restart_failed(why, now, out);
            }
            // A savepoint's id is the one before the job's first checkpoint.
            None => (self.initial_restore.clone(), self.first_checkpoint.saturating_sub(1)),
        };
        if let Some(newest) = committed.filter(|&c| c > from) {
            let (what, after) = match (&restore, from) {
                (None, _) => ("nothing".to_string(), "all records".to_string()),
                (Some(RestoreFrom::Savepoint(dir)), id) => (format!("checkpoint {id} (savepoint {dir})"), "the records after it".to_string()),
                (Some(RestoreFrom::Checkpoint(_)), id) => (format!("checkpoint {id}"), format!("the records after checkpoint {id}")),
                (Some(RestoreFrom::CheckpointOf { job, .. }), id) => (format!("checkpoint {id} of job {job}"), "the records after it".to_string()),
            };
            // The attempt `placed` deploys next: readers of the output (the chaos
            // checker) tell the gap's files by it.
            let next = self.deployment.attempt + u32::from(self.deployed);
            out.push(Command::Log(
                EventLevel::Warn,
                format!(
                    "attempt {next} restores {what}, older than output already committed (epochs up to {newest}): that output \
                     stays, and {after} are written again (at-least-once for that gap)"
                ),
            ));
        }
        r.step = Step::Placing(restore);
        out.push(Command::Place);
    }

    /// The attempt waits for slots (as Flink's scheduler does: TaskManagers may join,
    /// other jobs may end), asking again every [`RETRY`], for at most the slot timeout;
    /// then it counts as a failed attempt and the restart strategy decides.
    pub(super) fn no_slots(&mut self, needed: u32, free: u32, now: Instant, out: &mut Vec<Command>) {
        let Phase::Restarting(r) = &mut self.phase else { return };
        if !matches!(r.step, Step::Placing(_)) {
            return;
        }
        let since = *r.no_slots_since.get_or_insert(now);
        let why = format!("the job needs {needed} slots but only {free} are free");
        if now.duration_since(since) >= self.slot_timeout {
            r.no_slots_since = None;
            self.waiting = None;
            let waited = self.slot_timeout;
            return self.restart_failed(format!("{why} (waited {waited:?} for more)"), now, out);
        }
        r.at = now + RETRY;
        if self.waiting.is_none() {
            out.push(Command::Log(EventLevel::Warn, format!("waiting for slots: {why}; waiting up to {:?}", self.slot_timeout)));
        }
        self.waiting = Some(format!("waiting for slots: {why}"));
    }

    /// Deploys the next attempt on the slots reserved for it.
    pub(super) fn placed(&mut self, p: Placement, now: Instant, out: &mut Vec<Command>) {
        let restore = match &mut self.phase {
            Phase::Restarting(Restart { step: Step::Placing(restore), .. }) => restore.take(),
            // Nothing asked for these slots (the job was cancelled meanwhile).
            _ => return out.push(Command::Release(p.slots)),
        };
        if self.waiting.take().is_some() {
            out.push(Command::Log(EventLevel::Info, "slots are free: deploying".into()));
        }
        let d = &mut self.deployment;
        if self.deployed {
            d.attempt += 1;
        }
        self.deployed = true;
        d.placement = p.placement;
        d.taskmanagers = p.addrs;
        d.restore = restore;
        self.tms = p.tms;
        self.slots = p.slots;
        // The attempt being replaced failed: its work is billed as failed work.
        let done = self.tracker.vertex_fuel();
        if self.failed_fuel.len() < done.len() {
            self.failed_fuel.resize(done.len(), 0);
        }
        for (sum, f) in self.failed_fuel.iter_mut().zip(done) {
            *sum += f;
        }
        self.tracker = JobTracker::new(&d.job, &d.plan.name, d.graph.clone(), d.placement.clone(), now);
        self.coordinator = d.checkpoints.as_ref().map(|c| {
            let first = self.last_checkpoint.max(self.committed_epoch).map_or(self.first_checkpoint, |id| id + 1);
            Coordinator::new(Duration::from_millis(c.interval_ms), first, d.task_count(), now)
        });
        let to: Vec<(TaskManagerId, u32)> =
            self.tms.iter().enumerate().filter(|(_, id)| self.slots.iter().any(|(s, _)| s == *id)).map(|(i, id)| (*id, i as u32)).collect();
        self.phase = Phase::Deploying { preparing: to.iter().map(|(id, _)| *id).collect() };
        let described = d.restore.as_ref().map_or("nothing".to_string(), ToString::to_string);
        out.push(Command::Deploy { deployment: d.clone(), to });
        // The attempt number must never repeat, also across JobManager restarts.
        out.push(Command::Persist);
        out.push(Command::Log(EventLevel::Info, format!("attempt {} deployed, restoring {described}", d.attempt)));
    }
}
