//! Every transition of a Deployment without a JobManager: each test applies specs,
//! feeds what the service would see, and checks the commands and the record.

use std::time::SystemTime;

use weir_types::deploy::{DeploymentSpec, DeploymentState, DesiredState, RestoreStrategy, UpgradeStrategy};
use weir_types::submit::SubmitSpec;

use super::*;

fn spec(parallelism: u32) -> DeploymentSpec {
    DeploymentSpec {
        name: "sums".into(),
        state: DesiredState::Running,
        upgrade_strategy: UpgradeStrategy::Stateful,
        restore_strategy: RestoreStrategy::LatestState,
        savepoint_dir: Some("/data/sp".into()),
        template: SubmitSpec {
            artifact: Some("a1".into()),
            manifest: None,
            components: Default::default(),
            parallelism,
            args: Default::default(),
            input: None,
            output: Some("/data/out".into()),
            checkpoint_interval_ms: Some(300),
            restart_strategy: None,
            from_savepoint: None,
            allow_non_restored_state: false,
            from_checkpoint_of: None,
        },
    }
}

const SP1: &str = "/data/sp/sums-d1/sp-1";

fn submitted(version: u64, from: Option<&str>, parallelism: u32) -> Command {
    let template = SubmitSpec { from_savepoint: from.map(String::from), ..spec(parallelism).template };
    Command::Submit { version, template }
}

fn alive(ready: bool) -> Seen {
    Seen::Alive { ready, failure: None }
}

/// A Deployment whose first Job `j1` runs and is good.
fn running() -> Controller {
    let (mut c, commands) = Controller::create(spec(2), "d1".into(), SystemTime::UNIX_EPOCH).expect("valid");
    assert_eq!(commands, vec![submitted(1, None, 2)]);
    assert_eq!(c.state(), DeploymentState::Transitioning);
    assert_eq!(c.on(Event::Submitted { version: 1, result: Ok("j1".into()) }), vec![]);
    assert_eq!(c.state(), DeploymentState::Transitioning, "not good before a checkpoint");
    assert_eq!(c.on(Event::Job { job: "j1".into(), seen: alive(false) }), vec![]);
    assert_eq!(c.on(Event::Job { job: "j1".into(), seen: alive(true) }), vec![]);
    assert_eq!(c.state(), DeploymentState::Running);
    assert_eq!(c.record.last_good.as_ref().map(|g| g.version), Some(1));
    c
}

/// `running()` upgraded STATEFULly to parallelism 3: j1 stopped into sp-1, j2 submitted.
fn upgrading() -> Controller {
    let mut c = running();
    assert_eq!(c.apply(spec(3)), Ok(vec![Command::Stop { job: "j1".into(), dir: SP1.into() }]));
    assert_eq!(c.record.spec.version, 2);
    assert_eq!(c.state(), DeploymentState::Transitioning);
    assert_eq!(c.on(Event::Stopped { job: "j1".into(), result: Ok(()) }), vec![submitted(2, Some(SP1), 3)]);
    assert_eq!(c.record.latest_savepoint.as_deref(), Some(SP1));
    assert_eq!(c.on(Event::Submitted { version: 2, result: Ok("j2".into()) }), vec![]);
    c
}

#[test]
fn create_submits_and_is_running_once_its_job_checkpointed() {
    let c = running();
    assert_eq!(c.record.jobs.len(), 1);
    assert_eq!(c.record.jobs[0].job_id, "j1");
    assert_eq!(c.current_job(), Some("j1"));
}

#[test]
fn a_spec_without_savepoints_cannot_be_stateful() {
    let mut s = spec(1);
    s.savepoint_dir = None;
    assert!(Controller::create(s.clone(), "d".into(), SystemTime::UNIX_EPOCH).is_err());
    s.upgrade_strategy = UpgradeStrategy::Stateless;
    assert!(Controller::create(s.clone(), "d".into(), SystemTime::UNIX_EPOCH).is_ok());
    s.name = "a/b".into();
    assert!(Controller::create(s, "d".into(), SystemTime::UNIX_EPOCH).is_err());
}

