//! The Deployments of a `weir jobmanager` (issue 17): each a pure
//! [`Controller`] fed here and its commands carried out through the JobManager's own
//! job operations (create a job, stop it with a savepoint, cancel it). Records are
//! written under `_deployments/<name>` in the checkpoint storage after every change and
//! before the commands run, so a restarted JobManager takes up where the last one was
//! ([`JobManager::start_deployments`]). The Jobs are watched by polling: their state
//! and whether they completed a checkpoint become [`Event::Job`]s.
//!
//! Lock order: the deployments' lock is never held while the jobs' state is locked.

use std::time::{Duration, SystemTime};

use weir_checkpoint::{CheckpointStorage, DirStorage, load_savepoint, savepoint_location};
use weir_types::deploy::{Deployment, DeploymentMetadata, DeploymentSpec, DeploymentStatus, DesiredState, JobDeployment};
use weir_types::deployment::JobStatus;

use crate::deployment::{Command, Controller, Event, Phase, Record, Seen, job_entry};
use crate::jobs::lock;
use crate::model::{ApiError, CheckpointStatus, SubmitSpec, SwapTarget};
use crate::planning::new_job_id;
use crate::service::JobManager;

/// Where Deployments are persisted in the checkpoint storage.
const DIR: &str = "_deployments";
/// How often the Deployments' Jobs are looked at.
const POLL: Duration = Duration::from_millis(100);

