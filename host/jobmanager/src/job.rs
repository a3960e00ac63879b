//! One job of a `weir jobmanager` that has not ended: its [`Driver`] plus what users
//! see of it (its Job resource, events, checkpoint log, metrics), and the savepoint
//! callers waiting for an answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::oneshot;
use weir_checkpoint::{DirStorage, JobCheckpoints};
use weir_types::deployment::{CheckpointConfig, JobReport, JobStatus};
use weir_types::ids::JobId;
use weir_types::resource::JobResource;

use crate::driver::Driver;
use crate::model::{
    ApiError, CHECKPOINTS_KEPT, CheckpointRecord, CheckpointStatus, EVENTS_KEPT, EndedJob, EventLevel, JobEvent, JobInfo, JobMetrics, SubmitSpec,
    push_bounded,
};
use crate::registry::Registry;

/// A job that has not ended.
pub(crate) struct Job {
    pub(crate) driver: Driver,
    /// The bytes of each component in the deployment's code, by index.
    pub(crate) components: Vec<Arc<Vec<u8>>>,
    /// A live swap's components under way, by hash: shipped to TaskManagers that ask,
    /// and the job's once the swap completes.
    pub(crate) swap_components: Vec<(weir_types::ids::ComponentHash, Arc<Vec<u8>>)>,
    pub(crate) store: Option<Arc<JobCheckpoints>>,
    /// The Job resource (seed 002) tracking this job's lifecycle.
    resource: JobResource,
    /// As submitted.
    pub(crate) spec: SubmitSpec,
    pub(crate) created: SystemTime,
    /// What happened to the job, for users (`weir logs`).
    pub(crate) events: VecDeque<JobEvent>,
    /// Recent checkpoints, oldest first.
    pub(crate) checkpoint_log: VecDeque<CheckpointRecord>,
    pub(crate) checkpoints_completed: u64,
    pub(crate) checkpoints_failed: u64,
    /// Savepoint callers waiting, by request.
    replies: HashMap<u64, oneshot::Sender<Result<u64, String>>>,
    next_request: u64,
}

impl Job {
    pub(crate) fn new(driver: Driver, components: Vec<Arc<Vec<u8>>>, spec: SubmitSpec, created: SystemTime) -> Self {
        let store = driver.deployment().checkpoints.as_ref().and_then(|c| checkpoint_store(c, &driver.deployment().job).ok());
        Self {
            driver,
            components,
            swap_components: Vec::new(),
            store,
            resource: JobResource::new(SystemTime::now()),
            spec,
            created,
            events: VecDeque::new(),
            checkpoint_log: VecDeque::new(),
            checkpoints_completed: 0,
            checkpoints_failed: 0,
            replies: HashMap::new(),
            next_request: 0,
        }
    }

    pub(crate) fn id(&self) -> &JobId {
        &self.driver.deployment().job
    }

    /// The job's report now, after bringing its Job resource up to date.
    pub(crate) fn report(&mut self, now: Instant) -> JobReport {
        let mut r = self.driver.report(now);
        // Between an attempt's end and the driver's decision nothing is terminal yet.
        let status = if !self.driver.is_ended() && r.status.is_terminal() { JobStatus::Restarting } else { r.status };
        self.resource.observe(status, r.restarts, r.error.as_deref(), self.driver.terminating(), SystemTime::now());
        r.resource = Some(self.resource.clone());
        r
    }

    /// The job as users see it.
    pub(crate) fn info(&mut self, now: Instant) -> JobInfo {
        let report = self.report(now);
        JobInfo {
            id: report.id.clone(),
            name: report.name.clone(),
            created: self.created,
            spec: self.spec.clone(),
            resource: self.resource.clone(),
            report,
            deployment: None,
        }
    }

    /// Live metrics; TaskManagers named through the registry.
    pub(crate) fn metrics(&self, registry: &Registry) -> JobMetrics {
        let tracker = self.driver.tracker();
        let taskmanagers = self.driver.taskmanagers().iter().map(|id| registry.name(*id).unwrap_or("?").to_string()).collect();
        JobMetrics {
            status: tracker.status(),
            graph: tracker.graph().clone(),
            subtasks: tracker.subtasks(),
            taskmanagers,
            fuel_failed_attempts: self.driver.failed_fuel().to_vec(),
        }
    }

