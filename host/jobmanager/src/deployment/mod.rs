//! The Deployment controller (issue 17): one Deployment's life as a pure state machine,
//! like the job [`Driver`](crate::driver::Driver). The service (`deployments`) calls
//! [`Controller::apply`], [`Controller::set_state`] and [`Controller::on`] with what
//! users asked and what it saw of the Deployment's Jobs, persists the [`Record`] after
//! every call, and carries out the [`Command`]s (submit a Job, stop one with a
//! savepoint, cancel one). Every decision is here and unit-tested (`tests.rs`).
//!
//! A Deployment runs at most one Job at a time. Its phases: `Idle` (no Job),
//! `Submitting` (a submit in flight), `Running`, `Stopping` (a stop-with-savepoint in
//! flight) and `Cancelling`. A spec version is good once its Job completed a
//! checkpoint (or, without checkpoints, runs); a Job of a version not yet good that
//! fails or restarts is a failed upgrade: it is cancelled and the last good version is
//! started again from the same savepoint the failed Job started from, so its state is
//! intact and nothing the failed Job did was committed.
//!
//! The phase is persisted before the commands are carried out, so a JobManager killed
//! mid-transition resumes it ([`Controller::recover`]): a submit is retried unless the
//! service finds the Job it created, a stop whose Job still runs (resumed by the
//! JobManager's job failover) is asked again into a new savepoint directory, a stop
//! whose Job ended with its savepoint written goes on from that savepoint.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use weir_types::deploy::{DeploymentJob, DeploymentSpec, DeploymentState, DesiredState, RestoreStrategy, UpgradeStrategy, check_name};
use weir_types::submit::SubmitSpec;

use crate::model::SwapTarget;

/// The controllers of a JobManager, by Deployment name.
pub(crate) type Table = BTreeMap<String, Controller>;

/// A spec version and what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The version number.
    pub version: u64,
    /// The spec.
    pub spec: DeploymentSpec,
}

/// Where the controller stands; persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// No Job.
    Idle,
    /// A Job of `version` is being submitted, from savepoint `from`.
    Submitting { version: u64, from: Option<Restore> },
    /// Job `job` runs `version`; `good` once it completed a checkpoint.
    Running { job: String, version: u64, from: Option<Restore>, good: bool },
    /// Job `job` is stopping with a savepoint into `dir`.
    Stopping { job: String, version: u64, from: Option<Restore>, dir: String },
    /// Job `job` is being cancelled; then `then`.
    Cancelling { job: String, then: Then },
    /// Job `job`, running `version`, is being swapped live to the component of `to`.
    Swapping { job: String, version: u64, from: Option<Restore>, to: u64 },
}

/// What a Job of the Deployment starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Restore {
    /// A savepoint directory.
    Savepoint(String),
    /// The newest retained checkpoint of an ended Job (its id).
    CheckpointOf(String),
}

impl Restore {
    /// What a Job template names itself (`fromSavepoint`, `fromCheckpointOf`).
    fn of_template(t: &SubmitSpec) -> Option<Self> {
        t.from_savepoint.clone().map(Restore::Savepoint).or_else(|| t.from_checkpoint_of.clone().map(Restore::CheckpointOf))
    }

    fn savepoint(from: &Option<Self>) -> Option<String> {
        match from {
            Some(Restore::Savepoint(dir)) => Some(dir.clone()),
            _ => None,
        }
    }

    fn checkpoint_of(from: &Option<Self>) -> Option<String> {
        match from {
            Some(Restore::CheckpointOf(job)) => Some(job.clone()),
            _ => None,
        }
    }
}

/// A Job of the Deployment as users see it in its list.
pub(crate) fn job_entry(job_id: String, spec_version: u64, from: &Option<Restore>) -> DeploymentJob {
    DeploymentJob { job_id, spec_version, from_savepoint: Restore::savepoint(from), from_checkpoint_of: Restore::checkpoint_of(from) }
}

/// What follows a cancellation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Then {
    /// No Job; the Deployment shows this state.
    Settle(DeploymentState),
    /// Submit the current spec from this savepoint (or fresh).
    Submit(Option<Restore>),
}

