//! The job's life without processes or sleeps: each test feeds events at chosen
//! instants and checks the commands.

use std::time::{Duration, Instant};

use weir_checkpoint::{CheckpointMeta, TaskMeta};
use weir_control::protocol::{CheckpointAck, EndOfInput};
use weir_types::deployment::{CheckpointConfig, JobDeployment, JobStatus, RestoreFrom, SinkFiles, TaskEnd, TaskOutcome, TaskStats};

use super::*;
use crate::restart::RestartStrategy;
use weir_types::plan::{NodeKind, SinkKind};

/// One generator vertex of parallelism 2, checkpointed every 100 ms, not yet placed.
fn deployment() -> JobDeployment {
    JobDeployment {
        placement: vec![],
        sink_files: SinkFiles::PartPerSubtask,
        checkpoints: Some(CheckpointConfig { dir: "/ck".into(), interval_ms: 100, retain: 3 }),
        ..crate::coordinator::tests::deployment()
    }
}

/// TaskManager `n` of the registry.
fn tm(n: u64) -> TaskManagerId {
    TaskManagerId::new(n)
}

/// A driver and a clock.
struct Job {
    d: Driver,
    t0: Instant,
}

const FIXED: RestartStrategy = RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_millis(500) };

impl Job {
    fn new(restart: RestartStrategy) -> Self {
        let t0 = Instant::now();
        Self { d: Driver::new(deployment(), restart, 1, t0), t0 }
    }

    fn on(&mut self, ms: u64, e: Event) -> Vec<Command> {
        self.d.on(e, self.t0 + Duration::from_millis(ms))
    }

    fn run(&self) -> RunId {
        self.d.run()
    }

    /// Subtask 0 on TaskManager 10, subtask 1 on TaskManager 20.
    fn place(&mut self, ms: u64) -> Vec<Command> {
        let p = Placement {
            tms: vec![tm(10), tm(20)],
            addrs: vec!["a".into(), "b".into()],
            placement: vec![vec![0, 1]],
            slots: vec![(tm(10), 1), (tm(20), 1)],
        };
        self.on(ms, Event::Placed(p))
    }

    /// Placed, prepared and started.
    fn start(&mut self, ms: u64) {
        self.place(ms);
        let run = self.run();
        self.on(ms, Event::Prepared { run: run.clone(), tm: tm(10) });
        let out = self.on(ms, Event::Prepared { run: run.clone(), tm: tm(20) });
        assert!(out.contains(&Command::Start { run, to: vec![tm(10), tm(20)] }), "{out:?}");
        assert!(matches!(self.d.phase(), Phase::Running));
    }

    fn ack(&mut self, ms: u64, id: u64, subtask: u32) -> Vec<Command> {
        let task = Ok(TaskMeta { subtask, key_groups: (0, 0), state: vec![], source: Some(vec![]), sink: None, state_versions: Default::default() });
        self.on(ms, Event::Ack(CheckpointAck { run: self.run(), checkpoint: id, vertex: 0, task }))
    }

    fn end(&mut self, ms: u64, subtask: u32, outcome: TaskOutcome) -> Vec<Command> {
        self.on(ms, Event::TaskEnded(TaskEnd { run: self.run(), vertex: 0, subtask, outcome }))
    }

    fn lose(&mut self, ms: u64, tm: u64) -> Vec<Command> {
        self.on(ms, Event::TaskManagerLost { tm: TaskManagerId::new(tm), name: format!("tm-{tm}") })
    }

    /// Checkpoint `id` triggered at `ms`, acknowledged by both subtasks; its metadata.
    fn checkpoint(&mut self, ms: u64, id: u64) -> CheckpointMeta {
        let out = self.on(ms, Event::Tick);
        assert!(out.iter().any(|c| matches!(c, Command::Trigger { id: i, .. } if *i == id)), "checkpoint {id} triggered: {out:?}");
        self.ack(ms + 1, id, 0);
        let out = self.ack(ms + 2, id, 1);
        let Some(Command::Complete { meta, .. }) = out.into_iter().find(|c| matches!(c, Command::Complete { .. })) else { panic!("complete") };
        meta
    }

    fn completed(&mut self, ms: u64, run: RunId, meta: CheckpointMeta) -> Vec<Command> {
        self.on(ms, Event::Completed { run, meta, result: Ok(100) })
    }
}

fn has(out: &[Command], f: impl Fn(&Command) -> bool) -> bool {
    out.iter().any(f)
}

fn deploys(out: &[Command]) -> Option<&JobDeployment> {
    out.iter().find_map(|c| match c {
        Command::Deploy { deployment, .. } => Some(&**deployment),
        _ => None,
    })
}

