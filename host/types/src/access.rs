//! Which files a job may open (issue 19, the file capability). A cluster grants jobs
//! a list of data roots; every file path of a job (file sources and sinks, savepoint
//! and from-savepoint directories) must lie under one of them and never reach the
//! cluster's own files (credentials, tokens, checkpoint storage, artifacts), even when
//! a root holds them. The JobManager checks paths lexically at submission
//! ([`FileAccess::check`]); whoever opens a file (TaskManager or JobManager) checks
//! again after resolving symbolic links ([`FileAccess::resolve`]) and opens the
//! resolved path, so a TaskManager never trusts a path nobody checked.
//!
//! A tenant's job gets its tenant's roots (each under a cluster root) with the
//! cluster's denied list ([`FileAccess::for_tenant`]); nothing downstream differs.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What a job may open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileAccess {
    /// Any path: the embedded `weir run`, a local user running their own job with
    /// their own rights.
    Any,
    /// Only under these roots, never inside the cluster's own directories.
    Granted(Grant),
}

/// Roots a job may read and write under, and directories it may never reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Absolute directories (resolved when the JobManager started).
    pub roots: Vec<String>,
    /// The cluster's own directories and files, absolute: refused even under a root,
    /// and so is any directory holding one of them.
    pub denied: Vec<String>,
    /// The tenant whose roots these are (`None`: the cluster's): only the error
    /// differs, naming who grants roots. Always serialized: the wire format between
    /// JobManager and TaskManagers is not self-describing.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// A path refused; each variant names the path and the rule.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AccessError {
    /// The cluster grants no file path at all.
    #[error("{what} {path:?}: this cluster allows jobs no file paths (start the jobmanager with --data-root DIR)")]
    NoRoots {
        /// What the path is for.
        what: String,
        /// The path.
        path: String,
    },
    /// The job's tenant has no roots.
    #[error("{what} {path:?}: tenant {tenant} may use no file paths (an admin grants it roots: weir tenant roots {tenant} DIR[,DIR])")]
    TenantNoRoots {
        /// What the path is for.
        what: String,
        /// The path.
        path: String,
        /// The tenant.
        tenant: String,
    },
    /// Relative paths would resolve against some process's working directory.
    #[error("{what} {path:?} must be an absolute path")]
    Relative {
        /// What the path is for.
        what: String,
        /// The path.
        path: String,
    },
    /// `..` could climb out of a root.
    #[error("{what} {path:?} must not contain `..`")]
    DotDot {
        /// What the path is for.
        what: String,
        /// The path.
        path: String,
    },
    /// Not under any root.
    #[error("{what} {path:?} is outside the data roots this job may use ({roots})")]
    Outside {
        /// What the path is for.
        what: String,
        /// The path.
        path: String,
        /// The roots, comma-separated.
        roots: String,
    },
    /// Inside (or holding) the cluster's own files.
    #[error("{what} {path:?} reaches the cluster's own files (credentials, tokens, checkpoint storage, artifacts)")]
    Cluster {
        /// What the path is for.
        what: String,
        /// The path.
        path: String,
    },
    /// Under a root as written, elsewhere once symbolic links are followed.
    #[error("{what} {path:?} resolves through a symbolic link to {resolved:?}, which is not allowed: {why}")]
    Symlink {
        /// What the path is for.
        what: String,
        /// The path.
        path: String,
        /// Where it leads.
        resolved: String,
        /// The rule the resolved path breaks.
        why: String,
    },
    /// The existing part of the path could not be resolved.
    #[error("{what} {path:?}: cannot resolve {at:?}: {error}")]
    Resolve {
        /// What the path is for.
        what: String,
        /// The path.
        path: String,
        /// The existing ancestor that failed.
        at: String,
        /// Why.
        error: String,
    },
}

impl FileAccess {
    /// A grant of `roots`, refusing `denied`.
    pub fn granted(roots: Vec<String>, denied: Vec<String>) -> Self {
        FileAccess::Granted(Grant { roots, denied, tenant: None })
    }

    /// What a job of `tenant` may open: only under `roots` (the tenant's), still
    /// never the cluster's own files.
    pub fn for_tenant(&self, tenant: &str, roots: Vec<String>) -> Self {
        let denied = match self {
            FileAccess::Any => vec![],
            FileAccess::Granted(g) => g.denied.clone(),
        };
        FileAccess::Granted(Grant { roots, denied, tenant: Some(tenant.to_string()) })
    }

    /// The same access, also refusing `more` (a TaskManager adds its own files).
    pub fn deny(&self, more: impl IntoIterator<Item = PathBuf>) -> Self {
        match self {
            FileAccess::Any => FileAccess::Any,
            FileAccess::Granted(g) => {
                let mut g = g.clone();
                g.denied.extend(more.into_iter().map(|p| p.display().to_string()));
                FileAccess::Granted(g)
            }
        }
    }

    /// Whether paths are confined (a cluster) rather than free (`weir run`).
    pub fn confined(&self) -> bool {
        matches!(self, FileAccess::Granted(_))
    }

