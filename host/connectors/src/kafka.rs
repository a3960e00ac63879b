//! The Kafka source and sink. The source, after Flink's KafkaSource: every partition of the topics is a
//! split whose state is the offset of its next record, kept in checkpoints; offsets are
//! never taken from the broker for recovery. A partition belongs to one subtask by a
//! fixed rule ([`owner`]), so a restore at any parallelism hands every partition to
//! exactly one subtask, and a partition discovered while running goes to its owner.
//! Offsets are committed to the consumer group when a checkpoint completes, for lag
//! monitoring only.
//!
//! The client is krafka (pure Rust, async); each source drives it on its own
//! single-threaded runtime from the subtask's thread.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use krafka::Kafka;
use krafka::admin::{AdminClient, ListConsumerGroupOffsetsOptions};
use krafka::consumer::TopicPartition;
use krafka::consumer::{Consumer, ConsumerRecord};
use weir_checkpoint::Split;
use weir_types::plan::Connector;

use crate::{ConnectorError, Options};

const KIND: &str = "kafka";

/// Where a partition starts when no checkpoint names its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest retained record.
    Earliest,
    /// Only records produced after the job started.
    Latest,
    /// The first record whose timestamp is at or after this (ms); the end if none is.
    Timestamp(i64),
    /// The consumer group's committed offset; the earliest where it has none.
    Committed,
}

/// How a record's value reaches the operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Length-prefixed bytes: the SDK's `Vec<u8>`, or `String` when the values are UTF-8.
    Bytes,
    /// The bytes as they are (like the `text-lines` source), for single-operator SDKs.
    Raw,
}

/// A Kafka source's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOptions {
    /// `bootstrap-servers`: `host:port[,host:port...]`.
    pub bootstrap: String,
    /// `topic`: one or more, comma-separated.
    pub topics: Vec<String>,
    /// `start`: earliest (default), latest, timestamp (with `start-timestamp-ms`), committed.
    pub start: Start,
    /// `group-id`: where offsets are committed when checkpoints complete (and read
    /// from with `start = committed`). None: nothing is committed.
    pub group: Option<String>,
    /// `discovery-interval-ms` (default 5000, 0: off): how often new partitions are looked for.
    pub discovery: Option<Duration>,
    /// `format`: bytes (default) or raw.
    pub format: Format,
}

fn problem(problem: impl Into<String>) -> ConnectorError {
    ConnectorError::Option { kind: KIND.into(), problem: problem.into() }
}

fn external(problem: impl Into<String>) -> ConnectorError {
    ConnectorError::External { kind: KIND.into(), problem: problem.into() }
}

/// Reads and checks a Kafka source's options (no broker is reached).
pub fn source_options(c: &Connector) -> Result<SourceOptions, ConnectorError> {
    let mut o = Options::new(c);
    let bootstrap = o.required("bootstrap-servers")?.to_string();
    check_bootstrap(&bootstrap)?;
    let topics: Vec<String> = o.required("topic")?.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
    if topics.is_empty() {
        return Err(problem("option `topic` names no topic"));
    }
    let start = o.choice("start", &["earliest", "latest", "timestamp", "committed"], "earliest")?;
    let at: Option<i64> = match o.optional("start-timestamp-ms") {
        Some(v) => Some(v.parse().map_err(|e| problem(format!("option `start-timestamp-ms` = {v:?}: {e}")))?),
        None => None,
    };
    let start = match (start, at) {
        ("timestamp", Some(t)) => Start::Timestamp(t),
        ("timestamp", None) => return Err(problem("`start = timestamp` needs `start-timestamp-ms`")),
        (_, Some(_)) => return Err(problem("`start-timestamp-ms` goes with `start = timestamp`")),
        ("latest", None) => Start::Latest,
        ("committed", None) => Start::Committed,
        _ => Start::Earliest,
    };
    let group = o.optional("group-id").map(str::to_string);
    if start == Start::Committed && group.is_none() {
        return Err(problem("`start = committed` needs `group-id`"));
    }
    let discovery = o.parsed::<u64>("discovery-interval-ms", 5000)?;
    let format = match o.choice("format", &["bytes", "raw"], "bytes")? {
        "raw" => Format::Raw,
        _ => Format::Bytes,
    };
    o.finish()?;
    Ok(SourceOptions { bootstrap, topics, start, group, discovery: (discovery > 0).then(|| Duration::from_millis(discovery)), format })
}