#[test]
fn applying_the_same_spec_changes_nothing() {
    let mut c = running();
    let before = c.record.clone();
    assert_eq!(c.apply(spec(2)), Ok(vec![]));
    assert_eq!(c.record, before, "no new version, no new resource version");
    let mut other = spec(2);
    other.name = "other".into();
    assert!(c.apply(other).is_err());
}

#[test]
fn a_stateful_upgrade_stops_with_a_savepoint_and_starts_the_new_spec_from_it() {
    let mut c = upgrading();
    assert_eq!(c.record.jobs.iter().map(|j| (j.job_id.as_str(), j.spec_version)).collect::<Vec<_>>(), vec![("j2", 2), ("j1", 1)]);
    assert_eq!(c.record.jobs[0].from_savepoint.as_deref(), Some(SP1));
    c.on(Event::Job { job: "j2".into(), seen: alive(true) });
    assert_eq!(c.state(), DeploymentState::Running);
    assert_eq!(c.record.last_good.as_ref().map(|g| g.version), Some(2));
}

#[test]
fn a_stateless_upgrade_cancels_and_starts_fresh() {
    let mut c = running();
    let mut s = spec(3);
    s.upgrade_strategy = UpgradeStrategy::Stateless;
    assert_eq!(c.apply(s), Ok(vec![Command::Cancel { job: "j1".into() }]));
    assert_eq!(c.on(Event::Job { job: "j1".into(), seen: alive(true) }), vec![], "still cancelling");
    let commands = c.on(Event::Job { job: "j1".into(), seen: Seen::Ended { finished: false, error: None } });
    assert!(matches!(&commands[..], [Command::Submit { version: 2, template }] if template.from_savepoint.is_none() && template.parallelism == 3));
}

#[test]
fn upgrade_strategy_none_records_the_spec_for_the_next_start() {
    let mut c = running();
    let mut s = spec(3);
    s.upgrade_strategy = UpgradeStrategy::None;
    assert_eq!(c.apply(s.clone()), Ok(vec![]));
    assert_eq!(c.state(), DeploymentState::Running, "the old job runs on");
    s.state = DesiredState::Suspended;
    assert_eq!(c.apply(s), Ok(vec![Command::Stop { job: "j1".into(), dir: SP1.into() }]));
    assert_eq!(c.on(Event::Stopped { job: "j1".into(), result: Ok(()) }), vec![]);
    let commands = c.set_state(DesiredState::Running).expect("resume");
    assert!(matches!(&commands[..], [Command::Submit { version: 2, template }] if template.parallelism == 3));
}

#[test]
fn suspend_stops_with_a_savepoint_and_resume_starts_from_it() {
    let mut c = running();
    assert_eq!(c.set_state(DesiredState::Suspended), Ok(vec![Command::Stop { job: "j1".into(), dir: SP1.into() }]));
    assert_eq!(c.on(Event::Stopped { job: "j1".into(), result: Ok(()) }), vec![]);
    assert_eq!(c.state(), DeploymentState::Suspended);
    assert_eq!(c.deletable(), Ok(()));
    assert_eq!(c.set_state(DesiredState::Running), Ok(vec![submitted(1, Some(SP1), 2)]));
    assert!(c.deletable().is_err(), "a deployment with a job cannot be deleted");
}

#[test]
fn restore_strategy_none_resumes_without_state() {
    let mut c = running();
    c.set_state(DesiredState::Suspended).expect("suspend");
    c.on(Event::Stopped { job: "j1".into(), result: Ok(()) });
    let mut s = spec(2);
    s.restore_strategy = RestoreStrategy::None;
    s.state = DesiredState::Suspended;
    let commands = c.apply(s).expect("apply");
    assert_eq!(commands, vec![], "a new version, still suspended");
    let commands = c.set_state(DesiredState::Running).expect("resume");
    assert!(matches!(&commands[..], [Command::Submit { template, .. }] if template.from_savepoint.is_none()));
}

