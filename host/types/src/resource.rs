//! The Job resource as Ververica Platform models it (seed 002): a lifecycle state that
//! includes acquiring resources and terminating, next to the engine's own job status.
//! Pure: observations and their times are passed in.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::deployment::JobStatus;

/// `status.state` of a Job resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Acquiring slots and deploying.
    Starting,
    /// Deployed and running (also while the engine restarts it after a failure).
    Started,
    /// A user asked it to stop; subtasks are stopping.
    Terminating,
    /// Stopped on request.
    Terminated,
    /// Failed for good (restart budget used up, or no restarts allowed).
    Failed,
    /// A finite job consumed all its input.
    Finished,
}

impl JobState {
    /// Upper-case name, as Ververica prints it.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Starting => "STARTING",
            JobState::Started => "STARTED",
            JobState::Terminating => "TERMINATING",
            JobState::Terminated => "TERMINATED",
            JobState::Failed => "FAILED",
            JobState::Finished => "FINISHED",
        }
    }

    /// True once the state can change no more.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Terminated | JobState::Failed | JobState::Finished)
    }

    /// The transitions the Job resource allows.
    pub fn may_become(self, next: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            (Starting, Started | Terminating | Failed | Finished)
                | (Started, Terminating | Failed | Finished)
                | (Terminating, Terminated | Failed | Finished)
        )
    }

    /// The resource state for an engine status; `terminating` once a user asked the
    /// job to stop.
    pub fn of(status: JobStatus, terminating: bool) -> JobState {
        match status {
            JobStatus::Finished => JobState::Finished,
            JobStatus::Failed => JobState::Failed,
            JobStatus::Canceled => JobState::Terminated,
            JobStatus::Cancelling => JobState::Terminating,
            _ if terminating => JobState::Terminating,
            JobStatus::Created => JobState::Starting,
            JobStatus::Running | JobStatus::Failing | JobStatus::Restarting => JobState::Started,
        }
    }
}

/// One state change, with its time in milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The state entered.
    pub state: JobState,
    /// When, in ms since the epoch.
    pub at_ms: u64,
}

/// A Job resource's status: its state, how it got there, and what the engine reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResource {
    /// `status.state`.
    pub state: JobState,
    /// Every state entered, oldest first (the first is STARTING).
    pub transitions: Vec<Transition>,
    /// When STARTED was entered (`status.started.transitionTime`).
    pub started_ms: Option<u64>,
    /// Last observation (`status.started.lastUpdateTime`).
    pub updated_ms: u64,
    /// Observed engine restarts (`observedFlinkJobRestarts`).
    pub observed_restarts: u32,
    /// Observed engine status (`observedFlinkJobStatus`).
    pub observed_status: JobStatus,
    /// Why it failed, on FAILED.
    pub failure: Option<String>,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl JobResource {
    /// A resource created at `now`, STARTING.
    pub fn new(now: SystemTime) -> Self {
        let at_ms = ms(now);
        Self {
            state: JobState::Starting,
            transitions: vec![Transition { state: JobState::Starting, at_ms }],
            started_ms: None,
            updated_ms: at_ms,
            observed_restarts: 0,
            observed_status: JobStatus::Created,
            failure: None,
        }
    }

    /// Records an observation of the engine. Moves along the allowed transitions only:
    /// a terminal state is final, and an observation that would go backwards (an engine
    /// restart seen after a stop request) leaves the state alone.
    pub fn observe(&mut self, status: JobStatus, restarts: u32, error: Option<&str>, terminating: bool, now: SystemTime) {
        let at_ms = ms(now);
        self.updated_ms = at_ms;
        self.observed_status = status;
        self.observed_restarts = self.observed_restarts.max(restarts);
        let next = JobState::of(status, terminating);
        if next == self.state {
            return;
        }
        // TERMINATING is passed through when a stop ended the job before anyone looked
        // (a job cancelled while it waited for slots).
        if next == JobState::Terminated && matches!(self.state, JobState::Starting | JobState::Started) {
            self.enter(JobState::Terminating, at_ms);
        }
        if !self.state.may_become(next) {
            return;
        }
        // STARTED is passed through even when the job ended before anyone looked.
        if self.state == JobState::Starting && next != JobState::Started && next != JobState::Terminating && status != JobStatus::Failed {
            self.enter(JobState::Started, at_ms);
        }
        if next == JobState::Failed {
            self.failure = error.map(str::to_string);
        }
        self.enter(next, at_ms);
    }

    fn enter(&mut self, state: JobState, at_ms: u64) {
        if state == JobState::Started {
            self.started_ms = Some(at_ms);
        }
        self.state = state;
        self.transitions.push(Transition { state, at_ms });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn walk(observations: &[(JobStatus, bool)]) -> Vec<JobState> {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut r = JobResource::new(t0);
        for (i, &(status, terminating)) in observations.iter().enumerate() {
            r.observe(status, 0, Some("boom"), terminating, t0 + Duration::from_secs(i as u64 + 1));
        }
        r.transitions.iter().map(|t| t.state).collect()
    }

    #[test]
    fn every_transition_of_the_job_resource() {
        use JobState::*;
        use JobStatus as S;
        assert_eq!(walk(&[(S::Running, false), (S::Finished, false)]), vec![Starting, Started, Finished]);
        assert_eq!(walk(&[(S::Running, false), (S::Cancelling, true), (S::Canceled, true)]), vec![Starting, Started, Terminating, Terminated]);
        assert_eq!(walk(&[(S::Created, true), (S::Canceled, true)]), vec![Starting, Terminating, Terminated]);
        assert_eq!(walk(&[(S::Canceled, true)]), vec![Starting, Terminating, Terminated], "cancelled before anyone looked");
        assert_eq!(walk(&[(S::Running, false), (S::Restarting, false), (S::Running, false), (S::Failed, false)]), vec![Starting, Started, Failed]);
        assert_eq!(walk(&[(S::Failed, false)]), vec![Starting, Failed], "failing while starting");
        assert_eq!(walk(&[(S::Running, false), (S::Cancelling, true), (S::Failed, true)]), vec![Starting, Started, Terminating, Failed]);
        assert_eq!(walk(&[(S::Finished, false), (S::Running, false)]), vec![Starting, Started, Finished], "terminal is final");
        let t0 = SystemTime::UNIX_EPOCH;
        let mut r = JobResource::new(t0);
        r.observe(JobStatus::Running, 2, None, false, t0);
        r.observe(JobStatus::Failed, 1, Some("operator x failed"), false, t0);
        assert_eq!((r.observed_restarts, r.failure.as_deref()), (2, Some("operator x failed")));
    }
}
