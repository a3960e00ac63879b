//! The users' operations as a caller may use them (issue 19): a tenant sees and acts
//! on its own jobs, artifacts and savepoints only, and what another tenant (or the
//! admin) owns is answered exactly like what does not exist, so a tenant learns
//! nothing of it. The admin (the cluster's api token) sees everything and manages
//! tenants, their tokens and quotas. The rules themselves are in `tenants`; here they
//! meet the jobs and the artifact store.

use std::time::{SystemTime, UNIX_EPOCH};

use weir_types::access::{AccessError, Capabilities};
use weir_types::ids::JobId;

use crate::api::unknown_job;
use crate::jobs::lock;
use crate::model::{ApiError, ArtifactInfo, JobInfo, SubmitSpec};
use crate::service::JobManager;
use crate::tenants::{Caller, Quota, Refused, Tenant, TokenInfo};

/// What a tenant holds against its quota now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Jobs that have not ended.
    pub running_jobs: u32,
    /// Slots they take.
    pub slots: u32,
    /// Bytes of its artifacts still stored.
    pub artifact_bytes: u64,
    /// Wasm fuel its jobs burned, running and ended, every attempt: the sum of their
    /// jobs' fuel (what hosting bills).
    pub fuel: u64,
    /// Of `fuel`, what attempts that failed burned (work redone after a restart).
    pub fuel_failed_attempts: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl JobManager {
    /// The tenant a presented token (not the admin's) belongs to.
    pub fn authenticate(&self, token: &str) -> Result<Caller, Refused> {
        lock(&self.0.tenants).authenticate(token, now_ms()).map(Caller::Tenant)
    }

    /// The tenant owning job `id` (`None`: the admin's, or no such job).
    pub fn job_owner(&self, id: &JobId) -> Option<String> {
        lock(&self.0.tenants).job_owner(id).map(str::to_string)
    }

    /// Refuses a job `caller` may not see as unknown, word for word.
    pub fn check_job(&self, caller: &Caller, id: &JobId) -> Result<(), ApiError> {
        match caller.sees(lock(&self.0.tenants).job_owner(id)) {
            true => Ok(()),
            false => Err(unknown_job(id.as_str())),
        }
    }

    /// The jobs `caller` sees, newest first.
    pub fn jobs_for(&self, caller: &Caller) -> Vec<JobInfo> {
        let all = self.jobs();
        let tenants = lock(&self.0.tenants);
        all.into_iter().filter(|j| caller.sees(tenants.job_owner(&j.id))).collect()
    }

    /// The artifacts `caller` uploaded (all, for the admin), newest first.
    pub fn artifacts_for(&self, caller: &Caller) -> Vec<ArtifactInfo> {
        let all = self.artifacts();
        let tenants = lock(&self.0.tenants);
        all.into_iter().filter(|a| tenants.may_use_artifact(caller, a.id.as_str())).collect()
    }

    /// [`Self::upload`] for `caller`: the artifact becomes the tenant's too (the same
    /// bytes are stored once), within its quota of artifact bytes.
    pub async fn upload_as(&self, caller: &Caller, wasm: Vec<u8>) -> Result<ArtifactInfo, ApiError> {
        let Some(tenant) = caller.owner() else { return self.upload(wasm).await };
        let max = lock(&self.0.tenants).get(tenant)?.quota.artifact_bytes;
        if let Some(max) = max {
            let used = self.usage(tenant)?.artifact_bytes;
            if used + wasm.len() as u64 > max {
                return Err(ApiError::Conflict(format!(
                    "over quota: the artifact has {} bytes and tenant {tenant}'s stored artifacts take {used} of its quota of {max} artifact bytes",
                    wasm.len()
                )));
            }
        }
        let info = self.upload(wasm).await?;
        lock(&self.0.tenants).own_artifact(info.id.as_str(), tenant)?;
        Ok(info)
    }

    /// A tenant's submission names only its own artifacts and savepoints; others are
    /// refused as missing.
    pub(crate) fn check_sources(&self, caller: &Caller, spec: &SubmitSpec) -> Result<(), ApiError> {
        let Some(tenant) = caller.owner() else { return Ok(()) };
        // Before the tenants' lock: `files` takes it too.
        let files = self.0.files(caller);
        let tenants = lock(&self.0.tenants);
        for id in spec.artifact.iter().chain(spec.components.values()) {
            if !tenants.may_use_artifact(caller, id) {
                return Err(ApiError::NotFound(format!("no artifact {id:?} (upload it first)")));
            }
        }
        if let Some(dir) = &spec.from_savepoint {
            let resolved = files.resolve("fromSavepoint", dir).map(|p| p.display().to_string());
            if resolved.ok().as_deref().and_then(|d| tenants.savepoint_owner(d)) != Some(tenant) {
                return Err(ApiError::NotFound(format!("no savepoint {dir:?} of tenant {tenant}")));
            }
        }
        // Another tenant's job is unknown, word for word.
        if let Some(of) = &spec.from_checkpoint_of {
            let (job, _) = crate::jobs::parse_checkpoint_of(of)?;
            if tenants.job_owner(&job) != Some(tenant) {
                return Err(unknown_job(job.as_str()));
            }
        }
        Ok(())
    }

    /// [`Self::swap_to`] for `caller`: its own job, to its own artifacts.
    pub async fn swap_as(&self, caller: &Caller, id: &JobId, to: &crate::api::SwapTarget) -> Result<u64, ApiError> {
        self.check_job(caller, id)?;
        if caller.owner().is_some() {
            let tenants = lock(&self.0.tenants);
            if let Some(artifact) = to.artifacts().into_iter().find(|a| !tenants.may_use_artifact(caller, a)) {
                return Err(ApiError::NotFound(format!("no artifact {artifact:?} (upload it first)")));
            }
        }
        self.swap_to(id, to).await
    }

    /// [`Self::savepoint`] for `caller`; a tenant's savepoint is recorded as its own
    /// (only its jobs restore from it). Nobody writes into another tenant's savepoint.
    pub async fn savepoint_as(&self, caller: &Caller, id: &JobId, dir: &str, stop: bool) -> Result<u64, ApiError> {
        crate::api::check_savepoint_dir(dir)?;
        self.check_job(caller, id)?;
        let files = self.0.files(caller);
        let resolved = || files.resolve("savepoint dir", dir).map(|p| p.display().to_string()).ok();
        if let Some(d) = resolved()
            && let Some(owner) = lock(&self.0.tenants).savepoint_owner(&d)
            && Some(owner) != caller.owner()
        {
            return Err(ApiError::Conflict(format!("{dir} holds another tenant's savepoint: choose another directory")));
        }
        let checkpoint = self.savepoint_under(&files, id, dir, stop).await?;
        if let Some(tenant) = caller.owner() {
            let d = resolved().ok_or_else(|| ApiError::Internal(format!("the savepoint in {dir} cannot be resolved after writing it")))?;
            lock(&self.0.tenants).own_savepoint(&d, tenant)?;
        }
        Ok(checkpoint)
    }

    /// Creates a tenant (admin) with `grants`.
    pub fn create_tenant(&self, name: &str, quota: Quota, grants: Capabilities) -> Result<Tenant, ApiError> {
        let mut tenants = lock(&self.0.tenants);
        let created = tenants.create(name, quota, now_ms())?;
        match grants == created.grants {
            true => Ok(created),
            // Two writes: lost in between, the tenant exists with fewer grants, never more.
            false => tenants.set_grants(name, grants),
        }
    }

    /// Replaces a tenant's WASI capabilities (admin): jobs submitted from now on get
    /// them; a job already submitted keeps its own, restarts included (they redeploy
    /// the same deployment).
    pub fn set_grants(&self, name: &str, grants: Capabilities) -> Result<Tenant, ApiError> {
        lock(&self.0.tenants).set_grants(name, grants)
    }

    /// Replaces the hosts a tenant's connectors may reach (admin), checked at
    /// submission.
    pub fn set_hosts(&self, name: &str, hosts: Vec<String>) -> Result<Tenant, ApiError> {
        lock(&self.0.tenants).set_hosts(name, hosts)
    }

    /// Replaces the directories a tenant's job files lie under (admin), checked at
    /// submission and savepoint. Each must be absolute and lie under a cluster
    /// `--data-root`, clear of the cluster's own files, symbolic links followed.
    pub fn set_roots(&self, name: &str, roots: Vec<String>) -> Result<Tenant, ApiError> {
        lock(&self.0.tenants).get(name)?;
        for r in &roots {
            let resolved = self.0.config.files.resolve("root", r).map_err(|e| match e {
                AccessError::Outside { path, roots, .. } => {
                    format!("root {path:?} is not under any of the cluster's data roots ({roots}); a tenant's roots lie under a --data-root")
                }
                e => e.to_string(),
            });
            match resolved {
                Ok(p) if p.exists() && !p.is_dir() => return Err(ApiError::BadRequest(format!("root {r:?} is not a directory"))),
                Ok(_) => {}
                Err(e) => return Err(ApiError::BadRequest(format!("invalid roots: {e}"))),
            }
        }
        lock(&self.0.tenants).set_roots(name, roots)
    }

    /// Every tenant (admin).
    pub fn tenants(&self) -> Vec<Tenant> {
        lock(&self.0.tenants).list()
    }

    /// One tenant (admin).
    pub fn tenant(&self, name: &str) -> Result<Tenant, ApiError> {
        lock(&self.0.tenants).get(name)
    }

    /// Replaces a tenant's quota (admin); running jobs keep running, under the new
    /// fuel rate from their next batch on.
    pub fn set_quota(&self, name: &str, quota: Quota) -> Result<Tenant, ApiError> {
        let mut state = lock(&self.0.state);
        let tenant = lock(&self.0.tenants).set_quota(name, quota)?;
        self.0.share_fuel(&mut state);
        Ok(tenant)
    }

    /// Issues a token for `tenant` (admin): its info and the token, shown only now.
    pub fn issue_token(&self, tenant: &str, expires_in_ms: Option<u64>) -> Result<(TokenInfo, String), ApiError> {
        lock(&self.0.tenants).issue(tenant, expires_in_ms, now_ms())
    }

    /// Tokens of a tenant, or of all (admin).
    pub fn tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>, ApiError> {
        lock(&self.0.tenants).tokens(tenant)
    }

    /// Revokes a token (admin): it is refused from the next request on.
    pub fn revoke_token(&self, id: &str) -> Result<TokenInfo, ApiError> {
        lock(&self.0.tenants).revoke(id)
    }

    /// What `tenant` holds against its quota.
    pub fn usage(&self, tenant: &str) -> Result<Usage, ApiError> {
        lock(&self.0.tenants).get(tenant)?;
        let caller = Caller::Tenant(tenant.to_string());
        let mut usage = Usage { artifact_bytes: self.artifacts_for(&caller).iter().map(|a| a.size).sum(), ..Usage::default() };
        let state = lock(&self.0.state);
        let registry = lock(&self.0.registry);
        let tenants = lock(&self.0.tenants);
        let bill = |usage: &mut Usage, (fuel, failed): (u64, u64)| {
            usage.fuel += fuel;
            usage.fuel_failed_attempts += failed;
        };
        bill(&mut usage, tenants.banked_fuel(tenant));
        for (id, j) in &state.jobs {
            if tenants.job_owner(id) == Some(tenant) {
                usage.running_jobs += 1;
                usage.slots += j.driver.deployment().graph.slots_needed();
                bill(&mut usage, j.metrics(&registry).fuel());
            }
        }
        for e in state.ended.iter().filter(|e| tenants.job_owner(&e.info.id) == Some(tenant)) {
            bill(&mut usage, e.metrics.fuel());
        }
        Ok(usage)
    }
}
