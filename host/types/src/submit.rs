//! What a client submits: a job's spec, the immutable `spec` of its Job resource
//! (seed 002). The JobManager keeps it with the job (and persists it); the REST API
//! takes it as the body of `POST /api/v1/jobs` and shows it in every Job document,
//! so its JSON shape is the API's (camelCase, unknown fields refused).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A job as submitted: the spec of its Job resource, immutable once created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitSpec {
    /// SHA-256 (hex) of an uploaded job component (world `job-component`); or use
    /// `manifest`.
    #[serde(default)]
    pub artifact: Option<String>,
    /// A job manifest (TOML text) naming one component per operator; or use `artifact`.
    #[serde(default)]
    pub manifest: Option<String>,
    /// With `manifest`: the uploaded artifact id of each component it names, by the
    /// name it uses (e.g. `"parse.wasm": "<sha256>"`).
    #[serde(default)]
    pub components: BTreeMap<String, String>,
    /// Default parallelism of the job's operators.
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Arguments for the job's `plan` and its operators' `open`.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Binds file sources that leave their path to the submitter (a TaskManager path).
    #[serde(default)]
    pub input: Option<String>,
    /// Binds file sinks: a directory on the TaskManagers, one part file per subtask.
    #[serde(default)]
    pub output: Option<String>,
    /// Checkpoint every this many milliseconds (needs the JobManager's checkpoint dir).
    #[serde(default)]
    pub checkpoint_interval_ms: Option<u64>,
    /// `none`, `fixed-delay:N:MS`, `exponential:MS:MS` or `failure-rate:N:MS:MS`;
    /// default: fixed delay with checkpoints, none without.
    #[serde(default)]
    pub restart_strategy: Option<String>,
    /// A savepoint directory (absolute) to start from, at any parallelism.
    #[serde(default)]
    pub from_savepoint: Option<String>,
    /// Start from a savepoint that holds state of operators the job does not have,
    /// dropping that state (Flink's `--allowNonRestoredState`); without it such a
    /// savepoint is refused, since it is most likely another job's.
    #[serde(default)]
    pub allow_non_restored_state: bool,
    /// Start from a retained checkpoint of another, ended job (`JOB`: its newest
    /// completed one, or `JOB/ID`), restored like a savepoint: the job is named, not
    /// a path, so a tenant names only its own jobs. Not with `fromSavepoint`.
    #[serde(default)]
    pub from_checkpoint_of: Option<String>,
}

fn one() -> u32 {
    1
}
