//! The PostgreSQL sink end to end: keyed sums from the generator into a table of a
//! real server (`weir_testkit::Postgres`), exactly once across a TaskManager SIGKILL
//! and a restart of the server, with the sink's audit table (`weir_sink_applied`), and
//! bad configurations and records failing the job with a clear cause.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;

use weir_testkit::{Postgres, TestCluster, splitmix64, stderr, wait_until};

use crate::WEIR;

fn job_line(status: &str, job: &str) -> String {
    status.lines().find(|l| l.starts_with(&format!("job {job} "))).unwrap_or_default().to_string()
}

/// keyed_sum's arguments for a sink into `pg`'s table `table`.
fn pg_args(pg: &Postgres, table: &str, mode: &str, password_file: &Path) -> Vec<String> {
    [
        "sink=postgres".to_string(),
        format!("pg-port={}", pg.port()),
        format!("pg-table={table}"),
        format!("pg-mode={mode}"),
        format!("pg-password-file={}", password_file.display()),
    ]
    .into_iter()
    .flat_map(|a| ["--arg".to_string(), a])
    .collect()
}

/// Submits keyed_sum over `n` numbers at parallelism 2 into `pg`, checkpoints every
/// 300 ms, detached; its id.
fn submit(cluster: &TestCluster, pg: &Postgres, n: u64, mode: &str, restart: &str) -> String {
    let wasm = WEIR.example("keyed_sum");
    let mut args: Vec<String> = ["submit", "-p", "2", "--checkpoint-interval", "300", "--restart", restart, "--detach"].map(String::from).to_vec();
    args.extend(["--arg".into(), format!("n={n}"), "--arg".into(), "work=4000".into()]);
    args.extend(pg_args(pg, "sums", mode, &pg.dir().join("pw")));
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.push(wasm.as_os_str());
    let o = cluster.client(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string()
}

fn wait_finished(cluster: &TestCluster, job: &str) {
    wait_until("the job to finish", || {
        let line = job_line(&cluster.status(), job);
        assert!(!line.contains(" FAILED "), "{line}\n{}", cluster.log("jobmanager"));
        line.contains(" FINISHED ")
    });
}

/// Epochs applied so far (the audit table's rows), 0 before it exists.
fn applied_epochs(pg: &Postgres) -> u64 {
    pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'weir_sink_applied'")
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&t| t > 0)
        .map_or(0, |_| pg.psql("SELECT count(*) FROM weir_sink_applied").trim().parse().unwrap_or(0))
}

/// The audit: every epoch was applied once (its key makes a second row impossible, so
/// the proof is the count: the rows applied add up to the records, none more), and
/// by how many attempts.
fn assert_audit(pg: &Postgres, job: &str, n: u64) -> usize {
    let audit = pg.psql(&format!("SELECT sum(rows), count(DISTINCT attempt), count(*) FROM weir_sink_applied WHERE job = '{job}' AND sink = 'out'"));
    let fields: Vec<&str> = audit.trim().split('|').collect();
    assert_eq!(fields[0], n.to_string(), "rows applied, over every epoch: each record once ({audit})");
    eprintln!("audit: {} epochs applied by {} attempt(s)", fields[2], fields[1]);
    fields[1].parse().expect("attempts")
}

/// Each number's key and the numbers of each key, in order.
fn expected(n: u64) -> HashMap<u64, Vec<u64>> {
    let mut by_key: HashMap<u64, Vec<u64>> = HashMap::new();
    for i in 0..n {
        by_key.entry(splitmix64(i) % 100_000).or_default().push(i);
    }
    by_key
}

