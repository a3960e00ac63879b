//! A real Kafka broker for tests: `tansu` (crates.io), started on a free loopback port
//! and killed when dropped, with a small client (krafka) to create topics, produce and
//! read back.
//!
//! Storage is `memory://`: the installed tansu has only its object-store engine
//! (`dynostore`: memory and S3), and its durable PostgreSQL engine needs the `postgres`
//! feature and a PostgreSQL server. So [`Kafka::restart`] starts a new, empty broker on
//! the same address: it stands for an outage, not for durability.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use krafka::admin::NewTopic;
use krafka::{Kafka as Client, Record};

use crate::cluster::wait_until;

/// Where `tansu` is: `$WEIR_TANSU`, else where `.ci/run` installs it, else `$PATH`.
pub fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_TANSU") {
        return p.into();
    }
    let cached = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir-tools/tansu/bin/tansu"));
    cached.filter(|p| p.exists()).unwrap_or_else(|| "tansu".into())
}

/// One record as read back: partition, offset, timestamp, key, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Partition.
    pub partition: i32,
    /// Offset in it.
    pub offset: i64,
    /// Kafka timestamp (ms).
    pub timestamp: i64,
    /// Key bytes (empty if none).
    pub key: Vec<u8>,
    /// Value bytes (empty if none).
    pub value: Vec<u8>,
}

/// A running tansu broker.
pub struct Kafka {
    child: Option<Child>,
    port: u16,
    log: tempfile::NamedTempFile,
    rt: tokio::runtime::Runtime,
}

impl Kafka {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime");
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut k = Self { child: None, port, log, rt };
        k.spawn();
        k
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(self.log.reopen().expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tansu ({}): {e}; install it with .ci/run", tansu().display()));
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        wait_until("tansu to listen", || TcpStream::connect(&addr).is_ok());
    }

    /// `127.0.0.1:PORT`, the bootstrap servers.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the broker logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Kills the broker (SIGKILL): clients see it unreachable.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same address (empty: see the module's note).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn client(&self) -> Client {
        self.rt.block_on(Client::builder(self.bootstrap()).client_id("weir-test").connect()).expect("connect to tansu")
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin = self.client().admin();
        let t = NewTopic::new(topic, partitions, 1).expect("topic name");
        let r = self.rt.block_on(admin.create_topics([t], Default::default())).expect("create topics");
        for (name, result) in r {
            result.unwrap_or_else(|e| panic!("create topic {name}: {e}"));
        }
    }

    /// Tries to add partitions to `topic` so that it has `total` (tansu 0.6 has no
    /// CreatePartitions: the error says so).
    pub fn add_partitions(&self, topic: &str, total: i32) -> Result<(), String> {
        let admin = self.client().admin();
        let r = self.rt.block_on(admin.create_partitions([(topic, total)], Default::default())).map_err(|e| e.to_string())?;
        r.into_values().collect::<Result<Vec<()>, _>>().map(drop).map_err(|e| e.to_string())
    }

    /// Produces `(partition, key, value, timestamp)` records, acknowledged by the broker.
    ///
    /// Not idempotent: tansu 0.6 drops batches of a new idempotent producer whose
    /// sequence numbers an earlier one used (records went missing that way).
    pub fn produce(&self, topic: &str, records: &[(i32, Vec<u8>, Vec<u8>, i64)]) {
        let client = self.client();
        self.rt.block_on(async {
            let producer = client.producer().idempotent(false).acks(krafka::producer::Acks::All).build().await.expect("producer");
            let mut handles = Vec::with_capacity(records.len());
            for (p, k, v, ts) in records {
                let r = Record::new(topic, v.clone()).key(k.clone()).partition(*p).timestamp(*ts);
                handles.push(producer.enqueue(r).await.expect("enqueue"));
            }
            for h in handles {
                let _ack = h.await.expect("record acknowledged");
            }
            producer.close().await.expect("producer closes");
        });
    }

    /// Every record of `topic`'s partitions `0..partitions`, in partition then offset
    /// order.
    pub fn read_all(&self, topic: &str, partitions: i32) -> Vec<Read> {
        let client = self.client();
        self.rt.block_on(async {
            // Unlimited polls: krafka 0.28.1 loses records past `max_poll_records`.
            let consumer = client.consumer_without_group().max_poll_records(-1).build().await.expect("consumer");
            consumer.assign(topic, (0..partitions).collect()).await.expect("assign");
            let mut ends = Vec::new();
            for p in 0..partitions {
                consumer.seek(topic, p, 0).await.expect("seek");
                ends.push(consumer.fetch_watermarks(topic, p).await.expect("watermarks").1);
            }
            let mut out = Vec::new();
            let mut next = vec![0i64; partitions as usize];
            while next.iter().zip(&ends).any(|(n, e)| n < e) {
                for r in consumer.poll(Duration::from_millis(500)).await.expect("poll") {
                    next[r.partition as usize] = r.offset + 1;
                    out.push(Read {
                        partition: r.partition,
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key.map(|b| b.to_vec()).unwrap_or_default(),
                        value: r.value.map(|b| b.to_vec()).unwrap_or_default(),
                    });
                }
            }
            out.sort_by_key(|r| (r.partition, r.offset));
            out
        })
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        self.stop();
    }
}
