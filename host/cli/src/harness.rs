//! `coda applet test FILE.wasm --fixture F`: an applet run offline against fixtures
//! (`coda-harness`), one line per fixture on stderr and the whole report as JSON on stdout.

use std::path::{Path, PathBuf};

use clap::Args;
use coda_harness::Fixture;
use coda_runtime::{Limits, LoadOptions, Runtime};
use serde_json::{Value as Json, json};

use crate::Exit;

#[derive(Args)]
pub struct TestArgs {
    /// The component (.wasm)
    file: PathBuf,
    /// A fixture file (.yaml, .yml or .json), or a directory: every such file in it
    /// (repeatable)
    #[arg(long = "fixture", value_name = "FIXTURE", required = true)]
    fixtures: Vec<PathBuf>,
    /// Largest component accepted, in bytes
    #[arg(long, default_value_t = crate::LOCAL_FILE_MAX_BYTES)]
    max_bytes: u64,
}

/// The fixture files named: files as given, directories by their YAML and JSON files in
/// name order.
fn fixture_files(named: &[PathBuf]) -> Result<Vec<PathBuf>, Exit> {
    let mut files = Vec::new();
    for path in named {
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| Exit::usage("io", format!("cannot read {}: {e}", path.display())))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .and_then(|x| x.to_str())
                            .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
                })
                .collect();
            if found.is_empty() {
                return Err(Exit::usage(
                    "no-fixtures",
                    format!("{} has no .yaml, .yml or .json fixture", path.display()),
                ));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

pub async fn test(runtime: &Runtime, args: TestArgs) -> Result<Json, Exit> {
    // Every fixture is read and checked before anything runs: a typo in the third is
    // reported before the first one's output.
    let files = fixture_files(&args.fixtures)?;
    let mut fixtures = Vec::new();
    for file in &files {
        let fixture = Fixture::from_file(file).map_err(|e| {
            let kind = match e {
                coda_harness::FixtureError::Io { .. } => "io",
                _ => "invalid-fixture",
            };
            Exit::usage(kind, e.to_string())
        })?;
        fixtures.push(fixture);
    }
    let bytes = crate::read_capped(&args.file, args.max_bytes)?;
    let started = std::time::Instant::now();
    let applet = runtime
        .load(
            &bytes,
            &LoadOptions {
                max_bytes: args.max_bytes,
                limits: Limits::default(),
            },
        )
        .await
        .map_err(|e| Exit::usage(e.kind(), format!("{}: {e}", args.file.display())))?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let name = format!("{}@{}", applet.info.name, applet.info.version);
    eprintln!(
        "{name} ({}, {} bytes): {} in {load_ms:.0} ms",
        args.file.display(),
        bytes.len(),
        if applet.compiled {
            "compiled"
        } else {
            "loaded from the cache"
        }
    );

    let mut results = Vec::new();
    let mut failed = 0;
    for (file, fixture) in files.iter().zip(&fixtures) {
        let report = coda_harness::run(runtime, &applet, fixture).await;
        print_line(file, fixture, &report);
        if !report.passed {
            failed += 1;
        }
        let mut entry = serde_json::to_value(&report).unwrap_or(Json::Null);
        entry["fixture"] = json!(file.display().to_string());
        results.push(entry);
    }
    let output = json!({
        "applet": name,
        "component": args.file.display().to_string(),
        "size": bytes.len(),
        "load_ms": load_ms,
        "passed": results.len() - failed,
        "failed": failed,
        "fixtures": results,
    });
    if failed > 0 {
        let mut error = json!({
            "kind": "fixtures-failed",
            "message": format!("{failed} of {} fixture(s) failed", results.len()),
        });
        error["report"] = output;
        return Err(Exit { status: 1, error });
    }
    Ok(output)
}

/// `PASS tests/sample.fixture.yaml  exit greeted  fuel 1 234  0.4 ms`, and each mismatch.
fn print_line(file: &Path, fixture: &Fixture, report: &coda_harness::Report) {
    let verdict = if report.passed { "PASS" } else { "FAIL" };
    let result = match report.result.as_object().and_then(|o| o.iter().next()) {
        Some((kind, value)) if kind != "error" => format!("{kind} {}", short(value)),
        Some((_, error)) => format!(
            "error {}",
            error["code"]
                .as_str()
                .or(error["kind"].as_str())
                .unwrap_or("?")
        ),
        None => report.result.to_string(),
    };
    let about = fixture
        .description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    eprintln!(
        "{verdict} {}{about}: {result}, fuel {}, {:.2} ms, {} call(s)",
        file.display(),
        report.fuel_used,
        report.elapsed_ms,
        report.calls.len()
    );
    for mismatch in &report.mismatches {
        eprintln!("     - {mismatch}");
    }
    // A fixture with nothing to check passes on any outcome: say so, so that a smoke run is
    // not mistaken for a test of what the applet does.
    if report.passed
        && fixture.expect == coda_harness::Expect::default()
        && fixture.calls.is_empty()
    {
        eprintln!(
            "     note: the fixture expects nothing, so only that the applet ended with an outcome was checked"
        );
    }
}

fn short(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}