#[test]
fn an_upgrade_of_a_job_not_yet_running_waits_for_it() {
    let (mut c, _) = Controller::create(spec(2), "d1".into(), SystemTime::UNIX_EPOCH).expect("valid");
    c.on(Event::Submitted { version: 1, result: Ok("j1".into()) });
    assert_eq!(c.apply(spec(3)), Ok(vec![]), "no savepoint before the job runs");
    assert_eq!(c.on(Event::Job { job: "j1".into(), seen: alive(true) }), vec![Command::Stop { job: "j1".into(), dir: SP1.into() }]);
}

#[test]
fn cancel_cancels_and_settles() {
    let mut c = running();
    assert_eq!(c.set_state(DesiredState::Cancelled), Ok(vec![Command::Cancel { job: "j1".into() }]));
    assert_eq!(c.state(), DeploymentState::Transitioning);
    c.on(Event::Job { job: "j1".into(), seen: Seen::Ended { finished: false, error: None } });
    assert_eq!(c.state(), DeploymentState::Cancelled);
    assert_eq!(c.deletable(), Ok(()));
}

#[test]
fn a_new_spec_whose_job_fails_before_its_first_checkpoint_rolls_back_from_the_same_savepoint() {
    let mut c = upgrading();
    let failure = Seen::Alive { ready: false, failure: Some("poisoned record 3".into()) };
    assert_eq!(c.on(Event::Job { job: "j2".into(), seen: failure }), vec![Command::Cancel { job: "j2".into() }]);
    assert_eq!(c.record.spec.version, 1, "rolled back");
    let message = c.record.message.clone().unwrap_or_default();
    assert!(message.contains("rolled back to version 1") && message.contains("poisoned record 3"), "{message}");
    let commands = c.on(Event::Job { job: "j2".into(), seen: Seen::Ended { finished: false, error: None } });
    assert_eq!(commands, vec![submitted(1, Some(SP1), 2)], "the last good spec, from the savepoint the failed job started from");
    c.on(Event::Submitted { version: 1, result: Ok("j3".into()) });
    c.on(Event::Job { job: "j3".into(), seen: alive(true) });
    assert_eq!(c.state(), DeploymentState::Running);
    // The next apply of a changed spec is a new version number.
    c.apply(spec(4)).expect("apply");
    assert_eq!(c.record.spec.version, 3);
}

#[test]
fn a_new_spec_refused_at_submission_rolls_back() {
    let mut c = running();
    c.apply(spec(3)).expect("apply");
    c.on(Event::Stopped { job: "j1".into(), result: Ok(()) });
    let commands = c.on(Event::Submitted { version: 2, result: Err("wrong world".into()) });
    assert_eq!(commands, vec![submitted(1, Some(SP1), 2)]);
    assert!(c.record.message.as_deref().is_some_and(|m| m.contains("wrong world")));
}

#[test]
fn a_first_spec_that_fails_leaves_the_deployment_failed_until_a_user_acts() {
    let (mut c, _) = Controller::create(spec(2), "d1".into(), SystemTime::UNIX_EPOCH).expect("valid");
    c.on(Event::Submitted { version: 1, result: Ok("j1".into()) });
    let commands = c.on(Event::Job { job: "j1".into(), seen: Seen::Ended { finished: false, error: Some("boom".into()) } });
    assert_eq!(commands, vec![]);
    assert_eq!(c.state(), DeploymentState::Failed);
    assert_eq!(c.recover(), vec![], "a restarted JobManager does not retry a failed deployment");
    assert_eq!(c.apply(spec(3)).map(|c| c.len()), Ok(1), "a new spec tries again");
}

#[test]
fn a_stop_that_cannot_write_its_savepoint_leaves_the_old_spec_running() {
    let mut c = running();
    c.apply(spec(3)).expect("apply");
    assert_eq!(c.on(Event::Stopped { job: "j1".into(), result: Err("disk full".into()) }), vec![]);
    assert_eq!((c.record.spec.version, c.record.spec.spec.template.parallelism), (1, 2));
    assert_eq!(c.state(), DeploymentState::Running);
    assert!(c.record.message.as_deref().is_some_and(|m| m.contains("disk full")));
}

