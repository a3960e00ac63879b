//! Broadcast state: the `rules` example (sensor readings against threshold rules that
//! change while the job runs, the rules broadcast to every subtask and kept in its
//! broadcast state) through `weir run` and a real cluster, checked exactly against
//! results computed here without Weir; a savepoint taken after the rules ended, at
//! parallelism 2, resumed at 3: the new subtask has only the restored broadcast state
//! to go by.

use std::ffi::OsStr;

use weir_testkit::{TestCluster, splitmix64, stderr, wait_until};

use crate::WEIR;
use crate::streams::{checkpoint, job_line, part_lines, run_embedded, submit, subtasks};

/// Mixed into a reading's index for its value (the example's `SALT`).
const SALT: u64 = 0x5EED;

/// The arguments of a `rules` run.
#[derive(Clone, Copy)]
struct Rules {
    rules: u64,
    events: u64,
    classes: u64,
    sensors: u64,
    rule_every: u64,
    event_rate: u64,
}

impl Rules {
    fn args(&self) -> Vec<String> {
        let Rules { rules, events, classes, sensors, rule_every, event_rate } = self;
        [("rules", rules), ("events", events), ("classes", classes), ("sensors", sensors), ("rule-every", rule_every), ("event-rate", event_rate)]
            .iter()
            .flat_map(|(k, v)| ["--arg".to_string(), format!("{k}={v}")])
            .collect()
    }

    /// Every reading above the threshold its class had at its event time: rule `j`
    /// (class `j % classes`, threshold `splitmix64(j) % 1000`) counts from
    /// `j * rule_every` ms on. Sorted `sensor<TAB>i threshold` lines.
    fn reference(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for i in 0..self.events {
            let ts = i / self.event_rate;
            let sensor = splitmix64(i) % self.sensors;
            let class = sensor % self.classes;
            let rule = (0..self.rules).filter(|j| j % self.classes == class && j * self.rule_every <= ts).max();
            let Some(threshold) = rule.map(|j| splitmix64(j) % 1000) else { continue };
            if splitmix64(i ^ SALT) % 1000 > threshold {
                lines.push(format!("{sensor}\t{i} {threshold}"));
            }
        }
        lines.sort_unstable();
        lines
    }
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort_unstable();
    lines
}

/// The thresholds the reference's alerts of `sensor` used: more than one means the rule
/// changed under it while it ran.
fn thresholds_of(lines: &[String], sensor: &str) -> std::collections::BTreeSet<String> {
    lines.iter().filter_map(|l| l.strip_prefix(&format!("{sensor}\t"))).filter_map(|r| r.split_whitespace().nth(1)).map(str::to_string).collect()
}

#[test]
fn readings_against_changing_broadcast_rules_are_exact_at_parallelism_1_and_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Rules { rules: 40, events: 60_000, classes: 4, sensors: 100, rule_every: 60, event_rate: 20 };
    let expected = r.reference();
    assert!(thresholds_of(&expected, "3").len() > 3, "the rules change under a sensor while it runs");
    // Rules from two generator subtasks interleave differently on each subtask: the
    // versions keyed by time make every copy of the broadcast state the same anyway.
    for (p, rule_parallelism) in [("1", "1"), ("3", "1"), ("3", "2")] {
        let mut args = r.args();
        args.extend(["--arg".into(), format!("rule-parallelism={rule_parallelism}")]);
        let got = sorted(run_embedded(dir.path(), "rules", p, &args).0);
        assert!(got == expected, "parallelism {p} (rules {rule_parallelism}): {} alerts, {} expected", got.len(), expected.len());
    }
}

/// `process_broadcast_element` emits too (`ack=1`: each rule acknowledged under sensor
/// `j % sensors`): every subtask runs it on every rule, yet each acknowledgement comes
/// out once, from the subtask owning its sensor, at any parallelism.
#[test]
fn records_emitted_for_broadcast_elements_come_out_once_at_parallelism_1_and_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Rules { rules: 40, events: 20_000, classes: 4, sensors: 100, rule_every: 60, event_rate: 20 };
    let mut expected = r.reference();
    expected.extend((0..r.rules).map(|j| format!("{}\trule {j} {}", j % r.sensors, splitmix64(j) % 1000)));
    let expected = sorted(expected);
    for (p, rule_parallelism) in [("1", "1"), ("3", "1"), ("3", "2")] {
        let mut args = r.args();
        args.extend(["--arg".into(), "ack=1".into(), "--arg".into(), format!("rule-parallelism={rule_parallelism}")]);
        let got = sorted(run_embedded(dir.path(), "rules", p, &args).0);
        assert!(got == expected, "parallelism {p} (rules {rule_parallelism}): {} lines, {} expected", got.len(), expected.len());
    }
}

