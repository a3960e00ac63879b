//! The seed job end to end (issue 16's Must-show): `weir clicks generate` producing
//! continuously into a durable broker (tansu on S3) with topic `clicks` (4 partitions),
//! `examples-wasm/clicks` at parallelism 4 on two TaskManagers into PostgreSQL table
//! `user_clicks`. A TaskManager is SIGKILLed, then the broker restarted, then
//! PostgreSQL restarted; the job recovers from each by itself (restart strategy) and
//! the table ends equal to the generator's counts, with the sink's audit proving each
//! record applied once. Then a stop with a savepoint, a resume at parallelism 2 while
//! clicks keep coming: exact again.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use weir_testkit::kafka::Kafka;
use weir_testkit::{Postgres, TestCluster, stderr, wait_until};

use crate::WEIR;

const USERS: u64 = 200;
/// Clicks per `weir clicks generate` run, at `RATE` per second.
const CHUNK: u64 = 500;
const RATE: u64 = 1000;

/// `user<TAB>clicks` lines (the generator's `--expect` and the table's dump).
fn parse_counts(text: &str) -> BTreeMap<u64, u64> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (u, c) = l.split_once('\t').unwrap_or_else(|| panic!("user<TAB>clicks: {l:?}"));
            (u.parse().expect("user"), c.parse().expect("clicks"))
        })
        .collect()
}

fn add(into: &mut BTreeMap<u64, u64>, from: &BTreeMap<u64, u64>) {
    for (u, c) in from {
        *into.entry(*u).or_insert(0) += c;
    }
}

/// Runs `weir clicks generate` over consecutive ranges of `CHUNK` clicks until
/// stopped, summing their `--expect` counts. A chunk runs while holding `gate`, so
/// whoever holds it knows no click is in flight (the broker's restart must not meet a
/// produce it could make a duplicate of by a retry).
struct Generator {
    stop: Arc<AtomicBool>,
    next: Arc<AtomicU64>,
    thread: Option<JoinHandle<BTreeMap<u64, u64>>>,
}

impl Generator {
    fn start(bootstrap: String, dir: PathBuf, from: u64, gate: Arc<Mutex<()>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(from));
        let (s, n, g) = (stop.clone(), next.clone(), gate);
        let thread = std::thread::spawn(move || {
            let mut expected = BTreeMap::new();
            while !s.load(Ordering::SeqCst) {
                {
                    let _held = g.lock().expect("gate");
                    let from = n.load(Ordering::SeqCst);
                    let expect = dir.join(format!("expect-{from}"));
                    let o = WEIR.run([
                        "clicks".as_ref(),
                        "generate".as_ref(),
                        "--bootstrap".as_ref(),
                        OsStr::new(&bootstrap),
                        "--clicks".as_ref(),
                        OsStr::new(&CHUNK.to_string()),
                        "--from".as_ref(),
                        OsStr::new(&from.to_string()),
                        "--users".as_ref(),
                        OsStr::new(&USERS.to_string()),
                        "--rate".as_ref(),
                        OsStr::new(&RATE.to_string()),
                        "--expect".as_ref(),
                        expect.as_os_str(),
                    ]);
                    assert!(o.status.success(), "weir clicks generate --from {from}: {}", stderr(&o));
                    add(&mut expected, &parse_counts(&std::fs::read_to_string(&expect).expect("the expect file")));
                    n.store(from + CHUNK, Ordering::SeqCst);
                }
                // Lets a waiting holder of the gate in.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            expected
        });
        Self { stop, next, thread: Some(thread) }
    }