#[test]
fn a_first_attempt_deploys_on_its_slots_and_starts_once_every_taskmanager_prepared() {
    let mut j = Job::new(FIXED);
    let out = j.place(0);
    let d = deploys(&out).expect("deploy");
    assert_eq!((d.attempt, d.placement.clone(), d.taskmanagers.clone()), (0, vec![vec![0, 1]], vec!["a".to_string(), "b".to_string()]));
    assert!(has(&out, |c| matches!(c, Command::Deploy { to, .. } if *to == vec![(tm(10), 0), (tm(20), 1)])));
    assert!(has(&out, |c| *c == Command::Persist));
    let run = j.run();
    assert!(j.on(1, Event::Prepared { run: run.clone(), tm: tm(10) }).is_empty(), "waits for the other");
    // Regression (a source set up late missed a barrier): nothing is triggered before
    // every subtask of the attempt was started.
    assert!(!has(&j.on(500, Event::Tick), |c| matches!(c, Command::Trigger { .. })));
    let out = j.on(501, Event::Prepared { run, tm: tm(20) });
    assert!(has(&out, |c| matches!(c, Command::Start { .. })));
    assert!(has(&j.on(700, Event::Tick), |c| matches!(c, Command::Trigger { id: 1, stop: false, .. })));
}

#[test]
fn a_failure_during_deploy_cancels_the_others_and_restarts() {
    let mut j = Job::new(FIXED);
    j.place(0);
    let run = j.run();
    let out = j.on(1, Event::PrepareFailed { run: run.clone(), tm: tm(20), error: "no such component".into() });
    assert!(has(&out, |c| matches!(c, Command::Cancel { to, .. } if *to == vec![tm(10), tm(20)])), "{out:?}");
    // TaskManager 10's prepared subtask reports its cancellation: the attempt is over.
    let out = j.end(2, 0, TaskOutcome::Cancelled);
    assert!(has(&out, |c| *c == Command::Release(vec![(tm(10), 1), (tm(20), 1)])));
    assert!(has(&out, |c| matches!(c, Command::Log(EventLevel::Warn, m) if m.contains("no such component"))), "{out:?}");
    assert_eq!(j.d.report(j.t0).status, JobStatus::Restarting);
    assert!(j.on(100, Event::Tick).is_empty(), "the delay runs");
    assert_eq!(j.on(502, Event::Tick), vec![Command::FindRestore]);
    assert_eq!(j.on(503, Event::Restorable(Ok(Found::default()))), vec![Command::Place]);
    let out = j.place(504);
    assert_eq!(deploys(&out).map(|d| (d.attempt, d.restore.clone())), Some((1, None)));
}

/// Restarts after a lost TaskManager, under every strategy.
#[test]
fn a_lost_taskmanager_restarts_the_job_as_its_strategy_says() {
    let lost_twice = |restart: RestartStrategy| {
        let mut j = Job::new(restart);
        let mut restarted = Vec::new();
        for round in 0..2u64 {
            let base = round * 10_000;
            j.start(base);
            j.lose(base + 1, 20);
            let out = j.end(base + 2, 0, TaskOutcome::Cancelled);
            assert!(has(&out, |c| matches!(c, Command::Release(_))));
            let phase = format!("{:?}", j.d.phase());
            restarted.push(phase.starts_with("Restarting"));
            if j.d.is_ended() {
                assert!(has(&out, |c| *c == Command::Ended));
                assert_eq!(j.d.report(j.t0).status, JobStatus::Failed);
                break;
            }
            // Restart due within the round; the newest checkpoint is looked up first.
            let out = j.on(base + 9_000, Event::Tick);
            assert_eq!(out, vec![Command::FindRestore], "{restart:?}");
            j.on(base + 9_001, Event::Restorable(Ok(Found::default())));
        }
        restarted
    };
    assert_eq!(lost_twice(RestartStrategy::None), vec![false]);
    assert_eq!(lost_twice(RestartStrategy::FixedDelay { attempts: 1, delay: Duration::from_millis(100) }), vec![true, false]);
    assert_eq!(lost_twice(RestartStrategy::FixedDelay { attempts: 5, delay: Duration::from_millis(100) }), vec![true, true]);
    let backoff = RestartStrategy::ExponentialBackoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
    assert_eq!(lost_twice(backoff), vec![true, true]);
    let rate = RestartStrategy::FailureRate { failures: 1, interval: Duration::from_secs(60), delay: Duration::from_millis(100) };
    assert_eq!(lost_twice(rate), vec![true, false], "two failures within the interval are too many");
}

/// The fence on the JobManager's side: once an attempt is superseded, its
/// acknowledgements, ends and preparations never count for the next.
#[test]
fn a_superseded_attempts_reports_never_count() {
    let mut j = Job::new(FIXED);
    j.start(0);
    let old = j.run();
    j.on(100, Event::Tick);
    j.ack(101, 1, 0);
    j.lose(102, 20);
    j.end(103, 0, TaskOutcome::Cancelled);
    j.on(700, Event::Tick);
    j.on(701, Event::Restorable(Ok(Found::default())));
    j.start(702);
    assert_ne!(j.run(), old);
    let stale = |id, subtask| {
        let task = Ok(TaskMeta { subtask, key_groups: (0, 0), state: vec![], source: Some(vec![]), sink: None, state_versions: Default::default() });
        Event::Ack(CheckpointAck { run: old.clone(), checkpoint: id, vertex: 0, task })
    };
    assert!(has(&j.on(802, Event::Tick), |c| matches!(c, Command::Trigger { id: 1, .. })), "checkpoint 1 again, for the new attempt");
    assert!(j.on(803, stale(1, 1)).is_empty(), "the zombie's ack of checkpoint 1");
    assert!(j.ack(804, 1, 0).is_empty(), "checkpoint 1 still waits for the new attempt's subtask 1");
    let ended = TaskEnd { run: old.clone(), vertex: 0, subtask: 1, outcome: TaskOutcome::Finished(TaskStats::default()) };
    assert!(j.on(805, Event::TaskEnded(ended)).is_empty(), "the zombie's end");
    assert!(j.on(806, Event::Prepared { run: old, tm: tm(20) }).is_empty());
    assert_eq!(j.d.report(j.t0).status, JobStatus::Running);
    assert!(has(&j.ack(807, 1, 1), |c| matches!(c, Command::Complete { .. })));
}

