//! Tenants, their API tokens and quotas, and who owns what (issue 19).
//!
//! The cluster's own api token (`weir cluster-init`) is the admin: it sees everything
//! and manages tenants. A tenant's token is 32 random bytes, shown once; only its
//! SHA-256 is kept, and a presented token is found by the hash of what was presented
//! (a map lookup on a hash says nothing about how much of a token matched). Jobs,
//! artifacts and savepoints a tenant makes are recorded as its own here; what has no
//! owner is the admin's. The book is one small JSON file in the checkpoint storage
//! (`_tenants/book.json`, written atomically), so tenants, tokens and ownership
//! survive a JobManager restart; without a checkpoint directory it lives in memory.
//!
//! Pure but for that file: times are passed in (milliseconds since the epoch), so
//! expiry is unit-tested without waiting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weir_checkpoint::{CheckpointStorage, DirStorage};
use weir_control::protocol::FuelRate;
use weir_types::access::Capabilities;
use weir_types::ids::{JobId, TaskManagerId};

use crate::model::ApiError;

/// Where the book lives in the checkpoint storage.
const BOOK: &str = "_tenants/book.json";

/// Who is asking: the cluster's admin (its own api token) or a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The cluster's api token: everything, and tenant management.
    Admin,
    /// A tenant's token: its own jobs, artifacts and savepoints only.
    Tenant(String),
}

impl Caller {
    /// The owner recorded for what this caller makes (`None`: the admin's).
    pub fn owner(&self) -> Option<&str> {
        match self {
            Caller::Admin => None,
            Caller::Tenant(t) => Some(t),
        }
    }

    /// Whether the caller may see something owned by `owner`.
    pub fn sees(&self, owner: Option<&str>) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Tenant(t) => owner == Some(t.as_str()),
        }
    }
}

/// What a tenant may hold at once; `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Slots its running jobs take together.
    pub slots: Option<u32>,
    /// Jobs that have not ended.
    pub running_jobs: Option<u32>,
    /// Bytes of its artifacts still stored.
    pub artifact_bytes: Option<u64>,
    /// Fuel per second its subtasks burn together: past it they wait (throttled on
    /// the TaskManagers), never fail.
    #[serde(default)]
    pub fuel_per_second: Option<u64>,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Its name, the id in every route.
    pub name: String,
    /// When it was created (ms since the epoch).
    pub created_ms: u64,
    /// Its limits.
    pub quota: Quota,
    /// The WASI capabilities its jobs' guests get (none unless an admin grants them).
    #[serde(default)]
    pub grants: Capabilities,
    /// Hosts its jobs' connectors may reach: `host` (any port) or `host:port`; none
    /// unless an admin allows them.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Directories its jobs' files (sources, sinks, savepoints) lie under, each
    /// under a cluster `--data-root`; none unless an admin grants them.
    #[serde(default)]
    pub roots: Vec<String>,
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Public id, for listing and revoking.
    pub id: String,
    /// Whose it is.
    pub tenant: String,
    /// When it was issued (ms since the epoch).
    pub created_ms: u64,
    /// When it stops working, if ever (ms since the epoch).
    pub expires_ms: Option<u64>,
    /// Revoked tokens stay listed.
    pub revoked: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredToken {
    info: TokenInfo,
    /// SHA-256 of the token, hex.
    sha256: String,
}

/// What is persisted.
#[derive(Default, Clone, Serialize, Deserialize)]
struct Book {
    tenants: BTreeMap<String, Tenant>,
    tokens: BTreeMap<String, StoredToken>,
    /// Owner of each tenant's job (the admin's jobs are not listed).
    jobs: BTreeMap<JobId, String>,
    /// Tenants that uploaded each artifact (content-addressed: several may).
    artifacts: BTreeMap<String, BTreeSet<String>>,
    /// Owner of each savepoint a tenant took, by its resolved directory.
    savepoints: BTreeMap<String, String>,
    /// Fuel (all, of failed attempts) of each tenant's jobs that left the history:
    /// billed work must not shrink when old jobs are forgotten.
    #[serde(default)]
    fuel: BTreeMap<String, (u64, u64)>,
}

/// Why a presented token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No token has this hash.
    Unknown,
    /// Revoked by an admin.
    Revoked,
    /// Past its expiry.
    Expired,
}

/// Tenants, tokens and ownership, with their file.
pub(crate) struct Tenants {
    book: Book,
    /// Token id by hash.
    by_hash: HashMap<String, String>,
    storage: Option<DirStorage>,
}

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `n` random bytes from the kernel, hex.
fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| ApiError::Internal(format!("cannot read random bytes for a token: {e}")))?;
    Ok(hex::encode(bytes))
}

