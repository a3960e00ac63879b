//! The Kafka section (issue 16): a real broker (tansu 0.6, memory storage, on this
//! machine) and `weir run` of `kafka_counts` (Kafka source -> running count per key)
//! with checkpoints every second, into the Kafka sink (at-least-once: tansu cannot
//! commit transactions, so the exactly-once sink cannot run) or PostgreSQL (append,
//! exactly-once), at parallelism 1 and 2; beside the broker's own ceiling measured the
//! same way (krafka producing N, then consuming N).
//!
//! - Throughput: N records (`WEIR_BENCH_KAFKA_N`, default 400 000; 10 000 keys) are in
//!   the input topic before the job starts; records/s from the first output read to
//!   the N-th (a consumer of the output topic), or for PostgreSQL (rows appear a
//!   checkpoint at a time) from the job's start to the N-th row (polled).
//! - Latency: records produced at a fixed rate (`WEIR_BENCH_KAFKA_RATE`, default 2000/s,
//!   for 10 s) stamped with the wall clock; for Kafka, a `read_committed` consumer of
//!   the output takes each record's age on arrival (the sink keeps the input's
//!   timestamp); for PostgreSQL, the table's row count is polled every 20 ms and record
//!   `i` is visible once `i + 1` rows are (rows arrive in about produce order).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use krafka::Record;
use krafka::consumer::IsolationLevel;
use weir_testkit::Postgres;
use weir_testkit::kafka::Kafka;

use crate::WEIR;

const PARTITIONS: i32 = 4;
const KEYS: u64 = 10_000;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
}

async fn client(k: &Kafka) -> krafka::Kafka {
    krafka::Kafka::builder(k.bootstrap()).client_id("weir-bench").connect().await.expect("connect")
}

/// Produces records `from..to` (key `key-{i % KEYS}`, value `i`) as fast as the broker
/// acknowledges them. Not idempotent: see `weir_testkit::kafka::Kafka::produce`.
async fn produce(kafka: &krafka::Kafka, topic: &str, from: u64, to: u64) {
    let producer = kafka.producer().idempotent(false).acks(krafka::producer::Acks::All).build().await.expect("producer");
    let mut handles = Vec::new();
    for i in from..to {
        let r = Record::new(topic, i.to_string()).key(format!("key-{}", i % KEYS)).timestamp(now_ms());
        handles.push(producer.enqueue(r).await.expect("enqueue"));
        if handles.len() >= 50_000 {
            for h in handles.drain(..) {
                let _ack = h.await.expect("acknowledged");
            }
        }
    }
    for h in handles {
        let _ack = h.await.expect("acknowledged");
    }
    producer.close().await.expect("close");
}

/// Produces `rate` records/s for `secs` seconds, each stamped when sent; their send
/// times in ms, in order.
async fn produce_at_rate(kafka: &krafka::Kafka, topic: &str, rate: u64, secs: u64) -> Vec<i64> {
    let producer = kafka.producer().idempotent(false).acks(krafka::producer::Acks::All).linger(Duration::ZERO).build().await.expect("producer");
    let start = Instant::now();
    let (total, mut sent, mut handles, mut times) = (rate * secs, 0u64, Vec::new(), Vec::new());
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            let ts = now_ms();
            let r = Record::new(topic, sent.to_string()).key(format!("key-{}", sent % KEYS)).timestamp(ts);
            handles.push(producer.enqueue(r).await.expect("enqueue"));
            times.push(ts);
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for h in handles {
        let _ack = h.await.expect("acknowledged");
    }
    producer.close().await.expect("close");
    times
}

/// Reads `topic` until it holds `n` records: records/s from the first poll that
/// returned any to the one that completed `n` (tansu's end offsets lag behind the last
/// batch of each partition, so records are counted as read).
async fn consume_rate(kafka: &krafka::Kafka, topic: &str, n: u64, give_up: Duration) -> Option<f64> {
    let consumer =
        kafka.consumer_without_group().isolation_level(IsolationLevel::ReadCommitted).max_poll_records(-1).build().await.expect("consumer");
    consumer.assign(topic, (0..PARTITIONS).collect()).await.expect("assign");
    for p in 0..PARTITIONS {
        consumer.seek(topic, p, 0).await.expect("seek");
    }
    let (start, mut first, mut count) = (Instant::now(), None, 0u64);
    while count < n && start.elapsed() < give_up {
        let got = consumer.poll(Duration::from_millis(100)).await.expect("poll").len() as u64;
        if got > 0 && first.is_none() {
            first = Some((Instant::now(), got));
        }
        count += got;
    }
    if count < n {
        println!("  gave up after {} s with {count} of {n} records out", give_up.as_secs());
        return None;
    }
    let (t0, c0) = first?;
    Some((n - c0) as f64 / t0.elapsed().as_secs_f64())
}

