//! The job driver: one job's life as a pure state machine, in quinn-proto's style (no
//! I/O, time passed in). The `weir jobmanager` service and the embedded cluster feed
//! it [`Event`]s (TaskManagers' reports, the answers to the I/O it asked for, ticks)
//! and carry out the [`Command`]s [`Driver::on`] returns (deploy, start, cancel
//! fan-out, trigger, write a checkpoint's metadata, announce it, export a savepoint,
//! persist the job). Every decision the JobManager takes for exactly-once lives here,
//! so it is unit-tested without processes or sleeps (`tests.rs`).
//!
//! An attempt's life, one file per phase:
//! - [`restarting`]: between attempts (and before the first of a job resumed by a new
//!   JobManager): waits for the restart strategy's delay and for checkpoint
//!   completions in flight, finds the newest intact checkpoint, asks for slots, and
//!   deploys the next attempt.
//! - [`deploying`]: every TaskManager prepares its share; the attempt starts when all
//!   have.
//! - [`running`]: checkpoints on an interval; savepoints; a stop-with-savepoint
//!   ([`Phase::Stopping`]) whose checkpoint is the attempt's last; the end of the
//!   input ([`Phase::Finishing`]): subtasks that processed it wait, and once all have,
//!   the final checkpoint captures them and its completion lets them finish.
//!
//! Then the attempt ends ([`Driver`]'s `attempt_ended`): a failure restarts under the
//! [`RestartStrategy`], anything else ends the job ([`Phase::Ended`]).
//!
//! Fencing: every event from a TaskManager names the attempt (run) it is about, and
//! only the current attempt's count: a superseded attempt's acknowledgements, ends and
//! preparations are ignored.

mod deploying;
mod restarting;
mod running;
mod swapping;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_checkpoint::{CheckpointMeta, checkpoint_of_metadata_path};
use weir_control::protocol::{CheckpointAck, EndOfInput};
use weir_types::deployment::{JobDeployment, JobReport, JobStatus, RestoreFrom, TaskEnd, TaskProgress};
use weir_types::ids::{ComponentHash, RunId, TaskManagerId};

use crate::coordinator::Coordinator;
use crate::model::{CheckpointStatus, EventLevel};
use crate::restart::RestartStrategy;
use crate::tracker::JobTracker;

pub use restarting::Placement;

/// Where a job stands.
#[derive(Debug)]
pub enum Phase {
    /// Between attempts.
    Restarting(restarting::Restart),
    /// The attempt's TaskManagers prepare their shares; these have not answered yet
    /// (registry ids).
    Deploying {
        /// TaskManagers still preparing.
        preparing: BTreeSet<TaskManagerId>,
    },
    /// The attempt runs.
    Running,
    /// The attempt runs towards a stop-with-savepoint: the next completed checkpoint
    /// is its last.
    Stopping,
    /// Every subtask processed the end of its input (with checkpoints): the final
    /// checkpoint is taken, and the job finishes once its subtasks, having heard of its
    /// completion and committed their sinks, do.
    Finishing,
    /// Over for good.
    Ended,
}

