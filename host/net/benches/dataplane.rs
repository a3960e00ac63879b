//! Data-plane throughput between two processes on loopback: 32 KiB record batches over
//! `open_data_stream`/`RawSend` into `accept_data_stream`/`RawRecv`, mutual TLS as in a
//! real cluster, one sender process and one receiver process.
//!
//! `CARGO_TARGET_DIR=/work/target-net cargo bench -p weir-net --bench dataplane`
//!
//! Two processes, not two endpoints in one, so each side has its own runtime, allocator
//! and peak RSS, as two TaskManagers would. The receiver is this binary re-executed with
//! [`RECEIVER_ENV`] set; it measures from the first byte it reads to the last.
//!
//! `WEIR_DATAPLANE_MIB` overrides the volume per case (default 2048). Without `--bench`
//! (e.g. `cargo test --benches`) it runs a small smoke volume instead.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::task::JoinSet;
use weir_net::{CLOSE_OK, CaCert, ClusterCa, Endpoint, NodeIdentity, RawRecv, accept_data_stream, open_data_stream};

/// Set (to the identity directory) in the re-executed child: "you are the receiver".
const RECEIVER_ENV: &str = "WEIR_DATAPLANE_RECEIVER_DIR";
/// Number of data streams the receiver should expect.
const STREAMS_ENV: &str = "WEIR_DATAPLANE_STREAMS";
/// Overrides the MiB sent per case.
const VOLUME_ENV: &str = "WEIR_DATAPLANE_MIB";

const SENDER: &str = "taskmanager-1";
const RECEIVER: &str = "taskmanager-2";

/// The record batch size Weir ships between operators.
const BATCH: usize = 32 * 1024;
const TARGET_MB_S: f64 = 200.0;
const FULL_MIB: u64 = 2048;
const SMOKE_MIB: u64 = 64;
/// A case that takes this long is broken, not slow (2 GiB at 20 MB/s is ~100 s).
const CASE_TIMEOUT: Duration = Duration::from_secs(300);
const RESULT_PREFIX: &str = "RESULT";

fn main() -> Result<()> {
    if let Some(dir) = std::env::var_os(RECEIVER_ENV) {
        return receiver(Path::new(&dir));
    }
    let full = std::env::args().any(|a| a == "--bench");
    let mib = match std::env::var(VOLUME_ENV) {
        Ok(v) => v.parse().with_context(|| format!("{VOLUME_ENV}={v:?}"))?,
        Err(_) if full => FULL_MIB,
        Err(_) => SMOKE_MIB,
    };

    let dir = tempfile::tempdir().context("tempdir")?;
    let ca = ClusterCa::generate()?;
    ca.save(&dir.path().join("ca"))?;
    for name in [SENDER, RECEIVER] {
        ca.issue(name)?.save(&dir.path().join(name))?;
    }

    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    let mut all_met = true;
    for streams in [1usize, 4] {
        let m = run_case(&rt, dir.path(), streams, mib << 20)?;
        let mb_s = m.bytes as f64 / m.secs / 1e6;
        all_met &= mb_s >= TARGET_MB_S;
        println!(
            "dataplane {streams} stream{}: {mb_s:.0} MB/s, 32 KiB frames, {} MiB in {:.2} s, \
             sender RSS {} MiB, receiver RSS {} MiB",
            if streams == 1 { "" } else { "s" },
            m.bytes >> 20,
            m.secs,
            m.sender_rss_kib / 1024,
            m.receiver_rss_kib / 1024,
        );
    }
    // A smoke run is usually an unoptimized build: its rate says nothing about the target.
    let verdict = match (full, all_met) {
        (false, _) => "not evaluated (smoke run without --bench)",
        (true, true) => "met",
        (true, false) => "NOT met",
    };
    println!("dataplane target {TARGET_MB_S:.0} MB/s: {verdict}");
    Ok(())
}

struct Measure {
    bytes: u64,
    secs: f64,
    sender_rss_kib: u64,
    receiver_rss_kib: u64,
}