/// A checkpoint completes (its metadata written) after its attempt failed: the restart
/// waits for it and restores it, or it would restore an older checkpoint while this
/// one's output counts as committed.
#[test]
fn a_restart_waits_for_a_checkpoint_completion_in_flight() {
    let mut j = Job::new(FIXED);
    j.start(0);
    let run = j.run();
    let m = j.checkpoint(100, 1);
    j.lose(110, 20);
    j.end(111, 0, TaskOutcome::Cancelled);
    assert!(j.on(700, Event::Tick).is_empty(), "the metadata of checkpoint 1 is still being written");
    let out = j.completed(701, run, m);
    assert!(!has(&out, |c| matches!(c, Command::Announce { .. })), "nobody of the failed attempt commits: the restore does");
    assert_eq!(j.on(702, Event::Tick), vec![Command::FindRestore]);
    j.on(703, Event::Restorable(Ok(Found::restore(Some((1, "j/chk-1/_metadata".into()))))));
    let out = j.place(704);
    let d = deploys(&out).expect("deploy");
    assert_eq!(d.restore, Some(RestoreFrom::Checkpoint("j/chk-1/_metadata".into())));
    j.on(705, Event::Prepared { run: j.run(), tm: tm(10) });
    j.on(705, Event::Prepared { run: j.run(), tm: tm(20) });
    assert!(has(&j.on(806, Event::Tick), |c| matches!(c, Command::Trigger { id: 2, .. })), "ids go on after the restored one");
}

/// Unreadable checkpoints are never taken for none: the job would replay its input
/// into output already committed. They are looked up again with growing delays, then
/// the restart counts as a failure and the restart strategy decides.
#[test]
fn checkpoints_that_cannot_be_read_are_looked_up_again_then_fail_the_restart() {
    let mut j = Job::new(RestartStrategy::FixedDelay { attempts: 2, delay: Duration::from_millis(500) });
    j.start(0);
    j.lose(1, 20);
    j.end(2, 0, TaskOutcome::Cancelled);
    let mut at = 600;
    assert_eq!(j.on(at, Event::Tick), vec![Command::FindRestore]);
    for (lookup, delay) in [(1, 500), (2, 1_000), (3, 2_000), (4, 4_000)] {
        let out = j.on(at + 1, Event::Restorable(Err("permission denied".into())));
        let said = format!("lookup {lookup} of 5");
        assert!(matches!(out.as_slice(), [Command::Log(EventLevel::Error, m)] if m.contains("permission denied") && m.contains(&said)), "{out:?}");
        assert!(j.on(at + delay, Event::Tick).is_empty(), "the delay grows");
        at += delay + 1;
        assert_eq!(j.on(at, Event::Tick), vec![Command::FindRestore]);
    }
    // The fifth lookup fails too: a failed restart, the strategy allows another.
    let out = j.on(at + 1, Event::Restorable(Err("permission denied".into())));
    assert!(has(&out, |c| matches!(c, Command::Log(EventLevel::Warn, m) if m.contains("restart 1 failed, restart 2"))), "{out:?}");
    assert_eq!(j.d.report(j.t0).status, JobStatus::Restarting);
    // Storage is back in time for restart 2: it restores the checkpoint.
    assert_eq!(j.on(at + 600, Event::Tick), vec![Command::FindRestore]);
    assert_eq!(j.on(at + 601, Event::Restorable(Ok(Found::restore(Some((3, "j/chk-3/_metadata".into())))))), vec![Command::Place]);

    // The same with storage that stays broken: the strategy gives up, the job fails
    // with the storage's error, and no attempt ever started from nothing.
    let mut j = Job::new(RestartStrategy::FixedDelay { attempts: 1, delay: Duration::from_millis(500) });
    j.start(0);
    j.lose(1, 20);
    j.end(2, 0, TaskOutcome::Cancelled);
    let mut out = vec![];
    for tick in 0..200 {
        out = j.on(600 + tick * 1_000, Event::Tick);
        if out == vec![Command::FindRestore] {
            out = j.on(601 + tick * 1_000, Event::Restorable(Err("not a directory".into())));
        }
        assert!(!has(&out, |c| matches!(c, Command::Place)), "never placed without its checkpoints");
        if j.d.is_ended() {
            break;
        }
    }
    assert!(has(&out, |c| *c == Command::Ended), "{out:?}");
    let report = j.d.report(j.t0);
    assert_eq!(report.status, JobStatus::Failed);
    assert!(report.error.is_some_and(|e| e.contains("checkpoints cannot be read: not a directory")));
}