/// Append mode, a TaskManager SIGKILLed mid-job: the table holds exactly one row per
/// record, each key's rows (in insertion order) its running sums, so their steps are
/// exactly the key's numbers: nothing lost, nothing applied twice. The password is in
/// no log and no REST document.
#[test]
fn postgres_sink_is_exactly_once_across_a_taskmanager_kill() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE sums (id bigserial PRIMARY KEY, k bigint NOT NULL, v bigint NOT NULL)");
    let mut cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let n: u64 = 600_000;
    let job = submit(&cluster, &pg, n, "append", "fixed-delay:5:1000");
    wait_until("two epochs applied", || applied_epochs(&pg) >= 2);
    cluster.kill("taskmanager-2");
    cluster.start_taskmanager("taskmanager-2", 2);
    wait_finished(&cluster, &job);

    let mut rows: HashMap<u64, Vec<u64>> = HashMap::new();
    let table = pg.psql("SELECT k || ' ' || v FROM sums ORDER BY id");
    for line in table.lines() {
        let (k, v) = line.split_once(' ').expect("k v");
        rows.entry(k.parse().expect("k")).or_default().push(v.parse().expect("v"));
    }
    let expected = expected(n);
    assert_eq!(rows.len(), expected.len(), "every key");
    for (k, numbers) in &expected {
        let sums = &rows[k];
        let mut steps: Vec<u64> = sums.iter().scan(0, |prev, &s| Some(s - std::mem::replace(prev, s))).collect();
        steps.sort_unstable();
        assert_eq!(&steps, numbers, "key {k}: its running sums {sums:?} step by its numbers, each once");
    }
    assert!(assert_audit(&pg, &job, n) >= 2, "the attempt after the kill applied epochs too");

    let (code, doc) = cluster_get(&cluster, &format!("/api/v1/jobs/{job}"));
    assert_eq!(code, 200, "{doc}");
    assert!(doc.contains("password-file") && !doc.contains(Postgres::PASSWORD), "the plan names the file, never the password: {doc}");
    for name in ["jobmanager", "taskmanager-1", "taskmanager-2"] {
        assert!(!cluster.log(name).contains(Postgres::PASSWORD), "the password is in {name}'s log");
    }
}

fn cluster_get(cluster: &TestCluster, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent.get(format!("{}{path}", cluster.rest)).header("Authorization", &format!("Bearer {}", cluster.token)).call().expect("request");
    (r.status().as_u16(), r.body_mut().read_to_string().expect("body"))
}

/// Upsert mode, the server restarted mid-job (an immediate stop: connections cut): the
/// job recovers by itself under its restart strategy and the table holds each key's
/// exact final sum; the audit counts each record once.
#[test]
fn postgres_sink_recovers_from_a_server_restart_exactly_once() {
    let mut pg = Postgres::start();
    pg.psql("CREATE TABLE sums (k bigint PRIMARY KEY, v bigint NOT NULL)");
    let cluster = TestCluster::start_with(WEIR, &[("taskmanager-1", 2), ("taskmanager-2", 2)], &["--checkpoint-dir", "{dir}/checkpoints"]);
    let n: u64 = 600_000;
    let job = submit(&cluster, &pg, n, "upsert", "fixed-delay:20:500");
    wait_until("two epochs applied", || applied_epochs(&pg) >= 2);
    pg.stop();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    pg.restart();
    wait_finished(&cluster, &job);

    let mut sums: HashMap<u64, u64> = HashMap::new();
    for line in pg.psql("SELECT k || ' ' || v FROM sums").lines() {
        let (k, v) = line.split_once(' ').expect("k v");
        sums.insert(k.parse().expect("k"), v.parse().expect("v"));
    }
    let expected: HashMap<u64, u64> = expected(n).into_iter().map(|(k, numbers)| (k, numbers.iter().sum())).collect();
    assert!(sums == expected, "final sums exact ({} keys, {} expected)", sums.len(), expected.len());
    assert_audit(&pg, &job, n);
    let log = cluster.log("jobmanager");
    assert!(log.contains("PostgreSQL") || log.contains("postgres"), "the failure named the server: {log}");
}