/// The receiver process; killed and reaped on drop so an error path leaves no orphan.
struct ReceiverProcess {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl ReceiverProcess {
    fn spawn(ids: &Path, streams: usize) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe().context("current_exe")?)
            .env(RECEIVER_ENV, ids)
            .env(STREAMS_ENV, streams.to_string())
            // The child exits when this pipe closes, so it cannot outlive a parent
            // that dies without running destructors.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the receiver")?;
        let stdout = child.stdout.take().context("receiver stdout")?;
        Ok(Self { child, stdout: BufReader::new(stdout) })
    }

    /// The next stdout line; an error if the receiver exited instead.
    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line).context("reading receiver")? == 0 {
            let status = self.child.wait().context("waiting for receiver")?;
            bail!("receiver exited early: {status}");
        }
        Ok(line.trim_end().to_owned())
    }

    fn wait(mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for receiver")? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("receiver did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ReceiverProcess {
    fn drop(&mut self) {
        // Already exited (the normal case) makes kill fail harmlessly; wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_case(rt: &tokio::runtime::Runtime, ids: &Path, streams: usize, total: u64) -> Result<Measure> {
    if !reset_peak_rss() {
        eprintln!("cannot reset VmHWM: sender RSS is this process's lifetime peak");
    }
    let mut rx = ReceiverProcess::spawn(ids, streams)?;
    let addr: SocketAddr = rx.line()?.parse().context("receiver printed no address")?;
    let frames_per_stream = total / streams as u64 / BATCH as u64;
    rt.block_on(async { tokio::time::timeout(CASE_TIMEOUT, send(ids, addr, streams, frames_per_stream)).await.context("sender timed out")? })?;
    let sender_rss_kib = peak_rss_kib()?;

    let result = rx.line()?;
    let fields: Vec<u64> = result
        .strip_prefix(RESULT_PREFIX)
        .with_context(|| format!("unexpected receiver output {result:?}"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("unexpected receiver output {result:?}"))?;
    let &[bytes, nanos, receiver_rss_kib] = fields.as_slice() else {
        bail!("unexpected receiver output {result:?}");
    };
    let status = rx.wait(Duration::from_secs(30))?;
    ensure!(status.success(), "receiver failed: {status}");
    let expected = frames_per_stream * streams as u64 * BATCH as u64;
    ensure!(bytes == expected, "receiver got {bytes} bytes, sent {expected}");
    Ok(Measure { bytes, secs: nanos as f64 / 1e9, sender_rss_kib, receiver_rss_kib })
}

fn load(ids: &Path, name: &str) -> Result<(NodeIdentity, CaCert)> {
    let id = NodeIdentity::load(&ids.join(name))?;
    let ca = CaCert::load(&ids.join("ca").join("ca.pem"))?;
    Ok((id, ca))
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn send(ids: &Path, addr: SocketAddr, streams: usize, frames: u64) -> Result<()> {
    let (id, ca) = load(ids, SENDER)?;
    let ep = Endpoint::bind(loopback(), &id, &ca)?;
    let conn = ep.connect(addr).await?;
    ensure!(conn.peer_name() == RECEIVER, "connected to {}", conn.peer_name());
    // Not all zeros, so nothing on the way could get away with special-casing it.
    let batch: Arc<[u8]> = (0..BATCH).map(|i| (i * 31 % 251) as u8).collect();
    let mut tasks = JoinSet::new();
    for channel in 0..streams {
        let (conn, batch) = (conn.clone(), batch.clone());
        tasks.spawn(async move {
            let mut tx = open_data_stream(&conn, &(channel as u32)).await?;
            for _ in 0..frames {
                tx.send(&batch).await?;
            }
            tx.finish().await?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    conn.close(CLOSE_OK, "done");
    ep.wait_idle().await;
    Ok(())
}

/// Child side: bind, announce the address, receive every stream, report one line.
fn receiver(ids: &Path) -> Result<()> {
    // EOF on stdin means the parent is gone: stop rather than wait forever.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(3);
    });
    let streams: usize = std::env::var(STREAMS_ENV).context(STREAMS_ENV)?.parse().context(STREAMS_ENV)?;
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    let (bytes, elapsed) = rt.block_on(receive(ids, streams))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{RESULT_PREFIX} {bytes} {} {}", elapsed.as_nanos(), peak_rss_kib()?)?;
    out.flush()?;
    Ok(())
}

async fn receive(ids: &Path, streams: usize) -> Result<(u64, Duration)> {
    let (id, ca) = load(ids, RECEIVER)?;
    let ep = Endpoint::bind(loopback(), &id, &ca)?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", ep.local_addr()?)?;
        out.flush()?;
    }
    let conn = ep.accept().await.context("endpoint closed")?;
    ensure!(conn.peer_name() == SENDER, "accepted {}", conn.peer_name());

    let mut tasks = JoinSet::new();
    for _ in 0..streams {
        let (_channel, rx): (u32, RawRecv) = accept_data_stream(&conn).await?;
        // The header just arrived: this is the stream's first byte.
        let first = Instant::now();
        tasks.spawn(drain(rx, first));
    }
    let mut bytes = 0;
    let mut first_byte: Option<Instant> = None;
    let mut last_byte: Option<Instant> = None;
    while let Some(done) = tasks.join_next().await {
        let (n, first, last) = done??;
        bytes += n;
        first_byte = Some(first_byte.map_or(first, |f| f.min(first)));
        last_byte = Some(last_byte.map_or(last, |l| l.max(last)));
    }
    let elapsed = match (first_byte, last_byte) {
        (Some(f), Some(l)) => l.duration_since(f),
        _ => bail!("no streams"),
    };
    // The sender closes once its `finish` calls are acknowledged; closing first
    // could lose those acknowledgements and fail the sender.
    tokio::time::timeout(Duration::from_secs(30), conn.closed()).await.context("sender did not close the connection")?;
    Ok((bytes, elapsed))
}

async fn drain(mut rx: RawRecv, first: Instant) -> Result<(u64, Instant, Instant)> {
    let mut bytes = 0u64;
    let mut last = first;
    while let Some(batch) = rx.recv().await? {
        bytes += batch.len() as u64;
        last = Instant::now();
    }
    Ok((bytes, first, last))
}

/// Resets this process's VmHWM to its current RSS, so each case reports its own peak;
/// false if the kernel does not allow it.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size in KiB (VmHWM).
fn peak_rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}
