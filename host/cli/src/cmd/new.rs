//! `weir new`: an operator project (one component of world operator-component) in
//! Rust, Python, JavaScript or C, written from the templates in sdk/templates.

use std::path::PathBuf;

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
    /// Weir's `sdk/` directory, which the project builds against.
    #[arg(long, env = "WEIR_SDK", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk"))]
    sdk: PathBuf,
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
    let sdk = std::path::absolute(&a.sdk).with_context(|| format!("cannot resolve {}", a.sdk.display()))?;
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
