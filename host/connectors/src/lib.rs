//! Connectors: the external systems a source reads or a sink writes (seed 000's job
//! reads Kafka and writes PostgreSQL). A plan names one as a
//! [`weir_types::plan::Connector`], a kind and its options; this crate knows every kind,
//! checks its options when a job is submitted ([`check`]), and runs it on the
//! TaskManager.
//!
//! Secrets are never options. A connector reads them through [`Secret`] from the file
//! or environment variable an option names, on the TaskManager that runs it, so a
//! plan, a REST document or a log line can show every option as it is.

pub mod postgres;

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;
use weir_types::plan::Connector;

pub mod kafka;

/// Why a connector was refused or failed.
#[derive(Debug, Error)]
pub enum ConnectorError {
    /// No connector of this kind is built in.
    #[error("unknown connector {kind:?} (built in: {known})")]
    Unknown {
        /// The kind asked for.
        kind: String,
        /// The kinds there are.
        known: String,
    },
    /// The connector is known but this process cannot run it.
    #[error("connector {kind:?} cannot run on this TaskManager")]
    NotRunnable {
        /// The connector.
        kind: String,
    },
    /// An option is missing, unknown or malformed.
    #[error("connector {kind:?}: {problem}")]
    Option {
        /// The connector.
        kind: String,
        /// What is wrong, naming the option.
        problem: String,
    },
    /// The PostgreSQL sink failed.
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::PgError),
    /// The external system refused or could not be reached; names what and where.
    #[error("connector {kind:?}: {problem}")]
    External {
        /// The connector.
        kind: String,
        /// What went wrong, naming the server, topic or table.
        problem: String,
    },
    /// A secret could not be read; names where it was looked for, never its value.
    #[error("connector {kind:?}: cannot read the secret {what}: {why}")]
    Secret {
        /// The connector.
        kind: String,
        /// The option and the file or variable it names.
        what: String,
        /// Why.
        why: String,
    },
}

/// Which connectors a source or a sink may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads records.
    Source,
    /// Writes records.
    Sink,
}

/// How a kind's options are checked (locally), and how the system it names is reached
/// at submission.
struct Kind {
    name: &'static str,
    role: Role,
    check: fn(&Connector) -> Result<(), ConnectorError>,
    probe: fn(&Connector) -> Result<(), ConnectorError>,
}

/// The connector kinds, by role.
const KINDS: &[Kind] = &[
    Kind {
        name: "kafka",
        role: Role::Source,
        check: |c| kafka::source_options(c).map(drop),
        probe: |c| kafka::probe_source(&kafka::source_options(c)?),
    },
    Kind { name: "kafka", role: Role::Sink, check: |c| kafka::sink_options(c).map(drop), probe: |c| kafka::probe_sink(&kafka::sink_options(c)?) },
    // The password lives on the TaskManagers only: a wrong one or a missing table
    // fails the job's deployment there, naming the cause.
    Kind { name: postgres::KIND, role: Role::Sink, check: |c| postgres::PgOptions::parse(c).map(drop), probe: |_| Ok(()) },
];

fn kind(c: &Connector, role: Role) -> Result<&'static Kind, ConnectorError> {
    match KINDS.iter().find(|k| k.name == c.kind && k.role == role) {
        Some(k) => Ok(k),
        None => {
            let known: Vec<&str> = KINDS.iter().filter(|k| k.role == role).map(|k| k.name).collect();
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            Err(ConnectorError::Unknown { kind: c.kind.clone(), known })
        }
    }
}

/// Checks a connector named in a plan: its kind exists for the role, and its options
/// are known and well-formed. Cheap and local: it reaches no external system.
pub fn check(c: &Connector, role: Role) -> Result<(), ConnectorError> {
    (kind(c, role)?.check)(c)
}

/// [`check`], then reaches the external system as the connector would (the broker is
/// up, the topic exists), so a job that cannot start is refused at submission with
/// the cause. Blocks for at most a few seconds per system.
pub fn probe(c: &Connector, role: Role) -> Result<(), ConnectorError> {
    let k = kind(c, role)?;
    (k.check)(c)?;
    (k.probe)(c)
}

