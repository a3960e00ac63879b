//! Deploying an attempt in two phases: every TaskManager prepares its share (fetching
//! components, opening state, wiring inputs), and only when all have are they started,
//! so no producer ever sends to a consumer that does not exist yet.

use super::{Command, Driver, Phase};
use crate::model::EventLevel;
use weir_types::deployment::JobStatus;
use weir_types::ids::TaskManagerId;

impl Driver {
    pub(super) fn prepared(&mut self, tm: TaskManagerId, now: std::time::Instant, out: &mut Vec<Command>) {
        let Phase::Deploying { preparing } = &mut self.phase else { return };
        preparing.remove(&tm);
        if preparing.is_empty() && self.tracker.status() == JobStatus::Created {
            out.push(Command::Start { run: self.run(), to: self.holders() });
            self.tracker.running(now);
            self.phase = Phase::Running;
            out.push(Command::Log(EventLevel::Info, format!("attempt {} running", self.deployment.attempt)));
        }
    }
}