/// What happened, as far as the job is concerned.
#[derive(Debug)]
pub enum Event {
    /// Time passed: checkpoints due or overdue, restart delays over.
    Tick,
    /// What the job's checkpoints offer, or why they could not be read; the answer to
    /// [`Command::FindRestore`].
    Restorable(Result<Found, String>),
    /// Slots were reserved for the next attempt; the answer to [`Command::Place`].
    Placed(Placement),
    /// Too few free slots for the next attempt now.
    NoSlots {
        /// Slots the attempt needs.
        needed: u32,
        /// Slots free in the cluster.
        free: u32,
    },
    /// A TaskManager (registry id) prepared its share of attempt `run`.
    Prepared {
        /// The attempt.
        run: RunId,
        /// Registry id.
        tm: TaskManagerId,
    },
    /// A TaskManager could not prepare its share of attempt `run`.
    PrepareFailed {
        /// The attempt.
        run: RunId,
        /// Registry id.
        tm: TaskManagerId,
        /// Why.
        error: String,
    },
    /// A subtask ended (in the attempt its `run` names).
    TaskEnded(TaskEnd),
    /// A subtask's snapshot was persisted (or not).
    Ack(CheckpointAck),
    /// A subtask processed the end of its input and waits for the final checkpoint.
    EndOfInput(EndOfInput),
    /// A TaskManager is gone (silent past the heartbeat timeout, or disconnected).
    TaskManagerLost {
        /// Registry id.
        tm: TaskManagerId,
        /// Its name, for the error.
        name: String,
    },
    /// A checkpoint's metadata was written (its size in bytes), or not; the answer to
    /// [`Command::Complete`].
    Completed {
        /// The attempt that took it.
        run: RunId,
        /// The checkpoint.
        meta: CheckpointMeta,
        /// Bytes written, or why it failed.
        result: Result<u64, String>,
    },
    /// A user cancels the job.
    Cancel,
    /// A user asks for a savepoint into `dir` (`stop`: then stop the job); the answer
    /// comes as [`Command::Reply`] with the same `request`.
    Savepoint {
        /// The caller's handle for the answer.
        request: u64,
        /// Target directory.
        dir: String,
        /// Stop with the savepoint.
        stop: bool,
    },
    /// A savepoint was exported (or not); the answer to [`Command::Export`].
    SavepointWritten(Exported),
    /// A user asks for a live swap to these components (checked compatible with the
    /// running code); answered with [`Command::Reply`] (the switch point's checkpoint).
    Swap {
        /// The caller's handle for the answer.
        request: u64,
        /// The new components, by index in the job's code.
        components: Vec<ComponentHash>,
    },
    /// A TaskManager armed a live swap of attempt `run` (or could not).
    SwapReady {
        /// The attempt.
        run: RunId,
        /// Registry id.
        tm: TaskManagerId,
        /// Armed, or why not.
        result: Result<(), String>,
    },
}

/// The answer to [`Command::FindRestore`].
#[derive(Debug, Default)]
pub struct Found {
    /// The newest intact completed checkpoint: (id, metadata path).
    pub restore: Option<(u64, String)>,
    /// Newer completed checkpoints that cannot be restored: (id, cause), newest first.
    pub skipped: Vec<(u64, String)>,
}

impl Found {
    /// Only `restore`, nothing skipped.
    pub fn restore(restore: Option<(u64, String)>) -> Self {
        Self { restore, skipped: vec![] }
    }
}

/// The outcome of a [`Command::Export`].
#[derive(Debug)]
pub struct Exported {
    /// As in the request.
    pub request: u64,
    /// The checkpoint exported.
    pub id: u64,
    /// Target directory.
    pub dir: String,
    /// A stop-with-savepoint.
    pub stop: bool,
    /// Whether it was written.
    pub result: Result<(), String>,
}

/// What the driver asks its host to do. TaskManagers are named by registry id.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Find the newest intact checkpoint; answer with [`Event::Restorable`].
    FindRestore,
    /// Reserve slots for the job's graph; answer with [`Event::Placed`] or
    /// [`Event::NoSlots`].
    Place,
    /// Send each TaskManager `(id, index in the deployment)` the deployment.
    Deploy {
        /// The attempt.
        deployment: Box<JobDeployment>,
        /// Who prepares a share.
        to: Vec<(TaskManagerId, u32)>,
    },
    /// Start the prepared subtasks of attempt `run`.
    Start {
        /// The attempt.
        run: RunId,
        /// Its TaskManagers.
        to: Vec<TaskManagerId>,
    },
    /// Cancel the subtasks of attempt `run`.
    Cancel {
        /// The attempt.
        run: RunId,
        /// Its TaskManagers.
        to: Vec<TaskManagerId>,
    },
    /// Sources of attempt `run` inject the barrier of checkpoint `id`.
    Trigger {
        /// The attempt.
        run: RunId,
        /// Checkpoint id.
        id: u64,
        /// A stop-with-savepoint's: sources emit nothing after it.
        stop: bool,
        /// Its TaskManagers.
        to: Vec<TaskManagerId>,
    },
    /// Write the checkpoint's metadata (the commit point) and apply retention; answer
    /// with [`Event::Completed`].
    Complete {
        /// The attempt.
        run: RunId,
        /// The checkpoint.
        meta: CheckpointMeta,
    },
    /// Tell attempt `run`'s TaskManagers that checkpoint `id` is complete: sinks commit.
    Announce {
        /// The attempt.
        run: RunId,
        /// Checkpoint id.
        id: u64,
        /// Its TaskManagers.
        to: Vec<TaskManagerId>,
    },
    /// Export a completed checkpoint as a savepoint; answer with
    /// [`Event::SavepointWritten`].
    Export {
        /// The user's request.
        request: u64,
        /// The checkpoint.
        meta: CheckpointMeta,
        /// Target directory.
        dir: String,
        /// A stop-with-savepoint.
        stop: bool,
    },
    /// Answer a savepoint request: the checkpoint id written, or why not.
    Reply {
        /// The request.
        request: u64,
        /// The answer.
        result: Result<u64, String>,
    },
    /// Ship and arm a live swap on attempt `run`'s TaskManagers; each answers with
    /// [`Event::SwapReady`].
    Swap {
        /// The attempt.
        run: RunId,
        /// The new components.
        components: Vec<ComponentHash>,
        /// The switch point.
        at: u64,
        /// Its TaskManagers.
        to: Vec<TaskManagerId>,
    },
    /// Drop the armed swap of attempt `run` (before its checkpoint was triggered).
    SwapAbort {
        /// The attempt.
        run: RunId,
        /// Its TaskManagers.
        to: Vec<TaskManagerId>,
    },
    /// A live swap completed: the job's code is now these components (keep their
    /// bytes, persist them before the record that follows).
    SwapCommitted {
        /// The new components.
        components: Vec<ComponentHash>,
    },
    /// Give back slots: (registry id, count).
    Release(Vec<(TaskManagerId, u32)>),
    /// Write the job's record ([`Driver::record`]) durably: a new attempt number must
    /// survive a JobManager restart.
    Persist,
    /// Tell users (the job's events) and the log.
    Log(EventLevel, String),
    /// A checkpoint changed status, for the job's checkpoint log.
    Checkpoint {
        /// Checkpoint id.
        id: u64,
        /// Its status.
        status: CheckpointStatus,
        /// Bytes written, when completed.
        size: Option<u64>,
        /// Why it failed.
        failure: Option<String>,
    },
    /// Every checkpoint still in progress failed with this reason.
    AbandonCheckpoints(String),
    /// A completed checkpoint cannot be restored and was passed over (a job event and
    /// a metric).
    Skipped {
        /// Checkpoint id.
        id: u64,
        /// Why (the file and what is wrong with it).
        cause: String,
    },
    /// The job is over: move it to the history.
    Ended,
}