/// Everything a Deployment is, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Unique id, fixed at creation.
    pub id: String,
    /// Creation time.
    pub created: SystemTime,
    /// Grows with every change.
    pub resource_version: u64,
    /// The current spec (as applied, or rolled back to) and its version.
    pub spec: Version,
    /// The next version number a changed spec gets.
    pub next_version: u64,
    /// The newest version whose Job was good.
    pub last_good: Option<Version>,
    /// Where the controller stands.
    pub phase: Phase,
    /// What an `Idle` Deployment shows; FAILED and FINISHED hold it until a user acts.
    pub settled: DeploymentState,
    /// The newest savepoint taken.
    pub latest_savepoint: Option<String>,
    /// Savepoints asked for so far (each gets its own directory).
    pub savepoints: u64,
    /// Why it stands where it does, if that needs saying.
    pub message: Option<String>,
    /// Its Jobs, newest first.
    pub jobs: Vec<DeploymentJob>,
    /// The Job whose retained checkpoint is the newest state, if newer than
    /// `latest_savepoint`: a good Job that ended without a savepoint (failed, or
    /// cancelled outside the Deployment). The order of events decides what is newer: a
    /// savepoint taken later clears it.
    #[serde(default)]
    pub latest_checkpoint_of: Option<String>,
}

/// What became of a Job, as the service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Not ended. `ready`: it runs and has completed a checkpoint (or takes none);
    /// `failure`: it failed at least once (it restarts), with the latest error.
    Alive { ready: bool, failure: Option<String> },
    /// Ended: FINISHED, or FAILED / CANCELED with the error if any.
    Ended { finished: bool, error: Option<String> },
    /// The JobManager knows no such Job (any more).
    Unknown,
}

/// What the controller hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The answer to [`Command::Submit`]: the new Job's id, or why it was refused.
    Submitted { version: u64, result: Result<String, String> },
    /// How a Job of the Deployment stands now.
    Job { job: String, seen: Seen },
    /// The answer to [`Command::Stop`]: the Job ended and the savepoint is written, or
    /// why not (the Job goes on).
    Stopped { job: String, result: Result<(), String> },
    /// After a JobManager restart, of a stop that was in flight: its Job as seen now,
    /// and whether the savepoint is complete.
    StopInterrupted { job: String, seen: Seen, written: bool },
    /// The answer to [`Command::Swap`]: the Job runs the new component, or why not (it
    /// runs on the old one).
    Swapped { job: String, result: Result<(), String> },
}

/// What the service is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create a Job from `template` (its `fromSavepoint` set); answer with
    /// [`Event::Submitted`].
    Submit { version: u64, template: SubmitSpec },
    /// Stop `job` with a savepoint into `dir`; answer with [`Event::Stopped`].
    Stop { job: String, dir: String },
    /// Cancel `job` (its end is seen by polling).
    Cancel { job: String },
    /// Swap `job`'s code live to `to` (the uploaded component, or a manifest's
    /// changed components); answer with [`Event::Swapped`].
    Swap { job: String, to: SwapTarget },
}

/// One Deployment's controller.
#[derive(Debug, Clone)]
pub struct Controller {
    pub(crate) record: Record,
}

/// Checks what can be checked of a spec without the JobManager.
pub fn check(spec: &DeploymentSpec) -> Result<(), String> {
    check_name(&spec.name)?;
    if let Some(dir) = &spec.savepoint_dir
        && !std::path::Path::new(dir).is_absolute()
    {
        return Err(format!("savepointDir must be an absolute path, got {dir:?}"));
    }
    let needs_savepoints =
        matches!(spec.upgrade_strategy, UpgradeStrategy::Stateful | UpgradeStrategy::Live) || spec.state == DesiredState::Suspended;
    if needs_savepoints && (spec.savepoint_dir.is_none() || spec.template.checkpoint_interval_ms.is_none()) {
        return Err("STATEFUL and LIVE upgrades and SUSPENDED take savepoints or checkpoints: give savepointDir and template.checkpointIntervalMs (or upgradeStrategy STATELESS or NONE)".into());
    }
    Ok(())
}