/// Completed checkpoints a restart passes over are named (a job event and a metric),
/// and the gap between the one restored and the newest is announced as written again.
#[test]
fn a_restore_past_skipped_checkpoints_names_them_and_the_gap() {
    let mut j = Job::new(FIXED);
    j.start(0);
    j.lose(1, 20);
    j.end(2, 0, TaskOutcome::Cancelled);
    j.on(600, Event::Tick);
    let skipped = vec![(5, "chk-5/0-0-a0.state: checksum mismatch".to_string()), (4, "chk-4/_metadata: truncated".to_string())];
    let out = j.on(601, Event::Restorable(Ok(Found { restore: Some((3, "j/chk-3/_metadata".into())), skipped })));
    assert!(has(&out, |c| matches!(c, Command::Skipped { id: 5, cause } if cause.contains("checksum mismatch"))), "{out:?}");
    assert!(has(&out, |c| matches!(c, Command::Skipped { id: 4, .. })), "{out:?}");
    assert!(has(
        &out,
        |c| matches!(c, Command::Log(EventLevel::Warn, m) if m.contains("attempt 1 restores checkpoint 3") && m.contains("epochs up to 5") && m.contains("at-least-once"))
    ));
    assert_eq!(out.last(), Some(&Command::Place));
    let out = j.place(602);
    assert_eq!(deploys(&out).and_then(|d| d.restore.clone()), Some(RestoreFrom::Checkpoint("j/chk-3/_metadata".into())));
    j.on(603, Event::Prepared { run: j.run(), tm: tm(10) });
    j.on(603, Event::Prepared { run: j.run(), tm: tm(20) });
    // New checkpoint ids go on above every completed one: epochs never repeat.
    assert!(has(&j.on(800, Event::Tick), |c| matches!(c, Command::Trigger { id: 6, .. })));
}

impl Job {
    fn end_of_input(&mut self, ms: u64, subtask: u32, last_checkpoint: u64) -> Vec<Command> {
        self.on(ms, Event::EndOfInput(EndOfInput { run: self.run(), vertex: 0, subtask, last_checkpoint }))
    }
}

fn triggered(out: &[Command]) -> Option<u64> {
    out.iter().find_map(|c| match c {
        Command::Trigger { id, .. } => Some(*id),
        _ => None,
    })
}

/// Flink's final checkpoint: a subtask at the end of its input waits; once every
/// subtask has, the final checkpoint is triggered at once (not on the interval), no
/// other follows it, its completion is announced (sinks commit, subtasks finish), and
/// only then is the job FINISHED.
#[test]
fn the_last_end_of_input_triggers_the_final_checkpoint_and_the_job_finishes_after_it() {
    let mut j = Job::new(FIXED);
    j.start(0);
    let run = j.run();
    let m = j.checkpoint(100, 1);
    j.completed(101, run.clone(), m);
    assert!(j.end_of_input(120, 0, 1).is_empty(), "subtask 1 still runs: nothing to do yet");
    assert!(matches!(j.d.phase(), Phase::Running));
    let out = j.end_of_input(130, 1, 1);
    assert!(matches!(j.d.phase(), Phase::Finishing));
    assert_eq!(triggered(&out), Some(2), "at once, not at 200: {out:?}");
    assert!(j.d.tracker().subtasks().iter().all(|s| s.end_of_input && s.status == JobStatus::Running));
    j.ack(131, 2, 0);
    let out = j.ack(132, 2, 1);
    let Some(Command::Complete { meta, .. }) = out.into_iter().find(|c| matches!(c, Command::Complete { .. })) else { panic!("complete") };
    assert_eq!(triggered(&j.on(10_000, Event::Tick)), None, "none while the final checkpoint's metadata is written");
    let out = j.completed(10_001, run.clone(), meta);
    assert!(has(&out, |c| matches!(c, Command::Announce { id: 2, .. })), "{out:?}");
    assert_eq!(triggered(&j.on(20_000, Event::Tick)), None, "nothing after the final checkpoint");
    j.end(20_001, 0, TaskOutcome::Finished(TaskStats::default()));
    assert!(!j.d.is_ended());
    let out = j.end(20_002, 1, TaskOutcome::Finished(TaskStats::default()));
    assert!(has(&out, |c| *c == Command::Ended));
    assert_eq!(j.d.report(j.t0).status, JobStatus::Finished);
    assert_eq!(j.d.last_checkpoint(), Some(2));
}

