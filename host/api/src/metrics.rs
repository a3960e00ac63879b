//! Prometheus text exposition (format 0.0.4) of the JobManager's and a TaskManager's
//! metrics. Counters end in `_total`; labels name jobs, vertices and subtasks.

use std::fmt::Write;

use weir_jobmanager::JobManager;

/// Writes one metric family: its help and type lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    Family::new(out, name, "gauge", help).sample(name, &[], value);
}

fn counter(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    Family::new(out, name, "counter", help).sample(name, &[], value);
}

/// The JobManager's metrics: TaskManagers, slots, jobs by state, checkpoints,
/// restarts, and per-vertex records, rates, backpressure and fuel of unfinished jobs;
/// only of the jobs whose owner (`None`: the admin) `shown` accepts.
pub fn jobmanager(jm: &JobManager, shown: &dyn Fn(Option<&str>) -> bool) -> String {
    let o = jm.overview_where(shown);
    let mut out = String::new();
    let alive = o.taskmanagers.iter().filter(|t| t.alive).count();
    let mut f = Family::new(&mut out, "weir_jobmanager_taskmanagers", "gauge", "Registered TaskManagers by liveness.");
    f.sample("weir_jobmanager_taskmanagers", &[("state", "alive")], alive);
    f.sample("weir_jobmanager_taskmanagers", &[("state", "lost")], o.taskmanagers.len() - alive);
    gauge(&mut out, "weir_jobmanager_slots_total", "Slots offered by alive TaskManagers.", o.slots_total);
    gauge(&mut out, "weir_jobmanager_slots_free", "Free slots of alive TaskManagers.", o.slots_free);
    let mut f = Family::new(&mut out, "weir_jobmanager_jobs", "gauge", "Jobs by Job resource state.");
    for state in ["STARTING", "STARTED", "TERMINATING", "TERMINATED", "FAILED", "FINISHED"] {
        let n = o.jobs_by_state.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
        f.sample("weir_jobmanager_jobs", &[("state", state)], n);
    }
    counter(&mut out, "weir_jobmanager_checkpoints_completed_total", "Checkpoints completed.", o.checkpoints_completed);
    counter(&mut out, "weir_jobmanager_checkpoints_failed_total", "Checkpoints failed or abandoned.", o.checkpoints_failed);
    counter(
        &mut out,
        "weir_jobmanager_checkpoints_skipped_total",
        "Completed checkpoints a restart could not restore and passed over (their output stays: at-least-once since the one restored).",
        o.checkpoints_skipped,
    );
    counter(&mut out, "weir_jobmanager_job_restarts_total", "Job restarts after failures.", o.restarts);

    let running: Vec<_> = jm.jobs().into_iter().filter(|j| !j.resource.state.is_terminal() && shown(jm.job_owner(&j.id).as_deref())).collect();
    let mut vertices = Vec::new();
    let mut jobs = Vec::new();
    for j in &running {
        if let Ok(m) = jm.metrics(&j.id) {
            let doc = crate::convert::metrics(&j.id, m);
            jobs.push((j.id.clone(), j.name.clone(), doc.fuel, doc.fuel_failed_attempts));
            vertices.extend(doc.vertices.into_iter().map(|v| (j.id.clone(), j.name.clone(), v)));
        }
    }
    type Field = fn(&weir_documents::VertexMetrics) -> Option<f64>;
    type JobField = fn(&(weir_types::ids::JobId, String, u64, u64)) -> u64;
    let job_families: [(&str, &str, JobField); 2] = [
        ("weir_job_fuel_total", "Wasm fuel the job burned, all attempts (running subtasks as of their last heartbeat).", |j| j.2),
        ("weir_job_fuel_failed_attempts_total", "Of weir_job_fuel_total, what attempts that failed burned (a lower bound).", |j| j.3),
    ];
    for (name, help, value) in job_families {
        let mut f = Family::new(&mut out, name, "counter", help);
        for j in &jobs {
            f.sample(name, &[("job", j.0.as_str()), ("job_name", &j.1)], value(j));
        }
    }
    let families: [(&str, &str, &str, Field); 8] = [
        ("weir_vertex_records_in_total", "counter", "Records into a vertex's subtasks.", |v| Some(v.records_in as f64)),
        ("weir_vertex_records_out_total", "counter", "Records out of a vertex's subtasks.", |v| Some(v.records_out as f64)),
        ("weir_vertex_records_in_per_second", "gauge", "Records in per second over the last heartbeat interval.", |v| Some(v.records_in_per_second)),
        ("weir_vertex_records_out_per_second", "gauge", "Records out per second over the last heartbeat interval.", |v| {
            Some(v.records_out_per_second)
        }),
        ("weir_vertex_backpressure_ratio", "gauge", "Share of time the most blocked subtask waited on full outputs.", |v| Some(v.backpressure)),
        ("weir_vertex_fuel_consumed_total", "counter", "Wasm fuel the vertex's operators burned, all attempts.", |v| Some(v.fuel as f64)),
        ("weir_vertex_fuel_failed_attempts_total", "counter", "Of that, what attempts that failed burned.", |v| Some(v.fuel_failed_attempts as f64)),
        // Absent until every subtask of the vertex passed a watermark.
        ("weir_vertex_watermark_milliseconds", "gauge", "The lowest event time (watermark, ms) the vertex's subtasks reached.", |v| {
            v.watermark.map(|w| w as f64)
        }),
    ];
    for (name, kind, help, value) in families {
        let mut f = Family::new(&mut out, name, kind, help);
        for (job, job_name, v) in &vertices {
            let index = v.id.to_string();
            if let Some(x) = value(v) {
                f.sample(name, &[("job", job.as_str()), ("job_name", job_name), ("vertex", &index), ("vertex_name", &v.name)], x);
            }
        }
    }
    let name = "weir_vertex_input_records_in_total";
    let mut f = Family::new(&mut out, name, "counter", "Records into a connect's vertex through each of its inputs (1, 2).");
    for (job, job_name, v) in &vertices {
        let index = v.id.to_string();
        for (i, n) in v.records_in_by_input.iter().enumerate() {
            let input = (i + 1).to_string();
            f.sample(name, &[("job", job.as_str()), ("job_name", job_name), ("vertex", &index), ("vertex_name", &v.name), ("input", &input)], *n);
        }
    }
    let name = "weir_job_kafka_lag_records";
    let mut f = Family::new(&mut out, name, "gauge", "Records of a Kafka partition past what the job's source subtask read (consumer lag).");
    for (job, job_name, v) in &vertices {
        let index = v.id.to_string();
        for s in &v.subtasks {
            let subtask = s.subtask.to_string();
            for l in &s.source_lag {
                let partition = l.partition.to_string();
                let labels = [
                    ("job", job.as_str()),
                    ("job_name", job_name),
                    ("vertex", &index),
                    ("vertex_name", &v.name),
                    ("subtask", &subtask),
                    ("topic", &l.topic),
                    ("partition", &partition),
                ];
                f.sample(name, &labels, l.records);
            }
        }
    }
    type SideField = fn(&weir_documents::SideOutputDoc) -> u64;
    let side: [(&str, &str, SideField); 2] = [
        ("weir_vertex_side_output_records_total", "Records operators emitted to a side output (late data, for one).", |s| s.records),
        ("weir_vertex_side_output_dropped_total", "Side-output records no edge reads, dropped (late data: Flink's numLateRecordsDropped).", |s| {
            s.dropped
        }),
    ];
    for (name, help, value) in side {
        let mut f = Family::new(&mut out, name, "counter", help);
        for (job, job_name, v) in &vertices {
            let index = v.id.to_string();
            for s in &v.side_outputs {
                let labels = [
                    ("job", job.as_str()),
                    ("job_name", job_name),
                    ("vertex", &index),
                    ("vertex_name", &v.name),
                    ("operator", &s.operator),
                    ("output", &s.name),
                ];
                f.sample(name, &labels, value(s));
            }
        }
    }
    out
}