/// The `host:port`s a connector reaches, from its options (a PostgreSQL `host` and
/// `port`, each Kafka bootstrap server), for a tenant's allowed hosts to be checked
/// before anything is reached. Malformed options give what they can; [`check`] refuses
/// them anyway.
pub fn endpoints(c: &Connector) -> Vec<(String, Option<u16>)> {
    let opt = |name: &str| c.options.get(name).map(|v| v.trim());
    match c.kind.as_str() {
        "postgres" => vec![(opt("host").unwrap_or("localhost").to_string(), Some(opt("port").and_then(|p| p.parse().ok()).unwrap_or(5432)))],
        "kafka" => opt("bootstrap-servers")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().ok()),
                None => (s.to_string(), None),
            })
            .collect(),
        _ => vec![],
    }
}

/// Whether `allowed` (each `host` for any port, or `host:port`) lets a connector
/// reach `host` on `port`. Host names compare without case; nothing is resolved, so
/// an admin allows names and addresses as tenants will write them.
pub fn host_allowed(allowed: &[String], host: &str, port: Option<u16>) -> bool {
    allowed.iter().any(|a| match a.rsplit_once(':') {
        Some((h, p)) => h.eq_ignore_ascii_case(host) && p.parse::<u16>().ok().is_some_and(|p| Some(p) == port),
        None => a.eq_ignore_ascii_case(host),
    })
}

/// Checks what a connector needs of the job's checkpoints: a transactional Kafka sink
/// needs checkpoints, and a transaction timeout longer than the checkpoint interval
/// plus `restart` (the longest a restart may take).
pub fn check_checkpointing(
    c: &Connector,
    role: Role,
    checkpoint_interval: Option<std::time::Duration>,
    restart: std::time::Duration,
) -> Result<(), ConnectorError> {
    match (c.kind.as_str(), role) {
        ("kafka", Role::Sink) => kafka::check_transaction_timeout(&kafka::sink_options(c)?, checkpoint_interval, restart),
        _ => Ok(()),
    }
}

/// A connector's options, read one by one; [`Options::finish`] refuses any left unread,
/// so a misspelt option is an error at submission rather than a silent default.
pub struct Options<'a> {
    kind: &'a str,
    options: &'a BTreeMap<String, String>,
    read: BTreeSet<&'a str>,
}

impl<'a> Options<'a> {
    /// Starts reading `c`'s options.
    pub fn new(c: &'a Connector) -> Self {
        Options { kind: &c.kind, options: &c.options, read: BTreeSet::new() }
    }

    fn error(&self, problem: String) -> ConnectorError {
        ConnectorError::Option { kind: self.kind.to_string(), problem }
    }

    /// An option that may be absent.
    pub fn optional(&mut self, name: &'a str) -> Option<&'a str> {
        self.read.insert(name);
        self.options.get(name).map(String::as_str)
    }

    /// An option that must be set.
    pub fn required(&mut self, name: &'a str) -> Result<&'a str, ConnectorError> {
        self.optional(name).ok_or_else(|| self.error(format!("option `{name}` is required")))
    }

    /// An option parsed as `T`, or `default` when absent.
    pub fn parsed<T: std::str::FromStr>(&mut self, name: &'a str, default: T) -> Result<T, ConnectorError>
    where
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| self.error(format!("option `{name}` = {v:?}: {e}"))),
        }
    }

    /// One of `choices`, or `default` when absent.
    pub fn choice(&mut self, name: &'a str, choices: &[&'a str], default: &'a str) -> Result<&'a str, ConnectorError> {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => match choices.iter().find(|c| **c == v) {
                Some(c) => Ok(c),
                None => Err(self.error(format!("option `{name}` = {v:?}: expected one of {}", choices.join(", ")))),
            },
        }
    }

    /// A secret named by `<name>-file` (a file holding it) or `<name>-env` (an
    /// environment variable), at most one of them; `None` if neither is set. The value
    /// itself is never an option.
    pub fn secret(&mut self, name: &'a str, file: &'a str, env: &'a str) -> Result<Option<SecretRef>, ConnectorError> {
        if self.options.contains_key(name) {
            self.read.insert(name);
            return Err(self
                .error(format!("option `{name}` would put a secret in the job's plan; name its file (`{file}`) or environment variable (`{env}`)")));
        }
        match (self.optional(file), self.optional(env)) {
            (Some(_), Some(_)) => Err(self.error(format!("set one of `{file}` and `{env}`"))),
            (Some(path), None) => Ok(Some(SecretRef::File(path.to_string()))),
            (None, Some(var)) => Ok(Some(SecretRef::Env(var.to_string()))),
            (None, None) => Ok(None),
        }
    }

    /// Refuses the options nobody read.
    pub fn finish(self) -> Result<(), ConnectorError> {
        let unknown: Vec<&str> = self.options.keys().map(String::as_str).filter(|k| !self.read.contains(k)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let known: Vec<&str> = self.read.iter().copied().collect();
        Err(self.error(format!("unknown option(s) {} (known: {})", unknown.join(", "), known.join(", "))))
    }
}

