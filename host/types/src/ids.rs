//! Typed ids: a job, one attempt (run) of it, a component, a TaskManager. Each wraps
//! what was a bare string or number, so a run id cannot be passed where a job id is
//! expected, nor a TaskManager id where a checkpoint id is.
//!
//! Serde is transparent: JSON documents, the postcard wire format and persisted records
//! are byte for byte what the bare string or number gave. Ids are validated where they
//! come from outside ([`FromStr`] / [`TryFrom`]: REST paths, command-line arguments,
//! directory names); a deserialized id is taken as it comes (a peer's or a record's),
//! as it was before, and simply matches nothing if it is malformed.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest job id accepted from outside.
const MAX_JOB_ID: usize = 64;

/// A string that is not an id of the kind wanted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct InvalidId {
    /// What was wanted: "job id", "run id", "component hash".
    pub kind: &'static str,
    /// What was given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A job's id, unique in the cluster: 1 to 64 ASCII letters, digits, `-` or `_`. No
/// dot (a run id appends `.<attempt>`) and no `/`, so it is one path component (its
/// checkpoint directory, its record under `_jobs/`) and one URL segment.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// `n` as 16 lower-case hex digits: how the JobManager names jobs.
    pub fn from_u64(n: u64) -> Self {
        Self(format!("{n:016x}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Attempt `attempt` of this job.
    pub fn run(&self, attempt: u32) -> RunId {
        RunId::new(self, attempt)
    }

    fn check(s: &str) -> Result<(), &'static str> {
        if s.is_empty() {
            return Err("it is empty");
        }
        if s.len() > MAX_JOB_ID {
            return Err("it is longer than 64 characters");
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err("only ASCII letters, digits, '-' and '_' may appear");
        }
        Ok(())
    }
}

/// One attempt of a job, `<job>.<attempt>`: attempt 0, then one more per restart, never
/// reused. Channels, keyspaces, sink directories and every report from a TaskManager
/// are named by run, which is what fences a superseded attempt off from its successor.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// Attempt `attempt` of `job`.
    pub fn new(job: &JobId, attempt: u32) -> Self {
        Self(format!("{job}.{attempt}"))
    }

    /// The job this is a run of: the text before the last dot (job ids have none; a
    /// malformed run id from a peer, without a dot, is all job).
    pub fn job(&self) -> JobId {
        JobId(self.0.rsplit_once('.').map_or(self.0.as_str(), |(job, _)| job).to_string())
    }

    /// Which attempt of its job this is; `None` only for a malformed id from a peer.
    pub fn attempt(&self) -> Option<u32> {
        self.0.rsplit_once('.').and_then(|(_, attempt)| attempt.parse().ok())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A component's hash: the hex SHA-256 of its bytes (64 lower-case hex digits), as
/// `weir-wasm` computes it. Deployments name components by it, TaskManagers cache them
/// by it, and it is an uploaded artifact's id.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ComponentHash(String);

impl ComponentHash {
    /// The hash as hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(s: &str) -> Result<(), &'static str> {
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("a component hash is 64 lower-case hex digits (SHA-256)");
        }
        Ok(())
    }
}

/// A TaskManager's id in its JobManager's registry: given at registration, never
/// reused by that JobManager (a TaskManager registering again gets a new one).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskManagerId(u64);

impl TaskManagerId {
    /// The id numbered `n`.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// Its number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskManagerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// As the number: messages and logs read as they did with a bare `u64`.
impl fmt::Debug for TaskManagerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RunId {
    type Err = InvalidId;

    /// `<job>.<attempt>`: a valid job id, a dot, an attempt number.
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let invalid = |reason| InvalidId { kind: "run id", value: s.to_string(), reason };
        let (job, attempt) = s.rsplit_once('.').ok_or_else(|| invalid("a run id is <job>.<attempt>"))?;
        JobId::check(job).map_err(|_| invalid("its job part is not a job id"))?;
        attempt.parse::<u32>().map_err(|_| invalid("its attempt is not a number"))?;
        Ok(Self(s.to_string()))
    }
}

/// Display, FromStr and TryFrom through a `check`, and comparisons and borrowing as
/// text, for the string ids.
macro_rules! string_id {
    ($id:ident, $kind:literal) => {
        impl FromStr for $id {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::check(s).map_err(|reason| InvalidId { kind: $kind, value: s.to_string(), reason })?;
                Ok(Self(s.to_string()))
            }
        }

        impl TryFrom<String> for $id {
            type Error = InvalidId;

            fn try_from(s: String) -> Result<Self, InvalidId> {
                match Self::check(&s) {
                    Ok(()) => Ok(Self(s)),
                    Err(reason) => Err(InvalidId { kind: $kind, value: s, reason }),
                }
            }
        }
    };
}

string_id!(JobId, "job id");
string_id!(ComponentHash, "component hash");

impl TryFrom<String> for RunId {
    type Error = InvalidId;