/// A savepoint waiting for a checkpoint with an id of at least `from`.
#[derive(Debug)]
struct SavepointWait {
    request: u64,
    from: u64,
    dir: String,
    stop: bool,
}

/// What survives a JobManager restart of a job that has not ended: enough to run it
/// again from its latest checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriverRecord {
    /// The last attempt's deployment.
    pub deployment: JobDeployment,
    /// How failures restart it.
    pub restart: RestartStrategy,
    /// What the job started from; a restart without any checkpoint goes back to it.
    pub initial_restore: Option<RestoreFrom>,
    /// Id of the job's first checkpoint (after a savepoint's, to keep epochs growing).
    pub first_checkpoint: u64,
    /// Restarts so far.
    pub restarts: u32,
    /// Fuel burned by earlier, failed attempts, per vertex (see `Driver::failed_fuel`).
    #[serde(default)]
    pub failed_fuel: Vec<u64>,
}

/// One job's life. See the module docs.
#[derive(Debug)]
pub struct Driver {
    /// The current (or last) attempt.
    deployment: Box<JobDeployment>,
    phase: Phase,
    tracker: JobTracker,
    coordinator: Option<Coordinator>,
    /// Registry ids of the attempt's TaskManagers, by index in the deployment.
    tms: Vec<TaskManagerId>,
    /// Slots the attempt holds, per TaskManager.
    slots: Vec<(TaskManagerId, u32)>,
    restart: RestartStrategy,
    failures: Vec<Instant>,
    restarts: u32,
    last_checkpoint: Option<u64>,
    /// The newest epoch whose sink output may be committed besides completed
    /// checkpoints' (checkpoints a restore skipped; a sink's end of input commits with
    /// the final checkpoint, never by itself). Restores older than it are announced as
    /// at-least-once, and new checkpoint ids go above it.
    committed_epoch: Option<u64>,
    first_checkpoint: u64,
    initial_restore: Option<RestoreFrom>,
    /// Checkpoints whose metadata is being written. A restart waits for them: it must
    /// know whether they completed, or it would restore an older checkpoint while the
    /// attempt's output of the newer one counts as committed.
    completing: u32,
    savepoints: Vec<SavepointWait>,
    /// A user asked the job to stop.
    terminating: bool,
    /// Overrides the last attempt's status (a job cancelled between attempts).
    final_status: Option<JobStatus>,
    /// Overrides the last attempt's error (a restart that failed between attempts).
    final_error: Option<String>,
    /// An attempt was deployed before (or the job is resumed): the next one gets a
    /// new number.
    deployed: bool,
    /// How long an attempt waits for free slots before it counts as failed (Flink's
    /// `slot.request.timeout`).
    slot_timeout: Duration,
    /// Why the job waits (for slots), shown with its status.
    waiting: Option<String>,
    /// Fuel burned per vertex by the attempts before the current one, which all ended
    /// in a failure (a restart replaces only a failed attempt). Subtasks of a lost
    /// TaskManager count with their last heartbeat's value, so this is a lower bound;
    /// it is persisted with the job, so it survives a JobManager restart.
    failed_fuel: Vec<u64>,
    /// A stop with savepoint whose savepoint is written: answered once the job has
    /// ended and given back its slots, so a resume from it right after finds them.
    stopped: Option<(u64, u64)>,
    /// A live swap under way.
    swap: Option<swapping::Swap>,
}