impl JobManager {
    /// Reads the Deployments a previous JobManager left, takes up their interrupted
    /// transitions, and starts watching their Jobs. Call once, after [`JobManager::start`].
    pub async fn start_deployments(&self) {
        for record in self.load_deployments().await {
            let name = record.spec.spec.name.clone();
            let mut c = Controller::from_record(record);
            let commands = match c.record().phase.clone() {
                Phase::Submitting { version, from } => {
                    let template = c.template(&from);
                    let known: Vec<&str> = c.record().jobs.iter().map(|j| j.job_id.as_str()).collect();
                    // The job the interrupted submit may have created (a job is
                    // persisted before it is acknowledged).
                    let made = self.jobs().into_iter().find(|j| j.spec == template && !known.contains(&j.id.as_str()));
                    match made {
                        Some(j) => c.on(Event::Submitted { version, result: Ok(j.id.to_string()) }),
                        None => c.recover(),
                    }
                }
                Phase::Stopping { job, dir, .. } => {
                    let seen = self.seen(&job);
                    let written = tokio::task::spawn_blocking(move || savepoint_written(&dir)).await.unwrap_or(false);
                    c.on(Event::StopInterrupted { job, seen, written })
                }
                _ => c.recover(),
            };
            tracing::info!(deployment = %name, state = c.state().name(), "deployment taken up");
            self.persist_deployment(&c);
            lock(&self.0.deployments).insert(name.clone(), c);
            self.carry_out(&name, commands);
        }
        let jm = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                let watched: Vec<(String, String)> =
                    lock(&jm.0.deployments).iter().filter_map(|(name, c)| Some((name.clone(), c.current_job()?.to_string()))).collect();
                for (name, job) in watched {
                    let seen = jm.seen(&job);
                    jm.feed(&name, Event::Job { job, seen });
                }
            }
        });
    }

    /// Creates a Deployment or updates it (a new spec version, or a new desired state).
    pub async fn apply_deployment(&self, spec: DeploymentSpec) -> Result<Deployment, ApiError> {
        crate::deployment::check(&spec).map_err(ApiError::BadRequest)?;
        // What a job submission would refuse at once, refused before the Deployment exists.
        let stored: Vec<String> = self.artifacts().into_iter().map(|a| a.id.to_string()).collect();
        for id in spec.template.artifact.iter().chain(spec.template.components.values()) {
            if !stored.contains(id) {
                return Err(ApiError::NotFound(format!("no artifact {id:?} (upload it first)")));
            }
        }
        crate::api::check(&spec.template)?;
        let files = &self.0.config.files;
        let paths = [("savepointDir", &spec.savepoint_dir), ("template.input", &spec.template.input), ("template.output", &spec.template.output)];
        for (what, path) in paths {
            if let Some(path) = path {
                files.check(what, path).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            }
        }
        let name = spec.name.clone();
        let (doc, commands) = {
            let mut table = lock(&self.0.deployments);
            let commands = match table.get_mut(&name) {
                Some(c) => c.apply(spec).map_err(ApiError::BadRequest)?,
                None => {
                    let (c, commands) = Controller::create(spec, new_job_id().to_string(), SystemTime::now()).map_err(ApiError::BadRequest)?;
                    table.insert(name.clone(), c);
                    commands
                }
            };
            let c = table.get(&name).ok_or_else(|| ApiError::Internal("the deployment just applied is gone".into()))?;
            self.persist_deployment(c);
            (document(c), commands)
        };
        self.carry_out(&name, commands);
        Ok(doc)
    }

    /// Every Deployment, by name.
    pub fn deployments(&self) -> Vec<Deployment> {
        lock(&self.0.deployments).values().map(document).collect()
    }

    /// One Deployment.
    pub fn deployment(&self, name: &str) -> Result<Deployment, ApiError> {
        lock(&self.0.deployments).get(name).map(document).ok_or_else(|| unknown(name))
    }

    /// Suspends (`SUSPENDED`), resumes (`RUNNING`) or cancels a Deployment.
    pub fn set_deployment_state(&self, name: &str, state: DesiredState) -> Result<Deployment, ApiError> {
        let (doc, commands) = {
            let mut table = lock(&self.0.deployments);
            let c = table.get_mut(name).ok_or_else(|| unknown(name))?;
            let commands = c.set_state(state).map_err(ApiError::BadRequest)?;
            self.persist_deployment(c);
            (document(c), commands)
        };
        self.carry_out(name, commands);
        Ok(doc)
    }

    /// Deletes a Deployment that has no Job; its Jobs' history and savepoints stay.
    pub fn delete_deployment(&self, name: &str) -> Result<Deployment, ApiError> {
        let mut table = lock(&self.0.deployments);
        let c = table.get(name).ok_or_else(|| unknown(name))?;
        c.deletable().map_err(ApiError::Conflict)?;
        let doc = document(c);
        if let Some(storage) = self.deployment_storage() {
            storage.delete(&format!("{DIR}/{name}")).map_err(|e| ApiError::Internal(format!("cannot delete deployment {name}: {e}")))?;
        }
        table.remove(name);
        Ok(doc)
    }

    /// Sets each job's link to the Deployment that created it. Takes the deployments'
    /// lock, so callers must not hold the jobs' state.
    pub(crate) fn link_deployments(&self, jobs: &mut [crate::model::JobInfo]) {
        let table = lock(&self.0.deployments);
        for info in jobs.iter_mut() {
            info.deployment = table.values().find_map(|c| {
                let r = c.record();
                let ran = r.jobs.iter().find(|j| j.job_id == info.id.as_str())?;
                Some(JobDeployment { name: r.spec.spec.name.clone(), id: r.id.clone(), spec_version: ran.spec_version })
            });
        }
    }

    /// Feeds one event to a Deployment's controller and carries out its commands.
    fn feed(&self, name: &str, event: Event) {
        let commands = {
            let mut table = lock(&self.0.deployments);
            let Some(c) = table.get_mut(name) else { return };
            let before = c.record().resource_version;
            let commands = c.on(event);
            if c.record().resource_version != before {
                tracing::info!(deployment = %name, state = c.state().name(), message = c.record().message.as_deref().unwrap_or(""), "deployment changed");
                self.persist_deployment(c);
            }
            commands
        };
        self.carry_out(name, commands);
    }

    /// Carries out commands on tasks of their own; answers come back through `feed`.
    fn carry_out(&self, name: &str, commands: Vec<Command>) {
        for command in commands {
            let (jm, name) = (self.clone(), name.to_string());
            tokio::spawn(async move {
                match command {
                    Command::Submit { version, template } => {
                        let result = jm.create_job(template).await.map(|j| j.id.to_string()).map_err(|e| e.to_string());
                        if let Err(e) = &result {
                            tracing::warn!(deployment = %name, version, "job refused: {e}");
                        }
                        jm.feed(&name, Event::Submitted { version, result });
                    }
                    Command::Stop { job, dir } => {
                        let result = match crate::api::job_id(&job) {
                            Ok(id) => jm.savepoint(&id, &dir, true).await.map(|_| ()).map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        jm.feed(&name, Event::Stopped { job, result });
                    }
                    Command::Swap { job, to } => {
                        let runs = |spec: &SubmitSpec| match &to {
                            SwapTarget::Artifact(a) => spec.artifact.as_ref() == Some(a),
                            SwapTarget::Components(c) => c.iter().all(|(name, a)| spec.components.get(name) == Some(a)),
                        };
                        let result = match crate::api::job_id(&job) {
                            // Taken up after a JobManager restart: the swap may be done.
                            Ok(id) if jm.job(&id).is_ok_and(|j| runs(&j.spec)) => Ok(()),
                            Ok(id) => jm.swap_to(&id, &to).await.map(|_| ()).map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        if let Err(e) = &result {
                            tracing::warn!(deployment = %name, %job, "live swap refused: {e}");
                        }
                        jm.feed(&name, Event::Swapped { job, result });
                    }
                    Command::Cancel { job } => {
                        // An ended job is refused; its end is seen by polling either way.
                        if let Ok(id) = crate::api::job_id(&job) {
                            let _ = jm.cancel(&id);
                        }
                    }
                }
            });
        }
    }

    /// How a Deployment's Job stands now.
    fn seen(&self, job: &str) -> Seen {
        let Ok(id) = crate::api::job_id(job) else { return Seen::Unknown };
        let Ok(info) = self.job(&id) else { return Seen::Unknown };
        let report = &info.report;
        match report.status {
            JobStatus::Finished => Seen::Ended { finished: true, error: None },
            JobStatus::Failed | JobStatus::Canceled => Seen::Ended { finished: false, error: report.error.clone() },
            status => {
                let checkpointed = info.spec.checkpoint_interval_ms.is_none()
                    || self.checkpoints(&id).is_ok_and(|(log, _)| log.iter().any(|c| c.status == CheckpointStatus::Completed));
                let failure = (report.restarts > 0).then(|| report.error.clone().unwrap_or_else(|| format!("restarted {} times", report.restarts)));
                Seen::Alive { ready: status == JobStatus::Running && checkpointed, failure }
            }
        }
    }

    fn deployment_storage(&self) -> Option<DirStorage> {
        let dir = self.0.config.checkpoint_dir.as_ref()?;
        DirStorage::new(dir).map_err(|e| tracing::error!("checkpoint storage unusable, deployments are not persisted: {e}")).ok()
    }

    /// Writes a Deployment's record (a small file); without a checkpoint directory
    /// Deployments live as long as the JobManager.
    fn persist_deployment(&self, c: &Controller) {
        let Some(storage) = self.deployment_storage() else { return };
        let name = &c.record().spec.spec.name;
        let written = postcard::to_allocvec(c.record())
            .map_err(|e| e.to_string())
            .and_then(|r| storage.write(&format!("{DIR}/{name}"), &r).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::error!(deployment = %name, "cannot persist the deployment (a restarted jobmanager would not know this state): {e}");
        }
    }

    async fn load_deployments(&self) -> Vec<Record> {
        let Some(storage) = self.deployment_storage() else { return vec![] };
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            for name in storage.list(DIR).unwrap_or_default() {
                let read = storage
                    .read(&format!("{DIR}/{name}"))
                    .map_err(|e| e.to_string())
                    .and_then(|r| postcard::from_bytes::<Record>(&r).map_err(|e| e.to_string()));
                match read {
                    Ok(r) => found.push(r),
                    Err(e) => tracing::error!(deployment = %name, "skipping an unreadable deployment record: {e}"),
                }
            }
            found
        })
        .await
        .unwrap_or_default()
    }
}

