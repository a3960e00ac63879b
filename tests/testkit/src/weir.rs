//! The `weir` binary under test, and where things are.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// This build's `weir` binary and target directory. Only the root package's
/// integration tests and benches are told them (at compile time), so they make it:
/// `Weir::new(env!("CARGO_BIN_EXE_weir"), env!("CARGO_TARGET_TMPDIR"))`.
#[derive(Clone, Copy, Debug)]
pub struct Weir {
    bin: &'static str,
    target_tmpdir: &'static str,
}

impl Weir {
    /// `bin`: `CARGO_BIN_EXE_weir`; `target_tmpdir`: `CARGO_TARGET_TMPDIR`.
    pub const fn new(bin: &'static str, target_tmpdir: &'static str) -> Self {
        Self { bin, target_tmpdir }
    }

    /// The `weir` binary.
    pub fn bin(self) -> &'static Path {
        Path::new(self.bin)
    }

    /// Cargo's target directory of this build.
    pub fn target_dir(self) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(d) => PathBuf::from(d),
            None => Path::new(self.target_tmpdir).parent().map_or_else(|| root().join("target"), Path::to_path_buf),
        }
    }

    /// Cargo's scratch directory for tests and benches (`CARGO_TARGET_TMPDIR`): kept
    /// between runs, e.g. for screenshots.
    pub fn tmp_dir(self) -> &'static Path {
        Path::new(self.target_tmpdir)
    }

    /// A `weir` command, with one compiled-component cache for the whole test run.
    pub fn command(self) -> Command {
        let mut c = Command::new(self.bin);
        c.env("WEIR_CACHE_DIR", self.target_dir().join("weir-test-cache"));
        c
    }

    /// Runs `weir` with `args` and returns its output.
    pub fn run<I, S>(self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command().args(args).output().expect("weir starts")
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("tests/testkit is two levels below the root").to_path_buf()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
