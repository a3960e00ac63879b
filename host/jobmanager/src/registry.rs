//! The JobManager's resource view. Pure: time is passed in, so heartbeat expiry is
//! tested without sleeping. A lost TaskManager stays listed (as lost) for a grace
//! period, so users see what happened, then it is forgotten: a cluster whose
//! TaskManagers come and go for months lists only the recent ones.

use std::time::{Duration, Instant};

use weir_control::protocol::{ClusterView, TaskManagerInfo};
use weir_types::ids::TaskManagerId;

struct Entry {
    id: TaskManagerId,
    name: String,
    addr: String,
    data_addr: String,
    slots: u32,
    used: u32,
    last_seen: Instant,
    /// When it was declared lost; `None` while alive.
    lost_at: Option<Instant>,
}

/// TaskManagers and their liveness.
pub struct Registry {
    timeout: Duration,
    grace: Duration,
    next_id: u64,
    entries: Vec<Entry>,
}

impl Registry {
    /// A registry that declares a TaskManager lost after `timeout` without heartbeat
    /// and forgets it `grace` after that.
    pub fn new(timeout: Duration, grace: Duration) -> Self {
        Self { timeout, grace, next_id: 1, entries: Vec::new() }
    }

    /// Registers a TaskManager; returns its id.
    pub fn register(&mut self, name: &str, addr: &str, data_addr: &str, slots: u32, now: Instant) -> TaskManagerId {
        let id = TaskManagerId::new(self.next_id);
        self.next_id += 1;
        let (name, addr, data_addr) = (name.to_string(), addr.to_string(), data_addr.to_string());
        self.entries.push(Entry { id, name, addr, data_addr, slots, used: 0, last_seen: now, lost_at: None });
        id
    }

    /// Alive TaskManagers with free slots: (id, free slots, data address), by id.
    pub fn free(&self) -> Vec<(TaskManagerId, u32, String)> {
        self.entries.iter().filter(|e| e.lost_at.is_none() && e.used < e.slots).map(|e| (e.id, e.slots - e.used, e.data_addr.clone())).collect()
    }

