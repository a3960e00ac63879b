//! The checkpoint coordinator of one job run: when to trigger, which acknowledgements
//! are still missing, when a checkpoint is complete or abandoned. Pure: time is
//! passed in, and the service does the messaging and the writing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_checkpoint::{CheckpointMeta, TaskMeta, VertexMeta};
use weir_types::deployment::JobDeployment;

/// Where the coordinator stands after an acknowledgement.
#[derive(Debug, PartialEq)]
pub enum AckOutcome {
    /// Still waiting for others (or the ack was stale).
    Waiting,
    /// Every subtask acknowledged: the checkpoint's metadata, to be written.
    Complete(CheckpointMeta),
    /// A subtask could not persist its snapshot: the checkpoint is abandoned.
    Failed(u64, String),
}

#[derive(Debug)]
struct Pending {
    id: u64,
    started: Instant,
    acks: BTreeMap<(u32, u32), TaskMeta>,
    /// The checkpoint of a stop-with-savepoint: the last one of this run.
    last: bool,
}

/// Triggers and completes the checkpoints of one job run, one at a time.
#[derive(Debug)]
pub struct Coordinator {
    interval: Duration,
    timeout: Duration,
    next_id: u64,
    next_at: Instant,
    pending: Option<Pending>,
    expected: usize,
    /// A checkpoint was asked for out of schedule (a savepoint).
    forced: bool,
    /// A stop-with-savepoint was asked for: the next checkpoint is the run's last.
    stopping: bool,
    /// The stop's checkpoint completed. None may follow: its completion would commit
    /// sink output past the savepoint, which the run resumed from it then writes again.
    halted: bool,
    /// Subtasks at the end of their input, by (vertex, subtask), with the last
    /// checkpoint whose barrier they passed. They see no more barriers: each answers
    /// the checkpoints triggered later with its final snapshot, on its own.
    ended: BTreeMap<(u32, u32), u64>,
    /// Ended subtasks that a completed checkpoint captured at their end, with that
    /// checkpoint and their snapshot. Their state no longer changes, so that snapshot
    /// stands in for them in every later checkpoint (Flink's checkpoints after tasks
    /// finished): they may finish and leave.
    captured: BTreeMap<(u32, u32), (u64, TaskMeta)>,
    /// The final checkpoint (the first triggered once every subtask ended) is in
    /// flight or its metadata is being written: no other is triggered meanwhile.
    finishing: Option<u64>,
}

impl Coordinator {
    /// A coordinator whose first checkpoint gets `first_id` one interval from `now`;
    /// `expected` subtasks acknowledge each checkpoint.
    pub fn new(interval: Duration, first_id: u64, expected: usize, now: Instant) -> Self {
        // A checkpoint slower than several intervals is stuck (a dead peer, a full disk).
        let timeout = (interval * 10).max(Duration::from_secs(10));
        Self {
            interval,
            timeout,
            next_id: first_id,
            next_at: now + interval,
            pending: None,
            expected,
            forced: false,
            stopping: false,
            halted: false,
            ended: BTreeMap::new(),
            captured: BTreeMap::new(),
            finishing: None,
        }
    }

    /// The id the next checkpoint will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Asks for a checkpoint as soon as none is in flight; the smallest id it may get.
    /// With `stop`, that checkpoint is the last this run triggers once it completes (a
    /// failed one is retried).
    pub fn force(&mut self, stop: bool) -> u64 {
        self.forced = true;
        self.stopping |= stop;
        self.next_id
    }

    /// The stop's savepoint could not be written: the run goes on. Triggers a plain
    /// checkpoint at once, whose barrier also wakes the suspended sources.
    pub fn resume(&mut self) {
        if self.stopping {
            (self.stopping, self.halted, self.forced) = (false, false, true);
        }
    }