/// Where a secret is kept, as the plan names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A file on the TaskManager (its content, without a trailing newline).
    File(String),
    /// An environment variable of the TaskManager.
    Env(String),
}

impl SecretRef {
    /// Reads the secret (on the TaskManager that runs the connector).
    pub fn read(&self, kind: &str) -> Result<Secret, ConnectorError> {
        let fail = |what: String, why: String| ConnectorError::Secret { kind: kind.to_string(), what, why };
        match self {
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| fail(format!("file {path:?}"), e.to_string())),
            SecretRef::Env(var) => std::env::var(var).map(Secret).map_err(|e| fail(format!("environment variable {var:?}"), e.to_string())),
        }
    }
}

/// A secret's value. Its `Debug` shows no byte of it, so it cannot reach a log by
/// accident; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(pairs: &[(&str, &str)]) -> Connector {
        Connector { kind: "test".into(), options: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    #[test]
    fn endpoints_are_read_from_the_options_and_matched_against_allowed_hosts() {
        let kafka = Connector { kind: "kafka".into(), ..connector(&[("bootstrap-servers", "a:9092, B:9093"), ("topic", "t")]) };
        assert_eq!(endpoints(&kafka), vec![("a".into(), Some(9092)), ("B".into(), Some(9093))]);
        let pg = Connector { kind: "postgres".into(), ..connector(&[("table", "t")]) };
        assert_eq!(endpoints(&pg), vec![("localhost".into(), Some(5432))]);
        let allowed = ["a".to_string(), "b:9093".to_string()];
        assert!(host_allowed(&allowed, "a", Some(1)) && host_allowed(&allowed, "B", Some(9093)));
        assert!(!host_allowed(&allowed, "b", Some(9092)) && !host_allowed(&allowed, "c", Some(9092)) && !host_allowed(&[], "a", None));
    }

    #[test]
    fn options_are_read_checked_and_unknown_ones_refused() {
        let c = connector(&[("topic", "clicks"), ("batch", "x"), ("mode", "append"), ("typo", "1")]);
        let mut o = Options::new(&c);
        assert_eq!(o.required("topic").ok(), Some("clicks"));
        assert!(o.required("servers").is_err_and(|e| e.to_string().contains("`servers` is required")));
        assert!(o.parsed::<u32>("batch", 7).is_err_and(|e| e.to_string().contains("`batch` = \"x\"")));
        assert_eq!(o.parsed::<u32>("absent", 7).ok(), Some(7));
        assert_eq!(o.choice("mode", &["append", "upsert"], "upsert").ok(), Some("append"));
        let e = o.finish().expect_err("typo is unknown");
        assert!(e.to_string().contains("unknown option(s) typo"), "{e}");
    }

    #[test]
    fn secrets_come_from_files_or_variables_and_never_show() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("weir-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("pw");
        std::fs::write(&file, "hunter2\n")?;
        let path = file.to_string_lossy().to_string();
        let c = connector(&[("password-file", &path)]);
        let mut o = Options::new(&c);
        let secret = o.secret("password", "password-file", "password-env")?.ok_or("a secret")?.read("test")?;
        o.finish()?;
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(..)");

        let inline = connector(&[("password", "hunter2")]);
        let e = Options::new(&inline).secret("password", "password-file", "password-env").expect_err("refused");
        assert!(!e.to_string().contains("hunter2") && e.to_string().contains("password-file"), "{e}");
        let both = connector(&[("password-file", "a"), ("password-env", "B")]);
        assert!(Options::new(&both).secret("password", "password-file", "password-env").is_err());
        let missing = SecretRef::Env("WEIR_TEST_NO_SUCH_VARIABLE".into()).read("test").expect_err("unset");
        assert!(missing.to_string().contains("WEIR_TEST_NO_SUCH_VARIABLE"), "{missing}");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn an_unknown_kind_is_refused_naming_what_there_is() {
        let e = check(&Connector { kind: "kafak".into(), options: BTreeMap::new() }, Role::Source).expect_err("unknown");
        assert!(e.to_string().contains("unknown connector \"kafak\""), "{e}");
    }
}