/// A subtask at its end answers the checkpoints triggered after it on its own; once
/// one completed with it, its snapshot stands in for it and it may leave. A final
/// checkpoint that fails is tried again after the interval.
#[test]
fn a_subtask_captured_at_its_end_stands_in_and_a_failed_final_checkpoint_is_retried() {
    let mut j = Job::new(FIXED);
    j.start(0);
    let run = j.run();
    j.end_of_input(50, 0, 0);
    let m = j.checkpoint(100, 1);
    j.completed(101, run.clone(), m);
    j.end(102, 0, TaskOutcome::Finished(TaskStats::default()));
    assert_eq!(triggered(&j.on(200, Event::Tick)), Some(2));
    let out = j.ack(201, 2, 1);
    let Some(Command::Complete { meta, .. }) = out.into_iter().find(|c| matches!(c, Command::Complete { .. })) else { panic!("stood in") };
    assert_eq!(meta.vertices[0].tasks.len(), 2);
    j.completed(202, run.clone(), meta);
    let out = j.end_of_input(250, 1, 2);
    assert_eq!(triggered(&out), Some(3));
    let out = j.ack(251, 3, 1);
    let Some(Command::Complete { meta, .. }) = out.into_iter().find(|c| matches!(c, Command::Complete { .. })) else { panic!("complete") };
    let out = j.on(252, Event::Completed { run: run.clone(), meta, result: Err("disk full".into()) });
    assert!(has(&out, |c| matches!(c, Command::Checkpoint { id: 3, status: CheckpointStatus::Failed, .. })));
    assert_eq!(triggered(&j.on(349, Event::Tick)), None, "after the interval, as any failed checkpoint");
    assert_eq!(triggered(&j.on(350, Event::Tick)), Some(4), "the final checkpoint again");
    assert!(!j.d.is_ended());
}

/// A failure before the final checkpoint completes restores the last completed
/// checkpoint: the sinks' last epochs were pending, so that is exactly once and no
/// gap is announced; checkpoint ids go on from the restored one.
#[test]
fn a_failure_while_the_final_checkpoint_is_in_flight_restores_without_a_gap() {
    let mut d = deployment();
    d.plan.nodes[0].kind = NodeKind::Sink(SinkKind::File(Some("/out".into())));
    let t0 = Instant::now();
    let mut j = Job { d: Driver::new(d, FIXED, 1, t0), t0 };
    j.start(0);
    let run = j.run();
    let m = j.checkpoint(100, 1);
    j.completed(101, run, m);
    j.end_of_input(150, 0, 1);
    j.end_of_input(151, 1, 1);
    j.ack(152, 2, 0);
    j.lose(200, 20);
    j.end(201, 0, TaskOutcome::Cancelled);
    assert!(matches!(j.d.phase(), Phase::Restarting(_)));
    j.on(800, Event::Tick);
    let out = j.on(801, Event::Restorable(Ok(Found::restore(Some((1, "j/chk-1/_metadata".into()))))));
    assert!(!has(&out, |c| matches!(c, Command::Log(_, m) if m.contains("at-least-once"))), "no gap: {out:?}");
    j.start(802);
    assert_eq!(triggered(&j.on(1_000, Event::Tick)), Some(2), "checkpoint 2 never completed: its id is free");
}

/// When no completed checkpoint can be restored, the job never starts from nothing on
/// its own: the restart fails, and the user decides (by submitting it again).
#[test]
fn a_job_whose_checkpoints_are_all_unrestorable_does_not_start_from_nothing() {
    let mut j = Job::new(FIXED);
    j.start(0);
    j.lose(1, 20);
    j.end(2, 0, TaskOutcome::Cancelled);
    j.on(600, Event::Tick);
    let everything_corrupt = Found { restore: None, skipped: vec![(2, "bad".into()), (1, "bad".into())] };
    let out = j.on(601, Event::Restorable(Ok(everything_corrupt)));
    assert!(!has(&out, |c| matches!(c, Command::Place)), "{out:?}");
    assert!(has(&out, |c| matches!(c, Command::Log(EventLevel::Warn, m) if m.contains("not starting from nothing"))), "{out:?}");
    // The checkpoints this JobManager saw complete count too, when storage shows none.
    let mut j = Job::new(RestartStrategy::None);
    j.start(0);
    let run = j.run();
    let m = j.checkpoint(100, 1);
    j.completed(101, run, m);
    j.d.restart = FIXED;
    j.lose(200, 20);
    j.end(201, 0, TaskOutcome::Cancelled);
    j.on(800, Event::Tick);
    let out = j.on(801, Event::Restorable(Ok(Found::default())));
    assert!(!has(&out, |c| matches!(c, Command::Place)), "{out:?}");
}

#[test]
fn a_savepoint_is_exported_from_the_next_completed_checkpoint() {
    let mut j = Job::new(FIXED);
    j.start(0);
    j.on(50, Event::Savepoint { request: 7, dir: "/sp".into(), stop: false });
    let run = j.run();
    let m = j.checkpoint(51, 1);
    let out = j.completed(52, run.clone(), m.clone());
    assert!(has(&out, |c| *c == Command::Announce { run: run.clone(), id: 1, to: vec![tm(10), tm(20)] }));
    assert!(has(&out, |c| *c == Command::Export { request: 7, meta: m.clone(), dir: "/sp".into(), stop: false }));
    let out = j.on(53, Event::SavepointWritten(Exported { request: 7, id: 1, dir: "/sp".into(), stop: false, result: Ok(()) }));
    assert!(has(&out, |c| *c == Command::Reply { request: 7, result: Ok(1) }));
    assert!(matches!(j.d.phase(), Phase::Running));
}

