//! A tenant's fuel rate on this TaskManager (issue 19): one token bucket per tenant,
//! shared by the tenant's subtasks here. The JobManager sends each TaskManager its
//! share of every tenant's `fuelPerSecond` ([`Throttles::set`]); after each batch a
//! subtask charges the fuel its operators burned since the last charge, and while the
//! bucket is in debt it sleeps (never spins, never fails) before it takes the next
//! batch. A throttled subtask holds its input back, so the backpressure slows its
//! producers: the tenant's job is slower, other tenants' subtasks keep their cores.
//!
//! Only guest fuel is metered: host sources and sinks are never throttled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use weir_types::ids::JobId;

use crate::cancel::Cancel;

/// The longest single sleep: a cancel, or a raised rate, is seen within this.
const NAP: Duration = Duration::from_millis(50);

/// A token bucket of fuel: it fills at `rate` per second up to one second's worth
/// (the burst), each charge takes what was burned, and a bucket below zero is in debt.
#[derive(Debug)]
struct Bucket {
    /// Fuel per second; 0 is unlimited.
    rate: u64,
    /// Fuel available now; negative: owed.
    level: i128,
    /// When `level` was last brought up to date.
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        self.at = now;
        if self.rate == 0 {
            self.level = 0;
            return;
        }
        let added = (self.rate as u128 * elapsed.as_nanos() / 1_000_000_000) as i128;
        self.level = (self.level + added).min(self.rate as i128);
    }

    /// How long until the debt is paid off at the current rate (zero without debt).
    fn debt_wait(&self) -> Duration {
        match (self.level < 0, self.rate) {
            (false, _) | (_, 0) => Duration::ZERO,
            (true, rate) => Duration::from_nanos(((-self.level) as u128 * 1_000_000_000 / rate as u128).min(u64::MAX as u128) as u64),
        }
    }
}

/// One tenant's bucket on this TaskManager and the time its subtasks spent waiting.
#[derive(Debug)]
pub struct FuelGate {
    bucket: Mutex<Bucket>,
    /// Nanoseconds subtasks slept in debt, summed over subtasks.
    throttled_ns: AtomicU64,
}

impl FuelGate {
    fn new(rate: u64, now: Instant) -> Self {
        Self { bucket: Mutex::new(Bucket { rate, level: rate as i128, at: now }), throttled_ns: AtomicU64::new(0) }
    }

    fn bucket(&self) -> MutexGuard<'_, Bucket> {
        // Plain arithmetic under the lock: a panicking holder leaves a usable bucket.
        self.bucket.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_rate(&self, rate: u64, now: Instant) {
        let mut b = self.bucket();
        b.refill(now);
        if b.rate == 0 && rate > 0 {
            // From unlimited: start with a full second, as a new bucket does.
            b.level = rate as i128;
        }
        b.rate = rate;
        b.level = b.level.min(rate as i128);
    }

    /// Its rate: fuel per second, 0 when unlimited.
    pub fn rate(&self) -> u64 {
        self.bucket().rate
    }

    /// Seconds its subtasks slept in debt so far (summed over subtasks).
    pub fn throttled_seconds(&self) -> f64 {
        self.throttled_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Takes `fuel` from the bucket at `now`; how long the charging subtask must wait.
    fn charge(&self, fuel: u64, now: Instant) -> Duration {
        let mut b = self.bucket();
        b.refill(now);
        if b.rate > 0 {
            b.level -= fuel as i128;
        }
        b.debt_wait()
    }

    /// Sleeps while the bucket is in debt, in naps so a cancel or a raised rate is
    /// seen soon; the time slept counts as throttled. Returns the time slept.
    fn wait(&self, mut wait: Duration, cancel: &Cancel) -> Duration {
        let mut slept = Duration::ZERO;
        while !wait.is_zero() && !cancel.is_cancelled() {
            let nap = wait.min(NAP);
            let started = Instant::now();
            std::thread::sleep(nap);
            let napped = started.elapsed();
            slept += napped;
            self.throttled_ns.fetch_add(napped.as_nanos() as u64, Ordering::Relaxed);
            wait = self.charge(0, Instant::now());
        }
        slept
    }
}

#[derive(Default)]
struct Table {
    /// By tenant; kept when a tenant's rate goes (its throttled time stays counted).
    gates: HashMap<String, Arc<FuelGate>>,
    /// The gate of each job with subtasks here, as the JobManager last said.
    jobs: HashMap<JobId, Arc<FuelGate>>,
}

/// Every tenant's bucket on this TaskManager.
#[derive(Default)]
pub struct Throttles {
    table: Mutex<Table>,
}

/// What the JobManager says of one tenant: its share of the fuel rate here, for the
/// subtasks of these jobs.
pub struct Share {
    /// The tenant.
    pub tenant: String,
    /// Fuel per second for its subtasks on this TaskManager together.
    pub fuel_per_second: u64,
    /// Its jobs with subtasks here.
    pub jobs: Vec<JobId>,
}

impl Throttles {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Map inserts and removals only.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the shares: a tenant or job not named is unlimited from now on.
    pub fn set(&self, shares: Vec<Share>) {
        let now = Instant::now();
        let mut t = self.table();
        t.jobs.clear();
        let named: Vec<String> = shares.iter().map(|s| s.tenant.clone()).collect();
        for gate in t.gates.iter().filter(|(name, _)| !named.contains(name)).map(|(_, g)| g) {
            gate.set_rate(0, now);
        }
        for s in shares {
            let gate = match t.gates.get(&s.tenant) {
                Some(g) => {
                    g.set_rate(s.fuel_per_second, now);
                    g.clone()
                }
                None => Arc::new(FuelGate::new(s.fuel_per_second, now)),
            };
            t.gates.insert(s.tenant, gate.clone());
            for job in s.jobs {
                t.jobs.insert(job, gate.clone());
            }
        }
    }