impl Controller {
    /// A new Deployment; with RUNNING wanted, it submits its first Job.
    pub fn create(spec: DeploymentSpec, id: String, now: SystemTime) -> Result<(Self, Vec<Command>), String> {
        check(&spec)?;
        let record = Record {
            id,
            created: now,
            resource_version: 1,
            spec: Version { version: 1, spec },
            next_version: 2,
            last_good: None,
            phase: Phase::Idle,
            settled: DeploymentState::Transitioning,
            latest_savepoint: None,
            savepoints: 0,
            message: None,
            jobs: vec![],
            latest_checkpoint_of: None,
        };
        let mut c = Self { record };
        let commands = c.reconcile();
        Ok((c, commands))
    }

    /// A Deployment read back after a JobManager restart.
    pub fn from_record(record: Record) -> Self {
        Self { record }
    }

    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Applies a new spec: a changed template or strategy is a new version, taken by
    /// the upgrade strategy; a changed desired state acts as [`Self::set_state`].
    pub fn apply(&mut self, spec: DeploymentSpec) -> Result<Vec<Command>, String> {
        check(&spec)?;
        if spec.name != self.record.spec.spec.name {
            return Err(format!("this is deployment {:?}, not {:?}", self.record.spec.spec.name, spec.name));
        }
        let current = &self.record.spec.spec;
        let changed = DeploymentSpec { state: current.state, ..spec.clone() } != *current;
        if changed {
            self.record.spec = Version { version: self.record.next_version, spec: spec.clone() };
            self.record.next_version += 1;
            self.record.message = None;
        }
        if changed || spec.state != self.record.spec.spec.state {
            self.record.spec.spec.state = spec.state;
            self.unhold();
        }
        Ok(self.changed(|c| c.reconcile()))
    }

    /// Changes the desired state only (suspend, resume, cancel).
    pub fn set_state(&mut self, state: DesiredState) -> Result<Vec<Command>, String> {
        let spec = DeploymentSpec { state, ..self.record.spec.spec.clone() };
        check(&spec)?;
        self.record.spec.spec.state = state;
        self.unhold();
        Ok(self.changed(|c| c.reconcile()))
    }

    /// Whether the Deployment may be deleted: only without a Job.
    pub fn deletable(&self) -> Result<(), String> {
        match self.record.phase {
            Phase::Idle => Ok(()),
            _ => Err(format!("deployment {} has a job: suspend or cancel it first", self.record.spec.spec.name)),
        }
    }

    /// Feeds one event.
    pub fn on(&mut self, event: Event) -> Vec<Command> {
        self.changed(|c| c.handle(event))
    }

    /// Takes up after a JobManager restart: a submit in flight is retried (the service
    /// first looks for the Job it may have created and feeds it as
    /// [`Event::Submitted`]), a cancel is repeated, an idle Deployment reconciled. A stop
    /// in flight is the service's to look at ([`Event::StopInterrupted`]).
    pub fn recover(&mut self) -> Vec<Command> {
        self.changed(|c| match c.record.phase.clone() {
            Phase::Submitting { from, .. } => vec![c.submit_command(&from)],
            Phase::Cancelling { job, .. } => vec![Command::Cancel { job }],
            // The service answers at once if the Job already runs the component.
            Phase::Swapping { job, .. } => vec![c.swap_command(job)],
            Phase::Idle => c.reconcile(),
            Phase::Running { .. } | Phase::Stopping { .. } => vec![],
        })
    }

    /// The current Job, with the version it runs, if any.
    pub fn current_job(&self) -> Option<&str> {
        match &self.record.phase {
            Phase::Running { job, .. } | Phase::Stopping { job, .. } | Phase::Cancelling { job, .. } | Phase::Swapping { job, .. } => Some(job),
            Phase::Idle | Phase::Submitting { .. } => None,
        }
    }

    /// What users see the Deployment doing.
    pub fn state(&self) -> DeploymentState {
        match &self.record.phase {
            Phase::Idle => self.record.settled,
            Phase::Running { good: true, version, .. } if *version == self.record.spec.version => DeploymentState::Running,
            Phase::Running { good: true, .. } if self.record.spec.spec.upgrade_strategy == UpgradeStrategy::None => DeploymentState::Running,
            _ => DeploymentState::Transitioning,
        }
    }

