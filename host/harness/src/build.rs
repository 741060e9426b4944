//! Building a Rust applet's component from its own tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Builds the applet crate at `manifest_dir` for `wasm32-wasip2` (release) and returns the
/// component's path. The build has a target dir of its own (`target/coda-wasm`), so it does
/// not wait on the lock of the `cargo test` that calls it.
pub fn build_rust_component(manifest_dir: impl AsRef<Path>) -> anyhow::Result<PathBuf> {
    let dir = manifest_dir.as_ref();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(dir.join("target").join("coda-wasm"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        anyhow::bail!(
            "building {} for wasm32-wasip2 failed ({}); is the target installed? \
             `rustup target add wasm32-wasip2`",
            dir.display(),
            output.status
        );
    }
    let mut component = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let files = message["filenames"].as_array().into_iter().flatten();
        for file in files.filter_map(|f| f.as_str()) {
            if file.ends_with(".wasm") {
                component = Some(PathBuf::from(file));
            }
        }
    }
    component.ok_or_else(|| {
        anyhow::anyhow!(
            "building {} made no .wasm: is it a `cdylib` crate?",
            dir.display()
        )
    })
}