/// The subtask of `parallelism` that reads `partition` of `topic`: Flink's
/// KafkaSourceEnumerator rule, the topic's partitions round-robin from a start that
/// depends on the topic, so several topics spread over the subtasks too.
pub fn owner(topic: &str, partition: i32, parallelism: u32) -> u32 {
    let p = i64::from(parallelism.max(1));
    // Java's String.hashCode over UTF-16 units, as Flink computes it.
    let hash = topic.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let start = i64::from(hash.wrapping_mul(31) & 0x7FFF_FFFF) % p;
    ((start + i64::from(partition)) % p) as u32
}

/// A single-threaded runtime for one source's client, driven with `block_on` from the
/// thread that owns it (a subtask's, or a short-lived one at submission).
fn runtime() -> Result<tokio::runtime::Runtime, ConnectorError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| external(format!("cannot start a runtime: {e}")))
}

async fn connect(bootstrap: &str) -> Result<Kafka, ConnectorError> {
    let connecting = Kafka::builder(bootstrap)
        .client_id("weir")
        .connect_timeout(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(10))
        .allow_auto_create_topics(false)
        .connect();
    match tokio::time::timeout(Duration::from_secs(15), connecting).await {
        Ok(Ok(k)) => Ok(k),
        Ok(Err(e)) => Err(external(format!("broker unreachable at {bootstrap}: {e}"))),
        Err(_) => Err(external(format!("broker unreachable at {bootstrap}: no answer within 15 s"))),
    }
}

/// The partition numbers of `topic`, or an error naming it when it does not exist.
async fn partitions_of(consumer: &Consumer, topic: &str) -> Result<Vec<i32>, ConnectorError> {
    let meta = consumer.fetch_metadata(Some(topic)).await.map_err(|e| external(format!("topic {topic:?}: {e}")))?;
    let info = meta.topics.into_iter().find(|t| t.name == topic).ok_or_else(|| external(format!("topic {topic:?} does not exist")))?;
    let mut ps: Vec<i32> = info.partitions.values().map(|p| p.partition).collect();
    if ps.is_empty() {
        return Err(external(format!("topic {topic:?} does not exist (no partitions)")));
    }
    ps.sort_unstable();
    Ok(ps)
}

/// Reaches the broker as a source would: every topic must exist. Runs on its own
/// thread, so it may be called from inside an async runtime.
pub fn probe_source(o: &SourceOptions) -> Result<(), ConnectorError> {
    let o = o.clone();
    let probe = std::thread::spawn(move || -> Result<(), ConnectorError> {
        runtime()?.block_on(async {
            let kafka = connect(&o.bootstrap).await?;
            let consumer = kafka.consumer_without_group().build().await.map_err(|e| external(format!("cannot create a consumer: {e}")))?;
            for t in &o.topics {
                partitions_of(&consumer, t).await?;
            }
            Ok(())
        })
    });
    probe.join().map_err(|_| external("the broker probe panicked"))?
}

/// One partition this subtask reads.
#[derive(Debug, Clone)]
struct Part {
    topic: String,
    partition: i32,
    /// The offset of the next record to emit.
    next: i64,
    /// The end of the log when last looked (for lag), if known.
    high: Option<i64>,
    /// `start = timestamp`: records older than this are passed over until the first
    /// one at or after it (Kafka's rule for a start by timestamp). The offset moves past
    /// them, so a checkpoint taken meanwhile does not read them again.
    skip_before: Option<i64>,
}

/// Consumer lag of one partition: how many records it holds past what was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Records not read yet (the log's end minus the next offset).
    pub records: i64,
}

/// What [`KafkaSource::next`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// The split (partition index) its records came from.
    pub split: usize,
    /// How many records were appended (0: nothing now).
    pub count: usize,
}

/// A subtask's share of a Kafka source: the partitions it owns.
pub struct KafkaSource {
    o: SourceOptions,
    rt: tokio::runtime::Runtime,
    /// Keeps the connection the consumer and admin share.
    _kafka: Kafka,
    consumer: Consumer,
    admin: AdminClient,
    subtask: u32,
    parallelism: u32,
    /// The splits, in the order they were assigned: the index names the split.
    parts: Vec<Part>,
    index: HashMap<(String, i32), usize>,
    /// Polled records not emitted yet, per split.
    pending: Vec<VecDeque<ConsumerRecord>>,
    /// Whose turn it is among the splits with pending records.
    turn: usize,
    /// Offsets at each checkpoint's barrier, committed to the group when it completes.
    at_barrier: VecDeque<(u64, Vec<(TopicPartition, i64)>)>,
    next_discovery: Option<Instant>,
    /// The lag was looked up since [`Self::take_lag`] last took it.
    lag_fresh: bool,
    scratch: Vec<u8>,
}

