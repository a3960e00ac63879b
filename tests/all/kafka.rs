//! Kafka in, end to end: a real broker (tansu), a real cluster of two TaskManagers,
//! `weir submit` of the `kafka_counts` example (running count per key) into the
//! checkpointed file sink. The output is checked exactly: each key's counts are
//! 1, 2, ..., n once each, through a TaskManager's SIGKILL while records are produced,
//! and through a stop with a savepoint resumed at another parallelism. The Kafka sink:
//! at least once across a SIGKILL, and exactly-once refused by a broker without
//! transactions.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use weir_testkit::kafka::Kafka;
use weir_testkit::{TestCluster, stderr, wait_until};

use crate::WEIR;

const KEYS: u32 = 40;
const PARTITIONS: i32 = 4;

/// Records `from..to`: record `i` has key `key-{i % KEYS}`, always in the same
/// partition (so each key's records keep their order), its number as the timestamp.
fn produce(k: &Kafka, from: u32, to: u32) {
    let records: Vec<_> = (from..to)
        .map(|i| {
            let key = format!("key-{}", i % KEYS);
            ((i % KEYS) as i32 % PARTITIONS, key.clone().into_bytes(), key.into_bytes(), i64::from(i))
        })
        .collect();
    k.produce("events", &records);
}

/// Committed lines `key<TAB>count` of every part file under `dir`.
fn committed(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("part-") {
            for l in std::fs::read_to_string(e.path()).unwrap_or_default().lines() {
                let (k, c) = l.split_once('\t').expect("key<TAB>count");
                out.push((k.to_string(), c.parse().expect("count")));
            }
        }
    }
    out
}

/// Each key's counts, sorted.
fn by_key(lines: &[(String, u64)]) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (k, c) in lines {
        m.entry(k.clone()).or_default().push(*c);
    }
    m.values_mut().for_each(|v| v.sort_unstable());
    m
}

/// What records `0..n` make each key count, from `first` records of each key on.
fn expected(from: u32, to: u32) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for k in 0..KEYS {
        let before = (0..from).filter(|i| i % KEYS == k).count() as u64;
        let upto = (0..to).filter(|i| i % KEYS == k).count() as u64;
        if upto > before {
            m.insert(format!("key-{k}"), (before + 1..=upto).collect());
        }
    }
    m
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn job_line(cluster: &TestCluster, job: &str) -> String {
    cluster.status().lines().find(|l| l.starts_with(&format!("job {job} "))).unwrap_or_default().to_string()
}

fn submit(cluster: &TestCluster, k: &Kafka, parallelism: &str, output: &Path, extra: &[&OsStr]) -> std::process::Output {
    let wasm = WEIR.example("kafka_counts");
    let bootstrap = format!("bootstrap-servers={}", k.bootstrap());
    let args =
        ["submit", "-p", parallelism, "--arg", &bootstrap, "--arg", "topic=events", "--arg", "group-id=weir-e2e", "--checkpoint-interval", "300"];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.extend([OsStr::new("--restart"), OsStr::new("fixed-delay:10:500"), wasm.as_os_str(), OsStr::new("--output-dir"), output.as_os_str()]);
    argv.extend_from_slice(extra);
    cluster.client(&argv)
}

fn job_id(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", stderr(o));
    String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string()
}