    /// Runs `f` and bumps the resource version if the record changed.
    fn changed(&mut self, f: impl FnOnce(&mut Self) -> Vec<Command>) -> Vec<Command> {
        let before = self.record.clone();
        let commands = f(self);
        if self.record != before {
            self.record.resource_version = before.resource_version + 1;
        }
        commands
    }

    /// A user acted: FAILED or FINISHED no longer hold the Deployment idle.
    fn unhold(&mut self) {
        if matches!(self.record.settled, DeploymentState::Failed | DeploymentState::Finished) {
            self.record.settled = DeploymentState::Transitioning;
        }
    }

    fn desired(&self) -> DesiredState {
        self.record.spec.spec.state
    }

    /// Brings the Deployment towards its desired state and spec from a settled phase.
    fn reconcile(&mut self) -> Vec<Command> {
        let spec = &self.record.spec;
        match self.record.phase.clone() {
            Phase::Idle => match self.desired() {
                DesiredState::Running if matches!(self.record.settled, DeploymentState::Failed | DeploymentState::Finished) => vec![],
                DesiredState::Running => {
                    let savepoint = || self.record.latest_savepoint.clone().map(Restore::Savepoint);
                    let from = match spec.spec.restore_strategy {
                        RestoreStrategy::None => None,
                        RestoreStrategy::LatestSavepoint => savepoint(),
                        RestoreStrategy::LatestState => self.record.latest_checkpoint_of.clone().map(Restore::CheckpointOf).or_else(savepoint),
                    };
                    self.submit(from.or_else(|| Restore::of_template(&spec.spec.template)))
                }
                DesiredState::Suspended => self.settle(DeploymentState::Suspended),
                DesiredState::Cancelled => self.settle(DeploymentState::Cancelled),
            },
            // A stop waits until the Job runs and checkpointed (a savepoint needs it);
            // the poll that sees it so reconciles again.
            Phase::Running { job, version, from, good } => match self.desired() {
                DesiredState::Suspended if good => self.stop(job, version, from),
                DesiredState::Suspended => vec![],
                DesiredState::Cancelled => self.cancel(job, Then::Settle(DeploymentState::Cancelled)),
                DesiredState::Running if version != spec.version => match spec.spec.upgrade_strategy {
                    UpgradeStrategy::Live if good && self.swappable(version) => {
                        self.record.phase = Phase::Swapping { job: job.clone(), version, from, to: spec.version };
                        vec![self.swap_command(job)]
                    }
                    UpgradeStrategy::Stateful | UpgradeStrategy::Live if good => self.stop(job, version, from),
                    UpgradeStrategy::Stateful | UpgradeStrategy::Live => vec![],
                    UpgradeStrategy::Stateless => self.cancel(job, Then::Submit(None)),
                    UpgradeStrategy::None => vec![],
                },
                DesiredState::Running => vec![],
            },
            // Transitions in flight end in a phase that reconciles again.
            Phase::Submitting { .. } | Phase::Stopping { .. } | Phase::Cancelling { .. } | Phase::Swapping { .. } => vec![],
        }
    }

    /// Whether the running Job's spec (`version`, the last good one) differs from the
    /// current spec in the template's component alone, or in its manifest's components
    /// alone (the same manifest): that a live swap can take.
    fn swappable(&self, version: u64) -> bool {
        let Some(good) = self.record.last_good.as_ref().filter(|g| g.version == version) else { return false };
        let (old, new) = (&good.spec.template, &self.record.spec.spec.template);
        let component = new.artifact.is_some() && old.artifact.is_some() && SubmitSpec { artifact: new.artifact.clone(), ..old.clone() } == *new;
        let manifest = new.manifest.is_some() && SubmitSpec { components: new.components.clone(), ..old.clone() } == *new;
        component || manifest
    }

    /// A swap to the current spec: its component, or the manifest components that
    /// differ from the last good version's (all of them if that is unknown).
    fn swap_command(&self, job: String) -> Command {
        let new = &self.record.spec.spec.template;
        let to = match &new.artifact {
            Some(artifact) => SwapTarget::Artifact(artifact.clone()),
            None => {
                let old = self.record.last_good.as_ref().map(|g| &g.spec.template.components);
                let changed = new.components.iter().filter(|(name, id)| old.is_none_or(|o| o.get(*name) != Some(*id)));
                SwapTarget::Components(changed.map(|(name, id)| (name.clone(), id.clone())).collect())
            }
        };
        Command::Swap { job, to }
    }