impl KafkaSource {
    /// Subtask `subtask` of `parallelism`: the partitions it owns, from the offsets in
    /// `restored` (every split of the source's last checkpoint, whichever subtask held
    /// it), else from the start position. Partitions that the checkpoint does not know
    /// are new since and start at the earliest offset, like Flink's.
    pub fn open(o: SourceOptions, subtask: u32, parallelism: u32, restored: Option<&[Split]>) -> Result<Self, ConnectorError> {
        let rt = runtime()?;
        let (kafka, consumer, admin) = rt.block_on(async {
            let kafka = connect(&o.bootstrap).await?;
            let consumer = kafka
                .consumer_without_group()
                .fetch_max_wait(Duration::from_millis(100))
                // krafka 0.28.1 loses fetched records beyond `max_poll_records` (500
                // by default): 8000 records in one partition came out as 7322, with
                // offset gaps after every second poll. Unlimited, a poll hands out
                // everything fetched (a fetch is bounded by its byte limits).
                .max_poll_records(-1)
                .build()
                .await
                .map_err(|e| external(format!("cannot create a consumer: {e}")))?;
            let admin = kafka.admin();
            Ok::<_, ConnectorError>((kafka, consumer, admin))
        })?;
        let mut known = BTreeMap::new();
        for s in restored.unwrap_or_default() {
            match s {
                Split::Partition { topic, partition, offset } => known.insert((topic.clone(), *partition), *offset),
                other => return Err(external(format!("a checkpoint of another kind of source ({other:?}) cannot resume a Kafka source"))),
            };
        }
        let mut src = Self {
            o,
            rt,
            _kafka: kafka,
            consumer,
            admin,
            subtask,
            parallelism,
            parts: Vec::new(),
            index: HashMap::new(),
            pending: Vec::new(),
            turn: 0,
            at_barrier: VecDeque::new(),
            next_discovery: None,
            lag_fresh: false,
            scratch: Vec::new(),
        };
        let start = if restored.is_some() { None } else { Some(src.o.start) };
        src.assign_new(&known, start)?;
        src.next_discovery = src.o.discovery.map(|d| Instant::now() + d);
        Ok(src)
    }

    /// Looks up the topics' partitions and assigns those this subtask owns and does
    /// not read yet: at their offset in `known`, else at `start` (None: earliest, for
    /// partitions new since the checkpoint or discovered while running).
    fn assign_new(&mut self, known: &BTreeMap<(String, i32), i64>, start: Option<Start>) -> Result<usize, ConnectorError> {
        let mut new: Vec<(String, i32)> = Vec::new();
        for t in self.o.topics.clone() {
            let ps = self.rt.block_on(partitions_of(&self.consumer, &t))?;
            new.extend(
                ps.into_iter()
                    .filter(|&p| owner(&t, p, self.parallelism) == self.subtask)
                    .map(|p| (t.clone(), p))
                    .filter(|k| !self.index.contains_key(k)),
            );
        }
        if new.is_empty() {
            return Ok(0);
        }
        let unknown: Vec<(String, i32)> = new.iter().filter(|k| !known.contains_key(*k)).cloned().collect();
        let mut offsets: HashMap<(String, i32), i64> = self.start_offsets(&unknown, start.unwrap_or(Start::Earliest))?;
        for k in &new {
            if let Some(&o) = known.get(k) {
                offsets.insert(k.clone(), o);
            }
        }
        for k in new {
            let next = offsets.get(&k).copied().ok_or_else(|| external(format!("no start offset for {}-{}", k.0, k.1)))?;
            self.index.insert(k.clone(), self.parts.len());
            let skip_before = match start {
                Some(Start::Timestamp(t)) if !known.contains_key(&k) => Some(t),
                _ => None,
            };
            self.parts.push(Part { topic: k.0, partition: k.1, next, high: None, skip_before });
            self.pending.push(VecDeque::new());
        }
        self.reassign()?;
        Ok(self.index.len())
    }