/// A TaskManager's metrics: slots, running subtasks, per-subtask records, fuel,
/// time blocked by backpressure and watermark, and per tenant with a fuel rate its
/// share here and the time its subtasks were throttled.
pub fn taskmanager(tm: &weir_taskmanager::TaskManager, slots: u32) -> String {
    let progress = tm.progress();
    let mut out = String::new();
    gauge(&mut out, "weir_taskmanager_slots", "Slots this TaskManager offers.", slots);
    gauge(&mut out, "weir_taskmanager_subtasks_running", "Subtasks running here.", progress.len());
    type Field = fn(&weir_types::deployment::TaskProgress) -> Option<f64>;
    let families: [(&str, &str, &str, Field); 6] = [
        ("weir_subtask_records_in_total", "counter", "Records into the subtask.", |p| Some(p.records_in as f64)),
        ("weir_subtask_records_out_total", "counter", "Records out of the subtask.", |p| Some(p.records_out as f64)),
        ("weir_subtask_fuel_consumed_total", "counter", "Wasm fuel the subtask's operators burned.", |p| Some(p.fuel as f64)),
        ("weir_subtask_backpressured_seconds_total", "counter", "Time the subtask waited on full outputs.", |p| {
            Some(p.backpressured_ns as f64 / 1e9)
        }),
        ("weir_subtask_throttled_seconds_total", "counter", "Time the subtask waited for its tenant's fuel rate.", |p| {
            Some(p.throttled_ns as f64 / 1e9)
        }),
        ("weir_subtask_watermark_milliseconds", "gauge", "The event time (watermark, ms) that left the subtask's operators.", |p| {
            p.watermark.map(|w| w as f64)
        }),
    ];
    for (name, kind, help, value) in families {
        let mut f = Family::new(&mut out, name, kind, help);
        for p in &progress {
            let (vertex, subtask) = (p.vertex.to_string(), p.subtask.to_string());
            if let Some(x) = value(p) {
                f.sample(name, &[("job", p.run.as_str()), ("vertex", &vertex), ("subtask", &subtask)], x);
            }
        }
    }
    let name = "weir_subtask_kafka_lag_records";
    let mut f = Family::new(&mut out, name, "gauge", "Records of a Kafka partition past what its source subtask read (consumer lag).");
    for p in &progress {
        let (vertex, subtask) = (p.vertex.to_string(), p.subtask.to_string());
        for l in &p.source_lag {
            let partition = l.partition.to_string();
            let labels = [("job", p.run.as_str()), ("vertex", &vertex), ("subtask", &subtask), ("topic", &l.topic), ("partition", &partition)];
            f.sample(name, &labels, l.records);
        }
    }
    let gates = tm.throttles().gates();
    let name = "weir_tenant_fuel_rate";
    let mut f = Family::new(&mut out, name, "gauge", "A tenant's share of its fuel rate quota on this TaskManager, fuel per second (0: unlimited).");
    for (tenant, g) in &gates {
        f.sample(name, &[("tenant", tenant)], g.rate());
    }
    let name = "weir_tenant_throttled_seconds_total";
    let mut f = Family::new(&mut out, name, "counter", "Time a tenant's subtasks here waited for its fuel rate, summed over subtasks.");
    for (tenant, g) in &gates {
        f.sample(name, &[("tenant", tenant)], g.throttled_seconds());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_samples_formatted() {
        let mut out = String::new();
        let mut f = Family::new(&mut out, "m", "gauge", "help");
        f.sample("m", &[("a", "x\"y\\z\nw")], 1.5);
        f.sample("m", &[], 2);
        assert_eq!(out, "# HELP m help\n# TYPE m gauge\nm{a=\"x\\\"y\\\\z\\nw\"} 1.5\nm 2\n");
    }
}