    /// The lexical rules: absolute, no `..`, under a root, clear of the cluster's
    /// files. `what` says what the path is for, in the error.
    pub fn check(&self, what: &str, path: &str) -> Result<(), AccessError> {
        let FileAccess::Granted(g) = self else { return Ok(()) };
        let err = |f: fn(String, String) -> AccessError| f(what.to_string(), path.to_string());
        if g.roots.is_empty() {
            return Err(match &g.tenant {
                Some(tenant) => AccessError::TenantNoRoots { what: what.to_string(), path: path.to_string(), tenant: tenant.clone() },
                None => err(|what, path| AccessError::NoRoots { what, path }),
            });
        }
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(err(|what, path| AccessError::Relative { what, path }));
        }
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(err(|what, path| AccessError::DotDot { what, path }));
        }
        g.rule(p).map_err(|rule| match rule {
            Rule::Outside => AccessError::Outside { what: what.to_string(), path: path.to_string(), roots: g.roots.join(", ") },
            Rule::Cluster => err(|what, path| AccessError::Cluster { what, path }),
        })
    }

    /// [`Self::check`], then the same rules on the path with its symbolic links
    /// followed (the existing part is resolved; what does not exist yet is appended):
    /// the path to open. Without confinement, the path as given.
    pub fn resolve(&self, what: &str, path: &str) -> Result<PathBuf, AccessError> {
        self.check(what, path)?;
        let FileAccess::Granted(g) = self else { return Ok(PathBuf::from(path)) };
        let resolved = resolve_existing(Path::new(path)).map_err(|(at, e)| AccessError::Resolve {
            what: what.to_string(),
            path: path.to_string(),
            at: at.display().to_string(),
            error: e.to_string(),
        })?;
        // Compared with the roots and denied paths resolved too: a root reached
        // through a symbolic link (a mount point, /tmp on some systems) still counts.
        let local =
            Grant { roots: g.roots.iter().map(|r| canonical(r)).collect(), denied: g.denied.iter().map(|d| canonical(d)).collect(), tenant: None };
        local.rule(&resolved).map_err(|rule| AccessError::Symlink {
            what: what.to_string(),
            path: path.to_string(),
            resolved: resolved.display().to_string(),
            why: match rule {
                Rule::Outside => format!("outside the data roots ({})", g.roots.join(", ")),
                Rule::Cluster => "it reaches the cluster's own files".into(),
            },
        })?;
        Ok(resolved)
    }
}

enum Rule {
    Outside,
    Cluster,
}

impl Grant {
    fn rule(&self, p: &Path) -> Result<(), Rule> {
        if !self.roots.iter().any(|r| p.starts_with(r)) {
            return Err(Rule::Outside);
        }
        // A directory holding cluster files is refused too: a sink or savepoint
        // writing there could replace or read them by name.
        if self.denied.iter().any(|d| p.starts_with(d) || Path::new(d).starts_with(p)) {
            return Err(Rule::Cluster);
        }
        Ok(())
    }
}

/// `p` resolved as far as it exists, the rest appended. `p` is absolute and has no
/// `..`, so appending the missing components cannot climb.
fn resolve_existing(p: &Path) -> Result<PathBuf, (PathBuf, std::io::Error)> {
    let mut existing = p;
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(existing) {
            Ok(mut r) => {
                r.extend(rest.iter().rev());
                return Ok(r);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    existing = parent;
                }
                _ => return Err((existing.to_path_buf(), e)),
            },
            Err(e) => return Err((existing.to_path_buf(), e)),
        }
    }
}

/// A configured path resolved if it exists, else as given.
fn canonical(p: &str) -> String {
    std::fs::canonicalize(p).map_or_else(|_| p.to_string(), |r| r.display().to_string())
}

/// The WASI capabilities an admin grants a tenant beyond what every job gets. Files,
/// sockets and environment variables are granted to no guest at all (files go through
/// the host's sources and sinks, under [`FileAccess`]); clocks and randomness are
/// harmless for the admin's own jobs but let a tenant's guest time its neighbours or
/// make its output irreproducible, so a tenant's jobs get them only when granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `wasi:clocks/wall-clock` and `wasi:clocks/monotonic-clock` (reading them,
    /// sleeping on them). Refused: a call traps, naming the interface.
    pub clock: bool,
    /// `wasi:random/*` from the host's generator. Refused: a deterministic generator
    /// seeded from the job, vertex and subtask (std seeds its `HashMap`s from it, so
    /// trapping would break every Rust guest).
    pub random: bool,
}

impl Capabilities {
    /// Everything: the admin's jobs and `weir run`.
    pub const ALL: Capabilities = Capabilities { clock: true, random: true };
    /// Nothing beyond the deterministic substitutes: a tenant by default.
    pub const NONE: Capabilities = Capabilities { clock: false, random: false };
    /// The names `parse` takes, in order.
    pub const NAMES: [&str; 2] = ["clock", "random"];