    /// Gives the consumer every split at its next offset (dropping what it buffered).
    fn reassign(&mut self) -> Result<(), ConnectorError> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for p in &self.parts {
            by_topic.entry(&p.topic).or_default().push(p.partition);
        }
        let (consumer, parts) = (&self.consumer, &self.parts);
        self.rt.block_on(async {
            for (t, ps) in by_topic {
                consumer.assign(t, ps).await.map_err(|e| external(format!("cannot assign partitions of {t:?}: {e}")))?;
            }
            for p in parts {
                consumer.seek(&p.topic, p.partition, p.next).await.map_err(|e| external(format!("cannot seek {}-{}: {e}", p.topic, p.partition)))?;
            }
            Ok::<_, ConnectorError>(())
        })?;
        for q in &mut self.pending {
            q.clear();
        }
        Ok(())
    }

    /// Concrete offsets for `parts` at `start`, so a checkpoint always holds numbers.
    fn start_offsets(&self, parts: &[(String, i32)], start: Start) -> Result<HashMap<(String, i32), i64>, ConnectorError> {
        if parts.is_empty() {
            return Ok(HashMap::new());
        }
        let list = |ts: i64| -> Result<HashMap<(String, i32), i64>, ConnectorError> {
            let refs: Vec<(&str, i32)> = parts.iter().map(|(t, p)| (t.as_str(), *p)).collect();
            let found = self.rt.block_on(self.consumer.offsets_for_times(&refs, ts));
            found
                .into_iter()
                .map(|(k, r)| r.map(|o| (k.clone(), o)).map_err(|e| external(format!("cannot list offsets of {}-{}: {e}", k.0, k.1))))
                .collect()
        };
        match start {
            Start::Earliest => list(-2),
            Start::Latest => list(-1),
            Start::Timestamp(t) => {
                // The broker's time index may only be trusted to point at or before
                // the first such record (tansu answers 0, or -1 for "none", for any
                // timestamp): start there or at the earliest, and `next` skips the
                // older records before the first one at or after `t`.
                let mut at = list(t)?;
                let earliest = list(-2)?;
                for (k, o) in at.iter_mut() {
                    if *o < 0 {
                        *o = earliest.get(k).copied().unwrap_or(0);
                    }
                }
                Ok(at)
            }
            Start::Committed => {
                let mut at = list(-2)?;
                let group = self.o.group.clone().unwrap_or_default();
                let committed = self
                    .rt
                    .block_on(self.admin.list_consumer_group_offsets(group.clone(), ListConsumerGroupOffsetsOptions::default()))
                    .map_err(|e| external(format!("cannot read the committed offsets of group {group:?}: {e}")))?;
                for (tp, r) in committed {
                    if let (Ok(g), Some(o)) = (&r, at.get_mut(&(tp.topic.clone(), tp.partition)))
                        && let Some(c) = g.offset
                    {
                        *o = c;
                    }
                }
                Ok(at)
            }
        }
    }

    /// How many splits (partitions) it reads now; discovery adds more, never fewer.
    pub fn split_count(&self) -> usize {
        self.parts.len()
    }

    /// Appends the next records of one partition to `out` with `push(out, ts, key,
    /// value)`, at most about `limit` bytes more, or reports a read of nothing when the
    /// partitions hold no new records (after waiting up to `wait`).
    pub fn next(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
        wait: Duration,
        push: fn(&mut Vec<u8>, i64, &[u8], &[u8]),
    ) -> Result<Read, ConnectorError> {
        if self.next_discovery.is_some_and(|t| Instant::now() >= t) {
            self.discover()?;
        }
        let n = self.parts.len();
        if n == 0 {
            // Owns nothing (yet): waits like an idle read, so discovery can run.
            std::thread::sleep(wait);
            return Ok(Read { split: 0, count: 0 });
        }
        if self.pending.iter().all(VecDeque::is_empty) {
            let polled = self.rt.block_on(self.consumer.poll(wait)).map_err(|e| external(format!("poll failed: {e}")))?;
            for r in polled {
                if let Some(&i) = self.index.get(&(r.topic.to_string(), r.partition)) {
                    self.pending[i].push_back(r);
                }
            }
        }
        let Some(split) = (0..n).map(|k| (self.turn + k) % n).find(|&i| !self.pending[i].is_empty()) else {
            let split = self.turn % n;
            self.turn = (split + 1) % n;
            return Ok(Read { split, count: 0 });
        };
        self.turn = (split + 1) % n;
        let (mut count, limit) = (0, out.len() + limit);
        let part = &mut self.parts[split];
        while out.len() < limit {
            let Some(r) = self.pending[split].pop_front() else { break };
            // A re-fetch after a seek may repeat what was emitted: offsets decide.
            if r.offset < part.next {
                continue;
            }
            if part.skip_before.is_some_and(|t| r.timestamp < t) {
                part.next = r.offset + 1;
                continue;
            }
            part.skip_before = None;
            let key = r.key.as_deref().unwrap_or_default();
            let value = r.value.as_deref().unwrap_or_default();
            match self.o.format {
                Format::Raw => push(out, r.timestamp, key, value),
                Format::Bytes => {
                    self.scratch.clear();
                    push_varint(&mut self.scratch, value.len() as u64);
                    self.scratch.extend_from_slice(value);
                    push(out, r.timestamp, key, &self.scratch);
                }
            }
            part.next = r.offset + 1;
            count += 1;
        }
        Ok(Read { split, count })
    }

    /// Looks for partitions added to the topics since; new ones this subtask owns start
    /// at their earliest offset.
    fn discover(&mut self) -> Result<(), ConnectorError> {
        let before = self.parts.len();
        // A broker that is briefly away delays discovery; reads report it.
        match self.assign_new(&BTreeMap::new(), None) {
            Ok(_) if self.parts.len() > before => {
                let added: Vec<String> = self.parts[before..].iter().map(|p| format!("{}-{}", p.topic, p.partition)).collect();
                tracing::info!(subtask = self.subtask, "Kafka source: new partitions {}", added.join(", "));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(subtask = self.subtask, "Kafka source: partition discovery failed: {e}"),
        }
        self.refresh_lag();
        self.next_discovery = self.o.discovery.map(|d| Instant::now() + d);
        Ok(())
    }

    /// Asks the broker where each partition's log ends, for [`Self::lag`].
    pub fn refresh_lag(&mut self) {
        let ends: Vec<Option<i64>> =
            self.parts.iter().map(|p| self.rt.block_on(self.consumer.fetch_watermarks(&p.topic, p.partition)).ok().map(|(_, high)| high)).collect();
        for (p, high) in self.parts.iter_mut().zip(ends) {
            if high.is_some() {
                p.high = high;
            }
        }
        self.lag_fresh = true;
    }

    /// [`Self::lag`] if the logs' ends were looked up since the last call.
    pub fn take_lag(&mut self) -> Option<Vec<Lag>> {
        std::mem::take(&mut self.lag_fresh).then(|| self.lag())
    }

    /// Consumer lag per partition, as of the last look at the logs' ends.
    pub fn lag(&self) -> Vec<Lag> {
        self.parts
            .iter()
            .filter_map(|p| p.high.map(|h| Lag { topic: p.topic.clone(), partition: p.partition, records: (h - p.next).max(0) }))
            .collect()
    }

    /// The position: every partition with the offset of its next record.
    pub fn splits(&self) -> Vec<Split> {
        self.parts.iter().map(|p| Split::Partition { topic: p.topic.clone(), partition: p.partition, offset: p.next }).collect()
    }

    /// Checkpoint `id`'s barrier leaves now: remembers the offsets to commit when it
    /// completes.
    pub fn barrier(&mut self, id: u64) {
        if self.o.group.is_none() {
            return;
        }
        let offsets = self.parts.iter().map(|p| (TopicPartition::new(p.topic.clone(), p.partition), p.next)).collect();
        self.at_barrier.push_back((id, offsets));
        // Checkpoints that never complete must not pile up.
        while self.at_barrier.len() > 16 {
            self.at_barrier.pop_front();
        }
    }

    /// Checkpoint `id` completed: commits its offsets to the group (for monitoring; a
    /// failure is logged, never fatal: recovery uses the checkpoint's offsets).
    pub fn checkpoint_completed(&mut self, id: u64) {
        let Some(group) = self.o.group.clone() else { return };
        let mut newest = None;
        while self.at_barrier.front().is_some_and(|(k, _)| *k <= id) {
            newest = self.at_barrier.pop_front();
        }
        let Some((_, offsets)) = newest else { return };
        let committed = self.rt.block_on(self.admin.alter_consumer_group_offsets(group.clone(), offsets, Default::default()));
        match committed {
            Ok(r) => {
                for (tp, e) in r.into_iter().filter_map(|(tp, r)| r.err().map(|e| (tp, e))) {
                    tracing::warn!(
                        checkpoint = id,
                        "Kafka source: cannot commit the offset of {}-{} to group {group:?}: {e}",
                        tp.topic,
                        tp.partition
                    );
                }
            }
            Err(e) => tracing::warn!(checkpoint = id, "Kafka source: cannot commit offsets to group {group:?}: {e}"),
        }
    }
}