    /// The job as it ended, for the history.
    pub(crate) fn ended(&mut self, registry: &Registry) -> EndedJob {
        EndedJob {
            info: self.info(Instant::now()),
            events: self.events.iter().cloned().collect(),
            checkpoints: self.checkpoint_log.iter().cloned().collect(),
            metrics: self.metrics(registry),
            checkpoints_completed: self.checkpoints_completed,
            checkpoints_failed: self.checkpoints_failed,
        }
    }

    /// Records an event for users and logs it.
    pub(crate) fn event(&mut self, level: EventLevel, message: String) {
        let job = self.id();
        match level {
            EventLevel::Info => tracing::info!(%job, "{message}"),
            EventLevel::Warn => tracing::warn!(%job, "{message}"),
            EventLevel::Error => tracing::error!(%job, "{message}"),
        }
        push_bounded(&mut self.events, JobEvent { at: SystemTime::now(), level, message }, EVENTS_KEPT);
    }

    /// Updates (or adds) checkpoint `id` in the job's log.
    pub(crate) fn checkpoint_event(&mut self, id: u64, status: CheckpointStatus, size_bytes: Option<u64>, failure: Option<String>) {
        let now = SystemTime::now();
        match self.checkpoint_log.iter_mut().rev().find(|c| c.id == id) {
            Some(c) if c.status == CheckpointStatus::InProgress => {
                c.status = status;
                c.duration_ms = now.duration_since(c.triggered).ok().map(|d| d.as_millis() as u64);
                c.size_bytes = size_bytes;
                c.failure = failure;
            }
            // A later attempt triggers again an id that never completed: a new entry.
            Some(_) if status != CheckpointStatus::InProgress => return,
            _ => push_bounded(
                &mut self.checkpoint_log,
                CheckpointRecord { id, status, triggered: now, duration_ms: None, size_bytes, failure },
                CHECKPOINTS_KEPT,
            ),
        }
        match status {
            CheckpointStatus::Completed => self.checkpoints_completed += 1,
            CheckpointStatus::Failed => self.checkpoints_failed += 1,
            CheckpointStatus::InProgress => {}
        }
    }

    /// Keeps a savepoint caller's reply channel; the request id the driver answers to.
    pub(crate) fn await_reply(&mut self, reply: oneshot::Sender<Result<u64, String>>) -> u64 {
        let request = self.next_request;
        self.next_request += 1;
        self.replies.insert(request, reply);
        request
    }

    /// Answers the savepoint caller waiting on `request`, if it still waits.
    pub(crate) fn reply(&mut self, request: u64, result: Result<u64, String>) {
        if let Some(reply) = self.replies.remove(&request) {
            let _ = reply.send(result);
        }
    }

    /// The driver ended the job: its components' bytes go, and users hear how it ended.
    pub(crate) fn end(&mut self) {
        self.components = vec![];
        let report = self.report(Instant::now());
        let error = report.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
        let level = if report.status == JobStatus::Failed { EventLevel::Error } else { EventLevel::Info };
        let state = self.resource.state.name();
        self.event(level, format!("job ended {} ({state}){error}", report.status.name()));
    }

    /// Fails every checkpoint still in progress (its attempt ended).
    pub(crate) fn abandon_checkpoints(&mut self, why: &str) {
        let open: Vec<u64> = self.checkpoint_log.iter().filter(|c| c.status == CheckpointStatus::InProgress).map(|c| c.id).collect();
        for id in open {
            self.checkpoint_event(id, CheckpointStatus::Failed, None, Some(why.to_string()));
        }
    }
}

pub(crate) fn checkpoint_store(c: &CheckpointConfig, job: &JobId) -> Result<Arc<JobCheckpoints>, ApiError> {
    let storage = DirStorage::new(&c.dir).map_err(|e| ApiError::Internal(format!("checkpoint storage {}: {e}", c.dir)))?;
    Ok(Arc::new(JobCheckpoints::new(Arc::new(storage), job)))
}