/// Reads `n` records of `topic` stamped at or after `from` (ms) as a `read_committed`
/// consumer; each one's age on arrival (ms), and how long reading them all took.
async fn consume_ages(kafka: &krafka::Kafka, topic: &str, n: usize, from: i64, give_up: Duration) -> (Vec<i64>, Duration) {
    let consumer =
        kafka.consumer_without_group().isolation_level(IsolationLevel::ReadCommitted).max_poll_records(-1).build().await.expect("consumer");
    consumer.assign(topic, (0..PARTITIONS).collect()).await.expect("assign");
    for p in 0..PARTITIONS {
        consumer.seek(topic, p, 0).await.expect("seek");
    }
    let (start, mut ages) = (Instant::now(), Vec::with_capacity(n));
    while ages.len() < n && start.elapsed() < give_up {
        let polled = consumer.poll(Duration::from_millis(100)).await.expect("poll");
        let at = now_ms();
        ages.extend(polled.iter().filter(|r| r.timestamp >= from).map(|r| at - r.timestamp));
    }
    (ages, start.elapsed())
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn latency_line(name: &str, mut ages: Vec<i64>, expected: usize) {
    ages.sort_unstable();
    let note = if ages.len() < expected { format!("  (only {} of {expected} seen)", ages.len()) } else { String::new() };
    println!("{name:<46} {:>10} {:>10}{note}", percentile(&ages, 0.5), percentile(&ages, 0.99));
}

/// `weir run` of kafka_counts at parallelism `p` with `args`, checkpoints every second.
fn start_job(wasm: &Path, p: &str, args: &[String], log: &Path) -> Child {
    let mut c = WEIR.command();
    c.args(["run", "-p", p, "--checkpoint-interval", "1000"]).arg(wasm);
    for a in args {
        c.args(["--arg", a]);
    }
    c.stdout(Stdio::null()).stderr(std::fs::File::create(log).expect("log file")).spawn().expect("weir run starts")
}

fn stop(mut child: Child, log: &Path) {
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for l in text.lines().filter(|l| l.contains("ERROR")).take(3) {
        println!("  job error: {l}");
    }
}

/// Polls `count` until it reaches `n`: records/s from the job's start (process start,
/// component load and connecting included, about a second) to the n-th output.
fn rate_until(n: u64, give_up: Duration, mut count: impl FnMut() -> u64) -> Option<f64> {
    let started = Instant::now();
    let mut c = 0;
    while started.elapsed() < give_up {
        c = count();
        if c >= n {
            return Some(n as f64 / started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("  gave up after {} s with {c} of {n} records out", give_up.as_secs());
    None
}

fn pg_rows(pg: &Postgres, table: &str) -> u64 {
    pg.psql(&format!("SELECT count(*) FROM {table}")).trim().parse().unwrap_or(0)
}

pub fn bench() {
    let n: u64 = std::env::var("WEIR_BENCH_KAFKA_N").ok().and_then(|s| s.parse().ok()).unwrap_or(400_000);
    let rate: u64 = std::env::var("WEIR_BENCH_KAFKA_RATE").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let secs = 10;
    let wasm = WEIR.example("kafka_counts");
    let k = Kafka::start();
    let pg = Postgres::start();
    let rt = runtime();
    let kafka = rt.block_on(client(&k));
    let log = std::env::temp_dir().join(format!("weir-bench-kafka-{}.log", std::process::id()));
    let password = format!("pg-password-file={}", pg.dir().join("pw").display());
    let give_up = Duration::from_secs(90);
    let mut topics = 0;
    let mut topic = |k: &Kafka| {
        topics += 1;
        let (input, output) = (format!("in-{topics}"), format!("out-{topics}"));
        k.create_topic(&input, PARTITIONS);
        k.create_topic(&output, PARTITIONS);
        (input, output)
    };

    println!();
    println!("N = {n} records ({KEYS} keys, {PARTITIONS} partitions), tansu 0.6 (memory) on this machine, checkpoints every 1 s");
    println!("{:<46} {:>14}", "kafka throughput", "rec/s");
    // The broker's ceiling: produce N, then read N, with the same client.
    let (input, _) = topic(&k);
    let t = Instant::now();
    rt.block_on(produce(&kafka, &input, 0, n));
    println!("{:<46} {:>14.0}", "broker: produce (acks=all)", n as f64 / t.elapsed().as_secs_f64());
    let (ages, took) = rt.block_on(consume_ages(&kafka, &input, n as usize, i64::MIN, give_up));
    println!("{:<46} {:>14.0}", "broker: consume (read_committed)", ages.len() as f64 / took.as_secs_f64());
    println!("exactly-once Kafka sink: not measured, tansu 0.6 cannot commit a transaction (no EndTxn)");

    for p in ["1", "2"] {
        let (input, output) = topic(&k);
        rt.block_on(produce(&kafka, &input, 0, n));
        let args = [
            format!("bootstrap-servers={}", k.bootstrap()),
            format!("topic={input}"),
            "sink=kafka".into(),
            format!("sink-topic={output}"),
            "delivery=at-least-once".into(),
        ];
        let job = start_job(&wasm, p, &args, &log);
        let r = runtime().block_on(async { consume_rate(&client(&k).await, &output, n, give_up).await });
        stop(job, &log);
        println!("{:<46} {:>14.0}", format!("Kafka -> count -> Kafka (at-least-once), p={p}"), r.unwrap_or(f64::NAN));
    }
    for p in ["1", "2"] {
        let (input, _) = topic(&k);
        let table = format!("counts_{p}");
        pg.psql(&format!("CREATE TABLE {table} (k text NOT NULL, v bigint NOT NULL)"));
        rt.block_on(produce(&kafka, &input, 0, n));
        let args = [
            format!("bootstrap-servers={}", k.bootstrap()),
            format!("topic={input}"),
            "sink=postgres".into(),
            format!("pg-port={}", pg.port()),
            password.clone(),
            format!("pg-table={table}"),
        ];
        let job = start_job(&wasm, p, &args, &log);
        // Rows appear a checkpoint (1 s) at a time: counted from the job's start.
        let r = rate_until(n, give_up, || pg_rows(&pg, &table));
        stop(job, &log);
        println!("{:<46} {:>14.0}", format!("Kafka -> count -> PostgreSQL (exactly-once), p={p}"), r.unwrap_or(f64::NAN));
    }

    let expected = (rate * secs) as usize;
    println!();
    println!("latency at {rate} rec/s for {secs} s, produce to visible, ms");
    println!("{:<46} {:>10} {:>10}", "", "p50", "p99");
    let (input, _) = topic(&k);
    let ages = std::thread::scope(|s| {
        let reader = s.spawn(|| runtime().block_on(async { consume_ages(&client(&k).await, &input, expected, i64::MIN, give_up).await.0 }));
        rt.block_on(produce_at_rate(&kafka, &input, rate, secs));
        reader.join().expect("reader")
    });
    latency_line("broker: produce -> read_committed consumer", ages, expected);
    for p in ["1", "2"] {
        let (input, output) = topic(&k);
        let args = [
            format!("bootstrap-servers={}", k.bootstrap()),
            format!("topic={input}"),
            "sink=kafka".into(),
            format!("sink-topic={output}"),
            "start=latest".into(),
        ];
        let job = start_job(&wasm, p, &args, &log);
        // Running once a record makes it through (`start = latest`: records sent
        // before the source opened are not read).
        let mut warm = Vec::new();
        for _ in 0..60 {
            rt.block_on(produce(&kafka, &input, 0, 1));
            warm = runtime().block_on(async { consume_ages(&client(&k).await, &output, 1, i64::MIN, Duration::from_secs(2)).await.0 });
            if !warm.is_empty() {
                break;
            }
        }
        let from = now_ms();
        let ages = std::thread::scope(|s| {
            let reader = s.spawn(|| runtime().block_on(async { consume_ages(&client(&k).await, &output, expected, from, give_up).await.0 }));
            rt.block_on(produce_at_rate(&kafka, &input, rate, secs));
            reader.join().expect("reader")
        });
        stop(job, &log);
        let name = format!("Kafka -> count -> Kafka (at-least-once), p={p}");
        if warm.is_empty() {
            println!("{name:<46} no output within 120 s");
            continue;
        }
        latency_line(&name, ages, expected);
    }
    for p in ["1", "2"] {
        let (input, _) = topic(&k);
        let table = format!("lat_{p}");
        pg.psql(&format!("CREATE TABLE {table} (k text NOT NULL, v bigint NOT NULL)"));
        let args = [
            format!("bootstrap-servers={}", k.bootstrap()),
            format!("topic={input}"),
            "sink=postgres".into(),
            format!("pg-port={}", pg.port()),
            password.clone(),
            format!("pg-table={table}"),
            "start=latest".into(),
        ];
        let job = start_job(&wasm, p, &args, &log);
        let mut warm = 0;
        while pg_rows(&pg, &table) == 0 && warm < 600 {
            rt.block_on(produce(&kafka, &input, 0, 1));
            std::thread::sleep(Duration::from_millis(200));
            warm += 1;
        }
        let before = pg_rows(&pg, &table) as usize;
        // Row count -> when it was first seen.
        let (seen, times) = std::thread::scope(|s| {
            let poller = s.spawn(|| {
                let (start, mut seen) = (Instant::now(), BTreeMap::new());
                let mut last = before;
                while last < before + expected && start.elapsed() < give_up {
                    let c = pg_rows(&pg, &table) as usize;
                    if c > last {
                        seen.insert(c, now_ms());
                        last = c;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                seen
            });
            let times = rt.block_on(produce_at_rate(&kafka, &input, rate, secs));
            (poller.join().expect("poller"), times)
        });
        stop(job, &log);
        let ages: Vec<i64> = times.iter().enumerate().filter_map(|(i, sent)| seen.range(before + i + 1..).next().map(|(_, at)| at - sent)).collect();
        latency_line(&format!("Kafka -> count -> PostgreSQL (exactly-once), p={p}"), ages, expected);
    }
    let _ = std::fs::remove_file(&log);
}
