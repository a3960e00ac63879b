//! A job's status from its subtasks' ends and progress. Pure: the embedded cluster and
//! the JobManager service feed it events; it says when the rest must be cancelled and
//! when the job is over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use weir_types::deployment::{JobReport, JobStatus, PartitionLag, SideOutputCount, TaskOutcome, TaskProgress, VertexReport};
use weir_types::graph::ExecutionGraph;
use weir_types::ids::JobId;

use crate::model::SubtaskMetrics;

#[derive(Debug, Default, Clone)]
struct Counts {
    records_in: u64,
    records_in_by_input: Vec<u64>,
    records_out: u64,
    fuel: u64,
    backpressured_ns: u64,
    throttled_ns: u64,
    watermark: Option<i64>,
    side_outputs: Vec<SideOutputCount>,
    source_lag: Vec<PartitionLag>,
    ended: bool,
    /// It processed the end of its input.
    end_of_input: bool,
    /// How it ended, once it did.
    outcome: Option<JobStatus>,
    /// The previous progress report, to turn totals into rates.
    sample: Option<(Instant, u64, u64, u64)>,
    rate_in: f64,
    rate_out: f64,
    backpressure: f64,
}

/// One job's subtasks and what became of them.
#[derive(Debug)]
pub struct JobTracker {
    id: JobId,
    name: String,
    graph: ExecutionGraph,
    placement: Vec<Vec<u32>>,
    tasks: HashMap<(u32, u32), Counts>,
    left: usize,
    status: JobStatus,
    error: Option<String>,
    /// A subtask that stopped as cancelled while nobody had cancelled the job.
    stray_cancel: Option<String>,
    started: Instant,
    elapsed: Option<Duration>,
}

impl JobTracker {
    /// A job deployed as `placement[vertex][subtask]` = TaskManager index.
    pub fn new(id: &JobId, name: &str, graph: ExecutionGraph, placement: Vec<Vec<u32>>, now: Instant) -> Self {
        let tasks: HashMap<(u32, u32), Counts> = placement
            .iter()
            .enumerate()
            .flat_map(|(v, subtasks)| (0..subtasks.len() as u32).map(move |s| ((v as u32, s), Counts::default())))
            .collect();
        let left = tasks.len();
        let status = if left == 0 { JobStatus::Finished } else { JobStatus::Created };
        Self {
            id: id.clone(),
            name: name.into(),
            graph,
            placement,
            tasks,
            left,
            status,
            error: None,
            stray_cancel: None,
            started: now,
            elapsed: None,
        }
    }

    /// The job's id.
    pub fn id(&self) -> &JobId {
        &self.id
    }

    /// Where it stands.
    pub fn status(&self) -> JobStatus {
        self.status
    }

    /// Every subtask was started at `now`: the attempt's elapsed time counts from
    /// here, so deploying (fetching components, opening state) is not part of it, as
    /// the throughput benchmark's records/s assume.
    pub fn running(&mut self, now: Instant) {
        if self.status == JobStatus::Created {
            self.status = JobStatus::Running;
            self.started = now;
        }
    }

    /// Fails the job; true if this is its first failure, so the caller must cancel
    /// the remaining subtasks.
    pub fn fail(&mut self, error: String, now: Instant) -> bool {
        let first = self.error.is_none() && matches!(self.status, JobStatus::Created | JobStatus::Running);
        if first {
            self.status = JobStatus::Failing;
            self.error = Some(error);
        }
        self.settle(now);
        first
    }

    /// A user asks to cancel; true if the subtasks must now be told.
    pub fn cancel(&mut self, now: Instant) -> bool {
        let first = matches!(self.status, JobStatus::Created | JobStatus::Running | JobStatus::Failing);
        if first {
            self.status = JobStatus::Cancelling;
        }
        self.settle(now);
        first
    }