#[test]
fn a_job_that_finishes_settles_the_deployment_finished() {
    let mut c = running();
    c.on(Event::Job { job: "j1".into(), seen: Seen::Ended { finished: true, error: None } });
    assert_eq!(c.state(), DeploymentState::Finished);
    assert_eq!(c.recover(), vec![]);
}

#[test]
fn a_good_job_that_fails_for_good_fails_the_deployment() {
    let mut c = running();
    c.on(Event::Job { job: "j1".into(), seen: Seen::Alive { ready: true, failure: Some("restarted".into()) } });
    assert_eq!(c.state(), DeploymentState::Running, "a good job's restarts are its restart strategy's");
    c.on(Event::Job { job: "j1".into(), seen: Seen::Ended { finished: false, error: Some("too many".into()) } });
    assert_eq!(c.state(), DeploymentState::Failed);
}

#[test]
fn late_answers_are_ignored() {
    let mut c = upgrading();
    let before = c.record.clone();
    assert_eq!(c.on(Event::Submitted { version: 1, result: Ok("jx".into()) }), vec![]);
    assert_eq!(c.on(Event::Job { job: "j1".into(), seen: Seen::Unknown }), vec![]);
    assert_eq!(c.on(Event::Stopped { job: "j1".into(), result: Ok(()) }), vec![]);
    assert_eq!(c.record, before);
}

#[test]
fn a_jobmanager_restart_while_submitting_retries_the_submit() {
    let mut c = running();
    c.apply(spec(3)).expect("apply");
    c.on(Event::Stopped { job: "j1".into(), result: Ok(()) });
    let mut after = Controller::from_record(c.record.clone());
    assert_eq!(after.recover(), vec![submitted(2, Some(SP1), 3)]);
    // Or the service found the job the first submit made.
    assert_eq!(after.on(Event::Submitted { version: 2, result: Ok("j2".into()) }), vec![]);
    assert_eq!(after.current_job(), Some("j2"));
}

#[test]
fn a_jobmanager_restart_while_stopping_asks_again_if_the_job_was_resumed() {
    let mut c = running();
    c.apply(spec(3)).expect("apply");
    let mut after = Controller::from_record(c.record.clone());
    assert_eq!(after.recover(), vec![]);
    let commands = after.on(Event::StopInterrupted { job: "j1".into(), seen: alive(false), written: true });
    assert_eq!(commands, vec![], "the resumed job is not running yet");
    let commands = after.on(Event::Job { job: "j1".into(), seen: alive(true) });
    assert_eq!(commands, vec![Command::Stop { job: "j1".into(), dir: "/data/sp/sums-d1/sp-2".into() }], "a new directory");
    assert_eq!(after.on(Event::Stopped { job: "j1".into(), result: Ok(()) }), vec![submitted(2, Some("/data/sp/sums-d1/sp-2"), 3)]);
}

#[test]
fn a_jobmanager_restart_after_the_stop_went_through_goes_on_from_its_savepoint() {
    let mut c = running();
    c.apply(spec(3)).expect("apply");
    let mut after = Controller::from_record(c.record.clone());
    let ended = Seen::Ended { finished: false, error: None };
    assert_eq!(after.on(Event::StopInterrupted { job: "j1".into(), seen: ended, written: true }), vec![submitted(2, Some(SP1), 3)]);
}

#[test]
fn a_jobmanager_restart_while_cancelling_cancels_again() {
    let mut c = running();
    c.set_state(DesiredState::Cancelled).expect("cancel");
    let mut after = Controller::from_record(c.record.clone());
    assert_eq!(after.recover(), vec![Command::Cancel { job: "j1".into() }]);
}

#[test]
fn every_change_bumps_the_resource_version() {
    let mut c = running();
    let v = c.record.resource_version;
    c.on(Event::Job { job: "j1".into(), seen: alive(true) });
    assert_eq!(c.record.resource_version, v, "nothing changed");
    c.set_state(DesiredState::Suspended).expect("suspend");
    assert_eq!(c.record.resource_version, v + 1);
}

