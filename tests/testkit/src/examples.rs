//! The example components: `examples-wasm/` (built for wasm32-wasip2) and the polyglot
//! operators in Rust, Python, JavaScript and C, each built once per process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::weir::{Weir, root};

impl Weir {
    /// Builds `examples-wasm/` for wasm32-wasip2 (once per process; cargo makes repeated
    /// builds cheap) and returns the directory holding the `.wasm` files.
    pub fn examples(self) -> &'static Path {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        DIR.get_or_init(|| {
            let target = self.target_dir();
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

    /// Path of the example job `name` (e.g. `wordcount`).
    pub fn example(self, name: &str) -> PathBuf {
        let p = self.examples().join(format!("{name}.wasm"));
        assert!(p.exists(), "{} was not built", p.display());
        p
    }

    /// Builds the polyglot examples (Rust, Python, JavaScript and C operator components,
    /// `examples-wasm/polyglot/build.sh`; it skips what is up to date) once per process,
    /// next to copies of the example manifests, and returns their directory.
    pub fn polyglot(self) -> &'static Path {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        DIR.get_or_init(|| {
            let out = self.target_dir().join("polyglot");
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
}

/// splitmix64, as the examples and benchmarks define it.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
