//! Which top-level modules of a crate use which, read from its sources (`crate::x`
//! and `super::` paths outside comments), and the first cycle among them. Test-only,
//! and free of this crate's items so that another crate's tests can include the file
//! as it is (`#[cfg(test)] #[path = "..."] mod module_graph;`).
//!
//! A textual reading, not the compiler's: uses through the crate root's re-exports
//! (`crate::Item`) and through `self::` are not seen, and an inline module's `super::`
//! is taken for its file's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> the other top-level modules it uses, for every module under
/// `src` (`a.rs`, `a/mod.rs` and `a/b.rs` all count as `a`; the crate root,
/// `lib.rs` or `main.rs`, is not a module).
pub fn edges(src: &Path) -> std::io::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    sources(src, &mut files)?;
    let mut modules: Vec<(Vec<String>, String)> = Vec::new();
    for file in files {
        let Ok(relative) = file.strip_prefix(src) else { continue };
        let mut path: Vec<String> = relative.with_extension("").iter().map(|c| c.to_string_lossy().into_owned()).collect();
        if path.last().is_some_and(|l| l == "mod") {
            path.pop();
        }
        if path.is_empty() || path == ["lib"] || path == ["main"] {
            continue;
        }
        modules.push((path, std::fs::read_to_string(&file)?));
    }
    let known: BTreeSet<String> = modules.iter().map(|(path, _)| path[0].clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = known.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (path, text) in &modules {
        let used = uses(path, text).into_iter().filter(|m| known.contains(m) && *m != path[0]);
        edges.entry(path[0].clone()).or_default().extend(used);
    }
    Ok(edges)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sources(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The top-level names a module at `path` (`["driver", "running"]`) reaches through
/// the crate root in `text`: `crate::a`, `crate::{a, b::C}`, and `super::` paths
/// that climb to the root.
pub fn uses(path: &[String], text: &str) -> BTreeSet<String> {
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::").into_iter().chain(rest.find("super::")).min() {
        let preceded_by_name = rest[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        let mut after = &rest[at..];
        let mut depth = path.len();
        if let Some(tail) = after.strip_prefix("crate::") {
            depth = 0;
            after = tail;
        } else {
            while let Some(tail) = after.strip_prefix("super::") {
                depth = depth.saturating_sub(1);
                after = tail;
            }
        }
        if !preceded_by_name && depth == 0 {
            found.extend(heads(after).into_iter().filter(|h| !h.is_empty()));
        }
        rest = &rest[at + 7..];
    }
    found
}

/// The first segment of the path that starts `after`, or of each path in a group
/// (`{a, b::C}`).
fn heads(after: &str) -> Vec<String> {
    let name = |s: &str| s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let Some(group) = after.strip_prefix('{') else {
        return vec![name(after)];
    };
    let (mut depth, mut start, mut out) = (0usize, 0usize, Vec::new());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                out.push(name(&group[start..i]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(name(&group[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}

/// A cycle, as the modules along it with the first repeated at the end, if any.
pub fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first, with the path so far: a module met again on it closes a cycle.
    fn visit(m: &str, edges: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if done.contains(m) {
            return None;
        }
        if let Some(start) = path.iter().position(|p| p == m) {
            let mut cycle = path[start..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        path.push(m.to_string());
        for dep in edges.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(dep, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('/').map(str::to_string).collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn reads_crate_paths_groups_and_supers_that_reach_the_root() {
        // Names no module of this crate has: this file's own edges stay empty.
        let text = "use crate::alpha::X;\nuse crate::{beta, gamma::{D, E}};\nuse crate::{\n    delta::G,\n};\nlet x = crate::eps::h();";
        assert_eq!(uses(&path("m"), text), set(&["alpha", "beta", "gamma", "delta", "eps"]));
        // Within `outer`, `super::` is `outer` itself; `super::super::` the root.
        assert_eq!(uses(&path("outer/inner"), "use super::{Command, Driver};\nuse super::super::zeta::X;"), set(&["zeta"]));
        // A test module's `use super::*` names nothing.
        assert!(uses(&path("m"), "mod tests { use super::*; }").is_empty());
    }

    #[test]
    fn skips_comments_and_longer_names() {
        let text = "//! See [`crate::alpha`].\n    /// [`crate::beta::B`]\nuse my_crate::gamma::C;\nmacro_rules! m { () => { $crate::delta::f() } }";
        assert!(uses(&path("m"), text).is_empty());
    }

    #[test]
    fn finds_a_cycle_through_several_modules() {
        let edges = |list: &[(&str, &[&str])]| list.iter().map(|(m, deps)| (m.to_string(), set(deps))).collect::<BTreeMap<_, _>>();
        assert_eq!(cycle(&edges(&[("a", &["b"]), ("b", &["c"]), ("c", &[])])), None);
        assert_eq!(cycle(&edges(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])])), Some(path("a/b/c/a")));
    }
}
