//! `weir clicks generate`: the seed job's input. Click `i` (of `--from .. --from +
//! --clicks`) is the text record `user,logged_in,/page/p` (the format
//! `examples-wasm/clicks` reads) keyed by the user's id, with user, login and page
//! drawn from `splitmix64` of `i`: the same numbers always make the same clicks, so
//! each user's count of logged-in clicks is known exactly and written with `--expect`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use krafka::Kafka;
use krafka::producer::{Acks, Record};

#[derive(Subcommand)]
pub enum ClicksCommand {
    /// Produce clicks into a Kafka topic, with a known number of logged-in clicks per user.
    Generate(GenerateArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    /// The broker(s) to bootstrap from, `HOST:PORT[,HOST:PORT]`.
    #[arg(long)]
    bootstrap: String,
    /// The topic (it must exist).
    #[arg(long, default_value = "clicks")]
    topic: String,
    /// How many clicks to produce.
    #[arg(long)]
    clicks: u64,
    /// The first click's number: runs over consecutive ranges add up to one run over
    /// their union.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Users `0..users`.
    #[arg(long, default_value_t = 1000)]
    users: u64,
    /// Clicks per second (default: as fast as the broker takes them).
    #[arg(long)]
    rate: Option<u64>,
    /// Write each user's logged-in clicks of this run here, `user<TAB>clicks` per line
    /// (users without any left out), once every click is acknowledged.
    #[arg(long)]
    expect: Option<PathBuf>,
}

/// The standard splitmix64 finalizer (as the examples define it).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Click `i`: its user, whether logged in (about 7 in 10), its page.
fn click(i: u64, users: u64) -> (u64, bool, u64) {
    let h = splitmix64(i);
    (h % users, splitmix64(i ^ 0xC11C_C11C) % 10 < 7, (h >> 32) % 100)
}

pub fn run(c: ClicksCommand) -> Result<()> {
    match c {
        ClicksCommand::Generate(a) => generate(a),
    }
}

fn generate(a: GenerateArgs) -> Result<()> {
    if a.users == 0 {
        bail!("--users must be at least 1");
    }
    if a.rate == Some(0) {
        bail!("--rate must be at least 1 click per second");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let expected = rt.block_on(produce(&a))?;
    let logged_in: u64 = expected.values().sum();
    if let Some(path) = &a.expect {
        let mut out = String::new();
        for (user, n) in &expected {
            out.push_str(&format!("{user}\t{n}\n"));
        }
        std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "produced clicks {}..{} ({} logged in, {} users) to topic {} at {}",
        a.from,
        a.from + a.clicks,
        logged_in,
        expected.len(),
        a.topic,
        a.bootstrap
    );
    Ok(())
}

/// Produces the clicks, every one acknowledged by all replicas; each user's logged-in
/// clicks. Not idempotent: tansu 0.6 drops the batches of a new idempotent producer
/// whose sequence numbers an earlier one used.
async fn produce(a: &GenerateArgs) -> Result<BTreeMap<u64, u64>> {
    let fail = || format!("broker at {}", a.bootstrap);
    let client = Kafka::builder(a.bootstrap.clone()).client_id("weir-clicks").allow_auto_create_topics(false).connect().await.with_context(fail)?;
    // A producer waits forever for a topic that does not exist: look it up first.
    let lookup = client.consumer_without_group().build().await.with_context(fail)?;
    let meta = lookup.fetch_metadata(Some(&a.topic)).await;
    // Nothing was joined: a failed close leaves nothing behind.
    let _closed = lookup.close().await;
    let meta = meta.with_context(|| format!("topic {:?} at {}", a.topic, a.bootstrap))?;
    if !meta.topics.iter().any(|t| t.name == a.topic && !t.partitions.is_empty()) {
        bail!("topic {:?} does not exist at {} (create it first, e.g. `tansu topic create {} --partitions 4`)", a.topic, a.bootstrap, a.topic);
    }
    let producer = client.producer().idempotent(false).acks(Acks::All).build().await.with_context(fail)?;
    // Acknowledged in batches: bounded memory, and a pace check between them.
    let batch = a.rate.map_or(1000, |r| (r / 20).clamp(1, 1000));
    let start = Instant::now();
    let mut expected = BTreeMap::new();
    let mut i = a.from;
    let end = a.from.checked_add(a.clicks).context("--from + --clicks overflows")?;
    while i < end {
        let upto = (i + batch).min(end);
        let mut acks = Vec::with_capacity((upto - i) as usize);
        for n in i..upto {
            let (user, logged_in, page) = click(n, a.users);
            if logged_in {
                *expected.entry(user).or_insert(0) += 1;
            }
            let r = Record::new(a.topic.clone(), format!("{user},{logged_in},/page/{page}")).key(user.to_string());
            acks.push(producer.enqueue(r).await.with_context(|| format!("click {n} to topic {}", a.topic))?);
        }
        for (n, ack) in (i..upto).zip(acks) {
            let _acked = ack.await.with_context(|| format!("click {n} not acknowledged by {}", fail()))?;
        }
        i = upto;
        if let Some(rate) = a.rate {
            let due = Duration::from_secs_f64((i - a.from) as f64 / rate as f64);
            tokio::time::sleep(due.saturating_sub(start.elapsed())).await;
        }
    }
    producer.close().await.with_context(fail)?;
    Ok(expected)
}