    fn settle(&mut self, state: DeploymentState) -> Vec<Command> {
        self.record.phase = Phase::Idle;
        self.record.settled = state;
        vec![]
    }

    /// The current spec's Job template, starting from `from`.
    pub fn template(&self, from: &Option<Restore>) -> SubmitSpec {
        SubmitSpec {
            from_savepoint: Restore::savepoint(from),
            from_checkpoint_of: Restore::checkpoint_of(from),
            ..self.record.spec.spec.template.clone()
        }
    }

    fn submit_command(&self, from: &Option<Restore>) -> Command {
        Command::Submit { version: self.record.spec.version, template: self.template(from) }
    }

    fn submit(&mut self, from: Option<Restore>) -> Vec<Command> {
        let command = self.submit_command(&from);
        self.record.phase = Phase::Submitting { version: self.record.spec.version, from };
        vec![command]
    }

    fn stop(&mut self, job: String, version: u64, from: Option<Restore>) -> Vec<Command> {
        let Some(root) = self.record.spec.spec.savepoint_dir.clone() else {
            // `check` refuses such specs; one from an older record just cancels.
            return self.cancel(job, Then::Settle(DeploymentState::Cancelled));
        };
        self.record.savepoints += 1;
        let dir = format!("{}/{}-{}/sp-{}", root.trim_end_matches('/'), self.record.spec.spec.name, self.record.id, self.record.savepoints);
        self.record.phase = Phase::Stopping { job: job.clone(), version, from, dir: dir.clone() };
        vec![Command::Stop { job, dir }]
    }

    fn cancel(&mut self, job: String, then: Then) -> Vec<Command> {
        self.record.phase = Phase::Cancelling { job: job.clone(), then };
        vec![Command::Cancel { job }]
    }