    /// Takes `n` slots of a TaskManager for a job.
    pub fn reserve(&mut self, id: TaskManagerId, n: u32) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
            e.used = (e.used + n).min(e.slots);
        }
    }

    /// Gives back slots a job held.
    pub fn release(&mut self, id: TaskManagerId, n: u32) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
            e.used = e.used.saturating_sub(n);
        }
    }

    /// Certificate name of a TaskManager.
    pub fn name(&self, id: TaskManagerId) -> Option<&str> {
        self.entries.iter().find(|e| e.id == id).map(|e| e.name.as_str())
    }

    /// Records a heartbeat; false if the TaskManager is lost. A lost TaskManager stays
    /// lost: its slots' work was already given up, so it must register anew.
    pub fn heartbeat(&mut self, id: TaskManagerId, now: Instant) -> bool {
        match self.entries.iter_mut().find(|e| e.id == id && e.lost_at.is_none()) {
            Some(e) => {
                e.last_seen = now;
                true
            }
            None => false,
        }
    }

    /// Marks a TaskManager lost at once (its connection closed).
    pub fn disconnect(&mut self, id: TaskManagerId, now: Instant) -> bool {
        match self.entries.iter_mut().find(|e| e.id == id && e.lost_at.is_none()) {
            Some(e) => {
                e.lost_at = Some(now);
                true
            }
            None => false,
        }
    }

    /// Marks every TaskManager silent for longer than the timeout as lost and returns
    /// the ids and names of those newly lost; forgets those lost for longer than the
    /// grace period.
    pub fn expire(&mut self, now: Instant) -> Vec<(TaskManagerId, String)> {
        let mut lost = Vec::new();
        for e in self.entries.iter_mut().filter(|e| e.lost_at.is_none()) {
            if now.saturating_duration_since(e.last_seen) > self.timeout {
                e.lost_at = Some(now);
                lost.push((e.id, e.name.clone()));
            }
        }
        let grace = self.grace;
        self.entries.retain(|e| e.lost_at.is_none_or(|at| now.saturating_duration_since(at) <= grace));
        lost
    }

    /// The resource view at `now`.
    pub fn view(&self, now: Instant) -> ClusterView {
        let taskmanagers: Vec<TaskManagerInfo> = self
            .entries
            .iter()
            .map(|e| TaskManagerInfo {
                id: e.id,
                name: e.name.clone(),
                addr: e.addr.clone(),
                data_addr: e.data_addr.clone(),
                slots: e.slots,
                used_slots: e.used,
                alive: e.lost_at.is_none(),
                last_heartbeat_ms: now.saturating_duration_since(e.last_seen).as_millis() as u64,
            })
            .collect();
        let free_slots = taskmanagers.iter().filter(|t| t.alive).map(|t| t.slots - t.used_slots).sum();
        ClusterView { taskmanagers, free_slots, jobs: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_taskmanagers_are_lost_after_the_timeout_and_stay_lost() {
        let t0 = Instant::now();
        let mut r = Registry::new(Duration::from_secs(3), Duration::from_secs(60));
        let a = r.register("taskmanager-a", "127.0.0.1:1", "127.0.0.1:3", 2, t0);
        let b = r.register("taskmanager-b", "127.0.0.1:2", "127.0.0.1:4", 4, t0);
        assert_eq!(r.view(t0).free_slots, 6);
        r.reserve(b, 3);
        assert_eq!(r.free(), vec![(a, 2, "127.0.0.1:3".to_string()), (b, 1, "127.0.0.1:4".to_string())]);
        r.release(b, 3);
        assert!(r.heartbeat(a, t0 + Duration::from_secs(2)));
        assert!(r.expire(t0 + Duration::from_secs(3)).is_empty());
        assert_eq!(r.expire(t0 + Duration::from_millis(4500)), vec![(b, "taskmanager-b".to_string())]);
        let v = r.view(t0 + Duration::from_millis(4500));
        assert_eq!(v.free_slots, 2);
        assert!(!v.taskmanagers[1].alive);
        assert!(!r.heartbeat(b, t0 + Duration::from_secs(5)), "a lost taskmanager must register anew");
        assert!(!r.view(t0 + Duration::from_secs(5)).taskmanagers[1].alive, "lost stays lost");
        assert!(r.disconnect(a, t0 + Duration::from_secs(5)));
        assert_eq!(r.view(t0 + Duration::from_secs(5)).free_slots, 0);
    }

    #[test]
    fn lost_taskmanagers_are_forgotten_after_the_grace_period() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut r = Registry::new(s(3), s(10));
        let a = r.register("taskmanager-a", "127.0.0.1:1", "127.0.0.1:3", 2, t0);
        let b = r.register("taskmanager-b", "127.0.0.1:2", "127.0.0.1:4", 2, t0);
        assert!(r.disconnect(a, t0 + s(1)));
        assert_eq!(r.expire(t0 + s(4)), vec![(b, "taskmanager-b".to_string())]);
        // b is lost at 4 s and a at 1 s: within the grace both are listed, as lost.
        assert_eq!(r.view(t0 + s(11)).taskmanagers.iter().map(|t| (t.id, t.alive)).collect::<Vec<_>>(), vec![(a, false), (b, false)]);
        // Forgetting happens as time passes: a (lost at 1 s) goes after 11 s, b after 14 s.
        assert!(r.expire(t0 + s(12)).is_empty());
        assert_eq!(r.view(t0 + s(12)).taskmanagers.iter().map(|t| t.id).collect::<Vec<_>>(), vec![b]);
        let c = r.register("taskmanager-a", "127.0.0.1:1", "127.0.0.1:3", 2, t0 + s(13));
        r.expire(t0 + s(15));
        let v = r.view(t0 + s(15));
        assert_eq!(v.taskmanagers.iter().map(|t| (t.id, t.alive)).collect::<Vec<_>>(), vec![(c, true)], "a re-registration is a new entry");
        assert_eq!(v.free_slots, 2);
        // Slots of a forgotten TaskManager given back late change nothing.
        r.release(b, 2);
        assert!(!r.heartbeat(a, t0 + s(15)));
    }
}