    /// Whether the checkpoint in flight, or the next, is a stop-with-savepoint's.
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// Starts a checkpoint if one is due and none is in flight; its id.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        if self.halted || self.finishing.is_some() || self.pending.is_some() || (now < self.next_at && !self.forced) {
            return None;
        }
        self.forced = false;
        // Intervals run from trigger to trigger, as Flink's do, however long each takes.
        self.next_at = now + self.interval;
        let id = self.next_id;
        self.next_id += 1;
        if self.all_ended() {
            self.finishing = Some(id);
        }
        self.pending = Some(Pending { id, started: now, acks: BTreeMap::new(), last: self.stopping });
        Some(id)
    }

    /// Abandons a checkpoint in flight for longer than the timeout; its id.
    pub fn expire(&mut self, now: Instant) -> Option<u64> {
        let p = self.pending.as_ref()?;
        if now.saturating_duration_since(p.started) <= self.timeout {
            return None;
        }
        let id = p.id;
        self.abandon(now);
        Some(id)
    }

    fn abandon(&mut self, now: Instant) {
        if let Some(p) = self.pending.take() {
            self.not_completed(p.id);
            // A stop's checkpoint that failed is tried again at once: the user waits for it.
            self.forced |= p.last;
        }
        self.next_at = now + self.interval;
    }

    /// Checkpoint `id` failed or its metadata could not be written. The final
    /// checkpoint is tried again after the interval, as any: the job waits for it.
    pub fn not_completed(&mut self, id: u64) {
        if self.finishing == Some(id) {
            self.finishing = None;
        }
    }

    /// Records a subtask's acknowledgement.
    pub fn ack(&mut self, d: &JobDeployment, id: u64, vertex: u32, task: Result<TaskMeta, String>, now: Instant) -> AckOutcome {
        let Some(p) = self.pending.as_mut().filter(|p| p.id == id) else { return AckOutcome::Waiting };
        let task = match task {
            Ok(t) => t,
            Err(e) => {
                self.abandon(now);
                return AckOutcome::Failed(id, e);
            }
        };
        p.acks.insert((vertex, task.subtask), task);
        self.complete(d)
    }

    /// Subtask `subtask` of `vertex` processed the end of its input after the barrier
    /// of checkpoint `last_checkpoint`. Once every subtask has, the final checkpoint
    /// is due at once: the job finishes when it completes.
    pub fn end_of_input(&mut self, vertex: u32, subtask: u32, last_checkpoint: u64) {
        self.ended.insert((vertex, subtask), last_checkpoint);
        if self.all_ended() {
            self.forced = true;
        }
    }

    /// Checkpoint `meta` is complete (its metadata is written): the ended subtasks it
    /// captured at their end stand in for themselves from now on. Once it captured
    /// every subtask it was the final checkpoint: none follows, nothing changes any
    /// more, and the subtasks finish as they hear of it.
    pub fn completed(&mut self, meta: &CheckpointMeta) {
        for (v, vertex) in meta.vertices.iter().enumerate() {
            for t in &vertex.tasks {
                let k = (v as u32, t.subtask);
                if self.ended.get(&k).is_some_and(|&last| meta.id > last) {
                    self.captured.entry(k).or_insert_with(|| (meta.id, t.clone()));
                }
            }
        }
        self.halted |= self.captured.len() >= self.expected;
    }

    /// Every subtask processed the end of its input.
    pub fn all_ended(&self) -> bool {
        self.ended.len() >= self.expected
    }

    fn complete(&mut self, d: &JobDeployment) -> AckOutcome {
        let Some(p) = self.pending.as_mut() else { return AckOutcome::Waiting };
        for (k, (after, meta)) in &self.captured {
            if p.id > *after && !p.acks.contains_key(k) {
                p.acks.insert(*k, meta.clone());
            }
        }
        if p.acks.len() < self.expected {
            return AckOutcome::Waiting;
        }
        let Some(p) = self.pending.take() else { return AckOutcome::Waiting };
        self.halted = p.last;
        let mut acks = p.acks;
        let vertices = d
            .graph
            .vertices
            .iter()
            .enumerate()
            .map(|(v, vertex)| VertexMeta {
                uid: vertex.nodes.first().and_then(|&n| d.plan.nodes.get(n)).map(|n| n.uid.clone()).unwrap_or_default(),
                parallelism: vertex.parallelism,
                tasks: (0..vertex.parallelism).filter_map(|s| acks.remove(&(v as u32, s))).collect(),
            })
            .collect();
        AckOutcome::Complete(CheckpointMeta { job: d.job.clone(), id: p.id, max_parallelism: d.plan.max_parallelism(), vertices })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use weir_types::graph::{ExecutionGraph, Vertex};
    use weir_types::plan::{JobPlan, Node, NodeKind, SourceKind};

    /// One generator vertex of parallelism 2, placed on one TaskManager.
    pub(crate) fn deployment() -> JobDeployment {
        let node = Node {
            uid: "src".into(),
            name: "src".into(),
            kind: NodeKind::Source(SourceKind::Generator { start: 0, count: 1, records_per_ms: None }),
            parallelism: None,
            watermarks: None,
        };
        JobDeployment {
            job: "j".parse().expect("a job id"),
            plan: JobPlan { name: "j".into(), nodes: vec![node], edges: vec![], max_parallelism: None },
            graph: ExecutionGraph { vertices: vec![Vertex { nodes: vec![0], parallelism: 2, inputs: vec![], outputs: vec![], name: "src".into() }] },
            args: vec![],
            code: weir_types::deployment::JobCode { components: vec![], operators: vec![] },
            placement: vec![vec![0, 0]],
            taskmanagers: vec![],
            sink_files: weir_types::deployment::SinkFiles::Shared,
            attempt: 0,
            checkpoints: None,
            restore: None,
            files: weir_types::access::FileAccess::Any,
            capabilities: weir_types::access::Capabilities::ALL,
        }
    }

    fn meta(subtask: u32) -> TaskMeta {
        TaskMeta { subtask, key_groups: (0, 0), state: vec![], source: Some(vec![subtask as u8]), sink: None, state_versions: Default::default() }
    }

    #[test]
    fn one_checkpoint_at_a_time_completes_with_every_ack_and_stale_acks_are_ignored() {
        let d = deployment();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut c = Coordinator::new(Duration::from_millis(100), 5, 2, t0);
        assert_eq!(c.due(ms(50)), None);
        assert_eq!(c.due(ms(100)), Some(5));
        assert_eq!(c.due(ms(300)), None, "one in flight");
        assert_eq!(c.ack(&d, 4, 0, Ok(meta(0)), ms(301)), AckOutcome::Waiting, "stale");
        assert_eq!(c.ack(&d, 5, 0, Ok(meta(1)), ms(302)), AckOutcome::Waiting);
        let AckOutcome::Complete(m) = c.ack(&d, 5, 0, Ok(meta(0)), ms(303)) else { panic!("complete") };
        assert_eq!((m.id, m.vertices[0].uid.as_str(), m.vertices[0].tasks.len()), (5, "src", 2));
        assert_eq!(m.vertices[0].tasks[0].subtask, 0, "ordered by subtask");
        assert_eq!(c.due(ms(150)), None, "the interval runs from trigger to trigger");
        assert_eq!(c.due(ms(403)), Some(6));
        assert!(matches!(c.ack(&d, 6, 0, Err("disk full".into()), ms(404)), AckOutcome::Failed(6, _)));
        assert_eq!(c.due(ms(504)), Some(7));
        assert_eq!(c.expire(ms(504 + 10_001)), Some(7));
        assert_eq!(c.next_id(), 8);
    }

    #[test]
    fn a_stop_with_savepoint_checkpoint_is_the_last_one_triggered_and_is_retried_when_it_fails() {
        let d = deployment();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut c = Coordinator::new(Duration::from_millis(100), 1, 1, t0);
        assert_eq!(c.due(ms(100)), Some(1));
        assert_eq!(c.force(true), 2, "the stop's checkpoint comes after the one in flight");
        assert_eq!(c.due(ms(110)), None, "one in flight");
        assert!(matches!(c.ack(&d, 1, 0, Ok(meta(0)), ms(120)), AckOutcome::Complete(_)));
        assert_eq!(c.due(ms(121)), Some(2), "forced: no waiting for the interval");
        assert!(matches!(c.ack(&d, 2, 0, Err("disk full".into()), ms(122)), AckOutcome::Failed(2, _)));
        assert_eq!(c.due(ms(123)), Some(3), "a failed stop is retried at once");
        assert!(matches!(c.ack(&d, 3, 0, Ok(meta(0)), ms(124)), AckOutcome::Complete(_)));
        assert_eq!(c.due(ms(10_000)), None, "nothing after the stop's checkpoint");
        assert_eq!(c.expire(ms(100_000)), None);
        c.resume();
        assert_eq!((c.due(ms(100_001)), c.stopping()), (Some(4), false), "a resumed run checkpoints again, at once");
    }

    #[test]
    fn a_subtask_at_its_end_stands_in_for_checkpoints_after_one_captured_it_and_the_last_end_forces_the_final_one() {
        let d = deployment();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut c = Coordinator::new(Duration::from_millis(100), 1, 2, t0);
        assert_eq!(c.due(ms(100)), Some(1));
        c.end_of_input(0, 1, 1);
        assert!(!c.all_ended());
        assert_eq!(c.ack(&d, 1, 0, Ok(meta(0)), ms(101)), AckOutcome::Waiting, "its ack of barrier 1 is on its way");
        let AckOutcome::Complete(m) = c.ack(&d, 1, 0, Ok(meta(1)), ms(102)) else { panic!("complete") };
        c.completed(&m);
        assert_eq!(c.due(ms(200)), Some(2));
        assert_eq!(c.ack(&d, 2, 0, Ok(meta(0)), ms(201)), AckOutcome::Waiting, "checkpoint 1 was before its end: no stand-in");
        let mut end = meta(1);
        end.source = Some(vec![9]);
        let AckOutcome::Complete(m) = c.ack(&d, 2, 0, Ok(end), ms(202)) else { panic!("its final snapshot completes 2") };
        c.completed(&m);
        assert_eq!(c.due(ms(300)), Some(3));
        let AckOutcome::Complete(m) = c.ack(&d, 3, 0, Ok(meta(0)), ms(301)) else { panic!("subtask 1 stands in") };
        assert_eq!(m.vertices[0].tasks[1].source, Some(vec![9]), "with the snapshot of its end");
        c.completed(&m);

        c.end_of_input(0, 0, 3);
        assert!(c.all_ended());
        assert_eq!(c.due(ms(301)), Some(4), "the final checkpoint is due at once");
        let AckOutcome::Complete(m) = c.ack(&d, 4, 0, Ok(meta(0)), ms(302)) else { panic!("the final checkpoint") };
        assert_eq!(m.vertices[0].tasks.len(), 2);
        assert_eq!(c.due(ms(10_000)), None, "none while the final checkpoint's metadata is written");
        c.not_completed(4);
        assert_eq!(c.due(ms(10_001)), Some(5), "a final checkpoint that could not be written is tried again");
        let AckOutcome::Complete(m) = c.ack(&d, 5, 0, Ok(meta(0)), ms(10_002)) else { panic!("the final checkpoint") };
        c.completed(&m);
        assert_eq!(c.due(ms(100_000)), None, "nothing after the final checkpoint");
    }
}