    /// A comma-separated list of names (`clock,random`; empty or `none`: nothing).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut c = Capabilities::NONE;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty() && *n != "none") {
            match name {
                "clock" => c.clock = true,
                "random" => c.random = true,
                other => return Err(format!("unknown capability {other:?} (known: {})", Self::NAMES.join(", "))),
            }
        }
        Ok(c)
    }

    /// The granted names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        [(self.clock, "clock"), (self.random, "random")].into_iter().filter(|(on, _)| *on).map(|(_, n)| n).collect()
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::NONE
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn capabilities_parse_and_name() {
        use super::Capabilities;
        assert_eq!(Capabilities::parse("clock, random"), Ok(Capabilities::ALL));
        assert_eq!(Capabilities::parse(""), Ok(Capabilities::NONE));
        assert_eq!(Capabilities::parse("none"), Ok(Capabilities::NONE));
        assert_eq!(Capabilities::parse("random").map(|c| c.names()), Ok(vec!["random"]));
        let e = Capabilities::parse("clock,files").expect_err("files is no capability");
        assert!(e.contains("\"files\"") && e.contains("clock, random"), "{e}");
    }

    use super::*;

    fn grant(root: &Path, denied: &[PathBuf]) -> FileAccess {
        FileAccess::granted(vec![root.display().to_string()], denied.iter().map(|d| d.display().to_string()).collect())
    }

    #[test]
    fn lexical_rules_refuse_each_escape_and_name_it() {
        let a = FileAccess::granted(vec!["/data".into()], vec!["/data/cluster".into()]);
        assert_eq!(a.check("input", "/data/in.txt"), Ok(()));
        assert!(matches!(a.check("input", "in.txt"), Err(AccessError::Relative { .. })));
        assert!(matches!(a.check("input", "/data/../etc/shadow"), Err(AccessError::DotDot { .. })));
        assert!(matches!(a.check("input", "/etc/shadow"), Err(AccessError::Outside { .. })));
        assert!(matches!(a.check("input", "/database"), Err(AccessError::Outside { .. })), "a prefix of a name is no root");
        assert!(matches!(a.check("input", "/data/cluster/node.key"), Err(AccessError::Cluster { .. })));
        assert!(matches!(a.check("output", "/data"), Err(AccessError::Cluster { .. })), "a directory holding cluster files");
        let none = FileAccess::granted(vec![], vec![]);
        let e = none.check("input", "/data/in.txt").map_err(|e| e.to_string());
        assert!(e.as_ref().is_err_and(|e| e.contains("--data-root")), "{e:?}");
        assert_eq!(FileAccess::Any.check("input", "../x"), Ok(()));
    }

    #[test]
    fn a_tenants_grant_is_its_roots_and_the_clusters_denied_list() {
        let cluster = FileAccess::granted(vec!["/data".into()], vec!["/data/cluster".into()]);
        let a = cluster.for_tenant("a", vec!["/data/a".into()]);
        assert_eq!(a.check("input", "/data/a/in.txt"), Ok(()));
        assert!(matches!(a.check("input", "/data/b/in.txt"), Err(AccessError::Outside { .. })));
        assert!(matches!(a.check("input", "/data/in.txt"), Err(AccessError::Outside { .. })));
        let under = cluster.for_tenant("a", vec!["/data".into()]);
        assert!(matches!(under.check("input", "/data/cluster/node.key"), Err(AccessError::Cluster { .. })));
        let none = cluster.for_tenant("c", vec![]).check("input", "/data/in.txt").map_err(|e| e.to_string());
        assert!(none.as_ref().is_err_and(|e| e.contains("weir tenant roots c")), "{none:?}");
    }

    #[test]
    fn resolving_refuses_a_symlink_out_of_a_root() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (root, outside, own) = (dir.path().join("root"), dir.path().join("outside"), dir.path().join("root/own"));
        for d in [&root, &outside, &own] {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(outside.join("secret"), "s")?;
        std::os::unix::fs::symlink(&outside, root.join("link"))?;
        std::os::unix::fs::symlink(&own, root.join("to-own"))?;
        let a = grant(&root, std::slice::from_ref(&own));
        let path = |p: &Path| p.display().to_string();
        assert!(matches!(a.resolve("input", &path(&root.join("link/secret"))), Err(AccessError::Symlink { .. })));
        assert!(matches!(a.resolve("output", &path(&root.join("link/new/part-0"))), Err(AccessError::Symlink { .. })), "a path not created yet");
        assert!(matches!(a.resolve("input", &path(&root.join("to-own/x"))), Err(AccessError::Symlink { .. })));
        std::fs::write(root.join("in"), "i")?;
        assert_eq!(a.resolve("input", &path(&root.join("in")))?, std::fs::canonicalize(root.join("in"))?);
        assert_eq!(a.resolve("output", &path(&root.join("out/deeper")))?, std::fs::canonicalize(&root)?.join("out/deeper"));
        Ok(())
    }
}