/// Default of [`Driver::set_slot_timeout`] (Flink's `slot.request.timeout`).
pub const SLOT_TIMEOUT: Duration = Duration::from_secs(300);

impl Driver {
    /// A new job whose first attempt deploys `deployment` (placement still empty) once
    /// [`Event::Placed`] arrives; `first_checkpoint` follows a savepoint's id.
    pub fn new(deployment: JobDeployment, restart: RestartStrategy, first_checkpoint: u64, now: Instant) -> Self {
        let initial_restore = deployment.restore.clone();
        let tracker = JobTracker::new(&deployment.job, &deployment.plan.name, deployment.graph.clone(), vec![], now);
        Self {
            phase: Phase::Restarting(restarting::Restart::placing(now, initial_restore.clone())),
            deployment: Box::new(deployment),
            tracker,
            coordinator: None,
            tms: vec![],
            slots: vec![],
            restart,
            failures: vec![],
            restarts: 0,
            last_checkpoint: None,
            committed_epoch: None,
            first_checkpoint,
            initial_restore,
            completing: 0,
            savepoints: vec![],
            terminating: false,
            final_status: None,
            final_error: None,
            deployed: false,
            slot_timeout: SLOT_TIMEOUT,
            waiting: None,
            stopped: None,
            failed_fuel: vec![],
            swap: None,
        }
    }

    /// A job a previous JobManager left running: it restarts at once from its newest
    /// checkpoint, as a new attempt.
    pub fn resume(record: DriverRecord, now: Instant) -> Self {
        let d = record.deployment;
        // The last attempt restored a completed checkpoint: one exists, whatever the
        // storage shows now.
        let restored = match &d.restore {
            Some(RestoreFrom::Checkpoint(path)) => checkpoint_of_metadata_path(path),
            _ => None,
        };
        let tracker = JobTracker::new(&d.job, &d.plan.name, d.graph.clone(), vec![], now);
        Self {
            phase: Phase::Restarting(restarting::Restart::at(now)),
            deployment: Box::new(d),
            tracker,
            coordinator: None,
            tms: vec![],
            slots: vec![],
            restart: record.restart,
            failures: vec![],
            restarts: record.restarts,
            last_checkpoint: restored,
            committed_epoch: None,
            first_checkpoint: record.first_checkpoint,
            initial_restore: record.initial_restore,
            completing: 0,
            savepoints: vec![],
            terminating: false,
            final_status: None,
            final_error: None,
            deployed: true,
            slot_timeout: SLOT_TIMEOUT,
            waiting: None,
            stopped: None,
            failed_fuel: record.failed_fuel,
            swap: None,
        }
    }

    /// How long an attempt may wait for free slots before it counts as a failed one.
    pub fn set_slot_timeout(&mut self, timeout: Duration) {
        self.slot_timeout = timeout;
    }

    /// What to persist so a new JobManager can resume the job.
    pub fn record(&self) -> DriverRecord {
        DriverRecord {
            deployment: (*self.deployment).clone(),
            restart: self.restart,
            initial_restore: self.initial_restore.clone(),
            first_checkpoint: self.first_checkpoint,
            restarts: self.restarts,
            failed_fuel: self.failed_fuel.clone(),
        }
    }

