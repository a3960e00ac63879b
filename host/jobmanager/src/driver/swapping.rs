//! A live swap: new code for a running attempt, without a restart. The TaskManagers
//! get and compile the new components and arm them for checkpoint `at`, the next id,
//! while the old code runs; no checkpoint is triggered until all have, so no barrier
//! of `at` overtakes an arming. Then `at` is triggered at once: each subtask switches
//! right after its snapshot for it, with the same state, timers and source positions.
//! The job's record (its code) changes only when a checkpoint at or past `at`
//! completes: a failure before restarts on the old code, a failure after on the new.

use std::collections::BTreeSet;

use weir_types::ids::{ComponentHash, TaskManagerId};

use super::{Command, Driver, Phase};
use crate::model::EventLevel;

/// A swap under way.
#[derive(Debug)]
pub(super) struct Swap {
    request: u64,
    components: Vec<ComponentHash>,
    at: u64,
    /// TaskManagers that have not armed it yet.
    waiting: BTreeSet<TaskManagerId>,
}

impl Swap {
    /// Armed everywhere: the checkpoint `at` may be triggered.
    pub(super) fn armed(&self) -> bool {
        self.waiting.is_empty()
    }
}

impl Driver {
    /// A user asks for a live swap to `components` (checked compatible by the host);
    /// answered with [`Command::Reply`] once a checkpoint at the switch point completed.
    pub(super) fn swap(&mut self, request: u64, components: Vec<ComponentHash>, out: &mut Vec<Command>) {
        let refuse = |why: String| Command::Reply { request, result: Err(why) };
        if self.swap.is_some() {
            return out.push(refuse("a live swap of this job is already under way".into()));
        }
        let coordinator = self.coordinator.as_ref().filter(|_| matches!(self.phase, Phase::Running));
        let Some(c) = coordinator else {
            let why = format!("job {} is not running with checkpoints: a live swap switches at a checkpoint", self.deployment.job);
            return out.push(refuse(why));
        };
        let at = c.next_id();
        let to = self.holders();
        out.push(Command::Log(
            EventLevel::Info,
            format!("live swap: shipping the new code to {} taskmanager(s), switch at checkpoint {at}", to.len()),
        ));
        out.push(Command::Swap { run: self.run(), components: components.clone(), at, to: to.clone() });
        self.swap = Some(Swap { request, components, at, waiting: to.into_iter().collect() });
    }

    /// A TaskManager armed the swap, or could not.
    pub(super) fn swap_ready(&mut self, tm: TaskManagerId, result: Result<(), String>, out: &mut Vec<Command>) {
        let Some(s) = self.swap.as_mut() else { return };
        if let Err(e) = result {
            out.push(Command::SwapAbort { run: self.run(), to: self.holders() });
            return self.drop_swap(&format!("a taskmanager could not load the new code: {e}"), out);
        }
        s.waiting.remove(&tm);
        if s.armed() {
            let at = s.at;
            out.push(Command::Log(EventLevel::Info, format!("live swap: armed on every taskmanager, switching at checkpoint {at}")));
            if let Some(c) = self.coordinator.as_mut() {
                c.force(false);
            }
        }
    }

    /// Checkpoint `id` completed: at or past the switch point, every subtask runs the
    /// new code, and the job's record says so from now on.
    pub(super) fn swap_completed(&mut self, id: u64, out: &mut Vec<Command>) {
        let Some(s) = self.swap.take_if(|s| s.armed() && s.at <= id) else { return };
        self.deployment.code.components = s.components.clone();
        out.push(Command::SwapCommitted { components: s.components });
        out.push(Command::Persist);
        out.push(Command::Log(EventLevel::Info, format!("live swap done: checkpoint {id} completed, the job runs the new code")));
        out.push(Command::Reply { request: s.request, result: Ok(id) });
    }

    /// The swap will not happen (the attempt ended, a TaskManager refused): the job
    /// keeps the old code.
    pub(super) fn drop_swap(&mut self, why: &str, out: &mut Vec<Command>) {
        let Some(s) = self.swap.take() else { return };
        out.push(Command::Log(EventLevel::Warn, format!("live swap refused, the job runs on its old code: {why}")));
        out.push(Command::Reply { request: s.request, result: Err(why.to_string()) });
    }
}
