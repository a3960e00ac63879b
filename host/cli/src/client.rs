//! The cluster client commands (`submit`, `list`, `status`, `cancel`, `savepoint`,
//! `logs`): the JobManager's REST API over HTTP with its bearer token, with progress
//! bars on a terminal and `--output json` for scripts.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_api::model::{
    Artifact, CheckpointList, Cluster, ErrorBody, EventList, Job, JobList, Metrics, SavepointDone, SavepointSpec, SubmitSpec, TaskManagerList,
};
use weir_jobmanager::JobSource;

/// How a client command prints its answer.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// The API's JSON document, for scripts.
    Json,
}

/// Where the JobManager's REST API is and how to authenticate.
#[derive(Args)]
pub struct Remote {
    /// The JobManager's REST address (`http://HOST:PORT` or `HOST:PORT`).
    #[arg(long, env = "WEIR_JOBMANAGER", default_value = "http://127.0.0.1:8081")]
    pub jobmanager: String,
    /// The API token (from `weir cluster-init`'s api-token file).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the API token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// A REST session with the JobManager.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
    pub output: Output,
}

impl Remote {
    pub fn connect(&self) -> Result<Client> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => std::fs::read_to_string(f).with_context(|| format!("cannot read the api token from {}", f.display()))?,
            (None, None) => bail!("no api token: pass --token-file (api-token from `weir cluster-init`), --token or WEIR_TOKEN"),
        };
        let base = if self.jobmanager.contains("://") { self.jobmanager.clone() } else { format!("http://{}", self.jobmanager) };
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_connect(Some(Duration::from_secs(10))).build().into();
        Ok(Client { agent, base: base.trim_end_matches('/').to_string(), auth: format!("Bearer {}", token.trim()), output: self.output })
    }
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    fn answer<T: DeserializeOwned>(&self, what: &str, sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<T> {
        let mut response = sent.with_context(|| format!("cannot reach the jobmanager at {}", self.base))?;
        let status = response.status();
        let body = response.body_mut().with_config().limit(64 << 20).read_to_string().with_context(|| format!("{what}: unreadable answer"))?;
        if status.is_success() {
            return serde_json::from_str(&body).with_context(|| format!("{what}: unexpected answer from the jobmanager"));
        }
        match serde_json::from_str::<ErrorBody>(&body) {
            Ok(e) => bail!("{what}: {} ({})", e.error.message, status.as_u16()),
            Err(_) => bail!("{what}: HTTP {status}"),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        self.answer(what, self.agent.get(self.url(path)).header("Authorization", &self.auth).call())
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize, what: &str) -> Result<T> {
        self.answer(what, self.agent.post(self.url(path)).header("Authorization", &self.auth).send_json(body))
    }

    /// Uploads a component, with a progress bar on a terminal.
    pub fn upload(&self, wasm: &[u8], name: &str) -> Result<Artifact> {
        let bar = progress(Some(wasm.len() as u64), &format!("uploading {name}"));
        let mut reader = bar.wrap_read(wasm);
        let sent = self
            .agent
            .post(self.url("/artifacts"))
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/wasm")
            .send(ureq::SendBody::from_reader(&mut reader as &mut dyn Read));
        bar.finish_and_clear();
        self.answer(&format!("artifact {name} was refused"), sent)
    }

    /// Prints `value` as JSON if asked; true if it did.
    pub fn json(&self, value: &impl Serialize) -> Result<bool> {
        if self.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(value)?);
            return Ok(true);
        }
        Ok(false)
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal); a spinner
/// without `len`.
fn progress(len: Option<u64>, message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})").unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => {
            let b = ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(120));
            b
        }
    };
    bar.set_message(message.to_string());
    bar
}

/// `weir submit`'s job options.
pub struct Submission<'a> {
    pub source: &'a JobSource,
    pub name: &'a str,
    pub spec: SubmitSpec,
    pub detach: bool,
}