    fn try_from(s: String) -> Result<Self, InvalidId> {
        s.parse()
    }
}

/// Text views of the string ids.
macro_rules! as_text {
    ($($id:ident),*) => {$(
        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// As the quoted string: messages that quote an id (`no job "x"`) and logs
        /// read as they did with a bare `String`.
        impl fmt::Debug for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $id {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Maps keyed by the id are looked up with text (a REST path, a message).
        impl Borrow<str> for $id {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $id {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $id {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl From<$id> for String {
            fn from(id: $id) -> String {
                id.0
            }
        }
    )*};
}

as_text!(JobId, RunId, ComponentHash);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_one_path_component_without_dots() {
        for good in ["0123456789abcdef", "j", "job_1-a", &"x".repeat(64)] {
            assert_eq!(good.parse::<JobId>().map(String::from).as_deref(), Ok(good));
        }
        for bad in ["", "a.b", "a/b", "..", "a b", "a\nb", "é", &"x".repeat(65)] {
            let e = bad.parse::<JobId>().expect_err(bad);
            assert!(e.to_string().starts_with(&format!("invalid job id {bad:?}: ")), "{e}");
        }
        assert_eq!(JobId::from_u64(0xab).as_str(), "00000000000000ab");
        assert_eq!(JobId::try_from("a.b".to_string()).map_err(|e| e.reason), Err("only ASCII letters, digits, '-' and '_' may appear"));
    }

    #[test]
    fn a_run_knows_its_job_and_attempt() -> Result<(), Box<dyn std::error::Error>> {
        let job: JobId = "00000000000000ab".parse()?;
        let run = job.run(7);
        assert_eq!((run.as_str(), run.job(), run.attempt()), ("00000000000000ab.7", job.clone(), Some(7)));
        assert_eq!("00000000000000ab.7".parse::<RunId>()?, run);
        for bad in ["j", "j.", "j.x", ".3", "a/b.3", "j.-1"] {
            assert!(bad.parse::<RunId>().is_err(), "{bad}");
        }
        // What a peer sends is not validated (serde is transparent): a run without a
        // dot is all job, as `job_of_run` had it, and has no attempt.
        let odd: RunId = serde_json::from_str("\"odd\"")?;
        assert_eq!((odd.job().as_str(), odd.attempt()), ("odd", None));
        Ok(())
    }

    #[test]
    fn component_hashes_are_sha256_hex() {
        let h = "ab".repeat(32);
        assert_eq!(h.parse::<ComponentHash>().map(String::from), Ok(h.clone()));
        for bad in ["ab12", &"AB".repeat(32), &"ab".repeat(33), &"zz".repeat(32)] {
            assert!(bad.parse::<ComponentHash>().is_err(), "{bad}");
        }
    }

    /// Serde is transparent: the bytes on the wire, in records and in JSON are the bare
    /// string's or number's.
    #[test]
    fn ids_serialize_as_the_bare_values() -> Result<(), Box<dyn std::error::Error>> {
        let job: JobId = "0123456789abcdef".parse()?;
        let run = job.run(3);
        let hash: ComponentHash = "0f".repeat(32).parse()?;
        let tm = TaskManagerId::new(300);
        assert_eq!(postcard::to_stdvec(&job)?, postcard::to_stdvec("0123456789abcdef")?);
        assert_eq!(postcard::to_stdvec(&run)?, postcard::to_stdvec("0123456789abcdef.3")?);
        assert_eq!(postcard::to_stdvec(&hash)?, postcard::to_stdvec(&"0f".repeat(32))?);
        assert_eq!(postcard::to_stdvec(&tm)?, postcard::to_stdvec(&300u64)?);
        assert_eq!(postcard::from_bytes::<RunId>(&postcard::to_stdvec("0123456789abcdef.3")?)?, run);
        assert_eq!(serde_json::to_string(&(&job, &run, &tm))?, r#"["0123456789abcdef","0123456789abcdef.3",300]"#);
        assert_eq!(serde_json::from_str::<TaskManagerId>("300")?, tm);
        Ok(())
    }

    #[test]
    fn ids_print_as_the_bare_values() -> Result<(), InvalidId> {
        let job: JobId = "a-b".parse()?;
        assert_eq!(format!("{job} {job:?} {:?} {}", job.run(1), TaskManagerId::new(4)), r#"a-b "a-b" "a-b.1" 4"#);
        assert_eq!(format!("{:?}", Some(TaskManagerId::new(4))), "Some(4)");
        Ok(())
    }

    #[test]
    fn maps_keyed_by_ids_are_looked_up_with_text() -> Result<(), InvalidId> {
        let mut jobs = std::collections::HashMap::new();
        let job: JobId = "abc".parse()?;
        jobs.insert(job.clone(), 1);
        assert_eq!(jobs.get("abc"), Some(&1));
        assert_eq!(jobs.get(job.run(2).job().as_str()), Some(&1));
        Ok(())
    }
}