/// A tenant name: lower-case letters, digits and `-`, 1 to 40, starting with a letter
/// (it goes into paths and label values as it is).
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    match ok {
        true => Ok(()),
        false => Err(ApiError::BadRequest(format!("tenant name must be 1 to 40 of a-z, 0-9 and -, starting with a letter; got {name:?}"))),
    }
}

fn unknown_tenant(name: &str) -> ApiError {
    ApiError::NotFound(format!("no tenant {name:?}"))
}

/// Each TaskManager's share of the tenants' fuel rates: a tenant's rate times its
/// subtasks on that TaskManager over all its running subtasks (at least 1 fuel per
/// second: 0 would read as unlimited). `hosts` has one entry per running subtask of a
/// tenant with a rate: its tenant, job and TaskManager.
pub(crate) fn fuel_shares<'a>(
    rates: &HashMap<&str, u64>,
    hosts: impl IntoIterator<Item = (&'a str, &'a JobId, TaskManagerId)>,
) -> BTreeMap<TaskManagerId, Vec<FuelRate>> {
    // tenant -> TaskManager -> (subtasks, jobs)
    let mut per: BTreeMap<&str, BTreeMap<TaskManagerId, (u64, BTreeSet<&JobId>)>> = BTreeMap::new();
    for (tenant, job, tm) in hosts {
        let here = per.entry(tenant).or_default().entry(tm).or_default();
        here.0 += 1;
        here.1.insert(job);
    }
    let mut out: BTreeMap<TaskManagerId, Vec<FuelRate>> = BTreeMap::new();
    for (tenant, tms) in per {
        let Some(&rate) = rates.get(tenant) else { continue };
        let all: u64 = tms.values().map(|(n, _)| n).sum();
        for (tm, (n, jobs)) in tms {
            let share = (u128::from(rate) * u128::from(n) / u128::from(all.max(1))).max(1) as u64;
            out.entry(tm).or_default().push(FuelRate {
                tenant: tenant.to_string(),
                fuel_per_second: share,
                jobs: jobs.into_iter().cloned().collect(),
            });
        }
    }
    out
}

