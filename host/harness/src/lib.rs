//! `coda-harness`: runs a coda applet with no service. A [`Fixture`] gives the applet its
//! config, data sources, state, secrets and the recorded answers to its capability calls;
//! the harness runs `run` once in the same sandbox a flow uses and checks the outcome, the
//! data and state it set, and the calls it made, reporting fuel used and time.
//!
//! `coda applet test FILE.wasm --fixture F` is this crate on the command line. In an
//! applet's own `cargo test` (the Rust SDK re-exports it as `coda_sdk::testing`):
//!
//! ```no_run
//! use coda_harness::{Harness, build_rust_component};
//!
//! let wasm = build_rust_component(env!("CARGO_MANIFEST_DIR")).unwrap();
//! let harness = Harness::new().unwrap();
//! let applet = harness.load(&wasm).unwrap();
//! applet.run_file("tests/sample.fixture.yaml").unwrap().assert_passed();
//! ```
//!
//! Nothing is performed: an http call, a mail, a SQL statement or a follow-up is answered
//! from the fixture, in order, and a call the fixture does not record is answered
//! `unavailable` and reported.

mod build;
mod calls;
pub mod dry_run;
mod fixture;
mod matching;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use coda_runtime::{
    Invocation, InvocationContext, Limits, LoadOptions, LoadedApplet, LogLine, Runtime,
    RuntimeConfig,
};
use coda_types::values_json;
use serde::Serialize;
use serde_json::{Value as Json, json};

pub use build::build_rust_component;
pub use calls::{CallMade, FixtureCapabilities, answer_json, http_request_json, request_json};
pub use fixture::{
    ContextFixture, Expect, Fixture, FixtureError, HttpResponseFixture, LimitsFixture,
    MAX_FIXTURE_BYTES, Recorded, RecordedCall, SqlRowsFixture,
};
pub use matching::{json_eq, subset_mismatch};

/// What running one fixture came to.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when every expectation held.
    pub passed: bool,
    /// What did not hold, one sentence each.
    pub mismatches: Vec<String>,
    /// The outcome (`{"exit": "sent"}`) or `{"error": {...}}`, as `coda applet invoke`
    /// prints them.
    pub result: Json,
    /// The data sources the applet set.
    pub data_changes: Json,
    /// The node state it set.
    pub state_changes: Json,
    /// Every capability call, in order, with the answer it got.
    pub calls: Vec<CallMade>,
    pub logs: Vec<LogLine>,
    pub fuel_used: u64,
    pub host_calls: u64,
    /// Wall time of the invocation, in milliseconds.
    pub elapsed_ms: f64,
}

impl Report {
    /// Panics with every mismatch, for `cargo test`.
    #[track_caller]
    pub fn assert_passed(&self) {
        if !self.passed {
            panic!(
                "the fixture did not pass:\n  - {}\nresult: {}\ncalls: {}",
                self.mismatches.join("\n  - "),
                self.result,
                serde_json::to_string_pretty(&self.calls).unwrap_or_default()
            );
        }
    }
}

/// The invocation a fixture stands for: fixed defaults, so keys are the same every time.
pub fn invocation(fixture: &Fixture, capabilities: Arc<FixtureCapabilities>) -> Invocation {
    let cx = &fixture.context;
    let defaults = Limits::default();
    let limits = Limits {
        fuel: fixture.limits.fuel.unwrap_or(defaults.fuel),
        memory_bytes: fixture.limits.memory_bytes.unwrap_or(defaults.memory_bytes),
        deadline: fixture
            .limits
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.deadline),
        host_calls: fixture.limits.host_calls.unwrap_or(defaults.host_calls),
        ..defaults
    };
    let mut invocation = Invocation::new(
        InvocationContext {
            tenant: cx.tenant.clone().unwrap_or_else(|| "test".into()),
            interaction: cx.interaction.clone(),
            run: cx.run.clone().unwrap_or_else(|| "test-run".into()),
            plan: cx.plan.clone().unwrap_or_else(|| "test-plan".into()),
            node: cx.node.clone().unwrap_or_else(|| "test-node".into()),
            idempotency_key: cx
                .idempotency_key
                .clone()
                .unwrap_or_else(|| "test-run/0/1".into()),
            attempt: cx.attempt.unwrap_or(1),
            ..Default::default()
        },
        fixture.config.clone(),
    );
    invocation.data = fixture.data_values();
    invocation.state = fixture.state_values();
    invocation.limits = limits;
    invocation.capabilities = capabilities;
    invocation.wall_clock = fixture.wall_clock();
    invocation
}

