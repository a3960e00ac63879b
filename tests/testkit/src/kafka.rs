//! A real Kafka broker for tests: `tansu` (crates.io), started on a free loopback port
//! and killed when dropped, with a small client (krafka) to create topics, produce and
//! read back.
//!
//! [`Kafka::start`] stores in `memory://`, so its [`Kafka::restart`] is an empty broker
//! on the same address: an outage, not durability. [`Kafka::start_durable`] stores in
//! S3 (`s3://tansu/`) served by `moto_server` (PyPI `moto[server]`, an S3 emulator that
//! keeps objects in its process): the broker's restart keeps every record, as long as
//! the harness lives. The installed tansu has only its object-store engine
//! (`dynostore`: memory and S3); its PostgreSQL engine needs another build.

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

/// Where `moto_server` is: `$WEIR_MOTO`, else where `.ci/run` installs it.
pub fn moto() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_MOTO") {
        return p.into();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".cache/weir-tools/moto/bin/moto_server")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The S3 emulator behind a durable broker, with bucket `tansu`.
struct Moto {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Moto {
    fn start() -> Self {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let port = free_port();
        let bin = moto();
        // Not a skip: a durable broker is what the test asked for.
        assert!(
            bin.exists(),
            "moto_server not found at {} (set WEIR_MOTO, or run .ci/run, which installs it into ~/.cache/weir-tools/moto)",
            bin.display()
        );
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let moto = Self { child, port, log };
        let addr = format!("127.0.0.1:{port}");
        wait_until("moto_server to listen", || TcpStream::connect(&addr).is_ok());
        let (status, body) = crate::http::request("PUT", &format!("http://{addr}/tansu"), &[], b"");
        assert!(status == 200, "create bucket tansu in moto: {status} {}", String::from_utf8_lossy(&body));
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    // Declared after `child` so the broker is killed before its storage.
    moto: Option<Moto>,
}

impl Kafka {
    /// Starts a broker on a free port with `memory://` storage and waits until it
    /// accepts connections.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a broker storing in S3 (a `moto_server` started for it, killed on drop):
    /// [`Kafka::restart`] keeps the records. Fails, naming the install step, when
    /// moto is missing.
    pub fn start_durable() -> Self {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime");
        let log = tempfile::NamedTempFile::new().expect("log file");
        let moto = durable.then(Moto::start);
        let mut k = Self { child: None, port: free_port(), log, rt, moto };
        k.spawn();
        k
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut cmd = Command::new(tansu());
        let storage = match &self.moto {
            None => "memory://tansu/",
            Some(m) => {
                // object_store's S3 client, pointed at moto over plain HTTP.
                cmd.env("AWS_ACCESS_KEY_ID", "test")
                    .env("AWS_SECRET_ACCESS_KEY", "test")
                    .env("AWS_DEFAULT_REGION", "us-east-1")
                    .env("AWS_ENDPOINT", format!("http://127.0.0.1:{}", m.port))
                    .env("AWS_ALLOW_HTTP", "true");
                "s3://tansu/"
            }
        };
        let child = cmd
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", storage])
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

    /// What the broker (and its S3 emulator, if durable) logged.
    pub fn log(&self) -> String {
        let moto = self.moto.as_ref().map(|m| std::fs::read_to_string(m.log.path()).unwrap_or_default()).unwrap_or_default();
        std::fs::read_to_string(self.log.path()).unwrap_or_default() + &moto
    }

    /// Kills the broker (SIGKILL): clients see it unreachable.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same address: empty from [`Kafka::start`], with
    /// every record from [`Kafka::start_durable`].
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