    /// Clicks produced so far (acknowledged by the broker).
    fn produced(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    /// Stops after the running chunk: the next click's number and each user's
    /// logged-in clicks.
    fn finish(mut self) -> (u64, BTreeMap<u64, u64>) {
        self.stop.store(true, Ordering::SeqCst);
        let expected = self.thread.take().expect("running").join().expect("the generator thread panicked");
        (self.produced(), expected)
    }
}

fn job_line(cluster: &TestCluster, job: &str) -> String {
    cluster.status().lines().find(|l| l.starts_with(&format!("job {job} "))).unwrap_or_default().to_string()
}

/// A number `name=N` of the job's status line.
fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn submit(cluster: &TestCluster, k: &Kafka, pg: &Postgres, parallelism: &str, extra: &[&OsStr]) -> String {
    let wasm = WEIR.example("clicks");
    let args = [
        "submit".to_string(),
        "-p".into(),
        parallelism.into(),
        "--checkpoint-interval".into(),
        "300".into(),
        "--restart".into(),
        "fixed-delay:40:500".into(),
        "--detach".into(),
        "--arg".into(),
        format!("bootstrap-servers={}", k.bootstrap()),
        "--arg".into(),
        "group-id=weir-clicks".into(),
        "--arg".into(),
        format!("pg-port={}", pg.port()),
        "--arg".into(),
        format!("pg-password-file={}", pg.dir().join("pw").display()),
    ];
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.extend_from_slice(extra);
    argv.push(wasm.as_os_str());
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string()
}

/// The table, `user -> clicks`.
fn table(pg: &Postgres) -> BTreeMap<u64, u64> {
    parse_counts(&pg.psql("SELECT user_id || E'\\t' || clicks FROM user_clicks"))
}

/// Epochs the sink applied (audit rows) for `job`.
fn applied(pg: &Postgres, job: &str) -> u64 {
    pg.psql(&format!("SELECT count(*) FROM weir_sink_applied WHERE job = '{job}'")).trim().parse().unwrap_or(0)
}

/// Waits until `job` runs and completes two more checkpoints than it had, and the sink
/// applied more epochs (the database may be down meanwhile: psql failing is waiting).
fn wait_recovered(cluster: &TestCluster, pg: &Postgres, job: &str, what: &str, before: &str) {
    let checkpoint = field(before, "checkpoint");
    let epochs = applied(pg, job);
    cluster.wait_until(&format!("the job to run and checkpoint again after {what}"), || {
        let l = job_line(cluster, job);
        assert!(!l.contains(" FAILED ") && !l.contains(" FINISHED ") && !l.contains(" CANCELED "), "{l}");
        l.contains(" RUNNING ") && field(&l, "checkpoint") >= checkpoint + 2
    });
    wait_until(&format!("epochs applied after {what}"), || std::panic::catch_unwind(|| applied(pg, job)).is_ok_and(|n| n > epochs));
    let l = job_line(cluster, job);
    eprintln!("after {what}: {l}");
}

/// The audit of `jobs`: the rows their applied epochs hold add up to the logged-in
/// clicks (the sink writes one row per click, a running count), so no epoch and no
/// replayed record was applied twice; the attempts that applied them.
fn audit(pg: &Postgres, jobs: &[&str], logged_in: u64) -> u64 {
    let list = jobs.iter().map(|j| format!("'{j}'")).collect::<Vec<_>>().join(",");
    let a = pg.psql(&format!(
        "SELECT sum(rows), count(*), count(DISTINCT (job, attempt)) FROM weir_sink_applied WHERE job IN ({list}) AND sink = 'user-clicks'"
    ));
    let f: Vec<&str> = a.trim().split('|').collect();
    assert_eq!(f[0], logged_in.to_string(), "rows applied over every epoch = logged-in clicks ({a})");
    eprintln!("audit: {} epochs of {} rows by {} attempts", f[1], f[0], f[2]);
    f[2].parse().expect("attempts")
}

/// What the topic holds: each user's logged-in clicks, counted from the records
/// themselves (so the broker lost and duplicated nothing, restart included).
fn in_topic(k: &Kafka) -> (u64, BTreeMap<u64, u64>) {
    let records = k.read_all("clicks", 4);
    let mut counts = BTreeMap::new();
    for r in &records {
        let v = String::from_utf8_lossy(&r.value);
        let mut f = v.split(',');
        let user: u64 = f.next().and_then(|u| u.parse().ok()).unwrap_or_else(|| panic!("a click: {v:?}"));
        if f.next() == Some("true") {
            *counts.entry(user).or_insert(0) += 1;
        }
    }
    (records.len() as u64, counts)
}

#[test]
fn clicks_seed_job_is_exact_through_a_taskmanager_kill_broker_and_database_restarts_and_a_rescale() {
    let mut pg = Postgres::start();
    pg.psql("CREATE TABLE user_clicks (user_id bigint PRIMARY KEY, clicks bigint NOT NULL)");
    let mut k = Kafka::start_durable();
    k.create_topic("clicks", 4);
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let job = submit(&cluster, &k, &pg, "4", &[]);
    let gate = Arc::new(Mutex::new(()));
    let generator = Generator::start(k.bootstrap(), cluster.dir.path().to_path_buf(), 0, gate.clone());
    cluster.wait_until("clicks in the table", || !table(&pg).is_empty() && applied(&pg, &job) >= 4);

    // 1. A TaskManager dies while clicks arrive; a replacement joins.
    let before = job_line(&cluster, &job);
    cluster.kill("taskmanager-2");
    let at_kill = generator.produced();
    wait_until("clicks produced while the TaskManager is gone", || generator.produced() >= at_kill + CHUNK);
    cluster.start_taskmanager("taskmanager-2", 2);
    cluster.wait_until("the job to restart", || field(&job_line(&cluster, &job), "restarts") > field(&before, "restarts"));
    wait_recovered(&cluster, &pg, &job, "the TaskManager's SIGKILL", &before);

    // 2. The broker restarts (SIGKILL, its records in S3), no click in flight.
    let before = job_line(&cluster, &job);
    let produced = generator.produced();
    {
        let _no_click_in_flight = gate.lock().expect("gate");
        k.restart();
    }
    wait_until("clicks produced after the broker's restart", || generator.produced() >= produced + 2 * CHUNK);
    wait_recovered(&cluster, &pg, &job, "the broker's restart", &before);
    // The running source met the outage (krafka logs its failed reconnects) and read on
    // without a restart of the job: krafka reconnects by itself.
    let refused = format!("Connection attempt failed address={}", k.bootstrap());
    let saw = |l: &str| l.contains(&refused) || (l.contains("Fetch from broker") && l.contains("failed"));
    assert!(
        ["taskmanager-1", "taskmanager-2"].iter().any(|n| cluster.log(n).lines().any(saw)),
        "a source saw the broker go away\n{}",
        cluster.log("taskmanager-1")
    );

    // 3. PostgreSQL restarts (an immediate stop: connections cut).
    let before = job_line(&cluster, &job);
    pg.stop();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    pg.restart();
    wait_recovered(&cluster, &pg, &job, "PostgreSQL's restart", &before);

    let (next, expected) = generator.finish();
    let logged_in: u64 = expected.values().sum();
    let (records, topic) = in_topic(&k);
    assert_eq!(records, next, "the topic holds every click once");
    assert_eq!(topic, expected, "the topic's clicks are the generator's");
    cluster.wait_until("the table to hold the generator's counts", || table(&pg) == expected);
    let attempts = audit(&pg, &[&job], logged_in);
    assert!(attempts >= 3, "epochs applied by the first attempt and those after the kill and the database's restart");
    eprintln!("{next} clicks, {logged_in} logged in, {} users: exact; {}", expected.len(), job_line(&cluster, &job));

    // 4. Stop with a savepoint while clicks arrive, resume at parallelism 2, go on.
    let generator = Generator::start(k.bootstrap(), cluster.dir.path().to_path_buf(), next, gate.clone());
    wait_until("more clicks", || generator.produced() >= next + 2 * CHUNK);
    let savepoint = cluster.dir.path().join("savepoint");
    let o = cluster.client(&[OsStr::new("savepoint"), OsStr::new(&job), OsStr::new("--dir"), savepoint.as_os_str(), OsStr::new("--stop")]);
    assert!(o.status.success(), "{}", stderr(&o));
    cluster.wait_until("the job to stop", || job_line(&cluster, &job).contains(" CANCELED "));
    let stopped = generator.produced();
    wait_until("clicks while the job is stopped", || generator.produced() >= stopped + CHUNK);
    let resumed = submit(&cluster, &k, &pg, "2", &[OsStr::new("--from-savepoint"), savepoint.as_os_str()]);
    let resumed_at = generator.produced();
    wait_until("clicks while the resumed job runs", || generator.produced() >= resumed_at + 2 * CHUNK);
    let (end, more) = generator.finish();
    let mut all = expected;
    add(&mut all, &more);
    assert_eq!(in_topic(&k).1, all, "the topic's clicks are the generator's");
    cluster.wait_until("the table to hold every click's count after the rescale", || table(&pg) == all);
    audit(&pg, &[&job, &resumed], all.values().sum());
    eprintln!("{end} clicks in all: exact after the rescale; {}", job_line(&cluster, &resumed));
    let o = cluster.client(&[OsStr::new("cancel"), OsStr::new(&resumed)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn generate(bootstrap: &str, from: u64, clicks: u64, expect: &std::path::Path) -> std::process::Output {
    let (from, clicks) = (from.to_string(), clicks.to_string());
    WEIR.run([
        "clicks".as_ref(),
        "generate".as_ref(),
        "--bootstrap".as_ref(),
        OsStr::new(bootstrap),
        "--from".as_ref(),
        OsStr::new(&from),
        "--clicks".as_ref(),
        OsStr::new(&clicks),
        "--users".as_ref(),
        "50".as_ref(),
        "--expect".as_ref(),
        expect.as_os_str(),
    ])
}

/// The generator's counts are what it produced and add up over ranges; a missing
/// topic or broker is an error naming it, not a wait.
#[test]
fn clicks_generator_counts_what_it_produces_and_names_a_missing_topic() {
    let k = Kafka::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let o = generate(&k.bootstrap(), 0, 10, &dir.path().join("none"));
    assert!(!o.status.success() && stderr(&o).contains("topic \"clicks\" does not exist"), "{}", stderr(&o));
    k.create_topic("clicks", 4);
    let (whole, first, second) = (dir.path().join("whole"), dir.path().join("first"), dir.path().join("second"));
    for (from, n, file) in [(0, 3000, &whole), (0, 1000, &first), (1000, 2000, &second)] {
        let o = generate(&k.bootstrap(), from, n, file);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let read = |p: &PathBuf| parse_counts(&std::fs::read_to_string(p).expect("expect file"));
    let mut parts = read(&first);
    add(&mut parts, &read(&second));
    assert_eq!(parts, read(&whole), "ranges add up to the run over their union");
    // The topic holds both runs over 0..3000: twice each user's count.
    let (records, topic) = in_topic(&k);
    assert_eq!(records, 6000);
    let twice: BTreeMap<u64, u64> = read(&whole).into_iter().map(|(u, c)| (u, 2 * c)).collect();
    assert_eq!(topic, twice);
    let logged_in: u64 = read(&whole).values().sum();
    assert!((1800..2400).contains(&logged_in), "about 7 in 10 clicks logged in: {logged_in} of 3000");
    drop(k);
    let o = generate("127.0.0.1:1", 0, 10, &dir.path().join("none"));
    assert!(!o.status.success() && stderr(&o).contains("broker at 127.0.0.1:1"), "{}", stderr(&o));
}