    /// Live progress of a running subtask, received at `now`.
    pub fn progress(&mut self, p: &TaskProgress, now: Instant) {
        if let Some(c) = self.tasks.get_mut(&(p.vertex, p.subtask))
            && !c.ended
        {
            if let Some((at, records_in, records_out, blocked)) = c.sample {
                let secs = now.saturating_duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    c.rate_in = p.records_in.saturating_sub(records_in) as f64 / secs;
                    c.rate_out = p.records_out.saturating_sub(records_out) as f64 / secs;
                    c.backpressure = (p.backpressured_ns.saturating_sub(blocked) as f64 / 1e9 / secs).clamp(0.0, 1.0);
                }
            }
            c.sample = Some((now, p.records_in, p.records_out, p.backpressured_ns));
            c.records_in = p.records_in;
            c.records_in_by_input.clone_from(&p.records_in_by_input);
            c.records_out = p.records_out;
            c.fuel = p.fuel;
            c.backpressured_ns = p.backpressured_ns;
            c.throttled_ns = p.throttled_ns;
            c.watermark = p.watermark;
            c.side_outputs.clone_from(&p.side_outputs);
            c.source_lag.clone_from(&p.source_lag);
        }
    }

    /// Every subtask's metrics, by vertex then subtask.
    pub fn subtasks(&self) -> Vec<SubtaskMetrics> {
        let mut out: Vec<SubtaskMetrics> = self
            .tasks
            .iter()
            .map(|(&(vertex, subtask), c)| SubtaskMetrics {
                vertex,
                subtask,
                taskmanager: self.placement.get(vertex as usize).and_then(|p| p.get(subtask as usize)).copied().unwrap_or(0),
                records_in: c.records_in,
                records_in_by_input: c.records_in_by_input.clone(),
                records_out: c.records_out,
                records_in_per_second: if c.ended { 0.0 } else { c.rate_in },
                records_out_per_second: if c.ended { 0.0 } else { c.rate_out },
                backpressure: if c.ended { 0.0 } else { c.backpressure },
                watermark: c.watermark,
                side_outputs: c.side_outputs.clone(),
                source_lag: if c.ended { Vec::new() } else { c.source_lag.clone() },
                fuel: c.fuel,
                throttled_ns: c.throttled_ns,
                status: match c.outcome {
                    Some(s) => s,
                    None if self.status == JobStatus::Created => JobStatus::Created,
                    None => JobStatus::Running,
                },
                end_of_input: c.end_of_input || c.outcome == Some(JobStatus::Finished),
            })
            .collect();
        out.sort_by_key(|m| (m.vertex, m.subtask));
        out
    }

    /// Fuel burned per vertex by this attempt so far (finished subtasks' final counts,
    /// others' last heartbeat).
    pub fn vertex_fuel(&self) -> Vec<u64> {
        let mut out = vec![0; self.graph.vertices.len()];
        for (&(v, _), c) in &self.tasks {
            if let Some(sum) = out.get_mut(v as usize) {
                *sum += c.fuel;
            }
        }
        out
    }

    /// The job's execution graph.
    pub fn graph(&self) -> &ExecutionGraph {
        &self.graph
    }

    /// A subtask processed the end of its input (it finishes after the final
    /// checkpoint).
    pub fn end_of_input(&mut self, vertex: u32, subtask: u32) {
        if let Some(c) = self.tasks.get_mut(&(vertex, subtask)) {
            c.end_of_input = true;
        }
    }

    /// A subtask ended; true if the caller must cancel the remaining subtasks.
    pub fn ended(&mut self, vertex: u32, subtask: u32, outcome: TaskOutcome, now: Instant) -> bool {
        let Some(c) = self.tasks.get_mut(&(vertex, subtask)) else { return false };
        if c.ended {
            return false;
        }
        c.ended = true;
        c.outcome = Some(match &outcome {
            TaskOutcome::Finished(_) => JobStatus::Finished,
            TaskOutcome::Failed(_) => JobStatus::Failed,
            TaskOutcome::Cancelled => JobStatus::Canceled,
        });
        self.left -= 1;
        match outcome {
            TaskOutcome::Finished(stats) => {
                c.records_in = stats.records_in;
                c.records_in_by_input = stats.records_in_by_input;
                c.records_out = stats.records_out;
                c.fuel = stats.fuel;
                c.side_outputs = stats.side_outputs;
                self.settle(now);
                false
            }
            TaskOutcome::Failed(error) => self.fail(error, now),
            // Expected once the job is failing or cancelling. Before that it is a
            // consumer whose remote producer gave up; the producer's own failure is
            // on its way and names the cause, so wait for it rather than fail here.
            TaskOutcome::Cancelled => {
                if !matches!(self.status, JobStatus::Failing | JobStatus::Cancelling) && self.stray_cancel.is_none() {
                    self.stray_cancel = Some(format!("subtask {} of {} was cancelled", subtask + 1, self.vertex_name(vertex)));
                }
                self.settle(now);
                false
            }
        }
    }

    /// TaskManager `tm` gave up on its subtasks (it was lost, or could not set them
    /// up), so its unfinished ones will never report. True if the caller must cancel
    /// the remaining subtasks.
    pub fn abandon(&mut self, tm: u32, error: &str, now: Instant) -> bool {
        let mut gone = Vec::new();
        for (v, subtasks) in self.placement.iter().enumerate() {
            for (s, &t) in subtasks.iter().enumerate() {
                if t == tm && self.tasks.get(&(v as u32, s as u32)).is_some_and(|c| !c.ended) {
                    gone.push((v as u32, s as u32));
                }
            }
        }
        if gone.is_empty() {
            return false;
        }
        let first = self.fail(error.to_string(), now);
        for (v, s) in gone {
            self.ended(v, s, TaskOutcome::Cancelled, now);
        }
        first
    }

    /// True once every subtask ended.
    pub fn is_done(&self) -> bool {
        self.status.is_terminal()
    }

    fn vertex_name(&self, vertex: u32) -> &str {
        self.graph.vertices.get(vertex as usize).map_or("?", |v| v.name.as_str())
    }

    fn settle(&mut self, now: Instant) {
        if self.left > 0 {
            return;
        }
        if let (JobStatus::Created | JobStatus::Running, Some(why)) = (self.status, self.stray_cancel.take()) {
            self.status = JobStatus::Failing;
            self.error = Some(why);
        }
        self.status = match self.status {
            JobStatus::Cancelling => JobStatus::Canceled,
            JobStatus::Failing => JobStatus::Failed,
            JobStatus::Created | JobStatus::Running => JobStatus::Finished,
            done => done,
        };
        self.elapsed.get_or_insert(now.saturating_duration_since(self.started));
    }

    /// The job's report now.
    pub fn report(&self, now: Instant) -> JobReport {
        let mut vertices: Vec<VertexReport> =
            self.graph.vertices.iter().map(|v| VertexReport { name: v.name.clone(), parallelism: v.parallelism, ..Default::default() }).collect();
        for (&(v, _), c) in &self.tasks {
            if let Some(r) = vertices.get_mut(v as usize) {
                r.records_in += c.records_in;
                if r.records_in_by_input.len() < c.records_in_by_input.len() {
                    r.records_in_by_input.resize(c.records_in_by_input.len(), 0);
                }
                for (sum, n) in r.records_in_by_input.iter_mut().zip(&c.records_in_by_input) {
                    *sum += n;
                }
                r.records_out += c.records_out;
                r.fuel += c.fuel;
            }
        }
        JobReport {
            id: self.id.clone(),
            name: self.name.clone(),
            status: self.status,
            error: self.error.clone(),
            elapsed: self.elapsed.unwrap_or_else(|| now.saturating_duration_since(self.started)),
            vertices,
            restarts: 0,
            last_checkpoint: None,
            resource: None,
            waiting: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_types::deployment::TaskStats;
    use weir_types::graph::Vertex;

    fn tracker() -> (JobTracker, Instant) {
        let v = |p| Vertex { nodes: vec![], parallelism: p, inputs: vec![], outputs: vec![], name: "v".into() };
        let now = Instant::now();
        (JobTracker::new(&JobId::from_u64(1), "job", ExecutionGraph { vertices: vec![v(2), v(1)] }, vec![vec![0, 1], vec![1]], now), now)
    }

    fn done(n: u64) -> TaskOutcome {
        TaskOutcome::Finished(TaskStats {
            records_in: n,
            records_in_by_input: Vec::new(),
            records_out: n,
            fuel: 1,
            elapsed: Duration::ZERO,
            last_checkpoint: 0,
            side_dropped: 0,
            side_outputs: Vec::new(),
        })
    }

    #[test]
    fn finishes_when_every_subtask_finished() {
        let (mut t, now) = tracker();
        t.running(now);
        assert!(!t.ended(0, 0, done(3), now));
        assert!(!t.ended(0, 0, done(3), now), "duplicates are ignored");
        assert!(!t.ended(0, 1, done(4), now));
        assert_eq!(t.status(), JobStatus::Running);
        assert!(!t.ended(1, 0, done(7), now));
        let r = t.report(now);
        assert_eq!((r.status, r.vertices[0].records_in, r.vertices[1].records_in), (JobStatus::Finished, 7, 7));
    }

    #[test]
    fn the_first_failure_cancels_the_rest_and_wins() {
        let (mut t, now) = tracker();
        t.running(now);
        assert!(t.ended(0, 1, TaskOutcome::Failed("boom".into()), now));
        assert!(!t.ended(0, 0, TaskOutcome::Failed("later".into()), now));
        assert_eq!(t.status(), JobStatus::Failing);
        t.ended(1, 0, TaskOutcome::Cancelled, now);
        let r = t.report(now);
        assert_eq!((r.status, r.error.as_deref()), (JobStatus::Failed, Some("boom")));
    }

    #[test]
    fn a_consumer_cancelled_before_the_failure_arrives_does_not_hide_the_cause() {
        let (mut t, now) = tracker();
        t.running(now);
        assert!(!t.ended(1, 0, TaskOutcome::Cancelled, now));
        assert_eq!(t.status(), JobStatus::Running);
        assert!(t.ended(0, 0, TaskOutcome::Failed("the cause".into()), now));
        t.ended(0, 1, TaskOutcome::Cancelled, now);
        assert_eq!(t.report(now).error.as_deref(), Some("the cause"));

        let (mut t, now) = tracker();
        for (v, s) in [(0, 0), (0, 1)] {
            t.ended(v, s, done(1), now);
        }
        t.ended(1, 0, TaskOutcome::Cancelled, now);
        assert_eq!((t.status(), t.report(now).error.is_some()), (JobStatus::Failed, true), "a stray cancel never finishes a job");
    }

    #[test]
    fn a_lost_taskmanager_fails_its_subtasks_and_a_cancel_ends_as_canceled() {
        let (mut t, now) = tracker();
        t.running(now);
        t.ended(0, 1, done(1), now);
        assert!(t.abandon(1, "taskmanager taskmanager-2 was lost", now));
        assert_eq!(t.status(), JobStatus::Failing);
        t.ended(0, 0, TaskOutcome::Cancelled, now);
        assert_eq!(t.report(now).error.as_deref(), Some("taskmanager taskmanager-2 was lost"));
        assert!(t.is_done());

        let (mut t, now) = tracker();
        t.running(now);
        assert!(t.cancel(now));
        assert!(!t.cancel(now));
        for (v, s) in [(0, 0), (0, 1), (1, 0)] {
            t.ended(v, s, TaskOutcome::Cancelled, now);
        }
        assert_eq!(t.status(), JobStatus::Canceled);
    }
}