/// Uploads, creates the job and (unless detached) follows it to its end; fails
/// unless it FINISHED.
pub fn submit(c: &Client, s: Submission<'_>) -> Result<()> {
    // A refused token is answered before the body is read, and the connection closed
    // under the upload: ask something small first so the refusal is what users see.
    let _: Cluster = c.get("/cluster", &format!("job {} was refused", s.name))?;
    let spec = match s.source {
        JobSource::Component(wasm) => SubmitSpec { artifact: Some(c.upload(wasm, s.name)?.id), ..s.spec },
        JobSource::Manifest { text, components } => {
            let mut ids = std::collections::BTreeMap::new();
            for (name, wasm) in components {
                ids.insert(name.clone(), c.upload(wasm, name)?.id);
            }
            SubmitSpec { manifest: Some(text.clone()), components: ids, ..s.spec }
        }
    };
    let job: Job = c.post("/jobs", &spec, &format!("job {} was refused", s.name))?;
    let id = job.metadata.id.clone();
    if c.output == Output::Text {
        println!("job {id} submitted");
        std::io::Write::flush(&mut std::io::stdout())?;
        // The submission event describes where each vertex's subtasks run.
        let events: EventList = c.get(&format!("/jobs/{id}/logs"), "job events")?;
        if let Some(e) = events.events.first() {
            eprintln!("{}", e.message.trim_end());
        }
    }
    if s.detach {
        c.json(&job)?;
        return Ok(());
    }
    let bar = progress(None, &format!("job {id} {}", job.status.state));
    let path = format!("/jobs/{id}");
    let job = loop {
        let job: Job = c.get(&path, &format!("lost track of job {id}"))?;
        if matches!(job.status.state.as_str(), "FINISHED" | "FAILED" | "TERMINATED") {
            break job;
        }
        let observed = job.status.started.as_ref().map_or("CREATED", |s| s.observed_job_status.as_str());
        bar.set_message(format!(
            "job {id} {} ({observed}, restarts {})",
            job.status.state,
            job.status.started.as_ref().map_or(0, |s| s.observed_job_restarts)
        ));
        std::thread::sleep(Duration::from_millis(200));
    };
    bar.finish_and_clear();
    if !c.json(&job)? {
        let metrics: Metrics = c.get(&format!("/jobs/{id}/metrics"), "job metrics")?;
        print_job(&job);
        print_vertices(&metrics, job.status.duration_ms);
    }
    match job.status.state.as_str() {
        "FINISHED" => Ok(()),
        state => bail!("job {} {}: {}", s.name, state.to_lowercase(), job.status.failure.map(|f| f.message).unwrap_or_default()),
    }
}

fn print_job(j: &Job) {
    let started = j.status.started.as_ref();
    let checkpoint = j.status.last_checkpoint.map_or("none".to_string(), |c| c.to_string());
    let error = j.status.failure.as_ref().map(|f| format!(" error: {}", f.message)).unwrap_or_default();
    println!(
        "job {} {} {} {:.3}s restarts={} checkpoint={checkpoint} state={}{error}",
        j.metadata.id,
        j.metadata.name,
        started.map_or("CREATED", |s| s.observed_job_status.as_str()),
        j.status.duration_ms as f64 / 1000.0,
        started.map_or(0, |s| s.observed_job_restarts),
        j.status.state,
    );
}

fn print_vertices(m: &Metrics, duration_ms: u64) {
    for v in &m.vertices {
        let rate = if v.records_in_per_second > 0.0 {
            v.records_in_per_second
        } else if duration_ms > 0 {
            v.records_in as f64 * 1000.0 / duration_ms as f64
        } else {
            0.0
        };
        println!(
            "  vertex {:?} x{} in={} out={} fuel={} backpressure={:.2} ({rate:.0} records/s in)",
            v.name, v.parallelism, v.records_in, v.records_out, v.fuel, v.backpressure
        );
    }
}

/// `weir list`: jobs, running and history.
pub fn list(c: &Client) -> Result<()> {
    let jobs: JobList = c.get("/jobs", "cannot list jobs")?;
    if c.json(&jobs)? {
        return Ok(());
    }
    println!("{:<18} {:<24} {:<12} {:<11} {:>10} {:>8}", "ID", "NAME", "STATE", "STATUS", "DURATION", "RESTARTS");
    for j in &jobs.jobs {
        let started = j.status.started.as_ref();
        println!(
            "{:<18} {:<24} {:<12} {:<11} {:>9.1}s {:>8}",
            j.metadata.id,
            j.metadata.name,
            j.status.state,
            started.map_or("CREATED", |s| s.observed_job_status.as_str()),
            j.status.duration_ms as f64 / 1000.0,
            started.map_or(0, |s| s.observed_job_restarts)
        );
    }
    Ok(())
}

