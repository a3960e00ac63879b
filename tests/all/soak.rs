//! The soak run (`just soak`; ignored by default): 500 short checkpointed jobs and 100
//! uploads of distinct components in a row on a JobManager and 2 TaskManagers, with
//! small caps on the artifact store and the compiled-component caches. Every 50 jobs
//! it samples each process's RSS and open descriptors and the bytes on disk
//! (checkpoints, job history, artifacts, compiled caches, TaskManager state), prints
//! the table, and checks that what is bounded stays flat after the first 50 jobs.

use std::path::Path;

use serde_json::json;
use weir_testkit::TestCluster;

use crate::WEIR;
use crate::servers::{Api, variant};

/// Jobs per upload, and jobs between samples.
const JOBS_PER_UPLOAD: usize = 5;
const EVERY: usize = 50;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Bytes of the files under `path`, skipping the subdirectories named in `skip`.
fn du(path: &Path, skip: &[&str]) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match e.file_type() {
                Ok(t) if t.is_dir() && skip.contains(&name.as_str()) => 0,
                Ok(t) if t.is_dir() => du(&e.path(), &[]),
                _ => e.metadata().map_or(0, |m| m.len()),
            }
        })
        .sum()
}

struct Sample {
    jobs: usize,
    uploads: usize,
    rss: Vec<u64>,
    fds: Vec<usize>,
    checkpoints: u64,
    history: u64,
    artifacts: u64,
    caches: u64,
    state: u64,
}

#[test]
#[ignore = "the soak run: `just soak`"]
fn soak_500_jobs_and_100_uploads_stay_flat() {
    let caps = ["--cache-max-mib", "4", "--compiled-memory-mib", "4"];
    let mut jm_args = vec![
        "--checkpoint-dir",
        "{dir}/checkpoints",
        "--cache-dir",
        "{dir}/cache-jobmanager",
        "--artifact-store-mib",
        "4",
        "--max-component-size",
        "1000000",
    ];
    jm_args.extend(caps);
    let mut cluster = TestCluster::start_with(WEIR, &[], &jm_args);
    for name in ["taskmanager-1", "taskmanager-2"] {
        cluster.start_taskmanager_with(name, 2, &caps);
    }
    cluster.wait_until("two taskmanagers", || cluster.status().contains("free slots: 4"));
    let api = Api::new(&cluster);
    let base = std::fs::read(WEIR.example("keyed_sum")).expect("example");
    let dir = cluster.dir.path().to_path_buf();
    let sample = |jobs: usize, uploads: usize| Sample {
        jobs,
        uploads,
        rss: cluster.pids().iter().map(|&p| rss_kib(p)).collect(),
        fds: cluster.pids().iter().map(|&p| fds(p)).collect(),
        checkpoints: du(&dir.join("checkpoints"), &["_history", "_artifacts", "_jobs"]),
        history: du(&dir.join("checkpoints/_history"), &[]),
        artifacts: du(&dir.join("checkpoints/_artifacts"), &[]),
        caches: du(&dir.join("cache-jobmanager"), &[]) + du(&dir.join("cache-taskmanager-1"), &[]) + du(&dir.join("cache-taskmanager-2"), &[]),
        state: du(&dir.join("state-taskmanager-1"), &[]) + du(&dir.join("state-taskmanager-2"), &[]),
    };
    // WEIR_SOAK_JOBS=N for a shorter try of the harness (sampling every N/10 jobs).
    let jobs: usize = std::env::var("WEIR_SOAK_JOBS").ok().and_then(|n| n.parse().ok()).unwrap_or(500);
    let every = if jobs >= 500 { EVERY } else { (jobs / 10).max(1) };
    let mut samples = vec![sample(0, 0)];
    let mut artifact = String::new();
    let mut uploads = 0;
    for job in 0..jobs {
        if job % JOBS_PER_UPLOAD == 0 {
            uploads += 1;
            // A distinct component each time (another hash), 200 KiB bigger.
            artifact = api.artifact(&variant(&base, uploads as u32, 200 << 10));
        }
        let id = api.create(&json!({
            "artifact": artifact, "parallelism": 2, "checkpointIntervalMs": 20,
            "args": {"n": "300000", "sink": "discard"},
        }));
        api.wait_state(&id, "FINISHED");
        if (job + 1) % every == 0 {
            samples.push(sample(job + 1, uploads));
            let s = samples.last().expect("sample");
            eprintln!("{} jobs: rss {:?} KiB, fds {:?}, checkpoints {} B, caches {} B", s.jobs, s.rss, s.fds, s.checkpoints, s.caches);
        }
    }
    let mib = |b: u64| format!("{:.1}", b as f64 / f64::from(1 << 20));
    println!(
        "| jobs | uploads | RSS JM / TM1 / TM2 (MiB) | open fds JM / TM1 / TM2 | checkpoints (MiB) | history (MiB) | artifacts (MiB) | compiled caches (MiB) | TM state (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in &samples {
        let rss: Vec<String> = s.rss.iter().map(|k| format!("{:.0}", *k as f64 / 1024.0)).collect();
        let fds: Vec<String> = s.fds.iter().map(ToString::to_string).collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.jobs,
            s.uploads,
            rss.join(" / "),
            fds.join(" / "),
            mib(s.checkpoints),
            mib(s.history),
            mib(s.artifacts),
            mib(s.caches),
            mib(s.state)
        );
    }
    // Bounded by their caps: artifacts 4 MiB (plus the one just stored), caches 4 MiB
    // each (plus the newest); checkpoints by retention (10 ended jobs); descriptors by
    // the HTTP cap, the compiled-code cap and (TaskManagers) fjall's 128 table files.
    // Not asserted, reported: TaskManager RSS and state bytes, which grow with fjall's
    // metadata keyspace (ARCHITECTURE.md, "A cluster that runs for months").
    let first = &samples[1];
    for s in &samples[1..] {
        assert!(s.artifacts <= 5 << 20, "artifacts over the cap at {} jobs: {}", s.jobs, s.artifacts);
        assert!(s.caches <= 3 * (5 << 20), "compiled caches over the cap at {} jobs: {}", s.jobs, s.caches);
        assert!(
            s.checkpoints <= first.checkpoints * 2 + (4 << 20),
            "checkpoints grew: {} at {} jobs, {} first",
            s.checkpoints,
            s.jobs,
            first.checkpoints
        );
        assert!(s.fds[0] <= first.fds[0] + 16, "jobmanager descriptors grew: {:?} at {} jobs, {:?} first", s.fds, s.jobs, first.fds);
        assert!(s.rss[0] <= first.rss[0] * 2, "jobmanager memory grew: {:?} at {} jobs, {:?} first", s.rss, s.jobs, first.rss);
        assert!(s.fds[1..].iter().all(|&n| n <= 128 + 64), "taskmanager descriptors past the cache: {:?} at {} jobs", s.fds, s.jobs);
    }
}