/// Appends `v` as a postcard varint (the SDK's encoding of lengths).
fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

// ---------------------------------------------------------------------------------
// The Kafka sink.

/// How a Kafka sink's records reach the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Idempotent producer; every record acknowledged before the subtask acknowledges a
    /// barrier, so a completed checkpoint's records are all in Kafka. A restore writes
    /// the records after the restored checkpoint again: duplicates, never a loss.
    AtLeastOnce,
    /// One Kafka transaction per subtask per checkpoint, committed when the checkpoint
    /// completes; `read_committed` consumers see every record once. Needs a broker with
    /// transactions (EndTxn), and checkpoints.
    ExactlyOnce,
}

/// A Kafka sink's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// `bootstrap-servers`: `host:port[,host:port...]`.
    pub bootstrap: String,
    /// `topic`: the one topic records go to (partitioned by key, Kafka's default rule).
    pub topic: String,
    /// `delivery`: `at-least-once` (default, as Flink's) or `exactly-once`.
    pub delivery: Delivery,
    /// `transaction-timeout-ms` (default 900 000, Kafka's usual broker maximum): how long
    /// the broker keeps a transaction open. Checked at submission against the
    /// checkpoint interval and the restart time ([`check_transaction_timeout`]).
    pub transaction_timeout: Duration,
    /// `transactional-id-prefix`: transactional ids are `<prefix>-<subtask>`; by default
    /// `weir-<job>-<sink uid>` (set it to keep the ids across a resubmission, so the new
    /// job aborts what the old one left open).
    pub transactional_id_prefix: Option<String>,
}

