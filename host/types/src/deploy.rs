//! The Deployment resource (issue 17): a job's desired state that outlives its Jobs.
//! Users write a [`DeploymentSpec`] (the Job template, the state wanted, how to
//! upgrade and how to restore); the JobManager's controller creates Jobs from it and
//! reports where it stands in a [`Deployment`] document. Its JSON shape is the REST
//! API's (camelCase, unknown fields refused), and `weir deploy apply -f` reads the same
//! shape from TOML.

use serde::{Deserialize, Serialize};

use crate::submit::SubmitSpec;

/// What the Deployment should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredState {
    /// A Job runs the spec.
    #[default]
    Running,
    /// No Job runs; the last one stopped with a savepoint that RUNNING resumes from.
    Suspended,
    /// No Job runs; the last one was cancelled (no savepoint).
    Cancelled,
}

/// How a running Deployment takes a changed spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpgradeStrategy {
    /// Stop the Job with a savepoint, start the new spec from it.
    #[default]
    Stateful,
    /// Cancel the Job, start the new spec without state.
    Stateless,
    /// Record the spec only; the next start uses it.
    None,
    /// A new component alone (`template.artifact`, the same job graph) is swapped into
    /// the running Job live, at its next checkpoint, without a restart; any other
    /// change is taken as STATEFUL.
    Live,
}

/// What a Job started after a suspend (or JobManager restart with no Job) restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RestoreStrategy {
    /// The newest state the Deployment knows of: its latest savepoint, or the retained
    /// checkpoint of a Job that ended later without one (failed, or cancelled outside
    /// the Deployment).
    #[default]
    LatestState,
    /// The Deployment's latest savepoint.
    LatestSavepoint,
    /// No state.
    None,
}

/// A Deployment as users write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    /// The Deployment's name: its key (letters, digits, `-`, `_`; 1 to 63).
    pub name: String,
    /// Desired state; default RUNNING.
    #[serde(default)]
    pub state: DesiredState,
    /// Default STATEFUL.
    #[serde(default)]
    pub upgrade_strategy: UpgradeStrategy,
    /// Default LATEST_STATE.
    #[serde(default)]
    pub restore_strategy: RestoreStrategy,
    /// Directory (absolute, under a data root) the Deployment's savepoints go into, one
    /// `sp-<n>` each; needed by STATEFUL upgrades and SUSPENDED.
    #[serde(default)]
    pub savepoint_dir: Option<String>,
    /// The Job each spec version runs (`fromSavepoint` and `fromCheckpointOf` are the
    /// controller's to set).
    pub template: SubmitSpec,
}

/// Where a Deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentState {
    /// A Job of the current spec runs (and has completed a checkpoint if it takes any).
    Running,
    /// Between states: a Job starting, stopping or being replaced.
    Transitioning,
    /// No Job: suspended with a savepoint.
    Suspended,
    /// No Job: cancelled.
    Cancelled,
    /// No Job: the last one failed and nothing could replace it (`message` says why).
    Failed,
    /// No Job: the last one finished its input.
    Finished,
}

impl DeploymentState {
    /// Upper-case name.
    pub fn name(self) -> &'static str {
        match self {
            DeploymentState::Running => "RUNNING",
            DeploymentState::Transitioning => "TRANSITIONING",
            DeploymentState::Suspended => "SUSPENDED",
            DeploymentState::Cancelled => "CANCELLED",
            DeploymentState::Failed => "FAILED",
            DeploymentState::Finished => "FINISHED",
        }
    }
}

/// One Job a Deployment created, with the spec version it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentJob {
    /// The Job's id.
    pub job_id: String,
    /// The Deployment spec version it ran.
    pub spec_version: u64,
    /// The savepoint it started from, if any.
    pub from_savepoint: Option<String>,
    /// The ended Job whose retained checkpoint it started from, if any.
    #[serde(default)]
    pub from_checkpoint_of: Option<String>,
}

/// The Deployment a Job was created by, and the spec version it ran: the link from a
/// Job back to the history seed 002 keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDeployment {
    /// The Deployment's name.
    pub name: String,
    /// The Deployment's id.
    pub id: String,
    /// The spec version the Job ran.
    pub spec_version: u64,
}

/// A Deployment's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentMetadata {
    /// Its name (the key).
    pub name: String,
    /// A unique id, fixed at creation.
    pub id: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Grows with every change of the Deployment (spec or status).
    pub resource_version: u64,
}

/// What the controller reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// Where it stands.
    pub state: DeploymentState,
    /// The version of `spec` (grows with every change of the template or strategies).
    pub spec_version: u64,
    /// The Job that runs now (or is starting or stopping), if any.
    pub running: Option<DeploymentJob>,
    /// The newest spec version whose Job ran (completed a checkpoint); a failed
    /// upgrade rolls back to it.
    pub last_good_spec_version: Option<u64>,
    /// The newest savepoint the Deployment took.
    pub latest_savepoint: Option<String>,
    /// The ended Job whose retained checkpoint is newer than `latestSavepoint` (it
    /// failed or was cancelled outside the Deployment): LATEST_STATE restores it.
    #[serde(default)]
    pub latest_checkpoint_of: Option<String>,
    /// Why it is where it is (a rollback, a failure), if anything needs saying.
    pub message: Option<String>,
    /// Its Jobs, newest first.
    pub jobs: Vec<DeploymentJob>,
}

/// A Deployment resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Always `Deployment`.
    pub kind: String,
    /// Identity.
    pub metadata: DeploymentMetadata,
    /// As last applied (or rolled back to).
    pub spec: DeploymentSpec,
    /// Where it stands.
    pub status: DeploymentStatus,
}

/// Every Deployment, by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentList {
    /// Sorted by name.
    pub deployments: Vec<Deployment>,
}

/// Checks a Deployment's name: it appears in paths and URLs.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(format!("a deployment name is 1 to 63 letters, digits, '-' or '_', got {name:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_reads_from_json_with_defaults() {
        let s: DeploymentSpec = serde_json::from_str(r#"{"name":"a","template":{"artifact":"x"}}"#).expect("spec");
        assert_eq!(
            (s.state, s.upgrade_strategy, s.restore_strategy),
            (DesiredState::Running, UpgradeStrategy::Stateful, RestoreStrategy::LatestState)
        );
        let s: DeploymentSpec =
            serde_json::from_str(r#"{"name":"a","state":"SUSPENDED","upgradeStrategy":"STATELESS","template":{"artifact":"x"}}"#).expect("spec");
        assert_eq!((s.state, s.upgrade_strategy), (DesiredState::Suspended, UpgradeStrategy::Stateless));
        assert!(serde_json::from_str::<DeploymentSpec>(r#"{"name":"a","template":{},"x":1}"#).is_err());
    }

    #[test]
    fn names_are_path_safe() {
        assert!(check_name("sums-v2_a").is_ok());
        for bad in ["", "a/b", "..", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
