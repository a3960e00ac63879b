//! `weir new`: an operator project (one component of world operator-component) in
//! Rust, Python, JavaScript or C, written from the templates in sdk/templates.
//!
//! The templates are embedded at compile time, so the binary carries their content.
//! The SDK the project builds against is a directory at run time: `--sdk`,
//! `WEIR_SDK`, else the `sdk/` of the Weir tree the running binary was built in
//! (found from the binary's own location, never from a path recorded at build time,
//! which would name the build machine's checkout on every other machine).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct NewArgs {
    /// The operator's language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// Project name: the directory and the component `NAME.wasm` (letters, digits, `-`, `_`).
    name: String,
    /// Where to create the project directory.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Weir's `sdk/` directory, which the project builds against [default: the `sdk/`
    /// of the Weir tree the running `weir` sits in, e.g. next to `target/`].
    #[arg(long, env = "WEIR_SDK")]
    sdk: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Lang {
    Rust,
    Python,
    Js,
    C,
}

/// The files of each language's project template (sdk/templates), embedded.
fn template(lang: Lang) -> &'static [(&'static str, &'static str)] {
    macro_rules! files {
        ($lang:literal: $($file:literal),+) => {
            &[$(($file, include_str!(concat!("../../../../sdk/templates/", $lang, "/", $file)))),+]
        };
    }
    match lang {
        Lang::Rust => files!("rust": "Cargo.toml", "src/lib.rs", "build.sh", ".gitignore"),
        Lang::Python => files!("python": "app.py", "build.sh", ".gitignore"),
        Lang::Js => files!("js": "app.js", "build.sh", ".gitignore"),
        Lang::C => files!("c": "app.c", "build.sh", ".gitignore"),
    }
}

pub fn run(a: NewArgs) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let valid = !a.name.is_empty() && a.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') && !a.name.starts_with('-');
    anyhow::ensure!(valid, "project name {:?}: use letters, digits, '-' and '_'", a.name);
    let sdk = match &a.sdk {
        Some(given) => std::path::absolute(given).with_context(|| format!("cannot resolve {}", given.display()))?,
        None => find_sdk()?,
    };
    anyhow::ensure!(sdk.join("operator").is_dir(), "{} is not Weir's sdk directory (give --sdk or WEIR_SDK)", sdk.display());
    let project = a.dir.join(&a.name);
    anyhow::ensure!(!project.exists(), "{} already exists", project.display());
    for (file, text) in template(a.lang) {
        let path = project.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = text.replace("{{name}}", &a.name).replace("{{sdk}}", &sdk.display().to_string());
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        if file.ends_with(".sh") {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    println!("created {}: build it with {}/build.sh, then name {}.wasm in a job manifest", project.display(), project.display(), a.name);
    Ok(())
}

/// Weir's `sdk/` when neither `--sdk` nor `WEIR_SDK` names it: the nearest directory
/// above the running binary that holds an `sdk/` beside a `wit/` (a binary built in a
/// checkout sits in `<checkout>/target/<profile>/`). The templates refer to the SDK
/// and the WIT by path, so the SDK must be a real directory; what the binary should
/// not do is assume the build machine's.
fn find_sdk() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find Weir's sdk directory: the running weir binary has no path (give --sdk or WEIR_SDK)")?;
    // Through symlinks (a `weir` linked into PATH) to the tree the binary lives in.
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.ancestors().skip(1).map(|dir| dir.join("sdk")).find(|sdk| is_sdk_tree(sdk)).ok_or_else(|| {
        anyhow::anyhow!("cannot find Weir's sdk directory above {} (give --sdk or WEIR_SDK: the sdk/ of a Weir checkout)", exe.display())
    })
}

/// An `sdk/` of a Weir tree: the Rust operator SDK and, beside it, the WIT the other
/// languages' builds read (`$sdk/../wit`).
fn is_sdk_tree(sdk: &Path) -> bool {
    sdk.join("operator").is_dir() && sdk.join("../wit/dataflow.wit").is_file()
}
