//! A running attempt's checkpoints: triggering on the interval, acknowledgements,
//! completion (the metadata is written by the host, then announced so sinks commit),
//! savepoints, and a stop-with-savepoint ([`Phase::Stopping`]), whose checkpoint is
//! the attempt's last: none may follow, since its completion would commit output the
//! run resumed from the savepoint writes again.

use std::time::Instant;

use weir_checkpoint::CheckpointMeta;
use weir_control::protocol::{CheckpointAck, EndOfInput};
use weir_types::deployment::TaskEnd;
use weir_types::ids::RunId;

use super::{Command, Driver, Exported, Phase, SavepointWait};
use crate::coordinator::AckOutcome;
use crate::model::{CheckpointStatus, EventLevel};

impl Driver {
    pub(super) fn tick_checkpoints(&mut self, now: Instant, out: &mut Vec<Command>) {
        if self.tracker.status() != weir_types::deployment::JobStatus::Running {
            return;
        }
        // A swap not armed everywhere yet holds the next checkpoint back: it is the switch point.
        let hold = self.swap.as_ref().is_some_and(|s| !s.armed());
        let Some(c) = self.coordinator.as_mut() else { return };
        let expired = c.expire(now);
        let due = if hold { None } else { c.due(now) };
        let stop = c.stopping();
        if let Some(id) = expired {
            out.push(Command::Log(EventLevel::Warn, format!("checkpoint {id} abandoned: not all subtasks acknowledged in time")));
            out.push(failed(id, "not all subtasks acknowledged in time".into()));
        }
        if let Some(id) = due {
            out.push(Command::Trigger { run: self.run(), id, stop, to: self.holders() });
            out.push(Command::Checkpoint { id, status: CheckpointStatus::InProgress, size: None, failure: None });
        }
    }

    pub(super) fn ack(&mut self, ack: CheckpointAck, now: Instant, out: &mut Vec<Command>) {
        let Some(c) = self.coordinator.as_mut() else { return };
        let outcome = c.ack(&self.deployment, ack.checkpoint, ack.vertex, ack.task, now);
        self.ack_outcome(outcome, out);
    }

    /// With checkpoints a subtask finishes only after a completed checkpoint captured
    /// it at its end (its sink committed then): nothing of it is committed past the
    /// checkpoints, so a restore never writes committed output again.
    pub(super) fn task_ended(&mut self, end: TaskEnd, now: Instant, out: &mut Vec<Command>) {
        if self.tracker.ended(end.vertex, end.subtask, end.outcome, now) {
            self.cancel_attempt(out);
        }
    }

    /// A subtask processed the end of its input and waits for a checkpoint to capture
    /// it; after the last one's, the final checkpoint is triggered at once.
    pub(super) fn end_of_input(&mut self, end: EndOfInput, now: Instant, out: &mut Vec<Command>) {
        self.tracker.end_of_input(end.vertex, end.subtask);
        let Some(c) = self.coordinator.as_mut() else { return };
        c.end_of_input(end.vertex, end.subtask, end.last_checkpoint);
        if c.all_ended() && matches!(self.phase, Phase::Running) {
            self.phase = Phase::Finishing;
            out.push(Command::Log(EventLevel::Info, "every subtask reached the end of its input: taking the final checkpoint".into()));
            self.tick_checkpoints(now, out);
        }
    }

    fn ack_outcome(&mut self, outcome: AckOutcome, out: &mut Vec<Command>) {
        match outcome {
            AckOutcome::Waiting => {}
            AckOutcome::Failed(id, e) => {
                out.push(Command::Log(EventLevel::Warn, format!("checkpoint {id} failed: {e}")));
                out.push(failed(id, e));
            }
            AckOutcome::Complete(meta) => {
                self.completing += 1;
                out.push(Command::Complete { run: self.run(), meta });
            }
        }
    }

    /// A checkpoint's metadata was written (or not). Only now is it complete: its
    /// attempt's sinks hear so and commit, and savepoints waiting for it are exported.
    pub(super) fn completed(&mut self, run: &RunId, meta: CheckpointMeta, result: Result<u64, String>, out: &mut Vec<Command>) {
        self.completing = self.completing.saturating_sub(1);
        let id = meta.id;
        let current = self.is_current(run);
        let coordinator = self.coordinator.as_mut().filter(|_| current);
        let size = match result {
            Ok(size) => size,
            Err(e) => {
                if let Some(c) = coordinator {
                    c.not_completed(id);
                }
                out.push(Command::Log(EventLevel::Error, format!("checkpoint {id} cannot be completed: {e}")));
                out.push(failed(id, e));
                if !self.attempt_active() && self.completing == 0 {
                    self.drop_swap("the attempt ended before a checkpoint at the switch point completed", out);
                }
                return;
            }
        };
        if let Some(c) = coordinator {
            c.completed(&meta);
        }
        self.last_checkpoint = Some(self.last_checkpoint.map_or(id, |l| l.max(id)));
        self.swap_completed(id, out);
        if !self.attempt_active() && self.completing == 0 {
            self.drop_swap("the attempt ended before a checkpoint at the switch point completed", out);
        }
        out.push(Command::Checkpoint { id, status: CheckpointStatus::Completed, size: Some(size), failure: None });
        if self.is_current(run) {
            out.push(Command::Announce { run: run.clone(), id, to: self.holders() });
        }
        if self.is_ended() {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.savepoints).into_iter().partition(|s| s.from <= id);
        self.savepoints = later;
        for s in due {
            out.push(Command::Export { request: s.request, meta: meta.clone(), dir: s.dir, stop: s.stop });
        }
    }

    /// A user asks for a savepoint: the next checkpoint is forced, and exported once
    /// complete.
    pub(super) fn savepoint(&mut self, request: u64, dir: String, stop: bool, out: &mut Vec<Command>) {
        let coordinator = match self.phase {
            Phase::Deploying { .. } | Phase::Running | Phase::Stopping | Phase::Finishing => self.coordinator.as_mut(),
            _ => None,
        };
        let Some(c) = coordinator else {
            let why = format!("job {} is not running with checkpoints (submit it with --checkpoint-interval)", self.deployment.job);
            return out.push(Command::Reply { request, result: Err(why) });
        };
        let from = c.force(stop);
        if stop && matches!(self.phase, Phase::Running) {
            self.phase = Phase::Stopping;
        }
        self.savepoints.push(SavepointWait { request, from, dir, stop });
    }

    pub(super) fn savepoint_written(&mut self, exported: Exported, now: Instant, out: &mut Vec<Command>) {
        let Exported { request, id, dir, stop, result } = exported;
        match &result {
            Ok(()) => {
                out.push(Command::Log(
                    EventLevel::Info,
                    format!("savepoint of checkpoint {id} written to {dir}{}", if stop { "; stopping" } else { "" }),
                ));
                if stop {
                    // Answered once the job has ended and its slots are free.
                    self.stopped = Some((request, id));
                    return self.cancel(now, out);
                }
            }
            Err(_) if stop && !self.is_ended() => {
                out.push(Command::Log(EventLevel::Warn, format!("savepoint of checkpoint {id} could not be written to {dir}; the job goes on")));
                if let Some(c) = self.coordinator.as_mut() {
                    c.resume();
                }
                if matches!(self.phase, Phase::Stopping) {
                    self.phase = Phase::Running;
                }
            }
            Err(_) => {}
        }
        out.push(Command::Reply { request, result: result.map(|()| id) });
    }
}

fn failed(id: u64, why: String) -> Command {
    Command::Checkpoint { id, status: CheckpointStatus::Failed, size: None, failure: Some(why) }
}
