//! Shared by the integration tests and the benchmark: builds the example jobs once and
//! runs the `weir` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory of this build.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).parent().map_or_else(|| root().join("target"), Path::to_path_buf),
    }
}

/// Builds `examples-wasm/` for wasm32-wasip2 (once per process; cargo makes repeated
/// builds cheap) and returns the directory holding the `.wasm` files.
pub fn examples() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = target_dir();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root())
            .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path", "examples-wasm/Cargo.toml", "--target-dir"])
            .arg(&target)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building examples-wasm failed");
        target.join("wasm32-wasip2/release")
    })
}

/// Builds the polyglot examples (Rust, Python, JavaScript and C operator components,
/// `examples-wasm/polyglot/build.sh`; it skips what is up to date) once per process,
/// next to copies of the example manifests, and returns their directory.
pub fn polyglot() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = target_dir().join("polyglot");
        let status = Command::new("bash").current_dir(root()).arg("examples-wasm/polyglot/build.sh").arg(&out).status().expect("bash runs");
        assert!(status.success(), "building the polyglot examples failed (.ci/install-toolchains installs their toolchains)");
        for entry in std::fs::read_dir(root().join("examples-wasm/polyglot")).expect("examples-wasm/polyglot") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                std::fs::copy(&path, out.join(path.file_name().expect("file name"))).expect("copy the manifest");
            }
        }
        out
    })
}

/// Path of the example job `name` (e.g. `wordcount`).
pub fn example(name: &str) -> PathBuf {
    let p = examples().join(format!("{name}.wasm"));
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// The `weir` binary of this build.
pub fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    // One compiled-component cache for the whole test run.
    c.env("WEIR_CACHE_DIR", target_dir().join("weir-test-cache"));
    c
}

/// Runs `weir` with `args` and returns its output.
pub fn run_weir<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    weir().args(args).output().expect("weir starts")
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// splitmix64, as the examples and benchmarks define it.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