/// Runs the applet once on the fixture and checks what it did.
pub async fn run(runtime: &Runtime, applet: &LoadedApplet, fixture: &Fixture) -> Report {
    let mut mismatches = Vec::new();
    if let Err(why) = fixture.check() {
        mismatches.push(format!("the fixture is invalid: {why}"));
    }
    // The name must match; the version may move on (a fixture taken from a run of 0.1.0
    // is the regression test of the fixed 0.1.1).
    if let Some(expected) = &fixture.applet {
        let info = &applet.info;
        let name = expected.split('@').next().unwrap_or(expected);
        if name != info.name {
            mismatches.push(format!(
                "the fixture is for {expected}, the applet is {}@{}",
                info.name, info.version
            ));
        }
    }
    let capabilities = Arc::new(FixtureCapabilities::new(
        fixture.calls.clone(),
        fixture.secrets.clone(),
    ));
    let invocation = invocation(fixture, capabilities.clone());
    if let Err(why) = invocation.limits.validate() {
        mismatches.push(format!("limits: {why}"));
    }
    let report = runtime.invoke(applet, invocation).await;
    let (calls, call_mismatches, used) = capabilities.finish();
    mismatches.extend(call_mismatches);

    let result = match &report.result {
        Ok(outcome) => serde_json::to_value(outcome).unwrap_or(Json::Null),
        Err(error) => json!({ "error": error.to_json() }),
    };
    let expect = &fixture.expect;
    match (&report.result, &expect.outcome, &expect.error) {
        (Ok(_), Some(want), _) => {
            if let Some(why) = subset_mismatch(want, &result, "outcome") {
                mismatches.push(why);
            }
        }
        (Ok(_), None, Some(want)) => mismatches.push(format!(
            "expected the error {want}, the applet answered the outcome {result}"
        )),
        (Err(error), None, Some(want)) => {
            if let Some(why) = subset_mismatch(want, &error.to_json(), "error") {
                mismatches.push(why);
            }
        }
        (Err(error), _, _) => mismatches.push(format!(
            "the applet ended with an error instead of an outcome: {}",
            error.to_json()
        )),
        (Ok(_), None, None) => {}
    }
    let data_changes = values_json(&report.data_changes);
    let state_changes = values_json(&report.state_changes);
    if let Some(want) = &expect.data {
        compare_changes("data", want, &data_changes, &mut mismatches);
    }
    if let Some(want) = &expect.state {
        compare_changes("state", want, &state_changes, &mut mismatches);
    }
    for text in &expect.logs {
        if !report.logs.iter().any(|line| line.message.contains(text)) {
            mismatches.push(format!("no log line contains {text:?}"));
        }
    }
    if expect.all_calls_made && used < fixture.calls.len() {
        let unused: Vec<String> = fixture.calls[used..]
            .iter()
            .enumerate()
            .map(|(i, call)| format!("#{} ({})", used + i, call.kind()))
            .collect();
        mismatches.push(format!(
            "recorded call(s) never made: {} (set expect.all_calls_made: false if that is right)",
            unused.join(", ")
        ));
    }
    if let Some(max) = expect.max_fuel
        && report.fuel_used > max
    {
        mismatches.push(format!(
            "used {} fuel, more than expect.max_fuel {max}",
            report.fuel_used
        ));
    }
    Report {
        passed: mismatches.is_empty(),
        mismatches,
        result,
        data_changes,
        state_changes,
        calls,
        logs: report.logs,
        fuel_used: report.fuel_used,
        host_calls: report.host_calls,
        elapsed_ms: report.elapsed.as_secs_f64() * 1000.0,
    }
}