    /// Handles one event at `now`; what to do about it, in order.
    pub fn on(&mut self, event: Event, now: Instant) -> Vec<Command> {
        let mut out = Vec::new();
        match event {
            Event::Tick => self.tick(now, &mut out),
            Event::Restorable(found) => self.restorable(found, now, &mut out),
            Event::Placed(p) => self.placed(p, now, &mut out),
            Event::NoSlots { needed, free } => self.no_slots(needed, free, now, &mut out),
            Event::Prepared { run, tm } if self.is_current(&run) => self.prepared(tm, now, &mut out),
            Event::PrepareFailed { run, tm, error } if self.is_current(&run) => self.lose(tm, &error, now, &mut out),
            Event::TaskEnded(end) if self.is_current(&end.run) => self.task_ended(end, now, &mut out),
            Event::Ack(ack) if self.is_current(&ack.run) => self.ack(ack, now, &mut out),
            Event::EndOfInput(end) if self.is_current(&end.run) => self.end_of_input(end, now, &mut out),
            Event::TaskManagerLost { tm, name } if self.attempt_active() => {
                self.lose(tm, &format!("taskmanager {name} was lost"), now, &mut out);
            }
            Event::Completed { run, meta, result } => self.completed(&run, meta, result, &mut out),
            Event::Cancel => self.cancel(now, &mut out),
            Event::Savepoint { request, dir, stop } => self.savepoint(request, dir, stop, &mut out),
            Event::SavepointWritten(exported) => self.savepoint_written(exported, now, &mut out),
            Event::Swap { request, components } => self.swap(request, components, &mut out),
            Event::SwapReady { run, tm, result } if self.is_current(&run) => self.swap_ready(tm, result, &mut out),
            // A superseded attempt, or one that already ended: never counted.
            Event::Prepared { .. }
            | Event::PrepareFailed { .. }
            | Event::TaskEnded(_)
            | Event::Ack(_)
            | Event::EndOfInput(_)
            | Event::SwapReady { .. }
            | Event::TaskManagerLost { .. } => {}
        }
        if self.attempt_active() && self.tracker.is_done() {
            self.attempt_ended(now, &mut out);
        }
        out
    }

    /// A running subtask's counters (heartbeats); ignored for other attempts.
    pub fn progress(&mut self, p: &TaskProgress, now: Instant) {
        if self.is_current(&p.run) {
            self.tracker.progress(p, now);
        }
    }

    /// The job's report at `now`.
    pub fn report(&self, now: Instant) -> JobReport {
        let mut r = self.tracker.report(now);
        if matches!(self.phase, Phase::Restarting(_)) {
            // Before its first attempt a job is CREATED (Flink's state while it waits
            // for resources), so its Job resource stays STARTING.
            r.status = if self.deployed { JobStatus::Restarting } else { JobStatus::Created };
        }
        if let Some(status) = self.final_status {
            r.status = status;
        }
        if let Some(error) = &self.final_error {
            r.error = Some(error.clone());
        }
        for (v, failed) in r.vertices.iter_mut().zip(&self.failed_fuel) {
            v.fuel += failed;
            v.fuel_failed_attempts = *failed;
        }
        r.restarts = self.restarts;
        r.last_checkpoint = self.last_checkpoint;
        r.waiting = self.waiting.clone();
        r
    }

    /// The phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// What the job started from (a restart without a checkpoint of its own goes
    /// back to it).
    pub fn initial_restore(&self) -> Option<&RestoreFrom> {
        self.initial_restore.as_ref()
    }