/// Regression (a stop's savepoint committed past): a periodic checkpoint in flight when
/// the stop is asked for completes first; the stop's own checkpoint comes next, carries
/// `stop`, and once it completes nothing is triggered again, not while its savepoint is
/// being written either; then the job is cancelled.
#[test]
fn a_checkpoint_completing_during_a_stop_with_savepoint_is_not_the_savepoint_and_none_follows_it() {
    let mut j = Job::new(FIXED);
    j.start(0);
    let run = j.run();
    assert!(has(&j.on(100, Event::Tick), |c| matches!(c, Command::Trigger { id: 1, stop: false, .. })));
    j.on(101, Event::Savepoint { request: 1, dir: "/sp".into(), stop: true });
    assert!(matches!(j.d.phase(), Phase::Stopping));
    j.ack(102, 1, 0);
    let out = j.ack(103, 1, 1);
    let Some(Command::Complete { meta, .. }) = out.into_iter().next() else { panic!("checkpoint 1 complete") };
    let out = j.completed(104, run.clone(), meta);
    assert!(!has(&out, |c| matches!(c, Command::Export { .. })), "checkpoint 1 was triggered before the stop: {out:?}");
    let out = j.on(105, Event::Tick);
    assert!(has(&out, |c| matches!(c, Command::Trigger { id: 2, stop: true, .. })), "the stop's checkpoint, at once: {out:?}");
    j.ack(106, 2, 0);
    let out = j.ack(107, 2, 1);
    let Some(Command::Complete { meta, .. }) = out.into_iter().next() else { panic!("checkpoint 2 complete") };
    let out = j.completed(108, run.clone(), meta.clone());
    assert!(has(&out, |c| *c == Command::Export { request: 1, meta: meta.clone(), dir: "/sp".into(), stop: true }));
    for ms in [300, 1_000, 5_000] {
        assert!(!has(&j.on(ms, Event::Tick), |c| matches!(c, Command::Trigger { .. })), "nothing after the stop's checkpoint");
    }
    let out = j.on(5_001, Event::SavepointWritten(Exported { request: 1, id: 2, dir: "/sp".into(), stop: true, result: Ok(()) }));
    assert!(has(&out, |c| matches!(c, Command::Cancel { .. })), "{out:?}");
    assert!(!has(&out, |c| matches!(c, Command::Reply { .. })), "answered once the job ended: {out:?}");
    j.end(5_002, 0, TaskOutcome::Cancelled);
    let out = j.end(5_003, 1, TaskOutcome::Cancelled);
    assert!(has(&out, |c| *c == Command::Ended));
    // The stop's answer comes after its slots are given back: a resume right after finds them.
    let released = out.iter().position(|c| matches!(c, Command::Release(_)));
    let replied = out.iter().position(|c| *c == Command::Reply { request: 1, result: Ok(2) });
    assert!(released.is_some() && replied > released, "{out:?}");
    assert_eq!(j.d.report(j.t0).status, JobStatus::Canceled);
}

#[test]
fn a_stop_whose_savepoint_cannot_be_written_lets_the_job_go_on() {
    let mut j = Job::new(FIXED);
    j.start(0);
    let run = j.run();
    j.on(10, Event::Savepoint { request: 3, dir: "/unwritable".into(), stop: true });
    let m = j.checkpoint(11, 1);
    j.completed(12, run, m);
    let failed = Exported { request: 3, id: 1, dir: "/unwritable".into(), stop: true, result: Err("read-only".into()) };
    let out = j.on(13, Event::SavepointWritten(failed));
    assert!(has(&out, |c| *c == Command::Reply { request: 3, result: Err("read-only".into()) }));
    assert!(!has(&out, |c| matches!(c, Command::Cancel { .. })));
    assert!(matches!(j.d.phase(), Phase::Running));
    assert!(has(&j.on(14, Event::Tick), |c| matches!(c, Command::Trigger { id: 2, stop: false, .. })), "a plain checkpoint wakes the sources");
}

#[test]
fn a_resumed_job_restarts_from_its_newest_checkpoint_as_a_new_attempt() {
    let t0 = Instant::now();
    let mut record = Job::new(FIXED).d.record();
    record.deployment.attempt = 4;
    record.restarts = 2;
    let mut d = Driver::resume(record, t0);
    assert_eq!(d.report(t0).status, JobStatus::Restarting);
    assert_eq!(d.on(Event::Tick, t0), vec![Command::FindRestore]);
    assert_eq!(d.on(Event::Restorable(Ok(Found::restore(Some((9, "j/chk-9/_metadata".into()))))), t0), vec![Command::Place]);
    let p = Placement { tms: vec![tm(10)], addrs: vec!["a".into()], placement: vec![vec![0, 0]], slots: vec![(tm(10), 2)] };
    let out = d.on(Event::Placed(p), t0);
    let dep = deploys(&out).expect("deploy");
    assert_eq!((dep.attempt, dep.restore.clone()), (5, Some(RestoreFrom::Checkpoint("j/chk-9/_metadata".into()))));
    assert_eq!((d.report(t0).restarts, d.last_checkpoint()), (2, Some(9)));
}