/// `weir run` of keyed_sum into `pg` with checkpoints; its output.
fn run(pg: &Postgres, table: &str, password_file: &Path, extra: &[&str]) -> std::process::Output {
    let wasm = WEIR.example("keyed_sum");
    let mut args: Vec<String> = ["run", "--checkpoint-interval", "200", "--arg", "n=20000"].map(String::from).to_vec();
    args.extend(pg_args(pg, table, "upsert", password_file));
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    argv.push(wasm.as_os_str());
    WEIR.run(argv)
}

/// Each bad input fails the job with one clear cause and writes nothing: a wrong
/// password (never shown), a missing table, a record the table cannot hold.
#[test]
fn postgres_sink_refuses_bad_input_with_a_clear_cause() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE sums (k bigint PRIMARY KEY, v bigint NOT NULL); CREATE TABLE small (k bigint PRIMARY KEY, v smallint NOT NULL)");
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "hunter2-not-it").expect("write");

    let o = run(&pg, "sums", &wrong, &[]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("cannot connect to PostgreSQL at 127.0.0.1") && err.contains("password authentication failed for user \"postgres\""),
        "{err}"
    );
    assert!(!err.contains("hunter2-not-it") && !String::from_utf8_lossy(&o.stdout).contains("hunter2-not-it"), "{err}");

    let o = run(&pg, "nosuch", &pg.dir().join("pw"), &[]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("table nosuch: does not exist"), "{err}");

    // Sums past 32 767 do not fit a smallint: the barrier staging them fails, naming
    // the value, and no epoch holding it is ever applied.
    let o = run(&pg, "small", &pg.dir().join("pw"), &[]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("a record \"public\".\"small\"") || err.contains("a record small cannot hold"), "{err}");
    assert!(err.contains("out of range for type smallint"), "{err}");
    let kept = pg.psql("SELECT count(*) FROM small WHERE v > 32767");
    assert_eq!(kept.trim(), "0");
}

/// The same records with `on-error = dead-letter`: the job finishes; each running sum
/// past a smallint is in the dead-letter table once, with the server's reason, and
/// every other one reached the table (each key holds its last sum that fits).
#[test]
fn postgres_sink_dead_letters_what_the_table_cannot_hold_when_asked() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE small (k bigint PRIMARY KEY, v smallint NOT NULL)");
    let o = run(&pg, "small", &pg.dir().join("pw"), &["--arg", "pg-on-error=dead-letter"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (mut fits, mut parked): (HashMap<u64, u64>, Vec<(u64, u64)>) = (HashMap::new(), Vec::new());
    for (k, numbers) in expected(20_000) {
        let mut sum = 0;
        for x in numbers {
            sum += x;
            if sum > i16::MAX as u64 {
                parked.push((k, sum));
            } else {
                fits.insert(k, sum);
            }
        }
    }
    assert!(!parked.is_empty(), "the input must overflow a smallint somewhere");
    let mut got: Vec<(u64, u64)> = pg
        .psql("SELECT key || ' ' || value FROM weir_sink_dead_letters WHERE error LIKE '%out of range for type smallint%'")
        .lines()
        .map(|l| l.split_once(' ').map(|(k, v)| (k.parse().expect("key"), v.parse().expect("value"))).expect("key value"))
        .collect();
    got.sort_unstable();
    parked.sort_unstable();
    assert_eq!(got, parked, "each sum past a smallint dead-lettered once");
    assert_eq!(pg.psql("SELECT count(*) FROM weir_sink_dead_letters").trim(), parked.len().to_string(), "and nothing else");
    let table: HashMap<u64, u64> = pg
        .psql("SELECT k || ' ' || v FROM small")
        .lines()
        .map(|l| l.split_once(' ').map(|(k, v)| (k.parse().expect("k"), v.parse().expect("v"))).expect("k v"))
        .collect();
    assert!(table == fits, "each key's last sum that fits ({} keys, {} expected)", table.len(), fits.len());
    let audit = pg.psql("SELECT sum(rows) FROM weir_sink_applied");
    assert_eq!(audit.trim(), "20000", "the audit counts every record once, parked or written");
}