fn live(artifact: &str, parallelism: u32) -> DeploymentSpec {
    let mut s = spec(parallelism);
    s.upgrade_strategy = UpgradeStrategy::Live;
    s.template.artifact = Some(artifact.into());
    s
}

/// A LIVE Deployment whose first Job `j1` runs `a1` and is good.
fn running_live() -> Controller {
    let (mut c, commands) = Controller::create(live("a1", 2), "d1".into(), SystemTime::UNIX_EPOCH).expect("valid");
    assert_eq!(commands.len(), 1);
    assert_eq!(c.on(Event::Submitted { version: 1, result: Ok("j1".into()) }), vec![]);
    assert_eq!(c.on(Event::Job { job: "j1".into(), seen: alive(true) }), vec![]);
    assert_eq!(c.state(), DeploymentState::Running);
    c
}

#[test]
fn a_live_upgrade_of_the_component_alone_swaps_it_into_the_running_job() {
    let mut c = running_live();
    assert_eq!(c.apply(live("a2", 2)), Ok(vec![Command::Swap { job: "j1".into(), to: SwapTarget::Artifact("a2".into()) }]));
    assert_eq!(c.state(), DeploymentState::Transitioning);
    assert_eq!(c.current_job(), Some("j1"), "the job is the same while it swaps");
    // Polls while it swaps change nothing.
    assert_eq!(c.on(Event::Job { job: "j1".into(), seen: alive(true) }), vec![]);
    assert_eq!(c.on(Event::Swapped { job: "j1".into(), result: Ok(()) }), vec![]);
    assert_eq!(c.state(), DeploymentState::Running);
    assert_eq!(c.record.jobs.len(), 1, "no new job: {:?}", c.record.jobs);
    assert_eq!(c.record.jobs[0].spec_version, 2);
    assert_eq!(c.record.last_good.as_ref().map(|g| g.version), Some(2));
    assert_eq!(c.record.latest_savepoint, None, "no savepoint taken");
}

#[test]
fn a_refused_live_swap_leaves_the_job_on_its_version_and_says_why() {
    let mut c = running_live();
    assert_eq!(c.apply(live("bad", 2)), Ok(vec![Command::Swap { job: "j1".into(), to: SwapTarget::Artifact("bad".into()) }]));
    assert_eq!(c.on(Event::Swapped { job: "j1".into(), result: Err("incompatible: node 0".into()) }), vec![]);
    assert_eq!(c.state(), DeploymentState::Running);
    assert_eq!(c.record.spec.version, 1, "rolled back to the version the job runs");
    assert_eq!(c.record.spec.spec.template.artifact.as_deref(), Some("a1"));
    assert!(c.record.message.as_deref().is_some_and(|m| m.contains("incompatible: node 0")), "{:?}", c.record.message);
    assert_eq!(c.current_job(), Some("j1"));
}

#[test]
fn a_live_upgrade_that_changes_more_than_the_component_is_stateful() {
    let mut c = running_live();
    assert_eq!(c.apply(live("a2", 3)), Ok(vec![Command::Stop { job: "j1".into(), dir: SP1.into() }]));
}

#[test]
fn a_live_swap_in_flight_is_asked_again_after_a_jobmanager_restart() {
    let mut c = running_live();
    assert_eq!(c.apply(live("a2", 2)).map(|c| c.len()), Ok(1));
    let mut again = Controller::from_record(c.record.clone());
    assert_eq!(again.recover(), vec![Command::Swap { job: "j1".into(), to: SwapTarget::Artifact("a2".into()) }]);
    // The job ended meanwhile: handled as when it runs (a good job's end fails it).
    assert_eq!(again.on(Event::Job { job: "j1".into(), seen: Seen::Ended { finished: false, error: Some("lost".into()) } }), vec![]);
    assert_eq!(again.state(), DeploymentState::Failed);
}