/// Whether `dir` holds a complete savepoint.
fn savepoint_written(dir: &str) -> bool {
    let Ok((root, name)) = savepoint_location(dir) else { return false };
    DirStorage::new(root).is_ok_and(|storage| load_savepoint(&storage, &name).is_ok())
}

fn unknown(name: &str) -> ApiError {
    ApiError::NotFound(format!("no deployment {name:?}"))
}

/// A Deployment as users see it.
fn document(c: &Controller) -> Deployment {
    let r = c.record();
    let running = c.current_job().and_then(|job| r.jobs.iter().find(|j| j.job_id == job)).cloned().or_else(|| match &r.phase {
        Phase::Submitting { version, from } => Some(job_entry(String::new(), *version, from)),
        _ => None,
    });
    Deployment {
        kind: "Deployment".into(),
        metadata: DeploymentMetadata {
            name: r.spec.spec.name.clone(),
            id: r.id.clone(),
            created_at: humantime::format_rfc3339_millis(r.created).to_string(),
            resource_version: r.resource_version,
        },
        spec: r.spec.spec.clone(),
        status: DeploymentStatus {
            state: c.state(),
            spec_version: r.spec.version,
            running,
            last_good_spec_version: r.last_good.as_ref().map(|g| g.version),
            latest_savepoint: r.latest_savepoint.clone(),
            latest_checkpoint_of: r.latest_checkpoint_of.clone(),
            message: r.message.clone(),
            jobs: r.jobs.clone(),
        },
    }
}