/// `weir status [JOB]`: the cluster (TaskManagers, slots, jobs with their vertices),
/// or one job with its vertices and checkpoints.
pub fn status(c: &Client, job: Option<&str>) -> Result<()> {
    if let Some(id) = job {
        let j: Job = c.get(&format!("/jobs/{id}"), &format!("no status of job {id}"))?;
        let m: Metrics = c.get(&format!("/jobs/{id}/metrics"), "job metrics")?;
        let cps: CheckpointList = c.get(&format!("/jobs/{id}/checkpoints"), "job checkpoints")?;
        if c.json(&serde_json::json!({ "job": j, "metrics": m, "checkpoints": cps }))? {
            return Ok(());
        }
        print_job(&j);
        print_vertices(&m, j.status.duration_ms);
        for t in &j.status.transitions {
            println!("  {} at {}", t.state, t.time);
        }
        for cp in cps.checkpoints.iter().take(10) {
            println!(
                "  checkpoint {} {} {} bytes in {} ms",
                cp.id,
                cp.status,
                cp.size_bytes.map_or("-".into(), |s| s.to_string()),
                cp.duration_ms.map_or("-".into(), |d| d.to_string())
            );
        }
        return Ok(());
    }
    let cluster: Cluster = c.get("/cluster", "cannot query the jobmanager")?;
    let tms: TaskManagerList = c.get("/taskmanagers", "cannot query the jobmanager")?;
    let jobs: JobList = c.get("/jobs", "cannot list jobs")?;
    if c.json(&serde_json::json!({ "cluster": cluster, "taskmanagers": tms.taskmanagers, "jobs": jobs.jobs }))? {
        return Ok(());
    }
    for t in &tms.taskmanagers {
        let state = if t.alive { "alive" } else { "lost" };
        println!(
            "{} id={} slots={} used={} {state} addr={} data={} last-heartbeat={}ms",
            t.name, t.id, t.slots, t.used_slots, t.addr, t.data_addr, t.last_heartbeat_ms
        );
    }
    println!("free slots: {}", cluster.slots_free);
    for j in jobs.jobs.iter().rev() {
        print_job(j);
        if let Ok(m) = c.get::<Metrics>(&format!("/jobs/{}/metrics", j.metadata.id), "job metrics") {
            print_vertices(&m, j.status.duration_ms);
        }
    }
    Ok(())
}

/// `weir cancel JOB`.
pub fn cancel(c: &Client, id: &str) -> Result<()> {
    let j: Job = c.post(&format!("/jobs/{id}/cancel"), &serde_json::json!({}), &format!("cannot cancel job {id}"))?;
    if !c.json(&j)? {
        println!("job {id} cancelling");
    }
    Ok(())
}

/// `weir savepoint JOB --dir DIR [--stop]`.
pub fn savepoint(c: &Client, id: &str, dir: &Path, stop: bool) -> Result<()> {
    let dir = std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?.display().to_string();
    let bar = progress(None, &format!("savepoint of job {id}"));
    let done: Result<SavepointDone> = c.post(&format!("/jobs/{id}/savepoints"), &SavepointSpec { dir, stop }, &format!("no savepoint of job {id}"));
    bar.finish_and_clear();
    let done = done?;
    if !c.json(&done)? {
        println!("savepoint of job {id} (checkpoint {}) in {}{}", done.checkpoint, done.dir, if stop { "; job stopped" } else { "" });
    }
    Ok(())
}

/// `weir logs JOB`: the job's events.
pub fn logs(c: &Client, id: &str) -> Result<()> {
    let events: EventList = c.get(&format!("/jobs/{id}/logs"), &format!("no logs of job {id}"))?;
    if !c.json(&events)? {
        for e in &events.events {
            println!("{} {:<5} {}", e.time, e.level, e.message);
        }
    }
    Ok(())
}