#[test]
fn kafka_source_is_exactly_once_through_a_crash_and_a_rescale() {
    let k = Kafka::start();
    k.create_topic("events", PARTITIONS);
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let first = cluster.dir.path().join("out-p2");
    let job = job_id(&submit(&cluster, &k, "2", &first, &[OsStr::new("--detach")]));

    // The job runs while nothing is there: unbounded, it waits for records.
    produce(&k, 0, 3000);
    wait_until("the first records committed", || committed(&first).len() >= 1000);
    // SIGKILL a TaskManager mid-stream, keep producing while it is gone.
    cluster.kill("taskmanager-2");
    produce(&k, 3000, 6000);
    cluster.start_taskmanager("taskmanager-2", 2);
    produce(&k, 6000, 8000);
    let mut polls = 0;
    wait_until("all 8000 records committed", || {
        let l = job_line(&cluster, &job);
        assert!(!l.contains(" FAILED ") && !l.contains(" FINISHED "), "{l}\n{}", cluster.log("jobmanager"));
        polls += 1;
        if polls % 400 == 0 {
            let logs: Vec<String> =
                ["jobmanager", "taskmanager-1", "taskmanager-2"].iter().map(|n| format!("--- {n}\n{}", tail(&cluster.log(n)))).collect();
            let got: BTreeMap<String, (usize, u64)> =
                by_key(&committed(&first)).into_iter().map(|(k, v)| (k, (v.len(), v.last().copied().unwrap_or(0)))).collect();
            let mut in_kafka = BTreeMap::new();
            for r in k.read_all("events", PARTITIONS) {
                *in_kafka.entry(r.partition).or_insert(0) += 1;
            }
            eprintln!(
                "{} lines committed; {l}\nper key (lines, max): {got:?}\nin kafka per partition: {in_kafka:?}\n{}",
                committed(&first).len(),
                logs.join("\n")
            );
        }
        committed(&first).len() >= 8000
    });
    assert_eq!(by_key(&committed(&first)), expected(0, 8000), "exactly once through the crash");
    assert!(cluster.log("jobmanager").contains("restoring checkpoint"), "the job restarted from a checkpoint");

    // Stop with a savepoint; produce while stopped; resume at parallelism 3.
    let savepoint = cluster.dir.path().join("savepoint");
    let o = cluster.client(&[OsStr::new("savepoint"), OsStr::new(&job), OsStr::new("--dir"), savepoint.as_os_str(), OsStr::new("--stop")]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the job to stop", || job_line(&cluster, &job).contains(" CANCELED "));
    assert_eq!(by_key(&committed(&first)), expected(0, 8000), "nothing more after the savepoint");
    produce(&k, 8000, 9000);
    let second = cluster.dir.path().join("out-p3");
    let resumed = job_id(&submit(&cluster, &k, "3", &second, &[OsStr::new("--detach"), OsStr::new("--from-savepoint"), savepoint.as_os_str()]));
    produce(&k, 9000, 10_000);
    wait_until("the resumed job to commit records 8000..10000", || committed(&second).len() >= 2000);
    assert_eq!(by_key(&committed(&second)), expected(8000, 10_000), "resumed at parallelism 3 where the savepoint left off");
    let o = cluster.client(&[OsStr::new("cancel"), OsStr::new(&resumed)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_kafka_job_is_refused_at_submission_when_the_broker_is_down_or_the_topic_missing() {
    let mut k = Kafka::start();
    k.create_topic("other", 1);
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 2)]);
    let out = cluster.dir.path().join("out");
    // A misspelt option is named, with the ones the connector knows.
    let o = submit(&cluster, &k, "1", &out, &[OsStr::new("--arg"), OsStr::new("strat=earliest")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown option(s) strat (known: ") && stderr(&o).contains("start"), "{}", stderr(&o));
    let o = submit(&cluster, &k, "1", &out, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("topic \"events\" does not exist"), "{}", stderr(&o));
    k.stop();
    let o = submit(&cluster, &k, "1", &out, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(&format!("broker unreachable at {}", k.bootstrap())), "{}", stderr(&o));
}

/// Consumer lag per partition on the TaskManager's `/metrics`: a line per partition,
/// 0 once the job read everything.
#[test]
fn kafka_consumer_lag_per_partition_is_in_the_taskmanagers_metrics() {
    let k = Kafka::start();
    k.create_topic("events", PARTITIONS);
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let listen = format!("127.0.0.1:{port}");
    let mut cluster = TestCluster::start_with(WEIR, &[], &["--checkpoint-dir", "{dir}/checkpoints"]);
    cluster.start_taskmanager_with("taskmanager-1", 2, &["--metrics-listen", &listen]);
    wait_until("the taskmanager to register", || cluster.status().contains("free slots: 2"));
    produce(&k, 0, 2000);
    let out = cluster.dir.path().join("out");
    let job = job_id(&submit(&cluster, &k, "2", &out, &[OsStr::new("--detach")]));
    let url = format!("http://{listen}/metrics");
    let lag_lines = || -> Vec<String> {
        let (_, body) = weir_testkit::http::request("GET", &url, &[], b"");
        String::from_utf8_lossy(&body).lines().filter(|l| l.starts_with("weir_subtask_kafka_lag_records{")).map(str::to_string).collect()
    };
    wait_until("every partition's lag to be 0 once all is read", || {
        let lines = lag_lines();
        committed(&out).len() >= 2000 && lines.len() == PARTITIONS as usize && lines.iter().all(|l| l.ends_with(" 0"))
    });
    for p in 0..PARTITIONS {
        assert!(lag_lines().iter().any(|l| l.contains("topic=\"events\"") && l.contains(&format!("partition=\"{p}\""))), "{:?}", lag_lines());
    }
    let o = cluster.client(&[OsStr::new("cancel"), OsStr::new(&job)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The durable test broker (tansu on S3 in moto): records produced before a SIGKILL
/// and restart of tansu are all there after it, and new ones follow them.
#[test]
fn a_durable_kafka_broker_keeps_its_records_across_a_restart() {
    let mut k = Kafka::start_durable();
    k.create_topic("events", PARTITIONS);
    produce(&k, 0, 500);
    k.restart();
    produce(&k, 500, 1000);
    let read = k.read_all("events", PARTITIONS);
    let values: Vec<String> = read.iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect();
    assert_eq!(read.len(), 1000, "every record, before and after the restart\n{}", k.log());
    for p in 0..PARTITIONS {
        let offsets: Vec<i64> = read.iter().filter(|r| r.partition == p).map(|r| r.offset).collect();
        assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>(), "partition {p}: offsets continue after the restart");
    }
    assert_eq!(values.iter().filter(|v| *v == "key-0").count(), 25);
}

/// keyed counts read back from the sink's topic: per key, the counts in the order the
/// topic holds them (a key's records all go to one partition, in order).
fn counts_in_topic(k: &Kafka, topic: &str, partitions: i32) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in k.read_all(topic, partitions) {
        let key = String::from_utf8(r.key).expect("UTF-8 key");
        let count = String::from_utf8(r.value).expect("UTF-8 value").parse().expect("a count");
        m.entry(key).or_default().push(count);
    }
    m
}

/// kafka_counts into topic `counts` with the Kafka sink; extra `--arg`s after the source's.
fn submit_to_kafka(cluster: &TestCluster, k: &Kafka, delivery: &str, extra: &[&str]) -> std::process::Output {
    let wasm = WEIR.example("kafka_counts");
    let bootstrap = format!("bootstrap-servers={}", k.bootstrap());
    let delivery = format!("delivery={delivery}");
    let mut args = vec!["submit", "-p", "2", "--arg", &bootstrap, "--arg", "topic=events", "--arg", "sink=kafka", "--arg", "sink-topic=counts"];
    args.extend(["--arg", &delivery, "--checkpoint-interval", "300", "--restart", "fixed-delay:10:500", "--detach"]);
    args.extend_from_slice(extra);
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.push(wasm.as_os_str());
    cluster.client(&argv)
}

/// Kafka -> keyed count -> Kafka with the at-least-once sink (idempotent producer,
/// every record acknowledged before a barrier is) on two TaskManagers, one SIGKILLed
/// while records are produced: every key's counts 1..n are all in the output topic
/// (nothing lost), and each key's sequence is runs of consecutive counts, so the only
/// duplicates are a replay from a restored checkpoint, never a gap.
#[test]
fn kafka_sink_at_least_once_loses_nothing_across_a_sigkill() {
    let k = Kafka::start();
    k.create_topic("events", PARTITIONS);
    k.create_topic("counts", 2);
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let job = job_id(&submit_to_kafka(&cluster, &k, "at-least-once", &[]));
    let total = |m: &BTreeMap<String, Vec<u64>>| m.values().map(Vec::len).sum::<usize>();
    produce(&k, 0, 3000);
    wait_until("the first counts in the output topic", || total(&counts_in_topic(&k, "counts", 2)) >= 1000);
    cluster.kill("taskmanager-2");
    produce(&k, 3000, 6000);
    cluster.start_taskmanager("taskmanager-2", 2);
    produce(&k, 6000, 8000);
    let want = expected(0, 8000);
    wait_until("every key's last count in the output topic", || {
        let l = job_line(&cluster, &job);
        assert!(!l.contains(" FAILED "), "{l}\n{}", cluster.log("jobmanager"));
        let got = counts_in_topic(&k, "counts", 2);
        want.iter().all(|(key, counts)| got.get(key).is_some_and(|g| g.contains(counts.last().expect("a count"))))
    });
    let got = counts_in_topic(&k, "counts", 2);
    let mut replayed = 0;
    for (key, counts) in &want {
        let seen = got.get(key).expect("the key's counts");
        let mut distinct = seen.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(&distinct, counts, "key {key}: every count once at least, nothing else");
        for w in seen.windows(2) {
            assert!(w[1] == w[0] + 1 || w[1] <= w[0], "key {key}: a gap from {} to {} in {seen:?}", w[0], w[1]);
        }
        replayed += seen.len() - distinct.len();
    }
    assert!(cluster.log("jobmanager").contains("restoring checkpoint"), "the job restarted from a checkpoint");
    eprintln!("{} output records, {replayed} of them replayed after the restore", total(&got));
    let o = cluster.client(&[OsStr::new("cancel"), OsStr::new(&job)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// tansu 0.6 cannot commit a transaction (`tansu_cannot_commit_kafka_transactions`),
/// so `delivery = exactly-once` is refused at submission, naming the cause; a job
/// without checkpoints is refused too (there would be no transaction to commit).
#[test]
fn kafka_exactly_once_sink_is_refused_by_a_broker_without_transactions() {
    let k = Kafka::start();
    k.create_topic("events", PARTITIONS);
    k.create_topic("counts", 2);
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let o = submit_to_kafka(&cluster, &k, "exactly-once", &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("node \"out\"") && err.contains("cannot commit one (no EndTxn, API key 26"), "{err}");
    let o = submit_to_kafka(&cluster, &k, "exactly-twice", &[]);
    assert!(!o.status.success() && stderr(&o).contains("expected one of at-least-once, exactly-once"), "{}", stderr(&o));
}