/// A resumed job whose last attempt restored a checkpoint never starts from nothing,
/// even if the storage shows no checkpoint now (a directory gone missing).
#[test]
fn a_resumed_job_that_restored_a_checkpoint_before_does_not_start_from_nothing() {
    let t0 = Instant::now();
    let mut record = Job::new(FIXED).d.record();
    record.deployment.restore = Some(RestoreFrom::Checkpoint("j/chk-7/_metadata".into()));
    let mut d = Driver::resume(record, t0);
    assert_eq!(d.on(Event::Tick, t0), vec![Command::FindRestore]);
    let out = d.on(Event::Restorable(Ok(Found::default())), t0);
    assert!(has(&out, |c| matches!(c, Command::Log(EventLevel::Warn, m) if m.contains("the newest, 7"))), "{out:?}");
    assert!(!has(&out, |c| matches!(c, Command::Place)), "{out:?}");
}

#[test]
fn a_cancel_during_the_restart_delay_ends_the_job_at_once() {
    let mut j = Job::new(FIXED);
    j.start(0);
    j.lose(1, 20);
    j.end(2, 0, TaskOutcome::Cancelled);
    j.on(3, Event::Savepoint { request: 5, dir: "/sp".into(), stop: false });
    let out = j.on(10, Event::Cancel);
    assert!(has(&out, |c| *c == Command::Ended));
    assert!(!has(&out, |c| matches!(c, Command::Cancel { .. })), "nothing runs between attempts");
    assert_eq!(j.d.report(j.t0).status, JobStatus::Canceled);
    assert!(j.d.terminating());
    assert!(j.on(600, Event::Tick).is_empty(), "no restart after a cancel");
    // Slots granted after the cancel are given back.
    assert!(has(&j.place(601), |c| matches!(c, Command::Release(_))));
}

#[test]
fn slots_that_are_not_free_yet_are_asked_for_again() {
    let mut j = Job::new(FIXED);
    j.start(0);
    j.lose(1, 20);
    j.end(2, 0, TaskOutcome::Cancelled);
    j.on(600, Event::Tick);
    j.on(601, Event::Restorable(Ok(Found::restore(Some((3, "j/chk-3/_metadata".into()))))));
    j.on(602, Event::NoSlots { needed: 2, free: 1 });
    assert!(j.on(610, Event::Tick).is_empty());
    assert_eq!(j.on(700, Event::Tick), vec![Command::Place], "the restore found stays");
    assert_eq!(deploys(&j.place(701)).and_then(|d| d.restore.clone()), Some(RestoreFrom::Checkpoint("j/chk-3/_metadata".into())));
}

#[test]
fn a_job_finishes_when_every_subtask_finished() {
    let mut j = Job::new(FIXED);
    j.start(0);
    j.end(1, 0, TaskOutcome::Finished(TaskStats::default()));
    let out = j.end(2, 1, TaskOutcome::Finished(TaskStats::default()));
    assert!(has(&out, |c| *c == Command::Ended));
    assert_eq!(j.d.report(j.t0).status, JobStatus::Finished);
}

#[test]
fn a_job_without_enough_free_slots_waits_for_them_saying_why() {
    let mut j = Job::new(RestartStrategy::None);
    j.d.set_slot_timeout(Duration::from_secs(1));
    let out = j.on(0, Event::NoSlots { needed: 2, free: 1 });
    assert!(has(&out, |c| matches!(c, Command::Log(EventLevel::Warn, m) if m.contains("needs 2 slots but only 1 are free"))), "{out:?}");
    let r = j.d.report(j.t0);
    assert_eq!(r.waiting.as_deref(), Some("waiting for slots: the job needs 2 slots but only 1 are free"));
    assert_eq!(r.status, JobStatus::Created, "not started yet");
    assert!(j.on(10, Event::Tick).is_empty(), "asks again after a pause");
    assert_eq!(j.on(30, Event::Tick), vec![Command::Place]);
    assert!(!has(&j.on(31, Event::NoSlots { needed: 2, free: 0 }), |c| matches!(c, Command::Log(..))), "said once");
    // Slots came: it deploys and no longer waits.
    assert_eq!(j.on(60, Event::Tick), vec![Command::Place]);
    assert!(deploys(&j.place(61)).is_some());
    assert_eq!(j.d.report(j.t0).waiting, None);
}

#[test]
fn a_job_that_waits_for_slots_past_the_timeout_fails_naming_them() {
    let mut j = Job::new(RestartStrategy::None);
    j.d.set_slot_timeout(Duration::from_secs(1));
    j.on(0, Event::NoSlots { needed: 3, free: 2 });
    j.on(500, Event::Tick);
    assert!(!has(&j.on(501, Event::NoSlots { needed: 3, free: 2 }), |c| *c == Command::Ended));
    j.on(1_000, Event::Tick);
    let out = j.on(1_001, Event::NoSlots { needed: 3, free: 2 });
    assert!(has(&out, |c| *c == Command::Ended), "{out:?}");
    let r = j.d.report(j.t0);
    assert_eq!(r.status, JobStatus::Failed);
    assert!(r.error.as_deref().is_some_and(|e| e.contains("needs 3 slots but only 2 are free (waited 1s")), "{:?}", r.error);
    assert_eq!(r.waiting, None);
}

