//! The JobManager's answers as the REST API's documents (`weir-documents`). Here and
//! not there, so clients of the documents need not build the JobManager; functions,
//! not `From` impls, since both sides are other crates' types.

use std::time::{Duration, SystemTime};

use weir_documents::{
    Artifact, Checkpoint, Cluster, EdgeDoc, Event, Failure, Job, JobCounts, JobMetadata, JobStatusDoc, Metrics, PartitionLagDoc, SideOutputDoc,
    Started, SubtaskDoc, TaskManager, TaskManagerList, TransitionDoc, VertexMetrics, time,
};
use weir_jobmanager::SubtaskMetrics;
use weir_jobmanager::model::{ArtifactInfo, CheckpointRecord, ClusterOverview, JobEvent, JobInfo, JobMetrics};
use weir_types::ids::JobId;
use weir_types::plan::Partitioning;

fn ms_time(ms: u64) -> String {
    time(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

/// A job as its Job resource.
pub fn job(j: JobInfo) -> Job {
    let r = &j.resource;
    let started = r.started_ms.map(|at| Started {
        job_id: j.id.clone(),
        transition_time: ms_time(at),
        last_update_time: ms_time(r.updated_ms),
        observed_job_restarts: r.observed_restarts,
        observed_job_status: r.observed_status.name().to_string(),
    });
    let failure = r.failure.as_ref().map(|m| Failure { reason: "JobFailed".into(), message: m.clone() });
    Job {
        kind: "Job".into(),
        metadata: JobMetadata { id: j.id.clone(), name: j.name.clone(), created_at: time(j.created), deployment: j.deployment },
        spec: j.spec,
        status: JobStatusDoc {
            state: r.state.name().to_string(),
            started,
            failure,
            transitions: r.transitions.iter().map(|t| TransitionDoc { state: t.state.name().to_string(), time: ms_time(t.at_ms) }).collect(),
            last_checkpoint: j.report.last_checkpoint,
            duration_ms: j.report.elapsed.as_millis() as u64,
            waiting: j.report.waiting.clone(),
        },
    }
}

/// An uploaded artifact.
pub fn artifact(a: ArtifactInfo) -> Artifact {
    Artifact { id: a.id, size: a.size, uploaded_at: time(a.uploaded) }
}

/// One checkpoint of a job's log.
pub fn checkpoint(c: CheckpointRecord) -> Checkpoint {
    Checkpoint {
        id: c.id,
        status: c.status.name().to_string(),
        triggered_at: time(c.triggered),
        duration_ms: c.duration_ms,
        size_bytes: c.size_bytes,
        failure: c.failure,
    }
}

/// One event of a job's log.
pub fn event(e: JobEvent) -> Event {
    Event { time: time(e.at), level: e.level.name().to_string(), message: e.message }
}

/// The side outputs of `subtasks` (of one vertex), summed per operator and output in
/// the order they are declared.
fn side_outputs<'a>(subtasks: impl IntoIterator<Item = &'a SubtaskMetrics>) -> Vec<SideOutputDoc> {
    let mut out: Vec<SideOutputDoc> = Vec::new();
    for c in subtasks.into_iter().flat_map(|s| &s.side_outputs) {
        match out.iter_mut().find(|d| d.operator == c.operator && d.name == c.output) {
            Some(d) => {
                d.records += c.records;
                d.dropped += c.dropped;
            }
            None => out.push(SideOutputDoc { operator: c.operator.clone(), name: c.output.clone(), records: c.records, dropped: c.dropped }),
        }
    }
    out
}

/// The metrics document of job `id`: per vertex, its subtasks' sums (the most
/// backpressured subtask's ratio, the lowest watermark), and the graph's edges.
pub fn metrics(id: &JobId, m: JobMetrics) -> Metrics {
    let subtask = |s: &SubtaskMetrics| SubtaskDoc {
        subtask: s.subtask,
        taskmanager: m.taskmanagers.get(s.taskmanager as usize).cloned().unwrap_or_else(|| "-".into()),
        records_in: s.records_in,
        records_in_by_input: s.records_in_by_input.clone(),
        records_out: s.records_out,
        backpressure: s.backpressure,
        watermark: s.watermark,
        side_outputs: side_outputs(std::slice::from_ref(s)),
        fuel: s.fuel,
        throttled_seconds: s.throttled_ns as f64 / 1e9,
        source_lag: s.source_lag.iter().map(|l| PartitionLagDoc { topic: l.topic.clone(), partition: l.partition, records: l.records }).collect(),
        status: s.status.name().to_string(),
        end_of_input: s.end_of_input,
    };
    let vertices: Vec<VertexMetrics> = m
        .graph
        .vertices
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mine: Vec<&SubtaskMetrics> = m.subtasks.iter().filter(|s| s.vertex as usize == i).collect();
            let failed = m.fuel_failed_attempts.get(i).copied().unwrap_or(0);
            VertexMetrics {
                id: i as u32,
                name: v.name.clone(),
                parallelism: v.parallelism,
                records_in: mine.iter().map(|s| s.records_in).sum(),
                records_in_by_input: by_input(&mine),
                records_out: mine.iter().map(|s| s.records_out).sum(),
                records_in_per_second: mine.iter().map(|s| s.records_in_per_second).sum(),
                records_out_per_second: mine.iter().map(|s| s.records_out_per_second).sum(),
                backpressure: mine.iter().map(|s| s.backpressure).fold(0.0, f64::max),
                // Flink's low watermark: none until every subtask has one.
                watermark: mine.iter().map(|s| s.watermark).min().flatten(),
                side_outputs: side_outputs(mine.iter().copied()),
                fuel: mine.iter().map(|s| s.fuel).sum::<u64>() + failed,
                fuel_failed_attempts: failed,
                source_lag: mine.iter().any(|s| !s.source_lag.is_empty()).then(|| mine.iter().flat_map(|s| &s.source_lag).map(|l| l.records).sum()),
                subtasks: mine.into_iter().map(subtask).collect(),
            }
        })
        .collect();
    let edges = m
        .graph
        .vertices
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            let graph = &m.graph;
            v.outputs.iter().map(move |&(t, p, _)| {
                let target = graph.vertices.get(t).map_or(&[][..], |v| &v.inputs[..]);
                let two_inputs = target.iter().any(|&(_, _, input)| input == 1);
                let input = target.iter().find(|&&(s, _, _)| s == i).map(|&(_, _, input)| input).filter(|_| two_inputs);
                EdgeDoc { source: i as u32, target: t as u32, partitioning: partitioning_name(p).into(), input }
            })
        })
        .collect();
    let fuel = vertices.iter().map(|v| v.fuel).sum();
    let fuel_failed_attempts = vertices.iter().map(|v| v.fuel_failed_attempts).sum();
    Metrics { job_id: id.clone(), status: m.status.name().to_string(), fuel, fuel_failed_attempts, vertices, edges }
}