/// A LIVE Deployment of a manifest job: `count.wasm` is artifact `count`.
fn live_manifest(manifest: &str, count: &str) -> DeploymentSpec {
    let mut s = spec(2);
    s.upgrade_strategy = UpgradeStrategy::Live;
    s.template.artifact = None;
    s.template.manifest = Some(manifest.into());
    s.template.components = [("parse.wasm", "parse"), ("count.wasm", count)].into_iter().map(|(n, a)| (n.into(), a.into())).collect();
    s
}

#[test]
fn a_live_upgrade_of_a_manifests_components_alone_swaps_the_changed_ones_and_any_other_change_is_stateful() {
    let (mut c, _) = Controller::create(live_manifest("m1", "count"), "d1".into(), SystemTime::UNIX_EPOCH).expect("valid");
    assert_eq!(c.on(Event::Submitted { version: 1, result: Ok("j1".into()) }), vec![]);
    assert_eq!(c.on(Event::Job { job: "j1".into(), seen: alive(true) }), vec![]);
    let changed = [("count.wasm".to_string(), "count2".to_string())].into_iter().collect();
    assert_eq!(c.apply(live_manifest("m1", "count2")), Ok(vec![Command::Swap { job: "j1".into(), to: SwapTarget::Components(changed) }]));
    assert_eq!(c.on(Event::Swapped { job: "j1".into(), result: Ok(()) }), vec![]);
    assert_eq!(c.record.jobs.len(), 1, "the same job: {:?}", c.record.jobs);
    assert_eq!(c.record.last_good.as_ref().map(|g| g.version), Some(2));
    // Another manifest (its graph may differ): stopped with a savepoint, as STATEFUL.
    assert_eq!(c.apply(live_manifest("m2", "count2")), Ok(vec![Command::Stop { job: "j1".into(), dir: SP1.into() }]));
}

/// A Submit of spec version `version` from Job `job`'s retained checkpoint.
fn submitted_from_checkpoint(version: u64, job: &str, parallelism: u32) -> Command {
    let template = SubmitSpec { from_checkpoint_of: Some(job.into()), ..spec(parallelism).template };
    Command::Submit { version, template }
}

/// `c`'s Job `job`, good, fails for good (its restart strategy gave up).
fn fails_for_good(c: &mut Controller, job: &str) {
    let failed = Seen::Ended { finished: false, error: Some("TaskManager lost".into()) };
    assert_eq!(c.on(Event::Job { job: job.into(), seen: failed }), vec![]);
    assert_eq!(c.state(), DeploymentState::Failed);
    assert_eq!(c.record.latest_checkpoint_of.as_deref(), Some(job));
}

#[test]
fn latest_state_resumes_a_failed_job_from_its_retained_checkpoint_not_the_older_savepoint() {
    // j1 stopped into sp-1 (a suspend), resumed as j2, which failed later: j2's
    // checkpoints are newer than sp-1.
    let mut c = running();
    c.set_state(DesiredState::Suspended).expect("suspend");
    c.on(Event::Stopped { job: "j1".into(), result: Ok(()) });
    assert_eq!(c.set_state(DesiredState::Running), Ok(vec![submitted(1, Some(SP1), 2)]));
    c.on(Event::Submitted { version: 1, result: Ok("j2".into()) });
    c.on(Event::Job { job: "j2".into(), seen: alive(true) });
    fails_for_good(&mut c, "j2");
    assert_eq!(c.record.latest_savepoint.as_deref(), Some(SP1), "the savepoint stays known");
    assert_eq!(c.set_state(DesiredState::Running), Ok(vec![submitted_from_checkpoint(1, "j2", 2)]));
    c.on(Event::Submitted { version: 1, result: Ok("j3".into()) });
    assert_eq!(c.record.jobs[0].from_checkpoint_of.as_deref(), Some("j2"));
    assert_eq!(c.record.jobs[0].from_savepoint, None);
    c.on(Event::Job { job: "j3".into(), seen: alive(true) });
    assert_eq!(c.state(), DeploymentState::Running);

    // A savepoint taken after it is newer: it wins from then on.
    assert_eq!(c.set_state(DesiredState::Suspended), Ok(vec![Command::Stop { job: "j3".into(), dir: "/data/sp/sums-d1/sp-2".into() }]));
    c.on(Event::Stopped { job: "j3".into(), result: Ok(()) });
    assert_eq!(c.record.latest_checkpoint_of, None);
    assert_eq!(c.set_state(DesiredState::Running), Ok(vec![submitted(1, Some("/data/sp/sums-d1/sp-2"), 2)]));
}