/// `want` must be exactly what was set: each name with its value, and nothing else.
fn compare_changes(
    what: &str,
    want: &serde_json::Map<String, Json>,
    got: &Json,
    out: &mut Vec<String>,
) {
    let empty = serde_json::Map::new();
    let got = got.as_object().unwrap_or(&empty);
    for (name, value) in want {
        match got.get(name) {
            None => out.push(format!("{what}.{name} was not set (expected {value})")),
            Some(actual) if !json_eq(value, actual) => {
                out.push(format!("{what}.{name} is {actual}, expected {value}"))
            }
            Some(_) => {}
        }
    }
    for (name, value) in got {
        if !want.contains_key(name) {
            out.push(format!(
                "{what}.{name} was set to {value}, which the fixture does not expect"
            ));
        }
    }
}

/// The harness for a test that is not async (`cargo test` of an applet): a runtime of its
/// own and a small tokio runtime to drive it.
pub struct Harness {
    tokio: tokio::runtime::Runtime,
    runtime: Runtime,
    max_bytes: u64,
}

impl Harness {
    /// A harness with no artifact cache: each load compiles (a small Rust applet in tens of
    /// milliseconds; see [`Harness::with_cache_dir`] for large components).
    pub fn new() -> anyhow::Result<Harness> {
        Harness::with_config(RuntimeConfig {
            max_concurrent_instances: 4,
            ..RuntimeConfig::default()
        })
    }

    /// A harness that keeps compiled components in `dir` across test runs.
    pub fn with_cache_dir(dir: impl AsRef<Path>) -> anyhow::Result<Harness> {
        Harness::with_config(RuntimeConfig {
            cache_dir: Some(dir.as_ref().to_owned()),
            max_concurrent_instances: 4,
            ..RuntimeConfig::default()
        })
    }

    fn with_config(config: RuntimeConfig) -> anyhow::Result<Harness> {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let runtime = Runtime::new(config)?;
        Ok(Harness {
            tokio,
            runtime,
            // Python and JavaScript components carry their interpreter: tens of megabytes.
            max_bytes: 64 * 1024 * 1024,
        })
    }

    /// Loads a component (compiles it and calls `describe`), as the host would.
    pub fn load(&self, path: impl AsRef<Path>) -> anyhow::Result<TestApplet<'_>> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let applet = self
            .tokio
            .block_on(self.runtime.load(
                &bytes,
                &LoadOptions {
                    max_bytes: self.max_bytes,
                    limits: Limits::default(),
                },
            ))
            .map_err(|e| anyhow::anyhow!("{} does not load: {e}", path.display()))?;
        Ok(TestApplet {
            harness: self,
            applet,
        })
    }
}

/// A loaded applet, ready for fixtures.
pub struct TestApplet<'h> {
    harness: &'h Harness,
    applet: Arc<LoadedApplet>,
}

impl TestApplet<'_> {
    /// What the applet's `describe` answered.
    pub fn info(&self) -> &coda_runtime::AppletInfo {
        &self.applet.info
    }

    /// Runs the fixture and reports; call [`Report::assert_passed`] to fail the test.
    pub fn run(&self, fixture: &Fixture) -> Report {
        self.harness
            .tokio
            .block_on(run(&self.harness.runtime, &self.applet, fixture))
    }

    /// Reads a fixture file and runs it.
    pub fn run_file(&self, path: impl AsRef<Path>) -> Result<Report, FixtureError> {
        let fixture = Fixture::from_file(path.as_ref())?;
        Ok(self.run(&fixture))
    }
}