/// Records in per input of a connect, summed over its subtasks (empty for others).
fn by_input(subtasks: &[&SubtaskMetrics]) -> Vec<u64> {
    let mut sums: Vec<u64> = Vec::new();
    for s in subtasks {
        if sums.len() < s.records_in_by_input.len() {
            sums.resize(s.records_in_by_input.len(), 0);
        }
        for (sum, n) in sums.iter_mut().zip(&s.records_in_by_input) {
            *sum += n;
        }
    }
    sums
}

fn partitioning_name(p: Partitioning) -> &'static str {
    match p {
        Partitioning::Forward => "FORWARD",
        Partitioning::KeyBy => "KEY_BY",
        Partitioning::Rebalance => "REBALANCE",
        Partitioning::Broadcast => "BROADCAST",
    }
}

/// The cluster document: alive TaskManagers, slots, and jobs counted by state.
pub fn cluster(o: &ClusterOverview) -> Cluster {
    let mut jobs = JobCounts::default();
    for (state, n) in &o.jobs_by_state {
        match *state {
            "STARTING" | "STARTED" => jobs.running += n,
            "FINISHED" => jobs.finished += n,
            "FAILED" => jobs.failed += n,
            _ => jobs.terminated += n,
        }
    }
    Cluster {
        version: env!("CARGO_PKG_VERSION").into(),
        taskmanagers: o.taskmanagers.iter().filter(|t| t.alive).count() as u32,
        slots_total: o.slots_total,
        slots_free: o.slots_free,
        jobs,
    }
}

/// Every TaskManager the registry knows, lost ones included.
pub fn taskmanagers(o: &ClusterOverview) -> TaskManagerList {
    let taskmanagers = o
        .taskmanagers
        .iter()
        .map(|t| TaskManager {
            id: t.id,
            name: t.name.clone(),
            addr: t.addr.clone(),
            data_addr: t.data_addr.clone(),
            slots: t.slots,
            used_slots: t.used_slots,
            alive: t.alive,
            last_heartbeat_ms: t.last_heartbeat_ms,
        })
        .collect();
    TaskManagerList { taskmanagers }
}

#[cfg(test)]
mod tests {
    use weir_control::protocol::TaskManagerInfo;
    use weir_types::ids::TaskManagerId;

    use super::*;

    /// The API served the registry's `TaskManagerInfo` as is before the documents had
    /// their own TaskManager: the JSON must not change.
    #[test]
    fn a_taskmanager_document_is_the_json_of_the_registry_entry() -> serde_json::Result<()> {
        let info = TaskManagerInfo {
            id: TaskManagerId::new(7),
            name: "taskmanager-1".into(),
            addr: "10.0.0.1:4000".into(),
            data_addr: "10.0.0.1:4001".into(),
            slots: 4,
            used_slots: 2,
            alive: false,
            last_heartbeat_ms: 1234,
        };
        let overview = ClusterOverview {
            taskmanagers: vec![info.clone()],
            slots_total: 4,
            slots_free: 2,
            jobs_by_state: vec![],
            checkpoints_completed: 0,
            checkpoints_failed: 0,
            checkpoints_skipped: 0,
            restarts: 0,
        };
        let served = serde_json::to_value(taskmanagers(&overview))?;
        assert_eq!(served, serde_json::json!({ "taskmanagers": [serde_json::to_value(&info)?] }));
        Ok(())
    }
}
