//! Fuel and time of the built-in applets' steps (`tests/all/builtin_steps.rs`), as loaded
//! by this runtime: pre-initialized when the component exports `wizer-initialize`.
//!
//! ```text
//! cargo run --release -p coda-runtime --example builtin_fuel            # this build's applets
//! cargo run --release -p coda-runtime --example builtin_fuel -- DIR     # the .wasm files in DIR
//! ```
//!
//! Per step: the fuel of one invocation (deterministic), the median and p99 time of
//! `Runtime::invoke` over `CODA_BENCH_OPS` invocations (default 2000: a fresh instance each,
//! so this is instantiation plus `run`), and the time the load took (compile, and the init
//! and second compile of a pre-initialization; no artifact cache).

// Shared with the test suite: each reads only some of the steps' fields.
#[allow(dead_code)]
#[path = "../tests/all/builtin_steps.rs"]
mod builtin_steps;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coda_runtime::{LoadOptions, Runtime, RuntimeConfig};

fn component(dir: Option<&Path>, file: &str) -> PathBuf {
    match dir {
        Some(dir) => dir.join(file),
        None => coda_applet_artifacts::ALL
            .iter()
            .map(|(_, path)| PathBuf::from(path))
            .find(|path| path.file_name().is_some_and(|name| name == file))
            .unwrap_or_else(|| panic!("no built applet is {file}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).map(PathBuf::from);
    let ops: usize = std::env::var("CODA_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let runtime = Runtime::new(RuntimeConfig::default())?;
    println!("| step | pre-initialized | fuel | goal | invoke median | invoke p99 | load |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for step in builtin_steps::steps() {
        let path = component(dir.as_deref(), step.file);
        let bytes = std::fs::read(&path)?;
        let started = Instant::now();
        let applet = runtime.load(&bytes, &LoadOptions::default()).await?;
        let load = started.elapsed();
        let report = runtime.invoke(&applet, step.invocation()).await;
        if let Err(e) = &report.result {
            anyhow::bail!("{}: {e}", step.name);
        }
        let mut times: Vec<Duration> = Vec::with_capacity(ops);
        for _ in 0..ops {
            let started = Instant::now();
            let report = runtime.invoke(&applet, step.invocation()).await;
            times.push(started.elapsed());
            assert!(report.result.is_ok(), "{}: {:?}", step.name, report.result);
        }
        times.sort();
        let median = times[times.len() / 2];
        let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
        println!(
            "| {} | {:?} | {} | {} | {:.1} µs | {:.1} µs | {} ms |",
            step.name,
            applet.pre_init,
            report.fuel_used,
            step.goal.map(|g| format!("< {g}")).unwrap_or_default(),
            median.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            load.as_millis()
        );
    }
    Ok(())
}
