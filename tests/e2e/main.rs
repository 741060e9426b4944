//! End-to-end: the `coda` binary, as a user runs it, on the shipped and hostile applets.
//! Checks exit statuses (0 done, 1 the applet failed, 2 usage or refused component) and the
//! JSON printed on stdout.

mod authoring;
mod builtins;
mod capabilities;
mod client;
mod crash;
mod faults;
mod intake;
mod nodes;
mod ops;
mod packages;
mod polyglot;
mod run;
mod secrets;
mod serve;
mod serve_postgres;
mod tidy;
mod uploads;
mod webhooks;

use std::path::PathBuf;
use std::process::Command;

use coda_applet_artifacts as applets;
use serde_json::Value;

/// The `coda` binary cargo built for this test run.
pub(crate) fn coda_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coda"))
}

/// Runs `coda ARGS` with a private artifact cache; returns (exit status, stdout as JSON).
pub(crate) fn coda(args: &[&str]) -> (i32, Value) {
    let cache = cache_dir();
    let output = Command::new(coda_bin())
        .args(args)
        .env("CODA_CACHE_DIR", &cache)
        .output()
        .expect("running coda");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "coda {args:?} printed no JSON ({e}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("exit code"), json)
}

/// The artifact cache the suite's `coda` processes share, under the target dir so that
/// `cargo clean` removes it.
pub(crate) fn cache_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-artifact-cache");
    std::fs::create_dir_all(&dir).expect("cache dir");
    dir
}

#[test]
fn describe_prints_info_and_imports() {
    let (status, json) = coda(&["applet", "describe", applets::HELLO]);
    assert_eq!(status, 0, "{json}");
    assert_eq!(json["name"], "hello");
    assert_eq!(json["exits"], serde_json::json!(["greeted", "anonymous"]));
    assert_eq!(
        json["coda_imports"],
        serde_json::json!(["data", "log", "state"])
    );
    // The SDK builds against the newest world.
    assert_eq!(json["world"], "0.2.0");
    assert_eq!(json["config_schema"]["type"], "object");
}

#[test]
fn invoke_prints_outcome_data_fuel_and_logs() {
    let (status, json) = coda(&[
        "applet",
        "invoke",
        applets::HELLO,
        "--config",
        r#"{"greeting":"Welcome"}"#,
        "--data",
        r#"CustomerName="Ada""#,
    ]);
    assert_eq!(status, 0, "{json}");
    assert_eq!(json["outcome"], serde_json::json!({ "exit": "greeted" }));
    assert_eq!(
        json["data"],
        serde_json::json!({ "Greeting": "Welcome, Ada!" })
    );
    assert!(json["fuel_used"].as_u64().unwrap() > 0);
    assert_eq!(json["logs"][0]["message"], "Welcome, Ada!");
}

#[test]
fn limits_from_flags_give_typed_errors_and_status_1() {
    let (status, json) = coda(&[
        "applet",
        "invoke",
        applets::INFINITE_LOOP,
        "--fuel",
        "1000000",
    ]);
    assert_eq!(status, 1, "{json}");
    assert_eq!(json["error"]["kind"], "fuel");
    assert_eq!(json["error"]["limit"], 1_000_000);

    let (status, json) = coda(&[
        "applet",
        "invoke",
        applets::INFINITE_LOOP,
        "--fuel",
        "100000000000000",
        "--timeout-ms",
        "100",
    ]);
    assert_eq!(status, 1, "{json}");
    assert_eq!(json["error"]["kind"], "deadline");

    let (status, json) = coda(&[
        "applet",
        "invoke",
        applets::MEMORY_BOMB,
        "--memory",
        "8388608",
    ]);
    assert_eq!(status, 1, "{json}");
    assert_eq!(json["error"]["kind"], "memory");

    let (status, json) = coda(&["applet", "invoke", applets::GUEST_FAILURE]);
    assert_eq!(status, 1, "{json}");
    assert_eq!(json["error"]["kind"], "failure");
    assert_eq!(json["error"]["code"], "boom");
}

#[test]
fn refused_components_and_bad_usage_give_status_2() {
    let (status, json) = coda(&["applet", "describe", applets::UNKNOWN_IMPORT]);
    assert_eq!(status, 2, "{json}");
    assert_eq!(json["error"]["kind"], "unknown-import");

    let (status, json) = coda(&["applet", "describe", applets::HELLO, "--max-bytes", "100"]);
    assert_eq!(status, 2, "{json}");
    assert_eq!(json["error"]["kind"], "too-large");

    let (status, json) = coda(&["applet", "describe", "/nonexistent/applet.wasm"]);
    assert_eq!(status, 2, "{json}");
    assert_eq!(json["error"]["kind"], "io");

    // A file that is not a component at all: this test's own source.
    let (status, json) = coda(&[
        "applet",
        "describe",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/e2e/main.rs"),
    ]);
    assert_eq!(status, 2, "{json}");
    assert_eq!(json["error"]["kind"], "invalid-component");

    let (status, json) = coda(&[
        "applet",
        "invoke",
        applets::HELLO,
        "--data",
        "no-equals-sign",
    ]);
    assert_eq!(status, 2, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("NAME=JSON")
    );

    let (status, json) = coda(&["applet", "invoke", applets::HELLO, "--config", "{not json"]);
    assert_eq!(status, 2, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--config")
    );
}

#[test]
fn a_restart_loads_the_cached_artifact() {
    // Two processes, one cache: the second finds the artifact the first compiled, and both
    // answer the same.
    let (_, first) = coda(&["applet", "describe", applets::ECHO]);
    let (status, second) = coda(&["applet", "describe", applets::ECHO]);
    assert_eq!(status, 0);
    assert_eq!(first, second);
    let cached = std::fs::read_dir(cache_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(first["digest"].as_str().unwrap())
        });
    assert!(cached, "no artifact for {} in the cache", first["digest"]);
}