    /// Every tenant's gate here, by name.
    pub fn gates(&self) -> Vec<(String, Arc<FuelGate>)> {
        let mut out: Vec<_> = self.table().gates.iter().map(|(n, g)| (n.clone(), g.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn gate(&self, job: &JobId) -> Option<Arc<FuelGate>> {
        self.table().jobs.get(job).cloned()
    }
}

/// A subtask's side of its tenant's gate: what it has charged so far.
pub struct Throttle {
    /// The TaskManager's gates and the subtask's job; `None`: never throttled.
    of: Option<(Arc<Throttles>, JobId)>,
    charged: u64,
}

impl Throttle {
    /// The throttle of a subtask of `job`.
    pub fn new(throttles: Arc<Throttles>, job: JobId) -> Self {
        Self { of: Some((throttles, job)), charged: 0 }
    }

    /// A subtask that is never throttled (tests).
    pub fn none() -> Self {
        Self { of: None, charged: 0 }
    }

    /// The subtask's operators burned `fuel` in all so far: charges what is new to its
    /// tenant's bucket and waits while the bucket is in debt. The job's gate is looked
    /// up on each charge (a map lookup per batch), so a share sent after the
    /// deployment, or changed later, applies from the next batch on. Returns the time
    /// it waited.
    pub fn pay(&mut self, fuel: u64, cancel: &Cancel) -> Duration {
        let burned = fuel.saturating_sub(self.charged);
        self.charged = self.charged.max(fuel);
        match self.of.as_ref().and_then(|(t, job)| t.gate(job)) {
            Some(gate) => {
                let wait = gate.charge(burned, Instant::now());
                gate.wait(wait, cancel)
            }
            None => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_bucket_lends_one_second_then_makes_its_debtor_wait_for_the_rate() {
        let t0 = Instant::now();
        let g = FuelGate::new(1000, t0);
        assert_eq!(g.charge(1000, t0), Duration::ZERO, "a full second's burst");
        assert_eq!(g.charge(500, t0), Duration::from_millis(500), "in debt: half a second at 1000/s");
        assert_eq!(g.charge(0, t0 + S / 4), Duration::from_millis(250), "paid off as time passes");
        assert_eq!(g.charge(0, t0 + 10 * S), Duration::ZERO);
        assert_eq!(g.charge(1500, t0 + 10 * S), Duration::from_millis(500), "the burst never exceeds one second");
    }

    #[test]
    fn shares_replace_each_other_and_an_unnamed_tenant_is_unlimited() {
        let t = Throttles::default();
        let job: JobId = "00000000000000aa".parse().expect("id");
        t.set(vec![Share { tenant: "a".into(), fuel_per_second: 10, jobs: vec![job.clone()] }]);
        let gate = t.gate(&job).expect("gate");
        assert_eq!(gate.charge(30, Instant::now()), Duration::from_secs(2));
        t.set(vec![]);
        assert!(t.gate(&job).is_none());
        assert_eq!((gate.rate(), gate.charge(u64::MAX, Instant::now())), (0, Duration::ZERO), "unlimited: never waits");
        assert_eq!(t.gates().len(), 1, "kept, with its throttled time");

        // Unlimited to limited: a fresh second of burst, not the old debt.
        t.set(vec![Share { tenant: "a".into(), fuel_per_second: 100, jobs: vec![job.clone()] }]);
        assert_eq!(t.gate(&job).expect("gate").charge(100, Instant::now()), Duration::ZERO);
    }

    #[test]
    fn a_cancelled_subtask_stops_waiting() {
        let t = Arc::new(Throttles::default());
        let job: JobId = "00000000000000bb".parse().expect("id");
        t.set(vec![Share { tenant: "a".into(), fuel_per_second: 1, jobs: vec![job.clone()] }]);
        let cancel = Cancel::default();
        cancel.cancel();
        // A debt of about 30 years: returns at once because the job is cancelled.
        assert_eq!(Throttle::new(t.clone(), job).pay(1_000_000_000, &cancel), Duration::ZERO);
        assert_eq!(t.gates()[0].1.throttled_seconds(), 0.0);
    }
}
