//! ARCHITECTURE.md stays true: every crate of the workspace has its section in the code map,
//! every source file a section names exists where the section says, and every module of a
//! crate is named in its section. A file renamed, removed or added without the map following
//! fails here, not in a newcomer's first hour.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The code map's sections: (the folder a `### \`folder\`` heading names, its text up to the
/// next heading of that level or above).
fn sections(map: &str) -> Vec<(String, String)> {
    let mut sections = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in map.lines() {
        let is_section = line.starts_with("### ");
        let is_top = line.starts_with("## ") || line.starts_with("# ");
        if is_section || is_top {
            sections.extend(current.take());
        }
        if is_section {
            let folder = line
                .split('`')
                .nth(1)
                .map(|f| f.trim_end_matches('/').to_string());
            current = folder.map(|f| (f, String::new()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    sections.extend(current);
    sections
}

/// Every source file named in backticks: a path (`dir/name.ext`), or a bare name of a
/// source file (`name.rs`). A bare `manifest.json` is a format's part, not a file here.
fn named_files(text: &str) -> BTreeSet<String> {
    const PATHS: [&str; 6] = [".rs", ".md", ".wit", ".yaml", ".toml", ".json"];
    const BARE: [&str; 3] = [".rs", ".wit", ".toml"];
    backticked(text)
        .filter(|s| {
            let kinds: &[&str] = if s.contains('/') { &PATHS } else { &BARE };
            kinds.iter().any(|e| s.ends_with(e))
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        })
        .map(str::to_string)
        .collect()
}

/// What stands between backticks.
fn backticked(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

/// Whether `name` is a file somewhere under `dir` (a bare name), or at `dir/name` or
/// `root/name` (a path).
fn exists(root: &Path, dir: &Path, name: &str) -> bool {
    if name.contains('/') {
        return dir.join(name).exists()
            || root.join(name).exists()
            || (name.starts_with("../") && root.join(name).exists());
    }
    fn walk(dir: &Path, name: &str) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let path = e.path();
            let skip = path
                .file_name()
                .is_some_and(|n| n == "target" || n == "node_modules");
            if path.is_dir() {
                !skip && walk(&path, name)
            } else {
                path.file_name().is_some_and(|n| n == name)
            }
        })
    }
    walk(dir, name) || root.join(name).is_file()
}

#[test]
fn the_code_map_names_every_crate_and_only_files_that_exist() {
    let root = root();
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    // The members line of the workspace's Cargo.toml: `members = ["host/types", ...]`.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let members: Vec<String> = manifest
        .lines()
        .find_map(|l| l.strip_prefix("members = ["))
        .expect("a one-line `members = [...]` in Cargo.toml")
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(
        members.len() > 5,
        "members read from Cargo.toml: {members:?}"
    );
    let sections = sections(&map);
    let folders: BTreeSet<&str> = sections.iter().map(|(f, _)| f.as_str()).collect();

    let mut problems = Vec::new();
    for member in &members {
        if !folders.contains(member.as_str()) {
            problems.push(format!(
                "crate `{member}` has no `### \\`{member}\\`` section"
            ));
        }
    }
    for (folder, text) in &sections {
        let dir = root.join(folder);
        if !dir.is_dir() {
            problems.push(format!("section `{folder}`: no such folder"));
            continue;
        }
        for name in named_files(text) {
            if !exists(&root, &dir, &name) {
                problems.push(format!(
                    "section `{folder}` names `{name}`, which is not there"
                ));
            }
        }
        // A crate's modules: each `src/*.rs` (and `src/*/` module folder) is named.
        if members.contains(folder) {
            let Ok(entries) = std::fs::read_dir(dir.join("src")) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Named as `name.rs`, `name` (the module), `name/` or in a path ending so.
                let stem = name.trim_end_matches(".rs");
                let named = name == "lib.rs"
                    || name == "main.rs"
                    || backticked(text).any(|b| {
                        let b = b.trim_end_matches('/');
                        b == name
                            || b == stem
                            || b.ends_with(&format!("/{name}"))
                            || b.starts_with(&format!("{stem}::"))
                    });
                if !named {
                    problems.push(format!(
                        "section `{folder}` does not name its module `src/{name}`"
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md is out of date:\n  {}",
        problems.join("\n  ")
    );
}