fn check_bootstrap(bootstrap: &str) -> Result<(), ConnectorError> {
    if bootstrap.split(',').any(|s| s.trim().rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())) {
        return Err(problem(format!("option `bootstrap-servers` = {bootstrap:?}: expected host:port[,host:port...]")));
    }
    Ok(())
}

/// Reads and checks a Kafka sink's options (no broker is reached).
pub fn sink_options(c: &Connector) -> Result<SinkOptions, ConnectorError> {
    let mut o = Options::new(c);
    let bootstrap = o.required("bootstrap-servers")?.to_string();
    check_bootstrap(&bootstrap)?;
    let topic = o.required("topic")?.trim().to_string();
    if topic.is_empty() || topic.contains(',') {
        return Err(problem(format!("option `topic` = {topic:?}: a sink writes one topic")));
    }
    let delivery = match o.choice("delivery", &["at-least-once", "exactly-once"], "at-least-once")? {
        "exactly-once" => Delivery::ExactlyOnce,
        _ => Delivery::AtLeastOnce,
    };
    let timeout = o.parsed::<u64>("transaction-timeout-ms", 900_000)?;
    if timeout == 0 {
        return Err(problem("option `transaction-timeout-ms` must be positive"));
    }
    let prefix = o.optional("transactional-id-prefix").map(str::to_string);
    o.finish()?;
    Ok(SinkOptions { bootstrap, topic, delivery, transaction_timeout: Duration::from_millis(timeout), transactional_id_prefix: prefix })
}

/// Flink's rule for a transactional sink: a transaction opened after one checkpoint is
/// committed after the next completes, or, after a failure, by the restore; the broker
/// must keep it open that long (the checkpoint interval plus the longest restart),
/// else it aborts it and the checkpoint's records are lost. Without checkpoints there
/// is no transaction to commit: `exactly-once` is refused.
pub fn check_transaction_timeout(o: &SinkOptions, checkpoint_interval: Option<Duration>, restart: Duration) -> Result<(), ConnectorError> {
    if o.delivery != Delivery::ExactlyOnce {
        return Ok(());
    }
    let Some(interval) = checkpoint_interval else {
        return Err(problem("`delivery = exactly-once` commits a transaction per checkpoint: the job needs checkpoints (--checkpoint-interval)"));
    };
    let needed = interval + restart;
    if o.transaction_timeout <= needed {
        return Err(problem(format!(
            "option `transaction-timeout-ms` = {} must exceed the checkpoint interval ({} ms) plus the restart time ({} ms): the broker would abort transactions a restore still has to commit",
            o.transaction_timeout.as_millis(),
            interval.as_millis(),
            restart.as_millis()
        )));
    }
    Ok(())
}

/// The broker's supported API keys (an ApiVersions v0 request on a plain TCP
/// connection to the first bootstrap server): krafka negotiates versions internally
/// but does not expose them.
fn api_keys(bootstrap: &str) -> Result<Vec<i16>, ConnectorError> {
    use std::io::{Read as _, Write as _};
    use std::net::ToSocketAddrs;
    let server = bootstrap.split(',').next().unwrap_or_default().trim();
    let fail = |e: std::io::Error| external(format!("broker unreachable at {server}: {e}"));
    let addr = server.to_socket_addrs().map_err(fail)?.next().ok_or_else(|| external(format!("broker unreachable at {server}: no address")))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(fail)?;
    let client = b"weir";
    // api key 18 (ApiVersions), version 0, correlation id 1, client id.
    let mut body = vec![0, 18, 0, 0, 0, 0, 0, 1, 0, client.len() as u8];
    body.extend_from_slice(client);
    let mut req = (body.len() as u32).to_be_bytes().to_vec();
    req.extend_from_slice(&body);
    s.write_all(&req).map_err(fail)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(fail)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 1 << 20 {
        return Err(external(format!("broker at {server}: an ApiVersions answer of {len} bytes")));
    }
    let mut r = vec![0u8; len];
    s.read_exact(&mut r).map_err(fail)?;
    let bad = || external(format!("broker at {server}: a malformed ApiVersions answer"));
    // correlation id (4), error code (2), array count (4), then (key, min, max) i16s.
    let n = r.get(6..10).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(bad)?;
    let error = i16::from_be_bytes([r[4], r[5]]);
    if error != 0 {
        return Err(external(format!("broker at {server}: ApiVersions answered error {error}")));
    }
    (0..n.max(0) as usize).map(|i| r.get(10 + 6 * i..12 + 6 * i).map(|b| i16::from_be_bytes([b[0], b[1]])).ok_or_else(bad)).collect()
}