    /// Over for good.
    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended)
    }

    /// A user asked the job to stop.
    pub fn terminating(&self) -> bool {
        self.terminating
    }

    /// The current attempt's run id: what TaskManagers call it.
    pub fn run(&self) -> RunId {
        self.deployment.run_id()
    }

    /// The current (or last) attempt's deployment.
    pub fn deployment(&self) -> &JobDeployment {
        &self.deployment
    }

    /// Fuel burned per vertex by earlier attempts, which all failed (a lower bound:
    /// see the field). The job's total is this plus the current attempt's.
    pub fn failed_fuel(&self) -> &[u64] {
        &self.failed_fuel
    }

    /// The subtasks' tracker of the current attempt.
    pub fn tracker(&self) -> &JobTracker {
        &self.tracker
    }

    /// Registry ids of the attempt's TaskManagers, by deployment index.
    pub fn taskmanagers(&self) -> &[TaskManagerId] {
        &self.tms
    }

    /// The TaskManager of each subtask of the attempt, while one is deployed.
    pub fn subtask_hosts(&self) -> Vec<TaskManagerId> {
        match self.attempt_active() {
            true => self.deployment.placement.iter().flatten().filter_map(|&i| self.tms.get(i as usize).copied()).collect(),
            false => Vec::new(),
        }
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The newest completed checkpoint.
    pub fn last_checkpoint(&self) -> Option<u64> {
        self.last_checkpoint
    }

    fn is_current(&self, run: &RunId) -> bool {
        self.attempt_active() && self.deployment.run_id() == *run
    }

    /// An attempt is deployed and has not ended.
    fn attempt_active(&self) -> bool {
        matches!(self.phase, Phase::Deploying { .. } | Phase::Running | Phase::Stopping | Phase::Finishing)
    }

    /// The TaskManagers holding the attempt's slots.
    fn holders(&self) -> Vec<TaskManagerId> {
        self.slots.iter().map(|(id, _)| *id).collect()
    }

    fn cancel_attempt(&mut self, out: &mut Vec<Command>) {
        out.push(Command::Cancel { run: self.run(), to: self.holders() });
    }

    /// TaskManager `tm` can no longer run its share: the attempt fails.
    fn lose(&mut self, tm: TaskManagerId, error: &str, now: Instant, out: &mut Vec<Command>) {
        let Some(index) = self.tms.iter().position(|t| *t == tm) else { return };
        if self.tracker.abandon(index as u32, error, now) {
            self.cancel_attempt(out);
        }
    }

    /// A user's cancel: nothing restarts any more.
    fn cancel(&mut self, now: Instant, out: &mut Vec<Command>) {
        if self.is_ended() {
            return;
        }
        out.push(Command::Log(EventLevel::Info, "cancelling on request".into()));
        self.restart = RestartStrategy::None;
        self.terminating = true;
        if matches!(self.phase, Phase::Restarting(_)) {
            // Nothing runs between attempts: the job ends here.
            self.final_status = Some(JobStatus::Canceled);
            self.finish(out);
        } else if self.tracker.cancel(now) {
            self.cancel_attempt(out);
        }
    }

    /// Every subtask of the attempt ended: give back its slots, then restart or end.
    fn attempt_ended(&mut self, now: Instant, out: &mut Vec<Command>) {
        out.push(Command::Release(std::mem::take(&mut self.slots)));
        self.coordinator = None;
        out.push(Command::AbandonCheckpoints("the attempt ended".into()));
        if self.completing == 0 {
            // A completion in flight may still reach the switch point (`completed`).
            self.drop_swap("the attempt ended before a checkpoint at the switch point completed", out);
        }
        let attempt = self.deployment.attempt;
        if self.tracker.status() == JobStatus::Failed {
            let error = self.tracker.report(now).error.unwrap_or_default();
            return self.failed(&format!("attempt {attempt} failed"), error, now, out);
        }
        self.finish(out);
    }

    /// A restart could not get as far as deploying: it counts as a failed attempt.
    fn restart_failed(&mut self, error: String, now: Instant, out: &mut Vec<Command>) {
        let what = format!("restart {}", self.restarts);
        self.failed(&what, error, now, out);
    }

    /// `what` failed with `error`: the restart strategy decides whether the job
    /// restarts or fails.
    fn failed(&mut self, what: &str, error: String, now: Instant, out: &mut Vec<Command>) {
        self.failures.push(now);
        if let Some(delay) = self.restart.next_delay(&self.failures, now) {
            self.restarts += 1;
            self.phase = Phase::Restarting(restarting::Restart::at(now + delay));
            out.push(Command::Log(EventLevel::Warn, format!("{what} failed, restart {} in {delay:?}: {error}", self.restarts)));
            return;
        }
        out.push(Command::Log(EventLevel::Error, format!("{what} failed and the restart strategy gives up: {error}")));
        if matches!(self.phase, Phase::Restarting(_)) {
            // No attempt ran into this failure: the job ends with it.
            self.final_status = Some(JobStatus::Failed);
            self.final_error = Some(error);
        }
        self.finish(out);
    }

    /// The job is over.
    fn finish(&mut self, out: &mut Vec<Command>) {
        self.phase = Phase::Ended;
        self.waiting = None;
        if let Some((request, id)) = self.stopped.take() {
            out.push(Command::Reply { request, result: Ok(id) });
        }
        for s in self.savepoints.drain(..) {
            out.push(Command::Reply { request: s.request, result: Err("the job ended before the savepoint was taken".into()) });
        }
        self.drop_swap("the job ended before a checkpoint at the switch point completed", out);
        // The host says how it ended: it knows the Job resource's state too.
        out.push(Command::Ended);
    }
}