impl Tenants {
    /// The book in `checkpoint_dir` (empty if there is none yet); in memory only
    /// without a directory.
    pub(crate) fn open(checkpoint_dir: Option<&str>) -> Result<Self, String> {
        let storage = checkpoint_dir.map(DirStorage::new).transpose().map_err(|e| format!("cannot open the checkpoint storage for tenants: {e}"))?;
        let book = match &storage {
            None => Book::default(),
            Some(s) => match s.read(BOOK) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("unreadable tenant book {BOOK}: {e}"))?,
                Err(weir_checkpoint::StorageError::NotFound { .. }) => Book::default(),
                Err(e) => return Err(format!("cannot read the tenant book: {e}")),
            },
        };
        let by_hash = book.tokens.values().map(|t| (t.sha256.clone(), t.info.id.clone())).collect();
        Ok(Self { book, by_hash, storage })
    }

    /// Writes the book, or keeps the change out of memory: `change` is applied to a
    /// copy, saved, then kept.
    fn commit<T>(&mut self, change: impl FnOnce(&mut Book) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut book = self.book.clone();
        let out = change(&mut book)?;
        if let Some(s) = &self.storage {
            let bytes = serde_json::to_vec_pretty(&book).map_err(|e| ApiError::Internal(format!("cannot encode the tenant book: {e}")))?;
            s.write(BOOK, &bytes).map_err(|e| ApiError::Internal(format!("cannot write the tenant book: {e}")))?;
        }
        self.book = book;
        self.by_hash = self.book.tokens.values().map(|t| (t.sha256.clone(), t.info.id.clone())).collect();
        Ok(out)
    }

    /// The tenant a presented token belongs to.
    pub(crate) fn authenticate(&self, token: &str, now_ms: u64) -> Result<String, Refused> {
        let id = self.by_hash.get(&sha256_hex(token)).ok_or(Refused::Unknown)?;
        let t = self.book.tokens.get(id).ok_or(Refused::Unknown)?;
        if t.info.revoked {
            return Err(Refused::Revoked);
        }
        if t.info.expires_ms.is_some_and(|e| now_ms >= e) {
            return Err(Refused::Expired);
        }
        match self.book.tenants.contains_key(&t.info.tenant) {
            true => Ok(t.info.tenant.clone()),
            false => Err(Refused::Unknown),
        }
    }

    pub(crate) fn create(&mut self, name: &str, quota: Quota, now_ms: u64) -> Result<Tenant, ApiError> {
        check_name(name)?;
        if self.book.tenants.contains_key(name) {
            return Err(ApiError::Conflict(format!("tenant {name:?} exists")));
        }
        let tenant = Tenant { name: name.to_string(), created_ms: now_ms, quota, grants: Capabilities::NONE, hosts: vec![], roots: vec![] };
        self.commit(|b| {
            b.tenants.insert(name.to_string(), tenant.clone());
            Ok(tenant)
        })
    }

    pub(crate) fn list(&self) -> Vec<Tenant> {
        self.book.tenants.values().cloned().collect()
    }

    pub(crate) fn get(&self, name: &str) -> Result<Tenant, ApiError> {
        self.book.tenants.get(name).cloned().ok_or_else(|| unknown_tenant(name))
    }

    pub(crate) fn set_quota(&mut self, name: &str, quota: Quota) -> Result<Tenant, ApiError> {
        self.get(name)?;
        self.commit(|b| {
            let t = b.tenants.get_mut(name).ok_or_else(|| unknown_tenant(name))?;
            t.quota = quota;
            Ok(t.clone())
        })
    }

    pub(crate) fn set_grants(&mut self, name: &str, grants: Capabilities) -> Result<Tenant, ApiError> {
        self.get(name)?;
        self.commit(|b| {
            let t = b.tenants.get_mut(name).ok_or_else(|| unknown_tenant(name))?;
            t.grants = grants;
            Ok(t.clone())
        })
    }

    pub(crate) fn set_hosts(&mut self, name: &str, hosts: Vec<String>) -> Result<Tenant, ApiError> {
        self.get(name)?;
        self.commit(|b| {
            let t = b.tenants.get_mut(name).ok_or_else(|| unknown_tenant(name))?;
            t.hosts = hosts;
            Ok(t.clone())
        })
    }

    pub(crate) fn set_roots(&mut self, name: &str, roots: Vec<String>) -> Result<Tenant, ApiError> {
        self.get(name)?;
        self.commit(|b| {
            let t = b.tenants.get_mut(name).ok_or_else(|| unknown_tenant(name))?;
            t.roots = roots;
            Ok(t.clone())
        })
    }

    /// The roots of `caller`'s files: the cluster's for the admin (`None`), a
    /// tenant's own (none for a tenant that no longer exists).
    pub(crate) fn roots(&self, caller: &Caller) -> Option<Vec<String>> {
        match caller {
            Caller::Admin => None,
            Caller::Tenant(t) => Some(self.book.tenants.get(t).map(|t| t.roots.clone()).unwrap_or_default()),
        }
    }

    /// The hosts `caller`'s connectors may reach: any for the admin (`None`).
    pub(crate) fn hosts(&self, caller: &Caller) -> Option<Vec<String>> {
        match caller {
            Caller::Admin => None,
            Caller::Tenant(t) => Some(self.book.tenants.get(t).map(|t| t.hosts.clone()).unwrap_or_default()),
        }
    }

    /// The capabilities `caller`'s jobs get: everything for the admin, a tenant's
    /// grant (nothing for a tenant that no longer exists).
    pub(crate) fn capabilities(&self, caller: &Caller) -> Capabilities {
        match caller {
            Caller::Admin => Capabilities::ALL,
            Caller::Tenant(t) => self.book.tenants.get(t).map_or(Capabilities::NONE, |t| t.grants),
        }
    }

    /// Issues a token for `tenant`: its info and the token, which is never seen again.
    pub(crate) fn issue(&mut self, tenant: &str, expires_in_ms: Option<u64>, now_ms: u64) -> Result<(TokenInfo, String), ApiError> {
        self.get(tenant)?;
        let token = format!("weir_{}", random_hex(32)?);
        let info = TokenInfo {
            id: random_hex(8)?,
            tenant: tenant.to_string(),
            created_ms: now_ms,
            expires_ms: expires_in_ms.map(|ms| now_ms.saturating_add(ms)),
            revoked: false,
        };
        let stored = StoredToken { info: info.clone(), sha256: sha256_hex(&token) };
        self.commit(|b| {
            b.tokens.insert(info.id.clone(), stored);
            Ok((info, token))
        })
    }

    /// Tokens, of one tenant or all.
    pub(crate) fn tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>, ApiError> {
        if let Some(t) = tenant {
            self.get(t)?;
        }
        Ok(self.book.tokens.values().filter(|t| tenant.is_none_or(|n| t.info.tenant == n)).map(|t| t.info.clone()).collect())
    }

    pub(crate) fn revoke(&mut self, id: &str) -> Result<TokenInfo, ApiError> {
        if !self.book.tokens.contains_key(id) {
            return Err(ApiError::NotFound(format!("no token {id:?}")));
        }
        self.commit(|b| {
            let t = b.tokens.get_mut(id).ok_or_else(|| ApiError::NotFound(format!("no token {id:?}")))?;
            t.info.revoked = true;
            Ok(t.info.clone())
        })
    }

    /// The tenant owning job `id`, `None` for the admin's.
    pub(crate) fn job_owner(&self, id: &JobId) -> Option<&str> {
        self.book.jobs.get(id).map(String::as_str)
    }

    /// Records a tenant's new job (before the job is acknowledged).
    pub(crate) fn own_job(&mut self, id: &JobId, tenant: &str) -> Result<(), ApiError> {
        self.commit(|b| {
            b.jobs.insert(id.clone(), tenant.to_string());
            Ok(())
        })
    }

    /// A job left the history: its ownership goes too (saved with the next change).
    pub(crate) fn forget_job(&mut self, id: &JobId) {
        self.book.jobs.remove(id);
    }

    /// A job leaves the history: its fuel is added to its owner's banked total and its
    /// ownership goes, in one write, so after a crash it is counted in exactly one place
    /// (a history record without an owner is not counted).
    pub(crate) fn bank_job(&mut self, id: &JobId, fuel: (u64, u64)) -> Result<(), ApiError> {
        self.commit(|b| {
            if let Some(owner) = b.jobs.remove(id) {
                let banked = b.fuel.entry(owner).or_default();
                banked.0 += fuel.0;
                banked.1 += fuel.1;
            }
            Ok(())
        })
    }

    /// Tenants with a fuel rate, and the rate.
    pub(crate) fn fuel_rates(&self) -> impl Iterator<Item = (&str, u64)> {
        self.book.tenants.values().filter_map(|t| Some((t.name.as_str(), t.quota.fuel_per_second?)))
    }

    /// Fuel of `tenant`'s jobs that left the history (all, of failed attempts).
    pub(crate) fn banked_fuel(&self, tenant: &str) -> (u64, u64) {
        self.book.fuel.get(tenant).copied().unwrap_or_default()
    }

    /// Whether `caller` may use artifact `id` (the admin may use any).
    pub(crate) fn may_use_artifact(&self, caller: &Caller, id: &str) -> bool {
        match caller {
            Caller::Admin => true,
            Caller::Tenant(t) => self.book.artifacts.get(id).is_some_and(|owners| owners.contains(t)),
        }
    }

    pub(crate) fn own_artifact(&mut self, id: &str, tenant: &str) -> Result<(), ApiError> {
        if self.book.artifacts.get(id).is_some_and(|o| o.contains(tenant)) {
            return Ok(());
        }
        self.commit(|b| {
            b.artifacts.entry(id.to_string()).or_default().insert(tenant.to_string());
            Ok(())
        })
    }

    /// The tenant that took the savepoint in `dir` (resolved), if a tenant did.
    pub(crate) fn savepoint_owner(&self, dir: &str) -> Option<&str> {
        self.book.savepoints.get(dir).map(String::as_str)
    }

    pub(crate) fn own_savepoint(&mut self, dir: &str, tenant: &str) -> Result<(), ApiError> {
        self.commit(|b| {
            b.savepoints.insert(dir.to_string(), tenant.to_string());
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    #[test]
    fn a_token_works_until_it_expires_or_is_revoked_and_only_its_hash_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().display().to_string();
        let mut t = Tenants::open(Some(&root)).expect("open");
        t.create("acme", Quota::default(), 0).expect("create");
        assert_eq!(t.create("acme", Quota::default(), 0).map(|_| ()), Err(ApiError::Conflict("tenant \"acme\" exists".into())));
        assert!(t.create("Bad Name", Quota::default(), 0).is_err());
        let (info, token) = t.issue("acme", Some(DAY), 1000).expect("issue");
        let (forever, other) = t.issue("acme", None, 1000).expect("issue");
        assert_eq!(t.authenticate(&token, 1000 + DAY - 1), Ok("acme".to_string()));
        assert_eq!(t.authenticate(&token, 1000 + DAY), Err(Refused::Expired));
        assert_eq!(t.authenticate(&other, u64::MAX), Ok("acme".to_string()));
        assert_eq!(t.authenticate("weir_0000", 0), Err(Refused::Unknown));
        assert_eq!(t.authenticate(&token[..token.len() - 1], 0), Err(Refused::Unknown));
        t.revoke(&forever.id).expect("revoke");
        assert_eq!(t.authenticate(&other, 0), Err(Refused::Revoked));
        assert!(t.issue("nobody", None, 0).is_err());

        // The file has hashes, never tokens; a new JobManager reads the same book.
        let file = std::fs::read_to_string(dir.path().join(BOOK)).expect("book");
        assert!(!file.contains(&token) && !file.contains(&other) && file.contains(&sha256_hex(&token)), "{file}");
        let again = Tenants::open(Some(&root)).expect("reopen");
        assert_eq!(again.authenticate(&token, 1000), Ok("acme".to_string()));
        assert_eq!(again.authenticate(&other, 0), Err(Refused::Revoked));
        let mut listed = vec![info, TokenInfo { revoked: true, ..forever }];
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(again.tokens(Some("acme")).expect("tokens"), listed, "listed by id");
    }

    #[test]
    fn ownership_decides_what_a_caller_sees() {
        let mut t = Tenants::open(None).expect("open");
        t.create("a", Quota::default(), 0).expect("a");
        t.create("b", Quota::default(), 0).expect("b");
        let job: JobId = "0123456789abcdef".parse().expect("id");
        t.own_job(&job, "a").expect("own");
        let (a, b) = (Caller::Tenant("a".into()), Caller::Tenant("b".into()));
        assert!(a.sees(t.job_owner(&job)) && !b.sees(t.job_owner(&job)) && Caller::Admin.sees(t.job_owner(&job)));
        let admins: JobId = "fedcba9876543210".parse().expect("id");
        assert!(!a.sees(t.job_owner(&admins)) && Caller::Admin.sees(t.job_owner(&admins)));
        t.own_artifact("ff", "a").expect("own");
        assert!(t.may_use_artifact(&a, "ff") && !t.may_use_artifact(&b, "ff") && t.may_use_artifact(&Caller::Admin, "ff"));
        t.own_savepoint("/sp/a", "a").expect("own");
        assert_eq!(t.savepoint_owner("/sp/a"), Some("a"));
        assert_eq!(t.savepoint_owner("/sp/other"), None);
    }

    /// A job leaving the history adds its fuel to its owner's bank once, persisted:
    /// billed work never shrinks, and an admin's job banks nothing.
    #[test]
    fn fuel_of_forgotten_jobs_is_banked_once_per_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().display().to_string();
        let mut t = Tenants::open(Some(&root)).expect("open");
        t.create("a", Quota::default(), 0).expect("a");
        let (j1, j2): (JobId, JobId) = ("0000000000000001".parse().expect("id"), "0000000000000002".parse().expect("id"));
        t.own_job(&j1, "a").expect("own");
        t.bank_job(&j1, (100, 30)).expect("bank");
        t.bank_job(&j1, (100, 30)).expect("a second time: no owner any more");
        t.bank_job(&j2, (7, 0)).expect("the admin's job");
        assert_eq!(t.banked_fuel("a"), (100, 30));
        assert_eq!(t.job_owner(&j1), None);
        assert_eq!(Tenants::open(Some(&root)).expect("reopen").banked_fuel("a"), (100, 30));
    }

    /// A tenant's rate is split over the TaskManagers by where its running subtasks
    /// are; tenants without a rate get none (unlimited).
    #[test]
    fn a_tenants_fuel_rate_is_shared_by_its_subtasks_per_taskmanager() {
        let (j1, j2, j3): (JobId, JobId, JobId) =
            ("0000000000000001".parse().expect("id"), "0000000000000002".parse().expect("id"), "0000000000000003".parse().expect("id"));
        let (tm1, tm2) = (TaskManagerId::new(1), TaskManagerId::new(2));
        let rates = HashMap::from([("a", 900), ("b", 10)]);
        let hosts = [("a", &j1, tm1), ("a", &j1, tm1), ("a", &j2, tm2), ("c", &j3, tm2), ("b", &j3, tm2)];
        let shares = fuel_shares(&rates, hosts);
        let rate = |tenant: &str, fuel_per_second: u64, jobs: &[&JobId]| FuelRate {
            tenant: tenant.into(),
            fuel_per_second,
            jobs: jobs.iter().map(|j| (*j).clone()).collect(),
        };
        assert_eq!(shares.get(&tm1), Some(&vec![rate("a", 600, &[&j1])]));
        assert_eq!(shares.get(&tm2), Some(&vec![rate("a", 300, &[&j2]), rate("b", 10, &[&j3])]));
    }
}