/// Fuel of an attempt that failed is the job's too, apart: the lost TaskManager's
/// subtask counts with its last heartbeat; a superseded attempt's late report never
/// counts; a resumed driver (a new JobManager) keeps the sum.
#[test]
fn fuel_of_failed_attempts_adds_up_across_restarts_and_a_resume() {
    let progress = |run: RunId, subtask, fuel| TaskProgress {
        run,
        vertex: 0,
        subtask,
        records_in: 0,
        records_in_by_input: vec![],
        records_out: 0,
        fuel,
        backpressured_ns: 0,
        throttled_ns: 0,
        watermark: None,
        side_outputs: vec![],
        source_lag: vec![],
    };
    let mut j = Job::new(FIXED);
    j.start(0);
    let old = j.run();
    j.d.progress(&progress(old.clone(), 0, 100), j.t0);
    j.d.progress(&progress(old.clone(), 1, 40), j.t0);
    j.lose(10, 20);
    j.end(11, 0, TaskOutcome::Cancelled);
    j.on(700, Event::Tick);
    j.on(701, Event::Restorable(Ok(Found::default())));
    j.start(702);
    j.d.progress(&progress(old, 1, 1_000), j.t0);
    j.d.progress(&progress(j.run(), 0, 7), j.t0);
    let r = j.d.report(j.t0);
    assert_eq!((r.vertices[0].fuel, r.vertices[0].fuel_failed_attempts), (147, 140));
    assert_eq!(j.d.failed_fuel(), &[140]);

    let resumed = Driver::resume(j.d.record(), j.t0);
    assert_eq!(resumed.failed_fuel(), &[140], "persisted with the job's record");
}

fn hash(c: char) -> ComponentHash {
    c.to_string().repeat(64).parse().expect("hash")
}

/// A live swap: shipped to both TaskManagers, no checkpoint while they arm it, then its
/// switch point at once; the job's code changes only when that checkpoint completed.
#[test]
fn a_live_swap_holds_checkpoints_until_armed_and_commits_the_code_when_its_checkpoint_completes() {
    let mut j = Job::new(FIXED);
    j.start(0);
    let run = j.run();
    let out = j.on(10, Event::Swap { request: 3, components: vec![hash('b')] });
    assert!(has(&out, |c| *c == Command::Swap { run: run.clone(), components: vec![hash('b')], at: 1, to: vec![tm(10), tm(20)] }), "{out:?}");
    assert!(has(&j.on(11, Event::Swap { request: 4, components: vec![hash('c')] }), |c| matches!(c, Command::Reply { request: 4, result: Err(_) })));
    j.on(12, Event::SwapReady { run: run.clone(), tm: tm(10), result: Ok(()) });
    assert_eq!(triggered(&j.on(500, Event::Tick)), None, "not armed on every taskmanager yet");
    j.on(501, Event::SwapReady { run: run.clone(), tm: tm(20), result: Ok(()) });
    let before = j.d.deployment().code.components.clone();
    let m = j.checkpoint(502, 1);
    assert_eq!(j.d.deployment().code.components, before, "not before the switch point's checkpoint completed");
    let out = j.completed(503, run.clone(), m);
    assert!(has(&out, |c| *c == Command::SwapCommitted { components: vec![hash('b')] }), "{out:?}");
    assert!(has(&out, |c| *c == Command::Persist));
    assert!(has(&out, |c| *c == Command::Reply { request: 3, result: Ok(1) }));
    assert_eq!(j.d.deployment().code.components, vec![hash('b')]);
    assert_eq!(j.d.record().deployment.code.components, vec![hash('b')], "a restart runs the new code");
    assert_eq!(j.d.deployment().attempt, 0, "no restart");
}

/// A TaskManager that cannot load the code aborts the swap everywhere; an attempt
/// that fails before the switch point's checkpoint completed restarts on the old code.
#[test]
fn a_live_swap_that_cannot_be_armed_or_whose_attempt_fails_leaves_the_old_code() {
    let mut j = Job::new(FIXED);
    j.start(0);
    let run = j.run();
    let old = j.d.deployment().code.components.clone();
    j.on(10, Event::Swap { request: 1, components: vec![hash('b')] });
    let out = j.on(11, Event::SwapReady { run: run.clone(), tm: tm(20), result: Err("no space".into()) });
    assert!(has(&out, |c| *c == Command::SwapAbort { run: run.clone(), to: vec![tm(10), tm(20)] }), "{out:?}");
    assert!(has(&out, |c| matches!(c, Command::Reply { request: 1, result: Err(e) } if e.contains("no space"))));
    assert_eq!(triggered(&j.on(500, Event::Tick)), Some(1), "checkpoints go on");

    j.on(600, Event::Swap { request: 2, components: vec![hash('b')] });
    j.on(601, Event::SwapReady { run: run.clone(), tm: tm(10), result: Ok(()) });
    j.on(602, Event::SwapReady { run: run.clone(), tm: tm(20), result: Ok(()) });
    let out = j.lose(603, 20);
    assert!(has(&out, |c| matches!(c, Command::Cancel { .. })), "{out:?}");
    let out = j.end(604, 0, TaskOutcome::Cancelled);
    assert!(has(&out, |c| matches!(c, Command::Reply { request: 2, result: Err(_) })), "{out:?}");
    assert_eq!(j.d.deployment().code.components, old);
}