    fn handle(&mut self, event: Event) -> Vec<Command> {
        match (self.record.phase.clone(), event) {
            (Phase::Submitting { version, from }, Event::Submitted { version: v, result }) if v == version => match result {
                Ok(job) => {
                    self.record.jobs.insert(0, job_entry(job.clone(), version, &from));
                    self.record.phase = Phase::Running { job, version, from, good: false };
                    self.reconcile()
                }
                Err(e) => self.failed(None, version, from, format!("its job was refused: {e}")),
            },
            (Phase::Running { job, version, from, good }, Event::Job { job: j, seen }) if j == job => match seen {
                Seen::Alive { ready: true, failure: None } if !good => {
                    self.record.phase = Phase::Running { job, version, from, good: true };
                    if version == self.record.spec.version {
                        self.record.last_good = Some(self.record.spec.clone());
                    }
                    self.reconcile()
                }
                Seen::Alive { ready: true, .. } => self.reconcile(),
                Seen::Alive { failure: Some(e), .. } if !good => self.failed(Some(job), version, from, e),
                Seen::Alive { .. } => vec![],
                Seen::Ended { finished: true, .. } => {
                    self.record.message = Some(format!("job {job} finished"));
                    self.settle(DeploymentState::Finished)
                }
                Seen::Ended { error, .. } if !good => self.failed(None, version, from, error.unwrap_or_else(|| "it was cancelled".into())),
                Seen::Ended { error, .. } => {
                    let why = error.unwrap_or_else(|| "cancelled outside the deployment".into());
                    self.record.message = Some(format!("job {job} ended: {why}"));
                    // It completed a checkpoint since it started: its retained ones are
                    // newer than any savepoint the Deployment took.
                    self.record.latest_checkpoint_of = Some(job);
                    self.settle(DeploymentState::Failed)
                }
                Seen::Unknown => {
                    self.record.message = Some(format!("job {job} is gone"));
                    self.settle(DeploymentState::Failed)
                }
            },
            (Phase::Stopping { job, version, from, dir }, Event::Stopped { job: j, result }) if j == job => match result {
                Ok(()) => self.stopped(dir),
                Err(e) => {
                    // The Job goes on: a failed upgrade or suspend leaves it as it ran.
                    self.record.phase = Phase::Running { job: job.clone(), version, from, good: true };
                    self.record.message = Some(format!("cannot stop job {job} with a savepoint, it goes on: {e}"));
                    self.roll_back_spec(version);
                    self.record.spec.spec.state = DesiredState::Running;
                    vec![]
                }
            },
            (Phase::Stopping { job, version, from, dir }, Event::StopInterrupted { job: j, seen, written }) if j == job => match seen {
                // Resumed by the JobManager's job failover: its state moves on past the
                // savepoint (if any was written), so ask again once it runs.
                Seen::Alive { ready, .. } => {
                    self.record.phase = Phase::Running { job: job.clone(), version, from, good: true };
                    if ready { self.reconcile() } else { vec![] }
                }
                Seen::Ended { .. } if written => self.stopped(dir),
                seen => {
                    self.record.phase = Phase::Running { job: job.clone(), version, from, good: true };
                    self.handle(Event::Job { job, seen })
                }
            },
            (Phase::Swapping { job, version, from, to }, Event::Swapped { job: j, result }) if j == job => match result {
                Ok(()) => {
                    if let Some(j) = self.record.jobs.iter_mut().find(|d| d.job_id == job) {
                        j.spec_version = to;
                    }
                    self.record.phase = Phase::Running { job, version: to, from, good: true };
                    if to == self.record.spec.version {
                        self.record.last_good = Some(self.record.spec.clone());
                    }
                    self.reconcile()
                }
                Err(e) => {
                    // Refused before anything changed: the Job runs on the old version.
                    self.record.phase = Phase::Running { job: job.clone(), version, from, good: true };
                    self.record.message =
                        Some(format!("spec version {to} could not be swapped into job {job}, which runs on version {version}: {e}"));
                    self.roll_back_spec(version);
                    vec![]
                }
            },
            // A Job seen ending while it swaps: handled as when it runs.
            (Phase::Swapping { job, version, from, .. }, Event::Job { job: j, seen })
                if j == job && matches!(seen, Seen::Ended { .. } | Seen::Unknown) =>
            {
                self.record.phase = Phase::Running { job: job.clone(), version, from, good: true };
                self.handle(Event::Job { job, seen })
            }
            (Phase::Cancelling { job, then }, Event::Job { job: j, seen }) if j == job => match seen {
                Seen::Alive { .. } => vec![],
                Seen::Ended { .. } | Seen::Unknown => match then {
                    Then::Settle(state) => self.settle(state),
                    Then::Submit(from) => self.submit(from),
                },
            },
            // Late answers about earlier phases.
            _ => vec![],
        }
    }

    /// The stop's savepoint is written and its Job ended.
    fn stopped(&mut self, dir: String) -> Vec<Command> {
        self.record.latest_savepoint = Some(dir.clone());
        self.record.latest_checkpoint_of = None;
        match self.desired() {
            DesiredState::Running => self.submit(Some(Restore::Savepoint(dir))),
            DesiredState::Suspended => self.settle(DeploymentState::Suspended),
            DesiredState::Cancelled => self.settle(DeploymentState::Cancelled),
        }
    }

    /// A Job of `version` failed before it was good (`job` if it still runs): roll
    /// back to the last good version from the same savepoint, or fail.
    fn failed(&mut self, job: Option<String>, version: u64, from: Option<Restore>, error: String) -> Vec<Command> {
        let then = match self.record.last_good.clone().filter(|g| g.version != version) {
            Some(good) => {
                self.record.message = Some(format!("spec version {version} failed, rolled back to version {}: {error}", good.version));
                let state = self.record.spec.spec.state;
                self.record.spec = good;
                self.record.spec.spec.state = state;
                Then::Submit(from)
            }
            None => {
                self.record.message = Some(format!("spec version {version} failed: {error}"));
                Then::Settle(DeploymentState::Failed)
            }
        };
        match (job, then) {
            (Some(job), then) => self.cancel(job, then),
            (None, Then::Submit(from)) => self.submit(from),
            (None, Then::Settle(state)) => self.settle(state),
        }
    }

    /// Back to the spec `version` runs, if it is the last good one.
    fn roll_back_spec(&mut self, version: u64) {
        if let Some(good) = self.record.last_good.clone().filter(|g| g.version == version && version != self.record.spec.version) {
            self.record.spec = good;
        }
    }
}