/// The API key of EndTxn, which commits or aborts a transaction.
const END_TXN: i16 = 26;

/// Reaches the broker as a sink would: the topic must exist, and for `exactly-once`
/// the broker must be able to commit transactions (EndTxn among its APIs).
pub fn probe_sink(o: &SinkOptions) -> Result<(), ConnectorError> {
    let o = o.clone();
    let probe = std::thread::spawn(move || -> Result<(), ConnectorError> {
        runtime()?.block_on(async {
            let kafka = connect(&o.bootstrap).await?;
            let consumer = kafka.consumer_without_group().build().await.map_err(|e| external(format!("cannot create a consumer: {e}")))?;
            partitions_of(&consumer, &o.topic).await.map(drop)
        })?;
        if o.delivery == Delivery::ExactlyOnce && !api_keys(&o.bootstrap)?.contains(&END_TXN) {
            return Err(external(format!(
                "`delivery = exactly-once` needs Kafka transactions, but the broker at {} cannot commit one (no EndTxn, API key {END_TXN}, in its ApiVersions); use `delivery = at-least-once` or a broker with transactions",
                o.bootstrap
            )));
        }
        Ok(())
    });
    probe.join().map_err(|_| external("the broker probe panicked"))?
}

/// How many sends may wait for their acknowledgement before the writer waits for them
/// (bounds memory between barriers; the producer's own buffer bounds the bytes).
const MAX_IN_FLIGHT: usize = 100_000;

/// A sink subtask's producer in `at-least-once` mode.
pub struct KafkaWriter {
    rt: tokio::runtime::Runtime,
    _kafka: Kafka,
    producer: krafka::producer::Producer,
    topic: String,
    /// Sends not known acknowledged yet.
    in_flight: Vec<krafka::producer::DeliveryHandle>,
}

/// A runtime whose worker sends batches while the subtask's thread processes records
/// (a single-threaded one would send only inside `block_on`).
fn producer_runtime() -> Result<tokio::runtime::Runtime, ConnectorError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("weir-kafka-sink")
        .enable_all()
        .build()
        .map_err(|e| external(format!("cannot start a runtime: {e}")))
}

impl KafkaWriter {
    /// Connects an idempotent producer for `o.topic`.
    pub fn open(o: &SinkOptions) -> Result<Self, ConnectorError> {
        let rt = producer_runtime()?;
        let (kafka, producer) = rt.block_on(async {
            let kafka = connect(&o.bootstrap).await?;
            let producer = kafka
                .producer()
                .idempotent(true)
                .acks(krafka::producer::Acks::All)
                .linger(Duration::from_millis(5))
                .build()
                .await
                .map_err(|e| external(format!("cannot create a producer for topic {:?}: {e}", o.topic)))?;
            Ok::<_, ConnectorError>((kafka, producer))
        })?;
        Ok(Self { rt, _kafka: kafka, producer, topic: o.topic.clone(), in_flight: Vec::new() })
    }