#[test]
fn a_new_spec_version_after_a_failure_starts_from_the_failed_jobs_checkpoint() {
    let mut c = running();
    fails_for_good(&mut c, "j1");
    assert_eq!(c.apply(spec(3)), Ok(vec![submitted_from_checkpoint(2, "j1", 3)]));
    // Version 2 fails before its first checkpoint: version 1 again, from the same
    // checkpoint (version 2 committed nothing).
    c.on(Event::Submitted { version: 2, result: Ok("j2".into()) });
    let failure = Seen::Alive { ready: false, failure: Some("bad record".into()) };
    assert_eq!(c.on(Event::Job { job: "j2".into(), seen: failure }), vec![Command::Cancel { job: "j2".into() }]);
    let ended = Seen::Ended { finished: false, error: None };
    assert_eq!(c.on(Event::Job { job: "j2".into(), seen: ended }), vec![submitted_from_checkpoint(1, "j1", 2)]);
    assert_eq!(c.record.latest_checkpoint_of.as_deref(), Some("j1"), "j2 never completed a checkpoint");
}

#[test]
fn a_job_cancelled_outside_the_deployment_is_resumed_from_its_checkpoint() {
    let mut c = running();
    let cancelled = Seen::Ended { finished: false, error: None };
    c.on(Event::Job { job: "j1".into(), seen: cancelled });
    assert_eq!(c.state(), DeploymentState::Failed);
    assert_eq!(c.record.latest_checkpoint_of.as_deref(), Some("j1"));
    assert_eq!(c.set_state(DesiredState::Running), Ok(vec![submitted_from_checkpoint(1, "j1", 2)]));
}

#[test]
fn latest_savepoint_and_none_ignore_retained_checkpoints() {
    for (strategy, expected) in [(RestoreStrategy::LatestSavepoint, Some(SP1)), (RestoreStrategy::None, None)] {
        let mut c = running();
        c.set_state(DesiredState::Suspended).expect("suspend");
        c.on(Event::Stopped { job: "j1".into(), result: Ok(()) });
        let mut s = spec(2);
        s.restore_strategy = strategy;
        s.state = DesiredState::Suspended;
        c.apply(s).expect("apply");
        assert_eq!(c.set_state(DesiredState::Running).map(|c| c.len()), Ok(1));
        c.on(Event::Submitted { version: 2, result: Ok("j2".into()) });
        c.on(Event::Job { job: "j2".into(), seen: alive(true) });
        fails_for_good(&mut c, "j2");
        let commands = c.set_state(DesiredState::Running).expect("resume");
        let template = SubmitSpec { from_savepoint: expected.map(String::from), ..spec(2).template };
        assert_eq!(commands, vec![Command::Submit { version: 2, template }], "{strategy:?}");
    }
}

#[test]
fn the_latest_state_survives_a_jobmanager_restart() {
    let mut c = running();
    fails_for_good(&mut c, "j1");
    c.set_state(DesiredState::Running).expect("resume");
    // The record as persisted, read back by a restarted JobManager mid-submit.
    let bytes = postcard::to_allocvec(&c.record).expect("encode");
    let mut after = Controller::from_record(postcard::from_bytes(&bytes).expect("decode"));
    assert_eq!(after.record.latest_checkpoint_of.as_deref(), Some("j1"));
    assert_eq!(after.recover(), vec![submitted_from_checkpoint(1, "j1", 2)]);
    assert_eq!(after.template(&Some(Restore::CheckpointOf("j1".into()))).from_checkpoint_of.as_deref(), Some("j1"));
}
