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

/// The workspace's crates: each member folder and its package name.
fn crates(root: &Path) -> Vec<(String, String)> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let members = manifest
        .lines()
        .find_map(|l| l.strip_prefix("members = ["))
        .expect("a one-line `members = [...]` in Cargo.toml");
    members
        .split('"')
        .skip(1)
        .step_by(2)
        .map(|member| {
            let manifest = std::fs::read_to_string(root.join(member).join("Cargo.toml"))
                .unwrap_or_else(|e| panic!("{member}/Cargo.toml: {e}"));
            let name = manifest
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|l| l.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{member}/Cargo.toml has no `name = \"...\"`"))
                .to_owned();
            (member.to_owned(), name)
        })
        .collect()
}

#[test]
fn the_diagram_shows_every_crate() {
    let root = root();
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    // The bird's-eye view's diagram: the first fenced block of the document.
    let diagram = map
        .split("```")
        .nth(1)
        .expect("a diagram (a ``` block) in ARCHITECTURE.md");
    let crates = crates(&root);
    assert!(crates.len() > 5, "crates read from Cargo.toml: {crates:?}");
    let missing: Vec<&str> = crates
        .iter()
        .map(|(_, name)| name.as_str())
        .filter(|name| {
            // A whole word: `coda-flow` is not found inside `coda-flowchart`.
            !diagram.match_indices(name).any(|(at, _)| {
                let next = diagram[at + name.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's diagram leaves out the crates {missing:?}"
    );
}

/// The longest a function may be, in lines from its `fn` to its closing brace, without a
/// reason written beside it: a `// tidy: long — <why>` comment among the comments and
/// attributes right above it. Longer functions are where bugs hide and reviews skim; the
/// marker makes each one a decision someone wrote down.
const MAX_FUNCTION_LINES: usize = 150;

/// The marker that lets a function be longer than [`MAX_FUNCTION_LINES`].
const LONG_MARKER: &str = "// tidy: long — ";

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The functions of rustfmt'd `source` longer than `max` lines and not marked long, as
/// (line of the `fn`, name, lines). A function ends at the first line that is its `fn`
/// line's indentation and `}`; a `#[cfg(test)]` module is skipped whole.
fn long_functions(source: &str, max: usize) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = source.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let closing = |from: usize, indent: usize| {
        (from..lines.len()).find(|&k| lines[k].len() == indent + 1 && lines[k].ends_with('}'))
    };
    let mut long = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed == "#[cfg(test)]"
            && lines.get(i + 1).is_some_and(|next| {
                let next = next.trim_start();
                (next.starts_with("mod ") || next.starts_with("pub mod ")) && next.ends_with('{')
            })
        {
            match closing(i + 2, indent(lines[i + 1])) {
                Some(end) => i = end + 1,
                None => i = lines.len(),
            }
            continue;
        }
        // `fn name`, after any of `pub`, `pub(crate)`, `async`, `const`, `unsafe`.
        let mut words = trimmed.split_whitespace();
        let is_fn = words
            .by_ref()
            .find(|w| !(w.starts_with("pub") || ["async", "const", "unsafe", "extern"].contains(w)))
            .is_some_and(|w| w == "fn");
        if is_fn {
            let name: String = words
                .next()
                .unwrap_or("")
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // The signature ends at a line ending in `{` (a body), `;` (none) or `}` (a
            // body on the same line).
            let body = (i..lines.len())
                .find(|&k| lines[k].ends_with(['{', ';', '}']))
                .filter(|&k| lines[k].ends_with('{'));
            if let Some(end) = body.and_then(|k| closing(k + 1, indent(line))) {
                let length = end - i + 1;
                let marked = lines[..i]
                    .iter()
                    .rev()
                    .take_while(|l| {
                        let l = l.trim_start();
                        l.starts_with("//") || l.starts_with("#[")
                    })
                    .any(|l| {
                        l.trim_start()
                            .strip_prefix(LONG_MARKER)
                            .is_some_and(|why| !why.trim().is_empty())
                    });
                if length > max && !marked {
                    long.push((i + 1, name, length));
                }
            }
        }
        i += 1;
    }
    long
}

#[test]
fn no_function_is_long_without_a_reason() {
    let root = root();
    let mut files = Vec::new();
    // The crates' own code; their tests (`tests/`, `#[cfg(test)]` modules) and benches
    // are not held to it.
    for (member, _) in crates(&root) {
        rust_files(&root.join(member).join("src"), &mut files);
    }
    assert!(files.len() > 50, "source files found: {}", files.len());
    let mut problems = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("a source file");
        for (line, name, length) in long_functions(&source, MAX_FUNCTION_LINES) {
            let file = file.strip_prefix(&root).unwrap_or(&file).display();
            problems.push(format!(
                "{file}:{line}: `{name}` is {length} lines (more than {MAX_FUNCTION_LINES}): split it, or say why not in a `{LONG_MARKER}<why>` comment above it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_long_function_rule_reads_rustfmt_code() {
    let body = "    let x = 1;\n".repeat(4);
    let source = format!(
        "fn short() {{\n    let x = 1;\n}}\n\nfn one_line() {{}}\n\npub(crate) async fn long(\n    a: u8,\n) -> u8 {{\n{body}}}\n\n// tidy: long — a reason\n#[inline]\nfn marked() {{\n{body}}}\n\nimpl X {{\n    pub fn method(&self) {{\n    {body}    }}\n    fn declared(&self);\n}}\n\n#[cfg(test)]\nmod tests {{\n    fn in_tests() {{\n    {body}    }}\n}}\n"
    );
    let names = |max| -> Vec<(String, usize)> {
        long_functions(&source, max)
            .into_iter()
            .map(|(_, name, length)| (name, length))
            .collect()
    };
    assert_eq!(names(5), [("long".to_owned(), 8), ("method".to_owned(), 6)]);
    assert!(names(8).is_empty());
}

/// Every operation's shared error answers (4XX, 5XX) are declared once, in
/// `openapi::declare_errors`, never in a handler's `#[utoipa::path]`.
#[test]
fn the_openapi_error_answers_are_declared_once() {
    let src = root().join("host/server/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("a source file");
        for (n, line) in source.lines().enumerate() {
            if line.trim_start().starts_with("#[utoipa::path")
                && (line.contains("ErrorBody") || line.contains("XX\""))
            {
                problems.push(format!(
                    "{}:{}: declares the shared error answers again (openapi::declare_errors has them)",
                    file.display(),
                    n + 1
                ));
            }
        }
    }
    let openapi = std::fs::read_to_string(src.join("openapi.rs")).expect("openapi.rs");
    for status in ["\"4XX\"", "\"5XX\""] {
        let count = openapi.matches(status).count();
        if count != 1 {
            problems.push(format!(
                "openapi.rs declares {status} {count} times, not once"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