    /// Queues records `(timestamp, key, value)` (the timestamp becomes the Kafka
    /// record's, so a Kafka-to-Kafka job keeps its input's times; the key picks the
    /// partition).
    pub fn write<'r>(&mut self, records: impl Iterator<Item = (i64, &'r [u8], &'r [u8])>) -> Result<(), ConnectorError> {
        let (producer, topic, in_flight) = (&self.producer, &self.topic, &mut self.in_flight);
        self.rt.block_on(async {
            for (ts, key, value) in records {
                let mut r = krafka::Record::new(topic.clone(), value.to_vec()).key(key.to_vec());
                // 0: the record has no event time (a generator's); the producer stamps it.
                if ts > 0 {
                    r = r.timestamp(ts);
                }
                let h = producer.enqueue(r).await.map_err(|e| external(format!("cannot send to topic {topic:?}: {e}")))?;
                in_flight.push(h);
            }
            Ok::<_, ConnectorError>(())
        })?;
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends everything queued and waits until the broker acknowledged every record;
    /// the first failure fails the subtask (its checkpoint never completes).
    pub fn flush(&mut self) -> Result<(), ConnectorError> {
        let (producer, topic) = (&self.producer, &self.topic);
        let handles = std::mem::take(&mut self.in_flight);
        self.rt.block_on(async {
            producer.flush().await.map_err(|e| external(format!("cannot flush to topic {topic:?}: {e}")))?;
            for h in handles {
                let _ack = h.await.map_err(|e| external(format!("a record was not acknowledged by topic {topic:?}: {e}")))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(pairs: &[(&str, &str)]) -> Connector {
        Connector { kind: KIND.into(), options: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    #[test]
    fn options_are_checked() {
        let ok = source_options(&connector(&[("bootstrap-servers", "a:9092,b:9093"), ("topic", "x, y")])).expect("valid");
        assert_eq!(ok.topics, ["x", "y"]);
        assert_eq!((ok.start, ok.format, ok.discovery), (Start::Earliest, Format::Bytes, Some(Duration::from_secs(5))));
        let refused = |pairs: &[(&str, &str)], wanted: &str| {
            let e = source_options(&connector(pairs)).expect_err("refused");
            assert!(e.to_string().contains(wanted), "{e}");
        };
        refused(&[("topic", "x")], "`bootstrap-servers` is required");
        refused(&[("bootstrap-servers", "nohost"), ("topic", "x")], "expected host:port");
        refused(&[("bootstrap-servers", "a:1"), ("topic", " , ")], "names no topic");
        refused(&[("bootstrap-servers", "a:1"), ("topic", "x"), ("start", "timestamp")], "needs `start-timestamp-ms`");
        refused(&[("bootstrap-servers", "a:1"), ("topic", "x"), ("start", "committed")], "needs `group-id`");
        refused(&[("bootstrap-servers", "a:1"), ("topic", "x"), ("start", "newest")], "expected one of");
        refused(&[("bootstrap-servers", "a:1"), ("topic", "x"), ("offset", "3")], "unknown option(s) offset");
        let t = source_options(&connector(&[("bootstrap-servers", "a:1"), ("topic", "x"), ("start", "timestamp"), ("start-timestamp-ms", "42")]));
        assert_eq!(t.expect("valid").start, Start::Timestamp(42));
    }

    #[test]
    fn sink_options_are_checked_and_transactions_must_outlive_a_checkpoint_and_a_restart() {
        let ok = sink_options(&connector(&[("bootstrap-servers", "a:9092"), ("topic", "out")])).expect("valid");
        assert_eq!(
            (ok.delivery, ok.transaction_timeout, ok.transactional_id_prefix.as_deref()),
            (Delivery::AtLeastOnce, Duration::from_secs(900), None)
        );
        let refused = |pairs: &[(&str, &str)], wanted: &str| {
            let e = sink_options(&connector(pairs)).expect_err("refused");
            assert!(e.to_string().contains(wanted), "{e}");
        };
        refused(&[("bootstrap-servers", "a:1"), ("topic", "x,y")], "a sink writes one topic");
        refused(&[("bootstrap-servers", "a:1"), ("topic", "x"), ("delivery", "exactly-twice")], "expected one of at-least-once, exactly-once");
        refused(&[("bootstrap-servers", "a:1"), ("topic", "x"), ("transaction-timeout-ms", "0")], "must be positive");
        refused(&[("bootstrap-servers", "a:1"), ("topic", "x"), ("group-id", "g")], "unknown option(s) group-id");

        let eo = |timeout: &str| {
            sink_options(&connector(&[
                ("bootstrap-servers", "a:1"),
                ("topic", "x"),
                ("delivery", "exactly-once"),
                ("transaction-timeout-ms", timeout),
            ]))
            .expect("valid")
        };
        let (second, restart) = (Some(Duration::from_secs(1)), Duration::from_secs(4));
        assert!(check_transaction_timeout(&eo("60000"), second, restart).is_ok());
        let e = check_transaction_timeout(&eo("5000"), second, restart).expect_err("5 s is not above 1 s + 4 s");
        assert!(e.to_string().contains("must exceed the checkpoint interval (1000 ms) plus the restart time (4000 ms)"), "{e}");
        let e = check_transaction_timeout(&eo("60000"), None, restart).expect_err("no checkpoints");
        assert!(e.to_string().contains("needs checkpoints"), "{e}");
        assert!(check_transaction_timeout(&ok, None, restart).is_ok(), "at least once needs neither");
    }

    /// Every partition has exactly one owner at every parallelism, and a topic's
    /// partitions spread evenly.
    #[test]
    fn partitions_spread_over_subtasks() {
        for p in 1..=5u32 {
            let mut per = vec![0; p as usize];
            for part in 0..20 {
                let o = owner("clicks", part, p);
                assert!(o < p);
                per[o as usize] += 1;
            }
            assert!(per.iter().max().unwrap_or(&0) - per.iter().min().unwrap_or(&0) <= 1, "{per:?}");
        }
    }
}