/// The rules end at once (all of them are in the broadcast state, versions up to late
/// in the readings' event time); a savepoint after that, at parallelism 2, resumes at
/// 3 with the rules' source exhausted: every new subtask, the third included, alerts
/// from the restored broadcast state alone, and both runs' output together is exact.
#[test]
fn broadcast_state_from_a_savepoint_at_parallelism_2_is_intact_at_3() {
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let r = Rules { rules: 40, events: 400_000, classes: 4, sensors: 300, rule_every: 250, event_rate: 40 };
    let (first, second) = (cluster.dir.path().join("out-p2"), cluster.dir.path().join("out-p3"));
    let mut args = r.args();
    args.extend(["--arg", "work=2000", "--checkpoint-interval", "300"].map(String::from));
    let job = submit(&cluster, "rules", "2", &first, &args);
    let mut at_end = 0;
    cluster.wait_until("the rules to end while the readings run", || {
        let l = job_line(&cluster, &job);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "the job must outlive the rules: {l}");
        at_end = checkpoint(&cluster, &job);
        let (rules, events) = (subtasks(&cluster, &job, "rules"), subtasks(&cluster, &job, "events"));
        !rules.is_empty() && rules.iter().all(|s| s == "FINISHED") && events.iter().any(|s| s == "RUNNING")
    });
    cluster.wait_until("a checkpoint after the rules ended", || {
        let l = job_line(&cluster, &job);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "the job must still run for its savepoint: {l}");
        checkpoint(&cluster, &job) > at_end
    });
    let savepoint = cluster.dir.path().join("savepoint");
    let o = cluster.client(&[OsStr::new("savepoint"), OsStr::new(&job), OsStr::new("--dir"), savepoint.as_os_str(), OsStr::new("--stop")]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the job to stop", || {
        let l = job_line(&cluster, &job);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "a stopped job ends CANCELED: {l}");
        l.contains(" CANCELED ")
    });
    let expected = r.reference();
    let done = part_lines(&first).len();
    assert!(done < expected.len(), "the first run stopped midway: {done} of {} alerts", expected.len());

    let wasm = WEIR.example("rules");
    let mut argv: Vec<std::ffi::OsString> = ["submit", "-p", "3", "--checkpoint-interval", "300"].iter().map(Into::into).collect();
    argv.extend([wasm.as_os_str().into(), "--output-dir".into(), second.as_os_str().into(), "--from-savepoint".into(), savepoint.as_os_str().into()]);
    argv.extend(r.args().into_iter().map(Into::into));
    let argv: Vec<&OsStr> = argv.iter().map(|a| a.as_os_str()).collect();
    let o = cluster.client(&argv);
    assert!(o.status.success(), "the resumed run finishes: {}", stderr(&o));

    let resumed = part_lines(&second);
    let sensors: std::collections::BTreeSet<&str> = resumed.iter().filter_map(|l| l.split('\t').next()).collect();
    assert!(sensors.len() > 200, "alerts after the resume on the sensors of every subtask: {}", sensors.len());
    let mut both = part_lines(&first);
    both.extend(resumed);
    let both = sorted(both);
    assert_eq!(both.len(), expected.len(), "every alert once over both runs");
    assert!(both == expected, "the alerts differ");
}

/// A TaskManager SIGKILLed while the readings run (the rules ended, so they are only in
/// the broadcast state): the job restores from its last checkpoint, every subtask's
/// copy of the rules comes back, and the committed alerts are exactly the reference.
#[test]
fn rules_are_exactly_once_across_a_taskmanager_sigkill() {
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let r = Rules { rules: 40, events: 400_000, classes: 4, sensors: 300, rule_every: 250, event_rate: 40 };
    let output = cluster.dir.path().join("out");
    let mut args = r.args();
    args.extend(["--arg", "work=2000", "--checkpoint-interval", "300", "--restart", "fixed-delay:20:100"].map(String::from));
    let job = submit(&cluster, "rules", "2", &output, &args);
    wait_until("two completed checkpoints while the readings run", || {
        let l = job_line(&cluster, &job);
        assert!(!l.contains(" FINISHED ") && !l.contains(" FAILED "), "the job must outlive the kill: {l}");
        let events = subtasks(&cluster, &job, "events");
        checkpoint(&cluster, &job) >= 2 && !events.is_empty() && events.iter().all(|s| s == "RUNNING")
    });
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_until("the job to finish", || {
        let l = job_line(&cluster, &job);
        assert!(!l.contains(" FAILED "), "{l}\n{}", cluster.log("jobmanager"));
        l.contains(" FINISHED ")
    });
    let l = job_line(&cluster, &job);
    assert!(l.split_whitespace().any(|w| w.strip_prefix("restarts=").is_some_and(|n| n != "0")), "the kill cost a restart: {l}");
    let got = sorted(part_lines(&output));
    let expected = r.reference();
    assert_eq!(got.len(), expected.len(), "every alert committed once");
    assert!(got == expected, "the alerts differ");
}
